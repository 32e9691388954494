"""What a file holds, as a JSON-ready dict: format, leads, rate, duration, per-lead amplitude range, metadata."""
from __future__ import annotations

import os
from typing import Any

from ecgfm.ecg import ECG
from ecgfm.files import to_jsonable
from ecgfm.io.registry import find_reader, read

#: Metadata keys shown first (the rest follow under ``other``).
MAIN_META_KEYS = ("record_id", "patient_id", "age", "sex", "acquisition_time", "device", "waveform")


def summarize(ecg: ECG) -> dict[str, Any]:
    """Summary of an :class:`ECG`: shape, per-lead min/max/peak-to-peak (mV), statements and metadata."""
    lo, hi = ecg.signal.min(axis=1), ecg.signal.max(axis=1)
    amplitude = {lead: {"min_mv": round(float(a), 4), "max_mv": round(float(b), 4), "ptp_mv": round(float(b - a), 4)}
                 for lead, a, b in zip(ecg.leads, lo, hi)}
    skip = {"statements", "source", "format", "snomed", "scp", *MAIN_META_KEYS}
    return {
        "source": ecg.meta.get("source"),
        "format": ecg.meta.get("format"),
        "leads": list(ecg.leads),
        "fs_hz": ecg.fs,
        "n_samples": ecg.n_samples,
        "duration_s": round(ecg.duration, 4),
        "amplitude": amplitude,
        "statements": list(ecg.meta.get("statements", [])),
        "snomed_labels": snomed_labels(ecg.meta.get("snomed", [])),
        "metadata": {key: to_jsonable(ecg.meta[key]) for key in MAIN_META_KEYS if key in ecg.meta},
        "other": {key: to_jsonable(value) for key, value in ecg.meta.items() if key not in skip},
    }


def snomed_labels(codes: list[str]) -> list[dict[str, Any]]:
    """Each SNOMED-CT label (Challenge ``# Dx:`` codes) with its term and the SCP-ECG statements it implies."""
    from ecgfm.labels.snomed import snomed_term, snomed_to_scp

    return [{"snomed": str(code), "term": snomed_term(code), "scp": snomed_to_scp(code)} for code in codes]


def describe_file(path: str | os.PathLike, format: str | None = None, **options) -> dict[str, Any]:
    """Read ``path`` (any supported format) and summarise it, naming the reader that was used."""
    reader = find_reader(path, format)
    summary = summarize(read(path, format=reader.name, **options))
    summary["format"] = summary["format"] or reader.name
    summary["reader"] = reader.description
    return summary
