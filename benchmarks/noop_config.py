"""A Marvin configuration for benchmarks: one command that does nothing (``bench.noop``), a
static directory with one user in ``ops``, and the project's vocabulary."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["noop_config"]


def noop_config(tmp: Path, email: str, *, rule: str, extra: str = "") -> Path:
    """Write the config into ``tmp`` and return marvin.yaml's path. ``rule``: who may run
    ``bench.*`` (a policy rule's tail, e.g. ``everyone: true``); ``extra``: more YAML lines."""
    (tmp / "commands").mkdir()
    (tmp / "commands" / "bench.py").write_text(
        "from marvin import command\n\n"
        "@command('bench.noop', 'noop', description='Does nothing', examples=['noop'])\n"
        "def noop(ctx):\n    return 'ok'\n"
    )
    (tmp / "rbac.yaml").write_text(f"rules:\n  - commands: ['bench.*']\n    {rule}\n")
    (tmp / "directory.yaml").write_text(f"users:\n  {email}: {{groups: [ops]}}\n")
    config = tmp / "marvin.yaml"
    config.write_text(
        "commands: {paths: [commands], lint: 'off'}\n"
        f"vocabulary: {ROOT / 'config' / 'vocabulary.yaml'}\n"
        "state: {sqlite: state.sqlite3}\n"
        "security: {policy: rbac.yaml, directory: {backend: static, path: directory.yaml}}\n"
        "logging: {level: warning}\n" + extra
    )
    return config
