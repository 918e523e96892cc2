"""SQuAD JSON (v1.1 or v2.0) to a ``.spacy`` file for ``spacy train``: one Doc per paragraph,
with its questions in ``doc._.questions`` and, aligned with them, ``doc._.qa_gold`` entries
``{"id", "impossible", "answers": [{"text", "start", "end"}]}`` (token offsets; ``text`` is the
original answer text, which the official scoring compares against)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc, DocBin

from ..convert import ConversionError, _blank_english
from .component import install_extensions

PathLike = Union[str, Path]


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
    install_extensions()
    nlp = nlp or _blank_english()
    report = SquadReport()
    docs = []
    for context, qas in _paragraphs(input_path):
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
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    docbin.to_disk(output_path)
    return report


def _paragraphs(path: PathLike) -> Iterator[Tuple[str, list]]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConversionError(path, None, f"is not SQuAD JSON ({err}).", "Pass the train or dev .json file of SQuAD v1.1/v2.0.") from err
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ConversionError(path, None, "has no top-level \"data\" list.", "Pass a SQuAD v1.1/v2.0 file (data[].paragraphs[].qas[]).")
    for article in data["data"]:
        for paragraph in article.get("paragraphs", []):
            if "context" not in paragraph or "qas" not in paragraph:
                raise ConversionError(path, None, f"a paragraph of {article.get('title')!r} lacks \"context\" or \"qas\".", "Check the file.")
            yield paragraph["context"], paragraph["qas"]


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
    report.answers += 1
    return {"text": text, "start": span.start, "end": span.end}
