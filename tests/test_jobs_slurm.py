"""Batch jobs on a real single-node Slurm (:func:`oceandata.testing.slurm.single_node_slurm`).

Outside CI these tests are skipped, with the reason, where Slurm cannot start; with
``CI=true`` that is a failure. The charges are compared with Slurm's own records of the
jobs, read independently through the fixture's :meth:`SlurmCluster.job_record`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hub_helpers import reachable_by_accounts
from sqlalchemy import select

from oceandata.alloc import core, db
from oceandata.alloc.models import Job, JobState, Usage
from oceandata.jobs import JobSettings, service
from oceandata.jobs.service import JobRuntime
from oceandata.jobs.spec import make_spec
from oceandata.testing.slurm import SlurmCluster, SlurmUnavailable, in_ci, single_node_slurm

pytestmark = pytest.mark.slow

OK_SCRIPT = """\
import os, sys, time
from pathlib import Path
time.sleep(1.5)  # long enough for Slurm's whole-second run time to be non-zero
out = Path(os.environ["OCEANDATA_OUTPUT_DIR"])
(out / "result.txt").write_text(" ".join([os.environ["OCEANDATA_JOB_ID"],
    os.environ["OCEANDATA_JOB_CORES"], os.environ["SLURM_JOB_ID"], *sys.argv[1:]]))
print("hello from slurm", flush=True)
"""
WAIT_SCRIPT = """\
import sys, time
from pathlib import Path
while not Path(sys.argv[1]).exists():
    time.sleep(0.05)
"""


def _skip_or_fail(reason: str) -> None:
    if in_ci():
        pytest.fail(f"Slurm is required in CI: {reason}", pytrace=False)
    pytest.skip(f"no single-node Slurm here: {reason}")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A running single-node cluster for this module."""
    with contextlib.ExitStack() as stack:
        try:
            # as root, jobs are submitted as their owners' Unix accounts: they read slurm.conf
            folder = reachable_by_accounts(tmp_path_factory.mktemp("slurm"))
            cluster = stack.enter_context(single_node_slurm(folder))
        except SlurmUnavailable as exc:
            _skip_or_fail(str(exc))
        yield cluster


class Env:
    def __init__(self, url: str, tmp: Path, runtime: JobRuntime, alloc_id: int) -> None:
        self.url, self.tmp, self.runtime, self.alloc_id = url, tmp, runtime, alloc_id

    def submit(self, text: str, args: tuple[str, ...] = (), cores: int = 1) -> str:
        script = self.tmp / "scripts" / f"job{time.monotonic_ns()}.py"
        script.parent.mkdir(exist_ok=True)
        script.write_text(text)
        spec = make_spec(script, list(args), cores=cores, memory="100MiB", walltime="10:00",
                         max_cores=self.runtime.backends["slurm"].max_cores())
        with db.session_scope(self.url) as session:
            return service.submit(session, "alice", spec, self.alloc_id, "slurm",
                                  runtime=self.runtime).id

    def job(self, job_id: str) -> Job:
        with db.session_scope(self.url) as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job

    def wait(self, job_ids: list[str], states: set[JobState], timeout: float = 120) -> list[Job]:
        deadline = time.monotonic() + timeout
        while True:
            jobs = [self.job(j) for j in job_ids]
            if all(j.state in states for j in jobs):
                return jobs
            assert time.monotonic() < deadline, [(j.id, j.state, j.reason) for j in jobs]
            time.sleep(0.1)

    def usage(self, ref: str) -> list[Usage]:
        with db.session_scope(self.url) as session:
            return list(session.scalars(select(Usage).where(Usage.ref == ref)))


@pytest.fixture
def env(slurm: SlurmCluster, tmp_path: Path) -> Iterator[Env]:
    url = f"sqlite:///{tmp_path / 'alloc.sqlite'}"
    db.upgrade(url)
    today = dt.date.today()
    with db.session_scope(url) as session:
        alloc = core.request_allocation(session, "alice", {
            "project_title": "Slurm jobs", "pi": "Dr Test", "institution": "NMDC",
            "justification": "testing", "core_hours": 1000, "max_cores": 4,
            "memory_per_job_gb": 4, "storage_gb": 10,
            "start_date": today - dt.timedelta(days=1), "end_date": today + dt.timedelta(days=9)})
        core.decide(session, alloc.id, "admin", True, approve=True)
        alloc_id = alloc.id
    settings = JobSettings(max_concurrent=2, max_cores=4, max_walltime_s=3600,
                           poll_interval=0.2, kill_grace_s=2.0)
    runtime = JobRuntime(url, data_dir=tmp_path / "data", settings=settings,
                         slurm_env=slurm.env(), slurm=True).start()
    try:
        yield Env(url, tmp_path, runtime, alloc_id)
    finally:
        runtime.stop(kill_jobs=True)


def _check_charge(env: Env, slurm: SlurmCluster, job: Job) -> float:
    """The job's one usage row equals cores x Slurm's own elapsed time; return it."""
    record = slurm.job_record(int(job.backend_id))
    assert record is not None and record.finished, record
    assert record.elapsed_s is not None and record.elapsed_s >= 1
    rows = env.usage(job.id)
    assert len(rows) == 1, rows
    assert rows[0].seconds == pytest.approx(record.elapsed_s)
    assert rows[0].core_hours == pytest.approx(job.cores * record.elapsed_s / 3600)
    return rows[0].core_hours


def test_job_on_slurm_completes_and_is_charged_from_slurms_record(
        env: Env, slurm: SlurmCluster) -> None:
    job_id = env.submit(OK_SCRIPT, ("x",))
    job = env.wait([job_id], {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED,
                              JobState.TIMEOUT})[0]
    log = (Path(job.workdir) / "job.log").read_text()
    assert job.state == JobState.COMPLETED, (job.reason, log)
    assert job.exit_code == 0
    assert "hello from slurm" in log
    result = (Path(job.workdir) / "outputs" / "result.txt").read_text()
    assert result == f"{job_id} 1 {job.backend_id} x"
    batch = (Path(job.workdir) / "job.sbatch").read_text()
    for line in (f"#SBATCH --job-name=oceandata-{job_id}", "#SBATCH --cpus-per-task=1",
                 "#SBATCH --mem=100M", "#SBATCH --time=00:10:00",
                 f"#SBATCH --output={job.workdir}/job.log", f"#SBATCH --chdir={job.workdir}"):
        assert line in batch.splitlines()
    record = slurm.job_record(int(job.backend_id))
    assert record.fields.get("TimeLimit", "00:10:00") == "00:10:00"
    _check_charge(env, slurm, job)


def test_cancel_a_slurm_job(env: Env, slurm: SlurmCluster) -> None:
    job_id = env.submit(WAIT_SCRIPT, (str(env.tmp / "never"),))
    env.wait([job_id], {JobState.RUNNING})
    deadline = time.monotonic() + 30
    while (slurm.job_record(int(env.job(job_id).backend_id)).elapsed_s or 0) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    with db.session_scope(env.url) as session:
        service.cancel(session, "alice", job_id, runtime=env.runtime)
    job = env.wait([job_id], {JobState.CANCELLED, JobState.FAILED, JobState.COMPLETED})[0]
    assert job.state == JobState.CANCELLED, job.reason
    record = slurm.job_record(int(job.backend_id))
    assert record.state.startswith("CANCELLED")
    assert int(job.backend_id) not in slurm.queue()
    _check_charge(env, slurm, job)


def test_ten_concurrent_slurm_jobs_all_finish_once(env: Env, slurm: SlurmCluster) -> None:
    started = time.monotonic()
    barrier = threading.Barrier(10)

    def one(i: int) -> str:
        barrier.wait(timeout=30)
        return env.submit(OK_SCRIPT, (str(i),))

    with ThreadPoolExecutor(max_workers=10) as pool:
        ids = list(pool.map(one, range(10)))
    assert len(set(ids)) == 10
    jobs = env.wait(ids, {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED,
                          JobState.TIMEOUT}, timeout=240)
    assert [j.state for j in jobs] == [JobState.COMPLETED] * 10, [(j.id, j.reason) for j in jobs]
    assert len({j.backend_id for j in jobs}) == 10
    for i, job in enumerate(jobs):
        assert (Path(job.workdir) / "outputs" / "result.txt").read_text().split()[-1] == str(i)
    expected = sum(_check_charge(env, slurm, job) for job in jobs)
    with db.session_scope(env.url) as session:
        assert core.used_core_hours(session, env.alloc_id) == pytest.approx(expected)
        rows = list(session.scalars(select(Usage)))
    assert sorted(r.ref for r in rows) == sorted(ids)
    assert time.monotonic() - started < 240
