"""Benchmark: full paper-style evaluation of 68 labels x 100k records with 1000 patient-level bootstrap resamples.

Method. Synthetic test set (seeded): label prevalences log-uniform between 0.2 % and 40 % (rare diagnoses dominate, as
in the paper's label set), float32 scores = N(0, 1) + 1.5 x label, about 1.25 records per patient, plus a 20k-record
validation set for Youden thresholds. One timed run = ``ecgfm.evaluation.evaluate_scores`` end to end (validation
thresholds, per-label metrics, DeLong, Wilson, the vectorised cluster bootstrap of AUC/AP/sensitivity/specificity/F1
and the median/macro/micro summaries); reported: median (and all values) over ``--repeats`` runs, plus one run without
the bootstrap to split the cost. Baseline, measured in the same process: scikit-learn ``roc_auc_score`` on index
resamples of the same records (AUC only, record-level, no AP or counts: flattering to the baseline) for a few labels
x resamples, scaled per (label, resample) to the full 68 x 1000; the ratios are baseline estimate / our median, in wall
clock and in CPU time (the CPU ratio is the steadier one on a machine shared with other jobs).

Run: ``python benchmarks/evaluate.py`` (writes ``benchmarks/results/evaluate.json``); ``--quick`` for a smoke run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import sklearn
from sklearn.metrics import roc_auc_score
from common import write_result

from ecgfm.evaluation import evaluate_scores


def make_data(n_records: int, n_labels: int, n_val: int, seed: int = 0):
    """Synthetic test/validation arrays with rare and common labels and repeated patients."""
    rng = np.random.default_rng(seed)
    prevalence = np.exp(rng.uniform(np.log(0.002), np.log(0.4), n_labels))
    def split(n):
        y = (rng.random((n, n_labels), dtype=np.float32) < prevalence).astype(np.float32)
        s = rng.standard_normal((n, n_labels), dtype=np.float32)
        s += np.float32(1.5) * y
        return y, s

    y, s = split(n_records)
    patients = rng.integers(0, int(n_records / 1.25), n_records)
    vy, vs = split(n_val)
    return y, s, patients, vy, vs, prevalence


def time_sklearn_baseline(y, s, n_labels: int, n_resamples: int, seed: int = 0) -> tuple[float, float]:
    """Wall and CPU seconds per (label, resample) for scikit-learn roc_auc_score on an index resample."""
    rng = np.random.default_rng(seed)
    columns = np.linspace(0, y.shape[1] - 1, n_labels).astype(int)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n_resamples):
        idx = rng.integers(0, y.shape[0], y.shape[0])
        for j in columns:
            yj = y[idx, j]
            if 0 < yj.sum() < yj.size:
                roc_auc_score(yj, s[idx, j])
    n = n_resamples * len(columns)
    return (time.perf_counter() - start) / n, (time.process_time() - cpu) / n


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--labels", type=int, default=68)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=1, help="bootstrap threads (n_jobs)")
    parser.add_argument("--baseline-labels", type=int, default=4)
    parser.add_argument("--baseline-resamples", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small smoke run (10k records, 100 resamples, 1 repeat)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "evaluate.json")
    parser.add_argument("--no-save", action="store_true", help="print only (e.g. for scaling checks)")
    args = parser.parse_args(argv)
    if args.quick:
        args.records, args.bootstrap, args.repeats, args.baseline_resamples = 10_000, 100, 1, 2

    y, s, patients, vy, vs, prevalence = make_data(args.records, args.labels, max(args.records // 5, 1000))
    load_before = os.getloadavg()

    def run(n_bootstrap: int) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        evaluate_scores(y, s, val_true=vy, val_score=vs, patient_ids=patients, n_bootstrap=n_bootstrap, seed=0,
                        n_jobs=args.jobs)
        return time.perf_counter() - wall, time.process_time() - cpu

    no_bootstrap, no_bootstrap_cpu = run(0)
    times, cpu_times = [], []
    for i in range(args.repeats):
        wall, cpu = run(args.bootstrap)
        times.append(wall)
        cpu_times.append(cpu)
        print(f"run {i + 1}/{args.repeats}: {wall:.1f} s wall, {cpu:.1f} s CPU", file=sys.stderr)
    median = statistics.median(times)

    per_auc, per_auc_cpu = time_sklearn_baseline(y, s, args.baseline_labels, args.baseline_resamples)
    baseline_estimate = per_auc * args.labels * args.bootstrap
    baseline_estimate_cpu = per_auc_cpu * args.labels * args.bootstrap
    result = {
        "benchmark": "evaluate_scores end to end with patient-level bootstrap",
        "records": args.records, "labels": args.labels, "bootstrap_resamples": args.bootstrap,
        "patients": int(np.unique(patients).size), "validation_records": int(vy.shape[0]),
        "prevalence_min_median_max": [float(prevalence.min()), float(np.median(prevalence)), float(prevalence.max())],
        "repeats": args.repeats, "n_jobs": args.jobs, "seconds": times, "median_seconds": median,
        "cpu_seconds": cpu_times, "median_cpu_seconds": statistics.median(cpu_times),
        "seconds_without_bootstrap": no_bootstrap, "cpu_seconds_without_bootstrap": no_bootstrap_cpu,
        "baseline": {
            "what": "sklearn roc_auc_score on record-level index resamples (AUC only)",
            "labels_timed": args.baseline_labels, "resamples_timed": args.baseline_resamples,
            "seconds_per_label_resample": per_auc,
            "cpu_seconds_per_label_resample": per_auc_cpu,
            "estimated_seconds_full": baseline_estimate,
            "estimated_cpu_seconds_full": baseline_estimate_cpu,
        },
        "speedup_vs_baseline": baseline_estimate / median,
        "speedup_vs_baseline_cpu": baseline_estimate_cpu / statistics.median(cpu_times),
        "machine": {"cpus": os.cpu_count(), "load_average_before": load_before,
                    "load_average_after": os.getloadavg(), "python": platform.python_version(),
                    "numpy": np.__version__, "scipy": scipy.__version__, "sklearn": sklearn.__version__},
        "method": "median of repeated end-to-end runs: wall clock (time.perf_counter) and process CPU time "
                  "(time.process_time; less sensitive to other jobs on a shared machine), one process; the baseline "
                  "is wall clock in the same process",
    }
    print(json.dumps(result, indent=2))
    if not (args.quick or args.no_save):
        write_result(args.out, result, indent=2)
    return result


if __name__ == "__main__":
    main()
