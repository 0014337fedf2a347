"""Tracks of Argo floats."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import UsageError
from ._backend import BACKEND, FRAME_HEIGHT, FRAME_WIDTH, hv
from .coastlines import coastline_path

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")


def float_tracks(ds: xr.Dataset, *, coastline: bool = True, margin: float = 2.0,
                 title: str | None = None):
    """Positions of Argo floats, one coloured track per float in time order.

    Parameters
    ----------
    ds
        Profiles as :func:`oceandata.argo.load` returns them: ``platform_number``,
        ``longitude``, ``latitude`` and ``time`` along ``profile``. Profiles without a
        position are left out.
    coastline
        Overlay the offline coastline (:mod:`oceandata.viz.coastlines`).
    margin
        Degrees added around the floats' positions for the coastline.
    title
        Plot title.

    Returns
    -------
    holoviews.Overlay
        Per float (label its WMO number) a ``Path.Track`` and ``Points.Profiles`` (value
        dimensions ``time`` and ``cycle_number``), then the ``Coastline``.

    Raises
    ------
    UsageError
        Missing variables, or no profile with a position.

    Examples
    --------
    >>> import oceandata.argo
    >>> from oceandata.viz import float_tracks
    >>> fig = float_tracks(oceandata.argo.load([2902696, 2901746]))  # doctest: +SKIP
    """
    need = {"platform_number", "longitude", "latitude", "time"}
    missing = sorted(need - set(ds.variables))
    if missing:
        raise UsageError(f"float_tracks needs {', '.join(sorted(need))}; missing "
                         f"{', '.join(missing)} (load floats with oceandata.argo.load)")
    wmo = np.asarray(ds["platform_number"].values)
    lon = np.asarray(ds["longitude"].values, dtype=float)
    lat = np.asarray(ds["latitude"].values, dtype=float)
    time = np.asarray(ds["time"].values)
    cycle = (np.asarray(ds["cycle_number"].values) if "cycle_number" in ds
             else np.arange(wmo.size))
    ok = np.isfinite(lon) & np.isfinite(lat)
    if not ok.any():
        raise UsageError("float_tracks: no profile has a position")
    # keep tracks continuous: 0..360 when the floats straddle the antimeridian
    if np.nanmax(lon) - np.nanmin(lon) > 180.0:
        lon = np.mod(lon, 360.0)
    kdims = [hv.Dimension("lon", label="longitude"), hv.Dimension("lat", label="latitude")]
    layers = []
    for i, number in enumerate(dict.fromkeys(wmo[ok].tolist())):
        sel = ok & (wmo == number)
        order = np.argsort(time[sel], kind="stable")
        x, y, t, c = lon[sel][order], lat[sel][order], time[sel][order], cycle[sel][order]
        colour = _PALETTE[i % len(_PALETTE)]
        label = str(number)
        layers.append(hv.Path([np.column_stack([x, y])], kdims=kdims, group="Track",
                              label=label).opts(color=colour, line_width=1.5,
                                                backend=BACKEND))
        layers.append(hv.Points({"lon": x, "lat": y, "time": t, "cycle_number": c},
                                kdims=kdims, vdims=["time", "cycle_number"], group="Profiles",
                                label=label).opts(color=colour, size=5, tools=["hover"],
                                                  backend=BACKEND))
    if coastline:
        bbox = (float(np.nanmin(lon[ok])) - margin, float(np.nanmin(lat[ok])) - margin,
                float(np.nanmax(lon[ok])) + margin, float(np.nanmax(lat[ok])) + margin)
        start = -180.0 if np.nanmin(lon[ok]) < 0 else 0.0
        layers.append(coastline_path(bbox, lon_start=start, kdims=("lon", "lat")))
    return hv.Overlay(layers).opts(
        frame_width=FRAME_WIDTH, frame_height=FRAME_HEIGHT, data_aspect=1,
        title=title or f"Argo floats {', '.join(dict.fromkeys(map(str, wmo[ok].tolist())))}",
        legend_position="right", backend=BACKEND)
