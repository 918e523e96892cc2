"""Windows over each doc's piece sequence, batched by length.

A doc's pieces are covered by windows of at most ``window`` pieces that start every ``stride``
pieces, each wrapped as ``[CLS] ... [SEP]``. No piece is ever dropped: a piece seen by several
windows gets the mean of their outputs.

The windows sit on a regular grid (starts 0, stride, 2 x stride...) and the last one ends at the
doc's end, so it is usually shorter than ``window``: every piece is encoded exactly as often as
the stride requires (once or twice). An earlier layout shifted the last window back to hold a
full ``window`` pieces, which encoded the doc's tail up to three times (about 12% more pieces on
CoNLL-2003). What that changes near a doc's end: the pieces of the last window keep at least
``window - stride`` pieces of left context, as every piece inside a doc does, instead of up to
``window - 1``; outputs of pieces before the last window are unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

from .pieces import TokenPieces


def check_window(window: int, stride: int, max_positions: int = 512) -> None:
    """``window/2 <= stride <= window <= max_positions - 2``, with advice on which value to change."""
    if window < 1:
        raise ValueError(f"window={window} must be at least 1 piece.")
    if window > max_positions - 2:
        raise ValueError(
            f"window={window} does not fit the model: with [CLS] and [SEP] a window may hold at most "
            f"max_position_embeddings - 2 = {max_positions - 2} pieces. Lower window."
        )
    if stride > window:
        raise ValueError(f"stride={stride} is larger than window={window}, which would skip pieces. Lower stride to at most {window}.")
    if 2 * stride < window:
        raise ValueError(
            f"stride={stride} is less than window/2={window / 2:g}: a piece would be seen by more than "
            f"two windows, which wastes compute. Raise stride to at least {(window + 1) // 2}."
        )


def check_batch_budget(window: int, max_batch_items: int) -> None:
    """One forward pass must hold at least one full window with its [CLS] and [SEP]."""
    if max_batch_items < window + 2:
        raise ValueError(
            f"max_batch_items={max_batch_items} cannot hold one window of {window} + 2 pieces; raise it to at least {window + 2}."
        )


def window_starts(n_pieces: int, window: int, stride: int) -> List[int]:
    """Starts of the windows over ``n_pieces``: every ``stride`` pieces, until one window reaches
    the end (window ``k`` covers ``[k * stride, min(k * stride + window, n_pieces))``)."""
    if n_pieces == 0:
        return []
    return list(range(0, max(n_pieces - window, 0) + stride, stride)) if n_pieces > window else [0]


# What one more forward pass costs, in padded positions: the per-call overhead of a chunk
# (kernel launches, the Python around them) against the padding that splitting would save.
CHUNK_OVERHEAD = 64
# The most rows one group may hold, which bounds the packing search to this many candidates per
# row (a group of 128 rows is already long enough to amortise a forward pass).
MAX_GROUP_ROWS = 128


def pack_by_length(lengths: Sequence[int], max_batch_items: int) -> List[List[int]]:
    """Indices of ``lengths`` sorted by length and cut into groups whose padded size (rows x
    longest row) stays within ``max_batch_items``: the batching of every forward pass here
    (the encoder's windows and QA's question-window rows). A row longer than the budget gets
    a group of its own.

    Where to cut is chosen by dynamic programming over the sorted rows to minimise the padded
    positions encoded plus ``CHUNK_OVERHEAD`` per group: filling each group up to the budget
    would pad a doc's short last window to the full window of the rows beside it, which cost as
    much as the shorter windows saved (BENCHMARKS.md, window layouts). A group holds at most
    ``MAX_GROUP_ROWS`` rows, so the search is linear in the number of rows."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    sizes = [lengths[i] for i in order]
    n = len(sizes)
    best = [0] + [0] * n  # best[i]: cost of packing the first i sorted rows
    cut = [0] * (n + 1)  # cut[i]: where the last group of the first i rows starts
    for i in range(1, n + 1):
        longest = sizes[i - 1]  # sorted: the group's last row is its longest
        best[i], cut[i] = best[i - 1] + longest + CHUNK_OVERHEAD, i - 1
        j = i - 2
        while j >= 0 and i - j <= MAX_GROUP_ROWS and (i - j) * longest <= max_batch_items:
            cost = best[j] + (i - j) * longest + CHUNK_OVERHEAD
            if cost < best[i]:
                best[i], cut[i] = cost, j
            j -= 1
    groups: List[List[int]] = []
    i = n
    while i > 0:
        groups.append(order[cut[i] : i])
        i = cut[i]
    return groups[::-1]


@dataclass
class WindowChunk:
    """One forward pass: padded ids (B, L) and where each output row goes.

    ``target`` maps every flattened (B * L) output position to a piece index of the whole batch,
    or to ``n_pieces`` (a discard row) for [CLS], [SEP] and padding.
    """

    ids: np.ndarray  # int64 (B, L)
    mask: np.ndarray  # int64 (B, L)
    target: np.ndarray  # int64 (B * L,)
    window_index: np.ndarray  # int64 (B,): position of each row in the batch's window order


@dataclass
class WindowBatch:
    chunks: List[WindowChunk]
    n_pieces: int  # pieces of all docs together
    inv_counts: np.ndarray  # float32 (n_pieces,): 1 / number of windows covering the piece
    doc_pieces: List[int]  # pieces per doc, to split the outputs
    doc_windows: List[int]  # windows per doc (their [CLS] vectors are kept, in doc order)


def make_window_batch(
    docs: Sequence[TokenPieces],
    *,
    window: int,
    stride: int,
    max_batch_items: int,
    cls_id: int,
    sep_id: int,
    pad_id: int,
) -> WindowBatch:
    spans: List[Tuple[int, int, int]] = []  # (global offset of doc, start, end)
    offset = 0
    doc_windows = []
    counts_parts = []
    for pieces in docs:
        n = len(pieces.ids)
        starts = window_starts(n, window, stride)
        counts = np.zeros(n, dtype=np.float32)
        for start in starts:
            spans.append((offset, start, min(start + window, n)))
            counts[start : start + window] += 1
        counts_parts.append(counts)
        doc_windows.append(len(starts))
        offset += n
    all_ids = np.concatenate([d.ids for d in docs]) if docs else np.zeros(0, np.int32)
    counts = np.concatenate(counts_parts) if counts_parts else np.zeros(0, np.float32)
    groups = pack_by_length([end - start + 2 for _, start, end in spans], max_batch_items)
    chunks = [_chunk([spans[k] for k in group], group, all_ids, offset, cls_id, sep_id, pad_id) for group in groups]
    return WindowBatch(
        chunks=chunks,
        n_pieces=offset,
        inv_counts=np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0),
        doc_pieces=[len(d.ids) for d in docs],
        doc_windows=doc_windows,
    )


def _chunk(spans, window_index, all_ids, n_pieces, cls_id, sep_id, pad_id) -> WindowChunk:
    length = max(end - start for _, start, end in spans) + 2
    ids = np.full((len(spans), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(spans), length), dtype=np.int64)
    target = np.full((len(spans), length), n_pieces, dtype=np.int64)
    for row, (offset, start, end) in enumerate(spans):
        n = end - start
        ids[row, 0] = cls_id
        ids[row, 1 : n + 1] = all_ids[offset + start : offset + end]
        ids[row, n + 1] = sep_id
        mask[row, : n + 2] = 1
        target[row, 1 : n + 1] = np.arange(offset + start, offset + end)
    return WindowChunk(ids, mask, target.reshape(-1), np.asarray(window_index, dtype=np.int64))
