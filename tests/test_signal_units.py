"""Amplitude plausibility: the per-lead QRS amplitude range genuine ECGs span (benchmarks/amplitude_ranges.py), flat
signals, and what the check must not be fooled by (pacing spikes, baseline wander, short or limb-only records)."""
import numpy as np
import pytest

from ecgfm.errors import ECGValueError
from ecgfm.signal.units import (MAX_PLAUSIBLE_QRS_MV, MIN_PLAUSIBLE_QRS_MV, check_plausible_millivolts,
                                qrs_amplitudes, unit_factor)

from conftest import make_synthetic_ecg


def scaled(mv: float, seconds: float = 10.0, leads=None):
    """A synthetic ECG whose largest lead's QRS amplitude is ``mv``."""
    ecg = make_synthetic_ecg(fs=500, seconds=seconds, **({"leads": leads} if leads else {}))
    return ecg.signal * (mv / qrs_amplitudes(ecg.signal, ecg.fs).max()), ecg.fs, ecg.leads


def check(signal, fs, leads):
    check_plausible_millivolts(signal, "x.hea", fs=fs, leads=leads)


@pytest.mark.parametrize("mv", [0.87, 3.0, 10.75, 15.9])  # the genuine extremes (0.865, 10.75) pass with margin
def test_genuine_range_accepted(mv):
    check(*scaled(mv))


@pytest.mark.parametrize("mv, reason", [(16.1, "above the 16 mV"), (0.54, "below the 0.55 mV")])
def test_outside_the_genuine_range_refused(mv, reason):
    with pytest.raises(ECGValueError, match=f"implausible amplitude in x.hea: .*{reason}"):
        check(*scaled(mv))


def test_thresholds_keep_their_margin():
    """0.865 and 10.75 mV are the smallest and largest genuine records measured; both bounds keep ~1.5x."""
    assert MAX_PLAUSIBLE_QRS_MV / 10.75 > 1.4 and 0.865 / MIN_PLAUSIBLE_QRS_MV > 1.4


def test_low_side_needs_precordial_leads_and_two_seconds():
    check(*scaled(0.3, leads=("I", "II", "III")))  # limb-only (a Holter patch): only the volts check applies
    check(*scaled(0.3, seconds=1.2))  # a median beat: may hold no QRS in a short window, so no low-side check
    with pytest.raises(ECGValueError, match="volts"):
        check(*scaled(0.005, leads=("I", "II", "III")))
    with pytest.raises(ECGValueError, match="above the 16 mV"):
        check(*scaled(20.0, seconds=1.2))  # the high side holds at any length


def test_robust_to_pacing_spikes_and_baseline_wander():
    signal, fs, leads = scaled(3.0)
    spiky = signal.copy()
    spiky[:, ::500] += 25.0  # a 25 mV pacing spike every second on every lead
    check(spiky, fs, leads)
    t = np.arange(signal.shape[1]) / fs
    wander = signal + 3.0 * np.sin(2 * np.pi * 0.3 * t)  # 6 mV peak-to-peak of baseline wander
    assert np.allclose(qrs_amplitudes(wander, fs), qrs_amplitudes(signal, fs), rtol=0.05)


@pytest.mark.parametrize("value", [0.0, 1.5])
def test_flat_signal_refused(value):
    with pytest.raises(ECGValueError, match="flat signal in x.hea: every lead is constant"):
        check(np.full((12, 5000), value, np.float32), 500, None)


def test_without_rate_only_unit_and_flat_checks():
    signal, _, _ = scaled(25.0)
    check_plausible_millivolts(signal)  # no fs: the QRS range is not judged (pipeline CheckUnits on an ECG object)
    with pytest.raises(ECGValueError, match="microvolts"):
        check_plausible_millivolts(signal * 1000)


def test_unit_factor():
    assert unit_factor("µV") == unit_factor("uV") == 1e-3 and unit_factor(" mV ") == 1.0 and unit_factor("V") == 1e3
    with pytest.raises(ValueError, match="unknown amplitude unit"):
        unit_factor("furlong")
