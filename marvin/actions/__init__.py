"""The shared action library: what commands call to act on the estate. Actions take the
execution context (for progress, cancellation and logging) and a client; they never format
chat replies beyond progress lines, so the same action serves chat, CLI and programs."""

from __future__ import annotations


class ActionError(RuntimeError):
    """An action failed for a reason worth telling the user verbatim."""
