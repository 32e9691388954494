"""WFDB records (``.hea`` + ``.dat`` / ``.mat``) via the ``wfdb`` package: PTB-XL and PhysioNet Challenge 2020/21."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import wfdb

from ecgfm.ecg import ECG
from ecgfm.errors import ECGReadError
from ecgfm.io.registry import register_reader
from ecgfm.io.units import check_plausible_millivolts, unit_factor


def _record_base(path: Path) -> Path:
    """The record path without extension, as wfdb wants it."""
    return path.with_suffix("") if path.suffix.lower() in {".hea", ".dat", ".mat"} else path


def parse_challenge_comments(comments: list[str]) -> dict:
    """Metadata from PhysioNet Challenge 2020/21 header comments (``# Age: 74``, ``# Sex: Male``, ``# Dx: 164889003,...``).

    ``snomed`` holds the Dx SNOMED-CT codes as strings; ``scp`` their SCP-ECG equivalents where a mapping exists.
    """
    meta: dict = {}
    for line in comments:
        match = re.match(r"\s*([A-Za-z_ ]+?)\s*:\s*(.*)$", line)
        if not match:
            continue
        key, value = match.group(1).strip().lower(), match.group(2).strip()
        if key == "age":
            meta["age"] = float(value) if re.fullmatch(r"\d+(\.\d+)?", value) else None
        elif key == "sex":
            meta["sex"] = {"male": "M", "m": "M", "female": "F", "f": "F"}.get(value.lower())
        elif key == "dx":
            meta["snomed"] = [code.strip() for code in value.split(",") if code.strip()]
    if "snomed" in meta:
        from ecgfm.labels.snomed import snomed_to_scp

        meta["scp"] = sorted({scp for code in meta["snomed"] for scp in snomed_to_scp(code)})
    return meta


def _check_files(base: Path) -> None:
    header = base.with_suffix(".hea")
    if not header.exists():
        raise ECGReadError(header, "WFDB header (.hea) not found")


@register_reader("wfdb", (".hea", ".dat", ".mat"), description="WFDB record (.hea with .dat or .mat signal file)")
def read_wfdb(path: Path, *, sampfrom: int = 0, sampto: int | None = None, check_units: bool = True) -> ECG:
    """Read a WFDB record; ``sampfrom``/``sampto`` select a window (in samples)."""
    base = _record_base(Path(path))
    _check_files(base)
    header_path = base.with_suffix(".hea")
    try:
        header = wfdb.rdheader(str(base))
    except Exception as exc:  # wfdb raises bare Exception/ValueError on malformed headers
        raise ECGReadError(header_path, f"malformed WFDB header: {exc}") from exc
    if not header.file_name:
        raise ECGReadError(header_path, "WFDB header declares no signals")
    for name in sorted(set(header.file_name)):
        data_file = base.parent / name
        if not data_file.exists():
            raise ECGReadError(header_path, f"signal file {name} named in the header is missing")
    if not header.sig_len:
        raise ECGReadError(header_path, "WFDB header declares zero samples")
    try:
        record = wfdb.rdrecord(str(base), sampfrom=sampfrom, sampto=sampto)
    except Exception as exc:
        raise ECGReadError(header_path, f"cannot read WFDB signal data: {exc}") from exc
    signal = record.p_signal
    expected = (sampto or header.sig_len) - sampfrom
    if signal is None or signal.shape[0] != expected:
        got = 0 if signal is None else signal.shape[0]
        raise ECGReadError(header_path, f"signal file is truncated or does not match the header: "
                                        f"expected {expected} samples per lead, found {got}")
    try:
        factors = np.array([unit_factor(u or "mV") for u in record.units], dtype=np.float64)
    except ValueError as exc:
        raise ECGReadError(header_path, str(exc)) from None
    signal = (signal * factors).T.astype(np.float32)
    if not np.isfinite(signal).all():
        raise ECGReadError(header_path, "signal contains NaN or infinite samples (missing-value markers)")
    if check_units:
        try:
            check_plausible_millivolts(signal)
        except ValueError as exc:
            raise ECGReadError(header_path, str(exc)) from None
    meta = {"record_id": record.record_name, "source": str(header_path), "format": "wfdb",
            "comments": list(record.comments or [])}
    meta.update(parse_challenge_comments(record.comments or []))
    return ECG(signal=signal, fs=float(record.fs), leads=tuple(record.sig_name), meta=meta)
