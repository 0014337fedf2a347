"""Chunk layouts for writing NetCDF data into Zarr stores, and what a read will cost.

A Zarr store is read chunk by chunk: a request touching one value of a chunk reads and
decompresses the whole chunk. The chunk shape therefore decides which requests are cheap.
Three layouts are planned here (see ``docs/ingest.md``):

``map``
    Whole horizontal fields and as many time steps as fit in the target chunk size:
    cheap maps, expensive point time series.
``timeseries``
    The whole time axis and small square-ish spatial tiles: cheap point time series,
    expensive maps.
``auto``
    A balanced compromise: time and the horizontal dimensions are cut by the same
    fraction of their length so that a chunk is close to the target size.

An explicit ``DIM=N,...`` layout is also accepted. :func:`plan_chunks` is the pure
arithmetic for one variable, :func:`plan_dataset` finds the time and horizontal
dimensions of a dataset through CF attributes and plans every variable, and
:func:`read_cost` counts the bytes of stored chunks a :func:`oceandata.subset` request
would read under a given layout, so layouts can be compared before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import DataError, UsageError, suggest
from ..io.subset import _Axes, subset

__all__ = ["LAYOUTS", "parse_chunks_option", "plan_chunks", "plan_dataset", "read_cost",
           "read_plan"]

#: The named layouts, in the order they are offered to users.
LAYOUTS = ("auto", "map", "timeseries")

#: Default target size of one stored chunk, before compression (16 MiB).
DEFAULT_TARGET_BYTES = 16 * 2**20

#: Prefix of the integer position coordinates :func:`read_cost` attaches to a probe.
_INDEX_PREFIX = "__index_"

_OPTION_FORM = "give auto, map, timeseries or DIM=N,... (e.g. time=12,lat=90)"


# --------------------------------------------------------------------------- parsing


def parse_chunks_option(text: str, *, option: str = "--chunks") -> str | dict[str, int]:
    """Parse the ``--chunks`` option: a layout name or explicit sizes by dimension.

    Parameters
    ----------
    text
        ``auto``, ``map``, ``timeseries`` (any case), or ``DIM=N,DIM=N`` where each ``N``
        is a positive integer or ``-1`` for the whole dimension, e.g. ``time=12,lat=90``.
    option
        The option name used in error messages.

    Returns
    -------
    str or dict
        The lower-cased layout name, or ``{dim: N}`` in the order given.

    Raises
    ------
    UsageError
        If *text* is none of these forms, a size is not a positive integer or -1, or a
        dimension is named twice.

    Examples
    --------
    >>> parse_chunks_option("map")
    'map'
    >>> parse_chunks_option("time=12, lat=-1")
    {'time': 12, 'lat': -1}
    """
    raw = str(text)
    word = raw.strip().lower()
    if word in LAYOUTS:
        return word
    sizes: dict[str, int] = {}
    for part in raw.split(","):
        name, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not name or not value:
            raise UsageError(f"{option} {raw!r}: {_OPTION_FORM}")
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number == 0 or number < -1:
            raise UsageError(f"{option} {raw!r}: size {value!r} of {name!r} is not a positive "
                             f"integer or -1 (whole dimension); {_OPTION_FORM}")
        if name in sizes:
            raise UsageError(f"{option} {raw!r}: dimension {name!r} is given twice; "
                             f"{_OPTION_FORM}")
        sizes[name] = number
    return sizes


# --------------------------------------------------------------------------- planning


def plan_chunks(
    sizes: Mapping[str, int],
    itemsize: int,
    layout: str | Mapping[str, int],
    *,
    time_dim: str | None,
    horizontal_dims: Sequence[str],
    target_bytes: int = DEFAULT_TARGET_BYTES,
) -> dict[str, int]:
    """Chunk sizes for one variable under a layout.

    Pure arithmetic: nothing is opened or read.

    Parameters
    ----------
    sizes
        The variable's dimensions and lengths, in storage order.
    itemsize
        Bytes per element (``dtype.itemsize``, 4 for float32).
    layout
        ``"map"``, ``"timeseries"``, ``"auto"``, a ``DIM=N,...`` string, or a mapping
        ``{dim: N}`` with ``N >= 1`` or ``-1`` for the whole dimension.
    time_dim
        The time dimension, or None. A name not in *sizes* counts as None.
    horizontal_dims
        The horizontal dimensions (``lat, lon``, or ``nlat, nlon`` of a curvilinear grid).
        Names not in *sizes* are ignored.
    target_bytes
        The wanted size of one chunk before compression.

    Returns
    -------
    dict
        ``{dim: chunk length}`` for every dimension of *sizes*, in its order, each between
        1 and the dimension's length (1 for a dimension of length 0).

    Raises
    ------
    UsageError
        An unknown layout, a mapping naming a dimension not in *sizes*, a size that is not
        a positive integer or -1, or a non-positive *itemsize* or *target_bytes*.

    Notes
    -----
    Dimensions that are neither time nor horizontal (depth, bounds, ...) are called
    *other* below.

    ``map``
        Horizontal dimensions whole; other dimensions whole unless one field would exceed
        *target_bytes*, then the leading ones are split (the trailing kept whole first);
        as many time steps as fit in *target_bytes*, at least one. A single horizontal
        field larger than the target is still not split.
    ``timeseries``
        The whole time axis, and the non-time dimensions cut into square-ish tiles (equal
        edges, a dimension shorter than the edge kept whole) so that the chunk is at most
        and close to *target_bytes*. If one column of the whole time axis exceeds the
        target, the tile is 1 x 1.
    ``auto``
        Other dimensions whole (split like ``map`` if they alone exceed the target); time
        and the horizontal dimensions each ``f x length`` with one factor ``f`` chosen so
        the chunk is at most and close to *target_bytes* (a cube-root rule for
        time, lat, lon), a dimension that would fall below 1 held at 1.

    Without a time dimension, ``map``, ``auto`` and ``timeseries`` all give the whole
    array if it fits in the target, else split the leading other dimensions, then the
    horizontal ones, keeping the trailing dimensions whole as long as possible.

    The integer rounding keeps a chunk at or below the target (unless the layout's rules
    force a bigger one, as above) and above half of it unless the whole array is smaller.

    Examples
    --------
    >>> sizes = {"time": 720, "lat": 180, "lon": 360}
    >>> plan_chunks(sizes, 4, "map", time_dim="time", horizontal_dims=["lat", "lon"])
    {'time': 64, 'lat': 180, 'lon': 360}
    >>> plan_chunks(sizes, 4, "timeseries", time_dim="time", horizontal_dims=["lat", "lon"])
    {'time': 720, 'lat': 76, 'lon': 76}
    """
    lengths = _checked_lengths(sizes)
    if isinstance(itemsize, bool) or not isinstance(itemsize, int | np.integer) or itemsize < 1:
        raise UsageError(f"itemsize {itemsize!r} is not a positive integer: give the bytes per "
                         "element, e.g. 4 for float32")
    if (isinstance(target_bytes, bool) or not isinstance(target_bytes, int | np.integer)
            or target_bytes < 1):
        raise UsageError(f"target_bytes {target_bytes!r} is not a positive integer: give the "
                         "wanted chunk size in bytes, e.g. 16777216 (16 MiB)")
    if isinstance(layout, str):
        layout = parse_chunks_option(layout, option="layout")
    if not isinstance(layout, str):
        explicit = _checked_sizes(layout, list(lengths), what="layout")
        return {d: _resolved(explicit.get(d, -1), n) for d, n in lengths.items()}

    budget = int(target_bytes) // int(itemsize)  # elements per chunk
    tdim = time_dim if time_dim in lengths else None
    horizontal = [d for d in lengths if d in set(horizontal_dims) and d != tdim]
    other = [d for d in lengths if d != tdim and d not in horizontal]

    if tdim is None:
        plan = _fill_trailing([*other, *horizontal], lengths, budget)
    elif layout == "map":
        plan = {d: lengths[d] for d in horizontal}
        plan.update(_fill_trailing(other, lengths, budget // _prod(lengths, horizontal)))
        plan[tdim] = _clamp(budget // _prod(plan, plan), lengths[tdim])
    elif layout == "timeseries":
        spatial = [*other, *horizontal]
        plan = _balanced(spatial, lengths, budget // lengths[tdim], dict.fromkeys(spatial, 1.0))
        plan[tdim] = lengths[tdim]
    else:  # auto
        plan = _fill_trailing(other, lengths, budget)
        scaled = [tdim, *horizontal]
        weights = {d: float(lengths[d]) for d in scaled}
        plan.update(_balanced(scaled, lengths, budget // _prod(plan, other), weights))
    return {d: int(plan[d]) for d in lengths}


def plan_dataset(
    ds: xr.Dataset,
    layout: str | Mapping[str, int],
    *,
    target_bytes: int = DEFAULT_TARGET_BYTES,
) -> dict[str, dict[str, int]]:
    """Chunk sizes for every variable of *ds* that a Zarr store would hold in chunks.

    The time and horizontal dimensions are found through CF attributes with the same
    axis finder as :func:`oceandata.subset`: the time dimension is the dimension of the
    1-D time coordinate, the horizontal dimensions are those of the latitude and longitude
    coordinates (``lat``, ``lon`` on a regular grid, ``nlat, nlon`` for 2-D curvilinear
    coordinates). When several coordinates of a kind are found (``TLAT`` and ``ULAT``),
    the dimensions of all of them count. Only coordinate values are read.

    Parameters
    ----------
    ds
        A CF-decoded dataset, usually opened lazily from the NetCDF being ingested.
    layout
        ``"map"``, ``"timeseries"``, ``"auto"``, a ``DIM=N,...`` string or ``{dim: N}``;
        see :func:`plan_chunks`. Explicit sizes apply to the variables that have the
        dimension.
    target_bytes
        The wanted size of one chunk before compression.

    Returns
    -------
    dict
        ``{variable: {dim: chunk length}}`` for every data variable and every
        non-index coordinate with more than one dimension.

    Raises
    ------
    UsageError
        A bad layout, or explicit sizes naming a dimension *ds* does not have.
    """
    if isinstance(layout, str):
        layout = parse_chunks_option(layout, option="layout")
    if not isinstance(layout, str):
        layout = _checked_sizes(layout, [str(d) for d in ds.dims], what="layout")
    time_dims, horizontal_dims = _axis_dims(ds)
    names = [*ds.data_vars,
             *(n for n, c in ds.coords.items() if n not in ds.indexes and c.ndim > 1)]
    plans: dict[str, dict[str, int]] = {}
    for name in names:
        var = ds[name].variable
        sizes = dict(zip(var.dims, var.shape, strict=True))
        own = layout if isinstance(layout, str) else {
            d: n for d, n in layout.items() if d in sizes}
        plans[name] = plan_chunks(
            sizes, var.dtype.itemsize, own,
            time_dim=next((d for d in var.dims if d in time_dims), None),
            horizontal_dims=[d for d in var.dims if d in horizontal_dims],
            target_bytes=target_bytes)
    return plans


# --------------------------------------------------------------------------- read cost


def read_cost(
    ds: xr.Dataset,
    chunks: Mapping[str, Mapping[str, int]] | Mapping[str, int],
    *,
    bbox: Sequence[float] | str | None = None,
    time: Sequence[Any] | str | None = None,
    depth: Sequence[float | None] | str | None = None,
    variables: Sequence[str] | str | None = None,
) -> int:
    """Bytes of stored chunks that ``oceandata.subset(ds, ...)`` would read.

    Parameters
    ----------
    ds
        The dataset as it is (or will be) stored; only its coordinates (and the axis and
        ragged-array variables that :func:`oceandata.subset` reads anyway) are read.
    chunks
        The store's chunk sizes: ``{variable: {dim: N}}`` (as from :func:`plan_dataset`),
        or one ``{dim: N}`` for all variables. ``-1``, a missing dimension or a size above
        the length mean the whole dimension.
    bbox, time, depth, variables
        The request, as for :func:`oceandata.subset` (command-line strings accepted).

    Returns
    -------
    int
        The sum over the data variables the subset returns of (number of chunks touched)
        x (elements per chunk) x itemsize: uncompressed bytes, whole chunks.

    Raises
    ------
    UsageError
        Malformed *chunks* (unknown variable or dimension, bad size) or request.
    DataError
        The request selects nothing, or the data lack an axis it needs (as in
        :func:`oceandata.subset`).

    Notes
    -----
    The request is run through :func:`oceandata.io.subset.subset` itself, on a shallow
    probe of *ds* in which every dimension ``d`` carries an integer coordinate
    ``__index_d = 0..len-1`` and the data variables (other than axis and ragged-array
    variables) are replaced by lazy dask zeros of the same shape, dtype and attributes.
    The positions that survive along each dimension are read back from those
    coordinates; a dimension touches the distinct chunk numbers ``position // chunk``.
    A variable costs ``prod(touched chunks per dim) * prod(chunk size per dim) *
    itemsize``. Edge chunks count as whole chunks, compression and per-request latency
    are ignored. On a curvilinear grid the subset is the smallest index box around the
    points in the box, so every chunk meeting that box counts, though some of it is
    masked.

    Examples
    --------
    >>> plan = plan_dataset(cobe, "timeseries")  # doctest: +SKIP
    >>> read_cost(cobe, plan, bbox=(180, 0, 180, 0))  # doctest: +SKIP
    """
    return read_plan(ds, chunks, bbox=bbox, time=time, depth=depth, variables=variables)[0]


def read_plan(
    ds: xr.Dataset,
    chunks: Mapping[str, Mapping[str, int]] | Mapping[str, int],
    *,
    bbox: Sequence[float] | str | None = None,
    time: Sequence[Any] | str | None = None,
    depth: Sequence[float | None] | str | None = None,
    variables: Sequence[str] | str | None = None,
) -> tuple[int, int]:
    """``(bytes, chunks)`` of stored chunks that ``oceandata.subset(ds, ...)`` would read.

    Same arguments and model as :func:`read_cost`, which returns the first number; the
    second is the number of stored chunks touched, summed over the data variables.
    """
    chunk_sizes = _chunk_table(ds, chunks)
    cut = subset(_index_probe(ds), bbox=bbox, time=time, depth=depth, variables=variables)
    total = count = 0
    for name, var in cut.data_vars.items():
        own = chunk_sizes(name)
        touched = size = 1
        for dim in var.dims:
            length = ds.sizes[dim]
            chunk = _resolved(own.get(str(dim), -1), length)
            index = _INDEX_PREFIX + str(dim)
            positions = (np.asarray(cut[index].values, dtype=np.int64) if index in cut.coords
                         else np.arange(length, dtype=np.int64))
            touched *= int(np.unique(positions // chunk).size)
            size *= chunk
        total += touched * size * ds[name].dtype.itemsize
        count += touched
    return int(total), int(count)


# --------------------------------------------------------------------------- helpers


def _prod(values: Mapping[Any, int], keys: Iterable[Any]) -> int:
    return math.prod(int(values[k]) for k in keys)


def _clamp(value: int, length: int) -> int:
    return max(1, min(int(length), int(value)))


def _resolved(size: int, length: int) -> int:
    """A requested chunk size (-1 = whole) as a length between 1 and max(1, *length*)."""
    return _clamp(length if size == -1 else size, max(1, length))


def _checked_lengths(sizes: Mapping[str, int]) -> dict[str, int]:
    """Dimension lengths as ints >= 1 (a length-0 dimension is planned as length 1)."""
    lengths: dict[str, int] = {}
    for dim, n in sizes.items():
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise UsageError(f"sizes[{dim!r}] = {n!r} is not a dimension length: give "
                             "non-negative integers, e.g. dict(ds.sizes)")
        lengths[dim] = max(1, int(n))
    return lengths


def _checked_sizes(sizes: Mapping[Any, Any], valid: Sequence[str], *,
                   what: str) -> dict[str, int]:
    """Explicit chunk sizes with known dimension names and sizes >= 1 or -1."""
    if not isinstance(sizes, Mapping):
        raise UsageError(f"{what} {sizes!r} is not a layout: give auto, map, timeseries or a "
                         "mapping {dim: N}, N a positive integer or -1")
    checked: dict[str, int] = {}
    for dim, n in sizes.items():
        if dim not in valid:
            raise UsageError(f"{what} names dimension {dim!r}, which the data do not have; "
                             f"valid dimensions: {', '.join(map(str, valid))}."
                             f"{suggest(str(dim), map(str, valid))}")
        if (isinstance(n, bool) or not isinstance(n, int | np.integer) or n == 0 or n < -1):
            raise UsageError(f"{what} size {n!r} of {dim!r} is not a positive integer or -1 "
                             "(whole dimension)")
        checked[dim] = int(n)
    return checked


def _fill_trailing(order: Sequence[str], lengths: Mapping[str, int],
                   budget: int) -> dict[str, int]:
    """Keep the trailing dims of *order* whole while the product fits *budget*, split the
    leading ones (at least 1 each)."""
    plan: dict[str, int] = {}
    used = 1
    for dim in reversed(order):
        plan[dim] = _clamp(budget // used, lengths[dim])
        used *= plan[dim]
    return {d: plan[d] for d in order}


def _balanced(dims: Sequence[str], lengths: Mapping[str, int], budget: int,
              weights: Mapping[str, float]) -> dict[str, int]:
    """Integer chunks ``~ f * weight`` with one factor ``f``, 1 <= chunk <= length and
    product at most (and above half of) *budget* elements, unless all at 1 or all whole.

    Real-valued targets are found by water filling: the dimension most outside
    [1, length] is fixed at that bound and ``f`` is solved again for the rest. Each
    target is then rounded down, and up instead where that still fits the budget (the
    dimensions furthest below their target first). A dimension left rounded down could
    not grow by one, so the product is above ``budget * n / (n + 1) >= budget / 2``.
    """
    if not dims:
        return {}
    if budget < 1:
        return dict.fromkeys(dims, 1)
    fixed: dict[str, float] = {}
    targets: dict[str, float] = {}
    while True:
        free = [d for d in dims if d not in fixed]
        if not free:
            targets = dict(fixed)
            break
        log_f = (math.log(budget) - sum(math.log(v) for v in fixed.values())
                 - sum(math.log(weights[d]) for d in free)) / len(free)
        worst, worst_excess, bound = None, 0.0, 0.0
        for d in free:
            log_c = log_f + math.log(weights[d])
            if log_c > math.log(lengths[d]) and log_c - math.log(lengths[d]) > worst_excess:
                worst, worst_excess, bound = d, log_c - math.log(lengths[d]), lengths[d]
            elif log_c < 0 and -log_c > worst_excess:
                worst, worst_excess, bound = d, -log_c, 1.0
        if worst is None:
            targets = {**fixed, **{d: math.exp(log_f) * weights[d] for d in free}}
            break
        fixed[worst] = bound

    plan = {d: _clamp(math.floor(targets[d] * (1 + 1e-12)), lengths[d]) for d in dims}
    order = sorted(dims, key=lambda d: plan[d] / targets[d])

    def room(dim: str) -> int:  # the largest chunk for *dim* that keeps the budget
        others = math.prod(plan[d] for d in dims if d != dim)
        return min(lengths[dim], budget // others)

    for dim in order:
        if plan[dim] < math.ceil(targets[dim]) and room(dim) > plan[dim]:
            plan[dim] += 1
    return {d: plan[d] for d in dims}


def _axis_dims(ds: xr.Dataset) -> tuple[set[Hashable], set[Hashable]]:
    """The time dimensions and horizontal dimensions of *ds*, through CF attributes."""
    axes = _Axes(ds)

    def coords(kind: str) -> list[xr.DataArray]:
        try:
            found = axes.get(kind, ds)
        except DataError:  # several candidates (TLAT and ULAT): all of them count
            return axes.candidates(kind, ds)
        return [] if found is None else [found]

    time_dims = {c.dims[0] for c in coords("time") if c.ndim == 1}
    horizontal = {d for kind in ("latitude", "longitude") for c in coords(kind) for d in c.dims}
    return time_dims, horizontal - time_dims


def _chunk_table(ds: xr.Dataset, chunks: Mapping[str, Any]) -> Any:
    """A function ``variable -> {dim: N}`` from either form of *chunks*, checked."""
    if not isinstance(chunks, Mapping):
        raise UsageError(f"chunks {chunks!r} is not a mapping: give {{variable: {{dim: N}}}} "
                         "(e.g. from plan_dataset) or one {dim: N} for all variables")
    values = list(chunks.values())
    if values and all(isinstance(v, Mapping) for v in values):
        per_variable = {}
        valid = [str(v) for v in ds.variables]
        for name, sizes in chunks.items():
            if name not in ds.variables:
                raise UsageError(f"chunks names variable {name!r}, which is not in the data; "
                                 f"valid names: {', '.join(valid[:30])}."
                                 f"{suggest(str(name), valid)}")
            per_variable[name] = _checked_sizes(
                sizes, [str(d) for d in ds[name].dims], what=f"chunks[{name!r}]")

        def lookup(name: Hashable) -> dict[str, int]:
            if name not in per_variable:
                raise UsageError(f"chunks has no sizes for variable {name!r}, which the subset "
                                 "reads: give {dim: N} for each of "
                                 f"{', '.join(map(str, ds.data_vars))}, or one {{dim: N}} "
                                 "for all")
            return per_variable[name]

        return lookup
    if any(isinstance(v, Mapping) for v in values):
        raise UsageError("chunks mixes variables and dimensions: give {variable: {dim: N}} "
                         "or one {dim: N} for all variables")
    common = _checked_sizes(chunks, [str(d) for d in ds.dims], what="chunks")
    return lambda name: common


def _index_probe(ds: xr.Dataset) -> xr.Dataset:
    """A shallow copy of *ds* with ``__index_<dim>`` coordinates and dummy data variables.

    Axis variables and ragged-array row sizes keep their values (subsetting reads them);
    every other data variable becomes lazy dask zeros with the same dims, dtype and
    attributes, so nothing of it can be read.
    """
    keep = set(_Axes(ds).names())
    dummies = {}
    for name, var in ds.data_vars.items():
        if name in keep or {"sample_dimension", "instance_dimension"} & set(var.attrs):
            continue
        data = da.zeros(var.shape, dtype=var.dtype, chunks=-1)
        dummies[name] = xr.Variable(var.dims, data, attrs=var.attrs, encoding=var.encoding)
    probe = ds.copy(deep=False).assign(dummies)
    return probe.assign_coords({
        _INDEX_PREFIX + str(dim): (dim, np.arange(n, dtype=np.int64))
        for dim, n in ds.sizes.items()})
