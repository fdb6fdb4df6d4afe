"""Ports for the loopback servers that are told which port to take (slapd, PostgreSQL,
redis, moto, ``marvin serve``).

Binding port 0 to find one picks from the kernel's ephemeral range, and between closing that
probe and the server binding the port, the kernel may hand it to anything else: another
server's port 0, or the local end of any outgoing connection (the suite makes thousands).
That race failed a run ("Address already in use"). Ports below the ephemeral range are never
handed out by the kernel, so only another explicit pick could take one, and this process
never picks the same port twice.
"""

from __future__ import annotations

import os
import random
import socket
import threading
from pathlib import Path

__all__ = ["free_port"]

_lock = threading.Lock()
_given: set[int] = set()
_random = random.Random(os.getpid())  # processes running tests side by side start apart


def _below_ephemeral() -> range:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default
    return range(max(1025, low - 12000), max(1026, low))


def free_port() -> int:
    """A loopback port nothing listens on now, that the kernel will not hand out itself."""
    ports = _below_ephemeral()
    with _lock:
        for _ in range(2000):
            port = _random.choice(ports)
            if port in _given:
                continue
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _given.add(port)
            return port
    raise RuntimeError(f"no free loopback port in {ports}")
