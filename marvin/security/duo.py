"""Duo push second factor via the Duo Auth API (duo_client.Auth).

Fail-closed by construction: only an explicit Duo "allow" (or a preauth bypass set
by the Duo admin) yields ``DuoStatus.ALLOW``; every error path yields ERROR/DENY/TIMEOUT.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duo_client
import structlog

log = structlog.get_logger(__name__)

POLL_INTERVAL = 0.5  # seconds between auth_status polls (fakes answer instantly)


class DuoStatus(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    TIMEOUT = "timeout"
    ERROR = "error"


@dataclass(frozen=True)
class DuoResult:
    status: DuoStatus
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.status is DuoStatus.ALLOW

    def __eq__(self, other: object) -> bool:
        # Lets callers write `result == "allow"` as well as compare results.
        if isinstance(other, str):
            return self.status == other
        if isinstance(other, DuoResult):
            return (self.status, self.reason) == (other.status, other.reason)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.status, self.reason))


@dataclass(frozen=True, kw_only=True)
class DuoConfig:
    ikey: str
    skey: str = field(repr=False)
    host: str  # "api-xxxx.duosecurity.com"; "host:port" is accepted (tests)
    ca_certs: str | None = None  # passed through: None (Duo's pinned CAs), a path, "DISABLE"
    timeout: float = 60.0  # overall budget for the push to be answered
    username_template: str = "{local}"  # {local} = part before @, {email} = whole address
    request_timeout: float = 30.0  # per HTTP request (socket) timeout
    poll_interval: float = POLL_INTERVAL

    def __post_init__(self) -> None:
        if not (self.ikey and self.skey and self.host):
            raise ValueError("duo: ikey, skey and host are required")
        try:
            self.username_template.format(local="x", email="x@y")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"duo.username_template {self.username_template!r}: only {{local}} and "
                "{email} are allowed"
            ) from exc

    def username_for(self, email: str) -> str:
        email = email.strip()
        local, at, domain = email.partition("@")
        if not at or not local or not domain:
            raise ValueError(f"not an email address: {email!r}")
        return self.username_template.format(local=local, email=email)


class DuoPush:
    """Send a Duo push for a chat user and wait for the answer."""

    def __init__(self, config: DuoConfig) -> None:
        self.config = config

    @staticmethod
    def _make_client(config: DuoConfig) -> duo_client.Auth:
        host, port = config.host, None
        name, sep, maybe_port = config.host.rpartition(":")
        if sep and maybe_port.isdigit():
            # duo_client signs with `host` and connects to (host, port): keep them apart.
            host, port = name, int(maybe_port)
        kwargs: dict[str, Any] = {"port": port, "timeout": config.request_timeout}
        if config.ca_certs is not None:
            kwargs["ca_certs"] = config.ca_certs
        return duo_client.Auth(ikey=config.ikey, skey=config.skey, host=host, **kwargs)

    def verify(
        self,
        email: str,
        *,
        on_status: Callable[[str], None] | None = None,
        cancelled: threading.Event | None = None,
    ) -> DuoResult:
        def notify(message: str) -> None:
            if on_status is None:
                return
            try:
                on_status(message)
            except Exception:  # a broken chat callback must not change the auth outcome
                log.exception("duo.on_status_failed")

        cancelled = cancelled or threading.Event()
        deadline = time.monotonic() + self.config.timeout
        try:
            username = self.config.username_for(email)
        except ValueError as exc:
            return DuoResult(DuoStatus.ERROR, str(exc))
        # One client per verification: duo_client opens a connection per request anyway,
        # and it lets us shrink the socket timeout to the remaining budget thread-safely.
        client = self._make_client(self.config)
        try:
            result = self._run(client, username, deadline, cancelled, notify)
        except Exception as exc:  # duo_client raises RuntimeError/OSError/http errors
            if time.monotonic() >= deadline:
                result = DuoResult(DuoStatus.TIMEOUT, f"no answer within {self.config.timeout}s")
            else:
                result = DuoResult(DuoStatus.ERROR, f"Duo request failed: {exc}")
        if result.status is DuoStatus.ALLOW:
            notify("approved")
        elif result.status is DuoStatus.DENY:
            notify("denied")
        elif result.status is DuoStatus.TIMEOUT:
            notify("timed out")
        else:
            notify("error")
        log.info("duo.verify", username=username, status=str(result.status), reason=result.reason)
        return result

    def _run(
        self,
        client: duo_client.Auth,
        username: str,
        deadline: float,
        cancelled: threading.Event,
        notify: Callable[[str], None],
    ) -> DuoResult:
        def budget() -> float:  # socket timeout for the next request
            left = deadline - time.monotonic()
            return max(0.2, min(self.config.request_timeout, left))

        client.timeout = budget()
        pre = client.preauth(username=username)
        outcome = pre.get("result")
        if outcome == "allow":  # the Duo admin put this user in bypass
            return DuoResult(DuoStatus.ALLOW, "bypass: " + pre.get("status_msg", ""))
        if outcome == "enroll":
            return DuoResult(DuoStatus.DENY, "not enrolled in Duo: " + pre.get("status_msg", ""))
        if outcome == "deny":
            return DuoResult(DuoStatus.DENY, "denied by Duo policy: " + pre.get("status_msg", ""))
        if outcome != "auth":
            return DuoResult(DuoStatus.ERROR, f"unexpected preauth result {outcome!r}")
        devices = pre.get("devices")
        if isinstance(devices, list) and not any(
            "push" in (d.get("capabilities") or ()) for d in devices if isinstance(d, dict)
        ):
            return DuoResult(DuoStatus.DENY, "no Duo device that can receive a push")
        if cancelled.is_set():
            return DuoResult(DuoStatus.ERROR, "cancelled")

        client.timeout = budget()
        txn = client.auth(factor="push", username=username, device="auto", async_txn=True)
        txid = txn.get("txid") if isinstance(txn, dict) else None
        if not txid:
            return DuoResult(DuoStatus.ERROR, "Duo did not return a transaction id")
        notify("Sent a Duo push")

        while True:
            if cancelled.is_set():
                return DuoResult(DuoStatus.ERROR, "cancelled")
            if time.monotonic() >= deadline:
                return DuoResult(DuoStatus.TIMEOUT, f"no answer within {self.config.timeout}s")
            client.timeout = budget()
            try:
                # A long poll on real Duo: it may legitimately outlast the socket timeout.
                st = client.auth_status(txid)
            except TimeoutError:
                continue
            if st.get("success"):
                return DuoResult(DuoStatus.ALLOW, st.get("status_msg", ""))
            if not st.get("waiting"):
                if st.get("status") == "timeout":  # Duo expired the push itself
                    return DuoResult(DuoStatus.TIMEOUT, st.get("status_msg", ""))
                return DuoResult(DuoStatus.DENY, st.get("status_msg", "") or "denied")
            # Interruptible sleep, never past the deadline.
            pause = min(self.config.poll_interval, max(0.0, deadline - time.monotonic()))
            cancelled.wait(pause)
