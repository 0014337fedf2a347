"""Members and the choice of a project (oceandata.alloc.projects) on an in-process SQLite
database upgraded by the real migrations: two projects and an outsider."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest

from oceandata.alloc import core, db, projects
from oceandata.alloc.core import NotFound, QuotaExceeded
from oceandata.alloc.projects import AmbiguousProject
from oceandata.errors import NotAuthorized, UsageError
from oceandata.governance import audit

TODAY = dt.date.today()
ADMIN = "ops"


@pytest.fixture()
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'alloc.sqlite'}"
    db.upgrade(url)
    return url


def _project(url: str, owner: str, *, approve: bool = True, days: int = 30,
             datasets: tuple[str, ...] = ()) -> int:
    body = {"project_title": f"project of {owner}", "pi": owner, "institution": "x",
            "justification": "x", "core_hours": 100, "max_cores": 8,
            "memory_per_job_gb": 16, "storage_gb": 10,
            "start_date": (TODAY - dt.timedelta(days=1)).isoformat(),
            "end_date": (TODAY + dt.timedelta(days=days)).isoformat(),
            "datasets": list(datasets)}
    with db.session_scope(url) as s:
        alloc = core.request_allocation(s, owner, body)
        if approve:
            core.decide(s, alloc.id, ADMIN, True, approve=True)
        return alloc.id


def _names() -> tuple[str, str, str]:
    tag = uuid.uuid4().hex[:6]
    return f"pi-{tag}", f"mem-{tag}", f"out-{tag}"


def test_the_pi_adds_members_and_nobody_else_does(url: str) -> None:
    pi, member, outsider = _names()
    p1 = _project(url, pi)
    with db.session_scope(url) as s:
        projects.add_member(s, p1, pi, False, member)
        projects.add_member(s, p1, pi, False, member)  # idempotent
        projects.add_member(s, p1, pi, False, pi)  # the PI is one already: nothing added
        alloc = s.get(core.Allocation, p1)
        assert [(m.user, m.role.value, m.added_by) for m in projects.members(s, alloc)] == [
            (pi, "pi", None), (member, "member", pi)]
        assert projects.is_member(s, alloc, member)
        assert not projects.is_member(s, alloc, outsider)
        assert projects.get_member_project(s, p1, member).id == p1
    with db.session_scope(url) as s:
        # a member cannot add; an outsider learns nothing (404, not 403)
        with pytest.raises(NotAuthorized, match="PI"):
            projects.add_member(s, p1, member, False, outsider)
        with pytest.raises(NotFound, match=f"no project {p1} of yours"):
            projects.add_member(s, p1, outsider, False, outsider)
        with pytest.raises(NotFound):
            projects.get_member_project(s, p1, outsider)
        with pytest.raises(NotFound):
            projects.add_member(s, 999_999, pi, False, member)
        # a name that is not a hub name is one line
        for bad in ("Bob", "a b", "x" * 23, "../etc", ""):
            with pytest.raises(UsageError, match="not a hub user name"):
                projects.add_member(s, p1, pi, False, bad)
        # an admin may add to any project
        projects.add_member(s, p1, ADMIN, True, outsider)
        assert projects.is_member(s, s.get(core.Allocation, p1), outsider)
    # audited once per change, as the actor, with the member
    # (the trail is the session's: other tests' databases have an allocation 1 too)
    records = [r for r in audit.read(action="project.member_add")
               if r["target"] == f"allocation:{p1}"
               and r["detail"]["member"] in (member, outsider)]
    assert [(r["actor"], r["detail"]["member"]) for r in records] == [
        (pi, member), (ADMIN, outsider)]


def test_members_are_added_only_to_approved_projects(url: str) -> None:
    pi, member, _ = _names()
    pending = _project(url, pi, approve=False)
    with db.session_scope(url) as s, pytest.raises(UsageError, match="pending"):
        projects.add_member(s, pending, pi, False, member)
    with db.session_scope(url) as s:
        assert projects.members(s, s.get(core.Allocation, pending))[1:] == []


def test_a_user_in_two_projects_must_choose(url: str) -> None:
    pi1, member, outsider = _names()
    pi2 = f"pj-{uuid.uuid4().hex[:6]}"
    p1 = _project(url, pi1, datasets=("argo_a",))
    p2 = _project(url, pi2, datasets=("argo_b",))
    with db.session_scope(url) as s:
        # one project: it is the one
        projects.add_member(s, p1, pi1, False, member)
        assert projects.choose(s, member).id == p1
        projects.add_member(s, p2, pi2, False, member)
    with db.session_scope(url) as s:
        assert [a.id for a in projects.projects_of(s, member)] == [p2, p1]
        assert projects.granted_datasets(s, member) == {"argo_a", "argo_b"}
        # two: refused with one line naming both, unless named
        with pytest.raises(AmbiguousProject) as err:
            projects.choose(s, member)
        assert "\n" not in str(err.value) and f"{p1}, {p2}" in str(err.value)
        assert "oceandata alloc default" in str(err.value)
        assert projects.choose(s, member, strict=False) is None
        assert core.active_allocation(s, member) is None  # nothing picks the latest
        with pytest.raises(AmbiguousProject):
            core.check_compute(s, member, cores=1, memory_gb=1, hours=1)
        assert projects.choose(s, member, p1).id == p1
        assert core.check_compute(s, member, cores=1, memory_gb=1, hours=1,
                                  allocation_id=p2).allocation_id == p2
        # an outsider cannot charge either project, nor learn whether it exists
        for alloc_id in (p1, p2, 999_999):
            with pytest.raises(NotFound, match="of yours"):
                projects.choose(s, outsider, alloc_id)
        assert projects.choose(s, outsider) is None
        assert projects.granted_datasets(s, outsider) == set()


def test_the_default_settles_the_choice_and_must_be_a_project_of_the_user(url: str) -> None:
    pi1, member, outsider = _names()
    pi2 = f"pj-{uuid.uuid4().hex[:6]}"
    p1, p2 = _project(url, pi1), _project(url, pi2)
    pending = _project(url, pi1, approve=False)
    with db.session_scope(url) as s:
        projects.add_member(s, p1, pi1, False, member)
        projects.add_member(s, p2, pi2, False, member)
    with db.session_scope(url) as s:
        projects.set_default(s, member, p1)
    with db.session_scope(url) as s:
        assert projects.default_allocation(s, member) == p1
        assert projects.choose(s, member).id == p1
        assert core.active_allocation(s, member).id == p1
        assert projects.choose(s, member, p2).id == p2  # naming one beats the default
        with pytest.raises(NotFound):
            projects.set_default(s, outsider, p1)
        with pytest.raises(UsageError, match="pending"):
            projects.set_default(s, pi1, pending)
    with db.session_scope(url) as s:
        projects.set_default(s, member, None)
    with db.session_scope(url) as s:
        assert projects.default_allocation(s, member) is None
        with pytest.raises(AmbiguousProject):
            projects.choose(s, member)


def test_removal_takes_everything_away(url: str) -> None:
    pi1, member, outsider = _names()
    pi2 = f"pj-{uuid.uuid4().hex[:6]}"
    p1, p2 = _project(url, pi1, datasets=("argo_a",)), _project(url, pi2)
    with db.session_scope(url) as s:
        projects.add_member(s, p1, pi1, False, member)
        projects.add_member(s, p2, pi2, False, member)
        projects.set_default(s, member, p1)
    with db.session_scope(url) as s:
        with pytest.raises(NotAuthorized):
            projects.remove_member(s, p1, member, False, member)  # a member removes nobody
        with pytest.raises(NotFound):
            projects.remove_member(s, p1, outsider, False, member)
        with pytest.raises(UsageError, match="PI"):
            projects.remove_member(s, p1, pi1, False, pi1)
        with pytest.raises(NotFound, match="not a member"):
            projects.remove_member(s, p1, pi1, False, outsider)
    with db.session_scope(url) as s:
        projects.remove_member(s, p1, pi1, False, member)
    with db.session_scope(url) as s:
        assert projects.default_allocation(s, member) is None  # the default went with it
        assert [a.id for a in projects.projects_of(s, member)] == [p2]
        assert projects.choose(s, member).id == p2
        assert projects.granted_datasets(s, member) == set()
        with pytest.raises(NotFound):
            projects.choose(s, member, p1)
        with pytest.raises(NotFound):
            projects.get_member_project(s, p1, member)
    records = [r for r in audit.read(action="project.member_remove")
               if r["target"] == f"allocation:{p1}" and r["detail"]["member"] == member]
    assert [(r["actor"], r["detail"]["member"]) for r in records] == [(pi1, member)]


def test_a_revoked_or_ended_project_charges_nothing_and_still_loses_members(url: str) -> None:
    pi, member, _ = _names()
    p1 = _project(url, pi)
    with db.session_scope(url) as s:
        projects.add_member(s, p1, pi, False, member)
        core.decide(s, p1, ADMIN, True, approve=False, reason="revoked")
    with db.session_scope(url) as s:
        assert projects.choose(s, member) is None
        with pytest.raises(QuotaExceeded, match="denied"):
            projects.choose(s, member, p1)
        assert projects.projects_of(s, member, active=False)[0].id == p1
        projects.remove_member(s, p1, pi, False, member)  # removing is always allowed
    with db.session_scope(url) as s:
        assert projects.projects_of(s, member, active=False) == []
        later = TODAY + dt.timedelta(days=400)
        p2 = _project(url, pi)
        with pytest.raises(QuotaExceeded, match="runs"):
            projects.choose(s, pi, p2, later)


def test_the_ledger_keeps_the_members_name(url: str) -> None:
    pi, member, _ = _names()
    p1 = _project(url, pi)
    with db.session_scope(url) as s:
        projects.add_member(s, p1, pi, False, member)
        grant = core.check_compute(s, member, cores=2, memory_gb=1, hours=1)
        core.charge(s, user=member, allocation_id=grant.allocation_id, source="batch",
                    ref="job-1", cores=2, seconds=3600)
        core.charge(s, user=pi, allocation_id=p1, source="gateway", ref="c-1", cores=1,
                    seconds=3600)
    with db.session_scope(url) as s:
        rows = [r for r in core.usage_summary(s, downloads=False) if r["allocation_id"] == p1]
        assert {(r["user"], r["core_hours"]) for r in rows} == {(member, 2.0), (pi, 1.0)}
        assert core.used_core_hours(s, p1) == 3.0


def test_an_add_is_undone_with_the_transaction_that_failed_after_it(url: str) -> None:
    """The member change and what follows it (the workspace's Unix group) are one
    transaction: when the request fails after the add, the member is not added."""
    pi, member, _ = _names()
    p1 = _project(url, pi)
    with pytest.raises(RuntimeError), db.session_scope(url) as s:
        projects.add_member(s, p1, pi, False, member)
        raise RuntimeError("the workspace's group could not follow")
    with db.session_scope(url) as s:
        alloc = s.get(core.Allocation, p1)
        assert [m.user for m in projects.members(s, alloc)] == [pi]
