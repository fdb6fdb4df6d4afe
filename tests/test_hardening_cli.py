"""Issue 9, operator experience: ``marvin check`` as the full gate, clean start-up errors,
``marvin run`` (--json, --version, refs, confirmation without a TTY) and the console."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    for name in ("marvin.yaml", "rbac.yaml", "directory.yaml", "vocabulary.yaml"):
        shutil.copy(ROOT / "config" / name, tmp_path / name)
    shutil.copytree(ROOT / "config" / "templates", tmp_path / "templates")
    text = (tmp_path / "marvin.yaml").read_text()
    text = text.replace("paths: [../commands]", f"paths: [{ROOT / 'commands'}]")
    (tmp_path / "marvin.yaml").write_text(text)
    return tmp_path / "marvin.yaml"


def marvin(cfg: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "marvin", "--config", str(cfg), *args],
        cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=60,
        env={**os.environ, "MARVIN_STATE": str(cfg.parent / "state.sqlite3"), **(env or {})},
    )  # fmt: skip


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def one_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("marvin: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ("logging:\n", "slack:\n  bogus_key: 1\nlogging:\n", "slack.bogus_key: unknown setting"),
        ("enabled: ${DUO_ENABLED:-false}", "enabled: maybe", "security.duo.enabled: expected"),
        ("logging:\n", "duo:\n  enabled: true\nlogging:\n", "duo: belongs under security.duo"),
        ("logging:\n", "rbac: rbac.yaml\nlogging:\n", "rbac: belongs under security.policy"),
        ("vocabulary: vocabulary.yaml", "vocabulary: nowhere.yaml", "nowhere.yaml: cannot read"),
    ],
)
def test_check_rejects_what_serve_would(cfg: Path, old: str, new: str, says: str) -> None:
    edit(cfg, old, new)
    assert says in one_error(marvin(cfg, "check"))


def test_check_warns_about_unknown_groups_and_commands_no_rule_allows(cfg: Path) -> None:
    rbac = cfg.parent / "rbac.yaml"
    edit(rbac, "groups: [ops]\n", "groups: [developpers]\n")  # a typo
    ok = marvin(cfg, "check")
    assert ok.returncode == 0, ok.stderr
    assert "group 'developpers' is in no directory group" in ok.stderr
    assert "no rule allows" not in ok.stderr  # every shipped command has a rule
    text = rbac.read_text()
    rbac.write_text(text.replace("  - name: jenkins-scale", "  - name: jenkins-scale-x", 1))
    commands = cfg.parent / "cmds"
    commands.mkdir()
    (commands / "extra.py").write_text(
        "from marvin import command\n\n"
        "@command('zz.orphan', 'list orphans', description='No rule', examples=['list orphans'])\n"
        "def orphan(ctx):\n    return 'x'\n"
    )
    edit(cfg, f"paths: [{ROOT / 'commands'}]", f"paths: [{ROOT / 'commands'}, cmds]")
    warned = marvin(cfg, "check")
    assert warned.returncode == 0, warned.stderr
    assert "no rule allows zz.orphan" in warned.stderr


def test_check_passes_without_the_secrets_and_says_so(cfg: Path) -> None:
    edit(cfg, "enabled: ${DUO_ENABLED:-false}", "enabled: true")
    env = {"DUO_SKEY": "", "DUO_IKEY": "DIXXXXXXXXXXXXXXXXXX", "DUO_HOST": "api-x.duosecurity.com"}
    result = marvin(cfg, "check", env=env)
    assert result.returncode == 0, result.stderr
    assert "security.duo.skey_env: DUO_SKEY is not set here" in result.stderr


@pytest.mark.parametrize("command", [["check"], ["run", "marvin.whoami"], ["shell"], ["serve"]])
def test_a_policy_that_does_not_fit_the_table_is_one_clean_line(
    cfg: Path, command: list[str]
) -> None:
    rbac = cfg.parent / "rbac.yaml"
    rbac.write_text(rbac.read_text() + "  - {commands: [nosuch.*], groups: [ops]}\n")
    line = one_error(marvin(cfg, *command, env={"SLACK_BOT_TOKEN": "", "SLACK_APP_TOKEN": ""}))
    assert "'nosuch.*' matches no command" in line and "rbac.yaml" in line
