"""Plans and apply through a real Marvin: CloudFormation change sets against moto (server
mode), the planner/apply mechanism (audit, fingerprint, once only, drift), commands without a
planner, and the change-set planner's Add/Modify/Remove, replacements and "no changes"."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

import commands.api
import commands.platform
from marvin import command
from marvin.actions.cfn_plan import StackPlan, plan_stack
from marvin.config import DEFAULT_CONFIG, load_config
from marvin.runtime.plans import Plan, fingerprint, plans
from tests.fakes import aws
from tests.test_cloudformation_action import FakeCtx

moto_server = aws.moto_server
aws_env = aws.aws_env
pytestmark = pytest.mark.timeout(60)
TEMPLATE = (Path(__file__).parent.parent / "config" / "templates" / "environment.yaml").read_text()


@pytest.fixture
def bot(marvin_bot, aws_env, tmp_path):  # type: ignore[no-untyped-def]
    cfg = load_config(DEFAULT_CONFIG, env={**os.environ, "MARVIN_STATE": str(tmp_path / "s.db")})
    cfg.data.setdefault("cloudformation", {})["poll_seconds"] = 0.05
    return marvin_bot(commands.platform, commands.api, user="alice@example.com", config=cfg)


def live_stacks() -> list[str]:
    cfn = boto3.client("cloudformation")
    return [
        s["StackName"]
        for s in cfn.list_stacks()["StackSummaries"]
        if s["StackStatus"] != "DELETE_COMPLETE"
    ]


def test_plan_create_shows_the_change_set_and_changes_nothing(bot) -> None:  # type: ignore[no-untyped-def]
    r = bot.send("plan create platform environment named demo01 with dataset small")
    ex_id = r.execution_id or bot.app.store.recent(None, 1)[0]["id"]
    bot.app.wait(ex_id, 20)
    text = r.text
    assert "Stack platform-demo01 (create): 3 to add" in text
    assert "+ Add Queue (AWS::SQS::Queue)" in text and "+ Add DatasetParameter" in text
    assert f"apply {ex_id}" in text
    assert live_stacks() == []  # the change set and its REVIEW_IN_PROGRESS stack are gone
    row = bot.app.store.get(ex_id)
    assert row["ref"] == "platform.create" and row["state"] == "succeeded"
    assert "planned" in [a["event"] for a in bot.app.store.audit_rows(ex_id)]

    done = bot.send(f"apply {ex_id}")
    applied = bot.app.store.recent(None, 1)[0]["id"]
    bot.app.wait(applied, 30)
    assert applied != ex_id and bot.app.store.get(applied)["state"] == "succeeded"
    assert "Stack platform-demo01 is ready" in done.text
    assert live_stacks() == ["platform-demo01"]
    assert "applied" in [a["event"] for a in bot.app.store.audit_rows(applied)]
    again = bot.send(f"apply {ex_id}")
    assert "applied already" in again.text


def test_apply_is_refused_after_drift_and_offers_a_new_plan(bot) -> None:  # type: ignore[no-untyped-def]
    bot.send("plan create api environment named demo02")
    plan_id = bot.app.store.recent(None, 1)[0]["id"]
    bot.app.wait(plan_id, 20)
    # Someone creates the stack by hand meanwhile.
    boto3.client("cloudformation").create_stack(
        StackName="api-demo02",
        TemplateBody=TEMPLATE,
        Parameters=[
            {"ParameterKey": "Family", "ParameterValue": "api"},
            {"ParameterKey": "Environment", "ParameterValue": "demo02"},
        ],
    )
    r = bot.send(f"apply {plan_id}")
    applied = bot.app.store.recent(None, 1)[0]["id"]
    bot.app.wait(applied, 20)
    assert "The state changed since" in r.text and "already exists" in r.text
    row = bot.app.store.get(applied)
    assert row["state"] == "failed" and "changed since" in row["reason"]
    events = [a["event"] for a in bot.app.store.audit_rows(applied)]
    assert "apply_refused" in events and "applied" not in events
    assert bot.app.store.plan(applied) is not None  # the new plan, kept under this id


def test_commands_without_a_planner_say_so(marvin_bot) -> None:  # type: ignore[no-untyped-def]
    @command("test.poke", "poke {{ thing }}", description="Pokes", examples=["poke x"])
    def poke(ctx, thing: str) -> str:
        return "poked"

    bot = marvin_bot(poke)
    r = bot.send("plan poke x")
    assert "has no planner" in r.text and r.execution_id is None
    assert bot.send("plan frobnicate").whispered  # unknown text: the usual answer


CALLS: list[str] = []
STATE = {"value": 1}


def plan_bump(ctx, to: str) -> Plan:
    CALLS.append("plan")
    return Plan(f"value {STATE['value']} → {to}", basis={"value": STATE["value"]})


@plans(plan_bump)
@command("test.bump", "bump to {{ to }}", description="Bumps", examples=["bump to 3"])
def bump(ctx, to: str) -> str:
    CALLS.append("run")
    STATE["value"] = int(to)
    return f"bumped to {to}"


def test_apply_runs_exactly_the_plan_once(marvin_bot) -> None:  # type: ignore[no-untyped-def]
    CALLS.clear()
    STATE["value"] = 1
    bot = marvin_bot(bump)
    r = bot.send("plan bump to 5")
    plan_id = bot.app.store.recent(None, 1)[0]["id"]
    bot.app.wait(plan_id, 10)
    assert "value 1 → 5" in r.text and CALLS == ["plan"] and STATE["value"] == 1
    stored = bot.app.store.plan(plan_id)
    assert stored["fingerprint"] == fingerprint("test.bump", {"to": "5"}, {"value": 1})
    bot.send(f"apply {plan_id}")
    bot.app.wait(bot.app.store.recent(None, 1)[0]["id"], 10)
    assert CALLS == ["plan", "plan", "run"] and STATE["value"] == 5
    assert bot.app.store.plan(plan_id)["params"] is None  # kept only until applied

    bot.send("plan bump to 7")
    second = bot.app.store.recent(None, 1)[0]["id"]
    bot.app.wait(second, 10)
    STATE["value"] = 6  # drift
    r = bot.send(f"apply {second}")
    bot.app.wait(bot.app.store.recent(None, 1)[0]["id"], 10)
    assert "The state changed since" in r.text and "value 6 → 7" in r.text
    assert STATE["value"] == 6 and CALLS[-1] == "plan"


def test_an_old_plan_expires_and_forgets_its_parameters(marvin_bot) -> None:  # type: ignore[no-untyped-def]
    CALLS.clear()
    STATE["value"] = 1
    bot = marvin_bot(bump)
    bot.send("plan bump to 5")
    plan_id = bot.app.store.recent(None, 1)[0]["id"]
    bot.app.wait(plan_id, 10)
    day_ago = bot.app.store.plan(plan_id)["created_at"] - 25 * 3600
    bot.app.store.db.execute("UPDATE plans SET created_at = ? WHERE execution_id = ?",
                             (day_ago, plan_id))  # fmt: skip
    r = bot.send(f"apply {plan_id}")
    assert "has expired" in r.text and "state.plan_hours" in r.text
    assert STATE["value"] == 1 and CALLS == ["plan"]  # nothing ran
    assert bot.app.store.plan(plan_id)["params"] is None  # the parameters are gone
    # the sweep forgets them too, without anyone asking
    bot.send("plan bump to 6")
    fresh = bot.app.store.recent(None, 1)[0]["id"]
    bot.app.wait(fresh, 10)
    bot.app.store.db.execute("UPDATE plans SET created_at = ? WHERE execution_id = ?",
                             (day_ago, fresh))  # fmt: skip
    bot.app._sweep()
    assert bot.app.store.plan(fresh)["params"] is None


# -- the change-set planner on its own ---------------------------------------------------------


def _params(version: str) -> dict[str, str]:
    return {"Family": "platform", "Environment": "demo03", "Version": version}


def test_update_plans_show_modify_and_no_changes(aws_env) -> None:  # type: ignore[no-untyped-def]
    cfn = boto3.client("cloudformation")
    cfn.create_stack(
        StackName="platform-demo03",
        TemplateBody=TEMPLATE,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in _params("1").items()],
    )
    ctx = FakeCtx()
    ctx.execution_id = "ex-abcdef"  # type: ignore[attr-defined]
    ctx.log.warning = lambda *a, **k: None  # type: ignore[attr-defined]
    same = plan_stack(ctx, cfn, name="platform-demo03", template_body=TEMPLATE,
                      parameters=_params("1"), kind="UPDATE", poll_seconds=0.05)  # fmt: skip
    assert same.changes == () and same.summary() == "Stack platform-demo03: no changes."
    renamed = TEMPLATE.replace("-jobs", "-work")
    diff = plan_stack(ctx, cfn, name="platform-demo03", template_body=renamed,
                      parameters=_params("1"), kind="UPDATE", poll_seconds=0.05)  # fmt: skip
    assert [c[:2] for c in diff.changes] == [("Modify", "Queue")]
    assert "~ Modify Queue (AWS::SQS::Queue)" in diff.summary()
    assert cfn.list_change_sets(StackName="platform-demo03")["Summaries"] == []


def test_replacements_removals_and_no_change_errors_via_stubber() -> None:
    """AWS's shapes moto does not produce: a replacement and a removal; "no updates" raised
    at creation (older behaviour); a failure with another reason is an error."""
    client = boto3.client("cloudformation", region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")  # fmt: skip
    ctx = FakeCtx()
    ctx.execution_id = "ex-abcdef"  # type: ignore[attr-defined]
    ctx.log.warning = lambda *a, **k: None  # type: ignore[attr-defined]
    changes = [
        {"Type": "Resource", "ResourceChange": {"Action": "Modify", "LogicalResourceId": "Db",
         "ResourceType": "AWS::RDS::DBInstance", "Replacement": "True"}},
        {"Type": "Resource", "ResourceChange": {"Action": "Remove", "LogicalResourceId": "Old",
         "ResourceType": "AWS::SQS::Queue"}},
    ]  # fmt: skip
    with Stubber(client) as stub:
        stub.add_response("create_change_set", {"Id": "arn:cs", "StackId": "arn:st"})
        stub.add_response(
            "describe_change_set",
            {"Status": "CREATE_COMPLETE", "Changes": changes[:1], "NextToken": "t2"},
        )
        stub.add_response(
            "describe_change_set", {"Status": "CREATE_COMPLETE", "Changes": changes[1:]}
        )
        stub.add_response("delete_change_set", {})
        got = plan_stack(ctx, client, name="s", template_body="{}", parameters={}, kind="UPDATE",
                         poll_seconds=0.01)  # fmt: skip
    text = got.summary()
    assert "~ Modify Db (AWS::RDS::DBInstance) — REPLACEMENT" in text
    assert "- Remove Old (AWS::SQS::Queue)" in text and "1 to modify, 1 to remove" in text
    with Stubber(client) as stub:
        stub.add_client_error(
            "create_change_set", "ValidationError", "No updates are to be performed."
        )
        assert plan_stack(ctx, client, name="s", template_body="{}", parameters={},
                          kind="UPDATE") == StackPlan("s", "UPDATE", ())  # fmt: skip
    with Stubber(client) as stub:
        stub.add_response("create_change_set", {"Id": "arn:cs", "StackId": "arn:st"})
        stub.add_response("describe_change_set", {"Status": "FAILED", "StatusReason": "bad"})
        stub.add_response("delete_change_set", {})
        with pytest.raises(Exception, match="failed: bad"):
            plan_stack(ctx, client, name="s", template_body="{}", parameters={}, kind="UPDATE",
                       poll_seconds=0.01)  # fmt: skip
