"""Languages of the open-data portal: English and Simplified Chinese.

The portal's share of the platform's one message catalog system (:mod:`oceandata.i18n`):
the English text is in the templates (``{% trans %}``, ``_()``) and in the modules
(``gettext(lang, "...")``); the Chinese is ``oceandata/locale/zh_Hans/LC_MESSAGES/
dataservice.po``. A page's language is negotiated from ``?lang=``, the language cookie,
then ``Accept-Language`` (:func:`oceandata.i18n.negotiate`); the default is English.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from ..i18n import (
    HTML_LANG,
    LANGUAGES,
    Lang,
    gettext,
    negotiate,
    po_path,
    request_lang,
    translations,
)
from ..i18n import environment as _environment

TEMPLATES = Path(__file__).resolve().parent / "templates"


def environment(lang: str) -> jinja2.Environment:
    """The Jinja2 environment of the portal's templates in *lang* (autoescaped)."""
    return _environment(lang, TEMPLATES)


__all__ = ["HTML_LANG", "LANGUAGES", "Lang", "environment", "gettext", "negotiate", "po_path",
           "request_lang", "translations"]
