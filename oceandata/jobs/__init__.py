"""Batch jobs: a user's script run with its resources, on this machine or on Slurm.

- :mod:`oceandata.jobs.spec` parses and checks a request (``--cores``, ``--memory``,
  ``--walltime``, the script);
- :mod:`oceandata.jobs.backends` runs jobs: :class:`~oceandata.jobs.backends.LocalBackend`
  (a bounded pool of processes on the service's machine) and
  :class:`~oceandata.jobs.backends.SlurmBackend` (``sbatch`` on the supercomputer);
- :mod:`oceandata.jobs.workers` gives a job Dask workers (``--workers N``): Slurm jobs
  of their own tied to the job (dask-jobqueue ``SLURMCluster``), or local workers
  inside the job's cores;
- :mod:`oceandata.jobs.service` holds the rules shared by the REST API
  (:mod:`oceandata.alloc.jobs_api`) and the command line (:mod:`oceandata.jobs.cli`):
  quota check before anything is queued, ownership, cancel, logs and outputs.

Settings come from the environment (:class:`JobSettings`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import UsageError


def _env_int(name: str, default: int | None) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a whole number") from None
    if value < 1:
        raise UsageError(f"{name}={raw!r} must be 1 or more")
    return value


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise UsageError(f"{name}={raw!r} must be more than 0")
    return value


@dataclass(frozen=True)
class JobSettings:
    """How the job service runs jobs.

    Attributes
    ----------
    max_concurrent
        Local backend: jobs run at once (``OCEANDATA_JOBS_MAX_CONCURRENT``; default the
        machine's cores).
    max_cores
        Largest ``--cores`` of a local job (``OCEANDATA_JOBS_MAX_CORES``; default the
        machine's cores). Slurm jobs are limited by the partition's nodes.
    max_walltime_s
        Longest ``--walltime`` in seconds (``OCEANDATA_JOBS_MAX_WALLTIME``, given as
        ``D-HH:MM:SS``; default 7 days).
    poll_interval
        Seconds between two polls of Slurm and of the local processes
        (``OCEANDATA_JOBS_POLL_INTERVAL``; default 2 s for Slurm, local processes are
        watched 20 times faster).
    partition, account, qos
        ``#SBATCH --partition`` / ``--account`` / ``--qos`` (``OCEANDATA_SLURM_PARTITION``,
        ``OCEANDATA_SLURM_ACCOUNT``, ``OCEANDATA_SLURM_QOS``), unset by default. A job's
        Dask workers (``--workers``) are submitted with the job's own, as Slurm gave them.
    kill_grace_s
        Seconds between SIGTERM and SIGKILL when a local job is cancelled or times out.
    max_workers
        Most Dask workers of one job (``OCEANDATA_JOBS_MAX_WORKERS``; default 64).
    """

    max_concurrent: int = max(1, os.cpu_count() or 1)
    max_cores: int = max(1, os.cpu_count() or 1)
    max_walltime_s: int = 7 * 86400
    poll_interval: float = 2.0
    partition: str | None = None
    account: str | None = None
    kill_grace_s: float = 5.0
    qos: str | None = None
    max_workers: int = 64

    @classmethod
    def from_env(cls) -> JobSettings:
        """Read the ``OCEANDATA_JOBS_*`` and ``OCEANDATA_SLURM_*`` variables.

        Returns
        -------
        JobSettings
            The settings, defaults where a variable is unset.
        """
        from .spec import parse_walltime

        cores = max(1, os.cpu_count() or 1)
        walltime = os.environ.get("OCEANDATA_JOBS_MAX_WALLTIME", "").strip()
        return cls(
            max_concurrent=_env_int("OCEANDATA_JOBS_MAX_CONCURRENT", cores) or cores,
            max_cores=_env_int("OCEANDATA_JOBS_MAX_CORES", cores) or cores,
            max_walltime_s=(parse_walltime(walltime, None, option="OCEANDATA_JOBS_MAX_WALLTIME")
                            if walltime else 7 * 86400),
            poll_interval=_env_float("OCEANDATA_JOBS_POLL_INTERVAL", 2.0),
            partition=os.environ.get("OCEANDATA_SLURM_PARTITION") or None,
            account=os.environ.get("OCEANDATA_SLURM_ACCOUNT") or None,
            qos=os.environ.get("OCEANDATA_SLURM_QOS") or None,
            max_workers=_env_int("OCEANDATA_JOBS_MAX_WORKERS", 64) or 64,
        )
