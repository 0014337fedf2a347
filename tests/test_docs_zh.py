"""The Chinese documentation: README.zh-CN.md and the user guides in docs/zh/.

Checks that the Chinese README starts with the same two commands as README.md, that every
relative link (and anchor) of the Chinese docs resolves, that every ``oceandata`` command
and option in their code blocks exists in the real console script's ``--help`` output, that
each file is mostly Chinese, and that README.md links the Chinese README.
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import os
import re
import shlex
import subprocess
import sys
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_ZH = ROOT / "README.zh-CN.md"
GUIDES = ROOT / "docs" / "zh"
GUIDE_NAMES = ("README.md", "scientists.md", "partners.md", "data-service.md")
CLI = Path(sys.executable).parent / "oceandata"

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")
OPTION = re.compile(r"(?<![\w-])(--[a-zA-Z][\w-]*|-[a-zA-Z])(?![\w-])")
BOX_ROW = re.compile(r"^│ (\S+)\s")  # a row's first word; wrapped text is indented further


def zh_docs() -> list[Path]:
    """README.zh-CN.md and every Markdown file of docs/zh/."""
    return [README_ZH, *sorted(GUIDES.glob("*.md"))]


def code_blocks(text: str) -> list[str]:
    """The fenced code blocks of a Markdown text, in order."""
    return [m.group(1) for m in FENCE.finditer(text)]


def without_code(text: str) -> str:
    """The Markdown text without fenced code blocks and inline code."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def commands_of(block: str) -> list[str]:
    """The non-empty, non-comment lines of a shell code block, without their comments
    and a leading ``$ `` prompt."""
    lines = []
    for raw in block.splitlines():
        line = raw.strip()
        if line.startswith("$ "):
            line = line[2:]
        if not line or line.startswith("#"):
            continue
        lines.append(re.sub(r"\s+#.*$", "", line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading (lower case, punctuation dropped, spaces to
    dashes; CJK letters kept)."""
    text = re.sub(r"`", "", heading.strip()).lower()
    kept = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "-_" or cat[0] in "LN" or cat == "Mn":
            kept.append(ch)
        elif ch == " ":
            kept.append("-")
    return "".join(kept)


def anchors(path: Path) -> set[str]:
    """The heading anchors of a Markdown file (duplicates numbered as GitHub does)."""
    seen: dict[str, int] = {}
    found = set()
    for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", path.read_text("utf-8")), re.M):
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


@functools.cache
def run_help(*path: str) -> subprocess.CompletedProcess[str]:
    """Run the real console script's ``--help`` for a command path, in English and wide
    enough not to wrap names (cached: each path runs once)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    env.update(LANG="C.UTF-8", COLUMNS="240", NO_COLOR="1")
    return subprocess.run([str(CLI), *path, "--help"], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def cli_help(*path: str) -> str:
    """The ``--help`` output of ``oceandata PATH``; fails when it does not run."""
    done = run_help(*path)
    assert done.returncode == 0, f"oceandata {' '.join(path)} --help failed: {done.stderr}"
    return done.stdout


@pytest.fixture(scope="module", autouse=True)
def _prefetch_help() -> None:
    """Run the ``--help`` of the commands the docs name, one level of commands at a time,
    in threads (each run takes seconds; the checks then read the cache)."""
    calls = [words for doc in zh_docs() if doc.exists()
             for words in oceandata_calls(doc.read_text("utf-8"))]
    level: set[tuple[str, ...]] = {()}
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        for depth in range(3):
            list(pool.map(lambda path: run_help(*path), sorted(level)))
            grown: set[tuple[str, ...]] = set()
            for path in level:
                if run_help(*path).returncode != 0:
                    continue
                names = subcommands(*path)
                for words in calls:
                    if len(words) > depth and tuple(words[:depth]) == path:
                        grown.update((*path, alt) for alt in words[depth].split("|")
                                     if alt in names)
            # alternatives (``a|b``) at an earlier level: follow each of them
            for words in calls:
                if len(words) > depth and "|" in "".join(words[:depth]):
                    for prefix in itertools.product(*(w.split("|") for w in words[:depth])):
                        if prefix in level and run_help(*prefix).returncode == 0:
                            names = subcommands(*prefix)
                            grown.update((*prefix, alt) for alt in words[depth].split("|")
                                         if alt in names)
            level = grown


def box_rows(help_text: str, title: str) -> list[str]:
    """First words of the rows of one titled box (``Commands``) of a rich-formatted
    help text."""
    rows: list[str] = []
    inside = False
    for line in help_text.splitlines():
        if line.startswith("╭"):
            inside = f" {title} " in line
            continue
        if line.startswith("╰"):
            inside = False
            continue
        m = BOX_ROW.match(line) if inside else None
        if m:
            rows.append(m.group(1))
    return rows


def subcommands(*path: str) -> set[str]:
    """The commands listed by ``oceandata PATH --help`` (empty for a leaf command)."""
    return set(box_rows(cli_help(*path), "Commands"))


def options(*path: str) -> set[str]:
    """Every option spelling (long and short) in ``oceandata PATH --help``."""
    text = cli_help(*path)
    found: set[str] = set()
    for line in text.splitlines():
        if line.startswith("│"):
            # the option column: the row up to its type or description
            row = re.sub(r"^\*\s+", "", line[1:].strip())
            if row.startswith("-"):
                head = re.split(r"\s{2,}(?=[<A-Z\[])", row, maxsplit=1)[0]
                found.update(OPTION.findall(head.replace(",", " ")))
    return found


def oceandata_calls(text: str) -> list[list[str]]:
    """Every ``oceandata ...`` call in the code blocks of a Markdown text, as words."""
    calls = []
    for block in code_blocks(text):
        for line in commands_of(block):
            for part in re.split(r"\s*(?:&&|;|\|\|)\s*", line.rstrip("\\").strip()):
                try:
                    words = shlex.split(part)
                except ValueError:
                    words = part.split()
                if words and words[0].lstrip("!") == "oceandata":
                    calls.append(words[1:])
    return calls


def test_cli_help_is_parsed() -> None:
    """The parser finds real commands and options (so the checks below can fail)."""
    top = subcommands()
    assert {"alloc", "submit", "upload", "jobs", "ingest"} <= top, top
    assert "request" in subcommands("alloc")
    assert "--storage-gb" in options("alloc", "request")
    assert "-p" in options("upload") and "--project" in options("upload")
    assert "nonsense-command" not in top
    assert "--no-such-option" not in options("submit")


def test_readme_zh_starts_with_the_same_commands() -> None:
    english = code_blocks(README.read_text("utf-8"))[0]
    chinese = code_blocks(README_ZH.read_text("utf-8"))[0]
    en_cmds = [line.split("#")[0].strip() for line in commands_of(english)]
    zh_cmds = [line.split("#")[0].strip() for line in commands_of(chinese)]
    assert en_cmds == ["make up", "make test"], en_cmds
    assert zh_cmds == en_cmds
    # and the block is on the first screen: before any second-level heading
    text = README_ZH.read_text("utf-8")
    assert text.index("```") < text.index("\n## "), "the commands come before the first section"


def test_readme_zh_links_back_to_english() -> None:
    head = README_ZH.read_text("utf-8").splitlines()[:5]
    assert any("](README.md)" in line and "English" in line for line in head), head


def test_readme_links_the_chinese_readme() -> None:
    head = "\n".join(README.read_text("utf-8").splitlines()[:8])
    assert "](README.zh-CN.md)" in head and "简体中文" in head, head


def test_every_guide_exists_and_points_to_the_english_reference() -> None:
    for name in GUIDE_NAMES:
        path = GUIDES / name
        assert path.is_file(), path
        top = "\n".join(path.read_text("utf-8").splitlines()[:12])
        assert "英文" in top and re.search(r"\]\(\.\./[^)]+\.md", top), (
            f"{path.name}: the top says the English docs are the reference and links them")


@pytest.mark.parametrize("path", zh_docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    text = path.read_text("utf-8")
    targets = [a or b for a, b in LINK.findall(FENCE.sub("", text))]
    assert targets, f"{path.name} has no links"
    broken = []
    for target in targets:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue                      # http(s), mailto: not checked here
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
            continue
        if anchor and dest.suffix == ".md" and unquote(anchor) not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not broken, f"{path.name}: " + "; ".join(broken)


def check_call(words: list[str]) -> list[str]:
    """What is wrong with one ``oceandata WORDS`` call: each group's next word must be
    one of its commands (``a|b`` alternatives each), every option one of the command's.

    Parameters
    ----------
    words
        The words after ``oceandata``.

    Returns
    -------
    list of str
        One sentence per problem; empty when the call is valid.
    """
    paths: list[tuple[str, ...]] = [()]
    rest = list(words)
    while rest and all(subcommands(*path) for path in paths):
        word = rest.pop(0)
        if word in ("--help", "-h"):
            return []
        grown = []
        for path in paths:
            for alt in word.split("|"):
                if alt not in subcommands(*path):
                    return [f"oceandata {' '.join([*path, alt])}: not a command in "
                            f"`oceandata {' '.join(path)} --help`"]
                grown.append((*path, alt))
        paths = grown
    if any(subcommands(*path) for path in paths):
        return [f"oceandata {' '.join(paths[0])}: a group, a command is missing"]
    known = set().union(*(options(*path) for path in paths))
    problems = []
    for word in rest:
        if not word.startswith("-") or word == "--":
            continue
        for alt in word.split("|"):
            for opt in OPTION.findall(alt.split("=")[0]):
                if opt not in known:
                    problems.append(f"oceandata {' '.join(paths[0])} {opt}: not an option")
    return problems


def test_check_call_fails_on_invented_commands() -> None:
    assert check_call(["alloc", "request", "--storage-gb", "50"]) == []
    assert check_call(["jobs", "list|show|logs", "JOB"]) == []
    assert check_call(["alloc", "quota"]), "an invented sub-command"
    assert check_call(["frobnicate"]), "an invented command"
    assert check_call(["upload", "x.nc", "--projekt", "7"]), "an invented option"
    assert check_call(["alloc"]), "a group without its command"


@pytest.mark.parametrize("path", zh_docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_oceandata_commands_exist(path: Path) -> None:
    problems = [p for words in oceandata_calls(path.read_text("utf-8"))
                for p in check_call(words)]
    assert not problems, f"{path.name}: " + "; ".join(problems)


def test_the_chinese_docs_name_commands() -> None:
    """At least the partners' guide shows commands (so the check above has work)."""
    calls = oceandata_calls((GUIDES / "partners.md").read_text("utf-8"))
    assert {w[0] for w in calls} >= {"alloc", "upload", "ingest", "publish-request", "submit"}


def cjk_share(text: str) -> float:
    """Share of CJK characters among the letters of a text (code removed)."""
    prose = re.sub(r"\]\([^)]*\)|https?://\S+", "", without_code(text))
    cjk = sum(1 for ch in prose if "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf")
    latin = sum(1 for ch in prose if ch.isascii() and ch.isalpha())
    # a CJK character carries about a word; an English word is about five letters
    return cjk / max(1, cjk + latin / 5)


@pytest.mark.parametrize("path", zh_docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_mostly_chinese(path: Path) -> None:
    share = cjk_share(path.read_text("utf-8"))
    assert share >= 0.6, f"{path.name}: CJK share {share:.2f} of the prose"


def test_cjk_share_fails_on_english() -> None:
    assert cjk_share(README.read_text("utf-8")) < 0.1


def catalog_terms() -> dict[str, set[str]]:
    """Every message of the Chinese catalogs, lower-cased English to its translations."""
    from babel.messages.pofile import read_po

    terms: dict[str, set[str]] = {}
    for po in sorted((ROOT / "oceandata" / "locale" / "zh_Hans" / "LC_MESSAGES").glob("*.po")):
        with po.open("rb") as fh:
            for message in read_po(fh):
                if message.id and isinstance(message.id, str) and message.string:
                    terms.setdefault(message.id.lower(), set()).add(str(message.string))
    return terms


def test_glossary_uses_the_pages_terms() -> None:
    """The glossary of docs/zh/README.md gives the pages' own translation of each term
    the catalogs translate (so the guides and the pages say the same)."""
    terms = catalog_terms()
    rows = re.findall(r"^\| ([a-z][^|]*?) \| ([^|]+?) \|$", (GUIDES / "README.md").read_text("utf-8"),
                      re.M)
    assert len(rows) >= 8, rows
    checked = []
    for english, chinese in rows:
        words = [t.strip() for t in english.split(" / ")]
        cells = [c.strip() for c in chinese.split(" / ")]
        if len(cells) != len(words):
            cells = [chinese] * len(words)
        for term, cell in zip(words, cells, strict=True):
            if term.lower() in terms:
                found = terms[term.lower()]
                assert any(zh in cell for zh in found), (
                    f"glossary {term!r}: {cell!r} has none of the pages' {sorted(found)}")
                checked.append(term.lower())
    assert {"allocation", "core-hours", "usage", "workspace"} <= set(checked), checked
