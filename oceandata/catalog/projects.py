"""Project catalogs: each project's ``<workspace>/catalog.yaml``, seen by its members only.

A project (an approved allocation with members, :mod:`oceandata.alloc.projects`) keeps
its versioned stores in ``<workspace>/stores/`` and lists them in ``<workspace>/catalog.yaml``
(written by ``oceandata ingest --project ID``). Its members see those entries merged into
:func:`oceandata.open_catalog` and, with their token, in the open-data service; nobody
else sees them at all (the access rule, :func:`oceandata.governance.rules.decide`, refuses
any caller who is not a member of the entry's project, whatever its release says).

Names: an entry is ``<name>`` inside its project's catalog and ``p<id>.<name>`` once
merged (:func:`qualified_name`), so two projects may both have an ``sst`` and no project
entry can take the name of an open one.

A project catalog is written by members, so it is read with more suspicion than the
platform's own (:func:`load_project_catalog`): only ``icechunk`` and ``zarr`` entries,
no sub-catalogs, no templates, no sample data, no YAML anchors or aliases and a bounded
size (:func:`check_plain_yaml`: a few hundred bytes of nested aliases would expand to
millions of values), and every path must lie inside the project's workspace once links
are resolved. The open-data service runs with the rights
to read every workspace, so it seals a project store before it opens it
(:func:`sealed_store`, :func:`seal_store`: every file root's, in sticky folders, so no
member can replace what it opened while it reads; a store holding a link is not served)
and runs :func:`verify_snapshot` after: the snapshot read must be a file of the
project's own store, reached without following any link. A member who swaps their store
(or a folder of it) for a link to another project's store while it is opened therefore
gets an error, not the data: the other store's snapshot is not in theirs, and once a
snapshot of theirs is read every manifest and chunk it names has a random id that the
other store does not hold.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import CatalogError, UsageError

__all__ = ["CATALOG_FILE", "ENTRY_NAME", "ProjectCatalogs", "check_entry_name",
           "check_plain_yaml", "check_store_tree", "drop_shadow", "load_project_catalog",
           "merge_projects", "project_catalog_path", "qualified_name", "seal_store",
           "seal_stores", "sealed_store", "split_qualified", "verify_snapshot"]

log = logging.getLogger(__name__)

#: the project catalog's file name in a workspace
CATALOG_FILE = "catalog.yaml"
#: names of entries in a project catalog (no dot: ``p<id>.<name>`` splits one way)
ENTRY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_QUALIFIED = re.compile(r"p(?P<project>[1-9][0-9]{0,17})\.(?P<name>[A-Za-z0-9][A-Za-z0-9_-]{0,63})")
#: the drivers a project entry may use: versioned stores written into the workspace (a
#: plain Zarr store is read by predictable paths, see :func:`verify_snapshot`)
PROJECT_DRIVERS = ("icechunk",)
#: an Icechunk snapshot id (20 characters of Crockford base32)
_SNAPSHOT_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{20}")
#: a project catalog larger than this is refused (it is written by members)
MAX_CATALOG_BYTES = 8 * 2**20
#: a project catalog of more YAML nodes than this is refused (a few thousand entries)
MAX_CATALOG_NODES = 200_000
#: a project catalog nesting mappings or lists deeper than this is refused (an entry is a
#: few levels deep; the checks and the loader walk values recursively)
MAX_YAML_DEPTH = 64


def qualified_name(project: int, name: str) -> str:
    """``p<project>.<name>``: the name of a project entry outside its project catalog."""
    return f"p{int(project)}.{name}"


def split_qualified(name: str) -> tuple[int, str] | None:
    """``p12.sst`` → ``(12, "sst")``; None for a name that is not a project entry's."""
    m = _QUALIFIED.fullmatch(name)
    return (int(m["project"]), m["name"]) if m else None


def check_entry_name(name: str) -> str:
    """*name* if it may name an entry of a project catalog, else :class:`UsageError`."""
    if not ENTRY_NAME.fullmatch(str(name)):
        raise UsageError(f"--name {str(name)[:70]!r} is not a project entry name: letters, "
                         "digits, '_' and '-', starting with a letter or digit, at most 64 "
                         "characters")
    return str(name)


def project_catalog_path(workspace: str | os.PathLike[str]) -> Path:
    """``<workspace>/catalog.yaml``."""
    return Path(workspace) / CATALOG_FILE


def _inside(path: str, workspace: Path) -> Path:
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(workspace):
        raise CatalogError(f"{path} is not inside the project's workspace {workspace}")
    return real


def _templated(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, Mapping):
        return any(_templated(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_templated(v) for v in value)
    return False


def _read_text(path: Path) -> str:
    """The catalog's text, never through a link, bounded in size."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CatalogError(f"cannot read project catalog {path}: "
                           f"{exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise CatalogError(f"project catalog {path} is not a file")
        data = fh.read(MAX_CATALOG_BYTES + 1)
    if len(data) > MAX_CATALOG_BYTES:
        raise CatalogError(f"project catalog {path} is larger than "
                           f"{MAX_CATALOG_BYTES // 2**20} MiB")
    return data.decode("utf-8", errors="replace")


def check_plain_yaml(text: str, path: str | os.PathLike[str]) -> None:
    """Refuse a member-written catalog that uses YAML anchors or aliases, holds more
    than :data:`MAX_CATALOG_NODES` nodes or nests deeper than :data:`MAX_YAML_DEPTH`.

    Aliases let a few hundred bytes expand to millions of values (each level of nesting
    multiplies by ten: a "billion laughs"), which the root services reading every
    project catalog would walk; a catalog written by ``oceandata ingest`` never uses them.
    The text is scanned as a stream of events (libyaml when available), nothing is built.

    Raises
    ------
    CatalogError
        One line naming the file (and the line of the first anchor, alias or level too
        deep).
    yaml.YAMLError
        Malformed YAML (with ``problem_mark``), as the loader would raise.
    """
    import yaml

    from .core import _LOADER

    loader = _LOADER(text)
    count = depth = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise CatalogError(f"{path}:{line}: project catalogs may not use YAML "
                                   "anchors or aliases")
            if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    raise CatalogError(f"{path}:{line}: nested deeper than {MAX_YAML_DEPTH} "
                                       "levels; a project catalog is flatter")
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                depth -= 1
            if isinstance(event, yaml.NodeEvent):
                count += 1
                if count > MAX_CATALOG_NODES:
                    raise CatalogError(f"{path}: more than {MAX_CATALOG_NODES} YAML nodes; "
                                       "a project catalog is smaller")
    finally:
        loader.dispose()


def load_project_catalog(project: int, workspace: str | os.PathLike[str], *,
                         seen: dict[str, Any] | None = None) -> Any:
    """Read project *project*'s catalog: a :class:`~oceandata.catalog.Catalog` named
    ``p<project>`` whose entries are named ``p<project>.<name>`` and carry
    ``entry.project``.

    An entry that breaks a rule of project catalogs (see the module docstring) is left
    out with a warning in the log; the others load.

    Parameters
    ----------
    project
        The project's id (its allocation id).
    workspace
        Its workspace.
    seen
        Names already taken (the merged catalog's), so no name is defined twice.

    Returns
    -------
    oceandata.catalog.Catalog
        Empty when the workspace has no catalog yet.

    Raises
    ------
    CatalogError
        The file cannot be read or is not a catalog (malformed YAML, with file and line,
        or nested too deep for the checks: a :class:`RecursionError` becomes one line).
    """
    try:
        return _load_project_catalog(project, workspace, seen)
    except RecursionError:
        raise CatalogError(f"{project_catalog_path(workspace)}: nested too deep; a project "
                           "catalog is flatter") from None


def _load_project_catalog(project: int, workspace: str | os.PathLike[str],
                          seen: dict[str, Any] | None) -> Any:
    from .core import Catalog, _entry, _load_yaml
    from .schema import CatalogFile, Source

    workspace = Path(os.path.realpath(workspace))
    path = project_catalog_path(workspace)
    cat = Catalog(name=f"p{int(project)}", path=path,
                  metadata={"title": f"project {int(project)}", "project": int(project)})
    try:
        text = _read_text(path)
    except FileNotFoundError:
        return cat
    import yaml
    from pydantic import ValidationError

    try:
        check_plain_yaml(text, path)  # no aliases, bounded: before anything is built
        raw, lines = _load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise CatalogError(f"{path}{line}: malformed YAML") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("sources"), dict):
        raise CatalogError(f"{path}: not an intake catalog (a mapping with 'sources:')")
    try:
        parsed = CatalogFile.model_validate({**raw, "sources": {}})
    except ValidationError as exc:
        raise CatalogError(f"{path}: {exc.errors()[0]['msg']}") from None
    cat.metadata = {**parsed.metadata, "project": int(project)}
    seen = {} if seen is None else seen
    for short, item in raw["sources"].items():
        where = f"{path}:{lines.get(str(short), '?')}"
        try:
            short = check_entry_name(str(short))
            source = Source.model_validate(item)
            if source.driver not in PROJECT_DRIVERS:
                raise CatalogError(f"driver {source.driver!r}: a project entry is a store "
                                   f"({', '.join(PROJECT_DRIVERS)})")
            if _templated(source.args):
                raise CatalogError("templates are not expanded in project catalogs")
            if isinstance(source.metadata, dict) and source.metadata.get("sample"):
                raise CatalogError("sample data are not project data")
            args = dict(source.args)
            urlpath = args.get("urlpath")
            if not isinstance(urlpath, str) or not os.path.isabs(urlpath):
                raise CatalogError("args.urlpath must be the absolute path of a store")
            args["urlpath"] = str(_inside(urlpath, workspace))
            if args.get("layouts") is not None:
                if not isinstance(args["layouts"], dict):
                    raise CatalogError("args.layouts must map names to store paths")
                args["layouts"] = {str(k): str(_inside(str(v), workspace))
                                   for k, v in args["layouts"].items()}
            name = qualified_name(project, short)
            entry = _entry(name, Source.model_validate({**item, "args": args}), path,
                           lines.get(short), seen)
        except (CatalogError, UsageError, ValidationError) as exc:
            msg = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            log.warning("%s: project entry %r left out: %s", where, str(short)[:70],
                        msg.splitlines()[0])
            continue
        entry.project = int(project)
        entry.workspace = workspace
        cat.entries[name] = entry
    return cat


def merge_projects(base: Any, projects: Mapping[int, str | os.PathLike[str]] | Iterable[
        tuple[int, str | os.PathLike[str]]], *, strict: bool = False) -> Any:
    """*base* with the catalogs of *projects* (id → workspace) added: each as a child
    ``p<id>`` and its entries among ``base.entries``.

    A project whose catalog cannot be read is left out with a warning (``strict``:
    :class:`CatalogError`), so one member's broken file does not take the platform's
    catalog down.

    Returns
    -------
    oceandata.catalog.Catalog
        *base*, changed in place.
    """
    items = projects.items() if isinstance(projects, Mapping) else projects
    seen = dict(base.entries)
    for project, workspace in items:
        try:
            cat = load_project_catalog(int(project), workspace, seen=seen)
        except CatalogError as exc:
            if strict:
                raise
            log.warning("project %s's catalog left out: %s", project, exc)
            continue
        for entry in cat.entries.values():
            entry.root = base.path  # the negative list beside the root applies to nothing
        base.children[cat.name] = cat
        base.entries.update(cat.entries)
    return base


def verify_snapshot(store: str | os.PathLike[str], workspace: str | os.PathLike[str],
                    snapshot: str | None) -> None:
    """Check that *snapshot* is a file of *store*'s own ``snapshots/``, reached from
    *workspace* one folder at a time without following a link.

    Raises
    ------
    CatalogError
        It is not (the store was opened through a link, or is not an Icechunk store).
    """
    workspace = Path(os.path.realpath(workspace))
    if not snapshot or not _SNAPSHOT_ID.fullmatch(str(snapshot)):
        raise CatalogError(f"project store {store} was not opened as a versioned store")
    try:
        parts = Path(store).relative_to(workspace).parts
    except ValueError:
        raise CatalogError(f"{store} is not inside the project's workspace") from None
    parts = (*parts, "snapshots", str(snapshot))
    fd = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | (0 if last else os.O_DIRECTORY)
            child = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = child
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a file")
    except OSError:
        raise CatalogError(f"project store {store}: the version opened is not one of its "
                           "own (a link inside the store?); it is not served") from None
    finally:
        os.close(fd)


def check_store_tree(path: str | os.PathLike[str], workspace: str | os.PathLike[str]) -> Path:
    """The real path of project store *path*, after checking that it lies inside
    *workspace* and that nothing in it is a symbolic link (a member could otherwise make
    a process that reads every workspace read another project's files).

    Raises
    ------
    CatalogError
        The store is outside the workspace or holds a link.
    """
    workspace = Path(os.path.realpath(workspace))
    real = _inside(os.fspath(path), workspace)
    for folder, dirs, files in os.walk(real):
        for name in (*dirs, *files):
            if os.path.islink(os.path.join(folder, name)):
                raise CatalogError(f"project store {path} holds a symbolic link "
                                   f"({os.path.join(folder, name)}); it is not served")
    return real


# ------------------------------------------------------------------------ sealed stores
#: ``<data dir>/<this>``: the shadows of sealed stores root readers open (root's, 0700)
SHADOW_FOLDER = "sealed"
_SHADOW_LOCK = threading.Lock()
_SHADOW_COUNT: Any = None
#: mode of a sealed store's files: root's, read by the project group
SEALED_FILE_MODE = 0o640
#: mode of a sealed store's folders: setgid, sticky and group-writable: members add new
#: objects (an append writes new immutable files) but cannot rewrite, rename or delete
#: a root-owned file
SEALED_DIR_MODE = 0o3770
#: mode of the folders under ``refs/``: Icechunk moves a new ``ref.json`` over the old
#: one on every commit (a rename), which a sticky folder forbids; refs are read once, at
#: open, and the snapshot they name is checked (:func:`verify_snapshot`)
SEALED_REFS_MODE = 0o2770


def _walk_to(workspace: Path, store: Path) -> int:
    """A descriptor of folder *store*, reached from *workspace* one folder at a time
    without following a link."""
    try:
        parts = store.relative_to(workspace).parts
    except ValueError:
        raise CatalogError(f"{store} is not inside the project's workspace") from None
    fd = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
    except OSError:
        os.close(fd)
        raise CatalogError(f"project store {store} is not a folder of the workspace "
                           "(a link?); it is not served") from None
    return fd


#: a project store nested deeper than this many folders is not sealed nor served (an
#: Icechunk store is a few levels deep; the walk and the removal of its shadow are bounded)
MAX_STORE_DEPTH = 64
#: a project store of more entries than this is not sealed nor served (the walk is bounded)
MAX_STORE_ENTRIES = 1_000_000


class _Walk:
    """What a seal walk found it must not seal: ``(path, sentence)`` pairs."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []
        self.entries = 0

    def refuse(self, path: str, why: str) -> None:
        self.problems.append((path, why))


_LINK = "a symbolic link or another entry that is not a file or folder"
_PRIVATE = ("which the project's group may not read (sealing it would show it to every "
            "member)")


def _group_reads(info: os.stat_result, gid: int, folder: bool) -> bool:
    """Whether the project's group may already read the entry (and search a folder):
    sealing makes it root's, read by the group, and must never add a right a member who
    moved it there lacked (another member's private file)."""
    need = 0o050 if folder else 0o040
    other = 0o005 if folder else 0o004
    mode = stat.S_IMODE(info.st_mode)
    return (info.st_gid == gid and mode & need == need) or mode & other == other


def _seal_folder(fd: int, gid: int, walk: _Walk, shadow: int | None = None) -> None:
    """Seal the folder open as *fd* and everything in it (see :func:`seal_store`),
    depth first with an explicit stack (no recursion): at most :data:`MAX_STORE_DEPTH`
    folders deep and :data:`MAX_STORE_ENTRIES` entries, else the walk stops with a
    problem. With *shadow* (a folder's descriptor), every sealed file is also hard-linked
    into it, through its own descriptor (the very file sealed, whatever its name points
    to by now), and every folder made there. *fd* and *shadow* stay the caller's."""
    if not _group_reads(os.fstat(fd), gid, True):
        walk.refuse(".", _PRIVATE)
        return
    # frames: [fd, shadow fd, refs?, where, pending sub-folder names, own fds?]
    stack: list[list[Any]] = []

    def enter(dfd: int, twin: int | None, refs: bool, where: str, own: bool) -> None:
        os.fchown(dfd, 0, gid)
        os.fchmod(dfd, SEALED_REFS_MODE if refs else SEALED_DIR_MODE)
        walk.entries += 1
        pending: list[str] = []
        frame = [dfd, twin, refs, where, pending, own]
        stack.append(frame)
        with os.scandir(dfd) as names:
            for entry in names:
                walk.entries += 1
                if walk.entries > MAX_STORE_ENTRIES:
                    raise _TooMany
                try:
                    info = os.stat(entry.name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    pending.append(entry.name)
                else:
                    _seal_file(dfd, entry.name, f"{where}/{entry.name}", info, gid, walk,
                               twin)

    def leave() -> None:
        dfd, twin, _, _, _, own = stack.pop()
        if own:
            os.close(dfd)
            if twin is not None:
                os.close(twin)

    try:
        enter(fd, shadow, False, ".", False)
        while stack:
            dfd, twin, refs, where, pending, _ = stack[-1]
            if not pending:
                leave()
                continue
            name = pending.pop()
            path = f"{where}/{name}"
            if len(stack) >= MAX_STORE_DEPTH:
                walk.refuse(path, f"deeper than {MAX_STORE_DEPTH} folders")
                return
            try:
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                                dir_fd=dfd)
            except OSError:  # swapped for a link (or gone) since the stat
                walk.refuse(path, _LINK)
                continue
            try:
                if not _group_reads(os.fstat(child), gid, True):
                    walk.refuse(path, _PRIVATE)
                    os.close(child)
                    continue
                twin_child = None
                if twin is not None:
                    os.mkdir(name, 0o700, dir_fd=twin)
                    twin_child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                                         dir_fd=twin)
            except BaseException:
                os.close(child)
                raise
            try:
                enter(child, twin_child, refs or (where == "." and name == "refs"), path,
                      True)
            except BaseException:
                if not stack or stack[-1][0] != child:  # not pushed: close here
                    os.close(child)
                    if twin_child is not None:
                        os.close(twin_child)
                raise
    except _TooMany:
        walk.refuse(".", f"more than {MAX_STORE_ENTRIES} entries")
    finally:
        while stack:
            leave()


class _TooMany(Exception):
    """The walk met more than :data:`MAX_STORE_ENTRIES` entries."""


def _seal_file(dfd: int, name: str, path: str, info: os.stat_result, gid: int,
               walk: _Walk, shadow: int | None) -> None:
    """Seal file *name* of the folder open as *dfd* (see :func:`seal_store`)."""
    if not stat.S_ISREG(info.st_mode):
        walk.refuse(path, _LINK)  # a link, a pipe, a socket
        return
    try:
        child = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
    except OSError:  # swapped for a link (or gone) since the stat
        walk.refuse(path, _LINK)
        return
    try:
        info = os.fstat(child)
        if not stat.S_ISREG(info.st_mode):
            walk.refuse(path, _LINK)
            return
        sealed = (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (
            0, gid, SEALED_FILE_MODE)  # already (its shadows are more names of it)
        if not sealed and info.st_nlink != 1:
            # a hard link: root would change a file outside the store
            walk.refuse(path, _LINK)
            return
        if not sealed and not _group_reads(info, gid, False):
            walk.refuse(path, _PRIVATE)
            return
        if not sealed:
            os.fchown(child, 0, gid)
            os.fchmod(child, SEALED_FILE_MODE)
        if shadow is not None:
            os.link(f"/proc/self/fd/{child}", name, dst_dir_fd=shadow, follow_symlinks=True)
    finally:
        os.close(child)


def seal_store(store: str | os.PathLike[str], workspace: str | os.PathLike[str],
               gid: int | None = None, *, shadow: str | os.PathLike[str] | None = None
               ) -> list[str]:
    """Seal project store *store*: every file becomes root's, mode 0640, and every
    folder root's, mode 03770 (setgid, sticky), both of the project's group. Symbolic
    links, hard links (a file with another name elsewhere), pipes and sockets are left
    as they are and reported: the store is then not served (:func:`sealed_store`) until
    a member removes them. So is a file the project's group may not read yet, or a
    folder it may not search (another member's private file moved in: the seal never
    adds a right), and everything past :data:`MAX_STORE_DEPTH` folders deep or past
    :data:`MAX_STORE_ENTRIES` entries (the walk stops there).

    Run as root (the allocations service after every measurement, the open-data service
    and publishing before they open a store). Members may still add files (an append
    writes new objects; the folders under ``refs/`` stay without the sticky bit, mode
    02770, for Icechunk's rename of ``ref.json``), but they can no longer replace,
    rename or delete a sealed file: a reader that opened the store reads only files
    that were sealed when it opened. Nothing is followed: every entry is opened with
    ``O_NOFOLLOW`` from its folder's descriptor and changed through its own descriptor
    (``fchown``/``fchmod``), so a link swapped in at any moment is never changed.

    Parameters
    ----------
    store
        The store's folder, inside *workspace* (reached without following a link).
    workspace
        The project's workspace.
    gid
        The project's group; default the workspace's.
    shadow
        A new, empty folder only root can reach: every file sealed is hard-linked there
        as well, under the same relative path (see :func:`sealed_store`).

    Returns
    -------
    list of str
        The entries left unsealed (paths relative to the store); logged.

    Raises
    ------
    CatalogError
        The store is not a folder of the workspace reached without a link.
    """
    return [path for path, _ in _seal(store, workspace, gid, shadow)]


def _seal(store: str | os.PathLike[str], workspace: str | os.PathLike[str],
          gid: int | None, shadow: str | os.PathLike[str] | None) -> list[tuple[str, str]]:
    """:func:`seal_store`, answering ``(path, why)`` for each entry not sealed."""
    workspace = Path(os.path.realpath(workspace))
    store = Path(os.path.abspath(store))
    if gid is None:
        gid = os.stat(workspace).st_gid
    fd = _walk_to(workspace, store)
    walk = _Walk()
    twin = None
    try:
        if shadow is not None:
            twin = os.open(shadow, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        _seal_folder(fd, int(gid), walk, twin)
    finally:
        os.close(fd)
        if twin is not None:
            os.close(twin)
    if walk.problems:
        log.warning("project store %s: %d entries were not sealed: %s", store,
                    len(walk.problems), "; ".join(f"{p} ({why})" for p, why in
                                                  walk.problems[:5]))
    return walk.problems


def seal_stores(workspace: str | os.PathLike[str]) -> int:
    """Seal every store in ``<workspace>/stores/`` (:func:`seal_store`) when run as
    root; a store that cannot be sealed is logged and the others go on. Returns how
    many were sealed whole (0 when not root); never raises for a store."""
    if os.geteuid() != 0:
        return 0
    workspace = Path(os.path.realpath(workspace))
    stores = workspace / "stores"
    try:
        fd = _walk_to(workspace, stores)
    except CatalogError:
        return 0
    names = []
    try:
        for name in os.listdir(fd):
            try:
                if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                    names.append(name)
            except OSError:
                continue
    except OSError as exc:
        log.warning("project stores in %s not sealed: %s", stores, exc)
    finally:
        os.close(fd)
    done = 0
    for name in names:
        try:
            if not seal_store(stores / name, workspace):
                done += 1
        except Exception as exc:  # one store never stops the others, nor the caller
            log.warning("project store %s not sealed: %s", stores / name,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return done


def _shadows(workspace: Path) -> Path:
    """``<data dir>/sealed``: root's, 0700 (the data dir of the workspace
    ``<data dir>/projects/<id>``); shadows of processes that ended are removed."""
    folder = workspace.parent.parent / SHADOW_FOLDER
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o077:
        raise CatalogError(f"{folder} must be a folder of root's, mode 0700")
    for old in os.listdir(folder):
        pid = old.split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            _remove_shadow(folder / old)
    return folder


def _remove_shadow(top: Path) -> None:
    """Remove shadow *top* (:func:`_remove_tree`); an error is logged, never raised: one
    shadow that cannot be removed never stops another, nor a reader."""
    try:
        _remove_tree(top)
    except Exception as exc:
        log.warning("shadow %s not removed: %s", top, exc)


def _remove_tree(top: str | os.PathLike[str]) -> None:
    """Remove folder *top* and everything in it without recursion (an old shadow may be
    deeper than Python's recursion limit) and without following a link: one descriptor at
    a time, going up through ``..`` (shadows are root's, in a folder only root reaches)."""
    top = Path(top)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        fd = os.open(top, flags)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        os.unlink(top)
        return

    def clear(dfd: int) -> list[str]:
        folders = []
        with os.scandir(dfd) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.name)
                else:
                    os.unlink(entry.name, dir_fd=dfd)
        return folders

    try:
        stack: list[tuple[str, list[str]]] = [("", clear(fd))]
        while stack:
            name, pending = stack[-1]
            if pending:
                sub = pending.pop()
                try:
                    child = os.open(sub, flags, dir_fd=fd)
                except FileNotFoundError:
                    continue
                os.close(fd)
                fd = child
                stack.append((sub, clear(fd)))
                continue
            stack.pop()
            if not stack:
                break
            up = os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = up
            os.rmdir(name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(top)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def sealed_store(path: str | os.PathLike[str], workspace: str | os.PathLike[str], *,
                 shadow: bool = True) -> Path:
    """Where a reader may open project store *path*, which it checked lies inside
    *workspace*.

    As root (the open-data service, publishing), the store is sealed
    (:func:`seal_store`) and the answer is its *shadow*: a folder
    ``<data dir>/sealed/<pid>-p<id>-<n>/<store>`` that only root can reach, holding a
    hard link to every file sealed, made in the same walk. Icechunk finds each object by
    its path every time it reads one (manifests and chunks lazily, long after the open),
    so a store opened in the workspace itself could still be led elsewhere: a member may
    rename the store's folder or ``stores/`` (their parents are not sticky) and put a
    folder of theirs there, or add a link named like a chunk that a manifest they wrote
    names but that did not exist at the seal. Nothing a member does can change the
    shadow: it holds exactly the files sealed (root's, 0640, which members cannot
    rewrite), and a name missing there stays missing. The shadows of a process are
    removed once it has ended (by the next process that makes one).

    With ``shadow=False`` (root), the store is sealed and read where it is (publishing,
    which also writes a tag into it).

    Not root, the store is checked for links (:func:`check_store_tree`) and read where
    it is: a member's own process reads with the member's rights anyway.

    Raises
    ------
    CatalogError
        The store is outside the workspace, or holds a link (or a pipe, a socket, a
        hard link): it is not served.
    """
    workspace = Path(os.path.realpath(workspace))
    real = _inside(os.fspath(path), workspace)
    if os.geteuid() != 0:
        return check_store_tree(real, workspace)
    if not shadow:
        _refuse(path, _sealing(path, real, workspace, None))
        return real
    import itertools

    global _SHADOW_COUNT
    with _SHADOW_LOCK:
        _SHADOW_COUNT = _SHADOW_COUNT or itertools.count(1)
        n = next(_SHADOW_COUNT)
    top = _shadows(workspace) / f"{os.getpid()}-p{workspace.name}-{n}"
    os.mkdir(top, 0o700)
    shadow = top / real.name
    try:
        os.mkdir(shadow, 0o700)
        _refuse(path, _sealing(path, real, workspace, shadow))
    except BaseException:
        _remove_shadow(top)
        raise
    return shadow


def _sealing(path: str | os.PathLike[str], real: Path, workspace: Path,
             shadow: Path | None) -> list[tuple[str, str]]:
    """:func:`_seal`, any error but a :class:`CatalogError` made one (the store is not
    served; a reader answers 404, never 500)."""
    try:
        return _seal(real, workspace, None, shadow)
    except CatalogError:
        raise
    except OSError as exc:  # e.g. EXDEV: the data dir on another filesystem
        raise CatalogError(f"project store {path} cannot be sealed for reading: "
                           f"{exc.strerror or exc}; it is not served") from None
    except Exception as exc:
        log.exception("project store %s: the seal failed", path)
        raise CatalogError(f"project store {path} cannot be sealed for reading "
                           f"({type(exc).__name__}); it is not served") from None


def drop_shadow(shadow: str | os.PathLike[str]) -> None:
    """Remove *shadow* (made by :func:`sealed_store` in this process) once nothing reads
    it any more; anything else is left alone."""
    top = Path(shadow).parent
    if (top.parent.name == SHADOW_FOLDER and top.name.startswith(f"{os.getpid()}-p")
            and os.geteuid() == 0):
        _remove_shadow(top)


def _refuse(path: str | os.PathLike[str], problems: list[tuple[str, str]]) -> None:
    """One sentence for the first entry the seal refused (the store is not served)."""
    if not problems:
        return
    where, why = problems[0]
    where = where.removeprefix("./")
    if why.startswith("more than"):
        message = f"holds {why}"
    elif why.startswith("deeper than"):
        message = f"is {why} ({where})"
    elif why == _LINK:
        message = f"holds {_LINK} ({where})"
    elif where == ".":
        message = f"is a folder {why}"
    else:
        message = f"holds {where}, {why}"
    raise CatalogError(f"project store {path} {message}; it is not served")

class ProjectCatalogs:
    """The project catalogs merged into a served catalog, read again when their file
    changes (the open-data service: :func:`oceandata.dataservice.access.refresh_projects`).

    Parameters
    ----------
    catalog
        The served catalog; its ``entries`` (and ``children``) are replaced, never
        changed in place, so a request holding the old mapping reads a consistent one.
    data_dir
        The platform's data dir (workspaces are ``<data dir>/projects/<id>``).
    """

    def __init__(self, catalog: Any, data_dir: str | os.PathLike[str] | None = None) -> None:
        import threading

        self.catalog = catalog
        self.base = dict(catalog.entries)
        self.base_children = dict(catalog.children)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._stamps: dict[int, tuple[int, int, int] | None] = {}
        self._loaded: dict[int, Any] = {}
        self._lock = threading.Lock()

    def workspace(self, project: int) -> Path:
        """Project *project*'s workspace."""
        from ..alloc.workspaces import workspace_path

        return workspace_path(project, self.data_dir)

    def _stamp(self, project: int) -> tuple[int, int, int] | None:
        try:
            info = os.stat(project_catalog_path(self.workspace(project)),
                           follow_symlinks=False)
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size, info.st_ino

    def stale(self, projects: Iterable[int]) -> bool:
        """Whether the catalog file of one of *projects* changed since it was read."""
        return any(project not in self._stamps or self._stamps[project] != self._stamp(project)
                   for project in projects)

    def refresh(self, projects: Iterable[int]) -> set[str]:
        """Read the changed catalogs of *projects* again; the names whose entries changed.
        A catalog that cannot be read serves no entry (logged)."""
        from .core import Catalog

        changed: set[str] = set()
        with self._lock:
            for project in sorted(set(int(p) for p in projects)):
                stamp = self._stamp(project)
                if project in self._stamps and self._stamps[project] == stamp:
                    continue
                old = self._loaded.get(project)
                try:
                    cat = load_project_catalog(project, self.workspace(project),
                                               seen=dict(self.base))
                except CatalogError as exc:
                    log.warning("project %s's catalog is not served: %s", project, exc)
                    cat = Catalog(name=f"p{project}", path=project_catalog_path(
                        self.workspace(project)))
                for entry in cat.entries.values():
                    entry.root = self.catalog.path
                self._loaded[project] = cat
                self._stamps[project] = stamp
                changed |= set(cat.entries) | (set(old.entries) if old is not None else set())
            if changed:
                entries = dict(self.base)
                children = dict(self.base_children)
                for project in sorted(self._loaded):
                    cat = self._loaded[project]
                    entries.update(cat.entries)
                    if cat.entries:
                        children[cat.name] = cat
                self.catalog.entries = entries
                self.catalog.children = children
        return changed
