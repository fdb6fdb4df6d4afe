"""The maintenance family: an environment's maintenance mode, a JSON value in Consul
(``<environment>/maintenance``; see ``consul.maintenance_key``). With ``for N minutes`` it ends
by itself, after a restart too, and Marvin says so in the thread that turned it on."""

from __future__ import annotations

from marvin import ENVIRONMENT, Integer, Text, command
from marvin.actions.consul_values import digest, encode, restore
from marvin.actions.maintenance import (
    KIND,
    describe,
    key_for,
    parse,
    schedule_end,
    state_of,
    window,
    write,
)
from marvin.runtime.due import DueLog
from marvin.runtime.plans import Plan, plans
from marvin.runtime.statedb import state_target
from marvin.runtime.undo import UndoRecord, undoable

MINUTES = Integer(min=1, max=7 * 24 * 60, help="minutes, up to a week")
REASON = Text(max_length=300, help="why, in a few words")


def _dues(ctx) -> DueLog:
    return DueLog(state_target(ctx.services.config))


def _record(ctx, key: str, environment: str, before: bytes | None, after: bytes | None) -> None:
    target = {"key": key, "name": f"maintenance on {environment}", "environment": environment}
    ctx.record_undo(target=target, before=encode(before), after=encode(after))


def undo_maintenance(ctx, record: UndoRecord) -> str:
    env = record.target["environment"]
    done = restore(ctx.services.consul, record, name=record.target["name"])
    _dues(ctx).drop(KIND, record.execution_id)  # a window that is undone needs no ending
    state = parse(done.after)
    if state and state.get("enabled") and state.get("until"):
        schedule_end(
            _dues(ctx),
            state,
            key=record.target["key"],
            environment=env,
            execution_id=ctx.execution_id,
        )
    _record(ctx, record.target["key"], env, done.before, done.after)
    return f"Undid `{record.execution_id}`. " + describe(state, env)


def _now(ctx, environment: str) -> tuple[dict | None, dict]:
    key = key_for(ctx.services.config, environment)
    entry = ctx.services.consul.get(key)
    return state_of(entry), {"key": key, "value": digest(None if entry is None else entry.value)}


def plan_enable(ctx, environment: str, minutes: int | None = None, reason: str | None = None):
    was, basis = _now(ctx, environment)
    new = window(enabled=True, by=ctx.user.email or ctx.user.id, reason=reason, minutes=minutes)
    after = describe(new, environment).replace(" is *on*", " would be *on*")
    return Plan(f"Now: {describe(was, environment)}\nAfter: {after}", basis=basis)


def plan_disable(ctx, environment: str) -> Plan:
    was, basis = _now(ctx, environment)
    if not (was and was.get("enabled")):
        return Plan(describe(was, environment) + " Nothing would change.", basis, False)
    return Plan(f"Now: {describe(was, environment)}\nAfter: off.", basis=basis)


@plans(plan_enable)
@undoable(undo_maintenance)
@command(
    "maintenance.enable",
    "enable maintenance mode on {{ environment }}( for {{ minutes }} minutes)?"
    "( because {{ reason }})?",
    description="Turn maintenance mode on, optionally for a while (it then ends by itself)",
    examples=[
        "enable maintenance mode on demo01",
        "enable maintenance mode on demo01 for 30 minutes because database upgrade",
    ],
    params={"environment": ENVIRONMENT, "minutes": MINUTES, "reason": REASON},
    lock="environment",
)
def enable(ctx, environment: str, minutes: int | None = None, reason: str | None = None) -> str:
    kv, key = ctx.services.consul, key_for(ctx.services.config, environment)
    entry = kv.get(key)
    new = window(enabled=True, by=ctx.user.email or ctx.user.id, reason=reason, minutes=minutes)
    dues = _dues(ctx)
    if minutes:  # stored first: if the write fails it is dropped, never the other way round
        schedule_end(dues, new, key=key, environment=environment, execution_id=ctx.execution_id)
    try:
        done = write(
            kv,
            key,
            new,
            name=f"maintenance on {environment}",
            expect=None if entry is None else entry.value,
        )
    except BaseException:
        dues.drop(KIND, ctx.execution_id)
        raise
    _record(ctx, key, environment, done.before, done.after)
    was = state_of(entry)
    before = "it was on already; replaced. " if was and was.get("enabled") else ""
    ends = " It ends by itself; I'll say so here." if minutes else ""
    return f"{before}{describe(new, environment)}{ends}\nTo put it back: `undo {ctx.execution_id}`"


@plans(plan_disable)
@undoable(undo_maintenance)
@command(
    "maintenance.disable",
    "disable maintenance mode on {{ environment }}",
    description="Turn maintenance mode off",
    examples=["disable maintenance mode on demo01"],
    params={"environment": ENVIRONMENT},
    lock="environment",
)
def disable(ctx, environment: str) -> str:
    kv, key = ctx.services.consul, key_for(ctx.services.config, environment)
    entry = kv.get(key)
    was = state_of(entry)
    if entry is None or not (was and was.get("enabled")):
        if entry is not None and was is None:
            return (
                f"`{key}` does not hold a maintenance window I understand; I left it alone. "
                f"Check it with `show maintenance mode on {environment}`."
            )
        return f"Maintenance mode on {environment} is already off; nothing changed."
    new = window(enabled=False, by=ctx.user.email or ctx.user.id, reason=None, minutes=None)
    done = write(kv, key, new, name=f"maintenance on {environment}", expect=entry.value)
    _record(ctx, key, environment, done.before, done.after)
    return f"{describe(new, environment)}\nTo put it back: `undo {ctx.execution_id}`"


@command(
    "maintenance.show",
    "show maintenance mode on {{ environment }}",
    description="Show whether an environment is in maintenance mode, since when and until when",
    examples=["show maintenance mode on demo01"],
    params={"environment": ENVIRONMENT},
)
def show_mode(ctx, environment: str) -> str:
    key = key_for(ctx.services.config, environment)
    entry = ctx.services.consul.get(key)
    state = state_of(entry)
    if entry is not None and state is None:
        return (
            f"`{key}` holds something that is not a maintenance window ({len(entry.value)} bytes)."
        )
    return describe(state, environment)
