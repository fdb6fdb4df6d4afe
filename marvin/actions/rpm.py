"""RPM versions: parsing ``[epoch:]version-release`` and ordering them as rpm does.

``rpmvercmp`` follows rpm's own algorithm (lib/rpmvercmp.c): the strings are cut into runs of
digits and runs of letters, everything else only separates; digits compare as numbers and beat
letters; ``~`` sorts before anything (even the end: ``1.0~rc1 < 1.0``) and ``^`` after the end
but before anything else (``1.0 < 1.0^git1 < 1.0.1``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

__all__ = ["EVR", "rpmvercmp", "parse_evr"]

_SEGMENT = re.compile(r"[0-9]+|[A-Za-z]+")
_EVR = re.compile(r"^(?:([0-9]+):)?([A-Za-z0-9._+~^]+)-([A-Za-z0-9._+~^]+)$")


def _alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def rpmvercmp(a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` is older than, the same as, or newer than ``b``."""
    if a == b:
        return 0
    i = j = 0
    while i < len(a) or j < len(b):
        while i < len(a) and not _alnum(a[i]) and a[i] not in "~^":
            i += 1
        while j < len(b) and not _alnum(b[j]) and b[j] not in "~^":
            j += 1
        ca, cb = a[i : i + 1], b[j : j + 1]  # "" at the end
        if ca == "~" or cb == "~":  # a tilde sorts before everything, even the end
            if ca != "~":
                return 1
            if cb != "~":
                return -1
            i, j = i + 1, j + 1
            continue
        if ca == "^" or cb == "^":  # a caret sorts after the end, before anything else
            if not ca:
                return -1
            if not cb:
                return 1
            if ca != "^":
                return 1
            if cb != "^":
                return -1
            i, j = i + 1, j + 1
            continue
        if not (ca and cb):
            break
        sa = _SEGMENT.match(a, i)
        sb = _SEGMENT.match(b, j)
        assert sa is not None  # ca is alphanumeric here
        numeric = ca.isdigit()
        seg_a = sa.group()
        seg_b = sb.group() if sb is not None and sb.group()[0].isdigit() == numeric else ""
        if not seg_b:  # segments of different kinds: a number is newer than letters
            return 1 if numeric else -1
        i, j = sa.end(), j + len(seg_b)
        if numeric:
            seg_a, seg_b = seg_a.lstrip("0"), seg_b.lstrip("0")
            if len(seg_a) != len(seg_b):
                return 1 if len(seg_a) > len(seg_b) else -1
        if seg_a != seg_b:
            return 1 if seg_a > seg_b else -1
    if i >= len(a) and j >= len(b):
        return 0
    return -1 if i >= len(a) else 1


@total_ordering
@dataclass(frozen=True)
class EVR:
    """Epoch, version, release; ordered like rpm orders packages of one name."""

    epoch: int
    version: str
    release: str

    def __str__(self) -> str:
        base = f"{self.version}-{self.release}"
        return f"{self.epoch}:{base}" if self.epoch else base

    def _cmp(self, other: EVR) -> int:
        if self.epoch != other.epoch:
            return 1 if self.epoch > other.epoch else -1
        return rpmvercmp(self.version, other.version) or rpmvercmp(self.release, other.release)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, EVR):
            return NotImplemented
        return self._cmp(other) < 0


def parse_evr(text: str) -> EVR:
    """``1.4.1-1.el9`` or ``2:1.4.1-1.el9``; a missing epoch is 0, as rpm reads it. The
    release is the part after the last dash (a version has none)."""
    m = _EVR.match(text.strip())
    if m is None:
        raise ValueError(
            f"{text!r} is not an RPM version-release such as 1.4.1-1.el9 (or 2:1.4.1-1.el9)"
        )
    epoch, version, release = m.groups()
    return EVR(int(epoch or 0), version, release)
