"""The HTTP API end to end: ``marvin serve --api-port`` (Slack over the loopback fake, the API
beside it in the same process), a real slapd as the directory, keys from ``marvin keys``,
and httpx as the client. One Marvin serves the module; each test uses its own keys."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import api_world as w
from tests.fakes.ports import free_port
from tests.fakes.slack import FakeSlack
from tests.fakes.slapd import group_dn, user_dn

pytestmark = pytest.mark.timeout(120)

# name -> (owner, extra args of `marvin keys create`)
KEYS = {
    "alice-ci": ("alice@example.com",),  # ops: auditor, may run production with confirm
    "bob-ci": ("bob@example.com",),  # developers
    "carol-ci": ("carol@example.com",),  # in no group
    "dan-ci": ("dan@example.com",),  # developers, until the test removes dan
    "bob-revoked": ("bob@example.com",),
    "bob-expiring": ("bob@example.com", "--expires", "2s"),
    "bob-busy": ("bob@example.com",),  # for the rate limit
}


class World:
    def __init__(self, root: Path, slapd, fake: FakeSlack) -> None:  # type: ignore[no-untyped-def]
        self.root, self.slapd, self.fake = root, slapd, fake
        self.config = w.write_config(root, slapd)
        self.env = w.env_for(slapd, fake.env())
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.keys: dict[str, str] = {}
        self.serve: w.Serve | None = None

    def key(self, name: str) -> str:
        return self.keys[name]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("api")
    with w.started_slapd(root / "slapd") as slapd:
        slapd.add_user("dan", "dan@example.com", ["developers"])
        with FakeSlack.start() as fake:
            fake.add_user("U0ALICE", email="alice@example.com")
            world = World(root, slapd, fake)
            world.keys = w.create_keys(world.config, world.env, KEYS)
            world.created_at = time.monotonic()  # type: ignore[attr-defined]
            serve = w.Serve(world.config, world.env, "serve", "--api-port", str(world.port))
            world.serve = serve
            try:
                serve.wait_http(world.url)
                fake.wait_connected(timeout=20)
                yield world
            finally:
                code = serve.stop()
            assert code == 0, serve.output()[-3000:]


@pytest.fixture
def api(world: World) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=world.url, timeout=10) as client:
        yield client


# -- running -------------------------------------------------------------------------------------


def test_full_run_with_progress_over_sse(world: World, api: httpx.Client) -> None:
    key = world.key("bob-ci")
    r = w.run(api, key, ref="test.steps", params={"count": 3})
    assert r.status_code == 202, r.text
    ex_id = r.json()["id"]
    assert r.headers["location"] == f"/api/v1/executions/{ex_id}" == r.json()["links"]["self"]
    stream = w.events(api, key, ex_id)
    kinds = [k for k, _d, _i in stream]
    assert kinds[0] == "state" and stream[0][1]["state"] == "accepted"
    progress = [d["text"] for k, d, _i in stream if k == "progress"]
    assert progress and progress[-1] == "step 3 of 3", stream  # the last is never lost
    said = [d["text"] for k, d, _i in stream if k == "reply"]
    assert said[0] == "Stepping" and "steps done" in said[-1]
    assert kinds.index("progress") < len(kinds) - 2  # progress comes before the result
    final = stream[-1][1]
    assert final["state"] == "succeeded" and "steps done" in final["result"]
    # A late reader gets the whole story again, and Last-Event-ID resumes after what it had.
    again = w.events(api, key, ex_id)
    assert [k for k, _d, _i in again] == kinds
    with api.stream(
        "GET", f"/api/v1/executions/{ex_id}/events", headers={**w.auth(key), "Last-Event-ID": "1"}
    ) as resumed:
        body = "".join(resumed.iter_text())
    assert "id: 0\n" not in body and "id: 2\n" in body and '"succeeded"' in body

    got = api.get(f"/api/v1/executions/{ex_id}", headers=w.auth(key)).json()
    assert got["state"] == "succeeded" and got["ref"] == "test.steps"
    assert got["params"] == {"count": 3} and got["requester"] == "bob@example.com"
    assert got["progress"] == "step 3 of 3" and "steps done" in got["result"]
    assert [x["text"] for x in got["replies"]][-1] == got["result"]
    events = [a["event"] for a in got["audit"]]
    assert events[:1] == ["accepted"] and "succeeded" in events and "api_request" in events


def test_text_requests_and_built_ins(world: World, api: httpx.Client) -> None:
    key = world.key("bob-ci")
    r = w.run(api, key, text="fast hello")
    assert r.status_code == 202, r.text
    done = w.wait_state(api, key, r.json()["id"])
    assert done["state"] == "succeeded" and done["result"].startswith("fast done hello")
    who = w.run(api, key, text="whoami")
    assert who.status_code == 200 and "bob@example.com" in who.json()["replies"][0]["text"]
    assert "via api" in who.json()["replies"][0]["text"]


def test_commands_lists_what_the_owner_may_run(world: World, api: httpx.Client) -> None:
    bob = api.get("/api/v1/commands", headers=w.auth(world.key("bob-ci"))).json()
    refs = {c["ref"]: c for c in bob["commands"]}
    assert bob["owner"] == "bob@example.com"
    assert {"test.fast", "test.steps", "test.hold"} <= set(refs)
    assert "test.wipe" not in refs  # command line only: never through the API
    steps = refs["test.steps"]
    assert steps["examples"] == ["steps 3"] and steps["usage"] == "steps <count>"
    assert steps["params"] == [
        {"name": "count", "required": True, "expected": "a whole number from 1 to 10",
         "secret": False}
    ]  # fmt: skip
    carol = api.get("/api/v1/commands", headers=w.auth(world.key("carol-ci"))).json()
    assert not [c for c in carol["commands"] if c["ref"].startswith("test.")]


# -- refusals ------------------------------------------------------------------------------------


def test_missing_unknown_revoked_and_expired_keys_get_401(world: World, api: httpx.Client) -> None:
    for headers, text in (
        ({}, "An API key is required"),
        ({"Authorization": "Basic Ym9iOnB3"}, "An API key is required"),
        ({"Authorization": "Bearer nonsense"}, "not a Marvin API key"),
        ({"Authorization": "Bearer mrv_0123456789ab_" + "x" * 43}, "Unknown API key"),
        # The right id with the wrong secret is as unknown as any other.
        ({"Authorization": "Bearer " + world.key("bob-ci")[:-4] + "abcd"}, "Unknown API key"),
    ):
        r = api.post("/api/v1/executions", json={"text": "fast"}, headers=headers)
        assert r.status_code == 401 and text in r.json()["message"], (headers, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")
    revoked = world.key("bob-revoked")
    assert w.run(api, revoked, text="fast").status_code == 202
    key_id = revoked.split("_")[1]
    out = w.subprocess.run(
        w.marvin_cmd(world.config, "keys", "revoke", key_id),
        env=world.env, cwd=w.ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0 and "Revoked" in out.stdout, out.stderr
    r = w.run(api, revoked, text="fast")
    assert r.status_code == 401 and r.json()["message"] == "This API key was revoked."
    listing = w.subprocess.run(
        w.marvin_cmd(world.config, "keys", "list"),
        env=world.env, cwd=w.ROOT, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    line = next(x for x in listing.splitlines() if x.startswith(key_id))
    assert "bob-revoked" in line and line.endswith("revoked") and "UTC" in line.split()[-2]
    # The expiring key was created with --expires 2s before the server started.
    time.sleep(max(0.0, world.created_at + 2.5 - time.monotonic()))  # type: ignore[attr-defined]
    r = w.run(api, world.key("bob-expiring"), text="fast")
    assert r.status_code == 401 and "expired" in r.json()["message"]
    # Keys only ever in the header: one in the URL is refused before anything else.
    r = api.get(f"/api/v1/commands?access_token={world.key('bob-ci')}")
    assert r.status_code == 400 and r.json()["error"] == "key_in_url"


def test_owner_not_allowed_gets_the_policy_reason(world: World, api: httpx.Client) -> None:
    r = w.run(api, world.key("carol-ci"), ref="test.fast")
    assert r.status_code == 403 and r.json()["error"] == "policy"
    assert "needs membership of developers, ops" in r.json()["message"]


def test_removal_from_a_group_takes_effect(world: World, api: httpx.Client) -> None:
    key = world.key("dan-ci")
    assert w.run(api, key, text="fast").status_code == 202
    conn = world.slapd.admin()
    try:
        conn.modify(group_dn("developers"), {"member": [("MODIFY_DELETE", [user_dn("dan")])]})
        assert conn.result["result"] == 0, conn.result
    finally:
        conn.unbind()
    time.sleep(1.3)  # security.directory.cache_ttl is 1 s here (300 s by default)
    r = w.run(api, key, text="fast")
    assert r.status_code == 403 and "needs membership" in r.json()["message"], r.text


def test_cli_only_command_stays_cli_only(world: World, api: httpx.Client) -> None:
    r = w.run(api, world.key("bob-ci"), text="wipe test web1")
    assert r.status_code == 403 and r.json()["error"] == "policy"
    assert "can't be run from the api" in r.json()["message"]
    assert "marvin run test.wipe" in r.json()["message"]


def test_production_needs_confirm_true(world: World, api: httpx.Client) -> None:
    alice = world.key("alice-ci")
    r = w.run(api, alice, ref="test.hold", params={"environment": "prod-eu", "seconds": 0})
    assert r.status_code == 403 and r.json()["error"] == "confirmation_required", r.text
    assert '"confirm": true' in r.json()["message"]
    r = w.run(
        api, alice, ref="test.hold", params={"environment": "prod-eu", "seconds": 0}, confirm=True
    )
    assert r.status_code == 202, r.text
    assert w.wait_state(api, alice, r.json()["id"])["state"] == "succeeded"
    r = w.run(api, world.key("bob-ci"), text="hold prod-eu for 0", confirm=True)
    assert r.status_code == 403 and "needs membership of ops" in r.json()["message"]


def test_bad_input_gets_chats_messages(world: World, api: httpx.Client) -> None:
    key = world.key("bob-ci")
    r = w.run(api, key, text="frobnicate the thing")
    assert r.status_code == 400 and r.json()["error"] == "unknown"
    assert r.json()["message"].startswith("I don't know that command: `frobnicate the thing`.")
    r = w.run(api, key, text="steps 99")
    assert r.status_code == 400 and r.json()["error"] == "invalid"
    assert "count: '99' is out of range" in r.json()["message"]
    assert "Usage: `steps <count>`" in r.json()["message"]
    r = w.run(api, key, ref="test.steps", params={"count": 99})
    assert r.status_code == 400 and "count: '99' is out of range" in r.json()["message"]
    # A JSON number is checked like the text it would be in chat.
    r = w.run(api, key, ref="test.hold", params={"environment": 12345, "seconds": 0})
    assert r.status_code == 400 and "environment: '12345' is not valid" in r.json()["message"]
    r = w.run(api, key, ref="test.nothing")
    assert r.status_code == 400 and "test.fast" in r.json()["message"]
    r = w.run(api, key, ref="test.fast", text="fast")
    assert r.status_code == 400 and r.json()["error"] == "bad_request"


def test_locked_environment_is_409_and_cancel(world: World, api: httpx.Client) -> None:
    alice, bob, carol = world.key("alice-ci"), world.key("bob-ci"), world.key("carol-ci")
    first = w.run(api, bob, text="hold demo07 for 30")
    assert first.status_code == 202
    ex_id = first.json()["id"]
    second = w.run(api, alice, text="hold demo07 for 1")
    assert second.status_code == 409 and second.json()["error"] == "locked"
    assert ex_id in second.json()["message"] and second.json()["id"] != ex_id
    # Only the requester (or the cancel groups) may cancel; carol may not even see it.
    r = api.post(f"/api/v1/executions/{ex_id}/cancel", headers=w.auth(carol))
    assert r.status_code == 403 and "bob@example.com" in r.json()["message"]
    assert api.get(f"/api/v1/executions/{ex_id}", headers=w.auth(carol)).status_code == 404
    assert api.get(f"/api/v1/executions/{ex_id}", headers=w.auth(alice)).status_code == 200
    r = api.post(f"/api/v1/executions/{ex_id}/cancel", headers=w.auth(bob))
    assert r.status_code == 202 and "stop" in r.json()["message"]
    stream = w.events(api, bob, ex_id)
    assert stream[-1][1]["state"] == "cancelled"
    r = api.post(f"/api/v1/executions/{ex_id}/cancel", headers=w.auth(bob))
    assert r.status_code == 409 and "is not running" in r.json()["message"]
    assert api.post("/api/v1/executions/ex-000000/cancel", headers=w.auth(bob)).status_code == 404


# -- limits ----------------------------------------------------------------------------------------


def test_rate_limit_per_key_with_retry_after(world: World, api: httpx.Client) -> None:
    busy = w.auth(world.key("bob-busy"))
    statuses, retry = [], None
    for _ in range(90):  # burst 50, then 1 a second
        r = api.get("/api/v1/commands", headers=busy)
        statuses.append(r.status_code)
        if r.status_code == 429:
            retry = r.headers["retry-after"]
    assert statuses[:40] == [200] * 40 and statuses.count(429) >= 10, statuses
    assert retry is not None and int(retry) >= 1
    assert api.get("/api/v1/commands", headers=w.auth(world.key("bob-ci"))).status_code == 200


def test_body_limits_and_formats(world: World, api: httpx.Client) -> None:
    key = w.auth(world.key("bob-ci"))
    big = {"text": "fast " + "x" * 10_000}
    r = api.post("/api/v1/executions", json=big, headers=key)
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    r = api.post("/api/v1/executions", content=b"{not json", headers=key)
    assert r.status_code == 400 and r.json()["error"] == "bad_json"
    r = api.post(
        "/api/v1/executions", content=b"text=fast", headers={**key, "Content-Type": "text/plain"}
    )
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"
    r = api.post(
        "/api/v1/executions",
        content=b"[" * 3000,
        headers={**key, "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"] == "bad_json"
    assert "Traceback" not in r.text
    r = api.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


# -- one process, two front ends; what is recorded -----------------------------------------------


def test_slack_execution_is_readable_by_its_owner(world: World, api: httpx.Client) -> None:
    fake = world.fake
    n = len(fake.calls)
    fake.send_event(fake.app_mention("steps 2", user="U0ALICE"))
    done = fake.wait_for(
        "chat.postMessage", lambda c: "steps done" in str(c.args.get("text")), since=n, timeout=15
    )
    ex_id = done.args["text"].split("`")[1]
    got = api.get(f"/api/v1/executions/{ex_id}", headers=w.auth(world.key("alice-ci"))).json()
    assert got["source"] == "slack" and got["state"] == "succeeded" and got["replies"] is None
    stream = w.events(api, world.key("alice-ci"), ex_id)
    assert stream[-1][1]["state"] == "succeeded"
    assert (
        api.get(f"/api/v1/executions/{ex_id}", headers=w.auth(world.key("bob-ci"))).status_code
        == 404
    )


def test_metrics_openapi_and_health(world: World, api: httpx.Client) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    doc = api.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1") and "/api/v1/executions/{id}/events" in doc["paths"]
    text = api.get("/metrics").text
    for line in (
        'marvin_commands_total{outcome="succeeded",ref="test.steps"}',
        'marvin_commands_total{outcome="cancelled",ref="test.hold"}',
        'marvin_refusals_total{reason="policy"}',
        'marvin_refusals_total{reason="locked"}',
        'marvin_intake_seconds_bucket{frontend="slack",le="+Inf"}',
        'marvin_intake_seconds_bucket{frontend="api",le="+Inf"}',
        'marvin_api_request_seconds_bucket{le="+Inf",method="POST",route="/api/v1/executions",'
        'status="202"}',
        "marvin_queue_depth 0.0",
        "marvin_jobs_running ",
    ):
        assert line in text, line
    assert "ex-" not in text  # ids never become label values


def test_every_request_is_audited_and_no_secret_is_recorded(world: World) -> None:
    """Last in the module: everything above has been logged and audited by now."""
    db = sqlite3.connect(world.root / "state.sqlite3")
    rows = db.execute(
        "SELECT user_id, email, channel, detail FROM audit WHERE event = 'api_request'"
    ).fetchall()
    bob_id = world.key("bob-ci").split("_")[1]
    mine = [r for r in rows if r[0] == f"api:{bob_id}" and "-> 401" not in r[3]]
    assert mine and all(r[1] == "bob@example.com" and r[2] == "api:bob-ci" for r in mine)
    assert all(f"key bob-ci ({bob_id})" in r[3] for r in mine)
    # The right key id with a wrong secret: recorded under that id, with no owner vouched for.
    wrong = [r for r in rows if r[0] == f"api:{bob_id}" and "-> 401" in r[3]]
    assert wrong and all(r[1] is None and "key unknown" in r[3] for r in wrong)
    assert any("-> 401" in r[3] and "key revoked" in r[3] for r in rows)
    dump = "\n".join(db.iterdump())
    db.close()
    log = world.serve.output()  # type: ignore[union-attr]
    for key in world.keys.values():
        secret = key.split("_", 2)[2]
        assert secret not in dump and secret not in log
        assert key not in dump and key not in log
