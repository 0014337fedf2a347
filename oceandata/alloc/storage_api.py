"""REST route of a project's storage, and the periodic measurement of every workspace.

``GET api/projects/{id}/storage`` (a member or an administrator; anyone else 404):
measures the project now (its workspace plus the folders of its batch jobs,
:func:`oceandata.alloc.workspaces.project_bytes`), records the measurement (GB-days,
:func:`~oceandata.alloc.workspaces.record_storage`) and answers the size, the quota, the
warning line at 80%/100%, the GB-days charged so far and ``reserved_bytes``: the bytes
the project's open uploads still expect (:func:`oceandata.alloc.uploads_api.reserved_bytes`;
uploads abandoned past ``OCEANDATA_UPLOAD_EXPIRE_HOURS`` are aborted first, as when an
upload opens). With ``?incoming=N`` it also refuses (403, one sentence with usage and
quota) a write of N bytes that would exceed the quota with the bytes on disk *and* those
reserved: the check writers running as the user make before they write
(:func:`oceandata.alloc.workspaces.remote_check`), so an ingest cannot take the space an
open upload was promised when it opened.

:func:`scan_forever` measures every approved project every
``OCEANDATA_STORAGE_SCAN_SECONDS`` (default 300; 0 turns it off), in the allocations
service's lifespan (:func:`oceandata.alloc.service.create_app`), which also syncs every
approved project's workspace once at start (:func:`sync_all`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ..catalog.projects import seal_stores
from ..hub.security import MAX_INT64, HubUser
from . import db, projects, uploads_api, workspaces
from .auth import current_user
from .core import QuotaExceeded
from .models import Allocation, AllocationStatus

__all__ = ["SCAN_ENV", "check_incoming", "router", "scan_interval", "scan_once", "storage_dict",
           "sync_all"]

log = logging.getLogger(__name__)

router = APIRouter()

#: seconds between two measurements of every workspace (0: never)
SCAN_ENV = "OCEANDATA_STORAGE_SCAN_SECONDS"
DEFAULT_SCAN_SECONDS = 300.0
AllocId = Annotated[int, PathParam(ge=1, le=MAX_INT64,
                                   description="The project's id (a positive integer).")]
Incoming = Annotated[int | None, Query(ge=0, le=MAX_INT64, description=(
    "Bytes about to be written: refused (403) when they would exceed the quota."))]


def scan_interval(environ: dict[str, str] | None = None) -> float:
    """``OCEANDATA_STORAGE_SCAN_SECONDS`` (default 300; 0 turns the scan off).

    Raises
    ------
    UsageError
        Not a number of seconds >= 0.
    """
    return workspaces.seconds_setting(SCAN_ENV, DEFAULT_SCAN_SECONDS, "the seconds between "
                                      "two measurements of the workspaces (0 turns them "
                                      "off)", environ)


def storage_dict(session: Session, status: workspaces.StorageStatus) -> dict[str, Any]:
    """A project's storage as JSON-safe values (``used_bytes``: on disk;
    ``reserved_bytes``: still expected by the project's open uploads)."""
    summary = workspaces.storage_summary(session, [status.allocation_id])
    return {"allocation_id": status.allocation_id, "used_bytes": status.used_bytes,
            "reserved_bytes": uploads_api.reserved_bytes(session, status.allocation_id),
            "quota_bytes": status.quota_bytes,
            "fraction": round(status.fraction, 6) if status.quota_bytes > 0 else None,
            "level": status.level, "message": status.message(),
            "gb_days": summary[0]["gb_days"] if summary else 0.0,
            "workspace": str(workspaces.workspace_path(status.allocation_id))}


def measure_project(db_url: str, alloc_id: int, user: str, is_admin: bool,
                    incoming: int | None = None) -> dict[str, Any]:
    """Measure and record project *alloc_id* for *user* (a member, or an admin), in one
    transaction (retried once when a concurrent measurement made the day's row first).

    Raises
    ------
    oceandata.alloc.core.NotFound
        Not a project of *user*'s.
    oceandata.alloc.core.QuotaExceeded
        *incoming* bytes more would exceed the quota with what is on disk and what the
        project's open uploads were promised (the measurement is still recorded).
    """
    for attempt in (1, 2):
        try:
            with db.session_scope(db_url) as session:
                alloc = projects.get_member_project(session, alloc_id, user, is_admin)
                seal_stores(workspaces.workspace_path(alloc.id))  # after a write: sealed
                # abandoned uploads promise nothing more (and their partial files go)
                uploads_api._expire(session, alloc)
                status = workspaces.measure(session, alloc)
                answer = storage_dict(session, status)
            break
        except IntegrityError:
            if attempt == 2:
                raise
    if incoming is not None:
        with db.session_scope(db_url) as session:
            alloc = session.get(Allocation, alloc_id)
            check_incoming(alloc, answer["used_bytes"], answer["reserved_bytes"], incoming)
    return answer


def check_incoming(alloc: Allocation, used: int, reserved: int, incoming: int) -> None:
    """Refuse *incoming* bytes that do not fit beside the *used* bytes on disk and the
    *reserved* bytes the project's open uploads still expect.

    Raises
    ------
    oceandata.alloc.core.QuotaExceeded
        One line with the usage, the reservation and the quota.
    """
    from ..io.estimate import format_bytes

    if not reserved:
        workspaces.check_storage(alloc, used, incoming)
        return
    quota = workspaces.storage_status(alloc, used).quota_bytes
    if used + reserved + max(int(incoming), 0) > quota:
        raise QuotaExceeded(
            f"project {alloc.id}'s workspace holds {format_bytes(used)} and its open "
            f"uploads have reserved {format_bytes(reserved)} more of its "
            f"{format_bytes(quota)} quota: writing {format_bytes(incoming)} more would "
            f"exceed it (finish or abort those uploads, free space in "
            f"{workspaces.workspace_path(alloc.id)} or ask for more storage)")


@router.get("/projects/{alloc_id}/storage")
async def project_storage(request: Request, alloc_id: AllocId, incoming: Incoming = None,
                          user: HubUser = Depends(current_user)) -> dict[str, Any]:
    """Measure the project's workspace now, record it, answer size, quota and warning;
    with ``incoming``, refuse (403) a write that would exceed the quota."""
    return await run_in_threadpool(measure_project, request.app.state.db_url, alloc_id,
                                   user.name, user.admin, incoming)


def approved_projects(session: Session) -> list[Allocation]:
    """Every approved allocation (in force or not: a workspace outlives its period)."""
    return list(session.scalars(select(Allocation).where(
        Allocation.status == AllocationStatus.APPROVED).order_by(Allocation.id)))


def sync_all(db_url: str) -> int:
    """Sync the workspace of every approved project (:func:`workspaces.sync_workspace`);
    a failure is logged and the others go on. Returns how many were synced."""
    with db.session_scope(db_url) as session:
        todo = [(a.id, [m.user for m in projects.members(session, a)])
                for a in approved_projects(session)]
    done = 0
    for alloc_id, names in todo:
        try:
            workspaces.sync_workspace(alloc_id, names)
            done += 1
        except Exception:  # one broken project must not stop the service
            log.exception("could not sync the workspace of project %s", alloc_id)
    return done


def scan_once(db_url: str) -> int:
    """Measure and record every approved project whose workspace exists; returns how
    many were measured."""
    with db.session_scope(db_url) as session:
        ids = [a.id for a in approved_projects(session)]
    done = 0
    for alloc_id in ids:
        if not workspaces.workspace_path(alloc_id).is_dir():
            continue
        try:
            seal_stores(workspaces.workspace_path(alloc_id))
            with db.session_scope(db_url) as session:
                workspaces.measure(session, session.get(Allocation, alloc_id))
            done += 1
        except Exception:
            log.exception("could not measure the workspace of project %s", alloc_id)
    return done


async def scan_forever(db_url: str, interval: float) -> None:
    """:func:`sync_all` once, then :func:`scan_once` every *interval* seconds (until
    cancelled by the service's shutdown)."""
    try:
        await run_in_threadpool(sync_all, db_url)
    except Exception:
        log.exception("could not sync the workspaces")
    while True:
        try:
            await run_in_threadpool(scan_once, db_url)
        except Exception:  # the database away for a moment: measure next time
            log.exception("could not measure the workspaces")
        await asyncio.sleep(interval)

