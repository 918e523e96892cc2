"""Raw text -> WordPiece ids -> fixed-length sequences packed within documents, on disk.

Building streams: documents are read lazily, encoded in worker processes in chunks, packed in
the main process and appended to one flat binary file, so neither the text nor the ids ever need
to fit in memory. Training then reads rows of that file through ``numpy.memmap``.

Layout of a packed corpus folder: ``ids.bin`` (rows of ``seq_length`` ids, ``[PAD]``-filled,
uint16 when the vocabulary fits, else int32) and ``meta.json``, which records the vocabulary's
fingerprint (its pieces and normalisation): a cache is reused only with the vocabulary it was
built with, since two vocabularies of one size give the same ids different meanings.
"""
from __future__ import annotations

import glob
import hashlib
import json
import multiprocessing
import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..atomic import PathLike
from ..checkpoint.reader import read_vocabulary
from ..pieces import WordPieceEncoder

CHUNK_DOCS = 256


class CorpusError(ValueError):
    """Corpus input or cache that cannot be used as it is."""


# -- reading raw text ---------------------------------------------------------------------------
def expand_paths(inputs: Sequence[PathLike]) -> List[Path]:
    """Files, folders (every file below, sorted) and glob patterns, in the order given."""
    out: List[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            out.append(path)
        else:
            matches = sorted(Path(p) for p in glob.glob(str(item), recursive=True) if Path(p).is_file())
            if not matches:
                raise CorpusError(f"Corpus input {item} matches no file; check corpus.train.")
            out += matches
    if not out:
        raise CorpusError("corpus.train is empty; list text files or folders to pretrain on.")
    return out


def detect_format(path: Path) -> str:
    """``spacy`` for a ``.spacy`` file (spaCy's DocBin: a task's training data, for
    task-adaptive pretraining), ``wiki`` for WikiExtractor ``<doc>`` files, ``blank`` when blank
    lines separate documents, otherwise ``lines`` (one document per line)."""
    if path.suffix == ".spacy":
        return "spacy"
    with open(path, encoding="utf8", errors="replace") as f:
        head = f.read(1 << 16).splitlines()
    content = [i for i, line in enumerate(head) if line.strip()]
    if content and head[content[0]].lstrip().startswith("<doc"):
        return "wiki"
    if content and any(not head[i].strip() for i in range(content[0], content[-1])):
        return "blank"
    return "lines"


def iter_documents(path: Path, fmt: str = "auto") -> Iterator[List[str]]:
    """Documents of one file, each a list of segments (non-empty lines). WikiExtractor titles
    (the first line of a ``<doc>``) are dropped: they repeat the article's first words."""
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "spacy":
        yield from _docbin_documents(path)
        return
    with open(path, encoding="utf8", errors="replace") as f:
        if fmt == "lines":
            for line in f:
                if line.strip():
                    yield [line.strip()]
            return
        doc: List[str] = []
        in_doc, seen_title = False, False
        for line in f:
            text = line.strip()
            if fmt == "wiki":
                if text.startswith("<doc"):
                    doc, in_doc, seen_title = [], True, False
                elif text == "</doc>":
                    if doc:
                        yield doc
                    doc, in_doc = [], False
                elif in_doc and text:
                    if seen_title:
                        doc.append(text)
                    seen_title = True
            elif text:
                doc.append(text)
            elif doc:
                yield doc
                doc = []
        if doc and fmt != "wiki":
            yield doc


def _docbin_documents(path: Path) -> Iterator[List[str]]:
    """The texts of a ``.spacy`` file's docs, one document each (its non-empty lines): only the
    text is read, annotations are ignored."""
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    try:
        docs = DocBin().from_disk(path).get_docs(Vocab())
        for doc in docs:
            lines = [line.strip() for line in doc.text.splitlines() if line.strip()]
            if lines:
                yield lines
    except (ValueError, KeyError, TypeError) as err:  # msgpack/DocBin errors on a damaged file
        raise CorpusError(f"{path} is not a readable .spacy file ({type(err).__name__}); convert the data again.") from err


def vocab_fingerprint(encoder: WordPieceEncoder) -> str:
    """SHA-256 of the pieces in id order and the normalisation settings."""
    settings = [encoder.lowercase, encoder.strip_accents, encoder.tokenize_chinese_chars]
    return hashlib.sha256(json.dumps([encoder.vocab, settings]).encode("utf8")).hexdigest()


# -- packing ------------------------------------------------------------------------------------
def pack_document(
    segments: Sequence[np.ndarray],
    rng: np.random.Generator,
    *,
    seq_length: int,
    cls_id: int,
    sep_id: int,
    short_seq_prob: float = 0.05,
    single_segment_prob: float = 0.1,
) -> List[np.ndarray]:
    """Cut one document's segments into ``[CLS] A [SEP] (B [SEP])`` sequences of at most
    ``seq_length`` ids. Every piece of the document lands in exactly one sequence (a segment that
    overflows a sequence continues in the next, rather than being dropped as in the reference,
    because our segments are whole paragraphs); nothing crosses into another document. A is split
    from B at a segment boundary; without one, or with ``single_segment_prob``, the sequence has a
    single segment. With ``short_seq_prob`` a sequence gets a random shorter target length."""
    segments = [s for s in segments if len(s)]
    if not segments:
        return []
    tokens = np.concatenate(segments)
    boundaries = np.cumsum([len(s) for s in segments])[:-1]
    out: List[np.ndarray] = []
    pos, n = 0, len(tokens)
    while pos < n:
        single = rng.random() < single_segment_prob
        budget = seq_length - (2 if single else 3)
        if rng.random() < short_seq_prob:
            budget = int(rng.integers(2, budget + 1))
        end = min(n, pos + budget)
        inner = boundaries[(boundaries > pos) & (boundaries < end)]
        if single or not len(inner):
            if not single:  # no boundary to split at: one segment may use the spare id slot
                end = min(n, end + 1)
            out.append(np.concatenate([[cls_id], tokens[pos:end], [sep_id]]))
        else:
            cut = int(inner[rng.integers(len(inner))])
            out.append(np.concatenate([[cls_id], tokens[pos:cut], [sep_id], tokens[cut:end], [sep_id]]))
        pos = end
    return out


# -- parallel encoding --------------------------------------------------------------------------
_ENCODER: Optional[WordPieceEncoder] = None


def _init_worker(vocab_dir: str) -> None:
    global _ENCODER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _ENCODER = read_vocabulary(vocab_dir)


def _encode_chunk(docs: List[List[str]]) -> List[List[np.ndarray]]:
    assert _ENCODER is not None
    flat = [segment for doc in docs for segment in doc]
    encoded = _ENCODER.encode_texts(flat)
    out, i = [], 0
    for doc in docs:
        out.append(encoded[i : i + len(doc)])
        i += len(doc)
    return out


def _chunks(docs: Iterable[List[str]], size: int) -> Iterator[List[List[str]]]:
    chunk: List[List[str]] = []
    for doc in docs:
        chunk.append(doc)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def build_corpus(
    inputs: Sequence[PathLike],
    vocab_dir: PathLike,
    output: PathLike,
    *,
    seq_length: int = 128,
    fmt: str = "auto",
    workers: int = 2,
    seed: int = 0,
    short_seq_prob: float = 0.05,
    single_segment_prob: float = 0.1,
    max_documents: Optional[int] = None,
    join_documents: bool = False,
) -> "PackedCorpus":
    """Tokenize ``inputs`` with the vocabulary in ``vocab_dir`` and write a packed corpus folder
    at ``output`` (written under a temporary name and renamed when complete).

    ``join_documents`` packs consecutive documents into shared rows, each document a segment (as
    lines are within a document), in groups of ``CHUNK_DOCS``. Without it a corpus of short
    documents (a sentence-classification set's text) is mostly padding: SST-2's training text
    fills 10% of its 128-id rows, and a step then spends most of its compute on padding columns
    or, with one document per row, sees a tenth of the text it could."""
    output = Path(output)
    encoder = read_vocabulary(vocab_dir)
    dtype = np.uint16 if encoder.vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32
    files = expand_paths(inputs)
    tmp = output.with_name(output.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    docs = (doc for path in files for doc in iter_documents(path, fmt))
    if max_documents is not None:
        docs = (doc for i, doc in zip(range(max_documents), docs))
    n_rows = n_docs = n_tokens = 0
    pool = None
    encoded: Iterator[List[List[np.ndarray]]]
    if workers > 1:
        pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, (str(vocab_dir),))
        encoded = pool.imap(_encode_chunk, _chunks(docs, CHUNK_DOCS))
    else:
        _init_worker(str(vocab_dir))
        encoded = map(_encode_chunk, _chunks(docs, CHUNK_DOCS))
    try:
        with open(tmp / "ids.bin", "wb") as sink:
            for chunk in encoded:
                rows: List[np.ndarray] = []
                n_docs += len(chunk)
                groups = [[segment for doc in chunk for segment in doc]] if join_documents else chunk
                for segments in groups:
                    rows += pack_document(
                        segments, rng, seq_length=seq_length, cls_id=encoder.cls_id, sep_id=encoder.sep_id,
                        short_seq_prob=short_seq_prob, single_segment_prob=single_segment_prob,
                    )
                if not rows:
                    continue
                block = np.full((len(rows), seq_length), encoder.pad_id, dtype=dtype)
                for i, row in enumerate(rows):
                    block[i, : len(row)] = row
                n_tokens += sum(len(r) for r in rows)
                n_rows += len(rows)
                sink.write(block.tobytes())
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    if not n_rows:
        shutil.rmtree(tmp)
        raise CorpusError(f"No text found in {', '.join(map(str, files[:3]))}; check corpus.train and corpus.format.")
    meta = dict(
        n_sequences=n_rows, seq_length=seq_length, dtype=np.dtype(dtype).name, n_documents=n_docs,
        n_tokens=n_tokens, vocab_size=encoder.vocab_size, pad_id=encoder.pad_id, cls_id=encoder.cls_id,
        sep_id=encoder.sep_id, mask_id=encoder.mask_id, vocab_sha256=vocab_fingerprint(encoder),
        join_documents=join_documents, sources=[str(p) for p in files[:1000]],
    )
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(output, ignore_errors=True)
    os.replace(tmp, output)
    return PackedCorpus(output)


# -- reading packed sequences -------------------------------------------------------------------
class PackedCorpus:
    """Memory-mapped packed sequences, read as an endless stream of shuffled epochs.

    Example ``k`` of the stream is row ``perm_e[k % n]`` with ``e = k // n`` and ``perm_e`` a
    permutation seeded by (seed, e): a position in the data is one integer, which is what
    checkpoints store to resume exactly where a run stopped.
    """

    def __init__(self, directory: PathLike) -> None:
        self.directory = Path(directory)
        meta_path = self.directory / "meta.json"
        if not meta_path.exists():
            raise CorpusError(f"{self.directory} is not a packed corpus (no meta.json); build it first.")
        self.meta = json.loads(meta_path.read_text())
        self.seq_length = int(self.meta["seq_length"])
        self.rows = np.memmap(
            self.directory / "ids.bin", dtype=self.meta["dtype"], mode="r",
            shape=(int(self.meta["n_sequences"]), self.seq_length),
        )
        self._perm: Tuple[int, Optional[np.ndarray]] = (-1, None)

    def __len__(self) -> int:
        return self.rows.shape[0]

    @property
    def pad_id(self) -> int:
        return int(self.meta["pad_id"])

    def _permutation(self, epoch: int, seed: int) -> np.ndarray:
        if self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([seed, epoch]).permutation(len(self)))
        return self._perm[1]  # type: ignore[return-value]

    def indices(self, start: int, count: int, seed: int) -> np.ndarray:
        n = len(self)
        out = np.empty(count, dtype=np.int64)
        for i, k in enumerate(range(start, start + count)):
            out[i] = self._permutation(k // n, seed)[k % n]
        return out

    def batch(self, start: int, count: int, seed: int) -> np.ndarray:
        """Examples ``start .. start+count`` of the stream, (count, seq_length) int64."""
        idx = self.indices(start, count, seed)
        order = np.argsort(idx)  # sorted reads are friendlier to the page cache
        rows = np.empty((count, self.seq_length), dtype=np.int64)
        rows[order] = self.rows[idx[order]]
        return rows


def open_or_build(
    cache: PathLike, inputs: Sequence[PathLike], vocab_dir: PathLike, *, seq_length: int, **kwargs
) -> PackedCorpus:
    """Reuse the packed corpus at ``cache`` when it was built with this vocabulary (same
    fingerprint), ``seq_length`` and ``join_documents``, else build it; a cache built otherwise
    is refused."""
    cache = Path(cache)
    if (cache / "meta.json").exists():
        corpus = PackedCorpus(cache)
        encoder = read_vocabulary(vocab_dir)
        if corpus.seq_length != seq_length:
            raise CorpusError(
                f"The packed corpus in {cache} has seq_length {corpus.seq_length}, this run needs {seq_length}: "
                "delete the folder or set corpus.cache to another path."
            )
        if corpus.meta.get("vocab_sha256") != vocab_fingerprint(encoder):
            built = ("was built before vocabularies were recorded" if "vocab_sha256" not in corpus.meta
                     else f"was built with another vocabulary ({corpus.meta['vocab_size']} pieces)")
            raise CorpusError(
                f"The packed corpus in {cache} {built}, and this run tokenizes with {vocab_dir} "
                f"({encoder.vocab_size} pieces): delete the folder or set corpus.cache to another path."
            )
        joined = bool(corpus.meta.get("join_documents", False))
        if joined != bool(kwargs.get("join_documents", False)):
            raise CorpusError(
                f"The packed corpus in {cache} was built with join_documents {str(joined).lower()}, and this run "
                f"asks for {str(not joined).lower()}: delete the folder or set corpus.cache to another path."
            )
        return corpus
    if not inputs:
        raise CorpusError(f"No packed corpus at {cache} and corpus.train is empty: give text to build one from.")
    return build_corpus(inputs, vocab_dir, cache, seq_length=seq_length, **kwargs)
