"""Subset downloads over HTTP: ``GET datasets/{id}/subset``, the CLI's subset as a file.

``datasets/{id}/subset?bbox=W,S,E,N&time=START/END&depth=MIN/MAX&var=a,b&format=nc4``
answers the file ``oceandata subset`` would write for the same request: the same
parsers (:func:`oceandata.io.subset.parse_bbox`, ``parse_range``, ``parse_depth``), the
same selection (:func:`oceandata.io.subset.subset`: dateline, seams, curvilinear grids,
CF-DSG), the same provenance (:func:`oceandata.io.export.with_provenance`, with the
request URL as the command) and the same netCDF-4 and CSV writers. Formats:

``nc``
    netCDF-3 (64-bit offset), uncompressed, for clients that read no netCDF-4.
``nc4``
    netCDF-4, zlib level 4: what ``oceandata subset -o OUT.nc`` writes (the default).
``csv``
    one row per point, provenance as ``# name: value`` lines first (as the CLI).
``parquet``
    the same table, one row group per dask partition; global attributes in the file's
    key-value metadata, variable attributes in each column's metadata.
``json``
    ``{"attributes": {...}, "table": {"columnNames", "columnUnits", "rows"}}`` (the
    table layout of ERDDAP's ``.json``), rows written one dask partition at a time.

Every request is estimated from metadata first, by the size guard of every route
(:mod:`.sizing`, which hands its plan to the route): above the caller's limit
(:func:`download_limit`) the answer is ``413`` with a JSON body holding the estimate, the
limit and a split into requests that fit, each with its URL. Otherwise the subset is
written through dask (memory bounded by chunks, at most :data:`MAX_WRITES` writes at
once) into a private temporary folder, the file is opened and its folder removed at once,
and the open file is streamed in :data:`CHUNK` pieces with ``Content-Length`` and
``Content-Disposition``: nothing is left on disk whatever happens to the connection.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any

import anyio
import numpy as np
import pandas as pd
import xarray as xr
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse

from ..errors import DataError, UsageError
from ..io.estimate import SizeEstimate, format_bytes
from ..io.export import output_encoding, table_blocks, with_provenance, write_csv
from ..io.subset import parse_bbox, parse_depth, parse_range
from .protocols import NETCDF_SETUP_LOCK
from .traffic import cancellable, synchronous

__all__ = ["CHUNK", "FORMATS", "MAX_WRITES", "download_limit", "parse_request", "provenance",
           "router"]

router = APIRouter()

#: bytes per piece of a streamed file
CHUNK = 1024 * 1024
#: subsets written at the same time by one service process (the others wait their turn)
MAX_WRITES = 2
#: query parameters never recorded in a file's provenance (credentials)
_SECRET_PARAMS = {"token", "access_token", "api_key"}
#: significant digits of floats in JSON (float32 and float64 values read back exactly)
_JSON_FLOAT_DIGITS = 15


def download_limit(request: Request | None = None) -> int:
    """The largest answer in bytes streamed to *request*'s caller.

    The ``sync_bytes`` of the caller's access class (:func:`.policy.limits_for`:
    anonymous, registered or partner; without a request, the anonymous class);
    ``app.state.max_download``, when an application sets it (tests, embedding), instead.
    The legacy setting ``OCEANDATA_MAX_DOWNLOAD``, when the operator sets it, caps every
    class (its default is not applied: the classes' limits are).

    Parameters
    ----------
    request
        The request (its application and caller).

    Raises
    ------
    HTTPException
        500 when a limit is not a positive size (the operator's fault).
    """
    from ..config import parse_size
    from .policy import limits_for, traffic_settings

    own = getattr(request.app.state, "max_download", None) if request is not None else None
    try:
        if own is not None:
            return parse_size(str(own), "max_download")
        limits = (limits_for(request)[1] if request is not None
                  else traffic_settings().anonymous)
        limit = limits.sizes()["sync_bytes"]
        legacy = next((v for k, v in os.environ.items()
                       if k.upper() == "OCEANDATA_MAX_DOWNLOAD"), None)
        if legacy is not None:
            limit = min(limit, parse_size(legacy, "OCEANDATA_MAX_DOWNLOAD"))
        return limit
    except UsageError as exc:
        raise HTTPException(500, f"The server's download limit is wrong ({exc}); report it to "
                                 "its operators.") from None


# --------------------------------------------------------------------------- formats


#: the scheduler of a download's write: one chunk at a time. netCDF writes are serialised
#: by the HDF5 lock anyway, and threads would read chunks ahead of the writes: on a 512 MB
#: download the service then held 630 MiB more instead of 160 (and more with more cores).
#: dask's synchronous scheduler, stopped between tasks when the request is cancelled
#: (:func:`.traffic.synchronous`, inside :func:`.traffic.cancellable`).
WRITE_SCHEDULER = synchronous


def _to_netcdf(ds: xr.Dataset, path: Path, **kwargs: Any) -> None:
    """Write a netCDF file chunk by chunk, one netCDF write at a time in the process.

    The whole write holds :data:`.protocols.NETCDF_SETUP_LOCK`: xarray defines the
    file's dimensions and variables without its locks, and netCDF-C is not thread-safe,
    so one write's definitions must not run beside another write's chunks. Values were
    written one at a time anyway (xarray's HDF5 lock); CSV, Parquet and JSON writes are
    not held back.
    """
    with NETCDF_SETUP_LOCK:
        try:
            delayed = ds.to_netcdf(path, engine="netcdf4", compute=False, **kwargs)
            delayed.compute(scheduler=WRITE_SCHEDULER)
        except BaseException:
            _close_unfinished(path)
            raise


def _close_unfinished(path: Path) -> None:
    """Close the file of a write that stopped (cancelled, failed) under netCDF-C's locks.

    A stopped write leaves its file open in xarray's file cache, to be closed later by
    garbage collection or cache eviction in whatever thread, without the locks: while
    another thread was in netCDF-C, that corrupted the process's heap (bus errors and
    "unaligned tcache chunk" aborts after cancelled downloads).
    """
    from xarray.backends.file_manager import FILE_CACHE
    from xarray.backends.locks import HDF5_LOCK, NETCDFC_LOCK

    target = os.path.abspath(path)
    with NETCDFC_LOCK, HDF5_LOCK:  # the caller holds NETCDF_SETUP_LOCK
        for key, handle in list(FILE_CACHE.items()):
            filepath = getattr(handle, "filepath", None)
            try:
                same = filepath is not None and os.path.abspath(filepath()) == target
            except (OSError, ValueError, RuntimeError):  # closed, or not a netCDF4 file
                same = False
            if same:
                with contextlib.suppress(Exception):
                    FILE_CACHE.pop(key).close()


def _write_netcdf4(ds: xr.Dataset, path: Path) -> None:
    """netCDF-4 as :func:`oceandata.io.export.export` writes it (zlib 4, dask chunks)."""
    _to_netcdf(output_encoding(ds, compress=True), path)


def _write_netcdf3(ds: xr.Dataset, path: Path) -> None:
    """netCDF-3 64-bit offset, uncompressed (xarray casts int64/bool where they fit)."""
    _to_netcdf(_netcdf3_times(output_encoding(ds, compress=False)), path,
               format="NETCDF3_64BIT")


def _netcdf3_times(ds: xr.Dataset) -> xr.Dataset:
    """*ds* with times netCDF-3 can hold: ``float64`` seconds since the same reference.

    netCDF-3 has no 64-bit integers. Times encoded as ``int64`` (a store's ``nanoseconds
    since ...``, or chunked times xarray must encode without seeing them) failed the
    download with a 500 ("could not safely cast array from int64 to int32"). Seconds in
    ``float64`` keep a microsecond over centuries. Model times (cftime, any calendar)
    alike. Changes the encodings in place.
    """
    from xarray.coding.times import contains_cftime_datetimes

    for var in ds.variables.values():
        # cftime objects: model times in other calendars
        dates = var.dtype.kind == "M" or (var.dtype.kind == "O" and
                                          contains_cftime_datetimes(var))
        if not dates and var.dtype.kind != "m":
            continue
        enc = var.encoding
        dtype = np.dtype(enc.get("dtype", "int64"))
        if dtype.kind not in "iu" or dtype.itemsize < 8:
            continue  # int32, float32 or float64 on file: netCDF-3 holds them
        _, since, reference = str(enc.get("units", "")).partition(" since ")
        if dates:
            enc["units"] = f"seconds since {reference.strip() if since else '1970-01-01'}"
        else:
            enc["units"] = "seconds"
        enc["dtype"] = np.dtype("float64")
    return ds


def _write_csv_file(ds: xr.Dataset, path: Path) -> None:
    """CSV with the ``#`` provenance lines, the CLI's writer."""
    write_csv(ds, path)


def _attr_text(value: Any) -> str:
    value = _jsonable(value)
    return value if isinstance(value, str) else json.dumps(value)


def _jsonable(value: Any) -> Any:
    """An attribute value as JSON takes it (numpy scalars and arrays become Python)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _write_parquet(ds: xr.Dataset, path: Path) -> None:
    """One row group per table block; attributes in the schema's key-value metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = ds.reset_coords()
    _, blocks = table_blocks(ds)
    writer = None
    try:
        for part in blocks:
            table = pa.Table.from_pandas(part, preserve_index=False)
            if writer is None:
                fields = [
                    field.with_metadata({str(k): _attr_text(v)
                                         for k, v in flat[field.name].attrs.items()})
                    if field.name in flat.variables and flat[field.name].attrs else field
                    for field in table.schema]
                metadata = {**(table.schema.metadata or {}),
                            **{str(k).encode(): _attr_text(v).encode()
                               for k, v in ds.attrs.items()}}
                schema = pa.schema(fields, metadata=metadata)
                writer = pq.ParquetWriter(path, schema, compression="zstd")
            writer.write_table(table.cast(schema))
        if writer is None:  # pragma: no cover - a subset always has a partition
            raise DataError("the subset has no rows to write as Parquet")
    finally:
        if writer is not None:
            writer.close()


def _write_json(ds: xr.Dataset, path: Path) -> None:
    """ERDDAP's ``.json`` table plus the attributes, one table block at a time."""
    flat = ds.reset_coords()
    columns, blocks = table_blocks(ds)
    units = [str(flat[c].attrs.get("units", "")) if c in flat.variables else ""
             for c in columns]
    head = {"attributes": {str(k): _jsonable(v) for k, v in ds.attrs.items()},
            "table": {"columnNames": columns, "columnUnits": units}}
    text = json.dumps(head, ensure_ascii=False)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text[:-2] + ', "rows": [')  # reopen the table object: ...}} -> ..., "rows": [
        first = True
        for part in blocks:
            if part.empty:
                continue
            rows = part.to_json(orient="values", date_format="iso",
                                double_precision=_JSON_FLOAT_DIGITS)
            fh.write(("" if first else ",") + rows[1:-1])
            first = False
        fh.write("]}}")


@dataclass(frozen=True)
class Format:
    """An output format of the service."""

    name: str
    media_type: str
    suffix: str
    #: which size of :func:`oceandata.io.estimate.estimate` applies (None: computed here)
    estimate: str | None
    write: Callable[[xr.Dataset, Path], None]
    title: str


#: the formats by their ``format=`` name
FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("nc", "application/x-netcdf", ".nc", "netcdf", _write_netcdf3, "netCDF-3"),
    Format("nc4", "application/x-netcdf", ".nc", "netcdf", _write_netcdf4, "netCDF-4"),
    Format("csv", "text/csv", ".csv", "csv", _write_csv_file, "CSV"),
    Format("parquet", "application/vnd.apache.parquet", ".parquet", None, _write_parquet,
           "Parquet"),
    Format("json", "application/json", ".json", None, _write_json, "JSON"),
)}


def _table_sizes(ds: xr.Dataset, rows: int) -> dict[str, SizeEstimate]:
    """Parquet and JSON sizes from dtypes, as :mod:`oceandata.io.estimate` does for CSV."""
    flat = ds.reset_coords()
    names = [*map(str, flat.dims), *(str(n) for n in flat.data_vars)]
    plain = json_width = 0.0
    for name in names:
        dtype = flat[name].dtype if name in flat.variables else np.dtype("int64")
        plain += dtype.itemsize if dtype.kind != "O" else 16
        json_width += 1 + {"f": 18, "M": 26, "b": 5}.get(
            dtype.kind, len(str(np.iinfo(dtype).min)) if dtype.kind in "iu" else 24)
    attrs = sum(len(str(k)) + len(str(v)) + 8 for k, v in ds.attrs.items())
    return {
        "parquet": SizeEstimate("parquet", int(64 * 1024 + attrs + rows * plain), "estimate",
                                "uncompressed column bytes; zstd usually writes 2-5x less"),
        "json": SizeEstimate("json", int(1024 + attrs + rows * (json_width + 2)), "estimate",
                             "rows x printed width (15 significant digits, ISO times)"),
    }


# --------------------------------------------------------------------------- requests


def _variables(var: list[str] | None) -> list[str] | None:
    """``var=a,b`` and repeated ``var=`` as one list (None: every variable)."""
    if not var:
        return None
    names = [n.strip() for item in var for n in item.split(",") if n.strip()]
    if not names:
        raise UsageError("var is empty: give data variable names, e.g. var=sst or var=a,b")
    return names


def parse_request(bbox: str | None, time: str | None, depth: str | None,
                  var: list[str] | str | None) -> dict[str, Any]:
    """A download's query (``bbox``, ``time``, ``depth``, ``var``) parsed as the CLI's.

    Returns
    -------
    dict
        ``bbox``, ``time``, ``depth`` and ``variables`` for
        :func:`oceandata.io.subset.subset` (None where not given).
    """
    return {"bbox": parse_bbox(bbox, option="bbox") if bbox is not None else None,
            "time": parse_range(time, option="time") if time is not None else None,
            "depth": parse_depth(depth, option="depth") if depth is not None else None,
            "variables": _variables([var] if isinstance(var, str) else var)}


def _version(request: Request, query: str | None) -> str | None:
    """The version asked by the id (``name@version``) or ``version=``, not both differing."""
    from_id = getattr(request.state, "version", None)
    if query is not None and not query.strip():
        raise UsageError("version is empty: give a tag or snapshot id, or leave it out")
    if from_id is not None and query is not None and from_id != query.strip():
        raise UsageError(f"the dataset id asks for version {from_id!r} but version= asks for "
                         f"{query.strip()!r}: give one of them")
    return from_id if query is None else query.strip()


def _recorded_url(request: Request) -> str:
    """The request URL as recorded in provenance, without credentials in the query."""
    url = request.url
    secret = [k for k in request.query_params if k.lower() in _SECRET_PARAMS]
    return str(url.remove_query_params(secret)) if secret else str(url)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._,+-]+", "-", text)


def filename(dataset_id: str, request: Mapping[str, Any], fmt: Format) -> str:
    """``<id>_<W,S,E,N>_<start--end>_<min--max>m_<a+b><suffix>`` from the parsed request.

    Ranges use ``--``, ISO 8601's interval separator for file names; an open side is
    empty. Characters other than letters, digits and ``._,+-`` become ``-``.
    """
    parts = [dataset_id.replace("@", "-")]
    if request.get("bbox"):
        parts.append(",".join(f"{v:g}" for v in request["bbox"]))
    for key in ("time", "depth"):
        if request.get(key):
            parts.append("--".join("" if v is None else (f"{v:g}" if isinstance(v, float)
                                                         else str(v)) for v in request[key])
                         + ("m" if key == "depth" else ""))
    if request.get("variables"):
        parts.append("+".join(request["variables"]))
    return "_".join(_slug(p) for p in parts)[:200] + fmt.suffix


# --------------------------------------------------------------------------- splits
# (used by the size guard, :func:`.sizing._split`, for every protocol)


def _time_pieces(cut: xr.Dataset, parts: int) -> list[str] | None:
    """``parts`` consecutive ``START/END`` periods with equal numbers of time steps."""
    times = [c for name, c in cut.coords.items()
             if c.ndim == 1 and c.dims[0] == name and c.dtype.kind in "MO"]
    if not times or times[0].size < parts:
        return None
    values = times[0].to_index()
    if isinstance(values, pd.DatetimeIndex):
        whole_days = bool((values == values.normalize()).all())
        text = values.strftime("%Y-%m-%d" if whole_days else "%Y-%m-%dT%H:%M:%S")
    else:  # cftime
        text = pd.Index([v.isoformat() for v in values])
    edges = np.linspace(0, values.size, parts + 1).round().astype(int)
    return [f"{text[a]}/{text[b - 1]}" for a, b in itertools.pairwise(edges)]


def _bbox_pieces(request: Mapping[str, Any], parts: int) -> list[str]:
    """``parts`` boxes side by side along longitude covering the requested box."""
    west, south, east, north = request.get("bbox") or (-180.0, -90.0, 180.0, 90.0)
    width = (east - west) % 360.0 or 360.0
    step = width / parts
    pieces = []
    for i in range(parts):
        w = (west + i * step + 180.0) % 360.0 - 180.0
        e = (west + (i + 1) * step + 180.0) % 360.0 - 180.0
        e = 180.0 if i == parts - 1 and e == -180.0 else e
        pieces.append(",".join(f"{v:.6g}" for v in (w, south, e, north)))
    return pieces


# --------------------------------------------------------------------------- writing


def provenance(cut: xr.Dataset, entry: Any, parsed: Mapping[str, Any], version: str | None,
               url: str, source: str | None = None) -> xr.Dataset:
    """The subset with the provenance of a download: the request URL as the command.

    Shared by the synchronous download and the batch job of an asynchronous one
    (:mod:`.subset_job`), so both files say the same.

    Parameters
    ----------
    cut
        The selected subset.
    entry
        Its catalog entry (license, citation and DOI are copied from its metadata).
    parsed
        The parsed request (:func:`parse_request`).
    version
        The version of a versioned store, if one was asked.
    url
        The download's URL, without credentials.
    source
        The source recorded (default the entry's name).

    Returns
    -------
    xarray.Dataset
        *cut* with ``history``, ``source_url``, ``source_version`` and the entry's terms.
    """
    out = with_provenance(cut, source=source or entry.name,
                          request={k: v for k, v in parsed.items() if v}, command=f"GET {url}")
    out.attrs["source_url"] = url
    if version is not None:
        out.attrs["source_version"] = version
    for key in ("license", "citation", "doi"):
        value = getattr(entry.metadata, key, None)
        if value:
            out.attrs.setdefault(key, str(value).strip())
    return out


def _prepare(request: Request, full: xr.Dataset, parsed: dict[str, Any], fmt: Format,
             source: str, version: str | None, url: str, folder: Path) -> tuple[IO[bytes], int]:
    """Write the subset into *folder* (refused above the limit); return it opened, and its
    size."""
    from .sizing import subset_plan

    plan = getattr(request.state, "subset_plan", None)  # the size guard's, normally
    if plan is None or plan.full is not full or plan.parsed != parsed or plan.fmt is not fmt:
        plan = subset_plan(full, parsed, fmt)
    cut, size = plan.cut, plan.size
    limit = download_limit(request)
    if size.bytes > limit:  # the size guard answered 413 already; a changed limit
        raise HTTPException(413, f"This subset would be {format_bytes(size.bytes)}, above the "
                                 f"download limit of {format_bytes(limit)}: ask for less.")
    free = shutil.disk_usage(folder).free
    # an estimate must fit; an upper bound (compressed netCDF) is usually 2-5x the file
    if size.bytes > (free if size.kind == "estimate" else 4 * free):
        raise HTTPException(507, f"The server has {format_bytes(free)} free for downloads, too "
                                 f"little for this {format_bytes(size.bytes)} subset; try a "
                                 "smaller one or later.")
    out = provenance(cut, request.state.entry, parsed, version, url, source=source)
    path = folder / f"subset{fmt.suffix}"
    try:
        with cancellable(request):  # stops between dask tasks when the client goes away
            fmt.write(out, path)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise HTTPException(507, "The server ran out of space writing this subset; try a "
                                     "smaller one or later.") from None
        raise
    except (ValueError, TypeError) as exc:
        if isinstance(exc, UsageError):
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = " (netCDF-3 cannot hold every type: try format=nc4)" if fmt.name == "nc" else ""
        raise DataError(f"this subset cannot be written as {fmt.title}: {first}{hint}") from exc
    fh = open(path, "rb")  # closed by the response's iterator (_stream)
    return fh, os.fstat(fh.fileno()).st_size


async def _stream(fh: IO[bytes]) -> AsyncIterator[bytes]:
    """The open file in :data:`CHUNK` pieces, read off the event loop; closed at the end."""
    try:
        while chunk := await anyio.to_thread.run_sync(fh.read, CHUNK):
            yield chunk
    finally:
        fh.close()


def _limiter(request: Request) -> anyio.CapacityLimiter:
    state = request.app.state
    limiter = getattr(state, "download_writers", None)
    if limiter is None:
        limiter = state.download_writers = anyio.CapacityLimiter(MAX_WRITES)
    return limiter


@router.get("/datasets/{dataset_id}/subset", summary="Download a subset as a file")
async def download_subset(
    request: Request,
    dataset_id: str,
    bbox: Annotated[str | None, Query(description="W,S,E,N in degrees; W > E crosses the "
                                                  "antimeridian, e.g. 170,-10,-170,10")] = None,
    time: Annotated[str | None, Query(description="START/END ISO dates, either side may be "
                                                  "empty, e.g. 1990-01/1990-12")] = None,
    depth: Annotated[str | None, Query(description="MIN/MAX metres, positive down")] = None,
    var: Annotated[list[str] | None, Query(description="variables to keep: var=a,b or "
                                                       "repeated var=")] = None,
    format: Annotated[str, Query(description="nc, nc4, csv, parquet or json")] = "nc4",
    version: Annotated[str | None, Query(description="tag or snapshot of a versioned "
                                                     "store (or use name@version)")] = None,
) -> Response:
    """The subset of a dataset as a file, as ``oceandata subset`` writes it.

    Parameters
    ----------
    request
        The request; the guard has set ``state.entry`` and ``state.version``.
    dataset_id
        ``name`` or ``name@version``.
    bbox, time, depth, var
        The request, in the command line's forms.
    format
        ``nc`` (netCDF-3), ``nc4`` (netCDF-4, the default), ``csv``, ``parquet``, ``json``.
    version
        Tag or snapshot of a versioned store.

    Returns
    -------
    starlette.responses.Response
        The file streamed as an attachment, or 413 with the estimate and a split.
    """
    fmt = FORMATS.get(format.strip().lower())
    if fmt is None:
        raise UsageError(f"format {format!r} is not one of {', '.join(FORMATS)}")
    parsed = parse_request(bbox, time, depth, var)
    chosen = _version(request, version)
    entry = request.state.entry
    url = _recorded_url(request)
    full = await anyio.to_thread.run_sync(request.app.state.cache.get, entry, chosen)
    folder = Path(tempfile.mkdtemp(prefix="oceandata-download-",
                                   dir=getattr(request.app.state, "download_dir", None)))
    try:
        fh, size = await anyio.to_thread.run_sync(
            _prepare, request, full, parsed, fmt, entry.name, chosen, url, folder,
            limiter=_limiter(request))
    finally:
        # the file stays readable through its open handle; nothing is left on disk
        with contextlib.suppress(OSError):
            shutil.rmtree(folder)
    name = filename(dataset_id if chosen is None else f"{entry.name}@{chosen}", parsed, fmt)
    return StreamingResponse(
        _stream(fh), media_type=fmt.media_type,
        headers={"Content-Length": str(size),
                 "Content-Disposition": f'attachment; filename="{name}"',
                 "Cache-Control": "private, no-store"})
