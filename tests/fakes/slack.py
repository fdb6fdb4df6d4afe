"""A strict loopback fake of Slack (Web API + Socket Mode) for tests and benchmarks.

The real slack_sdk / slack_bolt clients run unchanged against it::

    with FakeSlack.start() as fake:
        client = WebClient(token=fake.bot_token, base_url=fake.api_url)
        app = App(client=client)                     # bolt prefers client.token over token=
        handler = SocketModeHandler(app, fake.app_token)  # apps.connections.open via app.client
        handler.connect()
        fake.wait_connected()
        env_id = fake.send_event(fake.app_mention("deploy foo"))
        fake.wait_ack(env_id)
        reply = fake.wait_for("chat.postMessage")

For a subprocess (``marvin serve``) use ``fake.env()``. Times (``Call.received_at``,
``Envelope.sent_at/acked_at``) are ``time.monotonic()`` so they can be subtracted directly.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .slack_socket import CHANNEL, HUMAN, Envelope, EventBuilders, SocketModeServer
from .slack_web import (
    RESPONSE_URL,
    UPLOAD,
    ApiError,
    Call,
    Fault,
    Handler,
    Identity,
    Store,
    UploadedFile,
    WebApi,
    WebServer,
)

__all__ = [
    "ApiError",
    "RESPONSE_URL",
    "UPLOAD",
    "Call",
    "Envelope",
    "CHANNEL",
    "HUMAN",
    "FakeSlack",
    "Identity",
    "UploadedFile",
    "fake_slack",
    "fake_slack_env",
]


class FakeSlack(EventBuilders):
    """Fake Slack workspace with one bot. Thread-safe; every public method may be called from
    any thread except the fake's own."""

    def __init__(
        self,
        *,
        identity: Identity | None = None,
        redeliver_after: float | None = None,
        max_retries: int = 3,
        spread: bool = False,
        seed: int | None = None,
    ) -> None:
        """``redeliver_after``: resend un-acked events_api envelopes after this many seconds
        (Slack does so with a new envelope_id, the same event_id, retry_reason "timeout")."""
        self.ident = identity or Identity()
        self.store = Store(self.ident)
        self.socket = SocketModeServer(
            self.store,
            redeliver_after=redeliver_after,
            max_retries=max_retries,
            spread=spread,
            seed=seed,
        )
        self.web = WebApi(self.store, self.socket.new_url)
        self._http: WebServer | None = None
        self.add_user(self.ident.bot_user_id, name=self.ident.bot_name, is_bot=True)

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def start(cls, **kwargs: Any) -> FakeSlack:
        """Create and start a fake; use as ``with FakeSlack.start() as fake:`` or call stop()."""
        return cls(**kwargs)._boot()

    def _boot(self) -> FakeSlack:
        self.socket.start()
        self._http = WebServer(self.web)
        threading.Thread(
            # poll_interval bounds how long stop() waits for shutdown()
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-slack-http",
            daemon=True,
        ).start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        self.socket.stop()

    def __enter__(self) -> FakeSlack:
        return self if self._http is not None else self._boot()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- identity and wiring -----------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """``base_url`` for WebClient, with the trailing slash slack_sdk expects."""
        return f"{self.web.base}/api/"

    @property
    def bot_token(self) -> str:
        return self.ident.bot_token

    @property
    def app_token(self) -> str:
        return self.ident.app_token

    @property
    def team_id(self) -> str:
        return self.ident.team_id

    @property
    def bot_user_id(self) -> str:
        return self.ident.bot_user_id

    @property
    def bot_id(self) -> str:
        return self.ident.bot_id

    @property
    def app_id(self) -> str:
        return self.ident.app_id

    def env(self) -> dict[str, str]:
        """Environment for a subprocess bot pointed at this fake. The proxy variables are
        blanked because slack_sdk (WebClient and SocketModeClient) reads HTTP(S)_PROXY but
        ignores NO_PROXY, so a CI proxy would swallow our 127.0.0.1 traffic."""
        blank = {name: "" for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")}
        return {
            **blank,
            "SLACK_API_URL": self.api_url,
            "SLACK_BOT_TOKEN": self.bot_token,
            "SLACK_APP_TOKEN": self.app_token,
        }

    # -- Web API: state, recording, faults ----------------------------------------------------

    def add_user(
        self,
        id: str,  # mirrors Slack's field name
        *,
        email: str | None = None,
        name: str | None = None,
        display_name: str = "",
        real_name: str | None = None,
        team_id: str | None = None,
        deleted: bool = False,
        is_bot: bool = False,
        is_restricted: bool = False,
        is_ultra_restricted: bool = False,
        is_stranger: bool = False,
        is_app_user: bool = False,
        **extra: Any,
    ) -> dict[str, Any]:
        """Register a user for users.info, in Slack's shape. ``email=None`` omits it, as Slack
        does for bots or without the users:read.email scope."""
        name = name or id.lower()
        profile: dict[str, Any] = {
            "real_name": real_name if real_name is not None else name,
            "display_name": display_name,
            "real_name_normalized": real_name if real_name is not None else name,
            "display_name_normalized": display_name,
            "team": team_id or self.team_id,
        }
        if email is not None:
            profile["email"] = email
        user: dict[str, Any] = {
            "id": id,
            "team_id": team_id or self.team_id,
            "name": name,
            "deleted": deleted,
            "real_name": profile["real_name"],
            "tz": "Europe/London",
            "is_admin": False,
            "is_owner": False,
            "is_bot": is_bot,
            "is_app_user": is_app_user,
            "is_restricted": is_restricted,
            "is_ultra_restricted": is_ultra_restricted,
            "updated": int(time.time()),
            "profile": profile,
            **extra,
        }
        if is_stranger:  # Slack only sends the flag on users from outside the org
            user["is_stranger"] = True
        with self.store.cond:
            self.store.users[id] = user
        return user

    def register_method(self, method: str, handler: Handler, *, token: str = "bot") -> None:
        """Add or override a Web API method: ``handler(args) -> dict`` merged after ``ok: true``;
        raise ``ApiError("code")`` for an error. ``token`` is "bot" or "app"."""
        self.web.methods[method] = (token, handler)

    def fail_next(
        self,
        method: str,
        status: int = 429,
        retry_after: int | None = 1,
        *,
        error: str | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` authenticated calls of ``method`` fail. 429 sends
        Retry-After and ``ratelimited``; 5xx sends ``internal_error``; 200 with ``error``
        sends ``{"ok": false, "error": error}``."""
        default = "ratelimited" if status == 429 else "internal_error"
        fault = Fault(status, retry_after if status == 429 else None, error or default)
        with self.store.cond:
            self.store.faults.setdefault(method, deque()).extend([fault] * times)

    @property
    def calls(self) -> list[Call]:
        """Snapshot of every HTTP request so far, in arrival order."""
        with self.store.cond:
            return list(self.store.calls)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        timeout: float = 5.0,
        *,
        since: int = 0,
    ) -> Call:
        """First recorded call to ``method`` (failed ones too, see ``Call.ok``) at index >= since
        matching ``predicate``; waits for it. Pass ``since=len(fake.calls)`` for only new calls."""
        return self.store.wait_for(method, predicate, timeout, since)

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        with self.store.cond:
            found = self.store.messages.get((channel, ts))
            return dict(found) if found else None

    @property
    def reactions(self) -> set[tuple[str, str, str]]:
        """{(channel, ts, name)} added via reactions.add."""
        with self.store.cond:
            return set(self.store.reactions)

    @property
    def files(self) -> dict[str, UploadedFile]:
        with self.store.cond:
            return dict(self.store.files)

    # -- Socket Mode -------------------------------------------------------------------------

    def send_event(
        self,
        event: dict[str, Any],
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        envelope_id: str | None = None,
        event_id: str | None = None,
        avoid: int | None = None,
    ) -> str:
        """Deliver an ``events_api`` envelope to the newest connection, or with ``spread`` a
        random one other than ``avoid`` (queued until a client connects, as Slack does);
        returns its envelope_id once it is on the wire."""
        body = self._event_envelope(event, retry_attempt, retry_reason, envelope_id, event_id)
        return self.socket.send(body, avoid).envelope_id

    def send_events(self, events: list[dict[str, Any]], interval: float = 0.0) -> list[str]:
        """Deliver many ``events_api`` envelopes back to back (a burst), or one every
        ``interval`` seconds; their envelope_ids."""
        bodies = [self._event_envelope(ev, 0, "", None, None) for ev in events]
        return [env.envelope_id for env in self.socket.send_many(bodies, interval)]

    def _event_envelope(
        self,
        event: dict[str, Any],
        retry_attempt: int,
        retry_reason: str,
        envelope_id: str | None,
        event_id: str | None,
    ) -> dict[str, Any]:
        envelope_id = envelope_id or str(uuid.uuid4())
        now = int(time.time())
        i = self.ident
        body = {
            "envelope_id": envelope_id,
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
            "payload": {
                "token": "fakeverificationtoken",
                "team_id": i.team_id,
                "api_app_id": i.app_id,
                "event": event,
                "type": "event_callback",
                "event_id": event_id or "Ev" + uuid.uuid4().hex[:10].upper(),
                "event_time": now,
                "authorizations": [
                    {
                        "enterprise_id": None,
                        "team_id": i.team_id,
                        "user_id": i.bot_user_id,
                        "is_bot": True,
                        "is_enterprise_install": False,
                    }
                ],
                "is_ext_shared_channel": False,
                "event_context": f"4-fake-{i.team_id}-{event.get('channel', '')}",
            },
        }
        # Messages the bot can see become targets for reactions.add / threads.
        # Keep the fake's view of the channel in step with what the bot was told, so that
        # reactions.add / chat.update behave as they would on real Slack afterwards.
        channel, subtype = event.get("channel"), event.get("subtype")
        visible = event.get("type") in ("message", "app_mention") and not event.get("hidden")
        with self.store.cond:
            if visible and channel and event.get("ts"):
                self.store.messages[(channel, event["ts"])] = dict(event)
            elif subtype == "message_deleted":
                self.store.messages.pop((channel, event.get("deleted_ts")), None)
            elif subtype == "message_changed":
                edited = event.get("message") or {}
                stored = self.store.messages.get((channel, edited.get("ts")))
                if stored is not None:
                    stored["text"] = edited.get("text", stored.get("text"))
        return body

    def send_interactive(
        self, payload: dict[str, Any], *, envelope_id: str | None = None, avoid: int | None = None
    ) -> str:
        """Deliver an ``interactive`` envelope (e.g. from ``block_actions(...)``)."""
        body = {
            "envelope_id": envelope_id or str(uuid.uuid4()),
            "type": "interactive",
            "accepts_response_payload": False,
            "payload": payload,
        }
        return self.socket.send(body, avoid).envelope_id

    def send_envelope(self, body: dict[str, Any]) -> str:
        """Deliver a raw envelope (must carry ``envelope_id``), e.g. slash_commands."""
        return self.socket.send(body).envelope_id

    def retry(self, envelope_id: str, reason: str = "timeout") -> str:
        """Redeliver an envelope as Slack's retry (same event, new envelope_id, the next
        retry_attempt), on another connection when ``spread`` and there is one."""
        return self.socket.retry(envelope_id, reason).envelope_id

    def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> Envelope:
        """Wait until this envelope, or a redelivery of it, is acknowledged; returns that one."""
        return self.socket.wait_ack(envelope_id, timeout)

    def envelope(self, envelope_id: str) -> Envelope:
        with self.store.cond:
            return self.socket.envelopes[envelope_id]

    @property
    def envelopes(self) -> list[Envelope]:
        with self.store.cond:
            return list(self.socket.envelopes.values())

    def send_disconnect(
        self, reason: str = "refresh_requested", *, close_after: float | None = None
    ) -> None:
        """Send ``{"type": "disconnect", "reason": ...}`` to live sockets; optionally close them
        ``close_after`` seconds later (Slack closes ~10 s after "warning")."""
        self.socket.send_disconnect(reason, close_after)

    def drop_connections(self) -> None:
        """Kill every socket with a TCP reset, without a close frame."""
        self.socket.drop()

    def wait_connected(self, timeout: float = 5.0, *, min_count: int = 1) -> int:
        """Wait for a live connection and at least ``min_count`` connections made in total;
        returns the total. After a drop: ``wait_connected(min_count=fake.connection_count + 1)``."""
        return self.socket.wait_connected(timeout, min_count)

    @property
    def connection_count(self) -> int:
        """Socket Mode connections accepted so far (reconnects included)."""
        with self.store.cond:
            return self.socket.connection_count

    @property
    def live_connections(self) -> int:
        with self.store.cond:
            return len(self.socket.live)

    @property
    def errors(self) -> list[str]:
        """Protocol violations seen (bad tickets, unknown or duplicate acks, non-JSON)."""
        with self.store.cond:
            return list(self.socket.errors)


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A started FakeSlack, stopped after the test."""
    with FakeSlack.start() as fake:
        yield fake


@pytest.fixture
def fake_slack_env(fake_slack: FakeSlack) -> dict[str, str]:
    """Env vars (SLACK_API_URL, SLACK_BOT_TOKEN, SLACK_APP_TOKEN) for a subprocess bot."""
    return fake_slack.env()


if __name__ == "__main__":  # python -m tests.fakes.slack: see tests/fakes/slack_main.py
    from tests.fakes.slack_main import main

    raise SystemExit(main())
