"""One call for a Dask cluster wherever the code runs.

>>> from oceandata.compute import cluster
>>> with cluster(workers=2) as c, c.get_client() as client:   # doctest: +SKIP
...     ...

Inside the platform's JupyterHub (``DASK_GATEWAY__ADDRESS`` is set in the user's server,
together with the server's JupyterHub token) it asks dask-gateway for a cluster, which
the gateway sizes and limits per user; anywhere else it starts a
:class:`distributed.LocalCluster` on this machine, bound to 127.0.0.1.
"""

from __future__ import annotations

import os
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


def cluster(workers: int | None = None, *, worker_cores: int = 1,
            worker_memory: str | float = "2GiB", **gateway_options: Any) -> Any:
    """A Dask cluster: dask-gateway inside the hub, a LocalCluster elsewhere.

    Parameters
    ----------
    workers
        Workers to start (the gateway starts none unless asked; locally the default is
        one per core).
    worker_cores
        Cores (threads) per worker.
    worker_memory
        Memory per worker, e.g. ``"2GiB"`` or a number of GiB.
    **gateway_options
        Further dask-gateway cluster options (e.g. ``cluster_cores``); ignored locally.

    Notes
    -----
    Inside a batch job (``OCEANDATA_JOB_CORES``/``OCEANDATA_JOB_MEMORY`` set by the jobs
    service) the LocalCluster is sized to the job's cores and memory.

    Returns
    -------
    dask_gateway.GatewayCluster or distributed.LocalCluster
        Use ``.get_client()``, ``.scale(n)``, ``.adapt(...)``, ``.dashboard_link`` and
        ``.close()`` (or a ``with`` block) on either.
    """
    if workers is not None and workers < 0:
        raise UsageError(f"workers={workers} must be 0 or more")
    if worker_cores < 1:
        raise UsageError(f"worker_cores={worker_cores} must be at least 1")
    memory = _memory_gib(worker_memory)
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
    from distributed import LocalCluster

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
    return LocalCluster(n_workers=n, threads_per_worker=worker_cores,
                        memory_limit=f"{memory}GiB", host="127.0.0.1",
                        dashboard_address="127.0.0.1:0")
