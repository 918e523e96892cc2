"""Hugging Face checkpoint interop: read and write HF ELECTRA folders by state-dict mapping.

Our module names differ from HF's (fused QKV, shorter names), so every tensor goes through one
explicit name table (``_name_pairs``) in both directions. Weights are read from safetensors, or
from ``pytorch_model.bin`` with ``torch.load(weights_only=True)``: nothing in a checkpoint is
ever executed. A checkpoint is untrusted input: ``validate`` refuses a bad one before the model
is built. BERT-layout folders (``model_type: bert``: BERT, MiniLM...) load too, since ELECTRA's
encoder is BERT's without the embedding projection; they are written back as ELECTRA.
"""
from __future__ import annotations

import json
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..pieces import VocabError, WordPieceEncoder
from . import hub
from .config import ElectraConfig
from .encoder import MODEL_CLASSES, ElectraEncoder
from .validate import (
    MAX_VOCAB_BYTES, FileProblem, check_dtypes, check_finite, check_regular, compare_shapes, layer_count,
    our_shapes, read_json, read_text, reading, safetensors_header_from_file,
)

StateDict = Dict[str, Tensor]
PathLike = Union[str, Path]

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# Buffers that older `transformers` versions saved; they carry no weights.
_IGNORED = re.compile(r"(^|\.)(position_ids|token_type_ids)$")
# Heads of fine-tuned HF models: we take the encoder and say which weights were left behind.
# BERT's pooler and pretraining heads (``cls.``) are left behind the same way.
_FINETUNED_HEADS = re.compile(r"^(classifier|qa_outputs|sequence_summary|lm_head|pooler|cls)\.")
# config.json model types whose encoder has our layout; the value is the HF task-model prefix.
MODEL_TYPES = ("electra", "bert")
_HF_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.")
# torch dtypes under their safetensors names, so .bin and .safetensors get the same dtype check.
_DTYPE_NAMES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model it describes."""


# -- name table -------------------------------------------------------------------------------
def _name_pairs(config: ElectraConfig, kind: str) -> Iterator[Tuple[str, str]]:
    """(our name, HF name without the ``electra.`` prefix) for every tensor except fused QKV."""
    for ours, theirs in (
        ("embeddings.word", "embeddings.word_embeddings"),
        ("embeddings.position", "embeddings.position_embeddings"),
        ("embeddings.token_type", "embeddings.token_type_embeddings"),
    ):
        yield f"{ours}.weight", f"{theirs}.weight"
    pairs = [("embeddings.layer_norm", "embeddings.LayerNorm")]
    if config.has_projection:
        pairs.append(("projection", "embeddings_project"))
    for i in range(config.num_hidden_layers):
        ours, theirs = f"layers.{i}", f"encoder.layer.{i}"
        pairs += [
            (f"{ours}.attention.output", f"{theirs}.attention.output.dense"),
            (f"{ours}.attention_norm", f"{theirs}.attention.output.LayerNorm"),
            (f"{ours}.intermediate", f"{theirs}.intermediate.dense"),
            (f"{ours}.output", f"{theirs}.output.dense"),
            (f"{ours}.ffn_norm", f"{theirs}.output.LayerNorm"),
        ]
    if kind == "discriminator":
        pairs += [
            ("head.dense", "discriminator_predictions.dense"),
            ("head.prediction", "discriminator_predictions.dense_prediction"),
        ]
    elif kind == "generator":
        pairs += [
            ("head.dense", "generator_predictions.dense"),
            ("head.layer_norm", "generator_predictions.LayerNorm"),
        ]
        yield "head.bias", "generator_lm_head.bias"
    for ours, theirs in pairs:
        for param in ("weight", "bias"):
            yield f"{ours}.{param}", f"{theirs}.{param}"


def _qkv_names(i: int) -> Tuple[str, List[str]]:
    return f"layers.{i}.attention.qkv", [
        f"encoder.layer.{i}.attention.self.{part}" for part in ("query", "key", "value")
    ]


def _hf_prefix(kind: str) -> str:
    return "" if kind == "encoder" else "electra."


def _head_keys(kind: str) -> Tuple[str, ...]:
    return {
        "discriminator": ("discriminator_predictions.",),
        "generator": ("generator_predictions.", "generator_lm_head."),
    }.get(kind, ())


# -- HF state dict -> ours --------------------------------------------------------------------
def _normalise_name(key: str, prefix: str = "electra.") -> Optional[str]:
    """Strip the task-model prefix (``electra.``/``bert.``), rename TF-era ``gamma``/``beta``;
    ``None`` for old buffers that carry no weights."""
    if _IGNORED.search(key):
        return None
    if key.startswith(prefix):
        key = key[len(prefix) :]
    key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
    return re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)


def _normalise_names(keys: Iterable[str], prefix: str = "electra.") -> Dict[str, str]:
    """Original key -> normalised name, without the ignored buffers."""
    names = {key: _normalise_name(key, prefix) for key in keys}
    return {key: name for key, name in names.items() if name is not None}


def _normalise_hf_keys(state: StateDict, prefix: str = "electra.") -> StateDict:
    return {name: state[key] for key, name in _normalise_names(state, prefix).items()}


def _detect_kind_from_names(names: Dict[str, str]) -> str:
    found = set(names.values())
    if "discriminator_predictions.dense.weight" in found:
        return "discriminator"
    if "generator_predictions.dense.weight" in found:
        return "generator"
    return "encoder"


def detect_kind(hf_state: StateDict, prefix: str = "electra.") -> str:
    return _detect_kind_from_names(_normalise_names(hf_state, prefix))


def hf_to_ours(
    hf_state: StateDict, config: ElectraConfig, kind: str, prefix: str = "electra."
) -> Tuple[StateDict, List[str]]:
    """Map an HF state dict onto our names. Returns our state dict and the HF keys left unused
    because they belong to another head. Raises ``CheckpointError`` for missing or unknown keys."""
    remaining = _normalise_hf_keys(hf_state, prefix)
    ours: StateDict = {}
    missing: List[str] = []
    for name, hf_name in _name_pairs(config, kind):
        if hf_name in remaining:
            ours[name] = remaining.pop(hf_name)
        else:
            missing.append(hf_name)
    for i in range(config.num_hidden_layers):
        name, parts = _qkv_names(i)
        for param in ("weight", "bias"):
            keys = [f"{p}.{param}" for p in parts]
            if all(k in remaining for k in keys):
                ours[f"{name}.{param}"] = torch.cat([remaining.pop(k) for k in keys], dim=0)
            else:
                missing += [k for k in keys if k not in remaining]
    if kind == "generator":
        remaining.pop("generator_lm_head.weight", None)  # tied to the word embeddings
    other_heads = [
        k for k in remaining
        if _FINETUNED_HEADS.match(k) or k.startswith(("discriminator_predictions.", "generator_"))
    ]
    unexpected = sorted(k for k in remaining if k not in other_heads)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing weights: {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else ""))
        if unexpected:
            parts.append(f"unexpected weights: {', '.join(unexpected[:8])}" + (" ..." if len(unexpected) > 8 else ""))
        raise CheckpointError(
            f"The checkpoint does not match an ELECTRA {kind} with this config.json ("
            + "; ".join(parts)
            + "). Check that config.json belongs to these weights (num_hidden_layers, embedding_size)."
        )
    return ours, sorted(other_heads)


def ours_to_hf(model: ElectraEncoder) -> StateDict:
    state = model.state_dict()
    prefix = _hf_prefix(model.kind)
    hf: StateDict = {}
    for name, hf_name in _name_pairs(model.config, model.kind):
        key = hf_name if hf_name.startswith(_head_keys(model.kind)) else prefix + hf_name
        hf[key] = state[name].detach().cpu().contiguous()
    for i in range(model.config.num_hidden_layers):
        name, parts = _qkv_names(i)
        for param in ("weight", "bias"):
            for part, chunk in zip(parts, state[f"{name}.{param}"].chunk(3, dim=0)):
                hf[f"{prefix}{part}.{param}"] = chunk.detach().cpu().contiguous()
    return hf


# -- files ------------------------------------------------------------------------------------
def resolve_checkpoint(
    path_or_id: PathLike, *, revision: Optional[str] = None, local_files_only: bool = False
) -> Path:
    """A local folder, or a hub id (``name``, ``org/name``, ``org/name@revision``) fetched into
    the Hugging Face cache. ``local_files_only=True`` (or ``HF_HUB_OFFLINE=1``) never touches
    the network: use it wherever a missing checkpoint is not an error yet (building a config)."""
    if not str(path_or_id).strip():
        raise CheckpointError("The checkpoint is empty; give a local folder or a hub id such as 'org/name'.")
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; pass the folder that holds config.json and the weights.")
    try:
        return hub.download(str(path_or_id), revision=revision, local_files_only=local_files_only)
    except hub.HubError as err:
        raise CheckpointError(str(err)) from None


def _problem(err: FileProblem, fix: str = "") -> CheckpointError:
    return CheckpointError(f"{str(err).rstrip('.')}." + (f" {fix}" if fix else ""))


def _regular(path: Path) -> Path:
    try:
        check_regular(path)
    except FileProblem as err:
        raise _problem(err) from None
    return path


def _read_weight_file(path: Path) -> StateDict:
    _regular(path)
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(
                f"Could not read {path}: {err}. The file is truncated or corrupt; copy or export it again."
            ) from err
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"Refusing to load {path}: it contains pickled objects other than tensors, and code in a "
            "checkpoint is never executed. Convert it to model.safetensors with a trusted tool."
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AssertionError, RecursionError) as err:
        raise CheckpointError(
            f"Could not read {path}: {err}. The file is truncated or corrupt; copy or export it again."
        ) from err
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a flat state dict of tensors.")
    return state


_SHARD_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def weight_files(directory: Path) -> List[Path]:
    """The weight files to read, in the first layout found (see ``WEIGHT_FILES``). Shard names
    from an ``*.index.json`` must be plain file names in ``directory``: an index is data, and
    ``../x.safetensors`` or ``/etc/...`` must not make us read outside the checkpoint."""
    for name in WEIGHT_FILES:
        path = directory / name
        if not path.exists():
            continue
        if not name.endswith(".index.json"):
            return [_regular(path)]
        try:
            with reading(path):
                weight_map = read_json(path)["weight_map"]
                shards = sorted(set(weight_map.values()))
                if not all(isinstance(shard, str) for shard in shards):
                    raise ValueError("weight_map values must be file names")
        except FileProblem as err:
            raise _problem(err, "Copy or export the checkpoint again.") from None
        suffix = name[: -len(".index.json")].rsplit(".", 1)[-1]
        for shard in shards:
            if not _SHARD_NAME.fullmatch(shard) or not shard.endswith("." + suffix):
                raise CheckpointError(
                    f"{path} names shard {shard!r}, which is not a .{suffix} file in {directory}; "
                    "shards must be plain file names next to the index. Refusing to read it."
                )
            if not (directory / shard).exists():
                raise CheckpointError(f"Shard {shard} listed in {path} is missing; copy all shards.")
        return [_regular(directory / shard) for shard in shards]
    raise CheckpointError(
        f"No weights in {directory}: expected one of {', '.join(WEIGHT_FILES)}. TensorFlow or Flax "
        "checkpoints must first be converted with `transformers` (save_pretrained)."
    )


def read_config(directory: Path) -> Tuple[ElectraConfig, Dict[str, Any]]:
    """config.json as our config plus the raw dict, refusing what is not ELECTRA or BERT, or has
    values out of range, before anything is built from it."""
    config_path = directory / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"{directory} has no config.json; an HF-format checkpoint needs one.")
    try:
        raw = read_json(config_path)
    except FileProblem as err:
        raise _problem(err, "Use the config.json that came with these weights.") from None
    model_type = raw.get("model_type", "electra")
    if model_type not in MODEL_TYPES:
        raise CheckpointError(
            f"{config_path} describes a {model_type!r} model; spacy-electra loads ELECTRA and "
            "BERT-layout encoders (model_type 'electra' or 'bert')."
        )
    try:
        with reading(config_path):
            config = ElectraConfig.from_hf_dict(raw)
    except FileProblem as err:
        raise _problem(err, "Use the config.json that came with these weights.") from None
    return config, raw


def _weight_shapes(paths: List[Path]) -> Optional[Dict[str, Tuple[str, Tuple[int, ...]]]]:
    """Dtype and shape of every tensor, from the safetensors headers alone; ``None`` for
    pytorch_model.bin, whose shapes are only known once it is loaded."""
    if any(p.suffix != ".safetensors" for p in paths):
        return None
    header: Dict[str, Tuple[str, Tuple[int, ...]]] = {}
    for path in paths:
        try:
            header.update(safetensors_header_from_file(path))
        except FileProblem as err:
            raise _problem(err, "Copy or export it again.") from None
    return header


def _check_against_config(
    header: Dict[str, Tuple[str, Tuple[int, ...]]], config: ElectraConfig, kind: Optional[str],
    prefix: str, directory: Path,
) -> str:
    """Dtypes, layer count and every shape, before a tensor is read or a module built. Returns
    the kind to build (detected unless given)."""
    try:
        cast = check_dtypes(header, str(directory), _IGNORED)
    except FileProblem as err:
        raise _problem(err) from None
    if cast:
        warnings.warn(
            f"{directory} stores weights as {', '.join(cast)}; they are converted to float32 on load.",
            stacklevel=4,
        )
    names = _normalise_names(header, prefix)
    detected = _detect_kind_from_names(names)
    kind = kind or detected
    if kind not in MODEL_CLASSES:
        raise CheckpointError(f"kind={kind!r} is not one of {', '.join(MODEL_CLASSES)}.")
    if kind != "encoder" and kind != detected:
        raise CheckpointError(
            f"{directory} holds an ELECTRA {detected}, not a {kind}; load it with kind={detected!r} "
            "or kind='encoder'."
        )
    n_layers = layer_count(names.values(), _HF_LAYER)
    if n_layers != config.num_hidden_layers:
        raise CheckpointError(
            f"{directory / 'config.json'} says num_hidden_layers={config.num_hidden_layers} but the "
            f"weights hold {n_layers} layers (missing weights: encoder.layer.{min(n_layers, config.num_hidden_layers)}"
            "...); use the config.json that belongs to these weights."
        )
    shapes = {names[key]: shape for key, (_, shape) in header.items() if key in names}
    try:
        compare_shapes(_hf_shapes(config, kind), shapes, f"{directory / 'config.json'}", str(directory))
    except FileProblem as err:
        raise _problem(err) from None
    return kind


def _hf_shapes(config: ElectraConfig, kind: str) -> Dict[str, Tuple[int, ...]]:
    """The shapes ``config`` implies, under HF names (prefix stripped)."""
    ours = our_shapes(config, kind)
    shapes = {theirs: ours[name] for name, theirs in _name_pairs(config, kind)}
    for i in range(config.num_hidden_layers):
        name, parts = _qkv_names(i)
        for param in ("weight", "bias"):
            fused = ours[f"{name}.{param}"]
            for part in parts:
                shapes[f"{part}.{param}"] = (fused[0] // 3,) + fused[1:]
    return shapes


def load_checkpoint(
    path_or_id: PathLike, *, kind: Optional[str] = None, revision: Optional[str] = None,
    local_files_only: bool = False,
) -> ElectraEncoder:
    """Load an HF-format ELECTRA (or BERT-layout) folder or hub id as our module.

    ``kind`` is detected from the weights (``discriminator``, ``generator`` or ``encoder``); pass
    ``kind="encoder"`` to drop a pretraining head. Fine-tuned HF heads are not loaded: a warning
    names them (use ``load_encoder_and_head`` to take one). A hub id is downloaded into the HF
    cache unless ``local_files_only`` or ``HF_HUB_OFFLINE=1``.
    """
    directory = resolve_checkpoint(path_or_id, revision=revision, local_files_only=local_files_only)
    model, _, _ = _load(directory, kind=kind, head=None)
    return model


def load_encoder_and_head(
    path_or_id: PathLike, head: str, *, revision: Optional[str] = None, local_files_only: bool = False,
) -> Tuple[ElectraEncoder, StateDict, Dict[str, Any]]:
    """The encoder of a fine-tuned HF checkpoint plus the tensors of its task head.

    ``head`` is the HF prefix of the head (``"qa_outputs"``, ``"classifier"``). Returns the encoder
    (``kind="encoder"``), the head's tensors with the prefix stripped (``{"weight": ..., "bias":
    ...}`` for ``qa_outputs``; empty when the checkpoint has no such head, e.g. a pretrained
    discriminator) and the raw ``config.json`` dict (``id2label``, ``problem_type``...). Other
    fine-tuned heads are still named in a warning; the one asked for is not.
    """
    directory = resolve_checkpoint(path_or_id, revision=revision, local_files_only=local_files_only)
    return _load(directory, kind="encoder", head=head)


def _load(directory: Path, *, kind: Optional[str], head: Optional[str]) -> Tuple[ElectraEncoder, StateDict, Dict[str, Any]]:
    """Every check that can fail runs before ``ElectraEncoder(config)`` allocates anything:
    config values, weight-file headers (dtype, layer count, shapes), then the tensors themselves
    (names, NaN/inf)."""
    config, raw = read_config(directory)
    prefix = f"{raw.get('model_type', 'electra')}."
    paths = weight_files(directory)
    header = _weight_shapes(paths)
    # safetensors: dtypes and shapes are checked from the headers, before a tensor is read
    build = _check_against_config(header, config, kind, prefix, directory) if header is not None else None
    hf_state: StateDict = {}
    for path in paths:
        hf_state.update(_read_weight_file(path))
    if build is None:  # pytorch_model.bin: the same checks once it is loaded, still before building
        loaded = {k: (_DTYPE_NAMES.get(v.dtype, str(v.dtype)), tuple(v.shape)) for k, v in hf_state.items()}
        build = _check_against_config(loaded, config, kind, prefix, directory)
    try:
        check_finite(((k, v) for k, v in hf_state.items() if not _IGNORED.search(k)), str(directory))
    except FileProblem as err:
        raise _problem(err, "Export the weights again from a good copy.") from None
    state, left_out = hf_to_ours(hf_state, config, build, prefix)
    model = MODEL_CLASSES[build](config)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    head_state: StateDict = {}
    if head is not None:
        head_prefix = head.rstrip(".") + "."
        for key, value in _normalise_hf_keys(hf_state, prefix).items():
            if key.startswith(head_prefix):
                head_state[key[len(head_prefix):]] = value
        left_out = [k for k in left_out if not k.startswith(head_prefix)]
    if build == "encoder" and detect_kind(hf_state, prefix) != "encoder":
        # Dropping the pretraining head was asked for; only fine-tuned heads deserve a warning.
        left_out = [k for k in left_out if not k.startswith(_head_keys(detect_kind(hf_state, prefix)))]
    if left_out:
        warnings.warn(
            f"Loaded the {prefix[:-1].upper()} encoder of {directory}; these head weights were not loaded: "
            + ", ".join(left_out) + (" (BERT's pooler is not used: spaCy reads token vectors)"
                                     if any(k.startswith("pooler.") for k in left_out) else ""),
            stacklevel=3,
        )
    model.eval()
    return model, head_state, raw


def load_wordpiece(directory: PathLike, *, vocab_size: Optional[int] = None) -> WordPieceEncoder:
    """The WordPiece vocabulary of a checkpoint folder, read like the rest of it (regular files
    of bounded size, settings type-checked) and, given the model's ``vocab_size``, refused when
    it has more pieces than the model has embeddings."""
    directory = Path(directory)
    vocab_path, settings_path = directory / "vocab.txt", directory / "tokenizer_config.json"
    if not vocab_path.exists():
        raise CheckpointError(f"{directory} has no vocab.txt; an ELECTRA checkpoint needs its WordPiece vocabulary.")
    try:
        vocab = read_text(vocab_path, MAX_VOCAB_BYTES).splitlines()
        settings = read_json(settings_path) if settings_path.exists() else {}
        with reading(settings_path):
            options = {
                "lowercase": settings.get("do_lower_case", True),
                "strip_accents": settings.get("strip_accents"),
                "tokenize_chinese_chars": settings.get("tokenize_chinese_chars", True),
            }
            if not all(isinstance(v, bool) or (k == "strip_accents" and v is None) for k, v in options.items()):
                raise ValueError("do_lower_case, strip_accents and tokenize_chinese_chars must be true/false")
        wordpiece = WordPieceEncoder(vocab, **options)
        if vocab_size is not None:
            wordpiece.check_fits(vocab_size, str(vocab_path))
    except FileProblem as err:
        raise _problem(err) from None
    except VocabError as err:
        named = str(err) if str(vocab_path) in str(err) else f"{vocab_path}: {err}"
        raise CheckpointError(named) from None
    return wordpiece


def save_checkpoint(
    model: ElectraEncoder,
    directory: PathLike,
    *,
    vocab: Optional[object] = None,
    head_state: Optional[Dict[str, Tensor]] = None,
    config_updates: Optional[Dict[str, Any]] = None,
) -> Path:
    """Write ``model`` as an HF ELECTRA folder (config.json + model.safetensors) that
    ``transformers`` loads as ElectraForPreTraining / ElectraForMaskedLM / ElectraModel.
    ``vocab`` (a ``WordPieceEncoder``) adds vocab.txt and tokenizer_config.json.

    A fine-tuned task model is written by passing an encoder with ``head_state`` (HF key ->
    tensor, e.g. ``{"qa_outputs.weight": ...}``): the encoder's keys then get the ``electra.``
    prefix that HF task models use, and ``config_updates`` (e.g. ``architectures``, ``id2label``,
    ``label2id``, ``problem_type``) are merged into config.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config.to_hf_dict(model.kind)
    state = ours_to_hf(model)
    if head_state:
        if model.kind != "encoder":
            raise ValueError("head_state is written next to a bare encoder; pass the encoder (kind='encoder').")
        state = {f"electra.{k}": v for k, v in state.items()}
        for key, value in head_state.items():
            state[key] = value.detach().cpu().contiguous()
    config.update(config_updates or {})
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    if vocab is not None:
        vocab.save(directory)  # type: ignore[attr-defined]
    return directory
