"""``spacy_electra.ElectraTransformer.v1``: Docs in, one ``TransformerData`` per doc out.

The data flow, one registered node per step, each swappable from a config (as
spacy-curated-transformers composes its models):

    with_whitespace(chain(piece_encoder, with_windows(encoder)))

* ``piece_encoder``: ``spacy_electra.WordPieceEncoder.v1``, each token's text to piece ids
  (exact alignment by construction, ``piece_encoder.py``);
* ``with_windows``: ``spacy_electra.with_strided_windows.v1``, pieces in overlapping windows
  through the encoder and back as one ``TransformerData`` per doc (``strided_windows.py``);
* ``encoder``: ``spacy_electra.TorchEncoder.v1``, the torch encoder, its checkpoint and its
  training settings (``torch_encoder.py``);
* ``with_whitespace``: ``spacy_electra.with_non_ws_tokens.v1``, whitespace tokens around it all.

The output is spacy-transformers' ``TransformerData``, so its listeners and spaCy's own
components work on top unchanged.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, chain

from .torch_encoder import DEFAULT_CHECKPOINT, encoder_node, get_encoder
from .types import (
    ElectraTransformerModel,
    PieceEncoderModel,
    TokenBatch,
    TorchEncoderModel,
    TrfData,
    WithWhitespace,
    WithWindows,
)


@registry.architectures("spacy_electra.ElectraTransformer.v1")
def ElectraTransformer_v1(
    *,
    encoder: TorchEncoderModel,
    piece_encoder: PieceEncoderModel,
    with_windows: WithWindows,
    with_whitespace: WithWhitespace,
) -> ElectraTransformerModel:
    layer = with_whitespace(chain(piece_encoder, with_windows(encoder)))
    return Model("electra_transformer", _forward, init=_init, layers=[layer], dims={"nO": None})


def _init(model: ElectraTransformerModel, X: Optional[List[Doc]] = None, Y: Optional[TrfData] = None) -> ElectraTransformerModel:
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


def encoder_config(
    section: str,
    *,
    checkpoint: str = DEFAULT_CHECKPOINT,
    window: int = 128,
    stride: int = 96,
    all_layers: bool = False,
) -> str:
    """The config of an ``ElectraTransformer.v1`` under ``[section]``, every node spelled out:
    the default model of the components, and what the shipped configs write."""
    flag = "true" if all_layers else "false"
    return f"""
[{section}]
@architectures = "spacy_electra.ElectraTransformer.v1"

[{section}.encoder]
@architectures = "spacy_electra.TorchEncoder.v1"
checkpoint = "{checkpoint}"
all_layers = {flag}

[{section}.piece_encoder]
@architectures = "spacy_electra.WordPieceEncoder.v1"

[{section}.with_windows]
@architectures = "spacy_electra.with_strided_windows.v1"
window = {window}
stride = {stride}

[{section}.with_whitespace]
@architectures = "spacy_electra.with_non_ws_tokens.v1"
"""
