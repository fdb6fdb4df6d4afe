"""Execution locks in the store, so every process and replica honours them.

The semantics are ``marvin.runtime.locks``' (per family, ``*.environment`` across families,
``lock_wait`` lines in arrival order); the table is the store's ``locks``, the line its
``lock_waiters``. A lock carries its holder's replica and a lease, renewed by that replica's
heartbeat while the job runs; a lock whose lease expired (or whose holder is known dead) is
taken over by the next one who asks. Releasing hands the lock to the first waiter in line,
in the same transaction; a waiter in this process starts at once, one elsewhere within its
replica's ``poll_seconds``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from marvin.runtime.locks import Holder, LockKey
from marvin.runtime.replicas import LIVENESS_COLUMNS, Replicas
from marvin.runtime.sql import Database, Tx

__all__ = ["SharedLocks", "encode", "decode"]


def encode(key: LockKey) -> tuple[str, str, str, str]:
    """(key, family, scope, vkey): family "" spans every family; vkey tells a named lock
    ("#") from a parameter's value ("=value")."""
    family = key.family or ""
    vkey = "#" if key.value is None else "=" + key.value
    return f"{family}|{key.scope}|{vkey}", family, key.scope, vkey


def decode(text: str) -> LockKey:
    family, scope, vkey = text.split("|", 2)
    return LockKey(family or None, scope, None if vkey == "#" else vkey[1:])


def _overlap(family_a: str, family_b: str) -> bool:
    return family_a == family_b or not family_a or not family_b


class SharedLocks:
    """``LockTable``'s interface on the store (``acquire``, ``release``, ``leave``, ``holder``)."""

    def __init__(self, db: Database, replicas: Replicas) -> None:
        self.db, self.replicas = db, replicas
        self._local: dict[str, Callable[[], None]] = {}  # our waiters' start functions
        self._mu = threading.Lock()

    # -- the LockTable interface -----------------------------------------------------------------

    def acquire(
        self, key: LockKey, holder: Holder, on_free: Callable[[], None] | None = None
    ) -> Holder | None:
        with self.db.transaction(serial=True) as tx:
            return self.acquire_in(tx, key, holder, on_free)

    def release(self, key: LockKey, execution_id: str) -> Callable[[], None] | None:
        with self.db.transaction(serial=True) as tx:
            granted = self.release_in(tx, key, execution_id)
        return self.starter(granted)

    def leave(self, key: LockKey, execution_id: str) -> bool:
        with self._mu:
            self._local.pop(execution_id, None)
        return (
            self.db.execute("DELETE FROM lock_waiters WHERE execution_id = ?", (execution_id,)) > 0
        )

    def holder(self, key: LockKey) -> Holder | None:
        with self.db.transaction() as tx:
            return self._blocker(tx, key, time.time(), take_over=False)

    # -- inside a caller's transaction (admission: cap and lock in one) -------------------------

    def acquire_in(
        self, tx: Tx, key: LockKey, holder: Holder, on_free: Callable[[], None] | None
    ) -> Holder | None:
        now = time.time()
        blocker = self._blocker(tx, key, now, take_over=True)
        if blocker is None and self._grant(tx, now):  # freed by a take-over: the line first
            blocker = self._blocker(tx, key, now, take_over=False)
        k, family, scope, vkey = encode(key)
        if blocker is None:
            self._insert(tx, k, family, scope, vkey, holder, self.replicas.id, now)
            return None
        if on_free is not None:
            tx.execute(
                "INSERT INTO lock_waiters (key, family, scope, vkey, execution_id, ref,"
                " requester, replica, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (k, family, scope, vkey, holder.execution_id, holder.ref, holder.requester,
                 self.replicas.id, now),
            )  # fmt: skip
            with self._mu:
                self._local[holder.execution_id] = on_free
        return blocker

    def release_in(self, tx: Tx, key: LockKey, execution_id: str) -> list[str]:
        """Free ``key`` if ``execution_id`` holds it; the execution ids it passed to."""
        if not tx.execute(
            "DELETE FROM locks WHERE key = ? AND execution_id = ?", (encode(key)[0], execution_id)
        ):
            return []
        return self._grant(tx, time.time())

    def starter(self, granted: list[str]) -> Callable[[], None] | None:
        """The start functions of those of ``granted`` that wait in this process."""
        with self._mu:
            found = [self._local.pop(ex, None) for ex in granted]
        started = [f for f in found if f is not None]
        if not started:
            return None
        return started[0] if len(started) == 1 else lambda: [f() for f in started]

    def poll(self) -> None:
        """For waiters in this process: take over from holders that died, and start those
        whose lock was handed over by another process."""
        with self._mu:
            mine = list(self._local)
        if not mine:
            return
        now = time.time()
        with self.db.transaction(serial=True) as tx:
            for row in tx.rows(f"SELECT l.*, {LIVENESS_COLUMNS} FROM locks l {_JOIN}"):
                if not self._holds(row, now):
                    tx.execute("DELETE FROM locks WHERE key = ?", (row["key"],))
            self._grant(tx, now)
            marks = ",".join("?" * len(mine))
            got = tx.rows(f"SELECT execution_id FROM locks WHERE execution_id IN ({marks})", mine)
        start = self.starter([r["execution_id"] for r in got])
        if start is not None:
            start()

    # -- internals ---------------------------------------------------------------------------------

    def _holds(self, row: dict[str, Any], now: float) -> bool:
        """A lock row still held: its lease is current and its replica not known dead."""
        if row["replica"] == self.replicas.id:
            return True  # ours: we know we are alive
        live = {**row, "p_lease": row["lease_until"]}  # the lock's own lease
        return row["lease_until"] >= now and self.replicas.alive(live, now)

    def _blocker(self, tx: Tx, key: LockKey, now: float, *, take_over: bool) -> Holder | None:
        _, family, scope, vkey = encode(key)
        rows = tx.rows(
            f"SELECT l.*, {LIVENESS_COLUMNS} FROM locks l {_JOIN}"
            " WHERE l.scope = ? AND l.vkey = ? ORDER BY l.since",
            (scope, vkey),
        )
        for row in rows:
            if not _overlap(row["family"], family):
                continue
            if not self._holds(row, now):
                if take_over:  # the holder's lease expired: the lock is free
                    tx.execute("DELETE FROM locks WHERE key = ?", (row["key"],))
                continue
            return Holder(row["execution_id"], row["ref"], row["requester"], row["since"])
        return None

    def _grant(self, tx: Tx, now: float) -> list[str]:
        """Hand free locks to the first live waiters in line; their execution ids."""
        granted = []
        waiters = tx.rows(
            f"SELECT w.*, {LIVENESS_COLUMNS} FROM lock_waiters w"
            " LEFT JOIN replicas p ON p.id = w.replica ORDER BY w.seq"
        )
        for w in waiters:
            if w["replica"] != self.replicas.id and not self.replicas.alive(w, now):
                tx.execute("DELETE FROM lock_waiters WHERE seq = ?", (w["seq"],))
                continue
            if self._blocker(tx, decode(w["key"]), now, take_over=False) is not None:
                continue
            holder = Holder(w["execution_id"], w["ref"], w["requester"], now)
            self._insert(
                tx, w["key"], w["family"], w["scope"], w["vkey"], holder, w["replica"], now
            )
            tx.execute("DELETE FROM lock_waiters WHERE seq = ?", (w["seq"],))
            granted.append(w["execution_id"])
        return granted

    def _insert(
        self, tx: Tx, k: str, family: str, scope: str, vkey: str, holder: Holder, replica: str,
        now: float,
    ) -> None:  # fmt: skip
        tx.execute(
            "INSERT INTO locks (key, family, scope, vkey, execution_id, ref, requester, since,"
            " replica, lease_until) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (k, family, scope, vkey, holder.execution_id, holder.ref, holder.requester,
             holder.since, replica, self.replicas.lease_from(now)),
        )  # fmt: skip


_JOIN = "LEFT JOIN replicas p ON p.id = l.replica"
