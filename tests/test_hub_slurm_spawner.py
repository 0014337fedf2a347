"""JupyterLab servers as Slurm jobs (``hub up --backend slurm``) on the multi-node fixture.

One module-scoped Slurm of three 1-CPU nodes (each in its own network namespace, with
slurmdbd for ``sacct``) and one hub in Slurm mode against it. A user's server is a Slurm
job (batchspawner, :class:`oceandata.hub.slurm_spawner.UserAccountSlurmSpawner`) submitted
as the user's Unix account under the platform's Slurm account; the hub reaches it at its
node's bridge address and proxies the user's kernels to it; stopping the server ends the
job. Two users' servers run on two nodes, neither reading the other's home; from a server,
a dask-gateway cluster (scheduler and worker as Slurm jobs) puts its worker on another
node. A user without a Slurm association is refused at once with Slurm's reason. The
production overlay sets the same spawner up (loaded in a process of its own).

Outside CI these tests are skipped where the cluster cannot start (not root, programs
missing); with ``CI=true`` that is a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_helpers import HubClient, admin_client, new_user, reachable_by_accounts, running_hub
from slurm_helpers import multi_node_or_skip

from oceandata.hub.accounts import ensure_account, unix_name
from oceandata.hub.slurm_spawner import JOB_NAME
from oceandata.testing.slurm import MultiNodeSlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CHECKOUT = Path(__file__).resolve().parents[1]
#: the Slurm account the servers' jobs are charged to (OCEANDATA_SLURM_ACCOUNT)
ACCOUNT = "bs-interactive"
#: what the tests measured (printed at the end of the module, for the report)
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiNodeSlurmCluster]:
    """Three 1-CPU nodes with accounting: a server takes one node whole."""
    with contextlib.ExitStack() as stack:
        running = stack.enter_context(multi_node_or_skip(
            reachable_by_accounts(tmp_path_factory.mktemp("bsmn")), nodes=3, cpus_per_node=1))
        running.add_account(ACCOUNT, description="interactive servers")
        yield running


@pytest.fixture(scope="module")
def hub(cluster: MultiNodeSlurmCluster, tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("bshub") / "data"
    started = time.monotonic()
    with running_hub(data, slurm=cluster, account=ACCOUNT) as running:
        TIMES["hub_start_s"] = time.monotonic() - started
        yield running
        leftovers = cluster.run("squeue", "-h", "-n", JOB_NAME, "-o", "%i %u").stdout.strip()
        assert not leftovers, f"server jobs left behind: {leftovers}"
    print(f"\nmeasured: {TIMES}")


#: the module's hub users, made once (sign-up, approval, login, token)
_USERS: dict[str, HubClient] = {}


def _user(hub, name: str) -> HubClient:
    """Hub user *name* with a token: signed up and approved on first use."""
    if name not in _USERS:
        _USERS[name] = new_user(hub, admin_client(hub), name)
    return _USERS[name]


def _associate(cluster: MultiNodeSlurmCluster, hub, name: str) -> str:
    """The user's Unix account (as OCEANDATA_ACCOUNTS=existing finds it) in ACCOUNT."""
    entry = ensure_account(name, hub.runtime.data_dir)
    cluster.add_user(entry.pw_name, ACCOUNT)
    return entry.pw_name


def _jobs_of(cluster: MultiNodeSlurmCluster, account: str) -> list[dict[str, str]]:
    """The user's server jobs in ``squeue`` (id, state, user, account, node)."""
    out = cluster.run("squeue", "-h", "-n", JOB_NAME, "-u", account,
                      "-o", "%i|%T|%u|%a|%N").stdout
    keys = ("job", "state", "user", "account", "node")
    return [dict(zip(keys, line.split("|"), strict=True)) for line in out.splitlines()
            if line.strip()]


def _server(user) -> dict:
    return user.api("GET", f"/hub/api/users/{user.name}").json().get("servers", {}).get("", {})


def _proxy_target(admin, name: str) -> str:
    routes = admin.api("GET", "/hub/api/proxy").json()
    return routes[f"/user/{name}/"]["target"]


def _stop(cluster: MultiNodeSlurmCluster, user: HubClient) -> None:
    """Stop the user's server; wait until the hub has no server and Slurm no job."""
    r = user.api("DELETE", f"/hub/api/users/{user.name}/server")
    assert r.status_code in (202, 204), r.text
    account = unix_name(user.name)
    deadline = time.monotonic() + 120
    while _server(user) or _jobs_of(cluster, account):
        assert time.monotonic() < deadline, (_server(user), _jobs_of(cluster, account))
        time.sleep(0.5)  # poll interval of the hub's and Slurm's state


def test_a_server_is_a_slurm_job_of_the_users_account_reached_through_the_hub(
        cluster: MultiNodeSlurmCluster, hub) -> None:
    admin = admin_client(hub)
    ann = _user(hub, "bsann")
    account = _associate(cluster, hub, "bsann")
    started = time.monotonic()
    ann.start_server(timeout=300)
    TIMES["spawn_s"] = time.monotonic() - started
    jobs = _jobs_of(cluster, account)
    assert len(jobs) == 1, jobs
    job = jobs[0]
    assert (job["state"], job["user"], job["account"]) == ("RUNNING", account, ACCOUNT)
    assert job["node"] in cluster.node_names
    # the hub reaches the server at the node's bridge address (NodeAddr), not its name
    target = _proxy_target(admin, "bsann")
    assert target.startswith(f"http://{cluster.node_addresses[job['node']]}:"), target
    # the user's kernel runs on that node as the user's account, and reaches the hub's
    # services from there (the allocations service, through the proxy on the bridge)
    out = ann.run_code(
        "import os, socket, urllib.request\n"
        "print(os.getuid(), socket.gethostname())\n"
        "url = os.environ['OCEANDATA_ALLOC_URL'] + '/api/health'\n"
        "print(url.split('/')[2], urllib.request.urlopen(url, timeout=30).status)")
    uid, host, service, status = out.split()
    assert (int(uid), host) == (pwd.getpwnam(account).pw_uid, job["node"])
    assert (service, status) == (f"{cluster.host_address}:{hub.runtime.port}", "200")
    # stopping the server ends the job; sacct has it as the user's, on that node
    started = time.monotonic()
    _stop(cluster, ann)
    TIMES["stop_s"] = time.monotonic() - started
    record = cluster.wait_for_accounting(int(job["job"]))
    assert record["State"].startswith("CANCELLED"), record
    assert (record["User"], record["Account"], record["NodeList"]) == (
        account, ACCOUNT, job["node"])


def test_a_user_without_a_slurm_association_is_refused_with_slurms_reason(
        cluster: MultiNodeSlurmCluster, hub) -> None:
    bob = _user(hub, "bsbob")
    started = time.monotonic()
    r = bob.api("POST", "/hub/api/users/bsbob/server")
    # sbatch refuses at once: the answer is the refusal, not a spawn left pending
    assert time.monotonic() - started < 30
    assert r.status_code == 403, r.text
    message = r.json()["message"]
    assert message.startswith("Slurm refused the job of your server: Batch job submission "
                              "failed: Invalid account"), message
    assert f"Unix account {unix_name('bsbob')} use Slurm account {ACCOUNT}" in message
    assert "\n" not in message
    assert not _server(bob)
    assert _jobs_of(cluster, unix_name("bsbob")) == []
    log = hub.log()
    assert "Error starting bsbob's server: HTTP 403" in log
    assert "Unhandled error starting bsbob" not in log  # no traceback for a refusal


def test_two_users_servers_run_on_two_nodes_and_neither_reads_the_others_home(
        cluster: MultiNodeSlurmCluster, hub) -> None:
    ann, bob = _user(hub, "bsann"), _user(hub, "bsbob")
    for user in (ann, bob):
        _associate(cluster, hub, user.name)
        r = user.api("POST", f"/hub/api/users/{user.name}/server")
        assert r.status_code in (201, 202), r.text
    try:
        for user in (ann, bob):
            user.start_server(timeout=300)  # already requested: waits until ready
        nodes = {user.name: _jobs_of(cluster, unix_name(user.name))[0]["node"]
                 for user in (ann, bob)}
        assert nodes["bsann"] != nodes["bsbob"], nodes  # 1-CPU nodes: one server each
        home = hub.runtime.data_dir / "users" / "bsann"
        out = bob.run_code(
            "import os, socket\n"
            f"try:\n    os.listdir({str(home)!r}); print('read')\n"
            "except PermissionError:\n    print('refused')\n"
            "print(socket.gethostname())")
        assert out.split() == ["refused", nodes["bsbob"]]
    finally:
        for user in (ann, bob):
            _stop(cluster, user)


_GATEWAY_FROM_THE_SERVER = """
import json, os, socket
from dask_gateway import Gateway

gateway = Gateway()  # DASK_GATEWAY__* of the server: the hub and the gateway on the bridge
options = gateway.cluster_options()
options.worker_cores, options.worker_memory = 1, 1
cluster = gateway.new_cluster(options)
try:
    cluster.scale(1)
    client = cluster.get_client()
    client.wait_for_workers(1, timeout=240)
    print(json.dumps({
        "name": cluster.name, "server": socket.gethostname(),
        "scheduler": client.run_on_scheduler(socket.gethostname),
        "workers": sorted(client.run(socket.gethostname).values()),
        "uids": sorted(set(client.run(os.getuid).values())),
        "sum": client.submit(sum, range(10)).result()}))
    client.close()
finally:
    cluster.shutdown()
    gateway.close()
"""


def test_a_gateway_cluster_opened_from_the_server_has_its_worker_on_another_node(
        cluster: MultiNodeSlurmCluster, hub) -> None:
    ann = _user(hub, "bsann")
    account = _associate(cluster, hub, "bsann")
    ann.start_server(timeout=300)
    try:
        server_node = _jobs_of(cluster, account)[0]["node"]
        started = time.monotonic()
        got = json.loads(ann.run_code(_GATEWAY_FROM_THE_SERVER, timeout=400).split("\n")[-2])
        TIMES["gateway_cluster_from_server_s"] = time.monotonic() - started
        assert got["server"] == server_node
        # three 1-CPU nodes: the server, the scheduler and the worker each hold one
        assert len(got["workers"]) == 1
        assert {got["scheduler"], got["workers"][0], server_node} == set(cluster.node_names)
        assert got["uids"] == [pwd.getpwnam(account).pw_uid]
        assert got["sum"] == 45
        # shut down from the server: no Slurm job of the cluster is left
        deadline = time.monotonic() + 120
        while cluster.run("squeue", "-h", "-n", f"dask-gateway-{got['name']}").stdout.strip():
            assert time.monotonic() < deadline, "the gateway cluster's jobs are still queued"
            time.sleep(0.5)  # poll interval of Slurm's state
    finally:
        _stop(cluster, ann)


def test_the_hub_listens_on_loopback_and_the_cluster_network_only(hub) -> None:
    """In Slurm mode the nodes reach the proxy and the gateway on the bridge's host
    address; nothing of the platform listens on any other interface (no 0.0.0.0), and
    the hub API, which believes the proxy's X-Forwarded-For, stays on loopback."""
    import psutil

    tree = psutil.Process(hub.proc.pid)
    pids = {tree.pid} | {child.pid for child in tree.children(recursive=True)}
    listening = {(c.laddr.ip, c.laddr.port) for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in pids}
    internal = hub.runtime.internal_host
    assert internal != "127.0.0.1" and (internal, hub.runtime.port) in listening
    assert {ip for ip, _ in listening} <= {"127.0.0.1", "::1", internal}, listening
    assert ("127.0.0.1", hub.runtime.ports["hub_api"]) in listening


def test_the_account_a_server_runs_as_and_its_job_script() -> None:
    """Who submits (the site's account, the platform's, or the hub's own without sudo)
    and the job script's Slurm lines (batchspawner's own script has no account or QOS)."""
    from types import SimpleNamespace

    from batchspawner.batchspawner import format_template
    from tornado import web

    from oceandata.hub.slurm_spawner import BATCH_SCRIPT, UserAccountSlurmSpawner

    site = UserAccountSlurmSpawner(user=SimpleNamespace(name="bsann"), user_account="{username}")
    assert (site.req_username, site.exec_prefix) == ("bsann", "sudo -E -n -u {username}")
    platform = UserAccountSlurmSpawner(user=SimpleNamespace(name="bsann"))
    assert platform.req_username == "oceandata-bsann"  # per-user mode (root, CI)
    own = pwd.getpwuid(os.geteuid()).pw_name
    nobody = UserAccountSlurmSpawner(user=SimpleNamespace(name="bs-nobody"),
                                     user_account="{username}")
    with pytest.raises(web.HTTPError) as refused:
        nobody.user_env({})
    assert (refused.value.status_code, refused.value.log_message) == (
        403, "there is no Unix account bs-nobody to run your server as; an administrator "
             "must create it")
    # a site login name with shell characters never reaches batchspawner's shell commands
    odd = UserAccountSlurmSpawner(user=SimpleNamespace(name="x;touch /tmp/pwned"),
                                  user_account="{username}")
    with pytest.raises(web.HTTPError) as refused:
        odd.req_username  # noqa: B018 - the trait's default is computed on first read
    assert refused.value.status_code == 403
    assert "is not a Unix account name" in refused.value.log_message
    hub_itself = UserAccountSlurmSpawner(user=SimpleNamespace(name=own), user_account="{username}")
    assert hub_itself.exec_prefix == ""  # no sudo to oneself
    script = format_template(
        BATCH_SCRIPT, homedir="/home/bsann", keepvars="PATH,HOME", partition="interactive",
        account="ocean", qos="short", runtime="08:00:00", memory="8G", nprocs="2", gres="",
        reservation="", options="", path="'/opt/ocean/.venv/bin:/usr/bin'",
        prologue="module load x", srun="srun", cmd="batchspawner-singleuser lab", epilogue="")
    lines = script.splitlines()
    for line in ("#SBATCH --job-name=spawner-jupyterhub", "#SBATCH --account=ocean",
                 "#SBATCH --qos=short", "#SBATCH --partition=interactive",
                 "#SBATCH --mem=8G", "#SBATCH --cpus-per-task=2",
                 "#SBATCH --chdir=/home/bsann", "export PATH='/opt/ocean/.venv/bin:/usr/bin'",
                 "srun batchspawner-singleuser lab"):
        assert line in lines, (line, script)
    assert lines.index("module load x") < lines.index("srun batchspawner-singleuser lab")


_OVERLAY = """
import json, sys
from traitlets.config.loader import PyFileConfigLoader

import oceandata.hub.launcher

# the first admin's registration is the one step that needs the site's PostgreSQL
oceandata.hub.launcher.bootstrap_admin = lambda runtime: False
c = PyFileConfigLoader(sys.argv[1]).load_config()
spawner = c.UserAccountSlurmSpawner
print(json.dumps({
    "class": f"{c.JupyterHub.spawner_class.__module__}.{c.JupyterHub.spawner_class.__name__}",
    "hub_bind_url": c.JupyterHub.hub_bind_url, "hub_connect_url": c.JupyterHub.hub_connect_url,
    "user_account": spawner.user_account,
    "req": {k: spawner[k] for k in ("req_partition", "req_account", "req_qos", "req_memory",
                                    "req_nprocs", "req_runtime")},
    "start_timeout": c.Spawner.start_timeout, "env_keep": c.Spawner.env_keep.get_value([]),
    "notebook_dir": c.Spawner.notebook_dir,
    "alloc_url": c.Spawner.environment["OCEANDATA_ALLOC_URL"],
}))
"""


def test_the_production_overlay_runs_servers_with_the_same_slurm_spawner(
        tmp_path: Path) -> None:
    """hub_config/production/ with OCEANDATA_HUB_SPAWNER=slurm: the embedded Slurm mode's
    spawner and hub API settings (one piece of code), production's sizes, the site's accounts.

    The configuration is loaded as JupyterHub loads it, in a process of its own, without
    the site's PostgreSQL (the first admin's registration is skipped)."""
    catalog = tmp_path / "ocean.yaml"
    catalog.write_text("sources: {}\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OCEANDATA_", "SLURM_", "JUPYTERHUB_"))}
    env.update({
        "OCEANDATA_DATA_DIR": str(reachable_by_accounts(tmp_path / "srv")),
        "OCEANDATA_HUB_PUBLIC_URL": "https://ocean.example.org",
        "OCEANDATA_HUB_BIND_URL": "http://127.0.0.1:8000",
        "OCEANDATA_HUB_DB_URL": "postgresql://jupyterhub@db.example.org/jupyterhub",
        "OCEANDATA_GATEWAY_DB_URL": "postgresql://dask_gateway@db.example.org/dask_gateway",
        "OCEANDATA_HUB_INTERNAL_HOST": "10.1.0.5", "OCEANDATA_CATALOG": str(catalog),
        "OCEANDATA_HUB_SPAWNER": "slurm", "OCEANDATA_SLURM_PARTITION": "interactive",
        "OCEANDATA_SLURM_ACCOUNT": "oceandata", "OCEANDATA_SLURM_QOS": "short",
        "SLURM_CONF": "/etc/slurm/slurm.conf"})
    config = CHECKOUT / "hub_config" / "production" / "jupyterhub_config.py"
    done = subprocess.run([sys.executable, "-c", _OVERLAY, str(config)], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["class"] == "oceandata.hub.slurm_spawner.UserAccountSlurmSpawner"
    assert got["hub_bind_url"] == got["hub_connect_url"] == "http://10.1.0.5:8081"
    assert got["user_account"] == "{username}"  # the site's accounts, as the gateway's
    assert got["req"] == {"req_partition": "interactive", "req_account": "oceandata",
                          "req_qos": "short", "req_memory": "8G", "req_nprocs": "2",
                          "req_runtime": "08:00:00"}
    assert got["start_timeout"] == 600 and "SLURM_CONF" in got["env_keep"]
    assert got["notebook_dir"] == "~"  # the account's home, on the shared filesystem
    assert got["alloc_url"] == "https://ocean.example.org/services/allocations"
    # a required value missing: one line naming it, no traceback
    del env["OCEANDATA_SLURM_ACCOUNT"]
    done = subprocess.run([sys.executable, "-c", _OVERLAY, str(config)], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "oceandata production hub: set OCEANDATA_SLURM_ACCOUNT (e.g. OCEANDATA_SLURM_ACCOUNT="
        "oceandata) in the hub's environment; see docs/operations.md, 'Production'"]
