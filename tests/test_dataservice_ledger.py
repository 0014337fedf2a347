"""The bytes-served ledger, the metrics of the open-data service, and their reports.

- :class:`oceandata.dataservice.ledger.Ledger` on SQLite and on a real PostgreSQL
  (:func:`tests.pg_helpers.running_postgres`): threads record while the background thread
  and an explicit loop flush, and a second ledger (another process's) adds to the same
  rows; the database then holds exactly the bytes and requests recorded, row by row.
  ``served_today`` counts what is not flushed yet, stays right across a flush, and leaves
  out yesterday.
- the migration 0002 applies on an existing 0001 database (with its rows), upgraded by
  two processes at once.
- ``metrics`` of a real app on loopback (uvicorn): refused without the metrics token or a
  hub administrator's token; after a few requests, counts by dataset, protocol, format
  and status, bytes equal to the answers' bodies, a restricted entry never named. The
  hub's token check is a stand-in (:class:`StandInHub`): this is not a test of the hub.
- ``oceandata dataservice top``: heaviest clients and datasets, and bad input (one line,
  exit 2); the usage summary, CSV and page of the allocations service with the bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, text

from oceandata.alloc import core, db
from oceandata.alloc.models import ServedBytes
from oceandata.dataservice.ledger import Ledger, top, totals
from oceandata.hub.security import AuthError, HubUser
from tests.dataservice_helpers import RESTRICTED, RESTRICTED_GROUP, make_catalog, serving
from tests.pg_helpers import PostgresUnavailable, running_postgres, skip_or_fail

METRICS_TOKEN = "metrics-token-for-the-test-4f1c"
USERS = {"ada-token": HubUser("ada", admin=True),
         "pat-token": HubUser("pat", groups=frozenset({RESTRICTED_GROUP}))}


class StandInHub:
    """Stand-in for the hub's token check (not a test of the hub): ``USERS`` by token."""

    async def user_for_token(self, token: str, via: str) -> HubUser:
        if token not in USERS:
            raise AuthError(401, "The token is unknown, expired or revoked.")
        return USERS[token]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql",
                                                                marks=pytest.mark.slow)])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[str]:
    """An allocations database at head: a SQLite file, or a real PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'alloc.sqlite'}"
        db.upgrade(url)
        yield url
        return
    try:
        with running_postgres() as pg:
            url = pg.url_for(pg.create_database("ledger"), scheme="postgresql+psycopg2")
            db.upgrade(url)
            yield url
    except PostgresUnavailable as exc:
        skip_or_fail(f"PostgreSQL cannot be started here: {exc}")


def _stored(url: str) -> dict[tuple[dt.date, str, str, str], tuple[int, int]]:
    with db.engine_for(url).connect() as conn:
        rows = conn.execute(select(ServedBytes.day, ServedBytes.client, ServedBytes.dataset,
                                   ServedBytes.protocol, ServedBytes.bytes,
                                   ServedBytes.requests))
        return {(d, c, ds, p): (b, n) for d, c, ds, p, b, n in rows}


def _clear(url: str) -> None:
    with db.engine_for(url).begin() as conn:
        conn.execute(ServedBytes.__table__.delete())


def test_every_byte_is_written_once_under_concurrency(db_url: str) -> None:
    _clear(db_url)
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    first = Ledger(db_url, datasets={"cobe_sst2", "oisst_wa"}, interval=0.002)
    second = Ledger(db_url, interval=3600)  # another process writing the same rows
    expected: Counter[tuple[Any, ...]] = Counter()
    counts: Counter[tuple[Any, ...]] = Counter()
    guard = threading.Lock()
    flushes: list[int] = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        mine: Counter[tuple[Any, ...]] = Counter()
        calls: Counter[tuple[Any, ...]] = Counter()
        ledger = second if seed == 0 else first
        written = 0
        for i in range(1500):
            if i % 250 == 125:  # flushes from the recording threads too, racing the others
                written += bool(ledger.flush())
            key = f"user:u{rng.randrange(4)}" if rng.random() < 0.7 else "anon:00ff00ff00ff00ff"
            dataset = rng.choice(["cobe_sst2", "oisst_wa", None, "no_such"])
            protocol = rng.choice(["subset", "zarr", "opendap"])
            nbytes = rng.choice([0, 1, 517, 65_536, 2**31 + 7])  # > 32 bits: BigInteger
            when = yesterday if rng.random() < 0.1 else None
            ledger.record(key, dataset, protocol, nbytes, when)
            stored = dataset if dataset in {"cobe_sst2", "oisst_wa"} or seed == 0 else ""
            row = ((when or dt.datetime.now(dt.UTC)).date(), key, stored or "", protocol)
            mine[row] += nbytes
            calls[row] += 1
        with guard:
            expected.update(mine)
            counts.update(calls)
            flushes.append(written)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):  # and from here, interleaved
        first.flush()
        second.flush()
    for thread in threads:
        thread.join()
    first.close()
    second.close()
    assert sum(flushes) >= 8 * 3, "the flushes did not interleave with the recording"
    assert first.pending() == {} and second.pending() == {}
    stored = _stored(db_url)
    # a day boundary may pass during the test: compare the rows' totals, then the rows
    assert sum(b for b, _ in stored.values()) == sum(expected.values())
    assert sum(n for _, n in stored.values()) == 8 * 1500
    assert {row: b for row, (b, _) in stored.items()} == {r: b for r, b in expected.items()}
    assert {row: n for row, (_, n) in stored.items()} == dict(counts)
    assert totals(db_url, by="protocol") == {
        p: sum(b for (_, _, _, q), b in expected.items() if q == p)
        for p in ("subset", "zarr", "opendap")}


def test_served_today_counts_what_is_not_flushed(db_url: str) -> None:
    _clear(db_url)
    ledger = Ledger(db_url, interval=3600)
    other = Ledger(db_url, interval=3600)
    try:
        ledger.record("user:amy", "cobe_sst2", "subset", 1000)
        ledger.record("user:amy", "cobe_sst2", "subset", 24,
                      dt.datetime.now(dt.UTC) - dt.timedelta(days=1))  # not today's
        ledger.record("user:bo", "cobe_sst2", "zarr", 7)
        assert ledger.served_today("user:amy") == 1000  # nothing written yet
        assert ledger.served_today("user:bo") == 7
        assert ledger.flush() == 3
        assert ledger.served_today("user:amy") == 1000  # the cached reading followed
        ledger.record("user:amy", None, "portal", 5)
        assert ledger.served_today("user:amy") == 1005
        other.record("user:amy", "oisst_wa", "opendap", 10)
        assert other.served_today("user:amy") == 1010  # the database's 1000 + its own
    finally:
        ledger.close()
        other.close()
    assert Ledger(db_url).served_today("user:amy") == 1015
    assert Ledger(db_url).served_today("user:nobody") == 0


def test_the_migration_applies_on_a_0001_database_from_two_processes(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    url = f"sqlite:///{tmp_path / 'alloc.sqlite'}"
    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    cfg.attributes["engine"] = db.engine_for(url)
    command.upgrade(cfg, "0001")  # the schema before this issue, with a charge in it
    with db.engine_for(url).begin() as conn:
        assert "served_bytes" not in {r[0] for r in conn.execute(
            text("SELECT name FROM sqlite_master WHERE type='table'"))}
        conn.execute(text("INSERT INTO usage (user, source, ref, cores, seconds, core_hours,"
                          " recorded_at) VALUES ('amy', 'batch', 'j1', 2, 3600, 2, "
                          "'2026-01-01 00:00:00')"))
    # the allocations service and the data service start together: both upgrade
    script = "import sys; from oceandata.alloc import db; db.upgrade(sys.argv[1])"
    procs = [subprocess.Popen([sys.executable, "-c", script, url], stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with db.engine_for(url).connect() as conn:
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(cfg).get_current_head()
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == head >= "0003"
        assert {"served_bytes", "project_members", "storage_usage", "uploads",
                "publish_requests", "user_settings"} <= {r[0] for r in conn.execute(
                    text("SELECT name FROM sqlite_master WHERE type='table'"))}
    with db.session_scope(url) as session:
        assert [r["core_hours"] for r in core.usage_summary(session)] == [2.0]
    ledger = Ledger(url)
    ledger.record("user:amy", "cobe_sst2", "subset", 42)
    ledger.close()
    with db.session_scope(url) as session:
        rows = core.usage_summary(session, "amy")
    assert [(r["source"], r["bytes"], r["records"]) for r in rows] == [
        ("batch", 0, 1), ("data", 42, 1)]


# --- metrics of a real app -----------------------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any, str]]:
    from oceandata.dataservice import create_app

    folder = tmp_path_factory.mktemp("metrics")
    url = f"sqlite:///{folder / 'alloc.sqlite'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OCEANDATA_METRICS_TOKEN", METRICS_TOKEN)
        mp.setenv("OCEANDATA_ALLOC_DB_URL", url)
        app = create_app(make_catalog(folder / "catalog"), hub_auth=StandInHub())
    with serving(app) as base:
        yield base, app, url


def _metrics(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = requests.get(f"{base}/metrics", timeout=30,
                     headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def _sum(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == want for k, want in labels.items()))


def test_metrics_are_for_operators_only(service: tuple[str, Any, str]) -> None:
    base, _, _ = service
    for headers in ({}, {"Authorization": "Bearer wrong"},
                    {"Authorization": "Bearer pat-token"},  # a hub user, not an admin
                    {"Authorization": "Basic Zm9vOmJhcg=="}):
        r = requests.get(f"{base}/metrics", headers=headers, timeout=30)
        assert r.status_code == 401, (headers, r.text)
        detail = r.json()["detail"]
        assert detail.endswith(".") and detail.count(". ") == 0 and "oceandata_" not in r.text
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    for token in (METRICS_TOKEN, "ada-token"):  # the metrics token; a hub administrator
        r = requests.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"},
                         timeout=30)
        assert r.status_code == 200 and "oceandata_data_requests_total" in r.text
    openapi = requests.get(f"{base}/openapi.json", timeout=30).json()
    assert "/metrics" not in openapi["paths"]


def test_metrics_count_requests_and_bytes_without_naming_restricted_data(
        service: tuple[str, Any, str]) -> None:
    base, app, url = service
    before = _metrics(base)
    das = [requests.get(f"{base}/datasets/cobe_sst2/opendap.das", timeout=60)
           for _ in range(2)]
    assert [r.status_code for r in das] == [200, 200]
    hidden = requests.get(f"{base}/datasets/{RESTRICTED}/opendap.das", timeout=60)
    assert hidden.status_code == 404  # anonymous: it does not exist
    assert requests.get(f"{base}/datasets/no_such_data/opendap.das",
                        timeout=60).status_code == 404
    granted = requests.get(f"{base}/datasets/{RESTRICTED}/opendap.das", timeout=60,
                           headers={"Authorization": "Bearer pat-token"})
    assert granted.status_code == 200

    want = {("cobe_sst2", "200"): 2, ("other", "404"): 2, ("restricted", "200"): 1}
    deadline = time.monotonic() + 30  # counted once each answer has ended
    while True:
        after = _metrics(base)
        got = {k: _sum(after, "oceandata_data_requests_total", dataset=k[0], status=k[1],
                       protocol="opendap", format="das")
               - _sum(before, "oceandata_data_requests_total", dataset=k[0], status=k[1],
                      protocol="opendap", format="das") for k in want}
        if got == want or time.monotonic() > deadline:
            break
        threading.Event().wait(0.05)  # poll interval of the metrics, bounded by deadline
    assert got == want
    text_ = requests.get(f"{base}/metrics", timeout=30,
                         headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert RESTRICTED not in text_ and "no_such_data" not in text_
    served = (_sum(after, "oceandata_data_served_bytes_total", dataset="cobe_sst2",
                   protocol="opendap")
              - _sum(before, "oceandata_data_served_bytes_total", dataset="cobe_sst2",
                     protocol="opendap"))
    assert served == sum(len(r.content) for r in das) > 0
    assert _sum(after, "oceandata_data_request_duration_seconds_count", dataset="cobe_sst2",
                protocol="opendap", status="200") >= 2
    # the instrumentator's HTTP basics, by route template (no dataset names)
    assert _sum(after, "http_requests_total", handler="/datasets/{dataset_id}/opendap.das"
                ) >= 5
    # the same answers in the ledger, restricted names included (admins read it)
    app.state.inner.state.ledger.flush()
    by_dataset = totals(url, by="dataset")
    assert by_dataset["cobe_sst2"] >= sum(len(r.content) for r in das)
    assert by_dataset[RESTRICTED] == len(granted.content) + len(hidden.content)
    assert "no_such_data" not in by_dataset


def test_the_generated_metrics_token_is_a_private_file(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    from oceandata.config import get_settings
    from oceandata.dataservice import metrics

    monkeypatch.delenv("OCEANDATA_METRICS_TOKEN", raising=False)
    monkeypatch.setenv("OCEANDATA_DATA_DIR", str(tmp_path))
    get_settings(reload=True)
    try:
        token = metrics.metrics_token()
        path = tmp_path / "secrets" / metrics.TOKEN_FILE
        assert len(token) >= 32 and path.read_text().strip() == token
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert metrics.metrics_token() == token
    finally:
        monkeypatch.undo()
        get_settings(reload=True)


# --- reports -------------------------------------------------------------------------


@pytest.fixture
def filled(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'alloc.sqlite'}"
    ledger = Ledger(url)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    for key, dataset, protocol, nbytes in [
            ("user:amy", "cobe_sst2", "subset", 5_000_000),
            ("user:amy", "oisst_wa", "zarr", 1_000_000),
            ("anon:0123456789abcdef", "oisst_wa", "opendap", 3_000_000),
            ("anon:0123456789abcdef", "oisst_wa", "opendap", 1_000_000),
            ("user:bo", "cobe_sst2", "subset", 500_000)]:
        ledger.record(key, dataset, protocol, nbytes)
    ledger.record("user:bo", "cobe_sst2", "subset", 900_000_000, old)  # outside 1d
    ledger.close()
    return url


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
         *args: str) -> tuple[int, str, str]:
    """``oceandata *args`` in this process, through the console script's ``main``."""
    from oceandata.cli import main

    monkeypatch.setattr(sys, "argv", ["oceandata", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    done = capsys.readouterr()
    return exit_.value.code or 0, done.out, done.err


def test_dataservice_top_lists_the_heaviest(filled: str, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert [(r["name"], r["bytes"], r["requests"]) for r in top(
        filled, by="client", since=dt.date.today() - dt.timedelta(days=1))] == [
        ("user:amy", 6_000_000, 2), ("anon:0123456789abcdef", 4_000_000, 2),
        ("user:bo", 500_000, 1)]
    monkeypatch.setenv("OCEANDATA_ALLOC_DB_URL", filled)
    code, out, err = _cli(monkeypatch, capsys, "dataservice", "top", "--since", "1d")
    assert code == 0, err
    order = [name for line in out.splitlines() for name in (
        "user:amy", "anon:0123456789abcdef", "user:bo") if name in line]
    assert order == ["user:amy", "anon:0123456789abcdef", "user:bo"], out
    assert "6 MB" in out and "4 MB" in out and "900 MB" not in out
    code, out, err = _cli(monkeypatch, capsys, "dataservice", "top", "--since", "30d",
                          "--by", "dataset", "--limit", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["rows"] == [{"name": "cobe_sst2", "bytes": 905_500_000,
                                        "requests": 3, "clients": 2}]
    for bad in (["--since", "yesterday"], ["--since", "2999-01-01"], ["--by", "user"],
                ["--limit", "0"]):
        code, out, err = _cli(monkeypatch, capsys, "dataservice", "top", *bad)
        assert code == 2, (bad, out, err)
        assert "Traceback" not in err
        if bad[0] != "--limit":  # click's own usage error has a few lines
            assert len(err.strip().splitlines()) == 1, err
            assert err.startswith("oceandata: error: --"), err


def test_usage_summary_csv_and_page_show_the_bytes(filled: str) -> None:
    from oceandata.alloc.service import create_app, usage_chart, usage_csv

    db.upgrade(filled)
    with db.session_scope(filled) as session:
        core.charge(session, user="amy", allocation_id=None, source="batch", ref="j1",
                    cores=2, seconds=3600)
        everyone = core.usage_summary(session)
        mine = core.usage_summary(session, "amy")
    assert [(r["user"], r["source"], r["core_hours"], r["bytes"], r["records"])
            for r in everyone] == [
        ("amy", "batch", 2.0, 0, 1), ("(anonymous)", "data", 0.0, 4_000_000, 2),
        ("amy", "data", 0.0, 6_000_000, 2), ("bo", "data", 0.0, 900_500_000, 2)]
    assert [(r["source"], r["bytes"]) for r in mine] == [("batch", 0), ("data", 6_000_000)]
    lines = usage_csv(everyone).splitlines()
    assert lines[0] == "allocation_id,user,source,core_hours,records,bytes,gb_days"
    assert ",amy,data,0,2,6000000,0" in lines and ",amy,batch,2,1,0,0" in lines
    chart = usage_chart(everyone)
    assert [b["label"] for b in chart["bars"]] == ["(none) amy"]  # core-hours only
    bars = chart["downloads"]["bars"]
    assert [(b["label"], b["text"]) for b in bars] == [
        ("bo", "900 MB"), ("amy", "6 MB"), ("(anonymous)", "4 MB")]
    assert bars[0]["length"] == chart["width"] - chart["label_width"] - 90
    assert bars[1]["length"] == pytest.approx(bars[0]["length"] * 6 / 900.5, abs=0.1)
    app = create_app(filled, prefix="/services/allocations/")
    page = app.state.templates.get_template("usage.html").render(
        prefix="/services/allocations/", csrf_field="_csrf", csrf="", user=None, labels={},
        message=None, rows=everyone, chart=chart)
    assert 'id="usage-chart"' in page and 'id="bytes-chart"' in page
    assert "bo: 900 MB downloaded" in page and 'title="6000000 bytes"' in page
