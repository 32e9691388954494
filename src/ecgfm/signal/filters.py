"""Small, pure preprocessing functions on ``(leads, samples)`` arrays. Each one is tested on its own."""
from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np
from scipy import signal as sps

from ecgfm.config import read_limits
from ecgfm.errors import ECGValueError


def _as_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ECGValueError(f"expected a (leads, samples) array, got shape {x.shape}")
    return x


def resample(x: np.ndarray, fs_in: float, fs_out: float, max_denominator: int = 1000) -> np.ndarray:
    """Resample along the last axis with a polyphase anti-aliasing filter (``scipy.signal.resample_poly``).

    The output has exactly ``round(n * fs_out / fs_in)`` samples, so durations stay consistent across rates.
    Non-integer rates (e.g. 599.88 Hz) use the closest rational ratio with denominator <= ``max_denominator``.
    """
    x = _as_2d(x)
    if not (np.isfinite(fs_in) and np.isfinite(fs_out)) or fs_in <= 0 or fs_out <= 0:
        raise ECGValueError(f"sampling rates must be positive, got {fs_in} -> {fs_out}")
    if fs_in == fs_out:
        return x.copy()
    target = int(round(x.shape[-1] * fs_out / fs_in))
    if target < 1:
        raise ECGValueError(f"{x.shape[-1]} samples at {fs_in} Hz leave nothing at {fs_out} Hz")
    if not 1e-3 <= fs_out / fs_in <= 1e3:  # resample_poly's filter has ~20 x max(up, down) taps
        raise ECGValueError(f"cannot resample from {fs_in:g} Hz to {fs_out:g} Hz: a ratio beyond 1000 means a wrong "
                            "sampling rate")
    limit = read_limits().max_values
    if target * x.shape[0] > limit:  # refused before allocating: a 0.001 Hz rate would ask for ~22 GiB
        raise ECGValueError(f"resampling {x.shape[-1]} samples from {fs_in:g} Hz to {fs_out:g} Hz would make "
                            f"{target} samples x {x.shape[0]} leads, over the limit of {limit} values "
                            "(ReadLimits.max_values); the input's sampling rate is probably wrong")
    ratio = Fraction(fs_out / fs_in).limit_denominator(max_denominator)
    y = sps.resample_poly(x, ratio.numerator, ratio.denominator, axis=-1, padtype="line")
    # resample_poly returns ceil(n * up / down) samples; the approximated ratio can add or drop one more.
    if y.shape[-1] >= target:
        y = y[:, :target]
    else:
        y = np.pad(y, ((0, 0), (0, target - y.shape[-1])), mode="edge")
    return np.ascontiguousarray(y, dtype=np.float32)


def crop_or_pad(x: np.ndarray, n_samples: int, mode: str = "center") -> np.ndarray:
    """Fix the length to ``n_samples``: crop (``"center"`` or ``"start"``) if longer, zero-pad at the end if shorter."""
    x = _as_2d(x)
    if n_samples <= 0:
        raise ECGValueError(f"n_samples must be positive, got {n_samples}")
    length = x.shape[-1]
    if length > n_samples:
        if mode not in {"center", "start"}:
            raise ECGValueError(f"unknown crop mode {mode!r}; use 'center' or 'start'")
        start = (length - n_samples) // 2 if mode == "center" else 0
        return x[:, start:start + n_samples].copy()
    if length < n_samples:
        return np.pad(x, ((0, 0), (0, n_samples - length)))
    return x.copy()


def bandpass(x: np.ndarray, fs: float, low: float | None = 0.5, high: float | None = 40.0, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth band-pass (``low`` only: high-pass for baseline wander; ``high`` only: low-pass).

    Zero phase (``sosfiltfilt``) keeps ST-segment and QRS timing undistorted, as ECG filtering guidelines require.
    """
    x = _as_2d(x)
    nyquist = fs / 2
    if high is not None and high >= nyquist:
        high = None  # nothing above Nyquist to remove
    if low is None and high is None:
        return x.copy()
    sos = _butter_sos(order, low, high, float(fs))
    padlen = min(x.shape[-1] - 1, 3 * (2 * len(sos) + 1))
    return sps.sosfiltfilt(sos, x, axis=-1, padlen=padlen).astype(np.float32)


@functools.lru_cache(maxsize=256)
def _butter_sos(order: int, low: float | None, high: float | None, fs: float) -> np.ndarray:
    """Butterworth sections for :func:`bandpass`, designed once per setting: designing costs about as much as
    filtering a 10-s record, and prediction filters every record with the same setting."""
    if low is not None and high is not None:
        sos = sps.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
    elif low is not None:
        sos = sps.butter(order, low, btype="highpass", fs=fs, output="sos")
    else:
        sos = sps.butter(order, high, btype="lowpass", fs=fs, output="sos")
    return sos  # shared by every call: scipy's filters only read it


def remove_baseline(x: np.ndarray, fs: float, cutoff: float = 0.5) -> np.ndarray:
    """Remove baseline wander with a 0.5 Hz zero-phase high-pass (AHA recommendation for diagnostic ECGs)."""
    return bandpass(x, fs, low=cutoff, high=None)


def notch(x: np.ndarray, fs: float, freq: float = 50.0, quality: float = 30.0) -> np.ndarray:
    """Remove powerline interference (50 Hz Europe, 60 Hz Americas) with a zero-phase IIR notch."""
    x = _as_2d(x)
    if freq >= fs / 2:
        return x.copy()
    b, a = sps.iirnotch(freq, quality, fs=fs)
    return sps.filtfilt(b, a, x, axis=-1, padlen=min(x.shape[-1] - 1, 3 * max(len(a), len(b)))).astype(np.float32)


def normalize(x: np.ndarray, method: str = "zscore", eps: float = 1e-6) -> np.ndarray:
    """Per-lead normalisation: ``"zscore"`` (mean 0, sd 1), ``"center"`` (mean 0) or ``"none"``.

    Computed in float64 so a constant lead centres to exactly ~0; leads with sd <= ``eps`` (flat or missing leads)
    are only centred, never blown up by dividing by ~0.
    """
    x = _as_2d(x)
    if method == "none":
        return x.copy()
    if method not in ("zscore", "center"):
        raise ECGValueError(f"unknown normalisation {method!r}; use 'zscore', 'center' or 'none'")
    x64 = x.astype(np.float64)
    centered = x64 - x64.mean(axis=-1, keepdims=True)
    if method == "zscore":
        sd = centered.std(axis=-1, keepdims=True)
        centered = centered / np.where(sd > eps, sd, 1.0)
    return centered.astype(np.float32)
