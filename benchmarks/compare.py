"""Benchmark: which fine-tuning recipe holds up at tiny training sizes, against training from scratch (and its cost).

Method. The recipe is chosen on a *tuning* split that never touches the final test patients: by default PTB-XL folds
1-8 are the training pool and fold 9 the tuning test set (fold 10, where ``docs/results.md`` reports, is not read).
Every variant of the fine-tuning arm (``VARIANTS``) and one from-scratch arm (the pre-training recipe) train on the
same nested patient-level training sets (same seeds, same inner validation split, same epoch budget) through
``ecgfm.transfer.compare`` in one resumable folder (each recipe's cells are keyed by a hash of its settings). Reported per variant,
label and size: median AUC over seeds, the median paired difference to scratch, the number of seeds it beats scratch,
and the wall time per trained cell. The variant ``naive`` is the pre-training recipe applied to fine-tuning (all
layers at lr 1e-2 one-cycle, no frozen warm-up, BatchNorm statistics re-estimated): the failure mode to avoid.

Run: ``python benchmarks/compare.py --from runs/fm-heldout/best.pt --ptbxl ../shared/data/ptbxl``
(writes ``benchmarks/results/compare_recipe.json``); ``--quick`` for a smoke run.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import write_result

from ecgfm.datasets import load_labelled
from ecgfm.evaluation.metrics import roc_auc
from ecgfm.models import load
from ecgfm.transfer.compare import CompareConfig, Comparison, cell_path, load_cell
from ecgfm.transfer.config import FinetuneConfig

#: Fine-tuning variants (FinetuneConfig.for_strategy changes, "strategy" included); "default" is the shipped recipe.
VARIANTS = {
    "default": {},  # LP-FT: fitted logistic-regression probe head, then discriminative fine-tuning (the probe alone
    # when the inner validation split has < 5 positives)
    "always-ft": {"min_val_positives": 0},  # LP-FT even when validation has 2 positives (the session-2 default)
    "naive": {"lr": 1e-2, "schedule": "onecycle", "warmup_frac": 0.3, "new_head": "fc", "warmup_epochs": 0,
              "freeze_bn": False, "body_lr_scale": 1.0, "layer_lr_decay": 1.0},
    "linear": {"strategy": "linear"},
    "gradual": {"strategy": "gradual"},
    "train-bn": {"freeze_bn": False},
    "no-select": {"select_warmup": False},
    "sgd-warmup": {"new_head": "fc"},  # the previous default: SGD warm-up of a fresh final layer
    "whole-head": {"new_head": "head"},
    "max-agg": {"aggregate": "max"},
    "lr-3e-3": {"lr": 3e-3},
    # batch augmentation of the fine-tuning stage (ecgfm.training.augment); the pre-training screen's settings
    "jitter": {"scale_jitter": 0.1, "noise_mv": 0.02},
    "mixup": {"mixup": 0.2},
}


def run_arm(model, data, labels, sizes, seeds, budget, variant, arms, out_dir, neg_ratio):
    ft = FinetuneConfig.for_strategy(**{**budget, **VARIANTS.get(variant, {})})
    config = CompareConfig(labels=labels, sizes=sizes, seeds=seeds, arms=arms, finetune=ft, neg_ratio=neg_ratio,
                           n_bootstrap=0)
    comparison = Comparison(model, data, config, out_dir, foundation_name="benchmark")
    started = time.perf_counter()
    comparison.run(progress=lambda done, total, cell, event: event == "start" and print(
        f"  [{done + 1}/{total}] {variant}: {cell}", flush=True))
    return comparison, time.perf_counter() - started


def cell_aucs(comparison, arm):
    """{(label, size, seed): (auc, seconds)} from finished cells."""
    out = {}
    for label in comparison.config.labels:
        y_all = comparison.y[label]
        for size in comparison.config.sizes:
            for seed in comparison.config.seeds:
                path = cell_path(comparison.out_dir, label, size, seed, "test", comparison.config.arm_key(arm))
                if path.exists():
                    scores, index, meta = load_cell(path)
                    out[(label, size, seed)] = (roc_auc(y_all[index], scores), meta["seconds"], scores, index)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", required=True, help="Held-out foundation checkpoint.")
    parser.add_argument("--ptbxl", default=os.environ.get("ECGFM_PTBXL_DIR", "../shared/data/ptbxl"))
    parser.add_argument("--labels", default="DIG,1AVB,LAO/LAE")
    parser.add_argument("--sizes", default="10,25")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--variants", default="default,naive,linear,gradual")
    parser.add_argument("--train-folds", default="1-8")
    parser.add_argument("--test-folds", default="9")
    parser.add_argument("--epochs", type=int, default=FinetuneConfig().train.epochs)
    parser.add_argument("--patience", type=int, default=FinetuneConfig().train.patience)
    parser.add_argument("--neg-ratio", type=float, default=9.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default="runs/bench-compare", help="Folder for the resumable cells.")
    parser.add_argument("--quick", action="store_true", help="Smoke run: one label, size 10, one seed, 3 epochs.")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "compare_recipe.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    labels = parse_list(args.labels)[:1] if args.quick else parse_list(args.labels)
    sizes = [10] if args.quick else [int(s) if s != "all" else s for s in parse_list(args.sizes)]
    seeds = [0] if args.quick else list(range(args.seeds))
    variants = parse_list(args.variants)
    budget = {"epochs": 3 if args.quick else args.epochs, "patience": args.patience, "num_threads": args.threads,
              "device": "cpu"}
    model = load(args.source)
    data = load_labelled(ptbxl=args.ptbxl, labels=labels, pipeline=model.info.pipeline(), train_folds=args.train_folds,
                         val_folds=(), test_folds=args.test_folds, progress=False)
    work = Path(args.work)
    print(f"scratch + embeddings arms on {labels}, sizes {sizes}, seeds {seeds}", flush=True)
    reference, ref_seconds = run_arm(model, data, labels, sizes, seeds, budget, "default",
                                     ["scratch", "embeddings"], work, args.neg_ratio)
    scratch, embeddings = cell_aucs(reference, "scratch"), cell_aucs(reference, "embeddings")
    results = {"scratch": _summarise(scratch, None), "embeddings": _summarise(embeddings, scratch)}
    for variant in variants:
        comparison, seconds = run_arm(model, data, labels, sizes, seeds, budget, variant, ["finetune"],
                                      work, args.neg_ratio)
        results[variant] = _summarise(cell_aucs(comparison, "finetune"), scratch)
        results[variant]["overrides"] = VARIANTS.get(variant, {})
    _print(results, labels, sizes)
    counts = {label: {"pool_positive_patients": int(len(set(data.patient_ids[
        (data.split == "train") & (reference.y[label] == 1)]))), "test_positives": int(np.sum(
            reference.y[label][data.split == "test"] == 1))} for label in labels}
    report = {
        "benchmark": "compare_recipe", "argv": sys.argv[1:] if argv is None else argv, "labels": labels,
        "sizes": sizes, "seeds": seeds, "budget": budget, "tuning_split": {"train_folds": args.train_folds,
                                                                          "test_folds": args.test_folds},
        "counts": counts, "foundation": args.source, "results": results,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                    "threads": args.threads, "platform": platform.platform()},
    }
    write_result(args.out, report, indent=2)
    return report


def _summarise(cells, scratch) -> dict:
    """Per (label, size): median AUC over seeds, median paired difference to scratch, seeds better; overall medians."""
    by_key: dict[str, dict] = {}
    groups: dict[tuple, list] = {}
    for (label, size, seed), value in cells.items():
        groups.setdefault((label, size), []).append((seed, value))
    diffs_all = []
    for (label, size), items in groups.items():
        aucs = [v[0] for _, v in items]
        entry = {"median_auc": statistics.median(aucs), "aucs": aucs,
                 "median_seconds": statistics.median(v[1] for _, v in items)}
        if scratch is not None:
            diffs = [v[0] - scratch[(label, size, seed)][0] for seed, v in items if (label, size, seed) in scratch]
            if diffs:
                entry.update(median_diff_vs_scratch=statistics.median(diffs), seeds_better=sum(d > 0 for d in diffs),
                             seeds=len(diffs))
                diffs_all += diffs
        by_key[f"{label}|{size}"] = entry
    overall = {"median_auc": statistics.median(v[0] for v in cells.values()) if cells else None}
    if diffs_all:
        overall.update(median_diff_vs_scratch=statistics.median(diffs_all), cells_better=sum(d > 0 for d in diffs_all),
                       cells=len(diffs_all), worst_diff=min(diffs_all))
    return {"by_label_size": by_key, "overall": overall}


def _print(results, labels, sizes) -> None:
    keys = [f"{label}|{size}" for label in labels for size in sizes]
    print(f"\n{'arm':<12}" + "".join(f"{k:>18}" for k in keys) + f"{'median Δ':>10}{'worst Δ':>9}")
    for name, res in results.items():
        cells = []
        for k in keys:
            e = res["by_label_size"].get(k)
            cells.append("-" if e is None else f"{e['median_auc']:.3f}" + (
                f" ({e['median_diff_vs_scratch']:+.3f})" if "median_diff_vs_scratch" in e else ""))
        overall = res["overall"]
        print(f"{name:<12}" + "".join(f"{c:>18}" for c in cells)
              + f"{overall.get('median_diff_vs_scratch', float('nan')):>+10.3f}{overall.get('worst_diff', float('nan')):>+9.3f}")


def parse_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


if __name__ == "__main__":
    main()
