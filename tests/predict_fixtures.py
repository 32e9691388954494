"""Shared helpers for the inference tests: a tiny saved model and synthetic ECG files the tests write themselves."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import make_synthetic_ecg, write_wfdb_record
from ecgfm.leads import STANDARD_LEADS

LABELS = ["NORM", "AFIB", "IMI"]
DESCRIPTIONS = {"NORM": "normal ECG", "AFIB": "atrial fibrillation", "IMI": "inferior myocardial infarction"}
#: One threshold so low and one so high that the expected findings are known for any input.
THRESHOLDS = {"NORM": 0.0, "AFIB": 1.0}


def synthetic_signal(fs: float, seconds: float = 10.0, seed: int = 0,
                     leads: tuple[str, ...] = STANDARD_LEADS) -> np.ndarray:
    """The shared synthetic ECG (``conftest.make_synthetic_ecg``) as a float32 ``(leads, samples)`` array in mV."""
    return make_synthetic_ecg(fs, seconds, leads=leads, seed=seed).signal


def write_wfdb(folder: Path, name: str, fs: float = 500.0, seconds: float = 10.0, seed: int = 0) -> Path:
    """Write a synthetic 12-lead ECG as a 16-bit WFDB record (``name.hea`` + ``name.dat``); returns the header path."""
    return write_wfdb_record(folder, name, make_synthetic_ecg(fs, seconds, seed=seed))


def make_tiny_model(folder: Path, window: int | None = 250, seed: int = 0) -> Path:
    """Save a small random ``resnet1d_small`` (3 labels, 100 Hz, 10 s, windows of 2.5 s) as a pretrained folder."""
    import torch

    from ecgfm.models import ModelInfo, create, save
    from ecgfm.signal import Pipeline

    torch.manual_seed(seed)
    model = create("resnet1d_small", num_labels=len(LABELS))
    # Random BN statistics so the untrained model's outputs depend clearly on the input.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.weight.data.uniform_(0.5, 1.5)
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    model.eval()
    model.info = ModelInfo.from_model(model, LABELS, label_descriptions=DESCRIPTIONS, fs=100.0, window=window,
                                preprocess=Pipeline.default(fs=100.0, seconds=10.0).to_dict(), thresholds=THRESHOLDS,
                                data={"dataset": "synthetic", "note": "untrained test model"})
    return save(model, folder)
