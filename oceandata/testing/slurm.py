"""A real, throw-away Slurm cluster (one node, or several with accounting) for the tests.

:func:`single_node_slurm` starts a private MUNGE daemon and a Slurm controller
(``slurmctld``) and compute daemon (``slurmd``) for *this machine only*, all of whose
files (key, sockets, ``slurm.conf``, state, spool, pid and log files) live in a
folder the caller gives; it waits until the controller answers ``scontrol ping`` and
the node is ``idle`` in ``sinfo``, yields a :class:`SlurmCluster`, and stops everything
on exit (``scancel`` of the jobs left, ``scontrol shutdown``, then the daemons' process
ids, MUNGE last). Nothing is read from or written to ``/etc/slurm`` or ``/etc/munge``:
clients talk to the cluster through ``SLURM_CONF`` (see :meth:`SlurmCluster.env`) and
the MUNGE socket named in that ``slurm.conf`` (``AuthInfo=socket=...``), so several
such clusters (other developers' test runs) can run side by side on free ports.

Programs come from Debian's ``slurm-wlm`` and ``munge`` packages; when they are missing
and the process is root they are installed with ``apt-get`` (see
:func:`ensure_slurm_installed`). Anything that prevents the cluster from coming up
raises :class:`SlurmUnavailable` with the reason and the tail of the relevant log.

Job records without ``slurmdbd``
--------------------------------
There is no accounting database (``AccountingStorageType=accounting_storage/none``), so
plain ``sacct`` answers "Slurm accounting storage is disabled". Two sources replace it,
both read by :meth:`SlurmCluster.job_record`:

* ``scontrol show job -o <id>``: the controller keeps a finished job in memory for
  ``MinJobAge=3600`` seconds, with its state, exit code and run time;
* the job completion log (``JobCompType=jobcomp/filetxt``, one line a finished job, kept
  in the cluster's folder) which ``sacct -c`` ("completion" mode) reads without a
  database: ``sacct -c -j <id> -P -n -o JobID,State,ExitCode,Elapsed``.

Use
---
In a test (mark such tests ``slurm`` once ``pyproject.toml`` declares that marker, and
``slow``)::

    @pytest.fixture(scope="session")
    def slurm(tmp_path_factory):
        with single_node_slurm(tmp_path_factory.mktemp("slurm")) as cluster:
            yield cluster

    def test_job(slurm, tmp_path):
        job = slurm.sbatch("--output", str(tmp_path / "out"), "--wrap", "hostname")
        assert slurm.wait_for_job(job).succeeded

(``tests/test_slurm_fixture.py`` shows the skip outside CI / failure in CI when
:class:`SlurmUnavailable` is raised.) Code that shells out itself passes
``env=cluster.env()``; an interactive shell only needs ``export SLURM_CONF=<slurm_conf>``.
The daemons listen on two free TCP ports (all interfaces, MUNGE-authenticated); they run
as the calling user (root in CI, which lets slurmd start jobs) and get SIGTERM when the
thread that started them ends (``PR_SET_PDEATHSIG``), so a killed test run leaves no
daemon behind: enter :func:`single_node_slurm` from a thread that lives as long as the
cluster (the main thread).

Known, harmless log noise: slurmd reports it cannot load the PMIx MPI plugins (no PMIx
library; ``MpiDefault=none``) and that hwloc's topology cache is absent on first start.

Several nodes and real accounting
---------------------------------
:func:`multi_node_slurm` (root only) builds a cluster whose nodes are really apart on
one machine, sharing the code above (``slurm.conf`` rendering, daemon start, readiness,
shutdown):

* a private bridge ``odslurmbr<tag>`` with a free ``10.X.Y.0/24``; the host side
  (``10.X.Y.1``) is where slurmctld and slurmdbd listen;
* per node (``node1``, ``node2``...): a network namespace ``odslurm<tag>n<i>`` joined
  to the bridge by a veth pair, with address ``10.X.Y.(10+i)`` (``NodeAddr``) and a
  default route through the host; its ``slurmd -N node<i>`` is started inside it, in
  its own UTS namespace (``hostname`` says ``node<i>`` in jobs) and its own mount
  namespace where a ``hosts`` file listing the nodes is bound over ``/etc/hosts`` (node
  names resolve inside jobs; the machine's ``/etc`` is untouched). Jobs inherit all
  three, so a dask scheduler or worker in a job on one node is reached from the other
  node and from the host over the bridge. All slurmd use the same port (each has its
  own network). Each node declares ``CPUs=cpus_per_node`` (1 by default, with
  ``SlurmdParameters=config_overrides``): a two-worker allocation must span two nodes;
* the filesystem is the host's, the same for every node (no chroot): the cluster's
  folder, homes and stores are "shared storage" at the same paths everywhere;
* ``slurmdbd`` (``AccountingStorageType=accounting_storage/slurmdbd``,
  ``JobAcctGatherType=jobacct_gather/linux``; cgroups are not delegated in CI
  containers) with a private MariaDB: its own datadir in the cluster's folder, socket in
  the runtime folder, a free port on 127.0.0.1 and an account with a fresh password,
  created by ``--init-file``. Plain ``sacct -j ID`` is then the real record (run time,
  CPUs, nodes, account); ``AccountingStorageEnforce=associations`` by default, with
  :meth:`MultiNodeSlurmCluster.add_account` / :meth:`~MultiNodeSlurmCluster.add_user`
  (``sacctmgr -i``) to let a user charge an allocation's account.

Readiness waits on real signals: MariaDB and slurmdbd accepting connections,
``sacctmgr`` answering, ``scontrol ping``, every node idle in ``sinfo``. On exit, even
after a start that failed halfway, the daemons are stopped (slurmd, slurmctld, slurmdbd,
mariadbd, munged) and the veth pairs, namespaces and bridge deleted; a run killed
outright leaves its network behind, which the next run removes
(:func:`remove_stale_networks`, by the dead owner's process id in the names).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from oceandata.netutil import free_port
from oceandata.testing import in_ci as in_ci  # re-exported for the tests

#: Debian packages providing the daemons and the client commands (``slurm-wlm`` pulls in
#: ``slurmctld``, ``slurmd`` and ``slurm-client``).
DEBIAN_PACKAGES = ("slurm-wlm", "munge")
#: daemons started by :func:`single_node_slurm`
DAEMONS = ("munged", "slurmctld", "slurmd")
#: client commands the tests and the platform use
CLIENTS = ("sbatch", "squeue", "sacct", "scontrol", "scancel", "sinfo")
#: every program that must be there
REQUIRED_PROGRAMS = DAEMONS + CLIENTS
#: what :func:`multi_node_slurm` needs on top: ``slurmdbd`` with a private MariaDB for
#: ``sacct``, ``sacctmgr`` (in ``slurm-client``) and iproute2's ``ip`` for the namespaces
MULTI_NODE_PACKAGES = (
    *DEBIAN_PACKAGES, "slurmdbd", "mariadb-server-core", "mariadb-client-core", "iproute2",
)  # fmt: skip
#: every program :func:`multi_node_slurm` runs (``mariadb-install-db`` calls
#: ``my_print_defaults``, from ``mariadb-client-core``)
MULTI_NODE_PROGRAMS = (
    *REQUIRED_PROGRAMS, "sacctmgr", "slurmdbd", "mariadbd", "mariadb-install-db",
    "my_print_defaults", "ip",
)  # fmt: skip
#: oldest Slurm whose ``AuthInfo=socket=``, ``select/cons_tres`` and ``sacct -c`` we rely on
MIN_VERSION = (20, 11)
#: the single partition (``Default=YES``)
PARTITION = "debug"
#: ``JobState`` values after which a job no longer runs
FINISHED_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "SPECIAL_EXIT",
        "TIMEOUT",
    }
)
#: the ``sacct`` fields of :meth:`MultiNodeSlurmCluster.sacct`
SACCT_FIELDS = (
    "JobID", "JobName", "State", "ExitCode", "ElapsedRaw", "AllocCPUS", "NodeList",
    "Account", "User", "Start", "End", "TotalCPU",
)  # fmt: skip
#: where Debian and source builds put the programs (``/usr/sbin`` is not on every PATH)
_EXTRA_PATH = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/sbin", "/bin")
#: a unix socket path must fit in ``sun_path`` (108 bytes with the final NUL)
_MAX_SOCKET_PATH = 107
#: longest name slurmstepd gives its socket in the spool folder, after ``<node>``:
#: ``_<job id>.<step id>`` (the batch step is 4294967291)
_STEPD_SOCKET_SUFFIX = "_4294967295.4294967291"


class SlurmUnavailable(RuntimeError):
    """Slurm cannot be installed or started here (the message says why)."""


class SlurmError(RuntimeError):
    """A command against a running cluster failed or a job did not finish in time."""


# ---------------------------------------------------------------------------- programs


def find_programs(names: Iterable[str] = REQUIRED_PROGRAMS) -> dict[str, Path | None]:
    """Locate Slurm and MUNGE programs on ``PATH`` and in the usual system folders.

    Parameters
    ----------
    names
        Program names to look for.

    Returns
    -------
    dict of str to Path or None
        The absolute path of each program, or None when it is not found.
    """
    path = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_PATH])
    found: dict[str, Path | None] = {}
    for name in names:
        where = shutil.which(name, path=path)
        found[name] = Path(where) if where else None
    return found


def ensure_slurm_installed(
    install: bool = True,
    timeout: float = 900.0,
    *,
    programs: Iterable[str] = REQUIRED_PROGRAMS,
    packages: Iterable[str] = DEBIAN_PACKAGES,
) -> dict[str, Path]:
    """Return the paths of every required program, installing the packages if needed.

    When a program is missing, *install* is true and the process is root, runs
    ``apt-get install -y -qq slurm-wlm munge`` (and ``apt-get update -qq`` first only
    when that install fails), then looks again.

    Parameters
    ----------
    install
        Whether a missing program may be installed with ``apt-get``.
    timeout
        Seconds allowed for each ``apt-get`` call.
    programs
        The programs needed (:data:`MULTI_NODE_PROGRAMS` for :func:`multi_node_slurm`).
    packages
        The Debian packages providing them (:data:`MULTI_NODE_PACKAGES`).

    Returns
    -------
    dict of str to Path
        Program name to absolute path, for all of *programs*.

    Raises
    ------
    SlurmUnavailable
        When programs are still missing (with the names and the reason).
    """
    programs = tuple(programs)
    packages = tuple(packages)
    found = find_programs(programs)
    missing = sorted(name for name, where in found.items() if where is None)
    if not missing:
        return {name: where for name, where in found.items() if where is not None}
    if not install:
        raise SlurmUnavailable(f"Slurm programs missing: {', '.join(missing)} (installing is off)")
    if os.geteuid() != 0:
        raise SlurmUnavailable(
            f"Slurm programs missing: {', '.join(missing)}; as root run scripts/install-slurm.sh "
            f"(apt-get install {' '.join(packages)})"
        )
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"Slurm programs missing: {', '.join(missing)}, and no apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install_cmd = [
        "apt-get", "install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=300", *packages,
    ]  # fmt: skip
    try:
        done = subprocess.run(install_cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            subprocess.run(
                ["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=timeout
            )
            done = subprocess.run(
                install_cmd, env=env, capture_output=True, text=True, timeout=timeout
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmUnavailable(f"apt-get install {' '.join(packages)} failed: {exc}") from exc
    if done.returncode != 0:
        raise SlurmUnavailable(
            f"apt-get install {' '.join(packages)} failed "
            f"(exit {done.returncode}): {done.stderr.strip()[-800:]}"
        )
    found = find_programs(programs)
    missing = sorted(name for name, where in found.items() if where is None)
    if missing:
        raise SlurmUnavailable(f"still missing after apt-get install: {', '.join(missing)}")
    return {name: where for name, where in found.items() if where is not None}


def slurm_version(slurmctld: Path | str = "slurmctld") -> tuple[int, ...]:
    """Return the version of ``slurmctld -V`` (``slurm-wlm 22.05.8`` gives ``(22, 5, 8)``).

    Parameters
    ----------
    slurmctld
        The controller program.

    Returns
    -------
    tuple of int
        The numeric version parts.

    Raises
    ------
    SlurmUnavailable
        When the program cannot be run or prints no version.
    """
    try:
        out = subprocess.run(
            [str(slurmctld), "-V"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmUnavailable(f"cannot run {slurmctld} -V: {exc}") from exc
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    if not match:
        raise SlurmUnavailable(f"{slurmctld} -V printed no version: {out!r}")
    return tuple(int(part) for part in match.groups() if part is not None)


# ---------------------------------------------------------------------------- machine


def short_hostname() -> str:
    """Return ``hostname -s``: the name slurmd registers as and ``NodeName`` must match.

    Returns
    -------
    str
        The host name up to the first dot.
    """
    return socket.gethostname().split(".")[0]


def _meminfo_mb() -> int | None:
    """Return ``MemTotal`` of ``/proc/meminfo`` in MiB, or None where there is none."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return None


@dataclass(frozen=True)
class NodeHardware:
    """What the single node offers Slurm.

    Attributes
    ----------
    cpus
        ``CPUs`` (``os.cpu_count()``, at most what ``slurmd -C`` sees).
    real_memory_mb
        ``RealMemory``: 95 % of the machine's memory, so slurmd never finds less.
    topology
        ``Boards``/``SocketsPerBoard``/``CoresPerSocket``/``ThreadsPerCore`` from
        ``slurmd -C`` when they add up to *cpus*; empty otherwise (Slurm then assumes
        one core per CPU).
    """

    cpus: int
    real_memory_mb: int
    topology: dict[str, int] = field(default_factory=dict)

    @property
    def def_mem_per_cpu_mb(self) -> int:
        """``DefMemPerCPU``: a job without ``--mem`` must not take the whole node."""
        return max(100, min(1024, self.real_memory_mb // max(self.cpus, 1)))


def node_hardware(slurmd: Path | str = "slurmd") -> NodeHardware:
    """Describe this machine for ``slurm.conf`` (``slurmd -C``, ``os.cpu_count()``, meminfo).

    Parameters
    ----------
    slurmd
        The compute daemon, whose ``-C`` option prints the detected hardware.

    Returns
    -------
    NodeHardware
        CPUs, memory and, when consistent, the socket/core layout.
    """
    detected: dict[str, int] = {}
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        out = subprocess.run([str(slurmd), "-C"], capture_output=True, text=True, timeout=30).stdout
        first = out.splitlines()[0] if out.strip() else ""
        for key, value in re.findall(r"(\w+)=(\d+)", first):
            detected[key] = int(value)
    cpus = os.cpu_count() or 1
    if detected.get("CPUs"):
        cpus = min(cpus, detected["CPUs"])
    memory = [m for m in (_meminfo_mb(), detected.get("RealMemory")) if m]
    real_memory = max(256, int(min(memory) * 0.95)) if memory else 1024
    keys = ("Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
    topology: dict[str, int] = {}
    if all(detected.get(k) for k in keys) and detected.get("CPUs") == cpus:
        product = 1
        for key in keys:
            product *= detected[key]
        if product == cpus:
            topology = {key: detected[key] for key in keys}
    return NodeHardware(cpus=cpus, real_memory_mb=real_memory, topology=topology)


# ---------------------------------------------------------------------------- config


@dataclass(frozen=True)
class SlurmLayout:
    """Where a cluster's files live, all under one folder.

    Attributes
    ----------
    workdir
        The folder given to :func:`single_node_slurm`.
    runtime
        Folder of the unix sockets, MUNGE's and slurmstepd's (the spool folder):
        ``workdir/run``, or a short private folder in the system temporary folder when
        the socket paths would be too long (a unix socket path has at most 107 bytes).
    """

    workdir: Path
    runtime: Path

    @property
    def conf(self) -> Path:
        """``slurm.conf``."""
        return self.workdir / "etc" / "slurm.conf"

    @property
    def plugstack(self) -> Path:
        """An empty ``plugstack.conf``, so no system SPANK plugin is loaded."""
        return self.workdir / "etc" / "plugstack.conf"

    @property
    def munge_key(self) -> Path:
        """The MUNGE key (mode 0400)."""
        return self.workdir / "munge" / "munge.key"

    @property
    def munge_socket(self) -> Path:
        """The MUNGE daemon's socket (``AuthInfo=socket=...``)."""
        return self.runtime / "munge.socket"

    @property
    def state(self) -> Path:
        """``StateSaveLocation``."""
        return self.workdir / "state"

    @property
    def spool(self) -> Path:
        """``SlurmdSpoolDir`` (where slurmstepd creates its sockets)."""
        return self.runtime / "spool"

    @property
    def log(self) -> Path:
        """Folder of the daemons' logs, pid files and the job completion log."""
        return self.workdir / "log"

    @property
    def jobcomp(self) -> Path:
        """``JobCompLoc``: one line per finished job, read by ``sacct -c``."""
        return self.log / "jobcomp.txt"


@dataclass(frozen=True)
class ComputeNode:
    """One compute node of :func:`multi_node_slurm`: a ``slurmd`` in its own namespaces.

    Attributes
    ----------
    name
        ``NodeName`` and ``NodeHostname``; also the host name jobs see (``hostname``), as
        each node has its own UTS namespace.
    address
        ``NodeAddr``: the node's address on the cluster's bridge.
    namespace
        The network namespace (``ip netns``) the node's slurmd and jobs run in.
    cpus
        ``CPUs`` declared for the node.
    real_memory_mb
        ``RealMemory`` declared for the node.
    """

    name: str
    address: str
    namespace: str
    cpus: int
    real_memory_mb: int


@dataclass(frozen=True)
class AccountingConfig:
    """Where ``slurmctld`` finds ``slurmdbd``, and what it enforces.

    Attributes
    ----------
    host, port
        ``AccountingStorageHost`` / ``AccountingStoragePort`` (slurmdbd's ``DbdPort``).
    enforce
        ``AccountingStorageEnforce`` (``"associations"``: a job needs a user/account
        association made with ``sacctmgr``; empty: nothing enforced).
    """

    host: str
    port: int
    enforce: str = "associations"


def render_slurm_conf(
    layout: SlurmLayout,
    *,
    node: str,
    hardware: NodeHardware,
    ctld_port: int,
    slurmd_port: int,
    user: str,
    cluster_name: str = "oceandata",
    compute_nodes: Iterable[ComputeNode] = (),
    controller_addr: str = "127.0.0.1",
    accounting: AccountingConfig | None = None,
) -> str:
    """Return the text of ``slurm.conf`` for a single-node or a multi-node cluster.

    Parameters
    ----------
    layout
        Where the cluster's files live.
    node
        ``NodeName`` (``hostname -s``); it is reached at 127.0.0.1. Unused when
        *compute_nodes* are given.
    hardware
        CPUs and memory of the node (with *compute_nodes*: only ``DefMemPerCPU``).
    ctld_port, slurmd_port
        ``SlurmctldPort`` and ``SlurmdPort`` (every node has its own network namespace,
        so all slurmd listen on the same port).
    user
        ``SlurmUser`` and ``SlurmdUser`` (the user running the daemons, root in CI).
    cluster_name
        ``ClusterName``.
    compute_nodes
        The nodes of a multi-node cluster (:func:`multi_node_slurm`); each slurmd then
        has its own spool folder, pid and log file (``%n`` in their paths).
    controller_addr
        The address slurmctld is reached at (the bridge's host side for several nodes).
    accounting
        ``slurmdbd`` to record jobs in (``sacct``); None: no accounting storage, the
        job completion log only.

    Returns
    -------
    str
        The configuration text.
    """
    compute_nodes = tuple(compute_nodes)
    topo = "".join(f" {key}={value}" for key, value in hardware.topology.items())
    log = layout.log
    per_node = "-%n" if compute_nodes else ""
    kind = f"{len(compute_nodes)}-node" if compute_nodes else "single-node"
    lines = [
        f"# Written by oceandata.testing.slurm: a throw-away {kind} cluster.",
        f"ClusterName={cluster_name}",
        f"SlurmctldHost=localhost({controller_addr})",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        f"SlurmUser={user}",
        f"SlurmdUser={user}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={layout.munge_socket}",
        f"StateSaveLocation={layout.state}",
        f"SlurmdSpoolDir={layout.spool / '%n' if compute_nodes else layout.spool}",
        f"SlurmctldPidFile={log / 'slurmctld.pid'}",
        f"SlurmdPidFile={log / f'slurmd{per_node}.pid'}",
        f"SlurmctldLogFile={log / 'slurmctld.log'}",
        f"SlurmdLogFile={log / f'slurmd{per_node}.log'}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        f"PlugStackConfig={layout.plugstack}",
        "MailProg=/bin/true",
        "MpiDefault=none",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SwitchType=switch/none",
        "SchedulerType=sched/backfill",
        # start a submitted batch job at once, not up to 3 s later (the default)
        "SchedulerParameters=batch_sched_delay=0",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        f"DefMemPerCPU={hardware.def_mem_per_cpu_mb}",
        "ReturnToService=2",
        "KillWait=5",
        "InactiveLimit=0",
        "SlurmdTimeout=120",
        # finished jobs stay queryable with `scontrol show job` for an hour
        "MinJobAge=3600",
    ]
    if accounting is None:
        # no slurmdbd: no accounting storage; `sacct -c` reads the completion log instead
        lines.append("AccountingStorageType=accounting_storage/none")
    else:
        lines += [
            "AccountingStorageType=accounting_storage/slurmdbd",
            f"AccountingStorageHost={accounting.host}",
            f"AccountingStoragePort={accounting.port}",
            # with slurmdbd this "password" is the MUNGE socket to sign its messages with
            f"AccountingStoragePass={layout.munge_socket}",
            *([f"AccountingStorageEnforce={accounting.enforce}"] if accounting.enforce else []),
            # gather each task's CPU time and memory every 5 s into the job's record
            "JobAcctGatherFrequency=task=5",
        ]
    lines += [
        "JobAcctGatherType=jobacct_gather/linux",
        "JobCompType=jobcomp/filetxt",
        f"JobCompLoc={layout.jobcomp}",
    ]
    if not compute_nodes:
        lines += [
            f"NodeName={node} NodeAddr=127.0.0.1 CPUs={hardware.cpus}{topo} "
            f"RealMemory={hardware.real_memory_mb} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP",
        ]
        return "\n".join(lines) + "\n"
    # the declared CPUs and memory count, not what each slurmd finds on the shared machine
    lines.append("SlurmdParameters=config_overrides")
    for compute in compute_nodes:
        lines.append(
            f"NodeName={compute.name} NodeAddr={compute.address} NodeHostname={compute.name} "
            f"CPUs={compute.cpus} RealMemory={compute.real_memory_mb} State=UNKNOWN"
        )
    names = ",".join(compute.name for compute in compute_nodes)
    lines.append(f"PartitionName={PARTITION} Nodes={names} Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- job records


def parse_duration(text: str) -> float | None:
    """Return the seconds of a Slurm duration (``[D-]HH:MM:SS``, ``MM:SS``, ``MM:SS.mmm``).

    Parameters
    ----------
    text
        The duration as ``scontrol``/``sacct`` print it.

    Returns
    -------
    float or None
        Seconds, or None for ``UNLIMITED``, ``INVALID``, an empty or unknown value.
    """
    text = text.strip()
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)", text)
    if not match:
        return None
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)


def parse_scontrol_record(text: str) -> dict[str, str]:
    """Split a one-line ``scontrol show ... -o`` record into its ``Key=value`` fields.

    Parameters
    ----------
    text
        The record.

    Returns
    -------
    dict of str to str
        Field name to value (a value runs up to the next space; free-text fields such as
        ``Command`` with spaces are cut, the scheduling fields are not).
    """
    return dict(re.findall(r"(?:^|\s)([A-Za-z][\w/:]*)=(\S*)", text.strip()))


@dataclass(frozen=True)
class JobRecord:
    """State of one job, from the controller's memory or the job completion log.

    Attributes
    ----------
    job_id
        The job id.
    state
        ``JobState`` (``PENDING``, ``RUNNING``, ``COMPLETED``, ``CANCELLED``, ...).
    exit_code
        ``ExitCode`` as ``"<code>:<signal>"``.
    elapsed_s
        Run time in seconds (None when not reported).
    source
        ``"scontrol"`` (the controller) or ``"jobcomp"`` (``sacct -c``).
    fields
        Every field the source printed.
    """

    job_id: int
    state: str
    exit_code: str
    elapsed_s: float | None
    source: str
    fields: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def finished(self) -> bool:
        """Whether the job no longer runs (see :data:`FINISHED_STATES`)."""
        return self.state in FINISHED_STATES

    @property
    def succeeded(self) -> bool:
        """Whether the job ``COMPLETED`` with exit code ``0:0``."""
        return self.state == "COMPLETED" and self.exit_code == "0:0"


# ---------------------------------------------------------------------------- cluster


def _tail(path: Path, lines: int = 25) -> str:
    """Return the last *lines* of a log file (empty if it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_until(
    check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1
) -> None:
    """Call *check* every *interval* seconds until it is true, or raise after *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class SlurmCluster:
    """A running single-node cluster and how to talk to it.

    Attributes
    ----------
    layout
        Where its files are (``layout.conf`` is ``SLURM_CONF``).
    programs
        Program name to absolute path (``sbatch``, ``squeue``, ``sacct``, ``scontrol``,
        ``scancel``, ``sinfo``, ``slurmctld``, ``slurmd``, ``munged``).
    node
        The node name (``hostname -s``).
    partition
        The default partition.
    version
        Slurm's version.
    ctld_port, slurmd_port
        The TCP ports of ``slurmctld`` and ``slurmd``.
    """

    layout: SlurmLayout
    programs: dict[str, Path]
    node: str
    partition: str
    version: tuple[int, ...]
    ctld_port: int
    slurmd_port: int
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def slurm_conf(self) -> Path:
        """The ``slurm.conf`` (value of ``SLURM_CONF``)."""
        return self.layout.conf

    def env(self) -> dict[str, str]:
        """Return ``os.environ`` plus ``SLURM_CONF`` of this cluster.

        Inherited ``SLURM_*`` and ``SBATCH_*`` variables (a test run inside another
        Slurm job) are left out, as they would redirect or constrain the commands.

        Returns
        -------
        dict of str to str
            The environment for ``sbatch``, ``squeue``, ``sacct``, ... and for jobs.
        """
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("SLURM_", "SBATCH_"))
        }
        env["SLURM_CONF"] = str(self.layout.conf)
        return env

    def run(
        self, program: str, *args: str, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client program against this cluster.

        Parameters
        ----------
        program
            ``sbatch``, ``squeue``, ``sacct``, ``scontrol``, ``scancel`` or ``sinfo``.
        *args
            Its arguments.
        check
            Raise :class:`SlurmError` when it exits non-zero.
        timeout
            Seconds allowed.

        Returns
        -------
        subprocess.CompletedProcess
            With text ``stdout`` and ``stderr``.
        """
        cmd = [str(self.programs.get(program, program)), *args]
        try:
            done = subprocess.run(
                cmd, env=self.env(), capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise SlurmError(f"{' '.join(cmd)} took more than {timeout} s") from exc
        if check and done.returncode != 0:
            raise SlurmError(
                f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip() or done.stdout}"
            )
        return done

    def sbatch(self, *args: str) -> int:
        """Submit a batch job (``sbatch --parsable ARGS``) and return its id.

        Parameters
        ----------
        *args
            ``sbatch`` options and script, e.g. ``"--wrap", "hostname"``.

        Returns
        -------
        int
            The job id.
        """
        if not any(a in ("-D", "--chdir") or a.startswith("--chdir=") for a in args):
            # never the caller's current folder (a checkout): the default slurm-N.out
            # files land in the cluster's own folder
            args = ("--chdir", str(self.layout.workdir), *args)
        out = self.run("sbatch", "--parsable", *args).stdout.strip()
        return int(out.splitlines()[-1].split(";")[0])

    def scancel(self, *job_ids: int) -> None:
        """Cancel jobs.

        Parameters
        ----------
        *job_ids
            The jobs' ids.
        """
        if job_ids:
            self.run("scancel", *(str(job) for job in job_ids))

    def queue(self) -> list[int]:
        """Return the ids of the jobs ``squeue`` lists (pending, running, completing).

        Returns
        -------
        list of int
            Job ids.
        """
        out = self.run("squeue", "-h", "-o", "%i").stdout
        return [int(line) for line in out.split() if line.strip().isdigit()]

    def ping(self) -> bool:
        """Whether ``scontrol ping`` reports the controller UP.

        Returns
        -------
        bool
            True when the controller answers.
        """
        done = self.run("scontrol", "ping", check=False, timeout=15)
        return done.returncode == 0 and "is UP" in done.stdout

    @property
    def node_names(self) -> tuple[str, ...]:
        """The names of the cluster's compute nodes (here the one node)."""
        return (self.node,)

    def node_state(self) -> str:
        """Return the node's state as ``sinfo -h -N -o %t`` prints it (``idle``, ``down*``...).

        Returns
        -------
        str
            The short state, empty when ``sinfo`` fails.
        """
        done = self.run("sinfo", "-h", "-N", "-n", self.node, "-o", "%t", check=False)
        return done.stdout.strip().splitlines()[0].strip() if done.stdout.strip() else ""

    def node_states(self) -> dict[str, str]:
        """Return every node's short state (``sinfo -h -N -o "%N %t"``).

        Returns
        -------
        dict of str to str
            Node name to state (``idle``, ``alloc``, ``down*``...); empty when ``sinfo``
            fails.
        """
        done = self.run("sinfo", "-h", "-N", "-o", "%N %t", check=False)
        states: dict[str, str] = {}
        for line in done.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2:
                states[parts[0]] = parts[1]
        return states

    def job_record(self, job_id: int) -> JobRecord | None:
        """Return the state, exit code and run time of a job, or None if unknown.

        The controller is asked first (``scontrol show job -o``: it keeps finished jobs
        for ``MinJobAge`` = one hour); a job it no longer knows is looked up in the job
        completion log with ``sacct -c`` (there is no ``slurmdbd``).

        Parameters
        ----------
        job_id
            The job id.

        Returns
        -------
        JobRecord or None
            The record, or None when neither source knows the job.
        """
        done = self.run("scontrol", "show", "job", "-o", str(job_id), check=False)
        if done.returncode == 0 and "JobState=" in done.stdout:
            fields = parse_scontrol_record(done.stdout)
            return JobRecord(
                job_id=int(job_id),
                state=fields.get("JobState", ""),
                exit_code=fields.get("ExitCode", ""),
                elapsed_s=parse_duration(fields.get("RunTime", "")),
                source="scontrol",
                fields=fields,
            )
        return self.completed_job_record(job_id)

    def completed_job_record(self, job_id: int) -> JobRecord | None:
        """Return a finished job's record from the job completion log (``sacct -c``).

        Parameters
        ----------
        job_id
            The job id.

        Returns
        -------
        JobRecord or None
            The record, or None when the log has no line for the job.
        """
        names = ("JobID", "State", "ExitCode", "Elapsed", "Start", "End", "NodeList")
        done = self.run(
            "sacct", "-c", "-j", str(job_id), "-P", "-n", "-o", ",".join(names), check=False
        )
        for line in done.stdout.splitlines():
            values = line.split("|")
            if len(values) != len(names) or values[0] != str(job_id):
                continue
            fields = dict(zip(names, values, strict=True))
            return JobRecord(
                job_id=int(job_id),
                state=fields["State"].split()[0] if fields["State"] else "",
                exit_code=fields["ExitCode"],
                elapsed_s=parse_duration(fields["Elapsed"]),
                source="jobcomp",
                fields=fields,
            )
        return None

    def wait_for_job(self, job_id: int, timeout: float = 120.0, interval: float = 0.2) -> JobRecord:
        """Poll until a job has finished and return its record.

        Parameters
        ----------
        job_id
            The job id.
        timeout
            Seconds to wait at most.
        interval
            Seconds between two polls.

        Returns
        -------
        JobRecord
            The finished job's record.

        Raises
        ------
        SlurmError
            When the job is unknown or still not finished after *timeout*.
        """
        return self.wait_for_jobs([job_id], timeout=timeout, interval=interval)[job_id]

    def wait_for_jobs(
        self, job_ids: Iterable[int], timeout: float = 120.0, interval: float = 0.2
    ) -> dict[int, JobRecord]:
        """Poll until every job has finished and return their records.

        Parameters
        ----------
        job_ids
            The jobs' ids.
        timeout
            Seconds to wait at most for all of them.
        interval
            Seconds between two polls.

        Returns
        -------
        dict of int to JobRecord
            Each job's finished record.

        Raises
        ------
        SlurmError
            When a job is unknown or not finished after *timeout* (the message lists them).
        """
        pending = list(dict.fromkeys(int(job) for job in job_ids))
        records: dict[int, JobRecord] = {}
        deadline = time.monotonic() + timeout
        while True:
            last: dict[int, JobRecord | None] = {}
            for job in pending:
                record = self.job_record(job)
                last[job] = record
                if record is not None and record.finished:
                    records[job] = record
            pending = [job for job in pending if job not in records]
            if not pending:
                return records
            if time.monotonic() >= deadline:
                states = ", ".join(
                    f"{job}: {last[job].state if last[job] else 'unknown'}" for job in pending
                )
                raise SlurmError(f"jobs not finished after {timeout:.0f} s: {states}")
            time.sleep(interval)


# ---------------------------------------------------------------------------- start/stop


def _make_layout(workdir: Path, node: str) -> tuple[SlurmLayout, Path | None]:
    """Create the cluster's folders; return the layout and a private folder to remove."""
    workdir = Path(workdir).resolve()
    owned_runtime: Path | None = None
    runtime = workdir / "run"
    longest = max(
        len(str(runtime / "munge.socket")),
        len(str(runtime / "spool" / f"{node}{_STEPD_SOCKET_SUFFIX}")),
    )
    if longest > _MAX_SOCKET_PATH:
        owned_runtime = Path(tempfile.mkdtemp(prefix="od-slurm-"))
        runtime = owned_runtime
    layout = SlurmLayout(workdir=workdir, runtime=runtime)
    for folder in (
        workdir, layout.conf.parent, layout.munge_key.parent, layout.runtime,
        layout.state, layout.spool, layout.log,
    ):  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
    # munged wants its socket folder reachable by everyone, its key folder private
    layout.runtime.chmod(0o755)
    layout.munge_key.parent.chmod(0o700)
    return layout, owned_runtime


def _write_munge_key(layout: SlurmLayout) -> None:
    """Write a fresh 1024-byte random MUNGE key, mode 0400, owned by the current user."""
    key = layout.munge_key
    if key.exists():
        key.chmod(0o600)
        key.unlink()
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "wb") as handle:
        handle.write(os.urandom(1024))
    key.chmod(0o400)


def _parent_death_signal() -> Callable[[], None] | None:
    """Return a ``preexec_fn`` making the child get SIGTERM when its starting thread ends.

    ``prctl(PR_SET_PDEATHSIG, SIGTERM)``, so a test run that is killed (no ``finally``
    runs) does not leave the daemons behind. ``prctl`` is looked up here, in the parent:
    the child only calls it. None where there is no ``prctl`` (not Linux).
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    sigterm = int(signal.SIGTERM)

    def preexec() -> None:
        prctl(1, sigterm)  # 1 = PR_SET_PDEATHSIG

    return preexec


def _start(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    log: Path,
    enter: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a daemon in the foreground of its own session, output appended to *log*.

    *enter*, when given, runs in the child before the program (e.g. to join a node's
    namespaces, see :func:`_enter_node`), after the parent-death signal is set.
    """
    death = _parent_death_signal()
    preexec = death
    if enter is not None:

        def preexec() -> None:
            if death is not None:
                death()
            enter()

    with open(log, "ab") as out:
        return subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,
        )


def _start_munged(layout: SlurmLayout, munged: Path, timeout: float) -> subprocess.Popen[bytes]:
    """Start ``munged -F`` with every file under the cluster's folder; wait for its socket."""
    _write_munge_key(layout)
    log = layout.log
    cmd = [
        str(munged),
        "--foreground",
        "--force",  # as root, and with a private (0700) parent folder: warn, don't refuse
        f"--socket={layout.munge_socket}",
        f"--key-file={layout.munge_key}",
        f"--pid-file={log / 'munged.pid'}",
        f"--log-file={log / 'munged.log'}",
        f"--seed-file={layout.munge_key.parent / 'munged.seed'}",
    ]
    proc = _start("munged", cmd, dict(os.environ), log / "munged.out")

    def ready() -> bool:
        if proc.poll() is not None:
            raise SlurmUnavailable(
                f"munged exited with {proc.returncode}:\n{_tail(log / 'munged.log')}"
                f"\n{_tail(log / 'munged.out')}"
            )
        return layout.munge_socket.is_socket()

    try:
        _wait_until(ready, timeout, "munged's socket")
    except TimeoutError as exc:
        _terminate(proc)
        raise SlurmUnavailable(f"{exc}:\n{_tail(log / 'munged.log')}") from exc
    except SlurmUnavailable:
        _terminate(proc)
        raise
    return proc


def _terminate(proc: subprocess.Popen[bytes] | None, grace: float = 10.0) -> None:
    """SIGTERM a process we started, SIGKILL it after *grace* seconds, and reap it."""
    if proc is None:
        return
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)


def _stray_slurmstepds(conf: Path) -> list[int]:
    """Return the pids of ``slurmstepd`` processes of *this* cluster (their ``SLURM_CONF``)."""
    marker = f"SLURM_CONF={conf}".encode() + b"\0"
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            # slurmstepd renames itself "slurmstepd: [<job>.<step>]" (comm keeps 15 bytes)
            if not (entry / "comm").read_text().startswith("slurmstepd"):
                continue
            if marker in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
    return pids


def _log_stem(name: str) -> str:
    """The log file stem of a daemon in ``procs`` (``slurmd@node1`` logs to ``slurmd-node1``)."""
    return name.replace("@", "-")


def _check_alive(procs: dict[str, subprocess.Popen[bytes]], log: Path) -> None:
    """Raise :class:`SlurmUnavailable` with its log tail when a daemon we started has exited."""
    for name, proc in procs.items():
        if proc.poll() is not None:
            stem = _log_stem(name)
            raise SlurmUnavailable(
                f"{name} exited with {proc.returncode}:\n{_tail(log / f'{stem}.log')}"
                f"\n{_tail(log / f'{stem}.out')}"
            )


def _daemons_ready(cluster: SlurmCluster, timeout: float) -> None:
    """Wait until ``scontrol ping`` is UP and every node is idle (resuming down/drained ones)."""
    procs = cluster._procs
    log = cluster.layout.log

    def ctld_up() -> bool:
        _check_alive(procs, log)
        return cluster.ping()

    _wait_until(ctld_up, timeout, "scontrol ping to report slurmctld UP")
    last_resume = [0.0]
    wanted = cluster.node_names

    def nodes_idle() -> bool:
        _check_alive(procs, log)
        states = cluster.node_states() if len(wanted) > 1 else {wanted[0]: cluster.node_state()}
        if all(states.get(node) in ("idle", "mix", "alloc") for node in wanted):
            return True
        now = time.monotonic()
        stuck = [
            node
            for node in wanted
            if states.get(node, "").startswith(("down", "drain", "drng"))
            and not states.get(node, "").endswith("*")
        ]
        if stuck and now - last_resume[0] > 2.0:
            last_resume[0] = now
            cluster.run(
                "scontrol", "update", f"nodename={','.join(stuck)}", "state=resume", check=False
            )
        return False

    _wait_until(
        nodes_idle, timeout, f"node(s) {', '.join(wanted)} to be idle in sinfo", interval=0.2
    )


def _shutdown(cluster: SlurmCluster, timeout: float = 30.0) -> None:
    """Cancel the jobs left, ``scontrol shutdown``, then end the daemons by their pids."""
    procs = cluster._procs
    ctld = procs.get("slurmctld")
    if ctld is not None and ctld.poll() is None:
        with contextlib.suppress(SlurmError, ValueError):
            jobs = cluster.queue()
            if jobs:
                cluster.run("scancel", *(str(job) for job in jobs), check=False)
                with contextlib.suppress(TimeoutError):
                    _wait_until(lambda: not cluster.queue(), timeout, "cancelled jobs to end")
        with contextlib.suppress(SlurmError):
            cluster.run("scontrol", "shutdown", check=False, timeout=15)
    deadline = time.monotonic() + timeout
    slurmds = [name for name in procs if name == "slurmd" or name.startswith("slurmd@")]
    for name in (*slurmds, "slurmctld"):
        proc = procs.get(name)
        if proc is None:
            continue
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        _terminate(proc)
    for pid in _stray_slurmstepds(cluster.layout.conf):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    _stop_support_daemons(procs)


#: the order in which the daemons besides slurmctld/slurmd are stopped: accounting first,
#: its database next, MUNGE (which everyone authenticates through) last
_SUPPORT_DAEMONS = ("slurmdbd", "mariadbd", "munged")


def _stop_support_daemons(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """Stop whatever of slurmdbd, mariadbd and munged we started, in that order."""
    for name in _SUPPORT_DAEMONS:
        _terminate(procs.get(name))


def _start_daemons(
    layout: SlurmLayout,
    programs: dict[str, Path],
    procs: dict[str, subprocess.Popen[bytes]],
    node: str,
    hardware: NodeHardware,
    user: str,
    version: tuple[int, ...],
    timeout: float,
    *,
    network: BridgeNetwork | None = None,
    accounting: AccountingConfig | None = None,
    cluster_name: str = "oceandata",
    before_controller: Callable[[SlurmCluster], None] | None = None,
    hosts: Path | None = None,
) -> SlurmCluster:
    """Start slurmctld and the slurmd (into *procs*) and wait until they are ready.

    MUNGE (and slurmdbd, with *accounting*) must already run. Without *network*, one
    slurmd for this machine (:func:`single_node_slurm`); with it, one slurmd per node of
    the network, each inside its node's namespaces (:func:`multi_node_slurm`), and a
    :class:`MultiNodeSlurmCluster` is returned. *before_controller* is called with the
    cluster once its ``slurm.conf`` is written, before slurmctld starts (to register the
    cluster in slurmdbd); *hosts* is bound over the nodes' ``/etc/hosts``.

    A port taken by someone else between :func:`free_port` and the daemon's bind is
    retried with new ports, twice at most.
    """
    controller_addr = network.host_address if network is not None else "127.0.0.1"
    compute = network.nodes if network is not None else ()
    slurmd_names = [f"slurmd@{n.name}" for n in compute] if compute else ["slurmd"]
    log_names = [
        f"{stem}{ext}"
        for stem in ("slurmctld", *(_log_stem(name) for name in slurmd_names))
        for ext in (".log", ".out")
    ]
    for attempt in range(3):
        ctld_port = free_port()
        slurmd_port = free_port(exclude=[ctld_port])
        layout.conf.write_text(
            render_slurm_conf(
                layout,
                node=node,
                hardware=hardware,
                ctld_port=ctld_port,
                slurmd_port=slurmd_port,
                user=user,
                cluster_name=cluster_name,
                compute_nodes=compute,
                controller_addr=controller_addr,
                accounting=accounting,
            )
        )
        common = {
            "layout": layout,
            "programs": programs,
            "node": compute[0].name if compute else node,
            "partition": PARTITION,
            "version": version,
            "ctld_port": ctld_port,
            "slurmd_port": slurmd_port,
            "_procs": procs,
        }
        cluster: SlurmCluster
        if network is not None and accounting is not None:
            cluster = MultiNodeSlurmCluster(
                **common, network=network, cluster_name=cluster_name, accounting=accounting
            )
        else:
            cluster = SlurmCluster(**common)
        if before_controller is not None:
            before_controller(cluster)
        env = cluster.env()
        conf = str(layout.conf)
        procs["slurmctld"] = _start(
            "slurmctld",
            [str(programs["slurmctld"]), "-D", "-f", conf],
            env,
            layout.log / "slurmctld.out",
        )
        if not compute:
            procs["slurmd"] = _start(
                "slurmd",
                [str(programs["slurmd"]), "-D", "-f", conf, "-N", node],
                env,
                layout.log / "slurmd.out",
            )
        for name, compute_node in zip(slurmd_names, compute, strict=False):
            (layout.spool / compute_node.name).mkdir(parents=True, exist_ok=True)
            procs[name] = _start(
                name,
                [str(programs["slurmd"]), "-D", "-f", conf, "-N", compute_node.name],
                env,
                layout.log / f"{_log_stem(name)}.out",
                enter=_enter_node(compute_node, hosts),
            )
        try:
            _daemons_ready(cluster, timeout)
            return cluster
        except (SlurmUnavailable, TimeoutError) as exc:
            logs = "\n".join(_tail(layout.log / name, 40) for name in log_names)
            for name in (*slurmd_names, "slurmctld"):
                _terminate(procs.pop(name, None))
            if "Address already in use" in logs and attempt < 2:
                # another cluster took a port between our choice and the bind: new ports,
                # fresh logs (the failed attempt's are kept beside them)
                for name in log_names:
                    with contextlib.suppress(OSError):
                        (layout.log / name).rename(layout.log / f"{name}.{attempt}")
                continue
            raise SlurmUnavailable(f"Slurm did not come up: {exc}\n{logs}") from exc
    raise SlurmUnavailable("Slurm did not come up")  # not reached: the loop returns or raises


@contextlib.contextmanager
def single_node_slurm(
    workdir: Path, *, timeout: float = 60.0, install: bool = True
) -> Iterator[SlurmCluster]:
    """Run a real single-node Slurm cluster (MUNGE, slurmctld, slurmd) for the block.

    Parameters
    ----------
    workdir
        Folder for every file of the cluster (created if needed; keep it short-ish, the
        MUNGE socket goes to a private temporary folder when the path is too long).
    timeout
        Seconds each daemon may take to become ready.
    install
        Install the Debian packages when programs are missing and the process is root.

    Yields
    ------
    SlurmCluster
        The ready cluster: the controller answers and the node is idle.

    Raises
    ------
    SlurmUnavailable
        When Slurm cannot be installed, is too old, or a daemon does not come up (the
        message has the reason and the tail of the daemon's log).
    """
    programs = ensure_slurm_installed(install=install)
    version = slurm_version(programs["slurmctld"])
    if version[:2] < MIN_VERSION:
        raise SlurmUnavailable(
            f"Slurm {'.'.join(map(str, version))} is older than {'.'.join(map(str, MIN_VERSION))}"
        )
    node = short_hostname()
    try:
        layout, owned_runtime = _make_layout(Path(workdir), node)
        layout.plugstack.write_text("")
    except OSError as exc:
        raise SlurmUnavailable(f"cannot prepare {workdir}: {exc}") from exc
    user = pwd.getpwuid(os.geteuid()).pw_name
    hardware = node_hardware(programs["slurmd"])
    cluster: SlurmCluster | None = None
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        try:
            procs["munged"] = _start_munged(layout, programs["munged"], timeout)
            cluster = _start_daemons(
                layout, programs, procs, node, hardware, user, version, timeout
            )
        except (OSError, SlurmError) as exc:
            raise SlurmUnavailable(f"Slurm did not start: {exc}") from exc
        yield cluster
    finally:
        if cluster is not None:
            _shutdown(cluster)
        else:
            for name in ("slurmd", "slurmctld", "munged"):
                _terminate(procs.get(name))
        if owned_runtime is not None:
            shutil.rmtree(owned_runtime, ignore_errors=True)


# ---------------------------------------------------------------------------- multi-node

#: ``clone`` flags for ``setns``/``unshare`` (``<sched.h>``)
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWNET = 0x40000000
#: ``mount`` flags (``<sys/mount.h>``)
_MS_BIND = 4096
_MS_REC = 16384
_MS_SLAVE = 1 << 19
#: prefixes of what :func:`multi_node_slurm` creates: ``odslurmbr<tag>`` (the bridge),
#: ``odslurm<tag>n<i>`` (node *i*'s network namespace), ``odv<tag>n<i>`` (its veth pair)
_BRIDGE_PREFIX = "odslurmbr"
_NETNS_PREFIX = "odslurm"
_VETH_PREFIX = "odv"
#: the node names (``node1``, ``node2``...) and their last address byte (11, 12...)
_NODE_PREFIX = "node"
_FIRST_NODE_HOST = 11
#: slurmdbd's database (``StorageLoc``) and the MariaDB account it uses
_DB_NAME = "slurm_acct_db"
_DB_USER = "slurm"
#: a small redo log, a system tablespace grown 4 MB at a time: a cluster's datadir is then
#: some 30 MB rather than 190 MB (the tests start three)
_MARIADB_SMALL = ("--innodb-log-file-size=8M", "--innodb-autoextend-increment=4")
_network_counter = iter(range(1 << 30))


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if number == 0:
            return text


@dataclass(frozen=True)
class BridgeNetwork:
    """The private network of a :func:`multi_node_slurm` cluster.

    A Linux bridge on the host with ``host_address`` (where slurmctld and slurmdbd are
    reached), and one network namespace per node joined to it by a veth pair, with the
    node's address on the ``/24``. Nodes reach each other and the host over the bridge;
    the host reaches every node.

    Attributes
    ----------
    tag
        The base-36 id of the owning process and a counter, in every name below.
    bridge
        The bridge's interface name (``odslurmbr<tag>``).
    host_address
        The bridge's address on the host (``10.X.Y.1``).
    nodes
        The nodes, with their namespace and address.
    """

    tag: str
    bridge: str
    host_address: str
    nodes: tuple[ComputeNode, ...]

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The nodes' network namespaces (``ip netns list``)."""
        return tuple(node.namespace for node in self.nodes)

    def veth(self, node: ComputeNode) -> str:
        """The host side of *node*'s veth pair."""
        return f"{_VETH_PREFIX}{node.namespace.removeprefix(_NETNS_PREFIX)}"


def _ip(ip: Path | str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; raise :class:`SlurmUnavailable` with its message when it fails."""
    done = subprocess.run([str(ip), *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise SlurmUnavailable(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def _used_subnets(ip: Path | str) -> set[tuple[int, int]]:
    """The ``10.X.Y`` prefixes already in an address or a route of this machine."""
    text = _ip(ip, "-o", "-4", "addr", check=False).stdout
    text += _ip(ip, "-4", "route", check=False).stdout
    return {(int(a), int(b)) for a, b in re.findall(r"\b10\.(\d+)\.(\d+)\.\d+", text)}


def remove_stale_networks(ip: Path | str = "ip") -> list[str]:
    """Delete the namespaces and bridges of :func:`multi_node_slurm` runs whose process died.

    A test run killed with SIGKILL stops its daemons (parent-death signal) but cannot
    remove its network; the next run does, from the owner's process id in the names.

    Parameters
    ----------
    ip
        iproute2's ``ip``.

    Returns
    -------
    list of str
        The namespaces and bridges removed.
    """
    removed: list[str] = []

    def dead(tag: str) -> bool:
        with contextlib.suppress(ValueError):
            return not Path(f"/proc/{int(tag[:-1], 36)}").exists()
        return False

    for line in _ip(ip, "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(rf"{_NETNS_PREFIX}([0-9a-z]+)n\d+", name)
        if match and dead(match.group(1)):
            _ip(ip, "netns", "del", name, check=False)
            removed.append(name)
    for name in re.findall(rf"^\d+: ({_BRIDGE_PREFIX}[0-9a-z]+)[:@]", _links(ip), re.M):
        if dead(name.removeprefix(_BRIDGE_PREFIX)):
            _ip(ip, "link", "del", name, check=False)
            removed.append(name)
    return removed


def _links(ip: Path | str) -> str:
    return _ip(ip, "-o", "link", check=False).stdout


def create_network(
    nodes: int, cpus_per_node: int, memory_per_node_mb: int, ip: Path | str = "ip"
) -> BridgeNetwork:
    """Create a bridge and one network namespace per node, joined by veth pairs.

    The subnet is a free ``10.X.Y.0/24`` (X from 200 to 254); the host side of the bridge
    is ``.1``, node *i* is ``.(10+i)`` with a default route through the host.

    Parameters
    ----------
    nodes
        How many nodes.
    cpus_per_node, memory_per_node_mb
        What each node declares (``CPUs``, ``RealMemory``).
    ip
        iproute2's ``ip``.

    Returns
    -------
    BridgeNetwork
        The network; remove it with :func:`remove_network`, even after a failure here
        (what was created so far is removed before this raises).

    Raises
    ------
    SlurmUnavailable
        When a namespace, link or address cannot be made (not root, no netns support).
    """
    tag = f"{_base36(os.getpid())}{_base36(next(_network_counter) % 36)}"
    used = _used_subnets(ip)
    free = [(a, b) for a in range(200, 255) for b in range(1, 255) if (a, b) not in used]
    if not free:
        raise SlurmUnavailable("no free 10.X.Y.0/24 subnet for the cluster's bridge")
    a, b = free[(os.getpid() * 7919) % len(free)]
    prefix = f"10.{a}.{b}"
    compute = tuple(
        ComputeNode(
            name=f"{_NODE_PREFIX}{i}",
            address=f"{prefix}.{_FIRST_NODE_HOST + i - 1}",
            namespace=f"{_NETNS_PREFIX}{tag}n{i}",
            cpus=cpus_per_node,
            real_memory_mb=memory_per_node_mb,
        )
        for i in range(1, nodes + 1)
    )
    network = BridgeNetwork(
        tag=tag, bridge=f"{_BRIDGE_PREFIX}{tag}", host_address=f"{prefix}.1", nodes=compute
    )
    try:
        _ip(ip, "link", "add", network.bridge, "type", "bridge")
        _ip(ip, "addr", "add", f"{network.host_address}/24", "dev", network.bridge)
        _ip(ip, "link", "set", network.bridge, "up")
        for node in compute:
            veth = network.veth(node)
            peer = f"{veth}p"
            _ip(ip, "netns", "add", node.namespace)
            _ip(ip, "link", "add", veth, "type", "veth", "peer", "name", peer)
            _ip(ip, "link", "set", veth, "master", network.bridge, "up")
            _ip(ip, "link", "set", peer, "netns", node.namespace)
            inside = ("-n", node.namespace)
            _ip(ip, *inside, "link", "set", peer, "name", "eth0")
            _ip(ip, *inside, "addr", "add", f"{node.address}/24", "dev", "eth0")
            _ip(ip, *inside, "link", "set", "eth0", "up")
            _ip(ip, *inside, "link", "set", "lo", "up")
            _ip(ip, *inside, "route", "add", "default", "via", network.host_address)
    except (SlurmUnavailable, OSError, subprocess.TimeoutExpired) as exc:
        remove_network(network, ip)
        if isinstance(exc, SlurmUnavailable):
            raise
        raise SlurmUnavailable(f"cannot create the cluster's network: {exc}") from exc
    return network


def remove_network(network: BridgeNetwork, ip: Path | str = "ip") -> None:
    """Delete the veth pairs, namespaces and bridge of *network* (what exists of them).

    Parameters
    ----------
    network
        The network made by :func:`create_network`.
    ip
        iproute2's ``ip``.
    """
    links = _links(ip)
    for node in network.nodes:
        veth = network.veth(node)
        if re.search(rf"^\d+: {veth}[:@]", links, re.M):
            _ip(ip, "link", "del", veth, check=False)
        _ip(ip, "netns", "del", node.namespace, check=False)
    if re.search(rf"^\d+: {network.bridge}[:@]", links, re.M):
        _ip(ip, "link", "del", network.bridge, check=False)


def _write_hosts(layout: SlurmLayout, network: BridgeNetwork) -> Path:
    """Write the ``hosts`` file the nodes see as ``/etc/hosts``: this machine's plus the nodes."""
    hosts = layout.conf.parent / "hosts"
    base = ""
    with contextlib.suppress(OSError):
        base = Path("/etc/hosts").read_text()
    lines = [base.rstrip("\n"), "# oceandata.testing.slurm: the cluster's nodes"]
    lines += [f"{node.address}\t{node.name}" for node in network.nodes]
    lines.append(f"{network.host_address}\tslurmctld")
    hosts.write_text("\n".join(lines) + "\n")
    return hosts


def _enter_node(node: ComputeNode, hosts: Path | None = None) -> Callable[[], None]:
    """Return a ``preexec_fn`` that moves the child into *node*'s namespaces.

    The network namespace of ``ip netns`` (the node's address, its view of the bridge),
    a new UTS namespace whose host name is the node's name, and a new mount namespace
    (slave of the host's, so the filesystem stays shared) in which *hosts* is bound over
    ``/etc/hosts`` so node names resolve inside jobs. Everything the daemon starts
    (slurmstepd, the jobs) inherits them. ``libc`` is looked up here, in the parent.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    netns = f"/run/netns/{node.namespace}".encode()
    name = node.name.encode()
    hosts_file = str(hosts).encode() if hosts is not None else None

    def check(result: int, what: str) -> None:
        if result != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"{what}: {os.strerror(errno)}")

    def enter() -> None:
        fd = os.open(netns, os.O_RDONLY)
        try:
            check(libc.setns(fd, _CLONE_NEWNET), "setns")
        finally:
            os.close(fd)
        check(libc.unshare(_CLONE_NEWUTS | (_CLONE_NEWNS if hosts_file else 0)), "unshare")
        check(libc.sethostname(name, len(name)), "sethostname")
        if hosts_file is not None:
            check(libc.mount(None, b"/", None, _MS_REC | _MS_SLAVE, None), "mount --make-rslave")
            check(libc.mount(hosts_file, b"/etc/hosts", None, _MS_BIND, None), "bind hosts")

    return enter


def _wait_for_port(
    host: str, port: int, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float
) -> None:
    """Wait until *proc* accepts TCP connections on host:port (or raise with its log)."""

    def listening() -> bool:
        if proc.poll() is not None:
            raise SlurmUnavailable(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return True
        return False

    try:
        _wait_until(listening, timeout, f"{what} to listen on {host}:{port}")
    except TimeoutError as exc:
        raise SlurmUnavailable(f"{exc}:\n{_tail(log)}") from exc


def _start_mariadb(
    layout: SlurmLayout,
    programs: dict[str, Path],
    procs: dict[str, subprocess.Popen[bytes]],
    user: str,
    timeout: float,
) -> tuple[int, str]:
    """Initialise a private MariaDB in ``workdir/mariadb`` and start it on 127.0.0.1.

    Its socket is in the runtime folder, its port free, and an init file (re)creates the
    account slurmdbd uses with a fresh password. Returns the port and that password.
    """
    datadir = layout.workdir / "mariadb"
    log = layout.log / "mariadbd.log"
    if not (datadir / "mysql").is_dir():
        install_cmd = [
            str(programs["mariadb-install-db"]), "--no-defaults", f"--datadir={datadir}",
            f"--user={user}", "--auth-root-authentication-method=socket", "--skip-test-db",
            *_MARIADB_SMALL,
        ]  # fmt: skip
        done = subprocess.run(install_cmd, capture_output=True, text=True, timeout=max(timeout, 60))
        if done.returncode != 0:
            raise SlurmUnavailable(
                f"mariadb-install-db failed (exit {done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-800:]}"
            )
    password = secrets.token_hex(16)
    init = layout.workdir / "etc" / "mariadb-init.sql"
    init.touch(mode=0o600)
    init.chmod(0o600)
    account = f"'{_DB_USER}'@'127.0.0.1'"
    init.write_text(
        f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY '{password}';\n"
        f"ALTER USER {account} IDENTIFIED BY '{password}';\n"
        f"GRANT ALL PRIVILEGES ON `{_DB_NAME}`.* TO {account};\n"
    )
    for attempt in range(3):
        port = free_port()
        cmd = [
            str(programs["mariadbd"]), "--no-defaults", f"--datadir={datadir}",
            f"--socket={layout.runtime / 'mariadb.sock'}", f"--port={port}",
            "--bind-address=127.0.0.1", "--skip-name-resolve", f"--user={user}",
            f"--pid-file={layout.log / 'mariadbd.pid'}", f"--log-error={log}",
            f"--init-file={init}", "--innodb-buffer-pool-size=32M",
            "--skip-log-bin", "--performance-schema=OFF",
            # a throw-away database: no fsync per transaction (slurmdbd's table creation
            # and job records are then not slowed down by a busy disk)
            "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", *_MARIADB_SMALL,
        ]  # fmt: skip
        proc = _start("mariadbd", cmd, dict(os.environ), layout.log / "mariadbd.out")
        procs["mariadbd"] = proc
        try:
            _wait_for_port("127.0.0.1", port, proc, "mariadbd", log, timeout)
            return port, password
        except SlurmUnavailable:
            _terminate(procs.pop("mariadbd"))
            if "Address already in use" in _tail(log) and attempt < 2:
                continue
            raise
    raise SlurmUnavailable("mariadbd did not come up")  # not reached


def render_slurmdbd_conf(
    layout: SlurmLayout,
    *,
    dbd_addr: str,
    dbd_port: int,
    db_port: int,
    db_password: str,
    user: str,
) -> str:
    """Return the text of ``slurmdbd.conf`` (beside ``slurm.conf``, where slurmdbd looks).

    Parameters
    ----------
    layout
        Where the cluster's files live.
    dbd_addr, dbd_port
        ``DbdAddr`` and ``DbdPort``: where slurmctld and the clients reach slurmdbd.
    db_port, db_password
        The private MariaDB's port on 127.0.0.1 and the password of its ``slurm`` account.
    user
        ``SlurmUser``.

    Returns
    -------
    str
        The configuration text (it holds a password: write it with mode 0600).
    """
    log = layout.log
    lines = [
        "# Written by oceandata.testing.slurm: accounting for a throw-away cluster.",
        "AuthType=auth/munge",
        f"AuthInfo=socket={layout.munge_socket}",
        "DbdHost=localhost",
        f"DbdAddr={dbd_addr}",
        f"DbdPort={dbd_port}",
        f"SlurmUser={user}",
        f"PidFile={log / 'slurmdbd.pid'}",
        f"LogFile={log / 'slurmdbd.log'}",
        "DebugLevel=info",
        "StorageType=accounting_storage/mysql",
        "StorageHost=127.0.0.1",
        f"StoragePort={db_port}",
        f"StorageUser={_DB_USER}",
        f"StoragePass={db_password}",
        f"StorageLoc={_DB_NAME}",
    ]
    return "\n".join(lines) + "\n"


def _start_slurmdbd(
    layout: SlurmLayout,
    programs: dict[str, Path],
    procs: dict[str, subprocess.Popen[bytes]],
    *,
    dbd_addr: str,
    dbd_port: int,
    db_port: int,
    db_password: str,
    user: str,
    timeout: float,
) -> None:
    """Write ``slurmdbd.conf`` and start slurmdbd; wait until it listens."""
    conf = layout.conf.parent / "slurmdbd.conf"
    conf.touch(mode=0o600)
    conf.chmod(0o600)
    conf.write_text(
        render_slurmdbd_conf(
            layout,
            dbd_addr=dbd_addr,
            dbd_port=dbd_port,
            db_port=db_port,
            db_password=db_password,
            user=user,
        )
    )
    env = dict(os.environ, SLURM_CONF=str(layout.conf))
    proc = _start("slurmdbd", [str(programs["slurmdbd"]), "-D"], env, layout.log / "slurmdbd.out")
    procs["slurmdbd"] = proc
    _wait_for_port(dbd_addr, dbd_port, proc, "slurmdbd", layout.log / "slurmdbd.log", timeout)


@dataclass
class MultiNodeSlurmCluster(SlurmCluster):
    """A running :func:`multi_node_slurm` cluster: several nodes and real accounting.

    Everything of :class:`SlurmCluster` works (``env``, ``sbatch``, ``wait_for_job``,
    ``job_record``...); ``node`` is the first node. Finished jobs are read from the
    controller, then from slurmdbd (plain ``sacct``).

    Attributes
    ----------
    network
        The bridge and the nodes' namespaces and addresses.
    cluster_name
        ``ClusterName`` (as ``sacctmgr`` knows it).
    accounting
        Where slurmdbd listens and what is enforced.
    """

    network: BridgeNetwork = field(kw_only=True)
    cluster_name: str = field(kw_only=True, default="oceandata")
    accounting: AccountingConfig = field(kw_only=True)

    @property
    def nodes(self) -> tuple[ComputeNode, ...]:
        """The compute nodes."""
        return self.network.nodes

    @property
    def node_names(self) -> tuple[str, ...]:
        """The names of the compute nodes (``node1``, ``node2``...)."""
        return tuple(node.name for node in self.network.nodes)

    @property
    def node_addresses(self) -> dict[str, str]:
        """Node name to its address on the bridge."""
        return {node.name: node.address for node in self.network.nodes}

    @property
    def host_address(self) -> str:
        """This machine's address on the bridge (slurmctld, slurmdbd; reachable from nodes)."""
        return self.network.host_address

    def run_on(
        self, node: str, *cmd: str, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on a node, outside Slurm: in the node's namespaces, as the caller.

        For checks from a node's point of view (which addresses it reaches, what its
        ``/etc/hosts`` says); work for the cluster goes through ``sbatch``.

        Parameters
        ----------
        node
            The node's name (``node1``...).
        *cmd
            The program and its arguments.
        timeout
            Seconds allowed.

        Returns
        -------
        subprocess.CompletedProcess
            With text ``stdout`` and ``stderr`` (not checked).
        """
        by_name = {compute.name: compute for compute in self.network.nodes}
        if node not in by_name:
            raise SlurmError(f"no node {node!r}: the nodes are {', '.join(by_name)}")
        hosts = self.layout.conf.parent / "hosts"
        return subprocess.run(
            list(cmd),
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=_enter_node(by_name[node], hosts if hosts.exists() else None),
        )

    def sacctmgr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``sacctmgr -i ARGS`` (no confirmation prompt) against this cluster's slurmdbd.

        Parameters
        ----------
        *args
            The command, e.g. ``"add", "account", "a1"``.
        check
            Raise :class:`SlurmError` when it fails (``Nothing new added`` is no failure).

        Returns
        -------
        subprocess.CompletedProcess
            With text ``stdout`` and ``stderr``.
        """
        done = self.run("sacctmgr", "-i", *args, check=False)
        if check and done.returncode != 0 and "Nothing new added" not in done.stdout + done.stderr:
            raise SlurmError(
                f"sacctmgr {' '.join(args)} exited {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()}"
            )
        return done

    def add_account(self, name: str, *, description: str = "", parent: str = "root") -> None:
        """Create a Slurm account (an allocation's, say) in this cluster; no-op if it exists.

        Parameters
        ----------
        name
            The account name (what ``sbatch --account`` gives).
        description
            ``Description`` (defaults to the name).
        parent
            The parent account.
        """
        self.sacctmgr(
            "add", "account", name, f"Cluster={self.cluster_name}",
            f"Description={description or name}", "Organization=oceandata", f"Parent={parent}",
        )  # fmt: skip

    def add_user(self, user: str, account: str, *, default: bool = False) -> None:
        """Let a Unix user charge jobs to *account* (an association); no-op if it exists.

        Parameters
        ----------
        user
            The Unix user name.
        account
            An account made with :meth:`add_account`.
        default
            Make it the user's default account (the first account added always is).
        """
        args = ["add", "user", user, f"Account={account}", f"Cluster={self.cluster_name}"]
        if default:
            args.append(f"DefaultAccount={account}")
        self.sacctmgr(*args)
        if default:
            self.sacctmgr("modify", "user", user, "set", f"DefaultAccount={account}")

    def associations(self) -> list[tuple[str, str]]:
        """Return the (account, user) associations of this cluster (user empty: the account).

        Returns
        -------
        list of tuple of str
            As ``sacctmgr show associations`` lists them.
        """
        out = self.run(
            "sacctmgr", "-n", "-P", "show", "associations", f"cluster={self.cluster_name}",
            "format=Account,User",
        ).stdout  # fmt: skip
        pairs: list[tuple[str, str]] = []
        for line in out.splitlines():
            account, bar, user = line.partition("|")
            if bar:
                pairs.append((account, user))
        return pairs

    def sacct(self, job_id: int, fields: Iterable[str] = SACCT_FIELDS) -> list[dict[str, str]]:
        """Return slurmdbd's records of a job and its steps (``sacct -j ID -P -n -o ...``).

        Parameters
        ----------
        job_id
            The job id.
        fields
            The ``sacct`` fields.

        Returns
        -------
        list of dict
            One dict a line (the job, then ``.batch``, ``.0``... steps); empty when
            slurmdbd has no record yet.
        """
        names = tuple(fields)
        done = self.run("sacct", "-j", str(job_id), "-P", "-n", "-o", ",".join(names), check=False)
        rows = []
        for line in done.stdout.splitlines():
            values = line.split("|")
            if len(values) == len(names):
                rows.append(dict(zip(names, values, strict=True)))
        return rows

    def wait_for_accounting(self, job_id: int, timeout: float = 60.0) -> dict[str, str]:
        """Wait until slurmdbd has the job's final record and return it (the job's line).

        slurmctld sends a job's end to slurmdbd asynchronously: right after the job ends
        ``sacct`` may still say RUNNING.

        Parameters
        ----------
        job_id
            The job id.
        timeout
            Seconds to wait at most.

        Returns
        -------
        dict of str to str
            The job's ``sacct`` fields (:data:`SACCT_FIELDS`).
        """
        last: list[dict[str, str]] = []

        def recorded() -> bool:
            last[:] = [row for row in self.sacct(job_id) if row["JobID"] == str(job_id)]
            return bool(last) and last[0]["State"].split()[0] in FINISHED_STATES

        try:
            _wait_until(recorded, timeout, f"sacct to record job {job_id} as finished", 0.2)
        except TimeoutError as exc:
            raise SlurmError(f"{exc} (last: {last})") from exc
        return last[0]

    def completed_job_record(self, job_id: int) -> JobRecord | None:
        """Return a finished job's record from slurmdbd (plain ``sacct``).

        Parameters
        ----------
        job_id
            The job id.

        Returns
        -------
        JobRecord or None
            The record (source ``"sacct"``), or None when slurmdbd does not know the job.
        """
        for row in self.sacct(job_id):
            if row["JobID"] == str(job_id):
                return JobRecord(
                    job_id=int(job_id),
                    state=row["State"].split()[0] if row["State"] else "",
                    exit_code=row["ExitCode"],
                    elapsed_s=float(row["ElapsedRaw"]) if row["ElapsedRaw"].isdigit() else None,
                    source="sacct",
                    fields=row,
                )
        return None


def _register_cluster(cluster: SlurmCluster, timeout: float) -> None:
    """Wait until slurmdbd answers ``sacctmgr``, then add the cluster (with the root account)."""
    assert isinstance(cluster, MultiNodeSlurmCluster)
    listed: list[str] = []
    errors: list[str] = []

    def answers() -> bool:
        _check_alive(cluster._procs, cluster.layout.log)
        done = cluster.run(
            "sacctmgr", "-n", "-P", "list", "cluster", "format=Cluster", check=False, timeout=15
        )
        listed[:] = done.stdout.split()
        errors[:] = [done.stderr.strip()]
        return done.returncode == 0

    try:
        _wait_until(answers, timeout, "slurmdbd to answer sacctmgr", 0.2)
    except TimeoutError as exc:
        raise SlurmUnavailable(
            f"{exc} ({' '.join(errors)}):\n{_tail(cluster.layout.log / 'slurmdbd.log')}"
        ) from exc
    if cluster.cluster_name not in listed:
        cluster.sacctmgr("add", "cluster", cluster.cluster_name)


@contextlib.contextmanager
def multi_node_slurm(
    workdir: Path,
    nodes: int = 2,
    cpus_per_node: int = 1,
    *,
    memory_per_node_mb: int | None = None,
    enforce: str = "associations",
    cluster_name: str = "oceandata",
    timeout: float = 60.0,
    install: bool = True,
) -> Iterator[MultiNodeSlurmCluster]:
    """Run a real multi-node Slurm cluster with accounting on this machine, for the block.

    One MUNGE, one slurmctld and slurmdbd (with a private MariaDB) on the host, and one
    slurmd per node, each in its own network namespace with its own address on a private
    bridge (and its own host name and ``/etc/hosts`` listing the nodes): jobs on two nodes
    talk over the bridge as on two machines, and the host reaches them. The filesystem is
    the host's, shared by all nodes (no chroot): *workdir* and any other folder are seen
    by every node at the same path, as a parallel filesystem would be.

    Needs root (namespaces, bridge). Waits on real signals: MariaDB and slurmdbd
    listening, ``sacctmgr`` answering, ``scontrol ping`` UP, every node idle in
    ``sinfo``. On exit, even after a failed start: jobs cancelled, ``scontrol shutdown``,
    slurmd/slurmctld/slurmdbd/mariadbd/munged ended, namespaces, veth pairs and bridge
    deleted.

    Parameters
    ----------
    workdir
        Folder for every file of the cluster (configuration, logs, state, the database).
    nodes
        How many compute nodes (``node1``, ``node2``...).
    cpus_per_node
        ``CPUs`` each node declares (1: a two-worker allocation must span two nodes).
    memory_per_node_mb
        ``RealMemory`` each node declares; default: the machine's share per node.
    enforce
        ``AccountingStorageEnforce``: ``"associations"`` (default) lets a user run jobs
        only under an account they are associated with (:meth:`~MultiNodeSlurmCluster.
        add_account`, :meth:`~MultiNodeSlurmCluster.add_user`; root is, under ``root``);
        ``""`` enforces nothing.
    cluster_name
        ``ClusterName``.
    timeout
        Seconds each daemon may take to become ready.
    install
        Install the Debian packages (:data:`MULTI_NODE_PACKAGES`) when programs are missing
        and the process is root.

    Yields
    ------
    MultiNodeSlurmCluster
        The ready cluster.

    Raises
    ------
    SlurmUnavailable
        When not root, when programs are missing and cannot be installed, or when a
        daemon does not come up (with the reason and the tail of its log).
    """
    if nodes < 1 or cpus_per_node < 1:
        raise ValueError(f"need at least one node and one CPU, not {nodes} x {cpus_per_node}")
    if os.geteuid() != 0:
        raise SlurmUnavailable("a multi-node Slurm needs root (network namespaces, a bridge)")
    programs = ensure_slurm_installed(
        install=install, programs=MULTI_NODE_PROGRAMS, packages=MULTI_NODE_PACKAGES
    )
    version = slurm_version(programs["slurmctld"])
    if version[:2] < MIN_VERSION:
        raise SlurmUnavailable(
            f"Slurm {'.'.join(map(str, version))} is older than {'.'.join(map(str, MIN_VERSION))}"
        )
    longest_node = f"{_NODE_PREFIX}{nodes}"
    try:
        layout, owned_runtime = _make_layout(Path(workdir), f"{longest_node}/{longest_node}")
        layout.plugstack.write_text("")
    except OSError as exc:
        raise SlurmUnavailable(f"cannot prepare {workdir}: {exc}") from exc
    user = pwd.getpwuid(os.geteuid()).pw_name
    hardware = node_hardware(programs["slurmd"])
    memory = memory_per_node_mb or max(256, hardware.real_memory_mb // nodes)
    hardware = NodeHardware(cpus=cpus_per_node, real_memory_mb=memory)
    ip = programs["ip"]
    cluster: SlurmCluster | None = None
    network: BridgeNetwork | None = None
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        try:
            remove_stale_networks(ip)
            network = create_network(nodes, cpus_per_node, memory, ip)
            hosts = _write_hosts(layout, network)
            procs["munged"] = _start_munged(layout, programs["munged"], timeout)
            db_port, db_password = _start_mariadb(layout, programs, procs, user, timeout)
            accounting = AccountingConfig(
                host=network.host_address, port=free_port(), enforce=enforce
            )
            _start_slurmdbd(
                layout, programs, procs, dbd_addr=accounting.host, dbd_port=accounting.port,
                db_port=db_port, db_password=db_password, user=user, timeout=timeout,
            )  # fmt: skip
            cluster = _start_daemons(
                layout, programs, procs, longest_node, hardware, user, version, timeout,
                network=network, accounting=accounting, cluster_name=cluster_name,
                before_controller=lambda c: _register_cluster(c, timeout),
                hosts=hosts,
            )  # fmt: skip
        except (OSError, SlurmError, subprocess.SubprocessError) as exc:
            raise SlurmUnavailable(
                f"Slurm did not start: {exc}\n{_tail(layout.log / 'slurmctld.log')}"
            ) from exc
        assert isinstance(cluster, MultiNodeSlurmCluster)
        yield cluster
    finally:
        if cluster is not None:
            _shutdown(cluster)
        else:
            for name in [n for n in procs if n.startswith("slurmd")] + ["slurmctld"]:
                _terminate(procs.get(name))
            _stop_support_daemons(procs)
        if network is not None:
            remove_network(network, ip)
        if owned_runtime is not None:
            shutil.rmtree(owned_runtime, ignore_errors=True)
