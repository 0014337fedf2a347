"""Ingest into a project: ``oceandata ingest SOURCES... --project ID [--name N] [--append]``.

The sources (upload names, resolved under ``<workspace>/uploads/``, or paths) become the
versioned store ``<workspace>/stores/<name>.icechunk``, registered as ``<name>`` in the
project catalog ``<workspace>/catalog.yaml`` (its members see it as ``p<id>.<name>``:
:mod:`oceandata.catalog.projects`).

Before anything is written the allocations service is asked whether the write fits the
project's quota (:func:`oceandata.alloc.workspaces.remote_check`, with the user's token).
The size of the write is estimated as the sources' bytes on disk: a compressed store is
usually smaller, and an append counts every source named, even one already in the store,
so the estimate errs on the side of refusing. After the write the service measures the
workspace again (:func:`~oceandata.alloc.workspaces.remote_measure`).

Nothing is half-written: the store is written in one transaction (:func:`.pipeline.ingest`);
the catalog is rewritten under its lock, by a temporary file renamed into place, and when
that fails the store goes back to where it was (a new store is removed, an append's commit
is undone by resetting the branch to the previous snapshot). Files are written
group-readable and group-writable (umask 007) so every member can read and append.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CatalogError, OceandataError, UsageError

__all__ = ["ProjectIngest", "ingest_into_project", "project_workspace", "resolve_sources"]


@dataclass
class ProjectIngest:
    """What an ingest into a project did."""

    project: int
    name: str
    qualified_name: str
    store: Path
    catalog: Path
    snapshot: str | None
    changed: bool
    message: str
    report: Path | None
    skipped: int
    estimate_bytes: int
    storage: dict[str, Any] | None


def project_workspace(project: int) -> Path:
    """The workspace of *project*, asked of the allocations service (``GET api/me``, with
    the user's token): only a member learns it.

    Raises
    ------
    oceandata.alloc.cli.AllocationNotFound
        The user is in no such project in force today (one line naming theirs).
    """
    from ..alloc.cli import AllocationNotFound, call
    from ..catalog.core import user_projects

    mine = user_projects(call("GET", "me"))
    if int(project) not in mine:
        theirs = ", ".join(str(p) for p in sorted(mine)) or "none"
        raise AllocationNotFound(f"no project {project} of yours in force today (your "
                                 f"projects: {theirs})")
    return mine[int(project)]


def resolve_sources(sources: Sequence[str | os.PathLike[str]], workspace: Path) -> list[str]:
    """Upload names to paths under ``<workspace>/uploads/``; anything else is a path.

    A source without ``/`` that names an upload (or a glob matching uploads) is that
    upload; otherwise it is a file or glob as for any ingest.
    """
    uploads = Path(workspace) / "uploads"
    out: list[str] = []
    for source in sources:
        text = os.fspath(source)
        if "/" not in text and text not in ("", ".", ".."):
            pattern = str(uploads / text)
            found = sorted(glob.glob(pattern)) if any(c in text for c in "*?[") else \
                [pattern] if os.path.isfile(pattern) else []
            if found:
                out.extend(found)
                continue
        out.append(text)
    return out


@contextlib.contextmanager
def _group_umask() -> Iterator[None]:
    """Files written in the block are group-readable and -writable, not others'."""
    old = os.umask(0o007)
    try:
        yield
    finally:
        os.umask(old)


def _default_name(paths: Sequence[Path]) -> str:
    import re

    stem = re.sub(r"[^A-Za-z0-9_-]", "_", paths[0].stem).lstrip("_-")[:64]
    return stem or "dataset"


def ingest_into_project(sources: Sequence[str | os.PathLike[str]], project: int, *,
                        name: str | None = None, append: bool = False,
                        chunks: str | dict[str, int] = "auto", strict: bool = False,
                        check: bool = True, progress: bool = False,
                        command: str | None = None, wait: float = 0.0,
                        defaults: dict[str, Any] | None = None,
                        workspace: Path | None = None) -> ProjectIngest:
    """Ingest *sources* into project *project*'s store *name* and register it in the
    project catalog.

    Parameters
    ----------
    sources
        Upload names (under ``<workspace>/uploads/``), files or globs.
    project
        The project (allocation id); the caller must be one of its members.
    name
        The entry's name in the project catalog (default the first source's stem); the
        store is ``<workspace>/stores/<name>.icechunk``.
    append
        Add later time steps to the existing store.
    chunks, strict, check, progress, command, wait
        As for :func:`oceandata.ingest.ingest`.
    defaults
        Registration metadata (classification, access) as ``oceandata ingest`` builds it.
    workspace
        The workspace (default: asked of the allocations service).

    Returns
    -------
    ProjectIngest

    Raises
    ------
    QuotaExceeded
        The estimate does not fit the quota (nothing was written).
    UsageError, DataError
        As :func:`oceandata.ingest.ingest`; a store that exists without ``append``.
    """
    from ..alloc import workspaces
    from ..catalog.projects import (
        check_entry_name,
        load_project_catalog,
        project_catalog_path,
        qualified_name,
    )
    from ..governance.locks import store_lock
    from .pipeline import expand_sources, ingest
    from .register import register_store
    from .store import default_command, is_icechunk, log, open_repository

    project = int(project)
    workspace = Path(workspace) if workspace is not None else project_workspace(project)
    paths = expand_sources(resolve_sources(sources, workspace))
    if not paths:
        raise UsageError("no source files: give upload names or NetCDF files")
    name = check_entry_name(name if name is not None else _default_name(paths))
    stores = workspace / "stores"
    if not stores.is_dir():
        raise UsageError(f"project {project}'s workspace has no stores/ folder ({stores}): "
                         "ask an administrator to create the workspace")
    store = stores / f"{name}.icechunk"
    catalog = project_catalog_path(workspace)
    try:  # a catalog that cannot take the entry is found before the work, not after it
        registered = load_project_catalog(project, workspace)
    except CatalogError as exc:
        raise CatalogError(f"project {project}'s catalog cannot be updated: {exc}") from None
    # a store left unregistered (the process died between commit and registration) is
    # completed by running the same command again: the ingest finds its sources in it
    if not append and is_icechunk(store) and qualified_name(project, name) in \
            registered.entries:
        raise UsageError(f"project {project} already has a store {name!r}: pass --append to "
                         "add time steps, or choose another --name")
    if append and not is_icechunk(store):
        raise UsageError(f"--append: project {project} has no store {name!r}; ingest without "
                         "--append first")
    estimate = sum(p.stat().st_size for p in paths)
    # refused here, before anything is written, with usage and quota in one line
    workspaces.remote_check(project, estimate)
    command = command or default_command()
    with _group_umask():
        before = log(store)[0].id if append else None
        result = ingest(paths, store, name=name, chunks=chunks, append=append, strict=strict,
                        check=check, progress=progress, command=command, wait=wait)
        try:
            with store_lock(catalog, command=command, wait=max(wait, 30.0)):
                register_store(catalog, name, store,
                               description=_described(store) or
                               f"{name}: versioned store of project {project}",
                               defaults=_defaults(project, defaults))
        except BaseException:
            if result.changed and before is None:  # a new store: leave none behind
                shutil.rmtree(store, ignore_errors=True)
                if result.report is not None:
                    Path(result.report).unlink(missing_ok=True)
            elif result.changed and before is not None:  # undo the append's commit
                with store_lock(store, command=command, wait=max(wait, 30.0)):
                    open_repository(store).reset_branch("main", before)
            raise
    try:
        storage = workspaces.remote_measure(project)
    except OceandataError:  # measured by the service's periodic scan anyway
        storage = None
    return ProjectIngest(project=project, name=name, qualified_name=qualified_name(
        project, name), store=store, catalog=catalog, snapshot=result.snapshot,
        changed=result.changed, message=result.message, report=result.report,
        skipped=len(result.skipped), estimate_bytes=estimate, storage=storage)


def _described(store: Path) -> str | None:
    """What the data say of themselves (ACDD ``summary``, else ``title``), one line of at
    most 1,000 characters: the entry's description, and a publication's abstract."""
    from .store import open_store

    attrs = open_store(store).attrs
    for key in ("summary", "title"):
        text = " ".join(str(attrs.get(key) or "").split())
        if text:
            return text[:1000]
    return None


def _defaults(project: int, given: dict[str, Any] | None) -> dict[str, Any]:
    from .register import default_classification

    out = dict(given or {})
    classification = {**default_classification(), **out.get("classification", {})}
    if "classification" not in out:
        classification["rationale"] = (f"data of project {project}: its members only, until "
                                       "published to the open catalog")
    out["classification"] = classification
    out["tags"] = sorted({*out.get("tags", []), "project"})
    return out
