"""AdamW with the reference's weight-decay exclusions and warmup x linear-decay schedule, and
layer-wise learning-rate decay groups for fine-tuning an encoder in a plain torch loop."""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import nn

from .config import TrainingSettings


def no_decay(name: str) -> bool:
    """LayerNorm weights and all biases are not decayed (as in BERT and ELECTRA)."""
    parts = name.split(".")
    return parts[-1] == "bias" or (len(parts) > 1 and "norm" in parts[-2])


def build_optimizer(model: nn.Module, settings: TrainingSettings, *, fused: bool = False) -> torch.optim.AdamW:
    decay: List[nn.Parameter] = []
    plain: List[nn.Parameter] = []
    for name, param in model.named_parameters():  # shared parameters are listed once
        if param.requires_grad:
            (plain if no_decay(name) else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": settings.weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]
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
