"""Accuracy cost of each inference backend on a trained pipeline (issue #13).

    PYTHONPATH=. .venv/bin/python benchmarks/inference_accuracy.py training/ner/model-best \\
        corpus/conll_dev.spacy --kinds bf16,int8,onnx,onnx-int8 --output results/ner_backends.json

Loads the pipeline once, evaluates it with ``nlp.evaluate`` (spaCy's scorers) in fp32, then with
each kind switched on by ``set_inference``, and prints every score of interest with its delta to
fp32 (in points). The weights are the same trained fp32 weights every time; only the inference
arithmetic changes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional

SCORES = ("ents_f", "ents_p", "ents_r", "cats_score", "cats_macro_f", "cats_micro_f", "tag_acc", "pos_acc")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("pipeline", type=Path)
    p.add_argument("dev", type=Path, help=".spacy DocBin with the gold annotations")
    p.add_argument("--kinds", default="bf16,int8,onnx,onnx-int8")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit", type=int, default=0, help="first N dev docs only (0 = all)")
    p.add_argument("--output", type=Path, default=None, help="JSON file to write")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    import spacy
    import torch
    from spacy.tokens import Doc, DocBin
    from spacy.training import Example

    from spacy_electra.inference import set_inference

    torch.set_num_threads(args.threads)
    nlp = spacy.load(args.pipeline)
    gold = list(DocBin().from_disk(args.dev).get_docs(nlp.vocab))
    if args.limit:
        gold = gold[: args.limit]
    # Predicted docs carry the gold tokens and nothing else (a copy of the gold doc would keep its
    # entities, which the ner would then see as preset).
    examples = [Example(Doc(nlp.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc]), doc)
                for doc in gold]
    n_words = sum(len(doc) for doc in gold)
    results: Dict[str, Dict[str, float]] = {}
    for kind in ["fp32"] + [k for k in args.kinds.split(",") if k and k != "fp32"]:
        effective = set_inference(nlp, kind)
        nlp(gold[0].text)  # lazy build (int8 copy, ONNX export) outside the timing
        start = time.perf_counter()
        scores = nlp.evaluate(examples, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        row = {k: round(100 * scores[k], 3) for k in SCORES if isinstance(scores.get(k), (int, float))}
        row["words_per_second"] = round(n_words / seconds, 1)
        row["in_effect"] = ",".join(sorted(set(effective.values())))
        results[kind] = row
        base = results["fp32"]
        deltas = ", ".join(f"{k} {v:.2f} ({v - base[k]:+.2f})" for k, v in row.items() if k in SCORES)
        print(f"{kind:10s} {deltas}; {row['words_per_second']:,.0f} words/s", flush=True)
    out = {"pipeline": str(args.pipeline), "dev": str(args.dev), "docs": len(gold), "words": n_words,
           "threads": args.threads, "scores": results,
           "delta_vs_fp32": {k: {s: round(v[s] - results["fp32"][s], 3) for s in v if s in SCORES} for k, v in results.items() if k != "fp32"}}
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(out, indent=2) + "\n", encoding="utf8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
