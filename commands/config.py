"""The config family: an environment's configuration values in Consul's KV store
(``<environment>/config/<key>`` by default; see ``consul.config_key``)."""

from __future__ import annotations

import json

from marvin import ENVIRONMENT, Text, command
from marvin.actions import ActionError
from marvin.actions.consul import is_secret, layout, prefix_of
from marvin.actions.consul_values import Conflict, change, digest, encode, restore, show
from marvin.runtime.plans import Plan, plans
from marvin.runtime.undo import UndoRecord, undoable

_PATH = r"(?!.*\.\.)(?!.*//)[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,199}"
KEY = Text(pattern=rf"^{_PATH}(?<!/)$", help="a key such as app/timeout")
PREFIX = Text(pattern=rf"^{_PATH}$", help="a folder such as app/")
# The value is a secret parameter for every key: the audit trail and the log never hold
# values (whether a key is a secret depends on its name, which a parameter type can't see).
# The thread shows old -> new for keys that are not secrets.
VALUE = Text(max_length=512 * 1024, secret=True, help="the value; quote it if it has spaces")
MAX_LIST = 500  # lines in one `list config` answer


@command(
    "config.get",
    "get config {{ key }} in {{ environment }}",
    description="Show one configuration value of an environment (from Consul)",
    examples=["get config app/timeout in demo01"],
    params={"key": KEY, "environment": ENVIRONMENT},
)
def get(ctx, key: str, environment: str) -> str:
    config = ctx.services.config
    path = layout(config, "config", environment=environment, key=key)
    entry = ctx.services.consul.get(path)
    if entry is None:
        return f"`{key}` is not set in {environment} (no key `{path}`)."
    return f"`{key}` in {environment}: {show(entry.value, secret=is_secret(config, key))}"


def undo_set(ctx, record: UndoRecord) -> str:
    name, env = record.target["name"], record.target["environment"]
    done = restore(ctx.services.consul, record, name=name)
    ctx.record_undo(
        target=record.target, before=encode(done.before), after=encode(done.after)
    )  # so an undo can itself be undone
    return f"Undid `{record.execution_id}` in {env}: " + done.report(name, secret=False)


def plan_set(ctx, key: str, value: str, environment: str) -> Plan:
    config = ctx.services.config
    secret = is_secret(config, key)
    path = layout(config, "config", environment=environment, key=key)
    entry = ctx.services.consul.get(path)
    before = None if entry is None else entry.value
    raw = (value if isinstance(value, str) else json.dumps(value)).encode("utf-8")
    basis = {"key": path, "value": digest(before)}  # compared on apply, never shown
    if before == raw:
        text = f"In {environment}, `{key}` is already {show(raw, secret=secret, block=False)}."
        return Plan(text, basis=basis, changes=False)
    old, new = show(before, secret=secret, block=False), show(raw, secret=secret)
    return Plan(f"In {environment}, `{key}`: {old} → {new}", basis=basis)


@plans(plan_set)
@undoable(undo_set)
@command(
    "config.set",
    "set config {{ key }} to {{ value }} in {{ environment }}",
    description="Change one configuration value (compare-and-set; undo with `undo <id>`)",
    examples=["set config app/timeout to 30 in demo01"],
    params={"key": KEY, "value": VALUE, "environment": ENVIRONMENT},
    lock="environment",
)
def set_value(ctx, key: str, value: str, environment: str) -> str:
    config = ctx.services.config
    secret = is_secret(config, key)
    path = layout(config, "config", environment=environment, key=key)
    raw = (value if isinstance(value, str) else json.dumps(value)).encode("utf-8")
    try:
        done = change(ctx.services.consul, path, raw, name=key, secret=secret)
    except Conflict as exc:
        # Said here in full: a failure's reason has every occurrence of the (secret
        # parameter) value masked, which would garble the two values it shows.
        ctx.reply(str(exc))
        raise ActionError(f"`{key}` was changed by someone else; nothing was written") from None
    text = f"In {environment}, " + done.report(key, secret=secret)
    if done.changed and secret:
        text += " (Secret values are never kept, so this can't be undone.)"
    elif done.changed:
        target = {"key": path, "name": key, "environment": environment}
        ctx.record_undo(target=target, before=encode(done.before), after=encode(done.after))
        text += f"\nTo put it back: `undo {ctx.execution_id}`"
    return text


@command(
    "config.list",
    "list config in {{ environment }}( under {{ prefix }})?",
    description="List an environment's configuration values (secrets show only their size)",
    examples=["list config in demo01", "list config in demo01 under app/"],
    params={"environment": ENVIRONMENT, "prefix": PREFIX},
)
def list_values(ctx, environment: str, prefix: str | None = None) -> str:
    config = ctx.services.config
    root = prefix_of(config, "config", environment)
    entries = ctx.services.consul.get_prefix(root + (prefix or ""))
    where = f"{environment}" + (f" under `{prefix}`" if prefix else "")
    if not entries:
        return f"No configuration in {where} (nothing under `{root}{prefix or ''}`)."
    lines = [f"{len(entries)} value(s) in {where}:"]
    for entry in entries[:MAX_LIST]:
        name = entry.key[len(root) :]
        lines.append(
            f"• `{name}` = {show(entry.value, secret=is_secret(config, name), block=False)}"
        )
    if len(entries) > MAX_LIST:
        lines.append(f"…and {len(entries) - MAX_LIST} more; narrow it with `under <prefix>`.")
    return "\n".join(lines)
