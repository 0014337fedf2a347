"""Small network helpers shared by the platform's launchers and the test services."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any


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


def run_hub_service(app: Any, what: str) -> None:
    """Serve *app* on 127.0.0.1 at the port of ``JUPYTERHUB_SERVICE_URL`` until stopped.

    How JupyterHub starts the platform's managed services (allocations, data).

    Parameters
    ----------
    app
        The ASGI application.
    what
        The service, for the error when it is not started by JupyterHub.

    Raises
    ------
    UsageError
        When ``JUPYTERHUB_SERVICE_URL`` is not set.
    """
    import os
    import urllib.parse

    import uvicorn

    from .errors import UsageError

    service_url = os.environ.get("JUPYTERHUB_SERVICE_URL")
    if not service_url:
        raise UsageError(f"JUPYTERHUB_SERVICE_URL is not set: {what} is started by JupyterHub "
                         "(oceandata hub up)")
    port = urllib.parse.urlparse(service_url).port or 8000
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info", proxy_headers=False,
                server_header=False)
