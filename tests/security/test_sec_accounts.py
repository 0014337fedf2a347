"""Security issue item 7: one Unix account per user (per-user mode, the platform as root).

Every check runs *inside* a user's process, as an attacker would: a kernel of A's
notebook server, a batch job of A (local backend, and Slurm when a cluster can start), a
worker of A's dask-gateway cluster. Each must run as A's own account ``oceandata-<a>``
and fail with PermissionError on B's home, B's job outputs, the platform's secrets, the
hub database and the allocations database. In single-account mode (the platform's own
account for everyone) every one of these reads succeeds, so the tests fail there.

Without root there are no per-user accounts: the module is skipped, saying why (CI runs
as root, where it runs).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pwd
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import fresh_name
from hub_helpers import Hub, HubClient, new_user

from oceandata.hub import accounts

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="per-user Unix accounts need root (the "
                       "platform runs single-account without it); CI runs as root"),
]

SERVICE = "/services/allocations"

#: Run in the user's process: its uid, then what each read of a forbidden path gives.
PROBE = textwrap.dedent('''
    import json, os, subprocess, sys

    def _try(path):
        try:
            if os.path.isdir(path):
                os.listdir(path)
            else:
                with open(path, "rb") as fh:
                    fh.read(1)
            return "read"
        except PermissionError:
            return "PermissionError"
        except OSError as exc:
            return type(exc).__name__

    def probe(paths):
        return {"uid": os.getuid(), "euid": os.geteuid(), "groups": os.getgroups(),
                "id_u": subprocess.run(["id", "-u"], capture_output=True,
                                       text=True).stdout.strip(),
                "reads": {p: _try(p) for p in paths}}
''')


def _uid(name: str) -> int:
    return pwd.getpwnam(accounts.unix_name(name)).pw_uid


def _wait_job(user: HubClient, job_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = user.api("GET", f"{SERVICE}/api/jobs/{job_id}").json()
        if job["state"] not in ("PENDING", "RUNNING"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']}"
        time.sleep(0.2)  # poll interval of the job's state in the service


def _allocate(user: HubClient, admin: HubClient) -> int:
    today = dt.date.today()
    r = user.api("POST", f"{SERVICE}/api/allocations", json={
        "project_title": "Accounts test", "pi": "Dr A. Count", "institution": "NMDC",
        "justification": "security tests", "core_hours": 100, "max_cores": 2,
        "memory_per_job_gb": 2, "storage_gb": 1,
        "start_date": (today - dt.timedelta(days=1)).isoformat(),
        "end_date": (today + dt.timedelta(days=30)).isoformat()})
    assert r.status_code in (200, 201), r.text
    alloc_id = r.json()["id"]
    r = admin.api("POST", f"{SERVICE}/api/allocations/{alloc_id}/approve")
    assert r.status_code == 200, r.text
    return alloc_id


def _submit(user: HubClient, script: str, backend: str = "local") -> dict:
    r = user.api("POST", f"{SERVICE}/api/jobs", json={
        "script": script, "script_name": "probe.py", "cores": 1, "memory": "512MB",
        "walltime": "5:00", "backend": backend})
    assert r.status_code == 201, r.text
    return r.json()


class Pair:
    """Users A (the attacker) and B (the victim), with B's job outputs on disk."""

    def __init__(self, hub: Hub, a: HubClient, b: HubClient, b_output: Path) -> None:
        self.hub, self.a, self.b, self.b_output = hub, a, b, b_output

    def forbidden(self) -> list[str]:
        """Paths A must not read: B's home and job output, secrets, hub DB, allocations DB."""
        data = self.hub.runtime.data_dir
        secrets = sorted(str(p) for p in (data / "secrets").iterdir())
        assert secrets, "the platform has secrets"
        return [str(data / "users" / self.b.name), str(self.b_output),
                str(data / "secrets"), *secrets,
                str(data / "hub" / "jupyterhub.sqlite"),
                str(data / "alloc" / "alloc.sqlite")]

    def check(self, result: dict, where: str) -> None:
        uid = _uid(self.a.name)
        assert result["uid"] == result["euid"] == uid, (where, result)
        assert result["id_u"] == str(uid), (where, result)
        assert 0 not in result["groups"], (where, result)
        leaked = {p: r for p, r in result["reads"].items() if r != "PermissionError"}
        assert not leaked, f"{where} of {self.a.name} could read: {leaked}"


@pytest.fixture(scope="module")
def pair(sec_hub: Hub, sec_admin: HubClient) -> Pair:
    a = new_user(sec_hub, sec_admin, fresh_name("a"))
    b = new_user(sec_hub, sec_admin, fresh_name("b"))
    _allocate(a, sec_admin)
    _allocate(b, sec_admin)
    job = _submit(b, "import os, pathlib\n"
                     "pathlib.Path(os.environ['OCEANDATA_OUTPUT_DIR'], 'result.txt')"
                     ".write_text('B private result')\n")
    done = _wait_job(b, job["id"])
    assert done["state"] == "COMPLETED", done
    output = sec_hub.runtime.data_dir / "jobs" / b.name / job["id"] / "outputs" / "result.txt"
    assert output.read_text() == "B private result"
    return Pair(sec_hub, a, b, output)


def test_layout_modes(pair: Pair) -> None:
    """Secrets and platform state are root's 0700/0600; homes and job folders the user's."""
    data = pair.hub.runtime.data_dir

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    for name in ("secrets", "hub", "alloc"):
        assert mode(data / name) == 0o700 and (data / name).stat().st_uid == 0, name
    for secret in (data / "secrets").iterdir():
        assert mode(secret) == 0o600 and secret.stat().st_uid == 0, secret
    for name in ("users", "jobs", "dask-clusters"):
        assert mode(data / name) == 0o711, name
    b_uid = _uid(pair.b.name)
    for path in (data / "users" / pair.b.name, data / "jobs" / pair.b.name,
                 pair.b_output.parents[1]):
        assert mode(path) == 0o700 and path.stat().st_uid == b_uid, path
    assert pair.b_output.stat().st_uid == b_uid
    entry = pwd.getpwnam(accounts.unix_name(pair.b.name))
    assert entry.pw_dir == str(data / "users" / pair.b.name)
    assert entry.pw_shell == accounts.NOLOGIN


def test_notebook_kernel_runs_as_its_user(pair: Pair) -> None:
    pair.a.start_server()
    out = pair.a.run_code(PROBE + f"print(json.dumps(probe({pair.forbidden()!r})))")
    pair.check(json.loads(out.strip().splitlines()[-1]), "a notebook kernel")
    # the example notebooks were copied for the user, and are theirs
    examples = pair.hub.runtime.data_dir / "users" / pair.a.name / "examples"
    if examples.exists():
        assert examples.stat().st_uid == _uid(pair.a.name)


def test_local_batch_job_runs_as_its_user(pair: Pair) -> None:
    script = PROBE + f"print(json.dumps(probe({pair.forbidden()!r})))\n"
    job = _submit(pair.a, script)
    done = _wait_job(pair.a, job["id"])
    logs = pair.a.api("GET", f"{SERVICE}/api/jobs/{job['id']}/logs").text
    assert done["state"] == "COMPLETED", (done, logs)
    pair.check(json.loads(logs.strip().splitlines()[-1]), "a local batch job")
    # the service (root) still serves the job's logs and outputs to its owner
    assert pair.a.api("GET", f"{SERVICE}/api/jobs/{job['id']}/outputs").status_code == 200


def test_job_folder_link_is_not_followed_by_the_service(pair: Pair) -> None:
    """A job replacing its own ``outputs/`` or ``job.log`` by a link to the secrets gets
    nothing: the service reads the folder as root and must not follow the owner's links."""
    secrets = pair.hub.runtime.data_dir / "secrets"
    script = textwrap.dedent(f'''
        import os
        out = os.environ["OCEANDATA_OUTPUT_DIR"]
        os.rename(out, out + ".old")
        os.symlink({str(secrets)!r}, out)
        os.symlink({str(secrets / "hub-cookie-secret")!r}, "job.log.link")
    ''')
    job = _submit(pair.a, script)
    done = _wait_job(pair.a, job["id"])
    assert done["state"] == "COMPLETED", done
    base = f"{SERVICE}/api/jobs/{job['id']}"
    listed = pair.a.api("GET", f"{base}/outputs")
    assert listed.status_code == 404 or listed.json() == [], listed.text
    got = pair.a.api("GET", f"{base}/outputs/hub-cookie-secret")
    assert got.status_code in (400, 404), got.text
    cookie = (secrets / "hub-cookie-secret").read_text().strip()
    assert cookie not in listed.text + got.text


def test_gateway_cluster_workers_run_as_their_user(pair: Pair) -> None:
    gateway = pair.a.gateway()
    cluster = gateway.new_cluster()
    try:
        cluster.scale(1)
        with cluster.get_client() as client:
            client.wait_for_workers(1, timeout=180)
            namespace: dict = {}
            exec(PROBE, namespace)  # the probe, shipped to the worker by value
            results = client.run(namespace["probe"], pair.forbidden())
            scheduler = client.run_on_scheduler(namespace["probe"], pair.forbidden())
        assert results
        for worker, result in results.items():
            pair.check(result, f"dask worker {worker}")
        pair.check(scheduler, "the dask scheduler")
    finally:
        cluster.shutdown()
        gateway.close()


def test_ensure_account_is_idempotent_under_concurrency(sec_hub: Hub) -> None:
    name = fresh_name("c")
    data = sec_hub.runtime.data_dir
    entries: list = []
    errors: list = []

    def make() -> None:
        try:
            entries.append(accounts.ensure_account(name, data))
        except Exception as exc:  # collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=make) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len({e.pw_uid for e in entries}) == 1
    home = data / "users" / name
    assert home.stat().st_uid == entries[0].pw_uid
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert accounts.ensure_account(name, data).pw_uid == entries[0].pw_uid


def test_bad_names_and_modes_are_one_line() -> None:
    with pytest.raises(accounts.UsageError, match="not a platform user name"):
        accounts.unix_name("Root;rm")
    assert accounts.unix_name("a" * 22) == "oceandata-" + "a" * 22
    assert len(accounts.unix_name("a" * 22)) <= 32
    with pytest.raises(accounts.UsageError, match="not an account mode"):
        accounts.account_mode({accounts.ENV: "everyone"})
    done = subprocess.run([str(Path(sys.executable).parent / "oceandata"), "hub", "up",
                           "--port", "1"], env={**os.environ, accounts.ENV: "everyone"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.fixture(scope="module")
def slurm_jobs(pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """A Slurm cluster and a jobs runtime on the security hub's data dir (Slurm backend)."""
    from hub_helpers import reachable_by_accounts

    from oceandata.alloc import core, db
    from oceandata.jobs import JobSettings
    from oceandata.jobs.service import JobRuntime
    from oceandata.testing.slurm import SlurmUnavailable, in_ci, single_node_slurm

    folder = reachable_by_accounts(tmp_path_factory.mktemp("slurm-accounts"))
    try:
        cm = single_node_slurm(folder)
        cluster = cm.__enter__()
    except SlurmUnavailable as exc:
        if in_ci():
            raise
        pytest.skip(f"no Slurm here: {exc}")
    try:
        # the jobs' folders in the hub's data dir, their own database (not the service's)
        data = pair.hub.runtime.data_dir
        url = f"sqlite:///{folder / 'jobs.sqlite'}"
        db.upgrade(url)
        today = dt.date.today()
        with db.session_scope(url) as session:
            alloc = core.request_allocation(session, pair.a.name, {
                "project_title": "Slurm accounts", "pi": "Dr Test", "institution": "NMDC",
                "justification": "testing", "core_hours": 100, "max_cores": 2,
                "memory_per_job_gb": 2, "storage_gb": 1,
                "start_date": today - dt.timedelta(days=1),
                "end_date": today + dt.timedelta(days=9)})
            core.decide(session, alloc.id, "admin", True, approve=True)
        settings = JobSettings(max_concurrent=1, max_cores=2, max_walltime_s=3600,
                               poll_interval=0.2, kill_grace_s=2.0)
        runtime = JobRuntime(url, data_dir=data, settings=settings, slurm_env=cluster.env(),
                             slurm=True).start()
        try:
            yield cluster, runtime, url
        finally:
            runtime.stop()
    finally:
        cm.__exit__(None, None, None)


@pytest.mark.slurm
def test_slurm_batch_job_runs_as_its_user(pair: Pair, slurm_jobs: tuple,
                                          tmp_path: Path) -> None:
    from oceandata.alloc import db
    from oceandata.alloc.models import Job
    from oceandata.jobs import service
    from oceandata.jobs.spec import make_spec

    cluster, runtime, url = slurm_jobs
    script = tmp_path / "probe.py"
    script.write_text(PROBE + f"print(json.dumps(probe({pair.forbidden()!r})))\n")
    spec = make_spec(script, [], cores=1, memory="512MB", walltime="5:00", max_cores=2,
                     max_walltime_s=3600)
    with db.session_scope(url) as session:
        job = service.submit(session, pair.a.name, spec, None, "slurm", runtime=runtime)
        job_id, slurm_id = job.id, int(job.backend_id)
    record = cluster.wait_for_job(slurm_id, timeout=120)
    # Slurm itself records the job as the user's account
    shown = cluster.run("scontrol", "show", "job", "-o", str(slurm_id)).stdout
    assert f"UserId={accounts.unix_name(pair.a.name)}(" in shown, shown
    with db.session_scope(url) as session:
        workdir = Path(session.get(Job, job_id).workdir)
    log = (workdir / "job.log").read_text()
    assert record.succeeded, log
    pair.check(json.loads(log.strip().splitlines()[-1]), "a Slurm batch job")
