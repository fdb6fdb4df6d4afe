"""Configuration loading, the vocabulary lint, and the marvin command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from marvin import command
from marvin.bootstrap import build_table
from marvin.config import ConfigError, load_config
from marvin.core.vocabulary import lint

ROOT = Path(__file__).resolve().parent.parent
VERBS = frozenset(
    {"create", "help", "whoami", "restart", "jobs", "cancel", "history", "status", "undo"}
    | {"approve", "reject", "plan", "apply"}  # built-ins of approvals and plans
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_env_interpolation_and_defaults(tmp_path: Path) -> None:
    cfg_file = _write(tmp_path / "m.yaml", "jobs:\n  workers: ${W}\nshell:\n  user: ${U:-a@b.c}\n")
    cfg = load_config(cfg_file, env={"W": "7"})
    assert cfg.get("jobs.workers") == 7 and cfg.get("shell.user") == "a@b.c"
    assert cfg.get("jobs.queue") == 256  # schema default


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("jobs:\n  workers: ${W}\n", {}, "jobs.workers: environment variable W is not set"),
        ("jobs:\n  workers: lots\n", {}, "jobs.workers: expected a whole number from 1 to 1024"),
        ("jobs:\n  wrokers: 3\n", {}, "jobs.wrokers: unknown setting"),
        ("colour: red\n", {}, "colour: unknown setting"),
        ("jobs: [1]\n", {}, "jobs: expected a mapping"),
        ("jobs: {workers: 3\n", {}, "not valid YAML"),
    ],
)
def test_config_errors_name_file_and_key(
    tmp_path: Path, text: str, env: dict, message: str
) -> None:
    cfg_file = _write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as err:
        load_config(cfg_file, env=env)
    assert str(err.value).startswith(str(cfg_file)) and message in str(err.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "nope.yaml", env={})


def _cmd(ref: str, fmt: str, example: str):
    def handler(ctx, environment):
        return None

    handler.__module__ = "lintcase"
    return command(ref, fmt, description="d", examples=[example])(handler)


def test_lint_shapes_and_verbs() -> None:
    good = [
        _cmd(
            "platform.create",
            "create platform environment named {{ environment }}",
            "create platform environment named demo01",
        ),
        _cmd(
            "api.create",
            "create api environment named {{ environment }}",
            "create api environment named demo01",
        ),
    ]
    assert lint(build_table(good), VERBS) == []
    bad_shape = _cmd(
        "api.create", "create api environment {{ environment }}", "create api environment demo01"
    )
    problems = lint(build_table([good[0], bad_shape]), VERBS)
    assert len(problems) == 1 and "say it differently" in problems[0]
    assert "create platform environment named demo01" not in problems[0]
    assert "create <family> environment named {environment}" in problems[0]
    assert "create <family> environment {environment}" in problems[0]
    bad_verb = _cmd("db.make", "make db snapshot of {{ environment }}", "make db snapshot of x")
    (problem,) = lint(build_table([bad_verb]), VERBS)
    assert "starts with 'make', which is not a verb" in problem


def _run(*args: str, env: dict | None = None, stdin: str | None = None):
    return subprocess.run(
        [sys.executable, "-m", "marvin", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def state_env(tmp_path: Path) -> dict:
    return {"MARVIN_STATE": str(tmp_path / "state.sqlite3")}


def test_commands_lint_and_check_pass_on_repo(state_env: dict) -> None:
    out = _run("commands", "--lint", env=state_env)
    assert out.returncode == 0, out.stderr
    assert "platform.create" in out.stdout and "0 vocabulary problem(s)" in out.stderr
    out = _run("check", env=state_env)
    assert out.returncode == 0 and "OK;" in out.stdout


def test_start_refused_on_lint_errors(tmp_path: Path, state_env: dict) -> None:
    cmds = tmp_path / "cmds"
    cmds.mkdir()
    (cmds / "db.py").write_text(
        "from marvin import command\n"
        "@command('db.make', 'make db {{ name }}', description='d', examples=['make db x'])\n"
        "def make(ctx, name):\n    return name\n"
    )
    cfg = (ROOT / "config" / "marvin.yaml").read_text().replace("../commands", str(cmds))
    cfg_file = _write(ROOT / "config" / f".test-{os.getpid()}.yaml", cfg)
    try:
        out = _run("--config", str(cfg_file), "check", env=state_env)
        assert out.returncode == 2 and "vocabulary lint failed" in out.stderr
        assert "db.make" in out.stderr
        out = _run("--config", str(cfg_file), "commands", "--lint", env=state_env)
        assert out.returncode == 1 and "starts with 'make'" in out.stderr
    finally:
        cfg_file.unlink()


def test_shell_pipe_one_block_per_line(state_env: dict) -> None:
    out = _run(
        "shell",
        "--as",
        "alice@example.com",
        env=state_env,
        stdin="help platform.create\nwhoami\nfrobnicate now\n",
    )
    assert out.returncode == 0, out.stderr
    blocks = [b for b in out.stdout.split("\n\n") if b.strip()]
    assert "platform.create" in blocks[0]
    assert any("You are alice@example.com" in b for b in blocks)
    assert "I don't know that command" in blocks[-1]


def test_run_errors(state_env: dict) -> None:
    out = _run("run", "platform.nope", env=state_env)
    assert out.returncode == 2 and "no command 'platform.nope'" in out.stderr
    assert "platform.create" in out.stderr
    out = _run("run", "platform.create", env=state_env)
    assert out.returncode == 2 and "environment: is required" in out.stderr
    out = _run("run", "platform.create", "environment", env=state_env)
    assert out.returncode == 2 and "expected key=value" in out.stderr
    out = _run("run", "platform.create", "environment=demo01", "bogus=1", env=state_env)
    assert out.returncode == 2 and "bogus: is not a parameter" in out.stderr


def test_bad_config_exit_2(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.yaml", "jobs:\n  workers: 0\n")
    out = _run("--config", str(bad), "check")
    assert out.returncode == 2 and "jobs.workers" in out.stderr and str(bad) in out.stderr


def test_check_validates_policy(tmp_path: Path, state_env: dict) -> None:
    rbac = (ROOT / "config" / "rbac.yaml").read_text() + (
        '\n  - name: typo\n    commands: ["platfrom.*"]\n    groups: [ops]\n'
    )
    policy = _write(ROOT / "config" / f".test-rbac-{os.getpid()}.yaml", rbac)
    cfg = (
        (ROOT / "config" / "marvin.yaml")
        .read_text()
        .replace("policy: rbac.yaml", f"policy: {policy.name}")
    )
    cfg_file = _write(ROOT / "config" / f".test-{os.getpid()}.yaml", cfg)
    try:
        out = _run("--config", str(cfg_file), "check", env=state_env)
        assert out.returncode == 2, out.stdout
        assert "platfrom.*" in out.stderr and policy.name in out.stderr
    finally:
        cfg_file.unlink()
        policy.unlink()
