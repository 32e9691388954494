"""Shared test fixtures: the real PTB-XL folder (skipping when absent), synthetic ECGs and writers for WFDB records,
PhysioNet Challenge records and small PTB-XL-shaped folders generated in ``tmp_path``."""
from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import pytest

from ecgfm.config import ptbxl_dir as configured_ptbxl_dir
from ecgfm.ecg import ECG
from ecgfm.leads import STANDARD_LEADS

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Where the shared PTB-XL subset lives when ``$ECGFM_PTBXL_DIR`` is unset (same default as the Makefile).
DEFAULT_PTBXL_DIR = REPO_ROOT.parent / "shared" / "data" / "ptbxl"


def pytest_addoption(parser):
    parser.addoption("--all-records", action="store_true", default=False,
                     help="compare every PTB-XL record with wfdb.rdsamp (about a minute) instead of a seeded sample")


@pytest.fixture(scope="session")
def ptbxl_dir() -> Path:
    """The shared PTB-XL folder; skips the test with the reason when it is not there."""
    path = configured_ptbxl_dir() or DEFAULT_PTBXL_DIR
    if not (path / "ptbxl_database.csv").exists():
        pytest.skip(f"PTB-XL not found at {path}; set ECGFM_PTBXL_DIR")
    return path


@contextlib.contextmanager
def umask(mask: int = 0o022) -> Iterator[None]:
    """Run a block under ``mask`` (the usual 022 by default), restoring the process umask after."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def file_mode(path: str | os.PathLike) -> int:
    """A file's permission bits (``0o644`` for a file written normally under umask 022)."""
    return stat.S_IMODE(os.stat(path).st_mode)


# --- synthetic ECGs ------------------------------------------------------------------------------------------------
# A heart-vector model: the cardiac dipole (x: left, y: down/feet, z: back->front) traces P, QRS and T loops as sums of
# Gaussian waves; each lead is its projection onto the lead axis. Limb leads therefore obey Einthoven's and Goldberger's
# laws exactly and amplitudes are physiological (R ~ 1 mV), which is what preprocessing and readers see in real data.
_WAVES = (  # (centre within the beat in s, width s, dipole amplitude mV along x, y, z)
    (0.10, 0.025, (0.10, 0.12, 0.02)),   # P
    (0.215, 0.008, (-0.05, -0.10, 0.05)),  # Q
    (0.24, 0.012, (1.0, 0.9, -0.5)),     # R
    (0.265, 0.010, (-0.2, -0.25, 0.6)),  # S
    (0.50, 0.060, (0.25, 0.25, -0.15)),  # T
)
_PRECORDIAL_AXES = {  # unit-ish directions (x, y, z) of V1..V6 in the model's frame
    "V1": (-0.5, 0.0, 1.0), "V2": (-0.2, 0.0, 1.0), "V3": (0.3, 0.1, 0.9),
    "V4": (0.7, 0.2, 0.6), "V5": (0.9, 0.2, 0.3), "V6": (1.0, 0.2, 0.0),
}


def make_synthetic_ecg(fs: float = 500.0, seconds: float = 10.0, leads: Sequence[str] = STANDARD_LEADS,
                       heart_rate: float = 72.0, noise_mv: float = 0.01, seed: int = 0, **meta) -> ECG:
    """A realistic-looking ECG in mV (see the heart-vector model above); deterministic for a given ``seed``."""
    rng = np.random.default_rng(seed)
    n = int(round(fs * seconds))
    t = np.arange(n) / fs
    rr = 60.0 / heart_rate
    beat_times = np.arange(-rr, seconds + rr, rr) + rng.uniform(0, rr)
    dipole = np.zeros((3, n))
    for start in beat_times:
        for centre, width, amplitude in _WAVES:
            dipole += np.outer(amplitude, np.exp(-0.5 * ((t - start - centre) / width) ** 2))
    x, y, z = dipole
    lead_i, lead_ii = x, 0.5 * x + np.sqrt(3) / 2 * y  # frontal-plane lead axes at 0 and +60 degrees
    signals = {"I": lead_i, "II": lead_ii, "III": lead_ii - lead_i, "aVR": -(lead_i + lead_ii) / 2,
               "aVL": lead_i - lead_ii / 2, "aVF": lead_ii - lead_i / 2}
    for name, axis in _PRECORDIAL_AXES.items():
        signals[name] = np.dot(axis, dipole)
    rows = [signals[name] + rng.normal(0, noise_mv, n) if noise_mv else signals[name] for name in leads]
    return ECG(signal=np.array(rows), fs=fs, leads=tuple(leads), meta={"record_id": f"synthetic{seed}", **meta})


@pytest.fixture
def synthetic_ecg() -> Callable[..., ECG]:
    """Factory: ``synthetic_ecg(fs=500, seconds=10, leads=STANDARD_LEADS, heart_rate=72, noise_mv=0.01, seed=0)``."""
    return make_synthetic_ecg


# --- file writers --------------------------------------------------------------------------------------------------
def write_wfdb_record(directory: Path, name: str, ecg: ECG, fmt: str = "16", gain: float = 1000.0,
                      units: str = "mV", comments: list[str] | None = None, sig_names: Sequence[str] | None = None) -> Path:
    """Write ``ecg`` as a WFDB record (``name.hea`` + ``name.dat``) with ``wfdb.wrsamp``; returns the header path."""
    import wfdb

    directory.mkdir(parents=True, exist_ok=True)
    n_sig = ecg.n_leads
    wfdb.wrsamp(name, fs=ecg.fs, units=[units] * n_sig, sig_name=list(sig_names or ecg.leads),
                p_signal=ecg.signal.T.astype(np.float64), fmt=[fmt] * n_sig, adc_gain=[gain] * n_sig,
                baseline=[0] * n_sig, comments=comments or [], write_dir=str(directory))
    return directory / f"{name}.hea"


def write_challenge_record(directory: Path, name: str, ecg: ECG, age: str = "74", sex: str = "Male",
                           dx: Sequence[str] = ("59118001", "164884008"), gain: float = 1000.0) -> Path:
    """Write a PhysioNet Challenge 2020/21 record: ``name.mat`` (MATLAB v4, ``val`` int16 (leads, samples)) + ``name.hea``.

    The header follows the Challenge files: ``A0001.mat 16+24 1000/mV 16 0 <first> <checksum> 0 <lead>`` per signal
    (format 16 at byte offset 24, just past the MATLAB v4 matrix header) and ``# Age/# Sex/# Dx`` comment lines.
    """
    from scipy.io import savemat

    directory.mkdir(parents=True, exist_ok=True)
    val = np.round(ecg.signal.astype(np.float64) * gain).astype(np.int16)
    savemat(directory / f"{name}.mat", {"val": val}, format="4")
    lines = [f"{name} {ecg.n_leads} {ecg.fs:g} {ecg.n_samples} 05-Feb-2020 11:39:16"]
    for row, lead in zip(val, ecg.leads):
        checksum = int(row.astype(np.int64).sum()) % 65536
        checksum = checksum - 65536 if checksum >= 32768 else checksum
        lines.append(f"{name}.mat 16+24 {gain:g}/mV 16 0 {row[0]} {checksum} 0 {lead}")
    lines += [f"# Age: {age}", f"# Sex: {sex}", f"# Dx: {','.join(dx)}", "# Rx: Unknown", "# Hx: Unknown",
              "# Sx: Unknown"]
    (directory / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return directory / f"{name}.hea"


@pytest.fixture
def write_wfdb() -> Callable[..., Path]:
    """``write_wfdb(directory, name, ecg, fmt="16", gain=1000, units="mV", comments=None)`` -> header path."""
    return write_wfdb_record


@pytest.fixture
def write_challenge() -> Callable[..., Path]:
    """``write_challenge(directory, name, ecg, age="74", sex="Male", dx=(...))`` -> header path."""
    return write_challenge_record


# --- a small PTB-XL-shaped folder ----------------------------------------------------------------------------------
#: A few real SCP statements with their scp_statements.csv classes (diagnostic, form, rhythm, class, subclass).
FAKE_STATEMENTS = [
    ("NORM", "normal ECG", 1.0, None, None, "NORM", "NORM"),
    ("IMI", "inferior myocardial infarction", 1.0, None, None, "MI", "IMI"),
    ("ASMI", "anteroseptal myocardial infarction", 1.0, None, None, "MI", "AMI"),
    ("LVH", "left ventricular hypertrophy", 1.0, None, None, "HYP", "LVH"),
    ("CLBBB", "complete left bundle branch block", 1.0, None, None, "CD", "CLBBB"),
    ("NDT", "non-diagnostic T abnormalities", 1.0, 1.0, None, "STTC", "STTC"),
    ("PVC", "ventricular premature complex", None, 1.0, None, None, None),
    ("SR", "sinus rhythm", None, None, 1.0, None, None),
    ("AFIB", "atrial fibrillation", None, None, 1.0, None, None),
]
#: (ecg_id, patient_id, strat_fold, scp_codes, rates present) for the fake database; 9 and 10 hold one missing record.
FAKE_RECORDS = [
    (1, 101, 1, {"NORM": 100.0, "SR": 0.0}, (500,)),
    (2, 102, 2, {"IMI": 80.0, "SR": 0.0}, (100,)),
    (3, 102, 2, {"IMI": 100.0, "PVC": 0.0, "SR": 0.0}, (500, 100)),
    (4, 103, 3, {"LVH": 50.0, "AFIB": 0.0}, (100,)),
    (5, 104, 5, {"ASMI": 0.0, "NDT": 0.0, "SR": 0.0}, (500,)),
    (6, 105, 8, {"CLBBB": 100.0, "SR": 0.0}, (500, 100)),
    (7, 106, 9, {"NORM": 100.0, "SR": 0.0}, (500,)),
    (8, 107, 9, {"LVH": 100.0, "NDT": 50.0, "AFIB": 0.0}, (100,)),
    (9, 108, 10, {"NORM": 80.0, "SR": 0.0}, (500, 100)),
    (10, 109, 10, {"IMI": 100.0, "SR": 0.0}, ()),
]


def make_fake_ptbxl(root: Path, records=FAKE_RECORDS) -> Path:
    """Write a PTB-XL-shaped folder (metadata CSVs + WFDB files at the listed rates) and return its path."""
    root.mkdir(parents=True, exist_ok=True)
    statements = pd.DataFrame(FAKE_STATEMENTS, columns=["code", "description", "diagnostic", "form", "rhythm",
                                                        "diagnostic_class", "diagnostic_subclass"]).set_index("code")
    statements.index.name = None
    statements.to_csv(root / "scp_statements.csv")
    rows = []
    for ecg_id, patient, fold, codes, rates in records:
        lr, hr = f"records100/00000/{ecg_id:05d}_lr", f"records500/00000/{ecg_id:05d}_hr"
        for rate, rel in ((500, hr), (100, lr)):
            if rate in rates:
                ecg = make_synthetic_ecg(fs=rate, seconds=10.0, seed=ecg_id)
                write_wfdb_record(root / Path(rel).parent, Path(rel).name, ecg,
                                  sig_names=[lead.upper() if lead.startswith("aV") else lead for lead in ecg.leads])
        rows.append({"ecg_id": ecg_id, "patient_id": float(patient), "age": 40.0 + ecg_id, "sex": ecg_id % 2,
                     "scp_codes": repr(codes), "strat_fold": fold, "filename_lr": lr, "filename_hr": hr})
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    return root


@pytest.fixture(scope="session")
def fake_ptbxl(tmp_path_factory) -> Path:
    """A 10-record PTB-XL-shaped folder: records at 500 Hz only, 100 Hz only, both rates, and one with no files."""
    return make_fake_ptbxl(tmp_path_factory.mktemp("fake_ptbxl"))
