"""DeLong's variance, confidence interval and paired test for AUCs, with Sun & Xu's (2014) fast algorithm.

DeLong, DeLong & Clarke-Pearson (Biometrics 1988) estimate the covariance of correlated AUCs from "placement values":
for positive i, V10_i = fraction of negatives it outranks (ties count 1/2); for negative j, V01_j = fraction of
positives that outrank it. Then S = cov(V10) / m + cov(V01) / n (m positives, n negatives, covariances over models).
Sun & Xu (IEEE Signal Processing Letters 2014) showed the placement values follow from three sets of midranks,
V10_i = (T_Z,i - T_X,i) / n and V01_j = 1 - (T_Z,j - T_Y,j) / m, turning the O(mn) pair count into O(N log N) sorts.
Here the midrank differences are read off one sort per model: T_Z,i - T_X,i is the number of negatives ranked below
positive i plus half of those tied with it, i.e. a cumulative count over the distinct scores (:class:`ScoreBins`).

Records are assumed independent: with several ECGs per patient DeLong understates the variance, so reports also give
the patient-level (cluster) bootstrap interval from :mod:`ecgfm.evaluation.bootstrap`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from ecgfm.evaluation.intervals import z_value
from ecgfm.evaluation.metrics import ScoreBins


@dataclass(frozen=True)
class DeLongAUC:
    """One model's AUC with its DeLong standard error and normal-approximation interval (clipped to [0, 1])."""

    auc: float
    se: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class DeLongComparison:
    """Paired comparison of two AUCs on the same records: ``diff = auc_a - auc_b`` with DeLong SE, CI, z and p."""

    auc_a: float
    auc_b: float
    diff: float
    se: float
    ci_low: float
    ci_high: float
    z: float
    p_value: float


def placement_values(y_true, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs ``(k,)`` and placement values ``V10 (k, m)``, ``V01 (k, n)`` for ``k`` score rows on the same records.

    ``y_true`` is 0/1 (no NaN; drop unknowns first), ``scores`` is ``(N,)`` or ``(k, N)``.
    """
    y = np.asarray(y_true, dtype=float)
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    if s.shape[1] != y.shape[0]:
        raise ValueError(f"scores have {s.shape[1]} records, y_true has {y.shape[0]}")
    if np.any(np.isnan(y)):
        raise ValueError("y_true must not contain NaN here; drop records with unknown labels first")
    return placements_from_bins([ScoreBins.from_scores(y, row) for row in s])


def placements_from_bins(bins: list[ScoreBins]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`placement_values` from per-model :class:`ScoreBins` built on the same records in the same order."""
    positive = bins[0].positive
    m, n = int(positive.sum()), int((~positive).sum())
    if m == 0 or n == 0:
        raise ValueError("DeLong needs at least one positive and one negative record")
    auc = np.array([b.auc() for b in bins])
    v10 = np.stack([b.negatives_beaten()[b.inverse[positive]] / n for b in bins])
    v01 = np.stack([b.positives_beating()[b.inverse[~positive]] / m for b in bins])
    return auc, v10, v01


def _covariance(v: np.ndarray) -> np.ndarray:
    """Sample covariance (denominator count - 1, as in DeLong 1988) between the rows of ``v``."""
    centred = v - v.mean(axis=1, keepdims=True)
    return centred @ centred.T / (v.shape[1] - 1)


def delong_covariance(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs ``(k,)`` and their DeLong covariance matrix ``(k, k)``; NaN covariance with fewer than 2 per class."""
    return _covariance_from_placements(*placement_values(y_true, scores))


def _covariance_from_placements(auc, v10, v01) -> tuple[np.ndarray, np.ndarray]:
    m, n = v10.shape[1], v01.shape[1]
    k = auc.size
    if m < 2 or n < 2:
        return auc, np.full((k, k), np.nan)
    return auc, _covariance(v10) / m + _covariance(v01) / n


def delong_auc_from_bins(bins: ScoreBins, level: float = 0.95) -> DeLongAUC:
    """:func:`delong_auc` from a label's :class:`ScoreBins`: placement variances as weighted sums over bins, O(bins)."""
    m, n = bins.n_pos, bins.n_neg
    if m == 0 or n == 0:
        raise ValueError("DeLong needs at least one positive and one negative record")
    auc = bins.auc()
    if m < 2 or n < 2:
        return DeLongAUC(auc, float("nan"), float("nan"), float("nan"))
    s10 = np.dot(bins.pos, (bins.negatives_beaten() / n - auc) ** 2) / (m - 1)
    s01 = np.dot(bins.neg, (bins.positives_beating() / m - auc) ** 2) / (n - 1)
    se = float(np.sqrt(s10 / m + s01 / n))
    z = z_value(level)
    return DeLongAUC(auc, se, float(max(0.0, auc - z * se)), float(min(1.0, auc + z * se)))


def delong_auc(y_true, y_score, level: float = 0.95) -> DeLongAUC:
    """AUC of one score with DeLong's standard error and a Wald interval clipped to [0, 1] (pROC's default)."""
    y = np.asarray(y_true, dtype=float)
    if np.any(np.isnan(y)):
        raise ValueError("y_true must not contain NaN here; drop records with unknown labels first")
    return delong_auc_from_bins(ScoreBins.from_scores(y, y_score), level)


def delong_test(y_true, score_a, score_b, level: float = 0.95) -> DeLongComparison:
    """DeLong's paired test of AUC(a) = AUC(b) on the same records, with a CI for the difference a - b."""
    auc, cov = delong_covariance(y_true, np.vstack([np.asarray(score_a, float), np.asarray(score_b, float)]))
    return _comparison(auc, cov, level)


def delong_test_from_bins(bins_a: ScoreBins, bins_b: ScoreBins, level: float = 0.95) -> DeLongComparison:
    """:func:`delong_test` from two models' :class:`ScoreBins` on the same records."""
    auc, cov = _covariance_from_placements(*placements_from_bins([bins_a, bins_b]))
    return _comparison(auc, cov, level)


def _comparison(auc: np.ndarray, cov: np.ndarray, level: float) -> DeLongComparison:
    """z-test of the AUC difference from the 2 x 2 DeLong covariance."""
    diff = float(auc[0] - auc[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = float(np.sqrt(max(var, 0.0))) if np.isfinite(var) else float("nan")
    zq = z_value(level)
    if not np.isfinite(se):
        z_stat, p_value = float("nan"), float("nan")
    elif se == 0.0:
        # Identical rankings: no evidence of a difference (diff is then exactly 0).
        z_stat, p_value = (0.0, 1.0) if diff == 0.0 else (float(np.sign(diff) * np.inf), 0.0)
    else:
        z_stat = diff / se
        p_value = float(2.0 * norm.sf(abs(z_stat)))
    return DeLongComparison(float(auc[0]), float(auc[1]), diff, se, diff - zq * se, diff + zq * se, z_stat, p_value)
