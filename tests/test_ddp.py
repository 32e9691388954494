"""Distributed data parallel: samplers, gathering, and 2 Gloo processes (torchrun) matching one process exactly."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DistributedSampler

from ecgfm.datasets.ingest import ingest
from ecgfm.datasets.synthetic import SyntheticSource
from ecgfm.training.distributed import (DistEnv, ShardedEvalSampler, all_reduce_sums, gather_rows, init_distributed,
                                        is_main_process, shard_indices, train_sampler)


def test_eval_shards_cover_every_index_exactly_once():
    for n, world in ((10, 3), (7, 2), (2, 4), (0, 2)):
        parts = [list(ShardedEvalSampler(n, rank=r, world_size=world)) for r in range(world)]
        assert sorted(i for p in parts for i in p) == list(range(n))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    with pytest.raises(ValueError, match="outside"):
        ShardedEvalSampler(5, rank=2, world_size=2)


def test_rank_batches_together_form_the_single_process_batches():
    n, world, batch = 24, 3, 4
    for epoch in range(3):
        single = train_sampler(range(n), DistEnv(), seed=11)
        single.set_epoch(epoch)
        order = list(single)
        ranks = []
        for r in range(world):
            sampler = train_sampler(range(n), DistEnv(rank=r, world_size=world), seed=11)
            sampler.set_epoch(epoch)
            ranks.append(list(sampler))
        for k in range(n // (world * batch)):
            union = sorted(i for part in ranks for i in part[k * batch:(k + 1) * batch])
            assert union == sorted(order[k * world * batch:(k + 1) * world * batch])


def test_uneven_training_shards_pad_at_most_world_minus_one_records():
    n, world = 10, 4
    parts = []
    for r in range(world):
        sampler = DistributedSampler(range(n), num_replicas=world, rank=r, shuffle=True, seed=0)
        parts.append(list(sampler))
    seen = np.bincount([i for p in parts for i in p], minlength=n)
    assert (seen >= 1).all() and (seen - 1).sum() == world - n % world  # 2 duplicates so every rank has 3 steps
    assert len({len(p) for p in parts}) == 1


def test_single_process_fallbacks():
    env = init_distributed("cpu")
    assert env == DistEnv() and not env.distributed and env.is_main and is_main_process()
    assert all_reduce_sums({"loss": 2.5, "n": 3}) == {"loss": 2.5, "n": 3.0}
    rows = np.arange(12.0).reshape(6, 2)
    idx = np.array([4, 0, 2, 1, 3, 5])
    np.testing.assert_array_equal(gather_rows(rows, idx, 6)[idx], rows)
    np.testing.assert_array_equal(shard_indices(7, 1, 3), [1, 4])


# A training script run once with plain python (1 process, batch 2B) and once under torchrun (2 processes, batch B):
# a tiny model without BatchNorm/dropout, SGD with momentum, the store through DataLoader workers, sharded evaluation.
SCRIPT = textwrap.dedent('''
    import json, sys
    import torch, torch.nn.functional as F
    from torch import nn
    from torch.utils.data import DataLoader
    from ecgfm.datasets.store import ECGStore
    from ecgfm.training.distributed import (ShardedEvalSampler, all_reduce_sums, cleanup, gather_rows,
        init_distributed, is_main_process, train_sampler, unwrap_model, wrap_model)

    torch.set_num_threads(1)
    store, out, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    env = init_distributed("cpu")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(12, 6, 9, stride=4), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                          nn.Linear(6, 4))
    ddp = wrap_model(model, env)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    found = ECGStore(store)
    data = found.load(found.label_names).torch()  # every record, signals read lazily by each worker
    sampler = train_sampler(data, env, seed=5)
    loader = DataLoader(data, batch_size=batch, sampler=sampler, num_workers=1)
    losses = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        for x, y in loader:
            loss = F.binary_cross_entropy_with_logits(ddp(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sums = all_reduce_sums({"loss": loss.item() * len(x), "n": len(x)})
            losses.append(sums["loss"] / sums["n"])
    mine = ShardedEvalSampler(data).indices()
    with torch.no_grad():
        local = unwrap_model(ddp)(torch.stack([data[int(i)][0] for i in mine])).numpy()
    predictions = gather_rows(local, mine, len(data))
    result = {"world": env.world_size, "losses": losses, "predictions": predictions.tolist(),
              "weights": [p.detach().double().sum().item() for p in model.parameters()], "n_local": len(mine)}
    if is_main_process():
        with open(out, "w") as fh:
            json.dump(result, fh)
    with open(out + f".rank{env.rank}", "w") as fh:
        json.dump({"rank": env.rank, "predictions": predictions.tolist()}, fh)
    cleanup()
''')


def _run(args: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.slow
def test_two_gloo_processes_train_like_one_process_with_the_global_batch(tmp_path):
    store = tmp_path / "store"
    ingest(SyntheticSource(32, fs=100), store, shard_size=8, workers=1, progress=False)
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    _run([sys.executable, str(script), str(store), str(tmp_path / "single.json"), "8"], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
          str(store), str(tmp_path / "ddp.json"), "4"], tmp_path)
    single = json.loads((tmp_path / "single.json").read_text())
    ddp = json.loads((tmp_path / "ddp.json").read_text())
    assert (single["world"], ddp["world"]) == (1, 2) and ddp["n_local"] == 16
    assert len(ddp["losses"]) == len(single["losses"]) == 8  # 32 records / global batch 8, two epochs
    np.testing.assert_allclose(ddp["losses"], single["losses"], rtol=1e-5)
    assert single["losses"][-1] < single["losses"][0]  # it trained
    np.testing.assert_allclose(ddp["weights"], single["weights"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ddp["predictions"], single["predictions"], rtol=1e-4, atol=1e-5)
    rank1 = json.loads((tmp_path / "ddp.json.rank1").read_text())
    assert rank1["predictions"] == ddp["predictions"]  # every rank holds the full, ordered predictions


# The project's trainer (ecgfm.training.fit) under torchrun: DDP wrapping, the shared-permutation sampler, loss sums
# all-reduced, validation sharded over ranks (31 records: uneven shards of 16 and 15) and gathered, checkpoints from rank 0 only.
FIT_SCRIPT = textwrap.dedent('''
    import json, sys
    import torch
    from torch import nn
    from ecgfm.datasets.store import ECGStore
    from ecgfm.training import TrainConfig, fit
    from ecgfm.training.distributed import cleanup, get_rank, is_main_process

    torch.set_num_threads(1)
    store, val_store, run_dir, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(12, 6, 9, stride=4), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                          nn.Linear(6, 4))
    model.arch_name, model.arch_kwargs, model.num_labels = "tiny", {}, 4
    config = TrainConfig(epochs=2, batch_size=batch, lr=0.02, schedule="constant", window=250, workers=1, seed=3,
                         device="cpu", progress=False, tensorboard=False)
    labels = ECGStore(store).label_names
    result = fit(model, ECGStore(store).load(labels), ECGStore(val_store).load(labels), config, run_dir=run_dir)
    out = {"history": [{k: v for k, v in row.items() if k.startswith(("train_loss", "val_loss", "val_macro"))}
                       for row in result.history],
           "weights": [p.detach().double().sum().item() for p in result.model.parameters()]}
    with open(f"{run_dir}.rank{get_rank()}.json", "w") as fh:
        json.dump(out, fh)
    cleanup()
''')


@pytest.mark.slow
def test_fit_under_torchrun_matches_single_process_fit(tmp_path):
    store = tmp_path / "store"
    ingest(SyntheticSource(32, fs=100), store, shard_size=8, workers=1, progress=False)
    ingest(SyntheticSource(31, fs=100, seed=1), tmp_path / "val", shard_size=8, workers=1, progress=False)
    script = tmp_path / "fit.py"
    script.write_text(FIT_SCRIPT)
    _run([sys.executable, str(script), str(store), str(tmp_path / "val"), str(tmp_path / "single"), "8"], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
          str(store), str(tmp_path / "val"), str(tmp_path / "ddp"), "4"], tmp_path)
    single = json.loads((tmp_path / "single.rank0.json").read_text())
    ranks = [json.loads((tmp_path / f"ddp.rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # every rank ends with the same history and weights
    for got, want in zip(ranks[0]["history"], single["history"], strict=True):
        assert got.keys() == want.keys()
        np.testing.assert_allclose(list(got.values()), list(want.values()), rtol=1e-4)
    np.testing.assert_allclose(ranks[0]["weights"], single["weights"], rtol=1e-4, atol=1e-6)
    assert (tmp_path / "ddp" / "last.pt").exists() and (tmp_path / "ddp" / "best.pt").exists()
    assert not list(tmp_path.glob("ddp/*.tmp*"))
