"""Climatology, anomalies, regional means and trends, checked against independent tools.

CDO (``cdo`` on PATH; Debian package ``cdo``) is run on the same sample NetCDF files;
scipy.stats.linregress checks the trends; synthetic 360_day data check cftime calendars.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

import oceandata
from oceandata.analysis.climatologies import anomaly, climatology
from oceandata.analysis.regions import EARTH_RADIUS, area_mean, basin_names, cell_area
from oceandata.analysis.trends import trend
from oceandata.errors import UsageError
from oceandata.sample_data import fetch

YEARS = ("1950", "1951", "1952")
needs_cdo = pytest.mark.skipif(shutil.which("cdo") is None,
                               reason="cdo is not on PATH (apt-get install cdo)")


@pytest.fixture(scope="module")
def cobe() -> xr.DataArray:
    return oceandata.open_dataset("cobe_sst2", time=(YEARS[0], YEARS[-1]))["sst"]


@pytest.fixture(scope="module")
def cobe_files() -> list[Path]:
    return [fetch(f"gridded/cobe-sst2/year{y}.nc") for y in YEARS]


def _cdo(tmp_path: Path, *args: str | Path) -> xr.Dataset:
    out = tmp_path / "cdo_out.nc"
    subprocess.run(["cdo", "-s", "-O", *map(str, args), str(out)], check=True,
                   capture_output=True)
    return xr.open_dataset(out).load()


def _raise_on_compute(*args, **kwargs):
    raise RuntimeError("computed while building a lazy result")


# ------------------------------------------------------------------ climatology, anomaly


@needs_cdo
def test_climatology_matches_cdo_ymonmean(cobe, cobe_files, tmp_path):
    ref = _cdo(tmp_path, "ymonmean", "-mergetime", *cobe_files)["sst"]
    ours = climatology(cobe).compute()
    assert ours.sizes["month"] == 12
    diff = np.abs(ours.values - ref.values)
    assert np.array_equal(np.isnan(ours.values), np.isnan(ref.values))
    assert np.nanmax(diff) < 1e-5  # float32 data; observed 3.8e-6


@needs_cdo
def test_climatology_mean_matches_cdo_timmean(cobe, cobe_files, tmp_path):
    ref = _cdo(tmp_path, "timmean", "-mergetime", *cobe_files)["sst"].squeeze("time")
    ours = climatology(cobe).mean("month").compute()
    assert np.nanmax(np.abs(ours.values - ref.values)) < 1e-5


@needs_cdo
def test_anomaly_matches_cdo_ymonsub(cobe, cobe_files, tmp_path):
    merged = tmp_path / "merged.nc"
    subprocess.run(["cdo", "-s", "-O", "mergetime", *map(str, cobe_files), str(merged)],
                   check=True)
    ref = _cdo(tmp_path, "ymonsub", merged, "-ymonmean", merged)
    ours = anomaly(cobe).compute()
    assert np.nanmax(np.abs(ours.values - ref["sst"].values)) < 1e-5
    assert ours.attrs["units"] == "degC"
    assert "anomaly" in ours.attrs["history"]


def test_climatology_attrs_and_baseline(cobe):
    clim = climatology(cobe, baseline=("1951", "1951"))
    assert clim.attrs["cell_methods"].endswith("time: mean within years time: mean over years")
    assert clim.attrs["units"] == "degC"
    assert "climatology" in clim.attrs["history"].splitlines()[-1]
    one_year = cobe.sel(time="1951").values
    np.testing.assert_allclose(clim.values, one_year, rtol=1e-6)
    with pytest.raises(UsageError):
        climatology(cobe, freq="season")
    with pytest.raises(UsageError):
        climatology(cobe, baseline=("1952", "1950"))


def test_climatology_360_day_calendar():
    time = xr.date_range("2000-01-01", periods=360 * 3, freq="D", calendar="360_day",
                         use_cftime=True)
    rng = np.random.default_rng(0)
    values = rng.normal(size=(time.size, 2))
    da = xr.DataArray(values, dims=("time", "x"), coords={"time": time},
                      attrs={"units": "K"}).chunk({"time": 90})
    monthly = climatology(da).compute()
    expected = values.reshape(3, 12, 30, 2).mean(axis=(0, 2))
    np.testing.assert_allclose(monthly.values, expected)
    daily = climatology(da, freq="dayofyear").compute()
    assert daily.sizes["dayofyear"] == 360
    np.testing.assert_allclose(daily.values, values.reshape(3, 360, 2).mean(axis=0))
    anom = anomaly(da, daily, freq="dayofyear").compute()
    np.testing.assert_allclose(anom.values.reshape(3, 360, 2).sum(axis=0), 0, atol=1e-12)


def test_dayofyear_climatology_on_oisst_site_series():
    sst = oceandata.open_dataset(fetch("series/oisst_Med.nc"))["sst"]
    sst = sst.sel(time=slice("1990", "1999"))
    clim = climatology(sst, freq="dayofyear").compute()
    frame = sst.to_series()
    expected = frame.groupby(frame.index.day_of_year).mean()
    np.testing.assert_allclose(clim.values, expected.values)
    smooth = climatology(sst, freq="dayofyear", smooth=31).compute()
    # circular running mean: day 1 averages the last 15 and first 16 days of the year
    ring = np.concatenate([expected.values[-15:], expected.values[:16]])
    np.testing.assert_allclose(smooth.values[0], ring.mean())
    assert abs(float(smooth.mean()) - float(clim.mean())) < 1e-9
    with pytest.raises(UsageError):
        climatology(sst, freq="dayofyear", smooth=30)


# ------------------------------------------------------------------ areas and region means


def test_cell_area_sums_to_sphere(cobe):
    area = cell_area(cobe)
    total = 4 * np.pi * EARTH_RADIUS**2
    assert abs(float(area.sum()) / total - 1) < 1e-6
    assert area.attrs["units"] == "m2"


def test_curvilinear_area_approximation():
    ds = xr.open_dataset(fetch("gridded/tos_ocean_bipolar_grid.nc"))
    total = float(cell_area(ds["tos"]).sum())
    assert abs(total / (4 * np.pi * EARTH_RADIUS**2) - 1) < 0.01


def test_cell_measures_are_used(cobe):
    area = xr.full_like(cobe.isel(time=0, drop=True), 1.0).rename("areacello").load()
    da = cobe.isel(time=0).assign_coords(areacello=area)
    da.attrs["cell_measures"] = "area: areacello"
    assert float(cell_area(da).sum()) == area.size


@needs_cdo
def test_area_mean_matches_cdo_fldmean(cobe, cobe_files, tmp_path):
    ref = _cdo(tmp_path, "fldmean", "-mergetime", *cobe_files)["sst"].values.ravel()
    ours = area_mean(cobe).compute()
    assert ours.attrs["cell_methods"] == "area: mean"
    # CDO computes its own cell areas (observed max difference 2.2e-4 degC)
    assert np.max(np.abs(ours.values - ref)) < 1e-3


@needs_cdo
def test_bbox_mean_across_dateline_matches_cdo(cobe, cobe_files, tmp_path):
    box = (170, -5, -120, 5)  # Nino-3.4-like box across the antimeridian
    ref = _cdo(tmp_path, "fldmean", "-sellonlatbox,170,240,-5,5", "-mergetime",
               *cobe_files)["sst"].values.ravel()
    ours = area_mean(cobe, box).compute()
    assert np.max(np.abs(ours.values - ref)) < 1e-5  # observed 1.0e-6


def test_polygon_region_matches_bbox(cobe):
    shapely = pytest.importorskip("shapely", reason="shapely is not installed")
    data = cobe.isel(time=slice(0, 3))
    expected = area_mean(data, (170, -5, -120, 5)).compute()
    for west, east in [(169.9, 240.1), (169.9, -119.9)]:  # 0..360 and across +-180
        if east < west:
            parts = [shapely.box(west, -5.1, 180, 5.1), shapely.box(-180, -5.1, east, 5.1)]
            polygon = shapely.union_all(parts)
        else:
            polygon = shapely.box(west, -5.1, east, 5.1)
        got = area_mean(data, polygon).compute()
        np.testing.assert_allclose(got.values, expected.values, rtol=1e-12)


def test_basin_mean(cobe):
    basins = oceandata.open_dataset("basin_mask")
    assert basin_names(basins)["Pacific Ocean"] == 2
    pacific = area_mean(cobe.isel(time=slice(0, 2)), "pacific ocean", basins=basins).compute()
    whole = area_mean(cobe.isel(time=slice(0, 2))).compute()
    assert np.all(pacific.values > whole.values)  # the Pacific is warmer than the global mean
    with pytest.raises(UsageError, match="basins="):
        area_mean(cobe, "Pacific Ocean")
    with pytest.raises(UsageError, match="no basin"):
        area_mean(cobe, "Pacifc", basins=basins)


def test_area_mean_skips_missing_data():
    lat = xr.DataArray([-45.0, 45.0], dims="lat", attrs={"standard_name": "latitude"})
    lon = xr.DataArray([90.0, 270.0], dims="lon", attrs={"standard_name": "longitude"})
    da = xr.DataArray([[1.0, np.nan], [3.0, np.nan]], dims=("lat", "lon"),
                      coords={"lat": lat, "lon": lon})
    assert float(area_mean(da)) == pytest.approx(2.0)


# ------------------------------------------------------------------ trends


def test_trend_matches_linregress(cobe):
    result = trend(cobe).compute()
    assert result.slope.attrs["units"] == "degC year-1"
    days = (cobe.time.to_index() - cobe.time.to_index()[0]) / pd.Timedelta(days=1)
    years = np.asarray(days) / 365.25
    for j, i in [(90, 180), (60, 330), (120, 330)]:
        y = cobe.isel(lat=j, lon=i).values.astype(np.float64)
        y[[3, 7]] = np.nan  # NaN-aware: compare with linregress on the valid steps
        ok = np.isfinite(y)
        ref = stats.linregress(years[ok], y[ok])
        got = trend(cobe.isel(lat=[j], lon=[i]).copy(data=y[:, None, None])).compute()
        np.testing.assert_allclose(got.slope.item(), ref.slope, rtol=1e-9)
        np.testing.assert_allclose(got.stderr.item(), ref.stderr, rtol=1e-9)
        np.testing.assert_allclose(got.pvalue.item(), ref.pvalue, rtol=1e-7)
        np.testing.assert_allclose(got.intercept.item(), ref.intercept, rtol=1e-9)
        assert got.n.item() == ok.sum()
    assert np.isnan(result.slope.isel(lat=120, lon=20))  # land (South Africa): all NaN
    assert result.n.isel(lat=120, lon=20) == 0


def test_trend_360_day_units_per_year():
    time = xr.date_range("2000-01-01", periods=120, freq="MS", calendar="360_day",
                         use_cftime=True)
    da = xr.DataArray(0.5 * np.arange(120) / 12.0 + 3.0, dims="time", coords={"time": time},
                      attrs={"units": "K"})
    result = trend(da)
    assert float(result.slope) == pytest.approx(0.5)
    assert float(result.intercept) == pytest.approx(3.0)


def test_theilsen_matches_scipy(cobe):
    point = cobe.isel(lat=[90], lon=[180])
    y = point.values[:, 0, 0].astype(np.float64)
    x = np.asarray((cobe.time.to_index() - cobe.time.to_index()[0]) / pd.Timedelta(days=1))
    x = x / 365.25
    got = trend(point, method="theilsen").compute()
    ref = stats.theilslopes(y, x)
    assert got.slope.item() == pytest.approx(ref.slope)
    assert got.intercept.item() == pytest.approx(ref.intercept)
    assert got.pvalue.item() == pytest.approx(stats.kendalltau(x, y).pvalue)
    assert "Mann-Kendall" in got.pvalue.attrs["long_name"]
    with pytest.raises(UsageError):
        trend(point, method="lad")


# ------------------------------------------------------------------ laziness


def test_results_are_built_lazily(cobe):
    with dask.config.set(scheduler=_raise_on_compute):
        clim = climatology(cobe, baseline=("1950", "1951"))
    # anomaly computes (persists) only the small climatology, so that the anomaly then
    # streams chunk by chunk (docs/analysis.md, "Memory"); the anomaly itself stays lazy
    computed = []

    def record(dsk, keys, **kwargs):
        computed.append(keys)
        return dask.get(dsk, keys, **kwargs)

    with dask.config.set(scheduler=record):
        anom = anomaly(cobe, clim)
    assert len(computed) == 1
    assert {key[0] for key in dask.core.flatten(computed[0])} == {clim.data.name}
    in_memory, persisted = clim.compute(), clim.persist()
    with dask.config.set(scheduler=_raise_on_compute):
        for given in (in_memory, persisted):  # nothing left to compute first
            assert anomaly(cobe, given).chunks is not None
        mean = area_mean(anom, (170, -5, -120, 5))
        slopes = trend(anom)
        robust = trend(anom.isel(lat=slice(0, 4), lon=slice(0, 4)), method="theilsen")
        daily = climatology(cobe, freq="dayofyear", smooth=3)
        for result in (clim, anom, mean, daily, *slopes.data_vars.values(),
                       *robust.data_vars.values()):
            assert result.chunks is not None
        with pytest.raises(RuntimeError, match="computed while building"):
            mean.compute()
