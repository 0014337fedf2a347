"""dask-gateway policy of the platform: per-group cluster options and per-user limits.

dask-gateway limits each cluster (``cluster_max_cores``, ``cluster_max_memory``,
``cluster_max_workers``) but dropped its per-user limits (dask/dask-gateway#249, #313,
#452), so one user could start any number of clusters. :class:`UserLimitsMixin` adds
them back in ``start_cluster``, for any database-backed backend:

- at most ``max_clusters`` active clusters per user;
- the cores and memory a user's active clusters may reach together are at most
  ``max_cores`` and ``max_memory``: every cluster is created with its own
  ``cluster_max_cores``/``cluster_max_memory`` capped to what the user has left, and
  dask-gateway enforces those caps when the cluster scales;
- a request that cannot fit even one worker is refused with a message saying what is
  in use and what the limit is.

Limits come from the user's JupyterHub groups (the most generous group wins; a user in
no group gets the ``scientists`` limits). When the allocations service exists, it narrows
these limits further (see docs/operations.md).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.backends.local import UnsafeLocalBackend
from dask_gateway_server.options import Float as FloatOption
from dask_gateway_server.options import Integer, Options
from traitlets import Float, HasTraits

GIB = 2**30
DEFAULT_GROUP = "scientists"


@dataclass(frozen=True)
class GroupLimits:
    """What the members of one group may use.

    Attributes
    ----------
    max_clusters
        Active clusters per user.
    max_cores, max_memory
        Cores and bytes of memory of all the user's active clusters together
        (schedulers included).
    max_worker_cores, max_worker_memory
        The largest worker a user may ask for.
    idle_timeout
        Seconds without activity (no client, no tasks) before a cluster is stopped.
    """

    max_clusters: int
    max_cores: float
    max_memory: int
    max_worker_cores: int
    max_worker_memory: int
    idle_timeout: float = 1800.0


#: Defaults of the embedded platform; hub_config/dask_gateway_config.py may replace them.
GROUP_LIMITS: dict[str, GroupLimits] = {
    "admins": GroupLimits(4, 16, 64 * GIB, 4, 16 * GIB),
    "scientists": GroupLimits(2, 8, 32 * GIB, 2, 8 * GIB),
    "partners": GroupLimits(1, 4, 16 * GIB, 2, 8 * GIB),
}


def limits_for(groups: set[str] | frozenset[str],
               table: dict[str, GroupLimits] | None = None) -> GroupLimits:
    """The limits of a user in *groups*: the most generous of its groups' limits."""
    table = GROUP_LIMITS if table is None else table
    found = [table[g] for g in groups if g in table] or [table[DEFAULT_GROUP]]
    return max(found, key=lambda lim: (lim.max_cores, lim.max_memory, lim.max_clusters))


def _gib(n: float) -> str:
    return f"{n / GIB:g} GiB"


def cluster_options(table: dict[str, GroupLimits] | None = None) -> Options:
    """The options users may set (the form in the gateway widget and ``Gateway.cluster_options``).

    The bounds shown are the largest of any group; the handler checks the user's own
    group limits and refuses what exceeds them, naming the limit.
    """
    table = GROUP_LIMITS if table is None else table
    top_cores = max(lim.max_worker_cores for lim in table.values())
    top_mem = max(lim.max_worker_memory for lim in table.values()) / GIB
    top_total = int(max(lim.max_cores for lim in table.values()))

    def handler(options: Any, user: Any) -> dict[str, Any]:
        lim = limits_for(set(user.groups), table)
        if options.worker_cores > lim.max_worker_cores:
            raise ValueError(f"worker_cores={options.worker_cores} exceeds your limit of "
                             f"{lim.max_worker_cores} cores per worker")
        memory = int(options.worker_memory * GIB)
        if memory > lim.max_worker_memory:
            raise ValueError(f"worker_memory={options.worker_memory:g} GiB exceeds your limit "
                             f"of {_gib(lim.max_worker_memory)} per worker")
        if options.cluster_cores > lim.max_cores:
            raise ValueError(f"cluster_cores={options.cluster_cores} exceeds your limit of "
                             f"{lim.max_cores:g} cores for all your clusters together")
        share = options.cluster_cores / lim.max_cores
        return {
            "worker_cores": options.worker_cores,
            "worker_memory": memory,
            "idle_timeout": lim.idle_timeout,
            "cluster_max_cores": options.cluster_cores,
            "cluster_max_memory": int(lim.max_memory * share),
        }

    return Options(
        Integer("worker_cores", default=1, min=1, max=top_cores, label="Cores per worker"),
        FloatOption("worker_memory", default=2, min=0.5, max=top_mem,
                    label="Memory per worker (GiB)"),
        Integer("cluster_cores", default=4, min=2, max=top_total,
                label="Most cores of this cluster (scheduler included)"),
        handler=handler,
    )


class UserLimitsMixin(HasTraits):
    """Per-user limits for a dask-gateway ``DBBackendBase`` backend (see the module doc).

    The limits per group are :data:`GROUP_LIMITS` (a configuration file may change that
    table before building ``c.Backend.cluster_options`` from it).
    """

    group_limits: dict[str, GroupLimits] = GROUP_LIMITS
    max_lifetime = Float(24 * 3600.0, config=True,
                         help="Seconds after which any cluster is stopped, idle or not "
                              "(0: never).")
    lifetime_check_period = Float(60.0, config=True,
                                  help="Seconds between two checks of the clusters' age.")

    async def setup(self, app: Any) -> None:
        await super().setup(app)
        if self.max_lifetime:
            self._lifetime_task = asyncio.ensure_future(self._stop_expired_loop())

    async def cleanup(self) -> None:
        task = getattr(self, "_lifetime_task", None)
        if task is not None:
            task.cancel()
        await super().cleanup()

    async def _stop_expired_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lifetime_check_period)
            now_ms = time.time() * 1000
            for cluster in list(self.db.active_clusters()):
                if now_ms - cluster.start_time > self.max_lifetime * 1000:
                    self.log.info("Stopping cluster %s of %s: older than %g s", cluster.name,
                                  cluster.username, self.max_lifetime)
                    await self.stop_cluster(cluster.name)

    async def start_cluster(self, user: Any, cluster_options: dict) -> str:
        options, config = await self.process_cluster_options(user, cluster_options)
        lim = limits_for(set(user.groups), self.group_limits)
        active = list(self.db.list_clusters(username=user.name))
        if len(active) >= lim.max_clusters:
            raise PublicException(
                f"you have {len(active)} active cluster(s), the limit is {lim.max_clusters}: "
                "stop one first (gateway.list_clusters(), cluster.shutdown())")
        used_cores = sum(float(c.config.get("cluster_max_cores") or 0) for c in active)
        used_mem = sum(int(c.config.get("cluster_max_memory") or 0) for c in active)
        left_cores = lim.max_cores - used_cores
        left_mem = lim.max_memory - used_mem
        need_cores = config.scheduler_cores + config.worker_cores
        need_mem = config.scheduler_memory + config.worker_memory
        if left_cores < need_cores or left_mem < need_mem:
            raise PublicException(
                f"not enough of your quota left for a scheduler and one worker "
                f"({need_cores:g} cores, {_gib(need_mem)}): your active clusters hold "
                f"{used_cores:g} of {lim.max_cores:g} cores and {_gib(used_mem)} of "
                f"{_gib(lim.max_memory)}; stop a cluster or ask for smaller workers")
        config.cluster_max_cores = min(config.cluster_max_cores or math.inf, left_cores)
        config.cluster_max_memory = min(config.cluster_max_memory or math.inf, left_mem)
        cluster = self.db.create_cluster(user.name, options, config.to_dict())
        self.log.info("Created cluster %s for user %s (max %g cores, %s)", cluster.name,
                      user.name, config.cluster_max_cores, _gib(config.cluster_max_memory))
        self.queue.put(cluster)
        return cluster.name


class LimitedLocalBackend(UserLimitsMixin, UnsafeLocalBackend):
    """Local processes, all as the gateway's own account (the embedded platform only).

    PRODUCTION uses :class:`LimitedSlurmBackend`, where clusters run as the user.
    """


try:  # dask-gateway's jobqueue backend needs dask-gateway-server[jobqueue]
    from dask_gateway_server.backends.jobqueue.slurm import SlurmBackend

    class LimitedSlurmBackend(UserLimitsMixin, SlurmBackend):
        """Clusters as Slurm jobs, submitted as the user (production)."""

except ImportError:  # pragma: no cover - the extra is part of [hub]
    LimitedSlurmBackend = None  # type: ignore[assignment,misc]
