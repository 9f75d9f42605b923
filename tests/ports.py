"""Loopback addresses that fail in known ways, with ports from the OS (never guessed).

`REFUSED` is bound for the whole test process and never listens, so every connection to it is
refused and no other process can take the port. `blackholed()` listens and never answers: the TCP
handshake completes (the kernel's backlog) and every request waits forever, as with a broker
behind a dropped route.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

_REFUSING = socket.socket()
_REFUSING.bind(("127.0.0.1", 0))
REFUSED = f"127.0.0.1:{_REFUSING.getsockname()[1]}"


@contextlib.contextmanager
def blackholed() -> Iterator[str]:
    """`host:port` of a socket that accepts connections (in the kernel) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@contextlib.contextmanager
def reserved_ports(count: int) -> Iterator[list[int]]:
    """`count` distinct loopback ports from the OS, held until the block ends.

    Each port stays bound (SO_REUSEADDR, never listening), so the OS hands it to nobody else,
    while a server that binds it with SO_REUSEADDR and listens — Kafka's JVM, PostgreSQL,
    Prometheus and Alertmanager (Go), Python's HTTP servers all do — gets it. No check-then-use.
    """
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        yield ports
