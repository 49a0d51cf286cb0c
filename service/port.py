"""Is the port free? ``python -m service.port HOST PORT``, run by ``make serve`` first.

Loading and warming up the models takes seconds; only then would uvicorn find the port taken
and stop with a bare ``[Errno 98]``. Checked first, a taken port costs nothing and says what to
do instead.
"""

from __future__ import annotations

import errno
import socket
import sys


def port_problem(host: str, port: int) -> str | None:
    """Why the service could not listen on ``host:port``, or None if it can."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: a port in TIME_WAIT after a previous run is free to use.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"port {port} on {host} is taken (another server, or this one already "
                    f"running?); choose another: make serve PORT={port + 1}"
                )
            return f"cannot listen on {host}:{port}: {exc.strerror}; set HOST= or PORT="
    return None


def main(argv: list[str] | None = None) -> int:
    host, port = (argv if argv is not None else sys.argv[1:])[:2]
    problem = port_problem(host, int(port))
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
