"""``spacy_electra.ElectraTransformer.v1``: Docs in, one ``TransformerData`` per doc out.

Data flow: token texts -> WordPiece ids per token (exact alignment) -> windows over the doc's
pieces -> ELECTRA (torch, through a Thinc ``PyTorchShim``) -> piece vectors averaged over
overlapping windows -> ``TransformerData`` (spacy-transformers' format, so its listeners and
spaCy's own components work on top unchanged).

``ElectraTransformer.v2`` (``layers/compose/``) builds the same path from registered nodes that a
config can swap; both run the torch encoder through ``encode_windows`` below and hand out
``TransformerData`` through ``trf_data.py``, so they give the same outputs and save the same blob.
Code that needs the encoder of either goes through ``encoder_node`` / ``get_encoder``.
"""
from __future__ import annotations

import json
import os
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.data_classes import TransformerData
from thinc.api import ArgsKwargs, Model, PyTorchGradScaler, PyTorchShim, get_torch_default_device, torch2xp, xp2torch
from thinc.types import Floats2d, Floats3d

from ..model import load_checkpoint
from ..model.checkpoint import CheckpointError, load_wordpiece, resolve_checkpoint
from ..windows import WindowBatch, check_window, make_window_batch
from ..model.backends import INFERENCE_KINDS, apply_inference
from ..model.windowed import WindowedEncoder
from .trf_data import CLS_KEY, doc_gradients, doc_outputs, with_zero_row  # noqa: F401 (CLS_KEY re-exported)
from .windowed_encoder import deserialize_windowed_encoder, serialize_windowed_encoder

ElectraTransformerModel = Model[List[Doc], List[TransformerData]]


_PARENT_PID = os.getpid()


def _one_thread_in_forked_child() -> None:
    """``nlp.pipe(n_process=N)`` forks (on Linux): a child that inherits torch's OpenMP pool
    deadlocks in its first parallel op, so a forked child runs torch single-threaded, as
    DataLoader workers do. Checked where the encoder runs, before its first torch op in the
    child, instead of an ``os.register_at_fork`` hook at import time that would change torch's
    threads in every forked child of any program that merely imports the plugin."""
    global _PARENT_PID
    pid = os.getpid()
    if pid != _PARENT_PID:
        _PARENT_PID = pid
        torch.set_num_threads(1)

DEFAULT_CHECKPOINT = "google/electra-small-discriminator"
_INFERENCE_LOCK = threading.Lock()  # module level: shims are deep-copied, locks cannot be


def check_inference(kind: str) -> str:
    if kind not in INFERENCE_KINDS:
        raise ValueError(f"inference = {kind!r} is not a backend; use one of {', '.join(INFERENCE_KINDS)} (README: Fast CPU inference).")
    return kind


class ElectraShim(PyTorchShim):
    """A PyTorchShim whose torch module appears at ``initialize`` (or on deserialisation), and
    whose optimizer step applies ELECTRA's layer-wise learning-rate decay: encoder layer l of L
    (1-based) learns at lr * decay^(L+1-l), the embeddings (and their projection) at
    lr * decay^(L+1).

    The decay is a learning-rate scale keyed by parameter name (a discriminative schedule, as
    spacy-curated-transformers has on thinc 9). thinc 8.3's optimizer has no keyed schedules
    (its schedules are plain generators), but its call takes ``lr_scale``, which multiplies
    Adam's *update*; scaling the gradient instead would be undone by Adam's normalisation. So
    ``finish_update`` is PyTorchShim's, given an optimizer that adds the scale of each key."""

    layer_lr_decay: float = 1.0
    # The configured inference backend (model/backends.py). It is applied to whatever module the
    # shim holds at its first prediction, so initialize, from_bytes/from_disk and set_encoder are
    # all covered by one check; training (begin_update) always runs the fp32 torch path.
    inference: str = "fp32"

    def _ensure_inference(self) -> None:
        module = self._model
        if self.inference == "fp32" or getattr(module, "_configured_inference", None) == self.inference:
            return
        with _INFERENCE_LOCK:
            if getattr(module, "_configured_inference", None) != self.inference:
                apply_inference(module, self.inference)  # warns and keeps fp32 where it cannot run
                module._configured_inference = self.inference

    def lr_scale(self, name: str) -> float:
        decay = self.layer_lr_decay
        if decay == 1.0:
            return 1.0
        n_layers = self._model.config.num_hidden_layers
        parts = name.split(".")
        if parts[:2] == ["encoder", "layers"]:
            return decay ** (n_layers - int(parts[2]))  # layers.{i} is layer i+1
        if parts[:2] in (["encoder", "embeddings"], ["encoder", "projection"]):
            return decay ** (n_layers + 1)
        return 1.0

    def finish_update(self, optimizer) -> None:
        if self._model is None:
            return
        if self.layer_lr_decay == 1.0:
            super().finish_update(optimizer)
        else:
            super().finish_update(KeyScaledOptimizer(optimizer, lambda key: self.lr_scale(key[1])))

    def predict(self, inputs: ArgsKwargs):
        """Thinc's ``PyTorchShim.predict`` switches the shared module to eval() and back to
        train() around every call, so one thread's prediction could turn dropout on inside
        another's. Our encoder takes dropout as an argument instead, and inference never
        touches module state: concurrent ``nlp.pipe`` calls on one pipeline are safe."""
        _one_thread_in_forked_child()
        self._ensure_inference()
        with torch.no_grad(), torch.autocast(device_type="cuda", enabled=self._mixed_precision):
            return self._model(*inputs.args, **{**inputs.kwargs, "dropout": False})

    def begin_update(self, inputs: ArgsKwargs):
        _one_thread_in_forked_child()
        return super().begin_update(inputs)

    def to_device(self, device_type: str, device_id: int) -> None:  # pragma: no cover - GPU
        if self._model is not None:
            super().to_device(device_type, device_id)

    @property
    def device(self):
        if self._model is None:
            return get_torch_default_device()
        return super().device


class KeyScaledOptimizer:
    """Calls ``optimizer`` with ``lr_scale`` times ``scale(key)`` for each parameter key."""

    def __init__(self, optimizer, scale: Callable[[Tuple[int, str]], float]) -> None:
        self.optimizer = optimizer
        self.scale = scale

    def __call__(self, key: Tuple[int, str], weights, gradient, *, lr_scale: float = 1.0):
        return self.optimizer(key, weights, gradient, lr_scale=lr_scale * self.scale(key))


@registry.architectures("spacy_electra.ElectraTransformer.v1")
def ElectraTransformer_v1(
    *,
    checkpoint: str = DEFAULT_CHECKPOINT,
    window: int = 128,
    stride: int = 96,
    frozen: bool = False,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[Dict[str, Any]] = None,
    max_batch_items: int = 4096,
    all_layers: bool = False,
    layer_lr_decay: float = 1.0,
    inference: str = "fp32",
) -> ElectraTransformerModel:
    """ELECTRA over wordpiece windows of each doc. Weights are read from ``checkpoint`` (a local
    HF-format folder or a cached hub id) at ``initialize``, not here, so a config can be built
    and a pipeline loaded without the original checkpoint. ``all_layers`` keeps every layer's
    output (for ``ElectraScalarMixListener``). ``layer_lr_decay`` (e.g. 0.8, the ELECTRA paper's
    fine-tuning recipe) lowers the learning rate of lower layers; 1.0 turns it off. ``inference``
    picks the backend predictions run on ("fp32", "bf16", "int8", "onnx", "onnx-int8"; see
    model/backends.py): training always runs fp32 torch and the saved weights stay fp32."""
    check_inference(inference)
    if not 0.0 < layer_lr_decay <= 1.0:
        raise ValueError(f"layer_lr_decay={layer_lr_decay} must be in (0, 1]; the ELECTRA paper uses 0.8.")
    local = local_config(checkpoint)  # read once: max positions and width, when on disk
    check_window(window, stride, int(local.get("max_position_embeddings", 512)))
    if max_batch_items < window + 2:
        raise ValueError(f"max_batch_items={max_batch_items} cannot hold one window of {window} + 2 pieces; raise it to at least {window + 2}.")
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
        "electra_transformer",
        forward,
        init=init,
        shims=[shim],
        dims={"nO": local.get("hidden_size")},
        attrs={
            "checkpoint": str(checkpoint),
            "window": window,
            "stride": stride,
            "frozen": frozen,
            "max_batch_items": max_batch_items,
            "all_layers": all_layers,
        },
    )


def local_config(checkpoint: str) -> Dict[str, Any]:
    """config.json of the checkpoint if it is already on disk; {} otherwise (checked at init).
    Never downloads: building a config must not touch the network."""
    try:
        return json.loads((resolve_checkpoint(checkpoint, local_files_only=True) / "config.json").read_text())
    except (CheckpointError, OSError, ValueError):
        return {}


def encoder_node(model: Model) -> Model:
    """The node whose shim holds the torch encoder: ``model`` itself for ``ElectraTransformer.v1``,
    the ``WindowedEncoder.v1`` node inside ``.v2``. Its attrs hold ``checkpoint`` and ``all_layers``."""
    for node in model.walk():
        if node.shims and isinstance(node.shims[0], ElectraShim):
            return node
    raise ValueError(f"{model.name!r} holds no ELECTRA encoder; pass the electra_transformer model (ElectraTransformer.v1 or .v2).")


def get_encoder(model: Model) -> WindowedEncoder:
    module = encoder_node(model).shims[0]._model
    if module is None:
        raise ValueError(
            "The ELECTRA encoder is not initialized: run nlp.initialize() (or `spacy train`), or "
            "load a trained pipeline with spacy.load()."
        )
    return module


def set_encoder(model: Model, module: WindowedEncoder) -> None:
    node = encoder_node(model)
    shim = node.shims[0]
    shim._model = module.to(shim.device)
    node.set_dim("nO", module.config.hidden_size, force=True)
    if model is not node and model.has_dim("nO") is not False:
        model.set_dim("nO", module.config.hidden_size, force=True)


def load_windowed_encoder(checkpoint: str) -> WindowedEncoder:
    """The encoder and vocabulary of ``checkpoint`` (a local folder or a cached hub id)."""
    try:
        directory = resolve_checkpoint(checkpoint)
    except CheckpointError as err:
        raise CheckpointError(
            f"{err} To use another model, set `checkpoint` in the encoder's model config "
            "(e.g. --paths.checkpoint /path/to/checkpoint with the shipped configs)."
        ) from None
    encoder = load_checkpoint(directory, kind="encoder")
    wordpiece = load_wordpiece(directory, vocab_size=encoder.config.vocab_size)
    return WindowedEncoder(encoder, wordpiece)


def init(model: ElectraTransformerModel, X: Optional[List[Doc]] = None, Y=None) -> ElectraTransformerModel:
    module = load_windowed_encoder(model.attrs["checkpoint"])
    check_window(model.attrs["window"], model.attrs["stride"], module.config.max_position_embeddings)
    set_encoder(model, module)
    return model


def forward(model: ElectraTransformerModel, docs: List[Doc], is_train: bool):
    wp = get_encoder(model).wordpiece
    pieces = wp.encode_batch([[token.text for token in doc] for doc in docs])
    batch = make_window_batch(
        pieces,
        window=model.attrs["window"],
        stride=model.attrs["stride"],
        max_batch_items=model.attrs["max_batch_items"],
        cls_id=wp.cls_id,
        sep_id=wp.sep_id,
        pad_id=wp.pad_id,
    )
    (vectors, cls), backprop_windows = encode_windows(model, batch, is_train)
    outputs = doc_outputs(pieces, wp, batch, vectors, cls, model.attrs["all_layers"])
    outputs = [with_zero_row(model.ops, out) if n == 0 and len(doc) else out for out, n, doc in zip(outputs, batch.doc_pieces, docs)]

    def backprop(d_outputs: List[TransformerData]) -> List[Doc]:
        if is_train and not model.attrs["frozen"] and batch.n_pieces:
            backprop_windows(doc_gradients(model.ops, d_outputs, batch, vectors.shape[0], vectors.shape[-1]))
        return docs

    return outputs, backprop


def encode_windows(model: Model, batch: WindowBatch, is_train: bool) -> Tuple[Tuple[Floats3d, Floats2d], Callable]:
    """Run the windows of ``batch`` through the torch encoder of ``model`` (a node with an
    ``ElectraShim`` and ``frozen`` / ``all_layers`` attrs): piece vectors (n_layers, n_pieces,
    width), overlap-averaged, and each window's [CLS] vector. A frozen encoder runs as in
    prediction (no dropout, no gradient). The forward of v1 and of v2's ``WindowedEncoder.v1``."""
    module = get_encoder(model)
    train = is_train and not model.attrs["frozen"]
    all_layers = model.attrs["all_layers"]
    n_layers = module.config.num_hidden_layers + 1 if all_layers else 1
    width = module.config.hidden_size
    if batch.n_pieces == 0:
        return (model.ops.alloc3f(n_layers, 0, width), model.ops.alloc2f(0, width)), lambda d_out: batch
    shim = model.shims[0]
    device = shim.device
    to_torch = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    chunks = [(to_torch(c.ids), to_torch(c.mask), to_torch(c.target), to_torch(c.window_index)) for c in batch.chunks]
    inputs = ArgsKwargs(
        args=(chunks, batch.n_pieces, sum(batch.doc_windows), to_torch(batch.inv_counts)),
        kwargs={"all_layers": all_layers, "dropout": train},
    )
    (vectors_t, cls_t), backprop_torch = shim(inputs, train)

    def backprop(d_out: Tuple[Floats3d, Floats2d]) -> WindowBatch:
        if train:
            d_vectors, d_cls = d_out
            backprop_torch(
                ArgsKwargs(
                    args=((vectors_t, cls_t),),
                    kwargs={"grad_tensors": (xp2torch(d_vectors, device=device), xp2torch(d_cls, device=device))},
                )
            )
        return batch

    return (torch2xp(vectors_t), torch2xp(cls_t)), backprop
