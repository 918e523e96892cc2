"""AdamW with the reference's weight-decay exclusions and warmup x linear-decay schedule, and
layer-wise learning-rate decay groups for fine-tuning an encoder in a plain torch loop."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from .config import TrainingSettings


def no_decay(name: str) -> bool:
    """LayerNorm weights and all biases are not decayed (as in BERT and ELECTRA)."""
    parts = name.split(".")
    return parts[-1] == "bias" or (len(parts) > 1 and "norm" in parts[-2])


class ReferenceAdam(torch.optim.Optimizer):
    """google-research/electra's ``AdamWeightDecayOptimizer`` (BERT's): Adam moments without bias
    correction, and decoupled weight decay added to the update:
    ``p -= lr * (m / (sqrt(v) + eps) + weight_decay * p)``. Kept beside torch's AdamW because the
    missing correction changes the first steps (the update is ``(1 - beta1) / sqrt(1 - beta2)``
    = 3.2x smaller at step 1 for the default betas, and grows to AdamW's as the moments fill),
    which acts as an extra warmup: the from-scratch recipe can be compared with and without it."""

    def __init__(self, params: Any, lr: float, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                update = m / (v.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                p.add_(update, alpha=-group["lr"])
        return loss


def build_optimizer(model: nn.Module, settings: TrainingSettings, *, fused: bool = False) -> torch.optim.Optimizer:
    decay: List[nn.Parameter] = []
    plain: List[nn.Parameter] = []
    for name, param in model.named_parameters():  # shared parameters are listed once
        if param.requires_grad:
            (plain if no_decay(name) else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": settings.weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]
    if settings.optimizer == "adam_reference":
        return ReferenceAdam(groups, lr=settings.learning_rate, betas=(settings.adam_beta1, settings.adam_beta2),
                             eps=settings.adam_eps)
    kwargs = {"fused": True} if fused else {}
    return torch.optim.AdamW(
        groups, lr=settings.learning_rate, betas=(settings.adam_beta1, settings.adam_beta2),
        eps=settings.adam_eps, **kwargs,
    )


def lr_factor(step: int, warmup_steps: int, max_steps: int) -> float:
    """Linear warmup multiplied by linear decay to zero at ``max_steps`` (the reference's
    product form, so the peak is slightly below the nominal rate)."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    return warm * max(0.0, 1.0 - step / max_steps)


def build_scheduler(optimizer: torch.optim.Optimizer, settings: TrainingSettings) -> torch.optim.lr_scheduler.LambdaLR:
    warmup, total = settings.warmup, settings.max_steps
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, warmup, total))


def layer_decay_groups(
    model: nn.Module, *, lr: float, decay: float, n_layers: int, encoder_prefix: str = "encoder.",
    weight_decay: float = 0.01,
) -> List[dict]:
    """AdamW parameter groups with ELECTRA's layer-wise learning-rate decay (Clark et al. 2020):
    the task head (every parameter outside ``encoder_prefix``) gets ``lr``, transformer layer
    ``i`` (0-based of ``n_layers``) ``lr * decay ** (n_layers - i)``, and the rest of the encoder
    (embeddings and their projection) ``lr * decay ** (n_layers + 1)``: layers near the input
    change least. Biases and LayerNorm weights get no weight decay (:func:`no_decay`).

    This is for pure-torch loops (benchmarks); spaCy training configs get the same decay from
    the Thinc optimizer schedule of ``spacy_electra.layers.transformer``."""
    layers = f"{encoder_prefix}layers."
    groups: Dict[Tuple[float, float], List[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith(layers):
            depth = n_layers - int(name[len(layers):].split(".")[0])
        elif name.startswith(encoder_prefix):
            depth = n_layers + 1
        else:
            depth = 0
        key = (lr * decay ** depth, 0.0 if no_decay(name) else weight_decay)
        groups.setdefault(key, []).append(param)
    return [{"params": params, "lr": group_lr, "weight_decay": wd} for (group_lr, wd), params in groups.items()]
