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

import asyncio
import csv
import datetime as dt
import functools
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
from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import i18n
from ..catalog.schema import CATEGORY_LABELS, GRADE_LABELS
from ..errors import NotAuthorized, UsageError
from ..governance import audit
from ..hub.security import (
    CSRF_FIELD,
    FAILURE_HEADERS,
    MAX_INT64,
    HubUser,
    ServiceAuth,
    install_security_layer,
    parse_json_object,
)
from . import core, db
from .auth import COOKIE, LoginRequired, current_user, oauth_callback, page_user, service_auth
from .models import Allocation, AllocationStatus, AuditEntry
from .workspaces import WorkspaceError

T = TypeVar("T")

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/services/allocations/"
TEMPLATES = Path(__file__).with_name("templates")
#: the form fields of a request, in the order the form shows them
FORM_FIELDS = core.REQUEST_FIELDS
#: what an admin may change on the review page (datasets only through the API)
FORM_ADJUSTABLE = ("core_hours", "max_cores", "memory_per_job_gb", "storage_gb",
                   "start_date", "end_date")


def _(message: str) -> str:
    """Mark *message* for the catalogs (``pybabel extract``); it is translated where it
    is shown, in the page's language (:func:`oceandata.i18n.gettext`)."""
    return message


LABELS = {
    "project_title": _("Project title"), "pi": _("Principal investigator"),
    "institution": _("Institution"), "justification": _("Scientific justification"),
    "core_hours": _("Core-hours"), "max_cores": _("Cores at once (max)"),
    "memory_per_job_gb": _("Memory per job (GB)"), "storage_gb": _("Storage (GB)"),
    "start_date": _("Start date"), "end_date": _("End date"),
    "datasets": _("Datasets (catalog names, comma or space separated)"),
    # fields of the audit log's changes that are not on the request form
    "status": _("Status"), "reason": _("Note / reason"), "decided_at": _("Decided at"),
    "decided_by": _("Decided by"),
}
#: what the form says of a field whose value :func:`oceandata.alloc.core.clean_request`
#: refused, on a page in a language other than English (English shows the rule's own text)
FIELD_HINTS = {
    "project_title": _("Give a title of at most 200 characters."),
    "pi": _("Give a name of at most 200 characters."),
    "institution": _("Give a name of at most 200 characters."),
    "justification": _("The justification is too long."),
    "core_hours": _("Give a number greater than 0."),
    "max_cores": _("Give a whole number greater than 0."),
    "memory_per_job_gb": _("Give a number greater than 0."),
    "storage_gb": _("Give a number greater than 0."),
    "start_date": _("Give a date as YYYY-MM-DD."),
    "end_date": _("Give a date as YYYY-MM-DD."),
    "datasets": _("Give catalog names separated by commas or spaces."),
}
#: the words of an allocation's or a request's status, as pages show them
WORDS = {"pending": _("pending"), "approved": _("approved"), "denied": _("denied"),
         "published": _("published"), "pi": _("PI"), "member": _("member"),
         "admin": _("administrator"), "former member": _("former member"),
         "open": _("in progress"), "complete": _("complete"), "aborted": _("aborted"),
         "revoke": _("revoke"),
         "yes": _("yes"), "no": _("no"), "default": _("default"), "none": _("none"),
         "gateway": _("notebooks"), "batch": _("batch jobs"), "data": _("downloads"),
         "storage": _("storage"), "filed": _("filed"), "approve": _("approve"),
         "deny": _("deny"), "request": _("request"), "status": _("status"),
         "pass": _("passed"), **CATEGORY_LABELS, **GRADE_LABELS}


#: the status messages a page may show (``?message=<key>&id=<n>``); free text is never shown
MESSAGES = {
    "filed": _("Request #%(id)s filed: an administrator will review it."),
    "approved": _("Allocation #%(id)s approved."),
    "denied": _("Allocation #%(id)s denied."),
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


def approve_project(session: Session, alloc_id: int, actor: str, is_admin: bool, *,
                    changes: dict[str, Any] | None = None,
                    reason: str | None = None) -> Allocation:
    """Approve an allocation (:func:`oceandata.alloc.core.decide`) and make its workspace
    (:func:`oceandata.alloc.workspaces.sync_workspace`: the project group with its PI and
    members, the setgid folders) in the same transaction: when the workspace cannot be
    made, the approval is not recorded either."""
    from . import projects, workspaces

    alloc = core.decide(session, alloc_id, actor, is_admin, approve=True, changes=changes,
                        reason=reason)
    workspaces.sync_workspace(alloc, [m.user for m in projects.members(session, alloc)])
    return alloc


def usage_rows(session: Session, user: HubUser) -> list[dict[str, Any]]:
    """Usage per allocation, user and source, and bytes downloaded per user: the
    caller's, everybody's for an admin."""
    return core.usage_summary(session, None if user.admin else user.name)


def usage_csv(rows: list[dict[str, Any]]) -> str:
    """The usage rows as CSV text (header
    ``allocation_id,user,source,core_hours,records,bytes,gb_days``; ``gb_days`` is the
    storage charge of rows of source ``storage``, 0 elsewhere)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["allocation_id", "user", "source", "core_hours",
                                             "records", "bytes", "gb_days"],
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "core_hours": f"{row['core_hours']:.6g}",
                         "bytes": int(row.get("bytes", 0)),
                         "gb_days": f"{float(row.get('gb_days', 0.0)):.6g}"})
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


def usage_chart(rows: list[dict[str, Any]], width: int = 640,
                lang: str = "en") -> dict[str, Any]:
    """Geometry of three horizontal SVG bar charts: core-hours per allocation and user,
    bytes downloaded per user, and GB-days of storage per project.

    Parameters
    ----------
    rows
        Rows of :func:`oceandata.alloc.core.usage_summary` (compute sources are summed;
        rows of source ``data`` give the downloads).
    width
        Width of the charts in pixels.
    lang
        The language of the values' texts (:func:`page_bytes`, GB-days).

    Returns
    -------
    dict
        ``width``, ``height``, ``label_width`` and ``bars`` (core-hours; each bar with
        ``label``, ``value``, ``y``, ``length``, ``height``), and ``downloads``: the bytes
        chart as ``height`` and ``bars`` (each also with ``text``, the value as
        ``1.5 GB``), and ``storage``: the GB-days chart the same way (``text`` as
        ``12.5 GB-days``), ready for the template.
    """
    totals: dict[tuple[int | None, str], float] = {}
    downloaded: dict[str, int] = {}
    stored: dict[int, float] = {}
    for row in rows:
        if row.get("source") == core.DOWNLOADS:
            downloaded[row["user"]] = downloaded.get(row["user"], 0) + int(row["bytes"])
            continue
        if row.get("source") == core.STORAGE:
            alloc_id = row["allocation_id"]
            stored[alloc_id] = stored.get(alloc_id, 0.0) + float(row.get("gb_days", 0.0))
            continue
        key = (row["allocation_id"], row["user"])
        totals[key] = totals.get(key, 0.0) + row["core_hours"]
    label_width, value_width, bar_height, gap = 220, 90, 22, 8
    room = width - label_width - value_width
    ordered = sorted(totals.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or 0,
                                                     kv[0][1]))
    none = i18n.gettext(lang, "(none)")
    bars = _bars([(f"#{a} {who(u, lang)}" if a is not None else f"{none} {who(u, lang)}",
                   value)
                  for (a, u), value in ordered], room, bar_height, gap)
    for bar in bars:
        bar["text"] = i18n.format_number(bar["value"], lang, 2)
        bar["tip"] = i18n.gettext(lang, "%(label)s: %(value)s core-hours",
                                  label=bar["label"], value=bar["text"])
    height = max(len(bars) * (bar_height + gap), bar_height)
    # heaviest first: the users who download most are the ones to see
    heavy = sorted(downloaded.items(), key=lambda kv: (-kv[1], kv[0]))
    byte_bars = _bars([(who(user, lang), float(value)) for user, value in heavy], room,
                      bar_height, gap)
    for bar in byte_bars:
        bar["text"] = page_bytes(bar["value"], lang)
        bar["tip"] = i18n.gettext(lang, "%(label)s: %(size)s downloaded",
                                  label=bar["label"], size=bar["text"])
    storage_bars = _bars([(f"#{a}", value) for a, value in sorted(stored.items())], room,
                         bar_height, gap)
    for bar in storage_bars:
        bar["text"] = i18n.gettext(lang, "%(value)s GB-days",
                                   value=page_number(bar["value"], lang, 3))
        bar["tip"] = i18n.gettext(lang, "project %(label)s: %(value)s",
                                  label=bar["label"], value=bar["text"])
    return {"width": width, "height": height, "label_width": label_width, "bars": bars,
            "downloads": {"height": max(len(byte_bars) * (bar_height + gap), bar_height),
                          "bars": byte_bars},
            "storage": {"height": max(len(storage_bars) * (bar_height + gap), bar_height),
                        "bars": storage_bars}}


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
        scan = _start_storage_scan(url)
        try:
            if jobs is not None:
                await _maybe_await(jobs.startup(app))
            yield
        finally:
            if scan is not None:
                scan.cancel()
            if jobs is not None:
                await _maybe_await(jobs.shutdown(app))

    app = FastAPI(title="oceandata allocations", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=f"{prefix}api/openapi.json")
    app.state.prefix = prefix
    app.state.db_url = url
    # the English pages' templates (every language's: page_environment)
    app.state.templates = page_environment("en")
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

    from . import projects_api, publish_api, storage_api, uploads_api

    for module in (projects_api, uploads_api, publish_api):
        app.include_router(module.router, prefix=f"{prefix}api", responses=ERROR_RESPONSES)
        app.include_router(module.page_router, prefix=prefix.rstrip("/"),
                           include_in_schema=False)
    app.include_router(storage_api.router, prefix=f"{prefix}api", responses=ERROR_RESPONSES)
    overrides.update(uploads_api.body_limits(prefix))
    install_security_layer(app, overrides)
    return app


def format_when(value: dt.datetime | str | None, lang: str = "en") -> str:
    """A time of a record as people read it on a page, in UTC
    (:func:`oceandata.i18n.format_datetime`: ``5 Dec 2026, 04:45 UTC``,
    ``2026年12月5日 04:45 UTC``).

    Parameters
    ----------
    value
        A datetime (naive ones are UTC, as SQLite gives them back), an ISO 8601 text, or
        None ("never").
    lang
        The page's language.

    Returns
    -------
    str
        The UTC minute; a text that is no time is given back as it is.
    """
    if value is None or value == "":
        return i18n.gettext(lang, "never")
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return i18n.format_datetime(value, lang)


def page_number(value: float | int | None, lang: str, significant: int = 3) -> str:
    """*value* rounded to *significant* digits (as ``%.3g`` does, never in exponent form)
    and written as *lang* writes numbers (:func:`oceandata.i18n.format_number`)."""
    if value is None:
        return ""
    number = float(f"{float(value):.{significant}g}")
    text = f"{number:.{significant}g}"
    digits = len(text.split(".")[1]) if "." in text and "e" not in text else 0
    return i18n.format_number(number, lang, digits)


def page_bytes(value: float | int | None, lang: str = "en") -> str:
    """A size with its decimal unit (``2.5 MB``, three significant digits as
    :func:`oceandata.io.estimate.format_bytes` writes them), the number as *lang* writes
    numbers; None is "unknown"."""
    if value is None:
        return i18n.gettext(lang, "unknown")
    n = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            break
        n /= 1000
    return f"{i18n.format_number(round(n), lang, 0)} {unit}" if unit == "B" else \
        f"{page_number(n, lang)} {unit}"


#: the names of usage rows that are no user: what a page calls them
PSEUDO_USERS = {core.ANONYMOUS: _("(anonymous)"), core.PROJECT: _("(project)")}


def who(value: Any, lang: str) -> str:
    """A user column of a usage row in *lang*: the pseudo-users (anonymous downloads,
    the project's storage) in words, a user's name as it is (never taken for a word)."""
    text = "" if value is None else str(value)
    return i18n.gettext(lang, PSEUDO_USERS[text]) if text in PSEUDO_USERS else text


def change_value(value: Any, field: str, lang: str) -> str:
    """A value of field *field* in an audit entry's changes, as a page in *lang* shows it:
    a status as its word, a time (``..._at``) as people read it, a list joined; anything
    else (a user name, a title) as it is, never taken for one of the fixed words."""
    if value is None:
        return ""
    if field == "status":
        return word(value, lang)
    if field.endswith("_at") and isinstance(value, str):
        try:
            return format_when(dt.datetime.fromisoformat(value), lang)
        except ValueError:
            return value
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def word(value: Any, lang: str) -> str:
    """One of the fixed words a page shows of a record (a status, a role, a usage
    source: :data:`WORDS`) in *lang*; anything else, and every word in English (the
    value as the REST API gives it), as it is."""
    text = "" if value is None else str(value)
    return i18n.gettext(lang, WORDS[text]) if text in WORDS and lang != "en" else text


@functools.cache
def page_environment(lang: str) -> jinja2.Environment:
    """The Jinja2 environment of the pages in *lang*: ``{% trans %}`` and ``_()`` from the
    platform's catalogs (:func:`oceandata.i18n.translations`), the filters ``number``,
    ``size`` and ``when`` of :mod:`oceandata.i18n` (``when`` says "never" for no time),
    ``bytes`` (:func:`page_bytes`), ``sig`` (:func:`page_number`), ``word``
    (:func:`word`), ``change`` (:func:`change_value`) and ``who`` (:func:`who`), and the
    globals ``lang``, ``html_lang``, ``other_lang`` and
    ``other_lang_name``."""
    # as oceandata.i18n.environment makes them, with the whitespace of the templates kept
    # (a <textarea>'s lines, <pre>)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             extensions=["jinja2.ext.i18n"], undefined=jinja2.StrictUndefined)
    env.install_gettext_translations(i18n.translations(lang),  # type: ignore[attr-defined]
                                     newstyle=True)
    env.filters.update(
        number=lambda value, digits=None: i18n.format_number(value, lang, digits),
        size=lambda value: i18n.format_bytes(value, lang),
        bytes=lambda value: page_bytes(value, lang),
        when=lambda value, with_time=True: (format_when(value, lang) if with_time
                                            else i18n.format_datetime(value, lang, False)),
        sig=lambda value, significant=3: page_number(value, lang, significant),
        word=lambda value: word(value, lang),
        change=lambda value, field: change_value(value, field, lang),
        who=lambda value: who(value, lang))
    env.globals.update(lang=lang, html_lang=i18n.HTML_LANG[lang], other_lang=i18n.other(lang),
                       other_lang_name=i18n.NAMES[i18n.other(lang)])
    return env


def _sqlite_folder(url: str) -> None:
    """Create the folder of a SQLite database file (mode 0700) if it is missing."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        path = Path(url.removeprefix("sqlite:///").split("?")[0])
        if str(path):
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)


def _start_storage_scan(db_url: str) -> asyncio.Task[None] | None:
    """The periodic measurement of the workspaces (after syncing them once), unless
    ``OCEANDATA_STORAGE_SCAN_SECONDS`` is 0 (:mod:`oceandata.alloc.storage_api`)."""
    from . import storage_api

    interval = storage_api.scan_interval()
    if interval <= 0:
        return None
    return asyncio.get_running_loop().create_task(storage_api.scan_forever(db_url, interval))


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


#: the headline of an error page, by status (the refusal's own sentence follows it)
ERROR_TITLES = {
    400: _("The request is invalid."), 403: _("This is not allowed."),
    404: _("Not found: there is no such thing of yours."),
    409: _("This has already ended."), 413: _("The request is too large."),
    415: _("The request is not in a form the service reads."),
    422: _("A value in the address is invalid."),
    500: _("The service failed on this request."),
    503: _("The hub or a backend does not answer: try again in a moment.")}


def _error(request: Request, status: int, message: str) -> Response:
    if _is_api(request):
        return JSONResponse({"error": message}, status_code=status)
    lang = page_lang(request)
    title = i18n.gettext(lang, ERROR_TITLES.get(status, _("The request failed.")))
    if lang != "en" and status == 404:  # "no allocation 12 of yours": the headline says it
        title, message = None, title
    return render(request, "error.html", {"status": status, "error_message": message,
                                          "title": title}, status)


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

    async def unavailable(request: Request, exc: Exception) -> Response:
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return _error(request, 503, str(exc))

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
        response = _error(request, 500, "the service failed on this request; the "
                                        "administrators can find it in the service log")
        response.headers.update(FAILURE_HEADERS)
        return response

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, unexpected)
    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(UsageError, usage)
    app.add_exception_handler(NotAuthorized, forbidden)  # QuotaExceeded is one
    app.add_exception_handler(core.NotFound, not_found)
    app.add_exception_handler(WorkspaceError, unavailable)
    app.add_exception_handler(StarletteHTTPException, http_error)


# --- pages ---------------------------------------------------------------------------


def status_message(request: Request, lang: str = "en") -> str | None:
    """The status line of a page: a fixed text chosen by ``?message=<key>`` (and ``id``),
    in *lang*."""
    text = MESSAGES.get(request.query_params.get("message", ""))
    if text is None:
        return None
    ident = request.query_params.get("id", "")
    return i18n.gettext(lang, text, id=ident if ident.isdigit() and len(ident) < 20 else "?")


def saved_language(request: Request, user: HubUser | None) -> str | None:
    """The language *user* saved in their settings (:func:`oceandata.alloc.projects.
    language_of`), None when none or when the database cannot say."""
    if user is None:
        return None
    from . import projects

    try:
        with db.session_scope(request.app.state.db_url) as session:
            return projects.language_of(session, user.name)
    except Exception:  # the language must never break a page: the browser's is used
        log.exception("could not read the language of %s", user.name)
        return None


def page_lang(request: Request) -> str:
    """The language of the page answering *request* (:func:`oceandata.i18n.request_lang`:
    ``?lang=`` > the language cookie > the signed-in user's saved language >
    ``Accept-Language`` > English), found once per request."""
    known = getattr(request.state, "lang", None)
    if known is not None:
        return str(known)
    chosen = i18n.lang_of(request.query_params.get("lang")) or i18n.lang_of(
        request.cookies.get(i18n.LANG_COOKIE))
    setting = None if chosen else saved_language(request, getattr(request.state, "user",
                                                                  None))
    lang = i18n.request_lang(request, setting=setting)
    if getattr(request.state, "user", None) is not None:  # known for the rest of it
        request.state.lang = lang
    return lang


def localise(request: Request, response: Response, lang: str) -> Response:
    """Say a page's language in *response*'s headers (``Content-Language``, ``Vary``) and
    remember a ``?lang=`` choice in the language cookie."""
    response.headers["Content-Language"] = i18n.HTML_LANG[lang]
    response.headers["Vary"] = "Accept-Language, Cookie"
    i18n.remember(request, response)
    return response


#: the page a form's POST address shows (its language switch leads there: POST-only
#: addresses have no page of their own)
FORM_PAGES = ((re.compile(r"admin/publish/\d+/(approve|deny)"), "admin/publish"),
              (re.compile(r"admin/\d+/(approve|deny)"), "admin"),
              (re.compile(r"projects/(\d+)/members(/.*)?"), r"projects/\1"),
              (re.compile(r"upload/(\d+)"), r"projects/\1/upload"))


#: a query parameter the language switch carries over: a short token (the status line's
#: key, an id); anything else (free text someone put in a link) is never written back
SWITCH_TOKEN = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


def switch_link(request: Request, lang: str) -> str:
    """The language switch's link: the page's own address with ``lang`` set to the other
    language and its other query parameters kept when they are short tokens
    (:data:`SWITCH_TOKEN`: a page shows no free text from its link, not even in an
    attribute); after a form's POST, the page that form is on (:data:`FORM_PAGES`)."""
    kept = [(k, v) for k, v in request.query_params.multi_items()
            if SWITCH_TOKEN.fullmatch(k) and SWITCH_TOKEN.fullmatch(v)]
    query = i18n.switch_href(kept, i18n.other(lang))
    if request.method in ("GET", "HEAD"):
        return query
    path = request.url.path.removeprefix(request.app.state.prefix)
    for pattern, page in FORM_PAGES:
        if pattern.fullmatch(path):
            return request.app.state.prefix + pattern.sub(page, path) + query
    return query


def render(request: Request, name: str, context: dict[str, Any],
           status: int = 200) -> HTMLResponse:
    """Render a template in the page's language (:func:`page_lang`) with the common
    context (the user, the session's CSRF token, the translated labels, the status line,
    the storage warnings, the language switch's link)."""
    prefix = request.app.state.prefix
    user = getattr(request.state, "user", None)
    lang = page_lang(request)
    ctx = {"prefix": prefix, "csrf_field": CSRF_FIELD, "user": user,
           "labels": {k: i18n.gettext(lang, v) for k, v in LABELS.items()},
           "csrf": service_auth(request).csrf_token(user) if user is not None else "",
           "message": status_message(request, lang),
           "storage_warnings": storage_warnings(request, user, lang),
           "switch_href": switch_link(request, lang), **context}
    html = page_environment(lang).get_template(name).render(ctx)
    response = HTMLResponse(html, status_code=status)
    localise(request, response, lang)
    return response


def storage_warnings(request: Request, user: HubUser | None,
                     lang: str = "en") -> list[str]:
    """The warning lines, in *lang*, of *user*'s projects whose workspace holds 80% of its
    quota or more, from their last measurement (as
    :func:`oceandata.alloc.workspaces.storage_warnings`; a page never walks a workspace);
    none when the database cannot say."""
    if user is None:
        return []
    from . import workspaces

    lines = []
    try:
        with db.session_scope(request.app.state.db_url) as session:
            for status in workspaces.storage_alerts(session, user.name):
                values = {"project": status.allocation_id,
                          "used": page_bytes(status.used_bytes, lang),
                          "quota": page_bytes(status.quota_bytes, lang),
                          "percent": i18n.format_number(round(100 * status.fraction), lang,
                                                        0)}
                lines.append(i18n.gettext(
                    lang, "project %(project)s's workspace is full: %(used)s used of "
                    "%(quota)s", **values) if status.level == "full" else i18n.gettext(
                    lang, "project %(project)s's workspace is at %(percent)s%% of its quota: "
                    "%(used)s used of %(quota)s", **values))
    except Exception:  # a banner must never break a page
        log.exception("could not read the storage of %s's projects", user.name)
        return []
    return lines


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

        def projects(session: Session) -> dict[str, Any]:
            from . import projects, workspaces

            mine = projects.projects_of(session, user.name)
            return {"projects": [
                {"id": a.id, "project_title": a.project_title,
                 "role": "pi" if a.owner == user.name else "member",
                 "datasets": list(a.datasets or ()),
                 "workspace": str(workspaces.workspace_path(a.id))} for a in mine],
                "datasets": sorted({d for a in mine for d in a.datasets or ()}),
                "default_allocation": projects.default_allocation(session, user.name)}

        active = await in_session(request, work)
        return {"name": user.name, "admin": user.admin, "active_allocation": active,
                **await in_session(request, projects)}

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
        return await in_session(request, lambda s: _detail(s, approve_project(
            s, alloc_id, user.name, user.admin, changes=changes,
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


def refusal(lang: str, exc: Exception) -> str:
    """The sentence of a refused form shown on a page in *lang*: the rule's own sentence
    (:mod:`oceandata.alloc.core` words them in English, the REST API's language), after a
    translated lead-in on a page in another language."""
    return str(exc) if lang == "en" else i18n.gettext(lang, "Refused: %(reason)s",
                                                      reason=str(exc))


def field_errors(fields: dict[str, Any], lang: str = "en") -> dict[str, str]:
    """Per-field messages of :func:`oceandata.alloc.core.clean_request` (empty when valid).

    Parameters
    ----------
    fields
        The submitted form.
    lang
        The page's language: in English the rule's own sentence, in another a
        translated hint of what the field takes (:data:`FIELD_HINTS`).

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
                errors[name] = i18n.gettext(lang, "required")
            continue
        try:
            core.clean_request({name: value})
        except UsageError as exc:
            errors[name] = str(exc) if lang == "en" else i18n.gettext(lang, FIELD_HINTS[name])
    return errors


def _before(end: str, start: str) -> bool:
    """Whether the date *end* is before *start* (False when either is no date)."""
    try:
        return dt.date.fromisoformat(end.strip()) < dt.date.fromisoformat(start.strip())
    except ValueError:
        return False


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
        lang = page_lang(request)
        values = {name: form.get(name, "") for name in FORM_FIELDS}
        errors = field_errors(values, lang)
        if not errors and lang != "en" and _before(values["end_date"], values["start_date"]):
            # (in English the rule's own sentence says it)
            errors["end_date"] = i18n.gettext(lang, "The end date is before the start date.")
        if not errors:
            try:
                alloc_id = await in_session(
                    request, lambda s: core.request_allocation(s, user.name, values).id)
            except UsageError as exc:
                return render(request, "request.html", {
                    "values": values, "errors": {}, "error": refusal(lang, exc)}, 400)
            return _redirect(request, "", message="filed", id=alloc_id)
        return render(request, "request.html", {
            "values": values, "errors": errors,
            "error": i18n.gettext(lang, "The request was not filed: correct the fields marked "
                                  "below.")}, 400)

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
            raise NotAuthorized(i18n.gettext(
                page_lang(request), "%(user)s is not an administrator: the review queue is "
                "for administrators", user=user.name))
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
            approve_project(session, alloc_id, user.name, user.admin, changes=changes,
                            reason=note)

        try:
            await in_session(request, work)
        except UsageError as exc:
            return await _queue(request, user, 400, refusal(page_lang(request), exc),
                                alloc_id, submitted)
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
            return await _queue(request, user, 400, refusal(page_lang(request), exc),
                                alloc_id)
        return _redirect(request, "admin", message="denied", id=alloc_id)

    @router.get("/usage", response_class=HTMLResponse)
    async def usage_page(request: Request, user: HubUser = Depends(browser_user)) -> Response:
        rows = await in_session(request, usage_rows, user)
        return render(request, "usage.html", {
            "rows": rows, "chart": usage_chart(rows, lang=page_lang(request))})

    return router


def main() -> None:
    """Serve the app as the hub's ``allocations`` service (started by JupyterHub)."""
    from ..netutil import run_hub_service

    run_hub_service(create_app(), "the allocations service")


if __name__ == "__main__":
    main()
