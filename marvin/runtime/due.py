"""Actions due later, which survive a restart: "turn maintenance mode off in 30 minutes",
later "scale back down at 18:00".

A handler stores the action (``DueLog.add``: a kind, a JSON payload, when, and the execution
it belongs to); the action module that owns the kind registers what to do with
``@due_handler(kind)``: ``fn(services, payload) -> notice`` (None: nothing to say). One small
scheduler thread per process (``start``) runs what is due: at start-up first (so a window that
expired while Marvin was down ends now), then whenever the next one is due. Each action is
claimed before it runs (two Marvin processes never both run it); a failure releases it for a
retry. The notice goes to the thread the originating command was asked in, and the audit trail
of that execution records the outcome.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from marvin.config import load_section_owners
from marvin.core.model import User
from marvin.runtime.audit import Attempt, Recorder
from marvin.runtime.owner import process_identity
from marvin.runtime.statedb import state_db

if TYPE_CHECKING:
    from marvin.runtime.parts import Runtime

__all__ = ["due_handler", "DueLog", "run_due", "start", "DueScheduler", "POLL_SECONDS"]

log = structlog.get_logger("marvin.due")

DueHandler = Callable[[Any, dict[str, Any]], str | None]
HANDLERS: dict[str, DueHandler] = {}
POLL_SECONDS = 30.0  # picks up actions another process (``marvin run``) stored
RETRY_SECONDS = 30.0  # after a failure (Consul down): try again this much later
_wake = threading.Event()  # set when this process stores a new action


def due_handler(kind: str) -> Callable[[DueHandler], DueHandler]:
    def register(fn: DueHandler) -> DueHandler:
        HANDLERS[kind] = fn
        return fn

    return register


class DueLog:
    """The ``due`` table: pending -> running -> done | obsolete (or back to pending)."""

    def __init__(self, path: str | Path) -> None:
        self.db = state_db(path)

    def add(self, kind: str, payload: dict[str, Any], due_at: float, execution_id: str) -> int:
        row = self.db.insert(
            "INSERT INTO due (kind, payload, due_at, execution_id, state, created_at)"
            " VALUES (?,?,?,?,'pending',?)",
            (kind, json.dumps(payload, sort_keys=True), due_at, execution_id, time.time()),
        )
        _wake.set()
        return row

    def drop(self, kind: str, execution_id: str) -> None:
        """The action will not be needed (its command was undone)."""
        self.db.execute(
            "UPDATE due SET state = 'obsolete', finished_at = ? WHERE kind = ? AND"
            " execution_id = ? AND state = 'pending'",
            (time.time(), kind, execution_id),
        )

    def pending(self) -> list[dict[str, Any]]:
        rows = self.db.rows("SELECT * FROM due WHERE state = 'pending' ORDER BY due_at")
        for r in rows:
            r["payload"] = json.loads(r["payload"])
        return rows

    def claim(self, row_id: int, owner: str) -> bool:
        return (
            self.db.execute(
                "UPDATE due SET state = 'running', claimed_by = ? WHERE id = ?"
                " AND state = 'pending'",
                (owner, row_id),
            )
            > 0
        )

    def finish(self, row_id: int, state: str, outcome: str | None) -> None:
        self.db.execute(
            "UPDATE due SET state = ?, outcome = ?, finished_at = ? WHERE id = ?",
            (state, outcome, time.time(), row_id),
        )

    def release(self, row_id: int, retry_at: float) -> None:
        self.db.execute(
            "UPDATE due SET state = 'pending', claimed_by = NULL, due_at = ? WHERE id = ?",
            (retry_at, row_id),
        )

    def recover(self, owner_alive: Callable[[str], bool]) -> None:
        """Actions left 'running' by a process that died go back to pending."""
        for r in self.db.rows("SELECT id, claimed_by FROM due WHERE state = 'running'"):
            if not owner_alive(r["claimed_by"] or ""):
                self.db.execute(
                    "UPDATE due SET state = 'pending', claimed_by = NULL WHERE id = ?"
                    " AND state = 'running'",
                    (r["id"],),
                )


def run_due(
    rt: Runtime, notify: Callable[[dict[str, Any]], None] | None, now: float | None = None
) -> float | None:
    """Run every pending action due by ``now``; returns when the next one is due (or None).
    Uses the runtime's ``store`` (executions, audit, path), ``services`` and ``owner``."""
    load_section_owners()  # the action modules register their kinds on import
    dues = DueLog(rt.store.path)
    now = time.time() if now is None else now
    owner = rt.owner or _me()
    nxt: float | None = None
    for row in dues.pending():
        if row["due_at"] > now:
            nxt = row["due_at"] if nxt is None else min(nxt, row["due_at"])
            continue
        if not dues.claim(row["id"], owner):
            continue
        handler = HANDLERS.get(row["kind"])
        if handler is None:
            dues.finish(row["id"], "obsolete", f"no handler for {row['kind']}")
            continue
        try:
            notice = handler(rt.services, row["payload"])
        except Exception as exc:
            retry = time.time() + RETRY_SECONDS
            dues.release(row["id"], retry)
            nxt = retry if nxt is None else min(nxt, retry)
            log.warning("due action failed; will retry", kind=row["kind"], error=str(exc)[:300])
            continue
        dues.finish(row["id"], "done", notice)
        origin = rt.store.get(row["execution_id"]) or {}
        Recorder(rt.store).record(
            "due_done",
            Attempt(User("marvin", None), row["kind"], origin.get("channel")),
            execution_id=row["execution_id"],
            detail=(notice or "nothing to do")[:300],
        )
        log.info("due action ran", kind=row["kind"], execution_id=row["execution_id"])
        if notice and notify is not None:
            try:
                notify(
                    {
                        "id": row["execution_id"],
                        "ref": origin.get("ref"),
                        "channel": origin.get("channel"),
                        "thread": origin.get("thread"),
                        "notice": notice,
                    }
                )
            except Exception:
                log.exception("could not deliver a due notice", execution_id=row["execution_id"])
    return nxt


class DueScheduler:
    """One daemon thread: run what is due, sleep until the next (or a new) action."""

    def __init__(self, rt: Runtime, notify: Callable[[dict[str, Any]], None] | None) -> None:
        self.rt, self.notify = rt, notify
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="marvin-due", daemon=True)

    def start(self) -> DueScheduler:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        _wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            _wake.clear()
            try:
                nxt = run_due(self.rt, self.notify)
            except Exception:
                log.exception("due scan failed")
                nxt = None
            wait = POLL_SECONDS if nxt is None else max(0.05, min(POLL_SECONDS, nxt - time.time()))
            _wake.wait(wait)


def start(rt: Runtime, notify: Callable[[dict[str, Any]], None] | None) -> DueScheduler:
    """Start the scheduler (``Marvin.start`` does, after recovering executions)."""
    live = rt.replicas.live_ids() if rt.replicas is not None else set()
    DueLog(rt.store.path).recover(lambda owner: owner in live)
    return DueScheduler(rt, notify).start()


def _me() -> str:
    return process_identity(os.getpid()) or str(os.getpid())
