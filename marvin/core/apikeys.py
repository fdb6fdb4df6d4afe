"""API keys: the HTTP API's identities. Each key belongs to a directory identity (an email);
a request made with it is worth what its owner may do today, never more.

A key reads ``mrv_<id>_<secret>``. The id is public (listings, the audit trail, ``api:<id>``
as the user id); only a hash of the secret is stored, and the whole key is shown once, when
it is created. The runtime implements ``KeyRing`` over the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["ApiKey", "KeyRing", "KeyRefused", "KeyProblem", "parse_key", "PREFIX", "user_id"]

PREFIX = "mrv_"
_KEY = re.compile(r"^mrv_([0-9a-f]{12})_([A-Za-z0-9_-]{32,128})$")

KeyProblem = Literal["missing", "malformed", "unknown", "expired", "revoked"]

_TEXT: dict[str, str] = {
    "missing": "An API key is required: send it as `Authorization: Bearer <key>`.",
    "malformed": "That is not a Marvin API key (they look like mrv_<id>_<secret>).",
    "unknown": "Unknown API key.",
    "expired": "This API key has expired; ask for a new one (`marvin keys create`).",
    "revoked": "This API key was revoked.",
}


class KeyRefused(Exception):
    """The key does not authenticate anyone. ``problem`` is for the log and the metrics;
    ``str(exc)`` is what the client is told (never the key itself)."""

    def __init__(self, problem: KeyProblem, key_id: str | None = None) -> None:
        super().__init__(_TEXT[problem])
        self.problem = problem
        self.key_id = key_id


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    owner: str  # the directory identity (email) the key acts for
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used: float | None = None

    def state(self, now: float) -> Literal["active", "expired", "revoked"]:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"


def parse_key(token: str) -> tuple[str, str]:
    """(id, secret) of a presented key; ``KeyRefused("malformed")`` otherwise."""
    m = _KEY.match(token.strip())
    if m is None:
        raise KeyRefused("malformed")
    return m.group(1), m.group(2)


def user_id(key_id: str) -> str:
    """The user id requests made with a key carry (audit rows, executions)."""
    return f"api:{key_id}"


class KeyRing(Protocol):
    def create(self, owner: str, name: str, expires_at: float | None = None) -> tuple[ApiKey, str]:
        """A new key for ``owner``; returns it and the full key text (shown once)."""

    def list(self) -> list[ApiKey]: ...

    def get(self, key_id: str) -> ApiKey | None: ...

    def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke now; the key as it was (None: no such key)."""

    def verify(self, token: str) -> ApiKey:
        """The active key ``token`` presents (recording its use), or raise ``KeyRefused``."""

    def check(self, key_id: str) -> ApiKey:
        """The key by id if it is still active (revoked or expired since: ``KeyRefused``)."""
