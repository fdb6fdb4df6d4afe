"""The open ``Database`` of each store in this process, for mechanisms that keep their own
tables (undo records, due actions) next to the ``Store``'s. The tables come from
``store.MIGRATIONS``, which the ``Store`` applies when Marvin starts, before any command runs;
the SQL is written for both backends (``marvin.runtime.sql``)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from marvin.runtime.sql import Database, is_postgres, open_database

__all__ = ["state_db", "register", "unregister", "state_target"]

_open: dict[str, Database] = {}
_open_lock = threading.Lock()


def _key(target: str | Path) -> str:
    return str(target) if is_postgres(target) else str(Path(target).resolve())


def register(target: str | Path, db: Database) -> None:
    """The ``Store`` on ``target`` shares its connections with the other state tables."""
    with _open_lock:
        _open.setdefault(_key(target), db)


def unregister(db: Database) -> None:
    with _open_lock:
        for key in [k for k, v in _open.items() if v is db]:
            del _open[key]


def state_db(target: str | Path) -> Database:
    """The shared connections to the store at ``target`` (a SQLite path or a URL)."""
    key = _key(target)
    with _open_lock:
        db = _open.get(key)
        if db is None:
            db = _open[key] = open_database(key)
        return db


def state_target(config: Any) -> str:
    """Where the configuration keeps state: ``state.url`` (a ``postgresql://`` URL or a
    SQLite path), else the ``state.sqlite`` file. Paths are relative to the config file."""
    url = str(config.get("state.url") or "")
    if is_postgres(url):
        return url
    return str(config.root / url) if url else str(config.file("state.sqlite"))
