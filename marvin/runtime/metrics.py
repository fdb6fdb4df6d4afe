"""The application's Prometheus metrics, on a registry of its own (one per Marvin, so tests
and benchmarks can build several in one process).

- ``marvin_commands_total{ref,outcome}``: executions by final state (every front end);
- ``marvin_refusals_total{reason}``: requests refused, by kind (policy, identity, locked...,
  and the second factor and out-of-band checks);
- ``marvin_intake_seconds{frontend}``: from a message reaching Marvin to its outcome
  (accepted or refused), per front end (slack, api, cli...);
- ``marvin_queue_depth``, ``marvin_jobs_running``: read from the job pool at scrape time.
The HTTP API adds its own request latencies (``marvin.frontends.http``).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from marvin.runtime.store import TERMINAL

__all__ = ["Metrics", "LATENCY_BUCKETS"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# Audit events (runtime.audit) that refuse after admission, and the reason they count as.
_LATE_REFUSALS = {"mfa_refused": "mfa", "check_refused": "check"}
disable_created_metrics()  # no *_created series: scrapers don't need them, people read this


class Metrics:
    def __init__(self, queued: Callable[[], int], running: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.commands = Counter(
            "marvin_commands",
            "Executions by command ref and final state",
            ["ref", "outcome"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "marvin_refusals", "Requests refused, by reason", ["reason"], registry=self.registry
        )
        self.intake = Histogram(
            "marvin_intake_seconds",
            "From a message reaching Marvin to its outcome, per front end",
            ["frontend"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        reg = self.registry
        queue = Gauge("marvin_queue_depth", "Executions queued for a worker", registry=reg)
        queue.set_function(lambda: float(queued()))
        busy = Gauge("marvin_jobs_running", "Executions running now", registry=self.registry)
        busy.set_function(lambda: float(running()))

    def audited(self, event: str, ref: str | None, execution_id: str | None) -> None:
        """Every audit row passes here (``Recorder``): executions' final states (a refusal
        before any execution existed is counted by ``request``) and late refusals."""
        if event in TERMINAL and ref is not None and execution_id is not None:
            self.commands.labels(ref=ref, outcome=event).inc()
        elif event in _LATE_REFUSALS:
            self.refusals.labels(reason=_LATE_REFUSALS[event]).inc()

    def request(self, frontend: str, kind: str, refused: bool, seconds: float) -> None:
        self.intake.labels(frontend=frontend).observe(seconds)
        if refused:
            self.refusals.labels(reason=kind).inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)
