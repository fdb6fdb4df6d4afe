"""Command packs in process, without installing anything: provenance in the table, help and
lint; ``include:`` in the policy and what a pack's rules may name; who may declare a
configuration section; choosing packs. (tests/test_packs.py installs real wheels.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from marvin import command
from marvin.bootstrap import build_table
from marvin.config import OWNERS, SECTIONS, ConfigError, Setting, declare
from marvin.core.help import detail, overview
from marvin.core.packs import Loaded, Pack, PackError, select
from marvin.core.registry import TableError
from marvin.core.vocabulary import lint
from marvin.security.policy import PolicyError, load_policy


@command("team.rotate", "rotate team keys in {{ environment }}", description="Rotate",
         examples=["rotate team keys in demo01"])  # fmt: skip
def rotate(ctx, environment: str) -> str:
    return "rotated"


@command("ops.restart", "restart box {{ box }}", description="Restart", examples=["restart box a"])
def restart(ctx, box: str) -> str:
    return "restarted"


def _pack(name: str, *handlers, rules=None, verbs=()) -> Loaded:  # type: ignore[no-untyped-def]
    return Loaded(
        Pack(name, __name__, f"marvin-pack-{name}", "1.2.3"),
        tuple(handlers),
        __name__,
        rules=rules,
        verbs=frozenset(verbs),
    )


TEAM_RULES = (
    {"name": "prod", "commands": ["team.*"], "targets": {"environment": ["prod"]}, "deny": True},
    {"commands": ["team.rotate"], "groups": ["team"]},
)


def test_pack_commands_carry_their_pack_in_help_and_lint() -> None:
    table = build_table([restart], [_pack("team", rotate)])
    assert table["team.rotate"].pack == "team" and table["ops.restart"].pack == ""
    assert "From the command pack `team`" in detail(table["team.rotate"]).text
    assert "From the command pack" not in detail(table["ops.restart"]).text
    assert "_(team.rotate, pack team)_" in overview(table).text
    problems = lint(table, frozenset({"restart", "help", "whoami", "jobs", "cancel"}) | {"undo"})
    assert any(p.startswith("team.rotate (pack team): format") for p in problems)


def test_a_duplicate_ref_names_both_packs() -> None:
    @command("team.rotate", "spin team keys", description="Again", examples=["spin team keys"])
    def again(ctx) -> None: ...

    again.__module__ = "other_pack.commands"
    other = Loaded(Pack("other", "other_pack.commands", "d", "1"), (again,), "other_pack")
    with pytest.raises(TableError, match=r"\(pack team\) and other_pack.commands \(pack other\)"):
        build_table([], [_pack("team", rotate), other])


def _policy(tmp_path: Path, text: str, *packs: Loaded):  # type: ignore[no-untyped-def]
    path = tmp_path / "rbac.yaml"
    path.write_text(text)
    return load_policy(path, packs)


def test_include_splices_a_packs_rules_where_the_operator_puts_them(tmp_path: Path) -> None:
    text = (
        "rules:\n"
        "  - {name: freeze, commands: [team.rotate], targets: {environment: [demo01]}, "
        "deny: true}\n"
        "  - include: team\n"
        "  - {commands: [ops.restart], groups: [ops]}\n"
    )
    policy = _policy(tmp_path, text, _pack("team", rotate, rules=TEAM_RULES))
    assert [r.label for r in policy.rules] == [
        "rule 1 (freeze)",
        "pack team rule 1 (prod)",
        "pack team rule 2",
        "rule 3",
    ]
    table = build_table([restart], [_pack("team", rotate, rules=TEAM_RULES)])
    policy.check(table)
    cmd = table["team.rotate"]
    # The operator's rule above the include wins; then the pack's own, in its order.
    assert policy.first(cmd, {"environment": "demo01"}).label == "rule 1 (freeze)"
    assert policy.first(cmd, {"environment": "prod"}).label == "pack team rule 1 (prod)"
    assert policy.first(cmd, {"environment": "qa"}).groups == frozenset({"team"})


def test_a_packs_rules_may_name_only_its_own_commands(tmp_path: Path) -> None:
    greedy = ({"commands": ["*.re*"], "everyone": True},)
    pack = _pack("team", rotate, rules=greedy)
    policy = _policy(tmp_path, "rules:\n  - include: team\n", pack)
    with pytest.raises(PolicyError, match=r"pack team rule 1: '\*\.re\*' matches ops.restart"):
        policy.check(build_table([restart], [pack]))


@pytest.mark.parametrize(
    ("text", "packs", "message"),
    [
        ("  - include: team\n", (), r"rule 1 \(include\): pack 'team' is not enabled"),
        ("  - include: team\n", ("bare",), r"ships no rbac.yaml"),
        ("  - {include: team, groups: [x]}\n", ("team",), r"expected only `include: <pack"),
        ("  - include: team\n  - include: team\n", ("team",), r"rule 2 \(include\).*already"),
        ("  - include: team\n", ("bad",), r"rule 1 \(include: team\): its rbac.yaml: rule 1: say"),
    ],
)
def test_bad_includes_are_start_up_errors(
    tmp_path: Path, text: str, packs: tuple[str, ...], message: str
) -> None:
    made = {
        "team": _pack("team", rotate, rules=TEAM_RULES),
        "bare": _pack("team", rotate),  # enabled, but ships no rules
        "bad": _pack("team", rotate, rules=({"commands": ["team.rotate"]},)),
    }
    with pytest.raises(PolicyError, match=message):
        _policy(tmp_path, "rules:\n" + text, *(made[p] for p in packs))


def test_a_pack_cannot_declare_marvins_sections_but_may_declare_its_own() -> None:
    with pytest.raises(ConfigError, match="'consul' belongs to marvin.actions.consul"):
        declare("consul", {"address": Setting(str, "x")}, owner="team_pack.commands")
    assert SECTIONS["consul"]["address"].default == ""  # unchanged
    try:
        declare("team_zz", {"size": Setting(int, 3)}, owner="team_pack.commands")
        declare("team_zz", {"more": Setting(int, 4)}, owner="team_pack.settings")  # same package
        with pytest.raises(ConfigError, match="belongs to team_pack.commands"):
            declare("team_zz", {"size": Setting(int, 9)}, owner="other_pack")
        assert SECTIONS["team_zz"]["size"].default == 3
    finally:
        SECTIONS.pop("team_zz", None)
        OWNERS.pop("team_zz", None)


def test_select_names_the_installed_packs() -> None:
    have = {n: Pack(n, f"{n}_pack", f"marvin-pack-{n}", "1") for n in ("a", "b")}
    assert [p.name for p in select(["*"], have)] == ["a", "b"]
    assert [p.name for p in select(["b"], have)] == ["b"]
    with pytest.raises(PackError, match=r"pack 'c' is not installed \(installed packs: a, b\)"):
        select(["a", "c"], have)
