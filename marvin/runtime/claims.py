"""First-come claims and open confirmations, in the store so every process sees them.

* **Claims** (Slack's redeliveries): ``claim(keys, ttl)`` records an event's keys (event id,
  channel and ts, an interaction id) and is True only for the first process to record them;
  a redelivery that lands on another replica, or on this one after a restart, is False. Each
  key is one atomic insert-or-skip; keys go in sorted order inside one transaction, so two
  replicas racing for one message never both lose.
* **Confirmations**: the question, its requester and what to run on Confirm. A press may
  arrive at any replica; ``answer`` claims the question once. What to run (it may hold secret
  parameter values) is cleared as soon as the question is answered or expires.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from marvin.runtime.sql import Database

__all__ = ["Shared"]


class Shared:
    """The store's claims and confirmations, as ``marvin.core.facade.SharedState``."""

    def __init__(self, db: Database, replica: str) -> None:
        self.db, self.replica = db, replica

    # -- claims ----------------------------------------------------------------------------------

    def claim(self, keys: Iterable[str], ttl: float) -> bool:
        """Claim every key for ``ttl`` seconds; True if none was claimed (and unexpired)."""
        todo = sorted(set(keys))
        now = time.time()
        fresh = 0
        with self.db.transaction() as tx:
            for key in todo:
                fresh += tx.execute(
                    "INSERT INTO claims (key, replica, created_at, expires_at) VALUES (?,?,?,?)"
                    " ON CONFLICT (key) DO UPDATE SET replica = excluded.replica,"
                    " created_at = excluded.created_at, expires_at = excluded.expires_at"
                    " WHERE claims.expires_at < ?",
                    (key, self.replica, now, now + ttl, now),
                )
        return fresh == len(todo)

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
