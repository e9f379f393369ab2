"""One thread owns each model: requests wait in a bounded queue and are decoded in batches.

The worker takes the first waiting request, then whatever else is already queued, up to
`batch_size`, and hands them to the model's `run_batch` together; each request gets its own
result or its own exception, so one bad input never fails the others. A full queue refuses
at once (`QueueFull`, answered 429 with Retry-After), rather than letting requests pile up.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Job = TypeVar("Job")

# run_batch(jobs) -> one result or exception per job, in order
RunBatch = Callable[[Sequence[Any]], Sequence[Any]]


class QueueFull(Exception):
    """The model's queue holds max_queue requests; retry after `retry_after` seconds."""

    def __init__(self, model: str, retry_after: int) -> None:
        super().__init__(f"{model}: too many requests waiting; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class _Item(Generic[Job]):
    job: Job
    future: Future


_STOP = object()


class BatchWorker:
    """A thread that runs `run_batch` on batches of submitted jobs.

    max_queue: jobs waiting, not counting those being decoded; on_batch(size, seconds) and
    on_queue(depth) report to the metrics."""

    def __init__(
        self,
        name: str,
        run_batch: RunBatch,
        batch_size: int,
        max_queue: int,
        on_batch: Callable[[int, float], None] = lambda n, s: None,
        on_queue: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.name, self.run_batch, self.batch_size = name, run_batch, batch_size
        self.max_queue = max_queue
        self.on_batch, self.on_queue = on_batch, on_queue
        self._queue: queue.Queue = queue.Queue()
        self._waiting = 0  # submitted, not yet taken into a batch
        self._lock = threading.Lock()
        self._last_batch_seconds = 1.0
        self._thread = threading.Thread(target=self._loop, name=f"mmseq-{name}", daemon=True)
        self._thread.start()

    def submit(self, job: Any) -> Future:
        """Queue a job; its Future holds the result, or raises the job's exception."""
        with self._lock:
            if self._waiting >= self.max_queue:
                raise QueueFull(self.name, self.retry_after())
            self._waiting += 1
            depth = self._waiting
        self.on_queue(depth)
        future: Future = Future()
        self._queue.put(_Item(job, future))
        return future

    def retry_after(self) -> int:
        """Seconds until a batch has likely left the queue: the last batch's time."""
        return max(1, math.ceil(self._last_batch_seconds))

    @property
    def depth(self) -> int:
        return self._waiting

    def close(self, timeout: float | None = None) -> None:
        """Finish the queued jobs, then stop the thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _take(self) -> list[_Item] | None:
        first = self._queue.get()
        if first is _STOP:
            return None
        items = [first]
        while len(items) < self.batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.put(_STOP)  # after this batch
                break
            items.append(item)
        with self._lock:
            self._waiting -= len(items)
            depth = self._waiting
        self.on_queue(depth)
        # a job whose client gave up (its Future cancelled) is not decoded
        return [i for i in items if i.future.set_running_or_notify_cancel()]

    def _loop(self) -> None:
        while (items := self._take()) is not None:
            if not items:
                continue
            started = time.perf_counter()
            try:
                results = list(self.run_batch([i.job for i in items]))
            except Exception as err:  # noqa: BLE001 - the batch failed as a whole
                results = [err] * len(items)
            seconds = time.perf_counter() - started
            self._last_batch_seconds = seconds
            self.on_batch(len(items), seconds)
            for item, result in zip(items, results, strict=True):
                if isinstance(result, BaseException):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)
