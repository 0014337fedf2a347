"""How big an output will be, and what it costs to read, before anything is written.

:func:`estimate` answers from metadata alone: dimension sizes, dtypes, attributes, the
stored chunk shapes and the coordinate values that :func:`oceandata.subset` reads anyway.
No data variable is read. For each output format that :func:`oceandata.io.export`
writes it gives a size:

``csv`` (an *estimate*)
    rows x the printed width of one row, plus the ``#`` provenance lines and the header.
    A coordinate column's width is measured by printing its values with pandas (exact,
    as each value repeats the same number of times); a data column's width comes from
    its dtype (``float32`` ~10 characters, ``float64`` ~19, integers by their digits).
    Missing values print as nothing, so masked data (land in an SST field) write less
    than estimated; exponent forms (``1.2345678e-05``) write more.
``netcdf``, ``zarr`` (an *upper bound*)
    both compress (zlib level 4; Zarr's default zstd), and how well depends on the
    values, which are not read. The bound is the uncompressed size plus the worst
    expansion of the codec and a fixed allowance per file, variable and chunk, so the
    written size is at or below it: typically one half to one fifth of it.

It also gives the bytes and number of stored chunks the request reads (see
:func:`oceandata.ingest.chunks.read_plan`), the free space at the target
(:func:`shutil.disk_usage`) and the configured limit ``OCEANDATA_MAX_OUTPUT``.
:meth:`OutputEstimate.check` refuses a write above the limit or the free space with one
line giving the estimate and a split that would fit.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import OutputTooLarge, UsageError

__all__ = ["FORMAT_NAMES", "OutputEstimate", "SizeEstimate", "estimate", "estimate_dataset",
           "format_bytes"]

#: Every format :func:`oceandata.io.export` writes, in the order they are shown.
FORMAT_NAMES = ("netcdf", "zarr", "csv")

#: Attributes written as ``#`` lines at the top of a CSV (see ``export.write_csv``):
#: provenance, and the licence and citation where the data or the service give them.
CSV_COMMENT_KEYS = ("source_entry", "source_url", "source_version", "license", "citation",
                    "doi", "oceandata_request", "oceandata_version", "date_created", "title",
                    "history")

#: Typical printed width of a data value by dtype kind and size, when values are unread.
_FLOAT_WIDTH = {2: 7, 4: 10, 8: 19}

#: Coordinate columns longer than this are measured on an even sample of their values.
_SAMPLE = 20_000

#: Fixed allowances of the upper bounds: per file, per variable, per stored chunk.
_NETCDF_FILE, _NETCDF_VARIABLE, _NETCDF_CHUNK = 64 * 1024, 2048, 64
_ZARR_STORE, _ZARR_ARRAY, _ZARR_CHUNK = 4096, 4096, 64


def format_bytes(n: float | None) -> str:
    """``1.5 GB``-style text (decimal units, as ``OCEANDATA_MAX_OUTPUT`` reads them)."""
    if n is None:
        return "unknown"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"  # pragma: no cover


@dataclass(frozen=True)
class SizeEstimate:
    """The estimated size of one output format."""

    format: str
    bytes: int
    kind: str  # "estimate" or "upper bound"
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"format": self.format, "bytes": self.bytes, "kind": self.kind,
                "note": self.note}


@dataclass
class OutputEstimate:
    """What a subset and export will write and read, from metadata alone.

    Attributes
    ----------
    source
        The catalog entry or path (or ``None`` for an in-memory dataset).
    request
        ``bbox``, ``time``, ``depth``, ``variables`` as given.
    format
        The format that will be written (from the target's suffix or *format*), or None.
    sizes
        :class:`SizeEstimate` by format (each computed when first asked for: the CSV
        width prints coordinate values, which a netCDF download need not pay).
    rows
        Rows of the CSV form (points of the flattened dataset).
    dims
        The output's dimension sizes.
    read_bytes, read_chunks
        Stored (uncompressed) bytes and number of stored chunks the request reads.
    target
        Where the output goes, or None.
    free_bytes
        Free space at the target's folder (nearest existing ancestor), or None.
    limit
        ``OCEANDATA_MAX_OUTPUT`` in bytes.
    """

    source: str | None
    request: dict[str, Any]
    format: str | None
    sizes: Mapping[str, SizeEstimate]
    rows: int
    dims: dict[str, int]
    read_bytes: int | None
    read_chunks: int | None
    target: Path | None
    free_bytes: int | None
    limit: int
    time_steps: dict[str, int] = field(default_factory=dict)

    @property
    def output_bytes(self) -> int | None:
        """The estimated size in the chosen format (None without one)."""
        return self.sizes[self.format].bytes if self.format else None

    def problem(self) -> str | None:
        """The one-line reason a write would be refused, or None if it fits."""
        if self.format is None:
            return None
        size = self.sizes[self.format]
        name = self.target.name if self.target else "the output"
        what = f"{name} would be {'at most' if size.kind == 'upper bound' else 'about'} " \
               f"{format_bytes(size.bytes)} as {self.format}"
        if size.bytes > self.limit:
            reason = f"{what}, above OCEANDATA_MAX_OUTPUT ({format_bytes(self.limit)})"
            budget = self.limit
        elif self.free_bytes is not None and size.bytes > self.free_bytes:
            where = self.target.parent if self.target else "the target"
            reason = f"{what}, more than the {format_bytes(self.free_bytes)} free at {where}"
            budget = self.free_bytes
        else:
            return None
        return (f"{reason}; split it ({self._split(size.bytes, budget)}), raise "
                "OCEANDATA_MAX_OUTPUT, or pass --force (Python: force=True)")

    def check(self, *, force: bool = False) -> None:
        """Raise :class:`~oceandata.errors.OutputTooLarge` if the write should not start.

        Parameters
        ----------
        force
            Write anyway, above ``OCEANDATA_MAX_OUTPUT`` or the free space.
        """
        reason = self.problem()
        if reason is not None and not force:
            raise OutputTooLarge(reason)

    def _split(self, size: int, budget: int) -> str:
        parts = max(2, math.ceil(size / max(budget, 1)))
        hints = []
        for dim, years in self.time_steps.items():
            steps = self.dims.get(dim, 0)
            if years >= parts and steps:
                each = size / years
                hints.append(f"by time, e.g. yearly with --time YYYY/YYYY: {years} files of "
                             f"about {format_bytes(each)}")
                break
            if steps >= parts:
                hints.append(f"by time into {parts} or more periods with --time START/END")
                break
        hints.append(f"or by box into {parts} or more pieces with --bbox W,S,E,N")
        return ", ".join(hints)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form (what ``oceandata subset --dry-run --json`` prints)."""
        return {
            "source": self.source,
            "request": {k: v for k, v in self.request.items() if v is not None},
            "format": self.format,
            "output_bytes": self.output_bytes,
            "sizes": {k: v.as_dict() for k, v in self.sizes.items()},
            "rows": self.rows,
            "dims": self.dims,
            "read_bytes": self.read_bytes,
            "read_chunks": self.read_chunks,
            "target": None if self.target is None else str(self.target),
            "free_bytes": self.free_bytes,
            "limit": self.limit,
            "refused": self.problem(),
        }


def estimate(
    entry: str | os.PathLike[str] | xr.Dataset,
    *,
    bbox: Sequence[float] | str | None = None,
    time: Sequence[Any] | str | None = None,
    depth: Sequence[float | None] | str | None = None,
    variables: Sequence[str] | str | None = None,
    format: str | None = None,
    target: str | os.PathLike[str] | None = None,
    catalog: Any = None,
) -> OutputEstimate:
    """Estimate the output of ``subset`` + ``export`` from metadata alone.

    Parameters
    ----------
    entry
        A catalog entry name, a path, or an (unsubset) dataset.
    bbox, time, depth, variables
        The request, as for :func:`oceandata.subset` (command-line strings accepted).
    format
        ``netcdf``, ``zarr`` or ``csv``; default the suffix of *target* (sizes are given
        for every format either way).
    target
        Where the output would go: sets the format and where free space is measured.
    catalog
        Catalog to look *entry* up in.

    Returns
    -------
    OutputEstimate
        Sizes per format, bytes and chunks to read, free space and the limit.

    Raises
    ------
    UsageError, DataError
        As :func:`oceandata.subset` for a bad request; an unknown *format*.

    Examples
    --------
    >>> est = estimate("cobe_sst2", time="1990/1999", target="sst.csv")  # doctest: +SKIP
    >>> est.sizes["csv"].bytes, est.read_chunks  # doctest: +SKIP
    (254000000, 120)
    """
    from .open import open_dataset
    from .subset import subset

    request = {"bbox": bbox, "time": time, "depth": depth, "variables": variables}
    if isinstance(entry, xr.Dataset):
        full, source = entry, entry.attrs.get("oceandata_entry")
    else:
        full, source = open_dataset(entry, catalog=catalog), os.fspath(entry)
    cut = subset(full, **request)
    read = _read_plan(full, request)
    return estimate_dataset(cut, format=format, target=target, source=source, request=request,
                            read=read)


def estimate_dataset(ds: xr.Dataset, *, format: str | None = None,
                     target: str | os.PathLike[str] | None = None, source: str | None = None,
                     request: Mapping[str, Any] | None = None,
                     read: tuple[int, int] | None = None) -> OutputEstimate:
    """Estimate writing *ds* itself (already subset), as :func:`estimate` does.

    Parameters
    ----------
    ds
        The dataset to be written, usually lazy.
    format, target
        As for :func:`estimate`.
    source, request
        Recorded in the result.
    read
        ``(bytes, chunks)`` to read, when known; default counted on *ds* with the
        chunk shapes of its encoding (the storage chunks it came from).
    """
    from ..config import get_settings
    from .export import output_format

    path = None if target is None else Path(target)
    if format is None and path is not None:
        format = output_format(path)
    if format is not None and format not in FORMAT_NAMES:
        raise UsageError(f"format {format!r} is not one of {', '.join(FORMAT_NAMES)}")
    rows = math.prod(int(n) for n in ds.sizes.values()) if ds.sizes else 1
    sizes = LazySizes({"netcdf": lambda: _netcdf_bound(ds), "zarr": lambda: _zarr_bound(ds),
                       "csv": lambda: _csv_size(ds, rows)})
    if read is None:
        read = _read_plan(ds, {})
    return OutputEstimate(
        source=source, request=dict(request or {}), format=format, sizes=sizes, rows=rows,
        dims={str(k): int(v) for k, v in ds.sizes.items()}, read_bytes=read[0],
        read_chunks=read[1], target=path, free_bytes=_free_space(path),
        limit=get_settings().max_output_bytes(), time_steps=_years(ds))


# --------------------------------------------------------------------------- pieces


class LazySizes(Mapping[str, SizeEstimate]):
    """Sizes by format, each computed once, when first read.

    Parameters
    ----------
    makers
        A function per format name giving its :class:`SizeEstimate`.
    """

    def __init__(self, makers: Mapping[str, Any]) -> None:
        self._makers = dict(makers)
        self._done: dict[str, SizeEstimate] = {}

    def __getitem__(self, name: str) -> SizeEstimate:
        if name not in self._done:
            self._done[name] = self._makers[name]()  # KeyError for an unknown format
        return self._done[name]

    def __iter__(self) -> Any:
        return iter(self._makers)

    def __len__(self) -> int:
        return len(self._makers)

    def __repr__(self) -> str:
        return f"LazySizes({dict(self)!r})"


def _free_space(path: Path | None) -> int | None:
    if path is None:
        return None
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return int(shutil.disk_usage(folder).free)
    except OSError:
        return None


def _years(ds: xr.Dataset) -> dict[str, int]:
    """Number of distinct years along each 1-D time dimension (from its values)."""
    found: dict[str, int] = {}
    for name, coord in ds.coords.items():
        if coord.ndim != 1 or coord.dims[0] != name or coord.dtype.kind not in "MO":
            continue
        try:
            years = {int(getattr(v, "year", 0)) for v in coord.to_index()}
        except (TypeError, ValueError, AttributeError):  # pragma: no cover
            continue
        found[str(name)] = len(years)
    return found


def _raw_bytes(var: xr.Variable | xr.DataArray) -> int:
    itemsize = var.dtype.itemsize if var.dtype.kind != "O" else 8
    return int(var.size) * int(itemsize)


def _chunk_count(var: xr.Variable | xr.DataArray) -> int:
    chunks = var.chunks
    if not chunks:
        return 1
    return math.prod(len(c) for c in chunks)


def _attr_bytes(attrs: Mapping[Hashable, Any]) -> int:
    return sum(len(str(k)) + len(str(v)) + 16 for k, v in attrs.items())


def _compressed_bound(raw: int) -> int:
    """zlib and zstd expand incompressible input by at most ~0.03% (+ a frame header)."""
    return raw + raw // 1000


def _netcdf_bound(ds: xr.Dataset) -> SizeEstimate:
    total = _NETCDF_FILE + _attr_bytes(ds.attrs)
    for var in ds.variables.values():
        total += (_compressed_bound(_raw_bytes(var)) + _NETCDF_VARIABLE
                  + _attr_bytes(var.attrs) + _NETCDF_CHUNK * _chunk_count(var))
    return SizeEstimate("netcdf", int(total), "upper bound",
                        "zlib level 4; the written file is usually 2-5x smaller")


def _zarr_bound(ds: xr.Dataset) -> SizeEstimate:
    total = _ZARR_STORE + _attr_bytes(ds.attrs)
    for var in ds.variables.values():
        total += (_compressed_bound(_raw_bytes(var)) + _ZARR_ARRAY + _attr_bytes(var.attrs)
                  + _ZARR_CHUNK * _chunk_count(var))
    return SizeEstimate("zarr", int(total), "upper bound",
                        "zstd, one file per chunk; all-missing chunks are not written")


def _csv_size(ds: xr.Dataset, rows: int) -> SizeEstimate:
    flat = ds.reset_coords()
    header = 0
    for key in CSV_COMMENT_KEYS:
        if key in ds.attrs:
            header += sum(len(f"# {key}: {line}\n".encode())
                          for line in str(ds.attrs[key]).splitlines())
    columns = [*map(str, flat.dims), *(str(n) for n in flat.data_vars)]
    header += len(",".join(columns).encode()) + 1
    width = float(len(columns))  # the commas and the newline
    measured = []
    for dim in flat.dims:
        width += _column_width(flat[dim].variable if dim in flat.variables else None, measured)
    for var in flat.data_vars.values():
        width += _column_width(var.variable, measured)
    note = ("rows x printed width (coordinates measured, data values by dtype); missing "
            "values print empty, so masked data write less")
    return SizeEstimate("csv", int(header + rows * width), "estimate", note)


def _column_width(var: xr.Variable | None, measured: list[str]) -> float:
    """Mean printed width of one value of a CSV column."""
    if var is None:  # a dimension without a coordinate prints its position
        return 6.0
    if not var.chunks and var.size:
        values = np.asarray(var.values).ravel()
        if values.size > _SAMPLE:
            values = values[np.linspace(0, values.size - 1, _SAMPLE).astype(np.intp)]
        return _printed_width(values)
    return _dtype_width(var)


def _printed_width(values: np.ndarray) -> float:
    """Mean width of *values* as pandas prints them in a CSV column."""
    import pandas as pd

    text = pd.DataFrame({"v": values}).to_csv(index=False, header=False)
    return (len(text.encode()) - values.size) / max(values.size, 1)


def _dtype_width(var: xr.Variable) -> float:
    kind, size = var.dtype.kind, var.dtype.itemsize
    if kind == "f":
        return float(_FLOAT_WIDTH.get(size, 19))
    if kind in "iu":  # the widest value the dtype holds; small ints usually fill it
        return float(len(str(np.iinfo(var.dtype).min if kind == "i" else
                             np.iinfo(var.dtype).max)))
    if kind == "b":
        return 5.0
    if kind == "M":
        return 19.0
    if kind in "US":
        return float(size // (4 if kind == "U" else 1))
    return 12.0


def _storage_chunks(ds: xr.Dataset) -> dict[str, dict[str, int]]:
    """Stored chunk shape per data variable: from the encoding, else the dask chunks."""
    table: dict[str, dict[str, int]] = {}
    for name, var in ds.data_vars.items():
        sizes = var.encoding.get("chunksizes") or var.encoding.get("chunks")
        if sizes and len(sizes) == var.ndim:
            table[str(name)] = {str(d): int(n) for d, n in zip(var.dims, sizes, strict=True)}
        elif var.chunks:
            table[str(name)] = {str(d): int(max(c)) for d, c in zip(var.dims, var.chunks,
                                                                   strict=True)}
        else:
            table[str(name)] = {str(d): -1 for d in var.dims}
    return table


def _read_plan(ds: xr.Dataset, request: Mapping[str, Any]) -> tuple[int, int]:
    from ..ingest.chunks import read_plan

    if not ds.data_vars:
        return 0, 0
    return read_plan(ds, _storage_chunks(ds), **request)
