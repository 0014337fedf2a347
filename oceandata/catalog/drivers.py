"""How each catalog driver opens its source as a lazy ``xarray.Dataset``.

One function a driver, one contract: ``open(paths_or_url, args, chunks) -> Dataset``.
The driver names and arguments are intake-xarray's (``netcdf``, ``zarr``, ``opendap``)
so the same YAML opens with ``intake.open_catalog``; ``csv`` tables become a Dataset
indexed by their first parsed column.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import DataError

Opener = Callable[[Sequence[str], dict[str, Any], Any], xr.Dataset]


def _describe_read_error(target: str, exc: Exception) -> DataError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(
        f"cannot read {target}: the file is truncated, corrupt or not in the expected format "
        f"({reason}); fetch it again (`oceandata sample fetch --force NAME` for sample data)"
    )


def _check_classic_complete(path: str) -> None:
    """Refuse a netCDF-3 file shorter than its header says.

    netCDF-C reads past the end of a truncated classic file as fill values without an
    error, so a cut download would otherwise pass as data. scipy's reader maps every
    variable at the offset its header declares and fails when the bytes are not there.
    HDF5-based files need no check: the HDF5 library refuses them on open.
    """
    local = Path(path)
    if not local.is_file():
        return
    with open(local, "rb") as fh:
        if fh.read(3) != b"CDF":
            return
    from scipy.io import netcdf_file

    try:
        with netcdf_file(local, mmap=True, maskandscale=False) as nc:
            nc.variables.clear()
    except (ValueError, TypeError, OSError) as exc:
        raise _describe_read_error(path, exc) from exc


def _open_netcdf(paths: Sequence[str], args: dict[str, Any], chunks: Any) -> xr.Dataset:
    kwargs = dict(args.get("xarray_kwargs") or {})
    kwargs.setdefault("chunks", chunks)
    # an explicit engine skips xarray's guessing through every installed backend plugin
    kwargs.setdefault("engine", "netcdf4")
    for path in paths:
        _check_classic_complete(path)
    try:
        return _open_netcdf_checked(paths, args, kwargs)
    except NotImplementedError:
        # dask cannot size object (string) variables for "auto" chunks, as in CF-DSG
        # files with station names: fall back to the file's own chunks.
        if kwargs.get("chunks") != "auto":
            raise
        return _open_netcdf_checked(paths, args, {**kwargs, "chunks": {}})


def _open_netcdf_checked(paths: Sequence[str], args: dict[str, Any],
                         kwargs: dict[str, Any]) -> xr.Dataset:
    try:
        if len(paths) == 1:
            return xr.open_dataset(paths[0], **kwargs)
        kwargs.setdefault("combine", args.get("combine") or "by_coords")
        if args.get("concat_dim"):
            kwargs.setdefault("concat_dim", args["concat_dim"])
        kwargs.setdefault("data_vars", "minimal")
        kwargs.setdefault("coords", "minimal")
        kwargs.setdefault("compat", "override")
        return xr.open_mfdataset(list(paths), **kwargs)
    except NotImplementedError:
        raise
    except (OSError, ValueError, RuntimeError) as exc:
        raise _describe_read_error(", ".join(paths[:3]), exc) from exc


def _open_zarr(paths: Sequence[str], args: dict[str, Any], chunks: Any) -> xr.Dataset:
    kwargs = dict(args.get("xarray_kwargs") or {})
    kwargs.setdefault("chunks", chunks)
    try:
        return xr.open_zarr(paths[0], **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise _describe_read_error(paths[0], exc) from exc


def _open_opendap(paths: Sequence[str], args: dict[str, Any], chunks: Any) -> xr.Dataset:
    kwargs = dict(args.get("xarray_kwargs") or {})
    kwargs.setdefault("chunks", chunks)
    kwargs.setdefault("engine", args.get("engine") or "netcdf4")
    try:
        return xr.open_dataset(paths[0], **kwargs)
    except OSError as exc:
        raise DataError(f"cannot reach OPeNDAP server at {paths[0]}: {exc}") from exc


def _open_csv(paths: Sequence[str], args: dict[str, Any], chunks: Any) -> xr.Dataset:
    """A table as a Dataset indexed by one column, or by date and time columns joined.

    ``args``: ``csv_kwargs`` (passed to :func:`pandas.read_csv`), ``datetime_columns``
    (columns joined with a space and parsed as the index, e.g. ``[Date, Time (GMT)]``),
    ``index_name`` (default ``time`` when ``datetime_columns`` is given), ``rename``
    (column → variable name) and ``attrs`` (variable → attributes, e.g. units).
    """
    import pandas as pd

    csv_kwargs = dict(args.get("csv_kwargs") or {})
    index = csv_kwargs.pop("index_col", None)
    try:
        frame = pd.concat([pd.read_csv(p, **csv_kwargs) for p in paths], ignore_index=True)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise _describe_read_error(", ".join(paths[:3]), exc) from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    joined = args.get("datetime_columns")
    if joined:
        missing = [c for c in joined if c not in frame.columns]
        if missing:
            raise DataError(f"{paths[0]}: datetime columns {missing} not in {list(frame.columns)}")
        index = args.get("index_name") or "time"
        text = frame[joined].astype(str).agg(" ".join, axis=1)
        try:
            frame[index] = pd.to_datetime(text, format=args.get("datetime_format"))
        except ValueError as exc:
            raise DataError(f"{paths[0]}: cannot parse {joined} as dates: {exc}") from exc
        frame = frame.drop(columns=joined)
    elif index is None:
        index = frame.columns[0]
    if index not in frame.columns:
        raise DataError(f"{paths[0]}: index column {index!r} not in {list(frame.columns)}")
    frame = frame.rename(columns=args.get("rename") or {})
    ds = xr.Dataset.from_dataframe(frame.set_index(index))
    for name, attrs in (args.get("attrs") or {}).items():
        if name in ds.variables:
            ds[name].attrs.update(attrs)
    ds.attrs.update(args.get("global_attrs") or {})
    return ds.chunk(chunks if chunks not in (None, {}) else "auto")


def _open_icechunk(paths: Sequence[str], args: dict[str, Any], chunks: Any) -> xr.Dataset:
    """An Icechunk repository (or plain Zarr v3 store) written by ``oceandata ingest``.

    ``args.version`` pins a tag or snapshot id; without it the newest commit is read.
    ``chunks="auto"`` is taken as the store's own chunks, which the ingest planned.
    """
    from ..ingest.store import open_store

    return open_store(paths[0], version=args.get("version"),
                      chunks=None if chunks in ("auto", None) else chunks)


DRIVERS: dict[str, Opener] = {
    "netcdf": _open_netcdf,
    "zarr": _open_zarr,
    "opendap": _open_opendap,
    "csv": _open_csv,
    "icechunk": _open_icechunk,
}

_SUFFIX_DRIVER = {".nc": "netcdf", ".nc4": "netcdf", ".cdf": "netcdf", ".h5": "netcdf",
                  ".zarr": "zarr", ".csv": "csv", ".icechunk": "icechunk"}


def driver_for_path(path: str | Path) -> str:
    """Guess the driver of a local path or URL from its suffix.

    Raises
    ------
    DataError
        When the suffix is not one oceandata can open.
    """
    text = str(path).rstrip("/")
    if (Path(text) / "snapshots").is_dir() and (Path(text) / "refs").is_dir():
        return "icechunk"  # an Icechunk repository, whatever its name
    if text.startswith(("http://", "https://")) and not text.endswith((".zarr", ".csv")):
        return "opendap"
    suffix = Path(text).suffix.lower()
    if suffix in _SUFFIX_DRIVER:
        return _SUFFIX_DRIVER[suffix]
    valid = ", ".join(sorted(_SUFFIX_DRIVER))
    raise DataError(f"cannot tell how to open {text!r}: suffix {suffix or '(none)'} is not one "
                    f"of {valid}")


def open_source(driver: str, paths: Sequence[str], args: dict[str, Any], *,
                chunks: Any = "auto",
                fix_attrs: dict[str, dict[str, Any]] | None = None,
                references: Any = None) -> xr.Dataset:
    """Open *paths* with *driver* lazily, applying attribute fixes before CF decoding.

    Parameters
    ----------
    driver
        One of ``netcdf``, ``zarr``, ``opendap``, ``csv``.
    paths
        Local paths (several for a multi-file NetCDF source) or one URL.
    args
        The catalog entry's ``args`` (``xarray_kwargs``, ``csv_kwargs``...).
    chunks
        Dask chunks passed to xarray (``"auto"``, ``{}`` for the file's own chunks...).
    fix_attrs
        ``{variable: {attribute: value}}`` set before decoding, for files whose CF
        metadata are incomplete (e.g. a calendar only stated in a global attribute).
    references
        For a many-file ``netcdf`` source: its current kerchunk reference index (an
        :class:`oceandata.catalog.references.IndexStatus` that is usable), opened instead
        of every file's header.

    Returns
    -------
    xarray.Dataset
        Dask-backed and CF-decoded.
    """
    try:
        opener = DRIVERS[driver]
    except KeyError:
        raise DataError(f"unknown driver {driver!r}; valid drivers: {', '.join(DRIVERS)}") from None
    if not paths:
        raise DataError(f"no files to open for driver {driver!r}")
    if references is not None:
        if driver != "netcdf":
            raise DataError(f"a reference index opens netcdf sources, not {driver!r} ones")
        from .references import open_references

        def opener(_paths: Sequence[str], args: dict[str, Any], chunks: Any) -> xr.Dataset:
            return open_references(references.refs, args, chunks, token=references.token,
                                   attr_types=references.attr_types)
    if not fix_attrs:
        return _one_fill_value(opener(paths, args, chunks))
    raw_args = dict(args)
    raw_args["xarray_kwargs"] = {**(args.get("xarray_kwargs") or {}), "decode_cf": False}
    ds = opener(paths, raw_args, chunks)
    for name, attrs in fix_attrs.items():
        if name == "global":
            ds.attrs.update(attrs)
        elif name in ds.variables:
            ds[name].attrs.update(attrs)
        else:
            raise DataError(f"fix_attrs names {name!r}, which is not a variable of {paths[0]}")
    decode = {k: v for k, v in (args.get("xarray_kwargs") or {}).items()
              if k in ("decode_times", "mask_and_scale", "decode_coords", "use_cftime",
                       "decode_timedelta")}
    # decode_times=False is there for plain intake; the fixed attributes make times decodable.
    if any({"calendar", "units"} & set(attrs) for attrs in fix_attrs.values()):
        decode.pop("decode_times", None)
    if "use_cftime" in decode:
        from xarray.coders import CFDatetimeCoder

        decode["decode_times"] = CFDatetimeCoder(use_cftime=decode.pop("use_cftime"))
    return _one_fill_value(xr.decode_cf(ds, **decode))


def _one_fill_value(ds: xr.Dataset) -> xr.Dataset:
    """*ds* with one mask value per variable in its encoding, so it can be written again.

    A store ingested from a source with ``missing_value`` and no ``_FillValue`` opens
    with the Zarr array's fill value (NaN) as ``_FillValue`` beside the source's
    ``missing_value`` (1e35...). Both were applied when decoding; xarray refuses to
    encode them again ("conflicting _FillValue and missing_value"), which failed every
    re-encoding: netCDF downloads, the Zarr view, a user's ``to_netcdf``. The source's
    ``missing_value`` becomes ``_FillValue`` too (it is what its chunks hold); a list of
    several missing values is dropped (decoded values are NaN there already). Changes
    the encodings in place and returns *ds*.
    """
    for var in ds.variables.values():
        enc = var.encoding
        if "_FillValue" not in enc or "missing_value" not in enc:
            continue
        fill, missing = np.asarray(enc["_FillValue"]), np.asarray(enc["missing_value"])
        if fill.size == missing.size and np.array_equal(
                fill, missing, equal_nan=fill.dtype.kind in "fc" and missing.dtype.kind in "fc"):
            continue
        if missing.size == 1:
            enc["_FillValue"] = enc["missing_value"]
        else:
            del enc["missing_value"]
    return ds
