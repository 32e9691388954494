"""Operating thresholds chosen on the validation set (never the test set): Youden's J, F1, sensitivity, specificity
and positive-predictive-value targets.

A rule is written as a short spec:

* ``"youden"``: maximise sensitivity + specificity - 1 (suits screening one label; for rare labels in a findings list
  it flags many healthy ECGs, since a specificity of 0.9 on a 1% label means ~10 false alarms per true finding);
* ``"f1"``: maximise F1, the harmonic mean of sensitivity and PPV (balances missed findings against false ones);
* ``"ppv>=0.6"``: the lowest threshold whose PPV reaches 60 %, i.e. the best sensitivity with it. PPV is not monotone
  in the threshold, so every operating point is checked. When no threshold reaches the target on the validation set
  the rule falls back to ``sens>=PPV_FALLBACK_SENSITIVITY`` (the highest threshold still finding half the positives):
  the label is kept in the findings list rather than silenced, and the fallback is recorded;
* ``"sens>=0.9"``: the highest threshold reaching 90 % sensitivity, i.e. the best specificity with it;
* ``"spec>=0.95"``: the lowest threshold keeping 95 % specificity, i.e. the best sensitivity with it;
* a number such as ``0.5``: a fixed threshold, the same for every label.

The chosen threshold is one of the validation scores (or just above the highest) and a record is called positive when
``score >= threshold`` (scikit-learn's ``roc_curve`` convention); ties between operating points go to the highest
threshold (fewer flags). :func:`fit_thresholds` adds a fallback for labels with too few validation positives to fit
any rule, and records per label which rule was applied (what a released model stores beside its weights).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ecgfm.evaluation.metrics import degenerate_reason

_TARGET = re.compile(r"^\s*(sens(?:itivity)?|spec(?:ificity)?|ppv|precision)\s*>=\s*([0-9]*\.?[0-9]+)\s*$",
                     re.IGNORECASE)
_KINDS = {"sens": "sensitivity", "sensitivity": "sensitivity", "spec": "specificity", "specificity": "specificity",
          "ppv": "ppv", "precision": "ppv"}
#: Tolerance when comparing a reached rate (k / n) with the requested target, so 9/10 counts as reaching 0.9.
_RATE_TOL = 1e-12
#: ``ppv>=x`` falls back to ``sens>=`` this when no validation threshold reaches PPV x (see the module docstring).
PPV_FALLBACK_SENSITIVITY = 0.5
#: :func:`fit_thresholds`: labels with fewer validation positives than this get the fixed fallback threshold. With 1-4
#: positives one record moves sensitivity by 25-100% and PPV by as much: a fitted threshold would be noise.
MIN_VALIDATION_POSITIVES = 5
#: ... and this fallback: on calibrated probabilities, "flag when more likely than not".
FALLBACK_THRESHOLD = 0.5


@dataclass(frozen=True)
class ThresholdRule:
    """How to pick a label's operating threshold: ``kind`` in youden/f1/sensitivity/specificity/ppv/fixed, plus its
    value."""

    kind: str
    value: float | None = None

    def __str__(self) -> str:
        if self.kind in ("youden", "f1"):
            return self.kind
        if self.kind == "fixed":
            return f"{self.value:g}"
        return f"{self.kind[:4]}>={self.value:g}"

    @property
    def needs_validation(self) -> bool:
        """Whether the rule is data-driven (must be fitted on a validation set) rather than a fixed number."""
        return self.kind != "fixed"


def parse_threshold_rule(spec: str | float | ThresholdRule) -> ThresholdRule:
    """Parse ``"youden"``, ``"f1"``, ``"ppv>=0.6"``, ``"sens>=0.9"``, ``"spec>=0.95"`` or a number into a
    :class:`ThresholdRule`."""
    if isinstance(spec, ThresholdRule):
        return spec
    if isinstance(spec, (int, float, np.floating)) and not isinstance(spec, bool):
        if not np.isfinite(spec):
            raise ValueError(f"fixed threshold must be finite, got {spec}")
        return ThresholdRule("fixed", float(spec))
    text = str(spec).strip()
    if text.lower() in ("youden", "j", "youden_j"):
        return ThresholdRule("youden")
    if text.lower() in ("f1", "f1-optimal", "f1_optimal"):
        return ThresholdRule("f1")
    match = _TARGET.match(text)
    if match:
        kind = _KINDS[match.group(1).lower()]
        value = float(match.group(2))
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"threshold rule {text!r}: target must be in [0, 1]")
        return ThresholdRule(kind, value)
    try:
        return parse_threshold_rule(float(text))
    except ValueError:
        raise ValueError(
            f"unknown threshold rule {text!r}; use 'youden', 'f1', 'ppv>=0.6', 'sens>=0.9', 'spec>=0.95' or a number "
            "like 0.5"
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


def _fit(y, s, rule: ThresholdRule) -> tuple[float, str | None, str | None]:
    """One label's threshold, the rule applied and a note (``(nan, None, reason)`` when it cannot be fitted)."""
    n_pos, n_neg = int(np.sum(y == 1)), int(np.sum(y == 0))
    reason = degenerate_reason(n_pos, n_neg, split="validation")
    if reason is not None:
        return float("nan"), None, f"cannot fit threshold: {reason}"
    thresholds, sens, spec = operating_points(y, s)
    if rule.kind == "youden":
        # First maximum = highest threshold among ties, matching argmax over scikit-learn's roc_curve order.
        return float(thresholds[int(np.argmax(sens + spec - 1.0))]), str(rule), None
    if rule.kind == "sensitivity":
        # Sensitivity rises as the threshold falls, so the first point reaching the target has the best specificity.
        return float(thresholds[int(np.argmax(sens >= rule.value - _RATE_TOL))]), str(rule), None
    if rule.kind == "specificity":
        # Specificity falls as the threshold falls: keep the last point still meeting it (best sensitivity).
        return float(thresholds[int(np.flatnonzero(spec >= rule.value - _RATE_TOL)[-1])]), str(rule), None
    tp, fp = sens * n_pos, (1.0 - spec) * n_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        ppv = tp / (tp + fp)  # NaN at the first point, where nothing is called positive
    if rule.kind == "f1":
        f1 = 2 * tp / (2 * tp + fp + (n_pos - tp))
        return float(thresholds[int(np.argmax(f1))]), str(rule), None
    reached = np.flatnonzero(ppv >= rule.value - _RATE_TOL)
    if reached.size == 0:
        fallback = ThresholdRule("sensitivity", PPV_FALLBACK_SENSITIVITY)
        value, _, _ = _fit(y, s, fallback)
        return value, str(fallback), f"PPV {rule.value:g} not reached on validation (best {np.nanmax(ppv):.2f}); " \
                                    f"fell back to {fallback}"
    # The most sensitive point meeting the target; among equally sensitive ones the highest threshold (fewest flags).
    best = reached[np.argmax(sens[reached])]
    return float(thresholds[int(np.argmax(sens >= sens[best]))]), str(rule), None


def choose_threshold(y_true, y_score, rule: str | float | ThresholdRule) -> tuple[float, str | None]:
    """Fit one label's threshold on validation data; returns ``(threshold, None)`` or ``(nan, reason)``."""
    rule = parse_threshold_rule(rule)
    if rule.kind == "fixed":
        return float(rule.value), None
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(y_score, dtype=float)
    known = ~np.isnan(y)
    value, _, note = _fit(y[known], s[known], rule)
    return value, (note if not np.isfinite(value) else None)


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


@dataclass
class FittedThresholds:
    """Per-label thresholds with the rule each one follows: what a model stores to produce its findings list.

    ``rules[j]`` is the rule actually applied to label ``j`` (the requested one, its PPV fallback, or the fixed
    fallback for labels with too few validation positives); ``notes[j]`` says why when it differs.
    """

    labels: list[str]
    thresholds: np.ndarray
    rules: list[str]
    notes: list[str | None]
    rule: str

    def as_mapping(self) -> dict[str, float]:
        """``{label: threshold}``, the form :func:`ecgfm.evaluation.evaluate.resolve_thresholds` accepts."""
        return {label: float(value) for label, value in zip(self.labels, self.thresholds)}

    def to_dict(self) -> dict:
        """Plain JSON: the requested rule and, per label, its threshold, applied rule and note."""
        return {"rule": self.rule, "labels": {
            label: {"threshold": float(value), "rule": applied, **({"note": note} if note else {})}
            for label, value, applied, note in zip(self.labels, self.thresholds, self.rules, self.notes)}}

    @classmethod
    def from_dict(cls, data: dict) -> "FittedThresholds":
        labels = list(data["labels"])
        entries = [data["labels"][label] for label in labels]
        return cls(labels, np.array([float(e["threshold"]) for e in entries]), [e["rule"] for e in entries],
                   [e.get("note") for e in entries], data["rule"])


def fit_thresholds(val_true, val_score, labels, rule: str | float | ThresholdRule = "f1", *,
                   min_positives: int = MIN_VALIDATION_POSITIVES,
                   fallback: float = FALLBACK_THRESHOLD) -> FittedThresholds:
    """Fit a findings-list threshold per label on validation ``(N, L)`` arrays, never leaving a label without one.

    Labels with fewer than ``min_positives`` validation positives (or no negatives) get the fixed ``fallback``;
    ``ppv>=x`` labels that cannot reach x fall back as :func:`choose_threshold` describes. Each label's applied rule
    and the reason for any fallback are kept.
    """
    rule = parse_threshold_rule(rule)
    val_true = np.asarray(val_true, dtype=float).reshape(len(val_true), -1)
    val_score = np.asarray(val_score, dtype=float).reshape(val_true.shape)
    labels = [str(label) for label in labels]
    if len(labels) != val_true.shape[1]:
        raise ValueError(f"{len(labels)} label names for {val_true.shape[1]} label columns")
    values, applied, notes = np.full(len(labels), float(fallback)), [], []
    for j in range(len(labels)):
        known = ~np.isnan(val_true[:, j])
        y, s = val_true[known, j], val_score[known, j]
        n_pos = int(np.sum(y == 1))
        if rule.kind == "fixed":
            values[j], rule_j, note = rule.value, str(rule), None
        elif n_pos < min_positives or n_pos == y.size:
            rule_j = f"{fallback:g}"
            note = f"{n_pos} validation positives (< {min_positives}) or no negatives: fixed {fallback:g}"
        else:
            values[j], rule_j, note = _fit(y, s, rule)
        applied.append(rule_j)
        notes.append(note)
    return FittedThresholds(labels, values, applied, notes, str(rule))
