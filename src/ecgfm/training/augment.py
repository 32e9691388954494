"""Training-time batch augmentation: amplitude jitter, additive noise and mixup (all off by default).

Every draw comes from a NumPy generator seeded by ``(seed, epoch, batch index)``, not from a global RNG, so a run
resumed after a kill (which restarts the interrupted epoch) sees exactly the augmentations of the uninterrupted run,
whatever the device or the number of DataLoader workers.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def batch_rng(seed: int, epoch: int, batch: int, rank: int = 0) -> np.random.Generator:
    """The generator of one batch's augmentation draws on one rank, independent of the run's other RNGs."""
    return np.random.default_rng((int(seed), int(epoch), int(batch), int(rank), 0xA06))


def augment_batch(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator, *, scale_jitter: float = 0.0,
                  noise_mv: float = 0.0, mixup: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a training batch ``x`` (B, leads, samples) in mV with multi-hot labels ``y`` (B, labels).

    - ``scale_jitter`` s: each ECG's leads are multiplied by one gain drawn log-uniformly from [1/(1+s), 1+s]. One
      gain for all leads keeps the limb-lead identities (III = II - I, ...) and the relative amplitudes that
      voltage criteria compare; keep s small (0.1), since absolute voltage is itself diagnostic (LVH, low voltage).
    - ``noise_mv``: additive white Gaussian noise with this standard deviation in mV (recorders' noise is ~0.01-0.05).
    - ``mixup`` alpha: each ECG is blended with another one of the batch, ``lam * a + (1 - lam) * b`` with
      lam ~ Beta(alpha, alpha), and its labels alike (Zhang et al., ICLR 2018); a label unknown (NaN) in either
      ECG is unknown in the blend.
    """
    if min(scale_jitter, noise_mv, mixup) < 0:
        raise ValueError(f"augmentation strengths must be >= 0, got scale_jitter={scale_jitter}, "
                         f"noise_mv={noise_mv}, mixup={mixup}")
    batch = x.shape[0]
    if scale_jitter > 0:
        log_gain = rng.uniform(-1.0, 1.0, size=(batch, 1, 1)) * math.log1p(scale_jitter)
        x = x * torch.from_numpy(np.exp(log_gain)).to(x.device, x.dtype)
    if noise_mv > 0:
        noise = rng.standard_normal(size=tuple(x.shape), dtype=np.float32) * np.float32(noise_mv)
        x = x + torch.from_numpy(noise).to(x.device, x.dtype)
    if mixup > 0 and batch > 1:
        lam = torch.from_numpy(rng.beta(mixup, mixup, size=batch)).to(x.device)
        partner = torch.from_numpy(rng.permutation(batch)).to(x.device)
        x = lam.to(x.dtype).view(-1, 1, 1) * x + (1 - lam.to(x.dtype).view(-1, 1, 1)) * x[partner]
        y = lam.to(y.dtype).view(-1, 1) * y + (1 - lam.to(y.dtype).view(-1, 1)) * y[partner]
    return x, y


def is_active(scale_jitter: float, noise_mv: float, mixup: float) -> bool:
    """Whether any augmentation is switched on."""
    return scale_jitter > 0 or noise_mv > 0 or mixup > 0
