"""resnet1d: ecgfm's default residual 1D CNN, sized to pre-train on a CPU in minutes.

See :class:`ResNet1d` for the design and its cost.
"""
from __future__ import annotations

import torch
from torch import nn

from ecgfm.models.base import ECGClassifier, conv_bn, init_weights
from ecgfm.models.registry import register_model


class SqueezeExcite1d(nn.Module):
    """Channel attention (Hu et al. 2018): rescale channels by a gate computed from their time average."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.gate = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x.mean(dim=-1)).unsqueeze(-1)


class BasicBlock1d(nn.Module):
    """Two k-convolutions with BN (+ optional squeeze-excite) and an identity / avg-pool+1x1 shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, kernel_size: int, se: bool):
        super().__init__()
        self.convs = nn.Sequential(conv_bn(in_ch, out_ch, kernel_size, stride), conv_bn(out_ch, out_ch, kernel_size, act=False))
        self.convs[-1][1].zero_init = True
        self.se = SqueezeExcite1d(out_ch) if se else nn.Identity()
        shortcut: list[nn.Module] = []
        if stride != 1:  # anti-aliased shortcut: average, not skip, the dropped samples (xresnet trick)
            shortcut.append(nn.AvgPool1d(stride, ceil_mode=True))
        if in_ch != out_ch:
            shortcut.append(conv_bn(in_ch, out_ch, 1, act=False))
        self.shortcut = nn.Sequential(*shortcut)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.se(self.convs(x)) + self.shortcut(x))


class ResNet1d(ECGClassifier):
    """Residual 1D CNN: stem conv, stages of basic residual blocks, concat pooling, PTB-XL benchmark head.

    Default configuration (``create("resnet1d", num_labels=L)``):

    - stem: one conv, kernel 15 (150 ms at 100 Hz, about a QRS width), 12 -> 64 channels, stride 1;
    - 4 stages of 2 basic blocks each (8 residual blocks, 17 conv layers incl. stem), widths 64, 128, 192, 256,
      kernel 7, stride 2 at the first block of stages 2-4 (total downsampling 8: the last stage sees 80 ms steps
      at 100 Hz); average-pool + 1x1 projection shortcuts; last BN of each block zero-initialised;
    - concat pooling (max + mean over time -> 512-d embedding, ``num_features``), then BN, dropout 0.25,
      linear 512->128, ReLU, BN, dropout 0.5, linear 128->L.

    Cost (``ecgfm.models.count_flops``, for a 10-s 12-lead ECG at 100 Hz, 1000 samples): about 2.0 M parameters and
    1.45 GFLOPs per forward pass (0.36 GFLOPs for the 2.5-s training crop). The receptive field is about 2.2 s,
    i.e. 2-3 beats, enough for rhythm and morphology statements. Numbers for every architecture are in docs/models.md.
    """

    def __init__(self, num_labels: int, in_leads: int = 12, widths=(64, 128, 192, 256), depths=(2, 2, 2, 2),
                 kernel_size: int = 7, stem_width: int = 64, stem_kernel_size: int = 15, stem_stride: int = 1,
                 se: bool = False, head_hidden: int = 128, drop_rate: float = 0.5):
        super().__init__()
        if len(widths) != len(depths):
            raise ValueError(f"widths {widths} and depths {depths} must have the same length")
        layers: list[nn.Module] = [conv_bn(in_leads, stem_width, stem_kernel_size, stride=stem_stride)]
        in_ch = stem_width
        for stage, (width, depth) in enumerate(zip(widths, depths)):
            for i in range(depth):
                stride = 2 if (stage > 0 and i == 0) else 1
                layers.append(BasicBlock1d(in_ch, width, stride, kernel_size, se))
                in_ch = width
        self.backbone = nn.Sequential(*layers)
        self._init_head(in_ch, num_labels, head_hidden, drop_rate)
        init_weights(self)


@register_model
def resnet1d(num_labels: int, in_leads: int = 12, **kw) -> ResNet1d:
    """ecgfm's default: 8 residual blocks (64-256 channels, kernel 7), ~2 M parameters; see :class:`ResNet1d`."""
    return ResNet1d(num_labels, in_leads, **kw)


@register_model
def resnet1d_small(num_labels: int, in_leads: int = 12, **kw) -> ResNet1d:
    """A quarter-cost variant for quick experiments and tests: widths 32-128, one block per stage."""
    kw = {"widths": (32, 64, 96, 128), "depths": (1, 1, 1, 1), "stem_width": 32, **kw}
    return ResNet1d(num_labels, in_leads, **kw)
