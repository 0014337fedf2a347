"""The audit trail (:mod:`oceandata.governance.audit`) on SQLite, attacked as an intruder
with the database file would attack it.

Each test has its own trail in a temporary folder (``OCEANDATA_GOVERNANCE__AUDIT_URL``).
Tampering goes through Python's ``sqlite3`` with the triggers dropped, as an attacker
would; the command line runs as a real process. The allocation rules and batch jobs
write to it through their real code paths; the allocations service's ``api/access-log``
is called through a real hub with real tokens (slow).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
import requests

from oceandata.alloc import core, db
from oceandata.config import get_settings
from oceandata.errors import NotAuthorized, UsageError
from oceandata.governance import audit

OCEANDATA = [sys.executable, "-m", "oceandata.cli"]
NOW = dt.datetime.now(dt.UTC)


@contextlib.contextmanager
def audit_env(url: str, **extra: str) -> Iterator[None]:
    """The process's settings name the trail *url* (and *extra* variables)."""
    try:
        with mock.patch.dict(os.environ, {"OCEANDATA_GOVERNANCE__AUDIT_URL": url, **extra}):
            get_settings(reload=True)
            yield
    finally:
        get_settings(reload=True)


@pytest.fixture
def trail(tmp_path: Path) -> Iterator[Path]:
    """A fresh trail's SQLite file, named by the settings."""
    folder = tmp_path / "state"
    path = folder / "audit.sqlite"
    with audit_env(f"sqlite:///{path}"):
        yield path


def cli(*args: str, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OCEANDATA, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OCEANDATA_GOVERNANCE__AUDIT_URL": url, **env})


def some_records(n: int = 6) -> list[dict]:
    for i in range(1, n + 1):
        audit.record("alloc.request", actor=f"user{i}", target=f"allocation:{i}",
                     source="10.0.0.1", detail={"core_hours": 100 * i})
    return audit.read()


@contextlib.contextmanager
def attacker(path: Path) -> Iterator[sqlite3.Connection]:
    """A raw connection to the file with the append-only triggers dropped."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
        yield conn
    finally:
        conn.close()


def url_of(path: Path) -> str:
    return f"sqlite:///{path}"


# --- the chain --------------------------------------------------------------------------


def test_records_form_a_chain_that_verifies(trail: Path) -> None:
    audit.record("hub.login", actor="alice", target="user:alice", source="10.1.2.3",
                 detail={"password": "hunter2", "api_token": "abc123", "token_id": "t7",
                         "nested": {"Client-Secret": "s", "ok": 1}, "ratio": float("nan")})
    recs = some_records(4)
    assert [r["id"] for r in recs] == [1, 2, 3, 4, 5]
    assert recs[0]["prev_hash"] == audit.GENESIS
    for before, rec in itertools.pairwise(recs):
        assert rec["prev_hash"] == before["hash"] and rec["at"] >= before["at"]
    assert all(audit.record_hash(r) == r["hash"] for r in recs)
    # no secrets are stored, whatever the caller passed
    assert recs[0]["detail"] == {"token_id": "t7", "nested": {"ok": 1}, "ratio": "nan"}
    assert b"hunter2" not in trail.read_bytes() and b"abc123" not in trail.read_bytes()
    # the file is private, and the microseconds are kept
    assert trail.stat().st_mode & 0o777 == 0o600
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", recs[0]["at"])
    assert [r["id"] for r in audit.read(action="alloc.")] == [2, 3, 4, 5]
    assert audit.read(action="hub.login")[0]["actor"] == "alice"
    result = audit.verify()
    assert result.ok and result.records == 5 and result.head_id == 5
    done = cli("audit", "verify", url=url_of(trail))
    assert done.returncode == 0 and "intact: 5 records" in done.stdout, done.stderr
    # a malformed call is a programming error; a secret-free record is never refused
    with pytest.raises(UsageError, match="dotted"):
        audit.record("Login", actor="a", target="user:a")
    with pytest.raises(UsageError, match="kind:id"):
        audit.record("hub.login", actor="a", target="alice")


def test_one_changed_byte_is_named(trail: Path) -> None:
    some_records(6)
    with attacker(trail) as conn:
        conn.execute("UPDATE audit_log SET target = 'allocation:9' WHERE id = 3")
    result = audit.verify()
    assert (result.ok, result.broken_id, result.problem) == (False, 3, "changed")
    assert result.records == 2 and result.head_id == 2
    done = cli("audit", "verify", url=url_of(trail))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "record 3 (changed)" in done.stderr, done.stderr
    # the stored hash changed instead of the fields: the same record is named
    with attacker(trail) as conn:
        conn.execute("UPDATE audit_log SET target = 'allocation:3' WHERE id = 3")
        conn.execute("UPDATE audit_log SET hash = substr(hash, 1, 63) || "
                     "CASE substr(hash, 64) WHEN '0' THEN '1' ELSE '0' END WHERE id = 5")
    assert (audit.verify().broken_id, audit.verify().problem) == (5, "changed")


def test_a_deleted_record_is_named(trail: Path) -> None:
    some_records(6)
    with attacker(trail) as conn:
        conn.execute("DELETE FROM audit_log WHERE id = 4")
    result = audit.verify()
    assert (result.ok, result.broken_id, result.problem) == (False, 4, "deleted")
    assert "record 4 deleted" in result.message
    # the first record gone (no prune anchor says it may be): caught too
    with attacker(trail) as conn:
        conn.execute("DELETE FROM audit_log WHERE id = 1")
    assert (audit.verify().broken_id, audit.verify().problem) == (1, "deleted")


def test_two_swapped_records_are_caught(trail: Path) -> None:
    some_records(6)
    with attacker(trail) as conn:
        conn.execute("UPDATE audit_log SET id = -1 WHERE id = 3")
        conn.execute("UPDATE audit_log SET id = 3 WHERE id = 4")
        conn.execute("UPDATE audit_log SET id = 4 WHERE id = -1")
    result = audit.verify()
    assert (result.ok, result.broken_id, result.problem) == (False, 3, "reordered")


def test_update_and_delete_are_refused_by_the_database(trail: Path) -> None:
    some_records(3)
    conn = sqlite3.connect(trail, isolation_level=None)
    try:
        for sql in ("UPDATE audit_log SET actor = 'mallory' WHERE id = 2",
                    "DELETE FROM audit_log WHERE id = 2", "DELETE FROM audit_log",
                    "UPDATE audit_retention SET cutoff = '2999-01-01 00:00:00.000000'",
                    "DELETE FROM audit_retention"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute(sql)
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == (3,)
    finally:
        conn.close()
    assert audit.verify().ok


def test_prune_keeps_the_chain_verifiable_and_spares_recent_records(trail: Path) -> None:
    for days in (400, 300, 200):
        audit.append("store.commit", actor="ingest", target="store:/s", at=NOW
                     - dt.timedelta(days=days))
    some_records(2)
    assert audit.prune(retention_days=180)["removed"] == 3
    recs = audit.read()
    assert [r["id"] for r in recs] == [4, 5, 6]
    last = recs[-1]
    assert last["action"] == "audit.prune" and last["detail"]["through_id"] == 3
    result = audit.verify()
    assert result.ok and result.anchor == 3 and result.records == 3
    assert audit.prune(retention_days=180)["removed"] == 0
    assert audit.prune(retention_days=1)["removed"] == 0  # the others are minutes old
    with pytest.raises(UsageError, match="at least 1"):
        audit.prune(retention_days=0)
    conn = sqlite3.connect(trail, isolation_level=None)
    try:
        # the recent records stay: neither a direct delete nor the newest cutoff allowed
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit_log WHERE id = 4")
        conn.execute("UPDATE audit_retention SET cutoff = datetime('now', '-2 days')")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit_log WHERE id = 4")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE audit_anchor SET through_id = 1")
    finally:
        conn.close()
    # records deleted from the head behind a forged anchor: no audit.prune record vouches
    with attacker(trail) as conn:
        conn.execute("INSERT INTO audit_anchor (through_id, hash, cutoff, removed, at) "
                     "SELECT 5, hash, at, 2, at FROM audit_log WHERE id = 5")
        conn.execute("DELETE FROM audit_log WHERE id IN (4, 5)")
    assert audit.verify().problem == "anchor"
    done = cli("audit", "prune", "--json", url=url_of(trail))
    assert done.returncode == 0 and json.loads(done.stdout)["removed"] == 0, done.stderr


def test_export_round_trip_and_bad_input(trail: Path, tmp_path: Path) -> None:
    audit.append("store.tag", actor="ops", target="store:/s", at=NOW - dt.timedelta(days=30))
    some_records(3)
    out = tmp_path / "siem" / "audit.jsonl"
    out.parent.mkdir()
    done = cli("audit", "export", "--since", "7d", "--output", str(out), url=url_of(trail))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == audit.read()[1:]  # the month-old record is before --since
    assert [p.name for p in out.parent.iterdir()] == ["audit.jsonl"]  # no temporary left
    assert audit.verify_records(lines).ok
    lines[1]["actor"] = "someone else"
    out.write_text("".join(json.dumps(rec) + "\n" for rec in lines))
    done = cli("audit", "verify", "--file", str(out), "--json", url=url_of(trail))
    assert done.returncode == 1 and json.loads(done.stdout)["broken_id"] == lines[1]["id"]
    for args in (("export", "--since", "last week"), ("export", "--output",
                                                      str(tmp_path / "no" / "x.jsonl"))):
        done = cli("audit", *args, url=url_of(trail))
        assert done.returncode == 2 and done.stderr.count("\n") == 1, (args, done.stderr)
    shown = cli("audit", "show", "--action", "alloc.", "--json", url=url_of(trail))
    assert [r["actor"] for r in json.loads(shown.stdout)] == ["user1", "user2", "user3"]


WRITER = """
import sys
from oceandata.governance import audit
who, n = sys.argv[1], int(sys.argv[2])
audit.engine()          # the schema is made by every writer at once
print("ready", flush=True)
sys.stdin.readline()    # the test's start signal
for i in range(n):
    audit.record("job.submit", actor=who, target=f"job:{who}-{i}", detail={"i": i})
print("done", flush=True)
"""


def concurrent_writers(url: str, processes: int = 4, each: int = 50) -> None:
    """*processes* real processes append *each* records at once; the chain stays one."""
    env = {**os.environ, "OCEANDATA_GOVERNANCE__AUDIT_URL": url}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, f"p{k}", str(each)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
             for k in range(processes)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            out, errors = p.communicate(timeout=300)
            assert p.returncode == 0 and out.strip() == "done", errors
            assert "NOT recorded" not in errors, errors
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    recs = audit.read(url=url)
    assert len(recs) == processes * each
    for k in range(processes):  # every writer's records, each in its own order
        mine = [r["detail"]["i"] for r in recs if r["actor"] == f"p{k}"]
        assert mine == list(range(each))
    result = audit.verify(url=url)
    assert result.ok and result.records == processes * each, result.message


def test_concurrent_appends_from_processes_keep_one_chain(tmp_path: Path) -> None:
    concurrent_writers(url_of(tmp_path / "audit.sqlite"))


def test_a_storage_failure_never_breaks_a_request(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # a folder anyone may write to is refused as the trail's home
    url = f"sqlite:///{tmp_path / 'alloc.sqlite'}"
    db.upgrade(url)
    with audit_env(url_of(shared / "audit.sqlite")), caplog.at_level(logging.ERROR):
        with db.session_scope(url) as session:
            alloc = core.request_allocation(session, "alice", request_fields())
            core.decide(session, alloc.id, "admin", True, approve=True)
    with db.session_scope(url) as session:  # the request path went through
        assert [e.action for e in core.audit_log(session, alloc.id)] == ["request", "approve"]
    errors = [r.getMessage() for r in caplog.records if r.name == audit.__name__]
    assert len(errors) == 2 and all("NOT recorded" in e and "writable by everyone" in e
                                    for e in errors), errors
    assert not (shared / "audit.sqlite").exists()
    # an unreachable PostgreSQL: one line, without the password
    caplog.clear()
    from oceandata.netutil import free_port

    pg = f"postgresql+psycopg2://hub:pw-s3cr3t@127.0.0.1:{free_port()}/audit"
    with audit_env(pg), caplog.at_level(logging.ERROR):
        audit.record("hub.login", actor="bob", target="user:bob")
    lines = [r.getMessage() for r in caplog.records if r.name == audit.__name__]
    assert len(lines) == 1 and "\n" not in lines[0] and "pw-s3cr3t" not in lines[0], lines


# --- the services that write to it ------------------------------------------------------


def request_fields(**changes: object) -> dict:
    today = dt.date.today()
    base = {"project_title": "Shelf seas", "pi": "Dr. P", "institution": "Partner U",
            "justification": "Tides.", "core_hours": 10, "max_cores": 4,
            "memory_per_job_gb": 8, "storage_gb": 10,
            "start_date": today - dt.timedelta(days=1),
            "end_date": today + dt.timedelta(days=30), "datasets": ["argo_2902696"]}
    base.update(changes)
    return base


def test_allocation_changes_are_recorded_once_committed(trail: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'alloc.sqlite'}"
    db.upgrade(url)
    with db.session_scope(url) as session:
        audit.set_source(session, "192.0.2.7")
        alloc = core.request_allocation(session, "pia", request_fields())
        core.decide(session, alloc.id, "admin", True, approve=True,
                    changes={"core_hours": 5})
        assert audit.read() == []  # nothing is recorded before the commit
    with pytest.raises(NotAuthorized), db.session_scope(url) as session:
        core.decide(session, alloc.id, "pia", False, approve=True)
    with db.session_scope(url) as session:
        core.decide(session, alloc.id, "admin", True, approve=False, reason="misuse")
    with pytest.raises(UsageError), db.session_scope(url) as session:  # rolled back
        core.decide(session, alloc.id, "admin", True, approve=True)
        core.request_allocation(session, "pia", request_fields(core_hours=-1))
    recs = audit.read(action="alloc.")
    assert [(r["action"], r["actor"], r["outcome"]) for r in recs] == [
        ("alloc.request", "pia", "ok"), ("alloc.approve", "admin", "ok"),
        ("alloc.approve", "pia", "denied"), ("alloc.revoke", "admin", "ok")]
    assert {r["target"] for r in recs} == {f"allocation:{alloc.id}"}
    assert recs[0]["source"] == "192.0.2.7" and recs[0]["detail"]["core_hours"] == 10
    assert recs[1]["detail"]["changed"]["core_hours"] == [10, 5]
    assert recs[3]["detail"]["reason"] == "misuse"
    assert audit.verify().ok


def test_batch_jobs_submitted_and_cancelled_are_recorded(trail: Path, tmp_path: Path) -> None:
    from oceandata.jobs import JobSettings, service
    from oceandata.jobs.spec import make_spec

    url = f"sqlite:///{tmp_path / 'alloc.sqlite'}"
    db.upgrade(url)
    with db.session_scope(url) as session:
        alloc = core.request_allocation(session, "jo", request_fields(max_cores=2))
        core.decide(session, alloc.id, "admin", True, approve=True)
    settings = JobSettings(max_concurrent=1, max_cores=4, max_walltime_s=3600,
                           poll_interval=0.2, kill_grace_s=2.0)
    runtime = service.JobRuntime(url, data_dir=tmp_path / "data", settings=settings,
                                 slurm=False).start()
    script = tmp_path / "wait.py"
    script.write_text("import time\ntime.sleep(600)\n")  # runs until cancelled
    try:
        spec = make_spec(script, [], cores=1, memory="1GB", walltime="5:00", max_cores=4,
                         max_walltime_s=3600)
        with db.session_scope(url) as session:
            job_id = service.submit(session, "jo", spec, alloc.id, "local",
                                    runtime=runtime).id
        with db.session_scope(url) as session:
            service.cancel(session, "jo", job_id, runtime=runtime)
        big = make_spec(script, [], cores=3, memory="1GB", walltime="5:00", max_cores=4,
                        max_walltime_s=3600)
        with pytest.raises(core.QuotaExceeded), db.session_scope(url) as session:
            service.submit(session, "jo", big, alloc.id, "local", runtime=runtime)
    finally:
        runtime.stop(kill_jobs=True)
    recs = audit.read(action="job.")
    assert [(r["action"], r["target"], r["outcome"]) for r in recs] == [
        ("job.submit", f"job:{job_id}", "ok"), ("job.cancel", f"job:{job_id}", "ok"),
        ("job.submit", f"allocation:{alloc.id}", "denied")]
    assert recs[0]["detail"]["allocation_id"] == alloc.id and recs[0]["actor"] == "jo"
    assert "allows at most 2" in recs[2]["detail"]["reason"]


# --- the notebook's access log, through a real hub ----------------------------------------


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from tests.hub_helpers import running_hub, wait_for_service

    data = tmp_path_factory.mktemp("hub-audit") / "var"
    # the platform's default place: the hub hands it to its services
    with audit_env(f"sqlite:///{data / 'audit.sqlite'}"), running_hub(data) as h:
        wait_for_service(h)
        yield h


@pytest.mark.slow
def test_notebook_opens_are_recorded_as_the_tokens_user(hub: object) -> None:
    from tests.hub_helpers import admin_client, new_user

    admin = admin_client(hub)
    user = new_user(hub, admin, f"nb{uuid.uuid4().hex[:6]}")
    api = f"{hub.url}/services/allocations/api/access-log"
    body = {"dataset": "argo_restricted", "version": "v1", "user": "somebody-else"}
    r = requests.post(api, json=body, headers={"Authorization": f"token {user.token}"},
                      timeout=60)
    assert r.status_code == 204, r.text
    # no token; the login cookie without the session's CSRF token; a bad name
    assert requests.post(api, json=body, timeout=60).status_code == 401
    cookie = {"oceandata-alloc-auth": user.token}
    r = requests.post(api, json=body, cookies=cookie, timeout=60)
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    r = requests.post(api, json={"dataset": "../x y"}, timeout=60,
                      headers={"Authorization": f"token {user.token}"})
    assert r.status_code == 400
    # with the CSRF token of the cookie's session (from a page's form) it is accepted
    page = requests.get(f"{hub.url}/services/allocations/request", cookies=cookie,
                        timeout=60)
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text)[1]
    r = requests.post(api, json={"dataset": "argo_restricted"}, cookies=cookie, timeout=60,
                      headers={"X-CSRF-Token": csrf})
    assert r.status_code == 204, r.text
    url = f"sqlite:///{hub.runtime.data_dir / 'audit.sqlite'}"
    mine = [r for r in audit.read(action="data.access", url=url) if r["actor"] == user.name]
    assert [(r["target"], r["detail"].get("version"), r["outcome"]) for r in mine] == [
        ("dataset:argo_restricted", "v1", "ok"), ("dataset:argo_restricted", None, "ok")]
    assert mine[0]["source"] in ("127.0.0.1", "::1") and "somebody-else" not in str(mine)
    # the hub, the services and this test wrote to one trail, still one chain
    assert audit.verify(url=url).ok
