"""Coastlines computed offline: the 0 m contour of the ETOPO bathymetry sample.

Nothing is downloaded when a map is drawn. The contour of ETOPO ``ROSE`` (elevation in
metres, negative below sea level) at 0 m is traced once with :mod:`contourpy`, stored as
``coastlines/<source>_<sha>.npz`` under the sample cache (``OCEANDATA_SAMPLE_CACHE``;
written under a temporary name and renamed) and reused. ``<sha>`` is the start of the
bathymetry file's registry sha256, so a changed file gives a new cache entry.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import UsageError

#: Bathymetry samples a coastline can be traced from (resolution 60' or 20').
SOURCES = ("etopo60", "etopo20")


def cache_path(source: str = "etopo60") -> Path:
    """Where the coastline of *source* is cached (it may not exist yet)."""
    from .. import sample_data
    from ..config import get_settings

    _check(source)
    sha = sample_data.info(source).sha256[:12]
    return get_settings().sample_cache / "coastlines" / f"{source}_0m_{sha}.npz"


def _check(source: str) -> None:
    if source not in SOURCES:
        raise UsageError(f"coastline source {source!r} is not one of {', '.join(SOURCES)}")


def _trace(source: str) -> list[np.ndarray]:
    """The 0 m contour lines of the bathymetry sample, as (n, 2) lon/lat arrays."""
    import contourpy
    import xarray as xr

    from .. import sample_data

    with xr.open_dataset(sample_data.fetch(source)) as ds:
        rose = ds["ROSE"]
        ydim, xdim = rose.dims
        lon = ds[xdim].values.astype(float)
        lat = ds[ydim].values.astype(float)
        z = rose.values.astype(float)
    if lon[-1] - lon[0] >= 360.0:  # etopo20 repeats its first column at the end
        keep = lon < lon[0] + 360.0
        lon, z = lon[keep], z[:, keep]
    # close the globe: append the first column at +360 so lines cross the seam
    lon = np.append(lon, lon[0] + 360.0)
    z = np.concatenate([z, z[:, :1]], axis=1)
    gen = contourpy.contour_generator(lon, lat, z, line_type="Separate")
    return [np.asarray(line, dtype=float) for line in gen.lines(0.0) if len(line) >= 2]


@lru_cache(maxsize=4)
def coastline_lines(source: str = "etopo60") -> tuple[np.ndarray, ...]:
    """The coastline lines in the bathymetry's own longitudes (ETOPO: 20.5..380.5).

    Parameters
    ----------
    source
        ``"etopo60"`` (1°, default) or ``"etopo20"`` (1/3°).

    Returns
    -------
    tuple of numpy.ndarray
        Lines of (lon, lat) points, each (n, 2).
    """
    path = cache_path(source)
    if path.is_file():
        with np.load(path) as data:
            points, starts = data["points"], data["starts"]
        return tuple(np.split(points, starts[1:]))
    lines = _trace(source)
    starts = np.cumsum([0] + [len(line) for line in lines[:-1]])
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.part.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(tmp, points=np.concatenate(lines), starts=starts)
        os.replace(tmp, path)
    except PermissionError:
        # the shared sample cache is the platform's (users of the hub run as their own
        # accounts): the traced lines still serve this process, only the file is skipped
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return tuple(lines)


def _split(lon: np.ndarray, lat: np.ndarray, keep: np.ndarray) -> list[np.ndarray]:
    """Runs of consecutive kept points that do not jump across the longitude seam."""
    breaks = np.abs(np.diff(lon)) > 180.0
    cut = np.flatnonzero(breaks | ~keep[:-1] | ~keep[1:]) + 1
    out = []
    for seg_lon, seg_lat, seg_keep in zip(np.split(lon, cut), np.split(lat, cut),
                                          np.split(keep, cut), strict=True):
        if seg_keep.all() and len(seg_lon) >= 2:
            out.append(np.column_stack([seg_lon, seg_lat]))
    return out


def coastline(
    bbox: Sequence[float] | None = None,
    *,
    lon_start: float = 0.0,
    source: str = "etopo60",
) -> list[np.ndarray]:
    """Coastline lines in a longitude convention, cut to a box.

    Parameters
    ----------
    bbox
        ``(west, south, east, north)`` in the target convention (``west < east``);
        default the whole globe.
    lon_start
        Longitudes are wrapped into ``[lon_start, lon_start + 360)``: 0 for 0..360,
        -180 for -180..180.
    source
        Bathymetry sample the coastline is traced from (see :data:`SOURCES`).

    Returns
    -------
    list of numpy.ndarray
        (n, 2) arrays of longitude and latitude; lines are broken where they leave the
        box or cross the longitude seam.

    Examples
    --------
    >>> lines = coastline((100, 0, 130, 25))  # doctest: +SKIP
    """
    lines = coastline_lines(source)
    out: list[np.ndarray] = []
    for line in lines:
        lon = (line[:, 0] - lon_start) % 360.0 + lon_start
        lat = line[:, 1]
        if bbox is None:
            keep = np.ones(len(lon), dtype=bool)
        else:
            west, south, east, north = bbox
            keep = (lon >= west) & (lon <= east) & (lat >= south) & (lat <= north)
        out.extend(_split(lon, lat, keep))
    return out


def coastline_path(
    bbox: Sequence[float] | None = None,
    *,
    lon_start: float = 0.0,
    source: str = "etopo60",
    kdims: Sequence[str] = ("lon", "lat"),
):
    """The coastline as a black :class:`holoviews.Path` (group ``Coastline``).

    Parameters are those of :func:`coastline`; *kdims* names the axes so the path
    overlays a map whose axes have those names.
    """
    from ._backend import BACKEND, hv

    lines = coastline(bbox, lon_start=lon_start, source=source)
    return hv.Path(lines, kdims=list(kdims), group="Coastline").opts(
        color="black", line_width=0.8, backend=BACKEND)
