"""``StoredKeys``: API keys in the store, hashed.

The secret is 32 random bytes, so a plain SHA-256 of it is enough (as for GitHub's tokens):
nothing to brute-force, and a lookup by the public id costs one indexed read. Each request
reads the key afresh, so a revocation (``marvin keys revoke`` from another process) takes
effect on the next request. ``last_used`` is written at most once a minute per key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from marvin.core.apikeys import PREFIX, ApiKey, KeyRefused, parse_key
from marvin.runtime.store import Store

__all__ = ["StoredKeys"]

TOUCH_EVERY = 60.0  # seconds between writes of one key's last_used


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _key(row: dict[str, Any]) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        owner=row["owner"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used=row["last_used"],
    )


class StoredKeys:
    """Implements ``marvin.core.apikeys.KeyRing``."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    def create(self, owner: str, name: str, expires_at: float | None = None) -> tuple[ApiKey, str]:
        owner = owner.strip().lower()
        if "@" not in owner:
            raise ValueError("the owner must be an email")
        if not name.strip() or len(name) > 64:
            raise ValueError("the name must be 1 to 64 characters")
        for _ in range(20):
            key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
            if self.store.api_key(key_id) is None:
                break
        else:
            raise RuntimeError("could not allocate a key id")
        now = self.clock()
        self.store.add_api_key(
            key_id=key_id,
            name=name.strip(),
            owner=owner,
            secret_hash=_hash(secret),
            created_at=now,
            expires_at=expires_at,
        )
        key = ApiKey(key_id, name.strip(), owner, now, expires_at)
        return key, f"{PREFIX}{key_id}_{secret}"

    def list(self) -> list[ApiKey]:
        return [_key(r) for r in self.store.api_keys()]

    def get(self, key_id: str) -> ApiKey | None:
        row = self.store.api_key(key_id)
        return None if row is None else _key(row)

    def revoke(self, key_id: str) -> ApiKey | None:
        row = self.store.api_key(key_id)
        if row is None:
            return None
        self.store.revoke_api_key(key_id, self.clock())
        return _key(row)

    def verify(self, token: str) -> ApiKey:
        if not token:
            raise KeyRefused("missing")
        key_id, secret = parse_key(token)
        row = self.store.api_key(key_id)
        # compare_digest: the time taken says nothing about how much of the hash matched.
        if row is None or not hmac.compare_digest(row["secret_hash"], _hash(secret)):
            raise KeyRefused("unknown", key_id if row is not None else None)
        key = self._active(_key(row))
        self._touch(key.id)
        return key

    def check(self, key_id: str) -> ApiKey:
        row = self.store.api_key(key_id)
        if row is None:
            raise KeyRefused("unknown")
        return self._active(_key(row))

    def _active(self, key: ApiKey) -> ApiKey:
        state = key.state(self.clock())
        if state != "active":
            raise KeyRefused(state, key.id)
        return key

    def _touch(self, key_id: str) -> None:
        now = self.clock()
        with self._lock:
            if now - self._touched.get(key_id, -TOUCH_EVERY) < TOUCH_EVERY:
                return
            self._touched[key_id] = now
        self.store.touch_api_key(key_id, now)
