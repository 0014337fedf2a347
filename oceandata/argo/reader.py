"""Argo floats as CF discrete-sampling-geometry profiles, with the Argo data rules applied.

Data modes and values
    Each profile has a data mode: ``R`` (real time), ``A`` (real time, adjusted) or
    ``D`` (delayed mode). Where the mode is ``A`` or ``D`` the ``<PARAM>_ADJUSTED``
    values and their ``<PARAM>_ADJUSTED_QC`` flags are used, otherwise ``<PARAM>`` and
    ``<PARAM>_QC`` (Argo user manual §3.2.2). BGC ``_Sprof`` files have no ``DATA_MODE``;
    each parameter of each profile has its own mode in ``PARAMETER_DATA_MODE``.

User modes (the same rules as argopy's, so results agree)
    ``expert``
        Every profile, and every level whose pressure (chosen by data mode) is present;
        values chosen by data mode, QC flags kept as ``<PARAM>_QC`` variables. (argopy
        keeps levels with a raw PRES even where PRES_ADJUSTED is missing, as NaN
        pressures; see docs/insitu.md, "Agreement with argopy".)
    ``standard``
        Profiles whose position and date QC are 1 or 2; levels whose PRES, TEMP and PSAL
        QC are all 1 or 2. Other (BGC) parameters are set to NaN where their own QC is
        not 1 or 2. All data modes.
    ``research``
        Delayed-mode profiles only (for BGC parameters, delayed-mode values only);
        position and date QC 1; levels whose PRES, TEMP and PSAL QC are all 1 and whose
        PRES_ADJUSTED_ERROR is below 20 dbar.

Layout
    A contiguous ragged array (CF 1.10 §H.3.4): dimension ``profile`` for the profile
    variables (platform_number, cycle_number, direction, data_mode, time, latitude,
    longitude, row_size) and ``obs`` for the levels, ``row_size`` (``sample_dimension:
    obs``) counting each profile's levels. :func:`to_standard_levels` interpolates to
    fixed pressures on a padded (profile, PRES_INTERPOLATED) grid instead.

Every result carries, in its attributes, ``argo_user_mode``, ``argo_data_modes`` (the
modes it contains), ``argo_qc_rule`` (the rule in words) and ``argo_sources``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import DataError, UsageError, suggest
from .index import mirror_path

__all__ = ["MODES", "STANDARD_LEVELS", "concat_ragged", "float_files", "load",
           "to_standard_levels"]

MODES = ("standard", "research", "expert")
CORE = ("PRES", "TEMP", "PSAL")
#: Pressures (dbar) of the standard levels, as in World Ocean Atlas depths down to 2000.
STANDARD_LEVELS = np.array([0, 10, 20, 30, 50, 75, 100, 125, 150, 200, 250, 300, 400, 500,
                            600, 700, 800, 900, 1000, 1100, 1200, 1300, 1400, 1500, 1750,
                            2000], dtype=float)
_GOOD = {"standard": {1, 2}, "research": {1}}
_QC_ATTRS = {"flag_values": np.arange(10, dtype="i1"),
             "flag_meanings": "no_qc_performed good_data probably_good_data "
                              "bad_data_that_are_potentially_correctable bad_data value_changed "
                              "not_used not_used estimated_value missing_value",
             "conventions": "Argo reference table 2"}


def _rule(mode: str, bgc: bool) -> str:
    if mode == "expert":
        return ("none: every profile and level; values from <PARAM>_ADJUSTED where the data "
                "mode is A or D, else <PARAM>; QC flags kept as <PARAM>_QC")
    good = " or ".join(map(str, sorted(_GOOD[mode])))
    text = (f"profiles with POSITION_QC and JULD_QC in ({good}); levels with PRES, TEMP and "
            f"PSAL QC all in ({good}); values from <PARAM>_ADJUSTED where the data mode is A "
            "or D, else <PARAM>")
    if mode == "research":
        text = "data mode D only; " + text + "; PRES_ADJUSTED_ERROR < 20 dbar"
    if bgc:
        text += f"; other parameters set to NaN where their QC is not in ({good})"
    return text


def float_files(wmo: int, mirror: str | os.PathLike[str] | None = None, *,
                bgc: bool = False) -> Path:
    """The ``<wmo>_prof.nc`` (or ``_Sprof.nc``) of a float in the mirror.

    Raises
    ------
    DataError
        The float is not in the mirror (the message lists the floats that are).
    """
    root = mirror_path(mirror)
    suffix = "_Sprof.nc" if bgc else "_prof.nc"
    found = sorted(root.glob(f"dac/*/{int(wmo)}/{int(wmo)}{suffix}"))
    if found:
        return found[0]
    have = sorted({p.parent.name for p in root.glob(f"dac/*/*/*{suffix}")})
    kind = "BGC (Sprof) " if bgc else ""
    raise DataError(f"float {wmo} has no {kind}profile file in the mirror {root} "
                    f"(dac/<dac>/{wmo}/{wmo}{suffix});{suggest(str(wmo), have)} floats here: "
                    f"{', '.join(have)}")


def _text(values: np.ndarray) -> np.ndarray:
    """Argo char arrays (bytes) as stripped str."""
    return np.char.strip(np.char.decode(np.asarray(values).astype("S"), "ascii"))


def _qc(values: np.ndarray) -> np.ndarray:
    """Argo QC characters as int8 (9 for blank/missing)."""
    text = _text(values)
    out = np.full(text.shape, 9, dtype="i1")
    digits = np.char.isdigit(text) & (np.char.str_len(text) == 1)
    out[digits] = text[digits].astype("i1")
    return out


def _parameters(nc: xr.Dataset, bgc: bool) -> list[str]:
    names = [str(p) for p in np.unique(_text(nc["STATION_PARAMETERS"].values)) if str(p)]
    params = [p for p in CORE if p in names and p in nc]
    if bgc:
        params += sorted(p for p in names if p not in CORE and p in nc
                         and f"{p}_ADJUSTED" in nc)
    return params


def _modes(nc: xr.Dataset, params: list[str], path: Path) -> dict[str, np.ndarray]:
    """Data mode per profile for each parameter."""
    n_prof = nc.sizes["N_PROF"]
    if "PARAMETER_DATA_MODE" in nc:
        table = _text(nc["PARAMETER_DATA_MODE"].values)  # (N_PROF, N_PARAM)
        station = _text(nc["STATION_PARAMETERS"].values)  # (N_PROF, N_PARAM)
        out = {}
        for param in params:
            mode = np.full(n_prof, "R", dtype="<U1")
            rows, cols = np.nonzero(station == param)
            mode[rows] = table[rows, cols]
            out[param] = mode
        return out
    if "DATA_MODE" not in nc:
        raise DataError(f"{path}: no DATA_MODE nor PARAMETER_DATA_MODE; not an Argo profile file")
    mode = _text(nc["DATA_MODE"].values)
    return dict.fromkeys(params, mode)


def _check_dims(nc: xr.Dataset, params: list[str], path: Path) -> None:
    for param in params:
        for name in (param, f"{param}_QC", f"{param}_ADJUSTED", f"{param}_ADJUSTED_QC"):
            if name in nc and nc[name].dims != ("N_PROF", "N_LEVELS"):
                raise DataError(f"{path}: {name} has dimensions {nc[name].dims}, not "
                                "(N_PROF, N_LEVELS); the profile file is inconsistent")


def _read_float(path: Path, mode: str, bgc: bool) -> tuple[xr.Dataset, set[str]]:
    from ..catalog.drivers import _check_classic_complete

    _check_classic_complete(str(path))
    try:
        nc = xr.open_dataset(path, engine="netcdf4", decode_times=True, mask_and_scale=True)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    with nc:
        params = _parameters(nc, bgc)
        if not set(CORE) <= set(params):
            raise DataError(f"{path}: core parameters {sorted(set(CORE) - set(params))} "
                            "missing; not a core Argo profile file")
        _check_dims(nc, params, path)
        modes = _modes(nc, params, path)
        values, flags = {}, {}
        for param in params:
            adjusted = np.isin(modes[param], ("A", "D"))[:, None]
            values[param] = np.where(adjusted, nc[f"{param}_ADJUSTED"].values,
                                     nc[param].values).astype("f8")
            flags[param] = np.where(adjusted, _qc(nc[f"{param}_ADJUSTED_QC"].values),
                                    _qc(nc[f"{param}_QC"].values))
        pres_error = nc["PRES_ADJUSTED_ERROR"].values if "PRES_ADJUSTED_ERROR" in nc else None
        profile_mode = modes["PRES"] if "DATA_MODE" not in nc else _text(nc["DATA_MODE"].values)
        meta = {
            "platform_number": _text(nc["PLATFORM_NUMBER"].values).astype(int),
            "cycle_number": nc["CYCLE_NUMBER"].values.astype(int),
            "direction": _text(nc["DIRECTION"].values),
            "data_mode": profile_mode,
            "time": nc["JULD"].values,
            "latitude": nc["LATITUDE"].values.astype("f8"),
            "longitude": nc["LONGITUDE"].values.astype("f8"),
        }
        position_qc, time_qc = _qc(nc["POSITION_QC"].values), _qc(nc["JULD_QC"].values)
        attrs = {p: {k: nc[p].attrs[k] for k in ("standard_name", "long_name", "units")
                     if k in nc[p].attrs} for p in params}

    keep_prof = np.ones(len(meta["time"]), dtype=bool)
    keep_level = np.isfinite(values["PRES"])
    if mode != "expert":
        good = list(_GOOD[mode])
        keep_prof &= np.isin(position_qc, good) & np.isin(time_qc, good)
        for param in CORE:
            keep_level &= np.isin(flags[param], good) & np.isfinite(values[param])
        if mode == "research":
            keep_prof &= profile_mode == "D"
            if pres_error is not None:
                with np.errstate(invalid="ignore"):
                    keep_level &= pres_error < 20
        for param in params:
            if param in CORE:
                continue
            bad = ~np.isin(flags[param], good)
            if mode == "research":
                bad |= (modes[param] != "D")[:, None]
            values[param] = np.where(bad, np.nan, values[param])
    keep_level &= keep_prof[:, None]
    row_size = keep_level.sum(axis=1)
    keep_prof &= row_size > 0
    row_size = row_size[keep_prof]
    obs_mask = keep_level[keep_prof]

    ds = xr.Dataset()
    for name, value in meta.items():
        ds[name] = ("profile", value[keep_prof])
    ds["row_size"] = ("profile", row_size.astype("i4"),
                      {"sample_dimension": "obs", "long_name": "number of levels"})
    for param in params:
        ds[param] = ("obs", values[param][keep_prof][obs_mask], attrs[param])
        if mode == "expert":
            ds[f"{param}_QC"] = ("obs", flags[param][keep_prof][obs_mask],
                                 {"long_name": f"quality flag of {param}", **_QC_ATTRS})
    if mode == "expert":
        ds["position_qc"] = ("profile", position_qc[keep_prof], dict(_QC_ATTRS))
        ds["time_qc"] = ("profile", time_qc[keep_prof], dict(_QC_ATTRS))
    return ds, set(map(str, np.unique(meta["data_mode"][keep_prof])))


def _cf(ds: xr.Dataset) -> xr.Dataset:
    ds["platform_number"].attrs.update(cf_role="trajectory_id", long_name="float WMO number")
    ds["cycle_number"].attrs.update(cf_role="profile_id", long_name="float cycle number")
    ds["time"].attrs.update(standard_name="time", axis="T")
    ds["latitude"].attrs.update(standard_name="latitude", units="degrees_north", axis="Y")
    ds["longitude"].attrs.update(standard_name="longitude", units="degrees_east", axis="X")
    if "PRES" in ds:
        ds["PRES"].attrs.update(axis="Z", positive="down")
    ds["direction"].attrs["long_name"] = "A ascending, D descending"
    ds["data_mode"].attrs["long_name"] = "R real time, A adjusted, D delayed mode"
    return ds.set_coords(["time", "latitude", "longitude"])


def load(wmo: int | Sequence[int], *, mode: str = "standard", bgc: bool = False,
         mirror: str | os.PathLike[str] | None = None) -> xr.Dataset:
    """Load whole floats from a GDAC mirror as one ragged CF profile dataset.

    Parameters
    ----------
    wmo
        One or several float WMO numbers.
    mode
        ``standard``, ``research`` or ``expert`` (see the module docstring).
    bgc
        Read the ``_Sprof.nc`` file (BGC parameters such as DOXY) instead of ``_prof.nc``.
    mirror
        Folder holding ``dac/``; default the sample GDAC subset.

    Returns
    -------
    xarray.Dataset
        Dimensions ``profile`` and ``obs``; attributes ``featureType: profile``,
        ``argo_user_mode``, ``argo_data_modes``, ``argo_qc_rule``, ``argo_sources``.

    Raises
    ------
    UsageError
        Unknown mode.
    DataError
        A float missing from the mirror, or an unreadable or inconsistent file.
    """
    if mode not in MODES:
        raise UsageError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    floats = [wmo] if isinstance(wmo, int | np.integer | str) else list(wmo)
    if not floats:
        raise UsageError("give at least one float WMO number")
    parts, modes, sources = [], set(), []
    for number in floats:
        path = float_files(int(number), mirror, bgc=bgc)
        ds, found = _read_float(path, mode, bgc)
        parts.append(ds)
        modes |= found
        sources.append(f"{path.parent.parent.name}/{path.parent.name}/{path.name}")
    out = concat_ragged(parts) if len(parts) > 1 else parts[0]
    out = _cf(out)
    out.attrs.update({
        "featureType": "profile",
        "Conventions": "CF-1.10",
        "title": f"Argo floats {', '.join(map(str, floats))}",
        "argo_user_mode": mode,
        "argo_data_modes": ",".join(sorted(modes)) or "none",
        "argo_qc_rule": _rule(mode, bgc),
        "argo_sources": " ".join(sources),
        "references": "Argo (2000). Argo float data and metadata from Global Data Assembly "
                      "Centre (Argo GDAC). SEANOE. doi:10.17882/42182",
    })
    return out


def concat_ragged(parts: Sequence[xr.Dataset]) -> xr.Dataset:
    """Join ragged profile datasets: profile variables along ``profile``, levels along ``obs``."""
    def along(dim: str) -> xr.Dataset:
        return xr.concat([p[[v for v in p.variables if p[v].dims == (dim,)]] for p in parts],
                         dim=dim, data_vars="all", coords="all", join="outer")

    return xr.merge([along("profile"), along("obs")], combine_attrs="override")


def to_standard_levels(ds: xr.Dataset, levels: Sequence[float] | None = None) -> xr.Dataset:
    """Interpolate a ragged profile dataset linearly in pressure to standard levels.

    Each profile is interpolated between its own levels only (no extrapolation: levels
    outside a profile's pressure range are NaN). QC flag variables are dropped.

    Returns
    -------
    xarray.Dataset
        Dimensions ``profile`` and ``PRES_INTERPOLATED``.
    """
    target = STANDARD_LEVELS if levels is None else np.asarray(levels, dtype=float)
    if target.ndim != 1 or target.size == 0 or np.any(np.diff(target) <= 0):
        raise UsageError("levels must be increasing pressures in dbar, e.g. 0,10,20,50")
    if "row_size" not in ds or "PRES" not in ds:
        raise DataError("to_standard_levels needs a ragged Argo profile dataset (row_size, PRES)")
    bounds = np.concatenate([[0], np.cumsum(ds["row_size"].values)])
    params = [v for v in ds.data_vars if ds[v].dims == ("obs",) and v != "PRES"
              and not str(v).endswith("_QC")]
    pres = ds["PRES"].values
    out = {p: np.full((ds.sizes["profile"], target.size), np.nan) for p in params}
    for i in range(ds.sizes["profile"]):
        sl = slice(bounds[i], bounds[i + 1])
        p = pres[sl]
        order = np.argsort(p)
        p = p[order]
        for param in params:
            v = ds[param].values[sl][order]
            ok = np.isfinite(p) & np.isfinite(v)
            if ok.sum() >= 2:
                out[param][i] = np.interp(target, p[ok], v[ok], left=np.nan, right=np.nan)
    result = ds[[v for v in ds.data_vars if ds[v].dims == ("profile",) and v != "row_size"]]
    result = result.assign_coords(PRES_INTERPOLATED=("PRES_INTERPOLATED", target, {
        "units": "decibar", "standard_name": "sea_water_pressure", "axis": "Z",
        "positive": "down"}))
    for param in params:
        result[param] = (("profile", "PRES_INTERPOLATED"), out[param], ds[param].attrs)
    result.attrs = {**ds.attrs, "argo_levels": "linear interpolation in pressure per profile, "
                    "no extrapolation"}
    return result
