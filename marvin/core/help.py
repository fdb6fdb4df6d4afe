"""``help`` text: one line per command grouped by family, or one command in full."""

from __future__ import annotations

from collections.abc import Iterable

from marvin.core.checks import lookup
from marvin.core.grammar import usage
from marvin.core.model import Reply
from marvin.core.registry import Command
from marvin.core.text import split_text

__all__ = ["overview", "detail"]

_MAX_SECTION = 2900  # front ends show sections whole (Slack's limit is 3,000 characters)


def overview(commands: Iterable[Command], word: str | None = None) -> Reply:
    """All commands (or those mentioning ``word``), grouped by family, one line each."""
    groups: dict[str, list[Command]] = {}
    for cmd in commands:
        hay = f"{cmd.ref} {cmd.spec.description} {' '.join(cmd.spec.formats)}".lower()
        if word is None or word.lower() in hay:
            groups.setdefault(cmd.spec.family, []).append(cmd)
    if not groups:
        return Reply(f"No command matches `{word}`. Say `help` for the full list.")
    lines: list[str] = []
    sections: list[str] = []
    for family in sorted(groups):
        body = "\n".join(
            f"• `{c.usage}` — {c.spec.description} _({c.ref}{_from(c)})_" for c in groups[family]
        )
        lines.append(f"*{family}*\n{body}")
        sections.extend(split_text(f"*{family}*\n{body}", _MAX_SECTION))
    tail = "Say `help <command ref>` (e.g. `help platform.create`) for parameters and examples."
    lines.append(tail)
    return Reply("\n\n".join(lines), sections=tuple(sections), note=tail)


def _from(cmd: Command) -> str:
    return f", pack {cmd.pack}" if cmd.pack else ""


def detail(cmd: Command) -> Reply:
    spec = cmd.spec
    lines = [f"*{cmd.ref}* — {spec.description}"]
    if cmd.pack:  # provenance: who to ask about it, and where its policy comes from
        lines.append(f"From the command pack `{cmd.pack}` (see `marvin packs`).")
    lines.append("Usage:")
    lines += [f"• `{usage(f)}`" for f in spec.formats]
    if cmd.params:
        lines.append("Parameters:")
        for name, ptype in cmd.params.items():
            if name in cmd.required:
                note = "required"
            else:
                default = cmd.defaults.get(name)
                note = "optional" if default is None else f"default `{default}`"
            if ptype.secret:
                note += ", secret"
            lines.append(f"• `{name}` ({note}): {ptype.expected()}")
    flags = [
        label
        for label, on in (
            ("asks for confirmation", spec.confirm),
            ("needs a second factor (Duo)", spec.mfa),
            ("command line only", tuple(spec.via) == ("cli",)),
        )
        if on
    ]
    if spec.lock:
        every = " across all families" if spec.lock.startswith("*.") else ""
        flags.append(f"one at a time per `{spec.lock.removeprefix('*.')}`{every}")
    if flags:
        lines.append("Notes: " + "; ".join(flags) + ".")
    if spec.checks:  # out-of-band checks (marvin.core.checks), verified before it runs
        lines.append("Checked before it runs:")
        for name in spec.checks:
            found = lookup(name)
            lines.append(f"• `{name}`: {found[0].description if found else 'not loaded'}")
    lines.append("Examples:")
    lines += [f"• `{e}`" for e in spec.examples]
    lines.append(
        f"From the command line: `marvin run {cmd.ref} "
        + " ".join(f"{n}=..." for n in cmd.required)
        + "`"
    )
    text = "\n".join(lines)
    return Reply(text, sections=tuple(split_text(text, _MAX_SECTION)))
