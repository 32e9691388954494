"""Operating thresholds chosen on the validation set (never the test set): Youden's J, sensitivity/specificity targets.

A rule is written as a short spec: ``"youden"`` (maximise sensitivity + specificity - 1), ``"sens>=0.9"`` (the
highest threshold reaching 90 % sensitivity, i.e. the best specificity with it), ``"spec>=0.95"`` (the lowest threshold
keeping 95 % specificity, i.e. the best sensitivity with it) or a number such as ``0.5`` (a fixed threshold, the same
for every label). The chosen threshold is one of the validation scores (or just above the highest) and a record is
called positive when ``score >= threshold`` (scikit-learn's ``roc_curve`` convention).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ecgfm.evaluation.metrics import degenerate_reason

_TARGET = re.compile(r"^\s*(sens(?:itivity)?|spec(?:ificity)?)\s*>=\s*([0-9]*\.?[0-9]+)\s*$", re.IGNORECASE)
#: Tolerance when comparing a reached rate (k / n) with the requested target, so 9/10 counts as reaching 0.9.
_RATE_TOL = 1e-12


@dataclass(frozen=True)
class ThresholdRule:
    """How to pick a label's operating threshold: ``kind`` in youden/sensitivity/specificity/fixed, plus its value."""

    kind: str
    value: float | None = None

    def __str__(self) -> str:
        if self.kind == "youden":
            return "youden"
        if self.kind == "fixed":
            return f"{self.value:g}"
        return f"{self.kind[:4]}>={self.value:g}"

    @property
    def needs_validation(self) -> bool:
        """Whether the rule is data-driven (must be fitted on a validation set) rather than a fixed number."""
        return self.kind != "fixed"


def parse_threshold_rule(spec: str | float | ThresholdRule) -> ThresholdRule:
    """Parse ``"youden"``, ``"sens>=0.9"``, ``"spec>=0.95"`` or a number into a :class:`ThresholdRule`."""
    if isinstance(spec, ThresholdRule):
        return spec
    if isinstance(spec, (int, float, np.floating)) and not isinstance(spec, bool):
        if not np.isfinite(spec):
            raise ValueError(f"fixed threshold must be finite, got {spec}")
        return ThresholdRule("fixed", float(spec))
    text = str(spec).strip()
    if text.lower() in ("youden", "j", "youden_j"):
        return ThresholdRule("youden")
    match = _TARGET.match(text)
    if match:
        kind = "sensitivity" if match.group(1).lower().startswith("sens") else "specificity"
        value = float(match.group(2))
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"threshold rule {text!r}: target must be in [0, 1]")
        return ThresholdRule(kind, value)
    try:
        return parse_threshold_rule(float(text))
    except ValueError:
        raise ValueError(
            f"unknown threshold rule {text!r}; use 'youden', 'sens>=0.9', 'spec>=0.95' or a number like 0.5"
        ) from None


def operating_points(y_true, y_score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All distinct ROC operating points, highest threshold first: ``(thresholds, sensitivity, specificity)``.

    The first point uses a threshold just above the highest score (nothing called positive; kept finite so it can be
    written to JSON), then every distinct score value, descending.
    """
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(y_score, dtype=float)
    known = ~np.isnan(y)
    y, s = y[known], s[known]
    values, inverse = np.unique(-s, return_inverse=True)
    pos = np.bincount(inverse, weights=(y == 1).astype(float), minlength=values.size)
    neg = np.bincount(inverse, weights=(y == 0).astype(float), minlength=values.size)
    tp = np.concatenate([[0.0], np.cumsum(pos)])
    fp = np.concatenate([[0.0], np.cumsum(neg)])
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity = tp / tp[-1]
        specificity = 1.0 - fp / fp[-1]
    above_all = np.nextafter(-values[0], np.inf) if values.size else np.inf
    return np.concatenate([[above_all], -values]), sensitivity, specificity


def choose_threshold(y_true, y_score, rule: str | float | ThresholdRule) -> tuple[float, str | None]:
    """Fit one label's threshold on validation data; returns ``(threshold, None)`` or ``(nan, reason)``."""
    rule = parse_threshold_rule(rule)
    if rule.kind == "fixed":
        return float(rule.value), None
    y = np.asarray(y_true, dtype=float)
    n_pos = int(np.sum(y == 1))
    n_neg = int(np.sum(y == 0))
    reason = degenerate_reason(n_pos, n_neg, split="validation")
    if reason is not None:
        return float("nan"), f"cannot fit threshold: {reason}"
    thresholds, sens, spec = operating_points(y, y_score)
    if rule.kind == "youden":
        # First maximum = highest threshold among ties, matching argmax over scikit-learn's roc_curve order.
        k = int(np.argmax(sens + spec - 1.0))
    elif rule.kind == "sensitivity":
        # Sensitivity rises as the threshold falls, so the first point reaching the target has the best specificity.
        k = int(np.argmax(sens >= rule.value - _RATE_TOL))
    else:
        # Specificity falls as the threshold falls: keep the last point still meeting it (best sensitivity).
        k = int(np.flatnonzero(spec >= rule.value - _RATE_TOL)[-1])
    return float(thresholds[k]), None


def choose_thresholds(val_true, val_score, rule: str | float | ThresholdRule) -> tuple[np.ndarray, list[str | None]]:
    """Fit every label's threshold on the validation arrays ``(N, L)``; returns thresholds ``(L,)`` and reasons."""
    val_true = np.asarray(val_true, dtype=float)
    val_score = np.asarray(val_score, dtype=float)
    if val_true.ndim == 1:
        val_true, val_score = val_true[:, None], val_score[:, None]
    thresholds = np.full(val_true.shape[1], np.nan)
    reasons: list[str | None] = []
    for j in range(val_true.shape[1]):
        known = ~np.isnan(val_true[:, j])
        thresholds[j], reason = choose_threshold(val_true[known, j], val_score[known, j], rule)
        reasons.append(reason)
    return thresholds, reasons
