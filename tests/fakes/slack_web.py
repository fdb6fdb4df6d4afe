"""Web API half of the fake Slack: shared state plus an HTTP server for ``/api/<method>``.

Also serves the two non-API URLs Slack hands out: ``files.getUploadURLExternal`` upload URLs and
interactive ``response_url``s, so the real slack_sdk/bolt code paths run unchanged against it.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

UPLOAD = "upload_url"  # pseudo-method name recorded for the raw file upload POST
RESPONSE_URL = "response_url"  # pseudo-method name recorded for posts to a response_url

Handler = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Identity:
    """Ids and tokens of the one fake workspace and the bot installed in it."""

    team_id: str = "T0FAKETEAM"
    team_name: str = "Fake Team"
    team_domain: str = "fake-team"
    bot_user_id: str = "U0MARVINBOT"
    bot_name: str = "marvin"
    bot_id: str = "B0MARVINBOT"
    app_id: str = "A0MARVINAPP"
    bot_token: str = "xoxb-1111-2222-fakebottoken"
    app_token: str = "xapp-1-A0MARVINAPP-3333-fakeapptoken"


@dataclass
class Call:
    """One Web API request as the fake saw it (``received_at`` is ``time.monotonic()``)."""

    method: str
    args: dict[str, Any]
    token: str | None
    received_at: float
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response.get("ok"))


@dataclass
class Fault:
    status: int
    retry_after: int | None
    error: str


@dataclass
class UploadedFile:
    id: str
    filename: str
    length: int
    content: bytes | None = None
    title: str | None = None
    completed: bool = False


class ApiError(Exception):
    """Raised by method handlers; becomes ``{"ok": false, "error": ...}`` with HTTP 200."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error, self.extra = error, extra


class Store:
    """Everything the fake remembers. One Condition guards it all; traffic is tiny."""

    def __init__(self, ident: Identity) -> None:
        self.ident = ident
        self.cond = threading.Condition()
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.ephemeral: list[dict[str, Any]] = []
        self.reactions: set[tuple[str, str, str]] = set()
        self.users: dict[str, dict[str, Any]] = {}
        self.files: dict[str, UploadedFile] = {}
        self.faults: dict[str, deque[Fault]] = {}
        self._last_us = 0

    def next_ts(self) -> str:
        # Slack ts: epoch seconds + 6 digits, unique per channel; we make it globally increasing.
        with self.cond:
            self._last_us = max(int(time.time() * 1_000_000), self._last_us + 1)
            us = self._last_us
        return f"{us // 1_000_000}.{us % 1_000_000:06d}"

    def record(self, call: Call) -> None:
        with self.cond:
            self.calls.append(call)
            self.cond.notify_all()

    def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None,
        timeout: float,
        since: int,
    ) -> Call:
        deadline = time.monotonic() + timeout
        i = since
        with self.cond:
            while True:
                for call in self.calls[i:]:
                    if call.method == method and (predicate is None or predicate(call)):
                        return call
                i = len(self.calls)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [c.method for c in self.calls[since:]]
                    raise TimeoutError(f"no matching {method} call within {timeout}s; saw {seen}")
                self.cond.wait(remaining)

    def put_message(self, channel: str, message: dict[str, Any]) -> None:
        with self.cond:
            self.messages[(channel, message["ts"])] = message


_CHANNEL_ID = re.compile(r"[CDGUW][A-Z0-9]{2,}")
_EMOJI_NAME = re.compile(r"[a-z0-9_+'\-]+(::skin-tone-[2-6])?")


def _json_field(args: dict[str, Any], key: str, error: str) -> Any:
    # Form bodies carry blocks/attachments/files as JSON strings, JSON bodies as real lists.
    value = args.get(key)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise ApiError(error) from None
    return value


class WebApi:
    """Method table and handlers. ``socket_url`` is called to mint a Socket Mode URL."""

    def __init__(self, store: Store, socket_url: Callable[[], str]) -> None:
        self.store, self.ident, self.socket_url = store, store.ident, socket_url
        self.base = ""  # http://127.0.0.1:PORT, set once the server is bound
        self.methods: dict[str, tuple[str, Handler]] = {}
        for name, handler in {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.update": self._update,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "users.info": self._users_info,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
        }.items():
            self.methods[name] = ("bot", handler)
        self.methods["apps.connections.open"] = ("app", lambda _args: {"url": self.socket_url()})

    # -- auth and dispatch -------------------------------------------------------------------

    def call(self, method: str, args: dict[str, Any], token: str | None) -> tuple[int, dict, dict]:
        """Run one API method -> (status, body, extra headers). Checks in Slack's order."""
        if method not in self.methods:
            return 200, {"ok": False, "error": "unknown_method", "req_method": method}, {}
        kind, handler = self.methods[method]
        if not token:
            return 200, {"ok": False, "error": "not_authed"}, {}
        if token not in (self.ident.bot_token, self.ident.app_token):
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        if token != (self.ident.app_token if kind == "app" else self.ident.bot_token):
            return 200, {"ok": False, "error": "not_allowed_token_type"}, {}
        with self.store.cond:
            queue = self.store.faults.get(method)
            fault = queue.popleft() if queue else None
        if fault is not None:
            headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            return fault.status, {"ok": False, "error": fault.error}, headers
        try:
            return 200, {"ok": True, **handler(args)}, {}
        except ApiError as e:
            return 200, {"ok": False, "error": e.error, **e.extra}, {}
        except Exception as e:  # a bug in a handler: surface it instead of resetting the socket
            return 500, {"ok": False, "error": "internal_error", "detail": repr(e)}, {}

    # -- helpers -----------------------------------------------------------------------------

    def _channel(self, args: dict[str, Any], key: str = "channel") -> str:
        channel = str(args.get(key) or "")
        if not _CHANNEL_ID.fullmatch(channel):
            raise ApiError("channel_not_found")
        # Posting to a user id lands in the bot's IM with that user, and Slack reports the IM id.
        return "D" + channel[1:] if channel[0] in "UW" else channel

    def _content(self, args: dict[str, Any]) -> dict[str, Any]:
        text = args.get("text")
        blocks = _json_field(args, "blocks", "invalid_blocks_format")
        attachments = _json_field(args, "attachments", "invalid_attachments")
        if not (text or blocks or attachments):
            raise ApiError("no_text")
        if blocks is not None and not (
            isinstance(blocks, list) and all(isinstance(b, dict) and "type" in b for b in blocks)
        ):
            raise ApiError("invalid_blocks")
        if text is not None and len(str(text)) > 40_000:
            raise ApiError("msg_too_long")
        out: dict[str, Any] = {"text": str(text or "")}
        if blocks:
            out["blocks"] = blocks
        if attachments:
            out["attachments"] = attachments
        return out

    def _bot_message(self, ts: str, content: dict[str, Any]) -> dict[str, Any]:
        i = self.ident
        return {
            "type": "message",
            "user": i.bot_user_id,
            "bot_id": i.bot_id,
            "app_id": i.app_id,
            "team": i.team_id,
            "ts": ts,
            **content,
        }

    # -- methods -----------------------------------------------------------------------------

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        i = self.ident
        return {
            "url": f"https://{i.team_domain}.slack.com/",
            "team": i.team_name,
            "user": i.bot_name,
            "team_id": i.team_id,
            "user_id": i.bot_user_id,
            "bot_id": i.bot_id,
            "is_enterprise_install": False,
        }

    def _post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        message = self._bot_message(self.store.next_ts(), self._content(args))
        if args.get("thread_ts"):
            message["thread_ts"] = str(args["thread_ts"])
        self.store.put_message(channel, message)
        return {"channel": channel, "ts": message["ts"], "message": message}

    def _post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        if not args.get("user"):
            raise ApiError("invalid_arguments", response_metadata={"messages": ["missing user"]})
        message = self._bot_message(self.store.next_ts(), self._content(args))
        with self.store.cond:  # ephemeral messages can't be updated or reacted to
            self.store.ephemeral.append({**message, "channel": channel, "to": args["user"]})
        return {"message_ts": message["ts"]}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = self._channel(args), str(args.get("ts") or "")
        content, edit_ts = self._content(args), self.store.next_ts()
        with self.store.cond:
            message = self.store.messages.get((channel, ts))
            if message is None:
                raise ApiError("message_not_found")
            if message.get("user") != self.ident.bot_user_id:
                raise ApiError("cant_update_message")
            message.pop("blocks", None)
            message.pop("attachments", None)
            message.update(content, edited={"user": self.ident.bot_user_id, "ts": edit_ts})
            snapshot = dict(message)
        return {"channel": channel, "ts": ts, "text": snapshot["text"], "message": snapshot}

    def _reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel") or not args.get("timestamp"):
            raise ApiError("no_item_specified")
        channel, ts, name = self._channel(args), str(args["timestamp"]), str(args.get("name") or "")
        if not _EMOJI_NAME.fullmatch(name):
            raise ApiError("invalid_name")
        with self.store.cond:
            if (channel, ts) not in self.store.messages:
                raise ApiError("message_not_found")
            if (channel, ts, name) in self.store.reactions:
                raise ApiError("already_reacted")
            self.store.reactions.add((channel, ts, name))
        return {}

    def _reactions_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel") or not args.get("timestamp"):
            raise ApiError("no_item_specified")
        channel, ts, name = self._channel(args), str(args["timestamp"]), str(args.get("name") or "")
        with self.store.cond:
            if (channel, ts) not in self.store.messages:
                raise ApiError("message_not_found")
            if (channel, ts, name) not in self.store.reactions:
                raise ApiError("no_reaction")
            self.store.reactions.discard((channel, ts, name))
        return {}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("user"):
            raise ApiError("invalid_arguments", response_metadata={"messages": ["missing user"]})
        with self.store.cond:
            user = self.store.users.get(str(args["user"]))
        if user is None:
            raise ApiError("user_not_found")
        return {"user": json.loads(json.dumps(user))}  # deep copy: callers may mutate

    def _get_upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        filename, length = args.get("filename"), str(args.get("length") or "")
        if not filename or not length.isdigit() or int(length) == 0:
            raise ApiError("invalid_arguments")
        file = UploadedFile("F" + uuid.uuid4().hex[:10].upper(), str(filename), int(length))
        with self.store.cond:
            self.store.files[file.id] = file
        return {"upload_url": f"{self.base}/upload/v1/{file.id}", "file_id": file.id}

    def _complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        items = _json_field(args, "files", "invalid_arguments")
        if not isinstance(items, list) or not items or not all(isinstance(f, dict) for f in items):
            raise ApiError("invalid_arguments")
        channels = [self._channel(args, "channel_id")] if args.get("channel_id") else []
        if args.get("channels"):
            channels += [self._channel({"c": c}, "c") for c in str(args["channels"]).split(",")]
        now, out = int(time.time()), []
        with self.store.cond:
            files = [self.store.files.get(str(item.get("id"))) for item in items]
            if any(f is None or f.content is None or f.completed for f in files):
                raise ApiError("file_not_found")
            for file, item in zip(files, items, strict=True):
                assert file is not None
                file.completed, file.title = True, item.get("title") or file.filename
                out.append(
                    {
                        "id": file.id,
                        "created": now,
                        "timestamp": now,
                        "name": file.filename,
                        "title": file.title,
                        "user": self.ident.bot_user_id,
                        "size": len(file.content or b""),
                        "channels": channels,
                    }
                )
        comment = str(args.get("initial_comment") or "")
        for channel in channels:  # sharing posts a message carrying the files
            message = self._bot_message(self.store.next_ts(), {"text": comment, "files": out})
            if args.get("thread_ts"):
                message["thread_ts"] = str(args["thread_ts"])
            self.store.put_message(channel, message)
        return {"files": out}

    # -- HTTP plumbing -----------------------------------------------------------------------

    def handle_http(self, req: _RequestHandler) -> None:
        received = time.monotonic()
        parts = urlsplit(req.path)
        body = req.rfile.read(int(req.headers.get("Content-Length") or 0))
        if parts.path.startswith("/api/"):
            method = parts.path[len("/api/") :]
            ctype = req.headers.get("Content-Type") or ""
            try:
                args = _parse_body(ctype, body)
            except ValueError:
                return req.reply(200, {"ok": False, "error": "invalid_json"})
            args = {**dict(parse_qsl(parts.query, keep_blank_values=True)), **args}
            auth = req.headers.get("Authorization") or ""
            token = auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else None
            # Like Slack: a token may ride in a form body or query, but JSON needs the header.
            body_token = args.pop("token", None)
            if token is None and "json" not in ctype:
                token = body_token
            status, reply, headers = self.call(method, args, token)
            self.store.record(Call(method, args, token, received, status, reply))
            return req.reply(status, reply, headers)
        if parts.path.startswith("/upload/v1/"):
            with self.store.cond:
                file = self.store.files.get(parts.path.rsplit("/", 1)[1])
                if file is not None and not file.completed:
                    file.content = body
            if file is None or file.completed:
                return req.reply(404, b"Not Found")
            self.store.record(Call(UPLOAD, {"file_id": file.id, "size": len(body)}, None, received))
            return req.reply(200, f"OK - {len(body)}".encode())
        if parts.path.startswith("/actions/"):
            try:
                args = _parse_body(req.headers.get("Content-Type") or "", body)
            except ValueError:
                return req.reply(400, b"invalid_payload")
            args["_path"] = parts.path
            self.store.record(Call(RESPONSE_URL, args, None, received, 200, {"ok": True}))
            return req.reply(200, {"ok": True})
        return req.reply(404, b"Not Found")


def _parse_body(content_type: str, body: bytes) -> dict[str, Any]:
    """Slack accepts JSON, urlencoded and multipart bodies; slack_sdk uses all three."""
    if not body:
        return {}
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "application/json":
        parsed = json.loads(body)
        if not isinstance(parsed, dict):
            raise ValueError("JSON body must be an object")
        return parsed
    if ctype == "multipart/form-data":
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        out: dict[str, Any] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            data = part.get_payload(decode=True) or b""
            out[str(name)] = data if part.get_filename() else data.decode()
        return out
    return dict(parse_qsl(body.decode(), keep_blank_values=True))


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for clients that want it (aiohttp)
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms stalls
    server: WebServer

    def do_POST(self) -> None:
        self.server.api.handle_http(self)

    do_GET = do_POST

    def reply(self, status: int, body: dict | bytes, headers: dict[str, str] | None = None) -> None:
        is_json = isinstance(body, dict)
        data = json.dumps(body).encode() if is_json else body
        self.send_response(status)
        ctype = "application/json; charset=utf-8" if is_json else "text/plain; charset=utf-8"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Slack-Req-Id", uuid.uuid4().hex)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # the base class's signature
        pass  # tests read fake.calls instead of stderr noise


class WebServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api: WebApi) -> None:
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.api = api
        api.base = f"http://127.0.0.1:{self.server_port}"
