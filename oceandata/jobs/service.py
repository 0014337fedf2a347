"""The rules of batch jobs, shared by the REST API and the command line.

- :func:`submit` checks the request against the user's allocation
  (:func:`oceandata.alloc.core.check_compute` with ``cores``, ``memory`` and
  ``walltime``, plus the core-hours already reserved by the allocation's unfinished
  jobs) *before* anything is written or queued; an over-quota request leaves no job row,
  folder or process;
- :func:`list_jobs`, :func:`get_job`, :func:`cancel`, :func:`logs`, :func:`outputs` and
  :func:`output_file` only show a user their own jobs (every job to an admin): another
  user's job is "not found", never "forbidden";
- :func:`startup` / :func:`shutdown` start and stop the backends and the poller
  (:class:`JobRuntime`) for a FastAPI app; they may be called or awaited.

The runtime's backends: ``local`` always, ``slurm`` when ``sbatch`` is installed and the
controller answers. Only one service process should run a runtime for a database (the
local backend adopts the jobs it finds RUNNING at start).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import threading
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..alloc import core
from ..alloc.db import default_url
from ..alloc.models import Allocation, Job, JobState, utcnow
from ..errors import NotAuthorized, UsageError
from ..governance import audit
from ..hub import accounts
from . import JobSettings
from .backends import UNFINISHED, LocalBackend, SlurmBackend
from .spec import JobSpec, parse_cores, parse_walltime
from .workers import WorkerRequest, load_request, remove_request, save_request

log = logging.getLogger(__name__)

BACKENDS = ("local", "slurm")


class JobFinished(UsageError):
    """The job has already ended (nothing to cancel)."""


class PathRefused(UsageError):
    """An output path that leaves the job's folder (``..``, absolute)."""


class _Done:
    """Returned by :func:`startup`/:func:`shutdown` so that both ``f(app)`` and
    ``await f(app)`` work."""

    def __await__(self) -> Generator[None, None, None]:
        return iter(())


# ---------------------------------------------------------------------------- runtime


class JobRuntime:
    """The backends and the poller of one service process.

    Parameters
    ----------
    db_url
        The database.
    data_dir
        Root of the jobs' folders (``<data_dir>/jobs/<user>/<id>/``; default the
        platform's data dir).
    settings
        Limits and intervals (default :meth:`JobSettings.from_env`).
    slurm_env
        Environment of the Slurm commands (``SLURM_CONF``); default the service's.
    slurm
        Whether to offer the Slurm backend: None (default) when it is available.
    """

    def __init__(self, db_url: str, data_dir: Path | None = None,
                 settings: JobSettings | None = None, slurm_env: dict[str, str] | None = None,
                 slurm: bool | None = None) -> None:
        from ..config import get_settings

        self.db_url = db_url
        self.data_dir = Path(data_dir) if data_dir is not None else get_settings().data_dir
        self.settings = settings or JobSettings.from_env()
        self.backends: dict[str, Any] = {"local": LocalBackend(db_url, self.settings)}
        if slurm is not False:
            backend = SlurmBackend(db_url, self.settings, env=slurm_env)
            if backend.available():
                self.backends["slurm"] = backend
            elif slurm:
                raise UsageError("Slurm is not available here (no sbatch, or the controller "
                                 "does not answer scontrol ping)")
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> JobRuntime:
        """Start the backends (recovering jobs of a previous run) and the poller."""
        for backend in self.backends.values():
            backend.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll_loop, name="oceandata-jobs-poller",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, kill_jobs: bool = False) -> None:
        """Stop the poller and the backends.

        Parameters
        ----------
        kill_jobs
            Kill running local jobs too (default: leave them; the next start adopts them).
        """
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        for backend in self.backends.values():
            backend.stop(kill_jobs=kill_jobs)

    def poll(self) -> None:
        """Poll every backend once now (the poller does it every ``poll_interval``)."""
        for backend in self.backends.values():
            backend.poll()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # pragma: no cover - keep polling; the log says why
                log.exception("job poller")
            self._wake.wait(self.settings.poll_interval)
            self._wake.clear()

    def backend(self, name: str) -> Any:
        """The backend called *name*, or a :class:`UsageError` naming those available."""
        if name not in BACKENDS:
            raise UsageError(f"--backend {name!r} is not a backend; give "
                             f"{' or '.join(BACKENDS)}")
        if name not in self.backends:
            raise UsageError(f"--backend {name}: not available here; give "
                             f"{' or '.join(self.backends)}")
        return self.backends[name]


_runtime: JobRuntime | None = None
_runtime_lock = threading.Lock()


def set_runtime(runtime: JobRuntime | None) -> None:
    """Make *runtime* the process's (what :func:`submit` and :func:`cancel` use)."""
    global _runtime
    _runtime = runtime


def get_runtime(db_url: str | None = None) -> JobRuntime:
    """The process's runtime, started on first use when :func:`startup` was not called."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = JobRuntime(db_url or default_url()).start()
        return _runtime


def startup(app: Any) -> _Done:
    """Start the job runtime for a FastAPI app (``app.state.db_url``); ``app.state.jobs``.

    Parameters
    ----------
    app
        The application.

    Returns
    -------
    object
        Something that may be awaited (nothing to wait for).
    """
    db_url = getattr(app.state, "db_url", None) or default_url()
    runtime = JobRuntime(db_url).start()
    app.state.jobs = runtime
    set_runtime(runtime)
    return _Done()


def shutdown(app: Any) -> _Done:
    """Stop the job runtime started by :func:`startup` (running jobs keep running)."""
    runtime = getattr(app.state, "jobs", None)
    if runtime is not None:
        runtime.stop()
        if _runtime is runtime:
            set_runtime(None)
        app.state.jobs = None
    return _Done()


# ---------------------------------------------------------------------------- rules


def _safe_user(user: str) -> str:
    name = re.sub(r"[^\w.@+-]", "_", user)
    return "_" + name if name.startswith(".") or not name else name


def give_to_account(data_dir: Path, user: str, workdir: Path) -> None:
    """In per-user mode, give a new job folder to the owner's Unix account.

    ``<data dir>/jobs`` stays root's, searchable (0711); ``jobs/<user>/`` and the job's
    folder (script, ``job.log``, ``outputs/``) become the account's, 0700. The service
    (root) still reads them; nobody else can. Single-account mode changes nothing.

    Parameters
    ----------
    data_dir
        The platform's data dir.
    user
        The job's owner (hub user name).
    workdir
        The new job folder, ``<data dir>/jobs/<user>/<job id>``.
    """
    if not accounts.per_user():
        return
    entry = accounts.ensure_account(user, data_dir)
    jobs_root = data_dir / "jobs"
    os.chmod(jobs_root, 0o711)
    mine = workdir.parent
    os.lchown(mine, entry.pw_uid, entry.pw_gid)
    os.chmod(mine, 0o700)
    accounts.chown_tree(workdir, entry.pw_uid, entry.pw_gid)
    os.chmod(workdir, 0o700)


def reserved_core_hours(session: Session, allocation_id: int) -> float:
    """Core-hours the allocation's unfinished jobs may still use (cores x walltime, plus
    their Slurm workers' cores x walltime)."""
    total = session.scalar(select(func.coalesce(func.sum(Job.cores * Job.walltime_s), 0))
                           .where(Job.allocation_id == allocation_id,
                                  Job.state.in_(list(UNFINISHED))))
    seconds = float(total or 0)
    for backend, walltime, workdir in session.execute(
            select(Job.backend, Job.walltime_s, Job.workdir)
            .where(Job.allocation_id == allocation_id, Job.state.in_(list(UNFINISHED)))):
        request = load_request(workdir) if backend == "slurm" else None
        if request is not None:
            seconds += request.total_cores * walltime
    return seconds / 3600


def submit(session: Session, user: str, spec: JobSpec, allocation_id: int | None = None,
           backend: str = "local", runtime: JobRuntime | None = None) -> Job:
    """Check the quota, then create and queue a job.

    Parameters
    ----------
    session
        Open session (the caller commits; a local job is queued once it does).
    user
        The owner.
    spec
        The checked request (:func:`oceandata.jobs.spec.make_spec`).
    allocation_id
        Allocation to charge (default the user's active one).
    backend
        ``local`` or ``slurm``.
    runtime
        Default the process's (:func:`get_runtime`).

    Returns
    -------
    Job
        The new job (PENDING).

    Raises
    ------
    UsageError
        Unknown backend, or more cores or walltime than the backend allows.
    oceandata.alloc.core.QuotaExceeded
        The allocation cannot cover the request (nothing was created).
    oceandata.alloc.core.NotFound
        No such allocation of the user's.
    """
    runtime = runtime or get_runtime()
    engine = runtime.backend(backend)
    parse_cores(spec.cores, engine.max_cores())
    parse_walltime(f"{spec.walltime_s // 60}:{spec.walltime_s % 60:02d}",
                   runtime.settings.max_walltime_s)
    if spec.workers:
        if spec.workers > runtime.settings.max_workers:
            raise UsageError(f"--workers {spec.workers} is more than the "
                             f"{runtime.settings.max_workers} a job may have; give 1 to "
                             f"{runtime.settings.max_workers}")
        engine.check_workers(spec)
    try:
        job = _submit_within_quota(session, user, spec, allocation_id, backend, runtime)
    except NotAuthorized as exc:  # over quota: the refusal is audited, nothing queued
        audit.record("job.submit", actor=user, target=f"allocation:{allocation_id}"
                     if allocation_id is not None else f"user:{user}", outcome="denied",
                     source=session.info.get(audit.SOURCE_KEY),
                     detail={"backend": backend, "cores": spec.cores, "script": spec.script.name,
                             "walltime_s": spec.walltime_s, "workers": spec.workers,
                             "reason": str(exc)})
        raise
    audit.record_on_commit(session, "job.submit", actor=user, target=f"job:{job.id}",
                           detail={"allocation_id": job.allocation_id, "backend": backend,
                                   "script": job.script, "cores": job.cores,
                                   "memory_mb": job.memory_mb, "walltime_s": job.walltime_s,
                                   **({"workers": spec.workers,
                                       "worker_cores": spec.worker_cores,
                                       "worker_memory_mb": spec.worker_memory_mb}
                                      if spec.workers else {})})
    return job


def _submit_within_quota(session: Session, user: str, spec: JobSpec,
                         allocation_id: int | None, backend: str, runtime: JobRuntime) -> Job:
    """The quota checks and the queueing of :func:`submit`.

    A job's Slurm workers count with it: ``cores + workers x worker cores`` at once
    against the allocation's ``max_cores``, each worker's memory against
    ``memory_per_job_gb``, and all those cores for the walltime against the core-hours
    left. Local workers share the job's cores and memory: nothing more to count.
    """
    engine = runtime.backend(backend)
    extra = engine.extra_cores(spec)
    cores = spec.cores + extra
    memory_gb = max(spec.memory_gb, spec.worker_memory_gb) if extra else spec.memory_gb
    try:
        grant = core.check_compute(session, user, cores=cores, memory_gb=memory_gb,
                                   hours=spec.hours, allocation_id=allocation_id)
    except core.QuotaExceeded as exc:
        if not extra:
            raise
        raise core.QuotaExceeded(
            f"the job and its {spec.workers} worker(s) need {cores} cores at once "
            f"({spec.cores} + {spec.workers} x {spec.worker_cores}) and "
            f"{memory_gb:.3g} GB per Slurm job: {exc}") from None
    # serialise the submissions to one allocation until the caller commits: a no-op
    # UPDATE takes the row lock (PostgreSQL) or the database's write lock (SQLite); then
    # check again against what the submissions before this one reserved
    session.execute(update(Allocation).where(Allocation.id == grant.allocation_id)
                    .values(core_hours=Allocation.core_hours)
                    .execution_options(synchronize_session=False))
    grant = core.check_compute(session, user, cores=cores, memory_gb=memory_gb,
                               hours=spec.hours, allocation_id=grant.allocation_id)
    reserved = reserved_core_hours(session, grant.allocation_id)
    asked = cores * spec.hours
    if reserved + asked > grant.core_hours_left:
        raise core.QuotaExceeded(
            f"{cores} cores for {spec.hours:g} h may use {asked:g} core-hours; "
            f"allocation {grant.allocation_id} has {grant.core_hours_left:.3g} left, of which "
            f"{reserved:.3g} are reserved by your queued and running jobs")
    check_workspace(session, grant.allocation_id, runtime.data_dir)
    job_id = uuid.uuid4().hex[:16]
    workdir = runtime.data_dir / "jobs" / _safe_user(user) / job_id
    (workdir / "outputs").mkdir(parents=True, mode=0o700)
    try:
        target = workdir / spec.script.name
        shutil.copy2(spec.script, target)
        (workdir / "job.log").touch(mode=0o600)
        give_to_account(runtime.data_dir, user, workdir)
        if spec.workers:
            save_request(workdir, WorkerRequest(spec.workers, spec.worker_cores,
                                                spec.worker_memory_mb))
        job = Job(id=job_id, owner=user, allocation_id=grant.allocation_id, backend=backend,
                  script=spec.script.name, args=list(spec.args), cores=spec.cores,
                  memory_mb=spec.memory_mb, walltime_s=spec.walltime_s,
                  state=JobState.PENDING, workdir=str(workdir), submitted_at=utcnow())
        session.add(job)
        session.flush()
        engine.submit(session, job)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        remove_request(workdir)
        raise
    return job


def check_workspace(session: Session, allocation_id: int, data_dir: Path) -> None:
    """Refuse a job charged to a project whose storage is full.

    A job's folder (its outputs, log and script) counts against the quota of the project
    it is charged to (:func:`oceandata.alloc.workspaces.project_bytes`, measured now):
    at or over the quota, no new job may add to it.

    Raises
    ------
    oceandata.alloc.core.QuotaExceeded
        One line with usage and quota.
    """
    from ..alloc import workspaces
    from ..io.estimate import format_bytes

    alloc = session.get(Allocation, allocation_id)
    if alloc is None:
        return
    status = workspaces.storage_status(
        alloc, workspaces.project_bytes(session, allocation_id, data_dir))
    if status.level == "full":
        raise core.QuotaExceeded(
            f"project {allocation_id}'s storage is full ({format_bytes(status.used_bytes)} "
            f"of its {format_bytes(status.quota_bytes)} quota, job outputs included): a "
            "job's outputs would exceed it; free space in its workspace or old jobs' "
            "outputs, or ask for more storage")


def list_jobs(session: Session, user: str, is_admin: bool = False,
              state: JobState | None = None) -> list[Job]:
    """The user's jobs (every job for an admin), newest first."""
    query = select(Job).order_by(Job.submitted_at.desc(), Job.id)
    if not is_admin:
        query = query.where(Job.owner == user)
    if state is not None:
        query = query.where(Job.state == state)
    return list(session.scalars(query))


def get_job(session: Session, user: str, job_id: str, is_admin: bool = False) -> Job:
    """The job if the user owns it (or is an admin); otherwise :class:`NotFound`."""
    job = session.get(Job, str(job_id))
    if job is None or (job.owner != user and not is_admin):
        raise core.NotFound(f"no job {job_id} of yours")
    return job


def cancel(session: Session, user: str, job_id: str, is_admin: bool = False,
           runtime: JobRuntime | None = None) -> Job:
    """Cancel a queued or running job (it ends CANCELLED; a running one is charged)."""
    job = get_job(session, user, job_id, is_admin)
    if job.state.finished:
        raise JobFinished(f"job {job.id} already ended {job.state.value}: nothing to cancel")
    runtime = runtime or get_runtime()
    runtime.backend(job.backend).cancel(job.id)
    session.refresh(job)
    audit.record_on_commit(session, "job.cancel", actor=user, target=f"job:{job.id}",
                           detail={"owner": job.owner, "state": job.state.value,
                                   "backend": job.backend})
    return job


def logs(session: Session, user: str, job_id: str, is_admin: bool = False,
         tail: int | None = None) -> str:
    """The job's ``job.log`` (its last *tail* lines), empty before it starts."""
    job = get_job(session, user, job_id, is_admin)
    # the folder is the owner's (per-user mode): never follow a link they put there
    path = _job_dir(job) / "job.log"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise core.NotFound(f"job {job.id} has no readable log ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        text = fh.read().decode(errors="replace")
    if tail is not None:
        text = "\n".join(text.splitlines()[-tail:]) + ("\n" if text.endswith("\n") else "")
    return text


def _job_dir(job: Job) -> Path:
    """The job's folder, refused (404) when its owner replaced it or its ``outputs/``
    by a link: the folder is theirs in per-user mode, the service reads it as root."""
    workdir = Path(job.workdir)
    expected = workdir.parent.resolve() / workdir.name
    if workdir.resolve() != expected or (workdir / "outputs").resolve() != expected / "outputs":
        raise core.NotFound(f"job {job.id}'s folder was replaced by a link: its logs and "
                            "outputs are not served")
    return expected


def _outputs_dir(job: Job) -> Path:
    return _job_dir(job) / "outputs"


def outputs(session: Session, user: str, job_id: str,
            is_admin: bool = False) -> list[dict[str, Any]]:
    """The files under the job's ``outputs/`` (links leaving it are left out)."""
    job = get_job(session, user, job_id, is_admin)
    root = _outputs_dir(job)
    found: list[dict[str, Any]] = []
    if not root.is_dir():
        return found
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            with contextlib.suppress(OSError):
                real = path.resolve()
                if not real.is_relative_to(root) or not real.is_file():
                    continue
                stat = real.stat()
                found.append({"path": path.relative_to(root).as_posix(), "size": stat.st_size,
                              "modified": stat.st_mtime})
    return sorted(found, key=lambda f: f["path"])


def output_file(session: Session, user: str, job_id: str, path: str,
                is_admin: bool = False) -> Path:
    """One output file, refusing paths that leave the job's ``outputs/``.

    Raises
    ------
    PathRefused
        ``..`` in the path, or an absolute path (400).
    oceandata.alloc.core.NotFound
        No such file, or a link leading out of the folder (404).
    """
    job = get_job(session, user, job_id, is_admin)
    text = str(path).replace("\\", "/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise PathRefused(f"output path {path!r} is absolute; give a path inside the job's "
                          "outputs, as `outputs` lists them")
    if "\0" in text or any(ord(ch) < 32 for ch in text):
        raise PathRefused("output path contains a control character (NUL, newline...); give "
                          "a file as `outputs` lists it")
    if ".." in parts:
        raise PathRefused(f"output path {path!r} contains '..'; give a path inside the job's "
                          "outputs, as `outputs` lists them")
    if not parts:
        raise PathRefused("output path is empty; give a file as `outputs` lists it")
    root = _outputs_dir(job)
    target = (root / "/".join(parts)).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise core.NotFound(f"job {job.id} has no output {path!r}")
    return target


def open_output(session: Session, user: str, job_id: str, path: str,
                is_admin: bool = False) -> int:
    """One output file opened for reading, with no link followed inside ``<data dir>/jobs``.

    :func:`output_file` checks the path, but in per-user mode the user's folder, the job's
    folder and its ``outputs/`` are the owner's: they may swap one for a link between that
    check and an ``open`` of the path (``O_NOFOLLOW`` guards the last component only). Here
    each folder is opened from the root-owned ``<data dir>/jobs`` relative to its parent's
    descriptor with ``O_NOFOLLOW | O_DIRECTORY``, then the file with ``O_NOFOLLOW`` (and
    ``O_NONBLOCK``: a FIFO put in its place does not hang the open); it must be a regular
    file with a single link (a hard link to a file elsewhere is refused).

    Parameters
    ----------
    session
        Open session.
    user
        The caller (the job's owner, unless *is_admin*).
    job_id
        The job.
    path
        The file under the job's ``outputs/``, as :func:`outputs` lists it.
    is_admin
        Whether the caller sees every job.

    Returns
    -------
    int
        A read-only descriptor of the file (blocking, close-on-exec); the caller closes it.

    Raises
    ------
    PathRefused
        As :func:`output_file` (400).
    oceandata.alloc.core.NotFound
        No such file, not a regular file, or a link on the way (404).
    """
    output_file(session, user, job_id, path, is_admin)  # the path's own rules, first
    job = get_job(session, user, job_id, is_admin)
    parts = [p for p in str(path).replace("\\", "/").split("/") if p not in ("", ".")]
    workdir = Path(job.workdir)  # <data dir>/jobs/<user>/<id>, written by the service
    folders = [workdir.parent.name, workdir.name, "outputs", *parts[:-1]]
    missing = core.NotFound(f"job {job.id} has no output {path!r}")
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        parent = os.open(workdir.parent.parent, os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY)
        try:
            for name in folders:
                child = os.open(name, flags | os.O_DIRECTORY, dir_fd=parent)
                os.close(parent)
                parent = child
            fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=parent)
        finally:
            os.close(parent)
    except OSError:
        raise missing from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise missing
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def job_dict(job: Job) -> dict[str, Any]:
    """A JSON-safe view of a job."""
    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    request = load_request(job.workdir)
    return {
        "id": job.id, "owner": job.owner, "allocation_id": job.allocation_id,
        "backend": job.backend, "backend_id": job.backend_id, "script": job.script,
        "args": list(job.args or []), "cores": job.cores, "memory_mb": job.memory_mb,
        "walltime_s": job.walltime_s, "state": JobState(job.state).value,
        "exit_code": job.exit_code, "reason": job.reason,
        "submitted_at": iso(job.submitted_at), "started_at": iso(job.started_at),
        "ended_at": iso(job.ended_at),
        "workers": request.workers if request else 0,
        "worker_cores": request.cores if request else None,
        "worker_memory_mb": request.memory_mb if request else None,
    }
