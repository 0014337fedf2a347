"""A real, throw-away single-node Slurm cluster for the tests and for development.

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
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import re
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


def ensure_slurm_installed(install: bool = True, timeout: float = 900.0) -> dict[str, Path]:
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

    Returns
    -------
    dict of str to Path
        Program name to absolute path, for all of :data:`REQUIRED_PROGRAMS`.

    Raises
    ------
    SlurmUnavailable
        When programs are still missing (with the names and the reason).
    """
    found = find_programs()
    missing = sorted(name for name, where in found.items() if where is None)
    if not missing:
        return {name: where for name, where in found.items() if where is not None}
    if not install:
        raise SlurmUnavailable(f"Slurm programs missing: {', '.join(missing)} (installing is off)")
    if os.geteuid() != 0:
        raise SlurmUnavailable(
            f"Slurm programs missing: {', '.join(missing)}; as root run scripts/install-slurm.sh "
            f"(apt-get install {' '.join(DEBIAN_PACKAGES)})"
        )
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"Slurm programs missing: {', '.join(missing)}, and no apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install_cmd = [
        "apt-get", "install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=300", *DEBIAN_PACKAGES,
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
        raise SlurmUnavailable(
            f"apt-get install {' '.join(DEBIAN_PACKAGES)} failed: {exc}"
        ) from exc
    if done.returncode != 0:
        raise SlurmUnavailable(
            f"apt-get install {' '.join(DEBIAN_PACKAGES)} failed "
            f"(exit {done.returncode}): {done.stderr.strip()[-800:]}"
        )
    found = find_programs()
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


def render_slurm_conf(
    layout: SlurmLayout,
    *,
    node: str,
    hardware: NodeHardware,
    ctld_port: int,
    slurmd_port: int,
    user: str,
    cluster_name: str = "oceandata",
) -> str:
    """Return the text of ``slurm.conf`` for a single-node cluster.

    Parameters
    ----------
    layout
        Where the cluster's files live.
    node
        ``NodeName`` (``hostname -s``); it is reached at 127.0.0.1.
    hardware
        CPUs and memory of the node.
    ctld_port, slurmd_port
        ``SlurmctldPort`` and ``SlurmdPort``.
    user
        ``SlurmUser`` and ``SlurmdUser`` (the user running the daemons, root in CI).
    cluster_name
        ``ClusterName``.

    Returns
    -------
    str
        The configuration text.
    """
    topo = "".join(f" {key}={value}" for key, value in hardware.topology.items())
    log = layout.log
    lines = [
        "# Written by oceandata.testing.slurm: a throw-away single-node cluster.",
        f"ClusterName={cluster_name}",
        "SlurmctldHost=localhost(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        f"SlurmUser={user}",
        f"SlurmdUser={user}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={layout.munge_socket}",
        f"StateSaveLocation={layout.state}",
        f"SlurmdSpoolDir={layout.spool}",
        f"SlurmctldPidFile={log / 'slurmctld.pid'}",
        f"SlurmdPidFile={log / 'slurmd.pid'}",
        f"SlurmctldLogFile={log / 'slurmctld.log'}",
        f"SlurmdLogFile={log / 'slurmd.log'}",
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
        # no slurmdbd: no accounting storage; `sacct -c` reads the completion log instead
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/linux",
        "JobCompType=jobcomp/filetxt",
        f"JobCompLoc={layout.jobcomp}",
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={hardware.cpus}{topo} "
        f"RealMemory={hardware.real_memory_mb} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP",
    ]
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

    def node_state(self) -> str:
        """Return the node's state as ``sinfo -h -N -o %t`` prints it (``idle``, ``down*``...).

        Returns
        -------
        str
            The short state, empty when ``sinfo`` fails.
        """
        done = self.run("sinfo", "-h", "-N", "-n", self.node, "-o", "%t", check=False)
        return done.stdout.strip().splitlines()[0].strip() if done.stdout.strip() else ""

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


def _start(name: str, cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a daemon in the foreground of its own session, output appended to *log*."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_parent_death_signal(),
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


def _daemons_ready(cluster: SlurmCluster, timeout: float) -> None:
    """Wait until ``scontrol ping`` is UP and the node is idle (resuming it if down/drained)."""
    procs = cluster._procs
    log = cluster.layout.log

    def alive(name: str) -> None:
        proc = procs.get(name)
        if proc is not None and proc.poll() is not None:
            raise SlurmUnavailable(
                f"{name} exited with {proc.returncode}:\n{_tail(log / f'{name}.log')}"
                f"\n{_tail(log / f'{name}.out')}"
            )

    def ctld_up() -> bool:
        alive("slurmctld")
        return cluster.ping()

    _wait_until(ctld_up, timeout, "scontrol ping to report slurmctld UP")
    last_resume = [0.0]

    def node_idle() -> bool:
        alive("slurmctld")
        alive("slurmd")
        state = cluster.node_state()
        if state in ("idle", "mix", "alloc"):
            return True
        now = time.monotonic()
        if state.startswith(("down", "drain", "drng")) and not state.endswith("*"):
            if now - last_resume[0] > 2.0:
                last_resume[0] = now
                cluster.run(
                    "scontrol", "update", f"nodename={cluster.node}", "state=resume",
                    check=False,
                )  # fmt: skip
        return False

    _wait_until(node_idle, timeout, f"node {cluster.node} to be idle in sinfo", interval=0.2)


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
    for name in ("slurmd", "slurmctld"):
        proc = procs.get(name)
        if proc is None:
            continue
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        _terminate(proc)
    for pid in _stray_slurmstepds(cluster.layout.conf):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    _terminate(procs.get("munged"))


def _start_daemons(
    layout: SlurmLayout,
    programs: dict[str, Path],
    procs: dict[str, subprocess.Popen[bytes]],
    node: str,
    hardware: NodeHardware,
    user: str,
    version: tuple[int, ...],
    timeout: float,
) -> SlurmCluster:
    """Start munged, slurmctld and slurmd (into *procs*) and wait until they are ready.

    A port taken by someone else between :func:`free_port` and the daemon's bind is
    retried with new ports, twice at most.
    """
    procs["munged"] = _start_munged(layout, programs["munged"], timeout)
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
            )
        )
        cluster = SlurmCluster(
            layout=layout,
            programs=programs,
            node=node,
            partition=PARTITION,
            version=version,
            ctld_port=ctld_port,
            slurmd_port=slurmd_port,
            _procs=procs,
        )
        env = cluster.env()
        conf = str(layout.conf)
        procs["slurmctld"] = _start(
            "slurmctld",
            [str(programs["slurmctld"]), "-D", "-f", conf],
            env,
            layout.log / "slurmctld.out",
        )
        procs["slurmd"] = _start(
            "slurmd",
            [str(programs["slurmd"]), "-D", "-f", conf, "-N", node],
            env,
            layout.log / "slurmd.out",
        )
        try:
            _daemons_ready(cluster, timeout)
            return cluster
        except (SlurmUnavailable, TimeoutError) as exc:
            logs = "\n".join(
                _tail(layout.log / name, 40)
                for name in ("slurmctld.log", "slurmctld.out", "slurmd.log", "slurmd.out")
            )
            for name in ("slurmd", "slurmctld"):
                _terminate(procs.pop(name, None))
            if "Address already in use" in logs and attempt < 2:
                # another cluster took a port between our choice and the bind: new ports,
                # fresh logs (the failed attempt's are kept beside them)
                for name in ("slurmctld.log", "slurmctld.out", "slurmd.log", "slurmd.out"):
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
