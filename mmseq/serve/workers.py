"""One thread owns each model: requests wait in a bounded queue and are decoded in batches.

`BatchWorker` (captions, text) takes the first waiting request, then whatever else is already
queued, up to `batch_size`, and hands them to the model's `run_batch` together;
`mmseq.serve.speech.SpeechWorker` lets requests join and leave between 30 s windows. Each
request gets its own result or its own exception, so one bad input never fails the others. A
full queue refuses at once (`QueueFull`, answered 429 with Retry-After), rather than letting
requests pile up.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
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
class Queued(Generic[Job]):
    """A submitted job and the Future its client waits on."""

    job: Job
    future: Future


_STOP = object()


class QueuedWorker:
    """A thread that takes submitted jobs from a bounded queue; subclasses decide how they are
    run (`_loop`). A submitted job's Future stays pending until its result is set, so a
    client that leaves cancels it (`Future.cancel`) at any time before that.

    max_queue: jobs waiting, not counting those being decoded; on_batch(size, seconds) and
    on_queue(depth) report to the metrics."""

    def __init__(
        self,
        name: str,
        batch_size: int,
        max_queue: int,
        on_batch: Callable[[int, float], None] = lambda n, s: None,
        on_queue: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.name, self.batch_size, self.max_queue = name, batch_size, max_queue
        self.on_batch, self.on_queue = on_batch, on_queue
        self._queue: queue.Queue = queue.Queue()
        self._waiting = 0  # submitted, not yet taken
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
        self._queue.put(Queued(job, future))
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

    def _take(self, most: int, block: bool) -> tuple[list[Queued], bool]:
        """Up to `most` queued jobs (waiting for the first one if `block`), without those
        cancelled meanwhile; and whether the queue is closed."""
        items: list[Queued] = []
        stopped = False
        while len(items) < most:
            try:
                item = self._queue.get(block=block and not items)
            except queue.Empty:
                break
            if item is _STOP:
                stopped = True
                break
            items.append(item)
        if items:
            with self._lock:
                self._waiting -= len(items)
                depth = self._waiting
            self.on_queue(depth)
        return [i for i in items if not i.future.cancelled()], stopped

    def _timed(self, size: int, started: float) -> None:
        seconds = time.perf_counter() - started
        self._last_batch_seconds = seconds
        self.on_batch(size, seconds)

    def _loop(self) -> None:
        raise NotImplementedError


def settle(future: Future, result: Any) -> None:
    """Set a result or an exception, unless the client cancelled the future meanwhile."""
    if future.done():
        return
    try:
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
    except InvalidStateError:  # cancelled between the check and the set
        pass


class BatchWorker(QueuedWorker):
    """Runs `run_batch` on the first waiting job and whatever else is already queued, up to
    `batch_size`, to completion (captions, text)."""

    def __init__(self, name: str, run_batch: RunBatch, batch_size: int, max_queue: int, **hooks):
        self.run_batch = run_batch
        super().__init__(name, batch_size, max_queue, **hooks)

    def _loop(self) -> None:
        stopped = False
        while not stopped:
            items, stopped = self._take(self.batch_size, block=True)
            if not items:
                continue
            started = time.perf_counter()
            try:
                results = list(self.run_batch([i.job for i in items]))
            except Exception as err:  # noqa: BLE001 - the batch failed as a whole
                results = [err] * len(items)
            self._timed(len(items), started)
            for item, result in zip(items, results, strict=True):
                settle(item.future, result)
