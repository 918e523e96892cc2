"""The resumable annotation loop: input stream -> ``nlp.pipe`` (or Ray) -> shards + manifest.

Everything that can be checked cheaply (pipeline found, input present, output folder free or
holding this same run) is checked before the pipeline loads. Records leave ``nlp.pipe`` in input
order, so the loop only has to notice when the shard index moves on to commit the shards
before it (including shards that held nothing but rejects). Finished shards of an earlier
attempt are skipped while reading: their lines are not annotated again.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import sys
import time
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc

from .io import (
    OUTPUT_FORMATS,
    AnnotateError,
    InputFile,
    InputRecord,
    InputStream,
    Manifest,
    Reject,
    ShardWriter,
    UnwritableRecord,
    append_rejects,
    list_input_files,
    lock_folder,
)
from .records import Record, count_words, doc_to_record, pipe_item

Annotated = Tuple[InputRecord, Optional[Doc], Record, int]  # input, doc (None from Ray), record, words
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class AnnotateInterrupted(Exception):
    """Ctrl-C: the finished shards are intact and a rerun resumes after them."""


@dataclass
class Summary:
    output: Path
    n_records: int
    n_rejects: int
    n_words: int
    n_shards: int
    n_shards_resumed: int
    seconds: float

    def line(self) -> str:
        resumed = f", {self.n_shards_resumed} of them done by an earlier run," if self.n_shards_resumed else ""
        rejects = f"{self.n_rejects:,} rejected (see {self.output / 'rejects.jsonl'})" if self.n_rejects else "0 rejected"
        return (
            f"Annotated {self.n_records:,} docs ({self.n_words:,} words), {rejects}; "
            f"{self.n_shards} shards{resumed} in {self.output} (manifest {self.output / 'manifest.json'})"
        )


# -- checks before any work ------------------------------------------------------------------
def pipeline_identity(pipeline: Union[str, Path]) -> Dict[str, Any]:
    """What makes a pipeline the same one on a rerun: for a folder its meta and a fingerprint of
    its files (names, sizes, mtimes); for an installed package its name and version."""
    import spacy.util

    path = Path(pipeline)
    if path.exists():
        if not (path / "config.cfg").exists():
            raise AnnotateError(f"Pipeline folder {path} has no config.cfg; pass a folder written by nlp.to_disk or spacy train.")
        meta = json.loads((path / "meta.json").read_text()) if (path / "meta.json").exists() else {}
        files = sorted(
            (p.relative_to(path).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file()
        )
        fingerprint = hashlib.sha1(json.dumps(files).encode()).hexdigest()
        return {"path": str(path.resolve()), "name": f"{meta.get('lang')}_{meta.get('name')}",
                "version": meta.get("version"), "fingerprint": fingerprint}
    if spacy.util.is_package(str(pipeline)):
        return {"package": str(pipeline), "version": spacy.util.get_package_version(str(pipeline))}
    raise AnnotateError(
        f"Pipeline {pipeline!r} not found: no such folder and no installed package of that name; "
        "pass a pipeline folder (nlp.to_disk) or pip install the pipeline package."
    )


def run_identity(pipeline, input_path: Path, files: List[InputFile], **options) -> Dict[str, Any]:
    """The manifest's ``run``: a rerun resumes only when all of it is unchanged."""
    return {
        "pipeline": pipeline_identity(pipeline),
        "input": {
            "path": str(Path(input_path).resolve()),
            "files": [{"file": f.name, "format": f.format, "size": f.path.stat().st_size,
                       "mtime_ns": f.path.stat().st_mtime_ns} for f in files],
        },
        "options": options,
    }


def load_pipeline(pipeline: Union[str, Path], gpu_id: int = -1) -> Language:
    import spacy

    from ..gpu import GPUNotReady, require_gpu

    try:
        require_gpu(gpu_id)
    except GPUNotReady as err:
        raise AnnotateError(str(err)) from err
    try:
        return spacy.load(pipeline)
    except (OSError, ValueError) as err:
        raise AnnotateError(f"Cannot load pipeline {pipeline}: {str(err).splitlines()[0]}") from err


def _check_inference(kind: str) -> None:
    from ..inference.backends import check_kind  # torch only once a backend is asked for

    try:
        check_kind(kind, "--inference")
    except ValueError as err:
        raise AnnotateError(str(err)) from None


def _set_inference(nlp: Language, kind: str) -> None:
    from ..inference import set_inference

    try:
        set_inference(nlp, kind)
    except ValueError as err:
        raise AnnotateError(f"--inference {kind}: {err}") from None


# -- n_process > 1 ---------------------------------------------------------------------------
_FORKING = {"active": 0, "registered": False}


def _one_torch_thread_in_child() -> None:
    torch = sys.modules.get("torch")
    if _FORKING["active"] and torch is not None:
        torch.set_num_threads(1)


class _single_threaded_children:
    """While active, every forked child runs torch on one thread: a child that inherits the
    parent's OpenMP pool deadlocks in its first parallel op (``nlp.pipe(n_process=N)`` forks).
    Done here rather than relying on the plugin to do it. ``TOKENIZERS_PARALLELISM`` is set for
    the same reason (HF tokenizers turn their threads off in a forked child, with a warning each)."""

    def __enter__(self):
        if not _FORKING["registered"]:
            os.register_at_fork(after_in_child=_one_torch_thread_in_child)
            _FORKING["registered"] = True
        _FORKING["active"] += 1
        self.tokenizers = os.environ.get("TOKENIZERS_PARALLELISM")
        os.environ["TOKENIZERS_PARALLELISM"] = "false"

    def __exit__(self, *exc):
        _FORKING["active"] -= 1
        if self.tokenizers is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = self.tokenizers


# -- annotation backends ---------------------------------------------------------------------
def local_backend(nlp: Language, *, batch_size: int, n_process: int) -> Callable[[Iterable[InputRecord]], Iterator[Annotated]]:
    """Annotate with ``nlp.pipe`` in this process (or ``n_process`` forked ones), in order."""

    def annotate_records(records: Iterable[InputRecord]) -> Iterator[Annotated]:
        waiting: Deque[InputRecord] = deque()

        def items():
            for record in records:
                waiting.append(record)
                yield pipe_item(nlp, record.text, record.questions, {"seq": record.seq})

        for doc, context in nlp.pipe(items(), as_tuples=True, batch_size=batch_size, n_process=n_process):
            record = waiting.popleft()
            if context["seq"] != record.seq:
                raise RuntimeError(f"nlp.pipe returned line {context['seq']} where line {record.seq} was due")
            yield record, doc, doc_to_record(doc, id=record.id, meta=record.meta), count_words(doc)

    return annotate_records


# -- the loop --------------------------------------------------------------------------------
class _Shards:
    """Rejects and records of the shards in progress; commits them in index order."""

    def __init__(self, manifest: Manifest, output_format: str, shard_size: int) -> None:
        self.manifest = manifest
        self.output_format = output_format
        self.shard_size = shard_size
        self.seen: Dict[int, List[Reject]] = {}  # shard -> its rejects, for shards not yet committed
        self.writer: Optional[ShardWriter] = None
        self.writer_index = -1
        self.words = 0  # of the shard being written

    def note(self, item: Union[InputRecord, Reject]) -> None:
        shard = item.seq // self.shard_size
        self.seen.setdefault(shard, [])
        if isinstance(item, Reject):
            self.seen[shard].append(item)

    def add(self, record: InputRecord, doc: Optional[Doc], data: Record, words: int) -> None:
        """Write one record into its shard, or reject it when it does not serialise."""
        shard = record.seq // self.shard_size
        self.commit_before(shard)
        writer = self.writer if self.writer is not None else self._open(shard)
        try:
            writer.add(doc, data)
        except UnwritableRecord as err:
            file, line = record.id.rsplit(":", 1)
            self.seen.setdefault(shard, []).append(Reject(record.seq, file, int(line), err.reason))
            return
        self.words += words

    def _open(self, index: int) -> ShardWriter:
        writer = self.writer = ShardWriter(self.manifest.folder, index, self.output_format)
        self.writer_index = index
        self.words = 0
        return writer

    def commit_before(self, shard: Optional[int]) -> None:
        """Commit every noted shard below ``shard`` (all of them for None)."""
        for index in sorted(self.seen):
            if shard is not None and index >= shard:
                break
            self._commit(index)

    def _commit(self, index: int) -> None:
        writer = self.writer
        if writer is None or self.writer_index != index:  # a shard of rejects only
            writer = self._open(index)
        rejects = sorted(self.seen.pop(index), key=lambda reject: reject.seq)  # in line order
        name = writer.commit()
        self.writer = None
        rejects_bytes = append_rejects(self.manifest.folder, rejects)
        first, last = index * self.shard_size, (index + 1) * self.shard_size - 1
        self.manifest.add_shard(
            {"index": index, "file": name, "lines": [first, last], "n_records": writer.n_records,
             "n_rejects": len(rejects), "n_words": self.words},
            rejects_bytes,
        )

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None


class _Progress:
    """tqdm over input bytes (so the ETA holds for any input size), docs/s and words/s over the
    time spent annotating."""

    def __init__(self, stream: InputStream, enabled: Optional[bool]) -> None:
        from tqdm import tqdm

        self.stream = stream
        self.bar = tqdm(total=stream.total_bytes, unit="B", unit_scale=True, desc="annotate",
                        disable=enabled is False or (enabled is None and not sys.stderr.isatty()),
                        mininterval=0.5, smoothing=0.1)
        self.start = time.perf_counter()
        self.docs = self.words = 0
        self.last = 0.0

    def update(self, docs: int = 0, words: int = 0) -> None:
        self.docs += docs
        self.words += words
        now = time.perf_counter()
        if now - self.last > 0.5:
            self.last = now
            elapsed = max(now - self.start, 1e-9)
            self.bar.set_postfix_str(f"{self.docs / elapsed:,.0f} docs/s, {self.words / elapsed:,.0f} words/s", refresh=False)
            self.bar.update(self.stream.bytes_read - self.bar.n)

    def close(self) -> None:
        self.bar.update(self.stream.bytes_read - self.bar.n)
        self.bar.close()


def annotate(
    pipeline: Union[str, Path],
    input_path: Union[str, Path],
    output: Union[str, Path],
    *,
    text_field: str = "text",
    input_format: str = "auto",
    output_format: str = "jsonl",
    shard_size: int = 10_000,
    batch_size: int = 64,
    n_process: int = 1,
    gpu_id: int = -1,
    use_ray: bool = False,
    ray_workers: Optional[int] = None,
    progress: Optional[bool] = None,
    nlp: Optional[Language] = None,
    inference: Optional[str] = None,
) -> Summary:
    """Annotate ``input_path`` with ``pipeline`` into shards under ``output``; resumes a run that
    was cut short. ``nlp`` may pass the already loaded ``pipeline`` (tests, notebooks).
    ``inference`` (fp32, bf16, int8, onnx, onnx-int8) switches the pipeline's ELECTRA encoders to
    that backend for this run (see ``spacy_electra.inference``)."""
    output = Path(output)
    if inference is not None:
        _check_inference(inference)
    if output_format not in OUTPUT_FORMATS:
        raise AnnotateError(f"Unknown output format {output_format!r}; use one of {', '.join(OUTPUT_FORMATS)}.")
    if shard_size < 1 or batch_size < 1 or n_process < 1:
        raise AnnotateError("--shard-size, --batch-size and --n-process must be at least 1.")
    if n_process > 1 and gpu_id >= 0:
        raise AnnotateError("--n-process > 1 forks CPU workers; on a GPU use --n-process 1 (or --ray with one worker per GPU).")
    if use_ray and output_format != "jsonl":
        raise AnnotateError("--ray writes JSONL records; use --output-format jsonl.")
    files = list_input_files(Path(input_path), input_format)
    if Path(input_path).is_dir() and output.resolve().is_relative_to(Path(input_path).resolve()):
        raise AnnotateError(f"Output {output} is inside the input folder {input_path}, so a rerun would read it as input; write it elsewhere.")
    # A backend changes the outputs slightly, so a rerun resumes only with the same one; runs
    # without it keep the identity they always had.
    backend_option = {} if inference is None else {"inference": inference}
    run = run_identity(pipeline, Path(input_path), files, text_field=text_field, output_format=output_format,
                       shard_size=shard_size, **backend_option)
    Manifest.open(output, run)  # refuses a different run before anything is created
    with lock_folder(output):
        manifest = Manifest.open(output, run)  # re-read under the lock
        manifest.prepare()
        return _annotate_locked(manifest, pipeline, files, nlp=nlp, text_field=text_field, output_format=output_format,
                                shard_size=shard_size, batch_size=batch_size, n_process=n_process, gpu_id=gpu_id,
                                use_ray=use_ray, ray_workers=ray_workers, progress=progress, inference=inference)


def _annotate_locked(manifest: Manifest, pipeline, files: List[InputFile], *, nlp: Optional[Language], text_field: str,
                     output_format: str, shard_size: int, batch_size: int, n_process: int, gpu_id: int,
                     use_ray: bool, ray_workers: Optional[int], progress: Optional[bool],
                     inference: Optional[str] = None) -> Summary:
    resumed = set(manifest.shards)
    start = time.perf_counter()
    if not manifest.complete:
        if use_ray:
            from .ray_data import ray_backend

            backend = ray_backend(pipeline, batch_size=batch_size, gpu=gpu_id >= 0, workers=ray_workers, shard_size=shard_size,
                                  inference=inference)
            max_length = 10**6 if nlp is None else nlp.max_length  # spaCy's default
        else:
            nlp = nlp if nlp is not None else load_pipeline(pipeline, gpu_id)
            if inference is not None:
                _set_inference(nlp, inference)
            backend = local_backend(nlp, batch_size=batch_size, n_process=n_process)
            max_length = nlp.max_length
        stream = InputStream(files, text_field=text_field, max_length=max_length, output_format=output_format)
        _run(stream, backend, manifest, output_format, shard_size, progress, n_process)
        manifest.complete = True
        manifest.save()
    totals = manifest.totals()
    return Summary(manifest.folder, totals["n_records"], totals["n_rejects"], totals["n_words"], len(manifest.shards),
                   len(resumed), time.perf_counter() - start)


def _run(stream: InputStream, backend, manifest: Manifest, output_format: str, shard_size: int,
         progress: Optional[bool], n_process: int) -> None:
    shards = _Shards(manifest, output_format, shard_size)
    bar = _Progress(stream, progress)

    def pending() -> Iterator[InputRecord]:
        for item in stream:
            if item.seq // shard_size in manifest.shards:
                continue
            shards.note(item)
            if isinstance(item, InputRecord):
                yield item

    try:
        with _single_threaded_children() if n_process > 1 else nullcontext():
            for record, doc, data, words in backend(pending()):
                shards.add(record, doc, data, words)
                bar.update(1, words)
        shards.commit_before(None)
    except KeyboardInterrupt:
        shards.abort()
        raise AnnotateInterrupted(
            f"Interrupted: {len(manifest.shards)} finished shards are intact and listed in {manifest.path}; "
            "rerun the same command to resume."
        ) from None
    except OSError as err:
        shards.abort()
        if err.errno in DISK_FULL:
            raise AnnotateError(
                f"Disk full while writing {manifest.folder}: {len(manifest.shards)} finished shards are intact and "
                f"listed in {manifest.path}; free some space and rerun the same command to resume."
            ) from err
        raise
    except BaseException:
        shards.abort()
        raise
    finally:
        bar.close()
