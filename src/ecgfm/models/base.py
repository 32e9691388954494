"""The interface every ecgfm model implements, and the concat-pooling head of Strodthoff et al. (2020)."""
from __future__ import annotations

import torch
from torch import nn


class ConcatPool1d(nn.Module):
    """Concatenate global max- and average-pooling over time: ``(B, C, T) -> (B, 2C)`` (fastai's AdaptiveConcatPool)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.amax(dim=-1), x.mean(dim=-1)], dim=1)


class ConcatPoolHead(nn.Module):
    """The PTB-XL benchmark head after concat pooling: BN, dropout p/2, linear->hidden, ReLU, BN, dropout p, linear.

    With ``hidden=0`` it is BN, dropout p, linear. ``fc`` is the final linear layer, the one
    :meth:`ECGClassifier.reset_classifier` replaces.
    """

    def __init__(self, in_features: int, num_labels: int, hidden: int = 128, drop_rate: float = 0.5):
        super().__init__()
        self.in_features, self.hidden, self.drop_rate = in_features, hidden, drop_rate
        if hidden:
            self.pre_logits = nn.Sequential(
                nn.BatchNorm1d(in_features), nn.Dropout(drop_rate / 2), nn.Linear(in_features, hidden),
                nn.ReLU(inplace=True), nn.BatchNorm1d(hidden), nn.Dropout(drop_rate),
            )
        else:
            self.pre_logits = nn.Sequential(nn.BatchNorm1d(in_features), nn.Dropout(drop_rate))
        self.fc = nn.Linear(hidden or in_features, num_labels)

    def forward(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(features)
        return x if pre_logits else self.fc(x)


class ECGClassifier(nn.Module):
    """Base class: a convolutional backbone, concat pooling, and a multi-label head.

    Subclasses build ``self.backbone`` (``(B, in_leads, T) -> (B, C, T')``) and call :meth:`_init_head` with ``C``.
    ``forward_features`` returns the pooled embedding ``(B, num_features)`` with ``num_features == 2C``;
    ``forward`` returns logits ``(B, num_labels)`` (apply a sigmoid for per-label probabilities).
    """

    arch_name: str = ""
    arch_kwargs: dict = {}
    #: whether ``ecgfm.models.layout.set_channels_last`` may run the backbone as 2-D channels-last convolutions
    #: (true for families built only of convolutions, BN, ReLU and pooling), and whether it currently does
    supports_channels_last: bool = False
    channels_last: bool = False

    def _init_head(self, channels: int, num_labels: int, head_hidden: int, drop_rate: float) -> None:
        self.pool = ConcatPool1d()
        self.num_features = 2 * channels
        self.num_labels = num_labels
        self.head = ConcatPoolHead(self.num_features, num_labels, hidden=head_hidden, drop_rate=drop_rate)

    def forward_backbone(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps before pooling, ``(B, C, T')``."""
        if self.channels_last:  # (B, C, T) -> channels-last (B, C, 1, T) and back (ecgfm.models.layout)
            return self.backbone(x.unsqueeze(2).contiguous(memory_format=torch.channels_last)).squeeze(2)
        return self.backbone(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled embedding before the head, ``(B, num_features)``."""
        if x.ndim != 3:
            raise ValueError(f"expected a batch of shape (B, leads, samples), got {tuple(x.shape)}")
        return self.pool(self.forward_backbone(x))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits from pooled features (or the hidden head activations when ``pre_logits``)."""
        return self.head(features, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_labels: int) -> None:
        """Replace the final linear layer with a fresh ``num_labels``-way one; the rest of the head is kept."""
        fc = self.head.fc
        self.head.fc = nn.Linear(fc.in_features, int(num_labels)).to(device=fc.weight.device, dtype=fc.weight.dtype)
        self.num_labels = int(num_labels)

    def get_classifier(self) -> nn.Linear:
        return self.head.fc


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convolutions and linears (ReLU networks), zero biases, unit BN (fastai / PTB-XL benchmark)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d):
            # zero_init marks a residual branch's last BN: starting it at 0 makes each block an identity (He et al. 2019)
            (nn.init.zeros_ if getattr(m, "zero_init", False) else nn.init.ones_)(m.weight)
            nn.init.zeros_(m.bias)


def conv_bn(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, act: bool = True, groups: int = 1) -> nn.Sequential:
    """Conv1d ('same' padding for odd kernels, no bias) -> BatchNorm -> optional ReLU."""
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel sizes must be odd so padding keeps the length, got {kernel_size}")
    layers: list[nn.Module] = [
        nn.Conv1d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, bias=False, groups=groups),
        nn.BatchNorm1d(out_ch),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)
