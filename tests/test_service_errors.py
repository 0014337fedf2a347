"""An unexpected failure costs its own request only, never the next client's.

Starlette sends the 500 of an app's ``Exception`` handler and then raises the exception
again; uvicorn then drops the connection without having said so. A proxy keeping
connections alive (configurable-http-proxy in front of every service) sent the next
request, another client's, on that dead connection and answered it 503: one anonymous
request that failed made other users' requests fail (found probing the running
platform). The 500 now says ``Connection: close``, so a client opens a new connection.

Each service (data, allocations) is served by uvicorn on 127.0.0.1 with one extra route
that raises; ``http.client`` keeps its connection alive as the proxy does.
"""

from __future__ import annotations

import http.client
import urllib.parse
from pathlib import Path

from dataservice_helpers import make_catalog, serving


def _boom() -> None:
    raise RuntimeError("an unexpected failure")


def _next_request_survives(base: str, failing: str, healthy: str) -> None:
    url = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        for _ in range(3):  # each 500, then a request on the connection kept alive
            conn.request("GET", failing)
            first = conn.getresponse()
            text = first.read().decode()
            assert first.status == 500 and "Traceback" not in text, text
            assert first.getheader("Connection", "").lower() == "close"
            conn.request("GET", healthy)  # reopens: the server said it closes
            second = conn.getresponse()
            second.read()
            assert second.status == 200
    finally:
        conn.close()


def test_the_data_service_closes_the_connection_of_a_500(tmp_path: Path) -> None:
    from oceandata.dataservice import create_app

    app = create_app(make_catalog(tmp_path))
    app.state.inner.add_api_route("/boom", _boom, include_in_schema=False)
    with serving(app) as base:
        _next_request_survives(base, "/boom", "/datasets")


def test_the_allocations_service_closes_the_connection_of_a_500(tmp_path: Path) -> None:
    from oceandata.alloc.service import create_app

    app = create_app(f"sqlite:///{tmp_path / 'alloc.db'}", prefix="/")
    app.state.auth = object()  # no hub: the routes used here ask for no login
    app.add_api_route("/boom", _boom, include_in_schema=False)
    app.add_api_route("/ok", lambda: {"ok": True}, include_in_schema=False)
    with serving(app, ready_path="/ok") as base:
        _next_request_survives(base, "/boom", "/ok")
