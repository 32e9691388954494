"""Synthetic ECG-like 12-lead signals for tests and scale benchmarks (no real data needed).

Each beat is a sum of Gaussian P, Q, R, S and T waves; each wave has a 3-D electrical direction (a dipole) projected
onto the lead axes, so the leads are mutually consistent: III, aVR, aVL and aVF are derived from I and II by
Einthoven's and Goldberger's laws exactly as in a real recording. Heart rate, axis, amplitude and noise vary per record
and labels follow from them (sinus bradycardia/tachycardia from the rate, low voltage from the QRS amplitude), so a
model can learn them. Record ``i`` of a given ``seed`` is always the same signal, whatever order records are made in.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ecgfm.ecg import ECG
from ecgfm.leads import STANDARD_LEADS
from ecgfm.signal.leads import limb_leads_from_i_ii

#: Labels the generator assigns (SCP-ECG codes, as in PTB-XL), and their SNOMED-CT codes (PhysioNet Challenge Dx).
SYNTHETIC_LABELS: tuple[str, ...] = ("SR", "SBRAD", "STACH", "LVOLT")
SYNTHETIC_SNOMED: dict[str, str] = {"SR": "426783006", "SBRAD": "426177001", "STACH": "427084000",
                                    "LVOLT": "251146004"}

# Wave shapes: (name, offset from the R peak in s, amplitude in mV, Gaussian width in s). The T wave's offset scales
# with sqrt(RR) (Bazett-like QT adaptation).
_WAVES = (("P", -0.18, 0.15, 0.022), ("Q", -0.028, 0.12, 0.008), ("R", 0.0, 1.3, 0.011),
          ("S", 0.03, 0.35, 0.010), ("T", 0.28, 0.32, 0.045))
# Lead axes (unit vectors, x = left, y = inferior, z = anterior). Limb leads I and II lie in the frontal plane at
# 0 and 60 degrees; precordial leads in the horizontal plane from V1 (right-anterior) to V6 (left-lateral).
_FRONTAL = {"I": 0.0, "II": 60.0}
_PRECORDIAL = {"V1": 115.0, "V2": 95.0, "V3": 75.0, "V4": 55.0, "V5": 30.0, "V6": 0.0}


def _lead_axes() -> dict[str, np.ndarray]:
    axes = {name: np.array([np.cos(np.radians(a)), np.sin(np.radians(a)), 0.0]) for name, a in _FRONTAL.items()}
    for name, angle in _PRECORDIAL.items():  # horizontal plane; slightly inferior like real chest electrodes
        axes[name] = np.array([np.cos(np.radians(angle)), 0.15, np.sin(np.radians(angle))])
        axes[name] /= np.linalg.norm(axes[name])
    return axes


_AXES = _lead_axes()


def _direction(frontal_deg: float, anterior: float) -> np.ndarray:
    """Unit dipole direction with a frontal-plane axis (degrees) and an anterior (+z) component."""
    v = np.array([np.cos(np.radians(frontal_deg)), np.sin(np.radians(frontal_deg)), anterior])
    return v / np.linalg.norm(v)


def _record_parameters(rng: np.random.Generator) -> tuple[float, float, float]:
    """Heart rate (bpm), QRS axis (degrees) and QRS amplitude scale: drawn first, so labels need no signal."""
    heart_rate = float(rng.uniform(45, 130))
    qrs_axis = float(rng.uniform(-30, 90))
    qrs_scale = float(np.exp(rng.normal(0.0, 0.35)))  # body habitus / electrode contact
    return heart_rate, qrs_axis, qrs_scale


def _labels(heart_rate: float, qrs_scale: float) -> list[str]:
    rhythm = "SBRAD" if heart_rate < 60 else "STACH" if heart_rate > 100 else "SR"
    return sorted([rhythm] + (["LVOLT"] if qrs_scale < 0.6 else []))


def synthetic_labels(index: int = 0, seed: int = 0) -> list[str]:
    """The labels of :func:`synthetic_ecg` ``(index, seed)`` without generating its signal."""
    heart_rate, _, qrs_scale = _record_parameters(np.random.default_rng([int(seed), int(index)]))
    return _labels(heart_rate, qrs_scale)


def synthetic_ecg(index: int = 0, seed: int = 0, fs: float = 500.0, seconds: float = 10.0,
                  leads: tuple[str, ...] = STANDARD_LEADS) -> ECG:
    """The synthetic 12-lead record number ``index`` of the series ``seed``: float32 mV at ``fs`` Hz.

    ``meta`` holds ``record_id``, ``heart_rate`` (bpm), ``qrs_scale`` and ``labels`` (see :data:`SYNTHETIC_LABELS`).
    """
    rng = np.random.default_rng([int(seed), int(index)])
    heart_rate, qrs_axis, qrs_scale = _record_parameters(rng)
    n = int(round(fs * seconds))
    t = np.arange(n) / fs
    rr = 60.0 / heart_rate
    beats = np.cumsum(rr * (1 + 0.03 * rng.standard_normal(int(seconds / rr) + 3))) - rng.uniform(0, rr)
    directions = {"P": _direction(rng.normal(55, 10), -0.2), "Q": _direction(qrs_axis + 180, 0.3),
                  "R": _direction(qrs_axis, -0.35), "S": _direction(qrs_axis + 150, -0.6),
                  "T": _direction(qrs_axis + rng.normal(0, 15), 0.1)}
    # (waves, samples) time courses, then (leads, waves) projections: signal = projection @ courses.
    courses = np.zeros((len(_WAVES), n))
    for w, (name, offset, amplitude, width) in enumerate(_WAVES):
        scale = qrs_scale if name in "QRS" else 1.0
        shift = offset * np.sqrt(rr) if name == "T" else offset
        centres = beats + shift
        centres = centres[(centres > -5 * width) & (centres < seconds + 5 * width)]
        courses[w] = amplitude * scale * np.exp(-0.5 * ((t[None, :] - centres[:, None]) / width) ** 2).sum(axis=0)
    names = list(_AXES)
    lead_gain = np.exp(rng.normal(0.0, 0.15, size=len(names)))
    projection = np.array([[_AXES[lead] @ directions[w[0]] for w in _WAVES] for lead in names]) * lead_gain[:, None]
    independent = projection @ courses
    for _ in range(2):  # baseline wander: slow sinusoids (respiration, electrode drift)
        independent += (rng.uniform(0.02, 0.12, (len(names), 1))
                        * np.sin(2 * np.pi * rng.uniform(0.05, 0.4) * t + rng.uniform(0, 2 * np.pi, (len(names), 1))))
    independent += rng.uniform(0.005, 0.03) * rng.standard_normal(independent.shape)
    rows = dict(zip(names, independent))
    rows.update(limb_leads_from_i_ii(rows["I"], rows["II"]))
    signal = np.stack([rows[lead] for lead in leads]).astype(np.float32)
    return ECG(signal=signal, fs=fs, leads=leads,
               meta={"record_id": f"syn{seed}-{index:07d}", "heart_rate": heart_rate, "qrs_scale": qrs_scale,
                     "labels": _labels(heart_rate, qrs_scale), "source": f"synthetic(seed={seed}, index={index})",
                     "format": "synthetic"})


def synthetic_patient_id(index: int, seed: int = 0, records_per_patient: int = 2) -> str:
    """Patient of record ``index``: consecutive records share a patient, so patient-level splits matter."""
    return f"syn{seed}-p{index // records_per_patient:07d}"


@dataclass(frozen=True)
class SyntheticSource:
    """``n`` synthetic records as an ingest source (picklable; each record is generated on demand)."""

    n: int
    seed: int = 0
    fs: float = 500.0
    seconds: float = 10.0
    records_per_patient: int = 2

    def __len__(self) -> int:
        return self.n

    def table(self) -> pd.DataFrame:
        """Record ids, patient ids and labels, without generating the signals (labels need the rate only)."""
        return pd.DataFrame({
            "record_id": [f"syn{self.seed}-{i:07d}" for i in range(self.n)],
            "patient_id": [synthetic_patient_id(i, self.seed, self.records_per_patient) for i in range(self.n)],
            "path": [f"synthetic(seed={self.seed}, index={i})" for i in range(self.n)],
            "labels": [synthetic_labels(i, self.seed) for i in range(self.n)]})

    def load(self, i: int) -> ECG:
        return synthetic_ecg(i, self.seed, self.fs, self.seconds)

    def load_row(self, row: int, path: str = "") -> ECG:
        """The ingest loader interface: ``loader(row, path) -> ECG``."""
        return self.load(row)


def write_synthetic_wfdb(folder: str | os.PathLike, n: int, seed: int = 0, fs: float = 500.0,
                         seconds: float = 10.0, challenge: bool = False, records_per_patient: int = 2) -> pd.DataFrame:
    """Write ``n`` synthetic records as WFDB files (16-bit, 1 uV/LSB like PTB-XL) and return their manifest table.

    With ``challenge=True`` the headers carry PhysioNet Challenge comments (``# Age``, ``# Sex``, ``# Dx`` with SNOMED
    codes), as in the Challenge 2020/21 data. The table has ``path`` (relative to ``folder``), ``record_id``,
    ``patient_id`` and ``labels``; write it with ``Manifest`` to get a manifest file.
    """
    import wfdb

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        ecg = synthetic_ecg(i, seed, fs, seconds)
        name = ecg.meta["record_id"]
        comments = []
        if challenge:
            age = int(np.random.default_rng([seed, i, 1]).integers(18, 90))
            sex = "Male" if i % 2 else "Female"
            dx = ",".join(SYNTHETIC_SNOMED[label] for label in ecg.meta["labels"])
            comments = [f"Age: {age}", f"Sex: {sex}", f"Dx: {dx}", "Rx: Unknown", "Hx: Unknown", "Sx: Unknown"]
        digital = np.clip(np.round(ecg.signal.T.astype(np.float64) * 1000), -32767, 32767).astype(np.int16)
        wfdb.wrsamp(name, fs=fs, units=["mV"] * ecg.n_leads, sig_name=list(ecg.leads), d_signal=digital,
                    fmt=["16"] * ecg.n_leads, adc_gain=[1000.0] * ecg.n_leads, baseline=[0] * ecg.n_leads,
                    comments=comments, write_dir=str(folder))
        rows.append({"path": f"{name}.hea", "record_id": name,
                     "patient_id": synthetic_patient_id(i, seed, records_per_patient), "labels": ecg.meta["labels"]})
    return pd.DataFrame(rows)


__all__ = ["SYNTHETIC_LABELS", "SYNTHETIC_SNOMED", "synthetic_ecg", "synthetic_labels", "synthetic_patient_id", "SyntheticSource",
           "write_synthetic_wfdb"]
