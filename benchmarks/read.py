"""Read + preprocess throughput on the shared PTB-XL folder, against plain ``wfdb.rdsamp`` loops in the same run.

Variants, each timed ``--repeats`` times over the same records, interleaved (medians of wall time as records/s, and
CPU time per record including the pool's worker processes):

- ``rdsamp``: ``wfdb.rdsamp`` per record, nothing else (the baseline);
- ``rdsamp+scipy``: rdsamp, then the same resampling and filter as the pipeline written with scipy directly;
- ``ecgfm.read``: our reader (file/size checks, unit and plausibility checks, canonical leads);
- ``read+preprocess``: ``Pipeline.default(fs=100)`` on top (12 leads, resample 500->100 Hz, 0.5 Hz high-pass, 10 s);
- ``read+preprocess pool``: the same through ``read_preprocessed`` with a process pool (what ``PTBXL.load_arrays`` uses).

It also checks, on every record read, that ``ecgfm.read`` returns exactly ``wfdb.rdsamp``'s samples.

Usage: python benchmarks/read.py [--ptbxl DIR] [--limit N] [--repeats R] [--workers W]
Writes benchmarks/results/read.json.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import wfdb
from scipy import signal as sps
from common import write_result

import ecgfm
from ecgfm.config import ptbxl_dir
from ecgfm.datasets.ptbxl import PTBXL, read_preprocessed
from ecgfm.signal import Pipeline

RESULTS = Path(__file__).resolve().parent / "results" / "read.json"
DEFAULT_PTBXL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ptbxl"


def record_paths(root: Path, limit: int | None) -> list[str]:
    """One header per record, the file ``PTBXL.load_arrays(fs=100)`` reads: 100 Hz when present, else 500 Hz."""
    data = PTBXL(root)
    paths = [str(data.record_path(ecg_id, fs=100)[0]) for ecg_id in data.metadata.index[data.available]]
    if limit:
        rng = np.random.default_rng(0)
        paths = [paths[i] for i in sorted(rng.choice(len(paths), size=min(limit, len(paths)), replace=False))]
    return paths


def rdsamp_loop(paths: list[str]) -> None:
    for path in paths:
        wfdb.rdsamp(path[:-4])


def rdsamp_scipy_loop(paths: list[str]) -> None:
    """The pipeline's numerical work written directly with scipy: resample to 100 Hz, 0.5 Hz zero-phase high-pass."""
    sos = sps.butter(4, 0.5, btype="highpass", fs=100, output="sos")
    for path in paths:
        x, fields = wfdb.rdsamp(path[:-4])
        x = x.T
        if fields["fs"] != 100:
            x = sps.resample_poly(x, 100, int(fields["fs"]), axis=-1, padtype="line")
        sps.sosfiltfilt(sos, x, axis=-1)


def read_loop(paths: list[str]) -> None:
    for path in paths:
        ecgfm.read(path)


def preprocess_loop(paths: list[str], pipeline: Pipeline) -> None:
    for path in paths:
        pipeline.to_array(ecgfm.read(path))


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the pool's workers), user + system."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_variants(variants: dict, repeats: int) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU seconds of each variant, repeats interleaved (round-robin) so load drift hits all variants alike."""
    times = {name: {"wall": [], "cpu": []} for name in variants}
    for _ in range(repeats):
        for name, func in variants.items():
            wall, cpu = time.perf_counter(), cpu_seconds()
            func()
            times[name]["wall"].append(time.perf_counter() - wall)
            times[name]["cpu"].append(cpu_seconds() - cpu)
    return times


def check_equal(paths: list[str]) -> list[str]:
    """Records where ecgfm.read differs from wfdb.rdsamp (should be none)."""
    bad = []
    for path in paths:
        reference, _ = wfdb.rdsamp(path[:-4])
        if not np.array_equal(ecgfm.read(path).signal, reference.T.astype(np.float32)):
            bad.append(path)
    return bad


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ptbxl", default=None, help="PTB-XL folder (default: $ECGFM_PTBXL_DIR or ../shared/data/ptbxl)")
    parser.add_argument("--limit", type=int, default=None, help="use a seeded random subset of N records")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    root = ptbxl_dir(args.ptbxl) or DEFAULT_PTBXL
    paths = record_paths(root, args.limit)
    pipeline = Pipeline.default(fs=100)
    rates = {"500": sum("_hr" in p for p in paths), "100": sum("_lr" in p for p in paths)}
    print(f"{len(paths)} records ({rates['500']} at 500 Hz, {rates['100']} at 100 Hz) from {root}; "
          f"{args.repeats} repeats; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}", flush=True)

    rdsamp_loop(paths[:20]), read_loop(paths[:20])  # warm imports and the page cache for the first files
    variants = {
        "rdsamp": lambda: rdsamp_loop(paths),
        "rdsamp+scipy": lambda: rdsamp_scipy_loop(paths),
        "ecgfm.read": lambda: read_loop(paths),
        "read+preprocess": lambda: preprocess_loop(paths, pipeline),
        f"read+preprocess pool ({args.workers} workers)": lambda: read_preprocessed(
            paths, pipeline, workers=args.workers, progress=False),
    }
    results = {}
    for name, measured in time_variants(variants, args.repeats).items():
        median, cpu = statistics.median(measured["wall"]), statistics.median(measured["cpu"])
        results[name] = {"wall_s": measured["wall"], "cpu_s": measured["cpu"], "median_s": median,
                         "median_cpu_s": cpu, "records_per_s": len(paths) / median,
                         "cpu_ms_per_record": 1000 * cpu / len(paths)}
        print(f"{name:40s} median {median:7.2f} s  {len(paths) / median:8.1f} records/s  "
              f"CPU {1000 * cpu / len(paths):5.2f} ms/record", flush=True)
    base = results["rdsamp"]["median_s"]
    for name, row in results.items():
        row["time_vs_rdsamp"] = row["median_s"] / base
    serial = results["read+preprocess"]["median_s"]
    pool = results[f"read+preprocess pool ({args.workers} workers)"]["median_s"]
    mismatches = check_equal(paths)
    report = {
        "benchmark": "read + preprocess PTB-XL (benchmarks/read.py)",
        "records": len(paths), "records_by_rate": rates, "repeats": args.repeats, "workers": args.workers,
        "pipeline": pipeline.to_dict(), "results": results,
        "pool_speedup_vs_serial": serial / pool,
        "load_average_1_5_15min": list(os.getloadavg()),
        "rdsamp_equal": {"checked": len(paths), "mismatches": mismatches},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform(),
                    "numpy": np.__version__, "wfdb": wfdb.__version__},
        "command": "python benchmarks/read.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    print(f"pool speed-up vs serial read+preprocess: {report['pool_speedup_vs_serial']:.2f}x; "
          f"ecgfm.read == wfdb.rdsamp on {len(paths) - len(mismatches)}/{len(paths)} records", flush=True)
    write_result(args.out, report, indent=2)
    return report


if __name__ == "__main__":
    main()
