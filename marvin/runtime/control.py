"""Controlling executions after they started: cancel one, drain on SIGTERM, recover after a
crash. Kept apart from ``marvin.app``'s request pipeline; ``Marvin`` delegates here."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog

from marvin.core.model import User
from marvin.runtime import execution
from marvin.runtime.locks import interrupted_notice, orphaned

__all__ = ["cancel", "drain", "recover"]

log = structlog.get_logger("marvin")


def cancel(app: Any, ex_id: str, by: User) -> str:
    """Cancel for the requester or a member of ``jobs.cancel_groups``; returns the answer
    for the person asking. Queued: removed before it runs. Running: cooperative."""
    ex_id = ex_id.strip().lower()
    job = app.jobs.get(ex_id)
    if job is None:
        row = app.store.get(ex_id)
        if row is None:
            return f"I don't know an execution `{ex_id}`. Say `jobs` to see what is running."
        return f"`{ex_id}` ({row['ref']}) is not running: it {row['state'].replace('_', ' ')}."
    who = by.email or by.id
    own = by.id == job.user_id or bool(by.email and by.email.lower() == job.requester.lower())
    groups = app.settings.cancel_groups
    audit = dict(execution_id=ex_id, user_id=by.id, email=by.email, ref=job.command.ref)
    if not own and not (groups & {g.lower() for g in by.groups}):
        app.store.audit("cancel_refused", **audit, detail=f"requested by {job.requester}")
        extra = f" or members of {', '.join(sorted(groups))}" if groups else ""
        return (
            f"`{ex_id}` ({job.command.ref}) was started by {job.requester}; only they{extra} "
            "can cancel it."
        )
    app.store.audit("cancel_requested", **audit)
    stage = app.jobs.withdraw(job, by=who)
    if stage == "removed":
        execution.finish(
            app,
            job,
            "cancelled",
            execution.cancelled_text(job, started=False),
            f"cancelled before it started by {who}",
        )
        return f"Cancelled `{ex_id}` ({job.command.ref}); it had not started."
    if job.state == "abandoned":
        return (
            f"`{ex_id}` ({job.command.ref}) timed out and ignored the request to stop; "
            "it can't be stopped from here, only by restarting Marvin."
        )
    if stage == "finished":
        return f"`{ex_id}` ({job.command.ref}) has already ended."
    return f"Asked `{ex_id}` ({job.command.ref}) to stop; its thread will say when it has."


def drain(app: Any, grace: float | None = None) -> list[str]:
    """Graceful stop: refuse new commands, withdraw queued ones, give running ones
    ``grace`` seconds (default ``jobs.grace_seconds``), then record the rest interrupted.
    Returns the ids recorded interrupted. Handlers still running are asked to stop."""
    grace = app.settings.grace_seconds if grace is None else grace
    out: list[str] = []
    for job in app.jobs.close():
        text = (
            f"I'm restarting: `{job.execution_id}` ({job.command.ref}) had not started and "
            "will not run. Please ask again in a minute."
        )
        if execution.finish(app, job, "interrupted", text, "Marvin stopped before it ran"):
            out.append(job.execution_id)
    for job in app.jobs.wait_idle(grace):
        text = (
            f"I'm restarting and `{job.execution_id}` ({job.command.ref}) was still running "
            f"after {grace:g} s, so it was interrupted part-way. Check what it changed "
            "before retrying."
        )
        if execution.finish(app, job, "interrupted", text, "Marvin stopped while it ran"):
            out.append(job.execution_id)
        job.cancel_event.set()
    if out:
        log.warning("drained with interrupted executions", interrupted=out)
    return out


def recover(app: Any, notify: Callable[[dict[str, Any]], None] | None = None) -> list[dict]:
    """At start-up: executions a dead Marvin process left queued or running are recorded
    ``interrupted``; ``notify(row)`` tells each requester (``row["notice"]`` is the text;
    ``row["channel"]``/``row["thread"]`` say where). Returns those rows."""
    out = []
    for row in app.store.in_states("queued", "running"):
        if app.jobs.get(row["id"]) is not None or not orphaned(row, app.owner):
            continue
        was = row["state"]
        reason = f"Marvin (pid {row['pid']}) stopped while it was {was}"
        if not app.store.transition(
            row["id"],
            ("queued", "running"),
            state="interrupted",
            reason=reason,
            finished_at=time.time(),
        ):
            continue  # someone else recorded it first
        app.store.audit(
            "interrupted",
            execution_id=row["id"],
            user_id=row["user_id"],
            email=row["email"],
            channel=row["channel"],
            ref=row["ref"],
            detail=reason,
        )
        fresh = app.store.get(row["id"]) or row
        fresh["notice"] = interrupted_notice(fresh, was)
        out.append(fresh)
        if notify is not None:
            try:
                notify(fresh)
            except Exception:
                log.exception("could not tell the requester", execution_id=row["id"])
    if out:
        log.warning("recovered interrupted executions", ids=[r["id"] for r in out])
    return out
