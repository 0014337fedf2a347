"""The platform's one message catalog system (oceandata.i18n, docs/i18n.md).

Completeness: every message of the sources (``oceandata/`` read with ``babel.cfg``, as
``pybabel extract`` reads it) has a Chinese translation in one of the catalogs, with the
same placeholders; a message in two catalogs has one translation; no catalog holds a fuzzy
or obsolete entry, or a message no source has. Negotiation, the cookie, the compiled
catalogs and locale formatting are tested here too; each part's pages in its own file
(test_i18n_hub, test_i18n_alloc, test_i18n_lab, test_i18n_cli, test_dataservice_portal).
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from oceandata import i18n
from tests.i18n_helpers import PLACEHOLDER, REPO, extracted


def _catalogs() -> dict[str, object]:
    return {domain: i18n.read_catalog("zh", domain) for domain in i18n.domains("zh")}


def _placeholders(text: str) -> list[str]:
    return sorted(PLACEHOLDER.findall(text))


def _strings(message) -> tuple[str, ...]:
    return message.string if isinstance(message.string, tuple) else (message.string,)


def _ids(message) -> tuple[str, ...]:
    return message.id if isinstance(message.id, tuple) else (message.id,)


def test_the_sources_have_messages_of_every_part() -> None:
    found = extracted()
    where = {f for files in found.values() for f in files}
    for part in ("dataservice/", "alloc/", "hub/", "cli"):
        assert any(part in f for f in where), f"no message extracted from {part}"
    assert len(found) > 300, len(found)


def test_every_message_has_a_chinese_translation() -> None:
    catalogs = _catalogs()
    missing = []
    for msgid, files in extracted().items():
        held = [c.get(msgid) for c in catalogs.values()]
        held = [m for m in held if m is not None]
        if not held or not all(all(_strings(m)) for m in held):
            missing.append((msgid, files[0]))
    assert not missing, f"{len(missing)} messages without Chinese, e.g. {missing[:8]}"


def test_translations_keep_the_placeholders() -> None:
    wrong = []
    for domain, catalog in _catalogs().items():
        for message in catalog:
            if not message.id:
                continue
            expected = _placeholders(_ids(message)[-1])
            for text in _strings(message):
                if text and _placeholders(text) != expected:
                    wrong.append((domain, _ids(message)[0], text))
    assert not wrong, f"placeholders differ: {wrong[:5]}"


def test_one_translation_per_message_and_no_fuzzy_or_stale_entries() -> None:
    sources = extracted()
    seen: dict[str, tuple[str, tuple[str, ...]]] = {}
    problems = []
    for domain, catalog in _catalogs().items():
        if catalog.obsolete:
            problems.append((domain, "obsolete entries", list(catalog.obsolete)[:3]))
        for message in catalog:
            if not message.id:
                continue
            key = _ids(message)[0]
            if message.fuzzy:
                problems.append((domain, "fuzzy", key))
            if domain != "notebooks" and key not in sources:
                problems.append((domain, "in no source", key))
            if key in seen and seen[key][1] != _strings(message):
                problems.append((domain, f"differs from {seen[key][0]}", key))
            seen.setdefault(key, (domain, _strings(message)))
    assert not problems, problems[:10]


def test_the_merged_catalogs_translate_each_part() -> None:
    assert i18n.gettext("zh", "Search") == "搜索"  # the portal's
    assert i18n.gettext("en", "Search") == "Search"
    for domain in i18n.domains("zh"):
        message = next(m for m in i18n.read_catalog("zh", domain) if m.id and
                       isinstance(m.id, str) and "%" not in m.id)
        assert i18n.gettext("zh", message.id) == message.string, domain


def test_the_compiled_catalogs_are_used_only_when_current(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    folder = tmp_path / "locale" / "zh_Hans" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    source = i18n.po_path("zh", "dataservice")
    shutil.copy(source, folder / "dataservice.po")
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path / "locale")
    i18n.translations.cache_clear()
    try:
        written = i18n.compile_catalogs()
        assert [p.name for p in written] == ["dataservice.mo"]
        assert i18n.gettext("zh", "Search") == "搜索"
        # an edited .po newer than its .mo wins (a checkout never serves stale text)
        po = folder / "dataservice.po"
        po.write_text(po.read_text(encoding="utf-8").replace('msgstr "搜索"', 'msgstr "查找"'),
                      encoding="utf-8")
        mo = folder / "dataservice.mo"
        stamp = mo.stat().st_mtime
        import os

        os.utime(po, (stamp + 10, stamp + 10))
        i18n.translations.cache_clear()
        assert i18n.gettext("zh", "Search") == "查找"
    finally:
        i18n.translations.cache_clear()


def test_the_compile_command() -> None:
    done = subprocess.run([sys.executable, "-m", "oceandata.i18n", "compile"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert all(line.endswith(".mo") for line in done.stdout.split())
    bad = subprocess.run([sys.executable, "-m", "oceandata.i18n", "nonsense"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0, bad.stderr


@pytest.mark.parametrize(("query", "cookie", "setting", "header", "expected"), [
    (None, None, None, None, "en"),
    (None, None, None, "zh-CN,zh;q=0.9,en;q=0.8", "zh"),
    (None, None, "zh", "en-GB", "zh"),           # the saved setting beats the browser
    (None, "en", "zh", "zh-CN", "en"),           # the remembered switch beats the setting
    ("zh", "en", "en", "en", "zh"),              # the switch itself beats everything
    ("klingon", None, None, "zh-TW", "zh"),      # an unknown ?lang= is ignored
    (None, "xx", None, "fr, en;q=0.1", "en"),
    (None, None, None, "en;q=x, zh;q=0.5", "zh"),
])
def test_negotiation_order(query, cookie, setting, header, expected) -> None:
    assert i18n.negotiate(query, header, cookie=cookie, setting=setting) == expected


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, "en"), ({"LANG": "zh_CN.UTF-8"}, "zh"), ({"LANG": "C.UTF-8"}, "en"),
    ({"LANGUAGE": "zh_CN:zh", "LANG": "C.UTF-8"}, "zh"),
    ({"LC_ALL": "C", "LANG": "zh_CN.UTF-8"}, "en"),
    ({"LC_MESSAGES": "zh_TW.UTF-8"}, "zh"), ({"LANG": "fr_FR.UTF-8"}, "en"),
])
def test_the_command_line_language(environ, expected) -> None:
    assert i18n.cli_lang(environ) == expected


def test_the_switch_and_the_cookie() -> None:
    assert i18n.switch_href([("q", "海温"), ("lang", "en")], "zh") == \
        "?q=%E6%B5%B7%E6%B8%A9&lang=zh"
    header = i18n.cookie_header("zh", secure=True)
    assert header.startswith("oceandata_lang=zh;") and "Path=/" in header
    assert "SameSite=Lax" in header and header.endswith("Secure")


def test_numbers_sizes_and_times_in_each_language() -> None:
    when = dt.datetime(2026, 12, 5, 14, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert i18n.format_datetime(when, "en") == "5 Dec 2026, 06:30 UTC"
    assert i18n.format_datetime(when, "zh") == "2026年12月5日 06:30 UTC"
    assert i18n.format_datetime("2026-12-05", "zh", with_time=False) == "2026年12月5日"
    assert i18n.format_number(1234.5, "en", 1) == "1,234.5"
    assert i18n.format_number(0.125, "zh", 2) in ("0.12", "0.13")
    assert i18n.format_bytes(3_600_000_000, "zh") == "3.6 GB"
    assert i18n.format_number(None, "zh") == "" and i18n.format_number("n/a", "en") == "n/a"


def test_templates_mark_text_for_translation() -> None:
    """No template of ours holds a sentence outside {% trans %} / _(): text between tags
    with three or more English words is reported (names and code excepted)."""
    text_between = re.compile(r">([^<>{}]*[A-Za-z][^<>{}]*)<")
    offenders = []
    for folder in ("dataservice", "alloc", "hub"):
        for path in sorted((REPO / "oceandata" / folder / "templates").glob("*.html")):
            page = path.read_text(encoding="utf-8")
            page = re.sub(r"\{%-? *trans.*?endtrans *-?%\}", "", page, flags=re.S)
            page = re.sub(r"<(script|style|code|pre)\b.*?</\1>", "", page, flags=re.S)
            for match in text_between.finditer(page):
                words = [w for w in re.findall(r"[A-Za-z]{2,}", match.group(1))
                         if not w.isupper()]  # acronyms (OGC, API, EDR) are names
                if len(words) >= 3:
                    offenders.append((path.name, match.group(1).strip()[:60]))
    assert not offenders, offenders[:10]
