"""REST routes and pages of projects: members, the user's default project, workspaces and storage
(docs/projects.md).

Mounted by the allocations service (:func:`oceandata.alloc.service.create_app`): ``router``
under ``<prefix>api``, ``page_router`` under the prefix (HTML pages).

REST (a JupyterHub token; a cookie session's changes need its CSRF token):

- ``GET projects``: the caller's projects (as PI or member, whatever their state), each
  with ``role``, ``in_force`` and ``default``;
- ``GET projects/{id}``: one project of the caller's (an admin: any) with its members,
  core-hours per member, and the workspace's last measured size against its quota;
  404 for anyone else, as if it did not exist;
- ``POST projects/{id}/members`` ``{"user": name}``: the PI (or an admin) adds a member
  (idempotent) who must be a user of the hub (asked of the hub's REST API with the
  service's token, :func:`hub_user_exists`: otherwise 400 "no hub user NAME", so nobody
  who signs up later under that name inherits a membership);
  ``DELETE projects/{id}/members/{user}`` removes one. A member is 403, a
  non-member 404. The project's Unix group follows in the same transaction
  (:func:`oceandata.alloc.workspaces.sync_workspace`): if the group cannot be changed,
  nothing is (503);
- ``GET settings``, ``PUT settings`` ``{"default_allocation": id | null, "language":
  "en" | "zh" | null}`` (either or both): the project used when a request names none and
  the user is in several; the user's platform language (null: the browser's,
  docs/i18n.md).

Pages: ``projects``, ``projects/{id}`` (members; add and remove forms for the PI and
admins), ``settings`` (the default project and the language; saving the language also
sets, or clears, the language cookie every service of the platform reads). Every rule is in
:mod:`oceandata.alloc.projects`; this module translates HTTP.
"""

from __future__ import annotations

import datetime as dt
import logging
import urllib.parse
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .. import i18n
from ..errors import NotAuthorized, OceandataError, UsageError
from ..hub.accounts import HUB_NAME
from ..hub.security import MAX_INT64, HubUser, whole_number
from . import core, projects
from .auth import current_user, page_user, service_auth
from .core import NotFound
from .models import Allocation, Usage
from .service import _, _form, _json_body, fresh_user, in_session, page_lang, refusal, render

log = logging.getLogger(__name__)

router = APIRouter()
page_router = APIRouter()

#: a hub user name in a path (anything else is not a member of any project)
UserName = Annotated[str, PathParam(min_length=1, max_length=64,
                                    pattern=r"^[A-Za-z0-9_.-]+$",
                                    description="The member's hub user name.")]
ProjectId = Annotated[int, PathParam(ge=1, le=MAX_INT64,
                                     description="The project's (allocation's) id.")]

#: status lines of the pages (``?message=<key>&user=<name>``); free text is never shown
MESSAGES = {
    "added": _("%(user)s is now a member."),
    "removed": _("%(user)s is no longer a member."),
    "default": _("Settings saved."),
}


class MemberBody(BaseModel):
    """A member to add: a hub user name."""

    user: str


class SettingsBody(BaseModel):
    """The user's settings, either or both: the default project (an id, or null to clear
    it) and the platform language (``en``, ``zh``, or null: the browser's)."""

    default_allocation: int | None = None
    language: str | None = None


# --- serialisation ---------------------------------------------------------------------


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite keeps naive UTC
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat()


def _role(alloc: Allocation, user: str, is_member: bool) -> str:
    if alloc.owner == user:
        return "pi"
    return "member" if is_member else "admin"


def project_dict(session: Session, alloc: Allocation, user: str,
                 default: int | None = None) -> dict[str, Any]:
    """One project as the caller sees it in lists.

    Parameters
    ----------
    session
        An open session.
    alloc
        The project (an allocation the caller leads or belongs to, or any for an admin).
    user
        The caller's hub name.
    default
        The caller's default project id.

    Returns
    -------
    dict
        ``id``, ``project_title``, ``owner``, ``status``, ``start_date``, ``end_date``,
        ``in_force``, ``role`` (``pi``, ``member`` or ``admin``), ``default``,
        ``datasets``, ``workspace``, ``core_hours``, ``used_core_hours``,
        ``remaining_core_hours``, ``max_cores``, ``storage_gb``.
    """
    from . import workspaces

    used = core.used_core_hours(session, alloc.id)
    return {"id": alloc.id, "project_title": alloc.project_title, "owner": alloc.owner,
            "status": alloc.status.value, "start_date": alloc.start_date.isoformat(),
            "end_date": alloc.end_date.isoformat(),
            "in_force": alloc.active_on(dt.date.today()),
            "role": _role(alloc, user, projects.is_member(session, alloc, user)),
            "default": alloc.id == default, "datasets": list(alloc.datasets or ()),
            "workspace": str(workspaces.workspace_path(alloc.id)),
            "core_hours": alloc.core_hours, "used_core_hours": used,
            "remaining_core_hours": alloc.core_hours - used, "max_cores": alloc.max_cores,
            "storage_gb": alloc.storage_gb}


def storage_dict(session: Session, alloc: Allocation) -> dict[str, Any]:
    """The workspace's last measured size against its quota and the GB-days charged
    (:mod:`oceandata.alloc.workspaces`; ``GET projects/{id}/storage`` measures anew)."""
    from . import workspaces

    rows = workspaces.storage_summary(session, [alloc.id])
    row = rows[0] if rows else {"bytes": 0, "gb_days": 0.0, "measured_at": None}
    status = workspaces.storage_status(alloc, row["bytes"])
    return {"used_bytes": status.used_bytes, "quota_bytes": status.quota_bytes,
            "fraction": status.fraction if status.quota_bytes > 0 else None,
            "level": status.level, "warning": status.message(),
            "gb_days": row["gb_days"], "measured_at": _iso(row["measured_at"])}


def project_detail(session: Session, alloc: Allocation, user: str) -> dict[str, Any]:
    """:func:`project_dict` with the members, core-hours per member and storage."""
    default = projects.default_allocation(session, user)
    charged = dict(session.execute(
        select(Usage.user, func.sum(Usage.core_hours)).where(Usage.allocation_id == alloc.id)
        .group_by(Usage.user)).all())
    members = [{"user": m.user, "role": m.role.value, "added_by": m.added_by,
                "added_at": _iso(m.added_at), "core_hours": float(charged.pop(m.user, 0.0))}
               for m in projects.members(session, alloc)]
    # usage of former members stays in the ledger under their names
    former = [{"user": name, "core_hours": float(hours)} for name, hours in sorted(
        charged.items())]
    return {**project_dict(session, alloc, user, default), "pi": alloc.pi,
            "institution": alloc.institution, "members": members,
            "former_members_usage": former, "storage": storage_dict(session, alloc)}


# --- the work ------------------------------------------------------------------------


def _sync(session: Session, alloc: Allocation) -> None:
    """Give the project's workspace to exactly its members now (in the transaction of
    the change: if the Unix group cannot follow, the change is rolled back)."""
    from . import workspaces

    sync = getattr(workspaces, "sync_workspace", None)
    if sync is None:  # pragma: no cover - until workspaces has it
        return
    try:
        sync(alloc, [m.user for m in projects.members(session, alloc)])
    except OceandataError as exc:
        log.error("project %s: workspace not synchronised: %s", alloc.id, exc)
        raise HTTPException(503, f"the workspace of project {alloc.id} could not follow "
                                 f"the change, so nothing changed: {exc}") from None


def _admin(user: HubUser) -> bool:
    return user.admin


def list_projects(session: Session, user: HubUser) -> list[dict[str, Any]]:
    """The caller's projects, newest first."""
    default = projects.default_allocation(session, user.name)
    return [project_dict(session, a, user.name, default)
            for a in projects.projects_of(session, user.name, active=False)]


def show_project(session: Session, alloc_id: int, user: HubUser) -> dict[str, Any]:
    """One project of the caller's (404 otherwise)."""
    alloc = projects.get_member_project(session, alloc_id, user.name, _admin(user))
    return project_detail(session, alloc, user.name)


def hub_user_exists(hub_auth: Any, name: str) -> bool:
    """Whether *name* is a user of the hub: ``GET <hub API>/users/<name>`` with the
    service's own token (the hub configuration grants the ``allocations`` service
    ``read:users:name``).

    Parameters
    ----------
    hub_auth
        The service's :class:`jupyterhub.services.auth.HubOAuth` (``api_url``,
        ``api_token``).
    name
        A well-formed hub user name.

    Raises
    ------
    fastapi.HTTPException
        503 when the hub cannot be asked or does not answer 200 or 404.
    """
    url = f"{hub_auth.api_url.rstrip('/')}/users/{urllib.parse.quote(name, safe='')}"
    try:
        answer = httpx.get(url, headers={"Authorization": f"token {hub_auth.api_token}"},
                           timeout=30)
    except httpx.HTTPError as exc:
        log.error("could not ask the hub about user %s: %s", name, exc)
        answer = None
    if answer is not None and answer.status_code in (200, 404):
        return answer.status_code == 200
    log.error("the hub answered %s about user %s", getattr(answer, "status_code", None), name)
    raise HTTPException(503, f"could not ask the hub whether {name} is one of its users, so "
                             "nobody was added: try again later")


def add_member(session: Session, alloc_id: int, user: HubUser, name: str,
               hub_auth: Any = None) -> dict[str, Any]:
    """The PI or an admin adds *name*, who must be a user of the hub (asked with
    *hub_auth*, :func:`hub_user_exists`, after the caller's right and the name's form
    were checked and before any Unix account is made); the workspace follows."""
    if hub_auth is not None:
        # the caller's right and the name's form first (an outsider learns nothing, not
        # even whether a name is the hub's), then the hub, then the change: the member's
        # row is written in a savepoint, which SQLite's driver may commit at once
        projects._may_manage(session, alloc_id, user.name, _admin(user), adding=True)
        name = projects._hub_name(name)
        if not hub_user_exists(hub_auth, name):
            raise UsageError(f"no hub user {name}: members must have signed up to the hub")
    alloc = projects.add_member(session, alloc_id, user.name, _admin(user), name)
    _sync(session, alloc)
    return project_detail(session, alloc, user.name)


def remove_member(session: Session, alloc_id: int, user: HubUser,
                  name: str) -> dict[str, Any]:
    """The PI or an admin removes *name*; the workspace follows."""
    alloc = projects.remove_member(session, alloc_id, user.name, _admin(user), name)
    _sync(session, alloc)
    return project_detail(session, alloc, user.name)


def settings_dict(session: Session, user: HubUser) -> dict[str, Any]:
    """The caller's settings (default project, language) and the projects they may choose
    from."""
    return {"default_allocation": projects.default_allocation(session, user.name),
            "projects": [a.id for a in projects.projects_of(session, user.name)],
            "language": projects.language_of(session, user.name)}


#: "keep it as it is" for :func:`put_settings`
KEEP: Any = object()


def put_settings(session: Session, user: HubUser, value: Any = KEEP,
                 language: Any = KEEP) -> dict[str, Any]:
    """Set (or clear, with None) the caller's default project and/or language (both in
    one transaction; :data:`KEEP` leaves one as it is)."""
    if value is not KEEP:
        projects.set_default(session, user.name, value)
    if language is not KEEP:
        projects.set_language(session, user.name, language)
    return settings_dict(session, user)


def _language_value(value: Any) -> str | None:
    """A language of the settings: ``en``, ``zh`` or None (the browser's)."""
    if value is None or (isinstance(value, str) and value in i18n.LANGUAGES):
        return value
    raise UsageError(f"language {str(value)[:20]!r}: give \"en\", \"zh\" or null (the "
                     "browser's language)")


def _settings_values(body: dict[str, Any]) -> tuple[Any, Any]:
    """The default project and the language a PUT of the settings changes (:data:`KEEP`
    for one it leaves out); 400 when it names neither."""
    if "default_allocation" not in body and "language" not in body:
        raise UsageError('give {"default_allocation": <project id> or null} and/or '
                         '{"language": "en", "zh" or null}')
    value = _default_value(body) if "default_allocation" in body else KEEP
    language = _language_value(body["language"]) if "language" in body else KEEP
    return value, language


def _default_value(body: dict[str, Any]) -> int | None:
    value = body["default_allocation"]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INT64:
        raise UsageError(f"default_allocation {str(value)[:40]!r}: give a project id (a "
                         "positive integer) or null")
    return value


def _member_name(body: dict[str, Any]) -> str:
    name = body.get("user")
    if not isinstance(name, str):
        raise UsageError('give the member as {"user": "<hub user name>"}')
    return name


# --- REST --------------------------------------------------------------------------------


async def _fresh_if_admin(request: Request, user: HubUser) -> HubUser:
    """An admin's right is asked of the hub afresh before it changes another's project."""
    return await fresh_user(request, user) if user.admin else user


@router.get("/projects")
async def get_projects(request: Request,
                       user: HubUser = Depends(current_user)) -> list[dict[str, Any]]:
    """The caller's projects (as PI or member), newest first."""
    return await in_session(request, list_projects, user)


@router.get("/projects/{alloc_id}")
async def get_project(request: Request, alloc_id: ProjectId,
                      user: HubUser = Depends(current_user)) -> dict[str, Any]:
    """One project: members, core-hours per member, storage; 404 for a non-member."""
    return await in_session(request, show_project, alloc_id, user)


@router.post("/projects/{alloc_id}/members",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": MemberBody.model_json_schema()}}}})
async def post_member(request: Request, alloc_id: ProjectId,
                      user: HubUser = Depends(current_user)) -> dict[str, Any]:
    """Add a member (the PI or an admin); the project's detail after the change."""
    name = _member_name(await _json_body(request, required=True))
    user = await _fresh_if_admin(request, user)
    return await in_session(request, add_member, alloc_id, user, name,
                            service_auth(request).hub_auth)


@router.delete("/projects/{alloc_id}/members/{name}")
async def delete_member(request: Request, alloc_id: ProjectId, name: UserName,
                        user: HubUser = Depends(current_user)) -> dict[str, Any]:
    """Remove a member (the PI or an admin); the project's detail after the change."""
    user = await _fresh_if_admin(request, user)
    return await in_session(request, remove_member, alloc_id, user, name)


@router.get("/settings")
async def get_settings(request: Request,
                       user: HubUser = Depends(current_user)) -> dict[str, Any]:
    """The caller's default project and the projects in force they may choose."""
    return await in_session(request, settings_dict, user)


@router.put("/settings", openapi_extra={"requestBody": {"required": True, "content": {
    "application/json": {"schema": SettingsBody.model_json_schema()}}}})
async def set_settings(request: Request,
                       user: HubUser = Depends(current_user)) -> dict[str, Any]:
    """Set or clear (null) the caller's default project and/or language."""
    value, language = _settings_values(await _json_body(request, required=True))
    return await in_session(request, put_settings, user, value, language)


# --- pages -------------------------------------------------------------------------------


async def _page_user(request: Request, user: HubUser = Depends(page_user)) -> HubUser:
    request.state.user = user  # for the templates
    return user


def _message(request: Request) -> str | None:
    text = MESSAGES.get(request.query_params.get("message", ""))
    if text is None:
        return None
    name = request.query_params.get("user", "")
    return i18n.gettext(page_lang(request), text, user=name if HUB_NAME.match(name) else "?")


def _page(request: Request, name: str, context: dict[str, Any],
          status: int = 200) -> HTMLResponse:
    message = _message(request)
    if message is not None:
        context = {**context, "message": message}
    return render(request, name, context, status)


def _redirect(request: Request, path: str, **query: str) -> RedirectResponse:
    target = request.app.state.prefix + path
    if query:
        target += "?" + urllib.parse.urlencode(query)
    return RedirectResponse(target, status_code=303)


def _status_of(request: Request, exc: Exception) -> tuple[int, str]:
    """The status and sentence of a refused change shown on its page (:func:`oceandata.
    alloc.service.refusal`)."""
    lang = page_lang(request)
    if isinstance(exc, HTTPException):
        return exc.status_code, refusal(lang, Exception(str(exc.detail)))
    return (403 if isinstance(exc, NotAuthorized) else 400), refusal(lang, exc)


@page_router.get("/projects", response_class=HTMLResponse)
async def projects_page(request: Request, user: HubUser = Depends(_page_user)) -> Response:
    mine = await in_session(request, list_projects, user)
    return _page(request, "projects.html", {"projects": mine})


async def _project_page(request: Request, alloc_id: int, user: HubUser, status: int = 200,
                        error: str | None = None) -> Response:
    detail = await in_session(request, show_project, alloc_id, user)
    manage = detail["role"] == "pi" or user.admin
    return _page(request, "project.html", {"p": detail, "manage": manage, "error": error},
                 status)


@page_router.get("/projects/{alloc_id}", response_class=HTMLResponse)
async def project_page(request: Request, alloc_id: ProjectId,
                       user: HubUser = Depends(_page_user)) -> Response:
    return await _project_page(request, alloc_id, user)


@page_router.post("/projects/{alloc_id}/members", response_class=HTMLResponse)
async def project_add(request: Request, alloc_id: ProjectId,
                      user: HubUser = Depends(_page_user)) -> Response:
    name = (await _form(request)).get("user", "").strip()
    user = await _fresh_if_admin(request, user)
    try:
        await in_session(request, add_member, alloc_id, user, name,
                         service_auth(request).hub_auth)
    except (UsageError, NotAuthorized, HTTPException) as exc:
        return await _project_page(request, alloc_id, user, *_status_of(request, exc))
    return _redirect(request, f"projects/{alloc_id}", message="added", user=name)


@page_router.post("/projects/{alloc_id}/members/{name}/remove", response_class=HTMLResponse)
async def project_remove(request: Request, alloc_id: ProjectId, name: UserName,
                         user: HubUser = Depends(_page_user)) -> Response:
    user = await _fresh_if_admin(request, user)
    try:
        await in_session(request, remove_member, alloc_id, user, name)
    except (UsageError, NotAuthorized, HTTPException) as exc:
        return await _project_page(request, alloc_id, user, *_status_of(request, exc))
    return _redirect(request, f"projects/{alloc_id}", message="removed", user=name)


async def _settings_page(request: Request, user: HubUser, status: int = 200,
                         error: str | None = None) -> Response:
    def work(session: Session) -> dict[str, Any]:
        return {"settings": settings_dict(session, user),
                "choices": [project_dict(session, a, user.name)
                            for a in projects.projects_of(session, user.name)]}

    context = await in_session(request, work)
    return _page(request, "settings.html", {**context, "error": error}, status)


@page_router.get("/settings", response_class=HTMLResponse)
async def settings_page(request: Request, user: HubUser = Depends(_page_user)) -> Response:
    return await _settings_page(request, user)


@page_router.post("/settings", response_class=HTMLResponse)
async def settings_submit(request: Request, user: HubUser = Depends(_page_user)) -> Response:
    """Save the settings form: the default project and, when the form has it, the
    language; saving a language sets the language cookie too (cleared for the browser's
    language), so the hub's pages and the portal follow at once."""
    form = await _form(request)
    raw = form.get("default_allocation", "").strip()
    lang = page_lang(request)
    language: Any = KEEP
    try:
        value = whole_number(raw) if raw else None
        if raw and value is None:
            raise UsageError(i18n.gettext(lang, "default project %(value)s: choose one of "
                                          "your projects", value=repr(raw[:40])))
        if "language" in form:
            chosen = form["language"].strip()
            if chosen and chosen not in i18n.LANGUAGES:
                raise UsageError(i18n.gettext(lang, "language %(value)s: choose English, "
                                              "中文 or the browser's language",
                                              value=repr(chosen[:20])))
            language = chosen or None
        await in_session(request, put_settings, user, value, language)
    except (UsageError, NotFound, NotAuthorized) as exc:
        code = 404 if isinstance(exc, NotFound) else 400
        return await _settings_page(request, user, code, refusal(lang, exc))
    response = _redirect(request, "settings", message="default")
    if language is not KEEP:
        response.headers.append("set-cookie", i18n.cookie_header(
            language, secure=request.url.scheme == "https"))
    return response
