"""Project workspaces: where they are, their size on disk, their quota and their charge.

Each project (an approved allocation, :mod:`oceandata.alloc.projects`) has a workspace,
``<data dir>/projects/<id>`` with ``stores/``, ``uploads/`` and ``outputs/``. Its size
on disk is measured (:func:`workspace_bytes`), recorded and charged as GB-days
(:func:`record_storage`), and checked before every write (:func:`check_storage`).
Members are warned at :data:`WARN_FRACTION` of the quota and at 100%
(:meth:`StorageStatus.message`). docs/projects.md.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import grp
import logging
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..errors import NotAuthorized, OceandataError, UsageError
from .core import QuotaExceeded
from .models import Allocation, Job, StorageUsage, utcnow

__all__ = ["GB", "GROUP_PREFIX", "WARN_FRACTION", "WORKSPACE_FOLDERS", "StorageStatus",
           "WorkspaceError", "check_storage", "fresh_seconds", "group_name", "lock_project",
           "measure", "note_written", "project_bytes", "record_storage", "remote_check",
           "remote_measure", "storage_status", "storage_summary", "storage_warnings",
           "sync_workspace", "workspace_bytes", "workspace_path"]

log = logging.getLogger(__name__)

#: members are warned when a workspace holds this fraction of its quota (and at 100%)
WARN_FRACTION = 0.8
#: folders of a workspace
WORKSPACE_FOLDERS = ("stores", "uploads", "outputs")
#: bytes in a GB (storage quotas are decimal gigabytes, like the request form's)
GB = 1e9
#: prefix of the projects' Unix groups: project 7's group is ``oceandata-7``; no user's
#: account ``oceandata-<hub name>`` (hub names start with a letter) can have that name
GROUP_PREFIX = "oceandata-"
#: environment variable replacing :data:`GROUP_PREFIX` (a second platform on the machine)
GROUP_PREFIX_ENV = "OCEANDATA_STORAGE_GROUP_PREFIX"
#: mode of a workspace and its folders in per-user mode: root and the group, setgid
WORKSPACE_MODE = 0o2770
#: seconds a measurement of a project is reused (the walk of a big workspace is costly)
FRESH_ENV = "OCEANDATA_STORAGE_FRESH_SECONDS"
DEFAULT_FRESH_SECONDS = 10.0
#: where the Unix tools are looked for (the service's PATH may lack the sbin folders)
SBIN_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"


class WorkspaceError(OceandataError):
    """A workspace or its Unix group cannot be made (the operator's to fix)."""


def workspace_path(alloc_id: int, data_dir: Path | None = None) -> Path:
    """``<data dir>/projects/<id>``: the project's workspace."""
    if data_dir is None:
        from ..config import get_settings

        data_dir = Path(os.environ.get("OCEANDATA_DATA_DIR") or get_settings().data_dir)
    return Path(data_dir) / "projects" / str(int(alloc_id))


def _data_dir(data_dir: Path | None) -> Path:
    return workspace_path(0, data_dir).parent.parent


def group_name(alloc_id: int, environ: dict[str, str] | None = None) -> str:
    """The Unix group of project *alloc_id*: ``oceandata-<id>``.

    No user's account (``oceandata-<hub name>``, whose own group has the same name) can
    be called so, since hub names start with a letter: otherwise that user would be in
    the project's group without being a member. Groups are the machine's: a second
    platform on the same machine (whose project ids would be the same) sets another
    prefix in ``OCEANDATA_STORAGE_GROUP_PREFIX``.

    Raises
    ------
    UsageError
        A prefix that is no Unix group name (or too long for ids of 10 digits), or one
        that makes a group name a user's account could have.

    Examples
    --------
    >>> group_name(7)
    'oceandata-7'
    """
    from ..hub.accounts import HUB_NAME, PREFIX

    raw = (os.environ if environ is None else environ).get(GROUP_PREFIX_ENV, "").strip()
    if raw and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,21}", raw):
        raise UsageError(f"{GROUP_PREFIX_ENV}={raw[:40]!r}: give lower-case letters, digits, "
                         "'-' or '_', starting with a letter, at most 22 characters")
    name = f"{raw or GROUP_PREFIX}{int(alloc_id)}"
    if name.startswith(PREFIX) and HUB_NAME.match(name[len(PREFIX):]):
        raise UsageError(f"{GROUP_PREFIX_ENV}={raw!r} makes project groups named like users' "
                         f"accounts ({name}): give a prefix that does not start with "
                         f"{PREFIX!r} followed by a letter")
    return name


def _member_names(members: Iterable[Any]) -> list[str]:
    """Hub names from names or objects with a ``user`` (:class:`~.projects.Member`)."""
    names = []
    for member in members:
        name = member if isinstance(member, str) else member.user
        if name not in names:
            names.append(name)
    return names


def _tool(name: str) -> str:
    path = shutil.which(name, path=SBIN_PATH)
    if path is None:
        raise WorkspaceError(f"{name} is not installed: project workspaces need Debian's "
                             "passwd package (groupadd, gpasswd), or OCEANDATA_ACCOUNTS=single")
    return path


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        message = " ".join((done.stderr or done.stdout).split())
        raise WorkspaceError(f"could not {what}: {message}")


def _ensure_group(name: str) -> int:
    """The gid of project group *name*, made if missing; never an account's own group
    (its primary group: everyone of that account would be in the project)."""
    try:
        gid = grp.getgrnam(name).gr_gid
    except KeyError:
        pass
    else:
        owners = [entry.pw_name for entry in pwd.getpwall() if entry.pw_gid == gid]
        if owners:
            raise WorkspaceError(f"Unix group {name} is the own group of the account "
                                 f"{owners[0]}: it cannot be a project's; remove the clash "
                                 f"or set {GROUP_PREFIX_ENV}")
        return gid
    done = subprocess.run([_tool("groupadd"), "--system", name], capture_output=True,
                          text=True, timeout=60)
    # 9: the group exists (made meanwhile by another process): as good as made
    if done.returncode not in (0, 9):
        message = " ".join((done.stderr or done.stdout).split())
        raise WorkspaceError(f"could not create Unix group {name}: {message}")
    return grp.getgrnam(name).gr_gid


_single_warned = False


def _folder_at(parent: int, name: str, uid: int, gid: int, mode: int, where: Path) -> int:
    """Folder *name* of the folder open as *parent*, made if missing, as a real folder
    (never a link) owned by *uid*:*gid* with *mode*; returns its descriptor.

    Everything goes through descriptors (``mkdir``/``open`` relative to *parent*, then
    ``fchown``/``fchmod``): a member who renames the folder and puts a link in its place
    at any moment gets a refusal, never root changing the link's target."""
    try:
        os.mkdir(name, mode & 0o777, dir_fd=parent)
    except FileExistsError:
        pass
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    except OSError:
        raise WorkspaceError(f"{where} is not a folder (a link or a file took its place): "
                             "move it away and retry") from None
    try:
        info = os.fstat(fd)
        if (info.st_uid, info.st_gid) != (uid, gid):
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _folder(path: Path, uid: int, gid: int, mode: int) -> None:
    """*path* as a real folder (never a link) owned by *uid*:*gid* with *mode*
    (:func:`_folder_at` from its parent, opened by its path: a folder members cannot
    change, such as ``<data dir>/projects``)."""
    parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.close(_folder_at(parent, path.name, uid, gid, mode, path))
    finally:
        os.close(parent)


def _workspace_folders(top: Path, alloc_id: int, uid: int, gid: int, mode: int) -> None:
    """The workspace ``<top>/<id>`` and its :data:`WORKSPACE_FOLDERS`, each reached from
    its parent's descriptor (:func:`_folder_at`): members may rename a folder of the
    workspace (it is group-writable), never make root change anything else."""
    top_fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        ws = _folder_at(top_fd, str(int(alloc_id)), uid, gid, mode, top / str(int(alloc_id)))
    finally:
        os.close(top_fd)
    try:
        for sub in WORKSPACE_FOLDERS:
            os.close(_folder_at(ws, sub, uid, gid, mode, top / str(int(alloc_id)) / sub))
    finally:
        os.close(ws)


def sync_workspace(alloc: Allocation | int, members: Iterable[Any],
                   data_dir: Path | None = None) -> Path:
    """Make project *alloc*'s workspace and give it to exactly *members*.

    Per-user mode (the platform runs as root, one Unix account per user): the project's
    Unix group :func:`group_name` is created (``groupadd --system``) if missing, its
    members are set to exactly the accounts ``oceandata-<name>`` of *members* (created
    like the hub creates them; ``gpasswd -M``: anyone else is removed), and the
    workspace and its folders (:data:`WORKSPACE_FOLDERS`) become root:group, mode 2770
    (setgid: what members write there belongs to the group). ``<data dir>/projects`` is
    0711: members reach their workspace, nobody lists the projects.

    Single-account mode: the folders are 0700 of the platform's account; members are
    separated by the services' authorization only (a warning is logged once).

    Idempotent; an exclusive lock serialises concurrent calls (approval, member
    changes, the service's start). A process of a member gets the group when it starts
    (a notebook server or cluster running before the member was added must restart).

    Parameters
    ----------
    alloc
        The project (allocation or its id).
    members
        Hub names of everyone who may use it, PI included (or
        :class:`~oceandata.alloc.projects.Member` objects).
    data_dir
        The platform's data dir (default ``OCEANDATA_DATA_DIR`` / the settings).

    Returns
    -------
    Path
        The workspace.

    Raises
    ------
    WorkspaceError
        A Unix tool is missing or failed, or a folder of the workspace is not a folder.
    """
    from ..hub import accounts

    global _single_warned
    alloc_id = alloc if isinstance(alloc, int) else alloc.id
    data_dir = _data_dir(data_dir)
    path = workspace_path(alloc_id, data_dir)
    top = path.parent
    names = _member_names(members)
    if not accounts.per_user():
        if not _single_warned:
            _single_warned = True
            log.warning("single-account mode: project workspaces are 0700 of the platform's "
                        "account and members are separated by the services only")
        uid, gid = os.geteuid(), os.getegid()
        top.mkdir(parents=True, exist_ok=True, mode=0o700)
        _workspace_folders(top, alloc_id, uid, gid, 0o700)
        return path
    top.mkdir(parents=True, exist_ok=True, mode=0o711)
    os.chmod(top, 0o711)
    lock = os.open(top / ".workspaces.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        group = group_name(alloc_id)
        gid = _ensure_group(group)
        unix = []
        for name in names:
            try:
                unix.append(accounts.ensure_account(name, data_dir).pw_name)
            except accounts.AccountError as exc:  # mode existing: no account, no access
                log.warning("project %s: %s", alloc_id, exc)
        _run([_tool("gpasswd"), "-M", ",".join(unix), group],
             f"set the members of Unix group {group}")
        _workspace_folders(top, alloc_id, 0, gid, WORKSPACE_MODE)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
    return path


def workspace_bytes(path: Path) -> int:
    """Bytes on disk under *path* (allocated blocks, as ``du`` counts them), never
    following symbolic links; 0 when it does not exist. Hard links count once."""
    total = 0
    seen: set[tuple[int, int]] = set()
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return 0
    total += top.st_blocks * 512
    if not stat.S_ISDIR(top.st_mode):
        return total
    for folder, dirs, files in os.walk(path, onerror=None):
        for name in (*dirs, *files):
            try:
                info = os.lstat(os.path.join(folder, name))
            except FileNotFoundError:  # removed while we walk
                continue
            if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
                key = (info.st_dev, info.st_ino)
                if key in seen:
                    continue
                seen.add(key)
            total += info.st_blocks * 512
    return total


@dataclass(frozen=True)
class StorageStatus:
    """A workspace's size against its quota."""

    allocation_id: int
    used_bytes: int
    quota_bytes: int

    @property
    def fraction(self) -> float:
        return self.used_bytes / self.quota_bytes if self.quota_bytes > 0 else float("inf")

    @property
    def level(self) -> str | None:
        """``"full"`` at 100% or more, ``"warn"`` at :data:`WARN_FRACTION`, else None."""
        if self.fraction >= 1.0:
            return "full"
        if self.fraction >= WARN_FRACTION:
            return "warn"
        return None

    def message(self) -> str | None:
        """The warning line members see (page banner, CLI), or None below the threshold."""
        from ..io.estimate import format_bytes

        if self.level is None:
            return None
        what = "is full" if self.level == "full" else f"is at {self.fraction:.0%} of its quota"
        return (f"project {self.allocation_id}'s workspace {what}: "
                f"{format_bytes(self.used_bytes)} used of {format_bytes(self.quota_bytes)}")


def storage_status(alloc: Allocation, used_bytes: int) -> StorageStatus:
    """*used_bytes* against the project's ``storage_gb``."""
    return StorageStatus(alloc.id, int(used_bytes), int(alloc.storage_gb * GB))


def check_storage(alloc: Allocation, used_bytes: int, incoming_bytes: int) -> StorageStatus:
    """Refuse a write of *incoming_bytes* that would take the workspace past its quota.

    Raises
    ------
    QuotaExceeded
        With one line giving the usage and the quota.
    """
    from ..io.estimate import format_bytes

    status = storage_status(alloc, used_bytes)
    if used_bytes + max(int(incoming_bytes), 0) > status.quota_bytes:
        raise QuotaExceeded(
            f"project {alloc.id}'s workspace holds {format_bytes(used_bytes)} of its "
            f"{format_bytes(status.quota_bytes)} quota: writing "
            f"{format_bytes(incoming_bytes)} more would exceed it (free space in "
            f"{workspace_path(alloc.id)} or ask for more storage)")
    return status


def lock_project(session: Session, alloc_id: int) -> None:
    """Hold project *alloc_id*'s lock until *session* commits or rolls back.

    A no-op UPDATE of the allocation's row: PostgreSQL's row lock, SQLite's write lock of
    the database. Whoever reads what a project holds and then adds to it (an upload's
    reservation, a measurement's record) takes it first, so two such decisions never
    rest on the same reading. Walk the workspace (:func:`project_bytes`) *before*
    taking it: the walk is slow, and with SQLite the lock stops every writer.
    """
    session.execute(update(Allocation).where(Allocation.id == alloc_id)
                    .values(storage_gb=Allocation.storage_gb)
                    .execution_options(synchronize_session=False))


def record_storage(session: Session, alloc_id: int, used_bytes: int,
                   at: dt.datetime | None = None) -> StorageUsage:
    """Record a measurement and charge the size held since the previous one as GB-days.

    The interval since the previous measurement is charged at the *previous* size (what
    was held then), split across UTC days; the first measurement charges nothing.
    """
    # one measurement of a project at a time (the periodic scan, the storage API, a job's
    # end): two never charge the same interval
    lock_project(session, alloc_id)
    at = at or utcnow()
    last = session.scalars(select(StorageUsage).where(StorageUsage.allocation_id == alloc_id)
                           .order_by(StorageUsage.measured_at.desc(), StorageUsage.id.desc())
                           .limit(1)).first()
    if last is not None:
        since = last.measured_at
        if since.tzinfo is None:  # SQLite keeps naive UTC
            since = since.replace(tzinfo=dt.UTC)
        held = last.bytes
        while since < at:
            midnight = dt.datetime.combine(since.date() + dt.timedelta(days=1), dt.time(),
                                           dt.UTC)
            end = min(at, midnight)
            row = _day_row(session, alloc_id, since.date())
            row.gb_days += held / GB * (end - since).total_seconds() / 86400.0
            row.peak_bytes = max(row.peak_bytes, held)
            if end < at:  # a day ended with the size of the previous measurement
                row.bytes, row.measured_at = held, end
            since = end
    row = _day_row(session, alloc_id, at.date())
    row.bytes = int(used_bytes)
    row.peak_bytes = max(row.peak_bytes, int(used_bytes))
    row.measured_at = at
    session.flush()
    return row


def _day_row(session: Session, alloc_id: int, day: dt.date) -> StorageUsage:
    row = session.scalars(select(StorageUsage).where(StorageUsage.allocation_id == alloc_id,
                                                     StorageUsage.day == day)).first()
    if row is None:
        row = StorageUsage(allocation_id=alloc_id, day=day, bytes=0, peak_bytes=0,
                           gb_days=0.0,
                           measured_at=dt.datetime.combine(day, dt.time(), dt.UTC))
        session.add(row)
        session.flush()
    return row


def storage_summary(session: Session, alloc_ids: list[int] | None = None) -> list[dict]:
    """GB-days charged per project (all projects when *alloc_ids* is None) and the last
    measured size: rows ``allocation_id``, ``gb_days``, ``bytes``, ``measured_at``."""
    query = (select(StorageUsage.allocation_id, func.sum(StorageUsage.gb_days))
             .group_by(StorageUsage.allocation_id).order_by(StorageUsage.allocation_id))
    if alloc_ids is not None:
        query = query.where(StorageUsage.allocation_id.in_(alloc_ids))
    out = []
    for alloc_id, gb_days in session.execute(query):
        last = session.scalars(select(StorageUsage).where(
            StorageUsage.allocation_id == alloc_id).order_by(
            StorageUsage.measured_at.desc(), StorageUsage.id.desc()).limit(1)).first()
        out.append({"allocation_id": alloc_id, "gb_days": float(gb_days or 0.0),
                    "bytes": int(last.bytes) if last else 0,
                    "measured_at": last.measured_at if last else None})
    return out


def job_folders(session: Session, alloc_id: int) -> list[Path]:
    """The folders of the batch jobs charged to project *alloc_id* (their outputs, log
    and script count against the project's quota)."""
    return [Path(w) for w in session.scalars(select(Job.workdir).where(
        Job.allocation_id == alloc_id))]


def seconds_setting(name: str, default: float, meaning: str,
                    environ: dict[str, str] | None = None) -> float:
    """A setting of seconds (>= 0, finite) from the environment variable *name*.

    Parameters
    ----------
    name, default
        The variable and its value when unset or empty.
    meaning
        What the seconds are, for the refusal (``"the seconds between two ..."``).
    environ
        The environment (default ``os.environ``).

    Raises
    ------
    UsageError
        Not a finite number of seconds >= 0, in one line.
    """
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise UsageError(f"{name}={raw!r}: give {meaning}")
    return value


def fresh_seconds(environ: dict[str, str] | None = None) -> float:
    """``OCEANDATA_STORAGE_FRESH_SECONDS`` (default 10): how long a project's measurement
    is reused before its workspace is walked again (0: walk on every call).

    Raises
    ------
    UsageError
        Not a number of seconds >= 0.
    """
    return seconds_setting(FRESH_ENV, DEFAULT_FRESH_SECONDS, "the seconds a measurement of "
                           "a workspace is reused (0: measure on every call)", environ)


#: per project (its workspace's path): when the last walk started and what it found
_WALKS: dict[str, tuple[float, int]] = {}
#: per project: bytes the service wrote since (upload chunks), with when
_NOTES: dict[str, list[tuple[float, int]]] = {}
#: per project: one walk at a time in this process (the others wait and reuse it)
_WALK_LOCKS: dict[str, threading.Lock] = {}
_GUARD = threading.Lock()


def _walk_lock(key: str) -> threading.Lock:
    with _GUARD:
        return _WALK_LOCKS.setdefault(key, threading.Lock())


def note_written(alloc_id: int, nbytes: int, data_dir: Path | None = None) -> None:
    """Count *nbytes* the service just wrote into project *alloc_id*'s workspace (an
    upload's chunk) in its reused measurement, until a walk that started after them."""
    key = str(workspace_path(alloc_id, data_dir))
    with _GUARD:
        if key in _WALKS and nbytes:
            _NOTES.setdefault(key, []).append((time.monotonic(), int(nbytes)))


def project_bytes(session: Session, alloc_id: int, data_dir: Path | None = None,
                  max_age: float | None = None) -> int:
    """What counts against project *alloc_id*'s quota: its workspace on disk plus the
    folders of the batch jobs charged to it (:func:`job_folders`).

    The walk of a big workspace is costly and members may ask for it at will (the
    storage API, an upload's start), so walks are shared: one walk per project at a time
    in the process (callers arriving meanwhile wait for it), and a walk that started at
    most *max_age* seconds before the call arrived is reused (default
    :func:`fresh_seconds`), plus the bytes the service wrote since
    (:func:`note_written`). ``max_age=0`` reuses only a walk that started after the call
    arrived: a measurement after a write sees it, and callers waiting together share one
    walk. Bytes reserved by open uploads are not counted here (read them under
    :func:`lock_project`).
    """
    arrived = time.monotonic()
    key = str(workspace_path(alloc_id, data_dir))
    age = fresh_seconds() if max_age is None else max(float(max_age), 0.0)
    with _walk_lock(key):
        with _GUARD:
            last = _WALKS.get(key)
        if last is None or last[0] < arrived - age:
            started = time.monotonic()
            walked = workspace_bytes(Path(key)) + sum(
                workspace_bytes(folder) for folder in job_folders(session, alloc_id))
            with _GUARD:
                _WALKS[key] = (started, walked)
                _NOTES[key] = [n for n in _NOTES.get(key, []) if n[0] >= started]
        with _GUARD:
            return _WALKS[key][1] + sum(n for _, n in _NOTES.get(key, []))


def measure(session: Session, alloc: Allocation, data_dir: Path | None = None,
            incoming_bytes: int | None = None,
            max_age: float | None = 0.0) -> StorageStatus:
    """Measure project *alloc* (:func:`project_bytes`; by default now, or a walk that
    started after this call; *max_age* None reuses a fresh one), record it (GB-days)
    and, with *incoming_bytes*, refuse a write that would exceed the quota.

    Raises
    ------
    QuotaExceeded
        *incoming_bytes* more would take the project past its ``storage_gb``.
    """
    used = project_bytes(session, alloc.id, data_dir, max_age)
    record_storage(session, alloc.id, used)
    if incoming_bytes is not None:
        return check_storage(alloc, used, incoming_bytes)
    return storage_status(alloc, used)


# --- client side: writers running as the user (ingest, uploads, job outputs) -------------


def _remote(alloc_id: int, incoming_bytes: int | None) -> dict[str, Any]:
    from .cli import call

    params = {} if incoming_bytes is None else {"incoming": str(max(int(incoming_bytes), 0))}
    try:
        answer = call("GET", f"projects/{int(alloc_id)}/storage", params=params)
    except QuotaExceeded:
        raise
    except NotAuthorized as exc:
        if "quota" in str(exc):  # the service's refusal (403), one line
            raise QuotaExceeded(str(exc)) from None
        raise
    if answer.get("message"):
        print(f"warning: {answer['message']}", file=sys.stderr)
    return answer


def remote_check(alloc_id: int, incoming_bytes: int) -> dict[str, Any]:
    """Ask the allocations service whether *incoming_bytes* more fit in project
    *alloc_id*'s workspace, before writing them.

    Calls ``GET api/projects/{id}/storage?incoming=N`` with the user's token
    (:func:`oceandata.alloc.cli.call`: ``OCEANDATA_ALLOC_URL``, ``JUPYTERHUB_API_TOKEN``):
    the service measures the project now and records it. Prints the 80%/100% warning
    line to stderr when there is one.

    Parameters
    ----------
    alloc_id
        The project.
    incoming_bytes
        The size of the write (an estimate: say which in the caller).

    Returns
    -------
    dict
        The service's answer: ``allocation_id``, ``used_bytes``, ``quota_bytes``,
        ``fraction``, ``level``, ``message``, ``gb_days``, ``workspace``.

    Raises
    ------
    QuotaExceeded
        The write would exceed the quota (one line with usage and quota).
    oceandata.alloc.cli.AllocationNotFound
        No such project of the caller's.
    """
    return _remote(alloc_id, incoming_bytes)


def remote_measure(alloc_id: int) -> dict[str, Any]:
    """Have the service measure and record project *alloc_id*'s workspace after a write
    (same answer as :func:`remote_check`; prints the warning line when there is one)."""
    return _remote(alloc_id, None)


def storage_alerts(session: Session, user: str) -> list[StorageStatus]:
    """The storage of the projects in force *user* leads or belongs to whose last
    measurement is at 80% of the quota or more (a page never walks a workspace)."""
    from .projects import projects_of

    alerts = []
    for alloc in projects_of(session, user):
        last = session.scalars(select(StorageUsage).where(
            StorageUsage.allocation_id == alloc.id).order_by(
            StorageUsage.measured_at.desc(), StorageUsage.id.desc()).limit(1)).first()
        if last is not None and (status := storage_status(alloc, last.bytes)).level:
            alerts.append(status)
    return alerts


def storage_warnings(session: Session, user: str) -> list[str]:
    """The warning lines (:meth:`StorageStatus.message`) of :func:`storage_alerts`."""
    return [line for status in storage_alerts(session, user)
            if (line := status.message()) is not None]
