"""Where jobs run: a bounded pool of local processes, or Slurm.

Both backends keep the job's state in the ``jobs`` table, changing it only through
:func:`transition` (a conditional ``UPDATE ... WHERE state IN (...)``), so that a state
moves once and a finished job is charged exactly once, in the same transaction as the
change to its final state (``cores x elapsed seconds``, :func:`oceandata.alloc.core.charge`).

Every job has a private folder ``<data dir>/jobs/<user>/<job id>/`` holding a copy of
its script, ``job.log`` (stdout and stderr) and ``outputs/``; it runs with the
environment variables ``OCEANDATA_CATALOG``, ``OCEANDATA_JOB_ID``,
``OCEANDATA_OUTPUT_DIR``, ``OCEANDATA_JOB_CORES`` and ``OCEANDATA_JOB_MEMORY`` (MiB) and
without the service's secrets (hub tokens, database URL, dask-gateway address), so that
:func:`oceandata.compute.cluster` in the script starts a
:class:`distributed.LocalCluster` inside the job's own allocation of cores and memory.

:class:`LocalBackend`
    Runs ``python SCRIPT ARGS`` (the script itself when it is executable) in its own
    process group, at most ``max_concurrent`` jobs at once, first come first served. A
    watcher thread starts queued jobs, notices exits (COMPLETED on exit code 0, else
    FAILED), kills a job past its walltime (TIMEOUT) or cancelled (CANCELLED): SIGTERM
    to the process group, SIGKILL after a grace period. A notebook (``.ipynb``) runs as
    ``python -m oceandata.jobs.notebook NOTEBOOK -p NAME VALUE ...`` on both backends
    (papermill, :mod:`oceandata.jobs.notebook`); when it fails, the failing cell's error
    it leaves in ``<job dir>/.failure`` is the job's reason. A small shell wrapper
    writes the exit code to ``<job dir>/.exit_code``, and ``backend_id`` holds
    ``pid:start-time``: after a service restart, a job whose process still runs is
    adopted (watched again, walltime included), one whose process ended while the
    service was down is finished from its exit file, and one whose process is gone
    without an exit code becomes FAILED, "lost: the service restarted while it ran".
    PENDING jobs are queued again in submission order.

:class:`SlurmBackend`
    Writes ``job.sbatch`` (``--job-name``, ``--cpus-per-task``, ``--mem``, ``--time``,
    ``--output``, ``--chdir``, and ``--partition``/``--account`` when set), submits it
    with ``sbatch --parsable``, cancels with ``scancel`` and reads states from
    ``scontrol show job -o`` (finished jobs stay there ``MinJobAge``) then from the job
    completion log (``sacct -c``) or the accounting database (``sacct``). Slurm's states
    map onto :class:`~oceandata.alloc.models.JobState` (NODE_FAIL, OUT_OF_MEMORY,
    BOOT_FAIL, DEADLINE, PREEMPTED ... become FAILED with the Slurm state as reason).
    The charge uses Slurm's own elapsed time. A job's Dask cluster is a LocalCluster
    on its node within its allocation (one node, ``--cpus-per-task`` cores), unless it
    was submitted with ``--workers N``: then ``oceandata.compute.cluster()`` in the job
    starts a dask-jobqueue ``SLURMCluster`` whose N workers are Slurm jobs of their own
    (:mod:`oceandata.jobs.workers`), submitted by the job (the owner's account) with the
    job's Slurm account, partition and QOS and named ``oceandata-<job id>-worker``.

Workers of a Slurm job end with it, whichever way it ends (three layers): the job's own
``SLURMCluster`` cancels them when the script closes it or exits; when the backend sees
the job end (completed, failed, cancelled, past its walltime, even after a service
restart) it runs ``scancel --name oceandata-<job id>-worker --user <owner's account>``
as the owner (and at once on ``cancel``); and a worker's ``--time`` is what was left of
the job's walltime when it was submitted, so Slurm itself ends it within a minute of the
job's end if nothing else did. The job stays RUNNING until all its workers have ended
and slurmdbd has their final records (bounded by :data:`WORKER_END_WAIT_S` and
:data:`ACCOUNTING_WAIT_S`); then, in one transaction, it moves to its final state and is
charged its own ``cores x elapsed`` plus each worker's ``AllocCPUS x ElapsedRaw`` from
``sacct`` (``NumCPUs x RunTime`` from ``scontrol`` without accounting), one usage row
per worker (reference ``<job id>/worker/<Slurm id>``).

On the local backend ``--workers N`` is a LocalCluster of N workers inside the job's
``--cores`` and ``--memory`` (refused at submission when they do not fit), charged as
the job.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..alloc import core
from ..alloc.db import session_scope
from ..alloc.models import Job, JobState, utcnow
from ..errors import OceandataError, UsageError
from ..hub import accounts
from ..testing.slurm import parse_duration, parse_scontrol_record
from . import JobSettings
from .notebook import RUNNER as NOTEBOOK_RUNNER
from .notebook import failure_reason, is_notebook
from .spec import JobSpec, format_walltime
from .workers import WorkerRequest, load_request, worker_environment, worker_job_name

log = logging.getLogger(__name__)

UNFINISHED = (JobState.PENDING, JobState.RUNNING)
#: seconds after a job's end that its Slurm workers may take to end (then charged as is)
WORKER_END_WAIT_S = 300.0
#: seconds after a job's end to wait for slurmdbd's final records of its workers
ACCOUNTING_WAIT_S = 120.0
LOST_REASON = "lost: the service restarted while it ran"
EXIT_FILE = ".exit_code"
#: environment variables never passed to a job (the service's secrets and routing)
_SCRUB_PREFIXES = ("JUPYTERHUB_", "JPY_", "DASK_GATEWAY", "SLURM_", "SBATCH_",
                   "OCEANDATA_ALLOC_", "OCEANDATA_TOKEN")
_SCRUB_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL")
_EXTRA_PATH = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/sbin", "/bin")


# ---------------------------------------------------------------------------- shared


@dataclass(frozen=True)
class WorkerJob:
    """Slurm's record of one worker job of a batch job (:meth:`SlurmBackend.worker_jobs`).

    Attributes
    ----------
    slurm_id
        The worker's Slurm job id.
    state
        Its Slurm state.
    cpus
        CPUs Slurm allocated to it (``AllocCPUS``, ``NumCPUs``).
    elapsed_s
        Seconds it ran (``ElapsedRaw``, ``RunTime``).
    source
        ``sacct`` (the accounting database) or ``scontrol`` (the controller).
    """

    slurm_id: str
    state: str
    cpus: int
    elapsed_s: float
    source: str

    @property
    def finished(self) -> bool:
        """Whether Slurm says it has ended."""
        return map_slurm_state(self.state).finished


def transition(db_url: str, job_id: str, to: JobState, *,
               from_states: Iterable[JobState] = UNFINISHED,
               elapsed_s: float | None = None, workers: Iterable[WorkerJob] = (),
               **values: Any) -> bool:
    """Move a job to state *to* if it is in one of *from_states*; charge when it ends.

    One transaction: the conditional update and, when *to* is a final state and
    *elapsed_s* is given, the charge of ``cores * elapsed_s`` to the job's allocation,
    plus ``cpus * elapsed_s`` of each of its Slurm *workers* (reference
    ``<job id>/worker/<Slurm id>``). Two callers racing for the same change (watcher and
    cancel, two pollers) cannot both win, so a job and its workers are charged at most
    once.

    Parameters
    ----------
    db_url
        The database.
    job_id
        The job.
    to
        The new state.
    from_states
        States the job may be in for the change to happen.
    elapsed_s
        Seconds the job ran (charged when *to* is final; None: nothing to charge).
    workers
        The job's Dask worker jobs on Slurm, each charged when *to* is final.
    **values
        Further columns to set (``started_at``, ``ended_at``, ``exit_code``, ...).

    Returns
    -------
    bool
        Whether this call made the change.
    """
    changed = _transition(db_url, job_id, to, from_states, elapsed_s, workers, values)
    if changed and to.finished:
        measure_outputs(db_url, job_id)
    return changed


def measure_outputs(db_url: str, job_id: str) -> None:
    """Measure the project a finished job was charged to (its folder, outputs included,
    counts against the project's quota: :func:`oceandata.alloc.workspaces.project_bytes`)
    and record it; a failure is logged, the next periodic scan measures it."""
    from ..alloc import workspaces
    from ..alloc.models import Allocation

    try:
        with session_scope(db_url) as session:
            job = session.get(Job, job_id)
            alloc = (session.get(Allocation, job.allocation_id)
                     if job is not None and job.allocation_id is not None else None)
            if alloc is not None:
                workspaces.measure(session, alloc)
    except Exception:  # the job's end is recorded; the periodic scan measures it later
        log.exception("could not measure the storage of job %s's project", job_id)


def _transition(db_url: str, job_id: str, to: JobState, from_states: Iterable[JobState],
                elapsed_s: float | None, workers: Iterable[WorkerJob],
                values: dict[str, Any]) -> bool:
    with session_scope(db_url) as session:
        result = session.execute(
            update(Job).where(Job.id == job_id, Job.state.in_(list(from_states)))
            .values(state=to, **values).execution_options(synchronize_session=False))
        if result.rowcount != 1:
            return False
        if to.finished and elapsed_s is not None:
            job = session.get(Job, job_id)
            assert job is not None
            core.charge(session, user=job.owner, allocation_id=job.allocation_id,
                        source="batch", ref=job.id, cores=job.cores,
                        seconds=max(0.0, float(elapsed_s)))
        if to.finished:
            job = session.get(Job, job_id)
            assert job is not None
            for worker in workers:
                if worker.elapsed_s > 0 and worker.cpus > 0:
                    core.charge(session, user=job.owner, allocation_id=job.allocation_id,
                                source="batch", ref=f"{job.id}/worker/{worker.slurm_id}",
                                cores=worker.cpus, seconds=float(worker.elapsed_s))
        return True


def job_environment(job: Job) -> dict[str, str]:
    """The environment of a job: the service's, without secrets, plus the job's variables.

    Parameters
    ----------
    job
        The job.

    Returns
    -------
    dict of str to str
        Variables for the job's process.
    """
    from ..config import get_settings

    env = {key: value for key, value in os.environ.items()
           if not key.startswith(_SCRUB_PREFIXES)
           and not any(word in key.upper() for word in _SCRUB_WORDS)}
    workdir = Path(job.workdir)
    env.update({
        "OCEANDATA_CATALOG": str(get_settings().catalog),
        "OCEANDATA_JOB_ID": job.id,
        "OCEANDATA_OUTPUT_DIR": str(workdir / "outputs"),
        "OCEANDATA_JOB_CORES": str(job.cores),
        "OCEANDATA_JOB_MEMORY": f"{job.memory_mb}MiB",
        "OMP_NUM_THREADS": str(job.cores),
    })
    env.update(worker_environment(job.id, workdir, load_request(workdir), job.backend))
    return env


def job_account(owner: str, workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    """``Popen`` arguments running a job as its owner's Unix account (per-user mode).

    Sets ``USER``, ``LOGNAME`` and ``HOME`` in *env* to the account's; returns ``user``,
    ``group`` and the account's own supplementary groups as the group database has them
    now (``initgroups``, as ``sudo`` and ``login`` do: its projects' groups
    ``oceandata-<id>``, which open their workspaces; none of the service's).
    Single-account mode: nothing to change, an empty dict.

    Parameters
    ----------
    owner
        The job's owner (hub user name).
    workdir
        The job's folder, ``<data dir>/jobs/<user>/<job id>``.
    env
        The job's environment, changed in place.
    """
    if not accounts.per_user():
        return {}
    entry = job_owner_account(owner, workdir)
    env.update(USER=entry.pw_name, LOGNAME=entry.pw_name, HOME=entry.pw_dir)
    groups = [g for g in os.getgrouplist(entry.pw_name, entry.pw_gid) if g != entry.pw_gid]
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": groups}


def job_command(job: Job, python: str = sys.executable) -> list[str]:
    """``python SCRIPT ARGS``, or ``SCRIPT ARGS`` when the script is executable; for a
    notebook, ``python -m oceandata.jobs.notebook NOTEBOOK -p NAME VALUE ...``."""
    script = Path(job.workdir) / job.script
    if is_notebook(script):
        return [python, "-m", NOTEBOOK_RUNNER, str(script), *job.args]
    if os.access(script, os.X_OK):
        return [str(script), *job.args]
    return [python, str(script), *job.args]


def _process_start(pid: int) -> str | None:
    """The start time of a live (not zombie) process, from ``/proc``; None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


@dataclass
class _Running:
    job_id: str
    pid: int
    started: dt.datetime
    deadline: float  # wall clock (time.time())
    popen: subprocess.Popen[bytes] | None  # None: adopted after a restart
    workdir: Path
    killed_for: str | None = None  # "timeout" | "cancel"
    term_at: float | None = None

    def returncode(self) -> int | bool | None:
        """Exit code when ended; ``False`` while running; None when ended, code unknown."""
        if self.popen is not None:
            code = self.popen.poll()
            return False if code is None else code
        if _process_start(self.pid) is not None:
            return False
        return _read_exit_file(self.workdir)


def _read_exit_file(workdir: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int((workdir / EXIT_FILE).read_text().strip())
    return None


def job_owner_account(owner: str, workdir: Path) -> Any:
    """The password entry of a job owner's account (made if needed), homes under the
    job's data dir (``<data dir>/jobs/<user>/<job id>``)."""
    return accounts.ensure_account(owner, Path(workdir).parents[2])


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


# ---------------------------------------------------------------------------- local


class LocalBackend:
    """A bounded pool of local processes, one per job (see the module docstring).

    Parameters
    ----------
    db_url
        The database holding the jobs.
    settings
        ``max_concurrent``, ``max_cores``, ``kill_grace_s``.
    interval
        Seconds between two looks at the running processes.
    """

    name = "local"

    def __init__(self, db_url: str, settings: JobSettings, interval: float = 0.05) -> None:
        self.db_url = db_url
        self.settings = settings
        self.interval = interval
        self._queue: collections.deque[str] = collections.deque()
        self._running: dict[str, _Running] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def max_cores(self) -> int:
        """Largest ``--cores`` of a job here."""
        return self.settings.max_cores

    def available(self) -> bool:
        """Always: the service's machine."""
        return True

    def check_workers(self, spec: JobSpec) -> None:
        """Refuse ``--workers`` that do not fit in the job: here the workers are a
        LocalCluster inside the job's own cores and memory.

        Raises
        ------
        UsageError
            With what to ask for instead.
        """
        if not spec.workers:
            return
        cores = spec.workers * spec.worker_cores
        memory = spec.workers * spec.worker_memory_mb
        if cores > spec.cores:
            raise UsageError(
                f"--workers {spec.workers} x --worker-cores {spec.worker_cores} need {cores} "
                f"cores; on the local backend the workers share the job's --cores "
                f"{spec.cores}: give --cores {cores} or more, fewer workers, or --backend slurm")
        if memory > spec.memory_mb:
            raise UsageError(
                f"--workers {spec.workers} x --worker-memory {spec.worker_memory_mb}MiB need "
                f"{memory}MiB; on the local backend the workers share the job's --memory "
                f"{spec.memory_mb}MiB: give --memory {memory}MiB or more, or less per worker")

    def extra_cores(self, spec: JobSpec) -> int:
        """Cores beyond the job's own: none, the workers run inside the job."""
        return 0

    # -- life

    def start(self) -> None:
        """Recover the jobs of a previous run, then start the watcher thread."""
        self.recover()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="oceandata-jobs-local",
                                        daemon=True)
        self._thread.start()

    def stop(self, kill_jobs: bool = False) -> None:
        """Stop the watcher; running jobs keep running (adopted at the next start).

        Parameters
        ----------
        kill_jobs
            Kill the running jobs' process groups too (they become FAILED, lost, at the
            next start, as their exit code is not recorded).
        """
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        with self._cond:
            running = list(self._running.values())
            self._running.clear()
            self._queue.clear()
        if kill_jobs:
            for proc in running:
                _signal_group(proc.pid, signal.SIGKILL)
                if proc.popen is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.popen.wait(timeout=10)

    def recover(self) -> None:
        """Adopt, finish or mark lost the RUNNING jobs left by a previous run; re-queue
        its PENDING jobs."""
        with session_scope(self.db_url) as session:
            jobs = list(session.scalars(
                select(Job).where(Job.backend == self.name, Job.state.in_(UNFINISHED))
                .order_by(Job.submitted_at, Job.id)))
        for job in jobs:
            if job.state == JobState.PENDING:
                with self._cond:
                    if job.id not in self._queue and job.id not in self._running:
                        self._queue.append(job.id)
                continue
            with self._cond:
                if job.id in self._running:
                    continue
            pid, _, start = (job.backend_id or "").partition(":")
            workdir = Path(job.workdir)
            started = _aware(job.started_at) or utcnow()
            if pid.isdigit() and start and _process_start(int(pid)) == start:
                with self._cond:
                    self._running[job.id] = _Running(
                        job.id, int(pid), started, started.timestamp() + job.walltime_s,
                        None, workdir)
                continue
            code = _read_exit_file(workdir)
            if code is None:
                transition(self.db_url, job.id, JobState.FAILED, from_states=[JobState.RUNNING],
                           ended_at=utcnow(), reason=LOST_REASON)
            else:
                ended = dt.datetime.fromtimestamp((workdir / EXIT_FILE).stat().st_mtime, dt.UTC)
                self._finish(job.id, started, ended, code, None,
                             note="finished while the service was down", workdir=workdir)

    # -- requests

    def submit(self, session: Session, job: Job) -> None:
        """Queue *job* once *session* commits (the row must be visible to the watcher)."""
        from sqlalchemy import event

        job_id = job.id
        event.listen(session, "after_commit", lambda _s: self.enqueue(job_id), once=True)

    def enqueue(self, job_id: str) -> None:
        """Put a committed PENDING job at the end of the queue."""
        with self._cond:
            if job_id not in self._queue and job_id not in self._running:
                self._queue.append(job_id)
            self._cond.notify_all()

    def cancel(self, job_id: str) -> None:
        """Cancel a queued job at once, or kill a running one (CANCELLED when it ends)."""
        with self._cond:
            if job_id in self._queue:
                self._queue.remove(job_id)
            proc = self._running.get(job_id)
            if proc is not None and proc.killed_for is None:
                proc.killed_for = "cancel"
                proc.term_at = time.time()
                _signal_group(proc.pid, signal.SIGTERM)
            self._cond.notify_all()
        if proc is None:
            transition(self.db_url, job_id, JobState.CANCELLED, from_states=[JobState.PENDING],
                       ended_at=utcnow(), reason="cancelled before it started")

    def poll(self) -> None:
        """Nothing to do: the watcher thread follows the local processes."""

    # -- watcher

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # pragma: no cover - keep watching; the log says why
                log.exception("local job watcher")
            with self._cond:
                self._cond.wait(timeout=self.interval)

    def _step(self) -> None:
        now = time.time()
        with self._cond:
            running = list(self._running.values())
        for proc in running:
            code = proc.returncode()
            if code is not False:
                ended = utcnow()
                with self._cond:
                    self._running.pop(proc.job_id, None)
                self._finish(proc.job_id, proc.started, ended, code, proc.killed_for,
                             workdir=proc.workdir)
                continue
            if proc.killed_for is None and now >= proc.deadline:
                with self._cond:
                    proc.killed_for = "timeout"
                    proc.term_at = now
                _signal_group(proc.pid, signal.SIGTERM)
            elif proc.term_at is not None and now - proc.term_at >= self.settings.kill_grace_s:
                _signal_group(proc.pid, signal.SIGKILL)
        while not self._stop.is_set():
            with self._cond:
                if not self._queue or len(self._running) >= self.settings.max_concurrent:
                    return
                job_id = self._queue.popleft()
            self._launch(job_id)

    def _finish(self, job_id: str, started: dt.datetime, ended: dt.datetime,
                code: int | None, killed_for: str | None, note: str | None = None,
                workdir: Path | None = None) -> None:
        if killed_for == "cancel":
            state, reason = JobState.CANCELLED, "cancelled by its owner"
        elif killed_for == "timeout":
            state, reason = JobState.TIMEOUT, "walltime exceeded: killed"
        elif code == 0:
            state, reason = JobState.COMPLETED, None
        elif code is None:
            state, reason = JobState.FAILED, LOST_REASON
        elif code < 0:
            state, reason = JobState.FAILED, f"killed by signal {-code}"
        else:
            state, reason = JobState.FAILED, f"exit code {code}"
            if workdir is not None:  # a notebook's failing cell says more
                reason = failure_reason(workdir) or reason
        if note:
            reason = f"{reason}; {note}" if reason else note
        transition(self.db_url, job_id, state, from_states=[JobState.RUNNING],
                   ended_at=ended, exit_code=code, reason=reason,
                   elapsed_s=(ended - started).total_seconds())

    def _launch(self, job_id: str) -> None:
        with session_scope(self.db_url) as session:
            job = session.get(Job, job_id)
            if job is None or job.state != JobState.PENDING:
                return
            env = job_environment(job)
            cmd = job_command(job)
            walltime = job.walltime_s
            owner = job.owner
        workdir = Path(job.workdir)
        (workdir / "outputs").mkdir(parents=True, exist_ok=True)
        (workdir / EXIT_FILE).unlink(missing_ok=True)
        wrapper = ['/bin/sh', '-c', 'x="$1"; shift; "$@"; rc=$?; echo "$rc" > "$x"; exit "$rc"',
                   "oceandata-job", str(workdir / EXIT_FILE), *cmd]
        started = utcnow()
        try:
            account = job_account(owner, workdir, env)
            # the folder is the owner's (per-user mode): never follow a link they put there
            fd = os.open(workdir / "job.log",
                         os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "ab") as logf:
                popen = subprocess.Popen(wrapper, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=subprocess.STDOUT,
                                         start_new_session=True, **account)
        except (OSError, OceandataError) as exc:
            transition(self.db_url, job_id, JobState.FAILED, from_states=[JobState.PENDING],
                       ended_at=utcnow(), reason=f"could not start: {exc}")
            return
        token = f"{popen.pid}:{_process_start(popen.pid) or ''}"
        proc = _Running(job_id, popen.pid, started, started.timestamp() + walltime, popen,
                        workdir)
        with self._cond:
            self._running[job_id] = proc
        if not transition(self.db_url, job_id, JobState.RUNNING, from_states=[JobState.PENDING],
                          started_at=started, backend_id=token):
            # cancelled between the queue and the start: undo
            with self._cond:
                self._running.pop(job_id, None)
            _signal_group(popen.pid, signal.SIGKILL)
            popen.wait()


# ---------------------------------------------------------------------------- slurm

#: Slurm job states and what they are here (the reason keeps Slurm's name when it differs)
SLURM_STATES: dict[str, JobState] = {
    "PENDING": JobState.PENDING, "CONFIGURING": JobState.PENDING,
    "REQUEUED": JobState.PENDING, "REQUEUE_FED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING, "RESV_DEL_HOLD": JobState.PENDING,
    "RUNNING": JobState.RUNNING, "COMPLETING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING, "SIGNALING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING, "SUSPENDED": JobState.RUNNING, "STOPPED": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "CANCELLED": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMEOUT, "DEADLINE": JobState.TIMEOUT,
    "FAILED": JobState.FAILED, "NODE_FAIL": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED, "BOOT_FAIL": JobState.FAILED,
    "PREEMPTED": JobState.FAILED, "REVOKED": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
}


def map_slurm_state(state: str) -> JobState:
    """Map a Slurm ``JobState`` (``CANCELLED by 0`` and ``COMPLETED+`` included).

    Parameters
    ----------
    state
        The state as ``scontrol`` or ``sacct`` print it.

    Returns
    -------
    JobState
        The platform's state (unknown states count as RUNNING until they end).
    """
    name = re.split(r"[\s+]", state.strip(), maxsplit=1)[0].upper() if state.strip() else ""
    return SLURM_STATES.get(name, JobState.RUNNING)


@dataclass(frozen=True)
class SlurmRecord:
    """What Slurm says of one job."""

    state: str
    exit_code: str
    elapsed_s: float | None
    start: dt.datetime | None
    end: dt.datetime | None
    source: str


def _slurm_time(text: str | None) -> dt.datetime | None:
    """``2026-11-29T10:22:20`` (the controller's local time) as UTC; None if unknown."""
    if not text or text in ("Unknown", "None", "N/A"):
        return None
    try:
        return dt.datetime.fromisoformat(text).astimezone(dt.UTC)
    except ValueError:
        return None


class SlurmBackend:
    """Jobs submitted to Slurm with ``sbatch`` (see the module docstring).

    Parameters
    ----------
    db_url
        The database holding the jobs.
    settings
        ``partition``, ``account`` and ``max_walltime_s``.
    env
        Environment of the Slurm commands (e.g. with ``SLURM_CONF``); default the
        service's own.
    python
        The interpreter that runs ``.py`` scripts on the compute nodes.
    """

    name = "slurm"

    def __init__(self, db_url: str, settings: JobSettings, env: dict[str, str] | None = None,
                 python: str = sys.executable) -> None:
        self.db_url = db_url
        self.settings = settings
        self.env = dict(env if env is not None else os.environ)
        path = self.env.get("PATH", "")
        self.env["PATH"] = os.pathsep.join([p for p in path.split(os.pathsep) if p]
                                           + list(_EXTRA_PATH))
        self.python = python
        self._available: bool | None = None
        self._max_cores: int | None = None
        self._max_memory_mb: int | None = None
        self._jobqueue: dict[str, bool] = {}
        self._misses: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- commands

    def _program(self, name: str) -> str | None:
        return shutil.which(name, path=self.env["PATH"])

    def run(self, program: str, *args: str, check: bool = True, timeout: float = 60.0,
            env: dict[str, str] | None = None,
            as_user: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a Slurm command with the backend's environment.

        In per-user mode, with *as_user*, the command runs as that user's Unix account
        through ``sudo -n -u <account> env VAR=... <program>`` (as dask-gateway's jobqueue
        backends submit), so Slurm records the job as the user's (``squeue``, ``sacct``).

        Parameters
        ----------
        program
            ``sbatch``, ``scontrol``, ``sacct``, ``scancel`` or ``sinfo``.
        *args
            Its arguments.
        check
            Raise :class:`RuntimeError` with Slurm's message when it fails.
        timeout
            Seconds allowed.
        env
            Environment (default the backend's).
        as_user
            The hub user to run the command as (per-user mode; ignored otherwise).

        Returns
        -------
        subprocess.CompletedProcess
            With text output.
        """
        exe = self._program(program)
        if exe is None:
            raise RuntimeError(f"{program} is not installed: Slurm is not available here")
        env = env if env is not None else self.env
        cmd = [exe, *args]
        if as_user is not None and accounts.per_user():
            cmd = self._sudo(as_user, env) + cmd
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            message = " ".join((done.stderr.strip() or done.stdout.strip()).split())
            raise RuntimeError(f"{program} failed: {message}")
        return done

    def _sudo(self, owner: str, env: dict[str, str]) -> list[str]:
        """``sudo -n -u <account> env VAR=...``: *env* reaches the command through ``env``
        (sudo resets the environment; root needs no ``SETENV`` in sudoers for this)."""
        sudo = self._program("sudo")
        if sudo is None:
            raise RuntimeError("sudo is not installed: it submits jobs as the users' Unix "
                               f"accounts (apt-get install sudo, or {accounts.ENV}=single)")
        account = accounts.unix_name(owner)  # made at submission
        return [sudo, "-n", "-u", account, "--", "/usr/bin/env", "-i",
                *(f"{key}={value}" for key, value in env.items())]

    def available(self) -> bool:
        """Whether ``sbatch`` is installed and the controller answers ``scontrol ping``."""
        if self._available is None:
            ok = all(self._program(p) for p in ("sbatch", "scontrol", "scancel"))
            if ok:
                try:
                    done = self.run("scontrol", "ping", check=False, timeout=10)
                    ok = done.returncode == 0 and "UP" in done.stdout
                except (OSError, subprocess.TimeoutExpired):
                    ok = False
            self._available = ok
        return self._available

    def max_cores(self) -> int:
        """CPUs of the partition's largest node (``sinfo -o %c``)."""
        if self._max_cores is None:
            args = ["-h", "-o", "%c"]
            if self.settings.partition:
                args += ["-p", self.settings.partition]
            done = self.run("sinfo", *args, check=False, timeout=30)
            counts = [int(m) for m in re.findall(r"\d+", done.stdout)]
            self._max_cores = max(counts) if counts else self.settings.max_cores
        return self._max_cores

    def max_memory_mb(self) -> int | None:
        """Memory (MiB) of the partition's largest node (``sinfo -o %m``); None: unknown."""
        if self._max_memory_mb is None:
            args = ["-h", "-o", "%m"]
            if self.settings.partition:
                args += ["-p", self.settings.partition]
            done = self.run("sinfo", *args, check=False, timeout=30)
            sizes = [int(m) for m in re.findall(r"\d+", done.stdout)]
            self._max_memory_mb = max(sizes) if sizes else 0
        return self._max_memory_mb or None

    def check_workers(self, spec: JobSpec) -> None:
        """Refuse ``--workers`` Slurm could never start: a worker larger than the
        partition's largest node, or no dask-jobqueue in the jobs' environment.

        Raises
        ------
        UsageError
            With what would be valid.
        """
        if not spec.workers:
            return
        cores = self.max_cores()
        if spec.worker_cores > cores:
            raise UsageError(f"--worker-cores {spec.worker_cores} is more than the {cores} of "
                             f"the partition's largest node; give 1 to {cores}")
        memory = self.max_memory_mb()
        if memory is not None and spec.worker_memory_mb > memory:
            raise UsageError(f"--worker-memory {spec.worker_memory_mb}MiB is more than the "
                             f"{memory}MiB of the partition's largest node; give at most "
                             f"{memory}MiB")
        if self.python not in self._jobqueue:  # asked once per interpreter
            found = subprocess.run([self.python, "-c", "import dask_jobqueue"],
                                   capture_output=True, timeout=60)
            self._jobqueue[self.python] = found.returncode == 0
        if not self._jobqueue[self.python]:
            raise UsageError("--workers: dask-jobqueue is not installed in the jobs' Python "
                             f"({self.python}), so Slurm workers cannot be started; leave "
                             "--workers out (the job's own LocalCluster)")

    def extra_cores(self, spec: JobSpec) -> int:
        """Cores beyond the job's own: every worker is a Slurm job of its own."""
        return spec.workers * spec.worker_cores if spec.workers else 0

    def start(self) -> None:
        """Nothing to start: Slurm keeps its queue; the service's poller reads it."""

    def stop(self, kill_jobs: bool = False) -> None:
        """Nothing to stop; Slurm jobs outlive the service (*kill_jobs* is ignored)."""

    # -- requests

    def batch_script(self, job: Job) -> str:
        """The ``sbatch`` script of *job*."""
        workdir = Path(job.workdir)
        lines = [
            "#!/bin/bash",
            f"#SBATCH --job-name=oceandata-{job.id}",
            "#SBATCH --ntasks=1",
            f"#SBATCH --cpus-per-task={job.cores}",
            f"#SBATCH --mem={job.memory_mb}M",
            f"#SBATCH --time={format_walltime(job.walltime_s)}",
            f"#SBATCH --output={workdir / 'job.log'}",
            f"#SBATCH --chdir={workdir}",
        ]
        if self.settings.partition:
            lines.append(f"#SBATCH --partition={self.settings.partition}")
        if self.settings.account:
            lines.append(f"#SBATCH --account={self.settings.account}")
        if self.settings.qos:
            lines.append(f"#SBATCH --qos={self.settings.qos}")
        env = job_environment(job)
        request = load_request(workdir)
        if request is None:
            lines.append("# the job's Dask cluster: a LocalCluster within this allocation")
        for key in ("OCEANDATA_CATALOG", "OCEANDATA_JOB_ID", "OCEANDATA_OUTPUT_DIR",
                    "OCEANDATA_JOB_MEMORY"):
            lines.append(f"export {key}={shlex.quote(env[key])}")
        lines.append(f'export OCEANDATA_JOB_CORES="${{SLURM_CPUS_PER_TASK:-{job.cores}}}"')
        lines.append('export OMP_NUM_THREADS="$OCEANDATA_JOB_CORES"')
        if request is not None:
            lines += self._worker_lines(job, request)
        lines.append("unset JUPYTERHUB_API_TOKEN DASK_GATEWAY__ADDRESS")
        lines.append(f"mkdir -p {shlex.quote(str(workdir / 'outputs'))}")
        lines.append(shlex.join(job_command(job, self.python)))
        return "\n".join(lines) + "\n"

    def _worker_lines(self, job: Job, request: WorkerRequest) -> list[str]:
        """The batch script's lines telling :func:`oceandata.compute.cluster` the job's
        workers: their number and size, their Slurm job name, and the job's own account,
        partition and QOS as Slurm gave them (for the workers to use the same)."""
        env = worker_environment(job.id, job.workdir, request, self.name)
        lines = [f"# the job's Dask cluster: a SLURMCluster of {request.workers} worker "
                 "job(s) named as below, with this job's account, partition and QOS, ending "
                 "by the end of this job's walltime (oceandata.jobs.workers)"]
        lines += [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
        for var, slurm_var, fallback in (
                ("OCEANDATA_JOB_SLURM_ACCOUNT", "SLURM_JOB_ACCOUNT", self.settings.account),
                ("OCEANDATA_JOB_SLURM_PARTITION", "SLURM_JOB_PARTITION",
                 self.settings.partition),
                ("OCEANDATA_JOB_SLURM_QOS", "SLURM_JOB_QOS", self.settings.qos)):
            default = shlex.quote(fallback) if fallback else ""
            lines.append(f'export {var}="${{{slurm_var}:-}}"')
            if default:
                lines.append(f'[ -n "${var}" ] || export {var}={default}')
        lines.append(f'export OCEANDATA_JOB_DEADLINE="$(( $(date +%s) + {job.walltime_s} ))"')
        return lines

    def submit(self, session: Session, job: Job) -> None:
        """Submit *job* with ``sbatch --parsable``; its Slurm id goes to ``backend_id``."""
        workdir = Path(job.workdir)
        (workdir / "outputs").mkdir(parents=True, exist_ok=True)
        script = workdir / "job.sbatch"
        # the folder is the owner's (per-user mode): never follow a link they put there
        fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.batch_script(job))
        # sbatch exports its environment to the job: the job's, not the service's secrets
        env = {**job_environment(job), "PATH": self.env["PATH"]}
        if self.env.get("SLURM_CONF"):
            env["SLURM_CONF"] = self.env["SLURM_CONF"]
        if accounts.per_user():
            entry = job_owner_account(job.owner, workdir)
            os.lchown(script, entry.pw_uid, entry.pw_gid)
            # the owner's home, not the service's: caches (numba's, dask's) go there
            env.update(USER=entry.pw_name, LOGNAME=entry.pw_name, HOME=entry.pw_dir)
        out = self.run("sbatch", "--parsable", str(script), env=env,
                       as_user=job.owner).stdout.strip()
        job.backend_id = out.splitlines()[-1].split(";")[0].strip()
        session.flush()

    def cancel(self, job_id: str) -> None:
        """``scancel`` the job, and its workers; its state follows at the next poll."""
        with session_scope(self.db_url) as session:
            job = session.get(Job, job_id)
            slurm_id = job.backend_id if job is not None else None
            owner = job.owner if job is not None else None
            workdir = job.workdir if job is not None else None
        if slurm_id:
            self.run("scancel", slurm_id, as_user=owner)
        if owner is not None and load_request(workdir) is not None:
            self.cancel_workers(job_id, owner)
        self.poll()

    # -- workers

    def cancel_workers(self, job_id: str, owner: str) -> None:
        """``scancel --name oceandata-<job id>-worker`` as the job's owner (their jobs
        only: ``--user`` their account in per-user mode)."""
        args = ["--name", worker_job_name(job_id)]
        if accounts.per_user():
            args += ["--user", accounts.unix_name(owner)]
        done = self.run("scancel", *args, check=False, as_user=owner)
        if done.returncode != 0:
            log.warning("scancel of job %s's workers: %s", job_id,
                        (done.stderr or done.stdout).strip())

    def worker_jobs(self, job_id: str, owner: str,
                    since: dt.datetime | None = None) -> tuple[dict[str, WorkerJob], bool]:
        """The Slurm jobs named ``oceandata-<job id>-worker`` under the owner's account.

        From the controller (``scontrol show job -o``: the jobs it still holds) and from
        the accounting database (``sacct -X --name ... -o JobID,State,ElapsedRaw,AllocCPUS``),
        whose record of a finished job is preferred.

        Parameters
        ----------
        job_id
            The batch job.
        owner
            Its owner (hub user name).
        since
            When the job was submitted (``sacct -S``, less an hour for clock skew).

        Returns
        -------
        tuple of (dict of str to WorkerJob, bool)
            The worker jobs by Slurm id, and whether ``sacct`` answered (accounting on).
        """
        name = worker_job_name(job_id)
        account = accounts.unix_name(owner) if accounts.per_user() else None
        found: dict[str, WorkerJob] = {}
        done = self.run("scontrol", "show", "job", "-o", check=False, timeout=60)
        for line in done.stdout.splitlines():
            fields = parse_scontrol_record(line)
            if fields.get("JobName") != name or not fields.get("JobId"):
                continue
            if account and not fields.get("UserId", "").startswith(f"{account}("):
                continue
            cpus = fields.get("NumCPUs", "0")
            found[fields["JobId"]] = WorkerJob(
                fields["JobId"], fields.get("JobState", ""),
                int(cpus) if cpus.isdigit() else 0,
                parse_duration(fields.get("RunTime", "")) or 0.0, "scontrol")
        start = (since or utcnow()) - dt.timedelta(hours=1)
        names = ("JobID", "State", "ElapsedRaw", "AllocCPUS")
        args = ["-X", "-n", "-P", "--name", name, "-S",
                start.astimezone().strftime("%Y-%m-%dT%H:%M:%S"), "-o", ",".join(names)]
        args += ["--user", account] if account else ["--allusers"]
        done = self.run("sacct", *args, check=False, timeout=60)
        for line in done.stdout.splitlines() if done.returncode == 0 else ():
            values = line.split("|")
            if len(values) != len(names) or not values[0].isdigit():
                continue
            slurm_id, state, elapsed, cpus = values
            record = WorkerJob(slurm_id, state, int(cpus) if cpus.isdigit() else 0,
                               float(elapsed) if elapsed.isdigit() else 0.0, "sacct")
            known = found.get(slurm_id)
            if known is None or record.finished or not known.finished:
                found[slurm_id] = record
        return found, done.returncode == 0

    def _end_workers(self, job_id: str, owner: str, submitted: dt.datetime | None,
                     ended: dt.datetime | None) -> tuple[list[WorkerJob], str | None] | None:
        """Tear down the workers of a job that ended; their records once all have ended.

        Cancels them (again: a no-op once gone), then reads their records. While one
        still runs (up to :data:`WORKER_END_WAIT_S` after the job's end), or while
        slurmdbd has not yet the final record of one (up to :data:`ACCOUNTING_WAIT_S`),
        returns None: the job stays RUNNING until the next poll, so that the job and all
        its workers are charged in one transaction.

        Returns
        -------
        tuple of (list of WorkerJob, str or None) or None
            The records to charge and a note for the job's reason; None: not yet.
        """
        self.cancel_workers(job_id, owner)
        jobs, accounting = self.worker_jobs(job_id, owner, submitted)
        waited = (utcnow() - (ended or utcnow())).total_seconds()
        running = [j.slurm_id for j in jobs.values() if not j.finished]
        if running and waited < WORKER_END_WAIT_S:
            return None
        if accounting and waited < ACCOUNTING_WAIT_S and any(
                j.source != "sacct" for j in jobs.values()):
            return None
        note = (f"worker job(s) {', '.join(running)} still ending {waited:.0f} s after the "
                "job: charged up to now" if running else None)
        return sorted(jobs.values(), key=lambda j: int(j.slurm_id)), note

    # -- records

    def records(self, slurm_ids: list[str]) -> dict[str, SlurmRecord]:
        """Slurm's records of these jobs: ``scontrol`` first, then ``sacct -c``/``sacct``.

        Parameters
        ----------
        slurm_ids
            Slurm job ids.

        Returns
        -------
        dict of str to SlurmRecord
            The jobs Slurm still knows.
        """
        found: dict[str, SlurmRecord] = {}
        if not slurm_ids:
            return found
        done = self.run("scontrol", "show", "job", "-o", check=False, timeout=60)
        wanted = set(slurm_ids)
        for line in done.stdout.splitlines():
            fields = parse_scontrol_record(line)
            job_id = fields.get("JobId")
            if job_id in wanted:
                found[job_id] = SlurmRecord(
                    state=fields.get("JobState", ""), exit_code=fields.get("ExitCode", ""),
                    elapsed_s=parse_duration(fields.get("RunTime", "")),
                    start=_slurm_time(fields.get("StartTime")),
                    end=_slurm_time(fields.get("EndTime")), source="scontrol")
        missing = [i for i in slurm_ids if i not in found]
        names = ("JobID", "State", "ExitCode", "Elapsed", "Start", "End")
        for mode in (["-c"], []):
            if not missing:
                break
            done = self.run("sacct", *mode, "-j", ",".join(missing), "-P", "-n", "-o",
                            ",".join(names), check=False, timeout=60)
            for line in done.stdout.splitlines():
                values = line.split("|")
                if len(values) != len(names) or values[0] not in missing:
                    continue
                fields = dict(zip(names, values, strict=True))
                found[values[0]] = SlurmRecord(
                    state=fields["State"], exit_code=fields["ExitCode"],
                    elapsed_s=parse_duration(fields["Elapsed"]),
                    start=_slurm_time(fields["Start"]), end=_slurm_time(fields["End"]),
                    source="sacct -c" if mode else "sacct")
            missing = [i for i in missing if i not in found]
        return found

    def poll(self) -> None:
        """Bring the unfinished Slurm jobs' states up to date; charge those that ended."""
        with self._lock:
            with session_scope(self.db_url) as session:
                jobs = [(j.id, j.backend_id, j.state, _aware(j.submitted_at), j.workdir,
                         j.owner)
                        for j in session.scalars(select(Job).where(
                            Job.backend == self.name, Job.state.in_(UNFINISHED)))]
            ids = [b for _, b, _, _, _, _ in jobs if b]
            records = self.records(ids) if ids else {}
            for job_id, slurm_id, state, submitted, workdir, owner in jobs:
                record = records.get(slurm_id or "")
                if record is None:
                    self._unknown(job_id, slurm_id, submitted, owner)
                    continue
                self._misses.pop(job_id, None)
                self._apply(job_id, state, record, Path(workdir) if workdir else None,
                            owner=owner, submitted=submitted)

    def _unknown(self, job_id: str, slurm_id: str | None, submitted: dt.datetime | None,
                 owner: str | None = None) -> None:
        misses = self._misses[job_id] = self._misses.get(job_id, 0) + 1
        age = (utcnow() - submitted).total_seconds() if submitted else 1e9
        if misses >= 5 and age > 60:
            self._misses.pop(job_id, None)
            if owner is not None:  # a lost job's workers must not outlive it
                self.cancel_workers(job_id, owner)
            transition(self.db_url, job_id, JobState.FAILED, ended_at=utcnow(),
                       reason=f"lost: Slurm no longer knows job {slurm_id}")

    def _apply(self, job_id: str, current: JobState, record: SlurmRecord,
               workdir: Path | None = None, owner: str | None = None,
               submitted: dt.datetime | None = None) -> None:
        new = map_slurm_state(record.state)
        slurm_name = record.state.split()[0] if record.state.strip() else ""
        if new == current:
            return
        if new == JobState.RUNNING:
            transition(self.db_url, job_id, JobState.RUNNING, from_states=[JobState.PENDING],
                       started_at=record.start or utcnow())
            return
        if new == JobState.PENDING:
            return
        code, _, sig = record.exit_code.partition(":")
        exit_code = int(code) if code.isdigit() else None
        reason = None
        if slurm_name and slurm_name != new.value:
            reason = f"Slurm: {slurm_name}"
        elif new == JobState.FAILED:
            reason = f"exit code {exit_code}"
            if workdir is not None:  # a notebook's failing cell says more
                reason = failure_reason(workdir) or reason
        if sig.isdigit() and int(sig):
            reason = f"{reason or 'Slurm'}; signal {sig}"
        elapsed = record.elapsed_s if record.elapsed_s else None
        workers: list[WorkerJob] = []
        if owner is not None and load_request(workdir) is not None:
            ended = self._end_workers(job_id, owner, submitted, record.end)
            if ended is None:
                return  # its workers are still ending: charged together at a later poll
            workers, note = ended
            if note:
                reason = f"{reason}; {note}" if reason else note
        values: dict[str, Any] = {"ended_at": record.end or utcnow(), "exit_code": exit_code,
                                  "reason": reason}
        if record.start is not None and elapsed:
            values["started_at"] = record.start
        transition(self.db_url, job_id, new, elapsed_s=elapsed, workers=workers, **values)
