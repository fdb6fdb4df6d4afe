"""Two-person approval: a policy rule with ``approve: {groups: [...], count: N}`` holds the
request until N distinct members of those groups, none of them the requester, approve it.

- ``request`` (from the pipeline, after authorisation and any confirmation) creates the
  execution in state ``awaiting_approval`` and an open approval in the store, bound to the
  exact ref, parameters and requester by a hash (``binding``), and posts the request with
  Approve/Reject actions in the thread.
- ``vote`` (a button press, ``approve <id>`` in chat, ``marvin approve <id>`` on the CLI)
  identifies the voter afresh (no cache), refuses the requester and non-members (audited),
  keeps one vote per person; a reject ends it, the Nth approval closes it (compare-and-set:
  one replica wins) and starts the execution with the stored parameters after checking the
  binding. Policy, identity (groups) and the out-of-band checks run again before it runs.
- ``sweep`` expires what was not decided in time (default 30 minutes).

Everything lives in the store (a press may reach any replica); every step is audited with
both identities.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from marvin.core.authz import Refused
from marvin.core.facade import ResponderFor, Vote
from marvin.core.model import Action, JobView, Message, Reply, User, Where
from marvin.core.registry import Command
from marvin.core.text import age_text
from marvin.runtime.audit import Attempt

if TYPE_CHECKING:
    from marvin.core.authz import Decision
    from marvin.runtime.app import Marvin

__all__ = ["Vote", "binding", "request", "vote", "sweep", "views", "AWAITING", "SWEEP_SECONDS"]

log = structlog.get_logger("marvin.approvals")

AWAITING = "awaiting_approval"  # the execution's state while its approval is open
SYSTEM = User("marvin", None, source="marvin")  # who expires a request
SWEEP_SECONDS = 5.0  # how often a long-running Marvin looks for expired approvals


def binding(execution_id: str, ref: str, params: Mapping[str, Any], requester: str) -> str:
    """The hash an approval is bound to: the execution, the exact ref and parameters (as
    bound and normalised by the matcher) and the requester."""
    doc = {"execution": execution_id, "ref": ref, "params": params, "requester": requester}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def request(
    app: Marvin,
    msg: Message,
    cmd: Command,
    params: Mapping[str, Any],
    decision: Decision,
    attempt: Attempt,
    *,
    plan: str | None = None,
    plan_id: str | None = None,
) -> str:
    """Hold ``cmd`` for approval; returns the execution id the request got."""
    rt, user, rule = app.rt, msg.user, decision.approve
    assert rule is not None
    ex_id = app.record_execution(msg, cmd, attempt, state=AWAITING)
    email = (user.email or user.id).lower()
    now = time.time()
    bound = binding(ex_id, cmd.ref, params, email)
    requester = {"id": user.id, "email": user.email, "source": user.source, "via": user.via}
    requester["team_id"] = user.team_id
    origin = {"channel": msg.channel, "thread": msg.thread, "ts": msg.ts, "dm": msg.is_dm}
    rt.store.add_approval(
        {
            "execution_id": ex_id,
            "ref": cmd.ref,
            "params": json.dumps(dict(params), sort_keys=True, default=str),
            "binding": bound,
            "requester": json.dumps(requester, sort_keys=True),
            "origin": json.dumps(origin, sort_keys=True),
            "approvers": json.dumps(sorted(rule.groups)),
            "needed": rule.count,
            "plan_id": plan_id,
            "state": "pending",
            "created_at": now,
            "expires_at": now + rule.timeout,
        }
    )
    groups = ", ".join(sorted(rule.groups))
    rt.recorder.record(
        "approval_requested",
        attempt,
        execution_id=ex_id,
        detail=f"needs {rule.count} of {groups}; expires in {age_text(rule.timeout)}; "
        f"binding {bound[:16]}",
    )
    shown = ", ".join(f"{k}={v}" for k, v in cmd.shown(params).items() if v is not None)
    who = "one member" if rule.count == 1 else f"{rule.count} different members"
    head = (
        f"`{cmd.ref}` ({shown or 'no parameters'}) asked by {user.email or user.id} needs "
        f"approval by {who} of {groups} (not the requester)."
    )
    body = f"\n*Plan:*\n{plan}" if plan else ""
    note = (
        f"Approvers: press a button, or say `approve {ex_id}` / `reject {ex_id}`. It expires "
        f"in {age_text(rule.timeout)}; binding `{bound[:12]}`."
    )
    msg.responder.say(
        Reply(
            f"{head}{body}\n{note}",
            sections=(head + body, note),
            execution_id=ex_id,
            actions=(
                Action("Approve", "approve", ex_id, "primary"),
                Action("Reject", "reject", ex_id, "danger"),
            ),
        )
    )
    try:  # on time even between the periodic sweeps of a long-running Marvin
        app.call_later(rule.timeout + 0.05, lambda: app.background(lambda: sweep(app)))
    except RuntimeError:  # shutting down: the next Marvin's sweep expires it
        pass
    log.info("approval requested", execution_id=ex_id, ref=cmd.ref, needed=rule.count)
    return ex_id


def vote(
    app: Marvin, execution_id: str, voter_msg: Message, approve: bool, responder_for: ResponderFor
) -> Vote:
    """One approver's answer. ``responder_for(origin)`` gives the responder for the request's
    own thread (``origin``: channel, thread, ts, dm, user_id), where the execution answers."""
    ex_id = execution_id.strip().lower()
    sweep(app)
    store = app.rt.store
    row = store.approval(ex_id)
    if row is None:
        return Vote(False, f"There is no approval request `{ex_id}`.")
    if row["state"] != "pending":
        return Vote(False, f"`{ex_id}` ({row['ref']}) is no longer open: it was {row['state']}.")
    requester, origin = json.loads(row["requester"]), json.loads(row["origin"])
    cmd = app.table.get(row["ref"])
    params = json.loads(row["params"] or "{}")
    shown = cmd.shown(params) if cmd is not None else {}
    word = "approve" if approve else "reject"
    try:  # who presses, checked now and without caches: a removal counts at once
        voter = app.identify(voter_msg.user, fresh=True)
    except Refused as exc:
        attempt = Attempt(voter_msg.user, row["ref"], origin["channel"], shown)
        app.rt.recorder.record(
            "approval_refused", attempt, execution_id=ex_id, detail=exc.log_reason[:300]
        )
        return Vote(False, str(exc))
    attempt = Attempt(voter, row["ref"], origin["channel"], shown)
    asked_by = requester["email"] or requester["id"]
    me = (voter.email or voter.id).lower()
    if me == (asked_by or "").lower() or voter.id == requester["id"]:
        app.rt.recorder.record(
            "approval_self_refused",
            attempt,
            execution_id=ex_id,
            detail=f"{me} tried to {word} their own request",
        )
        return Vote(False, f"You asked for `{ex_id}`; someone else has to {word} it.")
    groups = set(json.loads(row["approvers"]))
    if not groups & {g.lower() for g in voter.groups}:
        app.rt.recorder.record(
            "approval_refused",
            attempt,
            execution_id=ex_id,
            detail=f"{me} is not in {', '.join(sorted(groups))}; requested by {asked_by}",
        )
        return Vote(False, f"Only members of {', '.join(sorted(groups))} may {word} `{ex_id}`.")
    if not store.add_vote(ex_id, me, voter.id, word):
        return Vote(False, f"You have already answered `{ex_id}`.")
    if not approve:
        return _reject(app, row, attempt, me, asked_by, responder_for)
    yes = [v["voter"] for v in store.votes(ex_id) if v["vote"] == "approve"]
    needed = int(row["needed"])
    app.rt.recorder.record(
        "approval_granted",
        attempt,
        execution_id=ex_id,
        detail=f"approved by {me} ({len(yes)} of {needed}); requested by {asked_by}",
    )
    if len(yes) < needed:
        return Vote(True, f"{me} approved `{ex_id}` ({len(yes)} of {needed}); waiting for more.")
    if not store.close_approval(ex_id, "approved", me):
        return Vote(False, f"`{ex_id}` was decided meanwhile.")
    detail = f"approved by {', '.join(yes)}; requested by {asked_by}"
    app.rt.recorder.record("approval_complete", attempt, execution_id=ex_id, detail=detail)
    user = User(
        id=requester["id"],
        email=requester["email"],
        source=requester["source"],
        team_id=requester.get("team_id"),
        via=requester["via"],
        where=Where(origin["channel"], bool(origin["dm"])),
    )
    msg = Message(
        text=f"approved {row['ref']}",
        user=user,
        responder=responder_for({**origin, "user_id": requester["id"]}),
        channel=origin["channel"],
        thread=origin["thread"],
        ts=origin["ts"],
        is_dm=bool(origin["dm"]),
    )
    req_attempt = Attempt(user, row["ref"], origin["channel"], shown)
    if cmd is None or binding(ex_id, row["ref"], params, asked_by.lower()) != row["binding"]:
        # The stored request is not what was approved (edited in the store): never run it.
        reason = "the request changed after it was asked for; refused"
        app.rt.recorder.record("approval_binding_mismatch", attempt, execution_id=ex_id)
        app.rt.recorder.outcome(ex_id, "refused", req_attempt, reason, at=time.time())
        msg.responder.say(f"`{ex_id}` was not run: {reason}.")
        return Vote(True, f"`{ex_id}` was approved but not run: {reason}.", closed=True)
    msg.responder.say(f"`{ex_id}` ({row['ref']}) was approved by {', '.join(yes)}; starting it.")
    app.start_approved(msg, cmd, params, ex_id)
    return Vote(True, f"{me} approved `{ex_id}`; it is starting.", closed=True)


def _reject(
    app: Marvin,
    row: Mapping[str, Any],
    attempt: Attempt,
    me: str,
    asked_by: str,
    responder_for: ResponderFor,
) -> Vote:
    ex_id, ref = row["execution_id"], row["ref"]
    if not app.rt.store.close_approval(ex_id, "rejected", me):
        return Vote(False, f"`{ex_id}` was decided meanwhile.")
    detail = f"rejected by {me}; requested by {asked_by}"
    app.rt.recorder.record("approval_rejected", attempt, execution_id=ex_id, detail=detail)
    requester = json.loads(row["requester"])
    who = User(requester["id"], requester["email"], source=requester["source"])
    req_attempt = Attempt(who, ref, attempt.channel, attempt.params)
    app.rt.recorder.outcome(ex_id, "refused", req_attempt, detail, at=time.time())
    origin = json.loads(row["origin"])
    text = f"`{ex_id}` ({ref}) was rejected by {me}; it will not run."
    responder_for({**origin, "user_id": requester["id"]}).say(text)
    return Vote(True, text, closed=True)


def sweep(app: Marvin, now: float | None = None) -> list[str]:
    """Expire open approvals past their time (once, whichever replica gets there first);
    the requester hears it through the front end's notices. Returns the ids expired."""
    now = time.time() if now is None else now
    out = []
    for row in app.rt.store.open_approvals():
        if row["expires_at"] > now:
            continue
        ex_id = row["execution_id"]
        if not app.rt.store.close_approval(ex_id, "expired", None):
            continue
        requester, origin = json.loads(row["requester"]), json.loads(row["origin"])
        asked_by = requester["email"] or requester["id"]
        yes = [v["voter"] for v in app.rt.store.votes(ex_id) if v["vote"] == "approve"]
        so_far = f"approved by {', '.join(yes)}" if yes else "nobody approved"
        detail = f"expired: {so_far} ({len(yes)} of {row['needed']}); requested by {asked_by}"
        app.rt.recorder.record(
            "approval_expired",
            Attempt(SYSTEM, row["ref"], origin["channel"]),
            execution_id=ex_id,
            detail=detail,
        )
        who = User(requester["id"], requester["email"], source=requester["source"])
        attempt = Attempt(who, row["ref"], origin["channel"])
        app.rt.recorder.outcome(
            ex_id, "refused", attempt, "approval expired", at=now, only_from=(AWAITING,)
        )
        out.append(ex_id)
        notice = (
            f"`{ex_id}` ({row['ref']}, asked by {asked_by}) expired before it was approved "
            f"({so_far}); it did not run. Ask again if it is still needed."
        )
        app.notice({"id": ex_id, "ref": row["ref"], **origin, "notice": notice})
        log.info("approval expired", execution_id=ex_id)
    return out


def views(app: Marvin) -> list[JobView]:
    """Open approvals as ``jobs`` lists them: what, who asked, and from whom approval is
    awaited."""
    now = time.time()
    out = []
    for row in app.rt.store.open_approvals():
        if row["expires_at"] <= now:
            continue
        ex_id, cmd = row["execution_id"], app.table.get(row["ref"])
        params = json.loads(row["params"] or "{}")
        yes = [v["voter"] for v in app.rt.store.votes(ex_id) if v["vote"] == "approve"]
        groups = ", ".join(json.loads(row["approvers"]))
        wanted = int(row["needed"]) - len(yes)
        progress = f"needs {wanted} more approval(s) from {groups}"
        if yes:
            progress += f" (approved by {', '.join(yes)})"
        progress += f"; expires in {age_text(row['expires_at'] - now)}"
        requester = json.loads(row["requester"])
        out.append(
            JobView(
                execution_id=ex_id,
                ref=row["ref"],
                shown=cmd.shown(params) if cmd is not None else {},
                requester=requester["email"] or requester["id"],
                state=AWAITING,
                created=row["created_at"],
                started=None,
                lock=None,
                lock_holder=None,
                stopping=False,
                progress=progress,
            )
        )
    return out
