"""TEOS-10 (gsw) and mixed-layer depth of oceandata.insitu.seawater, against gsw's check
values, direct gsw calls and independent computations on real Argo profiles."""

from __future__ import annotations

import itertools
from pathlib import Path

import dask
import gsw
import numpy as np
import pytest
import xarray as xr
from insitu_helpers import argo_ragged

from oceandata.errors import DataError, UsageError
from oceandata.insitu.seawater import mixed_layer_depth, teos10

CHECK_VALUES = Path(gsw.__file__).parent / "tests" / "gsw_cv_v3_0.npz"


@pytest.fixture(scope="module")
def argo(argo_path):
    return argo_ragged(argo_path)


@pytest.fixture(scope="module")
def cv():
    if not CHECK_VALUES.exists():
        pytest.skip(f"gsw check values not installed ({CHECK_VALUES})")
    return dict(np.load(CHECK_VALUES))


def no_compute(dsk, keys, **kwargs):
    raise AssertionError("dask graph was computed")


# --------------------------------------------------------------------------- TEOS-10


def test_teos10_matches_gsw_check_values_padded(cv):
    """gsw's check cast (45 levels x 3 casts): SA_from_SP, CT_from_t, sigma0 within the
    tolerances gsw ships (SA_from_SP_ca, CT_from_t_ca, sigma0_ca)."""
    dims = ("level", "cast")
    ds = xr.Dataset({"p": (dims, cv["p_chck_cast"], {"units": "dbar"}),
                     "t": (dims, cv["t_chck_cast"], {"units": "degC"}),
                     "SP": (dims, cv["SP_chck_cast"]),
                     "lat": ("cast", cv["lat_chck_cast"]),
                     "lon": ("cast", cv["long_chck_cast"])})
    out = teos10(ds, pressure="p", temperature="t", salinity="SP").transpose(*dims)
    for name, check in (("SA", "SA_from_SP"), ("CT", "CT_from_t"), ("sigma0", "sigma0")):
        expected = cv[check]
        assert np.array_equal(np.isnan(out[name].values), np.isnan(expected)), name
        assert np.nanmax(np.abs(out[name].values - expected)) < cv[f"{check}_ca"], name


def test_teos10_matches_gsw_check_values_ragged(cv):
    """The same casts as a ragged array: each cast's position is repeated over its levels."""
    sp, t, p = cv["SP_chck_cast"].T, cv["t_chck_cast"].T, cv["p_chck_cast"].T
    keep = np.isfinite(sp) & np.isfinite(t) & np.isfinite(p)
    ds = xr.Dataset({"PRES": ("obs", p[keep]), "TEMP": ("obs", t[keep]),
                     "PSAL": ("obs", sp[keep]),
                     "row_size": ("profile", keep.sum(axis=1), {"sample_dimension": "obs"}),
                     "latitude": ("profile", cv["lat_chck_cast"]),
                     "longitude": ("profile", cv["long_chck_cast"])})
    out = teos10(ds)
    for name, check in (("SA", "SA_from_SP"), ("CT", "CT_from_t"), ("sigma0", "sigma0")):
        expected = cv[check].T[keep]
        assert np.max(np.abs(out[name].values - expected)) < cv[f"{check}_ca"], name


def test_teos10_on_real_argo_equals_direct_gsw_calls(argo):
    out = teos10(argo)
    bounds = np.concatenate([[0], np.cumsum(argo["row_size"].values)])
    p, t, sp = (argo[v].values for v in ("PRES", "TEMP", "PSAL"))
    for i in range(argo.sizes["profile"]):
        s = slice(bounds[i], bounds[i + 1])
        lat, lon = float(argo["LATITUDE"][i]), float(argo["LONGITUDE"][i])
        sa = gsw.SA_from_SP(sp[s], p[s], lon, lat)
        ct = gsw.CT_from_t(sa, t[s], p[s])
        np.testing.assert_allclose(out["SA"].values[s], sa, rtol=0, atol=1e-12)
        np.testing.assert_allclose(out["CT"].values[s], ct, rtol=0, atol=1e-12)
        np.testing.assert_allclose(out["sigma0"].values[s], gsw.sigma0(sa, ct), rtol=0,
                                   atol=1e-12)
    # South China Sea: surface sigma0 about 20-23, deep about 27.6
    assert 19 < float(out["sigma0"].min()) < 24 and 27 < float(out["sigma0"].max()) < 28


def test_teos10_attributes(argo):
    out = teos10(argo)
    assert out["SA"].attrs["standard_name"] == "sea_water_absolute_salinity"
    assert out["SA"].attrs["units"] == "g kg-1"
    assert out["CT"].attrs["standard_name"] == "sea_water_conservative_temperature"
    assert out["CT"].attrs["units"] == "degC"
    assert out["sigma0"].attrs["standard_name"] == "sea_water_sigma_theta"
    assert out["sigma0"].attrs["units"] == "kg m-3"
    assert out["sigma0"].attrs["reference_pressure"] == 0.0
    assert out["SA"].dims == ("obs",)
    assert "teos10" in out.attrs["history"]
    assert "SA" not in argo  # the input is untouched


def test_teos10_stays_lazy(argo):
    chunked = argo.copy()
    for name in ("PRES", "TEMP", "PSAL"):
        chunked[name] = argo[name].chunk({"obs": 700})
    with dask.config.set(scheduler=no_compute):
        out = teos10(chunked)
        for name in ("SA", "CT", "sigma0"):
            assert isinstance(out[name].data, dask.array.Array), name
        assert out["SA"].chunks == chunked["PSAL"].chunks
    eager = teos10(argo)
    for name in ("SA", "CT", "sigma0"):
        np.testing.assert_array_equal(out[name].values, eager[name].values)
    # a fully chunked dataset (row sizes and positions too) also works
    np.testing.assert_array_equal(teos10(argo.chunk({"obs": 500, "profile": 7}))["CT"].values,
                                  eager["CT"].values)


def test_teos10_fixed_position_and_padded(argo_path):
    raw = xr.open_dataset(argo_path)
    out = teos10(raw, pressure="PRES_ADJUSTED", temperature="TEMP_ADJUSTED",
                 salinity="PSAL_ADJUSTED")
    assert out["SA"].dims == raw["PSAL_ADJUSTED"].dims
    i, k = 3, 10
    sa = gsw.SA_from_SP(raw["PSAL_ADJUSTED"].values[i, k], raw["PRES_ADJUSTED"].values[i, k],
                        raw["LONGITUDE"].values[i], raw["LATITUDE"].values[i])
    assert float(out["SA"][i, k]) == pytest.approx(float(sa), abs=1e-12)
    series = xr.Dataset({"PRES": ("time", [10.0, 10.0]), "TEMP": ("time", [20.0, 21.0]),
                         "PSAL": ("time", [35.0, 35.1])})
    out = teos10(series, lat=12.5, lon=115.0)
    np.testing.assert_allclose(out["SA"].values,
                               gsw.SA_from_SP([35.0, 35.1], [10.0, 10.0], 115.0, 12.5))


def test_teos10_errors(argo):
    with pytest.raises(UsageError, match="no pressure variable 'PRESSURE'"):
        teos10(argo, pressure="PRESSURE")
    with pytest.raises(UsageError, match="no latitude found"):
        teos10(argo.drop_vars(["LATITUDE"]))
    with pytest.raises(UsageError, match="out of range"):
        teos10(argo, lat=95.0)
    with pytest.raises(DataError, match="dbar"):
        teos10(argo.assign(PRES=argo["PRES"].assign_attrs(units="Pa")))
    with pytest.raises(DataError, match="Practical Salinity"):
        teos10(argo.assign(PSAL=argo["PSAL"].assign_attrs(units="g/kg")))
    with pytest.raises(DataError, match="in-situ temperature"):
        teos10(argo.assign(TEMP=argo["TEMP"].assign_attrs(units="K")))


# --------------------------------------------------------------------------- mixed layer


def test_mld_exact_on_a_constructed_profile():
    """sigma0 is 24 down to 40 dbar and then grows by 0.01 kg m-3 per dbar: it exceeds the
    10-dbar value by 0.03 at exactly 43 dbar (levels every 2 dbar, linear in between)."""
    p = np.arange(0.0, 201.0, 2.0)
    sigma = np.where(p <= 40, 24.0, 24.0 + 0.01 * (p - 40))
    ds = xr.Dataset({"PRES": ("level", p), "sigma0": ("level", sigma)})
    mld = mixed_layer_depth(ds)
    assert mld.ndim == 0 and float(mld) == pytest.approx(43.0, abs=1e-9)
    assert mld.attrs["units"] == "dbar"
    assert mld.attrs["threshold"] == 0.03 and mld.attrs["reference_pressure"] == 10.0
    assert "10.1029/2004JC002378" in mld.attrs["references"]
    # shuffled levels give the same answer
    order = np.random.default_rng(0).permutation(p.size)
    assert float(mixed_layer_depth(ds.isel(level=order))) == pytest.approx(43.0, abs=1e-9)
    # a two-layer profile (a step between 50 and 52 dbar): linear between the two levels
    step = xr.Dataset({"PRES": ("level", p), "sigma0": ("level", np.where(p <= 50, 24.0, 25.0))})
    assert float(mixed_layer_depth(step)) == pytest.approx(50 + 0.03 * 2, abs=1e-9)


def test_mld_reference_level_is_interpolated():
    """No level at 10 dbar: sigma0 there is interpolated between 4 and 16 dbar."""
    p = np.array([4.0, 16.0, 30.0, 60.0])
    sigma = np.array([24.0, 24.012, 24.02, 25.0])
    ref = 24.0 + 0.012 * (10 - 4) / 12  # 24.006
    expected = 30 + (ref + 0.03 - 24.02) / (25.0 - 24.02) * 30
    ds = xr.Dataset({"PRES": ("level", p), "sigma0": ("level", sigma)})
    assert float(mixed_layer_depth(ds)) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(("p", "sigma"), [
    ([1.0, 5.0, 8.0], [24.0, 24.5, 25.0]),           # does not reach 10 dbar
    ([12.0, 20.0, 100.0], [24.0, 24.5, 25.0]),       # starts below 10 dbar
    ([0.0, 10.0, 500.0], [24.0, 24.01, 24.02]),      # never exceeds the threshold
    ([np.nan, 10.0, np.nan], [24.0, np.nan, 25.0]),  # nothing valid
])
def test_mld_is_nan_where_undefined(p, sigma):
    ds = xr.Dataset({"PRES": ("level", p), "sigma0": ("level", sigma)})
    assert np.isnan(float(mixed_layer_depth(ds)))


def loop_mld(p, sigma, threshold=0.03, ref=10.0):
    """A plain loop over the levels of one profile (independent of the implementation)."""
    levels = sorted((pi, si) for pi, si in zip(p, sigma, strict=True)
                    if np.isfinite(pi) and np.isfinite(si))
    sigma_ref = None
    for (p0, s0), (p1, s1) in itertools.pairwise(levels):
        if p0 <= ref <= p1:
            sigma_ref = s0 if p1 == p0 else s0 + (s1 - s0) * (ref - p0) / (p1 - p0)
            break
    if sigma_ref is None:
        if levels and levels[0][0] == ref:
            sigma_ref = levels[0][1]
        else:
            return np.nan
    prev_p, prev_d = ref, 0.0
    for pk, sk in levels:
        if pk <= ref:
            continue
        d = sk - sigma_ref
        if d > threshold:
            return prev_p + (threshold - prev_d) / (d - prev_d) * (pk - prev_p)
        prev_p, prev_d = pk, d
    return np.nan


@pytest.mark.parametrize(("threshold", "ref"), [(0.03, 10.0), (0.125, 10.0), (0.03, 20.0)])
def test_mld_on_real_argo_matches_a_plain_loop(argo, threshold, ref):
    ds = teos10(argo)
    mld = mixed_layer_depth(ds, threshold=threshold, reference_pressure=ref)
    assert mld.dims == ("profile",) and mld.sizes["profile"] == argo.sizes["profile"]
    assert "LATITUDE" in mld.coords
    bounds = np.concatenate([[0], np.cumsum(argo["row_size"].values)])
    p, sigma = ds["PRES"].values, ds["sigma0"].values
    expected = [loop_mld(p[a:b], sigma[a:b], threshold, ref)
                for a, b in itertools.pairwise(bounds)]
    np.testing.assert_allclose(mld.values, expected, rtol=0, atol=1e-9)
    assert np.isfinite(mld.values).mean() > 0.9
    # South China Sea mixed layers: tens of dbar
    assert 5 < np.nanmedian(mld.values) < 100


def test_mld_padded_equals_ragged_and_stays_lazy(argo_path, argo):
    raw = xr.open_dataset(argo_path)
    keep = np.logical_and.reduce([np.isfinite(raw[v].values) for v in
                                  ("PRES_ADJUSTED", "TEMP_ADJUSTED", "PSAL_ADJUSTED")])
    padded = xr.Dataset({v: raw[f"{v}_ADJUSTED"].where(keep) for v in ("PRES", "TEMP", "PSAL")},
                        coords={"LATITUDE": raw["LATITUDE"], "LONGITUDE": raw["LONGITUDE"]})
    ragged = mixed_layer_depth(teos10(argo))
    eager = mixed_layer_depth(teos10(padded))
    assert eager.dims == ("N_PROF",)
    np.testing.assert_allclose(eager.values, ragged.values, rtol=0, atol=1e-12)
    with dask.config.set(scheduler=no_compute):
        lazy = mixed_layer_depth(teos10(padded.chunk({"N_PROF": 10, "N_LEVELS": 50})))
        assert isinstance(lazy.data, dask.array.Array)
    np.testing.assert_allclose(lazy.values, ragged.values, rtol=0, atol=1e-12)


def test_mld_with_standard_levels_pressure_coordinate():
    """Padded data on fixed pressures (1-D pressure coordinate, 2-D sigma0)."""
    p = np.arange(0.0, 201.0, 2.0)
    sigma = np.stack([np.where(p <= top, 24.0, 24.0 + 0.01 * (p - top)) for top in (20, 40, 60)])
    ds = xr.Dataset({"sigma0": (("profile", "PRES"), sigma)}, coords={"PRES": p})
    np.testing.assert_allclose(mixed_layer_depth(ds).values, [23.0, 43.0, 63.0], atol=1e-9)


def test_mld_errors(argo):
    with pytest.raises(UsageError, match="teos10"):
        mixed_layer_depth(argo)
    ds = teos10(argo)
    with pytest.raises(UsageError, match="threshold=0"):
        mixed_layer_depth(ds, threshold=0)
    with pytest.raises(UsageError, match="reference_pressure=-1"):
        mixed_layer_depth(ds, reference_pressure=-1)
    with pytest.raises(UsageError, match="no pressure variable 'P'"):
        mixed_layer_depth(ds, pressure="P")
