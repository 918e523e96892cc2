"""``ElectraShim``: Thinc's ``PyTorchShim`` as every ELECTRA torch module here needs it.

Why a subclass: the module appears at ``initialize`` (or on deserialisation), not when the
config is built; prediction must never flip module state (thread safety); the optimizer step
applies ELECTRA's layer-wise learning-rate decay; an ``inference`` backend is applied at the
first prediction; and a forked ``nlp.pipe(n_process=N)`` child runs torch single-threaded.
The encoder node (``torch_encoder.py``) and QA (``qa/architecture.py``) both use it.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from thinc.api import ArgsKwargs, Model, PyTorchGradScaler, PyTorchShim, get_torch_default_device, torch2xp, xp2torch

from ..inference.backends import INFERENCE_KINDS, apply_inference

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
        """PyTorchShim's step, but the weights are updated in place.

        Thinc's ``PyTorchShim.finish_update`` hands the optimizer numpy (or cupy) views of each
        parameter and then rebinds ``param.data`` to a new tensor made from the array it gets
        back. That array is a view whose base is the previous ``param.data``, so every step adds
        one tensor and one array per parameter to a chain that is never freed (77 tensors a step
        for the 6-layer MiniLM encoder, BENCHMARKS.md section 17): the live-tensor count and the
        process's objects grow for as long as training runs. Thinc's optimizers update the array in place, so the parameter
        already holds the new weights and needs no rebinding; an optimizer that returns a
        different array is copied in."""
        if self._model is None:
            return
        if self.layer_lr_decay != 1.0:
            optimizer = KeyScaledOptimizer(optimizer, lambda key: self.lr_scale(key[1]))
        for name, param in self._model.named_parameters():
            if param.grad is None:
                continue
            if not self._grad_scaler.found_inf:  # skip the update if a gradient overflowed
                weights = torch2xp(param.data)
                new_weights, _ = optimizer((self.id, name), weights, torch2xp(param.grad))
                if not _same_memory(new_weights, weights):
                    with torch.no_grad():
                        param.copy_(xp2torch(new_weights, device=param.device).reshape(param.shape))
            param.grad.zero_()
        self._grad_scaler.update()

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

    @property
    def module(self) -> Optional[Any]:
        """The torch module, None before ``initialize``. Thinc's Shim keeps it in ``_model``
        and has no public accessor; this property is the one place that reads it."""
        return self._model

    @module.setter
    def module(self, value: Any) -> None:
        device = self.device
        if value is not None and device.type == "cuda" and not torch.cuda.is_available():
            # spaCy is on the GPU (CuPy works) but this torch cannot follow it there.
            from ..gpu import GPUNotReady, gpu_problem

            raise GPUNotReady(gpu_problem(device.index or 0, need_cupy=False) or "torch sees no GPU.")
        self._model = value.to(device) if value is not None else None

    def renewed(self) -> "ElectraShim":
        """A shim around the same module with a fresh id (Thinc assigns ids only in
        ``Shim.__init__``, and a deep copy keeps the old one): ``nlp.replace_listeners`` copies
        an encoder, and the copy must not share Adam state with the original."""
        shim = type(self)(
            self._model,
            mixed_precision=self._mixed_precision,
            grad_scaler=self._grad_scaler,
            serialize_model=self._serialize_model,
            deserialize_model=self._deserialize_model,
        )
        shim.layer_lr_decay = self.layer_lr_decay
        shim.inference = self.inference
        return shim

    def to_device(self, device_type: str, device_id: int) -> None:  # pragma: no cover - GPU
        if self._model is not None:
            super().to_device(device_type, device_id)

    @property
    def device(self):
        if self._model is None:
            return get_torch_default_device()
        return super().device


def _same_memory(a: Any, b: Any) -> bool:
    """Whether two numpy/cupy arrays are the same values in the same memory (an optimizer that
    updated in place returns a view of the array it was given)."""
    return a.shape == b.shape and a.strides == b.strides and _data_ptr(a) == _data_ptr(b)


def _data_ptr(array: Any) -> int:
    return int(array.data.ptr) if hasattr(array.data, "ptr") else int(array.__array_interface__["data"][0])


def electra_shim(model: Model) -> ElectraShim:
    """The ``ElectraShim`` of ``model`` (the encoder node, or electra_span_qa's model)."""
    shim = model.shims[0]
    assert isinstance(shim, ElectraShim), f"{model.name!r} holds no ElectraShim"
    return shim


class KeyScaledOptimizer:
    """Calls ``optimizer`` with ``lr_scale`` times ``scale(key)`` for each parameter key."""

    def __init__(self, optimizer, scale: Callable[[Tuple[int, str]], float]) -> None:
        self.optimizer = optimizer
        self.scale = scale

    def __call__(self, key: Tuple[int, str], weights, gradient, *, lr_scale: float = 1.0):
        return self.optimizer(key, weights, gradient, lr_scale=lr_scale * self.scale(key))


def make_shim(
    serialize: Callable[[Any], bytes],
    deserialize: Callable[[Any, bytes, Any], Any],
    *,
    layer_lr_decay: float = 1.0,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[Dict[str, Any]] = None,
    inference: str = "fp32",
) -> ElectraShim:
    """An empty ``ElectraShim`` (its module arrives at ``initialize``) with the settings every
    ELECTRA node takes from its config, checked: the encoder node and QA build theirs here."""
    check_inference(inference)
    if not 0.0 < layer_lr_decay <= 1.0:
        raise ValueError(f"layer_lr_decay={layer_lr_decay} must be in (0, 1]; the ELECTRA paper uses 0.8.")
    shim = ElectraShim(
        None,
        mixed_precision=mixed_precision,
        grad_scaler=PyTorchGradScaler(enabled=mixed_precision, **(grad_scaler_config or {})),
        serialize_model=serialize,
        deserialize_model=deserialize,
    )
    shim.layer_lr_decay = layer_lr_decay
    shim.inference = inference
    return shim
