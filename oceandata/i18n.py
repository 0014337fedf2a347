"""Languages of the platform: English and Simplified Chinese, one message catalog system.

Every page of ours (the open-data portal, the allocations service, the hub's pages), the
command line and the example notebooks' narrative are written in English and translated
through gettext catalogs kept with Babel: ``oceandata/locale/zh_Hans/LC_MESSAGES/<domain>.po``,
one file per part (``dataservice``, ``alloc``, ``hub``, ``cli``, ``notebooks``...), all
merged into one set of translations per language. ``babel.cfg`` at the repository root
tells ``pybabel extract`` where the messages are; ``make`` compiles the ``.po`` files to
``.mo`` (:func:`compile_catalogs`, ``python -m oceandata.i18n compile``), and a ``.po``
newer than its ``.mo`` (or without one) is compiled in memory at first use, so a checkout
never serves stale text. ``tests/test_i18n.py`` fails when a message has no Chinese or
when a translation's placeholders differ from the message's.

The language of a page (:func:`negotiate`, docs/i18n.md), first that applies:

1. ``?lang=`` (the switch on every page), remembered in the cookie :data:`LANG_COOKIE`;
2. that cookie (also set when a signed-in user saves a language in their settings);
3. the user's saved setting, where the service knows the user;
4. the browser's ``Accept-Language``;
5. English.

The command line follows ``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES`` and ``LANG``
(:func:`cli_lang`), as gettext programs do.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import jinja2
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

Lang = Literal["en", "zh"]
#: the platform's languages, the default first
LANGUAGES: tuple[Lang, ...] = ("en", "zh")
#: the ``lang`` attribute of ``<html>`` for each language (BCP 47)
HTML_LANG: dict[str, str] = {"en": "en", "zh": "zh-Hans"}
#: each language's name, written in that language (the switch shows the other one's)
NAMES: dict[str, str] = {"en": "English", "zh": "中文"}
#: the Babel locale folder of each translated language
LOCALES: dict[str, str] = {"zh": "zh_Hans"}
#: the Babel locale that numbers and dates are formatted for
FORMAT_LOCALES: dict[str, str] = {"en": "en_GB", "zh": "zh_Hans_CN"}
#: the cookie remembering a chosen language (path ``/``: every service of the platform)
LANG_COOKIE = "oceandata_lang"
#: how long the cookie is kept (seconds)
LANG_COOKIE_AGE = 365 * 24 * 3600

HERE = Path(__file__).resolve().parent
LOCALE_DIR = HERE / "locale"


# --------------------------------------------------------------------------- negotiation


def lang_of(tag: str | None) -> Lang | None:
    """The platform language of one language tag (``zh-CN``, ``zh_Hans``, ``en-GB``,
    ``zh_CN.UTF-8``...), None for any other language or an empty tag.

    >>> lang_of("zh-TW"), lang_of("en_GB.UTF-8"), lang_of("fr"), lang_of("C")
    ('zh', 'en', None, None)
    """
    if not tag:
        return None
    primary = tag.strip().split(".")[0].replace("_", "-").split("-")[0].lower()
    if primary == "zh":
        return "zh"
    if primary == "en":
        return "en"
    return None


def accepted(accept_language: str | None) -> Lang | None:
    """The first platform language of an ``Accept-Language`` header, by quality (``q``)
    then position; None when it names neither."""
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
        found = lang_of(tag)
        if found is not None:
            return found
    return None


def negotiate(query_lang: str | None = None, accept_language: str | None = None, *,
              cookie: str | None = None, setting: str | None = None) -> Lang:
    """The language of a page (see the module docstring for the order).

    Parameters
    ----------
    query_lang
        The ``lang`` query parameter (``en``, ``zh``, or a tag such as ``zh-CN``); an
        unknown value is ignored.
    accept_language
        The ``Accept-Language`` header; its languages are taken by quality (``q``), the
        first one the platform has wins. Every Chinese tag gives Simplified Chinese.
    cookie
        The value of the :data:`LANG_COOKIE` cookie.
    setting
        The user's saved language, where known.

    Returns
    -------
    str
        ``"en"`` or ``"zh"``.
    """
    for chosen in (query_lang, cookie, setting):
        found = lang_of(chosen)
        if found is not None:
            return found
    return accepted(accept_language) or "en"


def request_lang(request: Any, setting: str | None = None) -> Lang:
    """The language of a Starlette request's answer (pages, JSON errors): :func:`negotiate`
    of its ``?lang=``, its cookie, *setting* and its ``Accept-Language``."""
    return negotiate(request.query_params.get("lang") or None,
                     request.headers.get("accept-language"),
                     cookie=request.cookies.get(LANG_COOKIE), setting=setting)


def chosen_lang(query_lang: str | None) -> Lang | None:
    """The language a ``?lang=`` switch chose, to be remembered (None: nothing chosen)."""
    return lang_of(query_lang)


def cookie_header(lang: str | None, secure: bool = False) -> str:
    """A ``Set-Cookie`` value remembering *lang* on every path of the platform; None
    forgets the remembered language (the cookie expires).

    >>> cookie_header("zh")
    'oceandata_lang=zh; Path=/; Max-Age=31536000; SameSite=Lax'
    >>> cookie_header(None)
    'oceandata_lang=; Path=/; Max-Age=0; SameSite=Lax'
    """
    age = LANG_COOKIE_AGE if lang else 0
    value = f"{LANG_COOKIE}={lang or ''}; Path=/; Max-Age={age}; SameSite=Lax"
    return value + ("; Secure" if secure else "")


def remember(request: Any, response: Any) -> None:
    """Set the language cookie on a Starlette *response* when *request* chose one with
    ``?lang=`` and it differs from the cookie it sent."""
    chosen = chosen_lang(request.query_params.get("lang"))
    if chosen is not None and request.cookies.get(LANG_COOKIE) != chosen:
        response.headers.append("set-cookie", cookie_header(
            chosen, secure=request.url.scheme == "https"))


def switch_href(query: Iterable[tuple[str, str]], lang: str) -> str:
    """The link of the language switch: the page's own query with ``lang`` set to *lang*.

    >>> switch_href([("q", "sst"), ("lang", "en")], "zh")
    '?q=sst&lang=zh'
    """
    from urllib.parse import urlencode

    return "?" + urlencode([*((k, v) for k, v in query if k != "lang"), ("lang", lang)])


def other(lang: str) -> Lang:
    """The language the switch offers on a page in *lang*."""
    return "en" if lang == "zh" else "zh"


def cli_lang(environ: Mapping[str, str] | None = None) -> Lang:
    """The command line's language from ``LANGUAGE`` (its first entry), ``LC_ALL``,
    ``LC_MESSAGES`` and ``LANG``, as gettext reads them; English by default (``C``,
    ``POSIX`` and any other language too).

    >>> cli_lang({"LANG": "zh_CN.UTF-8"}), cli_lang({"LC_ALL": "C", "LANG": "zh_CN.UTF-8"})
    ('zh', 'en')
    """
    environ = os.environ if environ is None else environ
    for key in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(key, "")
        if key == "LANGUAGE":
            value = value.split(":")[0]
        if value:
            return lang_of(value) or "en"
    return "en"


# --------------------------------------------------------------------------- catalogs


def domains(lang: str = "zh") -> list[str]:
    """The catalog files (domains) of a translated language, sorted."""
    folder = LOCALE_DIR / LOCALES[lang] / "LC_MESSAGES"
    return sorted(p.stem for p in folder.glob("*.po"))


def po_path(lang: str, domain: str = "dataservice") -> Path:
    """The ``.po`` file of *domain* in translated language *lang*."""
    return LOCALE_DIR / LOCALES[lang] / "LC_MESSAGES" / f"{domain}.po"


def read_catalog(lang: str, domain: str) -> Any:
    """The Babel catalog of *domain* in *lang*, read from its ``.po``."""
    with po_path(lang, domain).open("rb") as fh:
        return read_po(fh, locale=LOCALES[lang], domain=domain)


def compile_catalogs() -> list[Path]:
    """Compile every ``.po`` to a ``.mo`` beside it (written under a temporary name and
    renamed); returns the files written. Fuzzy translations are left out."""
    written = []
    for lang in LOCALES:
        for domain in domains(lang):
            catalog = read_catalog(lang, domain)
            target = po_path(lang, domain).with_suffix(".mo")
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            with tmp.open("wb") as fh:
                write_mo(fh, catalog, use_fuzzy=False)
            os.replace(tmp, target)
            written.append(target)
    return written


def _domain_translations(lang: str, domain: str) -> Translations:
    po = po_path(lang, domain)
    mo = po.with_suffix(".mo")
    try:
        current = mo.stat().st_mtime >= po.stat().st_mtime
    except OSError:
        current = False
    if current:
        with mo.open("rb") as fh:
            return Translations(fh, domain=domain)
    buffer = io.BytesIO()
    write_mo(buffer, read_catalog(lang, domain), use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer, domain=domain)


@functools.cache
def translations(lang: str) -> NullTranslations:
    """The translations of *lang*: every domain's catalog merged (English, the language
    of the source, has none: messages are shown as written)."""
    if lang not in LOCALES:
        return NullTranslations()
    merged: Translations | None = None
    for domain in domains(lang):
        found = _domain_translations(lang, domain)
        if merged is None:
            merged = found
        else:
            merged.merge(found)
    return merged if merged is not None else NullTranslations()


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


def ngettext(lang: str, singular: str, plural: str, n: int, **values: Any) -> str:
    """:func:`gettext` of a message with a plural form (``%(num)s`` is *n*)."""
    text = translations(lang).ngettext(singular, plural, n)
    return text % {"num": n, **values}


# --------------------------------------------------------------------------- formatting


def format_number(value: Any, lang: str, digits: int | None = None) -> str:
    """*value* as the language writes numbers (grouping, decimal sign); *digits* fixes
    the decimals. ``None`` and non-numbers are returned as text.

    >>> format_number(1234567.891, "en", 1), format_number(1234567.891, "zh", 1)
    ('1,234,567.9', '1,234,567.9')
    """
    from babel.numbers import format_decimal

    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    if digits is None:
        return format_decimal(value, locale=FORMAT_LOCALES.get(lang, "en_GB"))
    pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "")
    return format_decimal(value, format=pattern, locale=FORMAT_LOCALES.get(lang, "en_GB"),
                          decimal_quantization=True)


#: byte units, 1000-based as storage quotas are stated (GB)
_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def format_bytes(value: Any, lang: str) -> str:
    """A size in bytes with its unit (``3.6 MB``), the number formatted for *lang*.

    >>> format_bytes(3_600_000, "zh"), format_bytes(512, "en")
    ('3.6 MB', '512 B')
    """
    if value is None:
        return ""
    size = float(value)
    unit = 0
    while abs(size) >= 1000 and unit < len(_UNITS) - 1:
        size /= 1000
        unit += 1
    digits = 0 if unit == 0 else (1 if abs(size) < 100 else 0)
    return f"{format_number(size, lang, digits)} {_UNITS[unit]}"


def format_datetime(value: Any, lang: str, with_time: bool = True) -> str:
    """A time (``datetime``, ISO text or epoch seconds) as the language writes it, in UTC
    (the platform's clock) and said so; ``None`` gives an empty string.

    >>> when = dt.datetime(2026, 12, 5, 6, 45, tzinfo=dt.UTC)
    >>> format_datetime(when, "en"), format_datetime(when, "zh")
    ('5 Dec 2026, 06:45 UTC', '2026年12月5日 06:45 UTC')
    """
    from babel.dates import format_date, format_time

    if value is None or value == "":
        return ""
    if isinstance(value, (int, float)):
        value = dt.datetime.fromtimestamp(value, dt.UTC)
    elif isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        day = format_date(value.date(), "medium", locale=FORMAT_LOCALES.get(lang, "en_GB"))
        if not with_time:
            return day
        separator = ", " if lang == "en" else " "
        return f"{day}{separator}{format_time(value.time(), 'HH:mm')} UTC"
    if isinstance(value, dt.date):
        return format_date(value, "medium", locale=FORMAT_LOCALES.get(lang, "en_GB"))
    return str(value)


# --------------------------------------------------------------------------- templates


def _filters(lang_of_context: Callable[[Any], str]) -> dict[str, Any]:
    """Jinja filters formatting for the template's language."""

    @jinja2.pass_context
    def number(context: Any, value: Any, digits: int | None = None) -> str:
        return format_number(value, lang_of_context(context), digits)

    @jinja2.pass_context
    def size(context: Any, value: Any) -> str:
        return format_bytes(value, lang_of_context(context))

    @jinja2.pass_context
    def when(context: Any, value: Any, with_time: bool = True) -> str:
        return format_datetime(value, lang_of_context(context), with_time)

    return {"number": number, "size": size, "when": when}


def install_i18n(env: jinja2.Environment, lang_of_context: Callable[[Any], str]) -> None:
    """Make *env*'s templates speak the language *lang_of_context* finds in each render's
    context: ``{% trans %}``, ``_()``, ``gettext``/``ngettext`` (new style: ``%(name)s``
    placeholders, autoescaped), and the filters ``number``, ``size`` and ``when``. For an
    environment shared by every request (the hub's), where the language is per request.
    """
    if "jinja2.ext.InternationalizationExtension" not in env.extensions:
        env.add_extension("jinja2.ext.i18n")

    @jinja2.pass_context
    def _gettext(context: Any, message: str) -> str:
        return translations(lang_of_context(context)).gettext(message)

    @jinja2.pass_context
    def _ngettext(context: Any, singular: str, plural: str, n: int) -> str:
        return translations(lang_of_context(context)).ngettext(singular, plural, n)

    env.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters.update(_filters(lang_of_context))


@functools.cache
def environment(lang: str, folder: str | os.PathLike[str]) -> jinja2.Environment:
    """A Jinja2 environment of the templates in *folder* speaking *lang* (autoescaped,
    strict about undefined names), with the filters of :func:`install_i18n`; ``lang``,
    ``html_lang`` and ``other_lang`` are globals."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), autoescape=True,
                             extensions=["jinja2.ext.i18n"], trim_blocks=True,
                             lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]
    env.filters.update(_filters(lambda _context: lang))
    env.globals.update(lang=lang, html_lang=HTML_LANG[lang], other_lang=other(lang),
                       other_lang_name=NAMES[other(lang)])
    return env


def main(argv: list[str] | None = None) -> int:
    """``python -m oceandata.i18n compile``: compile the catalogs (the bootstrap runs it)."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["compile"]:
        print("usage: python -m oceandata.i18n compile", file=sys.stderr)
        return 2
    for path in compile_catalogs():
        print(path.relative_to(HERE.parent))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["HTML_LANG", "LANGUAGES", "LANG_COOKIE", "NAMES", "cli_lang", "compile_catalogs",
           "cookie_header", "environment", "format_bytes", "format_datetime",
           "format_number", "gettext", "install_i18n", "lang_of", "negotiate", "ngettext",
           "remember", "request_lang", "switch_href", "translations"]
