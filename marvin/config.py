"""``config/marvin.yaml``: ``${ENV_VAR}`` interpolation and validation with errors that name the
file, the key and what was expected. Secrets are never written in the file: only ``${VARS}``."""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ConfigError",
    "Config",
    "Setting",
    "declare",
    "check_keys",
    "load_config",
    "DEFAULT_CONFIG",
]

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "marvin.yaml"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """Invalid configuration; the message names the file and the key."""


@dataclass(frozen=True)
class Setting:
    """One key of a section: its type, default, an optional check and what is expected."""

    type: type | tuple[type, ...]
    default: Any
    check: Callable[[Any], bool] | None = None
    expected: str = ""


# Section name -> key -> Setting. The core declares its own here; each action module declares
# the section its client reads with ``declare`` (see ``marvin.actions.clients``), so adding a
# backend never edits this file. Unknown top-level keys and unknown keys inside a declared
# section are errors, so a typo is never silently ignored.
SECTIONS: dict[str, dict[str, Setting]] = {}
# Sections validated by their owners (the security chain, the Slack front end).
_OWNED = {"security", "slack"}


def declare(section: str, settings: Mapping[str, Setting]) -> None:
    """Declare the keys of a top-level section (idempotent for the same keys)."""
    SECTIONS.setdefault(section, {}).update(settings)


def check_keys(
    error: Callable[[str, str], Exception], where: str, value: Any, allowed: Iterable[str]
) -> dict[str, Any]:
    """``value`` as a mapping whose keys are all in ``allowed``; raises ``error(key, text)``.
    The one "unknown setting; expected one of" check, used by every section's owner."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise error(where, "expected a mapping")
    allowed = sorted(set(allowed))
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        prefix = f"{where}." if where else ""
        raise error(
            f"{prefix}{unknown[0]}", "unknown setting; expected one of " + ", ".join(allowed)
        )
    return value


def _n(lo: float, hi: float | None = None) -> Callable[[Any], bool]:
    return lambda v: v >= lo and (hi is None or v <= hi)


_SECONDS = (int, float)
declare(
    "commands",
    {
        "paths": Setting(
            list, ["../commands"], lambda v: all(isinstance(p, str) for p in v), "a list of folders"
        ),
        "lint": Setting(
            str, "strict", lambda v: v in ("strict", "warn", "off"), "one of strict, warn, off"
        ),
    },
)
declare("vocabulary", {"": Setting(str, "vocabulary.yaml", None, "a file path")})
declare(
    "state",
    {
        "sqlite": Setting(str, "../var/marvin.sqlite3", None, "a file path"),
        # Shared state (marvin.runtime.replicas): empty url = the sqlite file above;
        # postgresql://... for replicas. Short timings are for tests.
        "url": Setting(str, "", None, "a postgresql:// URL or a SQLite file path"),
        "pool_size": Setting(int, 8, _n(1, 100), "a whole number from 1 to 100"),
        "heartbeat_seconds": Setting(_SECONDS, 5, lambda v: v > 0, "seconds > 0"),
        "lease_seconds": Setting(_SECONDS, 30, lambda v: v > 0, "seconds > 0"),
        "poll_seconds": Setting(_SECONDS, 1, lambda v: v > 0, "seconds > 0"),
        "host": Setting(str, "", None, "a name for this machine (default: its boot id)"),
    },
)
declare(
    "jobs",
    {
        "workers": Setting(int, 32, _n(1, 1024), "a whole number from 1 to 1024"),
        "queue": Setting(int, 256, _n(1), "a whole number >= 1"),
        "intake_workers": Setting(int, 8, _n(1, 256), "a whole number from 1 to 256"),
        "per_user": Setting(int, 4, _n(1), "a whole number >= 1"),
        "default_timeout": Setting(_SECONDS, 3600, lambda v: v > 0, "seconds > 0"),
        "cancel_grace": Setting(_SECONDS, 5, _n(0), "seconds >= 0"),
        "grace_seconds": Setting(_SECONDS, 30, _n(0), "seconds >= 0"),
        "cancel_groups": Setting(
            list, [], lambda v: all(isinstance(g, str) for g in v), "a list of group names"
        ),
        "locks": Setting(
            str,
            "per_family",
            lambda v: v in ("per_family", "shared"),
            "per_family (platform demo01 and api demo01 are separate locks) or shared",
        ),
    },
)
declare("shell", {"user": Setting(str, "operator@example.com", lambda v: "@" in v, "an email")})
declare(
    "logging",
    {
        "level": Setting(
            str,
            "info",
            lambda v: v.lower() in ("debug", "info", "warning", "error"),
            "one of debug, info, warning, error",
        )
    },
)


SECTION_OWNERS = "marvin.actions"  # the package whose modules declare sections
_owners_loaded = False
_owners_lock = threading.Lock()


def _setting(dotted: str) -> Setting | None:
    section, _, key = dotted.partition(".")
    return SECTIONS.get(section, {}).get(key)


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
                known = _setting(dotted)
                return known.default if known is not None else default
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


def load_section_owners() -> None:
    """Import every module of the action library once: each declares its section (and its
    client) on import. Loaded by name, like a commands folder: config does not depend on it."""
    global _owners_loaded
    with _owners_lock:
        if _owners_loaded:
            return
        package = importlib.import_module(SECTION_OWNERS)
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)
        _owners_loaded = True


def _validate(cfg: Config) -> None:
    load_section_owners()
    check_keys(cfg.error, "", cfg.data, set(SECTIONS) | _OWNED)
    for name, settings in SECTIONS.items():
        if "" in settings:  # a top-level scalar such as ``vocabulary``
            _check_value(cfg, name, settings[""])
            continue
        check_keys(cfg.error, name, cfg.data.get(name), settings)
        for key, setting in settings.items():
            _check_value(cfg, f"{name}.{key}", setting)


def _check_value(cfg: Config, key: str, s: Setting) -> None:
    value = cfg.get(key)
    if value is None and s.default is None:
        return  # optional, not set
    if isinstance(value, bool) and s.type is not bool or not isinstance(value, s.type):
        raise cfg.error(key, f"expected {s.expected}, got {value!r}")
    if s.check is not None and not s.check(value):
        raise cfg.error(key, f"expected {s.expected}, got {value!r}")
