"""One running platform for the whole security suite, started as ``make up`` starts it.

Every attack in ``tests/security/`` is replayed against this hub (JupyterHub with its proxy,
the allocations/jobs service, the dask-gateway gate), so the suite pays for one start-up.
Tests make their own users (``fresh_name``) and never depend on each other's state.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from hub_helpers import Hub, HubClient, admin_client, running_hub, wait_for_service


@pytest.fixture(scope="session")
def sec_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """The platform under attack (one for the session)."""
    with running_hub(tmp_path_factory.mktemp("hub-security") / "var") as hub:
        wait_for_service(hub, "allocations")
        yield hub


@pytest.fixture(scope="session")
def sec_admin(sec_hub: Hub) -> HubClient:
    """The first administrator, logged in with a full token."""
    return admin_client(sec_hub)


def fresh_name(prefix: str = "u") -> str:
    """A new valid user name (lower case letters and digits)."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


class HostileSite:
    """A page on another loopback port: another origin, but the same site as the hub.

    ``serve(html)`` publishes a page and returns its URL. Cookies do not isolate ports, so
    this is the attacker of the probe: a page that can set cookies the hub's host will
    receive and that browsers treat as same-site (``SameSite=Lax`` cookies are sent).
    """

    def __init__(self) -> None:
        import http.server
        import threading

        from oceandata.netutil import free_port

        pages: dict[str, bytes] = {}
        self.pages = pages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path.split("?")[0])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body or b"not here")

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, html: str) -> str:
        path = f"/{uuid.uuid4().hex}.html"
        self.pages[path] = html.encode()
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def hostile_site() -> Iterator[HostileSite]:
    """The attacker's origin (another port of 127.0.0.1), for the session."""
    site = HostileSite()
    yield site
    site.close()
