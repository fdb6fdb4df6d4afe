"""``marvin keys create|list|revoke``: API keys, from the host Marvin runs on.

Whoever can run ``marvin`` here can already act as anyone (``marvin run --as``), so creating
keys takes no more than that. The owner must be in the directory now; the key then acts with
the owner's groups as they are at each request. The key is printed once, alone on stdout
(``KEY=$(marvin keys create --owner ...)``); only a hash of it is stored. Creating and
revoking are audited.
"""

from __future__ import annotations

import argparse
import re
import sys
import time

from marvin.config import Config
from marvin.core.apikeys import ApiKey
from marvin.core.authz import Refused
from marvin.core.facade import Operations
from marvin.core.model import Message

__all__ = ["add_parser", "run_keys", "parse_expiry"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_EXPIRY = re.compile(r"^(\d{1,6})([smhdw])$")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    keys = sub.add_parser("keys", help="API keys: create, list, revoke")
    ks = keys.add_subparsers(dest="keys_cmd", required=True)
    create = ks.add_parser("create", help="a new key for a directory identity (shown once)")
    create.add_argument("--owner", required=True, help="the email the key acts for")
    create.add_argument("--name", default="default", help="what the key is for, e.g. ci")
    create.add_argument("--expires", help="e.g. 90d, 12h, 2w (default: never)")
    ks.add_parser("list", help="every key: owner, expiry, last use, state")
    revoke = ks.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")


def parse_expiry(text: str | None, now: float) -> float | None:
    if text is None or text == "never":
        return None
    m = _EXPIRY.match(text.strip().lower())
    if m is None or int(m.group(1)) == 0:
        raise ValueError(f"--expires: expected a duration such as 90d, 12h or 2w, got {text!r}")
    return now + int(m.group(1)) * _UNITS[m.group(2)]


def run_keys(config: Config, args: argparse.Namespace) -> int:
    from marvin.bootstrap import build_app
    from marvin.frontends.console import ConsoleResponder
    from marvin.runtime.app import local_user

    app = build_app(config)
    operator = local_user(config.get("shell.user"), source="cli")
    msg = Message(f"keys {args.keys_cmd}", operator, ConsoleResponder(sys.stderr))
    try:
        if args.keys_cmd == "create":
            return _create(app, msg, args)
        if args.keys_cmd == "list":
            return _list(app)
        return _revoke(app, msg, args.key_id)
    finally:
        app.shutdown(timeout=5)


def _create(app: Operations, msg: Message, args: argparse.Namespace) -> int:
    try:
        expires = parse_expiry(args.expires, time.time())
    except ValueError as exc:
        return _fail(str(exc))
    owner = args.owner.strip().lower()
    from marvin.runtime.app import local_user

    try:
        app.identify(local_user(owner, source="cli"))  # in the directory now?
    except Refused as exc:
        return _fail(f"{owner}: {exc}")
    try:
        key, secret = app.keys.create(owner, args.name, expires)
    except ValueError as exc:
        return _fail(str(exc))
    app.audit("api_key_created", msg, None, detail=f"key {key.id} ({key.name}) for {owner}")
    until = _when(expires) if expires else "never"
    print(
        f"Created API key {key.id} ({key.name}) for {owner}; expires: {until}.\n"
        "It is shown only now: store it as a secret. Send it as `Authorization: Bearer <key>`.",
        file=sys.stderr,
    )
    print(secret, flush=True)
    return 0


def _list(app: Operations) -> int:
    now = time.time()
    rows: list[tuple[str, ...]] = [
        ("ID", "NAME", "OWNER", "CREATED", "EXPIRES", "LAST USED", "STATE")
    ]
    for key in app.keys.list():
        rows.append(_row(key, now))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _row(key: ApiKey, now: float) -> tuple[str, ...]:
    return (
        key.id,
        key.name,
        key.owner,
        _when(key.created_at),
        _when(key.expires_at) if key.expires_at else "never",
        _when(key.last_used) if key.last_used else "-",
        key.state(now),
    )


def _revoke(app: Operations, msg: Message, key_id: str) -> int:
    key = app.keys.revoke(key_id.strip().lower())
    if key is None:
        return _fail(f"no API key {key_id!r}; see `marvin keys list`")
    if key.revoked_at is not None:
        print(f"Key {key.id} ({key.name}, {key.owner}) was already revoked.")
        return 0
    app.audit("api_key_revoked", msg, None, detail=f"key {key.id} ({key.name}) of {key.owner}")
    print(f"Revoked key {key.id} ({key.name}, {key.owner}); it is refused from now on.")
    return 0


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts)) if ts else "-"


def _fail(text: str) -> int:
    print(f"marvin: {text}", file=sys.stderr)
    return 2
