"""JSON shapes of the API's answers: commands, executions, errors, and the request body."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

from marvin.core.registry import Command
from marvin.frontends.http.feeds import Feed
from marvin.frontends.http.limits import ApiError

__all__ = ["RunRequest", "command_view", "execution_view", "error_response", "link"]

PREFIX = "/api/v1"


def link(execution_id: str, tail: str = "") -> str:
    return f"{PREFIX}/executions/{execution_id}{tail}"


def error_response(exc: ApiError) -> JSONResponse:
    body = {"error": exc.code, "message": exc.message, **exc.extra}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


@dataclass(frozen=True)
class RunRequest:
    """``{"ref": ..., "params": {...}}`` or ``{"text": ...}``, with an optional
    ``"confirm": true`` for commands that ask for confirmation."""

    ref: str | None
    params: dict[str, str]  # as text: the same validation as chat and the command line
    text: str | None
    confirm: bool

    @classmethod
    def parse(cls, body: dict[str, Any]) -> RunRequest:
        unknown = sorted(set(body) - {"ref", "params", "text", "confirm"})
        if unknown:
            raise _bad(f"Unknown field {unknown[0]!r}; expected ref and params, or text.")
        ref, text, params = body.get("ref"), body.get("text"), body.get("params")
        confirm = body.get("confirm", False)
        if not isinstance(confirm, bool):
            raise _bad('"confirm" must be true or false.')
        if (ref is None) == (text is None):
            raise _bad('Send either "ref" (with "params") or "text", not both.')
        if text is not None:
            if not isinstance(text, str) or not text.strip():
                raise _bad('"text" must be a non-empty string, e.g. "help".')
            if params is not None:
                raise _bad('"params" goes with "ref"; with "text", write key=value in the text.')
            return cls(None, {}, text, confirm)
        if not isinstance(ref, str) or not ref.strip():
            raise _bad('"ref" must be a command ref such as "platform.create".')
        if params is not None and not isinstance(params, dict):
            raise _bad('"params" must be an object of parameter names to values.')
        values = {str(k): _as_text(v) for k, v in (params or {}).items() if v is not None}
        return cls(ref.strip(), values, None, confirm)


def _as_text(value: Any) -> str:
    # Values take the path chat's text takes (parameter types validate strings); a JSON
    # number or object must not slip past a pattern because it is not a string.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return json.dumps(value)


def _bad(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def command_view(cmd: Command) -> dict[str, Any]:
    spec = cmd.spec
    params = []
    for name, ptype in cmd.params.items():
        item: dict[str, Any] = {
            "name": name,
            "required": name in cmd.required,
            "expected": ptype.expected(),
            "secret": ptype.secret,
        }
        if name in cmd.defaults and cmd.defaults[name] is not None:
            item["default"] = cmd.defaults[name]
        params.append(item)
    return {
        "ref": cmd.ref,
        "description": spec.description,
        "usage": cmd.usage,
        "formats": list(spec.formats),
        "examples": list(spec.examples),
        "params": params,
        "confirm": spec.confirm,  # the policy may ask for more (per target): see "notes"
        "mfa": spec.mfa,
        "lock": spec.lock,
    }


def execution_view(
    row: dict[str, Any], feed: Feed | None, trail: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "id": row["id"],
        "ref": row["ref"],
        "params": row["params"],  # as stored: secret values already redacted
        "state": row["state"],
        "reason": row["reason"],
        "progress": row["progress"],
        "result": feed.result if feed is not None and feed.ended else None,
        "requester": row["email"],
        "source": row["source"],
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        # Kept for executions started through this process's API (the latest ones).
        "replies": feed.replies() if feed is not None else None,
        "audit": [
            {"ts": a["ts"], "event": a["event"], "by": a["email"] or a["user_id"]}
            | ({"detail": a["detail"]} if a.get("detail") else {})
            for a in trail
        ],
        "links": {"events": link(row["id"], "/events"), "cancel": link(row["id"], "/cancel")},
    }
