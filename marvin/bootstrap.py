"""Build a Marvin from configuration: load commands, build and check the table, open state."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from marvin.actions.clients import Clients
from marvin.config import Config, ConfigError
from marvin.core.authz import Authorizer, FrontEnd, local_operator
from marvin.core.loader import load_handlers
from marvin.core.matcher import Matcher
from marvin.core.packs import Loaded
from marvin.core.packs import enabled as enabled_packs
from marvin.core.registry import SPEC_ATTR, CommandTable, TableError
from marvin.core.vocabulary import lint, load_verbs
from marvin.runtime.app import Marvin
from marvin.runtime.checks import validate as validate_checks
from marvin.runtime.jobs import JobSettings
from marvin.runtime.replicas import StateSettings
from marvin.runtime.statedb import state_target
from marvin.runtime.store import Store
from marvin.security import build_authorizer, build_second_factor

__all__ = ["build_table", "build_app", "lint_table", "load_table", "CONSOLE", "CLI"]


# Core modules whose ``HANDLERS`` are built-in commands (help, whoami, jobs, history...).
BUILTIN_MODULES = (
    "marvin.builtins.help",
    "marvin.builtins.jobs",
    "marvin.builtins.audit",
    "marvin.builtins.undo",
    "marvin.builtins.approvals",  # approve / reject (two-person approval)
    "marvin.builtins.plans",  # plan <command text> / apply <plan id>
)


def builtin_handlers() -> list[Callable[..., Any]]:
    return [fn for name in BUILTIN_MODULES for fn in importlib.import_module(name).HANDLERS]


def build_table(
    handlers: Iterable[Callable[..., Any]], packs: Iterable[Loaded] = ()
) -> CommandTable:
    """Built-ins plus ``handlers``; raises TableError for duplicates or ambiguous examples.

    The ``marvin`` family and ``inline=True`` belong to the built-ins alone: policy lets every
    identified user run built-ins, and inline commands skip confirmation, MFA, locks and the
    job pool, so a team command must never pass for one.

    ``packs`` (enabled command packs) add their commands, each marked with its pack, so every
    start-up error about one (duplicate ref, ambiguous example) names the pack."""
    packs = list(packs)
    handlers = [*handlers, *(fn for p in packs for fn in p.handlers)]
    for fn in handlers:
        for spec in getattr(fn, SPEC_ATTR, ()):
            if spec.family == "marvin" or spec.inline:
                raise TableError(
                    f"{spec.ref} ({fn.__module__}): the 'marvin' family and inline=True are "
                    "reserved for Marvin's built-in commands"
                )
    provenance = {fn: p.name for p in packs for fn in p.handlers}
    table = CommandTable.build([*builtin_handlers(), *handlers], provenance)
    Matcher(table).check_examples()
    validate_checks(table)  # each command's out-of-band checks exist (marvin/runtime/checks.py)
    return table


def lint_table(config: Config, table: CommandTable) -> list[str]:
    try:
        verbs = load_verbs(config.file("vocabulary"))
    except ValueError as exc:  # names the file; a clean start-up error, not a traceback
        raise ConfigError(f"vocabulary: {exc}") from None
    # The enabled packs' verbs join the operator's list (the vocabulary is shared).
    for pack in enabled_packs(config.get("commands.packs")):
        verbs |= pack.verbs
    return lint(table, verbs)


def load_table(config: Config, *, lint_mode: str | None = None) -> tuple[CommandTable, list[str]]:
    folders = [config.root / p for p in config.get("commands.paths")]
    packs = enabled_packs(config.get("commands.packs"))  # imported by load_config already
    table = build_table(load_handlers(folders), packs)
    problems = lint_table(config, table)
    mode = lint_mode or config.get("commands.lint")
    if problems and mode == "strict":
        raise TableError(
            "vocabulary lint failed (set commands.lint: warn to start anyway):\n"
            + "\n".join(f"  {p}" for p in problems)
        )
    return table, problems if mode != "off" else []


# The local front ends: the console and ``marvin run``. Whoever starts Marvin on the host names
# the operator (``--as`` or ``shell.user``); both are command-line channels.
CONSOLE = FrontEnd("shell", "cli", local_operator)
CLI = FrontEnd("cli", "cli", local_operator)


def build_app(
    config: Config,
    *,
    table: CommandTable | None = None,
    authorizer: Authorizer | None = None,
    frontends: Iterable[FrontEnd] = (CONSOLE, CLI),
    lint_mode: str | None = None,
) -> Marvin:
    deployed = table is None  # the configured command folders, not a test harness table
    if table is None:
        table, _ = load_table(config, lint_mode=lint_mode)
    authorizer = authorizer or build_authorizer(config)
    # The policy must name only commands that exist (checked strictly for the deployed
    # table; a test harness table only gets warnings, and unmatched commands are refused).
    try:
        authorizer.check_table(table, strict=deployed)
    except ValueError as exc:  # a policy that doesn't fit the table: one clean start-up line
        raise ConfigError(str(exc)) from None
    app = Marvin(
        table,
        # SQLite (state.sqlite, the default) or PostgreSQL (state.url) shared by replicas.
        store=Store(state_target(config), pool_size=config.get("state.pool_size")),
        authorizer=authorizer,
        frontends=frontends,
        services=Clients(config),
        intake_workers=config.get("jobs.intake_workers"),
        settings=JobSettings.from_config(config),
        state=StateSettings.from_config(config),
    )
    app.second_factor = build_second_factor(config)  # None: commands needing MFA are refused
    return app
