"""Converters from the corpora in ``../shared/data`` to spaCy ``Doc`` objects and ``.spacy`` files.

Three input families:

* CoNLL NER: CoNLL-2003 (``token POS chunk NER``) and WNUT-17 (``token<TAB>BIO``). The tag is the
  last column; BIO and IOB1 tags are both read (an ``I-`` that does not continue an entity of its
  own type starts one, which is what IOB1 means and is harmless for BIO).
* CoNLL-U (UD English-EWT): words, spaces, tags, morphology, lemmas and dependency trees.
* Tab-separated text classification (SST-2, AG News): ``doc.cats`` over the full label set.

spaCy's own ``spacy convert`` covers the first two, but it only recognises the delimiter
``-DOCSTART- -X- O O`` (CoNLL-2003 ships ``-DOCSTART- -X- -X- O``) and has no TSV converter, so
the project keeps its own, checked against spaCy's in the tests.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

import typer
from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span
from spacy.vocab import Vocab

PathLike = Union[str, Path]
Column = Union[int, str, None]
T = TypeVar("T")

DOCSTART = "-DOCSTART-"
IOB_TAG = re.compile(r"^(?:O|[BI]-\S+)$")
TEXT_HEADER_NAMES = ("text", "sentence", "content", "review", "document")
LABEL_HEADER_NAMES = ("label", "labels", "category", "class")


class ConversionError(ValueError):
    """Malformed input; the message names the file, the line, the problem and the fix."""

    def __init__(self, path: PathLike, line_no: Optional[int], problem: str, fix: str) -> None:
        where = f"{path}:{line_no}" if line_no is not None else str(path)
        super().__init__(f"{where}: {problem} {fix}")
        self.path = Path(path)
        self.line_no = line_no


# ---------------------------------------------------------------------------------------------
# Shared helpers


@lru_cache(maxsize=1)
def _blank_english() -> Language:
    import spacy

    return spacy.blank("en")


def _vocab(nlp: Optional[Language]) -> Vocab:
    return (nlp or _blank_english()).vocab


def _read_lines(path: PathLike) -> Iterator[Tuple[int, str]]:
    """(1-based line number, line without its line ending). Universal newlines, so CRLF files
    (SST-2 train is one) read like LF ones; ``utf-8-sig`` drops a byte-order mark."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for line_no, line in enumerate(handle, start=1):
                yield line_no, line.rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise ConversionError(path, None, f"is not UTF-8 text ({err}).", "Re-encode it, e.g. `iconv -t utf-8`.") from err


def _group(items: Sequence[T], n_per_group: int, starts_group: Callable[[T], bool]) -> Iterator[List[T]]:
    """Split ``items`` before every item that ``starts_group`` and after every ``n_per_group``
    items since the last split (0 = no size limit)."""
    if n_per_group < 0:
        raise ValueError(f"n_sents_per_doc must be >= 0 (0 = no limit), got {n_per_group}.")
    group: List[T] = []
    for item in items:
        if group and (starts_group(item) or (n_per_group and len(group) >= n_per_group)):
            yield group
            group = []
        group.append(item)
    if group:
        yield group


def iob_to_spans(tags: Sequence[str]) -> List[Tuple[int, int, str]]:
    """(start, end, label) token spans from BIO or IOB1 tags of one sentence.

    An entity starts at every ``B-`` and at an ``I-X`` that does not continue an ``X`` entity
    (after ``O``, at the sentence start, or after another type): the IOB1 reading. For valid BIO
    that rule changes nothing, so one function serves both schemes.
    """
    spans: List[Tuple[int, int, str]] = []
    start: Optional[int] = None
    label = ""
    for i, tag in enumerate(tags):
        prefix, _, kind = tag.partition("-")
        if prefix == "I" and start is not None and kind == label:
            continue
        if start is not None:
            spans.append((start, i, label))
            start = None
        if prefix in ("B", "I"):
            start, label = i, kind
    if start is not None:
        spans.append((start, len(tags), label))
    return spans


# ---------------------------------------------------------------------------------------------
# CoNLL NER


@dataclass
class _NerSentence:
    words: List[str]
    pos: List[str]
    ner: List[str]
    after_docstart: bool


def _split_columns(line: str) -> List[str]:
    """Tab-separated when the line has a tab (WNUT-17: tokens may hold odd Unicode spaces),
    otherwise split on runs of spaces (CoNLL-2003)."""
    return line.split("\t") if "\t" in line else line.split()


def _read_ner_sentences(path: PathLike) -> List[_NerSentence]:
    sentences: List[_NerSentence] = []
    rows: List[List[str]] = []
    after_docstart = False
    width: Optional[Tuple[int, int]] = None  # (columns, line number where that was first seen)

    def flush() -> None:
        nonlocal rows, after_docstart
        if rows:
            words = [r[0] for r in rows]
            pos = [r[1] for r in rows] if len(rows[0]) >= 3 else []
            sentences.append(_NerSentence(words, pos, [r[-1] for r in rows], after_docstart))
            rows, after_docstart = [], False

    for line_no, line in _read_lines(path):
        if not line.strip():  # WNUT-17 train separates some sentences with a lone tab
            flush()
            continue
        cols = _split_columns(line)
        cols[-1] = cols[-1].strip()  # a stray trailing space must not spoil the tag
        if cols[0] == DOCSTART:
            flush()
            after_docstart = True
            continue
        if len(cols) < 2 or not cols[0]:
            raise ConversionError(
                path, line_no, f"expected `token ... NER-tag`, got {line!r}.",
                "Each token line needs the token first and its tag last, separated by spaces or a "
                "tab; sentences are separated by an empty line.",
            )
        if width is None:
            width = (len(cols), line_no)
        elif len(cols) != width[0]:
            raise ConversionError(
                path, line_no, f"{len(cols)} columns, but line {width[1]} has {width[0]}: {line!r}.",
                "Every token line needs the same columns; a token with a space in it needs "
                "tab-separated columns.",
            )
        if not IOB_TAG.match(cols[-1]):
            raise ConversionError(
                path, line_no, f"{cols[-1]!r} in the last column is not a BIO/IOB1 tag.",
                "Use O, B-TYPE or I-TYPE there (convert BILUO/BIOES tags first); the NER tag must "
                "be the last column.",
            )
        rows.append(cols)
    flush()
    return sentences


def conll_ner_to_docs(
    path: PathLike, *, n_sents_per_doc: int = 10, nlp: Optional[Language] = None
) -> List[Doc]:
    """Docs with words, sentence starts, ``doc.ents`` and (with 3+ columns) ``token.tag_``.

    Documents follow the ``-DOCSTART-`` lines when the file has any; otherwise every
    ``n_sents_per_doc`` sentences make one (0 = the whole file), so NER still sees context
    beyond a sentence. Entities never cross sentence boundaries.
    """
    sentences = _read_ner_sentences(path)
    if any(s.after_docstart for s in sentences):
        n_sents_per_doc = 0
    vocab = _vocab(nlp)
    return [_ner_doc(vocab, group) for group in _group(sentences, n_sents_per_doc, lambda s: s.after_docstart)]


def _ner_doc(vocab: Vocab, sentences: List[_NerSentence]) -> Doc:
    words: List[str] = []
    pos: List[str] = []
    sent_starts: List[bool] = []
    spans: List[Tuple[int, int, str]] = []
    for sent in sentences:
        offset = len(words)
        words.extend(sent.words)
        pos.extend(sent.pos)
        sent_starts.extend([True] + [False] * (len(sent.words) - 1))
        spans.extend((offset + s, offset + e, label) for s, e, label in iob_to_spans(sent.ner))
    doc = Doc(vocab, words=words, tags=pos if len(pos) == len(words) else None, sent_starts=sent_starts)
    doc.ents = [Span(doc, s, e, label=label) for s, e, label in spans]
    return doc


# ---------------------------------------------------------------------------------------------
# CoNLL-U


@dataclass
class _UdSentence:
    first_line: int
    newdoc: bool = False
    words: List[str] = field(default_factory=list)
    spaces: List[bool] = field(default_factory=list)
    lemmas: List[str] = field(default_factory=list)
    upos: List[str] = field(default_factory=list)
    xpos: List[str] = field(default_factory=list)
    morphs: List[str] = field(default_factory=list)
    heads: List[Optional[int]] = field(default_factory=list)  # 0 = root, 1-based otherwise
    deps: List[str] = field(default_factory=list)


def _space_after(misc: str) -> bool:
    return "SpaceAfter=No" not in misc.split("|")


def _read_conllu_sentences(path: PathLike) -> List[_UdSentence]:
    sentences: List[_UdSentence] = []
    sent: Optional[_UdSentence] = None
    mwt_end, mwt_space = 0, True  # last word id of the current multiword token and its space

    def bad(line_no: int, problem: str, fix: str) -> ConversionError:
        return ConversionError(path, line_no, problem, fix)

    for line_no, line in _read_lines(path):
        if not line.strip():
            if sent is not None and sent.words:
                _check_heads(path, sent)
                sentences.append(sent)
            sent, mwt_end = None, 0
            continue
        if sent is None:
            sent = _UdSentence(first_line=line_no)
        if line.startswith("#"):
            sent.newdoc = sent.newdoc or line.startswith("# newdoc")
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise bad(line_no, f"{len(cols)} tab-separated columns, CoNLL-U has 10: {line!r}.",
                      "Separate ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC with tabs (not spaces).")
        id_, form, lemma, upos, xpos, feats, head, deprel, _deps, misc = cols
        if "." in id_:  # empty node of the enhanced graph: not a surface word
            continue
        if "-" in id_:  # multiword token: its words follow; it decides the space after the last
            try:
                mwt_end = int(id_.split("-")[1])
            except ValueError:
                raise bad(line_no, f"bad multiword token range {id_!r}.", "Ranges look like `3-4`.") from None
            mwt_space = _space_after(misc)
            continue
        if id_ != str(len(sent.words) + 1):
            raise bad(line_no, f"word ID {id_!r} where {len(sent.words) + 1} was expected.",
                      "Word IDs count 1, 2, 3... within a sentence; is an empty line missing between sentences?")
        if head != "_" and not head.isdigit():
            raise bad(line_no, f"HEAD {head!r} is not a word ID.", "Use the head's ID, 0 for the root, or _ .")
        number = len(sent.words) + 1
        sent.words.append(form)
        if number < mwt_end:  # words inside "don't" -> "do" "n't" are written together
            sent.spaces.append(False)
        else:
            sent.spaces.append(mwt_space if number == mwt_end else _space_after(misc))
        sent.lemmas.append("" if lemma == "_" and form != "_" else lemma)
        sent.upos.append("" if upos == "_" else upos)
        sent.xpos.append(upos if xpos == "_" else xpos)  # like spaCy's converter: UPOS stands in
        sent.morphs.append("" if feats == "_" else feats)
        sent.heads.append(None if head == "_" else int(head))
        sent.deps.append("ROOT" if deprel == "root" else deprel)
    if sent is not None and sent.words:
        _check_heads(path, sent)
        sentences.append(sent)
    return sentences


def _check_heads(path: PathLike, sent: _UdSentence) -> None:
    for i, head in enumerate(sent.heads):
        if head is not None and head > len(sent.words):
            raise ConversionError(
                path, sent.first_line,
                f"word {i + 1} of the sentence starting here has HEAD {head}, but it has only {len(sent.words)} words.",
                "HEAD must be a word ID of the same sentence (or 0 for the root).",
            )


def conllu_to_docs(
    path: PathLike, *, n_sents_per_doc: int = 10, nlp: Optional[Language] = None
) -> List[Doc]:
    """Docs with words and spaces (``SpaceAfter=No``), ``tag_`` = XPOS, ``pos_`` = UPOS, morph,
    lemma, heads and deps (``root`` becomes spaCy's ``ROOT``), one sentence per UD sentence.

    A doc holds up to ``n_sents_per_doc`` sentences (0 = no limit) and never crosses a
    ``# newdoc`` line: whole UD documents run to thousands of words, too long to be useful
    training docs. Multiword-token ranges (``1-2``) and empty nodes (``1.1``) are not words.
    """
    vocab = _vocab(nlp)
    sentences = _read_conllu_sentences(path)
    return [_ud_doc(vocab, group) for group in _group(sentences, n_sents_per_doc, lambda s: s.newdoc)]


def _ud_doc(vocab: Vocab, sentences: List[_UdSentence]) -> Doc:
    words: List[str] = []
    spaces: List[bool] = []
    lemmas: List[str] = []
    upos: List[str] = []
    xpos: List[str] = []
    morphs: List[str] = []
    heads: List[int] = []
    deps: List[str] = []
    sent_starts: List[bool] = []
    parsed = all(h is not None for s in sentences for h in s.heads)
    for sent in sentences:
        offset = len(words)
        words += sent.words
        spaces += sent.spaces
        lemmas += sent.lemmas
        upos += sent.upos
        xpos += sent.xpos
        morphs += sent.morphs
        deps += sent.deps
        sent_starts += [True] + [False] * (len(sent.words) - 1)
        if parsed:  # the root points at itself, spaCy's convention
            heads += [offset + (h - 1 if h else i) for i, h in enumerate(sent.heads)]  # type: ignore[operator]
    return Doc(
        vocab, words=words, spaces=spaces, lemmas=lemmas, pos=upos, tags=xpos, morphs=morphs,
        heads=heads if parsed else None, deps=deps if parsed else None,
        sent_starts=None if parsed else sent_starts,  # a parse implies the sentences
    )


# ---------------------------------------------------------------------------------------------
# Tab-separated text classification


def _resolve_column(
    path: PathLike, spec: Column, header: Optional[List[str]], names: Sequence[str], default: int, what: str,
    width: int,
) -> int:
    """Column index from an index, a header name (also a digit string, as the CLI passes) or,
    when ``spec`` is None, the first known header name or ``default``."""
    option = f"{what}_column"
    if isinstance(spec, str) and spec.isdigit():
        spec = int(spec)
    if isinstance(spec, str):
        lowered = [h.strip().lower() for h in header] if header else []
        if spec.lower() not in lowered:
            found = f"the header is {header}" if header else "the file has no header row"
            raise ConversionError(path, 1, f"no column named {spec!r} for {option}: {found}.",
                                  f"Pass {option} as a 0-based column index or a header name.")
        return lowered.index(spec.lower())
    if spec is None and header:
        lowered = [h.strip().lower() for h in header]
        match = next((lowered.index(n) for n in names if n in lowered), None)
        if match is None:
            raise ConversionError(path, 1, f"cannot tell which column is the {what}: header {header}.",
                                  f"Pass {option} (an index or a header name).")
        return match
    index = default if spec is None else spec
    if not 0 <= index < width:
        raise ConversionError(path, 1, f"{option}={index} but rows have {width} columns.",
                              f"Pass {option} between 0 and {width - 1}.")
    return index


def _looks_like_header(fields: List[str]) -> bool:
    known = set(TEXT_HEADER_NAMES) | set(LABEL_HEADER_NAMES)
    return any(f.strip().lower() in known for f in fields)


def tsv_to_docs(
    path: PathLike,
    *,
    text_column: Column = None,
    label_column: Column = None,
    header: Optional[bool] = None,
    labels: Optional[Sequence[str]] = None,
    label_map: Optional[Dict[str, str]] = None,
    multilabel: bool = False,
    label_sep: str = ",",
    nlp: Optional[Language] = None,
) -> List[Doc]:
    """Tokenised docs with ``doc.cats`` over every label (1.0 for the row's, 0.0 for the rest).

    ``header=None`` detects a header row by its column names (``label``, ``sentence``, ``text``,
    ``content``...), and the text and label columns are then found by name; that is what makes
    SST-2 (``label<TAB>sentence``, whose dev file says ``content``) and AG News
    (``text<TAB>label``, no header: text 0, label 1 by default) both work without options.
    Labels stay strings (``"0"``/``"1"``) unless ``label_map`` renames them. ``labels`` fixes
    the full label set: pass it when converting splits separately, or a split that lacks a class
    gets no key for it. ``multilabel`` splits the label field on ``label_sep``.
    """
    nlp = nlp or _blank_english()
    rows = [(n, line.split("\t")) for n, line in _read_lines(path) if line.strip()]
    if not rows:
        raise ConversionError(path, None, "has no rows.", "Check the path; an empty file converts to nothing.")
    has_header = _looks_like_header(rows[0][1]) if header is None else header
    header_fields = rows[0][1] if has_header else None
    body = rows[1:] if has_header else rows
    width = len(rows[0][1])
    text_i = _resolve_column(path, text_column, header_fields, TEXT_HEADER_NAMES, 0, "text", width)
    label_i = _resolve_column(path, label_column, header_fields, LABEL_HEADER_NAMES, 1, "label", width)
    if text_i == label_i:
        raise ConversionError(path, 1, f"text and label are both column {text_i}.",
                              "Pass text_column and label_column explicitly.")

    texts: List[str] = []
    row_labels: List[List[str]] = []
    for line_no, fields in body:
        if len(fields) != width:
            raise ConversionError(
                path, line_no, f"{len(fields)} tab-separated fields where the first row has {width}.",
                "A tab inside the text breaks the columns: replace it with a space.",
            )
        text = fields[text_i].strip()
        if not text:
            raise ConversionError(path, line_no, "empty text.", "Remove the row or give it text.")
        texts.append(text)
        row_labels.append(_row_labels(path, line_no, fields[label_i], multilabel, label_sep, label_map))

    found = sorted({label for row in row_labels for label in row})
    all_labels = list(labels) if labels is not None else found
    unknown = sorted(set(found) - set(all_labels))
    if unknown:
        line_no = next(n for (n, _), row in zip(body, row_labels) if set(row) & set(unknown))
        raise ConversionError(path, line_no, f"label(s) {unknown} are not in labels={all_labels}.",
                              "Add them to the label set or fix the label column.")
    docs = []
    for doc, row in zip(nlp.tokenizer.pipe(texts), row_labels):
        doc.cats = {label: float(label in row) for label in all_labels}
        docs.append(doc)
    return docs


def _row_labels(
    path: PathLike, line_no: int, value: str, multilabel: bool, sep: str, label_map: Optional[Dict[str, str]]
) -> List[str]:
    values = [v.strip() for v in value.split(sep)] if multilabel else [value.strip()]
    values = [v for v in values if v]
    if not values and not multilabel:
        raise ConversionError(path, line_no, "empty label.", "Every row needs a label (or use multilabel).")
    if label_map is not None:
        missing = [v for v in values if v not in label_map]
        if missing:
            raise ConversionError(path, line_no, f"label {missing[0]!r} is not in label_map {label_map}.",
                                  "Add it to the mapping or drop the mapping.")
        values = [label_map[v] for v in values]
    return values


# ---------------------------------------------------------------------------------------------
# Output and command line


def docs_to_docbin(docs: Iterable[Doc], output_path: PathLike) -> int:
    """Write ``docs`` to a ``.spacy`` file (parent folders created); returns how many."""
    docbin = DocBin(store_user_data=False)
    for doc in docs:
        docbin.add(doc)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    docbin.to_disk(output_path)
    return len(docbin)


class ConvertKind(str, Enum):
    ner = "ner"
    conllu = "conllu"
    textcat = "textcat"


def _parse_mapping(value: str) -> Dict[str, str]:
    pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
    if any(len(p) != 2 for p in pairs):
        raise typer.BadParameter(f"{value!r}: write the mapping as OLD=NEW,OLD=NEW (e.g. 0=negative,1=positive).")
    return {old.strip(): new.strip() for old, new in pairs}


def convert_command(
    kind: ConvertKind = typer.Argument(..., help="ner (CoNLL-2003 / WNUT-17), conllu (UD) or textcat (TSV)."),
    input_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="File to convert."),
    output_path: Path = typer.Argument(..., help="The .spacy file to write."),
    n_sents: int = typer.Option(10, "--n-sents", "-n", help="ner/conllu: sentences per doc (0 = no limit); "
                                "ner files with -DOCSTART- lines keep their documents."),
    text_column: Optional[str] = typer.Option(None, help="textcat: text column, index or header name."),
    label_column: Optional[str] = typer.Option(None, help="textcat: label column, index or header name."),
    header: Optional[bool] = typer.Option(None, "--header/--no-header", help="textcat: first row is a header "
                                          "(default: detected from its column names)."),
    labels: Optional[str] = typer.Option(None, help="textcat: the full label set, comma-separated (after "
                                         "--label-map); keeps train and dev consistent."),
    label_map: Optional[str] = typer.Option(None, help="textcat: rename labels, e.g. 0=negative,1=positive."),
    multilabel: bool = typer.Option(False, "--multilabel", help="textcat: comma-separated labels per row."),
) -> None:
    """Convert CoNLL NER, CoNLL-U or tab-separated text/label files to a .spacy DocBin."""
    try:
        if kind == ConvertKind.ner:
            docs = conll_ner_to_docs(input_path, n_sents_per_doc=n_sents)
        elif kind == ConvertKind.conllu:
            docs = conllu_to_docs(input_path, n_sents_per_doc=n_sents)
        else:
            docs = tsv_to_docs(
                input_path, text_column=text_column, label_column=label_column, header=header,
                labels=[x.strip() for x in labels.split(",")] if labels else None,
                label_map=_parse_mapping(label_map) if label_map else None, multilabel=multilabel,
            )
    except ConversionError as err:
        typer.echo(f"Error: {err}", err=True)
        raise typer.Exit(1) from None
    n_docs = docs_to_docbin(docs, output_path)
    if kind == ConvertKind.textcat:
        detail = f"{n_docs} rows, labels {list(docs[0].cats) if docs else []}"
    else:
        n_sentences = sum(1 for doc in docs for _ in doc.sents)
        detail = f"{n_docs} docs, {n_sentences} sentences, {sum(len(d) for d in docs)} tokens"
    typer.echo(f"Wrote {output_path}: {detail}.")
