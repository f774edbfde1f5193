"""Loopback port choice for ``weed mini``: every listening port is ours, never a forbidden one.

Which ports are forbidden, and whether a port is free, is :mod:`pipeline.dev.ports`'s to say.
"""

from __future__ import annotations

import logging
import secrets

from pipeline.dev.ports import HOST, is_forbidden, is_port_free
from pipeline.errors import StackError

logger = logging.getLogger(__name__)

SERVICES: tuple[str, ...] = ("master", "volume", "filer", "s3", "admin")
GRPC_OFFSET = 10000
PORT_RANGE = (10000, 22000)  # keeps port + GRPC_OFFSET below Linux's ephemeral range (32768+)

__all__ = ["GRPC_OFFSET", "HOST", "PORT_RANGE", "SERVICES", "pick_ports"]


def _usable(port: int, taken: set[int]) -> bool:
    pair = (port, port + GRPC_OFFSET)
    if any(is_forbidden(p) or p in taken for p in pair):
        return False
    return all(is_port_free(p) for p in pair)


def pick_ports(s3_port: int | None = None, preferred: dict[str, int] | None = None) -> dict[str, int]:
    """Chooses a port per service in :data:`SERVICES` with ``port`` and ``port + 10000`` free.

    Args:
        s3_port: Required S3 port.
        preferred: Ports to reuse where still usable (e.g. from a previous run).

    Raises:
        StackError: ``s3_port`` is forbidden or busy, or no free ports were found.
    """
    if s3_port is not None and not _usable(s3_port, set()):
        raise StackError(
            f"S3 port {s3_port} or its gRPC port {s3_port + GRPC_OFFSET} is unusable (busy, forbidden or over 65535): "
            "pick another --port, or leave it out to get a free one"
        )
    ports = {} if s3_port is None else {"s3": s3_port}
    taken = {p + offset for p in ports.values() for offset in (0, GRPC_OFFSET)}
    for name in SERVICES:
        wanted = ports.get(name, (preferred or {}).get(name))
        if name not in ports:
            ports[name] = wanted if wanted is not None and _usable(wanted, taken) else _random_port(taken)
        taken.update((ports[name], ports[name] + GRPC_OFFSET))
    return {name: ports[name] for name in SERVICES}


def _random_port(taken: set[int]) -> int:
    for _ in range(500):
        port = PORT_RANGE[0] + secrets.randbelow(PORT_RANGE[1] - PORT_RANGE[0])
        if _usable(port, taken):
            return port
    raise StackError(f"no free port pair found in {PORT_RANGE} on {HOST}: stop some local servers and retry")
