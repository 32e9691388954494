"""Calibrated probabilities: per-label calibrators fitted on the validation set, and the metrics that check them.

A probability of 0.8 should mean that about 8 in 10 such ECGs have the finding. :func:`fit_calibration` fits, for
each label, the candidates its validation positives allow and keeps the one with the lowest cross-validated log-loss:

* ``identity``: the model's own probability;
* ``platt``: logistic regression of the label on the logit, ``sigmoid(a * logit(p) + b)`` (Platt 1999; temperature
  scaling is the special case ``b = 0``), fitted with Platt's smoothed targets ``(n+ + 1) / (n+ + 2)`` and
  ``1 / (n- + 2)`` so that a label whose few positives all score highest does not get an infinite slope;
* ``isotonic``: scikit-learn's ``IsotonicRegression`` on the logit, read as a *centred* isotonic curve (linear
  interpolation between the centres of its constant blocks, Oron & Flournoy 2017) mixed with ``ISOTONIC_PLATT_WEIGHT``
  of the Platt curve. Plain isotonic regression is a step function: it ties records the model ranked apart and so
  changes the AUC; the centred curve plus a little of the strictly increasing Platt curve keeps every label's map
  strictly increasing (the AUC cannot change) and away from 0 and 1 (no infinite log-loss).

Selection: stratified k-fold cross-validation inside the validation set (k = min(5, positives), grouped by patient
when patient ids are given, so one patient's ECGs never sit on both sides), mean held-out log-loss; ties go to the
simpler calibrator. Isotonic is a candidate only with at least ``ISOTONIC_MIN_POSITIVES`` validation positives, Platt
with at least ``PLATT_MIN_POSITIVES``; rarer labels keep the identity (see the constants for why).

Every calibrator is plain JSON (:meth:`Calibration.to_dict`) and applies with numpy only (:meth:`Calibration.apply`:
a sigmoid and ``np.interp``), so a released model can store it in its ``config.json`` and apply it without torch.

Metrics (:func:`calibration_metrics`): Brier score; expected calibration error over ``ECE_BINS`` equal-mass bins
(each bin holds the same number of predictions, so rare labels, whose probabilities crowd near 0, still get populated
bins at the top; equal-width bins would leave the upper bins empty or holding a handful of records); calibration slope
and intercept from the logistic recalibration fit of the label on ``logit(p)`` (slope 1 and intercept 0 when
calibrated; slope < 1 means over-confident probabilities).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.optimize import minimize

from ecgfm.files import to_jsonable

#: Probabilities are clipped to [EPS, 1 - EPS] before taking logits (float32 sigmoid outputs reach exactly 0 and 1).
EPS = 1e-7
#: Below this many validation positives a label keeps the identity: a two-parameter fit on 1-4 positives is noise,
#: and the cross-validation that would have to reject it has folds holding a single positive or none.
PLATT_MIN_POSITIVES = 5
#: Isotonic regression has as many free steps as the data allow; below ~30 positives its steps follow individual
#: records (it overfits small calibration sets: Niculescu-Mizil & Caruana 2005).
ISOTONIC_MIN_POSITIVES = 30
#: Share of the Platt curve mixed into the isotonic map (see the module docstring): enough to break ties, small enough
#: not to move the isotonic estimate by more than a few hundredths.
ISOTONIC_PLATT_WEIGHT = 0.05
#: Cross-validation folds used to choose between calibrators (fewer when a label has fewer positives).
CV_FOLDS = 5
#: Equal-mass bins of the expected calibration error (reliability diagrams use as many equal-width bins).
ECE_BINS = 10
#: Reliability diagrams leave out equal-width bins holding fewer predictions than this (their fraction is noise).
DIAGRAM_MIN_COUNT = 5
METHODS = ("identity", "platt", "isotonic")


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(z) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


def log_loss(y, p) -> float:
    """Mean binary cross-entropy (nats) of probabilities ``p`` against labels ``y`` in {0, 1}."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(y, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def _logistic_fit(z: np.ndarray, target: np.ndarray, intercept: bool = True,
                  positive_slope: bool = True) -> tuple[float, float]:
    """``(a, b)`` minimising the cross-entropy of ``sigmoid(a z + b)`` against (possibly smoothed) targets.

    Convex in ``(a, b)``; a tiny ridge (1e-6) keeps it finite on separable data. With ``positive_slope`` the slope is
    kept >= 1e-3 so a calibrator stays strictly increasing (a label the model cannot rank gets a near-constant map,
    never an inverted one).
    """
    def loss(params):
        a, b = params[0], (params[1] if intercept else 0.0)
        q = sigmoid(a * z + b)
        value = -np.mean(target * np.log(np.clip(q, 1e-300, 1)) + (1 - target) * np.log(np.clip(1 - q, 1e-300, 1)))
        grad_common = q - target
        grad = [np.mean(grad_common * z) + 2e-6 * a]
        if intercept:
            grad.append(np.mean(grad_common) + 2e-6 * b)
        return value + 1e-6 * (a * a + b * b), np.array(grad)

    start = np.array([1.0, 0.0] if intercept else [1.0])
    bounds = [(1e-3 if positive_slope else -1e3, 1e3)] + ([(-1e3, 1e3)] if intercept else [])
    fit = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    return float(fit.x[0]), float(fit.x[1]) if intercept else 0.0


def platt_targets(y: np.ndarray) -> np.ndarray:
    """Platt's smoothed targets: ``(n+ + 1) / (n+ + 2)`` for positives, ``1 / (n- + 2)`` for negatives."""
    n_pos = float(np.sum(y == 1))
    n_neg = float(np.sum(y == 0))
    return np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))


@dataclass
class LabelCalibrator:
    """One label's map from raw probability to calibrated probability (plain-JSON parameters)."""

    method: str = "identity"
    a: float = 1.0
    b: float = 0.0
    nodes_logit: list[float] = field(default_factory=list)  # isotonic: node positions on the logit of the raw p
    nodes_p: list[float] = field(default_factory=list)      # isotonic: calibrated probability at each node
    weight: float = 0.0                                     # isotonic: share of the Platt curve mixed in

    def apply(self, p) -> np.ndarray:
        """Calibrated probabilities (float64) for raw probabilities ``p`` (any shape)."""
        p = np.asarray(p, dtype=np.float64)
        if self.method == "identity":
            return p.copy()
        z = logit(p)
        platt = sigmoid(self.a * z + self.b)
        if self.method == "platt":
            return platt
        curve = np.interp(z, self.nodes_logit, self.nodes_p)
        return (1 - self.weight) * curve + self.weight * platt

    def to_dict(self) -> dict[str, Any]:
        if self.method == "identity":
            return {"method": "identity"}
        data = {"method": self.method, "a": self.a, "b": self.b}
        if self.method == "isotonic":
            data.update(nodes_logit=list(map(float, self.nodes_logit)), nodes_p=list(map(float, self.nodes_p)),
                        weight=self.weight)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LabelCalibrator":
        method = data.get("method", "identity")
        if method not in METHODS:
            raise ValueError(f"unknown calibration method {method!r}; expected one of {', '.join(METHODS)}")
        calibrator = cls(method, float(data.get("a", 1.0)), float(data.get("b", 0.0)),
                         [float(v) for v in data.get("nodes_logit", [])], [float(v) for v in data.get("nodes_p", [])],
                         float(data.get("weight", 0.0)))
        if method == "isotonic" and (len(calibrator.nodes_logit) != len(calibrator.nodes_p)
                                     or len(calibrator.nodes_logit) < 1
                                     or np.any(np.diff(calibrator.nodes_logit) <= 0)
                                     or np.any(np.diff(calibrator.nodes_p) < 0)):
            raise ValueError("isotonic calibrator needs increasing nodes_logit and non-decreasing nodes_p of equal "
                             "length")
        return calibrator


def fit_platt(y, p) -> LabelCalibrator:
    """Platt scaling on the logit with Platt's smoothed targets."""
    y = np.asarray(y, dtype=np.float64)
    a, b = _logistic_fit(logit(p), platt_targets(y))
    return LabelCalibrator("platt", a, b)


def fit_isotonic(y, p, weight: float = ISOTONIC_PLATT_WEIGHT) -> LabelCalibrator:
    """Centred isotonic regression on the logit, mixed with ``weight`` of the Platt curve (strictly increasing)."""
    from sklearn.isotonic import IsotonicRegression

    y = np.asarray(y, dtype=np.float64)
    z = logit(p)
    order = np.argsort(z, kind="stable")
    z, y_sorted = z[order], y[order]
    fitted = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(z, y_sorted).predict(z)
    # Blocks = runs of equal fitted value; each becomes one node at the mean logit of its records.
    starts = np.flatnonzero(np.r_[True, np.diff(fitted) != 0])
    counts = np.diff(np.r_[starts, z.size])
    centres = np.add.reduceat(z, starts) / counts
    values = fitted[starts]
    keep = np.r_[True, np.diff(centres) > 0]  # equal centres (ties in z across a block edge): keep the first
    platt = fit_platt(y, p)
    return LabelCalibrator("isotonic", platt.a, platt.b, centres[keep].tolist(), values[keep].tolist(), weight)


_FITTERS = {"identity": lambda y, p: LabelCalibrator(), "platt": fit_platt, "isotonic": fit_isotonic}


def candidate_methods(n_pos: int, n_neg: int) -> tuple[str, ...]:
    """The calibrators a label's validation counts allow (see the constants)."""
    if min(n_pos, n_neg) < PLATT_MIN_POSITIVES:
        return ("identity",)
    if min(n_pos, n_neg) < ISOTONIC_MIN_POSITIVES:
        return ("identity", "platt")
    return METHODS


def cv_log_loss(y, p, methods: Sequence[str], groups=None, folds: int = CV_FOLDS, seed: int = 0) -> dict[str, float]:
    """Mean held-out log-loss of each method over stratified (patient-grouped when ``groups``) k-fold splits."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    k = int(min(folds, np.sum(y == 1), np.sum(y == 0)))
    if k < 2:
        return {}
    if groups is not None:
        splits = StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(p, y, groups)
    else:
        splits = StratifiedKFold(k, shuffle=True, random_state=seed).split(p, y)
    total, scored = {method: 0.0 for method in methods}, 0
    for train, test in splits:
        if np.sum(y[train] == 1) == 0 or np.sum(y[train] == 0) == 0:
            continue
        scored += test.size
        for method in methods:
            total[method] += log_loss(y[test], _FITTERS[method](y[train], p[train]).apply(p[test])) * test.size
    return {method: value / scored for method, value in total.items()} if scored else {}


@dataclass
class Calibration:
    """Per-label calibrators: ``apply`` maps raw probabilities ``(N, L)`` to calibrated ones, label by label."""

    labels: list[str]
    calibrators: list[LabelCalibrator]
    selection: dict[str, dict[str, Any]] = field(default_factory=dict)  # per label: positives, CV log-losses

    def apply(self, probabilities) -> np.ndarray:
        """Calibrated probabilities ``(N, L)`` (float64) from raw ones; every column stays strictly increasing."""
        p = np.asarray(probabilities, dtype=np.float64)
        squeeze = p.ndim == 1
        p = np.atleast_2d(p)
        if p.shape[-1] != len(self.calibrators):
            raise ValueError(f"probabilities have {p.shape[-1]} labels, the calibration {len(self.calibrators)}")
        out = np.empty_like(p)
        for j, calibrator in enumerate(self.calibrators):
            out[:, j] = calibrator.apply(p[:, j])
        return out[0] if squeeze else out

    @property
    def methods(self) -> dict[str, str]:
        return {label: c.method for label, c in zip(self.labels, self.calibrators)}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: ``{"labels": {label: {method, a, b, nodes_logit, nodes_p, weight}}, "selection": ...}``."""
        return {"method": "per-label, chosen by cross-validated log-loss on the validation set",
                "labels": {label: c.to_dict() for label, c in zip(self.labels, self.calibrators)},
                "selection": to_jsonable(self.selection)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Calibration":
        labels = list(data["labels"])
        return cls(labels, [LabelCalibrator.from_dict(data["labels"][label]) for label in labels],
                   dict(data.get("selection", {})))

    @classmethod
    def of(cls, info) -> "Calibration":
        """A model's stored calibration (``info.extra["calibration"]``), or the identity for one released without."""
        stored = info.extra.get("calibration")
        return cls.from_dict(stored) if stored else cls.identity(info.labels)

    @classmethod
    def identity(cls, labels: Sequence[str]) -> "Calibration":
        return cls(list(labels), [LabelCalibrator() for _ in labels])


def fit_calibration(val_true, val_score, labels: Sequence[str], patient_ids=None, seed: int = 0) -> Calibration:
    """Fit one calibrator per label on validation labels ``(N, L)`` (NaN = unknown) and probabilities ``(N, L)``.

    Each label gets the candidate (see :func:`candidate_methods`) with the lowest cross-validated log-loss, refitted on
    all its validation records; ``selection`` records the counts and losses behind each choice.
    """
    val_true = np.asarray(val_true, dtype=np.float64).reshape(len(val_true), -1)
    val_score = np.asarray(val_score, dtype=np.float64).reshape(val_true.shape)
    labels = [str(label) for label in labels]
    if len(labels) != val_true.shape[1]:
        raise ValueError(f"{len(labels)} label names for {val_true.shape[1]} label columns")
    groups = None if patient_ids is None else np.asarray(patient_ids)
    calibrators, selection = [], {}
    for j, label in enumerate(labels):
        known = ~np.isnan(val_true[:, j])
        y, p = val_true[known, j], val_score[known, j]
        n_pos, n_neg = int(np.sum(y == 1)), int(np.sum(y == 0))
        methods = candidate_methods(n_pos, n_neg)
        losses = cv_log_loss(y, p, methods, None if groups is None else groups[known], seed=seed) \
            if len(methods) > 1 else {}
        # Lowest held-out log-loss; METHODS is ordered simplest first, so min() keeps the simpler one on ties.
        chosen = min(losses, key=lambda m: (round(losses[m], 12), METHODS.index(m))) if losses else "identity"
        calibrators.append(_FITTERS[chosen](y, p))
        selection[label] = {"n_pos": n_pos, "n_neg": n_neg, "candidates": list(methods), "cv_log_loss": losses,
                            "chosen": chosen}
    return Calibration(labels, calibrators, selection)


# --- metrics -------------------------------------------------------------------------------------------------------
def brier_score(y, p) -> float:
    """Mean squared difference between probability and outcome (0 = perfect; prevalence x (1 - prevalence) for a
    constant prediction of the prevalence)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    return float(np.mean((p - y) ** 2)) if y.size else float("nan")


def equal_mass_bins(p, n_bins: int = ECE_BINS) -> np.ndarray:
    """Bin index (0..n_bins-1) of each prediction: sorted predictions cut into ``n_bins`` groups of (nearly) equal
    size; tied predictions may straddle a cut (each keeps its position in the stable sort)."""
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    bins = np.empty(p.size, dtype=int)
    bins[order] = np.minimum((np.arange(p.size) * n_bins) // max(p.size, 1), n_bins - 1)
    return bins


@dataclass
class ReliabilityCurve:
    """Per equal-mass bin: mean predicted probability, observed fraction of positives and number of predictions."""

    mean_predicted: np.ndarray
    fraction_positive: np.ndarray
    counts: np.ndarray


def reliability_curve(y, p, n_bins: int = ECE_BINS, strategy: str = "quantile",
                      min_count: int = 1) -> ReliabilityCurve:
    """The points of a reliability diagram: ``strategy="quantile"`` uses equal-mass bins (as the ECE does),
    ``"uniform"`` equal-width bins over [0, 1] (what a diagram shows best when most predictions crowd near 0); bins
    with fewer than ``min_count`` predictions are dropped."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if strategy == "quantile":
        bins = equal_mass_bins(p, n_bins)
    elif strategy == "uniform":
        bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    else:
        raise ValueError(f"unknown binning strategy {strategy!r}; use 'quantile' or 'uniform'")
    counts = np.bincount(bins, minlength=n_bins).astype(float)
    filled = counts >= max(min_count, 1)
    mean_p = np.bincount(bins, weights=p, minlength=n_bins)[filled] / counts[filled]
    frac = np.bincount(bins, weights=y, minlength=n_bins)[filled] / counts[filled]
    return ReliabilityCurve(mean_p, frac, counts[filled])


def expected_calibration_error(y, p, n_bins: int = ECE_BINS) -> float:
    """ECE: the count-weighted mean |observed fraction - mean predicted probability| over equal-mass bins."""
    y = np.asarray(y, dtype=np.float64)
    if y.size == 0:
        return float("nan")
    curve = reliability_curve(y, p, n_bins)
    return float(np.sum(curve.counts * np.abs(curve.fraction_positive - curve.mean_predicted)) / y.size)


def calibration_slope_intercept(y, p) -> tuple[float, float]:
    """Slope and intercept of the logistic recalibration fit ``logit P(y=1) = intercept + slope * logit(p)`` (maximum
    likelihood; NaN without both classes). Calibrated: slope 1, intercept 0; slope < 1: over-confident."""
    y = np.asarray(y, dtype=np.float64)
    if np.sum(y == 1) == 0 or np.sum(y == 0) == 0:
        return float("nan"), float("nan")
    slope, intercept = _logistic_fit(logit(p), y, positive_slope=False)
    return slope, intercept


def calibration_metrics(y, p, n_bins: int = ECE_BINS) -> dict[str, float]:
    """Brier score, ECE (equal-mass bins), calibration slope and intercept of one label's known records."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    known = ~np.isnan(y)
    y, p = y[known], p[known]
    slope, intercept = calibration_slope_intercept(y, p)
    return {"brier": brier_score(y, p), "ece": expected_calibration_error(y, p, n_bins),
            "calibration_slope": slope, "calibration_intercept": intercept}


def pooled_calibration_metrics(y_true, y_score, n_bins: int = ECE_BINS) -> dict[str, float]:
    """:func:`calibration_metrics` over every known (record, label) pair together."""
    y_true = np.asarray(y_true, dtype=np.float64)
    known = ~np.isnan(y_true)
    return calibration_metrics(y_true[known], np.asarray(y_score, dtype=np.float64)[known], n_bins)
