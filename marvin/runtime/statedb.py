"""A second connection to Marvin's SQLite state file, for mechanisms that keep their own tables
(undo records, due actions) without going through ``Store``. One connection per file per
process, shared by threads behind a lock; the tables come from ``store.MIGRATIONS``, which the
``Store`` applies when Marvin starts, before any command runs."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

__all__ = ["StateDB", "state_db"]

_open: dict[str, StateDB] = {}
_open_lock = threading.Lock()


class StateDB:
    def __init__(self, path: str) -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout=5000")
        self._lock = threading.Lock()

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        """Run one statement; returns the number of rows changed."""
        with self._lock:
            return self._db.execute(sql, args).rowcount

    def insert(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with self._lock:
            return int(self._db.execute(sql, args).lastrowid or 0)

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, args).fetchall()]


def state_db(path: str | Path) -> StateDB:
    """The shared connection to the state file at ``path``."""
    key = str(Path(path).resolve())
    with _open_lock:
        db = _open.get(key)
        if db is None:
            db = _open[key] = StateDB(key)
        return db
