"""The fake Slack must satisfy the *real* slack_sdk / slack_bolt clients, unchanged."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from tests.fakes import slack as fakes
from tests.fakes.slack import RESPONSE_URL, UPLOAD, FakeSlack

# Re-export the fixtures so pytest finds them in this module.
fake_slack = fakes.fake_slack
fake_slack_env = fakes.fake_slack_env

StartBolt = Callable[[App], SocketModeHandler]

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing:UserWarning"),
]


@pytest.fixture
def client(fake_slack: FakeSlack) -> WebClient:
    return WebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)


def api_error(method: Callable[..., object], **kwargs: object) -> str:
    """The Slack error code a real client raises for this call."""
    with pytest.raises(SlackApiError) as info:
        method(**kwargs)
    return info.value.response["error"]


@pytest.fixture
def bolt(fake_slack: FakeSlack) -> Iterator[StartBolt]:
    """Connect a real bolt App over Socket Mode. The handler's SocketModeClient calls
    apps.connections.open through app.client, so app.client's base_url is all it needs."""
    handlers: list[SocketModeHandler] = []

    def start(app: App) -> SocketModeHandler:
        # ping_interval bounds how fast the builtin client notices a dead socket.
        handler = SocketModeHandler(app, fake_slack.app_token, ping_interval=1)
        handlers.append(handler)
        handler.connect()
        fake_slack.wait_connected()
        return handler

    yield start
    for handler in handlers:
        # close() blocks until the client's recv (3 s timeout) returns; once it has turned
        # auto-reconnect off, resetting the socket from our side unblocks it at once.
        closer = threading.Thread(target=handler.close)
        closer.start()
        while handler.client.auto_reconnect_enabled and closer.is_alive():
            time.sleep(0.001)
        fake_slack.drop_connections()
        closer.join(10)


def new_app(fake: FakeSlack) -> App:
    # bolt ignores App(token=...) when client= is given; the client's token is used.
    return App(client=WebClient(token=fake.bot_token, base_url=fake.api_url))


# -- Web API ---------------------------------------------------------------------------------


def test_every_method_via_webclient(fake_slack: FakeSlack, client: WebClient) -> None:
    auth = client.auth_test()
    assert (auth["user_id"], auth["bot_id"], auth["team_id"]) == (
        fake_slack.bot_user_id,
        fake_slack.bot_id,
        fake_slack.team_id,
    )

    first = client.chat_postMessage(channel="C0DEPLOYS", text="deploying")
    second = client.chat_postMessage(channel="C0DEPLOYS", blocks=[{"type": "divider"}])
    assert first["channel"] == "C0DEPLOYS" and first["message"]["bot_id"] == fake_slack.bot_id
    assert float(second["ts"]) > float(first["ts"])
    assert client.chat_postMessage(channel="U0ALICE", text="dm")["channel"] == "D0ALICE"

    eph = client.chat_postEphemeral(channel="C0DEPLOYS", user="U0ALICE", text="psst")
    assert eph["message_ts"]

    upd = client.chat_update(channel="C0DEPLOYS", ts=first["ts"], text="deployed")
    assert upd["message"]["text"] == "deployed" and upd["message"]["edited"]
    assert fake_slack.message("C0DEPLOYS", first["ts"])["text"] == "deployed"

    client.reactions_add(channel="C0DEPLOYS", timestamp=first["ts"], name="white_check_mark")
    assert ("C0DEPLOYS", first["ts"], "white_check_mark") in fake_slack.reactions
    again = {"channel": "C0DEPLOYS", "timestamp": first["ts"], "name": "white_check_mark"}
    assert api_error(client.reactions_add, **again) == "already_reacted"

    fake_slack.add_user("U0ALICE", email="alice@example.com", name="alice", display_name="Al")
    fake_slack.add_user("U0EXT", team_id="T0OTHER", is_stranger=True)
    user = client.users_info(user="U0ALICE")["user"]
    assert user["profile"]["email"] == "alice@example.com"
    assert user["profile"]["display_name"] == "Al"
    assert user["is_restricted"] is False and "is_stranger" not in user
    assert client.users_info(user="U0EXT")["user"]["is_stranger"] is True
    assert "email" not in client.users_info(user=fake_slack.bot_user_id)["user"]["profile"]
    assert api_error(client.users_info, user="U0NOBODY") == "user_not_found"

    up = client.files_upload_v2(channel="C0DEPLOYS", content=b"log line\n", filename="d.log")
    (file,) = fake_slack.files.values()
    assert up["file"]["id"] == file.id and file.content == b"log line\n" and file.completed
    order = [c.method for c in fake_slack.calls][-3:]
    assert order == ["files.getUploadURLExternal", UPLOAD, "files.completeUploadExternal"]

    url = client.apps_connections_open(app_token=fake_slack.app_token)["url"]
    assert url.startswith("ws://127.0.0.1:") and "ticket=" in url

    call = fake_slack.wait_for("chat.postEphemeral")
    assert call.ok and call.args["user"] == "U0ALICE" and call.token == fake_slack.bot_token
    assert fake_slack.calls_to("chat.postMessage")[0].received_at <= call.received_at


def test_rejects_like_slack(fake_slack: FakeSlack, client: WebClient) -> None:
    bad = WebClient(token="xoxb-not-a-real-token", base_url=fake_slack.api_url)
    anonymous = WebClient(base_url=fake_slack.api_url)
    assert api_error(bad.auth_test) == "invalid_auth"
    assert api_error(anonymous.auth_test) == "not_authed"
    assert api_error(client.apps_connections_open, app_token=fake_slack.bot_token) == (
        "not_allowed_token_type"
    )
    app_client = WebClient(token=fake_slack.app_token, base_url=fake_slack.api_url)
    assert api_error(app_client.chat_postMessage, channel="C1", text="x") == (
        "not_allowed_token_type"
    )
    assert api_error(client.chat_postMessage, channel="", text="x") == "channel_not_found"
    assert api_error(client.chat_postMessage, channel="C0DEPLOYS") == "no_text"
    assert api_error(client.chat_postEphemeral, channel="C0X", user="", text="x") == (
        "invalid_arguments"
    )
    assert api_error(client.chat_update, channel="C0X", ts="1.000001", text="x") == (
        "message_not_found"
    )
    no_msg = {"channel": "C0X", "timestamp": "1.000001", "name": "eyes"}
    assert api_error(client.reactions_add, **no_msg) == "message_not_found"
    assert api_error(client.api_call, api_method="chat.fly") == "unknown_method"
    assert not any(c.ok for c in fake_slack.calls)


def test_form_json_and_body_token(fake_slack: FakeSlack) -> None:
    def post(data: bytes, ctype: str, headers: dict[str, str] | None = None) -> dict:
        req = urllib.request.Request(
            fake_slack.api_url + "chat.postMessage",
            data=data,
            headers={"Content-Type": ctype, **(headers or {})},
        )
        with urllib.request.urlopen(req) as resp:
            return json.loads(resp.read())

    form = f"token={fake_slack.bot_token}&channel=C0A&text=hi".encode()
    assert post(form, "application/x-www-form-urlencoded")["ok"]
    body = json.dumps({"channel": "C0A", "text": "hi", "token": fake_slack.bot_token}).encode()
    assert post(body, "application/json")["error"] == "not_authed"  # JSON needs the header
    auth = {"Authorization": f"Bearer {fake_slack.bot_token}"}
    assert post(body, "application/json; charset=utf-8", auth)["ok"]
    assert "token" not in fake_slack.calls[-1].args  # credentials are not recorded
    client = WebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)
    multipart = client.api_call("chat.postMessage", data={"channel": "C0A", "text": "multi"})
    assert multipart["message"]["text"] == "multi"


def test_rate_limit_and_server_error_retries(fake_slack: FakeSlack) -> None:
    plain = WebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)
    fake_slack.fail_next("chat.postMessage", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as info:
        plain.chat_postMessage(channel="C0A", text="x")
    assert info.value.response.status_code == 429
    assert info.value.response.headers["Retry-After"] == "7"
    assert info.value.response["error"] == "ratelimited"

    retrying = WebClient(
        token=fake_slack.bot_token,
        base_url=fake_slack.api_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1), ServerErrorRetryHandler()],
    )
    fake_slack.fail_next("chat.postMessage", status=429, retry_after=0)  # handler sleeps 0-1 s
    assert retrying.chat_postMessage(channel="C0A", text="x")["ok"]
    fake_slack.fail_next("auth.test", status=503)
    assert retrying.auth_test()["ok"]
    statuses = [(c.method, c.status) for c in fake_slack.calls]
    assert statuses[-4:] == [
        ("chat.postMessage", 429),
        ("chat.postMessage", 200),
        ("auth.test", 503),
        ("auth.test", 200),
    ]
    fake_slack.fail_next("users.info", status=200, error="fatal_error")
    assert api_error(plain.users_info, user="U0MARVINBOT") == "fatal_error"


# -- Socket Mode -----------------------------------------------------------------------------


def test_bolt_receives_mention_acks_and_replies(fake_slack: FakeSlack, bolt: StartBolt) -> None:
    app = new_app(fake_slack)

    @app.event("app_mention")
    def mention(event: dict, say: Callable[..., object]) -> None:
        say(text=f"you said: {event['text']}", thread_ts=event["ts"])

    bolt(app)
    event = fake_slack.app_mention("deploy web")
    envelope_id = fake_slack.send_event(event)
    ack = fake_slack.wait_ack(envelope_id)
    assert ack.envelope_id == envelope_id and ack.acked_at >= ack.sent_at
    reply = fake_slack.wait_for("chat.postMessage")
    assert reply.ok and reply.args["thread_ts"] == event["ts"]
    assert reply.args["text"] == f"you said: <@{fake_slack.bot_user_id}> deploy web"
    # The event's message is known to the fake, so the bot may react to it.
    client = WebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)
    assert client.reactions_add(channel=event["channel"], timestamp=event["ts"], name="eyes")["ok"]
    assert fake_slack.errors == []


def test_reconnects_after_drop_and_disconnect(fake_slack: FakeSlack, bolt: StartBolt) -> None:
    app = new_app(fake_slack)
    seen: list[str] = []
    app.event("app_mention")(lambda event: seen.append(event["text"]))
    bolt(app)
    assert fake_slack.connection_count == 1

    fake_slack.drop_connections()
    fake_slack.wait_connected(timeout=10, min_count=2)
    fake_slack.wait_ack(fake_slack.send_event(fake_slack.app_mention("after drop")))

    # The builtin client stalls ~3 s closing the old socket unless the server closes it.
    fake_slack.send_disconnect("refresh_requested", close_after=0.1)
    fake_slack.wait_connected(timeout=10, min_count=3)
    fake_slack.wait_ack(fake_slack.send_event(fake_slack.app_mention("after refresh")), timeout=10)
    assert fake_slack.errors == []
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [s.split("> ")[1] for s in seen] == ["after drop", "after refresh"]


def test_block_actions_reach_bolt_and_response_url(fake_slack: FakeSlack, bolt: StartBolt) -> None:
    app = new_app(fake_slack)

    @app.action("confirm")
    def confirm(ack: Callable[[], None], body: dict, respond: Callable[..., object]) -> None:
        ack()
        respond(text=f"confirmed {body['actions'][0]['value']}", replace_original=True)

    bolt(app)
    client = WebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)
    posted = client.chat_postMessage(channel="C0A", text="Restart prod?")
    payload = fake_slack.block_actions("confirm", "prod", channel="C0A", message_ts=posted["ts"])
    assert payload["message"]["text"] == "Restart prod?"
    fake_slack.wait_ack(fake_slack.send_interactive(payload))
    call = fake_slack.wait_for(RESPONSE_URL)
    assert call.args["text"] == "confirmed prod" and call.args["replace_original"] is True


def test_raw_protocol_tickets_redelivery_and_queueing() -> None:
    with FakeSlack.start(redeliver_after=0.2, max_retries=1) as fake:
        client = WebClient(token=fake.bot_token, base_url=fake.api_url)
        url = client.apps_connections_open(app_token=fake.app_token)["url"]
        with pytest.raises(InvalidStatus):  # a made-up ticket is refused
            ws_connect(url.replace("ticket=", "ticket=x"), open_timeout=2).close()
        # Sent while nobody is connected: queued and delivered right after hello.
        early = fake.send_event(fake.im_message("hi"), event_id="Ev0DUP")
        assert fake.envelope(early).sent_at is None
        with ws_connect(url, open_timeout=2) as ws:
            hello = json.loads(ws.recv(timeout=2))
            assert hello["type"] == "hello" and hello["connection_info"]["app_id"] == fake.app_id
            first = json.loads(ws.recv(timeout=2))
            assert first["envelope_id"] == early
            assert first["payload"]["event"]["channel_type"] == "im"
            retry = json.loads(ws.recv(timeout=2))  # not acked -> redelivered
            assert (retry["retry_attempt"], retry["retry_reason"]) == (1, "timeout")
            assert retry["payload"]["event_id"] == "Ev0DUP" and retry["envelope_id"] != early
            ws.send(json.dumps({"envelope_id": retry["envelope_id"]}))
            assert fake.wait_ack(early).envelope_id == retry["envelope_id"]
            ws.send(json.dumps({"envelope_id": "nonsense"}))
            fake.send_disconnect("warning")
            assert json.loads(ws.recv(timeout=2)) == {
                "type": "disconnect",
                "reason": "warning",
                "debug_info": {"host": "applink-fake"},
            }
        with pytest.raises(InvalidStatus):  # tickets are single-use
            ws_connect(url, open_timeout=2).close()
        assert len(fake.errors) == 3  # bad ticket, unknown ack, reused ticket


def test_a_burst_goes_out_back_to_back_and_a_stream_at_its_pace() -> None:
    """The benchmarks' bursts: every envelope written by the fake in order, each one ackable,
    none paced by the client; a stream keeps its interval on the fake's clock."""
    with FakeSlack.start() as fake:
        client = WebClient(token=fake.bot_token, base_url=fake.api_url)
        url = client.apps_connections_open(app_token=fake.app_token)["url"]
        with ws_connect(url, open_timeout=2) as ws:
            assert json.loads(ws.recv(timeout=2))["type"] == "hello"
            fake.wait_connected()
            events = [fake.app_mention(f"help {n}") for n in range(50)]
            ids = fake.send_events(events)  # returns once all are on the wire
            got = [json.loads(ws.recv(timeout=2)) for _ in ids]
            assert [g["envelope_id"] for g in got] == ids
            assert [g["payload"]["event"]["ts"] for g in got] == [e["ts"] for e in events]
            sent = [fake.envelope(i).sent_at for i in ids]
            assert None not in sent and sent == sorted(sent)
            for envelope_id in ids:
                ws.send(json.dumps({"envelope_id": envelope_id}))
            assert all(fake.wait_ack(i).acked_at is not None for i in ids)

            stream = fake.send_events([fake.app_mention("help") for _ in range(4)], interval=0.1)
            first, last = (fake.envelope(i).sent_at or 0.0 for i in (stream[0], stream[-1]))
            assert last - first >= 0.2  # three intervals of 0.1 s after the first
            assert [json.loads(ws.recv(timeout=2))["envelope_id"] for _ in stream] == stream

            with pytest.raises(ValueError, match="already used"):  # nothing is sent
                fake.socket.send_many([fake.envelope(ids[0]).body])
            ws.send(json.dumps({"envelope_id": stream[0]}))
            assert fake.wait_ack(stream[0]).envelope_id == stream[0]
        assert fake.errors == []


def test_event_builders_look_like_slack(fake_slack: FakeSlack, client: WebClient) -> None:
    mention = fake_slack.app_mention("status", user="U0BOB", channel="C0OPS")
    assert mention["text"] == f"<@{fake_slack.bot_user_id}> status"
    assert mention["user_team"] == fake_slack.team_id and mention["event_ts"] == mention["ts"]
    im = fake_slack.im_message("help", user="U0BOB")
    assert (im["type"], im["channel_type"], im["channel"]) == ("message", "im", "D0BOB")
    bot = fake_slack.bot_message("beep")
    assert bot["subtype"] == "bot_message" and bot["bot_id"] and "user" not in bot
    edit = fake_slack.message_changed("C0OPS", mention["ts"], "new")
    assert edit["message"]["ts"] == mention["ts"] and edit["ts"] != mention["ts"]
    gone = fake_slack.message_deleted("C0OPS", mention["ts"])
    assert gone["subtype"] == "message_deleted" and gone["deleted_ts"] == mention["ts"]

    # Events sent (even before any client connects: they queue) update the fake's channel state.
    said = fake_slack.channel_message("hello", channel="C0OPS")
    fake_slack.send_event(said)
    assert client.reactions_add(channel="C0OPS", timestamp=said["ts"], name="wave")["ok"]
    fake_slack.send_event(fake_slack.message_deleted("C0OPS", said["ts"]))
    gone_again = {"channel": "C0OPS", "timestamp": said["ts"], "name": "eyes"}
    assert api_error(client.reactions_add, **gone_again) == "message_not_found"

    fake_slack.register_method("conversations.open", lambda args: {"channel": {"id": "D0BOB"}})
    assert client.conversations_open(users="U0BOB")["channel"]["id"] == "D0BOB"


def test_env_for_subprocess(fake_slack: FakeSlack, fake_slack_env: dict[str, str]) -> None:
    assert fake_slack_env["SLACK_API_URL"] == fake_slack.api_url
    assert fake_slack_env["SLACK_BOT_TOKEN"].startswith("xoxb-")
    assert fake_slack_env["SLACK_APP_TOKEN"].startswith("xapp-")
    assert fake_slack_env["HTTPS_PROXY"] == ""  # slack_sdk ignores NO_PROXY
