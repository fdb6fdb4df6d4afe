"""``config/marvin.yaml``: ``${ENV_VAR}`` interpolation and validation with errors that name the
file, the key and what was expected. Secrets are never written in the file: only ``${VARS}``."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ConfigError", "Config", "load_config", "DEFAULT_CONFIG"]

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "marvin.yaml"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """Invalid configuration; the message names the file and the key."""


# key -> (type, default, check, what is expected). Sections other modules own (security, slack)
# are validated there; unknown top-level keys are errors so a typo is never silently ignored.
_SCHEMA: dict[str, tuple[type | tuple[type, ...], Any, Any, str]] = {
    "commands.paths": (
        list,
        ["../commands"],
        lambda v: all(isinstance(p, str) for p in v),
        "a list of folders",
    ),
    "commands.lint": (
        str,
        "strict",
        lambda v: v in ("strict", "warn", "off"),
        "one of strict, warn, off",
    ),
    "vocabulary": (str, "vocabulary.yaml", None, "a file path"),
    "state.sqlite": (str, "../var/marvin.sqlite3", None, "a file path"),
    "jobs.workers": (int, 32, lambda v: 1 <= v <= 1024, "a whole number from 1 to 1024"),
    "jobs.queue": (int, 256, lambda v: v >= 1, "a whole number >= 1"),
    "jobs.intake_workers": (int, 8, lambda v: 1 <= v <= 256, "a whole number from 1 to 256"),
    "jobs.per_user": (int, 4, lambda v: v >= 1, "a whole number >= 1"),
    "jobs.default_timeout": ((int, float), 3600, lambda v: v > 0, "seconds > 0"),
    "jobs.cancel_grace": ((int, float), 5, lambda v: v >= 0, "seconds >= 0"),
    "jobs.grace_seconds": ((int, float), 30, lambda v: v >= 0, "seconds >= 0"),
    "jobs.cancel_groups": (
        list,
        [],
        lambda v: all(isinstance(g, str) for g in v),
        "a list of group names",
    ),
    "jobs.locks": (
        str,
        "per_family",
        lambda v: v in ("per_family", "shared"),
        "per_family (platform demo01 and api demo01 are separate locks) or shared",
    ),
    "shell.user": (str, "operator@example.com", lambda v: "@" in v, "an email address"),
    "aws.region": (str, "us-east-1", None, "an AWS region name"),
    "aws.poll_seconds": ((int, float), 10, lambda v: 0 < v <= 300, "seconds between 0 and 300"),
    "cloudformation.template": (str, "templates/environment.yaml", None, "a file path"),
    "cloudformation.poll_seconds": (
        (int, float),
        5,
        lambda v: 0 < v <= 300,
        "seconds between 0 and 300",
    ),
    "cloudformation.timeout": ((int, float), 3600, lambda v: v > 0, "seconds > 0"),
    "logging.level": (
        str,
        "info",
        lambda v: v.lower() in ("debug", "info", "warning", "error"),
        "one of debug, info, warning, error",
    ),
}
_OPEN_SECTIONS = {"security", "slack", "directory", "rbac", "duo", "ldap", "consul", "jenkins"}


@dataclass
class Config:
    path: Path
    data: dict[str, Any]

    @property
    def root(self) -> Path:
        return self.path.parent

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                if dotted in _SCHEMA:
                    return _SCHEMA[dotted][1]
                return default
            node = node[part]
        return node

    def file(self, dotted: str) -> Path:
        """A path setting, relative to the configuration file's folder."""
        return (self.root / str(self.get(dotted))).resolve()

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {message}")


def _interpolate(value: Any, path: Path, key: str, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: _interpolate(v, path, f"{key}.{k}" if key else str(k), env) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, path, f"{key}[{i}]", env) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{path}: {key}: environment variable {name} is not set "
            f"(write ${{{name}:-default}} to give a default)"
        )

    out = _VAR.sub(sub, value)
    if out != value and _VAR.fullmatch(value):
        # A whole-value ${VAR} may stand for a number or a boolean.
        try:
            loaded = yaml.safe_load(out)
        except yaml.YAMLError:
            return out
        return loaded if isinstance(loaded, (int, float, bool)) else out
    return out


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> Config:
    """Load and validate; ``path`` defaults to ``$MARVIN_CONFIG`` or ``config/marvin.yaml``."""
    env = dict(os.environ if env is None else env)
    chosen = Path(path or env.get("MARVIN_CONFIG") or DEFAULT_CONFIG).resolve()
    try:
        raw = yaml.safe_load(chosen.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{chosen}: configuration file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{chosen}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{chosen}: expected a mapping at the top level")
    cfg = Config(chosen, _interpolate(raw, chosen, "", env))
    _validate(cfg)
    return cfg


def _validate(cfg: Config) -> None:
    known_top = {k.split(".")[0] for k in _SCHEMA} | _OPEN_SECTIONS
    for top in cfg.data:
        if top not in known_top:
            raise cfg.error(
                str(top), f"unknown setting; expected one of {', '.join(sorted(known_top))}"
            )
    for section in {k.split(".")[0] for k in _SCHEMA if "." in k}:
        value = cfg.data.get(section)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise cfg.error(section, "expected a mapping")
        known = {k.split(".", 1)[1] for k in _SCHEMA if k.startswith(section + ".")}
        for sub in value:
            if sub not in known:
                raise cfg.error(
                    f"{section}.{sub}",
                    "unknown setting; expected one of " + ", ".join(sorted(known)),
                )
    for key, (typ, _default, check, expected) in _SCHEMA.items():
        value = cfg.get(key)
        if isinstance(value, bool) or not isinstance(value, typ) or (check and not check(value)):
            raise cfg.error(key, f"expected {expected}, got {value!r}")
