"""Task head architectures. Each takes its encoder as ``tok2vec``: an own
``spacy_electra.ElectraTransformer.v1`` (default) or ``spacy_electra.ElectraTransformerListener.v1``
to share an upstream ``electra_transformer``. Both give one ``TransformerData`` per doc; the head
pools what it needs (token vectors or [CLS] vectors) and classifies.

The argument is called ``tok2vec`` because that is where spaCy's ``nlp.replace_listeners``
looks for a component's listener."""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.data_classes import TransformerData
from thinc.api import Dropout, Gelu, Linear, Model, chain, with_array
from thinc.types import Floats2d
from transformers.utils import ModelOutput

from .listeners import ElectraTransformerListener, pool_tokens
from .trf_data import CLS_KEY
from .types import DocScoresModel, TokenScoresModel
from .types import ElectraTransformerModel as EncoderModel


@registry.architectures("spacy_electra.ElectraTransformerListener.v1")
def ElectraTransformerListener_v1(*, upstream: str = "*") -> EncoderModel:
    """The upstream ``electra_transformer``'s output, unpooled: the ``encoder`` of a head that
    shares the pipeline's encoder."""
    return ElectraTransformerListener(upstream)


@registry.architectures("spacy_electra.TokenClassifier.v1")
def TokenClassifier_v1(
    *, tok2vec: EncoderModel, pooling: str = "first", dropout: float = 0.1, nO: Optional[int] = None
) -> TokenScoresModel:
    """Per-token logits: each token's pieces pooled (``first`` piece, as in ELECTRA's
    fine-tuning), dropout, then a linear layer: with ``first``, HF's
    ``ElectraForTokenClassification`` read at each token's first piece (``pipes/hf_heads.py``)."""
    output = Linear(nO=nO)
    dropout_layer: Model[Floats2d, Floats2d] = Dropout(dropout)
    model: TokenScoresModel = chain(tok2vec, pool_tokens(pooling, 1.0), with_array(chain(dropout_layer, output)))
    model.set_ref("output_layer", output)
    return model


@registry.architectures("spacy_electra.DocClassifier.v1")
def DocClassifier_v1(*, tok2vec: EncoderModel, dropout: float = 0.1, nO: Optional[int] = None) -> DocScoresModel:
    """ELECTRA's classification head on [CLS]: dropout, dense + GELU, dropout, linear. A doc
    longer than one window uses the mean of its windows' [CLS] vectors. This is the layout of
    HF's ``ElectraClassificationHead`` (thinc's ``Gelu`` is the same erf GELU), so a fine-tuned
    HF sequence classifier's weights load into it unchanged (``pipes/hf_heads.py``)."""
    encoder = tok2vec
    output = Linear(nO=nO)
    dense = Gelu()
    model: DocScoresModel = chain(encoder, pool_cls(), Dropout(dropout), dense, Dropout(dropout), output)
    model.init = _doc_classifier_init
    model.set_ref("dense", dense)
    model.set_ref("output_layer", output)
    return model


def _doc_classifier_init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> Model:
    """chain's init, except that the dense layer is as wide as the encoder, which is only known
    once the encoder is initialised (its checkpoint's hidden_size)."""
    encoder, *rest = model.layers
    encoder.initialize(X=X)
    dense = model.get_ref("dense")
    if not dense.has_dim("nO"):
        dense.set_dim("nO", encoder.get_dim("nO"))
    current = encoder.predict(X) if X else None
    for layer in rest:
        layer.initialize(X=current)
        current = layer.predict(current) if current is not None else None
    return model


def pool_cls() -> Model[List[TransformerData], Floats2d]:
    return Model("electra_pool_cls", _pool_cls_forward)


def _pool_cls_forward(model: Model, X: List[TransformerData], is_train: bool) -> Tuple[Floats2d, Callable]:
    """Mean [CLS] vector per doc. Data from an encoder that keeps no [CLS] vectors (e.g.
    spacy-transformers' ``transformer``) falls back to the mean piece vector."""
    ops = model.ops
    rows, sources = [], []
    for data in X:
        out = data.model_output
        cls = out.get(CLS_KEY)
        if cls is not None and len(cls):
            source, vectors = CLS_KEY, cls
        else:
            hidden = out["last_hidden_state"]
            source, vectors = "last_hidden_state", hidden.reshape(-1, hidden.shape[-1])
        rows.append(vectors.mean(axis=0) if len(vectors) else ops.alloc1f(vectors.shape[-1]))
        sources.append((source, vectors.shape, len(vectors)))
    Y = ops.xp.stack(rows).astype("float32")

    def backprop(dY: Floats2d) -> List[TransformerData]:
        grads = []
        for data, d_row, (source, shape, n) in zip(X, dY, sources):
            d_vectors = ops.xp.broadcast_to(d_row / max(n, 1), shape).astype("float32")
            if source == "last_hidden_state":
                d_vectors = d_vectors.reshape(data.model_output["last_hidden_state"].shape)
            grads.append(TransformerData(wordpieces=data.wordpieces, model_output=ModelOutput({source: d_vectors}), align=data.align))
        return grads

    return Y, backprop
