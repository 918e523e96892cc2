"""From (context pieces, question pieces) to model rows, and back from piece logits to spans.

Each question is paired with every window over its context: ``[CLS] question [SEP] window
[SEP]`` with token type 0 up to the first [SEP] and 1 after, as BERT/ELECTRA were fine-tuned for
SQuAD. A window holds ``max_length - len(question) - 3`` context pieces and windows start every
``doc_stride`` pieces (the last one ends at the context's end), so every context piece is in at
least one row. Rows of all questions are sorted by length and packed into padded chunks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..pieces import TokenPieces
from ..windows import pack_by_length, window_starts


@dataclass
class QATask:
    """One question about one context: the context's pieces per token, the (possibly truncated)
    question pieces, and the gold answer as inclusive context piece positions (training only;
    None = unanswerable or unknown)."""

    context: TokenPieces
    query: np.ndarray  # int32 question piece ids
    gold: Optional[Tuple[int, int]] = None

    @property
    def answerable(self) -> bool:
        """False when the question or the context has no pieces: no row is built and the
        question gets no answer without running the model."""
        return len(self.query) > 0 and len(self.context.ids) > 0


@dataclass
class Row:
    """One (question, window) pair: context pieces ``start:end`` of task ``task``."""

    task: int
    start: int
    end: int
    n_query: int

    @property
    def offset(self) -> int:
        """Row position of the window's first context piece (after [CLS] question [SEP])."""
        return self.n_query + 2

    @property
    def length(self) -> int:
        return self.n_query + (self.end - self.start) + 3

    def gold_positions(self, gold: Optional[Tuple[int, int]]) -> Tuple[int, int]:
        """Row positions of the gold start/end; (0, 0), i.e. [CLS], when the answer is not
        wholly inside this window or the question is unanswerable (as in BERT/ELECTRA)."""
        if gold is None or gold[0] < self.start or gold[1] >= self.end:
            return 0, 0
        return self.offset + gold[0] - self.start, self.offset + gold[1] - self.start


@dataclass
class RowChunk:
    """Padded arrays for one forward pass and the rows (indices into the row list) they hold."""

    ids: np.ndarray  # int64 (B, L)
    types: np.ndarray  # int64 (B, L)
    mask: np.ndarray  # int64 (B, L)
    rows: List[int]


def window_size(max_length: int, n_query: int) -> int:
    return max_length - n_query - 3


def make_rows(tasks: Sequence[QATask], *, max_length: int, doc_stride: int) -> List[Row]:
    rows = []
    for t, task in enumerate(tasks):
        if not task.answerable:
            continue
        window = window_size(max_length, len(task.query))
        for start in window_starts(len(task.context.ids), window, min(doc_stride, window)):
            rows.append(Row(t, start, min(start + window, len(task.context.ids)), len(task.query)))
    return rows


def batch_rows(
    rows: Sequence[Row], tasks: Sequence[QATask], *, max_batch_items: int, cls_id: int, sep_id: int, pad_id: int
) -> List[RowChunk]:
    """Rows sorted by length, packed while (rows in chunk) x (longest row) <= max_batch_items
    (the encoder's own packing, ``windows.pack_by_length``)."""
    groups = pack_by_length([row.length for row in rows], max_batch_items)
    return [_chunk([rows[k] for k in group], group, tasks, cls_id, sep_id, pad_id) for group in groups]


def _chunk(rows: List[Row], index: List[int], tasks, cls_id: int, sep_id: int, pad_id: int) -> RowChunk:
    width = max(row.length for row in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    types = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for b, row in enumerate(rows):
        task = tasks[row.task]
        n_query, n_ctx = row.n_query, row.end - row.start
        ids[b, 0] = cls_id
        ids[b, 1 : n_query + 1] = task.query
        ids[b, n_query + 1] = sep_id
        ids[b, row.offset : row.offset + n_ctx] = task.context.ids[row.start : row.end]
        ids[b, row.offset + n_ctx] = sep_id
        types[b, row.offset : row.length] = 1
        mask[b, : row.length] = 1
    return RowChunk(ids, types, mask, list(index))


def piece_tokens(context: TokenPieces) -> np.ndarray:
    """Token index of every context piece."""
    return np.repeat(np.arange(len(context.lengths)), context.lengths)


def token_span_to_pieces(context: TokenPieces, start: int, end: int) -> Optional[Tuple[int, int]]:
    """Inclusive piece positions of tokens ``start:end``; None when they have no pieces
    (whitespace only)."""
    lengths = np.asarray(context.lengths)
    first = int(lengths[:start].sum())
    n = int(lengths[start:end].sum())
    return (first, first + n - 1) if n else None


@dataclass
class SpanScores:
    """Decoding result of one question: best span as inclusive context piece positions (None
    when no row was run or no span fits), its score (start + end logit) and the null score
    ([CLS] start + end logit, the lowest over the question's windows, as HF does)."""

    span: Optional[Tuple[int, int]]
    score: Optional[float]
    null_score: Optional[float]


def best_spans(
    tasks: Sequence[QATask], rows: Sequence[Row], logits: Sequence[np.ndarray], *, n_best: int, max_answer_pieces: int
) -> List[SpanScores]:
    """n-best search per row over context pieces only (the ``n_best`` highest start and end
    logits, end >= start, at most ``max_answer_pieces`` pieces), best over the task's rows."""
    best: List[SpanScores] = [SpanScores(None, None, None) for _ in tasks]
    for row, row_logits in zip(rows, logits):
        result = best[row.task]
        start_logits = np.asarray(row_logits[: row.length, 0], dtype=np.float64)
        end_logits = np.asarray(row_logits[: row.length, 1], dtype=np.float64)
        null = float(start_logits[0] + end_logits[0])
        if result.null_score is None or null < result.null_score:
            result.null_score = null
        n_ctx = row.end - row.start
        starts = start_logits[row.offset : row.offset + n_ctx]
        ends = end_logits[row.offset : row.offset + n_ctx]
        k = min(n_best, n_ctx)
        top_s = np.argsort(-starts, kind="stable")[:k]
        top_e = np.argsort(-ends, kind="stable")[:k]
        length = top_e[None, :] - top_s[:, None] + 1
        scores = starts[top_s][:, None] + ends[top_e][None, :]
        scores = np.where((length >= 1) & (length <= max_answer_pieces), scores, -np.inf)
        i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)
        if np.isfinite(scores[i, j]) and (result.score is None or scores[i, j] > result.score):
            result.score = float(scores[i, j])
            result.span = (row.start + int(top_s[i]), row.start + int(top_e[j]))
    return best


def row_loss(rows: Sequence[Row], tasks: Sequence[QATask], logits: Sequence[np.ndarray]) -> Tuple[float, List[np.ndarray]]:
    """Cross-entropy of the gold start and end positions per row, (start + end) / 2, averaged
    over rows, with the softmax over [CLS] and the window's context pieces only (the positions
    an answer can take). Returns the loss and d(loss)/d(logits) per row."""
    total, grads = 0.0, []
    norm = max(len(rows), 1)
    for row, row_logits in zip(rows, logits):
        gold = row.gold_positions(tasks[row.task].gold)
        valid = np.zeros(len(row_logits), dtype=bool)
        valid[0] = True
        valid[row.offset : row.offset + row.end - row.start] = True
        grad = np.zeros(row_logits.shape, dtype=np.float32)
        for column, position in enumerate(gold):
            scores = np.asarray(row_logits[:, column], dtype=np.float64)[valid]
            probs = np.exp(scores - scores.max())
            probs /= probs.sum()
            target = 0 if position == 0 else 1 + position - row.offset  # index among valid
            total -= 0.5 * float(np.log(probs[target] + 1e-12))
            probs[target] -= 1.0
            grad[valid, column] = 0.5 * probs / norm
        grads.append(grad)
    return total / norm, grads
