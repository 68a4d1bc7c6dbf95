"""Wait until listeners exist, by reading the kernel's socket table instead of connecting
(a probe connection would show up in the daemons' logs as a lost client)."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable
from pathlib import Path

PROC_TCP = Path("/proc/net/tcp")
_LISTEN = "0A"


def listening_ipv4() -> set[tuple[str, int]]:
    """(address, port) of every IPv4 TCP socket in LISTEN state on this host."""
    found: set[tuple[str, int]] = set()
    for line in PROC_TCP.read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != _LISTEN:
            continue
        addr_hex, port_hex = fields[1].split(":")
        addr = ipaddress.IPv4Address(bytes.fromhex(addr_hex)[::-1])
        found.add((str(addr), int(port_hex, 16)))
    return found


def wait_listening(addresses: Iterable[tuple[str, int]], timeout: float) -> bool:
    """True once every address listens; False after ``timeout`` (callers log, not fail)."""
    wanted = set(addresses)
    if not PROC_TCP.exists():
        return True
    deadline = time.monotonic() + timeout
    while True:
        missing = wanted - listening_ipv4()
        if not missing:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
