"""Amplitude units: conversion factors to millivolts and the plausibility check that refuses wrong-unit or wrong-gain
input (microvolts, volts, raw ADC counts, a gain off by 5-10x, a flat signal) before a model reads it as an ECG."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ecgfm.errors import ECGValueError
from ecgfm.leads import canonical_lead_name

#: Multiply a value in the given unit by this factor to get millivolts.
TO_MILLIVOLTS: dict[str, float] = {
    "v": 1e3, "volt": 1e3, "volts": 1e3,
    "mv": 1.0, "millivolt": 1.0, "millivolts": 1.0,
    "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "microvolt": 1e-3, "microvolts": 1e-3,
    "nv": 1e-6, "nanovolt": 1e-6,
}

#: Largest absolute amplitude (mV) a body-surface ECG plausibly reaches. QRS complexes rarely exceed 5 mV;
#: we allow generous headroom for pacing spikes and artefacts. A 10 s ECG in microvolts passed as mV exceeds it.
MAX_PLAUSIBLE_MV = 30.0
#: Below this robust peak-to-peak amplitude (mV) on every lead the signal is probably in volts, not mV.
MIN_PLAUSIBLE_PEAK_TO_PEAK_MV = 0.01

# Robust QRS amplitude of a lead: p99 - p1 of its 20-ms differences x[t + 20 ms] - x[t]. A QRS upstroke or downstroke
# spans 20-40 ms, so the tails of the differences measure the QRS, while baseline wander (< 1 Hz) moves little in
# 20 ms and a few pacing spikes or artefacts stay under 1% of the samples. A wrong gain scales every lead alike.
# Measured on every genuine record we have (benchmarks/amplitude_ranges.py -> results/amplitude_ranges.json):
# 4,537 PTB-XL records (both rates), 203 CPSC records and 30 vendor rhythm/median waveforms. The largest lead of a
# record measured 0.865-10.75 mV (median 2.98; 0.1% and 99.9% quantiles 1.10 and 9.39 mV).
QRS_LAG_S = 0.02
#: Largest plausible QRS amplitude of any lead (mV): 1.49x the largest genuine record (10.75 mV, a PTB-XL LVH).
#: A gain 10x too large is caught on ~98% of genuine records, 5x on ~48% (those above 3.2 mV).
MAX_PLAUSIBLE_QRS_MV = 16.0
#: Smallest plausible QRS amplitude of a record's largest lead (mV): the smallest genuine record (0.865 mV, a
#: low-voltage PTB-XL record) / 1.57. Applied when the file holds all six precordial leads (12- and
#: 8-lead exports), whose largest lead is never small; limb-only or single-lead files only get the volts check.
#: A gain 10x too small is caught on ~98% of genuine records, 5x on ~50% (those under 2.75 mV).
MIN_PLAUSIBLE_QRS_MV = 0.55
#: The low-side check needs a QRS inside the signal: any 2 s at a heart rate of 30 bpm or more holds one.
MIN_QRS_CHECK_S = 2.0
#: A typical record's largest-lead QRS amplitude (mV, the median above): used to say how far off a refused gain is.
TYPICAL_QRS_MV = 3.0
#: Below this rate a 20-ms lag does not resolve a QRS (and the rate itself is wrong): the gain check is skipped,
#: leaving the sampling-rate error to the resampler, which names it.
MIN_QRS_CHECK_FS_HZ = 50.0
PRECORDIAL_LEADS = ("V1", "V2", "V3", "V4", "V5", "V6")


def unit_factor(unit: str) -> float:
    """Factor converting ``unit`` (``"mV"``, ``"uV"``, ``"µV"``, ``"V"``...) to millivolts; ``ValueError`` if unknown."""
    key = str(unit).strip().lower().replace(" ", "")
    if key not in TO_MILLIVOLTS:
        raise ValueError(f"unknown amplitude unit {unit!r}; expected one of V, mV, uV, nV")
    return TO_MILLIVOLTS[key]


def qrs_amplitudes(signal: np.ndarray, fs: float) -> np.ndarray:
    """Per-lead robust QRS amplitude (mV): p99 - p1 of the differences over :data:`QRS_LAG_S` (see above)."""
    leads = np.asarray(signal, dtype=np.float32).reshape(-1, np.shape(signal)[-1])
    lag = max(1, int(round(QRS_LAG_S * fs)))
    if leads.shape[-1] <= lag:
        return np.zeros(leads.shape[0], dtype=np.float32)
    return _spread(leads[:, lag:] - leads[:, :-lag])


def check_plausible_millivolts(signal: np.ndarray, source: str | None = None, fs: float | None = None,
                               leads: Sequence[str] | None = None) -> None:
    """Refuse amplitudes that cannot be a millivolt ECG: microvolts or ADC counts passed as mV, volts, a flat or
    constant signal, and (when ``fs`` is given) a gain off by 5-10x, judged by the per-lead QRS amplitude.

    Robust statistics only (order statistics via ``np.partition``, O(n)), so a few saturated samples or pacing
    spikes do not trigger it; every read runs it.
    """
    where = f" in {source}" if source else ""
    signal = np.asarray(signal, dtype=np.float32)
    if signal.size == 0:
        return
    robust_max = _order_statistic(np.abs(signal).ravel(), 0.999)
    if robust_max > MAX_PLAUSIBLE_MV:
        hint = "microvolts" if robust_max > 300 else "a wrong gain"
        raise ECGValueError(
            f"implausible amplitude{where}: 99.9th percentile |x| = {robust_max:.4g} mV exceeds {MAX_PLAUSIBLE_MV} mV; "
            f"the signal looks like {hint}, not millivolts. Convert it to mV (e.g. divide microvolts by 1000) "
            "or declare the correct unit."
        )
    rows = signal.reshape(-1, signal.shape[-1])
    if rows.shape[-1] <= 10:
        return
    spread = float(np.max(_spread(rows)))
    if spread == 0:
        raise ECGValueError(f"flat signal{where}: every lead is constant (e.g. all zeros); there is no ECG to read")
    if spread < MIN_PLAUSIBLE_PEAK_TO_PEAK_MV:
        raise ECGValueError(
            f"implausible amplitude{where}: every lead spans less than {MIN_PLAUSIBLE_PEAK_TO_PEAK_MV} mV; "
            "the signal looks like volts, not millivolts. Multiply volts by 1000 or declare the correct unit."
        )
    if fs is not None and fs >= MIN_QRS_CHECK_FS_HZ and rows.shape[-1] > QRS_LAG_S * fs + 10:
        low_side = leads is not None and rows.shape[-1] >= MIN_QRS_CHECK_S * fs
        _check_qrs_amplitude(qrs_amplitudes(rows, fs), leads if low_side else None, where)


def _check_qrs_amplitude(amplitudes: np.ndarray, leads: Sequence[str] | None, where: str) -> None:
    """Refuse a per-lead QRS amplitude outside the range genuine ECGs span (a wrong ADC gain or unit); the low side
    only when ``leads`` is given (a record long enough to hold a QRS)."""
    largest = float(np.max(amplitudes))
    if largest > MAX_PLAUSIBLE_QRS_MV:
        raise ECGValueError(
            f"implausible amplitude{where}: a lead's QRS amplitude is {largest:.3g} mV, above the "
            f"{MAX_PLAUSIBLE_QRS_MV:g} mV no genuine ECG reaches (genuine records: 0.9-10.8 mV, typically "
            f"{TYPICAL_QRS_MV:g}): about {largest / TYPICAL_QRS_MV:.0f}x a typical ECG, so the gain or unit is wrong. "
            "Check the file's gain/unit declarations."
        )
    if leads is not None and set(PRECORDIAL_LEADS) <= set(_canonical(leads)) and largest < MIN_PLAUSIBLE_QRS_MV:
        raise ECGValueError(
            f"implausible amplitude{where}: the largest lead's QRS amplitude is {largest:.3g} mV, below the "
            f"{MIN_PLAUSIBLE_QRS_MV:g} mV every genuine 12-lead ECG exceeds (genuine records: 0.9-10.8 mV, typically "
            f"{TYPICAL_QRS_MV:g}): about 1/{TYPICAL_QRS_MV / max(largest, 1e-9):.0f} of a typical ECG, so the gain or "
            "unit is wrong. Check the file's gain/unit declarations."
        )


def _canonical(leads: Sequence[str]) -> list[str]:
    if set(PRECORDIAL_LEADS) <= set(leads):  # already canonical (an ECG's leads): skip the name parsing
        return list(leads)
    names = []
    for name in leads:
        try:
            names.append(canonical_lead_name(name))
        except ValueError:
            continue
    return names


def _spread(rows: np.ndarray) -> np.ndarray:
    """Per-row p99 - p1 as order statistics. Two single-``kth`` partitions: NumPy's multi-``kth`` path is ~5x slower."""
    n = rows.shape[-1]
    k1, k99 = int(0.01 * (n - 1)), int(0.99 * (n - 1))
    return np.partition(rows, k99, axis=-1)[:, k99] - np.partition(rows, k1, axis=-1)[:, k1]


def _order_statistic(values: np.ndarray, q: float) -> float:
    """The ``q`` quantile as an order statistic (``np.partition``: ~2x faster than ``np.percentile`` here, which
    matters because every record read and every pipeline run checks its units)."""
    k = int(q * (values.size - 1))
    return float(np.partition(values, k)[k])
