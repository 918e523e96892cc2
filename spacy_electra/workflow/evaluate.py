"""The workflow's evaluation table: every task's dev scores (spaCy's keys) and words/s.

Each task is evaluated with only its component enabled (plus a shared ``electra_transformer``
it listens to), so words/s is the cost of that task alone, measured on the dev set it is scored
on. Results go to ``metrics/<task>.json`` and one Markdown table, ``metrics/summary.md``.

Every dev file is checked (a readable ``.spacy`` file with docs) before the pipeline is loaded,
and the metrics files are written only once every task has been scored, each through a
temporary file: a failed evaluation leaves the previous metrics as they were.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

# The scores shown in the table, per task, first present wins the "main" column.
MAIN_KEYS = {
    "tagger": ("tag_acc", "pos_acc"),
    "ner": ("ents_f", "ents_p", "ents_r"),
    "textcat": ("cats_score", "cats_macro_f", "cats_macro_auc"),
    "qa": ("qa_f1", "qa_exact", "qa_has_ans_f1", "qa_no_ans_acc"),
}


def check_dev_file(task: str, path: Path) -> int:
    """The number of docs in ``path``; ``ValueError`` (one line: the cause and the fix) unless it
    is a readable .spacy file (a DocBin) with at least one doc."""
    from spacy.tokens import DocBin

    fix = f"give --dev {task}=PATH a .spacy file written by `spacy-electra convert` or spaCy's DocBin"
    if not path.is_file():
        what = "a folder" if path.is_dir() else "missing"
        raise ValueError(f"--dev {task}={path} is {what}, not a .spacy file: {fix}.")
    try:
        docbin = DocBin().from_bytes(path.read_bytes())
    except Exception as err:  # zlib, msgpack or key errors: the bytes are not a DocBin
        raise ValueError(
            f"--dev {task}={path} is not a .spacy file spaCy can read ({type(err).__name__}): {fix}."
        ) from None
    if len(docbin) == 0:
        raise ValueError(f"--dev {task}={path} holds no docs: {fix}, from a non-empty dev set.")
    return len(docbin)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def evaluate_tasks(pipeline: Any, dev: Dict[str, Path], output: Path, *, limit: int = 0,
                   compare: Optional[Tuple[str, Any]] = None, name: str = "baseline") -> List[dict]:
    """Score each ``task -> dev.spacy`` with the component named ``task`` of ``pipeline`` (a path,
    an installed package name or a loaded ``Language``) and write the metrics files. Returns one
    row per task. Nothing is written unless every task was scored.

    ``compare = (NAME, PIPELINE)`` scores a second pipeline on the same dev sets (the ``adapt``
    workflow: fine-tuned from the adapted encoder, against ``pipeline`` fine-tuned from the
    original): its rows go to ``output/NAME/<task>.json``, and ``summary.md`` holds both tables
    and one comparison row per task (main score of each, and the difference)."""
    if compare is not None and (not re.fullmatch(r"[A-Za-z0-9_.-]+", compare[0]) or compare[0] in dev):
        raise ValueError(f"--compare name {compare[0]!r} must be a plain folder name (letters, digits, _ . -) "
                         "and not a task's name.")
    for task, path in dev.items():
        check_dev_file(task, path)
    rows = score_tasks(pipeline, dev, limit=limit)
    other = score_tasks(compare[1], dev, limit=limit) if compare is not None else None
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} is a file: give a folder for the metrics.")
    output.mkdir(parents=True, exist_ok=True)
    for row in rows:
        _write_atomically(output / f"{row['task']}.json", json.dumps(row, indent=2) + "\n")
    summary = summary_table(rows)
    if compare is not None and other is not None:
        (output / compare[0]).mkdir(exist_ok=True)
        for row in other:
            _write_atomically(output / compare[0] / f"{row['task']}.json", json.dumps(row, indent=2) + "\n")
        summary = (f"{name} ({pipeline}):\n\n{summary}\n{compare[0]} ({compare[1]}):\n\n{summary_table(other)}\n"
                   f"{comparison_table(rows, other, name, compare[0])}")
    _write_atomically(output / "summary.md", summary)
    return rows


def score_tasks(pipeline: Any, dev: Dict[str, Path], *, limit: int = 0) -> List[dict]:
    """One row per task: dev scores under spaCy's keys, docs, words and words/s."""
    import spacy
    from spacy.training import Corpus

    nlp = spacy.load(pipeline) if not hasattr(pipeline, "pipe_names") else pipeline
    rows = []
    for task, path in dev.items():
        if task not in nlp.pipe_names:
            raise ValueError(f"The pipeline {pipeline} has no component {task!r} (it has {', '.join(nlp.pipe_names)}).")
        enable = [name for name in nlp.pipe_names if name == task or name == "electra_transformer"]
        examples = list(Corpus(path, limit=limit)(nlp))
        n_words = sum(len(eg.reference) for eg in examples)
        with nlp.select_pipes(enable=enable):
            start = time.perf_counter()
            scores = nlp.evaluate(examples)
            seconds = time.perf_counter() - start
        scalar = {k: v for k, v in scores.items() if isinstance(v, (int, float)) and not k.startswith("speed")}
        rows.append({
            "task": task,
            "dev": str(path),
            "n_docs": len(examples),
            "n_words": n_words,
            "words_per_second": n_words / seconds if seconds else 0.0,
            "scores": scalar,
        })
    return rows


def comparison_table(rows: List[dict], other: List[dict], name: str, other_name: str) -> str:
    """One row per task: the main score of both runs and their difference."""
    lines = [
        f"| task | score | {name} | {other_name} | difference |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    theirs = {row["task"]: row for row in other}
    for row in rows:
        key = main_score(row)
        b = theirs.get(row["task"])
        if key is None or b is None or b["scores"].get(key) is None:
            continue
        x, y = row["scores"][key], b["scores"][key]
        lines.append(f"| {row['task']} | {key} | {x:.3f} | {y:.3f} | {y - x:+.3f} |")
    return "\n".join(lines) + "\n"


def main_score(row: dict) -> Optional[str]:
    for key in MAIN_KEYS.get(row["task"], ()):
        if key in row["scores"] and row["scores"][key] is not None:
            return key
    return None


def summary_table(rows: List[dict]) -> str:
    lines = [
        "| task | dev docs | score | value | other scores | words/s |",
        "| --- | ---: | --- | ---: | --- | ---: |",
    ]
    for row in rows:
        key = main_score(row)
        others = [
            f"{k} {row['scores'][k]:.3f}" for k in MAIN_KEYS.get(row["task"], ())
            if k != key and row["scores"].get(k) is not None
        ]
        value = f"{row['scores'][key]:.3f}" if key else "-"
        lines.append(
            f"| {row['task']} | {row['n_docs']} | {key or '-'} | {value} | {', '.join(others) or '-'} "
            f"| {row['words_per_second']:,.0f} |"
        )
    return "\n".join(lines) + "\n"
