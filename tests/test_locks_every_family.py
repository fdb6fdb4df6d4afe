"""``lock="*.environment"``: one command (migrations) holds off every family's lock on the
environment, while the families' own locks still leave each other alone."""

from __future__ import annotations

import time

from marvin.runtime.locks import Holder, LockTable, lock_key

PARAMS = {"environment": object()}


def key(spec: str, family: str, env: str = "demo01", by_family: bool = True):  # noqa: ANN201
    return lock_key(spec, family, PARAMS, {"environment": env}, by_family=by_family)


def holder(ex: str) -> Holder:
    return Holder(ex, "x.y", "someone", time.time())


def test_every_family_key_conflicts_with_each_family_but_families_do_not() -> None:
    table = LockTable()
    assert table.acquire(key("environment", "platform"), holder("ex-000001")) is None
    assert table.acquire(key("environment", "api"), holder("ex-000002")) is None
    blocked = table.acquire(key("*.environment", "migrations"), holder("ex-000003"))
    assert blocked is not None and blocked.execution_id in ("ex-000001", "ex-000002")
    assert table.acquire(key("*.environment", "migrations", "demo02"), holder("ex-4")) is None
    assert key("*.environment", "migrations").describe() == "environment demo01"


def test_family_locks_wait_for_the_every_family_holder_and_all_start_after_it() -> None:
    table, started = LockTable(), []
    migration = key("*.environment", "migrations")
    assert table.acquire(migration, holder("ex-000001")) is None
    for n, family in enumerate(("app", "platform"), start=2):
        got = table.acquire(
            key("environment", family), holder(f"ex-00000{n}"), lambda f=family: started.append(f)
        )
        assert got is not None and got.execution_id == "ex-000001"
    start = table.release(migration, "ex-000001")
    assert start is not None
    start()
    assert sorted(started) == ["app", "platform"]  # different families: both may run
    assert table.holder(key("environment", "app")).execution_id == "ex-000002"


def test_every_family_waiter_starts_only_when_the_last_family_holder_leaves() -> None:
    table, started = LockTable(), []
    app, platform = key("environment", "app"), key("environment", "platform")
    table.acquire(app, holder("ex-000001"))
    table.acquire(platform, holder("ex-000002"))
    migration = key("*.environment", "migrations")
    assert table.acquire(migration, holder("ex-000003"), lambda: started.append("m")) is not None
    assert table.release(app, "ex-000001") is None  # platform still holds demo01
    start = table.release(platform, "ex-000002")
    assert start is not None
    start()
    assert started == ["m"] and table.holder(migration).execution_id == "ex-000003"


def test_shared_locks_are_unchanged() -> None:
    assert key("*.environment", "migrations", by_family=False) == key(
        "environment", "app", by_family=False
    )
