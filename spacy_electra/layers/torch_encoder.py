"""``spacy_electra.TorchEncoder.v1``: the torch ELECTRA encoder as a Thinc node.

It owns everything that belongs with the weights: the checkpoint they are read from at
``initialize`` (``loaders.py``), the ``ElectraShim`` (thread-safe prediction, layer-wise
learning-rate decay, mixed precision, inference backend), the checked blob they are saved in
(``checkpoint/blob.py``), ``frozen`` and ``all_layers``. It runs a batch of windows through the
torch ``WindowedEncoder`` and returns overlap-averaged piece vectors, so anything that changes
how the windows run goes here, for every combinator that wraps it.

Building the node reads nothing: its width ``nO`` is inferred at ``initialize`` from the
checkpoint, as spaCy's own layers infer theirs from data.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple, cast

import torch
from spacy.util import registry
from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.types import Floats2d, Floats3d

from ..checkpoint.blob import deserialize_windowed_encoder, serialize_windowed_encoder
from ..torch_model.windowed import WindowedEncoder
from ..windows import WindowBatch
from .loaders import load_checkpoint_into
from .shim import ElectraShim, electra_shim, make_shim
from .types import EncoderOutput, TorchEncoderModel

DEFAULT_CHECKPOINT = "google/electra-small-discriminator"


@registry.architectures("spacy_electra.TorchEncoder.v1")
def TorchEncoder_v1(
    *,
    checkpoint: str = DEFAULT_CHECKPOINT,
    all_layers: bool = False,
    frozen: bool = False,
    layer_lr_decay: float = 1.0,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[Dict[str, Any]] = None,
    inference: str = "fp32",
) -> TorchEncoderModel:
    """ELECTRA read from ``checkpoint`` (a local HF-format folder or a Hub id) at
    ``initialize``, not here, so a config builds and a saved pipeline loads without it.
    ``all_layers`` keeps every layer's output (for ``ElectraScalarMixListener``); ``frozen``
    runs it as in prediction during training; ``layer_lr_decay`` (e.g. 0.8, the ELECTRA paper's
    recipe) lowers the learning rate of lower layers, 1.0 turns it off. ``inference`` picks the
    prediction backend ("fp32", "bf16", "int8", "onnx", "onnx-int8"; training always runs fp32
    torch and the saved weights stay fp32)."""
    shim = make_shim(
        serialize_windowed_encoder, deserialize_windowed_encoder, layer_lr_decay=layer_lr_decay,
        mixed_precision=mixed_precision, grad_scaler_config=grad_scaler_config, inference=inference,
    )
    return Model(
        "electra_torch_encoder",
        encode_windows,
        init=_init,
        shims=[shim],
        dims={"nO": None},
        attrs={"checkpoint": str(checkpoint), "frozen": frozen, "all_layers": all_layers},
    )


def _init(model: TorchEncoderModel, X: Optional[Any] = None, Y: Optional[Any] = None) -> TorchEncoderModel:
    load_checkpoint_into(model)
    return model


def encoder_node(model: Model) -> TorchEncoderModel:
    """The ``TorchEncoder.v1`` node inside ``model`` (an ``ElectraTransformer.v1``, a head that
    owns one, or the node itself). Its attrs hold ``checkpoint`` and ``all_layers``."""
    for node in model.walk():
        if node.shims and isinstance(node.shims[0], ElectraShim) and "all_layers" in node.attrs:
            return node
    raise ValueError(f"{model.name!r} holds no ELECTRA encoder; pass the electra_transformer model (ElectraTransformer.v1).")


def get_encoder(model: Model) -> WindowedEncoder:
    module = electra_shim(encoder_node(model)).module
    if module is None:
        raise ValueError(
            "The ELECTRA encoder is not initialized: run nlp.initialize() (or `spacy train`), or "
            "load a trained pipeline with spacy.load()."
        )
    return module


def set_encoder(model: Model, module: WindowedEncoder) -> None:
    """Put ``module`` into the encoder node of ``model`` and set the widths that depend on it
    on every node between ``model`` and the encoder."""
    node = encoder_node(model)
    electra_shim(node).module = module
    top = next((n for n in model.walk() if n.name == "electra_transformer" and any(x is node for x in n.walk())), node)
    for layer in top.walk():  # every node of ElectraTransformer.v1 outputs the encoder's width
        if layer.has_dim("nO") is not False:
            layer.set_dim("nO", module.config.hidden_size, force=True)


def window_args(batch: WindowBatch, device: torch.device) -> Tuple[Any, ...]:
    """A window batch as the torch ``WindowedEncoder``'s positional arguments on ``device``:
    the chunks (ids, mask, target, window index), pieces, windows and 1/coverage per piece."""
    to_torch = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    chunks = [(to_torch(c.ids), to_torch(c.mask), to_torch(c.target), to_torch(c.window_index)) for c in batch.chunks]
    return (chunks, batch.n_pieces, sum(batch.doc_windows), to_torch(batch.inv_counts))


def encode_windows(model: TorchEncoderModel, batch: WindowBatch, is_train: bool) -> Tuple[EncoderOutput, Callable]:
    """Run the windows of ``batch`` through the torch encoder: piece vectors (n_layers,
    n_pieces, width), overlap-averaged, and each window's [CLS] vector. A frozen encoder runs
    as in prediction (no dropout, no gradient)."""
    module = get_encoder(model)
    train = is_train and not model.attrs["frozen"]
    all_layers = model.attrs["all_layers"]
    n_layers = module.config.num_hidden_layers + 1 if all_layers else 1
    width = module.config.hidden_size
    if batch.n_pieces == 0:
        return (model.ops.alloc3f(n_layers, 0, width), model.ops.alloc2f(0, width)), lambda d_out: batch
    shim = electra_shim(model)
    device = shim.device
    inputs = ArgsKwargs(args=window_args(batch, device), kwargs={"all_layers": all_layers, "dropout": train})
    (vectors_t, cls_t), backprop_torch = shim(inputs, train)

    def backprop(d_out: EncoderOutput) -> WindowBatch:
        if train:
            d_vectors, d_cls = d_out
            backprop_torch(
                ArgsKwargs(
                    args=((vectors_t, cls_t),),
                    kwargs={"grad_tensors": (xp2torch(d_vectors, device=device), xp2torch(d_cls, device=device))},
                )
            )
        return batch

    return (cast(Floats3d, torch2xp(vectors_t)), cast(Floats2d, torch2xp(cls_t))), backprop
