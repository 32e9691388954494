"""Per-lead robust QRS amplitude of genuine ECGs: the evidence behind the unit/gain plausibility thresholds.

For every genuine record (the shared PTB-XL folder at both rates, the external CPSC records and every vendor sample
in ``$ECGFM_FORMATS_DIR``, rhythm and median-beat waveforms) it measures, per lead, the robust peak-to-peak amplitude
``p99 - p1`` of the first differences over 20 ms (a QRS upstroke; baseline wander moves little in 20 ms), and reports
the record-level statistic ``check_plausible_millivolts`` thresholds: the largest lead's amplitude. It then shows how
many genuine records the shipped thresholds refuse (must be 0) and how many records with their gain wrong by x5, x10,
/5 and /10 they catch.

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
from common import write_result

import ecgfm
from ecgfm.errors import ECGError
from ecgfm.signal.units import (MAX_PLAUSIBLE_QRS_MV, MIN_PLAUSIBLE_QRS_MV, qrs_amplitudes)

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results" / "amplitude_ranges.json"
FACTORS = (5.0, 10.0, 0.2, 0.1)


def genuine_files(ptbxl: Path, cpsc: Path, formats: Path) -> list[tuple[str, Path, dict]]:
    """(collection, path, read options) for every genuine record; vendor files with median beats are read twice."""
    files = [("ptbxl", p, {}) for p in sorted(ptbxl.glob("records*/*/*.hea"))]
    files += [("cpsc", p, {}) for p in sorted(cpsc.glob("*.hea"))]
    for path in sorted(p for p in formats.rglob("*") if p.is_file() and p.suffix.lower() not in (".md", ".ann")):
        files.append(("formats", path, {}))
        if path.parent.name in ("ge_muse_xml", "hl7_aecg", "philips_sierra_xml", "dicom_ecg"):
            files.append(("formats-median", path, {"waveform": "median"}))
    return files


def measure(files: list[tuple[str, Path, dict]]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Largest-lead robust QRS amplitude (mV) of each readable record, by collection."""
    values: dict[str, list[float]] = {}
    skipped = []
    for collection, path, options in files:
        try:
            ecg = ecgfm.read(path, check_units=False, **options)
        except (ECGError, TypeError) as exc:  # TypeError: a reader without a waveform option
            skipped.append(f"{path.name} {options}: {exc}")
            continue
        values.setdefault(collection, []).append(float(np.max(qrs_amplitudes(ecg.signal, ecg.fs))))
    return {key: np.array(v) for key, v in values.items()}, skipped


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

    values, skipped = measure(genuine_files(Path(args.ptbxl), Path(args.cpsc), Path(args.formats)))
    everything = np.concatenate(list(values.values()))
    refused = int(np.sum((everything > MAX_PLAUSIBLE_QRS_MV) | (everything < MIN_PLAUSIBLE_QRS_MV)))
    caught = {}
    for factor in FACTORS:
        scaled = everything * factor
        hit = (scaled > MAX_PLAUSIBLE_QRS_MV) | (scaled < MIN_PLAUSIBLE_QRS_MV)
        caught[f"x{factor:g}"] = {"caught": int(hit.sum()), "of": int(everything.size),
                                 "fraction": round(float(hit.mean()), 4)}
    report = {
        "benchmark": "largest-lead robust QRS amplitude of genuine ECGs (benchmarks/amplitude_ranges.py)",
        "statistic": "per lead: p99 - p1 of x[t + 20 ms] - x[t] (mV); per record: the largest lead",
        "thresholds_mv": {"min": MIN_PLAUSIBLE_QRS_MV, "max": MAX_PLAUSIBLE_QRS_MV},
        "by_collection": {key: summary(v) for key, v in values.items()},
        "all": summary(everything),
        "genuine_refused": refused,
        "wrong_gain_caught": caught,
        "margin": {"max_over_largest_genuine": round(MAX_PLAUSIBLE_QRS_MV / float(everything.max()), 3),
                   "smallest_genuine_over_min": round(float(everything.min()) / MIN_PLAUSIBLE_QRS_MV, 3)},
        "unreadable_skipped": skipped,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "command": "python benchmarks/amplitude_ranges.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    for key, row in report["by_collection"].items():
        print(f"{key:16s} {row}")
    print(f"genuine refused: {refused}; wrong gain caught: {caught}")
    write_result(args.out, report, indent=2)
    return report


if __name__ == "__main__":
    main()
