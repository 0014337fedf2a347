"""What the hub writes to the platform's audit trail, and how it learns who did it.

JupyterHub itself records little: its event logging emits one event,
``server-action`` (a server started or stopped through the hub), and the events of
users, groups and tokens were proposed (jupyterhub/jupyterhub#3218) but never merged.
The hub's records (:mod:`oceandata.governance.audit`) therefore come from four places:

our handlers (:mod:`oceandata.hub.authenticator`, :mod:`oceandata.hub.handlers`)
    ``hub.login``, ``hub.login_failed``, ``hub.signup``, ``hub.approve_user``: the
    sign-in, sign-up and approval pages and the sign-up API are ours and call
    :func:`oceandata.governance.audit.record` themselves.
JupyterHub's event logging (:class:`ServerActions`, ``c.EventLogger.handlers``)
    ``hub.server_start`` and ``hub.server_stop`` for every server started or stopped
    through the hub (its pages, its REST API, the idle culler). JupyterHub emits these
    only on success.
``Spawner.post_stop_hook`` (:func:`server_stopped`)
    ``hub.server_stop`` of the servers that stopped without a request through the hub
    (the process exited, a start failed, the hub shut down), which emit no event.
SQLAlchemy events on JupyterHub's ORM (:func:`watch_orm`)
    ``hub.admin_change`` (``User.admin``), ``hub.group_change`` (group membership,
    groups created and deleted) and ``hub.token_create`` (every ``APIToken`` row: tokens
    asked for on the token page or the REST API, servers' and services' tokens, OAuth
    tokens of the services' logins). Whatever path changes the database (REST API,
    admin page, ``load_groups`` and ``admin_users`` at start) is seen; a record is
    written once the hub's transaction commits, never for one rolled back.

Who did it: :func:`track_requests` wraps JupyterHub's ``BaseHandler.prepare`` so that
the handler of the request being served is kept in a context variable (each request
runs in its own asyncio task, and tasks it starts, e.g. a spawn, inherit it).
:func:`caller` turns it into the actor (the user's name, ``service:<name>`` for a
service's token) and the client address behind the proxy. Changes made outside any
request (the hub's start-up, a server that exited, the hub's shutdown) are the hub's:
actor ``hub``.

:func:`install` sets all of this up from ``jupyterhub_config.py``.
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass
from typing import Any

from ..governance import audit
from .throttle import request_client

__all__ = ["REQUESTED", "SERVER_ACTION", "UNREQUESTED_STOP", "Caller", "ServerActions",
           "caller", "install", "server_stopped", "server_target", "track_requests",
           "unwatch_orm", "watch_orm"]

log = logging.getLogger(__name__)

#: the schema of JupyterHub's server events (JupyterHub >= 5, jupyter-events)
SERVER_ACTION = "https://schema.jupyter.org/jupyterhub/events/server-action"

#: ``reason`` of a server start or stop asked through the hub (JupyterHub's event)
REQUESTED = "requested through the hub"
#: ``reason`` of any other server stop (the post-stop hook)
UNREQUESTED_STOP = "stopped without a request (exited, failed to start, or the hub shut down)"

#: the JupyterHub handler of the request being served in this task, if any
_HANDLER: contextvars.ContextVar[Any] = contextvars.ContextVar("oceandata_hub_handler",
                                                              default=None)


@dataclass(frozen=True)
class Caller:
    """Who caused a change in the hub, and from where.

    Attributes
    ----------
    actor
        A user's name, ``service:<name>`` for a service's token, or ``hub`` when no
        signed-in request caused it (start-up, shutdown, a server that exited).
    source
        The client's address behind the proxy, or None outside a request.
    """

    actor: str
    source: str | None


def caller() -> Caller:
    """The :class:`Caller` of the code running now (see the module docstring)."""
    handler = _HANDLER.get()
    if handler is None:
        return Caller("hub", None)
    try:
        who = handler.current_user
    except RuntimeError:  # the user is not resolved yet (prepare is still running)
        who = None
    try:
        source: str | None = request_client(handler)
    except AttributeError:
        source = None
    if who is None:
        return Caller("hub", source)
    kind = getattr(who, "kind", "user")
    return Caller(who.name if kind == "user" else f"{kind}:{who.name}", source)


def track_requests() -> None:
    """Keep the handler of each hub request in a context variable (for :func:`caller`).

    Wraps ``jupyterhub.handlers.base.BaseHandler.prepare``, which every page and API
    handler of the hub runs before its method; idempotent.
    """
    from jupyterhub.handlers.base import BaseHandler

    original = BaseHandler.prepare
    if getattr(original, "_oceandata_tracked", False):
        return

    async def prepare(self: Any) -> None:
        _HANDLER.set(self)
        await original(self)

    prepare._oceandata_tracked = True  # type: ignore[attr-defined]
    prepare.__doc__ = original.__doc__
    BaseHandler.prepare = prepare  # type: ignore[method-assign]


def server_target(user_name: str, server_name: str = "") -> str:
    """The audit target of a user's server: ``server:<user>`` or ``server:<user>/<name>``.

    Examples
    --------
    >>> server_target("alice"), server_target("alice", "gpu")
    ('server:alice', 'server:alice/gpu')
    """
    return f"server:{user_name}" + (f"/{server_name}" if server_name else "")


class ServerActions(logging.Handler):
    """A logging handler for JupyterHub's ``EventLogger``: server events to the audit trail.

    ``c.EventLogger.handlers = [ServerActions()]``. JupyterHub emits
    ``{"action": "start"|"stop", "username", "servername"}`` (schema
    :data:`SERVER_ACTION`) from the handler that started or stopped the server, so the
    :func:`caller` is whoever asked (the user, an admin, ``service:idle-culler``).
    """

    def emit(self, record: logging.LogRecord) -> None:
        event = record.msg
        if not isinstance(event, dict) or event.get("__schema__") != SERVER_ACTION:
            return
        action = {"start": "hub.server_start", "stop": "hub.server_stop"}.get(
            event.get("action"))
        if action is None:
            return
        who = caller()
        try:
            audit.record(action, actor=who.actor,
                         target=server_target(event["username"], event.get("servername", "")),
                         source=who.source,
                         detail={"user": event["username"],
                                 "server": event.get("servername", ""),
                                 "reason": REQUESTED})
        except Exception:  # a logging handler must not break the hub
            self.handleError(record)


def server_stopped(spawner: Any) -> None:
    """``Spawner.post_stop_hook``: record stops no server event will tell about.

    A stop asked through the hub (``stop_single_user``: pages, REST API, idle culler)
    sets ``spawner._stop_future`` and is recorded from JupyterHub's event
    (:class:`ServerActions`) once it succeeded. Any other stop (the server's process
    exited, a start failed, the hub is shutting down) is recorded here, as the hub's.

    Parameters
    ----------
    spawner
        The spawner that has stopped.
    """
    if getattr(spawner, "_stop_future", None) is not None:
        return
    user = spawner.user.name
    name = getattr(spawner, "name", "") or ""
    audit.record("hub.server_stop", actor="hub", target=server_target(user, name),
                 detail={"user": user, "server": name, "reason": UNREQUESTED_STOP})


# --- JupyterHub's ORM: admin flags, group membership, tokens ---------------------------

def _history(obj: Any, attr: str) -> Any:
    from sqlalchemy import inspect

    return inspect(obj).attrs[attr].history


def _loaded(obj: Any, attr: str) -> Any:
    """The loaded value of *attr* (never loads it; None when it is not loaded)."""
    from sqlalchemy import inspect
    from sqlalchemy.orm.base import NO_VALUE

    value = inspect(obj).attrs[attr].loaded_value
    return None if value is NO_VALUE else value


def _owner(token: Any) -> str:
    if token.user is not None:
        return f"user:{token.user.name}"
    if token.service is not None:
        return f"service:{token.service.name}"
    return "token:orphan"


def _changes(session: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """``(action, target, detail)`` of what this flush writes (before it is committed)."""
    from jupyterhub import orm

    out: list[tuple[str, str, dict[str, Any]]] = []
    memberships: set[tuple[str, str, str]] = set()  # both sides of user_group_map

    def member(group: Any, user: Any, op: str) -> None:
        if group.name is not None and user.name is not None:
            memberships.add((group.name, user.name, op))

    for obj in (*session.new, *session.dirty):
        if isinstance(obj, orm.User):
            admin = _history(obj, "admin")
            new = obj in session.new
            if admin.added and (not new or bool(admin.added[0])):
                out.append(("hub.admin_change", f"user:{obj.name}",
                            {"admin": bool(admin.added[0]), "new_user": new}))
            groups = _history(obj, "groups")
            for group in groups.added:
                member(group, obj, "add")
            for group in groups.deleted:
                member(group, obj, "remove")
        elif isinstance(obj, orm.Group):
            if obj in session.new:
                out.append(("hub.group_change", f"group:{obj.name}", {"op": "create"}))
            users = _history(obj, "users")
            for user in users.added:
                member(obj, user, "add")
            for user in users.deleted:
                member(obj, user, "remove")
        elif isinstance(obj, orm.APIToken) and obj in session.new:
            out.append(("hub.token_create", _owner(obj), {
                "token_id": obj.id, "note": obj.note or "", "scopes": list(obj.scopes or []),
                "client": obj.client_id,
                "expires_at": obj.expires_at.isoformat() if obj.expires_at else None}))
    for group_name, user_name, op in sorted(memberships):
        out.append(("hub.group_change", f"group:{group_name}", {"op": op, "user": user_name}))
    for obj in session.deleted:
        if isinstance(obj, orm.Group):
            users = _loaded(obj, "users")
            detail: dict[str, Any] = {"op": "delete"}
            if users is not None:
                detail["users"] = sorted(u.name for u in users)
            out.append(("hub.group_change", f"group:{obj.name}", detail))
    return out


def _after_flush(session: Any, flush_context: Any) -> None:
    """Keep this flush's changes in *session*, to be recorded when it commits."""
    try:
        changes = _changes(session)
        if changes:
            who = caller()
            for action, target, detail in changes:
                audit.record_on_commit(session, action, actor=who.actor, target=target,
                                       source=who.source, detail=detail)
    except Exception:  # never break the hub's flush; say what was missed
        log.exception("audit: could not keep the hub's changes of this flush")


_LISTENERS = (("after_flush", _after_flush),)


def watch_orm() -> None:
    """Record admin, group and token changes of JupyterHub's ORM (idempotent).

    Listens to every SQLAlchemy session of this process: after each flush the changes
    to ``User.admin``, group membership (either side of ``user_group_map``), new and
    deleted groups and new ``APIToken`` rows are handed with their :func:`caller` to
    :func:`oceandata.governance.audit.record_on_commit`: written to the audit trail after
    the commit, dropped on a rollback.
    """
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    for name, fn in _LISTENERS:
        if not event.contains(Session, name, fn):
            event.listen(Session, name, fn)


def unwatch_orm() -> None:
    """Undo :func:`watch_orm` (tests)."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    for name, fn in _LISTENERS:
        if event.contains(Session, name, fn):
            event.remove(Session, name, fn)


def install(c: Any) -> None:
    """Wire the hub to the audit trail, from ``jupyterhub_config.py``.

    Sets ``c.EventLogger.handlers`` (:class:`ServerActions`) and
    ``c.Spawner.post_stop_hook`` (:func:`server_stopped`), tracks requests
    (:func:`track_requests`) and watches the ORM (:func:`watch_orm`). The login, sign-up
    and approval records need nothing here: our handlers write them.

    Parameters
    ----------
    c
        The hub's configuration object.
    """
    track_requests()
    watch_orm()
    c.EventLogger.handlers = [ServerActions()]
    c.Spawner.post_stop_hook = server_stopped
