"""The folder list shows the layers, and the imports keep to them: no cycles between modules,
the core imports nothing from the other layers (no I/O, like Flask's sansio), nothing in
``marvin/`` imports ``commands/`` or a front end it does not own, and no capability is probed
with ``getattr``."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "marvin"


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Modules ``path`` imports at run time (``TYPE_CHECKING`` blocks are left out)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}


# Top to bottom: a module may import its own layer and those above it, never below.
LAYERS = [
    "marvin.core",
    "marvin.config",
    "marvin.security",
    "marvin.runtime",
    "marvin.actions",
    "marvin.builtins",
    "marvin.bootstrap",
    "marvin.frontends",
    "marvin.testing",
]


def _layer(mod: str) -> int:
    for i, prefix in enumerate(LAYERS):
        if mod == prefix or mod.startswith(prefix + "."):
            return i
    return len(LAYERS)  # marvin itself (the public API) and __main__


def test_each_layer_imports_only_the_layers_above() -> None:
    for mod, deps in _graph().items():
        if mod in ("marvin", "marvin.__main__", "marvin.logs"):
            continue  # the public API re-exports; the entry point; logging set-up
        below = sorted(d for d in deps if _layer(d) > _layer(mod) and d != "marvin.logs")
        assert not below, f"{mod} imports {below}, which are below it"


def test_core_imports_only_the_core() -> None:
    for mod, deps in _graph().items():
        if mod.startswith("marvin.core"):
            outside = sorted(d for d in deps if not d.startswith("marvin.core"))
            assert not outside, f"{mod} imports {outside}"


def test_marvin_never_imports_commands_and_only_front_ends_import_front_ends() -> None:
    for path in PACKAGE.rglob("*.py"):
        mod = _module(path)
        for imp in _imports(path):
            assert not imp.startswith("commands"), f"{mod} imports {imp}"
            if imp.startswith("marvin.frontends") and not mod.startswith("marvin.frontends"):
                # The entry point, and the test harness showing replies as Slack gets them.
                assert mod in ("marvin.__main__", "marvin.testing"), f"{mod} imports {imp}"


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(mod: str) -> None:
        state[mod] = 1
        stack.append(mod)
        for dep in sorted(graph[mod]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[mod] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod)


def test_no_capability_probing() -> None:
    """Optional capabilities are declared (Operations, Authorizer, Responder), not probed."""
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in (
                "getattr",
                "hasattr",
            ):
                what = ast.unparse(node.args[1]) if len(node.args) > 1 else ""
                # Reading a decorator's metadata off a function is the one sanctioned use.
                assert (
                    what.endswith("_ATTR")
                    or what == "'__module__'"
                    or (ast.unparse(node.args[0]) == "logging")
                ), f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}"
