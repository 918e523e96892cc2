"""Constrained BILUO decoding: Viterbi over the transitions that form valid entity sequences.

Whatever the scores (even from untrained weights), the best path only uses allowed transitions,
so every decoded sequence maps to well-formed, non-overlapping entities.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

NEG = -1e9


def biluo_tags(labels: Sequence[str]) -> List[str]:
    return ["O"] + [f"{prefix}-{label}" for label in labels for prefix in "BILU"]


def transition_mask(tags: Sequence[str]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(allowed[prev, next], allowed_start, allowed_end) for a BILUO tag list."""
    n = len(tags)
    allowed = np.zeros((n, n), dtype=bool)
    starts = np.zeros(n, dtype=bool)
    ends = np.zeros(n, dtype=bool)
    for j, tag in enumerate(tags):
        starts[j] = tag == "O" or tag[0] in "BU"
        ends[j] = tag == "O" or tag[0] in "LU"
        for i, prev in enumerate(tags):
            if prev == "O" or prev[0] in "LU":  # outside an entity: may stay out or open one
                allowed[i, j] = tag == "O" or tag[0] in "BU"
            else:  # inside an entity of type X: continue or close X
                allowed[i, j] = tag != "O" and tag[0] in "IL" and tag[2:] == prev[2:]
    return allowed, starts, ends


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


def spans_from_biluo(tags: Sequence[str]) -> List[Tuple[int, int, str]]:
    """(start, end, label) token spans of a valid BILUO sequence."""
    spans, start = [], None
    for i, tag in enumerate(tags):
        if tag.startswith("U-"):
            spans.append((i, i + 1, tag[2:]))
        elif tag.startswith("B-"):
            start = i
        elif tag.startswith("L-") and start is not None:
            spans.append((start, i + 1, tag[2:]))
            start = None
    return spans
