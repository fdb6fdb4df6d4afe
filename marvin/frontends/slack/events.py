"""Which Slack events are commands, and which were already seen.

A bot must never trigger Marvin, so anything with a bot marker, a hidden subtype or no human
author is dropped. Slack redelivers un-acknowledged envelopes, sometimes resends one, and has
been seen sending one message under two event ids (and a DM mention arrives both as
``app_mention`` and as ``message``), so acceptance is keyed both by event id and by
``(channel, ts)``. Those keys are claimed in the store, so a redelivery is caught on whichever
replica it lands, and after a restart (``SharedDeduper`` does the same for button presses).

``Claimer`` writes the claims. When none is being written, the socket worker writes its own
at once (no other thread to wake per event, which is what a steady stream of events meets).
While one is being written, the others do not wait: they queue, and the claimer's thread
writes everything queued in one statement next. Claiming on every socket worker, one
transaction each, queued a burst of 200 behind the store's lock (p50 13 ms per event, and the
workers were the bottleneck of the whole reply).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from marvin.core.facade import SharedState
from marvin.core.model import Message, Responder, User

__all__ = ["Claimer", "SharedDeduper", "Gate", "Inbound", "classify", "to_message"]

log = structlog.get_logger("marvin.slack.events")

# Subtypes that are still a person typing a message; every other subtype (bot_message,
# message_changed, message_deleted, channel_join, ...) is not a command.
_HUMAN_SUBTYPES = frozenset({None, "thread_broadcast", "file_share"})


@dataclass(frozen=True)
class Inbound:
    """An event that is a command candidate."""

    event: dict[str, Any]
    event_id: str | None
    is_dm: bool

    @property
    def key(self) -> tuple[str, str]:
        return (self.event["channel"], self.event["ts"])

    @property
    def keys(self) -> list[tuple[str, ...]]:
        """Its dedupe keys: the event id (if any) and the message itself."""
        ids: list[tuple[str, ...]] = [("ev", self.event_id)] if self.event_id else []
        return [*ids, ("msg", *self.key)]


def classify(event: dict[str, Any], bot_user_id: str | None) -> str | None:
    """None if ``event`` may be a command, else why it is ignored (for the debug log)."""
    kind = event.get("type")
    if kind == "message":
        if event.get("channel_type") != "im":
            return "not a direct message"
    elif kind != "app_mention":
        return f"event type {kind}"
    if event.get("subtype") not in _HUMAN_SUBTYPES or event.get("hidden"):
        return f"subtype {event.get('subtype')}"
    if event.get("edited"):
        # Slack re-sends an edited mention as a new app_mention with the old ts: editing a
        # message must never (re)run a command.
        return "an edit"
    if event.get("bot_id") or event.get("bot_profile"):
        return "from a bot"
    user = event.get("user")
    if not user or not isinstance(user, str):
        return "no user"
    if bot_user_id and user == bot_user_id:
        return "my own message"
    if not event.get("channel") or not event.get("ts"):
        return "no channel or ts"
    return None


def _names(keys: Iterable[Hashable]) -> list[str]:
    return ["slack:" + ":".join(map(str, k)) if isinstance(k, tuple) else str(k) for k in keys]


class SharedDeduper:
    """Keys (aliases of one thing, e.g. a button press) seen before, in the store's claims
    (``SharedState.claim``): a key is recorded only once the store has it, so a failed claim
    never hides the redelivery that follows."""

    def __init__(self, shared: SharedState, ttl: float = 900.0) -> None:
        self.shared, self.ttl = shared, ttl

    def seen(self, keys: Iterable[Hashable]) -> bool:
        """Record ``keys``; True if any was recorded already (and unexpired)."""
        return not self.shared.claim(_names(k for k in keys if k is not None), self.ttl)


class Gate:
    """Which events may be commands (``Claimer`` then drops the ones seen before)."""

    def __init__(self, bot_user_id: str | None) -> None:
        self.bot_user_id = bot_user_id

    def candidate(self, payload: dict[str, Any]) -> Inbound | None:
        """The event if it may be a command (not yet deduplicated)."""
        event = payload.get("event") or {}
        event_id = payload.get("event_id")
        why = classify(event, self.bot_user_id)
        if why is not None:
            log.debug("event ignored", event_id=event_id, reason=why, type=event.get("type"))
            return None
        return Inbound(event, event_id, event.get("channel_type") == "im")


def _duplicate(inbound: Inbound) -> None:
    log.info(
        "duplicate event dropped",
        event_id=inbound.event_id,
        channel=inbound.key[0],
        ts=inbound.key[1],
        type=inbound.event.get("type"),
    )


class Claimer:
    """Claims candidate events in the store (the caller's own at once when no claim is being
    written; else many per statement on a thread of its own), then passes each first-seen one
    to ``fresh``. ``failed(inbound)`` is told of events whose claim could not be written (the
    store is down): they are not run."""

    def __init__(
        self,
        shared: SharedState,
        ttl: float,
        fresh: Callable[[Inbound], None],
        failed: Callable[[Inbound], None],
        *,
        batch: int = 500,
    ) -> None:
        self.shared, self.ttl, self.batch = shared, ttl, batch
        self.fresh, self.failed = fresh, failed
        self._queue: queue.SimpleQueue[Inbound | None] = queue.SimpleQueue()
        self._writing = threading.Lock()  # held while claims are written, by either path
        self._thread = threading.Thread(target=self._run, name="marvin-slack-claims", daemon=True)
        self._thread.start()

    def submit(self, inbound: Inbound) -> None:
        if self._queue.empty() and self._writing.acquire(blocking=False):
            try:
                fresh = self._write([inbound])
            finally:
                self._writing.release()
            self._hand_over([inbound], fresh)
        else:
            self._queue.put(inbound)

    def close(self, timeout: float = 3.0) -> None:
        """Claim and pass on what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first]
            while first is not None and len(batch) < self.batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            events = [i for i in batch if i is not None]
            if events:
                with self._writing:
                    fresh = self._write(events)
                self._hand_over(events, fresh)
            if len(events) < len(batch):
                return

    def _write(self, events: list[Inbound]) -> list[bool] | None:
        """Which events are seen here first; None when the store could not be written."""
        try:
            return self.shared.claim_many([_names(i.keys) for i in events], self.ttl)
        except Exception:
            log.exception("could not record events in the store; not run", events=len(events))
            return None

    def _hand_over(self, events: list[Inbound], fresh: list[bool] | None) -> None:
        for n, inbound in enumerate(events):
            try:
                if fresh is None:
                    self.failed(inbound)
                elif fresh[n]:
                    self.fresh(inbound)
                else:
                    _duplicate(inbound)
            except Exception:
                log.exception("could not hand an event over", event_id=inbound.event_id)


def to_message(inbound: Inbound, responder: Responder) -> Message:
    """The core's Message. Only ids are trusted: the authorizer resolves the email through
    users.info; display names are never used to decide anything."""
    event = inbound.event
    ts = event["ts"]
    user = User(
        id=event["user"],
        email=None,
        name="",
        source="slack",
        team_id=event.get("user_team") or event.get("team"),
        extra={
            "user_team": event.get("user_team"),
            "team": event.get("team"),
            "source_team": event.get("source_team"),
        },
    )
    return Message(
        text=event.get("text") or "",
        user=user,
        responder=responder,
        channel=event["channel"],
        # Where later notices (e.g. "interrupted by a restart") go: the same place as replies,
        # a thread in a channel, the conversation itself in a DM.
        thread=event.get("thread_ts") if inbound.is_dm else event.get("thread_ts") or ts,
        ts=ts,
        is_dm=inbound.is_dm,
    )
