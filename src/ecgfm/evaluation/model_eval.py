"""Evaluate a model on labelled data: score its validation and test records, fit thresholds on validation (or use
the model's own), and write the clinical report.

This is the glue behind ``ecgfm evaluate --model ... --data ...``: data come as a
:class:`~ecgfm.datasets.LabelledSet` (any source), scores from the model run as prediction runs it (its windows, and
records of any length read over their whole length), statistics from
:func:`ecgfm.evaluation.report.evaluate_predictions`.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.special import expit
from torch import nn

from ecgfm.datasets import LabelledSet
from ecgfm.errors import ECGError
from ecgfm.evaluation.calibration import Calibration
from ecgfm.evaluation.predictions import save_predictions
from ecgfm.models import load
from ecgfm.models.runner import TorchRunner, record_logits


def as_model(model: nn.Module | str | os.PathLike | None, device: str = "cpu") -> nn.Module:
    """A loaded model as is, else :func:`ecgfm.models.load` of the name or path."""
    return model if isinstance(model, nn.Module) else load(model, device=device)


def score(model: nn.Module, data: LabelledSet, device: str = "cpu", batch_size: int = 64, workers: int = 2,
          failures: dict[int, str] | None = None) -> np.ndarray:
    """The model's probabilities ``(N, model labels)`` for every record of ``data`` (preprocessed by its pipeline).

    Records are read ``workers`` ahead in threads while the model runs (for sets whose signals are read from files
    on demand), so memory stays bounded. A record that cannot be read gets a row of NaN and its reason in
    ``failures`` (position -> reason) when a dict is given; otherwise the error is raised.
    """
    run = TorchRunner(model, device)
    input_samples, stride, how = model.info.segment_rule()
    order: list[int] = []

    def readable():
        for i, signal in _prefetched(data, workers):
            if isinstance(signal, Exception):
                if failures is None:
                    raise signal
                failures[i] = str(signal)
                continue
            order.append(i)
            yield signal

    probs = np.full((len(data), model.info.num_labels), np.nan, np.float32)
    for k, logits in enumerate(record_logits(run, readable(), input_samples, stride, how, batch_size)):
        probs[order[k]] = expit(logits)
    return probs


def _prefetched(data: LabelledSet, workers: int):
    """``(position, signal or the exception reading it)`` for every record, in order, read a few ahead."""
    def read(i: int):
        try:
            return data.signal(i)
        except (ECGError, ValueError, OSError) as exc:
            return exc

    if workers <= 0:
        yield from ((i, read(i)) for i in range(len(data)))
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="ecgfm-eval") as pool:
        pending: deque = deque()
        for i in range(len(data)):
            pending.append((i, pool.submit(read, i)))
            if len(pending) > 4 * workers:
                j, future = pending.popleft()
                yield j, future.result()
        while pending:
            j, future = pending.popleft()
            yield j, future.result()


def evaluate_model(model: nn.Module | str | os.PathLike | None, data: LabelledSet, out_dir: str | os.PathLike, *,
                   labels: Sequence[str] | None = None, thresholds: Any = "youden", min_test_positives: int = 1,
                   device: str = "cpu", command: str | None = None, config: dict[str, Any] | None = None,
                   **stats: Any):
    """Score ``data``'s val and test records (calibrated probabilities when the model stores a calibration; the raw
    ones beside them in the report's calibration section) and write ``metrics.json``, ``metrics.csv``, ``report.html`` and the
    prediction files (``<split>_predictions.npz``).

    ``thresholds``: a rule fitted on the validation records (``"youden"``, ``"sens>=0.9"`` ...), a number, a mapping
    label -> threshold, or ``"model"`` for the thresholds stored with the model: external validation, for which the
    report also sets each label's AUC beside the model's own test AUC (the generalisation gap) and the observed
    prevalence beside the predicted one. Labels with fewer than ``min_test_positives`` test positives, or unknown in
    every record, are left out (the paper's convention of scoring only what the test set can measure); unreadable
    records are left out and listed. ``stats`` go to ``evaluate_predictions`` (``n_bootstrap``, ``seed``, ``level``,
    ``n_jobs``, ``progress``).
    """
    from ecgfm.evaluation.report import evaluate_predictions

    model = as_model(model, device)
    info = model.info
    unknown = [n for n in (labels or ()) if n not in info.labels]
    if unknown:
        raise ValueError(f"the model does not predict {unknown}; it has {len(info.labels)} labels")
    names = [n for n in (labels or info.labels) if n in data.labels]
    external = isinstance(thresholds, str) and thresholds == "model"
    parts = {split: data.part(split) for split in ("test", "val") if not (external and split == "val")}
    if not len(parts["test"]):
        raise ValueError("the data have no test records (check --test-folds or the manifest's split column)")
    scored, unreadable = {}, {}
    calibration, raw_scores = Calibration.of(info), {}
    columns = [info.labels.index(n) for n in names]
    for split, part in parts.items():
        if not len(part):
            continue
        failures: dict[int, str] = {}
        raw = score(model, part, device, failures=failures)
        unreadable.update({str(part.ids[i]): reason for i, reason in failures.items()})
        keep = np.setdiff1d(np.arange(len(part)), list(failures))
        raw_scores[split] = raw[keep][:, columns]
        scored[split] = (part.subset(keep).select_labels(names), calibration.apply(raw[keep])[:, columns])
    test, test_probs = scored["test"]
    context = external_context(info, test, test_probs) if external else None
    positives = np.nansum(test.Y == 1, axis=0)
    kept = [j for j, n in enumerate(positives) if n >= min_test_positives]
    names = [names[j] for j in kept]
    out_dir = Path(out_dir)
    for split, (part, probs) in scored.items():
        scored[split] = (part.select_labels(names), probs[:, kept])
        raw_scores[split] = raw_scores[split][:, kept]
        part, probs = scored[split]
        save_predictions(out_dir / f"{split}_predictions.npz", part.Y, probs, names, record_ids=part.ids,
                         patient_ids=part.patient_ids)
    test, test_probs = scored["test"]
    if external:
        thresholds = {n: float(info.thresholds.get(n, 0.5)) for n in names}
    config = {**(config or {}), "model_arch": info.arch, "data": data.source, "labels_scored": names,
              "min_test_positives": min_test_positives, "unreadable": dict(list(unreadable.items())[:100]),
              "n_unreadable": len(unreadable)}
    if external:
        config["external"] = context
    val, val_probs = scored.get("val", (None, None))
    calibrated = "calibration" in info.extra
    return evaluate_predictions(test.Y, test_probs, names, out_dir, val_true=None if val is None else val.Y,
                                val_score=val_probs, patient_ids=test.patient_ids, thresholds=thresholds,
                                command=command, config=config,
                                raw_score=raw_scores["test"] if calibrated else None, **stats)


def external_context(info, test: LabelledSet, probs: np.ndarray) -> dict[str, Any]:
    """What external validation adds, for every label of the model: positives here (None when the source cannot
    express the label), the model's own (internal) test AUC, observed prevalence against the mean predicted
    probability and the share flagged at the model's threshold; and, for Challenge data, the SNOMED-CT codes that map
    to no label of the model's vocabulary."""
    thresholds = {n: float(info.thresholds.get(n, 0.5)) for n in test.labels}
    internal = (info.metrics.get("test") or {}).get("per_label", {})
    rows = []
    for j, name in enumerate(test.labels):
        known = ~np.isnan(test.Y[:, j])
        rows.append({"label": name, "n_pos": int(np.sum(test.Y[known, j] == 1)) if known.any() else None,
                     "n_known": int(known.sum()),
                     "internal_auc": internal.get(name, {}).get("auc"),
                     "observed_prevalence": float(np.mean(test.Y[known, j])) if known.any() else None,
                     "mean_predicted_probability": float(np.mean(probs[known, j])) if known.any() else None,
                     "flagged_fraction": float(np.mean(probs[known, j] >= thresholds[name])) if known.any() else None})
    return {"labels": rows, "unmapped_snomed": test.source.get("unmapped_snomed", {}),
            "internal_test": (info.metrics.get("test") or {}).get("split")}
