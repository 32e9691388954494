"""The thread pool that reads and predicts: a fixed number of jobs run, a bounded number wait, the rest get 503.

A request's job gets a deadline (504 after it). Python cannot stop a running thread, so a job that passes its deadline
keeps its slot until it ends: the slots count work actually running, not requests still waiting for an answer, and
load beyond ``workers + queue`` jobs is refused at once (503 with ``Retry-After``) instead of piling up. Jobs receive
a ``threading.Event`` that is set at the deadline; long jobs (``/predict/batch``) check it between records and stop.
Explanations, which can take a minute, run in separate processes that can be killed (``ecgfm.serve.explainer``).
"""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from fastapi import HTTPException

T = TypeVar("T")


def busy(what: str, retry_after_s: float) -> HTTPException:
    """503 with ``Retry-After`` (whole seconds, at least 1)."""
    return HTTPException(503, f"the server is busy with other {what}; retry in a few seconds",
                         headers={"Retry-After": str(max(1, int(round(retry_after_s))))})


class JobPool:
    """``workers`` threads running jobs, at most ``queue`` more jobs waiting; beyond that, 503.

    Args:
        workers: jobs running at once.
        queue: jobs admitted to wait for a thread (0: refuse whenever all threads are busy).
        what: the kind of work, for messages (``"predictions"``).
        retry_after_s: the ``Retry-After`` of a 503.
    """

    def __init__(self, workers: int, queue: int, what: str = "predictions", retry_after_s: float = 1.0):
        self.workers, self.queue = max(1, int(workers)), max(0, int(queue))
        self.what, self.retry_after_s = what, retry_after_s
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="ecgfm-serve")
        self._slots = threading.BoundedSemaphore(self.workers + self.queue)

    async def run(self, job: Callable[[threading.Event], T], timeout_s: float, timeout_message: str) -> T:
        """Run ``job(stop)`` in the pool; 503 when full, 504 after ``timeout_s`` (``stop`` is then set)."""
        if not self._slots.acquire(blocking=False):
            raise busy(self.what, self.retry_after_s)
        stop = threading.Event()

        def work() -> T:
            try:
                return job(stop)
            finally:
                self._slots.release()

        try:
            future = self._executor.submit(work)
        except BaseException:
            self._slots.release()
            raise
        waiter = asyncio.wrap_future(future)
        done, _ = await asyncio.wait([waiter], timeout=timeout_s)
        if done:
            return waiter.result()
        stop.set()
        waiter.add_done_callback(_drop_result)  # a late job's result or error is dropped
        if future.cancel():  # still queued: it never runs, so its slot is freed here
            self._slots.release()
        raise HTTPException(504, timeout_message)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _drop_result(future: asyncio.Future) -> None:
    """Retrieve a late job's outcome so asyncio does not log 'exception was never retrieved'."""
    if not future.cancelled():
        future.exception()
