"""Linear trends per grid point: ordinary least squares with NaN-aware t-tests.

The fit runs with :func:`xarray.apply_ufunc` (``dask="parallelized"``) on a vectorised
numpy implementation along time, so it stays lazy and scales with the spatial chunks.
Slopes are in the data's units per year, where a year is the calendar's mean year
length (365.25 days for standard/gregorian/proleptic_gregorian/julian, 365 for
noleap, 366 for all_leap, 360 for 360_day).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from ..errors import DataError, UsageError
from ..times import period as read_period
from .climatologies import append_history

_YEAR_DAYS = {"noleap": 365.0, "365_day": 365.0, "all_leap": 366.0, "366_day": 366.0,
              "360_day": 360.0}


def _years(coord: xr.DataArray) -> tuple[np.ndarray, float]:
    """Time as years since the first step, and the year length in days used."""
    index = coord.to_index()
    if isinstance(index, pd.DatetimeIndex):
        days = np.asarray((index - index[0]) / pd.Timedelta(days=1), dtype=np.float64)
        year = 365.25
    elif isinstance(index, xr.CFTimeIndex):
        days = np.array([(t - index[0]).total_seconds() / 86400.0 for t in index])
        year = _YEAR_DAYS.get(index.calendar, 365.25)
    else:
        raise DataError(f"time coordinate {coord.name!r} is not decoded to dates "
                        f"(dtype {coord.dtype})")
    return days / year, year


def _ols(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """OLS of y (..., n) on x (n,), missing values skipped per series."""
    valid = np.isfinite(y)
    n = valid.sum(axis=-1).astype(np.float64)
    yv = np.where(valid, y, 0.0)
    xv = np.where(valid, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        xm = xv.sum(axis=-1) / n
        ym = yv.sum(axis=-1) / n
        dx = np.where(valid, x - xm[..., None], 0.0)
        dy = np.where(valid, y - ym[..., None], 0.0)
        sxx = (dx * dx).sum(axis=-1)
        slope = (dx * dy).sum(axis=-1) / sxx
        intercept = ym - slope * xm
        resid = np.where(valid, dy - slope[..., None] * dx, 0.0)
        dof = n - 2
        stderr = np.sqrt((resid * resid).sum(axis=-1) / dof / sxx)
    return _t_test(slope, intercept, stderr, sxx, n)


def _t_test(slope: np.ndarray, intercept: np.ndarray, stderr: np.ndarray,
            sxx: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, ...]:
    """The two-sided p-value of a fitted slope, and NaN where the fit is undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        dof = n - 2
        pvalue = 2.0 * stats.t.sf(np.abs(slope / stderr), np.where(dof > 0, dof, np.nan))
    bad = (n < 3) | ~(sxx > 0)
    slope, intercept, stderr, pvalue = (np.where(bad, np.nan, a)
                                        for a in (slope, intercept, stderr, pvalue))
    pvalue = np.where(stderr == 0, 0.0, pvalue)
    return slope, stderr, pvalue, intercept, n


def _ols_from_sums(n: np.ndarray, su: np.ndarray, sv: np.ndarray, suu: np.ndarray,
                   svv: np.ndarray, suv: np.ndarray, y0: np.ndarray, *,
                   x0: float) -> tuple[np.ndarray, ...]:
    """:func:`_ols` from per-point sums of u = x - x0 and v = y - y0 over the valid steps.

    The shifts keep the centred sums free of cancellation (the classic shifted-data
    formulas); the residual sum of squares is ``Syy - slope * Sxy``, as in
    :func:`scipy.stats.linregress`.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        um = su / n
        vm = sv / n
        sxx = suu - n * um * um
        sxy = suv - n * um * vm
        syy = svv - n * vm * vm
        slope = sxy / sxx
        intercept = (vm + y0) - slope * (um + x0)
        dof = n - 2
        stderr = np.sqrt(np.maximum(syy - slope * sxy, 0.0) / dof / sxx)
    return _t_test(slope, intercept, stderr, sxx, n)


def _ols_streaming(data: xr.DataArray, x: np.ndarray, dim: str) -> tuple[xr.DataArray, ...]:
    """OLS of dask *data* in one pass of sums over its time chunks (memory ~ one chunk).

    Rechunking time to one chunk (as the numpy kernel needs) would hold the whole
    series of every point of a time-chunked store at once. Instead six sums per point
    are reduced by dask along time; y is shifted by its mean over the first time chunk
    (NaN there: 0), which is known before the other chunks are read.
    """
    x0 = float(x.mean())
    u_t = xr.DataArray(x - x0, dims=dim, coords={dim: data[dim]})
    y0 = data.isel({dim: slice(0, data.chunks[data.get_axis_num(dim)][0])})
    y0 = y0.mean(dim, skipna=True).fillna(0.0)
    v = data - y0
    valid = v.notnull()
    u = u_t.where(valid)
    v = v.where(valid)
    sums = [valid.sum(dim).astype(np.float64), u.sum(dim), v.sum(dim), (u * u).sum(dim),
            (v * v).sum(dim), (u * v).sum(dim)]
    return xr.apply_ufunc(
        _ols_from_sums, *sums, y0, kwargs={"x0": x0}, dask="parallelized",
        output_core_dims=[[], [], [], [], []], output_dtypes=[np.float64] * 5,
    )


def _theilsen_1d(y: np.ndarray, x: np.ndarray) -> tuple[float, ...]:
    """Theil-Sen slope with a Mann-Kendall p-value for one series, NaNs dropped."""
    ok = np.isfinite(y)
    n = int(ok.sum())
    if n < 3 or np.ptp(x[ok]) == 0:
        return np.nan, np.nan, np.nan, np.nan, float(n)
    slope, intercept, low, high = stats.theilslopes(y[ok], x[ok], alpha=0.95)
    pvalue = stats.kendalltau(x[ok], y[ok]).pvalue
    stderr = (high - low) / (2.0 * stats.norm.ppf(0.975))
    return slope, stderr, pvalue, intercept, float(n)


def trend(da: xr.DataArray, dim: str = "time", method: str = "ols", *,
          period: Any = None) -> xr.Dataset:
    """Linear trend of *da* along *dim* at every other point.

    Parameters
    ----------
    da
        Data with a decoded time dimension *dim* (numpy or cftime, any calendar).
    dim
        The time dimension.
    method
        ``"ols"``: ordinary least squares with a two-sided Student t-test of zero slope
        (n − 2 degrees of freedom; serial correlation is not accounted for).
        ``"theilsen"``: Theil-Sen median slope (:func:`scipy.stats.theilslopes`) with the
        two-sided Mann-Kendall p-value (Kendall's tau-b between time and data,
        :func:`scipy.stats.kendalltau`); ``stderr`` is the half-width of the 95 %
        confidence interval of the slope divided by 1.96. Slower: one scipy call per point.
    period
        Fit only the time steps inside this window, in any form of
        :func:`oceandata.times.period` (``(1993, 2012)``, ``"1993/2012"``,
        ``("1993-01", "2012-12")``, datetimes; see "Periods" in docs/analysis.md);
        default every step.

    Returns
    -------
    xarray.Dataset
        Lazy ``slope`` (units of *da* per year), ``stderr`` (same units), ``pvalue``,
        ``intercept`` (units of *da*, the fitted value at the first time step) and ``n``
        (valid steps). Points with fewer than 3 valid steps are NaN.
    """
    if method not in ("ols", "theilsen"):
        raise UsageError(f"method {method!r} is not supported: give 'ols' or 'theilsen'")
    if dim not in da.dims:
        raise DataError(f"{da.name!r} has no dimension {dim!r}: dims are {list(da.dims)}")
    window = None if period is None else read_period(period, what="period")
    if window is not None:
        inside = window.inside(da[dim])
        if not inside.any():
            raise DataError(f"period {window.text} has no time step in the data")
        da = da.isel({dim: np.flatnonzero(inside)})
    x, year = _years(da[dim])
    data = da.astype(np.float64)
    if data.chunks is not None and method == "ols":
        outputs = _ols_streaming(data, x, dim)  # no rechunk: memory ~ one time chunk
    else:
        if data.chunks is not None:
            data = data.chunk({dim: -1})
        outputs = xr.apply_ufunc(
            _ols if method == "ols" else _theilsen_1d, data, kwargs={"x": x},
            input_core_dims=[[dim]], output_core_dims=[[], [], [], [], []],
            dask="parallelized", output_dtypes=[np.float64] * 5, vectorize=method != "ols",
        )
    units = da.attrs.get("units", "1")
    first = str(da[dim].values[0])
    what = da.attrs.get("long_name", da.attrs.get("standard_name", da.name or "data"))
    base: dict[str, Any] = {"long_name": f"linear trend of {what} along {dim}"}
    attrs = {
        "slope": {**base, "units": f"{units} year-1",
                  "comment": f"year = {year:g} days"},
        "stderr": {"units": f"{units} year-1", "long_name": "standard error of slope"},
        "pvalue": {"units": "1", "long_name": "two-sided p-value of zero slope "
                   + ("(t-test)" if method == "ols" else "(Mann-Kendall)")},
        "intercept": {"units": units, "long_name": f"fitted value at {first}"},
        "n": {"units": "1", "long_name": "number of valid time steps"},
    }
    ds = xr.Dataset({name: out.assign_attrs(attrs[name])
                     for name, out in zip(attrs, outputs, strict=True)})
    note = "" if window is None else f", period={window.text}"
    ds.attrs = append_history(da.attrs, f"trend(dim={dim!r}, method={method!r}{note})")
    ds.attrs.pop("units", None)
    ds.attrs.pop("standard_name", None)
    return ds
