"""The command line's language: English by default, Simplified Chinese under a Chinese
locale (``LANG=zh_CN.UTF-8``, ``LANGUAGE=zh_CN``, ``LC_ALL``, ``LC_MESSAGES``), from the
platform's one catalog system (:mod:`oceandata.i18n`, domain ``cli``; docs/i18n.md).

:data:`LANG` is read once, when the command line is imported: :func:`_` translates a
message (help texts, our errors) into it. Typer marks a few of its own messages with
:mod:`gettext` (panel titles, ``[default: …]``, ``Missing command.``); the click it ships
(``typer._click``) marks none (``Usage:``, ``Show this message and exit.``, ``No such
option``, ``Missing argument``...). :func:`install` makes both speak :data:`LANG`: it
replaces typer's ``_`` and the panel titles typer computed at import, and translates
click's usage prefix, help option and error messages (:func:`translate_click_message`).
In English nothing is replaced: the output is typer's own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .i18n import Lang, cli_lang
from .i18n import gettext as _gettext
from .i18n import ngettext as _ngettext

#: the language of this process's command line, read once
LANG: Lang = cli_lang()


def _(msgid: str, /, **values: Any) -> str:
    """*msgid* (a literal: ``pybabel extract`` reads it) in the command line's language,
    with its ``%(name)s`` placeholders filled from *values*."""
    return _gettext(LANG, msgid, **values)


def n_(singular: str, plural: str, n: int, /, **values: Any) -> str:
    """:func:`_` of a message with a plural form (``%(num)s`` is *n*)."""
    return _ngettext(LANG, singular, plural, n, **values)


def accept_language() -> dict[str, str]:
    """The ``Accept-Language`` header of the command line's requests to the platform's
    services, so that their refusals come in :data:`LANG` too (none in English)."""
    return {} if LANG == "en" else {"Accept-Language": "zh-CN, zh;q=0.9"}


# Typer's and click's own messages that we translate (in cli.po, commented as theirs).
# Listed here with _() so that extraction, the completeness test and assert_chinese see
# them; typer and click read them untranslated, :func:`install` translates them.
#: typer's gettext messages (typer/core.py, typer/rich_utils.py)
TYPER_MESSAGES = (
    _("Arguments"), _("Options"), _("Commands"), _("Error"),
    _("Aborted."), _("Aborted!"), _("(deprecated) "),
    _("[default: {}]"), _("[env var: {}]"), _("[required]"),
    _("Try [blue]'{command_path} {help_option}'[/] for help."),
    _("(dynamic)"), _("default: {default}"), _("required"),
    _("env var: {var}"), _("Missing command."),
    _("No such command {name!r}."),
)
#: click's messages (typer._click: not marked there), translated by :func:`install`
CLICK_MESSAGES = (
    _("Usage: "), _("Show this message and exit."),
)

#: messages of other modules the command line shows as help (oceandata.times)
OTHER_MESSAGES = (
    _("START/END: years or ISO dates, inclusive, either may be empty "
      "(1983/2012, 1997-01/1998-12, 2000-01-01/)."),
)

#: typer.rich_utils constants computed at typer's import (from typer's gettext)
_RICH_CONSTANTS = ("DEPRECATED_STRING", "DEFAULT_STRING", "ENVVAR_STRING",
                   "REQUIRED_LONG_STRING", "ARGUMENTS_PANEL_TITLE", "OPTIONS_PANEL_TITLE",
                   "COMMANDS_PANEL_TITLE", "ERRORS_PANEL_TITLE", "ABORTED_TEXT", "RICH_HELP")

#: click's error messages (English, as click formats them) and their translations
_CLICK_ERRORS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r"No such option: (?P<name>\S+)(?: \(Possible options: (?P<options>.*)\))?",
                re.S),
     lambda m: _("No such option: %(name)s", name=m["name"]) + (
         _(" (possible options: %(options)s)", options=m["options"]) if m["options"]
         else "")),
    (re.compile(r"Missing argument (?P<name>.+?)\.(?: (?P<rest>.*))?", re.S),
     lambda m: _("Missing argument %(name)s.", name=m["name"])
     + (" " + m["rest"] if m["rest"] else "")),
    (re.compile(r"Missing option (?P<name>.+?)\.(?: (?P<rest>.*))?", re.S),
     lambda m: _("Missing option %(name)s.", name=m["name"])
     + (" " + m["rest"] if m["rest"] else "")),
    (re.compile(r"Missing parameter:? (?P<name>.+?)\.?", re.S),
     lambda m: _("Missing parameter %(name)s.", name=m["name"])),
    (re.compile(r"Invalid value for (?P<name>.+?): (?P<message>.*)", re.S),
     lambda m: _("Invalid value for %(name)s: %(message)s", name=m["name"],
                 message=_value_message(m["message"]))),
    (re.compile(r"Invalid value: (?P<message>.*)", re.S),
     lambda m: _("Invalid value: %(message)s", message=_value_message(m["message"]))),
    (re.compile(r"Got unexpected extra argument(?:s|\(s\))? \((?P<args>.*)\)", re.S),
     lambda m: _("Got unexpected extra arguments (%(args)s)", args=m["args"])),
    (re.compile(r"Option (?P<name>'[^']*') requires an argument\.", re.S),
     lambda m: _("Option %(name)s requires an argument.", name=m["name"])),
    (re.compile(r"Option (?P<name>'[^']*') requires (?P<num>\d+) arguments\.", re.S),
     lambda m: _("Option %(name)s requires %(num)s arguments.", name=m["name"],
                 num=m["num"])),
    (re.compile(r"Option (?P<name>'[^']*') does not take a value\.", re.S),
     lambda m: _("Option %(name)s does not take a value.", name=m["name"])),
)

#: the reasons typer gives for an invalid value (its coercion's messages), in those above
_VALUE_ERRORS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r"Input should be a valid (?P<type>integer|number|boolean)(?:,.*)?", re.S),
     lambda m: _("should be a valid %(type)s", type={
         "integer": _("integer"), "number": _("number"), "boolean": _("boolean")}[m["type"]])),
    (re.compile(r"Input should be greater than or equal to (?P<limit>.*)", re.S),
     lambda m: _("should be at least %(limit)s", limit=m["limit"])),
    (re.compile(r"Input should be less than or equal to (?P<limit>.*)", re.S),
     lambda m: _("should be at most %(limit)s", limit=m["limit"])),
    (re.compile(r"Input should be greater than (?P<limit>.*)", re.S),
     lambda m: _("should be greater than %(limit)s", limit=m["limit"])),
    (re.compile(r"Input should be less than (?P<limit>.*)", re.S),
     lambda m: _("should be less than %(limit)s", limit=m["limit"])),
)


def _value_message(message: str) -> str:
    for pattern, translate in _VALUE_ERRORS:
        match = pattern.fullmatch(message)
        if match:
            return translate(match)
    return message


def translate_click_message(message: str) -> str:
    """A message of click's (a usage error, as click formatted it in English) in
    :data:`LANG`; one it does not know is returned as it is."""
    if LANG == "en":
        return message
    for pattern, translate in _CLICK_ERRORS:
        match = pattern.fullmatch(message)
        if match:
            return translate(match)
    return _(message)  # typer's "Missing command." etc. come translated already


_installed = False


def install() -> None:
    """Make typer and its click speak :data:`LANG` (nothing to do in English). Called
    once by :mod:`oceandata.cli` before any command runs."""
    global _installed
    if LANG == "en" or _installed:
        return
    _installed = True
    try:
        _patch_typer_and_click()
    except (ImportError, AttributeError):  # another typer: its own texts stay English
        pass


def _patch_typer_and_click() -> None:
    """The replacements of :func:`install` (typer's bundled click, ``typer._click``, which
    typer 0.29 ships; pinned in pyproject.toml). Raises ImportError or AttributeError on a
    typer without the names replaced, before anything is replaced."""
    import typer.core
    from typer import _click

    # every name replaced below, looked up first: all replaced or none
    for owner, name in ((_click.formatting.HelpFormatter, "write_usage"),
                        (_click.core.Command, "get_help_option"),
                        (_click.exceptions.ClickException, "show"),
                        (_click.exceptions.UsageError, "show")):
        getattr(owner, name)

    typer.core._ = _  # type: ignore[attr-defined]  # typer's gettext, read at each call
    try:
        from typer import rich_utils
    except ImportError:  # pragma: no cover - rich is a dependency
        rich_utils = None
    if rich_utils is not None:
        for name in _RICH_CONSTANTS:
            value = getattr(rich_utils, name, None)
            if isinstance(value, str):
                setattr(rich_utils, name, _(value))
        original_error = rich_utils.rich_format_error

        def rich_format_error(self: Any) -> None:
            english = self.format_message()
            self.format_message = lambda: translate_click_message(english)
            original_error(self)

        rich_utils.rich_format_error = rich_format_error

    formatter_cls = _click.formatting.HelpFormatter
    write_usage = formatter_cls.write_usage

    def translated_usage(self: Any, prog: str, args: str = "", prefix: str | None = None
                         ) -> None:
        write_usage(self, prog, args, _("Usage: ") if prefix is None else prefix)

    formatter_cls.write_usage = translated_usage  # type: ignore[method-assign]

    command_cls = _click.core.Command
    get_help_option = command_cls.get_help_option

    def translated_help_option(self: Any, ctx: Any) -> Any:
        option = get_help_option(self, ctx)
        if option is not None and option.help == "Show this message and exit.":
            option.help = _("Show this message and exit.")
        return option

    command_cls.get_help_option = translated_help_option  # type: ignore[method-assign]
    show = _click.exceptions.ClickException.show
    exceptions = _click.exceptions

    def translated_show(self: Any, file: Any = None) -> None:  # without rich
        english = self.format_message()
        self.format_message = lambda: translate_click_message(english)
        show(self, file)

    exceptions.ClickException.show = translated_show  # type: ignore[method-assign]
    for cls in (exceptions.UsageError,):
        if "show" in vars(cls):
            usage_show = cls.show

            def translated_usage_show(self: Any, file: Any = None, _show: Any = usage_show
                                      ) -> None:
                english = self.format_message()
                self.format_message = lambda: translate_click_message(english)
                _show(self, file)

            cls.show = translated_usage_show  # type: ignore[method-assign]


__all__ = ["CLICK_MESSAGES", "LANG", "TYPER_MESSAGES", "_", "accept_language", "install", "n_",
           "translate_click_message"]
