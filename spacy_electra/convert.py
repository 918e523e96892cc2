"""Converters from training corpora, wherever the user keeps them, to spaCy ``Doc`` objects and
``.spacy`` files.

Three input families:

* CoNLL NER: CoNLL-2003 (``token POS chunk NER``) and WNUT-17 (``token<TAB>BIO``), read by spaCy's
  own ``conll_ner_to_docs``. The tag is the last column; BIO and IOB1 tags are both read.
* CoNLL-U (UD English-EWT), read by spaCy's own ``conllu_to_docs``: words, spaces, tags,
  morphology, lemmas and dependency trees.
* Tab-separated text classification (SST-2, AG News): ``doc.cats`` over the full label set
  (spaCy has no converter for it).

spaCy's converters trust their input: a bad line raises a bare ``ValueError`` or ``IndexError``
without a line number, or is silently misread (a short row shortens the whole sentence). So every
line is checked here first, and a problem is a :class:`ConversionError` naming the file, the line,
the problem and the fix. The checked lines are then handed to spaCy in the form it reads:
whitespace-separated columns, and its ``-DOCSTART- -X- O O`` document delimiter (CoNLL-2003
ships ``-DOCSTART- -X- -X- O``, which spaCy would not recognise); documents (``-DOCSTART-``,
``# newdoc`` or every ``n_sents_per_doc`` sentences) are grouped here.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

import typer
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.training.converters import conll_ner_to_docs as spacy_conll_ner_to_docs
from spacy.training.converters import conllu_to_docs as spacy_conllu_to_docs

from .atomic import PathLike, atomic_file

Column = Union[int, str, None]
T = TypeVar("T")

DOCSTART = "-DOCSTART-"
SPACY_DOC_DELIMITER = "-DOCSTART- -X- O O"
IOB_TAG = re.compile(r"^(?:O|[BI]-\S+)$")
# One UD feature: Name=Value or Name[layer]=Value1,Value2 (FEATS joins them with "|").
UD_FEATURE = re.compile(r"^[A-Za-z0-9]+(?:\[[a-z0-9]+\])?=[A-Za-z0-9]+(?:,[A-Za-z0-9]+)*$")
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


def _read_lines(path: PathLike) -> List[Tuple[int, str]]:
    """(1-based line number, line without its line ending). Universal newlines, so CRLF files
    (SST-2 train is one) read like LF ones; ``utf-8-sig`` drops a byte-order mark. Bytes that
    are not UTF-8 are reported with their line."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line_no = data[: err.start].count(b"\n") + 1
        raise ConversionError(
            path, line_no, f"is not UTF-8 text (byte {data[err.start]:#04x}: {err.reason}).",
            "Re-encode the file, e.g. `iconv -f latin1 -t utf-8`.",
        ) from None
    return [(n, line.rstrip("\r\n")) for n, line in enumerate(io.StringIO(text, newline=None), start=1)]


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


def _into_vocab(docs: List[Doc], nlp: Optional[Language]) -> List[Doc]:
    """spaCy's converters make their own vocab; with ``nlp`` the docs move to its vocab."""
    if nlp is None or not docs:
        return docs
    return list(DocBin(docs=docs, store_user_data=False).get_docs(nlp.vocab))


# ---------------------------------------------------------------------------------------------
# CoNLL NER


@dataclass
class _NerSentence:
    rows: List[List[str]]
    after_docstart: bool


def _split_columns(line: str) -> List[str]:
    """Tab-separated when the line has a tab (WNUT-17 separates columns with one), otherwise
    split on runs of spaces (CoNLL-2003)."""
    return line.split("\t") if "\t" in line else line.split()


def _read_ner_sentences(path: PathLike) -> List[_NerSentence]:
    sentences: List[_NerSentence] = []
    rows: List[List[str]] = []
    after_docstart = False
    width: Optional[Tuple[int, int]] = None  # (columns, line number where that was first seen)

    def flush() -> None:
        nonlocal rows, after_docstart
        if rows:
            sentences.append(_NerSentence(rows, after_docstart))
            rows, after_docstart = [], False

    for line_no, line in _read_lines(path):
        if not line.strip():  # WNUT-17 train separates some sentences with a lone tab
            flush()
            continue
        cols = [c.strip() if i else c for i, c in enumerate(_split_columns(line))]  # stray spaces around tags
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
                "Every token line needs the same columns.",
            )
        if not IOB_TAG.match(cols[-1]):
            raise ConversionError(
                path, line_no, f"{cols[-1]!r} in the last column is not a BIO/IOB1 tag.",
                "Use O, B-TYPE or I-TYPE there (convert BILUO/BIOES tags first); the NER tag must "
                "be the last column.",
            )
        if any(len(c.split()) != 1 for c in cols):
            on_entity = cols[-1] != "O" and not cols[0].strip()
            what = "an entity on a whitespace token" if on_entity else "a column with whitespace in it"
            raise ConversionError(
                path, line_no, f"{what}: {line!r}.",
                "Tokens and tags cannot hold spaces (a whitespace token has no text to find an entity "
                "in): remove the token or replace its spaces.",
            )
        rows.append(cols)
    flush()
    if not sentences:
        raise ConversionError(path, None, "has no token lines.", "Check the path: an empty input converts to nothing.")
    return sentences


def conll_ner_to_docs(
    path: PathLike, *, n_sents_per_doc: int = 10, nlp: Optional[Language] = None
) -> List[Doc]:
    """Docs with words, sentence starts, ``doc.ents`` and (with 3+ columns) ``token.tag_``.

    Documents follow the ``-DOCSTART-`` lines when the file has any; otherwise every
    ``n_sents_per_doc`` sentences make one (0 = the whole file), so NER still sees context
    beyond a sentence. Entities never cross sentence boundaries. The lines are checked here and
    read by spaCy's ``conll_ner_to_docs``.
    """
    sentences = _read_ner_sentences(path)
    if any(s.after_docstart for s in sentences):
        n_sents_per_doc = 0
    groups = _group(sentences, n_sents_per_doc, lambda s: s.after_docstart)
    text = "".join(
        f"{SPACY_DOC_DELIMITER}\n\n" + "\n\n".join("\n".join(" ".join(row) for row in s.rows) for s in group) + "\n\n"
        for group in groups
    )
    docs = list(spacy_conll_ner_to_docs(text, n_sents=0, no_print=True))
    if len(sentences[0].rows[0]) < 3:  # spaCy writes "-" as the tag when there is no POS column
        for doc in docs:
            for token in doc:
                token.tag_ = ""
    return _into_vocab(docs, nlp)


# ---------------------------------------------------------------------------------------------
# CoNLL-U


@dataclass
class _UdSentence:
    first_line: int
    newdoc: bool = False
    lines: List[str] = field(default_factory=list)  # word and multiword-token lines, checked
    heads: List[Optional[int]] = field(default_factory=list)  # 0 = root, 1-based otherwise
    word_lines: List[int] = field(default_factory=list)  # line number of each word


def _read_conllu_sentences(path: PathLike) -> List[_UdSentence]:
    sentences: List[_UdSentence] = []
    sent: Optional[_UdSentence] = None
    mwt_end = 0  # last word ID of the current multiword token

    def bad(line_no: int, problem: str, fix: str) -> ConversionError:
        return ConversionError(path, line_no, problem, fix)

    def finish() -> None:
        if sent is not None and sent.heads:
            if mwt_end > len(sent.heads):
                raise bad(sent.word_lines[-1], f"a multiword token runs to word {mwt_end}, but the sentence ends "
                          f"at word {len(sent.heads)}.", "Fix the range or add its words.")
            _check_tree(path, sent)
            sentences.append(sent)

    for line_no, line in _read_lines(path):
        if not line.strip():
            finish()
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
        names = ("ID", "FORM", "LEMMA", "UPOS", "XPOS", "FEATS", "HEAD", "DEPREL", "DEPS", "MISC")
        for name, value in zip(names, cols):
            if not value.strip() or value != value.strip():
                raise bad(line_no, f"{name} is empty or has spaces around it: {line!r}.",
                          "Every field holds a value; write _ for an unknown one.")
        id_, form, _lemma, _upos, _xpos, feats, head, _deprel, _deps, _misc = cols
        number = len(sent.heads) + 1
        if re.fullmatch(r"[0-9]+\.[0-9]+", id_):  # empty node of the enhanced graph: not a surface word
            continue
        if "-" in id_:  # multiword token: its words follow
            match = re.fullmatch(r"([0-9]+)-([0-9]+)", id_)
            if not match or int(match.group(1)) != number or int(match.group(2)) <= number:
                raise bad(line_no, f"multiword token range {id_!r} where {number}-N (N > {number}) was expected.",
                          "A range names the IDs of the words that follow it, first to last, e.g. `3-4`.")
            mwt_end = int(match.group(2))
            sent.lines.append(line)
            continue
        if id_ != str(number):
            raise bad(line_no, f"word ID {id_!r} where {number} was expected.",
                      "Word IDs count 1, 2, 3... within a sentence; is an empty line missing between sentences?")
        if head != "_" and not re.fullmatch("[0-9]+", head):  # not isdigit(): "²" is a digit int() refuses
            raise bad(line_no, f"HEAD {head!r} is not a word ID.", "Use the head's ID in digits 0-9, 0 for the root, or _ .")
        if head == id_:
            raise bad(line_no, f"word {id_} is its own HEAD.", "Point HEAD at another word, or 0 for the root.")
        if feats != "_":
            wrong = next((f for f in feats.split("|") if not UD_FEATURE.match(f)), None)
            if wrong is not None:
                raise bad(line_no, f"FEATS {feats!r}: {wrong!r} is not a Feature=Value pair.",
                          "Write FEATS as Name=Value pairs joined by | (e.g. Number=Sing|Person=3), or _ .")
        sent.lines.append(line)
        sent.heads.append(None if head == "_" else int(head))
        sent.word_lines.append(line_no)
    finish()
    if not sentences:
        raise ConversionError(path, None, "has no word lines.", "Check the path: an empty input converts to nothing.")
    return sentences


def _check_tree(path: PathLike, sent: _UdSentence) -> None:
    """Every HEAD a word of the sentence (or 0), and following heads from any word reaches the
    root: no cycles. spaCy would build such a doc and fail later, far from the line.

    Linear in the sentence's length: each word is walked once, then marked as reaching the root,
    and a walk stops at the first marked word; the words of the current walk are marked as such
    (not searched for in a list), so a cycle is seen in one step too."""
    n = len(sent.heads)
    for i, head in enumerate(sent.heads):
        if head is not None and head > n:
            raise ConversionError(path, sent.word_lines[i], f"HEAD {head}, but the sentence has only {n} words.",
                                  "HEAD must be a word ID of the same sentence (or 0 for the root).")
    if any(h is None for h in sent.heads):
        return
    unseen, on_walk, reaches_root = 0, 1, 2
    state = [unseen] * n
    for start in range(n):
        walk: List[int] = []
        word = start
        while state[word] == unseen:
            state[word] = on_walk
            walk.append(word)
            head = sent.heads[word]
            if head == 0:
                break
            word = head - 1  # type: ignore[operator]
        else:
            if state[word] == on_walk:
                cycle = walk[walk.index(word):] + [word]
                raise ConversionError(
                    path, sent.word_lines[start], f"HEADs form a cycle ({' -> '.join(str(w + 1) for w in cycle)}).",
                    "Every word's chain of heads must end at the root (HEAD 0).",
                )
        for w in walk:
            state[w] = reaches_root


def conllu_to_docs(
    path: PathLike, *, n_sents_per_doc: int = 10, nlp: Optional[Language] = None
) -> List[Doc]:
    """Docs with words and spaces (``SpaceAfter=No``), ``tag_`` = XPOS (UPOS where XPOS is _),
    ``pos_`` = UPOS, morph, lemma, heads and deps (``root`` becomes spaCy's ``ROOT``), one
    sentence per UD sentence, read by spaCy's ``conllu_to_docs`` after the lines are checked.

    A doc holds up to ``n_sents_per_doc`` sentences (0 = no limit) and never crosses a
    ``# newdoc`` line: whole UD documents run to thousands of words, too long to be useful
    training docs. Multiword-token ranges (``1-2``) and empty nodes (``1.1``) are not words.
    Sentences without heads (HEAD ``_``) give docs with sentence starts and no parse.
    """
    docs = []
    for group in _group(_read_conllu_sentences(path), n_sents_per_doc, lambda s: s.newdoc):
        text = "\n\n".join("\n".join(s.lines) for s in group)
        (doc,) = spacy_conllu_to_docs(text, n_sents=len(group), no_print=True)
        if any(h is None for s in group for h in s.heads):
            doc = _without_parse(doc, [len(s.heads) for s in group])
        docs.append(doc)
    return _into_vocab(docs, nlp)


def _without_parse(doc: Doc, sentence_lengths: List[int]) -> Doc:
    """spaCy reads HEAD ``_`` as "its own root"; a doc without a parse keeps the UD sentences."""
    starts: List[Union[bool, int, None]] = [i == 0 for n in sentence_lengths for i in range(n)]
    return Doc(
        doc.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc],
        lemmas=[t.lemma_ for t in doc], pos=[t.pos_ for t in doc], tags=[t.tag_ for t in doc],
        morphs=[str(t.morph) for t in doc], sent_starts=starts,
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
    if isinstance(spec, str) and re.fullmatch("[0-9]+", spec):  # "²" is isdigit() but no index
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
    if not body:
        raise ConversionError(path, rows[0][0], "has a header row and nothing else.",
                              "Check the path: an empty input converts to nothing.")
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
    tokenizer: Any = nlp.tokenizer  # Language types it as a plain callable; spaCy's Tokenizer has .pipe
    for doc, row in zip(tokenizer.pipe(texts), row_labels):
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
    with atomic_file(output_path) as tmp:  # a failed write leaves no half .spacy file
        docbin.to_disk(tmp)
    return len(docbin)


class ConvertKind(str, Enum):
    ner = "ner"
    conllu = "conllu"
    textcat = "textcat"
    squad = "squad"


def _parse_mapping(value: str) -> Dict[str, str]:
    pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
    if any(len(p) != 2 for p in pairs):
        raise typer.BadParameter(f"{value!r}: write the mapping as OLD=NEW,OLD=NEW (e.g. 0=negative,1=positive).")
    return {old.strip(): new.strip() for old, new in pairs}


def convert_command(
    kind: ConvertKind = typer.Argument(..., help="ner (CoNLL-2003 / WNUT-17), conllu (UD), textcat (TSV) or squad (SQuAD 1.1/2.0 JSON)."),
    input_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="File to convert."),
    output_path: Path = typer.Argument(..., help="The .spacy file to write."),
    n_sents: int = typer.Option(10, "--n-sents", "-n", min=0, help="ner/conllu: sentences per doc (0 = no limit); "
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
    """Convert CoNLL NER, CoNLL-U, tab-separated text/label files or SQuAD JSON to a .spacy DocBin.

    A malformed input is a ConversionError naming the file and line; the command line reports
    it in one line (spacy_electra.cli_errors) and writes no .spacy file."""
    if kind == ConvertKind.squad:
        from .qa.convert import convert_squad

        report = convert_squad(input_path, output_path)
        typer.echo(f"Wrote {output_path}: {report.summary()}.")
        return
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
    n_docs = docs_to_docbin(docs, output_path)
    if kind == ConvertKind.textcat:
        detail = f"{n_docs} rows, labels {list(docs[0].cats) if docs else []}"
    else:
        n_sentences = sum(1 for doc in docs for _ in doc.sents)
        detail = f"{n_docs} docs, {n_sentences} sentences, {sum(len(d) for d in docs)} tokens"
    typer.echo(f"Wrote {output_path}: {detail}.")
