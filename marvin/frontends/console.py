"""Local front ends: the interactive console (``marvin shell``) and ``marvin run``."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import IO

from marvin.core.facade import Operations
from marvin.core.model import Reply, State, User
from marvin.frontends.plain import plain

__all__ = ["ConsoleResponder", "run_console"]


class ConsoleResponder:
    """Prints answers (Slack markup shown plainly); asks y/N for confirmation on the same
    input (so pipes can answer). With ``transcript``, answers are collected there instead of
    printed (``marvin run --json``)."""

    def __init__(
        self,
        out: IO[str] | None = None,
        err: IO[str] | None = None,
        ask: Callable[[str], bool] | None = None,
        transcript: list[dict[str, str]] | None = None,
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or self.out
        self._ask = ask
        self._lock = threading.Lock()
        self.failed = False
        self.transcript = transcript

    def _print(self, stream: IO[str], text: str, kind: str) -> None:
        text = plain(text)
        with self._lock:
            if self.transcript is not None:
                self.transcript.append({"kind": kind, "text": text})
                return
            print(text, file=stream, flush=True)

    def say(self, reply: str | Reply) -> None:
        self._print(self.out, reply.text if isinstance(reply, Reply) else str(reply), "say")

    def whisper(self, text: str) -> None:
        self.failed = True
        self._print(self.err, text, "whisper")

    def progress(self, text: str) -> None:
        self._print(self.out, f"… {text}", "progress")

    def react(self, state: State) -> None:
        if state in ("failed", "cancelled", "interrupted"):
            self.failed = True

    def confirm(self, prompt: str, on_result: Callable[[bool], None]) -> None:
        on_result(self._ask(prompt) if self._ask else False)


def _stdin_ask(stream: IO[str], out: IO[str]) -> Callable[[str], bool]:
    def ask(prompt: str) -> bool:
        print(f"{prompt} [y/N] ", end="", file=out, flush=True)
        answer = stream.readline()
        return answer.strip().lower() in ("y", "yes")

    return ask


def run_console(
    app: Operations, user: User, stdin: IO[str] | None = None, out: IO[str] | None = None
) -> int:
    """Each input line is a chat message; the answer block ends before the next line is read.
    Ctrl-C while a command runs cancels it; Ctrl-C at the prompt leaves."""
    from marvin.core.model import Message

    stdin, out = stdin or sys.stdin, out or sys.stdout
    interactive = stdin.isatty()
    if interactive:
        print(
            f"Marvin console as {user.email}. Type `help`; Ctrl-C cancels a running command, "
            "Ctrl-D leaves.",
            file=out,
        )
    while True:
        try:
            if interactive:
                print("marvin> ", end="", file=out, flush=True)
            line = stdin.readline()
        except KeyboardInterrupt:
            print("", file=out, flush=True)
            break
        if not line:
            break
        if not line.strip():
            continue
        responder = ConsoleResponder(out, out, _stdin_ask(stdin, out))
        ex_id = app.process(Message(text=line.strip(), user=user, responder=responder))
        if ex_id is not None:
            wait_cancellable(app, ex_id, user, out)
        if not interactive:
            print("", file=out, flush=True)  # one blank line closes each reply block
    return 0


def wait_cancellable(app: Operations, ex_id: str, user: User, out: IO[str]) -> None:
    """Wait for ``ex_id`` to end. Short waits keep the main thread running Python, so a
    signal (SIGTERM, Ctrl-C) is handled at once whichever thread the kernel delivered it to.
    Ctrl-C asks the execution to stop (cooperatively) and keeps waiting for its answer."""
    cancelled = False
    while True:
        try:
            app.wait(ex_id, 0.2)
            if not any(job.execution_id == ex_id for job in app.live()):
                return
        except KeyboardInterrupt:
            if cancelled:  # a second Ctrl-C: stop waiting; the command still ends on its own
                print(f"Not waiting for `{ex_id}` any longer.", file=out, flush=True)
                return
            cancelled = True
            print(plain(app.cancel(ex_id, user)), file=out, flush=True)
