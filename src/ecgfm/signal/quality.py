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
from typing import Any, Callable, Sequence

import numpy as np

from ecgfm.ecg import ECG
from ecgfm.leads import DERIVED_LIMB_LEADS, STANDARD_LEADS
from ecgfm.signal.quality_base import (CLIP_MIN_RUNS, CLIP_RAIL_EXCESS, CheckResult, DERIVED_RESIDUAL,
                                     EINTHOVEN_MAX_RESIDUAL, FLAT_FRACTION, HF_BAND_HZ, HF_MIN_LEADS,
                                     HF_NOISE_RATIO, LA_RA_MAX_CORRELATION, LIMB_FROM_CHEST, MAINS_HZ,
                                     MAX_HEART_RATE, MAX_LEAD_AMPLITUDE_MV, MAX_MEDIAN_AMPLITUDE_MV, MIN_HEART_RATE,
                                     MIN_MAX_AMPLITUDE_MV, MIN_SECONDS, POWERLINE_MV, POWERLINE_RATIO, PRECORDIAL,
                                     PRECORDIAL_GAIN, QualityReport, QualitySignals, RA_LL_MAX_CORRELATION,
                                     WANDER_LEAD_FRACTION, WANDER_MV, _fmt_leads, _signals)


def check_duration(ecg: ECG | QualitySignals) -> CheckResult:
    """Records under MIN_SECONDS are too short to judge or to read."""
    s = _signals(ecg)
    seconds = s.x.shape[1] / s.fs
    if seconds >= MIN_SECONDS:
        return CheckResult("duration", "pass", value=seconds, threshold=MIN_SECONDS)
    return CheckResult("duration", "fail", f"record too short ({seconds:.1f} s; at least {MIN_SECONDS:g} s needed)",
                       value=seconds, threshold=MIN_SECONDS)


def check_missing_leads(ecg: ECG | QualitySignals) -> CheckResult:
    """Expected leads (the 12 standard ones unless said) absent from the record (limb leads derivable from I and II do
    not count) or zero-filled."""
    s = _signals(ecg)
    present = set(s.leads)
    derivable = {"I", "II"} <= present
    absent = [lead for lead in s.expected_leads
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


def assess_quality(ecg: ECG, expected_leads: Sequence[str] = STANDARD_LEADS) -> QualityReport:
    """Run every check on ``ecg``; ``report.ok`` is False when any failed, ``report.problems`` says why.
    ``expected_leads``: the leads the record should hold (a model reading lead sets expects only its set's)."""
    s = QualitySignals(ecg, expected_leads)
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
