"""One call for a Dask cluster wherever the code runs.

>>> from oceandata.compute import cluster
>>> with cluster(workers=2) as c, c.get_client() as client:   # doctest: +SKIP
...     ...

Inside the platform's JupyterHub (``DASK_GATEWAY__ADDRESS`` is set in the user's server,
together with the server's JupyterHub token) it asks dask-gateway for a cluster, which
the gateway sizes and limits per user. Inside a batch job submitted with ``--workers N``
it returns the job's cluster (a dask-jobqueue ``SLURMCluster`` whose workers are Slurm
jobs of their own on the Slurm backend; N local workers within the job's cores on the
local backend; see :mod:`oceandata.jobs.workers`). Anywhere else, and in a job without
``--workers``, it starts a :class:`distributed.LocalCluster` on this machine, bound to
127.0.0.1 (in a job: within the job's cores and memory).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import dask

from .errors import UsageError


def in_hub() -> bool:
    """Whether this process runs in a platform server (dask-gateway configured)."""
    return bool(dask.config.get("gateway.address", None)) and "JUPYTERHUB_API_TOKEN" in os.environ


def _memory_gib(memory: str | float) -> float:
    if isinstance(memory, int | float):
        return float(memory)
    try:
        return dask.utils.parse_bytes(memory) / 2**30
    except (ValueError, TypeError):
        raise UsageError(f"worker_memory {memory!r} is not a size: give e.g. '2GiB' or 2 "
                         "(GiB)") from None


#: the cluster of a batch job with workers, while it is open (one per job)
_job_cluster: Any = None
_job_cluster_lock = threading.Lock()


def _open(c: Any) -> bool:
    status = getattr(c, "status", None)
    return c is not None and getattr(status, "name", str(status)) in ("created", "starting",
                                                                      "running")


def _job_workers_cluster(grant: Any, workers: int | None, worker_cores: int | None,
                         worker_memory: str | float | None) -> Any:
    """The cluster of a batch job submitted with ``--workers`` (see :func:`cluster`)."""
    global _job_cluster
    memory_mb = None if worker_memory is None else _memory_gib(worker_memory) * 1024
    n, cores, mem_mb = grant.choose(workers, worker_cores, memory_mb)
    with _job_cluster_lock:
        if _open(_job_cluster):
            return _job_cluster
        if grant.backend == "slurm":
            from .jobs.workers import slurm_cluster

            _job_cluster = slurm_cluster(grant, n, cores, mem_mb)
        else:
            _job_cluster = _local_cluster(n, cores, f"{mem_mb}MiB")
        return _job_cluster


def cluster(workers: int | None = None, *, worker_cores: int | None = None,
            worker_memory: str | float | None = None, **gateway_options: Any) -> Any:
    """A Dask cluster: dask-gateway inside the hub, the job's cluster inside a batch job
    with workers, a LocalCluster elsewhere.

    Parameters
    ----------
    workers
        Workers to start (the gateway starts none unless asked; locally the default is
        one per core; in a job with ``--workers``, the job's, or fewer).
    worker_cores
        Cores (threads) per worker (default 1; in a job with ``--workers``, the job's
        ``--worker-cores``, or fewer).
    worker_memory
        Memory per worker, e.g. ``"2GiB"`` or a number of GiB (default 2 GiB; in a job
        with ``--workers``, the job's ``--worker-memory``, or less).
    **gateway_options
        Further dask-gateway cluster options (e.g. ``cluster_cores``); ignored elsewhere.

    Notes
    -----
    Inside a batch job (``OCEANDATA_JOB_CORES``/``OCEANDATA_JOB_MEMORY`` set by the jobs
    service) without ``--workers``, the LocalCluster is sized to the job's cores and
    memory. With ``--workers`` (``OCEANDATA_JOB_WORKERS``... set by the service, see
    :mod:`oceandata.jobs.workers`) it is the job's one cluster: a dask-jobqueue
    ``SLURMCluster`` on the Slurm backend, a LocalCluster of the workers on the local
    backend; calling again while it is open returns the same cluster. Asking for more
    workers, cores or memory than the job was given raises :class:`UsageError`.

    Returns
    -------
    dask_gateway.GatewayCluster, dask_jobqueue.SLURMCluster or distributed.LocalCluster
        Use ``.get_client()``, ``.scale(n)``, ``.adapt(...)``, ``.dashboard_link`` and
        ``.close()`` (or a ``with`` block) on any.
    """
    if workers is not None and workers < 0:
        raise UsageError(f"workers={workers} must be 0 or more")
    if worker_cores is not None and worker_cores < 1:
        raise UsageError(f"worker_cores={worker_cores} must be at least 1")
    if not in_hub():
        from .jobs.workers import WorkerGrant

        grant = WorkerGrant.from_env()
        if grant is not None:
            return _job_workers_cluster(grant, workers, worker_cores, worker_memory)
    worker_cores = 1 if worker_cores is None else worker_cores
    memory = _memory_gib("2GiB" if worker_memory is None else worker_memory)
    if in_hub():
        from dask_gateway import Gateway

        gateway = Gateway()
        options = gateway.cluster_options()
        options.worker_cores = worker_cores
        options.worker_memory = memory
        for key, value in gateway_options.items():
            setattr(options, key, value)
        gc = gateway.new_cluster(options)
        if workers:
            gc.scale(workers)
        return gc
    cores = os.cpu_count() or 1
    job_cores = os.environ.get("OCEANDATA_JOB_CORES")
    job_memory = os.environ.get("OCEANDATA_JOB_MEMORY")
    if job_cores:
        # inside a batch job: stay within what the job was given, not the whole node
        cores = max(1, int(job_cores))
        worker_cores = min(worker_cores, cores)
    n = workers if workers is not None else max(1, cores // worker_cores)
    if job_memory:
        memory = min(memory, _memory_gib(job_memory) / max(n, 1))
    return _local_cluster(n, worker_cores, f"{memory}GiB")


def _local_cluster(workers: int, threads: int, memory: str) -> Any:
    """A LocalCluster on 127.0.0.1 speaking TLS with credentials made for it alone.

    Loopback is shared by every account of the machine (the jobs service's host, a
    node running several users' jobs): without TLS any of them could connect to the
    scheduler and run code as this process's user. ``security=True`` makes a temporary
    certificate held only in this process and its workers' memory.
    """
    from distributed import LocalCluster

    return LocalCluster(n_workers=workers, threads_per_worker=threads, memory_limit=memory,
                        host="127.0.0.1", dashboard_address="127.0.0.1:0", security=True)
