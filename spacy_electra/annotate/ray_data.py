"""Annotation on Ray Data (extra ``spacy-electra[ray]``).

``annotate_dataset(ds, pipeline)`` adds a ``record`` column (the JSON record of
``records.doc_to_record``) to a ``ray.data.Dataset`` with a ``text`` column, through
``map_batches`` and ``PipelineAnnotator``: an actor class, so each worker loads the pipeline once
and keeps it for every batch it gets (one GPU per actor with ``num_gpus=1``). Rows keep their other
columns, so results can be keyed by an input id whatever order Ray returns them in.

``annotate --ray`` uses it a few shards at a time: the driver reads the input and handles rejects,
shards and the manifest exactly as the local run does, Ray annotates the records of a window of
shards in the batches a local run would form (``BatchAnnotator``: one row per batch, so the
records are identical to the local run's), and the driver puts them back in input order. A
worker that dies is restarted and its batch retried (Ray Data's actor defaults); a batch's output
only counts once it completes, and the driver checks that every batch came back whole.

Priority: Ray starts its workers at niceness 15, below every ordinary process, so on a machine
with anything else running the actors only get leftover CPU (measured: 0.14x the local run's
speed with two training jobs beside it, 0.82x on an otherwise idle 2-core VM). A local instance
started here (``init_local_ray``, which ``annotate --ray`` uses) runs its workers at normal
priority (``RAY_worker_niceness=0``, as Ray's own job supervisor does for submitted jobs) unless
the environment already sets it; a cluster you connect to keeps its own setting.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Optional, Tuple, Type, Union

import numpy as np

from .io import AnnotateError, InputRecord
from .records import doc_to_record, pipe_item

if TYPE_CHECKING:  # pragma: no cover
    import ray
    import ray.data

RECORD_COLUMN = "record"
BATCH_COLUMN = "batch"  # annotate --ray: one row per nlp.pipe batch


def _require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise AnnotateError("Ray is not installed; pip install 'spacy-electra[ray]' (ray[data]) to use --ray.") from err
    return ray


def init_local_ray(**kwargs: Any) -> None:
    """``ray.init(**kwargs)`` with the workers of a newly started local instance at normal
    priority (see the module docstring). Connecting to a running cluster (``RAY_ADDRESS``,
    ``address=``) is unaffected: its raylets already chose their workers' niceness."""
    ray = _require_ray()
    os.environ.setdefault("RAY_worker_niceness", "0")  # read by the raylet this call may start
    ray.init(**kwargs)


class PipelineAnnotator:
    """Callable class for ``Dataset.map_batches``: loads the pipeline once per actor."""

    def __init__(self, pipeline: str, *, batch_size: int = 64, text_column: str = "text",
                 id_column: str = "id", meta_column: str = "meta", inference: Optional[str] = None) -> None:
        import ray
        import spacy

        from ..gpu import require_gpu

        if ray.get_gpu_ids():  # Ray narrowed CUDA_VISIBLE_DEVICES to this actor's GPU
            require_gpu(0)
        self.nlp = spacy.load(pipeline)
        if inference is not None:
            from ..inference import set_inference

            set_inference(self.nlp, inference)
        self.batch_size = batch_size
        self.text_column, self.id_column, self.meta_column = text_column, id_column, meta_column

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        texts = [str(t) for t in batch[self.text_column]]
        ids: List[Optional[str]] = [str(i) for i in batch[self.id_column]] if self.id_column in batch else [None] * len(texts)
        metas = (
            [json.loads(m) if m else {} for m in batch[self.meta_column]]
            if self.meta_column in batch else [{} for _ in texts]
        )
        records, words = self.annotate(texts, ids, metas, batch_size=self.batch_size)
        return {**batch, RECORD_COLUMN: np.array(records, dtype=object), "n_words": np.array(words, dtype=np.int64)}

    def annotate(self, texts: List[str], ids: List[Optional[str]], metas: List[Dict[str, Any]], *,
                 batch_size: int) -> Tuple[List[str], List[int]]:
        """The JSON record and the word count of each text, through ``nlp.pipe`` in batches of
        ``batch_size``."""
        items = (pipe_item(self.nlp, text, meta.get("questions"), {"i": i}) for i, (text, meta) in enumerate(zip(texts, metas)))
        records: List[str] = [""] * len(texts)
        words = [0] * len(texts)
        for doc, context in self.nlp.pipe(items, as_tuples=True, batch_size=batch_size):
            i = context["i"]
            records[i] = json.dumps(doc_to_record(doc, id=ids[i], meta=metas[i]), ensure_ascii=False, separators=(",", ":"))
            words[i] = sum(not t.is_space for t in doc)
        return records, words


class BatchAnnotator(PipelineAnnotator):
    """The annotator of ``annotate --ray``: each row of its dataset is one whole ``nlp.pipe``
    batch (``BATCH_COLUMN``: a JSON list of ``{"id", "text", "meta"}``), annotated as one batch.

    Why rows of batches: the encoder pads and stacks the windows of a batch, and the last bits of
    a float result depend on what else is in the batch (padded lengths, matrix shapes), enough to
    flip a near-tie between two labels. Ray Data forms its batches inside its blocks, so with one
    row per text Ray's batches were not the local run's, and the 10,000-document benchmark found
    records that differed. Grouping the texts here, exactly as ``nlp.pipe`` groups a local run's
    stream, makes the records identical by construction."""

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        records, words = [], []
        for payload in batch[BATCH_COLUMN]:
            items = json.loads(payload)
            got, n = self.annotate([i["text"] for i in items], [i["id"] for i in items], [i["meta"] for i in items],
                                   batch_size=max(1, len(items)))
            records.append("[" + ",".join(got) + "]")
            words.append(json.dumps(n))
        return {**batch, RECORD_COLUMN: np.array(records, dtype=object), "n_words": np.array(words, dtype=object)}


def annotate_dataset(
    ds: "ray.data.Dataset",
    pipeline: Union[str, Path],
    *,
    batch_size: int = 64,
    concurrency: int = 1,
    num_gpus: float = 0,
    num_cpus: float = 1,
    text_column: str = "text",
    id_column: str = "id",
    meta_column: str = "meta",
    annotator: Type[PipelineAnnotator] = PipelineAnnotator,
    inference: Optional[str] = None,
    **ray_remote_args: Any,
) -> "ray.data.Dataset":
    """``ds`` with a ``record`` column (JSON string) and an ``n_words`` column. ``pipeline`` must
    load on every worker: a path they all see, or an installed package name. A ``meta`` column
    (JSON string) is carried into the records. Workers that die are restarted and their batches
    retried: Ray Data creates its actors with ``max_restarts=-1, max_task_retries=-1`` unless
    ``ray_remote_args`` say otherwise (other extra arguments, e.g. ``runtime_env``, also go to
    ``map_batches``)."""
    return _map_batches(ds, annotator, pipeline, rows_per_call=batch_size, concurrency=concurrency, num_gpus=num_gpus,
                        num_cpus=num_cpus, constructor_kwargs=dict(batch_size=batch_size, text_column=text_column,
                                                                   id_column=id_column, meta_column=meta_column,
                                                                   inference=inference), **ray_remote_args)


def _map_batches(ds, annotator: Type[PipelineAnnotator], pipeline: Union[str, Path], *, rows_per_call: int,
                 concurrency: int, num_gpus: float, num_cpus: float, constructor_kwargs: Dict[str, Any],
                 **ray_remote_args: Any):
    ray = _require_ray()
    return ds.map_batches(
        annotator,
        fn_constructor_kwargs=dict(pipeline=str(pipeline), **constructor_kwargs),
        batch_size=rows_per_call,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_gpus=num_gpus,
        num_cpus=num_cpus,
        **ray_remote_args,
    )


def annotate_records(records: List[InputRecord], pipeline: Union[str, Path], *, batch_size: int = 64,
                     concurrency: int = 1, num_gpus: float = 0, num_cpus: float = 1, inference: Optional[str] = None,
                     annotator: Type[BatchAnnotator] = BatchAnnotator, **ray_remote_args: Any) -> List[Dict[str, Any]]:
    """Annotate ``records`` on Ray in consecutive ``nlp.pipe`` batches of ``batch_size`` (the
    batches a local run over the same records forms, see ``BatchAnnotator``); returns
    ``{"record", "n_words"}`` per record, in input order. Raises if a batch is missing from Ray's
    output (nothing is written for that shard then)."""
    ray = _require_ray()
    batches = [records[i:i + batch_size] for i in range(0, len(records), batch_size)]
    rows = [{"index": k, BATCH_COLUMN: json.dumps([{"id": r.id, "text": r.text, "meta": r.meta} for r in batch], ensure_ascii=False)}
            for k, batch in enumerate(batches)]
    ds = _map_batches(ray.data.from_items(rows), annotator, pipeline, rows_per_call=1, concurrency=concurrency,
                      num_gpus=num_gpus, num_cpus=num_cpus, constructor_kwargs=dict(inference=inference), **ray_remote_args)
    out: Dict[int, List[Dict[str, Any]]] = {}
    for row in ds.iter_rows():
        got = [{"record": record, "n_words": n} for record, n in zip(json.loads(row[RECORD_COLUMN]), json.loads(row["n_words"]))]
        out[int(row["index"])] = got
    missing = [k for k in range(len(batches)) if len(out.get(k, ())) != len(batches[k])]
    if missing:
        first = batches[missing[0]][0].id
        raise AnnotateError(f"Ray returned no records for {len(missing)} batches (first from input {first}); rerun to resume.")
    return [result for k in range(len(batches)) for result in out[k]]


def ray_backend(pipeline: Union[str, Path], *, batch_size: int, gpu: bool, workers: Optional[int], shard_size: int,
                window: int = 8, inference: Optional[str] = None):
    """The runner's backend for ``--ray``: one Ray Data job per ``window`` shards (so the actors'
    start-up, loading the pipeline, is paid once per window), records back in input order."""
    ray = _require_ray()
    if Path(pipeline).exists():
        pipeline = str(Path(pipeline).resolve())  # workers may run in another directory
    if not ray.is_initialized():
        init_local_ray()  # RAY_ADDRESS (set by `ray job submit`) or a local instance
    resource = "GPU" if gpu else "CPU"
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get(resource, 1)))
    options: Dict[str, Any] = dict(batch_size=batch_size, concurrency=workers, num_gpus=1 if gpu else 0, num_cpus=1, inference=inference)

    def annotate_stream(records: Iterable[InputRecord]) -> Iterator:
        chunk: List[InputRecord] = []
        for record in records:
            # Cut only after a whole number of batches, so that every batch is the one a local
            # run's ``nlp.pipe`` forms over the same stream.
            if len(chunk) % batch_size == 0 and chunk and record.seq // shard_size - chunk[0].seq // shard_size >= window:
                yield from _annotated(chunk)
                chunk = []
            chunk.append(record)
        if chunk:
            yield from _annotated(chunk)

    def _annotated(chunk: List[InputRecord]):
        for record, result in zip(chunk, annotate_records(chunk, pipeline, **options)):
            yield record, None, result["record"], result["n_words"]

    return annotate_stream
