"""Training an ensemble recipe's members: one after another, or several at once in worker processes.

Members of an ensemble are independent runs, so they parallelise perfectly across processes. On a CPU this is
faster than giving one run all the cores: a small 1-D CNN does not keep two threads busy (measured on a 2-core AMD
EPYC, bf16 channels-last ``xresnet1d50``: two single-thread runs side by side complete 1.32x / 1.24x / 1.14x more
epochs per second than one two-thread run, for 2.5-s crops / 5-s crops / whole 10-s records; docs/models.md). On a
machine with several GPUs each worker drives its own GPU.

Each member is still a normal, resumable run in ``run_dir/<member name>/`` with its own seed, so a killed recipe
continues with ``resume=True`` whatever ran in parallel. A member's numbers depend on the threads it ran with
(oneDNN splits reductions by thread), which its saved config records (``num_threads``).
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from ecgfm.files import atomic_write_text
from ecgfm.models import ModelInfo, build_model, create
from ecgfm.training.config import TrainConfig


@dataclass(frozen=True)
class MemberRun:
    """One member to train: its position in the recipe (which fixes its seed), architecture, options and folder."""

    index: int
    name: str
    model: str
    model_kwargs: dict[str, Any]
    config: TrainConfig
    run_dir: Path | None


def training_cost(run: MemberRun, record_samples: int, leads: int, num_labels: int) -> float:
    """Relative cost of a member, for scheduling the longest first: forward FLOPs of one training input x epochs."""
    from ecgfm.models import count_flops

    net = create(run.model, num_labels=num_labels, in_leads=leads, **run.model_kwargs)
    samples = run.config.window or record_samples
    return count_flops(net, (1, leads, samples)) * (run.config.stop_epoch or run.config.epochs)


def threads_per_job(jobs: int, total: int | None = None) -> int:
    """CPU threads each of ``jobs`` concurrent members gets out of ``total`` (default: torch's current setting)."""
    total = total or torch.get_num_threads()
    return max(1, total // jobs)


#: ``train(data, run, resume, callbacks) -> trained model``: how one member trains (``ecgfm.training.pretrain``
#: passes its ``train_member``; a module-level function, so spawned workers can import it).
TrainFn = Callable[..., torch.nn.Module]


def train_members(data, runs: list[MemberRun], train: TrainFn, jobs: int = 1, resume: bool = False,
                  report: Callable[[str], None] | None = None) -> list[torch.nn.Module]:
    """Train every member of ``runs`` with ``train`` and return the trained models (with ``.info``) in recipe order.

    ``jobs > 1`` trains that many members at once in spawned worker processes, longest first; a member that fails
    does not stop the others (their runs finish and are saved), and the failures are raised together at the end.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if jobs == 1 or len(runs) == 1:
        return [train(data, run, resume) for run in runs]
    from ecgfm.training.distributed import launched_by_torchrun

    if launched_by_torchrun():
        raise ValueError("parallel members (jobs > 1) cannot run under torchrun: there every process trains the "
                         "same member with DDP; use jobs=1")
    # members whose runs already reached the end of their schedule are only loaded, here: no worker to start
    trained = {run.index: train(data, run, True) for run in runs if resume and schedule_finished(run)}
    pending = [run for run in runs if run.index not in trained]
    if pending:
        trained.update(_train_in_workers(data, pending, train, jobs, resume, report or (lambda message: None)))
    return [trained[run.index] for run in runs]


def schedule_finished(run: MemberRun) -> bool:
    """Whether the member's run folder holds a run that trained every epoch it is meant to (or stopped early)."""
    if run.run_dir is None or not (run.run_dir / "config.json").exists() or not (run.run_dir / "last.pt").exists():
        return False
    training = json.loads((run.run_dir / "config.json").read_text()).get("training", {})
    target = run.config.stop_epoch or run.config.epochs
    return training.get("stop_reason") == "early_stopping" or training.get("epochs_run", 0) >= target


def _gpu_slots(runs: list[MemberRun], jobs: int) -> list[str | None]:
    """The device each worker slot uses: one GPU per slot on a multi-GPU machine, else each member's own device."""
    wants_cuda = any(str(run.config.device) in ("auto", "cuda") for run in runs)
    count = torch.cuda.device_count() if wants_cuda and torch.cuda.is_available() else 0
    if count < 2:
        return [None] * jobs
    return [f"cuda:{slot % count}" for slot in range(jobs)]


def _train_in_workers(data, runs, train, jobs, resume, report) -> dict[int, torch.nn.Module]:
    record_samples = int(data.signal(0).shape[-1])
    costs = {run.index: training_cost(run, record_samples, int(data.signal(0).shape[0]), len(data.labels)) for run in runs}
    order = sorted(runs, key=lambda run: -costs[run.index])
    context = mp.get_context("spawn")  # fork after torch has started its thread pool can deadlock the children
    slots = context.Queue()
    for slot in range(jobs):
        slots.put(slot)
    results: dict[int, torch.nn.Module] = {}
    failures: list[str] = []
    with ProcessPoolExecutor(max_workers=min(jobs, len(runs)), mp_context=context, initializer=_start_worker,
                             initargs=(data, slots, _gpu_slots(runs, jobs), os.getpid())) as pool:
        futures = {pool.submit(_train_one, train, run, resume): run for run in order}
        for future in as_completed(futures):
            run = futures[future]
            try:
                state, info_dict = future.result()
            except Exception as error:  # noqa: BLE001 - every member's failure is reported, the rest finish
                failures.append(f"{run.name}: {error}")
                report(f"member {run.name} failed: {error}")
                continue
            model = build_model(ModelInfo.from_dict(info_dict))
            model.load_state_dict(state)
            results[run.index] = model.eval()
            info = model.info
            best = info.metrics.get("best_val_macro_auc")
            report(f"member {run.name} done" + (f" (best validation macro-AUC {best:.4f})" if best is not None else ""))
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(runs)} members failed (the others are saved; fix the cause "
                           "and resume): " + "; ".join(failures))
    return results


# --- worker side (module-level so the spawned processes can import them)
_WORKER: dict[str, Any] = {}


def _start_worker(data, slots, devices, parent_pid) -> None:
    slot = slots.get()
    _WORKER.update(data=data, device=devices[slot], parent_pid=parent_pid)


def _stop_if_orphaned(event: str, state: dict) -> None:
    """A worker whose parent died (killed recipe) stops at the next step instead of training on unseen."""
    if os.getppid() != _WORKER["parent_pid"]:
        raise SystemExit("the parent process is gone")


def _train_one(train: TrainFn, run: MemberRun, resume: bool):
    if _WORKER["device"] is not None:
        run = replace(run, config=replace(run.config, device=_WORKER["device"]))
    try:
        model = train(_WORKER["data"], run, resume, callbacks=(_stop_if_orphaned,))
    except Exception as error:
        # exceptions cross the process boundary as text: keep the worker's traceback for the report
        raise RuntimeError(f"{type(error).__name__}: {error}\n{traceback.format_exc()}") from None
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}, model.info.to_dict()


class TrainingClock:
    """Wall-clock time spent training a recipe, kept in ``run_dir/training_time.json`` across resumed invocations.

    Members that train side by side overlap, so their own elapsed times do not add up to the recipe's time; this
    records each invocation's wall time instead (rewritten every ``every_s`` seconds, so a killed invocation still
    counts up to its last write).
    """

    FILE = "training_time.json"

    def __init__(self, run_dir: str | Path | None, jobs: int, threads: int, every_s: float = 10.0):
        self.path = Path(run_dir) / self.FILE if run_dir is not None else None
        self.jobs, self.threads, self.every_s = jobs, threads, every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def read(run_dir: str | Path) -> dict[str, Any] | None:
        path = Path(run_dir) / TrainingClock.FILE
        return json.loads(path.read_text()) if path.exists() else None

    def __enter__(self) -> "TrainingClock":
        if self.path is None:
            return self
        previous = self.read(self.path.parent) or {"invocations": []}
        self._invocations = previous["invocations"]
        self._row = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "jobs": self.jobs,
                     "threads": self.threads, "wall_s": 0.0}
        self._start = time.perf_counter()
        self._write()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            self._write()

    def _write(self) -> None:
        self._row["wall_s"] = time.perf_counter() - self._start
        invocations = self._invocations + [self._row]
        atomic_write_text(self.path, json.dumps({"wall_s": sum(row["wall_s"] for row in invocations),
                                                 "invocations": invocations}, indent=1))

    def __exit__(self, *exc) -> None:
        if self.path is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._write()
