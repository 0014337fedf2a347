"""CF discrete sampling geometries (and time series) as one flat table, read in blocks.

A table has one row per observation and one column per variable: variables of the
instance dimension (station, profile, trajectory) and scalars are repeated on every row
of their observations. The layouts of CF-1.6 chapter 9 are read as they are stored:

- a single dimension (``point``, a series along ``time``): one row per element;
- multidimensional arrays (orthogonal or incomplete, ``(station, time)``): one row per
  cell, C order, as :meth:`xarray.Dataset.to_dataframe` orders them;
- contiguous ragged arrays (a count variable with ``sample_dimension``, ``rowSize``):
  one row per observation, each observation given the instance its counts put it in;
- indexed ragged arrays (an index variable with ``instance_dimension``): the same, the
  instance read from the index.

Rows are read :data:`BLOCK_ROWS` at a time (:func:`iter_table`): only the slab of each
variable that a block touches is read from the store, filters are evaluated first, and
the other columns are read for the rows kept only; filters on variables of the instance
(outer) dimension are evaluated once over the instances, and blocks holding none of the
kept instances are skipped without reading. Memory is bounded by the block, never by the
dataset.

Columns are named as ERDDAP names them (:func:`table_layout`): the CF time, latitude,
longitude and vertical axes (found with ``cf_xarray``, data variables included, as
:mod:`oceandata.io.subset` finds them) are ``time``, ``latitude``, ``longitude`` and
``depth`` (``altitude`` when positive up); every other variable keeps its name. Count
and index variables of ragged arrays are structure, not columns.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import DataError

#: rows read per block by :func:`iter_table`
BLOCK_ROWS = 65_536

#: a filter: column name and a function of that column's values giving a boolean mask
Filter = tuple[str, Callable[[np.ndarray], np.ndarray]]


@dataclass(frozen=True)
class TableLayout:
    """How a dataset is read as a table.

    Attributes
    ----------
    dims
        The dimensions of the rows: the sample dimension of a ragged array, else every
        dimension of the table in C order (empty: one row of scalars).
    shape
        Their sizes.
    columns
        Served column name → source variable name, in the order served.
    instance_dim
        The instance dimension of a ragged array (None otherwise).
    ends
        For a contiguous ragged array, the cumulative counts (end row of each instance).
    index
        For an indexed ragged array, the variable giving each observation's instance.
    """

    dims: tuple[Hashable, ...]
    shape: tuple[int, ...]
    columns: dict[str, Hashable]
    instance_dim: Hashable | None = None
    ends: np.ndarray | None = field(default=None, compare=False)
    index: Hashable | None = None

    @property
    def nrows(self) -> int:
        """The number of rows of the whole table."""
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def outer_dim(self) -> Hashable | None:
        """The dimension whose filters are evaluated once, before the rows (or None)."""
        if self.instance_dim is not None:
            return self.instance_dim
        return self.dims[0] if len(self.dims) > 1 else None

    def row_dims(self, ds: xr.Dataset, name: str) -> tuple[Hashable, ...]:
        """The dimensions of column *name*'s variable in *ds*."""
        return ds[self.columns[name]].dims


def _ragged(ds: xr.Dataset) -> tuple[Hashable, Hashable, Hashable, str] | None:
    """``(variable, instance dim, sample dim, kind)`` of the dataset's ragged array."""
    found = []
    for name, var in ds.variables.items():
        if var.ndim != 1:
            continue
        if "sample_dimension" in var.attrs and var.attrs["sample_dimension"] in ds.dims:
            found.append((name, var.dims[0], var.attrs["sample_dimension"], "count"))
        elif "instance_dimension" in var.attrs and var.attrs["instance_dimension"] in ds.dims:
            found.append((name, var.attrs["instance_dimension"], var.dims[0], "index"))
    if len(found) > 1:
        raise DataError("nested ragged arrays (several count or index variables: "
                        f"{', '.join(str(f[0]) for f in found)}) are not read as one table yet")
    return found[0] if found else None


def is_ragged(ds: xr.Dataset) -> bool:
    """Whether *ds* stores a contiguous or indexed ragged array (CF-1.6 chapter 9)."""
    return _ragged(ds) is not None


def _axis_names(ds: xr.Dataset) -> dict[str, Hashable]:
    """ERDDAP name → source variable for the CF axes of *ds* found unambiguously."""
    import cf_xarray  # noqa: F401  (registers the .cf accessor)

    probe = ds.set_coords(list(ds.data_vars))
    try:
        coords, axes = probe.cf.coordinates, probe.cf.axes
    except (KeyError, ValueError, AttributeError):
        coords, axes = {}, {}
    out: dict[str, Hashable] = {}
    for served, coord_key, axis_key in (("time", "time", "T"), ("latitude", "latitude", "Y"),
                                        ("longitude", "longitude", "X")):
        names = list(dict.fromkeys([*coords.get(coord_key, []), *axes.get(axis_key, [])]))
        if len(names) == 1:
            out[served] = names[0]
    vertical = list(dict.fromkeys([*coords.get("vertical", []), *axes.get("Z", [])]))
    if len(vertical) == 1:
        var = ds[vertical[0]]
        up = str(var.attrs.get("positive", "")).lower() == "up" or str(
            var.attrs.get("standard_name", "")) in ("altitude", "height")
        out["altitude" if up else "depth"] = vertical[0]
    return out


def table_layout(ds: xr.Dataset, *, erddap_names: bool = True) -> TableLayout:
    """How *ds* reads as a table (see the module docstring).

    Parameters
    ----------
    ds
        A DSG or series dataset, as opened by the catalog (lazy).
    erddap_names
        Serve the CF axes as ``time``, ``latitude``, ``longitude``, ``depth`` (or
        ``altitude``); False keeps every source name.

    Returns
    -------
    TableLayout
        The row dimensions and the columns.

    Raises
    ------
    DataError
        For nested ragged arrays, or a ragged array whose counts do not add up.
    """
    ragged = _ragged(ds)
    structure: set[Hashable] = set()
    instance_dim = index = None
    ends = None
    if ragged is not None:
        name, instance_dim, sample_dim, kind = ragged
        structure.add(name)
        dims: tuple[Hashable, ...] = (sample_dim,)
        allowed = {instance_dim, sample_dim}
        if kind == "count":
            sizes = np.asarray(ds[name].values, dtype=np.float64)
            if (not np.all(np.isfinite(sizes)) or np.any(sizes < 0)
                    or sizes.sum() != ds.sizes[sample_dim]):
                raise DataError(f"the row sizes in {name!r} are missing or do not add up to "
                                f"the {ds.sizes[sample_dim]} elements of {sample_dim!r}")
            ends = np.cumsum(sizes.astype(np.int64))
        else:
            index = name
    else:
        # the dimensions of the variables with the most dimensions, in their order
        most = max((v.ndim for v in ds.variables.values()), default=0)
        dims = next((v.dims for v in ds.data_vars.values() if v.ndim == most),
                    next((v.dims for v in ds.variables.values() if v.ndim == most), ()))
        allowed = set(dims)
    bounds = {b for v in ds.variables.values() for b in str(v.attrs.get("bounds", "")).split()}
    renames = _axis_names(ds) if erddap_names else {}
    by_source = {src: served for served, src in renames.items()}
    columns: dict[str, Hashable] = {}
    for name, var in ds.variables.items():
        if name in structure or name in bounds or not set(var.dims) <= allowed:
            continue
        served = by_source.get(name, str(name))
        if served in columns or (served != name and served in ds.variables):
            served = str(name)  # never hide a variable already named like an axis
        columns[served] = name
    order = {"time": 0, "latitude": 1, "longitude": 2, "depth": 3, "altitude": 3}
    columns = dict(sorted(columns.items(), key=lambda kv: order.get(kv[0], 4)))
    return TableLayout(dims=tuple(dims), shape=tuple(ds.sizes[d] for d in dims),
                       columns=columns, instance_dim=instance_dim, ends=ends, index=index)


def _plain(values: np.ndarray, strip: bool = False) -> np.ndarray:
    """Text as ``str`` (bytes decoded; trailing blanks off with *strip*), else unchanged."""
    if values.dtype.kind == "S":
        values = np.char.decode(values, "utf-8", "replace").astype(object)
    elif values.dtype.kind == "O" and values.size and isinstance(values.flat[0], bytes):
        values = np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                           for v in values], dtype=object)
    elif values.dtype.kind == "U":
        values = values.astype(object)
    if strip and values.dtype.kind == "O":
        values = np.array([v.rstrip() if isinstance(v, str) else v for v in values],
                          dtype=object)
    return values


def _read(var: xr.DataArray, where: dict[Hashable, np.ndarray], n: int,
          strip: bool = False) -> np.ndarray:
    """*var* at the rows whose index along each dimension is given by *where* (1-D)."""
    if var.ndim == 0:
        return np.repeat(_plain(np.asarray(var.values).reshape(1), strip), n)
    slab: dict[Hashable, slice] = {}
    local = []
    for dim in var.dims:
        idx = where[dim]
        if idx.size == 0:
            return _plain(np.empty(0, dtype=var.dtype), strip)
        lo, hi = int(idx.min()), int(idx.max()) + 1
        slab[dim] = slice(lo, hi)
        local.append(idx - lo)
    values = np.asarray(var.isel(slab).values)
    return _plain(values[tuple(local)], strip)


def _block_rows(layout: TableLayout, ds: xr.Dataset, start: int,
                stop: int) -> dict[Hashable, np.ndarray]:
    """The index along each table dimension of the rows ``start:stop``."""
    rows = np.arange(start, stop, dtype=np.int64)
    if layout.instance_dim is not None:
        where = {layout.dims[0]: rows}
        if layout.ends is not None:
            where[layout.instance_dim] = np.searchsorted(layout.ends, rows, side="right")
        else:
            where[layout.instance_dim] = np.asarray(
                ds[layout.index].isel({layout.dims[0]: slice(start, stop)}).values,
                dtype=np.int64)
        return where
    if not layout.dims:
        return {}
    return dict(zip(layout.dims, np.unravel_index(rows, layout.shape), strict=True))


def _outer_span(layout: TableLayout, start: int, stop: int) -> slice | None:
    """The instances (outer indices) rows ``start:stop`` may belong to; None: unknown."""
    if layout.instance_dim is not None:
        if layout.ends is None:
            return None
        return slice(int(np.searchsorted(layout.ends, start, side="right")),
                     int(np.searchsorted(layout.ends, stop - 1, side="right")) + 1)
    inner = int(np.prod(layout.shape[1:], dtype=np.int64))
    return slice(start // inner, (stop - 1) // inner + 1)


def iter_table(ds: xr.Dataset, layout: TableLayout, columns: Sequence[str], *,
               filters: Sequence[Filter] = (), block_rows: int = BLOCK_ROWS,
               strip_text: bool = False) -> Iterator[pd.DataFrame]:
    """The rows of *ds* passing every filter, as frames of *columns*, block by block.

    Parameters
    ----------
    ds
        The dataset (lazy: only the slabs a block touches are read).
    layout
        Its :func:`table_layout`.
    columns
        Served column names, in the order wanted (each must be in ``layout.columns``).
    filters
        ``(column, predicate)`` pairs; a predicate takes the column's values (text as
        ``str``, times as ``datetime64``) and returns a boolean mask. All must hold.
    block_rows
        How many rows are read at once.
    strip_text
        Remove trailing blanks from text (the padding of fixed-width ``char`` arrays),
        as ERDDAP does, before filtering and output.

    Yields
    ------
    pandas.DataFrame
        A block of rows (never empty), columns in the order asked.
    """
    outer = layout.outer_dim
    kept_outer = None
    row_filters = []
    for name, predicate in filters:
        dims = layout.row_dims(ds, name)
        if outer is not None and dims == (outer,):
            values = _plain(np.asarray(ds[layout.columns[name]].values), strip_text)
            mask = np.asarray(predicate(values), dtype=bool)
            kept_outer = mask if kept_outer is None else kept_outer & mask
        else:
            row_filters.append((name, predicate))
    if kept_outer is not None and not kept_outer.any():
        return
    for start in range(0, layout.nrows, block_rows):
        stop = min(start + block_rows, layout.nrows)
        if kept_outer is not None:
            span = _outer_span(layout, start, stop)
            if span is not None and not kept_outer[span].any():
                continue  # pushed down: nothing of this block is read
        where = _block_rows(layout, ds, start, stop)
        keep = np.ones(stop - start, dtype=bool)
        if kept_outer is not None:
            keep &= kept_outer[where[outer]]
        read: dict[str, np.ndarray] = {}
        for name, predicate in row_filters:
            if not keep.any():
                break
            here = {d: i[keep] for d, i in where.items()}
            values = _read(ds[layout.columns[name]], here, int(keep.sum()), strip_text)
            ok = np.asarray(predicate(values), dtype=bool)
            sub = np.flatnonzero(keep)
            keep[sub[~ok]] = False
            read = {k: v[ok] for k, v in read.items()}
            read[name] = values[ok]
        if not keep.any():
            continue
        here = {d: i[keep] for d, i in where.items()}
        n = int(keep.sum())
        frame = {name: read[name] if name in read
                 else _read(ds[layout.columns[name]], here, n, strip_text) for name in columns}
        yield pd.DataFrame(frame, columns=list(columns))


def dsg_table(ds: xr.Dataset, columns: Sequence[str] | None = None, *,
              filters: Sequence[Filter] = (), erddap_names: bool = True) -> pd.DataFrame:
    """The whole table of *ds* (or the rows passing *filters*) as one frame.

    For small selections and tests; services stream :func:`iter_table` instead.

    Parameters
    ----------
    ds
        A DSG or series dataset.
    columns
        Served column names (default: every column).
    filters
        See :func:`iter_table`.
    erddap_names
        See :func:`table_layout`.

    Returns
    -------
    pandas.DataFrame
        One row per observation.
    """
    layout = table_layout(ds, erddap_names=erddap_names)
    names = list(layout.columns) if columns is None else list(columns)
    parts = list(iter_table(ds, layout, names, filters=filters))
    if not parts:
        return pd.DataFrame({n: pd.Series(dtype=object) for n in names})
    return pd.concat(parts, ignore_index=True)


__all__ = ["BLOCK_ROWS", "Filter", "TableLayout", "dsg_table", "is_ragged", "iter_table",
           "table_layout"]
