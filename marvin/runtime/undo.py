"""Undo, for any command that changes state.

A command opts in twice: its handler records, with its execution, what it changed and the
state before and after (``record_undo(ctx, ...)`` or ``ctx.record_undo(...)``), and the
command declares how to put the before-state back::

    def undo_set(ctx, record: UndoRecord) -> str:
        # compare-and-set: restore record.before only if the state is still record.after
        ...

    @undoable(undo_set)
    @command("config.set", ...)
    def set_config(ctx, key, value, environment):
        ...
        record_undo(ctx, target={"key": path}, before=old, after=new, summary="...")

The built-in ``undo <execution>`` (``marvin.builtins.undo``) runs the undo function as an
execution of the *original* command's ref, so the same policy rule, lock, confirmation and
MFA apply, with the undoer as requester; it is audited on both executions. Each record can be
undone once (``claim``). States must be JSON; a command that cannot keep a state safely (a
secret value) records nothing and is then not undoable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from marvin.runtime.sql import Database
from marvin.runtime.statedb import state_db, state_target

__all__ = ["UndoRecord", "UndoLog", "undoable", "undo_function", "record_undo", "UNDO_ATTR"]

UNDO_ATTR = "__marvin_undo__"
F = TypeVar("F", bound=Callable[..., Any])
UndoFunction = Callable[[Any, "UndoRecord"], Any]


def undoable(undo: UndoFunction) -> Callable[[F], F]:
    """Declare ``undo(ctx, record)`` as the way to undo the decorated command's executions.
    Like ``@command`` it only marks the function (stack it above or below ``@command``).
    ``undo`` raises ``ActionError`` (or any exception) to refuse, e.g. when the state changed
    since; its return value is the result message."""

    def mark(fn: F) -> F:
        setattr(fn, UNDO_ATTR, undo)
        return fn

    return mark


def undo_function(handler: Callable[..., Any]) -> UndoFunction | None:
    return getattr(handler, UNDO_ATTR, None)


@dataclass(frozen=True)
class UndoRecord:
    execution_id: str
    ref: str
    target: dict[str, Any]  # what was changed, in the command's own terms
    before: Any
    after: Any
    summary: str
    created_at: float
    undone_by: str | None = None
    undone_at: float | None = None


class UndoLog:
    """The ``undo`` table of the store."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    def at(cls, path: str | Path) -> UndoLog:
        return cls(state_db(path))

    def record(
        self,
        execution_id: str,
        ref: str,
        *,
        target: dict[str, Any],
        before: Any,
        after: Any,
        summary: str = "",
    ) -> None:
        """Keep how to undo ``execution_id`` (one record per execution; a later call wins)."""
        self.db.execute(
            "INSERT INTO undo (execution_id, ref, target, before, after, summary, created_at)"
            " VALUES (?,?,?,?,?,?,?) ON CONFLICT (execution_id) DO UPDATE SET"
            " ref = excluded.ref, target = excluded.target, before = excluded.before,"
            " after = excluded.after, summary = excluded.summary,"
            " created_at = excluded.created_at, undone_by = NULL, undone_at = NULL",
            (
                execution_id,
                ref,
                json.dumps(target, sort_keys=True),
                json.dumps(before),
                json.dumps(after),
                summary,
                time.time(),
            ),
        )

    def get(self, execution_id: str) -> UndoRecord | None:
        rows = self.db.rows("SELECT * FROM undo WHERE execution_id = ?", (execution_id,))
        if not rows:
            return None
        r = rows[0]
        return UndoRecord(
            execution_id=r["execution_id"],
            ref=r["ref"],
            target=json.loads(r["target"]),
            before=json.loads(r["before"]),
            after=json.loads(r["after"]),
            summary=r["summary"] or "",
            created_at=r["created_at"],
            undone_by=r["undone_by"],
            undone_at=r["undone_at"],
        )

    def claim(self, execution_id: str, by: str) -> bool:
        """Mark ``execution_id`` undone by ``by`` unless someone already did (two undos of
        one execution never both run)."""
        return (
            self.db.execute(
                "UPDATE undo SET undone_by = ?, undone_at = ? WHERE execution_id = ?"
                " AND undone_by IS NULL",
                (by, time.time(), execution_id),
            )
            > 0
        )

    def release(self, execution_id: str, by: str) -> None:
        """The undo ``by`` did not happen after all: the record may be undone again."""
        self.db.execute(
            "UPDATE undo SET undone_by = NULL, undone_at = NULL WHERE execution_id = ?"
            " AND undone_by = ?",
            (execution_id, by),
        )


def record_undo(
    ctx: Any, *, target: dict[str, Any], before: Any, after: Any, summary: str = ""
) -> None:
    """From a handler: record how to undo this execution. ``before`` and ``after`` are the
    JSON states the command's undo function compares and restores."""
    log = UndoLog.at(state_target(ctx.services.config))
    log.record(
        ctx.execution_id,
        ctx.command.ref,
        target=target,
        before=before,
        after=after,
        summary=summary,
    )
    ctx.log.info("undo recorded", target=target)
