"""The rules of allocations: requests, decisions, quota checks and charging.

Every path that grants or spends compute goes through these functions (the REST API,
the CLI through it, the gateway's options handler, batch submission), so the rules are
written once. They take an open session; callers own the transaction
(:func:`oceandata.alloc.db.session_scope`).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, literal, select
from sqlalchemy.orm import Session

from ..errors import NotAuthorized, OceandataError, UsageError
from .models import Allocation, AllocationStatus, AuditEntry, ServedBytes, Usage, utcnow

#: fields a partner fills in; numbers must be positive
REQUEST_FIELDS = ("project_title", "pi", "institution", "justification", "core_hours",
                  "max_cores", "memory_per_job_gb", "storage_gb", "start_date", "end_date",
                  "datasets")
#: fields an admin may change when approving
ADJUSTABLE = ("core_hours", "max_cores", "memory_per_job_gb", "storage_gb", "start_date",
              "end_date", "datasets")


#: the longest text of each text field (characters)
MAX_TEXT = {"project_title": 200, "pi": 200, "institution": 200, "justification": 20_000,
            "note": 5_000, "reason": 5_000}
#: the largest amount of each numeric field a request may name
MAXIMA = {"core_hours": 1e9, "max_cores": 1_000_000, "memory_per_job_gb": 1e6,
          "storage_gb": 1e9}
#: the most datasets a request may name, and the longest name
MAX_DATASETS = 200
MAX_DATASET_NAME = 128
#: dates a request may name (inclusive)
DATE_RANGE = (dt.date(2000, 1, 1), dt.date(2199, 12, 31))


class QuotaExceeded(NotAuthorized):
    """A request for compute that the user's allocation cannot cover."""


class NotFound(OceandataError):
    """No such allocation (or not one the caller may see)."""


def _date(value: Any, name: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        day = dt.date.fromisoformat(str(value)[:32])
    except ValueError:
        raise UsageError(f"{name} {str(value)[:40]!r} is not a date: give YYYY-MM-DD"
                         ) from None
    if not DATE_RANGE[0] <= day <= DATE_RANGE[1]:
        raise UsageError(f"{name} {day} is outside {DATE_RANGE[0]} to {DATE_RANGE[1]}")
    return day


def clean_text(value: Any, name: str) -> str:
    """A non-empty text of at most ``MAX_TEXT[name]`` characters, stripped."""
    if isinstance(value, (dict, list)):
        raise UsageError(f"{name} must be text")
    text = str(value).strip()
    if not text:
        raise UsageError(f"{name} is empty")
    limit = MAX_TEXT.get(name, 5_000)
    if len(text) > limit:
        raise UsageError(f"{name} is {len(text)} characters long: at most {limit}")
    return text


def _positive(value: Any, name: str, kind: type = float) -> float:
    """A finite number above 0; *kind* ``int`` also refuses fractions (``4.7`` cores)."""
    if isinstance(value, bool):
        raise UsageError(f"{name} {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"{name} {str(value)[:40]!r} is not a number") from None
    if not math.isfinite(number):
        # a NaN quota would pass every later comparison: unlimited compute
        raise UsageError(f"{name} {value!r} is not a finite number")
    if number <= 0:
        raise UsageError(f"{name} must be more than 0, got {value!r}")
    if name in MAXIMA and number > MAXIMA[name]:
        raise UsageError(f"{name} {value!r} is more than the most a request may name "
                         f"({MAXIMA[name]:g})")
    if kind is int:
        if number != int(number):
            raise UsageError(f"{name} must be a whole number, got {value!r}")
        return int(number)
    return number


def clean_request(fields: dict[str, Any]) -> dict[str, Any]:
    """Validate and normalise the fields of a request (or of an admin's changes)."""
    out: dict[str, Any] = {}
    for name in ("project_title", "pi", "institution", "justification"):
        if name in fields:
            out[name] = clean_text(fields[name], name)
    for name in ("core_hours", "memory_per_job_gb", "storage_gb"):
        if name in fields:
            out[name] = _positive(fields[name], name)
    if "max_cores" in fields:
        out["max_cores"] = int(_positive(fields["max_cores"], "max_cores", int))
    for name in ("start_date", "end_date"):
        if name in fields:
            out[name] = _date(fields[name], name)
    if "datasets" in fields:
        raw = fields["datasets"] or []
        if isinstance(raw, str):
            raw = [d for d in raw.replace(",", " ").split() if d]
        if not isinstance(raw, list) or not all(isinstance(d, str) for d in raw):
            raise UsageError("datasets must be a list of catalog names")
        if len(raw) > MAX_DATASETS or any(len(d) > MAX_DATASET_NAME for d in raw):
            raise UsageError(f"datasets: at most {MAX_DATASETS} names of at most "
                             f"{MAX_DATASET_NAME} characters")
        out["datasets"] = sorted(set(raw))
    return out


#: the fields of a request named in the platform's audit trail (long texts are not)
AUDITED_TERMS = ("project_title", "core_hours", "max_cores", "memory_per_job_gb",
                 "storage_gb", "start_date", "end_date", "datasets")


def _audit(session: Session, alloc: Allocation, actor: str, action: str,
           before: dict | None) -> None:
    """Audit a change twice: in ``allocation_audit`` (the allocation's own history, shown
    by its page) and in the platform's trail as ``alloc.<action>`` once the session
    commits (:func:`oceandata.governance.audit.record_on_commit`).

    Denying an approved allocation is recorded in the trail as ``alloc.revoke``.
    """
    from ..governance import audit

    after = alloc.snapshot()
    session.add(AuditEntry(allocation_id=alloc.id, actor=actor, action=action, before=before,
                           after=after, at=utcnow()))
    detail: dict[str, Any] = {"owner": alloc.owner, "status": after["status"]}
    if before is None:
        detail.update({k: after[k] for k in AUDITED_TERMS})
    else:
        detail["changed"] = {k: [before.get(k), after[k]] for k in (*AUDITED_TERMS, "status")
                             if before.get(k) != after[k]}
        if after.get("reason"):
            detail["reason"] = after["reason"]
        if action == "deny" and before.get("status") == AllocationStatus.APPROVED.value:
            action = "revoke"
    audit.record_on_commit(session, f"alloc.{action}", actor=actor,
                           target=f"allocation:{alloc.id}", detail=detail)


def request_allocation(session: Session, owner: str, fields: dict[str, Any]) -> Allocation:
    """File a request for *owner*; every field of :data:`REQUEST_FIELDS` is required."""
    missing = [f for f in REQUEST_FIELDS if f != "datasets" and fields.get(f) in (None, "")]
    if missing:
        raise UsageError(f"missing field(s): {', '.join(missing)}")
    data = clean_request(fields)
    data.setdefault("datasets", [])
    if data["end_date"] < data["start_date"]:
        raise UsageError(f"end_date {data['end_date']} is before start_date "
                         f"{data['start_date']}")
    alloc = Allocation(owner=owner, status=AllocationStatus.PENDING, **data)
    session.add(alloc)
    session.flush()
    _audit(session, alloc, owner, "request", None)
    return alloc


def get_visible(session: Session, alloc_id: int, user: str, is_admin: bool) -> Allocation:
    """The allocation if *user* owns it or is an admin; otherwise :class:`NotFound`."""
    alloc = session.get(Allocation, alloc_id)
    if alloc is None or (alloc.owner != user and not is_admin):
        raise NotFound(f"no allocation {alloc_id} of yours")
    return alloc


def list_visible(session: Session, user: str, is_admin: bool,
                 status: AllocationStatus | None = None, *, limit: int | None = None,
                 offset: int = 0) -> list[Allocation]:
    """The caller's allocations (every allocation for an admin), newest first.

    *limit* and *offset* page through them (no limit by default).
    """
    query = select(Allocation).order_by(Allocation.id.desc())
    if not is_admin:
        query = query.where(Allocation.owner == user)
    if status is not None:
        query = query.where(Allocation.status == status)
    query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def decide(session: Session, alloc_id: int, actor: str, is_admin: bool, *, approve: bool,
           changes: dict[str, Any] | None = None, reason: str | None = None) -> Allocation:
    """Approve (possibly with changed amounts) or deny a request; admins only.

    A decided allocation may be decided again: denying an approved one revokes it (from
    then on nothing can be charged to it), approving a denied one reinstates it. Every
    decision is audited with the state before and after.
    """
    if not is_admin:
        from ..governance import audit

        audit.record(f"alloc.{'approve' if approve else 'deny'}", actor=actor,
                     target=f"allocation:{alloc_id}", outcome="denied",
                     source=session.info.get(audit.SOURCE_KEY),
                     detail={"reason": "not an administrator"})
        raise NotAuthorized(f"{actor} is not an administrator: only admins approve or deny")
    alloc = get_visible(session, alloc_id, actor, True)
    if not approve and not (reason or "").strip():
        raise UsageError("a denial needs a reason")
    if reason is not None and len(reason) > MAX_TEXT["reason"]:
        raise UsageError(f"the {'reason' if not approve else 'note'} is {len(reason)} "
                         f"characters long: at most {MAX_TEXT['reason']}")
    before = alloc.snapshot()
    unknown = set(changes or {}) - set(ADJUSTABLE)
    if unknown:
        raise UsageError(f"cannot change {', '.join(sorted(unknown))}: adjustable fields "
                         f"are {', '.join(ADJUSTABLE)}")
    for name, value in clean_request(changes or {}).items():
        setattr(alloc, name, value)
    if alloc.end_date < alloc.start_date:
        raise UsageError(f"end_date {alloc.end_date} is before start_date {alloc.start_date}")
    alloc.status = AllocationStatus.APPROVED if approve else AllocationStatus.DENIED
    alloc.decided_by = actor
    alloc.decided_at = utcnow()
    alloc.reason = (reason or "").strip() or None
    session.flush()
    _audit(session, alloc, actor, "approve" if approve else "deny", before)
    return alloc


def audit_log(session: Session, alloc_id: int) -> list[AuditEntry]:
    """Every change of one allocation, oldest first."""
    return list(session.scalars(select(AuditEntry).where(AuditEntry.allocation_id == alloc_id)
                                .order_by(AuditEntry.id)))


def used_core_hours(session: Session, alloc_id: int) -> float:
    """Core-hours charged so far to an allocation."""
    total = session.scalar(select(func.coalesce(func.sum(Usage.core_hours), 0.0))
                           .where(Usage.allocation_id == alloc_id))
    return float(total or 0.0)


def active_allocation(session: Session, user: str,
                      day: dt.date | None = None) -> Allocation | None:
    """The project *user*'s work is charged to on *day* when the request names none.

    Their only project in force (as PI or member), else their default project
    (:func:`oceandata.alloc.projects.set_default`); None when they are in none, or in
    several with no default: nothing silently picks one (docs/projects.md).
    """
    from .projects import choose

    return choose(session, user, None, day, strict=False)


@dataclass(frozen=True)
class Grant:
    """What an allocation lets a request use."""

    allocation_id: int
    max_cores: int
    memory_per_job_gb: float
    core_hours_left: float


def check_compute(session: Session, user: str, *, cores: float, memory_gb: float,
                  hours: float, allocation_id: int | None = None) -> Grant:
    """Refuse what the user's allocation cannot cover; return what it grants.

    Parameters
    ----------
    cores, memory_gb, hours
        The request: concurrent cores, memory per job (or per worker), and the longest
        it may run (walltime; the charge is ``cores * hours`` at most).
    allocation_id
        The allocation to charge (one the user leads or belongs to); default their only
        project in force or their default one (:func:`oceandata.alloc.projects.choose`).
    """
    from .projects import choose

    alloc = choose(session, user, allocation_id)
    if alloc is None:
        raise QuotaExceeded(f"{user} has no approved allocation in force today: request "
                            "one (oceandata alloc request) and wait for its approval")
    left = alloc.core_hours - used_core_hours(session, alloc.id)
    if cores > alloc.max_cores:
        raise QuotaExceeded(f"{cores:g} cores asked, allocation {alloc.id} allows at most "
                            f"{alloc.max_cores} at once")
    if memory_gb > alloc.memory_per_job_gb:
        raise QuotaExceeded(f"{memory_gb:g} GB of memory asked, allocation {alloc.id} allows "
                            f"at most {alloc.memory_per_job_gb:g} GB per job")
    if left <= 0:
        raise QuotaExceeded(f"allocation {alloc.id} is exhausted: {alloc.core_hours:g} "
                            f"core-hours, all used")
    if cores * hours > left:
        raise QuotaExceeded(f"{cores:g} cores for {hours:g} h may use {cores * hours:g} "
                            f"core-hours; allocation {alloc.id} has {left:.3g} left")
    return Grant(alloc.id, alloc.max_cores, alloc.memory_per_job_gb, left)


def charge(session: Session, *, user: str, allocation_id: int | None, source: str, ref: str,
           cores: float, seconds: float) -> Usage:
    """Record ``cores * seconds`` of use (in core-hours) against an allocation."""
    if source not in ("gateway", "batch"):
        raise UsageError(f"usage source {source!r}: give gateway or batch")
    row = Usage(allocation_id=allocation_id, user=user, source=source, ref=ref, cores=cores,
                seconds=max(seconds, 0.0), core_hours=cores * max(seconds, 0.0) / 3600.0,
                recorded_at=utcnow())
    session.add(row)
    session.flush()
    return row


#: the usage source of bytes downloaded from the open-data service
DOWNLOADS = "data"
#: the user name of the row totalling every anonymous client's downloads
ANONYMOUS = "(anonymous)"


def usage_summary(session: Session, user: str | None = None, *,
                  downloads: bool = True, storage: bool = True) -> list[dict[str, Any]]:
    """Core-hours per allocation, user and source, then bytes downloaded per user, then
    GB-days of storage per project (all users when *user* is None).

    Parameters
    ----------
    session
        An open session.
    user
        One hub user, or None for everybody (administrators).
    downloads
        Add the rows of :func:`download_summary` (source ``data``) after the compute rows.
    storage
        Add the rows of :func:`storage_rows` (source ``storage``): the projects *user*
        leads or belongs to (every project for None) that have been measured.

    Returns
    -------
    list of dict
        ``allocation_id``, ``user``, ``source`` (``gateway``, ``batch``, ``data`` or
        ``storage``), ``core_hours``, ``records`` (usage records; requests for ``data``;
        days measured for ``storage``) and ``bytes`` (bytes downloaded; the last measured
        size for ``storage``; 0 for compute); storage rows also have ``gb_days``.
    """
    query = (select(Usage.allocation_id, Usage.user, Usage.source,
                    func.sum(Usage.core_hours), func.count())
             .group_by(Usage.allocation_id, Usage.user, Usage.source)
             .order_by(Usage.allocation_id, Usage.user, Usage.source))
    if user is not None:
        query = query.where(Usage.user == user)
    rows = [{"allocation_id": a, "user": u, "source": s, "core_hours": float(h),
             "records": n, "bytes": 0} for a, u, s, h, n in session.execute(query)]
    return (rows + (download_summary(session, user) if downloads else [])
            + (storage_rows(session, user) if storage else []))


#: the usage source of storage held in project workspaces (GB-days)
STORAGE = "storage"
#: the user name of a storage row: GB-days are charged to the project, not to a member
PROJECT = "(project)"


def storage_rows(session: Session, user: str | None = None) -> list[dict[str, Any]]:
    """GB-days charged per project (:mod:`oceandata.alloc.workspaces`), as rows of
    :func:`usage_summary` with source :data:`STORAGE` and user :data:`PROJECT`.

    Parameters
    ----------
    session
        An open session.
    user
        Only the projects this hub user leads or belongs to (in force or not); None:
        every project.

    Returns
    -------
    list of dict
        ``allocation_id``, ``user``, ``source``, ``core_hours`` (0), ``records`` (days
        measured), ``bytes`` (the last measured size) and ``gb_days``.
    """
    from .models import StorageUsage
    from .projects import projects_of
    from .workspaces import storage_summary

    ids = None if user is None else [a.id for a in projects_of(session, user, active=False)]
    if ids is not None and not ids:
        return []
    days = dict(session.execute(select(StorageUsage.allocation_id, func.count())
                                .group_by(StorageUsage.allocation_id)).all())
    return [{"allocation_id": row["allocation_id"], "user": PROJECT, "source": STORAGE,
             "core_hours": 0.0, "records": int(days.get(row["allocation_id"], 0)),
             "bytes": row["bytes"], "gb_days": row["gb_days"]}
            for row in storage_summary(session, ids)]


def download_summary(session: Session, user: str | None = None,
                     since: dt.date | None = None) -> list[dict[str, Any]]:
    """Bytes downloaded from the open-data service per hub user, from its ledger
    (:class:`~oceandata.alloc.models.ServedBytes`).

    Parameters
    ----------
    session
        An open session.
    user
        One hub user; None: every user, and one row :data:`ANONYMOUS` totalling the
        anonymous clients (whose keys are hashes of addresses, of no use here).
    since
        The first UTC day counted (default: all).

    Returns
    -------
    list of dict
        Rows shaped as :func:`usage_summary`'s, with source ``data``, no allocation, no
        core-hours, ``bytes`` and ``records`` (requests), by user name.
    """
    anon = ServedBytes.client.like("anon:%")
    client = case((anon, literal("anon:")), else_=ServedBytes.client)
    query = (select(client, func.sum(ServedBytes.bytes), func.sum(ServedBytes.requests))
             .group_by(client).order_by(client))
    if user is not None:
        query = query.where(ServedBytes.client == f"user:{user}")
    if since is not None:
        query = query.where(ServedBytes.day >= since)
    rows = []
    for key, nbytes, count in session.execute(query):
        kind, _, name = key.partition(":")
        rows.append({"allocation_id": None, "user": name if kind == "user" else ANONYMOUS,
                     "source": DOWNLOADS, "core_hours": 0.0, "records": int(count or 0),
                     "bytes": int(nbytes or 0)})
    return rows
