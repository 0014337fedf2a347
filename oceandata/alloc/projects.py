"""The rules of projects: members and the choice of a project.

An approved allocation *is* a project (docs/projects.md). Its owner is the PI; the PI
(or an administrator) adds and removes members by hub name. Members share the project's
compute, storage and dataset grants; the ledger keeps usage per member.

A user may belong to several projects in force at once. Nothing picks one silently:
:func:`choose` takes the project named by the request (gateway cluster option, job
``--allocation``), else the user's only project in force, else the default from their
settings (:func:`set_default`), and otherwise refuses with one line naming the choices.

Each project's workspace, its quota and its storage charge are in
:mod:`oceandata.alloc.workspaces`.

Like :mod:`oceandata.alloc.core`, these functions take an open session; callers own the
transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ..errors import NotAuthorized, UsageError
from .core import NotFound, QuotaExceeded
from .models import (
    Allocation,
    AllocationStatus,
    MemberRole,
    ProjectMember,
    UserSetting,
    utcnow,
)

__all__ = ["AmbiguousProject", "Member", "add_member", "choose", "default_allocation",
           "get_member_project", "granted_datasets", "is_member", "members", "projects_of",
           "remove_member", "set_default"]


class AmbiguousProject(UsageError):
    """The user is in several projects in force and named none (nor has a default)."""


def _hub_name(name: str) -> str:
    from ..hub.accounts import HUB_NAME

    name = str(name).strip()
    if not HUB_NAME.match(name):
        raise UsageError(f"{name[:40]!r} is not a hub user name: lower-case letters, digits, "
                         "'-' and '_', starting with a letter, at most 22 characters")
    return name


@dataclass(frozen=True)
class Member:
    """One person of a project."""

    user: str
    role: MemberRole
    added_by: str | None
    added_at: dt.datetime | None


def is_member(session: Session, alloc: Allocation, user: str) -> bool:
    """Whether *user* is the project's PI (its owner) or one of its members."""
    if alloc.owner == user:
        return True
    return session.scalar(select(func.count()).select_from(ProjectMember).where(
        ProjectMember.allocation_id == alloc.id, ProjectMember.user == user)) > 0


def members(session: Session, alloc: Allocation) -> list[Member]:
    """The PI first, then the members in the order they were added."""
    rows = session.scalars(select(ProjectMember).where(ProjectMember.allocation_id == alloc.id)
                           .order_by(ProjectMember.id))
    return [Member(alloc.owner, MemberRole.PI, None, alloc.created_at),
            *(Member(r.user, MemberRole.MEMBER, r.added_by, r.added_at) for r in rows)]


def get_member_project(session: Session, alloc_id: int, user: str,
                       is_admin: bool = False) -> Allocation:
    """The allocation if *user* is its PI or a member (or an admin); else :class:`NotFound`
    (a non-member learns nothing, not even that it exists)."""
    alloc = session.get(Allocation, alloc_id)
    if alloc is None or not (is_admin or is_member(session, alloc, user)):
        raise NotFound(f"no project {alloc_id} of yours")
    return alloc


def _audit(session: Session, alloc: Allocation, actor: str, action: str, user: str) -> None:
    from ..governance import audit

    audit.record_on_commit(session, f"project.{action}", actor=actor,
                           target=f"allocation:{alloc.id}", detail={"member": user})


def _may_manage(session: Session, alloc_id: int, actor: str, is_admin: bool, *,
                adding: bool) -> Allocation:
    alloc = get_member_project(session, alloc_id, actor, is_admin)
    if not is_admin and alloc.owner != actor:
        raise NotAuthorized(f"only project {alloc.id}'s PI ({alloc.owner}) or an "
                            "administrator adds or removes members")
    # removing takes access away: allowed whatever the state (a revoked project too)
    if adding and alloc.status != AllocationStatus.APPROVED:
        raise UsageError(f"allocation {alloc.id} is {alloc.status.value}: members are "
                         "added to approved projects")
    return alloc


def add_member(session: Session, alloc_id: int, actor: str, is_admin: bool,
               user: str) -> Allocation:
    """Add *user* to project *alloc_id*; the PI or an admin only. Idempotent."""
    user = _hub_name(user)
    alloc = _may_manage(session, alloc_id, actor, is_admin, adding=True)
    if not is_member(session, alloc, user):
        # a concurrent add of the same user makes one row: the insert does nothing on the
        # unique (allocation, user) instead of failing, within the caller's transaction (a
        # savepoint would be committed at once by SQLite's driver, whatever came after)
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        added = session.execute(
            insert(ProjectMember).values(allocation_id=alloc.id, user=user, added_by=actor,
                                         added_at=utcnow())
            .on_conflict_do_nothing(index_elements=["allocation_id", "user"]))
        if added.rowcount:
            _audit(session, alloc, actor, "member_add", user)
    return alloc


def remove_member(session: Session, alloc_id: int, actor: str, is_admin: bool,
                  user: str) -> Allocation:
    """Remove *user* from project *alloc_id*; the PI or an admin only. The PI stays."""
    user = _hub_name(user)
    alloc = _may_manage(session, alloc_id, actor, is_admin, adding=False)
    if user == alloc.owner:
        raise UsageError(f"{user} is project {alloc.id}'s PI and cannot be removed")
    row = session.scalars(select(ProjectMember).where(ProjectMember.allocation_id == alloc.id,
                                                      ProjectMember.user == user)).first()
    if row is None:
        raise NotFound(f"{user} is not a member of project {alloc.id}")
    session.delete(row)
    session.flush()
    settings = session.get(UserSetting, user)
    if settings is not None and settings.default_allocation_id == alloc.id:
        settings.default_allocation_id = None
    _audit(session, alloc, actor, "member_remove", user)
    return alloc


def projects_of(session: Session, user: str, day: dt.date | None = None, *,
                active: bool = True) -> list[Allocation]:
    """The projects *user* leads or belongs to, newest first.

    Parameters
    ----------
    active
        Only approved ones in force on *day* (default today); False: every allocation the
        user owns or is a member of, whatever its state.
    """
    member_of = select(ProjectMember.allocation_id).where(ProjectMember.user == user)
    query = (select(Allocation)
             .where(or_(Allocation.owner == user, Allocation.id.in_(member_of)))
             .order_by(Allocation.id.desc()))
    if active:
        day = day or dt.date.today()
        query = query.where(Allocation.status == AllocationStatus.APPROVED,
                            Allocation.start_date <= day, Allocation.end_date >= day)
    return list(session.scalars(query))


def _settings_row(session: Session, user: str) -> UserSetting:
    """*user*'s settings row, added when they have none yet."""
    settings = session.get(UserSetting, user)
    if settings is None:
        settings = UserSetting(user=user)
        session.add(settings)
    return settings


def default_allocation(session: Session, user: str) -> int | None:
    """The project *user* chose as their default in their settings, if any."""
    settings = session.get(UserSetting, user)
    return settings.default_allocation_id if settings is not None else None


def set_default(session: Session, user: str, alloc_id: int | None) -> None:
    """Make project *alloc_id* (an approved one the user belongs to) their default; None
    clears it."""
    if alloc_id is not None:
        alloc = get_member_project(session, alloc_id, user)
        if alloc.status != AllocationStatus.APPROVED:
            raise UsageError(f"allocation {alloc.id} is {alloc.status.value}: only an "
                             "approved project can be the default")
    _save_settings(session, user, default_allocation_id=alloc_id)


def language_of(session: Session, user: str) -> str | None:
    """The platform language *user* saved in their settings (``"en"``, ``"zh"``), if any
    (:mod:`oceandata.i18n`: pages, JupyterLab and the command line in their servers)."""
    settings = session.get(UserSetting, user)
    return settings.language if settings is not None else None


def set_language(session: Session, user: str, lang: str | None) -> None:
    """Save *lang* (one of :data:`oceandata.i18n.LANGUAGES`) as *user*'s language; None
    clears it (the browser's language is used).

    Raises
    ------
    UsageError
        For any other language.
    """
    from ..i18n import LANGUAGES

    if lang is not None and lang not in LANGUAGES:
        raise UsageError(f"language {str(lang)[:20]!r}: give one of {', '.join(LANGUAGES)} "
                         "or null")
    _save_settings(session, user, language=lang)


def _save_settings(session: Session, user: str, **values: Any) -> None:
    """Set *values* on *user*'s settings row (made when missing), stamped now."""
    settings = _settings_row(session, user)
    for name, value in values.items():
        setattr(settings, name, value)
    settings.updated_at = utcnow()
    session.flush()


def choose(session: Session, user: str, allocation_id: int | None = None,
           day: dt.date | None = None, *, strict: bool = True) -> Allocation | None:
    """The project a request of *user* is charged to.

    Parameters
    ----------
    allocation_id
        The project the request names; it must be one the user belongs to, approved and
        in force on *day*.
    day
        Default today.
    strict
        When the user is in several projects in force, names none and has no default:
        raise :class:`AmbiguousProject` (True) or return None (False: callers that only
        charge, never grant).

    Returns
    -------
    Allocation or None
        None when the user is in no project in force (the caller decides whether that
        is allowed).
    """
    day = day or dt.date.today()
    if allocation_id is not None:
        alloc = session.get(Allocation, allocation_id)
        if alloc is None or not is_member(session, alloc, user):
            raise NotFound(f"no allocation {allocation_id} of yours")
        if alloc.status != AllocationStatus.APPROVED:
            raise QuotaExceeded(f"allocation {alloc.id} is {alloc.status.value}, not approved")
        if not alloc.active_on(day):
            raise QuotaExceeded(f"allocation {alloc.id} runs {alloc.start_date} to "
                                f"{alloc.end_date}; today is {day}")
        return alloc
    found = projects_of(session, user, day)
    if len(found) <= 1:
        return found[0] if found else None
    default = default_allocation(session, user)
    for alloc in found:
        if alloc.id == default:
            return alloc
    if not strict:
        return None
    ids = ", ".join(str(a.id) for a in sorted(found, key=lambda a: a.id))
    raise AmbiguousProject(f"{user} is in projects {ids}, all in force today: name one "
                           "(--allocation, the cluster option 'allocation') or set a default "
                           "(oceandata alloc default ID)")


def granted_datasets(session: Session, user: str, day: dt.date | None = None) -> set[str]:
    """Datasets granted by every project *user* belongs to that is in force on *day*."""
    return {name for alloc in projects_of(session, user, day) for name in alloc.datasets or ()}
