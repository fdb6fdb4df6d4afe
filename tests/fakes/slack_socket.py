"""Socket Mode half of the fake Slack: a ``websockets`` server on its own asyncio loop thread.

Speaks the wire protocol real Slack uses: ``hello`` on connect, ``events_api`` / ``interactive``
envelopes that the client must acknowledge with ``{"envelope_id": ...}``, ``disconnect`` messages,
and redelivery of unacknowledged events with ``retry_attempt``/``retry_reason``.

Several connections (one app token, several replicas) are held at once. By default an envelope
goes to the newest, as after a refresh; with ``spread=True`` each envelope, and each retry,
goes to a connection chosen at random, as Slack does with up to 10 connections of one app.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import struct
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Request, Response, Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from .slack_web import Identity, Store, WebApi


@dataclass
class Envelope:
    """One delivery attempt. ``first_id`` links redeliveries to the original envelope."""

    envelope_id: str
    body: dict[str, Any]
    first_id: str
    sent_at: float | None = None  # time.monotonic() when written to a socket
    acked_at: float | None = None
    ack_payload: Any = None
    connection: int | None = None  # which connection (1, 2, ... in connect order) got it

    @property
    def type(self) -> str:
        return str(self.body.get("type"))


class SocketModeServer:
    def __init__(
        self,
        store: Store,
        *,
        redeliver_after: float | None,
        max_retries: int,
        spread: bool = False,
        seed: int | None = None,
    ) -> None:
        self.store, self.ident = store, store.ident
        self.redeliver_after, self.max_retries = redeliver_after, max_retries
        self.spread, self._random = spread, random.Random(seed)
        self._serial: dict[ServerConnection, int] = {}  # connection -> its number
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="fake-slack-ws", daemon=True
        )
        self._server: Server | None = None
        self.port = 0
        # All below guarded by store.cond.
        self._tickets: set[str] = set()
        self.live: list[ServerConnection] = []  # connections that got hello, oldest first
        self.connection_count = 0
        self.envelopes: dict[str, Envelope] = {}
        self._acked: dict[str, list[Envelope]] = {}  # first_id -> its acknowledged deliveries
        self.errors: list[str] = []  # protocol violations by the client; tests assert it's empty
        self._pending: deque[Envelope] = deque()  # waiting for a client, as Slack queues them

    # -- lifecycle (called from the test thread) ---------------------------------------------

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(5)

    async def _start(self) -> None:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._check_ticket,
            ping_interval=None,  # the SDK clients ping us; keep the wire deterministic
            compression=None,
            close_timeout=1,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()

    async def _stop(self) -> None:
        self._abort_all()  # clients that never answer a close frame would stall close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # -- connection handling (loop thread) ---------------------------------------------------

    def new_url(self) -> str:
        """Mint a single-use URL, as apps.connections.open does."""
        ticket = uuid.uuid4().hex
        with self.store.cond:
            self._tickets.add(ticket)
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={self.ident.app_id}"

    def _check_ticket(self, conn: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        ticket = parse_qs(parts.query).get("ticket", [""])[0]
        with self.store.cond:
            valid = parts.path == "/link/" and ticket in self._tickets
            self._tickets.discard(ticket)
            if not valid:
                self.errors.append(f"rejected websocket request {request.path!r}")
        return None if valid else conn.respond(401, "invalid ticket\n")

    async def _handle(self, conn: ServerConnection) -> None:
        with self.store.cond:
            n = len(self.live) + 1
        hello = {
            "type": "hello",
            "num_connections": n,
            "debug_info": {
                "host": "applink-fake",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.ident.app_id},
        }
        try:
            await conn.send(json.dumps(hello))
            # Only now is it "connected", so no event can overtake hello on the wire.
            with self.store.cond:
                self.live.append(conn)
                self.connection_count += 1
                self._serial[conn] = self.connection_count
                pending, self._pending = list(self._pending), deque()
                self.store.cond.notify_all()
            for env in pending:
                await self._deliver(env)
            async for raw in conn:
                self._on_client_message(raw)
        except ConnectionClosed:
            pass
        finally:
            with self.store.cond:
                if conn in self.live:
                    self.live.remove(conn)
                self._serial.pop(conn, None)
                self.store.cond.notify_all()

    def _on_client_message(self, raw: str | bytes) -> None:
        now = time.monotonic()
        with self.store.cond:
            try:
                msg = json.loads(raw)
            except ValueError:
                self.errors.append(f"non-JSON frame {raw!r:.200}")
                return
            env = self.envelopes.get(msg.get("envelope_id")) if isinstance(msg, dict) else None
            if env is None:
                self.errors.append(f"ack for unknown envelope: {raw!r:.200}")
            elif env.acked_at is not None:
                self.errors.append(f"duplicate ack for {env.envelope_id}")
            else:
                env.acked_at, env.ack_payload = now, msg.get("payload")
                self._acked.setdefault(env.first_id, []).append(env)
            self.store.cond.notify_all()

    # -- sending -----------------------------------------------------------------------------

    def send(self, body: dict[str, Any], avoid: int | None = None) -> Envelope:
        """Send (or queue, if no client is connected) an envelope; blocks until it is written.
        ``avoid``: with ``spread``, not to this connection (when another is live)."""
        return self.send_many([body], avoid=avoid)[0]

    def send_many(
        self, bodies: list[dict[str, Any]], interval: float = 0.0, avoid: int | None = None
    ) -> list[Envelope]:
        """Send envelopes back to back, as Slack does in a burst (or one every ``interval``
        seconds, on the fake's clock whatever the client does): all written by one task on
        the loop, with no hand-over between threads per envelope (which paced a burst at the
        fake's own speed, 1-2 ms each, and slower the more the client made it work)."""
        envs = [Envelope(b["envelope_id"], b, b["envelope_id"]) for b in bodies]
        with self.store.cond:
            ids = [env.envelope_id for env in envs]
            for n, envelope_id in enumerate(ids):
                if envelope_id in self.envelopes or envelope_id in ids[:n]:
                    raise ValueError(f"envelope_id {envelope_id} already used")
            self.envelopes.update(zip(ids, envs, strict=True))

        async def deliver_all() -> None:
            start = time.monotonic()
            for n, env in enumerate(envs):
                if interval:
                    await asyncio.sleep(max(0.0, start + n * interval - time.monotonic()))
                await self._deliver(env, avoid)

        timeout = 5 + len(envs) * (interval + 0.01)
        asyncio.run_coroutine_threadsafe(deliver_all(), self.loop).result(timeout)
        return envs

    async def _deliver(self, env: Envelope, avoid: int | None = None) -> None:
        with self.store.cond:
            conn = self._pick(avoid)
            if conn is None:
                self._pending.append(env)
                return
            env.sent_at = time.monotonic()
            env.connection = self._serial.get(conn)
        try:
            await conn.send(json.dumps(env.body))
        except ConnectionClosed:
            with self.store.cond:
                self._pending.append(env)  # retried on the next connection
            return
        if self.redeliver_after is not None and env.type == "events_api":
            self.loop.call_later(self.redeliver_after, self._maybe_redeliver, env)

    def _pick(self, avoid: int | None) -> ServerConnection | None:
        """The connection for the next envelope (caller holds the condition)."""
        if not self.live:
            return None
        if not self.spread:
            return self.live[-1]  # newest wins, as after a refresh
        others = [c for c in self.live if self._serial.get(c) != avoid]
        return self._random.choice(others or self.live)

    def retry(self, envelope_id: str, reason: str = "timeout") -> Envelope:
        """Slack's retry of an envelope (acked or not: Slack retries when the ack came too
        late): a new envelope_id, the same payload, retry_attempt + 1; with ``spread``, on
        another connection than the one that got it when there is one."""
        with self.store.cond:
            env = self.envelopes[envelope_id]
            new_id = str(uuid.uuid4())
            body = {**env.body, "envelope_id": new_id}
            body.update(retry_attempt=int(env.body.get("retry_attempt", 0)) + 1)
            body.update(retry_reason=reason)
            retry = Envelope(new_id, body, env.first_id)
            self.envelopes[new_id] = retry
        asyncio.run_coroutine_threadsafe(
            self._deliver(retry, avoid=env.connection), self.loop
        ).result(5)
        return retry

    def _maybe_redeliver(self, env: Envelope) -> None:
        with self.store.cond:
            chain = [e for e in self.envelopes.values() if e.first_id == env.first_id]
            if any(e.acked_at is not None for e in chain):
                return
            attempt = int(env.body.get("retry_attempt", 0)) + 1
            if attempt > self.max_retries:
                return
            new_id = str(uuid.uuid4())
            body = {**env.body, "envelope_id": new_id}
            body.update(retry_attempt=attempt, retry_reason="timeout")
            retry = Envelope(new_id, body, env.first_id)
            self.envelopes[new_id] = retry
        self.loop.create_task(self._deliver(retry, avoid=env.connection))

    def send_disconnect(self, reason: str, close_after: float | None) -> None:
        async def go() -> None:
            msg = json.dumps(
                {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}
            )
            with self.store.cond:
                conns = list(self.live)
            for conn in conns:
                with contextlib.suppress(ConnectionClosed):
                    await conn.send(msg)
                if close_after is not None:  # Slack closes the old socket itself a bit later
                    self.loop.call_later(
                        close_after, lambda c=conn: self.loop.create_task(c.close())
                    )

        asyncio.run_coroutine_threadsafe(go(), self.loop).result(5)

    def drop(self) -> None:
        async def go() -> None:
            self._abort_all()

        asyncio.run_coroutine_threadsafe(go(), self.loop).result(5)

    def _abort_all(self) -> None:
        with self.store.cond:
            conns, self.live = list(self.live), []
            self.store.cond.notify_all()
        for conn in conns:
            sock = conn.transport.get_extra_info("socket")
            if sock is not None:  # linger 0 -> RST, like a load balancer dying mid-stream
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.transport.abort()

    # -- waiting (test thread) ---------------------------------------------------------------

    def wait_connected(self, timeout: float, min_count: int) -> int:
        with self.store.cond:
            ok = self.store.cond.wait_for(
                lambda: self.live and self.connection_count >= min_count, timeout
            )
            if not ok:
                raise TimeoutError(
                    f"no Socket Mode connection #{min_count} within {timeout}s "
                    f"(made {self.connection_count}, errors {self.errors})"
                )
            return self.connection_count

    def wait_ack(self, envelope_id: str, timeout: float) -> Envelope:
        def acked() -> Envelope | None:
            done = self._acked.get(self.envelopes[envelope_id].first_id)
            if not done or len(done) == 1:
                return done[0] if done else None
            order = list(self.envelopes)  # several acknowledged deliveries: the oldest
            return min(done, key=lambda e: order.index(e.envelope_id))

        with self.store.cond:
            if envelope_id not in self.envelopes:
                raise KeyError(envelope_id)
            if not self.store.cond.wait_for(lambda: acked() is not None, timeout):
                raise TimeoutError(f"envelope {envelope_id} not acknowledged within {timeout}s")
            result = acked()
            assert result is not None
            return result


HUMAN = "U0HUMAN0001"  # default author of synthetic user events
CHANNEL = "C0GENERAL01"


class EventBuilders:
    """Realistic Slack event/payload shapes. Mixed into FakeSlack, which provides ``ident``,
    ``store``, ``web`` (for response_url) and ``message()``."""

    ident: Identity
    store: Store
    web: WebApi

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def _msg(
        self, text: str, user: str, channel: str, ts: str | None, **more: Any
    ) -> dict[str, Any]:
        ts = ts or self.store.next_ts()
        return {
            "type": "message",
            "user": user,
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "channel": channel,
            "team": self.ident.team_id,
            "client_msg_id": str(uuid.uuid4()),
            **more,
        }

    def app_mention(
        self,
        text: str,
        *,
        user: str = HUMAN,
        channel: str = CHANNEL,
        ts: str | None = None,
        thread_ts: str | None = None,
        user_team: str | None = None,
    ) -> dict[str, Any]:
        """``app_mention`` whose text is ``<@BOT> text`` (user_team differs for Slack Connect)."""
        full = f"<@{self.ident.bot_user_id}> {text}"
        event = self._msg(full, user, channel, ts, type="app_mention")
        event.update(
            user_team=user_team or self.ident.team_id, source_team=user_team or self.ident.team_id
        )
        event["blocks"] = [
            {
                "type": "rich_text",
                "block_id": uuid.uuid4().hex[:5],
                "elements": [
                    {
                        "type": "rich_text_section",
                        "elements": [
                            {"type": "user", "user_id": self.ident.bot_user_id},
                            {"type": "text", "text": f" {text}"},
                        ],
                    }
                ],
            }
        ]
        if thread_ts:
            event["thread_ts"] = thread_ts
        return event

    def im_message(
        self, text: str, *, user: str = HUMAN, channel: str | None = None, ts: str | None = None
    ) -> dict[str, Any]:
        """A direct message to the bot (``channel_type: "im"``)."""
        return self._msg(text, user, channel or "D" + user[1:], ts, channel_type="im")

    def channel_message(
        self, text: str, *, user: str = HUMAN, channel: str = CHANNEL, ts: str | None = None
    ) -> dict[str, Any]:
        return self._msg(text, user, channel, ts, channel_type="channel")

    def bot_message(
        self,
        text: str,
        *,
        bot_id: str = "B0OTHERBOT1",
        channel: str = CHANNEL,
        channel_type: str = "channel",
        ts: str | None = None,
    ) -> dict[str, Any]:
        """A legacy ``bot_message`` (no user) from another bot; bot_id=fake.bot_id for our own."""
        event = self._msg(text, "", channel, ts, subtype="bot_message", bot_id=bot_id)
        event.update(channel_type=channel_type, username="otherbot")
        del event["user"], event["client_msg_id"]
        return event

    def message_changed(
        self,
        channel: str,
        ts: str,
        new_text: str,
        *,
        user: str = HUMAN,
        old_text: str = "",
        channel_type: str = "channel",
    ) -> dict[str, Any]:
        """An edit of message ``ts``: the event has its own ts; the edited one is nested."""
        now = self.store.next_ts()
        old = {"type": "message", "user": user, "text": old_text, "ts": ts}
        return {
            "type": "message",
            "subtype": "message_changed",
            "hidden": True,
            "channel": channel,
            "channel_type": channel_type,
            "ts": now,
            "event_ts": now,
            "message": {**old, "text": new_text, "edited": {"user": user, "ts": now}},
            "previous_message": old,
        }

    def message_deleted(
        self, channel: str, ts: str, *, user: str = HUMAN, channel_type: str = "channel"
    ) -> dict[str, Any]:
        now = self.store.next_ts()
        return {
            "type": "message",
            "subtype": "message_deleted",
            "hidden": True,
            "channel": channel,
            "channel_type": channel_type,
            "ts": now,
            "event_ts": now,
            "deleted_ts": ts,
            "previous_message": {"type": "message", "user": user, "text": "", "ts": ts},
        }

    def block_actions(
        self,
        action_id: str,
        value: str = "",
        *,
        user: str = HUMAN,
        channel: str = CHANNEL,
        message_ts: str | None = None,
        block_id: str = "actions",
    ) -> dict[str, Any]:
        """A button click on a bot message. Its ``response_url`` points back at this fake
        (recorded as pseudo-method ``RESPONSE_URL``)."""
        message = (self.message(channel, message_ts) if message_ts else None) or {}
        message_ts = message_ts or message.get("ts") or self.store.next_ts()
        now = self.store.next_ts()
        return {
            "type": "block_actions",
            "user": {
                "id": user,
                "username": user.lower(),
                "name": user.lower(),
                "team_id": self.ident.team_id,
            },
            "api_app_id": self.ident.app_id,
            "token": "fakeverificationtoken",
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": False,
            },
            "trigger_id": f"{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:12]}",
            "team": {"id": self.ident.team_id, "domain": self.ident.team_domain},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": "general"},
            "message": {"type": "message", "ts": message_ts, **message},
            "state": {"values": {}},
            "response_url": f"{self.web.base}/actions/{self.ident.team_id}/{uuid.uuid4().hex}",
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": block_id,
                    "text": {"type": "plain_text", "text": action_id, "emoji": True},
                    "value": value,
                    "action_ts": now,
                }
            ],
        }
