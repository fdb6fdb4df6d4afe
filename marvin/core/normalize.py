"""Turn what Slack clients send into the text a user meant to type."""

from __future__ import annotations

import re

# [^>|<]: an unclosed "<http:" can't make the scan quadratic on a 40,000-character message.
_LINK = re.compile(r"<((?:https?|mailto|ftp):[^>|<]*)(?:\|([^>]*))?>")
_LEADING_MENTION = re.compile(r"^\s*<@[UWB][A-Z0-9]+(?:\|[^>]*)?>[:,]?\s*")
_QUOTES = str.maketrans(
    {
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u00a0": " ",
        "\u202f": " ",
        "\u2007": " ",
    }
)


def _link(m: re.Match[str]) -> str:
    target = m.group(1)
    if target.startswith("mailto:"):
        return target[len("mailto:") :]
    return target


def normalize(text: str, *, strip_mention: bool = True) -> str:
    """Normalise a Slack message for matching.

    Links lose Slack's angle brackets and labels (the label may be shortened or edited, the URL
    is what was meant), a leading bot mention goes, smart quotes and non-breaking spaces become
    plain ones, HTML entities are unescaped (``&amp;`` last, so ``&amp;lt;`` stays ``&lt;``),
    and a command wrapped in backticks is unwrapped.
    """
    if strip_mention:
        text = _LEADING_MENTION.sub("", text, count=1)
    text = _LINK.sub(_link, text)
    text = text.translate(_QUOTES)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    text = text.strip()
    for fence in ("```", "`"):
        inner = text[len(fence) : -len(fence)]
        if len(text) > 2 * len(fence) and text.startswith(fence) and text.endswith(fence):
            if fence not in inner:  # "`help` or `whoami`" is two spans, not one wrapped command
                text = inner.strip()
            break
    return text
