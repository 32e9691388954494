"""The deployable network: a trained model plus its test-time sliding-window aggregation, as one ``nn.Module``.

Models are trained on short crops (``info.window`` samples) and score a whole record by the per-label maximum (or mean)
of the logits of sliding windows (``ecgfm.training.predict``). Wrapping that in a module keeps PyTorch and ONNX
inference identical: the ONNX export traces this module, windows included, so the ``.onnx`` file maps a preprocessed
batch ``(B, leads, samples)`` to record logits ``(B, labels)`` just like :meth:`InferenceModule.forward`.
"""
from __future__ import annotations

import torch
from torch import nn

from ecgfm.training.data import sliding_windows


class InferenceModule(nn.Module):
    """``(B, leads, samples)`` -> record logits ``(B, labels)``, with the model's window/stride/aggregate settings.

    The windows are cut by :func:`ecgfm.training.data.sliding_windows` (the trainer's own windowing; half-window
    stride when ``info.stride`` is unset, the same default as :func:`ecgfm.training.predict.predict_logits`), so
    prediction scores records exactly as validation did; ``tests/test_predict.py`` checks the two agree.
    """

    def __init__(self, model: nn.Module, info):
        super().__init__()
        self.model = model
        self.window = int(info.window) if info.window else None
        self.stride = int(info.stride) if info.stride else (max(self.window // 2, 1) if self.window else None)
        self.aggregate = info.aggregate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.window is None:
            return self.model(x)
        windows = sliding_windows(x, self.window, self.stride)  # (B, n_windows, leads, window)
        batch, n_windows = windows.shape[0], windows.shape[1]
        logits = self.model(windows.reshape(batch * n_windows, windows.shape[2], windows.shape[3]))
        logits = logits.reshape(batch, n_windows, -1)
        return logits.amax(dim=1) if self.aggregate == "max" else logits.mean(dim=1)
