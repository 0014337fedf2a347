"""Batch jobs on the local backend, driven through :mod:`oceandata.jobs.service`.

No hub: a SQLite database in a temporary folder, an allocation requested and approved
through :mod:`oceandata.alloc.core`, a :class:`~oceandata.jobs.service.JobRuntime` with
the local backend only. States are polled with short intervals against deadlines.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from oceandata.alloc import core, db
from oceandata.alloc.auth import current_user
from oceandata.alloc.jobs_api import router
from oceandata.alloc.models import Job, JobState, Usage
from oceandata.hub.security import HubUser
from oceandata.jobs import JobSettings, service
from oceandata.jobs.backends import LOST_REASON
from oceandata.jobs.service import JobFinished, JobRuntime, PathRefused
from oceandata.jobs.spec import make_spec

OK_SCRIPT = """\
import os, sys
from pathlib import Path
out = Path(os.environ["OCEANDATA_OUTPUT_DIR"])
(out / "sub").mkdir(parents=True, exist_ok=True)
(out / "result.txt").write_text(" ".join([os.environ["OCEANDATA_JOB_ID"],
    os.environ["OCEANDATA_JOB_CORES"], os.environ["OCEANDATA_JOB_MEMORY"], *sys.argv[1:]]))
(out / "sub" / "cwd.txt").write_text(os.getcwd())
print("hello from the job", flush=True)
print("secrets:", [k for k in os.environ if "TOKEN" in k], flush=True)
"""
FAIL_SCRIPT = "import sys\nprint('about to fail')\nsys.exit(3)\n"
#: waits for a file named in argv[1] (the test's release), then exits 0
WAIT_SCRIPT = """\
import sys, time
from pathlib import Path
release = Path(sys.argv[1])
while not release.exists():
    time.sleep(0.05)
print("released")
"""
ESCAPE_SCRIPT = """\
import os
from pathlib import Path
out = Path(os.environ["OCEANDATA_OUTPUT_DIR"])
(out / "fine.txt").write_text("fine")
os.symlink("/etc/passwd", out / "passwd-link")
os.symlink(out.parent / "job.log", out / "log-link")
"""


@dataclass
class Env:
    url: str
    tmp: Path
    data: Path
    runtime: JobRuntime
    alloc_id: int
    settings: JobSettings

    def script(self, name: str, text: str) -> Path:
        path = self.tmp / "scripts" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        return path

    def submit(self, script: Path, args: tuple[str, ...] = (), *, user: str = "alice",
               cores: int = 1, memory: str = "1GB", walltime: str = "5:00",
               allocation: int | None = None) -> str:
        spec = make_spec(script, list(args), cores=cores, memory=memory, walltime=walltime,
                         max_cores=self.settings.max_cores,
                         max_walltime_s=self.settings.max_walltime_s)
        with db.session_scope(self.url) as session:
            job = service.submit(session, user, spec, allocation or self.alloc_id, "local",
                                 runtime=self.runtime)
            return job.id

    def job(self, job_id: str) -> Job:
        with db.session_scope(self.url) as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job

    def wait(self, job_id: str, states: set[JobState], timeout: float = 60.0) -> Job:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.state in states:
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job.state} after {timeout} s"
            time.sleep(0.05)

    def usage(self, ref: str | None = None) -> list[Usage]:
        with db.session_scope(self.url) as session:
            query = select(Usage)
            if ref is not None:
                query = query.where(Usage.ref == ref)
            return list(session.scalars(query))


def _allocation(url: str, owner: str, core_hours: float = 1000.0, max_cores: int = 4) -> int:
    today = dt.date.today()
    with db.session_scope(url) as session:
        alloc = core.request_allocation(session, owner, {
            "project_title": "Jobs test", "pi": "Dr Test", "institution": "NMDC",
            "justification": "testing batch jobs", "core_hours": core_hours,
            "max_cores": max_cores, "memory_per_job_gb": 4, "storage_gb": 10,
            "start_date": today - dt.timedelta(days=1),
            "end_date": today + dt.timedelta(days=30)})
        core.decide(session, alloc.id, "admin", True, approve=True)
        return alloc.id


def _settings(max_concurrent: int = 2) -> JobSettings:
    return JobSettings(max_concurrent=max_concurrent, max_cores=4, max_walltime_s=3600,
                       poll_interval=0.2, kill_grace_s=2.0)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    url = f"sqlite:///{tmp_path / 'alloc.sqlite'}"
    db.upgrade(url)
    alloc_id = _allocation(url, "alice")
    settings = _settings()
    runtime = JobRuntime(url, data_dir=tmp_path / "data", settings=settings, slurm=False)
    runtime.start()
    holder = Env(url, tmp_path, tmp_path / "data", runtime, alloc_id, settings)
    try:
        yield holder
    finally:
        holder.runtime.stop(kill_jobs=True)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _charged_matches(env: Env, job: Job) -> None:
    """One usage row for the job, equal to cores x (ended - started) from its own row."""
    rows = env.usage(job.id)
    assert len(rows) == 1, rows
    elapsed = (job.ended_at - job.started_at).total_seconds()
    assert elapsed > 0
    assert rows[0].cores == job.cores
    assert rows[0].seconds == pytest.approx(elapsed, abs=1e-3)
    assert rows[0].core_hours == pytest.approx(job.cores * elapsed / 3600, rel=1e-6)
    assert rows[0].allocation_id == env.alloc_id and rows[0].source == "batch"


# ---------------------------------------------------------------------------- runs


def test_job_runs_and_writes_its_output(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "service-secret")
    job_id = env.submit(env.script("ok.py", OK_SCRIPT), ("a", "b c"), cores=2, memory="512MiB")
    job = env.wait(job_id, {JobState.COMPLETED, JobState.FAILED}, timeout=60)
    assert job.state == JobState.COMPLETED, job.reason
    assert job.exit_code == 0
    folder = env.data / "jobs" / "alice" / job_id
    assert Path(job.workdir) == folder
    assert (folder / "outputs" / "result.txt").read_text() == f"{job_id} 2 512MiB a b c"
    assert (folder / "outputs" / "sub" / "cwd.txt").read_text() == str(folder)
    log = (folder / "job.log").read_text()
    assert "hello from the job" in log
    assert "secrets: []" in log  # the service's hub token is not passed on
    with db.session_scope(env.url) as session:
        assert "hello from the job" in service.logs(session, "alice", job_id)
        listed = service.outputs(session, "alice", job_id)
        assert [f["path"] for f in listed] == ["result.txt", "sub/cwd.txt"]
        assert service.output_file(session, "alice", job_id, "sub/cwd.txt").read_text() == str(folder)
        assert [j.id for j in service.list_jobs(session, "alice")] == [job_id]
        assert service.list_jobs(session, "bob") == []
        with pytest.raises(JobFinished, match="already ended COMPLETED"):
            service.cancel(session, "alice", job_id, runtime=env.runtime)
    _charged_matches(env, job)


def test_failing_job_ends_failed_with_its_exit_code(env: Env) -> None:
    job = env.wait(env.submit(env.script("fail.py", FAIL_SCRIPT)),
                   {JobState.COMPLETED, JobState.FAILED})
    assert job.state == JobState.FAILED
    assert job.exit_code == 3
    assert job.reason == "exit code 3"
    assert "about to fail" in (Path(job.workdir) / "job.log").read_text()
    _charged_matches(env, job)


def test_walltime_is_enforced(env: Env) -> None:
    never = env.tmp / "never-released"
    started = time.monotonic()
    job_id = env.submit(env.script("wait.py", WAIT_SCRIPT), (str(never),), walltime="0:02")
    job = env.wait(job_id, {JobState.TIMEOUT, JobState.COMPLETED, JobState.FAILED}, timeout=30)
    assert job.state == JobState.TIMEOUT, job.reason
    assert time.monotonic() - started < 15
    elapsed = (job.ended_at - job.started_at).total_seconds()
    assert 2 <= elapsed < 2 + env.settings.kill_grace_s + 3
    pid = int(job.backend_id.split(":")[0])
    assert not _alive(pid)
    _charged_matches(env, job)


def test_cancel_running_and_queued_jobs(env: Env) -> None:
    never = env.tmp / "never-released"
    wait = env.script("wait.py", WAIT_SCRIPT)
    running = [env.submit(wait, (str(never),)) for _ in range(2)]  # fills both slots
    for job_id in running:
        env.wait(job_id, {JobState.RUNNING})
    queued = env.submit(wait, (str(never),))
    assert env.job(queued).state == JobState.PENDING
    with db.session_scope(env.url) as session:
        service.cancel(session, "alice", queued, runtime=env.runtime)
        service.cancel(session, "alice", running[0], runtime=env.runtime)
        with pytest.raises(core.NotFound):  # someone else's job: not found, not forbidden
            service.cancel(session, "bob", running[1], runtime=env.runtime)
    assert env.wait(queued, {JobState.CANCELLED}).started_at is None
    job = env.wait(running[0], {JobState.CANCELLED})
    assert not _alive(int(job.backend_id.split(":")[0]))
    assert env.job(running[1]).state == JobState.RUNNING
    _charged_matches(env, job)
    assert env.usage(queued) == []  # never ran, never charged


def test_over_quota_is_refused_before_anything_is_queued(env: Env) -> None:
    small = _allocation(env.url, "alice", core_hours=1.0, max_cores=2)
    ok = env.script("ok.py", OK_SCRIPT)
    with pytest.raises(core.QuotaExceeded, match="core-hours"):
        env.submit(ok, cores=2, walltime="1:00:00", allocation=small)  # 2 core-hours > 1
    with pytest.raises(core.QuotaExceeded, match="at most 2"):
        env.submit(ok, cores=3, walltime="1:00", allocation=small)
    with pytest.raises(core.QuotaExceeded, match="GB"):
        env.submit(ok, memory="5GiB", walltime="1:00", allocation=small)
    with pytest.raises(core.NotFound):
        env.submit(ok, user="bob", walltime="1:00", allocation=small)
    # reservations: two 30-minute single-core jobs fit 1 core-hour, a third does not
    wait = env.script("wait.py", WAIT_SCRIPT)
    release = env.tmp / "release"
    first = [env.submit(wait, (str(release),), walltime="30:00", allocation=small)
             for _ in range(2)]
    with pytest.raises(core.QuotaExceeded, match="reserved"):
        env.submit(ok, walltime="1:00", allocation=small)
    with db.session_scope(env.url) as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 2
    assert sorted(p.name for p in (env.data / "jobs" / "alice").iterdir()) == sorted(first)
    release.touch()
    for job_id in first:
        env.wait(job_id, {JobState.COMPLETED})
    assert not env.runtime.backends["local"]._running
    assert not env.runtime.backends["local"]._queue


def test_concurrent_submissions_cannot_overspend(env: Env) -> None:
    """Eight at once, each reserving 0.5 of 1 core-hour: exactly two are accepted."""
    small = _allocation(env.url, "alice", core_hours=1.0, max_cores=2)
    wait = env.script("wait.py", WAIT_SCRIPT)
    release = env.tmp / "release"
    barrier = threading.Barrier(8)

    def one(_: int) -> str | None:
        barrier.wait(timeout=30)
        try:
            return env.submit(wait, (str(release),), walltime="30:00", allocation=small)
        except core.QuotaExceeded:
            return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        accepted = [j for j in pool.map(one, range(8)) if j is not None]
    assert len(accepted) == 2
    release.touch()
    for job_id in accepted:
        env.wait(job_id, {JobState.COMPLETED})


def test_output_paths_cannot_leave_the_job_folder(env: Env) -> None:
    job_id = env.submit(env.script("escape.py", ESCAPE_SCRIPT))
    assert env.wait(job_id, {JobState.COMPLETED, JobState.FAILED}).state == JobState.COMPLETED
    with db.session_scope(env.url) as session:
        assert [f["path"] for f in service.outputs(session, "alice", job_id)] == ["fine.txt"]
        assert service.output_file(session, "alice", job_id, "fine.txt").read_text() == "fine"
        for bad in ("../job.log", "sub/../../job.log", "..", "/etc/passwd", "C:/x"):
            with pytest.raises(PathRefused):
                service.output_file(session, "alice", job_id, bad)
        for escaping in ("passwd-link", "log-link", "missing.txt"):
            with pytest.raises(core.NotFound):
                service.output_file(session, "alice", job_id, escaping)
        for call in (service.get_job, service.logs, service.outputs):
            with pytest.raises(core.NotFound, match="no job"):
                call(session, "bob", job_id)
        with pytest.raises(core.NotFound):
            service.output_file(session, "bob", job_id, "fine.txt")
        assert service.get_job(session, "root", job_id, is_admin=True).id == job_id


# ---------------------------------------------------------------------------- restart


def test_states_survive_a_restart(env: Env) -> None:
    """A crash (runtime stopped, processes left): lost, adopted and queued jobs."""
    done = env.wait(env.submit(env.script("ok.py", OK_SCRIPT)), {JobState.COMPLETED})
    wait = env.script("wait.py", WAIT_SCRIPT)
    release = env.tmp / "release"
    lost = env.submit(wait, (str(env.tmp / "never"),))
    adopted = env.submit(wait, (str(release),))
    for job_id in (lost, adopted):
        env.wait(job_id, {JobState.RUNNING})
    queued = env.submit(env.script("ok.py", OK_SCRIPT))
    assert env.job(queued).state == JobState.PENDING
    env.runtime.stop()  # the service goes away; its jobs' processes stay
    lost_pid = int(env.job(lost).backend_id.split(":")[0])
    adopted_pid = int(env.job(adopted).backend_id.split(":")[0])
    os.killpg(lost_pid, signal.SIGKILL)  # this one dies while the service is down
    deadline = time.monotonic() + 10
    while _alive(lost_pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert _alive(adopted_pid)

    env.runtime = JobRuntime(env.url, data_dir=env.data, settings=env.settings, slurm=False)
    env.runtime.start()
    job = env.wait(lost, {JobState.FAILED})
    assert job.reason == LOST_REASON
    assert env.usage(lost) == []
    assert env.job(done.id).state == JobState.COMPLETED
    assert len(env.usage(done.id)) == 1
    assert env.wait(queued, {JobState.COMPLETED}).exit_code == 0
    assert env.job(adopted).state == JobState.RUNNING
    release.touch()
    job = env.wait(adopted, {JobState.COMPLETED, JobState.FAILED})
    assert job.state == JobState.COMPLETED, job.reason
    assert job.exit_code == 0
    _charged_matches(env, job)
    _charged_matches(env, env.job(queued))


# ---------------------------------------------------------------------------- load


@pytest.mark.slow
def test_fifty_concurrent_jobs_all_finish_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'alloc.sqlite'}"
    db.upgrade(url)
    alloc_id = _allocation(url, "alice")
    settings = _settings(max_concurrent=4)
    runtime = JobRuntime(url, data_dir=tmp_path / "data", settings=settings, slurm=False)
    runtime.start()
    env = Env(url, tmp_path, tmp_path / "data", runtime, alloc_id, settings)
    started = time.monotonic()
    try:
        script = env.script("ok.py", OK_SCRIPT)
        barrier = threading.Barrier(50)

        def one(i: int) -> str:
            barrier.wait(timeout=30)
            return env.submit(script, (str(i),), walltime="2:00")

        with ThreadPoolExecutor(max_workers=50) as pool:
            ids = list(pool.map(one, range(50)))
        assert len(set(ids)) == 50
        deadline = time.monotonic() + 100
        while True:
            with db.session_scope(url) as session:
                states = dict(session.execute(select(Job.id, Job.state)).all())
            if all(s.finished for s in states.values()):
                break
            assert time.monotonic() < deadline, {s: list(states.values()).count(s)
                                                  for s in set(states.values())}
            time.sleep(0.1)
        assert sorted(states) == sorted(ids)
        assert set(states.values()) == {JobState.COMPLETED}
        for i, job_id in enumerate(ids):
            text = (tmp_path / "data" / "jobs" / "alice" / job_id / "outputs" / "result.txt")
            assert text.read_text().split()[-1] == str(i)
        with db.session_scope(url) as session:
            jobs = list(session.scalars(select(Job)))
            rows = list(session.scalars(select(Usage)))
            used = core.used_core_hours(session, alloc_id)
        assert sorted(r.ref for r in rows) == sorted(ids)  # each job charged exactly once
        expected = sum(j.cores * (j.ended_at - j.started_at).total_seconds() for j in jobs) / 3600
        assert used == pytest.approx(expected, rel=1e-9)
        assert sum(r.core_hours for r in rows) == pytest.approx(expected, rel=1e-9)
    finally:
        runtime.stop(kill_jobs=True)
    assert time.monotonic() - started < 120


# ---------------------------------------------------------------------------- REST


def test_rest_api(env: Env) -> None:
    app = FastAPI()
    app.include_router(router)
    app.state.db_url = env.url
    app.state.jobs = env.runtime

    async def fake_user(request: Request) -> HubUser:
        name = request.headers.get("x-test-user")
        if not name:
            raise HTTPException(401, "token required")
        return HubUser(name=name, admin=name == "root")

    app.dependency_overrides[current_user] = fake_user
    alice = {"x-test-user": "alice"}
    with TestClient(app) as client:
        assert client.get("/jobs").status_code == 401
        r = client.post("/jobs", headers=alice, files={"script": ("ok.py", OK_SCRIPT.encode())},
                        data={"cores": "1", "memory": "1GB", "walltime": "2:00",
                              "allocation_id": str(env.alloc_id), "args": '["x"]'})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        r = client.post("/jobs", headers=alice, json={
            "script": FAIL_SCRIPT, "script_name": "fail.py", "walltime": "2:00",
            "memory": "1GB", "allocation_id": env.alloc_id})
        assert r.status_code == 201, r.text
        fail_id = r.json()["id"]
        r = client.post("/jobs", headers=alice, json={"script": "x", "walltime": "99"})
        assert r.status_code == 400 and "--walltime '99'" in r.json()["detail"]
        r = client.post("/jobs", headers=alice, json={"script": "x", "cores": 4,
                                                      "walltime": "1000:00:00"})
        assert r.status_code == 400 and "maximum" in r.json()["detail"]
        r = client.post("/jobs", headers={"x-test-user": "bob"}, json={"script": "x"})
        assert r.status_code == 403 and "no approved allocation" in r.json()["detail"]
        env.wait(job_id, {JobState.COMPLETED})
        env.wait(fail_id, {JobState.FAILED})
        body = client.get(f"/jobs/{job_id}", headers=alice).json()
        assert body["state"] == "COMPLETED" and body["args"] == ["x"]
        assert {j["id"] for j in client.get("/jobs", headers=alice).json()} == {job_id, fail_id}
        assert client.get("/jobs", headers={"x-test-user": "bob"}).json() == []
        assert "hello from the job" in client.get(f"/jobs/{job_id}/logs", headers=alice).text
        files = client.get(f"/jobs/{job_id}/outputs", headers=alice).json()
        assert [f["path"] for f in files] == ["result.txt", "sub/cwd.txt"]
        r = client.get(f"/jobs/{job_id}/outputs/result.txt", headers=alice)
        assert r.status_code == 200 and r.text.endswith(" x")
        assert client.get(f"/jobs/{job_id}/outputs/%2E%2E/job.log", headers=alice).status_code == 400
        assert client.get(f"/jobs/{job_id}/outputs/%2Fetc%2Fpasswd", headers=alice).status_code == 400
        r = client.get(f"/jobs/{job_id}/outputs/a%00b", headers=alice)
        assert r.status_code == 400 and "control character" in r.json()["detail"]
        assert client.get(f"/jobs/{job_id}/outputs/nothing", headers=alice).status_code == 404
        r = client.post(f"/jobs/{job_id}/cancel", headers=alice)
        assert r.status_code == 409
        bob = {"x-test-user": "bob"}
        for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/logs", f"/jobs/{job_id}/outputs",
                     f"/jobs/{job_id}/outputs/result.txt"):
            r = client.get(path, headers=bob)
            assert r.status_code == 404 and r.json()["detail"] == f"no job {job_id} of yours"
        assert client.post(f"/jobs/{job_id}/cancel", headers=bob).status_code == 404
        assert client.get(f"/jobs/{job_id}", headers={"x-test-user": "root"}).status_code == 200


# ---------------------------------------------------------------------------- CLI


@contextlib.contextmanager
def jobs_cli(url: str, runtime: JobRuntime, monkeypatch: pytest.MonkeyPatch,
             user: str = "alice") -> Iterator[tuple[object, object]]:
    """``(runner, app)``: the jobs commands against a served REST API, as *user*.

    The API is the service's jobs router on a free loopback port, its user taken from
    ``Authorization: token <name>`` (a stand-in for the hub's token check).
    """
    import socket

    import typer
    import uvicorn
    from typer.testing import CliRunner

    from oceandata.jobs.cli import install

    app = FastAPI()
    app.include_router(router, prefix="/api")  # as the service mounts it
    app.state.db_url = url
    app.state.jobs = runtime

    async def token_user(request: Request) -> HubUser:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("token "):
            raise HTTPException(401, "a JupyterHub token is required")
        return HubUser(name=auth.split(" ", 1)[1])

    app.dependency_overrides[current_user] = token_user
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.05)  # polling uvicorn's start flag
        monkeypatch.setenv("OCEANDATA_ALLOC_URL", f"http://127.0.0.1:{port}")
        monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
        monkeypatch.setenv("OCEANDATA_TOKEN", user)
        cli = typer.Typer()

        @cli.callback()
        def _root() -> None:
            """Test root."""

        install(cli)
        yield CliRunner(), cli
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def test_cli_against_the_rest_api(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    with jobs_cli(env.url, env.runtime, monkeypatch) as (runner, cli):
        script = env.script("ok.py", OK_SCRIPT)
        result = runner.invoke(cli, ["submit", str(script), "one", "--cores", "1", "--memory",
                                     "1GB", "--walltime", "2:00", "--allocation",
                                     str(env.alloc_id), "--json"])
        assert result.exit_code == 0, result.output
        job_id = json.loads(result.stdout)["id"]
        env.wait(job_id, {JobState.COMPLETED})
        result = runner.invoke(cli, ["jobs", "show", job_id])
        assert result.exit_code == 0 and "COMPLETED" in result.stdout
        assert job_id in runner.invoke(cli, ["jobs", "list"]).stdout
        assert "hello from the job" in runner.invoke(cli, ["jobs", "logs", job_id]).stdout
        assert "result.txt" in runner.invoke(cli, ["jobs", "outputs", job_id]).stdout
        dest = env.tmp / "fetched"
        result = runner.invoke(cli, ["jobs", "outputs", job_id, "--get", "result.txt",
                                     "--to", str(dest)])
        assert result.exit_code == 0, result.output
        assert (dest / "result.txt").read_text().endswith(" one")
        for args, message in (
                (["submit", str(script), "--walltime", "1:99:00"], "minutes must be 00-59"),
                (["submit", str(script), "--memory", "4"], "has no unit"),
                (["submit", str(env.tmp / "nope.py")], "does not exist"),
                (["submit", str(script), "--cores", "4", "--walltime", "1:00:00",
                  "--allocation", "999"], "no allocation 999 of yours (HTTP 404)"),
                (["jobs", "cancel", job_id], "already ended COMPLETED"),
                (["jobs", "outputs", job_id, "--get", "../job.log"], "contains '..'"),
                (["jobs", "show", "nope"], "no job nope of yours (HTTP 404)")):
            result = runner.invoke(cli, args)
            assert result.exit_code == 2, (args, result.output)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("oceandata: error: "), result.stderr
            assert message in lines[0], (args, lines)
        monkeypatch.setenv("OCEANDATA_TOKEN", "bob")
        result = runner.invoke(cli, ["jobs", "show", job_id])
        assert result.exit_code == 2 and "no job" in result.stderr
        monkeypatch.setenv("OCEANDATA_ALLOC_URL", "http://127.0.0.1:1")
        result = runner.invoke(cli, ["jobs", "list"])
        assert result.exit_code == 2 and "cannot reach" in result.stderr
