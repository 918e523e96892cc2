"""The one name table between Hugging Face ELECTRA state dicts and ours, both directions.

Our module names differ from HF's (fused QKV, shorter names), so every tensor goes through
``name_pairs``; nothing else in the package knows HF's key layout. BERT-layout checkpoints
(``bert.`` prefix, TF-era ``gamma``/``beta``) normalise onto the same names.
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import torch
from torch import Tensor

from ..torch_model.config import ElectraConfig
from ..torch_model.encoder import ElectraEncoder
from .errors import CheckpointError

StateDict = Dict[str, Tensor]

# Buffers that older `transformers` versions saved; they carry no weights.
IGNORED = re.compile(r"(^|\.)(position_ids|token_type_ids)$")
# Heads of fine-tuned HF models: we take the encoder and say which weights were left behind.
# BERT's pooler and pretraining heads (``cls.``) are left behind the same way.
FINETUNED_HEADS = re.compile(r"^(classifier|qa_outputs|sequence_summary|lm_head|pooler|cls)\.")
# config.json model types whose encoder has our layout; the value is the HF task-model prefix.
MODEL_TYPES = ("electra", "bert")
HF_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.")
# torch dtypes under their safetensors names, so .bin and .safetensors get the same dtype check.
DTYPE_NAMES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}



# -- name table -------------------------------------------------------------------------------
def name_pairs(config: ElectraConfig, kind: str) -> Iterator[Tuple[str, str]]:
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


def qkv_names(i: int) -> Tuple[str, List[str]]:
    return f"layers.{i}.attention.qkv", [
        f"encoder.layer.{i}.attention.self.{part}" for part in ("query", "key", "value")
    ]


def hf_prefix(kind: str) -> str:
    return "" if kind == "encoder" else "electra."


def head_keys(kind: str) -> Tuple[str, ...]:
    return {
        "discriminator": ("discriminator_predictions.",),
        "generator": ("generator_predictions.", "generator_lm_head."),
    }.get(kind, ())


# -- HF state dict -> ours --------------------------------------------------------------------
def normalise_name(key: str, prefix: str = "electra.") -> Optional[str]:
    """Strip the task-model prefix (``electra.``/``bert.``), rename TF-era ``gamma``/``beta``;
    ``None`` for old buffers that carry no weights."""
    if IGNORED.search(key):
        return None
    if key.startswith(prefix):
        key = key[len(prefix) :]
    key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
    return re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)


def normalise_names(keys: Iterable[str], prefix: str = "electra.") -> Dict[str, str]:
    """Original key -> normalised name, without the ignored buffers."""
    names = {key: normalise_name(key, prefix) for key in keys}
    return {key: name for key, name in names.items() if name is not None}


def normalise_hf_keys(state: StateDict, prefix: str = "electra.") -> StateDict:
    return {name: state[key] for key, name in normalise_names(state, prefix).items()}


def detect_kind_from_names(names: Dict[str, str]) -> str:
    found = set(names.values())
    if "discriminator_predictions.dense.weight" in found:
        return "discriminator"
    if "generator_predictions.dense.weight" in found:
        return "generator"
    return "encoder"


def detect_kind(hf_state: StateDict, prefix: str = "electra.") -> str:
    return detect_kind_from_names(normalise_names(hf_state, prefix))


def hf_to_ours(
    hf_state: StateDict, config: ElectraConfig, kind: str, prefix: str = "electra."
) -> Tuple[StateDict, List[str]]:
    """Map an HF state dict onto our names. Returns our state dict and the HF keys left unused
    because they belong to another head. Raises ``CheckpointError`` for missing or unknown keys."""
    remaining = normalise_hf_keys(hf_state, prefix)
    ours: StateDict = {}
    missing: List[str] = []
    for name, hf_name in name_pairs(config, kind):
        if hf_name in remaining:
            ours[name] = remaining.pop(hf_name)
        else:
            missing.append(hf_name)
    for i in range(config.num_hidden_layers):
        name, parts = qkv_names(i)
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
        if FINETUNED_HEADS.match(k) or k.startswith(("discriminator_predictions.", "generator_"))
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
    prefix = hf_prefix(model.kind)
    hf: StateDict = {}
    for name, hf_name in name_pairs(model.config, model.kind):
        key = hf_name if hf_name.startswith(head_keys(model.kind)) else prefix + hf_name
        hf[key] = state[name].detach().cpu().contiguous()
    for i in range(model.config.num_hidden_layers):
        name, parts = qkv_names(i)
        for param in ("weight", "bias"):
            for part, chunk in zip(parts, state[f"{name}.{param}"].chunk(3, dim=0)):
                hf[f"{prefix}{part}.{param}"] = chunk.detach().cpu().contiguous()
    return hf

