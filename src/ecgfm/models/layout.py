"""Run a 1-D network's backbone as 2-D channels-last convolutions, with the very same parameters.

Why: on CPU, oneDNN's kernels for ``(B, C, 1, T)`` tensors in channels-last (NHWC) layout are faster than its 1-D
(NCW) ones for this project's networks: on a 2-core Xeon an ``xresnet1d50`` training step ran 1.4x faster in fp32
and 1.5x in bf16 (``experiments/cpu_precision.py``, results in docs/models.md). PyTorch has no channels-last format for 3-D tensors,
so :func:`set_channels_last` switches the backbone's leaf modules, by class only, to subclasses that run the 2-D
operator on a ``(B, C, 1, T)`` view: every parameter and buffer keeps its 1-D shape, so state dicts, checkpoints,
exports and ``reset_classifier`` are unaffected. Results equal the 1-D path's up to float rounding (not bit for
bit, which is why training turns it on only when asked: ``TrainConfig.channels_last``, ``--channels-last``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _single(value) -> int:
    """A 1-D layer's size argument as an int (PyTorch stores some as 1-tuples)."""
    return int(value[0]) if isinstance(value, (tuple, list)) else int(value)


class Conv1dAs2d(nn.Conv1d):
    """``nn.Conv1d`` computed by ``conv2d`` on ``(B, C, 1, T)``; the weight stays ``(out, in, k)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding = self.padding if isinstance(self.padding, str) else (0, _single(self.padding))
        return F.conv2d(x, self.weight.unsqueeze(2), self.bias, (1, _single(self.stride)), padding,
                        (1, _single(self.dilation)), self.groups)


class BatchNorm1dAs2d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` over the channels of ``(B, C, 1, T)``: the same statistics, updated the same way."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"expected a (B, C, 1, T) input in channels-last mode, got {tuple(x.shape)}")


class MaxPool1dAs2d(nn.MaxPool1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, (1, _single(self.kernel_size)), (1, _single(self.stride)), (0, _single(self.padding)),
                            (1, _single(self.dilation)), ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class AvgPool1dAs2d(nn.AvgPool1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, (1, _single(self.kernel_size)), (1, _single(self.stride)), (0, _single(self.padding)),
                            ceil_mode=self.ceil_mode, count_include_pad=self.count_include_pad)


#: 1-D leaf module -> its 2-D-executing twin (a subclass, so isinstance checks and parameters are unchanged).
AS_2D: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv1d: Conv1dAs2d, nn.BatchNorm1d: BatchNorm1dAs2d, nn.MaxPool1d: MaxPool1dAs2d, nn.AvgPool1d: AvgPool1dAs2d,
}
AS_1D = {twin: original for original, twin in AS_2D.items()}
#: Leaf modules that work on any layout as they are (an empty Sequential is an identity path).
LAYOUT_FREE = (nn.ReLU, nn.Identity, nn.Dropout, nn.Sequential)


def _check_convertible(backbone: nn.Module) -> None:
    for name, module in backbone.named_modules():
        if next(module.children(), None) is not None:
            continue
        if isinstance(module, nn.Conv1d) and module.padding_mode != "zeros":
            raise ValueError(f"channels-last mode supports zero padding only; {name} pads {module.padding_mode!r}")
        if type(module) in AS_2D or type(module) in AS_1D or isinstance(module, LAYOUT_FREE):
            continue
        raise ValueError(f"channels-last mode cannot run backbone module {name or '<root>'} "
                         f"({type(module).__name__}) as 2-D")


def supports_channels_last(model: nn.Module) -> bool:
    """Whether :func:`set_channels_last` can switch ``model`` (for an ensemble: every member)."""
    members = getattr(model, "members", None)
    if members is not None:
        return all(supports_channels_last(member) for member in members)
    return bool(getattr(model, "supports_channels_last", False))


def default_channels_last(model: nn.Module, device: str | torch.device = "cpu") -> bool:
    """Prediction's default: channels-last on CPU where the model supports it (GPUs: not measured, so 1-D)."""
    return torch.device(device).type == "cpu" and supports_channels_last(model)


def set_channels_last(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch ``model``'s backbone (or every ensemble member's) to 2-D channels-last execution, or back; in place.

    Only models that declare ``supports_channels_last`` (the ``xresnet1d`` and ``inception1d`` families) can; others
    raise ``ValueError``. Returns ``model``.
    """
    members = getattr(model, "members", None)
    if members is not None:  # an ecgfm ensemble: each member runs its own backbone
        for member in members:
            set_channels_last(member, enabled)
        return model
    if not getattr(model, "supports_channels_last", False):
        raise ValueError(f"{type(model).__name__} does not support channels-last mode "
                         "(its blocks assume (B, C, T) tensors); use an xresnet1d or inception1d model")
    _check_convertible(model.backbone)
    mapping = AS_2D if enabled else AS_1D
    for module in model.backbone.modules():
        if type(module) in mapping:
            module.__class__ = mapping[type(module)]
    model.channels_last = bool(enabled)
    return model
