"""Bolt's Socket Mode handler, made to acknowledge first and to stay connected.

* Every envelope is acknowledged by the socket reader as it arrives, before Bolt sees it.
  Bolt would otherwise ack only after the client's queue, its worker pool, the middleware and
  listener matching (and not at all when no listener matches, so Slack would redeliver); the
  listeners only enqueue onto Marvin's pools anyway.
* The built-in SocketModeClient already reconnects on ``disconnect`` messages (``warning``,
  ``refresh_requested``) and on close frames, and its monitor notices a dead socket once per
  ``ping_interval``. Added here: a supervisor that reconnects as soon as the reader sees the
  socket die, and exponential backoff when connecting fails (Slack down, or ``link_disabled``:
  Socket Mode was turned off for the app, which is logged loudly while we keep trying).
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from typing import Any

import structlog
from slack_bolt import App
from slack_bolt.request import BoltRequest
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest

from marvin.frontends.slack.envelopes import problem

__all__ = ["ResilientSocketModeClient", "AckFirstHandler"]

log = structlog.get_logger("marvin.slack.socket")

MAX_BACKOFF = 60.0


class ResilientSocketModeClient(SocketModeClient):
    """SocketModeClient with backoff on failed connects and a fast-reconnect supervisor."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._failures = 0
        self._not_before = 0.0
        self._wake = threading.Event()
        self._supervisor: threading.Thread | None = None
        super().__init__(*args, **kwargs)
        # The reader calls these from its own thread just before it drops the socket.
        self.on_error_listeners.append(lambda _e: self._wake.set())
        self.on_close_listeners.append(lambda _c, _r: self._wake.set())

    def connect_to_new_endpoint(self, force: bool = False) -> None:
        """Every reconnect path (disconnect message, close frame, monitor, supervisor) comes
        here; failures back off instead of being retried at once."""
        if self.closed or time.monotonic() < self._not_before:
            return
        try:
            super().connect_to_new_endpoint(force)
        except Exception as exc:
            self._back_off(f"{type(exc).__name__}: {exc}")
            return
        if self.is_connected():
            if self._failures:
                log.warning("socket mode reconnected", after_failures=self._failures)
            self._failures, self._not_before = 0, 0.0

    def connect(self) -> None:
        """Serve from the new connection at once. The stock client closes the old session
        before it makes the new one current, and that close waits for the old reader's
        blocking receive (up to its 3 s timeout): every answer stalled meanwhile. Here the
        old session is detached, and once the new one is current its socket is shut down (which
        wakes its reader) and closed on a thread of its own."""
        old = self.current_session
        self.current_session = None  # super().connect() then leaves the old session to us
        try:
            super().connect()
        except BaseException:
            if self.current_session is None:
                self.current_session = old
            raise
        if old is not None:
            threading.Thread(
                target=_close_session, args=(old,), name="marvin-socket-old", daemon=True
            ).start()

    def enqueue_message(self, message: str) -> None:
        """Called by the reader thread for each text frame. Envelopes are acknowledged right
        here, before the frame waits in the worker pool behind others, so a burst of events
        (or a busy Marvin) never delays an ack; then they go straight to the workers (the
        client's processor thread would only parse each one again and hand it on: one more
        thread to wake per event). Anything else (hello, disconnect) takes the client's own
        path; disconnect messages are looked at before its processor thread reconnects."""
        try:
            msg = json.loads(message)
        except ValueError:
            msg = None
        if isinstance(msg, dict) and msg.get("envelope_id"):
            self._ack(str(msg["envelope_id"]))
            try:
                self.message_workers.submit(self.run_message_listeners, msg, message)
            except RuntimeError:  # the pool is shut down, which happens only on close
                log.warning("envelope dropped while closing", envelope_id=msg["envelope_id"])
            return
        if isinstance(msg, dict) and msg.get("type") == "disconnect":
            self._on_disconnect_message(msg.get("reason"))
        super().enqueue_message(message)

    def start_supervisor(self) -> None:
        if self._supervisor is None:
            self._supervisor = threading.Thread(
                target=self._supervise, name="marvin-socket-supervisor", daemon=True
            )
            self._supervisor.start()

    def close(self) -> None:
        self.closed = True
        self._wake.set()
        super().close()

    # -- internals ---------------------------------------------------------------------------

    def _ack(self, envelope_id: str) -> None:
        try:
            self.send_message(json.dumps({"envelope_id": envelope_id}))
        except Exception:  # socket gone: Slack redelivers, and the dedupe catches repeats
            log.warning("could not acknowledge", envelope_id=envelope_id, exc_info=True)

    def _on_disconnect_message(self, reason: str | None) -> None:
        if reason == "link_disabled":
            # Socket Mode was switched off in the app's settings: nothing works until someone
            # turns it back on, so say so loudly, and retry slowly rather than hammer Slack.
            log.error(
                "Slack disabled Socket Mode for this app (link_disabled): turn it back on under "
                "the app's settings > Socket Mode. Retrying with backoff."
            )
            self._back_off("link_disabled", announce=False)
        else:
            log.info("slack asked us to reconnect", reason=reason)

    def _back_off(self, why: str, *, announce: bool = True) -> None:
        self._failures += 1
        delay = min(MAX_BACKOFF, 2.0 ** (self._failures - 1)) * random.uniform(0.8, 1.2)
        self._not_before = time.monotonic() + delay
        if announce:
            log.error(
                "socket mode connect failed",
                error=why,
                attempt=self._failures,
                retry_in=round(delay, 1),
            )
        self._wake.set()

    def _supervise(self) -> None:
        interval = min(1.0, float(self.ping_interval))
        while not self.closed:
            self._wake.wait(max(interval, self._not_before - time.monotonic()))
            self._wake.clear()
            if self.closed:
                return
            time.sleep(0.02)  # let the reader finish dropping the dead socket
            if not self.is_connected() and self.auto_reconnect_enabled:
                self.connect_to_new_endpoint()


def _close_session(session: Any) -> None:
    sock = session.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        session.close()


class AckFirstHandler:
    """Feeds a Bolt ``App`` from a ``ResilientSocketModeClient`` through Bolt's public
    ``App.dispatch``: the client acknowledges every envelope as it arrives, so Bolt's own
    Socket Mode adapter (which acks after dispatch) is not used."""

    def __init__(
        self,
        app: App,
        app_token: str,
        *,
        ping_interval: float = 10.0,
        concurrency: int = 10,
    ) -> None:
        self.app = app
        self.client = ResilientSocketModeClient(
            app_token=app_token,
            logger=app.logger,
            web_client=app.client,  # so apps.connections.open uses SLACK_API_URL too
            proxy=app.client.proxy,
            ping_interval=ping_interval,
            concurrency=concurrency,
        )
        self.client.socket_mode_request_listeners.append(self.handle)

    def connect(self) -> None:
        self.client.connect()
        self.client.start_supervisor()

    def connected(self) -> bool:
        return self.client.is_connected()

    def close(self) -> None:
        # The reader holds the receive lock while it sits in recv(), and disconnect() needs
        # that lock; shutting the socket down first wakes the reader so close() is quick.
        self.client.closed = True
        self.client.auto_reconnect_enabled = False
        session = self.client.current_session
        sock = session.sock if session is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.client.close()

    def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:
        # Already acknowledged by the client's reader; Bolt's response is moot.
        bad = problem(req.type, req.payload)
        if bad is not None:
            log.warning(
                "malformed envelope dropped", envelope_id=req.envelope_id, type=req.type, why=bad
            )
            return
        try:
            self.app.dispatch(BoltRequest(body=req.payload, mode="socket_mode"))
        except Exception:
            log.exception("bolt dispatch failed", envelope_id=req.envelope_id, type=req.type)
