"""Controlling executions after they started: cancel one, drain on SIGTERM, recover after a
crash. Kept apart from the request pipeline (``marvin.runtime.app``), which delegates here.

Cancel and recovery work across processes: a cancel for a job another process (or replica)
runs is written to the store's running-job table, and that process withdraws it on its next
poll (``withdraw``); recovery marks interrupted only executions whose owning replica is dead
(its lease expired, or on this host its process is gone)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from marvin.core.facade import Outcome
from marvin.core.model import User
from marvin.runtime import execution
from marvin.runtime.audit import Attempt

if TYPE_CHECKING:
    from marvin.runtime.jobs import Job
    from marvin.runtime.parts import Runtime

__all__ = ["cancel", "cancel_outcome", "withdraw", "drain", "recover"]

log = structlog.get_logger("marvin")
AWAITING_APPROVAL = "awaiting_approval"  # an execution held for two-person approval


def cancel(rt: Runtime, ex_id: str, by: User) -> str:
    """Cancel for the requester or a member of ``jobs.cancel_groups``; returns the answer
    for the person asking. Queued: removed before it runs. Running: cooperative."""
    return cancel_outcome(rt, ex_id, by).message


def cancel_outcome(rt: Runtime, ex_id: str, by: User) -> Outcome:
    """``cancel`` with its kind: accepted (removed, or asked to stop), unknown, finished
    (already over, or abandoned and beyond reach) or forbidden."""
    ex_id = ex_id.strip().lower()
    job = rt.jobs.get(ex_id)
    remote = rt.jobs.running.get(ex_id) if job is None else None
    if remote is not None and remote["replica"] != rt.owner:
        return _cancel_elsewhere(rt, remote, by)
    if job is None:
        row = rt.store.get(ex_id)
        if row is None or not _may_cancel(rt, by, row["user_id"], row["email"]):
            # As `status` answers: the same for "no such id" and "not yours" (ids are no
            # oracle for someone else's past commands); asking about another's is audited.
            if row is not None:
                rt.recorder.record(
                    "cancel_refused",
                    Attempt(by, row["ref"]),
                    execution_id=ex_id,
                    detail="cancel of another user's finished execution",
                )
            text = (
                f"I can't find `{ex_id}` among your running executions. "
                "Say `jobs` to see what is running."
            )
            return Outcome("unknown", text, ex_id)
        if row["state"] == AWAITING_APPROVAL:
            return _withdraw_request(rt, row, by)
        text = f"`{ex_id}` ({row['ref']}) is not running: it {row['state'].replace('_', ' ')}."
        return Outcome("finished", text, ex_id, row["ref"])
    ref = job.command.ref
    asker = Attempt(by, ref, job.message.channel)
    if not _may_cancel(rt, by, job.user_id, job.requester):
        return _not_yours(rt, asker, ex_id, job.requester)
    rt.recorder.record("cancel_requested", asker, execution_id=ex_id)
    return withdraw(rt, job, by.email or by.id)


def _may_cancel(rt: Runtime, by: User, user_id: str, requester: str | None) -> bool:
    """The requester (by user id or email), or a member of ``jobs.cancel_groups``."""
    own = by.id == user_id or bool(by.email and (requester or "").lower() == by.email.lower())
    return own or bool(rt.jobs.settings.cancel_groups & {g.lower() for g in by.groups})


def _not_yours(rt: Runtime, asker: Attempt, ex_id: str, requester: str) -> Outcome:
    """A running job someone else asked for: refused, audited, and who may say so."""
    rt.recorder.record(
        "cancel_refused", asker, execution_id=ex_id, detail=f"requested by {requester}"
    )
    groups = rt.jobs.settings.cancel_groups
    extra = f" or members of {', '.join(sorted(groups))}" if groups else ""
    text = f"`{ex_id}` ({asker.ref}) was started by {requester}; only they{extra} can cancel it."
    return Outcome("forbidden", text, ex_id, asker.ref)


def _withdraw_request(rt: Runtime, row: Mapping[str, Any], by: User) -> Outcome:
    """Cancel a request still awaiting two-person approval: it will not run, and a later
    press on its buttons finds it decided."""
    ex_id, ref, who = row["id"], row["ref"], by.email or by.id
    if not rt.store.close_approval(ex_id, "cancelled", who):
        return Outcome("finished", f"`{ex_id}` ({ref}) was decided meanwhile.", ex_id, ref)
    rt.recorder.record("cancel_requested", Attempt(by, ref), execution_id=ex_id)
    requester = User(row["user_id"], row["email"], source=row["source"])
    rt.recorder.outcome(
        ex_id,
        "cancelled",
        Attempt(requester, ref, row["channel"], row["params"]),
        f"cancelled by {who} while awaiting approval",
        at=time.time(),
        only_from=(AWAITING_APPROVAL,),
    )
    text = f"Cancelled `{ex_id}` ({ref}) while it awaited approval; it will not run."
    return Outcome("accepted", text, ex_id, ref)


def withdraw(rt: Runtime, job: Job, who: str) -> Outcome:
    """Stop ``job`` of this process for ``who`` (allowed already); the answer."""
    ex_id, ref = job.execution_id, job.command.ref
    stage = rt.jobs.withdraw(job, by=who)
    if stage == "removed":
        execution.finish(
            rt,
            job,
            "cancelled",
            execution.cancelled_text(job, started=False),
            f"cancelled before it started by {who}",
        )
        return Outcome("accepted", f"Cancelled `{ex_id}` ({ref}); it had not started.", ex_id, ref)
    if job.state == "abandoned":
        text = (
            f"`{ex_id}` ({ref}) timed out and ignored the request to stop; "
            "it can't be stopped from here, only by restarting Marvin."
        )
        return Outcome("finished", text, ex_id, ref)
    if stage == "finished":
        return Outcome("finished", f"`{ex_id}` ({ref}) has already ended.", ex_id, ref)
    text = f"Asked `{ex_id}` ({ref}) to stop; its thread will say when it has."
    return Outcome("accepted", text, ex_id, ref)


def _cancel_elsewhere(rt: Runtime, row: Mapping[str, Any], by: User) -> Outcome:
    """A job another process runs: check who may, then leave the request in the store."""
    ex_id, ref, requester = row["execution_id"], row["ref"], row["requester"]
    asker = Attempt(by, ref, None)
    if not _may_cancel(rt, by, row["user_id"], requester):
        return _not_yours(rt, asker, ex_id, requester)
    rt.recorder.record("cancel_requested", asker, execution_id=ex_id, detail="on another replica")
    if not rt.jobs.running.request_cancel(ex_id, by.email or by.id):
        return Outcome("accepted", f"`{ex_id}` ({ref}) is already being stopped.", ex_id, ref)
    text = (
        f"Asked `{ex_id}` ({ref}) to stop; it runs in another Marvin process, and its thread "
        "will say when it has."
    )
    return Outcome("accepted", text, ex_id, ref)


def drain(rt: Runtime, grace: float | None = None) -> list[str]:
    """Graceful stop: refuse new commands, withdraw queued ones, give running ones
    ``grace`` seconds (default ``jobs.grace_seconds``), then record the rest interrupted.
    Returns the ids recorded interrupted. Handlers still running are asked to stop."""
    grace = rt.jobs.settings.grace_seconds if grace is None else grace
    out: list[str] = []
    for job in rt.jobs.close():
        text = (
            f"I'm restarting: `{job.execution_id}` ({job.command.ref}) had not started and "
            "will not run. Please ask again in a minute."
        )
        if execution.finish(rt, job, "interrupted", text, "Marvin stopped before it ran"):
            out.append(job.execution_id)
    for job in rt.jobs.wait_idle(grace):
        text = (
            f"I'm restarting and `{job.execution_id}` ({job.command.ref}) was still running "
            f"after {grace:g} s, so it was interrupted part-way. Check what it changed "
            "before retrying."
        )
        if execution.finish(rt, job, "interrupted", text, "Marvin stopped while it ran"):
            out.append(job.execution_id)
        job.cancel_event.set()
    if out:
        log.warning("drained with interrupted executions", interrupted=out)
    return out


def recover(rt: Runtime, notify: Callable[[dict[str, Any]], None] | None = None) -> list[dict]:
    """At start-up: executions a dead Marvin process left queued or running are recorded
    ``interrupted``; ``notify(row)`` tells each requester (``row["notice"]`` is the text;
    ``row["channel"]``/``row["thread"]`` say where). Returns those rows."""
    out = []
    rt.replicas.reap()  # dead replicas' locks and running rows go first
    live = rt.replicas.live_ids()
    for row in rt.store.in_states("queued", "running"):
        if rt.jobs.get(row["id"]) is not None or row.get("owner") in live:
            continue
        was = row["state"]
        reason = f"Marvin (replica {row.get('owner')}, pid {row['pid']}) stopped while it was {was}"
        who = User(row["user_id"], row["email"], source=row["source"])
        attempt = Attempt(who, row["ref"], row["channel"], row["params"])
        # Its real run time ends at its last sign of life, not at this restart.
        trail = [a["ts"] for a in rt.store.audit_rows(row["id"])]
        last = max([row["created_at"], row.get("started_at") or 0, *trail])
        reason += f"; last seen {time.strftime('%H:%M:%S UTC', time.gmtime(last))}"
        if not rt.recorder.outcome(
            row["id"],
            "interrupted",
            attempt,
            reason,
            at=last,
            only_from=("queued", "running"),
        ):
            continue  # someone else recorded it first
        fresh = rt.store.get(row["id"]) or row
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


def interrupted_notice(row: Mapping[str, Any], was: str) -> str:
    head = f"`{row['id']}` ({row['ref']}, asked by {row['email'] or row['user_id']})"
    if was == "running":
        return (
            f"I restarted while {head} was running, so it was interrupted part-way. "
            "Check what it changed before retrying."
        )
    return f"I restarted before {head} started; it did not run. Ask again if you still need it."
