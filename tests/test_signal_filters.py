"""Preprocessing functions, property-based (hypothesis): resampling, crop/pad, filters, normalisation."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ecgfm import ECGValueError
from ecgfm.signal import bandpass, crop_or_pad, normalize, notch, remove_baseline, resample

RATES = [100, 125, 128, 200, 250, 257, 360, 400, 500, 599.88, 1000]
FAST = settings(max_examples=40, deadline=None)


def tones(fs, seconds, components):
    """Sum of sinusoids ``[(freq_hz, amplitude_mv, phase_rad), ...]`` as a (1, n) array."""
    t = np.arange(int(round(fs * seconds))) / fs
    return sum(a * np.sin(2 * np.pi * f * t + p) for f, a, p in components)[None, :]


def amplitude_at(x, fs, freq, trim=0.2):
    """Amplitude of the ``freq`` Hz component by least-squares projection on sin/cos, ignoring the edges."""
    n = x.shape[-1]
    lo, hi = int(n * trim), int(n * (1 - trim))
    t = np.arange(n)[lo:hi] / fs
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t), np.ones_like(t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, x[0, lo:hi].astype(np.float64), rcond=None)
    return float(np.hypot(coef[0], coef[1]))


@FAST
@given(n=st.integers(1, 6000), fs_in=st.sampled_from(RATES), fs_out=st.sampled_from(RATES),
       leads=st.integers(1, 12))
def test_resample_length_is_rounded_duration(n, fs_in, fs_out, leads):
    expected = round(n * fs_out / fs_in)
    x = np.random.default_rng(n).normal(size=(leads, n))
    if expected < 1:
        with pytest.raises(ECGValueError):
            resample(x, fs_in, fs_out)
        return
    y = resample(x, fs_in, fs_out)
    assert y.shape == (leads, expected) and y.dtype == np.float32


band_limited = st.lists(st.tuples(st.floats(0.5, 40.0), st.floats(0.05, 2.0), st.floats(0, 2 * np.pi)),
                        min_size=1, max_size=4)


@FAST
@given(components=band_limited)
def test_resample_round_trip_of_band_limited_signal(components):
    # Energy below 40 Hz survives 500 -> 250 -> 500 Hz (Nyquist 125 Hz), up to the anti-aliasing filter's ripple.
    x = tones(500, 4.0, components)
    back = resample(resample(x, 500, 250), 250, 500)
    assert back.shape == x.shape
    interior = slice(200, -200)  # polyphase filters ring at the edges
    scale = sum(a for _, a, _ in components)
    assert np.max(np.abs(back[:, interior] - x[:, interior])) < 0.01 * scale


def test_resample_keeps_a_tone_at_the_right_frequency():
    x = tones(500, 10.0, [(7.0, 1.0, 0.0)])
    y = resample(x, 500, 100)
    assert amplitude_at(y, 100, 7.0) == pytest.approx(1.0, rel=0.01)
    z = resample(x, 599.88, 500)  # non-integer vendor rate: the rational approximation must keep the length exact
    assert z.shape[-1] == round(5000 * 500 / 599.88)


def test_resample_identity_and_bad_rates():
    x = np.random.default_rng(0).normal(size=(2, 100)).astype(np.float32)
    np.testing.assert_array_equal(resample(x, 250, 250), x)
    for fs_in, fs_out in [(0, 100), (100, -1), (np.nan, 100)]:
        with pytest.raises(ECGValueError):
            resample(x, fs_in, fs_out)


@FAST
@given(n=st.integers(1, 3000), target=st.integers(1, 3000), mode=st.sampled_from(["center", "start"]))
def test_crop_or_pad_length_and_content(n, target, mode):
    x = np.arange(2 * n, dtype=np.float32).reshape(2, n) + 1  # no zeros, so padding is visible
    y = crop_or_pad(x, target, mode)
    assert y.shape == (2, target)
    if n >= target:
        start = (n - target) // 2 if mode == "center" else 0
        np.testing.assert_array_equal(y, x[:, start:start + target])
    else:
        np.testing.assert_array_equal(y[:, :n], x)
        assert not y[:, n:].any()


def test_crop_or_pad_rejects_bad_arguments():
    x = np.zeros((1, 10))
    with pytest.raises(ECGValueError):
        crop_or_pad(x, 0)
    with pytest.raises(ECGValueError):
        crop_or_pad(x, 5, mode="end")


@FAST
@given(fs=st.sampled_from([100, 250, 500, 1000]), drift=st.floats(0.2, 5.0), tone=st.floats(0.1, 2.0))
def test_bandpass_removes_slow_drift_and_keeps_a_10hz_tone(fs, drift, tone):
    x = tones(fs, 20.0, [(0.1, drift, 0.3), (10.0, tone, 1.0)])
    y = bandpass(x, fs, low=0.5, high=40.0)
    assert amplitude_at(y, fs, 0.1) < 0.05 * drift
    assert amplitude_at(y, fs, 10.0) == pytest.approx(tone, rel=0.02)
    z = remove_baseline(x, fs)
    assert amplitude_at(z, fs, 0.1) < 0.05 * drift and amplitude_at(z, fs, 10.0) == pytest.approx(tone, rel=0.02)


def test_bandpass_low_pass_removes_high_frequency_and_is_zero_phase():
    fs = 500
    x = tones(fs, 10.0, [(5.0, 1.0, 0.0), (100.0, 0.5, 0.0)])
    y = bandpass(x, fs, low=None, high=40.0)
    assert amplitude_at(y, fs, 100.0) < 0.01
    clean = tones(fs, 10.0, [(5.0, 1.0, 0.0)])
    # zero phase: the 5 Hz wave is not delayed (a causal filter would shift it by several samples)
    np.testing.assert_allclose(y[:, 1000:-1000], clean[:, 1000:-1000], atol=0.01)


def test_bandpass_above_nyquist_degrades_to_high_pass_and_none_is_identity():
    x = tones(100, 10.0, [(0.1, 1.0, 0.0), (20.0, 1.0, 0.0)])
    y = bandpass(x, 100, low=0.5, high=80.0)  # 80 Hz > Nyquist 50 Hz: nothing to remove there
    assert amplitude_at(y, 100, 20.0) == pytest.approx(1.0, rel=0.02)
    np.testing.assert_array_equal(bandpass(x, 100, low=None, high=None), x.astype(np.float32))


@FAST
@given(mains=st.sampled_from([50.0, 60.0]), hum=st.floats(0.05, 1.0), fs=st.sampled_from([250, 500, 1000]))
def test_notch_removes_powerline_and_keeps_ecg_band(mains, hum, fs):
    x = tones(fs, 10.0, [(mains, hum, 0.0), (10.0, 1.0, 0.5)])
    y = notch(x, fs, freq=mains)
    assert amplitude_at(y, fs, mains) < 0.05 * hum
    assert amplitude_at(y, fs, 10.0) == pytest.approx(1.0, rel=0.02)


def test_notch_at_or_above_nyquist_is_identity():
    x = tones(100, 2.0, [(10.0, 1.0, 0.0)])
    np.testing.assert_array_equal(notch(x, 100, freq=50.0), x.astype(np.float32))


@FAST
@given(x=arrays(np.float64, (3, 200), elements=st.floats(-10, 10, allow_nan=False, allow_infinity=False)))
def test_normalize_zscore_gives_mean_0_sd_1(x):
    y = normalize(x, "zscore")
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.mean(axis=1), 0, atol=1e-4)
    sd = x.std(axis=1)
    varied = sd > 1e-2  # constant leads stay ~0 instead of dividing by zero
    np.testing.assert_allclose(y.std(axis=1)[varied], 1, atol=1e-5)


def test_normalize_center_none_and_unknown():
    x = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(normalize(x, "center"), [[-1, 0, 1]])
    np.testing.assert_array_equal(normalize(x, "none"), x.astype(np.float32))
    with pytest.raises(ECGValueError, match="unknown normalisation"):
        normalize(x, "minmax")


def test_functions_refuse_non_2d_input():
    with pytest.raises(ECGValueError, match=r"\(leads, samples\)"):
        bandpass(np.zeros(100), 100)
