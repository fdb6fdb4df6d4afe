"""A process's identity on its host: ``pid:start-time`` from /proc, so a reused pid does not
pass for the process that had it before (``marvin.runtime.replicas`` judges same-host replicas
by it)."""

from __future__ import annotations

__all__ = ["process_identity"]


def process_identity(pid: int) -> str | None:
    """``pid:start-time`` of a live process from /proc (so a reused pid does not pass for the
    process that had it before); None if it is gone, a zombie, or /proc is not available."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else f"{pid}:{fields[19]}"
