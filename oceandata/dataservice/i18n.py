"""Languages of the open-data portal: English and Simplified Chinese.

The English text is in the templates (``{% trans %}``, ``_()``) and in the modules
(``gettext(lang, "...")``); the Chinese is ``locale/zh_Hans/LC_MESSAGES/oceandata.po``,
compiled in memory with Babel at first use (no ``.mo`` file is kept). ``babel.cfg`` at
the repository root lets ``pybabel extract -F babel.cfg oceandata/dataservice`` find
every message; the portal's test fails when one has no Chinese translation.

A page's language is :func:`negotiate`\\ d from ``?lang=`` first, then the
``Accept-Language`` header; the default is English.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any, Literal

import jinja2
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

Lang = Literal["en", "zh"]
#: languages of the portal, the default first
LANGUAGES: tuple[Lang, ...] = ("en", "zh")
#: the ``lang`` attribute of ``<html>`` for each language (BCP 47)
HTML_LANG = {"en": "en", "zh": "zh-Hans"}
#: the Babel locale folder of each translated language
LOCALES = {"zh": "zh_Hans"}
#: the gettext domain (``locale/<locale>/LC_MESSAGES/<DOMAIN>.po``)
DOMAIN = "oceandata"

HERE = Path(__file__).resolve().parent
LOCALE_DIR = HERE / "locale"
TEMPLATES = HERE / "templates"


def _lang_of(tag: str) -> Lang | None:
    """The portal language of one language tag (``zh-CN``, ``zh_Hans``, ``en-GB``...)."""
    primary = tag.strip().replace("_", "-").split("-")[0].lower()
    if primary == "zh":
        return "zh"
    if primary == "en":
        return "en"
    return None


def negotiate(query_lang: str | None, accept_language: str | None) -> Lang:
    """The language of a page: ``?lang=`` first, then ``Accept-Language``, else English.

    Parameters
    ----------
    query_lang
        The ``lang`` query parameter (``en``, ``zh``, or a tag such as ``zh-CN``); an
        unknown value is ignored.
    accept_language
        The ``Accept-Language`` header; its languages are taken by quality (``q``),
        the first one the portal has wins. Every Chinese tag (``zh``, ``zh-CN``,
        ``zh-Hans``...) gives Simplified Chinese.

    Returns
    -------
    str
        ``"en"`` or ``"zh"``.
    """
    if query_lang:
        found = _lang_of(query_lang)
        if found is not None:
            return found
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate((accept_language or "").split(",")):
        tag, _, params = item.partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag.strip() and quality > 0:
            ranked.append((-quality, position, tag))
    for _, _, tag in sorted(ranked):
        found = _lang_of(tag)
        if found is not None:
            return found
    return "en"


def request_lang(request: Any) -> Lang:
    """The language of a request's answer (pages, JSON errors): :func:`negotiate` of its
    ``?lang=`` and ``Accept-Language``."""
    asked = request.query_params.get("lang") or None
    return negotiate(asked, request.headers.get("accept-language"))


def po_path(lang: str) -> Path:
    """The ``.po`` file of a translated language."""
    return LOCALE_DIR / LOCALES[lang] / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def translations(lang: str) -> NullTranslations:
    """The translations of *lang*, compiled in memory from its ``.po`` at first use.

    English (the language of the source) has none: messages are shown as written.
    """
    if lang not in LOCALES:
        return NullTranslations()
    with po_path(lang).open("rb") as fh:
        catalog = read_po(fh, locale=LOCALES[lang], domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


def gettext(lang: str, msgid: str, **values: Any) -> str:
    """A Python-side message in *lang*, with ``%(name)s`` placeholders filled.

    Parameters
    ----------
    lang
        ``"en"`` or ``"zh"``.
    msgid
        The English message, a string literal (``pybabel extract`` reads it here: the
        ``keywords = gettext:2`` of ``babel.cfg``).
    **values
        Values of the message's ``%(name)s`` placeholders.
    """
    text = translations(lang).gettext(msgid)
    return text % values if values else text


@functools.cache
def environment(lang: str) -> jinja2.Environment:
    """The Jinja2 environment of the portal's templates in *lang* (autoescaped)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             extensions=["jinja2.ext.i18n"], trim_blocks=True,
                             lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]
    return env


__all__ = ["HTML_LANG", "LANGUAGES", "environment", "gettext", "negotiate", "request_lang",
           "translations"]
