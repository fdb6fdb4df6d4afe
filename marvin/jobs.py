"""Marvin's own bounded worker pool: command handlers never run on a front end's thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import structlog

__all__ = ["JobPool", "PoolFull"]

log = structlog.get_logger("marvin.jobs")


class PoolFull(RuntimeError):
    """The queue is full; the user is told to try again shortly."""


class JobPool:
    """A fixed maximum of worker threads, started on demand, fed by a bounded queue."""

    def __init__(self, workers: int = 32, queue_size: int = 256, name: str = "marvin-job") -> None:
        if workers < 1 or queue_size < 1:
            raise ValueError("workers and queue_size must be at least 1")
        self.max_workers = workers
        self.name = name
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=queue_size)
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, job: Callable[[], None]) -> None:
        """Queue a job; raises PoolFull when the queue is full, RuntimeError after shutdown."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the job pool is shutting down")
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise PoolFull("busy") from None
            if self._idle == 0 and len(self._threads) < self.max_workers:
                t = threading.Thread(
                    target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(t)
                t.start()
            else:
                self._idle = max(0, self._idle - 1)  # one idle worker will take it

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                job()
            except Exception:  # a job must never kill its worker
                log.exception("job crashed outside its own error handling")
            finally:
                with self._lock:
                    self._idle += 1

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        if wait:
            for t in threads:
                t.join(timeout)
