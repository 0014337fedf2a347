"""The hub's authenticator: NativeAuthenticator with oceandata's sign-up and approval.

:class:`OceandataAuthenticator` keeps NativeAuthenticator's accounts (table
``users_info``, bcrypt passwords, approval by an administrator) and replaces the parts
an outside probe broke:

- **sign-up** (``/hub/signup``) accepts only names of the platform's format
  (:mod:`oceandata.hub.usernames`: ``^[a-z][a-z0-9_-]{0,21}$``, no look-alike of an
  existing name) and says in one line why a name is refused; at most
  ``signup_limit`` sign-up attempts per client address in ``signup_window_seconds``
  (429 after that);
- **sign-in** (``/hub/login``) locks a name after ``allowed_failed_logins`` failures in
  a row, for ``seconds_before_next_try`` seconds, doubling with each further failure up
  to ``lockout_max_seconds`` (429 and one line while locked);
- **the authorisation area** (``/hub/authorize``) is our own template, every value
  escaped and quoted; approving, withdrawing and discarding are POST forms carrying the
  hub's ``_xsrf`` token (``/hub/authorize/<name>``, ``/hub/discard/<name>``). GET on
  those answers 405 and changes nothing; an unknown name is 404; only holders of the
  ``admin:users`` scope may use them (403 otherwise).

:func:`hub_security_settings` gives the ``tornado_settings`` of the hub's cookies and
security headers. docs/security.md ("Sign-up, approval and sign-in") has the decisions.

Every sign-in (``hub.login``, ``hub.login_failed``: the claimed name and why, never the
password), sign-up (``hub.signup``, refused ones too) and approval decision
(``hub.approve_user``: approve, withdraw, discard) is written to the audit trail
(:mod:`oceandata.governance.audit`) with the client's address behind the proxy;
:mod:`oceandata.hub.auditing` has the hub's other records.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jinja2 import ChoiceLoader, FileSystemLoader
from jupyterhub import orm
from jupyterhub.handlers import BaseHandler
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
from nativeauthenticator.orm import UserInfo
from tornado import web
from traitlets import Integer, List, Unicode, default

from ..governance import audit
from ..i18n import gettext
from .i18n import handler_lang, jupyterhub_message
from .throttle import FailedLogins, SlidingWindow, request_client
from .usernames import MAX_LENGTH, check_username, is_valid_username, valid_names

#: oceandata's page templates (``oceandata-*.html``), looked up before JupyterHub's.
TEMPLATES = Path(__file__).resolve().parent / "templates"

#: Content-Security-Policy of the hub's pages. JupyterHub's own pages use inline
#: scripts, so ``script-src`` is not restricted here; see docs/security.md.
CONTENT_SECURITY_POLICY = ("frame-ancestors 'none'; object-src 'none'; base-uri 'self'; "
                           "form-action 'self'")


def hub_security_settings(public_url: str, base_url: str = "/hub/") -> dict[str, Any]:
    """``c.JupyterHub.tornado_settings`` for the hub's cookies and security headers.

    Parameters
    ----------
    public_url : str
        The URL users open (``https://...`` in production).
    base_url : str
        The hub's base URL (for the CSP report address).

    Returns
    -------
    dict
        ``cookie_options`` (``SameSite=Lax``, plus ``Secure`` when *public_url* is
        https; JupyterHub adds ``HttpOnly``) and ``headers`` (CSP with
        ``frame-ancestors 'none'``, ``X-Frame-Options: DENY``,
        ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin``).

    Examples
    --------
    >>> hub_security_settings("https://hub.example.org")["cookie_options"]
    {'samesite': 'Lax', 'secure': True}
    """
    cookies: dict[str, Any] = {"samesite": "Lax"}
    if urlparse(public_url).scheme == "https":
        cookies["secure"] = True
    return {
        "cookie_options": cookies,
        "headers": {
            "Content-Security-Policy":
                f"{CONTENT_SECURITY_POLICY}; report-uri {base_url}security/csp-report",
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        },
    }


class _Page(BaseHandler):
    """Base of our pages: puts :data:`TEMPLATES` first in the hub's template lookup."""

    def initialize(self, **kwargs: Any) -> None:
        super().initialize(**kwargs)
        for key in ("jinja2_env", "jinja2_env_sync"):
            env = self.settings.get(key)
            if env is not None and not getattr(env, "_oceandata_templates", False):
                env.loader = ChoiceLoader([FileSystemLoader(str(TEMPLATES)), env.loader])
                env._oceandata_templates = True

    def get_content_type(self) -> str:
        """Our pages say their encoding (they may be Chinese): UTF-8."""
        return "text/html; charset=UTF-8"

    def get_template(self, name: str, sync: bool = False) -> Any:
        """JupyterHub's ``404.html`` hides the reason: ours say it (``error.html``)."""
        return super().get_template("error.html" if name == "404.html" else name, sync=sync)

    @property
    def oceandata_auth(self) -> OceandataAuthenticator:
        return self.authenticator  # type: ignore[return-value]

    @property
    def lang(self) -> str:
        """The language of this request's page (:func:`.i18n.handler_lang`)."""
        return handler_lang(self)

    def client(self) -> str:
        """The client's address behind the proxy (:func:`~.throttle.request_client`)."""
        return request_client(self)

    def require_admin(self) -> None:
        """403 unless the signed-in user holds ``admin:users``."""
        if "admin:users" not in self.expanded_scopes:
            raise _error(403, gettext(self.lang, "Only administrators may manage sign-ups."))


class SignUpHandler(_Page):
    """``/hub/signup``: the form, checked names, one-line reasons, a limit per client."""

    async def _form(self, status: int, message: str = "", ok: bool = False,
                    username: str = "") -> None:
        self.set_status(status)
        html = await self.render_template(
            "oceandata-signup.html", message=message, ok=ok, username=username,
            rule=valid_names(self.lang), max_length=MAX_LENGTH,
            min_password=self.oceandata_auth.minimum_password_length)
        self.finish(html)

    async def get(self) -> None:
        if not self.oceandata_auth.enable_signup:
            raise _error(404, gettext(self.lang, "Sign-up is closed on this hub."))
        await self._form(200)

    async def post(self) -> None:
        auth = self.oceandata_auth
        if not auth.enable_signup:
            raise _error(404, gettext(self.lang, "Sign-up is closed on this hub."))
        client = self.client()
        wait = auth.signups.hit(client) if not auth.signup_exempt(client) else 0.0
        if wait:
            self.log.warning("sign-up refused: client %s made %d sign-up attempts in %d s",
                             client, auth.signup_limit, auth.signup_window_seconds)
            claimed = self.get_body_argument("username", "", strip=False)
            audit.record("hub.signup", actor=None, target=user_target(claimed),
                         outcome="denied", source=client,
                         detail={"claimed": claimed_name(claimed),
                                 "reason": "too many sign-ups from this address"})
            self.set_header("Retry-After", str(math.ceil(wait)))
            await self._form(429, gettext(
                self.lang, "Too many sign-ups from your address: try again in %(wait)s.",
                wait=_duration(wait, self.lang)))
            return
        name = self.get_body_argument("username", "", strip=False)
        password = self.get_body_argument("signup_password", "", strip=False)
        confirmation = self.get_body_argument("signup_password_confirmation", "", strip=False)
        known = auth.known_names()
        # the log and the audit trail keep the reason in English; the page says it in
        # the page's language
        reason = check_username(name, known)
        shown = check_username(name, known, lang=self.lang) if reason else None
        if reason is None and password != confirmation:
            reason = "The password and its confirmation differ; type them again."
            shown = gettext(self.lang,
                            "The password and its confirmation differ; type them again.")
        if reason is None and not auth.is_password_strong(password):
            reason = (f"The password needs at least {auth.minimum_password_length} "
                      "characters and must not be a common password.")
            shown = gettext(self.lang, "The password needs at least %(length)s characters "
                                       "and must not be a common password.",
                            length=auth.minimum_password_length)
        if reason is not None:
            self.log.info("sign-up refused (client %s): %s", client, reason)
            audit.record("hub.signup", actor=None, target=user_target(name),
                         outcome="denied", source=client,
                         detail={"claimed": claimed_name(name), "reason": reason})
            await self._form(400, shown or reason, username=name)
            return
        info = auth.create_user(name, password)
        if info is None:  # e.g. taken between the check and now
            audit.record("hub.signup", actor=None, target=user_target(name),
                         outcome="failed", source=client,
                         detail={"claimed": claimed_name(name),
                                 "reason": "not registered (taken meanwhile?)"})
            await self._form(400, gettext(
                self.lang, "User name '%(name)s' could not be registered; choose another.",
                name=name), username=name)
            return
        self.log.info("new sign-up %s from %s (waits for approval)", name, client)
        audit.record("hub.signup", actor=name, target=f"user:{name}", source=client,
                     detail={"approved": bool(info.is_authorized)})
        done = (gettext(self.lang, "Your sign-up was received: you can sign in once an "
                                   "administrator has approved it.")
                if not info.is_authorized else
                gettext(self.lang, "Your sign-up was received: you can sign in now."))
        await self._form(200, done, ok=True)


class LoginHandler(NativeLoginHandler, _Page):
    """``/hub/login``: NativeAuthenticator's form; 429 with one line while locked."""

    async def post(self) -> None:
        auth = self.oceandata_auth
        name = auth.normalize_username(self.get_body_argument("username", "", strip=False))
        wait = auth.failed_logins.wait(name)
        if wait:
            self.log.warning("sign-in as %r refused: locked for %.0f s more (client %s)",
                             name, wait, self.client())
            audit.record("hub.login_failed", actor=None, target=user_target(name),
                         outcome="denied", source=self.client(),
                         detail={"claimed": claimed_name(name),
                                 "reason": "locked after failed sign-ins"})
            self.set_status(429)
            self.set_header("Retry-After", str(math.ceil(wait)))
            html = await self._render(login_error=auth.lockout_message(wait, self.lang),
                                      username=name)
            self.finish(html)
            return
        await super().post()

    def _render(self, login_error: str | None = None, username: str | None = None) -> Any:
        """NativeAuthenticator's sign-in page, its refusals in the page's language."""
        if login_error:
            login_error = jupyterhub_message(self.lang, login_error)
        return super()._render(login_error=login_error, username=username)

    async def login_user(self, data: dict[str, Any] | None = None) -> Any:
        """JupyterHub's sign-in, with its outcome written to the audit trail."""
        self.login_refusal = "refused"
        user = await super().login_user(data)
        if user is not None:
            audit.record("hub.login", actor=user.name, target=f"user:{user.name}",
                         source=self.client(), detail={"authenticator": "native"})
        else:
            claimed = (data or {}).get("username", "")
            audit.record("hub.login_failed", actor=None,
                         target=user_target(self.oceandata_auth.normalize_username(claimed)),
                         outcome="failed", source=self.client(),
                         detail={"claimed": claimed_name(claimed),
                                 "reason": self.login_refusal})
        return user


class AuthorizeAreaHandler(_Page):
    """``GET /hub/authorize``: every sign-up, with approve/withdraw/discard forms."""

    @web.authenticated
    async def get(self) -> None:
        self.require_admin()
        rows = [{"name": r.username, "authorized": bool(r.is_authorized)}
                for r in self.db.query(UserInfo).order_by(UserInfo.username)]
        html = await self.render_template("oceandata-authorize.html", rows=rows)
        self.finish(html)


class _ActionHandler(_Page):
    """A state change on one sign-up: POST only (GET answers 405 and changes nothing)."""

    async def get(self, user_name: str) -> None:
        raise _method_not_allowed(self.lang)

    head = get

    def _info(self, user_name: str) -> UserInfo:
        info = UserInfo.find(self.db, user_name)
        if info is None:
            raise _error(404, gettext(self.lang, "Nobody signed up as %(name)s.",
                                      name=repr(user_name)))
        return info

    def _back(self) -> None:
        self.redirect(self.hub.base_url + "authorize", status=303)


class AuthorizeHandler(_ActionHandler):
    """``POST /hub/authorize/<name>`` with ``action=approve`` or ``action=withdraw``."""

    @web.authenticated
    async def post(self, user_name: str) -> None:
        self.require_admin()
        info = self._info(user_name)
        action = self.get_body_argument("action", "")
        if action not in ("approve", "withdraw"):
            raise _error(400, gettext(self.lang, "Say action=approve or action=withdraw."))
        if action == "withdraw" and user_name == self.current_user.name:
            raise _error(409, gettext(self.lang, "You cannot withdraw your own approval."))
        info.is_authorized = action == "approve"
        self.db.commit()
        self.log.info("%s: %s the sign-up of %s", self.current_user.name,
                      "approved" if info.is_authorized else "withdrew", user_name)
        audit.record("hub.approve_user", actor=self.current_user.name,
                     target=f"user:{user_name}", source=self.client(),
                     detail={"decision": action, "via": "page"})
        self._back()


class DiscardHandler(_ActionHandler):
    """``POST /hub/discard/<name>``: delete a sign-up that was never approved."""

    @web.authenticated
    async def post(self, user_name: str) -> None:
        self.require_admin()
        info = self._info(user_name)
        if info.is_authorized:
            raise _error(409, gettext(self.lang, "Withdraw the approval of %(name)s before "
                                                 "discarding it.", name=repr(user_name)))
        self.db.delete(info)
        self.db.commit()
        if self.users.get(user_name) is not None:
            self.users.delete(user_name)
        self.log.info("%s: discarded the sign-up of %s", self.current_user.name, user_name)
        audit.record("hub.approve_user", actor=self.current_user.name,
                     target=f"user:{user_name}", source=self.client(),
                     detail={"decision": "discard", "via": "page"})
        self._back()


def _error(status: int, message: str) -> web.HTTPError:
    """An HTTP error whose page says *message* (already in the page's language) as it is."""
    return web.HTTPError(status, "%s", message)


def _method_not_allowed(lang: str = "en") -> web.HTTPError:
    error = _error(405, gettext(lang, "This address changes state: use the forms on the "
                                      "authorisation page (POST)."))
    error.headers = {"Allow": "POST"}  # type: ignore[attr-defined]
    return error


def user_target(name: str) -> str:
    """The audit target of a claimed user name: ``user:<name>``, or ``user:(invalid)``.

    Examples
    --------
    >>> user_target("alice"), user_target("Robert'); --")
    ('user:alice', 'user:(invalid)')
    """
    return f"user:{name}" if is_valid_username(name) else "user:(invalid)"


def claimed_name(name: str) -> str:
    """A name typed into a form, as the audit trail keeps it (at most 64 characters).

    Examples
    --------
    >>> claimed_name("x" * 100)
    'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... (100 characters)'
    """
    return name if len(name) <= 64 else f"{name[:64]}... ({len(name)} characters)"


def _duration(seconds: float, lang: str = "en") -> str:
    seconds = math.ceil(seconds)
    if seconds < 120:
        return gettext(lang, "%(seconds)s s", seconds=seconds)
    return gettext(lang, "%(minutes)s min", minutes=math.ceil(seconds / 60))


def _refusal(handler: Any, why: str) -> None:
    """Tell the sign-in handler why :meth:`OceandataAuthenticator.authenticate` refused."""
    if handler is not None:
        handler.login_refusal = why


class OceandataAuthenticator(NativeAuthenticator):
    """NativeAuthenticator with strict names, throttles and safe approval pages.

    Configure with ``c.OceandataAuthenticator.<trait>`` (or the ``NativeAuthenticator``
    traits it inherits: ``minimum_password_length``, ``check_common_password``,
    ``open_signup``, ``enable_signup``).
    """

    allowed_failed_logins = Integer(
        5, config=True,
        help="Failed sign-ins in a row after which a user name is locked (0: never).")
    seconds_before_next_try = Integer(
        30, config=True,
        help="Seconds of the first lock; each further failure after a lock doubles it.")
    lockout_max_seconds = Integer(
        3600, config=True, help="Longest lock of a user name, in seconds.")
    lockout_forget_seconds = Integer(
        86400, config=True,
        help="Seconds after the last failed sign-in when a name's failures are forgotten.")
    signup_limit = Integer(
        10, config=True,
        help="Sign-up attempts allowed per client address in signup_window_seconds "
             "(0: no limit).")
    signup_window_seconds = Integer(
        3600, config=True, help="Window of signup_limit, in seconds.")
    signup_limit_exempt_networks = List(
        Unicode(), config=True,
        help="Client networks (CIDR) without a sign-up limit, e.g. a site's own network. "
             "Empty by default; the test platform exempts loopback.")
    trusted_proxy_networks = List(
        Unicode(), config=True,
        help="Networks (CIDR) of the proxies in front of the hub whose X-Forwarded-For "
             "entries are believed (configurable-http-proxy runs on loopback).")
    forwarded_hops = Integer(
        1, config=True,
        help="How many of our proxies append to X-Forwarded-For (1: "
             "configurable-http-proxy alone; 2 with a TLS terminator that appends too).")

    @default("trusted_proxy_networks")
    def _default_trusted(self) -> list[str]:
        return ["127.0.0.1/32", "::1/128"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failed_logins = FailedLogins(
            allowed=self.allowed_failed_logins, first_wait=self.seconds_before_next_try,
            max_wait=self.lockout_max_seconds, forget_after=self.lockout_forget_seconds)
        self.signups = SlidingWindow(limit=self.signup_limit,
                                     window=self.signup_window_seconds)

    # --- names -------------------------------------------------------------------
    def validate_username(self, username: str) -> bool:
        """Only names of the platform's format (:mod:`oceandata.hub.usernames`)."""
        return is_valid_username(username) and super().validate_username(username)

    def known_names(self) -> list[str]:
        """Every name signed up (approved or not) or known to JupyterHub."""
        names = {name for (name,) in self.db.query(UserInfo.username)}
        names.update(name for (name,) in self.db.query(orm.User.name))
        return sorted(names)

    def signup_exempt(self, client: str) -> bool:
        """Whether *client* is in :attr:`signup_limit_exempt_networks`."""
        from ipaddress import ip_address, ip_network

        try:
            addr = ip_address(client)
        except ValueError:
            return False
        return any(addr in ip_network(net, strict=False)
                   for net in self.signup_limit_exempt_networks)

    # --- sign-in -----------------------------------------------------------------
    def lockout_message(self, wait: float, lang: str = "en") -> str:
        """The one line shown while a name is locked, in *lang*."""
        return gettext(lang, "Too many failed sign-ins for this user name: try again in "
                             "%(wait)s.", wait=_duration(wait, lang))

    async def authenticate(self, handler: Any, data: dict[str, Any]) -> str | None:
        """Check the password; count failures; refuse without checking while locked."""
        name = self.normalize_username(data.get("username", ""))
        if not is_valid_username(name):
            _refusal(handler, "not a valid user name")
            return None
        if self.failed_logins.wait(name):
            _refusal(handler, "locked after failed sign-ins")
            return None
        user = self.get_user(name)
        if user is None:
            why = "no such user"
        elif not user.is_valid_password(data.get("password", "")):
            why = "wrong password"
        elif user.has_2fa and not user.is_valid_token(data.get("2fa")):
            why = "wrong two-factor code"
        elif not user.is_authorized:
            why = "not approved yet"
        else:
            self.failed_logins.succeeded(name)
            from .i18n import remember_saved_language

            # the pages after the sign-in speak the user's saved language at once
            await remember_saved_language(name)
            return name
        _refusal(handler, why)
        wait = self.failed_logins.failed(name)
        if wait:
            self.log.warning("sign-in as %r locked for %.0f s after %d failed attempts",
                             name, wait, self.failed_logins.failures(name))
        return None

    # --- pages ---------------------------------------------------------------------
    def get_handlers(self, app: Any) -> list[tuple[str, type]]:
        """NativeAuthenticator's pages with sign-up, sign-in and approval replaced."""
        ours: dict[str, type] = {
            r"/login": LoginHandler,
            r"/signup": SignUpHandler,
            r"/authorize": AuthorizeAreaHandler,
            r"/authorize/([^/]+)": AuthorizeHandler,
            r"/discard/([^/]+)": DiscardHandler,
        }
        replaced = {r"/authorize/([^/]*)": r"/authorize/([^/]+)",
                    r"/discard/([^/]*)": r"/discard/([^/]+)"}
        handlers: list[tuple[str, type]] = []
        for path, handler in super().get_handlers(app):
            path = replaced.get(path, path)
            handlers.append((path, ours.pop(path, handler)))
        handlers.extend(ours.items())
        return handlers
