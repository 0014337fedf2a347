"""Small network helpers shared by the platform's launchers and the test services."""

from __future__ import annotations

import socket
from collections.abc import Iterable


def free_port(exclude: Iterable[int] = ()) -> int:
    """Return a TCP port on 127.0.0.1 that is free now (the kernel picks it).

    Parameters
    ----------
    exclude
        Ports not to return (already chosen for something else).

    Returns
    -------
    int
        The port number.
    """
    taken = set(exclude)
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port
