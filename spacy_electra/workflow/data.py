"""The datasets the workflow reads, where they come from, and a check that names what is missing.

Two layouts: the ``demo`` workflow reads the small slices committed under ``data/demo`` (the
default ``data_dir``); ``all`` and ``finetune`` read the full sets (``../shared/data`` or your
own folder in the same layout). ``project.yml`` lists the full sets as assets; this module is
what fails first, naming every missing file with its source, when ``data_dir`` is incomplete
(weasel's own dependency check only says "missing"), and what downloads the files that have a
public URL without ever leaving a half-written file.
"""
from __future__ import annotations

import hashlib
import os
import random
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..pretrain.corpus import expand_paths, iter_documents

TASKS = ("pretrain", "tagger", "ner", "textcat", "qa")
WORKFLOWS = ("demo", "all", "finetune")


class DataError(ValueError):
    """The workflow's data folder lacks a file it needs."""


@dataclass(frozen=True)
class DataFile:
    path: str  # relative to data_dir
    url: Optional[str] = None  # a public, byte-identical copy
    md5: Optional[str] = None  # of that copy


@dataclass(frozen=True)
class Dataset:
    task: str
    files: Sequence[DataFile]
    source: str  # where a user gets it


UD_EWT = "https://raw.githubusercontent.com/UniversalDependencies/UD_English-EWT/r2.14"
PRETRAIN_SOURCE = ("any raw text: a folder of .txt files (one document per line or blank-line separated) "
                   "or WikiExtractor output")

# The full sets, read by the workflows `all` and `finetune`.
FULL_DATASETS: Dict[str, Dataset] = {
    d.task: d
    for d in (
        Dataset("pretrain", (DataFile("pretrain/gutenberg"), DataFile("pretrain/wikipedia")), PRETRAIN_SOURCE),
        Dataset("tagger", (DataFile("pos/ud_english_ewt/en_ewt-ud-train.conllu", f"{UD_EWT}/en_ewt-ud-train.conllu",
                                    "fa9865539033efcf99ea90f8b93d6646"),
                           DataFile("pos/ud_english_ewt/en_ewt-ud-dev.conllu", f"{UD_EWT}/en_ewt-ud-dev.conllu",
                                    "cb1da95ff28a449cb9bc286c922e15e1")),
                "UD English-EWT r2.14 (CC BY-SA 4.0): `spacy project run download-data . --vars.data_dir DIR`"),
        Dataset("ner", (DataFile("ner/conll2003/train.txt"), DataFile("ner/conll2003/valid.txt")),
                "CoNLL-2003 English (Reuters RCV1, research use only, no public copy): obtain it yourself "
                "through https://www.clips.uantwerpen.be/conll2003/ner/ (`token POS chunk NER` lines)"),
        Dataset("textcat", (DataFile("textcat/sst2/train.tsv"), DataFile("textcat/sst2/dev.tsv")),
                "GLUE SST-2 from https://gluebenchmark.com/tasks (train.tsv and dev.tsv of SST-2.zip; "
                "the converter finds the sentence and label columns by their header)"),
        Dataset("qa", (DataFile("qa/squad2/train.json"), DataFile("qa/squad2/dev.json")),
                "SQuAD 2.0 JSON (CC BY-SA 4.0), https://rajpurkar.github.io/SQuAD-explorer/ "
                "(train-v2.0.json and dev-v2.0.json)"),
    )
}

# The demo's slices, committed under data/demo (README.md there: licences and sources).
DEMO_DATASETS: Dict[str, Dataset] = {
    d.task: d
    for d in (
        Dataset("pretrain", (DataFile("pretrain/gutenberg"), DataFile("pretrain/wikipedia")), PRETRAIN_SOURCE),
        Dataset("tagger", (DataFile("pos/ud_english_ewt_slice/train.conllu"),
                           DataFile("pos/ud_english_ewt_slice/dev.conllu")),
                "the repository's data/demo (a slice of UD English-EWT)"),
        Dataset("ner", (DataFile("ner/wnut17_slice/train.conll"), DataFile("ner/wnut17_slice/dev.conll")),
                "the repository's data/demo (a slice of WNUT-17)"),
        Dataset("textcat", (DataFile("textcat/gutenberg_books/train.tsv"),
                            DataFile("textcat/gutenberg_books/dev.tsv")),
                "the repository's data/demo (sentences of four public-domain books)"),
        Dataset("qa", (DataFile("qa/squad2_slice/train.json"), DataFile("qa/squad2_slice/dev.json")),
                "the repository's data/demo (a slice of SQuAD 2.0)"),
    )
}

def datasets_for(workflow: str) -> Dict[str, Dataset]:
    """The datasets ``workflow`` (demo, all, finetune) reads."""
    if workflow not in WORKFLOWS:
        raise DataError(f"Unknown workflow {workflow!r}; choose from {', '.join(WORKFLOWS)}.")
    return DEMO_DATASETS if workflow == "demo" else FULL_DATASETS


def _layout_hint(workflow: str) -> str:
    if workflow == "demo":
        return ("the demo reads the slices committed under data/demo (the default data_dir): "
                "leave --vars.data_dir unset, or give a folder with the same layout")
    return (f"the `{workflow}` workflow reads the full datasets: pass --vars.data_dir ../shared/data "
            "or your own folder in that layout (README: Data)")


def check_data(data_dir: Path, tasks: Iterable[str], workflow: str = "demo") -> List[Path]:
    """The files of ``tasks`` under ``data_dir`` for ``workflow``; raises one ``DataError``
    that names every missing file with its source and the setting to change."""
    datasets = datasets_for(workflow)
    tasks = list(tasks)
    unknown = [t for t in tasks if t not in datasets]
    if unknown:
        raise DataError(f"Unknown task(s) {', '.join(map(repr, unknown))}; choose from {', '.join(TASKS)}.")
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"data_dir {data_dir} is a file, not a folder: pass the folder that holds the datasets "
                        f"with --vars.data_dir ({_layout_hint(workflow)}).")
    if not data_dir.is_dir():
        raise DataError(f"data_dir {data_dir} does not exist: point the workflow at your data with "
                        f"`--vars.data_dir /path/to/data` ({_layout_hint(workflow)}).")
    found: List[Path] = []
    missing: List[str] = []
    for task in tasks:
        dataset = datasets[task]
        paths = [data_dir / f.path for f in dataset.files]
        if task == "pretrain":
            present = [p for p in paths if p.exists()]
            if not present:
                missing.append(f"{' or '.join(str(p) for p in paths)} (task pretrain: {dataset.source})")
            found += present
            continue
        for path in paths:
            if path.is_file():
                found.append(path)
            else:
                missing.append(f"{path} (task {task}: {dataset.source})")
    if missing:
        empty = " (the folder is empty)" if not any(data_dir.iterdir()) else ""
        raise DataError(
            f"data_dir {data_dir}{empty} lacks {len(missing)} file(s) of the `{workflow}` workflow: "
            f"{'; '.join(missing)}. Place them there, or set --vars.data_dir to the folder that holds them "
            f"({_layout_hint(workflow)})."
        )
    return found


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


Opener = Callable[[str], Any]  # urllib.request.urlopen or a stand-in: url -> a readable context manager


def download(url: str, dest: Path, md5: Optional[str], *, opener: Optional[Opener] = None) -> bool:
    """Fetch ``url`` to ``dest`` through a temporary file in the same folder, check its MD5 and
    rename it into place; on any failure the temporary file is removed and ``dest`` is left as it
    was. Returns False when ``dest`` already has the right checksum (nothing fetched)."""
    if dest.is_file() and md5 and md5sum(dest) == md5:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, (opener or urllib.request.urlopen)(url) as response:
            shutil.copyfileobj(response, out)
        got = md5sum(tmp)
        if md5 and got != md5:
            raise DataError(f"{url} has MD5 {got}, not {md5}: the source changed or the download was cut; "
                            f"nothing was written to {dest}. Retry, or fetch it by hand and check it.")
        tmp.replace(dest)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, DataError):
            raise
        if isinstance(err, Exception):
            raise DataError(f"Downloading {url} failed ({type(err).__name__}: {err}); nothing was written "
                            f"to {dest}. Check the network and rerun.") from err
        raise
    return True


def download_data(data_dir: Path, tasks: Iterable[str], *, opener: Optional[Opener] = None
                  ) -> Tuple[List[Path], List[Path], List[str]]:
    """Fetch every file of ``tasks`` (full sets) that has a public URL into ``data_dir``.
    Returns (downloaded, already there, one line per file with no public copy and its source)."""
    fetched: List[Path] = []
    present: List[Path] = []
    manual: List[str] = []
    for task in tasks:
        if task not in FULL_DATASETS:
            raise DataError(f"Unknown task {task!r}; choose from {', '.join(TASKS)}.")
        dataset = FULL_DATASETS[task]
        for f in dataset.files:
            dest = data_dir / f.path
            if f.url is None:
                if not dest.exists():
                    manual.append(f"{dest}: {dataset.source}")
                continue
            (fetched if download(f.url, dest, f.md5, opener=opener) else present).append(dest)
    return fetched, present, manual


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
