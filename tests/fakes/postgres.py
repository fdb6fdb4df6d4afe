"""A real, throw-away PostgreSQL cluster for tests, on a free loopback port in a temp dir.

``initdb`` and ``postgres`` refuse to run as root, so when the tests run as root (CI) the
cluster belongs to an unprivileged user (``nobody``) and is started with ``setuid`` in a
``preexec_fn``. Durability is switched off (fsync, synchronous_commit): the data lives for one
test session. ``new_database()`` gives each test its own empty database.

Run as a module (``python -m tests.fakes.postgres``) it prints a URL and serves until killed.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.ports import free_port as _free_port

USER = "marvin"  # the cluster's superuser (trust authentication on loopback only)


def bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class Postgres:
    def __init__(self, bindir: Path, workdir: Path | None = None) -> None:
        self.bin = bindir
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="marvin-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._uid = self._gid = None
        self._n = 0
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self._uid, self._gid = nobody.pw_uid, nobody.pw_gid
            os.chmod(self.dir, 0o755)
            os.chown(self.dir, self._uid, self._gid)

    def _as_owner(self) -> None:
        if self._uid is not None:
            os.setgid(self._gid)  # type: ignore[arg-type]
            os.setuid(self._uid)

    def _run(self, *args: str) -> None:
        subprocess.run(
            args,
            check=True,
            capture_output=True,
            preexec_fn=self._as_owner,
            cwd=self.dir,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
        )

    def start(self, timeout: float = 30.0) -> Postgres:
        if not self.data.exists():
            self._run(
                str(self.bin / "initdb"), "-D", str(self.data), "-U", USER,
                "-A", "trust", "-E", "UTF8", "--no-sync",
            )  # fmt: skip
        log = open(self.dir / "postgres.log", "ab")  # noqa: SIM115 (the server keeps it)
        self.proc = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.dir),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=32MB",
            ],  # fmt: skip
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=self._as_owner,
            cwd=self.dir,
        )
        atexit.register(self.stop)
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "postgres did not start:\n" + (self.dir / "postgres.log").read_text()
                    ) from None
                time.sleep(0.1)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        self._n += 1
        name = f"t{os.getpid()}_{self._n}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    bindir = bin_dir()
    if bindir is None:
        if os.environ.get("CI"):
            raise RuntimeError("PostgreSQL is not installed; .ci/run installs it")
        # A developer machine without Debian's postgresql; CI installs it and never skips.
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    server = Postgres(bindir).start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: Postgres) -> str:
    """A fresh database on the session's cluster."""
    return postgres_server.new_database()


if __name__ == "__main__":
    found = bin_dir()
    if found is None:
        sys.exit("PostgreSQL is not installed")
    pg = Postgres(found).start()
    print(pg.url(), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        signal.pause()
    finally:
        pg.stop()
