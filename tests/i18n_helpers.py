"""Checks that a page (or any text a user reads) is in Chinese, shared by the tests of every
part of the platform (docs/i18n.md).

:func:`english_leftovers` finds the platform's own English messages left in a text: every
message id the catalogs hold (extracted from the sources with ``babel.cfg``, as
``pybabel extract`` does) whose Chinese differs from the English, when the English (or,
for a message with placeholders, its longest fixed part of at least 12 characters) is in
the text. :func:`assert_chinese` adds that the text has Chinese at all and no raw
placeholders or message markup.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: a placeholder of a message: ``%(name)s``, ``%s``, ``{name}``
PLACEHOLDER = re.compile(r"%\([^)]*\)[-#0 +]*\d*(?:\.\d+)?[a-zA-Z]|%[sdfr]|\{[^{}]*\}")
CJK = re.compile(r"[\u4e00-\u9fff]")


@functools.cache
def extracted() -> dict[str, tuple[str, ...]]:
    """Every message of the sources (``oceandata/`` read with ``babel.cfg``): id → the
    files it is in."""
    from babel.messages.extract import extract_from_dir
    from babel.messages.frontend import parse_mapping_cfg

    with (REPO / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh, "babel.cfg")
    found: dict[str, set[str]] = {}
    for filename, _lineno, message, _comments, _context in extract_from_dir(
            REPO / "oceandata", method_map, options_map):
        msgid = message[0] if isinstance(message, tuple) else message  # a plural's singular
        if msgid:
            found.setdefault(msgid, set()).add(filename)
    return {k: tuple(sorted(v)) for k, v in found.items()}


def _probe(msgid: str) -> str | None:
    """What of *msgid* must not appear in a Chinese text: the whole message, or its
    longest fixed part (12 characters or more) when it has placeholders."""
    parts = [p.strip(" .,:;()") for p in PLACEHOLDER.split(msgid)]
    if len(parts) == 1:
        text = " ".join(msgid.split())
        # one short word (a unit, a protocol's name) is not evidence of a page in English
        return text if len(text) >= 4 and (" " in text or len(text) >= 8) else None
    longest = max(parts, key=len)
    longest = " ".join(longest.split())
    return longest if len(longest) >= 12 else None


@functools.cache
def _probes() -> tuple[str, ...]:
    from oceandata.i18n import translations

    zh = translations("zh")
    out = set()
    for msgid in extracted():
        if zh.gettext(msgid) == msgid:  # the same in both (a name), or untranslated:
            continue  # the catalog test reports the untranslated
        probe = _probe(msgid)
        if probe and not CJK.search(probe):
            out.add(probe)
    return tuple(sorted(out, key=len, reverse=True))


def english_leftovers(text: str) -> list[str]:
    """The platform's English messages found in *text* (whitespace normalised)."""
    flat = " ".join(text.split())
    return [p for p in _probes() if p in flat]


def assert_chinese(text: str, where: str) -> None:
    """*text* (a page's visible text) is Chinese: it has Chinese characters, none of the
    platform's English messages, no raw placeholder and no template markup."""
    assert CJK.search(text), f"{where}: no Chinese at all:\n{text[:500]}"
    left = english_leftovers(text)
    assert not left, f"{where}: English messages left: {left[:10]}"
    raw = re.findall(r"%\(\w+\)s|\{\{|\{%|\}\}", text)
    assert not raw, f"{where}: raw placeholders or markup: {raw[:5]}"


#: the visible text of a page without the content it marks as not to be translated
#: (``translate="no"``: dataset titles, abstracts, providers, licences; the data's own
#: words, in the language their authors wrote them)
UI_TEXT = """() => {
  const body = document.body.cloneNode(true);
  body.querySelectorAll('[translate="no"], script, style').forEach((e) => e.remove());
  document.documentElement.appendChild(body);  // innerText needs a rendered element
  body.style.position = 'absolute'; body.style.left = '-99999px';
  const text = body.innerText;
  body.remove();
  return text;
}"""


def ui_text(page: object) -> str:
    """The visible text of Playwright *page* that is the platform's own: without elements
    marked ``translate="no"`` (data written by its authors)."""
    return page.evaluate(UI_TEXT)  # type: ignore[attr-defined]


__all__ = ["assert_chinese", "english_leftovers", "extracted", "ui_text"]
