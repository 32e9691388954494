"""What the signal-quality checks share: their thresholds, the per-record signals they measure once
(:class:`QualitySignals`), and their results (:class:`CheckResult`, :class:`QualityReport`). The checks themselves and
:func:`~ecgfm.signal.quality.assess_quality` are in :mod:`ecgfm.signal.quality`."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Sequence

import numpy as np
from scipy import ndimage
from scipy import signal as sps

from ecgfm.ecg import ECG
from ecgfm.files import to_jsonable
from ecgfm.leads import STANDARD_LEADS
from ecgfm.signal.filters import bandpass

PRECORDIAL = ("V1", "V2", "V3", "V4", "V5", "V6")

# --- thresholds (each chosen on PTB-XL folds 1-9; the rates they give on fold 10 are in docs/trust.md) ------------
#: Shortest record the checks judge. A standard ECG is 10 s; under 5 s there are too few beats (4-6 at rest) to
#: measure rate or rhythm, and a model trained on 10-s inputs sees mostly padding.
MIN_SECONDS = 5.0
#: A 1-s window whose samples span less than this (mV) holds no ECG: the smallest QRS complexes are ~0.1 mV and
#: amplifier noise alone spans ~0.01-0.03 mV, so a span under 0.02 mV means a disconnected, zero-filled or constant
#: channel.
FLAT_SPAN_MV = 0.02
#: A lead is flat when flat windows cover at least this fraction of the record (2 s of a 10-s ECG): a lead that drops
#: out that long has lost two or more beats.
FLAT_FRACTION = 0.2
#: A lead is clipped when its maximum (or minimum) value recurs exactly in at least CLIP_MIN_RUNS separate places: a
#: saturated amplifier or a clipped export flattens every beat that exceeds its range at the same rail value, while a
#: genuine peak is reached once. Exact equality: the rail is one number, whereas near-equal samples occur naturally at
#: smooth peaks (e.g. after resampling). Clean PTB-XL folds 1-9: 0.3% of records; 96% of the records that clipping at
#: +-2 mV changes in 3 or more places.
CLIP_MIN_RUNS = 3
#: ... and the rail must hold at least this many times as many samples as the value next to it (see _rail_excess):
#: what tells saturation from the flat top of a coarsely quantised peak (5 uV steps: 0.3% false alarms on folds 1-9).
CLIP_RAIL_EXCESS = 5.0
#: Baseline: the median of each 0.5-s block (robust to QRS and most of the T wave). A lead wanders when its baseline
#: spans more than this (mV): 1 mV is two large squares of ECG paper, 10x the ST deviations (0.1 mV) that matter.
WANDER_BLOCK_SECONDS = 0.5
WANDER_MV = 1.0
#: The record wanders when at least this fraction of its leads do (respiration and movement move several electrodes;
#: one drifting lead alone is reported per lead but does not fail the record).
WANDER_LEAD_FRACTION = 0.5
#: Mains interference: the amplitude (mV) of the 50 or 60 Hz line above the neighbouring spectrum. 0.05 mV (half a
#: small square) visibly thickens the trace; clean PTB-XL records stay under 0.03 mV.
POWERLINE_MV = 0.05
#: ... and the line must stand out of its neighbourhood (power ratio), so broadband noise is not called mains hum.
POWERLINE_RATIO = 10.0
MAINS_HZ = (50.0, 60.0)
#: High-frequency (muscle, EMG) noise: the noise floor above 40 Hz (median of the spectrum, robust to mains lines),
#: expressed as the standard deviation of a white noise with that density, relative to the lead's QRS peak-to-peak
#: amplitude. At 0.12 the noise band (+-2 sd) is half the QRS height and P waves (~0.1 of QRS) are lost in it; clean
#: PTB-XL folds 1-9 exceed it in 3 leads in 0.2% of records.
HF_BAND_HZ = (40.0, 150.0)
HF_NOISE_RATIO = 0.12
#: ... in at least this many leads (muscle tremor reaches the leads of one or two limb electrodes, at least 3 leads).
HF_MIN_LEADS = 3
#: Implausible amplitude (peak-to-peak of the 1-40 Hz signal, 0.5th to 99.5th percentile, mV). The largest QRS
#: complexes reported (severe LVH, hypertrophic cardiomyopathy) reach 6-8 mV; a median lead over 5 mV or any lead over
#: 15 mV means a wrong gain (x5-x10) or artefact. Below 0.3 mV in every lead is under half the low-voltage criteria
#: (0.5 mV limb, 1 mV chest leads): a gain error or no ECG. Clean PTB-XL: median lead 0.4-2.9 mV, largest lead 0.8-9 mV.
MAX_MEDIAN_AMPLITUDE_MV = 5.0
MAX_LEAD_AMPLITUDE_MV = 15.0
MIN_MAX_AMPLITUDE_MV = 0.3
#: Plausible ventricular rate (bpm) of a resting 12-lead ECG: complete heart block escape rhythms reach ~20-30 bpm and
#: the fastest tachycardias ~250-300 bpm; outside 25-300 the beat detector has found noise, not heartbeats.
MIN_HEART_RATE = 25.0
MAX_HEART_RATE = 300.0
#: Limb-electrode reversal: correlation of the recorded lead I (II) with lead I (II) reconstructed from the six chest
#: leads by a fixed linear map (chest leads are referred to Wilson's terminal, which limb-electrode swaps leave
#: unchanged). LA/RA reversal inverts lead I; RA/LL reversal inverts lead II. Thresholds: about the 0.5th and 0.25th
#: percentiles of clean PTB-XL folds 1-9 (left-axis deviation and paced records make up the tail); they catch 97.6%
#: of LA/RA and 94.6% of RA/LL reversals of those records.
LA_RA_MAX_CORRELATION = -0.2
RA_LL_MAX_CORRELATION = -0.4
#: Least-squares map from V1..V6 to leads I and II (1-40 Hz signals), fitted on 1000 records of PTB-XL folds 1-8 by
#: ``python benchmarks/quality.py --fit-reconstruction``.
LIMB_FROM_CHEST = np.array([[-0.464, 0.185, 0.036, -0.071, 0.108, 0.298],
                            [-0.023, -0.093, 0.133, 0.086, -0.003, 0.431]], dtype=np.float32)
#: Precordial misplacement: neighbouring chest electrodes see similar signals, so the sum of correlations between
#: adjacent leads (V1-V2, ..., V5-V6) is highest in the true order. A record fails when exchanging two chest leads
#: raises that sum by more than this (clean PTB-XL folds 1-9: exceeded by 0.4%).
PRECORDIAL_GAIN = 0.7
#: Limb leads recomputed by the device from I and II obey Einthoven/Goldberger to rounding; residuals under this
#: (relative RMS) mean "derived", over EINTHOVEN_MAX_RESIDUAL the limb leads contradict each other.
DERIVED_RESIDUAL = 0.02
EINTHOVEN_MAX_RESIDUAL = 0.3

#: The band the amplitude, beat and lead-correlation checks look at: 1 Hz (not the diagnostic 0.5 Hz) so that baseline
#: wander, which has its own check, cannot disturb the correlations; 40 Hz keeps the QRS and drops muscle noise.
FILTER_BAND_HZ = (1.0, 40.0)


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict: ``status`` is ``pass``, ``fail`` or ``not_assessed`` (then ``message`` says why)."""

    name: str
    status: str
    message: str = ""
    leads: tuple[str, ...] = ()
    value: float | None = None
    threshold: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "message": self.message, "leads": list(self.leads),
                "value": to_jsonable(self.value), "threshold": to_jsonable(self.threshold),
                "details": to_jsonable(self.details)}


@dataclass
class QualityReport:
    """All checks of one record: ``ok`` when none failed; ``problems`` lists the failures in plain language."""

    checks: list[CheckResult]
    lead_metrics: dict[str, dict[str, float]]
    heart_rate: float | None
    duration: float
    fs: float

    @property
    def ok(self) -> bool:
        return not any(check.failed for check in self.checks)

    @property
    def problems(self) -> list[str]:
        return [check.message for check in self.checks if check.failed]

    @property
    def failed(self) -> list[str]:
        """Names of the failed checks."""
        return [check.name for check in self.checks if check.failed]

    @property
    def lead_problems(self) -> dict[str, list[str]]:
        """For each lead at fault, the names of the checks that blame it."""
        blamed: dict[str, list[str]] = {}
        for check in self.checks:
            if check.failed:
                for lead in check.leads:
                    blamed.setdefault(lead, []).append(check.name)
        return blamed

    def __getitem__(self, name: str) -> CheckResult:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"no check named {name!r}; checks: {', '.join(c.name for c in self.checks)}")

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems, "heart_rate": to_jsonable(self.heart_rate),
                "duration": self.duration, "fs": self.fs, "lead_problems": self.lead_problems,
                "checks": [check.to_dict() for check in self.checks],
                "lead_metrics": {lead: {k: to_jsonable(v) for k, v in metrics.items()}
                                 for lead, metrics in self.lead_metrics.items()}}


class QualitySignals:
    """What the checks share for one record, each computed on first use: the 1-40 Hz signal, the power spectrum,
    per-lead amplitudes, flat leads and the heartbeats."""

    def __init__(self, ecg: ECG, expected_leads: Sequence[str] = STANDARD_LEADS):
        self.ecg = ecg
        self.expected_leads = tuple(expected_leads)  # what the reader of the record needs (check_missing_leads)
        self.x = ecg.signal
        self.fs = ecg.fs
        self.leads = ecg.leads

    def index(self, lead: str) -> int | None:
        return self.leads.index(lead) if lead in self.leads else None

    def usable(self, leads) -> list[int] | None:
        """Row indices of ``leads`` when all are present and not flat, else None."""
        rows = [self.index(lead) for lead in leads]
        if any(row is None or self.leads[row] in self.flat_leads for row in rows):
            return None
        return rows

    @cached_property
    def filtered(self) -> np.ndarray:
        """FILTER_BAND_HZ zero-phase Butterworth band-pass (order 2: enough for these checks, half the cost of 4)."""
        if self.x.shape[1] < 16:
            return self.x - self.x.mean(axis=1, keepdims=True)
        return bandpass(self.x, self.fs, *FILTER_BAND_HZ, order=2)

    @cached_property
    def flat_fraction(self) -> np.ndarray:
        """Per lead, the fraction of 1-s windows spanning under FLAT_SPAN_MV."""
        width = max(1, min(int(round(self.fs)), self.x.shape[1]))
        n = self.x.shape[1] // width
        windows = self.x[:, : n * width].reshape(self.x.shape[0], n, width)
        return (np.ptp(windows, axis=-1) < FLAT_SPAN_MV).mean(axis=1)

    @cached_property
    def flat_leads(self) -> tuple[str, ...]:
        return tuple(lead for lead, fraction in zip(self.leads, self.flat_fraction) if fraction >= FLAT_FRACTION)

    @cached_property
    def amplitude(self) -> np.ndarray:
        """Per lead peak-to-peak amplitude (mV) of the filtered signal, 0.5th to 99.5th percentile (spike-robust)."""
        low, high = np.percentile(self.filtered, [0.5, 99.5], axis=1)
        return high - low

    @cached_property
    def spectrum(self) -> tuple[np.ndarray, np.ndarray]:
        """Welch power spectral density per lead (mV^2/Hz) with 1-Hz bins (1-s Hann segments, half overlap).

        Segments are not detrended: a segment's mean leaks only into the 0 and 1 Hz bins of a periodic Hann window,
        and the checks read 40 Hz and above, so skipping it changes nothing they use (and saves ~0.2 ms a record).
        """
        nperseg = min(int(round(self.fs)), self.x.shape[1])
        return sps.welch(self.x, fs=self.fs, nperseg=nperseg, axis=-1, detrend=False)

    @cached_property
    def baseline_span(self) -> np.ndarray:
        """Per lead, the span (mV) of the baseline, estimated as the median of each WANDER_BLOCK_SECONDS block (NaN
        when the record holds fewer than three blocks)."""
        width = max(1, int(round(WANDER_BLOCK_SECONDS * self.fs)))
        n = self.x.shape[1] // width
        if n < 3:
            return np.full(len(self.leads), np.nan)
        blocks = np.median(self.x[:, : n * width].reshape(self.x.shape[0], n, width), axis=-1)
        return np.ptp(blocks, axis=1)

    def mains(self, hz: float) -> tuple[np.ndarray, np.ndarray] | None:
        """Per lead, the amplitude (mV) of a ``hz`` line above the neighbouring spectrum (+-2 to 6 Hz) and its power
        ratio to that neighbourhood; None when the sampling rate or the length cannot show it."""
        if self.fs < 2 * (hz + 6.0) or self.x.shape[1] < 2 * self.fs:
            return None
        freqs, psd = self.spectrum
        step = freqs[1] - freqs[0]
        line = np.abs(freqs - hz) <= 1.0 + 1e-9
        around = (np.abs(freqs - hz) <= 6.0) & (np.abs(freqs - hz) > 2.0 + 1e-9)
        background = np.median(psd[:, around], axis=1) * line.sum()
        excess = np.maximum(psd[:, line].sum(axis=1) - background, 0.0) * step
        # A sine of amplitude A carries power A^2 / 2.
        return np.sqrt(2.0 * excess), psd[:, line].sum(axis=1) / np.maximum(background, 1e-20)

    @cached_property
    def hf_noise(self) -> np.ndarray | None:
        """Per lead, the HF_BAND_HZ noise floor as a white-noise standard deviation over the QRS amplitude; None when
        the sampling rate leaves no such band or the record is under 2 s."""
        freqs, psd = self.spectrum
        band = (freqs >= HF_BAND_HZ[0]) & (freqs <= min(HF_BAND_HZ[1], self.fs / 2 - 1.0))
        if band.sum() < 3 or self.x.shape[1] < 2 * self.fs:
            return None
        # The median over the band ignores mains lines and their harmonics; density x (fs / 2) = a white noise's power.
        sigma = np.sqrt(np.median(psd[:, band], axis=1) * self.fs / 2)
        return sigma / np.maximum(self.amplitude, 1e-3)

    @cached_property
    def precordial_swap(self) -> tuple[float, tuple[str, str] | None] | None:
        """How much exchanging the best pair of chest leads raises the summed correlation of neighbouring leads, and
        that pair; None without V1-V6."""
        rows = self.usable(PRECORDIAL)
        if rows is None or self.x.shape[1] < self.fs:
            return None
        corr = np.corrcoef(self.filtered[rows])
        recorded = _adjacency(corr, range(6))
        best_gain, best_pair = 0.0, None
        for i in range(6):
            for j in range(i + 1, 6):
                order = list(range(6))
                order[i], order[j] = j, i
                gain = _adjacency(corr, order) - recorded
                if gain > best_gain:
                    best_gain, best_pair = gain, (PRECORDIAL[i], PRECORDIAL[j])
        return best_gain, best_pair

    @cached_property
    def beats(self) -> np.ndarray:
        """R-peak sample indices from all non-flat leads.

        Not a hand-written detector: the envelope is the squared slope of the filtered leads (Pan & Tompkins' energy
        envelope), each lead scaled by its own 99th percentile so that one lead with huge ectopic beats cannot hide
        the others' normal beats, summed over leads and smoothed over 100 ms; ``scipy.signal.find_peaks`` picks its
        peaks at least 200 ms apart (300 bpm) and above 30% of the envelope's 98th percentile (QRS complexes fill ~10%
        of a record, so the 98th percentile sits on them, whatever the rate).
        """
        rows = [k for k, lead in enumerate(self.leads) if lead not in self.flat_leads]
        if not rows or self.x.shape[1] < 16:
            return np.zeros(0, dtype=int)
        energy = np.diff(self.filtered[rows], axis=1) ** 2
        energy /= np.maximum(np.percentile(energy, 99, axis=1, keepdims=True), 1e-12)
        envelope = ndimage.uniform_filter1d(energy.sum(axis=0), max(1, int(0.1 * self.fs)))
        height = 0.3 * np.percentile(envelope, 98)
        if height <= 0:
            return np.zeros(0, dtype=int)
        peaks, _ = sps.find_peaks(envelope, height=height, distance=max(1, int(0.2 * self.fs)))
        return peaks


def _adjacency(corr: np.ndarray, order) -> float:
    """Summed correlation of neighbouring leads in ``order``."""
    return float(sum(corr[order[k], order[k + 1]] for k in range(len(order) - 1)))


def _signals(ecg: ECG | QualitySignals) -> QualitySignals:
    return ecg if isinstance(ecg, QualitySignals) else QualitySignals(ecg)


def _fmt_leads(leads) -> str:
    leads = list(leads)
    return f"lead {leads[0]}" if len(leads) == 1 else "leads " + ", ".join(leads)
