"""The two SQL backends of the store, and every difference between them, in one place.

Marvin's SQL is written once, in the dialect both understand: ``?`` placeholders,
``INSERT ... ON CONFLICT``, ``RETURNING``. ``Database`` runs it:

* **SQLite** (``state.sqlite``, or a path in ``state.url``): one connection per process behind
  a lock, WAL so readers run beside the writer, a busy timeout so processes on one host
  (``marvin serve``, ``marvin run``, ``marvin shell``) wait for each other instead of failing,
  and ``BEGIN IMMEDIATE`` for write transactions so two processes never deadlock upgrading a
  read to a write.
* **PostgreSQL** (``postgresql://...``) through psycopg 3: a small pool of autocommit
  connections; ``?`` becomes ``%s``, DDL types are translated, and ``serial`` transactions
  take one advisory lock, which is what ``BEGIN IMMEDIATE`` gives SQLite.

``transaction(serial=True)`` is for read-then-write decisions that must be atomic across
every process sharing the store (a lock, the per-user cap); single statements need none.
"""

from __future__ import annotations

import queue
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["Database", "Tx", "open_database", "is_postgres"]

Args = Sequence[Any]
_SERIAL_KEY = 0x4D415256  # "MARV": the advisory lock that serialises decisions on PostgreSQL


def is_postgres(target: str | Path) -> bool:
    return str(target).startswith(("postgresql://", "postgres://"))


class Tx:
    """Statements on one connection (inside a transaction, or a single autocommit one)."""

    def __init__(self, conn: Any, dialect: str) -> None:
        self._conn, self._pg = conn, dialect == "postgresql"

    def _run(self, sql: str, args: Args) -> Any:
        if self._pg:
            return self._conn.execute(_pg_sql(sql), tuple(args))
        return self._conn.execute(sql, tuple(args))

    def execute(self, sql: str, args: Args = ()) -> int:
        """Run one statement; the number of rows it changed."""
        return int(self._run(sql, args).rowcount)

    def rows(self, sql: str, args: Args = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self._run(sql, args).fetchall()]

    def one(self, sql: str, args: Args = ()) -> dict[str, Any] | None:
        row = self._run(sql, args).fetchone()
        return None if row is None else dict(row)

    def insert(self, sql: str, args: Args = ()) -> int:
        """An INSERT into a table with an ``id`` column; the new row's id."""
        row = self._run(sql + " RETURNING id", args).fetchone()
        return int(row["id"])


class Database:
    """One store's connections. Thread-safe."""

    dialect = "sqlite"

    def __init__(self, target: str) -> None:
        self.target = target

    @contextmanager
    def connection(self) -> Iterator[Tx]:
        raise NotImplementedError

    @contextmanager
    def transaction(self, *, serial: bool = False) -> Iterator[Tx]:
        raise NotImplementedError

    def execute(self, sql: str, args: Args = ()) -> int:
        with self.connection() as tx:
            return tx.execute(sql, args)

    def rows(self, sql: str, args: Args = ()) -> list[dict[str, Any]]:
        with self.connection() as tx:
            return tx.rows(sql, args)

    def one(self, sql: str, args: Args = ()) -> dict[str, Any] | None:
        with self.connection() as tx:
            return tx.one(sql, args)

    def insert(self, sql: str, args: Args = ()) -> int:
        with self.connection() as tx:
            return tx.insert(sql, args)

    def dedicated(self) -> Database:
        """Connections of its own for a thread that must never wait behind the pool (the
        lease renewal); SQLite has one connection per process anyway."""
        return self

    def ddl(self, script: str) -> list[str]:
        """A migration's statements in this dialect."""
        return [s.strip() for s in script.split(";") if s.strip()]

    def close(self) -> None:
        raise NotImplementedError


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, target: str, busy_timeout_ms: int = 10_000) -> None:
        super().__init__(target)
        if target != ":memory:":
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            self._wal(busy_timeout_ms / 1000)
            self._db.execute("PRAGMA synchronous=NORMAL")

    def _wal(self, patience: float) -> None:
        # Switching a new file to WAL needs it to itself and does not wait on the busy
        # timeout: two processes starting together retry briefly.
        deadline = time.monotonic() + patience
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @contextmanager
    def connection(self) -> Iterator[Tx]:
        with self._lock:
            yield Tx(self._db, self.dialect)

    @contextmanager
    def transaction(self, *, serial: bool = False) -> Iterator[Tx]:
        # IMMEDIATE takes the write lock up front: every write transaction is serial here.
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._db, self.dialect)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, target: str, pool_size: int = 8, connect_timeout: float = 10) -> None:
        import psycopg  # only needed with a postgresql:// state.url
        from psycopg.rows import dict_row

        super().__init__(target)
        self._psycopg, self._dict_row = psycopg, dict_row
        self._timeout = connect_timeout
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._closed = False
        self.execute("SELECT 1")  # fail at start-up, not at the first command

    def _connect(self) -> Any:
        return self._psycopg.connect(
            self.target,
            autocommit=True,
            row_factory=self._dict_row,
            connect_timeout=max(1, int(self._timeout)),
            application_name="marvin",
        )

    @contextmanager
    def connection(self) -> Iterator[Tx]:
        if not self._slots.acquire(timeout=self._timeout * 3):
            raise TimeoutError("no free PostgreSQL connection in the pool")
        conn = None
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
            yield Tx(conn, self.dialect)
        except self._psycopg.OperationalError:
            if conn is not None:  # a broken connection never goes back to the pool
                conn.close()
                conn = None
            raise
        finally:
            if conn is not None:
                if conn.closed or self._closed:
                    conn.close()
                else:
                    self._idle.put(conn)
            self._slots.release()

    @contextmanager
    def transaction(self, *, serial: bool = False) -> Iterator[Tx]:
        with self.connection() as tx:
            with tx._conn.transaction():
                if serial:
                    tx.execute("SELECT pg_advisory_xact_lock(?)", (_SERIAL_KEY,))
                yield tx

    def dedicated(self) -> Database:
        return PostgresDatabase(self.target, pool_size=1, connect_timeout=self._timeout)

    def ddl(self, script: str) -> list[str]:
        out = []
        for stmt in super().ddl(script):
            stmt = stmt.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
            out.append(re.sub(r"\bREAL\b", "DOUBLE PRECISION", stmt))
        return out

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


_PG_CACHE: dict[str, str] = {}


def _pg_sql(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (Marvin's SQL has no literal ``?`` or ``%``)."""
    out = _PG_CACHE.get(sql)
    if out is None:
        out = _PG_CACHE[sql] = sql.replace("%", "%%").replace("?", "%s")
    return out


def open_database(target: str | Path, *, pool_size: int = 8) -> Database:
    target = str(target)
    if is_postgres(target):
        return PostgresDatabase(target, pool_size=pool_size)
    return SqliteDatabase(target)
