"""Tests of :mod:`oceandata.insitu.tides` on the real Point Reyes tide-gauge sample.

The sample is NOAA CO-OPS station 9415020, 6-minute water level in feet, January 2021
(catalog entry ``tide_point_reyes``). Expectations do not come from UTide itself: a plain
least-squares fit written here, astronomical arguments and nodal factors from textbook
formulas (mean longitudes from Meeus, *Astronomical Algorithms*, ch. 22 and 47; nodal
factors from Schureman 1958 as tabulated by Pugh 1987, table 4.3), NOAA's own prediction
in the file, or a synthetic series with known constants.

The file and the catalog do not give the station position; Point Reyes is at about 38.0°N,
123.0°W. UTide uses the latitude only in a few satellite corrections, and
:func:`test_latitude_hardly_matters` shows a degree changes nothing that matters here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import oceandata
from oceandata.errors import DataError, UsageError
from oceandata.insitu.tides import HarmonicResult, as_timeseries_dsg, harmonic_analysis

LAT, LON = 38.0, -123.0
FIVE = ["M2", "S2", "N2", "K1", "O1"]

#: Angular speeds in degrees per mean solar hour (Schureman 1958, table 2).
SPEED = {"M2": 28.9841042, "S2": 30.0, "N2": 28.4397295, "K1": 15.0410686, "O1": 13.9430356}


# --------------------------------------------------------------------------- astronomy


def _astro(when: np.datetime64) -> dict[str, float]:
    """Mean longitudes (degrees) of moon s, sun h, lunar perigee p and node N; hour angle T."""
    days = (np.datetime64(when, "s") - np.datetime64("2000-01-01T12:00:00")) / np.timedelta64(1, "D")
    c = days / 36525.0  # Julian centuries from J2000.0
    hours = (np.datetime64(when, "s") - np.datetime64(when, "D")) / np.timedelta64(1, "h")
    return {"s": 218.3164477 + 481267.88123421 * c, "h": 280.46646 + 36000.76983 * c,
            "p": 83.3532465 + 4069.0137287 * c, "N": 125.04452 - 1934.136261 * c,
            "T": 180.0 + 15.0 * hours}


def _equilibrium_argument(when: np.datetime64) -> dict[str, float]:
    """V0 of the five constituents (Schureman's convention, as UTide's Greenwich phases)."""
    a = _astro(when)
    s, h, p, T = a["s"], a["h"], a["p"], a["T"]
    return {"M2": 2 * T - 2 * s + 2 * h, "S2": 2 * T, "N2": 2 * T - 3 * s + 2 * h + p,
            "K1": T + h - 90, "O1": T - 2 * s + h + 90}


def _nodal(when: np.datetime64) -> dict[str, tuple[float, float]]:
    """Nodal factor f and angle u (degrees) of the five constituents (Pugh 1987, table 4.3)."""
    n = np.deg2rad(_astro(when)["N"])
    c1, c2, c3, s1, s2, s3 = (np.cos(n), np.cos(2 * n), np.cos(3 * n),
                              np.sin(n), np.sin(2 * n), np.sin(3 * n))
    m2 = (1.0004 - 0.0373 * c1 + 0.0002 * c2, -2.14 * s1)
    return {"M2": m2, "N2": m2, "S2": (1.0, 0.0),
            "K1": (1.0060 + 0.1150 * c1 - 0.0088 * c2 + 0.0006 * c3,
                   -8.86 * s1 + 0.68 * s2 - 0.07 * s3),
            "O1": (1.0089 + 0.1871 * c1 - 0.0147 * c2 + 0.0014 * c3,
                   10.80 * s1 - 1.34 * s2 + 0.19 * s3)}


#: Largest |f - 1| over the 18.6-year nodal cycle (same table): the size of the correction.
NODAL_RANGE = {"M2": 0.037, "N2": 0.037, "S2": 0.0, "K1": 0.12, "O1": 0.19}


def _lstsq(times: np.ndarray, values: np.ndarray, epoch: np.datetime64) -> dict[str, tuple]:
    """Plain least squares: mean + cos/sin at the five speeds, hours since *epoch*.

    Returns ``{name: (amplitude, phase)}`` for ``A cos(speed * t - phase)``, no nodal
    corrections, NaN values left out.
    """
    ok = np.isfinite(values)
    hours = (times[ok] - epoch) / np.timedelta64(1, "h")
    columns = [np.ones_like(hours)]
    for speed in SPEED.values():
        angle = np.deg2rad(speed * hours)
        columns += [np.cos(angle), np.sin(angle)]
    m = np.linalg.lstsq(np.column_stack(columns), values[ok], rcond=None)[0]
    return {name: (float(np.hypot(m[1 + 2 * i], m[2 + 2 * i])),
                   float(np.rad2deg(np.arctan2(m[2 + 2 * i], m[1 + 2 * i]))))
            for i, name in enumerate(SPEED)}


def _angle_diff(a: float, b: float) -> float:
    return float((a - b + 180.0) % 360.0 - 180.0)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def reyes() -> xr.Dataset:
    return oceandata.open_dataset("tide_point_reyes").load()


@pytest.fixture(scope="module")
def dsg(reyes) -> xr.Dataset:
    return as_timeseries_dsg(reyes, station_id="9415020", name="Point Reyes, CA",
                             lat=LAT, lon=LON)


@pytest.fixture(scope="module")
def result(dsg) -> HarmonicResult:
    return harmonic_analysis(dsg, variable="verified")


# --------------------------------------------------------------------------- Point Reyes


def test_table_reports_the_main_constituents(result, reyes):
    table = result.table
    assert set(FIVE) <= set(table.index)
    assert list(table.index[:2]) == ["M2", "K1"]  # mixed, mainly semidiurnal tide
    assert (np.diff(table["amplitude"].to_numpy()) <= 0).all()
    assert list(table.columns) == ["frequency_cph", "amplitude", "amplitude_ci", "phase_deg",
                                   "phase_ci_deg", "snr", "pe"]
    np.testing.assert_allclose(table.loc[FIVE, "frequency_cph"],
                               [SPEED[c] / 360 for c in FIVE], rtol=1e-6)
    assert (table.loc[FIVE, "snr"] > 1000).all()
    assert ((table["phase_deg"] >= 0) & (table["phase_deg"] < 360)).all()
    assert result.units == "ft" and result.variable == "verified"
    assert result.n_valid == reyes.sizes["time"] == 7440 and result.n_missing == 0
    np.testing.assert_allclose(result.mean, float(reyes.verified.mean()), atol=0.02)
    assert result.slope is None


def test_reconstruction_explains_most_of_the_variance(result, dsg):
    observed = dsg.verified.to_numpy()
    tide = result.reconstruct(dsg.time)
    assert tide.dims == ("time",) and tide.attrs["units"] == "ft"
    np.testing.assert_array_equal(tide.time.to_numpy(), dsg.time.to_numpy())
    residual = observed - tide.to_numpy()
    assert np.std(residual) < 0.2 * np.std(observed)
    # NOAA's own prediction, made from its long-term constants, does not fit better
    assert np.std(residual) <= np.std(observed - dsg.predicted.to_numpy())


def test_amplitudes_match_plain_least_squares_without_nodal_corrections(dsg):
    epoch = np.datetime64("2021-01-01T00:00")
    times, values = dsg.time.to_numpy(), dsg.verified.to_numpy()
    expected = _lstsq(times, values, epoch)
    got = harmonic_analysis(dsg, variable="verified", constituents=FIVE, nodal=False).table
    v0 = _equilibrium_argument(epoch)
    for name, (amplitude, phase) in expected.items():
        # the same model: amplitudes agree to rounding
        assert got.loc[name, "amplitude"] == pytest.approx(amplitude, rel=1e-5)
        # Greenwich lag = lag after the epoch + equilibrium argument at the epoch
        assert abs(_angle_diff(got.loc[name, "phase_deg"], phase + v0[name])) < 0.01


def test_nodal_corrections_are_the_textbook_ones(result, dsg):
    times, values = dsg.time.to_numpy(), dsg.verified.to_numpy()
    epoch = np.datetime64("2021-01-01T00:00")
    raw = _lstsq(times, values, epoch)
    middle = times[0] + (times[-1] - times[0]) / 2
    v0, nodal = _equilibrium_argument(epoch), _nodal(middle)
    for name, (amplitude, phase) in raw.items():
        got = result.table.loc[name]
        # the correction is at most the nodal range (a few % for M2, up to 19 % for O1)
        assert abs(got["amplitude"] / amplitude - 1) <= NODAL_RANGE[name] + 0.005
        # ... and is the textbook f and u for mid-January 2021, within their approximation
        f, u = nodal[name]
        assert got["amplitude"] == pytest.approx(amplitude / f, rel=0.01)
        assert abs(_angle_diff(got["phase_deg"], phase + v0[name] + u)) < 1.0


def test_observed_m2_agrees_with_noaa_prediction(result, dsg):
    # the `predicted` column is NOAA's tide prediction from its published constants
    noaa = harmonic_analysis(dsg, variable="predicted").table.loc["M2"]
    observed = result.table.loc["M2"]
    assert observed["amplitude"] == pytest.approx(noaa["amplitude"], rel=0.02)
    assert abs(_angle_diff(observed["phase_deg"], noaa["phase_deg"])) < 2.0


def test_latitude_hardly_matters(dsg, result):
    other = harmonic_analysis(dsg, variable="verified", lat=LAT + 1).table
    np.testing.assert_allclose(other.loc[FIVE, "amplitude"], result.table.loc[FIVE, "amplitude"],
                               atol=1e-3)


def test_missing_values_are_left_out(dsg, result):
    rng = np.random.default_rng(7)
    gappy = dsg.verified.to_numpy().copy()
    gappy[rng.random(gappy.size) < 0.2] = np.nan
    gappy[2000:2480] = np.nan  # two days without data
    missing = int(np.isnan(gappy).sum())
    got = harmonic_analysis(dsg.verified.copy(data=gappy))
    assert got.n_missing == missing and got.n_valid == gappy.size - missing
    for name in FIVE:
        full = result.table.loc[name]
        assert abs(got.table.loc[name, "amplitude"] - full["amplitude"]) < 2 * full["amplitude_ci"] + 0.01
    tide = got.reconstruct(dsg.time)
    assert np.isfinite(tide).all()  # predicted at the gaps as well


def test_result_as_dict_and_trend(result, dsg):
    summary = result.as_dict()
    assert summary["units"] == "ft" and summary["start"] == "2021-01-01T00:00:00"
    assert summary["end"] == "2021-01-31T23:54:00"
    assert summary["options"] == {"constit": "auto", "nodal": True, "trend": False,
                                  "method": "ols", "conf_int": "linear", "Rayleigh_min": 1.0}
    first = summary["constituents"][0]
    assert first["name"] == "M2" and first["amplitude"] == result.table.loc["M2", "amplitude"]
    pd.io.json.ujson_dumps(summary)  # JSON-serialisable
    with_trend = harmonic_analysis(dsg, variable="verified", trend=True)
    assert with_trend.slope is not None and abs(with_trend.slope) < 0.1  # ft per day
    assert with_trend.as_dict()["options"]["trend"] is True
    level = with_trend.reconstruct(dsg.time[::240], min_snr=1e12)  # mean and trend alone
    assert level.attrs["constituents"] == ""
    np.testing.assert_allclose(np.diff(level.to_numpy()), with_trend.slope, rtol=1e-9)


def test_reconstruct_choices(result, dsg):
    times = dsg.time.to_numpy()[:240]
    two = result.reconstruct(times, constituents=["m2", "K1"])
    assert two.attrs["constituents"] == "M2 K1"
    everything = result.reconstruct(pd.DatetimeIndex(times), min_snr=0)
    assert len(everything.attrs["constituents"].split()) == len(result.table)
    with_nat = result.reconstruct(np.array(["2021-01-05T00:00", "NaT"], dtype="datetime64[ns]"))
    assert np.isfinite(with_nat[0]) and np.isnan(with_nat[1])
    only_mean = result.reconstruct(times, min_snr=1e12)
    np.testing.assert_allclose(only_mean, result.mean)
    with pytest.raises(UsageError, match=r"constituents \['K2'\] are not in the analysis"):
        result.reconstruct(times, constituents=["K2"])
    with pytest.raises(UsageError, match="times must be datetimes"):
        result.reconstruct(["soon"])


# --------------------------------------------------------------------------- synthetic


def test_synthetic_constants_are_recovered():
    epoch = np.datetime64("2020-03-01T00:00")
    times = epoch + np.arange(30 * 24) * np.timedelta64(1, "h")
    hours = (times - epoch) / np.timedelta64(1, "h")
    known = {"M2": (0.80, 120.0), "K1": (0.30, 250.0)}  # metres, Greenwich degrees
    v0 = _equilibrium_argument(epoch)
    rng = np.random.default_rng(42)
    level = 1.5 + rng.normal(0, 0.005, times.size)
    for name, (amplitude, phase) in known.items():
        level += amplitude * np.cos(np.deg2rad(v0[name] + SPEED[name] * hours - phase))
    level[rng.random(times.size) < 0.1] = np.nan
    da = xr.DataArray(level, dims="time", coords={"time": times}, name="eta",
                      attrs={"units": "m"})
    got = harmonic_analysis(da, lat=45.0, nodal=False)
    for name, (amplitude, phase) in known.items():
        assert abs(got.table.loc[name, "amplitude"] - amplitude) < 1e-3
        assert abs(_angle_diff(got.table.loc[name, "phase_deg"], phase)) < 0.5
    assert got.mean == pytest.approx(1.5, abs=1e-3)
    assert list(got.table.index[:2]) == ["M2", "K1"] and got.table["amplitude"].iloc[2] < 2e-3


# --------------------------------------------------------------------------- DSG


def test_dsg_is_a_cf_time_series(dsg, reyes):
    assert dsg.attrs["featureType"] == "timeSeries"
    assert dsg.cf["time"].name == "time" and dsg.cf["T"].attrs["axis"] == "T"
    assert dsg.cf["latitude"].item() == LAT and dsg.cf["longitude"].item() == LON
    assert dsg.cf.cf_roles == {"timeseries_id": ["station"]}
    assert dsg.station.item() == "9415020" and dsg.station_name.item() == "Point Reyes, CA"
    level = dsg.cf[["water_surface_height_above_reference_datum"]]
    assert set(level.data_vars) == {"verified", "preliminary"}
    assert dsg.verified.attrs["vertical_datum"] == "not stated in the source"
    assert "standard_name" not in dsg.predicted.attrs  # no CF name without a datum
    xr.testing.assert_equal(dsg.verified.reset_coords(drop=True), reyes.verified)
    assert reyes.verified.attrs == {"units": "ft", "long_name": "Verified water level"}
    assert reyes.time.attrs == {} and "featureType" not in reyes.attrs  # input unchanged


def test_dsg_names_follow_the_datum(reyes):
    mllw = as_timeseries_dsg(reyes, station_id="9415020", name="Point Reyes, CA", lat=LAT,
                             lon=LON, datum="MLLW")
    assert mllw.predicted.attrs["standard_name"] == \
        "tidal_sea_surface_height_above_mean_lower_low_water"
    assert mllw.verified.attrs["standard_name"] == "water_surface_height_above_reference_datum"
    assert mllw.verified.attrs["vertical_datum"] == "MLLW"
    msl = as_timeseries_dsg(reyes, station_id="9415020", name="Point Reyes, CA", lat=LAT,
                            lon=LON, datum="msl")
    assert msl.verified.attrs["standard_name"] == "sea_surface_height_above_mean_sea_level"


def test_dsg_round_trips_through_netcdf(dsg, result, tmp_path):
    path = tmp_path / "point_reyes.nc"
    dsg.to_netcdf(path)
    with xr.open_dataset(path) as back:
        back.load()
    xr.testing.assert_identical(back, dsg)
    assert back.cf["latitude"].item() == LAT and back.attrs["featureType"] == "timeSeries"
    again = harmonic_analysis(back, variable="verified")  # latitude read from the file
    pd.testing.assert_frame_equal(again.table, result.table)


def test_dsg_passes_cf_checks_and_subsets(dsg, tmp_path):
    from oceandata.ingest.compliance import check_sources

    path = tmp_path / "point_reyes.nc"
    dsg.to_netcdf(path)
    report = check_sources([path], suites=["cf"])
    high = [m for r in report.results for f in r.failures if f.priority == "high"
            for m in f.messages]
    assert high == []
    cut = oceandata.subset(dsg, bbox=(-124, 37, -122, 39), time=("2021-01-10", "2021-01-11"))
    assert cut.sizes["time"] == 2 * 240 and cut.station.item() == "9415020"
    with pytest.raises(DataError, match=r"cover latitude 38\.\.38 and longitude -123\.\.-123"):
        oceandata.subset(dsg, bbox=(0, 0, 10, 10))


def test_dsg_position_from_existing_coordinates_or_catalog(dsg):
    again = as_timeseries_dsg(dsg, station_id="X1", name="same place")
    assert (again.lat.item(), again.lon.item(), again.station.item()) == (LAT, LON, "X1")
    oisst = oceandata.open_dataset("oisst_wa").drop_vars(["lat", "lon"])  # catalog bbox: a point
    sst = as_timeseries_dsg(oisst, station_id="WA", name="off Western Australia")
    assert (sst.lat.item(), sst.lon.item()) == (-29.375, 112.625)


# --------------------------------------------------------------------------- errors


def test_too_short_series_is_a_data_error(dsg):
    short = dsg.sel(time=slice("2021-01-10", "2021-01-10T23:59"))
    with pytest.raises(DataError, match=r"harmonic_analysis: verified has 23\.9 h of valid data "
                                        r"\(2021-01-10T00:00:00 to 2021-01-10T23:54:00\); .* at "
                                        r"least 2 days"):
        harmonic_analysis(short, variable="verified")


@pytest.mark.parametrize(("make", "kwargs", "error", "pattern"), [
    (lambda d: d.verified.drop_vars("time").rename(time="t"), {}, DataError, r"no time axis"),
    (lambda d: d, {"variable": "preliminary"}, DataError,
     r"preliminary has no valid values \(7440 missing\)"),
    (lambda d: d, {}, UsageError, r"cannot tell which variable.*preliminary, verified.*variable="),
    (lambda d: d, {"variable": "verifed"}, UsageError, r"no data variable 'verifed'.*Did you mean: verified"),
    (lambda d: d.verified.isel(time=slice(None, None, 70)), {}, DataError,
     r"sampled every 7 h .*at most 6 h apart"),
    (lambda d: d, {"variable": "verified", "constituents": ["M2", "MX2"]}, UsageError,
     r"unknown constituent 'MX2'"),
    (lambda d: d, {"variable": "verified", "constituents": ["S2", "K2"]}, UsageError,
     r"S2 and K2 are 0\.00023 cph apart.*31\.0-day record.*at least 183 days"),
    (lambda d: d.verified.reset_coords(drop=True), {}, UsageError, r"no latitude given.*lat="),
    (lambda d: d, {"variable": "verified", "lat": 95}, UsageError, r"lat=95 is outside -90\.\.90"),
    (lambda d: d, {"variable": "verified", "method": "median"}, UsageError, r"valid: 'ols', 'robust'"),
])
def test_bad_input(dsg, make, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        harmonic_analysis(make(dsg), **kwargs)


def test_cftime_axis_is_refused():
    times = xr.date_range("2000-01-01", periods=24 * 40, freq="h", calendar="noleap",
                          use_cftime=True)
    da = xr.DataArray(np.zeros(times.size), dims="time", coords={"time": times}, name="eta")
    with pytest.raises(DataError, match=r"not a standard-calendar date axis \(calendar noleap\)"):
        harmonic_analysis(da, lat=10.0)


def test_dsg_bad_input(reyes):
    with pytest.raises(UsageError, match=r"no station position given and catalog entry "
                                          r"'tide_point_reyes' has no point bbox; pass lat= and lon="):
        as_timeseries_dsg(reyes, station_id="9415020", name="Point Reyes, CA")
    with pytest.raises(UsageError, match=r"lon=400 is outside -180\.\.360"):
        as_timeseries_dsg(reyes, station_id="9415020", name="Point Reyes", lat=LAT, lon=400)
    with pytest.raises(UsageError, match="station_id is empty"):
        as_timeseries_dsg(reyes, station_id=" ", name="Point Reyes", lat=LAT, lon=LON)
    two_d = reyes.assign(grid=(("time", "x"), np.zeros((reyes.sizes["time"], 2))))
    with pytest.raises(DataError, match=r"along 'time' only, but grid \('time', 'x'\)"):
        as_timeseries_dsg(two_d, station_id="9415020", name="Point Reyes", lat=LAT, lon=LON)
