"""The running-job table: every queued, waiting and running execution of every process on the
store, with its owning replica (whose heartbeat keeps it alive).

What reads it: admission (the per-user cap counts a user's jobs on every replica, in the same
transaction as the lock), ``jobs`` (lists other processes' jobs too) and ``cancel`` (a request
for a job another replica runs is written here; that replica sees it on its next poll).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from marvin.runtime.locks import Holder, LockKey
from marvin.runtime.replicas import LIVENESS_COLUMNS, Replicas
from marvin.runtime.shared_locks import SharedLocks, decode, encode
from marvin.runtime.sql import Database

__all__ = ["RunningTable", "Admission"]


@dataclass(frozen=True)
class Admission:
    """The store's answer: ``cap`` (the user's live execution ids), or the lock's holder
    (``waiting``: in line behind it; otherwise refused), or neither: admitted."""

    cap: list[str] | None = None
    holder: Holder | None = None
    waiting: bool = False

    @property
    def admitted(self) -> bool:
        return self.cap is None and (self.holder is None or self.waiting)


class RunningTable:
    def __init__(self, db: Database, replicas: Replicas, locks: SharedLocks) -> None:
        self.db, self.replicas, self.locks = db, replicas, locks

    def admit(
        self,
        *,
        execution_id: str,
        user_id: str,
        ref: str,
        requester: str,
        shown: Mapping[str, Any],
        cap: int,
        lock: LockKey | None,
        on_free: Callable[[], None] | None,
    ) -> Admission:
        """Per-user cap, then the lock, then the row: one serial transaction, so two
        replicas never both admit a user's fifth job or both take one lock."""
        now = time.time()
        with self.db.transaction(serial=True) as tx:
            rows = tx.rows(
                f"SELECT r.execution_id, r.replica, {LIVENESS_COLUMNS} FROM running r"
                " LEFT JOIN replicas p ON p.id = r.replica"
                " WHERE r.user_id = ? AND r.state != 'abandoned' ORDER BY r.created_at",
                (user_id,),
            )
            mine = [r["execution_id"] for r in rows if self._live(r, now)]
            if len(mine) >= cap:
                return Admission(cap=mine)
            holder = None
            if lock is not None:
                me = Holder(execution_id, ref, requester, now)
                holder = self.locks.acquire_in(tx, lock, me, on_free)
                if holder is not None and on_free is None:
                    return Admission(holder=holder)
            tx.execute(
                "INSERT INTO running (execution_id, user_id, ref, requester, shown, state, lock,"
                " lock_key, replica, created_at, heartbeat_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    execution_id, user_id, ref, requester, json.dumps(dict(shown), default=str),
                    "waiting" if holder else "queued", lock.describe() if lock else None,
                    encode(lock)[0] if lock else None, self.replicas.id, now, now,
                ),
            )  # fmt: skip
        return Admission(holder=holder, waiting=holder is not None)

    def set_state(self, execution_id: str, state: str, started: float | None = None) -> None:
        self.db.execute(
            "UPDATE running SET state = ?, started_at = COALESCE(?, started_at)"
            " WHERE execution_id = ?",
            (state, started, execution_id),
        )

    def release(self, execution_id: str, lock: LockKey | None, *, forget: bool) -> list[str]:
        """Free the lock (handing it on) and, with ``forget``, drop the row; the execution
        ids the lock passed to."""
        with self.db.transaction(serial=lock is not None) as tx:
            granted = self.locks.release_in(tx, lock, execution_id) if lock else []
            if forget:
                tx.execute("DELETE FROM running WHERE execution_id = ?", (execution_id,))
        return granted

    def request_cancel(self, execution_id: str, by: str) -> bool:
        return (
            self.db.execute(
                "UPDATE running SET cancel_by = ?, cancel_at = ? WHERE execution_id = ?"
                " AND cancel_by IS NULL",
                (by, time.time(), execution_id),
            )
            > 0
        )

    def cancel_requests(self) -> list[tuple[str, str]]:
        """(execution id, who asked) for this replica's jobs that someone asked to stop."""
        rows = self.db.rows(
            "SELECT execution_id, cancel_by FROM running WHERE replica = ?"
            " AND cancel_by IS NOT NULL",
            (self.replicas.id,),
        )
        return [(r["execution_id"], r["cancel_by"]) for r in rows]

    def get(self, execution_id: str) -> dict[str, Any] | None:
        """A live row (its replica alive), with the execution's progress."""
        rows = self._select("WHERE r.execution_id = ?", (execution_id,))
        return rows[0] if rows else None

    def live(self) -> list[dict[str, Any]]:
        return self._select("ORDER BY r.created_at", ())

    def _select(self, where: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        rows = self.db.rows(
            f"SELECT r.*, e.progress, {LIVENESS_COLUMNS} FROM running r"
            " LEFT JOIN replicas p ON p.id = r.replica"
            f" LEFT JOIN executions e ON e.id = r.execution_id {where}",
            args,
        )
        now = time.time()
        out = []
        for r in rows:
            if not self._live(r, now):
                continue
            r["shown"] = json.loads(r["shown"])
            if r["state"] == "waiting" and r["lock_key"]:
                held = self.locks.holder(decode(r["lock_key"]))
                r["lock_holder"] = held.execution_id if held else None
            out.append(r)
        return out

    def _live(self, row: Mapping[str, Any], now: float) -> bool:
        return row["replica"] == self.replicas.id or self.replicas.alive(row, now)
