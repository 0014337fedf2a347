"""Notebooks as batch jobs: a Jupyter notebook run with parameters by papermill.

``oceandata submit analysis.ipynb -p year 1997 -p region nino34`` submits the notebook
as a job like a script (same backends, account, environment, allocation checks and
charge). This module holds what is particular to notebooks:

- before anything is queued, :func:`check_notebook` reads the file as nbformat v4 (valid
  JSON, valid against the schema) and finds the parameters its cell tagged
  ``parameters`` declares; :func:`parse_parameters` checks the ``-p NAME VALUE`` triples
  against them: a name the notebook does not declare is refused (papermill itself would
  only warn and inject it anyway), as is any ``-p`` without a notebook cell tagged
  ``parameters``;
- in the job, ``python -m oceandata.jobs.notebook NOTEBOOK -p NAME VALUE ...``
  (:func:`main`) runs :func:`papermill.execute_notebook` with the values typed as
  papermill's own command line types them (:func:`resolve_type`: ``True``/``False``,
  ``None``, whole numbers, decimal numbers, otherwise text), in the job's folder, on the
  job environment's own Python kernel (a kernelspec written into the job's folder and
  named ``python3`` whatever the notebook's metadata says, so the user's own kernelspecs
  cannot send the job to another interpreter); it writes the executed notebook
  ``outputs/<name>.ipynb`` and its HTML rendering ``outputs/<name>.html`` (nbconvert),
  both also when a cell raised;
- when a cell raises, papermill's :class:`~papermill.exceptions.PapermillExecutionError`
  gives the cell's exception name and message; the runner writes them to
  ``<job dir>/.failure`` and exits 1, and the backends make that line the failed job's
  ``reason`` (:func:`failure_reason`).
"""

from __future__ import annotations

import json
import keyword
import logging
import os
import stat
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError

#: the runner module (``python -m``)
RUNNER = "oceandata.jobs.notebook"
#: the one-line error of a failed notebook, in the job's folder
FAILURE_FILE = ".failure"
#: the kernel every notebook job runs on (the job environment's Python)
KERNEL_NAME = "python3"
#: the options that give one parameter
PARAMETER_OPTIONS = ("-p", "--parameter")
_FAILURE_MAX_CHARS = 1000


def is_notebook(path: object) -> bool:
    """Whether *path* names a Jupyter notebook (``.ipynb``)."""
    return Path(str(path)).suffix.lower() == ".ipynb"


def resolve_type(value: str) -> Any:
    """Type a ``-p`` value as papermill's command line does.

    ``True``/``False`` become booleans, ``None`` None, text ``int()`` takes a whole
    number, text ``float()`` takes a decimal number (``1e3``, ``nan`` and ``inf``
    included); anything else stays text.

    Parameters
    ----------
    value
        The value as typed.

    Returns
    -------
    bool, None, int, float or str
        The value the notebook receives.

    Examples
    --------
    >>> [resolve_type(v) for v in ("1997", "0.5", "True", "None", "nino34")]
    [1997, 0.5, True, None, 'nino34']
    """
    if value in ("True", "False"):
        return value == "True"
    if value == "None":
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def check_notebook(path: Path, *, option: str = "NOTEBOOK") -> dict[str, Any] | None:
    """Read a notebook and return the parameters its cell tagged ``parameters`` sets.

    Parameters
    ----------
    path
        The notebook file.
    option
        The argument's name in messages.

    Returns
    -------
    dict or None
        Parameter name to papermill's description (``inferred_type_name``, ``default``),
        in the cell's order; None when no cell is tagged ``parameters``.

    Raises
    ------
    UsageError
        Not JSON, not a valid nbformat v4 notebook, or not a Python notebook.
    """
    import nbformat
    from papermill.translators import papermill_translators

    name = Path(path).name
    try:
        text = Path(path).read_text(encoding="utf-8")
        nb = nbformat.reads(text, as_version=4, capture_validation_error={})
        nbformat.validate(nb)
    except UnicodeDecodeError:
        raise UsageError(f"{option} {name!r} is not UTF-8 text: give a Jupyter notebook "
                         "(.ipynb) as JupyterLab saves it") from None
    except (nbformat.reader.NotJSONError, json.JSONDecodeError):
        raise UsageError(f"{option} {name!r} is not JSON: give a Jupyter notebook (.ipynb) as "
                         "JupyterLab saves it") from None
    except nbformat.ValidationError as exc:
        first = " ".join(str(exc.message).split())[:200]
        raise UsageError(f"{option} {name!r} is not a valid notebook (nbformat: {first}); "
                         "open and save it in JupyterLab") from None
    except Exception as exc:  # nbformat's readers raise several kinds on malformed files
        first = " ".join(str(exc).split())[:200]
        raise UsageError(f"{option} {name!r} is not a valid notebook ({type(exc).__name__}: "
                         f"{first}); open and save it in JupyterLab") from None
    language = (nb.metadata.get("kernelspec", {}).get("language")
                or nb.metadata.get("language_info", {}).get("name") or "python")
    if str(language).lower() != "python":
        raise UsageError(f"{option} {name!r} is a {language} notebook; notebook jobs run "
                         "Python notebooks (the job environment's python3 kernel)")
    cell = next((c for c in nb.cells if "parameters" in c.metadata.get("tags", [])), None)
    if cell is None:
        return None
    translator = papermill_translators.find_translator(KERNEL_NAME, "python")
    try:
        return {p.name: p._asdict() for p in translator.inspect(cell)}
    except Exception as exc:  # papermill's reading of the cell: any failure is the cell's
        raise UsageError(f"{option} {name!r}: papermill cannot read its cell tagged "
                         f"'parameters' ({type(exc).__name__}); keep it to assignments "
                         "such as year = 1997") from None


def parse_parameters(tokens: Sequence[str]) -> list[tuple[str, str]]:
    """Read ``-p NAME VALUE`` triples.

    Parameters
    ----------
    tokens
        ``["-p", "year", "1997", "-p", "region", "nino34"]`` (``--parameter`` too).

    Returns
    -------
    list of (str, str)
        The names and values as typed, in order.

    Raises
    ------
    UsageError
        Anything that is not a run of ``-p NAME VALUE`` with NAME a Python identifier.
    """
    pairs: list[tuple[str, str]] = []
    tokens = list(tokens)
    i = 0
    while i < len(tokens):
        option = tokens[i]
        if option not in PARAMETER_OPTIONS:
            raise UsageError(f"{option!r}: a notebook takes no arguments; give its parameters "
                             "as -p NAME VALUE, e.g. -p year 1997")
        if len(tokens) - i < 3:
            rest = " ".join(tokens[i + 1:])
            raise UsageError(f"{option} {rest}".rstrip() + ": give a NAME and a VALUE, e.g. "
                             "-p year 1997")
        name, value = tokens[i + 1], tokens[i + 2]
        if not name.isidentifier() or keyword.iskeyword(name):
            raise UsageError(f"{option} {name!r}: a parameter's NAME is a Python name "
                             "(letters, digits, '_'), e.g. -p year 1997")
        pairs.append((name, value))
        i += 3
    return pairs


def parameter_args(pairs: Iterable[tuple[str, str]]) -> list[str]:
    """The job arguments of parameters: ``["-p", NAME, VALUE, ...]``."""
    args: list[str] = []
    for name, value in pairs:
        args += ["-p", str(name), str(value)]
    return args


def check_parameters(path: Path, tokens: Sequence[str]) -> list[str]:
    """Check a notebook and its ``-p`` triples together; return the job's arguments.

    Parameters
    ----------
    path
        The notebook.
    tokens
        Its ``-p NAME VALUE`` triples.

    Returns
    -------
    list of str
        ``["-p", NAME, VALUE, ...]``, as the job runs them.

    Raises
    ------
    UsageError
        A bad notebook or ``-p`` (:func:`check_notebook`, :func:`parse_parameters`), a
        ``-p`` without a cell tagged ``parameters``, or a name the cell does not set.
    """
    declared = check_notebook(path)
    pairs = parse_parameters(tokens)
    if pairs and declared is None:
        raise UsageError(f"-p {pairs[0][0]}: {Path(path).name!r} has no cell tagged "
                         "'parameters'; tag the cell that sets the defaults (JupyterLab: "
                         "Property Inspector, Cell Tags) or submit without -p")
    for name, _ in pairs:
        if name not in (declared or {}):
            known = ", ".join(declared or {}) or "none"
            raise UsageError(f"-p {name}: {Path(path).name!r} declares no parameter {name!r} "
                             f"in its cell tagged 'parameters'; it declares: {known}")
    return parameter_args(pairs)


def failure_reason(workdir: Path) -> str | None:
    """The failed notebook's one-line error from ``<job dir>/.failure``, if written.

    The folder is the job owner's: the file is opened without following links, must be a
    small regular file, and is read as one line of at most 1000 characters.

    Parameters
    ----------
    workdir
        The job's folder.

    Returns
    -------
    str or None
        ``"ZeroDivisionError: division by zero (cell In [3])"``, or None.
    """
    try:
        fd = os.open(Path(workdir) / FAILURE_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, 4 * _FAILURE_MAX_CHARS)
    except OSError:
        return None
    finally:
        os.close(fd)
    text = " ".join(data.decode(errors="replace").split())
    return text[:_FAILURE_MAX_CHARS] or None


# ---------------------------------------------------------------------------- the runner


def _job_kernel(folder: Path) -> None:
    """Make the job environment's Python the ``python3`` kernel of this process's
    papermill: a kernelspec under *folder* first on ``JUPYTER_PATH``; Jupyter's runtime
    files under *folder* too, not in a home that may be missing (nbclient writes the
    kernel's connection file, 0600, to the temporary folder)."""
    from ipykernel.kernelspec import write_kernel_spec

    spec = folder / "kernels" / KERNEL_NAME
    if not (spec / "kernel.json").exists():
        write_kernel_spec(spec, overrides={"display_name": "Python 3 (oceandata job)"})
    runtime = folder / "runtime"
    runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = [str(folder), *filter(None, os.environ.get("JUPYTER_PATH", "").split(os.pathsep))]
    os.environ["JUPYTER_PATH"] = os.pathsep.join(paths)
    os.environ["JUPYTER_RUNTIME_DIR"] = str(runtime)


def _render_html(executed: Path) -> Path:
    """Write ``<name>.html`` beside the executed notebook (nbconvert's HTML exporter)."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    target = executed.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def run(notebook: Path, tokens: Sequence[str], outputs: Path, cwd: Path) -> int:
    """Execute *notebook* with its parameters; keep the executed notebook and its HTML.

    Parameters
    ----------
    notebook
        The job's copy of the notebook.
    tokens
        ``-p NAME VALUE`` triples (checked at submission; typed by :func:`resolve_type`).
    outputs
        Where ``<name>.ipynb`` and ``<name>.html`` go.
    cwd
        The folder the notebook runs in (the job's); ``.failure`` and the kernelspec go
        here.

    Returns
    -------
    int
        0 when every cell ran, 1 when one raised (its error in ``cwd/.failure``).
    """
    import papermill
    from papermill.exceptions import PapermillException, PapermillExecutionError

    parameters = {name: resolve_type(value) for name, value in parse_parameters(tokens)}
    outputs.mkdir(parents=True, exist_ok=True)
    (cwd / FAILURE_FILE).unlink(missing_ok=True)
    _job_kernel(cwd / ".jupyter")
    executed = outputs / notebook.name
    failure: str | None = None
    try:
        papermill.execute_notebook(str(notebook), str(executed), parameters=parameters,
                                   kernel_name=KERNEL_NAME, language="python", cwd=str(cwd),
                                   progress_bar=False, log_output=True)
    except PapermillExecutionError as exc:
        failure = f"{exc.ename}: {exc.evalue} (cell In [{exc.exec_count}])"
    except PapermillException as exc:
        failure = f"{type(exc).__name__}: {exc}"
    finally:
        if executed.exists():
            try:
                print(f"oceandata: wrote {_render_html(executed)}", flush=True)
            except Exception as exc:  # the executed notebook stays, whatever the HTML does
                print(f"oceandata: no HTML rendering: {type(exc).__name__}: {exc}", flush=True)
    if failure is None:
        return 0
    (cwd / FAILURE_FILE).write_text(failure + "\n", encoding="utf-8")
    print(f"oceandata: notebook failed: {failure}", file=sys.stderr, flush=True)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m oceandata.jobs.notebook NOTEBOOK [-p NAME VALUE]...`` inside a job.

    Outputs go to ``$OCEANDATA_OUTPUT_DIR`` (default ``./outputs``); the notebook runs in
    the current folder (the job's).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(f"usage: python -m {RUNNER} NOTEBOOK [-p NAME VALUE]...", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    cwd = Path.cwd()
    outputs = Path(os.environ.get("OCEANDATA_OUTPUT_DIR") or cwd / "outputs")
    return run(Path(args[0]).resolve(), args[1:], outputs, cwd)


if __name__ == "__main__":
    sys.exit(main())
