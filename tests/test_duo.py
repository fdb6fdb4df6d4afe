"""DuoPush against a strict fake Duo Auth API (HTTPS, v5 request signatures verified)."""

from __future__ import annotations

import threading
import time

import duo_client
import pytest

from marvin.security.duo import DuoConfig, DuoPush, DuoResult, DuoStatus
from tests.fakes.duo import FakeDuo, fake_duo_fixture  # noqa: F401  (fixture "fake_duo")

pytestmark = pytest.mark.timeout(60)


def push(fake: FakeDuo, **overrides: object) -> DuoPush:
    kwargs: dict = dict(ikey=fake.ikey, skey=fake.skey, host=fake.host, ca_certs=fake.ca_certs)
    kwargs.update(overrides)
    return DuoPush(DuoConfig(**kwargs))


def test_allow_sends_push_and_polls(fake_duo: FakeDuo) -> None:
    fake_duo.set_mode("alice", "allow")
    messages: list[str] = []
    result = push(fake_duo).verify("alice@example.com", on_status=messages.append)
    assert result == "allow" and result.allowed
    assert messages == ["Sent a Duo push", "approved"]
    assert fake_duo.paths() == [
        "/auth/v2/preauth",
        "/auth/v2/auth",
        "/auth/v2/auth_status",  # first poll: still "waiting"
        "/auth/v2/auth_status",
    ]
    auth = fake_duo.calls[1].params
    assert auth == {"factor": "push", "device": "auto", "async": "1", "username": "alice"}


def test_deny(fake_duo: FakeDuo) -> None:
    fake_duo.set_mode("bob", "deny")
    messages: list[str] = []
    result = push(fake_duo).verify("bob@example.com", on_status=messages.append)
    assert result.status is DuoStatus.DENY and not result.allowed
    assert messages == ["Sent a Duo push", "denied"]


def test_timeout_when_push_is_never_answered(fake_duo: FakeDuo) -> None:
    fake_duo.set_mode("carol", "timeout")
    messages: list[str] = []
    started = time.monotonic()
    result = push(fake_duo, timeout=2.0).verify("carol@example.com", on_status=messages.append)
    elapsed = time.monotonic() - started
    assert result.status is DuoStatus.TIMEOUT
    assert 1.9 <= elapsed < 4
    polls = fake_duo.paths().count("/auth/v2/auth_status")
    assert 2 <= polls <= 6  # ~0.5 s apart: polled, not busy-waited
    assert messages == ["Sent a Duo push", "timed out"]


def test_long_poll_outlasting_socket_timeout_is_still_waiting(fake_duo: FakeDuo) -> None:
    fake_duo.set_mode("carl", "timeout")
    fake_duo.status_delay = 0.6  # each auth_status holds longer than the socket timeout
    started = time.monotonic()
    result = push(fake_duo, timeout=2.0, request_timeout=0.3).verify("carl@example.com")
    assert result.status is DuoStatus.TIMEOUT  # not ERROR: a slow long-poll is "waiting"
    assert time.monotonic() - started < 3.5


def test_duo_side_push_expiry_is_timeout(fake_duo: FakeDuo) -> None:
    fake_duo.set_mode("dan", "expire")
    assert push(fake_duo).verify("dan@example.com").status is DuoStatus.TIMEOUT


def test_http_500_fails_closed(fake_duo: FakeDuo) -> None:
    fake_duo.set_mode("erin", "error")
    messages: list[str] = []
    result = push(fake_duo).verify("erin@example.com", on_status=messages.append)
    assert result.status is DuoStatus.ERROR and "500" in result.reason
    assert "Sent a Duo push" not in messages
    assert fake_duo.paths() == ["/auth/v2/preauth"]


def test_error_while_polling_fails_closed(fake_duo: FakeDuo) -> None:
    fake_duo.set_mode("frank", "status_error")
    assert push(fake_duo).verify("frank@example.com").status is DuoStatus.ERROR


def test_bad_skey_is_rejected_by_signature_check(fake_duo: FakeDuo) -> None:
    fake_duo.set_mode("alice", "allow")
    result = push(fake_duo, skey="0" * 40).verify("alice@example.com")
    assert result.status is DuoStatus.ERROR
    assert "Invalid signature in request credentials" in result.reason
    assert [c.status for c in fake_duo.calls] == [401]  # never got as far as a push


def test_unknown_ikey_is_rejected(fake_duo: FakeDuo) -> None:
    result = push(fake_duo, ikey="DIXXXXXXXXXXXXXXXXXX").verify("alice@example.com")
    assert result.status is DuoStatus.ERROR and "integration key" in result.reason


def test_fake_rejects_a_request_altered_after_signing(fake_duo: FakeDuo) -> None:
    """The fake really checks the signed body, not just the Authorization shape."""

    class Tampering(duo_client.Auth):
        def _make_request(self, method, uri, body, headers):  # type: ignore[no-untyped-def]
            body = body.replace('"username":"mallory"', '"username":"admin"')
            return super()._make_request(method, uri, body, headers)

    host, port = fake_duo.host.split(":")
    client = Tampering(fake_duo.ikey, fake_duo.skey, host, ca_certs=fake_duo.ca_certs, port=port)
    with pytest.raises(RuntimeError, match="Invalid signature in request credentials"):
        client.preauth(username="mallory")
    # The same client without tampering is accepted (so the rejection above is the body).
    assert (
        duo_client.Auth(
            fake_duo.ikey, fake_duo.skey, host, ca_certs=fake_duo.ca_certs, port=port
        ).preauth(username="mallory")["result"]
        == "enroll"
    )


@pytest.mark.parametrize(
    ("mode", "status", "reason"),
    [
        ("bypass", DuoStatus.ALLOW, "bypass"),
        ("enroll", DuoStatus.DENY, "not enrolled"),
        ("locked", DuoStatus.DENY, "policy"),
        ("nopush", DuoStatus.DENY, "push"),
    ],
)
def test_preauth_outcomes(fake_duo: FakeDuo, mode: str, status: DuoStatus, reason: str) -> None:
    fake_duo.set_mode("gina", mode)
    result = push(fake_duo).verify("gina@example.com")
    assert result.status is status and reason in result.reason
    assert "/auth/v2/auth" not in fake_duo.paths()


def test_username_template_email(fake_duo: FakeDuo) -> None:
    fake_duo.set_mode("hank@example.com", "allow")
    result = push(fake_duo, username_template="{email}").verify("hank@example.com")
    assert result == "allow"
    assert fake_duo.calls[0].params == {"username": "hank@example.com"}


def test_cancel_stops_polling_quickly(fake_duo: FakeDuo) -> None:
    fake_duo.set_mode("ivy", "timeout")
    cancelled = threading.Event()

    def on_status(message: str) -> None:
        if message == "Sent a Duo push":
            threading.Timer(0.2, cancelled.set).start()

    started = time.monotonic()
    result = push(fake_duo, timeout=30).verify(
        "ivy@example.com", on_status=on_status, cancelled=cancelled
    )
    assert result.status is DuoStatus.ERROR and result.reason == "cancelled"
    assert time.monotonic() - started < 2


def test_untrusted_certificate_fails_closed(fake_duo: FakeDuo) -> None:
    # Default ca_certs = Duo's pinned CAs: our self-signed fake must not be trusted.
    result = push(fake_duo, ca_certs=None).verify("alice@example.com")
    assert result.status is DuoStatus.ERROR
    assert fake_duo.calls == []


def test_broken_status_callback_does_not_change_outcome(fake_duo: FakeDuo) -> None:
    fake_duo.set_mode("jo", "allow")

    def explode(message: str) -> None:
        raise RuntimeError("chat is down")

    assert push(fake_duo).verify("jo@example.com", on_status=explode) == "allow"


def test_not_an_email_is_an_error_without_calling_duo(fake_duo: FakeDuo) -> None:
    assert push(fake_duo).verify("not-an-email").status is DuoStatus.ERROR
    assert fake_duo.calls == []


def test_config_validation_and_result_equality() -> None:
    with pytest.raises(ValueError, match="username_template"):
        DuoConfig(ikey="i", skey="s", host="h", username_template="{user}")
    assert "s3cr3t" not in repr(DuoConfig(ikey="i", skey="s3cr3t", host="h"))
    assert DuoResult(DuoStatus.DENY, "x") == "deny" != "allow"
    assert DuoResult(DuoStatus.ALLOW) == DuoResult(DuoStatus.ALLOW)
