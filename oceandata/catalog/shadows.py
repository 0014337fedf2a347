"""Shadows of project stores shared by the readers of one process (the open-data service).

A root reader never opens a member's store in place: it reads the store's *shadow*
(:func:`oceandata.catalog.projects.sealed_store`), hard links to every file sealed, made
by a walk of the whole store. That walk costs as much as the store has files, and every
shadow is a tree of folders of its own; made at every open (each version, each time the
dataset cache forgets a dataset) they piled up and kept the service's opening lock busy.

:class:`ShadowPool` makes one shadow per store *state* and shares it: the key is the
store's real path and a cheap fingerprint of what a reader starts from (the store
folder's inode, the names, inodes, sizes and modification times of ``refs/*/ref.json``
and of ``snapshots/*``). A commit, a new tag or a store put in the place of another
changes it, so the next open seals again; an unchanged store is walked once. Each open
holds its shadow (:meth:`ShadowPool.acquire`) until the reader lets it go
(:meth:`ShadowPool.release`, the dataset cache when it evicts or forgets the dataset);
the last release removes the shadow (:func:`~oceandata.catalog.projects.drop_shadow`).

A reused shadow holds what was sealed when it was made: files a member adds later are
not in it, which is the point (a name missing there stays missing), and any new commit
changes the fingerprint. The fingerprint is read without following a link (each folder
opened with ``O_NOFOLLOW`` from its parent's descriptor); when it cannot be read the open
gets a shadow of its own, so :func:`~oceandata.catalog.projects.sealed_store` says why
the store is not served.
"""

from __future__ import annotations

import itertools
import logging
import os
import stat
import threading
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

#: at most this many entries of ``refs/`` and of ``snapshots/`` are read for a
#: fingerprint; a store with more gets a shadow of its own at every open (still correct)
FINGERPRINT_MAX_ENTRIES = 100_000

_UNIQUE = itertools.count()


def _listing(fd: int, name: str, depth: int) -> tuple[tuple[str, int, int, int], ...]:
    """(name, inode, size, mtime) of the entries of folder *name* of *fd*, and of the
    entries of its sub-folders down to *depth* more levels, links never followed (the
    seal changes modes and owners, never these)."""
    out: list[tuple[str, int, int, int]] = []
    sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
    try:
        names = sorted(os.listdir(sub))
        if len(names) > FINGERPRINT_MAX_ENTRIES:
            raise OSError("too many entries for a fingerprint")
        for child in names:
            info = os.stat(child, dir_fd=sub, follow_symlinks=False)
            out.append((f"{name}/{child}", info.st_ino, info.st_size, info.st_mtime_ns))
            if depth > 0 and stat.S_ISDIR(info.st_mode):
                out.extend((f"{name}/{n}", *rest)
                           for n, *rest in _listing(sub, child, depth - 1))
    finally:
        os.close(sub)
    return tuple(out)


def store_fingerprint(store: str | os.PathLike[str],
                      workspace: str | os.PathLike[str]) -> Hashable:
    """What a reader of Icechunk store *store* starts from: the store folder's inode and
    ``(name, inode, size, mtime)`` of every entry of ``refs/`` (and of the ref
    folders) and of ``snapshots/``.

    Raises
    ------
    OSError
        The store cannot be reached from *workspace* without a link, or is not a store.
    """
    from ..errors import CatalogError
    from .projects import _walk_to

    workspace = Path(os.path.realpath(workspace))
    try:
        fd = _walk_to(workspace, Path(os.path.abspath(store)))
    except CatalogError as exc:
        raise OSError(str(exc)) from None
    try:
        info = os.fstat(fd)
        return (info.st_dev, info.st_ino, _listing(fd, "refs", 1),
                _listing(fd, "snapshots", 0))
    finally:
        os.close(fd)


def _live_tag(refs: int, name: str) -> bool:
    """Whether tag folder *name* of ``refs/`` (a descriptor) is a folder with no
    deletion marker (Icechunk's ``ref.json.deleted``); no link followed."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=refs)
    except OSError:
        return False
    try:
        os.stat("ref.json.deleted", dir_fd=fd, follow_symlinks=False)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def check_version(store: str | os.PathLike[str], workspace: str | os.PathLike[str],
                  version: str) -> None:
    """Refuse *version* of project store *store* before anything is sealed when the
    store can have no such version: neither a tag folder ``refs/tag.<version>`` nor a
    snapshot file ``snapshots/<version>`` (read without following a link). When one
    exists, the open decides (a deleted tag keeps its folder).

    Raises
    ------
    VersionNotFound
        With the store's tags.
    """
    from ..errors import CatalogError, VersionNotFound
    from ..ingest.store import _SNAPSHOT_ID, BRANCH
    from .projects import _walk_to

    if version == BRANCH:
        return
    try:
        fd = _walk_to(Path(os.path.realpath(workspace)), Path(os.path.abspath(store)))
    except CatalogError:
        return  # the open says why the store is not served
    try:
        refs = os.open("refs", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        try:
            names = os.listdir(refs)
            if len(names) > FINGERPRINT_MAX_ENTRIES:
                return
            tags = tuple(sorted(n.removeprefix("tag.") for n in names
                                if n.startswith("tag.") and _live_tag(refs, n)))
        finally:
            os.close(refs)
        if version in tags:
            return
        if _SNAPSHOT_ID.fullmatch(version):
            try:
                os.stat(f"snapshots/{version}", dir_fd=fd, follow_symlinks=False)
                return
            except OSError:
                pass
    except OSError:
        return  # not a store: the open says so
    finally:
        os.close(fd)
    raise VersionNotFound(f"store {store} has no version {version!r}; tags: "
                          f"{', '.join(tags) or 'none'}", tags)


@dataclass
class _Shadow:
    path: Path
    users: int = 0
    key: Hashable = None


@dataclass
class ShadowPool:
    """Shadows of project stores, one per store state, shared by the opens that read
    it (see the module docstring). Thread-safe; sealing runs outside any lock but the
    store's own (two opens of one unchanged store wait for one walk)."""

    _by_key: dict[Hashable, _Shadow] = field(default_factory=dict)
    _by_path: dict[Path, _Shadow] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _making: dict[str, threading.Lock] = field(default_factory=dict)

    def acquire(self, store: str | os.PathLike[str],
                workspace: str | os.PathLike[str]) -> Path:
        """The shadow to read project store *store* from (made if its state has none),
        held until :meth:`release`.

        Raises
        ------
        CatalogError
            The store is not served (:func:`~oceandata.catalog.projects.sealed_store`).
        """
        from .projects import sealed_store

        real = os.path.realpath(store)
        with self._lock:
            making = self._making.setdefault(real, threading.Lock())
        with making:  # one walk of one store at a time; other stores go on
            try:
                key: Hashable = (real, store_fingerprint(store, workspace))
            except OSError:
                key = (real, "unique", next(_UNIQUE))
            with self._lock:
                found = self._by_key.get(key)
                if found is not None:
                    found.users += 1
                    return found.path
            path = sealed_store(store, workspace)
            # the state read before the walk: a commit during the walk makes a new key
            # at the next open (the shadow holds at least what the fingerprint names)
            shadow = _Shadow(path=path, users=1, key=key)
            with self._lock:
                self._by_key[key] = shadow
                self._by_path[path] = shadow
            return path

    def release(self, path: str | os.PathLike[str]) -> None:
        """One reader of shadow *path* is done; the last one removes it."""
        from .projects import drop_shadow

        with self._lock:
            shadow = self._by_path.get(Path(path))
            if shadow is None:
                return
            shadow.users -= 1
            if shadow.users > 0:
                return
            del self._by_path[shadow.path]
            if self._by_key.get(shadow.key) is shadow:
                del self._by_key[shadow.key]
        try:
            drop_shadow(shadow.path)
        except Exception:  # a shadow left behind is removed by the next process
            log.warning("shadow %s not removed", shadow.path, exc_info=True)

    def shadows(self) -> dict[Path, int]:
        """The shadows held: path → how many readers."""
        with self._lock:
            return {p: s.users for p, s in self._by_path.items()}


#: the process's pool (the open-data service's dataset cache and every root reader)
SHADOWS = ShadowPool()
