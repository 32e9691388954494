"""Labelled data for fine-tuning and comparisons, preprocessed exactly as the foundation model expects.

Three sources give the same :class:`LabelledData` (arrays + a patient-level ``train``/``val``/``test`` split per record):

- a PTB-XL folder (labels are SCP statements; splits from the stratified folds: 1-8 train, 9 val, 10 test unless
  other folds are named);
- an ingested store (``ecgfm ingest``), whose preprocessing must equal the foundation's;
- a manifest (CSV/Parquet naming ECG files, patients, splits and labels; see :mod:`ecgfm.datasets.manifest`): every
  file is read and preprocessed with the foundation's pipeline; unreadable files are listed and skipped.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ecgfm.datasets.arrays import ArraySet
from ecgfm.models import ModelInfo
from ecgfm.signal import Pipeline

SPLITS = ("train", "val", "test")


@dataclass
class LabelledData:
    """Arrays for the requested labels and each record's split (``train``/``val``/``test``, patient-disjoint)."""

    arrays: ArraySet
    split: np.ndarray
    source: dict[str, Any] = field(default_factory=dict)

    def part(self, *names: str) -> ArraySet:
        """The records of the named splits."""
        return self.arrays.subset(np.isin(self.split, names))


def foundation_pipeline(info: ModelInfo) -> Pipeline:
    """The foundation's preprocessing (its stored spec, or the default pipeline at its rate)."""
    if info.preprocess:
        return Pipeline.from_dict(info.preprocess)
    return Pipeline.default(fs=info.fs or 100.0)


def ptbxl_splits(folds: np.ndarray, train_folds: Sequence[int], val_folds: Sequence[int],
                 test_folds: Sequence[int]) -> np.ndarray:
    """``train``/``val``/``test`` per record from PTB-XL folds (records of other folds get ``""`` and are unused)."""
    split = np.full(len(folds), "", dtype=object)
    for name, chosen in (("train", train_folds), ("val", val_folds), ("test", test_folds)):
        split[np.isin(folds, list(chosen))] = name
    return split


def load_labelled(labels: Sequence[str], info: ModelInfo, *, ptbxl: str | Path | None = None,
                  store: str | Path | None = None, manifest: str | Path | None = None, task: str = "all",
                  train_folds: Sequence[int] = tuple(range(1, 9)), val_folds: Sequence[int] = (9,),
                  test_folds: Sequence[int] = (10,), progress: bool = True) -> LabelledData:
    """Load ``labels`` from exactly one source, preprocessed with the foundation's pipeline (see module docstring)."""
    given = [name for name, value in (("ptbxl", ptbxl), ("store", store), ("manifest", manifest)) if value is not None]
    if len(given) > 1:
        raise ValueError(f"give one data source, not {' and '.join(given)}")
    labels = list(labels)
    if not labels:
        raise ValueError("name at least one label")
    pipeline = foundation_pipeline(info)
    if store is not None:
        return _from_store(Path(store), labels, pipeline)
    if manifest is not None:
        return _from_manifest(Path(manifest), labels, pipeline, progress)
    from ecgfm.datasets.ptbxl import PTBXL

    root = PTBXL(ptbxl)  # None -> $ECGFM_PTBXL_DIR
    arrays = root.load_arrays(fs=pipeline.fs or info.fs or 100.0, task=task, labels=labels, pipeline=pipeline,
                              progress=progress)
    split = ptbxl_splits(arrays.folds, train_folds, val_folds, test_folds)
    return LabelledData(arrays, split, {"kind": "ptbxl", "root": str(root.root), "task": task,
                                        "train_folds": list(train_folds), "val_folds": list(val_folds),
                                        "test_folds": list(test_folds)})


def _from_store(path: Path, labels: list[str], pipeline: Pipeline) -> LabelledData:
    from ecgfm.datasets.store import ECGStore

    store = ECGStore(path)
    if store.spec.pipeline != pipeline.to_dict():
        raise ValueError(f"{path}: the store was preprocessed with {store.spec.pipeline}, but the foundation expects "
                         f"{pipeline.to_dict()}; ingest it again with the foundation's preprocessing")
    arrays = store.to_arrayset(labels=labels)
    split = store.index["split"].to_numpy().astype(object)
    return LabelledData(arrays, split, {"kind": "store", "path": str(path)})


def _from_manifest(path: Path, labels: list[str], pipeline: Pipeline, progress: bool) -> LabelledData:
    from ecgfm.datasets.manifest import read_manifest
    from ecgfm.datasets.ptbxl import read_preprocessed

    manifest = read_manifest(path)
    missing = [name for name in labels if name not in manifest.label_names]
    if missing:
        raise ValueError(f"{path}: labels {missing} are not in the manifest (it has {manifest.label_names[:20]})")
    table = manifest.records
    signals, failures = read_preprocessed(list(table["path"]), pipeline, progress=progress,
                                          desc=f"reading {path.name}")
    if failures:
        listed = "; ".join(f"{name}: {reason}" for name, reason in list(failures.items())[:10])
        warnings.warn(f"{len(failures)} of {len(table)} ECG files could not be read and are skipped: {listed}",
                      stacklevel=2)
    ok = np.array([x is not None for x in signals])
    if not ok.any():
        raise ValueError(f"{path}: none of the {len(table)} ECG files could be read")
    table = table[ok]
    X = np.stack([x for x in signals if x is not None]).astype(np.float32)
    Y = np.zeros((len(table), len(labels)), dtype=np.float32)
    for i, (present, unknown) in enumerate(zip(table["labels"], table["unknown_labels"])):
        for j, name in enumerate(labels):
            Y[i, j] = np.nan if name in unknown else float(name in present)
    folds = table["fold"].to_numpy() if "fold" in table.columns else None
    arrays = ArraySet(X=X, Y=Y, label_names=labels, ids=table["record_id"].to_numpy(),
                      patient_ids=table["patient_id"].astype(str).to_numpy(), folds=folds,
                      preprocess=pipeline.to_dict(), label_descriptions={n: n for n in labels})
    return LabelledData(arrays, table["split"].to_numpy().astype(object),
                        {"kind": "manifest", "path": str(path), "unreadable": len(failures)})
