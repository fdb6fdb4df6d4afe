"""The API's endpoints that run and follow commands. Everything that may block (the
directory, the store) runs on Starlette's thread pool, never on the event loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from marvin.core.apikeys import ApiKey
from marvin.core.authz import Refused
from marvin.core.facade import Operations, Outcome
from marvin.core.matcher import Invalid, bind
from marvin.core.model import Message, User
from marvin.core.params import ParamError
from marvin.frontends.http.feeds import ApiResponder, Feed, Feeds
from marvin.frontends.http.identity import api_user
from marvin.frontends.http.limits import ApiError, read_json
from marvin.frontends.http.views import RunRequest, command_view, execution_view, link
from marvin.runtime.store import TERMINAL

__all__ = ["Executions", "STATUS"]

# Outcome kinds (core.facade) as HTTP statuses.
STATUS = {
    "accepted": 202,
    "awaiting_approval": 202,
    "inline": 200,
    "empty": 400,
    "unknown": 400,
    "ambiguous": 400,
    "invalid": 400,
    "identity": 403,
    "policy": 403,
    "declined": 403,
    "confirming": 403,
    "forbidden": 403,
    "locked": 409,
    "limit": 409,
    "finished": 409,
    "busy": 503,
    "shutdown": 503,
}
KEEPALIVE = 10.0  # seconds between SSE comments on a quiet stream (and store checks)

Context = dict[str, Any]  # what the request did, for its audit row


def channel(key: ApiKey) -> str:
    return f"api:{key.name}"


class Executions:
    def __init__(self, ops: Operations, feeds: Feeds, max_body: int) -> None:
        self.ops = ops
        self.feeds = feeds
        self.max_body = max_body

    # -- POST /executions -------------------------------------------------------------------

    async def create(self, request: Request, key: ApiKey, ctx: Context) -> Response:
        run = RunRequest.parse(await read_json(request, self.max_body))
        feed = Feed()
        msg = Message(
            text=run.text if run.text is not None else f"run {run.ref}",
            user=api_user(key),
            responder=ApiResponder(feed, confirm=run.confirm),
            channel=channel(key),
        )
        outcome = await run_in_threadpool(self._submit, msg, run)
        ctx.update(ref=outcome.ref, execution_id=outcome.execution_id)
        ex_id = outcome.execution_id
        if ex_id is not None:
            if outcome.refused:
                feed.end()  # refused at admission: nothing more will be said
            self.feeds.add(ex_id, feed)
        if outcome.kind in ("accepted", "awaiting_approval") and ex_id is not None:
            body = {
                "id": ex_id,
                "ref": outcome.ref,
                "state": outcome.kind,
                "links": {"self": link(ex_id), "events": link(ex_id, "/events")},
            }
            return JSONResponse(body, status_code=202, headers={"Location": link(ex_id)})
        if outcome.kind == "inline":
            return JSONResponse({"ref": outcome.ref, "replies": feed.replies()})
        raise _refusal(outcome)

    def _submit(self, msg: Message, run: RunRequest) -> Outcome:
        if run.text is not None:
            return self.ops.submit(msg)
        assert run.ref is not None
        cmd = self.ops.table.get(run.ref)
        try:
            params = bind(cmd, run.params) if cmd is not None else None
        except ParamError as exc:
            params, error = None, Invalid(cmd, str(exc)).message()  # type: ignore[arg-type]
        if cmd is not None and params is not None:
            return self.ops.submit_command(msg, cmd, params)
        # Usage and suggestions only for people Marvin would answer at all (as in chat).
        try:
            msg = Message(msg.text, self.ops.identify(msg.user), msg.responder, msg.channel)
        except Refused as exc:
            self.ops.audit("refused", msg, run.ref, detail=exc.log_reason)
            return Outcome("identity", str(exc), ref=run.ref)
        if cmd is None:
            family = run.ref.split(".")[0]
            close = [c.ref for c in self.ops.table if c.spec.family == family]
            hint = f" Commands in that family: {', '.join(close)}." if close else ""
            text = f"I don't know a command `{run.ref}`.{hint} GET /api/v1/commands lists yours."
            self.ops.audit("unknown", msg, None, detail=text[:300])
            return Outcome("unknown", text)
        self.ops.audit("invalid", msg, cmd.ref, detail=error[:300])
        return Outcome("invalid", error, ref=cmd.ref)

    # -- GET /executions/{id}, its events, and cancel -------------------------------------------

    async def show(self, request: Request, key: ApiKey, ctx: Context) -> Response:
        row = await self._visible(request, key)
        feed = self.feeds.get(row["id"])
        trail = await run_in_threadpool(self.ops.audit_trail, row["id"])
        return JSONResponse(execution_view(row, feed, trail))

    async def events(self, request: Request, key: ApiKey, ctx: Context) -> Response:
        row = await self._visible(request, key)
        last = request.headers.get("last-event-id", "")
        start = int(last) + 1 if last.isdigit() else 0
        stream = self._stream(row["id"], self.feeds.get(row["id"]), start)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)

    async def cancel(self, request: Request, key: ApiKey, ctx: Context) -> Response:
        user = await self.identify(key)
        ex_id = request.path_params["id"]
        outcome = await run_in_threadpool(self.ops.request_cancel, ex_id, user)
        ctx.update(ref=outcome.ref, execution_id=outcome.execution_id)
        if outcome.kind == "unknown":
            raise ApiError(404, "not_found", outcome.message)
        if outcome.kind != "accepted":
            raise _refusal(outcome)
        return JSONResponse({"id": outcome.execution_id, "message": outcome.message}, 202)

    async def commands(self, request: Request, key: ApiKey, ctx: Context) -> Response:
        user = await self.identify(key)

        def mine() -> dict[str, Any]:
            cmds = [command_view(c) for c in self.ops.table if self.ops.visible(user, c)]
            return {"owner": user.email, "notes": self.ops.describe(user), "commands": cmds}

        return JSONResponse(await run_in_threadpool(mine))

    async def identify(self, key: ApiKey) -> User:
        try:
            return await run_in_threadpool(self.ops.identify, api_user(key))
        except Refused as exc:
            raise ApiError(403, "identity", str(exc)) from None

    async def _visible(self, request: Request, key: ApiKey) -> dict[str, Any]:
        """The execution if it is the key owner's, or the owner is an auditor; the same 404
        for "no such id" and "not yours" (ids are not an oracle), as ``status`` in chat."""
        user = await self.identify(key)
        ex_id = request.path_params["id"].strip().lower()

        def read() -> dict[str, Any] | None:
            row = self.ops.execution(ex_id)
            if row is None:
                return None
            msg = Message(f"read {ex_id}", user, ApiResponder(Feed(), confirm=False), channel(key))
            own = bool(row["email"] and user.email and row["email"].lower() == user.email)
            if own:
                return row
            if self.ops.is_auditor(user):
                self.ops.audit("audit_read", msg, row["ref"], detail=f"api {ex_id}")
                return row
            self.ops.audit("refused", msg, row["ref"], detail="another user's execution")
            return None

        row = await run_in_threadpool(read)
        if row is None:
            raise ApiError(404, "not_found", f"I can't find `{ex_id}` among your executions.")
        return row

    async def _stream(self, ex_id: str, feed: Feed | None, start: int) -> AsyncIterator[str]:
        """Past events first (from ``Last-Event-ID`` on), then new ones, then the final state.
        Executions this process did not start through the API (Slack's, or before a restart)
        are followed through the store: progress and the final state."""
        index, progress, ended_at = start, None, None
        loop = asyncio.get_running_loop()
        while True:
            ended = False
            if feed is not None:
                events, ended = feed.since(index)
                for kind, data in events:
                    yield _sse(kind, data, index)
                    index += 1
            row = await run_in_threadpool(self.ops.execution, ex_id)
            if row is None:
                return
            if feed is None and row["progress"] and row["progress"] != progress:
                progress = row["progress"]
                yield _sse("progress", {"text": progress}, None)
            if row["state"] in TERMINAL and ended_at is None:
                ended_at = loop.time()
            # With a feed the end is its own (the result is said after the outcome is
            # recorded); the store's word is only a safety net for a feed left open.
            if ended or (ended_at is not None and (feed is None or loop.time() - ended_at > 2)):
                final = {"state": row["state"], "reason": row["reason"]}
                if feed is not None:
                    final["result"] = feed.result
                yield _sse("state", final, None)
                return
            if feed is not None:
                woke = await feed.wait(index, 1.0 if ended_at is not None else KEEPALIVE)
            else:
                woke = False
                await asyncio.sleep(1.0)
            if not woke:
                yield ": keep-alive\n\n"


def _sse(kind: str, data: dict[str, Any], index: int | None) -> str:
    head = f"id: {index}\n" if index is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data)}\n\n"


def _refusal(outcome: Outcome) -> ApiError:
    status = STATUS.get(outcome.kind, 500)
    extra: dict[str, Any] = {"ref": outcome.ref} if outcome.ref else {}
    if outcome.execution_id:
        extra["id"] = outcome.execution_id
    headers = {"Retry-After": "30"} if status == 503 else None
    if outcome.kind in ("declined", "confirming"):
        text = (
            f'`{outcome.ref}` asks for confirmation: send "confirm": true with the request '
            "to run it."
        )
        return ApiError(403, "confirmation_required", text, extra=extra)
    return ApiError(status, outcome.kind, outcome.message, headers=headers, extra=extra)
