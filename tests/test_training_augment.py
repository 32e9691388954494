"""Batch augmentation: each transform does what its docstring says, and draws are reproducible per batch."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ecgfm.training.augment import augment_batch, batch_rng


def batch(n: int = 64, labels: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(0, 1, (n, 12, 300)).astype(np.float32))
    y = torch.from_numpy((rng.random((n, labels)) < 0.3).astype(np.float32))
    return x, y


def test_everything_off_returns_the_batch_unchanged():
    x, y = batch()
    ax, ay = augment_batch(x, y, batch_rng(0, 0, 0))
    assert torch.equal(ax, x) and torch.equal(ay, y)


def test_scale_jitter_is_one_gain_per_ecg_within_bounds():
    x, y = batch()
    s = 0.1
    ax, ay = augment_batch(x, y, batch_rng(0, 0, 0), scale_jitter=s)
    gain = ax / x
    per_ecg = gain[:, :1, :1]
    torch.testing.assert_close(gain, per_ecg.expand_as(gain), rtol=1e-5, atol=1e-5)  # same gain on every lead
    assert per_ecg.min() >= 1 / (1 + s) - 1e-6 and per_ecg.max() <= 1 + s + 1e-6
    log_gain = per_ecg.log().flatten().numpy()
    assert log_gain.min() < 0 < log_gain.max()  # both louder and quieter
    assert torch.equal(ay, y)


def test_noise_has_the_requested_standard_deviation_in_mv():
    x, y = batch()
    ax, _ = augment_batch(x, y, batch_rng(1, 2, 3), noise_mv=0.05)
    noise = (ax - x).numpy()
    assert noise.std() == pytest.approx(0.05, rel=0.01)
    assert abs(noise.mean()) < 1e-3


def test_mixup_blends_inputs_and_labels_with_the_same_weight():
    x, y = batch(n=32)
    ax, ay = augment_batch(x, y, batch_rng(0, 0, 0), mixup=0.4)
    for i in range(len(x)):
        # recover the blend: ax_i = lam * x_i + (1 - lam) * x_j for some j and one lam in [0, 1]
        best = None
        for j in range(len(x)):
            diff = x[i] - x[j]
            if j == i or diff.abs().max() == 0:
                continue
            lam = float(((ax[i] - x[j]) * diff).sum() / (diff * diff).sum())
            err = float((ax[i] - (lam * x[i] + (1 - lam) * x[j])).abs().max())
            if best is None or err < best[0]:
                best = (err, j, lam)
        err, j, lam = best
        if abs(lam - 1) < 1e-4:  # blended with itself or with weight ~1
            torch.testing.assert_close(ay[i], y[i], atol=1e-4, rtol=0)
            continue
        assert err < 1e-4 and 0 <= lam <= 1
        torch.testing.assert_close(ay[i], lam * y[i] + (1 - lam) * y[j], atol=1e-4, rtol=0)


def test_mixup_keeps_unknown_labels_unknown():
    x, y = batch(n=8)
    y[0, 2] = math.nan
    _, ay = augment_batch(x, y, batch_rng(0, 0, 0), mixup=1.0)
    partners_of_0 = torch.isnan(ay[:, 2])
    assert partners_of_0[0]  # ECG 0's own unknown label stays unknown
    assert not torch.isnan(ay[:, :2]).any()


def test_draws_are_reproducible_per_seed_epoch_batch_and_rank():
    x, y = batch()
    opts = {"scale_jitter": 0.1, "noise_mv": 0.02, "mixup": 0.2}
    a = augment_batch(x, y, batch_rng(3, 1, 7), **opts)
    b = augment_batch(x, y, batch_rng(3, 1, 7), **opts)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for other in (batch_rng(3, 1, 8), batch_rng(3, 2, 7), batch_rng(4, 1, 7), batch_rng(3, 1, 7, rank=1)):
        assert not torch.equal(augment_batch(x, y, other, **opts)[0], a[0])


def test_negative_strength_is_an_error():
    x, y = batch(n=4)
    with pytest.raises(ValueError, match="noise_mv=-0.1"):
        augment_batch(x, y, batch_rng(0, 0, 0), noise_mv=-0.1)
