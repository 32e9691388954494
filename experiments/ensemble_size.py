"""Benchmark: what more training compute buys, measured as ensemble size, on PTB-XL folds 9 and 10.

Method. Two or more runs of one ensemble recipe with different seeds (``--run``, e.g. ``default`` with member seeds
0-3 and 4-7) give two trained networks of every member type (``crops2.5s``, ``crops5s``, ...). Each network's record
logits on fold 9 (validation) and fold 10 (test) are computed once (its own window, half-window stride, max over
windows, as the recipe scores); ensembles are then formed by averaging logits over:

- **k = 4, one network per type**: every way to pick each type's network from one of the runs (2^4 = 16 for two
  runs). Each pick is a legitimate draw of the recipe with other member seeds, so their spread is the recipe's seed
  spread and their mean its expected score, with less noise than one training run gives;
- **k = 8, all networks of both runs** (twice the training compute of the recipe; for two runs, one combination);
- every other type-balanced size in between (k = 5..7: the 4-network ensemble plus extra networks of some types).

Reported per k: number of combinations, mean / min / max macro-AUC on each fold (statements with >= 5 positives in
that fold, as ``benchmarks/pretrain.py`` scores fold 10) and the mean training minutes (each network's recorded
training time, validation included). This measures scaling, not a choice: no ensemble here is a candidate for the
shipped model, whose recipe was fixed on fold 9 before; the k = 8 ensemble needs about 59 minutes of training on 2
CPU cores, twice the 30-minute budget.

Run: ``python experiments/ensemble_size.py --run runs/bench-pretrain/default --run runs/seed4/default
--ptbxl ../shared/data/ptbxl`` (the commands that train both runs are in ``docs/models.md``; writes
``experiments/results/ensemble_size.json``).
"""
from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from common import command_line, write_result
from ensemble_choices import MIN_POSITIVES, average, member_logits, run_members, score

from ecgfm.training.pretrain import ptbxl_training_data

RESULTS = Path(__file__).resolve().parent / "results"


def training_minutes(run: Path, member: str) -> float:
    """A member's recorded training time (cumulative ``elapsed_s`` of its last epoch, validation included)."""
    rows = [json.loads(line) for line in (run / member / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return rows[-1]["elapsed_s"] / 60


def balanced_combinations(types: list[str], n_runs: int):
    """Each type-balanced ensemble as a tuple of (type, run index): every type once or more, no network twice."""
    per_type = [[(t, r) for r in range(n_runs)] for t in types]
    for counts in itertools.product(range(1, n_runs + 1), repeat=len(types)):
        choices = [itertools.combinations(options, c) for options, c in zip(per_type, counts)]
        for picked in itertools.product(*choices):
            yield tuple(net for group in picked for net in group)


def summarise(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", action="append", required=True,
                        help="a run folder of the recipe (repeatable; the same member names in each)")
    parser.add_argument("--ptbxl", default=None, help="PTB-XL folder (default: $ECGFM_PTBXL_DIR)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "ensemble_size.json"))
    args = parser.parse_args(argv)
    if len(args.run) < 2:
        parser.error("give at least two --run folders (seed sets of one recipe)")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    data = ptbxl_training_data(args.ptbxl, task="all", fs=100.0, min_count=10, progress=False)
    runs = [Path(r) for r in args.run]
    networks = [{m[0]: m for m in run_members(run)} for run in runs]
    types = list(networks[0])
    if any(sorted(n) != sorted(types) for n in networks[1:]):
        raise SystemExit(f"the runs must hold the same members; got {[sorted(n) for n in networks]}")
    folds = {"fold9": data.val, "fold10": data.test}
    logits = {(t, r): {fold: member_logits(networks[r][t], ds) for fold, ds in folds.items()}
              for t in types for r in range(len(runs))}
    minutes = {(t, r): training_minutes(runs[r], t) for t in types for r in range(len(runs))}

    by_size: dict[int, dict[str, list[float]]] = {}
    for combo in balanced_combinations(types, len(runs)):
        row = by_size.setdefault(len(combo), {"fold9": [], "fold10": [], "minutes": []})
        for fold, ds in folds.items():
            row[fold].append(score(ds.Y, average([logits[net][fold] for net in combo])))
        row["minutes"].append(sum(minutes[net] for net in combo))
    results = {str(k): {"combinations": len(row["fold9"]), "fold9": summarise(row["fold9"]),
                        "fold10": summarise(row["fold10"]), "training_minutes": statistics.fmean(row["minutes"])}
               for k, row in sorted(by_size.items())}
    singles = {f"{t} (run {r})": {fold: score(ds.Y, logits[(t, r)][fold]) for fold, ds in folds.items()}
               for t in types for r in range(len(runs))}

    print(f"{'k':>2} {'combos':>6} {'train min':>9}  {'fold 9 mean [min, max]':<26} fold 10 mean [min, max]")
    for k, row in results.items():
        f9, f10 = row["fold9"], row["fold10"]
        print(f"{k:>2} {row['combinations']:>6} {row['training_minutes']:9.1f}  "
              f"{f9['mean']:.4f} [{f9['min']:.4f}, {f9['max']:.4f}]   {f10['mean']:.4f} [{f10['min']:.4f}, "
              f"{f10['max']:.4f}]")
    document = {
        "benchmark": "ensemble_size",
        "score": f"macro-AUC over statements with >= {MIN_POSITIVES} positives in the fold scored "
                 f"(fold 9: {len(data.val)} ECGs, fold 10: {len(data.test)} ECGs); logits averaged",
        "runs": [str(r) for r in runs], "member_types": types,
        "command": command_line(argv),
        "environment": {"python": platform.python_version(), "torch": torch.__version__},
        "wall_s": time.perf_counter() - start,
        "by_ensemble_size": results, "single_networks": singles,
        "note": "a scaling measurement, not a model choice: the shipped recipe was fixed on fold 9 beforehand",
    }
    write_result(args.out, document)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
