"""Learning-rate schedules (stepped once per optimiser step)."""
from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR


def build_scheduler(optimizer: torch.optim.Optimizer, name: str, total_steps: int, max_lr: float,
                    warmup_frac: float = 0.3) -> LRScheduler:
    """One-cycle (fastai's ``fit_one_cycle``: cosine warm-up from lr/25 then cosine anneal to ~0, momentum
    cycled inversely), warm-up + cosine, or constant learning rate over ``total_steps`` optimiser steps."""
    total_steps = max(int(total_steps), 1)
    if name == "onecycle":
        return OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=max(warmup_frac, 1e-3),
                          anneal_strategy="cos", div_factor=25.0, final_div_factor=1e4)
    if name == "cosine":
        warmup = int(round(warmup_frac * total_steps))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(total_steps - warmup, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

        return LambdaLR(optimizer, factor)
    if name == "constant":
        return LambdaLR(optimizer, lambda step: 1.0)
    raise ValueError(f"unknown schedule {name!r}; use onecycle, cosine or constant")
