"""SQuAD JSON (v1.1 or v2.0) to a ``.spacy`` file for ``spacy train``: one Doc per paragraph,
with its questions in ``doc._.questions`` and, aligned with them, ``doc._.qa_gold`` entries
``{"id", "impossible", "answers": [{"text", "start", "end"}]}`` (token offsets; ``text`` is the
original answer text, which the official scoring compares against).

The file is checked against SQuAD's schema before anything is converted::

    {"data": [{"paragraphs": [{"context": str, "qas": [{"question": str, "id": str | int,
        "is_impossible": bool (optional), "answers": [{"text": str, "answer_start": int}]}]}]}]}

(other keys, such as ``title``, ``version`` and ``plausible_answers``, are ignored; an answer
without ``answer_start`` is looked up by its text). A file that breaks it, or that JSON cannot
read, is a ``ConversionError`` in one line: the file, where (``data[i].paragraphs[j].qas[k]``, or
the line of a JSON syntax error), the problem and the fix. So is a lone surrogate (an escaped
``\\ud800`` without its pair, which no .spacy file can store) in a context, question, id or answer.

Limits, so that conversion stays linear in the size of the file: a context is at most the
tokenizer's ``max_length`` (1,000,000 characters for the default blank English one) and holds no
run of more than ``MAX_RUN_CHARS`` (1,000) characters without whitespace, on which spaCy's
tokenizer takes quadratic time (``spacy_electra.annotate.io``, BENCHMARKS.md section 15). With
them a context is tokenized in time linear in its length, and each answer costs at most one scan
of its context (``str.find``, when its offset is wrong).
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, List, Literal, Optional, Tuple, overload

from spacy.language import Language
from spacy.tokens import Doc, DocBin

from ..annotate.io import MAX_RUN_CHARS, first_long_run
from ..atomic import PathLike, atomic_file
from ..convert import ConversionError, _blank_english
from .component import install_extensions

SCHEMA_FIX = ("A SQuAD v1.1/v2.0 file is {\"data\": [{\"paragraphs\": [{\"context\": ..., \"qas\": [{\"question\": ..., "
              "\"id\": ..., \"answers\": [{\"text\": ..., \"answer_start\": ...}]}]}]}]}.")
_SURROGATE = re.compile("[\ud800-\udfff]")
_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer", bool: "true or false"}


@dataclass
class SquadReport:
    """What the conversion did. ``widened``: answers whose characters cut through a token,
    widened to whole tokens; ``relocated``: answers whose ``answer_start`` did not point at their
    text, placed at the text's first occurrence; ``dropped``: answers whose text is not in the
    context (their question keeps its other answers, or becomes unanswerable if none are left
    and it was not marked impossible: such questions are counted in ``unanswerable_left``)."""

    contexts: int = 0
    questions: int = 0
    impossible: int = 0
    answers: int = 0
    widened: int = 0
    relocated: int = 0
    dropped: int = 0
    unanswerable_left: int = 0

    def summary(self) -> str:
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in asdict(self).items())


def squad_to_docs(input_path: PathLike, nlp: Optional[Language] = None) -> Tuple[List[Doc], SquadReport]:
    """The file's paragraphs as Docs (see the module doc), after the whole file is checked."""
    install_extensions()
    nlp = nlp or _blank_english()
    report = SquadReport()
    docs = []
    for context, qas in list(_paragraphs(input_path, nlp.max_length)):  # every check before any work
        doc = nlp.make_doc(context)
        questions, gold = [], []
        for qa in qas:
            impossible = bool(qa.get("is_impossible", False))
            answers = [] if impossible else [a for a in (_place(doc, a, report) for a in qa.get("answers", [])) if a]
            if not impossible and not answers:
                report.unanswerable_left += 1
            questions.append(qa["question"])
            gold.append({"id": str(qa.get("id", "")), "impossible": impossible, "answers": answers})
            report.questions += 1
            report.impossible += impossible
        doc._.questions = questions
        doc._.qa_gold = gold
        report.contexts += 1
        docs.append(doc)
    return docs, report


def convert_squad(input_path: PathLike, output_path: PathLike, nlp: Optional[Language] = None) -> SquadReport:
    """Write ``input_path`` (SQuAD JSON) as a DocBin at ``output_path``; returns the report."""
    docs, report = squad_to_docs(input_path, nlp)
    docbin = DocBin(store_user_data=True, docs=docs)
    with atomic_file(output_path) as tmp:  # a failed write leaves the old file, never half a new one
        docbin.to_disk(tmp)
    return report


def _load(path: PathLike) -> Any:
    """The file's JSON; anything JSON cannot read is a ConversionError naming the line."""
    fix = "Pass the train or dev .json file of SQuAD v1.1/v2.0."
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ConversionError(path, line, f"is not UTF-8 text (byte {data[err.start]:#04x}).",
                              "Re-encode the file, e.g. `iconv -f latin1 -t utf-8`.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConversionError(path, err.lineno, f"is not valid JSON ({err.msg} at column {err.colno}).", fix) from None
    except RecursionError:
        raise ConversionError(path, None, "is nested deeper than Python's json reads (about 1,000 levels; SQuAD "
                              "nests 6).", fix) from None
    except ValueError as err:  # a number of more digits than int() converts
        raise ConversionError(path, None, f"is not JSON Python can read ({str(err).split(';')[0]}).", fix) from None


class _Checker:
    """Type checks with the path of the value (``data[0].paragraphs[2].qas[1]``) in the message."""

    def __init__(self, path: PathLike) -> None:
        self.path = path

    def fail(self, where: str, problem: str, fix: str = SCHEMA_FIX) -> ConversionError:
        return ConversionError(self.path, None, f"{where}: {problem}", fix)

    def get(self, obj: dict, key: str, kind: type, where: str, required: bool = True) -> Any:
        if key not in obj:
            if required:
                raise self.fail(where, f"\"{key}\" is missing.")
            return None
        value = obj[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(f"{where}.{key}", f"is {_type_name(value)}, not {_TYPE_NAMES[kind]}.")
        return value

    @overload
    def text(self, obj: dict, key: str, where: str, required: Literal[True] = ...) -> str: ...

    @overload
    def text(self, obj: dict, key: str, where: str, required: bool) -> Optional[str]: ...

    def text(self, obj: dict, key: str, where: str, required: bool = True) -> Optional[str]:
        value = self.get(obj, key, str, where, required)
        if value is not None:
            match = _SURROGATE.search(value)
            if match:
                raise self.fail(f"{where}.{key}", f"has a lone surrogate {ascii(match.group())[1:-1]} at character "
                                f"{match.start()}: not Unicode text.", "Remove it, or give the surrogate its pair.")
        return value

    def item(self, value: Any, kind: type, where: str) -> Any:
        if not isinstance(value, kind):
            raise self.fail(where, f"is {_type_name(value)}, not {_TYPE_NAMES[kind]}.")
        return value


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, str):
        return f"a string ({ascii(value[:20])}{'...' if len(value) > 20 else ''})"
    return _TYPE_NAMES.get(type(value), "null" if value is None else type(value).__name__)


def _paragraphs(path: PathLike, max_length: int = 10**6) -> Iterator[Tuple[str, list]]:
    """(context, qas) of every paragraph, each checked against the schema and the limits."""
    data = _load(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ConversionError(path, None, "has no top-level \"data\" list.", "Pass a SQuAD v1.1/v2.0 file (data[].paragraphs[].qas[]).")
    check = _Checker(path)
    for i, article in enumerate(data["data"]):
        check.item(article, dict, f"data[{i}]")
        for j, paragraph in enumerate(check.get(article, "paragraphs", list, f"data[{i}]")):
            where = f"data[{i}].paragraphs[{j}]"
            check.item(paragraph, dict, where)
            context = check.text(paragraph, "context", where)
            qas = check.get(paragraph, "qas", list, where)
            if len(context) > max_length:
                raise check.fail(f"{where}.context", f"has {len(context):,} characters, over the tokenizer's max_length "
                                 f"{max_length:,}.", "Split the paragraph (a SQuAD context is one paragraph).")
            run = first_long_run(context)
            if run is not None:
                raise check.fail(f"{where}.context", f"has {run[1]:,} characters without whitespace at character "
                                 f"{run[0]:,}, over the limit of {MAX_RUN_CHARS:,} (spaCy's tokenizer takes time "
                                 "quadratic in such a run).", "Break the run with spaces or remove it.")
            for k, qa in enumerate(qas):
                _check_question(check, qa, f"{where}.qas[{k}]")
            yield context, qas


def _check_question(check: _Checker, qa: Any, where: str) -> None:
    check.item(qa, dict, where)
    check.text(qa, "question", where)
    if "id" in qa and (isinstance(qa["id"], bool) or not isinstance(qa["id"], int)):
        if not isinstance(qa["id"], str):
            raise check.fail(f"{where}.id", f"is {_type_name(qa['id'])}, not a string or an integer.")
        check.text(qa, "id", where)
    check.get(qa, "is_impossible", bool, where, required=False)
    for m, answer in enumerate(check.get(qa, "answers", list, where, required=False) or []):
        check.item(answer, dict, f"{where}.answers[{m}]")
        check.text(answer, "text", f"{where}.answers[{m}]")
        check.get(answer, "answer_start", int, f"{where}.answers[{m}]", required=False)


def _place(doc: Doc, answer: dict, report: SquadReport) -> Optional[dict]:
    """The answer as whole tokens of ``doc``, or None when its text is not in the context."""
    text, start = answer.get("text", ""), answer.get("answer_start", -1)
    context = doc.text
    if not text.strip():
        report.dropped += 1
        return None
    if context[start : start + len(text)] != text:
        start = context.find(text)
        if start < 0:
            report.dropped += 1
            return None
        report.relocated += 1
    end = start + len(text)
    span = doc.char_span(start, end)
    if span is None:
        span = doc.char_span(start, end, alignment_mode="expand")
        report.widened += 1
    assert span is not None  # the answer's non-blank text is in the context: "expand" finds its tokens
    report.answers += 1
    return {"text": text, "start": span.start, "end": span.end}
