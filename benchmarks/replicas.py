"""Replicas on PostgreSQL: throughput and first-reply latency for 1 vs 3 ``marvin serve``
processes, and what the shared store costs per command (SQLite vs PostgreSQL).

PostgreSQL is a throw-away cluster started as a subprocess (``python -m tests.fakes.postgres``);
Slack is the loopback fake (as in benchmarks/slack_latency.py), spreading envelopes over the
replicas' Socket Mode connections at random. Each mention runs a command that does nothing,
so the figures are Marvin's and the store's own cost (on this 2-core machine the replicas
share the CPU with the fake and PostgreSQL: more replicas buy availability, not speed here).

    python benchmarks/replicas.py [--mentions 300] [--sequential 100] [--store-commands 300]

Figures, one ``name=value`` per line:
  replicas_<n>_sequential_first_reply_p50_ms / _p99_ms  (one mention at a time)
  replicas_<n>_throughput_per_s, replicas_<n>_first_reply_p50_ms / _p99_ms  (a burst of
  ``--mentions`` sent at once by four threads: the latency includes the wait in line)
  store_<backend>_per_command_ms  (every store call one command makes: execution row, audit
  rows, event claim, admission with a lock, state changes, outcome, release)
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from marvin.runtime.claims import Shared  # noqa: E402
from marvin.runtime.locks import LockKey  # noqa: E402
from marvin.runtime.replicas import Replicas, StateSettings  # noqa: E402
from marvin.runtime.running import RunningTable  # noqa: E402
from marvin.runtime.shared_locks import SharedLocks  # noqa: E402
from marvin.runtime.store import Store  # noqa: E402
from tests.fakes.slack import FakeSlack  # noqa: E402

USERS = [f"U0BENCH{n:02d}" for n in range(8)]


def start_postgres() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.postgres"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("postgresql://"):
        proc.kill()
        raise SystemExit("could not start PostgreSQL (is it installed?)")
    return proc, url


def new_database(server: str, name: str) -> str:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + "/" + name


def config(tmp: Path, url: str) -> Path:
    (tmp / "commands").mkdir(exist_ok=True)
    (tmp / "commands" / "bench.py").write_text(
        "from marvin import command\n\n"
        "@command('bench.noop', 'noop', description='Does nothing', examples=['noop'])\n"
        "def noop(ctx):\n    return 'ok'\n"
    )
    (tmp / "rbac.yaml").write_text("rules:\n  - commands: ['bench.*']\n    everyone: true\n")
    users = "".join(f"  {u.lower()}@example.com: {{groups: [ops]}}\n" for u in USERS)
    (tmp / "directory.yaml").write_text(f"users:\n{users}")
    cfg = tmp / "marvin.yaml"
    cfg.write_text(
        "commands: {paths: [commands], lint: 'off'}\n"
        f"vocabulary: {ROOT / 'config' / 'vocabulary.yaml'}\n"
        f"state: {{url: '{url}'}}\n"
        "jobs: {per_user: 1000}\n"
        "security: {policy: rbac.yaml, directory: {backend: static, path: directory.yaml}}\n"
        "logging: {level: warning}\n"
    )
    return cfg


def replicas_run(server: str, n: int, mentions: int, sequential: int) -> None:
    url = new_database(server, f"bench_{n}_{os.getpid()}")
    with tempfile.TemporaryDirectory() as tmp, FakeSlack.start(spread=True) as fake:
        for u in USERS:
            fake.add_user(u, email=f"{u.lower()}@example.com")
        cfg = config(Path(tmp), url)
        env = {**os.environ, **fake.env(), "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-m", "marvin", "--config", str(cfg), "serve"]
        procs = [subprocess.Popen(argv, env=env, cwd=ROOT) for _ in range(n)]
        try:
            fake.wait_connected(timeout=30, min_count=n)
            warm = [fake.app_mention("noop", user=u) for u in USERS]  # users.info, imports
            for ev in warm:
                fake.send_event(ev)
            for ev in warm:
                fake.wait_for("chat.postMessage", _thread(ev["ts"]), timeout=30)
            one_by_one = []
            for i in range(sequential):  # unloaded: one mention at a time
                ev = fake.app_mention("noop", user=USERS[i % len(USERS)])
                env_id = fake.send_event(ev)
                call = fake.wait_for("chat.postMessage", _thread(ev["ts"]), timeout=30)
                one_by_one.append((call.received_at - fake.envelope(env_id).sent_at) * 1000)
            for p in (50, 99):
                q = statistics.quantiles(one_by_one, n=100, method="inclusive")[p - 1]
                print(f"replicas_{n}_sequential_first_reply_p{p}_ms={q:.1f}", flush=True)
            since = len(fake.calls)
            events = [fake.app_mention("noop", user=USERS[i % len(USERS)]) for i in range(mentions)]
            sent: dict[str, float] = {}

            def send(part: int) -> None:
                for ev in events[part::4]:
                    env_id = fake.send_event(ev)
                    sent[ev["ts"]] = fake.envelope(env_id).sent_at or time.monotonic()

            t0 = time.monotonic()
            senders = [threading.Thread(target=send, args=(p,)) for p in range(4)]
            for t in senders:
                t.start()
            for t in senders:
                t.join()
            first: dict[str, float] = {}
            deadline = time.monotonic() + 120
            while len(first) < mentions and time.monotonic() < deadline:
                for call in fake.calls[since:]:
                    ts = call.args.get("thread_ts")
                    if call.method == "chat.postMessage" and ts in sent and ts not in first:
                        first[ts] = call.received_at
                time.sleep(0.05)
            done = max(first.values()) - t0
            lat = sorted((first[ts] - sent[ts]) * 1000 for ts in first)
            print(f"replicas_{n}_throughput_per_s={len(first) / done:.1f}", flush=True)
            for p in (50, 99):
                q = statistics.quantiles(lat, n=100, method="inclusive")[p - 1]
                print(f"replicas_{n}_first_reply_p{p}_ms={q:.1f}", flush=True)
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()


def _thread(ts: str):  # noqa: ANN202
    return lambda call: call.args.get("thread_ts") == ts


def store_cost(target: str, label: str, commands: int) -> None:
    """Every store call of one locked command, as the runtime makes them, in sequence."""
    store = Store(target)
    reps = Replicas(store.db, store.replica, StateSettings())
    reps.register()
    locks = SharedLocks(store.db, reps)
    running, shared = RunningTable(store.db, reps, locks), Shared(store.db, store.replica)
    key = LockKey("bench", "environment", "demo01")
    t0 = time.perf_counter()
    for i in range(commands):
        assert shared.claim([f"slack:ev:{label}{i}", f"slack:msg:C1:{i}"], 900)
        ex = store.create_execution(
            ref="bench.noop", params={}, user_id="U1", email="a@example.com", channel="C1",
            thread=str(i), source="slack", owner=store.replica,
        )  # fmt: skip
        assert running.admit(
            execution_id=ex, user_id="U1", ref="bench.noop", requester="a@example.com",
            shown={}, cap=4, lock=key, on_free=None,
        ).admitted  # fmt: skip
        store.audit("accepted", execution_id=ex, user_id="U1")
        running.set_state(ex, "running", time.time())
        store.update(ex, state="running", started_at=time.time())
        store.update(ex, state="succeeded", finished_at=time.time())
        store.audit("succeeded", execution_id=ex, user_id="U1")
        running.release(ex, key, forget=False)
        running.release(ex, None, forget=True)
    per = (time.perf_counter() - t0) * 1000 / commands
    print(f"store_{label}_per_command_ms={per:.2f}", flush=True)
    store.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mentions", type=int, default=300)
    p.add_argument("--store-commands", type=int, default=300)
    p.add_argument("--sequential", type=int, default=100)
    args = p.parse_args()
    pg, server = start_postgres()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store_cost(str(Path(tmp) / "bench.sqlite3"), "sqlite", args.store_commands)
        store_cost(new_database(server, f"bench_store_{os.getpid()}"), "postgresql",
                   args.store_commands)  # fmt: skip
        for n in (1, 3):
            replicas_run(server, n, args.mentions, args.sequential)
    finally:
        pg.send_signal(signal.SIGTERM)
        pg.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
