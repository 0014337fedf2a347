"""Climatologies and anomalies, grouped by compiled kernels (or flox), in any CF calendar.

A climatology is the mean of each calendar month (``freq="month"``) or day of the year
(``freq="dayofyear"``) over a baseline period. It stays lazy on dask arrays: nothing is
loaded but the time coordinate, to find the groups.

Float data go through the numba kernels of :mod:`._kernels`: each chunk gives float64
sums and counts of the groups present in it only (one or two months for a 30-day chunk),
and the partial results are combined in a tree (:data:`SPLIT_EVERY` at a time), one tree
per block of the other dimensions. Other dtypes, and tables too large to combine at once
(:data:`MAX_TABLE_BYTES`), go through :func:`flox.xarray.xarray_reduce`. An anomaly
subtracts the climatology chunk by chunk with a fused kernel (no expanded copy of the
table); see docs/analysis.md, "Memory", and benchmarks/bench_climatology.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from flox.xarray import xarray_reduce

from ..errors import DataError, UsageError
from ..memory import release_freed_memory
from ..times import period

Freq = Literal["month", "dayofyear"]
_FREQS = ("month", "dayofyear")
#: Partial results combined per node of the climatology's reduction tree.
SPLIT_EVERY = 8
#: Largest float64 sums + int32 counts of one block of the grid (every group) for which
#: the compiled climatology is used; flox's map-reduce above it.
MAX_TABLE_BYTES = 512 * 2**20


def append_history(attrs: dict[str, Any], line: str) -> dict[str, Any]:
    """Return a copy of *attrs* with a timestamped *line* appended to ``history``."""
    out = dict(attrs)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    entry = f"{stamp}: oceandata {line}"
    out["history"] = f"{out['history']}\n{entry}" if out.get("history") else entry
    return out


def append_cell_methods(attrs: dict[str, Any], method: str) -> dict[str, Any]:
    """Return a copy of *attrs* with *method* appended to ``cell_methods`` (CF 7.3)."""
    out = dict(attrs)
    out["cell_methods"] = f"{out['cell_methods']} {method}" if out.get("cell_methods") else method
    return out


def _time_dim(da: xr.DataArray) -> str:
    if "time" in da.dims:
        return "time"
    try:
        name = da.cf["time"].name
    except KeyError:
        raise DataError(f"{da.name!r} has no time dimension: dims are {list(da.dims)}") from None
    if name not in da.dims:
        raise DataError(f"time coordinate {name!r} of {da.name!r} is not a dimension")
    return str(name)


def _check_freq(freq: str) -> None:
    if freq not in _FREQS:
        raise UsageError(f"freq {freq!r} is not supported: give one of {', '.join(_FREQS)}")


def _select_baseline(da: xr.DataArray, baseline: Any, dim: str) -> xr.DataArray:
    if baseline is None:
        return da
    chosen = period(baseline, what="baseline")
    inside = chosen.inside(da[dim])
    if not inside.any():
        raise DataError(f"baseline {chosen.text} has no time step in the data")
    return da.isel({dim: np.flatnonzero(inside)})


def _group_key(da: xr.DataArray, freq: str, dim: str) -> xr.DataArray:
    key = da[dim].dt.month if freq == "month" else da[dim].dt.dayofyear
    return key.rename(freq)


def _kernels():
    """The compiled kernels module, or None if numba cannot be imported here."""
    try:
        from . import _kernels
    except ImportError:  # pragma: no cover - numba is a dependency
        return None
    return _kernels


def _as_rows(values: np.ndarray, axis: int) -> np.ndarray:
    """*values* as a C-contiguous ``(time, point)`` array (a view when it already is)."""
    moved = np.moveaxis(values, axis, 0)
    return np.ascontiguousarray(moved).reshape(moved.shape[0], int(np.prod(moved.shape[1:])))


def _partial_sums(block: np.ndarray, codes: np.ndarray, ngroups: int, axis: int):
    """Sums and counts of the groups present in one chunk (see :func:`_kernels.group_sums`)."""
    kernels = _kernels()
    release_freed_memory()  # the previous chunks' buffers (see its docstring)
    return kernels.group_sums(_as_rows(block, axis), codes, ngroups)


def _combine_sums(*parts):
    """One node of the reduction tree: the partial sums of the union of the groups."""
    ids = parts[0][0]
    for part in parts[1:]:
        ids = np.union1d(ids, part[0])
    n = parts[0][1].shape[1]
    sums = np.zeros((ids.size, n), np.float64)
    counts = np.zeros((ids.size, n), np.int32)
    for pid, psum, pcount in parts:
        _kernels().add_rows(sums, counts, np.searchsorted(ids, pid), psum, pcount)
    return ids, sums, counts


def _mean_table(part, ngroups: int, shape: tuple[int, ...], axis: int,
                dtype: np.dtype) -> np.ndarray:
    """The group means of a finished reduction: *ngroups* on *axis*, NaN for absent groups."""
    ids, sums, counts = part
    n = sums.shape[1]
    out = np.full((ngroups, n), np.nan, dtype=dtype)
    if ids.size == ngroups:
        _kernels().mean_from_sums(sums, counts, out)
    elif ids.size:
        rows = np.empty((ids.size, n), dtype=dtype)
        _kernels().mean_from_sums(sums, counts, rows)
        out[ids] = rows
    out = np.moveaxis(out.reshape((ngroups, *shape)), 0, axis)
    return np.ascontiguousarray(out)


def _kernel_mean(data: Any, codes: np.ndarray, ngroups: int, axis: int) -> Any:
    """Mean of each of *ngroups* groups along *axis* (group *codes*) with the kernels.

    Numpy input gives numpy; dask input a lazy dask array with the groups in one chunk
    and the other axes chunked as *data*: per block of the other axes, every time chunk
    gives partial sums of its groups, combined in a tree of :data:`SPLIT_EVERY`.
    """
    dtype = np.dtype(data.dtype)
    other = tuple(d for i, d in enumerate(data.shape) if i != axis)
    if not hasattr(data, "dask"):
        part = _partial_sums(np.asarray(data), codes, ngroups, axis)
        return _mean_table(part, ngroups, other, axis, dtype)
    import dask
    import dask.array as dsa

    blocks = data.to_delayed(optimize_graph=False)
    edges = np.cumsum((0, *data.chunks[axis]))
    partial = dask.delayed(_partial_sums, pure=True)
    combine = dask.delayed(_combine_sums, pure=True)
    finish = dask.delayed(_mean_table, pure=True)
    spatial = [range(len(c)) for i, c in enumerate(data.chunks) if i != axis]
    grid = np.empty([len(r) for r in spatial], dtype=object)
    for where in np.ndindex(*grid.shape):
        parts = []
        for it in range(len(data.chunks[axis])):
            index = (*where[:axis], it, *where[axis:])
            parts.append(partial(blocks[index], codes[edges[it]:edges[it + 1]], ngroups,
                                 axis))
        while len(parts) > 1:
            parts = [combine(*parts[i:i + SPLIT_EVERY])
                     for i in range(0, len(parts), SPLIT_EVERY)]
        shape = tuple(data.chunks[d][where[k]]
                      for k, d in enumerate(i for i in range(data.ndim) if i != axis))
        out_shape = (*shape[:axis], ngroups, *shape[axis:])
        grid[where] = dsa.from_delayed(finish(parts[0], ngroups, shape, axis, dtype),
                                       shape=out_shape, dtype=dtype,
                                       meta=np.empty((0,) * data.ndim, dtype=dtype))
    return dsa.block(np.expand_dims(grid, axis).tolist())


def _use_kernel(sel: xr.DataArray, dim: str, ngroups: int) -> bool:
    """Whether the compiled climatology applies: float data, a table that fits."""
    if sel.dtype not in (np.float32, np.float64) or _kernels() is None:
        return False
    axis = sel.get_axis_num(dim)
    if sel.chunks is None:
        block = int(np.prod([n for i, n in enumerate(sel.shape) if i != axis]))
    else:
        block = int(np.prod([max(c) for i, c in enumerate(sel.chunks) if i != axis]))
    return ngroups * block * 12 <= MAX_TABLE_BYTES


def climatology(da: xr.DataArray, freq: Freq = "month", baseline: Any = None, *,
                smooth: int | None = None) -> xr.DataArray:
    """Mean seasonal cycle of *da* over a baseline period.

    Parameters
    ----------
    da
        A data array with a time dimension (numpy or cftime times, any calendar).
    freq
        ``"month"`` (groups 1..12) or ``"dayofyear"`` (1..365/366, 1..360 for 360_day).
    baseline
        The period of the climatology, in any form of :func:`oceandata.times.period`
        (``(1961, 1990)``, ``"1961/1990"``, ``("1961-01-01", "1990-12-31")``, datetimes;
        a year stands for the whole year; see "Periods" in docs/analysis.md); None for
        every time step.
    smooth
        For ``freq="dayofyear"`` only: width in days of a centred circular running mean
        applied to the daily climatology (wraps around the year end). Must be odd.

    Returns
    -------
    xarray.DataArray
        Lazy climatology with dimension *freq*, the attributes of *da*, ``cell_methods``
        appended with ``"time: mean within years time: mean over years"`` and a line in
        ``history``.

    Raises
    ------
    UsageError
        Unknown *freq*, a bad baseline or smoothing window.
    DataError
        No time dimension, or no data in the baseline.
    """
    _check_freq(freq)
    dim = _time_dim(da)
    if smooth is not None and freq != "dayofyear":
        raise UsageError("smooth applies to freq='dayofyear' only")
    if smooth is not None and (smooth < 1 or smooth % 2 == 0):
        raise UsageError(f"smooth ({smooth}) must be an odd positive number of days")
    sel = _select_baseline(da, baseline, dim)
    key = _group_key(sel, freq, dim)
    expected = np.arange(1, 13) if freq == "month" else np.unique(key.values)
    expected = expected[~pd.isna(expected)]  # a missing time has no group
    # engine="flox": flox would otherwise pick its slower "numpy" engine, since the labels
    # of the whole time axis (1..12, 1..12, ...) are not sorted; "flox" sorts each chunk.
    # method="map-reduce": flox picks "cohorts" for a periodic key on a store chunked
    # along time, whose memory grows with the number of chunks (each chunk's partial
    # fields are held until its cohort is done: 0.5 MiB a chunk on a 1-degree grid,
    # measured); map-reduce combines them in a tree, so memory stays flat.
    if _use_kernel(sel, dim, expected.size):
        codes = pd.Index(expected).get_indexer(key.values).astype(np.int64)
        axis = sel.get_axis_num(dim)
        table = _kernel_mean(sel.data, codes, expected.size, axis)
        coords = {name: c for name, c in sel.coords.items() if dim not in c.dims}
        coords[freq] = (freq, expected.astype(np.int64))
        dims = tuple(freq if d == dim else d for d in sel.dims)
        clim = xr.DataArray(table, dims=dims, coords=coords)
    else:
        clim = xarray_reduce(sel, key, func="nanmean", expected_groups=expected,
                             keep_attrs=True, engine="flox", method="map-reduce")
        if clim.chunks is not None:  # one chunk: 12 (or 366) fields, not one task per group
            clim = clim.chunk({freq: -1})
        clim = clim.assign_coords({freq: clim[freq].astype(np.int64)})
    if smooth is not None and smooth > 1:
        half = smooth // 2
        n = clim.sizes[freq]
        padded = xr.concat([clim.isel({freq: slice(n - half, n)}), clim,
                            clim.isel({freq: slice(0, half)})], dim=freq)
        rolled = padded.rolling({freq: smooth}, center=True).mean()
        clim = rolled.isel({freq: slice(half, half + n)}).assign_coords({freq: clim[freq]})
    attrs = append_cell_methods(da.attrs, f"{dim}: mean within years {dim}: mean over years")
    span = "all times" if baseline is None else period(baseline, what="baseline").text
    note = f"climatology(freq={freq!r}, baseline={span}"
    note += f", smooth={smooth} days)" if smooth else ")"
    clim.attrs = append_history(attrs, note)
    clim.name = da.name
    return clim


def computed_first(reduced: xr.DataArray) -> xr.DataArray:
    """Compute a small reduced result now (:meth:`xarray.DataArray.persist`) if it is lazy.

    A second pass over the data that needs a reduction of the same data (anomalies from
    a climatology computed in the same dask graph) makes dask keep every input chunk in
    memory until the reduction is finished: memory then grows with the data. Persisting
    the reduction first (it is small: 12 or 366 fields) lets the second pass stream chunk
    by chunk. On a distributed cluster the result stays on the workers. An array that is
    already in memory or already persisted is returned as is.
    """
    if reduced.chunks is None:
        return reduced
    data = reduced.data
    if len(data.__dask_graph__()) == data.npartitions:  # already persisted
        return reduced
    return reduced.persist()


def _subtract_groups(block: np.ndarray, codes: np.ndarray, table: np.ndarray,
                     axis: int) -> np.ndarray:
    """``block - table[codes]`` along *axis*: one fused pass for float data."""
    dtype = np.result_type(block.dtype, table.dtype)
    kernels = _kernels()
    if (kernels is None or dtype not in (np.float32, np.float64)
            or block.dtype not in (np.float32, np.float64)):
        return block - np.take(table, codes, axis=axis)
    release_freed_memory()  # the previous chunks' buffers (see its docstring)
    rows = _as_rows(block, axis)
    out = np.empty(rows.shape, dtype=dtype)
    kernels.subtract_groups(rows, np.asarray(codes, dtype=np.int64), _as_rows(table, axis),
                            out)
    moved = np.moveaxis(block, axis, 0).shape
    return np.moveaxis(out.reshape(moved), 0, axis)


def _subtract_groups_blockwise(da: xr.DataArray, clim: xr.DataArray, codes: np.ndarray,
                               freq: str, dim: str) -> Any:
    """``da - clim[codes]`` chunk by chunk, without expanding *clim* onto the time axis."""
    axis = da.get_axis_num(dim)
    table = clim.transpose(*[freq if d == dim else d for d in da.dims])
    if da.chunks is None:
        return _subtract_groups(da.values, codes, table.values, axis)
    import dask.array as dsa

    tdata = table.data if table.chunks is not None else dsa.from_array(table.values)
    tdata = tdata.rechunk({i: -1 if i == axis else da.chunks[i] for i in range(da.ndim)})
    ind = tuple(range(da.ndim))
    return dsa.blockwise(_subtract_groups, ind, da.data, ind,
                         dsa.from_array(codes, chunks=(da.chunks[axis],)), (axis,),
                         tdata, tuple(da.ndim if i == axis else i for i in ind),
                         concatenate=True, dtype=np.result_type(da.dtype, clim.dtype),
                         axis=axis)


def anomaly(da: xr.DataArray, clim: xr.DataArray | None = None, freq: Freq = "month",
            baseline: Any = None) -> xr.DataArray:
    """Departure of *da* from a climatology.

    Parameters
    ----------
    da
        A data array with a time dimension.
    clim
        A climatology from :func:`climatology` with dimension *freq*; computed from *da*
        over *baseline* when None. A lazy climatology (given or computed here) is
        **computed now** (persisted: on a cluster it stays on the workers), so that the
        anomaly then streams through *da* chunk by chunk; see "Memory" in
        docs/analysis.md.
    freq
        ``"month"`` or ``"dayofyear"``, the grouping of *clim*.
    baseline
        Baseline period used when *clim* is None, in any form of
        :func:`oceandata.times.period` (see :func:`climatology`).

    Returns
    -------
    xarray.DataArray
        Anomalies on the time axis of *da*, lazy for dask input (only the small
        climatology is computed), attributes of *da* (units unchanged), with a line in
        ``history``.
    """
    _check_freq(freq)
    dim = _time_dim(da)
    if clim is None:
        clim = climatology(da, freq=freq, baseline=baseline)
    if freq not in clim.dims:
        raise UsageError(f"clim has no {freq!r} dimension (dims {list(clim.dims)}): "
                         f"compute it with climatology(da, freq={freq!r})")
    clim = computed_first(clim)  # else every chunk of da is held until clim is done
    key = _group_key(da, freq, dim)
    codes = pd.Index(clim[freq].values).get_indexer(key.values)
    if (codes < 0).any():
        missing = np.unique(key.values[codes < 0])
        raise DataError(f"clim lacks {freq} {missing.tolist()[:5]} found in the data")
    others = [d for d in da.dims if d != dim]
    same_grid = set(clim.dims) == {freq, *others} and all(
        clim.sizes[d] == da.sizes[d] and (d not in clim.coords or d not in da.coords
                                          or clim[d].equals(da[d])) for d in others)
    if same_grid:  # chunk by chunk, as many tasks as da has chunks
        out = da.copy(data=_subtract_groups_blockwise(da, clim, codes, freq, dim))
    else:  # broadcasting or alignment needed: let xarray do it
        out = da - clim.sel({freq: key}).drop_vars(freq)
    out.attrs = append_history(da.attrs, f"anomaly(freq={freq!r}) from a climatology")
    out.name = da.name
    return out
