"""Unit tests of the Consul action library (marvin.actions.consul, consul_values, maintenance)
against the loopback fake, with the real py-consul client."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from marvin.actions.consul import (
    MAX_VALUE,
    ConsulDenied,
    ConsulError,
    ConsulKV,
    ConsulUnavailable,
    _build,
    is_secret,
    layout,
    prefix_of,
)
from marvin.actions.consul_values import Conflict, change, show
from marvin.actions.maintenance import KIND, end_window, iso, window, write
from marvin.config import DEFAULT_CONFIG, load_config
from marvin.runtime.due import DueLog, run_due
from marvin.runtime.store import Store
from tests.fakes.consul import FakeConsul
from tests.fakes.ports import free_port

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def fake():
    with FakeConsul.start() as f:
        yield f


def kv(fake: FakeConsul, token: str | None = None, timeout: float = 2) -> ConsulKV:
    return ConsulKV(fake.address, token, timeout=timeout)


def test_address_and_token_from_consul_env_unless_configured(fake: FakeConsul) -> None:
    cfg = load_config(DEFAULT_CONFIG, env={"MY_TOKEN": "x"})
    env = {"CONSUL_HTTP_ADDR": f"127.0.0.1:{fake.port}", "CONSUL_HTTP_TOKEN": "std"}
    client = _build(cfg, env)
    assert client.address == fake.address and client._api.token == "std"
    cfg.data["consul"] = {"address": "https://consul.example:8501", "token_env": "MY_TOKEN"}
    client = _build(cfg, {**env, "MY_TOKEN": "mine"})
    assert client.address == "https://consul.example:8501" and client._api.token == "mine"
    with pytest.raises(ConsulError, match="not host:port"):
        ConsulKV("http://:x", None, timeout=1)


def test_layout_prefix_and_secret_patterns() -> None:
    cfg = load_config(DEFAULT_CONFIG, env={})
    assert layout(cfg, "config", environment="demo01", key="app/x") == "demo01/config/app/x"
    assert prefix_of(cfg, "feature", "demo01") == "demo01/features/"
    assert layout(cfg, "maintenance", environment="demo01") == "demo01/maintenance"
    assert is_secret(cfg, "db/PASSWORD") and is_secret(cfg, "api_key")
    assert not is_secret(cfg, "app/timeout")
    cfg.data["consul"] = {"config_key": "cfg/{environment}/{key}"}
    assert layout(cfg, "config", environment="e1", key="k") == "cfg/e1/k"


def test_bad_templates_are_configuration_errors(tmp_path: Path) -> None:
    from marvin.config import ConfigError

    bad = tmp_path / "m.yaml"
    bad.write_text("consul: {config_key: '{environment}/config'}\n")
    with pytest.raises(ConfigError, match="consul.config_key"):
        load_config(bad, env={})


def test_change_is_compare_and_set_and_reports_both_values(fake: FakeConsul) -> None:
    c = kv(fake)
    first = change(c, "e/k", b"1", name="k")
    assert first.changed and first.before is None and fake.get("e/k") == b"1"
    same = change(c, "e/k", b"1", name="k")
    assert not same.changed and "already `1`" in same.report("k", secret=False)
    fake.interleave("e/k", "other")
    with pytest.raises(Conflict) as err:
        change(c, "e/k", b"2", name="k")
    assert "I read `1`" in str(err.value) and "`other`" in str(err.value)
    assert fake.get("e/k") == b"other"  # never overwritten blindly
    with pytest.raises(Conflict, match="no longer what that command left"):
        change(c, "e/k", b"3", name="k", expect=b"1")
    gone = change(c, "e/k", None, name="k", expect=b"other")
    assert gone.changed and fake.get("e/k") is None


def test_secret_values_never_appear_in_messages(fake: FakeConsul) -> None:
    c = kv(fake)
    done = change(c, "e/db_password", b"hunter2", name="db_password", secret=True)
    assert "hunter2" not in done.report("db_password", secret=True)
    fake.interleave("e/db_password", "swordfish")
    with pytest.raises(Conflict) as err:
        change(c, "e/db_password", b"letmein", name="db_password", secret=True)
    assert not {"hunter2", "swordfish", "letmein"} & set(str(err.value).replace("`", " ").split())
    assert "secret" in str(err.value)


def test_show_text_long_binary_and_secret() -> None:
    assert show(b"30") == "`30`"
    assert show(None) == "(not set)" and show(b"") == "(empty)"
    long = ("line\n" * 5000).encode()
    assert show(long).startswith("(25,000 bytes)\n```") and show(long).count("line") == 5000
    binary = show(bytes(range(256)))
    assert binary.startswith("(binary, 256 bytes, sha256 40aff2e9")
    assert show(b"pw", secret=True) == "(secret, set, 2 bytes)"


def test_failures_say_what_happened(fake: FakeConsul) -> None:
    too_big = b"x" * (MAX_VALUE + 1)
    with pytest.raises(ConsulError, match="at most 524,288"):
        kv(fake).put_cas("e/k", too_big, 0)
    assert fake.get("e/k") is None and not [r for r in fake.requests if r[0] == "PUT"]
    down = ConsulKV(f"127.0.0.1:{free_port()}", None, timeout=1)
    with pytest.raises(ConsulUnavailable, match="not reachable; nothing was changed"):
        down.put_cas("e/k", b"1", 0)
    fake.delay = 1.5
    started = time.monotonic()
    with pytest.raises(ConsulUnavailable, match="did not answer within 0.5 s; nothing was changed"):
        kv(fake, timeout=0.5).get("e/k")
    assert time.monotonic() - started < 1.4
    fake.delay = 0
    with FakeConsul.start(acl={"ro": [("", "read")]}) as locked:
        with pytest.raises(ConsulDenied, match="lacks permission to write `e/k`"):
            kv(locked, "ro").put_cas("e/k", b"1", 0)
        with pytest.raises(ConsulDenied, match="lacks permission to read"):
            kv(locked).get("e/k")


def _app(tmp_path: Path, fake: FakeConsul) -> SimpleNamespace:
    store = Store(tmp_path / "s.sqlite3")
    return SimpleNamespace(store=store, services=SimpleNamespace(consul=kv(fake)), owner="me:1")


def test_expired_window_ends_once_and_only_if_unchanged(tmp_path: Path, fake: FakeConsul) -> None:
    app = _app(tmp_path, fake)
    now = time.time()
    opened = window(enabled=True, by="a@x", reason="r", minutes=1, now=now - 600)
    write(kv(fake), "e1/maintenance", opened, name="m")
    payload = {"key": "e1/maintenance", "environment": "e1", "opened_by": "ex-000001"}
    payload |= {"since": opened["since"], "until": opened["until"]}
    dues = DueLog(app.store.path)
    dues.add(KIND, payload, now - 540, "ex-000001")
    later = dues.add(KIND, {**payload, "until": iso(now + 3600)}, now + 3600, "ex-000002")
    notices: list[dict] = []
    nxt = run_due(app, notices.append)
    assert b'"enabled": false' in fake.get("e1/maintenance")
    assert len(notices) == 1 and "has ended" in notices[0]["notice"]
    assert nxt == pytest.approx(now + 3600)
    assert run_due(app, notices.append) == pytest.approx(now + 3600) and len(notices) == 1
    assert [r["id"] for r in dues.pending()] == [later]
    # A window changed by hand since is left alone by the end of the old one.
    assert end_window(app.services, payload) is None


def test_due_action_is_retried_when_consul_is_down(tmp_path: Path) -> None:
    with FakeConsul.start() as fake:
        app = _app(tmp_path, fake)
        address = fake.address
    app.services.consul = ConsulKV(address, None, timeout=1)
    dues = DueLog(app.store.path)
    payload = {"key": "e/maintenance", "environment": "e", "since": "s", "until": "u"}
    dues.add(KIND, {**payload, "opened_by": "ex-1"}, time.time() - 1, "ex-000003")
    nxt = run_due(app, None)
    assert nxt is not None and nxt > time.time() + 10  # retried later, still pending
    assert len(dues.pending()) == 1
