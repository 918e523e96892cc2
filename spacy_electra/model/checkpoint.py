"""Hugging Face checkpoint interop: read and write HF ELECTRA folders by state-dict mapping.

Our module names differ from HF's (fused QKV, shorter names), so every tensor goes through one
explicit name table (``_name_pairs``) in both directions. Weights are read from safetensors, or
from ``pytorch_model.bin`` with ``torch.load(weights_only=True)``: nothing in a checkpoint is
ever executed.
"""
from __future__ import annotations

import json
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from .config import ElectraConfig
from .encoder import MODEL_CLASSES, ElectraEncoder

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
_FINETUNED_HEADS = re.compile(r"^(classifier|qa_outputs|sequence_summary|lm_head)\.")


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
def _normalise_hf_keys(state: StateDict) -> StateDict:
    """Strip the ``electra.`` prefix, rename TF-era ``gamma``/``beta``, drop old buffers."""
    out: StateDict = {}
    for key, value in state.items():
        if _IGNORED.search(key):
            continue
        if key.startswith("electra."):
            key = key[len("electra.") :]
        key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
        key = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
        out[key] = value
    return out


def detect_kind(hf_state: StateDict) -> str:
    keys = _normalise_hf_keys(hf_state)
    if "discriminator_predictions.dense.weight" in keys:
        return "discriminator"
    if "generator_predictions.dense.weight" in keys:
        return "generator"
    return "encoder"


def hf_to_ours(hf_state: StateDict, config: ElectraConfig, kind: str) -> Tuple[StateDict, List[str]]:
    """Map an HF state dict onto our names. Returns our state dict and the HF keys left unused
    because they belong to another head. Raises ``CheckpointError`` for missing or unknown keys."""
    remaining = _normalise_hf_keys(hf_state)
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
def resolve_checkpoint(path_or_id: PathLike) -> Path:
    """A local folder, or a hub id found in the local Hugging Face cache (never downloaded)."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    name = str(path_or_id)
    if path.exists():
        raise CheckpointError(f"{path} is a file; pass the folder that holds config.json and the weights.")
    if re.fullmatch(r"[\w.-]+/[\w.-]+|[\w.-]+", name) and not name.startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(name, local_files_only=True))
        except ImportError:
            pass
        except Exception:  # noqa: BLE001 - any cache miss ends in the same advice below
            pass
    raise CheckpointError(
        f"Checkpoint {name!r} is neither a local folder nor in the local Hugging Face cache, and "
        "spacy-electra never downloads weights at run time. Either download it where there is "
        f"internet (`huggingface-cli download {name}`) and copy the cache, or point `checkpoint` at "
        "a local folder with config.json, vocab.txt and model.safetensors (for example one written "
        "by `spacy-electra pretrain`)."
    )


def _read_weight_file(path: Path) -> StateDict:
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
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(
            f"Could not read {path}: {err}. The file is truncated or corrupt; copy or export it again."
        ) from err
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a flat state dict of tensors.")
    return state


def read_hf_state(directory: Path) -> StateDict:
    for name in WEIGHT_FILES:
        path = directory / name
        if not path.exists():
            continue
        if name.endswith(".index.json"):
            weight_map = json.loads(path.read_text())["weight_map"]
            state: StateDict = {}
            for shard in sorted(set(weight_map.values())):
                if not (directory / shard).exists():
                    raise CheckpointError(f"Shard {shard} listed in {path} is missing; copy all shards.")
                state.update(_read_weight_file(directory / shard))
            return state
        return _read_weight_file(path)
    raise CheckpointError(
        f"No weights in {directory}: expected one of {', '.join(WEIGHT_FILES)}. TensorFlow or Flax "
        "checkpoints must first be converted with `transformers` (save_pretrained)."
    )


def load_checkpoint(path_or_id: PathLike, *, kind: Optional[str] = None) -> ElectraEncoder:
    """Load an HF-format ELECTRA folder (or cached hub id) as our module.

    ``kind`` is detected from the weights (``discriminator``, ``generator`` or ``encoder``); pass
    ``kind="encoder"`` to drop a pretraining head. Fine-tuned HF heads are not loaded: a warning
    names them (use ``load_encoder_and_head`` to take one).
    """
    model, _, _ = _load(path_or_id, kind=kind, head=None)
    return model


def load_encoder_and_head(path_or_id: PathLike, head: str) -> Tuple[ElectraEncoder, StateDict, Dict[str, Any]]:
    """The encoder of a fine-tuned HF checkpoint plus the tensors of its task head.

    ``head`` is the HF prefix of the head (``"qa_outputs"``, ``"classifier"``). Returns the encoder
    (``kind="encoder"``), the head's tensors with the prefix stripped (``{"weight": ..., "bias":
    ...}`` for ``qa_outputs``; empty when the checkpoint has no such head, e.g. a pretrained
    discriminator) and the raw ``config.json`` dict (``id2label``, ``problem_type``...). Other
    fine-tuned heads are still named in a warning; the one asked for is not.
    """
    return _load(path_or_id, kind="encoder", head=head)


def _load(path_or_id: PathLike, *, kind: Optional[str], head: Optional[str]) -> Tuple[ElectraEncoder, StateDict, Dict[str, Any]]:
    directory = resolve_checkpoint(path_or_id)
    config_path = directory / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"{directory} has no config.json; an HF-format checkpoint needs one.")
    config = ElectraConfig.from_json_file(config_path)
    hf_state = read_hf_state(directory)
    detected = detect_kind(hf_state)
    kind = kind or detected
    if kind not in MODEL_CLASSES:
        raise CheckpointError(f"kind={kind!r} is not one of {', '.join(MODEL_CLASSES)}.")
    if kind != "encoder" and kind != detected:
        raise CheckpointError(
            f"{directory} holds an ELECTRA {detected}, not a {kind}; load it with kind={detected!r} "
            "or kind='encoder'."
        )
    state, left_out = hf_to_ours(hf_state, config, kind)
    model = MODEL_CLASSES[kind](config)
    expected = model.state_dict()
    wrong = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if v.shape != expected[k].shape
    ]
    if wrong:
        raise CheckpointError(
            f"Weights in {directory} do not fit its config.json: " + "; ".join(wrong[:6])
            + ". The config (vocab_size, embedding_size, hidden_size...) belongs to another model."
        )
    model.load_state_dict(state)
    head_state: StateDict = {}
    if head is not None:
        prefix = head.rstrip(".") + "."
        for key, value in _normalise_hf_keys(hf_state).items():
            if key.startswith(prefix):
                head_state[key[len(prefix):]] = value
        left_out = [k for k in left_out if not k.startswith(prefix)]
    if kind == "encoder" and detected != "encoder":
        # Dropping the pretraining head was asked for; only fine-tuned heads deserve a warning.
        left_out = [k for k in left_out if not k.startswith(_head_keys(detected))]
    if left_out:
        warnings.warn(
            f"Loaded the ELECTRA encoder of {directory}; these head weights were not loaded: "
            + ", ".join(left_out),
            stacklevel=3,
        )
    model.eval()
    return model, head_state, json.loads(config_path.read_text(encoding="utf8"))


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
