"""One contract, two backends: every test runs on SQLite and on a real PostgreSQL (a throw-away
cluster, tests/fakes/postgres.py). Two ``Store`` objects on one target are two replicas."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from marvin.runtime.claims import Shared
from marvin.runtime.due import DueLog
from marvin.runtime.locks import Holder, LockKey, lock_key
from marvin.runtime.replicas import Replicas, StateSettings
from marvin.runtime.running import RunningTable
from marvin.runtime.shared_locks import SharedLocks
from marvin.runtime.statedb import state_db
from marvin.runtime.store import MIGRATIONS, Store
from marvin.runtime.undo import UndoLog
from tests.fakes.postgres import postgres_server, postgres_url  # noqa: F401

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "state.sqlite3")
    return str(request.getfixturevalue("postgres_url"))


@dataclass
class Replica:
    store: Store
    replicas: Replicas
    locks: SharedLocks
    running: RunningTable
    shared: Shared


def replica(target: str, host: str = "host-a", lease: float = 30.0) -> Replica:
    """A replica as Marvin builds one; ``host`` differs to be judged by lease alone."""
    store = Store(target)
    reps = Replicas(store.db, store.replica, StateSettings(lease_seconds=lease, host=host))
    reps.register()
    locks = SharedLocks(store.db, reps)
    return Replica(
        store, reps, locks, RunningTable(store.db, reps, locks), Shared(store.db, store.replica)
    )


@pytest.fixture
def pair(target: str) -> tuple[Replica, Replica]:
    return replica(target, "host-a"), replica(target, "host-b")


def holder(ex: str) -> Holder:
    return Holder(ex, "x.y", "someone@example.com", time.time())


def env_key(spec: str, family: str, env: str = "demo01") -> LockKey:
    key = lock_key(spec, family, {"environment": object()}, {"environment": env})
    assert key is not None
    return key


# -- executions and audit ----------------------------------------


def test_executions_and_audit_rows(target: str) -> None:
    store = Store(target)
    ex = store.create_execution(
        ref="a.b", params={"n": 1, "s": "x"}, user_id="U1", email="a@example.com",
        channel="C1", thread="T1", source="slack", owner=store.replica,
    )  # fmt: skip
    row = store.get(ex)
    assert row is not None and row["params"] == {"n": 1, "s": "x"} and row["state"] == "queued"
    store.update(ex, state="running", started_at=1.5)
    assert store.transition(ex, ("queued",), state="failed") is False  # not queued any more
    assert store.transition(ex, ("running",), state="succeeded", finished_at=2.5) is True
    assert store.get(ex)["state"] == "succeeded" and store.get(ex)["started_at"] == 1.5
    assert [r["id"] for r in store.recent("U1")] == [ex] and store.recent("U2") == []
    assert store.in_states("queued", "running") == []
    store.audit("accepted", execution_id=ex, user_id="U1", params={"s": "x"}, detail="d")
    rows = store.audit_rows(ex)
    assert [(r["event"], r["replica"], r["detail"]) for r in rows] == [
        ("accepted", store.replica, "d")
    ]
    assert store.get("ex-nope") is None


def test_migrations_run_once_even_when_replicas_start_together(target: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            Store(target)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    version = Store(target).db.one("SELECT version FROM schema_version")
    assert version == {"version": len(MIGRATIONS)}


# -- claims (dedupe) ----------------------------------------


def test_a_claim_is_first_once_then_again_after_it_expires(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    assert a.shared.claim(["ev:1", "msg:C1:1.0"], ttl=600) is True
    assert b.shared.claim(["ev:1", "msg:C1:1.0"], ttl=600) is False  # a redelivery
    assert b.shared.claim(["ev:2", "msg:C1:1.0"], ttl=600) is False  # same message, new id
    assert b.shared.claim(["ev:3", "msg:C1:2.0"], ttl=0.2) is True
    time.sleep(0.3)
    assert a.shared.claim(["ev:3"], ttl=600) is True  # expired: a new claim
    assert a.shared.purge() >= 0


def test_racing_replicas_claim_each_message_exactly_once(pair: tuple[Replica, Replica]) -> None:
    """Each message arrives under two event ids, on both replicas, from many threads."""
    wins: list[int] = []
    lock = threading.Lock()

    def worker(r: Replica, seed: int) -> None:
        rnd = random.Random(seed)
        for n in rnd.sample(range(30), 30):
            keys = [f"ev:{n}:{rnd.randint(0, 1)}", f"msg:C1:{n}"]
            if r.shared.claim(keys, ttl=600):
                with lock:
                    wins.append(n)

    threads = [threading.Thread(target=worker, args=(r, i)) for i, r in enumerate(pair * 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(wins) == list(range(30))


def test_claims_written_together_keep_first_come_and_redeliveries(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    got = a.shared.claim_many(
        [["ev:1", "msg:C1:1.0"], ["ev:2", "msg:C1:1.0"], ["ev:3", "msg:C1:3.0"], []],
        ttl=600,
    )
    # the second is the first message again under a new event id: a duplicate
    assert got == [True, False, True, True]
    assert b.shared.claim_many([["ev:3"], ["ev:4", "msg:C1:4.0"]], ttl=600) == [False, True]
    many = [[f"ev:x{n}", f"msg:C2:{n}"] for n in range(450)]  # past one statement's 400 keys
    assert all(b.shared.claim_many(many, ttl=600))
    assert not any(a.shared.claim_many(many, ttl=600))


# -- locks ----------------------------------------


def test_a_lock_taken_on_one_replica_is_honoured_on_the_other(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    key = env_key("environment", "platform")
    assert a.locks.acquire(key, holder("ex-000001")) is None
    got = b.locks.acquire(key, holder("ex-000002"))
    assert got is not None and got.execution_id == "ex-000001"
    assert b.locks.holder(key).execution_id == "ex-000001"
    assert b.locks.acquire(env_key("environment", "api"), holder("ex-000003")) is None
    blocked = b.locks.acquire(env_key("*.environment", "migrations"), holder("ex-000004"))
    assert blocked is not None and blocked.execution_id in ("ex-000001", "ex-000003")
    assert b.locks.release(key, "ex-000001") is None  # only the holder releases
    assert a.locks.release(key, "ex-000001") is None  # nobody waiting
    assert b.locks.acquire(key, holder("ex-000005")) is None


def test_lock_wait_line_passes_across_replicas_in_order(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    started: list[str] = []
    migration = env_key("*.environment", "migrations")
    assert a.locks.acquire(migration, holder("ex-000001")) is None
    for n, (r, family) in enumerate(((b, "app"), (a, "platform"), (b, "app")), start=2):
        ex = f"ex-00000{n}"
        got = r.locks.acquire(
            env_key("environment", family), holder(ex), lambda e=ex: started.append(e)
        )
        assert got is not None and got.execution_id == "ex-000001"
    start = a.locks.release(migration, "ex-000001")
    assert start is not None  # ex-000003 waits on this replica: it starts at once
    start()
    assert started == ["ex-000003"]
    b.locks.poll()  # the other replica sees its hand-over on its next poll
    assert started == ["ex-000003", "ex-000002"]  # ex-000004 waits behind ex-000002 (app)
    assert b.locks.holder(env_key("environment", "app")).execution_id == "ex-000002"
    assert b.locks.leave(env_key("environment", "app"), "ex-000004") is True  # cancelled
    assert b.locks.release(env_key("environment", "app"), "ex-000002") is None


def test_an_expired_lease_is_taken_over_a_renewed_one_is_not(target: str) -> None:
    a = replica(target, "host-a", lease=0.5)
    b = replica(target, "host-b", lease=0.5)
    held, other = env_key("environment", "platform"), env_key("environment", "api")
    assert a.locks.acquire(held, holder("ex-000001")) is None
    assert b.locks.acquire(other, holder("ex-000002")) is None
    for _ in range(4):  # b keeps beating; a went silent
        time.sleep(0.2)
        b.replicas.beat()
    got = b.locks.acquire(held, holder("ex-000003"))
    assert got is None  # a's lease expired: taken over
    assert a.locks.acquire(other, holder("ex-000004")).execution_id == "ex-000002"
    assert b.replicas.reap() == [a.store.replica]
    assert a.store.replica not in b.replicas.live_ids()


# -- the running-job table ----------------------------------------


def admit(r: Replica, ex: str, user: str = "U1", cap: int = 2, **kw: object):  # noqa: ANN201
    return r.running.admit(
        execution_id=ex, user_id=user, ref="x.y", requester=f"{user}@example.com",
        shown={"a": 1}, cap=cap, lock=kw.get("lock"), on_free=kw.get("on_free"),  # type: ignore[arg-type]
    )  # fmt: skip


def test_the_per_user_cap_counts_every_replica(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    assert admit(a, "ex-000001").admitted and admit(b, "ex-000002").admitted
    full = admit(a, "ex-000003")
    assert not full.admitted and full.cap == ["ex-000001", "ex-000002"]
    assert admit(a, "ex-000004", user="U2").admitted  # someone else
    b.running.release("ex-000002", None, forget=True)
    assert admit(a, "ex-000003").admitted
    listed = [(r["execution_id"], r["replica"]) for r in b.running.live()]
    assert ("ex-000001", a.store.replica) in listed and len(listed) == 3


def test_lock_refusal_and_waiting_in_admission(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    key = env_key("environment", "platform")
    assert admit(a, "ex-000001", lock=key).admitted
    refused = admit(b, "ex-000002", user="U2", lock=key)
    assert not refused.admitted and refused.holder.execution_id == "ex-000001"
    waits = admit(b, "ex-000003", user="U2", lock=key, on_free=lambda: None)
    assert waits.admitted and waits.waiting
    row = a.running.get("ex-000003")
    assert row["state"] == "waiting" and row["lock_holder"] == "ex-000001"
    assert a.running.release("ex-000001", key, forget=True) == ["ex-000003"]


def test_a_cancel_request_reaches_the_owning_replica(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    assert admit(a, "ex-000001").admitted
    assert b.running.request_cancel("ex-000001", "ops@example.com") is True
    assert b.running.request_cancel("ex-000001", "ops@example.com") is False
    assert a.running.cancel_requests() == [("ex-000001", "ops@example.com")]
    assert b.running.cancel_requests() == []
    assert a.running.get("ex-000001")["cancel_by"] == "ops@example.com"


def test_a_dead_replicas_jobs_leave_the_table(target: str) -> None:
    a = replica(target, "host-a", lease=0.3)
    b = replica(target, "host-b")
    assert admit(a, "ex-000001").admitted
    assert b.running.get("ex-000001") is not None
    time.sleep(0.4)
    assert b.running.get("ex-000001") is None  # its lease expired: not live, not counted
    assert admit(b, "ex-000002", cap=1).admitted


# -- confirmations ----------------------------------------


def test_a_confirmation_is_answered_once_on_any_replica(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    request = {"ref": "x.y", "params": {"secret": "hunter2"}}
    a.shared.ask(
        "tok1", requester="U1", prompt="Run?", request=request, channel="C1",
        thread_ts="1.0", expires_at=time.time() + 60,
    )  # fmt: skip
    a.shared.posted("tok1", "C1", "2.0")
    assert b.shared.waiting("U1") == 1 and b.shared.waiting("U2") == 0
    assert b.shared.answer("tok1", "U2")[0] == "not_yours"
    verdict, row = b.shared.answer("tok1", "U1")
    assert verdict == "answered" and row["request"] == request and row["ts"] == "2.0"
    assert a.shared.answer("tok1", "U1")[0] == "closed"
    stored = a.store.db.one("SELECT request, state FROM confirmations WHERE token = 'tok1'")
    assert stored == {"request": None, "state": "answered"}  # the parameters are gone
    assert a.shared.close("tok1") is False and b.shared.waiting("U1") == 0
    a.shared.ask(
        "tok2", requester="U1", prompt="Run?", request=None, channel="C1", thread_ts=None,
        expires_at=time.time() - 1,
    )  # fmt: skip
    assert b.shared.answer("tok2", "U1")[0] == "expired"
    assert b.shared.answer("nope", "U1") == ("unknown", None)


# -- undo and due actions on the same store ----------------------------------------


def test_undo_records_and_due_actions(target: str) -> None:
    store = Store(target)
    undo = UndoLog.at(target)
    undo.record("ex-000001", "x.y", target={"k": 1}, before=[1], after=[2], summary="s")
    undo.record("ex-000001", "x.y", target={"k": 1}, before=[1], after=[3], summary="s")
    rec = undo.get("ex-000001")
    assert rec is not None and rec.after == [3] and rec.undone_by is None
    assert undo.claim("ex-000001", "ex-000002") and not undo.claim("ex-000001", "ex-000003")
    undo.release("ex-000001", "ex-000002")
    assert undo.claim("ex-000001", "ex-000003")
    dues = DueLog(target)
    first = dues.add("kind", {"a": 1}, time.time() - 1, "ex-000001")
    second = dues.add("kind", {"a": 2}, time.time() + 60, "ex-000002")
    assert [r["id"] for r in dues.pending()] == [first, second]
    assert dues.claim(first, store.replica) and not dues.claim(first, "other")
    dues.recover(lambda owner: False)  # its claimer died: pending again
    assert dues.claim(first, store.replica)
    dues.finish(first, "done", "ok")
    assert [r["id"] for r in dues.pending()] == [second]
    assert state_db(target) is store.db  # one set of connections per store


def test_an_unknown_backend_url_is_refused() -> None:
    with pytest.raises(Exception):  # noqa: B017 (psycopg raises OperationalError)
        Store("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
