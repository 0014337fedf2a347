"""The allocations service: a JupyterHub service (FastAPI) with a REST API and HTML pages.

Run by JupyterHub as ``python -m oceandata.alloc.service`` (see
``hub_config/jupyterhub_config.py``); it listens on 127.0.0.1 at the port of
``JUPYTERHUB_SERVICE_URL`` and the hub's proxy sends it every path under its prefix
(``/services/allocations/``).

REST API (JSON; a JupyterHub token in ``Authorization: token ...``):

- ``GET api/allocations``, ``POST api/allocations``: list visible ones, file a request;
- ``GET api/allocations/{id}``: one allocation with used and remaining core-hours and its
  audit log;
- ``POST api/allocations/{id}/approve`` (admins; optional body of changed amounts and a
  ``note``), ``POST api/allocations/{id}/deny`` (admins; ``reason`` required);
- ``GET api/usage`` (``?csv=1`` for CSV; own usage, everybody's for admins): core-hours
  per allocation and source, and bytes downloaded from the open-data service (source
  ``data``, from its ledger);
- ``GET api/me``: name, admin, active allocation;
- ``POST api/access-log`` (``{"dataset": name, "version": optional}``, 204): the caller
  opened a restricted entry in a notebook; recorded as ``data.access`` in the audit trail
  with the token's owner as the actor (docs/audit.md).

HTML pages (server-rendered, plain forms, no JavaScript; the hub's OAuth login): ``/``,
``request``, ``admin``, ``allocations/{id}``, ``usage``. Form POSTs carry the session's
CSRF token in a hidden field; REST calls authenticated by the login cookie instead of a
token need it in ``X-CSRF-Token`` (:mod:`oceandata.hub.security`).

Bounds (one sentence and a 4xx each): bodies of at most 1 MiB (scripts of jobs: 4 MiB),
JSON only as ``application/json`` (else 415), at most 32 levels deep, integers and ids
within 64 bits, lists paginated with ``limit`` (at most :data:`MAX_PAGE`) and ``offset``.
Status messages of the pages come from a fixed set of keys (:data:`MESSAGES`).

Every rule is in :mod:`oceandata.alloc.core`; this module only translates HTTP.
"""

from __future__ import annotations

import csv
import datetime as dt
import inspect
import io
import logging
import os
import re
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import jinja2
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import NotAuthorized, UsageError
from ..governance import audit
from ..hub.security import (
    CSRF_FIELD,
    MAX_INT64,
    HubUser,
    ServiceAuth,
    install_security_layer,
    parse_json_object,
)
from . import core, db
from .auth import COOKIE, LoginRequired, current_user, oauth_callback, page_user, service_auth
from .models import Allocation, AllocationStatus, AuditEntry

T = TypeVar("T")

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/services/allocations/"
TEMPLATES = Path(__file__).with_name("templates")
#: the form fields of a request, in the order the form shows them
FORM_FIELDS = core.REQUEST_FIELDS
#: what an admin may change on the review page (datasets only through the API)
FORM_ADJUSTABLE = ("core_hours", "max_cores", "memory_per_job_gb", "storage_gb",
                   "start_date", "end_date")
LABELS = {
    "project_title": "Project title", "pi": "Principal investigator",
    "institution": "Institution", "justification": "Scientific justification",
    "core_hours": "Core-hours", "max_cores": "Cores at once (max)",
    "memory_per_job_gb": "Memory per job (GB)", "storage_gb": "Storage (GB)",
    "start_date": "Start date", "end_date": "End date",
    "datasets": "Datasets (catalog names, comma or space separated)",
}


#: the status messages a page may show (``?message=<key>&id=<n>``); free text is never shown
MESSAGES = {
    "filed": "Request #{id} filed: an administrator will review it.",
    "approved": "Allocation #{id} approved.",
    "denied": "Allocation #{id} denied.",
}
#: the largest page of a list (``?limit=``)
MAX_PAGE = 1000
#: an allocation id in a path: a positive 64-bit integer
AllocId = Annotated[int, PathParam(ge=1, le=MAX_INT64,
                                   description="The allocation's id (a positive integer).")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Largest number of items.")]
Offset = Annotated[int, Query(ge=0, le=MAX_INT64, description="Items to skip.")]


class ErrorBody(BaseModel):
    """Every error of the REST API: one sentence."""

    error: str


#: the error answers every REST route may give, documented in the OpenAPI schema
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {
        "schema": ErrorBody.model_json_schema()}}} for code, text in (
        (400, "The request is invalid (what, and what would be valid)."),
        (401, "No valid JupyterHub token."),
        (403, "Not allowed: scope, CSRF token, administrator or quota."),
        (404, "No such thing of yours."),
        (409, "Already ended."),
        (413, "The request body is too large."),
        (415, "The body is not JSON (application/json)."),
        (422, "A path or query parameter is invalid."),
        (503, "The hub or a backend does not answer."))}


class AllocationRequestBody(BaseModel):
    """A request for an allocation (every field but ``datasets`` is required)."""

    model_config = ConfigDict(extra="allow")
    project_title: str
    pi: str
    institution: str
    justification: str
    core_hours: float
    max_cores: int
    memory_per_job_gb: float
    storage_gb: float
    start_date: str
    end_date: str
    datasets: list[str] | str | None = None


class DecisionBody(BaseModel):
    """An approval: an optional note and changed amounts (as fields or under ``changes``)."""

    model_config = ConfigDict(extra="allow")
    note: str | None = None
    changes: dict[str, Any] | None = None


class DenialBody(BaseModel):
    """A denial: the reason is required."""

    reason: str


class AccessLogBody(BaseModel):
    """A notebook opened a catalog entry that is not open to all."""

    dataset: str
    version: str | None = None


#: a dataset name or version in an access record: printable, no spaces, at most 200
ACCESS_NAME = re.compile(r"[\w.:/@+-]{1,200}")


def json_body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON request body read by :func:`_json_body`."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()}}}}


def _normalise_prefix(prefix: str) -> str:
    return "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"


# --- serialisation -------------------------------------------------------------------


def _utc_iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 with the UTC offset (SQLite gives back naive datetimes, all in UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat()


def allocation_dict(alloc: Allocation) -> dict[str, Any]:
    """An allocation as JSON-safe values.

    Parameters
    ----------
    alloc
        The allocation.

    Returns
    -------
    dict
        ``id``, ``owner``, ``created_at`` and the audited fields.
    """
    return {"id": alloc.id, "owner": alloc.owner, **alloc.snapshot(),
            "decided_at": _utc_iso(alloc.decided_at), "created_at": _utc_iso(alloc.created_at)}


def audit_dict(entry: AuditEntry) -> dict[str, Any]:
    """An audit entry as JSON-safe values, with the fields that changed.

    Parameters
    ----------
    entry
        The audit entry.

    Returns
    -------
    dict
        ``actor``, ``at``, ``action``, ``before``, ``after`` and ``changed`` (names of the
        fields whose value differs between before and after).
    """
    before, after = entry.before or {}, entry.after or {}
    changed = sorted(k for k in after if entry.before is not None and before.get(k) != after[k])
    return {"id": entry.id, "actor": entry.actor, "at": _utc_iso(entry.at),
            "action": entry.action, "before": entry.before, "after": entry.after,
            "changed": changed}


def _detail(session: Session, alloc: Allocation) -> dict[str, Any]:
    used = core.used_core_hours(session, alloc.id)
    return {**allocation_dict(alloc), "used_core_hours": used,
            "remaining_core_hours": alloc.core_hours - used,
            "audit": [audit_dict(e) for e in core.audit_log(session, alloc.id)]}


def usage_rows(session: Session, user: HubUser) -> list[dict[str, Any]]:
    """Usage per allocation, user and source, and bytes downloaded per user: the
    caller's, everybody's for an admin."""
    return core.usage_summary(session, None if user.admin else user.name)


def usage_csv(rows: list[dict[str, Any]]) -> str:
    """The usage rows as CSV text (header
    ``allocation_id,user,source,core_hours,records,bytes``)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["allocation_id", "user", "source", "core_hours",
                                             "records", "bytes"], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "core_hours": f"{row['core_hours']:.6g}",
                         "bytes": int(row.get("bytes", 0))})
    return buf.getvalue()


def _bars(totals: list[tuple[str, float]], room: float, bar_height: int,
          gap: int) -> list[dict[str, Any]]:
    """Bars of *totals* (label, value) in order, the longest *room* pixels long."""
    longest = max((value for _, value in totals), default=0.0)
    bars = []
    for i, (label, value) in enumerate(totals):
        length = room * value / longest if longest > 0 else 0.0
        bars.append({"label": label, "value": value, "y": i * (bar_height + gap),
                     "length": round(max(length, 1.0 if value > 0 else 0.0), 1),
                     "height": bar_height})
    return bars


def usage_chart(rows: list[dict[str, Any]], width: int = 640) -> dict[str, Any]:
    """Geometry of two horizontal SVG bar charts: core-hours per allocation and user, and
    bytes downloaded per user.

    Parameters
    ----------
    rows
        Rows of :func:`oceandata.alloc.core.usage_summary` (compute sources are summed;
        rows of source ``data`` give the downloads).
    width
        Width of the charts in pixels.

    Returns
    -------
    dict
        ``width``, ``height``, ``label_width`` and ``bars`` (core-hours; each bar with
        ``label``, ``value``, ``y``, ``length``, ``height``), and ``downloads``: the bytes
        chart as ``height`` and ``bars`` (each also with ``text``, the value as
        ``1.5 GB``), ready for the template.
    """
    from ..io.estimate import format_bytes

    totals: dict[tuple[int | None, str], float] = {}
    downloaded: dict[str, int] = {}
    for row in rows:
        if row.get("source") == core.DOWNLOADS:
            downloaded[row["user"]] = downloaded.get(row["user"], 0) + int(row["bytes"])
            continue
        key = (row["allocation_id"], row["user"])
        totals[key] = totals.get(key, 0.0) + row["core_hours"]
    label_width, value_width, bar_height, gap = 220, 90, 22, 8
    room = width - label_width - value_width
    ordered = sorted(totals.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or 0,
                                                     kv[0][1]))
    bars = _bars([(f"#{a} {u}" if a is not None else f"(none) {u}", value)
                  for (a, u), value in ordered], room, bar_height, gap)
    height = max(len(bars) * (bar_height + gap), bar_height)
    # heaviest first: the users who download most are the ones to see
    heavy = sorted(downloaded.items(), key=lambda kv: (-kv[1], kv[0]))
    byte_bars = _bars([(user, float(value)) for user, value in heavy], room, bar_height,
                      gap)
    for bar in byte_bars:
        bar["text"] = format_bytes(bar["value"])
    return {"width": width, "height": height, "label_width": label_width, "bars": bars,
            "downloads": {"height": max(len(byte_bars) * (bar_height + gap), bar_height),
                          "bars": byte_bars}}


# --- the app -------------------------------------------------------------------------


def create_app(db_url: str | None = None, prefix: str | None = None) -> FastAPI:
    """The allocations service.

    Parameters
    ----------
    db_url
        SQLAlchemy URL of the allocations database (default
        :func:`oceandata.alloc.db.default_url`); upgraded to the latest schema at start-up.
    prefix
        Path prefix of every route (default ``JUPYTERHUB_SERVICE_PREFIX``, else
        ``/services/allocations/``).

    Returns
    -------
    fastapi.FastAPI
        The application. At start-up it needs the environment JupyterHub gives a managed
        service (read by :class:`oceandata.hub.security.ServiceAuth`) unless
        ``app.state.auth`` was set before.
    """
    url = db_url or db.default_url()
    _sqlite_folder(url)
    prefix = _normalise_prefix(prefix or os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
                               or DEFAULT_PREFIX)
    callback = urllib.parse.urlparse(os.environ.get("JUPYTERHUB_OAUTH_CALLBACK_URL")
                                     or f"{prefix}oauth_callback").path

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(db.upgrade, url)
        if getattr(app.state, "auth", None) is None:
            app.state.auth = ServiceAuth(cookie_name=COOKIE)
        jobs = _jobs_service()
        try:
            if jobs is not None:
                await _maybe_await(jobs.startup(app))
            yield
        finally:
            if jobs is not None:
                await _maybe_await(jobs.shutdown(app))

    app = FastAPI(title="oceandata allocations", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=f"{prefix}api/openapi.json")
    app.state.prefix = prefix
    app.state.db_url = url
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["bytes"] = _format_bytes
    app.state.templates = Jinja2Templates(env=env)
    _install_error_handlers(app)
    app.add_api_route(callback, oauth_callback, methods=["GET"], include_in_schema=False)
    app.include_router(_api_router(), prefix=f"{prefix}api", responses=ERROR_RESPONSES)
    # the pages are for browsers: the OpenAPI schema (and its fuzzing) is the REST API's
    app.include_router(_page_router(), prefix=prefix.rstrip("/"), include_in_schema=False)
    overrides = {}
    try:
        from .jobs_api import MAX_SCRIPT_BYTES
        from .jobs_api import router as jobs_router
    except ImportError:
        pass
    else:
        app.include_router(jobs_router, prefix=f"{prefix}api", responses=ERROR_RESPONSES)
        # a script upload with its form fields
        overrides[f"{prefix}api/jobs"] = MAX_SCRIPT_BYTES + 2**16

    install_security_layer(app, overrides)
    return app


def _format_bytes(n: float) -> str:
    from ..io.estimate import format_bytes

    return format_bytes(n)


def _sqlite_folder(url: str) -> None:
    """Create the folder of a SQLite database file (mode 0700) if it is missing."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        path = Path(url.removeprefix("sqlite:///").split("?")[0])
        if str(path):
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)


def _jobs_service() -> Any:
    try:
        from ..jobs import service
    except ImportError:
        return None
    return service


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


async def in_session(request: Request, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """Run ``fn(session, *args, **kw)`` in one transaction, in a worker thread.

    Parameters
    ----------
    request
        The request (its app names the database).
    fn
        The work; its exceptions propagate after a rollback.
    *args, **kw
        Passed on to *fn*.

    Returns
    -------
    object
        What *fn* returns.
    """
    url = request.app.state.db_url
    source = client_address(request)

    def work() -> T:
        with db.session_scope(url) as session:
            audit.set_source(session, source)
            return fn(session, *args, **kw)

    return await run_in_threadpool(work)


def client_address(request: Request) -> str:
    """Where a request comes from, for the audit trail
    (:func:`oceandata.governance.audit.request_source`: the peer, or the address the
    hub's proxy forwarded)."""
    return audit.request_source(request.client.host if request.client else None,
                                request.headers.get("x-forwarded-for"))


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(f"{request.app.state.prefix}api")


def _error(request: Request, status: int, message: str) -> Response:
    if _is_api(request):
        return JSONResponse({"error": message}, status_code=status)
    return render(request, "error.html", {"status": status, "message": message}, status)


def _install_error_handlers(app: FastAPI) -> None:
    async def login_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        return exc.response

    async def usage(request: Request, exc: Exception) -> Response:
        return _error(request, 400, str(exc))

    async def forbidden(request: Request, exc: Exception) -> Response:
        return _error(request, 403, str(exc))

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(request, 404, str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        response = _error(request, exc.status_code, str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return _error(request, 422, f"{where}: {first.get('msg', 'invalid')}")

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(request, 500, "the service failed on this request; the administrators "
                                    "can find it in the service log")

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, unexpected)
    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(UsageError, usage)
    app.add_exception_handler(NotAuthorized, forbidden)  # QuotaExceeded is one
    app.add_exception_handler(core.NotFound, not_found)
    app.add_exception_handler(StarletteHTTPException, http_error)


# --- pages ---------------------------------------------------------------------------


def status_message(request: Request) -> str | None:
    """The status line of a page: a fixed text chosen by ``?message=<key>`` (and ``id``)."""
    text = MESSAGES.get(request.query_params.get("message", ""))
    if text is None:
        return None
    ident = request.query_params.get("id", "")
    return text.format(id=ident if ident.isdigit() and len(ident) < 20 else "?")


def render(request: Request, name: str, context: dict[str, Any],
           status: int = 200) -> HTMLResponse:
    """Render a template with the common context (the user, the session's CSRF token)."""
    prefix = request.app.state.prefix
    user = getattr(request.state, "user", None)
    ctx = {"prefix": prefix, "csrf_field": CSRF_FIELD, "user": user, "labels": LABELS,
           "csrf": service_auth(request).csrf_token(user) if user is not None else "",
           "message": status_message(request), **context}
    return request.app.state.templates.TemplateResponse(request, name, ctx,
                                                        status_code=status)


def _redirect(request: Request, path: str, **query: str | int) -> RedirectResponse:
    target = request.app.state.prefix + path
    if query:
        target += "?" + urllib.parse.urlencode(query)
    return RedirectResponse(target, status_code=303)


# --- REST API ------------------------------------------------------------------------


async def api_user(request: Request, user: HubUser = Depends(current_user)) -> HubUser:
    """The caller of a REST route (CSRF checked for cookie sessions by ``current_user``)."""
    return user


async def admin_user(request: Request, user: HubUser = Depends(current_user)) -> HubUser:
    """The caller of an admin action, asked of the hub afresh (no cached identity)."""
    return await fresh_user(request, user)


async def fresh_user(request: Request, user: HubUser) -> HubUser:
    """*user* as the hub sees it now (a revoked token or lost admin right shows at once)."""
    from .auth import _identify

    fresh = await _identify(request, fresh=True)
    return fresh if fresh is not None else user


def is_json(request: Request) -> bool:
    """Whether the request declares a JSON body (``application/json`` or ``+json``)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/")
                                          and kind.endswith("+json"))


async def _json_body(request: Request, required: bool = False) -> dict[str, Any]:
    """The JSON object of the body: 415 unless declared JSON, 400 unless a bounded object."""
    raw = await request.body()
    if not raw.strip() and not required:
        return {}
    if not is_json(request):
        from fastapi import HTTPException

        raise HTTPException(415, "send the body as JSON with Content-Type: application/json")
    try:
        return parse_json_object(raw)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _api_router() -> APIRouter:
    router = APIRouter()

    @router.get("/health", include_in_schema=False)
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @router.get("/me")
    async def me(request: Request, user: HubUser = Depends(api_user)) -> dict[str, Any]:
        def work(session: Session) -> dict[str, Any] | None:
            alloc = core.active_allocation(session, user.name)
            if alloc is None:
                return None
            detail = _detail(session, alloc)
            detail.pop("audit")
            return detail

        active = await in_session(request, work)
        return {"name": user.name, "admin": user.admin, "active_allocation": active}

    @router.get("/allocations")
    async def list_allocations(request: Request, status: str | None = None,
                               limit: Limit = 100, offset: Offset = 0,
                               user: HubUser = Depends(api_user)) -> list[dict[str, Any]]:
        wanted = _status(status)
        return await in_session(request, lambda s: [
            allocation_dict(a) for a in core.list_visible(
                s, user.name, user.admin, wanted, limit=limit, offset=offset)])

    @router.post("/allocations", status_code=201,
                 openapi_extra=json_body_doc(AllocationRequestBody))
    async def file_request(request: Request,
                           user: HubUser = Depends(api_user)) -> dict[str, Any]:
        body = await _json_body(request, required=True)
        return await in_session(request, lambda s: _detail(
            s, core.request_allocation(s, user.name, body)))

    @router.get("/allocations/{alloc_id}")
    async def show(request: Request, alloc_id: AllocId,
                   user: HubUser = Depends(api_user)) -> dict[str, Any]:
        return await in_session(request, lambda s: _detail(
            s, core.get_visible(s, alloc_id, user.name, user.admin)))

    @router.post("/allocations/{alloc_id}/approve", openapi_extra=json_body_doc(DecisionBody))
    async def approve(request: Request, alloc_id: AllocId,
                      user: HubUser = Depends(admin_user)) -> dict[str, Any]:
        body = await _json_body(request)
        note = body.pop("note", None)
        changes = body.pop("changes", None) or {}
        if not isinstance(changes, dict):
            raise UsageError("changes must be a JSON object of field: new value")
        changes = {**body, **changes}
        return await in_session(request, lambda s: _detail(s, core.decide(
            s, alloc_id, user.name, user.admin, approve=True, changes=changes,
            reason=None if note is None else str(note))))

    @router.post("/allocations/{alloc_id}/deny", openapi_extra=json_body_doc(DenialBody))
    async def deny(request: Request, alloc_id: AllocId,
                   user: HubUser = Depends(admin_user)) -> dict[str, Any]:
        body = await _json_body(request, required=True)
        reason = body.get("reason")
        return await in_session(request, lambda s: _detail(s, core.decide(
            s, alloc_id, user.name, user.admin, approve=False,
            reason=None if reason is None else str(reason))))

    @router.post("/access-log", status_code=204, response_class=Response,
                 openapi_extra=json_body_doc(AccessLogBody))
    async def access_log(request: Request, user: HubUser = Depends(api_user)) -> Response:
        """Record that the caller opened a restricted entry (``data.access``).

        Called by ``oceandata.open_dataset`` in the caller's notebook with the user's
        JupyterHub token: the record names the token's owner, never a name the client
        sends, and the client's address.
        """
        body = await _json_body(request, required=True)
        dataset, version = body.get("dataset"), body.get("version")
        if not isinstance(dataset, str) or not ACCESS_NAME.fullmatch(dataset):
            raise UsageError("dataset: give the catalog name of the entry opened")
        if version is not None and (not isinstance(version, str)
                                    or not ACCESS_NAME.fullmatch(version)):
            raise UsageError("version: give the snapshot id or tag opened, or leave it out")
        await run_in_threadpool(
            audit.record, "data.access", actor=user.name, target=f"dataset:{dataset}",
            source=client_address(request),
            detail={"via": "notebook", "version": version, "service": "allocations"})
        return Response(status_code=204)

    @router.get("/usage", response_model=None, responses={200: {"content": {
        "application/json": {}, "text/csv": {"schema": {"type": "string"}}}}})
    async def usage(request: Request, csv: str | None = None,
                    user: HubUser = Depends(api_user)) -> Response | list[dict[str, Any]]:
        rows = await in_session(request, usage_rows, user)
        if csv not in (None, "", "0", "false", "no"):
            return Response(usage_csv(rows), media_type="text/csv; charset=utf-8", headers={
                "Content-Disposition": 'attachment; filename="usage.csv"'})
        return rows

    return router


def _status(value: str | None) -> AllocationStatus | None:
    if not value:
        return None
    try:
        return AllocationStatus(value)
    except ValueError:
        raise UsageError(f"status {value!r}: give one of "
                         f"{', '.join(s.value for s in AllocationStatus)}") from None


# --- HTML pages ----------------------------------------------------------------------


async def browser_user(request: Request, user: HubUser = Depends(page_user)) -> HubUser:
    """The user of a page (through the hub's login), kept for the templates."""
    request.state.user = user
    return user


async def _form(request: Request) -> dict[str, str]:
    """The text fields of a form (its CSRF token was checked by :func:`page_user`)."""
    form = await request.form()
    data = {k: v for k, v in form.items() if isinstance(v, str)}
    data.pop(CSRF_FIELD, None)
    return data


def field_errors(fields: dict[str, Any]) -> dict[str, str]:
    """Per-field messages of :func:`oceandata.alloc.core.clean_request` (empty when valid).

    Parameters
    ----------
    fields
        The submitted form.

    Returns
    -------
    dict
        Field name to the message of its :class:`~oceandata.errors.UsageError`.
    """
    errors: dict[str, str] = {}
    for name in FORM_FIELDS:
        value = fields.get(name)
        if value in (None, ""):
            if name != "datasets":
                errors[name] = "required"
            continue
        try:
            core.clean_request({name: value})
        except UsageError as exc:
            errors[name] = str(exc)
    return errors


def _page_router() -> APIRouter:
    router = APIRouter()

    @router.get("/", response_class=HTMLResponse)
    async def index(request: Request, user: HubUser = Depends(browser_user)) -> Response:
        allocations = await in_session(request, lambda s: [
            _detail(s, a) for a in core.list_visible(s, user.name, False)])
        return render(request, "index.html", {"allocations": allocations})

    @router.get("/request", response_class=HTMLResponse)
    async def request_form(request: Request,
                           user: HubUser = Depends(browser_user)) -> Response:
        today = dt.date.today()
        values = {"start_date": today.isoformat(),
                  "end_date": (today + dt.timedelta(days=365)).isoformat()}
        return render(request, "request.html", {"values": values, "errors": {},
                                                "error": None})

    @router.post("/request", response_class=HTMLResponse)
    async def request_submit(request: Request,
                             user: HubUser = Depends(browser_user)) -> Response:
        form = await _form(request)
        values = {name: form.get(name, "") for name in FORM_FIELDS}
        errors = field_errors(values)
        if not errors:
            try:
                alloc_id = await in_session(
                    request, lambda s: core.request_allocation(s, user.name, values).id)
            except UsageError as exc:
                return render(request, "request.html", {
                    "values": values, "errors": {}, "error": str(exc)}, 400)
            return _redirect(request, "", message="filed", id=alloc_id)
        return render(request, "request.html", {
            "values": values, "errors": errors,
            "error": "The request was not filed: correct the fields marked below."}, 400)

    @router.get("/allocations/{alloc_id}", response_class=HTMLResponse)
    async def detail(request: Request, alloc_id: AllocId,
                     user: HubUser = Depends(browser_user)) -> Response:
        alloc = await in_session(request, lambda s: _detail(
            s, core.get_visible(s, alloc_id, user.name, user.admin)))
        return render(request, "detail.html", {"a": alloc})

    async def _queue(request: Request, user: HubUser, status: int = 200,
                     error: str | None = None, error_id: int | None = None,
                     values: dict[str, str] | None = None) -> Response:
        if not user.admin:
            raise NotAuthorized(f"{user.name} is not an administrator: the review queue is "
                                "for administrators")
        pending = await in_session(request, lambda s: [
            _detail(s, a) for a in core.list_visible(s, user.name, True,
                                                      AllocationStatus.PENDING)])
        decided = await in_session(request, lambda s: [
            allocation_dict(a) for a in core.list_visible(s, user.name, True)
            if a.status != AllocationStatus.PENDING][:50])
        return render(request, "admin.html", {
            "pending": pending, "decided": decided, "adjustable": FORM_ADJUSTABLE,
            "error": error,
            "error_id": error_id, "values": values or {}}, status)

    @router.get("/admin", response_class=HTMLResponse)
    async def admin(request: Request, user: HubUser = Depends(browser_user)) -> Response:
        return await _queue(request, user)

    @router.post("/admin/{alloc_id}/approve", response_class=HTMLResponse)
    async def admin_approve(request: Request, alloc_id: AllocId,
                            user: HubUser = Depends(browser_user)) -> Response:
        user = await fresh_user(request, user)
        form = await _form(request)
        submitted = {k: form[k] for k in FORM_ADJUSTABLE if k in form}
        note = form.get("note", "")

        def work(session: Session) -> None:
            alloc = core.get_visible(session, alloc_id, user.name, user.admin)
            current = alloc.snapshot()
            cleaned = core.clean_request(submitted)
            changes = {k: submitted[k] for k, v in cleaned.items()
                       if (v.isoformat() if isinstance(v, dt.date) else v) != current[k]}
            core.decide(session, alloc_id, user.name, user.admin, approve=True,
                        changes=changes, reason=note)

        try:
            await in_session(request, work)
        except UsageError as exc:
            return await _queue(request, user, 400, str(exc), alloc_id, submitted)
        return _redirect(request, "admin", message="approved", id=alloc_id)

    @router.post("/admin/{alloc_id}/deny", response_class=HTMLResponse)
    async def admin_deny(request: Request, alloc_id: AllocId,
                         user: HubUser = Depends(browser_user)) -> Response:
        user = await fresh_user(request, user)
        form = await _form(request)
        try:
            await in_session(request, lambda s: core.decide(
                s, alloc_id, user.name, user.admin, approve=False,
                reason=form.get("reason", "")))
        except UsageError as exc:
            return await _queue(request, user, 400, str(exc), alloc_id)
        return _redirect(request, "admin", message="denied", id=alloc_id)

    @router.get("/usage", response_class=HTMLResponse)
    async def usage_page(request: Request, user: HubUser = Depends(browser_user)) -> Response:
        rows = await in_session(request, usage_rows, user)
        return render(request, "usage.html", {"rows": rows, "chart": usage_chart(rows)})

    return router


def main() -> None:
    """Serve the app as the hub's ``allocations`` service (started by JupyterHub)."""
    from ..netutil import run_hub_service

    run_hub_service(create_app(), "the allocations service")


if __name__ == "__main__":
    main()
