"""Check NetCDF source files against the CF and ACDD conventions before ingestion.

:func:`check_sources` runs the IOOS `compliance-checker
<https://github.com/ioos/compliance-checker>`_ (its Python API: ``CheckSuite``, as the
``compliance-checker`` command does) on each file and returns a :class:`ComplianceReport`:
per file and per suite, the points scored out of the points possible and every failed
check with its priority. :func:`require_no_high_failures` turns high-priority failures
into a one-line :class:`~oceandata.errors.DataError` for an ingestion pipeline.

Suite versions
--------------
The short names are pinned so that scores do not change silently when the checker is
upgraded (the checker's own unversioned names follow its newest suite):

``cf``
    ``cf:1.11``, the newest CF suite that compliance-checker 6.1 registers (it also
    registers ``cf:1.6`` to ``cf:1.10``). Files declaring an older ``Conventions`` (e.g.
    COBE-SST2's ``CF-1.2``) therefore get a medium-priority failure for the version; the
    other checks are those of CF 1.11.
``acdd``
    ``acdd:1.3``, the current Attribute Convention for Data Discovery.

Any versioned name the installed checker registers (``cf:1.8``, ``acdd:1.1``,
``ioos:1.2``...) may be asked for instead; if a pinned version is missing from an older
checker, its newest version of that suite is used. The report records the versions run.

Priorities are compliance-checker's weights: 3 *high* (required by the convention),
2 *medium* (recommended), 1 *low* (suggested). A check "fails" when it scores fewer
points than it could; its messages say why.

Unreadable sources
------------------
Files are opened read-only with :mod:`netCDF4` (never through compliance-checker's
loader, which would run ``ncgen`` on CDL files and write beside them), so checking leaves
no file behind. Before opening, each file's size is compared with the size it declares:
a classic-format (``CDF``) file with its header (netCDF-C would read the missing part as
zeros without complaint), a NetCDF-4 file with the end-of-file address in its HDF5
superblock. A truncated file, one that cannot be opened, or one whose data cannot be
decoded while a check reads them is a :class:`~oceandata.errors.DataError` naming the
file; every file is tried before raising, and the message names the others too.

Checking is quiet: whatever the checker prints is captured, and its warnings are
silenced.

Reading the data once
---------------------
Of all the checks, only CF's ``actual_range`` check (§2.5.1: the attribute must equal the
minimum and maximum of the data) reads data, and compliance-checker reads each variable
that has the attribute whole, four times over. Here it reads at most one bounded slab at
a time instead: each variable with ``actual_range`` is streamed once along its first
dimension (:data:`SLAB_ELEMENTS` values at a time) through netCDF4 with its usual masking
and scaling, and its minimum and maximum are handed to the checker's own
``check_actual_range``, so its verdicts and messages are the checker's. An ingest passes
*ranges* instead (:func:`check_sources`): the minimum and maximum of every source
variable, seen while the variable was written (:mod:`oceandata.ingest.pipeline`), so the
data are not read again at all. A range from the ingest is used only where it is what
netCDF4 would have masked: the variable declares a ``_FillValue`` and no
``valid_min``/``valid_max``/``valid_range`` (netCDF4 also masks values outside those,
and the type's default fill value when ``_FillValue`` is absent; xarray does neither), so
other variables are streamed. One difference remains: NaN values that are not the
declared fill value count as missing in the ingest's range (xarray's view, and the store
keeps them as missing) while the checker's full read would report the range as
inconsistent.

compliance-checker also rebuilds the CF standard name table (a 4 MB XML file) for every
file and suite; it is built once per process here, and looked up by name instead of by
list scans, which does not change any verdict. With both, checking the 60 yearly COBE
files takes about 1 s instead of 8 s (:doc:`docs/ingest.md`).

Examples
--------
>>> from oceandata import sample_data
>>> from oceandata.ingest.compliance import check_sources, require_no_high_failures
>>> report = check_sources([sample_data.fetch("cobe_sst2_1950")])  # doctest: +SKIP
>>> print(report.summary())  # doctest: +SKIP
/.../year1950.nc  cf:1.11  138/141 (97.9%)  failed: 1 high, 2 medium, 0 low
/.../year1950.nc  acdd:1.3  16/83 (19.3%)  failed: 2 high, 4 medium, 4 low
>>> require_no_high_failures(report, "year1950.compliance.json")  # doctest: +SKIP
Traceback (most recent call last):
oceandata.errors.DataError: 3 high-priority compliance failures in 1 file (/.../year1950.nc
[cf:1.11, acdd:1.3]); first: '§2.5 Variables' (cf:1.11) in /.../year1950.nc: actual_range
elements of 'sst' inconsistent with its min/max values; full report: year1950.compliance.json
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import io
import json
import os
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, UsageError, suggest

__all__ = [
    "DEFAULT_SUITES",
    "PINNED_SUITES",
    "SLAB_ELEMENTS",
    "ComplianceReport",
    "FailedCheck",
    "SuiteResult",
    "check_sources",
    "require_no_high_failures",
]

#: Suites run by default.
DEFAULT_SUITES: tuple[str, ...] = ("cf", "acdd")

#: The version a short suite name stands for (see the module docstring).
PINNED_SUITES: dict[str, str] = {"cf": "cf:1.11", "acdd": "acdd:1.3"}

#: compliance-checker's weights, by priority name.
PRIORITIES: dict[str, int] = {"high": 3, "medium": 2, "low": 1}

#: Format version of :meth:`ComplianceReport.as_dict`.
REPORT_FORMAT = 1

#: At most this many files/suites are named in one error line.
_MAX_NAMED = 3

#: Values read at a time when a variable's minimum and maximum are streamed for the
#: ``actual_range`` check (4 Mi values: 32 MiB of float64 at most).
SLAB_ELEMENTS = 2**22

#: ``(minimum, maximum)`` of a variable's valid values, or None when none is valid.
Range = tuple[float, float] | None


def _priority(weight: int) -> str:
    """``high``/``medium``/``low`` for a compliance-checker weight (3/2/1)."""
    if weight >= PRIORITIES["high"]:
        return "high"
    return "medium" if weight == PRIORITIES["medium"] else "low"


@dataclass(frozen=True)
class FailedCheck:
    """One check of a suite that scored fewer points than it could.

    Attributes
    ----------
    name
        The check's name as compliance-checker reports it, e.g. ``§2.6 Attributes`` (CF)
        or ``Global Attributes`` (ACDD, one per priority).
    priority
        ``high``, ``medium`` or ``low``.
    scored, possible
        Points scored and points possible.
    messages
        Why it failed, one message per problem.
    """

    name: str
    priority: str
    scored: int
    possible: int
    messages: tuple[str, ...]

    @property
    def weight(self) -> int:
        """compliance-checker's weight: 3 (high), 2 (medium) or 1 (low)."""
        return PRIORITIES[self.priority]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"name": self.name, "priority": self.priority, "weight": self.weight,
                "scored": self.scored, "possible": self.possible,
                "messages": list(self.messages)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FailedCheck:
        """Rebuild from :meth:`as_dict` output."""
        return cls(name=data["name"], priority=data["priority"], scored=int(data["scored"]),
                   possible=int(data["possible"]), messages=tuple(data["messages"]))


@dataclass(frozen=True)
class SuiteResult:
    """The result of one suite on one file.

    Attributes
    ----------
    file
        The file as given to :func:`check_sources`.
    suite
        The versioned suite run, e.g. ``cf:1.11``.
    scored_points, possible_points
        Total points scored and possible (checks that do not apply count 0 of 0).
    failures
        Failed checks, high priority first, then in the checker's order.
    errors
        Checks that crashed inside compliance-checker (a checker bug, not the file's
        fault): check method name -> ``"ExceptionType: message"``. They score nothing.
    seconds
        Time the suite took on this file.
    """

    file: str
    suite: str
    scored_points: int
    possible_points: int
    failures: tuple[FailedCheck, ...]
    errors: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def count(self, priority: str) -> int:
        """Number of failed checks of *priority* (``high``, ``medium`` or ``low``)."""
        return sum(f.priority == priority for f in self.failures)

    @property
    def percent(self) -> float:
        """Points scored as a percentage of the points possible (100 if nothing applied)."""
        if not self.possible_points:
            return 100.0
        return 100.0 * self.scored_points / self.possible_points

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "file": self.file,
            "suite": self.suite,
            "scored_points": self.scored_points,
            "possible_points": self.possible_points,
            "failed": {p: self.count(p) for p in PRIORITIES},
            "failures": [f.as_dict() for f in self.failures],
            "errors": dict(self.errors),
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SuiteResult:
        """Rebuild from :meth:`as_dict` output."""
        return cls(file=data["file"], suite=data["suite"],
                   scored_points=int(data["scored_points"]),
                   possible_points=int(data["possible_points"]),
                   failures=tuple(FailedCheck.from_dict(f) for f in data["failures"]),
                   errors=dict(data.get("errors", {})),
                   seconds=float(data.get("seconds", 0.0)))


@dataclass
class ComplianceReport:
    """Compliance of a set of source files with a set of suites.

    Attributes
    ----------
    results
        One :class:`SuiteResult` per file and suite, files in the order given, suites in
        the order asked.
    checker_version
        The compliance-checker version that produced the results.
    created
        When the checks ran (UTC, ISO 8601).
    path
        Where :meth:`write` last wrote the report, or None (not part of the report's
        content: two reports compare equal whether or not they were written).
    """

    results: list[SuiteResult]
    checker_version: str
    created: str
    path: Path | None = field(default=None, compare=False)

    @property
    def files(self) -> list[str]:
        """The files checked, in order."""
        return list(dict.fromkeys(r.file for r in self.results))

    @property
    def suites(self) -> list[str]:
        """The versioned suites run, in order."""
        return list(dict.fromkeys(r.suite for r in self.results))

    def result(self, file: str | os.PathLike[str], suite: str) -> SuiteResult:
        """The result of *suite* on *file*.

        Parameters
        ----------
        file
            A file as given to :func:`check_sources`.
        suite
            A versioned (``cf:1.11``) or short (``cf``) suite name.

        Raises
        ------
        UsageError
            No such file or suite in this report.
        """
        key = os.fspath(file)
        for r in self.results:
            if r.file == key and (r.suite == suite or r.suite.split(":", 1)[0] == suite):
                return r
        raise UsageError(f"no result for {key!r} with suite {suite!r} in this compliance "
                         f"report; it has files {self.files} and suites {self.suites}")

    @property
    def high_failures(self) -> list[tuple[str, str, str, list[str]]]:
        """Every high-priority failure as ``(file, suite, check name, messages)``."""
        return [(r.file, r.suite, f.name, list(f.messages))
                for r in self.results for f in r.failures if f.priority == "high"]

    def as_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (what :meth:`write` saves)."""
        return {
            "format": REPORT_FORMAT,
            "checker": "compliance-checker",
            "checker_version": self.checker_version,
            "created": self.created,
            "suites": self.suites,
            "high_failures": len(self.high_failures),
            "results": [r.as_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ComplianceReport:
        """Rebuild a report from :meth:`as_dict` output (e.g. a file :meth:`write` wrote).

        Raises
        ------
        DataError
            *data* is not a compliance report of a known format.
        """
        try:
            if data["format"] != REPORT_FORMAT:
                raise KeyError("format")
            return cls(results=[SuiteResult.from_dict(r) for r in data["results"]],
                       checker_version=str(data["checker_version"]),
                       created=str(data["created"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"not a compliance report of format {REPORT_FORMAT}: bad or "
                            f"missing field {exc}") from None

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> ComplianceReport:
        """Read a report :meth:`write` wrote.

        Raises
        ------
        DataError
            The file is missing, not JSON, or not a compliance report.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read compliance report {os.fspath(path)}: {exc}") from None
        try:
            report = cls.from_dict(data)
        except DataError as exc:
            raise DataError(f"{os.fspath(path)}: {exc}") from None
        report.path = Path(path)
        return report

    def summary(self) -> str:
        """One line per file and suite: points, percentage and failed checks by priority."""
        lines = []
        for r in self.results:
            line = (f"{r.file}  {r.suite}  {r.scored_points}/{r.possible_points} "
                    f"({r.percent:.1f}%)  failed: "
                    + ", ".join(f"{r.count(p)} {p}" for p in PRIORITIES))
            if r.errors:
                line += f"  ({len(r.errors)} checks crashed in compliance-checker)"
            lines.append(line)
        return "\n".join(lines)

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the report as JSON, atomically.

        The JSON goes to a temporary name in the same folder, which is then renamed over
        *path*: a reader never sees half a report, and a failed write leaves nothing.

        Parameters
        ----------
        path
            The JSON file to write (replaced if it exists); its folder must exist.

        Returns
        -------
        pathlib.Path
            *path*, also kept in :attr:`path`.

        Raises
        ------
        UsageError
            The folder of *path* does not exist.
        DataError
            The file cannot be written.
        """
        target = Path(path)
        if not target.parent.is_dir():
            raise UsageError(f"cannot write compliance report {target}: folder "
                             f"{target.parent} does not exist; create it or pick another path")
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        text = json.dumps(self.as_dict(), indent=2, ensure_ascii=False) + "\n"
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
        except OSError as exc:
            raise DataError(f"cannot write compliance report {target}: {exc}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self.path = target
        return target


# --------------------------------------------------------------------------- checker


@lru_cache(maxsize=1)
def _checkers() -> dict[str, Any]:
    """compliance-checker's registered suites, loaded once and quietly."""
    from compliance_checker.suite import CheckSuite

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CheckSuite.load_all_available_checkers()
    return dict(CheckSuite.checkers)


def _resolve_suites(suites: Iterable[str]) -> list[str]:
    """Versioned names of *suites*, deduplicated, in order (see the module docstring)."""
    checkers = _checkers()
    versioned = sorted(name for name in checkers if ":" in name)
    resolved: list[str] = []
    for name in suites:
        key = str(name).strip().lower()
        if key in PINNED_SUITES and PINNED_SUITES[key] in checkers:
            key = PINNED_SUITES[key]
        elif key in checkers and ":" not in key:
            key = f"{key}:{checkers[key]._cc_spec_version}"
        if key not in checkers:
            raise UsageError(f"unknown compliance suite {name!r}.{suggest(key, versioned)} "
                             f"Valid: {', '.join(sorted(PINNED_SUITES))} or one of "
                             f"{', '.join(versioned)}")
        if key not in resolved:
            resolved.append(key)
    if not resolved:
        raise UsageError("no compliance suite given; pass e.g. suites=('cf', 'acdd')")
    return resolved


# --------------------------------------------------------------------------- fast paths


@lru_cache(maxsize=4)
def _parsed_table(location: str | None, env: str | None) -> Any:
    """compliance-checker's standard name table, parsed once per file (read only)."""
    table = _ORIGINAL["StandardNameTable"](location)
    table._entry_nodes = {node.get("id"): node for node in table._root.iter("entry")}
    aliases: dict[str, str | None] = {}
    for node in table._root.iter("alias"):
        ids = node.xpath("entry_id")
        aliases[node.get("id")] = ids[0].text if len(ids) == 1 else None
    table._alias_entry = aliases
    return table


def _shared_table_class() -> type:
    """A StandardNameTable that shares one parsed tree and looks names up in dicts.

    Each instance has its own name lists (IOOS's checker extends them in place); while
    they are unchanged, lookups use the shared dicts, else the checker's own code.
    """
    base = _ORIGINAL["StandardNameTable"]

    class SharedStandardNameTable(base):  # type: ignore[misc, valid-type]
        def __init__(self, cached_location: str | None = None) -> None:
            env = os.environ.get("CF_STANDARD_NAME_TABLE")
            parsed = _parsed_table(cached_location, env if env and os.path.exists(env)
                                   else None)
            self._root = parsed._root
            self._names = list(parsed._names)
            self._aliases = list(parsed._aliases)
            self._version = parsed._version
            self._parsed = parsed

        def _pristine(self) -> bool:
            return (len(self._names) == len(self._parsed._names)
                    and len(self._aliases) == len(self._parsed._aliases))

        def __contains__(self, key: object) -> bool:
            if not self._pristine():
                return super().__contains__(key)
            return key in self._parsed._entry_nodes or key in self._parsed._alias_entry

        def __getitem__(self, key: str) -> Any:
            parsed = self._parsed
            if self._pristine() and (key in parsed._entry_nodes or (
                    parsed._alias_entry.get(key) in parsed._entry_nodes)):
                return self.NameEntry(parsed._entry_nodes[parsed._alias_entry.get(key, key)])
            return super().__getitem__(key)  # the checker's own errors

    return SharedStandardNameTable


#: compliance-checker's functions replaced while :func:`check_sources` runs.
_ORIGINAL: dict[str, Any] = {}
#: the internals :func:`_fast_tables` replaces (module of ``compliance_checker.cf``, name)
_INTERNALS = (("util", "StandardNameTable"), ("cf_1_11", "_temperature_standard_names"),
              ("util", "is_dimensionless_standard_name"))


@contextlib.contextmanager
def _fast_tables() -> Iterator[None]:
    """Share one parsed standard name table across files and suites, for this call."""
    from compliance_checker.cf import cf_1_11, util

    modules = {"util": util, "cf_1_11": cf_1_11}
    if _ORIGINAL or not all(hasattr(modules[m], name) for m, name in _INTERNALS):
        # nested call (already in place), or a compliance-checker whose internals moved:
        # its own (slower) lookups give the same verdicts
        yield
        return
    _ORIGINAL.update(StandardNameTable=util.StandardNameTable,
                     temperature=cf_1_11._temperature_standard_names,
                     dimensionless=util.is_dimensionless_standard_name)
    temperature: dict[int, Any] = {}
    dimensionless: dict[tuple[int, Any], bool] = {}

    def temperature_names(table: Any) -> Any:
        key = id(table._root)
        if key not in temperature:
            temperature[key] = frozenset(_ORIGINAL["temperature"](table))
        return temperature[key]

    def is_dimensionless(root: Any, name: Any) -> bool:
        key = (id(root), name)
        if key not in dimensionless:
            dimensionless[key] = _ORIGINAL["dimensionless"](root, name)
        return dimensionless[key]

    util.StandardNameTable = _shared_table_class()
    cf_1_11._temperature_standard_names = temperature_names
    util.is_dimensionless_standard_name = is_dimensionless
    try:
        yield
    finally:
        util.StandardNameTable = _ORIGINAL["StandardNameTable"]
        cf_1_11._temperature_standard_names = _ORIGINAL["temperature"]
        util.is_dimensionless_standard_name = _ORIGINAL["dimensionless"]
        _ORIGINAL.clear()


#: The ranges of the file being checked (name -> :data:`Range`), from the caller.
_RANGES: contextvars.ContextVar[Mapping[str, Range] | None] = contextvars.ContextVar(
    "oceandata_compliance_ranges", default=None)


def _trusts_range(variable: Any) -> bool:
    """Whether a range seen through xarray is the one netCDF4's masked read would give."""
    names = set(variable.ncattrs())
    return "_FillValue" in names and not names & {"valid_min", "valid_max", "valid_range"}


def _stream_range(variable: Any) -> Range:
    """Minimum and maximum of a variable's (masked, scaled) values, one bounded slab at a time.

    NaN propagates as in ``numpy.ma`` (a NaN value gives a NaN extreme).
    """
    if variable.ndim == 0 or variable.size <= SLAB_ELEMENTS:
        values = variable[:]
        if np.ma.isMaskedArray(values) and values.mask.all():
            return None
        return float(values.min()), float(values.max())
    step = max(1, SLAB_ELEMENTS // max(1, variable.size // variable.shape[0]))
    low = high = None
    for start in range(0, variable.shape[0], step):
        part = variable[start:start + step]
        if np.ma.isMaskedArray(part) and part.mask.all():
            continue
        lo, hi = part.min(), part.max()
        low = lo if low is None else np.minimum(low, lo)
        high = hi if high is None else np.maximum(high, hi)
    return None if low is None else (float(low), float(high))


class _RangeVariable:
    """A netCDF4 variable whose data read returns its ``[min, max]`` (or all masked)."""

    def __init__(self, variable: Any, extent: Range) -> None:
        self._variable = variable
        self._values = np.ma.masked_all(2) if extent is None else np.ma.array(extent)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._variable, name)

    def __getitem__(self, key: Any) -> Any:
        return self._values


class _RangeDataset:
    """Just enough of a netCDF4 dataset for compliance-checker's ``check_actual_range``."""

    def __init__(self, ds: Any, ranges: Mapping[str, Range]) -> None:
        self._ds = ds
        self.variables = {}
        for name, variable in ds.variables.items():
            if "actual_range" in variable.ncattrs() and variable.dtype.kind in "iuf":
                extent = ranges[name] if name in ranges and _trusts_range(variable) else \
                    _stream_range(variable)
                self.variables[name] = _RangeVariable(variable, extent)
            else:
                self.variables[name] = variable

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ds, name)


@cache
def _bounded(checker: type) -> type:
    """*checker* with ``check_actual_range`` reading each variable once, slab by slab."""
    if not hasattr(checker, "check_actual_range"):
        return checker

    class Bounded(checker):  # type: ignore[misc, valid-type]
        def check_actual_range(self, ds: Any) -> Any:
            return super().check_actual_range(_RangeDataset(ds, _RANGES.get() or {}))

    Bounded.__name__ = Bounded.__qualname__ = checker.__name__
    Bounded.__module__ = checker.__module__
    return Bounded


def _read_error(exc: BaseException) -> bool:
    """Whether an exception raised inside a check means the file's data cannot be read."""
    return isinstance(exc, OSError) or (isinstance(exc, RuntimeError)
                                        and str(exc).startswith("NetCDF:"))


def _messages(result: Any, prefix: str = "") -> list[str]:
    """A result's messages, with those of its children prefixed by the child's name."""
    msgs = [f"{prefix}{m}" for m in (result.msgs or [])]
    for child in result.children or []:
        name = child.name if isinstance(child.name, str) else ""
        msgs.extend(_messages(child, f"{prefix}{name}: " if name else prefix))
    return msgs


def _suite_result(file: str, suite: str, groups: list[Any], errors: Mapping[str, Any],
                  seconds: float) -> SuiteResult:
    """Turn compliance-checker's grouped results into a :class:`SuiteResult`."""
    scored = possible = 0
    failures = []
    for group in groups:
        got, out_of = (int(v) for v in group.value)
        if out_of == 0:  # the check does not apply to this file
            continue
        scored += got
        possible += out_of
        if got < out_of:
            failures.append(FailedCheck(name=str(group.name).rstrip(" :"),
                                        priority=_priority(group.weight),
                                        scored=got, possible=out_of,
                                        messages=tuple(str(m) for m in _messages(group))))
    failures.sort(key=lambda f: -f.weight)  # stable: the checker's order within a priority
    return SuiteResult(file=file, suite=suite, scored_points=scored, possible_points=possible,
                       failures=tuple(failures),
                       errors={name: f"{type(exc).__name__}: {exc}"
                               for name, (exc, _tb) in errors.items()},
                       seconds=round(seconds, 3))


class _Unreadable(Exception):
    """A source file cannot be read (collected, then reported as one DataError)."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(file, reason)
        self.file = file
        self.reason = reason


def _check_file(path: Path, file: str, suites: Sequence[str],
                ranges: Mapping[str, Range] | None = None) -> list[SuiteResult]:
    """Run *suites* on one file; raise :class:`_Unreadable` if it cannot be read.

    *ranges* are the minimum and maximum of its variables if the caller has them.
    """
    import netCDF4
    from compliance_checker.suite import CheckSuite

    from ..catalog.drivers import _check_classic_complete
    from ..errors import DataError

    try:  # netCDF-C reads a cut classic file's missing bytes as zeros; scipy refuses
        _check_classic_complete(str(path))
    except DataError:
        raise _Unreadable(file, "it is truncated or corrupt: its netCDF-3 header declares "
                                "more data than the file holds") from None
    except OSError as exc:
        raise _Unreadable(file, f"cannot be opened ({exc.strerror or exc})") from None
    try:
        ds = netCDF4.Dataset(path, mode="r")
    except OSError as exc:
        reason = str(exc.strerror or exc).split(": '")[0]
        raise _Unreadable(file, f"not readable as NetCDF ({reason})") from None
    results = []
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cs = CheckSuite()
            cs.checkers = {name: _bounded(cls) for name, cls in CheckSuite.checkers.items()}
            token = _RANGES.set(ranges or {})
            try:
                ran_all = {}
                for suite in suites:
                    start = time.perf_counter()
                    ran_all[suite] = (cs.run_all(ds, [suite]), time.perf_counter() - start)
            finally:
                _RANGES.reset(token)
            for suite in suites:
                ran, seconds = ran_all[suite]
                if suite not in ran:
                    raise UsageError(f"compliance suite {suite} does not apply to NetCDF files "
                                     f"such as {file}; use e.g. {', '.join(DEFAULT_SUITES)}")
                groups, errors = ran[suite]
                bad = {n: e for n, (e, _tb) in errors.items() if _read_error(e)}
                if bad:
                    name, exc = next(iter(bad.items()))
                    raise _Unreadable(file, f"its data cannot be decoded ({exc} in {suite} "
                                            f"{name})")
                results.append(_suite_result(file, suite, groups, errors, seconds))
    finally:
        ds.close()
    return results


def _one_line(text: str) -> str:
    """*text* with every run of whitespace (newlines too) made one space."""
    return " ".join(text.split())


def _names(items: Sequence[str]) -> str:
    """``a, b, c and 4 more``."""
    shown = ", ".join(items[:_MAX_NAMED])
    return shown + (f" and {len(items) - _MAX_NAMED} more" if len(items) > _MAX_NAMED else "")


def check_sources(paths: Sequence[str | os.PathLike[str]], *,
                  suites: Sequence[str] = DEFAULT_SUITES,
                  ranges: Mapping[str, Mapping[str, Range]] | None = None
                  ) -> ComplianceReport:
    """Run compliance-checker suites on NetCDF source files.

    Parameters
    ----------
    paths
        NetCDF files (classic or NetCDF-4). Links are followed.
    suites
        Suite names: ``cf`` (``cf:1.11``), ``acdd`` (``acdd:1.3``) or any versioned name
        the installed compliance-checker registers, e.g. ``cf:1.8``.
    ranges
        Per file (as given in *paths*) and variable, the ``(minimum, maximum)`` of its
        valid values, or None when it has none, as an ingest saw them while writing: the
        ``actual_range`` check then does not read those variables (see "Reading the data
        once" in the module docstring). Variables not given are streamed slab by slab.

    Returns
    -------
    ComplianceReport
        One result per file and suite.

    Raises
    ------
    UsageError
        No paths or suites, an unknown suite (the message lists the valid ones), or a path
        that does not exist or is a folder.
    DataError
        Files that cannot be read as NetCDF: not NetCDF, truncated, or with data that
        cannot be decoded. Every file is tried first; the message names them.

    Examples
    --------
    >>> report = check_sources(["year1950.nc"], suites=["cf"])  # doctest: +SKIP
    >>> report.result("year1950.nc", "cf").scored_points  # doctest: +SKIP
    138
    """
    from compliance_checker import __version__ as checker_version

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise UsageError("no source files to check; pass one or more NetCDF file paths")
    resolved = _resolve_suites(suites)
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise UsageError(f"source file {os.fspath(p)} does not exist; pass existing "
                             "NetCDF files")
        if not path.is_file():
            raise UsageError(f"source {os.fspath(p)} is not a file; pass NetCDF files, not "
                             "folders")

    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    results: list[SuiteResult] = []
    unreadable: list[_Unreadable] = []
    with _fast_tables():
        for p in paths:
            try:
                results.extend(_check_file(Path(p), os.fspath(p), resolved,
                                           (ranges or {}).get(os.fspath(p))))
            except _Unreadable as exc:
                unreadable.append(exc)
    if unreadable:
        first = unreadable[0]
        others = [u.file for u in unreadable[1:]]
        also = f" (also unreadable: {_names(others)})" if others else ""
        raise DataError(_one_line(f"cannot check source file {first.file}: {first.reason}"
                                  f"{also}; replace it with a complete, undamaged NetCDF file"))
    return ComplianceReport(results=results, checker_version=str(checker_version),
                            created=created)


def require_no_high_failures(report: ComplianceReport,
                             report_path: str | os.PathLike[str] | None = None) -> None:
    """Raise if any file fails a high-priority check.

    Parameters
    ----------
    report
        A report from :func:`check_sources`.
    report_path
        Where the full report (JSON) is, or is to be written before raising (unless
        :meth:`ComplianceReport.write` already wrote it there), so the message can point
        at it. Without it, the message names :attr:`ComplianceReport.path` if the report
        was written, else says how to write it.

    Raises
    ------
    DataError
        One line: how many high-priority failures, in which files and suites, the first
        failed check with its first message, and where the full report is.
    """
    high = report.high_failures
    if not high:
        return
    if report_path is not None and report.path != Path(report_path):
        report.write(report_path)
    where = (f"full report: {report.path}" if report.path is not None else
             "full report: not written (ComplianceReport.write(path) saves it)")
    by_file: dict[str, list[str]] = {}
    for file, suite, _, _ in high:
        if suite not in by_file.setdefault(file, []):
            by_file[file].append(suite)
    where_failed = _names([f"{file} [{', '.join(s)}]" for file, s in by_file.items()])
    n_files = len(by_file)
    file, suite, name, messages = high[0]
    detail = f": {messages[0]}" if messages else ""
    raise DataError(_one_line(
        f"{len(high)} high-priority compliance failure{'s' if len(high) != 1 else ''} in "
        f"{n_files} file{'s' if n_files != 1 else ''} ({where_failed}); first: {name!r} "
        f"({suite}) in {file}{detail}; {where}"
    ))
