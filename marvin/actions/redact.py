"""Mask secrets in text Marvin shows from other systems (a Jenkins console, a task's log):
known values first, then what commonly looks like a credential."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["mask", "looks_secret"]

MASK = "****"
_SECRET_NAME = re.compile(r"(?i)pass|secret|token|api[_-]?key|access[_-]?key|credential|private")
_PATTERNS = [
    # NAME=value or NAME: value where NAME says it is a secret
    re.compile(
        r"(?i)\b([\w.-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key)[\w.-]*)"
        r"(\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|\S+)"
    ),
    re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=-]{8,})"),  # Authorization headers
    re.compile(r"(://)([^/\s:@]+:)([^/\s@]+)(?=@)"),  # https://user:pass@host
]
_AWS_KEY = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")


def looks_secret(name: str) -> bool:
    """Whether a parameter or variable name suggests a secret value."""
    return bool(_SECRET_NAME.search(name))


def mask(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every known secret value and every credential-looking value masked."""
    for value in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(value, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
    return _AWS_KEY.sub(MASK, text)
