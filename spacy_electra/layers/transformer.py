"""``spacy_electra.ElectraTransformer.v1``: Docs in, one ``TransformerData`` per doc out.

Data flow: token texts -> WordPiece ids per token (exact alignment) -> windows over the doc's
pieces -> ELECTRA (torch, through a Thinc ``PyTorchShim``) -> piece vectors averaged over
overlapping windows -> ``TransformerData`` (spacy-transformers' format, so its listeners and
spaCy's own components work on top unchanged).
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.data_classes import TransformerData, WordpieceBatch
from thinc.api import ArgsKwargs, Model, PyTorchGradScaler, PyTorchShim, get_torch_default_device, torch2xp, xp2torch
from thinc.types import Ragged
from transformers.utils import ModelOutput

from ..model import load_checkpoint
from ..model.checkpoint import CheckpointError, load_wordpiece, resolve_checkpoint
from ..pieces import WordPieceEncoder
from ..windows import check_window, make_window_batch
from ..model.windowed import WindowedEncoder
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
CLS_KEY = "cls_vectors"  # model_output key: the [CLS] vector of each window, (n_windows, hidden)


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
) -> ElectraTransformerModel:
    """ELECTRA over wordpiece windows of each doc. Weights are read from ``checkpoint`` (a local
    HF-format folder or a cached hub id) at ``initialize``, not here, so a config can be built
    and a pipeline loaded without the original checkpoint. ``all_layers`` keeps every layer's
    output (for ``ElectraScalarMixListener``). ``layer_lr_decay`` (e.g. 0.8, the ELECTRA paper's
    fine-tuning recipe) lowers the learning rate of lower layers; 1.0 turns it off."""
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


def get_encoder(model: ElectraTransformerModel) -> WindowedEncoder:
    module = model.shims[0]._model
    if module is None:
        raise ValueError(
            "The ELECTRA encoder is not initialized: run nlp.initialize() (or `spacy train`), or "
            "load a trained pipeline with spacy.load()."
        )
    return module


def set_encoder(model: ElectraTransformerModel, module: WindowedEncoder) -> None:
    shim = model.shims[0]
    shim._model = module.to(shim.device)
    model.set_dim("nO", module.config.hidden_size, force=True)


def init(model: ElectraTransformerModel, X: Optional[List[Doc]] = None, Y=None) -> ElectraTransformerModel:
    checkpoint = model.attrs["checkpoint"]
    try:
        directory = resolve_checkpoint(checkpoint)
    except CheckpointError as err:
        raise CheckpointError(
            f"{err} To use another model, set `checkpoint` in the encoder's model config "
            "(e.g. --paths.checkpoint /path/to/checkpoint with the shipped configs)."
        ) from None
    encoder = load_checkpoint(directory, kind="encoder")
    check_window(model.attrs["window"], model.attrs["stride"], encoder.config.max_position_embeddings)
    wordpiece = load_wordpiece(directory, vocab_size=encoder.config.vocab_size)
    set_encoder(model, WindowedEncoder(encoder, wordpiece))
    return model


def forward(model: ElectraTransformerModel, docs: List[Doc], is_train: bool):
    module = get_encoder(model)
    wp = module.wordpiece
    train = is_train and not model.attrs["frozen"]
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
    all_layers = model.attrs["all_layers"]
    n_layers = module.config.num_hidden_layers + 1 if all_layers else 1
    width = module.config.hidden_size
    n_windows = sum(batch.doc_windows)
    shim = model.shims[0]
    device = shim.device
    if batch.n_pieces == 0:
        vectors = model.ops.alloc3f(n_layers, 0, width)
        cls = model.ops.alloc2f(0, width)
        backprop_torch = None
    else:
        to_torch = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
        chunks = [(to_torch(c.ids), to_torch(c.mask), to_torch(c.target), to_torch(c.window_index)) for c in batch.chunks]
        inputs = ArgsKwargs(
            args=(chunks, batch.n_pieces, n_windows, to_torch(batch.inv_counts)),
            kwargs={"all_layers": all_layers, "dropout": train},
        )
        (vectors_t, cls_t), backprop_torch = shim(inputs, train)
        vectors, cls = torch2xp(vectors_t), torch2xp(cls_t)
    outputs = _split_by_doc(model, docs, pieces, batch, vectors, cls, all_layers, wp)

    def backprop(d_outputs: List[TransformerData]) -> List[Doc]:
        if not train or backprop_torch is None:
            return docs
        d_vectors = model.ops.alloc3f(n_layers, batch.n_pieces, width)
        d_cls = model.ops.alloc2f(n_windows, width)
        piece_start = window_start = 0
        for d_out, n, w in zip(d_outputs, batch.doc_pieces, batch.doc_windows):
            out = d_out.model_output
            if n:
                if out.get("last_hidden_state") is not None:
                    d_vectors[-1, piece_start : piece_start + n] += out["last_hidden_state"][0, :n]
                for layer, d_layer in enumerate(out.get("hidden_states") or ()):
                    d_vectors[layer, piece_start : piece_start + n] += d_layer[0, :n]
                if out.get(CLS_KEY) is not None:
                    d_cls[window_start : window_start + w] += out[CLS_KEY]
            piece_start += n
            window_start += w
        backprop_torch(
            ArgsKwargs(
                args=((vectors_t, cls_t),),
                kwargs={"grad_tensors": (xp2torch(d_vectors, device=device), xp2torch(d_cls, device=device))},
            )
        )
        return docs

    return outputs, backprop


def _split_by_doc(model, docs, pieces, batch, vectors, cls, all_layers, wp: WordPieceEncoder) -> List[TransformerData]:
    width = vectors.shape[-1]
    outputs = []
    piece_start = window_start = 0
    for doc, doc_pieces, n, w in zip(docs, pieces, batch.doc_pieces, batch.doc_windows):
        if n == 0 and len(doc):
            # Only whitespace tokens: one zero row that no token aligns to keeps the shapes valid
            # for poolers that reject empty arrays; every token pools to a zero vector.
            layers = model.ops.alloc3f(vectors.shape[0], 1, width)
        else:
            layers = vectors[:, piece_start : piece_start + n]
        output = ModelOutput(last_hidden_state=layers[-1][None])
        if all_layers:
            output["hidden_states"] = tuple(layer[None] for layer in layers)
        output[CLS_KEY] = cls[window_start : window_start + w]
        ids = doc_pieces.ids
        outputs.append(
            TransformerData(
                wordpieces=WordpieceBatch(
                    strings=[[wp.vocab[i] for i in ids]],
                    input_ids=ids[None].astype("int32"),
                    attention_mask=np.ones((1, n), dtype="float32"),
                    lengths=[n],
                    token_type_ids=None,
                ),
                model_output=output,
                align=Ragged(np.arange(n, dtype="int32"), np.asarray(doc_pieces.lengths, dtype="int32")),
            )
        )
        piece_start += n
        window_start += w
    return outputs
