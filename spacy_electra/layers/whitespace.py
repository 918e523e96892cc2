"""``spacy_electra.with_non_ws_tokens.v1``: whitespace tokens bypass the encoder.

The wrapped nodes see each doc without its whitespace tokens (``token.is_space``), so a piece
encoder never has to decide what a run of spaces is. On the way out each whitespace token is
put back with zero pieces (its pooled vector is zero), and a doc made only of whitespace gets
one zero row that no token aligns to, so poolers that reject empty arrays still work. This is
what ``ElectraTransformer.v1`` does inside its single node. Gradients need no mapping: the
pieces, and so their gradients, are the same with or without the whitespace tokens.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple, cast

import numpy as np
from spacy.util import registry
from spacy_transformers.data_classes import TransformerData
from thinc.api import Model
from thinc.types import Ints1d, Ragged

from .trf_data import TrfData, with_zero_row
from .types import TokenBatch, TokensModel, WithWhitespace


@registry.architectures("spacy_electra.with_non_ws_tokens.v1")
def with_non_ws_tokens_v1() -> WithWhitespace:
    return with_non_ws_tokens


def with_non_ws_tokens(layer: TokensModel) -> TokensModel:
    return Model(
        "electra_with_non_ws_tokens",
        _forward,
        init=_init,
        layers=[layer],
        dims={"nO": layer.get_dim("nO") if layer.has_dim("nO") else None},
    )


def _init(model: TokensModel, X: Optional[TokenBatch] = None, Y=None) -> TokensModel:
    layer = model.layers[0]
    layer.initialize(X=_without_whitespace(X)[0] if X is not None else None)
    if layer.has_dim("nO"):
        model.set_dim("nO", layer.get_dim("nO"), force=True)
    return model


def _forward(model: TokensModel, X: TokenBatch, is_train: bool) -> Tuple[TrfData, Callable]:
    inner, kept = _without_whitespace(X)
    Y, backprop_inner = model.layers[0](inner, is_train)
    outputs = [_with_whitespace(model, data, keep, len(tokens)) for data, keep, tokens in zip(Y, kept, X.tokens)]

    def backprop(d_outputs: TrfData) -> TokenBatch:
        backprop_inner(d_outputs)  # rows past a doc's pieces (the zero row) are ignored there
        return X

    return outputs, backprop


def _without_whitespace(X: TokenBatch) -> Tuple[TokenBatch, List[np.ndarray]]:
    kept = [np.asarray([i for i, token in enumerate(tokens) if not token.is_space], dtype=np.int64) for tokens in X.tokens]
    return TokenBatch([[tokens[i] for i in keep] for tokens, keep in zip(X.tokens, kept)], X.vocab), kept


def _with_whitespace(model: Model, data: TransformerData, keep: np.ndarray, n_tokens: int) -> TransformerData:
    lengths = np.zeros(n_tokens, dtype="int32")
    lengths[keep] = data.align.lengths
    out = TransformerData(wordpieces=data.wordpieces, model_output=data.model_output, align=Ragged(data.align.dataXd, cast(Ints1d, lengths)))
    if n_tokens and data.model_output["last_hidden_state"].shape[1] == 0:
        out = with_zero_row(model.ops, out)
    return out
