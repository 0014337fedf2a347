"""Size estimates of every data request, before any data is read.

:func:`size_guard` is a dependency of every route (after the access guard). For a data
request (:func:`oceandata.dataservice.policy.classify`) it costs the answer from
metadata alone: the lazy dataset of the service's cache, its coordinates, dtypes,
attributes and stored chunk shapes, never a data value. The estimate is one dict
(:func:`estimate` gives the same to Python users)::

    {"dataset", "version", "protocol", "format",
     "bytes", "kind",                  # the answer's size; "estimate" or "upper bound"
     "read_bytes", "read_chunks",      # stored chunks the answer reads (whole chunks)
     "access_class", "limit",          # the caller's class and its sync_bytes
     "subset",                         # the equivalent subset download (or None)
     "split",                          # requests that each fit, when above the limit
     "note", ...}                      # how the size was found; protocol details

How each protocol is costed:

``subset`` (``datasets/{id}/subset``)
    :func:`oceandata.io.estimate.estimate_dataset` on the subset (the CLI's sizes: CSV an
    estimate, netCDF an upper bound), Parquet and JSON as :mod:`.downloads` sizes them.
``opendap`` (``datasets/{id}/opendap.dods``)
    exact: the DDS of the requested variables (:func:`.protocols.dap_projection`, the
    route's own check) and the XDR length of each selected array and map.
``zarr`` (``datasets/{id}/zarr/{var}/c/{chunk}``)
    one chunk of the store the route serves: its bytes when materialised (coordinates),
    else the zstd bound of the chunk's raw bytes; metadata keys are free.
``griddap`` (``erddap/griddap/{id}.{ext}``, also per dataset)
    the ERDDAP constraint parsed as the plugin parses it
    (:func:`xpublish_erddap.constraints.parse_griddap_query`); ``.dods`` exact, ``.nc`` an
    upper bound, CSV/JSON estimated from the printed axis values and the data dtypes.
``tabledap`` (``erddap/tabledap/{id}.{ext}``)
    an upper bound: every row of the table (constraints are tested on values, which are
    not read) times the widest printed value of each column's dtype.
``edr`` (``datasets/{id}/edr/position|area|cube``)
    xpublish-edr's own selection (datetime, z, parameter-name, point, bbox; an area by
    its polygon's bounding box), lazily; CoverageJSON, GeoJSON and CSV as an upper bound
    of printed values, netCDF/Parquet as the netCDF bound.

Bytes and chunks to read follow the chunk cost model of the ingest layer
(:func:`oceandata.ingest.chunks.read_plan`: whole stored chunks touched per variable),
for index selections counted here the same way. The service reads the entry's default
layout (the layout router, :func:`oceandata.io.open._cheapest_layout`, serves Python
users of entries with several layouts).

Answers:

- ``dry_run=1``: ``200`` with the estimate, nothing read. A request that cannot be
  parsed is ``400`` (its one sentence); without ``dry_run`` such a request goes on to
  its route, which answers its own ``400``.
- ``bytes`` above ``limit`` (the class's ``sync_bytes``, see :func:`.downloads.download_limit`):
  ``413`` with ``{"detail", "estimate", "limit", "split", "subset", "async"}``; the split
  (by time, then by box) is of subset-download URLs, each of which fits; ``async`` is
  :func:`.asyncjobs.offer` (None for anonymous callers). With ``async=1``, a signed-in
  caller whose class takes jobs this big gets :func:`.asyncjobs.start`'s ``202``.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import threading
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import xarray as xr
from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse, Response

from ..errors import OceandataError
from ..io.estimate import SizeEstimate, _storage_chunks, estimate_dataset, format_bytes
from ..io.subset import subset
from . import asyncjobs, downloads, metrics
from .access import ANONYMOUS, visible_entries
from .policy import RequestKind, classify, limits_for

__all__ = ["Answer", "estimate", "install", "size_guard", "subset_plan"]

log = logging.getLogger("oceandata.dataservice")

#: the query parameters this module takes off a request before its route reads it
FLAGS = ("dry_run", "async")
#: parsed per-dataset helpers kept (ERDDAP catalogues, DAP-ready datasets)
CACHE_SIZE = 64
#: most pieces a split suggests
MAX_PARTS = 1000
#: most pieces of a split by box estimated to check that they fit (an even sample)
CHECKED = 16
#: printed width bounds by dtype (Java's shortest doubles and floats, ISO times)
_WIDEST = {"f4": 15, "f8": 24, "f2": 10, "M": 22, "b": 5}
_TYPICAL = {"f4": 9, "f8": 18, "f2": 7, "M": 20, "b": 5}


class Answer(BaseException):
    """A finished answer from :func:`size_guard` (a dry run, a 413, a job's 202).

    A ``BaseException``: the ERDDAP routes (``xpublish_erddap.errors.ErddapRoute``) turn
    every ``Exception`` raised in their dependencies into a 500; this one passes them
    and is answered by the middleware :func:`install` adds.
    """

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class _Answering:
    """ASGI middleware: the response of an :class:`Answer` raised below it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        except Answer as answer:
            await answer.response(scope, receive, send)


def install(app: Any) -> None:
    """Answer :class:`Answer` on *app* (the inner service; call before metrics.install)."""
    app.add_middleware(_Answering)


class _Unparsed(Exception):
    """The request cannot be costed: its route answers it (status and sentence)."""

    def __init__(self, status: int, sentence: str) -> None:
        super().__init__(sentence)
        self.status, self.sentence = status, sentence


@dataclass
class Cost:
    """What one request costs, before the caller's limit is known."""

    dataset: str
    version: str | None
    protocol: str
    format: str
    size: SizeEstimate
    read: tuple[int, int]
    #: the equivalent subset download, or a function giving it (only asked for in dry
    #: runs and refusals: it reads coordinate values, which the hot path need not)
    subset: dict[str, Any] | Callable[[], dict[str, Any] | None] | None
    details: dict[str, Any] = field(default_factory=dict)

    def equivalent(self) -> dict[str, Any] | None:
        """The equivalent subset download (computed once)."""
        if callable(self.subset):
            self.subset = self.subset()
        return self.subset


# --------------------------------------------------------------------------- caches


class _Memo:
    """Values derived from a dataset, kept while the dataset object is the same one."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._items: collections.OrderedDict[Any, tuple[Any, Any]] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.size = size

    def get(self, key: Any, owner: Any, build: Callable[[], Any]) -> Any:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] is owner:
                self._items.move_to_end(key)
                return hit[1]
        value = build()
        with self._lock:
            self._items[key] = (owner, value)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


_MEMO = _Memo()


# --------------------------------------------------------------------------- chunks read


def _read_cost(ds: xr.Dataset, names: Sequence[str],
               selection: Mapping[str, Any]) -> tuple[int, int]:
    """``(bytes, chunks)`` of stored chunks read for *names* at index *selection*.

    The model of :func:`oceandata.ingest.chunks.read_plan`: along each dimension the
    distinct stored chunks holding a selected position; a variable costs the product of
    those counts times the chunk's bytes (edge chunks whole). *selection* maps a
    dimension to a slice or an array of positions (missing: all of it).
    """
    chunks = _MEMO.get(("chunks", id(ds)), ds, lambda: _storage_chunks(ds))
    total = count = 0
    for name in names:
        if name not in ds.variables:
            continue
        var = ds.variables[name]
        own = chunks.get(name, {})
        touched = size = 1
        for dim, length in zip(var.dims, var.shape, strict=True):
            chunk = own.get(str(dim), -1)
            chunk = length if chunk in (-1, None) or chunk > length else max(1, int(chunk))
            where = selection.get(str(dim))
            positions = (np.arange(length)[where] if where is not None else None)
            if positions is None:
                touched *= math.ceil(length / chunk) if length else 1
            else:
                touched *= int(np.unique(np.atleast_1d(positions) // chunk).size)
            size *= chunk
        itemsize = var.dtype.itemsize if var.dtype.kind != "O" else 8
        total += touched * size * itemsize
        count += touched
    return int(total), int(count)


# --------------------------------------------------------------------------- subset


@dataclass
class SubsetPlan:
    """A subset download costed: the request, its subset (lazy) and its size."""

    full: xr.Dataset
    parsed: dict[str, Any]
    fmt: Any
    cut: xr.Dataset
    est: Any
    size: SizeEstimate


def subset_plan(full: xr.Dataset, parsed: Mapping[str, Any], fmt: Any) -> SubsetPlan:
    """The subset of *full* for *parsed* (:func:`.downloads.parse_request`) and its size
    in the download format *fmt* (:data:`.downloads.FORMATS`), from metadata alone.

    Raises
    ------
    UsageError, DataError
        As :func:`oceandata.subset` for a request outside the data.
    """
    from ..ingest.chunks import read_plan

    parsed = dict(parsed)
    cut = subset(full, **parsed)
    read = _read_of_cut(full, cut)
    if read is None:  # positions not found from the cut's coordinates: the probe's model
        read = read_plan(full, _storage_chunks(full), **parsed) if full.data_vars else (0, 0)
    est = estimate_dataset(cut, request=parsed, read=read)
    size = (est.sizes[fmt.estimate] if fmt.estimate
            else downloads._table_sizes(cut, est.rows)[fmt.name])
    return SubsetPlan(full, parsed, fmt, cut, est, size)


def _read_of_cut(full: xr.Dataset, cut: xr.Dataset) -> tuple[int, int] | None:
    """Chunks *cut* (a subset of *full*) reads, its positions found by its dimension
    coordinates (None where a dimension has none, or values not in *full*'s index)."""
    selection: dict[str, np.ndarray] = {}
    for dim in cut.dims:
        if dim not in full.dims or cut.sizes[dim] == full.sizes[dim]:
            continue
        if dim not in full.indexes or dim not in cut.coords:
            return None
        index = full.indexes[dim]
        if not index.is_unique:
            return None
        found = index.get_indexer(cut[dim].values)
        if (found < 0).any():
            return None
        selection[str(dim)] = found
    return _read_cost(full, [str(n) for n in cut.data_vars if n in full.data_vars], selection)


def _subset_cost(request: Request, entry: Any, dataset_id: str) -> Cost:
    query = request.query_params
    try:
        fmt = downloads.FORMATS.get(query.get("format", "nc4").strip().lower())
        if fmt is None:
            raise _Unparsed(400, f"format {query.get('format')!r} is not one of "
                                 f"{', '.join(downloads.FORMATS)}.")
        parsed = downloads.parse_request(query.get("bbox"), query.get("time"),
                                         query.get("depth"), query.getlist("var") or None)
        version = downloads._version(request, query.get("version"))
        full = request.app.state.cache.get(entry, version)
        plan = subset_plan(full, parsed, fmt)
    except OceandataError as exc:
        raise _Unparsed(400, str(exc).splitlines()[0]) from None
    request.state.subset_plan = plan  # the route writes this very subset
    sub = {"bbox": query.get("bbox"), "time": query.get("time"), "depth": query.get("depth"),
           "var": ",".join(parsed["variables"]) if parsed["variables"] else None,
           "format": fmt.name}
    return Cost(entry.name, version, "subset", fmt.name, plan.size,
                (plan.est.read_bytes or 0, plan.est.read_chunks or 0), sub,
                {"rows": plan.est.rows, "dims": plan.est.dims})


# --------------------------------------------------------------------------- equivalents


def _axes(ds: xr.Dataset) -> dict[str, str]:
    """Dimension name → ``T``/``X``/``Y``/``Z`` for 1-D dimension coordinates."""
    return _MEMO.get(("axes", id(ds)), ds, lambda: _find_axes(ds))


def _find_axes(ds: xr.Dataset) -> dict[str, str]:
    import cf_xarray  # noqa: F401  (registers .cf)

    found: dict[str, str] = {}
    try:
        axes = ds.cf.axes
    except (KeyError, ValueError, AttributeError):
        axes = {}
    for axis, names in axes.items():
        for name in names:
            if name in ds.dims and ds[name].ndim == 1:
                found[str(name)] = axis
    for name in ds.dims:
        if str(name) in found or name not in ds.coords:
            continue
        coord = ds[name]
        units = str(coord.attrs.get("units", ""))
        if coord.dtype.kind in "MO":
            found[str(name)] = "T"
        elif units.startswith("degree") and units.endswith(("north", "N")):
            found[str(name)] = "Y"
        elif units.startswith("degree") and units.endswith(("east", "E")):
            found[str(name)] = "X"
    return found


def _iso(value: Any) -> str:
    if isinstance(value, np.datetime64):
        return str(np.datetime_as_string(value, unit="s"))
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _equivalent(ds: xr.Dataset, names: Sequence[str], selection: Mapping[str, Any],
                fmt: str) -> dict[str, Any]:
    """The subset download asking for *names* at index *selection* of *ds*."""
    axes = _axes(ds)
    out: dict[str, Any] = {"bbox": None, "time": None, "depth": None,
                           "var": ",".join(n for n in names if n in ds.data_vars) or None,
                           "format": fmt}
    ranges: dict[str, tuple[Any, Any]] = {}
    for dim, axis in axes.items():
        where = selection.get(dim)
        if where is None:
            continue
        values = np.atleast_1d(ds[dim].values[where])
        if values.size == 0:
            continue
        if axis == "T":
            ranges["T"] = (_iso(values.min()), _iso(values.max()))
        else:
            ranges[axis] = (float(np.nanmin(values)), float(np.nanmax(values)))
    if "T" in ranges:
        out["time"] = f"{ranges['T'][0]}/{ranges['T'][1]}"
    if "X" in ranges or "Y" in ranges:
        x = ranges.get("X") or (-180.0, 180.0)
        y = ranges.get("Y") or (-90.0, 90.0)
        west, east = ((x[0] + 180) % 360 - 180, (x[1] + 180) % 360 - 180) \
            if x[1] > 180 else x
        if east < west and x[1] - x[0] >= 359:
            west, east = -180.0, 180.0
        out["bbox"] = ",".join(f"{v:.6g}" for v in (west, y[0], east, y[1]))
    if "Z" in ranges:
        low, high = sorted(abs(v) for v in ranges["Z"])
        out["depth"] = f"{low:g}/{high:g}"
    return out


# --------------------------------------------------------------------------- OPeNDAP


def dap_ready(dataset_id: str, ds: xr.Dataset) -> xr.Dataset:
    """The DAP2-safe form of *ds* that the OPeNDAP routes serve and size, built once per
    open of the dataset (the memo checks the open's token itself: an id alone, reused by
    a dataset opened after a forgotten one, served the old one's tree). xpublish hands each
    request a new view of the opened dataset; the open's token
    (:data:`.protocols.OPEN_TOKEN`, kept in the views' encoding) names it."""
    from .protocols import OPEN_TOKEN, dap_compatible

    token = ds.encoding.get(OPEN_TOKEN, ds)
    return _MEMO.get(("dap", dataset_id, id(token)), token, lambda: dap_compatible(ds))


def _shape(shape: tuple[int, ...], index: Any) -> tuple[int, ...]:
    """The shape of ``array[index]`` for an array of *shape*, without an array."""
    return np.broadcast_to(np.empty((), dtype=bool), shape)[index].shape


def _dods_bytes(tree: Any, passed: str) -> int:
    """Bytes of ``tree.dods(constraint=passed)`` (opendap_protocol's encoding)."""
    import opendap_protocol as dap

    from .protocols import _TextGrid

    total = sum(len(s.encode()) for s in tree.dds(constraint=passed)) + 1 + len(b"Data:\r\n")
    slices = dap.parse_slice_constraint(passed)

    def encoded(shape: tuple[int, ...], dtype: Any) -> int:
        return 8 + math.prod(shape) * np.dtype(dtype.str).itemsize

    for obj in tree.children:
        if not isinstance(obj, dap.DAPDataObject) or not dap.meets_constraint(
                passed, obj.data_path):
            continue
        if isinstance(obj, _TextGrid):
            values = np.atleast_1d(np.asarray(obj.data)[slices]).ravel()
            total += 4 + sum(4 + len(r) + (-len(r) % 4)
                             for r in (str(v).encode() for v in values))
        else:
            total += encoded(_shape(np.shape(obj.data), slices), obj.dtype)
        for i, dim in enumerate(obj.dimensions or ()):
            sl = slices[i] if i < len(slices) else ...
            total += encoded(_shape(np.shape(dim.data), sl), dim.dtype)
    return total


def _opendap_cost(request: Request, entry: Any, dataset_id: str, version: str | None,
                  ext: str) -> Cost:
    import opendap_protocol as dap

    from .protocols import dap_dataset, dap_projection

    if ext != "dods":
        raise _Unparsed(404, f"There is no OPeNDAP .{ext} answer here: use .dods.")
    ds = request.app.state.cache.get(entry, version)
    ready = dap_ready(dataset_id, ds)
    try:
        names, passed = dap_projection(urllib.parse.unquote(request.url.query), ready)
    except HTTPException as exc:
        raise _Unparsed(exc.status_code, str(exc.detail)) from None
    tree = dap_dataset(ready, dataset_id.partition("@")[0], names or None)
    size = SizeEstimate("dods", _dods_bytes(tree, passed), "estimate",
                        "exact: the DDS and the XDR arrays of the request")
    chosen = names or [str(n) for n in ready.data_vars]
    slices = dap.parse_slice_constraint(passed)
    first = next((n for n in chosen if n in ds.variables and ds[n].ndim), None)
    selection = ({str(d): s for d, s in zip(ds[first].dims, slices, strict=False)
                  if s is not Ellipsis} if first and slices != (...,) else {})
    data = [n for n in chosen if n in ds.data_vars]
    return Cost(entry.name, version, "opendap", "dods", size,
                _read_cost(ds, data, selection),
                lambda: _equivalent(ds, data, selection, "nc"), {"variables": chosen})


# --------------------------------------------------------------------------- Zarr


def _zstd_bound(raw: int) -> int:
    """zstd's ``ZSTD_COMPRESSBOUND`` plus a frame header allowance."""
    small = (128 * 1024 - raw) >> 11 if raw < 128 * 1024 else 0
    return raw + (raw >> 8) + small + 64


def _zarr_cost(request: Request, entry: Any, dataset_id: str, version: str | None) -> Cost:
    from xpublish.dependencies import get_cache, get_dataset
    from xpublish_zarr.utils import chunk_storage_key, get_bytes, get_store

    params = request.path_params
    var, chunk = str(params.get("var", "")), str(params.get("chunk", ""))
    overrides = request.app.dependency_overrides
    ds = overrides[get_dataset](dataset_id)
    if var not in ds.variables:
        raise _Unparsed(404, f"There is no variable {var!r} in this dataset.")
    try:
        coords = tuple(int(c) for c in chunk.split("/")) if chunk else ()
    except ValueError:
        raise _Unparsed(404, f"The chunk key {chunk!r} is not integers separated by /.") from None
    store = get_store(ds, overrides[get_cache]())
    meta = json.loads(get_bytes(store, f"{var}/zarr.json") or b"{}")
    shape = tuple(meta.get("shape") or ())
    grid = tuple(meta.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape") or ())
    if len(coords) != len(grid) or any(c < 0 or c * g >= max(s, 1) for c, g, s in
                                       zip(coords, grid, shape, strict=True)):
        raise _Unparsed(404, f"There is no chunk {chunk!r} of {var!r}.")
    region = {str(d): slice(c * g, min((c + 1) * g, s)) for d, c, g, s in
              zip(ds[var].dims, coords, grid, shape, strict=True)}
    stored = get_bytes(store, chunk_storage_key(var, coords))
    if stored is not None:
        size = SizeEstimate("chunk", len(stored), "estimate", "exact: a materialised chunk")
    else:
        try:
            itemsize = np.dtype(str(meta.get("data_type"))).itemsize
        except TypeError:
            itemsize = 8
        raw = math.prod(grid) * max(itemsize, ds[var].dtype.itemsize)
        size = SizeEstimate("chunk", _zstd_bound(raw), "upper bound",
                            "zstd: the chunk's raw bytes plus the codec's worst expansion")
    names = [var] if var in ds.data_vars else []
    return Cost(entry.name, version, "zarr", "chunk", size, _read_cost(ds, [var], region),
                (lambda: _equivalent(ds, names, region, "nc4")) if names else None,
                {"variable": var, "chunk": list(coords)})


# --------------------------------------------------------------------------- ERDDAP


def _griddap_datasets(source_id: str, ds: xr.Dataset) -> dict[str, Any]:
    """The ERDDAP datasets the plugin builds of *ds* under *source_id*, by id."""
    from xpublish_erddap.catalog import build_catalog

    return _MEMO.get(("griddap", source_id), ds, lambda: {
        e.dataset_id: e for e in build_catalog(source_id, ds)})


def _printed_width(values: np.ndarray, is_time: bool) -> float:
    from xpublish_erddap.formats import format_value, java_number

    if values.size == 0:
        return 0.0
    sample = values if values.size <= 2000 else values[
        np.linspace(0, values.size - 1, 2000).astype(int)]
    cells = [format_value(v, is_time=is_time) for v in sample]
    return float(np.mean([len(c if isinstance(c, str) else java_number(c)) for c in cells]))


def _dtype_width(dtype: np.dtype, table: Mapping[str, int]) -> int:
    key = dtype.kind if dtype.kind in "Mb" else f"{dtype.kind}{dtype.itemsize}"
    if key in table:
        return table[key]
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return len(str(info.min if dtype.kind == "i" else info.max))
    if dtype.kind in "SU":
        return 2 * (dtype.itemsize // (4 if dtype.kind == "U" else 1)) + 2
    return 24


def _griddap_cost(request: Request, kind: RequestKind) -> Cost:
    from xpublish_erddap import formats
    from xpublish_erddap.constraints import (
        ConstraintError,
        NoMatchError,
        parse_griddap_query,
    )

    target = str(request.path_params.get("target", ""))
    erddap_id, _, ext = target.rpartition(".")
    if ext not in ("dods", "nc", "csv", "csvp", "csv0", "json"):
        raise _Unparsed(400, f"Query error: fileType=.{ext} is not a data file type here.")
    dataset_id = request.path_params.get("dataset_id")
    if dataset_id is not None:
        entry, version, source = request.state.entry, request.state.version, str(dataset_id)
    else:
        # the server-wide catalogue holds open entries only (for every caller): a
        # restricted name is unknown here, in the plugin's words, like any other
        catalog = request.app.state.catalog
        public = visible_entries(catalog, ANONYMOUS)
        name = erddap_id if erddap_id in public else max(
            (n for n in public if erddap_id.startswith(n + "_")), key=len, default=None)
        if name is None:
            raise _Unparsed(404, f"Currently unknown datasetID={erddap_id}")
        entry, version = public[name], None
        if getattr(entry.metadata, "grid", None) == "dsg":  # tables are tabledap's
            raise _Unparsed(404, f"Currently unknown datasetID={erddap_id}")
        source = entry.name
    ds = request.app.state.cache.get(entry, version)
    ed = _griddap_datasets(source, ds).get(erddap_id)
    if ed is None:
        raise _Unparsed(404, f"Currently unknown datasetID={erddap_id}")
    try:
        parsed = parse_griddap_query(urllib.parse.unquote_plus(request.url.components[3]),
                                     ed.axes, list(ed.dims), list(ed.data_vars))
    except NoMatchError as exc:
        raise _Unparsed(404, str(exc)) from None
    except ConstraintError as exc:
        raise _Unparsed(400, str(exc).splitlines()[0]) from None
    selection = {d: s.as_slice() for d, s in parsed.selections.items()}
    sub = ed.ds.isel(selection)
    variables = list(parsed.variables)
    data = [v for v in variables if v not in ed.dims]
    all_axes = not parsed.expression
    if ext == "dods":
        nbytes = len((formats.dds_response(ed, sub, variables, all_axes=all_axes)
                      + "\nData:\n").encode("latin-1", "replace"))

        def xdr(n: int, dtype: np.dtype) -> int:
            item = 4 if dtype.kind in "iu" and dtype.itemsize == 2 else (
                8 if dtype.itemsize == 8 else dtype.itemsize)
            return 8 + n * item + ((-n % 4) if dtype.itemsize == 1 else 0)

        def axis(dim: str) -> int:
            dtype = np.dtype("float64") if sub[dim].dtype.kind == "M" else formats.dtype_of(
                sub[dim])
            return xdr(sub.sizes[dim], dtype)

        nbytes += sum(axis(d) for d in ed.dims if all_axes or d in variables)
        for name in data:
            da = sub[name]
            nbytes += xdr(int(da.size), formats.dtype_of(ed.ds[name]))
            nbytes += sum(axis(str(d)) for d in da.dims)
        size = SizeEstimate("dods", nbytes, "estimate",
                            "exact: the DDS and the XDR arrays of the request")
    elif ext == "nc":
        size = estimate_dataset(sub[data] if data else sub, read=(0, 0)).sizes["netcdf"]
    else:
        dims = [d for d in ed.dims if d in sub.dims]
        rows = math.prod(sub.sizes[d] for d in dims) if data else max(
            (sub.sizes[d] for d in (variables or dims)), default=0)
        cols = (dims + data) if data else (variables or dims)
        width = 0.0
        for col in cols:
            if col in ed.dims:
                width += _printed_width(np.asarray(sub[col].values), sub[col].dtype.kind == "M")
            else:
                width += _dtype_width(formats.dtype_of(ed.ds[col]), _TYPICAL)
        head = sum(len(c) + 12 for c in cols) * 2
        if ext == "json":
            per_row = 16 + sum(10 for _ in cols) + width  # json.dumps(indent=2): a line a cell
            size = SizeEstimate("json", int(head + 200 + rows * per_row), "estimate",
                                "rows x printed widths (axes measured, data by dtype)")
        else:
            size = SizeEstimate(ext, int(head + rows * (width + len(cols))), "estimate",
                                "rows x printed widths (axes measured, data by dtype)")
    # the plugin's dataset is the source's under ERDDAP's axis names, same arrays
    read = _read_cost(ed.ds, data, selection)
    return Cost(entry.name, version, kind.protocol, ext, size, read,
                lambda: _equivalent(ed.ds, data, selection, _SUBSET_FORMAT.get(ext, "nc4")),
                {"variables": variables})


_SUBSET_FORMAT = {"dods": "nc", "nc": "nc", "csv": "csv", "csvp": "csv", "csv0": "csv",
                  "json": "json"}


def _tabledap_cost(request: Request, kind: RequestKind) -> Cost:
    from . import tabledap

    target = str(request.path_params.get("target", ""))
    erddap_id, _, ext = target.rpartition(".")
    if ext not in tabledap.DATA_TYPES:
        raise _Unparsed(400, f"Query error: fileType=.{ext} isn't supported by this dataset.")
    try:
        if request.path_params.get("dataset_id") is not None:
            entry, version = tabledap._dataset_entry(
                request, str(request.path_params["dataset_id"]), erddap_id)
        else:
            entry, version = tabledap._server_entry(request, erddap_id)
        ds, layout = tabledap._opened(request, entry, version)
        text = urllib.parse.unquote_plus(request.url.components[3])
        query = tabledap.Query(text, ds, layout, ext)
    except HTTPException as exc:
        raise _Unparsed(exc.status_code, str(exc.detail)) from None
    rows = layout.nrows
    bounded = True
    width = 0.0
    for col in query.columns:
        var = ds[layout.columns[col]]
        if var.dtype.kind == "O":
            if var.variable._in_memory and var.size:
                width += 2 * max(len(str(v)) for v in np.asarray(var.values).ravel()) + 2
            else:
                width, bounded = width + 64, False
        else:
            width += _dtype_width(var.dtype, _WIDEST)
    cols = len(query.columns)
    head = sum(len(c) + 24 for c in query.columns) * 2 + 256
    per_row = width + cols + (10 if ext == "json" else 0) + (2 * cols if ext == "json" else 0)
    note = ("every row of the table (constraints are tested on values, not read here) "
            "times the widest printed value of each column")
    size = SizeEstimate(ext, int(head + rows * per_row),
                        "upper bound" if bounded else "estimate", note)
    sources = [str(layout.columns[c]) for c in query.columns]
    read = _read_cost(ds, [s for s in sources if s in ds.variables], {})
    return Cost(entry.name, version, kind.protocol, ext, size, read,
                lambda: _table_equivalent(text, query, ds, layout, ext),
                {"rows": rows, "columns": list(query.columns)})


def _table_equivalent(text: str, query: Any, ds: xr.Dataset, layout: Any,
                      ext: str) -> dict[str, Any]:
    """The subset download of a tabledap query: its time and box constraints."""
    from xpublish_erddap.constraints import split_amp

    from .tabledap import _CONSTRAINT

    low: dict[str, str] = {}
    high: dict[str, str] = {}
    for part in split_amp(text)[1:]:
        match = _CONSTRAINT.match(part)
        if match is None or match["name"].strip() not in ("time", "latitude", "longitude"):
            continue
        name, op, value = match["name"].strip(), match["op"], match["value"].strip('" ')
        if op in (">", ">=", "="):
            low[name] = value
        if op in ("<", "<=", "="):
            high[name] = value
    out: dict[str, Any] = {"bbox": None, "time": None, "depth": None,
                           "var": ",".join(str(layout.columns[c]) for c in query.columns
                                           if layout.columns[c] in ds.data_vars) or None,
                           "format": "json" if ext == "json" else "csv"}
    if "time" in low or "time" in high:
        out["time"] = f"{low.get('time', '')}/{high.get('time', '')}"
    if {"latitude", "longitude"} & (set(low) | set(high)):
        out["bbox"] = ",".join([low.get("longitude", "-180"), low.get("latitude", "-90"),
                                high.get("longitude", "180"), high.get("latitude", "90")])
    return out


# --------------------------------------------------------------------------- EDR


def _edr_cost(request: Request, entry: Any, version: str | None, local: str) -> Cost:
    from pydantic import ValidationError
    from shapely.errors import GEOSException
    from xpublish_edr.geometry.bbox import select_by_bbox
    from xpublish_edr.geometry.common import (
        prepare_spatial_grid,
        project_bbox,
        project_geometry,
    )
    from xpublish_edr.geometry.position import select_by_position
    from xpublish_edr.query import EDRAreaQuery, EDRCubeQuery, EDRPositionQuery

    from .protocols import _naive_utc, edr_unfit

    what = local.rstrip("/").rsplit("/", 1)[-1]
    model = {"position": EDRPositionQuery, "area": EDRAreaQuery, "cube": EDRCubeQuery}.get(what)
    if model is None:
        raise _Unparsed(404, f"There is no EDR {what} query here.")
    ds = request.app.state.cache.get(entry, version)
    reason = edr_unfit(ds)
    if reason is not None:
        raise _Unparsed(404, f"EDR queries are not served for {entry.name!r}: {reason}.")
    params = dict(request.query_params)
    if params.get("datetime"):
        params["datetime"] = "/".join(_naive_utc(b) for b in params["datetime"].split("/"))
    try:
        query = model.model_validate(params)
        picked = query.select(ds, dict(params))
        grid = prepare_spatial_grid(picked, require_regular=True)
        if what == "cube":
            box = project_bbox(grid.ds, query.crs, query.bbox, grid.spatial_ref)
            picked = select_by_bbox(grid.ds, box, grid.spatial_ref)
        elif what == "position":  # the nearest cell of each point, as the plugin selects
            shape = project_geometry(grid.ds, query.crs, query.geometry, grid.spatial_ref)
            picked = select_by_position(grid.ds, shape, query.method, grid.spatial_ref)
        else:  # an area: its bounding box (an upper bound of the cells inside)
            box = project_bbox(grid.ds, query.crs, query.geometry.bounds, grid.spatial_ref)
            picked = select_by_bbox(grid.ds, box, grid.spatial_ref)
    except (ValidationError, ValueError, TypeError, KeyError, NotImplementedError,
            GEOSException) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _Unparsed(400, f"EDR cannot answer this query: {first}.") from None
    data = [str(n) for n in picked.data_vars]
    values = sum(int(picked[n].size) for n in data)
    coords = sum(int(picked[d].size) for d in picked.dims if d in picked.coords)
    fmt = (query.format or "covjson").lower()
    if fmt in ("nc", "nc4", "netcdf", "netcdf4", "parquet", "geotiff"):
        size = estimate_dataset(picked, read=(0, 0)).sizes["netcdf"]
        size = SizeEstimate(fmt, size.bytes, "upper bound", size.note)
    else:
        attrs = len(json.dumps({str(k): str(v) for k, v in picked.attrs.items()}))
        per_value = 26 if fmt != "csv" else 26 + 30 * len(picked.dims)
        per_value = per_value if fmt != "geojson" else 64 + 30 * len(picked.dims)
        size = SizeEstimate(fmt, 4096 + attrs * 2 + 1024 * len(data) + values * per_value
                            + coords * 32, "upper bound",
                            "values of the selection (an area by its bounding box) times the "
                            "widest printed number")
    selection = _positions(ds, picked)
    return Cost(entry.name, version, "edr", fmt, size, _read_cost(ds, data, selection),
                lambda: _equivalent(ds, data, selection, "nc4"), {"query": what})


def _positions(ds: xr.Dataset, picked: xr.Dataset) -> dict[str, np.ndarray]:
    """Index positions in *ds* of the dimension coordinates kept in *picked*."""
    out = {}
    for dim in ds.dims:
        if dim in ds.indexes and dim in picked.coords and picked[dim].size < ds.sizes[dim]:
            found = ds.indexes[dim].get_indexer(np.atleast_1d(picked[dim].values))
            out[str(dim)] = found[found >= 0]
    return out


# --------------------------------------------------------------------------- the estimate


def _local_path(request: Request) -> str:
    root = request.scope.get("root_path", "")
    path = request.scope["path"]
    return path[len(root):] if root and path.startswith(root) else path


def _cost(request: Request, kind: RequestKind, local: str) -> Cost:
    """The cost of the data request *request* (see the module docstring)."""
    if kind.protocol in ("griddap", "tabledap"):
        return (_griddap_cost if kind.protocol == "griddap" else _tabledap_cost)(request, kind)
    entry, version = request.state.entry, request.state.version
    dataset_id = str(request.path_params.get("dataset_id", entry.name))
    if kind.protocol == "subset":
        return _subset_cost(request, entry, dataset_id)
    if kind.protocol == "opendap":
        return _opendap_cost(request, entry, dataset_id, version, kind.format)
    if kind.protocol == "zarr":
        return _zarr_cost(request, entry, dataset_id, version)
    if kind.protocol == "edr":
        from pyproj.exceptions import CRSError

        try:
            return _edr_cost(request, entry, version, local)
        except CRSError:  # bad input, not a failure of the estimate: the route says why
            raise _Unparsed(400, f"crs {request.query_params.get('crs', '')!r} is not a "
                                 "coordinate reference system; give an EPSG code such as "
                                 "EPSG:4326.") from None
    raise _Unparsed(400, f"The {kind.protocol} protocol is not costed.")


def _as_dict(request: Request, cost: Cost) -> dict[str, Any]:
    name, limits = limits_for(request)
    return {"dataset": cost.dataset, "version": cost.version, "protocol": cost.protocol,
            "format": cost.format, "bytes": int(cost.size.bytes), "kind": cost.size.kind,
            "read_bytes": int(cost.read[0]), "read_chunks": int(cost.read[1]),
            "access_class": name, "limit": downloads.download_limit(request),
            "async_limit": limits.sizes()["async_bytes"],
            "subset": None, "split": None, "note": cost.size.note, **cost.details}


def _subset_url(request: Request, dataset_id: str, params: Mapping[str, Any]) -> str:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    return f"{str(request.base_url).rstrip('/')}/datasets/{dataset_id}/subset?{query}"


#: splits already found, by (dataset, version, request, limit, base URL): a client that
#: repeats an oversized request does not make the service plan it again
_SPLITS: collections.OrderedDict[Any, dict[str, Any] | None] = collections.OrderedDict()
_SPLITS_LOCK = threading.Lock()
#: splits kept
SPLIT_CACHE = 256
#: pieces estimated at most to find one split (each is a subset plan): beyond it the
#: 413 carries no split rather than costing the service more (about 2 s of CPU)
SPLIT_BUDGET = 64


def _split(request: Request, cost: Cost, limit: int) -> dict[str, Any] | None:
    """Subset-download requests, by time then by box, each estimated within *limit*
    (None when there is no equivalent subset, or none found within the budget)."""
    sub = cost.equivalent()
    if sub is None:
        return None
    key = (cost.dataset, cost.version, tuple(sorted((k, str(v)) for k, v in sub.items())),
           limit, str(request.base_url), request.scope.get("root_path", ""))
    with _SPLITS_LOCK:
        if key in _SPLITS:
            _SPLITS.move_to_end(key)
            return _SPLITS[key]
    found = _find_split(request, cost, sub, limit)
    with _SPLITS_LOCK:
        _SPLITS[key] = found
        while len(_SPLITS) > SPLIT_CACHE:
            _SPLITS.popitem(last=False)
    return found


def _find_split(request: Request, cost: Cost, sub: dict[str, Any],
                limit: int) -> dict[str, Any] | None:
    entry = request.app.state.catalog.entries.get(cost.dataset)
    if entry is None:
        return None
    fmt = downloads.FORMATS.get(sub.get("format") or "nc4", downloads.FORMATS["nc4"])
    full = request.app.state.cache.get(entry, cost.version)
    dataset_id = cost.dataset if cost.version is None else f"{cost.dataset}@{cost.version}"
    try:
        base = downloads.parse_request(sub.get("bbox"), sub.get("time"), sub.get("depth"),
                                       sub.get("var"))
        whole = subset_plan(full, base, fmt)
    except OceandataError:
        return None

    budget = [SPLIT_BUDGET]

    def fits(key: str, piece: str) -> bool:
        budget[0] -= 1
        if budget[0] < 0:
            raise _OverBudget
        try:
            parsed = {**base, **downloads.parse_request(
                piece if key == "bbox" else None, piece if key == "time" else None, None,
                None)}
            parsed = {k: v if v is not None else base[k] for k, v in parsed.items()}
            return subset_plan(full, parsed, fmt).size.bytes <= limit
        except OceandataError:
            return True  # a piece outside the data is empty: it fits

    def answer(by: str, pieces: list[str]) -> dict[str, Any]:
        return {"by": by, "parts": len(pieces), "requests": [
            {by: p, "url": _subset_url(request, dataset_id, {**sub, by: p})} for p in pieces]}

    try:
        return _search_split(whole, base, fits, answer, limit)
    except _OverBudget:
        return None


class _OverBudget(Exception):
    """The split search used its budget of estimated pieces."""


def _search_split(whole: SubsetPlan, base: dict[str, Any], fits: Callable[[str, str], bool],
                  answer: Callable[[str, list[str]], dict[str, Any]],
                  limit: int) -> dict[str, Any] | None:
    parts = max(2, math.ceil(whole.size.bytes / max(limit, 1)))
    steps = next((c.size for n, c in whole.cut.coords.items()
                  if c.ndim == 1 and c.dims[0] == n and c.dtype.kind in "MO"), 0)
    while parts <= min(steps, MAX_PARTS):
        pieces = downloads._time_pieces(whole.cut, parts)
        if pieces is None:
            break
        longest = max(pieces, key=lambda p: _steps(whole.cut, p))
        if fits("time", longest):
            return answer("time", pieces)
        parts += max(1, parts // 4)
    # boxes of equal width hold unequal numbers of cells: aim a little below the limit
    # and check every piece (an even sample of CHECKED when there are more)
    parts = max(2, math.ceil(whole.size.bytes / max(0.95 * limit, 1)))
    while parts <= MAX_PARTS:
        pieces = downloads._bbox_pieces(base, parts)
        step = max(1, math.ceil(len(pieces) / CHECKED))
        if all(fits("bbox", p) for p in pieces[::step]):
            return answer("bbox", pieces)
        parts += max(1, parts // 4)
    return None


def _steps(cut: xr.Dataset, piece: str) -> int:
    start, _, end = piece.partition("/")
    time = next(c for n, c in cut.coords.items()
                if c.ndim == 1 and c.dims[0] == n and c.dtype.kind in "MO")
    index = time.to_index()
    try:
        return int(index.slice_indexer(start, end).stop - index.slice_indexer(start, end).start)
    except (TypeError, ValueError, KeyError):
        return 0


def _error(request: Request, status: int, sentence: str) -> Response:
    from .app import error_response

    return error_response(request, status, sentence.strip().splitlines()[0])


def _flags(request: Request) -> tuple[bool, bool]:
    """``dry_run`` and ``async`` of the query, taken off it (the route never sees them)."""
    raw = request.scope.get("query_string", b"").decode("latin-1")
    if "dry_run" not in raw and "async" not in raw:
        return False, False
    keep, found = [], {}
    for part in raw.split("&"):
        key, _, value = part.partition("=")
        if key in FLAGS:
            found[key] = value.strip().lower() not in ("0", "false", "no", "")
        else:
            keep.append(part)
    if not found:
        return False, False
    request.scope["query_string"] = "&".join(keep).encode("latin-1")
    for cached in ("_query_params", "_url"):
        request.__dict__.pop(cached, None)
    return found.get("dry_run", False), found.get("async", False)


def _refusal(request: Request, est: dict[str, Any], cost: Cost) -> dict[str, Any]:
    limit = est["limit"]
    est["split"] = _split(request, cost, limit)
    split = est["split"]
    what = "at most" if est["kind"] == "upper bound" else "about"
    advice = (f"split it by {split['by']} into {split['parts']} requests (see split)"
              if split else "ask for less")
    detail = (f"This {'subset' if cost.protocol == 'subset' else cost.protocol + ' request'} "
              f"would be {what} {format_bytes(est['bytes'])} as {est['format']}, above the "
              f"download limit of {format_bytes(limit)} for {est['access_class']} clients: "
              f"{advice}, or work on it in a notebook.")
    offer_of = getattr(asyncjobs, "offer", None)
    offer = offer_of(request, est) if offer_of is not None else None
    return {"detail": detail, "estimate": est, "limit": limit, "split": split,
            "subset": est["subset"], "async": offer}


async def size_guard(request: Request) -> None:
    """Cost a data request; answer a dry run, refuse (413) or queue (202) a large one.

    A dependency of every route, after :func:`.access.guard` (which sets the caller and
    the entry). Requests that are not for data, or that cannot be parsed, go on to
    their route untouched.

    Raises
    ------
    Answer
        With the dry run's ``200``, the ``413`` refusal or the job's ``202``.
    HTTPException
        ``400`` (or ``404``) for a dry run that cannot be parsed.
    """
    local = _local_path(request)
    kind = classify(local, dict(request.query_params))
    if request.method != "GET":
        if request.method != "HEAD" and kind.data:
            # a query in a body (EDR's POST) would pass unestimated: data is for GET
            from .app import error_response

            raise Answer(error_response(
                request, 405, "Data is answered to GET requests only: put the query in "
                              "the URL.", {"Allow": "GET"}))
        return
    dry_run, wants_async = _flags(request)
    if not kind.data or kind.dataset is None:
        return
    try:
        cost = await anyio.to_thread.run_sync(_cost, request, kind, local)
    except _Unparsed as exc:
        if dry_run:  # in JSON on every route (the ERDDAP routes would write their form)
            raise Answer(_error(request, exc.status, exc.sentence)) from None
        return
    except HTTPException:
        raise  # the dataset's own (a version that does not exist: 404)
    except Exception:  # a request the parsers here did not foresee: its route answers it
        log.exception("could not estimate %s", request.url.path)
        if dry_run:
            raise Answer(_error(request, 400, "This request cannot be estimated; check it "
                                              "against the protocol's documentation.")
                         ) from None
        return
    est = _as_dict(request, cost)
    if dry_run or est["bytes"] > est["limit"]:
        est["subset"] = await anyio.to_thread.run_sync(cost.equivalent)
    if dry_run:
        if est["bytes"] > est["limit"]:
            est["split"] = await anyio.to_thread.run_sync(_split, request, cost, est["limit"])
        raise Answer(JSONResponse(est, headers={"Cache-Control": "no-store"}))
    if est["bytes"] <= est["limit"]:
        return
    start = getattr(asyncjobs, "start", None)
    caller = getattr(request.state, "caller", None)
    if (wants_async and start is not None and caller is not None
            and getattr(caller, "name", None) and 0 < est["bytes"] <= est["async_limit"]):
        raise Answer(await start(request, est))
    body = await anyio.to_thread.run_sync(_refusal, request, est, cost)
    metrics.refused(kind, "estimate")
    raise Answer(JSONResponse(body, status_code=413, headers={"Cache-Control": "no-store"}))


# --------------------------------------------------------------------------- Python


_APPS: dict[Any, Any] = {}


def estimate(dataset_id: str, protocol: str = "subset", *, catalog: Any = None,
             **request: Any) -> dict[str, Any]:
    """The estimate the service gives a request, computed by the same code.

    Parameters
    ----------
    dataset_id
        ``name`` or ``name@version``.
    protocol
        ``subset`` (``bbox=``, ``time=``, ``depth=``, ``var=``, ``format=``), ``opendap``
        (``constraint="sst[0:11][0:179][0:359]"``), ``zarr`` (``key="sst/c/0/0/0"``),
        ``griddap`` and ``tabledap`` (``query=`` the ERDDAP query, ``format=``), or
        ``edr`` (``query="position"|"area"|"cube"`` and its parameters: ``coords=``,
        ``bbox=``, ``datetime=``, ``z=``, ``parameter_name=``, ``f=``).
    catalog
        The catalog (a :class:`~oceandata.catalog.core.Catalog` or its path); default
        the configured one.
    **request
        The request's parameters, as above.

    Returns
    -------
    dict
        The estimate (see the module docstring), for an anonymous client of a service at
        ``http://localhost/`` (the split's URLs).

    Raises
    ------
    UsageError
        A request that cannot be parsed (its sentence), or an unknown protocol.
    DatasetNotFound
        An unknown or restricted dataset.

    Examples
    --------
    >>> est = estimate("cobe_sst2", time="1990/1999", format="csv")  # doctest: +SKIP
    >>> est["bytes"], est["kind"]  # doctest: +SKIP
    """
    from starlette.types import Scope

    from ..catalog.core import Catalog, open_catalog
    from ..errors import DatasetNotFound, UsageError
    from .app import create_app

    if isinstance(catalog, Catalog):
        key: Any = id(catalog)
    else:  # a path (or the configured catalog): read once per path, as the service does
        from ..config import get_settings

        key = str(Path(catalog if catalog is not None else get_settings().catalog).resolve())
    app = _APPS.get(key)
    if app is None or (isinstance(catalog, Catalog) and app.state.catalog is not catalog):
        app = _APPS[key] = create_app(
            catalog if isinstance(catalog, Catalog) else open_catalog(key), prefix="/")
    inner = app.state.inner
    params = {k.replace("_", "-") if k == "parameter_name" else k: v
              for k, v in request.items()}
    quoted = urllib.parse.quote(dataset_id, safe="@")
    if protocol == "subset":
        path, query = f"/datasets/{quoted}/subset", urllib.parse.urlencode(params, doseq=True)
    elif protocol == "opendap":
        path, query = f"/datasets/{quoted}/opendap.dods", str(params.pop("constraint", ""))
    elif protocol == "zarr":
        path, query = f"/datasets/{quoted}/zarr/{params.pop('key', '')}", ""
    elif protocol in ("griddap", "tabledap"):
        fmt = params.pop("format", "csv")
        path = f"/datasets/{quoted}/erddap/{protocol}/{quoted}.{fmt}"
        query = urllib.parse.quote(str(params.pop("query", "")), safe="[]():,&=<>!~\"")
    elif protocol == "edr":
        path = f"/datasets/{quoted}/edr/{params.pop('query', 'position')}"
        query = urllib.parse.urlencode(params)
    else:
        raise UsageError(f"protocol {protocol!r} is not one of subset, opendap, zarr, griddap, "
                         "tabledap, edr")
    scope: Scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
                    "root_path": "", "query_string": f"{query}&dry_run=1".encode(),
                    "headers": [(b"host", b"localhost")], "scheme": "http",
                    "server": ("localhost", 80), "client": None, "app": inner, "state": {},
                    "http_version": "1.1"}
    answer: dict[str, Any] = {}

    async def run() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["body"] = answer.get("body", b"") + message.get("body", b"")

        await inner(scope, receive, send)

    anyio.run(run)
    body = json.loads(answer.get("body") or b"{}")
    status = answer.get("status", 500)
    if status == 200 and "bytes" in body:
        return body
    detail = body.get("detail") if isinstance(body, dict) else None
    detail = detail or (answer.get("body") or b"").decode("utf-8", "replace").strip()
    if status == 404:
        raise DatasetNotFound(detail)
    raise UsageError(detail or f"the request could not be estimated (HTTP {status})")
