"""The multi-node Slurm of :mod:`oceandata.testing.slurm`: nodes that are really apart.

:func:`multi_node_slurm` runs one slurmd per node, each in its own network namespace with
its own address on a private bridge, and slurmdbd with a private MariaDB. These tests
check what later work relies on: 1-CPU nodes, so two workers land on two nodes; jobs on
different nodes talk over the bridge (a dask scheduler on one node, workers on another);
``sacct`` is the real accounting source (run time, CPUs, nodes, account); and nothing is
left behind, not even after a start that fails halfway.

Outside CI these tests are skipped, with the reason, where the cluster cannot start (not
root, programs missing); with ``CI=true`` that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_helpers import multi_node_or_skip, skip_or_fail

from oceandata.testing import slurm as slurm_module
from oceandata.testing.slurm import (
    AccountingConfig,
    ComputeNode,
    MultiNodeSlurmCluster,
    NodeHardware,
    SlurmError,
    SlurmLayout,
    SlurmUnavailable,
    multi_node_slurm,
    render_slurm_conf,
    render_slurmdbd_conf,
)

#: seconds the module's cluster took from the call to ready (filled by the fixture)
_START: dict[str, float] = {}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiNodeSlurmCluster]:
    """Two 1-CPU nodes with accounting, shared by the module's tests."""
    started = time.monotonic()
    with multi_node_or_skip(tmp_path_factory.mktemp("mn")) as running:
        _START["ready_s"] = time.monotonic() - started
        yield running


def _pid_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def _wait_running(cluster: MultiNodeSlurmCluster, *jobs: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        records = {job: cluster.job_record(job) for job in jobs}
        if all(r is not None and r.state == "RUNNING" for r in records.values()):
            return
        assert time.monotonic() < deadline, f"not all running after {timeout} s: {records}"
        time.sleep(0.1)


def _python(code: str) -> str:
    """A ``--wrap`` command running *code* with this interpreter."""
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


# ---------------------------------------------------------------- without daemons


def test_render_multi_node_conf(tmp_path: Path) -> None:
    layout = SlurmLayout(workdir=tmp_path, runtime=tmp_path / "run")
    nodes = [
        ComputeNode("node1", "10.200.1.11", "odslurmabn1", cpus=1, real_memory_mb=900),
        ComputeNode("node2", "10.200.1.12", "odslurmabn2", cpus=1, real_memory_mb=900),
    ]
    text = render_slurm_conf(
        layout,
        node="node2",
        hardware=NodeHardware(cpus=1, real_memory_mb=900),
        ctld_port=7001,
        slurmd_port=7002,
        user="root",
        compute_nodes=nodes,
        controller_addr="10.200.1.1",
        accounting=AccountingConfig(host="10.200.1.1", port=7003),
    )
    conf = dict(
        line.split("=", 1)
        for line in text.splitlines()
        if line and not line.startswith(("#", "NodeName"))
    )
    assert conf["SlurmctldHost"] == "localhost(10.200.1.1)"
    assert conf["AccountingStorageType"] == "accounting_storage/slurmdbd"
    assert conf["AccountingStorageHost"] == "10.200.1.1"
    assert conf["AccountingStoragePort"] == "7003"
    assert conf["AccountingStoragePass"] == str(layout.munge_socket)
    assert conf["AccountingStorageEnforce"] == "associations"
    assert conf["SlurmdSpoolDir"] == str(layout.spool / "%n")
    assert conf["SlurmdLogFile"] == str(layout.log / "slurmd-%n.log")
    assert "NodeName=node1 NodeAddr=10.200.1.11 NodeHostname=node1 CPUs=1 RealMemory=900" in text
    assert "NodeName=node2 NodeAddr=10.200.1.12 NodeHostname=node2 CPUs=1 RealMemory=900" in text
    assert "PartitionName=debug Nodes=node1,node2 Default=YES" in text
    dbd = render_slurmdbd_conf(
        layout, dbd_addr="10.200.1.1", dbd_port=7003, db_port=7004, db_password="pw", user="root"
    )
    assert "DbdPort=7003" in dbd and "StoragePort=7004" in dbd and "StoragePass=pw" in dbd
    assert f"AuthInfo=socket={layout.munge_socket}" in dbd


# ---------------------------------------------------------------- real cluster


@pytest.mark.slurm
@pytest.mark.slow
def test_cluster_is_up_with_two_idle_one_cpu_nodes(cluster: MultiNodeSlurmCluster) -> None:
    assert _START["ready_s"] < 60, _START
    assert cluster.ping()
    assert cluster.node_names == ("node1", "node2")
    assert cluster.node_states() == {"node1": "idle", "node2": "idle"}
    addresses = cluster.node_addresses
    assert len(set(addresses.values())) == 2
    for name, address in addresses.items():
        record = cluster.run("scontrol", "show", "node", "-o", name).stdout
        assert f"NodeAddr={address}" in record
        assert "CPUTot=1 " in record
    assert set(cluster.network.namespaces) <= _netns()
    assert f"{cluster.network.bridge}:" in _links() or f"{cluster.network.bridge}@" in _links()
    # the host reaches every node over the bridge (slurmd's port), and a node the other
    for address in addresses.values():
        socket.create_connection((address, cluster.slurmd_port), timeout=5).close()
    seen = cluster.run_on(
        "node2", sys.executable, "-c",
        "import socket; print(socket.gethostname(), socket.gethostbyname('node1')); "
        f"socket.create_connection(({addresses['node1']!r}, {cluster.slurmd_port}), timeout=5)",
    )  # fmt: skip
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout.split() == ["node2", addresses["node1"]]
    with pytest.raises(SlurmError, match="no node"):
        cluster.run_on("node9", "true")


@pytest.mark.slurm
@pytest.mark.slow
def test_two_one_cpu_jobs_run_at_once_on_different_nodes(
    cluster: MultiNodeSlurmCluster, tmp_path: Path
) -> None:
    # each job says where it is, then waits (bounded) until the other one has said so too
    script = (
        "hostname > {me}.host; hostname -I > {me}.ip; touch {me}.here; "
        "for i in $(seq 100); do [ -e {other}.here ] && exit 0; sleep 0.1; done; exit 7"
    )
    a, b = tmp_path / "a", tmp_path / "b"
    jobs = [
        cluster.sbatch("--output", f"{a}.out", "--wrap", script.format(me=a, other=b)),
        cluster.sbatch("--output", f"{b}.out", "--wrap", script.format(me=b, other=a)),
    ]
    records = cluster.wait_for_jobs(jobs, timeout=60)
    assert all(r.succeeded for r in records.values()), records  # both ran at the same time
    hosts = {a.with_suffix(".host").read_text().strip(), b.with_suffix(".host").read_text().strip()}
    assert hosts == {"node1", "node2"}
    for me in (a, b):
        host = me.with_suffix(".host").read_text().strip()
        assert me.with_suffix(".ip").read_text().split() == [cluster.node_addresses[host]]
    rows = [cluster.wait_for_accounting(job) for job in jobs]
    assert sorted(row["NodeList"] for row in rows) == ["node1", "node2"]
    assert [row["AllocCPUS"] for row in rows] == ["1", "1"]


@pytest.mark.slurm
@pytest.mark.slow
def test_two_cpus_need_two_nodes(cluster: MultiNodeSlurmCluster, tmp_path: Path) -> None:
    # two CPUs on one node: no node has them, so sbatch refuses (or the job could never run)
    try:
        job = cluster.sbatch(
            "--nodes=1",
            "--cpus-per-task=2",
            "--output",
            str(tmp_path / "big.out"),
            "--wrap",
            "true",
        )
    except SlurmError as exc:
        assert "configuration is not available" in str(exc), exc
    else:
        time.sleep(1)  # it must not start: check it stays pending, then drop it
        record = cluster.job_record(job)
        assert record is not None and record.state == "PENDING", record
        cluster.scancel(job)
    out = tmp_path / "span.out"
    job = cluster.sbatch("--nodes=2", "--ntasks=2", "--output", str(out), "--wrap", "srun hostname")
    assert cluster.wait_for_job(job, timeout=60).succeeded
    assert sorted(out.read_text().split()) == ["node1", "node2"]
    row = cluster.wait_for_accounting(job)
    assert row["AllocCPUS"] == "2", row
    # the srun step ran on both nodes; its record names them (the job's own line may name
    # only the batch host when slurmdbd got the job's start before its allocation settled)
    steps = [r for r in cluster.sacct(job) if r["JobID"] == f"{job}.0"]
    assert [r["NodeList"] for r in steps] == ["node[1-2]"], cluster.sacct(job)


_SERVER = """
import socket, pathlib
server = socket.create_server(("0.0.0.0", 0))
pathlib.Path({port_file!r}).write_text(str(server.getsockname()[1]))
peers = []
for _ in range(2):
    conn, (peer, _port) = server.accept()
    with conn:
        data = conn.recv(100).decode()
        conn.sendall(("hello " + data).encode())
        peers.append(peer + " " + data)
print("\\n".join(peers))
"""

_CLIENT = """
import socket, pathlib, time
port_file = pathlib.Path({port_file!r})
for _ in range(300):
    if port_file.exists() and port_file.read_text():
        break
    time.sleep(0.1)
with socket.create_connection(("node1", int(port_file.read_text())), timeout=10) as conn:
    conn.sendall(socket.gethostname().encode())
    print(conn.recv(100).decode())
"""


@pytest.mark.slurm
@pytest.mark.slow
def test_a_server_on_one_node_is_reached_from_the_other_and_the_host(
    cluster: MultiNodeSlurmCluster, tmp_path: Path
) -> None:
    port_file = tmp_path / "port"
    server = cluster.sbatch(
        "--nodelist=node1", "--output", str(tmp_path / "server.out"),
        "--wrap", _python(_SERVER.format(port_file=str(port_file))),
    )  # fmt: skip
    client = cluster.sbatch(
        "--nodelist=node2", "--output", str(tmp_path / "client.out"),
        "--wrap", _python(_CLIENT.format(port_file=str(port_file))),
    )  # fmt: skip
    assert cluster.wait_for_job(client, timeout=60).succeeded, (tmp_path / "client.out").read_text()
    # node names resolve inside jobs (the nodes' /etc/hosts); the host uses the address
    assert (tmp_path / "client.out").read_text().strip() == "hello node2"
    with socket.create_connection(
        (cluster.node_addresses["node1"], int(port_file.read_text())), timeout=10
    ) as conn:
        conn.sendall(b"host")
        assert conn.recv(100) == b"hello host"
    assert cluster.wait_for_job(server, timeout=60).succeeded
    peers = (tmp_path / "server.out").read_text().splitlines()
    assert peers == [f"{cluster.node_addresses['node2']} node2", f"{cluster.host_address} host"]


@pytest.mark.slurm
@pytest.mark.slow
def test_sacct_records_what_the_job_did(cluster: MultiNodeSlurmCluster, tmp_path: Path) -> None:
    started = time.monotonic()
    job = cluster.sbatch("--output", str(tmp_path / "s.out"), "--wrap", "sleep 3")
    assert cluster.wait_for_job(job, timeout=60).succeeded
    wall = time.monotonic() - started
    row = cluster.wait_for_accounting(job)
    assert row["State"] == "COMPLETED" and row["ExitCode"] == "0:0"
    assert 3 <= int(row["ElapsedRaw"]) <= wall + 1, (row, wall)
    assert row["AllocCPUS"] == "1"
    assert row["NodeList"] in cluster.node_names
    assert row["Account"] == "root"
    # the spec's query, as later parts charge from it
    out = cluster.run(
        "sacct", "-j", str(job), "-P", "-n", "-o", "JobID,State,ElapsedRaw,AllocCPUS,NodeList"
    ).stdout.splitlines()
    assert out[0] == f"{job}|COMPLETED|{row['ElapsedRaw']}|1|{row['NodeList']}"
    # a job the controller no longer had would come from slurmdbd
    record = cluster.completed_job_record(job)
    assert record is not None and (record.source, record.state) == ("sacct", "COMPLETED")
    assert record.elapsed_s == int(row["ElapsedRaw"])


@pytest.mark.slurm
@pytest.mark.slow
def test_jobs_are_charged_to_an_allocation_account(
    cluster: MultiNodeSlurmCluster, tmp_path: Path
) -> None:
    user = pwd.getpwuid(os.geteuid()).pw_name
    cluster.add_account("alloc-t1", description="test allocation 1")
    cluster.add_account("alloc-t1")  # again: no-op
    cluster.add_user(user, "alloc-t1")
    assert ("alloc-t1", user) in cluster.associations()
    job = cluster.sbatch(
        "--account=alloc-t1", "--output", str(tmp_path / "a.out"), "--wrap", "true"
    )
    assert cluster.wait_for_job(job, timeout=60).succeeded
    assert cluster.wait_for_accounting(job)["Account"] == "alloc-t1"
    # associations are enforced: an account the user is not in is refused at submission
    cluster.add_account("alloc-t2")
    with pytest.raises(SlurmError, match="Invalid account"):
        cluster.sbatch("--account=alloc-t2", "--wrap", "true")
    with pytest.raises(SlurmError, match="Invalid account"):
        cluster.sbatch("--account=no-such-account", "--wrap", "true")


@pytest.mark.slurm
@pytest.mark.slow
def test_stopping_leaves_nothing_behind(tmp_path: Path) -> None:
    before = _netns()
    with multi_node_or_skip(tmp_path / "second", nodes=2) as second:
        network = second.network
        daemons = {name: proc.pid for name, proc in second._procs.items()}
        assert set(daemons) == {
            "munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd@node1", "slurmd@node2",
        }  # fmt: skip
        job = second.sbatch("--output", str(tmp_path / "left.out"), "--wrap", "sleep 600")
        _wait_running(second, job)
    for name, pid in daemons.items():
        assert not _pid_alive(pid), f"{name} ({pid}) still runs"
    assert not set(network.namespaces) & _netns()
    assert _netns() <= before
    links = _links()
    assert network.bridge not in links
    assert not any(network.veth(node) in links for node in network.nodes)
    marker = f"SLURM_CONF={second.slurm_conf}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes() and _pid_alive(int(entry.name)):
                    cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                    pytest.fail(f"left running: {entry.name} {cmdline!r}")


@pytest.mark.slurm
@pytest.mark.slow
def test_a_start_failing_halfway_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}
    original = slurm_module._register_cluster

    def register_then_fail(cluster: MultiNodeSlurmCluster, timeout: float) -> None:
        original(cluster, timeout)  # slurmdbd, MariaDB, MUNGE and the network are up
        seen["pids"] = {name: proc.pid for name, proc in cluster._procs.items()}
        seen["network"] = cluster.network
        raise SlurmUnavailable("injected failure after slurmdbd came up")

    monkeypatch.setattr(slurm_module, "_register_cluster", register_then_fail)
    with pytest.raises(SlurmUnavailable) as failure:
        with multi_node_slurm(tmp_path / "broken"):
            pytest.fail("must not start")
    if "pids" not in seen:
        skip_or_fail(f"the cluster did not get as far as slurmdbd: {failure.value}")
    assert "injected failure" in str(failure.value)
    assert set(seen["pids"]) == {"munged", "mariadbd", "slurmdbd"}  # type: ignore[arg-type]
    for name, pid in seen["pids"].items():  # type: ignore[attr-defined]
        assert not _pid_alive(pid), f"{name} ({pid}) still runs"
    network = seen["network"]
    assert not set(network.namespaces) & _netns()  # type: ignore[attr-defined]
    assert network.bridge not in _links()  # type: ignore[attr-defined]


@pytest.mark.slurm
@pytest.mark.slow
def test_dask_workers_on_both_nodes_compute_together(
    cluster: MultiNodeSlurmCluster, tmp_path: Path
) -> None:
    # dask-jobqueue's layout: the scheduler where the client is (here the host, on the
    # bridge), each worker a 1-CPU Slurm job; data moves worker to worker over the bridge
    distributed = pytest.importorskip("distributed")
    dask_cli = Path(sys.executable).with_name("dask")
    with (
        distributed.LocalCluster(
            n_workers=0, host=cluster.host_address, scheduler_port=0, dashboard_address=None
        ) as local,
        distributed.Client(local) as client,
    ):
        address = local.scheduler_address
        command = f"{dask_cli} worker {address} --nthreads 1 --no-dashboard"
        workers = [
            cluster.sbatch("--output", str(tmp_path / f"worker{i}.out"), "--wrap", command)
            for i in (1, 2)
        ]
        try:
            client.wait_for_workers(2, timeout=60)
            hosts = client.run(socket.gethostname)
            assert sorted(hosts.values()) == ["node1", "node2"]
            by_node = {host: worker for worker, host in hosts.items()}
            for name, worker in by_node.items():
                assert worker.startswith(f"tcp://{cluster.node_addresses[name]}:")
            made = client.submit(lambda: list(range(1000)), workers=[by_node["node1"]])
            total = client.submit(sum, made, workers=[by_node["node2"]])
            assert total.result(timeout=30) == sum(range(1000))
            assert client.who_has(total)[total.key] == (by_node["node2"],)
        finally:
            cluster.scancel(*workers)
            cluster.wait_for_jobs(workers, timeout=60)


@pytest.mark.slurm
def test_networks_of_dead_runs_are_removed(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        skip_or_fail("network namespaces need root")
    dead = subprocess.Popen(["true"])  # a process id that no longer runs
    dead.wait()
    tag = f"{slurm_module._base36(dead.pid)}z"
    namespace, bridge = f"odslurm{tag}n1", f"odslurmbr{tag}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    mine = f"odslurm{slurm_module._base36(os.getpid())}zn1"  # a live owner: kept
    subprocess.run(["ip", "netns", "add", mine], check=True)
    try:
        removed = slurm_module.remove_stale_networks()
        assert namespace in removed and bridge in removed
        assert mine not in removed
        assert namespace not in _netns() and f"{bridge}:" not in _links()
        assert mine in _netns()
    finally:
        subprocess.run(["ip", "netns", "del", mine])
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
