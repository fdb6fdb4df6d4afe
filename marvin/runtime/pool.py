"""Threads for jobs: a bounded pool whose queued jobs can be withdrawn, and one timer thread
(``Scheduler``) for timeouts and progress flushes, so no job needs a thread of its own to wait."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable

import structlog

__all__ = ["JobPool", "PoolFull", "Scheduler", "Timer"]

log = structlog.get_logger("marvin.jobs")


class PoolFull(RuntimeError):
    """The queue is full; the user is told to try again shortly."""


class JobPool:
    """At most ``workers`` threads, started on demand, fed by a queue of ``queue_size``.

    Queued jobs may carry a key and be withdrawn with ``remove(key)`` before they start.
    ``abandon(thread)`` gives up on a worker stuck in a job (a handler that ignores its
    timeout): the slot is freed for a new worker and the old thread exits when its job does.
    """

    def __init__(self, workers: int = 32, queue_size: int = 256, name: str = "marvin-job") -> None:
        if workers < 1 or queue_size < 1:
            raise ValueError("workers and queue_size must be at least 1")
        self.max_workers = workers
        self.queue_size = queue_size
        self.name = name
        self._queue: deque[tuple[Hashable, Callable[[], None]]] = deque()
        self._workers: set[threading.Thread] = set()
        self._waiting = 0  # idle workers in cond.wait() that nobody has woken yet
        self._busy = 0
        self._cond = threading.Condition()
        self._closed = False
        self._serial = itertools.count()

    def submit(self, job: Callable[[], None], *, key: Hashable = None, force: bool = False) -> None:
        """Queue a job; raises PoolFull when the queue is full (unless ``force``: work that was
        already accepted, e.g. a job whose lock just came free), RuntimeError after shutdown."""
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self.name} pool is shutting down")
            if not force and len(self._queue) >= self.queue_size:
                raise PoolFull("busy")
            self._queue.append((key, job))
            self._wake_or_spawn()

    def _wake_or_spawn(self) -> None:
        if self._waiting > 0:
            self._waiting -= 1  # this waiter is now spoken for
            self._cond.notify()
        elif len(self._workers) < self.max_workers:
            t = threading.Thread(
                target=self._work, name=f"{self.name}-{next(self._serial)}", daemon=True
            )
            self._workers.add(t)
            t.start()

    def remove(self, key: Hashable) -> bool:
        """Withdraw a queued job before it starts; False if it already started (or is unknown)."""
        with self._cond:
            for item in self._queue:
                if item[0] == key:
                    self._queue.remove(item)
                    return True
        return False

    def abandon(self, thread: threading.Thread | None) -> None:
        with self._cond:
            if thread is None or thread not in self._workers:
                return
            self._workers.discard(thread)
            self._busy -= 1
            if self._queue:
                self._wake_or_spawn()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._waiting += 1
                    self._cond.wait()
                if not self._queue:  # closed and drained
                    self._workers.discard(me)
                    return
                _, job = self._queue.popleft()
                self._busy += 1
            try:
                job()
            except Exception:  # a job must never kill its worker
                log.exception("job crashed outside its own error handling")
            with self._cond:
                if me not in self._workers:
                    return  # abandoned: a replacement already took this slot
                self._busy -= 1

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def running(self) -> int:
        return self._busy

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop accepting; workers finish what is queued, then exit. ``timeout`` bounds the
        whole wait (not each thread): workers are daemons, a stuck one does not hold exit."""
        with self._cond:
            self._closed = True
            self._waiting = 0
            self._cond.notify_all()
            threads = list(self._workers)
        if wait:
            deadline = None if timeout is None else time.monotonic() + timeout
            for t in threads:
                if t is threading.current_thread():
                    continue
                t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))


def _noop() -> None:
    return None


class Timer:
    __slots__ = ("fn", "cancelled")

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.fn = _noop  # the heap keeps the entry until its deadline; not the job it names


class Scheduler:
    """One thread and a heap of deadlines, instead of a thread per timeout or progress flush.
    Callbacks run on ``runner`` (a small pool) so a slow one (a Slack edit) delays no other."""

    def __init__(self, runner: JobPool) -> None:
        self._runner = runner
        self._heap: list[tuple[float, int, Timer]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        timer = Timer(fn)
        with self._cond:
            if self._stopped:
                timer.cancel()
                return timer
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), next(self._seq), timer))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="marvin-scheduler", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return timer

    def _loop(self) -> None:
        with self._cond:
            while not self._stopped:
                if not self._heap:
                    self._cond.wait()
                    continue
                when, _, timer = self._heap[0]
                delay = when - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                if timer.cancelled:
                    continue
                try:
                    self._runner.submit(timer.fn, force=True)
                except RuntimeError:
                    return  # the runner is shut down: so are we

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()
