"""Three ``marvin serve`` replicas on one PostgreSQL, one app token, and a fake Slack that
spreads envelopes (and their retries) over the three Socket Mode connections at random.

Each replica names a different ``state.host``, so the others judge it by its lease alone, as
they would on another machine. Timings are short (lease 1.5 s) to keep the tests quick.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.fakes.postgres import postgres_server, postgres_url  # noqa: F401
from tests.fakes.slack import CHANNEL, Call, FakeSlack

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(120)

USERS = [f"U0USER{n:03d}" for n in range(6)]
OPS = "U0OPS001"
LEASE = 1.5

COMMANDS = """
from marvin import Integer, command


@command("rep.count", "count {{ n }}", description="Counts once", examples=["count 1"],
         params={"n": Integer(min=0, max=100000)})
def count(ctx, n):
    return f"counted {n}"


@command("rep.nap", "nap {{ seconds }}", description="Sleeps", examples=["nap 3"],
         params={"seconds": Integer(min=0, max=120)}, ack="napping")
def nap(ctx, seconds):
    ctx.sleep(seconds)
    return "nap done"


@command("rep.hold", "hold {{ environment }}", description="Holds a lock",
         examples=["hold demo01"], lock="environment", ack="holding")
def hold(ctx, environment):
    ctx.sleep(60)
    return "released"


@command("rep.danger", "danger", description="Asks first", examples=["danger"], confirm=True)
def danger(ctx):
    return "danger done"
"""


def write_config(root: Path, url: str) -> Path:
    (root / "commands").mkdir(parents=True, exist_ok=True)
    (root / "commands" / "repcmds.py").write_text(COMMANDS)
    (root / "rbac.yaml").write_text("rules:\n  - commands: ['rep.*']\n    everyone: true\n")
    users = "".join(f"  {u.lower()}@example.com: {{groups: [developers]}}\n" for u in USERS)
    (root / "directory.yaml").write_text(f"users:\n{users}  ops@example.com: {{groups: [ops]}}\n")
    config = root / "marvin.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            commands: {{paths: [commands], lint: "off"}}
            vocabulary: {ROOT / "config" / "vocabulary.yaml"}
            state:
              url: {url}
              host: ${{MARVIN_TEST_HOST:-}}
              heartbeat_seconds: 0.3
              lease_seconds: {LEASE}
              poll_seconds: 0.2
            jobs: {{workers: 16, per_user: 1000, grace_seconds: 1, cancel_groups: [ops]}}
            security:
              policy: rbac.yaml
              directory: {{backend: static, path: directory.yaml}}
            slack: {{ping_interval: 1}}
            logging: {{level: info}}
            """
        )
    )
    return config


class Replica:
    def __init__(self, fake: FakeSlack, config: Path, name: str) -> None:
        self.name = name
        self.log = config.parent / f"{name}-{time.monotonic_ns()}.log"
        env = {**os.environ, **fake.env(), "PYTHONPATH": str(ROOT), "MARVIN_TEST_HOST": name}
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "marvin", "--config", str(config), "serve"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Cluster:
    def __init__(self, fake: FakeSlack, url: str, replicas: list[Replica]) -> None:
        self.fake, self.url, self.replicas = fake, url, replicas

    def sql(self, query: str, *args: object) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(query, args).fetchall()

    def owner_pid(self, ex_id: str) -> int:
        rows = self.sql(
            "SELECT p.pid FROM executions e JOIN replicas p ON p.id = e.owner WHERE e.id = %s",
            ex_id,
        )
        return int(rows[0][0])

    def replica_of(self, ex_id: str) -> Replica:
        pid = self.owner_pid(ex_id)
        return next(r for r in self.replicas if r.proc.pid == pid)

    def wait_state(self, ex_id: str, state: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.sql("SELECT state FROM executions WHERE id = %s", ex_id)
            if rows and rows[0][0] == state:
                return
            assert time.monotonic() < deadline, f"{ex_id} is {rows}, not {state}"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster(
    postgres_server,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    url = postgres_server.new_database()
    config = write_config(tmp_path_factory.mktemp("replicas"), url)
    with FakeSlack.start(spread=True, seed=7) as fake:
        for uid in USERS:
            fake.add_user(uid, email=f"{uid.lower()}@example.com")
        fake.add_user(OPS, email="ops@example.com")
        replicas = [Replica(fake, config, f"replica-{n}") for n in range(3)]
        try:
            fake.wait_connected(timeout=30, min_count=3)
            deadline = time.monotonic() + 30
            while fake.live_connections < 3:
                assert time.monotonic() < deadline, [r.output()[-2000:] for r in replicas]
                time.sleep(0.05)
            yield Cluster(fake, url, replicas)
        finally:
            for r in replicas:
                r.stop()


def posts(fake: FakeSlack, since: int, pred: Callable[[Call], bool]) -> list[Call]:
    return [c for c in fake.calls[since:] if c.method == "chat.postMessage" and pred(c)]


def said(word: str) -> Callable[[Call], bool]:
    return lambda c: word in str(c.args.get("text", ""))


def execution_of(cluster: Cluster, ts: str, timeout: float = 15) -> str:
    """The execution a mention (its ts) started."""
    deadline = time.monotonic() + timeout
    while True:
        rows = cluster.sql("SELECT id FROM executions WHERE thread = %s", ts)
        if rows:
            return str(rows[0][0])
        assert time.monotonic() < deadline, f"no execution for {ts}"
        time.sleep(0.05)


def start_nap(cluster: Cluster, seconds: int, user: str) -> tuple[str, dict, str]:
    """A ``nap`` mention; (envelope id, event, execution id) once it runs."""
    fake = cluster.fake
    n = len(fake.calls)
    event = fake.app_mention(f"nap {seconds}", user=user)
    env = fake.send_event(event)
    fake.wait_for("chat.postMessage", lambda c: c.args.get("thread_ts") == event["ts"], since=n)
    rows = []
    deadline = time.monotonic() + 10
    while not rows:
        rows = cluster.sql(
            "SELECT id FROM executions WHERE channel = %s AND thread = %s AND state = 'running'",
            CHANNEL,
            event["ts"],
        )
        assert time.monotonic() < deadline, "the nap never started"
        time.sleep(0.05)
    return env, event, rows[0][0]


# -- exactly once ------------------------------------------------------------------------------


def test_300_mentions_with_redeliveries_run_exactly_once(cluster: Cluster) -> None:
    fake = cluster.fake
    n0 = len(fake.calls)
    count = 300

    def send(part: int) -> None:
        for i in range(part, count, 4):
            event = fake.app_mention(f"count {i}", user=USERS[i % len(USERS)])
            env = fake.send_event(event, event_id=f"EvCOUNT{i:05d}")
            fake.retry(env)  # Slack's retry, on another connection
            if i % 3 == 0:  # the same message under a second event id
                fake.send_event(event, event_id=f"EvAGAIN{i:05d}")

    senders = [threading.Thread(target=send, args=(p,)) for p in range(4)]
    for t in senders:
        t.start()
    for t in senders:
        t.join(60)
    deadline = time.monotonic() + 60
    while len(posts(fake, n0, said("counted "))) < count:
        assert time.monotonic() < deadline, len(posts(fake, n0, said("counted ")))
        time.sleep(0.1)
    time.sleep(1.0)  # a duplicate run would have answered by now
    done = [str(c.args["text"]).split()[1] for c in posts(fake, n0, said("counted "))]
    assert sorted(done, key=int) == [str(i) for i in range(count)]  # each once
    rows = cluster.sql("SELECT owner, count(*) FROM executions WHERE ref = 'rep.count' GROUP BY 1")
    assert sum(n for _, n in rows) == count
    spread = sorted({e.connection for e in fake.envelopes if e.connection})
    # Spread over the replicas (all three, unless a loaded machine made one reconnect).
    assert len(rows) >= 2, (rows, fake.connection_count, spread)
    got = {e.connection for e in fake.envelopes if e.body.get("retry_attempt")}
    assert len(got) == 3  # retries reached every connection
    assert fake.errors == []


# -- a lock on one replica holds on the others -------------------------------------------------


def test_a_lock_taken_on_one_replica_is_honoured_on_the_others(cluster: Cluster) -> None:
    fake = cluster.fake
    n = len(fake.calls)
    first = fake.app_mention("hold demo07", user=USERS[0])
    env = fake.send_event(first)
    holder = execution_of(cluster, first["ts"])
    cluster.wait_state(holder, "running")
    owner = cluster.owner_pid(holder)
    tries = []
    for _ in range(6):
        again = fake.app_mention("hold demo07", user=USERS[1])
        fake.send_event(again, avoid=fake.envelope(env).connection)
        tries.append(again)
    for event in tries:
        fake.wait_for(
            "chat.postEphemeral",
            lambda c, ts=event["ts"]: c.args.get("thread_ts") == ts or "busy" in c.args["text"],
            since=n,
        )
    deadline = time.monotonic() + 10
    while True:
        refused = cluster.sql(
            "SELECT e.owner, p.pid FROM executions e JOIN replicas p ON p.id = e.owner"
            " WHERE e.ref = 'rep.hold' AND e.state = 'refused' AND e.reason LIKE %s",
            f"%locked by {holder}%",
        )
        if len(refused) == 6 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(refused) == 6
    assert any(pid != owner for _, pid in refused)  # refused on another replica
    assert cluster.sql("SELECT state FROM executions WHERE id = %s", holder) == [("running",)]
    # Cancel it from yet another replica: its own stops it.
    m = len(fake.calls)
    ask = fake.app_mention(f"cancel {holder}", user=OPS)
    fake.send_event(ask, avoid=fake.envelope(env).connection)
    reply = fake.wait_for(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == ask["ts"], since=m
    )
    assert "stop" in reply.args["text"], reply.args
    cluster.wait_state(holder, "cancelled")
    fake.wait_for("chat.postMessage", said(f"Cancelled `{holder}`"), since=m)


def test_cancel_from_any_replica_stops_a_job_on_another(cluster: Cluster) -> None:
    fake = cluster.fake
    env, event, ex_id = start_nap(cluster, 60, USERS[2])
    n = len(fake.calls)
    ask = fake.app_mention(f"cancel {ex_id}", user=USERS[2])
    fake.send_event(ask, avoid=fake.envelope(env).connection)
    answer = fake.wait_for(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == ask["ts"], since=n
    )
    assert "Asked" in answer.args["text"] and "another Marvin process" in answer.args["text"]
    t0 = time.monotonic()
    cluster.wait_state(ex_id, "cancelled", timeout=5)
    assert time.monotonic() - t0 < 2  # seen on the owner's next poll (0.2 s)
    fake.wait_for("chat.postMessage", lambda c: c.args.get("thread_ts") == event["ts"]
                  and "Cancelled" in c.args["text"], since=n)  # fmt: skip
    events = [
        r[0]
        for r in cluster.sql("SELECT event FROM audit WHERE execution_id = %s ORDER BY seq", ex_id)
    ]
    assert "cancel_requested" in events and events[-1] == "cancelled"
    reps = cluster.sql("SELECT DISTINCT replica FROM audit WHERE execution_id = %s", ex_id)
    assert len(reps) == 2  # asked on one replica, recorded on the other


def test_a_confirm_press_delivered_to_another_replica_runs(cluster: Cluster) -> None:
    fake = cluster.fake
    n = len(fake.calls)
    event = fake.app_mention("danger", user=USERS[3])
    env = fake.send_event(event)
    ask = fake.wait_for(
        "chat.postMessage",
        lambda c: "blocks" in c.args and c.args.get("thread_ts") == event["ts"],
        timeout=10,
        since=n,
    )
    token = ask.args["blocks"][1]["elements"][0]["value"]
    ts = ask.response["ts"]
    asked_on = fake.envelope(env).connection
    press = fake.block_actions("marvin_confirm", token, user=USERS[3], message_ts=ts)
    pressed = fake.send_interactive(press, avoid=asked_on)
    assert fake.envelope(pressed).connection != asked_on
    fake.wait_for("chat.postMessage", said("danger done"), timeout=10, since=n)
    assert f"<@{USERS[3]}> confirmed" in fake.message(CHANNEL, ts)["text"]
    # A second press (or Slack's duplicate) anywhere is told it was answered.
    again = fake.block_actions("marvin_confirm", token, user=USERS[3], message_ts=ts)
    fake.send_interactive(again)
    eph = fake.wait_for("chat.postEphemeral", lambda c: c.args["user"] == USERS[3], since=n)
    assert "already answered" in eph.args["text"]
    assert len(posts(fake, n, said("danger done"))) == 1


# -- kill -9: recovery by lease -----------------------------------------------------------------


def test_kill_9_one_replica_a_survivor_reports_its_jobs_after_the_lease(cluster: Cluster) -> None:
    fake = cluster.fake
    naps = [start_nap(cluster, 60, USERS[4 + i % 2]) for i in range(6)]
    by_replica: dict[int, list[str]] = {}
    for _, _, ex in naps:
        by_replica.setdefault(cluster.owner_pid(ex), []).append(ex)
    victim_pid = max(by_replica, key=lambda pid: len(by_replica[pid]))
    victim = next(r for r in cluster.replicas if r.proc.pid == victim_pid)
    theirs = by_replica[victim_pid]
    others = [ex for pid, exs in by_replica.items() if pid != victim_pid for ex in exs]
    n = len(fake.calls)
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(10)
    killed = time.monotonic()
    for ex in theirs:
        cluster.wait_state(ex, "interrupted", timeout=15)
    waited = time.monotonic() - killed
    assert waited >= LEASE * 0.8  # not before its lease ran out (another host's pid is unseen)
    for ex in theirs:
        notice = fake.wait_for("chat.postMessage", said(f"`{ex}`"), since=n, timeout=5)
        assert "interrupted part-way" in notice.args["text"]
    recorded_by = cluster.sql(
        "SELECT DISTINCT a.replica FROM audit a WHERE a.event = 'interrupted'"
        " AND a.execution_id = ANY(%s)",
        theirs,
    )
    survivors = {r.proc.pid for r in cluster.replicas if r is not victim}
    pids = {
        cluster.sql("SELECT pid FROM replicas WHERE id = %s", rid)[0][0] for (rid,) in recorded_by
    }
    assert pids <= survivors
    for ex in others:  # the survivors' own jobs are untouched
        assert cluster.sql("SELECT state FROM executions WHERE id = %s", ex) == [("running",)]
    for ex in others:  # tidy up: cancel them from wherever
        fake.send_event(fake.app_mention(f"cancel {ex}", user=OPS))
    for ex in others:
        cluster.wait_state(ex, "cancelled")
