"""The .ocean accessor delegates to the analysis functions and nothing else."""

from __future__ import annotations

import pytest
import xarray as xr

import oceandata
from oceandata import analysis


@pytest.fixture(scope="module")
def sst() -> xr.DataArray:
    return oceandata.open_dataset("cobe_sst2", time=("1950", "1951"),
                                  bbox=(150, -10, -150, 10)).sst


def _same(left: xr.DataArray, right: xr.DataArray) -> None:
    """Identical, the history's timestamp aside (the two calls may straddle a second)."""
    stamps = [a.attrs.get("history", "").split(": ", 1)[-1] for a in (left, right)]
    assert stamps[0] == stamps[1]
    xr.testing.assert_identical(_no_history(left), _no_history(right))


def _no_history(array: xr.DataArray) -> xr.DataArray:
    out = array.copy()
    out.attrs.pop("history", None)
    return out


def test_accessor_gives_the_function_results(sst) -> None:
    _same(sst.ocean.climatology(), analysis.climatology(sst))
    _same(sst.ocean.anomaly(), analysis.anomaly(sst))
    _same(sst.ocean.area_mean((160, -5, -160, 5)), analysis.area_mean(sst, (160, -5, -160, 5)))
    assert sst.ocean.climatology.__doc__ == analysis.climatology.__doc__


def test_unknown_method_lists_the_valid_ones(sst) -> None:
    with pytest.raises(AttributeError, match="methods: climatology, anomaly"):
        sst.ocean.median_filter()
    assert "trend" in dir(sst.ocean)
