"""Confirm/Cancel buttons for commands that ask for confirmation.

Only the requester may answer; others get an ephemeral note. A question not answered within
``timeout`` seconds is dropped (its message says so) and a late press is told it expired. The
answer (``on_result``) runs on Marvin's pool through ``submit``, never on a Bolt thread.

With ``shared`` (the store's open confirmations), the question is also kept in the store: a
press that Slack delivers to another replica claims it there and resumes the request through
``resume``; the per-user limit counts questions on every replica.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from marvin.core.facade import SharedState
from marvin.core.model import Confirmation

__all__ = ["Confirmations", "CONFIRM", "CANCEL", "ACTION_PATTERN", "post_ephemeral"]

log = structlog.get_logger("marvin.slack.confirm")

CONFIRM, CANCEL = "marvin_confirm", "marvin_cancel"
ACTION_PATTERN = re.compile(rf"^({CONFIRM}|{CANCEL})$")
_ERRORS = (SlackApiError, SlackClientError, OSError)
_REF = re.compile(r"`([\w.-]+)`")  # the command's ref in the question ("Run `ref` with ...")


@dataclass
class _Pending:
    requester: str
    prompt: str
    on_result: Callable[[bool], None]
    channel: str
    ts: str
    thread_ts: str | None
    stop_timer: Callable[[], None] | None = field(default=None, repr=False)
    # Set once Slack answered the post with the message's ts; a press can arrive first.
    posted: threading.Event = field(default_factory=threading.Event, repr=False)


class Confirmations:
    """Open questions by token (the buttons' value)."""

    def __init__(
        self,
        client: WebClient,
        submit: Callable[[Callable[[], None]], None],
        *,
        timeout: float = 300.0,
        remember: int = 10_000,
        call_later: Callable[[float, Callable[[], None]], Callable[[], None]] | None = None,
        per_user: int = 5,
        audit: Callable[[str, str, str | None, str], None] | None = None,
        shared: SharedState | None = None,
        resume: Callable[[dict[str, Any], bool], None] | None = None,
    ) -> None:
        self.client, self.submit, self.timeout = client, submit, timeout
        # audit(presser, channel, ref, why): every refused press is an attempt on record.
        self.audit = audit
        # Expiry on Marvin's one timer thread (a thread per question would let one user
        # spawn hundreds); a plain threading.Timer only when none is given.
        self.call_later = call_later or _thread_timer
        self.per_user = per_user
        self.shared, self.resume = shared, resume
        self._pending: dict[str, _Pending] = {}
        self._closed: OrderedDict[str, str] = OrderedDict()  # token -> "expired" | "answered"
        self._remember = remember
        self._lock = threading.Lock()

    def ask(
        self,
        *,
        channel: str,
        thread_ts: str | None,
        requester: str,
        prompt: str,
        on_result: Callable[[bool], None],
    ) -> None:
        with self._lock:
            waiting = sum(1 for p in self._pending.values() if p.requester == requester)
        if self.shared is not None:
            waiting = max(waiting, self.shared.waiting(requester))  # on every replica
        if waiting >= self.per_user:
            self._ephemeral(
                channel,
                requester,
                f"You already have {waiting} confirmations "
                "waiting; answer those first. Nothing was run.",
                None,
            )
            on_result(False)
            return
        token = uuid.uuid4().hex
        minutes = f"{self.timeout / 60:g} minute" + ("" if self.timeout == 60 else "s")
        note = f"Only <@{requester}> can answer; this expires in {minutes}."
        blocks = [
            {"type": "section", "text": {"type": "mrkdwn", "text": prompt}},
            {
                "type": "actions",
                "block_id": "marvin_confirmation",
                "elements": [
                    _button("Confirm", CONFIRM, token, "primary"),
                    _button("Cancel", CANCEL, token, None),
                ],
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": note}]},
        ]
        kwargs: dict[str, Any] = {"channel": channel, "text": f"{prompt} {note}", "blocks": blocks}
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        # Registered before the post: the buttons are live the moment Slack shows them, which
        # can be before chat.postMessage returns here.
        pending = _Pending(requester, prompt, on_result, channel, "", thread_ts)
        with self._lock:
            self._pending[token] = pending
        if self.shared is not None:
            request = on_result.request if isinstance(on_result, Confirmation) else None
            self.shared.ask(
                token,
                requester=requester,
                prompt=prompt,
                request=request,
                channel=channel,
                thread_ts=thread_ts,
                expires_at=time.time() + self.timeout,
            )
        try:
            resp = self.client.chat_postMessage(**kwargs)
        except _ERRORS:
            with self._lock:
                self._pending.pop(token, None)
            if self.shared is not None:
                self.shared.close(token, "failed")
            log.warning("could not post a confirmation", channel=channel, exc_info=True)
            self._ephemeral(
                channel,
                requester,
                "I couldn't post the confirmation buttons, so nothing was run. Please try again.",
                None,
            )
            on_result(False)  # recorded as not confirmed; the command does not run
            return
        pending.channel, pending.ts = resp["channel"], resp["ts"]
        pending.posted.set()
        if self.shared is not None:
            self.shared.posted(token, pending.channel, pending.ts)
        with self._lock:
            if token in self._pending:  # not answered in the meantime
                pending.stop_timer = self.call_later(self.timeout, lambda: self._expire(token))

    def press(self, body: dict[str, Any]) -> None:
        """A Confirm or Cancel click (a ``block_actions`` payload); on Marvin's pool."""
        action = (body.get("actions") or [{}])[0]
        token, ok = str(action.get("value") or ""), action.get("action_id") == CONFIRM
        presser = (body.get("user") or {}).get("id", "")
        container = body.get("container") or {}
        channel = container.get("channel_id") or (body.get("channel") or {}).get("id", "")
        thread_ts = (body.get("message") or {}).get("thread_ts")
        if self.shared is not None:
            # The pressed message's ts: the asking replica may not have stored it yet.
            message_ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
            self._press_shared(token, ok, presser, channel, thread_ts, message_ts)
            return
        with self._lock:
            pending = self._pending.get(token)
            if pending is not None and presser == pending.requester:
                del self._pending[token]
                self._forget(token, "answered")
            state = self._closed.get(token)
        if pending is None:
            text = (
                "This confirmation has expired; nothing was run. Ask again if you still need it."
                if state != "answered"
                else "This was already answered."
            )
            why = {"answered": "already answered (a replayed press)", "expired": "expired"}
            self._refused(presser, channel, None, why.get(state or "", "unknown confirmation"))
            self._ephemeral(channel, presser, text, thread_ts)
            return
        if presser != pending.requester:
            text = f"Only <@{pending.requester}> can confirm or cancel this."
            ref = _REF.search(pending.prompt)
            why = f"not the requester ({pending.requester})"
            self._refused(presser, channel, ref.group(1) if ref else None, why)
            self._ephemeral(channel, presser, text, pending.thread_ts)
            return
        if pending.stop_timer is not None:
            pending.stop_timer()
        verdict = f":white_check_mark: <@{presser}> confirmed" if ok else f"<@{presser}> cancelled"
        self._close_message(pending, f"{pending.prompt}\n{verdict}.")
        log.info("confirmation answered", confirmed=ok, user=presser)
        pending.on_result(ok)

    def _press_shared(
        self,
        token: str,
        ok: bool,
        presser: str,
        channel: str,
        thread_ts: str | None,
        message_ts: str | None,
    ) -> None:
        """The store decides which press counts, whichever replica asked the question."""
        assert self.shared is not None
        verdict, row = self.shared.answer(token, presser)
        if verdict == "not_yours" and row is not None:
            text = f"Only <@{row['requester']}> can confirm or cancel this."
            ref = _REF.search(row["prompt"] or "")
            why = f"not the requester ({row['requester']})"
            self._refused(presser, channel, ref.group(1) if ref else None, why)
            self._ephemeral(channel, presser, text, row["thread_ts"])
            return
        if verdict != "answered" or row is None:
            why = "already answered (a replayed press)" if verdict == "closed" else "expired"
            self._refused(
                presser, channel, None, why if row is not None else "unknown confirmation"
            )
            text = (
                "This was already answered."
                if verdict == "closed"
                else "This confirmation has expired; nothing was run. "
                "Ask again if you still need it."
            )
            self._ephemeral(channel, presser, text, thread_ts)
            return
        with self._lock:
            pending = self._pending.pop(token, None)
            self._forget(token, "answered")
        if pending is None:  # asked by another replica: its message, from the store
            pending = _Pending(
                row["requester"], row["prompt"], _nothing, row["channel"] or channel,
                row["ts"] or message_ts or "", row["thread_ts"],
            )  # fmt: skip
            if pending.ts:
                pending.posted.set()
        elif pending.stop_timer is not None:
            pending.stop_timer()
        verdict_text = (
            f":white_check_mark: <@{presser}> confirmed" if ok else f"<@{presser}> cancelled"
        )
        if pending.posted.is_set() or pending.on_result is not _nothing:
            self._close_message(pending, f"{pending.prompt}\n{verdict_text}.")
        log.info("confirmation answered", confirmed=ok, user=presser)
        if pending.on_result is not _nothing:
            pending.on_result(ok)
        elif row["request"] is not None and self.resume is not None:
            self.resume(row["request"], ok)
        else:
            self._ephemeral(channel, presser, "I can't resume this request here.", thread_ts)

    def on_action(self, body: dict[str, Any]) -> None:
        """From the Bolt listener: hand the click to Marvin's pool."""
        try:
            self.submit(lambda: self._safe_press(body))
        except Exception:  # pool full or shutting down: tell the presser, don't block Bolt
            user = (body.get("user") or {}).get("id", "")
            channel = (body.get("container") or {}).get("channel_id", "")
            self._ephemeral(channel, user, "I'm busy or restarting; please press again.", None)

    def close(self) -> None:
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
        for p in pending:
            if p.stop_timer is not None:
                p.stop_timer()

    def __len__(self) -> int:
        return len(self._pending)

    # -- internals ---------------------------------------------------------------------------

    def _safe_press(self, body: dict[str, Any]) -> None:
        try:
            self.press(body)
        except Exception:
            log.exception("confirmation handling failed")

    def _refused(self, presser: str, channel: str, ref: str | None, why: str) -> None:
        log.info("confirmation press refused", user=presser, reason=why)
        if self.audit is not None:
            try:
                self.audit(presser, channel, ref, f"confirmation press refused: {why}")
            except Exception:
                log.exception("could not audit a refused press", user=presser)

    def _expire(self, token: str) -> None:
        with self._lock:
            pending = self._pending.pop(token, None)
            if pending is None:
                return
            self._forget(token, "expired")
        if self.shared is not None and not self.shared.close(token, "expired"):
            return  # answered on another replica meanwhile
        log.info("confirmation expired", user=pending.requester)
        self._close_message(pending, f"{pending.prompt}\n:hourglass: Expired; nothing was run.")
        try:
            self.submit(lambda: pending.on_result(False))  # audited: not confirmed
        except Exception:
            log.warning("could not record an expired confirmation", user=pending.requester)

    def _forget(self, token: str, state: str) -> None:
        self._closed[token] = state  # caller holds the lock
        while len(self._closed) > self._remember:
            self._closed.popitem(last=False)

    def _close_message(self, pending: _Pending, text: str) -> None:
        if not pending.posted.wait(10):
            return  # the post never came back; nothing to update
        block = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
        try:
            self.client.chat_update(
                channel=pending.channel, ts=pending.ts, text=text, blocks=[block]
            )
        except _ERRORS:
            log.warning("could not update a confirmation", exc_info=True)

    def _ephemeral(self, channel: str, user: str, text: str, thread_ts: str | None) -> None:
        post_ephemeral(self.client, channel, user, text, thread_ts)


def post_ephemeral(
    client: WebClient, channel: str, user: str, text: str, thread_ts: str | None
) -> None:
    """A note only ``user`` sees (a refused or late press); best effort, never raises."""
    if not channel or not user:
        return
    try:
        client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread_ts)
    except _ERRORS:
        log.warning("could not post an ephemeral note", exc_info=True)


def _button(label: str, action_id: str, value: str, style: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "action_id": action_id,
        "value": value,
    }
    if style:
        out["style"] = style
    return out


def _nothing(_ok: bool) -> None:
    return None


def _thread_timer(delay: float, fn: Callable[[], None]) -> Callable[[], None]:
    timer = threading.Timer(delay, fn)
    timer.daemon = True
    timer.start()
    return timer.cancel
