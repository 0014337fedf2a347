"""Gridded ocean analysis: pure functions on xarray objects.

They open no file, start no cluster and never load a whole dataset; results keep CF
attributes and record what was computed in ``history``. The same functions are reachable
through the ``.ocean`` accessor (``da.ocean.climatology()``), registered by
``import oceandata``. Names are imported on first use.

- :mod:`.climatologies`: ``climatology``, ``anomaly`` (grouped through flox)
- :mod:`.regions`: ``cell_area``, ``region_mask``, ``area_mean``, ``basin_names``
- :mod:`.trends`: ``trend`` (OLS or Theil-Sen/Mann-Kendall)
- :mod:`.eof`: ``eofs``, ``nino34``
- :mod:`.ocean`: gridded TEOS-10 (``absolute_salinity``, ``conservative_temperature``,
  ``density``, ``sigma0``, ``n_squared``, ``mixed_layer_depth``, ``ocean_heat_content``)
- :mod:`.regridding`: ``regrid``, ``to_depths``
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "climatology": "climatologies", "anomaly": "climatologies",
    "cell_area": "regions", "region_mask": "regions", "area_mean": "regions",
    "basin_names": "regions",
    "trend": "trends",
    "eofs": "eof", "nino34": "eof",
    "absolute_salinity": "ocean", "conservative_temperature": "ocean", "density": "ocean",
    "sigma0": "ocean", "n_squared": "ocean", "mixed_layer_depth": "ocean",
    "ocean_heat_content": "ocean",
    "regrid": "regridding", "to_depths": "regridding",
    "marine_heatwaves": "mhw", "mhw_annual_summary": "mhw",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
