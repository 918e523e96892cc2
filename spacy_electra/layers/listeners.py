"""Listeners: layers of downstream components that take their input from an upstream
``electra_transformer`` instead of running an encoder of their own.

``ElectraListener.v1`` = listener -> pool each token's pieces (first / mean / last).
``ElectraScalarMixListener.v1`` = listener -> softmax-weighted mix of all layers -> pool.
Both receive spacy-transformers' ``TransformerData``, so they also work under its
``transformer`` component, and its ``TransformerListener.v1`` works under ours.

``nlp.replace_listeners`` (sourcing or freezing a component) swaps a listener for a copy of the
upstream encoder: ``replace_listener`` and ``replace_listener_cfg`` are the hooks it calls, and
the ``*Tok2Vec`` architectures below are the standalone equivalents the new config names.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List, Optional, Tuple

from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.data_classes import TransformerData
from spacy_transformers.layers.listener import TransformerListener
from spacy_transformers.layers.listener import forward as transformer_listener_forward
from spacy_transformers.layers.trfs2arrays import trfs2arrays
from thinc.api import Model, chain
from thinc.types import Floats2d
from transformers.utils import ModelOutput

from .types import TokenVectorsModel as ListenerModel
from .types import TrfData

POOLINGS = ("first", "mean", "last")


class ElectraTransformerListener(TransformerListener):
    """spacy-transformers' listener, plus: when the upstream keeps no data on docs
    (``keep_trf_data = false``), the listener of the last listening component clears
    ``doc._.trf_data`` after reading it."""

    name = "electra-transformer-listener"

    def __init__(self, upstream_name: str) -> None:
        super().__init__(upstream_name)
        self._func = _listener_forward
        self.attrs["release_after_read"] = False


def _listener_forward(model: ElectraTransformerListener, docs: List[Doc], is_train: bool):
    outputs, backprop = transformer_listener_forward(model, docs, is_train)
    if not is_train and model.attrs["release_after_read"]:
        for doc in docs:
            doc._.trf_data = None
    return outputs, backprop


@registry.architectures("spacy_electra.ElectraListener.v1")
def ElectraListener_v1(*, pooling: str = "first", grad_factor: float = 1.0, upstream: str = "*") -> ListenerModel:
    """Token vectors from an upstream ``electra_transformer``: each token's pieces pooled with
    ``first`` (ELECTRA's fine-tuning convention), ``mean`` or ``last``. Tokens without pieces
    (whitespace) get zero vectors."""
    return chain(ElectraTransformerListener(upstream), pool_tokens(pooling, grad_factor))


@registry.architectures("spacy_electra.ElectraScalarMixListener.v1")
def ElectraScalarMixListener_v1(
    *, pooling: str = "first", grad_factor: float = 1.0, upstream: str = "*"
) -> ListenerModel:
    """Like ``ElectraListener.v1`` over a learned mix of every layer (softmax weights and a
    scale, ELMo-style). The upstream needs ``all_layers = true``."""
    return chain(ElectraTransformerListener(upstream), scalar_mix(), pool_tokens(pooling, grad_factor))


# -- standalone equivalents (what nlp.replace_listeners puts in the config) ---------------------
@registry.architectures("spacy_electra.ElectraTok2Vec.v1")
def ElectraTok2Vec_v1(*, encoder: Model, pooling: str = "first", grad_factor: float = 1.0) -> ListenerModel:
    """``ElectraListener.v1`` with its own encoder instead of an upstream component."""
    return chain(encoder, pool_tokens(pooling, grad_factor))


@registry.architectures("spacy_electra.ElectraScalarMixTok2Vec.v1")
def ElectraScalarMixTok2Vec_v1(*, encoder: Model, pooling: str = "first", grad_factor: float = 1.0) -> ListenerModel:
    """``ElectraScalarMixListener.v1`` with its own encoder (which needs ``all_layers = true``)."""
    model: ListenerModel = chain(encoder, scalar_mix(), pool_tokens(pooling, grad_factor))
    model.init = _own_mix_init
    return model


@registry.architectures("spacy_electra.ElectraTrfPoolingTok2Vec.v1")
def ElectraTrfPoolingTok2Vec_v1(*, encoder: Model, pooling: Model, grad_factor: float = 1.0) -> ListenerModel:
    """spacy-transformers' ``TransformerListener.v1`` with its own ELECTRA encoder."""
    return chain(encoder, trfs2arrays(pooling, grad_factor))


def _own_mix_init(model: Model, X=None, Y=None) -> Model:
    """chain's init, except that the mix learns the encoder's layer count, known once the
    encoder has loaded its checkpoint (an upstream component tells its listeners instead)."""
    encoder, mix, pool = model.layers
    encoder.initialize()
    from .torch_encoder import encoder_node, get_encoder  # a cycle at import time otherwise

    if not encoder_node(encoder).attrs["all_layers"]:
        raise ValueError("ElectraScalarMixTok2Vec.v1 needs every layer: set all_layers = true in its encoder.")

    mix.set_dim("nL", get_encoder(encoder).config.num_hidden_layers + 1, force=True)
    mix.initialize()
    pool.initialize(X=encoder.predict(X) if X else None)
    return model


LISTENER_REPLACEMENTS = {
    "spacy_electra.ElectraListener.v1": "spacy_electra.ElectraTok2Vec.v1",
    "spacy_electra.ElectraScalarMixListener.v1": "spacy_electra.ElectraScalarMixTok2Vec.v1",
    "spacy-transformers.TransformerListener.v1": "spacy_electra.ElectraTrfPoolingTok2Vec.v1",
}


def replace_listener(encoder: Model, listener: Model, upstream) -> Model:
    """``replace_listener`` hook: the listener node becomes ``encoder`` (spaCy passes a fresh copy
    of the upstream's model), and whatever followed the listener (pooling, scalar mix, the head)
    stays as trained. The copy's torch shim gets its own id, so the optimizer does not share Adam state between it and the upstream encoder
    when both keep training."""
    from .shim import ElectraShim

    for node in encoder.walk():
        node.shims[:] = [shim.renewed() if isinstance(shim, ElectraShim) else shim for shim in node.shims]
    return encoder


def replace_listener_cfg(encoder_cfg: Dict[str, Any], listener_cfg: Dict[str, Any]) -> Dict[str, Any]:
    """``replace_listener_cfg`` hook: the config that builds, on its own, what ``replace_listener``
    made of ``listener_cfg`` (the component's ``[model.tok2vec]``)."""
    encoder_cfg = copy.deepcopy(dict(encoder_cfg))
    arch = listener_cfg.get("@architectures")
    if arch == "spacy_electra.ElectraTransformerListener.v1":  # a head's encoder: the copy itself
        return encoder_cfg
    if arch not in LISTENER_REPLACEMENTS:
        raise ValueError(
            f"Cannot replace a listener built by {arch!r}: spacy-electra knows how to make "
            f"{', '.join(['spacy_electra.ElectraTransformerListener.v1', *LISTENER_REPLACEMENTS])} standalone."
        )
    config = {"@architectures": LISTENER_REPLACEMENTS[arch], "encoder": encoder_cfg}
    for key in ("pooling", "grad_factor"):
        if key in listener_cfg:
            config[key] = copy.deepcopy(listener_cfg[key])
    return config


# -- pooling ----------------------------------------------------------------------------------
def pool_tokens(pooling: str, grad_factor: float) -> Model[TrfData, List[Floats2d]]:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r} is not one of {', '.join(POOLINGS)}.")
    return Model(
        "electra_pool_tokens",
        _pool_forward,
        init=_pool_init,
        dims={"nO": None},
        attrs={"pooling": pooling, "grad_factor": grad_factor},
    )


def _pool_init(model: Model, X: Optional[TrfData] = None, Y=None) -> Model:
    if X:
        for data in X:
            if "last_hidden_state" in data.model_output:
                model.set_dim("nO", data.width, force=True)
                break
    return model


def _pool_forward(model: Model, X: TrfData, is_train: bool) -> Tuple[List[Floats2d], Callable]:
    ops = model.ops
    xp = ops.xp
    pooling = model.attrs["pooling"]
    outputs: List[Floats2d] = []
    saved: List[Optional[Tuple[TransformerData, Any, Any, Any]]] = []  # (data, flat.shape, rows, lengths)
    for data in X:
        hidden = data.model_output.get("last_hidden_state")
        lengths = xp.asarray(data.align.lengths, dtype="int32")
        if hidden is None or hidden.size == 0:
            width = hidden.shape[-1] if hidden is not None else (model.get_dim("nO") if model.has_dim("nO") else 0)
            outputs.append(ops.alloc2f(len(lengths), width))
            saved.append(None)
            continue
        flat = hidden.reshape(-1, hidden.shape[-1])
        index = xp.asarray(data.align.dataXd, dtype="int32")
        if pooling == "mean":
            rows = index
            pooled = ops.reduce_mean(flat[index], lengths)
        else:
            ends = xp.cumsum(lengths)
            pick = ends - lengths if pooling == "first" else ends - 1
            has = lengths > 0
            rows = index[pick[has]]
            pooled = ops.alloc2f(len(lengths), flat.shape[1])
            pooled[has] = flat[rows]
        outputs.append(pooled)
        saved.append((data, flat.shape, rows, lengths))

    def backprop(d_outputs: List[Floats2d]) -> TrfData:
        grads = []
        factor = model.attrs["grad_factor"]
        for d_out, item, data in zip(d_outputs, saved, X):
            if item is None:
                grads.append(TransformerData(wordpieces=data.wordpieces, model_output=ModelOutput(), align=data.align))
                continue
            _, shape, rows, lengths = item
            d_flat = ops.alloc2f(*shape)
            if pooling == "mean":
                d_rows = ops.backprop_reduce_mean(d_out, lengths)
            else:
                d_rows = d_out[lengths > 0]
            ops.scatter_add(d_flat, rows, d_rows * factor)
            hidden = data.model_output["last_hidden_state"]
            grads.append(
                TransformerData(
                    wordpieces=data.wordpieces,
                    model_output=ModelOutput(last_hidden_state=d_flat.reshape(hidden.shape)),
                    align=data.align,
                )
            )
        return grads

    return outputs, backprop


# -- scalar mix -------------------------------------------------------------------------------
def scalar_mix() -> Model[TrfData, TrfData]:
    """``gamma * sum_l softmax(w)_l * H_l`` over the upstream's layers (nL is set by the upstream
    when it links this listener)."""
    return Model("electra_scalar_mix", _mix_forward, init=_mix_init, dims={"nL": None}, params={"weights": None, "gamma": None})


def _mix_init(model: Model, X=None, Y=None) -> Model:
    if not model.has_dim("nL"):
        raise ValueError(
            "ElectraScalarMixListener.v1 needs an upstream electra_transformer with "
            "all_layers = true in its model config (no layer count was received)."
        )
    model.set_param("weights", model.ops.alloc1f(model.get_dim("nL")))
    gamma = model.ops.alloc1f(1)
    gamma[0] = 1.0
    model.set_param("gamma", gamma)
    return model


def _mix_forward(model: Model, X: TrfData, is_train: bool):
    ops, xp = model.ops, model.ops.xp
    raw = model.get_param("weights")
    weights = xp.exp(raw - raw.max())
    weights /= weights.sum()
    gamma = model.get_param("gamma")[0]
    outputs, stacks = [], []
    for data in X:
        layers = data.model_output.get("hidden_states")
        if layers is None:
            # An unannotated doc (the listener's zeros, e.g. during initialize). A misconfigured
            # upstream (all_layers = false) is refused when the listener is linked.
            outputs.append(data)
            stacks.append(None)
            continue
        stack = xp.stack(layers)  # (nL, 1, n, width)
        mixed = gamma * xp.tensordot(weights, stack, axes=1)
        out = ModelOutput(data.model_output)
        out["last_hidden_state"] = mixed.astype("float32")
        outputs.append(TransformerData(wordpieces=data.wordpieces, model_output=out, align=data.align))
        stacks.append(stack)

    def backprop(d_outputs: TrfData) -> TrfData:
        d_weights = ops.alloc1f(len(weights))
        d_gamma = 0.0
        grads = []
        for d_data, stack, data in zip(d_outputs, stacks, X):
            d_mixed = d_data.model_output.get("last_hidden_state") if stack is not None else None
            if d_mixed is None:
                grads.append(d_data)
                continue
            per_layer = (stack * d_mixed[None]).reshape(len(weights), -1).sum(axis=1)  # <H_l, dY>
            d_gamma += float((weights * per_layer).sum())
            d_weights += gamma * per_layer
            d_layers = tuple((gamma * w) * d_mixed for w in weights)
            grads.append(
                TransformerData(
                    wordpieces=data.wordpieces, model_output=ModelOutput(hidden_states=d_layers), align=data.align
                )
            )
        # softmax backprop: dz = w * (dw - <w, dw>)
        model.inc_grad("weights", (weights * (d_weights - (weights * d_weights).sum())).astype("float32"))
        model.inc_grad("gamma", ops.asarray1f([d_gamma]))
        return grads

    return outputs, backprop
