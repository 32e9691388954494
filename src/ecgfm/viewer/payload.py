"""What the viewer page draws, as JSON-ready dicts: an ECG's samples decimated for the screen, its safe metadata,
and one label's attribution mapped onto the record's own time axis.

Everything here is plain data; the page inserts every string with ``textContent`` (never as HTML).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ecgfm.errors import ECGValueError
from ecgfm.leads import STANDARD_LEADS
from ecgfm.printout import heart_rate

#: Points per second sent to the page: at 25 mm/s drawn at 4x the actual size, one point per ~1.5 screen pixels.
DISPLAY_RATE = 250.0
#: The page shows at most this many seconds per request (the rest through ``start_s``): bounded JSON and drawing.
MAX_WINDOW_S = 120.0
DEFAULT_WINDOW_S = 60.0
#: Metadata fields the page may show (never ``source``: it holds the server's temporary path).
SAFE_META = ("record_id", "patient_id", "age", "sex", "acquisition_time", "device", "site", "format", "waveform")
MAX_TEXT = 300
MAX_STATEMENTS = 20
#: Attribution bins sent to the page: 40 ms, the smoothing width of ``ecgfm.plotting.ecg`` (a QRS is ~100 ms wide).
ATTRIBUTION_BIN_S = 0.04
#: Integrated-gradients steps for the page's shading: ecgfm.explain's default. For the default model the completeness
#: gap is then 1.2% of the logit change (median; 13% at the 90th percentile, 4.9% and 25% at 32 steps;
#: benchmarks/results/explain_anylead.json), and one label takes ~0.3 s on 2 threads.
VIEWER_IG_STEPS = 64


def ecg_payload(ecg: Any, file: str | None = None, start_s: float = 0.0, seconds: float | None = None,
                display_rate: float = DISPLAY_RATE) -> dict[str, Any]:
    """The ECG for the page: samples in integer microvolts from ``start_s`` for ``seconds`` (default up to 60 s),
    min/max-decimated to about ``display_rate`` points per second so every R peak keeps its height."""
    duration = ecg.n_samples / ecg.fs
    if not 0 <= start_s < duration:
        raise ECGValueError(f"start_s {start_s:g} is outside the record (0 to {duration:.2f} s)")
    if seconds is not None and not 0 < seconds <= MAX_WINDOW_S:
        raise ECGValueError(f"seconds must be in (0, {MAX_WINDOW_S:g}], got {seconds:g}")
    span = min(duration - start_s, DEFAULT_WINDOW_S if seconds is None else seconds)
    first = int(round(start_s * ecg.fs))
    window = np.asarray(ecg.signal[:, first:first + max(int(round(span * ecg.fs)), 1)], dtype=np.float64)
    samples, rate, offset = decimate_minmax(window, ecg.fs, display_rate)
    rate_bpm = heart_rate(ecg.signal, ecg.fs)
    return {
        "record_id": _text(ecg.meta.get("record_id")), "file": file, "fs": ecg.fs, "duration": duration,
        "start_s": first / ecg.fs, "seconds": window.shape[1] / ecg.fs, "leads": list(ecg.leads),
        "missing_leads": [lead for lead in STANDARD_LEADS if lead not in ecg.leads],
        "heart_rate_bpm": None if rate_bpm is None else round(rate_bpm, 1),
        "display_fs": rate, "sample_offset_s": offset, "units": "uV",
        "samples": np.round(samples * 1000.0).astype(np.int32).tolist(),
        "meta": safe_meta(ecg.meta),
    }


def safe_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata fields the page shows, as short strings (statements as a short list)."""
    out: dict[str, Any] = {key: _text(meta[key]) for key in SAFE_META if meta.get(key) not in (None, "", [])}
    statements = meta.get("statements")
    if isinstance(statements, (list, tuple)) and statements:
        out["statements"] = [_text(s) for s in statements[:MAX_STATEMENTS]]
    return out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 3] + "..."


def decimate_minmax(window: np.ndarray, fs: float, rate: float) -> tuple[np.ndarray, float, float]:
    """Keep each bucket's minimum and maximum, in time order, for about ``rate`` points per second: the envelope a
    screen draws at that resolution.

    Returns the points, their rate and the time of the first point from the window start. Hand-written because
    scipy's decimation low-passes first, which lowers QRS peaks; min/max decimation is the usual waveform-display
    method and keeps every extreme exactly (each point sits within half a bucket of its true time: 4 ms at 500 Hz).
    """
    if fs <= rate:
        return window, fs, 0.0
    bucket = max(int(round(2 * fs / rate)), 2)
    n = window.shape[1] // bucket * bucket
    if n == 0:
        return window, fs, 0.0
    blocks = window[:, :n].reshape(window.shape[0], -1, bucket)
    low, high = blocks.argmin(axis=2), blocks.argmax(axis=2)
    first, second = np.minimum(low, high), np.maximum(low, high)
    pairs = np.stack([np.take_along_axis(blocks, first[..., None], 2)[..., 0],
                      np.take_along_axis(blocks, second[..., None], 2)[..., 0]], axis=2)
    out_rate = 2 * fs / bucket
    return pairs.reshape(window.shape[0], -1), out_rate, 0.5 / out_rate


def model_window(preprocess: Mapping[str, Any] | None, duration: float) -> tuple[float, float]:
    """The stretch of the record (start, seconds) the model reads: all of it, in input-sized segments (a record
    shorter than the input length of ``crop_or_pad`` is zero-padded to it)."""
    steps = (preprocess or {}).get("steps") or []
    crop = next((step for step in steps if step.get("name") == "crop_or_pad"), None)
    seconds = float(crop["seconds"]) if crop and crop.get("seconds") else duration
    return 0.0, max(duration, seconds)


def attribution_payload(explanation: Any, label: str, duration: float, preprocess: Mapping[str, Any] | None,
                        aggregate: str | None = None) -> dict[str, Any]:
    """One label's attribution for the page: per lead, 40-ms bins on the record's time axis, scaled to [-1, 1] by
    the largest bin of any lead (one colour scale for all leads), the stretches that carry any attribution, and a
    sentence saying what the shading covers."""
    item = explanation[label]
    fs = float(explanation.fs)
    attribution = np.asarray(item.attribution, dtype=np.float64)
    width = max(int(round(ATTRIBUTION_BIN_S * fs)), 1)
    n_bins = attribution.shape[1] // width
    bins = attribution[:, :n_bins * width].reshape(attribution.shape[0], n_bins, width).sum(axis=2)
    start, model_seconds = model_window(preprocess, duration)
    bin_s = width / fs
    inside = int(min(n_bins, np.ceil((duration - start) / bin_s)))  # bins past the record's end are padding
    bins = bins[:, :inside]
    scale = float(np.max(np.abs(bins))) if bins.size else 0.0
    values = np.round(bins / scale, 3) if scale > 0 else np.zeros_like(bins)
    covered = _covered(np.abs(bins).sum(axis=0), bin_s, start)
    return {
        "label": item.label, "description": item.description, "probability": item.probability,
        "method": explanation.method, "temporal": bool(getattr(item, "temporal", True)),
        "leads": list(explanation.leads), "bin_s": bin_s, "start_s": start, "values": values.tolist(),
        "covered": covered, "model_window": [start, min(start + model_seconds, duration)],
        "lead_contribution": item.lead_contribution, "top_leads": item.top_leads(),
        "note": coverage_note(covered, start, model_seconds, duration, getattr(item, "temporal", True), aggregate),
    }


def _covered(total: np.ndarray, bin_s: float, start: float, gap_s: float = 0.2) -> list[list[float]]:
    """Stretches (record seconds) whose bins carry attribution, merging gaps shorter than ``gap_s``."""
    if total.size == 0 or total.max() <= 0:
        return []
    active = np.flatnonzero(total > 1e-6 * total.max())  # exactly zero where no gradient reaches (unused windows)
    stretches: list[list[float]] = []
    for index in active:
        t0, t1 = start + index * bin_s, start + (index + 1) * bin_s
        if stretches and t0 - stretches[-1][1] < gap_s:
            stretches[-1][1] = t1
        else:
            stretches.append([t0, t1])
    return [[round(a, 2), round(b, 2)] for a, b in stretches]


def coverage_note(covered: list[list[float]], start: float, model_seconds: float, duration: float,
                  temporal: bool = True, aggregate: str | None = None) -> str:
    """A sentence for the figure: which part of the record the shading covers, and why the rest is blank."""
    end = min(start + model_seconds, duration)
    read = (f"The model reads {start:.1f}-{end:.1f} s of this {duration:.1f}-s record. "
            if start > 0 or end < duration - 1e-6 else "")
    if duration < model_seconds:
        read += f"The record is {duration:.1f} s; the model pads it to {model_seconds:g} s. "
    if not temporal:
        return read + "Lead occlusion: one value per lead, shaded evenly over the lead (no resolution in time)."
    if not covered:
        return read + "No part of the record changes this output (attribution is zero everywhere)."
    span = sum(b - a for a, b in covered)
    where = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in covered)
    if span >= 0.9 * (end - start):
        return read + f"Shading: attribution over the whole stretch the model reads ({where})."
    why = ("the model scores windows of the record and keeps the highest, so only the winning window carries "
           "attribution; evidence elsewhere is not shown" if aggregate == "max" else
           "the rest of the record does not change this output")
    return read + f"Shading covers {where} only: {why}."
