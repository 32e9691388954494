"""In-memory labelled ECG arrays and the torch ``Dataset`` view the trainer consumes."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass
class ArraySet:
    """Preprocessed ECGs with multi-hot labels: the common currency between datasets, training and evaluation.

    ``X`` is float32 ``(N, leads, samples)`` in mV (possibly a read-only memory map); ``Y`` float32 ``(N, L)`` with
    NaN for unknown labels.
    """

    X: np.ndarray
    Y: np.ndarray
    label_names: list[str]
    ids: np.ndarray
    patient_ids: np.ndarray
    folds: np.ndarray | None = None
    preprocess: dict[str, Any] | None = None
    label_descriptions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.X)
        for name in ("Y", "ids", "patient_ids"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"ArraySet.{name} has {len(getattr(self, name))} rows, X has {n}")
        if self.Y.ndim != 2 or self.Y.shape[1] != len(self.label_names):
            raise ValueError(f"Y shape {self.Y.shape} does not match {len(self.label_names)} label names")

    def __len__(self) -> int:
        return len(self.X)

    def subset(self, index: np.ndarray) -> "ArraySet":
        """Rows selected by a boolean mask or integer indices (labels unchanged)."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return replace(self, X=self.X[index], Y=self.Y[index], ids=self.ids[index],
                       patient_ids=self.patient_ids[index],
                       folds=None if self.folds is None else self.folds[index])

    def concat(self, other: "ArraySet") -> "ArraySet":
        """These records followed by ``other``'s (same labels and preprocessing; arrays are copied into memory)."""
        if list(other.label_names) != list(self.label_names) or other.preprocess != self.preprocess:
            raise ValueError("only ArraySets with the same labels and preprocessing can be concatenated")
        folds = None if self.folds is None or other.folds is None else np.concatenate([self.folds, other.folds])
        return replace(self, X=np.concatenate([self.X, other.X]), Y=np.concatenate([self.Y, other.Y]),
                       ids=np.concatenate([self.ids, other.ids]),
                       patient_ids=np.concatenate([self.patient_ids, other.patient_ids]), folds=folds)

    def select_labels(self, names: list[str]) -> "ArraySet":
        """The same records with only the labels ``names`` (in that order)."""
        missing = [n for n in names if n not in self.label_names]
        if missing:
            raise ValueError(f"labels {missing} not in this dataset (have {len(self.label_names)} labels)")
        cols = [self.label_names.index(n) for n in names]
        return replace(self, Y=self.Y[:, cols], label_names=list(names),
                       label_descriptions={n: self.label_descriptions.get(n, n) for n in names})

    def split(self, train_folds=range(1, 9), val_folds=(9,), test_folds=(10,)) -> tuple["ArraySet", "ArraySet", "ArraySet"]:
        """Patient-disjoint train/validation/test sets from PTB-XL's stratified folds."""
        if self.folds is None:
            raise ValueError("this ArraySet has no folds")
        return tuple(self.subset(np.isin(self.folds, list(f))) for f in (train_folds, val_folds, test_folds))
