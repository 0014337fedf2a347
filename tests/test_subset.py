"""Tests of :mod:`oceandata.io.subset` on the real sample files.

Every expectation is an independent selection written by hand on the source file
(``ds.sel`` with the file's own variable names, or numpy masks on the raw netCDF4
arrays), never the output of :func:`subset` itself.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

import dask
import netCDF4
import numpy as np
import pytest
import xarray as xr

from oceandata.errors import DataError, UsageError
from oceandata.io.subset import parse_bbox, parse_depth, parse_range, subset

COBE = "gridded/cobe-sst2/year1950.nc"
NDJFM = "gridded/sst_ndjfm_anom.nc"
POP = "gridded/pop.nc"
TOS = "gridded/tos_ocean_bipolar_grid.nc"
PHC2 = "gridded/za_PHC2_T_S_gx1v3.nc"
FOAM = "gridded/foam.ocean.nc"
ETOPO20 = "gridded/etopo20.cdf"
POINT = "dsg/dsg_point_example.nc"
PROFILE = "dsg/dsg_profile_example.nc"
TIMESERIES = "dsg/dsg_timeseries_example.nc"
TRAJECTORY = "dsg/dsg_trajectory_example.nc"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def sample_path() -> Callable[[str], Path]:
    """``sample_path(relpath) -> Path`` of a real sample file (the one place files are found)."""
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    root = Path(os.environ.get("OCEANDATA_SAMPLE_DATA", default))

    def resolve(relpath: str) -> Path:
        path = root / relpath
        if not path.exists():
            pytest.fail(f"sample file {path} is missing: set OCEANDATA_SAMPLE_DATA to the "
                        "shared sample-data folder")
        return path

    return resolve


def raw(path: Path, name: str) -> np.ndarray:
    """A variable straight from netCDF4, fill values as NaN (floats) — no xarray involved."""
    with netCDF4.Dataset(path) as nc:
        values = nc.variables[name][:]
    if np.ma.isMaskedArray(values) and values.dtype.kind == "f":
        return values.filled(np.nan)
    return np.ma.getdata(values)


@pytest.fixture(scope="module")
def cobe(sample_path) -> xr.Dataset:
    with xr.open_dataset(sample_path(COBE)) as ds:
        yield ds


@pytest.fixture(scope="module")
def ndjfm(sample_path) -> xr.Dataset:
    with xr.open_dataset(sample_path(NDJFM)) as ds:
        yield ds


@pytest.fixture(scope="module")
def phc2(sample_path) -> xr.Dataset:
    with xr.open_dataset(sample_path(PHC2)) as ds:
        yield ds


def _no_compute(dsk, keys, **kwargs):
    raise AssertionError("subset computed a dask array of the data")


# --------------------------------------------------------------------------- regular grids


def test_cobe_box_keeps_descending_latitude(cobe):
    got = subset(cobe, bbox=(120, -10, 160, 10))
    expected = cobe.sel(lat=slice(10, -10), lon=slice(120, 160))
    assert got.sizes == {"time": 12, "lat": 20, "lon": 40}
    assert got.lat.values[0] > got.lat.values[-1]  # COBE's north-to-south order kept
    xr.testing.assert_identical(got, expected)
    assert got.attrs == cobe.attrs and got.sst.attrs == cobe.sst.attrs


def test_cobe_prime_meridian_box_joins_both_pieces_west_to_east(cobe, sample_path):
    got = subset(cobe, bbox=(-10, 30, 10, 50))
    lat, lon = raw(sample_path(COBE), "lat"), raw(sample_path(COBE), "lon")
    sst = raw(sample_path(COBE), "sst")
    rows = np.flatnonzero((lat >= 30) & (lat <= 50))
    cols = np.r_[np.flatnonzero(lon >= 350), np.flatnonzero(lon <= 10)]
    np.testing.assert_array_equal(got.lon.values, np.r_[np.arange(350.5, 360), np.arange(0.5, 10)])
    np.testing.assert_array_equal(got.lat.values, lat[rows])
    np.testing.assert_array_equal(got.sst.values, sst[:, rows][:, :, cols])


def test_cobe_antimeridian_box_given_in_minus180_180(cobe, sample_path):
    got = subset(cobe, bbox=(170, -10, -170, 10))
    lon = raw(sample_path(COBE), "lon")
    cols = np.flatnonzero((lon >= 170) & (lon <= 190))
    np.testing.assert_array_equal(got.lon.values, lon[cols])
    expected = cobe.sel(lat=slice(10, -10)).isel(lon=cols)
    xr.testing.assert_identical(got, expected)


def test_box_edges_on_grid_points_are_inclusive(cobe):
    got = subset(cobe, bbox=(0.5, 0.5, 10.5, 10.5))
    xr.testing.assert_identical(got, cobe.sel(lat=slice(10.5, 0.5), lon=slice(0.5, 10.5)))
    assert got.sizes["lat"] == got.sizes["lon"] == 11


def test_whole_globe_box_returns_the_data_unchanged(cobe):
    xr.testing.assert_identical(subset(cobe, bbox=(-180, -90, 180, 90)), cobe)
    xr.testing.assert_identical(subset(cobe, bbox=(0, -90, 360, 90)), cobe)


def test_ndjfm_dateline_box_keeps_bounds(ndjfm):
    # its longitude runs 117.5..262.5: the box 160E..150W is 160..210 there
    got = subset(ndjfm, bbox=(160, -10, -150, 10))
    expected = ndjfm.sel(longitude=slice(160, 210), latitude=slice(-10, 10))
    assert got.sizes["longitude"] == 10 and got.sizes["latitude"] == 4
    xr.testing.assert_identical(got, expected)
    assert (got.bounds_longitude.values[:, 0] == got.longitude.values - 2.5).all()


def test_cyclic_duplicate_meridian_is_kept_once(sample_path):
    # etopo20 longitudes run 20.17..380.17: the first and last are the same meridian
    with xr.open_dataset(sample_path(ETOPO20)) as ds:
        got = subset(ds, bbox=(15, 30, 25, 50))
    lon = raw(sample_path(ETOPO20), "ETOPO20X1_1081")
    assert np.isclose(lon[0] + 360, lon[-1], atol=1e-3)
    folded = got.ETOPO20X1_1081.values % 360
    assert np.all(np.diff(folded) > 0)  # west to east, no repeat
    expected = np.sort(np.unique(np.round(lon[((lon % 360) >= 15) & ((lon % 360) <= 25)]
                                          % 360, 3)))
    np.testing.assert_allclose(folded, expected, atol=1e-3)


def test_box_between_grid_points_says_the_data_extent(cobe):
    with pytest.raises(DataError, match=r"10\.6,0\.6,10\.9,0\.9.*latitude -89\.5\.\.89\.5 "
                                        r"and longitude 0\.5\.\.359\.5"):
        subset(cobe, bbox=(10.6, 0.6, 10.9, 0.9))


def test_box_outside_regional_data_says_the_data_extent(ndjfm):
    with pytest.raises(DataError, match=r"longitude 117\.5\.\.262\.5"):
        subset(ndjfm, bbox=(0, 0, 20, 10))


def test_bbox_without_longitude_names_what_is_missing(phc2):
    with pytest.raises(DataError, match=r"no longitude.*'lat_t'"):
        subset(phc2, bbox=(0, 0, 10, 10))


# --------------------------------------------------------------------------- curvilinear grids


def _curvilinear_expectation(path: Path, lat_name: str, lon_name: str, var: str,
                             inside: Callable[[np.ndarray, np.ndarray], np.ndarray]):
    """Smallest index box of the inside points, and the variable NaN outside them."""
    lat, lon = raw(path, lat_name), raw(path, lon_name)
    mask = inside(lat, lon)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    values = raw(path, var)[..., box[0], box[1]]
    return mask, box, np.where(mask[box], values, np.nan), lat[box]


def _pop_box(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    return (lat >= 40) & (lat <= 60) & (((lon % 360) >= 330) | ((lon % 360) <= 10))


def _tos_box(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    return (lat >= -10) & (lat <= 10) & ((lon % 360) >= 170) & ((lon % 360) <= 190)


def test_pop_curvilinear_box_across_the_prime_meridian(sample_path):
    path = sample_path(POP)
    with xr.open_dataset(path) as ds:
        got = subset(ds, bbox=(-30, 40, 10, 60))
        t_attrs = ds.t.attrs
    mask, _, expected_t, expected_lat = _curvilinear_expectation(path, "lat2d", "lon2d", "t",
                                                                 _pop_box)
    np.testing.assert_array_equal(got.t.values, expected_t)
    np.testing.assert_array_equal(got.lat2d.values, expected_lat)  # coordinates not masked
    # no inside point of the full grid is lost from the cut
    assert _pop_box(got.lat2d.values, got.lon2d.values).sum() == mask.sum() > 0
    assert got.t.attrs == t_attrs


def test_tos_bipolar_grid_dateline_box(sample_path):
    path = sample_path(TOS)
    with xr.open_dataset(path) as ds:
        got = subset(ds, bbox=(170, -10, -170, 10))
        names = set(ds.variables)
    mask, box, expected_tos, expected_lat = _curvilinear_expectation(path, "lat", "lon", "tos",
                                                                     _tos_box)
    np.testing.assert_array_equal(got.tos.values, expected_tos)
    np.testing.assert_array_equal(got.lat.values, expected_lat)
    assert _tos_box(got.lat.values, got.lon.values).sum() == mask.sum() > 0
    # bounds are coordinates too: cut, not masked
    np.testing.assert_array_equal(got.lat_bnds.values, raw(path, "lat_bnds")[box])
    assert set(got.variables) == names


# --------------------------------------------------------------------------- DSG


def test_point_features_inside_the_box(sample_path):
    path = sample_path(POINT)
    with xr.open_dataset(path) as ds:
        got = subset(ds, bbox=(-122, 30, -118, 34))
    lat, lon = raw(path, "LATITUDE"), raw(path, "LONGITUDE")
    rows = (lat >= 30) & (lat <= 34) & (lon >= -122) & (lon <= -118)
    assert 0 < rows.sum() < rows.size
    np.testing.assert_array_equal(got.LARVAE_COUNT.values, raw(path, "LARVAE_COUNT")[rows])


def test_timeseries_stations_across_the_dateline_keep_their_rows(sample_path):
    path = sample_path(TIMESERIES)
    with xr.open_dataset(path) as ds:
        got = subset(ds, bbox=(170, -10, -170, 10))
    lat, lon, sizes = raw(path, "latitude"), raw(path, "longitude"), raw(path, "rowSize")
    stations = (lat >= -10) & (lat <= 10) & (lon >= 170) & (lon <= 190)
    owner = np.repeat(np.arange(sizes.size), sizes)  # station of each observation
    np.testing.assert_array_equal(got.rowSize.values, sizes[stations])
    np.testing.assert_array_equal(got.T_25.values, raw(path, "T_25")[stations[owner]])
    np.testing.assert_array_equal(got.longitude.values, lon[stations])


def test_timeseries_time_recounts_rows(sample_path):
    path = sample_path(TIMESERIES)
    with xr.open_dataset(path) as ds:
        got = subset(ds, time=("2017-02", "2017-02"))
        stamps = ds.time.values
    obs = (stamps >= np.datetime64("2017-02-01")) & (stamps < np.datetime64("2017-03-01"))
    sizes = raw(path, "rowSize")
    owner = np.repeat(np.arange(sizes.size), sizes)
    np.testing.assert_array_equal(got.rowSize.values, np.bincount(owner[obs],
                                                                  minlength=sizes.size))
    np.testing.assert_array_equal(got.T_25.values, raw(path, "T_25")[obs])


def test_profile_box_and_depth_keep_rows_consistent(sample_path):
    path = sample_path(PROFILE)
    with xr.open_dataset(path) as ds:
        got = subset(ds, bbox=(-165, 70, -160, 72), depth=(0, 20))
    lat, lon, sizes = raw(path, "latitude"), raw(path, "longitude"), raw(path, "rowSize")
    depth = raw(path, "depth")
    profiles = (lat >= 70) & (lat <= 72) & (lon >= -165) & (lon <= -160)
    owner = np.repeat(np.arange(sizes.size), sizes)
    obs = profiles[owner] & (depth >= 0) & (depth <= 20)
    assert 0 < profiles.sum() < profiles.size
    np.testing.assert_array_equal(got.rowSize.values,
                                  np.bincount(owner[obs], minlength=sizes.size)[profiles])
    np.testing.assert_array_equal(got.temp.values, raw(path, "temp")[obs])


#: The trajectory file declares two fill values for ``rowsize``; both readers warn about it.
_TWO_FILL_VALUES = pytest.mark.filterwarnings("ignore:.*(fill values|missing_value|invalid value)")


@_TWO_FILL_VALUES
def test_trajectory_observations_inside_the_box(sample_path):
    path = sample_path(TRAJECTORY)
    with xr.open_dataset(path) as ds:
        got = subset(ds, bbox=(-130, 30, -110, 50))
    lat, lon, sizes = raw(path, "latitude"), raw(path, "longitude"), raw(path, "rowsize")
    obs = (lat >= 30) & (lat <= 50) & (lon >= -130) & (lon <= -110)
    owner = np.repeat(np.arange(sizes.size), sizes.astype(int))
    assert 0 < obs.sum() < obs.size
    np.testing.assert_array_equal(got.fCO2_recommended.values,
                                  raw(path, "fCO2_recommended")[obs])
    np.testing.assert_array_equal(got.rowsize.values, np.bincount(owner[obs],
                                                                  minlength=sizes.size))


@_TWO_FILL_VALUES
def test_ragged_array_with_bad_row_sizes_is_refused(sample_path):
    with xr.open_dataset(sample_path(TRAJECTORY)) as ds:
        broken = ds.assign(rowsize=ds.rowsize.copy(data=[413.0, np.nan, 160.0, 167.0]))
        with pytest.raises(DataError, match=r"ragged array is not supported yet.*filter"):
            subset(broken, bbox=(-130, 30, -110, 50))


# --------------------------------------------------------------------------- time


def test_time_partial_dates_cover_whole_months(cobe):
    got = subset(cobe, time=("1950-03", "1950-05"))
    xr.testing.assert_identical(got, cobe.sel(time=slice("1950-03", "1950-05")))
    assert got.sizes["time"] == 3


def test_time_open_side_and_datetime_objects(cobe):
    assert subset(cobe, time=(None, "1950-02")).sizes["time"] == 2
    got = subset(cobe, time=(dt.datetime(1950, 3, 1), np.datetime64("1950-05-01")))
    np.testing.assert_array_equal(got.time.values, cobe.time.values[2:5])


def test_time_outside_the_data_gives_its_extent(cobe):
    with pytest.raises(DataError, match="time 1900-01-01/1910-01-01 is outside the data's time "
                                        "range 1950-01-01/1950-12-01"):
        subset(cobe, time=("1900-01-01", "1910-01-01"))


def test_time_noleap_cftime_calendar(phc2):
    assert phc2.time.dt.calendar == "noleap"
    assert subset(phc2, time=("0699-07", "0699-07")).sizes["time"] == 1
    with pytest.raises(DataError, match="0699-07-16"):
        subset(phc2, time=("0700", None))


def test_time_on_undecoded_axis_is_a_data_error(sample_path):
    with xr.open_dataset(sample_path(FOAM), decode_times=False) as ds, \
            pytest.raises(DataError, match="not decoded to dates"):
        subset(ds, time=("0001", None))


# --------------------------------------------------------------------------- depth


def test_depth_in_centimetres(phc2, sample_path):
    got = subset(phc2, depth=(0, 100))
    z_t = raw(sample_path(PHC2), "z_t")  # centimetres
    levels = z_t <= 10000
    np.testing.assert_array_equal(got.z_t.values, z_t[levels])
    assert got.z_t.values.max() <= 10000 < z_t[~levels].min()
    np.testing.assert_array_equal(got.TEMP.values,
                                  raw(sample_path(PHC2), "TEMP")[:, :, levels, :])
    deeper = subset(phc2, depth=(100, None))
    np.testing.assert_array_equal(deeper.z_t.values, z_t[z_t >= 10000])


def test_depth_on_negative_levels_reads_them_as_heights(sample_path):
    with xr.open_dataset(sample_path(FOAM), decode_times=False) as ds:
        got = subset(ds, depth=(0, 100))  # `lev` is -5300..-10 metres, no `positive`
        lev = raw(sample_path(FOAM), "lev")
        np.testing.assert_array_equal(got.lev.values, lev[(lev >= -100) & (lev <= 0)])
        up = ds.assign_coords(lev=ds.lev.assign_attrs(positive="up"))
        xr.testing.assert_identical(subset(up, depth=(0, 100)).V, got.V.assign_coords(
            lev=got.lev.assign_attrs(positive="up")))


def test_depth_outside_the_data_gives_its_extent(phc2):
    with pytest.raises(DataError, match=r"depth 6000/7000 m .* 5\.00622/5375 m"):
        subset(phc2, depth=(6000, 7000))


def test_depth_without_vertical_axis(cobe):
    with pytest.raises(DataError, match="no vertical coordinate"):
        subset(cobe, depth=(0, 10))


# --------------------------------------------------------------------------- variables


def test_variables_keep_their_bounds(ndjfm):
    got = subset(ndjfm, variables=["sst"])
    assert set(got.data_vars) == {"sst", "bounds_time", "bounds_latitude", "bounds_longitude"}
    xr.testing.assert_identical(got.sst, ndjfm.sst)


def test_variables_keep_dsg_structure(sample_path):
    with xr.open_dataset(sample_path(TIMESERIES)) as ds:
        got = subset(ds, variables=["T_25"])
    assert {"T_25", "rowSize", "station", "latitude", "longitude", "time"} <= set(got.variables)
    assert "QT_5025" not in got.variables and "wmo_platform_code" not in got.variables


def test_unknown_variable_lists_valid_names(ndjfm):
    with pytest.raises(DataError, match=r"'sts'.*valid names: .*sst.*Did you mean: sst"):
        subset(ndjfm, variables=["sts"])


# --------------------------------------------------------------------------- laziness


def test_nothing_is_computed(sample_path):
    with xr.open_dataset(sample_path(COBE), chunks={}) as cobe, \
            dask.config.set(scheduler=_no_compute):
        got = subset(cobe, bbox=(-10, 30, 10, 50), time=("1950-06", None), variables=["sst"])
    assert got.sst.chunks is not None
    with xr.open_dataset(sample_path(POP), chunks={}) as pop:
        pop = pop.assign_coords({k: v.load() for k, v in pop.coords.items()})
        with dask.config.set(scheduler=_no_compute):
            got = subset(pop, bbox=(-30, 40, 10, 60))
    assert got.t.chunks is not None


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("bbox", "pattern"), [
    ((0, 40, 10, 10), r"bbox south \(40\) is greater than north \(10\): give W,S,E,N"),
    ((0, -95, 10, 10), r"bbox south \(-95\) is outside -90\.\.90"),
    ((0, 0, 10, 91), r"bbox north \(91\) is outside -90\.\.90"),
    ((400, 0, 10, 10), r"bbox west \(400\) is outside -180\.\.360"),
    ((0, 0, -181, 10), r"bbox east \(-181\) is outside -180\.\.360"),
    ((0, 0, 10), r"bbox has 3 values: give four"),
    ((0, 0, "x", 10), r"bbox .*'x'.* is not four numbers"),
    ((0, float("nan"), 10, 10), r"bbox south \(nan\) is not a number"),
])
def test_bad_bbox(cobe, bbox, pattern):
    with pytest.raises(UsageError, match=pattern):
        subset(cobe, bbox=bbox)


@pytest.mark.parametrize(("time", "pattern"), [
    (("1950-06", "1950-02"), r"time start \(1950-06\) is after end \(1950-02\)"),
    (("yesterday", None), r"time 'yesterday' is not an ISO date"),
    (("1950-13", None), r"time '1950-13' has month 13"),
    (("1950",), r"time .* is not a pair"),
])
def test_bad_time(cobe, time, pattern):
    with pytest.raises(UsageError, match=pattern):
        subset(cobe, time=time)


def test_bad_depth_and_variables(phc2):
    with pytest.raises(UsageError, match=r"depth min \(100\) is greater than max \(10\)"):
        subset(phc2, depth=(100, 10))
    with pytest.raises(UsageError, match=r"depth .*'a'.* is not two numbers"):
        subset(phc2, depth=("a", 10))
    with pytest.raises(UsageError, match="variables is empty"):
        subset(phc2, variables=[])


def test_parsers():
    assert parse_bbox("170, -10, -170, 10") == (170.0, -10.0, -170.0, 10.0)
    assert parse_range("1997-01/1998-12") == ("1997-01", "1998-12")
    assert parse_range("/2000-01-01T12:00") == (None, "2000-01-01T12:00")
    assert parse_depth("0/100") == (0.0, 100.0)
    assert parse_depth("500/") == (500.0, None)


@pytest.mark.parametrize(("parser", "text", "pattern"), [
    (parse_bbox, "1,2,3", r"--bbox '1,2,3' is not W,S,E,N"),
    (parse_bbox, "a,b,c,d", r"--bbox 'a,b,c,d' is not W,S,E,N"),
    (parse_bbox, "0,50,10,40", r"bbox south \(50\) is greater than north \(40\)"),
    (parse_range, "1997-01", r"--time '1997-01' is not START/END"),
    (parse_range, "soon/later", r"time 'soon' is not an ISO date"),
    (parse_range, "2000/1990", r"time start \(2000\) is after end \(1990\)"),
    (parse_depth, "0-100", r"--depth '0-100' is not MIN/MAX"),
    (parse_depth, "deep/", r"--depth 'deep/' is not MIN/MAX"),
    (parse_depth, "200/100", r"depth min \(200\) is greater than max \(100\)"),
])
def test_parsers_reject_bad_text(parser, text, pattern):
    with pytest.raises(UsageError, match=pattern):
        parser(text)
