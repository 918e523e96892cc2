"""Throughput of ``spacy-electra annotate`` (issue #16): words/s on real documents.

One pipeline (``electra_ner`` on the real encoder ``../shared/models/all-MiniLM-L6-v2-electra``,
untrained head: speed, not accuracy) and one corpus (the 10,000 AG News texts in
``../shared/data/textcat/agnews/train.tsv``, one document per row), timed once each:

plain     ``for doc in nlp.pipe(texts)``: texts in memory, nothing written (the floor)
annotate  ``annotate(..., n_process=1)`` from a JSONL file to JSONL shards (pipeline preloaded)
n2        ``annotate(..., n_process=2)``
ray1      ``annotate(..., use_ray=True)`` on a local Ray with 1 actor (actor start-up included)
ray2      ``annotate(..., use_ray=True)`` with 2 actors

torch runs one thread per worker everywhere (``--threads``, Ray's default for num_cpus=1), so
the ratios compare like with like: annotate/plain (target >= 0.95), n2/annotate, ray1/annotate
and ray2/n2 (target: Ray overhead at most 15%, i.e. >= 0.85).

    .venv/bin/python benchmarks/bench_annotate.py                # full: 10,000 docs
    .venv/bin/python benchmarks/bench_annotate.py --limit 200    # smoke run

Writes ``benchmarks/results/annotate.json``. Skips (exit 0) when ../shared is absent.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "data" / "textcat" / "agnews" / "train.tsv"
ENCODER = SHARED / "models" / "all-MiniLM-L6-v2-electra"
sys.path.insert(0, str(REPO))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--limit", type=int, default=10_000, help="documents (AG News rows)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--shard-size", type=int, default=2_000)
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--runs", default="plain,annotate,n2,ray1,ray2", help="comma-separated subset")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "annotate.json")
    return p.parse_args(argv)


def build_pipeline(path: Path):
    import spacy

    import spacy_electra.pipes.ner  # noqa: F401  (registers the factory from this checkout)

    nlp = spacy.blank("en")
    nlp.add_pipe("electra_ner", config={"labels": ["PER", "ORG", "LOC", "MISC"],
                                        "model": {"tok2vec": {"encoder": {"checkpoint": str(ENCODER)}}}})
    nlp.initialize()
    nlp.to_disk(path)
    return spacy.load(path)


def read_texts(limit: int) -> List[str]:
    texts = []
    with open(CORPUS, encoding="utf-8") as handle:
        for line in handle:
            text = line.rstrip("\n").split("\t")[0].strip()
            if text:
                texts.append(text)
            if len(texts) == limit:
                break
    return texts


def read_records(folder: Path) -> List[str]:
    """Every record line of a run's JSONL shards, in shard order."""
    return [line for path in sorted(folder.glob("records-*.jsonl")) for line in path.read_text(encoding="utf-8").splitlines()]


def diff_records(reference: List[str], other: List[str]) -> List[str]:
    """Ids of the records that differ (by position; a missing or extra record counts too)."""
    ids = []
    for i in range(max(len(reference), len(other))):
        a = reference[i] if i < len(reference) else None
        b = other[i] if i < len(other) else None
        if a != b:
            ids.append(json.loads(a or b)["id"])
    return ids


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if not CORPUS.exists() or not ENCODER.exists():
        print(f"skip: {CORPUS} or {ENCODER} is absent")
        return 0
    import torch

    from spacy_electra.annotate import annotate
    from spacy_electra.annotate.records import count_words

    torch.set_num_threads(args.threads)
    runs = args.runs.split(",")
    work = Path(tempfile.mkdtemp(prefix="bench-annotate-"))
    results: Dict[str, Dict[str, float]] = {}
    keep = False  # the outputs stay on disk when two runs' records differ
    try:
        nlp = build_pipeline(work / "pipeline")
        texts = read_texts(args.limit)
        corpus = work / "corpus.jsonl"
        corpus.write_text("".join(json.dumps({"text": t, "row": i}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
        list(nlp.pipe(texts[:16]))  # warm-up

        def record(name: str, words: int, seconds: float) -> None:
            results[name] = {"words": words, "seconds": round(seconds, 3), "words_per_s": round(words / seconds, 1)}
            print(f"{name:9s} {words:>9,} words {seconds:8.1f} s {words / seconds:10,.0f} words/s", flush=True)

        if "plain" in runs:
            start = time.perf_counter()
            words = sum(count_words(doc) for doc in nlp.pipe(texts, batch_size=args.batch_size))
            record("plain", words, time.perf_counter() - start)
        options = dict(shard_size=args.shard_size, batch_size=args.batch_size, progress=False)
        for name, extra in (("annotate", {"n_process": 1}), ("n2", {"n_process": 2})):
            if name in runs:
                start = time.perf_counter()
                summary = annotate(work / "pipeline", corpus, work / name, nlp=nlp, **extra, **options)
                record(name, summary.n_words, time.perf_counter() - start)
        ray_runs = [r for r in ("ray1", "ray2") if r in runs]
        if ray_runs:
            import ray

            from spacy_electra.annotate.ray_data import init_local_ray

            init_local_ray(num_cpus=2, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads)}})
            ray.data.DataContext.get_current().enable_progress_bars = False
            for name in ray_runs:
                start = time.perf_counter()
                summary = annotate(work / "pipeline", corpus, work / name, use_ray=True, ray_workers=int(name[-1]), **options)
                record(name, summary.n_words, time.perf_counter() - start)
            ray.shutdown()
        if "annotate" in results:
            reference = read_records(work / "annotate")
            for name in results:
                if name not in ("plain", "annotate"):
                    differ = diff_records(reference, read_records(work / name))
                    results[name]["same_records_as_annotate"] = not differ
                    results[name]["records_differing_from_annotate"] = len(differ)
                    if differ:
                        keep = True
                        print(f"{name}: {len(differ)} records differ from annotate's (first: {differ[:5]})")
    finally:
        if keep:
            print(f"Kept the outputs for inspection: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    def ratio(a: str, b: str) -> Optional[float]:
        if a in results and b in results:
            return round(results[a]["words_per_s"] / results[b]["words_per_s"], 3)
        return None

    ratios = {"annotate/plain": ratio("annotate", "plain"), "n2/annotate": ratio("n2", "annotate"),
              "ray1/annotate": ratio("ray1", "annotate"), "ray2/n2": ratio("ray2", "n2")}
    for key, value in ratios.items():
        if value is not None:
            print(f"{key:14s} {value:.3f}")
    out = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared)",
        "corpus": f"{CORPUS.relative_to(SHARED.parent)} first {len(texts)} rows",
        "pipeline": f"electra_ner (untrained) on {ENCODER.name}",
        "args": {k: str(v) for k, v in vars(args).items()},
        "results": results,
        "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"Wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
