"""TEOS-10 seawater properties with gsw, and the mixed-layer depth of profiles.

:func:`teos10` adds Absolute Salinity ``SA``, Conservative Temperature ``CT`` and the
potential density anomaly ``sigma0`` to a dataset of in-situ pressure, temperature and
Practical Salinity. Each is computed with :func:`xarray.apply_ufunc` (``dask=
"parallelized"``), so dask-backed data stay lazy. For a contiguous ragged array (Argo
profiles with ``row_size``) the latitude and longitude of each profile are repeated over its
levels.

Standard names. ``SA`` is ``sea_water_absolute_salinity`` and ``CT``
``sea_water_conservative_temperature``. For ``sigma0`` = rho(SA, CT, 0 dbar) - 1000
kg m-3 the CF name is ``sea_water_sigma_theta``: the density after an adiabatic move to a
reference pressure (here 0 dbar), minus 1000 kg m-3. ``sea_water_sigma_t`` would be wrong:
it is the density at the surface with the *in-situ* temperature.

:func:`mixed_layer_depth` applies the density-threshold criterion of de Boyer Montégut
et al. (2004) to each profile, ragged or padded.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Hashable
from typing import Any

import gsw
import numpy as np
import xarray as xr

from ..errors import DataError, UsageError, suggest
from .qc import ragged_of

__all__ = ["MLD_REFERENCE", "mixed_layer_depth", "teos10"]

#: The publication of the mixed-layer-depth criterion.
MLD_REFERENCE = ("de Boyer Montégut, C., Madec, G., Fischer, A. S., Lazar, A. and Iudicone, "
                 "D. (2004): Mixed layer depth over the global ocean: an examination of "
                 "profile data and a profile-based climatology. J. Geophys. Res., 109, C12003, "
                 "doi:10.1029/2004JC002378")

_PRESSURE_UNITS = {"dbar", "dbars", "decibar", "decibars", "db"}
_TEMPERATURE_UNITS = {"degree_celsius", "degrees_celsius", "degc", "deg_c", "celsius",
                      "degree_c", "degrees_c", "°c", "deg c", "degreec"}
_ABSOLUTE_SALINITY_UNITS = {"g/kg", "g kg-1", "g kg^-1", "g.kg-1", "g kg**-1"}
_NOT_IN_SITU_TEMPERATURE = {"sea_water_potential_temperature",
                            "sea_water_conservative_temperature"}
_NOT_PRACTICAL_SALINITY = {"sea_water_absolute_salinity", "sea_water_preformed_salinity",
                           "sea_water_reference_salinity"}
_POSITION_NAMES = {"latitude": ("latitude", "LATITUDE", "lat", "LAT", "Latitude"),
                   "longitude": ("longitude", "LONGITUDE", "lon", "LON", "Longitude")}
_POSITION_UNITS = {"latitude": {"degrees_north", "degree_north", "degrees_n", "degree_n",
                                 "degreesn", "degreen"},
                   "longitude": {"degrees_east", "degree_east", "degrees_e", "degree_e",
                                 "degreese", "degreee"}}


def _variable(ds: xr.Dataset, name: Hashable, role: str, function: str) -> xr.DataArray:
    if name not in ds.variables:
        names = list(map(str, ds.variables))
        hint = suggest(str(name), names)
        raise UsageError(f"{function}: no {role} variable {name!r} in the dataset; pass "
                         f"{role}=<name> (variables: {', '.join(names)}).{hint}")
    return ds[name]


def _check_input(var: xr.DataArray, role: str) -> None:
    """Refuse inputs whose units or standard name say they are not what gsw expects."""
    units = str(var.attrs.get("units", "")).strip()
    standard_name = var.attrs.get("standard_name")
    if role == "pressure" and units and units.lower() not in _PRESSURE_UNITS:
        raise DataError(f"pressure {var.name!r} has units {units!r}; teos10 needs sea pressure "
                        "in dbar (units dbar or decibar)")
    if role == "temperature" and ((units and units.lower() not in _TEMPERATURE_UNITS)
                                  or standard_name in _NOT_IN_SITU_TEMPERATURE):
        raise DataError(f"temperature {var.name!r} (units {units or 'none'!r}, standard_name "
                        f"{standard_name!r}) is not in-situ temperature in degC; teos10 needs "
                        "ITS-90 in-situ temperature in degree_Celsius")
    if role == "salinity" and (units.lower() in _ABSOLUTE_SALINITY_UNITS
                               or standard_name in _NOT_PRACTICAL_SALINITY):
        raise DataError(f"salinity {var.name!r} (units {units!r}, standard_name "
                        f"{standard_name!r}) looks like Absolute or Reference Salinity; teos10 "
                        "needs Practical Salinity (PSS-78, units 1 or psu)")


def _find_position(ds: xr.Dataset, kind: str) -> xr.DataArray | None:
    for name in _POSITION_NAMES[kind]:
        if name in ds.variables:
            return ds[name]
    for name, var in ds.variables.items():
        if var.attrs.get("standard_name") == kind or (
                str(var.attrs.get("units", "")).lower() in _POSITION_UNITS[kind]):
            return ds[name]
    return None


def _position(ds: xr.Dataset, value: str | float | None, kind: str,
              data: xr.DataArray) -> xr.Variable | float:
    """Latitude or longitude on the dimensions of *data* (or a scalar)."""
    arg = "lat" if kind == "latitude" else "lon"
    if isinstance(value, int | float) and not isinstance(value, bool):
        limit = 90 if kind == "latitude" else 360
        if not -limit <= value <= limit:
            raise UsageError(f"teos10: {arg}={value} is out of range; valid: "
                             f"-{limit}..{limit} degrees")
        return float(value)
    if value is None:
        found = _find_position(ds, kind)
        if found is None:
            raise UsageError(f"teos10: no {kind} found in the dataset; pass {arg}=<variable "
                             f"name> or {arg}=<degrees> for a fixed position")
    elif isinstance(value, str):
        found = _variable(ds, value, arg, "teos10")
    else:
        raise UsageError(f"teos10: {arg} must be a variable name, a number of degrees or "
                         f"None, got {type(value).__name__}")
    if set(found.dims) <= set(data.dims):
        return found.variable
    ragged = ragged_of(ds, data.dims[0]) if data.ndim == 1 else None
    if ragged is not None and found.dims == (ragged.instance_dim,):
        sizes = np.diff(ragged.bounds(ds))
        repeated = xr.Variable((ragged.sample_dim,),
                               np.repeat(np.asarray(found.values, dtype=np.float64), sizes))
        if data.chunks is not None:
            repeated = repeated.chunk({ragged.sample_dim: data.chunksizes[ragged.sample_dim]})
        return repeated
    raise DataError(f"teos10: {kind} {found.name!r} has dimensions {found.dims}, which cannot be "
                    f"matched to the data's {data.dims}; valid: a scalar, dimensions shared "
                    "with the data, or the profile dimension of a ragged array (row_size)")


def _ufunc(func: Any, *args: Any) -> xr.DataArray:
    return xr.apply_ufunc(func, *args, dask="parallelized", output_dtypes=[np.float64],
                          keep_attrs=False)


def teos10(ds: xr.Dataset, *, pressure: str = "PRES", temperature: str = "TEMP",
           salinity: str = "PSAL", lat: str | float | None = None,
           lon: str | float | None = None) -> xr.Dataset:
    """Add TEOS-10 Absolute Salinity, Conservative Temperature and sigma0 with gsw.

    ``SA = gsw.SA_from_SP(SP, p, lon, lat)``, ``CT = gsw.CT_from_t(SA, t, p)`` and
    ``sigma0 = gsw.sigma0(SA, CT)``, each through :func:`xarray.apply_ufunc` with
    ``dask="parallelized"``: dask-backed inputs give lazy results. Only the latitude and
    longitude of a ragged array (one value per profile) and its row sizes are read, to
    repeat each position over the levels of its profile.

    Parameters
    ----------
    ds
        Profiles (ragged with ``row_size``, or padded) or a time series.
    pressure
        Sea pressure variable, dbar.
    temperature
        In-situ temperature variable (ITS-90), degC.
    salinity
        Practical Salinity variable (PSS-78).
    lat, lon
        Variable names, or fixed positions in degrees (a mooring). Default: the variable
        named latitude/LATITUDE/lat (longitude/LONGITUDE/lon), else the one whose standard
        name or units say so.

    Returns
    -------
    xarray.Dataset
        A copy of *ds* with ``SA`` (g kg-1, ``sea_water_absolute_salinity``), ``CT`` (degC,
        ``sea_water_conservative_temperature``) and ``sigma0`` (kg m-3,
        ``sea_water_sigma_theta``, referenced to 0 dbar), replacing variables of those
        names, and a ``history`` line.

    Raises
    ------
    UsageError
        A named variable is missing, or no latitude/longitude is found.
    DataError
        An input's units or standard name say it is not what gsw needs (e.g. pressure in
        Pa, Absolute Salinity given as salinity), or the position cannot be matched to the
        data.
    """
    p = _variable(ds, pressure, "pressure", "teos10")
    t = _variable(ds, temperature, "temperature", "teos10")
    sp = _variable(ds, salinity, "salinity", "teos10")
    for var, role in ((p, "pressure"), (t, "temperature"), (sp, "salinity")):
        _check_input(var, role)
    latitude = _position(ds, lat, "latitude", sp)
    longitude = _position(ds, lon, "longitude", sp)

    sa = _ufunc(gsw.SA_from_SP, sp.variable, p.variable, longitude, latitude)
    ct = _ufunc(gsw.CT_from_t, sa, t.variable, p.variable)
    sigma0 = _ufunc(gsw.sigma0, sa, ct)
    software = f"TEOS-10 computed with the Python gsw {gsw.__version__} (GSW-C)"
    out = ds.copy()
    out["SA"] = xr.Variable(sa.dims, sa.data, {
        "standard_name": "sea_water_absolute_salinity", "long_name": "Absolute Salinity",
        "units": "g kg-1",
        "comment": f"{software}: gsw.SA_from_SP({salinity}, {pressure}, lon, lat), with the "
                   "Absolute Salinity Anomaly atlas of McDougall et al. (2012)"})
    out["CT"] = xr.Variable(ct.dims, ct.data, {
        "standard_name": "sea_water_conservative_temperature",
        "long_name": "Conservative Temperature", "units": "degC",
        "units_metadata": "temperature: on_scale",
        "comment": f"{software}: gsw.CT_from_t(SA, {temperature}, {pressure})"})
    out["sigma0"] = xr.Variable(sigma0.dims, sigma0.data, {
        "standard_name": "sea_water_sigma_theta",
        "long_name": "potential density anomaly referenced to 0 dbar (sigma0)",
        "units": "kg m-3", "reference_pressure": 0.0, "reference_pressure_units": "dbar",
        "comment": f"{software}: gsw.sigma0(SA, CT) = rho(SA, CT, 0 dbar) - 1000 kg m-3; CF "
                   "sea_water_sigma_theta is potential density minus 1000 kg m-3 at a "
                   "reference pressure, here 0 dbar (sea_water_sigma_t would use in-situ "
                   "temperature)"})
    from .. import __version__  # late: the package may import this module

    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    line = (f"{stamp}: oceandata {__version__}: oceandata.insitu.seawater.teos10 (gsw "
            f"{gsw.__version__}): SA, CT, sigma0 from {pressure}, {temperature}, {salinity}")
    history = str(ds.attrs.get("history", "")).strip()
    out.attrs = {**ds.attrs, "history": f"{line}\n{history}" if history else line}
    return out


# --------------------------------------------------------------------------- mixed layer


def _mld_profile(p: np.ndarray, sigma: np.ndarray, threshold: float,
                 reference: float) -> float:
    """Mixed-layer depth (pressure) of one profile; NaN where it is undefined."""
    keep = np.isfinite(p) & np.isfinite(sigma)
    p, sigma = p[keep], sigma[keep]
    if p.size == 0:
        return np.nan
    order = np.argsort(p, kind="stable")
    p, sigma = p[order], sigma[order]
    if p[0] > reference or p[-1] < reference:
        return np.nan
    sigma_ref = float(np.interp(reference, p, sigma))
    below = p > reference
    pp = np.concatenate([[reference], p[below]])
    excess = np.concatenate([[sigma_ref], sigma[below]]) - sigma_ref
    over = np.flatnonzero(excess > threshold)
    if over.size == 0:
        return np.nan
    k = over[0]  # >= 1: excess[0] is 0
    frac = (threshold - excess[k - 1]) / (excess[k] - excess[k - 1])
    return float(pp[k - 1] + frac * (pp[k] - pp[k - 1]))


def _mld_rows(p: np.ndarray, sigma: np.ndarray, *, threshold: float,
              reference: float) -> np.ndarray:
    """:func:`_mld_profile` over the leading axes (levels on the last axis)."""
    p, sigma = np.broadcast_arrays(p, sigma)
    out = np.empty(sigma.shape[:-1], dtype=np.float64)
    for index in np.ndindex(out.shape):
        out[index] = _mld_profile(p[index], sigma[index], threshold, reference)
    return out


def mixed_layer_depth(ds: xr.Dataset, *, threshold: float = 0.03,
                      reference_pressure: float = 10.0, pressure: str = "PRES",
                      sigma0: str = "sigma0") -> xr.DataArray:
    """Mixed-layer depth of each profile by the density threshold of de Boyer Montégut (2004).

    For each profile, sigma0 at *reference_pressure* is interpolated linearly between the
    levels around it; the mixed-layer depth is the shallowest pressure below it at which
    sigma0 exceeds that reference value by more than *threshold*, interpolated linearly
    between the last level within the threshold (or the reference point) and the first
    level beyond it. Levels are taken in pressure order; levels with missing pressure or
    sigma0 are skipped.

    The result is NaN for a profile that does not span the reference pressure (no level
    at or above it, or none at or below it) or whose sigma0 never exceeds the threshold.

    Parameters
    ----------
    ds
        Profiles with sigma0 (see :func:`teos10`): a contiguous ragged array
        (``row_size``), a padded 2-D array (profile, level) with 2-D or 1-D pressure, or a
        single 1-D profile.
    threshold
        Density excess, kg m-3 (0.03 in de Boyer Montégut et al., 2004).
    reference_pressure
        Reference level, dbar (10 in de Boyer Montégut et al., 2004, where it is 10 m).
    pressure
        Pressure variable, dbar.
    sigma0
        Potential density anomaly variable, kg m-3.

    Returns
    -------
    xarray.DataArray
        ``mld`` in dbar on the profile dimension (0-d for a single profile), with the
        profile coordinates, and attributes giving the method, threshold, reference
        pressure and reference. Lazy for padded dask-backed data; ragged data are read.

    Raises
    ------
    UsageError
        *threshold* or *reference_pressure* is not a positive (non-negative) number, or a
        variable is missing (sigma0: run :func:`teos10` first).
    DataError
        The variables' dimensions are not a ragged, padded or single profile.
    """
    for name, value, low in (("threshold", threshold, "> 0"),
                             ("reference_pressure", reference_pressure, ">= 0")):
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not np.isfinite(value) or (value <= 0 if low == "> 0" else value < 0)):
            raise UsageError(f"mixed_layer_depth: {name}={value!r}; valid: a number {low}")
    if sigma0 not in ds.variables:
        raise UsageError(f"mixed_layer_depth: no variable {sigma0!r} in the dataset; run "
                         "oceandata.insitu.seawater.teos10(ds) first or pass sigma0=<name>")
    sig = ds[sigma0]
    p = _variable(ds, pressure, "pressure", "mixed_layer_depth")
    kw = {"threshold": float(threshold), "reference": float(reference_pressure)}
    ragged = ragged_of(ds, sig.dims[0]) if sig.ndim == 1 else None
    if ragged is not None:
        if p.dims != sig.dims:
            raise DataError(f"mixed_layer_depth: pressure {pressure!r} has dimensions {p.dims}, "
                            f"sigma0 {sig.dims}; a ragged array needs both on {sig.dims}")
        bounds = ragged.bounds(ds)
        pv = np.asarray(p.values, dtype=np.float64)
        sv = np.asarray(sig.values, dtype=np.float64)
        values = np.array([_mld_profile(pv[a:b], sv[a:b], **kw)
                           for a, b in itertools.pairwise(bounds)])
        coords = {k: c.variable for k, c in ds.coords.items()
                  if c.dims == (ragged.instance_dim,)}
        result = xr.DataArray(values, dims=(ragged.instance_dim,), coords=coords)
    elif sig.ndim in (1, 2) and p.ndim in (1, sig.ndim) and set(p.dims) <= set(sig.dims):
        level = p.dims[0] if p.ndim == 1 else sig.dims[-1]
        result = xr.apply_ufunc(_mld_rows, p, sig, input_core_dims=[[level], [level]],
                                kwargs=kw, dask="parallelized", output_dtypes=[np.float64],
                                dask_gufunc_kwargs={"allow_rechunk": True})
        result = result.drop_vars([k for k in result.coords if k == level], errors="ignore")
    else:
        raise DataError(f"mixed_layer_depth: sigma0 {sig.dims} and pressure {p.dims} are not "
                        "profiles; valid: a ragged array (row_size), padded (profile, level) "
                        "or a single 1-D profile")
    result.name = "mld"
    result.attrs = {
        "long_name": "mixed layer depth (pressure at the base of the mixed layer)",
        "units": "dbar", "positive": "down",
        "method": (f"density threshold: shallowest pressure below {reference_pressure:g} dbar "
                   f"where sigma0 exceeds sigma0 at {reference_pressure:g} dbar (linearly "
                   f"interpolated) by {threshold:g} kg m-3, linearly interpolated between "
                   "levels"),
        "threshold": float(threshold), "threshold_units": "kg m-3",
        "reference_pressure": float(reference_pressure), "reference_pressure_units": "dbar",
        "references": MLD_REFERENCE,
        "comment": "NaN where the profile does not span the reference pressure or sigma0 "
                   "never exceeds the threshold. A pressure, not a depth (1 dbar is about "
                   "1 m), hence no CF standard name: "
                   "ocean_mixed_layer_thickness_defined_by_sigma_theta is in metres.",
    }
    return result
