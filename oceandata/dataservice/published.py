"""Published entries in the open-data service: ``<data dir>/catalogs/published.yaml``
merged into the served catalog while the service runs, and their publication records
(persistent identifier, authors, citation: :mod:`oceandata.alloc.publishing`).

The allocations service writes the catalog when an administrator approves a publish
request (under its lock, replaced atomically); :func:`refresh_published` looks at it
(one ``stat``) on each request of the portal and STAC, and when it changed reads it again
and adds its entries to the served catalog: a new mapping (a request holding the old one
reads a consistent one), also given to the project catalogs' watcher
(:class:`oceandata.catalog.projects.ProjectCatalogs`) as part of its base, so its next
merge keeps them. Published entries are released ``open``: everyone sees them.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ..catalog.core import Entry
from ..errors import CatalogError, UsageError

log = logging.getLogger("oceandata.dataservice.published")

__all__ = ["PublishedCatalog", "publication_of", "refresh_published"]


class PublishedCatalog:
    """The published entries merged into *catalog* (see the module docstring).

    Parameters
    ----------
    catalog
        The served catalog.
    path
        The published catalog (default :func:`oceandata.alloc.publishing.
        published_catalog_path`).
    """

    def __init__(self, catalog: Any, path: Path | None = None) -> None:
        from ..alloc.publishing import published_catalog_path

        self.catalog = catalog
        self.path = Path(path) if path is not None else published_catalog_path()
        self.stamp: tuple[int, int, int] | None = None
        self.entries: dict[str, Entry] = {}
        self.pids: dict[str, str] = {}
        self._lock = threading.Lock()

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size, info.st_ino

    def stale(self) -> bool:
        """Whether the file changed since it was read."""
        return self._stamp() != self.stamp

    def refresh(self, projects: Any = None) -> set[str]:
        """Read the file again if it changed; merge its entries; return the new names."""
        from ..alloc.publishing import read_publication
        from ..catalog.core import open_catalog

        with self._lock:
            stamp = self._stamp()
            if stamp == self.stamp:
                return set()
            self.stamp = stamp
            if stamp is None:
                return set()
            try:
                cat = open_catalog(self.path)
            except (CatalogError, UsageError, OSError) as exc:
                log.error("published catalog %s is not served: %s", self.path, exc)
                return set()
            taken = {n for n, e in self.catalog.entries.items()
                     if n not in self.entries and e.source_file != cat.path}
            fresh = {}
            for name, entry in cat.entries.items():
                if name in taken:  # the root catalog's entries keep their names
                    log.error("published entry %r is not served: the name is taken", name)
                    continue
                entry.root = self.catalog.path
                fresh[name] = entry
                record = read_publication(name, self.path.parent.parent)
                if record and record.get("pid"):
                    self.pids[str(record["pid"])] = name
            added = set(fresh) - set(self.entries)
            self.entries = fresh
            if projects is not None:  # the project catalogs' watcher keeps them too
                projects.base.update(fresh)
                projects.base_children["published"] = cat
            self.catalog.entries = {**self.catalog.entries, **fresh}
            self.catalog.children = {**self.catalog.children, "published": cat}
        return added


def publication_of(entry: Entry) -> dict[str, Any] | None:
    """The publication record of a published entry (None for any other entry)."""
    from ..alloc.publishing import published_catalog_path, read_publication

    path = published_catalog_path()
    try:
        if Path(entry.source_file).resolve() != path.resolve():
            return None
    except OSError:  # pragma: no cover
        return None
    return read_publication(entry.name, path.parent.parent)


def watcher(app: Any) -> PublishedCatalog:
    """The app's :class:`PublishedCatalog` (made at first use)."""
    found = getattr(app.state, "published", None)
    if found is None:
        found = app.state.published = PublishedCatalog(app.state.catalog)
    return found


async def refresh_published(request: Request) -> None:
    """FastAPI dependency: merge newly published entries before the route runs."""
    app = request.app
    found = watcher(app)
    if not found.stale():
        return
    added = await run_in_threadpool(found.refresh, getattr(app.state, "projects", None))
    if added:
        from .index import SearchIndex

        app.state.index = SearchIndex(app.state.catalog)  # search finds them at once
        ledger = getattr(app.state, "ledger", None)
        if ledger is not None and getattr(ledger, "datasets", None) is not None:
            ledger.datasets = frozenset(app.state.catalog.entries)
        log.info("published entries now served: %s", ", ".join(sorted(added)))
