"""One execution of a command: its context object and the run on a job thread."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

import structlog

from marvin.model import Message, Reply, User
from marvin.registry import Command

__all__ = ["Context", "Cancelled", "render", "run"]

_TEMPLATE = re.compile(r"{{\s*([\w.]+)\s*}}")


class Cancelled(Exception):
    """Raised inside a handler by ``ctx.check()`` or ``ctx.sleep()`` once cancellation is asked."""


def render(template: str, params: Mapping[str, Any], execution_id: str) -> str:
    """Fill ``{{ name }}`` (or StackStorm's ``{{ execution.parameters.name }}``) placeholders."""

    def sub(m: re.Match[str]) -> str:
        key = m.group(1).removeprefix("execution.parameters.")
        if key in ("execution.id", "execution_id"):
            return execution_id
        value = params.get(key)
        return "" if value is None else str(value)

    return _TEMPLATE.sub(sub, template)


class Context:
    """What a handler receives first: ``ctx.reply()``, ``ctx.progress()``, ``ctx.log``..."""

    PROGRESS_INTERVAL = 2.0  # Slack edits are rate limited; one update per 2 s is plenty
    app: Any = None  # set for built-ins only: they read the table and the store

    def __init__(
        self,
        *,
        execution_id: str,
        command: Command,
        params: Mapping[str, Any],
        message: Message,
        services: Any = None,
    ) -> None:
        self.execution_id = execution_id
        self.command = command
        self.params = dict(params)
        self.message = message
        self.services = services  # clients and settings from configuration (marvin.app.Services)
        self.cancel_event = threading.Event()
        self.log = structlog.get_logger("marvin.command").bind(
            execution_id=execution_id, ref=command.ref, user=message.user.id
        )
        self._last_progress = 0.0
        self._pending_progress: str | None = None

    @property
    def user(self) -> User:
        return self.message.user

    def reply(self, text: str | Reply) -> None:
        self.message.responder.say(text)

    def progress(self, text: str) -> None:
        """Report progress; updates closer than PROGRESS_INTERVAL are folded into the next."""
        now = time.monotonic()
        if now - self._last_progress < self.PROGRESS_INTERVAL:
            self._pending_progress = text
            return
        self._last_progress, self._pending_progress = now, None
        self.message.responder.progress(text)

    def flush_progress(self) -> None:
        if self._pending_progress is not None:
            text, self._pending_progress = self._pending_progress, None
            self.message.responder.progress(text)

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled(self.execution_id)

    def sleep(self, seconds: float) -> None:
        """Wait, waking at once when the execution is cancelled."""
        if self.cancel_event.wait(seconds):
            raise Cancelled(self.execution_id)


def run(app: Any, cmd: Command, params: Mapping[str, Any], msg: Message, ex_id: str) -> None:
    """Run one accepted execution on the current (job) thread and report the outcome."""
    store, responder = app.store, msg.responder
    ctx = Context(
        execution_id=ex_id, command=cmd, params=params, message=msg, services=app.services
    )
    store.update(ex_id, state="running", started_at=time.time(), pid=os.getpid())
    ctx.log.info("execution started")
    if cmd.spec.ack:
        responder.say(render(cmd.spec.ack, params, ex_id))
    try:
        value = cmd.handler(ctx, **params)
    except Cancelled:
        _finish(app, ctx, "cancelled", f"Cancelled `{ex_id}`.", "cancelled")
        return
    except Exception as exc:
        ctx.log.exception("execution failed")
        reason = f"{type(exc).__name__}: {exc}"[:500]
        _finish(app, ctx, "failed", f"`{cmd.ref}` failed (`{ex_id}`): {reason}", reason)
        return
    ctx.flush_progress()
    if isinstance(value, Reply):
        text: str | Reply = Reply(f"{value.text} (`{ex_id}`)", value.blocks)
    else:
        body = (
            str(value) if value is not None else render(cmd.spec.result or "Done.", params, ex_id)
        )
        text = f"{body} (`{ex_id}`)"
    _finish(app, ctx, "succeeded", text, None)


def _finish(app: Any, ctx: Context, state: str, text: str | Reply, reason: str | None) -> None:
    msg = ctx.message
    app.store.update(ctx.execution_id, state=state, reason=reason, finished_at=time.time())
    app.store.audit(
        state,
        execution_id=ctx.execution_id,
        user_id=msg.user.id,
        email=msg.user.email,
        channel=msg.channel,
        ref=ctx.command.ref,
        detail=reason,
    )
    ctx.log.info("execution finished", state=state)
    msg.responder.say(text)
    msg.responder.react("succeeded" if state == "succeeded" else "failed")
