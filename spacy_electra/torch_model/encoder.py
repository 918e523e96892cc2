"""The ELECTRA encoder and its two pretraining heads (discriminator, generator)."""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import ElectraEmbeddings, TransformerLayer, activation
from .config import ElectraConfig


def key_padding_mask(attention_mask: Optional[Tensor]) -> Optional[Tensor]:
    """(batch, length) 1/0 mask -> boolean (batch, 1, 1, length) mask that SDPA broadcasts."""
    if attention_mask is None:
        return None
    return attention_mask.bool()[:, None, None, :]


def needed_mask(attention_mask: Tensor) -> Optional[Tensor]:
    """``attention_mask``, or None when it masks nothing (no padding in the chunk): SDPA without a
    mask may take its fused flash kernels (on GPUs; on this project's 2-core CPU the two paths
    timed within 3% of each other, 1 thread, 16 x 34 and 16 x 130 windows). A data-dependent
    branch, so for eager torch only, never inside a traced or exported graph (the ONNX backends
    always feed their mask)."""
    return None if bool(attention_mask.all()) else attention_mask


class ElectraEncoder(nn.Module):
    """Embeddings (+ projection to the hidden width when it differs) and the transformer stack.

    ``forward`` of the bare encoder returns the last hidden states; subclasses add a head and
    return its logits from ``forward`` while ``encode`` always gives hidden states.
    """

    kind = "encoder"

    def __init__(self, config: ElectraConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = ElectraEmbeddings(config)
        self.projection: Optional[nn.Linear] = (
            nn.Linear(config.embedding_size, config.hidden_size) if config.has_projection else None
        )
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_hidden_layers))
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def embed(
        self, input_ids: Tensor, token_type_ids: Optional[Tensor] = None, *, dropout: Optional[bool] = None
    ) -> Tensor:
        x = self.embeddings(input_ids, token_type_ids, dropout=dropout)
        return self.projection(x) if self.projection is not None else x

    def encode_layers(
        self,
        input_ids: Tensor,
        attention_mask: Optional[Tensor] = None,
        token_type_ids: Optional[Tensor] = None,
        *,
        dropout: Optional[bool] = None,
    ) -> List[Tensor]:
        """Embedding output followed by every layer's output (``num_hidden_layers + 1`` tensors).
        ``dropout`` True/False overrides the module's train/eval mode for this call only."""
        mask = key_padding_mask(attention_mask)
        outputs = [self.embed(input_ids, token_type_ids, dropout=dropout)]
        for layer in self.layers:
            outputs.append(layer(outputs[-1], mask, dropout=dropout))
        return outputs

    def encode(
        self,
        input_ids: Tensor,
        attention_mask: Optional[Tensor] = None,
        token_type_ids: Optional[Tensor] = None,
        *,
        dropout: Optional[bool] = None,
    ) -> Tensor:
        """Last hidden states, (batch, length, hidden_size). ``dropout`` True/False overrides the
        module's train/eval mode for this call only (thread-safe inference, see layers.py)."""
        mask = key_padding_mask(attention_mask)
        x = self.embed(input_ids, token_type_ids, dropout=dropout)
        for layer in self.layers:
            x = layer(x, mask, dropout=dropout)
        return x

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Optional[Tensor] = None,
        token_type_ids: Optional[Tensor] = None,
    ) -> Tensor:
        return self.encode(input_ids, attention_mask, token_type_ids)


class DiscriminatorHead(nn.Module):
    """One replaced-token logit per position (1 = replaced, HF's convention)."""

    def __init__(self, config: ElectraConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.prediction = nn.Linear(config.hidden_size, 1)
        self.act = activation(config.hidden_act)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.prediction(self.act(self.dense(hidden))).squeeze(-1)


class GeneratorHead(nn.Module):
    """Masked-LM head: dense to the embedding width, GELU, LayerNorm, then the tied word matrix."""

    def __init__(self, config: ElectraConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)
        self.layer_norm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: Tensor, word_embeddings: Tensor) -> Tensor:
        x = self.layer_norm(F.gelu(self.dense(hidden)))
        return F.linear(x, word_embeddings, self.bias)


class ElectraDiscriminator(ElectraEncoder):
    kind = "discriminator"

    def __init__(self, config: ElectraConfig) -> None:
        super().__init__(config)
        self.head = DiscriminatorHead(config)
        self.head.apply(self._init_weights)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Optional[Tensor] = None,
        token_type_ids: Optional[Tensor] = None,
    ) -> Tensor:
        """Replaced-token logits, (batch, length)."""
        return self.head(self.encode(input_ids, attention_mask, token_type_ids))


class ElectraGenerator(ElectraEncoder):
    kind = "generator"

    def __init__(self, config: ElectraConfig) -> None:
        super().__init__(config)
        self.head = GeneratorHead(config)
        self.head.apply(self._init_weights)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Optional[Tensor] = None,
        token_type_ids: Optional[Tensor] = None,
        *,
        positions: Optional[Tensor] = None,
    ) -> Tensor:
        """MLM logits: (batch, length, vocab), or (n, vocab) at the ``positions`` of a boolean
        (batch, length) mask, which skips the vocabulary projection everywhere else (the RTD
        trainer only needs logits at masked positions)."""
        hidden = self.encode(input_ids, attention_mask, token_type_ids)
        if positions is not None:
            hidden = hidden[positions]
        return self.head(hidden, self.embeddings.word.weight)


MODEL_CLASSES = {
    "encoder": ElectraEncoder,
    "discriminator": ElectraDiscriminator,
    "generator": ElectraGenerator,
}
