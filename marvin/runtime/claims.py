"""First-come claims and open confirmations, in the store so every process sees them.

* **Claims** (Slack's redeliveries): ``claim(keys, ttl)`` records an event's keys (event id,
  channel and ts, an interaction id) and is True only for the first process to record them;
  a redelivery that lands on another replica, or on this one after a restart, is False.
  ``claim_many`` writes the claims of many events in one statement (the Slack front end
  claims a burst together), keys in sorted order, so two replicas racing for one message
  never both lose.
* **Confirmations**: the question, its requester and what to run on Confirm. A press may
  arrive at any replica; ``answer`` claims the question once. What to run (it may hold secret
  parameter values) is cleared as soon as the question is answered or expires.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from marvin.runtime.sql import Database

__all__ = ["Shared"]


_CHUNK = 400  # keys per statement: 4 bound values each, well under SQLite's limit


class Shared:
    """The store's claims and confirmations, as ``marvin.core.facade.SharedState``."""

    def __init__(self, db: Database, replica: str) -> None:
        self.db, self.replica = db, replica

    # -- claims ----------------------------------------------------------------------------------

    def claim(self, keys: Iterable[str], ttl: float) -> bool:
        """Claim every key for ``ttl`` seconds; True if none was claimed (and unexpired)."""
        return self.claim_many([keys], ttl)[0]

    def claim_many(self, batch: Sequence[Iterable[str]], ttl: float) -> list[bool]:
        """``claim`` for several callers at once, in one statement per 400 keys: for each,
        True if all its keys were fresh. A key asked for twice in one batch (one message
        under two event ids) goes to the first asker, as it would one statement later."""
        wanted = [sorted(set(keys)) for keys in batch]
        first: dict[str, int] = {}
        for n, keys in enumerate(wanted):
            for key in keys:
                first.setdefault(key, n)
        todo = sorted(first)
        now = time.time()
        taken: set[str] = set()
        with self.db.transaction() as tx:  # all or nothing: a failed batch claims no key
            for i in range(0, len(todo), _CHUNK):
                chunk = todo[i : i + _CHUNK]
                args: list[Any] = []
                for key in chunk:
                    args += [key, self.replica, now, now + ttl]
                rows = tx.rows(
                    "INSERT INTO claims (key, replica, created_at, expires_at) VALUES "
                    + ",".join(["(?,?,?,?)"] * len(chunk))
                    + " ON CONFLICT (key) DO UPDATE SET replica = excluded.replica,"
                    " created_at = excluded.created_at, expires_at = excluded.expires_at"
                    " WHERE claims.expires_at < ? RETURNING key",
                    [*args, now],
                )
                taken.update(r["key"] for r in rows)
        return [all(first[k] == n and k in taken for k in keys) for n, keys in enumerate(wanted)]

    def purge(self) -> int:
        """Forget expired claims and long-closed confirmations."""
        now = time.time()
        n = self.db.execute("DELETE FROM claims WHERE expires_at < ?", (now,))
        n += self.db.execute(
            "DELETE FROM confirmations WHERE expires_at < ? AND state != 'pending'",
            (now - 86400,),
        )
        return n

    # -- confirmations ---------------------------------------------------------------------------

    def ask(
        self,
        token: str,
        *,
        requester: str,
        prompt: str,
        request: Mapping[str, Any] | None,
        channel: str | None,
        thread_ts: str | None,
        expires_at: float,
    ) -> None:
        self.db.execute(
            "INSERT INTO confirmations (token, requester, prompt, request, channel, thread_ts,"
            " replica, state, created_at, expires_at) VALUES (?,?,?,?,?,?,?,'pending',?,?)",
            (
                token,
                requester,
                prompt,
                None if request is None else json.dumps(dict(request), default=str),
                channel,
                thread_ts,
                self.replica,
                time.time(),
                expires_at,
            ),
        )

    def posted(self, token: str, channel: str, ts: str) -> None:
        """Where the question's message is (so any replica can close it)."""
        self.db.execute(
            "UPDATE confirmations SET channel = ?, ts = ? WHERE token = ?", (channel, ts, token)
        )

    def waiting(self, requester: str) -> int:
        row = self.db.one(
            "SELECT COUNT(*) AS n FROM confirmations WHERE requester = ? AND state = 'pending'"
            " AND expires_at >= ?",
            (requester, time.time()),
        )
        return int(row["n"]) if row else 0

    def answer(self, token: str, presser: str) -> tuple[str, dict[str, Any] | None]:
        """Claim the question for ``presser``: ("answered", row) for the one press that
        counts; otherwise ("unknown" | "expired" | "closed" | "not_yours", row)."""
        row = self.db.one("SELECT * FROM confirmations WHERE token = ?", (token,))
        if row is None:
            return "unknown", None
        row["request"] = json.loads(row["request"]) if row["request"] else None
        if row["state"] != "pending":
            return ("expired" if row["state"] == "expired" else "closed"), row
        if row["expires_at"] < time.time():
            self.close(token, "expired")
            return "expired", row
        if presser != row["requester"]:
            return "not_yours", row
        if not self.db.execute(
            "UPDATE confirmations SET state = 'answered', answered_by = ?, request = NULL"
            " WHERE token = ? AND state = 'pending'",
            (presser, token),
        ):
            return "closed", row  # another replica took the same press first
        return "answered", row

    def close(self, token: str, state: str = "expired") -> bool:
        """Close a pending question (expiry, a failed post); False if it was answered."""
        return (
            self.db.execute(
                "UPDATE confirmations SET state = ?, request = NULL WHERE token = ?"
                " AND state = 'pending'",
                (state, token),
            )
            > 0
        )
