"""One annotated Doc -> one JSON-ready record.

The record carries what a downstream consumer needs without spaCy: the text, character offsets
(never token indices, which depend on the tokenizer), and only the annotation kinds the Doc
actually has. Scores are rounded to ``SCORE_DECIMALS`` so that float32 noise (a different thread
count, another process) does not make two runs of the same pipeline differ byte for byte.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from spacy.tokens import Doc, Span

Record = Dict[str, Any]

SCORE_DECIMALS = 6
TOKEN_ATTRS = (("TAG", "tag", "tag_"), ("POS", "pos", "pos_"), ("MORPH", "morph", "morph"), ("LEMMA", "lemma", "lemma_"))


def _score(value: float) -> float:
    return round(float(value), SCORE_DECIMALS)


def _span(span: Span) -> Record:
    return {"start": span.start_char, "end": span.end_char, "label": span.label_, "text": span.text}


def qa_answers(doc: Doc) -> Optional[List[Record]]:
    """The answers of ``electra_span_qa``, if it ran on this doc: it keeps plain results
    (question, token ``start``/``end`` or None, ``score`` or None, ``no_answer``) in
    ``doc._.qa_results``. An unanswered question keeps its place with an empty text."""
    if not Doc.has_extension("qa_results"):
        return None
    results = doc._.qa_results
    if results is None:
        return None
    answers = []
    for result in results:
        answer: Record = {"question": result["question"], "text": "", "start": None, "end": None}
        if not result.get("no_answer") and result.get("start") is not None:
            span = doc[result["start"] : result["end"]]
            answer.update(text=span.text, start=span.start_char, end=span.end_char)
        score = result.get("score")
        answer["score"] = None if score is None else _score(score)
        answers.append(answer)
    return answers


def doc_to_record(doc: Doc, *, id: str, meta: Optional[Record] = None) -> Record:
    """``{"id", "text", "meta"}`` plus, when the doc has them: ``entities`` (char offsets),
    ``tokens`` (char offsets with tag/pos/morph/lemma), ``cats``, ``spans`` (every
    ``doc.spans`` group) and ``answers`` (question answering)."""
    record: Record = {"id": id, "text": doc.text, "meta": meta or {}}
    if doc.has_annotation("ENT_IOB"):
        record["entities"] = [_span(ent) for ent in doc.ents]
    attrs = [(key, attr) for flag, key, attr in TOKEN_ATTRS if doc.has_annotation(flag)]
    if attrs:
        record["tokens"] = [
            {"start": t.idx, "end": t.idx + len(t.text), **{key: str(getattr(t, attr)) for key, attr in attrs}}
            for t in doc
        ]
    if doc.cats:
        record["cats"] = {label: _score(score) for label, score in doc.cats.items()}
    if doc.spans:
        record["spans"] = {key: [_span(s) for s in group] for key, group in doc.spans.items()}
    answers = qa_answers(doc)
    if answers is not None:
        record["answers"] = answers
    return record


def count_words(doc: Doc) -> int:
    """Tokens that are not whitespace: what the throughput numbers call words."""
    return sum(not t.is_space for t in doc)


def pipe_item(nlp, text: str, questions: Optional[List[str]], context: Dict[str, Any]):
    """One ``nlp.pipe(..., as_tuples=True)`` input. Questions (for a QA component) travel in the
    context dict, which ``nlp.pipe`` carries to worker processes too; when the pipeline defines
    ``doc._.questions`` they are also set on the Doc before any component runs."""
    if questions is None:
        return text, context
    context = {**context, "questions": questions}
    if Doc.has_extension("questions"):
        doc = nlp.make_doc(text)
        doc._.questions = list(questions)
        return doc, context
    return text, context
