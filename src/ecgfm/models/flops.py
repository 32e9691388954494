"""Model cost: parameter counts and FLOPs measured with ``torch.utils.flop_counter.FlopCounterMode``."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, input_shape: Sequence[int] = (1, 12, 1000)) -> int:
    """FLOPs of one forward pass on a zero input of ``input_shape`` (PyTorch counts a multiply-add as 2 FLOPs).

    The default shape is one 10-s 12-lead ECG at 100 Hz. The model is run in eval mode on CPU without gradients
    and its training/eval mode is restored afterwards.
    """
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(torch.zeros(tuple(input_shape), device=device))
        return int(counter.get_total_flops())
    finally:
        model.train(was_training)
