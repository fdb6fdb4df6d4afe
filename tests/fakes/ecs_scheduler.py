"""ECS's scheduler for moto's ECS (moto never rolls a deployment out).

moto answers the API (``update_service(forceNewDeployment=True)`` gives the PRIMARY
deployment a new id and nothing more). This thread, in the process that hosts the moto server,
does what ECS does next, on moto's own service objects: the new deployment goes PRIMARY
IN_PROGRESS beside the old ACTIVE one, starts one task per tick while the old one stops one,
and ends COMPLETED ("has reached a steady state") — or, for a service told to fail, its tasks
fail to start and the deployment circuit breaker marks it FAILED with ECS's reason.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

ACCOUNT, REGION = "123456789012", "us-east-1"
CIRCUIT_BREAKER = "ECS deployment circuit breaker: tasks failed to start."


class EcsScheduler:
    def __init__(self, tick: float = 0.1) -> None:
        self.tick = tick
        self.fail: dict[str, int] = {}  # service name -> after how many failed tasks it gives up
        # called (service name, tasks started) when a new deployment's tasks start; e.g. the
        # Sidekiq emulator starts a process per task
        self.on_tasks: list[Callable[[str, int], None]] = []
        self.seen: dict[str, str] = {}
        self.rollouts: list[tuple[str, str, str]] = []  # (service, deployment id, final state)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ecs-scheduler", daemon=True)

    def __enter__(self) -> EcsScheduler:
        from moto.ecs.models import EC2ContainerServiceBackend

        original = self._original = EC2ContainerServiceBackend.update_service
        scheduler = self

        def update_service(backend: Any, props: dict[str, Any]) -> Any:
            force = props.get("force_new_deployment")
            svc = original(backend, props)
            if force:  # ECS answers with the new deployment already PRIMARY and IN_PROGRESS
                with scheduler._lock:
                    scheduler._start(svc)
            return svc

        EC2ContainerServiceBackend.update_service = update_service  # type: ignore[method-assign]
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        from moto.ecs.models import EC2ContainerServiceBackend

        EC2ContainerServiceBackend.update_service = self._original  # type: ignore[method-assign]
        self._stop.set()
        self._thread.join(5)

    def settle(self) -> None:
        """Make every existing service steady now (ECS would, long before anyone restarts)."""
        with self._lock:
            for svc in list(self._backend().services.values()):
                self._step(svc)

    def _backend(self) -> Any:
        from moto.ecs.models import ecs_backends

        return ecs_backends[ACCOUNT][REGION]

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            for svc in list(self._backend().services.values()):
                try:
                    with self._lock:
                        self._step(svc)
                except Exception as exc:  # a broken emulator must show, not hang tests
                    print(f"ecs scheduler: {type(exc).__name__}: {exc}")

    def _step(self, svc: Any) -> None:
        deps = list(svc.deployments)
        if not deps:
            return
        primary = deps[0]
        key = f"{svc.cluster_name}:{svc.name}"
        if key not in self.seen:  # a new service: its first deployment is already steady
            self.seen[key] = primary["id"]
            primary.update(rolloutState="COMPLETED", runningCount=svc.desired_count)
            primary.update(pendingCount=0)
            svc.running_count, svc.pending_count = svc.desired_count, 0
            return
        if primary.get("rolloutState") != "IN_PROGRESS":
            return
        old = deps[1] if len(deps) > 1 else None
        if svc.name in self.fail:
            primary["failedTasks"] = primary.get("failedTasks", 0) + 1
            self._event(svc, f"(service {svc.name}) task failed to start: exit code 1.")
            if primary["failedTasks"] >= self.fail[svc.name]:
                primary.update(rolloutState="FAILED", rolloutStateReason=CIRCUIT_BREAKER)
                self._event(
                    svc,
                    f"(service {svc.name}) (deployment {primary['id']}) deployment failed: "
                    "tasks failed to start.",
                )
                self.rollouts.append((svc.name, primary["id"], "FAILED"))
            return
        primary["runningCount"] += 1
        primary["pendingCount"] = max(0, primary["pendingCount"] - 1)
        self._event(svc, f"(service {svc.name}) has started 1 tasks: (task {uuid.uuid4().hex}).")
        for hook in self.on_tasks:
            hook(svc.name, 1)
        if old is not None:
            old["runningCount"] = max(0, old["runningCount"] - 1)
        if primary["runningCount"] >= primary["desiredCount"]:
            primary.update(rolloutState="COMPLETED", rolloutStateReason="ECS deployment completed.")
            svc.deployments = [primary]
            svc.running_count = primary["runningCount"]
            self._event(svc, f"(service {svc.name}) has reached a steady state.")
            self.rollouts.append((svc.name, primary["id"], "COMPLETED"))

    def _start(self, svc: Any) -> None:
        """forceNewDeployment: moto gave deployments[0] a new id; ECS keeps the old one
        ACTIVE beside the new PRIMARY until the new tasks run."""
        primary = svc.deployments[0]
        self.seen[f"{svc.cluster_name}:{svc.name}"] = primary["id"]
        old = dict(primary, id=f"ecs-svc/{uuid.uuid4().int % 10**12}", status="ACTIVE")
        new = dict(primary, status="PRIMARY", rolloutState="IN_PROGRESS", runningCount=0)
        new.update(pendingCount=svc.desired_count, failedTasks=0)
        new["rolloutStateReason"] = "ECS deployment in progress."
        svc.deployments = [new, old]

    @staticmethod
    def _event(svc: Any, message: str) -> None:
        event = {"id": str(uuid.uuid4()), "createdAt": datetime.now(UTC), "message": message}
        svc.events = [event, *svc.events][:100]
