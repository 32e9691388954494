"""Benchmark: pre-training recipes on PTB-XL under one CPU time budget, scored on fold 10.

Method. For each recipe (``ecgfm.training.recipes``: ecgfm's ``default`` ensemble, its single-network member
``xresnet1d50``, and the PTB-XL benchmark's ``xresnet1d101`` and ``inception1d`` settings) a fresh subprocess (so peak RSS is per recipe) loads
PTB-XL (cached arrays), trains on folds 1-8 with fold 9 for validation / best-epoch selection, and scores fold 10.
Budget: each model's number of epochs is the recipe's, scaled down (all members alike) if the recipe would not fit
``--budget-min`` minutes (estimated from a probe of a few training steps and a validation pass per model; the
one-cycle schedules then run to completion), with a hard stop per model at its share of the budget.

Score (the project's target): macro-AUC over the statements with >= 5 positives in fold 10 (labels: all statements
with >= ``min_count`` training positives). Also reported: the PTB-XL paper-style median AUC, and median sensitivity and
specificity at per-label Youden thresholds chosen on fold 9 (``ecgfm.evaluation.evaluate_scores``); training
throughput (median ECGs/s over epochs); peak RSS; wall time (data loading and training separately).
Run it on a quiet machine: throughput and the epochs that fit the budget depend on free cores.

Run: ``python benchmarks/pretrain.py --budget-min 30`` (writes ``benchmarks/results/pretrain.json``);
``--quick`` for a 1-minute smoke run. ``--keep DIR`` keeps every run folder (the trained models); with ``--resume``,
ensemble members already trained there are reused and their recorded training time counts. Members are seeded
``seed + i`` in order, so recipes sharing leading members share those runs exactly: with ``--keep --resume`` a member
trained to the end of its schedule for another recipe in KEEP (same name, same result-affecting options) is linked
into this recipe's folder instead of being trained again (``ensemble3`` reuses ``plain``'s first three).
``--keep DIR --train-only`` trains the recipes as planned and scores nothing (fold 10 is not read), so a candidate can
be judged on fold 9 first (``benchmarks/ensemble_choices.py``); a later run with ``--resume`` scores the kept runs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import command_line, write_result

RESULTS = Path(__file__).resolve().parent / "results"


def probe_epoch_seconds(model, train_set, val_set, config, steps: int = 3) -> float:
    """Estimated seconds per epoch: timed training steps and a timed validation pass on a slice of fold 9."""
    import torch

    from ecgfm.training.data import RandomCropDataset
    from ecgfm.training.predict import predict_logits
    from ecgfm.training.trainer import build_optimizer, masked_bce_with_logits

    state = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = build_optimizer(model, 1e-9, 0.0)
    crops = RandomCropDataset(train_set, config.window) if config.window else train_set
    batch = [crops[i] for i in range(min(config.batch_size, len(crops)))]
    x, y = torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])
    model.train()
    times = []
    for _ in range(steps + 1):  # the first step warms up oneDNN kernels
        start = time.perf_counter()
        loss = masked_bce_with_logits(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    per_ecg = float(np.median(times[1:])) / len(x)
    sample = torch.utils.data.Subset(val_set, range(min(64, len(val_set))))
    val_times = []
    for _ in range(2):  # the first pass warms up the evaluation shapes' kernels, which would inflate the estimate
        start = time.perf_counter()
        predict_logits(model, sample, config.window, config.test_stride, config.aggregate,
                       batch_size=config.eval_batch_size)
        val_times.append(time.perf_counter() - start)
    val_per_ecg = val_times[-1] / len(sample)
    model.load_state_dict(state)
    return per_ecg * len(train_set) + val_per_ecg * len(val_set)


def paper_metrics(test_Y, test_logits, val_Y, val_logits, labels):
    """Median AUC / sensitivity / specificity at Youden thresholds fitted on validation (PTB-XL paper style)."""
    from ecgfm.evaluation import evaluate_scores

    result = evaluate_scores(test_Y, test_logits, labels, val_true=val_Y, val_score=val_logits, thresholds="youden",
                             n_bootstrap=0)
    s = result.summary
    return {"median_auc": s["median_auc"]["value"], "macro_auc_all_evaluable": s["macro_auc"]["value"],
            "median_sensitivity_youden": s["median_sensitivity"]["value"],
            "median_specificity_youden": s["median_specificity"]["value"], "n_evaluable_labels": s["n_evaluable"]}


def plan_budget(recipe, data, budget_s: float, threads: int, fit_budget: bool = True):
    """Epochs per member so the whole recipe trains in ``budget_s`` (probe-estimated; ``fit_budget=False`` keeps the
    recipe's epochs and only measures), plus each member's hard time limit (its share of the budget)."""
    from dataclasses import replace

    import torch

    from ecgfm.models import create

    members, costs = recipe.member_list(), []
    jobs = recipe.jobs if recipe.members else 1
    torch.set_num_threads(max(1, threads // jobs))  # probe at the threads each member will train with
    for member in members:
        torch.manual_seed(0)
        model = create(member.model, len(data.labels), **member.model_kwargs)
        costs.append(probe_epoch_seconds(model, data.train, data.val, member.config))
    torch.set_num_threads(threads)
    # members training side by side (recipe.jobs) share the budget's wall time: jobs times as many member-seconds
    slot_budget_s = budget_s * jobs
    planned = sum(m.config.epochs * c for m, c in zip(members, costs))
    scale = min(1.0, 0.93 * slot_budget_s / planned) if fit_budget else 1.0
    plan = []
    for member, cost in zip(members, costs):
        epochs = max(1, int(member.config.epochs * scale))
        share = slot_budget_s * epochs * cost / max(sum(max(1, int(m.config.epochs * scale)) * c
                                                        for m, c in zip(members, costs)), 1e-9)
        stop = member.config.stop_epoch  # a recorded stop scales with its schedule
        stop = None if stop is None else min(epochs, max(1, int(stop * scale)))
        plan.append(replace(member, config=replace(member.config, epochs=epochs, stop_epoch=stop, time_limit_s=share)))
    if recipe.members:
        return replace(recipe, members=tuple(plan)), costs
    return replace(recipe, config=plan[0].config), costs


def share_members(keep: Path, recipe, seed: int, member_threads: int | None = None) -> list[str]:
    """Link each member of ensemble ``recipe`` not yet in ``keep/<recipe>/`` to the same member already trained to the
    end of its schedule for another recipe in ``keep`` (same name and the same result-affecting options, seed
    included: member ``i`` trains with ``seed + i``) and trained with the same CPU threads (``member_threads``; they
    decide the float rounding), so that recipes sharing leading members (``ensemble3`` is ``default``'s first three)
    train them once. Returns the members linked."""
    from ecgfm.training.trainer import result_options

    linked = []
    for i, member in enumerate(recipe.members):
        target = keep / recipe.name / member.name
        if target.exists():
            continue
        wanted = {**member.config.to_dict(), "seed": seed + i}
        for other in sorted(p for p in keep.glob(f"*/{member.name}") if p.parent.name != recipe.name):
            config_file, metrics_file = other / "config.json", other / "metrics.jsonl"
            if not all(f.exists() for f in (other / "last.pt", config_file, metrics_file)):
                continue
            stored = json.loads(config_file.read_text())["training"]["config"]
            # only a run that finished its schedule: resuming one that an earlier recipe's time limit stopped would
            # train on in that recipe's folder, after its row was scored
            finished = len(metrics_file.read_text().splitlines()) >= (stored.get("stop_epoch") or stored["epochs"])
            same_threads = member_threads is None or stored.get("num_threads") == member_threads
            if finished and same_threads and result_options(stored) == result_options(wanted):
                target.parent.mkdir(parents=True, exist_ok=True)
                # relative, so the keep folder can be moved or renamed as a whole
                target.symlink_to(os.path.relpath(other, target.parent), target_is_directory=True)
                linked.append(f"{member.name} -> {other}")
                break
    return linked


def run_one(name: str, budget_s: float, ptbxl: str | None, threads: int, seed: int, keep: str | None = None,
            resume: bool = False, fit_budget: bool = True, train_only: bool = False) -> dict:
    """Train and score one recipe in this process; with ``keep``, its run folder stays in ``keep/<recipe>``, and with
    ``resume`` runs (ensemble members) already finished there are reused: their recorded training time counts.
    ``train_only`` stops after training (fold 10 is not read), for a candidate to be judged on fold 9 first."""
    import torch

    from ecgfm.models import count_flops, count_params
    from ecgfm.training.members import TrainingClock
    from ecgfm.training.metrics import per_label_auc
    from ecgfm.training.predict import predict_logits
    from ecgfm.training.pretrain import pretrain_recipe, ptbxl_training_data
    from ecgfm.training.recipes import get_recipe

    torch.set_num_threads(threads)
    recipe = get_recipe(name)
    start = time.perf_counter()
    data = ptbxl_training_data(ptbxl, task="all", fs=recipe.fs, min_count=recipe.min_count, progress=False)
    test = data.test
    data_s = time.perf_counter() - start

    planned, epoch_costs = plan_budget(recipe, data, budget_s, threads, fit_budget)
    shared = []
    if keep and resume and planned.members:
        shared = share_members(Path(keep), planned, seed, member_threads=max(1, threads // planned.jobs))
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = str(Path(keep) / name) if keep else tmp
        start = time.perf_counter()
        result = pretrain_recipe(data, planned, run_dir=run_dir, seed=seed, num_threads=threads, progress=False,
                                 resume=resume)
        train_s = time.perf_counter() - start
        histories = {}
        for member in planned.member_list():
            folder = Path(run_dir) / member.name if planned.members else Path(run_dir)
            histories[member.name] = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        clock = TrainingClock.read(run_dir) if planned.members else None
    # training time: the wall clock the recipe's invocations spent training (members side by side overlap), else as
    # each member's run recorded it (so members reused with --resume count too)
    member_seconds = sum(rows[-1]["elapsed_s"] for rows in histories.values() if rows)
    jobs = planned.jobs if planned.members else 1
    train_wall_s = clock["wall_s"] if clock is not None and jobs > 1 else member_seconds
    # members side by side train in worker processes, each reporting its own peak (ecgfm.training.members)
    workers = [m.get("worker_peak_rss_mb") for m in (result.info.training or {}).get("members", [])] if jobs > 1 else []
    rss = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "peak_rss_mb_member_process": max((w for w in workers if w is not None), default=None)}
    if train_only:
        return {"recipe": name, "train_only": True, "members_shared": shared, "jobs": jobs,
                "epochs_run": {k: len(rows) for k, rows in histories.items()},
                "train_wall_s": train_wall_s, "member_seconds": member_seconds, "training_clock": clock, **rss}
    model, info = result.model, result.info

    logits = predict_logits(model, test, info.window, info.stride, info.aggregate)
    val_logits = predict_logits(model, data.val, info.window, info.stride, info.aggregate)
    scored = test.Y.sum(axis=0) >= 5
    aucs = per_label_auc(test.Y, logits)
    labels = np.array(data.labels)
    # throughput over all members' epochs: ECGs drawn / seconds spent in training steps (validation excluded)
    seen = sum(len(data.train) for rows in histories.values() for _ in rows)
    busy = sum(len(data.train) / h["train_ecgs_per_s"] for rows in histories.values() for h in rows)
    return {
        "recipe": name, "model": recipe.model, "description": recipe.description, "fs": recipe.fs,
        "min_count": recipe.min_count, "seed": seed,
        "members": [{"name": m.name, "model": m.model, "model_kwargs": m.model_kwargs, "config": m.config.to_dict(),
                     "estimated_epoch_s": cost, "epochs_run": len(histories[m.name]),
                     "best_val_macro_auc": max((h.get("val_macro_auc", float("nan")) for h in histories[m.name]),
                                               default=None)}
                    for m, cost in zip(planned.member_list(), epoch_costs)],
        "params": count_params(model), "gflops_per_10s_ecg": count_flops(model, (1, 12, int(10 * recipe.fs))) / 1e9,
        "n_labels": len(data.labels), "n_train": len(data.train), "n_val": len(data.val), "n_test": len(test),
        "n_scored_labels": int(scored.sum()),
        "test_macro_auc": float(np.nanmean(aucs[scored])),
        "test_macro_auc_all_labels": float(np.nanmean(aucs)),
        **paper_metrics(test.Y[:, scored], logits[:, scored], data.val.Y[:, scored], val_logits[:, scored],
                        list(labels[scored])),
        "per_label_auc": {str(k): float(v) for k, v in zip(labels[scored], aucs[scored])},
        "val_macro_auc": result.best_score,
        # ECGs drawn per second of training steps; members side by side (jobs) each draw at their own rate
        "train_ecgs_per_s": jobs * seen / busy, "jobs": jobs,
        "train_wall_s": train_wall_s, "member_seconds": member_seconds, "training_clock": clock,
        "train_wall_s_this_process": train_s, "data_wall_s": data_s, "resumed": resume, "members_shared": shared,
        "epochs_fitted_to_budget": fit_budget, **rss,
        "histories": histories,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipes", default="default,plain,ensemble3,xresnet1d50,xresnet1d101,inception1d")
    parser.add_argument("--budget-min", type=float, default=30.0, help="training minutes per recipe")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ptbxl", default=None, help="PTB-XL folder (default: $ECGFM_PTBXL_DIR)")
    parser.add_argument("--out", default=str(RESULTS / "pretrain.json"))
    parser.add_argument("--quick", action="store_true", help="1-minute budget per recipe (smoke run)")
    parser.add_argument("--keep", help="keep each recipe's run folder (checkpoints, metrics) in KEEP/<recipe>")
    parser.add_argument("--resume", action="store_true", help="with --keep: reuse runs (ensemble members) finished "
                        "there; their recorded training time counts")
    parser.add_argument("--fixed-epochs", action="store_true", help="train the recipes' epochs as they are (measure "
                        "the time) instead of scaling them to fit --budget-min")
    parser.add_argument("--train-only", action="store_true", help="with --keep: train the recipes as the budget "
                        "plans, score nothing (fold 10 unread) and write no JSON; a later run with --resume scores "
                        "them")
    parser.add_argument("--single", help=argparse.SUPPRESS)  # internal: run one recipe, print JSON
    args = parser.parse_args(argv)
    budget_s = 60.0 if args.quick else args.budget_min * 60
    if args.train_only and not args.keep:
        parser.error("--train-only needs --keep (the trained runs are all it leaves)")

    if args.single:
        print("RESULT " + json.dumps(run_one(args.single, budget_s, args.ptbxl, args.threads, args.seed,
                                                   args.keep, args.resume, not args.fixed_epochs,
                                                   args.train_only)))
        return 0

    import torch

    load_before = os.getloadavg()
    runs = []
    for name in args.recipes.split(","):
        command = [sys.executable, __file__, "--single", name, "--budget-min", str(budget_s / 60),
                   "--threads", str(args.threads), "--seed", str(args.seed)] + (["--ptbxl", args.ptbxl] if args.ptbxl else [])
        command += ["--keep", args.keep] if args.keep else []
        command += ["--resume"] if args.resume else []
        command += ["--fixed-epochs"] if args.fixed_epochs else []
        command += ["--train-only"] if args.train_only else []
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            raise SystemExit(f"recipe {name} failed")
        run = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
        run["process_wall_s"] = time.perf_counter() - start
        if args.train_only:
            print(f"{name:14s} trained (not scored): epochs {run['epochs_run']}, train {run['train_wall_s'] / 60:.1f} "
                  f"min, peak RSS {run['peak_rss_mb']:.0f} MB, shared {run['members_shared']}", flush=True)
            continue
        runs.append(run)
        print(f"{name:14s} macro-AUC {run['test_macro_auc']:.4f} (>=5 positives, {run['n_scored_labels']} labels) "
              f"median AUC {run['median_auc']:.4f} sens {run['median_sensitivity_youden']:.3f} "
              f"spec {run['median_specificity_youden']:.3f} | {sum(m['epochs_run'] for m in run['members'])} epochs, "
              f"{run['train_ecgs_per_s']:.0f} ECGs/s, train {run['train_wall_s'] / 60:.1f} min, "
              f"peak RSS {run['peak_rss_mb']:.0f} MB", flush=True)
    if args.train_only:
        return 0
    baseline = next((r for r in runs if r["recipe"] == "default"), runs[0])
    for run in runs:
        run["macro_auc_minus_default"] = run["test_macro_auc"] - baseline["test_macro_auc"]
        run["throughput_ratio_vs_default"] = run["train_ecgs_per_s"] / baseline["train_ecgs_per_s"]
    document = {
        "benchmark": "pretrain", "budget_min_per_recipe": budget_s / 60, "threads": args.threads,
        "score": "macro-AUC on PTB-XL fold 10 over statements with >= 5 positives there; train folds 1-8, "
                 "validation (best epoch, Youden thresholds) fold 9",
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "cpu_count": os.cpu_count(), "platform": platform.platform(),
                        "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "command": command_line(argv),
        "runs": runs,
    }
    write_result(args.out, document)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
