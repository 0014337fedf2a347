"""The example notebooks in Chinese (``notebooks/zh``, oceandata.notebooks_i18n).

The committed Chinese set must be exactly what the generator makes now from the English
notebooks and ``notebooks.po`` (an English edit without its translation fails here); every
markdown cell has a reviewed, non-empty Chinese translation keeping the English's code,
URLs, headings and placeholders; code cells are identical, with the same ids and no
outputs. ``tests/test_notebooks.py`` executes both sets.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from oceandata import notebooks_i18n as ni

CJK = re.compile(r"[\u4e00-\u9fff]")
REPO = Path(__file__).resolve().parents[1]


def _book(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _pairs() -> list[tuple[Path, Path]]:
    return [(p, ni.NOTEBOOKS / ni.ZH_FOLDER / p.name) for p in ni.english_notebooks()]


@pytest.fixture()
def copied(tmp_path: Path) -> Path:
    """A copy of the notebooks folder (English and Chinese) and of the catalog."""
    folder = tmp_path / "notebooks"
    shutil.copytree(ni.NOTEBOOKS, folder)
    shutil.copy(ni.PO_PATH, tmp_path / "notebooks.po")
    return folder


def test_the_committed_chinese_notebooks_are_what_the_generator_makes() -> None:
    assert len(_pairs()) == 7
    assert ni.check() == [], "run: python -m oceandata.notebooks_i18n build"
    done = subprocess.run([sys.executable, "-m", "oceandata.notebooks_i18n", "check"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr


def test_every_markdown_cell_has_a_faithful_chinese_translation() -> None:
    zh = ni.translations()
    cells = list(ni.markdown_cells())
    assert len(cells) >= 30
    for cell in cells:
        chinese = zh.get(cell.text, "")
        where = f"{cell.notebook} {cell.cell_id}"
        assert chinese.strip(), f"{where}: no Chinese"
        assert CJK.search(chinese), f"{where}: the translation has no Chinese"
        assert ni.problems(cell.text, chinese) == [], where
    catalog = ni.read_catalog()
    assert not [m.id for m in catalog if m.id and m.fuzzy], "fuzzy entries in notebooks.po"
    assert not catalog.fuzzy, "the catalog's header is marked fuzzy"


def test_code_cells_are_identical_and_markdown_is_chinese() -> None:
    for english_path, zh_path in _pairs():
        english, zh = _book(english_path), _book(zh_path)
        assert [c["id"] for c in zh["cells"]] == [c["id"] for c in english["cells"]]
        assert [c["cell_type"] for c in zh["cells"]] == [c["cell_type"] for c in
                                                         english["cells"]]
        for en_cell, zh_cell in zip(english["cells"], zh["cells"], strict=True):
            if en_cell["cell_type"] == "code":
                assert zh_cell["source"] == en_cell["source"], (zh_path.name, zh_cell["id"])
                assert zh_cell["outputs"] == [] and zh_cell["execution_count"] is None
            elif en_cell["cell_type"] == "markdown":
                text = ni.source_text(zh_cell)
                assert text != ni.source_text(en_cell), (zh_path.name, zh_cell["id"])
                assert CJK.search(text), (zh_path.name, zh_cell["id"])
        assert zh["metadata"]["kernelspec"] == english["metadata"]["kernelspec"]
        assert zh["metadata"]["oceandata"]["language"] == "zh-Hans"
        assert zh["metadata"]["oceandata"]["translated_from"] == f"../{english_path.name}"


def test_the_platform_catalogs_hold_the_notebooks_domain() -> None:
    from oceandata.i18n import domains, translations

    assert "notebooks" in domains("zh")
    cell = next(ni.markdown_cells())
    assert translations("zh").gettext(cell.text) == ni.translations()[cell.text]


def test_an_english_edit_without_translation_fails(copied: Path) -> None:
    catalog = ni.read_catalog(copied.parent / "notebooks.po")
    assert ni.check(copied, catalog) == []
    path = copied / "03_marine_heatwaves.ipynb"
    book = _book(path)
    cell = next(c for c in book["cells"] if c["cell_type"] == "markdown")
    cell["source"] = ni.source_lines(ni.source_text(cell) + "\n\nA new sentence.")
    path.write_text(ni.dumps(book), encoding="utf-8")
    with pytest.raises(ni.NotebookI18nError, match=r"03_marine_heatwaves.ipynb cell-00: "
                                                   r"no translation"):
        ni.check(copied, catalog)
    with pytest.raises(ni.NotebookI18nError):
        ni.build(copied, catalog)


def test_a_code_edit_makes_the_committed_set_stale(copied: Path) -> None:
    catalog = ni.read_catalog(copied.parent / "notebooks.po")
    path = copied / "05_eof_and_enso.ipynb"
    book = _book(path)
    code = next(c for c in book["cells"] if c["cell_type"] == "code")
    code["source"] = ni.source_lines(ni.source_text(code) + "\nprint('changed')")
    path.write_text(ni.dumps(book), encoding="utf-8")
    assert ni.check(copied, catalog) == [
        "zh/05_eof_and_enso.ipynb differs from its English source and the catalog"]
    ni.build(copied, catalog)
    assert ni.check(copied, catalog) == []
    zh_code = next(c for c in _book(copied / "zh" / path.name)["cells"]
                   if c["cell_type"] == "code")
    assert ni.source_text(zh_code).endswith("print('changed')")
    (copied / "zh" / "99_gone.ipynb").write_text("{}", encoding="utf-8")
    assert ni.check(copied, catalog) == ["zh/99_gone.ipynb has no English source"]


def test_extract_keeps_translations_and_marks_a_changed_cell_for_review(copied: Path) -> None:
    po = copied.parent / "notebooks.po"
    before = po.read_bytes()
    ni.extract(copied, po)
    assert po.read_bytes() == before, "notebooks.po is not current with the notebooks"

    path = copied / "02_sst_climatology_anomalies_trends.ipynb"
    book = _book(path)
    cell = next(c for c in book["cells"] if c["cell_type"] == "markdown"
                and c["id"] == "cell-08")
    old_text = ni.source_text(cell)
    cell["source"] = ni.source_lines(old_text.replace("stays cheap", "stays quite cheap"))
    path.write_text(ni.dumps(book), encoding="utf-8")
    catalog = ni.extract(copied, po)
    changed = catalog.get(ni.source_text(cell))
    assert changed is not None and changed.fuzzy and CJK.search(changed.string)
    assert catalog.get(old_text) is None
    assert len(ni.translations(catalog)) == len(list(ni.markdown_cells(copied))) - 1
    with pytest.raises(ni.NotebookI18nError, match="cell-08: no translation"):
        ni.built(copied, catalog)
    # the file is a catalog pybabel reads (compile checks its syntax)
    done = subprocess.run([str(Path(sys.executable).parent / "pybabel"), "compile", "-i",
                           str(po), "-o", str(po.with_suffix(".mo")), "--use-fuzzy"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("chinese", "problem"), [
    ("## 绘图\n\n`mhw_plot` 绘制海表温度。", None),
    ("## 绘图\n\n`mhw_plotx` 绘制海表温度。", "inline code differs"),
    ("## 绘图\n\n绘制海表温度。", "inline code differs"),
    ("# 绘图\n\n`mhw_plot` 绘制海表温度。", "headings differ"),
    ("## 绘图\n\n`mhw_plot` 绘制，见 https://example.org/b", "URLs differ"),
    ("## 绘图\n\n`mhw_plot` 绘制\n\n```bash\nls -l\n```", "fenced code blocks differ"),
    ("  ", "no translation"),
])
def test_problems_of_a_translation(chinese: str, problem: str | None) -> None:
    english = ("## Plot\n\n`mhw_plot` draws the SST, see https://example.org/a\n\n"
               "```bash\nls\n```")
    if "https://" not in chinese and problem != "no translation":
        chinese += "，见 https://example.org/a"
    if "```" not in chinese and problem != "no translation":
        chinese += "\n\n```bash\nls\n```"
    found = ni.problems(english, chinese)
    if problem is None:
        assert found == []
    else:
        assert any(problem in p for p in found), found


def test_the_command_line_refuses_in_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "oceandata.notebooks_i18n", "translate"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 2
    assert "invalid choice" in done.stderr and "Traceback" not in done.stderr
