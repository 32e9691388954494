"""Patient-level splits for few-example experiments: held-out test patients, nested training sets, inner validation.

Units. Every draw here is made over *patients*, never records, so all ECGs of a patient land on the same side of every
split. A patient is positive for a label when any of their known records is positive. Training-set sizes are counted
in positive patients (PTB-XL has about one ECG per patient, so this is also about the number of positive ECGs; the
exact record counts are reported beside every result).

Nesting. For one label and seed the positive and negative patients of the training pool are shuffled once and every
size takes a prefix of that order, so the 10-positive set is contained in the 25-positive set, and so on. Curves over
training size then measure what more data adds, not a fresh random draw at every size. The inner validation patients
(used for early stopping and thresholds) are every k-th patient of the same order, so they are nested too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

#: The training-set size meaning "every positive patient of the training pool".
ALL = "all"


def parse_sizes(values: Sequence[int | str] | str) -> list[int | str]:
    """Sizes from ``"10,25,50,all"`` or a list: positive integers (positive patients) or ``"all"``, in order."""
    if isinstance(values, str):
        values = [v for v in values.replace(" ", "").split(",") if v]
    sizes: list[int | str] = []
    for value in values:
        text = str(value).strip().lower()
        if text == ALL:
            size: int | str = ALL
        else:
            try:
                size = int(text)
            except ValueError:
                raise ValueError(f"training size {value!r} is neither a positive integer nor 'all'") from None
            if size < 1:
                raise ValueError(f"training size must be >= 1 positive, got {size}")
        if size not in sizes:
            sizes.append(size)
    if not sizes:
        raise ValueError("no training sizes given")
    return sizes


def patient_positive(y: np.ndarray, patient_ids: np.ndarray) -> dict[str, bool]:
    """Whether each patient has at least one positive record for a single label ``y`` (N,) (NaN = unknown)."""
    y = np.asarray(y, dtype=float)
    positive: dict[str, bool] = {}
    for pid, value in zip(np.asarray(patient_ids).astype(str), y):
        positive[pid] = positive.get(pid, False) or bool(value == 1)
    return positive


def records_of(patients: Sequence[str], patient_ids: np.ndarray, among: np.ndarray | None = None) -> np.ndarray:
    """Sorted record indices (optionally restricted to ``among``) whose patient is in ``patients``."""
    pids = np.asarray(patient_ids).astype(str)
    mask = np.isin(pids, np.asarray(list(patients), dtype=str))
    if among is not None:
        restrict = np.zeros(len(pids), dtype=bool)
        restrict[np.asarray(among, dtype=int)] = True
        mask &= restrict
    return np.flatnonzero(mask)


@dataclass(frozen=True)
class TrainingSet:
    """One arm's labelled data for a (label, size, seed, fold) cell: record indices for training and inner validation."""

    size: int | str
    train: np.ndarray
    val: np.ndarray
    positive_patients: int
    negative_patients: int
    info: dict = field(default_factory=dict)

    @property
    def all(self) -> np.ndarray:
        return np.sort(np.concatenate([self.train, self.val]))


def _val_positions(n: int, val_fraction: float) -> np.ndarray:
    """Boolean mask over a shuffled order: position i goes to validation when floor((i+1)f) > floor(i f).

    Every prefix of length n then holds exactly floor(n f) validation items: nested and stratified by construction.
    """
    i = np.arange(n)
    return np.floor((i + 1) * val_fraction) > np.floor(i * val_fraction)


class NestedSampler:
    """Draw nested patient-level training sets of growing size from a pool, for one label and seed.

    ``neg_ratio`` negatives (patients without the label) are drawn per positive patient (``None``: every negative of
    the pool). ``val_fraction`` of both positives and negatives (rounded down) become the inner validation set.
    """

    def __init__(self, y: np.ndarray, patient_ids: np.ndarray, pool: np.ndarray, seed: int,
                 neg_ratio: float | None = 9.0, val_fraction: float = 0.2):
        if neg_ratio is not None and neg_ratio <= 0:
            raise ValueError(f"neg_ratio must be > 0 (negatives per positive), got {neg_ratio}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.y = np.asarray(y, dtype=float)
        self.patient_ids = np.asarray(patient_ids).astype(str)
        self.pool = np.asarray(pool, dtype=int)
        self.neg_ratio, self.val_fraction, self.seed = neg_ratio, val_fraction, int(seed)
        status = patient_positive(self.y[self.pool], self.patient_ids[self.pool])
        rng = np.random.default_rng(self.seed)
        self.positives = rng.permutation(sorted(p for p, pos in status.items() if pos))
        self.negatives = rng.permutation(sorted(p for p, pos in status.items() if not pos))
        if len(self.positives) == 0:
            raise ValueError("the training pool has no positive patient for this label")

    @property
    def max_positives(self) -> int:
        return len(self.positives)

    def n_positives(self, size: int | str) -> int:
        """Positive patients used at ``size`` (``"all"`` = the whole pool); raises when the pool is too small."""
        if size == ALL:
            return self.max_positives
        if int(size) > self.max_positives:
            raise ValueError(f"asked for {size} positive patients but the training pool has {self.max_positives}")
        return int(size)

    def draw(self, size: int | str) -> TrainingSet:
        """The training set at ``size`` (a prefix of this seed's shuffled patients)."""
        n_pos = self.n_positives(size)
        n_neg = len(self.negatives) if self.neg_ratio is None else min(
            len(self.negatives), int(round(self.neg_ratio * n_pos)))
        pos, neg = self.positives[:n_pos], self.negatives[:n_neg]
        val_pos, val_neg = _val_positions(n_pos, self.val_fraction), _val_positions(n_neg, self.val_fraction)
        val_patients = np.concatenate([pos[val_pos], neg[val_neg]])
        train_patients = np.concatenate([pos[~val_pos], neg[~val_neg]])
        train = records_of(train_patients, self.patient_ids, among=self.pool)
        val = records_of(val_patients, self.patient_ids, among=self.pool)
        info = {
            "size": size, "seed": self.seed, "positive_patients": n_pos, "negative_patients": n_neg,
            "train_records": int(len(train)), "val_records": int(len(val)),
            "train_positive_records": int(np.sum(self.y[train] == 1)),
            "val_positive_records": int(np.sum(self.y[val] == 1)),
            "neg_ratio": self.neg_ratio, "val_fraction": self.val_fraction,
        }
        return TrainingSet(size, train, val, n_pos, n_neg, info)


@dataclass(frozen=True)
class Fold:
    """One evaluation fold: the training pool and the held-out test records (patient-disjoint)."""

    name: str
    pool: np.ndarray
    test: np.ndarray


def fixed_test_folds(folds: np.ndarray, test_folds: Sequence[int], pool_folds: Sequence[int] | None = None) -> Fold:
    """A fixed held-out test split from dataset folds (e.g. PTB-XL fold 10); the pool is every other (or given) fold."""
    folds = np.asarray(folds)
    test = np.flatnonzero(np.isin(folds, list(test_folds)))
    pool_mask = ~np.isin(folds, list(test_folds)) if pool_folds is None else np.isin(folds, list(pool_folds))
    pool = np.flatnonzero(pool_mask)
    if len(test) == 0:
        raise ValueError(f"no records in test folds {list(test_folds)}")
    if len(np.intersect1d(test, pool)):
        raise ValueError("pool folds and test folds overlap")
    return Fold("test", pool, test)


def check_patient_disjoint(a: np.ndarray, b: np.ndarray, patient_ids: np.ndarray, what: str = "sets") -> None:
    """Refuse two record sets that share a patient (the leak that inflates few-example results)."""
    pids = np.asarray(patient_ids).astype(str)
    shared = np.intersect1d(pids[np.asarray(a, dtype=int)], pids[np.asarray(b, dtype=int)])
    if len(shared):
        raise ValueError(f"{what} share {len(shared)} patient(s), e.g. {shared[:3].tolist()}; "
                         "splits must be patient-disjoint")


def fixed_random_test(y: np.ndarray, patient_ids: np.ndarray, test_fraction: float = 0.2, seed: int = 0) -> Fold:
    """A fixed patient-level test split stratified by the label, for data without predefined folds."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_splits = max(2, int(round(1.0 / test_fraction)))
    folds = list(cv_folds(y, patient_ids, n_splits=n_splits, repeat=0, seed=seed))
    return Fold("test", folds[0].pool, folds[0].test)


def cv_folds(y: np.ndarray, patient_ids: np.ndarray, n_splits: int = 5, repeat: int = 0, seed: int = 0,
             among: np.ndarray | None = None) -> Iterator[Fold]:
    """Patient-level stratified K-fold (scikit-learn's StratifiedGroupKFold) for repeat ``repeat``.

    Every record is in exactly one test fold per repeat, so pooling the out-of-fold predictions tests every positive
    once. Repeats reshuffle with ``seed`` and ``repeat``. ``among`` restricts the folds to a subset of records.
    """
    y = np.asarray(y, dtype=float)
    index = np.arange(len(y)) if among is None else np.asarray(among, dtype=int)
    labels = (y[index] == 1).astype(int)
    groups = np.asarray(patient_ids).astype(str)[index]
    n_pos_patients = len(set(groups[labels == 1]))
    if n_pos_patients < n_splits:
        raise ValueError(f"{n_pos_patients} positive patients cannot fill {n_splits} folds; use fewer folds")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True,
                                    random_state=int(np.random.SeedSequence([seed, repeat]).generate_state(1)[0]))
    for k, (pool, test) in enumerate(splitter.split(np.zeros(len(index)), labels, groups)):
        yield Fold(f"r{repeat}f{k}", index[pool], index[test])


def inner_validation_split(Y: np.ndarray, patient_ids: np.ndarray, fraction: float,
                           seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Patient-level split of a training set into (train, validation) record indices, stratified by the rarest label
    (one fold of :func:`cv_folds` with ``1 / fraction`` folds; a plain patient-level draw when too few positives)."""
    Y = np.asarray(Y, dtype=float)
    if fraction <= 0:
        return np.arange(len(Y)), np.array([], dtype=int)
    counts = np.nansum(Y == 1, axis=0)
    usable = np.flatnonzero(counts > 0)
    rarest = usable[np.argmin(counts[usable])] if len(usable) else 0
    n_splits = max(2, int(round(1.0 / fraction)))
    try:
        fold = next(iter(cv_folds(Y[:, rarest], patient_ids, n_splits=n_splits, seed=seed)))
    except ValueError:  # fewer positive patients than folds: plain patient-level random split
        pids = np.asarray(patient_ids).astype(str)
        patients = np.random.default_rng(seed).permutation(np.unique(pids))
        val = np.flatnonzero(np.isin(pids, patients[: max(1, int(round(fraction * len(patients))))]))
        return np.setdiff1d(np.arange(len(Y)), val), val
    return np.sort(fold.pool), np.sort(fold.test)
