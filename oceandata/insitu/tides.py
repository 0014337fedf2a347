"""Tide-gauge series: CF timeSeries structure and harmonic analysis with UTide.

:func:`as_timeseries_dsg` turns a water-level table indexed by time (such as the catalog
entry ``tide_point_reyes``, NOAA CO-OPS station 9415020 read from CSV) into a CF-1.8
single-station ``timeSeries`` discrete sampling geometry that cf_xarray, :func:`oceandata.subset`
and NetCDF writers understand. :func:`harmonic_analysis` fits tidal constituents to one
series with UTide (:func:`utide.solve`) and returns a :class:`HarmonicResult`: a constituent
table, the mean level and :meth:`HarmonicResult.reconstruct` for tidal predictions.

Choices
-------
Constituents
    ``"auto"`` lets UTide choose every constituent its Rayleigh criterion can separate over
    the record (frequencies at least ``rayleigh_min / record length`` apart). One month of
    hourly or 6-minute data resolves M2, S2, N2, K1 and O1 (and about 25 others) but not
    K2 from S2 or P1 from K1, which need about six months. An explicit list skips UTide's
    selection, so it is checked here against the same criterion.
Nodal corrections
    ``nodal=True`` (the default) applies the 18.6-year nodal and satellite corrections, so
    amplitudes and Greenwich phase lags are comparable from year to year and with published
    harmonic constants; ``nodal=False`` gives what this record shows (for January 2021 at
    Point Reyes O1 is then 6 % larger and 9° earlier).
Trend
    ``trend=False`` (the default) fits a mean level only: a slope fitted to weeks of data is
    weather, not sea-level rise, and :meth:`HarmonicResult.reconstruct` would extrapolate it
    into every prediction. ``trend=True`` fits it (UTide's own default).
Missing values
    NaN values are masked for UTide, which keeps the record's regular spacing for its
    confidence intervals. Records with less than two days of valid data, no datetime axis or
    samples further apart than 6 hours (the Nyquist limit of the semidiurnal tides) are
    refused with :class:`~oceandata.errors.DataError`.

Examples
--------
>>> import oceandata
>>> from oceandata.insitu.tides import as_timeseries_dsg, harmonic_analysis
>>> ds = oceandata.open_dataset("tide_point_reyes")  # doctest: +SKIP
>>> dsg = as_timeseries_dsg(ds, station_id="9415020", name="Point Reyes, CA",
...                         lat=38.0, lon=-123.0)  # doctest: +SKIP
>>> result = harmonic_analysis(dsg, variable="verified")  # doctest: +SKIP
>>> result.table.head(6)  # doctest: +SKIP
>>> tide = result.reconstruct(dsg.time)  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import cf_xarray  # noqa: F401  (registers the ``.cf`` accessor)
import numpy as np
import pandas as pd
import xarray as xr

from ..errors import DataError, UsageError, suggest

__all__ = ["HarmonicResult", "as_timeseries_dsg", "harmonic_analysis"]

#: Shortest record (days of valid data) that :func:`harmonic_analysis` accepts.
MIN_SPAN_DAYS = 2.0

#: Widest median sampling interval (hours) accepted: the Nyquist limit of M2 is 6.2 h.
MAX_STEP_HOURS = 6.0

#: Units read as lengths, i.e. variables holding a water level.
_LENGTH_UNITS = {
    "m", "meter", "meters", "metre", "metres", "cm", "centimeter", "centimeters",
    "centimetre", "centimetres", "mm", "millimeter", "millimeters", "millimetre",
    "millimetres", "ft", "foot", "feet", "international_foot", "us_survey_foot",
}

#: CF standard names of tidal predictions above tidal datums (keys: upper-case datum).
_TIDAL_NAMES = {
    "MSL": "tidal_sea_surface_height_above_mean_sea_level",
    "MLLW": "tidal_sea_surface_height_above_mean_lower_low_water",
    "MHHW": "tidal_sea_surface_height_above_mean_higher_high_water",
    "LAT": "tidal_sea_surface_height_above_lowest_astronomical_tide",
    "MLWS": "tidal_sea_surface_height_above_mean_low_water_springs",
}

#: Standard names recognised as a water level when choosing the variable to analyse.
_WATER_LEVEL_NAMES = {
    "water_surface_height_above_reference_datum",
    "sea_surface_height_above_mean_sea_level",
    "sea_surface_height_above_geoid",
    "sea_surface_height_above_reference_ellipsoid",
    "sea_surface_height_above_geopotential_datum",
    *_TIDAL_NAMES.values(),
}

_TABLE_COLUMNS = ["frequency_cph", "amplitude", "amplitude_ci", "phase_deg", "phase_ci_deg",
                  "snr", "pe"]


# --------------------------------------------------------------------------- helpers


def _utide() -> Any:
    """Import UTide on first use (it takes about a second to import)."""
    import utide

    return utide


def _is_cftime(coord: xr.DataArray) -> bool:
    """Whether *coord* holds cftime dates (a non-standard calendar decoded by xarray)."""
    if coord.dtype.kind != "O" or coord.size == 0:
        return False
    import cftime

    return isinstance(np.asarray(coord.values).flat[0], cftime.datetime)


def _time_coord(obj: xr.Dataset | xr.DataArray, where: str) -> xr.DataArray:
    """The 1-D datetime coordinate of *obj*: CF ``time``/axis ``T`` first, then any datetime."""
    names: list[Hashable] = []
    try:
        names += obj.cf.coordinates.get("time", []) + obj.cf.axes.get("T", [])
    except (KeyError, ValueError):  # pragma: no cover - cf_xarray on odd metadata
        pass
    names += [n for n, c in obj.coords.items() if c.dtype.kind == "M" or _is_cftime(c)]
    for name in dict.fromkeys(names):
        coord = obj.coords[name] if name in obj.coords else obj[name]
        if coord.ndim != 1:
            continue
        if coord.dtype.kind != "M":
            try:
                calendar = coord.dt.calendar
            except (AttributeError, TypeError):
                calendar = coord.attrs.get("calendar", "not decoded")
            raise DataError(f"{where}: time {name!r} is not a standard-calendar date axis "
                            f"(calendar {calendar}); give numpy datetime64 times, e.g. "
                            "ds.convert_calendar('standard')")
        return coord
    found = ", ".join(f"{n} {tuple(c.dims)}" for n, c in obj.coords.items()) or "none"
    raise DataError(f"{where}: no time axis (a 1-D datetime coordinate, CF standard_name time "
                    f"or axis T); coordinates: {found}")


def _scalar_coord(obj: xr.Dataset | xr.DataArray, key: str) -> float | None:
    """The value of a scalar (or size-1) latitude/longitude coordinate of *obj*, else None."""
    try:
        names = obj.cf.coordinates.get(key, [])
    except (KeyError, ValueError):  # pragma: no cover
        return None
    for name in names:
        values = np.asarray(obj[name].values, dtype=np.float64).ravel()
        if values.size == 1 and np.isfinite(values[0]):
            return float(values[0])
    return None


def _checked_position(lat: Any, lon: Any, where: str) -> tuple[float, float]:
    try:
        lat_f, lon_f = float(lat), float(lon)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: lat={lat!r}, lon={lon!r} are not numbers; give degrees, "
                         "e.g. lat=38.0, lon=-123.0") from None
    if not (math.isfinite(lat_f) and -90 <= lat_f <= 90):
        raise UsageError(f"{where}: lat={lat!r} is outside -90..90 degrees north")
    if not (math.isfinite(lon_f) and -180 <= lon_f <= 360):
        raise UsageError(f"{where}: lon={lon!r} is outside -180..360 degrees east")
    return lat_f, lon_f


def _position_from_catalog(ds: xr.Dataset) -> tuple[float, float] | None:
    """``(lat, lon)`` of a catalog entry whose bbox is a single point, else None."""
    entry_name = ds.attrs.get("oceandata_entry")
    if not entry_name:
        return None
    from ..catalog import open_catalog
    from ..errors import OceandataError

    try:
        bbox = open_catalog().entry(str(entry_name)).metadata.bbox
    except OceandataError:
        return None
    if bbox is None or bbox.west != bbox.east or bbox.south != bbox.north:
        return None
    return bbox.south, bbox.west


def _is_length(units: Any) -> bool:
    return str(units or "").strip().lower() in _LENGTH_UNITS


def _iso(value: np.datetime64) -> str:
    return str(np.datetime_as_string(value, unit="s"))


# --------------------------------------------------------------------------- DSG


def as_timeseries_dsg(
    ds: xr.Dataset | xr.DataArray,
    *,
    station_id: str,
    name: str,
    lat: float | None = None,
    lon: float | None = None,
    datum: str | None = None,
    predicted: Sequence[str] = ("predicted",),
) -> xr.Dataset:
    """Make a single-station CF ``timeSeries`` discrete sampling geometry from a series.

    The result follows CF-1.8 §H.2.3 (a single time series): the instance variables are
    scalar coordinates, ``station`` (``cf_role = "timeseries_id"``) and ``station_name``,
    with scalar ``lat``/``lon`` (standard names ``latitude``/``longitude``); ``time`` gets
    ``standard_name = "time"`` and ``axis = "T"``; the global attribute ``featureType`` is
    ``timeSeries``; a ``title`` is added when missing and a line is appended to ``history``.
    Data stay lazy and their values, names and units are unchanged.

    Every data variable whose units are a length (m, cm, mm, ft...) is a water level and
    gets a standard name for *datum*:

    =====================  =======================================================
    observed, ``MSL``      ``sea_surface_height_above_mean_sea_level``
    observed, other/None   ``water_surface_height_above_reference_datum``
    predicted, tidal datum ``tidal_sea_surface_height_above_<datum>`` (MSL, MLLW,
                           MHHW, LAT, MLWS)
    predicted, other/None  none (CF has no name for a tide prediction above an
                           unstated datum; ``long_name`` says what it is)
    =====================  =======================================================

    The datum is kept in each water level's ``vertical_datum`` attribute, ``"not stated in
    the source"`` when *datum* is None (as for the CO-OPS CSV, which does not state it).

    Parameters
    ----------
    ds
        A dataset (or one named variable) with a 1-D datetime coordinate; every data
        variable must lie along that time dimension only.
    station_id
        Station identifier, e.g. ``"9415020"`` (NOAA CO-OPS).
    name
        Station name, e.g. ``"Point Reyes, CA"``.
    lat, lon
        Station position in degrees north and east. When omitted they are taken from scalar
        latitude/longitude coordinates of *ds*, else from the position of the catalog entry
        *ds* was opened from (its ``bbox``, when it is a single point).
    datum
        Vertical datum of the heights (``"MLLW"``, ``"MSL"``, ``"NAVD88"``...), or None
        when unknown.
    predicted
        Names of the variables that are tide predictions, not observations.

    Returns
    -------
    xarray.Dataset
        The CF timeSeries dataset.

    Raises
    ------
    UsageError
        Empty station id or name, a position outside -90..90 / -180..360, or no position
        given nor found.
    DataError
        No datetime axis, or data variables not along time only.

    Examples
    --------
    >>> ds = oceandata.open_dataset("tide_point_reyes")  # doctest: +SKIP
    >>> dsg = as_timeseries_dsg(ds, station_id="9415020", name="Point Reyes, CA",
    ...                         lat=38.0, lon=-123.0)  # doctest: +SKIP
    >>> dsg.cf["latitude"].item(), dsg.attrs["featureType"]  # doctest: +SKIP
    (38.0, 'timeSeries')
    """
    where = "as_timeseries_dsg"
    if isinstance(ds, xr.DataArray):
        if ds.name is None:
            raise UsageError(f"{where}: the DataArray has no name; give it one "
                             "(da.rename('water_level')) or pass a Dataset")
        ds = ds.to_dataset()
    for label, value in (("station_id", station_id), ("name", name)):
        if not str(value).strip():
            raise UsageError(f"{where}: {label} is empty; give e.g. station_id='9415020', "
                             "name='Point Reyes, CA'")
    if lat is None or lon is None:
        found = (_scalar_coord(ds, "latitude"), _scalar_coord(ds, "longitude"))
        if None in found:
            found = _position_from_catalog(ds) or (None, None)
        lat = found[0] if lat is None else lat
        lon = found[1] if lon is None else lon
        if lat is None or lon is None:
            entry = ds.attrs.get("oceandata_entry")
            origin = f" and catalog entry {entry!r} has no point bbox" if entry else ""
            raise UsageError(f"{where}: no station position given{origin}; pass lat= and lon= "
                             "in degrees, e.g. lat=38.0, lon=-123.0")
    lat, lon = _checked_position(lat, lon, where)

    time = _time_coord(ds, where)
    tdim = time.dims[0]
    wrong = [f"{n} {tuple(v.dims)}" for n, v in ds.data_vars.items() if v.dims != (tdim,)]
    if wrong:
        raise DataError(f"{where}: a single-station time series needs every data variable "
                        f"along {tdim!r} only, but {', '.join(wrong)}; select one station "
                        "or depth first (ds.isel / ds.drop_vars)")
    old_position = [n for n in ds.coords if n != time.name and ds[n].ndim == 0
                    and n in set(ds.cf.coordinates.get("latitude", []))
                    | set(ds.cf.coordinates.get("longitude", []))]
    out = ds.drop_vars(old_position).copy(deep=False)  # own attrs: the input is not changed

    datum_text = str(datum).strip() if datum is not None else ""
    datum_key = datum_text.upper().replace(" ", "")
    predicted_set = {str(p) for p in predicted}
    for var_name, var in out.data_vars.items():
        if not _is_length(var.attrs.get("units")):
            continue
        attrs = dict(var.attrs)
        attrs["vertical_datum"] = datum_text or "not stated in the source"
        if str(var_name) in predicted_set:
            standard_name = _TIDAL_NAMES.get(datum_key)
            attrs.setdefault("long_name", "Predicted tide")
            attrs.setdefault("comment", "astronomical tide prediction, not an observation")
        elif datum_key == "MSL":
            standard_name = "sea_surface_height_above_mean_sea_level"
        else:
            standard_name = "water_surface_height_above_reference_datum"
        if standard_name:
            attrs["standard_name"] = standard_name
        else:
            attrs.pop("standard_name", None)
        out[var_name].attrs = attrs

    out = out.assign_coords(
        {time.name: out[time.name].assign_attrs(
            standard_name="time", axis="T", long_name=time.attrs.get("long_name", "time")),
         "station": xr.DataArray(str(station_id), attrs={
             "cf_role": "timeseries_id", "long_name": "station identifier"}),
         "station_name": xr.DataArray(str(name), attrs={"long_name": "station name"}),
         "lat": xr.DataArray(lat, attrs={"standard_name": "latitude", "units": "degrees_north",
                                         "long_name": "station latitude", "axis": "Y"}),
         "lon": xr.DataArray(lon, attrs={"standard_name": "longitude", "units": "degrees_east",
                                         "long_name": "station longitude", "axis": "X"})})
    history = "as_timeseries_dsg: structured as a CF-1.8 single-station timeSeries"
    out.attrs = {"title": f"Time series at {name} (station {station_id})", **ds.attrs,
                 "Conventions": "CF-1.8", "featureType": "timeSeries",
                 "history": "\n".join(filter(None, [str(ds.attrs.get("history", "")), history]))}
    return out


# --------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False)  # a DataFrame field has no plain ==
class HarmonicResult:
    """Tidal harmonic constants of one series, from :func:`harmonic_analysis`.

    Attributes
    ----------
    table
        One row per constituent (index ``constituent``, UTide's names), sorted by
        decreasing amplitude, with columns ``frequency_cph`` (cycles per hour),
        ``amplitude`` (units of the input, see :attr:`units`), ``amplitude_ci``,
        ``phase_deg`` (Greenwich phase lag, degrees, 0..360; with ``nodal=False`` the lag
        without nodal corrections), ``phase_ci_deg``, ``snr`` (amplitude squared over its
        variance) and ``pe`` (percent of the tidal energy). The ``_ci`` columns are 95 %
        confidence half-widths (1.96 standard errors).
    mean
        Mean level (at the middle of the record when a trend is fitted), input units.
    slope
        Linear trend in input units per day, or None when ``trend=False``.
    units
        Units of the analysed variable (``units`` attribute), or None.
    variable
        Name of the analysed variable, or None.
    lat
        Latitude (degrees north) given to UTide for the nodal corrections.
    start, end
        First and last time with a valid value.
    n_valid, n_missing
        Number of values used, and of NaN values left out.
    options
        The UTide options used (``constit``, ``nodal``, ``trend``, ``method``,
        ``conf_int``, ``Rayleigh_min``).
    coef
        UTide's solution (a ``utide.utilities.Bunch``), used by :meth:`reconstruct`.
    """

    table: pd.DataFrame
    mean: float
    slope: float | None
    units: str | None
    variable: str | None
    lat: float
    start: np.datetime64
    end: np.datetime64
    n_valid: int
    n_missing: int
    options: dict[str, Any]
    coef: Any = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary: metadata, mean, options and one dict per constituent.

        Returns
        -------
        dict
            Keys ``variable``, ``units``, ``lat``, ``start``, ``end`` (ISO strings),
            ``n_valid``, ``n_missing``, ``mean``, ``slope``, ``options`` and
            ``constituents`` (a list of ``{"name": ..., <table columns>...}``).
        """
        rows = [{"name": str(name), **{c: float(row[c]) for c in _TABLE_COLUMNS}}
                for name, row in self.table.iterrows()]
        options = {k: (list(v) if isinstance(v, (list, tuple)) else v)
                   for k, v in self.options.items()}
        return {"variable": self.variable, "units": self.units, "lat": self.lat,
                "start": _iso(self.start), "end": _iso(self.end), "n_valid": self.n_valid,
                "n_missing": self.n_missing, "mean": self.mean, "slope": self.slope,
                "options": options, "constituents": rows}

    def reconstruct(self, times: Any, *, constituents: Sequence[str] | None = None,
                    min_snr: float = 2.0) -> xr.DataArray:
        """Predict the tide at *times* from these constants with :func:`utide.reconstruct`.

        The prediction includes the mean level (and the trend when one was fitted).

        Parameters
        ----------
        times
            Datetimes: a time coordinate (``ds.time``), a :class:`pandas.DatetimeIndex`
            or an array of ``datetime64``. NaT gives NaN.
        constituents
            Constituents to use (names in :attr:`table`); default: those with
            ``snr >= min_snr``.
        min_snr
            Signal-to-noise threshold when *constituents* is None (UTide's default 2;
            0 keeps every constituent).

        Returns
        -------
        xarray.DataArray
            The predicted series along ``time``, in the input units; its attribute
            ``constituents`` lists the constituents used.

        Raises
        ------
        UsageError
            *times* are not datetimes, or a constituent is not in the table.
        """
        where = "HarmonicResult.reconstruct"
        values = times.values if isinstance(times, (xr.DataArray, pd.Index, pd.Series)) \
            else times
        try:
            stamps = pd.DatetimeIndex(np.atleast_1d(np.asarray(values)).ravel())
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{where}: times must be datetimes (datetime64, DatetimeIndex or "
                             f"a time coordinate): {exc}") from None
        if stamps.tz is not None:
            stamps = stamps.tz_convert("UTC").tz_localize(None)
        if constituents is not None:
            names = [str(c).upper() for c in constituents]
            unknown = [c for c in names if c not in self.table.index]
            if unknown:
                raise UsageError(f"{where}: constituents {unknown} are not in the analysis; "
                                 f"valid: {', '.join(self.table.index)}"
                                 f"{suggest(unknown[0], self.table.index)}")
            used = names
        elif min_snr > 0:
            used = [str(n) for n in self.table.index[self.table["snr"] >= min_snr]]
        else:
            used = [str(n) for n in self.table.index]
        valid = ~stamps.isna()
        predicted = np.full(stamps.size, np.nan)
        if valid.any():  # with no constituent, UTide gives the mean (and trend) alone
            tide = _utide().reconstruct(stamps[valid].to_numpy("datetime64[ns]"), self.coef,
                                        constit=used, verbose=False)
            predicted[valid] = tide.h
        label = self.variable or "series"
        attrs = {"long_name": f"Tidal prediction from the harmonic constants of {label} "
                              f"({_iso(self.start)} to {_iso(self.end)})",
                 "constituents": " ".join(used)}
        if self.units:
            attrs["units"] = self.units
        return xr.DataArray(predicted, dims=("time",), coords={"time": stamps.to_numpy()},
                            name=f"{self.variable}_tide" if self.variable else "tide",
                            attrs=attrs)


# --------------------------------------------------------------------------- analysis


def _select_series(data: xr.Dataset | xr.DataArray, variable: str | None,
                   where: str) -> xr.DataArray:
    if isinstance(data, xr.DataArray):
        if variable is not None and data.name is not None and str(data.name) != variable:
            raise UsageError(f"{where}: variable={variable!r} was given with a DataArray named "
                             f"{data.name!r}; pass the Dataset, or the DataArray alone")
        return data
    if not isinstance(data, xr.Dataset):
        raise UsageError(f"{where}: expected an xarray Dataset or DataArray, got "
                         f"{type(data).__name__}")
    names = [str(n) for n in data.data_vars]
    if variable is not None:
        if variable not in data.data_vars:
            raise UsageError(f"{where}: no data variable {variable!r}; valid: "
                             f"{', '.join(names) or 'none'}{suggest(variable, names)}")
        return data[variable]
    time = _time_coord(data, where)
    series = [n for n, v in data.data_vars.items()
              if time.dims[0] in v.dims and v.dtype.kind in "fiu"]
    levels = [n for n in series if data[n].attrs.get("standard_name") in _WATER_LEVEL_NAMES]
    for candidates in (levels, series):
        if len(candidates) == 1:
            return data[candidates[0]]
    listed = ", ".join(map(str, series)) or "none"
    raise UsageError(f"{where}: cannot tell which variable to analyse (numeric variables along "
                     f"time: {listed}); pass variable= one of them")


def _checked_constituents(constituents: str | Sequence[str], span_hours: float,
                          rayleigh_min: float, where: str) -> str | list[str]:
    if isinstance(constituents, str):
        if constituents.lower() == "auto":
            return "auto"
        constituents = [constituents]
    from utide._ut_constants import ut_constants

    known = [str(n) for n in ut_constants.const.name]
    freq = dict(zip(known, np.asarray(ut_constants.const.freq, dtype=np.float64), strict=True))
    names = list(dict.fromkeys(str(c).strip().upper() for c in constituents))
    if not names:
        raise UsageError(f"{where}: constituents is empty; give 'auto' or names such as "
                         "['M2', 'S2', 'N2', 'K1', 'O1']")
    for c in names:
        if c not in freq:
            raise UsageError(f"{where}: unknown constituent {c!r}; valid are UTide's "
                             f"{len(known)} names (M2, S2, N2, K1, O1, M4...){suggest(c, known)}")
    ordered = sorted(names, key=freq.__getitem__)
    limit = rayleigh_min / span_hours
    for a, b in itertools.pairwise(ordered):
        gap = freq[b] - freq[a]
        if gap < limit:
            need = rayleigh_min / gap / 24
            raise UsageError(f"{where}: constituents {a} and {b} are {gap:.5f} cph apart, "
                             f"closer than the Rayleigh limit {limit:.5f} cph of this "
                             f"{span_hours / 24:.1f}-day record; drop one, or analyse at "
                             f"least {need:.0f} days")
    return names


def harmonic_analysis(
    data: xr.Dataset | xr.DataArray,
    *,
    lat: float | None = None,
    constituents: str | Sequence[str] = "auto",
    variable: str | None = None,
    nodal: bool = True,
    trend: bool = False,
    method: Literal["ols", "robust"] = "ols",
    conf_int: Literal["linear", "MC"] = "linear",
    rayleigh_min: float = 1.0,
) -> HarmonicResult:
    """Fit tidal constituents to one water-level (or other scalar) series with UTide.

    Parameters
    ----------
    data
        A Dataset (choose the series with *variable*) or a DataArray along one datetime
        axis; size-1 dimensions are squeezed. Dask-backed data are loaded.
    lat
        Latitude in degrees north, used by UTide's nodal/satellite corrections (their
        sensitivity to it is tiny: one degree changes Point Reyes amplitudes by < 1e-4 ft).
        Default: a scalar latitude coordinate of *data* (as :func:`as_timeseries_dsg` sets).
    constituents
        ``"auto"`` (UTide's Rayleigh-criterion selection for the record length) or names
        such as ``["M2", "S2", "N2", "K1", "O1"]``.
    variable
        Data variable of a Dataset. Default: the only variable with a water-level standard
        name, else the only numeric variable along time.
    nodal
        Apply nodal/satellite corrections (default True; see the module notes).
    trend
        Fit a linear trend besides the mean (default False; see the module notes).
    method
        ``"ols"`` (ordinary least squares, default) or ``"robust"`` (iteratively
        reweighted, for spiky data).
    conf_int
        ``"linear"`` (linearised, deterministic, default) or ``"MC"`` (Monte Carlo with
        numpy's global random generator: seed it for repeatable intervals).
    rayleigh_min
        Rayleigh criterion: constituents closer than ``rayleigh_min / record length`` in
        frequency are not separated (UTide's default 1).

    Returns
    -------
    HarmonicResult
        The constituent table sorted by amplitude, the mean, and :meth:`~HarmonicResult.
        reconstruct`.

    Raises
    ------
    UsageError
        Bad latitude, variable or constituent names, constituents closer than the Rayleigh
        limit, or a series with more than one non-time dimension.
    DataError
        No datetime axis, no valid values, less than two days of valid data, or samples
        more than 6 hours apart.

    Examples
    --------
    >>> ds = oceandata.open_dataset("tide_point_reyes")  # doctest: +SKIP
    >>> result = harmonic_analysis(ds, lat=38.0, variable="verified")  # doctest: +SKIP
    >>> result.table.loc["M2", ["amplitude", "phase_deg"]]  # doctest: +SKIP
    """
    where = "harmonic_analysis"
    if method not in ("ols", "robust"):
        raise UsageError(f"{where}: method={method!r}; valid: 'ols', 'robust'")
    if conf_int not in ("linear", "MC"):
        raise UsageError(f"{where}: conf_int={conf_int!r}; valid: 'linear', 'MC'")
    if not (isinstance(rayleigh_min, (int, float)) and rayleigh_min > 0):
        raise UsageError(f"{where}: rayleigh_min={rayleigh_min!r} must be a positive number "
                         "(UTide's default is 1)")
    da = _select_series(data, variable, where)
    label = str(da.name) if da.name is not None else "the series"
    if lat is None:
        lat = _scalar_coord(da, "latitude")
        if lat is None and isinstance(data, xr.Dataset):
            lat = _scalar_coord(data, "latitude")
        if lat is None:
            raise UsageError(f"{where}: no latitude given and {label} has no scalar latitude "
                             "coordinate; pass lat= in degrees north, e.g. lat=38.0")
    lat, _ = _checked_position(lat, 0.0, where)

    time = _time_coord(da, where)
    tdim = time.dims[0]
    squeezed = da.squeeze([d for d in da.dims if d != tdim and da.sizes[d] == 1])
    if squeezed.dims != (tdim,):
        raise UsageError(f"{where}: {label} has dimensions {dict(da.sizes)}; analyse one series "
                         f"at a time along {tdim!r} (select the others with .isel)")
    if squeezed.dtype.kind not in "fiub":
        raise DataError(f"{where}: {label} holds {squeezed.dtype} values, not numbers")
    stamps = np.asarray(time.values).astype("datetime64[ns]")
    values = np.asarray(squeezed.values, dtype=np.float64)
    keep = ~np.isnat(stamps)
    stamps, values = stamps[keep], values[keep]
    order = np.argsort(stamps, kind="stable")
    stamps, values = stamps[order], values[order]
    valid = np.isfinite(values)
    if not valid.any():
        raise DataError(f"{where}: {label} has no valid values ({values.size} missing); "
                        "choose a variable with data")
    good = stamps[valid]
    span_hours = float((good[-1] - good[0]) / np.timedelta64(1, "h"))
    if span_hours < MIN_SPAN_DAYS * 24:
        raise DataError(f"{where}: {label} has {span_hours:.1f} h of valid data "
                        f"({_iso(good[0])} to {_iso(good[-1])}); harmonic analysis needs at "
                        f"least {MIN_SPAN_DAYS:g} days (one month resolves M2, S2, N2, K1, O1)")
    step_hours = float(np.median(np.diff(good)) / np.timedelta64(1, "h"))
    if step_hours > MAX_STEP_HOURS:
        raise DataError(f"{where}: {label} is sampled every {step_hours:g} h (median); "
                        f"semidiurnal tides need samples at most {MAX_STEP_HOURS:g} h apart "
                        "(hourly or finer)")
    constit = _checked_constituents(constituents, span_hours, float(rayleigh_min), where)

    utide = _utide()
    opts: dict[str, Any] = {"constit": constit, "nodal": bool(nodal), "trend": bool(trend),
                            "method": method, "conf_int": conf_int,
                            "Rayleigh_min": float(rayleigh_min)}
    coef = utide.solve(stamps, values, lat=lat, verbose=False, **opts)
    nyquist = 0.5 / step_hours
    frq = np.asarray(coef["aux"]["frq"], dtype=np.float64)
    if constit == "auto" and np.any(frq >= nyquist):  # coarse sampling: drop aliased ones
        opts["constit"] = [str(n) for n, f in zip(coef["name"], frq, strict=True)
                           if f < nyquist]
        coef = utide.solve(stamps, values, lat=lat, verbose=False, **opts)
    n_unknowns = 2 * len(coef["name"]) + 1 + int(bool(trend))
    if int(valid.sum()) <= n_unknowns:
        raise DataError(f"{where}: {label} has {int(valid.sum())} valid values for "
                        f"{n_unknowns} unknowns; give a longer or denser record, or fewer "
                        "constituents")

    table = pd.DataFrame({
        "frequency_cph": np.asarray(coef["aux"]["frq"], dtype=np.float64),
        "amplitude": np.asarray(coef["A"], dtype=np.float64),
        "amplitude_ci": np.asarray(coef["A_ci"], dtype=np.float64),
        "phase_deg": np.asarray(coef["g"], dtype=np.float64),
        "phase_ci_deg": np.asarray(coef["g_ci"], dtype=np.float64),
        "snr": np.asarray(coef["SNR"], dtype=np.float64),
        "pe": np.asarray(coef["PE"], dtype=np.float64),
    }, index=pd.Index([str(n) for n in coef["name"]], name="constituent"))
    table = table.sort_values("amplitude", ascending=False, kind="stable")
    units = da.attrs.get("units")
    table.attrs["units"] = units
    return HarmonicResult(
        table=table, mean=float(coef["mean"]),
        slope=float(coef["slope"]) if trend else None,
        units=str(units) if units is not None else None,
        variable=str(da.name) if da.name is not None else None, lat=lat,
        start=good[0], end=good[-1], n_valid=int(valid.sum()),
        n_missing=int(values.size - valid.sum()), options=opts, coef=coef)
