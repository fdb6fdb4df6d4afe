"""``@command``: attach small immutable metadata to a handler; ``CommandTable`` builds the table.

As in slack-machine, the decorator only records a frozen ``CommandSpec`` on the function and
returns it unchanged; ``CommandTable.build`` (called once at start-up) turns specs into the
table, checks it and freezes it. Nothing is registered as a side effect of importing a module.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from marvin.core.grammar import Format, FormatError, compile_format, usage
from marvin.core.model import VIAS
from marvin.core.params import Param, Text

__all__ = ["command", "CommandSpec", "Command", "CommandTable", "TableError", "SPEC_ATTR"]

SPEC_ATTR = "__marvin_commands__"
_REF = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
F = TypeVar("F", bound=Callable[..., Any])


class TableError(ValueError):
    """The command table cannot be built (duplicate ref, bad format, ambiguous example...)."""


@dataclass(frozen=True)
class CommandSpec:
    """What ``@command`` records. Later layers read the flags: security (``confirm``, ``mfa``,
    ``via``: the channel kinds it may come through, ``chat=False`` meaning ``via=("cli",)``),
    jobs (``lock``, ``lock_wait``, ``timeout``) and the front ends (``ack``, ``result``).
    ``inline`` commands are quick built-ins that answer on the intake thread."""

    ref: str
    formats: tuple[str, ...]
    description: str
    examples: tuple[str, ...]
    params: Mapping[str, Param] = field(default_factory=lambda: MappingProxyType({}))
    confirm: bool = False
    mfa: bool = False
    via: tuple[str, ...] = VIAS
    lock: str | None = None
    lock_wait: bool = False
    timeout: float | None = None
    ack: str | None = None
    result: str | None = None
    inline: bool = False
    checks: tuple[str, ...] = ()  # out-of-band checks run before the handler (marvin.core.checks)

    @property
    def family(self) -> str:
        return self.ref.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.ref.split(".", 1)[1]


def command(
    ref: str,
    *formats: str,
    description: str,
    examples: Iterable[str],
    params: Mapping[str, Param] | None = None,
    **flags: Any,
) -> Callable[[F], F]:
    """Declare a chat command. ``ref`` is ``family.name``; the first format is shown in help.

    Example::

        @command("platform.create",
                 "create platform environment named {{ environment }}",
                 description="Create a platform test environment",
                 examples=["create platform environment named demo01"],
                 params={"environment": ENVIRONMENT}, lock="environment")
        def create(ctx, environment): ...
    """
    if not _REF.match(ref):
        raise TableError(f"command ref {ref!r} must look like 'family.name' (lowercase)")
    if not formats:
        raise TableError(f"{ref}: at least one format is required")
    if "chat" in flags:  # the older spelling: chat=False is command line only
        chat = flags.pop("chat")
        if not chat:
            flags.setdefault("via", ("cli",))
    if "via" in flags:
        flags["via"] = tuple(flags["via"])
        bad = [v for v in flags["via"] if v not in VIAS]
        if bad or not flags["via"]:
            raise TableError(f"{ref}: via must name some of {', '.join(VIAS)}")
    unknown = set(flags) - {f.name for f in CommandSpec.__dataclass_fields__.values()}
    if unknown or {"ref", "formats", "description", "examples", "params"} & set(flags):
        raise TableError(f"{ref}: unknown option(s) {', '.join(sorted(unknown))}")
    if isinstance(flags.get("checks"), (list, tuple)):
        flags["checks"] = tuple(flags["checks"])  # frozen, like the rest of the spec
    spec = CommandSpec(
        ref=ref,
        formats=tuple(formats),
        description=description,
        examples=tuple(examples),
        params=MappingProxyType(dict(params or {})),
        **flags,
    )

    def attach(fn: F) -> F:
        setattr(fn, SPEC_ATTR, (*getattr(fn, SPEC_ATTR, ()), spec))
        return fn

    return attach


@dataclass(frozen=True)
class Command:
    """One row of the table: the spec, its handler and everything derived from them."""

    spec: CommandSpec
    handler: Callable[..., Any]
    formats: tuple[Format, ...]
    params: Mapping[str, Param]  # every parameter, declared or inferred (Text)
    defaults: Mapping[str, Any]  # format defaults, then Python defaults
    required: tuple[str, ...]
    module: str
    usage: str  # the first format as people read it (``<name>`` values, ``[optional]`` parts)
    pack: str = ""  # the command pack it comes from (marvin.core.packs); "": Marvin's own

    @property
    def ref(self) -> str:
        return self.spec.ref

    @property
    def where(self) -> str:
        """Where it is defined, for start-up errors: its module, and its pack if any."""
        return f"{self.module} (pack {self.pack})" if self.pack else self.module

    @property
    def label(self) -> str:
        """The ref, naming its pack if any."""
        return f"{self.ref} (pack {self.pack})" if self.pack else self.ref

    def mask(self, text: str, params: Mapping[str, Any]) -> str:
        """``text`` (an exception's, say) without the values of secret parameters."""
        for name, ptype in self.params.items():
            value = params.get(name)
            if ptype.secret and value is not None and str(value):
                text = text.replace(str(value), "***")
        return text

    def shown(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` as they may be shown (chat, audit, logs): secret values masked."""
        return {
            k: ("***" if k in self.params and self.params[k].secret else v)
            for k, v in params.items()
        }


def _make(spec: CommandSpec, handler: Callable[..., Any], pack: str = "") -> Command:
    where = f"{spec.ref} ({handler.__module__}.{handler.__qualname__})"
    if pack:
        where = f"{spec.ref} (pack {pack}: {handler.__module__}.{handler.__qualname__})"
    try:
        formats = tuple(compile_format(f) for f in spec.formats)
    except FormatError as exc:
        raise TableError(f"{where}: {exc}") from None
    sig = inspect.signature(handler)
    args = list(sig.parameters.values())
    if not args or args[0].name != "ctx":
        raise TableError(f"{where}: the handler's first parameter must be 'ctx'")
    accepts_any = any(a.kind is a.VAR_KEYWORD for a in args)
    names = {a.name: a for a in args[1:] if a.kind not in (a.VAR_POSITIONAL, a.VAR_KEYWORD)}
    format_defaults: dict[str, str] = {}
    for fmt in formats:
        for name in fmt.names:
            if name not in names and not accepts_any:
                raise TableError(
                    f"{where}: format uses {{{{ {name} }}}} but the handler has no "
                    f"parameter {name!r}"
                )
        for name, value in fmt.defaults.items():
            if format_defaults.setdefault(name, value) != value:
                raise TableError(f"{where}: formats give {name!r} different defaults")
    for name in spec.params:
        if name not in names and not accepts_any:
            raise TableError(
                f"{where}: params declares {name!r} but the handler has no such parameter"
            )
    params = {n: spec.params.get(n, Text()) for n in names}
    defaults: dict[str, Any] = {
        n: a.default for n, a in names.items() if a.default is not inspect.Parameter.empty
    }
    defaults.update(format_defaults)
    required = tuple(n for n in names if n not in defaults)
    if not spec.examples:
        raise TableError(f"{where}: at least one example is required")
    return Command(
        spec,
        handler,
        formats,
        MappingProxyType(params),
        MappingProxyType(defaults),
        required,
        handler.__module__,
        usage(spec.formats[0]),
        pack,
    )


class CommandTable:
    """The frozen command table: look commands up by ref; iterate in help order."""

    def __init__(self, commands: Iterable[Command]) -> None:
        self._by_ref: dict[str, Command] = {}
        for cmd in commands:
            other = self._by_ref.get(cmd.ref)
            if other is not None:
                raise TableError(
                    f"duplicate command ref {cmd.ref!r}: defined in {other.where} and {cmd.where}"
                )
            self._by_ref[cmd.ref] = cmd
        self._by_ref = dict(sorted(self._by_ref.items()))
        self._frozen = MappingProxyType(self._by_ref)

    @classmethod
    def build(
        cls,
        handlers: Iterable[Callable[..., Any]],
        packs: Mapping[Callable[..., Any], str] | None = None,
    ) -> CommandTable:
        """Build from decorated functions (a function may carry several specs). ``packs``
        maps a handler to the command pack it comes from (its provenance)."""
        packs = packs or {}
        return cls(
            _make(spec, fn, packs.get(fn, ""))
            for fn in handlers
            for spec in getattr(fn, SPEC_ATTR, ())
        )

    def __getitem__(self, ref: str) -> Command:
        return self._frozen[ref]

    def get(self, ref: str) -> Command | None:
        return self._frozen.get(ref)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._frozen.values())

    def __len__(self) -> int:
        return len(self._frozen)

    def __contains__(self, ref: object) -> bool:
        return ref in self._frozen
