"""AdamW with CLIP's parameter groups, and a learning rate with linear warm-up then cosine decay."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def param_groups(named: Iterable[tuple[str, torch.nn.Parameter]], weight_decay: float) -> list[dict]:
    """Weight decay on matrices only, as CLIP does: not on biases, norms' gains, the class embedding or
    the temperature (decaying those pulls them towards zero for no benefit)."""
    decay, no_decay = [], []
    for name, parameter in named:
        if not parameter.requires_grad:
            continue
        skip = parameter.ndim < 2 or name.endswith("logit_scale")
        (no_decay if skip else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based): linear from 1/warmup up to 1 over
    ``warmup`` steps, then a cosine down to ``min_ratio`` at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup - 1)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(
    named: Iterable[tuple[str, torch.nn.Parameter]],
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.98),
    eps: float = 1e-6,
) -> torch.optim.AdamW:
    """AdamW with CLIP's betas and epsilon (suited to large batches of a contrastive loss)."""
    return torch.optim.AdamW(param_groups(named, weight_decay), lr=lr, betas=betas, eps=eps)


def make_schedule(
    optimizer: torch.optim.Optimizer, total: int, warmup: int, min_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, total, warmup, min_ratio))
