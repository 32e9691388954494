"""Per-lead robust QRS amplitude of genuine ECGs: the evidence behind the unit/gain plausibility thresholds.

For every genuine record (the shared PTB-XL folder at both rates, the external CPSC records and every vendor sample
in ``$ECGFM_FORMATS_DIR``, rhythm and median-beat waveforms) it measures, per lead, the robust peak-to-peak amplitude
``p99 - p1`` of the first differences over 20 ms (a QRS upstroke; baseline wander moves little in 20 ms), and reports
the record-level statistic ``check_plausible_millivolts`` thresholds: the largest lead's amplitude. It then runs the
shipped check itself on every genuine record (refused: must be 0) and on each record with its gain wrong by x5, x10,
/5 and /10 (caught: as many as the spread of genuine amplitudes allows).

Usage: python benchmarks/amplitude_ranges.py [--ptbxl DIR] [--cpsc DIR] [--formats DIR]
Writes benchmarks/results/amplitude_ranges.json.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np
from common import command_line, write_result

import ecgfm
from ecgfm.errors import ECGError
from ecgfm.signal.units import (MAX_PLAUSIBLE_QRS_MV, MIN_PLAUSIBLE_QRS_MV, check_plausible_millivolts,
                                qrs_amplitudes)

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results" / "amplitude_ranges.json"
FACTORS = (5.0, 10.0, 0.2, 0.1)
#: Vendor files that need options to read (the Cortrium patch labels its channels ECG1..3).
VENDOR_OPTIONS = {"cortrium_c3_1234_271020_212806.edf": {"lead_map": {"ECG1": "I", "ECG2": "II", "ECG3": "III"}}}


def genuine_files(ptbxl: Path, cpsc: Path, formats: Path) -> list[tuple[str, Path, dict]]:
    """(collection, path, read options) for every genuine record; vendor files with median beats are read twice."""
    files = [("ptbxl", p, {}) for p in sorted(ptbxl.glob("records*/*/*.hea"))]
    files += [("cpsc", p, {}) for p in sorted(cpsc.glob("*.hea"))]
    for path in sorted(p for p in formats.rglob("*") if p.is_file() and p.suffix.lower() not in (".md", ".ann")):
        files.append(("formats", path, VENDOR_OPTIONS.get(path.name, {})))
        if path.parent.name in ("ge_muse_xml", "hl7_aecg", "philips_sierra_xml", "dicom_ecg"):
            files.append(("formats-median", path, {"waveform": "median"}))
    return files


def refused(signal: np.ndarray, fs: float, leads) -> bool:
    try:
        check_plausible_millivolts(signal, fs=fs, leads=leads)
        return False
    except ECGError:
        return True


def measure(files: list[tuple[str, Path, dict]]) -> tuple[dict[str, np.ndarray], dict[str, dict[str, int]], list]:
    """Largest-lead robust QRS amplitude (mV) of each readable record by collection, and how many records the
    check refuses as they are (``x1``) and with their gain off by each factor."""
    values: dict[str, list[float]] = {}
    refusals = {f"x{factor:g}": {"refused": 0, "of": 0} for factor in (1.0, *FACTORS)}
    skipped = []
    for collection, path, options in files:
        try:
            ecg = ecgfm.read(path, check_units=False, **options)
        except (ECGError, TypeError) as exc:  # TypeError: a reader without a waveform option
            skipped.append(f"{path.name} {options}: {exc}")
            continue
        values.setdefault(collection, []).append(float(np.max(qrs_amplitudes(ecg.signal, ecg.fs))))
        for factor in (1.0, *FACTORS):
            row, hit = refusals[f"x{factor:g}"], refused(ecg.signal * factor, ecg.fs, ecg.leads)
            row["of"], row["refused"] = row["of"] + 1, row["refused"] + hit
            if factor == 1.0 and hit:
                skipped.append(f"GENUINE RECORD REFUSED: {path} {options}")
    return {key: np.array(v) for key, v in values.items()}, refusals, skipped


def summary(values: np.ndarray) -> dict:
    quantiles = (0.0, 0.001, 0.01, 0.05, 0.5, 0.95, 0.99, 0.999, 1.0)
    return {"n": int(values.size), **{f"q{q:g}": round(float(np.quantile(values, q)), 4) for q in quantiles}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ptbxl", default=os.environ.get("ECGFM_PTBXL_DIR", ROOT / "ptbxl"))
    parser.add_argument("--cpsc", default=ROOT / "external" / "cpsc")
    parser.add_argument("--formats", default=os.environ.get("ECGFM_FORMATS_DIR", ROOT / "formats"))
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    values, refusals, skipped = measure(genuine_files(Path(args.ptbxl), Path(args.cpsc), Path(args.formats)))
    everything = np.concatenate(list(values.values()))
    report = {
        "benchmark": "largest-lead robust QRS amplitude of genuine ECGs (benchmarks/amplitude_ranges.py)",
        "statistic": "per lead: p99 - p1 of x[t + 20 ms] - x[t] (mV); per record: the largest lead",
        "thresholds_mv": {"min": MIN_PLAUSIBLE_QRS_MV, "max": MAX_PLAUSIBLE_QRS_MV},
        "by_collection": {key: summary(v) for key, v in values.items()},
        "all": summary(everything),
        "genuine_refused": refusals["x1"]["refused"],
        "wrong_gain_caught": {key: {**row, "fraction": round(row["refused"] / max(row["of"], 1), 4)}
                              for key, row in refusals.items() if key != "x1"},
        "margin": {"max_over_largest_genuine": round(MAX_PLAUSIBLE_QRS_MV / float(everything.max()), 3),
                   "smallest_genuine_over_min": round(float(everything.min()) / MIN_PLAUSIBLE_QRS_MV, 3)},
        "unreadable_skipped": skipped,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "command": command_line(argv),
    }
    for key, row in report["by_collection"].items():
        print(f"{key:16s} {row}")
    print(f"genuine refused: {report['genuine_refused']}; wrong gain caught: {report['wrong_gain_caught']}")
    write_result(args.out, report, indent=2)
    return report


if __name__ == "__main__":
    main()
