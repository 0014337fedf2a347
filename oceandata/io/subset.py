"""Cut a dataset to a box, a period, a depth range and a list of variables, lazily.

:func:`subset` is a pure function on an :class:`xarray.Dataset`: it opens no file and
starts no cluster. Axes are found through CF attributes with cf_xarray (standard
names, units, ``axis`` and ``positive``), never by hard-coded names. Three horizontal
layouts are understood:

regular grid
    1-D latitude and longitude on two different dimensions (COBE-SST2, ETOPO). Selected
    by position along each dimension, in the source order; a box across the grid's
    longitude seam returns both pieces joined west to east.
curvilinear grid
    2-D latitude and longitude on the same two dimensions (POP, NEMO, CMIP bipolar
    grids). Cut to the smallest index box holding every point inside the box; data
    variables are NaN outside it, coordinates are left whole.
discrete sampling geometry
    1-D latitude and longitude on one shared dimension (CF-DSG point, timeSeries,
    profile, trajectory). The elements of that dimension inside the box are kept;
    contiguous ragged arrays (``sample_dimension``) keep their row sizes consistent.

The parsers :func:`parse_bbox`, :func:`parse_range` and :func:`parse_depth` turn the
command-line forms ``W,S,E,N``, ``START/END`` and ``MIN/MAX`` into the arguments of
:func:`subset`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cf_xarray  # noqa: F401  (registers the ``.cf`` accessor)
import numpy as np
import xarray as xr

from ..errors import DataError, UsageError, suggest
from ..times import Period, format_fields, keys_of_fields, pair, period, time_fields

__all__ = ["parse_bbox", "parse_depth", "parse_range", "subset"]

#: Metres per unit of a vertical coordinate, by lower-cased UDUNITS spelling.
_METRES_PER_UNIT = {
    **dict.fromkeys(("m", "meter", "meters", "metre", "metres"), 1.0),
    **dict.fromkeys(("cm", "centimeter", "centimeters", "centimetre", "centimetres"), 0.01),
    **dict.fromkeys(("mm", "millimeter", "millimeters", "millimetre", "millimetres"), 0.001),
    **dict.fromkeys(("km", "kilometer", "kilometers", "kilometre", "kilometres"), 1000.0),
}

#: CF standard names of vertical coordinates that grow upward or downward.
_UPWARD_NAMES = {"altitude", "height", "height_above_geopotential_datum",
                 "height_above_reference_ellipsoid", "height_above_mean_sea_level",
                 "height_above_sea_floor", "surface_altitude"}
_DOWNWARD_NAMES = {"depth", "depth_below_geoid", "depth_below_sea_floor",
                   "sea_floor_depth_below_geoid", "sea_floor_depth_below_sea_surface"}

#: Which cf_xarray keys name each kind of axis (``coordinates`` keys, then ``axes`` keys).
_AXIS_KEYS = {
    "latitude": (("latitude",), ()),
    "longitude": (("longitude",), ()),
    "time": (("time",), ("T",)),
    "vertical": (("vertical",), ("Z",)),
}



# --------------------------------------------------------------------------- parsers


def parse_bbox(text: str, *, option: str = "--bbox") -> tuple[float, float, float, float]:
    """Parse ``"W,S,E,N"`` (degrees) into a checked ``(west, south, east, north)``.

    Parameters
    ----------
    text
        Four numbers separated by commas, e.g. ``"170,-10,-170,10"``.
    option
        The option name used in error messages.

    Returns
    -------
    tuple of float
        ``(west, south, east, north)``; ``west > east`` crosses the antimeridian.

    Raises
    ------
    UsageError
        If *text* is not four numbers or the box is invalid (see :func:`subset`).

    Examples
    --------
    >>> parse_bbox("170,-10,-170,10")
    (170.0, -10.0, -170.0, 10.0)
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) != 4:
            raise ValueError
        numbers = tuple(float(p) for p in parts)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not W,S,E,N: give four numbers in degrees "
                         "separated by commas, e.g. 170,-10,-170,10") from None
    return _BBox.checked(numbers, what=option.lstrip("-")).as_tuple()


def parse_range(text: str, *, option: str = "--time") -> tuple[str | None, str | None]:
    """Parse ``"START/END"`` ISO dates into ``(start, end)``; either side may be empty.

    Parameters
    ----------
    text
        E.g. ``"1997-01/1998-12"``, ``"2000-01-01/"`` or ``"/1960"``.
    option
        The option name used in error messages.

    Returns
    -------
    tuple
        ``(start, end)`` strings, ``None`` for an open side.

    Raises
    ------
    UsageError
        If there is no ``/``, a side is not an ISO date, or start is after end.

    Examples
    --------
    >>> parse_range("1997-01/")
    ('1997-01', None)
    """
    checked = period(str(text), what=option)
    return checked.start, checked.end


def parse_depth(text: str, *, option: str = "--depth") -> tuple[float | None, float | None]:
    """Parse ``"MIN/MAX"`` metres (positive down) into ``(min, max)``; either may be empty.

    Parameters
    ----------
    text
        E.g. ``"0/100"``, ``"500/"`` or ``"/50"``.
    option
        The option name used in error messages.

    Returns
    -------
    tuple
        ``(min, max)`` in metres, ``None`` for an open side.

    Raises
    ------
    UsageError
        If there is no ``/``, a side is not a number, or min is greater than max.

    Examples
    --------
    >>> parse_depth("0/100")
    (0.0, 100.0)
    """
    text = str(text)
    sides = text.split("/")
    try:
        if len(sides) != 2:
            raise ValueError
        low, high = (float(s) if s.strip() else None for s in sides)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not MIN/MAX: give depths in metres, positive "
                         "down, separated by '/', either may be empty, e.g. 0/100 or 500/"
                         ) from None
    return _DepthRange.checked((low, high), what=option.lstrip("-")).as_tuple()


# --------------------------------------------------------------------------- subset


def subset(
    ds: xr.Dataset,
    *,
    bbox: Sequence[float] | str | None = None,
    time: Any = None,
    depth: Sequence[float | None] | str | None = None,
    variables: Sequence[str] | str | None = None,
) -> xr.Dataset:
    """Cut *ds* to a lon/lat box, a period, a depth range and a set of variables.

    Nothing is loaded: only the coordinate values (and, for ragged arrays, the row
    sizes) are read to find positions; data variables stay lazy.

    Parameters
    ----------
    ds
        A CF-decoded dataset (regular grid, curvilinear grid or CF-DSG).
    bbox
        ``(west, south, east, north)`` in degrees, longitudes anywhere in -180..360.
        ``west > east`` crosses the antimeridian (``(170, -10, -170, 10)``); a box
        across the data's longitude seam (``(-10, 30, 10, 50)`` on a 0..360 grid)
        returns both pieces joined west to east. Bounds are inclusive.
    time
        A period in any form of :func:`oceandata.times.period`: ``(start, end)`` of
        years, ISO strings (``"1997"``, ``"1997-01"``, ``"1997-01-15T12:00"``; a partial
        date stands for its whole period), dates or datetimes, None for an open side;
        the text ``"START/END"``; or a :class:`~oceandata.times.Period` (see "Periods" in
        docs/analysis.md). Works for numpy and cftime (non-standard calendar) times.
    depth
        ``(min, max)`` in metres, positive down, either may be None. The vertical
        coordinate is converted from its units (m, cm, km) and ``positive`` direction
        (without one, a coordinate whose values are all at or below zero is read as
        heights).
    variables
        Data variables to keep; their coordinates, bounds and the DSG structure
        variables (row sizes, instance ids) are kept with them.

    *bbox*, *time* and *depth* also accept the command-line text ``"W,S,E,N"``,
    ``"START/END"`` and ``"MIN/MAX"`` (see :func:`parse_bbox` and friends).

    Returns
    -------
    xarray.Dataset
        The lazy subset, attributes untouched.

    Raises
    ------
    UsageError
        A malformed request: bad box, start after end, min depth above max.
    DataError
        The data cannot answer it: no such axis or variable, a range outside the data
        (the message gives the data's extent), an unsupported layout.

    Examples
    --------
    >>> cobe = xr.open_dataset("year1950.nc")  # doctest: +SKIP
    >>> subset(cobe, bbox=(170, -5, -120, 5), time=("1950-03", "1950-05"))  # doctest: +SKIP
    """
    box = period_ = layers = keep = None
    if bbox is not None:
        box = _BBox.checked(parse_bbox(bbox) if isinstance(bbox, str) else bbox, what="bbox")
    if time is not None:
        period_ = period(time, what="time")
    if depth is not None:
        layers = _DepthRange.checked(parse_depth(depth) if isinstance(depth, str) else depth,
                                     what="depth")
    if variables is not None:
        keep = _checked_variables(ds, variables)

    axes = _Axes(ds)
    if box is not None:
        ds = _select_bbox(ds, box, axes)
    if period_ is not None:
        ds = _select_time(ds, period_, axes)
    if layers is not None:
        ds = _select_depth(ds, layers, axes)
    if keep is not None:
        ds = _select_variables(ds, keep, axes)
    return ds


# --------------------------------------------------------------------------- requests


def _fmt(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class _BBox:
    """A lon/lat box; longitudes are compared modulo 360 so any convention works."""

    west: float
    south: float
    east: float
    north: float

    @classmethod
    def checked(cls, values: Any, *, what: str) -> _BBox:
        try:
            numbers = [float(v) for v in values]
        except (TypeError, ValueError):
            raise UsageError(f"{what} {values!r} is not four numbers: give (west, south, east, "
                             "north) in degrees") from None
        if len(numbers) != 4:
            raise UsageError(f"{what} has {len(numbers)} values: give four, (west, south, east, "
                             "north) in degrees")
        box = cls(*numbers)
        for side in ("west", "south", "east", "north"):
            value = getattr(box, side)
            if not math.isfinite(value):
                raise UsageError(f"{what} {side} ({value}) is not a number: give finite degrees")
        for side in ("west", "east"):
            value = getattr(box, side)
            if not -180 <= value <= 360:
                raise UsageError(f"{what} {side} ({_fmt(value)}) is outside -180..360: give "
                                 "longitudes in degrees east between -180 and 360")
        for side in ("south", "north"):
            value = getattr(box, side)
            if not -90 <= value <= 90:
                raise UsageError(f"{what} {side} ({_fmt(value)}) is outside -90..90: give "
                                 "latitudes in degrees north between -90 and 90")
        if box.south > box.north:
            raise UsageError(f"{what} south ({_fmt(box.south)}) is greater than north "
                             f"({_fmt(box.north)}): give W,S,E,N with S <= N")
        return box

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.west, self.south, self.east, self.north)

    @property
    def text(self) -> str:
        return ",".join(_fmt(v) for v in self.as_tuple())

    @property
    def width(self) -> float:
        """Eastward extent in degrees, 0..360 (west > east wraps through 180°)."""
        span = self.east - self.west
        return min(span, 360.0) if span >= 0 else span % 360.0

    def east_of_west(self, lon: np.ndarray) -> np.ndarray:
        """Degrees east of the box's west edge, 0..360, whatever the lon convention."""
        return (np.asarray(lon, dtype=np.float64) - self.west) % 360.0

    def contains_lon(self, lon: np.ndarray) -> np.ndarray:
        offset = self.east_of_west(lon)
        width = self.width
        inside = offset <= width + 1e-9
        if width >= 360.0:  # the whole circle, including points exactly on the edge
            inside = np.isfinite(offset)
        return inside | (offset >= 360.0 - 1e-9)  # float noise just below the west edge

    def contains_lat(self, lat: np.ndarray) -> np.ndarray:
        lat = np.asarray(lat, dtype=np.float64)
        return (lat >= self.south) & (lat <= self.north)

    def contains(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        return self.contains_lat(lat) & self.contains_lon(lon)


@dataclass(frozen=True)
class _DepthRange:
    """Depths in metres, positive down; None is an open side."""

    low: float | None
    high: float | None

    @classmethod
    def checked(cls, values: Any, *, what: str) -> _DepthRange:
        low, high = pair(values, what=what, form="(min, max) depths in metres")
        try:
            low, high = (None if v is None else float(v) for v in (low, high))
        except (TypeError, ValueError):
            raise UsageError(f"{what} {values!r} is not two numbers: give (min, max) in "
                             "metres, positive down, None for an open side") from None
        for name, value in (("min", low), ("max", high)):
            if value is not None and not math.isfinite(value):
                raise UsageError(f"{what} {name} ({value}) is not a number: give metres, "
                                 "positive down")
        if low is not None and high is not None and low > high:
            raise UsageError(f"{what} min ({_fmt(low)}) is greater than max ({_fmt(high)}): "
                             "give MIN/MAX in metres, positive down, with MIN <= MAX")
        return cls(low, high)

    def as_tuple(self) -> tuple[float | None, float | None]:
        return (self.low, self.high)

    @property
    def text(self) -> str:
        return "/".join(".." if v is None else _fmt(v) for v in self.as_tuple()) + " m"

    def contains(self, depth_m: np.ndarray) -> np.ndarray:
        inside = np.isfinite(depth_m)
        if self.low is not None:
            inside &= depth_m >= self.low
        if self.high is not None:
            inside &= depth_m <= self.high
        return inside


def _checked_variables(ds: xr.Dataset, variables: Sequence[str] | str) -> list[str]:
    names = [variables] if isinstance(variables, str) else list(variables)
    if not names:
        raise UsageError("variables is empty: give at least one data variable name, or None "
                         "to keep them all")
    valid = [str(v) for v in ds.data_vars]
    for name in names:
        if name not in ds.data_vars:
            shown = ", ".join(valid[:30]) + (", …" if len(valid) > 30 else "")
            raise DataError(f"variable {name!r} is not in the data; valid names: {shown}."
                            f"{suggest(str(name), valid)}")
    return names


# --------------------------------------------------------------------------- axes


class _Axes:
    """Names of the latitude, longitude, time and vertical variables, found by CF.

    cf_xarray only classifies coordinates, so data variables are promoted to coordinates
    on a shallow probe first (CF-DSG files often leave ``LATITUDE`` a data variable).
    ``guess_coord_axis`` on a shallow copy, coordinates only (a data variable named
    ``t`` is a temperature, not a time), is the fallback for names such as ``lev``.
    The names are found once; :meth:`get` reads them from the dataset as subset so far.
    """

    def __init__(self, ds: xr.Dataset) -> None:
        probe = ds.set_coords(list(ds.data_vars))
        self.bounds = {b for names in probe.cf.bounds.values() for b in names}
        self._found = self._lookup(probe)
        if any(not names for names in self._found.values()):
            guessed = self._lookup(ds.copy(deep=False).cf.guess_coord_axis())
            for kind, names in self._found.items():
                if not names:
                    self._found[kind] = guessed[kind]

    def _lookup(self, probe: xr.Dataset) -> dict[str, list[Hashable]]:
        coordinates, axes = probe.cf.coordinates, probe.cf.axes
        found = {}
        for kind, (coord_keys, axis_keys) in _AXIS_KEYS.items():
            names: list[Hashable] = []
            for key in coord_keys:
                names += coordinates.get(key, [])
            for key in axis_keys:
                names += axes.get(key, [])
            found[kind] = list(dict.fromkeys(n for n in names if n not in self.bounds))
        return found

    def candidates(self, kind: str, ds: xr.Dataset) -> list[xr.DataArray]:
        """Every variable of that kind in *ds* (POP has TLAT and ULAT latitudes)."""
        return [ds[n] for n in self._found[kind] if n in ds.variables]

    def names(self) -> set[Hashable]:
        """Every variable found as an axis."""
        return {n for names in self._found.values() for n in names}

    def get(self, kind: str, ds: xr.Dataset) -> xr.DataArray | None:
        """The one variable of that kind in *ds*, dimension coordinates first; None if absent."""
        names = [n for n in self._found[kind] if n in ds.variables]
        if not names:
            return None

        def rank(name: Hashable) -> int:
            if name in ds.dims and name in ds.coords:
                return 0
            return 1 if name in ds.coords else 2 + ds[name].ndim

        best = min(rank(n) for n in names)
        chosen = [n for n in names if rank(n) == best]
        if len(chosen) > 1:
            raise DataError(f"the data have several {kind} coordinates "
                            f"({', '.join(map(str, chosen))}), so the subset is ambiguous; "
                            "drop all but one (ds.drop_vars) before subsetting")
        return ds[chosen[0]]


# --------------------------------------------------------------------------- positions


def _indexer(positions: np.ndarray, size: int) -> slice | np.ndarray:
    """A slice when *positions* is one ascending run, else the integer array itself."""
    positions = np.asarray(positions, dtype=np.intp)
    if positions.size and np.all(np.diff(positions) == 1):
        start, stop = int(positions[0]), int(positions[-1]) + 1
        return slice(None) if (start, stop) == (0, size) else slice(start, stop)
    return positions


@dataclass(frozen=True)
class _RaggedArray:
    """A CF contiguous ragged array: a count variable on the instance dimension."""

    count: Hashable
    instance_dim: Hashable
    sample_dim: Hashable

    @classmethod
    def all_in(cls, ds: xr.Dataset, *, touching: Hashable, what: str) -> list[_RaggedArray]:
        """The ragged arrays that a selection along *touching* must keep consistent."""
        found = []
        for name, var in ds.variables.items():
            if "instance_dimension" in var.attrs and var.ndim == 1 and touching in (
                    var.dims[0], var.attrs["instance_dimension"]):
                raise DataError(f"{what} subsetting of indexed ragged arrays (variable {name!r} "
                                "with instance_dimension) is not supported yet: open the data "
                                "without it, then filter the observations, e.g. "
                                "ds.where(mask, drop=True)")
            if "sample_dimension" in var.attrs and var.ndim == 1:
                ragged = cls(name, var.dims[0], var.attrs["sample_dimension"])
                if touching in (ragged.instance_dim, ragged.sample_dim):
                    found.append(ragged)
        return found

    def row_sizes(self, ds: xr.Dataset, what: str) -> np.ndarray:
        sizes = np.asarray(ds[self.count].values, dtype=np.float64)
        total = ds.sizes.get(self.sample_dim, -1)
        if (not np.all(np.isfinite(sizes)) or np.any(sizes < 0)
                or np.any(sizes != np.round(sizes)) or sizes.sum() != total):
            raise DataError(f"{what} subsetting of this ragged array is not supported yet: the "
                            f"row sizes in {self.count!r} are missing or do not add up to the "
                            f"{total} elements of {self.sample_dim!r}; open the data without "
                            f"{what}, then filter the observations, e.g. ds.where(mask, "
                            "drop=True)")
        return sizes.astype(np.intp)


def _take(ds: xr.Dataset, dim: Hashable, positions: np.ndarray, *, what: str) -> xr.Dataset:
    """Keep the elements *positions* (ascending) of *dim*, keeping ragged arrays whole."""
    indexers: dict[Hashable, Any] = {dim: _indexer(positions, ds.sizes[dim])}
    replaced = {}
    kept = np.zeros(ds.sizes[dim], dtype=bool)
    kept[positions] = True
    for ragged in _RaggedArray.all_in(ds, touching=dim, what=what):
        sizes = ragged.row_sizes(ds, what)
        if dim == ragged.instance_dim:  # whole rows of the kept instances
            samples = np.flatnonzero(np.repeat(kept, sizes))
            indexers[ragged.sample_dim] = _indexer(samples, ds.sizes[ragged.sample_dim])
        else:  # some elements of each row: count them again
            owner = np.repeat(np.arange(sizes.size), sizes)
            new_sizes = np.bincount(owner[kept], minlength=sizes.size)
            replaced[ragged.count] = ds[ragged.count].copy(
                data=new_sizes.astype(ds[ragged.count].dtype))
    if replaced:
        ds = ds.assign(replaced)
    return ds.isel(indexers)


# --------------------------------------------------------------------------- bbox


def _select_bbox(ds: xr.Dataset, box: _BBox, axes: _Axes) -> xr.Dataset:
    lat, lon = axes.get("latitude", ds), axes.get("longitude", ds)
    if lat is None or lon is None:
        missing = " and ".join(k for k, v in (("latitude", lat), ("longitude", lon))
                               if v is None)
        present = ""
        if lat is not None or lon is not None:
            kind, found = ("latitude", lat) if lon is None else ("longitude", lon)
            present = f" (it has {kind} {found.name!r}; select along it with ds.sel)"
        raise DataError(f"bbox {box.text} needs latitude and longitude, but the data have no "
                        f"{missing} coordinate (CF standard_name or degrees units){present}")
    if lat.ndim <= 1 and lon.ndim <= 1 and (lat.dims != lon.dims or lat.ndim == 0):
        return _select_bbox_regular(ds, box, lat, lon)
    if lat.ndim == 1 and lat.dims == lon.dims:
        return _select_bbox_features(ds, box, lat, lon)
    if lat.ndim == 2 and set(lat.dims) == set(lon.dims):
        return _select_bbox_curvilinear(ds, box, lat, lon, axes)
    raise DataError(f"bbox subsetting does not understand latitude {lat.name!r} {lat.dims} "
                    f"with longitude {lon.name!r} {lon.dims}: expected 1-D axes, 2-D grids on "
                    "the same dimensions, or DSG features on one dimension")


def _no_points(box: _BBox, lat: xr.DataArray, lon: xr.DataArray) -> DataError:
    lat_v = np.asarray(lat.values, dtype=np.float64)
    lon_v = np.asarray(lon.values, dtype=np.float64)
    if not np.isfinite(lat_v).any() or not np.isfinite(lon_v).any():
        return DataError(f"bbox {box.text} contains no data points: the data's latitude "
                         f"{lat.name!r} or longitude {lon.name!r} has no valid values")
    return DataError(f"bbox {box.text} contains no data points: the data cover latitude "
                     f"{_fmt(np.nanmin(lat_v))}..{_fmt(np.nanmax(lat_v))} and longitude "
                     f"{_fmt(np.nanmin(lon_v))}..{_fmt(np.nanmax(lon_v))}")


def _west_to_east(box: _BBox, lon: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Positions of the inside longitudes, in source order unless they wrap the seam.

    When the box spans the grid's seam the inside points form two runs; they are
    ordered by distance east of the box's west edge, and a cyclic duplicate (the same
    meridian at both ends of the axis, as in ETOPO20) is kept once.
    """
    positions = np.flatnonzero(inside)
    if positions.size == 0 or np.all(np.diff(positions) == 1):
        return positions
    offset = box.east_of_west(lon[positions])
    order = positions[np.argsort(offset, kind="stable")]
    steps = np.diff(np.sort(offset, kind="stable"))
    spacing = np.median(np.abs(np.diff(lon.astype(np.float64))))
    repeated = np.concatenate([[False], steps <= 0.01 * spacing])
    return order[~repeated]


def _select_bbox_regular(ds: xr.Dataset, box: _BBox, lat: xr.DataArray,
                         lon: xr.DataArray) -> xr.Dataset:
    lat_v, lon_v = lat.values, lon.values
    lat_in, lon_in = box.contains_lat(lat_v), box.contains_lon(lon_v)
    if not lat_in.any() or not lon_in.any():
        raise _no_points(box, lat, lon)
    indexers: dict[Hashable, Any] = {}
    if lat.ndim == 1:
        indexers[lat.dims[0]] = _indexer(np.flatnonzero(lat_in), lat.size)
    if lon.ndim == 1:
        indexers[lon.dims[0]] = _indexer(_west_to_east(box, lon_v, lon_in), lon.size)
    return ds.isel(indexers)


def _select_bbox_features(ds: xr.Dataset, box: _BBox, lat: xr.DataArray,
                          lon: xr.DataArray) -> xr.Dataset:
    inside = box.contains(lat.values, lon.values)
    if not inside.any():
        raise _no_points(box, lat, lon)
    return _take(ds, lat.dims[0], np.flatnonzero(inside), what="bbox")


def _select_bbox_curvilinear(ds: xr.Dataset, box: _BBox, lat: xr.DataArray,
                             lon: xr.DataArray, axes: _Axes) -> xr.Dataset:
    lon = lon.transpose(*lat.dims)
    inside = box.contains(lat.values, lon.values)
    if not inside.any():
        raise _no_points(box, lat, lon)
    rows = np.flatnonzero(inside.any(axis=1))
    cols = np.flatnonzero(inside.any(axis=0))
    ydim, xdim = lat.dims
    cut = {ydim: slice(int(rows[0]), int(rows[-1]) + 1),
           xdim: slice(int(cols[0]), int(cols[-1]) + 1)}
    ds = ds.isel(cut)
    mask = xr.DataArray(inside[cut[ydim], cut[xdim]], dims=(ydim, xdim))
    skip = _structural_names(ds, axes)
    masked = {}
    for name, var in ds.data_vars.items():
        if name in skip or ydim not in var.dims or xdim not in var.dims:
            continue
        lazy = var if var.chunks is not None else var.chunk()
        out = lazy.where(mask)
        out.attrs = dict(var.attrs)
        out.encoding = {k: v for k, v in var.encoding.items()
                        if k != "dtype" or out.dtype == var.dtype}
        masked[name] = out
    return ds.assign(masked)


# --------------------------------------------------------------------------- time, depth


def _select_along(ds: xr.Dataset, coord: xr.DataArray, inside: np.ndarray, *, what: str,
                  empty: str) -> xr.Dataset:
    """Keep the elements of *coord*'s dimension where *inside*; DataError *empty* if none."""
    if not inside.any():
        raise DataError(empty)
    if coord.ndim == 0:
        return ds
    if coord.ndim > 1:
        raise DataError(f"{what} subsetting needs a 1-D {what} coordinate, but {coord.name!r} "
                        f"has dimensions {coord.dims}; select with ds.where instead")
    return _take(ds, coord.dims[0], np.flatnonzero(inside), what=what)


def _select_time(ds: xr.Dataset, period: Period, axes: _Axes) -> xr.Dataset:
    coord = axes.get("time", ds)
    if coord is None:
        raise DataError(f"time {period.text} was given but the data have no time coordinate "
                        "(CF standard_name time, axis T or units 'since')")
    fields = time_fields(coord)
    keys, valid = keys_of_fields(fields)
    if not valid.any():
        raise DataError(f"time {period.text}: the data's time {coord.name!r} has no valid dates")
    inside = period.contains(keys) & valid
    flat_keys, flat_fields = keys[valid], fields.reshape(7, -1)[:, valid.ravel()]
    first = format_fields(flat_fields[:, np.argmin(flat_keys)])
    last = format_fields(flat_fields[:, np.argmax(flat_keys)])
    overlaps = ((period.start_key is None or period.start_key <= flat_keys.max())
                and (period.end_key is None or period.end_key >= flat_keys.min()))
    where = "is outside" if not overlaps else "falls between the time steps of"
    empty = f"time {period.text} {where} the data's time range {first}/{last}"
    return _select_along(ds, coord, inside, what="time", empty=empty)


def _depth_in_metres(coord: xr.DataArray) -> np.ndarray:
    """Values of a vertical coordinate as metres, positive down."""
    units = str(coord.attrs.get("units", "")).strip().lower()
    if units not in _METRES_PER_UNIT:
        raise DataError(f"vertical coordinate {coord.name!r} has units {units or 'none'!r}, "
                        f"not a length ({', '.join(sorted({'m', 'cm', 'km', 'mm'}))}), so "
                        "depths in metres cannot be applied; select with ds.sel on it")
    values = np.asarray(coord.values, dtype=np.float64) * _METRES_PER_UNIT[units]
    positive = str(coord.attrs.get("positive", coord.attrs.get("_CoordinateZisPositive",
                                                                 ""))).lower()
    standard_name = coord.attrs.get("standard_name", "")
    if not positive:
        if standard_name in _UPWARD_NAMES:
            positive = "up"
        elif standard_name in _DOWNWARD_NAMES:
            positive = "down"
        else:  # no direction stated: all values at or below zero read as heights
            finite = values[np.isfinite(values)]
            positive = "up" if finite.size and finite.max() <= 0 < -finite.min() else "down"
    return -values if positive == "up" else values


def _select_depth(ds: xr.Dataset, layers: _DepthRange, axes: _Axes) -> xr.Dataset:
    coord = axes.get("vertical", ds)
    if coord is None:
        raise DataError(f"depth {layers.text} was given but the data have no vertical "
                        "coordinate (CF axis Z, positive up/down, or a depth standard_name)")
    depth_m = _depth_in_metres(coord)
    inside = layers.contains(depth_m)
    finite = depth_m[np.isfinite(depth_m)]
    extent = (f"{_fmt(finite.min())}/{_fmt(finite.max())} m" if finite.size
              else "(no valid values)")
    empty = (f"depth {layers.text} selects no level of the data's depth range {extent} "
             f"({coord.name!r}, positive down)")
    return _select_along(ds, coord, inside, what="depth", empty=empty)


# --------------------------------------------------------------------------- variables


def _structural_names(ds: xr.Dataset, axes: _Axes) -> set[Hashable]:
    """Data variables that describe the others: axes, bounds, ragged and DSG ids, CRS."""
    names = set(axes.names()) | axes.bounds
    for name, var in ds.variables.items():
        attrs = var.attrs
        if {"sample_dimension", "instance_dimension", "cf_role", "grid_mapping_name"} & set(
                attrs):
            names.add(name)
        for key in ("grid_mapping", "bounds"):
            ref = attrs.get(key, var.encoding.get(key))
            if isinstance(ref, str) and ref in ds.variables:
                names.add(ref)
    return names


def _select_variables(ds: xr.Dataset, keep: Iterable[str], axes: _Axes) -> xr.Dataset:
    keep = list(keep)
    dims = {d for name in keep for d in ds[name].dims}
    for var in ds.variables.values():  # DSG: the instance and sample dims go together
        linked = var.attrs.get("sample_dimension") or var.attrs.get("instance_dimension")
        if linked and var.ndim == 1 and (var.dims[0] in dims or linked in dims):
            dims |= {var.dims[0], linked}
    helpers = [name for name in _structural_names(ds, axes)
               if name in ds.data_vars and name not in keep and set(ds[name].dims) <= dims]
    chosen = ds[[*keep, *helpers]]
    bounds = ds.cf.bounds
    extra = [b for name in chosen.variables for b in bounds.get(name, [])
             if b in ds.data_vars and b not in chosen.variables]
    order = set(keep) | set(helpers) | set(extra)
    return ds[[name for name in ds.data_vars if name in order]]
