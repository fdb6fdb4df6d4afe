"""Shape checks for Socket Mode envelopes, at the edge: an envelope whose fields do not have the
types Slack documents (``text`` not a string, ``ts`` a list, ``thread_ts`` a dict, a
``block_actions`` payload with strings where objects belong...) is dropped with one log line,
before Bolt or Marvin reads it, so nothing downstream ever handles a field of the wrong type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["problem"]

_STR, _OPT_STR, _OPT_DICT = (str,), (str, type(None)), (dict, type(None))

# Event fields Marvin reads (marvin/frontends/slack/events.py) and the types they must have.
_EVENT_FIELDS: dict[str, tuple[type, ...]] = {
    "type": _STR,
    "user": _OPT_STR,
    "text": _OPT_STR,
    "ts": _OPT_STR,
    "thread_ts": _OPT_STR,
    "channel": _OPT_STR,
    "channel_type": _OPT_STR,
    "subtype": _OPT_STR,
    "team": _OPT_STR,
    "user_team": _OPT_STR,
    "source_team": _OPT_STR,
    "bot_id": _OPT_STR,
    "bot_profile": _OPT_DICT,
    "edited": _OPT_DICT,
    "hidden": (bool, type(None)),
}


# Channel events carry the channel as an object (``{"id", "name", ...}``).
_CHANNEL_EVENTS = frozenset({"channel_rename", "group_rename", "channel_created"})


def problem(kind: str | None, payload: Any) -> str | None:
    """None if the envelope's payload has the shape Marvin relies on, else what is wrong."""
    if not isinstance(payload, Mapping):
        return "payload is not an object"
    if kind == "events_api":
        event = payload.get("event")
        if not isinstance(event, Mapping):
            return "event is not an object"
        if not isinstance(payload.get("event_id"), _OPT_STR):
            return "event_id is not a string"
        if event.get("type") in _CHANNEL_EVENTS:  # the channel names book (slack/channels.py)
            channel = event.get("channel")
            if not isinstance(channel, Mapping):
                return "event.channel is not an object"
            return _fields("event.channel", channel, {"id": _STR, "name": _OPT_STR})
        return _fields("event", event, _EVENT_FIELDS)
    if kind == "interactive":
        return _interactive(payload)
    return None  # slash commands and others: no listener of Marvin's reads them


def _fields(where: str, obj: Mapping[str, Any], spec: dict[str, tuple[type, ...]]) -> str | None:
    for key, types in spec.items():
        if not isinstance(obj.get(key), types):
            return f"{where}.{key} is a {type(obj.get(key)).__name__}"
    return None


def _interactive(payload: Mapping[str, Any]) -> str | None:
    if not isinstance(payload.get("type"), str):
        return "type is not a string"
    if payload["type"] != "block_actions":
        return None
    user = payload.get("user")
    if not isinstance(user, Mapping) or not isinstance(user.get("id"), str):
        return "user is not an object with an id"
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions:
        return "actions is not a list"
    for action in actions:
        if not isinstance(action, Mapping):
            return "an action is not an object"
        bad = _fields("action", action, {"action_id": _STR, "value": _OPT_STR})
        if bad:
            return bad
    for key, inner in (("container", "channel_id"), ("channel", "id"), ("message", "thread_ts")):
        value = payload.get(key)
        if value is None:
            continue
        if not isinstance(value, Mapping):
            return f"{key} is not an object"
        if not isinstance(value.get(inner), _OPT_STR):
            return f"{key}.{inner} is not a string"
    return None
