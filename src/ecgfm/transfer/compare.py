"""Fine-tuning versus training from scratch (and a frozen-embedding baseline) for labels a foundation never saw.

The experiment of Hu, Barrios & Tison (2025), made a resumable, one-command benchmark. For every novel label, every
training size (positive patients, with negatives at a stated ratio) and every seed, three arms get *identical*
patient-level training data (the same records, the same inner validation split for early stopping) and the same epoch
budget, and are tested on the same held-out patients:

- ``finetune``: the foundation with a new head, fine-tuned (:func:`ecgfm.transfer.finetune.finetune`, default recipe);
- ``scratch``: the same architecture, randomly initialised, trained with the pre-training recipe;
- ``embeddings``: frozen foundation embeddings + class-balanced logistic regression (:mod:`ecgfm.transfer.probe`).

Evaluation designs:

- ``fixed``: one held-out test split (PTB-XL fold 10, or the ``test`` split of a manifest/store); the training pool is
  the remaining records of the train and val splits. Rare labels leave few test positives here, so intervals are wide.
- ``cv``: patient-level stratified K-fold, repeated once per seed, with pooled out-of-fold predictions: every positive
  is tested once per repeat. Each fold draws its training set from the other folds.

Statistics: :mod:`ecgfm.transfer.analysis`; report files: :mod:`ecgfm.transfer.report` (the caller writes them).

Resumability: each (label, size, seed, fold, arm) cell is written atomically to ``cells/`` as it completes, under a key
made from the arm's settings (:meth:`CompareConfig.arm_key`); a re-run with the same settings skips finished cells, so
a killed comparison continues where it stopped (more seeds, sizes or labels can be added later and only the new cells
run, and another recipe of one arm trains only that arm).
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import nn

from ecgfm.datasets import LabelledSet
from ecgfm.files import to_jsonable
from ecgfm.files import atomic_write_bytes, atomic_write_text
from ecgfm.models.windowing import extract_features
from ecgfm.training import resolve_device
from ecgfm.transfer.analysis import CompareResult, analyse
from ecgfm.transfer.config import ARMS, QUICK_OVERRIDES, CompareConfig, quick_config, scratch_config
from ecgfm.transfer.finetune import Foundation, finetune, load_foundation, predict_proba
from ecgfm.transfer.probe import EmbeddingProbe
from ecgfm.transfer.splits import ALL, Fold, NestedSampler, check_patient_disjoint, cv_folds

__all__ = ["run_comparison", "Comparison", "CompareConfig", "CompareResult", "quick_config", "scratch_config", "ARMS",
           "QUICK_OVERRIDES", "cell_path", "load_cell", "save_cell"]

Progress = Callable[[int, int, str, str], None]


# --------------------------------------------------------------------------------------------------- cells


def slug(label: str) -> str:
    """A file-system-safe folder name for a label (``LAO/LAE`` -> ``LAO_LAE-<hash>``)."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", label)
    return clean if clean == label else f"{clean}-{zlib.crc32(label.encode()) & 0xFFFF:04x}"


def cell_path(out_dir: Path, label: str, size: int | str, seed: int, fold: str, arm: str) -> Path:
    """Where a cell's scores live; ``arm`` is the arm key (:meth:`CompareConfig.arm_key`)."""
    return Path(out_dir) / "cells" / slug(label) / f"n{size}" / f"seed{seed}" / fold / f"{arm}.npz"


def save_cell(path: Path, scores: np.ndarray, test_index: np.ndarray, meta: dict[str, Any]) -> None:
    """Write one cell's test scores (and what made them) atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, scores=np.asarray(scores, dtype=np.float64), test_index=np.asarray(test_index, dtype=np.int64),
             meta=np.array(json.dumps(meta)))
    atomic_write_bytes(path, buffer.getvalue())


def load_cell(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    with np.load(path, allow_pickle=False) as data:
        return data["scores"], data["test_index"], json.loads(str(data["meta"]))


def cell_seed(label: str, seed: int, fold: str) -> int:
    """A stable seed per (label, seed, fold) so every arm of a cell draws the same data."""
    return int.from_bytes(hashlib.sha256(f"{label}|{seed}|{fold}".encode()).digest()[:4], "little")


def training_meta(result) -> dict[str, Any]:
    """Epochs trained (gradient epochs; the fitted probe is epoch 0) and the epoch of the model kept, by the recipe
    kept (the fine-tuned model or the whole-body candidate, with both validation scores)."""
    training = result.info.training
    selected = training.get("selected_stage")
    best = training.get("stage_best_epochs") or {}
    recipe = training.get("selected_recipe")
    kept = [row for row in result.history if (row.get("candidate") == "whole body") == (recipe == "whole body")]
    sgd = [row for row in kept if row.get("stage") != "probe"]
    final = [row for row in sgd if row.get("stage") == "final"]
    if selected == "probe":
        best_epoch = 0
    elif selected == "warmup":
        best_epoch = best.get("warmup")
    else:
        best_epoch = len(sgd) - len(final) + int(best.get("final") or training.get("best_epoch") or 0)
    return {"epochs_run": len(sgd), "best_epoch": best_epoch, "final_stage_epochs": len(final),
            "selected_stage": selected, "selected_recipe": recipe,
            "candidates_val_macro_auc": training.get("candidates_val_macro_auc")}


def weights_fingerprint(model: nn.Module) -> str:
    """A hash of the foundation's weights: cells are reused only with the very same foundation, wherever it lives."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _fingerprint(ids: np.ndarray) -> str:
    return hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------- runner


@dataclass
class Plan:
    """The folds of one (label, seed) and the training sets they allow."""

    folds: list[Fold]
    samplers: list[NestedSampler]


class Comparison:
    """Run (or resume) a comparison into ``out_dir``; :meth:`run` trains missing cells, :meth:`analyse` collects them.

    ``data`` holds the labels (``data.labels`` must include ``config.labels``) and each record's split.
    """

    def __init__(self, foundation: Foundation, data: LabelledSet, config: CompareConfig, out_dir: str | Path,
                 log: Callable[[str], None] | None = None, foundation_name: str | None = None):
        self.model = load_foundation(foundation)
        self.foundation_name = foundation_name or (None if isinstance(foundation, nn.Module) else str(foundation))
        self.foundation_sha = weights_fingerprint(self.model)
        self.data, self.config, self.out_dir = data, config, Path(out_dir)
        self.log = log or (lambda message: None)
        missing = [label for label in config.labels if label not in data.labels]
        if missing:
            raise ValueError(f"labels {missing} are not in the data (it has {data.labels[:20]})")
        seen = [label for label in config.labels if label in self.model.info.labels]
        if seen and not config.allow_seen_labels:
            raise ValueError(f"the foundation was trained on {seen}: these are not novel labels. Pre-train a "
                             "foundation with them excluded (ecgfm pretrain --exclude-labels ...) or pass "
                             "allow_seen_labels")
        self.y = {label: data.Y[:, data.labels.index(label)] for label in config.labels}
        self.skipped: list[dict[str, Any]] = []
        self._embeddings: np.ndarray | None = None

    def _check_out_dir(self) -> None:
        """Write ``compare_config.json``; refuse to mix cells made with different result-affecting settings."""
        path = self.out_dir / "compare_config.json"
        record = json.loads(json.dumps({
            "settings": self.config.result_settings(), "foundation_weights": self.foundation_sha,
            "data": {k: v for k, v in self.data.source.items() if k != "unreadable"},
            "records": _fingerprint(self.data.ids)}, default=str))
        if not path.exists():
            atomic_write_text(path, json.dumps(record, indent=2))
            return
        stored = json.loads(path.read_text())
        changed = [k for k in record if stored.get(k) != record[k]]
        if changed:
            raise ValueError(f"{self.out_dir} holds a comparison made with different {', '.join(changed)}; "
                             "use a new output folder (finished cells are only reused with identical settings)")

    def folds(self, label: str, seed: int) -> list[Fold]:
        """Evaluation folds for ``label`` and ``seed`` (one fixed test split, or this repeat's K folds)."""
        split = self.data.split
        if self.config.split == "fixed":
            test = np.flatnonzero(split == "test")
            if len(test) == 0:
                raise ValueError("the data have no test split for a fixed held-out comparison; use split='cv'")
            return [Fold("test", np.flatnonzero(np.isin(split, ("train", "val"))), test)]
        return list(cv_folds(self.y[label], self.data.patient_ids, n_splits=self.config.cv_folds, repeat=seed,
                             seed=zlib.crc32(label.encode()), among=np.flatnonzero(split != "")))

    def plan(self, label: str, seed: int) -> Plan:
        folds = self.folds(label, seed)
        for fold in folds:
            check_patient_disjoint(fold.pool, fold.test, self.data.patient_ids, f"{label} training pool and test set")
        return Plan(folds, [NestedSampler(self.y[label], self.data.patient_ids, fold.pool,
                                          seed=cell_seed(label, seed, fold.name), neg_ratio=self.config.neg_ratio,
                                          val_fraction=self.config.val_fraction) for fold in folds])

    def embeddings(self) -> np.ndarray:
        """Foundation embeddings of every record (computed once, cached atomically in ``embeddings.npy``)."""
        if self._embeddings is not None:
            return self._embeddings
        path, key = self.out_dir / "embeddings.npy", self.out_dir / "embeddings.key"
        fingerprint = _fingerprint(self.data.ids) + ":" + self.foundation_sha
        if path.exists() and key.exists() and key.read_text() == fingerprint:
            self._embeddings = np.load(path)
            return self._embeddings
        self.log(f"embedding {len(self.data)} ECGs with the frozen foundation ...")
        Z = extract_features(self.model, self.data.torch(), batch_size=self.config.finetune.train.eval_batch_size,
                             device=resolve_device(self.config.finetune.train.device))
        buffer = io.BytesIO()
        np.save(buffer, Z)
        atomic_write_bytes(path, buffer.getvalue())
        atomic_write_text(key, fingerprint)
        self._embeddings = Z
        return Z

    def cells(self) -> list[tuple[str, int | str, int, str, str]]:
        """Every (label, size, seed, fold, arm) the config asks for, in run order (seed-major, then size)."""
        c = self.config
        return [(label, size, seed, fold, arm) for seed in c.seeds for size in c.sizes for label in c.labels
                for fold in self._fold_names() for arm in c.arms]

    def _fold_names(self) -> list[str]:
        return ["test"] if self.config.split == "fixed" else [f"f{k}" for k in range(self.config.cv_folds)]

    def run(self, progress: Progress | None = None) -> None:
        """Train and score every missing cell (finished cells are reused).

        ``progress(done, total, cell, event)`` is called with event ``"start"``, ``"done"`` or ``"reused"``.
        """
        self._check_out_dir()
        plans: dict[tuple[str, int], Plan] = {}
        todo = self.cells()
        for i, (label, size, seed, fold_name, arm) in enumerate(todo):
            if (label, seed) not in plans:
                plans[(label, seed)] = self.plan(label, seed)
            plan = plans[(label, seed)]
            k = self._fold_names().index(fold_name)
            available = min(s.max_positives for s in plan.samplers)
            if size != ALL and int(size) > available:
                where = "training pool" if len(plan.samplers) == 1 else "smallest cross-validation training pool"
                self._skip(label, size, f"the {where} has {available} positive patients")
                continue
            path = cell_path(self.out_dir, label, size, seed, fold_name, self.config.arm_key(arm))
            what = f"{label} n={size} seed={seed} {fold_name} {arm}"
            if path.exists():
                if progress:
                    progress(i + 1, len(todo), what, "reused")
                continue
            if progress:
                progress(i, len(todo), what, "start")
            self._run_cell(path, label, size, seed, plan.folds[k], plan.samplers[k], arm)
            if progress:
                progress(i + 1, len(todo), what, "done")

    def _skip(self, label: str, size, reason: str) -> None:
        entry = {"label": label, "size": size, "reason": reason}
        if entry not in self.skipped:
            self.skipped.append(entry)

    def _run_cell(self, path: Path, label: str, size, seed: int, fold: Fold, sampler: NestedSampler, arm: str) -> None:
        start = time.perf_counter()
        tset = sampler.draw(size)
        check_patient_disjoint(tset.all, fold.test, self.data.patient_ids, f"{label} training and test sets")
        meta: dict[str, Any] = {"label": label, "size": size, "seed": seed, "fold": fold.name, "arm": arm,
                                "arm_settings": self.config.arm_settings(arm), **tset.info}
        if arm == "embeddings":
            Z = self.embeddings()
            probe = EmbeddingProbe(inner_folds=self.config.probe_inner_folds, seed=seed)
            probe.fit(Z[tset.all], self.y[label][tset.all], self.data.patient_ids[tset.all])
            scores = probe.predict_proba(Z[fold.test])[:, 0]
            meta["chosen_C"] = probe.chosen_C[0]
        else:
            data = self.data.select_labels([label])
            result = finetune(self.model, data.subset(tset.train), data.subset(tset.val),
                              config=self.config.arm_config(arm, seed), val_from_train=True)
            train = self.config.finetune.train
            scores = predict_proba(result.model, data, fold.test, batch_size=train.eval_batch_size,
                                   device=train.device)[:, 0]
            meta.update(training_meta(result), val_auc=result.val_auc.get(label))
        meta["seconds"] = time.perf_counter() - start
        save_cell(path, scores, fold.test, to_jsonable(meta))

    def pooled_scores(self, label: str, size, seed: int, arm: str) -> tuple[np.ndarray, np.ndarray, list] | None:
        """Test indices, scores and per-fold metadata of one (label, size, seed, arm) pooled over its folds, or
        ``None`` while a fold is missing."""
        parts, metas = [], []
        for fold_name in self._fold_names():
            path = cell_path(self.out_dir, label, size, seed, fold_name, self.config.arm_key(arm))
            if not path.exists():
                return None
            scores, index, meta = load_cell(path)
            parts.append((index, scores))
            metas.append(meta)
        index = np.concatenate([p[0] for p in parts])
        if len(np.unique(index)) != len(index):
            raise ValueError(f"{label} n={size} seed={seed} {arm}: a record was tested in two folds")
        order = np.argsort(index, kind="stable")
        return index[order], np.concatenate([p[1] for p in parts])[order], metas

    def analyse(self) -> CompareResult:
        """The statistics of every finished cell (:func:`ecgfm.transfer.analysis.analyse`)."""
        info = self.model.info
        meta = {"foundation": self.foundation_name, "foundation_weights": self.foundation_sha,
                "arm_keys": {arm: self.config.arm_key(arm) for arm in self.config.arms}, "data": self.data.source,
                "split": self.config.split, "foundation_labels": len(info.labels),
                "foundation_excluded": info.data.get("excluded_labels")}
        return analyse(self.config, self.data, self.pooled_scores, self.skipped, meta)


def run_comparison(foundation: Foundation, data: LabelledSet, config: CompareConfig, out_dir: str | Path,
                   log: Callable[[str], None] | None = None, progress: Progress | None = None,
                   foundation_name: str | None = None) -> CompareResult:
    """Run (or resume) every cell into ``out_dir`` and return the analysis; write the report with
    :func:`ecgfm.transfer.report.write_compare_report`."""
    comparison = Comparison(foundation, data, config, out_dir, log=log, foundation_name=foundation_name)
    started = time.perf_counter()
    comparison.run(progress=progress)
    result = comparison.analyse()
    result.meta["wall_seconds_this_run"] = time.perf_counter() - started
    return result
