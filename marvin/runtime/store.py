"""Durable state: executions and the audit trail, in SQLite with schema versioning.

One connection guarded by a lock: writes are tiny and SQLite serialises them anyway, and WAL
mode lets readers (``history``, ``jobs``) run beside them.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

__all__ = ["Store", "new_execution_id", "TERMINAL"]

log = structlog.get_logger("marvin.audit")

TERMINAL = frozenset({"succeeded", "failed", "cancelled", "timed_out", "interrupted", "refused"})

# Each entry upgrades the schema by one version; never edit a released entry, append one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE executions (
        id TEXT PRIMARY KEY,
        ref TEXT NOT NULL,
        params TEXT NOT NULL,
        user_id TEXT NOT NULL,
        email TEXT,
        channel TEXT,
        thread TEXT,
        source TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        progress TEXT,
        result TEXT,
        pid INTEGER,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL
    );
    CREATE INDEX executions_user ON executions(user_id, created_at);
    CREATE INDEX executions_state ON executions(state);
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        event TEXT NOT NULL,
        execution_id TEXT,
        user_id TEXT,
        email TEXT,
        channel TEXT,
        ref TEXT,
        params TEXT,
        detail TEXT
    );
    CREATE INDEX audit_execution ON audit(execution_id);
    """,
    # 2: which process owns an execution (pid:start-time), for crash recovery.
    """
    ALTER TABLE executions ADD COLUMN owner TEXT;
    """,
    # 3: undo records (marvin.runtime.undo) and actions due later (marvin.runtime.due).
    """
    CREATE TABLE undo (
        execution_id TEXT PRIMARY KEY,
        ref TEXT NOT NULL,
        target TEXT NOT NULL,
        before TEXT NOT NULL,
        after TEXT NOT NULL,
        summary TEXT,
        created_at REAL NOT NULL,
        undone_by TEXT,
        undone_at REAL
    );
    CREATE TABLE due (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        due_at REAL NOT NULL,
        execution_id TEXT,
        state TEXT NOT NULL,
        claimed_by TEXT,
        created_at REAL NOT NULL,
        finished_at REAL,
        outcome TEXT
    );
    CREATE INDEX due_pending ON due(state, due_at);
    """,
    # 4: API keys (marvin.runtime.apikeys): only a hash of each secret is kept. Portable SQL
    # (DOUBLE PRECISION: PostgreSQL's REAL is too coarse for timestamps).
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        owner TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION,
        revoked_at DOUBLE PRECISION,
        last_used DOUBLE PRECISION
    );
    """,
    # 5: two-person approvals (marvin.runtime.approvals) and plans (marvin.runtime.plans).
    # ``params`` hold the real values (secrets too) only while open; closing clears them.
    """
    CREATE TABLE approvals (
        execution_id TEXT PRIMARY KEY,
        ref TEXT NOT NULL,
        params TEXT,
        binding TEXT NOT NULL,
        requester TEXT NOT NULL,
        origin TEXT NOT NULL,
        approvers TEXT NOT NULL,
        needed INTEGER NOT NULL,
        plan_id TEXT,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        closed_at REAL,
        closed_by TEXT
    );
    CREATE INDEX approvals_state ON approvals(state, expires_at);
    CREATE TABLE approval_votes (
        execution_id TEXT NOT NULL,
        voter TEXT NOT NULL,
        voter_id TEXT NOT NULL,
        vote TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (execution_id, voter)
    );
    CREATE TABLE plans (
        execution_id TEXT PRIMARY KEY,
        ref TEXT NOT NULL,
        params TEXT,
        requester TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        summary TEXT NOT NULL,
        created_at REAL NOT NULL,
        applied_by TEXT,
        applied_at REAL
    );
    """,
    # 6: the requesting message's ts, so a restart can mark that message interrupted.
    """
    ALTER TABLE executions ADD COLUMN ts TEXT;
    """,
]


def new_execution_id() -> str:
    return "ex-" + secrets.token_hex(3)


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._migrate()

    def _migrate(self) -> None:
        self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = self._db.execute("SELECT version FROM schema_version").fetchone()
        version = row[0] if row else 0
        if version > len(MIGRATIONS):
            raise RuntimeError(f"{self.path}: schema version {version} is newer than this Marvin")
        for n in range(version, len(MIGRATIONS)):
            self._db.executescript("BEGIN;" + MIGRATIONS[n] + ";COMMIT;")
            self._db.execute("DELETE FROM schema_version")
            self._db.execute("INSERT INTO schema_version VALUES (?)", (n + 1,))

    def create_execution(
        self,
        *,
        ref: str,
        params: Mapping[str, Any],
        user_id: str,
        email: str | None,
        channel: str | None,
        thread: str | None,
        source: str,
        state: str = "queued",
        pid: int | None = None,
        owner: str | None = None,
        ts: str | None = None,
    ) -> str:
        now = time.time()
        for _ in range(20):
            ex_id = new_execution_id()
            try:
                with self._lock:
                    self._db.execute(
                        "INSERT INTO executions (id, ref, params, user_id, email, channel, thread,"
                        " source, state, created_at, pid, owner, ts)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (
                            ex_id,
                            ref,
                            _json(params),
                            user_id,
                            email,
                            channel,
                            thread,
                            source,
                            state,
                            now,
                            pid,
                            owner,
                            ts,
                        ),
                    )
                return ex_id
            except sqlite3.IntegrityError:
                continue  # id collision: draw again
        raise RuntimeError("could not allocate an execution id")

    def update(self, ex_id: str, **fields: Any) -> None:
        if not fields:
            return
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._lock:
            self._db.execute(
                f"UPDATE executions SET {cols} WHERE id = ?", (*fields.values(), ex_id)
            )

    def transition(self, ex_id: str, from_states: tuple[str, ...], **fields: Any) -> bool:
        """Update only if the execution is still in one of ``from_states`` (recovery must not
        overwrite an outcome recorded meanwhile); True if it was updated."""
        cols = ", ".join(f"{k} = ?" for k in fields)
        marks = ",".join("?" * len(from_states))
        with self._lock:
            cur = self._db.execute(
                f"UPDATE executions SET {cols} WHERE id = ? AND state IN ({marks})",
                (*fields.values(), ex_id, *from_states),
            )
        return cur.rowcount > 0

    def get(self, ex_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM executions WHERE id = ?", (ex_id,)).fetchone()
        return _row(row)

    def recent(self, user_id: str | None = None, limit: int = 10) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM executions", ()
        if user_id is not None:
            sql, args = sql + " WHERE user_id = ?", (user_id,)
        with self._lock:
            rows = self._db.execute(
                sql + " ORDER BY created_at DESC LIMIT ?", (*args, limit)
            ).fetchall()
        return [_row(r) for r in rows]  # type: ignore[misc]

    def in_states(self, *states: str) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(states))
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM executions WHERE state IN ({marks}) ORDER BY created_at", states
            ).fetchall()
        return [_row(r) for r in rows]  # type: ignore[misc]

    def audit(
        self,
        event: str,
        *,
        execution_id: str | None = None,
        user_id: str | None = None,
        email: str | None = None,
        channel: str | None = None,
        ref: str | None = None,
        params: Mapping[str, Any] | None = None,
        detail: str | None = None,
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO audit (ts, event, execution_id, user_id, email, channel, ref,"
                " params, detail) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    time.time(),
                    event,
                    execution_id,
                    user_id,
                    email,
                    channel,
                    ref,
                    None if params is None else _json(params),
                    detail,
                ),
            )
        # One structured log line per audit row, for log pipelines (params arrive redacted).
        log.info(
            "audit",
            audit_event=event,  # structlog reserves "event" for the message
            execution_id=execution_id,
            user_id=user_id,
            email=email,
            channel=channel,
            ref=ref,
            params=params,
            detail=detail,
        )

    def audit_rows(self, execution_id: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM audit", ()
        if execution_id is not None:
            sql, args = sql + " WHERE execution_id = ?", (execution_id,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        return [dict(r) for r in rows]

    # -- API keys (marvin.runtime.apikeys) -------------------------------------------------------

    def add_api_key(
        self,
        *,
        key_id: str,
        name: str,
        owner: str,
        secret_hash: str,
        created_at: float,
        expires_at: float | None,
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys (id, name, owner, secret_hash, created_at, expires_at)"
                " VALUES (?,?,?,?,?,?)",
                (key_id, name, owner, secret_hash, created_at, expires_at),
            )

    def api_key(self, key_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return None if row is None else dict(row)

    def api_keys(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM api_keys ORDER BY created_at").fetchall()
        return [dict(r) for r in rows]

    def revoke_api_key(self, key_id: str, at: float) -> bool:
        """True if the key was active and is now revoked."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (at, key_id),
            )
        return cur.rowcount > 0

    def touch_api_key(self, key_id: str, at: float) -> None:
        with self._lock:
            self._db.execute("UPDATE api_keys SET last_used = ? WHERE id = ?", (at, key_id))

    # -- approvals and plans (marvin.runtime.approvals, marvin.runtime.plans) -----------------
    # Plain SQL with ? placeholders and compare-and-set updates: a press may reach any replica.

    def add_approval(self, row: Mapping[str, Any]) -> None:
        self._insert("approvals", row)

    def approval(self, ex_id: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM approvals WHERE execution_id = ?", (ex_id,))

    def open_approvals(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM approvals WHERE state = 'pending' ORDER BY created_at"
            ).fetchall()
        return [dict(r) for r in rows]

    def close_approval(self, ex_id: str, state: str, by: str | None) -> bool:
        """pending -> ``state`` (approved, rejected, expired, cancelled); False if it was
        closed already (by another press, replica or the expiry). The parameters go."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE approvals SET state = ?, closed_at = ?, closed_by = ?, params = NULL"
                " WHERE execution_id = ? AND state = 'pending'",
                (state, time.time(), by, ex_id),
            )
        return cur.rowcount > 0

    def add_vote(self, ex_id: str, voter: str, voter_id: str, vote: str) -> bool:
        """One vote per voter (an email) and approval; False if they voted already."""
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO approval_votes (execution_id, voter, voter_id, vote, at)"
                    " VALUES (?,?,?,?,?)",
                    (ex_id, voter, voter_id, vote, time.time()),
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def votes(self, ex_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM approval_votes WHERE execution_id = ? ORDER BY at", (ex_id,)
            ).fetchall()
        return [dict(r) for r in rows]

    def add_plan(self, row: Mapping[str, Any]) -> None:
        self._insert("plans", row)

    def plan(self, ex_id: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM plans WHERE execution_id = ?", (ex_id,))

    def claim_plan(self, ex_id: str, by: str) -> bool:
        """Mark a plan applied by execution ``by``; False if it was applied already."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE plans SET applied_by = ?, applied_at = ?, params = NULL"
                " WHERE execution_id = ? AND applied_by IS NULL",
                (by, time.time(), ex_id),
            )
        return cur.rowcount > 0

    def _insert(self, table: str, row: Mapping[str, Any]) -> None:
        cols = ", ".join(row)
        with self._lock:
            self._db.execute(
                f"INSERT INTO {table} ({cols}) VALUES ({','.join('?' * len(row))})",
                tuple(row.values()),
            )

    def _one(self, sql: str, args: tuple[Any, ...]) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return None if row is None else dict(row)

    def refusals(self, user_id: str | None, limit: int) -> list[dict[str, Any]]:
        """Refused requests that never became an execution (policy, identity), newest first:
        ``history`` lists them beside the executions. (Issue 9.)"""
        sql, args = "SELECT * FROM audit WHERE event = 'refused' AND execution_id IS NULL", ()
        if user_id is not None:
            sql, args = sql + " AND user_id = ?", (user_id,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit)).fetchall()
        return [dict(r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def _row(row: sqlite3.Row | None) -> dict[str, Any] | None:
    if row is None:
        return None
    out = dict(row)
    out["params"] = json.loads(out["params"])
    return out
