"""Tests of :mod:`oceandata.ingest.chunks`: option parsing, chunk plans and read costs.

Expected plans and costs are worked out by hand (the arithmetic is written next to each
number), never taken from the functions under test.
"""

from __future__ import annotations

import math

import dask
import dask.array as da
import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from oceandata.errors import DataError, UsageError
from oceandata.ingest.chunks import parse_chunks_option, plan_chunks, plan_dataset, read_cost

COBE = "gridded/cobe-sst2/year1950.nc"
POP = "gridded/pop.nc"
FOAM = "gridded/foam.ocean.nc"
MIB16 = 16 * 2**20
HORIZONTAL = ["lat", "lon"]


def _bytes(plan: dict[str, int], itemsize: int) -> int:
    return math.prod(plan.values()) * itemsize


@pytest.fixture(scope="module")
def cobe_sizes(sample) -> dict[str, int]:
    """COBE-SST2 dimensions with 60 years of monthly steps (the sample holds one year)."""
    with xr.open_dataset(sample(COBE)) as ds:
        sizes = dict(ds.sst.sizes)
        assert sizes == {"time": 12, "lat": 180, "lon": 360}
        assert ds.sst.dtype.itemsize == 4
    return {**sizes, "time": 720}


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(("text", "expected"), [
    ("auto", "auto"),
    ("map", "map"),
    (" TimeSeries ", "timeseries"),
    ("time=12,lat=90", {"time": 12, "lat": 90}),
    ("time=12, lat=-1 ,lon=360", {"time": 12, "lat": -1, "lon": 360}),
    ("depth=1", {"depth": 1}),
])
def test_parse_chunks_option_good(text, expected):
    assert parse_chunks_option(text) == expected


def test_parse_chunks_option_keeps_the_order_given():
    assert list(parse_chunks_option("lon=10,time=3,lat=5")) == ["lon", "time", "lat"]


def test_parse_chunks_option_bad_word_message():
    with pytest.raises(UsageError) as info:
        parse_chunks_option("x")
    assert str(info.value) == ("--chunks 'x': give auto, map, timeseries or DIM=N,... "
                               "(e.g. time=12,lat=90)")


@pytest.mark.parametrize(("text", "pattern"), [
    ("", r"^--chunks '': give auto, map, timeseries or DIM=N"),
    ("maps", r"^--chunks 'maps': give auto, map, timeseries or DIM=N"),
    ("time=12,", r"^--chunks 'time=12,': give auto"),
    ("=12", r"^--chunks '=12': give auto"),
    ("time:12", r"^--chunks 'time:12': give auto"),
    ("time=", r"^--chunks 'time=': give auto"),
    ("time=0", r"size '0' of 'time' is not a positive integer or -1 .*e\.g\. time=12,lat=90"),
    ("time=-2", r"size '-2' of 'time' is not a positive integer or -1"),
    ("time=1.5", r"size '1.5' of 'time' is not a positive integer or -1"),
    ("lat=abc", r"size 'abc' of 'lat' is not a positive integer or -1"),
    ("time=12,time=6", r"dimension 'time' is given twice"),
])
def test_parse_chunks_option_bad(text, pattern):
    with pytest.raises(UsageError, match=pattern) as info:
        parse_chunks_option(text)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- plans: COBE


def test_map_plan_of_cobe_60_years(cobe_sizes):
    plan = plan_chunks(cobe_sizes, 4, "map", time_dim="time", horizontal_dims=HORIZONTAL)
    assert plan["lat"] == 180 and plan["lon"] == 360
    field = 180 * 360 * 4  # 259 200 bytes
    assert plan["time"] * field <= MIB16
    assert (plan["time"] + 1) * field > MIB16  # as many steps as fit
    assert plan == {"time": 64, "lat": 180, "lon": 360}  # 16 777 216 // 259 200 = 64


def test_timeseries_plan_of_cobe_60_years(cobe_sizes):
    plan = plan_chunks(cobe_sizes, 4, "timeseries", time_dim="time", horizontal_dims=HORIZONTAL)
    assert plan["time"] == 720
    assert _bytes(plan, 4) <= MIB16 * 1.01
    # 16 777 216 // (720 * 4) = 5825 elements per tile; 76 * 76 = 5776 <= 5825 < 77 * 76
    assert plan == {"time": 720, "lat": 76, "lon": 76}
    assert _bytes(plan, 4) == 720 * 76 * 76 * 4 == 16_634_880


def test_auto_plan_of_cobe_60_years(cobe_sizes):
    plan = plan_chunks(cobe_sizes, 4, "auto", time_dim="time", horizontal_dims=HORIZONTAL)
    assert MIB16 / 2 <= _bytes(plan, 4) <= MIB16 * 2
    # one factor for all three: (16 777 216 / (720 * 180 * 360 * 4)) ** (1/3) = 0.4480
    f = (MIB16 / (720 * 180 * 360 * 4)) ** (1 / 3)
    assert abs(f - 0.4480) < 1e-4
    for dim, length in cobe_sizes.items():
        assert abs(plan[dim] - f * length) <= 1.5, (dim, plan[dim], f * length)


def test_plans_of_one_cobe_year_are_the_whole_array(cobe_sizes):
    sizes = {**cobe_sizes, "time": 12}  # 3 110 400 bytes < 16 MiB
    for layout in ("map", "timeseries", "auto"):
        assert plan_chunks(sizes, 4, layout, time_dim="time",
                           horizontal_dims=HORIZONTAL) == sizes


def test_timeseries_keeps_full_time_when_a_column_is_too_big():
    plan = plan_chunks({"time": 720, "lat": 180, "lon": 360}, 4, "timeseries",
                       time_dim="time", horizontal_dims=HORIZONTAL, target_bytes=1000)
    assert plan == {"time": 720, "lat": 1, "lon": 1}


def test_timeseries_tile_keeps_a_short_dimension_whole():
    # 4000 // (10 * 4) = 100 elements; lat has only 5, so lon takes 100 // 5 = 20
    plan = plan_chunks({"time": 10, "lat": 5, "lon": 400}, 4, "timeseries",
                       time_dim="time", horizontal_dims=HORIZONTAL, target_bytes=4000)
    assert plan == {"time": 10, "lat": 5, "lon": 20}


def test_rounding_goes_up_where_the_target_still_holds():
    # timeseries: 62 elements per tile, edge sqrt(62) = 7.87; 8 x 7 = 56 <= 62 < 8 x 8 = 64
    plan = plan_chunks({"time": 1, "lat": 100, "lon": 100}, 4, "timeseries", time_dim="time",
                       horizontal_dims=HORIZONTAL, target_bytes=62 * 4)
    assert plan == {"time": 1, "lat": 8, "lon": 7}
    # auto: 40 of 64 elements, f = (40 / 64) ** (1/3) = 0.855 -> 3.42 each;
    # 4 x 3 x 3 = 36 <= 40 < 4 x 4 x 3 = 48
    plan = plan_chunks({"time": 4, "lat": 4, "lon": 4}, 1, "auto", time_dim="time",
                       horizontal_dims=HORIZONTAL, target_bytes=40)
    assert plan == {"time": 4, "lat": 3, "lon": 3}


def test_map_splits_the_vertical_when_one_field_is_too_big():
    sizes = {"time": 10, "lev": 24, "lat": 128, "lon": 128}
    layer = 128 * 128 * 4  # 65 536 bytes
    plan = plan_chunks(sizes, 4, "map", time_dim="time", horizontal_dims=HORIZONTAL,
                       target_bytes=5 * layer + 100)
    assert plan == {"time": 1, "lev": 5, "lat": 128, "lon": 128}
    plan = plan_chunks(sizes, 4, "map", time_dim="time", horizontal_dims=HORIZONTAL,
                       target_bytes=50 * layer)  # 2 whole 24-level fields
    assert plan == {"time": 2, "lev": 24, "lat": 128, "lon": 128}


def test_map_never_splits_the_horizontal_field_of_a_time_step():
    plan = plan_chunks({"time": 10, "lat": 128, "lon": 128}, 4, "map", time_dim="time",
                       horizontal_dims=HORIZONTAL, target_bytes=1000)
    assert plan == {"time": 1, "lat": 128, "lon": 128}


def test_auto_with_a_vertical_dimension_scales_only_time_and_horizontal():
    # 10 levels whole; 4 194 304 // 10 = 419 430 elements for time x lat x lon
    # f = (419 430 / (100 * 180 * 360)) ** (1/3) = 0.4035 -> 40.4, 72.6, 145.3
    plan = plan_chunks({"time": 100, "lev": 10, "lat": 180, "lon": 360}, 4, "auto",
                       time_dim="time", horizontal_dims=HORIZONTAL)
    assert plan["lev"] == 10
    for dim, target in (("time", 40.4), ("lat", 72.6), ("lon", 145.3)):
        assert abs(plan[dim] - target) <= 1.5, (dim, plan)
    assert _bytes(plan, 4) <= MIB16


def test_variables_without_time():
    sizes = {"lev": 24, "lat": 128, "lon": 128}
    layer = 128 * 128 * 4
    for layout in ("map", "auto", "timeseries"):
        # fits: whole array
        assert plan_chunks(sizes, 4, layout, time_dim=None, horizontal_dims=HORIZONTAL) == sizes
        # five layers fit
        assert plan_chunks(sizes, 4, layout, time_dim="time", horizontal_dims=HORIZONTAL,
                           target_bytes=5 * layer) == {"lev": 5, "lat": 128, "lon": 128}
        # not even one layer: split the horizontal too, leading dimension first
        assert plan_chunks(sizes, 4, layout, time_dim=None, horizontal_dims=HORIZONTAL,
                           target_bytes=10 * 128 * 4) == {"lev": 1, "lat": 10, "lon": 128}


# --------------------------------------------------------------------------- explicit sizes


def test_explicit_sizes():
    sizes = {"time": 720, "lat": 180, "lon": 360}
    kw = {"time_dim": "time", "horizontal_dims": HORIZONTAL}
    assert plan_chunks(sizes, 4, {"time": 12}, **kw) == {"time": 12, "lat": 180, "lon": 360}
    assert plan_chunks(sizes, 4, {"time": 12, "lat": 90, "lon": -1}, **kw) == {
        "time": 12, "lat": 90, "lon": 360}
    assert plan_chunks(sizes, 4, {"lat": 1000}, **kw) == {"time": 720, "lat": 180, "lon": 360}
    assert plan_chunks(sizes, 4, "time=1,lon=36", **kw) == {"time": 1, "lat": 180, "lon": 36}
    assert plan_chunks(sizes, 4, {}, **kw) == sizes


def test_explicit_unknown_dimension_names_the_valid_ones():
    with pytest.raises(UsageError, match=r"'depth'.*valid dimensions: time, lat, lon"):
        plan_chunks({"time": 720, "lat": 180, "lon": 360}, 4, {"depth": 3},
                    time_dim="time", horizontal_dims=HORIZONTAL)


@pytest.mark.parametrize("size", [0, -3, 2.5, "12", True])
def test_explicit_bad_size(size):
    with pytest.raises(UsageError, match="is not a positive integer or -1"):
        plan_chunks({"time": 720}, 4, {"time": size}, time_dim="time", horizontal_dims=[])


def test_unknown_layout_and_bad_numbers():
    kw = {"time_dim": "time", "horizontal_dims": HORIZONTAL}
    with pytest.raises(UsageError, match=r"^layout 'maps': give auto, map, timeseries"):
        plan_chunks({"time": 3}, 4, "maps", **kw)
    with pytest.raises(UsageError, match="itemsize 0 is not a positive integer"):
        plan_chunks({"time": 3}, 0, "map", **kw)
    with pytest.raises(UsageError, match="target_bytes -1 is not a positive integer"):
        plan_chunks({"time": 3}, 4, "map", target_bytes=-1, **kw)


# --------------------------------------------------------------------------- bounds (random)


@st.composite
def _cases(draw):
    ndim = draw(st.integers(1, 4))
    names = [f"d{i}" for i in range(ndim)]
    sizes = {n: draw(st.integers(0, 3000)) for n in names}
    time_dim = draw(st.sampled_from([None, *names]))
    horizontal = draw(st.lists(st.sampled_from(names), max_size=2, unique=True))
    itemsize = draw(st.sampled_from([1, 2, 4, 8]))
    target = draw(st.integers(1, 2**26))
    layout = draw(st.sampled_from(["map", "timeseries", "auto"]))
    return sizes, itemsize, layout, time_dim, horizontal, target


@settings(max_examples=400, deadline=None)
@given(_cases())
def test_every_plan_respects_bounds_and_target(case):
    sizes, itemsize, layout, time_dim, horizontal, target = case
    plan = plan_chunks(sizes, itemsize, layout, time_dim=time_dim, horizontal_dims=horizontal,
                       target_bytes=target)
    assert list(plan) == list(sizes)
    for dim, n in sizes.items():
        assert isinstance(plan[dim], int)
        assert 1 <= plan[dim] <= max(1, n)
    length = {d: max(1, n) for d, n in sizes.items()}
    chunk = _bytes(plan, itemsize)
    whole = _bytes(length, itemsize)
    if whole <= target:  # everything fits in one chunk
        assert plan == length
        return
    has_time = time_dim is not None
    hor = [d for d in sizes if d in horizontal and d != time_dim]
    other = [d for d in sizes if d != time_dim and d not in hor]
    hor_bytes = math.prod(length[d] for d in hor) * itemsize
    other_bytes = math.prod(length[d] for d in other) * itemsize
    if not has_time:
        if chunk > target:
            assert all(plan[d] == 1 for d in sizes)  # only when one element is too big
    elif layout == "map":
        assert all(plan[d] == length[d] for d in hor)
        if hor_bytes <= target:
            assert chunk <= target
    elif layout == "timeseries":
        assert plan[time_dim] == length[time_dim]
        if length[time_dim] * itemsize <= target:
            assert chunk <= target
            # within a factor 2 of the target unless the tile is the whole space
            if any(plan[d] < length[d] for d in sizes):
                assert 2 * chunk > target - itemsize * (length[time_dim] + 1)
        else:
            assert all(plan[d] == 1 for d in sizes if d != time_dim)
    else:  # auto
        if other_bytes <= target:
            assert all(plan[d] == length[d] for d in other)
            assert chunk <= target
            assert 2 * chunk > target - itemsize * (math.prod(length[d] for d in other) + 1)


# --------------------------------------------------------------------------- plan_dataset


def test_plan_dataset_cobe(sample):
    with xr.open_dataset(sample(COBE)) as ds:
        # 5 fields of 180 x 360 float32
        plans = plan_dataset(ds, "map", target_bytes=5 * 180 * 360 * 4)
        assert plans == {"sst": {"time": 5, "lat": 180, "lon": 360}}
        assert plan_dataset(ds, "timeseries") == {"sst": {"time": 12, "lat": 180, "lon": 360}}
        assert plan_dataset(ds, "time=1") == {"sst": {"time": 1, "lat": 180, "lon": 360}}
        with pytest.raises(UsageError, match=r"'depth'.*valid dimensions: time, lat, lon"):
            plan_dataset(ds, {"depth": 3})


def test_plan_dataset_finds_curvilinear_horizontal_dims(sample):
    with xr.open_dataset(sample(POP)) as pop:
        steps = xr.DataArray(pd.date_range("2000-01-01", periods=10, freq="MS"), dims="time",
                             attrs={"standard_name": "time"})
        ds = pop.expand_dims(time=steps)
        # auto: 2 MiB / (10 * 384 * 320 * 4 bytes) = 0.4267; f = 0.4267 ** (1/3) = 0.7528
        # -> time 7.5, nlat 289, nlon 241 (nlat and nlon scaled: they are horizontal)
        plans = plan_dataset(ds, "auto", target_bytes=2 * 2**20)
    assert set(plans) == {"urot", "vrot", "t", "lat2d", "lon2d"}  # 2-D coordinates too
    for name in ("urot", "vrot", "t"):
        plan = plans[name]
        assert list(plan) == ["time", "nlat", "nlon"]
        for dim, target in (("time", 7.5), ("nlat", 289.1), ("nlon", 240.9)):
            assert abs(plan[dim] - target) <= 1.5, (name, plan)
    # no time: whole 384 x 320 float32 (491 520 bytes) fits
    assert plans["lat2d"] == {"nlat": 384, "nlon": 320}


def test_plan_dataset_with_two_latitude_grids():
    # POP-style T and U grids: subset would call this ambiguous; the planner takes both
    deg_n, deg_e = {"units": "degrees_north"}, {"units": "degrees_east"}
    grid = np.zeros((40, 50))
    ds = xr.Dataset(
        {"temp": (("time", "nlat", "nlon"), np.zeros((8, 40, 50), np.float32))},
        coords={"time": ("time", pd.date_range("2000", periods=8, freq="MS"),
                         {"standard_name": "time"}),
                "TLAT": (("nlat", "nlon"), grid, deg_n), "ULAT": (("nlat", "nlon"), grid, deg_n),
                "TLONG": (("nlat", "nlon"), grid, deg_e),
                "ULONG": (("nlat", "nlon"), grid, deg_e)})
    # auto, 2000 of 16 000 elements: f = (1/8) ** (1/3) = 0.5 -> time 4, nlat 20, nlon 25
    plans = plan_dataset(ds, "auto", target_bytes=2000 * 4)
    assert plans["temp"] == {"time": 4, "nlat": 20, "nlon": 25}
    # TLAT is float64 without time: 8000 // 8 = 1000 elements, nlon whole, 1000 // 50 = 20 rows
    assert plans["TLAT"] == {"nlat": 20, "nlon": 50}


def test_plan_dataset_foam_levels(sample):
    with xr.open_dataset(sample(FOAM), decode_times=False) as ds:
        # auto, target 24 * 64 * 64 * 4: lev (not horizontal) whole, 4096 elements left for
        # time x lat x lon; time (length 1) held at 1, so lat = lon = sqrt(4096) = 64
        plans = plan_dataset(ds, "auto", target_bytes=24 * 64 * 64 * 4)
        assert plans == {"V": {"time": 1, "lev": 24, "lat": 64, "lon": 64}}
        # map, target 3 layers: lev split, lat/lon whole
        plans = plan_dataset(ds, "map", target_bytes=3 * 128 * 128 * 4)
        assert plans == {"V": {"time": 1, "lev": 3, "lat": 128, "lon": 128}}


# --------------------------------------------------------------------------- read_cost


@pytest.fixture
def grid() -> xr.Dataset:
    """24 months x 10 lat x 20 lon float32 ``sst`` and a 10 x 20 int8 ``mask``.

    lat = -45, -35, ..., 45; lon = 5, 23, ..., 347 (0..360 convention).
    """
    time = pd.date_range("2000-01-01", periods=24, freq="MS")
    lat = np.arange(-45.0, 46.0, 10.0)
    lon = 5.0 + 18.0 * np.arange(20)
    return xr.Dataset(
        {"sst": (("time", "lat", "lon"), np.zeros((24, 10, 20), np.float32)),
         "mask": (("lat", "lon"), np.ones((10, 20), np.int8))},
        coords={"time": ("time", time, {"standard_name": "time"}),
                "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
                "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"})})


# Hand plans for target 4000 bytes (1000 float32 elements, a field is 200):
#   map        time 1000 // 200 = 5, lat/lon whole; one chunk 5 * 200 * 4 = 4000 bytes
#   timeseries 1000 // 24 = 41 elements per tile -> 6 x 6; one chunk 24 * 36 * 4 = 3456 bytes
MAP = {"time": 5, "lat": 10, "lon": 20}
SERIES = {"time": 24, "lat": 6, "lon": 6}
POINT = (130, -16, 132, -14)  # lat index 3 (-15), lon index 7 (131)


def test_hand_plans_of_the_small_grid(grid):
    assert plan_dataset(grid, "map", target_bytes=4000) == {
        "sst": MAP, "mask": {"lat": 10, "lon": 20}}
    assert plan_dataset(grid, "timeseries", target_bytes=4000)["sst"] == SERIES


def test_point_time_series_is_cheap_with_the_timeseries_layout(grid):
    # map: all 5 time chunks (0-4, 5-9, ..., 20-24) of one whole field: 5 * 4000
    assert read_cost(grid, MAP, bbox=POINT, variables="sst") == 20_000
    # timeseries: lat 3 in chunk 0, lon 7 in chunk 1, one chunk of 3456 bytes
    assert read_cost(grid, SERIES, bbox=POINT, variables="sst") == 3456
    # same request, every variable, per-variable plans: mask (10 x 20 int8) is one chunk
    plans = {"sst": MAP, "mask": {"lat": 10, "lon": 20}}
    assert read_cost(grid, plans, bbox=POINT) == 20_000 + 200


def test_one_map_is_cheap_with_the_map_layout(grid):
    # one month (index 2): map reads time chunk 0 only
    assert read_cost(grid, MAP, time=("2000-03", "2000-03"), variables=["sst"]) == 4000
    # timeseries: 1 time chunk x ceil(10 / 6) = 2 x ceil(20 / 6) = 4 tiles = 8 * 3456
    assert read_cost(grid, SERIES, time="2000-03/2000-03", variables=["sst"]) == 27_648


def test_read_cost_counts_distinct_chunks(grid):
    # months 3..10 (indices 3-10) are in time chunks 0, 1, 2
    assert read_cost(grid, MAP, time=("2000-04", "2000-11"), variables="sst") == 3 * 4000
    # a box across the 0/360 seam keeps lon 347 (index 19) and 5 (index 0): lon chunks 3 and 0
    # of 6, all lat (2 chunks), all time (1 chunk): 4 tiles
    cost = read_cost(grid, SERIES, bbox=(-20, -50, 20, 50), variables="sst")
    assert cost == 4 * 3456
    # no request: every chunk of every variable; chunk sizes above the length are whole
    assert read_cost(grid, {"time": 100}) == 24 * 10 * 20 * 4 + 10 * 20
    assert read_cost(grid, {"time": -1, "lat": 6}) == 2 * (24 * 6 * 20 * 4) + 2 * (6 * 20)


def test_read_cost_with_depth():
    depth = [5.0, 15.0, 25.0, 50.0, 100.0]
    ds = xr.Dataset(
        {"temp": (("depth", "lat"), np.zeros((5, 4), np.float64))},
        coords={"depth": ("depth", depth, {"units": "m", "positive": "down", "axis": "Z"}),
                "lat": ("lat", [0.0, 1.0, 2.0, 3.0], {"units": "degrees_north"})})
    # depth 0..20 m -> levels 0, 1 -> depth chunk 0 of 2; one chunk 2 * 4 * 8 bytes
    assert read_cost(ds, {"depth": 2}, depth=(0, 20)) == 64
    # 20..60 m -> levels 2, 3 -> chunk 1; 0..60 m -> chunks 0, 1
    assert read_cost(ds, {"depth": 2}, depth="20/60") == 64
    assert read_cost(ds, {"depth": 2}, depth=(0, 60)) == 128


def test_read_cost_bad_chunks(grid):
    with pytest.raises(UsageError, match=r"chunks names variable 'sstt'.*Did you mean: sst"):
        read_cost(grid, {"sstt": {"time": 1}})
    with pytest.raises(UsageError, match=r"chunks has no sizes for variable 'mask'"):
        read_cost(grid, {"sst": MAP})
    with pytest.raises(UsageError, match=r"chunks\['mask'\] names dimension 'time'.*lat, lon"):
        read_cost(grid, {"sst": MAP, "mask": {"time": 1}})
    with pytest.raises(UsageError, match=r"chunks names dimension 'depth'.*time, lat, lon"):
        read_cost(grid, {"depth": 1})
    with pytest.raises(UsageError, match="mixes variables and dimensions"):
        read_cost(grid, {"sst": MAP, "time": 3})
    with pytest.raises(DataError, match="contains no data points"):
        read_cost(grid, MAP, bbox=(0, 80, 1, 85))


def test_read_cost_reads_no_data_values(grid):
    def boom():
        raise AssertionError("a data variable was read")

    lazy = da.from_delayed(dask.delayed(boom)(), shape=(24, 10, 20), dtype=np.float32)
    ds = grid.assign(sst=(("time", "lat", "lon"), lazy))

    def no_compute(*args, **kwargs):
        raise AssertionError("something was computed")

    with dask.config.set(scheduler=no_compute):
        assert read_cost(ds, SERIES, bbox=POINT, variables="sst") == 3456
        assert read_cost(ds, MAP, bbox=(-20, -50, 20, 50), variables="sst") == 5 * 4000


def test_read_cost_pop_curvilinear_matches_the_index_box(sample):
    path = sample(POP)
    with netCDF4.Dataset(path) as nc:  # the grid straight from the file
        lat = np.asarray(nc.variables["lat2d"][:], dtype=np.float64)
        lon = np.asarray(nc.variables["lon2d"][:], dtype=np.float64)
    # bbox (-30, 40, 10, 60): 330..360 or 0..10 degrees east, 40..60 north
    inside = (lat >= 40) & (lat <= 60) & (((lon % 360) >= 330) | ((lon % 360) <= 10))
    rows = np.flatnonzero(inside.any(axis=1))
    cols = np.flatnonzero(inside.any(axis=0))
    assert rows.size and cols.size
    chunk = {"nlat": 50, "nlon": 40}
    row_chunks = rows[-1] // 50 - rows[0] // 50 + 1  # the index box is contiguous
    col_chunks = cols[-1] // 40 - cols[0] // 40 + 1
    one_var = int(row_chunks * col_chunks) * 50 * 40 * 4
    with xr.open_dataset(path, chunks={}) as pop:
        pop = pop.assign_coords({k: v.load() for k, v in pop.coords.items()})
        assert read_cost(pop, chunk, bbox=(-30, 40, 10, 60), variables="t") == one_var
        # urot, vrot, t; the 2-D coordinates are not counted
        assert read_cost(pop, chunk, bbox=(-30, 40, 10, 60)) == 3 * one_var
        # whole-field chunks: one chunk of each variable
        whole = {"nlat": -1, "nlon": -1}
        assert read_cost(pop, whole, bbox=(-30, 40, 10, 60)) == 3 * 384 * 320 * 4
