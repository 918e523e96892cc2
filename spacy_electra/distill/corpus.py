"""The distillation corpus: unlabelled text, with gold annotations where the file has them.

* ``*.spacy`` (DocBin): each doc's text is re-tokenised by the pipeline, as ``spacy train``'s
  corpus does, and the doc is kept as the gold reference (tags, entities, cats it has);
* ``*.jsonl``: one JSON object per line, its ``"text"`` string used (other lines skipped);
* anything else: plain text, one doc per non-empty line;
* a folder: every such file in it, in name order.

The corpus is read into memory once (the docs of a step are drawn from it by index, which is
what makes a resumed run draw the same batches); ``training.max_docs`` caps it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, List, Optional, Union

from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.training import Example

from .config import DistillError


def _files(path: Path) -> List[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not path.exists():
        raise DistillError(f"Corpus {path} does not exist.")
    return [path]


def _examples(nlp: Language, path: Path) -> Iterator[Example]:
    if path.suffix == ".spacy":
        try:
            docs = list(DocBin().from_disk(path).get_docs(nlp.vocab))
        except Exception as err:  # a damaged or foreign file: msgpack/zlib/KeyError
            raise DistillError(f"Corpus {path} is not a readable .spacy file ({type(err).__name__}).") from None
        for doc in docs:
            if doc.text.strip():
                yield Example(nlp.make_doc(doc.text), doc)
        return
    try:
        text = path.read_text(encoding="utf8")
    except UnicodeDecodeError:
        raise DistillError(f"Corpus {path} is not UTF-8 text (use .spacy, .jsonl or plain text lines).") from None
    for line in text.splitlines():
        if path.suffix == ".jsonl":
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            text_field = record.get("text") if isinstance(record, dict) else None
            line = text_field if isinstance(text_field, str) else ""
        if line.strip():
            doc = nlp.make_doc(line.strip())
            yield Example(doc, plain_reference(doc))


def plain_reference(doc: Doc) -> Doc:
    """A reference with the doc's words and no annotation (no gold for any component)."""
    return Doc(doc.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc])


def read_corpus(nlp: Language, path: Union[str, Path], max_docs: Optional[int] = None) -> List[Example]:
    """Examples of ``path`` (see the module docstring); a DistillError when none has text."""
    path = Path(path)
    out: List[Example] = []
    for file in _files(path):
        for example in _examples(nlp, file):
            out.append(example)
            if max_docs is not None and len(out) >= max_docs:
                return out
    if not out:
        raise DistillError(f"Corpus {path} has no usable text (.spacy docs, .jsonl lines with a \"text\" string, or non-empty text lines).")
    return out


def has_gold(example: Example) -> bool:
    ref = example.reference
    return bool(ref.cats) or ref.has_annotation("TAG") or ref.has_annotation("POS") or ref.has_annotation("ENT_IOB")
