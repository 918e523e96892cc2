"""Dynamic masking and replacement sampling for replaced-token detection.

Kept free of model code so the invariants (which positions may be masked, how replacements are
drawn, what counts as replaced) are testable on their own.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor


class Masked(NamedTuple):
    input_ids: Tensor  # generator input: selected positions are [MASK] (or kept)
    selected: Tensor  # bool (batch, length): positions the generator predicts
    labels: Tensor  # original ids at the selected positions, (n_selected,)


def token_types(ids: Tensor, sep_id: int, pad_id: int) -> Tensor:
    """Segment ids of ``[CLS] A [SEP] B [SEP]`` rows: 0 up to and including the first [SEP],
    1 after it, 0 on padding."""
    is_sep = (ids == sep_id).long()
    after_first = (is_sep.cumsum(1) - is_sep) >= 1
    return (after_first & (ids != pad_id)).long()


def candidate_mask(ids: Tensor, special_ids: Sequence[int]) -> Tensor:
    """Positions that may be masked: everything but padding, [CLS] and [SEP]."""
    out = torch.ones_like(ids, dtype=torch.bool)
    for special in special_ids:
        out &= ids != special
    return out


def mask_tokens(
    ids: Tensor,
    *,
    mask_id: int,
    special_ids: Sequence[int],
    mask_prob: float = 0.15,
    mask_token_prob: float = 0.85,
    generator: Optional[torch.Generator] = None,
) -> Masked:
    """Select ``round(mask_prob * n)`` candidate positions per row (at least one when the row
    has any), uniformly at random; replace ``mask_token_prob`` of them by [MASK] and keep the
    rest unchanged (ELECTRA uses no random-token replacement: the generator does that job)."""
    candidates = candidate_mask(ids, special_ids)
    n_candidates = candidates.sum(1)
    n_select = torch.clamp(torch.round(n_candidates.float() * mask_prob).long(), min=1)
    n_select = torch.minimum(n_select, n_candidates)
    scores = torch.rand(ids.shape, generator=generator, device=ids.device)
    scores = scores.masked_fill(~candidates, 2.0)  # non-candidates sort last
    rank = scores.argsort(1).argsort(1)
    selected = rank < n_select[:, None]
    use_mask = torch.rand(ids.shape, generator=generator, device=ids.device) < mask_token_prob
    input_ids = torch.where(selected & use_mask, torch.full_like(ids, mask_id), ids)
    return Masked(input_ids, selected, ids[selected])


def gumbel_max_sample(logits: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """One token per row drawn from ``softmax(logits)`` (temperature 1) by the Gumbel-max trick.

    Runs in fp32 whatever the autocast dtype (``-log(-log(u))`` overflows in fp16) and without
    gradient: the discriminator's loss never flows back into the generator through sampling.
    """
    with torch.no_grad():
        logits = logits.detach().float()
        u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=torch.float32)
        tiny = torch.finfo(torch.float32).tiny
        exponential = -torch.log(u.clamp_(min=tiny))
        gumbel = -torch.log(exponential.clamp_(min=tiny))
        return (logits + gumbel).argmax(-1)


def replace_tokens(ids: Tensor, selected: Tensor, sampled: Tensor) -> tuple:
    """Discriminator input (originals with samples at the selected positions) and its labels:
    1 where the token differs from the original. A sample that equals the original is labelled
    original, as in the paper."""
    corrupted = ids.masked_scatter(selected, sampled.to(ids.dtype))  # row-major, as ids[selected]
    return corrupted, (corrupted != ids)
