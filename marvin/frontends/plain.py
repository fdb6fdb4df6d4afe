"""Slack markup shown plainly on a terminal: ``*bold*`` -> bold, ``_(ref)_`` -> (ref),
``~struck~`` -> struck, ``<@U123>`` -> @U123, ``<url|label>`` -> label (url). Code spans
(`` `...` ``) are left exactly as they are."""

from __future__ import annotations

import re

__all__ = ["plain"]

_CODE = re.compile(r"(```.*?```|`[^`\n]*`)", re.S)
# As Slack reads them: a marker opens after a space or an opening bracket and closes before a
# space or punctuation, so globs (prod*|live*) and snake_case names are left alone.
_EMPHASIS = [
    re.compile(rf"(?<![^\s(\[]){m}(?=\S)([^{m}\n]+?)(?<=\S){m}(?=[\s.,:;!?)\]]|$)")
    for m in (r"\*", "_", "~")
]
_LINK = re.compile(r"<([^<>|\s]+)(?:\|([^<>]+))?>")


def _link(m: re.Match[str]) -> str:
    target, label = m.group(1), m.group(2)
    if target[:1] in "@#!":
        return label or target
    return f"{label} ({target})" if label and label != target else target


def plain(text: str) -> str:
    parts = _CODE.split(text)
    for i in range(0, len(parts), 2):  # even parts are outside code spans
        part = _LINK.sub(_link, parts[i])
        for pattern in _EMPHASIS:
            part = pattern.sub(r"\1", part)
        parts[i] = part.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return "".join(parts)
