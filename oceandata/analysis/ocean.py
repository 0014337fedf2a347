"""TEOS-10 on gridded fields with gsw: salinity, temperature, density, N², mixed layer, OHC.

Every function takes :class:`xarray.DataArray` objects and applies gsw through
:func:`xarray.apply_ufunc` with ``dask="parallelized"``, so dask-backed fields stay lazy;
arrays are aligned and broadcast by dimension name. Latitude, longitude and the vertical
axis are found through CF attributes (cf_xarray), the vertical one in any length unit (POP
and PHC2 give depth in centimetres) and either direction (``positive: up`` heights are read
as negative depths).

Sea pressure, when not given, is computed from the depth with ``gsw.p_from_z(-depth, lat)``.

The profile functions of :mod:`oceandata.insitu.seawater` (ragged Argo profiles) share their
gsw wrapper and their unit checks with this module; this one is for gridded model and
climatology fields.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable, Sequence
from typing import Any, TypeVar

import gsw
import numpy as np
import xarray as xr

from ..errors import DataError, UsageError
from ..insitu.seawater import MLD_REFERENCE, _check_input, _mld_rows, _ufunc
from ..io.subset import _METRES_PER_UNIT, _UPWARD_NAMES, _Axes

__all__ = [
    "CP0",
    "RHO0",
    "absolute_salinity",
    "conservative_temperature",
    "density",
    "depth_in_metres",
    "layer_edges",
    "mixed_layer_depth",
    "n_squared",
    "ocean_heat_content",
    "sigma0",
]

#: TEOS-10 specific heat capacity of seawater used with Conservative Temperature, J kg-1 K-1.
CP0 = 3991.86795711963
#: Boussinesq reference density, kg m-3 (the value used by TEOS-10 for rho0).
RHO0 = 1025.0

_SOFTWARE = f"TEOS-10 computed with the Python gsw {gsw.__version__} (GSW-C)"

T = TypeVar("T", xr.DataArray, xr.Dataset)


def _with_history(obj: T, text: str, source: dict[Hashable, Any] | None = None) -> T:
    """*obj* with a dated ``history`` line before the history of *source* (newest first)."""
    from .. import __version__  # late: the package may import this module

    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    line = f"{stamp}: oceandata {__version__}: {text}"
    previous = str((source if source is not None else obj.attrs).get("history", "")).strip()
    obj.attrs["history"] = f"{line}\n{previous}" if previous else line
    return obj


def _probe(*arrays: xr.DataArray | None) -> xr.Dataset:
    coords: dict[Hashable, Any] = {}
    for da in arrays:
        if da is not None:
            coords.update({k: v.variable for k, v in da.coords.items()})
    return xr.Dataset(coords=coords)


def _coordinate(kind: str, function: str, *arrays: xr.DataArray | None) -> xr.DataArray:
    probe = _probe(*arrays)
    found = _Axes(probe).get(kind, probe)
    if found is None:
        arg = {"latitude": "lat", "longitude": "lon", "vertical": "pressure"}[kind]
        raise DataError(f"{function}: no {kind} coordinate found (CF standard_name, axis, "
                        f"units or positive); pass {arg}=...")
    return found


def depth_in_metres(z: xr.DataArray) -> xr.DataArray:
    """A vertical coordinate as depth in metres, positive down.

    Parameters
    ----------
    z
        Depth or height in m, cm, mm or km; heights (``positive: up``, an upward standard
        name, or values all at or below zero without ``positive``) are negated.

    Returns
    -------
    xarray.DataArray
        Depth in metres with ``units: m`` and ``positive: down``.
    """
    units = str(z.attrs.get("units", "m")).strip().lower()
    if units not in _METRES_PER_UNIT:
        raise DataError(f"vertical coordinate {z.name!r} has units {units!r}; valid: "
                        f"{', '.join(sorted(_METRES_PER_UNIT))}")
    positive = str(z.attrs.get("positive", "")).lower()
    values = z.astype(np.float64) * _METRES_PER_UNIT[units]
    upward = positive == "up" or z.attrs.get("standard_name") in _UPWARD_NAMES
    if not positive and not upward:
        upward = bool((values <= 0).all()) and bool((values < 0).any())
    if upward:
        values = -values
    values.attrs = {"standard_name": "depth", "units": "m", "positive": "down",
                    "long_name": "depth below the surface"}
    return values


def _pressure(pressure: xr.DataArray | None, function: str,
              *arrays: xr.DataArray) -> xr.DataArray:
    if pressure is not None:
        _check_input(pressure, "pressure")
        return pressure
    z = depth_in_metres(_coordinate("vertical", function, *arrays))
    lat = _coordinate("latitude", function, *arrays)
    return xr.apply_ufunc(lambda d, y: gsw.p_from_z(-d, y), z, lat, dask="parallelized",
                          output_dtypes=[np.float64])


def _position(value: xr.DataArray | float | None, kind: str, function: str,
              *arrays: xr.DataArray) -> xr.DataArray | float:
    if value is None:
        return _coordinate(kind, function, *arrays)
    return value


def _result(da: xr.DataArray, name: str, attrs: dict[str, Any], text: str,
            source: xr.DataArray, *inputs: Any) -> xr.DataArray:
    da = da.rename(name)
    da.attrs = attrs
    for other in (source, *inputs):  # apply_ufunc drops coordinate attributes
        if isinstance(other, xr.DataArray):
            for key, coord in other.coords.items():
                if key in da.coords and not da[key].attrs:
                    da[key].attrs = dict(coord.attrs)
    return _with_history(da, f"oceandata.analysis.ocean.{text} (gsw {gsw.__version__})",
                         source.attrs)


def absolute_salinity(sp: xr.DataArray, *, pressure: xr.DataArray | None = None,
                      lon: xr.DataArray | float | None = None,
                      lat: xr.DataArray | float | None = None) -> xr.DataArray:
    """Absolute Salinity from Practical Salinity, ``gsw.SA_from_SP(SP, p, lon, lat)``.

    Parameters
    ----------
    sp
        Practical Salinity (PSS-78).
    pressure
        Sea pressure, dbar; default: from the vertical coordinate of *sp*.
    lon, lat
        Positions (arrays or scalars, degrees); default: the coordinates of *sp*. Zonal means
        (no longitude) need ``lon=`` a representative longitude.

    Returns
    -------
    xarray.DataArray
        ``SA`` in g kg-1, ``sea_water_absolute_salinity``.
    """
    _check_input(sp, "salinity")
    p = _pressure(pressure, "absolute_salinity", sp)
    x = _position(lon, "longitude", "absolute_salinity", sp, p)
    y = _position(lat, "latitude", "absolute_salinity", sp, p)
    sa = _ufunc(gsw.SA_from_SP, sp, p, x, y)
    return _result(sa, "SA", {
        "standard_name": "sea_water_absolute_salinity", "long_name": "Absolute Salinity",
        "units": "g kg-1", "comment": f"{_SOFTWARE}: gsw.SA_from_SP(SP, p, lon, lat)"},
        "absolute_salinity", sp, p, x, y)


def conservative_temperature(sa: xr.DataArray, t: xr.DataArray, *,
                             pressure: xr.DataArray | None = None,
                             potential: bool = False) -> xr.DataArray:
    """Conservative Temperature from in-situ or potential temperature.

    Parameters
    ----------
    sa
        Absolute Salinity, g kg-1.
    t
        In-situ temperature (ITS-90), degC; or potential temperature referenced to 0 dbar with
        ``potential=True`` (model and climatology output such as PHC2 ``TEMP``).
    pressure
        Sea pressure, dbar; default: from the vertical coordinate (unused when *potential*).
    potential
        *t* is potential temperature: ``gsw.CT_from_pt(SA, pt)``; else
        ``gsw.CT_from_t(SA, t, p)``.

    Returns
    -------
    xarray.DataArray
        ``CT`` in degC, ``sea_water_conservative_temperature``.
    """
    units = str(t.attrs.get("units", "degC")).lower()
    if units not in ("degc", "deg_c", "degree_celsius", "degrees_celsius", "celsius", "c"):
        raise DataError(f"conservative_temperature: {t.name!r} has units {units!r}; valid: degC")
    if potential:
        ct = _ufunc(gsw.CT_from_pt, sa, t)
        how = "gsw.CT_from_pt(SA, pt)"
    else:
        p = _pressure(pressure, "conservative_temperature", sa, t)
        ct = _ufunc(gsw.CT_from_t, sa, t, p)
        how = "gsw.CT_from_t(SA, t, p)"
    return _result(ct, "CT", {
        "standard_name": "sea_water_conservative_temperature",
        "long_name": "Conservative Temperature", "units": "degC",
        "units_metadata": "temperature: on_scale", "comment": f"{_SOFTWARE}: {how}"},
        f"conservative_temperature(potential={potential})", t, sa)


def density(sa: xr.DataArray, ct: xr.DataArray, *,
            pressure: xr.DataArray | None = None) -> xr.DataArray:
    """In-situ density, ``gsw.rho(SA, CT, p)``, kg m-3 (``sea_water_density``).

    Parameters
    ----------
    sa, ct
        Absolute Salinity (g kg-1) and Conservative Temperature (degC).
    pressure
        Sea pressure, dbar; default: from the vertical coordinate.

    Returns
    -------
    xarray.DataArray
        ``rho`` in kg m-3.
    """
    p = _pressure(pressure, "density", sa, ct)
    rho = _ufunc(gsw.rho, sa, ct, p)
    return _result(rho, "rho", {
        "standard_name": "sea_water_density", "long_name": "in-situ density",
        "units": "kg m-3", "comment": f"{_SOFTWARE}: gsw.rho(SA, CT, p)"}, "density", ct, sa)


def sigma0(sa: xr.DataArray, ct: xr.DataArray) -> xr.DataArray:
    """Potential density anomaly referenced to 0 dbar, ``gsw.sigma0(SA, CT)``, kg m-3.

    Parameters
    ----------
    sa, ct
        Absolute Salinity (g kg-1) and Conservative Temperature (degC).

    Returns
    -------
    xarray.DataArray
        ``sigma0`` in kg m-3 (``sea_water_sigma_theta``: potential density minus 1000).
    """
    sig = _ufunc(gsw.sigma0, sa, ct)
    return _result(sig, "sigma0", {
        "standard_name": "sea_water_sigma_theta",
        "long_name": "potential density anomaly referenced to 0 dbar (sigma0)",
        "units": "kg m-3", "reference_pressure": 0.0, "reference_pressure_units": "dbar",
        "comment": f"{_SOFTWARE}: gsw.sigma0(SA, CT) = rho(SA, CT, 0 dbar) - 1000 kg m-3"},
        "sigma0", ct, sa)


def _nsquared(sa: np.ndarray, ct: np.ndarray, p: np.ndarray, lat: np.ndarray) -> np.ndarray:
    sa, ct, p, lat = np.broadcast_arrays(sa, ct, p, np.asarray(lat)[..., np.newaxis])
    n2, _ = gsw.Nsquared(sa, ct, p, lat, axis=-1)
    return np.asarray(n2, dtype=np.float64)


def n_squared(sa: xr.DataArray, ct: xr.DataArray, *, pressure: xr.DataArray | None = None,
              lat: xr.DataArray | float | None = None) -> xr.DataArray:
    """Squared buoyancy frequency between adjacent levels, ``gsw.Nsquared``, s-2.

    Parameters
    ----------
    sa, ct
        Absolute Salinity (g kg-1) and Conservative Temperature (degC) on a vertical axis.
    pressure
        Sea pressure, dbar; default: from the vertical coordinate.
    lat
        Latitude (for gravity); default: the latitude coordinate.

    Returns
    -------
    xarray.DataArray
        ``N2`` on the dimension ``<vertical>_mid`` (one fewer level), whose coordinate is
        the mid-point of adjacent levels in the source units. The vertical dimension is
        rechunked to one chunk.
    """
    z = _coordinate("vertical", "n_squared", sa, ct)
    (zdim,) = z.dims
    p = _pressure(pressure, "n_squared", sa, ct)
    y = _position(lat, "latitude", "n_squared", sa, ct)
    mid = f"{zdim}_mid"
    n2 = xr.apply_ufunc(
        _nsquared, sa, ct, p, y, input_core_dims=[[zdim], [zdim], [zdim], []],
        output_core_dims=[[mid]], dask="parallelized", output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {mid: sa.sizes[zdim] - 1}, "allow_rechunk": True})
    zv = z.variable.astype(np.float64)
    centres = 0.5 * (zv[1:].data + zv[:-1].data)
    n2 = n2.assign_coords({mid: xr.Variable((mid,), np.asarray(centres), {
        **z.attrs, "long_name": f"mid-point of adjacent {zdim} levels"})})
    return _result(n2, "N2", {
        "standard_name": "square_of_brunt_vaisala_frequency_in_sea_water",
        "long_name": "squared buoyancy frequency", "units": "s-2",
        "comment": f"{_SOFTWARE}: gsw.Nsquared(SA, CT, p, lat) between adjacent levels"},
        "n_squared", ct, sa)


def mixed_layer_depth(sig0: xr.DataArray, *, threshold: float = 0.03,
                      reference_depth: float = 10.0) -> xr.DataArray:
    """Mixed-layer depth of a gridded sigma0 field (de Boyer Montégut et al. 2004).

    The shallowest depth below *reference_depth* where sigma0 exceeds its value at
    *reference_depth* (interpolated) by more than *threshold*, interpolated linearly between
    levels: the same criterion as :func:`oceandata.insitu.seawater.mixed_layer_depth`, on the
    depth (m) of the vertical coordinate instead of pressure.

    Parameters
    ----------
    sig0
        Potential density anomaly (kg m-3) with a vertical coordinate.
    threshold
        Density excess, kg m-3.
    reference_depth
        Reference depth, m.

    Returns
    -------
    xarray.DataArray
        ``mld`` in m, positive down (``ocean_mixed_layer_thickness_defined_by_sigma_theta``);
        NaN where the column does not reach the reference depth or never exceeds the
        threshold.
    """
    for name, value in (("threshold", threshold), ("reference_depth", reference_depth)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise UsageError(f"mixed_layer_depth: {name}={value!r}; valid: a number > 0")
    z = _coordinate("vertical", "mixed_layer_depth", sig0)
    (zdim,) = z.dims
    depth = depth_in_metres(z)
    mld = xr.apply_ufunc(
        _mld_rows, depth, sig0, input_core_dims=[[zdim], [zdim]],
        kwargs={"threshold": float(threshold), "reference": float(reference_depth)},
        dask="parallelized", output_dtypes=[np.float64],
        dask_gufunc_kwargs={"allow_rechunk": True})
    return _result(mld, "mld", {
        "standard_name": "ocean_mixed_layer_thickness_defined_by_sigma_theta",
        "long_name": "mixed layer depth", "units": "m", "positive": "down",
        "threshold": float(threshold), "threshold_units": "kg m-3",
        "reference_depth": float(reference_depth), "reference_depth_units": "m",
        "references": MLD_REFERENCE},
        f"mixed_layer_depth(threshold={threshold}, reference_depth={reference_depth})", sig0)


def layer_edges(z: xr.DataArray, bounds: xr.DataArray | None = None) -> np.ndarray:
    """Top and bottom depth (m, positive down) of each layer, shape (n, 2).

    From *bounds* when given (any unit and direction of *z*), else half-way between level
    centres, the first layer starting at the surface (0 m) and the last one as thick below
    its centre as above it.
    """
    if bounds is not None:
        b = depth_in_metres(bounds.assign_attrs(z.attrs)).values
        return np.sort(np.asarray(b, dtype=np.float64).reshape(-1, 2), axis=1)
    centres = np.asarray(depth_in_metres(z).values, dtype=np.float64)
    if centres.size == 1:
        return np.array([[0.0, 2 * centres[0]]])
    order = np.argsort(centres)
    c = centres[order]
    inner = 0.5 * (c[1:] + c[:-1])
    edges = np.concatenate([[0.0], inner, [c[-1] + (c[-1] - inner[-1])]])
    out = np.empty((c.size, 2))
    out[order] = np.stack([edges[:-1], edges[1:]], axis=1)
    return out


def ocean_heat_content(ds: xr.Dataset, depth_range: Sequence[float] = (0.0, 700.0), *,
                       temperature: str = "CT", rho0: float = RHO0,
                       cp0: float = CP0) -> xr.DataArray:
    """Ocean heat content per unit area, ``rho0 * cp0 * ∫ CT dz`` over *depth_range*, J m-2.

    Each level stands for a layer whose edges are the CF ``bounds`` of the vertical
    coordinate if it has them, else mid-points between levels (see :func:`layer_edges`);
    layers are clipped to *depth_range*. Missing values (below the sea floor) add nothing;
    a column with no valid level is NaN. Heat content is relative to 0 °C.

    Parameters
    ----------
    ds
        Dataset holding Conservative Temperature and its vertical coordinate.
    depth_range
        ``(top, bottom)`` in metres, positive down.
    temperature
        Name of the Conservative Temperature variable (degC).
    rho0, cp0
        Reference density (kg m-3) and heat capacity (J kg-1 K-1); TEOS-10 values by default.

    Returns
    -------
    xarray.DataArray
        ``ohc`` in J m-2 (``integral_wrt_depth_of_sea_water_conservative_temperature_expressed_as
        _heat_content``), lazy for dask input.
    """
    if temperature not in ds.data_vars:
        raise UsageError(f"ocean_heat_content: no variable {temperature!r}; pass "
                         f"temperature=<name> (data variables: {list(ds.data_vars)})")
    top, bottom = (float(v) for v in depth_range)
    if not 0 <= top < bottom:
        raise UsageError(f"ocean_heat_content: depth_range={depth_range!r}; valid: "
                         "(top, bottom) metres with 0 <= top < bottom")
    ct = ds[temperature]
    z = _coordinate("vertical", "ocean_heat_content", ct)
    (zdim,) = z.dims
    bounds_name = z.attrs.get("bounds")
    bounds = ds[bounds_name] if bounds_name in ds.variables else None
    edges = layer_edges(z, bounds)
    thickness = np.clip(np.minimum(edges[:, 1], bottom) - np.maximum(edges[:, 0], top),
                        0.0, None)
    dz = xr.DataArray(thickness, dims=(zdim,), coords={zdim: z.variable})
    ohc = rho0 * cp0 * (ct * dz).sum(zdim, skipna=True, min_count=1)
    return _result(ohc, "ohc", {
        "standard_name": ("integral_wrt_depth_of_sea_water_conservative_temperature_"
                          "expressed_as_heat_content"),
        "long_name": f"ocean heat content {top:g}-{bottom:g} m", "units": "J m-2",
        "comment": (f"rho0 * cp0 * sum(CT * dz), rho0 = {rho0} kg m-3, cp0 = {cp0} J kg-1 K-1, "
                    "relative to 0 degC; layer thicknesses from "
                    + ("the vertical bounds" if bounds is not None else "level mid-points")
                    + " clipped to the depth range")},
        f"ocean_heat_content(depth_range=({top:g}, {bottom:g}))", ct)
