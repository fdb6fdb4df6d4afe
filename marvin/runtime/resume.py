"""A confirmation's request, so that another process can resume it: Slack may deliver the
Confirm press to any replica, which rebuilds the message from the store (``Marvin.resume``).
Identity is not trusted from here: the resumed dispatch resolves the user afresh."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marvin.core.model import Message, Responder, User
from marvin.core.registry import Command

__all__ = ["request_of", "message_of"]


def request_of(msg: Message, cmd: Command, params: Mapping[str, Any]) -> dict[str, Any]:
    """What ``resume`` needs to go on after a confirmation answered in another process."""
    u = msg.user
    return {
        "ref": cmd.ref,
        "params": dict(params),
        "text": msg.text,
        "user": {
            "id": u.id,
            "email": u.email,
            "source": u.source,
            "team_id": u.team_id,
            "extra": {k: v for k, v in u.extra.items() if isinstance(v, (str, type(None)))},
        },
        "channel": msg.channel,
        "thread": msg.thread,
        "ts": msg.ts,
        "is_dm": msg.is_dm,
    }


def message_of(request: Mapping[str, Any], responder: Responder) -> Message:
    """The message ``request_of`` described, answering through ``responder``."""
    u = request.get("user") or {}
    user = User(
        str(u.get("id")),
        u.get("email"),
        source=str(u.get("source")),
        team_id=u.get("team_id"),
        extra=dict(u.get("extra") or {}),
    )
    return Message(
        text=str(request.get("text") or ""),
        user=user,
        responder=responder,
        channel=request.get("channel"),
        thread=request.get("thread"),
        ts=request.get("ts"),
        is_dm=bool(request.get("is_dm")),
    )
