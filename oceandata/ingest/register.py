"""Catalog entries for stores, with variables and extents read from the data.

:func:`register_store` writes (or replaces) one ``icechunk`` entry in a catalog YAML,
creating the file if needed. The entry's variables (name, standard_name, units,
long_name), bounding box, time range, depth range and grid kind come from the store's
newest version, and the entry is checked with :func:`oceandata.io.validate.validate_entry`
before the file is replaced (temporary name, then rename), so a registered entry always
validates.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import yaml

from ..errors import CatalogError, DataError
from ..io.subset import _Axes, _depth_in_metres, _structural_names
from ..io.validate import _covers_circle, _half_step
from ..times import format_fields, keys_of_fields, time_fields
from .store import open_store

__all__ = ["derive_metadata", "register_store"]


class _PlainDumper(yaml.SafeDumper):
    """A safe dumper that never writes anchors or aliases (a value used twice is written
    twice): project catalogs refuse them (:func:`oceandata.catalog.projects.check_plain_yaml`)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _bbox(ds: xr.Dataset, axes: _Axes) -> dict[str, float] | None:
    lat, lon = axes.get("latitude", ds), axes.get("longitude", ds)
    if lat is None:
        return None
    lat_v = np.asarray(lat.values, dtype=np.float64)
    lat_v = lat_v[np.isfinite(lat_v)]
    box = {"south": round(float(lat_v.min()), 4), "north": round(float(lat_v.max()), 4)}
    if lon is None:
        return {"west": 0.0, "east": 360.0, **box}
    lon_v = np.asarray(lon.values, dtype=np.float64)
    step = _half_step(lon_v, period=360.0)
    lon_v = lon_v[np.isfinite(lon_v)]
    if _covers_circle(lon_v, step):
        west = -180.0 if lon_v.min() < 0 else 0.0
        return {"west": west, "east": west + 360.0, **box}
    # west edge: the point after the widest gap between neighbouring longitudes
    ring = np.unique(lon_v % 360.0)
    gaps = np.diff(np.append(ring, ring[0] + 360.0))
    widest = int(np.argmax(gaps))
    west, east = ring[(widest + 1) % ring.size], ring[widest]
    if lon_v.min() < 0:  # keep the data's own convention
        west, east = ((west + 180.0) % 360.0) - 180.0, ((east + 180.0) % 360.0) - 180.0
    return {"west": round(float(west), 4), "east": round(float(east), 4), **box}


def _time_range(ds: xr.Dataset, axes: _Axes) -> dict[str, str] | None:
    coord = axes.get("time", ds)
    if coord is None:
        return None
    try:
        fields = time_fields(coord).reshape(7, -1)
    except DataError:  # times that are not dates (a climatology's "Month" numbers)
        return None
    keys, valid = keys_of_fields(fields)
    if not valid.any():
        return None
    keys = np.where(valid, keys, keys[valid][0])
    return {"start": format_fields(fields[:, int(np.argmin(keys))]),
            "end": format_fields(fields[:, int(np.argmax(keys))])}


def _depth_range(ds: xr.Dataset, axes: _Axes) -> dict[str, float] | None:
    coord = axes.get("vertical", ds)
    if coord is None:
        return None
    try:
        depth = _depth_in_metres(coord)
    except DataError:  # pressure in dbar (Argo) is not a depth; no range is declared
        return None
    depth = depth[np.isfinite(depth)]
    return {"min": float(depth.min()), "max": float(depth.max())} if depth.size else None


def default_classification() -> dict[str, Any]:
    """The classification of a store registered without one: graded ``general`` and released
    to ``registered`` users only, until an operator reviews it (docs/governance.md)."""
    from ..catalog.core import current_user

    return {"category": "scientific", "grade": "general",
            "rationale": "not reviewed yet: graded general and released to registered users "
                         "by default at registration (oceandata ingest)",
            "owner": current_user(), "release": "registered"}


def derive_metadata(ds: xr.Dataset, *, name: str,
                    defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Catalog metadata (the :class:`~oceandata.catalog.schema.EntryMetadata` fields)
    read from a dataset's attributes and coordinates.

    *defaults* fill what the data do not say (provider, license, tags...); the data win
    for variables and extents.
    """
    axes = _Axes(ds)
    structural = _structural_names(ds, axes)
    variables = []
    for var_name, var in ds.data_vars.items():
        if var_name in structural:
            continue
        item = {"name": str(var_name)}
        for key in ("standard_name", "units", "long_name"):
            value = var.attrs.get(key, var.encoding.get(key))
            if value is not None:
                item[key] = str(value)
        variables.append(item)
    lat = axes.get("latitude", ds)
    feature = ds.attrs.get("featureType")
    grid = "dsg" if feature else \
        "curvilinear" if lat is not None and lat.ndim == 2 else "regular"
    attrs = ds.attrs
    md: dict[str, Any] = {
        "title": str(attrs.get("title") or name),
        "provider": str(attrs.get("institution") or attrs.get("source") or "not stated"),
        "license": str(attrs.get("license") or "not stated in the source"),
        **({"citation": str(attrs["references"])} if attrs.get("references") else {}),
        **dict(defaults or {}),
        "variables": variables,
        "grid": grid,
        **({"feature_type": feature} if feature else {}),
        "tags": sorted({*(defaults or {}).get("tags", []), "ingested", "versioned"}),
    }
    md.setdefault("classification", default_classification())
    for key, value in (("bbox", _bbox(ds, axes)), ("time_range", _time_range(ds, axes)),
                       ("depth_range", _depth_range(ds, axes))):
        if value is not None:
            md[key] = value
    return md


def register_store(catalog: str | os.PathLike[str], name: str, store: str | os.PathLike[str],
                   *, layouts: Mapping[str, str | os.PathLike[str]] | None = None,
                   version: str | None = None, description: str | None = None,
                   defaults: Mapping[str, Any] | None = None) -> str:
    """Add or replace the entry *name* for *store* in *catalog*, derived from the data.

    Parameters
    ----------
    catalog
        Catalog YAML; created (intake v1 layout) when missing.
    name
        Entry name.
    store
        The store (its default layout).
    layouts
        Other chunk layouts of the same data: layout name → store path.
    version
        Pin a tag or snapshot id (default: follow the newest version).
    description, defaults
        Text and metadata the data cannot give (provider, license, tags...).

    Returns
    -------
    str
        The entry name.

    Raises
    ------
    CatalogError
        The entry would not validate against its data (nothing is written).
    """
    from ..catalog.core import open_catalog
    from ..io.validate import validate_entry

    path = Path(catalog)
    ds = open_store(store, version=version)
    args: dict[str, Any] = {"urlpath": str(Path(store).absolute()), "chunks": {}}
    if version is not None:
        args["version"] = version
    if layouts:
        args["layouts"] = {k: str(Path(v).absolute()) for k, v in layouts.items()}
    entry = {"driver": "icechunk",
             "description": description or f"{name}: versioned store ingested by oceandata",
             "args": args,
             "metadata": derive_metadata(ds, name=name, defaults=defaults)}
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise CatalogError(f"{path}{line}: malformed YAML; fix it or move it away before "
                           "registering") from None
    doc = doc or {"metadata": {"version": 1, "title": "Ingested stores"}, "sources": {}}
    if not isinstance(doc, dict) or not isinstance(doc.setdefault("sources", {}), dict):
        raise CatalogError(f"{path}: not an intake catalog (a mapping with 'sources:' "
                           "expected); fix it or move it away before registering")
    doc["sources"][name] = entry
    from ..atomic import atomic_output

    with atomic_output(path) as tmp:  # removed on failure, SIGINT or SIGTERM
        tmp.write_text(yaml.dump(doc, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True),
                       encoding="utf-8")
        problems = validate_entry(open_catalog(tmp).entry(name))
        if problems:
            raise CatalogError(f"entry {name!r} for {store} would not validate: {problems[0]}")
    return name
