"""How Marvin answers one Slack message: thread replies, ephemeral refusals, one progress
message, state reactions, long output split or attached, and Confirm/Cancel buttons.

Called from Marvin's job and intake threads, never Bolt's. A failed Web API call is logged and
swallowed: the command's outcome must not depend on whether the chat message got through
(slack_sdk's retry handlers have already retried rate limits, 5xx and dropped connections).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from marvin.core.model import Reply, State
from marvin.core.text import split_text, summary
from marvin.frontends.slack.blocks import blocks_for
from marvin.frontends.slack.settings import SlackSettings

if TYPE_CHECKING:
    from marvin.frontends.slack.confirm import Confirmations

__all__ = ["SlackResponder"]

log = structlog.get_logger("marvin.slack.responder")
_ERRORS = (SlackApiError, SlackClientError, OSError)


class SlackResponder:
    """Replies for the message ``ts`` by ``user_id`` in ``channel``. ``thread_ts`` is where
    replies go: the user's message (or its thread) in a channel, None at the top of a DM."""

    def __init__(
        self,
        client: WebClient,
        *,
        channel: str,
        ts: str,
        user_id: str,
        thread_ts: str | None,
        is_dm: bool,
        settings: SlackSettings,
        confirmations: Confirmations | None = None,
        undelivered: Callable[[str, str], None] | None = None,
    ) -> None:
        self.client = client
        self.channel, self.ts, self.user_id = channel, ts, user_id
        self.thread_ts, self.is_dm = thread_ts, is_dm
        self.settings = settings
        self.confirmations = confirmations
        # undelivered(text, error): a reply Slack would not take where it belongs (audited)
        self.undelivered = undelivered
        self._last_error: str | None = None
        self._progress_ts: str | None = None
        # Slack shows an ephemeral reply in a thread only once that thread exists: a user's
        # own thread, or one Marvin started by answering there.
        self._thread_live = bool(thread_ts) and thread_ts != ts
        self._progress_lock = threading.Lock()  # one progress message, even from two threads

    # -- Responder protocol ------------------------------------------------------------------

    def say(self, reply: str | Reply) -> None:
        blocks = blocks_for(reply) if isinstance(reply, Reply) else None
        if isinstance(reply, Reply) and blocks:
            limit = self.settings.max_message_chars
            text = reply.text
            if len(text) > limit:  # only the notification fallback; the blocks carry it all
                text = text[: limit - 40].rstrip() + "\n… (see the message for the rest)"
            where = self._where()
            if self._call(self.client.chat_postMessage, text=text, blocks=blocks, **where):
                return
            # Slack refused the blocks (invalid_blocks, too long...): the text still goes out.
        body = reply.text if isinstance(reply, Reply) else str(reply)
        if not self._post_long(body):
            self._elsewhere(body)

    def whisper(self, text: str) -> None:
        if self.is_dm:  # nobody else can see a DM: a normal message reads better
            if not self._post_long(text):
                self._elsewhere(text)
            return
        for piece in split_text(text, self.settings.max_message_chars):
            where = {"thread_ts": self.thread_ts} if self._thread_live else {}
            if not self._call(
                self.client.chat_postEphemeral,
                channel=self.channel,
                user=self.user_id,
                text=piece,
                **where,
            ):
                self._elsewhere(text)
                return

    def progress(self, text: str) -> None:
        limit = self.settings.max_message_chars
        if len(text) > limit:  # a status line; say so rather than cut silently
            text = text[: limit - 20].rstrip() + " … (truncated)"
        with self._progress_lock:
            if self._progress_ts is None:
                resp = self._call(self.client.chat_postMessage, text=text, **self._where())
                if resp is not None:
                    self._progress_ts = resp.get("ts")
            else:
                self._call(
                    self.client.chat_update, channel=self.channel, ts=self._progress_ts, text=text
                )

    def react(self, state: State) -> None:
        name = self.settings.reactions.get(state)
        if not name:
            return
        self._call(
            self.client.reactions_add,
            channel=self.channel,
            timestamp=self.ts,
            name=name,
            quiet=("already_reacted",),
        )

    def confirm(self, prompt: str, on_result: Callable[[bool], None]) -> None:
        if self.confirmations is None:
            self.whisper("I can't ask for confirmation here, so nothing was run.")
            return
        self.confirmations.ask(
            channel=self.channel,
            thread_ts=self.thread_ts,
            requester=self.user_id,
            prompt=prompt,
            on_result=on_result,
        )

    # -- internals ---------------------------------------------------------------------------

    def _where(self) -> dict[str, Any]:
        out: dict[str, Any] = {"channel": self.channel, "unfurl_links": False}
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
            self._thread_live = True  # after this post the thread exists
        return out

    def _post_long(self, text: str) -> bool:
        """One message, several (split at lines), or a file beyond the threshold; False if
        Slack would not take it."""
        if not text.strip():
            return True
        if len(text) > self.settings.file_threshold_chars and self._upload(text):
            return True
        for piece in split_text(text, self.settings.max_message_chars):
            if self._call(self.client.chat_postMessage, text=piece, **self._where()) is None:
                return False
        return True

    def _elsewhere(self, text: str) -> None:
        """A reply that could not be posted where it belongs (``not_in_channel``,
        ``channel_not_found``, 5xx after the retries): tell the requester in a DM instead,
        and record it as ``undelivered``."""
        error = self._last_error or "unknown error"
        log.warning("reply undelivered", channel=self.channel, user=self.user_id, error=error)
        if not self.is_dm:
            note = f"I couldn't post this in <#{self.channel}> ({error}), so here it is:\n"
            for piece in split_text(note + text, self.settings.max_message_chars):
                dm = self._call(self.client.chat_postMessage, channel=self.user_id, text=piece)
                if dm is None:
                    break
        if self.undelivered is not None:
            try:
                self.undelivered(text, error)
            except Exception:
                log.exception("could not record an undelivered reply")

    def _upload(self, text: str) -> bool:
        lines = text.count("\n") + 1
        comment = f"{summary(text)}\n(full output: {len(text):,} characters, {lines:,} lines)"
        resp = self._call(
            self.client.files_upload_v2,
            channel=self.channel,
            thread_ts=self.thread_ts,
            content=text,
            filename="marvin-output.txt",
            title="Marvin output",
            initial_comment=comment,
        )
        return resp is not None  # on failure the caller splits into messages instead

    def _call(
        self, method: Callable[..., Any], *, quiet: tuple[str, ...] = (), **kwargs: Any
    ) -> Any:
        try:
            return method(**kwargs)
        except _ERRORS as exc:
            error = exc.response.get("error") if isinstance(exc, SlackApiError) else repr(exc)
            self._last_error = str(error)
            if error not in quiet:
                log.warning(
                    "slack call failed", method=method.__name__, channel=self.channel, error=error
                )
            return None
