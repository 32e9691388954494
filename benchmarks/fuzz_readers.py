"""Fuzz every reader at scale: ``--cases`` seeded mutations per format (truncations, bit flips, splices, deletions,
boundary values, hostile numbers in text), of files written in every format from a synthetic ECG and of the vendor
samples in ``$ECGFM_FORMATS_DIR``. Each format runs in a fresh process, so its peak RSS is its own.

Target: zero exceptions other than ``ECGReadError`` and a peak RSS under 1 GB per format. The mutations and file
writers are the tests' (tests/io_fixtures.py), so tests/test_io_fuzz.py is a small sample of this run.

Usage: python benchmarks/fuzz_readers.py [--cases 1000] [--workers 2] [--formats DIR]
Writes benchmarks/results/fuzz_readers.json.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from common import command_line, write_result

TESTS = Path(__file__).resolve().parents[1] / "tests"
RESULTS = Path(__file__).resolve().parent / "results" / "fuzz_readers.json"
DEFAULT_FORMATS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "formats"


def jobs(formats_dir: Path | None) -> list[tuple[str, list[str]]]:
    """(name, vendor sources) per job; synthetic jobs have no sources (written in the worker)."""
    sys.path.insert(0, str(TESTS))
    from io_fixtures import FORMATS

    out = [(f"synthetic/{fmt}", []) for fmt in sorted(FORMATS)]
    if formats_dir and formats_dir.is_dir():
        for folder in sorted(p for p in formats_dir.iterdir() if p.is_dir()):
            files = sorted(str(p) for p in folder.iterdir() if p.is_file() and p.suffix.lower() != ".ann")
            if files:
                out.append((f"vendor/{folder.name}", files))
    return out


def run_job(job: tuple[str, list[str], int]) -> dict:
    """Read ``cases`` mutated files of one job in this (fresh) process; outcomes, slowest case and peak RSS."""
    sys.path.insert(0, str(TESTS))
    import ecgfm
    from ecgfm.errors import ECGReadError
    from ecgfm.io import available_readers

    from conftest import make_synthetic_ecg
    from io_fixtures import READ_OPTIONS, iter_mutated, read_variants, source_file

    name, sources, cases = job
    available_readers()
    outcomes: Counter = Counter()
    others: dict[str, str] = {}
    slowest = (0.0, "")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        fmt = name.split("/", 1)[1]
        if not sources:
            sources = [str(source_file(fmt, Path(tmp) / "source", make_synthetic_ecg(fs=500, seconds=10, seed=3)))]
        options = READ_OPTIONS.get(fmt, {}) if name.startswith("synthetic/") else {}
        per_source = -(-cases // len(sources))
        for index, source in enumerate(sources):
            folder, seed = Path(tmp) / f"m{index}", 1000 * index + zlib.crc32(name.encode()) % 1000
            variants = read_variants(Path(source), options)
            for path in iter_mutated(Path(source), folder, per_source, seed=seed):
                for variant in variants:
                    began = time.perf_counter()
                    try:
                        ecgfm.read(path, **variant)
                        outcomes["read"] += 1
                    except ECGReadError:
                        outcomes["ECGReadError"] += 1
                    except Exception as exc:  # noqa: BLE001 - what this benchmark counts
                        kind = type(exc).__name__
                        outcomes[kind] += 1
                        others.setdefault(kind, f"{path.name} {variant}: {traceback.format_exc(limit=-3)}")
                    took = time.perf_counter() - began
                    slowest = max(slowest, (took, f"{Path(source).name} -> {path.name} {variant}"))
                for leftover in folder.glob(path.stem + ".*"):
                    leftover.unlink()
    return {"job": name, "cases": sum(outcomes.values()), "outcomes": dict(outcomes),
            "non_project_exceptions": sum(n for kind, n in outcomes.items() if kind not in ("read", "ECGReadError")),
            "examples": others, "seconds": round(time.perf_counter() - started, 1),
            "slowest_case_s": round(slowest[0], 3), "slowest_case": slowest[1],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=1000, help="mutated files per format")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--formats", default=os.environ.get("ECGFM_FORMATS_DIR", DEFAULT_FORMATS))
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    work = [(name, sources, args.cases) for name, sources in jobs(Path(args.formats))]
    print(f"{len(work)} jobs x {args.cases} cases, {args.workers} workers, {os.cpu_count()} CPUs", flush=True)
    results = []
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        for row in pool.map(run_job, work):
            results.append(row)
            print(f"{row['job']:34s} {row['cases']:5d} cases  {row['outcomes']}  peak RSS {row['peak_rss_mb']:6.0f} MB  "
                  f"slowest {row['slowest_case_s']:.2f} s  ({row['seconds']} s)", flush=True)
    report = {
        "benchmark": "fuzzing every reader (benchmarks/fuzz_readers.py)",
        "cases_per_job": args.cases, "jobs": results,
        "total_cases": sum(r["cases"] for r in results),
        "non_project_exceptions": sum(r["non_project_exceptions"] for r in results),
        "max_peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        "slowest_case_s": max(r["slowest_case_s"] for r in results),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform(),
                    "load_average_1_5_15min": list(os.getloadavg())},
        "command": command_line(argv),
    }
    print(f"{report['total_cases']} cases: {report['non_project_exceptions']} non-project exceptions, "
          f"max peak RSS {report['max_peak_rss_mb']:.0f} MB, slowest case {report['slowest_case_s']:.2f} s")
    write_result(args.out, report, indent=2)
    return report


if __name__ == "__main__":
    main()
