"""The access policy (``config/rbac.yaml``): which groups may run which commands, and how.

Format (the file itself documents it for operators)::

    rules:
      - name: production            # optional; messages say "rule 1 (production)"
        commands: [platform.create, "api.*"]   # refs or globs (fnmatch: * ? [..])
        targets: {environment: ["prod*"]}      # optional: parameter -> value globs
        groups: [platform-admins]   # or `everyone: true`, or `deny: true`
        mfa: true                   # Duo push before it runs
        confirm: true               # ask "are you sure?" first
        via: [cli]                  # only through these channel kinds (chat, cli, api)
        chat: false                 # the older spelling of via: [cli]
        checks: [ga_repository]     # out-of-band checks before it runs (marvin.core.checks)
        approve: {groups: [platform-admins], count: 1, timeout: 1800}  # two-person approval
        channels: [C0123ABCD, "#ops", dm]   # chat requests only from these channels (dm: DMs)
        reason: "..."               # optional text for refusals (deny / via)
      - include: example            # a command pack's own rules (its rbac.yaml), spliced here

A pack's rules apply only where the operator's file includes them, in that position: rules
above the include still win. They may name only that pack's commands (checked at start-up), so
a pack cannot grant itself rights over anything else; and a pack that is not enabled, or ships
no rules, cannot be included.

Precedence: **first match wins**, top to bottom, like a firewall. A rule matches a command when
one of its globs matches the ref and, if it has ``targets``, every named parameter has a value
matching one of its globs (case-insensitive; an absent value never matches). The first matching
rule decides alone: if the user is not in its groups they are refused, even if a later rule
would allow them. So put the narrow rules (production) above the broad ones. No matching rule:
refused. Built-ins (the ``marvin`` family: help, whoami, jobs, cancel, history, status) are
allowed to everyone identified and cannot be named in the policy.

The command's own flags (``@command(mfa=True, confirm=True, via=("cli",))``) are a floor: the
policy can add MFA, confirmation or narrow ``via``, never remove them.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from marvin.core.authz import Approval, ChannelBook
from marvin.core.checks import problems as check_problems
from marvin.core.model import VIAS, Where
from marvin.core.packs import Loaded
from marvin.core.registry import Command

__all__ = ["Policy", "PolicyError", "Rule", "BUILTIN_FAMILY", "DM", "is_builtin", "load_policy"]

BUILTIN_FAMILY = "marvin"
_GLOB = re.compile(r"^[a-z0-9_*?\[\]!.-]+$")
_RULE_KEYS = {"name", "commands", "targets", "groups", "everyone", "deny", "mfa", "confirm", "chat"}
_RULE_KEYS |= {"reason", "via", "checks", "approve", "channels"}
_APPROVE_KEYS = {"groups", "count", "timeout"}
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{2,}$")
_CHANNEL_NAME = re.compile(r"^#[a-z0-9][a-z0-9_-]{0,79}$")
DM = "dm"  # the channel kind "direct message" in ``channels:``


class PolicyError(ValueError):
    """The policy file is malformed or names no command; the message names file and rule."""


def is_builtin(cmd: Command) -> bool:
    return cmd.spec.family == BUILTIN_FAMILY


@dataclass(frozen=True)
class Rule:
    index: int  # 1-based position in the file, for messages
    name: str
    commands: tuple[str, ...]
    targets: Mapping[str, tuple[str, ...]]
    groups: frozenset[str]
    everyone: bool = False
    deny: bool = False
    mfa: bool = False
    confirm: bool = False
    via: frozenset[str] = frozenset(VIAS)
    reason: str = ""
    checks: tuple[str, ...] = ()  # run before the command, after the command's own checks
    pack: str = ""  # included from this command pack's rbac.yaml (index: its position there)
    approve: Approval | None = None  # two-person approval before it runs
    channels: tuple[str, ...] | None = None  # ids, "#names" and "dm"; None: anywhere

    @property
    def label(self) -> str:
        where = f"pack {self.pack} rule {self.index}" if self.pack else f"rule {self.index}"
        return where + (f" ({self.name})" if self.name else "")

    def covers(self, ref: str) -> bool:
        return any(fnmatch.fnmatchcase(ref, glob) for glob in self.commands)

    def applies(self, cmd: Command, params: Mapping[str, Any]) -> bool:
        if not self.covers(cmd.ref):
            return False
        for name, globs in self.targets.items():
            value = params.get(name)
            if value is None:
                return False
            text = str(value).strip().lower()
            if not any(fnmatch.fnmatchcase(text, g) for g in globs):
                return False
        return True

    def admits(self, groups: Iterable[str]) -> bool:
        if self.deny:
            return False
        return self.everyone or bool(self.groups & {g.lower() for g in groups})

    def channel_names(self) -> tuple[str, ...]:
        return tuple(c for c in self.channels or () if c.startswith("#"))

    def describe_channels(self) -> str:
        """Where its commands may run, as Slack shows it (``<#C0123>``, ``#ops``, DMs)."""
        out = []
        for c in self.channels or ():
            out.append("a direct message with me" if c == DM else c if c[0] == "#" else f"<#{c}>")
        return ", ".join(out) or "nowhere in chat"

    def describe_targets(self) -> str:
        return ", ".join(f"{k}={'|'.join(v)}" for k, v in self.targets.items())


class Policy:
    """An ordered list of rules; ``first(cmd, params)`` is the one that decides."""

    def __init__(self, rules: Iterable[Rule], path: str | Path = "<policy>") -> None:
        self.rules = tuple(rules)
        self.path = Path(path)
        # Channel names the rules mention; the Slack front end binds them to ids.
        self.channels = ChannelBook(n for r in self.rules for n in r.channel_names())

    def in_channel(self, rule: Rule, where: Where | None) -> bool:
        """Whether a chat request made at ``where`` is within ``rule``'s channels."""
        if rule.channels is None:
            return True
        if where is None:
            return False
        if where.dm:
            return DM in rule.channels
        ids = {c for c in rule.channels if c != DM and c[0] != "#"}
        ids |= self.channels.ids(n.lstrip("#") for n in rule.channel_names())
        return where.channel in ids

    def first(self, cmd: Command, params: Mapping[str, Any]) -> Rule | None:
        for rule in self.rules:
            if rule.applies(cmd, params):
                return rule
        return None

    def candidates(self, cmd: Command) -> list[Rule]:
        """Rules that may decide for ``cmd`` for some parameter values, in order: stops after
        the first one without targets (nothing below it can ever match ``cmd``)."""
        out = []
        for rule in self.rules:
            if rule.covers(cmd.ref):
                out.append(rule)
                if not rule.targets:
                    break
        return out

    def check(self, table: Iterable[Command]) -> None:
        """Start-up validation against the command table: every glob must match a command, a
        target must be a parameter of one of the rule's commands, no rule may be unreachable."""
        commands = [c for c in table if not is_builtin(c)]
        builtins = [c for c in table if is_builtin(c)]
        problems: list[str] = []
        for i, rule in enumerate(self.rules):
            for glob in rule.commands:
                hits = [c for c in commands if fnmatch.fnmatchcase(c.ref, glob)]
                foreign = [c.ref for c in hits if rule.pack and c.pack != rule.pack]
                if foreign:  # a pack's rules govern its own commands, nothing else
                    problems.append(
                        f"{rule.label}: {glob!r} matches {', '.join(foreign)}, which pack "
                        f"{rule.pack} does not provide; a pack's rules may name only its own "
                        "commands"
                    )
                if hits:
                    continue
                if any(fnmatch.fnmatchcase(c.ref, glob) for c in builtins):
                    problems.append(
                        f"{rule.label}: {glob!r} names only built-ins, which are always allowed "
                        "to everyone identified"
                    )
                else:
                    problems.append(f"{rule.label}: {glob!r} matches no command")
            covered = [c for c in commands if rule.covers(c.ref)]
            inline = [c.ref for c in covered if c.spec.inline]
            if inline and (rule.mfa or rule.confirm or rule.approve):
                problems.append(
                    f"{rule.label}: mfa/confirm can't apply to inline command(s) "
                    + ", ".join(inline)
                )
            for name in rule.targets:
                # A command without the parameter would silently never match this rule and
                # fall through to a broader one below: that is how a production rule leaks.
                lacking = [c.ref for c in covered if name not in c.params]
                if lacking:
                    problems.append(
                        f"{rule.label}: target {name!r} is not a parameter of "
                        + ", ".join(lacking)
                        + "; narrow the rule's commands to those that have it"
                    )
            earlier = [r for r in self.rules[:i] if not r.targets]
            if covered and all(any(r.covers(c.ref) for r in earlier) for c in covered):
                problems.append(
                    f"{rule.label} can never match: rules above it match all its commands first"
                )
            for c in covered:  # each named check must exist and fit every covered command
                problems += check_problems(f"{rule.label} ({c.ref})", rule.checks, c.params)
        if problems:
            raise PolicyError(f"{self.path}: " + f"\n{self.path}: ".join(problems))


def load_policy(path: str | Path, packs: Iterable[Loaded] = ()) -> Policy:
    """Parse and validate the file's structure (``Policy.check`` then validates refs).
    ``packs`` are the enabled command packs, whose rules ``include:`` entries splice in."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy: {exc}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or set(doc) - {"rules"} or not isinstance(doc.get("rules"), list):
        raise PolicyError(f"{path}: expected a mapping with one key, `rules:` (a list of rules)")
    enabled = {p.name: p for p in packs}
    rules: list[Rule] = []
    included: set[str] = set()
    for i, raw in enumerate(doc["rules"], 1):
        if isinstance(raw, dict) and "include" in raw:
            rules.extend(_include(path, i, raw, enabled, included))
        else:
            rules.append(_rule(path, i, raw))
    return Policy(rules, path)


def _include(
    path: Path, index: int, raw: dict[str, Any], packs: Mapping[str, Loaded], seen: set[str]
) -> list[Rule]:
    """``- include: <pack>``: that pack's rules, at this position."""
    name = raw["include"]
    where = f"{path}: rule {index} (include)"
    if set(raw) != {"include"} or not isinstance(name, str):
        raise PolicyError(f"{where}: expected only `include: <pack name>`")
    pack = packs.get(name)
    if pack is None:
        raise PolicyError(
            f"{where}: pack {name!r} is not enabled (commands.packs in marvin.yaml); "
            f"enabled: {', '.join(packs) or 'none'}"
        )
    if pack.rules is None:
        raise PolicyError(
            f"{where}: {pack.pack.label} ships no rbac.yaml; write rules for its commands here"
        )
    if name in seen:
        raise PolicyError(f"{where}: pack {name!r} is already included above")
    seen.add(name)
    source = f"{path}: rule {index} (include: {name}): its rbac.yaml"
    return [_rule(path, j, r, pack=name, source=source) for j, r in enumerate(pack.rules, 1)]


def _rule(path: Path, index: int, raw: Any, *, pack: str = "", source: str = "") -> Rule:
    where = f"{source or path}: rule {index}"
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        where += f" ({raw['name']})"

    def err(problem: str) -> PolicyError:
        return PolicyError(f"{where}: {problem}")

    if not isinstance(raw, dict):
        raise err("expected a mapping such as {commands: [...], groups: [...]}")
    unknown = sorted(str(k) for k in raw if k not in _RULE_KEYS)
    if unknown:
        raise err(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_RULE_KEYS))}")
    commands = _globs(raw.get("commands"), "commands", err)
    for glob in commands:
        if not _GLOB.match(glob) or "." not in glob and glob != "*":
            raise err(f"commands: {glob!r} is not a command ref or glob such as platform.*")
    targets: dict[str, tuple[str, ...]] = {}
    raw_targets = raw.get("targets") or {}
    if not isinstance(raw_targets, dict):
        raise err("targets: expected a mapping of parameter -> value glob(s)")
    for name, value in raw_targets.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise err(f"targets: {name!r} is not a parameter name")
        targets[name] = tuple(g.lower() for g in _globs(value, f"targets.{name}", err))
    flags = {}
    for key, default in (("everyone", False), ("deny", False), ("mfa", False), ("confirm", False)):
        flags[key] = raw.get(key, default)
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise err(f"{key}: expected true or false, got {value!r}")
    flags["via"] = _via(raw, err)
    groups: frozenset[str] = frozenset()
    if "groups" in raw:
        groups = frozenset(g.lower() for g in _globs(raw["groups"], "groups", err))
    if sum((bool(groups), flags["everyone"], flags["deny"])) != 1:
        raise err("say who: exactly one of `groups: [...]`, `everyone: true` or `deny: true`")
    name, reason = raw.get("name", ""), raw.get("reason", "")
    if not isinstance(name, str) or not isinstance(reason, str):
        raise err("name and reason must be text")
    checks = _globs(raw["checks"], "checks", err) if "checks" in raw else ()
    approve = _approve(raw["approve"], err) if "approve" in raw else None
    channels = _channels(raw["channels"], err) if "channels" in raw else None
    return Rule(
        index,
        name,
        commands,
        targets,
        groups,
        reason=reason,
        checks=checks,
        approve=approve,
        channels=channels,
        pack=pack,
        **flags,
    )


def _approve(raw: Any, err: Any) -> Approval:
    """``approve: {groups: [...], count: 1, timeout: 1800}`` (count and timeout optional)."""
    if not isinstance(raw, dict) or "groups" not in raw:
        raise err("approve: expected a mapping such as {groups: [platform-admins], count: 1}")
    unknown = sorted(str(k) for k in raw if k not in _APPROVE_KEYS)
    if unknown:
        raise err(f"approve: unknown key(s) {', '.join(unknown)}; allowed: groups, count, timeout")
    groups = frozenset(g.lower() for g in _globs(raw["groups"], "approve.groups", err))
    count, timeout = raw.get("count", 1), raw.get("timeout", 1800)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10:
        raise err(f"approve.count: expected a whole number from 1 to 10, got {count!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise err(f"approve.timeout: expected seconds > 0, got {timeout!r}")
    return Approval(groups, count, float(timeout))


def _channels(raw: Any, err: Any) -> tuple[str, ...]:
    """Channel ids (C0123ABCD), names ("#ops", bound to ids by the Slack front end) and
    ``dm``; quote names in YAML, where # starts a comment."""
    out = []
    for item in _globs(raw, "channels", err):
        low = item.lower()
        if low == DM or _CHANNEL_NAME.match(low):
            out.append(low)
        elif _CHANNEL_ID.match(item):
            out.append(item)
        else:
            raise err(
                f'channels: {item!r} is not a channel id (C0123ABCD), a quoted name ("#ops") or dm'
            )
    return tuple(out)


def _via(raw: Mapping[str, Any], err: Any) -> frozenset[str]:
    """``via: [cli, api]``, or ``chat: false`` (= ``via: [cli]``); not both."""
    if "via" in raw and "chat" in raw:
        raise err("give either via or chat (chat: false is the same as via: [cli])")
    if "chat" in raw:
        if not isinstance(raw["chat"], bool):
            raise err(f"chat: expected true or false, got {raw['chat']!r}")
        return frozenset(VIAS) if raw["chat"] else frozenset({"cli"})
    if "via" not in raw:
        return frozenset(VIAS)
    kinds = _globs(raw["via"], "via", err)
    bad = [k for k in kinds if k not in VIAS]
    if bad:
        raise err(f"via: {bad[0]!r} is not a channel kind; expected some of {', '.join(VIAS)}")
    return frozenset(kinds)


def _globs(value: Any, key: str, err: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise err(f"{key}: expected a name or a non-empty list of names")
    if not all(isinstance(v, str) and v.strip() for v in items):
        raise err(f"{key}: every entry must be non-empty text")
    return tuple(v.strip() for v in items)
