"""``config/marvin.yaml``: ``${ENV_VAR}`` interpolation and validation with errors that name the
file, the key and what was expected. Secrets are never written in the file: only ``${VARS}``."""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from marvin.core import packs as _packs

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
# Sections validated by their owners (the security chain, the Slack front end, the HTTP API).
_OWNED = {"security", "slack", "api"}
# Section -> the module that declared it first. Only modules of the same top-level package
# may add to a section, so a command pack can declare sections of its own but never change
# Marvin's (``consul``) or another pack's; and a disabled pack's sections are not accepted.
OWNERS: dict[str, str] = {}


def declare(section: str, settings: Mapping[str, Setting], *, owner: str | None = None) -> None:
    """Declare the keys of a top-level section (idempotent for the same keys). ``owner`` is
    the declaring module (by default the caller's)."""
    owner = owner or sys._getframe(1).f_globals.get("__name__", "")
    first = OWNERS.setdefault(section, owner)
    if first.split(".")[0] != owner.split(".")[0]:
        raise ConfigError(
            f"configuration section {section!r} belongs to {first}; {owner} cannot declare it "
            "(a pack declares sections of its own)"
        )
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
        # Installed command packs to load (marvin.core.packs): none unless listed; "*": all.
        "packs": Setting(
            list, [], lambda v: all(isinstance(p, str) for p in v), 'a list of pack names or "*"'
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
        # An unapplied plan keeps its parameters (secrets too) only this long.
        "plan_hours": Setting(_SECONDS, 24, lambda v: v > 0, "hours > 0"),
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


# Keys people put at the top level that belong inside an owned section: the error says where.
_MISPLACED = {
    "duo": "security.duo",
    "rbac": "security.policy",
    "policy": "security.policy",
    "directory": "security.directory",
    "ldap": "security.directory (backend: ldap)",
    "auditors_group": "security.auditors_group",
    "team_ids": "security.slack.team_ids",
}


def _validate(cfg: Config) -> None:
    load_section_owners()
    for key in cfg.data:
        if key in _MISPLACED and key not in SECTIONS:
            raise cfg.error(str(key), f"belongs under {_MISPLACED[key]}, not at the top level")
    # Enabled packs are imported before the rest is validated: their sections must be known.
    _check_value(cfg, "commands.packs", SECTIONS["commands"]["packs"])
    hidden = _pack_sections(cfg)
    for key in cfg.data:
        if key in hidden:
            raise cfg.error(key, f"belongs to {hidden[key]}, which commands.packs does not enable")
    check_keys(cfg.error, "", cfg.data, (set(SECTIONS) - set(hidden)) | _OWNED)
    for name, settings in SECTIONS.items():
        if name in hidden:
            continue
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


def _pack_sections(cfg: Config) -> dict[str, str]:
    """Load the packs ``commands.packs`` enables and declare their ``config.yaml`` defaults.
    Returns the sections of installed packs that are NOT enabled (section -> pack label):
    they were declared when such a pack was imported in this process (``marvin packs``)."""
    try:
        loaded = _packs.enabled(cfg.get("commands.packs"))
        for pack in loaded:
            for section, defaults in pack.config.items():
                _declare_defaults(pack, section, defaults)
    except (_packs.PackError, ConfigError) as exc:
        raise cfg.error("commands.packs", str(exc)) from None
    foreign = {s: o for s, o in OWNERS.items() if o.split(".")[0] != "marvin"}
    if not foreign:
        return {}
    others = [p for p in _packs.installed().values() if all(p != x.pack for x in loaded)]
    hidden = {}
    for section, owner in foreign.items():
        if any(x.owns(owner) for x in loaded):
            continue
        for pack in others:
            if owner.split(".")[0] == pack.module.split(".")[0]:
                hidden[section] = pack.label
    return hidden


_KINDS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "true or false"),
    ((int, float), "a number"),
    (str, "text"),
    (list, "a list"),
    (dict, "a mapping"),
)


def _declare_defaults(pack: _packs.Loaded, section: str, defaults: Mapping[str, Any]) -> None:
    """A pack's ``config.yaml``: each key is declared with its default's kind."""
    settings = {}
    for key, value in defaults.items():
        kind, expected = next(
            ((t, e) for t, e in _KINDS if isinstance(value, t)), (object, "any value")
        )
        setting = Setting(kind, value, None, expected)
        known = SECTIONS.get(section, {}).get(key)
        if known is not None and known != setting:
            raise ConfigError(
                f"{pack.pack.label}: config.yaml: {section}.{key} is also declared in Python"
            )
        settings[key] = setting
    declare(section, settings, owner=pack.home)
