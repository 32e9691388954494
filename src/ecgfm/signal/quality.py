"""Signal-quality checks run on an :class:`~ecgfm.ECG` before prediction: is this record fit to be read?

Each check is a small function returning a :class:`CheckResult` (``pass``, ``fail`` or ``not_assessed`` with the
reason, the leads at fault, the measured value and the threshold). :func:`assess_quality` runs them all and returns a
:class:`QualityReport` (``report.ok``, ``report.problems`` in plain language, per-lead results, ``to_dict()``).

Thresholds were chosen on PTB-XL folds 1-9 (clean records and synthetic corruptions of them) and are reported on fold
10 by ``benchmarks/quality.py``; docs/trust.md gives the measured detection and false-alarm rates. Every check works at
the record's own sampling rate (no resampling) and costs a few milliseconds for a 10-s 500 Hz record: the filtered
signal, its spectrum and the heartbeats are computed once (:class:`QualitySignals`) and shared by the checks.

What the checks cannot do: they judge the recording, not the heart. A genuine asystole looks like a flat record, a
patient with dextrocardia looks like reversed arm electrodes, and an ECG can pass every check and still be misread.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

import numpy as np
from scipy import ndimage
from scipy import signal as sps

from ecgfm.ecg import ECG
from ecgfm.leads import DERIVED_LIMB_LEADS, STANDARD_LEADS
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
                "value": _json_float(self.value), "threshold": _json_float(self.threshold),
                "details": _jsonable(self.details)}


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
        return {"ok": self.ok, "problems": self.problems, "heart_rate": _json_float(self.heart_rate),
                "duration": self.duration, "fs": self.fs, "lead_problems": self.lead_problems,
                "checks": [check.to_dict() for check in self.checks],
                "lead_metrics": {lead: {k: _json_float(v) for k, v in metrics.items()}
                                 for lead, metrics in self.lead_metrics.items()}}


def _json_float(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _jsonable(value):
    """Details for strict JSON: floats (NaN -> None) inside nested dicts and lists."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return _json_float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


class QualitySignals:
    """What the checks share for one record, each computed on first use: the 1-40 Hz signal, the power spectrum,
    per-lead amplitudes, flat leads and the heartbeats."""

    def __init__(self, ecg: ECG):
        self.ecg = ecg
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
        """Welch power spectral density per lead (mV^2/Hz) with 1-Hz bins (1-s Hann segments, half overlap)."""
        nperseg = min(int(round(self.fs)), self.x.shape[1])
        return sps.welch(self.x, fs=self.fs, nperseg=nperseg, axis=-1)

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


def check_duration(ecg: ECG | QualitySignals) -> CheckResult:
    """Records under MIN_SECONDS are too short to judge or to read."""
    s = _signals(ecg)
    seconds = s.x.shape[1] / s.fs
    if seconds >= MIN_SECONDS:
        return CheckResult("duration", "pass", value=seconds, threshold=MIN_SECONDS)
    return CheckResult("duration", "fail", f"record too short ({seconds:.1f} s; at least {MIN_SECONDS:g} s needed)",
                       value=seconds, threshold=MIN_SECONDS)


def check_missing_leads(ecg: ECG | QualitySignals) -> CheckResult:
    """Standard leads absent from the record (limb leads derivable from I and II do not count) or zero-filled."""
    s = _signals(ecg)
    present = set(s.leads)
    derivable = {"I", "II"} <= present
    absent = [lead for lead in STANDARD_LEADS
              if lead not in present and not (derivable and lead in DERIVED_LIMB_LEADS)]
    filled = [lead for lead in s.ecg.meta.get("zero_filled_leads", ()) if lead not in absent]
    missing = absent + list(filled)
    if not missing:
        return CheckResult("missing_leads", "pass", value=0.0, threshold=0.0)
    return CheckResult("missing_leads", "fail", f"{_fmt_leads(missing)} missing", tuple(missing), float(len(missing)),
                       0.0)


def check_flat_leads(ecg: ECG | QualitySignals) -> CheckResult:
    """Leads with no signal (spanning under FLAT_SPAN_MV) over at least FLAT_FRACTION of the record."""
    s = _signals(ecg)
    if not s.flat_leads:
        return CheckResult("flat_leads", "pass", value=float(s.flat_fraction.max()), threshold=FLAT_FRACTION)
    seconds = s.x.shape[1] / s.fs
    parts = [f"{lead} ({s.flat_fraction[s.index(lead)] * seconds:.0f} of {seconds:.0f} s)" for lead in s.flat_leads]
    return CheckResult("flat_leads", "fail", f"flat or disconnected: {', '.join(parts)}", s.flat_leads,
                       float(s.flat_fraction.max()), FLAT_FRACTION)


def _rail_runs(x: np.ndarray, rail: np.ndarray) -> np.ndarray:
    """Per lead, how many separate runs of samples sit exactly at ``rail``."""
    at_rail = x == rail[:, None]
    starts = at_rail[:, 1:] & ~at_rail[:, :-1]
    return starts.sum(axis=1) + at_rail[:, 0]


def _rail_excess(x: np.ndarray, rail: np.ndarray, below: bool) -> np.ndarray:
    """Per lead, samples exactly at ``rail`` over samples at the nearest value on the signal side of it.

    A clipped signal piles up at the rail and passes the values next to it quickly; a coarsely quantised genuine
    peak (e.g. 5-50 uV steps) spends about as long one step below its maximum as at it.
    """
    out = np.zeros(x.shape[0])
    for k in range(x.shape[0]):
        inside = x[k][x[k] > rail[k]] if below else x[k][x[k] < rail[k]]
        if inside.size == 0:
            continue
        neighbour = inside.min() if below else inside.max()
        out[k] = np.count_nonzero(x[k] == rail[k]) / max(np.count_nonzero(x[k] == neighbour), 1)
    return out


def check_clipping(ecg: ECG | QualitySignals) -> CheckResult:
    """Leads whose maximum or minimum recurs exactly in CLIP_MIN_RUNS or more separate places and piles up there
    (amplifier saturation, clipped display or export)."""
    s = _signals(ecg)
    if s.x.shape[1] < 2 * CLIP_MIN_RUNS:
        return CheckResult("clipping", "not_assessed", "record too short to look for clipping")
    runs = np.zeros(len(s.leads))
    for rail, below in ((s.x.max(axis=1), False), (s.x.min(axis=1), True)):
        held = _rail_runs(s.x, rail)
        # Only leads held at a rail are worth the second look: a pile-up at the rail, not a flat quantised peak.
        candidates = held >= CLIP_MIN_RUNS
        if candidates.any():
            held = np.where(candidates & (_rail_excess(s.x, rail, below) >= CLIP_RAIL_EXCESS), held, 0)
        runs = np.maximum(runs, np.where(candidates, held, 0))
    clipped = tuple(lead for lead, n in zip(s.leads, runs) if n >= CLIP_MIN_RUNS and lead not in s.flat_leads)
    if not clipped:
        return CheckResult("clipping", "pass", value=float(runs.max()), threshold=CLIP_MIN_RUNS)
    rows = [s.index(lead) for lead in clipped]
    rails = ", ".join(f"{lead} at {s.x[r].min():+.2f}/{s.x[r].max():+.2f} mV" for lead, r in zip(clipped, rows))
    return CheckResult("clipping", "fail", f"clipped or saturated: {rails}", clipped, float(runs.max()),
                       CLIP_MIN_RUNS)


def check_baseline_wander(ecg: ECG | QualitySignals) -> CheckResult:
    """Baseline moving by more than WANDER_MV in at least WANDER_LEAD_FRACTION of the (non-flat) leads."""
    s = _signals(ecg)
    span = s.baseline_span
    if np.isnan(span).all():
        return CheckResult("baseline_wander", "not_assessed", "record too short to measure baseline wander")
    live = [k for k, lead in enumerate(s.leads) if lead not in s.flat_leads]
    if not live:
        return CheckResult("baseline_wander", "not_assessed", "no lead with signal")
    wandering = tuple(s.leads[k] for k in live if span[k] > WANDER_MV)
    fraction = len(wandering) / len(live)
    details = {"median_span_mv": float(np.median(span[live]))}
    if fraction < WANDER_LEAD_FRACTION:
        return CheckResult("baseline_wander", "pass", leads=wandering, value=fraction,
                           threshold=WANDER_LEAD_FRACTION, details=details)
    return CheckResult("baseline_wander", "fail",
                       f"baseline wander over {WANDER_MV:g} mV in {len(wandering)} of {len(live)} leads "
                       f"(median {details['median_span_mv']:.1f} mV)", wandering, fraction, WANDER_LEAD_FRACTION,
                       details)


def check_powerline(ecg: ECG | QualitySignals) -> CheckResult:
    """50 or 60 Hz mains interference over POWERLINE_MV in any lead (not assessed when the rate cannot show it)."""
    s = _signals(ecg)
    measured = {hz: s.mains(hz) for hz in MAINS_HZ}
    if any(m is None for m in measured.values()):
        return CheckResult("powerline", "not_assessed",
                           f"{s.fs:g} Hz sampling cannot show {'/'.join(f'{h:g}' for h in MAINS_HZ)} Hz interference"
                           if s.x.shape[1] >= 2 * s.fs else "record too short to measure mains interference")
    worst, failures, details = 0.0, [], {}
    for hz, (amplitude, ratio) in measured.items():
        hit = (amplitude > POWERLINE_MV) & (ratio > POWERLINE_RATIO)
        details[f"max_{hz:g}hz_mv"] = float(amplitude.max())
        worst = max(worst, float(amplitude[hit].max()) if hit.any() else 0.0)
        if hit.any():
            leads = tuple(lead for lead, h in zip(s.leads, hit) if h)
            failures.append((hz, leads, float(amplitude[hit].max())))
    if not failures:
        return CheckResult("powerline", "pass", value=max(details.values()), threshold=POWERLINE_MV, details=details)
    leads = tuple(dict.fromkeys(lead for _, ls, _ in failures for lead in ls))
    text = "; ".join(f"{hz:g} Hz mains interference up to {amp:.2f} mV in {len(ls)} lead{'s' * (len(ls) > 1)}"
                     for hz, ls, amp in failures)
    return CheckResult("powerline", "fail", text, leads, worst, POWERLINE_MV, details)


def check_high_frequency_noise(ecg: ECG | QualitySignals) -> CheckResult:
    """Muscle (EMG) or other broadband noise above HF_NOISE_RATIO of the QRS amplitude in HF_MIN_LEADS or more leads."""
    s = _signals(ecg)
    ratio = s.hf_noise
    if ratio is None:
        return CheckResult("high_frequency_noise", "not_assessed",
                           "record too short to measure noise" if s.x.shape[1] < 2 * s.fs else
                           f"{s.fs:g} Hz sampling leaves no band above {HF_BAND_HZ[0]:g} Hz to measure noise in")
    noisy = tuple(lead for lead, r in zip(s.leads, ratio) if r > HF_NOISE_RATIO and lead not in s.flat_leads)
    value = float(np.sort(ratio)[-min(HF_MIN_LEADS, ratio.size)])
    if len(noisy) < HF_MIN_LEADS:
        return CheckResult("high_frequency_noise", "pass", leads=noisy, value=value, threshold=HF_NOISE_RATIO)
    return CheckResult("high_frequency_noise", "fail",
                       f"high-frequency (muscle) noise in {len(noisy)} leads, up to {ratio.max():.0%} of the QRS "
                       "amplitude", noisy, value, HF_NOISE_RATIO)


def check_amplitude(ecg: ECG | QualitySignals) -> CheckResult:
    """QRS amplitudes outside physiological ranges: a wrong gain or unit, or no ECG at all."""
    s = _signals(ecg)
    live = [k for k, lead in enumerate(s.leads) if lead not in s.flat_leads]
    if not live:
        return CheckResult("amplitude", "not_assessed", "no lead with signal")
    amplitude = s.amplitude[live]
    median, largest = float(np.median(amplitude)), float(amplitude.max())
    details = {"median_mv": median, "max_mv": largest}
    if median > MAX_MEDIAN_AMPLITUDE_MV or largest > MAX_LEAD_AMPLITUDE_MV:
        big = tuple(s.leads[k] for k in live if s.amplitude[k] > MAX_LEAD_AMPLITUDE_MV)
        return CheckResult("amplitude", "fail",
                           f"implausibly large amplitude (median lead {median:.1f} mV, largest {largest:.1f} mV): "
                           "wrong gain or units?", big, median, MAX_MEDIAN_AMPLITUDE_MV, details)
    if largest < MIN_MAX_AMPLITUDE_MV:
        return CheckResult("amplitude", "fail",
                           f"implausibly small amplitude (largest lead {largest:.2f} mV): wrong gain or no ECG?",
                           (), largest, MIN_MAX_AMPLITUDE_MV, details)
    return CheckResult("amplitude", "pass", value=median, threshold=MAX_MEDIAN_AMPLITUDE_MV, details=details)


def heart_rate(ecg: ECG | QualitySignals) -> float | None:
    """Ventricular rate (bpm) from the median RR interval of the detected beats; None with fewer than two beats."""
    s = _signals(ecg)
    if s.beats.size < 2:
        return None
    return float(60.0 * s.fs / np.median(np.diff(s.beats)))


def check_heart_rate(ecg: ECG | QualitySignals) -> CheckResult:
    """A rate outside MIN_HEART_RATE-MAX_HEART_RATE bpm (or no beats found) means the detector sees no heartbeats."""
    s = _signals(ecg)
    if s.x.shape[1] < 2 * s.fs or len(s.flat_leads) == len(s.leads):
        return CheckResult("heart_rate", "not_assessed", "record too short or without signal")
    rate = heart_rate(s)
    if rate is None:
        return CheckResult("heart_rate", "fail", "no heartbeats found", value=None, threshold=MIN_HEART_RATE)
    if MIN_HEART_RATE <= rate <= MAX_HEART_RATE:
        return CheckResult("heart_rate", "pass", value=rate, threshold=MIN_HEART_RATE)
    return CheckResult("heart_rate", "fail",
                       f"implausible heart rate {rate:.0f} bpm (expected {MIN_HEART_RATE:g}-{MAX_HEART_RATE:g})",
                       value=rate, threshold=MIN_HEART_RATE if rate < MIN_HEART_RATE else MAX_HEART_RATE)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denominator = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / denominator if denominator > 0 else 0.0


def _qrs_polarity(s: QualitySignals, row: int) -> float | None:
    """Net area of the median QRS (+-50 ms around the beats) over its absolute area: +1 upright, -1 inverted."""
    half = int(0.05 * s.fs)
    beats = s.beats[(s.beats >= half) & (s.beats < s.x.shape[1] - half)]
    if beats.size == 0:
        return None
    qrs = np.median(np.stack([s.filtered[row, b - half: b + half + 1] for b in beats]), axis=0)
    total = float(np.abs(qrs).sum())
    return float(qrs.sum()) / total if total > 0 else None


def check_limb_reversal(ecg: ECG | QualitySignals) -> CheckResult:
    """Arm/leg electrode reversal: recorded lead I (II) anti-correlated with lead I (II) reconstructed from the chest
    leads means limb cables swapped; which pair (LA/RA or RA/LL) is the swap whose undoing best restores both leads.

    Einthoven's law cannot show this (a swapped recording still satisfies II = I + III exactly), and the textbook sign,
    a negative QRS in lead I with a positive aVR, fires on 2% of clean PTB-XL records while missing 20% of swaps; it is
    reported in ``details`` as supporting evidence. Dextrocardia also fails this check (its lead I is inverted too),
    and LA/LL reversal, which changes the limb leads only subtly, is not detected.
    """
    s = _signals(ecg)
    chest = s.usable(PRECORDIAL)
    limb = s.usable(("I", "II"))
    if chest is None or limb is None or s.x.shape[1] < s.fs:
        return CheckResult("limb_reversal", "not_assessed", "needs leads I, II and V1-V6 with signal")
    if s.precordial_swap is not None and s.precordial_swap[0] > PRECORDIAL_GAIN:
        return CheckResult("limb_reversal", "not_assessed", "chest leads out of order: they cannot vouch for the limb "
                           "leads")
    reconstructed = LIMB_FROM_CHEST @ s.filtered[chest]
    corr_i = _correlation(s.filtered[limb[0]], reconstructed[0])
    corr_ii = _correlation(s.filtered[limb[1]], reconstructed[1])
    details: dict[str, Any] = {"corr_I": corr_i, "corr_II": corr_ii}
    avr = s.index("aVR")
    polarity_i = _qrs_polarity(s, limb[0])
    polarity_avr = _qrs_polarity(s, avr) if avr is not None else None
    details.update(qrs_polarity_I=polarity_i, qrs_polarity_aVR=polarity_avr)
    classic = polarity_i is not None and polarity_avr is not None and polarity_i < 0 < polarity_avr
    evidence = "; lead I QRS negative with aVR positive" if classic else ""
    if corr_i >= LA_RA_MAX_CORRELATION and corr_ii >= RA_LL_MAX_CORRELATION:
        return CheckResult("limb_reversal", "pass", value=corr_i, threshold=LA_RA_MAX_CORRELATION, details=details)
    # Which swap: undo each one and keep the one whose corrected I and II best match the reconstruction.
    lead_i, lead_ii = s.filtered[limb[0]], s.filtered[limb[1]]
    undone = {"LA/RA": (-lead_i, lead_ii - lead_i), "RA/LL": (lead_i - lead_ii, -lead_ii)}
    fit = {swap: _correlation(a, reconstructed[0]) + _correlation(b, reconstructed[1])
           for swap, (a, b) in undone.items()}
    swap = max(fit, key=fit.get)
    details["swap_fit"] = fit
    lead, corr, limit = ("I", corr_i, LA_RA_MAX_CORRELATION) if corr_i < LA_RA_MAX_CORRELATION else \
        ("II", corr_ii, RA_LL_MAX_CORRELATION)
    text = ("arm electrodes look reversed (LA/RA), or dextrocardia" if swap == "LA/RA" else
            "right-arm and left-leg electrodes look reversed (RA/LL)")
    return CheckResult("limb_reversal", "fail", f"{text}: lead {lead} is inverted relative to the chest leads "
                       f"(r = {corr:.2f}){evidence}", ("I", "II", "III", "aVR", "aVL", "aVF"), corr, limit, details)


def check_limb_consistency(ecg: ECG | QualitySignals) -> CheckResult:
    """Einthoven (III = II - I) and Goldberger (aVR, aVL, aVF from I and II) consistency of the limb leads.

    Catches a mislabelled or misordered limb channel, or one taken from another recording; it cannot catch electrode
    reversal (a reversed recording is still consistent). When the device derived III, aVR, aVL and aVF from I and II
    (most do, PTB-XL included) they agree by construction: ``details["derived"]`` says so and the check then shows only
    that the file was not tampered with.
    """
    s = _signals(ecg)
    base = s.usable(("I", "II"))
    others = [lead for lead in DERIVED_LIMB_LEADS if s.usable((lead,)) is not None]
    if base is None or not others:
        return CheckResult("limb_consistency", "not_assessed",
                           "needs leads I, II and at least one of III, aVR, aVL, aVF")
    lead_i, lead_ii = s.filtered[base[0]], s.filtered[base[1]]
    expected = {"III": lead_ii - lead_i, "aVR": -(lead_i + lead_ii) / 2, "aVL": lead_i - lead_ii / 2,
                "aVF": lead_ii - lead_i / 2}
    scale = max(float(np.sqrt(np.mean(lead_i ** 2))), float(np.sqrt(np.mean(lead_ii ** 2))), 1e-6)
    residual = {lead: float(np.sqrt(np.mean((s.filtered[s.index(lead)] - expected[lead]) ** 2))) / scale
                for lead in others}
    worst = max(residual.values())
    details = {"residual": residual, "derived": worst < DERIVED_RESIDUAL}
    bad = tuple(lead for lead, r in residual.items() if r > EINTHOVEN_MAX_RESIDUAL)
    if not bad:
        return CheckResult("limb_consistency", "pass", value=worst, threshold=EINTHOVEN_MAX_RESIDUAL, details=details)
    return CheckResult("limb_consistency", "fail",
                       f"limb leads inconsistent (Einthoven/Goldberger): {', '.join(bad)} disagree with I and II "
                       f"(residual up to {worst:.0%}); mislabelled or misordered leads?", bad, worst,
                       EINTHOVEN_MAX_RESIDUAL, details)


def check_precordial_order(ecg: ECG | QualitySignals) -> CheckResult:
    """Chest leads out of order (cables swapped or electrodes misplaced): exchanging two of them makes neighbouring
    leads markedly more alike.

    Detects gross interchanges (e.g. V2 with V5); swaps of neighbours (V1/V2) change little and are mostly missed,
    and a genuine poor R-wave progression (anterior infarction) can look out of order.
    """
    s = _signals(ecg)
    if s.precordial_swap is None:
        return CheckResult("precordial_order", "not_assessed", "needs V1-V6 with signal")
    gain, pair = s.precordial_swap
    details = {"pair": list(pair) if pair else None}
    if gain <= PRECORDIAL_GAIN:
        return CheckResult("precordial_order", "pass", value=gain, threshold=PRECORDIAL_GAIN, details=details)
    return CheckResult("precordial_order", "fail",
                       f"chest leads {pair[0]} and {pair[1]} look interchanged (cables swapped or electrodes "
                       "misplaced)", pair, gain, PRECORDIAL_GAIN, details)


#: The checks :func:`assess_quality` runs, in report order.
CHECKS: tuple[Callable[[QualitySignals], CheckResult], ...] = (
    check_duration, check_missing_leads, check_flat_leads, check_clipping, check_baseline_wander, check_powerline,
    check_high_frequency_noise, check_amplitude, check_heart_rate, check_limb_consistency, check_limb_reversal,
    check_precordial_order,
)


def assess_quality(ecg: ECG) -> QualityReport:
    """Run every check on ``ecg``; ``report.ok`` is False when any failed, ``report.problems`` says why."""
    s = QualitySignals(ecg)
    checks = [check(s) for check in CHECKS]
    nan = np.full(len(s.leads), np.nan)
    per_lead = {"flat_fraction": s.flat_fraction, "amplitude_mv": s.amplitude, "baseline_span_mv": s.baseline_span,
                "hf_noise_ratio": nan if s.hf_noise is None else s.hf_noise}
    for hz in MAINS_HZ:
        measured = s.mains(hz)
        per_lead[f"mains_{hz:g}hz_mv"] = nan if measured is None else measured[0]
    lead_metrics = {lead: {name: float(values[k]) for name, values in per_lead.items()}
                    for k, lead in enumerate(s.leads)}
    return QualityReport(checks, lead_metrics, heart_rate(s), s.x.shape[1] / s.fs, s.fs)
