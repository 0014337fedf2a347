"""The rules of allocations (:mod:`oceandata.alloc.core`) on a SQLite database in tmp.

The schema is made by the alembic migrations (:func:`oceandata.alloc.db.upgrade`), as the
service makes it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from oceandata.alloc import core, db
from oceandata.alloc.models import AllocationStatus
from oceandata.errors import NotAuthorized, UsageError

TODAY = dt.date.today()


def fields(**changes: Any) -> dict[str, Any]:
    """A valid request, running from a month ago for a year, with *changes*."""
    base = {"project_title": "Marine heatwaves off Western Australia", "pi": "Dr. A. Ocean",
            "institution": "National Marine Data Centre",
            "justification": "Detect heatwaves in 40 years of daily SST.",
            "core_hours": 1000, "max_cores": 8, "memory_per_job_gb": 16, "storage_gb": 100,
            "start_date": (TODAY - dt.timedelta(days=30)).isoformat(),
            "end_date": (TODAY + dt.timedelta(days=335)).isoformat(),
            "datasets": "oisst_wa, argo_2902696"}
    base.update(changes)
    return base


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'alloc.sqlite'}"
    db.upgrade(url)
    return url


@pytest.fixture
def session(url: str) -> Iterator[Session]:
    with db.session_scope(url) as s:
        yield s


@pytest.fixture
def approved(session: Session) -> Callable[..., int]:
    """``approved(owner, **fields) -> id`` of an approved allocation."""
    def make(owner: str = "alice", **changes: Any) -> int:
        alloc = core.request_allocation(session, owner, fields(**changes))
        core.decide(session, alloc.id, "admin", True, approve=True)
        return alloc.id
    return make


# --- requests -------------------------------------------------------------------------


def test_a_valid_request_is_pending_and_normalised(session: Session) -> None:
    alloc = core.request_allocation(session, "alice", fields(project_title="  MHW  "))
    assert alloc.status == AllocationStatus.PENDING
    assert alloc.project_title == "MHW"
    assert alloc.core_hours == 1000.0 and alloc.max_cores == 8
    assert alloc.datasets == ["argo_2902696", "oisst_wa"]
    assert isinstance(alloc.start_date, dt.date)


@pytest.mark.parametrize(("changes", "message"), [
    ({"core_hours": 0}, "core_hours must be more than 0"),
    ({"core_hours": -5}, "core_hours must be more than 0"),
    ({"max_cores": "many"}, "max_cores 'many' is not a number"),
    ({"memory_per_job_gb": "x"}, "memory_per_job_gb 'x' is not a number"),
    ({"storage_gb": -1}, "storage_gb must be more than 0"),
    ({"start_date": "31/12/2026"}, "start_date '31/12/2026' is not a date"),
    ({"project_title": "   "}, "project_title is empty"),
    ({"pi": ""}, "missing field(s): pi"),
    ({"institution": None, "justification": None},
     "missing field(s): institution, justification"),
    ({"start_date": "2027-01-10", "end_date": "2027-01-01"},
     "end_date 2027-01-01 is before start_date 2027-01-10"),
])
def test_invalid_requests_are_refused(session: Session, changes: dict[str, Any],
                                      message: str) -> None:
    with pytest.raises(UsageError) as info:
        core.request_allocation(session, "alice", fields(**changes))
    assert message in str(info.value)
    assert core.list_visible(session, "alice", False) == []


def test_every_user_sees_only_their_own(session: Session) -> None:
    a = core.request_allocation(session, "alice", fields())
    b = core.request_allocation(session, "bob", fields())
    assert [x.id for x in core.list_visible(session, "alice", False)] == [a.id]
    assert [x.id for x in core.list_visible(session, "admin", True)] == [b.id, a.id]
    with pytest.raises(core.NotFound):
        core.get_visible(session, a.id, "bob", False)
    assert core.get_visible(session, a.id, "admin", True).id == a.id
    with pytest.raises(core.NotFound):
        core.get_visible(session, 999, "admin", True)


# --- decisions and audit --------------------------------------------------------------


def test_approve_with_changes_is_audited_before_and_after(session: Session) -> None:
    alloc = core.request_allocation(session, "alice", fields())
    core.decide(session, alloc.id, "root", True, approve=True,
                changes={"core_hours": "400", "max_cores": 4}, reason="trimmed to fit")
    assert alloc.status == AllocationStatus.APPROVED
    assert (alloc.core_hours, alloc.max_cores) == (400.0, 4)
    assert alloc.decided_by == "root" and alloc.decided_at is not None
    assert alloc.reason == "trimmed to fit"
    log = core.audit_log(session, alloc.id)
    assert [e.action for e in log] == ["request", "approve"]
    assert log[0].actor == "alice" and log[0].before is None
    assert log[0].after["status"] == "pending"
    entry = log[1]
    assert entry.actor == "root"
    assert entry.before["core_hours"] == 1000.0 and entry.after["core_hours"] == 400.0
    assert entry.before["max_cores"] == 8 and entry.after["max_cores"] == 4
    assert entry.before["status"] == "pending" and entry.after["status"] == "approved"
    assert entry.before["memory_per_job_gb"] == entry.after["memory_per_job_gb"] == 16.0


def test_approve_refuses_bad_or_unknown_changes(session: Session) -> None:
    alloc = core.request_allocation(session, "alice", fields())
    with pytest.raises(UsageError, match="cannot change owner, project_title"):
        core.decide(session, alloc.id, "root", True, approve=True,
                    changes={"project_title": "x", "owner": "mallory"})
    with pytest.raises(UsageError, match="core_hours must be more than 0"):
        core.decide(session, alloc.id, "root", True, approve=True, changes={"core_hours": 0})
    with pytest.raises(UsageError, match="is before start_date"):
        core.decide(session, alloc.id, "root", True, approve=True,
                    changes={"end_date": (TODAY - dt.timedelta(days=365)).isoformat()})


def test_deny_needs_a_reason(session: Session) -> None:
    alloc = core.request_allocation(session, "alice", fields())
    for reason in (None, "", "   "):
        with pytest.raises(UsageError, match="a denial needs a reason"):
            core.decide(session, alloc.id, "root", True, approve=False, reason=reason)
    assert alloc.status == AllocationStatus.PENDING
    core.decide(session, alloc.id, "root", True, approve=False, reason="out of scope")
    assert alloc.status == AllocationStatus.DENIED and alloc.reason == "out of scope"
    assert core.audit_log(session, alloc.id)[-1].action == "deny"


def test_a_non_admin_cannot_decide(session: Session) -> None:
    alloc = core.request_allocation(session, "alice", fields())
    for approve in (True, False):
        with pytest.raises(NotAuthorized, match="alice is not an administrator"):
            core.decide(session, alloc.id, "alice", False, approve=approve, reason="mine")
    assert alloc.status == AllocationStatus.PENDING
    assert [e.action for e in core.audit_log(session, alloc.id)] == ["request"]


# --- enforcement ----------------------------------------------------------------------


def test_check_compute_grants_what_the_allocation_covers(session: Session,
                                                          approved: Callable[..., int]) -> None:
    alloc_id = approved()
    grant = core.check_compute(session, "alice", cores=8, memory_gb=16, hours=10)
    assert grant == core.Grant(alloc_id, 8, 16.0, 1000.0)


def test_no_allocation_is_refused(session: Session) -> None:
    with pytest.raises(core.QuotaExceeded, match="alice has no approved allocation"):
        core.check_compute(session, "alice", cores=1, memory_gb=1, hours=1)
    pending = core.request_allocation(session, "alice", fields())
    with pytest.raises(core.QuotaExceeded, match="has no approved allocation"):
        core.check_compute(session, "alice", cores=1, memory_gb=1, hours=1)
    with pytest.raises(core.QuotaExceeded, match=f"allocation {pending.id} is pending"):
        core.check_compute(session, "alice", cores=1, memory_gb=1, hours=1,
                           allocation_id=pending.id)


def test_another_users_allocation_cannot_be_charged(session: Session,
                                                    approved: Callable[..., int]) -> None:
    alloc_id = approved("alice")
    with pytest.raises(core.NotFound):
        core.check_compute(session, "bob", cores=1, memory_gb=1, hours=1,
                           allocation_id=alloc_id)


def test_expired_or_future_allocation_is_refused(session: Session,
                                                 approved: Callable[..., int]) -> None:
    old = approved(start_date="2020-01-01", end_date=(TODAY - dt.timedelta(days=1)).isoformat())
    with pytest.raises(core.QuotaExceeded, match="no approved allocation in force"):
        core.check_compute(session, "alice", cores=1, memory_gb=1, hours=1)
    with pytest.raises(core.QuotaExceeded, match=f"allocation {old} runs 2020-01-01 to"):
        core.check_compute(session, "alice", cores=1, memory_gb=1, hours=1,
                           allocation_id=old)
    future = approved("bob", start_date=(TODAY + dt.timedelta(days=10)).isoformat(),
                      end_date=(TODAY + dt.timedelta(days=100)).isoformat())
    with pytest.raises(core.QuotaExceeded, match=f"allocation {future} runs"):
        core.check_compute(session, "bob", cores=1, memory_gb=1, hours=1,
                           allocation_id=future)


def test_too_many_cores_or_too_much_memory_is_refused(session: Session,
                                                      approved: Callable[..., int]) -> None:
    alloc_id = approved()
    with pytest.raises(core.QuotaExceeded,
                       match=f"9 cores asked, allocation {alloc_id} allows at most 8"):
        core.check_compute(session, "alice", cores=9, memory_gb=1, hours=1)
    with pytest.raises(core.QuotaExceeded, match=r"32 GB of memory asked.* at most 16 GB"):
        core.check_compute(session, "alice", cores=1, memory_gb=32, hours=1)


def test_cores_times_hours_over_what_is_left_is_refused(session: Session,
                                                        approved: Callable[..., int]) -> None:
    alloc_id = approved()
    core.charge(session, user="alice", allocation_id=alloc_id, source="gateway", ref="c1",
                cores=4, seconds=200 * 3600)  # 800 of 1000 core-hours
    core.check_compute(session, "alice", cores=4, memory_gb=1, hours=50)  # 200: fits
    with pytest.raises(core.QuotaExceeded,
                       match=r"8 cores for 30 h may use 240 core-hours; .* has 200 left"):
        core.check_compute(session, "alice", cores=8, memory_gb=1, hours=30)


def test_an_exhausted_allocation_is_refused(session: Session,
                                            approved: Callable[..., int]) -> None:
    alloc_id = approved(core_hours=10)
    core.charge(session, user="alice", allocation_id=alloc_id, source="batch", ref="job1",
                cores=2, seconds=5 * 3600)
    with pytest.raises(core.QuotaExceeded, match=f"allocation {alloc_id} is exhausted"):
        core.check_compute(session, "alice", cores=1, memory_gb=1, hours=0.01)


def test_charge_and_usage_summary_sum_core_hours(session: Session,
                                                 approved: Callable[..., int]) -> None:
    a = approved("alice")
    b = approved("bob")
    row = core.charge(session, user="alice", allocation_id=a, source="gateway", ref="c1",
                      cores=4, seconds=1800)
    assert row.core_hours == pytest.approx(2.0)
    core.charge(session, user="alice", allocation_id=a, source="gateway", ref="c2",
                cores=2, seconds=3600)
    core.charge(session, user="alice", allocation_id=a, source="batch", ref="j1",
                cores=1, seconds=7200)
    core.charge(session, user="bob", allocation_id=b, source="batch", ref="j2",
                cores=3, seconds=3600)
    # a negative duration (clock skew) charges nothing
    assert core.charge(session, user="bob", allocation_id=b, source="batch", ref="j3",
                       cores=3, seconds=-5).core_hours == 0.0
    with pytest.raises(UsageError, match="usage source 'cloud'"):
        core.charge(session, user="bob", allocation_id=b, source="cloud", ref="x", cores=1,
                    seconds=1)
    assert core.used_core_hours(session, a) == pytest.approx(6.0)
    assert core.used_core_hours(session, b) == pytest.approx(3.0)
    everyone = core.usage_summary(session)
    assert [(r["allocation_id"], r["user"], r["source"], round(r["core_hours"], 9),
             r["records"]) for r in everyone] == [
        (a, "alice", "batch", 2.0, 1), (a, "alice", "gateway", 4.0, 2),
        (b, "bob", "batch", 3.0, 2)]
    assert {r["user"] for r in core.usage_summary(session, "alice")} == {"alice"}
    assert sum(r["core_hours"] for r in core.usage_summary(session, "bob")) == pytest.approx(3)
    grant = core.check_compute(session, "alice", cores=1, memory_gb=1, hours=1)
    assert grant.core_hours_left == pytest.approx(994.0)


def test_the_service_helpers_render_usage(session: Session,
                                          approved: Callable[..., int]) -> None:
    """CSV and SVG chart geometry of :mod:`oceandata.alloc.service` from real rows."""
    from oceandata.alloc.service import usage_chart, usage_csv

    a = approved("alice")
    core.charge(session, user="alice", allocation_id=a, source="gateway", ref="c1",
                cores=4, seconds=3600)
    core.charge(session, user="alice", allocation_id=a, source="batch", ref="j1",
                cores=4, seconds=3600)
    core.charge(session, user="bob", allocation_id=None, source="batch", ref="j2",
                cores=2, seconds=3600)
    rows = core.usage_summary(session)
    text = usage_csv(rows)
    # usage without an allocation (NULL) sorts first in SQLite, last in PostgreSQL
    assert sorted(text.splitlines()[1:]) == sorted([f"{a},alice,batch,4,1,0,0",
                                                    f"{a},alice,gateway,4,1,0,0",
                                                    ",bob,batch,2,1,0,0"])
    assert text.splitlines()[0] == "allocation_id,user,source,core_hours,records,bytes,gb_days"
    chart = usage_chart(rows, width=640)
    assert [b["label"] for b in chart["bars"]] == [f"#{a} alice", "(none) bob"]
    assert [b["value"] for b in chart["bars"]] == [8.0, 2.0]
    longest = 640 - chart["label_width"] - 90
    assert chart["bars"][0]["length"] == longest
    assert chart["bars"][1]["length"] == pytest.approx(longest / 4, abs=0.1)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("core_hours", "nan", "not a finite number"),
    ("storage_gb", float("inf"), "not a finite number"),
    ("max_cores", 4.7, "whole number"),
])
def test_non_finite_and_fractional_amounts_are_refused(field: str, value: object,
                                                       message: str) -> None:
    with pytest.raises(UsageError, match=message):
        core.clean_request({field: value})


def test_whole_number_strings_are_accepted() -> None:
    assert core.clean_request({"max_cores": "4.0"})["max_cores"] == 4
