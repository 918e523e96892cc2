"""Constrained BILUO decoding: Viterbi over the transitions that form valid entity sequences.

Whatever the scores (even from untrained weights), the best path only uses allowed transitions,
so every decoded sequence maps to well-formed, non-overlapping entities. ``spans_from_biluo``
turns a path into spans with spaCy's own ``biluo_tags_to_spans``, after checking the path against
the same transition rules (spaCy's converter drops an unclosed ``B`` silently).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
from spacy.tokens import Doc, Span
from spacy.training import biluo_tags_to_spans

NEG = -1e9


def biluo_tags(labels: Sequence[str]) -> List[str]:
    return ["O"] + [f"{prefix}-{label}" for label in labels for prefix in "BILU"]


def _outside(tag: str) -> bool:
    """After ``tag`` no entity is open."""
    return tag == "O" or tag[0] in "LU"


def _follows(prev: Optional[str], tag: str) -> bool:
    """May ``tag`` come after ``prev`` (None: the sequence start)?"""
    if prev is None or _outside(prev):  # outside an entity: may stay out or open one
        return tag == "O" or tag[0] in "BU"
    return tag != "O" and tag[0] in "IL" and tag[2:] == prev[2:]  # inside X: continue or close X


def transition_mask(tags: Sequence[str]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(allowed[prev, next], allowed_start, allowed_end) for a BILUO tag list."""
    allowed = np.array([[_follows(prev, tag) for tag in tags] for prev in tags], dtype=bool).reshape(len(tags), len(tags))
    starts = np.array([_follows(None, tag) for tag in tags], dtype=bool)
    ends = np.array([_outside(tag) for tag in tags], dtype=bool)
    return allowed, starts, ends


def is_valid_biluo(tags: Sequence[str]) -> bool:
    prev = None
    for tag in tags:
        if not _follows(prev, tag):
            return False
        prev = tag
    return prev is None or _outside(prev)


def viterbi(
    log_probs: np.ndarray, allowed: np.ndarray, starts: np.ndarray, ends: np.ndarray, forced_out: Optional[np.ndarray] = None
) -> np.ndarray:
    """Best valid tag sequence for (n_tokens, n_tags) log-probabilities. ``forced_out`` marks
    tokens that must be tagged O (tag 0), e.g. tokens inside pre-set entities."""
    n, k = log_probs.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    scores = log_probs.astype(np.float64).copy()
    if forced_out is not None and forced_out.any():
        scores[forced_out] = NEG
        scores[forced_out, 0] = 0.0
    trans = np.where(allowed, 0.0, NEG)
    best = scores[0] + np.where(starts, 0.0, NEG)
    back = np.zeros((n, k), dtype=np.int64)
    for t in range(1, n):
        candidates = best[:, None] + trans  # (prev, next)
        back[t] = candidates.argmax(axis=0)
        best = candidates.max(axis=0) + scores[t]
    best = best + np.where(ends, 0.0, NEG)
    path = np.empty(n, dtype=np.int64)
    path[-1] = best.argmax()
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def spans_from_biluo(doc: Doc, tags: Sequence[str]) -> List[Span]:
    """The entity spans of a valid BILUO sequence over ``doc``; an invalid one is a bug in the
    decoder and raises."""
    if not is_valid_biluo(tags):
        raise ValueError(f"Invalid BILUO sequence {list(tags)}: the decoder must only emit valid transitions.")
    return biluo_tags_to_spans(doc, list(tags))
