"""Durable state: executions and the audit trail, with schema versioning, in SQLite (the
embedded default) or PostgreSQL (``state.url: postgresql://...``, shared by replicas).

``marvin.runtime.sql`` runs the SQL on either backend; the state that must hold across
processes (replicas and their leases, event claims, locks, the running-job table, pending
confirmations) is in the tables of migration 4, used by ``marvin.runtime.shared``.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from marvin.runtime.sql import Database, open_database
from marvin.runtime.statedb import register, unregister

__all__ = ["Store", "new_execution_id", "new_replica_id", "TERMINAL"]

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
    # 7: state shared by every process on the store (marvin.runtime.shared): replicas and
    # their leases, the replica behind each audit row, event claims (dedupe), environment
    # locks and their line, the running-job table (cap, jobs, cancel) and open confirmations.
    """
    ALTER TABLE audit ADD COLUMN replica TEXT;
    CREATE TABLE replicas (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        identity TEXT,
        started_at REAL NOT NULL,
        heartbeat_at REAL NOT NULL,
        lease_until REAL NOT NULL,
        stopped_at REAL
    );
    CREATE TABLE claims (
        key TEXT PRIMARY KEY,
        replica TEXT,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX claims_expiry ON claims(expires_at);
    CREATE TABLE locks (
        key TEXT PRIMARY KEY,
        family TEXT NOT NULL,
        scope TEXT NOT NULL,
        vkey TEXT NOT NULL,
        execution_id TEXT NOT NULL,
        ref TEXT NOT NULL,
        requester TEXT NOT NULL,
        since REAL NOT NULL,
        replica TEXT NOT NULL,
        lease_until REAL NOT NULL
    );
    CREATE INDEX locks_scope ON locks(scope, vkey);
    CREATE TABLE lock_waiters (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL,
        family TEXT NOT NULL,
        scope TEXT NOT NULL,
        vkey TEXT NOT NULL,
        execution_id TEXT NOT NULL UNIQUE,
        ref TEXT NOT NULL,
        requester TEXT NOT NULL,
        replica TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE running (
        execution_id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        ref TEXT NOT NULL,
        requester TEXT NOT NULL,
        shown TEXT NOT NULL,
        state TEXT NOT NULL,
        lock TEXT,
        lock_key TEXT,
        replica TEXT NOT NULL,
        created_at REAL NOT NULL,
        started_at REAL,
        heartbeat_at REAL NOT NULL,
        cancel_by TEXT,
        cancel_at REAL
    );
    CREATE INDEX running_user ON running(user_id);
    CREATE INDEX running_replica ON running(replica);
    CREATE TABLE confirmations (
        token TEXT PRIMARY KEY,
        requester TEXT NOT NULL,
        prompt TEXT NOT NULL,
        request TEXT,
        channel TEXT,
        ts TEXT,
        thread_ts TEXT,
        replica TEXT,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        answered_by TEXT
    );
    CREATE INDEX confirmations_requester ON confirmations(requester, state);
    """,
]


def new_execution_id() -> str:
    return "ex-" + secrets.token_hex(3)


def new_replica_id() -> str:
    """Unique per process start: host name, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


class Store:
    """Executions and the audit trail on one ``Database``. ``target`` is a SQLite path or a
    ``postgresql://`` URL; ``replica`` names this process in the rows it writes."""

    def __init__(
        self, target: str | Path, *, pool_size: int = 8, replica: str | None = None
    ) -> None:
        self.path = str(target)  # the SQLite file or the URL (kept as .path for callers)
        self.db: Database = open_database(self.path, pool_size=pool_size)
        self.replica = replica or new_replica_id()
        self._migrate()
        register(self.path, self.db)  # undo and due use the same connections

    def _migrate(self) -> None:
        with self.db.transaction(serial=True) as tx:
            tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = tx.one("SELECT version FROM schema_version")
            version = row["version"] if row else 0
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"{self.path}: schema version {version} is newer than this Marvin"
                )
            for n in range(version, len(MIGRATIONS)):
                for stmt in self.db.ddl(MIGRATIONS[n]):
                    tx.execute(stmt)
            if version != len(MIGRATIONS):
                tx.execute("DELETE FROM schema_version")
                tx.execute("INSERT INTO schema_version VALUES (?)", (len(MIGRATIONS),))

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
            added = self.db.execute(
                "INSERT INTO executions (id, ref, params, user_id, email, channel, thread,"
                " source, state, created_at, pid, owner, ts)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING",
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
            if added:
                return ex_id
            # id collision: draw again
        raise RuntimeError("could not allocate an execution id")

    def update(self, ex_id: str, **fields: Any) -> None:
        if not fields:
            return
        cols = ", ".join(f"{k} = ?" for k in fields)
        self.db.execute(f"UPDATE executions SET {cols} WHERE id = ?", (*fields.values(), ex_id))

    def transition(self, ex_id: str, from_states: tuple[str, ...], **fields: Any) -> bool:
        """Update only if the execution is still in one of ``from_states`` (recovery must not
        overwrite an outcome recorded meanwhile); True if it was updated."""
        cols = ", ".join(f"{k} = ?" for k in fields)
        marks = ",".join("?" * len(from_states))
        changed = self.db.execute(
            f"UPDATE executions SET {cols} WHERE id = ? AND state IN ({marks})",
            (*fields.values(), ex_id, *from_states),
        )
        return changed > 0

    def get(self, ex_id: str) -> dict[str, Any] | None:
        return _row(self.db.one("SELECT * FROM executions WHERE id = ?", (ex_id,)))

    def recent(self, user_id: str | None = None, limit: int = 10) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM executions", ()
        if user_id is not None:
            sql, args = sql + " WHERE user_id = ?", (user_id,)
        rows = self.db.rows(sql + " ORDER BY created_at DESC LIMIT ?", (*args, limit))
        return [_row(r) for r in rows]  # type: ignore[misc]

    def in_states(self, *states: str) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(states))
        rows = self.db.rows(
            f"SELECT * FROM executions WHERE state IN ({marks}) ORDER BY created_at", states
        )
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
        self.db.execute(
            "INSERT INTO audit (ts, event, execution_id, user_id, email, channel, ref,"
            " params, detail, replica) VALUES (?,?,?,?,?,?,?,?,?,?)",
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
                self.replica,
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
            replica=self.replica,
        )

    def audit_rows(self, execution_id: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM audit", ()
        if execution_id is not None:
            sql, args = sql + " WHERE execution_id = ?", (execution_id,)
        return self.db.rows(sql + " ORDER BY seq", args)

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
        self.db.execute(
            "INSERT INTO api_keys (id, name, owner, secret_hash, created_at, expires_at)"
            " VALUES (?,?,?,?,?,?)",
            (key_id, name, owner, secret_hash, created_at, expires_at),
        )

    def api_key(self, key_id: str) -> dict[str, Any] | None:
        return self.db.one("SELECT * FROM api_keys WHERE id = ?", (key_id,))

    def api_keys(self) -> list[dict[str, Any]]:
        return self.db.rows("SELECT * FROM api_keys ORDER BY created_at")

    def revoke_api_key(self, key_id: str, at: float) -> bool:
        """True if the key was active and is now revoked."""
        return (
            self.db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (at, key_id),
            )
            > 0
        )

    def touch_api_key(self, key_id: str, at: float) -> None:
        self.db.execute("UPDATE api_keys SET last_used = ? WHERE id = ?", (at, key_id))

    # -- approvals and plans (marvin.runtime.approvals, marvin.runtime.plans) -----------------
    # Compare-and-set updates: a press may reach any replica.

    def add_approval(self, row: Mapping[str, Any]) -> None:
        self._insert("approvals", row)

    def approval(self, ex_id: str) -> dict[str, Any] | None:
        return self.db.one("SELECT * FROM approvals WHERE execution_id = ?", (ex_id,))

    def open_approvals(self) -> list[dict[str, Any]]:
        return self.db.rows("SELECT * FROM approvals WHERE state = 'pending' ORDER BY created_at")

    def close_approval(self, ex_id: str, state: str, by: str | None) -> bool:
        """pending -> ``state`` (approved, rejected, expired, cancelled); False if it was
        closed already (by another press, replica or the expiry). The parameters go."""
        changed = self.db.execute(
            "UPDATE approvals SET state = ?, closed_at = ?, closed_by = ?, params = NULL"
            " WHERE execution_id = ? AND state = 'pending'",
            (state, time.time(), by, ex_id),
        )
        return changed > 0

    def add_vote(self, ex_id: str, voter: str, voter_id: str, vote: str) -> bool:
        """One vote per voter (an email) and approval; False if they voted already."""
        added = self.db.execute(
            "INSERT INTO approval_votes (execution_id, voter, voter_id, vote, at)"
            " VALUES (?,?,?,?,?) ON CONFLICT (execution_id, voter) DO NOTHING",
            (ex_id, voter, voter_id, vote, time.time()),
        )
        return added > 0

    def votes(self, ex_id: str) -> list[dict[str, Any]]:
        return self.db.rows(
            "SELECT * FROM approval_votes WHERE execution_id = ? ORDER BY at", (ex_id,)
        )

    def add_plan(self, row: Mapping[str, Any]) -> None:
        self._insert("plans", row)

    def plan(self, ex_id: str) -> dict[str, Any] | None:
        return self.db.one("SELECT * FROM plans WHERE execution_id = ?", (ex_id,))

    def expire_plans(self, before: float) -> int:
        """Forget the parameters of plans made before ``before`` and never applied."""
        return self.db.execute(
            "UPDATE plans SET params = NULL WHERE applied_by IS NULL AND params IS NOT NULL"
            " AND created_at < ?",
            (before,),
        )

    def claim_plan(self, ex_id: str, by: str) -> bool:
        """Mark a plan applied by execution ``by``; False if it was applied already."""
        changed = self.db.execute(
            "UPDATE plans SET applied_by = ?, applied_at = ?, params = NULL"
            " WHERE execution_id = ? AND applied_by IS NULL",
            (by, time.time(), ex_id),
        )
        return changed > 0

    def _insert(self, table: str, row: Mapping[str, Any]) -> None:
        cols = ", ".join(row)
        marks = ",".join("?" * len(row))
        self.db.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", tuple(row.values()))

    def refusals(self, user_id: str | None, limit: int) -> list[dict[str, Any]]:
        """Refused requests that never became an execution (policy, identity), newest first:
        ``history`` lists them beside the executions."""
        sql, args = "SELECT * FROM audit WHERE event = 'refused' AND execution_id IS NULL", ()
        if user_id is not None:
            sql, args = sql + " AND user_id = ?", (user_id,)
        return self.db.rows(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit))

    def close(self) -> None:
        unregister(self.db)
        self.db.close()


def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def _row(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    out = dict(row)
    out["params"] = json.loads(out["params"])
    return out
