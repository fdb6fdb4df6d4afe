"""A real ``redis-server`` on a loopback port, and Sidekiq processes emulated against it.

``SidekiqProcess`` does on Redis what Sidekiq 7's launcher does, with a short beat:

- heartbeat (``Launcher#❤``), one MULTI: ``SADD processes``, ``HSET <identity>`` info JSON,
  busy, beat, quiet, ``EXPIRE 60``, the work hash, and ``RPOP <identity>-signals``;
  a popped ``TSTP`` quiets it (no more fetching), ``TERM`` stops it;
- work: while not quiet, it pops jobs from ``queue:<name>`` (RPOP, oldest first) up to its
  concurrency; a job's ``args[0]`` is how many seconds it runs; ``busy`` counts jobs in hand;
- stop (``clear_heartbeat``): ``SREM processes`` and delete its hashes;
- ``freeze()``: the process hangs (no more beats), for stale-process tests.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.fakes.ports import free_port as _free_port

PASSWORD = "sidekiq-test-" + secrets.token_hex(4)


class RedisServer:
    def __init__(self, tmp: Path) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp), "--requirepass", PASSWORD],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().ping()
                return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, password=PASSWORD, decode_responses=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sidekiq_redis(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> RedisServer:
    """An empty Redis, and Marvin's environment pointed at it (URL and password)."""
    redis_server.client().flushall()
    monkeypatch.setenv("SIDEKIQ_REDIS_URL", redis_server.url)
    monkeypatch.setenv("SIDEKIQ_REDIS_PASSWORD", PASSWORD)
    return redis_server


def push_job(r: redis.Redis, queue: str, seconds: float, *, age: float = 0.0) -> None:
    """Sidekiq::Client#push: the job JSON LPUSHed on ``queue:<name>``, the name in ``queues``."""
    job = {
        "class": "SleepJob",
        "args": [seconds],
        "queue": queue,
        "jid": secrets.token_hex(12),
        "created_at": time.time() - age,
        "enqueued_at": time.time() - age,
        "retry": True,
    }
    pipe = r.pipeline(transaction=True)
    pipe.sadd("queues", queue)
    pipe.lpush(f"queue:{queue}", json.dumps(job))
    pipe.execute()


class SidekiqProcess:
    def __init__(
        self,
        server: RedisServer,
        *,
        hostname: str,
        tag: str,
        concurrency: int = 5,
        queues: tuple[str, ...] = ("default",),
        beat: float = 0.1,
    ) -> None:
        self.r = server.client()
        self.pid = 1000 + secrets.randbelow(60000)
        self.identity = f"{hostname}:{self.pid}:{secrets.token_hex(6)}"
        self.hostname, self.tag, self.concurrency, self.queues = hostname, tag, concurrency, queues
        self.beat_every = beat
        self.started_at = time.time()
        self.quiet = False
        self.signals: list[str] = []
        self.work: dict[str, tuple[dict[str, Any], float]] = {}  # tid -> (job, ends at)
        self.done_jobs = 0
        self._stop = threading.Event()
        self._frozen = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.identity, daemon=True)
        self._thread.start()

    def info(self) -> str:
        return json.dumps(
            {
                "hostname": self.hostname,
                "started_at": self.started_at,
                "pid": self.pid,
                "tag": self.tag,
                "concurrency": self.concurrency,
                "queues": list(self.queues),
                "weights": [{q: 0 for q in self.queues}],
                "labels": [],
                "identity": self.identity,
                "version": "7.2.4",
                "embedded": False,
            }
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._frozen.is_set():
                self._stop.wait(0.05)
                continue
            self._finish_jobs()
            if not self.quiet:
                self._fetch()
            self._heartbeat()
            self._stop.wait(self.beat_every)
        if not self._frozen.is_set():
            self._clear()

    def _finish_jobs(self) -> None:
        now = time.time()
        for tid, (_job, ends) in list(self.work.items()):
            if ends <= now:
                del self.work[tid]
                self.done_jobs += 1

    def _fetch(self) -> None:
        while len(self.work) < self.concurrency:
            raw = None
            for q in self.queues:
                raw = self.r.rpop(f"queue:{q}")
                if raw:
                    break
            if not raw:
                return
            job = json.loads(raw)
            self.work[secrets.token_hex(4)] = (job, time.time() + float(job["args"][0]))

    def _heartbeat(self) -> None:
        key, work_key = self.identity, f"{self.identity}:work"
        pipe = self.r.pipeline(transaction=True)
        pipe.unlink(work_key)
        for tid, (job, _ends) in self.work.items():
            pipe.hset(work_key, tid, json.dumps({"queue": job["queue"], "payload": job}))
        pipe.expire(work_key, 60)
        pipe.sadd("processes", key)
        pipe.exists(key)
        pipe.hset(
            key,
            mapping={
                "info": self.info(),
                "busy": len(self.work),
                "beat": time.time(),
                "rtt_us": 100,
                "quiet": "true" if self.quiet else "false",
                "rss": 50000,
            },
        )
        pipe.expire(key, 60)
        pipe.rpop(f"{key}-signals")
        signal = pipe.execute()[-1]
        if signal:
            self.signals.append(signal)
            if signal == "TSTP":
                self.quiet = True  # Sidekiq: stop fetching; jobs in hand run to the end
            elif signal == "TERM":
                self._stop.set()

    def _clear(self) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.srem("processes", self.identity)
        pipe.unlink(f"{self.identity}:work", self.identity)
        pipe.execute()

    def freeze(self) -> None:
        self._frozen.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Fleet:
    """An environment's Sidekiq processes; ``restart`` plays new ECS tasks starting."""

    def __init__(self, server: RedisServer, tag: str, beat: float = 0.1) -> None:
        self.server, self.tag, self.beat = server, tag, beat
        self.procs: list[SidekiqProcess] = []
        self._n = 0

    def start(self, n: int = 1, **kwargs: Any) -> list[SidekiqProcess]:
        new = []
        for _ in range(n):
            self._n += 1
            host = f"{self.tag}-worker-{self._n}-{os.getpid() % 100}"
            new.append(
                SidekiqProcess(self.server, hostname=host, tag=self.tag, beat=self.beat, **kwargs)
            )
        self.procs.extend(new)
        return new

    def replace_one(self) -> None:
        """One ECS task replaced: a quiet old process stops, a fresh one starts."""
        old = next((p for p in self.procs if not p._stop.is_set() and p.quiet), None)
        if old is not None:
            old.stop()
        self.start(1)

    def stop_all(self) -> None:
        for p in self.procs:
            p.stop()
