"""platform.create and api.create against moto in server mode, through the real pipeline."""

from __future__ import annotations

import subprocess
import sys

import boto3
import pytest

import commands.api
import commands.platform
from marvin.config import DEFAULT_CONFIG, load_config
from tests.fakes import aws

moto_server = aws.moto_server
aws_env = aws.aws_env


@pytest.fixture
def bot(marvin_bot, aws_env, tmp_path):
    import os

    cfg = load_config(
        DEFAULT_CONFIG,
        env={**os.environ, "MARVIN_STATE": str(tmp_path / "s.sqlite3")},
    )
    cfg.data.setdefault("cloudformation", {})["poll_seconds"] = 0.05
    return marvin_bot(commands.platform, commands.api, user="alice@example.com", config=cfg)


def _stack(name: str) -> dict:
    cfn = boto3.client("cloudformation")
    return cfn.describe_stacks(StackName=name)["Stacks"][0]


@pytest.mark.timeout(60)
def test_create_platform_environment(bot) -> None:
    replies = bot.send("create platform environment named demo01 with dataset small")
    assert replies.said[0] == "Creating platform environment demo01"
    assert "Stack platform-demo01 is ready" in replies.said[1]
    assert replies.said[-1].startswith("Your requested workflow is complete.")
    assert replies.execution_id in replies.said[-1]
    assert replies.reactions == ["accepted", "succeeded"]
    stack = _stack("platform-demo01")
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert params["Dataset"] == "small" and params["Version"] == "latest"
    tags = {t["Key"]: t["Value"] for t in stack["Tags"]}
    assert tags == {
        "marvin:requested-by": "alice@example.com",
        "marvin:execution-id": replies.execution_id,
    }
    ssm = boto3.client("ssm")
    assert ssm.get_parameter(Name="/platform/demo01/version")["Parameter"]["Value"] == "latest"
    row = bot.app.store.get(replies.execution_id)
    assert row["state"] == "succeeded" and row["email"] == "alice@example.com"


@pytest.mark.timeout(60)
def test_api_shares_vocabulary_and_fails_with_stack_reason(bot) -> None:
    ok = bot.send("create api environment named demo01 with version 2.1")
    assert ok.reactions[-1] == "succeeded"
    assert _stack("api-demo01")["StackStatus"] == "CREATE_COMPLETE"
    again = bot.send("create api environment named demo01")
    assert again.reactions[-1] == "failed"
    assert "stack api-demo01 already exists" in again.said[-1]
    assert again.execution_id in again.said[-1]
    assert bot.app.store.get(again.execution_id)["state"] == "failed"


@pytest.mark.timeout(60)
def test_bad_input_changes_nothing(bot) -> None:
    replies = bot.send("create platform environment named Demo_01")
    assert replies.execution_id is None
    assert "environment: 'Demo_01' is not valid" in replies.whispered[0]
    cfn = boto3.client("cloudformation")
    assert cfn.list_stacks()["StackSummaries"] == []


@pytest.mark.timeout(90)
def test_cli_run_creates_stack(aws_env, tmp_path) -> None:
    import os

    env = {**os.environ, "MARVIN_STATE": str(tmp_path / "cli.sqlite3")}
    argv = [
        sys.executable,
        "-m",
        "marvin",
        "run",
        "platform.create",
        "environment=testing",
        "requested_version=4.3",
        "--as",
        "bob@example.com",
    ]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Creating platform environment testing" in proc.stdout
    assert "Your requested workflow is complete." in proc.stdout
    params = {
        p["ParameterKey"]: p["ParameterValue"] for p in _stack("platform-testing")["Parameters"]
    }
    assert params["Version"] == "4.3"
    bad = subprocess.run(
        argv[:5] + ["environment=Bad!"], env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "environment: 'Bad!' is not valid" in bad.stderr


@pytest.mark.timeout(60)
def test_snapshot_database(marvin_bot, aws_env, tmp_path) -> None:
    import os

    import commands.database

    rds = boto3.client("rds")
    rds.create_db_instance(
        DBInstanceIdentifier="demo01-orders",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="admin",
        MasterUserPassword="not-a-real-secret",
        AllocatedStorage=20,
    )
    cfg = load_config(DEFAULT_CONFIG, env={**os.environ, "MARVIN_STATE": str(tmp_path / "d.db")})
    cfg.data.setdefault("aws", {})["poll_seconds"] = 0.05
    bot = marvin_bot(commands.database, user="alice@example.com", config=cfg)
    r = bot.send("snapshot database orders in demo01 as before-migration")
    assert r.said[0] == "Snapshotting orders in demo01"
    assert r.reactions == ["accepted", "succeeded"], r.text
    snaps = rds.describe_db_snapshots(DBInstanceIdentifier="demo01-orders", SnapshotType="manual")[
        "DBSnapshots"
    ]
    assert len(snaps) == 1 and snaps[0]["DBSnapshotIdentifier"] in r.said[-1]
    assert snaps[0]["DBSnapshotIdentifier"].startswith("demo01-orders-before-migration-")
    missing = bot.send("snapshot database users in demo01")
    assert missing.reactions[-1] == "failed"
    assert "RDS refused the snapshot of demo01-users" in missing.said[-1]
