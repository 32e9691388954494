"""Multi-GPU / multi-node data-parallel training helpers (``torch.distributed`` + DistributedDataParallel).

Launch any training command with ``torchrun``; it sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``, and :func:`init_distributed` joins the group through that ``env://`` rendezvous (NCCL on GPUs, Gloo
on CPU). Without torchrun everything here degrades to a single process, so the same code runs everywhere.

Data sharding: training uses :class:`torch.utils.data.DistributedSampler`. Its epoch permutation is the same on every
rank and rank ``r`` takes positions ``r, r+W, r+2W, ...``, so the union of the ranks' ``k``-th local batches of size
``B`` is exactly the ``k``-th batch of size ``W*B`` of that permutation: W ranks with batch B train like one process
with batch W*B. When N is not a multiple of W it pads by repeating the first ``W - (N mod W)`` indices, so all ranks
take the same number of steps (DDP's gradient all-reduce needs every rank at every step); at most W-1 records per
epoch are therefore seen twice (0.0004 % of 1.6M records on 8 GPUs). Evaluation must see every record exactly once,
so it uses :class:`ShardedEvalSampler` (no padding, ranks differ by at most one record) and :func:`gather_rows`
reassembles the predictions in dataset order on every rank; forward passes there go through the unwrapped module
(no collective calls, so uneven shard sizes cannot deadlock).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator, Mapping

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler, Sampler


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job: rank, world size, local rank (GPU index on its node) and device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes checkpoints, logs and reports."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """Whether the environment describes a multi-process job (``WORLD_SIZE`` > 1, as torchrun sets it)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str | torch.device = "auto", backend: str | None = None,
                     timeout_s: float = 1800.0) -> DistEnv:
    """Join the process group described by torchrun's environment (``env://``); a no-op single-process env otherwise.

    ``device="auto"`` uses ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU; the backend defaults to NCCL
    for GPUs and Gloo for CPUs. Calling it again returns the existing group's environment.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    want_cuda = (str(device) == "auto" and torch.cuda.is_available()) or str(device).startswith("cuda")
    if want_cuda and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but no CUDA GPU is available")
    if want_cuda:
        index = local_rank if str(device) in ("auto", "cuda") else torch.device(device).index or 0
        torch.cuda.set_device(index)
        resolved = torch.device("cuda", index)
    else:
        resolved = torch.device("cpu")
    if not launched_by_torchrun() and not dist.is_initialized():
        return DistEnv(device=resolved)
    if not dist.is_initialized():
        backend = backend or ("nccl" if resolved.type == "cuda" else "gloo")
        dist.init_process_group(backend=backend, init_method="env://", timeout=timedelta(seconds=timeout_s))
    return DistEnv(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, device=resolved,
                   backend=dist.get_backend())


def cleanup() -> None:
    """Leave the process group (call once at the end of a distributed run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0 (and in a single-process run): guard checkpoint and log writes with it."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if is_distributed():
        dist.barrier()


def wrap_model(model: nn.Module, env: DistEnv, **ddp_kwargs) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel when the job has several ranks, else unchanged."""
    if not env.distributed:
        return model
    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, **ddp_kwargs)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (checkpoints store its state_dict, without ``module.`` prefixes)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def no_sync(model: nn.Module, skip_sync: bool):
    """Context skipping DDP's gradient all-reduce on gradient-accumulation micro-steps (``skip_sync=True``)."""
    if skip_sync and isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


def train_sampler(dataset: Dataset, env: DistEnv, seed: int = 0, shuffle: bool = True,
                  drop_last: bool = False) -> DistributedSampler:
    """The training sampler: one shared permutation per epoch, rank ``r`` taking every W-th index (see module doc).

    Call ``sampler.set_epoch(epoch)`` before each epoch. With one process it is a seeded random permutation.
    """
    return DistributedSampler(dataset, num_replicas=env.world_size, rank=env.rank, shuffle=shuffle, seed=seed,
                              drop_last=drop_last)


def shard_indices(n: int, rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s share of ``range(n)`` for evaluation: every W-th index, no padding, no duplicates."""
    return np.arange(rank, n, world_size, dtype=np.int64)


class ShardedEvalSampler(Sampler[int]):
    """Evaluation sampler: each index on exactly one rank, in order (ranks get ``ceil`` or ``floor`` of N/W)."""

    def __init__(self, dataset_or_length, rank: int | None = None, world_size: int | None = None):
        self.n = dataset_or_length if isinstance(dataset_or_length, int) else len(dataset_or_length)
        self.rank = get_rank() if rank is None else rank
        self.world_size = get_world_size() if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside a world of {self.world_size}")

    def indices(self) -> np.ndarray:
        return shard_indices(self.n, self.rank, self.world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return len(self.indices())


def _collective_device() -> torch.device:
    """Where tensors must live for collectives: the current GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sums(values: Mapping[str, float]) -> dict[str, float]:
    """Sum scalars over ranks (e.g. ``{"loss_sum": ..., "count": ...}``); returned unchanged in a single process.

    Reduce sums and counts, never means: a mean of per-rank means is wrong when ranks saw different numbers of records.
    """
    if not is_distributed():
        return {k: float(v) for k, v in values.items()}
    keys = list(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return dict(zip(keys, tensor.cpu().tolist()))


def gather_rows(local: np.ndarray, local_indices: np.ndarray, total: int) -> np.ndarray:
    """Reassemble per-rank rows (e.g. predictions for :func:`shard_indices`) into the full array, on every rank.

    ``local`` has one row per entry of ``local_indices`` (positions in the full array of ``total`` rows). Each
    position must come from exactly one rank; the result is identical on all ranks, so metrics computed from it
    (e.g. AUC, early stopping) agree everywhere.
    """
    local = np.asarray(local)
    local_indices = np.asarray(local_indices, dtype=np.int64)
    if len(local) != len(local_indices):
        raise ValueError(f"{len(local)} rows but {len(local_indices)} indices")
    if not is_distributed():
        out = np.zeros((total, *local.shape[1:]), dtype=local.dtype)
        out[local_indices] = local
        return out
    device = _collective_device()
    world = dist.get_world_size()
    count = torch.tensor([len(local)], dtype=torch.int64, device=device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    longest = int(max(c.item() for c in counts))
    # all_gather needs equal shapes: pad every rank's rows (and indices) to the longest, then trim
    rows = torch.zeros((longest, *local.shape[1:]), dtype=torch.from_numpy(local[:0]).dtype, device=device)
    rows[:len(local)] = torch.from_numpy(np.ascontiguousarray(local)).to(device)
    index = torch.full((longest,), -1, dtype=torch.int64, device=device)
    index[:len(local)] = torch.from_numpy(local_indices).to(device)
    all_rows = [torch.zeros_like(rows) for _ in range(world)]
    all_index = [torch.zeros_like(index) for _ in range(world)]
    dist.all_gather(all_rows, rows)
    dist.all_gather(all_index, index)
    out = np.zeros((total, *local.shape[1:]), dtype=local.dtype)
    seen = np.zeros(total, dtype=np.int64)
    for part, idx, n in zip(all_rows, all_index, counts):
        n = int(n.item())
        positions = idx[:n].cpu().numpy()
        out[positions] = part[:n].cpu().numpy()
        np.add.at(seen, positions, 1)
    if not (seen == 1).all():
        raise ValueError(f"gather_rows: {int((seen == 0).sum())} positions missing, {int((seen > 1).sum())} duplicated")
    return out


__all__ = ["DistEnv", "init_distributed", "cleanup", "is_distributed", "get_rank", "get_world_size",
           "is_main_process", "barrier", "wrap_model", "unwrap_model", "no_sync", "train_sampler", "shard_indices",
           "ShardedEvalSampler", "all_reduce_sums", "gather_rows", "launched_by_torchrun"]
