"""Issue 9, performance: the pieces behind the burst figure of benchmarks/slack_latency.py
(help rendered once per user, groups and channel kind; HTTP connections kept)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

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


# -- the kept connection's own HTTP/1.1 (http.client's header parsing was a third of a reply) --


class _RawServer:
    """A loopback server that answers each request with the next canned response, byte for byte,
    so the client meets what http.client would: chunked bodies, Connection: close, HTTP/1.0."""

    def __init__(self, answers: list[bytes]) -> None:
        import socket

        self.answers, self.requests, self.peers = list(answers), [], []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.answers:
            conn, peer = self.sock.accept()
            self.peers.append(peer[1])
            with conn, conn.makefile("rb") as rfile:
                while self.answers:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = rfile.readline()
                        if not line:
                            break
                        head += line
                    if not head:
                        break
                    length = int(
                        next(
                            (
                                h.split(b":")[1]
                                for h in head.split(b"\r\n")
                                if h.lower().startswith(b"content-length")
                            ),
                            b"0",
                        )
                    )
                    self.requests.append(head + rfile.read(length))
                    answer = self.answers.pop(0)
                    conn.sendall(answer)
                    if b"Connection: close" in answer or answer.startswith(b"HTTP/1.0"):
                        break


def _ok(body: bytes = b'{"ok": true, "n": 1}', extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def test_the_kept_connection_reads_chunked_close_and_http10_answers() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'7\r\n{"ok": \r\n6;ext=1\r\ntrue, \r\n7\r\n"n": 2}\r\n0\r\nX-Trailer: 1\r\n\r\n'
    )
    http10 = b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"ok": true, "n": 4}'
    server = _RawServer([_ok(), chunked, _ok(b'{"ok": true, "n": 3}', b"Connection: close\r\n"),
                         http10, _ok(b'{"ok": true, "n": 5}')])  # fmt: skip
    client = KeepAliveWebClient(token="xoxb-x", base_url=f"http://127.0.0.1:{server.port}/")
    got = [client.api_call("chat.postMessage", json={"channel": "C1", "text": "é"})["n"]
           for _ in range(5)]  # fmt: skip
    assert got == [1, 2, 3, 4, 5]
    # keep-alive for the first three; a new connection after close and after HTTP/1.0
    assert len(server.peers) == 3
    first = server.requests[0]
    assert first.startswith(b"POST /chat.postMessage HTTP/1.1\r\n")
    assert b"Authorization: Bearer xoxb-x" in first and b"Host: 127.0.0.1" in first
    assert first.endswith(b'{"channel": "C1", "text": "\\u00e9"}')


def test_an_error_status_keeps_slack_sdks_shape() -> None:
    from slack_sdk.errors import SlackApiError

    server = _RawServer([
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0\r\nContent-Type: application/json\r\n"
        b'Content-Length: 40\r\n\r\n{"ok": false, "error": "ratelimited"}   ',
        _ok(b'{"ok": false, "error": "channel_not_found"}'),
    ])  # fmt: skip
    from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

    client = KeepAliveWebClient(
        token="xoxb-x",
        base_url=f"http://127.0.0.1:{server.port}/",
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    with pytest.raises(SlackApiError, match="channel_not_found"):  # retried after the 429
        client.chat_postMessage(channel="C1", text="x")
    assert len(server.requests) == 2


def test_a_connection_closed_before_any_answer_is_an_error_not_a_hang() -> None:
    import socket

    srv = socket.create_server(("127.0.0.1", 0))

    def close_at_once() -> None:
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.close()

    threading.Thread(target=close_at_once, daemon=True).start()
    client = KeepAliveWebClient(
        token="xoxb-x", base_url=f"http://127.0.0.1:{srv.getsockname()[1]}/", retry_handlers=[]
    )
    with pytest.raises(Exception, match="closed connection|Remote end"):
        client.api_call("chat.postMessage", json={"channel": "C1", "text": "x"})


# -- events are claimed in the store off the socket workers, many per statement --


class _CountingShared:
    def __init__(self, real: object, fail: bool = False, hold: threading.Event | None = None):
        self.real, self.fail, self.hold, self.batches = real, fail, hold, []
        self.writing = threading.Event()

    def claim_many(self, batch, ttl):  # type: ignore[no-untyped-def]
        self.batches.append(len(batch))
        self.writing.set()
        if self.hold is not None and len(self.batches) == 1:
            self.hold.wait(5)  # the first write is slow
        if self.fail:
            raise OSError("the store is down")
        return self.real.claim_many(batch, ttl)  # type: ignore[attr-defined]


def test_the_claimer_runs_each_event_once_and_batches_a_burst(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from marvin.frontends.slack.events import Claimer, Inbound
    from marvin.runtime.claims import Shared
    from marvin.runtime.store import Store

    store = Store(tmp_path / "s.sqlite3")
    gate = threading.Event()
    shared = _CountingShared(Shared(store.db, store.replica), hold=gate)
    ran: list[str] = []
    failed: list[str] = []
    claimer = Claimer(
        shared,  # type: ignore[arg-type]
        600,
        lambda i: ran.append(i.event["ts"]),
        lambda i: failed.append(i.event["ts"]),
    )
    events = [Inbound({"channel": "C1", "ts": f"1.{n:06d}", "user": "U1"}, f"Ev{n}", False)
              for n in range(200)]  # fmt: skip
    # An idle claimer: the first socket worker writes its own claim (slowly, here).
    first = threading.Thread(target=claimer.submit, args=(events[0],))
    first.start()
    assert shared.writing.wait(5)
    # Meanwhile the rest of the burst arrives: nobody waits for that write, all of it queues.
    for inbound in events[1:]:
        claimer.submit(inbound)
    claimer.submit(Inbound({"channel": "C1", "ts": "1.000007", "user": "U1"}, "EvNew", False))
    claimer.submit(events[3])  # a redelivery
    assert ran == [] and first.is_alive()
    gate.set()
    first.join(5)
    claimer.close()
    assert sorted(ran) == sorted(e.event["ts"] for e in events)  # each once, none twice
    assert failed == []
    assert shared.batches[0] == 1 and len(shared.batches) <= 3  # the 201 queued: one or two


def test_an_idle_claimer_lets_the_caller_write_and_hand_over_at_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from marvin.frontends.slack.events import Claimer, Inbound
    from marvin.runtime.claims import Shared
    from marvin.runtime.store import Store

    store = Store(tmp_path / "s.sqlite3")
    shared = _CountingShared(Shared(store.db, store.replica))
    on: list[str] = []
    failed: list[Inbound] = []
    claimer = Claimer(
        shared,  # type: ignore[arg-type]
        600,
        lambda i: on.append(threading.current_thread().name),
        failed.append,
    )
    for n in range(3):  # one at a time, as a quiet channel sends them
        claimer.submit(Inbound({"channel": "C1", "ts": f"2.{n}", "user": "U1"}, f"Ev{n}", False))
        assert on == [threading.current_thread().name] * (n + 1)  # run before submit returned
    claimer.submit(Inbound({"channel": "C1", "ts": "2.1", "user": "U1"}, "EvOther", False))
    assert len(on) == 3  # the same message under another event id: a duplicate, not run
    claimer.close()
    assert shared.batches == [1, 1, 1, 1] and failed == []


def test_when_the_store_is_down_the_asker_is_told_and_nothing_runs() -> None:
    from marvin.frontends.slack.events import Claimer, Inbound

    ran: list[str] = []
    told: list[str] = []
    claimer = Claimer(
        _CountingShared(None, fail=True),  # type: ignore[arg-type]
        600,
        lambda i: ran.append(i.event["ts"]),
        lambda i: told.append(i.event["ts"]),
    )
    claimer.submit(Inbound({"channel": "C1", "ts": "1.0", "user": "U1"}, "Ev1", False))
    claimer.close()
    assert ran == [] and told == ["1.0"]


def test_when_the_store_cannot_record_a_mention_the_asker_is_told_and_nothing_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marvin.frontends.slack.bot import UNRECORDED, SlackBot, web_client
    from marvin.frontends.slack.settings import SlackSettings
    from marvin.testing import make_bot

    marvin = make_bot([], state_dir=tmp_path).app

    def down(batch: object, ttl: float) -> list[bool]:
        raise OSError("the store is down")

    monkeypatch.setattr(marvin.shared, "claim_many", down)
    with FakeSlack.start() as fake:
        client = web_client(fake.bot_token, fake.api_url)
        settings = SlackSettings()
        slack = SlackBot(marvin, client, fake.app_token, settings, bot_user_id=fake.bot_user_id)
        try:
            event = fake.app_mention("help")
            slack._on_event({"event": event, "event_id": "Ev0DOWN"})
            told = fake.wait_for("chat.postEphemeral", timeout=10)
            assert told.args["text"] == UNRECORDED and told.args["user"] == event["user"]
            time.sleep(0.3)  # had help run, its reply would be posted by now
            assert fake.calls_to("chat.postMessage") == [] and fake.errors == []
        finally:
            slack.claims.close()
            slack.handler.close()
            marvin.shutdown(timeout=5)
