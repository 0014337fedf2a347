"""Shadows of project stores in the data service's dataset cache (review 20).

A root reader reads a project store from its shadow (hard links to the files sealed,
:func:`oceandata.catalog.projects.sealed_store`); the walk that makes one costs as much
as the store has files. The review found a new shadow at every open, never removed
(3000 empty folders: 15,000 root-owned folders after 5 opens), ``name@bogus`` walking
and leaving one, and the walk running under the service's global lock of netCDF-C.
In process, as root, with the service's own :class:`DatasetCache`: one shadow per
unchanged store whatever the opens and versions, a new one after a commit, shadows
removed when the cache evicts or forgets their datasets, a bogus version refused before
any walk, the walk done before the lock is taken.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.test_project_seal import APPEND, STORE, N

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="sealing changes owners: root")

GID = 65534  # a group other than root's, as a project's is


def _world(tmp_path: Path, names: tuple[str, ...] = ("x",)) -> tuple[Path, Any]:
    """A workspace ``<tmp>/projects/7`` with stores *names* registered in its catalog;
    the project catalog as the data service loads it."""
    from oceandata.catalog.projects import load_project_catalog
    from oceandata.ingest.register import register_store

    workspace = tmp_path / "projects" / "7"
    (workspace / "stores").mkdir(parents=True)
    os.chown(workspace, 0, GID)
    for name in names:
        store = workspace / "stores" / f"{name}.icechunk"
        exec(STORE.format(store=str(store), n=N), {})
        register_store(workspace / "catalog.yaml", name, store,
                       defaults={"license": "CC-BY-4.0", "provider": "P"})
    return workspace, load_project_catalog(7, workspace)


def _shadows(tmp_path: Path) -> list[str]:
    sealed = tmp_path / "sealed"
    return sorted(os.listdir(sealed)) if sealed.exists() else []


@needs_root
def test_opens_of_an_unchanged_store_share_one_shadow(tmp_path: Path) -> None:
    import icechunk

    from oceandata.dataservice.protocols import DatasetCache

    workspace, cat = _world(tmp_path)
    entry = cat.entries["p7.x"]
    store = workspace / "stores" / "x.icechunk"
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(store)))
    snap = repo.lookup_branch("main")
    repo.create_tag("v1", snap)
    caches = [DatasetCache(size=8), DatasetCache(size=8)]
    for cache in caches:  # every version, twice, from two caches; forgotten in between
        for version in (None, "v1", snap, "main"):
            assert cache.get(entry, version)["v"].size == N
        cache.forget(["p7.other"])  # another entry: nothing held here changes
    assert len(_shadows(tmp_path)) == 1
    caches[0].forget([entry.name])
    assert len(_shadows(tmp_path)) == 1  # the other cache still reads it
    caches[1].forget([entry.name])
    assert _shadows(tmp_path) == []  # the last reader gone: removed

    # a commit (the member's append) is a new state: a new shadow for the new open,
    # the old one kept while a dataset reads it, removed after
    old = caches[0].get(entry, None)
    before = _shadows(tmp_path)
    exec(APPEND.format(store=str(store), n=N), {})
    caches[1].forget([entry.name])
    new = caches[1].get(entry, None)
    assert new["v"].size == 2 * N and old["v"].size == N
    after = _shadows(tmp_path)
    assert len(after) == 2 and before[0] in after
    caches[0].forget([entry.name])
    assert _shadows(tmp_path) == [a for a in after if a != before[0]]
    caches[1].forget([entry.name])
    assert _shadows(tmp_path) == []


@needs_root
def test_an_evicted_dataset_lets_its_shadow_go(tmp_path: Path) -> None:
    from oceandata.dataservice.protocols import DatasetCache

    _, cat = _world(tmp_path, ("x", "y"))
    cache = DatasetCache(size=1)
    cache.get(cat.entries["p7.x"], None)
    (first,) = _shadows(tmp_path)
    cache.get(cat.entries["p7.y"], None)  # evicts p7.x
    (second,) = _shadows(tmp_path)
    assert second != first
    cache.forget(["p7.y"])
    assert _shadows(tmp_path) == []


@needs_root
def test_a_bogus_version_is_refused_before_any_walk(tmp_path: Path) -> None:
    from fastapi import HTTPException

    from oceandata.dataservice.protocols import DatasetCache

    workspace, cat = _world(tmp_path)
    store = workspace / "stores" / "x.icechunk"
    cache = DatasetCache()
    for bogus in ("bogus", "0" * 20, "../x", "tag.v1"):
        with pytest.raises(HTTPException) as err:
            cache.get(cat.entries["p7.x"], bogus)
        assert err.value.status_code == 404 and str(store) not in err.value.detail
    assert _shadows(tmp_path) == []
    # never walked: the seal would have given every file the project's group
    assert {os.lstat(p).st_gid for p in store.rglob("*")} == {0}


@needs_root
def test_the_walk_runs_before_the_lock_of_netcdf(tmp_path: Path) -> None:
    from oceandata.dataservice.protocols import DatasetCache

    _, cat = _world(tmp_path)
    seen: list[list[str]] = []

    class Recording:
        """The cache's opening lock, noting the shadows made when it is taken."""

        def __init__(self) -> None:
            self.lock = threading.RLock()

        def __enter__(self) -> None:
            seen.append(_shadows(tmp_path))
            self.lock.acquire()

        def __exit__(self, *exc: object) -> None:
            self.lock.release()

    cache = DatasetCache()
    cache._opening = Recording()
    cache.get(cat.entries["p7.x"], None)
    assert len(seen) == 1 and len(seen[0]) == 1  # sealed before the lock was taken
