"""Area-weighted regional means on regular and curvilinear grids.

Cell areas come from the grid (see :func:`cell_area`); a region is a lon/lat box, a
shapely polygon or a named ocean basin. Only coordinates (and masks) are read to build
weights; the data stay lazy and the mean is :meth:`xarray.DataArray.weighted`, which
leaves missing data (land, ice) out of both the sum and the sum of weights.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import cf_xarray  # noqa: F401  (registers the .cf accessor)
import numpy as np
import xarray as xr

from ..errors import DataError, UsageError, suggest
from ..io.subset import _BBox
from .climatologies import append_cell_methods, append_history

#: Sphere radius in metres (the same as CDO's default, ``CDO_GRID_RADIUS``).
EARTH_RADIUS = 6_371_000.0


def _lat_lon(da: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    try:
        return da.cf["latitude"], da.cf["longitude"]
    except KeyError:
        raise DataError(f"{da.name!r} has no latitude/longitude coordinates that cf_xarray "
                        "recognises (standard_name, units or axis attributes)") from None


def _bounds_1d(da: xr.DataArray, coord: xr.DataArray) -> np.ndarray:
    """The (n, 2) bounds of a 1-D coordinate: its CF bounds, else cf_xarray's midpoints."""
    name = coord.name
    bname = coord.attrs.get("bounds")
    if bname is not None and bname in da.coords:
        bounds = da.coords[bname]
    else:
        ds = xr.Dataset(coords={name: coord.reset_coords(drop=True)})
        bounds = ds.cf.add_bounds(name).cf.get_bounds(name)
    values = np.asarray(bounds.transpose(coord.dims[0], ...).values, dtype=np.float64)
    return values


def _regular_area(da: xr.DataArray, lat: xr.DataArray, lon: xr.DataArray) -> xr.DataArray:
    lat_b = np.clip(_bounds_1d(da, lat), -90.0, 90.0)
    lon_b = _bounds_1d(da, lon)
    # widths modulo 360, so a cell across the longitude seam (179.5..-179.5) is 1°
    dlon = np.deg2rad(np.abs((lon_b[:, 1] - lon_b[:, 0] + 180.0) % 360.0 - 180.0))
    dsin = np.abs(np.sin(np.deg2rad(lat_b[:, 1])) - np.sin(np.deg2rad(lat_b[:, 0])))
    area = EARTH_RADIUS**2 * dsin[:, None] * dlon[None, :]
    return xr.DataArray(area, dims=(lat.dims[0], lon.dims[0]),
                        coords={lat.name: lat, lon.name: lon})


def _curvilinear_area(lat: xr.DataArray, lon: xr.DataArray) -> xr.DataArray:
    """Approximate cell areas from neighbour spacing of 2-D lat/lon (centred differences).

    Centres are placed on the unit sphere; the area is ``R² |∂P/∂i × ∂P/∂j|`` with the
    derivatives from centred differences (one-sided at the edges), so longitude seams
    need no unwrapping and skewed cells are handled.
    """
    la = np.deg2rad(np.asarray(lat.values, dtype=np.float64))
    lo = np.deg2rad(np.asarray(lon.values, dtype=np.float64))
    xyz = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)
    d_j = np.gradient(xyz, axis=0)
    d_i = np.gradient(xyz, axis=1)
    area = EARTH_RADIUS**2 * np.linalg.norm(np.cross(d_i, d_j), axis=-1)
    return xr.DataArray(area, dims=lat.dims, coords=lat.coords)


def cell_area(da: xr.DataArray) -> xr.DataArray:
    """Horizontal cell areas (m²) of the grid of *da*.

    Parameters
    ----------
    da
        Data on a regular lat/lon grid (1-D coordinates) or a curvilinear grid (2-D).

    Returns
    -------
    xarray.DataArray
        Areas in m² on the horizontal dimensions of *da*, ``standard_name: cell_area``.

    Notes
    -----
    * Regular grids: exact spherical cells, ``R² · Δlon · |sin(lat₂) − sin(lat₁)|``, from
      the coordinate bounds (CF ``bounds`` if present, else cf_xarray midpoints; latitude
      bounds clipped to ±90°), R = 6 371 000 m.
    * Curvilinear grids: the variable named by ``cell_measures = "area: NAME"`` when it is
      among the coordinates, else an approximation from the centred differences of the
      2-D latitude/longitude between neighbours (few-percent accuracy where the grid is
      smooth, worse at grid poles and folds).
    """
    measures = da.attrs.get("cell_measures", "")
    if "area:" in measures:
        try:
            area = da.cf["area"]
        except KeyError:
            area = None
        if area is not None:
            return area.astype(np.float64)
    lat, lon = _lat_lon(da)
    if lat.ndim == 1 and lon.ndim == 1:
        area = _regular_area(da, lat, lon)
    elif lat.ndim == 2 and lat.dims == lon.dims:
        area = _curvilinear_area(lat, lon)
    else:
        raise DataError(f"cannot derive cell areas of {da.name!r}: latitude dims {lat.dims}, "
                        f"longitude dims {lon.dims}")
    area.attrs = {"standard_name": "cell_area", "units": "m2"}
    return area.rename("cell_area")


def basin_names(basins: xr.Dataset) -> dict[str, int]:
    """Map basin names to codes in the ``basin_mask`` sample (``CLIST`` line *i* is code *i*).

    Parameters
    ----------
    basins
        ``oceandata.open_dataset("basin_mask")``.
    """
    clist = basins["basin"].attrs.get("CLIST")
    if not clist:
        raise DataError("basins has no 'basin' variable with a CLIST attribute")
    return {name.strip(): code for code, name in enumerate(clist.split("\n"), start=1)}


def _basin_mask(da: xr.DataArray, name: str, basins: xr.Dataset | None) -> xr.DataArray:
    if basins is None:
        raise UsageError(f"region {name!r} is a basin name: pass "
                         "basins=oceandata.open_dataset('basin_mask')")
    codes = {k.lower(): v for k, v in basin_names(basins).items()}
    code = codes.get(name.strip().lower())
    if code is None:
        raise UsageError(f"no basin named {name!r}.{suggest(name, basin_names(basins))}")
    lat, lon = _lat_lon(da)
    if lat.ndim != 1 or lon.ndim != 1:
        raise UsageError("basin regions need data on the basin_mask 1° regular grid; regrid "
                         "first (this grid is curvilinear)")
    surface = basins["basin"].isel(Z=0) if "Z" in basins["basin"].dims else basins["basin"]
    try:
        mask = surface.sel(Y=lat.values, X=np.asarray(lon.values) % 360.0, method="nearest",
                           tolerance=1e-3)
    except KeyError:
        raise UsageError("basin regions need data on the basin_mask grid (1°, lat -89.5..89.5, "
                         "lon 0.5..359.5); regrid the data first") from None
    inside = np.asarray(mask.values) == code
    return xr.DataArray(inside, dims=(lat.dims[0], lon.dims[0]),
                        coords={lat.name: lat, lon.name: lon})


def region_mask(da: xr.DataArray, region: Any = None, *,
                basins: xr.Dataset | None = None) -> xr.DataArray:
    """Boolean mask of the horizontal cells of *da* inside *region*.

    Parameters
    ----------
    da
        Data on a regular or curvilinear lat/lon grid.
    region
        None (everywhere), a ``(west, south, east, north)`` box in degrees (``west > east``
        crosses the antimeridian; any longitude convention), a shapely (Multi)Polygon in
        lon/lat degrees (needs shapely ≥ 2), or a basin name from *basins*.
    basins
        The ``basin_mask`` sample dataset, for basin names.
    """
    lat, lon = _lat_lon(da)
    if lat.ndim == 1 and lon.ndim == 1:
        lat2, lon2 = xr.broadcast(lat, lon)
    else:
        lat2, lon2 = lat, lon
    if region is None:
        return xr.ones_like(lat2, dtype=bool)
    if isinstance(region, str):
        return _basin_mask(da, region, basins)
    if hasattr(region, "geom_type"):
        import shapely

        lons = np.asarray(lon2.values, dtype=np.float64)
        lats = np.asarray(lat2.values, dtype=np.float64)
        # test each point in both longitude conventions, so any polygon convention works
        inside = (shapely.contains_xy(region, lons % 360.0, lats)
                  | shapely.contains_xy(region, (lons + 180.0) % 360.0 - 180.0, lats))
        return lat2.copy(data=inside)
    box = _BBox.checked(region, what="region")
    inside = box.contains(np.asarray(lat2.values), np.asarray(lon2.values))
    return lat2.copy(data=inside)


def area_mean(da: xr.DataArray, region: Any = None, *, basins: xr.Dataset | None = None,
              area: xr.DataArray | None = None) -> xr.DataArray:
    """Area-weighted mean of *da* over a region, missing data left out.

    Parameters
    ----------
    da
        Data on a regular or curvilinear lat/lon grid (other dims, e.g. time, are kept).
    region
        See :func:`region_mask`.
    basins
        The ``basin_mask`` sample (``oceandata.open_dataset("basin_mask")``) when
        *region* is a basin name.
    area
        Cell areas to use instead of :func:`cell_area`.

    Returns
    -------
    xarray.DataArray
        Lazy mean over the horizontal dims, attributes of *da* with ``cell_methods``
        appended ``"area: mean"`` and a ``history`` line.

    Raises
    ------
    DataError
        No cell of the region holds data coordinates.
    """
    weights = cell_area(da) if area is None else area
    mask = region_mask(da, region, basins=basins)
    if not bool(mask.any()):
        raise DataError(f"region {region!r} contains no grid cell of {da.name!r}")
    weights = weights.where(mask, 0.0).fillna(0.0)
    dims: tuple[Hashable, ...] = tuple(weights.dims)
    out = da.weighted(weights).mean(dims, keep_attrs=True)
    out = out.drop_vars([c for c in out.coords if set(out[c].dims) & set(dims)],
                        errors="ignore")
    label = "global" if region is None else repr(region)
    out.attrs = append_history(append_cell_methods(da.attrs, "area: mean"),
                               f"area_mean(region={label})")
    out.name = da.name
    return out
