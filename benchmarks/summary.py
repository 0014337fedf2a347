"""One table of every benchmark: collect the ``"summary"`` rows of the results files.

Each benchmark writes ``benchmarks/results/<name>.json`` with a top-level key
``"summary"``: a list of rows, one per target it measures, with the keys of
:data:`FIELDS`. :func:`collect` reads them all (a file that breaks the contract becomes
one row saying so), :func:`render` makes the Markdown table with the machine, the date,
the load average and where each benchmark's rows come from, and :func:`write` puts it in
``benchmarks/results/summary.md`` atomically. ``python -m benchmarks all`` runs the
benchmarks and then does the three.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._common import _write_atomic

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

#: the keys of a summary row and the types their values may have
FIELDS: dict[str, tuple[type, ...]] = {
    "benchmark": (str,), "case": (str,), "anchor": (str,), "ratio": (float, int, type(None)),
    "ratio_meaning": (str,), "peak_mib": (float, int, type(None)), "target": (str,),
    "met": (bool, type(None)), "note": (str,),
}


@dataclass(frozen=True)
class Status:
    """What happened to one benchmark in this invocation.

    ``state`` is ``ran``, ``failed``, ``skipped`` or ``not run``; ``detail`` says why
    (the failure's last line, the reason for the skip) and ``seconds`` is its wall time.
    """

    state: str
    detail: str = ""
    seconds: float | None = None


def row(benchmark: str, case: str = "", *, anchor: str = "", ratio: float | None = None,
        ratio_meaning: str = "", peak_mib: float | None = None, target: str = "",
        met: bool | None = None, note: str = "") -> dict[str, Any]:
    """A summary row with every key of :data:`FIELDS` (for the benchmarks and for here)."""
    return {"benchmark": benchmark, "case": case, "anchor": anchor,
            "ratio": None if ratio is None else float(ratio), "ratio_meaning": ratio_meaning,
            "peak_mib": None if peak_mib is None else float(peak_mib), "target": target,
            "met": met, "note": note}


def problem(entry: Any) -> str | None:
    """Why *entry* is not a valid summary row, or None if it is."""
    if not isinstance(entry, dict):
        return f"a row is a {type(entry).__name__}, not an object"
    missing = [k for k in FIELDS if k not in entry]
    if missing:
        return f"a row lacks {', '.join(missing)}"
    extra = [k for k in entry if k not in FIELDS]
    if extra:
        return f"a row has unknown keys {', '.join(extra)}"
    for key, types in FIELDS.items():
        value = entry[key]
        if isinstance(value, bool) and bool not in types:
            return f"{key} is a boolean"
        if not isinstance(value, types):
            return f"{key} is a {type(value).__name__}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{key} is {value} (not finite: use null)"
    return None


def _file_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of one results file, or one row saying what is wrong with it."""
    name = path.stem
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return [row(name, note=f"results file unreadable: {type(exc).__name__}: {exc}")]
    if not isinstance(data, dict) or "summary" not in data:
        return [row(name, note=f"no summary rows yet ({path.name} has no \"summary\" list)")]
    rows = data["summary"]
    if not isinstance(rows, list):
        return [row(name, note=f"malformed {path.name}: \"summary\" is a "
                               f"{type(rows).__name__}, not a list")]
    if not rows:
        return [row(name, note=f"no summary rows yet ({path.name} has an empty list)")]
    for i, entry in enumerate(rows):
        why = problem(entry)
        if why:
            return [row(name, note=f"malformed {path.name}: row {i + 1}: {why}")]
    return [dict(r) for r in rows]


def collect(results_dir: Path = RESULTS,
            expected: Iterable[str] = ()) -> dict[str, list[dict[str, Any]]]:
    """The summary rows of every ``<name>.json`` of *results_dir*, by *name*.

    Parameters
    ----------
    results_dir
        Folder of the results files (``benchmarks/results``).
    expected
        Benchmark names that should have a file: one without gets a row saying so.

    Returns
    -------
    dict
        Name (the file's stem) to its rows, in the order of *expected* then by name.
        A file that cannot be read, has no ``"summary"`` list or has a row breaking the
        contract gives one row saying so (``met`` None) instead of its rows.
    """
    files = {p.stem: p for p in sorted(Path(results_dir).glob("*.json"))
             if not p.name.startswith(".")}
    out: dict[str, list[dict[str, Any]]] = {}
    for name in expected:
        out[name] = (_file_rows(files[name]) if name in files else
                     [row(name, note=f"no results file yet ({name}.json)")])
    for name, path in files.items():
        if name not in out:
            out[name] = _file_rows(path)
    return out


#: top-level keys of a results file that may give the date of its run (ISO 8601)
DATE_KEYS = ("date", "finished", "started")


def _recorded_date(path: Path) -> datetime | None:
    """The run's date the results file records (:data:`DATE_KEYS`), if any."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    for key in DATE_KEYS:
        value = data.get(key)
        if isinstance(value, str):
            try:
                when = datetime.fromisoformat(value)
            except ValueError:
                continue
            return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    return None


def file_dates(results_dir: Path, names: Iterable[str]) -> dict[str, datetime | None]:
    """Date of the run behind each ``<name>.json``: the date it records, else its mtime.

    A checkout sets every file's modification time, so a date written in the file by the
    benchmark (``date``, ``finished`` or ``started``) is preferred. None where there is no
    file.
    """
    out = {}
    for name in names:
        path = Path(results_dir) / f"{name}.json"
        out[name] = None if not path.exists() else (
            _recorded_date(path) or datetime.fromtimestamp(path.stat().st_mtime, UTC))
    return out


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second (for a results file's ``date``)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def machine() -> dict[str, Any]:
    """Cores, RAM (GiB), Python version and platform of this machine."""
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (ValueError, OSError, AttributeError):
        ram = None
    return {"cores": os.cpu_count(), "ram_gib": ram, "python": platform.python_version(),
            "platform": f"{platform.system()} {platform.machine()}"}


def load() -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages, None where the system has none."""
    try:
        return tuple(round(x, 2) for x in os.getloadavg())  # type: ignore[return-value]
    except OSError:
        return None


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


def _number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ratio(value: float | None) -> str:
    """Three significant figures, without exponents for the sizes a ratio has here."""
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}" if abs(value) >= 1e-3 else f"{value:.1e}"


def _met(value: bool | None) -> str:
    return {True: "✓", False: "✗"}.get(value, "–")  # type: ignore[arg-type]


def _when(value: datetime | None) -> str:
    return "no file" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def render(rows: Mapping[str, Sequence[Mapping[str, Any]]], *,
           statuses: Mapping[str, Status] | None = None,
           dates: Mapping[str, datetime | None] | None = None,
           machine_info: Mapping[str, Any] | None = None,
           load_start: Sequence[float] | None = None,
           load_end: Sequence[float] | None = None,
           now: datetime | None = None, command: str = "python -m benchmarks all") -> str:
    """The Markdown summary table.

    Parameters
    ----------
    rows
        Benchmark name to its summary rows (:func:`collect`).
    statuses
        What happened to each benchmark in this invocation; a failed or skipped one gets
        a row saying so before its (earlier) rows. Missing names count as not run.
    dates
        Date of each benchmark's results file (:func:`file_dates`).
    machine_info
        :func:`machine` by default.
    load_start, load_end
        Load averages at the start and the end of the run.
    now
        The date in the heading (now by default).
    command
        The command line shown in the heading.

    Returns
    -------
    str
        The Markdown text, ending with a newline.
    """
    statuses = dict(statuses or {})
    dates = dict(dates or {})
    info = dict(machine_info or machine())
    now = now or datetime.now(UTC)
    ram = info.get("ram_gib")

    def fmt_load(value: Sequence[float] | None) -> str:
        return "n/a" if not value else " / ".join(f"{x:.2f}" for x in value)

    ran = [n for n in rows if statuses.get(n, Status("not run")).state == "ran"]
    failed = [n for n in rows if statuses.get(n, Status("not run")).state == "failed"]
    skipped = [n for n in rows if statuses.get(n, Status("not run")).state == "skipped"]
    earlier = [n for n in rows if n not in (*ran, *failed, *skipped)]
    lines = [
        "# Benchmarks: summary",
        "",
        f"Written by `{command}` on {now.strftime('%Y-%m-%d %H:%M UTC')}. Machine: "
        f"{info.get('platform', '?')}, {info.get('cores', '?')} cores, "
        f"{'?' if ram is None else f'{ram:.1f}'} GiB RAM, Python {info.get('python', '?')}. "
        f"Load average (1 / 5 / 15 min) at the start {fmt_load(load_start)}, at the end "
        f"{fmt_load(load_end)}.",
        "",
    ]
    if ran:
        lines.append("Run in this invocation: " + ", ".join(
            f"{n}{'' if statuses[n].seconds is None else f' ({statuses[n].seconds:.0f} s)'}"
            for n in ran) + ".")
    if failed:
        lines.append("Failed in this invocation (their rows below, if any, are from an "
                     "earlier run): " + ", ".join(failed) + ".")
    if skipped:
        lines.append("Skipped: " + "; ".join(f"{n} ({statuses[n].detail})"
                                             for n in skipped) + ".")
    if earlier:
        lines.append("Taken from an earlier run (date of the results file): " + ", ".join(
            f"{n} ({_when(dates.get(n))})" for n in earlier) + ".")
    stale = [n for n in ran if dates.get(n) is not None and statuses[n].detail]
    for n in stale:
        lines.append(f"{n}: {statuses[n].detail}.")
    lines += [
        "",
        "Ratios are measured side by side in one run of each benchmark; peak memory is "
        "as each benchmark defines it (see its own results file). Met: ✓ yes, ✗ no, "
        "– not decided (no numeric target, not measured, or not run).",
        "",
        "| benchmark | case | anchor | ratio | peak MiB | target | met | note |",
        "|---|---|---|---|---:|---|:-:|---|",
    ]
    for name, entries in rows.items():
        status = statuses.get(name)
        if status is not None and status.state in ("failed", "skipped"):
            what = "failed in this run" if status.state == "failed" else "skipped"
            lines.append(f"| {_cell(name)} | | | | | | – | {_cell(what)}: "
                         f"{_cell(status.detail)} |")
        for r in entries:
            ratio = r.get("ratio")
            meaning = r.get("ratio_meaning") or ""
            ratio_text = _ratio(ratio) + (f" ({meaning})" if ratio is not None and
                                              meaning else "")
            lines.append(
                f"| {_cell(r.get('benchmark'))} | {_cell(r.get('case'))} | "
                f"{_cell(r.get('anchor'))} | {_cell(ratio_text)} | "
                f"{_number(r.get('peak_mib'), 0)} | {_cell(r.get('target'))} | "
                f"{_met(r.get('met'))} | {_cell(r.get('note'))} |")
    return "\n".join(lines) + "\n"


def write(text: str, path: Path = RESULTS / "summary.md") -> Path:
    """Write *text* to *path* atomically; return the path."""
    _write_atomic(Path(path), text)
    return Path(path)
