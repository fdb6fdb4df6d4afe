"""RDS's timing for moto's RDS (moto makes every restored instance ``available`` at once).

In the process hosting the moto server, this thread gives each instance restored from a
snapshot the life RDS gives it: ``creating`` for a few ticks, then ``available``; or, for an
instance told to fail, ``incompatible-restore`` (what RDS reports when a restore cannot
complete); or, held, ``creating`` until it is deleted (a slow restore that a cancel must stop).
It also counts the deletions it sees, to check that Marvin cleans up after itself.
"""

from __future__ import annotations

import fnmatch
import threading
from typing import Any

ACCOUNT, REGION = "123456789012", "us-east-1"


class RdsLifecycle:
    def __init__(self, tick: float = 0.1, ticks: int = 5) -> None:
        self.tick, self.ticks = tick, ticks
        self.fail: list[str] = []  # identifier globs whose restore fails
        self.hold: list[str] = []  # identifier globs whose restore never finishes
        self.seen: dict[str, int] = {}
        self.statuses: dict[str, list[str]] = {}  # identifier -> statuses it went through
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rds-lifecycle", daemon=True)

    def __enter__(self) -> RdsLifecycle:
        from moto.rds.models import RDSBackend

        original = self._original = RDSBackend.restore_db_instance_from_db_snapshot
        lifecycle = self

        def restore(backend: Any, *args: Any, **kwargs: Any) -> Any:
            db = original(backend, *args, **kwargs)  # RDS answers "creating", never "available"
            lifecycle.seen[db.db_instance_identifier] = 0
            lifecycle._set(db.db_instance_identifier, db, "creating")
            return db

        RDSBackend.restore_db_instance_from_db_snapshot = restore  # type: ignore[method-assign]
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        from moto.rds.models import RDSBackend

        RDSBackend.restore_db_instance_from_db_snapshot = self._original  # type: ignore[method-assign]
        self._stop.set()
        self._thread.join(5)

    @staticmethod
    def databases() -> dict[str, Any]:
        from moto.rds.models import rds_backends

        return rds_backends[ACCOUNT][REGION].databases

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            for ident, db in list(self.databases().items()):
                if ident in self.seen and db.status == "creating":
                    self.seen[ident] += 1
                    if any(fnmatch.fnmatch(ident, g) for g in self.hold):
                        continue
                    if any(fnmatch.fnmatch(ident, g) for g in self.fail):
                        if self.seen[ident] >= 2:
                            self._set(ident, db, "incompatible-restore")
                    elif self.seen[ident] >= self.ticks:
                        self._set(ident, db, "available")

    def _set(self, ident: str, db: Any, status: str) -> None:
        db.status = status
        self.statuses.setdefault(ident, []).append(status)
