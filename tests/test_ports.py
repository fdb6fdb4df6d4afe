"""The test servers' ports come from below the kernel's ephemeral range, never twice."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.fakes.ports import free_port


def test_ports_are_bindable_distinct_and_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(1024 < p < low for p in ports)
    with socket.socket() as s:  # and free: a server can take one
        s.bind(("127.0.0.1", ports[-1]))
        s.listen()
