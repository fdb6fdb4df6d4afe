"""Maintenance mode: one Consul key per environment holding
``{"enabled", "reason", "by", "since", "until"}`` (times in ISO 8601 UTC, ``until`` null when
open-ended). A window with a time limit is also stored as a due action, so Marvin turns it off
when due, after a restart too, and says so in the thread that opened it. Turning it off only
happens if the window is still the one that action opened (same ``since`` and ``until``)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from marvin.actions.consul import ConsulKV, Entry, layout
from marvin.actions.consul_values import Change, change
from marvin.runtime.due import DueLog, due_handler

__all__ = ["KIND", "state_of", "parse", "window", "write", "describe", "iso", "epoch"]

KIND = "maintenance.end"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def state_of(entry: Entry | None) -> dict[str, Any] | None:
    """The stored window, or None when absent or not the expected JSON."""
    return None if entry is None else parse(entry.value)


def parse(value: bytes | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        state = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return state if isinstance(state, dict) and "enabled" in state else None


def window(
    *, enabled: bool, by: str, reason: str | None, minutes: int | None, now: float | None = None
) -> dict[str, Any]:
    now = time.time() if now is None else now
    return {
        "enabled": enabled,
        "reason": reason,
        "by": by,
        "since": iso(now),
        "until": iso(now + 60 * minutes) if minutes else None,
    }


def encode(state: dict[str, Any]) -> bytes:
    return json.dumps(state, sort_keys=True).encode()


def write(
    kv: ConsulKV,
    key: str,
    new: dict[str, Any] | None,
    *,
    name: str,
    expect: Any = ...,
) -> Change:
    """Compare-and-set the window; ``expect`` as in ``consul_values.change``."""
    return change(kv, key, None if new is None else encode(new), name=name, expect=expect)


def schedule_end(
    dues: DueLog, state: dict[str, Any], *, key: str, environment: str, execution_id: str
) -> None:
    """Store the end of a window with a time limit as a due action."""
    payload = {
        "key": key,
        "environment": environment,
        "since": state["since"],
        "until": state["until"],
        "opened_by": execution_id,
    }
    dues.add(KIND, payload, epoch(state["until"]), execution_id)


def describe(state: dict[str, Any] | None, environment: str, now: float | None = None) -> str:
    now = time.time() if now is None else now
    if state is None or not state.get("enabled"):
        tail = ""
        if state is not None and state.get("since"):
            tail = f" (since {state['since']}" + (f", by {state['by']}" if state.get("by") else "")
            tail += ")"
        return f"Maintenance mode on {environment} is *off*{tail}."
    text = f"Maintenance mode on {environment} is *on* since {state.get('since')}"
    text += f", by {state.get('by') or 'someone'}"
    if state.get("reason"):
        text += f", because {state['reason']}"
    until = state.get("until")
    if until:
        try:
            left = epoch(until) - now
        except ValueError:
            left = None
        if left is None:
            text += f", until {until}"
        elif left > 0:
            text += f", until {until} (in {max(1, round(left / 60))} min)"
        else:
            text += f"; its time ran out at {until}, so Marvin turns it off at its next check"
    return text + "."


@due_handler(KIND)
def end_window(services: Any, payload: dict[str, Any]) -> str | None:
    """Due: turn the window off if it is still the one that was opened."""
    kv: ConsulKV = services.consul
    key, env = payload["key"], payload["environment"]
    entry = kv.get(key)
    state = state_of(entry)
    same = (
        state is not None
        and state.get("enabled") is True
        and state.get("since") == payload["since"]
        and state.get("until") == payload["until"]
    )
    if not same or entry is None:
        return None  # turned off or changed by hand since: nothing to end
    off = window(enabled=False, by="marvin", reason=f"time limit {payload['until']}", minutes=None)
    write(kv, key, off, name=f"maintenance on {env}", expect=entry.value)
    return (
        f"Maintenance mode on {env} has ended: its time limit ({payload['until']}) was "
        f"reached. It was turned on by `{payload['opened_by']}`."
    )


def key_for(config: Any, environment: str) -> str:
    return layout(config, "maintenance", environment=environment)
