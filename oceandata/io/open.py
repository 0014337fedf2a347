"""``open_dataset``: the one entry point from a catalog name or a path to a lazy subset."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xarray as xr

from ..catalog import Catalog, open_catalog
from ..catalog.drivers import driver_for_path, open_source
from ..config import get_settings
from ..errors import DatasetNotFound
from .subset import subset


def _looks_like_path(name: str) -> bool:
    return (os.sep in name or "://" in name or Path(name).suffix.lower() in
            {".nc", ".nc4", ".cdf", ".zarr", ".csv", ".h5", ".icechunk"})


def open_dataset(
    name_or_path: str | os.PathLike[str],
    *,
    bbox: Sequence[float] | None = None,
    time: Any = None,
    depth: tuple[float | None, float | None] | None = None,
    variables: Sequence[str] | None = None,
    chunks: Any = None,
    catalog: Catalog | str | os.PathLike[str] | None = None,
    version: str | None = None,
) -> xr.Dataset:
    """Open a catalog entry or a file lazily, cut to a box, a period and depths.

    Parameters
    ----------
    name_or_path
        A catalog entry name (see ``oceandata catalog list``), or a path/URL to a
        NetCDF, Zarr or CSV source.
    bbox
        ``(west, south, east, north)`` in degrees; ``west > east`` crosses the
        antimeridian. Longitudes in -180..180 or 0..360 whatever the data use.
    time
        A period in any form of :func:`oceandata.times.period`: ``(1997, 1998)``,
        ``("1997-01", "1998-12")``, ``"1997-01/1998-12"``, datetimes, a
        :class:`~oceandata.times.Period`; either end may be None (see "Periods" in
        docs/analysis.md).
    depth
        ``(min, max)`` in metres, positive down.
    variables
        Data variables to keep (with their coordinates and bounds).
    chunks
        Dask chunks: ``"auto"``, ``{}`` (the storage chunks) or sizes by dimension.
        Default: the catalog entry's ``args.chunks``, else the setting
        ``OCEANDATA_CHUNKS`` (``auto``).
    catalog
        Catalog to look names up in; default the root catalog.
    version
        For versioned stores (Icechunk entries or store paths): a tag or snapshot id to
        read instead of the newest version (or the entry's pinned one).

    Returns
    -------
    xarray.Dataset
        Lazy, CF-decoded and dask-backed; axes found through CF attributes.

    Raises
    ------
    DatasetNotFound
        Unknown name (with the closest names).
    UsageError, DataError
        Bad box or ranges, or ranges outside the data (the message gives the data's extent).

    Examples
    --------
    >>> import oceandata
    >>> ds = oceandata.open_dataset("cobe_sst2", bbox=(170, -5, -120, 5),
    ...                             time=("1997-01", "1998-12"))  # doctest: +SKIP
    """
    text = os.fspath(name_or_path)
    if isinstance(catalog, Catalog):
        cat: Catalog | None = catalog
    elif catalog is not None or not _looks_like_path(text):
        cat = open_catalog(catalog)
    else:
        cat = None
    request = {"bbox": bbox, "time": time, "depth": depth, "variables": variables}
    if cat is not None and text in cat.entries:
        entry = cat.entries[text]
        layout = _cheapest_layout(entry, request, version) if entry.layouts else None
        ds = entry.to_dask(chunks=chunks, version=version, layout=layout)
    elif _looks_like_path(text) and (Path(text).exists() or "://" in text):
        if chunks is None:
            chunks = get_settings().dask_chunks()
        driver = driver_for_path(text)
        if version is not None and driver not in ("zarr", "icechunk"):
            raise DatasetNotFound(f"{text} is not a versioned store; version= needs an "
                                  "Icechunk store")
        ds = open_source(driver, [text], {"version": version}, chunks=chunks)
    elif cat is not None:
        cat.entry(text)  # raises DatasetNotFound with suggestions
        raise AssertionError("unreachable")  # pragma: no cover
    else:
        raise DatasetNotFound(f"{text} does not exist; give an existing file or a catalog name "
                              "(`oceandata catalog list`)")
    return subset(ds, **request)


def _cheapest_layout(entry: Any, request: dict[str, Any], version: str | None) -> str | None:
    """The layout whose chunks cost the fewest bytes for *request* (None: the default).

    Each layout is opened lazily (metadata only) and costed with
    :func:`oceandata.ingest.chunks.read_cost`; see docs/ingest.md for the model.
    """
    from ..ingest.chunks import read_cost

    best: tuple[int, str | None] | None = None
    for layout in (None, *entry.layouts):
        ds = entry.to_dask(version=version, layout=layout)
        chunks = {str(n): dict(zip(v.dims, v.encoding["chunks"], strict=True))
                  for n, v in ds.variables.items() if v.encoding.get("chunks")}
        cost = read_cost(ds, chunks, **request)
        if best is None or cost < best[0]:
            best = (cost, layout)
    return None if best is None else best[1]
