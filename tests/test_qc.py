"""QARTOD flags of oceandata.insitu.qc on synthetic series with known faults and real data."""

from __future__ import annotations

import json

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from insitu_helpers import argo_ragged as _argo_ragged

from oceandata.errors import DataError, UsageError
from oceandata.insitu.qc import (
    FLAG_MEANINGS,
    FLAG_VALUES,
    apply_qartod,
    default_config_path,
    load_qc_config,
)

TESTS = ("gross_range", "spike", "rate_of_change", "flat_line")


def argo_ragged(path, n_prof: int | None = None) -> xr.Dataset:
    return _argo_ragged(path, n_prof, coords=("latitude", "longitude"))


@pytest.fixture(scope="module")
def argo(argo_path):
    return argo_ragged(argo_path)


# --------------------------------------------------------------------------- synthetic series

N = 200
SPIKE_FAIL, SPIKE_SUSPECT, OUT_FAIL, OUT_SUSPECT = 30, 40, 60, 70
FLAT = slice(100, 131)
SERIES_CONFIG = {
    "temp": {
        "axis": "T",
        "qartod": {
            "gross_range": {"fail_span": [-5, 40], "suspect_span": [-2, 30]},
            "spike": {"suspect_threshold": 1.0, "fail_threshold": 3.0,
                      "method": "differential"},
            "rate_of_change": {"threshold": 0.002},
            "flat_line": {"tolerance": 0.001, "suspect_threshold": 3000,
                          "fail_threshold": 6000},
        },
    }
}


def synthetic_series() -> xr.Dataset:
    """A 10-minute sine (period 30 samples) with a spike of 4 at 30, one of 2 at 40, a value
    of 50 (out of the fail span) at 60, 35 (out of the suspect span) at 70, and a flat
    segment 100..130 (the sine's value at 100, which it has again at 130: no jump at either
    end)."""
    i = np.arange(N)
    x = 10 + 2 * np.sin(2 * np.pi * i / 30)
    x[SPIKE_FAIL] += 4
    x[SPIKE_SUSPECT] += 2
    x[OUT_FAIL] = 50.0
    x[OUT_SUSPECT] = 35.0
    x[FLAT] = x[FLAT.start]
    time = pd.date_range("2024-01-01", periods=N, freq="10min").values
    return xr.Dataset({"temp": ("time", x, {"standard_name": "sea_water_temperature",
                                            "units": "degree_Celsius"})},
                      coords={"time": time})


def expected(flags: dict[int, int], *, ends: bool = False) -> np.ndarray:
    out = np.ones(N, dtype=np.uint8)
    if ends:
        out[[0, -1]] = 2
    for index, flag in flags.items():
        out[index] = flag
    return out


def test_synthetic_series_flags_exactly_the_injected_faults():
    out = apply_qartod(synthetic_series(), SERIES_CONFIG)
    gross = expected({OUT_FAIL: 4, OUT_SUSPECT: 3})
    spike = expected({SPIKE_FAIL: 4, SPIKE_SUSPECT: 3, OUT_FAIL: 4, OUT_SUSPECT: 4}, ends=True)
    # the rate of change is charged to the later of the two values of each jump
    roc = expected({k: 3 for j in (SPIKE_FAIL, SPIKE_SUSPECT, OUT_FAIL, OUT_SUSPECT)
                    for k in (j, j + 1)})
    # windows of 3000 s = 5 intervals (6 values) and 6000 s = 10 intervals (11 values)
    flat = expected({**{k: 3 for k in range(105, 110)}, **{k: 4 for k in range(110, 131)}})
    np.testing.assert_array_equal(out["temp_qartod_gross_range"].values, gross)
    np.testing.assert_array_equal(out["temp_qartod_spike"].values, spike)
    np.testing.assert_array_equal(out["temp_qartod_rate_of_change"].values, roc)
    np.testing.assert_array_equal(out["temp_qartod_flat_line"].values, flat)
    # aggregate: the worst of the tests
    agg = np.maximum.reduce([gross, np.where(spike == 2, 1, spike), roc, flat])
    np.testing.assert_array_equal(out["temp_qartod"].values, agg)
    assert set(np.flatnonzero(agg == 4)) == {SPIKE_FAIL, OUT_FAIL, OUT_SUSPECT, *range(110, 131)}


def test_missing_values_are_flagged_9_and_neighbours_not_evaluated():
    ds = synthetic_series()
    ds["temp"][[5, 150]] = np.nan
    out = apply_qartod(ds, SERIES_CONFIG)
    assert out["temp_qartod"].values[5] == 9 and out["temp_qartod"].values[150] == 9
    for test in TESTS:
        assert out[f"temp_qartod_{test}"].values[5] == 9
    assert out["temp_qartod_spike"].values[4] == 2 and out["temp_qartod_spike"].values[6] == 2


def test_flag_variables_are_cf_and_recorded():
    ds = synthetic_series()
    before = {k: dict(v.attrs) for k, v in ds.variables.items()}
    out = apply_qartod(ds, SERIES_CONFIG)
    agg = out["temp_qartod"]
    assert agg.dtype == np.uint8 and agg.dims == ("time",)
    np.testing.assert_array_equal(agg.attrs["flag_values"], [1, 2, 3, 4, 9])
    assert agg.attrs["flag_values"].dtype == np.uint8
    assert agg.attrs["flag_meanings"] == FLAG_MEANINGS == "pass not_evaluated suspect fail missing"
    assert agg.attrs["standard_name"] == "sea_water_temperature status_flag"
    assert "long_name" in agg.attrs
    assert out["temp_qartod_spike"].attrs["standard_name"] == "spike_test_quality_flag"
    assert out["temp_qartod_flat_line"].attrs["ioos_qc_test"] == "flat_line_test"
    assert out["temp"].attrs["ancillary_variables"].split() == [
        "temp_qartod", *(f"temp_qartod_{t}" for t in TESTS)]
    assert "apply_qartod" in out.attrs["history"] and "ioos_qc" in out.attrs["history"]
    record = json.loads(out.attrs["qartod_config"])
    assert record["temp"]["along"] == "time"
    assert record["temp"]["qartod"]["spike"]["method"] == "differential"
    # the input is untouched, and the record runs again to the same flags
    assert {k: dict(v.attrs) for k, v in ds.variables.items()} == before
    again = apply_qartod(ds, record)
    for name in ["temp_qartod", *(f"temp_qartod_{t}" for t in TESTS)]:
        np.testing.assert_array_equal(again[name].values, out[name].values)
    # running twice neither duplicates ancillary variables nor loses the first record
    twice = apply_qartod(out, SERIES_CONFIG)
    assert twice["temp"].attrs["ancillary_variables"] == out["temp"].attrs["ancillary_variables"]
    assert twice.attrs["history"].count("apply_qartod") == 2


def test_without_standard_name_the_aggregate_is_an_aggregate_quality_flag():
    ds = synthetic_series()
    ds["temp"].attrs.pop("standard_name")
    out = apply_qartod(ds, SERIES_CONFIG)
    assert out["temp_qartod"].attrs["standard_name"] == "aggregate_quality_flag"


def test_only_the_flagged_variable_is_read():
    ds = synthetic_series()

    def boom(block):
        raise AssertionError("a variable that is not flagged was computed")

    ds["other"] = ("time", da.map_blocks(boom, da.zeros(N, chunks=50), dtype=float))
    ds["temp"] = ds["temp"].chunk({"time": 50})
    out = apply_qartod(ds, SERIES_CONFIG)
    assert isinstance(out["other"].data, da.Array)
    assert out["temp_qartod"].values[OUT_FAIL] == 4


# --------------------------------------------------------------------------- profiles


def two_profiles() -> xr.Dataset:
    """Two profiles, each 28 degC at the surface to 2 degC at 2000 dbar: the bottom of the
    first (2 degC) is followed by the top of the second (28 degC)."""
    p = np.linspace(5, 2000, 40)
    t = 2 + 26 * np.exp(-p / 300)
    return xr.Dataset({"PRES": ("obs", np.concatenate([p, p]), {"units": "dbar"}),
                       "TEMP": ("obs", np.concatenate([t, t]), {"units": "degree_Celsius"}),
                       "row_size": ("profile", [40, 40], {"sample_dimension": "obs"})})


AVERAGE_SPIKE = {"TEMP": {"qartod": {"spike": {"suspect_threshold": 2, "fail_threshold": 6,
                                               "method": "average"}}}}


def test_profiles_are_independent():
    ds = two_profiles()
    flags = apply_qartod(ds, AVERAGE_SPIKE)["TEMP_qartod_spike"].values
    # each profile's first and last values cannot be tested; nothing is a spike
    assert set(np.flatnonzero(flags == 2)) == {0, 39, 40, 79}
    assert set(np.unique(flags)) == {1, 2}
    # as one series in storage order (no ragged array, no pressure to sort by), the jump
    # between the profiles is a spike
    series = ds.drop_vars(["row_size", "PRES"])
    flags = apply_qartod(series, AVERAGE_SPIKE)["TEMP_qartod_spike"].values
    assert flags[39] == 4 and flags[40] == 4


def test_profiles_are_tested_in_pressure_order():
    ds = two_profiles()
    ds["TEMP"][10] += 8  # a spike in the first profile
    forward = apply_qartod(ds, AVERAGE_SPIKE)["TEMP_qartod_spike"].values
    reverse = ds.isel(obs=np.r_[39:-1:-1, 79:39:-1])  # each profile stored bottom up
    backward = apply_qartod(reverse, AVERAGE_SPIKE)["TEMP_qartod_spike"].values
    np.testing.assert_array_equal(backward, forward[np.r_[39:-1:-1, 79:39:-1]])
    assert np.flatnonzero(forward >= 3).tolist() == [9, 10, 11]


def test_default_config_numbers():
    cfg = load_qc_config()
    assert default_config_path().name == "qc_default.yaml"
    assert set(cfg) == {"PRES", "TEMP", "PSAL", "water_level"}
    assert cfg["TEMP"]["qartod"]["gross_range"]["fail_span"] == [-2.5, 40.0]
    assert cfg["PSAL"]["qartod"]["gross_range"]["fail_span"] == [2.0, 41.0]
    assert "TEMP_ADJUSTED" in cfg["TEMP"]["aliases"]
    assert cfg["water_level"]["axis"] == "T"
    for entry in cfg.values():
        assert set(entry["qartod"]) <= set(TESTS)


def test_real_argo_profiles_are_mostly_good(argo):
    out = apply_qartod(argo)
    for var in ("PRES", "TEMP", "PSAL"):
        flags = out[f"{var}_qartod"].values
        assert flags.shape == argo[var].shape
        assert (flags == 1).mean() > 0.99, var
        assert not np.any(flags == 4), var
    assert set(out["TEMP"].attrs["ancillary_variables"].split()) == {
        "TEMP_qartod", *(f"TEMP_qartod_{t}" for t in TESTS)}
    # spike cannot be evaluated at the two ends of each profile, and only there
    spike = out["TEMP_qartod_spike"].values
    assert (spike == 2).sum() == 2 * argo.sizes["profile"]
    assert json.loads(out.attrs["qartod_config"])["TEMP"]["along"] == "PRES"


def test_padded_argo_file_gives_the_flags_of_the_ragged_array(argo_path):
    raw = xr.open_dataset(argo_path)
    keep = np.logical_and.reduce([np.isfinite(raw[v].values) for v in
                                  ("PRES_ADJUSTED", "TEMP_ADJUSTED", "PSAL_ADJUSTED")])
    padded = raw[["PRES_ADJUSTED", "TEMP_ADJUSTED", "PSAL_ADJUSTED"]].where(keep)
    out = apply_qartod(padded)
    ragged = apply_qartod(argo_ragged(argo_path))
    record = json.loads(out.attrs["qartod_config"])
    assert record["TEMP_ADJUSTED"]["along"] == "PRES_ADJUSTED"
    for var in ("TEMP", "PSAL"):
        for suffix in ("", *(f"_{t}" for t in TESTS)):
            flags = out[f"{var}_ADJUSTED_qartod{suffix}"].values
            np.testing.assert_array_equal(flags[keep], ragged[f"{var}_qartod{suffix}"].values)
            assert np.all(flags[~keep] == 9)


def test_real_sea_level_series_passes(sample):
    df = pd.read_csv(sample("tide_point_reyes"), na_values="-")
    time = pd.to_datetime(df["Date"] + " " + df["Time (GMT)"]).values
    ds = xr.Dataset({"water_level": ("time", df["Verified (ft)"].to_numpy() * 0.3048,
                                     {"units": "m", "standard_name": "sea_surface_height"})},
                    coords={"time": time})
    out = apply_qartod(ds)
    assert np.all(out["water_level_qartod"].values == 1)
    assert out["water_level_qartod"].attrs["standard_name"] == "sea_surface_height status_flag"
    # a 1.5 m spike in it fails
    ds["water_level"][3000] += 1.5
    out = apply_qartod(ds)
    assert out["water_level_qartod_spike"].values[3000] == 4
    assert out["water_level_qartod"].values[3000] == 4


# --------------------------------------------------------------------------- errors


def write(tmp_path, text: str):
    path = tmp_path / "qc.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "key"), [
    ("TEMP:\n  qartod:\n    spik: {suspect_threshold: 1}\n", "'TEMP.qartod.spik'"),
    ("TEMP:\n  qartod:\n    gross_range: {fail_span: [40, -2.5]}\n",
     "'TEMP.qartod.gross_range.fail_span'"),
    ("TEMP:\n  qartod:\n    gross_range: {fail_span: [0, 30], suspect_span: [-1, 20]}\n",
     "'TEMP.qartod.gross_range.suspect_span'"),
    ("TEMP:\n  qartod:\n    rate_of_change: {treshold: 1}\n",
     "'TEMP.qartod.rate_of_change.treshold'"),
    ("TEMP:\n  qartod:\n    rate_of_change: {threshold: -1}\n",
     "'TEMP.qartod.rate_of_change.threshold'"),
    ("TEMP:\n  qartod:\n    flat_line: {tolerance: 0.1, suspect_threshold: 10}\n",
     "'TEMP.qartod.flat_line.fail_threshold'"),
    ("TEMP:\n  qartod:\n    spike: {suspect_threshold: 5, fail_threshold: 1}\n",
     "'TEMP.qartod.spike.fail_threshold'"),
    ("TEMP:\n  qartod:\n    spike: {suspect_threshold: 1, method: median}\n",
     "'TEMP.qartod.spike.method'"),
    ("TEMP:\n  axis: X\n  qartod:\n    spike: {suspect_threshold: 1}\n", "'TEMP.axis'"),
    ("TEMP:\n  tests:\n    spike: {suspect_threshold: 1}\n", "'TEMP.tests'"),
    ("TEMP:\n  qartod:\n    spike: {suspect_threshold: yes}\n",
     "'TEMP.qartod.spike.suspect_threshold'"),
])
def test_config_errors_name_the_file_and_key(tmp_path, text, key):
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as err:
        load_qc_config(path)
    message = str(err.value)
    assert str(path) in message and key in message and "\n" not in message


def test_config_error_suggests_the_test_name(tmp_path):
    with pytest.raises(UsageError, match="Did you mean: spike"):
        load_qc_config(write(tmp_path, "TEMP:\n  qartod:\n    spik: {suspect_threshold: 1}\n"))
    with pytest.raises(UsageError, match=r"'TEMP\.qartod\.spik'"):
        apply_qartod(synthetic_series(), {"TEMP": {"qartod": {"spik": {}}}})


def test_config_file_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_qc_config(tmp_path / "missing.yaml")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_qc_config(write(tmp_path, "TEMP: [unclosed\n"))
    with pytest.raises(UsageError, match="maps variable names"):
        load_qc_config(write(tmp_path, "- a list\n"))


def test_test_names_of_ioos_qc_are_accepted():
    cfg = {"temp": {"qartod": {"gross_range_test": {"fail_span": [-5, 40]}}}}
    out = apply_qartod(synthetic_series(), cfg)
    assert "temp_qartod_gross_range" in out


def test_usage_and_data_errors():
    ds = synthetic_series()
    with pytest.raises(DataError, match="none of the configured variables"):
        apply_qartod(ds)  # default config: no PRES, TEMP, PSAL or water_level here
    with pytest.raises(UsageError, match="along='depth' is not a variable"):
        apply_qartod(ds, SERIES_CONFIG, along="depth")
    profile_cfg = {"temp": {**SERIES_CONFIG["temp"], "axis": "Z"}}
    with pytest.raises(UsageError, match="axis Z"):
        apply_qartod(ds, profile_cfg)
    bare = xr.Dataset({"temp": ("n", ds["temp"].values)})
    with pytest.raises(UsageError, match="rate_of_change, flat_line need a coordinate"):
        apply_qartod(bare, SERIES_CONFIG)
    grid = xr.Dataset({"temp": (("time", "depth"), np.zeros((5, 3)))},
                      coords={"time": pd.date_range("2024-01-01", periods=5, freq="h").values,
                              "depth": [1.0, 2.0, 3.0]})
    with pytest.raises(UsageError, match="transpose"):
        apply_qartod(grid, SERIES_CONFIG, along="time")
    bad = two_profiles().assign(row_size=("profile", [40, 39], {"sample_dimension": "obs"}))
    with pytest.raises(DataError, match="do not add up"):
        apply_qartod(bad, AVERAGE_SPIKE)


def test_dask_backed_flags_match(argo):
    with dask.config.set(scheduler="synchronous"):
        lazy = apply_qartod(argo.chunk({"obs": 500}))
    eager = apply_qartod(argo)
    for name in ("TEMP_qartod", "PSAL_qartod_spike"):
        np.testing.assert_array_equal(lazy[name].values, eager[name].values)


def test_flat_line_threshold_shorter_than_the_sampling_interval():
    """ioos_qc 3.0 flags every value when a flat-line window is shorter than one interval;
    here such a window is one interval: only the repeated value is suspect."""
    x = np.arange(10.0)
    x[5] = x[4]
    ds = xr.Dataset({"v": ("time", x)},
                    coords={"time": pd.date_range("2024-01-01", periods=10, freq="h").values})
    cfg = {"v": {"qartod": {"flat_line": {"tolerance": 0.01, "suspect_threshold": 1800,
                                          "fail_threshold": 7200}}}}
    flags = apply_qartod(ds, cfg)["v_qartod_flat_line"].values
    assert np.flatnonzero(flags != 1).tolist() == [5] and flags[5] == 3


def test_flag_constants():
    assert FLAG_VALUES.tolist() == [1, 2, 3, 4, 9]
