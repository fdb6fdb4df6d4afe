"""Approve/Reject buttons under an approval request (``marvin.runtime.approvals``).

Anyone in the thread may press; who may answer is the application's decision (fresh
identity through users.info and the directory, not the requester, in the approver groups),
made on Marvin's pool, never on a Bolt thread. A refused press is told to the presser alone;
an accepted one is said in the thread, and once the request is decided the buttons give way
to the outcome. The press may reach any replica: the request lives in the store.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import structlog
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from marvin.core.facade import Operations, ResponderFor
from marvin.core.model import Message, Responder, User
from marvin.frontends.slack.confirm import post_ephemeral

__all__ = ["ApprovalPresses", "APPROVE", "REJECT", "ACTION_PATTERN"]

log = structlog.get_logger("marvin.slack.approve")

APPROVE, REJECT = "marvin_approve", "marvin_reject"
ACTION_PATTERN = re.compile(rf"^({APPROVE}|{REJECT})$")
_ERRORS = (SlackApiError, SlackClientError, OSError)


class ApprovalPresses:
    def __init__(
        self,
        marvin: Operations,
        client: WebClient,
        submit: Callable[[Callable[[], None]], None],
        responder_for: ResponderFor,
        voter_responder: Callable[[str, str | None, str], Responder],
    ) -> None:
        self.marvin, self.client, self.submit = marvin, client, submit
        self.responder_for = responder_for  # the request's own thread (the execution answers)
        self.voter_responder = voter_responder  # (channel, thread, user) -> the presser's

    def on_action(self, body: dict[str, Any]) -> None:
        """From the Bolt listener: hand the press to Marvin's pool."""
        try:
            self.submit(lambda: self._safe_press(body))
        except Exception:
            user = (body.get("user") or {}).get("id", "")
            channel = (body.get("container") or {}).get("channel_id", "")
            self._ephemeral(channel, user, "I'm busy or restarting; please press again.", None)

    def press(self, body: dict[str, Any]) -> None:
        action = (body.get("actions") or [{}])[0]
        ex_id, approve = str(action.get("value") or ""), action.get("action_id") == APPROVE
        who = body.get("user") or {}
        presser = str(who.get("id") or "")
        container = body.get("container") or {}
        channel = container.get("channel_id") or (body.get("channel") or {}).get("id", "")
        message = body.get("message") or {}
        message_ts = container.get("message_ts") or message.get("ts")
        thread_ts = message.get("thread_ts") or message_ts
        if not presser or not channel or not ex_id:
            return
        team = who.get("team_id") or (body.get("team") or {}).get("id")
        user = User(id=presser, email=None, source="slack", team_id=team)
        voter = Message(
            text=("approve " if approve else "reject ") + ex_id,
            user=user,
            responder=self.voter_responder(channel, thread_ts, presser),
            channel=channel,
            thread=thread_ts,
            ts=message_ts,
            is_dm=channel.startswith("D"),
        )
        result = self.marvin.vote(ex_id, voter, approve, self.responder_for)
        log.info("approval press", execution_id=ex_id, approve=approve, accepted=result.accepted)
        if not result.accepted:
            self._ephemeral(channel, presser, result.text, thread_ts)
            return
        if result.closed and message_ts:  # decided: the buttons give way to the outcome
            text = f"{message.get('text') or ''}\n{result.text}".strip()
            block = {"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}
            try:
                self.client.chat_update(channel=channel, ts=message_ts, text=text, blocks=[block])
            except _ERRORS:
                log.warning("could not update an approval request", exc_info=True)
        if not result.closed:
            try:
                kwargs: dict[str, Any] = {"channel": channel, "text": result.text}
                if thread_ts:
                    kwargs["thread_ts"] = thread_ts
                self.client.chat_postMessage(**kwargs)
            except _ERRORS:
                log.warning("could not post an approval", exc_info=True)

    def _safe_press(self, body: dict[str, Any]) -> None:
        try:
            self.press(body)
        except Exception:
            log.exception("approval press failed")

    def _ephemeral(self, channel: str, user: str, text: str, thread_ts: str | None) -> None:
        post_ephemeral(self.client, channel, user, text, thread_ts)
