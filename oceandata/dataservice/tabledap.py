"""ERDDAP-compatible tabledap for the catalog's tables (CF discrete sampling geometries).

The entries whose ``metadata.grid`` is ``dsg`` (points, profiles, time series,
trajectories, the one-cell series) are served as ERDDAP tables, so that
``erddapy.ERDDAP(server=.../erddap, protocol="tabledap")`` and its ``to_pandas()`` work
unchanged:

- ``erddap/tabledap/{id}.{csv,csvp,csv0,json}?query``: the rows, flattened by
  :mod:`oceandata.io.table` (ragged arrays with ``rowSize``, multidimensional arrays,
  single dimensions), read block by block with the constraints pushed down, streamed;
- ``erddap/tabledap/index.{csv,json}``: the tables;
- ``erddap/info/{id}/index.{csv,json}``: the columns and attributes as ERDDAP lists them
  (``time`` in seconds since 1970, ``cdm_data_type`` from ``featureType``);
- the same under ``datasets/{id}/erddap/`` for one dataset, restricted ones included
  for callers granted them (checked by :func:`oceandata.dataservice.access.guard`).

The server-wide ``erddap/`` is built once for everyone, so it only ever serves open
datasets: any other name answers 404 with the sentence of
:func:`oceandata.dataservice.access.resolve`, the one an unknown name gets.

Queries are ERDDAP's: comma-separated column names (none: every column), then
``&column op value`` with ``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=`` and ``=~`` (a
regular expression the whole value must match); text values in double quotes; times as
ISO 8601 or seconds since 1970 (``now``, ``now-7days`` too); ``NaN`` tests missing
values. ``&distinct()`` and ``&orderBy("a,b")`` / ``&orderByDescending("a,b")`` are the
functions served; any other is refused. A float column is compared at its own
precision (``latitude>=33.485`` on a float32 column compares float32 values).

Columns are named as ERDDAP names them: the CF axes are ``time``, ``latitude``,
``longitude``, ``depth`` (``altitude`` when positive up), every other variable keeps its
source name; asking for a source axis name (``LATITUDE``) is refused with a sentence
that gives the served name. Output is written as ERDDAP writes it: CSV names, units
(``UTC`` for times), rows; times ``YYYY-MM-DDTHH:MM:SSZ``; missing numbers ``NaN``
(``null`` in JSON); text quoted by ERDDAP's rules (``xpublish_erddap.plugin.csv_cell``),
trailing blanks (the padding of fixed-width ``char`` data) removed as ERDDAP does.

Errors are ERDDAP's (``Error {code=...; message="...";}``, via the plugin's
``ErddapRoute``), 4xx and one sentence; a query is checked entirely before the first
byte of data is sent, and no matching rows is ERDDAP's 404.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib import parse

import numpy as np
import pandas as pd
import re2
import xarray as xr
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response, StreamingResponse
from starlette.routing import Match
from xpublish_erddap import formats, javaparse, search
from xpublish_erddap.constraints import ConstraintError, jsonp_name, split_amp
from xpublish_erddap.errors import ErddapRoute
from xpublish_erddap.plugin import csv_cell, jsonp_wrap

from ..catalog.core import Catalog, Entry
from ..errors import DataError
from ..io.table import TableLayout, iter_table, table_layout
from .access import ANONYMOUS, resolve, visible_entries
from .i18n import request_lang

#: the file types of the data route
DATA_TYPES = ("csv", "csvp", "csv0", "json")
#: the file types of the index and info tables
TABLE_TYPES = ("csv", "json")
#: rerddap and erddapy expect this exact content type for JSON
ERDDAP_JSON = "application/json;charset=UTF-8"
#: CSV as ERDDAP sends it (the body is ASCII: other characters are escaped)
ERDDAP_CSV = "text/csv;charset=ISO-8859-1"
#: how ERDDAP writes times in tables
ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: the units of time in ERDDAP's metadata
TIME_UNITS = "seconds since 1970-01-01T00:00:00Z"
#: featureType → ERDDAP's cdm_data_type
CDM_TYPES = {"point": "Point", "profile": "Profile", "timeseries": "TimeSeries",
             "trajectory": "Trajectory", "timeseriesprofile": "TimeSeriesProfile",
             "trajectoryprofile": "TrajectoryProfile"}
#: the functions served, by name
FUNCTIONS = ("distinct", "orderBy", "orderByDescending")

#: a constraint: variable, operator, value (the name's words are separated by whitespace
#: that cannot also be taken by ``\s*``: linear, where ``[^!=<>~]+?\s*`` was quadratic
#: on a run of whitespace)
_CONSTRAINT = re.compile(r"^\s*(?P<name>[^!=<>~\s]+(?:\s+[^!=<>~\s]+)*)\s*"
                         r"(?P<op>!=|=~|<=|>=|=|<|>)(?P<value>.*)$", re.S)
#: the longest regular expression of an ``=~`` constraint, in characters
REGEX_MAX = 1000
_FUNCTION = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\((?P<args>.*)\)$", re.S)
_NOW = re.compile(r"^now(?:\s*(?P<sign>[-+ ])\s*(?P<n>\d+(?:\.\d+)?)\s*"
                  r"(?P<unit>second|minute|hour|day|month|year)s?)?$", re.I)


# --------------------------------------------------------------------------- datasets


def is_table(entry: Entry) -> bool:
    """Whether *entry* is served by tabledap (its ``metadata.grid`` is ``dsg``)."""
    return getattr(entry.metadata, "grid", None) == "dsg"


def public_tables(catalog: Catalog) -> dict[str, Entry]:
    """The tables of the server-wide ``erddap/``: open to anyone, in catalog order."""
    return {n: e for n, e in visible_entries(catalog, ANONYMOUS).items() if is_table(e)}


def _not_a_table(dataset_id: str) -> HTTPException:
    return HTTPException(404, f"Currently unknown datasetID={dataset_id} (it is not a "
                              "tabledap dataset: use griddap).")


def _not_a_grid(dataset_id: str) -> HTTPException:
    return HTTPException(404, f"Currently unknown datasetID={dataset_id} (it is not a "
                              "griddap dataset: use tabledap).")


def _server_entry(request: Request, dataset_id: str) -> tuple[Entry, str | None]:
    """The open table *dataset_id* of the server-wide root, or 404 (the guard's sentence)."""
    entry, version = resolve(request.app.state.catalog, dataset_id, ANONYMOUS,
                             request_lang(request))
    if not is_table(entry):
        raise _not_a_table(dataset_id)
    return entry, version


def _dataset_entry(request: Request, dataset_id: str, erddap_id: str) -> tuple[Entry, str | None]:
    """The table of a per-dataset root (already checked by the guard), or 404."""
    entry, version = request.state.entry, request.state.version
    if erddap_id != dataset_id:
        raise HTTPException(404, f"Currently unknown datasetID={erddap_id}")
    if not is_table(entry):
        raise _not_a_table(erddap_id)
    return entry, version


class TableRoute(ErddapRoute):
    """An ERDDAP route (errors as ERDDAP writes them) that steps aside for non-tables.

    The ``info/{erddap_id}`` routes precede the ``xpublish-erddap`` plugin's (see
    :func:`oceandata.dataservice.app.create_app`), so they only match the ids of
    tables, and on the server-wide root only those of open tables: every other id,
    unknown and restricted alike, goes on to the plugin, which answers it as before.
    """

    def matches(self, scope: Any) -> tuple[Match, Any]:
        """Starlette's match, refused for an ``erddap_id`` that is not a table here."""
        match, child = super().matches(scope)
        griddap = self.path.endswith("/griddap/{target}")
        if match != Match.FULL or ("{erddap_id}" not in self.path and not griddap):
            return match, child
        params = child.get("path_params", {})
        catalog = getattr(getattr(scope.get("app"), "state", None), "catalog", None)
        if catalog is None:
            return Match.NONE, {}
        erddap_id = str(params["target"]).rpartition(".")[0] if griddap else \
            str(params.get("erddap_id", ""))
        if griddap and "dataset_id" in params:
            # a table's own root has no grids, whatever id the plugin would make of it
            # (sanitised, or suffixed per dimension: dsg_profile_obs), and its griddap
            # index is empty
            entry = catalog.entries.get(str(params["dataset_id"]).partition("@")[0])
            ok = entry is not None and is_table(entry)
        elif "dataset_id" in params:  # per dataset: the guard checks the caller
            entry = catalog.entries.get(erddap_id.partition("@")[0])
            ok = erddap_id == params["dataset_id"] and entry is not None and is_table(entry)
        else:
            ok = erddap_id in public_tables(catalog)
        return (match, child) if ok else (Match.NONE, {})


router = APIRouter(route_class=TableRoute)


def _route(path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return router.api_route(path, methods=["GET", "HEAD"], include_in_schema=False)


# --------------------------------------------------------------------------- columns


def _is_time(values_or_var: Any) -> bool:
    return np.asarray([], dtype=values_or_var.dtype).dtype.kind == "M"


def _units(var: xr.DataArray) -> str:
    if _is_time(var):
        return "UTC"
    return formats.attr_text(var.attrs.get("units", ""))


def _erddap_type(var: xr.DataArray) -> str:
    if _is_time(var):
        return "double"
    if var.dtype.kind in "SUOT":  # T: numpy's StringDType (text in Zarr v3 stores)
        return "String"
    return formats.erddap_type(var)


def _opened(request: Request, entry: Entry, version: str | None) -> tuple[xr.Dataset,
                                                                         TableLayout]:
    ds = request.app.state.cache.get(entry, version)
    try:
        return ds, table_layout(ds)
    except DataError as exc:
        raise HTTPException(400, f"This dataset cannot be served as a table: {exc}.") from None


# --------------------------------------------------------------------------- the query


class Query:
    """An ERDDAP tabledap query, checked against a table.

    Parameters
    ----------
    text
        The query, percent-decoded.
    ds, layout
        The dataset and its :func:`oceandata.io.table.table_layout`.
    ext
        The file type asked for (a ``.jsonp=`` clause is only taken with ``json``).

    Raises
    ------
    HTTPException
        400 with one sentence for anything ERDDAP would refuse.
    """

    def __init__(self, text: str, ds: xr.Dataset, layout: TableLayout, ext: str) -> None:
        self.ds, self.layout = ds, layout
        try:
            parts = split_amp(text)
            self.jsonp = jsonp_name(parts) if ext == "json" else None
        except ConstraintError as exc:
            raise HTTPException(400, str(exc)) from None
        self.columns = self._columns(parts[0])
        self.filters: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = []
        self.distinct = False
        self.order: list[str] = []
        self.descending = False
        for part in parts[1:]:
            if not part or part.startswith(".jsonp="):
                continue
            function = _FUNCTION.match(part)
            if function is not None and not _CONSTRAINT.match(part.split("(")[0]):
                self._function(function["name"], function["args"])
            else:
                self._constraint(part)

    def _known(self, name: str) -> str:
        if name in self.layout.columns:
            return name
        served = [k for k, v in self.layout.columns.items() if str(v) == name]
        hint = f" (it is served as {served[0]})" if served else ""
        raise HTTPException(400, f'Query error: Unrecognized variable="{name}"{hint}.')

    def _columns(self, text: str) -> list[str]:
        if not text.strip():
            return list(self.layout.columns)
        names = [n.strip() for n in text.split(",")]
        out: list[str] = []
        for name in names:
            if not name:
                raise HTTPException(400, "Query error: An empty variable name is in the "
                                         "list of results variables.")
            if _CONSTRAINT.match(name):
                raise HTTPException(400, f"Query error: The constraint {name!r} must follow "
                                         "the variables, after '&'.")
            self._known(name)
            if name in out:
                raise HTTPException(400, f"Query error: variable={name} is listed twice in "
                                         "the results variables list.")
            out.append(name)
        return out

    def _function(self, name: str, args: str) -> None:
        if name == "distinct":
            if args.strip():
                raise HTTPException(400, "Query error: distinct() takes no arguments.")
            self.distinct = True
            return
        if name in ("orderBy", "orderByDescending"):
            text = args.strip()
            if len(text) < 2 or text[0] != '"' or text[-1] != '"':
                raise HTTPException(400, f'Query error: {name} needs a quoted, comma-separated '
                                         f'list of variables, as {name}("time").')
            order = [n.strip() for n in text[1:-1].split(",") if n.strip()]
            if not order:
                raise HTTPException(400, f"Query error: {name} names no variable.")
            for col in order:
                self._known(col)
                if col not in self.columns:
                    raise HTTPException(400, f"Query error: {name} variable={col} isn't in "
                                             "the list of results variables.")
            self.order, self.descending = order, name == "orderByDescending"
            return
        raise HTTPException(400, f"Query error: the function {name}() is not served here; "
                                 f"the functions are {', '.join(f + '()' for f in FUNCTIONS)}.")

    def _constraint(self, part: str) -> None:
        match = _CONSTRAINT.match(part)
        if match is None:
            raise HTTPException(400, f"Query error: {part!r} is neither a constraint (variable, "
                                     "operator, value) nor a function.")
        name, op, raw = self._known(match["name"].strip()), match["op"], match["value"].strip()
        var = self.ds[self.layout.columns[name]]
        quoted = len(raw) >= 2 and raw[0] == raw[-1] == '"'
        text = _unquote(raw) if quoted else raw
        if op == "=~":
            self.filters.append((name, _regex_test(_regex(name, text), var)))
        elif _is_time(var):
            self.filters.append((name, _time_test(name, op, text)))
        elif var.dtype.kind in "iufb":
            if quoted:
                raise HTTPException(400, f"Query error: {name} is numeric, so its value "
                                         f"{raw} must not be quoted.")
            self.filters.append((name, _number_test(name, op, text, var.dtype)))
        else:
            self.filters.append((name, _text_test(op, text)))


def _regex(name: str, text: str) -> Any:
    """The ``=~`` pattern *text* of *name*, compiled by RE2 (matching in linear time).

    Parameters
    ----------
    name
        The variable constrained (for the sentence of a refusal).
    text
        The regular expression, unquoted; ``.`` matches newlines too.

    Returns
    -------
    re2._Regexp
        The compiled pattern (``fullmatch`` as in :mod:`re`).

    Raises
    ------
    HTTPException
        400 with one sentence for a pattern longer than :data:`REGEX_MAX` characters or
        one RE2 refuses (backreferences, lookaround, ``\\Z``, a syntax error).

    Notes
    -----
    Python's :mod:`re` backtracks: ``.{4}(.|.)*Q`` took seconds per thousand rows, each
    character fewer in ``{4}`` doubling it, holding the GIL. RE2 has no backtracking;
    each pattern's memory is capped at 1 MiB (the module caches 128 patterns).
    """
    if len(text) > REGEX_MAX:
        raise HTTPException(400, f"Query error: the regular expression of {name} is "
                                 f"{len(text)} characters long, more than the "
                                 f"{REGEX_MAX} characters accepted.")
    options = re2.Options()
    options.dot_nl, options.never_capture, options.log_errors = True, True, False
    options.max_mem = 1 << 20
    try:
        return re2.compile(text, options)
    except re2.error as exc:
        why = exc.args[0] if exc.args else ""
        why = why.decode("utf-8", "replace") if isinstance(why, bytes) else str(why)
        raise HTTPException(400, f"Query error: the regular expression {text!r} of {name} "
                                 f"is not accepted ({why}): RE2 syntax is accepted, without "
                                 "backreferences, lookaround or \\Z (use \\z).") from None


def _unquote(raw: str) -> str:
    r"""A double-quoted ERDDAP value: the quotes off, ``\"`` and ``\\`` unescaped."""
    return re.sub(r"\\(.)", r"\1", raw[1:-1])


_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
    ">": np.greater, ">=": np.greater_equal}


def _number_test(name: str, op: str, text: str,
                 dtype: np.dtype) -> Callable[[np.ndarray], np.ndarray]:
    value = javaparse.parse_double(text)
    if np.isnan(value) and text.strip().lower() != "nan":
        raise HTTPException(400, f"Query error: the value {text!r} of {name} is not a number.")
    return _compare(op, value, np.dtype(dtype))


def _compare(op: str, value: float, dtype: np.dtype) -> Callable[[np.ndarray], np.ndarray]:
    if np.isnan(value):  # ERDDAP: =NaN tests missing values, !=NaN present ones
        if op not in ("=", "!="):
            return lambda values: np.zeros(len(values), dtype=bool)
        return lambda values: np.isnan(values.astype(np.float64)) == (op == "=")
    target = dtype.type(value) if dtype.kind == "f" else value  # the column's precision

    def test(values: np.ndarray) -> np.ndarray:
        return _OPS[op](values, target)

    return test


def _epoch(values: np.ndarray) -> np.ndarray:
    seconds = values.astype("datetime64[ns]").astype(np.int64) / 1e9
    return np.where(np.isnat(values), np.nan, seconds)


def _time_value(name: str, text: str) -> float:
    now = _NOW.match(text.strip())
    if now is not None:
        stamp = pd.Timestamp.now(tz="UTC").floor("s")
        if now["n"] is not None:
            n = float(now["n"])
            n = -n if now["sign"] == "-" else n
            unit = now["unit"].lower()
            if unit in ("month", "year"):
                stamp += pd.DateOffset(**{unit + "s": int(n)})
            else:
                stamp += pd.Timedelta(n, unit={"second": "s", "minute": "min", "hour": "h",
                                               "day": "D"}[unit])
        return stamp.timestamp()
    if text.strip().lower() == "nan":
        return float("nan")
    if javaparse.is_iso_date(text.strip()):
        try:
            return javaparse.iso_to_epoch_seconds(text)
        except ValueError:
            pass
    else:
        value = javaparse.parse_double(text)
        if not np.isnan(value):
            return value
    raise HTTPException(400, f"Query error: the value {text!r} of {name} is neither an ISO "
                             "8601 time nor seconds since 1970-01-01.")


def _time_test(name: str, op: str, text: str) -> Callable[[np.ndarray], np.ndarray]:
    compare = _compare(op, _time_value(name, text), np.dtype("float64"))
    return lambda values: compare(_epoch(values))


def _text_test(op: str, text: str) -> Callable[[np.ndarray], np.ndarray]:
    def test(values: np.ndarray) -> np.ndarray:
        strings = np.asarray(["" if v is None else str(v) for v in values], dtype=str)
        return _OPS[op](strings, np.str_(text)) if strings.size else np.zeros(0, bool)

    return test


def _regex_test(pattern: Any, var: xr.DataArray) -> Callable[[np.ndarray], np.ndarray]:
    def test(values: np.ndarray) -> np.ndarray:
        text = _cells(values, json_types=False, missing="")
        return np.fromiter((pattern.fullmatch(t) is not None for t in text), bool,
                           count=len(text))

    return test


# --------------------------------------------------------------------------- writing


def _cells(values: np.ndarray, *, json_types: bool, missing: str | None = "NaN") -> list[Any]:
    """One column as ERDDAP writes it: ISO times, Java numbers, text as is."""
    if values.dtype.kind == "M":
        null = None if json_types else ""
        return [v if isinstance(v, str) else null  # NaT: NaN
                for v in pd.Series(values).dt.strftime(ISO_FORMAT)]
    if values.dtype.kind in "f":
        if json_types:
            return [None if v != v else formats.format_value(v, is_time=False)
                    for v in values]
        return [missing if v != v else formats.java_number(v) for v in values]
    if values.dtype.kind in "iu":
        return [int(v) for v in values] if json_types else [str(int(v)) for v in values]
    if values.dtype.kind == "b":
        return [bool(v) for v in values] if json_types else [str(bool(v)).lower()
                                                             for v in values]
    return ["" if v is None else str(v) for v in values]


def _csv_lines(frame: pd.DataFrame) -> str:
    columns = []
    for name in frame.columns:
        values = frame[name].to_numpy()
        cells = _cells(values, json_types=False)
        if values.dtype.kind not in "Mfiub":
            cells = [csv_cell(c) for c in cells]
        columns.append(cells)
    return "".join(",".join(row) + "\n" for row in zip(*columns, strict=True))


def _json_rows(frame: pd.DataFrame) -> list[str]:
    columns = [_cells(frame[n].to_numpy(), json_types=True) for n in frame.columns]
    return [json.dumps(list(row), ensure_ascii=False) for row in zip(*columns, strict=True)]


def _header(query: Query, ext: str) -> str:
    ds, layout = query.ds, query.layout
    names = query.columns
    units = [_units(ds[layout.columns[n]]) for n in names]
    if ext == "csv":
        return (",".join(csv_cell(n) for n in names) + "\n"
                + ",".join(csv_cell(u) for u in units) + "\n")
    if ext == "csvp":
        return ",".join(csv_cell(f"{n} ({u})" if u else n) for n, u in zip(names, units,
                                                                             strict=True)) + "\n"
    return ""  # csv0


def _json_head(query: Query) -> str:
    ds, layout = query.ds, query.layout
    types = ["String" if _is_time(ds[layout.columns[n]]) else _erddap_type(ds[layout.columns[n]])
             for n in query.columns]
    units = [_units(ds[layout.columns[n]]) for n in query.columns]
    return ('{\n  "table": {\n    "columnNames": ' + json.dumps(query.columns)
            + ',\n    "columnTypes": ' + json.dumps(types)
            + ',\n    "columnUnits": ' + json.dumps([u or None for u in units])
            + ',\n    "rows": [\n')


def _frames(query: Query, request: Request) -> Iterator[pd.DataFrame]:
    """The rows of *query*: streamed blocks, or one frame for distinct()/orderBy()."""
    blocks = iter_table(query.ds, query.layout, query.columns, filters=query.filters,
                        strip_text=True)
    if not query.distinct and not query.order:
        yield from blocks
        return
    from .downloads import download_limit

    limit, held, parts = download_limit(request), 0, []
    for part in blocks:
        held += int(part.memory_usage(deep=False).sum())
        if held > limit:
            raise HTTPException(413, "Your query produced too much data to sort in memory: "
                                     "constrain it further or leave out distinct() and "
                                     "orderBy().")
        parts.append(part)
    if not parts:
        return
    frame = pd.concat(parts, ignore_index=True)
    if query.distinct:  # ERDDAP: sorted by every column, duplicates removed
        frame = frame.drop_duplicates().sort_values(list(frame.columns), kind="stable")
    if query.order:
        frame = frame.sort_values(query.order, kind="stable", ascending=not query.descending)
    yield frame.reset_index(drop=True)


def _body(first: pd.DataFrame, rest: Iterator[pd.DataFrame], query: Query,
          ext: str) -> Iterator[str]:
    if ext == "json":
        yield _json_head(query)
        sep = ""
        for frame in _chain(first, rest):
            rows = _json_rows(frame)
            if rows:
                yield sep + "      " + ",\n      ".join(rows)
                sep = ",\n"
        yield "\n    ]\n  }\n}\n"
        return
    yield _header(query, ext)
    for frame in _chain(first, rest):
        yield _csv_lines(frame)


def _chain(first: pd.DataFrame, rest: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    yield first
    yield from rest


def _answer(request: Request, entry: Entry, version: str | None, ext: str) -> Response:
    if ext not in DATA_TYPES:
        raise HTTPException(400, f"Query error: fileType=.{ext} isn't supported by this "
                                 f"dataset; use one of .{', .'.join(DATA_TYPES)}.")
    ds, layout = _opened(request, entry, version)
    query = Query(parse.unquote_plus(request.url.components[3]), ds, layout, ext)
    media = ERDDAP_JSON if ext == "json" else ERDDAP_CSV
    if request.method == "HEAD":
        return Response(media_type=media)
    frames = _frames(query, request)
    first = next(frames, None)  # read before answering: no rows is ERDDAP's 404
    if first is None:
        raise HTTPException(404, "Your query produced no matching results. (nRows = 0)")
    body = _body(first, frames, query, ext)
    if query.jsonp is not None:
        return jsonp_wrap(Response("".join(body), media_type=ERDDAP_JSON), query.jsonp)
    return StreamingResponse(body, media_type=media)


# --------------------------------------------------------------------------- tables


def _table(columns: list[str], rows: list[list[Any]], ext: str, types: list[str] | None = None,
           ) -> Response:
    if ext not in TABLE_TYPES:
        raise HTTPException(404, f"Unsupported fileType=.{ext}")
    if ext == "json":
        body = {"table": {"columnNames": columns,
                          "columnTypes": types or ["String"] * len(columns), "rows": rows}}
        return Response(json.dumps(body, indent=2, default=str), media_type=ERDDAP_JSON)
    buf = io.StringIO()
    buf.write(",".join(columns) + "\n")
    for row in rows:
        buf.write(",".join(csv_cell(v) for v in row) + "\n")
    return Response(buf.getvalue(), media_type=ERDDAP_CSV)


def _root(request: Request, own: str) -> str:
    """The public URL of the ERDDAP root that answered (path less the route's own part)."""
    path = request.url.path
    return str(request.url.replace(path=path[: len(path) - len(own)], query=""))


def _index(request: Request, entries: dict[str, Entry], base: str, ext: str) -> Response:
    rows = []
    for name, entry in sorted(entries.items(), key=lambda kv: kv[1].metadata.title.lower()):
        meta = entry.metadata
        rows.append(["", f"{base}/tabledap/{name}.html", f"{base}/tabledap/{name}", "", "", "",
                     meta.title, search.no_long_lines_at_space(meta.description or meta.title),
                     "", "", f"{base}/info/{name}/index.{ext}", "", "", meta.provider, name])
    return _table(search.DATASET_COLUMNS, rows, ext)


def _info(request: Request, entry: Entry, version: str | None, ext: str) -> Response:
    if ext not in TABLE_TYPES:
        raise HTTPException(404, f"Unsupported fileType=.{ext}")
    ds, layout = _opened(request, entry, version)
    rows: list[list[Any]] = []

    def attributes(owner: str, attrs: dict[str, Any]) -> None:
        for key in formats.sort_globals(attrs):
            value = attrs[key]
            rows.append(["attribute", owner, key, formats.attr_type(value),
                         formats.attr_text(value)])

    feature = str(ds.attrs.get("featureType") or entry.metadata.feature_type or "").lower()
    globals_ = {k: v for k, v in ds.attrs.items() if not str(k).startswith("_")}
    globals_["cdm_data_type"] = CDM_TYPES.get(feature, "Other")
    globals_.setdefault("title", entry.metadata.title)
    attributes("NC_GLOBAL", globals_)
    for name, source in layout.columns.items():
        var = ds[source]
        rows.append(["variable", name, "", _erddap_type(var), ""])
        attrs = {k: v for k, v in var.attrs.items() if not str(k).startswith("_")}
        if _is_time(var):
            attrs.update(units=TIME_UNITS, standard_name="time", ioos_category="Time")
        if name != str(source):
            attrs["source_name"] = str(source)
        attributes(name, attrs)
    return _table(["Row Type", "Variable Name", "Attribute Name", "Data Type", "Value"],
                  rows, ext)


def _target(target: str) -> tuple[str, str]:
    if "." not in target:
        raise HTTPException(400, f"Query error: the file type is missing: use {target}.csv, "
                                 f"or .{', .'.join(DATA_TYPES[1:])}.")
    dataset_id, _, ext = target.rpartition(".")
    return dataset_id, ext


# --------------------------------------------------------------------------- routes
# order matters: index.{ext} before {target}


@_route("/erddap/tabledap/index.{ext}")
def tabledap_index(request: Request, ext: str) -> Response:
    """The open tables of the server-wide ERDDAP root."""
    return _index(request, public_tables(request.app.state.catalog),
                  _root(request, f"/tabledap/index.{ext}"), ext)


@_route("/erddap/tabledap/{target}")
def tabledap(request: Request, target: str) -> Response:
    """Rows of an open table: ``{id}.{csv,csvp,csv0,json}?{ERDDAP query}``."""
    dataset_id, ext = _target(target)
    entry, version = _server_entry(request, dataset_id)
    return _answer(request, entry, version, ext)


@_route("/erddap/info/{erddap_id}/index.{ext}")
def tabledap_info(request: Request, erddap_id: str, ext: str) -> Response:
    """Columns and attributes of an open table (other ids: the plugin's route)."""
    entry, version = _server_entry(request, erddap_id)
    return _info(request, entry, version, ext)


@_route("/datasets/{dataset_id}/erddap/tabledap/index.{ext}")
def dataset_tabledap_index(request: Request, dataset_id: str, ext: str) -> Response:
    """The one table of a per-dataset ERDDAP root (empty for a grid)."""
    entry = request.state.entry
    entries = {dataset_id: entry} if is_table(entry) else {}
    return _index(request, entries, _root(request, f"/tabledap/index.{ext}"), ext)


@_route("/datasets/{dataset_id}/erddap/tabledap/{target}")
def dataset_tabledap(request: Request, dataset_id: str, target: str) -> Response:
    """Rows of this dataset's table, restricted ones for granted callers."""
    erddap_id, ext = _target(target)
    entry, version = _dataset_entry(request, dataset_id, erddap_id)
    return _answer(request, entry, version, ext)


@_route("/datasets/{dataset_id}/erddap/griddap/{target}")
def dataset_griddap_of_a_table(request: Request, dataset_id: str, target: str) -> Response:
    """griddap of this dataset's table: an empty index, and 404 for any id as ERDDAP
    says it and as the server-wide root does (the plugin's griddap served the table's
    arrays as grids under ids of its own, and failed with a 500 on ``.nc``)."""
    stem, _, ext = target.rpartition(".")
    if stem == "index":
        return _index(request, {}, _root(request, f"/griddap/{target}"), ext)
    raise _not_a_grid(stem)


@_route("/datasets/{dataset_id}/erddap/info/{erddap_id}/index.{ext}")
def dataset_tabledap_info(request: Request, dataset_id: str, erddap_id: str,
                          ext: str) -> Response:
    """Columns and attributes of this dataset's table."""
    entry, version = _dataset_entry(request, dataset_id, erddap_id)
    return _info(request, entry, version, ext)


__all__ = ["DATA_TYPES", "Query", "TableRoute", "is_table", "public_tables", "router"]
