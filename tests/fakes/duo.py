"""A strict fake of the Duo Auth API v2 on loopback HTTPS, for tests.

Strict where it matters: every request's signature is verified the way Duo does for
the installed duo_client (5.x signs with **signature version 5**):

    HMAC-SHA512(skey, "\\n".join([
        Date header, METHOD, host (lowercase), path,
        canonical query params (RFC 3986 quoted with "~" safe, sorted by key then value),
        sha512_hex(body)            # JSON body for POST, "" for GET,
        sha512_hex(x-duo-* headers) # "\\0"-joined lowercase name/value pairs, sorted
    ]))

sent as ``Authorization: Basic base64(ikey:hexsig)``. A bad signature gets
401 {"stat": "FAIL", "code": 40103, "message": "Invalid signature in request credentials"}.

HTTPS: a throwaway self-signed EC certificate for "localhost" is generated at start
(``cryptography``); point duo_client at it with ``ca_certs=fake.ca_certs``.

Behaviour per username (``fake.set_mode(user, mode)``; unknown users use
``default_mode``): allow, deny, timeout (status stays "waiting"), error (HTTP 500 on
preauth), status_error (HTTP 500 on auth_status), expire (Duo itself times the push
out), bypass (preauth allow), enroll, locked (preauth deny), nopush (no push device).
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import json
import shutil
import ssl
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MODES = {
    "allow", "deny", "timeout", "error", "status_error", "expire",
    "bypass", "enroll", "locked", "nopush",
}  # fmt: skip
MAX_CLOCK_SKEW = 300  # seconds

PUSH_DEVICE = {
    "device": "DPFZRS9FB0D46QFTM891",
    "type": "phone",
    "number": "XXX-XXX-0100",
    "name": "",
    "capabilities": ["auto", "push", "sms", "phone", "mobile_otp"],
}


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, Any]
    status: int  # HTTP status the fake answered with


@dataclass
class _Txn:
    username: str
    mode: str
    polls: int = 0


def canonical_params(params: dict[str, list[str]]) -> str:
    """Duo/OAuth1-style canonical form: quote with only '~' safe, sort keys then values."""
    pairs = []
    for key in sorted(params, key=lambda k: urllib.parse.quote(k, safe="~")):
        qkey = urllib.parse.quote(key, safe="~")
        for val in sorted(urllib.parse.quote(v, safe="~") for v in params[key]):
            pairs.append(f"{qkey}={val}")
    return "&".join(pairs)


def v5_signature(
    skey: str,
    date: str,
    method: str,
    host: str,
    path: str,
    params: dict[str, list[str]],
    body: str,
    duo_headers: dict[str, str],
) -> str:
    header_blob = "\x00".join(
        part for name in sorted(duo_headers) for part in (name, duo_headers[name])
    )
    canon = "\n".join([
        date, method.upper(), host.lower(), path, canonical_params(params),
        hashlib.sha512(body.encode()).hexdigest(),
        hashlib.sha512(header_blob.encode()).hexdigest(),
    ])  # fmt: skip
    return hmac.new(skey.encode(), canon.encode(), hashlib.sha512).hexdigest()


def _self_signed(directory: Path, hostname: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "duo-cert.pem", directory / "duo-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class FakeDuo:
    def __init__(
        self,
        ikey: str = "DIWJ8X6AEYOR5OMC6TQ1",
        skey: str = "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep",
        hostname: str = "localhost",
        default_mode: str = "enroll",
        polls_before_answer: int = 1,
        workdir: Path | None = None,
    ) -> None:
        self.ikey, self.skey, self.hostname = ikey, skey, hostname
        self.default_mode = default_mode
        self.polls_before_answer = polls_before_answer  # "waiting" answers before the verdict
        self.status_delay = 0.0  # seconds auth_status holds the request (Duo long-poll)
        self.modes: dict[str, str] = {}
        self.calls: list[Call] = []
        self.txns: dict[str, _Txn] = {}
        self.lock = threading.Lock()
        self._own_dir = workdir is None
        self._dir = Path(workdir or tempfile.mkdtemp(prefix="fakeduo-"))
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.ca_certs = ""

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> FakeDuo:
        cert, key = _self_signed(self._dir, self.hostname)
        self.ca_certs = str(cert)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        # Short poll interval: shutdown() waits up to one interval.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def host(self) -> str:
        """``host:port`` as a Duo API hostname (DuoConfig.host accepts this form)."""
        return f"{self.hostname}:{self.port}"

    def set_mode(self, username: str, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown fake Duo mode {mode!r}; one of {sorted(MODES)}")
        self.modes[username] = mode

    def paths(self) -> list[str]:
        with self.lock:
            return [c.path for c in self.calls]

    # -- request handling (called from the handler thread) ---------------------

    def check_auth(self, h: BaseHTTPRequestHandler, path: str, params: dict[str, list[str]],
                   body: str) -> tuple[int, dict[str, Any]] | None:  # fmt: skip
        date, auth = h.headers.get("Date"), h.headers.get("Authorization", "")
        if not date or not auth.startswith("Basic "):
            return _fail(401, 40101, "Missing request credentials")
        try:
            sent = email.utils.parsedate_to_datetime(date)
            if sent.tzinfo is None:  # "-0000" (what formatdate emits) parses as naive UTC
                sent = sent.replace(tzinfo=dt.UTC)
            ikey, _, sig = base64.b64decode(auth[6:]).decode().partition(":")
        except (TypeError, ValueError):
            return _fail(401, 40101, "Missing request credentials")
        if abs((dt.datetime.now(dt.UTC) - sent).total_seconds()) > MAX_CLOCK_SKEW:
            return _fail(401, 40105, "Request has expired")
        if ikey != self.ikey:
            return _fail(401, 40102, "Invalid integration key in request credentials")
        duo_headers = {k.lower(): v for k, v in h.headers.items() if k.lower().startswith("x-duo-")}
        expected = v5_signature(
            self.skey, date, h.command, self.hostname, path, params, body, duo_headers
        )
        if not hmac.compare_digest(expected, sig):
            return _fail(401, 40103, "Invalid signature in request credentials")
        return None

    def dispatch(self, method: str, path: str, p: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if method == "POST" and path == "/auth/v2/preauth":
            mode = self.modes.get(p.get("username", ""), self.default_mode)
            if mode == "error":
                return _fail(500, 50000, "Internal server error")
            if mode == "bypass":
                return _ok({"result": "allow", "status_msg": "Allowing unknown user"})
            if mode == "enroll":
                return _ok({"result": "enroll", "status_msg": "Enroll an authentication device"})
            if mode == "locked":
                return _ok({"result": "deny", "status_msg": "Your account is disabled"})
            device = dict(PUSH_DEVICE)
            if mode == "nopush":
                device["capabilities"] = ["sms", "phone"]
            return _ok({"result": "auth", "status_msg": "Account is active", "devices": [device]})
        if method == "POST" and path == "/auth/v2/auth":
            username = p.get("username", "")
            if p.get("factor") != "push" or p.get("device") not in ("auto", PUSH_DEVICE["device"]):
                return _fail(400, 40002, "Invalid request parameters", "factor/device")
            if p.get("async") != "1":
                return _fail(400, 40002, "Invalid request parameters", "async (fake: async only)")
            txid = str(uuid.uuid4())
            with self.lock:
                self.txns[txid] = _Txn(username, self.modes.get(username, self.default_mode))
            return _ok({"txid": txid})
        if method == "GET" and path == "/auth/v2/auth_status":
            if self.status_delay:
                time.sleep(self.status_delay)
            with self.lock:
                txn = self.txns.get(p.get("txid", ""))
                if txn is None:
                    return _fail(400, 40002, "Invalid request parameters", "txid")
                txn.polls += 1
                early = txn.polls <= self.polls_before_answer
            if txn.mode == "status_error":
                return _fail(500, 50000, "Internal server error")
            if txn.mode == "timeout" or early:
                return _ok({"result": "waiting", "status": "pushed", "status_msg": "Pushed"})
            if txn.mode == "allow":
                return _ok({"result": "allow", "status": "allow", "status_msg": "Success."})
            if txn.mode == "expire":
                return _ok({"result": "deny", "status": "timeout", "status_msg": "Timed out."})
            return _ok({"result": "deny", "status": "deny", "status_msg": "Login request denied."})
        if path in ("/auth/v2/ping", "/auth/v2/check"):
            return _ok({"time": int(dt.datetime.now(dt.UTC).timestamp())})
        return _fail(404, 40401, "Resource not found")


def _ok(response: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return 200, {"stat": "OK", "response": response}


def _fail(status: int, code: int, message: str, detail: str | None = None) -> tuple[int, dict]:
    body: dict[str, Any] = {"stat": "FAIL", "code": code, "message": message}
    if detail:
        body["message_detail"] = detail
    return status, body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _handle(self) -> None:
        fake: FakeDuo = self.server.fake  # type: ignore[attr-defined]
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        # v5: POST params travel as a JSON body (signed via its hash), GET params in the query.
        params: dict[str, Any] = {k: v[-1] for k, v in query.items()}
        if body:
            try:
                params.update(json.loads(body))
            except ValueError:
                params = {}
        try:
            status, payload = fake.check_auth(self, url.path, query, body) or fake.dispatch(
                self.command, url.path, {k: str(v) for k, v in params.items()}
            )
        except Exception as exc:  # a bug in the fake must surface as an answer, not a hang
            status, payload = _fail(500, 50000, f"fake Duo crashed: {exc!r}")
        with fake.lock:
            fake.calls.append(Call(self.command, url.path, params, status))
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _handle


@pytest.fixture(name="fake_duo")
def fake_duo_fixture(tmp_path: Path) -> Iterator[FakeDuo]:
    """A running strict fake Duo on https://localhost:<port>; stopped afterwards."""
    fake = FakeDuo(workdir=tmp_path).start()
    try:
        yield fake
    finally:
        fake.stop()
