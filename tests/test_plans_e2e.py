"""Plans end to end: ``marvin serve`` with the real command folder against the loopback fake
Slack and moto in server mode: ``plan`` a stack with moto's change sets, ``apply`` it,
``apply`` refused after drift, and approvers seeing the plan they approve."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.fakes import aws
from tests.fakes.slack import Call, FakeSlack
from tests.serving import ROOT, Serve, marvin_yaml

moto_server = aws.moto_server
pytestmark = pytest.mark.timeout(120)

ALICE, BOB = "U0ALICE", "U0BOB"
CHANNEL = "C0PLANS001"
TEMPLATE = (ROOT / "config" / "templates" / "environment.yaml").read_text()

RBAC = """
rules:
  - name: production
    commands: [platform.create]
    targets: {environment: ["prod*"]}
    groups: [developers, admins]
    approve: {groups: [admins]}
  - commands: ["platform.*", "api.*"]
    groups: [developers, admins]
"""


def write_config(root: Path) -> Path:
    (root / "rbac.yaml").write_text(RBAC)
    return marvin_yaml(
        root,
        directory="users:\n  alice@example.com: {groups: [developers]}\n"
        "  bob@example.com: {groups: [admins]}\n",
        commands={"lint": "off"},
        jobs={"workers": 4},
        security={"policy": "rbac.yaml"},
        cloudformation={
            "template": str(ROOT / "config" / "templates" / "environment.yaml"),
            "poll_seconds": 0.2,
        },
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSlack]:
    with FakeSlack.start() as f:
        for uid in (ALICE, BOB):
            f.add_user(uid, email=f"{uid[2:].lower()}@example.com")
        yield f


@pytest.fixture(scope="module")
def cfn(moto_server: str) -> object:
    return boto3.client("cloudformation", endpoint_url=moto_server, **_creds())


def _creds() -> dict[str, str]:
    return {
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }


@pytest.fixture(scope="module")
def marvin(
    fake: FakeSlack, moto_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Serve]:
    env = {"AWS_ENDPOINT_URL": moto_server, **aws.ENV}
    serve = Serve(fake, write_config(tmp_path_factory.mktemp("plans")), env=env)
    try:
        fake.wait_connected(timeout=20)
    except TimeoutError:
        serve.stop()
        raise AssertionError(serve.output()) from None
    yield serve
    assert serve.stop() == 0, serve.output()[-3000:]


def mention(fake: FakeSlack, text: str, user: str = ALICE, thread: str | None = None) -> dict:
    event = fake.app_mention(text, user=user, channel=CHANNEL, thread_ts=thread)
    fake.send_event(event)
    return event


def reply(fake: FakeSlack, thread: str, word: str, since: int, timeout: float = 20) -> Call:
    return fake.wait_for(
        "chat.postMessage",
        lambda c: c.args.get("thread_ts") == thread and word in str(c.args.get("text")),
        timeout,
        since=since,
    )


def live(cfn: object, name: str) -> bool:
    summaries = cfn.list_stacks()["StackSummaries"]  # type: ignore[attr-defined]
    return any(s["StackName"] == name and s["StackStatus"] != "DELETE_COMPLETE" for s in summaries)


def plan_id(call: Call) -> str:
    return str(call.args["text"]).split("apply ")[1].split("`")[0]


def test_plan_then_apply_a_stack(fake: FakeSlack, marvin: Serve, cfn: object) -> None:
    n = len(fake.calls)
    event = mention(fake, "plan create platform environment named demo05 with version 4.3")
    planned = reply(fake, event["ts"], "Plan for `platform.create`", n)
    text = planned.args["text"]
    assert "Stack platform-demo05 (create): 3 to add" in text and "+ Add Queue" in text
    assert not live(cfn, "platform-demo05")  # a plan changes nothing
    ex_id = plan_id(planned)
    n = len(fake.calls)
    mention(fake, f"apply {ex_id}", thread=event["ts"])
    reply(fake, event["ts"], "Stack platform-demo05 is ready", n)
    assert live(cfn, "platform-demo05")
    stack = cfn.describe_stacks(StackName="platform-demo05")["Stacks"][0]  # type: ignore[attr-defined]
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert params["Version"] == "4.3"  # exactly the planned parameters


def test_apply_refused_after_drift(fake: FakeSlack, marvin: Serve, cfn: object) -> None:
    n = len(fake.calls)
    event = mention(fake, "plan create api environment named demo06")
    ex_id = plan_id(reply(fake, event["ts"], "Plan for `api.create`", n))
    cfn.create_stack(  # type: ignore[attr-defined]
        StackName="api-demo06",
        TemplateBody=TEMPLATE,
        Parameters=[
            {"ParameterKey": "Family", "ParameterValue": "api"},
            {"ParameterKey": "Environment", "ParameterValue": "demo06"},
        ],
    )
    n = len(fake.calls)
    mention(fake, f"apply {ex_id}", thread=event["ts"])
    changed = reply(fake, event["ts"], "The state changed since", n)
    assert "already exists" in changed.args["text"]
    reply(fake, event["ts"], "failed", n)
    with sqlite3.connect(marvin.log.parent / "state.sqlite3") as db:
        events = [r[0] for r in db.execute("SELECT event FROM audit ORDER BY seq")]
    assert "apply_refused" in events


def test_approvers_see_the_plan(fake: FakeSlack, marvin: Serve, cfn: object) -> None:
    n = len(fake.calls)
    event = mention(fake, "plan create platform environment named prod-eu")
    ex_id = plan_id(reply(fake, event["ts"], "Plan for `platform.create`", n))
    n = len(fake.calls)
    mention(fake, f"apply {ex_id}", thread=event["ts"])
    request = fake.wait_for(
        "chat.postMessage", lambda c: "marvin_approve" in str(c.args), 20, since=n
    )
    assert "*Plan:*" in request.args["text"] and "+ Add Queue" in request.args["text"]
    assert not live(cfn, "platform-prod-eu")
    value = str(request.args["blocks"]).split("'value': '")[1].split("'")[0]
    fake.send_interactive(
        fake.block_actions(
            "marvin_approve",
            value,
            user=BOB,
            channel=CHANNEL,
            message_ts=request.response["ts"],
        )
    )
    reply(fake, event["ts"], "Stack platform-prod-eu is ready", n)
    deadline = time.monotonic() + 5
    while not live(cfn, "platform-prod-eu"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
