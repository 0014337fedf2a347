"""Vertical sections, profiles and temperature-salinity diagrams."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from ..errors import DataError, UsageError
from ._backend import BACKEND, FRAME_HEIGHT, FRAME_WIDTH, dims_or_fail, hv
from .styles import colormap_for, is_anomaly, label_for, palette


def _depth_metres(z: xr.DataArray) -> np.ndarray:
    """Depth in metres, positive down (units converted, heights negated)."""
    from ..analysis.ocean import depth_in_metres

    try:
        return np.asarray(depth_in_metres(z).values, dtype=float)
    except DataError:  # units we do not know (e.g. dbar): take the values as they are
        return np.asarray(z.values, dtype=float)


def _depth_label(z: xr.DataArray) -> str:
    units = str(z.attrs.get("units", "m")).strip().lower()
    return "depth [m]" if units in {"m", "cm", "mm", "km", "meters", "metres", "centimeters",
                                    "meter", "metre", "centimeter"} else label_for(z, z.name)


def section(da: xr.DataArray, x: str = "lat", z: str = "depth", *, cmap: str | None = None,
            title: str | None = None):
    """A vertical section: a variable against *x* and depth, depth increasing downwards.

    Parameters
    ----------
    da
        2-D with dimensions *x* and *z* (length-one dimensions are dropped).
    x
        Horizontal coordinate (latitude, longitude or distance).
    z
        Vertical coordinate; converted to metres positive down when its units are a
        length (PHC2 ``z_t`` is in centimetres; heights are negated).
    cmap
        A cmocean name or colours; default chosen from the metadata.
    title
        Plot title; default the variable's long name.

    Returns
    -------
    holoviews.QuadMesh
        Key dimensions (*x*, ``depth``) with the y axis inverted (surface on top).

    Raises
    ------
    UsageError
        *x* or *z* missing, or more than two dimensions.
    """
    for name in (x, z):
        if name not in da.coords and name not in da.dims:
            raise UsageError(f"{da.name!r} has no coordinate {name!r} (coordinates: "
                             f"{', '.join(map(str, da.coords))})")
    field = da.squeeze(drop=True) if da.ndim > 2 else da
    dims_or_fail(field, 2, "section", f"keep only {x} and {z}, e.g. da.isel(time=0)")
    field = field.transpose(da[z].dims[0], da[x].dims[0])
    xs = np.asarray(field[x].values, dtype=float)
    depth = _depth_metres(field[z])
    values = np.asarray(field.values, dtype=float)
    if xs.size > 1 and xs[0] > xs[-1]:
        xs, values = xs[::-1], values[:, ::-1]
    if depth.size > 1 and depth[0] > depth[-1]:
        depth, values = depth[::-1], values[::-1]
    name = str(da.name or "value")
    mesh = hv.QuadMesh((xs, depth, values),
                       kdims=[hv.Dimension(x, label=label_for(da[x], x)),
                              hv.Dimension("depth", label=_depth_label(da[z]))],
                       vdims=[hv.Dimension(name, label=label_for(da, name))])
    finite = values[np.isfinite(values)]
    extra = {}
    if finite.size and is_anomaly(da):
        m = float(np.abs(finite).max()) or 1.0
        extra["clim"] = (-m, m)
    return mesh.opts(cmap=list(palette(cmap or colormap_for(da))), colorbar=True,
                     invert_yaxis=True, frame_width=FRAME_WIDTH, frame_height=FRAME_HEIGHT,
                     tools=["hover"], title=title or label_for(da, name), backend=BACKEND,
                     **extra)


def profile(da: xr.DataArray, z: str = "depth", *, title: str | None = None):
    """A vertical profile: the variable on x, depth on y increasing downwards.

    Parameters
    ----------
    da
        1-D along *z* (e.g. one Argo profile or one column of a gridded field).
    z
        Vertical coordinate; lengths are converted to metres positive down, other units
        (e.g. pressure in dbar) are plotted as they are.
    title
        Plot title.

    Returns
    -------
    holoviews.Curve
        Key dimension ``depth`` drawn on the y axis (``invert_axes``), inverted so that
        the surface is on top; value dimension the variable.

    Raises
    ------
    UsageError
        Not 1-D or no coordinate *z*.
    """
    if z not in da.coords:
        raise UsageError(f"{da.name!r} has no coordinate {z!r} (coordinates: "
                         f"{', '.join(map(str, da.coords)) or 'none'})")
    dims_or_fail(da, 1, "profile", f"select one profile, 1-D along {z}")
    depth = _depth_metres(da[z])
    values = np.asarray(da.values, dtype=float)
    order = np.argsort(depth, kind="stable")
    name = str(da.name or "value")
    curve = hv.Curve((depth[order], values[order]),
                     kdims=[hv.Dimension("depth", label=_depth_label(da[z]))],
                     vdims=[hv.Dimension(name, label=label_for(da, name))])
    return curve.opts(invert_axes=True, invert_yaxis=True, frame_width=360,
                      frame_height=FRAME_HEIGHT, tools=["hover"], line_width=1.5,
                      title=title or label_for(da, name), backend=BACKEND)


def _levels(lo: float, hi: float) -> np.ndarray:
    span = hi - lo
    step = next(s for s in (0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0) if span / s <= 12)
    return np.arange(np.ceil(lo / step) * step, hi + step / 2, step)


def ts_diagram(
    ct: xr.DataArray | np.ndarray,
    sa: xr.DataArray | np.ndarray,
    *,
    sigma0_levels: Sequence[float] | None = None,
    color: xr.DataArray | np.ndarray | None = None,
    title: str | None = None,
):
    """Temperature-salinity diagram with potential-density (sigma0) contours.

    Parameters
    ----------
    ct
        Conservative Temperature (°C), any shape; see
        :func:`oceandata.analysis.ocean.conservative_temperature`.
    sa
        Absolute Salinity (g kg-1), same shape as *ct*.
    sigma0_levels
        sigma0 values (kg m-3) to contour; default about ten round values across the
        plotted range. sigma0 is computed with ``gsw.sigma0`` (TEOS-10, IOC et al. 2010)
        on a 200 × 200 grid and traced with contourpy.
    color
        Optional values (e.g. depth) of the same shape to colour the points by.
    title
        Plot title.

    Returns
    -------
    holoviews.Overlay
        ``Contours.Sigma0`` (one path per level, value dimension ``sigma0``),
        ``Labels.Sigma0`` and the ``Scatter`` of (SA, CT).

    Raises
    ------
    UsageError
        Shapes differ, or no point has both values.
    """
    import contourpy
    import gsw

    t = np.asarray(ct, dtype=float).ravel()
    s = np.asarray(sa, dtype=float).ravel()
    if t.shape != s.shape:
        raise UsageError(f"ts_diagram needs ct and sa of the same shape, got "
                         f"{np.shape(ct)} and {np.shape(sa)}")
    ok = np.isfinite(t) & np.isfinite(s)
    if not ok.any():
        raise UsageError("ts_diagram: no point has both a temperature and a salinity")
    c = None if color is None else np.asarray(color, dtype=float).ravel()
    if c is not None and c.shape != t.shape:
        c = np.broadcast_to(np.asarray(color, dtype=float), np.shape(ct)).ravel()
    t, s = t[ok], s[ok]
    pad_s = max(0.05 * float(np.ptp(s)), 0.05)
    pad_t = max(0.05 * float(np.ptp(t)), 0.2)
    sgrid = np.linspace(s.min() - pad_s, s.max() + pad_s, 200)
    tgrid = np.linspace(t.min() - pad_t, t.max() + pad_t, 200)
    sig = gsw.sigma0(*np.meshgrid(sgrid, tgrid))
    levels = (_levels(float(np.nanmin(sig)), float(np.nanmax(sig)))
              if sigma0_levels is None else np.asarray(sigma0_levels, dtype=float))
    gen = contourpy.contour_generator(sgrid, tgrid, sig, line_type="Separate")
    sa_dim = hv.Dimension("SA", label=label_for(sa, "SA") if isinstance(sa, xr.DataArray)
                          else "Absolute Salinity [g kg-1]")
    ct_dim = hv.Dimension("CT", label=label_for(ct, "CT") if isinstance(ct, xr.DataArray)
                          else "Conservative Temperature [degC]")
    paths, labels = [], []
    for level in levels:
        lines = [line for line in gen.lines(float(level)) if len(line) >= 2]
        paths.extend({"SA": line[:, 0], "CT": line[:, 1], "sigma0": float(level)}
                     for line in lines)
        if lines:
            longest = max(lines, key=len)
            labels.append((longest[-1, 0], longest[-1, 1], f"{level:g}"))
    contours = hv.Contours(paths, kdims=[sa_dim, ct_dim], vdims=["sigma0"], group="Sigma0")
    text = hv.Labels(labels, kdims=[sa_dim, ct_dim], vdims=["sigma0"], group="Sigma0")
    vdims = ["CT"]
    data = {"SA": s, "CT": t}
    if c is not None:
        data["color"] = c[ok]
        vdims = ["CT", "color"]
    points = hv.Scatter(data, kdims=[sa_dim], vdims=[ct_dim, *vdims[1:]])
    popts = {"color": "color", "cmap": list(palette("deep")), "colorbar": True} if c is not None \
        else {"color": "#1f4e79"}
    return (contours.opts(color="grey", line_width=1, line_dash="dotted", backend=BACKEND)
            * text.opts(text_color="grey", text_font_size="9pt", backend=BACKEND)
            * points.opts(size=3, alpha=0.6, tools=["hover"], backend=BACKEND, **popts)).opts(
        frame_width=480, frame_height=FRAME_HEIGHT, title=title or "T–S diagram (σ0 in kg m⁻³)",
        backend=BACKEND)
