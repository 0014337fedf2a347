"""Marine heatwaves after Hobday et al. (2016), categories after Hobday et al. (2018).

The detection follows the reference implementation ``marineHeatWaves.detect``
(E. C. J. Oliver): day of year on a 366-day year (non-leap years skip Feb 29,
doy 60), values pooled in a ``±window_half_width``-day window around each doy over
the climatology years, seasonal climatology = mean and threshold = percentile
(numpy, linear), Feb 29 = mean of its neighbours, then both smoothed with a
circular running mean over the 366-day axis. Events are runs of days with
``sst > thresh`` of at least ``min_duration`` days, joined across gaps of at most
``max_gap`` days.

Missing values are filled by linear interpolation in time before anything else
(the reference's ``maxPadLength`` option with an unlimited pad length); leading or
trailing NaNs take the nearest valid value.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

import cf_xarray  # noqa: F401  (registers .cf, used to find the latitude)
import dask
import numpy as np
import pandas as pd
import xarray as xr

from ..errors import DataError
from ..times import period

__all__ = ["marine_heatwaves", "mhw_annual_summary"]

CATEGORIES = np.array(["Moderate", "Strong", "Severe", "Extreme"])
EVENT_COLUMNS = [
    "date_start", "date_peak", "date_end", "duration", "intensity_max", "intensity_mean",
    "intensity_var", "intensity_cumulative", "rate_onset", "rate_decline", "category",
    "p_moderate", "p_strong", "p_severe", "p_extreme", "season",
]
#: Season of each calendar month (index 1-12), as heatwaveR's ``category()`` names them:
#: meteorological seasons, December-February is winter in the north, summer in the south.
SEASONS_NORTH = np.array(["", "Winter", "Winter", "Spring", "Spring", "Spring", "Summer",
                          "Summer", "Summer", "Fall", "Fall", "Fall", "Winter"], dtype=object)
SEASONS_SOUTH = np.array(["", "Summer", "Summer", "Fall", "Fall", "Fall", "Winter",
                          "Winter", "Winter", "Spring", "Spring", "Spring", "Summer"], dtype=object)


def _doy366(time: pd.DatetimeIndex) -> np.ndarray:
    """Day of year on a 366-day year (non-leap years skip doy 60)."""
    doy = np.asarray(time.day_of_year)
    shift = (~np.asarray(time.is_leap_year)) & (doy > 59)
    return doy + shift.astype(int)


# Gridded input is processed in blocks of points holding their whole time series: a
# block is about this many bytes of float64 series, whatever the input's chunks, so that
# memory is bounded by the block size times the threads (see "Memory" in docs/analysis.md)
POINT_BLOCK_BYTES = 4 * 2**20


def _point_chunks(data: xr.DataArray) -> xr.DataArray:
    """*data* (points..., time) rechunked to whole series in blocks of ~POINT_BLOCK_BYTES."""
    from dask.array.core import normalize_chunks

    auto = normalize_chunks(("auto",) * (data.ndim - 1) + (-1,), data.shape,
                            limit=POINT_BLOCK_BYTES, dtype=np.float64)
    return data.chunk(dict(zip(data.dims, auto, strict=True)))


def _interp_nans(data: np.ndarray) -> np.ndarray:
    """Linearly interpolate NaNs along the last axis of a (point, time) block."""
    out = np.array(data, dtype=float, copy=True)
    x = np.arange(out.shape[-1])
    for row in out:
        bad = np.isnan(row)
        if bad.any() and not bad.all():
            row[bad] = np.interp(x[bad], x[~bad], row[~bad])
    return out


def _runavg_circular(a: np.ndarray, width: int) -> np.ndarray:
    """Circular running mean along the last axis, computed as the reference ``runavg``.

    The same ``np.convolve(..., mode="same")`` on the tripled series is used (not a
    cumulative sum) so that the rounding matches the reference bit for bit: an SST
    that equals the threshold in exact arithmetic must fall on the same side.
    """
    n = a.shape[-1]
    kernel = np.ones(width) / width
    tiled = np.concatenate([a, a, a], axis=-1)
    out = np.empty_like(a, dtype=float)
    for idx in np.ndindex(a.shape[:-1]):
        out[idx] = np.convolve(tiled[idx], kernel, mode="same")[n:2 * n]
    return out


def _percentile_linear(pool: np.ndarray, pctile: float) -> np.ndarray:
    """``np.percentile(pool, pctile, axis=-1)`` (linear method), bit for bit, via a sort.

    numpy selects the two order statistics with a two-``kth`` partition, which is
    several times slower than its vectorised sort on rows of a few hundred values. The
    virtual index and the interpolation below are numpy's own formulas, so the result
    is identical; a row holding NaN gives NaN, as in numpy.
    """
    n = pool.shape[-1]
    virtual = (n - 1) * np.true_divide(pctile, 100)
    lo = int(np.floor(virtual))
    gamma = virtual - lo
    ordered = np.sort(pool, axis=-1)
    a = ordered[..., lo].astype(np.float64)
    b = ordered[..., min(lo + 1, n - 1)].astype(np.float64)
    diff = b - a
    out = b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma
    return np.where(np.isnan(ordered[..., -1]), np.nan, out)


def _climatology_block(
    data: np.ndarray, doy: np.ndarray, **kw: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Seasonal climatology and threshold for a gap-filled (point, time) block, on the time axis."""
    smooth_width = kw.pop("smooth_width")
    seas_y, thresh_y = _smooth_doy(*_climatology_filled(data, doy, **kw), smooth_width)
    return seas_y[..., doy - 1], thresh_y[..., doy - 1]


def _climatology_doy(
    data: np.ndarray,
    doy: np.ndarray,
    in_clim: np.ndarray,
    pctile: float,
    window_half_width: int,
    smooth_width: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Seasonal climatology and threshold of a (point, time) block per day of year (366)."""
    seas_y, thresh_y = _climatology_filled(_interp_nans(data), doy, in_clim, pctile,
                                           window_half_width)
    return _smooth_doy(seas_y, thresh_y, smooth_width)


def _smooth_doy(seas_y: np.ndarray, thresh_y: np.ndarray,
                smooth_width: int) -> tuple[np.ndarray, np.ndarray]:
    """The circular running mean of ``seas_y``/``thresh_y`` (none for a width of 0 or 1)."""
    if smooth_width and smooth_width > 1:
        return (_runavg_circular(seas_y, smooth_width),
                _runavg_circular(thresh_y, smooth_width))
    return seas_y, thresh_y


def _climatology_filled(
    data: np.ndarray,
    doy: np.ndarray,
    in_clim: np.ndarray,
    pctile: float,
    window_half_width: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Unsmoothed ``seas``/``thresh`` per day of year of a gap-filled (point, time) block."""
    t = data.shape[-1]
    # SST is mostly stored as float32: sorting float32 is about twice as fast, and when
    # every value is exactly a float32 the order statistics (hence the percentile, whose
    # interpolation is done in float64) are the same
    values = data.astype(np.float32)
    if not np.array_equal(values, data, equal_nan=True):
        values = data
    idx_clim = np.flatnonzero(in_clim)
    c0, c1 = idx_clim[0], idx_clim[-1]
    doy_c = doy[c0:c1 + 1]
    thresh_y = np.full((*data.shape[:-1], 366), np.nan)
    seas_y = np.full((*data.shape[:-1], 366), np.nan)
    offsets = np.arange(-window_half_width, window_half_width + 1)
    for d in range(1, 367):
        if d == 60:
            continue
        centre = c0 + np.flatnonzero(doy_c == d)
        if centre.size == 0:
            continue
        # ascending indices gather ~4x faster; the pool's order changes only the last
        # bits of the mean, never the threshold (a percentile)
        tt = np.sort((offsets[:, None] + centre[None, :]).ravel())
        tt = tt[(tt >= 0) & (tt < t)]
        pool = values[..., tt]
        thresh_y[..., d - 1] = _percentile_linear(pool, pctile)
        seas_y[..., d - 1] = pool.mean(axis=-1, dtype=np.float64)
    thresh_y[..., 59] = 0.5 * (thresh_y[..., 58] + thresh_y[..., 60])
    seas_y[..., 59] = 0.5 * (seas_y[..., 58] + seas_y[..., 60])
    return seas_y, thresh_y


def _event_runs(
    exceed: np.ndarray, min_duration: int, join_gaps: bool, max_gap: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Events of a (point, time) exceedance block as (row, first, last) index arrays.

    Runs of at least ``min_duration`` days are kept, then consecutive kept runs of the
    same row separated by at most ``max_gap`` days are joined, as the reference does
    (it joins the first short gap repeatedly, which merges every chain of short gaps).
    """
    npt, nt = exceed.shape
    padded = np.zeros((npt, nt + 2), dtype=np.int8)
    padded[:, 1:-1] = exceed
    step = np.diff(padded, axis=1)
    row, first = np.nonzero(step == 1)
    last = np.nonzero(step == -1)[1] - 1
    keep = last - first + 1 >= min_duration
    row, first, last = row[keep], first[keep], last[keep]
    if join_gaps and row.size > 1:
        join = (row[1:] == row[:-1]) & (first[1:] - last[:-1] - 1 <= max_gap)
        head = np.concatenate([[True], ~join])
        tail = np.concatenate([~join, [True]])
        row, first, last = row[head], first[head], last[tail]
    return row, first, last


def _event_mask(shape: tuple[int, int], row: np.ndarray, first: np.ndarray,
                last: np.ndarray) -> np.ndarray:
    """Boolean (point, time) mask of the days inside the given events."""
    marks = np.zeros((shape[0], shape[1] + 1), dtype=np.int32)
    np.add.at(marks, (row, first), 1)
    np.add.at(marks, (row, last + 1), -1)
    return np.cumsum(marks, axis=1)[:, :-1] > 0


def _event_metrics(
    temp: np.ndarray,
    seas: np.ndarray,
    thresh: np.ndarray,
    min_duration: int,
    join_gaps: bool,
    max_gap: int,
) -> dict[str, np.ndarray]:
    """Events and their metrics for a (point, time) block, all points at once.

    ``temp`` is already gap-filled. Metrics follow the reference ``detect``: intensities
    relative to ``seas``; onset and decline rates assume the event starts half a day
    before its first day and ends half a day after its last (whole days at the ends of
    the series, including the reference's test of the peak's *relative* index against
    the series length). Categories: see :func:`_daily_category`; the event's category is
    the highest reached on any of its days and ``share`` holds, per category, the
    fraction of the event's days in it (days of a joined gap, below the threshold, are
    in none).
    """
    nt = temp.shape[1]
    row, first, last = _event_runs(temp > thresh, min_duration, join_gaps, max_gap)
    dur = last - first + 1
    out: dict[str, np.ndarray] = {"row": row, "first": first, "last": last, "duration": dur}
    if row.size == 0:
        empty = np.zeros(0)
        out.update(peak=np.zeros(0, dtype=int), intensity_max=empty, intensity_mean=empty,
                   intensity_var=empty, intensity_cumulative=empty, rate_onset=empty,
                   rate_decline=empty, category=np.zeros(0, dtype=int),
                   share=np.zeros((0, 4)))
        return out
    rel = temp - seas
    seg = np.cumsum(dur) - dur  # offset of each event in the concatenated event days
    ev_id = np.repeat(np.arange(row.size), dur)
    day = np.repeat(first, dur) + np.arange(dur.sum()) - np.repeat(seg, dur)
    vals = rel[np.repeat(row, dur), day]
    imax = np.maximum.reduceat(vals, seg)
    isum = np.add.reduceat(vals, seg)
    imean = isum / dur
    ivar = np.sqrt(np.add.reduceat((vals - imean[ev_id]) ** 2, seg) / dur)
    at_max = np.flatnonzero(vals == imax[ev_id])
    firsts = at_max[np.concatenate([[True], ev_id[at_max][1:] != ev_id[at_max][:-1]])]
    pk = firsts - seg
    rel0 = vals[seg]
    rel1 = vals[seg + dur - 1]
    prev = np.maximum(first - 1, 0)
    nxt = np.minimum(last + 1, nt - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        onset = np.where(
            first > 0,
            (imax - 0.5 * (rel0 + temp[row, prev] - seas[row, prev])) / (pk + 0.5),
            (imax - rel0) / np.where(pk == 0, 1.0, pk),
        )
        decline = np.where(
            last < nt - 1,
            (imax - 0.5 * (rel1 + temp[row, nxt] - seas[row, nxt])) / (last - first - pk + 0.5),
            (imax - rel1) / np.where(pk == nt - 1, 1.0, last - first - pk),
        )
    rows = np.repeat(row, dur)
    daily = _daily_category(temp[rows, day], seas[rows, day], thresh[rows, day])
    category = np.clip(np.maximum.reduceat(daily, seg), 1, 4)
    share = np.stack([np.add.reduceat((daily == k).astype(int), seg) for k in (1, 2, 3, 4)],
                     axis=-1) / dur[:, None]
    out.update(peak=pk, intensity_max=imax, intensity_mean=imean, intensity_var=ivar,
               intensity_cumulative=isum, rate_onset=onset, rate_decline=decline,
               category=category, share=share)
    return out


def _daily_category(temp: np.ndarray, seas: np.ndarray, thresh: np.ndarray) -> np.ndarray:
    """Hobday et al. (2018) category of each day: ``floor(1 + (temp - thresh) / (thresh - seas))``.

    Capped at 4 (Extreme); 0 for a day at or below the threshold (a joined gap). The
    same float expression as the reference ``detect`` (its ``cats``), so a day exactly on
    a category limit falls on the same side; heatwaveR's ``temp >= thresh + k * (thresh -
    seas)`` is the same rule up to that rounding.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = (temp - thresh) / (thresh - seas)
        return np.clip(np.nan_to_num(np.floor(1.0 + norm), nan=0.0), 0, 4).astype(int)


def _season(month: np.ndarray, lat: np.ndarray | float | None) -> np.ndarray:
    """Season name of calendar months (north when ``lat >= 0``); NaN without ``lat``."""
    month = np.asarray(month, dtype=int)
    if lat is None:
        return np.full(month.shape, np.nan, dtype=object)
    lat = np.broadcast_to(np.asarray(lat, dtype=float), month.shape)
    out = np.where(lat < 0, SEASONS_SOUTH[month], SEASONS_NORTH[month]).astype(object)
    out[np.isnan(lat)] = np.nan
    return out


def _events_frame(ev: dict[str, np.ndarray], time: pd.DatetimeIndex,
                  lat: np.ndarray | float | None = None) -> pd.DataFrame:
    """The public events table from :func:`_event_metrics` output (``lat`` per event)."""
    peak = time[ev["first"] + ev["peak"]]
    return pd.DataFrame({
        "date_start": time[ev["first"]],
        "date_peak": peak,
        "date_end": time[ev["last"]],
        "duration": ev["duration"].astype(int),
        "intensity_max": ev["intensity_max"],
        "intensity_mean": ev["intensity_mean"],
        "intensity_var": ev["intensity_var"],
        "intensity_cumulative": ev["intensity_cumulative"],
        "rate_onset": ev["rate_onset"],
        "rate_decline": ev["rate_decline"],
        "category": CATEGORIES[ev["category"] - 1],
        "p_moderate": ev["share"][:, 0],
        "p_strong": ev["share"][:, 1],
        "p_severe": ev["share"][:, 2],
        "p_extreme": ev["share"][:, 3],
        "season": _season(np.asarray(peak.month), lat),
    }, columns=EVENT_COLUMNS)


def _block_events(
    block: np.ndarray, clim_kw: dict, ev_kw: dict, compiled: bool = True
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Events of one (point, time) block of raw SST, and its climatology per day of year.

    With ``compiled`` (the default) the numba kernels of :mod:`._mhw_kernels` compute
    the climatology (a sliding pool per point), the smoothing is one batched
    ``np.convolve`` and the events are found and measured per point without
    ``(point, time)`` temporaries. Every point's results are those of the 1-D path on
    its series, bit for bit. Pooling windows wider than half a year take the numpy path.
    """
    temp = _interp_nans(block)
    doy = clim_kw["doy"]
    if not compiled or temp.ndim != 2 or 2 * clim_kw["window_half_width"] + 1 > 365:
        kw = {k: v for k, v in clim_kw.items() if k != "smooth_width"}
        seas_y, thresh_y = _smooth_doy(*_climatology_filled(temp, **kw),
                                       clim_kw["smooth_width"])
        events = _event_metrics(temp, seas_y[:, doy - 1], thresh_y[:, doy - 1], **ev_kw)
        return events, seas_y, thresh_y
    from . import _mhw_kernels as kern

    seas_y, thresh_y = _climatology_compiled(temp, **clim_kw)
    names = ("row", "first", "last", "duration", "peak", "intensity_max", "intensity_mean",
             "intensity_var", "intensity_cumulative", "rate_onset", "rate_decline",
             "category", "share")
    arrays = kern.event_metrics(temp, seas_y, thresh_y, (doy - 1).astype(np.int64),
                                int(ev_kw["min_duration"]), bool(ev_kw["join_gaps"]),
                                int(ev_kw["max_gap"]))
    return dict(zip(names, arrays, strict=True)), seas_y, thresh_y


def _climatology_compiled(
    temp: np.ndarray,
    doy: np.ndarray,
    in_clim: np.ndarray,
    pctile: float,
    window_half_width: int,
    smooth_width: int,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_climatology_doy` of a gap-filled (point, time) float64 block, compiled.

    Each row gives the 1-D path's result (``marine_heatwaves`` on that series) bit for
    bit, see :func:`._mhw_kernels.clim_doy_sliding`.
    """
    from . import _mhw_kernels as kern

    npt, nt = temp.shape
    a, b, n, lo, gamma = kern.pool_plan(doy, in_clim, pctile, window_half_width, nt)
    exact = kern.exact_rows(temp, float(n.max() + 2 * window_half_width + 1))
    seas_y = np.full((npt, 366), np.nan)
    thresh_y = np.full((npt, 366), np.nan)
    kern.clim_doy_sliding(temp, exact, a, b, n, lo, gamma, seas_y, thresh_y, 8, 36)
    thresh_y[:, 59] = 0.5 * (thresh_y[:, 58] + thresh_y[:, 60])
    seas_y[:, 59] = 0.5 * (seas_y[:, 58] + seas_y[:, 60])
    if smooth_width and smooth_width > 1:
        both = _runavg_circular_batched(np.concatenate([seas_y, thresh_y]), smooth_width)
        seas_y, thresh_y = both[:npt], both[npt:]
    return seas_y, thresh_y


def _runavg_circular_batched(a: np.ndarray, width: int) -> np.ndarray:
    """:func:`_runavg_circular` of a (row, n) array in one ``np.convolve`` call.

    Each output of ``np.convolve(..., mode="same")`` inside the tripled series is one dot
    product of the same ``width`` values with the kernel; here the rows are padded
    circularly by the kernel's half widths, laid end to end, and convolved once in mode
    ``"valid"``, which computes every wanted output with the same dot product (same
    values, same order), so the result is the same bit for bit (checked in the tests).
    """
    rows, n = a.shape
    if width > n or rows == 0:
        return _runavg_circular(a, width)
    h0, h1 = width // 2, (width - 1) // 2
    padded = np.concatenate([a[:, n - h0:], a, a[:, :h1]], axis=1)
    kernel = np.ones(width) / width
    full = np.convolve(padded.ravel(), kernel, mode="valid")
    stride = n + width - 1
    return full[np.arange(rows)[:, None] * stride + np.arange(n)[None, :]]


def _event_mask_block(
    data: np.ndarray, thresh: np.ndarray, min_duration: int, join_gaps: bool, max_gap: int
) -> np.ndarray:
    """Boolean event mask for a (..., time) block."""
    shape = data.shape
    temp = _interp_nans(data.reshape(-1, shape[-1]))
    runs = _event_runs(temp > thresh.reshape(temp.shape), min_duration, join_gaps, max_gap)
    return _event_mask(temp.shape, *runs).reshape(shape)


def _clim_mask(time: xr.DataArray, climatology_period: Any) -> np.ndarray:
    if climatology_period is None:
        return np.ones(time.size, dtype=bool)
    chosen = period(climatology_period, what="climatology_period")
    mask = chosen.inside(time)
    if not mask.any():
        raise DataError(f"climatology_period {chosen.text} is outside the record "
                        f"({str(time.values[0])[:10]}/{str(time.values[-1])[:10]})")
    return mask


def marine_heatwaves(
    sst: xr.DataArray,
    climatology_period: Any = None,
    *,
    pctile: float = 90,
    window_half_width: int = 5,
    smooth_width: int = 31,
    min_duration: int = 5,
    join_gaps: bool = True,
    max_gap: int = 2,
    latitude: float | None = None,
) -> tuple[pd.DataFrame, xr.Dataset]:
    """Detect marine heatwaves (Hobday et al. 2016) with categories (Hobday et al. 2018).

    Parameters
    ----------
    sst : xarray.DataArray
        Daily SST with a ``time`` dimension (continuous daily steps); other
        dimensions are treated as grid points.
    climatology_period : period, optional
        The climatology's period in any form of :func:`oceandata.times.period`:
        ``(1983, 2012)`` (first and last year, inclusive), ``"1983/2012"``,
        ``("1983-01-01", "2012-12-31")``, datetimes (see "Periods" in docs/analysis.md);
        default the whole record.
    pctile : float, default 90
        Threshold percentile.
    window_half_width : int, default 5
        Half width (days) of the pooling window around each day of year.
    smooth_width : int, default 31
        Width (days) of the circular running mean applied to ``seas`` and ``thresh``.
    min_duration : int, default 5
        Minimum event length (days).
    join_gaps : bool, default True
        Join events separated by short gaps.
    max_gap : int, default 2
        Longest gap (days) that is joined.
    latitude : float, optional
        Latitude (degrees north) used only to name the season; by default the data's
        latitude coordinate (CF ``latitude``, or a coordinate named ``lat``/``latitude``),
        per point for gridded input. Without either, ``season`` is missing (NaN): the
        hemisphere is never guessed.

    Returns
    -------
    events : pandas.DataFrame
        One row per event: date_start, date_peak, date_end, duration, intensity_max,
        intensity_mean, intensity_var, intensity_cumulative (relative to ``seas``),
        rate_onset, rate_decline; ``category`` (Moderate/Strong/Severe/Extreme), the
        highest Hobday et al. (2018) category reached on any day of the event, where a
        day's category is ``floor(1 + (sst - thresh) / (thresh - seas))`` capped at 4,
        as both heatwaveR's ``category()`` and ``marineHeatWaves.detect`` define it;
        ``p_moderate``, ``p_strong``, ``p_severe``, ``p_extreme``, the fractions (0-1)
        of the event's days in each category (heatwaveR reports the same shares as
        whole percentages; days of a joined gap, below the threshold, count in none);
        ``season`` of the peak day (Winter/Spring/Summer/Fall, meteorological seasons:
        December-February is Winter north of the equator, Summer south of it, as
        heatwaveR's ``category()`` names them). Gridded input adds one column per
        point coordinate.
    clim : xarray.Dataset
        ``seas`` and ``thresh`` on the input's time axis (lazy for dask input).

    Notes
    -----
    Missing values are interpolated linearly in time before the climatology and the
    detection (see the module docstring).
    """
    time = pd.DatetimeIndex(sst["time"].values)
    doy = _doy366(time)
    in_clim = _clim_mask(sst["time"], climatology_period)
    kw = {"doy": doy, "in_clim": in_clim, "pctile": pctile,
          "window_half_width": window_half_width, "smooth_width": smooth_width}
    ev_kw = {"min_duration": min_duration, "join_gaps": join_gaps, "max_gap": max_gap}

    if sst.ndim == 1:
        temp = _interp_nans(np.asarray(sst.values, dtype=float)[None, :])
        seas, thresh = _climatology_block(temp, **kw)
        clim = xr.Dataset(
            {"seas": ("time", seas[0]), "thresh": ("time", thresh[0])},
            coords={"time": sst["time"]},
        )
        lat = _latitude(sst, latitude)
        lat = None if lat is None else float(lat.values)
        return _events_frame(_event_metrics(temp, seas, thresh, **ev_kw), time, lat), clim

    other = [d for d in sst.dims if d != "time"]
    data = sst.transpose(*other, "time")
    events, seas_y, thresh_y = _grid_events(data, other, time, kw, ev_kw,
                                            _latitude(data, latitude))
    return events, _clim_on_time(data, seas_y, thresh_y, doy)


def _clim_on_time(data: xr.DataArray, seas_y: np.ndarray, thresh_y: np.ndarray,
                  doy: np.ndarray) -> xr.Dataset:
    """``seas``/``thresh`` on *data*'s time axis from the (point, 366) day-of-year fields.

    The day-of-year fields are small (366 values per point) and already computed; the
    daily arrays are a lazy gather from them for dask input (each chunk indexes its own
    points), so computing ``clim`` never reads the SST again.
    """
    points = data.isel(time=0, drop=True)
    fields = {}
    for name, values in (("seas", seas_y), ("thresh", thresh_y)):
        field = xr.DataArray(values.reshape(*points.shape, 366),
                             dims=(*points.dims, "dayofyear"), coords=points.coords)
        if data.chunks is None:
            fields[name] = field.isel(dayofyear=xr.DataArray(doy - 1, dims="time"))
            continue
        # the point blocks of the daily series; one gather per block (a dask fancy
        # index of the whole field builds a shuffle graph, ~0.2 s for 10,000 points)
        blocks = _point_chunks(data).chunks[:-1]
        field = field.chunk(dict(zip(field.dims[:-1], blocks, strict=True)))
        fields[name] = xr.apply_ufunc(
            _take_doy, field, kwargs={"index": doy - 1}, input_core_dims=[["dayofyear"]],
            output_core_dims=[["time"]], dask="parallelized", output_dtypes=[values.dtype],
            dask_gufunc_kwargs={"output_sizes": {"time": doy.size}},
        )
    return xr.Dataset(fields).assign_coords(time=data["time"])


def _take_doy(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``values[..., index]``: a (..., 366) block gathered onto the time axis."""
    return values[..., index]


def _latitude(sst: xr.DataArray, latitude: float | None) -> xr.DataArray | None:
    """The latitude of each point of *sst* (a DataArray without ``time``), or None."""
    if latitude is not None:
        return xr.DataArray(float(latitude))
    try:
        lat = sst.cf["latitude"]
    except KeyError:
        names = [n for n in ("lat", "latitude") if n in sst.coords]
        if not names:
            return None
        lat = sst.coords[names[0]]
    if "time" in lat.dims:
        return None
    return lat.reset_coords(drop=True)


def _point_passes(stacked: xr.DataArray) -> Iterator[tuple[slice, tuple[int, ...]]]:
    """Passes over the points of *stacked* (point, time): each a point slice and its blocks.

    A store chunked along time must be transposed into whole series per point. Done in
    one graph, dask keeps every input chunk until all the point blocks that take a piece
    of it are finished: the whole store. Computed in passes, each pass holds only its own
    points (and reads the store's time chunks again): memory is bounded by the dask
    chunk size (config ``array.chunk-size``), I/O grows with the number of passes. Data
    in memory, or already chunked as whole series, is done in one pass.

    Yields
    ------
    points : slice
        The pass's points.
    blocks : tuple of int
        Its point blocks (``POINT_BLOCK_BYTES`` of float64 series each), to rechunk to.
    """
    blocks = _point_chunks(stacked).chunks[0]
    offsets = np.concatenate([[0], np.cumsum(blocks)]).astype(int)
    if stacked.chunks is None or len(stacked.chunks[1]) == 1:
        per_pass = len(blocks)  # in memory, or whole series already: no transposition
    else:
        budget = dask.utils.parse_bytes(dask.config.get("array.chunk-size"))
        series = stacked.sizes["time"] * stacked.dtype.itemsize
        per_pass = max(1, int(budget // (series * max(blocks))))
    for i in range(0, len(blocks), per_pass):
        j = min(i + per_pass, len(blocks))
        yield slice(offsets[i], offsets[j]), blocks[i:j]


def _pass_piece(stacked: xr.DataArray, points: slice, blocks: tuple[int, ...]) -> xr.DataArray:
    """The points of one pass as a dask array of whole series in *blocks*.

    The points are sliced before rechunking: each read of a time chunk then keeps only
    the pass's piece of it (the read and the slice are fused by dask).
    """
    return stacked.isel(point=points).chunk({"point": blocks, "time": -1})


def _grid_events(
    data: xr.DataArray,
    dims: list[Hashable],
    time: pd.DatetimeIndex,
    clim_kw: dict,
    ev_kw: dict,
    lat: xr.DataArray | None = None,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Event table over all points, and the (point, 366) ``seas`` and ``thresh`` fields.

    One dask task per block of points, run in parallel, computes the climatology and the
    events of its points from the raw SST, so the (large) daily ``seas``/``thresh``
    arrays never leave the task; only the day-of-year fields do.
    """
    stacked = data.stack(point=dims).transpose("point", "time")
    parts: list[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]] = []
    for points, blocks in _point_passes(stacked):
        piece = _pass_piece(stacked, points, blocks)
        parts.extend(dask.compute(*[dask.delayed(_block_events)(blk, clim_kw, ev_kw)
                                    for blk in piece.data.to_delayed().ravel()]))
    counts = [len(p[1]) for p in parts]
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ev = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
    ev["row"] = np.concatenate([p[0]["row"] + o for p, o in zip(parts, offsets, strict=True)])
    if lat is not None:
        template = xr.DataArray(np.zeros(data.shape[:-1]), dims=dims,
                                coords={d: data.indexes[d] for d in dims if d in data.indexes})
        lat = np.asarray(lat.broadcast_like(template).transpose(*dims).values,
                         dtype=float).ravel()[ev["row"]]
    frame = _events_frame(ev, time, lat)
    point = stacked.indexes["point"]
    for d in dims:
        values = np.asarray(point.get_level_values(str(d)) if isinstance(point, pd.MultiIndex)
                            else point)
        frame.insert(0, str(d), values[ev["row"]])
    return (frame, np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]))


def mhw_annual_summary(
    sst: xr.DataArray,
    clim: xr.Dataset,
    *,
    min_duration: int = 5,
    join_gaps: bool = True,
    max_gap: int = 2,
) -> xr.Dataset:
    """Yearly marine-heatwave count, total days, maximum intensity and category per point.

    Parameters
    ----------
    sst : xarray.DataArray
        Daily SST as given to :func:`marine_heatwaves`.
    clim : xarray.Dataset
        The ``clim`` returned by :func:`marine_heatwaves`.
    min_duration, join_gaps, max_gap
        Event rules, as in :func:`marine_heatwaves`.

    Returns
    -------
    xarray.Dataset
        ``count`` (events starting in the year), ``total_days`` (event days in the
        year), ``intensity_max`` (largest ``sst - seas`` on event days) and
        ``category`` (the highest Hobday et al. 2018 category reached on an event day
        of the year, by the day rule of :func:`marine_heatwaves`: 1 Moderate ... 4
        Extreme, 0 without event days), on a ``year`` dimension. Computed, not lazy:
        dask input is done in passes over blocks of points, like the events of
        :func:`marine_heatwaves`, so that memory stays bounded by ``array.chunk-size``
        on a store chunked along time (see "Memory" in docs/analysis.md).
        An event that crosses New Year counts its days in each year, so a year's
        ``category`` can be lower than that of an event which peaks in another year.
    """
    other = [d for d in sst.dims if d != "time"]
    data = sst.transpose(*other, "time")
    seas = clim["seas"].transpose(*other, "time")
    thresh = clim["thresh"].transpose(*other, "time")
    rules = {"min_duration": min_duration, "join_gaps": join_gaps, "max_gap": max_gap}
    if data.chunks is None and seas.chunks is None and thresh.chunks is None:
        return _annual_summary(data, seas, thresh, rules)
    stack = {"point": other}
    stacked = [a.stack(stack).transpose("point", "time") for a in (data, seas, thresh)]
    parts = []
    for points, blocks in _point_passes(stacked[0]):
        pieces = [_pass_piece(a, points, blocks) for a in stacked]
        parts.append(_annual_summary(*pieces, rules).compute())
    summary = xr.concat(parts, dim="point").unstack("point")
    return summary.transpose(*other, "year")


def _annual_summary(data: xr.DataArray, seas: xr.DataArray, thresh: xr.DataArray,
                    rules: dict) -> xr.Dataset:
    """:func:`mhw_annual_summary` of (..., time) arrays holding whole series per chunk."""
    mask = xr.apply_ufunc(
        _event_mask_block, data, thresh, kwargs=rules,
        input_core_dims=[["time"], ["time"]], output_core_dims=[["time"]],
        dask="parallelized", vectorize=False, output_dtypes=[bool],
    )
    prev = mask.shift(time=1, fill_value=False)
    starts = mask & ~prev
    filled = data.interpolate_na("time")
    anom = (filled - seas).where(mask)
    daily = xr.apply_ufunc(
        _daily_category, filled, seas, thresh, dask="parallelized", output_dtypes=[int],
    ).where(mask)
    year = mask["time"].dt.year.rename("year")
    category = daily.groupby(year).max("time").fillna(0).astype(np.int8)
    category.attrs = {"long_name": "highest Hobday et al. (2018) category on event days",
                      "flag_values": np.arange(5, dtype=np.int8),
                      "flag_meanings": "none moderate strong severe extreme"}
    return xr.Dataset({
        "count": starts.groupby(year).sum("time"),
        "total_days": mask.groupby(year).sum("time"),
        "intensity_max": anom.groupby(year).max("time"),
        "category": category,
    })
