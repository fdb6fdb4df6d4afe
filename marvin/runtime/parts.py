"""``Runtime``: the parts executions, control and the lifecycle work with, and ``connect``,
which wires them on a store. Its own module so they can name it without importing the request
pipeline (``marvin.runtime.app``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marvin.runtime.audit import Recorder
from marvin.runtime.jobs import JobManager, JobSettings
from marvin.runtime.metrics import Metrics
from marvin.runtime.replicas import Replicas, StateSettings
from marvin.runtime.running import RunningTable
from marvin.runtime.shared_locks import SharedLocks
from marvin.runtime.store import Store

__all__ = ["Runtime", "connect"]


@dataclass(frozen=True)
class Runtime:
    """What executions and control work with: no front end, no authorizer."""

    store: Store
    jobs: JobManager
    recorder: Recorder
    services: Any  # the action library's clients (marvin.actions.clients.Clients)
    owner: str | None  # this process's replica id, on its executions and audit rows
    replicas: Replicas | None = None  # who is alive on the store (recovery by lease)


def connect(
    store: Store, services: Any, settings: JobSettings, state: StateSettings
) -> tuple[Runtime, Replicas, Metrics]:
    """This process as a replica on ``store`` (registered, with a lease), its locks, the
    running-job table and the job manager over them; the metrics count its pool and audit."""
    replicas = Replicas(store.db, store.replica, state, lease_db=store.db.dedicated())
    replicas.register()
    running = RunningTable(store.db, replicas, SharedLocks(store.db, replicas))
    jobs = JobManager(settings, running)
    metrics = Metrics(queued=lambda: jobs.pool.queued, running=lambda: jobs.pool.running)
    recorder = Recorder(store, metrics.audited)
    return Runtime(store, jobs, recorder, services, store.replica, replicas), replicas, metrics
