"""EOFs and Niño 3.4, gridded TEOS-10, and regridding (oceandata.analysis)."""

from __future__ import annotations

from pathlib import Path

import gsw
import numpy as np
import pytest
import xarray as xr

import oceandata
from oceandata.analysis.eof import eofs, nino34
from oceandata.analysis.ocean import (
    CP0,
    RHO0,
    absolute_salinity,
    conservative_temperature,
    density,
    depth_in_metres,
    mixed_layer_depth,
    n_squared,
    ocean_heat_content,
    sigma0,
)
from oceandata.analysis.regridding import regrid, to_depths

pytest.importorskip("eofs")
pytest.importorskip("xarray_regrid")

LAT = {"standard_name": "latitude", "units": "degrees_north"}
LON = {"standard_name": "longitude", "units": "degrees_east"}


def _grid(step: float, offset: float = 0.0) -> xr.Dataset:
    half = step / 2
    return xr.Dataset(coords={
        "lat": ("lat", np.arange(-90 + half, 90, step) + offset, LAT),
        "lon": ("lon", np.arange(half, 360, step) + offset, LON)})


# --------------------------------------------------------------------------- EOF and ENSO


@pytest.fixture(scope="module")
def cobe() -> xr.Dataset:
    return oceandata.open_dataset("cobe_sst2", time=("1970", "2009"))


@pytest.fixture(scope="module")
def index(cobe: xr.Dataset) -> xr.DataArray:
    return nino34(cobe.sst).compute()


def test_nino34_matches_independent_computation(cobe: xr.Dataset, index: xr.DataArray) -> None:
    box = cobe.sst.sel(lat=slice(5, -5), lon=slice(190, 240))
    mean = box.weighted(np.cos(np.deg2rad(box.lat))).mean(("lat", "lon")).compute()
    expected = mean.groupby("time.month") - mean.groupby("time.month").mean("time")
    np.testing.assert_allclose(index.values, expected.values, atol=1e-5)
    assert index.attrs["units"] == "degC"
    assert "nino34" in index.attrs["history"].splitlines()[0]


def test_nino34_known_events(index: xr.DataArray) -> None:
    assert index.sel(time="1997-12").item() > 2.0
    assert index.sel(time="1982-12").item() > 2.0
    assert index.sel(time="1988-12").item() < -1.0


def test_nino34_lazy_baseline_and_smoothing(cobe: xr.Dataset, index: xr.DataArray) -> None:
    lazy = nino34(cobe.sst, baseline=("1971", "2000"), smooth=True)
    assert lazy.chunks is not None
    values = lazy.compute()
    assert np.isnan(values[:2]).all() and np.isnan(values[-2:]).all()
    assert values.sel(time="1997-12").item() > 2.0
    raw = nino34(cobe.sst, baseline=("1971", "2000")).compute()
    np.testing.assert_allclose(values[2:-2], raw.rolling(time=5, center=True).mean()[2:-2])


def test_eof1_of_tropical_pacific_is_nino34(cobe: xr.Dataset, index: xr.DataArray) -> None:
    pacific = oceandata.subset(cobe, bbox=(120, -20, -80, 20)).sst
    pacific = pacific.coarsen(lat=2, lon=2, boundary="trim").mean()
    anomalies = pacific.groupby("time.month") - pacific.groupby("time.month").mean("time")
    # eofs needs the same missing points at every time: drop cells ever missing
    anomalies = anomalies.where(anomalies.notnull().all("time"))
    result = eofs(anomalies, 2)
    assert set(result) == {"eofs", "pcs", "variance_fraction"}
    assert result["eofs"].dims == ("mode", "lat", "lon")
    assert result["pcs"].dims == ("time", "mode")
    r = np.corrcoef(result["pcs"].sel(mode=1), index)[0, 1]
    assert abs(r) > 0.9
    assert "eofs(n=2" in result.attrs["history"].splitlines()[0]


def test_eofs_package_example_enso_mode() -> None:
    sst = oceandata.open_dataset("sst_ndjfm_anom").sst
    result = eofs(sst, 3)
    fraction = result["variance_fraction"].values
    assert fraction[0] == fraction.max() and fraction[0] > 2 * fraction[1]
    # the eofs package's own solution, computed directly
    from eofs.xarray import Eof

    coslat = np.cos(np.deg2rad(sst.latitude.values)).clip(0, 1)
    solver = Eof(sst.compute(), weights=np.sqrt(coslat)[:, np.newaxis])
    np.testing.assert_allclose(fraction, solver.varianceFraction(neigs=3).values)
    # ENSO-like, whatever the sign: the largest loading sits on the central/eastern
    # equatorial Pacific
    pattern = abs(result["eofs"].sel(mode=1))
    where = pattern.where(pattern == pattern.max(), drop=True)
    assert abs(float(where.latitude[0])) <= 10
    assert 180 <= float(where.longitude[0]) <= 280


def test_eofs_rejects_bad_n() -> None:
    sst = oceandata.open_dataset("sst_ndjfm_anom").sst
    with pytest.raises(oceandata.OceandataError):
        eofs(sst, 0)


# --------------------------------------------------------------------------- TEOS-10


@pytest.fixture(scope="module")
def check_values() -> dict[str, np.ndarray]:
    path = Path(gsw.__file__).parent / "tests" / "gsw_cv_v3_0.npz"
    if not path.exists():
        pytest.skip("gsw check values not shipped with this gsw")
    return dict(np.load(path))


@pytest.fixture(scope="module")
def cast(check_values: dict[str, np.ndarray]) -> xr.Dataset:
    cv = check_values
    chunks = {"level": 15, "cast": 1}
    return xr.Dataset(
        {"SP": (("level", "cast"), cv["SP_chck_cast"], {"units": "1"}),
         "t": (("level", "cast"), cv["t_chck_cast"], {"units": "degC"}),
         "p": (("level", "cast"), cv["p_chck_cast"], {"units": "dbar"})},
        coords={"lat": ("cast", cv["lat_chck_cast"], LAT),
                "lon": ("cast", cv["long_chck_cast"], LON)}).chunk(chunks)


def test_teos10_gridded_plumbing(cast: xr.Dataset, check_values: dict[str, np.ndarray]) -> None:
    cv = check_values
    assert len(cast.SP.chunks[0]) == 3
    sa = absolute_salinity(cast.SP, pressure=cast.p)
    ct = conservative_temperature(sa, cast.t, pressure=cast.p)
    rho = density(sa, ct, pressure=cast.p)
    sig = sigma0(sa, ct)
    for out in (sa, ct, rho, sig):
        assert out.chunks is not None  # lazy
        assert "history" in out.attrs
    direct_sa = gsw.SA_from_SP(cv["SP_chck_cast"], cv["p_chck_cast"], cv["long_chck_cast"],
                               cv["lat_chck_cast"])
    direct_ct = gsw.CT_from_t(direct_sa, cv["t_chck_cast"], cv["p_chck_cast"])
    np.testing.assert_allclose(sa.values, direct_sa, equal_nan=True)
    np.testing.assert_allclose(ct.values, direct_ct, equal_nan=True)
    np.testing.assert_allclose(rho.values, gsw.rho(direct_sa, direct_ct, cv["p_chck_cast"]),
                               equal_nan=True)
    np.testing.assert_allclose(sig.values, gsw.sigma0(direct_sa, direct_ct), equal_nan=True)
    # and the published check values, within gsw's own tolerances
    np.testing.assert_allclose(sa.values, cv["SA_from_SP"], atol=1.3e-10, equal_nan=True)
    np.testing.assert_allclose(ct.values, cv["CT_from_t"], atol=6e-10, equal_nan=True)
    np.testing.assert_allclose(sig.values, cv["sigma0"], atol=2.1e-8, equal_nan=True)
    assert sa.attrs["units"] == "g kg-1"
    assert sa.attrs["standard_name"] == "sea_water_absolute_salinity"
    assert ct.attrs["units"] == "degC"
    assert rho.attrs["units"] == sig.attrs["units"] == "kg m-3"


def test_n_squared_matches_gsw(cast: xr.Dataset, check_values: dict[str, np.ndarray]) -> None:
    cv = check_values
    sa = absolute_salinity(cast.SP, pressure=cast.p)
    ct = conservative_temperature(sa, cast.t, pressure=cast.p)
    z = cast.assign_coords(level=("level", np.arange(45.0), {"units": "m", "positive": "down"}))
    n2 = n_squared(sa.assign_coords(level=z.level), ct.assign_coords(level=z.level),
                   pressure=cast.p)
    assert n2.dims == ("cast", "level_mid") and n2.sizes["level_mid"] == 44
    assert n2.attrs["units"] == "s-2"
    for i in range(3):
        direct_sa = gsw.SA_from_SP(cv["SP_chck_cast"][:, i], cv["p_chck_cast"][:, i],
                                   cv["long_chck_cast"][i], cv["lat_chck_cast"][i])
        direct_ct = gsw.CT_from_t(direct_sa, cv["t_chck_cast"][:, i], cv["p_chck_cast"][:, i])
        expected, _ = gsw.Nsquared(direct_sa, direct_ct, cv["p_chck_cast"][:, i],
                                   cv["lat_chck_cast"][i])
        np.testing.assert_allclose(n2.isel(cast=i).values, expected, equal_nan=True)


def test_phc2_teos10_and_pressure_from_centimetres() -> None:
    phc = oceandata.open_dataset("phc2_ts_zonal").isel(basins=0)
    z = depth_in_metres(phc.z_t)
    assert z.attrs["units"] == "m" and 4.9 < float(z[0]) < 5.1  # z_t is in cm
    sa = absolute_salinity(phc.SALT.assign_attrs(units="1"), lon=200.0)
    ct = conservative_temperature(sa, phc.TEMP, potential=True)
    sig = sigma0(sa, ct)
    assert sig.chunks is not None
    values = sig.compute()
    assert 20 < float(values.min()) and float(values.max()) < 29
    mld = mixed_layer_depth(sig.chunk({"z_t": 10}))
    assert mld.attrs["units"] == "m" and "z_t" not in mld.dims
    mld = mld.compute()
    assert 10 < float(mld.median()) < 500


def test_mixed_layer_depth_synthetic_column() -> None:
    depth = xr.DataArray([0.0, 10.0, 20.0, 30.0, 40.0], dims="z",
                         attrs={"units": "m", "positive": "down"})
    sig = xr.DataArray([[25.0, 25.0, 25.01, 25.05, 25.2]], dims=("x", "z"),
                       coords={"z": depth}, attrs={"units": "kg m-3"}).chunk({"x": 1})
    mld = mixed_layer_depth(sig).compute()
    # excess 0.01 at 20 m, 0.05 at 30 m: threshold 0.03 reached half-way
    np.testing.assert_allclose(mld.values, [25.0])


def test_ocean_heat_content_synthetic_three_layers() -> None:
    z = xr.DataArray([5.0, 20.0, 50.0], dims="depth",
                     attrs={"units": "m", "positive": "down", "bounds": "depth_bnds"})
    ds = xr.Dataset(
        {"CT": (("depth", "x"), [[20.0, 10.0], [15.0, np.nan], [10.0, np.nan]],
                {"units": "degC"}),
         "depth_bnds": (("depth", "nv"), [[0.0, 10.0], [10.0, 30.0], [30.0, 70.0]])},
        coords={"depth": z}).chunk({"x": 1})
    ohc = ocean_heat_content(ds, depth_range=(0, 50))
    assert ohc.chunks is not None and ohc.attrs["units"] == "J m-2"
    expected = RHO0 * CP0 * np.array([20 * 10 + 15 * 20 + 10 * 20, 10 * 10])
    np.testing.assert_allclose(ohc.values, expected)
    # without bounds: mid-points 0 | 12.5 | 35 | 65
    no_bounds = ds.drop_vars("depth_bnds")
    no_bounds["depth"].attrs.pop("bounds")
    ohc = ocean_heat_content(no_bounds, depth_range=(0, 700))
    expected = RHO0 * CP0 * np.array([20 * 12.5 + 15 * 22.5 + 10 * 30, 10 * 12.5])
    np.testing.assert_allclose(ohc.values, expected)


# --------------------------------------------------------------------------- regridding


def test_conservative_regrid_keeps_global_mean() -> None:
    sst = oceandata.open_dataset("cobe_sst2", time=("2000-01", "2000-02")).sst
    sst = sst.astype(np.float64)
    target = _grid(2.0)
    out = regrid(sst, target, "conservative")
    assert out.chunks is not None and out.attrs["units"] == "degC"
    assert "regrid" in out.attrs["history"].splitlines()[0]
    w1 = np.cos(np.deg2rad(sst.lat.astype(np.float64)))  # COBE's axes are float32
    w2 = np.cos(np.deg2rad(out.lat.astype(np.float64)))
    # with land filled by zero the mean over the whole sphere is conserved exactly
    full = sst.fillna(0.0)
    np.testing.assert_allclose(regrid(full, target, "conservative").weighted(w2).mean(
        ("lat", "lon")).values, full.weighted(w1).mean(("lat", "lon")).values, rtol=1e-6)
    # with land missing, weight the coarse cells by their ocean fraction
    fraction = regrid(sst.notnull().astype(np.float64), target, "conservative")
    ocean_mean = (out * fraction).fillna(0).weighted(w2).sum(("lat", "lon")) / (
        fraction.weighted(w2).sum(("lat", "lon")))
    np.testing.assert_allclose(ocean_mean.values, sst.weighted(w1).mean(("lat", "lon")).values,
                               rtol=1e-6)


def test_bilinear_regrid_of_analytic_field() -> None:
    source = _grid(1.0)
    field = (np.cos(np.deg2rad(source.lat)) * np.sin(np.deg2rad(source.lon))).chunk({"lat": 60})
    target = xr.Dataset(coords={"lat": ("lat", np.arange(-80.25, 80, 2.5), LAT),
                                "lon": ("lon", np.arange(1.3, 359, 2.5), LON)})
    out = regrid(field.rename("f"), target, "bilinear").compute()
    exact = np.cos(np.deg2rad(out.lat)) * np.sin(np.deg2rad(out.lon))
    # linear interpolation error <= h**2/8 * max|f''| per direction, h = 1 degree in radians
    bound = 2 * np.deg2rad(1.0) ** 2 / 8
    assert float(abs(out - exact).max()) <= bound


def test_curvilinear_nearest_regrid() -> None:
    tos = oceandata.open_dataset("tos_bipolar")
    analytic = np.cos(np.deg2rad(tos.lat)) * np.cos(np.deg2rad(tos.lon))
    field = tos.tos.copy(data=np.broadcast_to(analytic.values, tos.tos.shape).copy()).chunk()
    lazy = regrid(field, _grid(2.0), "nearest")
    assert lazy.chunks is not None and lazy.attrs["units"] == "K"
    out = lazy.compute()
    exact = np.cos(np.deg2rad(out.lat)) * np.cos(np.deg2rad(out.lon))
    error = abs(out - exact).isel(time=0)
    assert error.notnull().sum() > 0.9 * error.size
    # f is the x component of the unit vector, so |f(a) - f(b)| <= the chord <= the
    # great-circle distance, which is at most max_distance (two 2-degree target cells)
    assert float(error.max()) <= np.deg2rad(4.0)
    with pytest.raises(oceandata.OceandataError):
        regrid(field, _grid(2.0), "conservative")


def test_to_depths_linear_and_units() -> None:
    foam = oceandata.open_dataset("foam_ocean")
    levels = depth_in_metres(foam.lev)
    out = to_depths(foam.V, [10.0, 40.0, 20000.0])
    assert out.lev.attrs["units"] == "m" and out.lev.attrs["positive"] == "down"
    assert out.chunks is not None and "to_depths" in out.attrs["history"].splitlines()[0]
    values = out.compute()
    # 10 m is a level (lev = -10 m); 40 m is 3/4 of the way from 30 m to 50 m (lev -51)
    i10 = int(np.argmin(abs(levels.values - 10)))
    i30 = int(np.argmin(abs(levels.values - 30)))
    i51 = int(np.argmin(abs(levels.values - 51)))
    # water columns at least 51 m deep (land and shallow shelves are NaN in FOAM)
    wet = foam.V.isel(lev=[i10, i30, i51]).notnull().all("lev").compute()
    assert int(wet.sum()) > 1000
    np.testing.assert_allclose(values.sel(lev=10.0).where(wet), foam.V.isel(lev=i10).where(wet))
    frac = (40 - 30) / (51 - 30)
    expected = (1 - frac) * foam.V.isel(lev=i30) + frac * foam.V.isel(lev=i51)
    np.testing.assert_allclose(values.sel(lev=40.0).where(wet), expected.where(wet),
                               rtol=1e-5, atol=1e-8)
    assert values.sel(lev=20000.0).isnull().all()
    synthetic = xr.DataArray([0.0, 1.0, 3.0], dims="z",
                             coords={"z": ("z", [0.0, 1000.0, 3000.0],
                                           {"units": "cm", "positive": "down"})})
    np.testing.assert_allclose(to_depths(synthetic, [5.0, 20.0]).values, [0.5, 2.0])


def test_ocean_heat_content_phc2_centimetre_axis() -> None:
    phc = oceandata.open_dataset("phc2_ts_zonal").isel(basins=0, time=0)
    sa = absolute_salinity(phc.SALT.assign_attrs(units="1"), lon=200.0)
    ct = conservative_temperature(sa, phc.TEMP, potential=True)
    ohc = ocean_heat_content(ct.to_dataset(), (0, 700))
    assert ohc.chunks is not None and ohc.dims == ("lat_t",)
    equator = float(ohc.sel(lat_t=0, method="nearest").compute())
    assert 5.0 < equator / (RHO0 * CP0 * 700) < 20.0  # mean CT of the upper 700 m, degC
    # a uniform 1 degC column: the clipped layers add up to exactly 700 m (z_t is in cm)
    ones = (ct * 0 + 1).sel(lat_t=0, method="nearest").rename("CT").to_dataset()
    np.testing.assert_allclose(float(ocean_heat_content(ones, (0, 700)).compute()),
                               RHO0 * CP0 * 700)
