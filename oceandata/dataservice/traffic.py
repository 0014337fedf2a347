"""Fair use of the open-data service (stub: filled by the traffic work of issue 16).

:class:`TrafficLayer` wraps the service below its prefix: it identifies the caller,
limits rates, concurrent requests and daily bytes per client, counts the bytes of every
answer into the ledger and the metrics, and cancels the work of a request whose client
went away or whose wall time ran out.
"""

from __future__ import annotations

from typing import Any


class TrafficLayer:
    """ASGI wrapper of the service below its prefix (pass-through for now).

    Parameters
    ----------
    app
        The service (the inner FastAPI app, whose ``state`` holds the catalog, the
        ledger and the settings).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
