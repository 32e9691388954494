"""Scoring a model that reads reduced lead sets: each set's probabilities, validation thresholds and test metrics.

A model with lead-presence inputs (``ModelInfo.lead_mask``) is scored on complete recordings read as each of its
lead sets (:func:`ecgfm.models.leadsets.read_as`: the set's leads, limb leads derived where the set derives them,
every other lead and its presence channel zero), which is what it sees when a record holding only those leads is
predicted. Each set gets its own thresholds, fitted on the validation records read the same way, since a model
reading lead I alone is less sure of itself than one reading twelve.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy.special import expit
from torch import nn

from ecgfm.datasets import LabelledSet
from ecgfm.evaluation.evaluate import evaluate_scores
from ecgfm.evaluation.thresholds import fit_thresholds
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


def lead_set_metrics(model: nn.Module, val: LabelledSet, test: LabelledSet | None = None,
                     lead_sets: list[str] | None = None, min_positives: int = 5, rule: str = "youden",
                     calibrate: Callable[[np.ndarray], np.ndarray] | None = None,
                     n_bootstrap: int = 1000) -> dict[str, Any]:
    """For each lead set (default: all of the model's): thresholds by ``rule`` fitted on ``val`` read as the set
    (on ``calibrate``'d probabilities when given: a released model's findings are on that scale) and, on ``test``
    (default: ``val`` itself), over the labels with >= ``min_positives`` positives: macro-AUC and median AUC with
    patient-bootstrap 95% CIs, the median sensitivity and specificity at the set's own thresholds, per-label rows."""
    labels = list(model.info.labels)
    calibrate = calibrate or (lambda p: p)
    val = val.select_labels(labels)
    test = val if test is None else test.select_labels(labels)
    names = lead_sets or [name for name, _ in model_lead_sets(model.info)]
    scored = np.flatnonzero(np.nansum(test.Y == 1, axis=0) >= min_positives)
    result: dict[str, Any] = {}
    for name in names:
        val_probs = calibrate(lead_set_probabilities(model, val, name))
        thresholds = fit_thresholds(val.Y, val_probs, labels, rule).as_mapping()
        probs = val_probs if test is val else calibrate(lead_set_probabilities(model, test, name))
        evaluated = evaluate_scores(test.Y[:, scored], probs[:, scored], [labels[j] for j in scored],
                                    thresholds={labels[j]: thresholds[labels[j]] for j in scored},
                                    patient_ids=test.patient_ids, n_bootstrap=n_bootstrap)
        summary = evaluated.summary
        result[name] = {
            "macro_auc": summary["macro_auc"], "median_auc": summary["median_auc"],
            "median_sensitivity": summary["median_sensitivity"]["value"],
            "median_specificity": summary["median_specificity"]["value"],
            "labels_scored": len(scored), "thresholds": thresholds,
            "per_label": {row["label"]: {k: row[k] for k in ("auc", "auc_ci_low", "auc_ci_high", "sensitivity",
                                                             "specificity")} for row in evaluated.labels},
        }
    return result
