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

dask-gateway has no audit events: the mixin writes ``gateway.cluster_start`` (a cluster
created, or a request refused: ``outcome`` denied, with the reason) and
``gateway.cluster_stop`` (when a cluster has stopped, with why: asked by its user, idle,
past ``max_lifetime``, its allocation exhausted, the gateway shutting down, or failed)
to the audit trail (:mod:`oceandata.governance.audit`), with the user, the cluster's
name, its allocation (if any) and its caps. :class:`AuditedJupyterHubAuthenticator`
tells the backend who is calling and from which address.

Backends: :class:`LimitedLocalBackend` (one account), :class:`LimitedUserLocalBackend`
(each user's Unix account) and :class:`LimitedSlurmBackend` (scheduler and workers as
Slurm jobs of the user's account, charged from ``sacct``), the last set up by
:func:`configure_slurm_gateway` in both the embedded Slurm mode and production.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dask_gateway_server.auth import JupyterHubAuthenticator
from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.backends.db_base import JobStatus
from dask_gateway_server.backends.local import LocalBackend, UnsafeLocalBackend
from dask_gateway_server.options import Float as FloatOption
from dask_gateway_server.options import Integer, Options
from traitlets import Float, HasTraits
from traitlets import Integer as IntegerTrait
from traitlets import List as ListTrait
from traitlets import Unicode as UnicodeTrait

from ..governance import audit
from .accounts import chown_tree, ensure_account, per_user, unix_name, user_home
from .throttle import LOOPBACK, client_address

GIB = 2**30
DEFAULT_GROUP = "scientists"
#: the shortest idle timeout (seconds) a user may ask for
MIN_IDLE_TIMEOUT = 10


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


@dataclass(frozen=True)
class AllocationView:
    """What the allocations database says about a user right now."""

    allocation_id: int
    max_cores: int
    memory_per_job_gb: float
    core_hours_left: float


def allocation_for(user_name: str, allocation_id: int | None = None, *,
                   strict: bool = False) -> AllocationView | None:
    """The project a cluster of *user_name* is charged to, from the allocations database.

    Parameters
    ----------
    user_name
        The hub user.
    allocation_id
        The project the cluster option ``allocation`` names (one the user leads or
        belongs to, approved, in force today); None: the user's only project in force,
        else their default project (:func:`oceandata.alloc.projects.choose`).
    strict
        Refuse (``ValueError``, one line) a user in several projects who named none and
        has no default, and a named project that is not theirs or not in force; False:
        None for those (nothing silently picks one).

    Returns
    -------
    AllocationView or None
        None when the user is in no project in force, or when the database has no
        tables yet (the allocations service creates them at its first start).
    """
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from ..alloc import core, db, projects
    from ..errors import OceandataError

    try:
        with db.session_scope() as session:
            try:
                alloc = projects.choose(session, user_name, allocation_id, strict=strict)
            except OceandataError as exc:  # not theirs, not in force, or several projects
                if strict:
                    raise ValueError(str(exc)) from None
                return None
            if alloc is None:
                return None
            left = alloc.core_hours - core.used_core_hours(session, alloc.id)
            return AllocationView(alloc.id, alloc.max_cores, alloc.memory_per_job_gb, left)
    except (OperationalError, ProgrammingError):
        if allocation_id is not None and strict:
            raise ValueError(f"allocation {allocation_id}: the allocations database is "
                             "not ready; try again in a minute") from None
        return None


def covering_allocation(session: Any, cluster: Any) -> Any:
    """The allocation a running cluster is charged to: the project it started under
    (cluster option ``allocation``, or the user's project chosen at its start) while the
    user still belongs to it and it is in force; for a cluster started under none, the
    user's project in force now (as before projects). None: nothing covers it."""
    from ..alloc import core, projects
    from ..alloc.models import Allocation

    alloc_id = cluster.config.get(ALLOCATION_KEY)
    if alloc_id is None:
        return core.active_allocation(session, cluster.username)
    alloc = session.get(Allocation, alloc_id)
    if (alloc is None or not alloc.active_on(dt.date.today())
            or not projects.is_member(session, alloc, cluster.username)):
        return None
    return alloc


#: groups whose members need an approved allocation for any cluster
ALLOCATION_GROUPS = frozenset({"partners"})

#: key of a cluster's configuration holding the allocation it started under (or None)
ALLOCATION_KEY = "oceandata_allocation"


@dataclass(frozen=True)
class GatewayCaller:
    """The user of the gateway API request being served, and the client's address."""

    name: str
    source: str | None


#: the caller of the API request being served in this task (None: the gateway itself,
#: or a cluster's scheduler authenticated with the cluster's token)
_CALLER: contextvars.ContextVar[GatewayCaller | None] = contextvars.ContextVar(
    "oceandata_gateway_caller", default=None)


class AuditedJupyterHubAuthenticator(JupyterHubAuthenticator):
    """dask-gateway's JupyterHub authenticator that tells the backend who is calling.

    Every user-authenticated API request runs with its :class:`GatewayCaller` in a
    context variable, read by :class:`UserLimitsMixin` for the audit records. The client
    address is the one configurable-http-proxy saw: requests come through the hub's
    proxy (which appends it to ``X-Forwarded-For``), the gate (which appends nothing) and
    dask-gateway's own HTTP proxy (which appends the gate's address).
    """

    trusted_proxy_networks = ListTrait(
        UnicodeTrait(), list(LOOPBACK), config=True,
        help="Networks (CIDR) of the proxies in front of the gateway's API whose "
             "X-Forwarded-For entries are believed.")
    forwarded_hops = IntegerTrait(
        2, config=True,
        help="How many of our proxies append to X-Forwarded-For before the gateway's API "
             "(2: configurable-http-proxy and dask-gateway's proxy; the gate appends "
             "nothing).")

    def client(self, request: Any) -> str | None:
        """The client's address of an aiohttp *request* (see the class docstring)."""
        peer = request.remote
        if peer is None:
            return None
        return client_address(peer, request.headers.get("X-Forwarded-For"),
                              self.trusted_proxy_networks, self.forwarded_hops)

    async def authenticate_and_handle(self, request: Any, handler: Any) -> Any:
        async def with_caller(req: Any) -> Any:
            user = req.get("user")
            token = _CALLER.set(GatewayCaller(user.name, self.client(req))
                                if user is not None else None)
            try:
                return await handler(req)
            finally:
                _CALLER.reset(token)

        return await super().authenticate_and_handle(request, with_caller)


def cluster_options(table: dict[str, GroupLimits] | None = None) -> Options:
    """The options users may set (the form in the gateway widget and ``Gateway.cluster_options``).

    The bounds shown are the largest of any group; the handler checks the user's own
    group limits and refuses what exceeds them, naming the limit.
    """
    table = GROUP_LIMITS if table is None else table
    top_cores = max(lim.max_worker_cores for lim in table.values())
    top_mem = max(lim.max_worker_memory for lim in table.values()) / GIB
    top_total = int(max(lim.max_cores for lim in table.values()))
    top_idle = int(max(lim.idle_timeout for lim in table.values()))

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
        cluster_cores = options.cluster_cores
        alloc = allocation_for(user.name, options.allocation or None, strict=True)
        if alloc is None and set(user.groups) & ALLOCATION_GROUPS:
            raise ValueError(f"{user.name} has no approved allocation in force today: "
                             "request one at /services/allocations/request")
        if alloc is not None:
            if alloc.core_hours_left <= 0:
                raise ValueError(f"allocation {alloc.allocation_id} is exhausted: no "
                                 "core-hours left")
            if options.worker_memory > alloc.memory_per_job_gb:
                raise ValueError(f"worker_memory={options.worker_memory:g} GiB exceeds "
                                 f"allocation {alloc.allocation_id}'s "
                                 f"{alloc.memory_per_job_gb:g} GB per job")
            cluster_cores = min(cluster_cores, alloc.max_cores)
        share = cluster_cores / lim.max_cores
        return {
            "worker_cores": options.worker_cores,
            "worker_memory": memory,
            # shorter than the group's when the user asks (a cluster stops sooner)
            "idle_timeout": float(min(options.idle_timeout, lim.idle_timeout)),
            "cluster_max_cores": cluster_cores,
            "cluster_max_memory": int(lim.max_memory * share),
        }

    return Options(
        Integer("worker_cores", default=1, min=1, max=top_cores, label="Cores per worker"),
        FloatOption("worker_memory", default=2, min=0.5, max=top_mem,
                    label="Memory per worker (GiB)"),
        Integer("cluster_cores", default=4, min=2, max=top_total,
                label="Most cores of this cluster (scheduler included)"),
        Integer("idle_timeout", default=top_idle, min=MIN_IDLE_TIMEOUT, max=top_idle,
                label="Stop after this many seconds idle (at most your group's limit)"),
        Integer("allocation", default=0, min=0,
                label="Project charged (allocation number; 0: your only project or your "
                      "default one)"),
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

    usage_period = Float(60.0, config=True,
                         help="Seconds between two charges of the running clusters' "
                              "core-hours to the allocations database (0: no accounting).")

    def _stop_reasons(self) -> dict[str, tuple[str, GatewayCaller | None]]:
        """Why each cluster being stopped was stopped, until it has stopped."""
        reasons = getattr(self, "_reasons", None)
        if reasons is None:
            reasons = self._reasons = {}
        return reasons

    async def stop_for(self, cluster_name: str, reason: str) -> None:
        """Stop a cluster on the gateway's own decision, saying why in the audit trail."""
        self._stop_reasons().setdefault(cluster_name, (reason, None))
        await self.stop_cluster(cluster_name)

    async def stop_cluster(self, cluster_name: str, failed: bool = False) -> None:
        """dask-gateway's stop, remembering who asked (for ``gateway.cluster_stop``).

        Called by the API (a user's request, or the cluster's own scheduler when it has
        been idle for its ``idle_timeout``) and by :meth:`stop_for`.
        """
        caller = _CALLER.get()
        why = ("requested by its user", caller) if caller is not None else (
            "idle (its scheduler asked)", None)
        self._stop_reasons().setdefault(cluster_name, why)
        await super().stop_cluster(cluster_name, failed=failed)

    async def _cluster_to_stopped(self, cluster: Any) -> None:
        """dask-gateway's last step of every cluster (the one place all ends pass)."""
        await super()._cluster_to_stopped(cluster)
        reason, caller = self._stop_reasons().pop(
            cluster.name, ("failed" if cluster.target == JobStatus.FAILED else "stopped",
                           None))
        audit.record(
            "gateway.cluster_stop", actor=caller.name if caller else "gateway",
            target=f"cluster:{cluster.name}", outcome="failed" if reason == "failed" else "ok",
            source=caller.source if caller else None,
            detail={"user": cluster.username, "cluster": cluster.name, "reason": reason,
                    "allocation": cluster.config.get(ALLOCATION_KEY),
                    "seconds": round(time.time() - cluster.start_time / 1000, 1)})

    async def setup(self, app: Any) -> None:
        await super().setup(app)
        self._tasks = []
        if self.max_lifetime:
            self._tasks.append(asyncio.ensure_future(self._stop_expired_loop()))
        if self.usage_period:
            self._tasks.append(asyncio.ensure_future(self._charge_loop()))

    async def cleanup(self) -> None:
        for task in getattr(self, "_tasks", []):
            task.cancel()
        if hasattr(self, "db") and getattr(self, "stop_clusters_on_shutdown", False):
            for cluster in self.db.active_clusters():
                self._stop_reasons().setdefault(cluster.name, ("the gateway stopped", None))
        await super().cleanup()

    def cores_in_use(self, cluster: Any) -> float:
        """Scheduler cores plus worker cores of the cluster's running workers."""
        workers = sum(1 for w in cluster.workers.values()
                      if w.is_active() and w.status == JobStatus.RUNNING)
        return float(cluster.config.scheduler_cores) + workers * float(
            cluster.config.worker_cores)

    async def _charge_loop(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.usage_period)
            now = time.monotonic()
            try:
                await self.charge_running(now - last)
            except Exception:  # accounting must never stop the gateway
                self.log.exception("Charging cluster usage failed")
            last = now

    async def charge_running(self, seconds: float) -> None:
        """Charge ``cores in use x seconds`` of every running cluster to its user.

        The charge goes to the project the cluster started under
        (:func:`covering_allocation`; or to no allocation); a cluster whose allocation is
        exhausted, has expired or no longer has its user as a member is stopped (a
        partner's) or charged to nothing.
        """
        from ..alloc import core, db

        for cluster in list(self.db.active_clusters()):
            if cluster.status != JobStatus.RUNNING:
                continue
            cores = self.cores_in_use(cluster)
            with db.session_scope() as session:
                alloc = covering_allocation(session, cluster)
                core.charge(session, user=cluster.username,
                            allocation_id=alloc.id if alloc else None, source="gateway",
                            ref=cluster.name, cores=cores, seconds=seconds)
                exhausted = alloc is not None and (
                    core.used_core_hours(session, alloc.id) >= alloc.core_hours)
            await self.stop_if_uncovered(cluster, exhausted=exhausted,
                                         has_allocation=alloc is not None)

    async def stop_if_uncovered(self, cluster: Any, *, exhausted: bool,
                                has_allocation: bool) -> None:
        """Stop *cluster* when its allocation is exhausted, or when its user (a partner)
        has no allocation in force any more; both charging paths end here."""
        partner = not has_allocation and self._needs_allocation(cluster.username)
        if exhausted or partner:
            why = "allocation exhausted" if exhausted else "no allocation in force"
            self.log.info("Stopping cluster %s of %s: %s", cluster.name,
                          cluster.username, why)
            await self.stop_for(cluster.name, why)

    def _needs_allocation(self, username: str) -> bool:
        """Whether the cluster's user was a partner when it started (from its options)."""
        return username in getattr(self, "_partners", set())

    async def _stop_expired_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lifetime_check_period)
            now_ms = time.time() * 1000
            for cluster in list(self.db.active_clusters()):
                if now_ms - cluster.start_time > self.max_lifetime * 1000:
                    self.log.info("Stopping cluster %s of %s: older than %g s", cluster.name,
                                  cluster.username, self.max_lifetime)
                    await self.stop_for(cluster.name, f"older than max_lifetime "
                                                      f"({self.max_lifetime:g} s)")

    async def adjust_config(self, user: Any, config: Any,
                            alloc: AllocationView | None) -> None:
        """Change a new cluster's configuration before it is stored (backends' hook)."""

    async def start_cluster(self, user: Any, cluster_options: dict) -> str:
        """Check the user's limits, create the cluster, record ``gateway.cluster_start``."""
        caller = _CALLER.get()
        source = caller.source if caller else None
        try:
            name, config = await self._start_cluster(user, cluster_options)
        except PublicException as exc:
            audit.record("gateway.cluster_start", actor=user.name, target=f"user:{user.name}",
                         outcome="denied", source=source,
                         detail={"user": user.name, "reason": str(exc),
                                 "options": _json_safe(cluster_options)})
            raise
        audit.record("gateway.cluster_start", actor=user.name, target=f"cluster:{name}",
                     source=source,
                     detail={"user": user.name, "cluster": name,
                             "allocation": config.get(ALLOCATION_KEY),
                             "groups": sorted(user.groups),
                             "max_cores": config.get("cluster_max_cores"),
                             "max_memory": config.get("cluster_max_memory"),
                             "worker_cores": config.get("worker_cores"),
                             "worker_memory": config.get("worker_memory"),
                             **({"slurm_account": config.get("account") or None,
                                 "slurm_qos": config.get("qos") or None}
                                if "account" in config else {})})
        return name

    async def _start_cluster(self, user: Any, cluster_options: dict) -> tuple[str, dict]:
        options, config = await self.process_cluster_options(user, cluster_options)
        if set(user.groups) & ALLOCATION_GROUPS:
            self._partners = getattr(self, "_partners", set()) | {user.name}
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
        try:  # the project the options' handler checked (named, only, or default)
            alloc = allocation_for(user.name, options.get("allocation") or None, strict=True)
        except ValueError as exc:
            raise PublicException(str(exc)) from None
        await self.adjust_config(user, config, alloc)
        stored = {**config.to_dict(),
                  ALLOCATION_KEY: alloc.allocation_id if alloc is not None else None}
        cluster = self.db.create_cluster(user.name, options, stored)
        self.log.info("Created cluster %s for user %s (max %g cores, %s)", cluster.name,
                      user.name, config.cluster_max_cores, _gib(config.cluster_max_memory))
        self.queue.put(cluster)
        return cluster.name, stored


def _json_safe(value: Any) -> Any:
    """*value* with anything JSON cannot hold as its ``repr`` (options as a user sent them)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:200] + "..."
    if value is None or isinstance(value, bool | int | float):
        return value
    return _json_safe(repr(value))


class LimitedLocalBackend(UserLimitsMixin, UnsafeLocalBackend):
    """Local processes, all as the gateway's own account (single-account mode only).

    PRODUCTION uses :class:`LimitedUserLocalBackend` or :class:`LimitedSlurmBackend`,
    where clusters run as the user's Unix account.
    """


class _AsAccount:
    """A cluster whose ``username`` is its user's Unix account (``oceandata-<name>``).

    dask-gateway's :class:`~dask_gateway_server.backends.local.LocalBackend` looks the
    cluster's ``username`` up in the password database; the platform's accounts carry a
    prefix. Everything else is the cluster's own.
    """

    def __init__(self, cluster: Any) -> None:
        self._cluster = cluster
        self.username = unix_name(cluster.username)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cluster, name)


class LimitedUserLocalBackend(UserLimitsMixin, LocalBackend):
    """Local processes as the user's Unix account, with the per-user limits (per-user mode).

    dask-gateway's ``LocalBackend`` (``setgid``/``setgroups``/``setuid`` before ``exec``,
    cluster folders 0700 owned by the user) with hub user ``<name>`` mapped to account
    ``oceandata-<name>`` (created on first use, :func:`oceandata.hub.accounts.ensure_account`).
    """

    def make_preexec_fn(self, cluster: Any) -> Any:
        """dask-gateway's switch to the user, for the user's ``oceandata-`` account."""
        return super().make_preexec_fn(_AsAccount(cluster))

    def set_file_permissions(self, paths: list[str], username: str) -> None:
        """Give the cluster's folder (certificates and logs included) to the user's account.

        dask-gateway-server 2026.3's ``setup_working_directory`` passes the certificate
        paths spread into single characters (``paths.extend(path)``), the first being
        ``/``: only the cluster folder, ``paths[0]``, is taken here, with all it holds.
        """
        entry = ensure_account(username)
        chown_tree(Path(paths[0]), entry.pw_uid, entry.pw_gid)

    def get_env(self, cluster: Any) -> dict[str, str]:
        """dask-gateway's environment with the account's ``USER`` and ``HOME``."""
        env = super().get_env(cluster)
        env["USER"] = unix_name(cluster.username)
        env["HOME"] = str(user_home(cluster.username))
        return env


#: Slurm job states that are final (``sacct``'s State, first word)
SLURM_FINAL_STATES = frozenset({
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
    "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "TIMEOUT"})
#: prefix of the Slurm job name of every job of a gateway cluster (then the cluster's name)
SLURM_JOB_PREFIX = "dask-gateway-"


@dataclass(frozen=True)
class SlurmUsage:
    """What ``sacct`` says about the Slurm jobs of one gateway cluster.

    Attributes
    ----------
    core_seconds
        Sum over the jobs of ``ElapsedRaw x AllocCPUS`` (running jobs up to now).
    jobs
        Job id to its state (first word of sacct's ``State``).
    accounts
        The Slurm accounts the jobs ran under.
    """

    core_seconds: float
    jobs: dict[str, str]
    accounts: frozenset[str]

    @property
    def finished(self) -> bool:
        """Whether every job sacct lists for the cluster is in a final state."""
        return all(state in SLURM_FINAL_STATES for state in self.jobs.values())

    @property
    def core_hours(self) -> float:
        return self.core_seconds / 3600.0


def parse_sacct_usage(text: str, owners: dict[str, str] | None = None,
                      known: dict[str, set[str]] | None = None) -> dict[str, SlurmUsage]:
    """Parse ``sacct -X -P -n -o JobName,JobID,ElapsedRaw,AllocCPUS,State,Account,User``.

    A job counts for cluster ``C`` when the gateway submitted it for ``C`` (its id is in
    ``known[C]``), or when it is named ``dask-gateway-C`` *and* runs as ``C``'s own Unix
    account (``owners[C]``): a job another user names after someone else's cluster is
    never charged to that cluster, and renaming a job the gateway submitted does not take
    it out of its cluster's charge.

    Parameters
    ----------
    text
        sacct's output, one allocation a line.
    owners
        Cluster name to the Unix account its jobs run as (None: any account, for the
        names alone).
    known
        Cluster name to the Slurm job ids the gateway submitted for it.

    Returns
    -------
    dict of str to SlurmUsage
        Cluster name to its usage; lines of other jobs are ignored.

    Examples
    --------
    >>> out = ("dask-gateway-c1|12|30|1|COMPLETED|a1|ann\\n"
    ...        "dask-gateway-c1|13|10|2|RUNNING|a1|ann\\n"
    ...        "dask-gateway-c1|14|99|1|RUNNING|a1|bob\\n")
    >>> parse_sacct_usage(out, owners={"c1": "ann"})["c1"].core_seconds
    50.0
    """
    owners = owners or {}
    by_id = {job: name for name, ids in (known or {}).items() for job in ids}
    seconds: dict[str, float] = {}
    jobs: dict[str, dict[str, str]] = {}
    accounts: dict[str, set[str]] = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) != 7:
            continue
        name, job_id, elapsed, cpus, state, account, user = fields
        cluster = by_id.get(job_id)
        if cluster is None and name.startswith(SLURM_JOB_PREFIX):
            named = name[len(SLURM_JOB_PREFIX):]
            if owners.get(named, user) == user:
                cluster = named
        if cluster is None:
            continue
        used = (float(elapsed) if elapsed.isdigit() else 0.0) * (
            float(cpus) if cpus.isdigit() else 0.0)
        seconds[cluster] = seconds.get(cluster, 0.0) + used
        jobs.setdefault(cluster, {})[job_id] = (state.split() or ["UNKNOWN"])[0]
        accounts.setdefault(cluster, set()).add(account)
    return {name: SlurmUsage(seconds[name], jobs[name], frozenset(accounts[name]))
            for name in seconds}


def configure_slurm_gateway(c: Any, *, internal_host: str, ports: dict[str, int],
                            partition: str = "", account: str = "", qos: str = "",
                            setup: str = "", staging: str = "{home}/.dask-gateway/",
                            start_timeout: float = 600.0, slurm_conf: str | None = None,
                            user_account: str = "", bin_dir: Path | None = None) -> None:
    """Configure dask-gateway for clusters as Slurm jobs (embedded Slurm mode and production).

    The one place both ``hub_config/dask_gateway_config.py`` (``OCEANDATA_HUB_BACKEND=slurm``)
    and ``hub_config/production/dask_gateway_config.py`` set the Slurm backend up.

    Parameters
    ----------
    c
        The dask-gateway configuration object.
    internal_host
        The address compute nodes reach this machine on: the gateway's API (which
        schedulers call) and the scheduler proxy listen there.
    ports
        The hub's ports (``gateway_api``, ``gateway_tcp``).
    partition, account, qos
        The jobs' Slurm partition, account and QOS (empty: Slurm's default). A user
        associated with their allocation's Slurm account is charged there instead
        (:attr:`LimitedSlurmBackend.allocation_account`).
    setup
        Shell lines run in the jobs before ``dask scheduler`` / ``dask worker``.
    staging
        The clusters' staging folder (TLS credentials, logs), ``{home}`` being the
        user's home: on a filesystem the nodes share.
    start_timeout
        Seconds a scheduler or worker job may wait in the queue and start.
    slurm_conf
        ``SLURM_CONF`` of the Slurm commands (default: the environment's, else Slurm's
        default).
    user_account
        The Unix account of hub user ``{username}`` (production: ``"{username}"``);
        empty: ``oceandata-<name>`` in per-user mode, else the gateway's own account.
    bin_dir
        Folder of ``dask-gateway-jobqueue-launcher`` (default: this interpreter's).
    """
    bin_dir = bin_dir or Path(sys.executable).parent
    backend = "LimitedSlurmBackend"
    c.DaskGateway.backend_class = f"oceandata.hub.gateway.{backend}"
    c.SlurmClusterConfig.partition = partition
    c.SlurmClusterConfig.account = account
    c.SlurmClusterConfig.qos = qos
    c.SlurmClusterConfig.scheduler_setup = setup
    c.SlurmClusterConfig.worker_setup = setup
    c.SlurmClusterConfig.staging_directory = staging
    c[backend].slurm_conf = (os.environ.get("SLURM_CONF", "") if slurm_conf is None
                             else slurm_conf)
    c[backend].user_account = user_account
    # run through `sudo -nHu <user>`: an absolute path, the one named in sudoers
    c.JobQueueBackend.dask_gateway_jobqueue_launcher = str(
        bin_dir / "dask-gateway-jobqueue-launcher")
    c.DBBackendBase.cluster_start_timeout = start_timeout
    c.DBBackendBase.worker_start_timeout = start_timeout
    # schedulers on compute nodes report to the API directly (not through the
    # dashboards' proxy, which stays on 127.0.0.1 behind the gate)
    c.DaskGateway.address = f"{internal_host}:{ports['gateway_api']}"
    c.DBBackendBase.api_url = f"http://{internal_host}:{ports['gateway_api']}/api"
    # clients reach their schedulers here (TLS, per-cluster certificates, SNI routing)
    c.Proxy.tcp_address = f"{internal_host}:{ports['gateway_tcp']}"


def _slurm_env(slurm_conf: str) -> dict[str, str]:
    """The environment of the gateway's own Slurm commands (squeue, sacct, sacctmgr)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if slurm_conf:
        env["SLURM_CONF"] = slurm_conf
    return env


def _run_slurm(cmd: list[str], slurm_conf: str, timeout: float = 30.0) -> str:
    """Run a Slurm client command; its stdout, or '' when it fails."""
    import subprocess

    try:
        done = subprocess.run(cmd, env=_slurm_env(slurm_conf), capture_output=True,
                              text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


try:  # dask-gateway's jobqueue backend needs dask-gateway-server[jobqueue]
    from dask_gateway_server.backends.jobqueue.slurm import SlurmBackend

    class LimitedSlurmBackend(UserLimitsMixin, SlurmBackend):
        """Clusters as Slurm jobs submitted as the user, charged from ``sacct``.

        dask-gateway's jobqueue ``SlurmBackend`` with the per-user limits, and:

        - the jobs run as the user's Unix account (:meth:`unix_user`): hub user
          ``<name>`` is account ``oceandata-<name>`` (made on first use) in per-user mode,
          or :attr:`user_account` (production: the hub name itself), and
          ``dask-gateway-jobqueue-launcher`` runs through ``sudo -nHu <account>``
          (single-account mode: as the gateway's own account, without sudo); the staging
          folder is in that account's home;
        - every job of a cluster is named ``dask-gateway-<cluster name>``;
        - a user whose Unix account is associated (``sacctmgr``) with the Slurm account of
          their allocation (:attr:`allocation_account`) runs the cluster there, with that
          association's default QOS; anyone else under the configured account and QOS;
        - the Slurm commands get ``SLURM_CONF`` (:attr:`slurm_conf`);
        - core-hours come from ``sacct`` (``ElapsedRaw x AllocCPUS`` of the cluster's
          scheduler and worker jobs), charged as the difference with what the ledger
          already holds for the cluster, until every job of a stopped cluster is final:
          the ledger's total is then sacct's. An exhausted allocation still stops the
          cluster.
        """

        slurm_conf = UnicodeTrait(
            os.environ.get("SLURM_CONF", ""), config=True,
            help="SLURM_CONF of the Slurm commands (empty: Slurm's default).")
        user_account = UnicodeTrait(
            "", config=True,
            help="The Unix account of hub user {username} (e.g. '{username}' where the "
                 "hub names are the site's accounts); empty: oceandata-<name> in per-user "
                 "mode (OCEANDATA_ACCOUNTS), else the gateway's own account.")
        settle_delay = Float(
            60.0, config=True,
            help="Seconds after a cluster stopped during which sacct is still read for "
                 "its jobs, even when they all look final.")
        allocation_account = UnicodeTrait(
            "alloc-{id}", config=True,
            help="The Slurm account of allocation {id}; used for a user whose Unix "
                 "account is associated with it (empty: never).")

        # --- who runs the jobs ---------------------------------------------------------
        def unix_user(self, username: str) -> str:
            """The Unix account the jobs of hub user *username* run as.

            :attr:`user_account` when set (production: ``{username}``), else
            ``oceandata-<name>`` in per-user mode, else the gateway's own account.
            """
            if self.user_account:
                return self.user_account.format(username=username)
            if per_user():
                return unix_name(username)
            import pwd

            return pwd.getpwuid(os.geteuid()).pw_name

        def _sudo(self) -> bool:
            return bool(self.user_account) or per_user()

        def get_staging_directory(self, cluster: Any) -> str:
            """``staging_directory`` in the user's account's home, one folder a cluster."""
            import pwd

            home = pwd.getpwnam(self.unix_user(cluster.username)).pw_dir
            staging = cluster.config.staging_directory.format(
                home=home, username=self.unix_user(cluster.username))
            return os.path.join(staging, cluster.name)

        async def do_as_user(self, user: str, action: str, **kwargs: Any) -> Any:
            """dask-gateway's launcher as the user's Unix account (``sudo -nHu``)."""
            if self._sudo():
                return await super().do_as_user(self.unix_user(user), action, **kwargs)
            import json

            kwargs["action"] = action
            proc = await asyncio.create_subprocess_exec(
                self.dask_gateway_jobqueue_launcher, env={"HOME": os.path.expanduser("~")},
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate(json.dumps(kwargs).encode())
            if proc.returncode != 0:
                raise Exception(f"dask-gateway-jobqueue-launcher exited {proc.returncode}: "
                                f"{err.decode(errors='replace')[-2000:]}")
            result = json.loads(out)
            if not result["ok"]:
                raise Exception(result["error"])
            return result["returncode"], result["stdout"], result["stderr"]

        async def do_start_cluster(self, cluster: Any) -> Any:
            if per_user() and not self.user_account:
                await asyncio.get_running_loop().run_in_executor(
                    None, ensure_account, cluster.username)
            async for state in super().do_start_cluster(cluster):
                yield state

        # --- the jobs ------------------------------------------------------------------
        def get_submit_cmd_env_stdin(self, cluster: Any, worker: Any = None) -> Any:
            """dask-gateway's ``sbatch`` line, named after the cluster, with ``SLURM_CONF``."""
            cmd, env, script = super().get_submit_cmd_env_stdin(cluster, worker)
            cmd = [f"--job-name={SLURM_JOB_PREFIX}{cluster.name}"
                   if arg == "--job-name=dask-gateway" else arg for arg in cmd]
            if self.slurm_conf:
                env = {**env, "SLURM_CONF": self.slurm_conf}
            return cmd, env, script

        def get_env(self, cluster: Any) -> dict[str, str]:
            """dask-gateway's environment with the account's ``USER`` and ``HOME``."""
            import pwd

            env = super().get_env(cluster)
            account = self.unix_user(cluster.username)
            env["USER"] = account
            env["HOME"] = pwd.getpwnam(account).pw_dir
            return env

        def get_stop_cmd_env(self, job_id: str) -> Any:
            return [self.cancel_command, job_id], _slurm_env(self.slurm_conf)

        def get_status_cmd_env(self, job_ids: list[str]) -> Any:
            cmd, _ = super().get_status_cmd_env(job_ids)
            return cmd, _slurm_env(self.slurm_conf)

        async def check_jobs(self, job_ids: list[str]) -> dict[str, bool]:
            """squeue's view of the jobs; a single job Slurm has forgotten is not running.

            ``squeue --job=ID`` fails for one id the controller no longer knows
            (``MinJobAge`` passed); with several ids it lists the known ones.
            """
            try:
                return await super().check_jobs(job_ids)
            except Exception:
                if len(job_ids) != 1:
                    raise
                cmd, env = self.get_status_cmd_env(job_ids)
                proc = await asyncio.create_subprocess_exec(
                    *cmd, env=env, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE)
                _, err = await proc.communicate()
                if b"Invalid job id" in err:
                    return {job_ids[0]: False}
                raise

        # --- the Slurm account of the allocation ---------------------------------------
        def association(self, username: str, account: str) -> tuple[bool, str]:
            """Whether the user's Unix account may use Slurm *account*, and its default QOS."""
            out = _run_slurm(["sacctmgr", "-n", "-P", "show", "associations",
                              f"user={self.unix_user(username)}", f"account={account}",
                              "format=Account,DefaultQOS"], self.slurm_conf)
            for line in out.splitlines():
                found, _, qos = line.partition("|")
                if found.strip().lower() == account.lower():
                    return True, qos.strip()
            return False, ""

        async def adjust_config(self, user: Any, config: Any,
                                alloc: AllocationView | None) -> None:
            """The allocation's Slurm account and QOS when the user is associated with it."""
            if alloc is None or not self.allocation_account:
                return
            account = self.allocation_account.format(id=alloc.allocation_id)
            ok, qos = await asyncio.get_running_loop().run_in_executor(
                None, self.association, user.name, account)
            if ok:
                config.account = account
                config.qos = qos

        # --- charging from sacct -------------------------------------------------------
        def sacct_usage(self, clusters: list[Any]) -> dict[str, SlurmUsage] | None:
            """``sacct``'s records of the clusters' jobs (None when sacct did not answer)."""
            import datetime as dt

            if not clusters:
                return {}
            first = min(c.start_time for c in clusters) / 1000 - 300
            since = dt.datetime.fromtimestamp(first).strftime("%Y-%m-%dT%H:%M:%S")
            owners = {c.name: self.unix_user(c.username) for c in clusters}
            known = {c.name: self._known_jobs(c) for c in clusters}
            import subprocess

            # every job of the clusters' accounts (not by name: a renamed job stays its
            # cluster's, and another user's job named after a cluster is not charged to it)
            try:
                done = subprocess.run(
                    ["sacct", "-X", "-P", "-n", "-S", since, "-E", "now",
                     f"--user={','.join(sorted(set(owners.values())))}",
                     "-o", "JobName,JobID,ElapsedRaw,AllocCPUS,State,Account,User"],
                    env=_slurm_env(self.slurm_conf), capture_output=True, text=True,
                    timeout=60)
            except (OSError, subprocess.TimeoutExpired) as exc:
                self.log.warning("sacct did not answer: %s", exc)
                return None
            if done.returncode != 0:
                self.log.warning("sacct failed: %s", done.stderr.strip()[:500])
                return None
            return parse_sacct_usage(done.stdout, owners, known)

        def _settled(self) -> set[str]:
            settled = getattr(self, "_settled_clusters", None)
            if settled is None:
                settled = self._settled_clusters = set()
            return settled

        def _known_jobs(self, cluster: Any) -> set[str]:
            """The job ids the gateway submitted for *cluster* and still remembers."""
            ids = {str(cluster.state.get("job_id"))} if cluster.state.get("job_id") else set()
            ids |= {str(w.state["job_id"]) for w in cluster.workers.values()
                    if w.state and w.state.get("job_id")}
            return ids

        async def charge_running(self, seconds: float) -> None:
            """Charge each cluster's new core-hours according to ``sacct`` (see the class).

            A stopped cluster is settled (left alone afterwards) once every job the
            gateway remembers for it is final in sacct and its charge is sacct's total.
            """
            from ..alloc import core, db
            from ..alloc.models import Allocation

            settled = self._settled()
            clusters = [c for c in self.db.name_to_cluster.values()
                        if c.name not in settled and c.status > JobStatus.CREATED]
            if not clusters:
                return
            usage = await asyncio.get_running_loop().run_in_executor(
                None, self.sacct_usage, clusters)
            if usage is None:
                return
            for cluster in clusters:
                found = usage.get(cluster.name, SlurmUsage(0.0, {}, frozenset()))
                alloc_id = cluster.config.get(ALLOCATION_KEY)
                with db.session_scope() as session:
                    charged = _charged(session, cluster.name)
                    delta = found.core_hours - charged
                    if alloc_id is None:
                        alloc_id = _charged_to(session, cluster, core)
                    if delta > 1e-12:
                        core.charge(session, user=cluster.username, allocation_id=alloc_id,
                                    source="gateway", ref=cluster.name,
                                    cores=delta * 3600.0 / max(seconds, 1e-9),
                                    seconds=max(seconds, 1e-9))
                    alloc = (session.get(Allocation, alloc_id) if alloc_id is not None
                             else None)
                    exhausted = alloc is not None and (
                        core.used_core_hours(session, alloc.id) >= alloc.core_hours)
                    # still covered: in force, and its user still a member of it
                    covered = alloc is not None and (
                        cluster.config.get(ALLOCATION_KEY) is None
                        or covering_allocation(session, cluster) is not None)
                if not cluster.is_active():
                    # settled once sacct has every job final, some time after the stop
                    # (slurmctld sends records to slurmdbd asynchronously)
                    known = self._known_jobs(cluster)
                    stopped_ms = cluster.stop_time or cluster.start_time
                    if (found.finished and known <= set(found.jobs)
                            and time.time() - stopped_ms / 1000 > self.settle_delay):
                        settled.add(cluster.name)
                    continue
                if cluster.status != JobStatus.RUNNING:
                    continue
                await self.stop_if_uncovered(cluster, exhausted=exhausted,
                                             has_allocation=covered)

    def _charged_to(session: Any, cluster: Any, core: Any) -> int | None:
        """The allocation a cluster started without one is charged to.

        While it runs: the user's allocation in force (as on the local backend). Once it
        has stopped, sacct's late records go where its last charge went, or (never
        charged yet) to the allocation in force at the stop if it was approved by then:
        an allocation approved after the stop never pays for work done before it existed.
        """
        from sqlalchemy import select

        from ..alloc.models import Usage

        if cluster.is_active():
            active = core.active_allocation(session, cluster.username)
            return active.id if active is not None else None
        last = session.execute(select(Usage.allocation_id)
                               .where(Usage.source == "gateway", Usage.ref == cluster.name)
                               .order_by(Usage.id.desc()).limit(1)).first()
        if last is not None:
            return last[0]
        # never charged yet (stopped within one period, or sacct late): the allocation
        # in force when it stopped, if it had been approved by then
        stopped = dt.datetime.fromtimestamp((cluster.stop_time or cluster.start_time) / 1000,
                                            dt.UTC)
        active = core.active_allocation(session, cluster.username, day=stopped.date())
        if active is None or active.decided_at is None:
            return None
        decided = active.decided_at
        if decided.tzinfo is None:  # SQLite keeps naive UTC
            decided = decided.replace(tzinfo=dt.UTC)
        return active.id if decided <= stopped else None

    def _charged(session: Any, ref: str) -> float:
        """Core-hours the ledger holds for gateway cluster *ref*."""
        from sqlalchemy import func, select

        from ..alloc.models import Usage

        total = session.scalar(select(func.coalesce(func.sum(Usage.core_hours), 0.0))
                               .where(Usage.source == "gateway", Usage.ref == ref))
        return float(total or 0.0)

except ImportError:  # pragma: no cover - the extra is part of [hub]
    LimitedSlurmBackend = None  # type: ignore[assignment,misc]
