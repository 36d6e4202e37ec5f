"""Optimisation: weight-decay parameter groups for any network, and the learning-rate schedule."""
from __future__ import annotations

import math

import torch
from torch import nn

# Modules whose `weight` is a matrix (or a stack of them) that weight decay should shrink.
DECAYED_LAYERS = (nn.Linear, nn.modules.conv._ConvNd)


def param_groups(module: nn.Module) -> list[dict]:
    """Two parameter groups: the weights of linear and convolution layers, which take the
    optimizer's own weight decay, and everything else (norms, biases, embeddings, tokens) with
    none."""
    decayed = {id(m.weight) for m in module.modules() if isinstance(m, DECAYED_LAYERS)}
    params = [p for p in module.parameters() if p.requires_grad]
    return [{"params": [p for p in params if id(p) in decayed]},
            {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0}]


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float,
                  min_lr_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over `warmup_fraction` of the steps, then cosine decay to `min_lr_ratio` x lr."""
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
