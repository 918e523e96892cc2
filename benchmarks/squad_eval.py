"""SQuAD 2.0 with electra_span_qa: train with ``spacy train``, evaluate EM/F1 (all, HasAns,
NoAns) and questions/s on dev, and compare with HF's ``pipeline("question-answering")`` on the
same weights (the trained component exported to an HF ElectraForQuestionAnswering folder).

    .venv/bin/python benchmarks/squad_eval.py --output training/squad \
        --checkpoint ../shared/models/all-MiniLM-L6-v2-electra --epochs 2 --threads 2

Smoke run (minutes): add ``--train-contexts 8 --dev-contexts 4 --max-length 256``.
``--skip-train`` re-evaluates an existing ``OUTPUT/model-best``. Writes ``OUTPUT/results.json``
and prints a markdown table. Not a test: numbers go into BENCHMARKS.md by hand.

Both systems answer every dev question once: ours through ``nlp.pipe`` with the questions in
the context dicts (``as_tuples=True``), HF's pipeline with ``handle_impossible_answer=True``.
Agreement compares normalised answers with our no-answer threshold at 0 (HF's rule: no answer
when the null score beats the best span) and with our learned threshold.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "qa" / "squad2"


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", type=Path, default=Path("training/squad"))
    p.add_argument("--checkpoint", default=str(ROOT.parent / "shared" / "models" / "all-MiniLM-L6-v2-electra"))
    p.add_argument("--train", type=Path, default=DATA / "train.json")
    p.add_argument("--dev", type=Path, default=DATA / "dev.json")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--batch-contexts", type=int, default=4, help="contexts per update (~30 questions)")
    p.add_argument("--learn-rate", type=float, default=1e-4)
    p.add_argument("--max-length", type=int, default=384)
    p.add_argument("--doc-stride", type=int, default=128)
    p.add_argument("--eval-frequency", type=int, default=200)
    p.add_argument("--train-contexts", type=int, default=0, help="use only the first N train contexts (0 = all)")
    p.add_argument("--dev-contexts", type=int, default=0, help="use only the first N dev contexts (0 = all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-hf", action="store_true")
    return p.parse_args(argv)


def limited(path: Path, n_contexts: int, out: Path) -> Path:
    """The SQuAD file cut to its first ``n_contexts`` paragraphs (0 = unchanged)."""
    if not n_contexts:
        return path
    data = json.loads(path.read_text())
    kept, left = [], n_contexts
    for article in data["data"]:
        if left <= 0:
            break
        paragraphs = article["paragraphs"][:left]
        left -= len(paragraphs)
        kept.append({**article, "paragraphs": paragraphs})
    out.write_text(json.dumps({**data, "data": kept}))
    return out


def dev_questions(path: Path) -> List[dict]:
    """Every dev question with its context and gold answer texts ([] = unanswerable)."""
    rows = []
    for article in json.loads(path.read_text())["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                gold = [] if qa.get("is_impossible") else [a["text"] for a in qa["answers"]]
                rows.append({"id": qa["id"], "context": paragraph["context"], "question": qa["question"], "gold": gold})
    return rows


def train(args, train_spacy: Path, dev_spacy: Path, n_train_contexts: int) -> None:
    from spacy.cli.train import train as spacy_train

    steps = max(1, math.ceil(args.epochs * n_train_contexts / args.batch_contexts))
    spacy_train(
        ROOT / "configs" / "span_qa.cfg",
        args.output,
        overrides={
            "paths.train": str(train_spacy),
            "paths.dev": str(dev_spacy),
            "paths.checkpoint": args.checkpoint,
            "components.electra_span_qa.model.max_length": args.max_length,
            "components.electra_span_qa.model.doc_stride": args.doc_stride,
            "training.batcher.size": args.batch_contexts,
            "training.max_steps": steps,
            "training.optimizer.learn_rate.initial_rate": args.learn_rate,
            "training.eval_frequency": min(args.eval_frequency, steps),
        },
    )


def ours(model_dir: Path, questions: List[dict]) -> Dict[str, object]:
    """Answers from nlp.pipe (as_tuples, one context dict per paragraph), timed."""
    import spacy

    import spacy_electra.qa  # noqa: F401

    nlp = spacy.load(model_dir)
    by_context: Dict[str, List[dict]] = {}
    for q in questions:
        by_context.setdefault(q["context"], []).append(q)
    inputs = [(context, {"questions": [q["question"] for q in qs], "qs": qs}) for context, qs in by_context.items()]
    start = time.perf_counter()
    outputs = list(nlp.pipe(inputs, as_tuples=True, batch_size=8))
    seconds = time.perf_counter() - start
    answers = {}
    for doc, ctx in outputs:
        for q, result in zip(ctx["qs"], doc._.qa_results):
            text = doc[result["start"] : result["end"]].text if result["start"] is not None else ""
            na = None if result["score"] is None else result["null_score"] - result["score"]
            answers[q["id"]] = {"text": text, "na": na, "no_answer": result["no_answer"]}
    qa = nlp.get_pipe("electra_span_qa")
    return {"answers": answers, "seconds": seconds, "threshold": qa.cfg["null_threshold"], "nlp": nlp}


def hf(export_dir: Path, questions: List[dict], max_length: int) -> Dict[str, object]:
    from transformers import pipeline

    qa = pipeline("question-answering", model=str(export_dir), tokenizer=str(export_dir), device=-1)
    start = time.perf_counter()
    results = qa(
        question=[q["question"] for q in questions], context=[q["context"] for q in questions],
        handle_impossible_answer=True, max_seq_len=max_length, max_question_len=64, max_answer_len=30, batch_size=8,
    )
    seconds = time.perf_counter() - start
    results = results if isinstance(results, list) else [results]
    return {"answers": {q["id"]: {"text": r["answer"]} for q, r in zip(questions, results)}, "seconds": seconds}


def scores(questions: List[dict], predicted: Dict[str, dict], threshold: Optional[float]) -> Dict[str, float]:
    from spacy_electra.qa.squad import ScoredQuestion, squad_scores

    scored = []
    for q in questions:
        p = predicted[q["id"]]
        if threshold is None:  # the system decided (HF): empty text = no answer
            scored.append(ScoredQuestion(q["gold"], p["text"], 0.0 if p["text"] else 1.0))
        else:
            scored.append(ScoredQuestion(q["gold"], p["text"], p["na"]))
    result = squad_scores(scored, 0.5 if threshold is None else threshold)
    return {k: (100 * v if k != "total" else v) for k, v in result.items()}


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if not args.train.exists() or not args.dev.exists():
        sys.exit(f"SQuAD data not found ({args.train}, {args.dev}); nothing to do.")
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    from spacy_electra.qa import convert_squad, export_span_qa
    from spacy_electra.qa.squad import normalize_answer

    args.output.mkdir(parents=True, exist_ok=True)
    train_json = limited(args.train, args.train_contexts, args.output / "train.json")
    dev_json = limited(args.dev, args.dev_contexts, args.output / "dev.json")
    reports = {}
    for name, path in (("train", train_json), ("dev", dev_json)):
        report = convert_squad(path, args.output / f"{name}.spacy")
        reports[name] = report.__dict__
        print(f"{name}: {report.summary()}")
    start = time.perf_counter()
    if not args.skip_train:
        train(args, args.output / "train.spacy", args.output / "dev.spacy", reports["train"]["contexts"])
    train_seconds = time.perf_counter() - start
    model_dir = args.output / "model-best"
    questions = dev_questions(dev_json)
    mine = ours(model_dir, questions)
    export_dir = export_span_qa(mine["nlp"], args.output / "hf-export")
    results = {
        "machine": platform.platform(), "threads": args.threads, "checkpoint": args.checkpoint,
        "conversion": reports, "train_seconds": train_seconds, "n_questions": len(questions),
        "ours": {
            "threshold": mine["threshold"], "scores": scores(questions, mine["answers"], mine["threshold"]),
            "scores_threshold_0": scores(questions, mine["answers"], 0.0),
            "questions_per_s": len(questions) / mine["seconds"],
        },
    }
    if not args.skip_hf:
        theirs = hf(export_dir, questions, args.max_length)
        agree_0 = agree_learned = 0
        for q in questions:
            h = normalize_answer(theirs["answers"][q["id"]]["text"])
            m = mine["answers"][q["id"]]
            no_answer_0 = m["na"] is None or m["na"] > 0.0
            agree_0 += h == ("" if no_answer_0 else normalize_answer(m["text"]))
            agree_learned += h == ("" if m["no_answer"] else normalize_answer(m["text"]))
        results["hf"] = {
            "scores": scores(questions, theirs["answers"], None),
            "questions_per_s": len(questions) / theirs["seconds"],
            "agreement_threshold_0": agree_0 / len(questions),
            "agreement_learned_threshold": agree_learned / len(questions),
        }
    (args.output / "results.json").write_text(json.dumps(results, indent=2))
    print_table(results)


def print_table(results: dict) -> None:
    print(f"\nSQuAD 2.0 dev ({results['n_questions']} questions), {results['checkpoint']}, {results['threads']} threads; "
          f"training {results['train_seconds'] / 60:.1f} min\n")
    print("| system | EM | F1 | HasAns EM | HasAns F1 | NoAns acc | questions/s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    rows = [
        (f"electra_span_qa (threshold {results['ours']['threshold']:.2f}, fitted on dev)", results["ours"]["scores"], results["ours"]["questions_per_s"]),
        ("electra_span_qa (threshold 0)", results["ours"]["scores_threshold_0"], None),
    ]
    if "hf" in results:
        rows.append(("HF pipeline, same weights", results["hf"]["scores"], results["hf"]["questions_per_s"]))
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    for name, s, speed in rows:
        print(f"| {name} | {fmt(s['exact'])} | {fmt(s['f1'])} | {fmt(s['has_ans_exact'])} | {fmt(s['has_ans_f1'])} | "
              f"{fmt(s['no_ans_acc'])} | {fmt(speed)} |")
    if "hf" in results:
        print(f"\nSame normalised answer as HF: {100 * results['hf']['agreement_threshold_0']:.1f}% (our threshold 0), "
              f"{100 * results['hf']['agreement_learned_threshold']:.1f}% (learned threshold)")


if __name__ == "__main__":
    main()
