"""Free TCP ports on 127.0.0.1 for tests. Each of the suite's parallel workers takes ports from
its own slice, below the kernel's ephemeral range, and never hands out the same port twice in
a row: a port probed free here cannot be taken by another worker or by an outgoing connection
before the test binds it."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

FIRST = 10000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _worker_slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    size = (min(_ephemeral_low(), 32768) - FIRST) // max(workers, 1)
    start = FIRST + int(worker or 0) * size
    return range(start, start + size)


SLICE = _worker_slice()
_cursor = SLICE.start + random.randrange(len(SLICE))


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_range(count: int) -> int:
    """The first of `count` consecutive ports on 127.0.0.1 that nothing holds now."""
    global _cursor
    for _ in range(len(SLICE)):
        base = _cursor if _cursor + count <= SLICE.stop else SLICE.start
        _cursor = base + count
        if all(_bindable(port) for port in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} free consecutive ports in {SLICE}")


def free_port() -> int:
    """A port on 127.0.0.1 that nothing holds now."""
    return free_port_range(1)
