"""Helpers shared by the in-situ tests (imported by name: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import numpy as np
import xarray as xr


def argo_ragged(path, n_prof: int | None = None, *,
                coords: tuple[str, str] = ("LATITUDE", "LONGITUDE")) -> xr.Dataset:
    """A contiguous ragged array (profile/obs, row_size) of the adjusted PRES/TEMP/PSAL of a
    real Argo file, levels with any of them missing dropped (built here, not by the Argo
    reader, so the in-situ tests do not depend on it). PRES is the Z axis."""
    raw = xr.open_dataset(path)
    names = {"PRES": "PRES_ADJUSTED", "TEMP": "TEMP_ADJUSTED", "PSAL": "PSAL_ADJUSTED"}
    values = {k: raw[v].values[:n_prof] for k, v in names.items()}
    keep = np.logical_and.reduce([np.isfinite(v) for v in values.values()])
    ds = xr.Dataset(
        {k: ("obs", values[k][keep], {a: raw[names[k]].attrs[a] for a in
                                      ("standard_name", "units", "long_name")})
         for k in names},
        coords={coords[0]: ("profile", raw["LATITUDE"].values[:n_prof]),
                coords[1]: ("profile", raw["LONGITUDE"].values[:n_prof])})
    ds["row_size"] = ("profile", keep.sum(axis=1).astype("i4"), {"sample_dimension": "obs"})
    ds["PRES"].attrs["axis"] = "Z"
    return ds
