"""Evaluate a model (shipped, checkpoint or fine-tuned) on a labelled dataset: score the validation and test splits,
fit thresholds on validation, and write the clinical report.

This is the glue behind ``ecgfm evaluate --model ...``: data loading comes from :func:`ecgfm.transfer.data.load_labelled`
(PTB-XL folds, an ingested store or a manifest), inference from :class:`ecgfm.inference.Predictor` (the model's own
preprocessing and sliding windows), statistics from :func:`ecgfm.evaluation.report.evaluate_predictions`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ecgfm.datasets.arrays import ArraySet
from ecgfm.evaluation.predictions import save_predictions


@dataclass
class ScoredSplit:
    """Labels, probabilities and ids of one split, as written to ``<split>_predictions.npz``."""

    arrays: ArraySet
    scores: np.ndarray


def score_arrays(predictor, arrays: ArraySet, batch_size: int = 64) -> np.ndarray:
    """Probabilities ``(N, labels)`` of already-preprocessed records (``arrays.X``) under ``predictor``."""
    chunks = [predictor.predict_proba(np.asarray(arrays.X[start:start + batch_size]))
              for start in range(0, len(arrays), batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros((0, len(predictor.labels)), np.float32)


def score_model(model: str | os.PathLike | None, *, ptbxl=None, store=None, manifest=None,
                labels: Sequence[str] | None = None, val_folds=(9,), test_folds=(10,), device: str = "cpu",
                progress: bool = True) -> tuple[dict[str, ScoredSplit], Any, dict[str, Any]]:
    """Score the ``val`` and ``test`` splits of a dataset with a model; returns ``({split: ScoredSplit}, info, source)``."""
    from ecgfm.inference.predictor import Predictor
    from ecgfm.transfer.data import load_labelled

    if set(val_folds) & set(test_folds):
        raise ValueError(f"validation folds {list(val_folds)} and test folds {list(test_folds)} overlap: thresholds "
                         "must be chosen on records the test does not score")
    predictor = Predictor.from_pretrained(None if model in (None, "pretrained") else model, device=device)
    info = predictor.info
    labels = list(labels) if labels else list(info.labels)
    unknown = [name for name in labels if name not in info.labels]
    if unknown:
        raise ValueError(f"the model does not predict {unknown}; it has {len(info.labels)} labels")
    data = load_labelled(info.labels, info, ptbxl=ptbxl, store=store, manifest=manifest,
                         train_folds=(), val_folds=val_folds, test_folds=test_folds, progress=progress)
    columns = [list(info.labels).index(name) for name in labels]
    scored = {}
    for split in ("val", "test"):
        part = data.part(split)
        if len(part) == 0:
            continue
        scored[split] = ScoredSplit(part.select_labels(labels), score_arrays(predictor, part)[:, columns])
    if "test" not in scored:
        raise ValueError("the dataset has no test records (check --test-folds or the manifest's split column)")
    return scored, info, data.source


def evaluate_model(model: str | os.PathLike | None, out_dir: str | os.PathLike, *, ptbxl=None, store=None,
                   manifest=None, labels: Sequence[str] | None = None, val_folds=(9,), test_folds=(10,),
                   thresholds="youden", min_test_positives: int = 1, device: str = "cpu", command: str | None = None,
                   config: dict[str, Any] | None = None, show_progress: bool = True, **stats: Any):
    """Score a model and write ``metrics.json``, ``metrics.csv``, ``report.html`` and the prediction files.

    Labels with fewer than ``min_test_positives`` test positives are left out of the report (the paper's convention of
    scoring only labels that the test set can measure); ``stats`` go to ``evaluate_predictions`` (``n_bootstrap``,
    ``seed``, ``level``, ``n_jobs``, ``progress`` callback).
    """
    from ecgfm.evaluation.report import evaluate_predictions

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scored, info, source = score_model(model, ptbxl=ptbxl, store=store, manifest=manifest, labels=labels,
                                       val_folds=val_folds, test_folds=test_folds, device=device,
                                       progress=show_progress)
    test = scored["test"]
    keep = [j for j, n in enumerate(np.nansum(test.arrays.Y, axis=0)) if n >= min_test_positives]
    names = [test.arrays.label_names[j] for j in keep]
    for split, part in scored.items():
        save_predictions(out_dir / f"{split}_predictions.npz", part.arrays.Y[:, keep], part.scores[:, keep], names,
                         record_ids=part.arrays.ids, patient_ids=part.arrays.patient_ids)
    val = scored.get("val")  # None: evaluate_predictions refuses rules that would be fitted on the test set
    config = {**(config or {}), "model": str(model or "pretrained"), "model_arch": info.arch,
              "data": source, "labels_scored": names, "min_test_positives": min_test_positives}
    return evaluate_predictions(test.arrays.Y[:, keep], test.scores[:, keep], names, out_dir,
                                val_true=None if val is None else val.arrays.Y[:, keep],
                                val_score=None if val is None else val.scores[:, keep],
                                patient_ids=test.arrays.patient_ids, thresholds=thresholds, command=command,
                                config=config, **stats)
