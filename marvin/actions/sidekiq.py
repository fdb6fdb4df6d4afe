"""Sidekiq through its Redis, with Sidekiq 7's own protocol (as ``Sidekiq::ProcessSet``,
``Sidekiq::Process#quiet!`` and ``Sidekiq::Queue`` do), so no Ruby runs here:

- processes: the ``processes`` set of identities; each identity's hash has ``info`` (JSON:
  hostname, pid, tag, concurrency, queues, started_at...), ``busy``, ``beat`` (epoch seconds)
  and ``quiet`` ("true"/"false"), refreshed by the process's heartbeat every few seconds;
- quiet: ``LPUSH <identity>-signals TSTP`` and ``EXPIRE 60`` in one MULTI; the process pops
  the signal at its next heartbeat, stops fetching jobs and reports ``quiet``;
- queues: the ``queues`` set; ``queue:<name>`` lists, oldest job at the right end, whose
  ``enqueued_at`` gives the latency (float seconds in Sidekiq 7, milliseconds in 8).

A process whose last beat is older than ``sidekiq.stale_seconds`` is reported, never waited
for: its host is gone, and Sidekiq's own key expiry will drop it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from marvin.actions import ActionError
from marvin.actions.clients import client
from marvin.config import Config, Setting, declare

__all__ = ["Proc", "QueueInfo", "SidekiqRedis", "processes", "queues", "quiet", "SIGNAL_TTL"]

declare(
    "sidekiq",
    {
        # Empty means ${SIDEKIQ_REDIS_URL}: read at run time so Marvin starts without it.
        "redis_url": Setting(str, "", None, "a redis:// URL template ({environment} optional)"),
        "password_env": Setting(str, "SIDEKIQ_REDIS_PASSWORD", None, "an environment variable"),
        "tag": Setting(str, "", None, "a Sidekiq tag template, e.g. {environment}, or empty"),
        "worker_service": Setting(str, "worker", None, "the {service} of the worker ECS service"),
        "stale_seconds": Setting((int, float), 60, lambda v: v > 0, "seconds > 0"),
        "poll_seconds": Setting(
            (int, float), 2, lambda v: 0 < v <= 300, "seconds between 0 and 300"
        ),
        "timeout": Setting((int, float), 900, lambda v: v > 0, "seconds > 0"),
    },
)
SIGNAL_TTL = 60  # Sidekiq::Process#signal's EXPIRE


@dataclass(frozen=True)
class Proc:
    identity: str
    info: dict[str, Any]
    busy: int
    beat: float
    quiet: bool

    @property
    def name(self) -> str:
        return f"{self.info.get('hostname', '?')}:{self.info.get('pid', '?')}"

    def stale(self, now: float, limit: float) -> bool:
        return now - self.beat > limit


@dataclass(frozen=True)
class QueueInfo:
    name: str
    size: int
    latency: float


@dataclass
class SidekiqRedis:
    """``ctx.services.sidekiq``: one Redis client per environment's URL, made on first use."""

    config: Config
    _clients: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def redis(self, environment: str) -> Any:
        import redis  # here: Marvin starts (and serves other commands) without it loaded

        template = self.config.get("sidekiq.redis_url") or os.environ.get("SIDEKIQ_REDIS_URL", "")
        if not template:
            raise ActionError(
                "Sidekiq's Redis is not configured: set SIDEKIQ_REDIS_URL "
                "(or sidekiq.redis_url in marvin.yaml)"
            )
        url = template.replace("{environment}", environment)
        with self._lock:
            if url not in self._clients:
                password = os.environ.get(str(self.config.get("sidekiq.password_env"))) or None
                self._clients[url] = redis.Redis.from_url(
                    url,
                    password=password,
                    decode_responses=True,
                    socket_timeout=10,
                    socket_connect_timeout=5,
                )
            return self._clients[url]

    def tag(self, environment: str) -> str:
        return str(self.config.get("sidekiq.tag")).replace("{environment}", environment)


@client("sidekiq")
def _sidekiq(config: Config) -> SidekiqRedis:
    return SidekiqRedis(config)


def where(r: Any) -> str:
    """host:port of a client, for messages: never the URL, which may carry a password."""
    kw = r.connection_pool.connection_kwargs
    return f"{kw.get('host', '?')}:{kw.get('port', '?')}"


def redis_errors() -> tuple[type[Exception], ...]:
    import redis

    return (redis.exceptions.RedisError,)


def processes(r: Any, tag: str = "") -> list[Proc]:
    """Every registered process (ProcessSet#each), optionally only those with Sidekiq ``tag``."""
    ids = sorted(r.sscan_iter("processes"))
    pipe = r.pipeline(transaction=False)
    for ident in ids:
        pipe.hmget(ident, "info", "busy", "beat", "quiet")
    found = []
    for ident, (info, busy, beat, quiet_flag) in zip(ids, pipe.execute(), strict=True):
        if info is None:  # its hash expired: a dead process ProcessSet's cleanup would drop
            continue
        data = json.loads(info)
        if tag and data.get("tag") != tag:
            continue
        found.append(Proc(ident, data, int(busy or 0), float(beat or 0), quiet_flag == "true"))
    return found


def quiet(r: Any, identity: str) -> None:
    """Sidekiq::Process#quiet!: the TSTP signal, read at the process's next heartbeat."""
    key = f"{identity}-signals"
    pipe = r.pipeline(transaction=True)
    pipe.lpush(key, "TSTP")
    pipe.expire(key, SIGNAL_TTL)
    pipe.execute()


def queues(r: Any, now: float | None = None) -> list[QueueInfo]:
    """Each queue's size and the age of its oldest job (Sidekiq::Queue#size, #latency)."""
    names = sorted(r.smembers("queues"))
    pipe = r.pipeline(transaction=False)
    for name in names:
        pipe.llen(f"queue:{name}")
        pipe.lindex(f"queue:{name}", -1)
    raw = pipe.execute()
    now = time.time() if now is None else now
    found = []
    for i, name in enumerate(names):
        size, oldest = raw[2 * i], raw[2 * i + 1]
        found.append(QueueInfo(name, int(size), _latency(oldest, now)))
    return found


def _latency(entry: str | None, now: float) -> float:
    if not entry:
        return 0.0
    try:
        enqueued = json.loads(entry).get("enqueued_at")
    except (ValueError, AttributeError):
        return 0.0
    if isinstance(enqueued, float):
        return max(0.0, now - enqueued)
    if isinstance(enqueued, int):  # Sidekiq 8 stores milliseconds
        return max(0.0, now - enqueued / 1000.0)
    return 0.0
