"""Who is calling the allocations service: JupyterHub tokens and the hub's OAuth login.

FastAPI dependencies over :mod:`oceandata.hub.identity`:

- :func:`current_user` for the REST API: a JupyterHub token in ``Authorization: token ...``
  (or the service's login cookie), else 401;
- :func:`page_user` for HTML pages: the same, but a browser without a session is sent
  through the hub's OAuth login and comes back to the page it asked for;
- :func:`require_admin` for admin-only routes (JupyterHub admins), else 403.

The OAuth callback route is :func:`oauth_callback` (mounted by the service at the path
JupyterHub registered, ``JUPYTERHUB_OAUTH_CALLBACK_URL``).
"""

from __future__ import annotations

import aiohttp
from fastapi import Depends, HTTPException, Request
from fastapi.responses import RedirectResponse

from ..hub.identity import HubOAuthClient, HubUser, token_from

COOKIE = "oceandata-alloc-auth"
STATE_COOKIE = "oceandata-alloc-oauth-state"


class LoginRequired(Exception):
    """Raised by :func:`page_user` to send a browser to the hub's login."""

    def __init__(self, response: RedirectResponse) -> None:
        self.response = response


def hub_client(request: Request) -> HubOAuthClient:
    """The service's :class:`HubOAuthClient` (created by the app at start-up)."""
    return request.app.state.hub


def _session(request: Request) -> aiohttp.ClientSession:
    return request.app.state.http


async def _user(request: Request) -> HubUser | None:
    token = token_from(request.headers, request.cookies, COOKIE)
    if not token:
        return None
    user = await hub_client(request).user_for_token(_session(request), token)
    if user is not None:
        request.state.token = token
    return user


async def current_user(request: Request) -> HubUser:
    """The caller of a REST route; 401 without a valid JupyterHub token."""
    user = await _user(request)
    if user is None:
        raise HTTPException(401, "a JupyterHub token is required (Authorization: token ...)")
    return user


async def page_user(request: Request) -> HubUser:
    """The caller of an HTML page; a browser without a session goes through the hub login."""
    user = await _user(request)
    if user is not None:
        return user
    url, state = hub_client(request).login_redirect(str(request.url.path)
                                                    + (f"?{request.url.query}"
                                                       if request.url.query else ""))
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(STATE_COOKIE, state, path=request.app.state.prefix, httponly=True,
                        samesite="lax", max_age=600)
    raise LoginRequired(response)


async def require_admin(user: HubUser = Depends(current_user)) -> HubUser:
    """An administrator, else 403."""
    if not user.admin:
        raise HTTPException(403, f"{user.name} is not an administrator")
    return user


async def oauth_callback(request: Request) -> RedirectResponse:
    """Finish the hub's OAuth login: exchange the code, keep the token in a cookie."""
    hub = hub_client(request)
    prefix = request.app.state.prefix
    target = hub.next_url(request.cookies.get(STATE_COOKIE, ""), request.query_params.get("state"))
    code = request.query_params.get("code")
    if target is None or not code:
        raise HTTPException(403, "OAuth state mismatch: open the page again")
    token = await hub.token_for_code(_session(request), code)
    if token is None:
        raise HTTPException(403, "the hub refused the OAuth code")
    if not target.startswith(prefix):
        target = prefix
    response = RedirectResponse(target, status_code=302)
    response.set_cookie(COOKIE, token, path=prefix, httponly=True, samesite="lax")
    response.delete_cookie(STATE_COOKIE, path=prefix)
    return response
