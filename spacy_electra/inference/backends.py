"""Inference backends of the windowed encoder: fp32 torch (the default), bf16 autocast, int8
dynamic quantisation, and ONNX Runtime in fp32 or int8.

``apply_inference(module, kind)`` sets ``module.inference`` to a runner that ``WindowedEncoder``
calls instead of the torch encoder, but only for inference (no grad, no dropout): training and
every grad-enabled call keep the fp32 torch path, so a backend can never change what is learned.

Each runner holds a *derived copy* of the encoder (an int8-quantised module, an ONNX Runtime
session) built lazily on first use and never registered as a submodule, so ``module.encoder``'s
fp32 state dict, which is what a saved pipeline stores, is never replaced. The copy is rebuilt
when the fp32 weights change (training between evaluations, Thinc's ``use_params`` averaging),
detected by a cheap per-call fingerprint of the weights, and in a forked child (an ONNX Runtime
session's threads do not survive ``fork``). Building happens under a lock and the built copy is
read-only afterwards, so one module can serve several threads (see ``model/layers.py``).

Where a backend cannot run (``onnxruntime`` not installed, no bf16 support in the CPU, a
non-CPU device) the encoder falls back to fp32 with one warning instead of failing: a pipeline
saved on one machine must still load on another.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple, cast

import torch
from torch import Tensor, nn

from ..torch_model.encoder import needed_mask
from ..torch_model.windowed import encode_chunk

if TYPE_CHECKING:  # pragma: no cover
    from ..torch_model.encoder import ElectraEncoder
    from ..torch_model.windowed import WindowedEncoder

INFERENCE_KINDS = ("fp32", "bf16", "int8", "onnx", "onnx-int8")
ONNX_OPSET = 17


class BackendUnavailable(RuntimeError):
    """The backend cannot run here; the message says why and how to get it."""


class InferenceRunner:
    """Runs the encoder for inference through a derived copy (built by ``build``) of its weights.

    ``bind(encoder, all_layers)`` is called once per forward pass; it returns the function that
    encodes each chunk of windows, ``(ids, mask) -> (n_layers, batch, length, hidden)`` with
    n_layers 1 (last layer) or num_hidden_layers + 1, or ``None`` to ask the caller to use the
    torch fp32 path instead (e.g. on a GPU)."""

    kind = "fp32"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built: dict = {}  # variant -> (key, derived copy)
        self._warned_device = False

    def bind(self, encoder: "ElectraEncoder", all_layers: bool) -> Optional[Callable[[Tensor, Tensor], Tensor]]:
        device = next(encoder.parameters()).device
        if device.type != "cpu":
            if not self._warned_device:
                self._warned_device = True
                warnings.warn(f"inference = {self.kind!r} runs on the CPU only; the encoder on {device} uses its torch path.", stacklevel=2)
            return None
        derived = self._derived(encoder, all_layers)
        return lambda ids, mask: self.run(derived, ids, mask, all_layers)

    def variant(self, all_layers: bool) -> Any:
        """Which derived copy serves a call: one per ``all_layers`` setting unless overridden."""
        return all_layers

    def _derived(self, encoder: "ElectraEncoder", all_layers: bool) -> Any:
        key = (os.getpid(), weights_fingerprint(encoder))
        variant = self.variant(all_layers)
        built = self._built.get(variant)
        if built is not None and _same_key(built[0], key):
            return built[1]
        with self._lock:  # one thread builds; the others wait for its copy
            built = self._built.get(variant)
            if built is None or not _same_key(built[0], key):
                built = (key, self.build(encoder, all_layers))
                self._built[variant] = built
            return built[1]

    def build(self, encoder: "ElectraEncoder", all_layers: bool) -> Any:
        raise NotImplementedError

    def run(self, derived: Any, ids: Tensor, mask: Tensor, all_layers: bool) -> Tensor:
        raise NotImplementedError

    # The lock and built copies are per process: a pickled or deep-copied module gets a fresh,
    # empty runner of the same kind that builds its own copy on first use.
    def __reduce__(self):
        return (type(self), ())


FINGERPRINT_STRIDE = 61


def weights_fingerprint(encoder: nn.Module) -> Tensor:
    """A float64 sum of every 61st element of each parameter: changes when training or
    ``use_params`` changes the weights (an optimizer step moves every element), even where an
    optimizer writes them in place through numpy, which bumps no torch version counter. About
    1 ms per forward pass for ELECTRA-small, where summing every element took ~100 ms."""
    with torch.no_grad():
        return torch.stack([p.detach().reshape(-1)[::FINGERPRINT_STRIDE].sum(dtype=torch.float64) for p in encoder.parameters()])


def _same_key(a: Tuple[int, Tensor], b: Tuple[int, Tensor]) -> bool:
    return a[0] == b[0] and torch.equal(a[1], b[1])


class Bf16Runner(InferenceRunner):
    """bf16 autocast of the fp32 module (matmuls in bf16, reductions such as LayerNorm and softmax
    kept in fp32 by autocast's rules); the derived "copy" is the module itself."""

    kind = "bf16"

    def _derived(self, encoder, all_layers):
        return encoder

    def run(self, derived, ids, mask, all_layers):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return encode_chunk(derived, ids, needed_mask(mask), all_layers).float()


class Int8Runner(InferenceRunner):
    """PyTorch dynamic quantisation (int8 weights with one scale per output channel, activations
    quantised per batch, 8-bit where the CPU allows) of the encoder's linear layers, on a copy of
    the encoder. Embeddings, LayerNorm and the first layer stay fp32 (see ``fp32_linears``)."""

    kind = "int8"

    def variant(self, all_layers):
        return None  # one quantised module serves both all_layers settings

    def build(self, encoder, all_layers):
        return _quantize_torch(encoder)

    def run(self, derived, ids, mask, all_layers):
        return encode_chunk(derived, ids, needed_mask(mask), all_layers)


def fp32_linears(encoder: "ElectraEncoder", *, full_range: bool = True) -> List[str]:
    """Names of the linear layers that int8 leaves in fp32: every linear layer of the first
    transformer layer (and the embedding projection), which sees the embeddings; with 7-bit
    activations (``full_range=False``, CPUs without VNNI, see ``DynamicLinear``) also each layer's
    feed-forward output projection, whose input (after GELU) has outliers that one scale per batch
    covers too coarsely at 7 bits.

    Measured on the fine-tuned pipelines of BENCHMARKS.md (CoNLL-2003 dev F1 / SST-2 dev accuracy,
    change from fp32; `benchmarks/int8_recipes.py`, results in benchmarks/results/inference.md):
    every linear: 7-bit -0.66 / -1.38, 8-bit -0.31 / +0.11; first layer fp32, 8-bit -0.09 / -0.23;
    first layer and feed-forward outputs fp32: 7-bit -0.04 / -0.81, 8-bit -0.02 / +0.11.
    The 8-bit first-layer recipe runs ~1.3x as fast as the one that also keeps the feed-forward
    outputs fp32 (benchmarks/results/inference.md)."""
    first = [f"layers.0.{name}" for name in ("attention.qkv", "attention.output", "intermediate", "output")]
    projection = ["projection"] if getattr(encoder, "projection", None) is not None else []
    ffn_outputs = [] if full_range else [f"layers.{i}.output" for i in range(1, len(encoder.layers))]
    return projection + first + ffn_outputs


def _quantize_torch(encoder: nn.Module, keep: Optional[List[str]] = None) -> nn.Module:
    """A copy of ``encoder`` with its linear layers (but those named in ``keep``, by default
    ``fp32_linears``) quantised to int8 ``DynamicLinear``s."""
    # torch.ao.quantization is deprecated in favour of torchao, but still ships (and works) in
    # torch 2.13; torchao's int8 dynamic path would add a dependency for the same kernels.
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    full_range = full_range_activations()
    # Without ``keep``, ``encoder`` is an ElectraEncoder, whose layer names fp32_linears knows.
    kept = set(fp32_linears(cast("ElectraEncoder", encoder), full_range=full_range) if keep is None else keep)
    spec = {name: per_channel_dynamic_qconfig for name, module in encoder.named_modules()
            if isinstance(module, nn.Linear) and name not in kept}
    dynamic_linear = _dynamic_linear_class()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = quantize_dynamic(encoder, spec, dtype=torch.qint8, inplace=False,
                                     mapping={nn.Linear: dynamic_linear}).eval()
    for module in quantized.modules():
        if isinstance(module, dynamic_linear):
            module.reduce_range = not full_range
    return quantized


@functools.lru_cache(maxsize=None)
def _dynamic_linear_class():
    """torch's dynamic int8 Linear with the activations' range a setting: torch hard-codes
    ``reduce_range=True`` (7-bit activations), a guard for CPUs whose int8 instructions sum pairs of
    products in 16 bits (AVX2's ``vpmaddubsw``), where 8-bit activations can overflow. Where the
    probe ``full_range_activations`` shows no overflow (VNNI's 32-bit sums), the 8th bit halves
    the activations' rounding error (SST-2: 0.80 points of the int8 accuracy cost came from it)."""
    from torch.ao.nn.quantized.dynamic import Linear

    class DynamicLinear(Linear):
        reduce_range = True

        def forward(self, x: Tensor) -> Tensor:
            return torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params,
                                                      reduce_range=self.reduce_range).to(x.dtype)

        def _get_name(self) -> str:
            return "DynamicQuantizedLinear"

    return DynamicLinear


@functools.lru_cache(maxsize=None)
def full_range_activations() -> bool:
    """Whether this CPU's int8 kernels take 8-bit activations without overflow: the worst case
    (every weight and activation at the top of its range) through a full-range product, checked
    against fp32. A 16-bit pair sum would saturate at about half the true value."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    probe = nn.Linear(64, 4)
    with torch.no_grad():
        probe.weight.fill_(0.05)
        probe.bias.zero_()
    x = torch.full((2, 64), 5.0)
    x[:, 0] = -1.0  # a negative minimum puts the zero point above 0, so 5.0 quantises to 255
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        packed = quantize_dynamic(nn.Sequential(probe), {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)[0]
        y = torch.ops.quantized.linear_dynamic(x, packed._packed_params._packed_params, reduce_range=False)
    expected = probe(x).detach()
    return bool(((y - expected).abs().max() / expected.abs().max()) < 0.05)


class OnnxRunner(InferenceRunner):
    """The encoder exported to ONNX (dynamic batch and length axes) and run by ONNX Runtime on
    the CPU, optionally with ORT's dynamic int8 quantisation of its MatMuls. The exported model
    lives in memory (the temporary file is deleted once the session holds it), never in the
    pipeline folder."""

    def __init__(self, quantize: bool) -> None:
        super().__init__()
        self.quantize = quantize
        self.kind = "onnx-int8" if quantize else "onnx"

    def __reduce__(self):
        return (type(self), (self.quantize,))

    def build(self, encoder, all_layers):
        return onnx_session(encoder, all_layers=all_layers, quantize=self.quantize, threads=torch.get_num_threads())

    def run(self, derived, ids, mask, all_layers):
        feeds = {"input_ids": ids.numpy().astype("int64", copy=False), "attention_mask": mask.numpy().astype("int64", copy=False)}
        return torch.from_numpy(derived.run(None, feeds)[0])


# ORT's dynamic quantisation on top of ``fp32_linears``: per-channel weight scales, and MatMul
# only. By default ``quantize_dynamic`` also stores the embedding tables (Gather) as per-tensor
# uint8, which torch's int8 never does; on SST-2 dev that turned 8 flipped predictions into 12
# (benchmarks/results/inference.md). ``reduce_range``, uint8 weights and per-tensor weight scales
# all flipped more sentences; ``ActivationSymmetric`` changes nothing in dynamic mode.
ORT_INT8_OPTIONS: dict = {"per_channel": True, "op_types_to_quantize": ["MatMul"]}


class _Exported(nn.Module):
    """What gets exported: ids and mask in, (n_layers, batch, length, hidden) out."""

    def __init__(self, encoder: "ElectraEncoder", all_layers: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.all_layers = all_layers

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return encode_chunk(self.encoder, input_ids, attention_mask, self.all_layers)


def onnx_session(encoder: "ElectraEncoder", *, all_layers: bool = False, quantize: bool = False, threads: int = 1):
    """An ONNX Runtime session running ``encoder`` on the CPU with ``threads`` intra-op threads."""
    ort = _require_onnxruntime()
    with tempfile.TemporaryDirectory(prefix="spacy-electra-onnx-") as tmp:
        path = Path(tmp) / "encoder.onnx"
        export_onnx(encoder, path, all_layers=all_layers)
        if quantize:
            quantized = Path(tmp) / "encoder-int8.onnx"
            quantize_onnx(path, quantized, fp32_linears(encoder))
            path = quantized
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: no optimizer chatter on every load
        return ort.InferenceSession(path.read_bytes(), options, providers=["CPUExecutionProvider"])


def quantize_onnx(path: Path, quantized: Path, fp32: List[str]) -> None:
    """ORT's dynamic int8 quantisation of the exported encoder at ``path``, written to
    ``quantized``: the same recipe as int8 (per-channel weight scales, the linear layers named in
    ``fp32`` kept fp32, embeddings fp32), with ``ORT_INT8_OPTIONS``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings(), _quiet_root_logger():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(path), str(quantized), nodes_to_exclude=_onnx_matmuls(path, fp32),
                         **{"weight_type": QuantType.QInt8, **ORT_INT8_OPTIONS})


def _onnx_matmuls(path: Path, linears: List[str]) -> List[str]:
    """The exported graph's MatMul node of each named linear layer (the TorchScript exporter
    names it after the module path: ``layers.0.attention.qkv`` -> ``/layers.0/attention/qkv/MatMul``);
    an error rather than a silently quantised layer if the exporter names them otherwise."""
    import onnx

    names = {node.name for node in onnx.load(str(path)).graph.node if node.op_type == "MatMul"}
    wanted = []
    for linear in linears:
        scopes: List[str] = []
        for part in linear.split("."):
            if part.isdigit():
                scopes[-1] += f".{part}"  # "layers.0" is one scope
            else:
                scopes.append(part)
        wanted.append("/" + "/".join(scopes) + "/MatMul")
    missing = [n for n in wanted if n not in names]
    if missing:
        raise RuntimeError(f"ONNX export has no MatMul node {missing[0]}: the exporter's node names changed; update _onnx_matmuls.")
    return wanted


@contextlib.contextmanager
def _quiet_root_logger():
    """ORT's quantiser advises "pre-processing" through the root logger on every call; that
    advice is for static quantisation of CNNs, so it is dropped while we quantise."""
    advice = lambda record: "pre-processing before quantization" not in record.getMessage()  # noqa: E731
    root = logging.getLogger()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def export_onnx(encoder: "ElectraEncoder", path: Path, *, all_layers: bool = False) -> None:
    """Export with dynamic batch and length axes. The TorchScript-based exporter
    (``dynamo=False``) needs only the ``onnx`` package; the dynamo exporter would add
    ``onnxscript`` for the same graph."""
    was_training = encoder.training
    encoder.eval()
    example = (torch.ones(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
    axes = {0: "batch", 1: "length"}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Exported(encoder, all_layers), example, str(path), dynamo=False, opset_version=ONNX_OPSET,
                input_names=["input_ids", "attention_mask"], output_names=["layers"],
                dynamic_axes={"input_ids": axes, "attention_mask": axes, "layers": {1: "batch", 2: "length"}},
            )
    finally:
        encoder.train(was_training)


def _require_onnxruntime():
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime
    except ImportError:
        raise BackendUnavailable("onnxruntime (or onnx) is not installed; pip install 'spacy-electra[onnx]'") from None
    return onnxruntime


def bf16_supported() -> bool:
    """Whether this CPU has native bf16 support (AVX512-BF16 / AMX) that oneDNN uses."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def check_kind(kind: str, what: str = "inference kind") -> str:
    """``kind`` if it is one of ``INFERENCE_KINDS``; else a one-line ValueError naming ``what``
    was wrong (e.g. "--inference" on the command line) and the valid kinds."""
    if kind not in INFERENCE_KINDS:
        raise ValueError(f"Unknown {what} {kind!r}; use one of {', '.join(INFERENCE_KINDS)}.")
    return kind


def make_runner(kind: str) -> Optional[InferenceRunner]:
    """The runner of ``kind`` (None for fp32); raises ``BackendUnavailable`` where it cannot run
    and ``ValueError`` for an unknown kind."""
    check_kind(kind)
    if kind == "fp32":
        return None
    if kind == "bf16":
        if not bf16_supported():
            raise BackendUnavailable("this CPU has no native bf16 support (AVX512-BF16 or AMX)")
        return Bf16Runner()
    if kind == "int8":
        if "fbgemm" not in torch.backends.quantized.supported_engines and "x86" not in torch.backends.quantized.supported_engines:
            raise BackendUnavailable("this torch build has no x86 int8 kernels (fbgemm)")
        return Int8Runner()
    _require_onnxruntime()
    return OnnxRunner(quantize=kind == "onnx-int8")


def apply_inference(module: "WindowedEncoder", kind: str) -> str:
    """Make ``module`` run inference with ``kind`` (one of ``INFERENCE_KINDS``); returns the kind
    in effect, which is "fp32" after a fallback warning where ``kind`` cannot run here."""
    try:
        runner = make_runner(kind)
    except BackendUnavailable as err:
        warnings.warn(f"inference = {kind!r} is unavailable ({err}); the encoder runs in fp32.", stacklevel=2)
        runner = None
    module.inference = runner
    return inference_kind(module)


def inference_kind(module: "WindowedEncoder") -> str:
    runner = getattr(module, "inference", None)
    return "fp32" if runner is None else runner.kind
