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

from collections.abc import Hashable

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["marine_heatwaves", "mhw_annual_summary"]

CATEGORIES = np.array(["Moderate", "Strong", "Severe", "Extreme"])
EVENT_COLUMNS = [
    "date_start", "date_peak", "date_end", "duration", "intensity_max", "intensity_mean",
    "intensity_var", "intensity_cumulative", "rate_onset", "rate_decline", "category",
]


def _doy366(time: pd.DatetimeIndex) -> np.ndarray:
    """Day of year on a 366-day year (non-leap years skip doy 60)."""
    doy = np.asarray(time.day_of_year)
    shift = (~np.asarray(time.is_leap_year)) & (doy > 59)
    return doy + shift.astype(int)


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
    """Circular running mean along the last axis (same as the reference ``runavg``)."""
    n = a.shape[-1]
    tiled = np.concatenate([a, a, a], axis=-1)
    csum = np.cumsum(np.pad(tiled, [(0, 0)] * (a.ndim - 1) + [(1, 0)]), axis=-1)
    # window of ``np.convolve(..., mode="same")`` for odd widths: i - w//2 ... i + w//2
    lo = np.arange(n, 2 * n) - width // 2
    return (csum[..., lo + width] - csum[..., lo]) / width


def _climatology_block(
    data: np.ndarray,
    doy: np.ndarray,
    in_clim: np.ndarray,
    pctile: float,
    window_half_width: int,
    smooth_width: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Seasonal climatology and threshold for a (point, time) block, on the time axis."""
    data = _interp_nans(data)
    t = data.shape[-1]
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
        tt = (centre[:, None] + offsets[None, :]).ravel()
        tt = tt[(tt >= 0) & (tt < t)]
        pool = data[..., tt]
        thresh_y[..., d - 1] = np.percentile(pool, pctile, axis=-1)
        seas_y[..., d - 1] = pool.mean(axis=-1)
    thresh_y[..., 59] = 0.5 * (thresh_y[..., 58] + thresh_y[..., 60])
    seas_y[..., 59] = 0.5 * (seas_y[..., 58] + seas_y[..., 60])
    if smooth_width and smooth_width > 1:
        thresh_y = _runavg_circular(thresh_y, smooth_width)
        seas_y = _runavg_circular(seas_y, smooth_width)
    return seas_y[..., doy - 1], thresh_y[..., doy - 1]


def _event_bounds(
    exceed: np.ndarray, min_duration: int, join_gaps: bool, max_gap: int
) -> list[tuple[int, int]]:
    """Inclusive (start, end) indices of events in a 1-D boolean exceedance series."""
    padded = np.concatenate([[False], exceed, [False]]).astype(np.int8)
    diff = np.diff(padded)
    starts = np.flatnonzero(diff == 1)
    ends = np.flatnonzero(diff == -1) - 1
    keep = (ends - starts + 1) >= min_duration
    bounds = [[int(s), int(e)] for s, e in zip(starts[keep], ends[keep], strict=True)]
    if join_gaps and bounds:
        joined = [bounds[0]]
        for s, e in bounds[1:]:
            if s - joined[-1][1] - 1 <= max_gap:
                joined[-1][1] = e
            else:
                joined.append([s, e])
        bounds = joined
    return [(s, e) for s, e in bounds]


def _event_mask_block(
    data: np.ndarray, thresh: np.ndarray, min_duration: int, join_gaps: bool, max_gap: int
) -> np.ndarray:
    """Boolean event mask for a (point, time) block."""
    data = _interp_nans(data)
    exceed = data > thresh
    mask = np.zeros(exceed.shape, dtype=bool)
    for p in np.ndindex(exceed.shape[:-1]):
        for s, e in _event_bounds(exceed[p], min_duration, join_gaps, max_gap):
            mask[(*p, slice(s, e + 1))] = True
    return mask


def _events_1d(
    temp: np.ndarray,
    seas: np.ndarray,
    thresh: np.ndarray,
    time: pd.DatetimeIndex,
    min_duration: int,
    join_gaps: bool,
    max_gap: int,
) -> pd.DataFrame:
    """Event table for one interpolated series (metrics as in the reference ``detect``)."""
    n = temp.size
    rows = []
    for s, e in _event_bounds(temp > thresh, min_duration, join_gaps, max_gap):
        rel = temp[s:e + 1] - seas[s:e + 1]
        pk = int(np.argmax(rel))
        imax = rel[pk]
        if s > 0:
            rel_start = 0.5 * (rel[0] + temp[s - 1] - seas[s - 1])
            onset = (imax - rel_start) / (pk + 0.5)
        else:
            onset = (imax - rel[0]) / (1.0 if pk == 0 else pk)
        if e < n - 1:
            rel_end = 0.5 * (rel[-1] + temp[e + 1] - seas[e + 1])
            decline = (imax - rel_end) / (e - s - pk + 0.5)
        else:
            decline = (imax - rel[-1]) / (1.0 if pk == n - 1 else (e - s - pk))
        ratio = imax / (thresh[s + pk] - seas[s + pk])
        cat = CATEGORIES[int(np.clip(np.floor(ratio), 1, 4)) - 1]
        rows.append({
            "date_start": time[s], "date_peak": time[s + pk], "date_end": time[e],
            "duration": e - s + 1, "intensity_max": float(imax),
            "intensity_mean": float(rel.mean()), "intensity_var": float(rel.std()),
            "intensity_cumulative": float(rel.sum()), "rate_onset": float(onset),
            "rate_decline": float(decline), "category": str(cat),
        })
    return pd.DataFrame(rows, columns=EVENT_COLUMNS)


def _clim_mask(time: pd.DatetimeIndex, period: tuple[int, int] | None) -> np.ndarray:
    if period is None:
        return np.ones(len(time), dtype=bool)
    y0, y1 = period
    mask = (time.year >= y0) & (time.year <= y1)
    if not mask.any():
        raise ValueError(f"climatology_period {period} is outside the record")
    return np.asarray(mask)


def marine_heatwaves(
    sst: xr.DataArray,
    climatology_period: tuple[int, int] | None = None,
    *,
    pctile: float = 90,
    window_half_width: int = 5,
    smooth_width: int = 31,
    min_duration: int = 5,
    join_gaps: bool = True,
    max_gap: int = 2,
) -> tuple[pd.DataFrame, xr.Dataset]:
    """Detect marine heatwaves (Hobday et al. 2016) with categories (Hobday et al. 2018).

    Parameters
    ----------
    sst : xarray.DataArray
        Daily SST with a ``time`` dimension (continuous daily steps); other
        dimensions are treated as grid points.
    climatology_period : tuple of int, optional
        First and last year (inclusive) of the climatology; default the whole record.
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

    Returns
    -------
    events : pandas.DataFrame
        One row per event: date_start, date_peak, date_end, duration, intensity_max,
        intensity_mean, intensity_var, intensity_cumulative (relative to ``seas``),
        rate_onset, rate_decline and category (Moderate/Strong/Severe/Extreme from the
        peak ratio ``(sst - seas) / (thresh - seas)``). Gridded input adds one column
        per point coordinate.
    clim : xarray.Dataset
        ``seas`` and ``thresh`` on the input's time axis (lazy for dask input).

    Notes
    -----
    Missing values are interpolated linearly in time before the climatology and the
    detection (see the module docstring).
    """
    time = pd.DatetimeIndex(sst["time"].values)
    doy = _doy366(time)
    in_clim = _clim_mask(time, climatology_period)
    kw = {"doy": doy, "in_clim": in_clim, "pctile": pctile,
          "window_half_width": window_half_width, "smooth_width": smooth_width}
    ev_kw = {"min_duration": min_duration, "join_gaps": join_gaps, "max_gap": max_gap}

    if sst.ndim == 1:
        temp = _interp_nans(np.asarray(sst.values, dtype=float)[None, :])[0]
        seas, thresh = _climatology_block(temp[None, :], **kw)
        clim = xr.Dataset(
            {"seas": ("time", seas[0]), "thresh": ("time", thresh[0])},
            coords={"time": sst["time"]},
        )
        return _events_1d(temp, seas[0], thresh[0], time, **ev_kw), clim

    other = [d for d in sst.dims if d != "time"]
    data = sst.transpose(*other, "time")
    if data.chunks is not None:
        data = data.chunk({"time": -1})
    seas, thresh = xr.apply_ufunc(
        _climatology_block, data, kwargs=kw,
        input_core_dims=[["time"]], output_core_dims=[["time"], ["time"]],
        dask="parallelized", vectorize=False, output_dtypes=[float, float],
    )
    clim = xr.Dataset({"seas": seas, "thresh": thresh})
    events = _grid_events(data, clim, other, time, ev_kw)
    return events, clim


def _grid_events(
    data: xr.DataArray,
    clim: xr.Dataset,
    dims: list[Hashable],
    time: pd.DatetimeIndex,
    ev_kw: dict,
) -> pd.DataFrame:
    """Event table over all points, computed one point block (first dim chunk) at a time."""
    stacked = xr.Dataset({"sst": data, "seas": clim["seas"], "thresh": clim["thresh"]})
    stacked = stacked.stack(point=dims).transpose("point", "time")
    nblock = 64
    if stacked["sst"].chunks is not None:
        nblock = max(stacked["sst"].chunks[0])
    frames = []
    npt = stacked.sizes["point"]
    for i0 in range(0, npt, nblock):
        blk = stacked.isel(point=slice(i0, i0 + nblock)).compute()
        temp = _interp_nans(blk["sst"].values)
        index = pd.MultiIndex.from_tuples(
            [v if isinstance(v, tuple) else (v,) for v in blk["point"].values],
            names=[str(d) for d in dims],
        )
        for j in range(temp.shape[0]):
            df = _events_1d(temp[j], blk["seas"].values[j], blk["thresh"].values[j], time,
                            **ev_kw)
            for d in dims:
                df.insert(0, str(d), index.get_level_values(str(d))[j])
            frames.append(df)
    cols = [str(d) for d in reversed(dims)] + EVENT_COLUMNS
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True)[cols]


def mhw_annual_summary(
    sst: xr.DataArray,
    clim: xr.Dataset,
    *,
    min_duration: int = 5,
    join_gaps: bool = True,
    max_gap: int = 2,
) -> xr.Dataset:
    """Yearly marine-heatwave count, total days and maximum intensity per point.

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
        year) and ``intensity_max`` (largest ``sst - seas`` on event days), on a
        ``year`` dimension; lazy for dask input.
    """
    other = [d for d in sst.dims if d != "time"]
    data = sst.transpose(*other, "time")
    thresh = clim["thresh"].transpose(*other, "time")
    if data.chunks is not None:
        data = data.chunk({"time": -1})
        thresh = thresh.chunk({"time": -1})
    mask = xr.apply_ufunc(
        _event_mask_block, data, thresh,
        kwargs={"min_duration": min_duration, "join_gaps": join_gaps, "max_gap": max_gap},
        input_core_dims=[["time"], ["time"]], output_core_dims=[["time"]],
        dask="parallelized", vectorize=False, output_dtypes=[bool],
    )
    prev = mask.shift(time=1, fill_value=False)
    starts = mask & ~prev
    anom = (data.interpolate_na("time") - clim["seas"]).where(mask)
    year = mask["time"].dt.year.rename("year")
    return xr.Dataset({
        "count": starts.groupby(year).sum("time"),
        "total_days": mask.groupby(year).sum("time"),
        "intensity_max": anom.groupby(year).max("time"),
    })
