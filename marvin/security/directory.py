"""Directory-group lookup: which groups is the person behind an email in?

Two backends share the ``Directory`` protocol:

* ``StaticDirectory`` — a YAML file (small teams, tests).
* ``LdapDirectory`` (``marvin.security.ldap``) — OpenLDAP / Active Directory over ldap3.

Contract for callers (authorization code):

* ``groups_for(email)`` returns a frozenset of lowercase group common names,
  including groups inherited through nesting.
* An unknown email raises ``UserNotInDirectory`` (we raise rather than return an
  empty set so "not in the directory" can never be confused with "in no groups").
* Anything that stops the directory from answering raises ``DirectoryUnavailable``;
  callers must refuse ("I can't check your groups right now"), never fall back to
  an empty/permissive answer.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any, Protocol

import structlog
import yaml

log = structlog.get_logger(__name__)


class DirectoryError(Exception):
    """Base class for directory problems."""


class DirectoryUnavailable(DirectoryError):
    """The directory could not answer (down, timeout, bind failure, bad reply)."""


class UserNotInDirectory(DirectoryError, LookupError):
    """No directory entry matches the email (or more than one does)."""


class DirectoryConfigError(DirectoryError, ValueError):
    """A directory configuration/data file is invalid; the message names file and key."""


class Directory(Protocol):
    def known_groups(self) -> frozenset[str]:
        """Every group name the directory has (lower case), for ``marvin check`` to find
        policy groups that exist nowhere; may raise when the directory can't be read."""

    def groups_for(self, email: str, *, fresh: bool = False) -> frozenset[str]:
        """``fresh``: ask the directory itself, past any cache (sensitive checks)."""


def _norm_email(email: str) -> str:
    return email.strip().lower()


# --------------------------------------------------------------------------- static


class StaticDirectory:
    """Groups from a YAML file; ``groups:`` optionally nests groups (cycle-safe)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._users, self._parents = self._load()

    def _err(self, key: str, problem: str) -> DirectoryConfigError:
        return DirectoryConfigError(f"{self.path}: {key}: {problem}")

    def _names(self, value: Any, key: str) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self._err(key, "must be a list of non-empty strings")
        return [v.strip().lower() for v in value]

    def _mapping(self, value: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self._err(key, "must be a mapping")
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
            raise self._err(key, f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")
        return value

    def _load(self) -> tuple[dict[str, frozenset[str]], dict[str, set[str]]]:
        try:
            doc = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise DirectoryConfigError(f"{self.path}: cannot read: {exc}") from exc
        except yaml.YAMLError as exc:
            raise DirectoryConfigError(f"{self.path}: invalid YAML: {exc}") from exc
        doc = self._mapping(doc, "(top level)", {"users", "groups"})
        if "users" not in doc:
            raise self._err("users", "missing")
        users: dict[str, frozenset[str]] = {}
        raw_users = doc["users"]
        if not isinstance(raw_users, dict):
            raise self._err("users", "must be a mapping of email -> {groups: [...]}")
        for email, entry in raw_users.items():
            key = f"users.{email}"
            if not isinstance(email, str) or "@" not in email:
                raise self._err(key, "must be an email address")
            norm = _norm_email(email)
            if norm in users:
                raise self._err(key, "duplicate user (emails are case-insensitive)")
            entry = self._mapping(entry, key, {"groups"})
            users[norm] = frozenset(self._names(entry.get("groups"), f"{key}.groups"))
        # child group -> parent groups, i.e. the inverse of `members`.
        parents: dict[str, set[str]] = {}
        raw_groups = doc.get("groups")
        if raw_groups is not None and not isinstance(raw_groups, dict):
            raise self._err("groups", "must be a mapping of group -> {members: [...]}")
        for group, entry in (raw_groups or {}).items():
            key = f"groups.{group}"
            if not isinstance(group, str) or not group.strip():
                raise self._err(key, "group name must be a non-empty string")
            entry = self._mapping(entry, key, {"members"})
            for member in self._names(entry.get("members"), f"{key}.members"):
                parents.setdefault(member, set()).add(group.strip().lower())
        return users, parents

    def known_groups(self) -> frozenset[str]:
        names = {g for groups in self._users.values() for g in groups}
        for child, parents in self._parents.items():
            names |= parents | {child}
        return frozenset(names)

    def groups_for(self, email: str, *, fresh: bool = False) -> frozenset[str]:
        direct = self._users.get(_norm_email(email))
        if direct is None:
            raise UserNotInDirectory(email)
        seen = set(direct)
        queue = deque(direct)
        while queue:  # BFS over parents; `seen` makes cycles harmless
            for parent in self._parents.get(queue.popleft(), ()):
                if parent not in seen:
                    seen.add(parent)
                    queue.append(parent)
        return frozenset(seen)


__all__ = [
    "Directory",
    "DirectoryConfigError",
    "DirectoryError",
    "DirectoryUnavailable",
    "StaticDirectory",
    "UserNotInDirectory",
]
