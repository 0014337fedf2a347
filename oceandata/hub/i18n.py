"""Languages of the hub's pages: English and Simplified Chinese (docs/i18n.md).

The hub's share of the platform's one message catalog system (:mod:`oceandata.i18n`).
JupyterHub builds two Jinja environments (async and sync) shared by every request, so the
language cannot be fixed per environment as the portal's are: :class:`HubI18n`, a Jinja
extension named in ``c.JupyterHub.jinja_environment_options["extensions"]``
(hub_config/jupyterhub_config.py), installs gettext callables that find the language of
each render in its context. Every JupyterHub template context holds ``static_url``, a
bound method of the Tornado handler serving the request; :func:`handler_lang` negotiates
the language from that handler's ``?lang=``, its ``oceandata_lang`` cookie, the signed-in
user's saved language (allocations database, read at sign-in and again in a thread
after a minute, never while a page waits) and its
``Accept-Language`` (:func:`oceandata.i18n.negotiate`), once per request, and sets the
cookie when ``?lang=`` chose a language.

Our templates (``oceandata/hub/templates``, before JupyterHub's) use ``{% trans %}`` and
``_()``; :func:`page_lang`, :func:`html_lang`, :func:`switch_href` and
:func:`other_lang_name` are template globals for ``<html lang>`` and the language switch
of the nav bar (``page.html``). Messages of our handlers go through
:func:`oceandata.i18n.gettext` with :func:`handler_lang`; messages of JupyterHub's own
errors that reach the error page are looked up in :func:`jupyterhub_message`.

The messages are in ``oceandata/locale/zh_Hans/LC_MESSAGES/hub.po``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any
from urllib.parse import parse_qsl

import jinja2
from jinja2.ext import InternationalizationExtension
from markupsafe import Markup

from ..i18n import (
    HTML_LANG,
    LANG_COOKIE,
    LANG_COOKIE_AGE,
    NAMES,
    Lang,
    chosen_lang,
    gettext,
    install_i18n,
    lang_of,
    negotiate,
    ngettext,
    other,
)
from ..i18n import switch_href as _switch_href

#: the attribute of a Tornado handler caching the language of its request
_CACHE = "_oceandata_lang"


def handler_of(context: Any) -> Any | None:
    """The Tornado handler rendering a template, from its context's ``static_url`` (a
    bound method of the handler); None outside a request."""
    try:
        static_url = context.get("static_url")
    except AttributeError:
        return None
    return getattr(static_url, "__self__", None)


def handler_lang(handler: Any) -> Lang:
    """The language of *handler*'s request (:func:`oceandata.i18n.negotiate`), cached on
    the handler. A ``?lang=`` switch is remembered in the ``oceandata_lang`` cookie
    (path ``/``, one year, ``SameSite=Lax``; ``Secure`` over https).

    Parameters
    ----------
    handler
        A ``tornado.web.RequestHandler`` (None: English).

    Returns
    -------
    str
        ``"en"`` or ``"zh"``.
    """
    if handler is None:
        return "en"
    cached = getattr(handler, _CACHE, None)
    if cached is not None:
        return cached
    request = handler.request
    query = request.query_arguments.get("lang")
    query_lang = query[-1].decode("utf-8", "replace") if query else None
    cookie = handler.get_cookie(LANG_COOKIE)
    setting = None
    if lang_of(query_lang) is None and lang_of(cookie) is None:
        setting = _saved_setting(handler)
    lang = negotiate(query_lang, request.headers.get("Accept-Language"), cookie=cookie,
                     setting=setting)
    chosen = chosen_lang(query_lang)
    if not handler._finished:  # the answer says its language, and what it depends on
        handler.set_header("Content-Language", HTML_LANG[lang])
        handler.add_header("Vary", "Accept-Language, Cookie")
    if chosen is not None and cookie != chosen and not handler._finished:
        handler.set_cookie(LANG_COOKIE, chosen, path="/",
                           max_age=LANG_COOKIE_AGE, samesite="Lax",
                           secure=request.protocol == "https")
    setattr(handler, _CACHE, lang)
    return lang


#: seconds a user's saved language is remembered by the hub (the allocations database is
#: not asked on every page)
SETTING_TTL = 60.0
_settings: dict[str, tuple[float, str | None]] = {}
#: users whose saved language is being read in a thread
_reading: set[str] = set()


def _read_saved(name: str) -> str | None:
    """Read *name*'s saved language (in a thread: it asks the allocations database) and
    remember it; None when it cannot be read (logged)."""
    try:
        from .spawner import saved_language

        saved = saved_language(name)
    except Exception as exc:  # the pages are still served, in the browser's language
        logging.getLogger(__name__).warning("saved language of %s not read: %s: %s", name,
                                            type(exc).__name__, str(exc)[:200])
        saved = None
    _settings[name] = (time.monotonic(), saved)
    return saved


async def remember_saved_language(name: str) -> str | None:
    """Read *name*'s saved language in a thread and remember it (at sign-in, so that the
    first page after it is already in the saved language)."""
    return await asyncio.to_thread(_read_saved, name)


def _saved_setting(handler: Any) -> str | None:
    """The language the signed-in user of *handler* saved in their platform settings
    (allocations database, :func:`oceandata.hub.spawner.saved_language`), as last read:
    a page never waits for the database (the hub's pages are rendered in its event loop).
    A value older than :data:`SETTING_TTL` seconds, or none, is read again in a thread for
    the next pages; meanwhile the page uses what is known (None: the browser's language).
    None for a visitor."""
    user = getattr(handler, "_jupyterhub_user", None)
    name = getattr(user, "name", None)
    if not name:
        return None
    known = _settings.get(name)
    if (known is None or time.monotonic() - known[0] >= SETTING_TTL) and name not in _reading:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # rendered outside the hub's loop (tests): nothing to schedule
            loop = None
        if loop is not None:
            _reading.add(name)
            task = loop.run_in_executor(None, _read_saved, name)
            task.add_done_callback(lambda _done: _reading.discard(name))
    return known[1] if known is not None else None


def context_lang(context: Any) -> Lang:
    """The language of a template's render: an explicit ``lang`` in the context (tests,
    e-mails), else that of the request being served."""
    explicit = context.get("oceandata_lang") if hasattr(context, "get") else None
    if explicit in HTML_LANG:
        return explicit
    return handler_lang(handler_of(context))


@jinja2.pass_context
def page_lang(context: Any) -> str:
    """``en`` or ``zh``: the page's language."""
    return context_lang(context)


@jinja2.pass_context
def html_lang(context: Any) -> str:
    """The page's ``<html lang>`` (BCP 47)."""
    return HTML_LANG[context_lang(context)]


@jinja2.pass_context
def other_lang(context: Any) -> str:
    """The language the switch offers."""
    return other(context_lang(context))


@jinja2.pass_context
def other_lang_name(context: Any) -> str:
    """The switch's text: the other language's name in that language."""
    return NAMES[other(context_lang(context))]


@jinja2.pass_context
def switch_href(context: Any) -> str:
    """The switch's link: this page with ``lang`` set to the other language, its other
    query parameters kept (``next=``...)."""
    handler = handler_of(context)
    query = handler.request.query if handler is not None else ""
    return _switch_href(parse_qsl(query, keep_blank_values=True),
                        other(context_lang(context)))


@jinja2.pass_context
def hub_status_message(context: Any, code: int, default: str = "") -> str:
    """The reason phrase of HTTP status *code* in the page's language."""
    return status_message(context_lang(context), code, default)


@jinja2.pass_context
def hub_message(context: Any, message: str) -> str:
    """A message of JupyterHub (or ours, already translated) in the page's language."""
    return jupyterhub_message(context_lang(context), message)


_EXPIRY = re.compile(r">(1 Hour|1 Day|1 Week|1 Month|1 Year|Never|Max \((\d+) (hours|days)\))<")


def expiry_options(lang: str, options_html: str) -> str:
    """The token page's expiry ``<option>`` labels (made by JupyterHub) in *lang*."""

    def label(found: re.Match[str]) -> str:
        fixed = {"1 Hour": gettext(lang, "1 hour"), "1 Day": gettext(lang, "1 day"),
                 "1 Week": gettext(lang, "1 week"), "1 Month": gettext(lang, "1 month"),
                 "1 Year": gettext(lang, "1 year"), "Never": gettext(lang, "Never")}
        if found.group(1) in fixed:
            return f">{fixed[found.group(1)]}<"
        count = int(found.group(2))
        if found.group(3) == "hours":
            return ">" + ngettext(lang, "Longest (%(num)s hour)", "Longest (%(num)s hours)",
                                  count) + "<"
        return ">" + ngettext(lang, "Longest (%(num)s day)", "Longest (%(num)s days)",
                              count) + "<"

    return _EXPIRY.sub(label, options_html)


@jinja2.pass_context
def hub_expiry_options(context: Any, options_html: str) -> Markup:
    """:func:`expiry_options` in the page's language (JupyterHub's own markup)."""
    return Markup(expiry_options(context_lang(context), str(options_html)))


class HubI18n(InternationalizationExtension):
    """``jinja2.ext.i18n`` speaking each request's language in JupyterHub's shared
    environments: ``{% trans %}``, ``_()``, ``gettext``/``ngettext`` (new style), the
    filters ``number``, ``size`` and ``when`` (:func:`oceandata.i18n.install_i18n`), and
    the globals of the language switch.

    Named in ``c.JupyterHub.jinja_environment_options = {"extensions": [...]}``; it
    replaces ``jinja2.ext.i18n`` (do not list both).
    """

    def __init__(self, environment: jinja2.Environment) -> None:
        super().__init__(environment)
        # the environment's extensions are registered after their constructors: tell
        # install_i18n that the i18n extension is there (this one) so it adds none
        registered = getattr(environment, "extensions", None)
        if registered is None:
            environment.extensions = {"jinja2.ext.InternationalizationExtension": self}
        install_i18n(environment, context_lang)
        if registered is None:
            del environment.extensions
        environment.globals.update(page_lang=page_lang, html_lang=html_lang,
                                   other_lang=other_lang, other_lang_name=other_lang_name,
                                   switch_href=switch_href,
                                   hub_status_message=hub_status_message,
                                   hub_message=hub_message,
                                   hub_expiry_options=hub_expiry_options)


# --------------------------------------------------------------------------- JupyterHub's


def status_message(lang: str, code: int, default: str = "") -> str:
    """The reason phrase of an HTTP status shown on the error page, in *lang*."""
    phrases = {
        400: gettext(lang, "Bad Request"),
        401: gettext(lang, "Unauthorized"),
        403: gettext(lang, "Forbidden"),
        404: gettext(lang, "Not Found"),
        405: gettext(lang, "Method Not Allowed"),
        409: gettext(lang, "Conflict"),
        429: gettext(lang, "Too Many Requests"),
        500: gettext(lang, "Internal Server Error"),
        502: gettext(lang, "Bad Gateway"),
        503: gettext(lang, "Service Unavailable"),
    }
    return phrases.get(code, default)


#: JupyterHub's and NativeAuthenticator's messages that reach our pages, matched whole
#: (placeholders: regular expression groups named like the message's)
_THEIRS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"Invalid username or password\.?"), "Invalid username or password."),
    (re.compile(r"User (?P<name>\S+) has not been authorized by an administrator yet\.?"),
     "User %(name)s has not been authorized by an administrator yet."),
    (re.compile(r"Action is not authorized with current scopes; requires any of "
                r"\[(?P<scopes>.*)\]"),
     "Action is not authorized with current scopes; requires any of [%(scopes)s]"),
    (re.compile(r"Server (?P<server>.*) is not running"), "Server %(server)s is not running"),
    (re.compile(r"No such user: (?P<name>.*)"), "No such user: %(name)s"),
    (re.compile(r"No access to resources or resources not found"),
     "No access to resources or resources not found"),
    # NativeAuthenticator's password change pages
    (re.compile(r"Your current password was incorrect\. Please try again\."),
     "Your current password was incorrect. Please try again."),
    (re.compile(r"Your new password didn't match the confirmation\. Please try again\."),
     "Your new password didn't match the confirmation. Please try again."),
    (re.compile(r"The new password didn't match the confirmation\. Please try again\."),
     "The new password didn't match the confirmation. Please try again."),
    (re.compile(r"Your password has been changed successfully!"),
     "Your password has been changed successfully!"),
    (re.compile(r"The password for (?P<name>\S+) has been changed successfully"),
     "The password for %(name)s has been changed successfully"),
    (re.compile(r"Something went wrong!\s+Be sure (?:your|the) new password(?: for \S+)? "
                r"has at least (?P<length>\d+) characters and is not too common\."),
     "The password was not changed: it needs at least %(length)s characters and must not "
     "be a common password."),
    (re.compile(r"Something went wrong!\s+Be sure (?:your|the) new password(?: for \S+)? "
                r"is not too common\."),
     "The password was not changed: it must not be a common password."),
]


def _exact(lang: str) -> dict[str, str]:
    """JupyterHub's fixed texts shown on our pages (scope descriptions of the
    authorisation page...), in *lang*."""
    return {
        "Identify the owner of the requesting entity.":
            gettext(lang, "Identify the owner of the requesting entity."),
        "Your own resources": gettext(lang, "Your own resources"),
        "Anything you have access to": gettext(lang, "Anything you have access to"),
        "Read names of users.": gettext(lang, "Read names of users."),
        "Read users’ group membership.": gettext(lang, "Read users' group membership."),
        "Read time of last user activity.": gettext(lang, "Read time of last user activity."),
        "Update time of last user activity.":
            gettext(lang, "Update time of last user activity."),
        "Access user servers via API or browser.":
            gettext(lang, "Access user servers via API or browser."),
        "Access services via API or browser.":
            gettext(lang, "Access services via API or browser."),
        "Read user models (including the URL of the default server if it is running).":
            gettext(lang, "Read user models (including the URL of the default server if "
                          "it is running)."),
        "Read users’ names and their server models (excluding the server state).":
            gettext(lang, "Read users' names and their server models (excluding the "
                          "server state)."),
    }


def jupyterhub_message(lang: str, message: str) -> str:
    """A message of JupyterHub or NativeAuthenticator in *lang*: the known ones are
    translated, any other is shown as it is."""
    if lang == "en" or not message:
        return message
    exact = _exact(lang).get(str(message).strip())
    if exact is not None:
        return exact
    for pattern, msgid in _THEIRS:
        found = pattern.fullmatch(message.strip())
        if found:
            return gettext(lang, msgid, **found.groupdict()) if found.groupdict() else \
                gettext(lang, msgid)
    return message


def _known_messages(lang: str) -> list[str]:
    """The messages of :data:`_THEIRS`, spelled out for ``pybabel extract``."""
    return [gettext(lang, "Invalid username or password."),
            gettext(lang, "User %(name)s has not been authorized by an administrator yet."),
            gettext(lang, "Action is not authorized with current scopes; requires any of "
                          "[%(scopes)s]"),
            gettext(lang, "Server %(server)s is not running"),
            gettext(lang, "No such user: %(name)s"),
            gettext(lang, "No access to resources or resources not found"),
            gettext(lang, "Your current password was incorrect. Please try again."),
            gettext(lang, "Your new password didn't match the confirmation. Please try "
                          "again."),
            gettext(lang, "The new password didn't match the confirmation. Please try "
                          "again."),
            gettext(lang, "Your password has been changed successfully!"),
            gettext(lang, "The password for %(name)s has been changed successfully"),
            gettext(lang, "The password was not changed: it needs at least %(length)s "
                          "characters and must not be a common password."),
            gettext(lang, "The password was not changed: it must not be a common "
                          "password.")]


__all__ = ["HubI18n", "context_lang", "handler_lang", "handler_of", "jupyterhub_message",
           "status_message"]
