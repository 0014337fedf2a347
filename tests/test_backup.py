"""Backups, restores and restore drills with the real restic, real stores and a real platform.

One module-scoped platform under a temporary data dir: a sample store registered in
``<data dir>/catalogs`` (``oceandata store build-samples``), a second store of two commits
found in ``<data dir>/stores`` only, and the running hub (JupyterHub, dask-gateway, the
allocations service on SQLite) with a partner's approved allocation. Every oceandata
command runs as a subprocess, as an operator runs it, and its output is kept to check
that the repository password never appears.

The drill's failure case corrupts the *restic repository*: the bytes of the one blob
holding a chunk of the sample store, inside its pack file (bit rot in backup storage).
restic then refuses that file (its MAC fails) and the drill must name the store.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.hub_helpers import (
    Hub,
    HubClient,
    admin_client,
    new_user,
    running_hub,
    wait_for_service,
)

pytestmark = [pytest.mark.slow]

OCEANDATA = [sys.executable, "-m", "oceandata.cli"]
SERVICE = "/services/allocations"
STORE_ENTRY = "sst_ndjfm_anom"
#: every output of every command this module ran (checked for the password)
OUTPUTS: list[str] = []


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*OCEANDATA, *args], capture_output=True, text=True, timeout=600)
    OUTPUTS.extend([proc.stdout, proc.stderr])
    if ok:
        assert proc.returncode == 0, f"{args}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def restic(*args: str) -> str:
    data = Path(os.environ["OCEANDATA_DATA_DIR"])
    env = dict(os.environ, RESTIC_REPOSITORY=str(data / "backup" / "restic"),
               RESTIC_PASSWORD_FILE=str(data / "secrets" / "restic-password"))
    return subprocess.run(["restic", *args], env=env, capture_output=True, text=True,
                          check=True).stdout


class Platform:
    """The module's platform: data dir, stores, the hub and a partner with an allocation."""

    def __init__(self, data: Path, root: Path) -> None:
        self.data = data
        self.root = root
        self.sst = data / "stores" / f"{STORE_ENTRY}.icechunk"
        self.cobe = data / "stores" / "cobe.icechunk"
        self.partner: HubClient | None = None
        self.alloc_id: int | None = None


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, sample) -> Iterator[Platform]:
    from oceandata.config import get_settings

    data = tmp_path_factory.mktemp("backup") / "var"
    data.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OCEANDATA_DATA_DIR", str(data))
        mp.delenv("OCEANDATA_GOVERNANCE__BACKUP_REPOSITORY", raising=False)
        mp.delenv("OCEANDATA_GOVERNANCE__AUDIT_URL", raising=False)
        mp.delenv("OCEANDATA_ALLOC_DB_URL", raising=False)
        mp.delenv("OCEANDATA_HUB_DB_URL", raising=False)
        get_settings(reload=True)
        run("store", "build-samples", "--only", STORE_ENTRY, "--no-check")
        p = Platform(data, data / "catalogs" / "ocean.yaml")
        years = [str(sample(f"gridded/cobe-sst2/year{y}.nc")) for y in (1950, 1951)]
        run("ingest", years[0], "--store", str(p.cobe), "--no-check")
        run("ingest", years[1], "--store", str(p.cobe), "--append", "--no-check")
        yield p
    get_settings(reload=True)


def _allocation_answers(hub: Hub, partner: HubClient, alloc_id: int) -> dict[str, Any]:
    """What the partner sees: the REST API and the HTML page of the allocation."""
    api = {path: partner.api("GET", f"{SERVICE}/api/{path}").json()
           for path in (f"allocations/{alloc_id}", "allocations", "usage", "me")}
    # the restored service measures the project's workspace when it starts (a storage row
    # of the new platform's own): the ledger restored is what was charged before
    api["usage"] = [row for row in api["usage"] if row.get("source") != "storage"]
    page = partner.session.get(f"{hub.url}{SERVICE}/allocations/{alloc_id}", timeout=60)
    assert page.status_code == 200 and page.url.endswith(f"/allocations/{alloc_id}"), page.url
    main = re.search(r"<main.*?</main>", page.text, re.S)
    text = main.group(0) if main else page.text
    text = re.sub(r'name="_csrf" value="[^"]*"', "", text)  # per session
    return {"api": api, "page": text}


def _notebook_answer(root: Path) -> dict[str, Any]:
    """A notebook's selection: a box and a period of the store entry, and its mean."""
    import oceandata

    ds = oceandata.open_dataset(STORE_ENTRY, catalog=root, bbox=(150, -10, 220, 30),
                                time=("1990", "2005"))
    sst = ds["sst"].load()
    return {"shape": sst.shape, "values": sst.values, "mean": float(sst.mean()),
            "time": ds["time"].values}


def test_gc_is_refused_before_any_drilled_backup(platform: Platform) -> None:
    proc = run("store", "gc", str(platform.cobe), "--older-than", "1", ok=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused" in lines[0] and "oceandata admin drill" in lines[0]
    assert "Traceback" not in proc.stderr
    assert len(run("store", "log", str(platform.cobe), "--json").stdout) > 0


def test_backup_then_destroy_restore_gives_the_same_answers(platform: Platform) -> None:
    data = platform.data
    with running_hub(data) as hub:
        wait_for_service(hub)
        admin = admin_client(hub)
        partner = new_user(hub, admin, "partnerbk")
        body = {"project_title": "Backups of the South China Sea", "pi": "Dr. R. Store",
                "institution": "Partner University", "justification": "Drills.",
                "core_hours": 500, "max_cores": 16, "memory_per_job_gb": 32,
                "storage_gb": 200, "datasets": [STORE_ENTRY],
                "start_date": (dt.date.today() - dt.timedelta(days=1)).isoformat(),
                "end_date": (dt.date.today() + dt.timedelta(days=90)).isoformat()}
        r = partner.api("POST", f"{SERVICE}/api/allocations", json=body)
        assert r.status_code == 201, r.text
        alloc_id = r.json()["id"]
        r = admin.api("POST", f"{SERVICE}/api/allocations/{alloc_id}/approve",
                      json={"changes": {"core_hours": 300}, "note": "drill first"})
        assert r.status_code == 200, r.text
        before = _allocation_answers(hub, partner, alloc_id)
        assert before["api"][f"allocations/{alloc_id}"]["core_hours"] == 300.0
        assert "Backups of the South China Sea" in before["page"]
        notebook = _notebook_answer(platform.root)

        backup = json.loads(run("admin", "backup", "--json").stdout)
        drill = run("admin", "drill")
        assert "drill PASSED" in drill.stdout
    platform.partner, platform.alloc_id = partner, alloc_id

    # what the manifest holds
    by_path = {s["path"]: s for s in backup["stores"]}
    assert set(by_path) == {str(platform.sst), str(platform.cobe)}
    assert by_path[str(platform.sst)]["entries"] == [STORE_ENTRY]
    assert by_path[str(platform.cobe)]["commits"] == 3  # repository creation + 2 ingests
    assert all(s["problems"] == [] and s["digests"] for s in backup["stores"])
    dbs = {d["name"]: d for d in backup["databases"]}
    assert {"hub", "alloc", "audit"} <= {n for n, d in dbs.items() if d.get("file")}
    assert dbs["alloc"]["tables"]["allocations"] >= 1
    assert dbs["hub"]["tables"]["users"] >= 2
    assert dbs["audit"]["audit_head"]["id"] >= 1
    report = sorted((data / "drills").glob("drill-*.json"))[-1]
    doc = json.loads(report.read_text())
    assert doc["ok"] and doc["rto_seconds"] > 0 and doc["rpo_seconds"] >= 0
    assert doc["snapshot"]["id"] == backup["snapshot"]["id"]
    assert doc["audit"]["restored_chain"]["ok"] and doc["audit"]["live_has_head"]
    assert report.with_suffix(".md").read_text().startswith("# Restore drill")

    # destroy the live copies: both stores and every database
    shutil.rmtree(data / "stores")
    for db in (data / "alloc" / "alloc.sqlite", data / "hub" / "jupyterhub.sqlite",
               data / "hub" / "dask-gateway.sqlite", data / "audit.sqlite"):
        for part in db.parent.glob(db.name + "*"):
            part.unlink()
    import oceandata

    with pytest.raises(oceandata.errors.OceandataError):
        oceandata.open_dataset(STORE_ENTRY, catalog=platform.root)

    target = data.parent / "restored"
    restored = json.loads(run("admin", "restore", "--snapshot", "latest", "--to", str(target),
                              "--in-place", "--json").stdout)
    assert set(restored["replaced"]) == {str(platform.sst), str(platform.cobe)}
    # the documented procedure, step 3 (databases) as printed, run by a shell
    commands = [ln.strip() for ln in restored["procedure"] if ln.strip().startswith("rm -f ")]
    assert len(commands) == len([d for d in backup["databases"] if d.get("file")])
    for command in commands:
        subprocess.run(["bash", "-c", command], check=True)

    after_notebook = _notebook_answer(platform.root)
    assert after_notebook["shape"] == notebook["shape"]
    np.testing.assert_array_equal(after_notebook["values"], notebook["values"])
    np.testing.assert_array_equal(after_notebook["time"], notebook["time"])
    assert after_notebook["mean"] == notebook["mean"]
    with running_hub(data) as hub:
        wait_for_service(hub)
        partner.hub = hub
        assert partner.login()  # the account and its password came back with the hub db
        after = _allocation_answers(hub, partner, alloc_id)
    assert after["api"] == before["api"]
    assert after["page"] == before["page"]


def test_gc_is_allowed_after_a_drilled_backup_and_the_backup_keeps_the_old_version(
        platform: Platform) -> None:
    """cutoff between the second commit and the drilled backup: the first commit goes."""
    from oceandata.ingest import log, open_store

    versions = [v for v in log(platform.cobe) if v.metadata.get("sources")]
    assert len(versions) == 2
    newest, oldest = versions
    old_values = open_store(platform.cobe, version=oldest.id).sst.values
    cutoff = dt.datetime.fromisoformat(newest.written_at) + dt.timedelta(seconds=1)
    code = ("import datetime as dt, json, sys\n"
            "from oceandata.governance.backup import gc_store\n"
            "print(json.dumps(gc_store(sys.argv[1], "
            "older_than=dt.datetime.fromisoformat(sys.argv[2]))))")
    proc = subprocess.run([sys.executable, "-c", code, str(platform.cobe), cutoff.isoformat()],
                          capture_output=True, text=True, timeout=600)
    OUTPUTS.extend([proc.stdout, proc.stderr])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert oldest.id in result["expired"] and result["snapshots_deleted"] >= 1
    assert oldest.id not in [v.id for v in log(platform.cobe)]
    # a cutoff after the drilled backup is refused (one line, exit 2)
    proc = run("store", "gc", str(platform.cobe), "--older-than", "0.00001", ok=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "refused" in proc.stderr
    assert run("store", "gc", str(platform.cobe), "--older-than", "1").returncode == 0

    # what gc deleted is still in the backup
    target = platform.data.parent / "restored-gc"
    run("admin", "restore", "--snapshot", "latest", "--to", str(target))
    copy = target / "stores" / str(platform.cobe).lstrip("/")
    np.testing.assert_array_equal(open_store(copy, version=oldest.id).sst.values, old_values)
    proc = run("admin", "restore", "--snapshot", "latest", "--to", str(target), ok=False)
    assert proc.returncode == 2 and "not empty" in proc.stderr

    from oceandata.governance import audit

    actions = [(r["action"], r["outcome"]) for r in audit.read(action="store.gc")]
    assert ("store.gc", "ok") in actions and ("store.gc", "denied") in actions
    assert {r["action"] for r in audit.read(action="backup.")} >= {"backup.restore"}


def _blob_of(path_in_snapshot: str, snapshot: str) -> tuple[Path, int, int]:
    """The pack file, offset and length of the first blob of a file in a snapshot."""
    tree = json.loads(restic("cat", "snapshot", snapshot))["tree"]
    *folders, name = path_in_snapshot.strip("/").split("/")
    for part in folders:
        nodes = json.loads(restic("cat", "blob", tree))["nodes"]
        tree = next(n for n in nodes if n["name"] == part)["subtree"]
    node = next(n for n in json.loads(restic("cat", "blob", tree))["nodes"]
                if n["name"] == name)
    blob = node["content"][0]
    for index in restic("list", "index").split():
        for pack in json.loads(restic("cat", "index", index))["packs"]:
            for item in pack["blobs"]:
                if item["id"] == blob:
                    repo = Path(os.environ["OCEANDATA_DATA_DIR"]) / "backup" / "restic"
                    return (repo / "data" / pack["id"][:2] / pack["id"], item["offset"],
                            item["length"])
    raise AssertionError(f"blob {blob} of {path_in_snapshot} is in no index")


def test_drill_fails_naming_the_store_when_a_backed_up_chunk_is_corrupted(
        platform: Platform) -> None:
    backup = json.loads(run("admin", "backup", "--json").stdout)
    run("admin", "drill")  # intact: passes
    sst = next(s for s in backup["stores"] if s["path"] == str(platform.sst))
    chunks = sorted((platform.sst / "chunks").iterdir(), key=lambda p: p.stat().st_size)
    victim = f"{sst['copy']}/chunks/{chunks[-1].name}"  # the largest: an sst chunk
    pack, offset, length = _blob_of(victim, backup["snapshot"]["id"])
    os.chmod(pack, 0o600)
    data = bytearray(pack.read_bytes())
    middle = offset + length // 2
    data[middle:middle + 32] = bytes(b ^ 0xFF for b in data[middle:middle + 32])
    pack.write_bytes(bytes(data))

    proc = run("admin", "drill", ok=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "drill failed" in lines[0] and str(platform.sst) in lines[0]
    assert "Traceback" not in proc.stderr
    report = json.loads(sorted((platform.data / "drills").glob("drill-*.json"))[-1]
                        .read_text())
    assert not report["ok"]
    bad = {s["path"]: s for s in report["stores"]}
    assert not bad[str(platform.sst)]["restored_ok"] and bad[str(platform.cobe)]["restored_ok"]
    assert bad[str(platform.sst)]["live"] == "same"  # the live store itself is intact
    snaps = json.loads(run("admin", "snapshots", "--json").stdout)
    assert snaps[-1]["drill"] == "failed" and snaps[0]["drill"] == "passed"


def test_the_password_file_is_private_and_never_shown(platform: Platform) -> None:
    secret = platform.data / "secrets" / "restic-password"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    password = secret.read_text().strip()
    assert len(password) >= 32
    assert OUTPUTS and not any(password in text for text in OUTPUTS)
    places = [*(platform.data / "drills").glob("drill-*"),
              *(platform.data / "backup" / "manifests").glob("*.json"),
              *(platform.data / "hub").glob("*.log")]
    assert places and not any(password in p.read_text(errors="replace") for p in places)
    from oceandata.governance import audit

    records = json.dumps(audit.read())
    assert "backup.create" in records and password not in records
    # and not in the backup either: the restored copy holds every secret but this one
    listing = restic("ls", "latest")
    assert "/secrets/" in listing and "restic-password" not in listing


def test_postgresql_database_is_dumped_counted_and_restored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The allocations database on PostgreSQL: pg_dump in the counting transaction's
    snapshot, counts read back from the dump by the drill, restored by the procedure."""
    from oceandata.alloc import core, db
    from oceandata.config import get_settings
    from tests.pg_helpers import PostgresUnavailable, running_postgres, skip_or_fail

    try:
        with running_postgres() as pg:
            url = pg.url_for(pg.create_database("alloc"), scheme="postgresql+psycopg2")
            monkeypatch.setenv("OCEANDATA_DATA_DIR", str(tmp_path / "var"))
            monkeypatch.setenv("OCEANDATA_ALLOC_DB_URL", url)
            get_settings(reload=True)
            db.upgrade(url)
            today = dt.date.today()
            body = {"project_title": "Dumps", "pi": "Dr. P", "institution": "Partner U",
                    "justification": "Drills.", "core_hours": 10, "max_cores": 4,
                    "memory_per_job_gb": 8, "storage_gb": 10,
                    "start_date": today - dt.timedelta(days=1),
                    "end_date": today + dt.timedelta(days=30), "datasets": [STORE_ENTRY]}
            with db.session_scope(url) as s:
                for owner in ("pia", "pib"):
                    alloc = core.request_allocation(s, owner, body)
                core.decide(s, alloc.id, "admin", True, approve=True)
            with db.session_scope(url) as s:
                before = core.usage_summary(s, None), [a.id for a in core.list_visible(
                    s, "admin", True)]

            manifest = json.loads(run("admin", "backup", "--json").stdout)
            rec = next(d for d in manifest["databases"] if d["name"] == "alloc")
            assert rec["kind"] == "postgresql" and rec["file"].endswith(".pgdump")
            assert pg.password not in json.dumps(manifest)  # the URL is shown without it
            assert rec["tables"]["public.allocations"] == 2
            assert rec["tables"]["public.allocation_audit"] == 3
            run("admin", "drill")
            report = json.loads(sorted((tmp_path / "var" / "drills").glob("drill-*.json"))[-1]
                                .read_text())
            alloc_rows = next(d for d in report["databases"] if d["name"] == "alloc")
            assert alloc_rows["tables"]["public.allocations"] == {
                "backup": 2, "restored": 2, "live": 2, "delta": 0}

            db.engine_for(url).dispose()
            subprocess.run(["psql", "-q", "-c", "DROP SCHEMA public CASCADE; CREATE SCHEMA "
                            "public"], env=dict(os.environ, PGDATABASE="alloc", PGHOST=pg.host,
                                                PGPORT=str(pg.port), PGUSER=pg.user,
                                                PGPASSWORD=pg.password), check=True)
            restored = json.loads(run("admin", "restore", "--snapshot", "latest", "--to",
                                      str(tmp_path / "restored"), "--json").stdout)
            step = next(ln for ln in restored["procedure"] if "pg_restore" in ln)
            dump = step.split()[-1]
            subprocess.run(["pg_restore", "--clean", "--if-exists", "--no-owner", "-d",
                            "alloc", dump], env=dict(os.environ, PGHOST=pg.host,
                                                     PGPORT=str(pg.port), PGUSER=pg.user,
                                                     PGPASSWORD=pg.password), check=True)
            with db.session_scope(url) as s:
                assert (core.usage_summary(s, None), [a.id for a in core.list_visible(
                    s, "admin", True)]) == before
    except PostgresUnavailable as exc:
        skip_or_fail(f"PostgreSQL cannot be started here: {exc}")
    finally:
        monkeypatch.undo()
        get_settings(reload=True)
