"""Checks that refuse a hostile or broken checkpoint before it costs time or memory.

A checkpoint folder (or the encoder blob inside a saved pipeline) is untrusted input. Everything
here runs *before* the model is built: files are read only when they are regular files of bounded
size, the safetensors header is parsed on its own (8-byte length + JSON, no tensor is read), and
every shape ``config.json`` implies is compared with the shapes the weights declare. A config
that says ``vocab_size: 100000000`` next to a 5 MB weight file therefore fails in milliseconds,
not after allocating gigabytes of embeddings.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Mapping, Tuple, Union

if TYPE_CHECKING:  # config imports nothing from here, but keep the import graph one-way
    from ..torch_model.config import ElectraConfig

Shape = Tuple[int, ...]
Header = Dict[str, Tuple[str, Shape]]  # tensor name -> (safetensors dtype, shape)

# Bounds far above any real file of each kind (BERT vocab.txt: 230 kB; config.json with 20k
# labels: ~1 MB), far below what would hurt.
MAX_JSON_BYTES = 16 * 2**20
MAX_VOCAB_BYTES = 64 * 2**20
MAX_HEADER_BYTES = 100 * 2**20  # the limit the safetensors library itself applies
FLOAT_DTYPES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}
_ITEMSIZE = {**FLOAT_DTYPES, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
             "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}


class FileProblem(ValueError):
    """A file that cannot be used; the caller turns it into its own error type with context."""


# -- bounded reads ------------------------------------------------------------------------------
def check_regular(path: Union[str, Path]) -> int:
    """The size of ``path`` if it is a regular file (symlinks followed: the Hugging Face cache is
    made of them). Checked *before* opening: opening a FIFO blocks until a writer appears, and
    ``/dev/zero`` never ends."""
    try:
        info = os.stat(path)
    except OSError as err:
        raise FileProblem(f"{path} cannot be read ({err.strerror or err})") from None
    if not stat.S_ISREG(info.st_mode):
        raise FileProblem(f"{path} is not a regular file (a FIFO, device or folder); refusing to read it")
    return info.st_size


def read_bytes(path: Union[str, Path], max_bytes: int) -> bytes:
    """The bytes of a regular file no larger than ``max_bytes``; the read itself is bounded too,
    in case the file grows meanwhile."""
    path = Path(path)
    size = check_regular(path)
    if size > max_bytes:
        raise FileProblem(f"{path} is {size:,} bytes, more than the {max_bytes:,} allowed for it")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileProblem(f"{path} grew past the {max_bytes:,} bytes allowed for it while being read")
    return data


def read_text(path: Union[str, Path], max_bytes: int) -> str:
    try:
        return read_bytes(path, max_bytes).decode("utf8")
    except UnicodeDecodeError as err:
        raise FileProblem(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None


def read_json(path: Union[str, Path], max_bytes: int = MAX_JSON_BYTES) -> Dict[str, Any]:
    """A JSON object from a bounded regular file; nesting deep enough to overflow the parser's
    recursion is reported like any other syntax error."""
    return parse_json_object(read_text(path, max_bytes), str(path))


def parse_json_object(text: Union[str, bytes], source: str) -> Dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise FileProblem(f"{source} is not valid JSON ({type(err).__name__}: {str(err)[:200]})") from None
    if not isinstance(data, dict):
        raise FileProblem(f"{source} holds a JSON {type(data).__name__}, not an object")
    return data


@contextlib.contextmanager
def reading(source: Union[str, Path]) -> Iterator[None]:
    """Turn the raw errors a malformed file provokes deep inside parsing (a missing key, a value
    of the wrong type, a zero divisor) into one ``FileProblem`` that names the file."""
    try:
        yield
    except FileProblem:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError,
            RecursionError, AssertionError, OverflowError, UnicodeDecodeError) as err:
        detail = f"missing key {err}" if isinstance(err, KeyError) else str(err)[:300]
        raise FileProblem(f"{source} is malformed: {detail or type(err).__name__}") from None


# -- safetensors headers ------------------------------------------------------------------------
def safetensors_header_from_file(path: Union[str, Path]) -> Header:
    """Dtypes and shapes of a .safetensors file, reading only its header."""
    path = Path(path)
    size = check_regular(path)
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise FileProblem(f"{path} is truncated or corrupt: shorter than a safetensors header")
        (length,) = struct.unpack("<Q", prefix)
        _check_header_length(length, size, path)
        raw = handle.read(length)
    return _parse_header(raw, size - 8 - length, str(path))


def safetensors_header_from_bytes(data: bytes, source: str) -> Header:
    """The same for a safetensors blob held in memory (the encoder inside a saved pipeline)."""
    if len(data) < 8:
        raise FileProblem(f"{source} is truncated or corrupt: shorter than a safetensors header")
    (length,) = struct.unpack("<Q", data[:8])
    _check_header_length(length, len(data), source)
    return _parse_header(data[8 : 8 + length], len(data) - 8 - length, source)


def _check_header_length(length: int, total: int, source: Union[str, Path]) -> None:
    if length > MAX_HEADER_BYTES or length > total - 8:
        raise FileProblem(
            f"{source} is truncated or corrupt: its header claims {length:,} bytes of a {total:,}-byte file"
        )


def _parse_header(raw: bytes, data_size: int, source: str) -> Header:
    entries = parse_json_object(raw, f"the safetensors header of {source}")
    header: Header = {}
    with reading(f"the safetensors header of {source}"):
        for name, entry in entries.items():
            if name == "__metadata__":
                continue
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
                raise ValueError(f"tensor {name} has shape {shape!r}")
            if dtype not in _ITEMSIZE:
                raise ValueError(f"tensor {name} has unknown dtype {dtype!r}")
            numel = 1
            for dim in shape:
                numel *= dim
            if not (isinstance(begin, int) and isinstance(end, int)) or not 0 <= begin <= end <= data_size \
                    or end - begin != numel * _ITEMSIZE[dtype]:
                raise ValueError(
                    f"tensor {name} claims bytes {begin}..{end} of {data_size:,} for shape {shape} "
                    "(the file is truncated or corrupt)"
                )
            header[name] = (dtype, tuple(shape))
    return header


def check_dtypes(header: Mapping[str, Tuple[str, Shape]], source: str, ignored: "re.Pattern[str]") -> List[str]:
    """Refuse integer or boolean weights (casting them to float would silently change the model);
    return the float dtypes other than F32 found, which the caller announces before casting."""
    wrong = [f"{k} ({dtype})" for k, (dtype, _) in header.items() if dtype not in FLOAT_DTYPES and not ignored.search(k)]
    if wrong:
        raise FileProblem(
            f"{source} holds non-float weights: {', '.join(wrong[:6])}"
            + (" ..." if len(wrong) > 6 else "") + "; these are not ELECTRA weights (a quantized "
            "or foreign checkpoint?). Export float weights from the original model."
        )
    return sorted({dtype for k, (dtype, _) in header.items() if dtype != "F32" and not ignored.search(k)})


def check_finite(tensors: Iterable[Tuple[str, Any]], source: str) -> None:
    """NaN or inf weights make every output NaN; say which tensors instead of loading them."""
    import torch

    # A float64 sum is NaN/inf exactly when some element is (float32 values cannot overflow it),
    # and costs less than a boolean mask of every element.
    bad = [
        name for name, t in tensors
        if t.is_floating_point() and not bool(torch.isfinite(t.sum(dtype=torch.float64)))
    ]
    if bad:
        raise FileProblem(
            f"{source} holds NaN or infinite values in {', '.join(bad[:6])}" + (" ..." if len(bad) > 6 else "")
            + "; the weights are corrupt (or from a diverged training run)."
        )


# -- shapes the config implies ------------------------------------------------------------------
def our_shapes(config: "ElectraConfig", kind: str) -> Dict[str, Shape]:
    """Every tensor of our ``ElectraEncoder``/``Discriminator``/``Generator`` and its shape,
    computed from the config alone (nothing is allocated, so any config is cheap to check)."""
    E, H, F = config.embedding_size, config.hidden_size, config.intermediate_size
    V = config.vocab_size
    shapes: Dict[str, Shape] = {
        "embeddings.word.weight": (V, E),
        "embeddings.position.weight": (config.max_position_embeddings, E),
        "embeddings.token_type.weight": (config.type_vocab_size, E),
        "embeddings.layer_norm.weight": (E,),
        "embeddings.layer_norm.bias": (E,),
    }
    if config.has_projection:
        shapes.update({"projection.weight": (H, E), "projection.bias": (H,)})
    for i in range(config.num_hidden_layers):
        for name, out, inp in (("attention.qkv", 3 * H, H), ("attention.output", H, H),
                               ("intermediate", F, H), ("output", H, F)):
            shapes[f"layers.{i}.{name}.weight"] = (out, inp)
            shapes[f"layers.{i}.{name}.bias"] = (out,)
        for norm in ("attention_norm", "ffn_norm"):
            shapes[f"layers.{i}.{norm}.weight"] = (H,)
            shapes[f"layers.{i}.{norm}.bias"] = (H,)
    if kind == "discriminator":
        shapes.update({"head.dense.weight": (H, H), "head.dense.bias": (H,),
                       "head.prediction.weight": (1, H), "head.prediction.bias": (1,)})
    elif kind == "generator":
        shapes.update({"head.dense.weight": (E, H), "head.dense.bias": (E,),
                       "head.layer_norm.weight": (E,), "head.layer_norm.bias": (E,), "head.bias": (V,)})
    return shapes


def layer_count(names: Iterable[str], pattern: "re.Pattern[str]") -> int:
    """1 + the highest layer index among ``names`` (``pattern`` captures the index)."""
    indices = [int(m.group(1)) for m in map(pattern.search, names) if m]
    return max(indices) + 1 if indices else 0


def compare_shapes(expected: Mapping[str, Shape], found: Mapping[str, Shape], what: str, source: str) -> None:
    """Shapes of the tensors present in both; names missing on either side are the name
    mapping's business (it says which ones), shapes are this check's."""
    wrong = [
        f"{name}: weights {found[name]} vs config {expected[name]}"
        for name in expected
        if name in found and tuple(found[name]) != tuple(expected[name])
    ]
    if wrong:
        raise FileProblem(
            f"The weights in {source} do not fit {what}: " + "; ".join(wrong[:6])
            + (" ..." if len(wrong) > 6 else "")
            + ". The config (vocab_size, embedding_size, hidden_size...) belongs to another model"
        )
