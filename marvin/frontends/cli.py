"""The ``marvin`` command: shell, run, commands, check, serve, api, keys."""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from marvin.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from marvin.core.registry import CommandTable

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="marvin", description="Marvin, a ChatOps bot for Slack.")
    p.add_argument(
        "--config", help="configuration file (default: $MARVIN_CONFIG or config/marvin.yaml)"
    )
    p.add_argument("--version", action="version", version=f"marvin {_version()}")
    sub = p.add_subparsers(dest="cmd", required=True)
    sh = sub.add_parser("shell", help="a local console: each line is a chat message")
    sh.add_argument("--as", dest="as_email", help="act as this email (default: shell.user)")
    sh.add_argument("--verbose", action="store_true", help="log lines here, not in the log file")
    run = sub.add_parser(
        "run", help="run a command by ref: marvin run platform.create environment=testing"
    )
    run.add_argument("ref")
    run.add_argument("params", nargs="*", metavar="key=value")
    run.add_argument("--as", dest="as_email", help="the operator's email (default: shell.user)")
    run.add_argument("--yes", action="store_true", help="confirm commands that ask for it")
    run.add_argument(
        "--plan", action="store_true", help="show what it would change, changing nothing"
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (execution id, state, result, replies) for other programs",
    )
    run.add_argument("--verbose", action="store_true", help="log lines on stderr, not the log file")
    ap = sub.add_parser(
        "approve", help="approve (or --reject) someone else's request awaiting approval"
    )
    ap.add_argument("execution", help="the execution id the request got, e.g. ex-7f3a2c")
    ap.add_argument("--reject", action="store_true", help="reject it: it will not run")
    ap.add_argument("--as", dest="as_email", help="the approver's email (default: shell.user)")
    cm = sub.add_parser("commands", help="list the command table")
    cm.add_argument(
        "--lint", action="store_true", help="check the shared vocabulary; exit 1 on problems"
    )
    sub.add_parser("check", help="validate configuration and the command table")
    sub.add_parser("packs", help="list installed command packs, enabled or not, and their commands")
    sv = sub.add_parser(
        "serve", help="connect to Slack (Socket Mode); the console without Slack tokens"
    )
    sv.add_argument("--health-port", type=int, help="answer /healthz on this port")
    sv.add_argument("--verbose", action="store_true", help="console mode: log lines here")
    # The HTTP API (marvin/frontends/http): beside Slack in `serve`, or alone.
    sv.add_argument("--api-port", type=int, help="also serve the HTTP API on this port")
    api = sub.add_parser("api", help="serve the HTTP API alone (no Slack)")
    api.add_argument("--host", help="address to listen on (default: api.host, loopback)")
    api.add_argument("--port", type=int, help="port (default: api.port)")
    from marvin.frontends.http.keys_cli import add_parser as add_keys_parser

    add_keys_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from marvin.core.registry import TableError
    from marvin.logs import setup_logging
    from marvin.security.policy import PolicyError  # a pack's rules are checked at start-up

    # A lone surrogate or other unencodable text must not kill the console mid-answer.
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(errors="backslashreplace")  # type: ignore[attr-defined]
    try:
        config = load_config(args.config)
        console = args.cmd in ("shell", "run") or (args.cmd == "serve" and not _any_token())
        log_file = None
        if console and not args.verbose:
            # Log lines would mix into the conversation: they go to a file unless asked for.
            log_file = _log_file(config)
        setup_logging(
            json=(args.cmd == "serve" and _slack_configured()) or args.cmd == "api",
            level=config.get("logging.level"),
            stream=log_file,
        )
        return _COMMANDS[args.cmd](config, args)
    except (ConfigError, TableError, PolicyError) as exc:
        print(f"marvin: {exc}", file=sys.stderr)
        return 2


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("marvin")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _log_file(config: Config) -> object:
    path = config.file("state.sqlite").parent / "marvin.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("a", buffering=1)


def _any_token() -> bool:
    return bool(os.environ.get("SLACK_BOT_TOKEN") or os.environ.get("SLACK_APP_TOKEN"))


def _slack_configured() -> bool:
    return bool(os.environ.get("SLACK_BOT_TOKEN") and os.environ.get("SLACK_APP_TOKEN"))


def _shell(config: Config, args: argparse.Namespace) -> int:
    from marvin.bootstrap import build_app
    from marvin.frontends.console import run_console
    from marvin.frontends.lifecycle import install_sigterm
    from marvin.runtime.app import local_user

    app = build_app(config)
    app.start(lambda row: print(row["notice"], flush=True))  # restarts, maintenance ends
    install_sigterm(app)
    try:
        return run_console(app, local_user(args.as_email or config.get("shell.user")))
    finally:
        app.shutdown(timeout=5)


def _run_command(config: Config, args: argparse.Namespace) -> int:
    from marvin.bootstrap import build_app
    from marvin.core.matcher import bind
    from marvin.core.model import Message
    from marvin.core.params import ParamError
    from marvin.frontends.console import ConsoleResponder
    from marvin.runtime.app import local_user

    app = build_app(config)
    try:
        # What fell due while no Marvin ran (a maintenance window's end) happens first.
        app.run_due(lambda row: print(row["notice"], file=sys.stderr, flush=True))
        cmd = app.table.get(args.ref) or app.table.get(f"marvin.{args.ref}")  # `run whoami`
        if cmd is None:
            refs = [c.ref for c in app.table]
            close = difflib.get_close_matches(args.ref, refs, n=3, cutoff=0.6)
            close += [r for r in refs if r.split(".")[0] == args.ref.split(".")[0]][:5]
            close = list(dict.fromkeys(close))
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            print(f"marvin: no command {args.ref!r}.{hint} See `marvin commands`.", file=sys.stderr)
            return 2
        values = {}
        for item in args.params:
            key, eq, value = item.partition("=")
            if not eq or not key:
                print(f"marvin: expected key=value, got {item!r}", file=sys.stderr)
                return 2
            values[key] = value
        try:
            params = bind(cmd, values)
        except ParamError as exc:
            print(f"marvin: {cmd.ref}: {exc}\nusage: {cmd.usage}", file=sys.stderr)
            return 2
        transcript: list[dict[str, str]] | None = [] if args.json else None
        responder = ConsoleResponder(
            sys.stdout, sys.stderr, ask=_run_confirm(args), transcript=transcript
        )
        user = local_user(args.as_email or config.get("shell.user"), source="cli")
        msg = Message(text=f"run {cmd.ref}", user=user, responder=responder)
        if args.plan:  # a plan changes nothing; `marvin run apply execution=<id>` does it
            ex_id = app.plan(msg, cmd, params)
            record = app.wait(ex_id) if ex_id else None
            return 0 if record and record["state"] == "succeeded" else 1
        ex_id = app.dispatch(msg, cmd, params)
        if ex_id is None:
            for job in app.live():  # an inline command (undo) may have started one
                app.wait(job.execution_id)
            status = 0 if not responder.failed else 1
            record = None
        else:
            record = app.wait(ex_id)
            if record and record["state"] == "awaiting_approval":
                status = 3  # held for two-person approval: `marvin approve <id>` by someone else
            else:
                status = 0 if record and record["state"] == "succeeded" else 1
        if transcript is not None:
            print(json.dumps(_json_result(ex_id, record, transcript, status)), flush=True)
        return status
    finally:
        app.shutdown(timeout=5)


def _approve(config: Config, args: argparse.Namespace) -> int:
    """Another person's answer to a request awaiting approval. The last approval runs the
    execution here, in this process, and waits for it."""
    from marvin.bootstrap import build_app
    from marvin.core.model import Message
    from marvin.frontends.console import ConsoleResponder
    from marvin.runtime.app import local_user

    app = build_app(config)
    try:
        responder = ConsoleResponder(sys.stdout, sys.stderr)
        user = local_user(args.as_email or config.get("shell.user"), source="cli")
        word = "reject" if args.reject else "approve"
        msg = Message(text=f"{word} {args.execution}", user=user, responder=responder)
        result = app.vote(args.execution, msg, not args.reject, lambda _origin: responder)
        print(result.text, file=sys.stdout if result.accepted else sys.stderr, flush=True)
        if not result.accepted:
            return 1
        record = app.wait(args.execution.strip().lower())
        if args.reject or not result.closed:
            return 0
        return 0 if record and record["state"] == "succeeded" else 1
    finally:
        app.shutdown(timeout=5)


def _run_confirm(args: argparse.Namespace) -> Callable[[str], bool]:
    """--yes confirms; on a terminal the operator is asked; otherwise say what to add."""

    def ask(prompt: str) -> bool:
        if args.yes:
            return True
        if sys.stdin.isatty() and not args.json:
            print(f"{prompt} [y/N] ", end="", file=sys.stderr, flush=True)
            return sys.stdin.readline().strip().lower() in ("y", "yes")
        print(
            "marvin: this command asks for confirmation; add --yes to confirm it "
            "(no terminal to ask on).",
            file=sys.stderr,
        )
        return False

    return ask


def _json_result(
    ex_id: str | None, record: dict | None, transcript: list[dict[str, str]], status: int
) -> dict:
    said = [r["text"] for r in transcript if r["kind"] == "say"]
    state = record["state"] if record else ("refused" if status else "succeeded")
    return {
        "execution_id": ex_id,
        "ref": record["ref"] if record else None,
        "state": state,
        "reason": record["reason"] if record else None,
        "result": said[-1] if said and state == "succeeded" else None,
        "replies": transcript,
    }


def _commands(config: Config, args: argparse.Namespace) -> int:
    from marvin.bootstrap import lint_table, load_table

    table, _ = load_table(config, lint_mode="off")
    for cmd in table:
        flags = [
            f
            for f, on in (
                ("confirm", cmd.spec.confirm),
                ("mfa", cmd.spec.mfa),
                ("cli-only", "chat" not in cmd.spec.via),
                (f"pack {cmd.pack}", bool(cmd.pack)),  # from a command pack (docs/packs.md)
            )
            if on
        ]
        print(f"{cmd.ref:28} {cmd.usage}" + (f"  [{', '.join(flags)}]" if flags else ""))
    if args.lint:
        problems = lint_table(config, table)
        for problem in problems:
            print(f"lint: {problem}", file=sys.stderr)
        print(f"{len(problems)} vocabulary problem(s)", file=sys.stderr)
        return 1 if problems else 0
    return 0


def _check(config: Config, args: argparse.Namespace) -> int:
    """The full gate: configuration (every section, with or without tokens), the command table,
    vocabulary and policy, without starting anything. Whatever serve would reject fails here."""
    from marvin.bootstrap import load_table
    from marvin.frontends.slack.settings import SlackSettings, retired
    from marvin.security.settings import check_security

    table, problems = load_table(config)
    for problem in problems:
        print(f"lint warning: {problem}", file=sys.stderr)
    SlackSettings.from_config(config)  # ConfigError: printed by main, exit 2
    try:
        warnings = retired(config) + check_security(config, table)
        from marvin.frontends.http.settings import ApiSettings

        ApiSettings.from_config(config)  # the api: section, so a typo never waits for serve
    except ValueError as exc:  # policy and security settings errors name file and rule
        print(f"marvin: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    _check_packs(config, table)
    print(f"{config.path}: OK; {len(table)} commands")
    return 0


def _check_packs(config: Config, table: CommandTable) -> None:
    """Command packs (docs/packs.md): which are enabled, and their commands no rule covers."""
    from marvin.core.packs import enabled
    from marvin.frontends.packs import uncovered
    from marvin.security.policy import load_policy

    packs = enabled(config.get("commands.packs"))
    if packs:
        policy = load_policy(config.file("security.policy"), packs)
        for warning in uncovered(table, policy, packs):
            print(f"pack warning: {warning}", file=sys.stderr)
        print("packs: " + ", ".join(f"{p.name} {p.pack.version}" for p in packs))


def _packs(config: Config, args: argparse.Namespace) -> int:
    from marvin.frontends.packs import list_packs

    return list_packs(config, sys.stdout)


def _serve(config: Config, args: argparse.Namespace) -> int:
    # Neither token: a local console. Only one, or a malformed one, is a mistake that
    # marvin.slack.serve reports (which token, how to get it) with exit status 2.
    if not (os.environ.get("SLACK_BOT_TOKEN") or os.environ.get("SLACK_APP_TOKEN")):
        print(
            "No SLACK_BOT_TOKEN/SLACK_APP_TOKEN set: starting the local console instead.",
            file=sys.stderr,
        )
        return _shell(config, argparse.Namespace(as_email=None, verbose=args.verbose))
    from marvin.frontends.slack.serve import serve

    return serve(config, args)


def _api(config: Config, args: argparse.Namespace) -> int:
    from marvin.frontends.http.server import run_api

    return run_api(config, args)


def _keys(config: Config, args: argparse.Namespace) -> int:
    from marvin.frontends.http.keys_cli import run_keys

    return run_keys(config, args)


_COMMANDS = {
    "shell": _shell,
    "run": _run_command,
    "approve": _approve,
    "commands": _commands,
    "check": _check,
    "packs": _packs,
    "serve": _serve,
    "api": _api,
    "keys": _keys,
}

if __name__ == "__main__":
    sys.exit(main())
