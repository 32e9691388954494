"""Scoring a model that reads reduced lead sets: each set's probabilities, validation thresholds and test metrics.

A model with lead-presence inputs (``ModelInfo.lead_mask``) is scored on complete recordings read as each of its
lead sets (:func:`ecgfm.models.leadsets.read_as`: the set's leads, limb leads derived where the set derives them,
every other lead and its presence channel zero), which is what it sees when a record holding only those leads is
predicted. Each set gets its own thresholds, fitted on the validation records read the same way, since a model
reading lead I alone is less sure of itself than one reading twelve.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit
from torch import nn

from ecgfm.datasets import LabelledSet
from ecgfm.evaluation.metrics import confusion_counts, nan_median, per_label_auc, rates_from_counts
from ecgfm.evaluation.thresholds import choose_thresholds
from ecgfm.models.leadsets import model_lead_sets, read_as
from ecgfm.models.runner import TorchRunner, record_logits


def lead_set_probabilities(model: nn.Module, data: LabelledSet, lead_set: str, batch_size: int = 64) -> np.ndarray:
    """Probabilities ``(N, model labels)`` for ``data``'s records (preprocessed by the model's pipeline, complete
    recordings) read as ``lead_set``, with the model's windows and reading rule."""
    info = model.info
    if not info.lead_mask:
        raise ValueError("the model has no lead-presence inputs; it reads its full lead set only")
    sets = model_lead_sets(info)
    runner = TorchRunner(model)
    input_samples, stride, how = info.segment_rule()
    records = (read_as(data.signal(i), lead_set, info.leads, sets) for i in range(len(data)))
    return expit(np.stack(list(record_logits(runner, records, input_samples, stride, how, batch_size))))


def lead_set_thresholds(val_true: np.ndarray, val_probs: np.ndarray, labels: list[str],
                        rule: str = "youden") -> dict[str, float]:
    """Per-label thresholds of one lead set fitted on its validation probabilities (0.5 where none can be)."""
    values, _ = choose_thresholds(val_true, val_probs, rule)
    return {label: float(v) if np.isfinite(v) else 0.5 for label, v in zip(labels, values)}


def lead_set_metrics(model: nn.Module, val: LabelledSet, test: LabelledSet | None = None,
                     lead_sets: list[str] | None = None, min_positives: int = 5, rule: str = "youden") -> dict[str, Any]:
    """For each lead set (default: all of the model's): thresholds fitted on ``val`` and, on ``test`` (default:
    ``val`` itself), macro-AUC over the labels with >= ``min_positives`` positives, median AUC, and the median
    sensitivity and specificity at the set's own thresholds, with the per-label rows."""
    labels = list(model.info.labels)
    val = val.select_labels(labels)
    test = val if test is None else test.select_labels(labels)
    names = lead_sets or [name for name, _ in model_lead_sets(model.info)]
    scored = np.flatnonzero(np.nansum(test.Y == 1, axis=0) >= min_positives)
    result: dict[str, Any] = {}
    for name in names:
        val_probs = lead_set_probabilities(model, val, name)
        thresholds = lead_set_thresholds(val.Y, val_probs, labels, rule)
        probs = val_probs if test is val else lead_set_probabilities(model, test, name)
        y, p = test.Y[:, scored], probs[:, scored]
        auc = per_label_auc(y, p)
        rates = rates_from_counts(**confusion_counts(y, p, np.array([thresholds[labels[j]] for j in scored])))
        result[name] = {
            "macro_auc": float(np.nanmean(auc)), "median_auc": nan_median(auc),
            "median_sensitivity": nan_median(rates["sensitivity"]), "median_specificity": nan_median(rates["specificity"]),
            "labels_scored": len(scored), "thresholds": thresholds,
            "per_label": {labels[j]: {"auc": float(auc[k]), "sensitivity": float(rates["sensitivity"][k]),
                                      "specificity": float(rates["specificity"][k])} for k, j in enumerate(scored)},
        }
    return result
