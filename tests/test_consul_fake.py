"""The loopback Consul fake is strict where the real agent is: checked with the real py-consul
client and with raw HTTP for the wire details the client hides."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request

import consul
import pytest

from tests.fakes.consul import MAX_VALUE, FakeConsul

pytestmark = pytest.mark.timeout(30)


def raw(fake: FakeConsul, path: str, method: str = "GET", data: bytes | None = None):  # noqa: ANN201
    req = urllib.request.Request(fake.address + path, method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def fake():  # noqa: ANN201
    with FakeConsul.start() as f:
        yield f


def client(fake: FakeConsul, token: str | None = None) -> consul.Consul:
    c = consul.Consul(host="127.0.0.1", port=fake.port)
    c.token = token
    return c


def test_wire_format_index_on_404_and_base64_values(fake: FakeConsul) -> None:
    status, headers, body = raw(fake, "/v1/kv/missing")
    assert status == 404 and int(headers["X-Consul-Index"]) >= 1 and body == b""
    fake.put("a/b", b"\x00\xffbinary")
    status, headers, body = raw(fake, "/v1/kv/a/b")
    row = json.loads(body)[0]
    assert status == 200 and base64.b64decode(row["Value"]) == b"\x00\xffbinary"
    assert int(headers["X-Consul-Index"]) == row["ModifyIndex"]
    fake.put("a/empty", b"")
    assert json.loads(raw(fake, "/v1/kv/a/empty")[2])[0]["Value"] is None
    status, _, body = raw(fake, "/v1/kv/a/b?cas=notanumber", "PUT", b"x")
    assert status == 400 and b"cas" in body
    assert raw(fake, "/v1/kv/a/b?index=1&wait=soon")[0] == 400
    assert raw(fake, "/v1/kv/a/b", "POST", b"x")[0] == 405


def test_recurse_keys_separator_and_cas_through_py_consul(fake: FakeConsul) -> None:
    c = client(fake)
    assert c.kv.put("env/config/x", b"1") is True
    assert c.kv.put("env/config/sub/y", b"2") is True
    _, rows = c.kv.get("env/config/", recurse=True)
    assert [(r["Key"], r["Value"]) for r in rows] == [
        ("env/config/sub/y", b"2"),
        ("env/config/x", b"1"),
    ]
    _, keys = c.kv.get("env/config/", keys=True, separator="/")
    assert keys == ["env/config/sub/", "env/config/x"]
    index, row = c.kv.get("env/config/x")
    assert c.kv.put("env/config/x", b"2", cas=row["ModifyIndex"] - 1) is False
    assert c.kv.put("env/config/x", b"2", cas=row["ModifyIndex"]) is True
    assert c.kv.put("env/config/x", b"3", cas=0) is False  # 0: only if absent
    assert c.kv.put("env/config/new", b"3", cas=0) is True
    assert c.kv.delete("env/config/new", cas=0) is False
    assert c.kv.get("env/nothing/", recurse=True)[1] is None


def test_blocking_query_waits_for_a_change(fake: FakeConsul) -> None:
    c = client(fake)
    c.kv.put("k", b"1")
    index, _ = c.kv.get("k")
    started = time.monotonic()
    index2, row = c.kv.get("k", index=index, wait="300ms")  # nothing changes: waits it out
    assert time.monotonic() - started >= 0.25 and index2 == index
    threading.Timer(0.2, lambda: fake.put("k", b"2")).start()
    started = time.monotonic()
    index3, row = c.kv.get("k", index=index, wait="5s")
    assert time.monotonic() - started < 3 and int(index3) > int(index) and row["Value"] == b"2"


def test_acl_tokens_and_the_value_limit() -> None:
    acl = {"ops": [("", "write")], "reader": [("env/", "read"), ("env/secret", "deny")]}
    with FakeConsul.start(acl=acl) as fake:
        fake.put("env/a", b"1")
        fake.put("env/secret", b"s")
        with pytest.raises(consul.ACLPermissionDenied, match="Permission denied"):
            client(fake).kv.get("env/a")  # anonymous
        with pytest.raises(consul.ACLPermissionDenied):
            client(fake, "reader").kv.put("env/a", b"2")
        with pytest.raises(consul.ACLPermissionDenied):
            client(fake, "reader").kv.get("env/secret")
        _, rows = client(fake, "reader").kv.get("env/", recurse=True)
        assert [r["Key"] for r in rows] == ["env/a"]  # lists are filtered, not refused
        writer = client(fake, "ops")
        assert writer.kv.put("env/big", b"x" * MAX_VALUE) is True
        with pytest.raises(consul.ConsulException, match="413"):
            writer.kv.put("env/big", b"x" * (MAX_VALUE + 1))
        assert fake.get("env/big") == b"x" * MAX_VALUE


def test_interleave_simulates_another_writer(fake: FakeConsul) -> None:
    c = client(fake)
    c.kv.put("k", b"mine")
    _, row = c.kv.get("k")
    fake.interleave("k", "theirs")
    assert c.kv.put("k", b"new", cas=row["ModifyIndex"]) is False
    assert fake.get("k") == b"theirs"
