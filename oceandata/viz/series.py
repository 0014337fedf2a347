"""Time series, Hovmöller diagrams and marine-heatwave plots."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import UsageError
from ..times import period as read_period
from ._backend import BACKEND, FRAME_HEIGHT, FRAME_WIDTH, dims_or_fail, hv
from .styles import CATEGORY_COLOURS, colormap_for, is_anomaly, label_for, palette


def _time_name(da: xr.DataArray) -> str:
    if "time" in da.dims:
        return "time"
    for dim in da.dims:
        if np.issubdtype(da[dim].dtype, np.datetime64) if dim in da.coords else False:
            return str(dim)
    raise UsageError(f"{da.name!r} has no time dimension (dimensions: "
                     f"{', '.join(map(str, da.dims))})")


def time_series(da: xr.DataArray, *, title: str | None = None):
    """Plot a 1-D time series as a line.

    Parameters
    ----------
    da
        1-D along ``time`` (e.g. a point or an area mean).
    title
        Plot title; default the variable's long name.

    Returns
    -------
    holoviews.Curve
        Key dimension ``time``, value dimension the variable (labelled with its units).

    Raises
    ------
    UsageError
        Not 1-D along time.

    Examples
    --------
    >>> import oceandata
    >>> from oceandata.viz import time_series
    >>> fig = time_series(oceandata.open_dataset("oisst_wa").sst)  # doctest: +SKIP
    """
    dims_or_fail(da, 1, "time_series", "reduce the other dimensions first, e.g. "
                 "da.sel(lat=..., lon=..., method='nearest') or an area mean")
    tname = _time_name(da)
    name = str(da.name or "value")
    curve = hv.Curve((da[tname].values, np.asarray(da.values, dtype=float)),
                     kdims=[hv.Dimension("time")],
                     vdims=[hv.Dimension(name, label=label_for(da, name))])
    return curve.opts(frame_width=FRAME_WIDTH, frame_height=FRAME_HEIGHT, tools=["hover"],
                      title=title or label_for(da, name), line_width=1.2, backend=BACKEND)


def hovmoller(da: xr.DataArray, dim: str = "lon", *, cmap: str | None = None,
              title: str | None = None):
    """Hovmöller diagram: a variable against *dim* (x) and time (y).

    Parameters
    ----------
    da
        2-D with ``time`` and *dim*; reduce the other dimensions first (e.g.
        ``sst.sel(lat=slice(5, -5)).mean("lat")`` for an equatorial band).
    dim
        The dimension on the x axis, ``"lon"`` by default (``"lat"`` for a
        latitude-time diagram).
    cmap
        A cmocean name or a list of colours; default chosen from the metadata.
    title
        Plot title; default the variable's long name.

    Returns
    -------
    holoviews.QuadMesh
        Key dimensions (*dim*, ``time``); time increases upwards.

    Raises
    ------
    UsageError
        *dim* or time missing, or more than two dimensions.
    """
    if dim not in da.dims:
        raise UsageError(f"{da.name!r} has no dimension {dim!r} (dimensions: "
                         f"{', '.join(map(str, da.dims))})")
    dims_or_fail(da, 2, "hovmoller", f"keep only time and {dim}, e.g. .mean('lat')")
    tname = _time_name(da)
    field = da.transpose(tname, dim)
    x = np.asarray(field[dim].values, dtype=float)
    values = np.asarray(field.values, dtype=float)
    if x.size > 1 and x[0] > x[-1]:
        x, values = x[::-1], values[:, ::-1]
    name = str(da.name or "value")
    mesh = hv.QuadMesh((x, field[tname].values, values),
                       kdims=[hv.Dimension(dim, label=label_for(da[dim], dim)),
                              hv.Dimension("time")],
                       vdims=[hv.Dimension(name, label=label_for(da, name))])
    finite = values[np.isfinite(values)]
    clim: tuple[float, float] | None = None
    if finite.size and is_anomaly(da):
        m = float(np.abs(finite).max()) or 1.0
        clim = (-m, m)
    opts: dict[str, Any] = {"clim": clim} if clim else {}
    return mesh.opts(cmap=list(palette(cmap or colormap_for(da))), colorbar=True,
                     frame_width=FRAME_WIDTH, frame_height=FRAME_HEIGHT, tools=["hover"],
                     title=title or f"{label_for(da, name)}: Hovmöller", backend=BACKEND,
                     **opts)


def _event_days(time: pd.DatetimeIndex, start: Any, end: Any) -> np.ndarray:
    return np.flatnonzero((time >= pd.Timestamp(start)) & (time <= pd.Timestamp(end)))


def mhw_plot(
    sst: xr.DataArray,
    clim: xr.Dataset,
    events: pd.DataFrame,
    *,
    period: Any = None,
    title: str | None = None,
):
    """Marine heatwaves on a daily SST series: SST, climatology, threshold and events.

    The figure of Hobday et al. (2016, Prog. Oceanogr. 141, 227-238,
    doi:10.1016/j.pocean.2015.12.014): each event is shaded between the threshold and the
    SST, coloured by its Hobday et al. (2018, Oceanography 31(2), 162-173) category
    (:data:`oceandata.viz.styles.CATEGORY_COLOURS`).

    Parameters
    ----------
    sst
        Daily SST at one point (1-D along time).
    clim, events
        What :func:`oceandata.analysis.marine_heatwaves` returns for *sst*: ``clim``
        holds ``seas`` and ``thresh``; ``events`` has ``date_start``, ``date_end`` and
        ``category``.
    period
        The period to show, in any form of :func:`oceandata.times.period`
        (``(2010, 2012)``, ``"2011-01/2011-06"``, datetimes); default the whole series.
        Events are clipped to it.
    title
        Plot title.

    Returns
    -------
    holoviews.Overlay
        ``Curve.SST``, ``Curve.Climatology``, ``Curve.Threshold`` and one ``Area`` per
        event (group ``Event``, label its category).

    Raises
    ------
    UsageError
        *sst* not 1-D along time, or *clim* without ``seas`` and ``thresh``.
    """
    dims_or_fail(sst, 1, "mhw_plot", "give the series of one point")
    if not {"seas", "thresh"} <= set(clim.data_vars):
        raise UsageError("mhw_plot needs the clim Dataset of marine_heatwaves (seas, thresh); "
                         f"got variables {', '.join(map(str, clim.data_vars))}")
    tname = _time_name(sst)
    data = xr.Dataset({"sst": sst.reset_coords(drop=True),
                       "seas": clim["seas"].reset_coords(drop=True),
                       "thresh": clim["thresh"].reset_coords(drop=True)})
    if period is not None:
        shown = read_period(period, what="period").inside(data[tname])
        data = data.isel({tname: np.flatnonzero(shown)})
    time = pd.DatetimeIndex(data[tname].values)
    temp = np.asarray(data["sst"].values, dtype=float)
    thresh = np.asarray(data["thresh"].values, dtype=float)
    ylabel = label_for(sst, "SST")
    t_dim, y_dim = hv.Dimension("time"), hv.Dimension("sst", label=ylabel)
    layers = []
    for _, row in events.sort_values("date_start").iterrows():
        idx = _event_days(time, row["date_start"], row["date_end"])
        if idx.size == 0:
            continue
        # widen by one day each side so that a short event is visible as a wedge
        lo, hi = max(idx[0] - 1, 0), min(idx[-1] + 1, time.size - 1)
        span = slice(lo, hi + 1)
        upper = np.maximum(temp[span], thresh[span])
        colour = CATEGORY_COLOURS.get(str(row["category"]), "#ffc866")
        layers.append(hv.Area((time[span], thresh[span], upper), kdims=[t_dim],
                              vdims=[y_dim, hv.Dimension("sst_upper")], group="Event",
                              label=str(row["category"])).opts(
            color=colour, line_alpha=0, fill_alpha=0.9, backend=BACKEND))
    curves = [
        hv.Curve((time, temp), kdims=[t_dim], vdims=[y_dim], group="SST").opts(
            color="black", line_width=1.0, backend=BACKEND),
        hv.Curve((time, data["seas"].values), kdims=[t_dim], vdims=[y_dim],
                 group="Climatology").opts(color="#1f77b4", line_width=1.5, backend=BACKEND),
        hv.Curve((time, thresh), kdims=[t_dim], vdims=[y_dim], group="Threshold").opts(
            color="#2ca02c", line_width=1.5, line_dash="dashed", backend=BACKEND),
    ]
    overlay = hv.Overlay([*layers, *curves])
    return overlay.opts(frame_width=FRAME_WIDTH, frame_height=FRAME_HEIGHT,
                        title=title or "Marine heatwaves (Hobday et al. 2016)",
                        legend_position="top_left", backend=BACKEND)
