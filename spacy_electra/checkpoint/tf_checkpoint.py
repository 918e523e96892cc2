"""Google's TensorFlow ELECTRA checkpoints (google-research/electra), read without TensorFlow.

A TF checkpoint ``model.ckpt-N`` is two kinds of file in the "V2 checkpoint" (tensor bundle)
format, and this module reads both by hand:

* ``model.ckpt-N.index``: an SSTable (LevelDB's table format). Its 48-byte footer holds two block
  handles (varint offset + varint size: the metaindex and the index block) and the magic number
  ``0xdb4775248b80fb57``. Every block is followed by a 5-byte trailer: its compression type (0,
  none: TensorFlow writes bundles uncompressed) and the masked CRC32C of the block and that byte.
  A block is a run of prefix-compressed entries (varint shared key length, varint unshared
  length, varint value length, the unshared key bytes, the value), then its restart points
  (uint32 each) and their count. The index block maps keys to data-block handles; the data
  blocks map each tensor name to a serialized ``BundleEntryProto`` (dtype, shape, shard_id,
  offset, size, masked crc32c), and the empty key to the ``BundleHeaderProto`` (num_shards,
  endianness, version). The protobufs are small and decoded here from the wire format
  (varints, length-delimited fields), so neither ``protobuf`` nor ``tensorflow`` is needed.
* ``model.ckpt-N.data-0000K-of-0000M``: the shards, raw little-endian tensor bytes at the offsets
  the index gives.

The index is untrusted input: every length, offset, count and shape is bounded before anything
is allocated from it (a tensor must lie inside its shard and its shape times the dtype's width
must equal its byte size), every block's checksum and every tensor's checksum are verified, and
a damaged file is one ``CheckpointError`` line naming the file and the fix.

Checksums use ``google-crc32c`` (Google's C implementation with wheels for every common
platform): a table-driven pure-Python CRC32C took 32.7 s for one 50 MiB tensor (1.5 MiB/s), and an
ELECTRA-large checkpoint holds about 1.3 GB of weights; the C library checks 50 MiB in
milliseconds.

Google's variable names (``model/modeling.py``, ``run_pretraining.py``): the discriminator's
transformer is under ``electra/`` (``embeddings/{word,position,token_type}_embeddings``,
``embeddings/LayerNorm/{gamma,beta}``, ``embeddings_project/{kernel,bias}`` when the embedding
width differs from the hidden width, ``encoder/layer_N/attention/self/{query,key,value}``,
``attention/output/dense``, ``attention/output/LayerNorm``, ``intermediate/dense``,
``output/dense``, ``output/LayerNorm``), the generator's under ``generator/`` with the same
layout; the generator shares ``electra/embeddings`` unless the checkpoint has its own
``generator/embeddings``. Heads: ``discriminator_predictions/dense`` and ``.../dense_1`` (HF's
``dense_prediction``), ``generator_predictions/dense``, ``generator_predictions/LayerNorm`` and
``generator_predictions/output_bias``. Kernels are stored ``[in, out]`` and transposed to torch's
``[out, in]``. Optimizer slots (``.../adam_m``, ``.../adam_v``), ``global_step`` and anything
else outside these names are never read.

Sizes a checkpoint does not store: the number of attention heads is ``max(1, hidden // 64)``, the
rule of Google's ``get_generator_config`` and true of every released model (small: 4, base: 12,
large: 16, generators: 4); give ``num_attention_heads`` for anything else. Everything else
(vocabulary, widths, layers, positions) comes from the shapes. The vocabulary is the
``vocab.txt`` next to the checkpoint, as Google's zips ship it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import google_crc32c
import numpy as np
import torch

from ..atomic import PathLike
from ..torch_model.config import ElectraConfig
from .errors import CheckpointError
from .files import FileProblem, check_regular
from .hf_names import StateDict

MODELS = ("discriminator", "generator")
# TF's DataType enum (types.proto): the ones a checkpoint is likely to hold, for messages.
DTYPES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
          9: "int64", 10: "bool", 14: "bfloat16", 19: "float16"}
DT_FLOAT = 1
TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
BLOCK_TRAILER_BYTES = 5
MAX_INDEX_BYTES = 256 * 2**20  # a released ELECTRA-large index is well under 1 MB
MAX_KEY_BYTES = 4096
MAX_ENTRIES = 1_000_000
MAX_SHARDS = 10_000
MAX_RANK = 8
HEAD_WIDTH = 64  # hidden size per attention head in Google's released models

_CKPT_LINE = re.compile(r'^model_checkpoint_path:\s*"(?P<path>[^"]*)"\s*$', re.M)
_LAYER = re.compile(r"/encoder/layer_(\d+)/")


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies in the shards (a decoded ``BundleEntryProto``)."""

    name: str
    dtype: int
    shape: Tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int

    @property
    def dtype_name(self) -> str:
        return DTYPES.get(self.dtype, f"TF dtype {self.dtype}")


# -- checksums, varints, protobuf wire format -------------------------------------------------
_MASK_DELTA = 0xA282EAD8


def crc32c(data: bytes) -> int:
    return int(google_crc32c.value(data))


def unmask_crc(masked: int) -> int:
    """LevelDB/TF store ``rotate_right(crc, 15) + 0xa282ead8``; this is the inverse."""
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


class _Bad(ValueError):
    """A malformed structure; turned into a CheckpointError naming the file."""


def _varint(data: bytes, pos: int, end: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise _Bad("a varint runs past the end of its block")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise _Bad("a varint is longer than 10 bytes")


def _fields(data: bytes) -> Iterator[Tuple[int, int, Union[int, bytes]]]:
    """(field number, wire type, value) of a serialized protobuf message: ints for varint and
    fixed fields, bytes for length-delimited ones."""
    pos, end = 0, len(data)
    while pos < end:
        tag, pos = _varint(data, pos, end)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos, end)
            yield number, wire, value
        elif wire == 1 or wire == 5:
            width = 8 if wire == 1 else 4
            if pos + width > end:
                raise _Bad("a fixed-width field runs past the end of its message")
            yield number, wire, int.from_bytes(data[pos:pos + width], "little")
            pos += width
        elif wire == 2:
            length, pos = _varint(data, pos, end)
            if pos + length > end:
                raise _Bad("a length-delimited field runs past the end of its message")
            yield number, wire, data[pos:pos + length]
            pos += length
        else:
            raise _Bad(f"unsupported protobuf wire type {wire}")


def _signed64(value: Union[int, bytes]) -> int:
    value = _int(value)
    return value - (1 << 64) if value >= 1 << 63 else value


def _int(value: Union[int, bytes]) -> int:
    if not isinstance(value, int):
        raise _Bad("a number field holds bytes")
    return value


def _bytes(value: Union[int, bytes]) -> bytes:
    if not isinstance(value, bytes):
        raise _Bad("a message field holds a number")
    return value


def _decode_entry(name: str, data: bytes) -> TensorEntry:
    dtype = shard = offset = size = crc = 0
    shape: List[int] = []
    for number, wire, value in _fields(data):
        if number == 1 and wire == 0:
            dtype = _int(value)
        elif number == 2 and wire == 2:
            for dim_number, dim_wire, dim in _fields(_bytes(value)):
                if dim_number == 2 and dim_wire == 2:
                    sizes = [_signed64(v) for n, w, v in _fields(_bytes(dim)) if n == 1 and w == 0]
                    shape.append(sizes[-1] if sizes else 0)
                elif dim_number == 3 and dim_wire == 0 and value:
                    raise _Bad(f"{name} has an unknown rank")
            if len(shape) > MAX_RANK:
                raise _Bad(f"{name} has rank {len(shape)}")
        elif number == 3 and wire == 0:
            shard = _int(value)
        elif number == 4 and wire == 0:
            offset = _signed64(value)
        elif number == 5 and wire == 0:
            size = _signed64(value)
        elif number == 6 and wire == 5:
            crc = _int(value)
        elif number == 7:
            raise _Bad(f"{name} is a partitioned variable (saved in slices), which is not supported")
    if any(d < 0 for d in shape) or offset < 0 or size < 0:
        raise _Bad(f"{name} has a negative shape, offset or size")
    return TensorEntry(name, dtype, tuple(shape), shard, offset, size, crc)


# -- the SSTable ------------------------------------------------------------------------------
def _block_handle(data: bytes, pos: int, end: int) -> Tuple[int, int, int]:
    offset, pos = _varint(data, pos, end)
    size, pos = _varint(data, pos, end)
    return offset, size, pos


def _block(data: bytes, offset: int, size: int) -> bytes:
    """The checked contents of the block at ``offset`` (its trailer's checksum verified)."""
    if offset + size + BLOCK_TRAILER_BYTES > len(data) - FOOTER_BYTES:
        raise _Bad(f"a block handle (offset {offset}, size {size}) points past the end of the file")
    contents = data[offset:offset + size]
    kind = data[offset + size]
    stored = int.from_bytes(data[offset + size + 1:offset + size + 5], "little")
    if crc32c(data[offset:offset + size + 1]) != unmask_crc(stored):
        raise _Bad(f"the block at offset {offset} fails its checksum")
    if kind != 0:
        raise _Bad(f"a block is compressed (type {kind}); TensorFlow writes checkpoints uncompressed")
    return contents


def _block_entries(block: bytes) -> Iterator[Tuple[bytes, bytes]]:
    if len(block) < 4:
        raise _Bad("a block is shorter than its restart count")
    restarts = int.from_bytes(block[-4:], "little")
    end = len(block) - 4 - 4 * restarts
    if restarts < 1 or end < 0:
        raise _Bad("a block's restart array does not fit in the block")
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos, end)
        unshared, pos = _varint(block, pos, end)
        value_len, pos = _varint(block, pos, end)
        if shared > len(key) or shared + unshared > MAX_KEY_BYTES or pos + unshared + value_len > end:
            raise _Bad("a block entry's key or value runs past the end of the block")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + value_len]
        pos += value_len


def read_index(index_path: Path) -> Tuple[int, Dict[str, TensorEntry]]:
    """(number of shards, tensor name -> entry) of a ``.index`` file, every block checked."""
    try:
        size = check_regular(index_path)
    except FileProblem as err:
        raise CheckpointError(f"{err}.") from None
    if size > MAX_INDEX_BYTES:
        raise CheckpointError(f"{index_path} is {size:,} bytes, more than a checkpoint index holds; it is not a TF checkpoint index.")
    data = index_path.read_bytes()
    try:
        if len(data) < FOOTER_BYTES or int.from_bytes(data[-8:], "little") != TABLE_MAGIC:
            raise _Bad("it does not end in the table magic number (not a TF checkpoint index, or truncated)")
        footer_end = len(data) - 8
        _, _, pos = _block_handle(data, len(data) - FOOTER_BYTES, footer_end)
        index_offset, index_size, _ = _block_handle(data, pos, footer_end)
        num_shards: Optional[int] = None
        entries: Dict[str, TensorEntry] = {}
        for _, handle in _block_entries(_block(data, index_offset, index_size)):
            offset, block_size, _ = _block_handle(handle, 0, len(handle))
            for key, value in _block_entries(_block(data, offset, block_size)):
                if len(entries) >= MAX_ENTRIES:
                    raise _Bad(f"it lists more than {MAX_ENTRIES:,} tensors")
                if key == b"":
                    num_shards = _decode_header(value)
                    continue
                name = key.decode("utf-8", errors="replace")
                entries[name] = _decode_entry(name, value)
        if num_shards is None:
            raise _Bad("it has no bundle header")
        for entry in entries.values():
            if entry.shard >= num_shards:
                raise _Bad(f"{entry.name} is in shard {entry.shard} of {num_shards}")
    except _Bad as err:
        raise CheckpointError(f"{index_path} is not a readable TF checkpoint index: {err}; copy or download the checkpoint again.") from None
    return num_shards, entries


def _decode_header(data: bytes) -> int:
    num_shards, endianness = 1, 0
    for number, wire, value in _fields(data):
        if number == 1 and wire == 0:
            num_shards = _int(value)
        elif number == 2 and wire == 0:
            endianness = _int(value)
    if endianness != 0:
        raise _Bad("its tensors are big-endian; only little-endian checkpoints are read")
    if not 1 <= num_shards <= MAX_SHARDS:
        raise _Bad(f"its header names {num_shards} shards")
    return num_shards


# -- finding a checkpoint ---------------------------------------------------------------------
def locate(path: PathLike) -> Optional[Path]:
    """The ``model.ckpt-N`` prefix ``path`` names, or ``None`` when it is not a TF checkpoint:
    a folder with a ``checkpoint`` file or ``*.index`` files (and no ``config.json``), the prefix
    itself, or its ``.index`` file."""
    if not str(path).strip():
        return None
    path = Path(path).expanduser()
    try:
        if path.is_dir():
            if (path / "config.json").exists():
                return None
            return _prefix_in_folder(path)
        if path.name.endswith(".index") and path.is_file():
            return path.with_name(path.name[: -len(".index")])
        if path.with_name(path.name + ".index").is_file():
            return path
    except OSError:
        return None
    return None


def _prefix_in_folder(folder: Path) -> Optional[Path]:
    state = folder / "checkpoint"
    if state.is_file():
        try:
            size = check_regular(state)
            text = state.read_text(encoding="utf-8", errors="replace") if size < 2**20 else ""
        except (FileProblem, OSError):
            text = ""
        match = _CKPT_LINE.search(text)
        if match:  # TF writes absolute paths from the training machine: take the file name only
            prefix = folder / re.split(r"[/\\]", match.group("path"))[-1]
            if prefix.with_name(prefix.name + ".index").is_file():
                return prefix
    indexes = sorted(folder.glob("*.index"))
    if len(indexes) == 1:
        return indexes[0].with_name(indexes[0].name[: -len(".index")])
    if len(indexes) > 1:
        names = ", ".join(p.name[: -len(".index")] for p in indexes[:5])
        raise CheckpointError(f"{folder} holds several TF checkpoints ({names}); pass one of them, e.g. {indexes[-1].with_suffix('')}.")
    return None


# -- Google's ELECTRA names -------------------------------------------------------------------
@dataclass
class TFModel:
    """One model of a TF ELECTRA checkpoint, mapped onto Hugging Face names and shapes."""

    prefix: Path
    model: str
    config: ElectraConfig
    # HF name -> (TF name, transpose)
    names: Dict[str, Tuple[str, bool]]
    shapes: Dict[str, Tuple[str, Tuple[int, ...]]]


def _transformer_names(body: str, embeddings: str, n_layers: int, projection: bool) -> Iterator[Tuple[str, str]]:
    for part in ("word", "position", "token_type"):
        yield f"electra.embeddings.{part}_embeddings.weight", f"{embeddings}/embeddings/{part}_embeddings"
    yield from _dense("electra.embeddings.LayerNorm", f"{embeddings}/embeddings/LayerNorm", norm=True)
    if projection:
        yield from _dense("electra.embeddings_project", f"{body}/embeddings_project")
    for i in range(n_layers):
        ours, theirs = f"electra.encoder.layer.{i}", f"{body}/encoder/layer_{i}"
        for part in ("query", "key", "value"):
            yield from _dense(f"{ours}.attention.self.{part}", f"{theirs}/attention/self/{part}")
        yield from _dense(f"{ours}.attention.output.dense", f"{theirs}/attention/output/dense")
        yield from _dense(f"{ours}.attention.output.LayerNorm", f"{theirs}/attention/output/LayerNorm", norm=True)
        yield from _dense(f"{ours}.intermediate.dense", f"{theirs}/intermediate/dense")
        yield from _dense(f"{ours}.output.dense", f"{theirs}/output/dense")
        yield from _dense(f"{ours}.output.LayerNorm", f"{theirs}/output/LayerNorm", norm=True)


def _dense(hf: str, tf: str, norm: bool = False) -> Iterator[Tuple[str, str]]:
    yield f"{hf}.weight", f"{tf}/{'gamma' if norm else 'kernel'}"
    yield f"{hf}.bias", f"{tf}/{'beta' if norm else 'bias'}"


def describe(
    prefix: Path, entries: Dict[str, TensorEntry], model: str = "discriminator", *,
    num_attention_heads: Optional[int] = None,
) -> TFModel:
    """The config and the name/shape table of ``model`` in the checkpoint, from the index alone."""
    if model not in MODELS:
        raise CheckpointError(f"model={model!r} is not one of {', '.join(MODELS)}.")
    where = f"{prefix}.index"
    if model == "generator":
        if any(n.startswith("generator/encoder/") for n in entries):
            body = "generator"
        elif "generator_predictions/dense/kernel" in entries:
            body = "electra"  # a generator sharing the discriminator's transformer (untied_generator=False)
        else:
            raise CheckpointError(
                f"{where} holds no generator (no generator/encoder/... or generator_predictions/... weights); "
                "take the discriminator (--model discriminator) or use a checkpoint saved during pretraining."
            )
        embeddings = "generator" if "generator/embeddings/word_embeddings" in entries else "electra"
    else:
        body = embeddings = "electra"
    layers = sorted({int(m.group(1)) for n in entries if n.startswith(body + "/") for m in [_LAYER.search(n)] if m})
    if not layers:
        raise CheckpointError(f"{where} has no {body}/encoder/layer_N weights; it is not a Google ELECTRA checkpoint.")
    if layers != list(range(len(layers))):
        raise CheckpointError(f"{where}: the {model}'s layers are {layers}, not 0..{len(layers) - 1}; the checkpoint is incomplete.")

    def shape(name: str) -> Tuple[int, ...]:
        if name not in entries:
            raise CheckpointError(f"{where} lacks {name}; the {model} is incomplete. Use a complete ELECTRA checkpoint.")
        return entries[name].shape

    vocab_size, embedding_size = _dims(shape(f"{embeddings}/embeddings/word_embeddings"), 2, where)
    hidden = _dims(shape(f"{body}/encoder/layer_0/attention/self/query/kernel"), 2, where)[1]
    heads = num_attention_heads or max(1, hidden // HEAD_WIDTH)
    try:
        config = ElectraConfig(
            vocab_size=vocab_size, embedding_size=embedding_size, hidden_size=hidden,
            num_hidden_layers=len(layers), num_attention_heads=heads,
            intermediate_size=_dims(shape(f"{body}/encoder/layer_0/intermediate/dense/kernel"), 2, where)[1],
            max_position_embeddings=_dims(shape(f"{embeddings}/embeddings/position_embeddings"), 2, where)[0],
            type_vocab_size=_dims(shape(f"{embeddings}/embeddings/token_type_embeddings"), 2, where)[0],
            hidden_act="gelu", layer_norm_eps=1e-12,
        )
    except ValueError as err:
        raise CheckpointError(f"{where}: {err} Pass num_attention_heads (--heads) that divides the hidden size {hidden}.") from None
    names = dict(_pairs(_transformer_names(body, embeddings, len(layers), config.has_projection)))
    if model == "discriminator":
        head = "discriminator_predictions"
        last = f"{head}/dense_1" if f"{head}/dense_1/kernel" in entries else f"{head}/dense_prediction"
        head_names = dict(_pairs([*_dense(f"{head}.dense", f"{head}/dense"), *_dense(f"{head}.dense_prediction", last)]))
    else:
        head = "generator_predictions"
        head_names = dict(_pairs([*_dense(f"{head}.dense", f"{head}/dense"),
                                  *_dense(f"{head}.LayerNorm", f"{head}/LayerNorm", norm=True)]))
        head_names["generator_lm_head.bias"] = (f"{head}/output_bias", False)
    present = [tf for tf, _ in head_names.values() if tf in entries]
    if present and len(present) < len(head_names):
        missing = [tf for tf, _ in head_names.values() if tf not in entries]
        raise CheckpointError(f"{where} has a partial {head} head (missing {', '.join(missing)}); the checkpoint is incomplete.")
    if present:
        names.update(head_names)
    elif model == "generator":
        raise CheckpointError(f"{where} has a generator without its {head} head; the checkpoint is incomplete.")
    shapes = {}
    for hf, (tf, transpose) in names.items():
        entry = entries.get(tf)
        if entry is None:
            raise CheckpointError(f"{where} lacks {tf}; the {model} is incomplete. Use a complete ELECTRA checkpoint.")
        if entry.dtype != DT_FLOAT:
            raise CheckpointError(
                f"{where}: {tf} is {entry.dtype_name}, not float32; only float32 TF checkpoints (as Google releases them) are read."
            )
        dims = entry.shape
        if transpose:
            if len(dims) != 2:
                raise CheckpointError(f"{where}: {tf} has shape {list(dims)}, not a 2-d kernel; the checkpoint is damaged.")
            dims = (dims[1], dims[0])
        shapes[hf] = ("F32", dims)
    return TFModel(prefix, model, config, names, shapes)


def _pairs(pairs: Iterable[Tuple[str, str]]) -> Iterator[Tuple[str, Tuple[str, bool]]]:
    for hf, tf in pairs:
        yield hf, (tf, tf.endswith("/kernel"))


def _dims(shape: Tuple[int, ...], rank: int, where: str) -> Tuple[int, ...]:
    if len(shape) != rank or min(shape, default=0) < 1:
        raise CheckpointError(f"{where}: a weight has shape {list(shape)} where a {rank}-d one is expected; the checkpoint is damaged.")
    return shape


# -- reading tensors --------------------------------------------------------------------------
def shard_path(prefix: Path, shard: int, num_shards: int) -> Path:
    return prefix.with_name(f"{prefix.name}.data-{shard:05d}-of-{num_shards:05d}")


def read_tensors(tf_model: TFModel, entries: Dict[str, TensorEntry], num_shards: int) -> StateDict:
    """The model's tensors under HF names, each bounded by its shard and checksum-verified."""
    prefix = tf_model.prefix
    sizes: Dict[int, int] = {}
    files: Dict[int, BinaryIO] = {}
    state: StateDict = {}
    try:
        for hf, (tf, transpose) in tf_model.names.items():
            entry = entries[tf]
            path = shard_path(prefix, entry.shard, num_shards)
            if entry.shard not in sizes:
                try:
                    sizes[entry.shard] = check_regular(path)
                except FileProblem as err:
                    raise CheckpointError(f"{err}; copy every {prefix.name}.data-* shard next to the index.") from None
                files[entry.shard] = open(path, "rb")
            expected = math.prod(entry.shape) * 4
            if entry.size != expected:
                raise CheckpointError(
                    f"{prefix}.index: {tf} has shape {list(entry.shape)} but {entry.size:,} bytes (expected {expected:,}); "
                    "the index is damaged. Download the checkpoint again."
                )
            if entry.offset + entry.size > sizes[entry.shard]:
                raise CheckpointError(
                    f"{path} is {sizes[entry.shard]:,} bytes but {tf} lies at bytes {entry.offset:,}-{entry.offset + entry.size:,}; "
                    "the shard is truncated or belongs to another checkpoint. Download the checkpoint again."
                )
            handle = files[entry.shard]
            handle.seek(entry.offset)
            data = handle.read(entry.size)
            if len(data) != entry.size or crc32c(data) != unmask_crc(entry.crc32c):
                raise CheckpointError(
                    f"{path}: {tf} fails its checksum (the file is corrupt or was changed); download the checkpoint again."
                )
            array = np.frombuffer(data, dtype="<f4").reshape(entry.shape)
            tensor = torch.from_numpy(array.copy())
            state[hf] = tensor.t().contiguous() if transpose else tensor
    finally:
        for handle in files.values():
            handle.close()
    return state


def read_tf_model(
    prefix: Path, model: str = "discriminator", *, num_attention_heads: Optional[int] = None,
) -> Tuple[TFModel, StateDict]:
    """``model`` of the checkpoint at ``prefix``: its description (checked from the index) and its
    tensors under Hugging Face ``ElectraForPreTraining``/``ElectraForMaskedLM`` names."""
    num_shards, entries = read_index(prefix.with_name(prefix.name + ".index"))
    described = describe(prefix, entries, model, num_attention_heads=num_attention_heads)
    return described, read_tensors(described, entries, num_shards)
