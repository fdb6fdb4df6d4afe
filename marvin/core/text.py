"""Splitting long replies into message-sized pieces without losing a character (used by help's
Block Kit sections and the Slack front end)."""

from __future__ import annotations

__all__ = ["split_text", "summary", "age_text", "excerpt"]

_FENCE = "```"


def split_text(text: str, limit: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` characters, at line boundaries where
    possible (a longer line is cut at its last space, else hard). A piece that ends inside a
    ``` block closes it and the next reopens it, so code stays formatted."""
    if len(text) <= limit:
        return [text]
    room = limit - 2 * (len(_FENCE) + 1)  # space for a closing and a reopening fence
    pieces: list[str] = []
    cur: list[str] = []
    size = 0
    open_at_start = False  # the piece being built continues a ``` block
    for line in _lines(text, room):
        extra = len(line) + (1 if cur else 0)
        if cur and size + extra > room:
            pieces.append(_piece(cur, open_at_start, close=True))
            open_at_start = _open_after(cur, open_at_start)
            cur, size, extra = [], 0, len(line)
        cur.append(line)
        size += extra
    if cur:
        pieces.append(_piece(cur, open_at_start, close=False))
    return [p for p in pieces if p.strip()] or [text[:limit]]


def _lines(text: str, room: int) -> list[str]:
    out: list[str] = []
    for line in text.split("\n"):
        while len(line) > room:
            cut = line.rfind(" ", room // 2, room)
            cut = cut + 1 if cut > 0 else room  # keep the space on the first part
            out.append(line[:cut])
            line = line[cut:]
        out.append(line)
    return out


def _open_after(lines: list[str], was_open: bool) -> bool:
    count = sum(line.count(_FENCE) for line in lines)
    return was_open ^ (count % 2 == 1)


def _piece(lines: list[str], open_at_start: bool, *, close: bool) -> str:
    head = [_FENCE] if open_at_start else []
    tail = [_FENCE] if close and _open_after(lines, open_at_start) else []
    return "\n".join(head + lines + tail)


def summary(text: str, width: int = 300) -> str:
    """First and last line of a long text, for the comment on an attached file."""
    lines = [line for line in text.strip().split("\n") if line.strip()]
    if not lines:
        return ""
    head, tail = lines[0][:width], lines[-1][:width]
    return head if len(lines) == 1 else f"{head}\n…\n{tail}"


def age_text(seconds: float) -> str:
    """A short age for people: ``42 s``, ``7 min``, ``2.5 h``."""
    seconds = max(0, int(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def excerpt(text: str, limit: int = 80) -> str:
    """Unrecognised text as quoted back: one line, at most ``limit`` characters, visibly cut
    (a 100 KB message must not come back as 29 replies)."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    return f"{line[: limit - 1].rstrip()}… ({len(text):,} characters)"
