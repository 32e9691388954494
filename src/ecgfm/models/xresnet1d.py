"""xresnet1d: the 1D "bag of tricks" ResNet (He et al. 2019, fastai xresnet) as configured for ECGs by
Strodthoff et al. 2020 ("Deep learning for ECG analysis: benchmarks and insights from PTB-XL").

Configuration of the benchmark (so results compare with the paper's tables): a 3-layer stem (32, 32, 64 channels,
kernel 5, first stride 2) and max-pool /2; four stages of bottleneck blocks (expansion 4) with a constant 64-channel
bottleneck (256 channels out), kernel 5, stride 2 at stages 2-4 (total downsampling 32); the identity path
downsamples with average pooling then a 1x1 conv; the last BN of each residual branch starts at zero.
``xresnet1d101`` has blocks (3, 4, 23, 3), ``xresnet1d50`` (3, 4, 6, 3); 18/34 use basic blocks (expansion 1).
"""
from __future__ import annotations

import torch
from torch import nn

from ecgfm.models.base import ECGClassifier, conv_bn, init_weights
from ecgfm.models.registry import register_model


class XResBlock1d(nn.Module):
    """Residual block: basic (two k-convs) when ``expansion == 1``, else bottleneck (1x1, k, 1x1)."""

    def __init__(self, expansion: int, in_ch: int, mid_ch: int, stride: int, kernel_size: int):
        super().__init__()
        out_ch = mid_ch * expansion
        if expansion == 1:
            convs = [conv_bn(in_ch, mid_ch, kernel_size, stride), conv_bn(mid_ch, out_ch, kernel_size, act=False)]
        else:
            convs = [conv_bn(in_ch, mid_ch, 1), conv_bn(mid_ch, mid_ch, kernel_size, stride),
                     conv_bn(mid_ch, out_ch, 1, act=False)]
        self.convs = nn.Sequential(*convs)
        self.convs[-1][1].zero_init = True  # residual branch starts as identity (marked for init)
        idpath: list[nn.Module] = []
        if stride != 1:
            idpath.append(nn.AvgPool1d(stride, ceil_mode=True))
        if in_ch != out_ch:
            idpath.append(conv_bn(in_ch, out_ch, 1, act=False))
        self.idpath = nn.Sequential(*idpath)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + self.idpath(x))


class XResNet1d(ECGClassifier):
    """1D xresnet with the concat-pooling head (see module docstring for the benchmark configuration)."""

    supports_channels_last = True

    def __init__(self, num_labels: int, in_leads: int = 12, expansion: int = 4, layers=(3, 4, 23, 3),
                 stem_widths=(32, 32, 64), widths=(64, 64, 64, 64), kernel_size: int = 5, stem_kernel_size: int = 5,
                 head_hidden: int = 128, drop_rate: float = 0.5):
        super().__init__()
        if len(layers) != len(widths):
            raise ValueError(f"layers {layers} and widths {widths} must have the same length")
        chans = [in_leads, *stem_widths]
        stem = [conv_bn(chans[i], chans[i + 1], stem_kernel_size, stride=2 if i == 0 else 1) for i in range(len(stem_widths))]
        blocks: list[nn.Module] = []
        in_ch = stem_widths[-1]
        for stage, (n_blocks, width) in enumerate(zip(layers, widths)):
            for i in range(n_blocks):
                stride = 2 if (stage > 0 and i == 0) else 1
                blocks.append(XResBlock1d(expansion, in_ch, width, stride, kernel_size))
                in_ch = width * expansion
        self.backbone = nn.Sequential(*stem, nn.MaxPool1d(3, stride=2, padding=1), *blocks)
        self._init_head(in_ch, num_labels, head_hidden, drop_rate)
        init_weights(self)


@register_model
def xresnet1d18(num_labels: int, in_leads: int = 12, **kw) -> XResNet1d:
    """xresnet1d18: basic blocks (2, 2, 2, 2), 64 channels, kernel 5."""
    return XResNet1d(num_labels, in_leads, expansion=1, layers=(2, 2, 2, 2), **kw)


@register_model
def xresnet1d34(num_labels: int, in_leads: int = 12, **kw) -> XResNet1d:
    """xresnet1d34: basic blocks (3, 4, 6, 3), 64 channels, kernel 5."""
    return XResNet1d(num_labels, in_leads, expansion=1, layers=(3, 4, 6, 3), **kw)


@register_model
def xresnet1d50(num_labels: int, in_leads: int = 12, **kw) -> XResNet1d:
    """xresnet1d50 of the PTB-XL benchmark: bottleneck blocks (3, 4, 6, 3), 64->256 channels, kernel 5."""
    return XResNet1d(num_labels, in_leads, expansion=4, layers=(3, 4, 6, 3), **kw)


@register_model
def xresnet1d101(num_labels: int, in_leads: int = 12, **kw) -> XResNet1d:
    """xresnet1d101 of the PTB-XL benchmark (best 'all statements' model there): bottleneck blocks (3, 4, 23, 3)."""
    return XResNet1d(num_labels, in_leads, expansion=4, layers=(3, 4, 23, 3), **kw)
