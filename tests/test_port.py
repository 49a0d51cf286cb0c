"""``make serve`` checks its port before loading any model."""

from __future__ import annotations

import socket
import subprocess
import sys

from service.live_server import free_port, free_ports
from service.port import port_problem


def test_a_free_port_is_free() -> None:
    assert port_problem("127.0.0.1", free_port()) is None


def test_free_ports_are_free_all_different_and_none_of_those_to_avoid() -> None:
    """What a Ray node's seven listeners get: two the same, and the node does not start."""
    avoid = free_port()
    ports = free_ports(64, besides={avoid})
    assert len(set(ports)) == 64 and avoid not in ports
    assert all(port_problem("127.0.0.1", port) is None for port in ports)


def test_a_taken_port_is_named_with_what_to_do() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        problem = port_problem("127.0.0.1", port)
        assert problem is not None
        assert f"port {port} on 127.0.0.1 is taken" in problem
        assert f"make serve PORT={port + 1}" in problem
        result = subprocess.run(
            [sys.executable, "-m", "service.port", "127.0.0.1", str(port)],
            capture_output=True,
            text=True,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.startswith("error: port ")
