"""Start-up and stop, shared by every long-running front end (console, Slack, HTTP API)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import structlog

from marvin.core.facade import Operations

__all__ = ["install_sigterm"]

log = structlog.get_logger("marvin")


def install_sigterm(
    ops: Operations,
    grace: float | None = None,
    *,
    after: Callable[[], None] | None = None,
    exit_process: Callable[[int], None] = os._exit,
) -> None:
    """On SIGTERM: ``ops.drain(grace)`` (running commands get ``jobs.grace_seconds``; new ones
    are told Marvin is restarting), then ``after()`` (e.g. close the Slack socket), then exit 0.
    Call from the main thread.

    The work runs on its own thread, not in the signal handler: the handler interrupts the main
    thread wherever it is (perhaps holding a lock the drain needs). The exit is ``os._exit``
    because the main thread may be blocked reading stdin or in a client's loop, and Bolt's
    threads are not ours to join; everything worth keeping is in the store by then.
    """
    started = threading.Event()

    def stop() -> None:
        try:
            ops.drain(grace)
        except Exception:
            log.exception("drain failed")
        finally:
            try:
                if after is not None:
                    after()
            finally:
                log.info("stopped")
                sys.stdout.flush()
                sys.stderr.flush()
                exit_process(0)

    def on_sigterm(_signum: int, _frame: Any) -> None:
        if not started.is_set():  # a second SIGTERM does not start a second drain
            started.set()
            log.info("SIGTERM: draining")
            threading.Thread(target=stop, name="marvin-drain", daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)
