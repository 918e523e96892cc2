"""``spacy_electra.ElectraTransformer.v2``: ``ElectraTransformer.v1`` assembled from nodes that
a config can swap one at a time (as spacy-curated-transformers composes its models):

    with_whitespace(chain(piece_encoder, with_windows(encoder)))

* ``encoder``: ``spacy_electra.WindowedEncoder.v1``, the torch encoder, its checkpoint and its
  training settings (``torch_encoder.py``);
* ``piece_encoder``: ``spacy_electra.WordPieceEncoder.v1``, tokens to piece ids;
* ``with_windows``: ``spacy_electra.with_strided_windows.v1``, pieces in overlapping windows
  through the encoder and back as one ``TransformerData`` per doc;
* ``with_whitespace``: ``spacy_electra.with_non_ws_tokens.v1``, whitespace tokens around it all.

The output is v1's, so every listener, head and spaCy component works on either, and the
encoder is saved in the same checked blob. v1 stays one node: a saved pipeline's node tree is
part of its format, so v1 pipelines load as they always did.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, chain

from ..transformer import ElectraTransformerModel, encoder_node, get_encoder
from ..trf_data import TrfData
from .types import PieceEncoderModel, TokenBatch, WindowedEncoderModel, WithWhitespace, WithWindows


@registry.architectures("spacy_electra.ElectraTransformer.v2")
def ElectraTransformer_v2(
    *,
    encoder: WindowedEncoderModel,
    piece_encoder: PieceEncoderModel,
    with_windows: WithWindows,
    with_whitespace: WithWhitespace,
) -> ElectraTransformerModel:
    """Docs in, one ``TransformerData`` per doc out, like v1, from the nodes above."""
    layer = with_whitespace(chain(piece_encoder, with_windows(encoder)))
    return Model(
        "electra_transformer",
        _forward,
        init=_init,
        layers=[layer],
        dims={"nO": encoder.get_dim("nO") if encoder.has_dim("nO") else None},
    )


def _init(model: ElectraTransformerModel, X: Optional[List[Doc]] = None, Y=None) -> ElectraTransformerModel:
    model.layers[0].initialize()  # loads the checkpoint; the docs are not needed
    model.set_dim("nO", encoder_node(model).get_dim("nO"), force=True)
    return model


def _forward(model: ElectraTransformerModel, docs: List[Doc], is_train: bool) -> Tuple[TrfData, Callable]:
    vocab = get_encoder(model).wordpiece  # saved with the weights; see types.py
    outputs, backprop_layer = model.layers[0](TokenBatch(list(docs), vocab), is_train)

    def backprop(d_outputs: TrfData) -> List[Doc]:
        backprop_layer(d_outputs)
        return docs

    return outputs, backprop
