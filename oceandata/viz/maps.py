"""Maps of 2-D fields on regular and curvilinear grids."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from ..errors import UsageError
from ._backend import BACKEND, FRAME_HEIGHT, FRAME_WIDTH, hv
from .coastlines import coastline_path
from .styles import colormap_for, is_anomaly, label_for, palette

#: Grids with more cells than this are rasterised by datashader (regular grids: one Image
#: is cheap in the browser; curvilinear grids are drawn as one polygon per cell).
RASTERIZE_ABOVE = {"regular": 250_000, "curvilinear": 50_000}

_LON_NAMES = ("lon", "longitude", "nav_lon", "lon2d", "glamt", "TLONG", "xt_ocean", "x")
_LAT_NAMES = ("lat", "latitude", "nav_lat", "lat2d", "gphit", "TLAT", "yt_ocean", "y")


def lonlat_names(da: xr.DataArray) -> tuple[str, str]:
    """Names of the longitude and latitude coordinates of *da* (CF attributes first).

    Raises
    ------
    UsageError
        Neither CF attributes nor a usual name identify them.
    """
    found: dict[str, str] = {}
    try:
        coords = da.cf.coordinates  # cf_xarray: units, standard_name, axis
        for key in ("longitude", "latitude"):
            names = [n for n in coords.get(key, []) if n in da.coords]
            if len(names) == 1:
                found[key] = names[0]
    except (AttributeError, KeyError, ValueError):
        pass
    for key, names in (("longitude", _LON_NAMES), ("latitude", _LAT_NAMES)):
        if key not in found:
            match = next((n for n in names if n in da.coords), None)
            if match is None:
                raise UsageError(
                    f"cannot find the {key} of {da.name!r} (coordinates: "
                    f"{', '.join(map(str, da.coords)) or 'none'}); give it CF attributes "
                    f"(units: degrees_{'east' if key == 'longitude' else 'north'})")
            found[key] = match
    return found["longitude"], found["latitude"]


def _lon_start(lon: np.ndarray) -> float:
    lo, hi = float(np.nanmin(lon)), float(np.nanmax(lon))
    if lo < 0:
        return -180.0
    return lo if hi > 360.0 else 0.0


def _mask_seam(lon: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Hide the cells of a curvilinear grid whose corners straddle the 0/360 seam.

    The renderers (bokeh, datashader) infer a cell's corners from the centres of its
    3 × 3 neighbourhood; one of them more than 180° of longitude away puts a corner half
    way round the globe and the quad would be drawn across the whole map. Such cells are
    set missing (a gap about two cells wide along the seam).
    """
    ny, nx = lon.shape
    padded = np.pad(lon, 1, mode="edge")
    bad = np.zeros(lon.shape, dtype=bool)
    for di in (0, 1, 2):
        for dj in (0, 1, 2):
            bad |= np.abs(padded[di:di + ny, dj:dj + nx] - lon) > 180.0
    return np.where(bad, np.nan, values)


def _uniform(x: np.ndarray) -> bool:
    step = np.diff(x)
    return x.size > 1 and bool(np.allclose(step, step[0], rtol=1e-4, atol=0))


def field_map(
    da: xr.DataArray,
    *,
    cmap: str | Sequence[str] | None = None,
    coastline: bool = True,
    rasterize: bool | None = None,
    clim: tuple[float, float] | None = None,
    coastline_source: str = "etopo60",
    title: str | None = None,
):
    """Map a 2-D field on a regular or curvilinear grid, with coastlines.

    Parameters
    ----------
    da
        A 2-D field (length-one dimensions such as a single time step are dropped).
        Regular grids have 1-D longitude and latitude dimensions; curvilinear grids 2-D
        longitude and latitude coordinates (found through CF attributes or usual names).
    cmap
        A cmocean name (``"thermal"``), a list of colours, or None to choose from the
        metadata (:func:`oceandata.viz.styles.colormap_for`: thermal, haline, deep, balance).
    coastline
        Overlay the coastline traced offline from the ETOPO sample
        (:mod:`oceandata.viz.coastlines`), cut to the field's extent.
    rasterize
        Aggregate the field with datashader to the plot's pixel grid
        (:func:`holoviews.operation.datashader.rasterize`, static). None: only when the
        grid has more cells than :data:`RASTERIZE_ABOVE` for its kind.
    clim
        Colour limits; default the data range, symmetric about 0 for anomalies.
    coastline_source
        ``"etopo60"`` (default) or ``"etopo20"`` for a finer coastline.
    title
        Plot title; default the variable's long name.

    Returns
    -------
    holoviews.Overlay or holoviews.Image or holoviews.QuadMesh
        ``Image`` (uniform regular grid), ``QuadMesh`` (non-uniform or curvilinear) or,
        rasterised, a datashader ``Image``; with the ``Coastline`` path overlaid when
        *coastline* is true.

    Raises
    ------
    UsageError
        Not 2-D after dropping length-one dimensions, or no longitude/latitude found.

    Examples
    --------
    >>> import oceandata
    >>> from oceandata.viz import field_map
    >>> sst = oceandata.open_dataset("cobe_sst2", time=("2000-01", "2000-01")).sst
    >>> fig = field_map(sst.isel(time=0))  # doctest: +SKIP
    """
    from holoviews.operation.datashader import rasterize as ds_rasterize

    lon_name, lat_name = lonlat_names(da)
    lon_c, lat_c = da[lon_name], da[lat_name]
    extra = [d for d in da.dims if da.sizes[d] == 1
             and d not in lon_c.dims and d not in lat_c.dims]
    field = da.isel({d: 0 for d in extra}) if extra else da
    if field.ndim != 2:
        raise UsageError(
            f"field_map needs a 2-D field, {da.name!r} has dimensions "
            f"{tuple(map(str, da.dims))}; select one step first, e.g. da.isel(time=0)")
    vname = str(da.name or "value")
    vdim = hv.Dimension(vname, label=label_for(da, vname))
    kdims = [hv.Dimension("lon", label="longitude"), hv.Dimension("lat", label="latitude")]
    curvilinear = lon_c.ndim == 2 or lat_c.ndim == 2
    if curvilinear:
        ydim, xdim = lon_c.dims
        field = field.transpose(ydim, xdim)
        lon = np.asarray(lon_c.transpose(ydim, xdim).values, dtype=float)
        lat = np.asarray(lat_c.transpose(ydim, xdim).values, dtype=float)
        values = _mask_seam(lon, np.asarray(field.values, dtype=float))
        element = hv.QuadMesh((lon, lat, values), kdims=kdims, vdims=[vdim])
    else:
        field = field.transpose(lat_c.dims[0], lon_c.dims[0])
        lon = np.asarray(lon_c.values, dtype=float)
        lat = np.asarray(lat_c.values, dtype=float)
        values = np.asarray(field.values, dtype=float)
        if lat.size > 1 and lat[0] > lat[-1]:  # holoviews wants ascending axes
            lat, values = lat[::-1], values[::-1]
        if lon.size > 1 and lon[0] > lon[-1]:
            lon, values = lon[::-1], values[:, ::-1]
        if _uniform(lon) and _uniform(lat):
            element = hv.Image((lon, lat, values), kdims=kdims, vdims=[vdim])
        else:
            element = hv.QuadMesh((lon, lat, values), kdims=kdims, vdims=[vdim])
    kind = "curvilinear" if curvilinear else "regular"
    if rasterize is None:
        rasterize = values.size > RASTERIZE_ABOVE[kind]

    name = cmap if cmap is not None else colormap_for(da)
    colours = list(palette(name)) if isinstance(name, str) else list(name)
    if clim is None:
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            clim = (0.0, 1.0)
        elif is_anomaly(da):
            m = float(np.abs(finite).max()) or 1.0
            clim = (-m, m)
        else:
            clim = (float(finite.min()), float(finite.max()))
    # the map's extent is that of the cell centres (corners extrapolated near a grid pole
    # can lie far outside)
    xlim = (float(np.nanmin(lon)), float(np.nanmax(lon)))
    ylim = (float(np.nanmin(lat)), float(np.nanmax(lat)))
    extent = {"xlim": xlim, "ylim": ylim} if curvilinear else {}
    if rasterize:
        ranges = {"x_range": xlim, "y_range": ylim} if curvilinear else {}
        element = ds_rasterize(element, dynamic=False, width=FRAME_WIDTH, height=FRAME_HEIGHT,
                               aggregator="mean", **ranges)
    element = element.opts(**extent, backend=BACKEND).opts(
        cmap=colours, clim=clim, colorbar=True, frame_width=FRAME_WIDTH,
        frame_height=FRAME_HEIGHT, tools=["hover"], title=title or label_for(da, vname),
        backend=BACKEND)
    if not coastline:
        return element
    bbox = (xlim[0], ylim[0], xlim[1], ylim[1])
    path = coastline_path(bbox, lon_start=_lon_start(lon), source=coastline_source,
                          kdims=("lon", "lat"))
    return (element * path).opts(title=title or label_for(da, vname), backend=BACKEND)
