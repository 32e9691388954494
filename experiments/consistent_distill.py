"""Experiment: distilling ``default8`` into ``anylead`` through mixed views the teacher has never seen.

Why: ``anylead`` distils from the teacher's predictions on the teacher's own training records, where those
predictions are almost the labels (the teacher fits folds 1-8), so they teach little (fold 10: 0.904, as much as
the ensemble's single member without distillation). Function matching (Beyer et al. 2022, "Knowledge distillation: a
good teacher is patient and consistent") asks the teacher about inputs off its training set: here mixup views
``lam * x_i + (1 - lam) * x_j`` of two training records, ``lam ~ U(0, 1)``. The teacher's logits on ``views`` fixed
views of every training record are computed once and cached (view 0 is the record itself); each epoch the student
reads one of the views (epoch mod views), with the product recipe's hospital shift and lead dropping on top, and
learns ``alpha * (lam y_i + (1 - lam) y_j) + (1 - alpha) * sigmoid(teacher logit)``.

Scored like ``foundation_choices.py``: fold 9 (validation) macro-AUC reading 12 leads and each reduced lead set;
``--test`` reads fold 10 once.

Run: ``python experiments/consistent_distill.py --views 8 --epochs 40 --threads 2 --ptbxl ../shared/data/ptbxl
--keep runs/consistent --out experiments/results/consistent_distill.json``
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from foundation_choices import fold_scores  # noqa: E402

from common import command_line, cpu_flags, write_result  # noqa: E402  (benchmarks/, on the path via the import above)
from ecgfm.config import cache_dir  # noqa: E402
from ecgfm.models import ModelInfo, create, load, save  # noqa: E402
from ecgfm.models.runner import TorchRunner, record_logits  # noqa: E402
from ecgfm.training.distill import weights_digest  # noqa: E402
from ecgfm.training.pretrain import training_data  # noqa: E402
from ecgfm.training.recipes import get_recipe  # noqa: E402
from ecgfm.training.trainer import fit  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
LEADS = 12  # the teacher reads the 12 lead channels; the student also gets 12 presence channels (all 1 here)


def view_pairs(n: int, views: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Partner index and weight of every record in every view ``(views, n)``; view 0 is each record alone."""
    partners, lams = np.tile(np.arange(n), (views, 1)), np.ones((views, n), np.float32)
    for k in range(1, views):
        rng = np.random.default_rng([seed, k])
        partners[k] = rng.permutation(n)
        lams[k] = rng.uniform(0.0, 1.0, n)
    return partners, lams


def mixed(X: np.ndarray, i: int, j: int, lam: float) -> np.ndarray:
    """The 12 lead channels of ``lam * x_i + (1 - lam) * x_j``."""
    return lam * X[i, :LEADS] + (1.0 - lam) * X[j, :LEADS]


def view_logits(teacher, X: np.ndarray, partners: np.ndarray, lams: np.ndarray, threads: int) -> np.ndarray:
    """Teacher logits ``(views, n, labels)`` on every view, each view cached by the teacher, the signals and its
    pairs (so a run with more views reuses the first ones)."""
    base = hashlib.sha256(X[:, :LEADS].tobytes())
    base.update(weights_digest(teacher).encode())
    runner = TorchRunner(teacher, num_threads=threads)
    size, stride, how = teacher.info.segment_rule()
    out = []
    for k in range(len(partners)):
        digest = base.copy()
        digest.update(partners[k].tobytes())
        digest.update(lams[k].tobytes())
        path = cache_dir() / "teacher" / f"view-{digest.hexdigest()[:20]}.npy"
        if not path.exists():
            start = time.perf_counter()
            rows = record_logits(runner, (mixed(X, i, partners[k, i], lams[k, i]) for i in range(X.shape[0])),
                                 size, stride, how, 64)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, np.stack(list(rows)).astype(np.float32))
            print(f"teacher view {k}: {time.perf_counter() - start:.0f} s", flush=True)
        out.append(np.load(path))
    return np.stack(out)


class MixedViews(Dataset):
    """Training records read as the current view (``view``, set each epoch): mixed leads, presence channels 1, and
    the blended target."""

    def __init__(self, X, Y, partners, lams, teacher_probs, alpha: float):
        self.X, self.Y, self.partners, self.lams = X, Y, partners, lams
        self.teacher_probs, self.alpha, self.view = teacher_probs, alpha, 0

    def __len__(self) -> int:
        return self.X.shape[0]

    def __getitem__(self, i: int):
        k, j, lam = self.view, self.partners[self.view, i], self.lams[self.view, i]
        x = np.concatenate([mixed(self.X, i, j, lam), self.X[i, LEADS:]])
        y = self.alpha * (lam * self.Y[i] + (1 - lam) * self.Y[j]) + (1 - self.alpha) * self.teacher_probs[k, i]
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y.astype(np.float32))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--ptbxl", default=os.environ.get("ECGFM_PTBXL_DIR", "../shared/data/ptbxl"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test", action="store_true", help="also read fold 10 (once)")
    parser.add_argument("--keep", default="runs/consistent")
    parser.add_argument("--out", default=str(RESULTS / "consistent_distill.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = get_recipe("anylead")
    config = replace(recipe.config, epochs=args.epochs, seed=args.seed, num_threads=args.threads, progress=False)
    data = training_data(recipe, ptbxl=args.ptbxl, progress=False)
    train = data.part("train")
    X = np.stack([train.signal(i) for i in range(len(train))])
    teacher = load(recipe.distill.teacher)
    columns = [teacher.info.labels.index(label) for label in train.labels]
    partners, lams = view_pairs(len(train), args.views, args.seed)
    start = time.perf_counter()
    logits = view_logits(teacher, X, partners, lams, args.threads)[:, :, columns]
    teacher_s = time.perf_counter() - start
    views = MixedViews(X, np.nan_to_num(train.Y), partners, lams, expit(logits), args.alpha)

    def next_view(event: str, row: dict) -> None:  # (a resumed run reads view 0 in its first epoch)
        if event == "epoch":
            views.view = row["epoch"] % args.views

    run_dir = Path(args.keep) / f"views{args.views}-e{args.epochs}-a{args.alpha:g}"
    if not (run_dir / "pretrained" / "config.json").exists():
        torch.manual_seed(config.seed)
        pipeline = data.pipeline()
        net = create(recipe.model, num_labels=len(data.labels), in_leads=pipeline.channels)
        net.info = ModelInfo.from_model(net, data.labels, label_descriptions=data.label_descriptions,
                                        leads=data.leads, lead_mask=pipeline.lead_mask, fs=data.fs,
                                        preprocess=data.preprocess, data=data.describe())
        start = time.perf_counter()
        result = fit(net, views, data.part("val"), config, run_dir=run_dir, resume=(run_dir / "last.pt").exists(),
                     callbacks=[next_view])
        save(result.model, run_dir / "pretrained")
        student_s = time.perf_counter() - start
    else:
        student_s = None
    model = load(run_dir / "pretrained")
    entry = {"command": command_line(argv), "views": args.views, "epochs": args.epochs, "alpha": args.alpha,
             "teacher_s": teacher_s, "student_s": student_s, "best_epoch": model.info.training.get("best_epoch"),
             "fold9": fold_scores(model, data, "val")}
    if args.test:
        entry["fold10"] = fold_scores(model, data, "test")
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    result = {"cpu": cpu_flags(), "runs": {**previous.get("runs", {}), run_dir.name: entry}}
    write_result(Path(args.out), result)
    print(run_dir.name + ": " + ", ".join(f"{k} {v['macro_auc']:.4f}" for k, v in entry["fold9"].items()))
    return result


if __name__ == "__main__":
    main()
