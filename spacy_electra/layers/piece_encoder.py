"""``spacy_electra.WordPieceEncoder.v1``: each token's WordPiece ids, one token at a time.

Encoding tokens one by one (pre-tokenized input) gives the pieces of each token by construction,
so no character-offset alignment is needed. A different piece encoder (another token attribute,
a cap on pieces per token) can be swapped in from the config: it receives a ``TokenBatch`` and
must return a ``PieceBatch`` with ids from ``batch.vocab``, whose size the encoder's embedding
matrix was trained for.
"""
from __future__ import annotations

from typing import Callable, Tuple

from spacy.util import registry
from thinc.api import Model

from .types import PieceBatch, PieceEncoderModel, TokenBatch


@registry.architectures("spacy_electra.WordPieceEncoder.v1")
def WordPieceEncoder_v1() -> PieceEncoderModel:
    """WordPiece over each token's text, with the normalisation settings of the checkpoint's
    tokenizer (lowercasing, accents). Tokens that WordPiece reads as nothing get ``[UNK]``."""
    return Model("electra_wordpiece_encoder", _forward)


def _forward(model: PieceEncoderModel, X: TokenBatch, is_train: bool) -> Tuple[PieceBatch, Callable]:
    pieces = X.vocab.encode_batch([[token.text for token in tokens] for tokens in X.tokens])
    return PieceBatch(pieces, X.vocab), lambda dY: X  # piece ids carry no gradient
