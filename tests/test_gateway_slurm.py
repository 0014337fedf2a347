"""Gateway clusters on Slurm: ``hub up --backend slurm`` against the multi-node fixture.

The scheduler and each worker of a dask-gateway cluster are Slurm jobs submitted as the
user's Unix account (``dask-gateway-jobqueue-launcher`` through ``sudo``) under the
Slurm account of the user's allocation (or the configured one); core-hours are charged
from ``sacct``. One three-node Slurm (1 CPU a node: the scheduler takes one, two 1-core
workers need the other two) and one hub serve the module.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from oceandata.errors import UsageError
from oceandata.hub.gateway import SLURM_JOB_PREFIX, parse_sacct_usage
from oceandata.hub.launcher import backend_settings
from tests.hub_helpers import (
    Hub,
    HubClient,
    admin_client,
    new_user,
    reachable_by_accounts,
    running_hub,
    wait_for_service,
)
from tests.slurm_helpers import multi_node_or_skip

#: the configured Slurm account (users without an allocation's account run there)
ACCOUNT = "oceandata"
#: measured figures, printed at the end of the module (pytest -s)
FIGURES: dict[str, float] = {}
#: clusters of earlier tests that later ones look back at
CLUSTERS: dict[str, str] = {}


def _hub_up(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oceandata.cli", "hub", "up", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_backend_choice_is_refused_in_one_line_when_wrong_or_slurm_unreachable(
        tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    data = tmp_path / "var"
    with pytest.raises(UsageError, match=r"^--backend 'kubernetes' is not a backend: give "
                                         r"local or slurm$"):
        backend_settings("kubernetes", environ=env)
    with pytest.raises(UsageError, match=r"nowhere\.conf is not a file"):
        backend_settings("slurm", environ={**env, "SLURM_CONF": str(tmp_path / "nowhere.conf")})
    # a slurm.conf whose controller does not answer: `hub up` says so in one line, exit 2
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=nowhere\nSlurmctldHost=localhost(127.0.0.1)\n"
                    "SlurmctldPort=9\nMessageTimeout=1\nAuthType=auth/munge\n"
                    f"AuthInfo=socket={tmp_path / 'no-munge.socket'}\n")
    down = _hub_up("--backend", "slurm", "--data-dir", str(data),
                   env={**env, "SLURM_CONF": str(conf)})
    assert down.returncode == 2
    assert len(down.stderr.strip().splitlines()) == 1, down.stderr
    assert down.stderr.startswith("oceandata: error: --backend slurm: Slurm is not reachable")
    assert "scontrol ping" in down.stderr and "Traceback" not in down.stderr
    assert not data.exists()  # refused before anything is prepared


def test_backend_settings_come_from_the_environment() -> None:
    assert backend_settings(environ={})["backend"] == "local"
    assert backend_settings(environ={})["internal_host"] == "127.0.0.1"
    chosen = backend_settings("local", environ={"OCEANDATA_HUB_INTERNAL_HOST": "10.1.0.5",
                                                "OCEANDATA_SLURM_PARTITION": "compute",
                                                "OCEANDATA_SLURM_ACCOUNT": "oceandata"})
    assert chosen["internal_host"] == "10.1.0.5"
    assert (chosen["slurm_partition"], chosen["slurm_account"]) == ("compute", "oceandata")
    with pytest.raises(UsageError, match="not a backend"):
        backend_settings(environ={"OCEANDATA_HUB_BACKEND": "pbs"})


def test_sacct_usage_is_parsed_per_cluster() -> None:
    out = ("dask-gateway-c1|12|30|1|COMPLETED|alloc-1|ann\n"
           "dask-gateway-c1|13|10|2|CANCELLED by 0|alloc-1|ann\n"
           "dask-gateway-c2|14|0|0|PENDING|oceandata|bob\n"
           "other-job|15|100|1|COMPLETED|alloc-1|ann\n")
    usage = parse_sacct_usage(out)
    assert set(usage) == {"c1", "c2"}
    assert usage["c1"].core_seconds == 50 and usage["c1"].finished
    assert usage["c1"].jobs == {"12": "COMPLETED", "13": "CANCELLED"}
    assert usage["c1"].accounts == {"alloc-1"}
    assert not usage["c2"].finished and usage["c2"].core_hours == 0


def test_a_job_named_after_another_users_cluster_is_not_charged_to_it() -> None:
    # bob names his job after ann's cluster; ann renames one of the gateway's jobs
    out = ("dask-gateway-c1|12|30|1|COMPLETED|alloc-1|ann\n"
           "dask-gateway-c1|16|3600|4|RUNNING|oceandata|bob\n"
           "not-a-worker|13|10|2|RUNNING|alloc-1|ann\n")
    usage = parse_sacct_usage(out, owners={"c1": "ann"}, known={"c1": {"12", "13"}})
    assert usage["c1"].core_seconds == 50
    assert usage["c1"].jobs == {"12": "COMPLETED", "13": "RUNNING"}
    assert not usage["c1"].finished  # the renamed job still holds the cluster open



@pytest.mark.parametrize("which", ["embedded", "production"])
def test_embedded_and_production_configs_set_up_the_same_slurm_backend(
        which: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    from dask_gateway_server.app import DaskGateway

    checkout = Path(__file__).resolve().parents[1]
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "gateway-db-key").write_text(
        base64.urlsafe_b64encode(os.urandom(32)).decode())
    for name, value in {
            "OCEANDATA_HUB_PORTS": '{"gateway_api": 8012, "gateway_http": 8013, '
                                   '"gateway_tcp": 8014}',
            "OCEANDATA_HUB_DIR": str(tmp_path), "OCEANDATA_DATA_DIR": str(tmp_path),
            "OCEANDATA_GATEWAY_PROXY_TOKEN": "x", "OCEANDATA_HUB_INTERNAL_HOST": "10.1.0.5",
            "OCEANDATA_SLURM_PARTITION": "compute", "OCEANDATA_SLURM_ACCOUNT": "oceandata",
            "SLURM_CONF": "/etc/slurm/site.conf",
            "OCEANDATA_GATEWAY_DB_URL": "postgresql://dg@db.example.org/dg"}.items():
        monkeypatch.setenv(name, value)
    if which == "embedded":
        monkeypatch.setenv("OCEANDATA_HUB_BACKEND", "slurm")
        path = checkout / "hub_config" / "dask_gateway_config.py"
    else:  # the overlay needs no backend switch: it is Slurm
        monkeypatch.delenv("OCEANDATA_HUB_BACKEND", raising=False)
        path = checkout / "hub_config" / "production" / "dask_gateway_config.py"
    app = DaskGateway()
    app.load_config_file(str(path))
    c = app.config
    assert c.DaskGateway.backend_class == "oceandata.hub.gateway.LimitedSlurmBackend"
    assert c.DaskGateway.address == "10.1.0.5:8012"
    assert c.DBBackendBase.api_url == "http://10.1.0.5:8012/api"
    assert c.Proxy.tcp_address == "10.1.0.5:8014"
    assert c.Proxy.address == "127.0.0.1:8013"  # dashboards only through the gate
    assert (c.SlurmClusterConfig.partition, c.SlurmClusterConfig.account) == (
        "compute", "oceandata")
    assert c.LimitedSlurmBackend.slurm_conf == "/etc/slurm/site.conf"
    # production: the hub names are the site's accounts; embedded: oceandata-<name>
    assert c.LimitedSlurmBackend.user_account == (
        "{username}" if which == "production" else "")
    assert c.JobQueueBackend.dask_gateway_jobqueue_launcher == str(
        Path(sys.executable).parent / "dask-gateway-jobqueue-launcher")


# --- the platform on the three-node Slurm ---------------------------------------------

@dataclass
class Platform:
    """The module's Slurm, hub and users."""

    slurm: object
    hub: Hub
    admin: HubClient
    ann: HubClient  # an allocation with its own Slurm account
    bob: HubClient  # no allocation: the configured account
    alloc_id: int

    @property
    def alloc_db(self) -> str:
        return f"sqlite:///{self.hub.runtime.data_dir / 'alloc' / 'alloc.sqlite'}"

    def jobs(self, cluster: str) -> dict[str, tuple[str, str, str]]:
        """squeue: job id to (node list, user, account) of a gateway cluster's jobs."""
        out = self.slurm.run("squeue", "-h", "-n", f"{SLURM_JOB_PREFIX}{cluster}",
                             "-o", "%i|%N|%u|%a|%t").stdout
        rows = {}
        for line in out.splitlines():
            job, nodes, user, account, _state = line.split("|")
            rows[job] = (nodes, user, account)
        return rows

    def ledger(self, cluster: str) -> list[tuple[int | None, float]]:
        """The gateway's charges of *cluster*: (allocation, core-hours) a row."""
        from sqlalchemy import select

        from oceandata.alloc import db
        from oceandata.alloc.models import Usage

        with db.session_scope(self.alloc_db) as session:
            return [(u.allocation_id, u.core_hours) for u in session.scalars(
                select(Usage).where(Usage.source == "gateway", Usage.ref == cluster))]

    def sacct(self, cluster: str) -> list[dict[str, str]]:
        """sacct's job lines (no steps) of a gateway cluster."""
        fields = ("JobID", "JobName", "ElapsedRaw", "AllocCPUS", "State", "Account", "User",
                  "NodeList")
        out = self.slurm.run("sacct", "-X", "-a", "-P", "-n", "-S", "now-1hour", "-E", "now",
                             f"--name={SLURM_JOB_PREFIX}{cluster}",
                             "-o", ",".join(fields)).stdout
        return [dict(zip(fields, line.split("|"), strict=True))
                for line in out.splitlines() if line.count("|") == len(fields) - 1]


def _wait(predicate, what: str, timeout: float = 120.0, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s")
        time.sleep(interval)  # poll interval of the condition


def _approved(admin: HubClient, user: HubClient, **amounts) -> int:
    from tests.test_alloc_service import api, request_body

    alloc_id = api(user, "POST", "allocations", json=request_body(**amounts)).json()["id"]
    r = api(admin, "POST", f"allocations/{alloc_id}/approve", json={})
    assert r.status_code == 200, r.text
    return alloc_id


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    from oceandata.hub import accounts

    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        folder = reachable_by_accounts(tmp_path_factory.mktemp("gw-slurm"))
        slurm = stack.enter_context(multi_node_or_skip(folder, nodes=3, cpus_per_node=1))
        FIGURES["slurm_ready_s"] = time.monotonic() - started
        slurm.add_account(ACCOUNT)
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        mp.setenv("OCEANDATA_GATEWAY_USAGE_PERIOD", "1")  # charge every second
        data = folder / "var"
        hub = stack.enter_context(running_hub(data, slurm=slurm, account=ACCOUNT))
        wait_for_service(hub)
        FIGURES["hub_ready_s"] = time.monotonic() - started - FIGURES["slurm_ready_s"]
        admin = admin_client(hub)
        ann, bob = new_user(hub, admin, "gwann"), new_user(hub, admin, "gwbob")
        alloc_id = _approved(admin, ann, max_cores=4, memory_per_job_gb=4, core_hours=100)
        # the Slurm side an operator prepares: the allocation's account, the associations
        for name in ("gwann", "gwbob"):
            accounts.ensure_account(name, data)
        slurm.add_account(f"alloc-{alloc_id}")
        slurm.add_user(accounts.unix_name("gwann"), f"alloc-{alloc_id}")
        slurm.add_user(accounts.unix_name("gwbob"), ACCOUNT)
        yield Platform(slurm, hub, admin, ann, bob, alloc_id)
    if FIGURES:
        print("\ngateway on Slurm, measured:", ", ".join(
            f"{k}={v:.4g}" for k, v in FIGURES.items()))


def _ip(address: str) -> str:
    return address.split("://")[-1].rsplit(":", 1)[0]


@pytest.mark.slow
@pytest.mark.slurm
def test_cluster_spans_the_nodes_as_the_user_and_is_charged_what_sacct_says(
        platform: Platform, sample) -> None:
    from oceandata.analysis.climatologies import climatology

    path = sample("oisst_med_nc")
    expected = xr.open_dataset(path).sst.groupby("time.month").mean("time")
    uid = pwd.getpwnam("oceandata-gwann").pw_uid
    node_of = {address: node for node, address in platform.slurm.node_addresses.items()}

    gateway = platform.ann.gateway()
    options = gateway.cluster_options()
    options.worker_cores, options.worker_memory = 1, 1
    requested = time.monotonic()
    cluster = gateway.new_cluster(options)
    name = cluster.name
    try:
        cluster.scale(2)
        client = cluster.get_client()
        client.wait_for_workers(2, timeout=240)
        FIGURES["request_to_2_workers_s"] = time.monotonic() - requested

        # one worker on each of the two nodes the scheduler does not hold
        scheduler = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.address)
        workers = list(client.scheduler_info()["workers"])
        scheduler_node = node_of[_ip(scheduler)]
        worker_nodes = sorted(node_of[_ip(w)] for w in workers)
        assert len(set(worker_nodes)) == 2 and scheduler_node not in worker_nodes
        assert sorted([scheduler_node, *worker_nodes]) == sorted(platform.slurm.node_names)
        jobs = platform.jobs(name)
        assert len(jobs) == 3, jobs
        assert sorted(nodes for nodes, _, _ in jobs.values()) == sorted(
            platform.slurm.node_names)
        # the jobs run as the user's account, under the allocation's Slurm account
        assert {user for _, user, _ in jobs.values()} == {"oceandata-gwann"}
        assert {acct for _, _, acct in jobs.values()} == {f"alloc-{platform.alloc_id}"}
        assert set(client.run(os.getuid).values()) == {uid}
        assert client.run_on_scheduler(os.getuid) == uid

        # a climatology of the sample file, computed by the two workers
        data = xr.open_dataset(path, chunks={"time": 1500})
        result = climatology(data.sst).compute()
        np.testing.assert_allclose(result.values, expected.values, rtol=1e-12)
        assert list(result["month"].values) == list(range(1, 13))
        FIGURES["compute_s"] = time.monotonic() - requested - FIGURES["request_to_2_workers_s"]
        client.close()
    finally:
        stopping = time.monotonic()
        cluster.shutdown()
        gateway.close()
    # shut down: no Slurm job of the cluster is left
    _wait(lambda: not platform.jobs(name), "the cluster's Slurm jobs to end", 120)
    FIGURES["shutdown_to_no_job_s"] = time.monotonic() - stopping

    # sacct: the jobs' user and account, and the core-hours the ledger must hold
    def recorded() -> list[dict[str, str]]:
        rows = platform.sacct(name)
        done = len(rows) == 3 and all(r["State"].split()[0] not in ("RUNNING", "PENDING")
                                      for r in rows)
        return rows if done else []

    rows = _wait(recorded, "sacct to record the cluster's 3 jobs as finished", 90)
    FIGURES["shutdown_to_sacct_final_s"] = time.monotonic() - stopping
    assert {r["User"] for r in rows} == {"oceandata-gwann"}
    assert {r["Account"] for r in rows} == {f"alloc-{platform.alloc_id}"}
    sacct_hours = sum(int(r["ElapsedRaw"]) * int(r["AllocCPUS"]) for r in rows) / 3600
    assert sacct_hours > 0

    def charged() -> float:
        total = sum(h for _, h in platform.ledger(name))
        return total if abs(total - sacct_hours) < 1e-9 else 0.0

    _wait(charged, f"the ledger to hold sacct's {sacct_hours:.6f} core-hours", 60)
    FIGURES["shutdown_to_ledger_settled_s"] = time.monotonic() - stopping
    ledger = platform.ledger(name)
    assert {alloc for alloc, _ in ledger} == {platform.alloc_id}
    FIGURES["sacct_core_hours"] = sacct_hours
    FIGURES["ledger_core_hours"] = sum(h for _, h in ledger)
    FIGURES["ledger_rows"] = len(ledger)
    # settled: nothing more is charged
    time.sleep(2)  # two charging periods (1 s): a wrong extra charge would show here
    assert sum(h for _, h in platform.ledger(name)) == pytest.approx(sacct_hours, abs=1e-9)


def _stop_record(platform: Platform, name: str) -> dict:
    from oceandata.governance import audit

    def found() -> list[dict]:
        return [r for r in audit.read(action="gateway.cluster_stop",
                                      url=platform.hub.runtime.audit_url)
                if r["target"] == f"cluster:{name}"]

    return _wait(found, f"the audit record of cluster {name} stopping", 60)[0]


@pytest.mark.slow
@pytest.mark.slurm
def test_idle_cluster_stops_and_leaves_no_slurm_job(platform: Platform) -> None:
    gateway = platform.bob.gateway()
    options = gateway.cluster_options()
    options.idle_timeout = 10
    started = time.monotonic()
    cluster = gateway.new_cluster(options)
    name = CLUSTERS["idle"] = cluster.name
    try:
        jobs = _wait(lambda: platform.jobs(name), "the scheduler's job", 60)
        # no allocation: the configured Slurm account, as bob's Unix account
        assert [(user, acct) for _, user, acct in jobs.values()] == [
            ("oceandata-gwbob", ACCOUNT)]
        _wait(lambda: gateway.get_cluster(name).status.name == "STOPPED",
              "the idle cluster to stop", 120)
        FIGURES["idle_10s_stopped_after_s"] = time.monotonic() - started
        _wait(lambda: not platform.jobs(name), "the idle cluster's Slurm job to end", 60)
    finally:
        with contextlib.suppress(Exception):
            cluster.shutdown()
        gateway.close()
    assert _stop_record(platform, name)["detail"]["reason"] == "idle (its scheduler asked)"


@pytest.mark.slow
@pytest.mark.slurm
def test_exhausted_allocation_stops_the_cluster_charged_from_sacct(
        platform: Platform) -> None:
    """Runs after the idle test: bob now gets a small allocation (without a Slurm account
    of its own, so the jobs stay under the configured account, charged to it)."""
    # 0.002 core-hours: the scheduler's job (1 CPU) uses it up in ~7 s of sacct's time
    alloc_id = _approved(platform.admin, platform.bob, max_cores=2, memory_per_job_gb=4,
                         core_hours=0.002)
    gateway = platform.bob.gateway()
    cluster = gateway.new_cluster(gateway.cluster_options())
    name = cluster.name
    try:
        _wait(lambda: platform.jobs(name), "the scheduler's job", 60)
        rec = _stop_record(platform, name)
        assert rec["detail"]["reason"] == "allocation exhausted", rec
        assert rec["detail"]["allocation"] == alloc_id
        _wait(lambda: not platform.jobs(name), "the stopped cluster's Slurm job to end", 60)
    finally:
        with contextlib.suppress(Exception):
            cluster.shutdown()
        gateway.close()
    rows = _wait(lambda: [r for r in platform.sacct(name)
                          if r["State"].split()[0] not in ("RUNNING", "PENDING")],
                 "sacct to record the scheduler's job as finished", 60)
    assert [r["Account"] for r in rows] == [ACCOUNT]
    used = sum(int(r["ElapsedRaw"]) * int(r["AllocCPUS"]) for r in rows) / 3600
    assert used >= 0.002
    _wait(lambda: abs(sum(h for _, h in platform.ledger(name)) - used) < 1e-9,
          f"the ledger to hold sacct's {used:.6f} core-hours", 60)
    assert {a for a, _ in platform.ledger(name)} == {alloc_id}
    # bob's idle cluster ran before this allocation existed: sacct's late records of it
    # (settled after its stop, perhaps after the approval above) are never charged here
    idle = CLUSTERS.get("idle")
    if idle:
        idle_rows = _wait(lambda: [r for r in platform.sacct(idle)
                                   if r["State"].split()[0] not in ("RUNNING", "PENDING")],
                          "sacct to record the idle cluster's job as finished", 60)
        idle_used = sum(int(r["ElapsedRaw"]) * int(r["AllocCPUS"]) for r in idle_rows) / 3600
        _wait(lambda: abs(sum(h for _, h in platform.ledger(idle)) - idle_used) < 1e-9,
              f"the ledger to hold the idle cluster's {idle_used:.6f} core-hours", 60)
        assert {a for a, _ in platform.ledger(idle)} == {None}
