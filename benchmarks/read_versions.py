"""``ecgfm.read`` CPU time per PTB-XL record under two source trees (e.g. before and after a change to the readers),
each timed in fresh subprocesses, interleaved round by round, so machine load drifts hit both alike.

CPU time (user + system of the reading process, after a warm-up read of every record) is the measure: on a shared
machine wall time swings with other jobs, CPU time much less. Each round also checks both trees read identical arrays.

Usage: python benchmarks/read_versions.py --before OLD/src --after src [--limit 1000] [--rounds 7]
Writes benchmarks/results/read_versions.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import command_line, write_result

RESULTS = Path(__file__).resolve().parent / "results" / "read_versions.json"
DEFAULT_PTBXL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ptbxl"

#: Run in a subprocess with PYTHONPATH set to one tree: read every header once (warm-up), then time a second pass.
WORKER = """
import hashlib, json, resource, sys, numpy as np, ecgfm
paths = json.load(open(sys.argv[1]))
for path in paths:
    ecgfm.read(path)
usage = resource.getrusage(resource.RUSAGE_SELF)
start = usage.ru_utime + usage.ru_stime
digest = hashlib.sha1()
for path in paths:
    digest.update(ecgfm.read(path).signal.tobytes())
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"cpu_s": usage.ru_utime + usage.ru_stime - start, "digest": digest.hexdigest(),
                  "ecgfm": ecgfm.__file__}))
"""


def run(tree: str, paths_file: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
    out = subprocess.run([sys.executable, "-c", WORKER, str(paths_file)], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="src folder of the reference tree")
    parser.add_argument("--after", required=True, help="src folder of the changed tree")
    parser.add_argument("--ptbxl", default=os.environ.get("ECGFM_PTBXL_DIR", DEFAULT_PTBXL))
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    headers = sorted(str(p) for p in Path(args.ptbxl).glob("records*/*/*.hea"))
    step = max(1, len(headers) // args.limit)
    paths = headers[::step][:args.limit]
    paths_file = Path(tempfile.mkstemp(suffix=".json")[1])  # the record list the worker processes read
    paths_file.write_text(json.dumps(paths))
    rows: dict[str, list[float]] = {"before": [], "after": []}
    digests = set()
    try:
        for round_ in range(args.rounds):
            for name in (("before", "after") if round_ % 2 == 0 else ("after", "before")):
                result = run(getattr(args, name), paths_file)
                rows[name].append(1000 * result["cpu_s"] / len(paths))
                digests.add(result["digest"])
            print(f"round {round_ + 1}: before {rows['before'][-1]:.3f} ms, after {rows['after'][-1]:.3f} ms "
                  "CPU per record", flush=True)
    finally:
        paths_file.unlink(missing_ok=True)
    before, after = statistics.median(rows["before"]), statistics.median(rows["after"])
    report = {
        "benchmark": "ecgfm.read CPU ms per PTB-XL record, two source trees interleaved (benchmarks/read_versions.py)",
        "records": len(paths), "rounds": args.rounds, "before_tree": args.before, "after_tree": args.after,
        "cpu_ms_per_record": rows, "median_before_ms": round(before, 4), "median_after_ms": round(after, 4),
        "after_over_before": round(after / before, 4), "identical_arrays": len(digests) == 1,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform(),
                    "load_average_1_5_15min": list(os.getloadavg())},
        "command": command_line(argv),
    }
    print(f"median CPU per record: before {before:.3f} ms, after {after:.3f} ms ({after / before:.3f}x); "
          f"identical arrays: {report['identical_arrays']}")
    write_result(args.out, report, indent=2)
    return report


if __name__ == "__main__":
    main()
