"""Partial ISO dates as periods, in any CF calendar.

A request ``1997-03`` means the whole of March 1997, ``1997`` the whole year: each date
is split into its (year, month, ..., microsecond) fields, and a period's ends become
integer keys that order like the dates, the missing fields filled to the start or the
end of the period. Data times are compared through the same fields read with ``.dt``,
so 360-day, noleap and proleptic calendars (cftime) compare like numpy datetimes and
years outside 1678..2261 work. Used by subsetting, catalog search and validation.

:func:`period` is the one reader of a period given by a user, wherever one is taken
(``baseline=``, ``climatology_period=``, ``time=``, ``period=``, the command line's
``--time``): a pair of years, ISO strings, dates, datetimes (numpy, pandas, cftime), the
text ``"START/END"`` or a :class:`Period`; see "Periods" in docs/analysis.md.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from .errors import DataError, UsageError

_ISO_TIME = re.compile(
    r"(?P<year>[+-]?\d{4,})"
    r"(?:-(?P<month>\d{1,2})"
    r"(?:-(?P<day>\d{1,2})"
    r"(?:[T ](?P<hour>\d{1,2})"
    r"(?::(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?)?)?)?)?Z?"
)
_TIME_FIELDS = ("year", "month", "day", "hour", "minute", "second", "microsecond")
_FIELD_LIMITS = ((None, None), (1, 12), (1, 31), (0, 23), (0, 59), (0, 59), (0, 999_999))
#: Radix of each field after the year in a time key; larger than any field's range.
_FIELD_RADIX = (13, 32, 24, 60, 60, 1_000_000)


def pair(values: Any, *, what: str, form: str) -> tuple[Any, Any]:
    try:
        items = [] if isinstance(values, str | bytes) else list(values)
    except TypeError:
        items = []
    if len(items) != 2:
        raise UsageError(f"{what} {values!r} is not a pair: give {form}, None for an open side")
    return items[0], items[1]




def time_text(value: Any) -> str:
    if value is None:
        return ".."
    if isinstance(value, str):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def time_parts(value: Any, what: str) -> tuple[int, ...]:
    """Split a time request into (year, month, …) fields, as many as it gives."""
    if isinstance(value, np.datetime64):
        value = value.astype("datetime64[us]").item()
    if isinstance(value, str):
        match = _ISO_TIME.fullmatch(value.strip())
        if match is None:
            raise UsageError(f"{what} {value!r} is not an ISO date: give YYYY, YYYY-MM, "
                             "YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]")
        fields = match.groupdict()
        fraction = fields.pop("fraction")
        parts = [int(v) for v in fields.values() if v is not None]
        if fraction is not None:
            parts.append(int(fraction[:6].ljust(6, "0")))
    elif isinstance(value, dt.datetime) or hasattr(value, "hour"):
        parts = [int(getattr(value, f, 0)) for f in _TIME_FIELDS]
    elif isinstance(value, dt.date):
        parts = [value.year, value.month, value.day]
    else:
        raise UsageError(f"{what} {value!r} is not a date: give a year, an ISO string, a "
                         "datetime or None")
    for name, part, (low, high) in zip(_TIME_FIELDS, parts, _FIELD_LIMITS, strict=False):
        if low is not None and not low <= part <= high:
            raise UsageError(f"{what} {time_text(value)!r} has {name} {part}, outside "
                             f"{low}..{high}")
    return tuple(parts)


def time_key(parts: Sequence[int], *, low: bool) -> int:
    """An integer that orders times like their fields; missing fields fill the period."""
    key = parts[0]
    for i, radix in enumerate(_FIELD_RADIX, start=1):
        if i < len(parts):
            field = parts[i]
        else:
            field = _FIELD_LIMITS[i][0 if low else 1]
        key = key * radix + field
    return key


def time_fields(coord: xr.DataArray) -> np.ndarray:
    """The (year, …, microsecond) fields of a decoded time coordinate, shape (7, …)."""
    try:
        fields = [np.asarray(getattr(coord.dt, f).values, dtype=np.float64)
                  for f in _TIME_FIELDS]
    except (TypeError, AttributeError):
        units = coord.attrs.get("units", coord.encoding.get("units", "none"))
        raise DataError(f"time coordinate {coord.name!r} is not decoded to dates (dtype "
                        f"{coord.dtype}, units {units!r}), so a time range cannot be applied; "
                        "open it with CF time decoding (use_cftime=True for odd calendars) "
                        "or select by its numbers with ds.sel") from None
    return np.stack(fields)


def keys_of_fields(fields: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    valid = np.all(np.isfinite(fields), axis=0)
    ints = np.where(valid, fields, 0).astype(np.int64)
    key = ints[0]
    for i, radix in enumerate(_FIELD_RADIX, start=1):
        key = key * radix + ints[i]
    return key, valid


def format_fields(parts: Sequence[int]) -> str:
    year, month, day, hour, minute, second = (int(p) for p in parts[:6])
    text = f"{year:04d}-{month:02d}-{day:02d}"
    return text if (hour, minute, second) == (0, 0, 0) else \
        f"{text}T{hour:02d}:{minute:02d}:{second:02d}"




@dataclass(frozen=True)
class Period:
    """A period whose ends are partial dates: ``1997-01`` means the whole month."""

    start: Any
    end: Any
    start_key: int | None
    end_key: int | None

    @classmethod
    def checked(cls, values: Any, *, what: str) -> Period:
        start, end = pair(values, what=what, form="(start, end) dates")
        start_key = None if start is None else time_key(time_parts(start, what), low=True)
        end_key = None if end is None else time_key(time_parts(end, what), low=False)
        if start_key is not None and end_key is not None and start_key > end_key:
            raise UsageError(f"{what} start ({time_text(start)}) is after end "
                             f"({time_text(end)}): give START/END with START <= END")
        return cls(start, end, start_key, end_key)

    @property
    def text(self) -> str:
        return f"{time_text(self.start)}/{time_text(self.end)}"

    def contains(self, keys: np.ndarray) -> np.ndarray:
        inside = np.ones(keys.shape, dtype=bool)
        if self.start_key is not None:
            inside &= keys >= self.start_key
        if self.end_key is not None:
            inside &= keys <= self.end_key
        return inside

    def overlaps(self, start_key: int | None, end_key: int | None) -> bool:
        """Whether this period overlaps the one between two keys (None: open)."""
        return ((self.end_key is None or start_key is None or start_key <= self.end_key)
                and (self.start_key is None or end_key is None or self.start_key <= end_key))

    def inside(self, coord: xr.DataArray) -> np.ndarray:
        """Which steps of a decoded time coordinate fall in this period (NaT: outside)."""
        keys, valid = keys_of_fields(time_fields(coord))
        return self.contains(keys) & valid


#: Help of every command-line ``--time`` option (the text form read by :func:`period`).
TIME_OPTION_HELP = ("START/END: years or ISO dates, inclusive, either may be empty "
                    "(1983/2012, 1997-01/1998-12, 2000-01-01/).")

#: Markers of an open side of a period, besides None.
_OPEN_SIDES = ("", "..")


def period_example(what: str) -> str:
    """A valid example of a period for the argument (or command-line option) *what*."""
    if what.startswith("-"):
        return f"{what} 1983/2012"
    return f'{what}=("1983", "2012") or {what}="1983/2012"'


def _side(value: Any, what: str) -> Any:
    """One end of a period as :func:`time_parts` reads it: years become text."""
    if value is None or (isinstance(value, str) and value.strip() in _OPEN_SIDES):
        return None
    if isinstance(value, bool | np.bool_):
        raise UsageError(f"{what} {value!r} is not a date: give a year, an ISO string, a "
                         "datetime or None")
    if isinstance(value, int | np.integer):
        year = int(value)
        return f"{'-' if year < 0 else ''}{abs(year):04d}"
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise UsageError(f"{what} has NaT (not a time) for an end")
        unit = np.datetime_data(value)[0]
        # a datetime64 of a year, month or day stands for all of it, as its text does
        return str(np.datetime_as_string(value, unit=unit)) if unit in ("Y", "M", "D") \
            else value
    if isinstance(value, dt.datetime) and value != value:  # pandas.NaT
        raise UsageError(f"{what} has NaT (not a time) for an end")
    return value


def period(value: Any, *, what: str = "period") -> Period:
    """Read a period in any of the accepted forms into a checked :class:`Period`.

    Parameters
    ----------
    value
        ``(start, end)`` (a tuple, list, array or ``slice``) whose ends are each a year
        (``1983``), an ISO date or partial date (``"1983"``, ``"1983-06"``,
        ``"1983-06-15"``, ``"1983-06-15T12:00"``), a :class:`datetime.date`, a
        datetime (:class:`datetime.datetime`, :class:`pandas.Timestamp`,
        :class:`numpy.datetime64`, a cftime date of any calendar), or None / ``""`` /
        ``".."`` for an open side; the text ``"START/END"`` (``"1983/2012"``,
        ``"1997-01/"``); or a :class:`Period`, returned unchanged. A year, a month or a
        day (text, :class:`datetime.date` or a ``datetime64`` of that unit) stands for
        all of it, ends included: ``(1983, 2012)`` runs from 1983-01-01T00:00 to the last
        instant of 2012-12-31. A datetime is that instant.
    what
        The argument's name (``"baseline"``) or command-line option (``"--time"``), used
        in error messages.

    Returns
    -------
    Period

    Raises
    ------
    UsageError
        One line naming *what* and giving a valid example: not a pair (one year alone
        included; write ``1997/1997`` for one year), an end that is not a date, an
        impossible field (month 13), or a start after the end.

    Examples
    --------
    >>> period((1983, 2012), what="baseline").text
    '1983/2012'
    >>> period("1983/2012").end_key == period(("1983-01-01", "2012-12-31")).end_key
    True
    """
    if isinstance(value, Period):
        return value
    example = period_example(what)
    try:
        if isinstance(value, str):
            if value.count("/") != 1:
                raise UsageError(f"{what} {value!r} is not START/END: give two dates "
                                 "separated by '/', either may be empty (one year: "
                                 "1997/1997)")
            start, end = value.split("/")
        elif isinstance(value, slice):
            if value.step is not None:
                raise UsageError(f"{what} {value!r} has a step: give slice(start, end)")
            start, end = value.start, value.stop
        elif isinstance(value, dict | set | frozenset):
            raise UsageError(f"{what} {value!r} is not a pair: give (start, end)")
        else:
            start, end = pair(value, what=what, form="(start, end)")
        return Period.checked((_side(start, what), _side(end, what)), what=what)
    except UsageError as exc:
        raise UsageError(f"{exc}; e.g. {example}") from None
