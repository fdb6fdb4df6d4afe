"""What an execution said, kept for ``GET /executions/{id}`` and its event stream.

Job threads write (``ApiResponder``); the event loop reads (``Feed.wait`` wakes an asyncio
future through ``call_soon_threadsafe``, so no thread waits per stream). ``Feeds`` keeps the
feeds of the last ``replies_kept`` executions started through this API process.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from marvin.core.model import Reply, State

__all__ = ["Event", "Feed", "Feeds", "ApiResponder"]

Event = tuple[str, dict[str, Any]]  # (kind: state | progress | reply, data)


class Feed:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.ended = False  # the final state was reached (read it from the store)
        self.result: str | None = None  # the result message (said just before the end)
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def push(self, kind: str, data: dict[str, Any], *, end: bool = False) -> None:
        with self._lock:
            if self.ended:
                return
            if kind:
                self.events.append((kind, {**data, "ts": round(time.time(), 3)}))
            self.ended = end
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_wake, fut)

    def end(self) -> None:
        self.push("", {}, end=True)

    def since(self, index: int) -> tuple[list[Event], bool]:
        with self._lock:
            return self.events[index:], self.ended

    def replies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(data) for kind, data in self.events if kind == "reply"]

    async def wait(self, index: int, timeout: float) -> bool:
        """Until there is an event past ``index`` or the end (True), or ``timeout`` (False)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if len(self.events) > index or self.ended:
                return True
            self._waiters.append((loop, fut))
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            with self._lock:
                if (loop, fut) in self._waiters:
                    self._waiters.remove((loop, fut))
            return False


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Feeds:
    """Bounded: past ``keep`` the oldest finished feed goes (or the oldest, if none is)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._feeds: OrderedDict[str, Feed] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, execution_id: str, feed: Feed) -> None:
        with self._lock:
            self._feeds[execution_id] = feed
            while len(self._feeds) > self.keep:
                done = next((k for k, f in self._feeds.items() if f.ended), None)
                self._feeds.pop(done if done is not None else next(iter(self._feeds)))

    def get(self, execution_id: str) -> Feed | None:
        with self._lock:
            return self._feeds.get(execution_id)


class ApiResponder:
    """The ``Responder`` of one API request. It cannot ask the requester anything, so a
    confirmation is answered from the request itself (``"confirm": true``)."""

    def __init__(self, feed: Feed, *, confirm: bool) -> None:
        self.feed = feed
        self._confirm = confirm
        self._last_said: str | None = None

    def say(self, reply: str | Reply) -> None:
        text = reply.text if isinstance(reply, Reply) else str(reply)
        self._last_said = text
        self.feed.push("reply", {"text": text, "kind": "say"})

    def whisper(self, text: str) -> None:
        self._last_said = text
        self.feed.push("reply", {"text": text, "kind": "whisper"})

    def progress(self, text: str) -> None:
        self.feed.push("progress", {"text": text})

    def react(self, state: State) -> None:
        if state == "accepted":
            self.feed.push("state", {"state": "accepted"})
            return
        # The outcome is recorded before the result is said and this is called: the final
        # state is the store's (succeeded, failed, cancelled, timed_out, refused...).
        self.feed.result = self._last_said
        self.feed.end()

    def confirm(self, prompt: str, on_result: Callable[[bool], None]) -> None:
        on_result(self._confirm)
