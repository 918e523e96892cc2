"""The datasets the workflow reads, where they come from, and a check that names what is missing.

``project.yml`` lists the same files as assets; this module is what fails first, with advice,
when ``data_dir`` is missing or incomplete (weasel's own dependency check only says "missing").
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Sequence

from ..pretrain.corpus import expand_paths, iter_documents


class DataError(ValueError):
    """The workflow's data folder lacks a file it needs."""


@dataclass(frozen=True)
class Dataset:
    task: str
    files: Sequence[str]  # relative to data_dir
    source: str  # where a user gets it


DATASETS: Dict[str, Dataset] = {
    d.task: d
    for d in (
        Dataset("pretrain", ("pretrain/gutenberg", "pretrain/wikipedia"),
                "any raw text: a folder of .txt files (one document per line or blank-line separated) "
                "or WikiExtractor output"),
        Dataset("tagger", ("pos/ud_english_ewt/en_ewt-ud-train.conllu", "pos/ud_english_ewt/en_ewt-ud-dev.conllu"),
                "UD English-EWT, https://github.com/UniversalDependencies/UD_English-EWT"),
        Dataset("ner", ("ner/conll2003/train.txt", "ner/conll2003/valid.txt"),
                "CoNLL-2003 English (Reuters RCV1 licence, research use), https://www.clips.uantwerpen.be/conll2003/ner/"),
        Dataset("textcat", ("textcat/sst2/train.tsv", "textcat/sst2/dev.tsv"),
                "GLUE SST-2, https://gluebenchmark.com/tasks (label<TAB>sentence with a header row)"),
        Dataset("qa", ("qa/squad2/train.json", "qa/squad2/dev.json"),
                "SQuAD 2.0 JSON, https://rajpurkar.github.io/SQuAD-explorer/"),
    )
}


def check_data(data_dir: Path, tasks: Iterable[str]) -> List[Path]:
    """The files of ``tasks`` under ``data_dir``; raises ``DataError`` naming the first missing
    one, its source, and the setting to change."""
    if not data_dir.is_dir():
        raise DataError(
            f"data_dir {data_dir} does not exist. Point the workflow at your data with "
            f"`--vars.data_dir /path/to/data` (layout: ../shared/data/README.md, or `spacy project assets`)."
        )
    found = []
    for task in tasks:
        if task not in DATASETS:
            raise DataError(f"Unknown task {task!r}; choose from {', '.join(DATASETS)}.")
        dataset = DATASETS[task]
        paths = [data_dir / f for f in dataset.files]
        if task == "pretrain":
            if not any(p.exists() for p in paths):
                raise DataError(
                    f"No pretraining text in {data_dir}: expected {' or '.join(str(p) for p in paths)} "
                    f"({dataset.source})."
                )
            found += [p for p in paths if p.exists()]
            continue
        for path in paths:
            if not path.is_file():
                raise DataError(
                    f"Missing {path} (task {task}): get it from {dataset.source} and place it there, "
                    "or set --vars.data_dir to the folder that holds it."
                )
            found.append(path)
    return found


def sample_text(inputs: Sequence[Path], output: Path, *, max_documents: int = 0, seed: int = 0) -> int:
    """Raw text for vocabulary and pretraining: documents from ``inputs`` (any format
    ``iter_documents`` reads), shuffled, at most ``max_documents`` (0 = all), written
    blank-line separated. Reads a stream; keeps only the sample in memory (reservoir)."""
    rng = random.Random(seed)
    kept: List[List[str]] = []
    seen = 0
    for path in expand_paths(inputs):
        for doc in iter_documents(path):
            seen += 1
            if not max_documents or len(kept) < max_documents:
                kept.append(doc)
            else:
                j = rng.randrange(seen)
                if j < max_documents:
                    kept[j] = doc
    if not kept:
        raise DataError(f"No documents in {', '.join(map(str, inputs))}; give text files or folders.")
    rng.shuffle(kept)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(output.suffix + ".tmp")
    with open(tmp, "w", encoding="utf8") as f:
        for doc in kept:
            f.write("\n".join(doc) + "\n\n")
    tmp.replace(output)
    return len(kept)
