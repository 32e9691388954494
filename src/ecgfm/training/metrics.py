"""Validation metric used for model selection: macro-averaged ROC AUC over labels (scikit-learn)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def per_label_auc(y_true: np.ndarray, y_score: np.ndarray, min_positives: int = 1) -> np.ndarray:
    """ROC AUC per label column; NaN where the label has < ``min_positives`` positives or no negatives.

    NaN entries of ``y_true`` (unknown labels) are left out of that label's AUC.
    """
    y_true, y_score = np.asarray(y_true, dtype=np.float64), np.asarray(y_score, dtype=np.float64)
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise ValueError(f"y_true {y_true.shape} and y_score {y_score.shape} must both be (N, labels)")
    aucs = np.full(y_true.shape[1], np.nan)
    for j in range(y_true.shape[1]):
        known = ~np.isnan(y_true[:, j])
        truth = y_true[known, j]
        positives = int((truth > 0.5).sum())
        if positives < max(min_positives, 1) or positives == len(truth):
            continue  # AUC undefined for a single class (sklearn would raise)
        aucs[j] = roc_auc_score(truth > 0.5, y_score[known, j])
    return aucs


def macro_auc(y_true: np.ndarray, y_score: np.ndarray, min_positives: int = 1) -> float:
    """Mean of :func:`per_label_auc` over the labels where it is defined (NaN if none is)."""
    aucs = per_label_auc(y_true, y_score, min_positives)
    return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")
