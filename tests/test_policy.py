"""Policy (config/rbac.yaml): globs, targets, first-match precedence, chat: false, the flag
floor, built-ins, help visibility and start-up validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from marvin import command
from marvin.bootstrap import build_app, build_table
from marvin.config import DEFAULT_CONFIG, load_config
from marvin.core.model import User
from marvin.core.registry import CommandTable, TableError
from marvin.runtime.execution import Context
from marvin.security.authorizer import PolicyAuthorizer
from marvin.security.directory import StaticDirectory
from marvin.security.policy import Policy, PolicyError, load_policy

pytestmark = pytest.mark.timeout(30)


@command("platform.create", "create platform environment named {{ environment }}",
         description="Create", examples=["create platform environment named demo01"])  # fmt: skip
def create(ctx: Context, environment: str) -> str:
    return f"created {environment}"


@command("platform.destroy", "destroy platform environment named {{ environment }}",
         description="Destroy", examples=["destroy platform environment named demo01"])  # fmt: skip
def destroy(ctx: Context, environment: str) -> str:
    return f"destroyed {environment}"


@command("platform.list", "list platform environments", description="List",
         examples=["list platform environments"])  # fmt: skip
def listing(ctx: Context) -> str:
    return "none"


@command("api.create", "create api environment named {{ environment }}", description="Create",
         examples=["create api environment named demo01"])  # fmt: skip
def api_create(ctx: Context, environment: str) -> str:
    return f"created api {environment}"


@command("ops.reboot", "reboot {{ host }}", description="Reboot", examples=["reboot web1"],
         mfa=True, confirm=True, chat=False)  # fmt: skip
def reboot(ctx: Context, host: str) -> str:
    return f"rebooted {host}"


@command("ops.peek", "peek", description="Quick look", examples=["peek"], inline=True)
def peek(ctx: Context) -> str:
    return "peeked"


HANDLERS = [create, destroy, listing, api_create, reboot]
TABLE = build_table(HANDLERS)
CMD = {c.ref: c for c in TABLE}

POLICY = """
rules:
  - name: no-prod-destroy-from-chat
    commands: [platform.destroy]
    targets: {environment: ["prod*"]}
    groups: [platform-admins]
    chat: false
    mfa: true
  - name: production
    commands: [platform.create, "api.*"]
    targets: {environment: [prod*, live]}
    groups: [platform-admins]
    mfa: true
    confirm: true
  - commands: [platform.destroy]
    deny: true
    reason: Only production is destroyed here, and only from the CLI.
  - name: test
    commands: ["platform.*", "api.*"]
    groups: [developers, ops]
  - commands: [ops.reboot]
    everyone: true
"""


def policy(tmp_path: Path, text: str = POLICY) -> Policy:
    path = tmp_path / "rbac.yaml"
    path.write_text(text)
    return load_policy(path)


def authz(tmp_path: Path, text: str = POLICY) -> PolicyAuthorizer:
    directory = tmp_path / "directory.yaml"
    directory.write_text(
        "users:\n"
        "  admin@example.com: {groups: [ops]}\n"
        "  dev@example.com: {groups: [developers]}\n"
        "  guest@example.com: {groups: []}\n"
        "groups:\n  platform-admins: {members: [ops]}\n  auditors: {members: [ops]}\n"
    )
    a = PolicyAuthorizer(
        policy(tmp_path, text), StaticDirectory(directory), auditors_group="auditors"
    )
    a.check_table(TABLE)
    return a


def user(email: str, source: str = "cli", *groups: str) -> User:
    via = "chat" if source == "slack" else "cli"  # as the chain sets it for those front ends
    return User(id=f"local:{email}", email=email, source=source, groups=frozenset(groups), via=via)


ADMIN = user("admin@example.com", "cli", "ops", "platform-admins", "auditors")
DEV = user("dev@example.com", "cli", "developers")
NOBODY = user("guest@example.com", "cli")


def decide(a: PolicyAuthorizer, who: User, ref: str, **params: str):  # type: ignore[no-untyped-def]
    return a.decide(who, CMD[ref], params)


# -- matching and precedence ----------------------------------------------------------------


def test_globs_and_groups(tmp_path: Path) -> None:
    a = authz(tmp_path)
    assert decide(a, DEV, "platform.create", environment="demo01").allowed
    assert decide(a, DEV, "api.create", environment="demo01").allowed
    assert decide(a, DEV, "platform.list").allowed  # no environment: test rule
    refused = decide(a, NOBODY, "platform.create", environment="demo01")
    assert (
        not refused.allowed and "developers, ops" in refused.reason and "rule 4" in refused.reason
    )


def test_targets_make_production_stricter(tmp_path: Path) -> None:
    a = authz(tmp_path)
    prod = decide(a, DEV, "platform.create", environment="prod-eu")
    assert not prod.allowed and "platform-admins" in prod.reason and "production" in prod.reason
    ok = decide(a, ADMIN, "platform.create", environment="Production")  # case-insensitive
    assert ok.allowed and ok.mfa and ok.confirm
    live = decide(a, ADMIN, "api.create", environment="live")
    assert live.allowed and live.mfa
    test_env = decide(a, ADMIN, "platform.create", environment="demo01")
    assert test_env.allowed and not test_env.mfa and not test_env.confirm


def test_first_match_wins_even_over_a_later_allow(tmp_path: Path) -> None:
    a = authz(tmp_path)
    # Rule 3 denies non-production destroys before rule 4 (which would allow ops) is reached.
    refused = decide(a, ADMIN, "platform.destroy", environment="demo01")
    assert not refused.allowed and refused.reason.startswith("Only production is destroyed")


def test_chat_false_refuses_from_slack_and_points_to_the_cli(tmp_path: Path) -> None:
    a = authz(tmp_path)
    admin_slack = User("U1", "admin@example.com", source="slack", via="chat", groups=ADMIN.groups)
    chat = decide(a, admin_slack, "platform.destroy", environment="prod1")
    assert not chat.allowed
    assert "can't be run from chat" in chat.reason and "marvin run platform.destroy" in chat.reason
    cli = decide(a, ADMIN, "platform.destroy", environment="prod1")
    assert cli.allowed and cli.mfa  # same person, command line: allowed, with a push


def test_no_matching_rule_is_refused(tmp_path: Path) -> None:
    a = authz(tmp_path, "rules:\n  - {commands: [api.create], groups: [ops]}\n")
    refused = decide(a, ADMIN, "platform.create", environment="demo01")
    assert not refused.allowed and "No rule in rbac.yaml allows `platform.create`" in refused.reason


def test_command_flags_are_a_floor(tmp_path: Path) -> None:
    a = authz(tmp_path)
    cli = decide(a, NOBODY, "ops.reboot", host="web1")  # everyone: true, but the flags stay
    assert cli.allowed and cli.mfa and cli.confirm
    slack = decide(
        a, User("U2", "guest@example.com", source="slack", via="chat"), "ops.reboot", host="w"
    )
    assert not slack.allowed and "can't be run from chat" in slack.reason


def test_inline_commands_never_skip_a_required_check(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="reserved for Marvin's built-in commands"):
        build_table([peek])
    # Defence in depth, should a table be built some other way:
    table = CommandTable.build([peek])
    text = "rules:\n  - {commands: [ops.peek], everyone: true, mfa: true}\n"
    with pytest.raises(PolicyError, match="mfa/confirm can't apply to inline command"):
        policy(tmp_path, text).check(table)
    (tmp_path / "users.yaml").write_text("users: {}\n")
    a = PolicyAuthorizer(policy(tmp_path, text), StaticDirectory(tmp_path / "users.yaml"))
    assert not a.decide(ADMIN, table["ops.peek"], {}).allowed  # even with checks skipped


def test_marvin_family_is_reserved() -> None:
    @command("marvin.nuke", "nuke {{ environment }}", description="d", examples=["nuke prod"])
    def nuke(ctx: Context, environment: str) -> str:
        return "nuked"

    with pytest.raises(TableError, match="reserved"):
        build_table([nuke])


def test_builtins_are_allowed_to_everyone_identified(tmp_path: Path) -> None:
    a = authz(tmp_path, "rules:\n  - {commands: [api.create], groups: [ops]}\n")
    for ref in ("marvin.help", "marvin.whoami", "marvin.history", "marvin.status"):
        for who in (NOBODY, User("U3", "x@example.com", source="slack", via="chat")):
            assert a.decide(who, CMD[ref], {}).allowed
            assert a.visible(who, CMD[ref])
    assert {"marvin.jobs", "marvin.cancel"} <= set(CMD)


def test_visible_follows_the_policy(tmp_path: Path) -> None:
    a = authz(tmp_path)
    mine = {c.ref for c in TABLE if a.visible(DEV, c) and c.spec.family != "marvin"}
    assert mine == {"platform.create", "platform.list", "api.create", "ops.reboot"}
    assert not a.visible(NOBODY, CMD["platform.create"])
    admin_slack = User("U1", "admin@example.com", source="slack", via="chat", groups=ADMIN.groups)
    assert a.visible(ADMIN, CMD["platform.destroy"])  # production, from the CLI
    assert not a.visible(admin_slack, CMD["platform.destroy"])  # never from chat
    assert not a.visible(admin_slack, CMD["ops.reboot"])


def test_describe_lists_mfa_confirm_and_cli_only(tmp_path: Path) -> None:
    a = authz(tmp_path)
    lines = {line.split(":")[0]: line for line in a.describe(ADMIN)}
    mfa = lines["Needs a Duo push"]
    assert "platform.destroy (environment=prod*)" in mfa and "ops.reboot" in mfa
    assert "platform.create (environment=prod*|live)" in mfa
    assert "platform.create (environment=prod*|live)" in lines["Asks you to confirm"]
    cli = lines["Command line only, never from chat"]
    assert "platform.destroy (environment=prod*)" in cli and "ops.reboot" in cli
    assert "platform.create" not in cli
    assert any("auditor" in line for line in lines)
    assert "auditor" not in "\n".join(a.describe(DEV))


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: {}", "expected a mapping with one key, `rules:`"),
        ("rules: []\nextra: 1", "expected a mapping with one key"),
        ("rules: [\n", "not valid YAML"),
        ("rules:\n  - commands: [api.create]\n", "exactly one of `groups"),
        ("rules:\n  - {commands: [api.create], groups: [a], everyone: true}", "exactly one of"),
        ("rules:\n  - {commands: [api.create], groups: [a], mfa: yes please}", "mfa: expected"),
        ("rules:\n  - {commands: [api.create], groups: [a], chats: false}", "unknown key(s) chats"),
        ("rules:\n  - {commands: [], groups: [a]}", "commands: expected a name"),
        ("rules:\n  - {commands: ['API create'], groups: [a]}", "is not a command ref or glob"),
        ("rules:\n  - {commands: [api.create], groups: [a], targets: [x]}", "targets: expected"),
        ("rules:\n  - name: prod\n    commands: [api.create]\n    groups: 3", "rule 1 (prod)"),
        ("rules:\n  - just a string", "rule 1: expected a mapping"),
    ],
)
def test_malformed_rules_name_the_file_and_rule(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        policy(tmp_path, text)
    assert str(tmp_path / "rbac.yaml") in str(err.value)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules:\n  - {commands: ['platfrom.*'], groups: [a]}", "'platfrom.*' matches no command"),
        ("rules:\n  - {commands: [marvin.help], groups: [a]}", "names only built-ins"),
        (
            "rules:\n  - {commands: [platform.list], targets: {environment: x}, groups: [a]}",
            "target 'environment' is not a parameter of platform.list",
        ),
        (  # platform.create has the target, platform.list does not: that must not pass
            "rules:\n  - {commands: ['platform.*'], targets: {environment: 'prod*'}, groups: [a]}",
            "target 'environment' is not a parameter of platform.list; narrow",
        ),
        (
            "rules:\n  - {commands: ['platform.*'], groups: [a]}\n"
            "  - {name: late, commands: [platform.create], groups: [b]}",
            "rule 2 (late) can never match",
        ),
    ],
)
def test_policy_must_fit_the_table(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        policy(tmp_path, text).check(TABLE)
    assert "rbac.yaml" in str(err.value) and message in str(err.value)


def test_the_shipped_policy_fits_the_shipped_commands(tmp_path: Path) -> None:
    cfg = load_config(DEFAULT_CONFIG, env={"MARVIN_STATE": str(tmp_path / "m.sqlite3")})
    app = build_app(cfg)  # strict: raises if config/rbac.yaml names a missing command
    try:
        assert isinstance(app.authorizer, PolicyAuthorizer)
        bob = app.identify(User("local:bob@example.com", "bob@example.com", source="cli"))
        create = app.table["platform.create"]
        assert app.authorizer.decide(bob, create, {"environment": "demo01"}).allowed
        prod = app.authorizer.decide(bob, create, {"environment": "production"})
        assert not prod.allowed
        assert app.second_factor is None  # Duo is off by default: MFA commands are refused
    finally:
        app.shutdown(timeout=5)


def test_unknown_refs_are_a_start_up_error(tmp_path: Path) -> None:
    cfg_dir = tmp_path / "config"
    cfg_dir.mkdir()
    (cfg_dir / "marvin.yaml").write_text(
        DEFAULT_CONFIG.read_text().replace(
            "commands:\n  paths: [../commands]", "commands:\n  paths: []"
        )
    )
    for name in ("vocabulary.yaml", "directory.yaml", "rbac.yaml"):
        (cfg_dir / name).write_text((DEFAULT_CONFIG.parent / name).read_text())
    cfg = load_config(cfg_dir / "marvin.yaml", env={"MARVIN_STATE": str(tmp_path / "m.db")})
    with pytest.raises(ValueError, match=r"rbac.yaml: rule 1 \(production\): 'platform.\*'"):
        build_app(cfg)
