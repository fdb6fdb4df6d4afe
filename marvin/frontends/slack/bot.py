"""The Slack front end: a Bolt App on the ack-first Socket Mode handler, feeding Marvin.

Bolt listeners only filter, deduplicate and enqueue (``Marvin.handle`` returns at once):
matching, authorisation and the command run on Marvin's own pools, so a slow command never
delays an acknowledgement or another user's command.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from marvin.core.facade import Operations
from marvin.core.model import User
from marvin.frontends.slack.approve import ACTION_PATTERN as APPROVAL_ACTIONS
from marvin.frontends.slack.approve import ApprovalPresses
from marvin.frontends.slack.channels import CHANNEL_EVENTS, ChannelNames
from marvin.frontends.slack.confirm import ACTION_PATTERN, Confirmations
from marvin.frontends.slack.events import Claimer, Gate, Inbound, SharedDeduper, to_message
from marvin.frontends.slack.http import KeepAliveWebClient
from marvin.frontends.slack.responder import SlackResponder
from marvin.frontends.slack.settings import SlackSettings
from marvin.frontends.slack.socket import AckFirstHandler

__all__ = ["SlackBot", "web_client"]

log = structlog.get_logger("marvin.slack")

UNRECORDED = (
    "I couldn't record your message (my state store is unavailable), so nothing was run. "
    "Please try again in a minute."
)
_EXECUTION_ID = re.compile(r"\bex-[0-9a-f]{6}\b")


def web_client(token: str, base_url: str) -> WebClient:
    """A WebClient on ``base_url`` (SLACK_API_URL) that rides out rate limits (429 +
    Retry-After), 5xx and dropped connections."""
    return KeepAliveWebClient(  # connections reused: no handshake per reply in a burst
        token=token,
        base_url=base_url if base_url.endswith("/") else base_url + "/",
        timeout=30,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=3),
            RateLimitErrorRetryHandler(max_retry_count=5),
            ServerErrorRetryHandler(max_retry_count=3),
        ],
    )


class _QuietTokenWarning(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN itself and then warns that client= wins; it is the same
    token, so the warning is noise at every start."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


logging.getLogger("slack_bolt.App").addFilter(_QuietTokenWarning())


class SlackBot:
    """Owns the Bolt App, the socket handler, the dedupe gate and the open confirmations."""

    def __init__(
        self,
        marvin: Operations,
        client: WebClient,
        app_token: str,
        settings: SlackSettings,
        *,
        bot_user_id: str | None,
    ) -> None:
        self.marvin, self.client, self.settings = marvin, client, settings
        # Dedupe and confirmations live in the store: a redelivery or a button press may
        # reach any replica (Socket Mode spreads envelopes over connections).
        self.deduper = SharedDeduper(marvin.shared, settings.dedupe_seconds)  # button presses
        self.gate = Gate(bot_user_id)
        self.claims = Claimer(marvin.shared, settings.dedupe_seconds, self._fresh, self._unclaimed)
        self.confirmations = Confirmations(
            client,
            self._submit,
            timeout=settings.confirm_timeout,
            call_later=marvin.call_later,
            audit=self._audit_press,
            shared=marvin.shared,
            resume=self._resume,
        )
        # process_before_response: the listener runs right on the socket worker (after our
        # ack) instead of hopping to Bolt's own pool; it only enqueues, so this is quick.
        self.app = App(client=client, process_before_response=True)
        self.app.event("app_mention")(self._on_event)
        self.app.event("message")(self._on_event)
        self.app.action(ACTION_PATTERN)(self._on_action)
        # Two-person approval buttons, and the channel names the policy scopes rules to.
        self.approvals = ApprovalPresses(
            marvin, client, self._submit, self.responder_at, self._voter_responder
        )
        self.app.action(APPROVAL_ACTIONS)(self._on_approval)
        self.channel_names = ChannelNames(client, marvin.channels())
        for kind in CHANNEL_EVENTS:
            self.app.event(kind)(self._on_channel_event)
        self.handler = AckFirstHandler(self.app, app_token, ping_interval=settings.ping_interval)

    # -- lifecycle ---------------------------------------------------------------------------

    def connect(self) -> None:
        """Open the socket (apps.connections.open raises SlackApiError for a bad app token)."""
        self.channel_names.load()  # names in the policy -> ids, before the first event
        self.handler.connect()

    def connected(self) -> bool:
        return self.handler.connected()

    def close(self, timeout: float = 3.0) -> None:
        """Close the socket; bounded, because the client's reader may sit in recv a while."""
        self.confirmations.close()
        closer = threading.Thread(target=self.handler.close, name="marvin-socket-close")
        closer.daemon = True
        closer.start()
        closer.join(timeout)
        self.claims.close(timeout)  # events already acknowledged still get their turn

    def notify_interrupted(self, row: dict[str, Any]) -> None:
        """For ``Marvin.recover``: tell the requester, in their thread, what a restart cut."""
        channel = row.get("channel")
        if not channel or channel[0] not in "CDG":  # console and CLI runs have no channel
            return
        text = row.get("notice") or (
            f"`{row['id']}` ({row.get('ref')}) was interrupted by a restart; "
            "please check before retrying."
        )
        kwargs: dict[str, Any] = {"channel": channel, "text": text}
        if row.get("thread"):
            kwargs["thread_ts"] = row["thread"]
        try:
            self.client.chat_postMessage(**kwargs)
        except (SlackApiError, SlackClientError, OSError):
            log.warning("could not post an interruption notice", execution_id=row.get("id"))
        if row.get("ts") and row.get("state") == "interrupted":
            # The request's :eyes: gives way to the interrupted reaction.
            self._react(channel, row["ts"], "accepted", remove=True)
            self._react(channel, row["ts"], "interrupted")

    def _react(self, channel: str, ts: str, state: str, *, remove: bool = False) -> None:
        name = self.settings.reactions.get(state)
        if not name:
            return
        call = self.client.reactions_remove if remove else self.client.reactions_add
        try:
            call(channel=channel, timestamp=ts, name=name)
        except (SlackApiError, SlackClientError, OSError):
            log.info("reaction not changed", channel=channel, ts=ts, name=name, remove=remove)

    # -- listeners (on socket-mode worker threads, after the ack) ------------------------------

    def _on_event(self, body: dict[str, Any]) -> None:
        inbound = self.gate.candidate(body)
        if inbound is not None:
            self.claims.submit(inbound)  # deduplicated in the store, then to Marvin's pools

    def _fresh(self, inbound: Inbound) -> None:
        self.marvin.handle(to_message(inbound, self.responder(inbound)))

    def _unclaimed(self, inbound: Inbound) -> None:
        # A Web API call: on Marvin's pool, not on the socket worker or the claimer's thread.
        responder = self.responder(inbound)
        self.marvin.background(lambda: responder.whisper(UNRECORDED))

    def _on_action(self, ack: Callable[[], Any], body: dict[str, Any]) -> None:
        ack()  # already acknowledged on the socket; this just keeps Bolt content
        click = body.get("trigger_id") or (body.get("actions") or [{}])[0].get("action_ts")
        if click and self.deduper.seen([("ia", str(click))]):
            log.info("duplicate interaction dropped", trigger_id=click)
            return
        self.confirmations.on_action(body)

    def _on_approval(self, ack: Callable[[], Any], body: dict[str, Any]) -> None:
        ack()
        self.approvals.on_action(body)

    def _on_channel_event(self, body: dict[str, Any]) -> None:
        self.channel_names.on_event(body.get("event") or {})

    def responder_at(self, origin: Mapping[str, Any]) -> SlackResponder:
        """A responder for where a request was asked (an approved execution answers there)."""
        channel, thread = str(origin.get("channel") or ""), origin.get("thread")
        return SlackResponder(
            self.client,
            channel=channel,
            ts=str(origin.get("ts") or thread or ""),
            user_id=str(origin.get("user_id") or ""),
            thread_ts=thread,
            is_dm=bool(origin.get("dm")),
            settings=self.settings,
            confirmations=self.confirmations,
        )

    def _voter_responder(self, channel: str, thread: str | None, user: str) -> SlackResponder:
        return SlackResponder(
            self.client,
            channel=channel,
            ts=thread or "",
            user_id=user,
            thread_ts=thread,
            is_dm=channel.startswith("D"),
            settings=self.settings,
            confirmations=self.confirmations,
        )

    def _resume(self, request: dict[str, Any], ok: bool) -> None:
        """A Confirm/Cancel press for a question another replica asked (on Marvin's pool)."""
        user = (request.get("user") or {}).get("id") or ""
        channel, ts = request.get("channel") or "", request.get("ts") or ""
        is_dm = bool(request.get("is_dm"))
        event = {"channel": channel, "ts": ts, "user": user}
        if request.get("thread") and request.get("thread") != ts:
            event["thread_ts"] = request["thread"]
        responder = self.responder(Inbound(event, None, is_dm))
        self.marvin.resume(request, ok, responder)

    def responder(self, inbound: Inbound) -> SlackResponder:
        event = inbound.event
        # In a channel: a thread under the user's message (or its thread). In a DM: the
        # conversation itself, unless the user wrote in a thread there.
        thread = event.get("thread_ts") if inbound.is_dm else event.get("thread_ts") or event["ts"]
        return SlackResponder(
            self.client,
            channel=event["channel"],
            ts=event["ts"],
            user_id=event["user"],
            thread_ts=thread,
            is_dm=inbound.is_dm,
            settings=self.settings,
            confirmations=self.confirmations,
            undelivered=lambda text, error: self._undelivered(event, text, error),
        )

    def _undelivered(self, event: dict[str, Any], text: str, error: str) -> None:
        found = _EXECUTION_ID.search(text)
        self.marvin.audit_user(
            "undelivered",
            User(id=event["user"], email=None, source="slack"),
            channel=event["channel"],
            detail=f"{error}: {text[:200]}",
            execution_id=found.group(0) if found else None,
        )

    def _audit_press(self, presser: str, channel: str, ref: str | None, detail: str) -> None:
        who = User(id=presser, email=None, source="slack")
        self.marvin.audit_user(
            "press_refused", who, channel=channel or None, ref=ref, detail=detail
        )

    def _submit(self, job: Callable[[], None]) -> None:
        self.marvin.background(job)
