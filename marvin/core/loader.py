"""Load command modules from folders: a team adds ``commands/<family>.py`` and restarts."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from marvin.core.registry import SPEC_ATTR, TableError

__all__ = ["load_handlers", "handlers_in"]


def handlers_in(module: ModuleType) -> list[Callable[..., Any]]:
    """The decorated functions a module defines (imports of other modules' commands excluded)."""
    return [
        obj
        for obj in vars(module).values()
        if callable(obj)
        and hasattr(obj, SPEC_ATTR)
        and getattr(obj, "__module__", None) == module.__name__
    ]


def _import_file(path: Path, package: str) -> ModuleType:
    name = f"{package}.{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TableError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except TableError:
        del sys.modules[name]
        raise
    except Exception as exc:
        del sys.modules[name]
        raise TableError(f"{path}: failed to import: {type(exc).__name__}: {exc}") from exc
    return module


def load_handlers(folders: Iterable[str | Path]) -> list[Callable[..., Any]]:
    """Import every ``*.py`` (not starting with ``_``) in each folder, in name order."""
    found: list[Callable[..., Any]] = []
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            raise TableError(f"command folder {root} does not exist")
        package = "marvin_commands_" + str(abs(hash(str(root.resolve()))))
        for path in sorted(root.glob("*.py")):
            if not path.name.startswith("_"):
                found.extend(handlers_in(_import_file(path, package)))
    return found
