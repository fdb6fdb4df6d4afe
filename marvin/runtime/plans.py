"""Plans: what a command would change, without changing anything; and applying exactly that.

A command declares how it plans with a companion decorator, like ``@undoable``::

    def plan_scale(ctx, group, environment, count) -> Plan:
        ...  # read only
        return Plan(f"{name}: desired {old} → {count} (min {lo}, max {hi})",
                    basis={"group": name, "desired": old, "min": lo, "max": hi})

    @plans(plan_scale)
    @command("asg.scale", ...)
    def scale(ctx, group, environment, count): ...

``plan <command text>`` (``marvin run REF ... --plan``) runs the planner as an execution of the
command's own ref, under the same policy (but no confirmation, second factor or approval: it
changes nothing), audits it (``planned``) and keeps it in the store with a fingerprint of the
ref, the parameters and the ``basis`` (the state it was planned against). ``apply <id>`` runs
the command with exactly those parameters through the whole pipeline (policy, confirmation,
MFA, approval, lock, checks); on its job thread, under the lock, it plans again and runs the
handler only if the fingerprint is unchanged. Otherwise it refuses and the new plan is kept
under the refused execution's id, to be applied in turn. A plan is applied at most once.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from marvin.core.authz import Refused
from marvin.core.matcher import Matched
from marvin.core.model import Message, Where
from marvin.core.normalize import normalize
from marvin.core.registry import Command
from marvin.runtime.audit import Attempt, Recorder
from marvin.runtime.store import Store

if TYPE_CHECKING:
    from marvin.runtime.app import Marvin

__all__ = [
    "Plan",
    "plans",
    "planner_of",
    "fingerprint",
    "planning",
    "Applying",
    "applying",
    "StateChanged",
    "PLAN_ATTR",
    "plan_request",
    "plan_text",
    "apply_request",
]

PLAN_ATTR = "__marvin_plan__"
F = TypeVar("F", bound=Callable[..., Any])
Planner = Callable[..., "Plan"]


@dataclass(frozen=True)
class Plan:
    """``summary``: what would change, for people (secrets redacted). ``basis``: the state it
    was planned against (JSON; what ``apply`` compares). ``changes`` False: nothing would."""

    summary: str
    basis: Any = None
    changes: bool = True


class StateChanged(Exception):
    """Raised by an apply whose plan no longer holds; the text offers the new plan."""


def plans(planner: Planner) -> Callable[[F], F]:
    """Declare ``planner(ctx, **params) -> Plan`` as how the decorated command plans. It must
    only read. Stack it above or below ``@command``."""

    def mark(fn: F) -> F:
        setattr(fn, PLAN_ATTR, planner)
        return fn

    return mark


def planner_of(handler: Callable[..., Any]) -> Planner | None:
    return getattr(handler, PLAN_ATTR, None)


def fingerprint(ref: str, params: Mapping[str, Any], basis: Any) -> str:
    doc = {"ref": ref, "params": params, "basis": basis}
    return hashlib.sha256(
        json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()


def _keep(store: Store, ctx: Any, cmd: Command, params: Mapping[str, Any], plan: Plan) -> str:
    print_ = fingerprint(cmd.ref, params, plan.basis)
    store.add_plan(
        {
            "execution_id": ctx.execution_id,
            "ref": cmd.ref,
            # Applying needs the real values (secrets too); they go when it is applied.
            "params": json.dumps(dict(params), sort_keys=True, default=str),
            "requester": ctx.user.email or ctx.user.id,
            "fingerprint": print_,
            "summary": plan.summary,
            "created_at": time.time(),
        }
    )
    return print_


def _run_planner(planner: Planner, ctx: Any, params: Mapping[str, Any]) -> Plan:
    plan = planner(ctx, **params)
    if not isinstance(plan, Plan):
        raise TypeError(f"the planner of {ctx.command.ref} returned no Plan")
    return plan


def planning(cmd: Command, planner: Planner, store: Store, recorder: Recorder) -> Command:
    """``cmd`` whose handler plans instead of running: same ref and parameters (so the
    policy and the audit see that command), no lock, no confirmation or second factor."""

    def run(ctx: Any, **params: Any) -> str:
        plan = _run_planner(planner, ctx, params)
        print_ = _keep(store, ctx, cmd, params, plan)
        attempt = Attempt.of(ctx.message, cmd.ref, cmd.shown(params))
        recorder.record("planned", attempt, execution_id=ctx.execution_id, detail=print_[:16])
        if not plan.changes:
            return f"Plan for `{cmd.ref}`: nothing would change.\n{plan.summary}"
        return (
            f"Plan for `{cmd.ref}` (nothing was changed):\n{plan.summary}\n"
            f"To do exactly this: `apply {ctx.execution_id}`"
        )

    spec = replace(cmd.spec, lock=None, ack=None, result=None, confirm=False, mfa=False)
    return replace(cmd, spec=spec, handler=run)


class Applying:
    """The handler of an ``apply``: plan again, compare, then run the command's own handler.
    ``plan_id`` and ``summary`` let the pipeline show the plan to approvers."""

    def __init__(
        self,
        cmd: Command,
        planner: Planner,
        plan_row: Mapping[str, Any],
        store: Store,
        recorder: Recorder,
    ) -> None:
        self.cmd, self.planner, self.store, self.recorder = cmd, planner, store, recorder
        self.plan_id = str(plan_row["execution_id"])
        self.summary = str(plan_row["summary"])
        self.expected = str(plan_row["fingerprint"])

    def __call__(self, ctx: Any, **params: Any) -> Any:
        cmd, ex_id = self.cmd, ctx.execution_id
        attempt = Attempt.of(ctx.message, cmd.ref, cmd.shown(params))
        if not self.store.claim_plan(self.plan_id, ex_id):
            raise StateChanged(f"`{self.plan_id}` was applied already")
        plan = _run_planner(self.planner, ctx, params)  # under the lock, just before running
        if fingerprint(cmd.ref, params, plan.basis) != self.expected:
            print_ = _keep(self.store, ctx, cmd, params, plan)
            self.recorder.record(
                "apply_refused",
                attempt,
                execution_id=ex_id,
                detail=f"state changed since {self.plan_id}; new plan {print_[:16]}",
            )
            ctx.reply(
                f"The state changed since `{self.plan_id}` was planned, so I changed nothing. "
                f"The plan against the state now:\n{plan.summary}\n"
                + (f"To do this instead: `apply {ex_id}`" if plan.changes else "")
            )
            raise StateChanged(f"the state changed since `{self.plan_id}` was planned")
        detail = f"plan {self.plan_id} ({self.expected[:16]})"
        self.recorder.record("applied", attempt, execution_id=ex_id, detail=detail)
        return cmd.handler(ctx, **params)


def applying(cmd: Command) -> Applying | None:
    """The plan being applied, when ``cmd`` is an apply (for the approval request)."""
    return cmd.handler if isinstance(cmd.handler, Applying) else None


def apply_command(
    cmd: Command, planner: Planner, plan_row: Mapping[str, Any], store: Store, recorder: Recorder
) -> Command:
    """``cmd`` whose handler checks the plan ``plan_row`` still holds before running."""
    return replace(cmd, handler=Applying(cmd, planner, plan_row, store, recorder))


# -- the pipeline's side (``Marvin.plan`` / ``Marvin.apply`` delegate here) --------------------


def plan_request(app: Marvin, msg: Message, cmd: Command, params: Mapping[str, Any]) -> str | None:
    """Plan ``cmd`` with bound ``params`` for ``msg``'s user: the same policy decides as for
    a run (a refusal is audited), then the planner runs as an execution of that ref."""
    planner = planner_of(cmd.handler)
    attempt = Attempt.of(msg, cmd.ref, cmd.shown(params))
    if planner is None:
        app.rt.recorder.record("plan_unavailable", attempt)
        msg.responder.whisper(
            f"`{cmd.ref}` has no planner, so I can't show what it would change without "
            "running it. Read `help " + cmd.ref + "` to see what it does."
        )
        return None
    try:
        user = app.identify(msg.user)
        msg = replace(msg, user=replace(user, where=Where(msg.channel, msg.is_dm)))
        attempt = Attempt.of(msg, cmd.ref, cmd.shown(params))
        decision = app.decide(msg.user, cmd, params)
    except Refused as exc:
        return app.refuse(msg, attempt, str(exc), exc.log_reason)
    if not decision.allowed:
        return app.refuse(msg, attempt, decision.reason, decision.reason)
    # A plan changes nothing: no confirmation, second factor, approval, checks or lock.
    quiet = replace(decision, mfa=False, confirm=False, approve=None, checks=())
    planned = planning(cmd, planner, app.rt.store, app.rt.recorder)
    return app.admit(msg, planned, params, quiet, attempt)


def plan_text(app: Marvin, msg: Message, text: str) -> str | None:
    """``plan <command text>``: match the text like any message, then plan it."""
    result = app.matcher.match(normalize(text))
    if not isinstance(result, Matched):
        msg.responder.whisper(result.message())
        return None
    return plan_request(app, msg, result.command, result.params)


def apply_request(app: Marvin, msg: Message, plan_id: str) -> str | None:
    """``apply <id>``: the planned command with exactly its parameters, through the whole
    pipeline as ``msg``'s user; the handler re-plans and compares before it runs."""
    plan_id = plan_id.strip().lower()
    row = app.rt.store.plan(plan_id)
    cmd = app.table.get(row["ref"]) if row else None
    planner = planner_of(cmd.handler) if cmd is not None else None
    if row is None or cmd is None or planner is None:
        msg.responder.whisper(f"There is no plan `{plan_id}`. Make one with `plan <command>`.")
        return None
    if row["applied_by"]:
        msg.responder.whisper(
            f"`{plan_id}` was applied already (by `{row['applied_by']}`); plan again."
        )
        return None
    before = app.state.plans_made_before
    if row["params"] is None or float(row["created_at"] or 0) < before:
        app.rt.store.expire_plans(before)
        msg.responder.whisper(
            f"`{plan_id}` has expired (plans last {app.state.plan_hours:g} hours, "
            "`state.plan_hours`); plan again."
        )
        return None
    params = json.loads(row["params"] or "{}")
    return app.dispatch(
        msg, apply_command(cmd, planner, row, app.rt.store, app.rt.recorder), params
    )
