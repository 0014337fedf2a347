"""Who is calling the allocations service: FastAPI dependencies over the security layer.

Every route takes its caller from one of these dependencies, all built on
:class:`oceandata.hub.security.ServiceAuth` (JupyterHub's ``HubOAuth``: tokens, the
service's access scope, the admin scope, session-bound CSRF):

- :func:`current_user` for the REST API: a JupyterHub token in ``Authorization: token ...``
  (or the service's login cookie), else 401; a token without
  ``access:services!service=allocations`` is 403. A cookie-authenticated request that
  changes state (anything but GET/HEAD/OPTIONS) must send the session's CSRF token in
  ``X-CSRF-Token`` or the form field ``_csrf``;
- :func:`page_user` for HTML pages: the same, but a browser without a session is sent
  through the hub's OAuth login and comes back to the page it asked for;
- :func:`require_admin` for admin-only routes: a hub admin whose token carries the admin
  scope, asked of the hub without the cache, else 403.

The OAuth callback route is :func:`oauth_callback` (mounted by the service at the path
JupyterHub registered, ``JUPYTERHUB_OAUTH_CALLBACK_URL``).
"""

from __future__ import annotations

from fastapi import Depends, HTTPException, Request
from fastapi.responses import RedirectResponse

from ..hub.security import CSRF_FIELD, CSRF_HEADER, AuthError, HubUser, ServiceAuth

COOKIE = "oceandata-alloc-auth"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

__all__ = ["COOKIE", "HubUser", "LoginRequired", "current_user", "oauth_callback",
           "page_user", "require_admin", "service_auth"]


class LoginRequired(Exception):
    """Raised by :func:`page_user` to send a browser to the hub's login."""

    def __init__(self, response: RedirectResponse) -> None:
        self.response = response


def service_auth(request: Request) -> ServiceAuth:
    """The service's :class:`ServiceAuth` (created by the app at start-up)."""
    return request.app.state.auth


async def _identify(request: Request, fresh: bool = False) -> HubUser | None:
    try:
        user = await service_auth(request).identify(request.headers, request.cookies,
                                                    fresh=fresh)
    except AuthError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    if user is not None:
        request.state.user = user
    return user


async def check_csrf(request: Request, user: HubUser) -> None:
    """403 unless a cookie-authenticated change carries its session's CSRF token.

    The token is read from ``X-CSRF-Token``, else from the ``_csrf`` field of a form body
    (Starlette caches the parsed form, so the route can read it again).
    """
    if user.via != "cookie" or request.method in SAFE_METHODS:
        return
    submitted = request.headers.get(CSRF_HEADER)
    if submitted is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        submitted = value if isinstance(value, str) else None
    try:
        service_auth(request).check_csrf(user, submitted)
    except AuthError as exc:
        raise HTTPException(exc.status, str(exc)) from None


async def current_user(request: Request) -> HubUser:
    """The caller of a REST route; 401 without a valid JupyterHub token."""
    user = await _identify(request)
    if user is None:
        raise HTTPException(401, "a JupyterHub token is required (Authorization: token ...)",
                            headers={"WWW-Authenticate": "token"})
    await check_csrf(request, user)
    return user


async def page_user(request: Request) -> HubUser:
    """The caller of an HTML page; a browser without a session goes through the hub login."""
    user = await _identify(request)
    if user is not None:
        await check_csrf(request, user)
        return user
    auth = service_auth(request)
    next_url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url, state = auth.login_redirect(next_url)
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(auth.state_cookie_name, state, max_age=600,
                        **auth.cookie_options(request.app.state.prefix))
    raise LoginRequired(response)


async def require_admin(request: Request, user: HubUser = Depends(current_user)) -> HubUser:
    """An administrator (asked of the hub afresh), else 403."""
    fresh = await _identify(request, fresh=True)
    if fresh is None or not fresh.admin:
        raise HTTPException(403, f"{user.name} is not an administrator of this service (a hub "
                                 "admin's token with the admin scope is needed)")
    return fresh


async def oauth_callback(request: Request) -> RedirectResponse:
    """Finish the hub's OAuth login: exchange the code, keep the token in a cookie."""
    auth = service_auth(request)
    prefix = request.app.state.prefix
    try:
        token, target = await auth.finish_login(
            request.query_params.get("code"), request.query_params.get("state"),
            request.cookies.get(auth.state_cookie_name))
    except AuthError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    if not target.startswith(prefix) or target.startswith("//"):
        target = prefix
    response = RedirectResponse(target, status_code=302)
    response.set_cookie(COOKIE, token, **auth.cookie_options(prefix))
    response.delete_cookie(auth.state_cookie_name, path=prefix)
    return response
