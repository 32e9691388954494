"""Shared helpers for the inference tests: a tiny saved model and synthetic ECG files the tests write themselves."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ecgfm.leads import STANDARD_LEADS

PTBXL_DIR = Path(os.environ.get("ECGFM_PTBXL_DIR", Path(__file__).resolve().parents[2] / "shared/data/ptbxl"))
LABELS = ["NORM", "AFIB", "IMI"]
DESCRIPTIONS = {"NORM": "normal ECG", "AFIB": "atrial fibrillation", "IMI": "inferior myocardial infarction"}
#: One threshold so low and one so high that the expected findings are known for any input.
THRESHOLDS = {"NORM": 0.0, "AFIB": 1.0}


def synthetic_signal(fs: float, seconds: float = 10.0, seed: int = 0, leads: int = 12) -> np.ndarray:
    """A plausible ECG-like signal in mV, shape (leads, samples): a 1.2 Hz pulse train plus baseline wander and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(fs * seconds))) / fs
    beats = np.exp(-((t * 1.2) % 1 - 0.3) ** 2 / 0.0008)
    gains = rng.uniform(-1.5, 1.5, leads)[:, None]
    wander = 0.1 * np.sin(2 * np.pi * 0.2 * t + rng.uniform(0, 6, (leads, 1)))
    return (gains * beats + wander + rng.normal(0, 0.02, (leads, t.size))).astype(np.float64)


def write_wfdb(folder: Path, name: str, fs: float = 500.0, seconds: float = 10.0, seed: int = 0,
               leads: tuple[str, ...] = STANDARD_LEADS) -> Path:
    """Write a 16-bit WFDB record (``name.hea`` + ``name.dat``) and return the header path."""
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    signal = synthetic_signal(fs, seconds, seed, len(leads))
    wfdb.wrsamp(name, fs=fs, units=["mV"] * len(leads), sig_name=list(leads), p_signal=signal.T, fmt=["16"] * len(leads),
                adc_gain=[1000.0] * len(leads), baseline=[0] * len(leads), write_dir=str(folder))
    return folder / f"{name}.hea"


def make_tiny_model(folder: Path, window: int | None = 250, seed: int = 0) -> Path:
    """Save a small random ``resnet1d_small`` (3 labels, 100 Hz, 10 s, windows of 2.5 s) as a pretrained folder."""
    import torch

    from ecgfm.models import ModelInfo, create, save_pretrained
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
    info = ModelInfo.from_model(model, LABELS, label_descriptions=DESCRIPTIONS, fs=100.0, window=window,
                                preprocess=Pipeline.default(fs=100.0, seconds=10.0).to_dict(), thresholds=THRESHOLDS,
                                data={"dataset": "synthetic", "note": "untrained test model"})
    return save_pretrained(model, info, folder)
