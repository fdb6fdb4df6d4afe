"""Text -> at most one command, with typed parameters.

Formats are indexed by their leading literal words in a trie, so a message is tried only
against formats whose fixed words it starts with; cost stays flat as the table grows.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

from marvin.core.grammar import Format, split_pairs
from marvin.core.params import Pairs, ParamError
from marvin.core.registry import Command, CommandTable, TableError
from marvin.core.text import excerpt

__all__ = ["Matcher", "Matched", "Unknown", "Ambiguous", "Invalid", "MatchResult", "bind"]


@dataclass(frozen=True)
class Matched:
    command: Command
    params: dict[str, Any]


@dataclass(frozen=True)
class Unknown:
    text: str
    suggestions: tuple[str, ...]  # usage lines

    def message(self) -> str:
        lines = [f"I don't know that command: `{excerpt(self.text)}`."]
        if self.suggestions:
            lines.append("Did you mean:")
            lines.extend(f"• `{s}`" for s in self.suggestions)
        lines.append("Say `help` to see what I can do.")
        return "\n".join(lines)


@dataclass(frozen=True)
class Ambiguous:
    text: str
    refs: tuple[str, ...]

    def message(self) -> str:
        what = (
            f"more than one command ({', '.join(self.refs)})"
            if len(self.refs) > 1
            else f"more than one form of {self.refs[0]}, with different values"
        )
        return (
            f"`{excerpt(self.text)}` matches {what}; I won't guess. Please be more specific, or "
            "use `key=value` parameters."
        )


@dataclass(frozen=True)
class Invalid:
    command: Command
    error: str

    def message(self) -> str:
        return (
            f"`{self.command.ref}`: {self.error}\n"
            f"Usage: `{self.command.usage}` (say `help {self.command.ref}` for details)"
        )


MatchResult = Matched | Unknown | Ambiguous | Invalid


@dataclass
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    entries: list[tuple[Command, Format]] = field(default_factory=list)


def bind(cmd: Command, values: dict[str, Any]) -> dict[str, Any]:
    """Apply defaults and types to raw values; raise ParamError for the first bad one."""
    unknown = [k for k in values if k not in cmd.params]
    if unknown and (bag := _bag(cmd)) is not None:
        # A command with a Pairs parameter passes the other pairs on (e.g. a Jenkins job's).
        values = _into_bag(bag, values, unknown)
        unknown = []
    if unknown:
        valid = ", ".join(cmd.params) or "none"
        raise ParamError(unknown[0], f"is not a parameter of {cmd.ref}; valid parameters: {valid}")
    out: dict[str, Any] = {}
    for name, ptype in cmd.params.items():
        if name in values:
            out[name] = ptype.convert(name, values[name])
        elif name in cmd.defaults:
            default = cmd.defaults[name]
            out[name] = default if default is None else ptype.convert(name, default)
        else:
            raise ParamError(name, f"is required; expected {ptype.expected()}")
    return out


def _bag(cmd: Command) -> str | None:
    return next((n for n, p in cmd.params.items() if isinstance(p, Pairs)), None)


def _into_bag(bag: str, values: dict[str, Any], extra: list[str]) -> dict[str, Any]:
    """Move the ``extra`` pairs into parameter ``bag``, after any JSON object given for it
    (the bag's type then checks the whole)."""
    given = values.get(bag)
    if isinstance(given, str):
        try:
            given = json.loads(given)
        except json.JSONDecodeError:
            pass
    if given is not None and not isinstance(given, dict):
        return values  # not an object: the bag's type refuses it, naming it
    out = {k: v for k, v in values.items() if k not in extra}
    out[bag] = {**(given or {}), **{k: values[k] for k in extra}}
    return out


class Matcher:
    def __init__(self, table: CommandTable) -> None:
        self._root = _Node()
        for cmd in table:
            for fmt in cmd.formats:
                node = self._root
                for word in fmt.prefix:
                    node = node.children.setdefault(word, _Node())
                node.entries.append((cmd, fmt))
        self.table = table

    def _candidates(self, text: str) -> list[tuple[Command, Format]]:
        node, out = self._root, list(self._root.entries)
        for word in text.lower().split():
            node = node.children.get(word)  # type: ignore[assignment]
            if node is None:
                break
            out.extend(node.entries)
        return out

    def _raw(self, text: str) -> tuple[list[tuple[Command, dict[str, str]]], dict[str, str]]:
        """Every (command, values) whose format fits, trying trailing pairs first."""
        rest, pairs = split_pairs(text) if "=" in text else (text, {})
        cands = self._candidates(rest)
        hits = _fits(cands, rest)
        if not hits and pairs:
            # "set key foo to a=b": the '=' may belong to a value; try the whole text too,
            # but never let "deploy environment=prod" make a value of "environment=prod".
            whole = _fits(self._candidates(text), text)
            hits = [(c, v) for c, v in whole if not set(pairs) & set(c.params)]
            pairs = {}
        return hits, pairs

    def match(self, text: str) -> MatchResult:
        hits, pairs = self._raw(text)
        refs = tuple(dict.fromkeys(cmd.ref for cmd, _ in hits))
        if not hits:
            return Unknown(text, self.suggest(text))
        if len(refs) > 1 or len({tuple(sorted(v.items())) for _, v in hits}) > 1:
            # Two commands, or two formats of one command reading different values: no guess.
            return Ambiguous(text, refs)
        cmd, values = hits[0]
        values = {**values, **pairs}
        try:
            return Matched(cmd, bind(cmd, values))
        except ParamError as exc:
            return Invalid(cmd, str(exc))

    def suggest(self, text: str, limit: int = 3) -> tuple[str, ...]:
        """Close usages: walk the trie as far as the words allow (fixing typos on the way),
        then rank the commands below by shared words. Cheap: never scans the whole table."""
        node, words = self._root, text.lower().split()
        for word in words:
            nxt = node.children.get(word)
            if nxt is None:
                close = difflib.get_close_matches(word, list(node.children), n=1, cutoff=0.75)
                if not close:
                    break
                nxt = node.children[close[0]]
            node = nxt
        if node is self._root:
            return ()  # not even the first word is known: "help" is the better pointer
        pool: dict[str, int] = {}
        stack, wanted = [node], set(words)
        while stack and len(pool) < 50:
            cur = stack.pop()
            for cmd, _ in cur.entries:
                usage = cmd.usage
                pool.setdefault(usage, len(wanted.intersection(usage.lower().split())))
            stack.extend(cur.children.values())
        ranked = sorted(pool, key=lambda u: -pool[u])
        return tuple(ranked[:limit])

    def check_examples(self) -> None:
        """Every example must run its own command and no other (caught at start-up)."""
        for cmd in self.table:
            for example in cmd.spec.examples:
                hits, pairs = self._raw(example)
                refs = list(dict.fromkeys(c.ref for c, _ in hits))
                if cmd.ref not in refs:
                    raise TableError(f"{cmd.label}: example {example!r} does not match its formats")
                # Labels name the pack of each command, so a clash between packs names both.
                others = list(dict.fromkeys(c.label for c, _ in hits if c.ref != cmd.ref))
                if others:
                    raise TableError(
                        f"{cmd.label}: example {example!r} also matches "
                        f"{', '.join(others)}; make the formats distinct"
                    )
                readings = {tuple(sorted(v.items())) for c, v in hits if c.ref == cmd.ref}
                if len(readings) > 1:
                    raise TableError(
                        f"{cmd.ref}: example {example!r} matches two of its formats with "
                        "different values; make the formats distinct"
                    )
                values = next(v for c, v in hits if c.ref == cmd.ref)
                try:
                    bind(cmd, {**values, **pairs})
                except ParamError as exc:
                    raise TableError(f"{cmd.ref}: example {example!r} is invalid: {exc}") from None


def _fits(cands: list[tuple[Command, Format]], text: str) -> list[tuple[Command, dict[str, str]]]:
    out = []
    for cmd, fmt in cands:
        values = fmt.match(text)
        if values is not None:
            out.append((cmd, values))
    return out
