"""One encoder call for the documents of concurrent requests (opportunistic micro-batching).

A service embeds each new document's fields as it arrives, on the threads that handle requests.
Several forward passes at once, each on its own thread, oversubscribe the cores; one after the
other, with the documents waiting in between embedded together (in batches of texts of similar
length, :class:`~similarity.features.TextFeaturizer`), they do not. :class:`MicroBatcher` gives
callers from many threads one function to call with their rows; a single worker thread runs the
wrapped function on everything waiting at that moment. Nothing waits for a batch to fill: a lone
request runs at once, and under load the requests that arrive while one batch runs form the next.
Measured on 2 CPU cores (``benchmarks/api.md``) it is slower than embedding each document alone on
the request's own thread (6 against 8 requests/s with the default model), so a service turns it on
only when asked (``serve --batch-rows N``); one bigger call pays where the encoder is a GPU.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

import numpy as np

__all__ = ["MicroBatcher"]


class _Job:
    __slots__ = ("rows", "done", "result", "error")

    def __init__(self, rows: np.ndarray):
        self.rows = rows
        self.done = threading.Event()
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None


class MicroBatcher:
    """Call ``fn`` (rows in, one output row per input row) on the rows of concurrent callers at once.

    Args:
        fn: maps a 2-D array of ``n`` rows to an array of ``n`` rows (e.g. ``TextFeaturizer.transform``).
        max_rows: most rows one call takes; the rest wait for the next.
        idle_s: the worker thread ends after this long without work (started again on the next call).
    """

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], *, max_rows: int = 32, idle_s: float = 30.0):
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        self.fn = fn
        self.max_rows = max_rows
        self.idle_s = idle_s
        self.calls = 0
        """Calls of ``fn`` so far (how many batches the rows went in)."""
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        job = _Job(rows)
        with self._lock:
            self._queue.put(job)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
                self._worker.start()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def _take(self) -> list[_Job] | None:
        try:
            batch = [self._queue.get(timeout=self.idle_s)]
        except queue.Empty:
            with self._lock:  # a caller puts under this lock: either it sees no worker, or we see its job
                if self._queue.empty():
                    self._worker = None
                    return None
            return []
        rows = len(batch[0].rows)
        while rows < self.max_rows:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            batch.append(job)
            rows += len(job.rows)
        return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            if not batch:
                continue
            try:
                out = self.fn(np.concatenate([job.rows for job in batch]))
                self.calls += 1
                start = 0
                for job in batch:
                    job.result = out[start : start + len(job.rows)]
                    start += len(job.rows)
            except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
                for job in batch:
                    job.error = exc
            finally:
                for job in batch:
                    job.done.set()
