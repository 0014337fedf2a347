"""REST routes and pages of uploads to a project's workspace:
chunked, resumable, size-capped, sha256-checked (docs/projects.md).

Mounted by the allocations service (:func:`oceandata.alloc.service.create_app`): ``router``
under ``<prefix>api``, ``page_router`` under the prefix (HTML pages).

REST API (a JupyterHub token; cookie sessions send their CSRF token in ``X-CSRF-Token``):

- ``POST projects/{id}/uploads`` ``{"filename", "size", "sha256"?}`` (201): opens an
  upload. Refused before anything is written: a name that is not a plain file name
  (400), a size over :func:`max_upload_bytes` (413), over the project's storage quota
  counting the bytes the project's other open uploads still expect (403), a name that
  already exists in ``uploads/`` (409), a non-member (404);
- ``GET projects/{id}/uploads``: the caller's uploads to the project, newest first;
- ``PUT uploads/{upload_id}/chunks?offset=N``: the next bytes, raw
  (``application/octet-stream``, at most :data:`CHUNK_MAX` bytes). ``offset`` must equal
  the bytes received so far (409 otherwise, with the right offset): a chunk is never
  written twice nor out of order. A chunk cut off by a lost connection keeps the bytes
  that arrived;
- ``GET uploads/{upload_id}``: the upload and the bytes received so far (to resume);
  ``?digest=1`` adds the sha256 of the bytes received (a client checks it is resuming its
  own file);
- ``POST uploads/{upload_id}/complete`` ``{"sha256"?}``: checks the size (400 and the
  upload stays open when bytes are missing), the sha256 (given here or at the start;
  400 and the upload is discarded when it differs) and that the file is NetCDF (classic
  or netCDF-4 opened by netCDF4; 400 and discarded otherwise), then moves it from
  ``uploads/.partial/<id>`` to ``uploads/<filename>`` (mode 0640, the ``uploads/``
  folder's group: members read it) without replacing a file (409), measures the
  workspace and records the charge;
- ``DELETE uploads/{upload_id}``: abort, the partial file is removed.

Another user's upload, or one of a project the caller no longer belongs to, is 404.
Files are written by the service (root) through directory descriptors opened without
following symbolic links, so a member who replaces a folder of the workspace by a link
cannot make the service write elsewhere.

Pages: ``projects/{id}/upload`` (a form; a short script sends large files in chunks
through the REST API) and its plain-form target ``upload/{id}`` (small files, at most
:data:`FORM_MAX` bytes).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import pwd
import re
import secrets
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ..errors import UsageError
from ..governance import audit
from ..hub.security import MAX_INT64, HubUser, whole_number
from . import db, projects, workspaces
from .auth import current_user, page_user
from .core import NotFound, QuotaExceeded
from .models import Allocation, AllocationStatus, Upload, UploadState, utcnow

__all__ = ["CHUNK_MAX", "FORM_MAX", "UploadConflict", "body_limits", "max_upload_bytes",
           "netcdf_signature", "page_router", "reserved_bytes", "router"]

log = logging.getLogger(__name__)
router = APIRouter()
page_router = APIRouter()

#: the largest chunk of one ``PUT uploads/{id}/chunks`` body
CHUNK_MAX = 64 * 2**20
#: the largest file sent through the page's plain form (larger ones: the page's script)
FORM_MAX = 64 * 2**20
#: default cap of one upload (``OCEANDATA_UPLOAD_MAX_BYTES``): 20 GB
DEFAULT_MAX_BYTES = 20 * 10**9
#: an open upload untouched this long is abandoned: its partial file is removed
#: (``OCEANDATA_UPLOAD_EXPIRE_HOURS``)
DEFAULT_EXPIRE_HOURS = 7 * 24
#: seconds a chunk's connection may stay silent (``OCEANDATA_UPLOAD_STALL_SECONDS``)
DEFAULT_STALL_SECONDS = 60.0
#: a file name in ``uploads/``: a plain name, no folders, no leading dot
FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
SHA256 = re.compile(r"[0-9a-f]{64}")
#: writes to the partial file are gathered up to this size
WRITE_BLOCK = 4 * 2**20
PARTIAL = ".partial"
CLASSIC_MAGIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: where an HDF5 superblock may start (netCDF-C looks there too)
HDF5_OFFSETS = (0, 512, 1024, 2048)
#: seconds the NetCDF check of a file may take
CHECK_TIMEOUT = 300

UploadId = Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$",
                                    description="The upload's id, as its start gave it.")]
ProjectId = Annotated[int, PathParam(ge=1, le=MAX_INT64,
                                     description="The project's (allocation's) id.")]
Offset = Annotated[int, Query(ge=0, le=MAX_INT64,
                              description="Bytes received so far (where this chunk starts).")]

#: uploads whose chunk is being received now by this process
_RECEIVING: set[str] = set()
#: running sha256 of the bytes received in order, per upload (lost at a restart: then the
#: file is read again)
_HASHERS: dict[str, tuple[int, Any]] = {}

START_SCHEMA = {"type": "object", "required": ["filename", "size"], "properties": {
    "filename": {"type": "string", "pattern": FILENAME.pattern,
                 "description": "The name in the project's uploads/ folder."},
    "size": {"type": "integer", "minimum": 1, "description": "The file's size in bytes."},
    "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$",
               "description": "The file's sha256 (else give it to complete)."}}}
COMPLETE_SCHEMA = {"type": "object", "properties": {
    "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}}}


class UploadConflict(UsageError):
    """The request contradicts the upload's state (wrong offset, name taken, ended)."""


class CheckUnavailable(Exception):
    """The NetCDF check cannot run (a problem of the platform, not of the file)."""


class UploadTooLarge(UsageError):
    """The declared size is over the cap of one upload."""


def max_upload_bytes() -> int:
    """The cap of one upload: ``OCEANDATA_UPLOAD_MAX_BYTES``, default 20 GB."""
    value = os.environ.get("OCEANDATA_UPLOAD_MAX_BYTES", "")
    return int(value) if value.strip().isdigit() else DEFAULT_MAX_BYTES


def stall_seconds() -> float:
    """How long a chunk's connection may stay silent before the chunk is cut (what
    arrived is kept): ``OCEANDATA_UPLOAD_STALL_SECONDS``, default 60."""
    value = os.environ.get("OCEANDATA_UPLOAD_STALL_SECONDS", "")
    try:
        return max(float(value), 0.1) if value.strip() else DEFAULT_STALL_SECONDS
    except ValueError:
        return DEFAULT_STALL_SECONDS


def _expire_after() -> dt.timedelta:
    value = os.environ.get("OCEANDATA_UPLOAD_EXPIRE_HOURS", "")
    return dt.timedelta(hours=int(value) if value.strip().isdigit() else DEFAULT_EXPIRE_HOURS)


def body_limits(prefix: str) -> dict[str, int]:
    """Largest request bodies of the upload routes, by path prefix (the service's
    :class:`~oceandata.hub.security.BodyLimit` overrides)."""
    return {f"{prefix}api/uploads/": CHUNK_MAX, f"{prefix}upload/": FORM_MAX + 2**16}


def netcdf_signature(head: bytes) -> bool:
    """Whether *head* (the file's first bytes, 2056 or all of them) starts like NetCDF:
    the classic format's ``CDF`` magic, or an HDF5 superblock where netCDF-4 puts one."""
    if head[:4] in CLASSIC_MAGIC:
        return True
    return any(head[at:at + 8] == HDF5_MAGIC for at in HDF5_OFFSETS)


# --- the workspace's folders, opened without following links --------------------------

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _Folders:
    """Descriptors of ``<workspace>/uploads`` and ``uploads/.partial``."""

    def __init__(self, alloc: Allocation, session: Session, create: bool) -> None:
        self.alloc_id = alloc.id
        self.fds: list[int] = []
        try:
            ws = self._workspace(alloc, session, create)
            self.uploads = self._sub(ws, "uploads", 0o2770, create)
            self.gid = os.fstat(self.uploads).st_gid
            self.partial = self._sub(self.uploads, PARTIAL, 0o2710, create)
        except BaseException:
            self.close()
            raise

    def _open(self, name: str | Path, dir_fd: int | None = None) -> int:
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise UploadConflict(f"project {self.alloc_id}'s workspace folder {name} is not "
                                 "a folder (a link?): ask an administrator") from None
        self.fds.append(fd)
        return fd

    def _workspace(self, alloc: Allocation, session: Session, create: bool) -> int:
        path = workspaces.workspace_path(alloc.id)
        if not path.is_dir() and create:
            sync = getattr(workspaces, "sync_workspace", None)
            if sync is not None:  # the group-owned, setgid workspace of its members
                sync(alloc, [m.user for m in projects.members(session, alloc)])
            if not path.is_dir():
                path.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
                path.mkdir(mode=0o2770, exist_ok=True)
        return self._open(path)

    def _sub(self, parent: int, name: str, mode: int, create: bool) -> int:
        try:
            return self._open(name, parent)
        except FileNotFoundError:
            if not create:
                raise
        try:
            os.mkdir(name, mode, dir_fd=parent)
        except FileExistsError:
            pass
        fd = self._open(name, parent)
        info = os.fstat(fd)
        if info.st_uid == os.geteuid():
            os.fchown(fd, -1, os.fstat(parent).st_gid)
            os.fchmod(fd, mode)  # not cut by the umask
        return fd

    def open_partial(self, upload_id: str, flags: int) -> int:
        """The partial file, checked: a regular file of ours with one link."""
        try:
            fd = os.open(upload_id, flags | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=self.partial)
        except FileNotFoundError:
            raise UploadConflict(f"the partial file of upload {upload_id} is gone: abort it "
                                 "and start again") from None
        except OSError:
            raise UploadConflict(f"the partial file of upload {upload_id} is not a file: "
                                 "abort it and start again") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_nlink != 1:
            os.close(fd)
            raise UploadConflict(f"the partial file of upload {upload_id} was replaced: abort "
                                 "it and start again")
        return fd

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def __enter__(self) -> _Folders:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _folders(session: Session, alloc: Allocation, create: bool = False) -> _Folders:
    try:
        return _Folders(alloc, session, create)
    except FileNotFoundError:
        raise UploadConflict(f"project {alloc.id}'s workspace has no uploads folder: ask an "
                             "administrator") from None


def _remove_partial(session: Session, alloc: Allocation, upload_id: str) -> None:
    _HASHERS.pop(upload_id, None)
    try:
        with _folders(session, alloc) as folders:
            os.unlink(upload_id, dir_fd=folders.partial)
    except (FileNotFoundError, UploadConflict):
        pass


# --- the rules ------------------------------------------------------------------------


def _filename(value: Any) -> str:
    if not isinstance(value, str) or not FILENAME.fullmatch(value):
        shown = str(value)[:60]
        raise UsageError(f"filename {shown!r}: give a plain file name (letters, digits, '.', "
                         "'_', '+', '-'; no folders, not starting with '.'; at most 200 "
                         "characters)")
    return value


def _sha256(value: Any, field: str = "sha256") -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not SHA256.fullmatch(value.lower()):
        raise UsageError(f"{field}: give the file's SHA-256 as 64 hexadecimal digits")
    return value.lower()


def _size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError("size: give the file's size in bytes, a whole number of at least 1")
    cap = max_upload_bytes()
    if value > cap:
        from ..io.estimate import format_bytes

        raise UploadTooLarge(f"the file is {format_bytes(value)}: uploads are at most "
                             f"{format_bytes(cap)} each")
    return value


def _project(session: Session, alloc_id: int, user: str) -> Allocation:
    """A project the caller belongs to, approved and in force, else 404/403."""
    alloc = projects.get_member_project(session, alloc_id, user)
    if alloc.status != AllocationStatus.APPROVED:
        raise QuotaExceeded(f"project {alloc.id} is {alloc.status.value}: uploads go to "
                            "approved projects")
    today = dt.date.today()
    if not alloc.active_on(today):
        raise QuotaExceeded(f"project {alloc.id} runs {alloc.start_date} to "
                            f"{alloc.end_date}; today is {today}")
    return alloc


def _own(session: Session, upload_id: str, user: str) -> tuple[Upload, Allocation]:
    """The caller's upload, in a project they still belong to, else 404."""
    row = session.get(Upload, upload_id)
    if row is None or row.user != user:
        raise NotFound(f"no upload {upload_id} of yours")
    try:
        alloc = projects.get_member_project(session, row.allocation_id, user)
    except NotFound:
        raise NotFound(f"no upload {upload_id} of yours") from None
    return row, alloc


def _open_row(row: Upload) -> None:
    if row.state != UploadState.OPEN:
        raise UploadConflict(f"upload {row.id} is {row.state.value}")


def reserved_bytes(session: Session, alloc_id: int, but: str | None = None) -> int:
    """Bytes the project's open uploads still expect (counted against the quota)."""
    rows = session.scalars(select(Upload).where(Upload.allocation_id == alloc_id,
                                                Upload.state == UploadState.OPEN))
    return sum(max(r.size - r.received, 0) for r in rows if r.id != but)


def _expire(session: Session, alloc: Allocation) -> None:
    """Abandon the project's open uploads untouched for longer than the expiry, and those
    of users no longer in the project: nobody else may abort an upload, and its
    reservation would hold the quota until it expired (days). A chunk being received is
    left to finish; its upload is abandoned at the next call."""
    cutoff = utcnow() - _expire_after()
    for row in session.scalars(select(Upload).where(Upload.allocation_id == alloc.id,
                                                    Upload.state == UploadState.OPEN)):
        updated = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(
            tzinfo=dt.UTC)
        gone = row.id not in _RECEIVING and not projects.is_member(session, alloc, row.user)
        if updated < cutoff or gone:
            _remove_partial(session, alloc, row.id)
            row.state, row.updated_at = UploadState.ABORTED, utcnow()
            if gone:
                audit.record_on_commit(session, "upload.abort", actor=None,
                                       target=f"allocation:{alloc.id}",
                                       detail={"upload": row.id, "user": row.user,
                                               "reason": "no longer a member"})


def _exists(folders: _Folders, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folders.uploads, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def upload_dict(row: Upload) -> dict[str, Any]:
    """An upload as JSON-safe values."""
    from .service import _utc_iso

    return {"id": row.id, "project": row.allocation_id, "user": row.user,
            "filename": row.filename, "size": row.size, "sha256": row.sha256 or None,
            "received": row.received, "state": row.state.value, "chunk_max": CHUNK_MAX,
            "receiving": row.id in _RECEIVING,
            "path": f"uploads/{row.filename}" if row.state == UploadState.COMPLETE else None,
            "created_at": _utc_iso(row.created_at), "updated_at": _utc_iso(row.updated_at)}


def start(session: Session, alloc_id: int, user: str, fields: dict[str, Any]) -> Upload:
    """Open an upload: every refusal comes before anything is written."""
    alloc = _project(session, alloc_id, user)
    filename = _filename(fields.get("filename"))
    size = _size(fields.get("size"))
    sha = _sha256(fields.get("sha256"))
    _expire(session, alloc)
    # the walk (reused when fresh) before the project's lock, which stops every writer
    # with SQLite; under it, the reservations and the bytes written since: two starts
    # never both count on the same free space
    workspaces.project_bytes(session, alloc.id)
    workspaces.lock_project(session, alloc.id)
    used = (workspaces.project_bytes(session, alloc.id, max_age=float("inf"))
            + reserved_bytes(session, alloc.id))
    workspaces.check_storage(alloc, used, size)
    with _folders(session, alloc, create=True) as folders:
        if _exists(folders, filename):
            raise UploadConflict(f"uploads/{filename} exists in project {alloc.id}: choose "
                                 "another name or delete that file")
        row = Upload(id=secrets.token_hex(16), allocation_id=alloc.id, user=user,
                     filename=filename, size=size, sha256=sha or "", received=0,
                     state=UploadState.OPEN, created_at=utcnow(), updated_at=utcnow())
        session.add(row)
        session.flush()
        fd = os.open(row.id, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o640, dir_fd=folders.partial)
        try:
            if os.geteuid() == 0:
                os.fchown(fd, -1, folders.gid)
            os.fchmod(fd, 0o640)
        finally:
            os.close(fd)
    audit.record_on_commit(session, "upload.start", actor=user,
                           target=f"allocation:{alloc.id}",
                           detail={"upload": row.id, "filename": filename, "size": size})
    return row


def _hash_fd(fd: int, length: int) -> str:
    digest = hashlib.sha256()
    done = 0
    while done < length:
        block = os.pread(fd, min(8 * 2**20, length - done), done)
        if not block:
            break
        digest.update(block)
        done += len(block)
    return digest.hexdigest()


def received_digest(session: Session, row: Upload, alloc: Allocation) -> str:
    """The sha256 of the bytes received so far."""
    known = _HASHERS.get(row.id)
    if known is not None and known[0] == row.received:
        return known[1].hexdigest()
    with _folders(session, alloc) as folders:
        fd = folders.open_partial(row.id, os.O_RDONLY)
        try:
            return _hash_fd(fd, row.received)
        finally:
            os.close(fd)


def _nobody() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def check_netcdf(path: Path, gid: int) -> str | None:
    """Why the file at *path* is not NetCDF that netCDF4 opens, or None when it is.

    The file is opened in a child process (a crash of the library cannot take the service
    down); as root, the child runs as ``nobody`` with the workspace's group *gid* only.
    """
    code = ("import sys, netCDF4\n"
            "try:\n"
            "    open(sys.argv[1], 'rb').close()\n"
            "except PermissionError as exc:\n"
            "    print(exc)\n"
            "    sys.exit(4)\n"
            "try:\n"
            "    netCDF4.Dataset(sys.argv[1], 'r').close()\n"
            "except OSError as exc:\n"
            "    print(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)\n"
            "    sys.exit(3)\n")
    kw: dict[str, Any] = {}
    ids = _nobody()
    if ids is not None:
        kw = {"user": ids[0], "group": ids[1], "extra_groups": [gid]}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/",
           "HDF5_USE_FILE_LOCKING": "FALSE"}
    try:
        proc = subprocess.run([sys.executable, "-I", "-c", code, str(path)], cwd="/", env=env,
                              capture_output=True, text=True, timeout=CHECK_TIMEOUT, **kw)
    except subprocess.TimeoutExpired:
        return f"netCDF4 did not open it within {CHECK_TIMEOUT} s"
    if proc.returncode == 0:
        return None
    if proc.returncode == 3:
        return proc.stdout.strip()[:200] or "netCDF4 cannot open it"
    log.error("the NetCDF check of %s failed (exit %s): %s %s", path, proc.returncode,
              proc.stdout.strip()[-300:], proc.stderr.strip()[-500:])
    raise CheckUnavailable("the service cannot check uploaded files now (the administrators "
                           "can find why in the service log); the upload stays open: "
                           "complete it later")


def _discard(url: str, upload_id: str) -> None:
    """Abort an upload in a transaction of its own (the refusal's is rolled back)."""
    with db.session_scope(url) as session:
        row = session.get(Upload, upload_id)
        if row is None or row.state != UploadState.OPEN:
            return
        alloc = session.get(Allocation, row.allocation_id)
        _remove_partial(session, alloc, row.id)
        row.state, row.updated_at = UploadState.ABORTED, utcnow()


class _Discarded(UsageError):
    """A refusal that discards the upload."""


def complete(session: Session, upload_id: str, user: str,
             fields: dict[str, Any]) -> Upload:
    """Check the upload and move it into ``uploads/``.

    Raises
    ------
    UsageError
        Bytes missing (the upload stays open).
    _Discarded
        A wrong sha256 or not NetCDF (the caller discards the upload).
    UploadConflict
        The name is taken (the upload stays open).
    """
    row, alloc = _own(session, upload_id, user)
    _open_row(row)
    given = _sha256(fields.get("sha256"))
    if given and row.sha256 and given != row.sha256:
        raise UsageError(f"sha256 {given} differs from the one upload {row.id} started with "
                         f"({row.sha256})")
    expected = given or row.sha256
    if not expected:
        raise UsageError("sha256: give the file's SHA-256 (here or when the upload starts)")
    if row.received < row.size:
        raise UsageError(f"upload {row.id} has {row.received} of {row.size} bytes: send the "
                         f"rest from offset {row.received}, then complete it")
    with _folders(session, alloc) as folders:
        fd = folders.open_partial(row.id, os.O_RDONLY)
        try:
            if os.fstat(fd).st_size != row.size:
                raise _Discarded(f"upload {row.id}'s file holds {os.fstat(fd).st_size} bytes, "
                                 f"not {row.size}: discarded, send it again")
            known = _HASHERS.get(row.id)
            digest = (known[1].hexdigest() if known is not None and known[0] == row.size
                      else _hash_fd(fd, row.size))
            if digest != expected:
                raise _Discarded(f"{row.filename}: the bytes received have sha256 {digest}, "
                                 f"not {expected}: discarded, send it again")
            if not netcdf_signature(os.pread(fd, 2056, 0)):
                raise _Discarded(f"{row.filename} is not a NetCDF file (neither classic CDF "
                                 "nor HDF5/netCDF-4): discarded; uploads take NetCDF files")
            partial = workspaces.workspace_path(alloc.id) / "uploads" / PARTIAL / row.id
            why = check_netcdf(partial, folders.gid)
            if why is not None:
                raise _Discarded(f"{row.filename} is not a NetCDF file netCDF4 opens ({why}): "
                                 "discarded")
        finally:
            os.close(fd)
        try:
            os.link(row.id, row.filename, src_dir_fd=folders.partial,
                    dst_dir_fd=folders.uploads, follow_symlinks=False)
        except FileExistsError:
            raise UploadConflict(f"uploads/{row.filename} exists in project {alloc.id}: delete "
                                 "that file, then complete the upload again") from None
        os.unlink(row.id, dir_fd=folders.partial)
    _HASHERS.pop(row.id, None)
    row.sha256, row.state, row.updated_at = expected, UploadState.COMPLETE, utcnow()
    # recorded: GB-days from now on (moving the file changed no byte on disk: a fresh
    # walk is reused)
    workspaces.measure(session, alloc, max_age=None)
    audit.record_on_commit(session, "upload.complete", actor=user,
                           target=f"allocation:{alloc.id}",
                           detail={"upload": row.id, "filename": row.filename,
                                   "size": row.size, "sha256": expected})
    return row


def abort(session: Session, upload_id: str, user: str) -> Upload:
    """Abort an open upload and remove its partial file."""
    row, alloc = _own(session, upload_id, user)
    _open_row(row)
    if row.id in _RECEIVING:
        raise UploadConflict(f"a chunk of upload {row.id} is being received: abort it after")
    _remove_partial(session, alloc, row.id)
    row.state, row.updated_at = UploadState.ABORTED, utcnow()
    audit.record_on_commit(session, "upload.abort", actor=user,
                           target=f"allocation:{alloc.id}", detail={"upload": row.id})
    return row


# --- HTTP -----------------------------------------------------------------------------


def _url(request: Request) -> str:
    return getattr(request.app.state, "db_url", None) or db.default_url()


async def _run(request: Request, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(session, *args)`` in one transaction in a worker thread; a refusal that
    discards the upload (*args* start with its id) is answered after a transaction of its
    own removed it."""
    url = _url(request)
    source = audit.request_source(request.client.host if request.client else None,
                                  request.headers.get("x-forwarded-for"))

    def work() -> Any:
        try:
            with db.session_scope(url) as session:
                audit.set_source(session, source)
                return fn(session, *args)
        except _Discarded:
            _discard(url, args[0])
            raise

    try:
        return await run_in_threadpool(work)
    except UploadTooLarge as exc:
        raise HTTPException(413, str(exc)) from None
    except UploadConflict as exc:
        raise HTTPException(409, str(exc)) from None
    except CheckUnavailable as exc:
        raise HTTPException(503, str(exc)) from None


async def _fields(request: Request) -> dict[str, Any]:
    from .service import _json_body

    raw = await request.body()
    if len(raw) > 2**20:  # the chunks' larger body limit covers complete's path too
        raise HTTPException(413, "the request body is larger than 1048576 bytes")
    return await _json_body(request)


@router.post("/projects/{alloc_id}/uploads", status_code=201, openapi_extra={
    "requestBody": {"required": True, "content": {"application/json": {
        "schema": START_SCHEMA}}}})
async def start_upload(alloc_id: ProjectId, request: Request,
                       user: HubUser = Depends(current_user)) -> dict[str, Any]:
    """Open an upload to the project's ``uploads/`` folder (refusals before any write)."""
    fields = await _fields(request)
    if not fields:
        raise UsageError('give {"filename": ..., "size": ...} (and "sha256")')

    def work(session: Session) -> dict[str, Any]:
        return upload_dict(start(session, alloc_id, user.name, fields))

    return await _run(request, work)


@router.get("/projects/{alloc_id}/uploads")
async def list_uploads(alloc_id: ProjectId, request: Request,
                       user: HubUser = Depends(current_user)) -> list[dict[str, Any]]:
    """The caller's uploads to the project, newest first."""
    def work(session: Session) -> list[dict[str, Any]]:
        alloc = projects.get_member_project(session, alloc_id, user.name)
        rows = session.scalars(select(Upload).where(
            Upload.allocation_id == alloc.id, Upload.user == user.name)
            .order_by(Upload.created_at.desc()).limit(200))
        return [upload_dict(r) for r in rows]

    return await _run(request, work)


@router.get("/uploads/{upload_id}")
async def show_upload(upload_id: UploadId, request: Request,
                      digest: Annotated[bool, Query(description=(
                          "Add received_sha256, the sha256 of the bytes received."))] = False,
                      user: HubUser = Depends(current_user)) -> dict[str, Any]:
    """One upload and the bytes received so far."""
    def work(session: Session) -> dict[str, Any]:
        row, alloc = _own(session, upload_id, user.name)
        out = upload_dict(row)
        if digest and row.state == UploadState.OPEN:
            out["received_sha256"] = received_digest(session, row, alloc)
        return out

    return await _run(request, work)


@router.put("/uploads/{upload_id}/chunks", responses={408: {
    "description": "The connection went silent: the chunk was cut, what arrived is kept.",
    "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}}}}}}},
    openapi_extra={"requestBody": {
    "required": True, "content": {"application/octet-stream": {
        "schema": {"type": "string", "format": "binary"}}}}})
async def put_chunk(upload_id: UploadId, offset: Offset, request: Request,
                    user: HubUser = Depends(current_user)) -> dict[str, Any]:
    """The next bytes of the file, from *offset* (= the bytes received so far)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/octet-stream":
        raise HTTPException(415, "send the chunk's bytes as application/octet-stream")
    if upload_id in _RECEIVING:
        raise HTTPException(409, f"a chunk of upload {upload_id} is being received: ask "
                                 "GET uploads/{id} for the offset when it has ended")
    _RECEIVING.add(upload_id)
    try:
        return await _receive(upload_id, offset, request, user)
    finally:
        _RECEIVING.discard(upload_id)


async def _receive(upload_id: str, offset: int, request: Request,
                   user: HubUser) -> Any:
    def begin(session: Session) -> tuple[int, int, _Folders]:
        row, alloc = _own(session, upload_id, user.name)
        _open_row(row)
        if offset != row.received:
            raise UploadConflict(f"offset {offset}: upload {row.id} has received "
                                 f"{row.received} bytes; send from offset {row.received}")
        folders = _folders(session, alloc)
        try:
            fd = folders.open_partial(row.id, os.O_WRONLY)
        finally:
            folders.close()
        os.ftruncate(fd, offset)  # what a cut-off chunk left after the bytes received
        return fd, row.size - offset, folders

    length = request.headers.get("content-length")
    fd, room, _ = await _run(request, begin)
    written, cut_off, stalled = 0, False, False
    known = _HASHERS.pop(upload_id, None)  # back once the bytes are recorded
    hasher = known[1] if known is not None and known[0] == offset else (
        hashlib.sha256() if offset == 0 else None)
    try:
        declared = whole_number(length)
        if declared is not None and declared > room:
            raise UsageError(f"the chunk of {length} bytes goes past the declared size "
                             f"(only {room} bytes remain)")
        pending: list[bytes] = []
        size = 0

        async def flush() -> None:
            nonlocal written, size
            block = b"".join(pending)
            pending.clear()
            size = 0
            await run_in_threadpool(os.pwrite, fd, block, offset + written)
            if hasher is not None:
                hasher.update(block)
            written += len(block)

        stream = request.stream().__aiter__()
        try:
            while True:
                try:  # a connection that went silent must not hold the upload forever
                    piece = await asyncio.wait_for(stream.__anext__(), stall_seconds())
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    stalled = True
                    break
                if written + size + len(piece) > room:
                    raise UsageError(f"the chunk goes past the declared size (only {room} "
                                     "bytes remain)")
                pending.append(piece)
                size += len(piece)
                if size >= WRITE_BLOCK:
                    await flush()
        except ClientDisconnect:
            cut_off = True
        if pending:
            await flush()
        await run_in_threadpool(os.fsync, fd)
    except BaseException:
        os.ftruncate(fd, offset)
        os.close(fd)
        raise
    os.close(fd)

    def commit(session: Session) -> dict[str, Any]:
        row = session.get(Upload, upload_id)
        if row is not None:  # on disk now, no longer reserved: count it before it is not
            workspaces.note_written(row.allocation_id, written)
        done = session.execute(
            update(Upload).where(Upload.id == upload_id, Upload.received == offset,
                                 Upload.state == UploadState.OPEN)
            .values(received=offset + written, updated_at=utcnow()))
        if done.rowcount != 1:
            raise UploadConflict(f"upload {upload_id} changed while this chunk arrived")
        return upload_dict(session.get(Upload, upload_id))

    result = await _run(request, commit)
    if hasher is not None:
        _HASHERS[upload_id] = (offset + written, hasher)
    if cut_off:
        return Response(status_code=499)  # nobody reads it: the client has gone
    if stalled:
        return JSONResponse({"error": f"no bytes arrived for {stall_seconds():g} s: the "
                                      f"chunk was cut after {written} bytes; send the rest "
                                      f"from offset {offset + written}"}, status_code=408)
    return result


@router.post("/uploads/{upload_id}/complete", openapi_extra={"requestBody": {
    "required": False, "content": {"application/json": {"schema": COMPLETE_SCHEMA}}}})
async def complete_upload(upload_id: UploadId, request: Request,
                          user: HubUser = Depends(current_user)) -> dict[str, Any]:
    """Check size, sha256 and format, then move the file into ``uploads/``."""
    fields = await _fields(request)
    if upload_id in _RECEIVING:
        raise HTTPException(409, f"a chunk of upload {upload_id} is being received")

    def work(session: Session, ident: str) -> dict[str, Any]:
        return upload_dict(complete(session, ident, user.name, fields))

    return await _run(request, work, upload_id)


@router.delete("/uploads/{upload_id}")
async def abort_upload(upload_id: UploadId, request: Request,
                       user: HubUser = Depends(current_user)) -> dict[str, Any]:
    """Abort an open upload; its partial file is removed."""
    def work(session: Session, ident: str) -> dict[str, Any]:
        return upload_dict(abort(session, ident, user.name))

    return await _run(request, work, upload_id)


# --- pages ----------------------------------------------------------------------------


async def _page_user(request: Request, user: HubUser = Depends(page_user)) -> HubUser:
    request.state.user = user  # for the templates (the header, the saved language)
    return user


@page_router.get("/projects/{alloc_id}/upload", response_class=HTMLResponse)
async def upload_page(alloc_id: ProjectId, request: Request,
                      user: HubUser = Depends(_page_user)) -> Response:
    """The upload form of a project and the caller's uploads to it."""
    from .service import render

    def work(session: Session) -> dict[str, Any]:
        alloc = projects.get_member_project(session, alloc_id, user.name)
        rows = session.scalars(select(Upload).where(
            Upload.allocation_id == alloc.id, Upload.user == user.name)
            .order_by(Upload.created_at.desc()).limit(50))
        return {"project": {"id": alloc.id, "title": alloc.project_title},
                "uploads": [upload_dict(r) for r in rows]}

    context = await _run(request, work)
    done = request.query_params.get("done", "")
    context.update(form_max=FORM_MAX, chunk=8 * 2**20, cap=max_upload_bytes(),
                   done=done if FILENAME.fullmatch(done) else None, error=None)
    return render(request, "upload.html", context)


@page_router.post("/upload/{alloc_id}", response_class=HTMLResponse)
async def upload_form(alloc_id: ProjectId, request: Request,
                      user: HubUser = Depends(_page_user)) -> Response:
    """The plain form: one small file, its sha256 optional (computed here otherwise)."""
    from .service import _redirect

    form = await request.form()
    item = form.get("file")
    if item is None or isinstance(item, str):
        raise UsageError("file: choose a file to upload")
    data = await item.read(FORM_MAX + 1)
    if len(data) > FORM_MAX:
        raise HTTPException(413, f"the form takes files up to {FORM_MAX // 2**20} MiB: larger "
                                 "ones go in chunks (the page's script or oceandata upload)")
    given = form.get("sha256")
    name = form.get("filename") or item.filename or ""
    sha = hashlib.sha256(data).hexdigest()
    fields = {"filename": str(name).strip(), "size": len(data),
              "sha256": given if isinstance(given, str) and given.strip() else sha}

    def begin(session: Session) -> str:
        return start(session, alloc_id, user.name, fields).id

    ident = await _run(request, begin)

    def write(session: Session, key: str) -> None:
        row, alloc = _own(session, key, user.name)
        with _folders(session, alloc) as folders:
            fd = folders.open_partial(row.id, os.O_WRONLY)
            try:
                os.pwrite(fd, data, 0)
                os.fsync(fd)
            finally:
                os.close(fd)
        row.received, row.updated_at = len(data), utcnow()
        _HASHERS[row.id] = (len(data), hashlib.sha256(data))

    await _run(request, write, ident)

    def finish(session: Session, key: str) -> str:
        return complete(session, key, user.name, {}).filename

    try:
        done = await _run(request, finish, ident)
    except BaseException:
        await run_in_threadpool(_discard, _url(request), ident)
        raise
    return _redirect(request, f"projects/{alloc_id}/upload", done=done)


@page_router.get("/upload.js", response_class=Response)
async def upload_script(user: HubUser = Depends(_page_user)) -> Response:
    """The upload page's script (chunks through the REST API; served, not inline: the
    pages' Content-Security-Policy allows scripts of the service only)."""
    text = (Path(__file__).with_name("templates") / "upload.js").read_text()
    return Response(text, media_type="text/javascript")
