"""Check that catalog entries open and agree with the metadata they declare.

``oceandata catalog validate`` runs :func:`validate_catalog`: the YAML and its schema
were already checked when the catalog was read; here every local entry is opened
(lazily: only coordinates are read) and compared with its metadata:

- the entry opens with its driver and arguments;
- every declared variable is in the data, with the declared ``units`` and
  ``standard_name`` when the data state them;
- the declared ``bbox``, ``time_range`` and ``depth_range`` agree with the coordinates
  within half a grid cell (half a time step, at least one day, for times).

A mismatch is a :class:`Problem` naming the entry, the field (``variables[0].units``,
``bbox.west``...) and what the data say, so the catalog author can fix the line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..catalog.core import Catalog, Entry
from ..errors import OceandataError
from ..times import time_fields, time_parts
from .subset import _Axes, _BBox, _depth_in_metres

__all__ = ["Problem", "validate_catalog", "validate_entry"]

#: Smallest tolerance for positions (degrees) and depths (metres): float noise in files.
_MIN_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Problem:
    """One disagreement between an entry's metadata and its data.

    Attributes
    ----------
    entry
        Entry name.
    field
        Metadata field, e.g. ``variables[0].units`` or ``bbox.west``.
    message
        What was declared and what the data say.
    where
        ``file:line`` of the entry's definition.
    """

    entry: str
    field: str
    message: str
    where: str

    def as_dict(self) -> dict[str, str]:
        """A JSON-ready dict."""
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.where}: entry {self.entry!r}, {self.field}: {self.message}"


def validate_catalog(cat: Catalog, *, remote: bool = False) -> list[Problem]:
    """Open every entry of *cat* and compare it with its declared metadata.

    Parameters
    ----------
    cat
        An opened catalog (schema already valid).
    remote
        Also open entries served over the network (OPeNDAP, http); off by default so
        validation works offline.

    Returns
    -------
    list of Problem
        Empty when every entry agrees with its metadata.
    """
    problems: list[Problem] = []
    for entry in cat.entries.values():
        if not remote and _is_remote(entry):
            continue
        problems.extend(validate_entry(entry))
    return problems


def validate_entry(entry: Entry) -> list[Problem]:
    """Open one entry (coordinates only) and compare it with its metadata.

    Access restrictions are not applied: validation is an operator's check of the
    files, and it reads no data values.
    """
    def problem(field: str, message: str) -> Problem:
        return Problem(entry.name, field, message, entry.where)

    try:
        ds = entry._open()
    except OceandataError as exc:
        return [problem("args", f"does not open: {exc}")]
    problems = [problem(f, m) for f, m in _check_variables(entry, ds)]
    axes = _Axes(ds)
    for check in (_check_bbox, _check_time, _check_depth):
        try:
            problems.extend(problem(f, m) for f, m in check(entry, ds, axes))
        except OceandataError as exc:
            problems.append(problem(check.__name__.removeprefix("_check_"), str(exc)))
    return problems


def _is_remote(entry: Entry) -> bool:
    if entry.driver == "opendap":
        return True
    urlpath = entry.args.get("urlpath")
    urls = [urlpath] if isinstance(urlpath, str) else list(urlpath or [])
    return not entry.metadata.sample and any("://" in str(u) for u in urls)


def _check_variables(entry: Entry, ds: xr.Dataset) -> Iterable[tuple[str, str]]:
    for i, declared in enumerate(entry.metadata.variables):
        field = f"variables[{i}]"
        if declared.name not in ds.variables:
            valid = ", ".join(sorted(map(str, ds.data_vars)))
            yield f"{field}.name", f"{declared.name!r} is not in the data; it has: {valid}"
            continue
        var = ds[declared.name]
        for key in ("units", "standard_name"):
            expected = getattr(declared, key)
            actual = var.attrs.get(key, var.encoding.get(key))
            if expected is not None and actual is not None and str(actual).strip() != expected:
                yield (f"{field}.{key}",
                       f"declared {expected!r} for {declared.name!r}, the data say {actual!r}")


def _half_step(values: np.ndarray, *, period: float | None = None) -> float:
    """Half the median spacing along each axis of *values* (cyclic when *period* is set)."""
    steps = []
    for axis in range(values.ndim):
        if values.shape[axis] < 2:
            continue
        diff = np.diff(values, axis=axis)
        if period is not None:
            diff = (diff + period / 2) % period - period / 2
        diff = np.abs(diff[np.isfinite(diff)])
        diff = diff[diff > 0]
        if diff.size:
            steps.append(float(np.median(diff)))
    return max([s / 2 for s in steps], default=0.0) + _MIN_TOLERANCE


def _check_bbox(entry: Entry, ds: xr.Dataset, axes: _Axes) -> Iterable[tuple[str, str]]:
    declared = entry.metadata.bbox
    lat, lon = axes.get("latitude", ds), axes.get("longitude", ds)
    if declared is None:
        return
    if lat is None:
        yield "bbox", "declared, but the data have no CF latitude coordinate"
        return
    lat_v = np.asarray(lat.values, dtype=np.float64)
    tol_lat = _half_step(lat_v)
    lat_v = lat_v[np.isfinite(lat_v)]
    if not lat_v.size:
        yield "bbox", "the data have no valid latitude values"
        return
    for side, actual in (("south", lat_v.min()), ("north", lat_v.max())):
        value = getattr(declared, side)
        if abs(value - actual) > tol_lat:
            yield (f"bbox.{side}", f"declared {value:g}, the data reach {actual:g} "
                                   f"(tolerance {tol_lat:g}°)")
    box = _BBox(declared.west, declared.south, declared.east, declared.north)
    if lon is None:  # zonal means and sections: no longitude, so they stand for every one
        if box.width < 360.0:
            yield "bbox", ("the data have no longitude (zonal), so the box must span 360°; "
                           f"declared {declared.west:g}..{declared.east:g}")
        return
    lon_v = np.asarray(lon.values, dtype=np.float64)
    tol_lon = _half_step(lon_v, period=360.0)
    lon_v = lon_v[np.isfinite(lon_v)]
    if not lon_v.size:
        yield "bbox", "the data have no valid longitude values"
        return
    if _covers_circle(lon_v, tol_lon):
        if box.width < 360.0 - 2 * tol_lon:
            yield ("bbox", "the data cover every longitude, so the box must span 360°; "
                           f"declared {declared.west:g}..{declared.east:g}")
        return
    offset = box.east_of_west(lon_v)
    if box.width < 360.0:
        offset = np.where(offset > 360.0 - tol_lon, offset - 360.0, offset)
        outside = offset > box.width + tol_lon
        if outside.any():
            yield ("bbox", f"{int(outside.sum())} points lie outside the declared longitudes "
                           f"{declared.west:g}..{declared.east:g}, e.g. {lon_v[outside][0]:g}")
            return
    if offset.min() > tol_lon:
        yield ("bbox.west", f"declared {declared.west:g}, the data start at "
                            f"{(declared.west + offset.min()) % 360:g}°E (tolerance {tol_lon:g}°)")
    if offset.max() < box.width - tol_lon:
        yield ("bbox.east", f"declared {declared.east:g}, the data end at "
                            f"{(declared.west + offset.max()) % 360:g}°E (tolerance {tol_lon:g}°)")


def _covers_circle(lon: np.ndarray, half_step: float) -> bool:
    """True when no gap between neighbouring longitudes (cyclically) exceeds ~one cell."""
    ring = np.unique(np.round(lon % 360.0, 6))
    if ring.size < 2:
        return False
    gaps = np.diff(np.append(ring, ring[0] + 360.0))
    return bool(gaps.max() <= 3 * half_step)


def _days(parts: tuple[int, ...], calendar: str) -> float:
    """Days since 0001-01-01 in *calendar* of a (year, month, day, ...) tuple."""
    import cftime

    fields = [*parts[:6], *(1, 1)[max(0, len(parts) - 1):]]
    date = cftime.datetime(*fields, calendar=calendar)
    return float(cftime.date2num(date, "days since 0001-01-01", calendar=calendar))


def _axis(entry: Entry, ds: xr.Dataset, axes: _Axes, field: str,
          kind: str) -> tuple[Any, xr.DataArray | None, str | None]:
    """The declared range *field*, the data's *kind* axis, and a problem if one is missing."""
    declared = getattr(entry.metadata, field)
    coord = axes.get(kind, ds) if declared is not None else None
    missing = (f"declared, but the data have no {kind} coordinate"
               if declared is not None and coord is None else None)
    return declared, coord, missing


def _compare_ends(field: str, ends: Iterable[tuple[str, Any, float, float, str]],
                  tolerance: float, unit: str) -> Iterable[tuple[str, str]]:
    """Problems for each (side, declared, declared number, data number, data text) apart."""
    for side, declared, wanted, actual, shown in ends:
        if declared is not None and abs(wanted - actual) > tolerance:
            yield (f"{field}.{side}", f"declared {declared}, the data's {side} is {shown} "
                                      f"(tolerance {tolerance:g} {unit})")


def _check_range(entry: Entry, ds: xr.Dataset, axes: _Axes, field: str, kind: str,
                 ends_of: Any) -> Iterable[tuple[str, str]]:
    """Compare a declared range with its axis; *ends_of(declared, coord)* gives the
    ``(ends, tolerance, unit)`` for :func:`_compare_ends`, or None without valid values."""
    declared, coord, missing = _axis(entry, ds, axes, field, kind)
    if missing:
        yield field, missing
    if coord is None:
        return
    found = ends_of(declared, coord)
    if found is None:
        yield field, f"the data's {kind} coordinate has no valid values"
        return
    yield from _compare_ends(field, *found)


def _time_ends(declared: Any, coord: xr.DataArray) -> tuple[list, float, str] | None:
    calendar = str(coord.encoding.get("calendar", coord.attrs.get("calendar", "standard")))
    fields = time_fields(coord).reshape(7, -1)  # (year, ..., microsecond) per time
    valid = np.flatnonzero(np.all(np.isfinite(fields), axis=0))
    if not valid.size:
        return None
    days = np.array([_days(tuple(int(f) for f in fields[:6, i]), calendar) for i in valid])

    def end(side: str, index: int) -> tuple[str, Any, float, float, str]:
        value = getattr(declared, side)
        wanted = (np.nan if value is None
                  else _days(time_parts(value, f"time_range.{side}")[:6], calendar))
        year, month, day = (int(f) for f in fields[:3, valid[index]])
        return side, value, wanted, float(days[index]), f"{year:04d}-{month:02d}-{day:02d}"

    tolerance = max(1.0, _half_step(np.unique(days)))
    return ([end("start", int(days.argmin())), end("end", int(days.argmax()))], tolerance,
            "days")


def _depth_ends(declared: Any, coord: xr.DataArray) -> tuple[list, float, str] | None:
    depth = _depth_in_metres(coord)
    finite = np.unique(depth[np.isfinite(depth)])
    if not finite.size:
        return None
    ends = [(side, f"{getattr(declared, side):g} m", getattr(declared, side), actual,
             f"{actual:g} m") for side, actual in (("min", finite[0]), ("max", finite[-1]))]
    return ends, _half_step(finite), "m"


def _check_time(entry: Entry, ds: xr.Dataset, axes: _Axes) -> Iterable[tuple[str, str]]:
    return _check_range(entry, ds, axes, "time_range", "time", _time_ends)


def _check_depth(entry: Entry, ds: xr.Dataset, axes: _Axes) -> Iterable[tuple[str, str]]:
    return _check_range(entry, ds, axes, "depth_range", "vertical", _depth_ends)
