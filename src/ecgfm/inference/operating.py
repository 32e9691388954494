"""What turns a model's outputs into a findings list: calibrated probabilities and one threshold per label.

A released model stores its calibration (``info.extra["calibration"]``, fitted on the validation records), its
default thresholds with the rule each follows (``info.thresholds``, ``info.extra["threshold_rules"]``) and, beside
its weights, the validation records' labels and calibrated probabilities (``validation.npz``), so any other rule
(``youden``, ``f1``, ``sens>=0.9``, ``spec>=0.95``, ``ppv>=0.8``) can be fitted when the model is loaded, never on the
records being predicted.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ecgfm.evaluation.thresholds import fit_thresholds
from ecgfm.evaluation.release import load_validation

#: Threshold used for a label the model stores none for.
DEFAULT_THRESHOLD = 0.5

ThresholdSpec = Any  # None | float | str (a rule or a .json/.csv file) | Mapping[str, float]


@dataclass(frozen=True)
class OperatingPoint:
    """Per-label thresholds on the calibrated probability scale, and the rule each follows."""

    thresholds: dict[str, float]
    rules: dict[str, str]


def stored_operating_point(info) -> OperatingPoint:
    """The thresholds the model was released with (0.5 where it stores none)."""
    rules = info.extra.get("threshold_rules") or {}
    default_rule = str(info.extra.get("threshold_rule", "stored")).split(" ")[0]
    return OperatingPoint({lab: float(info.thresholds.get(lab, DEFAULT_THRESHOLD)) for lab in info.labels},
                          {lab: rules.get(lab, default_rule if lab in info.thresholds else "0.5")
                           for lab in info.labels})


def lead_set_operating_points(info) -> dict[str, OperatingPoint]:
    """The thresholds a model reading lead sets was released with for each set (``info.extra["lead_set_thresholds"]``:
    set -> label -> threshold, fitted on the validation records read as that set), with their rule; empty for a
    model without them. A record read as a set uses the set's thresholds: a model reading lead I alone is less sure
    of itself than one reading twelve, so one threshold for both would flag too little on one or too much on the
    other."""
    stored = info.extra.get("lead_set_thresholds") or {}
    rule = str(info.extra.get("threshold_rule", "stored")).split(" ")[0] + " for the lead set"
    base = stored_operating_point(info)
    return {name: OperatingPoint({**base.thresholds, **{k: float(v) for k, v in values.items()}},
                                 {**base.rules, **{k: rule for k in values}}) for name, values in stored.items()}


def operating_point(info, spec: ThresholdSpec = None, folder: str | os.PathLike | None = None) -> OperatingPoint:
    """Thresholds for ``spec``: ``None`` (the model's own), a number (one threshold for all), a mapping or a JSON/CSV
    file of label -> threshold, or a rule fitted on the validation records stored in ``folder``."""
    if spec is None:
        return stored_operating_point(info)
    if isinstance(spec, Mapping):
        return _given(info, spec, "given")
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return OperatingPoint({lab: float(spec) for lab in info.labels}, {lab: f"{float(spec):g}" for lab in info.labels})
    text = str(spec).strip()
    if text.lower().endswith((".json", ".csv")):
        return _given(info, read_thresholds(text), Path(text).name)
    try:
        return operating_point(info, float(text))
    except ValueError:
        pass
    y, p = load_validation(folder, info)
    fitted = fit_thresholds(y, p, info.labels, text)
    return OperatingPoint(fitted.as_mapping(), dict(zip(fitted.labels, fitted.rules)))


def _given(info, values: Mapping[str, float], rule: str) -> OperatingPoint:
    unknown = sorted(set(values) - set(info.labels))
    if unknown:
        raise ValueError(f"thresholds for labels the model does not predict: {unknown}")
    base = stored_operating_point(info)
    return OperatingPoint({**base.thresholds, **{k: float(v) for k, v in values.items()}},
                          {**base.rules, **{k: rule for k in values}})


def read_thresholds(path: str | os.PathLike) -> dict[str, float]:
    """Label -> threshold from a JSON object or a two-column CSV (``label,threshold``); errors name the file."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text())
            return {str(k): float(v) for k, v in data.items()}
        with open(path, newline="") as fh:
            rows = [row for row in csv.reader(fh) if row and not row[0].startswith("#")]
        if rows and rows[0][0].strip().lower() == "label":
            rows = rows[1:]
        return {row[0].strip(): float(row[1]) for row in rows}
    except (OSError, ValueError, AttributeError, IndexError) as exc:
        raise ValueError(f"{path}: not a file of label -> threshold ({type(exc).__name__}: {exc})") from None
