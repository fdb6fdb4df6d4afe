"""Values in Consul's KV store as people see them, and the one way Marvin changes a key:
read, compare, compare-and-set, report old -> new, record how to undo it.

Shown values: text in code spans (a long or multi-line one as a block, which the front end
splits or attaches as a file), binary as its size and SHA-256, and a secret key only as "set,
N bytes". Undo states are the raw bytes in base64 (None: the key did not exist); secret values
are never kept, so changes to secret keys are not undoable.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from marvin.actions.consul import ConsulError, ConsulKV, Entry

__all__ = ["show", "Change", "Conflict", "change", "restore", "encode", "decode", "digest"]

INLINE_CHARS = 120  # longer or multi-line text is shown as a block


def is_binary(value: bytes) -> bool:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return any(ord(c) < 32 and c not in "\n\r\t" for c in text)


def show(value: bytes | None, *, secret: bool = False, block: bool = True) -> str:
    """How a value appears in chat. ``block``: a long text may take several lines."""
    if value is None:
        return "(not set)"
    if secret:
        return f"(secret, set, {len(value):,} bytes)"
    if not value:
        return "(empty)"
    if is_binary(value):
        digest = hashlib.sha256(value).hexdigest()
        return f"(binary, {len(value):,} bytes, sha256 {digest})"
    text = value.decode("utf-8")
    if len(text) <= INLINE_CHARS and "\n" not in text and "`" not in text:
        return f"`{text}`"
    if not block:
        return f"({len(value):,} bytes of text, starting `{text[:40].splitlines()[0]}`…)"
    return f"({len(value):,} bytes)\n```\n{text.replace('```', 'ˋˋˋ')}\n```"


def digest(value: bytes | None) -> str | None:
    """What a plan remembers of a value (compare-and-set on apply), never the value itself."""
    return None if value is None else hashlib.sha256(value).hexdigest()


def encode(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def decode(state: str | None) -> bytes | None:
    return None if state is None else base64.b64decode(state)


class Conflict(ConsulError):
    """Someone else wrote the key between Marvin's read and write."""


@dataclass(frozen=True)
class Change:
    key: str
    before: bytes | None
    after: bytes | None
    changed: bool  # False: the key already held the value; nothing was written

    def report(self, name: str, *, secret: bool) -> str:
        if secret:
            was = "was set" if self.before is not None else "was not set"
            return f"`{name}` is now set ({len(self.after or b''):,} bytes; it {was})."
        if not self.changed:
            return f"`{name}` is already {show(self.after)}; nothing changed."
        return f"`{name}`: {show(self.before, block=False)} → {show(self.after)}"


def change(
    kv: ConsulKV,
    key: str,
    new: bytes | None,
    *,
    name: str,
    secret: bool = False,
    expect: bytes | None | Any = ...,
) -> Change:
    """Set ``key`` to ``new`` (None: delete it) with compare-and-set on the ModifyIndex read
    just before. ``expect``: refuse unless the value read is exactly that (for undo). A
    conflict raises ``Conflict`` showing both values (only sizes for a secret)."""
    entry: Entry | None = kv.get(key)
    current = None if entry is None else entry.value
    if expect is not ... and current != expect:
        raise Conflict(
            f"`{name}` is no longer what that command left: it left "
            f"{show(expect, secret=secret, block=False)}, and it is now "
            f"{show(current, secret=secret, block=False)}. Nothing was written."
        )
    if current == new:
        return Change(key, current, new, changed=False)
    if new is None:
        ok = entry is None or kv.delete_cas(key, entry.index)
    else:
        ok = kv.put_cas(key, new, 0 if entry is None else entry.index)
    if not ok:
        now = kv.get(key)
        raise Conflict(
            f"`{name}` changed while I was writing it: I read "
            f"{show(current, secret=secret, block=False)}, and someone has since written "
            f"{show(None if now is None else now.value, secret=secret, block=False)}. "
            f"I did not overwrite it with {show(new, secret=secret, block=False)}; check "
            "and try again."
        )
    return Change(key, current, new, changed=True)


def restore(kv: ConsulKV, record: Any, *, name: str) -> Change:
    """Undo one recorded change: back to ``before`` only if the key still holds ``after``."""
    return change(
        kv,
        record.target["key"],
        decode(record.before),
        name=name,
        expect=decode(record.after),
    )
