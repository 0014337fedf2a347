"""Dask workers of a batch job: ``oceandata submit job.py --workers N --worker-cores C
--worker-memory M``.

What a job asked for is a :class:`WorkerRequest`, kept by the service beside the job's
row in ``<data dir>/jobs/.workers/<job id>.json`` (root's, 0600, in a root-owned 0700
folder: the job's own folder belongs to its owner, who must not be able to change what
was granted). The backends read it to build the job's environment
(:func:`worker_environment`), to reserve and charge the workers' core-hours, and to tear
the workers down when the job ends.

Inside the job, :func:`oceandata.compute.cluster` reads that environment
(:meth:`WorkerGrant.from_env`) and returns

- on the Slurm backend, a dask-jobqueue ``SLURMCluster`` (:func:`slurm_cluster`): each
  worker a Slurm job of its own, submitted by the job itself (so under the owner's Unix
  account) with the job's own Slurm account, partition and QOS, named
  ``oceandata-<job id>-worker`` (:func:`worker_job_name`), never longer than what is left
  of the job's walltime, speaking TLS with certificates made for this cluster only;
- on the local backend, a ``LocalCluster`` of N workers inside the job's own cores and
  memory (the service refuses a request that does not fit).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError

#: folder of the worker requests, under ``<data dir>/jobs``
REQUESTS_DIR = ".workers"
#: the environment of a job with workers (see :func:`worker_environment`)
ENV_WORKERS = "OCEANDATA_JOB_WORKERS"
ENV_CORES = "OCEANDATA_JOB_WORKER_CORES"
ENV_MEMORY = "OCEANDATA_JOB_WORKER_MEMORY"
ENV_BACKEND = "OCEANDATA_JOB_WORKER_BACKEND"
ENV_NAME = "OCEANDATA_JOB_WORKER_NAME"
ENV_ACCOUNT = "OCEANDATA_JOB_SLURM_ACCOUNT"
ENV_PARTITION = "OCEANDATA_JOB_SLURM_PARTITION"
ENV_QOS = "OCEANDATA_JOB_SLURM_QOS"
ENV_DEADLINE = "OCEANDATA_JOB_DEADLINE"
ENV_DIR = "OCEANDATA_JOB_DIR"
#: shortest ``--time`` of a worker (Slurm counts whole minutes)
MIN_WORKER_TIME_S = 60


@dataclass(frozen=True)
class WorkerRequest:
    """The Dask workers a job asked for (and was granted).

    Attributes
    ----------
    workers
        How many.
    cores
        Cores (threads) of each.
    memory_mb
        Memory of each, MiB.
    """

    workers: int
    cores: int
    memory_mb: int

    @property
    def total_cores(self) -> int:
        """Cores of all the workers together."""
        return self.workers * self.cores

    @property
    def total_memory_mb(self) -> int:
        """Memory of all the workers together, MiB."""
        return self.workers * self.memory_mb


def worker_job_name(job_id: str) -> str:
    """The Slurm job name of a job's workers, ``oceandata-<job id>-worker``.

    The name ties the workers to the job: the backend cancels, and charges, the jobs of
    this name under the owner's account (``scancel --name``, ``sacct --name``).
    """
    return f"oceandata-{job_id}-worker"


def request_path(workdir: Path | str) -> Path:
    """Where the request of the job whose folder is *workdir* is kept:
    ``<data dir>/jobs/.workers/<job id>.json`` (next to the users' folders)."""
    workdir = Path(workdir)
    return workdir.parents[1] / REQUESTS_DIR / f"{workdir.name}.json"


def save_request(workdir: Path | str, request: WorkerRequest) -> Path:
    """Keep *request* for the job whose folder is *workdir* (root's file, 0600).

    Parameters
    ----------
    workdir
        The job's folder, ``<data dir>/jobs/<user>/<job id>``.
    request
        The workers granted.

    Returns
    -------
    Path
        The file written.
    """
    path = request_path(workdir)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(request), fh)
    os.replace(tmp, path)
    return path


def load_request(workdir: Path | str | None) -> WorkerRequest | None:
    """The workers of the job whose folder is *workdir*; None when it asked for none."""
    if not workdir:
        return None
    try:
        data = json.loads(request_path(workdir).read_text())
        return WorkerRequest(int(data["workers"]), int(data["cores"]), int(data["memory_mb"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_request(workdir: Path | str) -> None:
    """Forget the request of a job that was never queued."""
    with contextlib.suppress(OSError):
        request_path(workdir).unlink()


def worker_environment(job_id: str, workdir: Path | str, request: WorkerRequest | None,
                       backend: str) -> dict[str, str]:
    """The variables telling :func:`oceandata.compute.cluster` in the job what it may start.

    The Slurm backend adds ``OCEANDATA_JOB_SLURM_ACCOUNT``/``_PARTITION``/``_QOS`` (the
    job's own, from ``SLURM_JOB_ACCOUNT``... at run time) and ``OCEANDATA_JOB_DEADLINE``
    (the job's start plus its walltime, seconds since the epoch) in its batch script.

    Parameters
    ----------
    job_id
        The job.
    workdir
        Its folder.
    request
        Its workers (None: no variable at all).
    backend
        ``slurm`` or ``local``.

    Returns
    -------
    dict of str to str
        ``OCEANDATA_JOB_WORKERS``, ``OCEANDATA_JOB_WORKER_CORES``,
        ``OCEANDATA_JOB_WORKER_MEMORY`` (e.g. ``2048MiB``), ``OCEANDATA_JOB_WORKER_BACKEND``,
        ``OCEANDATA_JOB_WORKER_NAME`` and ``OCEANDATA_JOB_DIR``.
    """
    if request is None:
        return {}
    return {
        ENV_WORKERS: str(request.workers),
        ENV_CORES: str(request.cores),
        ENV_MEMORY: f"{request.memory_mb}MiB",
        ENV_BACKEND: backend,
        ENV_NAME: worker_job_name(job_id),
        ENV_DIR: str(workdir),
    }


# ---------------------------------------------------------------------------- in the job


@dataclass(frozen=True)
class WorkerGrant:
    """What a running job may start, read from its environment (:meth:`from_env`)."""

    workers: int
    cores: int
    memory_mb: int
    backend: str
    name: str
    job_dir: Path | None
    output_dir: Path | None
    account: str | None = None
    partition: str | None = None
    qos: str | None = None
    deadline: float | None = None
    job_id: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> WorkerGrant | None:
        """The grant of the job this process runs in; None outside a job with workers.

        Parameters
        ----------
        environ
            Where to read it (default ``os.environ``).
        """
        env = os.environ if environ is None else environ
        if not env.get(ENV_WORKERS, "").strip():
            return None
        try:
            workers = int(env[ENV_WORKERS])
            cores = int(env.get(ENV_CORES, "1"))
            memory = env.get(ENV_MEMORY, "2048MiB")
            memory_mb = int(memory.removesuffix("MiB"))
            deadline = float(env[ENV_DEADLINE]) if env.get(ENV_DEADLINE) else None
        except ValueError as exc:
            raise UsageError(f"the job's worker settings are damaged ({exc}): were "
                             f"{ENV_WORKERS}... changed by hand?") from None

        def path(key: str) -> Path | None:
            return Path(env[key]) if env.get(key) else None

        return cls(workers=workers, cores=cores, memory_mb=memory_mb,
                   backend=env.get(ENV_BACKEND, "local"),
                   name=env.get(ENV_NAME) or "oceandata-worker",
                   job_dir=path(ENV_DIR), output_dir=path("OCEANDATA_OUTPUT_DIR"),
                   account=env.get(ENV_ACCOUNT) or None,
                   partition=env.get(ENV_PARTITION) or None,
                   qos=env.get(ENV_QOS) or None, deadline=deadline,
                   job_id=env.get("OCEANDATA_JOB_ID") or None)

    def choose(self, workers: int | None, cores: int | None,
               memory_mb: float | None) -> tuple[int, int, int]:
        """Workers, cores and memory (MiB) to start: the grant's, or less when asked.

        Raises
        ------
        UsageError
            More workers, cores or memory than the job was granted.
        """
        def check(what: str, asked: float | None, granted: int, option: str) -> int:
            if asked is None:
                return granted
            if asked > granted:
                raise UsageError(f"{what} {asked:g} is more than the {granted} this job was "
                                 f"given; submit it with {option} {math.ceil(asked)}")
            return max(0 if option == "--workers" else 1, math.floor(asked))

        return (check("workers", workers, self.workers, "--workers"),
                check("worker cores", cores, self.cores, "--worker-cores"),
                check("worker memory (MiB)", memory_mb, self.memory_mb,
                      "--worker-memory (MiB)"))

    def walltime_left_s(self, now: float | None = None) -> int:
        """Seconds of the job's walltime left (at least :data:`MIN_WORKER_TIME_S`)."""
        if self.deadline is None:
            return 3600
        left = self.deadline - (time.time() if now is None else now)
        return max(MIN_WORKER_TIME_S, math.ceil(left))


def slurm_cluster(grant: WorkerGrant, workers: int, cores: int, memory_mb: int) -> Any:
    """The job's ``SLURMCluster``: *workers* Slurm jobs tied to this job.

    Each worker job is submitted from this job (the owner's account) with its account,
    partition and QOS, the name ``grant.name``, ``--time`` what is left of the job's
    walltime, ``--cpus-per-task`` *cores* and ``--mem`` *memory_mb*; logs go to
    ``outputs/dask-workers/``. Scheduler and workers speak TLS with a certificate made for
    this cluster (written, readable by the owner only, to ``<job dir>/.dask-tls``): other
    users on the network cannot use the scheduler to run code as the owner. The
    scheduler listens where dask-jobqueue's ``interface`` setting says (default: the
    node's address on its default route); its dashboard on 127.0.0.1 only.

    Parameters
    ----------
    grant
        The job's grant.
    workers, cores, memory_mb
        What to start (at most the grant: :meth:`WorkerGrant.choose`).

    Returns
    -------
    dask_jobqueue.SLURMCluster
        Scaled to *workers* (their jobs submitted; they connect as Slurm starts them).
    """
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:  # pragma: no cover - the service refuses such jobs
        raise UsageError("dask-jobqueue is not installed in the job's environment: its "
                         "workers cannot be started") from None
    from distributed.security import Security

    from .spec import format_walltime

    job_dir = grant.job_dir or Path.cwd()
    tls = job_dir / ".dask-tls"
    tls.mkdir(mode=0o700, exist_ok=True)
    logs = (grant.output_dir or job_dir) / "dask-workers"
    logs.mkdir(parents=True, exist_ok=True)
    extra = [f"--comment=oceandata-job:{grant.job_id or '?'}"]
    if grant.qos:
        extra.append(f"--qos={grant.qos}")
    cluster = SLURMCluster(
        n_workers=workers, cores=cores, processes=1, memory=f"{memory_mb}MiB",
        account=grant.account, queue=grant.partition, job_name=grant.name,
        walltime=format_walltime(grant.walltime_left_s()), python=sys.executable,
        log_directory=str(logs), job_extra_directives=extra,
        security=Security.temporary(), shared_temp_directory=str(tls),
        scheduler_options={"dashboard_address": "127.0.0.1:0"})
    # wait for the workers' sbatch: a refusal (account, QOS, limits) fails here, loudly,
    # rather than leaving the script waiting for workers that will never come
    with contextlib.suppress(Exception):  # a failed sbatch: reported just below
        cluster.sync(cluster._correct_state)
    refused = [name for name, job in cluster.workers.items()
               if getattr(job, "job_id", None) is None]
    if refused:
        cluster.close()
        raise RuntimeError(f"sbatch refused {len(refused)} of the job's {workers} Dask "
                           "worker job(s) (see the error above in the job's log)")
    return cluster
