"""Benchmark: how long a recipe's training takes on this machine, projected from a few real epochs per member.

The training times in ``experiments/results/pretrain.json`` are whole runs on the machine that ran that benchmark; a
recipe's time budget only means something on a stated CPU. This script answers "how long would ``ecgfm pretrain
--recipe NAME`` take here?" in a few minutes instead of half an hour.

Method. Each distinct member configuration of a recipe (members that differ only in name and seed share one
measurement) trains on the real PTB-XL folds 1-8 for ``--epochs`` epochs with its own options (the one-cycle schedule
shortened, which does not change an epoch's cost), validating on fold 9 every epoch as the recipe does. Epoch times
come from the run's own ``elapsed_s`` log (training, validation and checkpoint-free bookkeeping included); the first
epoch is dropped (kernel warm-up, first touch of the cached arrays). Projection: the median of the remaining epoch
times x the epochs the member trains (its recorded ``stop_epoch`` where the recipe has one), summed over members.
Reference: where ``experiments/results/pretrain.json`` holds a run of the same recipe, the same median from its
recorded epoch logs, so the JSON carries this machine's speed relative to the machine the shipped numbers came from.
Fold 10 is never read.

Members trained side by side (a recipe's ``jobs``, or ``--jobs``): each distinct member is timed while ``jobs - 1``
copies of it (other seeds) train beside it, each on ``threads / jobs`` threads, so its epochs are measured under
the same competition for the cores as in the real run; the recipe's projected wall time is then the longest of the
``jobs`` queues when members are handed out longest first, as ``ecgfm.training.members`` does.

Run: ``python experiments/recipe_time.py --recipes default --threads 2 --ptbxl ../shared/data/ptbxl`` (writes
``experiments/results/recipe_time.json``); ``--amp`` times the members under bf16 autocast, ``--channels-last`` with
2-D channels-last convolutions; ``--quick`` is a smoke run (2 epochs per member).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from common import command_line, cpu_flags, write_result

from ecgfm.training.members import MemberRun, train_members
from ecgfm.training.pretrain import pretrain, ptbxl_training_data
from ecgfm.training.recipes import get_recipe

RESULTS = Path(__file__).resolve().parent / "results"


def epoch_seconds(history: list[dict]) -> list[float]:
    """Wall seconds of each epoch from a run's history (``elapsed_s`` is cumulative since the run started)."""
    elapsed = [row["elapsed_s"] for row in history]
    return [b - a for a, b in zip([0.0] + elapsed[:-1], elapsed)]


def member_key(member) -> str:
    """What decides a member's cost: architecture and options, without its name or seed."""
    config = {k: v for k, v in member.config.to_dict().items() if k not in ("seed", "stop_epoch", "epochs")}
    return json.dumps([member.model, member.model_kwargs, config], sort_keys=True, default=str)


def trained_epochs(member) -> int:
    """The epochs a member trains: its schedule, or the recorded stop inside it."""
    return member.config.stop_epoch or member.config.epochs


def recorded_epoch_seconds(recipe_name: str) -> dict[str, float]:
    """Median epoch seconds (first epoch dropped) per member from the recipe's run in pretrain.json, if any."""
    path = RESULTS / "pretrain.json"
    if not path.exists():
        return {}
    runs = [r for r in json.loads(path.read_text())["runs"] if r["recipe"] == recipe_name]
    if not runs:
        return {}
    return {name: statistics.median(epoch_seconds(history)[1:])
            for name, history in runs[0]["histories"].items() if len(history) > 1}


def longest_queue(durations: list[float], jobs: int) -> float:
    """Wall time of ``jobs`` queues that take the tasks longest first, each task to the queue free soonest."""
    queues = [0.0] * jobs
    for duration in sorted(durations, reverse=True):
        queues[queues.index(min(queues))] += duration
    return max(queues)


def measure_epochs(data, member, config, jobs: int) -> list[float]:
    """Epoch seconds of ``member`` with ``config``: alone, or beside ``jobs - 1`` copies of itself (other seeds)."""
    if jobs == 1:
        return epoch_seconds(pretrain(data, member.model, member.model_kwargs, config).history)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [MemberRun(i, f"{member.name}-{i}", member.model, dict(member.model_kwargs),
                          replace(config, seed=config.seed + i), Path(tmp) / str(i)) for i in range(jobs)]
        train_members(data, runs, jobs=jobs)
        histories = [[json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
                     for run in runs]
    return epoch_seconds(histories[0])


def time_recipe(name: str, ptbxl: str | None, epochs: int, threads: int, amp: bool | None,
                channels_last: bool | None = None, jobs: int | None = None) -> dict:
    """Train each distinct member of recipe ``name`` for ``epochs`` epochs and project the whole recipe's time."""
    recipe = get_recipe(name)
    jobs = jobs or recipe.jobs
    data = ptbxl_training_data(ptbxl, fs=recipe.fs, min_count=recipe.min_count, progress=False)
    measured: dict[str, list[float]] = {}
    members = []
    recorded = recorded_epoch_seconds(name)
    for member in recipe.member_list():
        key = member_key(member)
        if key not in measured:
            changes = dict(epochs=epochs, stop_epoch=None, time_limit_s=None, num_threads=max(1, threads // jobs),
                           progress=False, tensorboard=False)
            for option, value in (("amp", amp), ("channels_last", channels_last)):
                if value is not None:
                    changes[option] = value
            measured[key] = measure_epochs(data, member, replace(member.config, **changes), jobs)
        seconds = statistics.median(measured[key][1:])
        row = {"member": member.name, "window": member.config.window, "batch_size": member.config.batch_size,
               "epochs": trained_epochs(member), "epoch_seconds_measured": measured[key],
               "median_epoch_s": seconds, "projected_s": seconds * trained_epochs(member)}
        if member.name in recorded:
            row["recorded_median_epoch_s"] = recorded[member.name]
            row["slowdown_vs_recorded"] = seconds / recorded[member.name]
        members.append(row)
        print(f"{name:>14} {member.name:<12} {seconds:6.1f} s/epoch x {trained_epochs(member):3d} epochs "
              f"= {row['projected_s'] / 60:5.1f} min" + (f"  ({row['slowdown_vs_recorded']:.2f}x the recorded run)"
                                                          if "slowdown_vs_recorded" in row else ""))
    member_total = sum(m["projected_s"] for m in members)
    total = longest_queue([m["projected_s"] for m in members], jobs)
    print(f"{name:>14} projected training time {total / 60:.1f} min"
          + (f" ({jobs} members at a time, {member_total / 60:.1f} member-minutes)" if jobs > 1 else ""))
    return {"recipe": name, "amp": amp, "channels_last": channels_last, "jobs": jobs,
            "threads_per_member": max(1, threads // jobs), "members": members, "member_seconds": member_total,
            "projected_training_s": total, "projected_training_min": total / 60}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="default", help="comma-separated recipe names")
    parser.add_argument("--epochs", type=int, default=4, help="epochs trained per distinct member (first dropped)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 autocast for every member (default: each member's own setting)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="2-D channels-last convolutions for every member (default: each member's own setting)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="members trained at once, each on threads / jobs threads (default: the recipe's)")
    parser.add_argument("--ptbxl", default=None, help="PTB-XL folder (default: $ECGFM_PTBXL_DIR)")
    parser.add_argument("--out", default=str(RESULTS / "recipe_time.json"))
    parser.add_argument("--quick", action="store_true", help="2 epochs per member (smoke run)")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is dropped)")
    torch.set_num_threads(args.threads)
    epochs = 2 if args.quick else args.epochs
    load_before = os.getloadavg()
    start = time.perf_counter()
    results = [time_recipe(name.strip(), args.ptbxl, epochs, args.threads, args.amp, args.channels_last, args.jobs)
               for name in args.recipes.split(",") if name.strip()]
    document = {
        "benchmark": "recipe_time", "command": command_line(argv), "epochs_per_member": epochs,
        "threads": args.threads, "cpu": cpu_flags(), "results": results, "wall_s": time.perf_counter() - start,
        "environment": {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
                        "load_average_before": load_before, "load_average_after": os.getloadavg()},
    }
    write_result(args.out, document)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
