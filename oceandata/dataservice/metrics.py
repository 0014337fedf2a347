"""Prometheus metrics of the open-data service, at ``metrics`` below its prefix.

Two sets, in one exposition:

- the HTTP basics of ``prometheus-fastapi-instrumentator`` (``http_requests_total``,
  ``http_request_duration_seconds`` ... by route template, method and status class);
- the service's own, counted by the traffic layer (:mod:`.traffic`) and the guards:

  ``oceandata_data_requests_total`` and ``oceandata_data_request_duration_seconds``
      answers by ``dataset``, ``protocol``, ``format`` and ``status``;
  ``oceandata_data_served_bytes_total``
      body bytes by ``dataset``, ``protocol`` and ``access_class``;
  ``oceandata_data_refused_total``
      refusals by ``reason`` (``estimate``, ``rate``, ``concurrency``, ``quota``,
      ``timeout``), ``dataset`` and ``protocol``;
  ``oceandata_data_jobs_queued_total``
      asynchronous jobs queued, by ``dataset``.

Labels never name what a reader could not see in the catalog, and stay few: the
``dataset`` label is the name of an open entry; a restricted entry is ``restricted`` on
the answers it was served with (status below 400: only a granted caller gets those) and
``other`` otherwise, like names the catalog does not know, so a refused prober's requests
look the same for a restricted name and a made-up one. ``format`` and ``protocol`` are
values of a fixed set (else ``other``).

Who may read ``metrics``: the service's operators. A request must carry
``Authorization: Bearer <token>`` with either the metrics token, that is
``OCEANDATA_METRICS_TOKEN`` or else the secret generated at the first start in
``<data dir>/secrets/dataservice-metrics-token`` (mode 0600; Prometheus reads it with
``authorization: {credentials_file: ...}``), or the JupyterHub token of a hub
administrator carrying ``custom:oceandata:admin``. Anyone else gets ``401`` and one
sentence. The route is not in the OpenAPI schema and is neither rate limited by the
catalog guards nor counted in the ledger.

Tests create many apps in one process: the service's own metrics are module-level
collectors, created once, and each app has its own :class:`prometheus_client.
CollectorRegistry` holding them and its instrumentator's metrics.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_fastapi_instrumentator.middleware import PrometheusInstrumentatorMiddleware

#: the path of the metrics below the service's prefix
PATH = "/metrics"
#: environment variable of the metrics token
TOKEN_ENV = "OCEANDATA_METRICS_TOKEN"
#: file name of the generated token under ``<data dir>/secrets``
TOKEN_FILE = "dataservice-metrics-token"
#: latency buckets (seconds): small answers to large downloads
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
           120.0, 300.0, float("inf"))
PROTOCOLS = frozenset({"subset", "opendap", "zarr", "edr", "griddap", "tabledap", "job",
                       "stac", "portal", "metrics", "other"})
FORMATS = frozenset({"", "nc", "nc4", "netcdf", "netcdf4", "csv", "csvp", "csv0", "tsv",
                     "json", "jsonlkvp", "geojson", "coveragejson", "covjson", "parquet",
                     "zarr", "chunk", "das", "dds", "dods", "dmr", "dap", "ascii", "asc",
                     "html", "graph", "png", "txt", "xml", "nccf", "ncheader"})
REASONS = frozenset({"estimate", "rate", "concurrency", "quota", "timeout"})
ACCESS = frozenset({"anonymous", "registered", "partner"})

REQUESTS = Counter("oceandata_data_requests", "Answers of the open-data service.",
                   ["dataset", "protocol", "format", "status"], registry=None)
LATENCY = Histogram("oceandata_data_request_duration_seconds",
                    "Time from a request to the end of its answer.",
                    ["dataset", "protocol", "format", "status"], buckets=BUCKETS,
                    registry=None)
BYTES = Counter("oceandata_data_served_bytes", "Body bytes served.",
                ["dataset", "protocol", "access_class"], registry=None)
REFUSED = Counter("oceandata_data_refused", "Requests refused before any data was read.",
                  ["reason", "dataset", "protocol"], registry=None)
JOBS = Counter("oceandata_data_jobs_queued", "Asynchronous jobs queued.", ["dataset"],
               registry=None)
OWN = (REQUESTS, LATENCY, BYTES, REFUSED, JOBS)

# dataset names of every installed catalog: open ones, and restricted ones (never labels)
_OPEN: set[str] = set()
_HIDDEN: set[str] = set()


def dataset_label(name: str | None, answered: bool = False) -> str:
    """The ``dataset`` label of *name* (see the module doc).

    Parameters
    ----------
    name
        The catalog name the request named, or None.
    answered
        Whether the request was answered with data or a page (status 2xx): only a
        granted caller gets one naming a restricted entry (a redirect, such as the
        trailing slash's, is answered before the access guard).
    """
    if not name:
        return ""
    if name in _HIDDEN:
        return "restricted" if answered else "other"
    return name if name in _OPEN else "other"


def _format(kind: Any) -> str:
    value = str(getattr(kind, "format", "") or "").lower()
    return value if value in FORMATS else "other"


def _protocol(kind: Any) -> str:
    value = str(getattr(kind, "protocol", "") or "other")
    return value if value in PROTOCOLS else "other"


def observe(kind: Any, status: int, seconds: float, nbytes: int,
            access_class: str | None = None) -> None:
    """Count one answered request of :class:`.policy.RequestKind` *kind*.

    Parameters
    ----------
    kind
        What the request was for (:func:`.policy.classify`).
    status
        The HTTP status answered.
    seconds
        From the request to the end of the answer.
    nbytes
        Body bytes sent.
    access_class
        The caller's access class (:func:`.policy.access_class`); ``unknown`` if not
        given.
    """
    status = int(status)
    dataset = dataset_label(getattr(kind, "dataset", None), 200 <= status < 300)
    labels = (dataset, _protocol(kind), _format(kind), str(status))
    REQUESTS.labels(*labels).inc()
    LATENCY.labels(*labels).observe(max(float(seconds), 0.0))
    if nbytes > 0:
        access = access_class if access_class in ACCESS else "unknown"
        BYTES.labels(dataset, labels[1], access).inc(nbytes)


def refused(kind: Any, reason: str) -> None:
    """Count a refusal: ``estimate``, ``rate``, ``concurrency``, ``quota`` or ``timeout``."""
    REFUSED.labels(reason if reason in REASONS else "other",
                   dataset_label(getattr(kind, "dataset", None)), _protocol(kind)).inc()


def job_queued(dataset: str | None) -> None:
    """Count an asynchronous job queued for *dataset* (queued for a granted caller)."""
    JOBS.labels(dataset_label(dataset, answered=True)).inc()


class _Instrumented(PrometheusInstrumentatorMiddleware):
    """The instrumentator's HTTP metrics, without labels a client can make up.

    For a path that only a trailing-slash redirect would serve, the instrumentator
    labels the raw path itself (``/datasets/<anything>/``): any client could then add
    series without end. Such a path counts as untemplated here, and untemplated paths
    are not recorded (``should_ignore_untemplated``).
    """

    def _get_handler(self, request: Any) -> tuple[str, bool]:
        handler, templated = super()._get_handler(request)
        if templated and "{" not in handler and handler == request.url.path:
            app = request.scope.get("app")
            static = {getattr(r, "path", None) for r in getattr(app, "routes", ())}
            if handler not in static:
                return handler, False
        return handler, templated


def metrics_token() -> str:
    """The metrics token: ``OCEANDATA_METRICS_TOKEN``, else the 0600 secret of the data
    dir (created when missing)."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    from ..config import get_settings
    from ..lab import secret_file

    return secret_file(Path(get_settings().data_dir) / "secrets" / TOKEN_FILE)


def _remember_catalog(app: Any) -> None:
    from ..governance.rules import NegativeLists
    from .access import ANONYMOUS

    catalog = getattr(app.state, "catalog", None)
    lists = NegativeLists()
    for name, entry in (catalog.entries.items() if catalog is not None else ()):
        (_OPEN if ANONYMOUS.may_see(entry, negative=lists.of(entry)) else _HIDDEN).add(name)


async def _may_read(request: Any) -> bool:
    """Whether *request* carries the metrics token or a hub administrator's token."""
    from ..hub.security import AuthError, header_token

    try:
        token = header_token(request.headers.get("Authorization", ""))
    except AuthError:
        return False
    if not token:
        return False
    if hmac.compare_digest(token.encode(), request.app.state.metrics_token.encode()):
        return True
    auth = getattr(request.app.state, "auth", None)
    if auth is None:
        return False
    try:
        user = await auth.user_for_token(token, "token")
    except AuthError:
        return False
    return bool(user.admin)


def install(app: Any) -> None:
    """Add ``/metrics`` and the request instrumentation to *app* (the inner service).

    Parameters
    ----------
    app
        The inner FastAPI app; ``app.state.catalog`` names the datasets the labels may
        show. Sets ``app.state.metrics_registry`` and ``app.state.metrics_token``.
    """
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    registry = CollectorRegistry(auto_describe=True)
    for collector in OWN:
        registry.register(collector)
    app.state.metrics_registry = registry
    app.state.metrics_token = metrics_token()
    _remember_catalog(app)
    # the instrumentator's middleware, as Instrumentator.instrument adds it, except that
    # a path no route matches is never a label (see _Instrumented)
    app.add_middleware(_Instrumented, registry=registry,
                       excluded_handlers=[f"^{PATH}$", "^/api/health$"],
                       should_group_untemplated=True, should_ignore_untemplated=True)

    async def metrics_page(request: Request) -> Response:
        if not await _may_read(request):
            from .app import error_response
            from .i18n import gettext, request_lang

            return error_response(request, 401, gettext(
                request_lang(request), "The metrics are for the service's operators: send "
                "the metrics token or a hub administrator's token as 'Authorization: "
                "Bearer <token>'."), headers={"WWW-Authenticate": 'Bearer realm="metrics"',
                                               "Cache-Control": "no-store"})
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST,
                        headers={"Cache-Control": "no-store"})

    # a plain route (not FastAPI's): outside the catalog guards and the OpenAPI schema
    app.router.routes.insert(0, Route(PATH, metrics_page, methods=["GET"],
                                      include_in_schema=False))


__all__ = ["BYTES", "JOBS", "LATENCY", "PATH", "REFUSED", "REQUESTS", "TOKEN_ENV",
           "dataset_label", "install", "job_queued", "metrics_token", "observe", "refused"]
