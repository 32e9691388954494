"""Shared helpers for the inference tests: a tiny saved model and synthetic ECG files the tests write themselves."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

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


def lead_set_predictor(seed: int = 0):
    """A Predictor around a random ``xresnet1d18`` that reads lead sets (lead-presence inputs, as the shipped
    default), labels A and B, 100 Hz, whole 10-s records."""
    import torch

    from ecgfm.inference import Predictor
    from ecgfm.models import ModelInfo, build_model
    from ecgfm.models.leadsets import LEAD_SETS
    from ecgfm.models.runner import TorchRunner
    from ecgfm.signal import Pipeline

    torch.manual_seed(seed)
    info = ModelInfo(arch="xresnet1d18", labels=["A", "B"], lead_mask=True, fs=100.0, window=None,
                     preprocess=Pipeline.default(fs=100.0, lead_sets=LEAD_SETS).to_dict())
    return Predictor(TorchRunner(build_model(info).eval()), info)


def write_chest_leads(folder: Path, name: str = "chest", seed: int = 5) -> Path:
    """A synthetic 500-Hz recording of V1-V6 only, as a WFDB record; returns the header path."""
    from ecgfm.models.leadsets import PRECORDIAL_LEADS
    from ecgfm.signal.leads import reorder_leads

    ecg = reorder_leads(make_synthetic_ecg(500.0, 10.0, seed=seed), PRECORDIAL_LEADS, derive=False)
    return write_wfdb_record(folder, name, ecg)


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


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """``ecgfm serve ARGS`` as a real process on a free port until the block ends, yielding its URL once ``/health``
    answers (the test fails with the server's log if it exits or is not healthy within 90 s)."""
    import httpx
    import pytest

    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ecgfm.cli.main", "serve", "--port", str(port), *args],
                                stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "MPLBACKEND": "Agg", **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not become healthy in 90 s:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
