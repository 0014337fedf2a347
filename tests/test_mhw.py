"""Tests for marine heatwave detection (Hobday et al. 2016/2018)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import oceandata
from oceandata.analysis.mhw import _event_metrics, marine_heatwaves, mhw_annual_summary


def _synthetic() -> xr.DataArray:
    """Constant-per-doy cycle with tiny deterministic scatter and injected plateaus."""
    time = pd.date_range("2000-01-01", "2009-12-31", freq="D")
    doy = time.day_of_year.to_numpy()
    base = 20 + 3 * np.sin(2 * np.pi * doy / 365.25)
    # deterministic, small alternating scatter so that the 90th percentile sits above seas
    scatter = 0.1 * np.where(np.arange(time.size) % 2 == 0, 1.0, -1.0)
    sst = base + scatter
    return xr.DataArray(sst, coords={"time": time}, dims="time", name="sst")


def _inject(sst: xr.DataArray, start: str, days: int, height: float) -> None:
    i0 = int(np.flatnonzero(sst["time"].values == np.datetime64(start))[0])
    sst.values[i0:i0 + days] += height


def test_synthetic_events_exact() -> None:
    sst = _synthetic()
    _inject(sst, "2003-03-10", 10, 2.0)  # single 10-day event
    # 6 days + 2-day gap + 5 days -> joined (13 days)
    _inject(sst, "2005-06-01", 6, 3.0)
    _inject(sst, "2005-06-09", 5, 3.0)
    # 5 days + 4-day gap + 5 days -> two events
    _inject(sst, "2007-09-01", 5, 1.5)
    _inject(sst, "2007-09-10", 5, 1.5)
    _inject(sst, "2008-01-01", 4, 5.0)  # too short
    events, clim = marine_heatwaves(sst)
    assert list(events["date_start"]) == list(pd.to_datetime(
        ["2003-03-10", "2005-06-01", "2007-09-01", "2007-09-10"]))
    assert list(events["date_end"]) == list(pd.to_datetime(
        ["2003-03-19", "2005-06-13", "2007-09-05", "2007-09-14"]))
    assert list(events["duration"]) == [10, 13, 5, 5]
    # metrics against a direct computation from clim
    for _, ev in events.iterrows():
        sl = slice(ev.date_start, ev.date_end)
        rel = (sst.sel(time=sl) - clim["seas"].sel(time=sl)).values
        assert ev.intensity_max == pytest.approx(rel.max())
        assert ev.intensity_mean == pytest.approx(rel.mean())
        assert ev.intensity_var == pytest.approx(rel.std())
        assert ev.intensity_cumulative == pytest.approx(rel.sum())
        ipk = int(np.argmax(rel))
        assert ev.date_peak == pd.Timestamp(ev.date_start) + pd.Timedelta(days=ipk)
        before = (sst - clim["seas"]).sel(time=pd.Timestamp(ev.date_start) - pd.Timedelta("1D"))
        after = (sst - clim["seas"]).sel(time=pd.Timestamp(ev.date_end) + pd.Timedelta("1D"))
        assert ev.rate_onset == pytest.approx((rel[ipk] - 0.5 * (rel[0] + before)) / (ipk + 0.5))
        assert ev.rate_decline == pytest.approx(
            (rel[ipk] - 0.5 * (rel[-1] + after)) / (len(rel) - 1 - ipk + 0.5))
    # the heights are ~2, ~3 and ~1.5 degC with thresh - seas ~ 0.1: far above 4x -> Extreme
    assert set(events["category"]) == {"Extreme"}
    assert events["intensity_max"].iloc[0] == pytest.approx(2.0, abs=0.15)
    assert events["intensity_max"].iloc[1] == pytest.approx(3.0, abs=0.15)


def test_category_from_peak_ratio() -> None:
    sst = _synthetic()
    clim = marine_heatwaves(sst)[1]
    d = float((clim["thresh"] - clim["seas"]).mean())
    _inject(sst, "2003-03-10", 8, 1.5 * d + 0.1)
    events, clim = marine_heatwaves(sst)
    assert len(events) == 1
    ev = events.iloc[0]
    ratio = float((sst - clim["seas"]).sel(time=ev.date_peak)
                  / (clim["thresh"] - clim["seas"]).sel(time=ev.date_peak))
    expected = ["Moderate", "Strong", "Severe", "Extreme"][min(max(int(ratio), 1), 4) - 1]
    assert ev.category == expected
    assert ev.category != "Extreme"


def test_category_is_the_highest_on_any_day() -> None:
    """The peak (largest sst - seas) is Strong, a later day with a narrow thresh - seas is
    Severe: the event is Severe (heatwaveR category(), marineHeatWaves.detect)."""
    seas = np.zeros((1, 10))
    thresh = np.array([[1, 1, 1, 1, 1, 0.5, 1, 1, 1, 1]], dtype=float)
    temp = np.array([[0, 1.5, 2.5, 1.5, 0.9, 1.6, 1.5, 1.5, 1.5, 0]])
    ev = _event_metrics(temp, seas, thresh, min_duration=3, join_gaps=True, max_gap=2)
    assert ev["first"].tolist() == [1] and ev["last"].tolist() == [8]  # day 4 is a joined gap
    assert ev["peak"].tolist() == [1]  # day 2, ratio (2.5 - 1) / 1 = 1.5: Strong
    assert ev["category"].tolist() == [3]  # day 5: (1.6 - 0.5) / 0.5 = 2.2: Severe
    # 8 days: 5 Moderate, 1 Strong, 1 Severe, the gap day in none
    np.testing.assert_allclose(ev["share"], [[5 / 8, 1 / 8, 1 / 8, 0]])
    # a ratio of 3 or more is Extreme, and Extreme is the cap
    temp[0, 5] = 50.0
    ev = _event_metrics(temp, seas, thresh, min_duration=3, join_gaps=True, max_gap=2)
    assert ev["category"].tolist() == [4]
    np.testing.assert_allclose(ev["share"], [[5 / 8, 1 / 8, 0, 1 / 8]])


def test_wa_1996_is_strong_not_its_peak_day_category(wa: xr.DataArray) -> None:
    """The event the issue found: Moderate on its peak day, Strong on 1996-12-02 and -20."""
    events, clim = marine_heatwaves(wa)
    ev = events[events.date_start == "1996-11-17"].iloc[0]
    ratio = ((wa - clim["seas"]) / (clim["thresh"] - clim["seas"])).sel(
        time=slice(ev.date_start, ev.date_end))
    assert 1 <= float(ratio.sel(time=ev.date_peak)) < 2  # the peak day alone: Moderate
    assert 2 <= float(ratio.max()) < 3
    assert ev.category == "Strong"
    assert ev.p_strong == pytest.approx(int((ratio >= 2).sum()) / ev.duration)
    assert ev.season == "Summer"  # peak 1996-12-21, 29 S: austral summer


def test_season_needs_a_latitude(wa: xr.DataArray) -> None:
    """Season from the data's lat, from ``latitude=``, and missing without either."""
    events = marine_heatwaves(wa)[0]
    bare = wa.drop_vars(["lat", "lon"])
    assert marine_heatwaves(bare)[0]["season"].isna().all()
    north = marine_heatwaves(bare, latitude=10.0)[0]
    months = pd.DatetimeIndex(events["date_peak"]).month
    jja = np.isin(months, [6, 7, 8])
    assert (events["season"][jja] == "Winter").all() and (north["season"][jja] == "Summer").all()
    assert jja.any() and events["season"].notna().all()


def _independent_clim(sst: xr.DataArray, doys: list[int]) -> tuple[np.ndarray, np.ndarray]:
    time = pd.DatetimeIndex(sst["time"].values)
    doy = time.day_of_year.to_numpy().copy()
    doy[(~time.is_leap_year) & (doy > 59)] += 1
    v = sst.values
    seas_y = np.zeros(366)
    thr_y = np.zeros(366)
    for d in range(1, 367):
        if d == 60:
            continue
        pool = []
        for i in range(len(v)):
            if doy[i] == d:
                for w in range(-5, 6):
                    if 0 <= i + w < len(v):
                        pool.append(v[i + w])
        seas_y[d - 1] = np.mean(pool)
        thr_y[d - 1] = np.percentile(pool, 90)
    seas_y[59] = 0.5 * (seas_y[58] + seas_y[60])
    thr_y[59] = 0.5 * (thr_y[58] + thr_y[60])

    def smooth(a: np.ndarray) -> np.ndarray:
        out = np.empty(366)
        for i in range(366):
            out[i] = np.mean([a[(i + k) % 366] for k in range(-15, 16)])
        return out

    s, t = smooth(seas_y), smooth(thr_y)
    return s[np.array(doys) - 1], t[np.array(doys) - 1]


@pytest.fixture(scope="module")
def wa() -> xr.DataArray:
    return oceandata.open_dataset("oisst_wa")["sst"].load()


def test_clim_matches_independent(wa: xr.DataArray) -> None:
    sub = wa.sel(time=slice("1990", "1999"))
    _, clim = marine_heatwaves(sub)
    dates = ["1996-01-01", "1996-02-29", "1997-03-01", "1998-07-15", "1999-12-31"]
    doys = [1, 60, 61, 197, 366]
    seas, thr = _independent_clim(sub, doys)
    np.testing.assert_allclose(clim["seas"].sel(time=dates).values, seas, rtol=1e-12)
    np.testing.assert_allclose(clim["thresh"].sel(time=dates).values, thr, rtol=1e-12)


def test_wa_2011(wa: xr.DataArray) -> None:
    events, _ = marine_heatwaves(wa, (1983, 2012))
    hit = events[(events.date_peak >= "2011-02-01") & (events.date_peak <= "2011-03-31")]
    assert len(hit) == 1
    ev = hit.iloc[0]
    # found on the data: 2011-02-06 .. 2011-04-06 (60 days), peak 2011-02-28, 6.51 degC,
    # Extreme: the 2011 Ningaloo Nino, which peaked off WA in late February 2011
    assert ev.date_start == pd.Timestamp("2011-02-06")
    assert ev.date_peak == pd.Timestamp("2011-02-28")
    assert ev.date_end == pd.Timestamp("2011-04-06")
    assert ev.intensity_max > 3
    assert ev.duration == 60
    assert ev.intensity_max == pytest.approx(6.506, abs=0.01)
    assert ev.category == "Extreme"


def test_gridded_matches_1d() -> None:
    names = ["oisst_wa", "oisst_med", "oisst_nw_atl"]
    series = [oceandata.open_dataset(n)["sst"].load().drop_vars(["lat", "lon"],
                                                                errors="ignore")
              for n in names]
    grid = xr.concat(series, dim=pd.Index([0, 1, 2], name="site")).chunk({"site": 2})
    events, clim = marine_heatwaves(grid, (1983, 2012))
    assert clim["seas"].chunks is not None
    for k, s in enumerate(series):
        ev1, clim1 = marine_heatwaves(s, (1983, 2012))
        np.testing.assert_allclose(clim["thresh"].isel(site=k).values, clim1["thresh"].values)
        evk = events[events["site"] == k].drop(columns="site").reset_index(drop=True)
        pd.testing.assert_frame_equal(evk, ev1, check_dtype=False)
    summ = mhw_annual_summary(grid, clim)
    ev0 = marine_heatwaves(series[0], (1983, 2012))[0]
    y2011 = summ.sel(year=2011, site=0).compute()
    starts = pd.DatetimeIndex(ev0["date_start"])
    assert int(y2011["count"]) == int((starts.year == 2011).sum())
    days = sum(
        int(((pd.date_range(a, b).year) == 2011).sum())
        for a, b in zip(ev0["date_start"], ev0["date_end"], strict=True)
    )
    assert int(y2011["total_days"]) == days
    in2011 = ev0[pd.DatetimeIndex(ev0["date_peak"]).year == 2011]
    assert float(y2011["intensity_max"]) == pytest.approx(in2011["intensity_max"].max())
    # yearly category: the same day rule, bounded by the events within / touching the year
    code = {c: k for k, c in enumerate(["Moderate", "Strong", "Severe", "Extreme"], 1)}
    cat = summ["category"].sel(site=0).compute().to_series()
    assert int(cat[2011]) == 4
    start = pd.DatetimeIndex(ev0["date_start"]).year
    end = pd.DatetimeIndex(ev0["date_end"]).year
    evcat = ev0["category"].map(code).to_numpy()
    for yr, c in cat.items():
        inside = evcat[(start == yr) & (end == yr)]
        touching = evcat[(start <= yr) & (end >= yr)]
        assert (inside.max() if inside.size else 0) <= c <= (touching.max() if touching.size
                                                             else 0), yr


REFERENCE = Path(__file__).parent / "reference" / "marine_heatwaves"


@pytest.mark.parametrize("period", ["full", "1983-2012"])
@pytest.mark.parametrize(("site", "entry"), [("WA", "oisst_wa"), ("Med", "oisst_med"),
                                             ("NW_Atl", "oisst_nw_atl")])
def test_matches_reference_implementation(site: str, entry: str, period: str) -> None:
    """Same events, dates and categories as marineHeatWaves.detect; metrics within 1e-3."""
    ref = pd.read_csv(REFERENCE / f"{site}_{period}.csv",
                      parse_dates=["date_start", "date_peak", "date_end"])
    sst = oceandata.open_dataset(entry)["sst"].load()
    events, _ = marine_heatwaves(sst, None if period == "full" else (1983, 2012))
    assert len(events) == len(ref) > 50
    for col in ("date_start", "date_peak", "date_end"):
        assert (pd.DatetimeIndex(events[col]) == pd.DatetimeIndex(ref[col])).all(), col
    assert (events["duration"].to_numpy() == ref["duration"].to_numpy()).all()
    assert (events["category"].to_numpy() == ref["category"].to_numpy()).all()
    shares = ["p_moderate", "p_strong", "p_severe", "p_extreme"]
    np.testing.assert_allclose(events[shares], ref[shares], rtol=0, atol=1e-9)
    for col in ("intensity_max", "intensity_mean", "intensity_var", "intensity_cumulative",
                "rate_onset", "rate_decline"):
        np.testing.assert_allclose(events[col], ref[col], rtol=0, atol=1e-3, err_msg=col)
    # more than one category is exercised, not only Moderate
    assert ref["category"].nunique() >= 2


def _red_block(npt: int, years: int, seed: int) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """(point, time) float32 daily SST: a seasonal cycle plus AR(1) anomalies."""
    from scipy.signal import lfilter

    time = pd.date_range("2000-01-01", periods=int(years * 365.25), freq="D")
    rng = np.random.default_rng(seed)
    cycle = 18 + 2 * np.cos(2 * np.pi * (time.day_of_year.to_numpy() - 45) / 365.25)
    red = lfilter([1.0], [1.0, -0.9], rng.normal(0, 0.35, (npt, time.size)), axis=1)
    return time, (cycle + red).astype(np.float32)


def _per_row_numpy(block: np.ndarray, kw: dict, ev_kw: dict) -> tuple[dict, np.ndarray,
                                                                      np.ndarray]:
    """The numpy path point by point (as the 1-D detection), concatenated."""
    from oceandata.analysis.mhw import _block_events

    parts = [_block_events(block[i:i + 1], kw, ev_kw, compiled=False)
             for i in range(block.shape[0])]
    ev = {k: np.concatenate([p[0][k] + (i if k == "row" else 0) for i, p in enumerate(parts)])
          for k in parts[0][0]}
    return ev, np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


@pytest.mark.parametrize("case", ["full", "sub-period", "mid-year", "gaps", "float64"])
def test_compiled_block_equals_numpy_bit_for_bit(case: str) -> None:
    """The numba path of the gridded detection gives the 1-D numpy path's numbers exactly."""
    from oceandata.analysis.mhw import _block_events, _doy366

    time, block = _red_block(6, 12, seed=19)
    in_clim = np.ones(time.size, bool)
    if case == "sub-period":
        in_clim = (time.year >= 2002) & (time.year <= 2008)
    elif case == "mid-year":
        in_clim = (time >= "2001-07-01") & (time < "2009-03-15")
    data: np.ndarray = block
    if case == "gaps":
        data = block.copy()
        data[1] = np.nan  # an all-NaN point
        data[2, 400:430] = np.nan
        data[3, :5] = np.nan
        data[4, -3:] = np.nan
    elif case == "float64":
        data = block.astype(np.float64) + 1e-7
    kw = {"doy": _doy366(time), "in_clim": in_clim, "pctile": 90, "window_half_width": 5,
          "smooth_width": 31}
    ev_kw = {"min_duration": 5, "join_gaps": True, "max_gap": 2}
    ev0, seas0, thresh0 = _per_row_numpy(data, kw, ev_kw)
    ev1, seas1, thresh1 = _block_events(data, kw, ev_kw)
    np.testing.assert_array_equal(seas1, seas0)
    np.testing.assert_array_equal(thresh1, thresh0)
    assert len(ev0["row"]) > 20
    assert ev0.keys() == ev1.keys()
    for key in ev0:
        np.testing.assert_array_equal(ev1[key], ev0[key], err_msg=key)
    if case == "gaps":
        assert np.isnan(seas1[1]).all() and 1 not in ev1["row"]


def test_compiled_helpers_equal_numpy() -> None:
    """Pairwise sums equal ``np.add.reduceat``; the batched running mean equals np.convolve."""
    from oceandata.analysis import _mhw_kernels as kern
    from oceandata.analysis.mhw import _runavg_circular, _runavg_circular_batched

    rng = np.random.default_rng(5)
    for n in [*range(1, 140), 255, 256, 257, 1000, 4099]:
        a = rng.normal(size=n) * 10.0 ** rng.uniform(-3, 3, n)
        assert kern.reduceat_sum(a, 0, n) == np.add.reduceat(a, [0])[0], n
    for width in (31, 30, 5):
        x = 20 + 3 * rng.normal(size=(7, 366))
        np.testing.assert_array_equal(_runavg_circular_batched(x, width),
                                      _runavg_circular(x, width))
