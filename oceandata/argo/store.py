"""Argo profiles in one appendable Icechunk store, keyed by float, cycle and direction.

:func:`ingest_floats` loads floats with :func:`oceandata.argo.load` (one user mode per
store, recorded in the store) and appends only the profiles whose key
``(platform_number, cycle_number, direction)`` is not yet in the store, profile and
level variables in the same transaction: re-ingesting changes nothing, and a newer
float file adds only its new cycles. The store keeps the ragged layout (dimensions
``profile`` and ``obs``), so ``oceandata.open_dataset`` and ``subset`` work on it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path

import dask
import numpy as np
import xarray as xr

from ..errors import UsageError
from ..ingest.checksums import dataset_digests, open_raw
from ..ingest.store import (
    BRANCH,
    commit,
    default_command,
    is_icechunk,
    open_repository,
    open_store,
)
from .reader import load

__all__ = ["ARGO_DEFAULTS", "ingest_floats"]

ARGO_DEFAULTS = {
    "title": "Argo float profiles (GDAC subset)",
    "provider": "Argo GDAC via euroargodev/argopy-data",
    "license": "Argo data are freely available without restriction",
    "citation": "Argo (2000). Argo float data and metadata from Global Data Assembly Centre "
                "(Argo GDAC). SEANOE.",
    "doi": "10.17882/42182",
    "tags": ["argo", "profiles", "temperature", "salinity", "in-situ"],
    "classification": {
        "category": "observation", "grade": "general", "release": "open",
        "rationale": "Argo data are freely available without restriction (Argo data policy); "
                     "no personal or security content",
        "owner": "Argo data management (GDAC) via the centre's data services unit"},
}



def _keys(ds: xr.Dataset) -> list[tuple[int, int, str]]:
    return list(zip(ds["platform_number"].values.astype(int).tolist(),
                    ds["cycle_number"].values.astype(int).tolist(),
                    [d.decode() if isinstance(d, bytes) else str(d)
                     for d in ds["direction"].values], strict=True))


def _select_profiles(ds: xr.Dataset, keep: np.ndarray) -> xr.Dataset:
    """Profiles where *keep* is true, with their levels (ragged rows stay consistent)."""
    rows = np.repeat(keep, ds["row_size"].values.astype(int))
    return ds.isel(profile=np.flatnonzero(keep), obs=np.flatnonzero(rows))


def _storable(ds: xr.Dataset) -> xr.Dataset:
    """Text variables as variable-length strings, a stable Zarr v3 data type."""
    out = ds.copy()
    for name in ("direction", "data_mode"):
        out[name] = out[name].astype(object)
    return out


def ingest_floats(wmo: Sequence[int], store: str | os.PathLike[str], *,
                  mode: str = "standard", mirror: str | os.PathLike[str] | None = None,
                  command: str | None = None) -> tuple[int, str | None]:
    """Add the floats' profiles that the store does not hold yet, in one commit.

    Holds the store's lock (:func:`oceandata.governance.locks.store_lock`) from reading
    which profiles it holds to the commit.

    Returns
    -------
    (int, str or None)
        Profiles added and the new snapshot id (None when nothing was new).
    """
    from ..governance.locks import store_lock

    command = command or default_command()
    Path(store).parent.mkdir(parents=True, exist_ok=True)  # the lock file goes beside it
    with store_lock(store, command=command):
        return _ingest_floats_locked(wmo, Path(store), mode=mode, mirror=mirror,
                                     command=command)


def _ingest_floats_locked(wmo: Sequence[int], target: Path, *, mode: str,
                          mirror: str | os.PathLike[str] | None,
                          command: str) -> tuple[int, str | None]:
    from .. import __version__

    ds = load(list(wmo), mode=mode, mirror=mirror)
    exists = is_icechunk(target) and (target / "refs").is_dir() and _has_data(target)
    if exists:
        current = open_store(target)
        stored_mode = current.attrs.get("argo_user_mode")
        if stored_mode != mode:
            raise UsageError(f"store {target} holds {stored_mode!r} mode profiles; ingest with "
                             f"--mode {stored_mode} or use another store")
        have = set(_keys(current))
        keep = np.array([k not in have for k in _keys(ds)], dtype=bool)
        if not keep.any():
            return 0, None
        ds = _select_profiles(ds, keep)
    ds = _storable(ds)
    for var in ds.variables.values():
        var.encoding = {}
    repo = open_repository(target, create=not is_icechunk(target))
    session = repo.writable_session(BRANCH)
    with dask.config.set(scheduler="threads"):
        if exists:
            profile_vars = [v for v in ds.variables if ds[v].dims == ("profile",)]
            obs_vars = [v for v in ds.data_vars if ds[v].dims == ("obs",)]
            ds[profile_vars].drop_vars([], errors="ignore").to_zarr(
                session.store, append_dim="profile", consolidated=False)
            ds[obs_vars].to_zarr(session.store, append_dim="obs", consolidated=False)
        else:
            ds.to_zarr(session.store, mode="w", consolidated=False, zarr_format=3)
    digests = dataset_digests(open_raw(session.store))
    added = ds.sizes["profile"]
    meta = {"oceandata": __version__,
            "command": command,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "sources": [{"name": s, "argo_user_mode": mode}
                        for s in ds.attrs.get("argo_sources", "").split()],
            "profiles_added": int(added), "checksums": digests}
    snapshot = commit(session, target, f"argo: {added} profiles of {', '.join(map(str, wmo))}",
                      metadata=meta, command=command)
    return int(added), snapshot


def _has_data(path: Path) -> bool:
    try:
        return "profile" in open_store(path).sizes
    except Exception:  # an empty repository left by an interrupted first ingest
        return False
