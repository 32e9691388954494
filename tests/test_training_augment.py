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


# -- what differs between hospitals -----------------------------------------------------------------------------------

from scipy import signal as sps  # noqa: E402

from ecgfm.leads import STANDARD_LEADS  # noqa: E402
from ecgfm.models.leadsets import LEAD_SETS  # noqa: E402
from ecgfm.signal.leads import limb_leads_from_i_ii  # noqa: E402
from ecgfm.training.augment import (HospitalShift, drop_leads, hospital_shift, pipeline_highpass_gain,  # noqa: E402
                                    training_augmentation)
from ecgfm.training.config import TrainConfig  # noqa: E402

FS = 100.0


def ecg_batch(n: int = 16, samples: int = 1000, seed: int = 0) -> torch.Tensor:
    """12-lead 100-Hz inputs whose limb leads obey Einthoven/Goldberger (as recorded ones do)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.3, (n, 12, samples)).astype(np.float32)
    derived = limb_leads_from_i_ii(x[:, 0], x[:, 1])
    for k, lead in enumerate(("III", "aVR", "aVL", "aVF")):
        x[:, 2 + k] = derived[lead]
    return torch.from_numpy(x)


def power_above(x: np.ndarray, hz: float) -> float:
    f, p = sps.periodogram(x, fs=FS, window="hann", axis=-1)
    return float(p[..., f > hz].sum())


@pytest.mark.parametrize("option", ["lead_gain", "device_filter", "recording_rate", "baseline_mv", "powerline_mv",
                                    "emg_mv", "lead_mix"])
def test_each_hospital_augmentation_keeps_shape_dtype_and_is_reproducible(option):
    x = ecg_batch()
    shift = HospitalShift(**{option: 0.3 if option.endswith("_mv") else 1.0})
    a = hospital_shift(x, batch_rng(0, 1, 2), FS, shift)
    b = hospital_shift(x, batch_rng(0, 1, 2), FS, shift)
    c = hospital_shift(x, batch_rng(0, 1, 3), FS, shift)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)


def test_no_hospital_shift_is_the_identity():
    x = ecg_batch()
    assert hospital_shift(x, batch_rng(0, 0, 0), FS, HospitalShift()) is x


def test_lead_gains_act_on_electrodes_and_keep_einthoven():
    x = ecg_batch()
    a = hospital_shift(x, batch_rng(0, 0, 0), FS, HospitalShift(lead_gain=0.1)).numpy()
    gain = a[:, [0, 1, 6, 7, 8, 9, 10, 11], :1] / x.numpy()[:, [0, 1, 6, 7, 8, 9, 10, 11], :1]
    assert gain.min() >= 1 / 1.1 - 1e-5 and gain.max() <= 1.1 + 1e-5
    assert np.ptp(gain, axis=1).max() > 0.01  # leads get different gains
    np.testing.assert_allclose(a[:, 2], a[:, 1] - a[:, 0], atol=1e-5)  # III = II - I still


def test_device_filter_removes_power_above_a_40_hz_lowpass_and_below_its_highpass():
    x = ecg_batch(n=64)
    a = hospital_shift(x, batch_rng(0, 0, 0), FS, HospitalShift(device_filter=1.0)).numpy()
    changed = np.abs(a - x.numpy()).max(axis=(1, 2)) > 0
    assert changed.all()
    # a third of the draws take the 40-Hz low-pass (100 and 150 Hz lie above the 50-Hz Nyquist frequency)
    ratio = np.array([power_above(a[b], 45) / power_above(x.numpy()[b], 45) for b in range(len(a))])
    assert 0.15 < np.mean(ratio < 0.5) < 0.55
    slow = x.numpy() + 1.0 * np.cos(2 * np.pi * 0.1 * np.arange(1000) / FS).astype(np.float32)
    b = hospital_shift(torch.from_numpy(slow), batch_rng(0, 0, 0), FS, HospitalShift(device_filter=1.0)).numpy()
    f, p_in = sps.periodogram(slow, fs=FS, axis=-1)
    _, p_out = sps.periodogram(b, fs=FS, axis=-1)
    assert p_out[..., f <= 0.1].sum() < p_in[..., f <= 0.1].sum()  # the high-pass takes wander out


def test_recording_rate_round_trip_only_changes_the_band_near_nyquist():
    x = ecg_batch(n=32)
    a = hospital_shift(x, batch_rng(0, 0, 0), FS, HospitalShift(recording_rate=1.0)).numpy()
    f, p_in = sps.periodogram(x.numpy(), fs=FS, axis=-1)
    _, p_out = sps.periodogram(a, fs=FS, axis=-1)
    low = f < 35
    np.testing.assert_allclose(p_out[..., low].sum(), p_in[..., low].sum(), rtol=0.02)
    assert p_out[..., f > 48].sum() < 0.8 * p_in[..., f > 48].sum()


def test_baseline_wander_is_slow_and_what_the_pipeline_highpass_leaves():
    x = torch.zeros(64, 12, 1000)
    a = hospital_shift(x, batch_rng(0, 0, 0), FS, HospitalShift(baseline_mv=1.0)).numpy()
    assert power_above(a, 1.5) < 1e-3 * power_above(a, 0.0)
    assert np.abs(a[:, [0, 1, 6, 7, 8, 9, 10, 11]]).max() <= 2.0  # two components of <= 1 mV on each electrode lead
    np.testing.assert_allclose(a[:, 2], a[:, 1] - a[:, 0], atol=1e-5)  # limb leads derived from I and II
    # the pipeline's order-4 high-pass at 0.5 Hz run forwards and backwards: |H(f)|^2 = 1 / (1 + (0.5 / f)^8)
    f = np.array([0.1, 0.3, 0.5, 0.8, 2.0])
    np.testing.assert_allclose(pipeline_highpass_gain(f, FS, 0.5), 1 / (1 + (0.5 / f) ** 8), rtol=1e-3, atol=1e-9)


def test_mains_hum_is_what_resampling_leaves_at_the_nyquist_frequency():
    x = torch.zeros(256, 12, 1000)
    a = hospital_shift(x, batch_rng(0, 0, 0), FS, HospitalShift(powerline_mv=0.2)).numpy()
    # the 500->100 Hz resampler keeps about half of a 49.8-50.2 Hz hum (gain 0.52-0.48, folded onto the 50-Hz
    # Nyquist frequency) and 0.2% of a 60-Hz one
    inner = a[..., 100:-100]
    assert np.abs(inner).max() <= 0.2 * 0.53
    assert power_above(inner, 45) > 0.9 * power_above(inner, 0.0)
    quiet = (np.abs(inner).max(axis=(1, 2)) < 0.2 * 0.01).mean()  # ECGs without hum (half) or with 60 Hz (a quarter)
    assert 0.6 < quiet < 0.9


def test_muscle_noise_sits_in_the_upper_band():
    x = torch.zeros(32, 12, 1000)
    a = hospital_shift(x, batch_rng(0, 0, 0), FS, HospitalShift(emg_mv=0.1)).numpy()
    assert power_above(a, 20) > 0.75 * power_above(a, 0.0)
    assert 0 < a.std(axis=-1).max() <= 0.1 * 1.1
    assert 0.25 < (np.abs(a).max(axis=(1, 2)) == 0).mean() < 0.75  # half of the ECGs have none


def test_lead_mix_blends_each_chest_lead_with_a_neighbour_only():
    x = ecg_batch()
    a = hospital_shift(x, batch_rng(0, 0, 0), FS, HospitalShift(lead_mix=0.3)).numpy()
    assert np.array_equal(a[:, :6], x.numpy()[:, :6])  # limb leads untouched
    v = x.numpy()[:, 6:]
    for b in range(len(a)):
        for i in range(6):  # a_i = (1 - w) v_i + w v_j for a neighbour j and w in [0, 0.3]
            fits = []
            for j in (i - 1, i + 1):
                if 0 <= j < 6:
                    d = v[b, j] - v[b, i]
                    w = float(((a[b, 6 + i] - v[b, i]) * d).sum() / (d * d).sum())
                    fits.append((np.abs(a[b, 6 + i] - ((1 - w) * v[b, i] + w * v[b, j])).max(), w))
            err, w = min(fits)
            assert err < 1e-4 and -1e-4 <= w <= 0.3 + 1e-4


def test_lead_drop_zeroes_the_absent_leads_and_their_presence_channels():
    x = torch.cat([ecg_batch(n=200), torch.ones(200, 12, 1000)], dim=1)
    a = drop_leads(x, batch_rng(0, 0, 0), 0.6, STANDARD_LEADS, LEAD_SETS).numpy()
    presence = a[:, 12:, 0]
    counts = presence.sum(axis=1)
    assert set(np.unique(counts)) <= {12.0, 6.0, 1.0}
    assert 0.3 < np.mean(counts < 12) < 0.9  # about 60% read as a reduced set
    assert np.all((np.abs(a[:, :12]).max(axis=-1) > 0) == (presence > 0))  # absent leads are exactly zero
    v_only = np.flatnonzero((presence[:, 6:] == 1).all(axis=1) & (presence[:, :6] == 0).all(axis=1))
    assert len(v_only) and np.array_equal(a[v_only, 6:12], x.numpy()[v_only, 6:12])


def test_training_augmentation_refuses_lead_drop_without_presence_inputs():
    from ecgfm.models import ModelInfo

    info = ModelInfo(arch="xresnet1d18", labels=["A"], fs=100.0)
    assert training_augmentation(TrainConfig(), info) is None
    with pytest.raises(ValueError, match="lead-presence"):
        training_augmentation(TrainConfig(lead_drop=0.5), info)
    with pytest.raises(ValueError, match="must be >= 0"):
        TrainConfig(emg_mv=-1)
