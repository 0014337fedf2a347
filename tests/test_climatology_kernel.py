"""The compiled climatology and anomaly kernels (oceandata/analysis/_kernels.py).

Every result is compared bit for bit with an independent one: plain xarray groupby
(``use_flox=False``) on the data cast to float64, cast back to the data's dtype (the sums
of these float32 values are exact in float64, so the order of summation cannot matter),
and CDO's ``ymonmean`` / ``ymonsub`` on the same values written as NetCDF. The cases
are those a kernel can get wrong: NaNs and all-NaN groups, chunks that span month
boundaries, a time axis that is not the first, chunks along the other axes, numpy and
dask input, groups absent from the data. Peak memory is measured the way
tests/test_memory.py does (a fresh child's peak RSS) on stores of 0.4 and 0.8 GiB.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from oceandata.analysis import climatologies
from oceandata.analysis.climatologies import anomaly, climatology

needs_cdo = pytest.mark.skipif(shutil.which("cdo") is None,
                               reason="cdo is not on PATH (apt-get install cdo)")
MiB = 2**20


def _sst(days: int = 4 * 365 + 1, shape: tuple[int, int] = (6, 7), dtype: str = "f4",
         seed: int = 0) -> xr.DataArray:
    """Daily values from 2001 with NaNs: a land point, a month-long gap, scattered NaNs."""
    rng = np.random.default_rng(seed)
    time = pd.date_range("2001-01-01", periods=days, freq="D")
    values = rng.uniform(5.0, 30.0, (days, *shape)).astype(dtype)
    values[:, 0, 0] = np.nan  # land: every group all-NaN
    values[time.month == 2, 1, 1] = np.nan  # every February missing at one point
    values[rng.random(values.shape) < 0.05] = np.nan
    return xr.DataArray(values, dims=("time", "lat", "lon"), name="sst",
                        coords={"time": time, "lat": np.arange(shape[0]) - 2.5,
                                "lon": np.arange(shape[1]) * 10.0},
                        attrs={"units": "degC"})


def _reference(da: xr.DataArray, freq: str = "month") -> xr.DataArray:
    """Plain xarray groupby mean in float64, cast back to the data's dtype."""
    with xr.set_options(use_flox=False):
        ref = da.astype("f8").groupby(f"time.{freq}").mean("time")
    return ref.astype(da.dtype)


@pytest.fixture
def no_flox(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if the flox fallback is used: these tests are about the kernels."""
    def refuse(*args, **kwargs):
        raise AssertionError("flox was used instead of the compiled kernel")

    monkeypatch.setattr(climatologies, "xarray_reduce", refuse)


LAYOUTS = {
    "numpy": lambda da: da,
    "dask, 17-day chunks": lambda da: da.chunk(time=17),  # chunks span month ends
    "dask, 40 days x 4 lat": lambda da: da.chunk(time=40, lat=4),
    "dask, one chunk": lambda da: da.chunk(),
    "time not first": lambda da: da.transpose("lat", "time", "lon").chunk(time=31, lat=5),
    "time last, numpy": lambda da: da.transpose("lat", "lon", "time"),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", ["f4", "f8"])
def test_monthly_climatology_equals_xarray_bit_for_bit(layout, dtype, no_flox):
    da = LAYOUTS[layout](_sst(dtype=dtype))
    clim = climatology(da)
    assert (clim.chunks is None) == (da.chunks is None)
    assert clim.dims == tuple("month" if d == "time" else d for d in da.dims)
    assert clim.dtype == da.dtype
    ref = _reference(da).transpose(*clim.dims)
    if dtype == "f4":  # exact float64 sums: bit for bit whatever the order of summation
        np.testing.assert_array_equal(clim.values, ref.values)
    else:  # float64 data: the sums round, and their order differs from xarray's
        np.testing.assert_allclose(clim.values, ref.values, rtol=1e-14)
        np.testing.assert_array_equal(np.isnan(clim.values), np.isnan(ref.values))
    np.testing.assert_array_equal(clim["month"].values, np.arange(1, 13))
    assert clim.isel(lat=0, lon=0).isnull().all()  # all-NaN point: NaN, like xarray
    assert clim.sel(month=2).isel(lat=1, lon=1).isnull()  # all-NaN group
    assert clim.sel(month=3).isel(lat=1, lon=1).notnull()


@pytest.mark.parametrize("layout", ["numpy", "dask, 17-day chunks", "time not first"])
def test_dayofyear_climatology_equals_xarray_bit_for_bit(layout, no_flox):
    da = LAYOUTS[layout](_sst())
    clim = climatology(da, freq="dayofyear")
    ref = _reference(da, "dayofyear").transpose(*clim.dims)
    assert clim.sizes["dayofyear"] == 366
    np.testing.assert_array_equal(clim.values, ref.values)


@pytest.mark.parametrize("freq", ["month", "dayofyear"])
@pytest.mark.parametrize("layout", ["numpy", "dask, 17-day chunks"])
def test_steps_without_a_time_belong_to_no_group(freq, layout, no_flox):
    """A missing time (NaT) is no month: its values must not land in any group
    (numba does not check indices: code -1 would be December's row)."""
    da = _sst()
    time = da["time"].values.copy()
    time[[40, 700, 1000]] = np.datetime64("NaT")
    da = LAYOUTS[layout](da.assign_coords(time=time))
    clim = climatology(da, freq=freq)
    ref = _reference(da.isel(time=~np.isnat(time)), freq).transpose(*clim.dims)
    np.testing.assert_array_equal(clim[freq].values, ref[freq].values)
    np.testing.assert_array_equal(clim.values, ref.values)


def test_absent_months_are_nan_and_baseline_is_respected(no_flox):
    da = _sst().chunk(time=10)
    clim = climatology(da.sel(time=slice("2001-01-01", "2001-03-31")))
    assert clim.sel(month=slice(4, 12)).isnull().all()
    ref = _reference(da.sel(time=slice("2002", "2002")))
    np.testing.assert_array_equal(climatology(da, baseline=(2002, 2002)).values, ref.values)


def test_climatology_stays_lazy_and_has_one_tree_per_block(no_flox):
    da = _sst().chunk(time=30, lat=3)
    clim = climatology(da)
    assert clim.chunks == ((12,), (3, 3), (7,))
    # per block of lat: 49 partial tasks (1461 days), combined 8 at a time, one mean
    graph = dict(clim.data.__dask_graph__())
    partials = [k for k in graph if isinstance(k, str) and k.startswith("_partial_sums")]
    assert len(partials) == 2 * 49


@pytest.mark.parametrize("layout", ["numpy", "dask, 17-day chunks", "time not first"])
def test_anomaly_equals_xarray_bit_for_bit(layout):
    da = LAYOUTS[layout](_sst())
    clim = climatology(da)
    anom = anomaly(da, clim)
    assert anom.dims == da.dims and anom.dtype == da.dtype
    assert (anom.chunks is None) == (da.chunks is None)
    with xr.set_options(use_flox=False):
        ref = (da.groupby("time.month") - clim.compute()).drop_vars("month")
    np.testing.assert_array_equal(anom.values, ref.transpose(*anom.dims).values)


def test_anomaly_of_mixed_dtypes_and_integers():
    da = _sst().chunk(time=45)
    clim64 = climatology(da.astype("f8")).compute()
    anom = anomaly(da, clim64)  # float32 data, float64 table: float64, like numpy
    assert anom.dtype == np.float64
    with xr.set_options(use_flox=False):
        ref = (da.groupby("time.month") - clim64).drop_vars("month")
    np.testing.assert_array_equal(anom.values, ref.values)
    counts = xr.DataArray(np.arange(24 * 3).reshape(24, 3), dims=("time", "x"),
                          coords={"time": pd.date_range("2001-01-01", periods=24,
                                                        freq="MS")})
    clim_int = climatology(counts)  # integers: the flox fallback
    np.testing.assert_allclose(clim_int.values,
                               counts.values.reshape(2, 12, 3).mean(axis=0))
    anom_int = anomaly(counts, clim_int)
    np.testing.assert_allclose(anom_int.values.reshape(2, 12, 3).sum(axis=0), 0)


def test_large_tables_fall_back_to_flox(monkeypatch):
    calls = []
    original = climatologies.xarray_reduce

    def spy(*args, **kwargs):
        calls.append(kwargs.get("method"))
        return original(*args, **kwargs)

    monkeypatch.setattr(climatologies, "xarray_reduce", spy)
    monkeypatch.setattr(climatologies, "MAX_TABLE_BYTES", 1000)
    da = _sst().chunk(time=60)
    clim = climatology(da)
    assert calls == ["map-reduce"]
    np.testing.assert_allclose(clim.values, _reference(da).values, rtol=1e-6)


# ------------------------------------------------------------------ against CDO


def _cdo(*args: str | Path) -> None:
    subprocess.run(["cdo", "-s", "-O", *map(str, args)], check=True, capture_output=True)


@needs_cdo
def test_daily_climatology_and_anomaly_equal_cdo(tmp_path):
    da = _sst(days=4 * 365 + 1, shape=(9, 11))
    src = tmp_path / "sst.nc"
    da.to_dataset().to_netcdf(src, format="NETCDF3_64BIT", unlimited_dims=["time"],
                              encoding={"sst": {"_FillValue": np.float32(1e20)}})
    _cdo("ymonmean", src, tmp_path / "clim.nc")
    _cdo("ymonsub", src, tmp_path / "clim.nc", tmp_path / "anom.nc")
    with xr.open_dataset(tmp_path / "clim.nc") as ds:
        cdo_clim = ds["sst"].load()
    with xr.open_dataset(tmp_path / "anom.nc") as ds:
        cdo_anom = ds["sst"].load()
    for data in (da, da.chunk(time=30), xr.open_dataset(src, chunks={"time": 50})["sst"]):
        clim = climatology(data)
        order = cdo_clim["time"].dt.month.values.argsort()
        np.testing.assert_array_equal(clim.values, cdo_clim.values[order])  # bit for bit
        np.testing.assert_array_equal(anomaly(data, clim).values, cdo_anom.values)


# ------------------------------------------------------------------ memory


_MEASURE = textwrap.dedent("""
    import dask, xarray as xr
    dask.config.set(scheduler="threads", num_workers=2)
    from oceandata.analysis.climatologies import anomaly, climatology
    da = xr.open_zarr(STORE)["sst"]
    clim = climatology(da).compute()
    anom = anomaly(da, clim)
    anom.to_dataset().to_zarr(OUT, mode="w", zarr_format=3, consolidated=False,
                              encoding={"sst": {"compressors": None}})
    print(float(clim.mean()))
""")


def _peak(store: Path, out: Path) -> int:
    from tests.test_memory import _WRAPPER

    code = f"STORE, OUT = {str(store)!r}, {str(out)!r}\n" + _MEASURE
    done = subprocess.run([sys.executable, "-c", _WRAPPER, code], capture_output=True,
                          text=True, check=True)
    report = json.loads(done.stdout)
    assert report["rc"] == 0, report["err"]
    shutil.rmtree(out)
    return report["peak"]


def test_climatology_and_anomaly_memory_is_bounded_by_chunks(tmp_path):
    """0.4 and 0.8 GiB stores of 8 MiB chunks: the same peak, well below the data."""
    from tests.test_memory import _write_store

    small = _write_store(tmp_path / "small.zarr", 1536, (180, 360), 32)
    large = _write_store(tmp_path / "large.zarr", 3072, (180, 360), 32)
    peak_small = _peak(small, tmp_path / "out.zarr")
    peak_large = _peak(large, tmp_path / "out.zarr")
    print(f"{peak_small / MiB:.0f} MiB (0.4 GiB), {peak_large / MiB:.0f} MiB (0.8 GiB)")
    assert peak_large < 0.75 * 3072 * 180 * 360 * 4  # below the 0.8 GiB of data
    assert peak_large < 1.2 * peak_small, (peak_small / MiB, peak_large / MiB)
