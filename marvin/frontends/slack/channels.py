"""Channel names in the policy (``channels: ["#ops"]``) bound to Slack channel ids.

The policy decides on ids only (a name can be taken by another channel after a rename); this
front end knows names, so it binds those the policy mentions: all at start-up from
``conversations.list``, then one by one from ``channel_rename`` / ``group_rename`` /
``channel_created`` events. A name Slack does not know stays unbound and matches nothing.
"""

from __future__ import annotations

from typing import Any

import structlog
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from marvin.core.authz import ChannelBook

__all__ = ["ChannelNames", "CHANNEL_EVENTS"]

log = structlog.get_logger("marvin.slack.channels")

CHANNEL_EVENTS = ("channel_rename", "group_rename", "channel_created")
_MAX_PAGES = 100  # 100,000 channels at 1,000 a page


class ChannelNames:
    def __init__(self, client: WebClient, book: ChannelBook) -> None:
        self.client, self.book = client, book

    def load(self) -> int:
        """Bind every wanted name Slack lists; returns how many were bound. A failure is
        logged and leaves the names unbound (their rules then refuse chat requests)."""
        if not self.book.names:
            return 0
        bound, cursor = 0, None
        try:
            for _ in range(_MAX_PAGES):
                kwargs: dict[str, Any] = {
                    "types": "public_channel,private_channel",
                    "exclude_archived": True,
                    "limit": 1000,
                }
                if cursor:
                    kwargs["cursor"] = cursor
                resp = self.client.conversations_list(**kwargs)
                for channel in resp.get("channels") or []:
                    if str(channel.get("name", "")).lower() in self.book.names:
                        self.book.bind(channel["name"], channel["id"])
                        bound += 1
                cursor = (resp.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("could not list channels; named channels stay unbound", error=str(exc))
        missing = len(self.book.names) - bound
        log.info("policy channel names bound", bound=bound, unknown=max(0, missing))
        return bound

    def on_event(self, event: dict[str, Any]) -> None:
        """A rename frees the old name and binds the new one; a new channel may take a name."""
        channel = event.get("channel") or {}
        if not isinstance(channel, dict) or not channel.get("id"):
            return
        if event.get("type") in ("channel_rename", "group_rename"):
            self.book.unbind(channel["id"])
        name = str(channel.get("name") or "")
        if name:
            self.book.bind(name, channel["id"])
            log.info("channel name bound", channel=channel["id"], name=name)
