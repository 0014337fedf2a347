"""The partner's whole path, end to end, through the real services and the command line.

A real single-node Slurm (:func:`oceandata.testing.slurm.single_node_slurm`) and the real
hub (:func:`tests.hub_helpers.running_hub`, whose allocations service gets ``SLURM_CONF``
from the launcher's environment) run; everything the partner and the admin do goes
through the hub's REST API or ``oceandata`` commands run as subprocesses:

sign-up, approval, ``partners`` group, ``oceandata alloc request``, ``oceandata alloc
approve`` with changed amounts, ``oceandata submit ... --backend slurm`` of a script that
reads ``oisst_wa``, ``oceandata jobs show`` until it completes, ``oceandata jobs outputs
--get``, ``oceandata alloc usage --csv`` against Slurm's own record of the job, and
another partner seeing none of it. Outside CI these tests are skipped where Slurm cannot
start; with ``CI=true`` that is a failure.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from oceandata.testing.slurm import SlurmCluster, SlurmUnavailable, in_ci, single_node_slurm
from tests.hub_helpers import (
    Hub,
    HubClient,
    admin_client,
    new_user,
    reachable_by_accounts,
    running_hub,
    wait_for_service,
)

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

SERVICE = "/services/allocations"
OCEANDATA = str(Path(sys.executable).with_name("oceandata"))
TODAY = dt.date.today()
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}

# the partner's script: a value computed from the data, written to the job's outputs
SCRIPT = """\
import os, time
from pathlib import Path
import oceandata
started = time.monotonic()
ds = oceandata.open_dataset("oisst_wa", time=("2020-01-01", "2020-12-31"))
value = float(ds["sst"].mean().compute())
out = Path(os.environ["OCEANDATA_OUTPUT_DIR"])
(out / "mean_sst_2020.txt").write_text(repr(value) + "\\n")
print("mean SST 2020:", value, flush=True)
# at least 1.5 s of run time, so that Slurm's whole-second elapsed time is not zero
time.sleep(max(0.0, 1.5 - (time.monotonic() - started)))
"""


def _skip_or_fail(reason: str) -> None:
    if in_ci():
        pytest.fail(f"Slurm is required in CI: {reason}", pytrace=False)
    pytest.skip(f"no single-node Slurm here: {reason}")


@dataclass
class Platform:
    hub: Hub
    slurm: SlurmCluster
    admin: HubClient
    tmp: Path


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("partner")
    with contextlib.ExitStack() as stack:
        try:
            # as root, jobs are submitted as their owners' Unix accounts: they read slurm.conf
            (tmp / "slurm").mkdir()
            cluster = stack.enter_context(single_node_slurm(reachable_by_accounts(tmp / "slurm")))
        except SlurmUnavailable as exc:
            _skip_or_fail(str(exc))
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        # the launcher hands its environment to the hub, which passes these on to the
        # allocations service (hub_config/jupyterhub_config.py)
        mp.setenv("SLURM_CONF", str(cluster.slurm_conf))
        mp.setenv("OCEANDATA_JOBS_POLL_INTERVAL", "0.5")
        mp.delenv("JUPYTERHUB_API_TOKEN", raising=False)
        hub = stack.enter_context(running_hub(tmp / "var"))
        wait_for_service(hub)
        yield Platform(hub, cluster, admin_client(hub), tmp)


def cli(platform: Platform, user: HubClient, *args: str,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``oceandata ARGS`` as *user* would, in a subprocess, against the hub."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTERHUB_", "SLURM_", "OCEANDATA_ALLOC_"))}
    env.update({"OCEANDATA_ALLOC_URL": f"{platform.hub.url}{SERVICE}",
                "OCEANDATA_TOKEN": user.token or ""})
    done = subprocess.run([OCEANDATA, *args], env=env, capture_output=True, text=True,
                          timeout=180, cwd=platform.tmp)
    if check:
        assert done.returncode == 0, (args, done.returncode, done.stdout, done.stderr)
    return done


def _json(done: subprocess.CompletedProcess[str]) -> object:
    return json.loads(done.stdout)


def _partner(platform: Platform, prefix: str) -> HubClient:
    user = new_user(platform.hub, platform.admin, f"{prefix}{uuid.uuid4().hex[:6]}")
    r = platform.admin.api("POST", "/hub/api/groups/partners/users",
                           json={"users": [user.name]})
    assert r.status_code == 200, r.text
    model = platform.admin.api("GET", f"/hub/api/users/{user.name}").json()
    assert "partners" in model["groups"], model
    return user


def _request(platform: Platform, user: HubClient, max_cores: int = 2) -> int:
    done = cli(platform, user, "alloc", "request", "--title", "Marine heatwaves off WA",
               "--pi", "Dr. P. Artner", "--institution", "Partner Institute",
               "--justification", "Mean SST of 2020 at the WA site.",
               "--core-hours", "10", "--max-cores", str(max_cores), "--memory-gb", "2",
               "--storage-gb", "1", "--start", (TODAY - dt.timedelta(days=1)).isoformat(),
               "--end", (TODAY + dt.timedelta(days=30)).isoformat(),
               "--dataset", "oisst_wa", "--json")
    alloc = _json(done)
    assert isinstance(alloc, dict) and alloc["status"] == "pending", alloc
    return int(alloc["id"])


def _wait_for_job(platform: Platform, user: HubClient, job_id: str,
                  timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = _json(cli(platform, user, "jobs", "show", job_id, "--json"))
        assert isinstance(job, dict)
        if job["state"] in FINAL:
            return job
        assert time.monotonic() < deadline, (job, platform.slurm.queue())
        time.sleep(0.5)  # poll interval of the job's state


def test_partner_runs_a_slurm_job_on_an_approved_allocation(platform: Platform) -> None:
    slurm, admin = platform.slurm, platform.admin
    partner = _partner(platform, "partner")

    # request, then the admin approves it with changed amounts
    alloc_id = _request(platform, partner)
    done = cli(platform, admin, "alloc", "approve", str(alloc_id), "--core-hours", "5",
               "--max-cores", "1", "--note", "one core to start with", "--json")
    approved = _json(done)
    assert isinstance(approved, dict)
    assert (approved["status"], approved["core_hours"], approved["max_cores"]) == (
        "approved", 5.0, 1)
    shown = _json(cli(platform, partner, "alloc", "show", str(alloc_id), "--json"))
    assert isinstance(shown, dict)
    assert shown["audit"][-1]["before"]["core_hours"] == 10.0
    assert {"core_hours", "max_cores"} <= set(shown["audit"][-1]["changed"])

    script = platform.tmp / "mean_sst.py"
    script.write_text(SCRIPT)
    submit = ("submit", str(script), "--memory", "500MB", "--walltime", "0:05:00",
              "--allocation", str(alloc_id), "--backend", "slurm")

    # more cores than the allocation allows: refused before anything reaches Slurm
    refused = cli(platform, partner, *submit, "--cores", "2", check=False)
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert f"allocation {alloc_id} allows at most 1" in refused.stderr, refused.stderr
    assert "HTTP 403" in refused.stderr
    assert slurm.queue() == []
    assert _json(cli(platform, partner, "jobs", "list", "--json")) == []

    # the job: submitted, followed until it completes
    created = _json(cli(platform, partner, *submit, "--cores", "1", "--json"))
    assert isinstance(created, dict) and created["backend"] == "slurm", created
    job_id = created["id"]
    job = _wait_for_job(platform, partner, job_id)
    logs = cli(platform, partner, "jobs", "logs", job_id).stdout
    assert job["state"] == "COMPLETED", (job, logs)
    assert job["exit_code"] == 0 and "mean SST 2020:" in logs
    slurm_id = int(job["backend_id"])
    record = slurm.job_record(slurm_id)
    assert record is not None and record.succeeded, record
    assert record.fields.get("JobName") == f"oceandata-{job_id}"

    # its output, fetched through the service, holds the value computed from the data
    listed = _json(cli(platform, partner, "jobs", "outputs", job_id, "--json"))
    assert isinstance(listed, list)
    assert [f["path"] for f in listed] == ["mean_sst_2020.txt"]
    fetched = platform.tmp / "fetched"
    cli(platform, partner, "jobs", "outputs", job_id, "--get", "mean_sst_2020.txt",
        "--to", str(fetched))
    value = float((fetched / "mean_sst_2020.txt").read_text())
    import oceandata

    expected = float(oceandata.open_dataset("oisst_wa", time=("2020-01-01", "2020-12-31"))
                     ["sst"].mean().compute())
    assert value == pytest.approx(expected, rel=1e-12)
    assert 15 < value < 30  # degrees Celsius off Western Australia

    # the charge: cores x Slurm's own elapsed time of the job
    assert record.elapsed_s is not None and record.elapsed_s >= 1, record
    text = cli(platform, partner, "alloc", "usage", "--csv").stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    # the compute charged; and the project's storage, measured when the job ended (its
    # folder counts against the project's quota, docs/projects.md)
    compute = [r for r in rows if r["source"] != "storage"]
    assert [(r["allocation_id"], r["user"], r["source"], r["records"]) for r in compute] == [
        (str(alloc_id), partner.name, "batch", "1")], text
    assert float(compute[0]["core_hours"]) == pytest.approx(1 * record.elapsed_s / 3600,
                                                            rel=1e-5)
    [storage] = [r for r in rows if r["source"] == "storage"]
    assert storage["allocation_id"] == str(alloc_id) and int(storage["bytes"]) > 0, text
    assert f"{alloc_id},{partner.name},batch," in cli(platform, admin, "alloc", "usage",
                                                       "--csv").stdout

    # another partner sees nothing of it: not the job, its logs, outputs, nor the allocation
    other = _partner(platform, "other")
    for args in (("jobs", "show", job_id), ("jobs", "logs", job_id),
                 ("jobs", "cancel", job_id), ("jobs", "outputs", job_id),
                 ("jobs", "outputs", job_id, "--get", "mean_sst_2020.txt", "--to",
                  str(platform.tmp / "stolen"))):
        done = cli(platform, other, *args, check=False)
        assert done.returncode == 2 and "HTTP 404" in done.stderr, (args, done.stderr)
    assert not (platform.tmp / "stolen").exists()
    assert _json(cli(platform, other, "jobs", "list", "--json")) == []
    done = cli(platform, other, "alloc", "show", str(alloc_id), check=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert _json(cli(platform, other, "alloc", "list", "--json")) == []
    assert "batch" not in cli(platform, other, "alloc", "usage", "--csv").stdout
    for path in (f"jobs/{job_id}", f"jobs/{job_id}/logs", f"jobs/{job_id}/outputs",
                 f"jobs/{job_id}/outputs/mean_sst_2020.txt", f"allocations/{alloc_id}"):
        r = other.api("GET", f"{SERVICE}/api/{path}", allow_redirects=False)
        assert r.status_code == 404, (path, r.status_code, r.text)
    r = other.api("POST", f"{SERVICE}/api/jobs/{job_id}/cancel", allow_redirects=False)
    assert r.status_code == 404, r.text
    # and nothing they tried changed the job
    assert _json(cli(platform, partner, "jobs", "show", job_id, "--json"))["state"] == (
        "COMPLETED")
