"""A REST API for sign-up approval, added to JupyterHub (``c.JupyterHub.extra_handlers``).

NativeAuthenticator approves sign-ups from an HTML page (``/hub/authorize``) that only
accepts a browser session. Administrators' scripts and the platform's tests use this API
instead, with a JupyterHub token holding the ``admin:users`` scope:

``GET /hub/api/oceandata/signups``
    Every NativeAuthenticator account: ``[{"name", "authorized"}]``.
``POST /hub/api/oceandata/signups/<name>``
    Approve *name* (idempotent); 404 if nobody signed up with that name.
``DELETE /hub/api/oceandata/signups/<name>``
    Withdraw the approval (the account stays; it can no longer log in).

Each decision is written to the audit trail (``hub.approve_user``, ``via: api``).
"""

from __future__ import annotations

import json

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.scopes import needs_scope
from nativeauthenticator.orm import UserInfo
from tornado import web

from ..governance import audit
from .throttle import request_client


class SignupListAPIHandler(APIHandler):
    """``GET /hub/api/oceandata/signups``."""

    @needs_scope("admin:users")
    def get(self) -> None:
        rows = self.db.query(UserInfo).order_by(UserInfo.username).all()
        self.write(json.dumps([{"name": r.username, "authorized": bool(r.is_authorized)}
                               for r in rows]))


class SignupAPIHandler(APIHandler):
    """``POST``/``DELETE /hub/api/oceandata/signups/<name>``."""

    def _info(self, user_name: str) -> UserInfo:
        info = self.db.query(UserInfo).filter_by(username=user_name).first()
        if info is None:
            raise web.HTTPError(404, f"nobody signed up as {user_name!r}")
        return info

    def _set(self, user_name: str, authorized: bool) -> None:
        info = self._info(user_name)
        info.is_authorized = authorized
        self.db.commit()
        self.log.info("%s %s the sign-up of %s", self.current_user.name,
                      "approved" if authorized else "withdrew", user_name)
        audit.record("hub.approve_user", actor=self.current_user.name,
                     target=f"user:{user_name}", source=request_client(self),
                     detail={"decision": "approve" if authorized else "withdraw",
                             "via": "api"})
        self.write(json.dumps({"name": user_name, "authorized": authorized}))

    @needs_scope("admin:users")
    def post(self, user_name: str) -> None:
        self._set(user_name, True)

    @needs_scope("admin:users")
    def delete(self, user_name: str) -> None:
        self._set(user_name, False)


#: for ``c.JupyterHub.extra_handlers`` (paths are under ``/hub/``)
HANDLERS = [
    (r"/api/oceandata/signups", SignupListAPIHandler),
    (r"/api/oceandata/signups/([^/]+)", SignupAPIHandler),
]
