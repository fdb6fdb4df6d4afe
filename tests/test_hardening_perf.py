"""Issue 9, performance: the pieces behind the burst figure of benchmarks/slack_latency.py
(help rendered once per user, groups and channel kind; HTTP connections kept)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from marvin.core.authz import LocalAuthorizer
from marvin.frontends.slack.http import KeepAliveWebClient
from marvin.testing import Bot
from tests.fakes import slack as fakes
from tests.fakes.slack import FakeSlack

pytestmark = pytest.mark.timeout(60)
fake_slack = fakes.fake_slack  # re-exported so pytest finds the fixture here


class CountingAuthorizer(LocalAuthorizer):
    def __init__(self) -> None:
        super().__init__()
        self.visible_calls = 0

    def visible(self, user, cmd) -> bool:  # type: ignore[no-untyped-def]
        self.visible_calls += 1
        return super().visible(user, cmd)


def test_help_is_rendered_once_per_user_and_groups(marvin_bot: Callable[..., Bot]) -> None:
    authz = CountingAuthorizer()
    bot = marvin_bot(authorizer=authz)
    first = bot.send("help").text
    calls = authz.visible_calls
    assert calls > 0 and "whoami" in first
    for _ in range(5):
        assert bot.send("help").text == first
    assert authz.visible_calls == calls  # not rendered again
    bot.send("help", user="someone@example.com")  # another user: their own rendering
    assert authz.visible_calls == 2 * calls


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    peers: list[int]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 0.3  # an idle kept connection is closed by the server after this

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        assert isinstance(self.server, _Server)
        self.server.peers.append(self.client_address[1])
        body = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.peers = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()


def test_the_web_client_keeps_its_connection(server: _Server) -> None:
    client = KeepAliveWebClient(token="xoxb-x", base_url=f"http://127.0.0.1:{server.server_port}/")
    for _ in range(5):
        assert client.api_call("chat.postMessage", json={"channel": "C1", "text": "x"})["ok"]
    assert len(server.peers) == 5 and len(set(server.peers)) == 1  # one TCP connection


def test_kept_connections_still_retry_and_reconnect(fake_slack: FakeSlack) -> None:
    from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

    client = KeepAliveWebClient(
        token=fake_slack.bot_token,
        base_url=fake_slack.api_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)],
    )
    fake_slack.fail_next("chat.postMessage", 429, retry_after=0)
    assert client.chat_postMessage(channel="C0GENERAL01", text="after a 429")["ok"]
    fake_slack.fail_next("chat.postMessage", 200, error="channel_not_found")
    with pytest.raises(Exception, match="channel_not_found"):
        client.chat_postMessage(channel="C0GENERAL01", text="refused")


def test_a_connection_the_server_closed_is_replaced(server: _Server) -> None:
    client = KeepAliveWebClient(token="xoxb-x", base_url=f"http://127.0.0.1:{server.server_port}/")
    assert client.api_call("chat.postMessage", json={"channel": "C1", "text": "x"})["ok"]
    time.sleep(0.6)  # the server dropped the idle connection meanwhile
    assert client.api_call("chat.postMessage", json={"channel": "C1", "text": "y"})["ok"]
    assert len(server.peers) == 2 and len(set(server.peers)) == 2
