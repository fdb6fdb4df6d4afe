"""Which process owns an execution, for crash recovery: ``pid:start-time`` from /proc, so a
reused pid does not pass for the process that had it before."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = ["orphaned", "process_identity"]


def orphaned(row: Mapping[str, Any], owner: str | None) -> bool:
    """Left behind by a process that is gone: not ours, and its pid is dead or now belongs to
    another process (a container restarted as pid 1 again has a different start time)."""
    if row.get("owner") is not None and row.get("owner") == owner:
        return False
    pid = row.get("pid")
    if pid is None or pid == os.getpid():
        return True
    alive = process_identity(pid)
    if alive is None:
        return False if row.get("owner") is None and _pid_exists(pid) else True
    return row.get("owner") is not None and alive != row["owner"]


def process_identity(pid: int) -> str | None:
    """``pid:start-time`` of a live process from /proc (so a reused pid does not pass for the
    process that had it before); None if it is gone, a zombie, or /proc is not available."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else f"{pid}:{fields[19]}"


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
