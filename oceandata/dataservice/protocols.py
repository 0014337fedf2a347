"""The access protocols of the open-data service, as xpublish plugins.

- :class:`CatalogProvider` gives xpublish the catalog's datasets: the ids the current
  caller may see (:data:`oceandata.dataservice.access.CALLER`), each opened as the
  notebooks open it (``Entry._open``: same drivers, same CF decoding) after
  :func:`oceandata.dataservice.access.guard` has checked the path. ``name@version`` opens
  a tag or snapshot of a versioned store.
- OPeNDAP (DAP2, ``xpublish-opendap``) with the types DAP2 cannot carry cast explicitly
  (:func:`dap_compatible`), Zarr v3 over HTTP (``xpublish-zarr``), OGC API - EDR
  (``xpublish-edr``) under ``/datasets/{id}/``.
- ERDDAP-compatible griddap (``xpublish-erddap``; the plugin has no tabledap, its
  ``tabledap/index`` is empty, so the DSG entries are not served as tables yet): the
  server-wide ``/erddap/`` lists open datasets only (an ERDDAP catalogue is built
  once for everyone, so it never holds a restricted dataset); ``/datasets/{id}/erddap/``
  serves one dataset, restricted ones included, behind the same guard as every path.

DAP2 as served (:class:`DapPlugin`, which builds the DAP objects with
``xpublish_opendap.dap_xarray`` but answers the requests itself, see its docstring):

- types DAP2 lacks are cast, and each cast variable says so in its attribute
  ``oceandata_dap_cast`` (``"int8 -> int16"``): ``int8`` → ``Int16``, ``bool`` → ``Byte``
  (0/1), ``int64``/``uint64`` → ``Float64`` (exact up to 2**53), see
  :func:`dap_compatible`;
- times (and cftime dates) are CF-encoded numbers with their ``units``/``calendar``, as
  in the files; values are otherwise the decoded ones the notebooks see (no packing,
  NaN for missing);
- auxiliary coordinates (DSG ``lat``/``lon``, curvilinear 2-D grids) are variables,
  named by each data variable's ``coordinates`` attribute; text variables are DAP
  ``String`` arrays;
- global attributes are in the ``NC_GLOBAL`` container (as Hyrax and THREDDS do), so
  a global attribute named like a variable (``id``) does not clash with it;
- constraints are projections ``var[start:stride:stop]...`` separated by commas;
  selections (``&...``), an unknown variable, a malformed or out-of-range index answer
  400 with one sentence before any byte of data is sent.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib import parse

import numpy as np
import opendap_protocol as dap
import pandas as pd
import xarray as xr
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from pydantic import ConfigDict, Field
from starlette.datastructures import QueryParams
from xpublish import Dependencies, Plugin, hookimpl
from xpublish.utils.api import DATASET_ID_ATTR_KEY
from xpublish_edr import CfEdrPlugin
from xpublish_erddap import ErddapPlugin
from xpublish_opendap import OpenDapPlugin, dap_xarray
from xpublish_zarr import ZarrPlugin
from xpublish_zarr.utils import ARRAY_METADATA_SUFFIX, get_bytes, get_store

from ..catalog.core import Catalog, Entry
from ..errors import VersionNotFound
from .access import ANONYMOUS, CALLER, resolve, visible_entries

#: how many opened datasets are kept (name, version) → Dataset
OPEN_CACHE_SIZE = 64
#: the key, in an opened dataset's ``encoding``, of an object unique to that open: what
#: the values derived from it are memoised by (xpublish hands every request a new view of
#: the dataset, which keeps the encoding; an ``id`` is reused once the dataset is gone)
OPEN_TOKEN = "oceandata_open"
#: held while netCDF-C works outside xarray's locks: opening a dataset (attributes are
#: read outside the HDF5 lock) and writing a download's netCDF file (``to_netcdf`` defines
#: dimensions and variables without a lock, so one write's definitions ran beside another
#: write's locked chunk writes: bus errors and heap corruption with two downloads at once).
#: Reentrant: a write reads its source chunks in the same thread (synchronous scheduler).
NETCDF_SETUP_LOCK = threading.RLock()


class DatasetCache:
    """Opened datasets by ``(name, version)``, least recently used dropped first.

    Datasets are opened one at a time: netCDF-C is not thread-safe, and xarray's
    netCDF4 backend reads a file's attributes outside its HDF5 lock while opening, so
    two requests opening two files at once (the ERDDAP plugin opens every dataset in a
    thread pool when it builds its catalogue) crashed the process (a segmentation fault
    about once in seven test runs). Reads of values go through xarray's own lock.

    A project store is sealed and read from its shadow (as root); the walk runs before
    the lock of netCDF-C is taken (it reads no data), and the shadow is shared by the
    opens of the unchanged store (:mod:`oceandata.catalog.shadows`): a dataset holds it
    while it is cached and lets it go when it is evicted or forgotten, the last one
    removing it. Two requests for one ``(name, version)`` wait for one open.
    """

    #: locks of keys being opened (a key's is ``hash(key) % len``): bounded, shared
    STRIPES = 64

    def __init__(self, size: int = OPEN_CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str | None], xr.Dataset] = OrderedDict()
        self._held: dict[tuple[str, str | None], list[Any]] = {}
        self._lock = threading.Lock()
        self._opening = NETCDF_SETUP_LOCK
        self._keys = [threading.Lock() for _ in range(self.STRIPES)]

    @staticmethod
    def _release(held: Iterable[Any]) -> None:
        from ..catalog.shadows import SHADOWS

        for shadow in held:
            SHADOWS.release(shadow)

    def _drop(self, key: tuple[str, str | None]) -> list[Any]:
        """Remove *key* (under ``_lock``); the shadows it held, to release."""
        del self._items[key]
        return self._held.pop(key, [])

    def forget(self, names: Iterable[str]) -> None:
        """Drop the opened datasets of *names* (their catalog entries changed)."""
        names = set(names)
        released: list[Any] = []
        with self._lock:
            for key in [k for k in self._items if k[0] in names]:
                released += self._drop(key)
        self._release(released)

    @staticmethod
    def retire_derived(cache: Any, names: Iterable[str]) -> None:
        """Drop what xpublish and its plugins derived from the datasets of *names* from
        their shared cache *cache* (a ``cachey.Cache``): its keys start with the dataset
        id (``name`` or ``name@version``) and a ``/``; a store changed in place (an
        append) would otherwise keep its old Zarr metadata and chunks."""
        prefixes = tuple(p for n in names for p in (f"{n}/", f"{n}@"))
        if not prefixes:
            return
        for key in [k for k in list(cache.data) if isinstance(k, str)
                    and k.startswith(prefixes)]:
            try:
                cache.retire(key)
            except KeyError:  # retired by another request meanwhile
                pass

    def clear(self) -> None:
        """Drop every opened dataset (the service stops)."""
        self.forget({k[0] for k in list(self._items)})

    def get(self, entry: Entry, version: str | None) -> xr.Dataset:
        """The dataset of *entry* at *version*, opened once."""
        key = (entry.name, version)
        with self._lock:  # a dataset already open never waits for another being opened
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        with self._keys[hash(key) % self.STRIPES]:
            with self._lock:  # opened by another request meanwhile
                if key in self._items:
                    return self._items[key]
            # stores are served in their own chunks (a Zarr key is a stored chunk, a
            # download holds one at a time); dask's "auto" would join them to 128 MiB
            chunks = {} if entry.driver in ("zarr", "icechunk") and "chunks" not in \
                entry.args else None
            held: list[Any] = []
            try:  # the guard checked grants
                ds = entry._open(version=version, chunks=chunks, shadows=held,
                                 opening=self._opening)
            except VersionNotFound as exc:  # said without the store's path on this server
                raise HTTPException(404, f"Dataset {entry.name!r} has no version "
                                         f"{version!r}; its tags: "
                                         f"{', '.join(exc.tags) or 'none'} (or give a "
                                         "snapshot id).") from None
            ds.encoding[OPEN_TOKEN] = object()
            released: list[Any] = []
            with self._lock:
                self._items[key] = ds
                self._held[key] = held
                while len(self._items) > self.size:
                    released += self._drop(next(iter(self._items)))
            self._release(released)
        return ds


class CatalogProvider(Plugin):
    """xpublish dataset provider over an oceandata catalog (see the module docstring)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str = "oceandata-catalog"
    catalog: Any = Field(default=None, exclude=True)
    cache: Any = Field(default=None, exclude=True)

    def __hash__(self) -> int:
        return id(self)

    @hookimpl
    def get_datasets(self) -> Iterable[str]:
        """Ids of the datasets the current caller may see."""
        return list(visible_entries(self.catalog, CALLER.get()))

    @hookimpl
    def get_dataset(self, dataset_id: str) -> xr.Dataset | None:
        """The dataset *dataset_id* (``name`` or ``name@version``), None if not visible."""
        try:
            entry, version = resolve(self.catalog, dataset_id, CALLER.get())
        except HTTPException:
            return None
        return self.cache.get(entry, version)


#: DAP2 has no int8, bool or 64-bit integers: what each is served as
DAP_CASTS = {np.dtype("int8"): np.dtype("int16"), np.dtype("bool"): np.dtype("uint8"),
             np.dtype("int64"): np.dtype("float64"), np.dtype("uint64"): np.dtype("float64")}
#: the encoding keys kept when CF-encoding for DAP (times only: no packing, no fill)
_TIME_ENCODING = ("units", "calendar")


def _is_text(var: xr.Variable) -> bool:
    # "T": numpy's variable-width StringDType, as Zarr v3 stores hold text
    return var.dtype.kind in "SUT" or (var.dtype.kind == "O" and var.size > 0 and isinstance(
        var.values.flat[0], str | bytes))


def dap_compatible(ds: xr.Dataset) -> xr.Dataset:
    """*ds* CF-encoded, with every variable in a type DAP2 carries.

    Times become numbers with ``units``/``calendar`` (the file's own, kept in
    ``encoding``); auxiliary coordinates become variables (named in the ``coordinates``
    attribute of the variables they describe); text becomes ``str``. DAP2 has Byte
    (unsigned 8-bit), Int16/UInt16, Int32/UInt32, Float32/Float64 and String, so:
    ``int8`` → ``int16``, ``bool`` → ``uint8``, ``int64``/``uint64`` → ``float64``
    (exact up to 2**53), each noted in the variable's attribute ``oceandata_dap_cast``.
    An integer time axis is served as ``float64`` without that note (an encoding choice).

    Parameters
    ----------
    ds
        The dataset as opened by the catalog (decoded).

    Returns
    -------
    xarray.Dataset
        The dataset to serve over DAP2 (lazy variables stay lazy).
    """
    plain = ds.copy()
    for var in plain.variables.values():
        timelike = var.dtype.kind in "Mm" or (var.dtype.kind == "O" and not _is_text(var))
        var.encoding = ({k: v for k, v in var.encoding.items() if k in _TIME_ENCODING}
                        if timelike else {})
        if "units" in var.encoding:  # lazy (dask) times need units and dtype, or neither
            var.encoding["dtype"] = np.dtype("float64")
    variables, attrs = xr.conventions.encode_dataset_coordinates(plain)
    out: dict[str, xr.Variable] = {}
    for name, var in variables.items():
        timelike = var.dtype.kind in "Mm" or (var.dtype.kind == "O" and not _is_text(var))
        if _is_text(var):
            values = var.values
            if values.dtype.kind == "T":  # no cast to a fixed width: through objects
                values = values.astype(object)
            if values.dtype.kind in "SO":
                values = np.vectorize(lambda v: v.decode("utf-8", "replace")
                                      if isinstance(v, bytes) else str(v),
                                      otypes=[str])(values) if values.size else values
            new = xr.Variable(var.dims, np.asarray(values, dtype=str), var.attrs)
        else:
            # cast before encoding: xarray would encode bool as int8 (attribute dtype=bool)
            new = var if timelike else var.astype(DAP_CASTS.get(var.dtype, var.dtype))
            if new.dtype != var.dtype:
                new.attrs = {**var.attrs, "oceandata_dap_cast": f"{var.dtype} -> {new.dtype}"}
            new = xr.conventions.encode_cf_variable(new, name=name)
            target = DAP_CASTS.get(new.dtype)
            if target is not None:
                cast = new.astype(target)
                cast.attrs = dict(new.attrs)
                if not timelike:
                    cast.attrs["oceandata_dap_cast"] = f"{new.dtype} -> {target}"
                new = cast
        new.encoding = {}
        out[name] = new
    result = xr.Dataset(out, attrs=attrs)
    index_names = [n for n in result.variables if n in result.dims]
    return result.reset_coords().set_coords(index_names) if index_names else result


class _Attributes(dap.DAPObject):
    """A DAS-only attribute container (``NC_GLOBAL``): nothing in the DDS or the data."""

    def dds(self, constraint: str = "") -> Iterator[str]:
        yield from ()

    def dods_data(self, constraint: str = "") -> Iterator[bytes]:
        yield from ()


_DAP_NUMBER = {"i": dap.Int32, "u": dap.UInt32, "f": dap.Float64}


def dap_attribute(key: str, value: Any) -> dap.Attribute:
    """A DAS attribute; numbers and number lists typed, anything else a quoted string."""
    array = np.asarray(value) if not isinstance(value, str | bytes) else None
    if array is not None and array.dtype.kind in "iuf" and array.ndim <= 1 and array.size:
        kind = dap.Float32 if array.dtype == np.float32 else _DAP_NUMBER[array.dtype.kind]
        text = ", ".join("NaN" if v != v else repr(v.item()) for v in array.ravel())
        return dap.Attribute(name=key, value=text, dtype=kind)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return dap.Attribute(name=key, value=text, dtype=dap.String)


class _TextGrid(dap.Grid):
    """A Grid of DAP Strings, XDR-encoded as DAP2 does (count, then length + padded bytes).

    ``opendap_protocol`` writes a text array as fixed-width bytes, which clients misread.
    """

    def ddshead(self) -> str:
        """The DDS opening of a Grid (``opendap_protocol`` prints the class name)."""
        return f"{self.indent}Grid {{\n"

    def dods_data(self, constraint: str = "") -> Iterator[bytes]:
        slices = dap.parse_slice_constraint(constraint)
        values = np.asarray(self.data)[slices]
        flat = np.atleast_1d(values).ravel()
        yield np.asarray(flat.size, ">u4").tobytes()
        for item in flat:
            raw = str(item).encode("utf-8")
            yield np.asarray(len(raw), ">u4").tobytes() + raw + b"\0" * (-len(raw) % 4)
        for i, dim in enumerate(self.dimensions):
            sl = slices[i] if i < len(slices) else ...
            yield from dap.dods_encode(dim.data[sl], dim.dtype)


def dap_dataset(ds: xr.Dataset, name: str, names: Iterable[str] | None = None) -> dap.Dataset:
    """The DAP objects of :func:`dap_compatible` *ds*, only *names* (top level) if given.

    Dimensions and grids are built by ``xpublish_opendap.dap_xarray``; text variables,
    attributes and the ``NC_GLOBAL`` container here (see the module docstring).
    """
    wanted = set(names) if names is not None else None
    out = dap.Dataset(name=name)
    dims = {dim: dap_xarray.dap_dimension(ds[dim]) for dim in ds.dims}
    for dim in ds.dims:
        dims[dim].children = [dap_attribute(k, v) for k, v in ds[dim].attrs.items()]
    out.append(*(d for n, d in dims.items() if wanted is None or n in wanted))
    for var in ds.data_vars:
        if wanted is not None and var not in wanted:
            continue
        da = ds[var]
        if da.ndim == 0:  # DAP2 grids need a dimension: a scalar is a 1-element array
            da = da.expand_dims("scalar")
            dims.setdefault("scalar", dap_xarray.dap_dimension(
                xr.DataArray(np.zeros(1, "int32"), dims="scalar", name="scalar")))
        if da.dtype.kind == "U":
            grid: dap.Grid = _TextGrid(name=var, data=da.values, dtype=dap.String,
                                       dimensions=[dims[d] for d in da.dims])
        else:
            grid = dap_xarray.dap_grid(da, dims)
        grid.children = [dap_attribute(k, v) for k, v in da.attrs.items()]
        out.append(grid)
    if wanted is None:
        globs = _Attributes(name="NC_GLOBAL")
        globs.append(*(dap_attribute(k, v) for k, v in ds.attrs.items()
                       if k != DATASET_ID_ATTR_KEY))
        out.append(globs)
    return out


_PROJECTION = re.compile(r"^(?P<name>[^\[\]]+?)(?P<index>(\[[^\[\]]*\])*)$")
_INDEX = re.compile(r"\[(\d+)(?::(\d+))?(?::(\d+))?\]")


def dap_projection(constraint: str, ds: xr.Dataset) -> tuple[list[str], str]:
    """The top-level variables a DAP2 constraint asks for, and the slice it passes on.

    Parameters
    ----------
    constraint
        The URL query, unquoted (``sst.sst[0:1:11][10:20][30]`` or ``time,lat``).
    ds
        The :func:`dap_compatible` dataset.

    Returns
    -------
    tuple of (list of str, str)
        The names (empty: everything) and the constraint for ``opendap_protocol``, whose
        slice parser reads ``[a:b:c]`` as start:stop:stride (DAP says start:stride:stop),
        so strided hyperslabs are rewritten for it.

    Raises
    ------
    HTTPException
        400 for selections, an unknown variable, a malformed or out-of-range index, or
        several projections with different slices (``opendap_protocol`` applies one
        slice to every variable of a request).
    """
    if not constraint.strip():
        return [], ""
    if "&" in constraint:
        raise HTTPException(400, "DAP selections ('&...') are not supported here: ask for "
                                 "variables and index ranges only, as in sst[0:11][10:20].")
    names: list[str] = []
    slices: set[str] = set()
    passed = ""
    for part in constraint.split(","):
        match = _PROJECTION.match(part.strip())
        if match is None:
            raise HTTPException(400, f"The DAP constraint {part!r} is not name[start:stride:stop]"
                                     "... .")
        path, index = match["name"], match["index"]
        top = path.split(".")[0]
        if top not in ds.variables and top not in ds.dims:
            raise HTTPException(400, f"There is no variable {top!r} in this dataset.")
        shape = ds[top].shape or (1,)  # a dimension without a variable is served too
        ranges = _INDEX.findall(index)
        if "".join(f"[{':'.join(x for x in r if x)}]" for r in ranges) != index:
            raise HTTPException(400, f"The DAP index {index!r} of {top!r} is malformed: use "
                                     "[start], [start:stop] or [start:stride:stop].")
        if len(ranges) > len(shape):
            raise HTTPException(400, f"{top!r} has {len(shape)} dimension(s), the constraint "
                                     f"gives {len(ranges)} indexes.")
        rewritten = ""
        for (first, second, third), size in zip(ranges, shape, strict=False):
            start, stride, stop = (int(first), int(second), int(third)) if third else (
                int(first), 1, int(second) if second else int(first))
            if stride < 1 or start > stop or stop >= size:
                raise HTTPException(400, f"The index [{first}{':' + second if second else ''}"
                                         f"{':' + third if third else ''}] of {top!r} is out of "
                                         f"range: its dimension has {size} values.")
            rewritten += (f"[{start}]" if not second else f"[{start}:{stop}]" if stride == 1
                          else f"[{start}:{stop}:{stride}]")
        names.append(top)
        slices.add(rewritten)
        passed = f"{path}{rewritten}"
    if len(slices) > 1:
        raise HTTPException(400, "Ask for differently sliced variables in separate requests.")
    if len(names) > 1:
        passed = ",".join(f"{n}{next(iter(slices))}" for n in names)
    return list(dict.fromkeys(names)), passed


class DapPlugin(OpenDapPlugin):
    """``xpublish-opendap``'s routes (``.dds``, ``.das``, ``.dods``), answered here.

    The plugin's own router builds one DAP tree per dataset and streams it with the
    raw constraint, so a bad constraint fails mid-stream (a truncated 200, never a
    4xx), a constraint naming ``lat`` also sends ``latitude`` (prefix match), strides
    are misread, global attributes clash with variables of the same name (netCDF-C
    aborts on the DAS of ``dsg_profile``) and time variables that are not dimensions
    go out as garbled strings. Here each request is checked first
    (:func:`dap_projection`) and answered from a tree of the requested variables of
    :func:`dap_compatible` data (:func:`dap_dataset`), built with the plugin's converters.
    """

    @hookimpl
    def dataset_router(self, deps: Dependencies) -> APIRouter:
        """The DAP2 router over DAP2-safe datasets."""
        router = APIRouter(prefix=self.dataset_router_prefix, tags=self.dataset_router_tags)

        def prepared(dataset_id: str, ds: xr.Dataset = Depends(deps.dataset)) -> xr.Dataset:
            from .sizing import dap_ready

            return dap_ready(dataset_id, ds)

        def answer(request: Request, dataset_id: str, ds: xr.Dataset,
                   kind: str) -> StreamingResponse:
            names, passed = dap_projection(parse.unquote(request.url.query), ds)
            tree = dap_dataset(ds, dataset_id.partition("@")[0], names or None)
            if kind == "dods":
                return StreamingResponse(tree.dods(constraint=passed),
                                         media_type="application/octet-stream")
            body = "".join(getattr(tree, kind)(constraint=passed))
            return StreamingResponse(iter([body]), media_type="text/plain")

        for kind in ("dds", "das", "dods"):
            def endpoint(request: Request, dataset_id: str, kind: str = kind,
                         ds: xr.Dataset = Depends(prepared)) -> StreamingResponse:
                return answer(request, dataset_id, ds, kind)

            endpoint.__doc__ = f"OPeNDAP DAP2 {kind.upper()} response."
            router.add_api_route(f".{kind}", endpoint, methods=["GET"], name=f"dap_{kind}")
        return router


def _naive_utc(bound: str) -> str:
    """An EDR datetime bound as naive UTC ISO text (unchanged if pandas cannot read it)."""
    try:
        stamp = pd.Timestamp(bound)
    except (ValueError, TypeError):
        return bound
    if stamp is pd.NaT or stamp.tzinfo is None:
        return bound
    return stamp.tz_convert("UTC").tz_localize(None).isoformat()


def naive_datetime_query(request: Request) -> None:
    """Rewrite an EDR ``datetime`` with a zone (``...Z``) to naive UTC before the plugin.

    ``xpublish-edr`` 0.11 compares ``pd.Timestamp(datetime)`` with the dataset's naive
    time index: a zone-aware value (RFC 3339 ``2000-01-01T00:00:00Z``, what EDR clients
    send) raises ``TypeError`` there, a 500. Our time axes are UTC, so the zone is
    dropped after converting to UTC. Runs as a router dependency, before the plugin's
    query dependency reads the (re-parsed) query string.
    """
    value = request.query_params.get("datetime")
    if not value:
        return
    fixed = "/".join(_naive_utc(b) for b in value.split("/"))
    if fixed != value:
        pairs = [(k, fixed if k == "datetime" else v)
                 for k, v in request.query_params.multi_items()]
        request.scope["query_string"] = parse.urlencode(pairs).encode("latin-1")
        request._query_params = QueryParams(request.scope["query_string"])


#: the axes of a CoverageJSON domain (an ``Axes`` object forbids others)
COVJSON_AXES = frozenset({"x", "y", "z", "t", "composite"})


def covjson_fixed(doc: Any) -> Any:
    """*doc* as valid CoverageJSON, if it is a Coverage(Collection) of ``xpublish-edr``.

    The plugin's ``cf_covjson`` writes naive times (``strftime('%Z')`` is empty for a
    naive axis), which CoverageJSON requires with a zone, and makes every coordinate an
    axis, ``spatial_ref`` included, which an ``Axes`` object does not allow. Times here
    are UTC, so ``Z`` is appended; non-axis coordinates are dropped from the domain.
    """
    if not isinstance(doc, dict):
        return doc
    domains = [doc.get("domain")] + [c.get("domain") for c in doc.get("coverages", [])
                                     if isinstance(c, dict)]
    for domain in domains:
        if not isinstance(domain, dict) or not isinstance(domain.get("axes"), dict):
            continue
        axes = {k: v for k, v in domain["axes"].items() if k in COVJSON_AXES}
        t = axes.get("t", {})
        if isinstance(t.get("values"), list):
            t["values"] = [v + "Z" if isinstance(v, str) and not v.endswith("Z")
                           and "+" not in v[10:] else v for v in t["values"]]
        domain["axes"] = axes
    return doc


def _fixing_covjson(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(endpoint)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return covjson_fixed(endpoint(*args, **kwargs))

    return wrapper


def _edr_guarded(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """*endpoint* answering a 400 sentence where ``xpublish-edr`` fails on the data or
    on the query's ``crs`` (one pyproj does not know)."""
    from pyproj.exceptions import CRSError

    @functools.wraps(endpoint)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return endpoint(*args, **kwargs)
        except CRSError:
            crs = str(getattr(kwargs.get("query"), "crs", ""))[:100]
            raise HTTPException(400, f"The coordinate reference system crs={crs!r} is not "
                                     "known: give an EPSG code such as EPSG:4326 (the "
                                     "default).") from None
        except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
            if isinstance(exc, HTTPException):
                raise
            name = repr(kwargs["dataset_id"]) if "dataset_id" in kwargs else "this dataset"
            raise HTTPException(400, f"EDR cannot answer this query on {name} "
                                     f"({type(exc).__name__}); use OPeNDAP, Zarr or the "
                                     "subset download.") from None

    return wrapper


def edr_unfit(ds: xr.Dataset) -> str | None:
    """Why ``xpublish-edr`` cannot answer on *ds*, or None when it can.

    The plugin needs a regular grid (X and Y dimension coordinates; where CF attributes
    name the axes, they must be 1-D dimensions) and a time axis of numpy datetimes; on
    anything else it raises deep inside. What this cannot foresee is caught around the
    plugin's endpoints (:func:`_edr_guarded`).
    """
    import cf_xarray  # noqa: F401  (registers the .cf accessor)

    try:
        axes = ds.cf.axes
    except (KeyError, ValueError, AttributeError):
        axes = {}
    for axis in ("X", "Y"):
        if any(ds[n].ndim != 1 or n not in ds.dims for n in axes.get(axis, [])):
            return "it has no regular latitude-longitude grid"
    for name in axes.get("T", []):
        if ds[name].dtype.kind != "M":
            return "its time axis is not in the standard calendar"
    return None


def _edr_dataset(get: Callable[..., xr.Dataset]) -> Callable[..., xr.Dataset]:
    def dataset(dataset_id: str, ds: xr.Dataset = Depends(get)) -> xr.Dataset:
        reason = edr_unfit(ds)
        if reason is not None:
            raise HTTPException(404, f"EDR queries are not served for {dataset_id!r}: "
                                     f"{reason}. Use OPeNDAP, Zarr or the subset download.")
        return ds

    return dataset


class NaiveTimeEdrPlugin(CfEdrPlugin):
    """``xpublish-edr`` taking zone-aware datetimes and answering valid CoverageJSON,
    only on datasets it can serve (:func:`edr_unfit`: 404 with a sentence otherwise).

    See :func:`naive_datetime_query` and :func:`covjson_fixed`: the query routes'
    (sync) endpoints are wrapped before FastAPI builds the routes we serve, so they keep
    the plugin's parameters and dependencies.
    """

    @hookimpl
    def dataset_router(self, deps: Dependencies) -> APIRouter:
        """The plugin's EDR router, ``datetime`` made naive UTC, CoverageJSON fixed."""
        router = super().dataset_router(
            deps.model_copy(update={"dataset": _edr_dataset(deps.dataset)}))
        for route in router.routes:
            if not isinstance(route, APIRoute) or inspect.iscoroutinefunction(
                    route.endpoint):
                continue
            if route.path.rsplit("/", 1)[-1] in ("position", "area", "cube"):
                route.endpoint = _fixing_covjson(route.endpoint)
            route.endpoint = _edr_guarded(route.endpoint)
        outer = APIRouter(dependencies=[Depends(naive_datetime_query)])
        outer.include_router(router)
        return outer


#: one index of a Zarr chunk key (digits: ``int()`` would also take ``+1``, `` 1``, ``1_0``)
_CHUNK_INDEX = re.compile(r"[0-9]{1,18}")


def _zarr_chunk_counts(dataset: xr.Dataset, cache: Any, var: str) -> list[int] | None:
    """The number of chunks along each dimension of *var* as Zarr serves it, or None
    when it is not an array of the store (read from the array's ``zarr.json``)."""
    payload = get_bytes(get_store(dataset, cache), f"{var}{ARRAY_METADATA_SUFFIX}")
    if payload is None:
        return None
    meta = json.loads(payload)
    chunks = meta["chunk_grid"]["configuration"]["chunk_shape"]
    return [-(-size // chunk) for size, chunk in zip(meta["shape"], chunks, strict=True)]


def _zarr_chunk_checked(deps: Dependencies) -> Callable[..., None]:
    """The dependency of the Zarr chunk routes: 404 with one sentence for a chunk key
    that names no chunk, before ``xpublish-zarr`` runs (it failed with a 500 on an empty
    key, a key of the wrong rank and negative indices)."""
    def check(request: Request, var: str, dataset: xr.Dataset = Depends(deps.dataset),
              cache: Any = Depends(deps.cache)) -> None:
        chunk = request.path_params.get("chunk")  # None on the route of 0-d arrays
        counts = _zarr_chunk_counts(dataset, cache, var)
        if counts is None:
            raise HTTPException(404, f"Dataset {request.path_params.get('dataset_id')!r} "
                                     f"has no array {var!r} in Zarr.")
        parts = chunk.split("/") if chunk else []
        if len(parts) == len(counts) and all(
                _CHUNK_INDEX.fullmatch(p) and int(p) < n
                for p, n in zip(parts, counts, strict=True)):
            return
        key = ("c" if chunk is None else f"c/{chunk}")[:100]
        if not counts:
            form = "its one chunk is c"
        else:
            form = "its chunk keys are c/" + "/".join(f"i{k}" for k in range(len(counts))) \
                + " with " + ", ".join(f"0 <= i{k} < {n}" for k, n in enumerate(counts))
        raise HTTPException(404, f"Array {var!r} has no chunk {key!r}: {form}.")

    return check


class CheckedZarrPlugin(ZarrPlugin):
    """``xpublish-zarr`` whose chunk routes answer 404 with one sentence to a key that
    names no chunk of the array (:func:`_zarr_chunk_checked`)."""

    @hookimpl
    def dataset_router(self, deps: Dependencies) -> APIRouter:
        """The plugin's Zarr router, its chunk routes checking the key first."""
        router = super().dataset_router(deps)
        checked = Depends(_zarr_chunk_checked(deps))
        for route in router.routes:
            if isinstance(route, APIRoute) and (route.path.endswith("/{var}/c") or
                                                "/{var}/c/{chunk" in route.path):
                # include_router builds the served routes with these dependencies
                route.dependencies.append(checked)
        return router


class PublicErddapPlugin(ErddapPlugin):
    """``xpublish-erddap`` whose server-wide catalogue holds open datasets only."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    catalog: Any = Field(default=None, exclude=True)

    def __hash__(self) -> int:
        return id(self)

    @hookimpl
    def app_router(self, deps: Dependencies) -> APIRouter:
        """The server-wide ERDDAP router over the open datasets."""
        catalog = self.catalog

        def public_ids() -> list[str]:  # tables (DSG) are tabledap's (tabledap.py)
            return [name for name, entry in visible_entries(catalog, ANONYMOUS).items()
                    if entry.metadata.grid != "dsg"]

        return super().app_router(deps.model_copy(update={"dataset_ids": public_ids}))


def plugins(catalog: Catalog, cache: DatasetCache) -> dict[str, Plugin]:
    """The xpublish plugins of the service, by name."""
    return {
        "oceandata-catalog": CatalogProvider(catalog=catalog, cache=cache),
        "opendap": DapPlugin(),
        "zarr": CheckedZarrPlugin(),
        "cf_edr": NaiveTimeEdrPlugin(),
        "erddap": PublicErddapPlugin(catalog=catalog),
    }
