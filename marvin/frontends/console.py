"""Local front ends: the interactive console (``marvin shell``) and ``marvin run``."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import IO

from marvin.core.facade import Operations
from marvin.core.model import Reply, State, User

__all__ = ["ConsoleResponder", "run_console"]


class ConsoleResponder:
    """Prints answers; asks y/N for confirmation on the same input (so pipes can answer)."""

    def __init__(
        self,
        out: IO[str] | None = None,
        err: IO[str] | None = None,
        ask: Callable[[str], bool] | None = None,
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or self.out
        self._ask = ask
        self._lock = threading.Lock()
        self.failed = False

    def _print(self, stream: IO[str], text: str) -> None:
        with self._lock:
            print(text, file=stream, flush=True)

    def say(self, reply: str | Reply) -> None:
        self._print(self.out, reply.text if isinstance(reply, Reply) else str(reply))

    def whisper(self, text: str) -> None:
        self.failed = True
        self._print(self.err, text)

    def progress(self, text: str) -> None:
        self._print(self.out, f"… {text}")

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
    """Each input line is a chat message; the answer block ends before the next line is read."""
    from marvin.core.model import Message

    stdin, out = stdin or sys.stdin, out or sys.stdout
    interactive = stdin.isatty()
    if interactive:
        print(f"Marvin console as {user.email}. Type `help`, or Ctrl-D to leave.", file=out)
    while True:
        if interactive:
            print("marvin> ", end="", file=out, flush=True)
        line = stdin.readline()
        if not line:
            break
        if not line.strip():
            continue
        responder = ConsoleResponder(out, out, _stdin_ask(stdin, out))
        ex_id = app.process(Message(text=line.strip(), user=user, responder=responder))
        if ex_id is not None:
            app.wait(ex_id)
        if not interactive:
            print("", file=out, flush=True)  # one blank line closes each reply block
    return 0
