"""Desensitised public copies: an open store derived from a restricted entry by a profile.

The charter asks that sensitive data be desensitised before they are released. A
**profile** declares how, in a YAML profiles file (default ``profiles.yaml`` beside the
root catalog; format in docs/desensitisation.md)::

    profiles:
      coastal_exclusion:
        description: coastal zone masked, 2-degree cells, one year's delay
        min_cell: 2.0            # degrees: coarsen until no cell is finer
        exclude:                 # polygons whose grid points are set missing
          - name: Bohai Sea
            ring: [[117.5, 37.0], [122.5, 37.0], [122.5, 41.0], [117.5, 41.0]]
          - geojson: zones/coastal.geojson     # relative to the profiles file
        round: 1                 # coordinates rounded to 1 decimal
        delay_days: 365          # nothing newer than now minus 365 days
        drop: [sst_error]        # variables removed

:func:`apply_profile` applies one to a lazily opened dataset, in this order:

1. ``drop`` removes the named variables;
2. ``delay_days`` keeps the time steps whose end (the upper time bound when the data
   have bounds, else the time stamp) is not after ``now - delay_days``;
3. ``exclude`` sets missing every grid point inside or on the edge of a polygon, *before*
   any averaging, so no value from an excluded zone reaches a coarse cell;
4. ``min_cell`` coarsens the CF latitude and longitude axes (found by cf_xarray) by the
   smallest whole factors that make every output spacing at least ``min_cell``, with
   ``xarray``'s ``coarsen(..., boundary="trim").mean()``: a trailing remainder of rows or
   columns that does not fill a whole coarse cell is dropped, never averaged into a
   smaller cell; missing values are skipped, so a coarse cell partly in an excluded zone
   is the mean of its remaining points;
5. ``round`` rounds the latitude and longitude coordinates to N decimals;
6. ``exclude`` again, on the final (coarsened, rounded) coordinates, so every published
   point inside a polygon is missing.

Everything stays lazy (dask): only coordinates are read while the profile is applied, and
the data are read chunk by chunk as the copy is written. Bounds of latitude and longitude
are dropped when the grid is coarsened or rounded (they would give the exact positions
back), and statistics attributes (``actual_range``, ``valid_range``...) of changed
variables are removed (they summarise the unmasked data).

:func:`publish` opens the source entry through the catalog (with the entry's own access
check), records its version, writes the copy as a new Icechunk store through the ingest
layer's writing parts, in one commit under a temporary name renamed when complete, and
registers it as an open entry that cites the source.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cf_xarray  # noqa: F401  (registers the ``.cf`` accessor)
import numpy as np
import xarray as xr
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import DataError, NotAuthorized, UsageError, suggest

__all__ = ["DEFAULT_PROFILES", "PROFILE_KEYS", "Applied", "ExclusionZone", "Profile",
           "ProfileSet", "Publication", "apply_profile", "content_sha256",
           "default_profiles_path", "default_stores_catalog", "load_profile", "load_profiles",
           "profile_content", "publish", "source_version"]

#: File name of the profiles file looked for beside the root catalog.
DEFAULT_PROFILES = "profiles.yaml"
#: Float noise tolerated when comparing a spacing with ``min_cell``, in degrees.
CELL_TOLERANCE = 1e-6
#: Attributes that summarise a variable's values; removed from variables a profile changes.
_STATISTICS_ATTRS = ("actual_range", "valid_range", "valid_min", "valid_max", "actual_min",
                     "actual_max")
#: Encoding keys that pack values into integers; dropped for changed variables (means and
#: missing values are written as floats).
_PACKING = ("dtype", "scale_factor", "add_offset", "_FillValue", "missing_value")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
#: CF units of latitude and longitude (positions a spatial profile must treat or drop)
_POSITION_UNITS = frozenset({"degrees_north", "degree_north", "degree_n", "degrees_n",
                             "degreen", "degreesn", "degrees_east", "degree_east",
                             "degree_e", "degrees_e", "degreee", "degreese"})
#: global attribute prefixes (ACDD) that describe the source's extent, resolution or period
_EXTENT_PREFIXES = {"time": ("time_coverage_",), "space": ("geospatial_",)}


def _scrub_summaries(out: xr.Dataset, touched: set[str], extents: set[str]) -> None:
    """Remove statistics (and packing) of changed variables and the source's extents."""
    for var_name in touched:
        if var_name in out.variables:
            var = out[var_name].variable
            for key in _STATISTICS_ATTRS:
                var.attrs.pop(key, None)
            if var_name in out.data_vars and var.dtype.kind not in "Mm":  # times: units
                for key in _PACKING:
                    var.encoding.pop(key, None)
    prefixes = tuple(p for kind in extents for p in _EXTENT_PREFIXES[kind])
    if prefixes:
        out.attrs = {k: v for k, v in out.attrs.items() if not str(k).startswith(prefixes)}


# --------------------------------------------------------------------------- profiles


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False)


class ExclusionZone(_Strict):
    """A polygon whose grid points are never published: an inline ring or a GeoJSON file."""

    name: str | None = Field(default=None, description="What the zone is (for the log).")
    ring: list[tuple[float, float]] | None = Field(
        default=None, description="Outer ring as [lon, lat] pairs in degrees (closed or not); "
                                  "longitudes in -180..360, either convention.")
    geojson: Path | None = Field(
        default=None, description="A GeoJSON file of Polygon/MultiPolygon geometries "
                                  "(relative to the profiles file).")

    @model_validator(mode="after")
    def _one_source(self) -> ExclusionZone:
        if (self.ring is None) == (self.geojson is None):
            raise ValueError("an exclusion zone gives exactly one of 'ring' or 'geojson'")
        if self.ring is not None:
            if len({tuple(p) for p in self.ring}) < 3:
                raise ValueError("a ring needs at least 3 distinct [lon, lat] points")
            for lon, lat in self.ring:
                if not (-180 <= lon <= 360 and -90 <= lat <= 90):
                    raise ValueError(f"ring point [{lon}, {lat}] is outside lon -180..360, "
                                     "lat -90..90")
        return self


class Profile(_Strict):
    """One desensitisation profile; every key is optional but a profile must change data."""

    description: str | None = Field(default=None, description="What the profile is for.")
    min_cell: float | None = Field(
        default=None, strict=True, gt=0, le=180, description="Smallest cell allowed, in degrees.")
    exclude: list[ExclusionZone] = Field(
        default_factory=list, description="Zones whose points are set missing.")
    decimals: int | None = Field(
        default=None, alias="round", strict=True, ge=0, le=10,
        description="Decimals kept in latitude and longitude coordinates.")
    delay_days: float | None = Field(
        default=None, strict=True, ge=0, description="Nothing newer than now minus this many days.")
    drop: list[str] = Field(default_factory=list, strict=True, description="Variables removed.")

    @model_validator(mode="after")
    def _does_something(self) -> Profile:
        if (self.min_cell is None and not self.exclude and self.decimals is None
                and self.delay_days is None and not self.drop):
            raise ValueError("the profile declares nothing: give at least one of min_cell, "
                             "exclude, round, delay_days, drop")
        return self


class ProfileSet(_Strict):
    """A whole profiles file."""

    profiles: dict[str, Profile]

    @field_validator("profiles")
    @classmethod
    def _names(cls, value: dict[str, Profile]) -> dict[str, Profile]:
        for name in value:
            if not _NAME.fullmatch(str(name)):
                raise ValueError(f"profile name {name!r} is not valid: letters, digits, '.', "
                                 "'_' and '-', starting with a letter or digit")
        return value


#: The keys a profile may have, for error messages.
PROFILE_KEYS = ("description", "min_cell", "exclude", "round", "delay_days", "drop")


def default_profiles_path() -> Path:
    """``profiles.yaml`` beside the root catalog (``get_settings().catalog``)."""
    from ..config import get_settings

    root = Path(get_settings().catalog)
    return (root if root.is_dir() else root.parent) / DEFAULT_PROFILES


def _validation_line(exc: ValidationError, path: Path) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = f"unknown key {loc[-1]!r}"
        valid = PROFILE_KEYS if len(loc) == 3 else ("name", "ring", "geojson") \
            if "exclude" in loc else ("profiles",)
        msg += f"; valid keys: {', '.join(valid)}"
    if len(loc) >= 2 and loc[0] == "profiles":
        where = ".".join(loc[2:])
        return f"{path}: profile {loc[1]!r}: {where + ': ' if where else ''}{msg}"
    return f"{path}: {'.'.join(loc) or '(top level)'}: {msg}"


def load_profiles(path: str | os.PathLike[str] | None = None) -> ProfileSet:
    """Read and validate a profiles file.

    Parameters
    ----------
    path
        The YAML file; default :func:`default_profiles_path`.

    Raises
    ------
    UsageError
        Missing or malformed file, unknown keys, values out of range (one line naming the
        profile and what is valid).
    """
    file = Path(path) if path is not None else default_profiles_path()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"profiles file {file} does not exist; give one with --profiles FILE "
                         "(format: docs/desensitisation.md)") from None
    except OSError as exc:
        raise UsageError(f"cannot read profiles file {file}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{file}{line}: malformed YAML: "
                         f"{getattr(exc, 'problem', None) or 'cannot parse'}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("profiles"), dict):
        raise UsageError(f"{file}: not a profiles file (a mapping with 'profiles:' of named "
                         "profiles expected; see docs/desensitisation.md)")
    try:
        parsed = ProfileSet.model_validate(raw)
    except ValidationError as exc:
        raise UsageError(_validation_line(exc, file)) from None
    base = file.absolute().parent
    for profile in parsed.profiles.values():
        for zone in profile.exclude:
            if zone.geojson is not None and not zone.geojson.is_absolute():
                zone.geojson = base / zone.geojson
    return parsed


def load_profile(name: str, path: str | os.PathLike[str] | None = None) -> Profile:
    """The profile *name* of a profiles file (see :func:`load_profiles`).

    Raises
    ------
    UsageError
        The file is bad, the profile does not exist, or a GeoJSON zone cannot be read.
    """
    profiles = load_profiles(path)
    if name not in profiles.profiles:
        file = Path(path) if path is not None else default_profiles_path()
        raise UsageError(f"no profile {name!r} in {file}; profiles: "
                         f"{', '.join(profiles.profiles) or 'none'}."
                         f"{suggest(name, profiles.profiles)}")
    profile = profiles.profiles[name]
    for i, _ in enumerate(profile.exclude):
        _zone_geometry(profile, name, i)  # a bad GeoJSON file fails now, before any reading
    return profile


def _zone_geometry(profile: Profile, name: str, index: int) -> Any:
    """The shapely geometry of exclusion zone *index* (validated)."""
    import shapely
    from shapely.geometry import Polygon, shape

    zone = profile.exclude[index]
    label = f"profile {name!r}: exclude[{index}]"
    if zone.ring is not None:
        geom = Polygon(zone.ring)
    else:
        assert zone.geojson is not None
        try:
            doc = json.loads(zone.geojson.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"{label}: GeoJSON file {zone.geojson} does not exist") from None
        except (OSError, ValueError) as exc:
            raise UsageError(f"{label}: cannot read GeoJSON {zone.geojson}: "
                             f"{str(exc).splitlines()[0]}") from None
        items = doc.get("features", [doc]) if isinstance(doc, dict) else []
        geoms = []
        for item in items:
            geometry = item.get("geometry", item) if isinstance(item, dict) else None
            try:
                geoms.append(shape(geometry))
            except Exception as exc:  # shapely raises several types for bad geometries
                raise UsageError(f"{label}: {zone.geojson} holds a geometry shapely cannot "
                                 f"read ({type(exc).__name__})") from None
        polys = [g for g in geoms if g.geom_type in ("Polygon", "MultiPolygon")]
        if not polys or len(polys) != len(geoms):
            raise UsageError(f"{label}: {zone.geojson} must hold Polygon or MultiPolygon "
                             "geometries only")
        geom = shapely.union_all(polys)
    if not geom.is_valid:
        from shapely.validation import explain_validity

        raise UsageError(f"{label}: the polygon is not valid ({explain_validity(geom)}); "
                         "give a simple ring of [lon, lat] points")
    minx, miny, maxx, maxy = geom.bounds
    if minx < -180 or maxx > 360 or miny < -90 or maxy > 90:
        raise UsageError(f"{label}: the polygon reaches outside lon -180..360, lat -90..90")
    return geom


def profile_content(profile: Profile) -> dict[str, Any]:
    """The profile as recorded in a commit: its declared keys (as spelled in the file),
    each GeoJSON zone with its path and its file's sha256.

    Parameters
    ----------
    profile
        A loaded profile (GeoJSON paths already resolved).

    Returns
    -------
    dict
        JSON-ready.
    """
    from ..ingest.checksums import file_sha256

    content = profile.model_dump(mode="json", by_alias=True, exclude_none=True)
    for zone, record in zip(profile.exclude, content.get("exclude", []), strict=True):
        if zone.geojson is not None:
            record["geojson"] = str(zone.geojson)
            record["sha256"] = file_sha256(zone.geojson)
    return content


def content_sha256(content: Mapping[str, Any]) -> str:
    """SHA-256 of a profile's content as canonical JSON.

    Parameters
    ----------
    content
        From :func:`profile_content`.

    Returns
    -------
    str
        Hex digest of the UTF-8 JSON with sorted keys and no spaces.
    """
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- applying


def _axis(ds: xr.Dataset, kind: str, entry: str) -> Hashable:
    """The 1-D dimension coordinate of *kind* (``latitude``/``longitude``) found by CF."""
    names = [n for n in ds.cf.coordinates.get(kind, []) if n in ds.coords]
    dims = [n for n in names if ds[n].ndim == 1 and ds[n].dims[0] == n]
    if len(dims) != 1:
        found = ", ".join(map(str, names)) or "none"
        raise DataError(f"entry {entry!r} has no single 1-D {kind} axis (found: {found}); "
                        "desensitisation needs a regular latitude/longitude grid")
    return dims[0]


def _time_axis(ds: xr.Dataset) -> Hashable | None:
    names = [n for n in ds.cf.coordinates.get("time", []) if n in ds.coords
             and ds[n].ndim == 1 and ds[n].dims[0] == n]
    return names[0] if names else None


def _spacing(values: np.ndarray) -> float:
    return float(np.min(np.abs(np.diff(values)))) if values.size > 1 else math.inf


def _fmt(value: float) -> str:
    return f"{value:g}"


def _inside(geoms: Sequence[Any], lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Grid points (lat × lon) inside or on the edge of any polygon, in any longitude
    convention: each polygon is tested at the points' longitude and at ±360°."""
    import shapely

    glon, glat = np.meshgrid(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
    hit = np.zeros(glon.shape, dtype=bool)
    for geom in geoms:
        shapely.prepare(geom)
        minx, miny, maxx, maxy = geom.bounds
        for shift in (-360.0, 0.0, 360.0):
            x = glon + shift
            near = (x >= minx) & (x <= maxx) & (glat >= miny) & (glat <= maxy) & ~hit
            if near.any():
                hit[near] = shapely.intersects_xy(geom, x[near], glat[near])
    return hit


def _mask(ds: xr.Dataset, geoms: Sequence[Any], lat: Hashable, lon: Hashable
          ) -> tuple[xr.Dataset, int, list[str]]:
    """Set missing every point inside the polygons; return the dataset, the number of grid
    points masked, and the variables changed."""
    inside = xr.DataArray(_inside(geoms, ds[lon].values, ds[lat].values), dims=(lat, lon))
    count = int(inside.values.sum())
    changed: list[str] = []
    if count == 0:
        return ds, 0, changed
    out = ds.copy()
    for name, var in ds.data_vars.items():
        if lat in var.dims and lon in var.dims:
            out[name] = var.where(~inside)
            changed.append(str(name))
    return out, count, changed


def _coarsen_factors(ds: xr.Dataset, lat: Hashable, lon: Hashable, min_cell: float,
                     decimals: int | None) -> dict[Hashable, int]:
    """The smallest whole factors for which every output spacing (after rounding) is at
    least *min_cell*."""
    factors: dict[Hashable, int] = {}
    for dim in (lat, lon):
        values = ds[dim].values.astype(np.float64)
        step = _spacing(values)
        factor = max(1, math.ceil(min_cell / step - CELL_TOLERANCE))
        while True:
            n = values.size // factor
            if n < 2 and factor > 1:
                raise UsageError(f"min_cell {_fmt(min_cell)}° leaves fewer than two cells along "
                                 f"{dim} ({values.size} points of {_fmt(step)}°); give a smaller "
                                 "min_cell")
            coarse = values[: n * factor].reshape(n, factor).mean(axis=1)
            if decimals is not None:
                coarse = np.round(coarse, decimals)
            if _spacing(coarse) >= min_cell - CELL_TOLERANCE:
                break
            factor += 1
        factors[dim] = factor
    return factors


def _cutoff_keep(ds: xr.Dataset, time: Hashable, cutoff: dt.datetime) -> np.ndarray:
    """Which time steps end no later than *cutoff* (upper bound when there are bounds)."""
    from ..times import keys_of_fields, time_fields, time_key, time_parts

    coord = ds[time]
    bounds = [b for b in ds.cf.bounds.get(str(time), []) if b in ds.variables]
    if bounds:
        ends = ds[bounds[0]].max(dim=[d for d in ds[bounds[0]].dims if d != time])
        coord = ends.compute() if ends.chunks else ends
    fields = time_fields(coord).reshape(7, -1)
    keys, valid = keys_of_fields(fields)
    limit = time_key(time_parts(cutoff.replace(tzinfo=None), "cutoff"), low=True)
    return valid & (keys <= limit)


@dataclass
class Applied:
    """The outcome of :func:`apply_profile`: the lazy copy and what changed."""

    dataset: xr.Dataset
    changes: list[str] = field(default_factory=list)
    cutoff: str | None = None


def apply_profile(ds: xr.Dataset, profile: Profile, *, name: str, entry: str = "the data",
                  now: dt.datetime | None = None) -> Applied:
    """Apply *profile* to *ds*, lazily (only coordinates are read).

    Parameters
    ----------
    ds
        The source, opened lazily (dask).
    profile
        The profile (see :class:`Profile`).
    name
        The profile's name, for messages.
    entry
        The source entry's name, for messages.
    now
        The clock for ``delay_days`` (default: now, UTC).

    Returns
    -------
    Applied
        The derived dataset (dask-backed) and one line per change made.

    Raises
    ------
    UsageError
        The profile does not fit the data: a variable to drop that does not exist, a
        ``min_cell`` finer than the data, a rounding that merges grid points, or a profile
        that changes nothing at all.
    DataError
        The data lack what the profile needs (a regular lat/lon grid, a time axis), or
        nothing is left.
    """
    label = f"profile {name!r}"
    changes: list[str] = []
    touched: set[str] = set()
    extents: set[str] = set()
    out = ds.copy()
    out.attrs = {k: v for k, v in ds.attrs.items() if not str(k).startswith("oceandata_")}

    if profile.drop:
        droppable = [str(n) for n in ds.variables if n not in ds.dims]
        unknown = [v for v in profile.drop if v not in droppable]
        if unknown:
            raise UsageError(f"{label}: cannot drop {', '.join(map(repr, unknown))} from entry "
                             f"{entry!r}; its variables: {', '.join(droppable)}")
        out = out.drop_vars(profile.drop)
        if not out.data_vars:
            raise UsageError(f"{label} drops every data variable of entry {entry!r}; "
                             "nothing would be published")
        changes.append(f"dropped {', '.join(profile.drop)}")

    cutoff_text = None
    if profile.delay_days is not None:
        time = _time_axis(out)
        if time is None:
            raise DataError(f"{label} has delay_days but entry {entry!r} has no time axis "
                            "(a 1-D time coordinate of its own dimension); remove delay_days "
                            "from the profile or choose another entry")
        clock = now or dt.datetime.now(dt.UTC)
        if clock.tzinfo is not None:
            clock = clock.astimezone(dt.UTC).replace(tzinfo=None)
        cutoff = clock - dt.timedelta(days=profile.delay_days)
        cutoff_text = cutoff.isoformat(timespec="seconds")
        keep = _cutoff_keep(out, time, cutoff)
        if not keep.any():
            raise DataError(f"{label}: every time step of entry {entry!r} ends after the cutoff "
                            f"{cutoff_text} (now minus {_fmt(profile.delay_days)} days); "
                            "nothing would be published")
        removed = int((~keep).sum())
        if removed:
            out = out.isel({time: np.flatnonzero(keep)})
            changes.append(f"removed {removed} time steps ending after {cutoff_text}")
            # statistics along time summarise the withheld steps too
            touched.update(str(n) for n, v in out.variables.items() if time in v.dims)
            extents.add("time")

    spatial = profile.min_cell is not None or profile.exclude or profile.decimals is not None
    if not spatial:
        if not changes:
            raise UsageError(f"{label} changes nothing in entry {entry!r}: no time step is "
                             "newer than the cutoff; publishing would release the data as "
                             "they are")
        _scrub_summaries(out, touched, extents)
        return Applied(out, changes, cutoff_text)

    lat, lon = _axis(out, "latitude", entry), _axis(out, "longitude", entry)
    axis_bounds = {str(b) for d in (lat, lon) for b in out.cf.bounds.get(str(d), [])}
    positions = [str(n) for n, v in out.variables.items()
                 if n not in (lat, lon) and str(n) not in axis_bounds
                 and (str(v.attrs.get("units", "")).strip().lower() in _POSITION_UNITS
                      or v.attrs.get("standard_name") in ("latitude", "longitude"))]
    if positions:  # exact positions off the grid: not masked, coarsened nor rounded
        raise UsageError(f"{label} treats the {lat}/{lon} grid, but {', '.join(positions)} "
                         f"of entry {entry!r} hold other latitudes or longitudes; add them "
                         "to the profile's drop list")
    touched.update((str(lat), str(lon)))
    extents.add("space")
    geoms = [_zone_geometry(profile, name, i) for i in range(len(profile.exclude))]
    if geoms:
        partial = [str(n) for n, v in out.data_vars.items()
                   if (lat in v.dims) != (lon in v.dims)]
        if partial:  # a zonal or meridional aggregate cannot be masked by a polygon
            raise UsageError(f"{label} masks exclusion zones, but {', '.join(partial)} of "
                             f"entry {entry!r} lie along only one of {lat}, {lon} (aggregates "
                             "over the other); add them to the profile's drop list")
    if profile.min_cell is not None or profile.decimals is not None:
        # exact positions must not survive in the bounds of a coarsened or rounded grid
        bounds = [b for d in (lat, lon) for b in out.cf.bounds.get(str(d), [])
                  if b in out.variables]
        out = out.drop_vars(bounds)
        out[lat].attrs.pop("bounds", None)
        out[lon].attrs.pop("bounds", None)
    out = out.assign_coords({lat: out[lat].astype(np.float64), lon: out[lon].astype(np.float64)})
    for dim in (lat, lon):
        out[dim].encoding = {}

    if geoms:
        out, masked_source, changed = _mask(out, geoms, lat, lon)
        touched.update(changed)

    if profile.min_cell is not None:
        steps = {d: _spacing(out[d].values) for d in (lat, lon)}
        finest = min(steps.values())
        if profile.min_cell < finest - CELL_TOLERANCE:
            raise UsageError(
                f"{label}: min_cell {_fmt(profile.min_cell)}° is finer than entry {entry!r}'s "
                f"cells ({lat} {_fmt(steps[lat])}°, {lon} {_fmt(steps[lon])}°); give min_cell "
                f">= {_fmt(finest)} (e.g. {_fmt(2 * max(steps.values()))} to halve the "
                "resolution) or leave it out")
        factors = _coarsen_factors(out, lat, lon, profile.min_cell, profile.decimals)
        factors = {d: f for d, f in factors.items() if f > 1}
        if factors:
            # align the chunks with whole coarse cells, so each dask task reads whole cells
            aligned = {}
            for dim, factor in factors.items():
                sizes = [max(v.chunksizes[dim]) for v in out.variables.values()
                         if v.chunks and dim in v.dims]
                size = max(sizes) if sizes else out.sizes[dim]
                aligned[dim] = max(factor, (size // factor) * factor)
            coarse = out.chunk(aligned).coarsen(factors, boundary="trim").mean(keep_attrs=True)
            touched.update(str(n) for n, v in out.data_vars.items()
                           if set(factors) & set(v.dims))
            out = coarse
            changes.append("coarsened " + ", ".join(
                f"{d} by {f} ({_fmt(steps[d])}° to {_fmt(_spacing(out[d].values))}°)"
                for d, f in factors.items()))

    if profile.decimals is not None:
        rounded = {d: np.round(out[d].values, profile.decimals) for d in (lat, lon)}
        for dim, values in rounded.items():
            if np.unique(values).size != values.size:
                raise UsageError(
                    f"{label}: round {profile.decimals} merges grid points of entry {entry!r} "
                    f"along {dim} (spacing {_fmt(_spacing(out[dim].values))}°); give more "
                    "decimals or a min_cell")
        moved = [str(d) for d, v in rounded.items() if not np.array_equal(v, out[d].values)]
        out = out.assign_coords({d: xr.Variable(out[d].dims, v, out[d].attrs)
                                 for d, v in rounded.items()})
        if moved:
            changes.append(f"rounded {', '.join(moved)} to {profile.decimals} decimals")

    if geoms:
        out, masked_output, changed = _mask(out, geoms, lat, lon)
        touched.update(changed)
        if masked_source or masked_output:
            changes.append(f"masked {masked_source} source grid points before any averaging "
                           f"and {masked_output} published grid points in {len(geoms)} "
                           "exclusion zones")

    if not changes:
        raise UsageError(
            f"{label} changes nothing in entry {entry!r}: no coarsening is needed, no grid "
            "point lies in an exclusion zone, rounding moves no coordinate, no time step is "
            "newer than the cutoff and nothing is dropped; publishing it would release the "
            "data as they are at the source's resolution")
    _scrub_summaries(out, touched, extents)
    return Applied(out, changes, cutoff_text)


# --------------------------------------------------------------------------- versions


def _tree_sha256(paths: Sequence[Path]) -> tuple[str, list[dict[str, Any]]]:
    from ..ingest.checksums import file_sha256

    files: list[dict[str, Any]] = []
    for path in paths:
        if path.is_dir():
            for item in sorted(p for p in path.rglob("*") if p.is_file()):
                files.append({"name": str(item.relative_to(path.parent)),
                              "sha256": file_sha256(item)})
        else:
            files.append({"name": path.name, "sha256": file_sha256(path)})
    if len(files) == 1:
        return files[0]["sha256"], files
    manifest = "".join(f"{f['sha256']}  {f['name']}\n" for f in sorted(
        files, key=lambda f: f["name"]))
    return hashlib.sha256(manifest.encode()).hexdigest(), files


def source_version(entry: Any, ds: xr.Dataset) -> tuple[str, dict[str, Any]]:
    """The version of the data *ds* was opened from, and how it was found.

    An Icechunk store's snapshot id; a plain Zarr store written by ``oceandata ingest``:
    ``digests:`` and the sha256 of its recorded per-variable digests; files:
    ``sha256:`` and the sha256 of the file (of the sorted ``sha256  name`` manifest for
    several files).

    Raises
    ------
    DataError
        A remote source (no local files to digest).
    """
    snapshot = ds.attrs.get("oceandata_snapshot")
    if snapshot:
        return str(snapshot), {"kind": "icechunk snapshot", "snapshot": str(snapshot)}
    paths = [p for p in entry.paths()]
    if any("://" in p for p in paths) or not paths:
        raise DataError(f"entry {entry.name!r} is remote ({paths[0] if paths else 'no path'}); "
                        "its version cannot be recorded: ingest it into a store first "
                        "(oceandata ingest)")
    if entry.driver == "icechunk":
        from ..ingest.store import version_metadata

        _, meta = version_metadata(paths[0])
        digests = meta.get("checksums") or {}
        if digests:
            text = json.dumps(digests, sort_keys=True, separators=(",", ":"))
            digest = hashlib.sha256(text.encode()).hexdigest()
            return f"digests:{digest}", {"kind": "ingest digests", "checksums": digests}
    digest, files = _tree_sha256([Path(p) for p in paths])
    return f"sha256:{digest}", {"kind": "sha256 of files", "files": files}


# --------------------------------------------------------------------------- publishing


@dataclass
class Publication:
    """What :func:`publish` did."""

    name: str
    store: Path
    snapshot: str
    source: str
    version: str
    profile: str
    profile_sha256: str
    catalog: Path
    changes: list[str]


def default_stores_catalog() -> Path:
    """The ingest layer's catalog of stores: ``<data dir>/catalogs/stores.yaml``."""
    from ..config import get_settings

    return get_settings().data_dir / "catalogs" / "stores.yaml"


def _software() -> dict[str, str]:
    import dask
    import icechunk
    import shapely
    import zarr

    from .. import __version__

    return {"oceandata": __version__, "xarray": xr.__version__, "zarr": zarr.__version__,
            "icechunk": icechunk.__version__, "dask": dask.__version__,
            "shapely": shapely.__version__, "python": sys.version.split()[0]}


def publish(entry: str, *, profile: str, to: str | os.PathLike[str],
            name: str | None = None, catalog: Any = None,
            register_in: str | os.PathLike[str] | None = None,
            profiles: str | os.PathLike[str] | None = None, now: dt.datetime | None = None,
            command: str | None = None) -> Publication:
    """Derive an open copy of *entry* by *profile* into a new store, and register it.

    Parameters
    ----------
    entry
        The source entry (any release; its grade must not be ``core``).
    profile
        A profile name of the profiles file.
    to
        The new store's path (must not exist).
    name
        The new entry's name (default ``<entry>_public``).
    catalog
        Catalog (path or :class:`~oceandata.catalog.core.Catalog`) to find *entry* in;
        default the root catalog.
    register_in
        Catalog YAML the copy is registered in; default the ingest layer's
        ``<data dir>/catalogs/stores.yaml``.
    profiles
        The profiles file; default ``profiles.yaml`` beside the root catalog.
    now
        The clock for ``delay_days`` (default now, UTC).
    command
        What to record as the command.

    Returns
    -------
    Publication

    Raises
    ------
    UsageError
        A bad profile or target; the store is being written by another process.
    NotAuthorized
        The caller is not granted the source, or the source is graded ``core``.
    DataError
        The data do not fit the profile.
    """
    from ..catalog.core import Catalog, open_catalog
    from . import audit
    from .locks import store_lock

    cat = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
    src = cat.entry(entry)
    classification = src.metadata.classification
    if classification.grade == "core":
        raise NotAuthorized(f"entry {entry!r} is graded core: core data are never published, "
                            "not even desensitised (docs/governance.md)")
    prof = load_profile(profile, profiles)
    new_name = name or f"{entry}_public"
    if not _NAME.fullmatch(new_name):
        raise UsageError(f"--name {new_name!r} is not a valid entry name: letters, digits, '.', "
                         "'_' and '-', starting with a letter or digit")
    if new_name == entry:
        raise UsageError(f"--name {new_name!r} is the source's own name; choose another")
    target = Path(to)
    if target.exists():
        raise UsageError(f"{target} exists; give a new --to path (a published copy is a new "
                         "store)")
    if not target.parent.is_dir():
        raise UsageError(f"folder {target.parent} does not exist")
    register_path = Path(register_in) if register_in is not None else default_stores_catalog()
    if new_name in cat.entries and cat.entries[new_name].source_file != register_path.resolve():
        raise UsageError(f"entry {new_name!r} already exists in {cat.entries[new_name].where}; "
                         "choose another --name")
    _check_replaceable(register_path, new_name, entry)

    ds = src.to_dask()  # the entry's own access check
    version, how = source_version(src, ds)
    applied = apply_profile(ds, prof, name=profile, entry=entry, now=now)
    content = profile_content(prof)
    digest = content_sha256(content)
    derived = {"entry": entry, "version": version, "profile": profile}
    command = command or " ".join(["oceandata", *sys.argv[1:]])
    metadata = {
        "oceandata": _software()["oceandata"],
        "command": command,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "derived_from": derived,
        "publish": {"name": new_name, "source": {"entry": entry, "driver": src.driver,
                                                  "version": version, **how},
                    "profile": {"name": profile, "content": content, "sha256": digest},
                    "now": (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
                    "cutoff": applied.cutoff, "changes": applied.changes,
                    "operator": audit.cli_actor()},
        "software": _software(),
    }
    message = f"publish {new_name}: {entry}@{version} by profile {profile}"
    out = applied.dataset
    history = str(out.attrs.get("history") or "").rstrip()
    out.attrs["history"] = (f"{history}\n" if history else "") + (
        f"{metadata['created']}: {message} (profile sha256 {digest}), oceandata publish")
    with store_lock(target, command=command):
        if target.exists():
            raise UsageError(f"{target} appeared while the copy was prepared; give a new --to "
                             "path")
        from ..ingest.pipeline import write_new_store

        snapshot = write_new_store(out, target, message=message, metadata=metadata)
    try:
        # one writer of the catalog file at a time (read, add the entry, replace)
        with store_lock(register_path, command=command, wait=30.0):
            _register(register_path, new_name, target, src, derived)
    except BaseException:
        from ..atomic import remove_path

        remove_path(target)  # no store without its entry
        raise
    audit.record("store.publish", actor=audit.cli_actor(), target=f"dataset:{new_name}",
                 source=audit.cli_source(),
                 detail={"source": entry, "version": version, "profile": profile,
                         "profile_sha256": digest, "store": str(target.absolute()),
                         "snapshot": snapshot})
    return Publication(new_name, target, snapshot, entry, version, profile, digest,
                       register_path, applied.changes)


def _check_replaceable(catalog: Path, name: str, source: str) -> None:
    """Refuse to replace an entry of *catalog* that is not a copy of the same source."""
    if not catalog.exists():
        return
    try:
        doc = yaml.safe_load(catalog.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read catalog {catalog}: {exc}") from None
    existing = (doc.get("sources") or {}).get(name) if isinstance(doc, dict) else None
    if existing is None:
        return
    derived = ((existing.get("metadata") or {}).get("classification") or {}).get("derived_from")
    if not isinstance(derived, dict) or derived.get("entry") != source:
        raise UsageError(f"entry {name!r} already exists in {catalog} and is not a published "
                         f"copy of {source!r}; choose another --name")


def _register(catalog: Path, name: str, store: Path, src: Any,
              derived: dict[str, str]) -> None:
    """Register the copy as an open entry citing the source (the ingest layer's
    :func:`~oceandata.ingest.register.register_store`)."""
    from ..ingest.register import register_store

    md = src.metadata
    source_cls = md.classification
    cited = f"{md.citation}. " if md.citation else ""
    citation = (f"Desensitised copy of {src.name} ({md.title}), version {derived['version']}, "
                f"by profile {derived['profile']}. {cited}Cite the source as well: "
                f"{md.provider}.")
    defaults = {
        "title": f"{md.title} (desensitised)",
        "provider": md.provider,
        "license": md.license,
        "citation": citation,
        **({"doi": md.doi} if md.doi else {}),
        "tags": sorted({*md.tags, "desensitised", "derived"}),
        "classification": {
            "category": "derived", "grade": "general", "release": "open",
            "rationale": f"desensitised copy of {src.name} by profile {derived['profile']}",
            "owner": source_cls.owner,
            "derived_from": dict(derived),
        },
    }
    catalog.parent.mkdir(parents=True, exist_ok=True)
    register_store(catalog, name, store, defaults=defaults,
                   description=f"{name}: open copy of {src.name} desensitised by profile "
                               f"{derived['profile']}")
