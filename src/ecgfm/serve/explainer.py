"""Explanations in worker processes that are killed when a request passes its deadline.

Integrated gradients cost 50-100 predictions per label (``benchmarks/results/explain.json``), so an explanation can
run for minutes, and a thread cannot be stopped: a timed-out explanation used to keep its thread and memory long
after its 504. Here each explanation runs in a child process (``multiprocessing`` spawn) holding its own copy of the
model: saved once with :func:`ecgfm.models.save`, loaded in the child with ``Predictor.from_pretrained(folder,
num_threads=1)``. The parent waits for the answer; at the deadline, or when the child's resident memory passes its
budget, the child is killed (its memory is returned to the system at once) and a fresh one starts in the background.

The children run at a lower CPU priority (``nice`` +10) with one thread each, so predictions keep their latency while
explanations run. At most ``workers`` explanations run and ``queue`` more wait; beyond that the answer is 503.
The first explanation starts the first child; it waits for the model to load (up to ``STARTUP_S``), which does not
count against its deadline (``ExplanationPool.start()`` loads them ahead).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import queue as queue_module
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ecgfm.serve.uploads import BadInput, one_record, relabel, unpack, without_folder

log = logging.getLogger("ecgfm.serve")

#: CPU priority of the explanation processes relative to the server (Linux ``nice``; higher is lower priority).
DEFAULT_NICENESS = 10
#: Inputs per integrated-gradients pass in the children for a record of up to 10 s: 8 instead of ecgfm.explain's 16
#: halves the extra memory of a maximal explanation of the shipped model (3 labels x 64 steps of a 10-s record: peak
#: RSS 878 MB instead of 1401 MB, 21.5 s instead of 19.5 s on one core). Longer records get proportionally fewer
#: inputs per pass (down to 1), so a pass takes about the same memory whatever the record's length.
INTERNAL_BATCH = 8
INTERNAL_BATCH_SECONDS = 10.0
#: Seconds a child may take to load the model (not counted against a request's deadline: only its first
#: explanation, or the first after a restart, waits for it).
STARTUP_S = 120.0
#: How often the parent checks the child's answer, liveness and memory (s): the kill latency after a deadline.
POLL_S = 0.05


class ExplanationFailed(Exception):
    """An explanation ended without a result; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


# -- the work, as it runs inside a child process ------------------------------------------------------------------------

def explain_task(predictor, folder: Path, labels: list[str] | None, method: str, steps: int, figure: bool,
                 max_labels: int, thresholds: dict[str, float], max_unzipped_bytes: int) -> dict[str, Any]:
    """``POST /explain``: the JSON summary of ``ecgfm.explain`` for the one record of the upload."""
    from ecgfm.explain import explain
    from ecgfm.plotting.html import figure_to_data_uri

    from ecgfm.io import read

    predictor.thresholds = thresholds
    unpack(folder, max_unzipped_bytes)
    path = one_record(folder, "explain one per request")
    ecg = _explained(read, path, folder)
    explanation = relabel(_explained(explain, ecg, folder, predictor, labels=labels, method=method, steps=steps,
                                     max_labels=max_labels, internal_batch_size=internal_batch(ecg.duration)),
                          folder)
    body = explanation.to_dict()
    for row in body["labels"]:
        row["figure"] = figure_to_data_uri(explanation.plot(row["label"])) if figure else None
    return body


def attribution_task(predictor, folder: Path, label: str, method: str, steps: int, thresholds: dict[str, float],
                     max_unzipped_bytes: int) -> dict[str, Any]:
    """``POST /explain/attribution``: one label's attribution on the record's time axis, for the viewer page."""
    from ecgfm.explain import explain
    from ecgfm.io import read
    from ecgfm.viewer.payload import attribution_payload

    predictor.thresholds = thresholds
    unpack(folder, max_unzipped_bytes)
    path = one_record(folder)
    ecg = _explained(read, path, folder)
    explanation = _explained(explain, ecg, folder, predictor, labels=[label], method=method, steps=steps,
                             internal_batch_size=internal_batch(ecg.duration))
    info = predictor.info
    return {"record_id": ecg.record_id, "file": os.path.relpath(path, folder),
            **attribution_payload(explanation, label, ecg.duration, info.preprocess, getattr(info, "aggregate", None))}


def internal_batch(duration_s: float) -> int:
    """Integrated-gradients inputs per pass for a record of ``duration_s`` seconds (see :data:`INTERNAL_BATCH`)."""
    return max(1, min(INTERNAL_BATCH, int(INTERNAL_BATCH * INTERNAL_BATCH_SECONDS / max(duration_s, 1e-3))))


def _explained(function, item, folder: Path, *args, **kwargs):
    """``function(item, ...)`` with the project's errors turned into :class:`BadInput` naming the uploaded file."""
    from ecgfm.errors import ECGError

    try:
        return function(item, *args, **kwargs)
    except ECGError as exc:
        source = os.path.relpath(item, folder) if isinstance(item, (str, os.PathLike)) else item.meta.get("source")
        reason = without_folder(getattr(exc, "reason", None) or str(exc), folder)
        raise BadInput(f"{os.path.basename(str(source or 'upload'))}: {reason}") from None
    except ValueError as exc:  # an unknown label or method
        raise BadInput(without_folder(str(exc), folder)) from None


TASKS = {"explain": explain_task, "attribution": attribution_task}


def _child_main(model_dir: str, conn, niceness: int) -> None:
    """A child's life: lower its priority, load the model, then answer requests until the pipe closes."""
    if niceness and hasattr(os, "nice"):
        os.nice(niceness)
    import torch

    from ecgfm.inference.predictor import Predictor

    torch.set_num_threads(1)
    predictor = Predictor.from_pretrained(model_dir, num_threads=1)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            task, folder, kwargs = conn.recv()
        except (EOFError, OSError):  # the server closed the pipe (or died): nothing more to do
            return
        try:
            answer = ("ok", TASKS[task](predictor, Path(folder), **kwargs))
        except BadInput as exc:
            answer = ("bad", str(exc))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which answers 500 and logs it
            answer = ("error", f"{type(exc).__name__}: {without_folder(str(exc), Path(folder))}")
        conn.send(answer)


# -- the parent's side ------------------------------------------------------------------------------------------------------

def _rss_mb(pid: int) -> float | None:
    """Resident memory of a process (MB) from ``/proc`` (Linux); None where unavailable."""
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


class _Worker:
    """One child process and the pipe to it; used by one request at a time."""

    def __init__(self, pool: "ExplanationPool"):
        self.pool = pool
        self.process = None
        self.conn = None
        self.ready = False  # the child has loaded the model

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.is_alive() else None

    def start(self) -> None:
        if self.pool.closed:
            raise ExplanationFailed(503, "the service is shutting down", {"Retry-After": "10"})
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self.process = context.Process(target=_child_main, args=(str(self.pool.model_dir()), child,
                                                                 self.pool.niceness),
                                       name="ecgfm-explain", daemon=True)
        self.process.start()
        child.close()
        self.conn, self.ready = parent, False

    def stop(self, restart: bool) -> None:
        """Kill the child (its work and memory end now); start a fresh one in the background if ``restart``."""
        if self.process is not None:
            self.process.kill()
            self.process.join(timeout=10)
            self.conn.close()
            self.process = self.conn = None
        if restart:
            self.start()

    def wait_ready(self) -> None:
        """Start the child if needed and wait until it has loaded the model (at most ``STARTUP_S``)."""
        if self.process is None or not self.process.is_alive():
            self.stop(restart=True)
        if not self.ready:
            status, pid = self._next_message(time.monotonic() + STARTUP_S, "loading the model")
            self.ready = status == "ready"

    def call(self, request: tuple, budget_s: float) -> Any:
        """Send ``request`` to a ready child and wait at most ``budget_s`` seconds for the answer. The child's model
        loading (first use, or after a restart) does not count against the budget."""
        self.wait_ready()
        try:
            self.conn.send(request)
        except OSError:  # the child died since it was ready
            self.stop(restart=True)
            self.wait_ready()
            self.conn.send(request)
        status, value = self._next_message(time.monotonic() + budget_s, "explaining")
        if status == "ok":
            return value
        if status == "bad":
            raise ExplanationFailed(422, value)
        log.error("explanation failed: %s", value)
        raise ExplanationFailed(500, f"the explanation failed ({value.split(':')[0]}); see the server log")

    def _next_message(self, deadline: float, doing: str) -> tuple[str, Any]:
        """The child's next message; the child is killed (and replaced) at ``deadline`` or above the memory budget."""
        while True:
            if self.process is None:  # stopped by close() meanwhile
                raise ExplanationFailed(503, "the service is shutting down", {"Retry-After": "10"})
            if self.conn.poll(max(0.0, min(POLL_S, deadline - time.monotonic()))):
                try:
                    return self.conn.recv()
                except (EOFError, OSError):
                    break  # the child died while answering
            if not self.process.is_alive():
                break
            if time.monotonic() >= deadline:
                log.warning("explanation process %s stopped at its deadline while %s", self.process.pid, doing)
                self.stop(restart=True)
                if doing == "explaining":
                    raise ExplanationFailed(504, f"the explanation took longer than {self.pool.timeout_s:g} s and "
                                                 "was stopped")
                raise ExplanationFailed(503, f"the explanation process took longer than {STARTUP_S:g} s to start",
                                        {"Retry-After": "10"})
            rss = _rss_mb(self.process.pid) if doing == "explaining" and self.pool.max_rss_mb else None
            if rss is not None and rss > self.pool.max_rss_mb:
                log.warning("explanation process %s stopped: %.0f MB while %s", self.process.pid, rss, doing)
                self.stop(restart=True)
                raise ExplanationFailed(422, f"the explanation needed more than {self.pool.max_rss_mb:g} MB of "
                                             "memory and was stopped (a very long record?)")
        code = self.process.exitcode
        log.error("explanation process %s ended unexpectedly (exit code %s) while %s", self.process.pid, code, doing)
        self.stop(restart=True)
        raise ExplanationFailed(500, f"the explanation process ended unexpectedly (exit code {code})")


class ExplanationPool:
    """Explanation worker processes around a copy of ``model`` (an ecgfm ``nn.Module`` with ``.info``).

    Args:
        model: the PyTorch model to explain (``predictor.backend.model``).
        workers: child processes (explanations running at once); each holds a copy of the model.
        queue: explanations admitted to wait for a free child; more get 503.
        timeout_s: the deadline of one explanation, waiting included (504 and the child is killed after it).
        max_rss_mb: resident memory a child may use (killed above it; 422); ``None``: no limit.
        niceness: CPU priority of the children relative to the server (``nice``; 0 keeps the server's).
    """

    def __init__(self, model, workers: int = 1, queue: int = 1, timeout_s: float = 30.0,
                 max_rss_mb: float | None = None, niceness: int = DEFAULT_NICENESS):
        self.model, self.timeout_s, self.max_rss_mb, self.niceness = model, timeout_s, max_rss_mb, niceness
        self.workers, self.queue = max(1, int(workers)), max(0, int(queue))
        self._idle: queue_module.SimpleQueue[_Worker | None] = queue_module.SimpleQueue()
        self._all = [_Worker(self) for _ in range(self.workers)]
        for worker in self._all:
            self._idle.put(worker)
        self._slots = threading.BoundedSemaphore(self.workers + self.queue)
        self._threads = ThreadPoolExecutor(self.workers + self.queue, thread_name_prefix="ecgfm-explain")
        self._model_dir: Path | None = None
        self._lock = threading.Lock()
        self.closed = False

    def model_dir(self) -> Path:
        """The model saved once for the children (a private temporary folder, removed by :meth:`close`)."""
        with self._lock:
            if self._model_dir is None:
                from ecgfm.models import save

                folder = Path(tempfile.mkdtemp(prefix="ecgfm-explain-model-"))
                self._model_dir = save(self.model, folder)
            return self._model_dir

    def start(self) -> list[int]:
        """Start every worker process now and wait until each has loaded the model (instead of at the first
        explanation); call it before serving requests. Returns their process ids."""
        taken = []
        try:
            for _ in range(self.workers):
                taken.append(self._idle.get(timeout=STARTUP_S))
            for worker in taken:
                worker.wait_ready()
        finally:
            for worker in taken:
                self._idle.put(worker)
        return self.pids()

    def pids(self) -> list[int]:
        """Process ids of the running children (tests and monitoring)."""
        return [pid for worker in self._all if (pid := worker.pid) is not None]

    async def run(self, task: str, folder: Path, **kwargs: Any) -> dict[str, Any]:
        """Run ``TASKS[task](predictor, folder, **kwargs)`` in a child; raises :class:`ExplanationFailed`."""
        import asyncio

        deadline = time.monotonic() + self.timeout_s
        if not self._slots.acquire(blocking=False):
            raise ExplanationFailed(503, "the server is busy with other explanations; retry in a few seconds",
                                    {"Retry-After": str(max(1, int(self.timeout_s / 2)))})
        try:
            future = self._threads.submit(self._call, (task, str(folder), kwargs), deadline)
        except BaseException:
            self._slots.release()
            raise
        return await asyncio.wrap_future(future)

    def _call(self, request: tuple, deadline: float) -> dict[str, Any]:
        try:
            try:
                worker = self._idle.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue_module.Empty:
                raise ExplanationFailed(504, f"no explanation worker became free within {self.timeout_s:g} s") \
                    from None
            if worker is None:  # close() wakes the waiting requests with None
                self._idle.put(None)
                raise ExplanationFailed(503, "the service is shutting down", {"Retry-After": "10"})
            try:
                return worker.call(request, max(0.0, deadline - time.monotonic()))
            finally:
                self._idle.put(worker)
        finally:
            self._slots.release()

    def close(self) -> None:
        """Kill the children, answer the waiting requests (503) and remove the saved model."""
        self.closed = True
        for worker in self._all:
            worker.stop(restart=False)
        self._idle.put(None)
        self._threads.shutdown(wait=False, cancel_futures=True)
        if self._model_dir is not None:
            shutil.rmtree(self._model_dir, ignore_errors=True)
