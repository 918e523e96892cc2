"""``spacy_electra.WindowedEncoder.v1``: the torch ELECTRA encoder as a Thinc node.

It owns everything that belongs with the weights: the checkpoint they are read from at
``initialize``, the ``ElectraShim`` (thread-safe prediction, layer-wise learning-rate decay,
mixed precision), the checked blob they are saved in (``layers/windowed_encoder.py``, the same
bytes as ``ElectraTransformer.v1``'s encoder), ``frozen`` and ``all_layers``. It runs a batch of
windows through ``model.windowed.WindowedEncoder`` and returns overlap-averaged piece vectors,
so anything that changes how the windows run (precision, an inference backend) goes here, in
this builder and in ``_init``, for every combinator that wraps it.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from spacy.util import registry
from thinc.api import Model, PyTorchGradScaler

from ..transformer import DEFAULT_CHECKPOINT, ElectraShim, check_inference, encode_windows, load_windowed_encoder, local_config, set_encoder
from ..windowed_encoder import deserialize_windowed_encoder, serialize_windowed_encoder
from .types import WindowedEncoderModel


@registry.architectures("spacy_electra.WindowedEncoder.v1")
def WindowedEncoder_v1(
    *,
    checkpoint: str = DEFAULT_CHECKPOINT,
    all_layers: bool = False,
    frozen: bool = False,
    layer_lr_decay: float = 1.0,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[Dict[str, Any]] = None,
    inference: str = "fp32",
) -> WindowedEncoderModel:
    """ELECTRA read from ``checkpoint`` (a local HF-format folder or a cached hub id) at
    ``initialize``, not here, so a config builds and a saved pipeline loads without it.
    ``all_layers`` keeps every layer's output (for ``ElectraScalarMixListener``); ``frozen``
    runs it as in prediction during training; ``layer_lr_decay`` (e.g. 0.8, the ELECTRA paper's
    recipe) lowers the learning rate of lower layers, 1.0 turns it off. ``inference`` picks the
    prediction backend (as in ``ElectraTransformer.v1``; training always runs fp32 torch)."""
    check_inference(inference)
    if not 0.0 < layer_lr_decay <= 1.0:
        raise ValueError(f"layer_lr_decay={layer_lr_decay} must be in (0, 1]; the ELECTRA paper uses 0.8.")
    shim = ElectraShim(
        None,
        mixed_precision=mixed_precision,
        grad_scaler=PyTorchGradScaler(enabled=mixed_precision, **(grad_scaler_config or {})),
        serialize_model=serialize_windowed_encoder,
        deserialize_model=deserialize_windowed_encoder,
    )
    shim.layer_lr_decay = layer_lr_decay
    shim.inference = inference
    return Model(
        "electra_windowed_encoder",
        encode_windows,
        init=_init,
        shims=[shim],
        dims={"nO": local_config(checkpoint).get("hidden_size")},
        attrs={"checkpoint": str(checkpoint), "frozen": frozen, "all_layers": all_layers},
    )


def _init(model: WindowedEncoderModel, X: Optional[List] = None, Y=None) -> WindowedEncoderModel:
    set_encoder(model, load_windowed_encoder(model.attrs["checkpoint"]))
    return model
