"""The tutorial notebooks in notebooks/ run top to bottom on the sample data.

Each notebook is executed with nbclient in a temporary copy of the folder (so nothing is
written next to the stored notebooks), with the ``python3`` kernel of this interpreter;
any error, including a failed ``assert`` of scientific sanity, fails the test. The stored
notebooks must carry no outputs (they are kept stripped in git). The Chinese notebooks
(``notebooks/zh``, generated: the same code cells, the narrative translated) are executed
the same way, in their own folder: about 1.5 minutes more, each one an honest run of what a
Chinese user opens.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb")) + sorted(NOTEBOOKS.glob("zh/*.ipynb"))
CELL_TIMEOUT = 300  # seconds per cell


def _ids() -> list[str]:
    return [p.relative_to(NOTEBOOKS).with_suffix("").as_posix() for p in PATHS]


def test_there_are_notebooks() -> None:
    assert PATHS, f"no notebooks in {NOTEBOOKS}"
    english = {p.name for p in PATHS if p.parent == NOTEBOOKS}
    assert {p.name for p in PATHS if p.parent.name == "zh"} == english, "notebooks/zh"


@pytest.mark.parametrize("path", PATHS, ids=_ids())
def test_stored_without_outputs(path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    assert book.metadata.get("kernelspec", {}).get("name") == "python3"
    for i, cell in enumerate(book.cells):
        if cell.cell_type != "code":
            continue
        assert cell.get("outputs") == [], f"{path.name} cell {i} has stored outputs"
        assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS, ids=_ids())
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("holoviews")

    work = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, work)
    # the kernel is this interpreter (jupyter_client replaces a kernelspec's "python" by
    # sys.executable); put the venv first on PATH too, for anything the notebooks spawn
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")

    copy = work / path.relative_to(NOTEBOOKS)
    book = nbformat.read(copy, as_version=4)
    client = nbclient.NotebookClient(book, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(copy.parent)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"{path.relative_to(NOTEBOOKS)} failed:\n{exc}", pytrace=False)
