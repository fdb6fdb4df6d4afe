"""The out-of-band checks mechanism (marvin.core.checks, marvin.runtime.checks) with test
commands and checks, through the real pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from marvin import Verdict, check, command
from marvin.bootstrap import build_table
from marvin.core.registry import TableError
from marvin.security.authorizer import PolicyAuthorizer
from marvin.security.policy import PolicyError, load_policy
from marvin.testing import TestDirectory as Groups

RAN: list[tuple[str, str]] = []  # (what, environment) in the order things ran


@check("t_window", description="only environments outside a change freeze")
def t_window(ctx, environment: str) -> Verdict:  # noqa: ANN001
    RAN.append(("check", environment))
    if environment == "frozen":
        return Verdict.refuse("frozen is in a change freeze")
    return Verdict.ok(f"{environment} is open for changes", record=f"window open: {environment}")


@check("t_broken", description="a check whose backend fails")
def t_broken(ctx, environment: str) -> Verdict:  # noqa: ANN001
    raise RuntimeError(f"backend exploded for {environment}")


@check("t_sloppy", description="a check that forgets to answer")
def t_sloppy(ctx) -> bool:  # noqa: ANN001
    return True


@check("t_slow", description="a check that takes its time")
def t_slow(ctx) -> Verdict:  # noqa: ANN001
    ctx.sleep(10)
    return Verdict.ok("slow but fine")


@command("test.change", "change {{ environment }}", description="Changes", examples=["change x"],
         checks=["t_window"])  # fmt: skip
def change(ctx, environment):  # noqa: ANN001, ANN201
    RAN.append(("handler", environment))
    return f"changed {environment}"


@command("test.fragile", "fragile {{ environment }}", description="Two checks",
         examples=["fragile x"], checks=["t_window", "t_broken"])  # fmt: skip
def fragile(ctx, environment):  # noqa: ANN001, ANN201
    RAN.append(("handler", environment))


@command("test.sloppy", "sloppy", description="Bad check", examples=["sloppy"],
         checks=["t_sloppy"])  # fmt: skip
def sloppy(ctx):  # noqa: ANN001, ANN201
    RAN.append(("handler", "sloppy"))


@command("test.asked", "asked {{ environment }}", description="Confirms", examples=["asked x"],
         checks=["t_window"], confirm=True)  # fmt: skip
def asked(ctx, environment):  # noqa: ANN001, ANN201
    RAN.append(("handler", environment))


@command("test.slow", "slowcheck", description="Slow check", examples=["slowcheck"],
         checks=["t_slow"], timeout=0.5)  # fmt: skip
def slow(ctx):  # noqa: ANN001, ANN201
    RAN.append(("handler", "slow"))


@command("test.plain", "plain {{ environment }}", description="No checks of its own",
         examples=["plain x"])  # fmt: skip
def plain(ctx, environment):  # noqa: ANN001, ANN201
    RAN.append(("handler", environment))
    return "plain done"


HANDLERS = [change, fragile, sloppy, asked, slow, plain]


@pytest.fixture(autouse=True)
def _clear() -> None:
    RAN.clear()


def events(bot, ex_id: str) -> list[tuple[str, str]]:  # noqa: ANN001
    return [(r["event"], r["detail"] or "") for r in bot.app.store.audit_rows(ex_id)]


def test_passing_check_reports_evidence_then_runs(marvin_bot) -> None:  # noqa: ANN001
    bot = marvin_bot(*HANDLERS)
    r = bot.send("change demo")
    assert r.reactions == ["accepted", "succeeded"], r.text
    assert RAN == [("check", "demo"), ("handler", "demo")]
    assert "✓ t_window: demo is open for changes" in r.said
    assert r.said[-1].startswith("changed demo")
    # The audit keeps the fuller record, with the execution.
    assert ("check_passed", "t_window: window open: demo") in events(bot, r.execution_id)


def test_refusing_check_stops_before_the_handler(marvin_bot) -> None:  # noqa: ANN001
    bot = marvin_bot(*HANDLERS)
    r = bot.send("change frozen")
    assert RAN == [("check", "frozen")]
    assert r.reactions == ["accepted", "failed"]
    assert "was not run" in r.said[-1] and "frozen is in a change freeze" in r.said[-1]
    row = bot.app.store.get(r.execution_id)
    assert row["state"] == "refused" and row["reason"].startswith("check t_window:")
    assert ("check_refused", "t_window: frozen is in a change freeze") in events(
        bot, r.execution_id
    )
    assert "succeeded" not in [e for e, _ in events(bot, r.execution_id)]


def test_erroring_check_fails_closed(marvin_bot) -> None:  # noqa: ANN001
    bot = marvin_bot(*HANDLERS)
    r = bot.send("fragile demo")
    assert RAN == [("check", "demo")]  # the handler never ran
    assert bot.app.store.get(r.execution_id)["state"] == "refused"
    assert "RuntimeError: backend exploded for demo" in r.said[-1]
    got = [e for e, _ in events(bot, r.execution_id)]
    assert got.count("check_passed") == 1 and got.count("check_refused") == 1


def test_check_without_a_verdict_fails_closed(marvin_bot) -> None:  # noqa: ANN001
    bot = marvin_bot(*HANDLERS)
    r = bot.send("sloppy")
    assert RAN == [] and bot.app.store.get(r.execution_id)["state"] == "refused"
    assert "gave no verdict" in r.said[-1]


def test_checks_run_after_the_confirmation(marvin_bot) -> None:  # noqa: ANN001
    bot = marvin_bot(*HANDLERS)
    declined = bot.send("asked demo", confirm=False)
    assert declined.prompts and RAN == []  # asked, refused: nothing checked, nothing run
    confirmed = bot.send("asked frozen", confirm=True)
    assert confirmed.prompts and RAN == [("check", "frozen")]
    assert bot.app.store.get(confirmed.execution_id)["state"] == "refused"


def test_a_slow_check_is_under_the_command_timeout(marvin_bot) -> None:  # noqa: ANN001
    bot = marvin_bot(*HANDLERS)
    r = bot.send("slowcheck", timeout=10)
    assert bot.app.store.get(r.execution_id)["state"] == "timed_out"
    assert RAN == []


def test_help_lists_a_commands_checks(marvin_bot) -> None:  # noqa: ANN001
    bot = marvin_bot(*HANDLERS)
    text = bot.send("help test.fragile").text
    assert "Checked before it runs:" in text
    assert "`t_window`: only environments outside a change freeze" in text
    assert "`t_broken`: a check whose backend fails" in text
    assert "Checked before it runs" not in bot.send("help test.plain").text


def test_unknown_or_unfitting_checks_are_startup_errors() -> None:
    @command("test.typo", "typo", description="x", examples=["typo"], checks=["t_windw"])
    def typo(ctx):  # noqa: ANN001, ANN202
        return None

    with pytest.raises(TableError, match="no check named 't_windw'"):
        build_table([typo])

    @command("test.noenv", "noenv", description="x", examples=["noenv"], checks=["t_window"])
    def noenv(ctx):  # noqa: ANN001, ANN202
        return None

    with pytest.raises(TableError, match="'t_window' reads environment"):
        build_table([noenv])


def test_two_functions_cannot_share_a_check_name() -> None:
    with pytest.raises(ValueError, match="already defined"):

        @check("t_window", description="an impostor")
        def impostor(ctx) -> Verdict:  # noqa: ANN001
            return Verdict.ok("trust me")


POLICY = """\
rules:
  - commands: [test.plain]
    targets: {environment: ["prod*"]}
    everyone: true
    checks: [t_window]
  - commands: ["test.*"]
    everyone: true
"""


def test_policy_rule_names_checks(marvin_bot, tmp_path: Path) -> None:  # noqa: ANN001
    path = tmp_path / "rbac.yaml"
    path.write_text(POLICY.replace("prod*", "frozen"))
    directory = Groups({"tester@example.com": ["ops"]})
    bot = marvin_bot(*HANDLERS, authorizer=PolicyAuthorizer(load_policy(path), directory))
    r = bot.send("plain frozen")  # the rule that decides names t_window
    assert RAN == [("check", "frozen")]
    assert bot.app.store.get(r.execution_id)["state"] == "refused"
    ok = bot.send("plain demo")  # decided by the second rule: no checks
    assert RAN[-1] == ("handler", "demo") and len(RAN) == 2
    assert bot.app.store.get(ok.execution_id)["state"] == "succeeded"


def test_policy_naming_an_unknown_check_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rbac.yaml"
    path.write_text(POLICY.replace("[t_window]", "[t_nope]"))
    table = build_table(HANDLERS)
    with pytest.raises(PolicyError, match="no check named 't_nope'"):
        load_policy(path).check(table)
    path.write_text(POLICY.replace("[t_window]", "t_window\n    extra: 1"))
    with pytest.raises(PolicyError, match="unknown key"):
        load_policy(path)


def test_unknown_check_at_run_time_fails_closed(marvin_bot, tmp_path: Path) -> None:  # noqa: ANN001
    # The test harness binds the policy leniently (warnings only): the run itself must refuse.
    path = tmp_path / "rbac.yaml"
    path.write_text(POLICY.replace("prod*", "demo").replace("[t_window]", "[t_gone]"))
    directory = Groups({"tester@example.com": ["ops"]})
    bot = marvin_bot(*HANDLERS, authorizer=PolicyAuthorizer(load_policy(path), directory))
    r = bot.send("plain demo")
    assert RAN == [] and bot.app.store.get(r.execution_id)["state"] == "refused"
    assert "the check 't_gone' is not loaded" in r.said[-1]
