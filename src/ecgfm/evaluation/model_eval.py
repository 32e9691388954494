"""Evaluate a model on labelled data: score its validation and test records, fit thresholds on validation (or use
the model's own), and write the clinical report.

This is the glue behind ``ecgfm evaluate --model ... --data ...``: data come as a
:class:`~ecgfm.datasets.LabelledSet` (any source), scores from the model run as prediction runs it (its windows, and
records of any length read over their whole length), statistics from
:func:`ecgfm.evaluation.report.evaluate_predictions`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.special import expit
from torch import nn

from ecgfm.datasets import LabelledSet
from ecgfm.evaluation.predictions import save_predictions
from ecgfm.models import load
from ecgfm.models.runner import TorchRunner, record_logits


def as_model(model: nn.Module | str | os.PathLike | None, device: str = "cpu") -> nn.Module:
    """A loaded model as is, else :func:`ecgfm.models.load` of the name or path."""
    return model if isinstance(model, nn.Module) else load(model, device=device)


def score(model: nn.Module, data: LabelledSet, device: str = "cpu", batch_size: int = 64) -> np.ndarray:
    """The model's probabilities ``(N, model labels)`` for every record of ``data`` (preprocessed by its pipeline)."""
    run = TorchRunner(model, device)
    input_samples, stride, how = model.info.segment_rule()
    rows = list(record_logits(run, (data.signal(i) for i in range(len(data))), input_samples, stride, how,
                              batch_size))
    return expit(np.stack(rows)).astype(np.float32) if rows else np.zeros((0, model.info.num_labels), np.float32)


def evaluate_model(model: nn.Module | str | os.PathLike | None, data: LabelledSet, out_dir: str | os.PathLike, *,
                   labels: Sequence[str] | None = None, thresholds: Any = "youden", min_test_positives: int = 1,
                   device: str = "cpu", command: str | None = None, config: dict[str, Any] | None = None,
                   **stats: Any):
    """Score ``data``'s val and test records and write ``metrics.json``, ``metrics.csv``, ``report.html`` and the
    prediction files (``<split>_predictions.npz``).

    ``thresholds``: a rule fitted on the validation records (``"youden"``, ``"sens>=0.9"`` ...), a number, or
    ``"model"`` for the thresholds stored with the model (what external validation uses). Labels with fewer than
    ``min_test_positives`` test positives are left out (the paper's convention of scoring only what the test set can
    measure); ``stats`` go to ``evaluate_predictions`` (``n_bootstrap``, ``seed``, ``level``, ``n_jobs``,
    ``progress``).
    """
    from ecgfm.evaluation.report import evaluate_predictions

    model = as_model(model, device)
    info = model.info
    names = [n for n in (labels or info.labels) if n in data.labels]
    unknown = [n for n in (labels or ()) if n not in info.labels]
    if unknown:
        raise ValueError(f"the model does not predict {unknown}; it has {len(info.labels)} labels")
    test, val = data.part("test"), data.part("val")
    if not len(test):
        raise ValueError("the data have no test records (check --test-folds or the manifest's split column)")
    scored = {"test": test}
    if len(val) and thresholds != "model":
        scored["val"] = val
    columns = [info.labels.index(n) for n in names]
    probs = {split: score(model, part, device)[:, columns] for split, part in scored.items()}
    kept = [j for j, n in enumerate(np.nansum(test.select_labels(names).Y, axis=0)) if n >= min_test_positives]
    names = [names[j] for j in kept]
    out_dir = Path(out_dir)
    for split, part in scored.items():
        part = part.select_labels(names)
        probs[split] = probs[split][:, kept]
        save_predictions(out_dir / f"{split}_predictions.npz", part.Y, probs[split], names, record_ids=part.ids,
                         patient_ids=part.patient_ids)
    if thresholds == "model":
        thresholds = {n: info.thresholds.get(n, 0.5) for n in names}
    val_part = scored.get("val")
    config = {**(config or {}), "model_arch": info.arch, "data": data.source, "labels_scored": names,
              "min_test_positives": min_test_positives}
    return evaluate_predictions(
        test.select_labels(names).Y, probs["test"], names, out_dir,
        val_true=None if val_part is None else val_part.select_labels(names).Y,
        val_score=probs.get("val"), patient_ids=test.patient_ids, thresholds=thresholds, command=command,
        config=config, **stats)
