"""The ``.ocean`` accessor: ``da.ocean.climatology()``, ``ds.ocean.ocean_heat_content()``.

Each method calls the function of the same name in :mod:`oceandata.analysis` with the
object as its first argument; the functions hold the logic and the documentation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import xarray as xr

_DATAARRAY = ("climatology", "anomaly", "area_mean", "region_mask", "cell_area", "trend",
              "eofs", "nino34", "regrid", "to_depths", "sigma0", "mixed_layer_depth",
              "marine_heatwaves")
_DATASET = ("ocean_heat_content", "regrid", "to_depths")


class _Accessor:
    _methods: tuple[str, ...] = ()

    def __init__(self, obj: xr.DataArray | xr.Dataset) -> None:
        self._obj = obj

    def __dir__(self) -> list[str]:
        return sorted(self._methods)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in self._methods:
            raise AttributeError(f".ocean has no method {name!r}; methods: "
                                 f"{', '.join(self._methods)}")
        from .. import analysis

        function = getattr(analysis, name)

        def method(*args: Any, **kwargs: Any) -> Any:
            return function(self._obj, *args, **kwargs)

        method.__doc__ = function.__doc__
        method.__name__ = name
        return method


@xr.register_dataarray_accessor("ocean")
class OceanDataArrayAccessor(_Accessor):
    """``da.ocean.<function>(...)`` for the functions of :mod:`oceandata.analysis`."""

    _methods = _DATAARRAY


@xr.register_dataset_accessor("ocean")
class OceanDatasetAccessor(_Accessor):
    """``ds.ocean.<function>(...)`` for the dataset-level functions."""

    _methods = _DATASET
