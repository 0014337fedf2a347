"""The allocations database on a real PostgreSQL: migrations, rules, concurrent charges."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import inspect

from oceandata.alloc import core, db
from tests.pg_helpers import PostgresUnavailable, running_postgres, skip_or_fail

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    try:
        with running_postgres() as pg:
            yield pg.url_for(pg.create_database("alloc"), scheme="postgresql+psycopg2")
    except PostgresUnavailable as exc:
        skip_or_fail(f"PostgreSQL cannot be started here: {exc}")


def _body(**changes: object) -> dict:
    today = dt.date.today()
    body = {"project_title": "Shelf seas", "pi": "Dr. P", "institution": "Partner U",
            "justification": "Tides.", "core_hours": 10, "max_cores": 4,
            "memory_per_job_gb": 8, "storage_gb": 10,
            "start_date": today - dt.timedelta(days=1),
            "end_date": today + dt.timedelta(days=30), "datasets": ["argo_2902696"]}
    body.update(changes)
    return body


def test_migrations_create_the_schema_on_postgresql(url: str) -> None:
    db.upgrade(url)
    db.upgrade(url)  # idempotent
    tables = set(inspect(db.engine_for(url)).get_table_names())
    assert {"allocations", "allocation_audit", "usage", "jobs", "alembic_version"} <= tables


def test_rules_and_concurrent_charges_on_postgresql(url: str) -> None:
    db.upgrade(url)
    with db.session_scope(url) as s:
        alloc = core.request_allocation(s, "pia", _body())
        core.decide(s, alloc.id, "admin", True, approve=True, changes={"core_hours": 2})
        alloc_id = alloc.id
    with db.session_scope(url) as s:
        assert [e.action for e in core.audit_log(s, alloc_id)] == ["request", "approve"]
        with pytest.raises(core.QuotaExceeded, match="allows at most 4"):
            core.check_compute(s, "pia", cores=5, memory_gb=1, hours=0.1)

    def charge_many() -> None:
        for _ in range(20):
            with db.session_scope(url) as s:
                core.charge(s, user="pia", allocation_id=alloc_id, source="batch",
                            ref="job", cores=1, seconds=36)  # 0.01 core-hours each

    threads = [threading.Thread(target=charge_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with db.session_scope(url) as s:
        assert core.used_core_hours(s, alloc_id) == pytest.approx(80 * 0.01)
        rows = core.usage_summary(s, "pia")
        assert rows == [{"allocation_id": alloc_id, "user": "pia", "source": "batch",
                         "core_hours": pytest.approx(0.8), "records": 80, "bytes": 0}]
        # 2 core-hours granted, 0.8 used: 1.3 more are refused, 1.1 fit
        with pytest.raises(core.QuotaExceeded, match="core-hours"):
            core.check_compute(s, "pia", cores=1, memory_gb=1, hours=1.3)
        assert core.check_compute(s, "pia", cores=1, memory_gb=1, hours=1.1).allocation_id \
            == alloc_id




def test_members_and_storage_on_postgresql(url: str) -> None:
    """Projects on PostgreSQL: a member added twice (at once) is one row, an add undone
    with its failed transaction, storage recorded as GB-days."""
    from oceandata.alloc import projects, workspaces

    db.upgrade(url)
    with db.session_scope(url) as s:
        alloc = core.request_allocation(s, "pib", _body())
        core.decide(s, alloc.id, "admin", True, approve=True)
        alloc_id = alloc.id
    with pytest.raises(RuntimeError), db.session_scope(url) as s:
        projects.add_member(s, alloc_id, "pib", False, "memb")
        raise RuntimeError("the workspace's group could not follow")
    barrier = threading.Barrier(2)

    def add() -> None:
        barrier.wait()
        with db.session_scope(url) as s:
            projects.add_member(s, alloc_id, "pib", False, "memc")

    threads = [threading.Thread(target=add) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with db.session_scope(url) as s:
        alloc = s.get(core.Allocation, alloc_id)
        assert [m.user for m in projects.members(s, alloc)] == ["pib", "memc"]
        now = dt.datetime.now(dt.UTC)
        workspaces.record_storage(s, alloc_id, 2 * 10**9, at=now - dt.timedelta(hours=12))
        workspaces.record_storage(s, alloc_id, 10**9, at=now)
        [row] = workspaces.storage_summary(s, [alloc_id])
        assert row["gb_days"] == pytest.approx(1.0)
