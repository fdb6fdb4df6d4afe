"""Replicas: every Marvin process on a store registers itself, renews a lease on a heartbeat,
and is judged alive by that lease, never by a pid it cannot see.

One exception keeps restarts quick: a process on the *same host* (same boot and pid
namespace, or the same ``state.host``) is judged by the process table, so a ``kill -9``'d
``marvin serve`` is known dead at once to the next ``marvin run`` or ``marvin shell`` on that
machine. Another host's replica is dead only once its lease has expired.

``Pulse`` is the one thread per process that keeps the lease and polls the store for what
other processes asked of this one (cancel requests, locks handed over, dead replicas).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from marvin.runtime.owner import process_identity
from marvin.runtime.sql import Database, Tx

__all__ = ["StateSettings", "Replicas", "Pulse", "host_key", "LIVENESS_COLUMNS"]

log = structlog.get_logger("marvin.replicas")

# Columns a query joins from ``replicas p`` so that ``Replicas.alive`` can judge a row.
LIVENESS_COLUMNS = (
    "p.host AS p_host, p.pid AS p_pid, p.identity AS p_identity, "
    "p.lease_until AS p_lease, p.stopped_at AS p_stopped"
)


@dataclass(frozen=True)
class StateSettings:
    """The ``state.*`` timings: short ones in tests, the defaults in production."""

    heartbeat_seconds: float = 5.0  # lease renewal, recovery sweep
    lease_seconds: float = 30.0  # a replica silent this long is dead
    poll_seconds: float = 1.0  # cancel requests and lock hand-overs are seen within this
    host: str = ""  # empty: this machine's boot id and pid namespace
    plan_hours: float = 24.0  # an unapplied plan (and its parameters) is forgotten after this

    @property
    def plans_made_before(self) -> float:
        """The creation time before which an unapplied plan has expired (now)."""
        return time.time() - self.plan_hours * 3600

    @classmethod
    def from_config(cls, config: Any) -> StateSettings:
        get = config.get
        return cls(
            heartbeat_seconds=float(get("state.heartbeat_seconds")),
            lease_seconds=float(get("state.lease_seconds")),
            poll_seconds=float(get("state.poll_seconds")),
            host=str(get("state.host") or ""),
            plan_hours=float(get("state.plan_hours")),
        )


def host_key() -> str:
    """What makes pids comparable: the kernel's boot id and this pid namespace."""
    parts = []
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            parts.append(f.read().strip())
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:
        return ""  # no /proc: every other process is judged by its lease
    return "/".join(parts)


class Replicas:
    """The ``replicas`` table, seen from one replica."""

    def __init__(
        self,
        db: Database,
        replica: str,
        settings: StateSettings,
        *,
        lease_db: Database | None = None,
    ) -> None:
        self.db, self.id, self.settings = db, replica, settings
        # The lease is renewed on connections of its own: a pool busy with commands must
        # never make a live replica look dead.
        self.lease_db = lease_db or db
        self.host = settings.host or host_key()
        self.identity = process_identity(os.getpid())

    def register(self) -> None:
        now = time.time()
        self.lease_db.execute(
            "INSERT INTO replicas (id, host, pid, identity, started_at, heartbeat_at,"
            " lease_until) VALUES (?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET"
            " heartbeat_at = excluded.heartbeat_at, lease_until = excluded.lease_until,"
            " stopped_at = NULL",
            (self.id, self.host, os.getpid(), self.identity, now, now, self.lease_from(now)),
        )

    def lease_from(self, now: float) -> float:
        return now + self.settings.lease_seconds

    def beat(self) -> None:
        """Renew this replica's lease and those of the locks and jobs it holds."""
        now = time.time()
        until = self.lease_from(now)
        with self.lease_db.transaction() as tx:
            renewed = tx.execute(
                "UPDATE replicas SET heartbeat_at = ?, lease_until = ? WHERE id = ?"
                " AND stopped_at IS NULL",
                (now, until, self.id),
            )
            tx.execute("UPDATE locks SET lease_until = ? WHERE replica = ?", (until, self.id))
            tx.execute("UPDATE running SET heartbeat_at = ? WHERE replica = ?", (now, self.id))
        if not renewed:
            # Our lease ran out (a stall longer than the lease) and another replica reaped
            # us: our running jobs may have been reported interrupted. Come back for what
            # we do next.
            log.error("this replica's lease had expired; registering again", replica=self.id)
            self.register()

    def stop(self) -> None:
        """A clean exit: this replica's leases end now, its locks are free to take."""
        self.db.execute(
            "UPDATE replicas SET stopped_at = ?, lease_until = ? WHERE id = ?",
            (time.time(), time.time(), self.id),
        )
        if self.lease_db is not self.db:
            self.lease_db.close()

    def alive(self, row: Mapping[str, Any], now: float | None = None) -> bool:
        """Judge a row carrying ``LIVENESS_COLUMNS`` (``p_lease`` may be a lock's own lease)."""
        if row.get("p_host") is None or row.get("p_stopped") is not None:
            return False  # no such replica (a row from before replicas), or it stopped
        if row["p_host"] == self.host and self.host and row.get("p_identity"):
            # Same machine: the process table answers at once (pid + start time).
            return process_identity(int(row["p_pid"])) == row["p_identity"]
        return float(row["p_lease"]) >= (time.time() if now is None else now)

    def live_ids(self) -> set[str]:
        rows = self.db.rows(
            f"SELECT p.id, {LIVENESS_COLUMNS} FROM replicas p WHERE p.stopped_at IS NULL"
        )
        now = time.time()
        return {r["id"] for r in rows if r["id"] == self.id or self.alive(r, now)}

    def reap(self) -> list[str]:
        """Mark replicas that died without stopping as stopped, and drop their locks, lock
        waiters and running rows (their executions are recorded by ``control.recover``)."""
        rows = self.db.rows(
            f"SELECT p.id, {LIVENESS_COLUMNS} FROM replicas p WHERE p.stopped_at IS NULL"
        )
        now = time.time()
        dead = [r["id"] for r in rows if r["id"] != self.id and not self.alive(r, now)]
        out = []
        for rid in dead:
            with self.db.transaction(serial=True) as tx:
                if not tx.execute(
                    "UPDATE replicas SET stopped_at = ? WHERE id = ? AND stopped_at IS NULL",
                    (now, rid),
                ):
                    continue  # another replica reaped it first
                forget(tx, rid)
            out.append(rid)
        if out:
            log.warning("replicas gone; their locks are free", replicas=out)
        # Every ``marvin run`` is a replica for a moment: forget those long stopped.
        self.db.execute("DELETE FROM replicas WHERE stopped_at < ?", (now - 7 * 86400,))
        return out


def forget(tx: Tx, replica: str) -> None:
    tx.execute("DELETE FROM locks WHERE replica = ?", (replica,))
    tx.execute("DELETE FROM lock_waiters WHERE replica = ?", (replica,))
    tx.execute("DELETE FROM running WHERE replica = ?", (replica,))


class Pulse:
    """Two daemon threads: one renews the lease (``lease()``) every ``heartbeat_seconds``
    and does nothing else, so no slow work delays it; the other runs ``poll()`` every
    ``poll_seconds`` (cancel requests, lock hand-overs) and ``sweep()`` every
    ``heartbeat_seconds`` (recovery, expired claims). A failing store is logged and retried;
    the threads never die of it."""

    def __init__(
        self,
        settings: StateSettings,
        lease: Callable[[], None],
        poll: Callable[[], None],
        sweep: Callable[[], None],
    ) -> None:
        self.settings = settings
        self._stop = threading.Event()
        beat, every = settings.heartbeat_seconds, settings.poll_seconds
        self._threads = [
            threading.Thread(target=self._loop, args=([(lease, beat)],), daemon=True,
                             name="marvin-lease"),
            threading.Thread(target=self._loop, args=([(poll, every), (sweep, beat)],),
                             daemon=True, name="marvin-pulse"),
        ]  # fmt: skip

    def start(self) -> Pulse:
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for t in self._threads:
            if t.is_alive() and t is not threading.current_thread():
                t.join(timeout)

    def _loop(self, jobs: list[tuple[Callable[[], None], float]]) -> None:
        due = [time.monotonic() + every for _, every in jobs]
        while True:
            wait = max(0.0, min(due) - time.monotonic())
            if self._stop.wait(wait):
                return
            for i, (fn, every) in enumerate(jobs):
                if time.monotonic() < due[i]:
                    continue
                due[i] = time.monotonic() + every
                try:
                    fn()
                except Exception:
                    log.warning("store poll failed; retrying", exc_info=True)
