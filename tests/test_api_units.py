"""The API's parts in-process: keys in the store, the rate limiter, expiry parsing, typed
outcomes from the pipeline, and a crash answered without a stack trace."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from marvin import Integer, command
from marvin.bootstrap import build_app, build_table
from marvin.config import DEFAULT_CONFIG, load_config
from marvin.core.apikeys import KeyRefused, parse_key
from marvin.core.authz import LocalAuthorizer
from marvin.core.model import Message
from marvin.frontends.http.identity import ApiIdentity, api_user
from marvin.frontends.http.keys_cli import parse_expiry
from marvin.frontends.http.limits import RateLimiter
from marvin.frontends.http.server import ApiServer
from marvin.frontends.http.settings import ApiSettings
from marvin.runtime.apikeys import StoredKeys
from marvin.runtime.store import Store
from marvin.security.authorizer import PolicyAuthorizer
from marvin.security.directory import StaticDirectory
from marvin.security.duo import DuoConfig, DuoPush
from marvin.security.mfa import DuoSecondFactor
from marvin.security.policy import load_policy
from marvin.testing import Replies
from tests.fakes.duo import FakeDuo, fake_duo_fixture  # noqa: F401  (fixture "fake_duo")

pytestmark = pytest.mark.timeout(30)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_keys_are_stored_hashed_and_checked(tmp_path: Path) -> None:
    clock = Clock()
    keys = StoredKeys(Store(tmp_path / "s.sqlite3"), clock)
    key, token = keys.create("Alice@Example.com", "ci", expires_at=clock.now + 60)
    key_id, secret = parse_key(token)
    assert key_id == key.id and key.owner == "alice@example.com"
    raw = "\n".join(sqlite3.connect(tmp_path / "s.sqlite3").iterdump())
    assert secret not in raw and key.id in raw
    assert keys.verify(token).owner == "alice@example.com"
    assert keys.get(key.id).last_used == clock.now  # type: ignore[union-attr]
    clock.now += 30
    keys.verify(token)  # last_used is written at most once a minute
    assert keys.get(key.id).last_used == clock.now - 30  # type: ignore[union-attr]
    for bad, problem in (
        ("", "missing"),
        ("mrv_nope", "malformed"),
        (token[:-3] + "AAA", "unknown"),
        (f"mrv_{'0' * 12}_{secret}", "unknown"),
    ):
        with pytest.raises(KeyRefused) as exc:
            keys.verify(bad)
        assert exc.value.problem == problem and secret not in str(exc.value)
    clock.now += 31
    with pytest.raises(KeyRefused, match="expired"):
        keys.verify(token)
    other, token2 = keys.create("bob@example.com", "deploy")
    assert keys.revoke(other.id).revoked_at is None  # type: ignore[union-attr]
    assert keys.revoke(other.id).revoked_at is not None  # type: ignore[union-attr]
    with pytest.raises(KeyRefused, match="revoked"):
        keys.verify(token2)
    assert [k.state(clock.now) for k in keys.list()] == ["expired", "revoked"]
    with pytest.raises(ValueError):
        keys.create("not-an-email", "x")


def test_rate_limiter_bursts_then_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    assert [limiter.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k") == pytest.approx(1.0)
    assert limiter.take("other") == 0.0  # per key
    clock.now += 0.5
    assert limiter.take("k") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.take("k") == 0.0


def test_expiry_durations() -> None:
    assert parse_expiry("90d", 0) == 90 * 86400 and parse_expiry("12h", 10) == 10 + 43200
    assert parse_expiry(None, 0) is None and parse_expiry("never", 0) is None
    for bad in ("90", "0d", "1y", "-1d"):
        with pytest.raises(ValueError, match="--expires"):
            parse_expiry(bad, 0)


@command("u.slow", "unit slow {{ n }}", description="d", examples=["unit slow 1"], lock="n",
         params={"n": Integer(min=0, max=9)})  # fmt: skip
def slow(ctx, n: int) -> str:
    ctx.sleep(n)
    return "ok"


@pytest.fixture
def app(tmp_path: Path):  # type: ignore[no-untyped-def]
    cfg = load_config(DEFAULT_CONFIG, env={"MARVIN_STATE": str(tmp_path / "m.sqlite3")})
    identity = ApiIdentity()
    table = build_table([slow])
    marvin = build_app(
        cfg, table=table, authorizer=LocalAuthorizer(), frontends=[identity.front_end]
    )
    identity.attach(marvin.keys)
    yield marvin
    marvin.shutdown(timeout=5)


def test_submit_gives_typed_outcomes(app) -> None:  # type: ignore[no-untyped-def]
    key, _ = app.keys.create("operator@example.com", "t")

    def submit(text: str):  # type: ignore[no-untyped-def]
        return app.submit(Message(text, api_user(key), Replies()))

    first = submit("unit slow 3")
    assert first.kind == "accepted" and first.execution_id and first.ref == "u.slow"
    locked = submit("unit slow 3")
    assert locked.kind == "locked" and locked.refused and first.execution_id in locked.message
    assert submit("unit slow 99").kind == "invalid"
    assert submit("no such thing").kind == "unknown"
    assert submit("whoami").kind == "inline"
    cancel = app.request_cancel(first.execution_id, app.identify(api_user(key)))
    assert cancel.kind == "accepted"
    assert app.request_cancel("ex-000000", app.identify(api_user(key))).kind == "unknown"
    app.keys.revoke(key.id)
    refused = submit("unit slow 1")
    assert refused.kind == "identity" and refused.message == "This API key was revoked."
    text = app.metrics_text().decode()
    assert 'marvin_refusals_total{reason="locked"} 1.0' in text
    assert 'marvin_refusals_total{reason="identity"} 1.0' in text


def test_a_crash_is_a_json_500_without_a_stack_trace(app, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, token = app.keys.create("operator@example.com", "t")

    def boom(*_a, **_k):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret internals at /srv/marvin/app.py line 12")

    monkeypatch.setattr(app, "submit", boom)
    server = ApiServer(app, ApiSettings(port=0)).start()  # a free loopback port
    try:
        with httpx.Client(base_url=server.url) as client:
            r = client.post(
                "/api/v1/executions",
                json={"text": "x"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 500 and r.json() == {
                "error": "internal",
                "message": "Something went wrong on my side; it has been logged.",
            }
            assert "Traceback" not in r.text and "internals" not in r.text
            assert client.get("/openapi.json").json()["info"]["title"] == "Marvin API"
    finally:
        server.stop()


@command("u.guarded", "unit guarded", description="d", examples=["unit guarded"], mfa=True)
def guarded(ctx) -> str:
    return "guarded ok"


def test_mfa_push_goes_to_the_key_owner_and_the_request_returns_at_once(
    tmp_path: Path, fake_duo: FakeDuo
) -> None:
    (tmp_path / "rbac.yaml").write_text("rules:\n  - {commands: ['u.*'], groups: [ops]}\n")
    (tmp_path / "directory.yaml").write_text("users:\n  alice@example.com: {groups: [ops]}\n")
    authz = PolicyAuthorizer(
        load_policy(tmp_path / "rbac.yaml"), StaticDirectory(tmp_path / "directory.yaml")
    )
    cfg = load_config(DEFAULT_CONFIG, env={"MARVIN_STATE": str(tmp_path / "m.sqlite3")})
    identity = ApiIdentity()
    table = build_table([slow, guarded])
    app = build_app(cfg, table=table, authorizer=authz, frontends=[identity.front_end])
    identity.attach(app.keys)
    duo = DuoConfig(ikey=fake_duo.ikey, skey=fake_duo.skey, host=fake_duo.host,
                    ca_certs=fake_duo.ca_certs)  # fmt: skip
    app.second_factor = DuoSecondFactor(DuoPush(duo))
    fake_duo.polls_before_answer = 3  # the push stays unanswered for a while
    fake_duo.set_mode("alice", "allow")
    _, token = app.keys.create("alice@example.com", "ci")
    server = ApiServer(app, ApiSettings(port=0)).start()
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as c:
            r = c.post("/api/v1/executions", json={"ref": "u.guarded"})
            assert r.status_code == 202, r.text
            ex_id = r.json()["id"]
            assert c.get(f"/api/v1/executions/{ex_id}").json()["state"] in ("queued", "running")
            app.wait(ex_id, timeout=20)
            got = c.get(f"/api/v1/executions/{ex_id}").json()
        assert got["state"] == "succeeded" and got["result"].startswith("guarded ok")
        assert "mfa_approved" in [a["event"] for a in got["audit"]]
        auth = next(call for call in fake_duo.calls if call.path == "/auth/v2/auth")
        assert auth.params["username"] == "alice"  # the key's owner, from the directory's email
    finally:
        server.stop()
        app.shutdown(timeout=5)
