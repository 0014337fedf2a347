"""The example notebooks' narrative in Simplified Chinese: ``notebooks/zh`` from the English
notebooks and one gettext catalog.

The English notebooks (``notebooks/*.ipynb``) are the sources. Each markdown cell's whole
text is one message of the ``notebooks`` domain
(``oceandata/locale/zh_Hans/LC_MESSAGES/notebooks.po``): msgid the English, msgstr the
Chinese. ``notebooks/zh/<same name>.ipynb`` is generated (and committed): the same cells
with the same ids, code cells identical and without outputs, each markdown cell replaced by
its translation, the notebook's ``metadata.oceandata`` naming the language and the source.

Commands (``python -m oceandata.notebooks_i18n ...``):

``extract``
    refresh ``notebooks.po`` from the notebooks as ``pybabel update`` would: new cells get
    an empty msgstr, a changed cell gets its old translation marked fuzzy (to review),
    cells gone are dropped; translations kept.
``build``
    write ``notebooks/zh``; refuses (one line per cell, exit 1) while a markdown cell has
    no reviewed translation, or a translation whose code, URLs, headings or placeholders
    differ from the English.
``check``
    exit 1 when ``notebooks/zh`` differs from what ``build`` would write now.

A translation must keep the English's ``inline code``, fenced code blocks, URLs, heading
levels and placeholders exactly (:func:`problems`): code is run or copied by readers, and
it is the same in both languages.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import re
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

__all__ = ["Cell", "build", "built", "check", "extract", "main", "markdown_cells",
           "problems", "read_catalog", "translations"]

HERE = Path(__file__).resolve().parent
#: the English notebooks (the sources)
NOTEBOOKS = HERE.parent / "notebooks"
#: the folder of the Chinese notebooks, under :data:`NOTEBOOKS`
ZH_FOLDER = "zh"
#: the catalog of the notebooks' narrative
PO_PATH = HERE / "locale" / "zh_Hans" / "LC_MESSAGES" / "notebooks.po"
#: the language tag written in the Chinese notebooks' metadata (BCP 47)
LANGUAGE_TAG = "zh-Hans"
GENERATOR = "python -m oceandata.notebooks_i18n build"

_FENCE = re.compile(r"^(```|~~~)[^\n]*\n.*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_INLINE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_URL = re.compile(r"\b(?:https?|ftp)://[^\s)>\]]+")
_HEADING = re.compile(r"^(#{1,6})[ \t]", re.MULTILINE)
_PLACEHOLDER = re.compile(r"%\([^)]*\)[-#0 +]*\d*(?:\.\d+)?[a-zA-Z]|%[sdfr]|\{[^{}\s]*\}")


class NotebookI18nError(Exception):
    """A notebook or catalog problem, in one line per problem."""


@dataclass(frozen=True)
class Cell:
    """One markdown cell of an English notebook."""

    notebook: str
    cell_id: str
    text: str


def source_text(cell: dict[str, Any]) -> str:
    """A cell's source as one string (nbformat keeps a list of lines or a string)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def source_lines(text: str) -> list[str]:
    """*text* as nbformat stores a source: lines keeping their ends."""
    return text.splitlines(keepends=True)


def english_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    """The English notebooks, sorted by name."""
    return sorted(folder.glob("*.ipynb"))


def _load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NotebookI18nError(f"{path}: not a readable notebook ({exc})") from None


def markdown_cells(folder: Path = NOTEBOOKS) -> Iterator[Cell]:
    """Every markdown cell of the English notebooks, in order."""
    for path in english_notebooks(folder):
        for cell in _load(path).get("cells", []):
            if cell.get("cell_type") == "markdown" and source_text(cell).strip():
                yield Cell(path.name, str(cell.get("id", "")), source_text(cell))


# --------------------------------------------------------------------------- checks


def _code_and_text(text: str) -> tuple[list[str], list[str], str]:
    """The fenced blocks, the inline code spans and the rest (prose) of markdown *text*."""
    fences = [m.group(0).strip() for m in _FENCE.finditer(text)]
    prose = _FENCE.sub("\n", text)
    spans = [m.group(2).strip() for m in _INLINE.finditer(prose)]
    return fences, spans, _INLINE.sub(" ", prose)


def problems(english: str, chinese: str) -> list[str]:
    """What makes *chinese* not a faithful translation of markdown *english*: empty, or its
    fenced code, inline code, URLs, heading levels or placeholders differ.

    >>> problems("## Plot\\n\\n`mhw_plot` draws", "## 绘图\\n\\n`mhw_plot` 绘制")
    []
    >>> problems("Use `a`", "使用 `b`")
    ["inline code differs: missing ['a'], extra ['b']"]
    """
    if not chinese.strip():
        return ["no translation"]
    found: list[str] = []
    en_fences, en_spans, en_prose = _code_and_text(english)
    zh_fences, zh_spans, zh_prose = _code_and_text(chinese)
    if en_fences != zh_fences:
        found.append("fenced code blocks differ (they must be copied unchanged)")
    for what, en, zh in (
            ("inline code", en_spans, zh_spans),
            ("URLs", _URL.findall(en_prose), _URL.findall(zh_prose)),
            ("placeholders", _PLACEHOLDER.findall(en_prose), _PLACEHOLDER.findall(zh_prose))):
        if Counter(en) != Counter(zh):
            missing = sorted((Counter(en) - Counter(zh)).elements())
            extra = sorted((Counter(zh) - Counter(en)).elements())
            found.append(f"{what} differs: missing {missing}, extra {extra}")
    if _HEADING.findall(en_prose) != _HEADING.findall(zh_prose):
        found.append("headings differ (the same levels, in the same order)")
    return found


# --------------------------------------------------------------------------- catalog


def read_catalog(path: Path = PO_PATH) -> Catalog:
    """The ``notebooks`` catalog (an empty one when the file does not exist yet)."""
    if not path.exists():
        return Catalog(locale="zh_Hans", domain="notebooks", project="oceandata",
                       copyright_holder="oceandata", msgid_bugs_address="EMAIL@ADDRESS",
                       language_team="oceandata <zh_Hans>", fuzzy=False)
    with path.open("rb") as fh:
        return read_po(fh, locale="zh_Hans", domain="notebooks")


def translations(catalog: Catalog | None = None) -> dict[str, str]:
    """msgid → msgstr of the catalog's reviewed (not fuzzy), non-empty translations."""
    catalog = read_catalog() if catalog is None else catalog
    return {m.id: m.string for m in catalog
            if m.id and isinstance(m.id, str) and m.string and not m.fuzzy}


def extract(folder: Path = NOTEBOOKS, path: Path = PO_PATH) -> Catalog:
    """Refresh the catalog at *path* from the markdown cells of *folder*'s notebooks (as
    ``pybabel extract`` + ``pybabel update``) and write it; return it."""
    old = read_catalog(path)
    template = Catalog(project="oceandata", copyright_holder="oceandata",
                       msgid_bugs_address="EMAIL@ADDRESS")
    for cell in markdown_cells(folder):
        existing = template.get(cell.text)
        if existing is not None:
            existing.locations.append((f"notebooks/{cell.notebook}", None))
            existing.auto_comments.append(f"cell {cell.cell_id}")
            continue
        template.add(cell.text, locations=[(f"notebooks/{cell.notebook}", None)],
                     auto_comments=[f"cell {cell.cell_id}"])
    unchanged = {m.id for m in old if m.id} == {m.id for m in template if m.id}
    if unchanged and path.exists():  # keep the date of the last real change
        template.creation_date = old.creation_date
    else:
        template.creation_date = dt.datetime.now(dt.UTC)
    old.update(template, update_header_comment=False)
    old.obsolete.clear()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        write_po(fh, old, width=80, ignore_obsolete=True)
    return old


# --------------------------------------------------------------------------- notebooks


def _translated(book: dict[str, Any], name: str, zh: dict[str, str]) -> tuple[
        dict[str, Any], list[str]]:
    """The Chinese version of English notebook *book* and the problems met."""
    out = copy.deepcopy(book)
    errors: list[str] = []
    for cell in out.get("cells", []):
        kind = cell.get("cell_type")
        if kind == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        elif kind == "markdown":
            english = source_text(cell)
            if not english.strip():
                continue
            chinese = zh.get(english, "")
            where = f"{name} {cell.get('id', '?')}"
            for problem in problems(english, chinese):
                errors.append(f"{where}: {problem} ({english.splitlines()[0][:60]!r})")
            cell["source"] = source_lines(chinese or english)
    out.setdefault("metadata", {})["oceandata"] = {
        "language": LANGUAGE_TAG,
        "translated_from": f"../{name}",
        "generated_by": GENERATOR,
    }
    return out, errors


def dumps(book: dict[str, Any]) -> str:
    """A notebook as nbformat writes it (one-space indent, sorted keys, UTF-8)."""
    return json.dumps(book, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def built(folder: Path = NOTEBOOKS, catalog: Catalog | None = None) -> dict[str, str]:
    """What ``build`` writes: file name → text of each Chinese notebook.

    Raises
    ------
    NotebookI18nError
        One line per markdown cell without a faithful reviewed translation.
    """
    zh = translations(catalog)
    out: dict[str, str] = {}
    errors: list[str] = []
    for path in english_notebooks(folder):
        book, found = _translated(_load(path), path.name, zh)
        errors.extend(found)
        out[path.name] = dumps(book)
    if errors:
        raise NotebookI18nError("\n".join(errors))
    return out


def build(folder: Path = NOTEBOOKS, catalog: Catalog | None = None) -> list[Path]:
    """Write ``<folder>/zh``; notebooks there without an English source are removed."""
    texts = built(folder, catalog)
    target = folder / ZH_FOLDER
    target.mkdir(exist_ok=True)
    written = []
    for name, text in texts.items():
        path = target / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    for stale in target.glob("*.ipynb"):
        if stale.name not in texts:
            stale.unlink()
    return written


def check(folder: Path = NOTEBOOKS, catalog: Catalog | None = None) -> list[str]:
    """The differences between ``<folder>/zh`` and what ``build`` would write (one line
    each); empty when it is current."""
    texts = built(folder, catalog)
    target = folder / ZH_FOLDER
    found = []
    for name, text in texts.items():
        path = target / name
        if not path.exists():
            found.append(f"{ZH_FOLDER}/{name} is missing")
        elif path.read_text(encoding="utf-8") != text:
            found.append(f"{ZH_FOLDER}/{name} differs from its English source and the catalog")
    found.extend(f"{ZH_FOLDER}/{p.name} has no English source"
                 for p in sorted(target.glob("*.ipynb")) if p.name not in texts)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m oceandata.notebooks_i18n {extract,build,check}``."""
    parser = argparse.ArgumentParser(
        prog="python -m oceandata.notebooks_i18n",
        description="The example notebooks in Chinese: notebooks/zh from notebooks/*.ipynb "
                    "and oceandata/locale/zh_Hans/LC_MESSAGES/notebooks.po.")
    parser.add_argument("command", choices=("extract", "build", "check"),
                        help="extract: refresh the .po from the notebooks; build: write "
                             "notebooks/zh; check: fail when notebooks/zh is not current")
    args = parser.parse_args(argv)
    try:
        if args.command == "extract":
            catalog = extract()
            todo = sum(1 for m in catalog if m.id and (not m.string or m.fuzzy))
            print(f"{PO_PATH}: {len(catalog)} messages, {todo} to translate or review")
        elif args.command == "build":
            paths = build()
            print(f"{len(paths)} notebooks in {NOTEBOOKS / ZH_FOLDER}")
        else:
            stale = check()
            if stale:
                print("\n".join(stale) + f"\nrun: {GENERATOR}", file=sys.stderr)
                return 1
            print(f"{NOTEBOOKS / ZH_FOLDER} is current")
    except NotebookI18nError as exc:
        print(f"{exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
