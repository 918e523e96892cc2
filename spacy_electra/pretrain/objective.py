"""The two pretraining objectives as single modules, so one DistributedDataParallel wrapper and
one optimizer see every parameter once (shared embeddings included).

``forward`` returns loss *sums* plus counts; the trainer divides by counts over the whole global
batch, which makes gradient accumulation and any number of processes give the same update.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..torch_model import ElectraConfig, ElectraDiscriminator, ElectraGenerator
from .masking import Masked, gumbel_max_sample, replace_tokens


class ReplacedTokenDetection(nn.Module):
    """ELECTRA: a small generator fills masked positions, the discriminator spots replacements.

    The generator uses the discriminator's embedding module (word, position and type embeddings
    and their LayerNorm) and its output layer is the word-embedding matrix; each network keeps its
    own projection to its hidden width.
    """

    def __init__(self, disc_config: ElectraConfig, gen_config: ElectraConfig, discriminator_weight: float = 50.0):
        super().__init__()
        self.discriminator = ElectraDiscriminator(disc_config)
        self.generator = ElectraGenerator(gen_config)
        self.generator.embeddings = self.discriminator.embeddings
        self.discriminator_weight = discriminator_weight

    def forward(self, masked: Masked, ids: Tensor, attention_mask: Tensor, types: Tensor) -> Dict[str, Tensor]:
        gen_logits = self.generator(masked.input_ids, attention_mask, types, positions=masked.selected)
        gen_logits = gen_logits.float()
        gen_loss = F.cross_entropy(gen_logits, masked.labels, reduction="sum")
        sampled = gumbel_max_sample(gen_logits)
        corrupted, replaced = replace_tokens(ids, masked.selected, sampled)
        disc_logits = self.discriminator(corrupted, attention_mask, types).float()
        # Masks as weights rather than boolean indexing: no host-device sync on GPU.
        active = attention_mask.to(disc_logits.dtype)
        disc_loss = (F.binary_cross_entropy_with_logits(disc_logits, replaced.float(), reduction="none") * active).sum()
        with torch.no_grad():
            on = attention_mask.bool()
            predicted = disc_logits > 0
            stats = torch.stack([
                (gen_logits.argmax(-1) == masked.labels).sum(),
                (sampled == masked.labels).sum(),
                ((predicted == replaced) & on).sum(),
                (replaced & on).sum(),
                (predicted & replaced & on).sum(),
            ]).float()
        return {"gen_loss_sum": gen_loss, "disc_loss_sum": disc_loss, "stats": stats}


class MaskedLanguageModel(nn.Module):
    """The control: a same-size masked LM (a generator with the discriminator's shape) trained
    with the same masking, data, optimizer and schedule."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.generator = ElectraGenerator(config)

    def forward(self, masked: Masked, ids: Tensor, attention_mask: Tensor, types: Tensor) -> Dict[str, Tensor]:
        gen_logits = self.generator(masked.input_ids, attention_mask, types, positions=masked.selected).float()
        gen_loss = F.cross_entropy(gen_logits, masked.labels, reduction="sum")
        with torch.no_grad():
            stats = torch.stack([(gen_logits.argmax(-1) == masked.labels).sum()] + [gen_loss.new_zeros(())] * 4).float()
        return {"gen_loss_sum": gen_loss, "disc_loss_sum": gen_loss.new_zeros(()), "stats": stats}
