"""The embeddings route: frozen foundation features + class-weighted logistic regression (scikit-learn).

The cheapest way to use a foundation model for a new diagnosis: run the frozen network once over every ECG, keep the
pooled embedding (``model.forward_features``), and fit a linear classifier. No gradient step touches the network, so it
costs one inference pass plus a few milliseconds of scikit-learn per training set, and it is a useful third arm beside
fine-tuning and training from scratch.

Record embedding: :func:`ecgfm.training.extract_features`, the mean of ``forward_features`` over the sliding windows
the model scores records with (the same windows ``ecgfm predict`` and ``ecgfm embed`` use).

Classifier. Features are standardised, then ``LogisticRegressionCV`` with ``class_weight="balanced"`` (so a 1:9
training set is not fit to the majority class) picks the inverse regularisation ``C`` by inner cross-validated ROC AUC
over patient-level stratified folds (records of one patient never straddle inner folds).
"""
from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

#: Options that pin scikit-learn >= 1.8's future defaults (plain L2, simplified attributes) where they exist, so the
#: baseline does not change meaning, or warn, across scikit-learn versions.
_LRCV_QUIET = {k: v for k, v in {"l1_ratios": (0.0,), "use_legacy_attributes": False}.items()
               if k in inspect.signature(LogisticRegressionCV).parameters}

#: Inverse-regularisation grid searched by inner cross-validation (log-spaced, strong to weak regularisation).
DEFAULT_CS = tuple(float(c) for c in np.logspace(-4, 2, 13))


def patient_stratified_folds(y: np.ndarray, groups: np.ndarray, max_splits: int,
                  seed: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Patient-level stratified inner folds, or ``None`` when there are too few positive patients to cross-validate."""
    n_pos_groups = len(set(groups[y == 1]))
    n_neg_groups = len(set(groups[y == 0]))
    n_splits = min(max_splits, n_pos_groups, n_neg_groups)
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
