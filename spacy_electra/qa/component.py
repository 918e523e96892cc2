"""``electra_span_qa``: extractive question answering over the Doc as context.

Questions reach the component in one of three ways:

* ``doc._.questions = [...]`` before the component runs;
* ``nlp.pipe([(text, {"questions": [...]}), ...], as_tuples=True)`` (also with ``n_process > 1``):
  the context dict's ``"questions"`` is used when ``doc._.questions`` is unset;
* ``nlp.get_pipe("electra_span_qa").answer(text_or_doc, questions)``, which returns the answers.

Results, one per question and in order, are ``doc._.answers`` (``QAAnswer``: the question, the
answer as a Span of whole tokens or ``None`` for "no answer", the best span score and the null
score). Answers also go to ``doc.spans[spans_key]`` with the question's index as label ("0",
"1", ...). The raw results live in ``doc._.qa_results`` (plain data, so Docs keep them through
``DocBin`` and multiprocessing); ``doc._.answers`` is computed from them.

No-answer rule (SQuAD 2.0): a question gets no answer when ``null_score - score >
null_threshold``, where the null score is the [CLS] start + end logit. The threshold is learned on
the dev set during ``spacy train``: every evaluation after an update sets it to the value that
maximises F1 on the dev questions (the official script's ``best_f1_thresh``), so a saved
``model-best``/``model-last`` carries the threshold fitted at its own evaluation. A loaded
pipeline never refits it in ``score`` (``spacy evaluate`` on test data stays honest); call
``fit_threshold(examples)`` to fit it explicitly, e.g. for an HF checkpoint used without training.
With ``null_threshold = null`` (the default) ``initialize`` takes the checkpoint's
``null_score_diff_threshold`` (which ``export_span_qa`` writes), else 0.0 (HF's rule).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.util import minibatch
from thinc.api import Config, Model, Optimizer

from ..pipes.saved import CheckedPipe
from .architecture import encode_tasks
from .features import QATask, best_spans, piece_tokens, row_loss, token_span_to_pieces
from .squad import ScoredQuestion, best_threshold, squad_scores

DEFAULT_MODEL = """
[model]
@architectures = "spacy_electra.SpanQA.v1"
checkpoint = "google/electra-small-discriminator"
max_length = 384
max_query_pieces = 64
doc_stride = 128
"""

Result = Dict[str, Any]  # question, start, end, score, null_score, no_answer


@dataclass(frozen=True)
class QAAnswer:
    """One question's answer. ``span`` is a Span of the context Doc (whole tokens, so
    ``span.start_char``/``span.end_char`` index the context text) or None for "no answer".
    ``score`` is the best span's start + end logit and ``null_score`` the [CLS] one; both are
    None when the question was not asked (empty or whitespace-only question, or empty context)."""

    question: str
    span: Optional[Span]
    score: Optional[float]
    null_score: Optional[float]

    @property
    def no_answer(self) -> bool:
        return self.span is None

    @property
    def text(self) -> str:
        return self.span.text if self.span is not None else ""


def install_extensions() -> None:
    for name, kwargs in (
        ("questions", {"default": None}),
        ("qa_results", {"default": None}),
        ("qa_gold", {"default": None}),
        ("answers", {"getter": _answers}),
    ):
        if not Doc.has_extension(name):
            Doc.set_extension(name, **kwargs)


def _answers(doc: Doc) -> Optional[List[QAAnswer]]:
    results = doc._.qa_results
    if results is None:
        return None
    return [
        QAAnswer(
            question=r["question"],
            span=None if r["no_answer"] else doc[r["start"] : r["end"]],
            score=r["score"],
            null_score=r["null_score"],
        )
        for r in results
    ]


def questions_of(doc: Doc) -> Optional[List[str]]:
    """``doc._.questions``, else the ``"questions"`` of an ``nlp.pipe(..., as_tuples=True)``
    context dict, else None (the component leaves the doc alone)."""
    questions = doc._.questions
    if questions is None:
        # spaCy keeps the context of ``nlp.pipe(as_tuples=True)`` in ``Doc._context`` and has no
        # public accessor for it; reading it is the only way a component can see that context.
        context = getattr(doc, "_context", None)
        if isinstance(context, dict):
            questions = context.get("questions")
    if questions is None:
        return None
    if isinstance(questions, str) or not all(isinstance(q, str) for q in questions):
        raise TypeError(f"Questions must be a list of strings, got {questions!r}; wrap a single question in a list.")
    return list(questions)


@Language.factory(
    "electra_span_qa",
    assigns=["doc.spans", "doc._.qa_results"],
    default_config={
        "model": Config().from_str(DEFAULT_MODEL)["model"],
        "spans_key": "qa",
        "n_best": 20,
        "max_answer_pieces": 30,
        "null_threshold": None,
    },
    default_score_weights={"qa_f1": 1.0, "qa_exact": 0.0, "qa_has_ans_f1": None, "qa_no_ans_acc": None},
)
def make_electra_span_qa(
    nlp: Language, name: str, model: Model, spans_key: str, n_best: int, max_answer_pieces: int,
    null_threshold: Optional[float],
) -> "ElectraSpanQA":
    return ElectraSpanQA(
        nlp.vocab, model, name, spans_key=spans_key, n_best=n_best, max_answer_pieces=max_answer_pieces,
        null_threshold=null_threshold, tokenizer=nlp.tokenizer,
    )


class ElectraSpanQA(CheckedPipe):
    def __init__(
        self,
        vocab,
        model: Model,
        name: str = "electra_span_qa",
        *,
        spans_key: str = "qa",
        n_best: int = 20,
        max_answer_pieces: int = 30,
        null_threshold: Optional[float] = None,
        tokenizer: Optional[Callable[[str], Doc]] = None,
    ) -> None:
        if n_best < 1 or max_answer_pieces < 1:
            raise ValueError(f"n_best={n_best} and max_answer_pieces={max_answer_pieces} must both be at least 1.")
        install_extensions()
        self.vocab = vocab
        self.model = model
        self.name = name
        self.cfg: Dict[str, Any] = {
            "spans_key": spans_key,
            "n_best": n_best,
            "max_answer_pieces": max_answer_pieces,
            "null_threshold": None if null_threshold is None else float(null_threshold),
        }
        self._tokenizer = tokenizer
        self._learn_threshold = False  # set by update(): evaluations during training refit it

    @property
    def null_threshold(self) -> float:
        """No answer when ``null_score - score`` exceeds this. Configured, fitted on dev, or
        (config ``null_threshold = null``, the default) read at ``initialize`` from the
        checkpoint's ``null_score_diff_threshold`` (written by ``export_span_qa``), else 0.0,
        HF's default rule."""
        value = self.cfg["null_threshold"]
        return 0.0 if value is None else value

    # -- prediction ---------------------------------------------------------------------------
    def __call__(self, doc: Doc) -> Doc:
        questions = questions_of(doc)
        if questions is not None:
            self.set_annotations([doc], self._predict([doc], [questions]))
        return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 32) -> Iterator[Doc]:
        for batch in minibatch(stream, batch_size):
            batch = list(batch)
            self.set_annotations(batch, self.predict(batch))
            yield from batch

    def predict(self, docs: Iterable[Doc]) -> List[Optional[List[Result]]]:
        """One result list per doc that has questions, None for the others."""
        docs = list(docs)
        all_asked = [(i, questions_of(doc)) for i, doc in enumerate(docs)]
        asked = [(i, qs) for i, qs in all_asked if qs is not None]
        results: List[Optional[List[Result]]] = [None] * len(docs)
        answered = self._predict([docs[i] for i, _ in asked], [qs for _, qs in asked])
        for (i, _), doc_results in zip(asked, answered):
            results[i] = doc_results
        return results

    def set_annotations(self, docs: Iterable[Doc], results: Sequence[Optional[List[Result]]]) -> None:
        key = self.cfg["spans_key"]
        for doc, doc_results in zip(docs, results):
            if doc_results is None:
                continue
            doc._.questions = [r["question"] for r in doc_results]
            doc._.qa_results = doc_results
            doc.spans[key] = [
                Span(doc, r["start"], r["end"], label=str(i)) for i, r in enumerate(doc_results) if not r["no_answer"]
            ]

    def answer(self, context: Union[str, Doc], questions: Sequence[str]) -> List[QAAnswer]:
        """Answer ``questions`` about ``context`` (a text, tokenized with the pipeline's
        tokenizer, or a Doc): one ``QAAnswer`` per question, in order. The answers are also
        written to the Doc (``doc._.answers``, ``doc.spans``), reachable as ``answer.span.doc``."""
        if isinstance(questions, str):
            raise TypeError("questions must be a list of strings; wrap a single question: answer(context, [question]).")
        if isinstance(context, Doc):
            doc = context
        elif isinstance(context, str):
            if self._tokenizer is None:
                raise ValueError(f"{self.name!r} was built without a tokenizer; pass a Doc, or create it with nlp.add_pipe.")
            doc = self._tokenizer(context)
        else:
            raise TypeError(f"context must be a str or a Doc, got {type(context).__name__}.")
        doc._.questions = list(questions)
        self.set_annotations([doc], self.predict([doc]))
        return doc._.answers

    def _tasks(self, docs: Sequence[Doc], questions: Sequence[Sequence[str]]) -> List[List[QATask]]:
        tasks, lengths = encode_tasks(self.model, [[t.text for t in doc] for doc in docs], [list(q) for q in questions])
        limit = self.model.attrs["max_query_pieces"]
        too_long = [n for n in lengths if n > limit]
        if too_long:
            warnings.warn(
                f"{len(too_long)} question(s) longer than max_query_pieces={limit} were truncated to their first "
                f"{limit} pieces (longest: {max(too_long)}); raise max_query_pieces in [components.{self.name}.model].",
                stacklevel=3,
            )
        return tasks

    def _predict(self, docs: Sequence[Doc], questions: Sequence[Sequence[str]]) -> List[List[Result]]:
        if not docs:
            return []
        tasks = self._tasks(docs, questions)
        flat = [task for doc_tasks in tasks for task in doc_tasks]
        rows, logits = self.model.predict(flat) if any(t.answerable for t in flat) else ([], [])
        ops = self.model.ops
        spans = best_spans(
            flat, rows, [ops.to_numpy(x) for x in logits],
            n_best=self.cfg["n_best"], max_answer_pieces=self.cfg["max_answer_pieces"],
        )
        threshold = self.null_threshold
        results: List[List[Result]] = []
        k = 0
        for doc_tasks, doc_questions in zip(tasks, questions):
            owner = piece_tokens(doc_tasks[0].context) if doc_tasks else None
            doc_results: List[Result] = []
            for question in doc_questions:
                found = spans[k]
                k += 1
                start = end = None
                no_answer = True
                if found.span is not None:
                    # A span comes from a row that ran: the doc has tasks, and both scores are set.
                    assert owner is not None and found.score is not None and found.null_score is not None
                    start, end = int(owner[found.span[0]]), int(owner[found.span[1]]) + 1
                    no_answer = found.null_score - found.score > threshold
                doc_results.append(
                    {"question": question, "start": start, "end": end, "score": found.score,
                     "null_score": found.null_score, "no_answer": bool(no_answer)}
                )
            results.append(doc_results)
        return results

    # -- training -----------------------------------------------------------------------------
    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """One step on every question of every example (several questions per context per
        update). Dropout is the checkpoint's own (hidden_dropout_prob), as in ELECTRA."""
        validate_examples(examples, "ElectraSpanQA.update")
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        examples = [eg for eg in examples if eg.reference._.questions]
        if not examples:
            return losses
        docs = [eg.predicted for eg in examples]
        tasks = self._tasks(docs, [list(eg.reference._.questions) for eg in examples])
        for eg, doc_tasks in zip(examples, tasks):
            for task, gold in zip(doc_tasks, gold_token_spans(eg)):
                task.gold = token_span_to_pieces(task.context, *gold) if gold is not None else None
        flat = [task for doc_tasks in tasks for task in doc_tasks]
        if not any(task.answerable for task in flat):
            return losses
        (rows, logits), backprop = self.model.begin_update(flat)
        ops = self.model.ops
        loss, grads = row_loss(rows, flat, [ops.to_numpy(x) for x in logits])
        backprop(grads)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        self._learn_threshold = True
        return losses

    def get_loss(self, examples, scores):
        """Computed inside ``update`` (rows and gold positions come from the featurisation)."""
        raise NotImplementedError("electra_span_qa computes its loss in update().")

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None) -> None:
        """Load the checkpoint (encoder, vocabulary, and the ``qa_outputs`` of a fine-tuned HF
        ElectraForQuestionAnswering)."""
        validate_get_examples(get_examples, "ElectraSpanQA.initialize")
        self.model.initialize()
        if self.cfg["null_threshold"] is None:
            self.cfg["null_threshold"] = float(self.model.attrs.get("checkpoint_null_threshold") or 0.0)
        if nlp is not None and self._tokenizer is None:
            self._tokenizer = nlp.tokenizer

    def export_hf(self, output_dir: Union[str, Path], *, nlp: Optional[Language] = None) -> str:
        """Write this component as an HF ``ElectraForQuestionAnswering`` folder (``qa/export.py``);
        returns the HF class (``pipes/export.py``)."""
        from .export import export_span_qa

        export_span_qa(self, output_dir)
        return "ElectraForQuestionAnswering"

    # -- evaluation ---------------------------------------------------------------------------
    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, Optional[float]]:
        """Official SQuAD v2.0 exact match and F1 (fractions) over the reference questions:
        ``qa_exact``, ``qa_f1``, ``qa_has_ans_exact``, ``qa_has_ans_f1``, ``qa_no_ans_acc``, plus
        ``qa_null_threshold``. Predicted docs without answers to those questions (the case in
        ``nlp.evaluate``, whose predicted docs carry no questions) are answered here. During
        training (after ``update``) the no-answer threshold is first refitted on these examples."""
        scored = self._scored_questions(list(examples))
        if self._learn_threshold and scored:
            self.cfg["null_threshold"] = _fitted_threshold(scored)
        scores = squad_scores(scored, self.null_threshold) if scored else {}
        out: Dict[str, Optional[float]] = {
            f"qa_{k}": scores.get(k) for k in ("exact", "f1", "has_ans_exact", "has_ans_f1", "no_ans_acc")
        }
        out["qa_null_threshold"] = self.null_threshold
        return out

    def fit_threshold(self, examples: Iterable[Example]) -> float:
        """Set the no-answer threshold to the F1-best one on ``examples`` (a dev set) and return it."""
        scored = self._scored_questions(list(examples))
        if not scored:
            raise ValueError("fit_threshold needs examples whose reference docs have questions (doc._.questions and doc._.qa_gold).")
        self.cfg["null_threshold"] = _fitted_threshold(scored)
        return self.cfg["null_threshold"]

    def _scored_questions(self, examples: List[Example]) -> List[ScoredQuestion]:
        validate_examples(examples, "ElectraSpanQA.score")
        examples = [eg for eg in examples if eg.reference._.questions]
        todo = [eg for eg in examples if _stale(eg)]
        for batch in minibatch(todo, 32):
            docs = [eg.predicted for eg in batch]
            self.set_annotations(docs, self._predict(docs, [list(eg.reference._.questions) for eg in batch]))
        scored = []
        for eg in examples:
            gold = eg.reference._.qa_gold or [None] * len(eg.reference._.questions)
            for result, entry in zip(eg.predicted._.qa_results, gold):
                texts = [a["text"] for a in entry["answers"]] if entry and not entry["impossible"] else []
                text = eg.predicted[result["start"] : result["end"]].text if result["start"] is not None else ""
                na = None if result["score"] is None else result["null_score"] - result["score"]
                scored.append(ScoredQuestion(texts, text, na))
        return scored


def _fitted_threshold(scored: List[ScoredQuestion]) -> float:
    """The F1-best no-answer threshold on ``scored``, which is not empty."""
    threshold = best_threshold(scored, "f1")[0]
    assert threshold is not None  # None only for no questions
    return float(threshold)


def _stale(eg: Example) -> bool:
    results = eg.predicted._.qa_results
    return results is None or [r["question"] for r in results] != list(eg.reference._.questions)


def gold_token_spans(eg: Example) -> List[Optional[tuple]]:
    """The first gold answer of each reference question as (start, end) tokens of the
    predicted doc (via character offsets, so a differently tokenized predicted doc is fine);
    None for unanswerable questions."""
    gold = eg.reference._.qa_gold or [None] * len(eg.reference._.questions)
    spans: List[Optional[tuple]] = []
    for entry in gold:
        if not entry or entry["impossible"] or not entry["answers"]:
            spans.append(None)
            continue
        answer = entry["answers"][0]
        ref = eg.reference[answer["start"] : answer["end"]]
        span = eg.predicted.char_span(ref.start_char, ref.end_char, alignment_mode="expand")
        spans.append((span.start, span.end) if span is not None and len(span) else None)
    return spans


install_extensions()  # importing the module is enough to set doc._.questions before a pipeline exists
