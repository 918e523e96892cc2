"""Building blocks of the ELECTRA encoder: embeddings and one post-LayerNorm transformer layer.

Dropout is a per-call argument (``dropout=True/False``), not only module state: a module shared
between threads (one spaCy pipeline serving several threads) must never have its behaviour
changed by another thread's ``.train()``/``.eval()``. ``dropout=None`` follows ``self.training``,
which is what plain PyTorch code (the pretraining loop) expects.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ElectraConfig


def activation(name: str) -> Callable[[Tensor], Tensor]:
    """HF's activation names mapped onto torch functions (``gelu`` is the exact erf GELU)."""
    if name == "gelu":
        return F.gelu
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "relu":
        return F.relu
    if name in ("silu", "swish"):
        return F.silu
    raise ValueError(f"Unknown activation {name!r}.")


class ElectraEmbeddings(nn.Module):
    """Word + position + token-type embeddings, LayerNorm and dropout, at ``embedding_size``.

    Kept separate from the projection to the hidden width because RTD pretraining shares this
    module between generator and discriminator while each keeps its own projection.
    """

    def __init__(self, config: ElectraConfig) -> None:
        super().__init__()
        width = config.embedding_size
        self.word = nn.Embedding(config.vocab_size, width, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, width)
        self.token_type = nn.Embedding(config.type_vocab_size, width)
        self.layer_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.dropout_p = config.hidden_dropout_prob

    def forward(
        self, input_ids: Tensor, token_type_ids: Optional[Tensor] = None, *, dropout: Optional[bool] = None
    ) -> Tensor:
        length = input_ids.shape[1]
        if length > self.position.num_embeddings:
            raise ValueError(
                f"Sequence of {length} pieces exceeds max_position_embeddings="
                f"{self.position.num_embeddings}; split the input into windows."
            )
        positions = torch.arange(length, device=input_ids.device)
        x = self.word(input_ids) + self.position(positions)
        if token_type_ids is None:
            x = x + self.token_type.weight[0]
        else:
            x = x + self.token_type(token_type_ids)
        return F.dropout(self.layer_norm(x), self.dropout_p, training=_active(self, dropout))


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection and SDPA.

    The fused projection does one matrix multiply instead of three; HF's separate query/key/value
    weights are concatenated when a checkpoint is loaded and split again when it is exported.
    """

    def __init__(self, config: ElectraConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob

    def heads(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Queries, keys and values, each (batch, heads, length, head_dim)."""
        batch, length, _ = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def forward(self, x: Tensor, mask: Optional[Tensor], *, dropout: Optional[bool] = None) -> Tensor:
        batch, length, width = x.shape
        q, k, v = self.heads(x)
        context = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout_p if _active(self, dropout) else 0.0
        )
        return self.output(context.transpose(1, 2).reshape(batch, length, width))


class TransformerLayer(nn.Module):
    """BERT's post-LayerNorm layer: attention, add & norm, feed-forward, add & norm."""

    def __init__(self, config: ElectraConfig) -> None:
        super().__init__()
        self.attention = SelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout_p = config.hidden_dropout_prob
        self.act = activation(config.hidden_act)

    def forward(self, x: Tensor, mask: Optional[Tensor], *, dropout: Optional[bool] = None) -> Tensor:
        on = _active(self, dropout)
        x = self.attention_norm(x + F.dropout(self.attention(x, mask, dropout=on), self.dropout_p, training=on))
        h = self.output(self.act(self.intermediate(x)))
        return self.ffn_norm(x + F.dropout(h, self.dropout_p, training=on))


def _active(module: nn.Module, dropout: Optional[bool]) -> bool:
    """Dropout on or off for this call: the explicit argument, else the module's mode."""
    return module.training if dropout is None else dropout
