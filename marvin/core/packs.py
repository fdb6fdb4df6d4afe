"""Command packs: ordinary Python distributions that ship ``@command`` functions to Marvin.

A pack declares an entry point in the group ``marvin.commands``; its name is the pack's name
(what ``commands.packs`` lists), its value a module or package of commands::

    [project.entry-points."marvin.commands"]
    example = "marvin_pack_example.commands"

Beside that module, in its package, a pack may ship (as package data):

- ``rbac.yaml``: policy rules for its own commands, in rbac.yaml's format. They apply only
  where the operator's policy says ``- include: <pack>`` (``marvin.security.policy``);
- ``vocabulary.yaml``: verbs its formats start with (``verbs: [...]``), added to the shared list;
- ``config.yaml``: defaults of its own configuration sections (``section: {key: value}``),
  declared for it when it loads. A pack may instead ``declare`` them in Python, typed.

Like ``marvin.core.loader``, this finds and imports code by name, and owns no configuration:
``marvin.config`` loads the enabled packs (before it validates their sections), the policy
reads their rules and ``marvin.bootstrap`` adds their commands to the table. A pack is only
imported when the operator enables it (or lists packs with ``marvin packs``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import pkgutil
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any

import yaml

from marvin.core.loader import handlers_in
from marvin.core.registry import TableError

__all__ = ["GROUP", "Pack", "Loaded", "PackError", "installed", "select", "load", "enabled"]

GROUP = "marvin.commands"
ALL = "*"
DATA_FILES = ("rbac.yaml", "vocabulary.yaml", "config.yaml")


class PackError(TableError):
    """An installed pack cannot be used; the message names the pack (and its distribution)."""


@dataclass(frozen=True)
class Pack:
    """One installed pack, as its distribution's metadata describes it (nothing imported)."""

    name: str  # the entry point's name: what commands.packs and `include:` say
    module: str  # the entry point's value: a module or package of commands
    distribution: str
    version: str

    @property
    def label(self) -> str:
        return f"pack {self.name} ({self.distribution} {self.version})"


@dataclass(frozen=True)
class Loaded:
    """An imported pack: its commands and the package data it ships."""

    pack: Pack
    handlers: tuple[Callable[..., Any], ...]
    home: str  # the package holding the commands module (and the data files)
    rules: tuple[Any, ...] | None = None  # rbac.yaml's raw rules; None: it ships no policy
    verbs: frozenset[str] = frozenset()
    config: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def name(self) -> str:
        return self.pack.name

    def owns(self, module: str) -> bool:
        """Whether ``module`` is part of this pack (its configuration sections, its commands)."""
        return module == self.home or module.startswith(self.home + ".")


def installed() -> dict[str, Pack]:
    """Every installed pack by name (nothing is imported)."""
    return _discover()[0]


def _discover() -> tuple[dict[str, Pack], dict[str, str]]:
    """Packs by name, and the names two distributions claim (name -> both, for the error:
    raised only if the operator enables that name, so it never blocks unrelated start-ups)."""
    found: dict[str, Pack] = {}
    clashes: dict[str, str] = {}
    for ep in importlib.metadata.entry_points(group=GROUP):
        dist = ep.dist
        pack = Pack(
            ep.name,
            ep.value.split(":", 1)[0].strip(),
            dist.metadata["Name"] if dist is not None else "?",
            dist.version if dist is not None else "?",
        )
        other = found.setdefault(pack.name, pack)
        if other != pack:
            clashes[pack.name] = (
                f"{other.distribution} {other.version} and {pack.distribution} {pack.version}"
            )
    return dict(sorted(found.items())), clashes


def select(wanted: Iterable[str], available: Mapping[str, Pack] | None = None) -> list[Pack]:
    """The packs ``wanted`` names (``"*"``: all installed), in that order."""
    clashes: dict[str, str] = {}
    if available is None:
        available, clashes = _discover()
    wanted = list(wanted)
    chosen = list(available) if ALL in wanted else list(dict.fromkeys(wanted))
    missing = [n for n in chosen if n not in available]
    if missing:
        have = ", ".join(available) or "none"
        raise PackError(f"pack {missing[0]!r} is not installed (installed packs: {have})")
    for name in chosen:
        if name in clashes:
            raise PackError(f"two installed distributions provide pack {name!r}: {clashes[name]}")
    return [available[n] for n in chosen]


_cache: dict[Pack, Loaded] = {}
_lock = threading.RLock()


def load(pack: Pack) -> Loaded:
    """Import ``pack`` (once per process) and read its package data."""
    with _lock:
        if pack not in _cache:
            _cache[pack] = _load(pack)
        return _cache[pack]


def enabled(wanted: Iterable[str]) -> list[Loaded]:
    """The packs ``commands.packs`` enables, loaded."""
    wanted = list(wanted)
    return [load(p) for p in select(wanted)] if wanted else []


def _load(pack: Pack) -> Loaded:
    root = _import(pack, pack.module)
    modules = [root]
    if root.__spec__ is not None and root.__spec__.submodule_search_locations is not None:
        home = root.__name__  # a package: its submodules hold commands too
        for info in pkgutil.iter_modules(root.__spec__.submodule_search_locations):
            if not info.name.startswith("_"):
                modules.append(_import(pack, f"{root.__name__}.{info.name}"))
    else:
        home = root.__package__ or root.__name__
    handlers = [fn for m in modules for fn in handlers_in(m)]
    if not handlers:
        raise PackError(f"{pack.label}: {pack.module} defines no @command")
    data = {name: _data(pack, home, name) for name in DATA_FILES}
    return Loaded(
        pack,
        tuple(handlers),
        home,
        rules=_rules(pack, data["rbac.yaml"]),
        verbs=_verbs(pack, data["vocabulary.yaml"]),
        config=_config(pack, data["config.yaml"]),
    )


def _import(pack: Pack, name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except TableError as exc:
        raise PackError(f"{pack.label}: {exc}") from None
    except Exception as exc:  # a pack's bug is reported, with its name, as a start-up error
        raise PackError(f"{pack.label}: cannot import {name}: {type(exc).__name__}: {exc}") from exc


def _data(pack: Pack, home: str, name: str) -> Any:
    resource = importlib.resources.files(home).joinpath(name)
    if not resource.is_file():
        return None
    try:
        return yaml.safe_load(resource.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PackError(f"{pack.label}: {name}: not valid YAML: {exc}") from None


def _rules(pack: Pack, doc: Any) -> tuple[Any, ...] | None:
    if doc is None:
        return None
    if not isinstance(doc, dict) or set(doc) != {"rules"} or not isinstance(doc["rules"], list):
        raise PackError(f"{pack.label}: rbac.yaml: expected one key, `rules:` (a list of rules)")
    return tuple(doc["rules"])


def _verbs(pack: Pack, doc: Any) -> frozenset[str]:
    if doc is None:
        return frozenset()
    verbs = doc.get("verbs") if isinstance(doc, dict) else None
    if not isinstance(verbs, list) or not all(isinstance(v, str) and v.isalpha() for v in verbs):
        raise PackError(f"{pack.label}: vocabulary.yaml: verbs: expected a list of words")
    return frozenset(v.lower() for v in verbs)


def _config(pack: Pack, doc: Any) -> Mapping[str, Mapping[str, Any]]:
    if doc is None:
        return MappingProxyType({})
    ok = isinstance(doc, dict) and all(
        isinstance(k, str) and isinstance(v, dict) and all(isinstance(x, str) for x in v)
        for k, v in doc.items()
    )
    if not ok:
        raise PackError(f"{pack.label}: config.yaml: expected section: {{key: default, ...}}")
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in doc.items()})
