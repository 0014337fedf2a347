"""REST routes and pages of publishing a project entry to the open catalog: requests and
the admin review queue (docs/projects.md). The rules are in
:mod:`oceandata.alloc.publishing`; this module only translates HTTP.

REST (under ``<prefix>api``, a JupyterHub token; a cookie session needs its CSRF token):

- ``POST projects/{id}/publish`` ``{"entry", "licence", "citation", "authors": [{"name",
  "affiliation", "orcid"?}], "title"?, "profile"?}`` -> 201 the request (400 without a
  licence or when the entry fails the strict compliance check; 404 for a non-member);
- ``GET projects/{id}/publish``: the project's requests (members and admins);
- ``GET publish-requests`` (admins; ``?status=pending|approved|denied``),
  ``GET publish-requests/{n}`` (the project's members and admins);
- ``POST publish-requests/{n}/approve`` (admins; optional ``{"title", "licence",
  "citation", "authors", "name"}``, or the same under ``"changes"``) and
  ``POST publish-requests/{n}/deny`` ``{"reason"}`` (admins; audited).

Pages (under the prefix): ``projects/{id}/publish`` (the form and the project's requests,
for members) and ``admin/publish`` (the review queue, for administrators); their forms
carry the session's CSRF token.

Mounted by the allocations service (:func:`oceandata.alloc.service.create_app`): ``router``
under ``<prefix>api``, ``page_router`` under the prefix (HTML pages).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from .. import i18n
from ..errors import NotAuthorized, OceandataError, UsageError
from ..hub.security import MAX_INT64, HubUser
from . import publishing
from .models import PublishState
from .service import (
    _,
    _form,
    _json_body,
    _redirect,
    admin_user,
    api_user,
    browser_user,
    fresh_user,
    in_session,
    json_body_doc,
    page_lang,
    refusal,
    render,
)

router = APIRouter()
page_router = APIRouter()

ProjectId = Annotated[int, PathParam(ge=1, le=MAX_INT64,
                                     description="The project's (allocation's) id.")]
RequestId = Annotated[int, PathParam(ge=1, le=MAX_INT64,
                                     description="The publish request's number.")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Largest number of items.")]
Offset = Annotated[int, Query(ge=0, le=MAX_INT64, description="Items to skip.")]
#: the fixed notices of the pages (``?done=<key>&n=<number>``); free text is never shown
NOTICES = {"filed": _("Publish request #%(n)s filed: an administrator will review it."),
           "approved": _("Publish request #%(n)s approved and published."),
           "denied": _("Publish request #%(n)s denied.")}


class Author(BaseModel):
    """An author of the published data."""

    model_config = ConfigDict(extra="forbid")
    name: str
    affiliation: str
    orcid: str | None = None


class PublishBody(BaseModel):
    """A request to publish an entry of the project catalog."""

    model_config = ConfigDict(extra="forbid")
    entry: str
    licence: str
    citation: str
    authors: list[Author]
    title: str | None = None
    profile: str | None = None


class ApproveBody(BaseModel):
    """What an administrator changes on approval (every field optional)."""

    model_config = ConfigDict(extra="forbid")
    title: str | None = None
    licence: str | None = None
    citation: str | None = None
    authors: list[Author] | None = None
    name: str | None = None


class DenyBody(BaseModel):
    """Why a request is denied."""

    model_config = ConfigDict(extra="forbid")
    reason: str


def _status(value: str | None) -> PublishState | None:
    if not value:
        return None
    try:
        return PublishState(value)
    except ValueError:
        raise UsageError(f"status {value!r}: give one of "
                         f"{', '.join(s.value for s in PublishState)}") from None


def _changes(body: dict[str, Any]) -> dict[str, Any]:
    changes = body.pop("changes", None) or {}
    if not isinstance(changes, dict):
        raise UsageError("changes must be a JSON object of field: new value")
    return {**body, **changes}


# --------------------------------------------------------------------------- REST


@router.post("/projects/{alloc_id}/publish", status_code=201,
             openapi_extra=json_body_doc(PublishBody))
async def file_publish_request(request: Request, alloc_id: ProjectId,
                               user: HubUser = Depends(api_user)) -> dict[str, Any]:
    """File a request to publish an entry of the project catalog."""
    body = await _json_body(request, required=True)
    return await in_session(request, lambda s: publishing.request_dict(
        publishing.file_request(s, alloc_id, user.name, user.admin, body)))


@router.get("/projects/{alloc_id}/publish")
async def project_publish_requests(request: Request, alloc_id: ProjectId,
                                   user: HubUser = Depends(api_user)) -> list[dict[str, Any]]:
    """The project's publish requests, newest first."""
    return await in_session(request, lambda s: [publishing.request_dict(r) for r in
                                                publishing.list_project_requests(
                                                    s, alloc_id, user.name, user.admin)])


@router.get("/publish-requests")
async def publish_requests(request: Request, status: str | None = None, limit: Limit = 100,
                           offset: Offset = 0,
                           user: HubUser = Depends(admin_user)) -> list[dict[str, Any]]:
    """Every publish request (administrators): the review queue."""
    wanted = _status(status)
    return await in_session(request, lambda s: [publishing.request_dict(r) for r in
                                                publishing.list_requests(
                                                    s, user.admin, wanted, limit, offset)])


@router.get("/publish-requests/{request_id}")
async def publish_request(request: Request, request_id: RequestId,
                          user: HubUser = Depends(api_user)) -> dict[str, Any]:
    """One publish request, with its compliance summary."""
    return await in_session(request, lambda s: publishing.request_dict(
        publishing.get_request(s, request_id, user.name, user.admin)))


@router.post("/publish-requests/{request_id}/approve",
             openapi_extra=json_body_doc(ApproveBody))
async def approve_publish_request(request: Request, request_id: RequestId,
                                  user: HubUser = Depends(admin_user)) -> dict[str, Any]:
    """Approve: check, copy, tag the copy, register, identify (administrators)."""
    changes = _changes(await _json_body(request))
    return await in_session(request, lambda s: publishing.request_dict(
        publishing.approve(s, request_id, user.name, user.admin, changes)))


@router.post("/publish-requests/{request_id}/deny", openapi_extra=json_body_doc(DenyBody))
async def deny_publish_request(request: Request, request_id: RequestId,
                               user: HubUser = Depends(admin_user)) -> dict[str, Any]:
    """Deny with a reason (administrators)."""
    body = await _json_body(request, required=True)
    return await in_session(request, lambda s: publishing.request_dict(
        publishing.deny(s, request_id, user.name, user.admin, body.get("reason"))))


# --------------------------------------------------------------------------- pages


def _notice(request: Request) -> str | None:
    text = NOTICES.get(request.query_params.get("done", ""))
    n = request.query_params.get("n", "")
    return None if text is None else i18n.gettext(
        page_lang(request), text, n=n if n.isdigit() and len(n) < 20 else "?")


def _authors_of(form: dict[str, str]) -> list[str]:
    """Authors of a form: one ``Name;Affiliation[;ORCID]`` a line."""
    return [line.strip() for line in form.get("authors", "").splitlines() if line.strip()]


async def _project_page(request: Request, user: HubUser, alloc_id: int, status: int = 200,
                        error: str | None = None,
                        values: dict[str, str] | None = None) -> Response:
    def work(s: Session) -> dict[str, Any]:
        from .projects import get_member_project

        alloc = get_member_project(s, alloc_id, user.name, user.admin)
        entries: list[str] = []
        try:  # read as every member-written catalog is (no sub-catalogs, aliases...)
            from ..catalog.projects import load_project_catalog
            from .workspaces import workspace_path

            entries = [name.split(".", 1)[1] for name in
                       load_project_catalog(alloc.id, workspace_path(alloc.id)).entries]
        except (OceandataError, OSError):  # no catalog yet, or unreadable: the form says so
            entries = []
        return {"project": {"id": alloc.id, "title": alloc.project_title},
                "entries": entries,
                "requests": [publishing.request_dict(r) for r in
                             publishing.list_project_requests(s, alloc_id, user.name,
                                                              user.admin)]}

    context = await in_session(request, work)
    return render(request, "publish.html", {**context, "error": error,
                                            "values": values or {},
                                            "notice": _notice(request)}, status)


@page_router.get("/projects/{alloc_id}/publish", response_class=HTMLResponse)
async def publish_page(request: Request, alloc_id: ProjectId,
                       user: HubUser = Depends(browser_user)) -> Response:
    return await _project_page(request, user, alloc_id)


@page_router.post("/projects/{alloc_id}/publish", response_class=HTMLResponse)
async def publish_submit(request: Request, alloc_id: ProjectId,
                         user: HubUser = Depends(browser_user)) -> Response:
    form = await _form(request)
    body = {k: form.get(k, "") for k in ("entry", "licence", "citation", "title", "profile")}
    body = {k: v for k, v in body.items() if v or k in ("licence", "citation", "entry")}
    body["authors"] = _authors_of(form)
    try:
        n = await in_session(request, lambda s: publishing.file_request(
            s, alloc_id, user.name, user.admin, body).id)
    except UsageError as exc:
        return await _project_page(request, user, alloc_id, 400,
                                   refusal(page_lang(request), exc), form)
    return _redirect(request, f"projects/{alloc_id}/publish", done="filed", n=n)


async def _queue(request: Request, user: HubUser, status: int = 200,
                 error: str | None = None, error_id: int | None = None) -> Response:
    if not user.admin:
        raise NotAuthorized(i18n.gettext(
            page_lang(request), "%(user)s is not an administrator: the publish queue is for "
            "administrators", user=user.name))
    rows = await in_session(request, lambda s: [
        publishing.request_dict(r) for r in publishing.list_requests(s, True)])
    pending = [r for r in rows if r["status"] == "pending"]
    decided = [r for r in reversed(rows) if r["status"] != "pending"][:50]
    return render(request, "publish_admin.html", {
        "pending": pending, "decided": decided, "error": error, "error_id": error_id,
        "notice": _notice(request)}, status)


@page_router.get("/admin/publish", response_class=HTMLResponse)
async def admin_publish(request: Request, user: HubUser = Depends(browser_user)) -> Response:
    return await _queue(request, user)


@page_router.post("/admin/publish/{request_id}/approve", response_class=HTMLResponse)
async def admin_publish_approve(request: Request, request_id: RequestId,
                                user: HubUser = Depends(browser_user)) -> Response:
    user = await fresh_user(request, user)
    form = await _form(request)
    current = await in_session(request, lambda s: publishing.request_dict(
        publishing.get_request(s, request_id, user.name, user.admin)))
    changes: dict[str, Any] = {}
    for key in ("title", "licence", "citation"):
        value = form.get(key, "").replace("\r\n", "\n").strip()  # a textarea's line ends
        if value and value != current[key]:
            changes[key] = value
    if form.get("name", "").strip() and form["name"].strip() != current["entry"]:
        changes["name"] = form["name"]
    try:
        authors = _authors_of(form)
        if authors and publishing.clean_authors(authors) != current["authors"]:
            changes["authors"] = authors
        await in_session(request, lambda s: publishing.approve(
            s, request_id, user.name, user.admin, changes))
    except UsageError as exc:
        return await _queue(request, user, 400, refusal(page_lang(request), exc),
                            request_id)
    return _redirect(request, "admin/publish", done="approved", n=request_id)


@page_router.post("/admin/publish/{request_id}/deny", response_class=HTMLResponse)
async def admin_publish_deny(request: Request, request_id: RequestId,
                             user: HubUser = Depends(browser_user)) -> Response:
    user = await fresh_user(request, user)
    form = await _form(request)
    try:
        await in_session(request, lambda s: publishing.deny(
            s, request_id, user.name, user.admin, form.get("reason", "")))
    except UsageError as exc:
        return await _queue(request, user, 400, refusal(page_lang(request), exc),
                            request_id)
    return _redirect(request, "admin/publish", done="denied", n=request_id)
