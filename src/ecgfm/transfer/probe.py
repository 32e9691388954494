"""The linear probe: frozen foundation embeddings + class-balanced logistic regression (scikit-learn), alone or as the
network's new head.

The cheapest way to use a foundation model for a new diagnosis: run the frozen network once over every ECG, keep the
pooled embedding (``forward_features`` averaged over the sliding windows the model scores records with, the same
windows ``ecgfm predict`` and ``ecgfm embed`` use), and fit a linear classifier. No gradient step touches the network.

Classifier. Features are standardised, then ``LogisticRegressionCV`` with ``class_weight="balanced"`` (so a 1:9
training set is not fit to the majority class) picks the inverse regularisation ``C`` by inner cross-validated ROC AUC
over patient-level stratified folds (records of one patient never straddle inner folds).

As a head (:func:`attach_linear_head`, :func:`fit_probe_head`): ``BatchNorm (running statistics = the scaler's mean
and variance) -> dropout -> linear (= the regression)`` with window logits averaged, so before any gradient step the
network predicts exactly what the probe predicts (the "LP" of LP-FT, Kumar et al., ICLR 2022).
"""
from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from ecgfm.datasets import LabelledSet
from ecgfm.models.base import ConcatPoolHead
from ecgfm.models.windowing import extract_features

#: Options that pin scikit-learn >= 1.8's future defaults (plain L2, simplified attributes) where they exist, so the
#: probe does not change meaning, or warn, across scikit-learn versions.
_LRCV_QUIET = {k: v for k, v in {"l1_ratios": (0.0,), "use_legacy_attributes": False}.items()
               if k in inspect.signature(LogisticRegressionCV).parameters}

#: Inverse-regularisation grid searched by inner cross-validation (log-spaced, strong to weak regularisation).
DEFAULT_CS = tuple(float(c) for c in np.logspace(-4, 2, 13))


def has_both_classes(Y: np.ndarray) -> bool:
    """Whether at least one label has a positive and a negative (otherwise AUC and a regression are undefined)."""
    Y = np.asarray(Y, dtype=float)
    return bool(np.any((np.nansum(Y == 1, axis=0) > 0) & (np.nansum(Y == 0, axis=0) > 0)))


def patient_stratified_folds(y: np.ndarray, groups: np.ndarray, max_splits: int,
                             seed: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Patient-level stratified inner folds, or ``None`` when there are too few positive patients to cross-validate."""
    n_splits = min(max_splits, len(set(groups[y == 1])), len(set(groups[y == 0])))
    if n_splits < 2:
        return None
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y, groups))


class EmbeddingProbe:
    """One standardised, class-balanced logistic regression per label on fixed embeddings; ``C`` by inner CV AUC.

    ``fit(Z, Y, groups)`` takes embeddings ``(N, F)``, labels ``(N, L)`` or ``(N,)`` (NaN = unknown, left out) and patient
    ids; ``predict_proba(Z)`` returns ``(N, L)`` probabilities. ``chosen_C`` holds the selected ``C`` per label.
    """

    def __init__(self, Cs: Sequence[float] = DEFAULT_CS, inner_folds: int = 5, seed: int = 0, max_iter: int = 2000):
        self.Cs, self.inner_folds, self.seed, self.max_iter = list(Cs), int(inner_folds), int(seed), int(max_iter)
        self.models_: list = []
        self.chosen_C: list[float] = []

    def fit(self, Z: np.ndarray, Y: np.ndarray, groups: np.ndarray | None = None) -> "EmbeddingProbe":
        Z = np.asarray(Z, dtype=np.float64)
        Y = np.asarray(Y, dtype=float)
        Y = Y[:, None] if Y.ndim == 1 else Y
        groups = np.arange(len(Z)).astype(str) if groups is None else np.asarray(groups).astype(str)
        self.models_, self.chosen_C = [], []
        for j in range(Y.shape[1]):
            known = ~np.isnan(Y[:, j])
            y = Y[known, j].astype(int)
            if len(np.unique(y)) < 2:
                raise ValueError(f"label column {j}: training data need both positive and negative records")
            splits = patient_stratified_folds(y, groups[known], self.inner_folds, self.seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                if splits is None:  # too few positives to cross-validate: fixed C = 1 (scikit-learn's default)
                    clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=self.max_iter)
                else:
                    clf = LogisticRegressionCV(Cs=self.Cs, cv=splits, scoring="roc_auc", class_weight="balanced",
                                               max_iter=self.max_iter, **_LRCV_QUIET)
                model = make_pipeline(StandardScaler(), clf).fit(Z[known], y)
            self.models_.append(model)
            last = model[-1]
            self.chosen_C.append(float(np.ravel(last.C_)[0]) if hasattr(last, "C_") else float(last.C))
        return self

    def predict_proba(self, Z: np.ndarray) -> np.ndarray:
        if not self.models_:
            raise RuntimeError("EmbeddingProbe is not fitted")
        Z = np.asarray(Z, dtype=np.float64)
        return np.stack([m.predict_proba(Z)[:, 1] for m in self.models_], axis=1)


def probe_features(model: nn.Module, data: LabelledSet, batch_size: int = 256,
                   device: str | torch.device = "cpu") -> np.ndarray:
    """The probe's input: ``forward_features`` averaged over the model's sliding windows, ``(N, F)`` float64."""
    return extract_features(model, data.torch(), batch_size=batch_size, device=device).astype(np.float64)


def attach_linear_head(model: nn.Module, num_labels: int) -> nn.Module:
    """Replace the model's head by a linear one on the pooled embedding (``ConcatPoolHead(hidden=0)``) in place.

    ``arch_kwargs`` records ``head_hidden=0`` so checkpoints rebuild the same network.
    """
    drop_rate = float(getattr(model.head, "drop_rate", 0.5))
    model.head = ConcatPoolHead(model.num_features, int(num_labels), hidden=0, drop_rate=drop_rate)
    model.num_labels = int(num_labels)
    model.arch_kwargs = {**getattr(model, "arch_kwargs", {}), "head_hidden": 0}
    return model


def fit_probe_head(model: nn.Module, data: LabelledSet, seed: int = 0, features: np.ndarray | None = None,
                   batch_size: int = 256, device: str | torch.device = "cpu") -> list[float]:
    """Set the linear head to the probe fitted on ``data``; returns the chosen ``C`` per label (NaN: not fitted).

    The head's BatchNorm standardises with the statistics of all of ``data`` (running variance ``scale**2 - eps``, so
    BN divides by exactly ``scale``); each label's regression, fitted on its own standardisation (its labelled
    records), is rewritten for that common one. With ``aggregate="mean"`` the network then reproduces the probe's
    logits, because averaging window logits of an affine head equals the head applied to the averaged embedding.
    Labels with a single class in ``data`` keep zero weights (a constant prediction).
    """
    Z = probe_features(model, data, batch_size, device) if features is None else features
    mean = Z.mean(axis=0)
    scale = Z.std(axis=0)
    scale[scale == 0] = 1.0  # StandardScaler's convention for constant features
    bn, fc = model.head.pre_logits[0], model.head.fc
    Y = np.asarray(data.Y, dtype=float)
    chosen = [float("nan")] * Y.shape[1]
    weights, biases = np.zeros((Y.shape[1], Z.shape[1])), np.zeros(Y.shape[1])
    for j in range(Y.shape[1]):
        if not has_both_classes(Y[:, [j]]):
            continue
        probe = EmbeddingProbe(inner_folds=5, seed=seed).fit(Z, Y[:, j], data.patient_ids)
        scaler, regression = probe.models_[0][0], probe.models_[0][-1]
        w = regression.coef_[0] / scaler.scale_  # per raw embedding unit
        weights[j] = w * scale
        biases[j] = regression.intercept_[0] + w @ (mean - scaler.mean_)
        chosen[j] = probe.chosen_C[0]
    with torch.no_grad():
        fc.weight.copy_(torch.as_tensor(weights, dtype=fc.weight.dtype))
        fc.bias.copy_(torch.as_tensor(biases, dtype=fc.bias.dtype))
        bn.running_mean.copy_(torch.as_tensor(mean, dtype=bn.running_mean.dtype))
        bn.running_var.copy_(torch.as_tensor(np.maximum(np.square(scale) - bn.eps, 0.0), dtype=bn.running_var.dtype))
        bn.weight.fill_(1.0)
        bn.bias.zero_()
    return chosen


def probe_out_of_fold(Z: np.ndarray, data: LabelledSet, seed: int = 0, n_splits: int = 5) -> np.ndarray:
    """Out-of-fold probe probabilities ``(N, L)`` over patient-level stratified folds (NaN where a label has too few
    positive patients to split), for thresholds of a probe fitted on every record."""
    Y = np.asarray(data.Y, dtype=float)
    oof = np.full(Y.shape, np.nan)
    groups = np.asarray(data.patient_ids).astype(str)
    for j in range(Y.shape[1]):
        known = np.flatnonzero(~np.isnan(Y[:, j]))
        y = Y[known, j].astype(int)
        if len(np.unique(y)) < 2:
            continue
        for fit_idx, test_idx in patient_stratified_folds(y, groups[known], n_splits, seed) or []:
            if len(np.unique(y[fit_idx])) < 2:
                continue
            probe = EmbeddingProbe(inner_folds=5, seed=seed).fit(Z[known[fit_idx]], y[fit_idx], groups[known[fit_idx]])
            oof[known[test_idx], j] = probe.predict_proba(Z[known[test_idx]])[:, 0]
    return oof
