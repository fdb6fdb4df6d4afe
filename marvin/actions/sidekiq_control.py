"""Pause, show and resume an environment's Sidekiq (protocol in ``marvin.actions.sidekiq``).

Pausing quiets every process and waits until all report quiet with nothing busy. A quiet
Sidekiq process cannot be un-quieted, so resuming restarts the environment's worker service
(``service.restart``'s action) and waits until fresh processes heartbeat, not quiet."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from marvin.actions import ActionError, wait_until
from marvin.actions.ecs_service import restart_service
from marvin.actions.sidekiq import Proc, processes, queues, quiet, redis_errors, where

__all__ = ["pause", "resume", "show"]


def _settings(ctx: Any, environment: str) -> tuple[Any, str, float, float, float]:
    sk = ctx.services.sidekiq
    config = ctx.services.config
    return (
        sk.redis(environment),
        sk.tag(environment),
        float(config.get("sidekiq.stale_seconds")),
        float(config.get("sidekiq.poll_seconds")),
        float(config.get("sidekiq.timeout")),
    )


def _split(procs: list[Proc], limit: float) -> tuple[list[Proc], list[Proc]]:
    now = time.time()
    return [p for p in procs if not p.stale(now, limit)], [p for p in procs if p.stale(now, limit)]


def _stale_note(stale: list[Proc], limit: float) -> str:
    if not stale:
        return ""
    names = ", ".join(p.name for p in stale)
    return f" Stale (no heartbeat for {limit:.0f} s, not waited for): {names}."


@contextmanager
def _guard(r: Any, environment: str) -> Iterator[None]:
    """Redis' errors as one clear sentence (without the URL: it may hold a password)."""
    try:
        yield
    except redis_errors() as exc:
        raise ActionError(
            f"Sidekiq's Redis for {environment} ({where(r)}) failed: {type(exc).__name__}: {exc}"
        ) from None


def pause(ctx: Any, *, environment: str) -> str:
    """Quiet every process of the environment; wait until all are quiet and none busy."""
    r, tag, limit, poll, timeout = _settings(ctx, environment)
    signalled: set[str] = set()
    last = {"text": "quieting"}
    stale_seen: dict[str, Proc] = {}

    def check() -> str | None:
        with _guard(r, environment):
            live, stale = _split(processes(r, tag), limit)
            for p in stale:
                stale_seen[p.identity] = p
            if not live and not signalled:
                raise ActionError(
                    f"no live Sidekiq processes for {environment}.{_stale_note(stale, limit)}"
                )
            for p in live:  # also any that started meanwhile: every process ends quiet
                if not p.quiet and p.identity not in signalled:
                    quiet(r, p.identity)
                    signalled.add(p.identity)
                    ctx.log.info("quieted sidekiq process", process=p.name)
        loud = [p for p in live if not p.quiet]
        busy = sum(p.busy for p in live)
        if not loud and busy == 0:
            return (
                f"Sidekiq on {environment} is paused: {len(live)} processes quiet, "
                f"no jobs busy.{_stale_note(list(stale_seen.values()), limit)}"
            )
        last["text"] = (
            f"{len(live) - len(loud)} of {len(live)} Sidekiq processes quiet; "
            f"{busy} jobs still busy"
        )
        ctx.progress(last["text"])
        return None

    return wait_until(ctx, check, every=poll, timeout=timeout, what=lambda: last["text"])


def show(ctx: Any, *, environment: str) -> str:
    """Processes (host, busy, quiet, last beat) and queues (size, latency)."""
    r, tag, limit, _poll, _timeout = _settings(ctx, environment)
    with _guard(r, environment):
        procs, qs = processes(r, tag), queues(r)
    now = time.time()
    lines = [f"Sidekiq on {environment}: {len(procs)} processes"]
    for p in procs:
        state = "quiet" if p.quiet else "running"
        if p.stale(now, limit):
            state = "STALE"
        conc = p.info.get("concurrency", "?")
        lines.append(
            f"• {p.name} {state}, busy {p.busy}/{conc}, last beat {now - p.beat:.0f} s ago"
        )
    lines.append(f"{len(qs)} queues" if qs else "no queues")
    for q in qs:
        lines.append(f"• {q.name}: {q.size} jobs, latency {q.latency:.1f} s")
    return "\n".join(lines)


def resume(ctx: Any, *, environment: str) -> str:
    """Restart the worker service, then wait until its fresh processes heartbeat unquiet."""
    r, tag, limit, poll, timeout = _settings(ctx, environment)
    with _guard(r, environment):
        before = {p.identity for p in processes(r, tag)}
    service = str(ctx.services.config.get("sidekiq.worker_service"))
    restarted = restart_service(ctx, service=service, environment=environment)
    want = restarted.desired
    last = {"text": f"waiting for {want} fresh Sidekiq processes"}

    def check() -> str | None:
        with _guard(r, environment):
            live, stale = _split(processes(r, tag), limit)
        fresh = [p for p in live if p.identity not in before and not p.quiet]
        if len(fresh) >= want:
            old = [p for p in live if p.identity in before and p.quiet]
            tail = f" {len(old)} old quiet processes are still stopping." if old else ""
            return (
                f"Sidekiq on {environment} is running: {len(fresh)} fresh processes "
                f"(service {restarted.service} restarted).{tail}{_stale_note(stale, limit)}"
            )
        last["text"] = f"{len(fresh)} of {want} fresh Sidekiq processes heartbeating"
        ctx.progress(last["text"])
        return None

    return wait_until(ctx, check, every=poll, timeout=timeout, what=lambda: last["text"])
