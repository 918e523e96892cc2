"""The official SQuAD v1.1 / v2.0 evaluation, as functions over plain strings.

Definitions follow ``evaluate-v2.0.py`` (which scores v1.1 data identically, since v1.1 has no
unanswerable questions): answers are normalised (lower case, punctuation and the articles
a/an/the removed, whitespace collapsed); a question's exact match and F1 are the maximum over its
gold answers; an unanswerable question has the single gold answer ``""``, so abstaining is its
exact match (and its F1, which is 1 only when both sides are empty). The no-answer threshold
search is the script's ``find_best_thresh`` over "no-answer scores" (here: null score minus best
span score, higher = more likely unanswerable).
"""
from __future__ import annotations

import collections
import re
import string
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> List[str]:
    return normalize_answer(text).split() if text else []


def exact_match(gold: str, prediction: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(prediction))


def f1_score(gold: str, prediction: str) -> float:
    gold_toks, pred_toks = answer_tokens(gold), answer_tokens(prediction)
    if not gold_toks or not pred_toks:
        return float(gold_toks == pred_toks)
    n_same = sum((collections.Counter(gold_toks) & collections.Counter(pred_toks)).values())
    if n_same == 0:
        return 0.0
    precision, recall = n_same / len(pred_toks), n_same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def gold_texts(answers: Sequence[str]) -> List[str]:
    """Gold answers that survive normalisation; ``[""]`` for an unanswerable question."""
    kept = [a for a in answers if normalize_answer(a)]
    return kept or [""]


@dataclass
class ScoredQuestion:
    """One question: its gold answer texts (empty = unanswerable), the best span's text (even if
    the threshold turns it down) and its no-answer score (None = not asked: always no answer)."""

    gold: Sequence[str]
    prediction: str
    na_score: Optional[float]

    @property
    def has_answer(self) -> bool:
        return bool([a for a in self.gold if normalize_answer(a)])

    def raw(self) -> Tuple[int, float]:
        golds = gold_texts(self.gold)
        return max(exact_match(g, self.prediction) for g in golds), max(f1_score(g, self.prediction) for g in golds)


def _na(q: ScoredQuestion) -> float:
    return float("inf") if q.na_score is None else q.na_score


def squad_scores(questions: Sequence[ScoredQuestion], threshold: float) -> Dict[str, Optional[float]]:
    """Exact match and F1 (fractions, 0..1) over all questions and the HasAns / NoAns subsets,
    predicting "no answer" where ``na_score > threshold`` (the script's ``apply_no_ans_threshold``)."""
    rows = []
    exact: float
    f1: float
    for q in questions:
        exact, f1 = q.raw()
        if _na(q) > threshold or not q.prediction:
            exact = f1 = float(not q.has_answer)
        rows.append((q.has_answer, exact, f1))

    def mean(values: List[float]) -> Optional[float]:
        return sum(values) / len(values) if values else None

    return {
        "exact": mean([e for _, e, _ in rows]),
        "f1": mean([f for _, _, f in rows]),
        "has_ans_exact": mean([e for h, e, _ in rows if h]),
        "has_ans_f1": mean([f for h, _, f in rows if h]),
        "no_ans_acc": mean([e for h, e, _ in rows if not h]),
        "total": float(len(rows)),
    }


def best_threshold(questions: Sequence[ScoredQuestion], metric: str = "f1") -> Tuple[Optional[float], float]:
    """The script's ``find_best_thresh``: the no-answer threshold that maximises ``metric``
    (``"f1"`` or ``"exact"``) on these questions, and that best score (fraction). Starts from
    "abstain everywhere"; that start is returned as a threshold just below the lowest score."""
    if not questions:
        return None, 0.0
    scored = [(q, q.raw()[0 if metric == "exact" else 1]) for q in questions]
    current = best = float(sum(1 for q, _ in scored if not q.has_answer))
    finite = [_na(q) for q, _ in scored if q.na_score is not None]
    best_thresh = (min(finite) - 1.0) if finite else 0.0
    for q, score in sorted(scored, key=lambda item: _na(item[0])):
        if q.na_score is None:
            break  # never answered, whatever the threshold
        if q.has_answer:
            current += score
        elif q.prediction:
            current -= 1
        if current > best:
            best, best_thresh = current, q.na_score
    return best_thresh, best / len(scored)
