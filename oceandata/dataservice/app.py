"""The open-data service application: one FastAPI app, every route behind one guard.

Routes (below the service prefix, ``/services/data/`` in the hub, ``/`` standalone; the
same URLs under ``auth/`` ask for credentials, see :mod:`.access`):

- the HTML portal and ``datasets.json`` (:mod:`.portal`), STAC (:mod:`.stac`), subset
  downloads ``datasets/{id}/subset`` (:mod:`.downloads`);
- the protocols of :mod:`.protocols`: ``datasets/{id}/opendap``, ``datasets/{id}/zarr``,
  ``datasets/{id}/edr``, ``datasets/{id}/erddap`` and the server-wide ``erddap/``.

Errors are one sentence: JSON ``{"detail": ...}`` for clients, a small page for
browsers (``Accept: text/html``); never a traceback.
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import xpublish
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..catalog.core import Catalog, open_catalog
from ..errors import DatasetNotFound, NotAuthorized, OceandataError
from ..hub.security import FAILURE_HEADERS, install_security_layer
from ..netutil import run_hub_service
from . import asyncjobs, downloads, metrics, portal, sizing, stac, tabledap
from .access import AuthPrefix, alloc_db_url, guard, login, logout, oauth_callback
from .i18n import HTML_LANG, gettext, request_lang
from .index import SearchIndex
from .ledger import Ledger
from .protocols import DatasetCache, plugins
from .sizing import size_guard
from .traffic import TrafficLayer

log = logging.getLogger("oceandata.dataservice")

#: default path prefix of the service in the hub
HUB_PREFIX = "/services/data/"


def _normalise_prefix(prefix: str) -> str:
    return "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"


def wants_html(request: Request) -> bool:
    """Whether the client is a browser asking for a page rather than data."""
    return "text/html" in request.headers.get("accept", "")


def error_response(request: Request, status: int, message: str,
                   headers: dict[str, str] | None = None) -> Response:
    """One sentence as JSON, or as a small page for browsers."""
    headers = {**(headers or {}), "Vary": "Accept-Language"}
    if wants_html(request):
        lang = HTML_LANG[request_lang(request)]
        body = (f"<!doctype html><html lang='{lang}'><head><meta charset='utf-8'>"
                f"<title>{status}</title></head><body><h1>{status}</h1>"
                f"<p>{html.escape(message)}</p></body></html>")
        return HTMLResponse(body, status_code=status, headers=headers)
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)  # FastAPI's and routing's (no route)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "The request is not valid."
        lang = request_lang(request)
        if detail == "Not Found":  # no route: Starlette's words, made a sentence
            detail = gettext(lang, "There is nothing at this address; the list of datasets "
                                   "is at datasets.json.")
        elif detail == "Method Not Allowed":
            detail = gettext(lang, "This address does not take %(method)s requests.",
                             method=request.method)
        return error_response(request, exc.status_code, detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        err = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path"))
        return error_response(request, 400, f"{where or 'the request'}: {err.get('msg', '')}"
                                            .rstrip(": ") + ".")

    @app.exception_handler(OceandataError)
    async def data_error(request: Request, exc: OceandataError) -> Response:
        status = 404 if isinstance(exc, DatasetNotFound | NotAuthorized) else 400
        return error_response(request, status, str(exc).splitlines()[0])

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return error_response(request, 500, gettext(
            request_lang(request), "The service failed on this request; it has been logged. "
                                   "Try a smaller request or report it."), FAILURE_HEADERS)


def create_app(catalog: Catalog | str | os.PathLike[str] | None = None, *,
               prefix: str | None = None, hub_auth: Any = None) -> FastAPI:
    """The open-data service.

    Parameters
    ----------
    catalog
        A catalog, or the path of its root YAML (default: the ``OCEANDATA_CATALOG``
        setting, as :func:`oceandata.open_catalog`). Indexed once at start-up.
    prefix
        Path prefix of every route (default ``JUPYTERHUB_SERVICE_PREFIX``, else ``/``).
    hub_auth
        The :class:`oceandata.hub.security.ServiceAuth` that checks tokens; default one
        from the environment JupyterHub gives a managed service
        (``JUPYTERHUB_API_TOKEN``), else None: open data only, credentials refused.

    Returns
    -------
    fastapi.FastAPI
        The application (``app.state.inner`` is the service below the prefix).
    """
    if not isinstance(catalog, Catalog):
        # the platform's catalog only: each member's project catalogs join per request
        catalog = open_catalog(catalog, projects=False)
    prefix = _normalise_prefix(prefix or os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "/")
    if hub_auth is None and os.environ.get("JUPYTERHUB_API_TOKEN"):
        from ..hub.security import ServiceAuth
        from .access import COOKIE

        hub_auth = ServiceAuth(cookie_name=COOKIE)
    cache = DatasetCache()
    rest = xpublish.Rest({}, plugins=plugins(catalog, cache),
                         app_kws={"title": "oceandata open data", "docs_url": None,
                                  "redoc_url": None, "openapi_url": "/openapi.json",
                                  "dependencies": [Depends(guard), Depends(size_guard)]})
    inner = rest.app
    inner.state.catalog = catalog
    # project catalogs (<data dir>/projects/<id>/catalog.yaml), merged for their members
    from ..catalog.projects import ProjectCatalogs

    inner.state.projects = ProjectCatalogs(catalog)
    inner.state.index = SearchIndex(catalog)
    inner.state.cache = cache
    inner.state.auth = hub_auth
    inner.state.alloc_db_url = alloc_db_url()
    # the bytes-served ledger: the allocations database (the platform's default one when
    # OCEANDATA_ALLOC_DB_URL is unset, so a standalone server counts too)
    inner.state.ledger = Ledger(inner.state.alloc_db_url, datasets=catalog.entries)
    inner.state.prefix = prefix
    # asynchronous downloads: in the hub, jobs go to the allocations service (the one
    # process that runs a JobRuntime); a standalone service with its own runtime, and
    # tests, set inner.state.jobs = asyncjobs.RuntimeJobs(runtime)
    inner.state.jobs = asyncjobs.default_jobs()
    _install_error_handlers(inner)

    # browsers of hub users: the hub's OAuth login (callback at the path the hub knows)
    callback = "/" + urllib.parse.urlparse(
        os.environ.get("JUPYTERHUB_OAUTH_CALLBACK_URL") or f"{prefix}oauth_callback"
    ).path.removeprefix(prefix)
    inner.add_api_route("/login", login, methods=["GET"], include_in_schema=False)
    inner.add_api_route("/logout", logout, methods=["GET"], include_in_schema=False)
    inner.add_api_route(callback, oauth_callback, methods=["GET"], include_in_schema=False)

    @inner.get("/api/health", include_in_schema=False)
    async def health() -> dict[str, Any]:
        """Readiness: the catalog is indexed and the service answers."""
        return {"ok": True}

    sizing.install(inner)  # answers of the size guard (dry runs, 413, 202); inside metrics
    metrics.install(inner)
    for module in (portal, stac, downloads, tabledap, asyncjobs):
        before = len(inner.router.routes)
        inner.include_router(module.router)
        if module is tabledap:
            # tabledap's routes go first: the xpublish-erddap plugin's erddap/info/{id} and
            # (empty) tabledap/index would otherwise answer for the tables; tabledap's info
            # routes match table ids only (tabledap.TableRoute), other ids reach the plugin
            added = inner.router.routes[before:]
            del inner.router.routes[before:]
            inner.router.routes[:0] = added

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # the allocations schema (grants, ledger), even before the allocations service ran
        await run_in_threadpool(inner.state.ledger.prepare)
        try:
            yield
        finally:  # what the ledger still holds in memory is written before the exit
            await run_in_threadpool(inner.state.ledger.close)

    outer = FastAPI(title="oceandata open data", docs_url=None, redoc_url=None,
                    openapi_url=None, lifespan=lifespan)
    outer.state.inner = inner
    outer.state.catalog = catalog

    # security headers; request bodies (STAC's POST search) bounded to 1 MiB
    install_security_layer(outer)
    # open data is for any origin, without credentials: a foreign page cannot take a
    # user's token (a header), and a browser does not let it read an answer sent with
    # the login cookie (SameSite=Lax, and "*" is refused for credentialed requests)
    outer.add_middleware(CORSMiddleware, allow_origins=["*"], allow_credentials=False,
                         allow_methods=["GET", "HEAD", "POST"],
                         allow_headers=["Authorization", "Content-Type", "Range"],
                         # a browser client may read when to retry, and where a job is
                         expose_headers=["Retry-After", "Location", "Content-Disposition"])
    if prefix != "/":
        bare = prefix.rstrip("/")

        @outer.get(bare, include_in_schema=False)
        async def _slash() -> RedirectResponse:
            return RedirectResponse(prefix, status_code=307)

    # auth/ flags the scope first; then the traffic layer (limits, ledger, cancellation)
    outer.mount(prefix.rstrip("/"), AuthPrefix(TrafficLayer(inner)))
    return outer


def main() -> None:
    """Serve the app as the hub's ``data`` service (started by JupyterHub)."""
    run_hub_service(create_app(), "the data service (standalone: `oceandata serve`)")


__all__ = ["HUB_PREFIX", "create_app", "main"]
