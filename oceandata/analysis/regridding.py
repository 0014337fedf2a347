"""Horizontal regridding and vertical interpolation of gridded fields, lazily.

Between regular latitude/longitude grids (1-D axes) :func:`regrid` uses xarray-regrid:
``"bilinear"`` (``ds.regrid.linear``, separable linear interpolation in degrees),
``"nearest"`` (``ds.regrid.nearest``) and ``"conservative"`` (``ds.regrid.conservative``
for the cell overlaps, first order, weighted by the exact spherical cell areas; a target
cell partly covered by valid data, on a coast, is the mean over its valid part, so that the
area integral of the valid data is kept). All stay lazy on dask input.

For a curvilinear source (2-D latitude and longitude: POP, NEMO, CMIP tripolar grids)
xarray-regrid does not apply. :func:`regrid` then offers ``"nearest"`` only: each target
cell takes the value of the nearest source cell centre by great-circle distance (a k-d
tree on unit vectors, so the seam and the poles need no special care), applied to each 2-D
field with :func:`xarray.apply_ufunc`. Target cells farther than ``max_distance`` from
every source centre are NaN. Bilinear and conservative remapping from curvilinear grids
need cell corners and an external weight generator (xESMF/ESMF) and are not provided.

:func:`to_depths` interpolates linearly to given depths (m, positive down), whatever the
units and direction of the source's vertical coordinate.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..errors import DataError, UsageError
from ..io.subset import _Axes
from .ocean import _with_history, depth_in_metres

__all__ = ["regrid", "to_depths"]

_METHODS = ("bilinear", "conservative", "nearest")
_EARTH_RADIUS_KM = 6371.0


def _axes(obj: xr.DataArray | xr.Dataset, function: str,
          what: str) -> tuple[xr.DataArray, xr.DataArray, xr.Dataset]:
    ds = obj if isinstance(obj, xr.Dataset) else (
        obj.to_dataset(name="__data__") if obj.name is None else obj.to_dataset())
    axes = _Axes(ds)
    lat, lon = axes.get("latitude", ds), axes.get("longitude", ds)
    if lat is None or lon is None:
        raise DataError(f"{function}: the {what} has no latitude/longitude coordinates (CF "
                        f"standard_name or degrees units); its coordinates: {list(ds.coords)}")
    return lat, lon, ds


def regrid(da: xr.DataArray, target: xr.Dataset | xr.DataArray, method: str = "bilinear", *,
           max_distance: float | None = None) -> xr.DataArray:
    """Regrid *da* horizontally onto the regular latitude/longitude grid of *target*.

    Parameters
    ----------
    da
        A field on a regular grid (1-D latitude and longitude) or a curvilinear grid (2-D
        latitude and longitude on the same two dimensions), found through CF attributes.
    target
        Anything with 1-D latitude and longitude coordinates (e.g. an empty Dataset built
        with ``xr.Dataset(coords={"lat": ..., "lon": ...})`` and CF attributes). Its
        longitudes must use the source's convention (0..360 or -180..180).
    method
        ``"bilinear"``, ``"conservative"`` or ``"nearest"`` between regular grids;
        ``"nearest"`` only from a curvilinear grid.
    max_distance
        Curvilinear nearest only: the largest distance (km) to a source centre; default
        twice the target grid spacing at the equator.

    Returns
    -------
    xarray.DataArray
        On the target latitude and longitude (named as in *da*), with *da*'s attributes and
        a ``history`` line; lazy for dask input.

    Raises
    ------
    UsageError
        Unknown *method*, or a method that does not apply to the source grid.
    DataError
        Missing coordinates, or a target that is not a regular grid.
    """
    if method not in _METHODS:
        raise UsageError(f"regrid: method={method!r}; valid: {', '.join(_METHODS)}")
    slat, slon, sds = _axes(da, "regrid", "source")
    tlat, tlon, _ = _axes(target, "regrid", "target")
    if tlat.ndim != 1 or tlon.ndim != 1 or tlat.dims == tlon.dims:
        raise DataError("regrid: the target must be a regular grid (1-D latitude and "
                        "longitude on two dimensions)")
    if slat.ndim == 1 and slon.ndim == 1 and slat.dims != slon.dims:
        out = _regular(da, sds, slat, slon, tlat, tlon, method)
    elif slat.ndim == 2 and set(slat.dims) == set(slon.dims):
        if method != "nearest":
            raise UsageError(f"regrid: method={method!r} is not available from a curvilinear "
                             "grid; valid: 'nearest' (bilinear and conservative need xESMF)")
        out = _curvilinear_nearest(da, slat, slon, tlat, tlon, max_distance)
    else:
        raise DataError(f"regrid: source latitude {slat.dims} and longitude {slon.dims} are "
                        "neither a regular nor a curvilinear grid")
    out.name = da.name
    out.attrs = dict(da.attrs)
    return _with_history(out, f"oceandata.analysis.regrid(method={method!r}) to a "
                              f"{tlat.size}x{tlon.size} latitude/longitude grid", da.attrs)


def _regular(da: xr.DataArray, sds: xr.Dataset, slat: xr.DataArray, slon: xr.DataArray,
             tlat: xr.DataArray, tlon: xr.DataArray, method: str) -> xr.DataArray:
    import xarray_regrid  # noqa: F401  (registers the ``.regrid`` accessor)

    ydim, xdim = slat.dims[0], slon.dims[0]
    lon_min, lon_max = float(slon.min()), float(slon.max())
    tlon_v = np.asarray(tlon.values, dtype=np.float64)
    if tlon_v.min() < lon_min - 180 or tlon_v.max() > lon_max + 180:
        raise DataError(f"regrid: target longitudes {tlon_v.min():g}..{tlon_v.max():g} do not "
                        f"use the source convention ({lon_min:g}..{lon_max:g}); shift them "
                        "first")
    grid = xr.Dataset(coords={
        ydim: xr.Variable((ydim,), np.asarray(tlat.values, dtype=np.float64), slat.attrs),
        xdim: xr.Variable((xdim,), tlon_v, slon.attrs)})
    time = _Axes(sds).get("time", sds)
    time_dim = time.dims[0] if time is not None and time.ndim == 1 else None
    extra = [c for c in da.coords if c not in da.dims and set(da[c].dims) & {ydim, xdim}]
    src = da.drop_vars(extra).sortby([ydim, xdim])
    if method == "bilinear":
        out = src.regrid.linear(grid, time_dim=time_dim)
    elif method == "nearest":
        out = src.regrid.nearest(grid, time_dim=time_dim)
    else:
        out = _conservative(src, grid, ydim, time_dim)
    out = out.reindex({ydim: grid[ydim], xdim: grid[xdim]})
    return out.assign_coords({ydim: grid[ydim], xdim: grid[xdim]})


def _conservative(src: xr.DataArray, grid: xr.Dataset, ydim: Hashable,
                  time_dim: Hashable | None) -> xr.DataArray:
    """Area-weighted conservative remapping, exact on the sphere, over valid data only.

    xarray-regrid computes the overlap of source and target cells along each axis. Its
    own latitude correction is skipped (in xarray-regrid 0.4.2 it is not area-exact near
    the poles), by giving it neutral axis names; instead the
    zero-filled field times the exact source cell area, sin(north) - sin(south), and the
    valid area itself are remapped, and their ratio taken: the mean over the valid part of
    each target cell, whose (value x valid area) sums to the source integral.
    """
    lat = np.asarray(src[ydim].values, dtype=np.float64)  # ascending (sorted)
    edges = np.concatenate([[-90.0], 0.5 * (lat[1:] + lat[:-1]), [90.0]])
    if lat.size > 1:
        edges[0] = max(-90.0, lat[0] - (edges[1] - lat[0]))
        edges[-1] = min(90.0, lat[-1] + (lat[-1] - edges[-2]))
    area = xr.DataArray(np.diff(np.sin(np.deg2rad(edges))), dims=(ydim,),
                        coords={ydim: src[ydim]})
    # neutral axis names: xarray-regrid then finds no latitude to "correct"
    xdim = next(d for d in grid.dims if d != ydim)
    names = {ydim: "__oceandata_y", xdim: "__oceandata_x"}
    neutral = grid.rename(names)
    kw: dict[str, Any] = {"time_dim": time_dim, "skipna": False}
    dtype = np.result_type(src.dtype, np.float32)

    def remap(field: xr.DataArray) -> xr.DataArray:
        out = field.astype(dtype).rename(names).regrid.conservative(neutral, **kw)
        return out.rename({v: k for k, v in names.items()})

    total = remap(src.fillna(0.0) * area)
    valid = remap(src.notnull() * area)
    return total / valid.where(valid > 0)


def _unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    y, x = np.deg2rad(lat), np.deg2rad(lon)
    return np.stack([np.cos(y) * np.cos(x), np.cos(y) * np.sin(x), np.sin(y)], axis=-1)


def _take_nearest(values: np.ndarray, index: np.ndarray, valid: np.ndarray,
                  shape: tuple[int, int]) -> np.ndarray:
    flat = values.reshape(*values.shape[:-2], -1)
    out = np.take(flat, np.where(valid, index, 0), axis=-1).astype(np.float64)
    out[..., ~valid] = np.nan
    return out.reshape(*values.shape[:-2], *shape)


def _curvilinear_nearest(da: xr.DataArray, slat: xr.DataArray, slon: xr.DataArray,
                         tlat: xr.DataArray, tlon: xr.DataArray,
                         max_distance: float | None) -> xr.DataArray:
    from scipy.spatial import cKDTree

    dims = list(slat.dims)
    slon = slon.transpose(*dims)
    # coordinates only: the 2-D source positions and the 1-D target axes are read
    source = _unit_vectors(np.asarray(slat.values, np.float64).ravel(),
                           np.asarray(slon.values, np.float64).ravel())
    finite = np.isfinite(source).all(axis=1)
    tree = cKDTree(source[finite])
    glat, glon = np.meshgrid(np.asarray(tlat.values, np.float64),
                             np.asarray(tlon.values, np.float64), indexing="ij")
    chord, nearest = tree.query(_unit_vectors(glat, glon).reshape(-1, 3))
    if max_distance is None:
        spacing = np.abs(np.diff(np.asarray(tlon.values, np.float64)))
        max_distance = 2 * np.deg2rad(float(np.median(spacing)) if spacing.size else 1.0) \
            * _EARTH_RADIUS_KM
    distance = 2 * _EARTH_RADIUS_KM * np.arcsin(np.clip(chord / 2, 0.0, 1.0))
    valid = np.isfinite(chord) & (distance <= max_distance)
    index = np.flatnonzero(finite)[np.where(valid, nearest, 0)]
    ydim, xdim = tlat.dims[0], tlon.dims[0]
    shape = (tlat.size, tlon.size)
    out = xr.apply_ufunc(
        _take_nearest, da.drop_vars([c for c in da.coords if set(da[c].dims) & set(dims)]),
        input_core_dims=[dims], output_core_dims=[[ydim, xdim]],
        kwargs={"index": index, "valid": valid, "shape": shape}, dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {ydim: shape[0], xdim: shape[1]},
                            "allow_rechunk": True})
    return out.assign_coords({ydim: tlat.variable, xdim: tlon.variable})


def to_depths(da: xr.DataArray, depths: Sequence[float] | np.ndarray) -> xr.DataArray:
    """Interpolate *da* linearly to *depths* (m, positive down) along its vertical axis.

    Parameters
    ----------
    da
        A field with a 1-D vertical coordinate (found through CF attributes), in any length
        unit and either direction (heights are read as negative depths).
    depths
        Target depths in metres, positive down. Depths outside the source levels are NaN.

    Returns
    -------
    xarray.DataArray
        On the same vertical dimension, now holding *depths* (``units: m``,
        ``positive: down``); *da*'s attributes and a ``history`` line.

    Raises
    ------
    DataError
        No vertical coordinate, or a coordinate that is not 1-D.
    UsageError
        *depths* is empty or not finite.
    """
    target = np.atleast_1d(np.asarray(depths, dtype=np.float64))
    if target.size == 0 or not np.isfinite(target).all():
        raise UsageError(f"to_depths: depths={depths!r}; valid: finite metres, positive down")
    ds = da.to_dataset(name="__data__") if da.name is None else da.to_dataset()
    z = _Axes(ds).get("vertical", ds)
    if z is None or z.ndim != 1:
        raise DataError("to_depths: no 1-D vertical coordinate (CF axis Z, positive, or a "
                        f"depth standard_name) in {list(da.coords)}")
    (zdim,) = z.dims
    metres = depth_in_metres(z)
    attrs: dict[Hashable, Any] = {**metres.attrs, "long_name": "depth below the surface"}
    src = da.drop_vars([c for c in da.coords if zdim in da[c].dims and c != zdim])
    src = src.assign_coords({zdim: metres.variable}).sortby(zdim)
    if src.chunks is not None:
        src = src.chunk({zdim: -1})
    out = src.interp({zdim: target}, method="linear")
    out = out.assign_coords({zdim: xr.Variable((zdim,), target, attrs)})
    out.attrs = dict(da.attrs)
    out.name = da.name
    return _with_history(out, "oceandata.analysis.to_depths to "
                              f"{target.size} depths (m)", da.attrs)
