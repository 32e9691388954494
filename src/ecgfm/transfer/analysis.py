"""Statistics of a comparison: per (label, size) each arm's AUC, paired differences, intervals and DeLong tests.

Each arm's AUC per seed gets a patient-clustered bootstrap 95% CI, the paired AUC difference per seed a bootstrap CI
and a DeLong p-value, and the summary row takes the median over seeds. The interval of a median over seeds resamples
test patients once and recomputes every seed's AUC on that resample (all seeds share the test records), so it reflects
test-set uncertainty of the seed-median, not training noise alone.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ecgfm.datasets import LabelledSet
from ecgfm.evaluation.bootstrap import bootstrap_replicates
from ecgfm.evaluation.delong import delong_test
from ecgfm.evaluation.intervals import percentile_interval
from ecgfm.evaluation.metrics import roc_auc
from ecgfm.transfer.config import CompareConfig

#: Paired differences reported (first arm minus second), when both arms ran.
PAIRS = (("finetune", "scratch"), ("embeddings", "scratch"), ("finetune", "embeddings"))

#: ``scores(label, size, seed, arm)``: ``(test record indices, scores, per-fold metadata)`` pooled over the folds of
#: one cell, or ``None`` while a fold is missing.
ScoreReader = Callable[[str, Any, int, str], tuple[np.ndarray, np.ndarray, list[dict]] | None]


@dataclass
class CompareResult:
    """Per (label, size) summary rows, per-seed rows, skipped sizes, and the settings that made them."""

    summary: list[dict[str, Any]]
    per_seed: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    config: dict[str, Any]
    checks: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


def analyse(config: CompareConfig, data: LabelledSet, scores: ScoreReader, skipped: list[dict[str, Any]],
            meta: dict[str, Any]) -> CompareResult:
    """Collect finished cells into AUCs, paired differences, CIs and DeLong tests (see the module docstring).

    Every arm and seed of a (label, size) must have been scored on the same test records.
    """
    summary, per_seed = [], []
    for label in config.labels:
        y_all = data.Y[:, data.labels.index(label)]
        for size in config.sizes:
            cell_scores: dict[int, dict[str, np.ndarray]] = {}
            cell_meta: dict[int, dict[str, list[dict]]] = {}
            eval_index = None
            for seed in config.seeds:
                for arm in config.arms:
                    pooled = scores(label, size, seed, arm)
                    if pooled is None:
                        continue
                    index, arm_scores, metas = pooled
                    eval_index = index if eval_index is None else eval_index
                    if not np.array_equal(index, eval_index):
                        raise ValueError(f"{label} n={size}: arms or seeds were scored on different test records")
                    cell_scores.setdefault(seed, {})[arm] = arm_scores
                    cell_meta.setdefault(seed, {})[arm] = metas
            if not cell_scores:
                continue
            known = ~np.isnan(y_all[eval_index])
            index = eval_index[known]
            rows, row = analyse_cell(label, size, y_all[index], data.patient_ids[index],
                                     {s: {a: v[known] for a, v in d.items()} for s, d in cell_scores.items()},
                                     cell_meta, config)
            row["description"] = data.label_descriptions.get(label, label)
            summary.append(row)
            per_seed.extend(rows)
    return CompareResult(summary, per_seed, list(skipped), config.to_dict(), target_checks(summary, config), meta)


def _median(values) -> float:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


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


def analyse_cell(label: str, size, y: np.ndarray, pids: np.ndarray, scores: dict[int, dict[str, np.ndarray]],
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
        low, high = median_interval([reps.get((s, a)) for s in seeds], level)
        summary.update({f"auc_{a}_ci_low": low, f"auc_{a}_ci_high": high,
                        f"seconds_{a}": float(sum(r[f"seconds_{a}"] for r in per_seed))})
    for a, b in pairs if evaluable else []:
        low, high = median_interval([reps[(s, a)] - reps[(s, b)] if reps else None for s in seeds], level)
        summary.update({f"diff_{a}_{b}": _median([r[f"diff_{a}_{b}"] for r in per_seed]),
                        f"diff_{a}_{b}_ci_low": low, f"diff_{a}_{b}_ci_high": high,
                        f"p_delong_{a}_{b}": _median([r[f"p_delong_{a}_{b}"] for r in per_seed]),
                        f"seeds_{a}_over_{b}": int(sum(r[f"diff_{a}_{b}"] > 0 for r in per_seed))})
    return per_seed, summary


def median_interval(replicates: list[np.ndarray | None], level: float) -> tuple[float, float]:
    """Percentile interval of the across-seed median, recomputed on each shared bootstrap resample."""
    if not replicates or any(r is None for r in replicates):
        return float("nan"), float("nan")
    stacked = np.stack(replicates)  # (seeds, resamples); NaN where a resample had no positive or no negative
    medians = np.full(stacked.shape[1], np.nan)
    defined = np.isfinite(stacked).any(axis=0)
    medians[defined] = np.nanmedian(stacked[:, defined], axis=0)
    low, high = percentile_interval(medians, level)
    return float(low), float(high)


def target_checks(summary: list[dict[str, Any]], config: CompareConfig) -> dict[str, Any]:
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
