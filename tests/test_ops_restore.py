"""platform.restore / api.restore against moto (server mode), with RDS's timing emulated:
named and latest manual snapshots, two databases in parallel, a failing restore that cancels
the other branch and leaves the environment on its own databases, a failing swap rolled back."""

from __future__ import annotations

import time

import boto3
import pytest

import commands.api
import commands.platform
from marvin.runtime.execution import Context
from tests import ops_world as world
from tests.fakes import aws
from tests.fakes.rds_lifecycle import RdsLifecycle
from tests.test_ops_scale_restart import fast_config

moto_server = aws.moto_server
aws_env = aws.aws_env
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def every_progress(monkeypatch):  # noqa: ANN001, ANN201
    """Keep every progress update (Slack's 2 s pacing would hide the short ones here)."""
    monkeypatch.setattr(Context, "PROGRESS_INTERVAL", 0)


@pytest.fixture
def bot(marvin_bot, aws_env, tmp_path):  # noqa: ANN001, ANN201
    return marvin_bot(
        commands.platform, commands.api, user="alice@example.com", config=fast_config(tmp_path)
    )


@pytest.fixture
def rds_timing():  # noqa: ANN201
    with RdsLifecycle(tick=0.05, ticks=4) as life:
        yield life


def test_restore_from_a_named_snapshot(bot, rds_timing) -> None:  # noqa: ANN001
    world.make_environment("platform", "demo01", ["orders"])
    world.snapshot("demo01-orders", "demo01-orders-before-migration-20240501-120000")
    time.sleep(0.01)
    world.snapshot("demo01-orders", "demo01-orders-later")
    r = bot.send("restore platform environment named demo01 from snapshot before-migration")
    assert r.said[0] == "Restoring platform environment demo01"
    assert r.reactions == ["accepted", "succeeded"], r.text
    assert "platform environment demo01 now runs on restored data" in r.said[-1]
    assert "orders: from demo01-orders-before-migration-20240501-120000, taken " in r.said[-1]
    previous = f"demo01-orders-previous-{r.execution_id[3:]}"
    assert previous in r.said[-1]
    dbs = world.instances()
    assert dbs["demo01-orders"]["marvin:restored-from"] == (
        "demo01-orders-before-migration-20240501-120000"
    )
    assert "marvin:restore-role" not in dbs["demo01-orders"]  # it is the database now
    assert dbs[previous]["marvin:restore-role"] == "previous"
    assert set(dbs) == {"demo01-orders", previous}
    restored = f"demo01-orders-restored-{r.execution_id[3:]}"
    assert rds_timing.statuses[restored] == ["creating", "available"]  # it waited for RDS
    assert any("restoring from" in p and "creating" in p for p in r.progress)


def test_restore_from_the_latest_manual_snapshot_of_each_database_in_parallel(
    bot, rds_timing
) -> None:  # noqa: ANN001, E501
    world.make_environment("api", "demo02", ["orders", "users"])
    world.make_environment("platform", "demo02", [])  # another family: not its databases
    for db in ("orders", "users"):
        world.snapshot(f"demo02-{db}", f"demo02-{db}-old")
        time.sleep(0.01)
        world.snapshot(f"demo02-{db}", f"demo02-{db}-newest")
    r = bot.send("restore api environment named demo02")
    assert r.reactions == ["accepted", "succeeded"], r.text
    assert "orders: from demo02-orders-newest" in r.said[-1]
    assert "users: from demo02-users-newest" in r.said[-1]  # never an automated rds: one
    both = [p for p in r.progress if "• orders: " in p and "• users: " in p]
    assert both and both[0].startswith("Restoring api environment demo02:")
    assert any("orders: restoring from" in p and "users: restoring from" in p for p in both)
    dbs = world.instances()
    assert dbs["demo02-orders"]["marvin:restored-from"] == "demo02-orders-newest"
    assert dbs["demo02-users"]["marvin:restored-from"] == "demo02-users-newest"


def test_a_failed_restore_cancels_the_other_and_changes_nothing(bot, rds_timing) -> None:  # noqa: ANN001
    world.make_environment("platform", "demo03", ["orders", "users"])
    for db in ("orders", "users"):
        world.snapshot(f"demo03-{db}", f"demo03-{db}-manual")
    rds_timing.fail.append("demo03-users-restored-*")
    rds_timing.hold.append("demo03-orders-restored-*")  # still restoring when users fails
    before = world.instances()
    r = bot.send("restore platform environment named demo03")
    assert r.reactions[-1] == "failed"
    text = r.said[-1]
    assert "restore of platform environment demo03 failed" in text
    assert "orders: cancelled" in text
    assert "users: failed (restoring from demo03-users-manual: " in text
    assert "is incompatible-restore" in text
    assert "still runs on its own databases; nothing was swapped" in text
    after = world.instances()
    assert set(after) == set(before) == {"demo03-orders", "demo03-users"}  # copies deleted
    assert after == before


def test_nothing_to_restore_is_said_clearly(bot) -> None:  # noqa: ANN001
    r = bot.send("restore platform environment named ghost")
    assert "there is no platform environment ghost (stack platform-ghost)" in r.said[-1]
    world.make_environment("platform", "demo04", ["orders"])
    r = bot.send("restore platform environment named demo04")
    assert "demo04-orders has no available snapshot taken manually; nothing changed" in r.said[-1]
    world.snapshot("demo04-orders", "demo04-orders-manual")
    r = bot.send("restore platform environment named demo04 from snapshot nope")
    assert "demo04-orders has no available snapshot named nope; nothing changed" in r.said[-1]
    assert set(world.instances()) == {"demo04-orders"}
    bad = bot.send("restore platform environment named demo04 from snapshot rds:demo04")
    assert bad.execution_id is None and "snapshot: 'rds:demo04' is not valid" in bad.whispered[0]


def test_a_failed_swap_puts_every_database_back(bot, rds_timing, monkeypatch) -> None:  # noqa: ANN001
    """The second database's rename fails: the first one's swap is reversed too."""
    from moto.rds.exceptions import InvalidDBInstanceStateFault
    from moto.rds.models import RDSBackend

    world.make_environment("platform", "demo05", ["orders", "users"])
    for db in ("orders", "users"):
        world.snapshot(f"demo05-{db}", f"demo05-{db}-manual")
    original = RDSBackend.modify_db_instance

    def modify(backend, ident, kwargs):  # noqa: ANN001, ANN202
        if kwargs.get("new_db_instance_identifier", "").startswith("demo05-users-previous-"):
            raise InvalidDBInstanceStateFault("Instance demo05-users is being backed up")
        return original(backend, ident, kwargs)

    monkeypatch.setattr(RDSBackend, "modify_db_instance", modify)
    r = bot.send("restore platform environment named demo05")
    assert r.reactions[-1] == "failed", r.text
    assert "swapping in the restored demo05-users failed" in r.said[-1]
    assert "every database was put back" in r.said[-1]
    dbs = world.instances()
    assert set(dbs) == {"demo05-orders", "demo05-users"}
    assert "marvin:restored-from" not in dbs["demo05-orders"]  # the original is back
    rds = boto3.client("rds")
    assert rds.describe_db_instances(DBInstanceIdentifier="demo05-orders")["DBInstances"]


def test_a_cancel_reaches_every_branch_and_removes_the_copies(bot, rds_timing) -> None:  # noqa: ANN001
    world.make_environment("platform", "demo06", ["orders", "users"])
    for db in ("orders", "users"):
        world.snapshot(f"demo06-{db}", f"demo06-{db}-manual")
    rds_timing.hold.append("demo06-*-restored-*")  # both restores are slow
    r = bot.send("restore platform environment named demo06", wait=False)
    deadline = time.monotonic() + 10
    while len([k for k in world.instances() if "-restored-" in k]) < 2:
        assert time.monotonic() < deadline, "the restores never started"
        time.sleep(0.05)
    bot.send(f"cancel {r.execution_id}")
    bot.app.wait(r.execution_id, 10)
    assert bot.app.store.get(r.execution_id)["state"] == "cancelled"
    assert "Stopped before any swap: demo06 still runs on its databases." in r.said
    assert set(world.instances()) == {"demo06-orders", "demo06-users"}
