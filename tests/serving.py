"""What the end-to-end tests share: a marvin.yaml in a test folder (the shape of
config/marvin.yaml, with the project's commands and policy unless told otherwise), and
``marvin serve`` as a subprocess on the loopback fake Slack."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.fakes.slack import FakeSlack

__all__ = ["ROOT", "Serve", "marvin_yaml"]

ROOT = Path(__file__).resolve().parent.parent


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def marvin_yaml(root: Path, *, directory: str | None = None, **sections: Any) -> Path:
    """Write ``root/marvin.yaml``: state in ``root``, the project's commands, vocabulary and
    policy, a static directory (``directory`` is its text, written to directory.yaml), fast
    Slack pings; ``sections`` are merged over that (``jobs={"workers": 4}``...)."""
    root.mkdir(parents=True, exist_ok=True)
    if directory is not None:
        (root / "directory.yaml").write_text(directory)
    data: dict[str, Any] = {
        "commands": {"paths": [str(ROOT / "commands")]},
        "vocabulary": str(ROOT / "config" / "vocabulary.yaml"),
        "state": {"sqlite": "state.sqlite3"},
        "jobs": {"workers": 8, "grace_seconds": 2},
        "security": {
            "policy": str(ROOT / "config" / "rbac.yaml"),
            "directory": {"backend": "static", "path": "directory.yaml"},
        },
        "slack": {"ping_interval": 1},
        "logging": {"level": "info"},
    }
    config = root / "marvin.yaml"
    config.write_text(yaml.safe_dump(_merge(data, sections), sort_keys=False))
    return config


class Serve:
    """``python -m marvin --config <config> serve`` pointed at ``fake``."""

    def __init__(
        self, fake: FakeSlack, config: Path, *extra: str, env: dict[str, str] | None = None
    ) -> None:
        self.log = config.parent / f"serve-{time.monotonic_ns()}.log"
        full_env = {**os.environ, **fake.env(), **(env or {}), "PYTHONPATH": str(ROOT)}
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "marvin", "--config", str(config), "serve", *extra],
                cwd=ROOT,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"serve did not stop:\n{self.output()[-3000:]}") from None
