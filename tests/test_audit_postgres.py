"""The audit trail on a real PostgreSQL (:func:`tests.pg_helpers.running_postgres`).

One server for the module; each test its own database. The triggers are PostgreSQL's
(a PL/pgSQL function raising, TRUNCATE refused too); appends serialise with
``LOCK TABLE ... IN EXCLUSIVE MODE``; the tamperer is the table's owner, who may disable
triggers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Iterator

import psycopg2
import pytest

from oceandata.governance import audit
from tests.pg_helpers import Postgres, PostgresUnavailable, running_postgres, skip_or_fail
from tests.test_audit import concurrent_writers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    try:
        with running_postgres() as server:
            yield server
    except PostgresUnavailable as exc:
        skip_or_fail(f"PostgreSQL cannot be started here: {exc}")


@pytest.fixture
def db(pg: Postgres) -> tuple[Postgres, str, str]:
    """A fresh database: (server, its name, its SQLAlchemy URL)."""
    name = pg.create_database(f"audit_{uuid.uuid4().hex[:8]}")
    return pg, name, pg.url_for(name, scheme="postgresql+psycopg2")


@contextlib.contextmanager
def sql(pg: Postgres, name: str) -> Iterator[psycopg2.extensions.cursor]:
    conn = pg.connect(name)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def fill(url: str, n: int = 6) -> None:
    for i in range(1, n + 1):
        audit.append("alloc.approve", actor="admin", target=f"allocation:{i}", url=url,
                     detail={"i": i})


def test_the_chain_and_its_triggers_on_postgresql(db: tuple[Postgres, str, str]) -> None:
    pg, name, url = db
    fill(url)
    assert audit.verify(url=url).ok and audit.count(url=url) == 6
    with sql(pg, name) as cur:
        for statement in ("UPDATE audit_log SET actor = 'mallory' WHERE id = 2",
                          "DELETE FROM audit_log WHERE id = 2", "TRUNCATE audit_log",
                          "TRUNCATE audit_anchor", "TRUNCATE audit_retention",
                          "UPDATE audit_retention SET cutoff = now()"):
            with pytest.raises(psycopg2.Error, match="append-only"):
                cur.execute(statement)
        # the owner can disable the triggers, as an intruder would: the chain shows it
        cur.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        cur.execute("UPDATE audit_log SET target = 'allocation:7' WHERE id = 3")
    result = audit.verify(url=url)
    assert (result.ok, result.broken_id, result.problem) == (False, 3, "changed")
    with sql(pg, name) as cur:
        cur.execute("UPDATE audit_log SET target = 'allocation:3' WHERE id = 3")
        cur.execute("DELETE FROM audit_log WHERE id = 5")
    result = audit.verify(url=url)
    assert (result.broken_id, result.problem) == (5, "deleted")
    with sql(pg, name) as cur:
        cur.execute("DELETE FROM audit_log WHERE id = 6")
        cur.execute("UPDATE audit_log SET id = -1 WHERE id = 2")
        cur.execute("UPDATE audit_log SET id = 2 WHERE id = 3")
        cur.execute("UPDATE audit_log SET id = 3 WHERE id = -1")
    result = audit.verify(url=url)
    assert (result.broken_id, result.problem) == (2, "reordered")


def test_prune_on_postgresql(db: tuple[Postgres, str, str]) -> None:
    pg, name, url = db
    now = dt.datetime.now(dt.UTC)
    for days in (365, 200):
        audit.append("store.commit", actor="ingest", target="store:/s", url=url,
                     at=now - dt.timedelta(days=days))
    fill(url, 2)
    result = audit.prune(retention_days=180, url=url)
    assert result["removed"] == 2 and result["anchor"]["through_id"] == 2
    check = audit.verify(url=url)
    assert check.ok and check.anchor == 2 and check.records == 3
    with sql(pg, name) as cur, pytest.raises(psycopg2.Error, match="append-only"):
        cur.execute("DELETE FROM audit_log WHERE id = 3")
    assert [r["action"] for r in audit.read(url=url)] == ["alloc.approve", "alloc.approve",
                                                          "audit.prune"]


def test_concurrent_appends_on_postgresql(db: tuple[Postgres, str, str]) -> None:
    concurrent_writers(db[2])
