"""The two pretraining objectives as single modules, so one DistributedDataParallel wrapper and
one optimizer see every parameter once (shared embeddings included).

``forward`` returns loss *sums* plus counts; the trainer divides by counts over the whole global
batch, which makes gradient accumulation and any number of processes give the same update.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..torch_model import ElectraConfig, ElectraDiscriminator, ElectraGenerator
from .masking import Masked, gumbel_max_sample, replace_tokens

# The discriminator's ROC AUC is logged beside its loss and prior: the loss can sit at the prior
# while the ranking of replaced over original tokens already improves. Exact AUC needs every
# score; histograms of the replaced and the original tokens' probabilities over fixed bins add up
# across micro-batches, steps and processes like the other counts (no host sync, no list of
# scores), and give the AUC up to ties inside a bin (counted half, as rank AUC counts ties).
AUC_BINS = 100


def score_histograms(logits: Tensor, replaced: Tensor, on: Tensor) -> Tensor:
    """Counts per probability bin: replaced tokens' (AUC_BINS), then original tokens' (AUC_BINS)."""
    bins = (torch.sigmoid(logits.float()) * AUC_BINS).long().clamp_(0, AUC_BINS - 1).flatten()
    pos = (replaced & on).flatten().float()
    neg = (~replaced & on).flatten().float()
    hist = logits.new_zeros(2 * AUC_BINS, dtype=torch.float32)
    hist.scatter_add_(0, bins, pos)
    hist.scatter_add_(0, bins + AUC_BINS, neg)
    return hist


def histogram_auc(pos: Tensor, neg: Tensor) -> Optional[float]:
    """ROC AUC from per-bin counts of positives and negatives (bins in ascending score order):
    P(score of a positive > score of a negative), a tie (same bin) counting half. None without
    positives or negatives (the log is JSON, which has no NaN)."""
    n_pos, n_neg = float(pos.sum()), float(neg.sum())
    if n_pos == 0 or n_neg == 0:
        return None
    below = torch.cumsum(neg, 0) - neg  # negatives in lower bins
    return float((pos * (below + 0.5 * neg)).sum()) / (n_pos * n_neg)


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

    def forward(
        self, masked: Masked, ids: Tensor, attention_mask: Tensor, types: Tensor, temperature: float = 1.0
    ) -> Dict[str, Tensor]:
        """Loss sums and counts; replacements are sampled from ``softmax(logits / temperature)``."""
        gen_logits = self.generator(masked.input_ids, attention_mask, types, positions=masked.selected)
        gen_logits = gen_logits.float()
        gen_loss = F.cross_entropy(gen_logits, masked.labels, reduction="sum")
        sampled = gumbel_max_sample(gen_logits / temperature)
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
            stats = torch.cat([stats, score_histograms(disc_logits, replaced, on)])
        return {"gen_loss_sum": gen_loss, "disc_loss_sum": disc_loss, "stats": stats}


class MaskedLanguageModel(nn.Module):
    """The control: a same-size masked LM (a generator with the discriminator's shape) trained
    with the same masking, data, optimizer and schedule."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.generator = ElectraGenerator(config)

    def forward(
        self, masked: Masked, ids: Tensor, attention_mask: Tensor, types: Tensor, temperature: float = 1.0
    ) -> Dict[str, Tensor]:
        """Loss sums and counts; ``temperature`` is accepted for a common signature and unused."""
        gen_logits = self.generator(masked.input_ids, attention_mask, types, positions=masked.selected).float()
        gen_loss = F.cross_entropy(gen_logits, masked.labels, reduction="sum")
        with torch.no_grad():
            stats = torch.stack([(gen_logits.argmax(-1) == masked.labels).sum()] + [gen_loss.new_zeros(())] * 4).float()
            stats = torch.cat([stats, stats.new_zeros(2 * AUC_BINS)])
        return {"gen_loss_sum": gen_loss, "disc_loss_sum": gen_loss.new_zeros(()), "stats": stats}
