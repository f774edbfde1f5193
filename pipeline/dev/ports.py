"""Loopback ports of the local tooling: the ports nobody may use, whether a port is free, a free API port pair.

The one owner of :data:`FORBIDDEN_PORTS`: the local S3 stack and the local Airflow both choose their ports here.
"""

from __future__ import annotations

import secrets
import socket

from pipeline.errors import LocalAirflowError

HOST = "127.0.0.1"
#: 8080: SeaweedFS's volume-server default and Airflow's UI default; 8793: Airflow's log-server default.
#: A local tool that took one of them would clash with another installation (or another engineer's) on the machine.
FORBIDDEN_PORTS = frozenset({8080, 8793})
API_PORT_RANGE = (20000, 29000)  # local Airflow API ports when none is given (the stack's are below 22000 + 10000)
_ATTEMPTS = 200


def is_port_free(port: int, host: str = HOST) -> bool:
    """Whether a listener could bind ``host:port`` now (with SO_REUSEADDR, as Go does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def is_forbidden(port: int) -> bool:
    """Whether ``port`` is one of :data:`FORBIDDEN_PORTS` (or no TCP port at all)."""
    return port in FORBIDDEN_PORTS or not 0 < port <= 65535


def free_api_port(low: int = API_PORT_RANGE[0], high: int = API_PORT_RANGE[1]) -> int:
    """A port ``p`` with ``p`` and ``p + 1`` (Airflow's log server) free on 127.0.0.1 and neither forbidden.

    Raises:
        LocalAirflowError: No such pair was found in ``low..high``.
    """
    for _ in range(_ATTEMPTS):
        port = low + secrets.randbelow(high - low)
        pair = (port, port + 1)
        if not any(map(is_forbidden, pair)) and all(map(is_port_free, pair)):
            return port
    raise LocalAirflowError(f"no free port pair in {low}..{high} on {HOST}: stop some local servers, or pass a port")
