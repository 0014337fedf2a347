"""Versioned stores: Icechunk repositories holding Zarr v3, and plain Zarr v3 exports.

An Icechunk repository keeps every ingest or append as one commit (a snapshot) on the
``main`` branch; tags name snapshots, and any snapshot can be read back. oceandata puts
its provenance in each commit's metadata (see :mod:`oceandata.ingest.pipeline`), so
``oceandata store log`` tells what every version was made from. A plain Zarr v3 store
(``--format zarr``) has a single version; its provenance is in its attributes.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from ..errors import DataError, UsageError, VersionNotFound

__all__ = ["StoreVersion", "commit", "default_command", "is_icechunk", "is_zarr", "log",
           "open_repository", "open_store", "tag", "verify", "version_metadata"]

#: Icechunk snapshot ids: 20 characters of Crockford base32.
_SNAPSHOT_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{20}")
BRANCH = "main"


def _quiet() -> None:
    """Icechunk warns on every local-filesystem open; one writer per store is our rule."""
    import icechunk

    icechunk.set_logs_filter("error")


def is_icechunk(path: str | os.PathLike[str]) -> bool:
    """Whether *path* is an Icechunk repository (a folder with ``refs`` and ``snapshots``)."""
    p = Path(path)
    return (p / "snapshots").is_dir() and (p / "refs").is_dir()


def is_zarr(path: str | os.PathLike[str]) -> bool:
    """Whether *path* is a plain Zarr v3 store."""
    return (Path(path) / "zarr.json").is_file()


def open_repository(path: str | os.PathLike[str], *, create: bool = False) -> Any:
    """Open (or create) the Icechunk repository at *path*.

    Raises
    ------
    DataError
        *path* is not a repository (and *create* is false), or cannot be created.
    """
    import icechunk

    _quiet()
    storage = icechunk.local_filesystem_storage(str(Path(path).absolute()))
    if create:
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
            return icechunk.Repository.create(storage)
        except (OSError, icechunk.IcechunkError) as exc:
            raise DataError(f"cannot create a store at {path}: {_first_line(exc)}") from exc
    if not is_icechunk(path):
        kind = "a plain Zarr store (one version, no log)" if is_zarr(path) else \
            "not a store" if Path(path).exists() else "missing"
        raise DataError(f"{path} is {kind}; give an Icechunk store made by `oceandata ingest`")
    try:
        return icechunk.Repository.open(storage)
    except icechunk.IcechunkError as exc:
        raise DataError(f"cannot open the store {path}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip(" |x`-") for ln in str(exc).splitlines() if ln.strip(" |x`-")]
    return lines[0] if lines else type(exc).__name__


def _session(repo: Any, path: str | os.PathLike[str], version: str | None) -> Any:
    """A read-only session at a tag, a snapshot id or the newest commit of ``main``."""
    import icechunk

    if version is None or version == BRANCH:
        return repo.readonly_session(branch=BRANCH)
    if version in repo.list_tags():
        return repo.readonly_session(tag=version)
    if _SNAPSHOT_ID.fullmatch(version):
        try:
            return repo.readonly_session(snapshot_id=version)
        except icechunk.IcechunkError:
            pass
    names = tuple(sorted(repo.list_tags()))
    raise VersionNotFound(f"store {path} has no version {version!r}; tags: "
                          f"{', '.join(names) or 'none'}; snapshot ids: see `oceandata store "
                          "log`", names)


def open_store(path: str | os.PathLike[str], *, version: str | None = None,
               chunks: Any = None, decode: bool = True) -> xr.Dataset:
    """Open a store lazily, at *version* (tag or snapshot id) or its newest version.

    Parameters
    ----------
    path
        Icechunk repository or plain Zarr v3 folder.
    version
        Tag or snapshot id; None for the newest commit. Plain Zarr stores have none.
    chunks
        Dask chunks; default the store's own chunks.
    decode
        CF-decode (default) or return the stored values as they are.
    """
    kwargs: dict[str, Any] = {"consolidated": False, "chunks": {} if chunks is None else chunks}
    if not decode:
        kwargs.update(decode_cf=False, mask_and_scale=False)
    if is_icechunk(path):
        session = _session(open_repository(path), path, version)
        ds = xr.open_zarr(session.store, **kwargs)
        ds.attrs["oceandata_snapshot"] = session.snapshot_id
        return ds
    if version is not None:
        raise UsageError(f"{path} is a plain Zarr store with a single version; "
                         "versions need an Icechunk store")
    if not is_zarr(path):
        raise DataError(f"{path} is not a Zarr or Icechunk store")
    return xr.open_zarr(str(path), **kwargs)


@dataclass(frozen=True)
class StoreVersion:
    """One commit of a store."""

    id: str
    written_at: str
    message: str
    tags: tuple[str, ...]
    metadata: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"id": self.id, "written_at": self.written_at, "message": self.message,
                "tags": list(self.tags), "metadata": self.metadata}


def log(path: str | os.PathLike[str]) -> list[StoreVersion]:
    """Every commit of ``main``, newest first, with its tags and provenance."""
    repo = open_repository(path)
    tags: dict[str, list[str]] = {}
    for name in sorted(repo.list_tags()):
        tags.setdefault(repo.lookup_tag(name), []).append(name)
    return [StoreVersion(snap.id, snap.written_at.isoformat(timespec="seconds"), snap.message,
                         tuple(tags.get(snap.id, ())), dict(snap.metadata or {}))
            for snap in repo.ancestry(branch=BRANCH)]


def version_metadata(path: str | os.PathLike[str], version: str | None = None
                     ) -> tuple[str, dict[str, Any]]:
    """Snapshot id and oceandata provenance of one version (newest by default)."""
    if not is_icechunk(path):
        ds = open_store(path)
        return "zarr", json.loads(ds.attrs.get("oceandata_ingest", "{}"))
    repo = open_repository(path)
    session = _session(repo, path, version)
    snapshot = session.snapshot_id
    for snap in repo.ancestry(snapshot_id=snapshot):
        return snapshot, dict(snap.metadata or {})
    raise DataError(f"store {path}: snapshot {snapshot} not found")  # pragma: no cover


def default_command() -> str:
    """The command line of this process as ``oceandata ARGS`` (recorded and shown)."""
    return " ".join(["oceandata", *sys.argv[1:]])


def _audit(action: str, path: str | os.PathLike[str], **detail: Any) -> None:
    """One audit record of a store change, by the Unix user of this process."""
    from ..governance import audit
    from ..governance.locks import unix_user

    audit.record(action, actor=unix_user(), target=f"store:{os.path.abspath(path)}",
                 source=f"cli@{socket.gethostname()}", detail=detail)


def commit(session: Any, path: str | os.PathLike[str], message: str, *,
           metadata: dict[str, Any], command: str | None = None) -> str:
    """Commit a writable *session* of the store at *path* and audit it; return the snapshot.

    Call it while holding the store's lock (:func:`oceandata.governance.locks.store_lock`).

    Parameters
    ----------
    session
        A writable Icechunk session of the store's ``main`` branch.
    path
        The store (named in messages and in the audit record ``store:/abs/path``).
    message, metadata
        The commit's message and provenance.
    command
        The command recorded in the audit trail (default this process's command line).

    Returns
    -------
    str
        The new snapshot id.

    Raises
    ------
    DataError
        The branch moved since the session began (someone wrote the store without
        oceandata's lock), or Icechunk refused the commit. Nothing was committed.
    """
    import icechunk

    try:
        snapshot = session.commit(message, metadata=metadata)
    except icechunk.ConflictError as exc:
        raise DataError(f"store {path} was changed by another writer while this one was "
                        f"writing (its branch moved from {exc.expected_parent} to "
                        f"{exc.actual_parent}; that writer did not take oceandata's store "
                        f"lock); nothing was committed: see `oceandata store log {path}`, then "
                        "run the command again") from exc
    except icechunk.IcechunkError as exc:
        raise DataError(f"cannot commit to {path}: {_first_line(exc)}; nothing was "
                        "committed") from exc
    _audit("store.commit", path, snapshot=snapshot, message=message,
           command=command or default_command())
    return snapshot


def tag(path: str | os.PathLike[str], name: str, *, version: str | None = None,
        command: str | None = None, wait: float = 0.0) -> str:
    """Tag a version (newest by default) of an Icechunk store; return its snapshot id.

    Holds the store's lock (:func:`oceandata.governance.locks.store_lock`) while it tags.

    Parameters
    ----------
    path
        Icechunk store.
    name
        The tag: letters, digits, ``.``, ``_`` and ``-``.
    version
        Tag or snapshot id to name (default the newest commit).
    command
        What to show a second writer and record in the audit trail.
    wait
        Seconds to wait for another writer's lock.

    Raises
    ------
    UsageError
        The tag exists already (tags never move) or is not a valid name.
    StoreLocked
        Another process is writing the store.
    """
    import icechunk

    from ..governance.locks import store_lock

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
        raise UsageError(f"tag {name!r} is not valid: use letters, digits, '.', '_' and '-', "
                         "starting with a letter or digit")
    repo = open_repository(path)
    command = command or default_command()
    with store_lock(path, command=command, wait=wait):
        if name in repo.list_tags():
            raise UsageError(f"store {path} already has tag {name!r} (at "
                             f"{repo.lookup_tag(name)}); tags never move, choose another name")
        snapshot = _session(repo, path, version).snapshot_id
        try:
            repo.create_tag(name, snapshot_id=snapshot)
        except icechunk.IcechunkError as exc:
            raise DataError(f"cannot tag {path}: {_first_line(exc)}") from exc
        _audit("store.tag", path, snapshot=snapshot, tag=name, command=command)
    return snapshot


def verify(path: str | os.PathLike[str], *, version: str | None = None) -> list[str]:
    """Recompute every variable's digest and compare it with the one recorded at commit.

    Parameters
    ----------
    path
        Icechunk or plain Zarr store made by ``oceandata ingest``.
    version
        Tag or snapshot id; default the newest.

    Returns
    -------
    list of str
        One line per mismatch, unreadable variable, or missing or unexpected variable;
        empty when the store is intact.
    """
    import dask

    from .checksums import array_digest

    snapshot, meta = version_metadata(path, version)
    expected: dict[str, str] = meta.get("checksums") or {}
    if not expected:
        return [f"{path}@{snapshot}: no checksums recorded (not written by oceandata ingest)"]
    ds = open_store(path, version=version, decode=False)
    problems = []
    for name in sorted(set(expected) | set(map(str, ds.variables))):
        if name not in ds.variables:
            problems.append(f"{path}@{snapshot}: variable {name!r} is missing")
            continue
        if name not in expected:
            problems.append(f"{path}@{snapshot}: variable {name!r} was not in the commit")
            continue
        try:
            (actual,) = dask.compute(array_digest(ds[name].variable), scheduler="threads")
        except Exception as exc:  # a damaged chunk fails to decompress or decode
            problems.append(f"{path}@{snapshot}: variable {name!r} cannot be read: "
                            f"{_first_line(exc)}")
            continue
        if actual != expected[name]:
            problems.append(f"{path}@{snapshot}: variable {name!r} checksum {actual} differs "
                            f"from the recorded {expected[name]}")
    return problems
