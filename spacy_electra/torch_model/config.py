"""Typed ELECTRA hyper-parameters with a lossless Hugging Face ``config.json`` round trip."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu", "silu", "swish")

# Architectures we write into config.json, per model kind, so HF picks the right class.
HF_ARCHITECTURES = {
    "discriminator": "ElectraForPreTraining",
    "generator": "ElectraForMaskedLM",
    "encoder": "ElectraModel",
}

# Shape fields: positive integers. The bound only stops absurd values early (the largest released
# vocabularies are ~250k, hidden sizes ~8k); shapes are then cross-checked against the weights.
_POSITIVE_INTS = (
    "vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "intermediate_size", "max_position_embeddings", "type_vocab_size",
)
_MAX_INT = 2**31 - 1
# (name, inclusive low, exclusive high); layer_norm_eps must also be > 0.
_FLOAT_RANGES = (
    ("hidden_dropout_prob", 0.0, 1.0),
    ("attention_probs_dropout_prob", 0.0, 1.0),
    ("initializer_range", 0.0, 1e3),
    ("layer_norm_eps", 0.0, 1.0),
)


@dataclass
class ElectraConfig:
    """Shape of one ELECTRA network (discriminator, generator or bare encoder).

    Field names follow HF's ``ElectraConfig`` so ``config.json`` maps one to one; keys we do not
    model (``summary_type``, ``id2label``...) are kept in ``extra`` and written back unchanged.
    """

    vocab_size: int = 30522
    embedding_size: int = 128
    hidden_size: int = 256
    num_hidden_layers: int = 12
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_values()
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(
                f"hidden_act={self.hidden_act!r} is not supported; use one of {', '.join(ACTIVATIONS)}."
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads}); change one of them."
            )
        position_type = self.extra.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise ValueError(
                f"position_embedding_type={position_type!r} is not supported (only 'absolute', "
                "which every released ELECTRA checkpoint uses)."
            )

    def _check_values(self) -> None:
        """Types and ranges, checked before anything divides by or allocates from them: a
        config.json is untrusted input, and ``num_attention_heads: 0`` or ``vocab_size: 1e8``
        must be one clear error, not a ZeroDivisionError or gigabytes of embeddings."""
        for name in _POSITIVE_INTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name}={value!r} must be an integer.")
            if not 1 <= value <= _MAX_INT:
                raise ValueError(f"{name}={value} must be between 1 and {_MAX_INT}.")
        pad = self.pad_token_id
        if isinstance(pad, bool) or not isinstance(pad, int) or not 0 <= pad < self.vocab_size:
            raise ValueError(f"pad_token_id={pad!r} must be an integer in [0, vocab_size={self.vocab_size}).")
        if self.num_attention_heads > self.hidden_size:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} exceeds hidden_size={self.hidden_size}."
            )
        for name, low, high in _FLOAT_RANGES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
                raise ValueError(f"{name}={value!r} must be a number in [{low}, {high}).")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps={self.layer_norm_eps!r} must be positive.")
        if not isinstance(self.hidden_act, str):
            raise ValueError(f"hidden_act={self.hidden_act!r} must be a string.")
        if not isinstance(self.extra, dict):
            raise ValueError("extra must be a dict of the config.json keys ELECTRA does not use.")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def has_projection(self) -> bool:
        """ELECTRA-small embeds at width 128 and projects to the hidden width 256."""
        return self.embedding_size != self.hidden_size

    # -- HF round trip -------------------------------------------------------------------------
    @classmethod
    def from_hf_dict(cls, data: Dict[str, Any]) -> "ElectraConfig":
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        if "embedding_size" not in known and "hidden_size" in known:
            known["embedding_size"] = known["hidden_size"]
        if known.get("pad_token_id") is None:
            known.pop("pad_token_id", None)
        return cls(**known, extra=extra)

    def to_hf_dict(self, kind: Optional[str] = None) -> Dict[str, Any]:
        data = dict(self.extra)
        data.update({k: v for k, v in dataclasses.asdict(self).items() if k != "extra"})
        data["model_type"] = "electra"
        data.setdefault("position_embedding_type", "absolute")
        if kind is not None:
            data["architectures"] = [HF_ARCHITECTURES[kind]]
        return data
