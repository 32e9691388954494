"""Fine-tuning versus training from scratch (and a frozen-embedding baseline) for labels a foundation never saw.

The experiment of Hu, Barrios & Tison (2025), made a resumable, one-command benchmark. For every novel label, every
training size (positive patients, with negatives at a stated ratio) and every seed, three arms get *identical*
patient-level training data (the same records, the same inner validation split for early stopping) and the same epoch
budget, and are tested on the same held-out patients:

- ``finetune``: the foundation with a new head, fine-tuned (:func:`ecgfm.transfer.finetune.finetune`, default recipe);
- ``scratch``: the same architecture, randomly initialised, trained with the pre-training recipe;
- ``embeddings``: frozen foundation embeddings + class-balanced logistic regression (C by inner CV).

Evaluation designs:

- ``fixed``: one held-out test split (PTB-XL fold 10, or the ``test`` split of a manifest/store); the training pool is
  the remaining records (or the named pool folds). Rare labels leave few test positives here, so intervals are wide.
- ``cv``: patient-level stratified K-fold, repeated once per seed, with pooled out-of-fold predictions: every positive
  is tested once per repeat. Each fold draws its training set from the other folds.

Statistics per (label, size): each arm's AUC per seed with a patient-clustered bootstrap 95% CI, the paired AUC
difference per seed with bootstrap CI and DeLong p-value, and the median over seeds. The interval of a median over
seeds resamples test patients once and recomputes every seed's AUC on that resample (all seeds share the test
records), so it reflects test-set uncertainty of the seed-median, not training noise alone.

Resumability: each (label, size, seed, fold, arm) cell is written atomically to ``cells/`` as it completes; a re-run
with the same settings skips finished cells, so a killed comparison continues where it stopped (more seeds, sizes or
labels can be added later and only the new cells run).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from torch import nn

from ecgfm.evaluation.bootstrap import bootstrap_replicates
from ecgfm.evaluation.delong import delong_test
from ecgfm.evaluation.intervals import percentile_interval
from ecgfm.evaluation.metrics import roc_auc
from ecgfm.models import ModelInfo
from ecgfm.training import extract_features
from ecgfm.training.trainer import resolve_device
from ecgfm.transfer.data import LabelledData
from ecgfm.transfer.embeddings_baseline import DEFAULT_CS, EmbeddingProbe
from ecgfm.transfer.finetune import FinetuneConfig, IndexedArrays, finetune, load_foundation, predict_proba
from ecgfm.transfer.splits import (ALL, Fold, NestedSampler, check_patient_disjoint, cv_folds, parse_sizes)

ARMS = ("finetune", "scratch", "embeddings")
ARM_TITLES = {"finetune": "fine-tuned", "scratch": "from scratch", "embeddings": "embeddings + LR"}
#: Paired differences reported (first arm minus second), when both arms ran.
PAIRS = (("finetune", "scratch"), ("embeddings", "scratch"), ("finetune", "embeddings"))
SCHEMA = "ecgfm.compare/1"


#: FinetuneConfig fields shared by both trained arms: the budget and the data handling (not the recipe).
BUDGET_FIELDS = ("epochs", "patience", "batch_size", "balance", "max_pos_weight", "min_epoch_samples", "weight_decay",
                 "monitor", "threshold_rule", "device", "num_threads", "eval_batch_size", "progress")
#: FinetuneConfig fields of the from-scratch recipe itself.
SCRATCH_RECIPE_FIELDS = ("strategy", "lr", "schedule", "warmup_frac")
#: FinetuneConfig fields added later whose unset value (None) reproduces earlier runs: left out of keys when unset.
LATER_OPTIONAL_FIELDS = ("aggregate",)
#: FinetuneConfig fields that do not change a result (hardware and display), left out of cell keys.
RUNTIME_FIELDS = ("device", "num_threads", "eval_batch_size", "progress")


def scratch_config(finetune_config: FinetuneConfig) -> FinetuneConfig:
    """The from-scratch arm's config: the fine-tuning arm's budget and data handling, the pre-training recipe."""
    budget = {name: getattr(finetune_config, name) for name in BUDGET_FIELDS}
    return FinetuneConfig(strategy="scratch", warmup_frac=0.3, **budget)


@dataclass
class CompareConfig:
    """Everything that defines a comparison (saved as ``compare_config.json``; see the module docstring)."""

    labels: list[str]
    sizes: list[int | str] = field(default_factory=lambda: [10, 25, 50, 100, ALL])
    neg_ratio: float | None = 9.0  # negative patients drawn per positive patient (None = every negative)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    split: str = "fixed"  # "fixed" held-out test split | "cv" repeated patient-level K-fold, pooled out-of-fold
    cv_folds: int = 5
    val_fraction: float = 0.2  # inner validation share of every training set (early stopping, thresholds)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    scratch: FinetuneConfig | None = None  # None = scratch_config(finetune)
    probe_inner_folds: int = 5
    n_bootstrap: int = 1000
    ci_level: float = 0.95
    allow_seen_labels: bool = False  # refuse labels the foundation was trained on unless set

    def __post_init__(self) -> None:
        self.labels = [str(label) for label in self.labels]
        if not self.labels:
            raise ValueError("CompareConfig: name at least one label")
        self.sizes = parse_sizes(self.sizes)
        self.seeds = [int(s) for s in self.seeds]
        unknown = sorted(set(self.arms) - set(ARMS))
        if unknown or not self.arms:
            raise ValueError(f"CompareConfig: arms must be among {', '.join(ARMS)}, got {self.arms}")
        if self.split not in ("fixed", "cv"):
            raise ValueError(f"CompareConfig: split must be 'fixed' or 'cv', got {self.split!r}")
        if self.split == "cv" and self.cv_folds < 2:
            raise ValueError("CompareConfig: cv_folds must be >= 2")
        if isinstance(self.finetune, dict):
            self.finetune = FinetuneConfig.from_dict(self.finetune)
        if isinstance(self.scratch, dict):
            self.scratch = FinetuneConfig.from_dict(self.scratch)
        if self.scratch is None:
            self.scratch = scratch_config(self.finetune)
        if self.finetune.strategy == "scratch":
            raise ValueError("CompareConfig: the fine-tuning arm cannot use strategy 'scratch'")

    def arm_config(self, arm: str, seed: int) -> FinetuneConfig:
        base = self.finetune if arm == "finetune" else self.scratch
        return dataclasses.replace(base, seed=seed, val_fraction=0.0, cv_folds=None)

    def arm_settings(self, arm: str) -> dict[str, Any]:
        """What an arm's cells depend on besides the shared settings (its training recipe and budget)."""
        if arm == "embeddings":
            return {"probe_inner_folds": self.probe_inner_folds, "Cs": list(DEFAULT_CS)}
        data = self.arm_config(arm, 0).to_dict()
        if arm == "scratch":  # only the budget and the pre-training recipe matter (new fine-tuning options do not)
            return {k: data[k] for k in (*BUDGET_FIELDS, *SCRATCH_RECIPE_FIELDS) if k not in RUNTIME_FIELDS}
        for key in (*RUNTIME_FIELDS, "seed", "val_fraction", "cv_folds"):
            data.pop(key)
        for key in LATER_OPTIONAL_FIELDS:  # options added after cells existed: unset means the earlier behaviour
            if data.get(key) is None:
                data.pop(key, None)
        return data

    def arm_key(self, arm: str) -> str:
        """The arm's name plus a hash of its settings: another recipe gets its own cells, the same one reuses them."""
        text = json.dumps(self.arm_settings(arm), sort_keys=True)
        return f"{arm}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["finetune"], data["scratch"] = self.finetune.to_dict(), self.scratch.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CompareConfig":
        return cls(**data)

    def result_settings(self) -> dict[str, Any]:
        """The design every cell of an output folder shares (the splits); labels, sizes, seeds, arms and reporting
        may change on resume, and each arm's recipe is part of its cells' names (see :meth:`arm_key`)."""
        return {"split": self.split, "cv_folds": self.cv_folds if self.split == "cv" else None,
                "neg_ratio": self.neg_ratio, "val_fraction": self.val_fraction}


QUICK_OVERRIDES = {"sizes": [10, 25], "seeds": [0], "epochs": 12, "patience": 4, "n_bootstrap": 500}


def quick_config(labels: Sequence[str], **overrides: Any) -> CompareConfig:
    """The ``--quick`` preset: two sizes, one seed, a short epoch budget (minutes on a laptop CPU)."""
    ft = FinetuneConfig(epochs=QUICK_OVERRIDES["epochs"], patience=QUICK_OVERRIDES["patience"], warmup_epochs=2)
    return CompareConfig(labels=list(labels), sizes=QUICK_OVERRIDES["sizes"], seeds=QUICK_OVERRIDES["seeds"],
                         finetune=ft, n_bootstrap=QUICK_OVERRIDES["n_bootstrap"], **overrides)


# --------------------------------------------------------------------------------------------------- cells


def _training_meta(result) -> dict[str, Any]:
    """Epochs trained (gradient epochs; the fitted probe is epoch 0) and the epoch of the model kept."""
    training = result.info.training
    selected = training.get("selected_stage")
    best = training.get("stage_best_epochs") or {}
    sgd = [row for row in result.history if row.get("stage") != "probe"]
    final = [row for row in sgd if row.get("stage") == "final"]
    if selected == "probe":
        best_epoch = 0
    elif selected == "warmup":
        best_epoch = best.get("warmup")
    else:
        best_epoch = len(sgd) - len(final) + int(best.get("final") or training.get("best_epoch") or 0)
    return {"epochs_run": len(sgd), "best_epoch": best_epoch, "final_stage_epochs": len(final),
            "selected_stage": selected}


def slug(label: str) -> str:
    """A file-system-safe folder name for a label (``LAO/LAE`` -> ``LAO_LAE-<hash>``)."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", label)
    return clean if clean == label else f"{clean}-{zlib.crc32(label.encode()) & 0xFFFF:04x}"


def cell_path(out_dir: Path, label: str, size: int | str, seed: int, fold: str, arm: str) -> Path:
    """Where a cell's scores live; ``arm`` is the arm key (:meth:`CompareConfig.arm_key`)."""
    return out_dir / "cells" / slug(label) / f"n{size}" / f"seed{seed}" / fold / f"{arm}.npz"


def save_cell(path: Path, scores: np.ndarray, test_index: np.ndarray, meta: dict[str, Any]) -> None:
    """Write one cell's test scores atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, scores=np.asarray(scores, dtype=np.float64), test_index=np.asarray(test_index, dtype=np.int64),
             meta=np.array(json.dumps(meta)))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_cell(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    with np.load(path, allow_pickle=False) as data:
        return data["scores"], data["test_index"], json.loads(str(data["meta"]))


def cell_seed(label: str, seed: int, fold: str) -> int:
    """A stable seed per (label, seed, fold) so every arm of a cell draws the same data."""
    digest = hashlib.sha256(f"{label}|{seed}|{fold}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


# --------------------------------------------------------------------------------------------------- runner


@dataclass
class Plan:
    """The folds of one (label, seed) and the training sets they allow."""

    label: str
    seed: int
    folds: list[Fold]
    samplers: list[NestedSampler]


class Comparison:
    """Run (or resume) a comparison into ``out_dir``; :meth:`run` trains missing cells, :meth:`analyse` reports.

    ``data`` holds the labels (``data.arrays.label_names`` must include ``config.labels``) and each record's split.
    """

    def __init__(self, foundation: str | Path | tuple[nn.Module, ModelInfo], data: LabelledData,
                 config: CompareConfig, out_dir: str | Path, log: Callable[[str], None] | None = None,
                 foundation_name: str | None = None):
        self.model, self.info = load_foundation(foundation)
        self.foundation_name = foundation_name or (None if isinstance(foundation, tuple) else str(foundation))
        self.foundation_sha = weights_fingerprint(self.model)
        self.data, self.config, self.out_dir = data, config, Path(out_dir)
        self.log = log or (lambda message: None)
        missing = [label for label in config.labels if label not in data.arrays.label_names]
        if missing:
            raise ValueError(f"labels {missing} are not in the data (it has {data.arrays.label_names[:20]})")
        seen = [label for label in config.labels if label in self.info.labels]
        if seen and not config.allow_seen_labels:
            raise ValueError(f"the foundation was trained on {seen}: these are not novel labels. Pre-train a "
                             "foundation with them excluded (ecgfm pretrain --exclude-labels ...) or pass "
                             "allow_seen_labels")
        self.arrays = data.arrays
        self.y = {label: self.arrays.Y[:, self.arrays.label_names.index(label)] for label in config.labels}
        self.skipped: list[dict[str, Any]] = []
        self._embeddings: np.ndarray | None = None

    # -- setup
    def _check_out_dir(self) -> None:
        """Write ``compare_config.json``; refuse to mix cells made with different result-affecting settings."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "compare_config.json"
        record = {"settings": self.config.result_settings(), "foundation_weights": self.foundation_sha,
                  "data": {k: v for k, v in self.data.source.items() if k != "unreadable"},
                  "records": _fingerprint(self.arrays.ids)}
        record = json.loads(json.dumps(record, default=str))
        if path.exists():
            stored = json.loads(path.read_text())
            changed = [k for k in record if stored.get(k) != record[k]]
            if changed:
                raise ValueError(f"{self.out_dir} holds a comparison made with different {', '.join(changed)}; "
                                 "use a new output folder (finished cells are only reused with identical settings)")
        else:
            from ecgfm.evaluation.report import atomic_write_text

            atomic_write_text(path, json.dumps(record, indent=2))

    def folds(self, label: str, seed: int) -> list[Fold]:
        """Evaluation folds for ``label`` and ``seed`` (one fixed test split, or this repeat's K folds)."""
        split = np.asarray(self.data.split).astype(str)
        used = np.flatnonzero(split != "")
        if self.config.split == "fixed":
            test = np.flatnonzero(split == "test")
            pool = np.flatnonzero(np.isin(split, ("train", "val")))
            if len(test) == 0:
                raise ValueError("the data have no test split for a fixed held-out comparison; use split='cv'")
            return [Fold("test", pool, test)]
        return list(cv_folds(self.y[label], self.arrays.patient_ids, n_splits=self.config.cv_folds, repeat=seed,
                             seed=zlib.crc32(label.encode()), among=used))

    def plan(self, label: str, seed: int) -> Plan:
        folds = self.folds(label, seed)
        samplers = []
        for fold in folds:
            check_patient_disjoint(fold.pool, fold.test, self.arrays.patient_ids, f"{label} training pool and test set")
            samplers.append(NestedSampler(self.y[label], self.arrays.patient_ids, fold.pool,
                                          seed=cell_seed(label, seed, fold.name), neg_ratio=self.config.neg_ratio,
                                          val_fraction=self.config.val_fraction))
        return Plan(label, seed, folds, samplers)

    def embeddings(self) -> np.ndarray:
        """Foundation embeddings of every record (computed once, cached atomically in ``embeddings.npy``)."""
        if self._embeddings is not None:
            return self._embeddings
        path = self.out_dir / "embeddings.npy"
        key = self.out_dir / "embeddings.key"
        fingerprint = _fingerprint(self.arrays.ids) + ":" + self.foundation_sha
        if path.exists() and key.exists() and key.read_text() == fingerprint:
            self._embeddings = np.load(path)
            return self._embeddings
        self.log(f"embedding {len(self.arrays)} ECGs with the frozen foundation ...")
        device = resolve_device(self.config.finetune.device)
        Z = extract_features(self.model, IndexedArrays(self.arrays.X, self.arrays.Y, np.arange(len(self.arrays))),
                             self.info.window, self.info.stride, batch_size=self.config.finetune.eval_batch_size,
                             device=device)
        from ecgfm.models.checkpoint import atomic_write_bytes

        def write(tmp: str) -> None:
            with open(tmp, "wb") as handle:
                np.save(handle, Z)

        atomic_write_bytes(path, write)
        atomic_write_bytes(key, lambda tmp: Path(tmp).write_text(fingerprint))
        self._embeddings = Z
        return Z

    # -- cells
    def cells(self) -> list[tuple[str, int | str, int, str, str]]:
        """Every (label, size, seed, fold, arm) the config asks for, in run order (seed-major, then size)."""
        out = []
        for seed in self.config.seeds:
            for size in self.config.sizes:
                for label in self.config.labels:
                    for fold_name in self._fold_names():
                        for arm in self.config.arms:
                            out.append((label, size, seed, fold_name, arm))
        return out

    def _fold_names(self) -> list[str]:
        return ["test"] if self.config.split == "fixed" else [f"f{k}" for k in range(self.config.cv_folds)]

    def run(self, progress: Callable[[int, int, str, str], None] | None = None) -> None:
        """Train and score every missing cell (finished cells are reused).

        ``progress(done, total, cell, event)`` is called with event ``"start"``, ``"done"`` or ``"reused"``.
        """
        self._check_out_dir()
        plans: dict[tuple[str, int], Plan] = {}
        todo = self.cells()
        for i, (label, size, seed, fold_name, arm) in enumerate(todo):
            key = (label, seed)
            if key not in plans:
                plans[key] = self.plan(label, seed)
            plan = plans[key]
            k = self._fold_names().index(fold_name)
            fold, sampler = plan.folds[k], plan.samplers[k]
            path = cell_path(self.out_dir, label, size, seed, fold_name, self.config.arm_key(arm))
            available = min(s.max_positives for s in plan.samplers)
            if size != ALL and int(size) > available:
                where = "training pool" if len(plan.samplers) == 1 else "smallest cross-validation training pool"
                self._skip(label, size, f"the {where} has {available} positive patients")
                continue
            what = f"{label} n={size} seed={seed} {fold_name} {arm}"
            if path.exists():
                if progress:
                    progress(i + 1, len(todo), what, "reused")
                continue
            if progress:
                progress(i, len(todo), what, "start")
            self._run_cell(path, label, size, seed, fold, sampler, arm)
            if progress:
                progress(i + 1, len(todo), what, "done")

    def _skip(self, label: str, size, reason: str) -> None:
        entry = {"label": label, "size": size, "reason": reason}
        if entry not in self.skipped:
            self.skipped.append(entry)

    def _run_cell(self, path: Path, label: str, size, seed: int, fold: Fold, sampler: NestedSampler, arm: str) -> None:
        start = time.perf_counter()
        tset = sampler.draw(size)
        check_patient_disjoint(tset.all, fold.test, self.arrays.patient_ids, f"{label} training and test sets")
        meta: dict[str, Any] = {"label": label, "size": size, "seed": seed, "fold": fold.name, "arm": arm,
                                "arm_settings": self.config.arm_settings(arm), **tset.info}
        if arm == "embeddings":
            Z = self.embeddings()
            train_idx = tset.all
            probe = EmbeddingProbe(inner_folds=self.config.probe_inner_folds, seed=seed)
            probe.fit(Z[train_idx], self.y[label][train_idx], self.arrays.patient_ids[train_idx])
            scores = probe.predict_proba(Z[fold.test])[:, 0]
            meta["chosen_C"] = probe.chosen_C[0]
        else:
            arrays = self.arrays.select_labels([label])
            result = finetune((self.model, self.info), arrays.subset(tset.train), arrays.subset(tset.val),
                              config=self.config.arm_config(arm, seed), val_from_train=True)
            scores = predict_proba(result.model, result.info, arrays, fold.test, device=self.config.finetune.device,
                                   batch_size=self.config.finetune.eval_batch_size)[:, 0]
            meta.update(_training_meta(result), val_auc=result.val_auc.get(label))
        meta["seconds"] = time.perf_counter() - start
        save_cell(path, scores, fold.test, _jsonable(meta))


def _fingerprint(ids: np.ndarray) -> str:
    return hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()[:16]


def weights_fingerprint(model: nn.Module) -> str:
    """A hash of the foundation's weights: cells are reused only with the very same foundation, wherever it lives."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _jsonable(value):
    from ecgfm.evaluation.report import to_jsonable

    return to_jsonable(value)


# --------------------------------------------------------------------------------------------------- analysis


@dataclass
class CompareResult:
    """Per (label, size) summary rows, per-seed rows, skipped sizes, and the settings that made them."""

    summary: list[dict[str, Any]]
    per_seed: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    config: dict[str, Any]
    checks: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


def _median(values) -> float:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def analyse(comparison: Comparison) -> CompareResult:
    """Collect finished cells into AUCs, paired differences, CIs and DeLong tests (see the module docstring)."""
    config = comparison.config
    arrays = comparison.arrays
    summary, per_seed = [], []
    for label in config.labels:
        y_all = comparison.y[label]
        for size in config.sizes:
            seeds_scores: dict[int, dict[str, np.ndarray]] = {}
            seeds_meta: dict[int, dict[str, list[dict]]] = {}
            eval_index = None
            for seed in config.seeds:
                arms_scores, arms_meta = {}, {}
                for arm in config.arms:
                    pooled, metas = _pooled_scores(comparison, label, size, seed, arm)
                    if pooled is None:
                        continue
                    index, scores = pooled
                    if eval_index is None:
                        eval_index = index
                    if not np.array_equal(index, eval_index):
                        raise ValueError(f"{label} n={size}: arms or seeds were scored on different test records")
                    arms_scores[arm], arms_meta[arm] = scores, metas
                if arms_scores:
                    seeds_scores[seed], seeds_meta[seed] = arms_scores, arms_meta
            if not seeds_scores:
                continue
            y = y_all[eval_index]
            known = ~np.isnan(y)
            index, y = eval_index[known], y[known]
            pids = arrays.patient_ids[index]
            rows, row = _analyse_cell(label, size, y, pids, {s: {a: v[known] for a, v in d.items()}
                                                              for s, d in seeds_scores.items()}, seeds_meta, config)
            row["description"] = arrays.label_descriptions.get(label, label)
            summary.append(row)
            per_seed.extend(rows)
    checks = _target_checks(summary, config)
    return CompareResult(summary, per_seed, list(comparison.skipped), config.to_dict(), checks,
                         {"foundation": comparison.foundation_name, "foundation_weights": comparison.foundation_sha,
                          "arm_keys": {arm: config.arm_key(arm) for arm in config.arms},
                          "data": comparison.data.source,
                          "split": config.split, "foundation_labels": len(comparison.info.labels),
                          "foundation_excluded": comparison.info.data.get("excluded_labels")})


def _pooled_scores(comparison: Comparison, label: str, size, seed: int, arm: str):
    """Scores of one (label, size, seed, arm) pooled over folds, or ``None`` when a fold is missing."""
    parts, metas = [], []
    for fold_name in comparison._fold_names():
        path = cell_path(comparison.out_dir, label, size, seed, fold_name, comparison.config.arm_key(arm))
        if not path.exists():
            return None, []
        scores, index, meta = load_cell(path)
        parts.append((index, scores))
        metas.append(meta)
    index = np.concatenate([p[0] for p in parts])
    scores = np.concatenate([p[1] for p in parts])
    order = np.argsort(index, kind="stable")
    if len(np.unique(index)) != len(index):
        raise ValueError(f"{label} n={size} seed={seed} {arm}: a record was tested in two folds")
    return (index[order], scores[order]), metas


def _training_counts(metas: list[dict]) -> dict[str, Any]:
    """Training-set size of one (label, size, seed), median over folds (one fold for a fixed split)."""
    return {"train_pos_patients": _median([m["positive_patients"] for m in metas]),
            "train_records": _median([m["train_records"] + m["val_records"] for m in metas]),
            "train_pos_records": _median([m["train_positive_records"] + m["val_positive_records"] for m in metas]),
            "neg_ratio": metas[0].get("neg_ratio")}


def _interval(replicates: np.ndarray | None, level: float) -> tuple[float, float]:
    if replicates is None:
        return float("nan"), float("nan")
    low, high = percentile_interval(replicates, level)
    return float(low), float(high)


def _analyse_cell(label: str, size, y: np.ndarray, pids: np.ndarray, scores: dict[int, dict[str, np.ndarray]],
                  metas: dict[int, dict[str, list[dict]]], config: CompareConfig) -> tuple[list[dict], dict]:
    """Per-seed rows and the seed-median summary row of one (label, size).

    One paired cluster bootstrap over test patients serves every (seed, arm): each replicate recomputes all their
    AUCs on the same resample, so per-seed differences and across-seed medians get intervals from the same draws.
    """
    seeds = sorted(scores)
    arms = [a for a in config.arms if all(a in scores[s] for s in seeds)]
    pairs = [(a, b) for a, b in PAIRS if a in arms and b in arms]
    models = [(s, a) for s in seeds for a in arms]
    n_pos, n_neg = int(np.sum(y == 1)), int(np.sum(y == 0))
    evaluable = bool(n_pos and n_neg)
    level = config.ci_level
    reps: dict[tuple[int, str], np.ndarray] = {}
    if evaluable and config.n_bootstrap > 0:
        boot = bootstrap_replicates(y[:, None], [scores[s][a][:, None] for s, a in models], patient_ids=pids,
                                    n_resamples=config.n_bootstrap, seed=zlib.crc32(f"{label}|{size}".encode()))
        reps = {m: boot.auc[i, :, 0] for i, m in enumerate(models)}
    per_seed = []
    for s in seeds:
        row: dict[str, Any] = {"label": label, "size": size, "seed": s, "test_pos": n_pos, "test_neg": n_neg,
                               **_training_counts(metas[s][arms[0]])}
        for a in arms:
            low, high = _interval(reps.get((s, a)), level)
            row.update({f"auc_{a}": roc_auc(y, scores[s][a]) if evaluable else float("nan"),
                        f"auc_{a}_ci_low": low, f"auc_{a}_ci_high": high,
                        f"seconds_{a}": float(sum(m.get("seconds", 0.0) for m in metas[s][a]))})
            if a != "embeddings":
                row[f"best_epoch_{a}"] = _median([m.get("best_epoch") or np.nan for m in metas[s][a]])
        for a, b in pairs if evaluable else []:
            test = delong_test(y, scores[s][a], scores[s][b], level)
            low, high = _interval(reps[(s, a)] - reps[(s, b)] if reps else None, level)
            row.update({f"diff_{a}_{b}": test.diff, f"diff_{a}_{b}_ci_low": low, f"diff_{a}_{b}_ci_high": high,
                        f"p_delong_{a}_{b}": test.p_value, f"diff_{a}_{b}_delong_ci_low": test.ci_low,
                        f"diff_{a}_{b}_delong_ci_high": test.ci_high})
        per_seed.append(row)

    summary: dict[str, Any] = {"label": label, "size": size, "seeds": len(seeds), "test_pos": n_pos, "test_neg": n_neg,
                               "test_patients": int(len(np.unique(pids)))}
    for key in ("train_pos_patients", "train_records", "train_pos_records"):
        summary[key] = _median([r[key] for r in per_seed])
    for a in arms:
        summary[f"auc_{a}"] = _median([r[f"auc_{a}"] for r in per_seed])
        low, high = _median_interval([reps.get((s, a)) for s in seeds], level)
        summary.update({f"auc_{a}_ci_low": low, f"auc_{a}_ci_high": high,
                        f"seconds_{a}": float(sum(r[f"seconds_{a}"] for r in per_seed))})
    for a, b in pairs if evaluable else []:
        low, high = _median_interval([reps[(s, a)] - reps[(s, b)] if reps else None for s in seeds], level)
        summary.update({f"diff_{a}_{b}": _median([r[f"diff_{a}_{b}"] for r in per_seed]),
                        f"diff_{a}_{b}_ci_low": low, f"diff_{a}_{b}_ci_high": high,
                        f"p_delong_{a}_{b}": _median([r[f"p_delong_{a}_{b}"] for r in per_seed]),
                        f"seeds_{a}_over_{b}": int(sum(r[f"diff_{a}_{b}"] > 0 for r in per_seed))})
    return per_seed, summary


def _median_interval(replicates: list[np.ndarray | None], level: float) -> tuple[float, float]:
    """Percentile interval of the across-seed median, recomputed on each shared bootstrap resample."""
    if not replicates or any(r is None for r in replicates):
        return float("nan"), float("nan")
    stacked = np.stack(replicates)  # (seeds, resamples); NaN where a resample had no positive or no negative
    medians = np.full(stacked.shape[1], np.nan)
    defined = np.isfinite(stacked).any(axis=0)
    medians[defined] = np.nanmedian(stacked[:, defined], axis=0)
    low, high = percentile_interval(medians, level)
    return float(low), float(high)


def _target_checks(summary: list[dict[str, Any]], config: CompareConfig) -> dict[str, Any]:
    """The issue's targets, checked on this run: fine-tuning beats scratch at the smallest size (CI excluding zero on
    at least two labels), and the default recipe is not beaten by scratch at any size."""
    if "finetune" not in config.arms or "scratch" not in config.arms:
        return {}
    by_label: dict[str, list[dict]] = {}
    for row in summary:
        by_label.setdefault(row["label"], []).append(row)
    smallest, beaten = [], []
    for label, rows in by_label.items():
        rows = [r for r in rows if "diff_finetune_scratch" in r]
        if not rows:
            continue
        first = min(rows, key=lambda r: r["train_pos_patients"])
        smallest.append({"label": label, "size": first["size"], "diff": first["diff_finetune_scratch"],
                         "ci_low": first["diff_finetune_scratch_ci_low"],
                         "ci_high": first["diff_finetune_scratch_ci_high"],
                         "finetune_higher": bool(first["diff_finetune_scratch"] > 0),
                         "ci_excludes_zero": bool(first["diff_finetune_scratch_ci_low"] > 0)})
        beaten += [{"label": label, "size": r["size"], "diff": r["diff_finetune_scratch"]}
                   for r in rows if r["diff_finetune_scratch"] < 0]
    return {
        "smallest_size": smallest,
        "finetune_higher_at_smallest_on_all_labels": bool(smallest) and all(s["finetune_higher"] for s in smallest),
        "labels_with_ci_excluding_zero_at_smallest": int(sum(s["ci_excludes_zero"] for s in smallest)),
        "sizes_where_scratch_beats_finetune": beaten,
    }


def run_comparison(foundation, data: LabelledData, config: CompareConfig, out_dir: str | Path,
                   log: Callable[[str], None] | None = None, progress=None, command: str | None = None,
                   foundation_name: str | None = None) -> tuple[CompareResult, dict[str, Path]]:
    """Run (or resume) every cell, analyse, and write the report files; returns the result and the written paths."""
    from ecgfm.transfer.report import write_compare_report

    comparison = Comparison(foundation, data, config, out_dir, log=log, foundation_name=foundation_name)
    started = time.perf_counter()
    comparison.run(progress=progress)
    result = analyse(comparison)
    result.meta["wall_seconds_this_run"] = time.perf_counter() - started
    paths = write_compare_report(result, out_dir, command=command)
    return result, paths
