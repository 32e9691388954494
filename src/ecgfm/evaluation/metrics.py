"""Per-label discrimination metrics on arrays: rank-based AUC, average precision, confusion-matrix metrics.

Conventions (shared by the whole ``ecgfm.evaluation`` package):

* ``y_true`` is ``(N, L)`` with 1 = label present, 0 = absent and NaN = unknown (the record is left out for that label
  only); ``y_score`` is ``(N, L)``, higher = more likely present, finite wherever the label is known.
* A record is called positive at threshold ``t`` when ``score >= t`` (scikit-learn's ``roc_curve`` convention).
* A label whose known records are all positive or all negative has no AUC: it is reported with a reason and left out
  of medians and macro averages, never averaged in as 0.5 or dropped silently.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np


def _as_float(values) -> np.ndarray:
    """An array of float32 or float64 (other dtypes become float64)."""
    array = np.asarray(values)
    return array if array.dtype in (np.float32, np.float64) else array.astype(np.float64)


def check_targets(
    y_true, y_score, label_names: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Validate and return ``(y_true (N, L), y_score (N, L), label_names)`` as float arrays; 1-D input = one label."""
    # float32 stays float32 (half the memory on million-record sets; every comparison is exact either way).
    y_true = _as_float(y_true)
    y_score = _as_float(y_score)
    if y_true.ndim == 1:
        y_true = y_true[:, None]
    if y_score.ndim == 1:
        y_score = y_score[:, None]
    if y_true.ndim != 2 or y_true.shape != y_score.shape:
        raise ValueError(f"y_true and y_score must both be (N, L); got {y_true.shape} and {y_score.shape}")
    if y_true.shape[0] == 0:
        raise ValueError("no records to evaluate (N = 0)")
    known = ~np.isnan(y_true)
    if not np.all((y_true[known] == 0) | (y_true[known] == 1)):
        raise ValueError("y_true must contain only 0, 1 or NaN (unknown)")
    bad = known & ~np.isfinite(y_score)
    if np.any(bad):
        record, label = np.argwhere(bad)[0]
        raise ValueError(f"y_score must be finite where the label is known; record {record}, label {label} is "
                         f"{y_score[record, label]}")
    n_labels = y_true.shape[1]
    if label_names is None:
        label_names = [f"label_{i}" for i in range(n_labels)]
    label_names = [str(name) for name in label_names]
    if len(label_names) != n_labels:
        raise ValueError(f"{len(label_names)} label names for {n_labels} label columns")
    if len(set(label_names)) != n_labels:
        raise ValueError("label names must be unique")
    return y_true, y_score, label_names


def degenerate_reason(n_pos: int, n_neg: int, split: str = "test") -> str | None:
    """Why a label has no AUC in a split (``None`` when it has both classes)."""
    if n_pos == 0 and n_neg == 0:
        return f"no known labels in the {split} set"
    if n_pos == 0:
        return f"no positive records in the {split} set"
    if n_neg == 0:
        return f"no negative records in the {split} set"
    return None


def _known(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    """One label's known records: ``(y in {0, 1}, scores)``."""
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(y_score, dtype=float)
    known = ~np.isnan(y)
    return y[known], s[known]


@dataclass(frozen=True)
class ScoreBins:
    """One label's known records grouped by distinct score: the sufficient statistics of every ranking metric.

    ``values`` are the distinct scores (ascending), ``inverse`` the bin of each record, ``positive`` each record's
    label, ``pos``/``neg`` the number of positives/negatives per bin. One sort per label serves the AUC, average
    precision, DeLong placement values, ROC points and the bootstrap, which is what makes millions of records cheap.
    """

    values: np.ndarray
    inverse: np.ndarray
    positive: np.ndarray
    pos: np.ndarray
    neg: np.ndarray

    @classmethod
    def from_scores(cls, y_true, y_score) -> "ScoreBins":
        """Bin a label's records (NaN labels are dropped first)."""
        y, s = _known(y_true, y_score)
        values, inverse = np.unique(s, return_inverse=True)
        positive = y == 1
        pos = np.bincount(inverse[positive], minlength=values.size).astype(float)
        neg = np.bincount(inverse[~positive], minlength=values.size).astype(float)
        return cls(values, inverse.ravel(), positive, pos, neg)

    @cached_property
    def n_pos(self) -> int:
        return int(self.pos.sum())

    @cached_property
    def n_neg(self) -> int:
        return int(self.neg.sum())

    @cached_property
    def _negatives_beaten(self) -> np.ndarray:
        return np.cumsum(self.neg) - 0.5 * self.neg

    def negatives_beaten(self) -> np.ndarray:
        """Per bin: negatives scoring lower plus half the tied ones (a positive's Mann-Whitney placement count)."""
        return self._negatives_beaten

    def positives_beating(self) -> np.ndarray:
        """Per bin: positives scoring higher plus half the tied ones (a negative's placement count)."""
        return self.n_pos - np.cumsum(self.pos) + 0.5 * self.pos

    def auc(self) -> float:
        """Mann-Whitney AUC: the share of (positive, negative) pairs ranked correctly, ties counting 1/2 (NaN if one
        class). Identical to the average-rank formula (sum of positive ranks - n1 (n1 + 1) / 2) / (n1 n0)."""
        n1, n0 = self.n_pos, self.n_neg
        if n1 == 0 or n0 == 0:
            return float("nan")
        return float(np.dot(self.pos, self.negatives_beaten()) / (n1 * n0))

    def average_precision(self) -> float:
        """Scikit-learn's AP: sum over distinct scores t (descending) of recall gained at t x precision(score >= t)."""
        n1 = self.n_pos
        if n1 == 0:
            return float("nan")
        pos_desc, all_desc = self.pos[::-1], (self.pos + self.neg)[::-1]
        precision = np.cumsum(pos_desc) / np.cumsum(all_desc)
        return float(np.dot(pos_desc, precision) / n1)

    def roc_points(self, resolution: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """ROC curve ``(fpr, tpr)`` from (0, 0) through every distinct score, highest first, to (1, 1).

        With ``resolution`` (e.g. 500 for a plot) only points that start or end a run within one cell of a
        ``resolution x resolution`` grid are kept: the drawn curve is unchanged at that resolution, and a
        million-record curve shrinks to a few thousand points.
        """
        tpr = np.concatenate([[0.0], np.cumsum(self.pos[::-1])]) / max(self.n_pos, 1)
        fpr = np.concatenate([[0.0], np.cumsum(self.neg[::-1])]) / max(self.n_neg, 1)
        if resolution is None or fpr.size <= 2:
            return fpr, tpr
        cell = np.floor(fpr * resolution) * (resolution + 1) + np.floor(tpr * resolution)
        keep = np.ones(cell.size, dtype=bool)
        keep[1:-1] = (cell[1:-1] != cell[:-2]) | (cell[1:-1] != cell[2:])
        return fpr[keep], tpr[keep]


def roc_auc(y_true, y_score) -> float:
    """Area under the ROC curve for one label (NaN labels dropped; NaN when only one class is present).

    Mann-Whitney statistic with average-rank ties, O(n log n): equals scikit-learn's trapezoidal ``roc_auc_score``
    including ties, but usable on millions of records.
    """
    return ScoreBins.from_scores(y_true, y_score).auc()


def per_label_auc(y_true, y_score, min_positives: int = 1) -> np.ndarray:
    """ROC AUC per label column ``(L,)``; NaN where a label has fewer than ``min_positives`` positives or no negatives
    (unknown entries of ``y_true`` are left out of that label's AUC)."""
    y_true, y_score = _as_float(y_true), _as_float(y_score)
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise ValueError(f"y_true {y_true.shape} and y_score {y_score.shape} must both be (N, labels)")
    aucs = np.full(y_true.shape[1], np.nan)
    for j in range(y_true.shape[1]):
        if np.nansum(y_true[:, j] == 1) >= max(min_positives, 1):
            aucs[j] = roc_auc(y_true[:, j], y_score[:, j])
    return aucs


def macro_auc(y_true, y_score, min_positives: int = 1) -> float:
    """Mean of :func:`per_label_auc` over the labels where it is defined (NaN if none is): the validation metric of
    training and fine-tuning."""
    aucs = per_label_auc(y_true, y_score, min_positives)
    return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")


def average_precision(y_true, y_score) -> float:
    """Average precision (area under the step precision-recall curve, scikit-learn's definition); NaN if no
    positives."""
    return ScoreBins.from_scores(y_true, y_score).average_precision()


def confusion_counts(y_true, y_score, thresholds) -> dict[str, np.ndarray]:
    """Per-label TP/FP/TN/FN at ``score >= threshold`` over known labels; NaN threshold gives NaN counts."""
    y = _as_float(y_true)
    s = _as_float(y_score)
    if y.ndim == 1:
        y, s = y[:, None], s[:, None]
    thr = np.broadcast_to(np.asarray(thresholds, dtype=float), (y.shape[1],))
    with np.errstate(invalid="ignore"):
        called = s >= thr[None, :]
    pos = y == 1
    neg = y == 0
    counts = {
        "tp": np.sum(called & pos, axis=0).astype(float),
        "fp": np.sum(called & neg, axis=0).astype(float),
        "fn": np.sum(~called & pos, axis=0).astype(float),
        "tn": np.sum(~called & neg, axis=0).astype(float),
    }
    undefined = np.isnan(thr)
    for key in counts:
        counts[key][undefined] = np.nan
    return counts


def rates_from_counts(tp, fp, tn, fn) -> dict[str, np.ndarray]:
    """Sensitivity, specificity, PPV, NPV and F1 from confusion counts (NaN where a denominator is zero)."""
    tp, fp, tn, fn = (np.asarray(v, dtype=float) for v in (tp, fp, tn, fn))
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "sensitivity": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "ppv": tp / (tp + fp),
            "npv": tn / (tn + fn),
            "f1": 2 * tp / (2 * tp + fp + fn),
        }


def micro_auc(y_true, y_score) -> float:
    """Micro-averaged AUC: all known (record, label) pairs pooled into one ranking (scikit-learn's "micro").

    Same Mann-Whitney count as :meth:`ScoreBins.auc`, but computed from two sorted arrays and binary searches so that
    pooling 68 labels x 1.6M records needs only a sorted copy of the negative scores (no inverse index).
    """
    y = np.asarray(y_true).ravel()
    s = np.asarray(y_score).ravel()
    pos = s[y == 1]
    neg = s[y == 0]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    neg.sort()
    below = np.searchsorted(neg, pos, side="left").sum(dtype=np.float64)
    tied = np.searchsorted(neg, pos, side="right").sum(dtype=np.float64) - below
    return float((below + 0.5 * tied) / (float(pos.size) * float(neg.size)))


def nan_median(values) -> float:
    """Median of the finite values (NaN when there are none), without numpy's all-NaN warning."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def nan_mean(values) -> float:
    """Mean of the finite values (NaN when there are none)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(np.mean(v)) if v.size else float("nan")
