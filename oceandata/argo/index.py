"""The GDAC profile index (``ar_index_global_prof.txt``): read, search, resolve to files.

The index lists every profile file of the GDAC as ``file,date,latitude,longitude,ocean,
profiler_type,institution,date_update``, where ``file`` is
``<dac>/<wmo>/profiles/<M><wmo>_<cycle>[D].nc``: ``M`` is the data mode when the index
was written (``R`` real time, ``D`` delayed; ``B``/``S`` prefixes are BGC files) and a
trailing ``D`` marks a descending profile. A local mirror may be older or newer than its
index, so a file named ``R..`` may now be ``D..``; :func:`resolve` looks for both.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, UsageError
from ..io.subset import _BBox
from ..times import keys_of_fields, period

__all__ = ["default_mirror", "read_index", "resolve", "search"]

_NAME = re.compile(r"(?P<prefix>[A-Z]{1,2})(?P<wmo>\d+)_(?P<cycle>\d+)(?P<descending>D?)\.nc")


def default_mirror() -> Path:
    """The sample GDAC subset, fetched through the registry (checked by sha256)."""
    from .. import sample_data

    index = sample_data.fetch("argo/gdac/ar_index_global_prof.txt")
    sample_data.fetch_matching("argo/gdac/dac/*")
    return index.parent


def mirror_path(mirror: str | os.PathLike[str] | None) -> Path:
    """*mirror* as a checked folder (default: the sample subset)."""
    root = default_mirror() if mirror is None else Path(mirror)
    if not (root / "dac").is_dir():
        raise UsageError(f"{root} is not a GDAC mirror: it has no dac/ folder; give the folder "
                         "that holds dac/ and ar_index_global_prof.txt")
    return root


def read_index(mirror: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """The profile index as a table, with parsed dates and the fields of each file name.

    Returns
    -------
    pandas.DataFrame
        The index columns plus ``time`` (datetime64), ``dac``, ``wmo`` (int), ``cycle``
        (int), ``direction`` (``A`` ascending / ``D`` descending), ``index_mode`` (the
        file-name prefix) and ``line`` (line number in the index file).
    """
    root = mirror_path(mirror)
    path = root / "ar_index_global_prof.txt"
    if not path.is_file():
        raise DataError(f"{root} has no ar_index_global_prof.txt; fetch the GDAC index into it")
    with open(path, encoding="utf-8") as fh:
        header_lines = 0
        for line in fh:
            if not line.startswith("#"):
                break
            header_lines += 1
    try:
        table = pd.read_csv(path, comment="#", dtype={"file": str, "date": str,
                                                       "date_update": str})
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not a GDAC profile index ({exc})") from exc
    missing = {"file", "date", "latitude", "longitude"} - set(table.columns)
    if missing:
        raise DataError(f"{path}: columns {sorted(missing)} missing; the GDAC index format 2.0 "
                        "has file,date,latitude,longitude,ocean,profiler_type,institution,"
                        "date_update")
    table["line"] = np.arange(len(table)) + header_lines + 2  # the column header is a line
    parts = table["file"].str.split("/", expand=True)
    table["dac"] = parts[0]
    names = parts[parts.columns[-1]].str.extract(_NAME)
    table["wmo"] = pd.to_numeric(names["wmo"], errors="coerce").astype("Int64")
    table["cycle"] = pd.to_numeric(names["cycle"], errors="coerce").astype("Int64")
    table["direction"] = np.where(names["descending"] == "D", "D", "A")
    table["index_mode"] = names["prefix"]
    table["time"] = pd.to_datetime(table["date"], format="%Y%m%d%H%M%S", errors="coerce")
    return table


def search(*, bbox: Sequence[float] | None = None, time: Any = None,
           dac: str | Sequence[str] | None = None, wmo: int | Sequence[int] | None = None,
           mirror: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Profiles of the index inside a box, a period, some DACs and floats.

    Parameters
    ----------
    bbox
        ``(west, south, east, north)``; west > east crosses the antimeridian.
    time
        A period in any form of :func:`oceandata.times.period`: ``(start, end)`` years,
        partial ISO dates (``"2015"`` is the whole year) or datetimes, or ``"START/END"``;
        open ends allowed.
    dac, wmo
        One or several DAC names (``coriolis``) or float WMO numbers.

    Returns
    -------
    pandas.DataFrame
        The matching rows of :func:`read_index`, with ``available`` telling whether the
        mirror holds the profile (as its own file or in the float's ``_prof.nc``).
    """
    table = read_index(mirror)
    keep = np.ones(len(table), dtype=bool)
    if bbox is not None:
        box = _BBox.checked(bbox, what="bbox")
        keep &= box.contains(table["latitude"].to_numpy(float), table["longitude"].to_numpy(float))
    if time is not None:
        chosen = period(time, what="time")
        stamps = table["time"]
        fields = np.stack([stamps.dt.year, stamps.dt.month, stamps.dt.day, stamps.dt.hour,
                           stamps.dt.minute, stamps.dt.second,
                           np.zeros(len(stamps))]).astype(float)
        keys, valid = keys_of_fields(fields)
        keep &= valid & chosen.contains(keys)
    if dac is not None:
        wanted = [dac] if isinstance(dac, str) else list(dac)
        unknown = sorted(set(wanted) - set(table["dac"]))
        if unknown:
            raise UsageError(f"DAC {', '.join(unknown)} is not in the index; DACs: "
                             f"{', '.join(sorted(table['dac'].unique()))}")
        keep &= table["dac"].isin(wanted).to_numpy()
    if wmo is not None:
        floats = [int(wmo)] if isinstance(wmo, int | np.integer | str) else [int(w) for w in wmo]
        keep &= table["wmo"].isin(floats).fillna(False).to_numpy(bool)
    found = table[keep].copy()
    root = mirror_path(mirror)
    found["available"] = [resolve(row, root, strict=False) is not None
                          for row in found.itertuples()]
    return found.reset_index(drop=True)


def resolve(row: Any, mirror: Path, *, strict: bool = True) -> Path | None:
    """The file holding an index row's profile in the mirror, or None (or DataError).

    Looks for the file the index names, then the same profile under the other data
    mode (``R``/``D`` change as the DAC reprocesses), then the float's ``_prof.nc``.
    """
    path = mirror / "dac" / row.file
    if path.is_file():
        return path
    name = path.name
    for prefix in ("D", "R", "A"):
        if name[0] in "RDA":
            other = path.with_name(prefix + name[1:])
            if other.is_file():
                return other
    whole = mirror / "dac" / str(row.dac) / str(row.wmo) / f"{row.wmo}_prof.nc"
    if whole.is_file():
        return whole
    if strict:
        raise DataError(f"index line {row.line} ({row.file}) points to a file that is not in "
                        f"the mirror {mirror}, nor is the float's {whole.name}")
    return None
