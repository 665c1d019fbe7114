"""Micro-batching: concurrent requests gathered into one forward pass.

:class:`MicroBatcher` keeps a queue of checked requests. One asyncio task takes the oldest and
gathers more until the batch holds ``max_batch`` rows or the oldest has waited ``max_wait_ms``;
then it runs ONE ``run_batch(payloads)`` in the model's worker thread (a single thread: torch
at one intra-op thread there, the event loop free to parse the next requests on the other
core) and hands each caller its own results. Requests that arrive while a batch runs wait in
the queue; their deadline has passed by the time it ends, so the next batch takes them all at
once — under load, batches grow by themselves and nobody waits for the timer.

A request is never split: one holding more rows than ``max_batch`` runs as a batch of its own.
If ``run_batch`` raises (it should not: requests are checked before they queue), the batch is
run again request by request, so that only the request at fault gets the error.

Example:
    >>> import asyncio
    >>> async def demo():
    ...     b = MicroBatcher(lambda items: [x * 10 for x in items], max_batch=8, max_wait_ms=5)
    ...     b.start()
    ...     out = await asyncio.gather(*(b.submit(i, rows=1) for i in range(3)))
    ...     await b.stop()
    ...     return out, b.stats["batches"]
    >>> asyncio.run(demo())
    ([0, 10, 20], 1)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from deepfit.errors import ConfigError

__all__ = ["MicroBatcher"]


@dataclass
class _Job:
    payload: Any
    rows: int
    future: asyncio.Future
    arrived: float


class MicroBatcher:
    """Gathers concurrent calls of :meth:`submit` into batches; see the module docstring.

    Args:
        run_batch: payloads -> one result per payload, in order (a result may be an exception
            instance: that caller gets it raised).
        max_batch: rows per batch (a larger single request runs alone).
        max_wait_ms: how long the oldest request waits for company.
        executor: where ``run_batch`` runs (default: a new single thread, ``initializer`` run in it).
        initializer: run once in the default worker thread (e.g. ``torch.set_num_threads(1)``).
    """

    def __init__(self, run_batch: Callable[[list[Any]], list[Any]], *, max_batch: int = 256,
                 max_wait_ms: float = 0.0, executor: ThreadPoolExecutor | None = None,
                 initializer: Callable[[], None] | None = None) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(f"max_batch must be an integer >= 1, got {max_batch!r}")
        if not isinstance(max_wait_ms, (int, float)) or not 0 <= max_wait_ms <= 60_000:
            raise ConfigError(f"max_wait_ms must be a number of milliseconds in [0, 60000], got {max_wait_ms!r}")
        self.run_batch, self.max_batch, self.max_wait = run_batch, max_batch, max_wait_ms / 1000.0
        self._own_executor = executor is None
        self.executor = executor or ThreadPoolExecutor(1, thread_name_prefix="deepfit-model", initializer=initializer)
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self.stats = {"requests": 0, "rows": 0, "batches": 0, "largest_batch": 0}

    def start(self) -> None:
        """Start the gathering task on the running event loop."""
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._gather(), name="deepfit-batcher")

    async def stop(self) -> None:
        """Stop gathering; requests still queued get a RuntimeError. The worker thread ends."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._queue is not None and not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        if self._own_executor:
            self.executor.shutdown(wait=True)

    async def submit(self, payload: Any, *, rows: int) -> Any:
        """Queue one request of ``rows`` rows; returns its result when its batch has run."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put_nowait(_Job(payload, rows, future, time.monotonic()))
        result = await future
        if isinstance(result, BaseException):
            raise result
        return result

    async def _gather(self) -> None:
        assert self._queue is not None
        queue = self._queue
        loop = asyncio.get_running_loop()
        held: _Job | None = None
        while True:
            first = held if held is not None else await queue.get()
            held = None
            jobs, rows = [first], first.rows
            deadline = first.arrived + self.max_wait
            while rows < self.max_batch:
                try:
                    job = queue.get_nowait()
                except asyncio.QueueEmpty:
                    wait = deadline - time.monotonic()
                    if wait <= 0:
                        break
                    try:
                        job = await asyncio.wait_for(queue.get(), wait)
                    except TimeoutError:
                        break
                if rows + job.rows > self.max_batch:
                    held = job  # the next batch starts with it
                    break
                jobs.append(job)
                rows += job.rows
            jobs = [j for j in jobs if not j.future.done()]  # callers that went away
            if not jobs:
                continue
            self.stats["requests"] += len(jobs)
            self.stats["rows"] += sum(j.rows for j in jobs)
            self.stats["batches"] += 1
            self.stats["largest_batch"] = max(self.stats["largest_batch"], sum(j.rows for j in jobs))
            results = await loop.run_in_executor(self.executor, self._run, [j.payload for j in jobs])
            for job, result in zip(jobs, results):
                if not job.future.done():
                    job.future.set_result(result)

    def _run(self, payloads: list[Any]) -> list[Any]:
        try:
            results = self.run_batch(payloads)
            if len(results) != len(payloads):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(payloads)} requests")
            return results
        except Exception:  # noqa: BLE001 - isolate the request at fault
            if len(payloads) == 1:
                import sys

                return [sys.exc_info()[1]]
        out = []
        for p in payloads:
            try:
                out.append(self.run_batch([p])[0])
            except Exception as e:  # noqa: BLE001
                out.append(e)
        return out
