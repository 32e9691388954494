"""inception1d: InceptionTime (Fawaz et al. 2020) as configured for ECGs by Strodthoff et al. 2020 (PTB-XL benchmark).

Configuration of the benchmark: 6 inception modules (depth 6), each a 1x1 bottleneck to 32 channels feeding three
parallel convolutions with kernels 39, 19 and 9 (32 filters each) plus a max-pool(3)->1x1 branch, concatenated to 128
channels, BN, ReLU; a residual shortcut (1x1 conv + BN) every 3 modules. No downsampling: the receptive field comes
from the long kernels. Concat-pooling head as in :mod:`ecgfm.models.base`.
"""
from __future__ import annotations

import torch
from torch import nn

from ecgfm.models.base import ECGClassifier, init_weights
from ecgfm.models.registry import register_model


def _conv(in_ch: int, out_ch: int, kernel_size: int) -> nn.Conv1d:
    return nn.Conv1d(in_ch, out_ch, kernel_size, padding=(kernel_size - 1) // 2, bias=False)


class InceptionModule1d(nn.Module):
    """Bottleneck, parallel long convolutions and a max-pool branch, concatenated, BN, ReLU."""

    def __init__(self, in_ch: int, filters: int, kernel_sizes: tuple[int, ...], bottleneck: int):
        super().__init__()
        self.bottleneck = _conv(in_ch, bottleneck, 1) if bottleneck > 0 else nn.Identity()
        branch_in = bottleneck if bottleneck > 0 else in_ch
        self.convs = nn.ModuleList(_conv(branch_in, filters, k) for k in kernel_sizes)
        self.pool_branch = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1), _conv(in_ch, filters, 1))
        self.bn_act = nn.Sequential(nn.BatchNorm1d(filters * (len(kernel_sizes) + 1)), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bottleneck(x)
        return self.bn_act(torch.cat([conv(z) for conv in self.convs] + [self.pool_branch(x)], dim=1))


class InceptionBackbone1d(nn.Module):
    """``depth`` inception modules with a residual shortcut around every group of three."""

    def __init__(self, in_ch: int, depth: int, filters: int, kernel_sizes: tuple[int, ...], bottleneck: int,
                 use_residual: bool):
        super().__init__()
        if depth % 3:
            raise ValueError(f"inception depth must be a multiple of 3, got {depth}")
        out_ch = filters * (len(kernel_sizes) + 1)
        self.use_residual = use_residual
        self.blocks = nn.ModuleList(
            InceptionModule1d(in_ch if d == 0 else out_ch, filters, kernel_sizes, bottleneck) for d in range(depth)
        )
        self.shortcuts = nn.ModuleList(
            nn.Sequential(_conv(in_ch if s == 0 else out_ch, out_ch, 1), nn.BatchNorm1d(out_ch)) for s in range(depth // 3)
        )
        self.act = nn.ReLU(inplace=True)
        self.out_channels = out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        for d, module in enumerate(self.blocks):
            x = module(x)
            if self.use_residual and d % 3 == 2:
                x = self.act(x + self.shortcuts[d // 3](residual))
                residual = x
        return x


class Inception1d(ECGClassifier):
    """InceptionTime-style 1D network with the concat-pooling head (see module docstring for the configuration)."""

    supports_channels_last = True

    def __init__(self, num_labels: int, in_leads: int = 12, depth: int = 6, filters: int = 32, kernel_size: int = 40,
                 bottleneck: int = 32, use_residual: bool = True, head_hidden: int = 128, drop_rate: float = 0.5):
        super().__init__()
        # The benchmark passes kernel_size 40 and derives kernels 39, 19, 9 (even sizes shortened by one).
        kernel_sizes = tuple(k - 1 if k % 2 == 0 else k for k in (kernel_size, kernel_size // 2, kernel_size // 4))
        self.backbone = InceptionBackbone1d(in_leads, depth, filters, kernel_sizes, bottleneck, use_residual)
        self._init_head(self.backbone.out_channels, num_labels, head_hidden, drop_rate)
        init_weights(self)


@register_model
def inception1d(num_labels: int, in_leads: int = 12, **kw) -> Inception1d:
    """inception1d of the PTB-XL benchmark: depth 6, kernels 39/19/9, 32 filters, bottleneck 32, residual."""
    return Inception1d(num_labels, in_leads, **kw)
