"""Project workspaces: measurement, GB-days, quota lines (unit), and on the shared running
platform (:func:`conftest.projects_hub`): approval makes the group-owned setgid workspace,
members' accounts (and their batch jobs) write and read it, anyone else cannot list it,
``GET api/projects/{id}/storage`` measures and records for members only, the client
helpers, the 80%/100% banner, a job refused when the storage is full, and GB-days on the
usage page and CSV (issue 20)."""

from __future__ import annotations

import datetime as dt
import grp
import os
import re
import stat
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from oceandata.alloc import core, db, projects, storage_api, workspaces
from oceandata.alloc.cli import AllocationNotFound
from oceandata.alloc.models import Allocation, StorageUsage
from oceandata.errors import UsageError
from oceandata.hub import accounts

SERVICE = "/services/allocations"
TODAY = dt.date.today()
UTC = dt.UTC


# --- unit ---------------------------------------------------------------------------------


def test_workspace_bytes_counts_blocks_once_and_follows_no_link(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "stores").mkdir(parents=True)
    (ws / "stores" / "a.bin").write_bytes(os.urandom(100_000))
    os.link(ws / "stores" / "a.bin", ws / "stores" / "a-again.bin")
    outside = tmp_path / "big.bin"
    outside.write_bytes(os.urandom(2_000_000))
    (ws / "link").symlink_to(outside)
    (ws / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    total = workspaces.workspace_bytes(ws)
    blocks = sum(os.lstat(p).st_blocks * 512 for p in (
        ws, ws / "stores", ws / "stores" / "a.bin", ws / "link", ws / "dirlink"))
    assert total == blocks
    assert 100_000 <= total < 2_000_000  # the linked file outside is not counted
    assert workspaces.workspace_bytes(tmp_path / "missing") == 0


@pytest.fixture
def alloc_db(tmp_path: Path) -> tuple[str, int]:
    url = f"sqlite:///{tmp_path / 'alloc.sqlite'}"
    db.upgrade(url)
    with db.session_scope(url) as s:
        alloc = core.request_allocation(s, "pb-unit", {
            "project_title": "Storage", "pi": "Dr S", "institution": "NMDC",
            "justification": "GB-days", "core_hours": 10, "max_cores": 1,
            "memory_per_job_gb": 1, "storage_gb": 2,
            "start_date": TODAY.isoformat(), "end_date": (TODAY + dt.timedelta(30)).isoformat()})
        core.decide(s, alloc.id, "pb-admin", True, approve=True)
        return url, alloc.id


def test_gb_days_are_charged_at_the_size_held_and_split_at_midnight(alloc_db) -> None:
    url, alloc_id = alloc_db
    day = dt.date(2026, 3, 1)
    t0 = dt.datetime.combine(day, dt.time(23), UTC)
    with db.session_scope(url) as s:
        workspaces.record_storage(s, alloc_id, 3 * 10**9, at=t0)  # the first charges nothing
        workspaces.record_storage(s, alloc_id, 10**9, at=t0 + dt.timedelta(hours=2))
        workspaces.record_storage(s, alloc_id, 10**9, at=t0 + dt.timedelta(hours=14))
    with db.session_scope(url) as s:
        rows = {r.day: r for r in s.scalars(select(StorageUsage))}
        first, second = rows[day], rows[day + dt.timedelta(days=1)]
        # 3 GB held 23:00-00:00 on day 1, 00:00-01:00 on day 2; then 1 GB for 12 h
        assert first.gb_days == pytest.approx(3 / 24)
        assert second.gb_days == pytest.approx(3 / 24 + 12 / 24)
        assert first.peak_bytes == 3 * 10**9 and first.bytes == 3 * 10**9
        assert second.bytes == 10**9 and second.peak_bytes == 3 * 10**9
        [summary] = workspaces.storage_summary(s, [alloc_id])
        assert summary["gb_days"] == pytest.approx(6 / 24 + 12 / 24)
        assert summary["bytes"] == 10**9
        [row] = core.storage_rows(s, "pb-unit")
        assert (row["source"], row["user"], row["records"]) == ("storage", "(project)", 2)
        assert row["gb_days"] == pytest.approx(0.75)
        assert core.storage_rows(s, "pb-nobody") == []


def test_quota_refusal_is_one_line_and_warnings_start_at_80_percent(alloc_db) -> None:
    url, alloc_id = alloc_db
    with db.session_scope(url) as s:
        alloc = s.get(Allocation, alloc_id)
        assert workspaces.storage_status(alloc, int(1.59e9)).message() is None
        warn = workspaces.storage_status(alloc, int(1.6e9)).message()
        assert warn == (f"project {alloc_id}'s workspace is at 80% of its quota: "
                        "1.6 GB used of 2 GB")
        assert "is full" in workspaces.storage_status(alloc, int(2e9)).message()
        workspaces.check_storage(alloc, int(1e9), int(1e9))  # exactly the quota fits
        with pytest.raises(core.QuotaExceeded) as refused:
            workspaces.check_storage(alloc, int(1e9), int(1e9) + 1)
        line = str(refused.value)
        assert "\n" not in line and "1 GB of its 2 GB quota" in line
        workspaces.record_storage(s, alloc_id, int(1.7e9))
        assert workspaces.storage_warnings(s, "pb-unit") == [
            f"project {alloc_id}'s workspace is at 85% of its quota: 1.7 GB used of 2 GB"]
        assert workspaces.storage_warnings(s, "pb-other") == []


def test_walks_are_shared_reused_while_fresh_and_forced_after_a_write(
        alloc_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk is the costly part: checks reuse one younger than
    OCEANDATA_STORAGE_FRESH_SECONDS (plus what the service wrote since), a measurement
    walks anew, and one project is walked by one call at a time."""
    import threading

    url, alloc_id = alloc_db
    data = tmp_path / "var"
    ws = workspaces.workspace_path(alloc_id, data)
    (ws / "uploads").mkdir(parents=True)
    walks, active, most = [], [0], [0]
    real = workspaces.workspace_bytes
    counter = threading.Lock()
    arrived: list[str] = []  # calls that reached the project's walk lock
    all_arrived = threading.Event()
    hold = [0]  # callers a walk waits for before it ends (0: none)

    def counted(path: Path) -> int:
        with counter:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            walks.append(path)
            if hold[0]:  # the others have asked while this walk runs
                assert all_arrived.wait(60)
            return real(path)
        finally:
            with counter:
                active[0] -= 1

    real_lock = workspaces._walk_lock

    def arriving(key: str):
        with counter:
            arrived.append(key)
            if hold[0] and len(arrived) >= hold[0]:
                all_arrived.set()
        return real_lock(key)

    monkeypatch.setattr(workspaces, "_walk_lock", arriving)

    monkeypatch.setattr(workspaces, "workspace_bytes", counted)
    monkeypatch.setenv(workspaces.FRESH_ENV, "3600")
    (ws / "uploads" / "a").write_bytes(b"1" * 8192)
    with db.session_scope(url) as s:
        alloc = s.get(Allocation, alloc_id)
        first = workspaces.project_bytes(s, alloc_id, data)
        assert len(walks) == 1 and first >= 8192
        (ws / "uploads" / "b").write_bytes(b"2" * 8192)  # by a user's process, say
        assert workspaces.project_bytes(s, alloc_id, data) == first  # reused
        workspaces.note_written(alloc_id, 4096, data)  # an upload's chunk, by the service
        assert workspaces.project_bytes(s, alloc_id, data) == first + 4096
        assert len(walks) == 1
        # a measurement (after a write) walks now; the note is in what it found
        status = workspaces.measure(s, alloc, data)
        assert len(walks) == 2 and status.used_bytes == real(ws) >= first + 8192
        assert workspaces.project_bytes(s, alloc_id, data) == status.used_bytes
        # four forced measurements at once, all asking while the first walk runs: never
        # two walks of the project together, and the three waiting share one more walk
        # at most (a walk that started after they asked)
        before = len(walks)
        arrived.clear()
        hold[0] = 4
        results: list[int] = []

        def measure_now() -> None:
            with db.session_scope(url) as own:
                results.append(workspaces.project_bytes(own, alloc_id, data, max_age=0))

        threads = [threading.Thread(target=measure_now) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        hold[0] = 0
        assert results == [status.used_bytes] * 4 and most[0] == 1
        assert len(walks) - before in (1, 2)
    monkeypatch.setenv(workspaces.FRESH_ENV, "0")  # off: every call walks
    with db.session_scope(url) as s:
        before = len(walks)
        workspaces.project_bytes(s, alloc_id, data)
        workspaces.project_bytes(s, alloc_id, data)
        assert len(walks) == before + 2
    for bad in ("-1", "soon", "inf"):
        with pytest.raises(UsageError, match=workspaces.FRESH_ENV):
            workspaces.fresh_seconds({workspaces.FRESH_ENV: bad})
    assert workspaces.fresh_seconds({}) == 10.0


def test_group_names_and_their_prefix() -> None:
    assert workspaces.group_name(7, {}) == "oceandata-7"
    assert workspaces.group_name(7, {workspaces.GROUP_PREFIX_ENV: "staging-p"}) == "staging-p7"
    for bad in ("Upper", "a b", "x" * 23, "../p"):
        with pytest.raises(UsageError, match=workspaces.GROUP_PREFIX_ENV):
            workspaces.group_name(7, {workspaces.GROUP_PREFIX_ENV: bad})


@pytest.mark.parametrize("alloc_id", [1, 7, 42, 10**9])
def test_no_users_account_can_hold_a_project_group(alloc_id: int) -> None:
    """Hub user ``p7``'s account (and own group) is ``oceandata-p7``: had project 7's group
    that name, user p7 would be in project 7 without being a member."""
    name = workspaces.group_name(alloc_id, {})
    user = name.removeprefix(accounts.PREFIX)
    assert not (name.startswith(accounts.PREFIX) and accounts.HUB_NAME.match(user)), name
    # nor can an operator's prefix make one
    with pytest.raises(UsageError, match="account"):
        workspaces.group_name(alloc_id, {workspaces.GROUP_PREFIX_ENV: "oceandata-p"})


@pytest.mark.skipif(os.geteuid() != 0, reason="makes Unix accounts and groups (root)")
def test_a_group_that_is_an_accounts_own_is_never_a_projects(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = f"pbt{uuid.uuid4().hex[:5]}-"
    monkeypatch.setenv(workspaces.GROUP_PREFIX_ENV, prefix)
    # an account whose own group has the name project 3's group would get
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                    "--shell", "/usr/sbin/nologin", f"{prefix}3"], check=True)
    try:
        with pytest.raises(workspaces.WorkspaceError, match="own group of the account"):
            workspaces.sync_workspace(3, [], tmp_path)
        assert not (tmp_path / "projects" / "3").exists()
    finally:
        subprocess.run(["userdel", f"{prefix}3"], check=False)


def test_single_account_mode_keeps_workspaces_private_and_warns_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setenv(accounts.ENV, "single")
    monkeypatch.setattr(workspaces, "_single_warned", False)
    with caplog.at_level("WARNING", logger=workspaces.__name__):
        first = workspaces.sync_workspace(3, ["pb-nobody"], tmp_path)
        workspaces.sync_workspace(4, [], tmp_path)
    assert first == tmp_path / "projects" / "3"
    for folder in (first, *(first / sub for sub in workspaces.WORKSPACE_FOLDERS)):
        info = folder.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.geteuid()
    assert [r.message for r in caplog.records].count(
        "single-account mode: project workspaces are 0700 of the platform's account and "
        "members are separated by the services only") == 1
    with pytest.raises(KeyError):
        grp.getgrnam(workspaces.group_name(3) + "-none")  # no group was made
    (tmp_path / "projects" / "5").symlink_to(tmp_path)  # a link where a workspace goes
    with pytest.raises(workspaces.WorkspaceError, match="is not a folder"):
        workspaces.sync_workspace(5, [], tmp_path)


def test_scan_interval_is_read_from_the_environment() -> None:
    assert storage_api.scan_interval({}) == 300
    assert storage_api.scan_interval({storage_api.SCAN_ENV: "0"}) == 0
    assert storage_api.scan_interval({storage_api.SCAN_ENV: "12.5"}) == 12.5
    for bad in ("-1", "soon", "nan"):
        with pytest.raises(UsageError, match="OCEANDATA_STORAGE_SCAN_SECONDS"):
            storage_api.scan_interval({storage_api.SCAN_ENV: bad})


# --- on the running platform ------------------------------------------------------------------


def _name(kind: str) -> str:
    return f"pb-{kind}{uuid.uuid4().hex[:5]}"


def api(user, method: str, path: str, **kw):
    return user.api(method, f"{SERVICE}/api/{path}", allow_redirects=False, **kw)


def page(user, path: str = "") -> str:
    """An HTML page of the service, with the user's token (as a browser with a session)."""
    r = user.api("GET", f"{SERVICE}/{path}", allow_redirects=False)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), r.text
    return r.text


def _request(user, storage_gb: float) -> int:
    r = api(user, "POST", "allocations", json={
        "project_title": f"Workspace of {user.name}", "pi": "Dr W. Space",
        "institution": "NMDC", "justification": "project workspaces",
        "core_hours": 50, "max_cores": 2, "memory_per_job_gb": 2,
        "storage_gb": storage_gb, "start_date": (TODAY - dt.timedelta(days=1)).isoformat(),
        "end_date": (TODAY + dt.timedelta(days=30)).isoformat()})
    assert r.status_code == 201, r.text
    return r.json()["id"]


@dataclass
class Projects:
    """Project one (1 MB quota: PI and a member), project two (its PI only), an outsider."""

    hub: object
    admin: object
    pi1: object
    member: object
    pi2: object
    outsider: object
    p1: int
    p2: int
    approved: dict | None = None

    @property
    def data(self) -> Path:
        return self.hub.runtime.data_dir

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.data / 'alloc' / 'alloc.sqlite'}"

    def ws(self, alloc_id: int) -> Path:
        return workspaces.workspace_path(alloc_id, self.data)


def _resync(two: Projects) -> None:
    """Project one's group set to its members (what the service does after the PI's "add
    member": the fixture adds the member in the database itself)."""
    with db.session_scope(two.db_url) as s:
        alloc = s.get(Allocation, two.p1)
        names = [m.user for m in projects.members(s, alloc)]
    workspaces.sync_workspace(two.p1, names, two.data)


def _as(user, *cmd: str) -> subprocess.CompletedProcess:
    """Run *cmd* as the user's Unix account (initgroups: its groups as the database has
    them now)."""
    return subprocess.run(["runuser", "-u", accounts.unix_name(user.name), "--", *cmd],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def two(projects_hub, projects_admin) -> Projects:
    from hub_helpers import new_user

    users = {k: new_user(projects_hub, projects_admin, _name(k))
             for k in ("pi", "mem", "pj", "out")}
    p1, p2 = _request(users["pi"], 0.001), _request(users["pj"], 50)
    for alloc_id in (p1, p2):
        r = api(projects_admin, "POST", f"allocations/{alloc_id}/approve", json={})
        assert r.status_code == 200, r.text
    found = Projects(projects_hub, projects_admin, users["pi"], users["mem"], users["pj"],
                     users["out"], p1, p2)
    # the groups as approval left them (read at once: groups are the machine's)
    found.approved = {a: grp.getgrnam(workspaces.group_name(a)).gr_mem for a in (p1, p2)}
    # a member added (what the PI's "add member" does: helper A's route)
    with db.session_scope(found.db_url) as s:
        projects.add_member(s, p1, users["pi"].name, False, users["mem"].name)
    _resync(found)
    # the outsider has a Unix account too (as after any notebook or job of theirs)
    accounts.ensure_account(users["out"].name, found.data)
    return found


def test_approval_makes_the_group_owned_setgid_workspace(two: Projects) -> None:
    top = two.data / "projects"
    assert stat.S_IMODE(top.stat().st_mode) == 0o711 and top.stat().st_uid == 0
    for alloc_id, pi in ((two.p1, two.pi1), (two.p2, two.pi2)):
        group = grp.getgrnam(workspaces.group_name(alloc_id))
        assert two.approved[alloc_id] == [accounts.unix_name(pi.name)]  # the PI at approval
        ws = two.ws(alloc_id)
        for folder in (ws, *(ws / sub for sub in workspaces.WORKSPACE_FOLDERS)):
            info = folder.stat()
            assert (info.st_uid, info.st_gid) == (0, group.gr_gid), folder
            assert stat.S_IMODE(info.st_mode) == 0o2770, (folder, oct(info.st_mode))
    # with the member added: the group has exactly both
    assert sorted(grp.getgrnam(workspaces.group_name(two.p1)).gr_mem) == sorted(
        accounts.unix_name(u.name) for u in (two.pi1, two.member))


def test_members_share_the_workspace_and_nobody_else_can_list_it(two: Projects) -> None:
    ws = two.ws(two.p1)
    note = ws / "uploads" / "note.txt"
    done = _as(two.member, "sh", "-c", f"echo shared > {note}")
    assert done.returncode == 0, done.stderr
    assert note.stat().st_gid == grp.getgrnam(workspaces.group_name(two.p1)).gr_gid  # setgid
    done = _as(two.pi1, "cat", str(note))
    assert (done.returncode, done.stdout) == (0, "shared\n"), done.stderr
    for intruder in (two.outsider, two.pi2):  # no member, or a member of another project
        for cmd in (["ls", str(ws)], ["ls", str(ws / "uploads")], ["cat", str(note)]):
            done = _as(intruder, *cmd)
            assert done.returncode != 0 and "Permission denied" in done.stderr, (cmd, done)
        done = _as(intruder, "ls", str(ws.parent))  # nobody lists the projects either
        assert done.returncode != 0 and "Permission denied" in done.stderr


def test_a_members_notebook_kernel_has_the_group(two: Projects) -> None:
    """The hub's spawner sets the account's groups (getgrouplist) at the server's start."""
    note = two.ws(two.p1) / "uploads" / "note.txt"
    two.member.start_server()
    try:
        out = two.member.run_code(
            "import grp, os\n"
            "print(sorted(grp.getgrgid(g).gr_name for g in os.getgroups()))\n"
            f"print(open({str(note)!r}).read().strip())\n")
    finally:
        two.member.api("DELETE", f"/hub/api/users/{two.member.name}/server")
    groups, text = out.strip().splitlines()[-2:]
    assert workspaces.group_name(two.p1) in groups and text == "shared"
    assert workspaces.group_name(two.p2) not in groups


def test_a_members_dask_cluster_has_the_group(two: Projects) -> None:
    """dask-gateway's local backend sets the account's groups from the group database."""
    gid = grp.getgrnam(workspaces.group_name(two.p1)).gr_gid
    gateway = two.member.gateway()
    options = gateway.cluster_options()
    options.worker_cores, options.worker_memory = 1, 1
    cluster = gateway.new_cluster(options)
    try:
        cluster.scale(1)
        with cluster.get_client() as client:
            client.wait_for_workers(1, timeout=120)
            assert gid in client.run_on_scheduler(os.getgroups)
            assert all(gid in groups for groups in client.run(os.getgroups).values())
    finally:
        cluster.shutdown()
        gateway.close()


def _wait_job(user, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = api(user, "GET", f"jobs/{job_id}").json()
        if job["state"] not in ("PENDING", "RUNNING"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']}"
        time.sleep(0.2)  # poll interval of the job's state in the service


def _submit(user, alloc_id: int, script: str):
    return api(user, "POST", "jobs", json={
        "script": script, "script_name": "w.py", "cores": 1, "memory": "512MB",
        "walltime": "5:00", "backend": "local", "allocation_id": alloc_id})


def test_a_members_job_writes_the_workspace_and_its_outputs_count(two: Projects) -> None:
    ws = two.ws(two.p1)
    r = _submit(two.member, two.p1, (
        "import os, pathlib\n"
        f"pathlib.Path({str(ws / 'stores' / 'from-job.txt')!r}).write_text('job')\n"
        "pathlib.Path(os.environ['OCEANDATA_OUTPUT_DIR'], 'out.bin')"
        ".write_bytes(os.urandom(300_000))\n"))
    assert r.status_code == 201, r.text
    job = _wait_job(two.member, r.json()["id"])
    logs = api(two.member, "GET", f"jobs/{job['id']}/logs").text
    assert job["state"] == "COMPLETED", (job, logs)
    assert (ws / "stores" / "from-job.txt").read_text() == "job"  # the job had the group
    r = api(two.member, "GET", f"projects/{two.p1}/storage")
    assert r.status_code == 200, r.text
    # the job's outputs are counted with the workspace
    assert r.json()["used_bytes"] >= 300_000 + workspaces.workspace_bytes(ws)


def test_storage_api_measures_records_and_answers_members_only(two: Projects) -> None:
    import requests

    for user in (two.pi1, two.member, two.admin):
        r = api(user, "GET", f"projects/{two.p1}/storage")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["allocation_id"] == two.p1 and body["quota_bytes"] == 1_000_000
        assert body["used_bytes"] > 0 and body["workspace"] == str(two.ws(two.p1))
    with db.session_scope(two.db_url) as s:
        rows = s.scalars(select(StorageUsage).where(StorageUsage.allocation_id == two.p1))
        assert [r.bytes for r in rows][-1] == body["used_bytes"]  # recorded
    for user in (two.outsider, two.pi2):
        r = api(user, "GET", f"projects/{two.p1}/storage")
        assert r.status_code == 404 and r.json() == {"error": f"no project {two.p1} of yours"}
    assert api(two.outsider, "GET", "projects/999999/storage").status_code == 404
    r = requests.get(f"{two.hub.url}{SERVICE}/api/projects/{two.p1}/storage", timeout=30)
    assert r.status_code == 401
    r = api(two.pi2, "GET", f"projects/{two.p2}/storage", params={"incoming": 10**12})
    assert r.status_code == 403
    line = r.json()["error"]
    assert "\n" not in line and "50 GB quota" in line and "would exceed it" in line
    assert api(two.pi2, "GET", f"projects/{two.p2}/storage",
               params={"incoming": -1}).status_code == 422
    r = api(two.pi2, "GET", f"projects/{two.p2}/storage", params={"incoming": 10**6})
    assert r.status_code == 200 and r.json()["level"] is None


def test_client_helpers_check_and_measure_with_the_users_token(
        two: Projects, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("OCEANDATA_ALLOC_URL", f"{two.hub.url}{SERVICE}")
    monkeypatch.delenv("OCEANDATA_TOKEN", raising=False)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", two.pi2.token)
    answer = workspaces.remote_measure(two.p2)
    assert answer["allocation_id"] == two.p2 and answer["message"] is None
    assert workspaces.remote_check(two.p2, 10**9)["used_bytes"] == answer["used_bytes"]
    with pytest.raises(core.QuotaExceeded, match="would exceed it"):
        workspaces.remote_check(two.p2, 60 * 10**9)
    with pytest.raises(AllocationNotFound, match=f"no project {two.p1} of yours"):
        workspaces.remote_check(two.p1, 1)
    assert capsys.readouterr().err == ""  # below 80%: no warning line


OCEANDATA = str(Path(sys.executable).with_name("oceandata"))


def _submit_cli(two: Projects, user, alloc_id: int, tmp_path: Path) -> subprocess.CompletedProcess:
    """``oceandata submit`` as *user* would run it (their token, the service's URL)."""
    script = tmp_path / "small.py"
    script.write_text("print('small')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OCEANDATA_TOKEN",)}
    env.update(JUPYTERHUB_API_TOKEN=user.token, OCEANDATA_ALLOC_URL=f"{two.hub.url}{SERVICE}")
    return subprocess.run([OCEANDATA, "submit", str(script), "--cores", "1", "--memory",
                           "512MB", "--walltime", "5:00", "--allocation", str(alloc_id)],
                          capture_output=True, text=True, env=env, timeout=120)


def _fill_to(two: Projects, target: int) -> dict:
    """Add a file (as root, group-owned by setgid) until project one measures *target*."""
    used = api(two.pi1, "GET", f"projects/{two.p1}/storage").json()["used_bytes"]
    if target > used:
        (two.ws(two.p1) / "uploads" / f"fill-{uuid.uuid4().hex[:6]}").write_bytes(
            b"\0" * (target - used - 4096))
    r = api(two.pi1, "GET", f"projects/{two.p1}/storage")
    assert r.status_code == 200, r.text
    return r.json()


def test_warning_banner_and_line_at_80_and_100_percent_then_jobs_refused(
        two: Projects, monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path) -> None:
    status = _fill_to(two, 850_000)
    assert status["level"] == "warn", status
    for user in (two.pi1, two.member):
        html = page(user)
        assert 'class="storage-warning"' in html
        assert f"project {two.p1}&#39;s workspace is at 8" in html
    for user in (two.pi2, two.outsider):
        assert 'class="storage-warning"' not in page(user, "usage")
    monkeypatch.setenv("OCEANDATA_ALLOC_URL", f"{two.hub.url}{SERVICE}")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", two.member.token)
    workspaces.remote_measure(two.p1)
    err = capsys.readouterr().err
    assert err.startswith(f"warning: project {two.p1}'s workspace is at 8") and err.count(
        "\n") == 1
    done = _submit_cli(two, two.member, two.p1, tmp_path)  # accepted, with the warning line
    assert done.returncode == 0, done.stderr
    # (its own job folder already counts: the percentage may have grown)
    assert re.fullmatch(rf"warning: project {two.p1}'s workspace is at 8\d% of its quota: "
                        r"\d+ kB used of 1 MB\n", done.stderr), done.stderr
    status = _fill_to(two, 1_010_000)
    assert status["level"] == "full", status
    for user, why in ((two.member, "storage is full"),  # full
                      (two.outsider, f"no allocation {two.p1} of yours")):  # not theirs
        done = _submit_cli(two, user, two.p1, tmp_path)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done
        assert why in done.stderr and "Traceback" not in done.stderr
    assert f"project {two.p1}&#39;s workspace is full" in page(two.member)
    r = _submit(two.member, two.p1, "print('more outputs')\n")
    assert r.status_code == 403, r.text
    line = r.json()["error"]
    assert line.startswith(f"project {two.p1}'s storage is full") and "\n" not in line
    r = _submit(two.pi2, two.p2, "print('fine')\n")  # the other project is not affected
    assert r.status_code == 201, r.text
    assert _wait_job(two.pi2, r.json()["id"])["state"] == "COMPLETED"


def test_usage_page_api_and_csv_show_gb_days(two: Projects) -> None:
    for _ in range(2):  # two measurements at least: the held size is charged between them
        used = api(two.member, "GET", f"projects/{two.p1}/storage").json()["used_bytes"]
    rows = api(two.member, "GET", "usage").json()
    [mine] = [r for r in rows if r["source"] == "storage"]
    assert mine["allocation_id"] == two.p1 and mine["user"] == "(project)"
    assert mine["gb_days"] > 0 and mine["bytes"] == used
    csv = api(two.member, "GET", "usage", params={"csv": 1}).text.splitlines()
    assert csv[0].endswith(",bytes,gb_days")
    assert any(line.startswith(f"{two.p1},(project),storage,0,") for line in csv)
    html = page(two.member, "usage")
    assert 'id="storage-chart"' in html and f"project #{two.p1}: " in html
    # nobody else sees project one's storage
    for user in (two.outsider, two.pi2):
        assert all(r["allocation_id"] != two.p1 for r in api(user, "GET", "usage").json())
        assert f"{two.p1},(project)" not in api(user, "GET", "usage",
                                                params={"csv": 1}).text
    assert api(two.pi2, "GET", f"projects/{two.p2}/storage").status_code == 200
    admin_rows = api(two.admin, "GET", "usage").json()
    assert {two.p1, two.p2} <= {r["allocation_id"] for r in admin_rows
                                if r["source"] == "storage"}
