"""Who may see what in the open-data service: the one dependency every route goes through.

Open data needs no login. A caller may present a JupyterHub API token, as
``Authorization: Bearer <token>`` (or ``token <token>``), or as the *password* of HTTP
Basic authentication (any user name), which is what netCDF-C, ``ncdump``, MATLAB and curl
send from a ``.netrc``. The token is checked by the hub (:mod:`oceandata.hub.security`:
the same resolution, cache bound and scope rule as every service of the platform); its
owner's hub groups and the datasets named by their approved allocation in force are the
caller's grants, and :meth:`oceandata.catalog.Entry.granted` (the rule the notebooks use)
decides each entry.

Browsers of hub users may log in (``login``: the hub's OAuth, as the allocations
service does); the login cookie then identifies them like a token (HttpOnly,
SameSite=Lax). Every route of the service only reads, so a cookie-authenticated request
changes nothing and needs no CSRF token; the one GET that changes something, ``async=1``
(a job charged to an allocation, :func:`.asyncjobs.start`), refuses the cookie and takes
only a token in the ``Authorization`` header.

A restricted entry the caller is not granted does not exist for them: it is absent from
every list, search and STAC answer, and every path naming it (pages, downloads, DAP,
Zarr keys and chunks, EDR, ERDDAP) answers 404 with the same sentence as an unknown name.
Clients that only send credentials after a challenge (netCDF-C with ``.netrc``) use the
same URLs under ``auth/``: there a request without credentials is answered ``401`` with
``WWW-Authenticate: Basic`` whatever the path, so the challenge says nothing about which
datasets exist.

:func:`guard` is installed as a dependency of the whole application, so no route can be
reached without it; it also sets :data:`CALLER` (a context variable) for the code that
FastAPI's dependency injection does not reach (xpublish's dataset providers).
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import difflib
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from ..catalog.core import Catalog, Entry
from ..hub.security import CACHE_SECONDS, AuthError, header_token
from .i18n import gettext, request_lang

#: the path prefix under which every URL challenges for credentials (see the module doc)
AUTH_PREFIX = "/auth"
#: the realm of the Basic challenge
REALM = "oceandata"
#: how a dataset id names a version: ``<name>@<tag or snapshot>``
VERSION_SEP = "@"
#: the login cookie of browsers that logged in through the hub (see :func:`login`)
COOKIE = "oceandata-data-auth"


@dataclass(frozen=True)
class Caller:
    """Who is calling and what they are granted.

    Attributes
    ----------
    name
        The hub user name; None for an anonymous caller.
    groups
        The user's hub groups.
    datasets
        Datasets named by the user's approved allocation in force today.
    allocation
        The id of the user's approved allocation in force today, if any (a partner:
        :func:`oceandata.dataservice.policy.access_class`).
    projects
        Ids of the projects in force today the user leads or belongs to: their project
        catalogs' entries exist for this caller (:mod:`oceandata.catalog.projects`).
    """

    name: str | None = None
    groups: frozenset[str] = frozenset()
    datasets: frozenset[str] = frozenset()
    allocation: int | None = None
    projects: frozenset[int] = frozenset()

    @property
    def partner(self) -> bool:
        """Whether the user has an approved allocation in force today."""
        return self.allocation is not None

    @property
    def anonymous(self) -> bool:
        """True without credentials."""
        return self.name is None

    def may_see(self, entry: Entry, *, negative: Any = None) -> bool:
        """Whether *entry* exists for this caller (the platform's access rule).

        A pass over many entries gives *negative* from one
        :class:`oceandata.governance.rules.NegativeLists` (see :func:`visible_entries`).
        """
        return entry.granted(self.groups, self.datasets, user=self.name, negative=negative,
                             projects=self.projects)


ANONYMOUS = Caller()
#: the caller of the request being served (anonymous outside a request)
CALLER: contextvars.ContextVar[Caller] = contextvars.ContextVar("oceandata_data_caller",
                                                                default=ANONYMOUS)


def _challenge(message: str, status: int = 401) -> HTTPException:
    headers = {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'}
    return HTTPException(status, message, headers=headers if status == 401 else None)


def request_token(authorization: str | None, lang: str = "en") -> str | None:
    """The JupyterHub token of an ``Authorization`` header (None without the header).

    Raises
    ------
    HTTPException
        401 for a header that is neither ``Bearer``/``token <token>`` nor Basic.
    """
    if authorization is None:
        return None
    kind, _, value = authorization.strip().partition(" ")
    if kind.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _challenge(gettext(lang, "The Basic credentials are not base64 of "
                                           "'user:token'.")) from None
        _, sep, password = decoded.partition(":")
        if not sep or not password:
            raise _challenge(gettext(lang, "HTTP Basic needs a JupyterHub API token as the "
                                           "password."))
        return password
    try:
        return header_token(authorization)
    except AuthError:
        raise _challenge(gettext(lang, "The Authorization header must be 'Bearer <JupyterHub "
                                       "API token>' or HTTP Basic with the token as "
                                       "password.")) from None


#: (database, user) -> (when read, allocation id, datasets, projects): read at most every
#: CACHE_SECONDS
_GRANTS: dict[tuple[str, str], tuple[float, int | None, frozenset[str], frozenset[int]]] = {}
_GRANTS_LOCK = threading.Lock()


def allocation_grants(db_url: str | None, user: str
                      ) -> tuple[int | None, frozenset[str], frozenset[int]]:
    """One of *user*'s projects in force today (the newest; it makes the caller a partner),
    the datasets all of them grant and the ids of all of them (none without a database).

    Read from the allocations database at most once per :data:`CACHE_SECONDS` per user
    (the bound of the token cache): a client reading Zarr chunks sends many requests a
    second, and a revoked or expired allocation stops granting within that bound.

    Returns
    -------
    tuple
        ``(a project's allocation id or None, datasets, project ids)``.
    """
    if not db_url:
        return None, frozenset(), frozenset()
    now = time.monotonic()
    with _GRANTS_LOCK:
        found = _GRANTS.get((db_url, user))
    if found is not None and now - found[0] < CACHE_SECONDS:
        return found[1], found[2], found[3]
    from ..alloc.db import session_scope
    from ..alloc.projects import projects_of

    with session_scope(db_url) as session:
        # every project the user leads or belongs to shares its dataset grants
        found = projects_of(session, user)
        alloc_id = found[0].id if found else None
        datasets = frozenset(d for alloc in found for d in alloc.datasets or ())
        projects = frozenset(alloc.id for alloc in found)
    with _GRANTS_LOCK:
        _GRANTS[(db_url, user)] = (now, alloc_id, datasets, projects)
    return alloc_id, datasets, projects


async def identify(request: Request) -> Caller:
    """The caller of *request* (anonymous without credentials).

    Raises
    ------
    HTTPException
        401 (with a Basic challenge) for a token the hub does not know, or for a request
        without credentials under :data:`AUTH_PREFIX`; 403 for a token without this
        service's access scope; 503 when the hub cannot be asked.
    """
    lang = request_lang(request)
    token = request_token(request.headers.get("Authorization"), lang)
    via = "token"
    if token is None and request.cookies.get(COOKIE):
        token, via = request.cookies[COOKIE], "cookie"  # a browser that logged in
    if token is None:
        if request.scope.get("oceandata.auth_required"):
            raise _challenge(gettext(lang, "Credentials are required under auth/: HTTP "
                                           "Basic with a JupyterHub API token as the "
                                           "password."))
        return ANONYMOUS
    auth = getattr(request.app.state, "auth", None)
    if auth is None:
        raise _challenge(gettext(lang, "This server was started without a hub and cannot "
                                       "check tokens: it serves open data only, without "
                                       "credentials."))
    try:
        user = await auth.user_for_token(token, via)
    except AuthError as exc:
        if via == "cookie" and exc.status == 401:
            return ANONYMOUS  # an expired login: the open pages stay open
        raise _challenge(str(exc), exc.status) from None
    alloc_id, datasets, projects = await run_in_threadpool(
        allocation_grants, getattr(request.app.state, "alloc_db_url", None), user.name)
    return Caller(user.name, frozenset(user.groups), datasets, alloc_id, projects)


def split_id(dataset_id: str) -> tuple[str, str | None]:
    """``name@version`` → ``(name, version)``; a plain name has no version."""
    name, sep, version = dataset_id.partition(VERSION_SEP)
    return name, (version if sep else None)


def visible_entries(catalog: Catalog, caller: Caller) -> dict[str, Entry]:
    """The entries of *catalog* that exist for *caller*, in catalog order."""
    from ..governance.rules import NegativeLists

    lists = NegativeLists()
    return {name: entry for name, entry in catalog.entries.items()
            if caller.may_see(entry, negative=lists.of(entry))}


def resolve(catalog: Catalog, dataset_id: str, caller: Caller,
            lang: str = "en") -> tuple[Entry, str | None]:
    """The entry and version named by *dataset_id*, if *caller* may see it.

    Raises
    ------
    HTTPException
        404 for an unknown name and for a restricted entry not granted to *caller*
        (the same sentence: the answer must not tell them apart), suggesting close
        names among those the caller may see; 404 for a version of an entry that is
        not a versioned store.
    """
    name, version = split_id(dataset_id)
    entry = catalog.entries.get(name)
    if entry is None or not caller.may_see(entry):
        names = list(visible_entries(catalog, caller))
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        sentences = [gettext(lang, "There is no dataset %(name)s.", name=repr(name))]
        if close:
            sentences.append(gettext(lang, "Did you mean %(names)s?", names=", ".join(close)))
        sentences.append(gettext(lang, "The list of datasets is at datasets.json."))
        raise HTTPException(404, ("" if lang == "zh" else " ").join(sentences))
    if version is not None and entry.driver != "icechunk":
        raise HTTPException(404, gettext(lang, "Dataset %(name)s is not a versioned store, "
                                               "so it has no version %(version)s: use "
                                               "%(name)s alone.", name=repr(name),
                                         version=repr(version)))
    return entry, version


async def guard(request: Request) -> Caller:
    """The dependency of every route: identify the caller, check the dataset of the path.

    Sets ``request.state.caller`` (kept when :class:`.traffic.TrafficLayer` identified
    the caller already) and :data:`CALLER`; for a path naming a dataset
    (``{dataset_id}``), ``request.state.entry`` and ``request.state.version`` too, or
    answers 404 (see :func:`resolve`). Entries published since the last request are
    merged first (:func:`oceandata.dataservice.published.refresh_published`: one ``stat``
    of the published catalog), so OPeNDAP, Zarr and subsets serve a new publication at
    once, not only after a portal or STAC request.
    """
    from .published import refresh_published

    await refresh_published(request)
    # the traffic layer identified the caller already (limits are per user)
    caller = getattr(request.state, "caller", None)
    if caller is None:
        caller = await identify(request)
    if caller.projects:  # the caller's project catalogs, reloaded when they changed
        await refresh_projects(request.app, caller)
    CALLER.set(caller)
    request.state.caller = caller
    dataset_id = request.path_params.get("dataset_id")
    if dataset_id is not None:
        entry, version = resolve(request.app.state.catalog, str(dataset_id), caller,
                                 request_lang(request))
        request.state.entry = entry
        request.state.version = version
        if caller.name is not None:
            _record_access(request, caller, entry, version)
    return caller


async def refresh_projects(app: Any, caller: Caller) -> None:
    """Merge the current catalogs of *caller*'s projects into the served catalog.

    Each project catalog's file is looked at (one ``stat``) on every request of a member;
    a changed file is read again (in a thread), its entries replace the project's old
    ones, opened datasets of those names are forgotten and the bytes-served ledger learns
    the new names. Non-members never cause a read, and never see the entries.
    """
    watcher = getattr(app.state, "projects", None)
    if watcher is None or not watcher.stale(caller.projects):
        return
    changed = await run_in_threadpool(watcher.refresh, caller.projects)
    if not changed:
        return
    cache = getattr(app.state, "cache", None)
    if cache is not None and hasattr(cache, "forget"):
        cache.forget(changed)
        from xpublish.dependencies import get_cache

        derived = app.dependency_overrides.get(get_cache)
        if derived is not None:
            cache.retire_derived(derived(), changed)
    ledger = getattr(app.state, "ledger", None)
    if ledger is not None and getattr(ledger, "datasets", None) is not None:
        ledger.datasets = frozenset(app.state.catalog.entries)


#: seconds during which further requests of one user for one dataset and protocol are not
#: recorded again (a Zarr or DAP client reading one dataset sends hundreds of requests)
AUDIT_WINDOW = 600.0
_AUDITED: dict[tuple[str, str, str], float] = {}
_AUDITED_LOCK = threading.Lock()


def _record_access(request: Request, caller: Caller, entry: Entry,
                   version: str | None) -> None:
    """Record in the audit trail that *caller* was served an entry not open to all."""
    if entry.release() == "open":
        return
    from ..governance import audit
    from .policy import client_address

    local = request.url.path.removeprefix(request.scope.get("root_path", ""))
    parts = local.strip("/").split("/")  # datasets/<id>/<protocol>/..., or <protocol>/...
    protocol = (parts[2] if parts[0] == "datasets" and len(parts) > 2 else
                "page" if parts[0] == "datasets" else parts[0]).split(".")[0]
    key = (caller.name or "", entry.name, protocol)
    now = time.monotonic()
    with _AUDITED_LOCK:
        if now - _AUDITED.get(key, -AUDIT_WINDOW) < AUDIT_WINDOW:
            return
        _AUDITED[key] = now
        if len(_AUDITED) > 10_000:  # bounded: forget the oldest half
            for old in sorted(_AUDITED, key=_AUDITED.__getitem__)[:5_000]:
                del _AUDITED[old]
    audit.record("data.access", actor=caller.name, target=f"dataset:{entry.name}",
                 source=client_address(request), detail={"protocol": protocol,
                                                         "version": version,
                                                         "service": "data"})


class AuthPrefix:
    """ASGI wrapper: ``auth/<path>`` is ``<path>`` with credentials required.

    Parameters
    ----------
    app
        The application.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            root = scope.get("root_path", "")
            local = path[len(root):] if root and path.startswith(root) else path
            if local == AUTH_PREFIX or local.startswith(AUTH_PREFIX + "/"):
                # routes match the path below root_path, and links they build keep auth/
                scope = {**scope, "root_path": root + AUTH_PREFIX,
                         "oceandata.auth_required": True}
        await self.app(scope, receive, send)


def alloc_db_url() -> str | None:
    """The allocations database the grants are read from (``OCEANDATA_ALLOC_DB_URL``)."""
    return os.environ.get("OCEANDATA_ALLOC_DB_URL") or None


def _service_auth(request: Request) -> Any:
    auth = getattr(request.app.state, "auth", None)
    if auth is None:
        raise HTTPException(404, gettext(request_lang(request), "This server was started "
                                         "without a hub, so there is no login: it serves "
                                         "open data only."))
    return auth


def _local(request: Request, target: str | None) -> str:
    """*target* if it is a path of this service, else the service's root."""
    root = request.scope.get("root_path", "").removesuffix(AUTH_PREFIX) or ""
    home = root + "/"
    if not target or not target.startswith(home) or target.startswith("//"):
        return home
    return target


async def login(request: Request) -> Any:
    """Send a browser through the hub's OAuth login, then back to ``next`` (a local path)."""
    from fastapi.responses import RedirectResponse

    auth = _service_auth(request)
    url, state = auth.login_redirect(_local(request, request.query_params.get("next")))
    response = RedirectResponse(url, status_code=302)
    root = request.scope.get("root_path", "").removesuffix(AUTH_PREFIX) or "/"
    response.set_cookie(auth.state_cookie_name, state, max_age=600,
                        **auth.cookie_options(root))
    return response


async def oauth_callback(request: Request) -> Any:
    """Finish the hub's OAuth login: keep the user's token in the login cookie."""
    from fastapi.responses import RedirectResponse

    auth = _service_auth(request)
    try:
        token, target = await auth.finish_login(
            request.query_params.get("code"), request.query_params.get("state"),
            request.cookies.get(auth.state_cookie_name))
    except AuthError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    root = request.scope.get("root_path", "").removesuffix(AUTH_PREFIX) or "/"
    response = RedirectResponse(_local(request, target), status_code=302)
    response.set_cookie(COOKIE, token, **auth.cookie_options(root))
    response.delete_cookie(auth.state_cookie_name, path=root)
    return response


async def logout(request: Request) -> Any:
    """Forget the login cookie and go back to the service's root."""
    from fastapi.responses import RedirectResponse

    root = request.scope.get("root_path", "").removesuffix(AUTH_PREFIX) or "/"
    response = RedirectResponse(_local(request, None), status_code=302)
    response.delete_cookie(COOKIE, path=root)
    return response
