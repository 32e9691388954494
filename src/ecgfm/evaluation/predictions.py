"""Prediction files: the arrays an evaluation needs, saved as ``.npz`` so scoring and evaluating can run separately.

Keys: ``y_true (N, L)`` float (1/0, NaN = unknown), ``y_score (N, L)`` float, ``label_names (L,)`` str, and optional
``record_ids (N,)`` and ``patient_ids (N,)`` (patient ids turn on the patient-level bootstrap).
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgfm.evaluation.metrics import check_targets


@dataclass
class Predictions:
    """Labels and scores of one model on one set of records."""

    y_true: np.ndarray
    y_score: np.ndarray
    label_names: list[str]
    record_ids: np.ndarray | None = None
    patient_ids: np.ndarray | None = None


def save_predictions(path, y_true, y_score, label_names, record_ids=None, patient_ids=None) -> Path:
    """Validate and write a prediction file (atomically: temporary file, then rename)."""
    y_true, y_score, label_names = check_targets(y_true, y_score, label_names)
    arrays = {"y_true": y_true, "y_score": y_score, "label_names": np.asarray(label_names, dtype=str)}
    for key, value in (("record_ids", record_ids), ("patient_ids", patient_ids)):
        if value is not None:
            value = np.asarray(value)
            if value.shape != (y_true.shape[0],):
                raise ValueError(f"{key} must have one entry per record ({y_true.shape[0]}), got {value.shape}")
            arrays[key] = value.astype(str) if value.dtype == object else value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return path


def load_predictions(path) -> Predictions:
    """Read and validate a prediction file; errors name the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: prediction file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz prediction file ({exc})") from None
    missing = [key for key in ("y_true", "y_score", "label_names") if key not in arrays]
    if missing:
        raise ValueError(f"{path}: prediction file lacks {', '.join(missing)}")
    try:
        y_true, y_score, names = check_targets(arrays["y_true"], arrays["y_score"], arrays["label_names"].tolist())
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    extra = {}
    for key in ("record_ids", "patient_ids"):
        if key in arrays:
            if arrays[key].shape != (y_true.shape[0],):
                raise ValueError(f"{path}: {key} has shape {arrays[key].shape}, expected ({y_true.shape[0]},)")
            extra[key] = arrays[key]
    return Predictions(y_true, y_score, names, **extra)
