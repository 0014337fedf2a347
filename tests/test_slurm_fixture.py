"""The single-node Slurm of :mod:`oceandata.testing.slurm`: real daemons, real jobs.

Outside CI these tests are skipped, with the reason, where Slurm can neither be found nor
installed (not root) or does not start; with ``CI=true`` that is a failure. The cluster
is shared by the module's tests; one test starts a second one beside it and checks that
stopping it leaves nothing running.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oceandata.testing.slurm import (
    FINISHED_STATES,
    NodeHardware,
    SlurmCluster,
    SlurmLayout,
    SlurmUnavailable,
    in_ci,
    parse_duration,
    parse_scontrol_record,
    render_slurm_conf,
    single_node_slurm,
)


def _skip_or_fail(reason: str) -> None:
    """Skip with *reason*, or fail in CI, where Slurm must be there."""
    if in_ci():
        pytest.fail(f"Slurm is required in CI: {reason}", pytrace=False)
    pytest.skip(f"no single-node Slurm here: {reason}")


@contextlib.contextmanager
def _cluster_or_skip(workdir: Path) -> Iterator[SlurmCluster]:
    """Enter :func:`single_node_slurm`, turning :class:`SlurmUnavailable` into skip/fail."""
    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(single_node_slurm(workdir))
        except SlurmUnavailable as exc:
            _skip_or_fail(str(exc))
        yield cluster


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A running single-node cluster for this module."""
    with _cluster_or_skip(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


def _pid_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# ---------------------------------------------------------------- without daemons


def test_parse_duration() -> None:
    assert parse_duration("00:00:05") == 5
    assert parse_duration("01:02") == 62
    assert parse_duration("2-01:00:00") == 2 * 86400 + 3600
    assert parse_duration("00:01.500") == 1.5
    assert parse_duration("UNLIMITED") is None
    assert parse_duration("") is None


def test_parse_scontrol_record() -> None:
    line = (
        "JobId=7 JobName=wrap UserId=root(0) JobState=COMPLETED Reason=None "
        "ExitCode=0:0 RunTime=00:00:01 TimeLimit=00:01:00 CPUs/Task=1 MinMemoryNode=100M"
    )
    fields = parse_scontrol_record(line)
    assert fields["JobId"] == "7"
    assert fields["JobState"] == "COMPLETED"
    assert fields["ExitCode"] == "0:0"
    assert fields["CPUs/Task"] == "1"
    assert fields["MinMemoryNode"] == "100M"


def test_render_slurm_conf_keeps_everything_in_the_workdir(tmp_path: Path) -> None:
    layout = SlurmLayout(workdir=tmp_path, runtime=tmp_path / "run")
    hardware = NodeHardware(cpus=2, real_memory_mb=20000, topology={"CoresPerSocket": 2})
    text = render_slurm_conf(
        layout, node="vm", hardware=hardware, ctld_port=7001, slurmd_port=7002, user="root"
    )
    conf = dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert conf["SlurmctldHost"] == "localhost(127.0.0.1)"
    assert conf["SlurmctldPort"] == "7001"
    assert conf["SlurmdPort"] == "7002"
    assert conf["AuthInfo"] == f"socket={tmp_path / 'run' / 'munge.socket'}"
    assert conf["AccountingStorageType"] == "accounting_storage/none"
    assert conf["JobCompType"] == "jobcomp/filetxt"
    assert conf["MinJobAge"] == "3600"
    assert conf["DefMemPerCPU"] == "1024"
    for key in ("StateSaveLocation", "SlurmdSpoolDir", "SlurmctldLogFile", "JobCompLoc"):
        assert conf[key].startswith(str(tmp_path)), key
    assert "NodeName=vm NodeAddr=127.0.0.1 CPUs=2 CoresPerSocket=2 RealMemory=20000" in text
    assert "PartitionName=debug Nodes=vm Default=YES MaxTime=INFINITE State=UP" in text


# ---------------------------------------------------------------- real cluster


@pytest.mark.slow
def test_cluster_is_up_and_private(slurm: SlurmCluster) -> None:
    assert slurm.version >= (20, 11)
    assert slurm.ping()
    assert slurm.node_state() == "idle" or slurm.queue()
    env = slurm.env()
    assert env["SLURM_CONF"] == str(slurm.slurm_conf)
    assert slurm.slurm_conf.is_relative_to(slurm.layout.workdir)
    for name in ("sbatch", "squeue", "sacct", "scontrol", "scancel", "slurmctld", "munged"):
        assert slurm.programs[name].is_file(), name
    partitions = slurm.run("sinfo", "-h", "-o", "%P %a %l").stdout.split()
    assert partitions == ["debug*", "up", "infinite"]


@pytest.mark.slow
def test_hello_job_completes_with_its_output(slurm: SlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "hello.out"
    job = slurm.sbatch("--output", str(out), "--wrap", "echo hello; hostname")
    record = slurm.wait_for_job(job, timeout=120)
    assert record.state == "COMPLETED"
    assert record.exit_code == "0:0"
    assert record.succeeded
    assert out.read_text().splitlines() == ["hello", socket.gethostname()]


@pytest.mark.slow
def test_job_with_resources(slurm: SlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "res.out"
    job = slurm.sbatch(
        "--cpus-per-task=1", "--mem=100M", "--time=00:01:00", "--output", str(out),
        "--wrap", "echo $SLURM_CPUS_PER_TASK $SLURM_MEM_PER_NODE",
    )  # fmt: skip
    record = slurm.wait_for_job(job, timeout=120)
    assert record.succeeded, record
    assert record.fields["TimeLimit"] == "00:01:00"
    assert record.fields["MinMemoryNode"] == "100M"
    assert record.fields["CPUs/Task"] == "1"
    assert out.read_text().split() == ["1", "100"]


@pytest.mark.slow
def test_failing_job_reports_its_exit_code(slurm: SlurmCluster, tmp_path: Path) -> None:
    job = slurm.sbatch("--output", str(tmp_path / "fail.out"), "--wrap", "exit 3")
    record = slurm.wait_for_job(job, timeout=120)
    assert record.state == "FAILED"
    assert record.exit_code == "3:0"
    assert not record.succeeded


@pytest.mark.slow
def test_scancel_ends_a_running_job_cancelled(slurm: SlurmCluster, tmp_path: Path) -> None:
    job = slurm.sbatch("--output", str(tmp_path / "sleep.out"), "--wrap", "sleep 600")
    deadline = time.monotonic() + 60
    while (record := slurm.job_record(job)) is None or record.state != "RUNNING":
        assert record is None or record.state == "PENDING", record
        assert time.monotonic() < deadline, f"job {job} not running after 60 s: {record}"
        time.sleep(0.1)
    assert job in slurm.queue()
    slurm.scancel(job)
    record = slurm.wait_for_job(job, timeout=60)
    assert record.state == "CANCELLED"
    assert job not in slurm.queue()


@pytest.mark.slow
def test_ten_jobs_at_once_all_complete(slurm: SlurmCluster, tmp_path: Path) -> None:
    started = time.monotonic()
    jobs = [
        slurm.sbatch("--output", str(tmp_path / f"job{i}.out"), "--wrap", f"echo job {i}")
        for i in range(10)
    ]
    assert len(set(jobs)) == 10
    records = slurm.wait_for_jobs(jobs, timeout=180)
    assert time.monotonic() - started < 180
    assert sorted(records) == sorted(jobs)
    assert all(record.succeeded for record in records.values()), records
    for i in range(10):
        assert (tmp_path / f"job{i}.out").read_text() == f"job {i}\n"
    assert not set(jobs) & set(slurm.queue())


@pytest.mark.slow
def test_finished_jobs_are_in_the_completion_log(slurm: SlurmCluster, tmp_path: Path) -> None:
    job = slurm.sbatch("--output", str(tmp_path / "log.out"), "--wrap", "sleep 1")
    live = slurm.wait_for_job(job, timeout=120)
    assert live.source == "scontrol"
    assert live.elapsed_s is not None and live.elapsed_s >= 1
    # the controller forgets a job after MinJobAge; the completion log keeps it
    logged = slurm.completed_job_record(job)
    assert logged is not None
    assert (logged.source, logged.state, logged.exit_code) == ("jobcomp", "COMPLETED", "0:0")
    assert logged.elapsed_s is not None and logged.elapsed_s >= 1
    assert logged.state in FINISHED_STATES
    # without slurmdbd plain sacct has nothing to read
    plain = slurm.run("sacct", "-j", str(job), check=False)
    assert plain.returncode != 0 or not plain.stdout.strip()
    assert slurm.job_record(10**6) is None


@pytest.mark.slow
def test_stopping_leaves_nothing_running(tmp_path: Path) -> None:
    # a second cluster beside the module's, in a folder too deep for unix socket paths
    workdir = tmp_path / ("deep" * 20) / "second"
    with _cluster_or_skip(workdir) as second:
        runtime = second.layout.runtime
        assert not runtime.is_relative_to(workdir)
        assert len(str(second.layout.munge_socket)) < 108
        daemons = {name: proc.pid for name, proc in second._procs.items()}
        assert set(daemons) == {"munged", "slurmctld", "slurmd"}
        job = second.sbatch("--output", str(tmp_path / "left.out"), "--wrap", "sleep 600")
        deadline = time.monotonic() + 60
        while (record := second.job_record(job)) is None or record.state != "RUNNING":
            assert time.monotonic() < deadline, record
            time.sleep(0.1)
    for name, pid in daemons.items():
        assert not _pid_alive(pid), f"{name} ({pid}) still runs"
    assert not runtime.exists()
    assert (tmp_path / "left.out").exists()
    marker = f"SLURM_CONF={second.slurm_conf}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes() and _pid_alive(int(entry.name)):
                    cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                    pytest.fail(f"left running: {entry.name} {cmdline!r}")
