"""Two-person approval through a real Marvin (policy, store, audit, jobs) without Slack:
requests, votes by others, self-approval and non-members refused, count, reject, expiry,
the binding, fresh groups, `jobs`, and the policy's `approve:` validation."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from marvin import Integer, command
from marvin.core.model import Message
from marvin.runtime import approvals
from marvin.runtime.app import local_user
from marvin.security.authorizer import PolicyAuthorizer
from marvin.security.policy import PolicyError, load_policy
from marvin.testing import Replies, _Responder

pytestmark = pytest.mark.timeout(30)

RAN: list[tuple[str, int]] = []


@command("test.scale", "scale thing {{ name }} to {{ count }}", description="Scale",
         examples=["scale thing web to 3"], params={"count": Integer(min=0, max=10)})  # fmt: skip
def scale(ctx, name: str, count: int) -> str:
    RAN.append((name, count))
    return f"scaled {name} to {count}"


POLICY = """\
rules:
  - name: guarded
    commands: [test.scale]
    targets: {name: ["prod*"]}
    groups: [developers, admins]
    approve: {groups: [admins], count: COUNT}
  - commands: [test.scale]
    groups: [developers, admins]
"""


class Groups:
    """A directory whose membership a test can change (fresh lookups see it at once)."""

    def __init__(self, groups: dict[str, list[str]]) -> None:
        self.groups = groups
        self.fresh_lookups: list[str] = []

    def groups_for(self, email: str, *, fresh: bool = False) -> frozenset[str]:
        if fresh:
            self.fresh_lookups.append(email)
        if email not in self.groups:
            raise LookupError(email)
        return frozenset(self.groups[email])


@pytest.fixture(autouse=True)
def _clear() -> None:
    RAN.clear()


def make(marvin_bot, tmp_path: Path, count: int = 1):  # type: ignore[no-untyped-def]
    path = tmp_path / "rbac.yaml"
    path.write_text(POLICY.replace("COUNT", str(count)))
    directory = Groups(
        {
            "alice@example.com": ["developers"],
            "bob@example.com": ["admins"],
            "carol@example.com": ["admins"],
            "dave@example.com": ["developers"],
            "erin@example.com": ["admins", "developers"],
        }
    )
    authz = PolicyAuthorizer(load_policy(path), directory)
    bot = marvin_bot(scale, user="alice@example.com", authorizer=authz)
    return bot, directory


def answer(bot, who: str, ex_id: str, approve: bool = True):  # type: ignore[no-untyped-def]
    replies = Replies()
    responder = _Responder(replies)
    msg = Message(text="approve", user=local_user(who, "test"), responder=responder)
    vote = bot.app.vote(ex_id, msg, approve, lambda _origin: responder)
    return vote, replies


def events(bot, ex_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [r["event"] for r in bot.app.store.audit_rows(ex_id)]


def test_request_waits_and_another_admin_approves(marvin_bot, tmp_path: Path) -> None:
    bot, directory = make(marvin_bot, tmp_path)
    r = bot.send("scale thing prod-web to 3")
    ex_id = r.execution_id
    assert ex_id and RAN == []
    assert "needs approval by one member of admins" in r.text and f"approve {ex_id}" in r.text
    buttons = [b for b in r.blocks[0] if b["type"] == "actions"][0]["elements"]  # as Slack gets
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        ("marvin_approve", ex_id),
        ("marvin_reject", ex_id),
    ]
    assert bot.app.store.get(ex_id)["state"] == "awaiting_approval"
    jobs = bot.send("jobs").text
    assert ex_id in jobs and "awaiting approval" in jobs and "from admins" in jobs

    vote, replies = answer(bot, "bob@example.com", ex_id)
    assert vote.accepted and vote.closed
    assert "bob@example.com" in directory.fresh_lookups  # the approver's groups, uncached
    bot.app.wait(ex_id, 10)
    assert RAN == [("prod-web", 3)]
    assert bot.app.store.get(ex_id)["state"] == "succeeded"
    assert "scaled prod-web to 3" in replies.text
    trail = events(bot, ex_id)
    assert trail[:3] == ["approval_requested", "approval_granted", "approval_complete"]
    assert trail[-1] == "succeeded"
    granted = [r for r in bot.app.store.audit_rows(ex_id) if r["event"] == "approval_granted"]
    assert granted[0]["email"] == "bob@example.com"
    assert "requested by alice@example.com" in granted[0]["detail"]
    again, _ = answer(bot, "carol@example.com", ex_id)
    assert not again.accepted and "no longer open" in again.text


def test_self_approval_and_non_members_are_refused_and_audited(marvin_bot, tmp_path) -> None:
    bot, _ = make(marvin_bot, tmp_path)
    ex_id = bot.send("scale thing prod-web to 2").execution_id
    me, _ = answer(bot, "alice@example.com", ex_id)
    assert not me.accepted and "someone else" in me.text
    dev, _ = answer(bot, "dave@example.com", ex_id)
    assert not dev.accepted and "Only members of admins" in dev.text
    stranger, _ = answer(bot, "nobody@example.com", ex_id)
    assert not stranger.accepted
    assert events(bot, ex_id)[1:] == [
        "approval_self_refused",
        "approval_refused",
        "approval_refused",
    ]
    assert RAN == [] and bot.app.store.get(ex_id)["state"] == "awaiting_approval"


def test_an_approver_in_the_requesters_shoes_is_still_the_requester(marvin_bot, tmp_path):
    # erin may approve for admins, but not her own request
    bot, _ = make(marvin_bot, tmp_path)
    ex_id = bot.send("scale thing prod-web to 2", user="erin@example.com").execution_id
    vote, _ = answer(bot, "erin@example.com", ex_id)
    assert not vote.accepted


def test_count_two_needs_two_different_people(marvin_bot, tmp_path: Path) -> None:
    bot, _ = make(marvin_bot, tmp_path, count=2)
    ex_id = bot.send("scale thing prod-db to 4").execution_id
    first, _ = answer(bot, "bob@example.com", ex_id)
    assert first.accepted and not first.closed and "1 of 2" in first.text
    twice, _ = answer(bot, "bob@example.com", ex_id)
    assert not twice.accepted and "already answered" in twice.text
    assert RAN == [] and "1 of 2" not in bot.send("jobs").text  # jobs: says who approved
    assert "approved by bob@example.com" in bot.send("jobs").text
    second, replies = answer(bot, "carol@example.com", ex_id)
    assert second.accepted and second.closed
    bot.app.wait(ex_id, 10)
    assert RAN == [("prod-db", 4)]


def test_reject_ends_it(marvin_bot, tmp_path: Path) -> None:
    bot, _ = make(marvin_bot, tmp_path, count=2)
    ex_id = bot.send("scale thing prod-db to 4").execution_id
    answer(bot, "bob@example.com", ex_id)
    no, replies = answer(bot, "carol@example.com", ex_id, approve=False)
    assert no.accepted and no.closed and "rejected by carol@example.com" in replies.text
    row = bot.app.store.get(ex_id)
    assert row["state"] == "refused" and "rejected by carol" in row["reason"]
    late, _ = answer(bot, "erin@example.com", ex_id)
    assert not late.accepted and "rejected" in late.text
    assert RAN == []
    rejected = [r for r in bot.app.store.audit_rows(ex_id) if r["event"] == "approval_rejected"]
    assert rejected[0]["email"] == "carol@example.com"
    assert "requested by alice@example.com" in rejected[0]["detail"]
    assert bot.app.store.approval(ex_id)["params"] is None  # nothing kept once decided


def test_expiry_is_audited_and_refuses_late_presses(marvin_bot, tmp_path: Path) -> None:
    bot, _ = make(marvin_bot, tmp_path, count=2)
    ex_id = bot.send("scale thing prod-db to 4").execution_id
    answer(bot, "bob@example.com", ex_id)
    assert approvals.sweep(bot.app) == []  # not yet
    assert approvals.sweep(bot.app, now=time.time() + 1801) == [ex_id]
    row = bot.app.store.get(ex_id)
    assert row["state"] == "refused" and row["reason"] == "approval expired"
    expired = [r for r in bot.app.store.audit_rows(ex_id) if r["event"] == "approval_expired"]
    assert "approved by bob@example.com (1 of 2)" in expired[0]["detail"]
    assert "requested by alice@example.com" in expired[0]["detail"]
    late, _ = answer(bot, "carol@example.com", ex_id)
    assert not late.accepted and "expired" in late.text
    assert ex_id not in bot.send("jobs").text and RAN == []


def test_changed_parameters_are_never_run(marvin_bot, tmp_path: Path) -> None:
    bot, _ = make(marvin_bot, tmp_path, count=2)
    ex_id = bot.send("scale thing prod-db to 4").execution_id
    answer(bot, "bob@example.com", ex_id)
    # Someone edits the stored request between the two approvals.
    with sqlite3.connect(bot.app.store.path) as db:
        db.execute(
            "UPDATE approvals SET params = ? WHERE execution_id = ?",
            (json.dumps({"name": "prod-db", "count": 9}), ex_id),
        )
    vote, replies = answer(bot, "carol@example.com", ex_id)
    assert vote.closed and "not run" in vote.text
    assert RAN == [] and bot.app.store.get(ex_id)["state"] == "refused"
    assert "approval_binding_mismatch" in events(bot, ex_id)


def test_policy_and_groups_run_again_before_it_runs(marvin_bot, tmp_path: Path) -> None:
    bot, directory = make(marvin_bot, tmp_path)
    ex_id = bot.send("scale thing prod-web to 1").execution_id
    directory.groups["alice@example.com"] = []  # the requester left the team meanwhile
    vote, replies = answer(bot, "bob@example.com", ex_id)
    assert vote.accepted
    row = bot.app.store.get(ex_id)
    assert row["state"] == "refused" and "not allowed" in row["reason"]
    assert RAN == [] and "approved but not run" in replies.text


def test_other_parameters_are_another_request(marvin_bot, tmp_path: Path) -> None:
    bot, _ = make(marvin_bot, tmp_path)
    first = bot.send("scale thing prod-web to 1").execution_id
    second = bot.send("scale thing prod-web to 5").execution_id
    assert first != second
    answer(bot, "bob@example.com", first)
    bot.app.wait(first, 10)
    assert RAN == [("prod-web", 1)]  # the approval of the first never runs the second
    assert bot.app.store.get(second)["state"] == "awaiting_approval"
    assert approvals.binding(first, "test.scale", {"name": "prod-web", "count": 1}, "a") != (
        approvals.binding(first, "test.scale", {"name": "prod-web", "count": 5}, "a")
    )


def test_unguarded_targets_run_at_once(marvin_bot, tmp_path: Path) -> None:
    bot, _ = make(marvin_bot, tmp_path)
    r = bot.send("scale thing web to 1")
    assert RAN == [("web", 1)] and "approval" not in r.text


@pytest.mark.parametrize(
    ("approve", "problem"),
    [
        ("{count: 1}", "expected a mapping such as"),
        ("{groups: [admins], count: 0}", "approve.count"),
        ("{groups: [admins], timeout: -1}", "approve.timeout"),
        ("{groups: [admins], who: x}", "unknown key"),
        ("[admins]", "expected a mapping such as"),
    ],
)
def test_policy_validates_approve(tmp_path: Path, approve: str, problem: str) -> None:
    path = tmp_path / "rbac.yaml"
    path.write_text(
        f"rules:\n  - commands: [test.scale]\n    everyone: true\n    approve: {approve}\n"
    )
    with pytest.raises(PolicyError, match=problem):
        load_policy(path)


def test_policy_parses_approve_defaults(tmp_path: Path) -> None:
    path = tmp_path / "rbac.yaml"
    path.write_text("rules:\n  - commands: [test.scale]\n    everyone: true\n"
                    "    approve: {groups: [Admins]}\n")  # fmt: skip
    rule = load_policy(path).rules[0]
    assert rule.approve is not None
    assert rule.approve.groups == {"admins"} and rule.approve.count == 1
    assert rule.approve.timeout == 1800.0


def test_the_requester_can_cancel_a_request_awaiting_approval(marvin_bot, tmp_path: Path) -> None:
    bot, _ = make(marvin_bot, tmp_path, count=1)
    ex_id = bot.send("scale thing prod-db to 4").execution_id
    other = bot.send(f"cancel {ex_id}", user="erin@example.com")
    assert "I can't find" in other.text and bot.app.store.get(ex_id)["state"] == "awaiting_approval"
    mine = bot.send(f"cancel {ex_id}")
    assert "while it awaited approval; it will not run" in mine.text
    row = bot.app.store.get(ex_id)
    assert row["state"] == "cancelled" and "while awaiting approval" in row["reason"]
    assert bot.app.store.approval(ex_id)["state"] == "cancelled"
    late, _ = answer(bot, "bob@example.com", ex_id)
    assert not late.accepted and RAN == []
