"""Experiment: choosing the foundation recipe (one distilled network reading any lead set) on PTB-XL fold 9.

Each candidate is the product recipe ``anylead`` (``ecgfm.training.recipes``) with some options changed (the
table ``CANDIDATES`` below). The options (distillation, alpha, hospital augmentations, lead dropping) were screened
while the recipe's network was ``xresnet1d18`` (results ``base-e40``, ``no-distill-e40``...); ``x50`` then scored
higher on fold 9 in every lead set and became the recipe's network. A candidate trains on folds 1-8 (distilled from
the shipped ``default8``, whose logits are cached), and is scored on fold 9 (validation, the statements with >= 5 fold-9 positives): macro-AUC reading 12
leads and reading each reduced lead set (``ecgfm.evaluation.leadsets``). ``--cpsc`` also scores the external CPSC
records (whole-record rule, labels with >= 5 positives): choosing on them is allowed and is then said. ``--test``
reads fold 10 for the named candidates, once each, after the choice was written down.

The JSON records each candidate's options, training wall time, the load average before and after it trained (a
time measured on a busy machine is not a recipe time) and the CPU.

Run: ``python experiments/foundation_choices.py --candidates base,no-distill --epochs 60 --threads 2
--ptbxl ../shared/data/ptbxl --keep runs/foundation-screen --out experiments/results/foundation_screen.json``
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from common import command_line, cpu_flags, write_result  # noqa: E402

from ecgfm.datasets import load_labelled  # noqa: E402
from ecgfm.evaluation.leadsets import lead_set_metrics  # noqa: E402
from ecgfm.evaluation.metrics import per_label_auc  # noqa: E402
from ecgfm.evaluation.model_eval import score  # noqa: E402
from ecgfm.models import load  # noqa: E402
from ecgfm.training.pretrain import pretrain, training_data  # noqa: E402
from ecgfm.training.recipes import Recipe, get_recipe  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MIN_POSITIVES = 5
NO_SHIFT = dict(lead_gain=0.0, device_filter=0.0, recording_rate=0.0, baseline_mv=0.0, powerline_mv=0.0, emg_mv=0.0,
                lead_mix=0.0)

#: name -> (changes to the recipe, changes to its TrainConfig)
CANDIDATES: dict[str, tuple[dict, dict]] = {
    "base": ({}, {}),
    "no-distill": ({"distill": None}, {}),
    "no-shift": ({}, NO_SHIFT),
    "no-drop": ({}, {"lead_drop": 0.0}),
    "alpha0.2": ({"alpha": 0.2}, {}),
    "alpha0.8": ({"alpha": 0.8}, {}),
    "x18": ({"model": "xresnet1d18"}, {}),  # the recipe's network while the options above were screened
    "x34": ({"model": "xresnet1d34"}, {}),
    "x50": ({"model": "xresnet1d50"}, {}),  # chosen: the recipe's network now
    # default8's first member's reading (2.5-s crops, max over 1.25-s-stride windows, batch 128, 50 epochs)
    "x50-crops": ({"model": "xresnet1d50"}, {"window": 250, "stride": 125, "aggregate": "max", "batch_size": 128,
                                             "epochs": 50}),
}


def candidate_recipe(name: str, epochs: int | None) -> Recipe:
    """The foundation recipe with a candidate's changes (and, for a screen, another number of epochs)."""
    base = get_recipe("anylead")
    recipe_changes, config_changes = CANDIDATES[name]
    recipe_changes = dict(recipe_changes)
    if "alpha" in recipe_changes:
        recipe_changes["distill"] = replace(base.distill, alpha=recipe_changes.pop("alpha"))
    config = replace(base.config, **config_changes, **({"epochs": epochs} if epochs else {}))
    return replace(base, name=f"anylead-{name}", config=config, **recipe_changes)


def fold_scores(model, data, split: str) -> dict:
    """Each lead set on one split (labels with >= 5 positives there): macro-AUC, median AUC, and median sensitivity
    and specificity at the set's own thresholds, fitted (Youden) on fold 9."""
    val = data.part("val").select_labels(model.info.labels)
    test = None if split == "val" else data.part(split).select_labels(model.info.labels)
    metrics = lead_set_metrics(model, val, test, min_positives=MIN_POSITIVES, n_bootstrap=200)
    return {name: {k: v for k, v in m.items() if k not in ("thresholds", "per_label", "macro_auc", "median_auc")} | {
        "macro_auc": m["macro_auc"]["value"], "macro_auc_ci": [m["macro_auc"]["ci_low"], m["macro_auc"]["ci_high"]],
        "median_auc": m["median_auc"]["value"],
        "per_label_auc": {label: row["auc"] for label, row in m["per_label"].items()}} for name, m in metrics.items()}


def cpsc_macro_auc(model, folder: str) -> dict:
    """Whole-record macro-AUC on a Challenge folder (labels with >= 5 positives), as benchmarks/external.py scores."""
    data = load_labelled(data=folder, labels=model.info.labels, pipeline=model.info.pipeline().any_length(),
                         lazy=True, progress=False).with_split("test")
    probs = score(model, data, failures={})
    keep = [j for j, n in enumerate(np.nansum(data.Y == 1, axis=0)) if n >= MIN_POSITIVES]
    auc = per_label_auc(data.Y[:, keep], probs[:, [model.info.labels.index(data.labels[j]) for j in keep]])
    return {"macro_auc": float(np.nanmean(auc)), "labels": len(keep),
            "per_label_auc": {data.labels[j]: float(a) for j, a in zip(keep, auc)}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", default="base", help=f"comma-separated, of: {', '.join(CANDIDATES)}")
    parser.add_argument("--epochs", type=int, default=None, help="train this many epochs (a screen)")
    parser.add_argument("--ptbxl", default=os.environ.get("ECGFM_PTBXL_DIR", "../shared/data/ptbxl"))
    parser.add_argument("--cpsc", default=None, help="also score this Challenge folder (external records)")
    parser.add_argument("--test", action="store_true", help="also read fold 10 (once per reported candidate)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", default="runs/foundation-screen", help="run folders (reused when finished)")
    parser.add_argument("--run", action="append", default=[], metavar="NAME=DIR",
                        help="also score a finished run of the product recipe (e.g. ecgfm pretrain --recipe "
                             "anylead), under NAME")
    parser.add_argument("--out", default=str(RESULTS / "foundation_choices.json"))
    args = parser.parse_args(argv)
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    result = {"command": command_line(argv), "cpu": cpu_flags(), "candidates": previous.get("candidates", {})}
    jobs = [(run_dir.name, candidate_recipe(name, args.epochs), run_dir)
            for name in args.candidates.split(",") if name
            for run_dir in [Path(args.keep) / (name + (f"-e{args.epochs}" if args.epochs else ""))]]
    jobs += [(spec.split("=", 1)[0], get_recipe("anylead"), Path(spec.split("=", 1)[1])) for spec in args.run]
    for key, recipe, run_dir in jobs:
        data = training_data(recipe, ptbxl=args.ptbxl, progress=False)
        entry = result["candidates"].get(key, {})
        if not (run_dir / "pretrained" / "config.json").exists():
            load_before, start = os.getloadavg(), time.perf_counter()
            pretrain(data, recipe, run_dir=run_dir, resume=(run_dir / "last.pt").exists(), num_threads=args.threads,
                     seed=args.seed, progress=False)
            entry = {"train_wall_s": time.perf_counter() - start, "load_before": load_before,
                     "load_after": os.getloadavg()}
        model = load(run_dir / "pretrained")
        history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
        entry.update({"train_elapsed_s": history[-1]["elapsed_s"],  # the trainer's clock: epochs and validation
                      "recipe": recipe.name, "model": recipe.model, "epochs": recipe.config.epochs,
                      "distill": None if recipe.distill is None else vars(recipe.distill),
                      "config": recipe.config.to_dict(), "best_epoch": model.info.training.get("best_epoch"),
                      "fold9": fold_scores(model, data, "val")})
        if args.cpsc:
            entry["cpsc_whole_record"] = cpsc_macro_auc(model, args.cpsc)
        if args.test:
            entry["fold10"] = fold_scores(model, data, "test")
        result["candidates"][key] = entry
        f9 = entry["fold9"]
        print(f"{key}: fold 9 " + ", ".join(f"{k} {v['macro_auc']:.4f}" for k, v in f9.items())
              + (f"; CPSC {entry['cpsc_whole_record']['macro_auc']:.4f}" if args.cpsc else ""), flush=True)
        write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
