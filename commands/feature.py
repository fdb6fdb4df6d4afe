"""The feature family: feature flags in Consul (``<environment>/features/<flag>`` holding
``true`` or ``false``; see ``consul.feature_key``). Flags must exist before they are toggled,
so a typo never creates a new flag."""

from __future__ import annotations

import difflib

from marvin import ENVIRONMENT, Text, command
from marvin.actions import ActionError
from marvin.actions.consul import ConsulKV, layout, prefix_of
from marvin.actions.consul_values import change, digest, encode, restore, show
from marvin.runtime.plans import Plan, plans
from marvin.runtime.undo import UndoRecord, undoable

FLAG = Text(
    pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}$", help="a feature flag name such as new-checkout"
)


def _flags(kv: ConsulKV, root: str) -> dict[str, bytes]:
    return {e.key[len(root) :]: e.value for e in kv.get_prefix(root)}


def _state(value: bytes) -> str:
    low = value.strip().lower()
    return "on" if low == b"true" else "off" if low == b"false" else show(value, block=False)


def undo_toggle(ctx, record: UndoRecord) -> str:
    flag, env = record.target["name"], record.target["environment"]
    done = restore(ctx.services.consul, record, name=flag)
    ctx.record_undo(target=record.target, before=encode(done.before), after=encode(done.after))
    now = _state(done.after or b"")
    return f"Undid `{record.execution_id}`: feature `{flag}` on {env} is {now} again."


def _toggle(ctx, flag: str, environment: str, on: bool) -> str:
    config, kv = ctx.services.config, ctx.services.consul
    path = layout(config, "feature", environment=environment, flag=flag)
    entry = kv.get(path)
    if entry is None:
        names = list(_flags(kv, prefix_of(config, "feature", environment)))
        by_low = {n.lower(): n for n in names}
        close = difflib.get_close_matches(flag.lower(), list(by_low), n=3, cutoff=0.6)
        hint = (
            "; flags that look alike: " + ", ".join(f"`{by_low[c]}`" for c in close)
            if close
            else f"; say `list features on {environment}` to see them"
            if names
            else f"; {environment} has no feature flags"
        )
        raise ActionError(
            f"there is no feature flag `{flag}` on {environment}{hint}. "
            "Toggling never creates a flag."
        )
    new = b"true" if on else b"false"
    # expect: had the flag been deleted since the read, the write would re-create it.
    done = change(kv, path, new, name=flag, expect=entry.value)
    word = "enabled" if on else "disabled"
    if not done.changed:
        return f"Feature `{flag}` on {environment} is already {word}; nothing changed."
    target = {"key": path, "name": flag, "environment": environment}
    ctx.record_undo(target=target, before=encode(done.before), after=encode(done.after))
    was = _state(done.before or b"")
    return (
        f"Feature `{flag}` on {environment}: {was} → {'on' if on else 'off'}.\n"
        f"To put it back: `undo {ctx.execution_id}`"
    )


def _plan_toggle(ctx, flag: str, environment: str, on: bool) -> Plan:
    path = layout(ctx.services.config, "feature", environment=environment, flag=flag)
    entry = ctx.services.consul.get(path)
    basis = {"key": path, "value": digest(None if entry is None else entry.value)}
    if entry is None:
        text = f"There is no feature flag `{flag}` on {environment}; toggling would be refused."
        return Plan(text, basis=basis, changes=False)
    now, want = _state(entry.value), "on" if on else "off"
    if entry.value == (b"true" if on else b"false"):
        return Plan(f"Feature `{flag}` on {environment} is already {want}.", basis, False)
    return Plan(f"Feature `{flag}` on {environment}: {now} → {want}", basis=basis)


def plan_enable(ctx, flag: str, environment: str) -> Plan:
    return _plan_toggle(ctx, flag, environment, True)


def plan_disable(ctx, flag: str, environment: str) -> Plan:
    return _plan_toggle(ctx, flag, environment, False)


@plans(plan_enable)
@undoable(undo_toggle)
@command(
    "feature.enable",
    "enable feature {{ flag }} on {{ environment }}",
    description="Turn an existing feature flag on",
    examples=["enable feature new-checkout on demo01"],
    params={"flag": FLAG, "environment": ENVIRONMENT},
    lock="environment",
)
def enable(ctx, flag: str, environment: str) -> str:
    return _toggle(ctx, flag, environment, True)


@plans(plan_disable)
@undoable(undo_toggle)
@command(
    "feature.disable",
    "disable feature {{ flag }} on {{ environment }}",
    description="Turn an existing feature flag off",
    examples=["disable feature new-checkout on demo01"],
    params={"flag": FLAG, "environment": ENVIRONMENT},
    lock="environment",
)
def disable(ctx, flag: str, environment: str) -> str:
    return _toggle(ctx, flag, environment, False)


@command(
    "feature.list",
    "list features on {{ environment }}",
    description="List an environment's feature flags and whether each is on",
    examples=["list features on demo01"],
    params={"environment": ENVIRONMENT},
)
def list_flags(ctx, environment: str) -> str:
    root = prefix_of(ctx.services.config, "feature", environment)
    flags = _flags(ctx.services.consul, root)
    if not flags:
        return f"{environment} has no feature flags (nothing under `{root}`)."
    lines = [f"{len(flags)} feature flag(s) on {environment}:"]
    lines += [f"• `{name}`: {_state(value)}" for name, value in sorted(flags.items())]
    return "\n".join(lines)
