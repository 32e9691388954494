"""Training inputs: deterministic random crops of records, and the label matrix of any dataset.

The contract between data and trainer is any ``torch.utils.data.Dataset`` whose items are ``(x, y)`` with
``x`` float32 ``(leads, samples)`` in millivolts and ``y`` float32 ``(labels,)`` multi-hot (NaN = label unknown).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ecgfm.models.windowing import fit_length


def labels_of(dataset: Dataset) -> np.ndarray:
    """All label vectors of a dataset as an (N, L) array (fast path for datasets with a ``Y`` and crops of them)."""
    if isinstance(dataset, Subset):  # a Subset's labels are its parent's rows at its indices, not all of them
        return labels_of(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]
    if hasattr(dataset, "Y"):
        return np.asarray(dataset.Y, dtype=np.float32)
    inner = getattr(dataset, "dataset", None)  # wrappers such as RandomCropDataset: same records, same order
    if inner is not None and len(inner) == len(dataset):
        return labels_of(inner)
    return np.stack([np.asarray(dataset[i][1], dtype=np.float32) for i in range(len(dataset))])


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
