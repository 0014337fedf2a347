"""Empirical orthogonal functions and the Niño 3.4 index.

:func:`eofs` wraps :class:`eofs.xarray.Eof` (Dawson 2016) with square-root cosine-latitude
weights, so that the covariance matrix is area weighted. An EOF analysis is a singular value
decomposition of the whole (time, space) matrix: it cannot be done chunk by chunk, so the
field given to :func:`eofs` is computed into memory. Reduce it first (a region, monthly or
seasonal anomalies, a coarser grid): dask input is accepted and only that reduced field is
computed, never the dataset it came from.

:func:`nino34` is the Niño 3.4 index: the area-weighted mean SST anomaly over 5°N-5°S,
170°W-120°W, relative to a monthly climatology, optionally smoothed by a 5-month running mean
(Trenberth 1997). It stays lazy.

References
----------
Dawson, A. (2016): eofs: A Library for EOF Analysis of Meteorological, Oceanographic, and
Climate Data. Journal of Open Research Software, 4(1), e14, doi:10.5334/jors.122.

Trenberth, K. E. (1997): The Definition of El Niño. Bull. Amer. Meteor. Soc., 78, 2771-2777,
doi:10.1175/1520-0477(1997)078<2771:TDOENO>2.0.CO;2.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import xarray as xr

from ..errors import DataError, UsageError
from ..io.subset import _Axes, subset
from ..times import period
from .ocean import _with_history

__all__ = ["NINO34_BOX", "eofs", "nino34"]

#: The Niño 3.4 region as (west, south, east, north), degrees.
NINO34_BOX = (-170.0, -5.0, -120.0, 5.0)

#: Attributes that describe a variable, not a dataset: not copied to the EOF dataset.
_VARIABLE_ATTRS = {"standard_name", "units", "long_name", "actual_range", "valid_range",
                   "valid_min", "valid_max", "cell_methods", "_FillValue", "missing_value"}

_TRENBERTH = ("Trenberth, K. E. (1997): The Definition of El Niño. Bull. Amer. Meteor. Soc., "
              "78, 2771-2777")
_DAWSON = ("Dawson, A. (2016): eofs: A Library for EOF Analysis of Meteorological, "
           "Oceanographic, and Climate Data. J. Open Res. Softw., 4(1), e14")


def _axis(da: xr.DataArray, kind: str, function: str) -> xr.DataArray:
    ds = da.to_dataset(name="__data__") if da.name is None else da.to_dataset()
    found = _Axes(ds).get(kind, ds)
    if found is None:
        raise DataError(f"{function}: {da.name or 'the data'} has no {kind} coordinate (CF "
                        f"standard_name, axis or units); its coordinates: {list(da.coords)}")
    return found


def eofs(da: xr.DataArray, n: int = 3, *, weights: str | None = "coslat") -> xr.Dataset:
    """Leading EOFs, principal components and variance fractions of a (time, lat, lon) field.

    Computed with :class:`eofs.xarray.Eof` (unscaled EOFs of unit norm, unscaled PCs). The
    analysis is a singular value decomposition of the whole field, so *da* is computed into
    memory: pass an already reduced field (anomalies over a region, possibly coarsened).
    A dask-backed *da* is accepted and only *da* itself is computed. Grid points missing at
    every time (land) are left out; points missing at some times only are not allowed by
    eofs.

    Parameters
    ----------
    da
        Anomalies on (time, latitude, longitude) in any order, with 1-D latitude and
        longitude; the axes are found through CF attributes.
    n
        Number of modes.
    weights
        ``"coslat"``: each point is weighted by sqrt(cos(latitude)), so that the covariance is
        area weighted; None: unweighted.

    Returns
    -------
    xarray.Dataset
        ``eofs`` (mode, lat, lon), ``pcs`` (time, mode), ``variance_fraction`` (mode), with
        a ``mode`` coordinate 1..n, *da*'s attributes and a ``history`` line. The sign of each
        mode is arbitrary.

    Raises
    ------
    UsageError
        *n* is not a positive integer or *weights* is unknown.
    DataError
        No time, latitude or longitude coordinate.
    """
    from eofs.xarray import Eof

    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise UsageError(f"eofs: n={n!r}; valid: a positive integer")
    if weights not in ("coslat", None):
        raise UsageError(f"eofs: weights={weights!r}; valid: 'coslat' or None")
    time = _axis(da, "time", "eofs")
    lat = _axis(da, "latitude", "eofs")
    lon = _axis(da, "longitude", "eofs")
    if lat.ndim != 1 or lon.ndim != 1:
        raise DataError("eofs: latitude and longitude must be 1-D (a regular grid); regrid "
                        "curvilinear data first (oceandata.analysis.regrid)")
    tdim, ydim, xdim = time.dims[0], lat.dims[0], lon.dims[0]
    field = da.transpose(tdim, ydim, xdim).rename({tdim: "time"} if tdim != "time" else {})
    field = field.compute()  # the reduced field only: an SVD needs it whole
    w = None
    if weights == "coslat":
        coslat = np.cos(np.deg2rad(np.asarray(lat.values, dtype=np.float64))).clip(0.0, 1.0)
        w = np.sqrt(coslat)[:, np.newaxis] * np.ones((1, lon.size))
    solver = Eof(field, weights=w)
    n = min(int(n), field.sizes["time"])
    modes = np.arange(1, n + 1)
    patterns = solver.eofs(neofs=n).assign_coords(mode=modes)
    pcs = solver.pcs(npcs=n).assign_coords(mode=modes)
    fraction = solver.varianceFraction(neigs=n).assign_coords(mode=modes)
    if tdim != "time":
        pcs = pcs.rename({"time": tdim})
    name = da.name or "field"
    patterns.attrs = {"long_name": f"EOFs of {name} (unit norm, dimensionless)",
                      "units": "1", "comment": "sign of each mode is arbitrary"}
    pcs.attrs = {"long_name": f"principal components of {name}",
                 "units": str(da.attrs.get("units", "")),
                 "comment": "unscaled: projection of the (weighted) field on each EOF"}
    fraction.attrs = {"long_name": "fraction of the total variance explained by each mode",
                      "units": "1"}
    out = xr.Dataset({"eofs": patterns.drop_vars("mode").assign_coords(mode=modes),
                      "pcs": pcs, "variance_fraction": fraction})
    out["mode"].attrs = {"long_name": "EOF mode number"}
    out.attrs = {**{k: v for k, v in da.attrs.items() if k not in _VARIABLE_ATTRS},
                 "references": _DAWSON}
    return _with_history(out, f"oceandata.analysis.eof.eofs(n={n}, weights={weights!r}) of "
                              f"{name}", da.attrs)


def nino34(sst: xr.DataArray, *, baseline: Any = None,
           smooth: bool = False) -> xr.DataArray:
    """Niño 3.4 index: area-weighted mean SST anomaly over 5°N-5°S, 170°W-120°W.

    The box is cut with :func:`oceandata.subset` (bounds inclusive, any longitude
    convention), averaged with cos(latitude) weights over valid points, then the mean
    seasonal cycle of the *baseline* period (a climatology for each calendar month) is
    removed. With *smooth*, a centred 5-month running mean is applied, as in the definition
    of Trenberth (1997): an El Niño when the smoothed index exceeds +0.4 °C for six months
    or more. Lazy: only the coordinates are read.

    Parameters
    ----------
    sst
        Monthly sea surface temperature on a regular grid, with time, latitude and longitude
        found through CF attributes.
    baseline
        The climatology period in any form of :func:`oceandata.times.period`
        (``(1971, 2000)``, ``"1971/2000"``, ``("1971-01", "2000-12")``, datetimes;
        inclusive, a year stands for the whole year; see "Periods" in docs/analysis.md);
        default: the whole record.
    smooth
        Apply the 5-month centred running mean (the first and last two months are NaN).

    Returns
    -------
    xarray.DataArray
        ``nino34`` on the time dimension, in the units of *sst*, with attributes and a
        ``history`` line.

    Raises
    ------
    UsageError
        A malformed *baseline*.
    DataError
        No time, latitude or longitude, or the box holds no data, or none in *baseline*.
    """
    chosen = None if baseline is None else period(baseline, what="baseline")
    ds = sst.to_dataset(name=sst.name or "sst")
    name = next(iter(ds.data_vars))
    box = subset(ds, bbox=NINO34_BOX)
    axes = _Axes(box)
    lat, lon, time = (axes.get(k, box) for k in ("latitude", "longitude", "time"))
    if lat is None or lon is None or time is None:
        raise DataError("nino34: the SST needs time, latitude and longitude coordinates")
    weights = np.cos(np.deg2rad(lat)).clip(0.0)
    horizontal: list[Hashable] = list(dict.fromkeys((*lat.dims, *lon.dims)))
    mean = box[name].weighted(weights.fillna(0.0)).mean(horizontal)
    tdim = time.dims[0]
    reference = mean
    if chosen is not None:
        inside = chosen.inside(mean[time.name])
        if not inside.any():
            raise DataError(f"nino34: baseline {chosen.text} has no time step in the data")
        reference = mean.isel({tdim: np.flatnonzero(inside)})
    climatology = reference.groupby(f"{time.name}.month").mean(tdim)
    index = mean.groupby(f"{time.name}.month") - climatology
    index = index.drop_vars("month", errors="ignore")
    if smooth:
        index = index.rolling({tdim: 5}, center=True).mean()
    span = "the whole record" if chosen is None else chosen.text
    index.name = "nino34"
    index.attrs = {
        "long_name": "Nino 3.4 index: SST anomaly averaged over 5N-5S, 170W-120W",
        "units": sst.attrs.get("units", "degC"),
        "cell_methods": "area: mean (cos-latitude weighted) time: anomaly",
        "comment": (f"monthly climatology of {span} removed"
                    + ("; 5-month centred running mean" if smooth else "")),
        "references": _TRENBERTH,
    }
    return _with_history(index, f"oceandata.analysis.eof.nino34(baseline={span!r}, "
                                f"smooth={smooth}) of {name}", sst.attrs)
