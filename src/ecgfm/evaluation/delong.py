"""DeLong's variance, confidence interval and paired test for AUCs, with Sun & Xu's (2014) fast algorithm.

DeLong, DeLong & Clarke-Pearson (Biometrics 1988) estimate the covariance of correlated AUCs from "placement values":
for positive i, V10_i = fraction of negatives it outranks (ties count 1/2); for negative j, V01_j = fraction of
positives that outrank it. Then S = cov(V10) / m + cov(V01) / n (m positives, n negatives, covariances over models).
Sun & Xu (IEEE Signal Processing Letters 2014) showed the placement values follow from three sets of midranks,
V10_i = (T_Z,i - T_X,i) / n and V01_j = 1 - (T_Z,j - T_Y,j) / m, turning the O(mn) pair count into O(N log N) sorts.

Records are assumed independent: with several ECGs per patient DeLong understates the variance, so reports also give
the patient-level (cluster) bootstrap interval from :mod:`ecgfm.evaluation.bootstrap`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata

from ecgfm.evaluation.intervals import z_value


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
    y = np.asarray(y_true)
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    if s.shape[1] != y.shape[0]:
        raise ValueError(f"scores have {s.shape[1]} records, y_true has {y.shape[0]}")
    positives = s[:, y == 1]
    negatives = s[:, y == 0]
    m, n = positives.shape[1], negatives.shape[1]
    if m == 0 or n == 0:
        raise ValueError("DeLong needs at least one positive and one negative record")
    t_z = rankdata(np.concatenate([positives, negatives], axis=1), axis=1)  # midranks in the pooled sample
    t_x = rankdata(positives, axis=1)
    t_y = rankdata(negatives, axis=1)
    auc = (t_z[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    v10 = (t_z[:, :m] - t_x) / n
    v01 = 1.0 - (t_z[:, m:] - t_y) / m
    return auc, v10, v01


def delong_covariance(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs ``(k,)`` and their DeLong covariance matrix ``(k, k)``; NaN covariance with fewer than 2 per class."""
    auc, v10, v01 = placement_values(y_true, scores)
    m, n = v10.shape[1], v01.shape[1]
    k = auc.size
    if m < 2 or n < 2:
        return auc, np.full((k, k), np.nan)
    s10 = np.atleast_2d(np.cov(v10, ddof=1))
    s01 = np.atleast_2d(np.cov(v01, ddof=1))
    return auc, s10 / m + s01 / n


def delong_auc(y_true, y_score, level: float = 0.95) -> DeLongAUC:
    """AUC of one score with DeLong's standard error and a Wald interval clipped to [0, 1] (pROC's default)."""
    auc, cov = delong_covariance(y_true, y_score)
    se = float(np.sqrt(max(cov[0, 0], 0.0))) if np.isfinite(cov[0, 0]) else float("nan")
    z = z_value(level)
    return DeLongAUC(float(auc[0]), se, max(0.0, auc[0] - z * se), min(1.0, auc[0] + z * se))


def delong_test(y_true, score_a, score_b, level: float = 0.95) -> DeLongComparison:
    """DeLong's paired test of AUC(a) = AUC(b) on the same records, with a CI for the difference a - b."""
    auc, cov = delong_covariance(y_true, np.vstack([np.asarray(score_a, float), np.asarray(score_b, float)]))
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
