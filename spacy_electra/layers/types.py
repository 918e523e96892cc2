"""The Thinc type aliases of the package, defined once: what flows between the nodes of
``spacy_electra.ElectraTransformer.v1`` and what the heads and listeners take.

    List[Doc] --(the transformer node adds the encoder's vocabulary)--> TokenBatch
      with_non_ws_tokens: TokenBatch -> TokenBatch without whitespace tokens ... -> List[TransformerData]
        piece encoder:    TokenBatch -> PieceBatch
        with_windows:     PieceBatch -> WindowBatch -> windowed encoder -> List[TransformerData]

The vocabulary travels with the data instead of living in the piece encoder: it is saved with
the encoder's weights (one checked blob, ``checkpoint/blob.py``), because the piece ids
index the encoder's embedding matrix and the two must never be saved or loaded apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Sequence, Tuple, Union

from spacy.tokens import Doc, Token
from spacy_transformers.data_classes import TransformerData
from thinc.api import Model
from thinc.types import Floats2d, Floats3d

from ..pieces import TokenPieces, WordPieceEncoder
from ..windows import WindowBatch


@dataclass
class TokenBatch:
    """The tokens of each doc (a Doc, or a list of some of its tokens) and the encoder's vocabulary."""

    tokens: List[Union[Doc, Sequence[Token]]]
    vocab: WordPieceEncoder


@dataclass
class PieceBatch:
    """Each doc's piece ids with each token's piece count, and the vocabulary they come from
    (its [CLS]/[SEP]/[PAD] ids frame the windows; its strings go into ``TransformerData``)."""

    docs: List[TokenPieces]
    vocab: WordPieceEncoder


TrfData = List[TransformerData]
# Piece vectors (n_layers, n_pieces, width), overlap-averaged, and each window's [CLS] (n_windows, width).
EncoderOutput = Tuple[Floats3d, Floats2d]

PieceEncoderModel = Model[TokenBatch, PieceBatch]
TorchEncoderModel = Model[WindowBatch, EncoderOutput]
WindowsModel = Model[PieceBatch, TrfData]
TokensModel = Model[TokenBatch, TrfData]

# Combinators take the node they wrap, as spacy-curated-transformers' ``with_spans`` does.
WithWindows = Callable[[TorchEncoderModel], WindowsModel]
WithWhitespace = Callable[[TokensModel], TokensModel]

ElectraTransformerModel = Model[List[Doc], TrfData]
# What the heads and listeners produce.
TokenVectorsModel = Model[List[Doc], List[Floats2d]]
TokenScoresModel = Model[List[Doc], List[Floats2d]]
DocScoresModel = Model[List[Doc], Floats2d]
