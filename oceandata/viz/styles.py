"""Colormaps and labels chosen from CF metadata.

cmocean colormaps (Thyng et al. 2016, Oceanography 29(3), 9-13, doi:10.5670/oceanog.2016.66)
are chosen from ``standard_name`` first, then ``long_name``, ``units`` and the name.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import xarray as xr

#: Hobday et al. (2018) category colours, as in the heatwaveR figures.
CATEGORY_COLOURS: dict[str, str] = {
    "Moderate": "#ffc866", "Strong": "#ff6900", "Severe": "#9e0000", "Extreme": "#2d0000",
}

_TEMPERATURE_UNITS = {"degc", "degree_celsius", "degrees_celsius", "celsius", "k", "kelvin",
                      "degree_c", "deg_c"}
_SALINITY_UNITS = {"psu", "pss-78", "g/kg", "g kg-1", "gram/kilogram", "1e-3"}


def _text(da: xr.DataArray) -> str:
    parts = [str(da.name or ""), str(da.attrs.get("long_name", "")),
             str(da.attrs.get("standard_name", ""))]
    return " ".join(parts).lower()


def is_anomaly(da: xr.DataArray) -> bool:
    """Whether *da* holds anomalies (names, long_name, or an ``anomaly(`` history line)."""
    return "anomal" in _text(da) or "anomaly(" in str(da.attrs.get("history", ""))


def colormap_for(da: xr.DataArray) -> str:
    """Name of the cmocean colormap suited to a variable.

    Parameters
    ----------
    da
        The variable; its ``standard_name``, ``long_name``, ``units`` and name are read.

    Returns
    -------
    str
        ``"balance"`` for anomalies (diverging, use symmetric limits), ``"thermal"`` for
        temperature, ``"haline"`` for salinity, ``"deep"`` for depth (positive down),
        ``"deep_r"`` for bathymetry given as elevation (negative below sea level, e.g.
        ETOPO ``ROSE``), else ``"viridis"``.

    Examples
    --------
    >>> import xarray as xr
    >>> colormap_for(xr.DataArray([1.0], attrs={"standard_name": "sea_water_salinity"}))
    'haline'
    """
    if is_anomaly(da):
        return "balance"
    standard = str(da.attrs.get("standard_name", "")).lower()
    units = str(da.attrs.get("units", "")).strip().lower()
    text = _text(da)
    if "temperature" in standard:
        return "thermal"
    if "salinity" in standard:
        return "haline"
    if standard in {"depth", "sea_floor_depth_below_sea_level", "sea_floor_depth",
                    "sea_floor_depth_below_geoid"}:
        return "deep"
    if standard in {"height_above_reference_ellipsoid", "altitude", "surface_altitude",
                    "height_above_mean_sea_level", "height_above_geoid"}:
        return "deep_r"
    if "temperature" in text or units in _TEMPERATURE_UNITS:
        return "thermal"
    if "salinity" in text or units in _SALINITY_UNITS:
        return "haline"
    if any(word in text for word in ("relief", "elevation", "topography", "altitude")):
        return "deep_r"
    if any(word in text for word in ("depth", "bathymetry")):
        return "deep"
    return "viridis"


@cache
def palette(name: str) -> tuple[str, ...]:
    """256 hex colours of a cmocean colormap (``"_r"`` reversed), or of ``viridis``.

    Parameters
    ----------
    name
        A cmocean name such as ``"thermal"`` or ``"deep_r"``, or ``"viridis"``.
    """
    from matplotlib.colors import to_hex

    if name.removesuffix("_r") == "viridis":
        from matplotlib import colormaps

        cmap = colormaps[name]
    else:
        import cmocean

        cmap = cmocean.cm.cmap_d[name]
    return tuple(to_hex(c) for c in cmap(np.linspace(0.0, 1.0, 256)))


def label_for(da: xr.DataArray | xr.Variable, name: str | None = None) -> str:
    """Axis label ``long_name [units]`` (or the name) of a variable or coordinate."""
    long_name = da.attrs.get("long_name") or name or getattr(da, "name", None) or "value"
    units = da.attrs.get("units")
    return f"{long_name} [{units}]" if units else str(long_name)
