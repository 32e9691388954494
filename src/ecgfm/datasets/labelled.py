"""``LabelledSet``: preprocessed ECGs with labels, patients and splits, the one labelled-data type of ecgfm.

Every source gives the same type (:func:`load_labelled` picks the source; ``ecgfm.datasets.sources`` builds them):
a PTB-XL folder, a manifest naming ECG files, an ingested training store (signals read on demand, for millions of
records), or a folder of PhysioNet-Challenge-style records. Pre-training, fine-tuning, evaluation and embedding all
take a ``LabelledSet``; ``data.torch()`` is its view as a torch ``Dataset`` of ``(x, y)``.

Signals ``X`` are the full backing array (NumPy, a read-only memory map, or a store's lazy reader) and ``rows`` the
records of this set in it, so subsets, splits and label selections never copy signals.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

#: Split names, in the usual order.
SPLITS = ("train", "val", "test")


@dataclass
class LabelledSet:
    """Preprocessed ECGs (``X[rows]``: float32 mV ``(leads, samples)`` each) with multi-hot labels ``Y`` ``(N, L)``
    (NaN: unknown), record and patient ids, each record's split (``train``/``val``/``test``/``""``), PTB-XL folds
    when known, the preprocessing spec they went through, and where they came from (``source``)."""

    X: Any
    Y: np.ndarray
    labels: list[str]
    ids: np.ndarray
    patient_ids: np.ndarray
    split: np.ndarray
    preprocess: dict[str, Any]
    rows: np.ndarray | None = None
    folds: np.ndarray | None = None
    label_descriptions: dict[str, str] = field(default_factory=dict)
    # named groups of labels, e.g. {"rhythm": ["SR", "AFIB", ...]} from PTB-XL's statement table
    label_groups: dict[str, list[str]] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rows = np.arange(len(self.Y)) if self.rows is None else np.asarray(self.rows, dtype=np.int64)
        self.Y = np.asarray(self.Y, dtype=np.float32)
        if self.Y.size == 0:
            self.Y = self.Y.reshape(len(self.rows), len(self.labels))
        if self.Y.shape != (len(self.rows), len(self.labels)):
            raise ValueError(f"LabelledSet.Y has shape {self.Y.shape}; expected ({len(self.rows)} records, "
                             f"{len(self.labels)} labels)")
        self.ids, self.patient_ids = np.asarray(self.ids).astype(str), np.asarray(self.patient_ids).astype(str)
        self.split = np.asarray(self.split).astype(str)
        for name in ("ids", "patient_ids", "split"):
            if len(getattr(self, name)) != len(self.rows):
                raise ValueError(f"LabelledSet.{name} has {len(getattr(self, name))} entries for {len(self.rows)} "
                                 "records")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("LabelledSet.labels has duplicates")

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        parts = ", ".join(f"{s} {int((self.split == s).sum())}" for s in SPLITS if (self.split == s).any())
        return f"LabelledSet({len(self)} records ({parts}), {len(self.labels)} labels, {self.source.get('kind', '?')})"

    # -- what the preprocessing fixed ----------------------------------------------------------------------------

    @property
    def fs(self) -> float | None:
        """Sampling rate of the signals (Hz), from the preprocessing spec."""
        return self.pipeline().fs

    @property
    def leads(self) -> list[str]:
        return list(self.pipeline().leads or ())

    def pipeline(self):
        """The preprocessing the signals went through (:class:`ecgfm.signal.Pipeline`)."""
        from ecgfm.signal import Pipeline

        return Pipeline.from_dict(self.preprocess)

    # -- records ----------------------------------------------------------------------------------------------------

    def signal(self, i: int) -> np.ndarray:
        """Record ``i`` as float32 millivolts ``(leads, samples)``."""
        return np.asarray(self.X[int(self.rows[i])], dtype=np.float32)

    def signals(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Records ``start:stop`` stacked ``(n, leads, samples)`` (for batches; never the whole of a large set)."""
        return np.stack([self.signal(i) for i in range(start, len(self) if stop is None else stop)])

    def subset(self, index: Sequence[int] | np.ndarray) -> "LabelledSet":
        """Records selected by a boolean mask or positions (signals are not copied)."""
        index = np.asarray(index)
        index = np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64)
        return dataclasses.replace(self, rows=self.rows[index], Y=self.Y[index], ids=self.ids[index],
                                   patient_ids=self.patient_ids[index], split=self.split[index],
                                   folds=None if self.folds is None else self.folds[index])

    def part(self, *splits: str) -> "LabelledSet":
        """The records of the named splits (``data.part("train")``)."""
        unknown = set(splits) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown split(s) {sorted(unknown)}; expected {', '.join(SPLITS)}")
        return self.subset(np.isin(self.split, splits))

    def with_split(self, split: str | np.ndarray) -> "LabelledSet":
        """The same records assigned to ``split`` (one name for all, e.g. ``"test"`` for an external set)."""
        return dataclasses.replace(self, split=np.broadcast_to(np.asarray(split, dtype=str), (len(self),)).copy())

    def select_labels(self, names: Sequence[str]) -> "LabelledSet":
        """The same records with only the labels ``names``, in that order."""
        missing = [n for n in names if n not in self.labels]
        if missing:
            raise ValueError(f"labels {missing} not in this dataset (it has {len(self.labels)} labels: "
                             f"{', '.join(self.labels[:12])}{'...' if len(self.labels) > 12 else ''})")
        cols = [self.labels.index(n) for n in names]
        return dataclasses.replace(self, Y=self.Y[:, cols], labels=list(names),
                                   label_descriptions={n: self.label_descriptions.get(n, n) for n in names},
                                   label_groups={k: [n for n in v if n in names] for k, v in self.label_groups.items()})

    def concat(self, other: "LabelledSet") -> "LabelledSet":
        """These records followed by ``other``'s (same labels and preprocessing, same backing signals)."""
        if list(other.labels) != list(self.labels) or other.preprocess != self.preprocess:
            raise ValueError("only sets with the same labels and preprocessing can be concatenated")
        if other.X is not self.X:
            raise ValueError("only subsets of the same data can be concatenated")
        folds = None if self.folds is None or other.folds is None else np.concatenate([self.folds, other.folds])
        return dataclasses.replace(
            self, rows=np.concatenate([self.rows, other.rows]), Y=np.concatenate([self.Y, other.Y]),
            ids=np.concatenate([self.ids, other.ids]), patient_ids=np.concatenate([self.patient_ids, other.patient_ids]),
            split=np.concatenate([self.split, other.split]), folds=folds)

    def positives(self) -> dict[str, int]:
        """Positive records per label."""
        return {name: int(n) for name, n in zip(self.labels, np.nansum(self.Y == 1, axis=0))}

    def describe(self) -> dict[str, Any]:
        """Where the data came from and what it holds (goes into a trained model's ``info.data``)."""
        counts = {s: int((self.split == s).sum()) for s in SPLITS}
        return {**self.source, "records": counts, "n_patients": int(len(np.unique(self.patient_ids)))}

    def torch(self, index: np.ndarray | None = None) -> "SignalDataset":
        """A torch ``Dataset`` of ``(x (leads, T) float32 mV, y (L,) float32)``; ``index`` may repeat records
        (oversampling, epoch padding)."""
        index = np.arange(len(self)) if index is None else np.asarray(index, dtype=np.int64)
        return SignalDataset(self.X, self.rows[index], self.Y[index])


class SignalDataset(Dataset):
    """Rows of a signal array as ``(x, y)`` tensors, copied one at a time as they are drawn (a memory map or a
    store is never loaded whole); ``Y`` holds every label vector, for class weights."""

    def __init__(self, X: Any, rows: np.ndarray, Y: np.ndarray):
        self.X, self.rows = X, np.asarray(rows, dtype=np.int64)
        self.Y = np.ascontiguousarray(Y, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.array(self.X[int(self.rows[i])], dtype=np.float32)  # a copy: memory maps are read-only
        return torch.from_numpy(x), torch.from_numpy(self.Y[i].copy())


def from_arrays(X: np.ndarray, Y: np.ndarray, labels: Sequence[str], preprocess: dict[str, Any] | None = None,
                split: str | Sequence[str] = "train", ids: Sequence | None = None,
                patient_ids: Sequence | None = None, **kw: Any) -> LabelledSet:
    """A ``LabelledSet`` from in-memory arrays (tests, notebooks); ids default to positions, each record its own
    patient."""
    X = np.asarray(X, dtype=np.float32)
    ids = np.arange(len(X)).astype(str) if ids is None else np.asarray(ids)
    split = np.broadcast_to(np.asarray(split, dtype=str), (len(X),)).copy()
    return LabelledSet(X=X, Y=np.asarray(Y, dtype=np.float32).reshape(len(X), len(labels)), labels=list(labels), ids=ids,
                       patient_ids=ids if patient_ids is None else np.asarray(patient_ids), split=split,
                       preprocess=dict(preprocess or {}), source={"kind": "arrays"}, **kw)


def parse_folds(text: str | int | Sequence[int] | None) -> tuple[int, ...]:
    """Folds from ``"1-8"``, ``"9"``, ``"1,3,5-7"``, an int or a sequence (one fold syntax for every command)."""
    if text is None:
        return ()
    if isinstance(text, (int, np.integer)):
        return (int(text),)
    if not isinstance(text, str):
        return tuple(int(f) for f in text)
    folds: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        try:
            start, stop = int(low), int(high or low)
        except ValueError:
            raise ValueError(f"cannot read folds {text!r}: use numbers and ranges such as 1-8 or 1,3,5-7") from None
        if stop < start:
            raise ValueError(f"fold range {part!r} runs backwards")
        folds.extend(range(start, stop + 1))
    return tuple(dict.fromkeys(folds))
