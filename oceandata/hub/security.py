"""The security layer of the platform's own hub services: who calls, with what rights.

Every service of ours behind JupyterHub (the allocations and jobs service, the
dask-gateway gate, the coming open-data service) answers the same four questions through
this module, so that no route decides them by itself:

1. **Who is calling?** A JupyterHub token, from ``Authorization: token|bearer <token>``
   or, for browsers, from the service's login cookie set after the hub's OAuth login.
   Tokens are resolved by JupyterHub's own :class:`jupyterhub.services.auth.HubOAuth`
   (``GET /hub/api/user``), cached for at most :data:`CACHE_SECONDS`; admin actions ask
   the hub again (no cache), so a revoked token stops working within that bound and at
   once for administration. An ``Authorization`` header that is present decides alone:
   a malformed or unknown one is 401, never a fallback to the cookie.
2. **May this token call this service?** The token must carry
   ``access:services!service=<name>`` (:attr:`HubOAuth.access_scopes`); a token of the
   right user with other scopes (``read:metrics`` only, say) is 403.
3. **Is the caller an administrator here?** Only a hub admin whose token also carries
   :data:`ADMIN_SCOPE` (granted to the ``admins`` group by the hub configuration and
   allowed for the services' OAuth clients): a narrowed admin token is no admin token.
4. **Is a cookie-authenticated change intended?** Every state change authenticated by
   the cookie must carry the CSRF token ``HMAC(service secret, session token)``
   (:meth:`ServiceAuth.csrf_token`) in the form field ``_csrf`` or the header
   ``X-CSRF-Token``. It is bound to the session: a page on another port or a sibling
   host cannot set or guess it (the earlier double-submit cookie could be planted).
   Requests authenticated by a token header need no CSRF token (browsers cannot add
   that header across origins without a CORS preflight, which we never grant).

The framework glue is small: :mod:`oceandata.alloc.auth` makes FastAPI dependencies of
it; :mod:`oceandata.hub.gateway_service` uses it from aiohttp. Input bounds shared by the
services (body size, JSON depth, 64-bit integers) and the security headers of our pages
are here too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from jupyterhub.services.auth import HubOAuth

#: seconds a token's identity is reused before the hub is asked again (revocation bound)
CACHE_SECONDS = 5
#: the scope that makes a hub admin an administrator of our services
ADMIN_SCOPE = "custom:oceandata:admin"
#: the CSRF token's form field and header
CSRF_FIELD = "_csrf"
CSRF_HEADER = "X-CSRF-Token"
#: largest request body accepted by default (bytes); routes may allow more
MAX_BODY_BYTES = 2**20
#: deepest JSON accepted (objects and arrays)
MAX_JSON_DEPTH = 32
#: the largest integer a database id or amount may hold (signed 64-bit)
MAX_INT64 = 2**63 - 1
#: headers of every page and API answer of our services
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                "img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                                "form-action 'self'; frame-ancestors 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
#: headers of the answer to an unexpected failure (a 500). Starlette raises the exception
#: again once that answer is sent, and uvicorn then drops the connection without having
#: said so: configurable-http-proxy, keeping connections alive, sent the next request
#: (another client's) on it and answered that one 503. Saying so makes it open a new one.
FAILURE_HEADERS = {"Connection": "close"}


class AuthError(Exception):
    """A request that cannot go on: ``status`` (401, 403, 503) and one sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class HubUser:
    """A JupyterHub user as the token of the current request shows it.

    Attributes
    ----------
    name
        The hub user name.
    admin
        Administrator of our services: a hub admin *and* a token carrying
        :data:`ADMIN_SCOPE`.
    groups
        The user's hub groups.
    scopes
        The token's scopes, as the hub expanded them.
    via
        ``"token"`` (an ``Authorization`` header) or ``"cookie"`` (the login cookie).
    session
        The token itself (the session the CSRF token is bound to); not printed.
    """

    name: str
    admin: bool = False
    groups: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    via: str = "token"
    session: str = ""

    def __repr__(self) -> str:  # never show the token
        return f"HubUser(name={self.name!r}, admin={self.admin}, via={self.via!r})"


def header_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization`` header, None when there is no header.

    ``token <t>`` and ``bearer <t>`` are JupyterHub's forms; ``jupyterhub <t>`` is what
    the dask-gateway client sends.

    Raises
    ------
    AuthError
        401 for any other header (no fallback to a cookie).
    """
    if authorization is None:
        return None
    kind, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if kind.lower() not in ("token", "bearer", "jupyterhub") or not value or " " in value:
        raise AuthError(401, "the Authorization header must be 'token <JupyterHub token>'")
    return value


class ServiceAuth:
    """One hub service's authentication, scope and CSRF rules (see the module docstring).

    Parameters
    ----------
    hub_auth
        JupyterHub's OAuth helper for this service (default: from the environment that
        JupyterHub gives a managed service, with :data:`CACHE_SECONDS`).
    cookie_name
        Name of the login cookie (scoped to the service prefix).
    secret
        Key of the CSRF HMAC (default: derived from the service's API token, which only
        the service and the hub hold).
    """

    def __init__(self, hub_auth: HubOAuth | None = None, *, cookie_name: str,
                 secret: bytes | None = None) -> None:
        self.hub_auth = hub_auth if hub_auth is not None else HubOAuth(
            cache_max_age=CACHE_SECONDS)
        self.cookie_name = cookie_name
        self.state_cookie_name = f"{cookie_name}-oauth-state"
        key = secret if secret is not None else self.hub_auth.api_token.encode()
        self._csrf_key = hashlib.sha256(b"oceandata-csrf\0" + key).digest()

    # --- identity ----------------------------------------------------------------

    @property
    def service_name(self) -> str:
        """This service's name (from ``JUPYTERHUB_SERVICE_NAME``)."""
        return os.environ.get("JUPYTERHUB_SERVICE_NAME", "this service")

    async def user_for_token(self, token: str, via: str = "token", *,
                             fresh: bool = False) -> HubUser:
        """The user owning *token*, checked for this service's access scope.

        Parameters
        ----------
        token
            A JupyterHub token.
        via
            Where it came from (``"token"`` or ``"cookie"``).
        fresh
            Ask the hub even if a cached answer exists (admin actions).

        Raises
        ------
        AuthError
            401 for an unknown, expired or revoked token (or a service's token), 403 for
            a token without this service's access scope, 503 when the hub does not answer.
        """
        try:
            model = await self.hub_auth.user_for_token(token, use_cache=not fresh, sync=False)
        except Exception as exc:  # tornado's HTTPError from HubAuth: the hub is unreachable
            raise AuthError(503, "the hub could not be asked who is calling; try again "
                                 "shortly") from exc
        if not model or model.get("kind", "user") != "user":
            raise AuthError(401, "the JupyterHub token is unknown, expired or revoked: log "
                                 "in again or make a new token")
        scopes = frozenset(model.get("scopes") or ())
        if not self.hub_auth.check_scopes(self.hub_auth.access_scopes, model):
            needed = " or ".join(sorted(self.hub_auth.access_scopes)) or "access"
            raise AuthError(403, f"the token of {model['name']} does not carry {needed}")
        return HubUser(name=model["name"],
                       admin=bool(model.get("admin")) and ADMIN_SCOPE in scopes,
                       groups=frozenset(model.get("groups") or ()), scopes=scopes, via=via,
                       session=token)

    def credentials(self, headers: Any, cookies: Any) -> tuple[str, str] | None:
        """``(token, via)`` of a request, or None when it carries neither header nor cookie.

        Raises
        ------
        AuthError
            401 for a malformed ``Authorization`` header (no fallback to the cookie).
        """
        token = header_token(headers.get("Authorization"))
        if token is not None:
            return token, "token"
        cookie = cookies.get(self.cookie_name)
        if cookie:
            return cookie, "cookie"
        return None

    async def identify(self, headers: Any, cookies: Any, *,
                       fresh: bool = False) -> HubUser | None:
        """The caller of a request (None without credentials); see :meth:`user_for_token`."""
        found = self.credentials(headers, cookies)
        if found is None:
            return None
        return await self.user_for_token(found[0], found[1], fresh=fresh)

    # --- CSRF --------------------------------------------------------------------

    def csrf_token(self, user: HubUser) -> str:
        """The CSRF token of *user*'s session: ``HMAC-SHA256(key, session token)``."""
        return hmac.new(self._csrf_key, user.session.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, user: HubUser, submitted: str | None) -> None:
        """Refuse a cookie-authenticated change without this session's CSRF token.

        Raises
        ------
        AuthError
            403 when *user* came by cookie and *submitted* is not its token.
        """
        if user.via != "cookie":
            return
        if not submitted or not hmac.compare_digest(self.csrf_token(user), submitted):
            raise AuthError(403, "the CSRF token is missing or does not belong to this "
                                 "session: reload the page and submit it again")

    # --- the hub's OAuth login ------------------------------------------------------

    def login_redirect(self, next_url: str) -> tuple[str, str]:
        """The hub's authorize URL for a browser, and the state for its state cookie.

        The state (kept by :class:`HubOAuth`, in memory, for 10 minutes) remembers
        *next_url*; the state cookie ties the callback to this browser.
        """
        state = self.hub_auth.generate_state(next_url)
        url = f"{self.hub_auth.login_url}&{urllib.parse.urlencode({'state': state})}"
        return url, state

    @property
    def callback_path(self) -> str:
        """The path of the OAuth callback the hub registered for this service."""
        return urllib.parse.urlparse(self.hub_auth.oauth_redirect_uri).path

    async def finish_login(self, code: str | None, state: str | None,
                           state_cookie: str | None) -> tuple[str, str]:
        """Exchange the OAuth *code* for the user's token.

        Returns
        -------
        tuple of str
            The token (for the login cookie) and the URL to go back to.

        Raises
        ------
        AuthError
            403 when the state does not match this browser's state cookie or the hub
            refuses the code.
        """
        if not code or not state or not state_cookie or not hmac.compare_digest(
                state, state_cookie) or not self.hub_auth._decode_state(state):
            raise AuthError(403, "the login did not come back from the hub as it left: "
                                 "open the page again")
        next_url = self.hub_auth.get_next_url(state)
        self.hub_auth.clear_oauth_state(state)
        try:
            token = await self.hub_auth.token_for_code(code, sync=False)
        except Exception as exc:
            raise AuthError(403, "the hub refused the login code: open the page again"
                            ) from exc
        return token, next_url

    def cookie_options(self, path: str) -> dict[str, Any]:
        """Options of the login and state cookies: HttpOnly, SameSite=Lax, Secure on TLS."""
        public = os.environ.get("OCEANDATA_HUB_PUBLIC_URL") or os.environ.get(
            "JUPYTERHUB_PUBLIC_URL", "")
        return {"path": path, "httponly": True, "samesite": "lax",
                "secure": public.startswith("https:")}


# --- bounded input -----------------------------------------------------------------------


def json_depth(raw: bytes | str) -> int:
    """The nesting depth of a JSON text, counted without parsing it (strings skipped)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


#: a whole number as a request may write it: ASCII digits, at most 18 (below 2**63)
_WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")


def whole_number(text: str | None) -> int | None:
    """*text* (a query or form value) as an ``int``, or None when it is not 1 to 18
    ASCII digits.

    ``str.isdigit`` also takes "²" and other Unicode digits, which ``int`` then refuses,
    and a number of 19 digits or more overflows a database integer: both were 500s where
    the answer is a 400. Every numeric value read from a request goes through this.
    """
    return int(text) if text is not None and _WHOLE_NUMBER.fullmatch(text) else None


def parse_json_object(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """A JSON object from a request body, bounded in depth and integer size.

    Raises
    ------
    ValueError
        With one sentence: not UTF-8 JSON, not an object, deeper than *max_depth*, or an
        integer beyond 64 bits.
    """
    if json_depth(raw) > max_depth:
        raise ValueError(f"the JSON body is nested deeper than {max_depth} levels")

    def bounded_int(text: str) -> int:
        value = int(text)
        if abs(value) > MAX_INT64:
            raise ValueError(f"the integer {text[:24]}{'...' if len(text) > 24 else ''} is "
                             "outside 64 bits")
        return value

    try:
        body = json.loads(raw, parse_int=bounded_int)
    except UnicodeDecodeError:
        raise ValueError("the request body is not UTF-8 JSON") from None
    except json.JSONDecodeError:
        raise ValueError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    return body


class BodyLimit:
    """ASGI middleware: refuse request bodies over a size with 413 and one sentence.

    Parameters
    ----------
    app
        The wrapped ASGI application.
    max_bytes
        The default limit.
    overrides
        ``{path prefix: limit}`` for routes that take more (script uploads); the longest
        matching prefix wins.
    """

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES,
                 overrides: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = dict(overrides or {})

    def limit_for(self, path: str) -> int:
        """The body limit of *path*."""
        best = ""
        for prefix in self.overrides:
            if path.startswith(prefix) and len(prefix) > len(best):
                best = prefix
        return self.overrides[best] if best else self.max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _too_large(send, limit)
            return
        seen = 0
        sent_response = False

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge
            return message

        async def watched_send(message: dict) -> None:
            nonlocal sent_response
            if message["type"] == "http.response.start":
                sent_response = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except _BodyTooLarge:
            if not sent_response:
                await _too_large(send, limit)


def install_security_layer(app: Any, overrides: dict[str, int] | None = None) -> None:
    """Give a Starlette/FastAPI *app* of ours the shared answers' layer.

    :data:`SECURITY_HEADERS` on every answer, and request bodies bounded by
    :class:`BodyLimit` (:data:`MAX_BODY_BYTES`, or *overrides* by path prefix).
    """
    @app.middleware("http")
    async def security_headers(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    app.add_middleware(BodyLimit, overrides=overrides)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Any, limit: int) -> None:
    body = json.dumps({"error": f"the request body is larger than {limit} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            *((k.lower().encode(), v.encode())
                              for k, v in SECURITY_HEADERS.items())]})
    await send({"type": "http.response.body", "body": body})
