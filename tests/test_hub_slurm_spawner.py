"""JupyterLab servers as Slurm jobs (``hub up --backend slurm``) on the multi-node fixture.

One module-scoped Slurm of three 1-CPU nodes (each in its own network namespace, with
slurmdbd for ``sacct``) and one hub in Slurm mode against it. A user's server is a Slurm
job (batchspawner, :class:`oceandata.hub.slurm_spawner.UserAccountSlurmSpawner`) submitted
as the user's Unix account under the platform's Slurm account; the hub reaches it at its
node's bridge address and proxies the user's kernels to it; stopping the server ends the
job. A user without a Slurm association is refused at once with Slurm's reason.

Outside CI these tests are skipped where the cluster cannot start (not root, programs
missing); with ``CI=true`` that is a failure.
"""

from __future__ import annotations

import contextlib
import pwd
import time
from collections.abc import Iterator

import pytest
from hub_helpers import HubClient, admin_client, new_user, reachable_by_accounts, running_hub

from oceandata.hub.accounts import ensure_account, unix_name
from oceandata.hub.slurm_spawner import JOB_NAME
from oceandata.testing.slurm import (
    MultiNodeSlurmCluster,
    SlurmUnavailable,
    in_ci,
    multi_node_slurm,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

#: the Slurm account the servers' jobs are charged to (OCEANDATA_SLURM_ACCOUNT)
ACCOUNT = "bs-interactive"
#: what the tests measured (printed at the end of the module, for the report)
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiNodeSlurmCluster]:
    """Three 1-CPU nodes with accounting: a server takes one node whole."""
    with contextlib.ExitStack() as stack:
        try:
            running = stack.enter_context(multi_node_slurm(
                reachable_by_accounts(tmp_path_factory.mktemp("bsmn")), nodes=3,
                cpus_per_node=1))
        except SlurmUnavailable as exc:
            if in_ci():
                pytest.fail(f"the multi-node Slurm is required in CI: {exc}", pytrace=False)
            pytest.skip(f"no multi-node Slurm here: {exc}")
        running.add_account(ACCOUNT, description="interactive servers")
        yield running


@pytest.fixture(scope="module")
def hub(cluster: MultiNodeSlurmCluster, tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("bshub") / "data"
    started = time.monotonic()
    with running_hub(data, slurm=cluster, account=ACCOUNT) as running:
        TIMES["hub_start_s"] = time.monotonic() - started
        yield running
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
    # the user's kernel runs on that node as the user's account
    out = ann.run_code("import os, socket; print(os.getuid(), socket.gethostname())")
    uid, host = out.split()
    assert (int(uid), host) == (pwd.getpwnam(account).pw_uid, job["node"])
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


@pytest.fixture(autouse=True, scope="module")
def _no_jobs_left(cluster: MultiNodeSlurmCluster, hub) -> Iterator[None]:
    yield
    leftovers = cluster.run("squeue", "-h", "-n", JOB_NAME, "-o", "%i %u").stdout.strip()
    assert not leftovers, f"server jobs left behind: {leftovers}"
