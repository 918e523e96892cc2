"""Accuracy against speed (issue #25 item 3): teachers, distilled students and spaCy's CNN / BOW
pipelines on one dev set, every inference kind, one interleaved run, one and two threads.

    PYTHONPATH=. .venv/bin/python benchmarks/pareto.py --dev corpus/conll_dev.spacy \\
        --system "teacher=training/conll_electra/model-best:fp32,int8" \\
        --system "student-3L=training/students/ner3/model-best:fp32,int8,onnx-int8" \\
        --system "cnn=training/conll_cnn/model-best" --baseline cnn \\
        --minutes "student-3L=training/students/ner3.time.json" --output results/pareto_ner.json

Each ``--system NAME=PIPELINE[:KIND,...]`` is loaded once per kind (ELECTRA pipelines; spaCy's own
pipelines take no kind). Per row:

1. the dev score (the task's main key: ``ents_f`` for NER, ``cats_micro_f`` for textcat) from
   ``nlp.evaluate`` on the gold docs' words, with that kind in effect (int8 changes scores);
2. words/s for each of ``--threads`` (default 1 and 2): every batch of ``--batch-size`` dev docs
   goes through every row in turn, rotating which goes first (``bench_pipeline_speed``'s
   interleaving), ``--repeats`` times, median. Thread counts run one after another in the same
   process; ONNX sessions are rebuilt for each count, since their thread pool is fixed when built;
3. the ratio of its words/s to the ``--baseline`` row's, at the same thread count;
4. the CPU-minutes its distillation took (user + sys of ``/usr/bin/time -o FILE`` JSON, given by
   ``--minutes NAME=FILE``).

Prints a markdown table and writes everything as JSON to ``--output``. Not a test: its numbers go
into BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_pipeline_speed as bps  # noqa: E402  (machine(), interleaved timing)

SCORE_KEYS = ("ents_f", "cats_micro_f", "tag_acc")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dev", type=Path, required=True, help="gold .spacy dev docs")
    p.add_argument("--system", action="append", required=True, help="NAME=PIPELINE[:KIND,KIND...]")
    p.add_argument("--baseline", required=True, help="the row (NAME, or NAME/KIND) the ratios are to")
    p.add_argument("--minutes", action="append", default=[], help="NAME=TIME_JSON of its distillation")
    p.add_argument("--threads", default="1,2", help="thread counts, in order")
    p.add_argument("--batch-size", type=int, default=64, help="nlp.pipe batch_size")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-docs", type=int, default=None, help="speed on the first N dev docs (scores use all)")
    p.add_argument("--output", type=Path, default=None)
    return p.parse_args(argv)


def systems(specs: List[str]) -> List[Tuple[str, str, Optional[str]]]:
    """(row name, pipeline path, inference kind or None) for every ``--system``."""
    rows = []
    for spec in specs:
        name, _, rest = spec.partition("=")
        path, _, kinds = rest.partition(":")
        if not kinds:
            rows.append((name, path, None))
        rows.extend((f"{name}/{kind}", path, kind) for kind in kinds.split(",") if kind)
    return rows


def cpu_minutes(spec: str) -> Tuple[str, float]:
    name, _, path = spec.partition("=")
    timing = json.loads(Path(path).read_text(encoding="utf8"))
    return name, (timing["user_s"] + timing["sys_s"]) / 60


def load(path: str, kind: Optional[str]):
    import spacy

    nlp = spacy.load(path)
    if kind is not None:
        from spacy_electra.inference import set_inference

        effective = set(set_inference(nlp, kind).values())
        if effective != {kind}:
            raise SystemExit(f"{path}: inference {kind!r} fell back to {effective} here; drop that kind")
    return nlp


def reapply(nlp, kind: Optional[str]) -> None:
    """Rebuild the inference copy (ONNX sessions take the current torch thread count)."""
    if kind is not None and kind.startswith("onnx"):
        from spacy_electra.inference import set_inference

        set_inference(nlp, "fp32")
        set_inference(nlp, kind)


def dev_score(nlp, gold) -> Tuple[str, float]:
    from spacy.tokens import Doc
    from spacy.training import Example

    examples = [Example(Doc(nlp.vocab, words=[t.text for t in d], spaces=[bool(t.whitespace_) for t in d]), d) for d in gold]
    scores = nlp.evaluate(examples, batch_size=64)
    key = next(k for k in SCORE_KEYS if scores.get(k) is not None)
    return key, 100 * float(scores[key])


def table(result: Dict) -> str:
    threads = result["threads"]
    head = ["system", "kind", f"dev {result['score_key']}"]
    for t in threads:
        head += [f"words/s ({t} thr)", f"x {result['baseline']} ({t} thr)"]
    head.append("distill CPU-min")
    lines = ["| " + " | ".join(head) + " |", "| --- | --- |" + " ---: |" * (len(head) - 2)]
    for row in result["rows"]:
        name, _, kind = row["name"].partition("/")
        cells = [name, kind or "-", f"{row['score']:.2f}"]
        for t in threads:
            cells += [f"{row['words_per_second'][str(t)]:,.0f}", f"{row['ratio'][str(t)]:.2f}x"]
        cells.append(f"{row['distill_cpu_minutes']:.1f}" if row.get("distill_cpu_minutes") is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    import spacy
    import torch
    from spacy.tokens import DocBin

    started = time.perf_counter()
    rows = systems(args.system)
    names = [r[0] for r in rows]
    if args.baseline not in names:
        raise SystemExit(f"--baseline {args.baseline!r} is not a row; rows: {', '.join(names)}")
    minutes = dict(cpu_minutes(m) for m in args.minutes)
    thread_counts = [int(t) for t in args.threads.split(",")]
    torch.set_num_threads(max(thread_counts))
    pipelines = {name: load(path, kind) for name, path, kind in rows}
    kinds = {name: kind for name, _, kind in rows}
    gold = list(DocBin().from_disk(args.dev).get_docs(spacy.blank("en").vocab))
    score_key = ""
    scores: Dict[str, float] = {}
    for name in names:
        t0 = time.perf_counter()
        score_key, scores[name] = dev_score(pipelines[name], gold)
        print(f"{name}: {score_key} {scores[name]:.2f} ({time.perf_counter() - t0:.0f} s)", flush=True)

    words = [[t.text for t in d] for d in gold[: args.max_docs]]
    n_words = sum(len(w) for w in words)
    wps: Dict[str, Dict[str, float]] = {name: {} for name in names}
    per_repeat: Dict[str, Dict[str, List[float]]] = {name: {} for name in names}
    for threads in thread_counts:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(threads)
        torch.set_num_threads(threads)
        for name in names:
            reapply(pipelines[name], kinds[name])
            bps.timed_pipe(pipelines[name], words[:8], args.batch_size)  # warm-up: lazy builds, untimed
        print(f"-- {threads} thread(s)", flush=True)
        times = bps.interleaved_seconds(pipelines, names, words, args.batch_size, args.repeats)
        for name in names:
            wps[name][str(threads)] = n_words / statistics.median(times[name])
            per_repeat[name][str(threads)] = [round(n_words / s, 1) for s in times[name]]

    result = {
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "command": " ".join([Path(sys.executable).name, "benchmarks/pareto.py"] + (sys.argv[1:] if argv is None else argv)),
        "machine": bps.machine(),
        "load_average_at_end": os.getloadavg(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "spacy": spacy.__version__},
        "data": {"dev": str(args.dev), "docs_scored": len(gold), "docs_timed": len(words), "words_timed": n_words,
                 "batch_size": args.batch_size, "repeats": args.repeats},
        "threads": thread_counts,
        "score_key": score_key,
        "baseline": args.baseline,
        "rows": [
            {
                "name": name,
                "pipeline": path,
                "score": round(scores[name], 2),
                "words_per_second": {t: round(v, 1) for t, v in wps[name].items()},
                "words_per_second_per_repeat": per_repeat[name],
                "ratio": {t: round(v / wps[args.baseline][t], 3) for t, v in wps[name].items()},
                "distill_cpu_minutes": round(minutes[name.split("/")[0]], 1) if name.split("/")[0] in minutes else None,
            }
            for name, path, _ in rows
        ],
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    print()
    print(table(result))
    bps.write_json(args.output, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
