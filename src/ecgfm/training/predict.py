"""Test-time aggregation: run a model over sliding windows of each record and combine the window outputs.

Models are trained on short random crops (2.5 s by default); a whole record is scored by cutting it into windows
of the same length every ``stride`` samples (half a window by default, the last window flush with the record's end)
and taking the per-label maximum (or mean) of the window logits, as in Strodthoff et al. 2020. Embeddings average
``forward_features`` over the windows.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ecgfm.training.data import fit_length, window_starts


def _split_item(item):
    """Dataset items may be ``(x, y)`` or a bare ``x``."""
    return item[0] if isinstance(item, (tuple, list)) else item


def _collate_records(items):
    return [torch.as_tensor(_split_item(item), dtype=torch.float32) for item in items]


def autocast_context(device: torch.device, amp: bool):
    """bf16 autocast on the given device when ``amp``, else a no-op context."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if amp else nullcontext()


@torch.no_grad()
def windowed_outputs(model: nn.Module, dataset: Dataset, fn: Callable[[torch.Tensor], torch.Tensor],
                     window: int | None, stride: int | None, aggregate: str = "max", batch_size: int = 256,
                     device: str | torch.device = "cpu", amp: bool = False, workers: int = 0) -> np.ndarray:
    """Apply ``fn`` (a batch of windows -> (n, D)) to every window of every record; aggregate per record -> (N, D)."""
    if aggregate not in ("max", "mean"):
        raise ValueError(f"aggregate must be 'max' or 'mean', got {aggregate!r}")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    records_per_batch = max(1, batch_size // 8)
    loader = DataLoader(dataset, batch_size=records_per_batch, shuffle=False, num_workers=workers,
                        collate_fn=_collate_records)
    results: list[torch.Tensor] = []
    try:
        for records in loader:
            windows, owners = [], []
            for r, x in enumerate(records):
                if window is None:
                    pieces = [x]
                else:
                    x = fit_length(x, window)
                    pieces = [x[..., s:s + window] for s in window_starts(x.shape[-1], window, stride)]
                windows.extend(pieces)
                owners.extend([r] * len(pieces))
            outputs = _run_grouped(fn, windows, batch_size, device, amp)
            owners_t = torch.tensor(owners)
            for r in range(len(records)):
                out = outputs[owners_t == r]
                results.append(out.amax(dim=0) if aggregate == "max" else out.mean(dim=0))
    finally:
        model.train(was_training)
    if not results:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.stack(results).numpy()


def _run_grouped(fn, windows: list[torch.Tensor], batch_size: int, device: torch.device, amp: bool) -> torch.Tensor:
    """Forward windows in chunks of equal length (whole records may differ in length)."""
    outputs: list[torch.Tensor | None] = [None] * len(windows)
    i = 0
    while i < len(windows):
        j = i + 1
        while j < len(windows) and j - i < batch_size and windows[j].shape == windows[i].shape:
            j += 1
        batch = torch.stack(windows[i:j]).to(device, non_blocking=True)
        with autocast_context(device, amp):
            out = fn(batch).float().cpu()
        outputs[i:j] = list(out)
        i = j
    return torch.stack(outputs)


def predict_logits(model: nn.Module, dataset: Dataset, window: int | None = 250, stride: int | None = None,
                   aggregate: str = "max", **kw) -> np.ndarray:
    """Record-level logits ``(N, labels)``: window logits aggregated by max or mean (see module docstring)."""
    return windowed_outputs(model, dataset, model, window, stride, aggregate, **kw)


def extract_features(model: nn.Module, dataset: Dataset, window: int | None = 250, stride: int | None = None,
                     **kw) -> np.ndarray:
    """Record embeddings ``(N, model.num_features)``: ``forward_features`` averaged over the sliding windows."""
    return windowed_outputs(model, dataset, model.forward_features, window, stride, "mean", **kw)
