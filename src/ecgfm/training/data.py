"""Datasets for training: in-memory arrays, deterministic random crops, and test-time sliding windows.

The contract between data and trainer is any ``torch.utils.data.Dataset`` whose items are ``(x, y)`` with
``x`` float32 ``(leads, samples)`` in millivolts and ``y`` float32 ``(labels,)`` multi-hot (NaN = label unknown).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ecgfm.models.windows import window_starts


class ArrayDataset(Dataset):
    """ECGs ``X`` (N, leads, samples) with labels ``Y`` (N, labels) as a Dataset of float32 (x, y) tensors.

    ``X`` may be a read-only memory map (e.g. ``ArraySet.X`` from the PTB-XL cache): records are copied one at a
    time as they are drawn, so a disk-backed array is never loaded whole.
    """

    def __init__(self, X: np.ndarray, Y: np.ndarray):
        if X.ndim != 3:
            raise ValueError(f"X must have shape (N, leads, samples), got {X.shape}")
        if Y.ndim != 2 or len(Y) != len(X):
            raise ValueError(f"Y must have shape (N={len(X)}, labels), got {Y.shape}")
        self.X = X
        self.Y = np.ascontiguousarray(Y, dtype=np.float32)

    @classmethod
    def from_arrayset(cls, arrays) -> "ArrayDataset":
        """View of an :class:`ecgfm.datasets.arrays.ArraySet` (``.X``, ``.Y``)."""
        return cls(arrays.X, arrays.Y)

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.array(self.X[index], dtype=np.float32))
        return x, torch.from_numpy(self.Y[index].copy())


def labels_of(dataset: Dataset) -> np.ndarray:
    """All label vectors of a dataset as an (N, L) array (fast path for :class:`ArrayDataset` and crops of it)."""
    if isinstance(dataset, Subset):  # a Subset's labels are its parent's rows at its indices, not all of them
        return labels_of(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]
    if hasattr(dataset, "Y"):
        return np.asarray(dataset.Y, dtype=np.float32)
    inner = getattr(dataset, "dataset", None)  # wrappers such as RandomCropDataset: same records, same order
    if inner is not None and len(inner) == len(dataset):
        return labels_of(inner)
    return np.stack([np.asarray(dataset[i][1], dtype=np.float32) for i in range(len(dataset))])


def fit_length(x: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad (at the end) a record shorter than ``length`` samples; longer records are returned unchanged."""
    missing = length - x.shape[-1]
    return torch.nn.functional.pad(x, (0, missing)) if missing > 0 else x


class RandomCropDataset(Dataset):
    """Random ``window``-sample crops of another dataset's records (training augmentation, Strodthoff et al.).

    The crop start of item ``i`` in epoch ``e`` comes from a generator seeded with ``(seed, e, i)``, so crops are
    identical however many DataLoader workers run and whatever order items are drawn in: a resumed run sees the
    same crops. Call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, dataset: Dataset, window: int, seed: int = 0):
        if window < 1:
            raise ValueError(f"window must be >= 1 samples, got {window}")
        self.dataset, self.window, self.seed, self.epoch = dataset, int(window), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.dataset[index]
        x = fit_length(torch.as_tensor(x, dtype=torch.float32), self.window)
        room = x.shape[-1] - self.window
        start = 0
        if room > 0:
            rng = np.random.default_rng((self.seed, self.epoch, int(index)))
            start = int(rng.integers(0, room + 1))
        return x[..., start:start + self.window], torch.as_tensor(y, dtype=torch.float32)


def sliding_windows(x: torch.Tensor, window: int, stride: int) -> torch.Tensor:
    """Cut a batch ``(B, leads, T)`` into windows ``(B, n_windows, leads, window)`` (see :func:`window_starts`)."""
    x = fit_length(x, window)
    starts = window_starts(x.shape[-1], window, stride)
    return torch.stack([x[..., s:s + window] for s in starts], dim=1)
