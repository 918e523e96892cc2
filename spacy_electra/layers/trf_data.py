"""Encoder outputs as spacy-transformers' ``TransformerData``, one per doc, and the way back.

What ``with_strided_windows`` hands the listeners and heads: ``last_hidden_state`` (1, n_pieces, width), every layer under
``hidden_states`` when all layers are kept, the [CLS] vector of each of the doc's windows under
``cls_vectors``, the pieces, and each token's pieces as the alignment.
"""
from __future__ import annotations

from typing import Any, Sequence, Tuple, cast

import numpy as np
from spacy_transformers.data_classes import TransformerData, WordpieceBatch
from thinc.api import Ops
from thinc.types import Floats2d, Floats3d, Ints1d, Ints2d, Ragged
from transformers.utils import ModelOutput

from ..pieces import TokenPieces, WordPieceEncoder
from ..windows import WindowBatch
from .types import TrfData

CLS_KEY = "cls_vectors"  # model_output key: the [CLS] vector of each window, (n_windows, hidden)


def doc_outputs(
    pieces: Sequence[TokenPieces], vocab: WordPieceEncoder, batch: WindowBatch,
    vectors: Floats3d, cls: Floats2d, all_layers: bool,
) -> TrfData:
    """Split the batch's piece vectors (n_layers, n_pieces, width) and [CLS] vectors by doc."""
    outputs = []
    piece_start = window_start = 0
    for doc_pieces, n, w in zip(pieces, batch.doc_pieces, batch.doc_windows):
        layers = vectors[:, piece_start : piece_start + n]
        output = ModelOutput(last_hidden_state=_batch_of_one(layers[-1]))
        if all_layers:
            output["hidden_states"] = tuple(_batch_of_one(layer) for layer in layers)
        output[CLS_KEY] = cls[window_start : window_start + w]
        ids = doc_pieces.ids
        outputs.append(
            TransformerData(
                wordpieces=WordpieceBatch(
                    strings=[[vocab.vocab[i] for i in ids]],
                    input_ids=cast(Ints2d, ids[None].astype("int32")),
                    attention_mask=cast(Floats2d, np.ones((1, n), dtype="float32")),
                    lengths=[n],
                    token_type_ids=None,
                ),
                model_output=output,
                align=Ragged(cast(Ints1d, np.arange(n, dtype="int32")), cast(Ints1d, np.asarray(doc_pieces.lengths, dtype="int32"))),
            )
        )
        piece_start += n
        window_start += w
    return outputs


def _batch_of_one(array: Floats2d) -> Floats3d:
    """``array[None]``: a view with a leading axis of length 1 (Thinc's array types have no
    indexing by None)."""
    return cast(Any, array)[None]


def with_zero_row(ops: Ops, data: TransformerData) -> TransformerData:
    """A doc of only whitespace tokens has no pieces: one zero row that no token aligns to keeps
    the shapes valid for poolers that reject empty arrays; every token pools to a zero vector."""
    output = data.model_output
    width = output["last_hidden_state"].shape[-1]
    n_layers = len(output["hidden_states"]) if output.get("hidden_states") is not None else 1
    layers = ops.alloc3f(n_layers, 1, width)
    output["last_hidden_state"] = _batch_of_one(layers[-1])
    if output.get("hidden_states") is not None:
        output["hidden_states"] = tuple(_batch_of_one(layer) for layer in layers)
    return data


def doc_gradients(ops: Ops, d_outputs: TrfData, batch: WindowBatch, n_layers: int, width: int) -> Tuple[Floats3d, Floats2d]:
    """The listeners' gradients, doc by doc, gathered back into the batch's piece and [CLS]
    arrays (rows past a doc's pieces, such as a whitespace doc's zero row, are dropped)."""
    d_vectors = ops.alloc3f(n_layers, batch.n_pieces, width)
    d_cls = ops.alloc2f(sum(batch.doc_windows), width)
    piece_start = window_start = 0
    for d_out, n, w in zip(d_outputs, batch.doc_pieces, batch.doc_windows):
        out = d_out.model_output
        if n:
            if out.get("last_hidden_state") is not None:
                d_vectors[-1, piece_start : piece_start + n] += out["last_hidden_state"][0, :n]
            for layer, d_layer in enumerate(out.get("hidden_states") or ()):
                d_vectors[layer, piece_start : piece_start + n] += d_layer[0, :n]
            if out.get(CLS_KEY) is not None:
                d_cls[window_start : window_start + w] += out[CLS_KEY]
        piece_start += n
        window_start += w
    return d_vectors, d_cls
