"""pipeline.dev.ports: the one set of forbidden ports, and free loopback ports for the local tools."""

from __future__ import annotations

import socket

import pytest

from pipeline.dev import ports
from pipeline.dev.stack import GRPC_OFFSET, pick_ports
from pipeline.errors import LocalAirflowError


def test_8080_and_airflows_log_server_default_are_forbidden() -> None:
    assert {8080, 8793} <= ports.FORBIDDEN_PORTS
    assert all(ports.is_forbidden(p) for p in (8080, 8793, 0, -1, 65536))
    assert not ports.is_forbidden(20000)


def test_a_bound_port_is_not_free() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((ports.HOST, 0))
        sock.listen()
        busy = sock.getsockname()[1]
        assert not ports.is_port_free(busy)
    assert ports.is_port_free(busy)


def test_free_api_port_gives_a_free_pair_never_a_forbidden_one() -> None:
    for _ in range(20):
        port = ports.free_api_port()
        assert ports.API_PORT_RANGE[0] <= port < ports.API_PORT_RANGE[1]
        assert not {port, port + 1} & ports.FORBIDDEN_PORTS
        assert ports.is_port_free(port)
        assert ports.is_port_free(port + 1)


def test_free_api_port_names_the_range_when_nothing_is_free() -> None:
    with pytest.raises(LocalAirflowError, match=r"no free port pair in 8079\.\.8080"):
        ports.free_api_port(8079, 8080)  # 8079 + 1 is forbidden: no pair can be found


def test_the_stack_never_picks_a_forbidden_port() -> None:
    for _ in range(10):
        chosen = [p + off for p in pick_ports().values() for off in (0, GRPC_OFFSET)]
        assert not set(chosen) & ports.FORBIDDEN_PORTS
