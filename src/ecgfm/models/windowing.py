"""How a model reads a record, defined once: sliding windows and how their outputs combine.

Two levels, both here:

- **Windows inside the model's input.** A network trained on short crops (``info.window`` samples, e.g. 2.5 s) scores
  its input by sliding windows every ``stride`` samples (half a window unless set; the last window flush with the
  end) and takes the per-label maximum (or mean) of the window logits (Strodthoff et al. 2020). Validation during
  training, prediction (:class:`WindowedModel`, also what ONNX exports) and each ensemble member use these functions.
- **Segments of a long record.** A record longer than the model's input (``info.reading``: e.g. 10 s) is cut into
  input-sized segments over its full length (:func:`segments`), each segment is scored, and segment logits combine
  per label (:func:`combine_segments`): an event anywhere counts for beat-level statements (maximum), rhythm and
  morphology are judged over the whole strip (mean). A record of exactly the input length is one segment, so its
  score is what the model gives its input.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

AGGREGATES = ("max", "mean")


def default_stride(window: int) -> int:
    """Half a window: every moment of the record lies in two windows."""
    return max(window // 2, 1)


def window_starts(length: int, window: int, stride: int | None = None) -> list[int]:
    """Start samples of windows covering ``length`` samples; the last window ends at the record's end."""
    stride = stride or default_stride(window)
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def fit_length(x: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad (at the end) a record shorter than ``length`` samples; longer records are returned unchanged."""
    missing = length - x.shape[-1]
    return nn.functional.pad(x, (0, missing)) if missing > 0 else x


def sliding_windows(x: torch.Tensor, window: int | None, stride: int | None = None) -> torch.Tensor:
    """Cut ``(B, leads, T)`` into ``(B, n_windows, leads, window)``; ``window=None`` keeps the whole input."""
    if window is None:
        return x.unsqueeze(1)
    x = fit_length(x, window)
    return torch.stack([x[..., s:s + window] for s in window_starts(x.shape[-1], window, stride)], dim=1)


def aggregate(outputs: torch.Tensor, how: str, dim: int = 1) -> torch.Tensor:
    """Combine window outputs along ``dim`` by their maximum or mean."""
    if how not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {how!r}")
    return outputs.amax(dim) if how == "max" else outputs.mean(dim)


def windowed_logits(model: nn.Module, x: torch.Tensor, window: int | None, stride: int | None = None,
                    how: str = "max") -> torch.Tensor:
    """Record logits ``(B, labels)`` of ``model`` run on the sliding windows of ``x`` ``(B, leads, T)``."""
    windows = sliding_windows(x, window, stride)
    batch, n = windows.shape[:2]
    logits = model(windows.flatten(0, 1)).reshape(batch, n, -1)
    return aggregate(logits, how)


class WindowedModel(nn.Module):
    """A trained model plus its own windowing as one module: ``(B, leads, T)`` -> record logits ``(B, labels)``.

    What prediction runs and ONNX exports, so both score records exactly as validation did.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        info = model.info
        self.model = model
        self.window = int(info.window) if info.window else None
        self.stride = int(info.stride) if info.stride else None
        self.how = info.aggregate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return windowed_logits(self.model, x, self.window, self.stride, self.how)

    def with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Record logits and the record embedding (``forward_features`` averaged over the windows), in one pass for
        single networks (their head runs on each window's features); an ensemble's members need a second pass."""
        if hasattr(self.model, "members"):
            return self(x), aggregate(self._window_features(x), "mean")
        features = self._window_features(x)  # (B, windows, D)
        logits = self.model.forward_head(features.flatten(0, 1)).reshape(*features.shape[:2], -1)
        return aggregate(logits, self.how), aggregate(features, "mean")

    def _window_features(self, x: torch.Tensor) -> torch.Tensor:
        windows = sliding_windows(x, self.window, self.stride)
        return self.model.forward_features(windows.flatten(0, 1)).reshape(*windows.shape[:2], -1)


class RecordModel(nn.Module):
    """A whole record of any length -> record logits, differentiably: the model's input-sized segments over the
    record (:func:`segments`' rule), each scored by :class:`WindowedModel`, combined per label by the model's
    reading rule. What explanations attribute through, so they cover the whole record."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.windowed = WindowedModel(model)
        self.input_samples, self.stride, how = model.info.segment_rule()
        self.register_buffer("takes_max", torch.tensor([h == "max" for h in how]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_samples is None:
            return self.windowed(x)
        parts = sliding_windows(x, self.input_samples, self.stride)  # (B, segments, leads, input)
        logits = self.windowed(parts.flatten(0, 1)).reshape(*parts.shape[:2], -1)
        return torch.where(self.takes_max, logits.amax(1), logits.mean(1))


# -- dataset-level scoring (validation, embeddings) ---------------------------------------------------------------

def autocast_context(device: torch.device, amp: bool):
    """bf16 autocast on ``device`` when ``amp``, else a no-op context."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if amp else nullcontext()


def _records(items) -> list[torch.Tensor]:
    """DataLoader collate: items may be ``(x, y)`` or a bare ``x``; records may differ in length."""
    return [torch.as_tensor(item[0] if isinstance(item, (tuple, list)) else item, dtype=torch.float32)
            for item in items]


@torch.no_grad()
def windowed_outputs(model: nn.Module, dataset: Dataset, fn: Callable[[torch.Tensor], torch.Tensor],
                     window: int | None, stride: int | None, how: str = "max", batch_size: int = 256,
                     device: str | torch.device = "cpu", amp: bool = False, workers: int = 0) -> np.ndarray:
    """``fn`` (windows -> ``(n, D)``) on every window of every record of ``dataset``, combined per record: ``(N, D)``."""
    if how not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {how!r}")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=max(1, batch_size // 8), shuffle=False, num_workers=workers,
                        collate_fn=_records)
    results: list[torch.Tensor] = []
    try:
        for records in loader:
            pieces = [sliding_windows(x[None], window, stride)[0] for x in records]  # (n_windows, leads, window)
            outputs = _run_grouped(fn, [w for p in pieces for w in p], batch_size, device, amp)
            for part in torch.split(outputs, [len(p) for p in pieces]):
                results.append(aggregate(part, how, dim=0))
    finally:
        model.train(was_training)
    return torch.stack(results).numpy() if results else np.zeros((0, 0), dtype=np.float32)


def _run_grouped(fn, windows: list[torch.Tensor], batch_size: int, device: torch.device, amp: bool) -> torch.Tensor:
    """Forward windows in chunks of equal length (whole records may differ in length)."""
    outputs: list[torch.Tensor] = []
    i = 0
    while i < len(windows):
        j = i + 1
        while j < len(windows) and j - i < batch_size and windows[j].shape == windows[i].shape:
            j += 1
        with autocast_context(device, amp):
            outputs.extend(fn(torch.stack(windows[i:j]).to(device, non_blocking=True)).float().cpu())
        i = j
    return torch.stack(outputs)


_FROM_INFO: object = object()


def predict_logits(model: nn.Module, dataset: Dataset, window=_FROM_INFO, stride: int | None = None,
                   how: str | None = None, **kw) -> np.ndarray:
    """Record logits ``(N, labels)``; windowing from ``model.info`` (whole inputs without one) unless ``window`` is
    given (``None``: whole inputs)."""
    window, stride, how = _reading(model, window, stride, how)
    return windowed_outputs(model, dataset, model, window, stride, how, **kw)


def extract_features(model: nn.Module, dataset: Dataset, window=_FROM_INFO, stride: int | None = None,
                     **kw) -> np.ndarray:
    """Record embeddings ``(N, num_features)``: ``forward_features`` averaged over the model's windows."""
    window, stride, _ = _reading(model, window, stride, "mean")
    return windowed_outputs(model, dataset, model.forward_features, window, stride, "mean", **kw)


def _reading(model: nn.Module, window, stride, how) -> tuple[int | None, int | None, str]:
    """Window, stride and aggregation: as given, else from the model's info, else whole inputs and the maximum."""
    info = getattr(model, "info", None)
    if window is _FROM_INFO:
        window, stride = (info.window, info.stride) if info is not None else (None, None)
    return window, stride, how or (info.aggregate if info is not None else "max")


# -- segments of long records (numpy; shared by every backend) ----------------------------------------------------

def segments(array: np.ndarray, length: int, stride: int) -> np.ndarray:
    """Input-sized segments ``(S, leads, length)`` covering a preprocessed record ``(leads, T)`` over its whole length
    (zero-padded at the end when shorter than one input)."""
    n = array.shape[-1]
    if n < length:
        return np.pad(array, ((0, 0), (0, length - n)))[None]
    return np.stack([array[:, s:s + length] for s in window_starts(n, length, stride)])


def combine_segments(logits: np.ndarray, how: Sequence[str]) -> np.ndarray:
    """One record's logits from its segments' ``(S, labels)``: per label the maximum or the mean over segments."""
    how = np.asarray(how)
    return np.where(how == "max", logits.max(axis=0), logits.mean(axis=0)).astype(np.float32)
