"""Issue #16 part 2: annotation on Ray Data, on a local Ray instance (2 CPUs, 100 MB object store)."""
import json
import os
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'spacy-electra[ray]'")
import ray.data  # noqa: E402

from spacy_electra.annotate import annotate  # noqa: E402
from spacy_electra.annotate import ray_data  # noqa: E402
from spacy_electra.annotate.io import InputRecord  # noqa: E402
from spacy_electra.annotate.ray_data import BatchAnnotator, PipelineAnnotator, annotate_dataset, annotate_records, init_local_ray  # noqa: E402

from .test_annotate import build_pipeline, random_texts, read_records, write_jsonl  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # Ray start-up and one actor pool per test: about a minute in all


@pytest.fixture(scope="module")
def marker(tmp_path_factory):
    return tmp_path_factory.mktemp("kill") / "killed"


@pytest.fixture(scope="module")
def local_ray(marker):
    """Workers import this checkout's spacy_electra (and these tests) first."""
    path = os.pathsep.join([str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    env = {"PYTHONPATH": path, "OMP_NUM_THREADS": "1", "ANNOTATE_TEST_MARKER": str(marker)}
    init_local_ray(num_cpus=2, object_store_memory=100 * 1024**2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env})
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def test_local_ray_workers_run_at_the_drivers_priority(local_ray):
    """Ray's default worker niceness (15) starved the actors whenever anything else ran."""
    worker_niceness = ray.get(ray.remote(num_cpus=1)(lambda: os.nice(0)).remote())
    assert worker_niceness == os.nice(0)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return build_pipeline(tmp_path_factory.mktemp("ray"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray-corpus")
    rows = [{"text": t, "n": i} for i, t in enumerate(random_texts(30, seed=7))]
    rows[4] = {"no": "text"}  # a reject
    return write_jsonl(folder / "c.jsonl", rows)


@pytest.fixture(scope="module")
def local_output(pipeline, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    annotate(pipeline, corpus, out, shard_size=12, batch_size=4)
    return out


def test_annotate_ray_writes_the_same_shards_as_a_local_run(local_ray, pipeline, corpus, local_output, tmp_path):
    summary = annotate(pipeline, corpus, tmp_path / "out", shard_size=12, batch_size=4, use_ray=True, ray_workers=2)
    for name in ("records-00000.jsonl", "records-00001.jsonl", "records-00002.jsonl", "rejects.jsonl"):
        assert (tmp_path / "out" / name).read_bytes() == (local_output / name).read_bytes(), name
    assert (summary.n_records, summary.n_rejects) == (29, 1)
    assert summary.n_words == json.loads((local_output / "manifest.json").read_text())["totals"]["n_words"]


def test_a_text_only_dataset_gets_records_and_keeps_its_columns(local_ray, pipeline):
    ds = ray.data.from_items([{"text": "paris is new", "lang": "en"}, {"text": "the city", "lang": "fr"}])
    out = annotate_dataset(ds, pipeline, concurrency=1).take_all()
    got = sorted((row["lang"], json.loads(row["record"])) for row in out)
    assert [(lang, r["text"], r["id"]) for lang, r in got] == [("en", "paris is new", None), ("fr", "the city", None)]
    assert all("entities" in r and "cats" in r for _, r in got)


class DiesOnce(PipelineAnnotator):
    """Kills its own worker process the first time it sees ``c.jsonl:17``; the marker file makes
    the retry (in a restarted actor) go through."""

    def __call__(self, batch):
        marker = Path(os.environ["ANNOTATE_TEST_MARKER"])
        if "c.jsonl:17" in [str(i) for i in batch["id"]] and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return super().__call__(batch)


def test_a_worker_killed_mid_run_is_retried_with_no_record_lost_or_duplicated(local_ray, marker, pipeline, local_output):
    expected = {r["id"]: r for r in read_records(local_output)}
    rows = [{"id": r["id"], "text": r["text"], "meta": json.dumps(r["meta"])} for r in expected.values()]
    out = annotate_dataset(ray.data.from_items(rows), pipeline, batch_size=4, concurrency=2, annotator=DiesOnce).take_all()
    assert marker.exists()  # a worker really died
    ids = [row["id"] for row in out]
    assert len(ids) == len(set(ids)) == len(expected)
    assert {i: json.loads(row["record"]) for i, row in zip(ids, out)} == expected


class RecordsItsBatch(BatchAnnotator):
    """Writes the ids of the batch each text was annotated in into that text's metadata."""

    def annotate(self, texts, ids, metas, *, batch_size):
        metas = [{**meta, "batch": list(ids), "pipe_batch_size": batch_size} for meta in metas]
        return super().annotate(texts, ids, metas, batch_size=batch_size)


def test_ray_annotates_in_the_batches_a_local_run_forms(local_ray, pipeline):
    """Ray Data forms its batches inside its blocks; records must come from the same consecutive
    batches of batch_size that nlp.pipe forms locally (float results depend on the batch)."""
    texts = random_texts(23, seed=3)
    records = [InputRecord(seq=i, id=f"t:{i}", text=t) for i, t in enumerate(texts)]
    out = annotate_records(records, pipeline, batch_size=4, concurrency=2, annotator=RecordsItsBatch)
    ids = [r.id for r in records]
    assert [o["record"]["id"] for o in out] == ids
    for i, o in enumerate(out):
        start = i - i % 4
        assert o["record"]["meta"]["batch"] == ids[start:start + 4]
        assert o["record"]["meta"]["pipe_batch_size"] == len(ids[start:start + 4])


def test_ray_windows_of_shards_end_on_a_batch_boundary(local_ray, pipeline, monkeypatch):
    chunks = []

    def fake_annotate_records(chunk, pipeline, **options):
        chunks.append([r.seq for r in chunk])
        return [{"record": {"id": r.id}, "n_words": 1} for r in chunk]

    monkeypatch.setattr(ray_data, "annotate_records", fake_annotate_records)
    stream = ray_data.ray_backend(pipeline, batch_size=4, gpu=False, workers=1, shard_size=5, window=1)
    records = [InputRecord(seq=i, id=f"t:{i}", text="x") for i in range(23) if i != 6]  # 6: a reject
    out = list(stream(iter(records)))
    assert [r.seq for r, *_ in out] == [r.seq for r in records]
    assert len(chunks) > 1 and all(len(c) % 4 == 0 for c in chunks[:-1])
    assert sum(chunks, []) == [r.seq for r in records]
