"""``marvin packs``: the installed command packs, whether the operator enabled them, their
commands and what they ship; and the pack warnings ``marvin check`` prints."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TextIO

from marvin.config import OWNERS, Config
from marvin.core.packs import Loaded, installed, load
from marvin.core.packs import enabled as enabled_packs
from marvin.core.registry import CommandTable, TableError
from marvin.security.policy import Policy, load_policy

__all__ = ["list_packs", "uncovered"]


def list_packs(config: Config, out: TextIO) -> int:
    """Print every installed pack; 0, or 1 when an installed pack cannot be loaded."""
    from marvin.bootstrap import load_table

    available = installed()
    if not available:
        print("No command packs are installed (entry point group marvin.commands).", file=out)
        return 0
    wanted = config.get("commands.packs")
    on = {p.name for p in enabled_packs(wanted)}
    table, _ = load_table(config, lint_mode="off")  # the enabled packs' commands, as loaded
    policy = load_policy(config.file("security.policy"), enabled_packs(wanted))
    status = 0
    for pack in available.values():
        state = "enabled" if pack.name in on else "disabled"
        print(f"{pack.name}  {pack.distribution} {pack.version}  {state}", file=out)
        try:
            # Listing a disabled pack imports it, in this process only: nothing is started.
            _describe(load(pack), table if pack.name in on else None, policy, out)
        except TableError as exc:  # PackError too
            print(f"  cannot be loaded: {exc}", file=out)
            status = 1
    print(
        f"commands.packs: {', '.join(wanted) or 'none'}"
        " (marvin.yaml; the policy applies a pack's rules where it says `- include: <pack>`)",
        file=out,
    )
    return status


def _describe(pack: Loaded, table: CommandTable | None, policy: Policy, out: TextIO) -> None:
    commands = CommandTable.build(pack.handlers, dict.fromkeys(pack.handlers, pack.name))
    for cmd in commands:
        note = ""
        if table is not None and not policy.candidates(table[cmd.ref]):
            note = "  [no rule in the policy: refused]"
        print(f"  {cmd.ref:26} {cmd.usage}{note}", file=out)
    if pack.rules is None:
        rules = "ships no rules"
    else:
        included = any(r.pack == pack.name for r in policy.rules)
        rules = f"ships {len(pack.rules)} rule(s), " + ("included" if included else "not included")
    print(f"  policy: {rules}", file=out)
    if pack.verbs:
        print(f"  verbs: {', '.join(sorted(pack.verbs))}", file=out)
    sections = sorted({s for s, owner in OWNERS.items() if pack.owns(owner)} | set(pack.config))
    if sections:
        print(f"  configuration: {', '.join(sections)}", file=out)


def uncovered(table: CommandTable, policy: Policy, packs: Iterable[Loaded]) -> list[str]:
    """Warnings for ``marvin check``: enabled packs' commands that no policy rule covers."""
    names = {p.name for p in packs}
    lost = [c for c in table if c.pack in names and not policy.candidates(c)]
    return [
        f"{c.label}: no rule in the policy covers it, so it is refused; add "
        f"`- include: {c.pack}` or rules of your own to the policy"
        for c in lost
    ]
