"""Batch jobs that scale out: ``oceandata submit job.py --workers N`` on a real multi-node
Slurm.

One module-scoped :func:`~oceandata.testing.slurm.multi_node_slurm` of three 1-CPU nodes
with accounting (slurmdbd, associations enforced): a batch job takes one node, so its two
Dask workers (Slurm jobs of their own) must land on the other two. The jobs are submitted
through the real command line against the jobs REST API (``jobs_cli``), as hub user
``bxann`` whose Unix account is ``oceandata-bxann``; ``bxbob`` is another user whose home
``bxann``'s workers must not read. The Slurm account of the jobs (``bxalloc``) and their
QOS (``bxqos``) are not the user's defaults, so workers that did not take the job's own
would show it in ``sacct``.

Synchronisation is on real signals only: job states in the database, files the job
writes once the scheduler says something (tasks processing on both workers), Slurm's
records. A gated computation waits for a file the test writes after it killed a worker.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import pwd
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from sqlalchemy import func, select

from oceandata.alloc import core, db
from oceandata.alloc.models import Job, JobState, Usage
from oceandata.hub import accounts
from oceandata.jobs import JobSettings
from oceandata.jobs.service import JobRuntime
from oceandata.jobs.workers import worker_job_name
from tests.test_jobs_local import jobs_cli

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

USER, OTHER = "bxann", "bxbob"
SLURM_ACCOUNT, DEFAULT_ACCOUNT, QOS = "bxalloc", "bxdefault", "bxqos"
#: a job whose cluster computes the climatology of the store (argv[1]) and says where its
#: workers ran, as whom, and what a task reading another user's home (argv[2]) got
CLIMATOLOGY_JOB = """\
import json, os, socket, sys, time
from pathlib import Path

import xarray as xr
from distributed import get_task_stream

from oceandata.analysis.climatologies import climatology
from oceandata.compute import cluster

out = Path(os.environ["OCEANDATA_OUTPUT_DIR"])
store, other_home = sys.argv[1], sys.argv[2]


def read_home(path):
    try:
        return sorted(os.listdir(path))
    except PermissionError as exc:
        return f"PermissionError: {exc}"


asked = time.monotonic()
with cluster() as c, c.get_client() as client:
    client.wait_for_workers(2, timeout=300)
    workers_up_s = time.monotonic() - asked
    workers = sorted(client.scheduler_info()["workers"])
    facts = {"cluster": type(c).__name__, "same": cluster() is c, "workers_up_s": workers_up_s,
             "hosts": client.run(socket.gethostname), "uids": client.run(os.getuid),
             "slurm_ids": client.run(lambda: os.environ.get("SLURM_JOB_ID")),
             "reads": {w: client.submit(read_home, other_home, workers=[w],
                                        pure=False).result() for w in workers}}
    sst = xr.open_dataset(store, engine="zarr", chunks={}, inline_array=True).sst  # a root task a chunk
    with get_task_stream(client) as stream:
        clim = climatology(sst).compute()
    facts["task_workers"] = sorted({t["worker"] for t in stream.data})
    clim.to_netcdf(out / "climatology.nc")
(out / "facts.json").write_text(json.dumps(facts))
"""
#: a job whose climatology waits (in every chunk's task) for the file argv[2]: it says
#: which tasks are processing on which worker once both are busy, then, after the test
#: killed one worker and wrote the file, which tasks ran where; then it holds its
#: cluster until it is cancelled
KILLED_WORKER_JOB = """\
import json, os, sys, threading, time
from pathlib import Path

import numpy as np
import xarray as xr
from distributed import get_task_stream

from oceandata.analysis.climatologies import climatology
from oceandata.compute import cluster

out = Path(os.environ["OCEANDATA_OUTPUT_DIR"])
store, release = sys.argv[1], Path(sys.argv[2])


def gate(block):
    while not release.exists():  # the test's signal: a worker was killed
        time.sleep(0.05)
    return block


c = cluster()
client = c.get_client()
client.wait_for_workers(2, timeout=300)
slurm_ids = client.run(lambda: os.environ.get("SLURM_JOB_ID"))
sst = xr.open_dataset(store, engine="zarr", chunks={}, inline_array=True).sst  # a root task a chunk: spread out
gated = sst.copy(data=sst.data.map_blocks(gate, meta=np.array((), dtype=sst.dtype)))
with get_task_stream(client) as stream:
    future = client.compute(climatology(gated))
    deadline = time.monotonic() + 120
    while True:  # until both workers hold gated tasks
        busy = {w: [str(k) for k in keys] for w, keys in client.processing().items() if keys}
        if len(busy) == 2:
            break
        if time.monotonic() > deadline:
            sys.exit(f"tasks were not processing on both workers: {busy}")
        time.sleep(0.05)
    (out / "busy.json").write_text(json.dumps({"slurm_ids": slurm_ids, "busy": busy}))
    clim = future.result()
ran = {}
for task in stream.data:
    ran.setdefault(task["worker"], []).append(str(task["key"]))
clim.to_netcdf(out / "climatology.nc")
(out / "after.json").write_text(json.dumps({
    "ran": ran, "survivors": sorted(client.scheduler_info()["workers"])}))
threading.Event().wait()  # hold the cluster until the job is cancelled
"""


@dataclass
class Platform:
    cluster: Any
    url: str
    tmp: Path
    data: Path
    runtime: JobRuntime
    alloc_id: int
    store: Path
    expected: xr.DataArray
    cli: Any

    def job(self, job_id: str) -> Job:
        with db.session_scope(self.url) as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job

    def wait(self, job_id: str, timeout: float = 240.0) -> Job:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.state.finished:
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job.state}"
            time.sleep(0.2)

    def wait_for_output(self, job_id: str, name: str, timeout: float = 240.0) -> Any:
        """The JSON file *name* of the job's outputs, once the job wrote it."""
        path = Path(self.job(job_id).workdir) / "outputs" / name
        deadline = time.monotonic() + timeout
        while not path.exists():
            job = self.job(job_id)
            log = (Path(job.workdir) / "job.log").read_text()
            assert not job.state.finished, (job.state, job.reason, log[-3000:])
            if time.monotonic() > deadline:
                queue = self.cluster.run("scontrol", "show", "job", "-o", check=False).stdout
                pytest.fail(f"no {name} after {timeout} s:\n{log[-3000:]}\n{queue}")
            time.sleep(0.1)
        return json.loads(path.read_text())

    def submit(self, script: str, name: str, *args: str, options: tuple[str, ...] = ()) -> str:
        path = self.tmp / "scripts" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(script)
        result = self.cli("submit", path, "--backend", "slurm", "--cores", "1", "--memory",
                          "1GB", "--walltime", "10:00", "--workers", "2", "--worker-cores",
                          "1", "--worker-memory", "1GB", "--allocation", self.alloc_id,
                          *options, "--json", "--", *args)
        assert result.exit_code == 0, result.output
        body = json.loads(result.stdout)
        assert (body["workers"], body["worker_cores"], body["worker_memory_mb"]) == (2, 1, 954)
        return body["id"]

    def sacct_workers(self, job_id: str) -> list[dict[str, str]]:
        """slurmdbd's records of the job's worker jobs (by their name)."""
        names = ("JobID", "State", "ElapsedRaw", "AllocCPUS", "NodeList", "User", "Account",
                 "Partition", "QOS")
        out = self.cluster.run("sacct", "-X", "-n", "-P", "--allusers", "-S", "now-1days",
                               "--name", worker_job_name(job_id), "-o", ",".join(names),
                               check=False).stdout
        return [dict(zip(names, line.split("|"), strict=True)) for line in out.splitlines()
                if line.count("|") == len(names) - 1]

    def queued_workers(self, job_id: str) -> list[str]:
        """``squeue``'s worker jobs of the job (any state Slurm still lists)."""
        out = self.cluster.run("squeue", "-h", "--name", worker_job_name(job_id), "-o", "%i",
                               check=False).stdout
        return out.split()

    def charged(self, job_id: str) -> dict[str, float]:
        """The ledger's core-hours of the job and its workers, by usage reference."""
        with db.session_scope(self.url) as session:
            rows = session.scalars(select(Usage).where(
                (Usage.ref == job_id) | Usage.ref.like(f"{job_id}/%")))
            return {row.ref: row.core_hours for row in rows}

    def count_jobs(self) -> int:
        with db.session_scope(self.url) as session:
            return session.scalar(select(func.count()).select_from(Job))


def _check_charged_from_sacct(platform: Platform, job: Job) -> None:
    """The ledger holds the job's and each worker's AllocCPUS x ElapsedRaw from sacct."""
    own = platform.cluster.wait_for_accounting(int(job.backend_id))
    workers = platform.sacct_workers(job.id)
    expected = {job.id: int(own["AllocCPUS"]) * int(own["ElapsedRaw"]) / 3600}
    expected |= {f"{job.id}/worker/{w['JobID']}": int(w["AllocCPUS"]) * int(w["ElapsedRaw"])
                 / 3600 for w in workers if int(w["ElapsedRaw"]) > 0}
    charged = platform.charged(job.id)
    assert charged.keys() == expected.keys(), (charged, expected, workers)
    for ref, hours in expected.items():
        assert charged[ref] == pytest.approx(hours, abs=1.01 / 3600), (ref, charged, expected)
    assert sum(charged.values()) == pytest.approx(sum(expected.values()), abs=1.01 / 3600)


def _check_workers_gone(platform: Platform, job: Job) -> list[dict[str, str]]:
    """No worker job of *job* left in Slurm's queue; slurmdbd has each one's end."""
    assert platform.queued_workers(job.id) == []
    workers = platform.sacct_workers(job.id)
    assert workers and all(w["State"].split()[0] in ("COMPLETED", "CANCELLED", "FAILED")
                           for w in workers), workers
    return workers


def _check_same_slurm_terms(platform: Platform, job: Job,
                            workers: list[dict[str, str]]) -> None:
    """The workers ran under the owner's account with the job's account, partition, QOS."""
    platform.cluster.wait_for_accounting(int(job.backend_id))
    own = next(row for row in platform.cluster.sacct(
        int(job.backend_id), ("JobID", "Account", "Partition", "QOS"))
        if row["JobID"] == job.backend_id)
    for worker in workers:
        assert (worker["User"], worker["Account"], worker["Partition"], worker["QOS"]) == (
            accounts.unix_name(USER), own["Account"], own["Partition"], own["QOS"]), worker
    assert (own["Account"], own["QOS"]) == (SLURM_ACCOUNT, QOS)


def _result(job: Job) -> xr.DataArray:
    with xr.open_dataarray(Path(job.workdir) / "outputs" / "climatology.nc") as clim:
        return clim.load()


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, sample) -> Iterator[Platform]:
    from hub_helpers import reachable_by_accounts
    from slurm_helpers import multi_node_or_skip

    with contextlib.ExitStack() as stack:
        folder = reachable_by_accounts(tmp_path_factory.mktemp("mn"))
        cluster = stack.enter_context(multi_node_or_skip(folder, nodes=3, cpus_per_node=1))
        if not accounts.per_user():
            pytest.skip("workers run as their owner's Unix account: needs root")
        tmp = reachable_by_accounts(tmp_path_factory.mktemp("workers"))
        data = tmp / "data"
        owner = accounts.ensure_account(USER, data)
        accounts.ensure_account(OTHER, data)
        (accounts.user_home(OTHER, data) / "private.txt").write_text("bob's")
        for account in (DEFAULT_ACCOUNT, SLURM_ACCOUNT):
            cluster.add_account(account)
        cluster.add_user(owner.pw_name, DEFAULT_ACCOUNT, default=True)
        cluster.add_user(owner.pw_name, SLURM_ACCOUNT)
        cluster.sacctmgr("add", "qos", QOS)
        cluster.sacctmgr("modify", "user", "where", f"name={owner.pw_name}", "set",
                         f"qos+={QOS}")
        # the sample store: the OISST Mediterranean series, 10 chunks along time
        source = xr.open_dataset(sample("oisst_med_nc"))
        store = tmp / "oisst_med.zarr"
        source.chunk(time=1500).to_zarr(store)
        expected = source.sst.groupby("time.month").mean().load()
        url = f"sqlite:///{tmp / 'alloc.sqlite'}"
        db.upgrade(url)
        today = dt.date.today()
        with db.session_scope(url) as session:
            alloc = core.request_allocation(session, USER, {
                "project_title": "Scaling out", "pi": "Dr Test", "institution": "NMDC",
                "justification": "batch jobs with workers", "core_hours": 100,
                "max_cores": 3, "memory_per_job_gb": 4, "storage_gb": 10,
                "start_date": today - dt.timedelta(days=1),
                "end_date": today + dt.timedelta(days=30)})
            core.decide(session, alloc.id, "admin", True, approve=True)
            alloc_id = alloc.id
        settings = JobSettings(max_concurrent=2, max_cores=2, max_walltime_s=3600,
                               poll_interval=0.5, kill_grace_s=2.0, account=SLURM_ACCOUNT,
                               qos=QOS)
        runtime = JobRuntime(url, data_dir=data, settings=settings, slurm_env=cluster.env(),
                             slurm=True).start()
        stack.callback(runtime.stop, kill_jobs=True)
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        runner, app = stack.enter_context(jobs_cli(url, runtime, patch, user=USER))
        yield Platform(cluster, url, tmp, data, runtime, alloc_id, store, expected,
                       lambda *args: runner.invoke(app, [str(a) for a in args]))


@pytest.fixture(scope="module")
def climatology_job(platform: Platform) -> tuple[Job, dict[str, Any], float]:
    """The climatology job with ``--workers 2``, ended; its facts; seconds it took."""
    started = time.monotonic()
    job_id = platform.submit(CLIMATOLOGY_JOB, "clim.py", str(platform.store),
                             str(accounts.user_home(OTHER, platform.data)))
    job = platform.wait(job_id)
    took = time.monotonic() - started
    log = (Path(job.workdir) / "job.log").read_text()
    assert job.state == JobState.COMPLETED, (job.reason, log[-3000:])
    facts = json.loads((Path(job.workdir) / "outputs" / "facts.json").read_text())
    return job, facts, took


# ---------------------------------------------------------------------------- tests


def test_a_job_with_two_workers_spans_nodes_and_is_charged_from_sacct(
        platform: Platform, climatology_job: tuple[Job, dict[str, Any], float]) -> None:
    job, facts, took = climatology_job
    assert facts["cluster"] == "SLURMCluster" and facts["same"]
    # the result equals xarray's own groupby, computed here
    result = _result(job)
    assert list(result["month"].values) == list(range(1, 13))
    np.testing.assert_allclose(result.values, platform.expected.values, rtol=1e-12)
    # two workers on two different nodes, neither the job's, both computing
    batch_node = platform.cluster.wait_for_accounting(int(job.backend_id))["NodeList"]
    hosts = facts["hosts"]
    assert len(hosts) == 2 and len(set(hosts.values())) == 2 and batch_node not in hosts.values()
    addresses = platform.cluster.node_addresses
    for worker, node in hosts.items():
        assert worker.startswith(f"tls://{addresses[node]}:"), (worker, node)
    assert facts["task_workers"] == sorted(hosts)
    # Slurm agrees: the worker jobs ran on those nodes, as the owner, on the job's terms,
    # and none is left after the job
    workers = _check_workers_gone(platform, job)
    assert sorted(w["JobID"] for w in workers) == sorted(facts["slurm_ids"].values())
    by_id = {w["JobID"]: w["NodeList"] for w in workers}
    assert {by_id[facts["slurm_ids"][w]] for w in hosts} == set(hosts.values())
    _check_same_slurm_terms(platform, job, workers)
    # the ledger: the job's and each worker's core-hours, as sacct has them
    _check_charged_from_sacct(platform, job)
    assert len(platform.charged(job.id)) == 3
    # the workers' logs are in the job's outputs
    listed = platform.cli("jobs", "outputs", job.id, "--json")
    paths = [f["path"] for f in json.loads(listed.stdout)]
    assert sum(p.startswith("dask-workers/") and p.endswith(".err") for p in paths) == 2, paths
    print(f"\nclimatology job with 2 workers: {took:.1f} s from submission to its end, "
          f"{facts['workers_up_s']:.1f} s from cluster() to both workers connected")


def test_workers_run_as_the_owner_and_cannot_read_another_home(
        climatology_job: tuple[Job, dict[str, Any], float]) -> None:
    _job, facts, _took = climatology_job
    uid = pwd.getpwnam(accounts.unix_name(USER)).pw_uid
    assert set(facts["uids"].values()) == {uid}
    assert len(facts["reads"]) == 2
    for worker, read in facts["reads"].items():
        assert isinstance(read, str) and read.startswith("PermissionError"), (worker, read)


def test_a_killed_worker_is_survived_and_cancelling_tears_the_rest_down(
        platform: Platform) -> None:
    release = Path(platform.tmp / "release")
    job_id = platform.submit(KILLED_WORKER_JOB, "killed.py", str(platform.store), str(release))
    busy = platform.wait_for_output(job_id, "busy.json")
    assert len(busy["busy"]) == 2 and all(busy["busy"].values()), busy
    victim, survivor = sorted(busy["busy"])
    victim_job = int(busy["slurm_ids"][victim])
    # kill the victim's Slurm job while it holds gated tasks; release them once it is dead
    killed = time.monotonic()
    platform.cluster.scancel(victim_job)
    record = platform.cluster.wait_for_job(victim_job, timeout=120)
    assert record.state == "CANCELLED", record
    release.touch()
    after = platform.wait_for_output(job_id, "after.json")
    recovered_s = time.monotonic() - killed
    assert after["survivors"] == [survivor]
    # what the victim was processing was computed again, on the survivor
    recomputed = set(after["ran"].get(survivor, []))
    assert set(busy["busy"][victim]) <= recomputed, (busy, after)
    np.testing.assert_allclose(_result(platform.job(job_id)).values,
                               platform.expected.values, rtol=1e-12)
    # the owner cancels the job while its cluster is up: the backend ends the surviving
    # worker too, and charges the job and both workers from sacct
    assert platform.queued_workers(job_id) == [busy["slurm_ids"][survivor]]
    cancelled = time.monotonic()
    result = platform.cli("jobs", "cancel", job_id)
    assert result.exit_code == 0, result.output
    job = platform.wait(job_id, timeout=180)
    assert job.state == JobState.CANCELLED, job.reason
    print(f"\nkilled worker: result {recovered_s:.1f} s after the scancel; cancelled job "
          f"CANCELLED and charged {time.monotonic() - cancelled:.1f} s after `jobs cancel`")
    workers = _check_workers_gone(platform, job)
    assert sorted(w["JobID"] for w in workers) == sorted(busy["slurm_ids"].values())
    assert all(w["State"].startswith("CANCELLED") for w in workers), workers
    _check_charged_from_sacct(platform, job)


#: a job that dies abruptly right after submitting its workers (no atexit, no
#: SLURMCluster.close()): they wait for a scheduler that is gone (dask's death timeout,
#: 60 s), unless the service cancels them first
DYING_JOB = """\
import os

from oceandata.compute import cluster

c = cluster()  # returns once sbatch accepted the worker jobs
print("worker jobs:", sorted(job.job_id for job in c.workers.values()), flush=True)
os._exit(3)
"""


def test_a_job_dying_abruptly_leaves_no_worker_behind(platform: Platform) -> None:
    job_id = platform.submit(DYING_JOB, "dying.py")
    job = platform.wait(job_id, timeout=180)
    log = (Path(job.workdir) / "job.log").read_text()
    assert job.state == JobState.FAILED and job.exit_code == 3, (job.reason, log[-3000:])
    workers = _check_workers_gone(platform, job)
    assert f"worker jobs: {sorted(w['JobID'] for w in workers)}" in log, (workers, log)
    # nothing of the job cancelled them, nor did they give up on their own: the service
    assert len(workers) == 2 and all(w["State"].startswith("CANCELLED") for w in workers)
    _check_charged_from_sacct(platform, job)


def test_bad_worker_requests_are_refused_before_anything_is_queued(
        platform: Platform) -> None:
    script = platform.tmp / "scripts" / "noop.py"
    script.parent.mkdir(exist_ok=True)
    script.write_text("print('never runs')\n")
    jobs_before = platform.count_jobs()
    slurm = platform.runtime.backends["slurm"]
    for args, message in (
            (["--workers", "0"], "--workers 0 is less than 1"),
            (["--workers", "-2"], "--workers -2 is less than 1"),
            (["--workers", "two"], "--workers 'two' is not a whole number of workers"),
            (["--workers", "2", "--worker-memory", "lots"],
             "--worker-memory 'lots' is not a size"),
            (["--workers", "2", "--worker-memory", "4"], "--worker-memory '4' has no unit"),
            (["--workers", "2", "--worker-cores", "0"], "--worker-cores 0 is less than 1"),
            (["--worker-cores", "2"], "--worker-cores 2: give --workers N too"),
            (["--workers", "1", "--worker-cores", "2", "--backend", "slurm"],
             "--worker-cores 2 is more than the 1"),
            (["--workers", "1", "--worker-memory", "100GB", "--backend", "slurm"],
             "of the partition's largest node"),
            (["--workers", "3", "--backend", "slurm"],
             "the job and its 3 worker(s) need 4 cores at once (1 + 3 x 1)"),
            (["--workers", "2", "--backend", "local"],
             "on the local backend the workers share the job's --cores 1"),
            (["--workers", "2", "--worker-memory", "1GB", "--cores", "2", "--memory", "1GB",
              "--backend", "local"], "on the local backend the workers share the job's "
             "--memory"),
            (["--workers", "65", "--backend", "slurm"], "a job may have")):
        result = platform.cli("submit", script, "--memory", "1GB", "--walltime", "5:00",
                              "--allocation", platform.alloc_id, *args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("oceandata: error: "), result.stderr
        assert message in lines[0], (args, lines)
    # a Slurm backend whose jobs' Python has no dask-jobqueue cannot start workers
    python = slurm.python
    slurm.python = str(Path(sys.base_prefix) / "bin" / "python3")  # the system's, bare
    try:
        result = platform.cli("submit", script, "--memory", "1GB", "--walltime", "5:00",
                              "--workers", "1", "--backend", "slurm")
    finally:
        slurm.python = python
    assert result.exit_code == 2, result.output
    assert "dask-jobqueue is not installed in the jobs' Python" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert platform.count_jobs() == jobs_before
    assert not list((platform.data / "jobs").glob(f"*/{'[0-9a-f]' * 16}/noop.py"))
    queued = platform.cluster.run("squeue", "-h", "-o", "%i", check=False).stdout.split()
    assert queued == [], queued


LOCAL_JOB = """\
import json, os
from pathlib import Path

from oceandata.compute import cluster

if __name__ == "__main__":  # local workers are processes started from this script
    with cluster() as c, c.get_client() as client:
        info = client.scheduler_info()["workers"].values()
        facts = {"cluster": type(c).__name__, "same": cluster() is c,
                 "threads": sorted(w["nthreads"] for w in info),
                 "memory": sorted(w["memory_limit"] for w in info),
                 "hosts": sorted({w["host"] for w in info}),
                 "total": client.submit(sum, range(100)).result()}
        try:
            cluster(workers=3)
        except Exception as exc:
            facts["more"] = f"{type(exc).__name__}: {exc}"
    Path(os.environ["OCEANDATA_OUTPUT_DIR"], "facts.json").write_text(json.dumps(facts))
"""


def test_local_workers_share_the_jobs_cores(platform: Platform) -> None:
    path = platform.tmp / "scripts" / "local.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(LOCAL_JOB)
    result = platform.cli("submit", path, "--backend", "local", "--cores", "2", "--memory",
                          "2GB", "--walltime", "5:00", "--workers", "2", "--worker-memory",
                          "512MiB", "--allocation", platform.alloc_id, "--json")
    assert result.exit_code == 0, result.output
    job = platform.wait(json.loads(result.stdout)["id"], timeout=120)
    log = (Path(job.workdir) / "job.log").read_text()
    assert job.state == JobState.COMPLETED, (job.reason, log[-3000:])
    facts = json.loads((Path(job.workdir) / "outputs" / "facts.json").read_text())
    assert facts["cluster"] == "LocalCluster" and facts["same"]
    assert facts["threads"] == [1, 1] and facts["memory"] == [512 * 2**20] * 2
    assert facts["hosts"] == ["127.0.0.1"] and facts["total"] == 4950
    assert facts["more"] == ("UsageError: workers 3 is more than the 2 this job was given; "
                             "submit it with --workers 3")
    assert list(platform.charged(job.id)) == [job.id]  # the job's cores only
