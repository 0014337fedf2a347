"""Asynchronous downloads: 413 with an offer, ``async=1`` -> 202, a batch job, a signed link.

The data service runs with uvicorn on 127.0.0.1 (:func:`dataservice_helpers.serving`);
its jobs go through the real jobs layer (:func:`oceandata.jobs.service.submit` with a
:class:`~oceandata.jobs.service.JobRuntime` this module owns: ``asyncjobs.RuntimeJobs``)
into a SQLite allocations database where ``alice`` has an approved allocation. The path
runs once on the local backend and once on the Slurm fixture (skipped, with the reason,
where Slurm cannot start outside CI; a failure in CI, as tests/test_jobs_slurm.py).

The hub's token check is a stand-in (:class:`StandInHub`: a token -> a
:class:`~oceandata.hub.security.HubUser`), as allowed for tests not about the hub;
tests/test_dataservice_hub.py runs the path through the real hub and allocations service.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import xarray as xr
from hub_helpers import reachable_by_accounts
from sqlalchemy import func, select

from oceandata.alloc import core, db
from oceandata.alloc.models import Job, JobState
from oceandata.config import AnonymousLimits, PartnerLimits, TrafficSettings
from oceandata.dataservice import asyncjobs, create_app, subset_job
from oceandata.dataservice.ledger import Ledger
from oceandata.hub.security import AuthError, HubUser
from oceandata.jobs import JobSettings
from oceandata.jobs import service as jobs_service
from oceandata.jobs.service import JobRuntime
from oceandata.testing.slurm import SlurmUnavailable, in_ci, single_node_slurm
from tests.dataservice_helpers import make_catalog, serving

ALICE, BOB, CAROL = "alice-token", "bob-token", "carol-token"
#: alice has an approved allocation; bob is a partner by group, with no allocation; carol
#: is a registered user (no jobs, but a larger synchronous limit: the direct download)
USERS = {ALICE: HubUser("alice"), BOB: HubUser("bob", groups=frozenset({"partners"})),
         CAROL: HubUser("carol")}
#: partners and anonymous clients stream at most 50 KB at once; partners' larger requests
#: may run as jobs up to 1 GB; registered users keep the defaults (2 GB at once, no jobs)
TRAFFIC = TrafficSettings(anonymous=AnonymousLimits(sync_bytes="50KB"),
                          partner=PartnerLimits(sync_bytes="50KB", async_bytes="1GB"))
#: 12 months of a 60 x 40 box: about 115 kB of values, above the synchronous limit
REQUEST = {"bbox": "100,-40,160,0", "time": "2000-01/2000-12", "format": "nc4"}
#: seconds a job may take to finish (Python start, opening the catalog, writing)
JOB_DEADLINE = 120.0


class StandInHub:
    """Stand-in for the hub's token check (not a test of the hub): ``USERS`` by token."""

    async def user_for_token(self, token: str, via: str) -> HubUser:
        if token not in USERS:
            raise AuthError(401, "The token is unknown, expired or revoked.")
        return USERS[token]


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Service:
    base: str
    db_url: str
    app: Any
    data: Path


@contextlib.contextmanager
def _service(folder: Path, backend: str, slurm_env: dict[str, str] | None = None
             ) -> Iterator[Service]:
    """The data service with its own allocations database and job runtime."""
    folder = reachable_by_accounts(folder)
    catalog = make_catalog(folder / "catalog")
    url = f"sqlite:///{folder / 'alloc.sqlite'}"
    db.upgrade(url)
    today = dt.date.today()
    with db.session_scope(url) as session:
        alloc = core.request_allocation(session, "alice", {
            "project_title": "Big subsets", "pi": "Dr Test", "institution": "NMDC",
            "justification": "testing", "core_hours": 100, "max_cores": 2,
            "memory_per_job_gb": 2, "storage_gb": 10,
            "start_date": today - dt.timedelta(days=1), "end_date": today + dt.timedelta(days=9)})
        core.decide(session, alloc.id, "admin", True, approve=True)
    settings = JobSettings(max_concurrent=2, max_cores=2, max_walltime_s=86400,
                           poll_interval=0.2, kill_grace_s=2.0)
    runtime = JobRuntime(url, data_dir=folder / "data", settings=settings,
                         slurm_env=slurm_env, slurm=backend == "slurm").start()
    try:
        app = create_app(catalog, hub_auth=StandInHub())
        inner = app.state.inner
        inner.state.alloc_db_url = url
        inner.state.ledger = Ledger(url)  # this database's, not the platform's
        inner.state.traffic = TRAFFIC
        inner.state.jobs = asyncjobs.RuntimeJobs(runtime, backend)
        with serving(app) as base:
            yield Service(base, url, app, folder / "data")
    finally:
        runtime.stop(kill_jobs=True)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with _service(tmp_path_factory.mktemp("async-local"), "local") as service:
        yield service


def _wait_finished(base: str, status_url: str, token: str) -> dict[str, Any]:
    """The job's status once it has ended (polled against a deadline)."""
    deadline = time.monotonic() + JOB_DEADLINE
    while True:
        r = requests.get(status_url, headers=_auth(token), timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        if body["state"] not in ("PENDING", "RUNNING"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)  # poll interval of the status, bounded by the deadline


def _open(content: bytes, path: Path) -> xr.Dataset:
    path.write_bytes(content)
    return xr.load_dataset(path)


def _async_path(service: Service, request: dict[str, str], tmp: Path) -> None:
    """413 with an offer -> 202 -> COMPLETED -> the link's file equals the direct one."""
    base = service.base
    url = f"{base}/datasets/cobe_sst2/subset"
    refused = requests.get(url, params=request, headers=_auth(ALICE), timeout=60)
    assert refused.status_code == 413, refused.text
    offered = refused.json()["async"]
    assert offered is not None and offered["limit"] == 10**9, refused.json()
    assert "async=1" in offered["url"]

    accepted = requests.get(offered["url"], headers=_auth(ALICE), timeout=60)
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    location = accepted.headers["Location"]
    assert location == body["status_url"] == f"{base}/jobs/{body['job']}"
    assert body["state"] == "PENDING" and body["estimate"]["bytes"] > 50_000

    done = _wait_finished(base, location, ALICE)
    assert done["state"] == "COMPLETED", done
    link = done["download"]["url"]
    assert link.startswith(f"{base}/jobs/{body['job']}/download?expires=")

    ledger = service.app.state.inner.state.ledger
    before = ledger.served_today("user:alice")
    got = requests.get(link, timeout=60)  # no credentials
    assert got.status_code == 200, got.text
    # charged to the job's owner, although the link's client is anonymous
    deadline = time.monotonic() + 10
    while ledger.served_today("user:alice") < before + len(got.content):
        assert time.monotonic() < deadline, (before, ledger.served_today("user:alice"))
        time.sleep(0.05)  # the traffic layer records once the response has ended
    # (plus at most the last status answer, recorded as its response ended: not the file)
    assert ledger.served_today("user:alice") - before - len(got.content) < 4096
    assert int(got.headers["Content-Length"]) == len(got.content) == done["download"]["bytes"]
    name = done["download"]["filename"]
    assert got.headers["Content-Disposition"] == f'attachment; filename="{name}"'
    # the same request streamed at once, by a user whose limit is higher
    direct = requests.get(url, params=request, headers=_auth(CAROL), timeout=120)
    assert direct.status_code == 200, direct.text
    assert direct.headers["Content-Disposition"] == got.headers["Content-Disposition"]
    suffix = Path(name).suffix
    if request["format"] == "csv":
        head = [line for line in got.text.splitlines() if not line.startswith("#")]
        assert head == [line for line in direct.text.splitlines() if not line.startswith("#")]
    else:
        job_ds = _open(got.content, tmp / f"job{suffix}")
        sync_ds = _open(direct.content, tmp / f"direct{suffix}")
        xr.testing.assert_equal(job_ds, sync_ds)
        aside = {"history", "date_created"}  # provenance: when each was written
        assert {k: v for k, v in job_ds.attrs.items() if k not in aside} == \
            {k: v for k, v in sync_ds.attrs.items() if k not in aside}

    # a link changed or out of date is refused, without credentials or with
    parts = urllib.parse.urlsplit(link)
    query = dict(urllib.parse.parse_qsl(parts.query))
    forged = {**query, "sig": ("0" if query["sig"][0] != "0" else "1") + query["sig"][1:]}
    past = int(time.time()) - 1
    expired = {"expires": str(past),
               "sig": asyncjobs.link_signature(body["job"], "alice", name, past)}
    later = {**query, "expires": str(int(query["expires"]) + 1)}
    for params, word in ((forged, "not valid"), (expired, "expired"), (later, "not valid"),
                         ({}, "not valid")):
        r = requests.get(f"{base}{parts.path}", params=params, headers=_auth(ALICE), timeout=30)
        assert r.status_code == 403 and word in r.json()["detail"], (params, r.text)

    # another user: the job does not exist for them (the sentence of an unknown id)
    theirs = requests.get(location, headers=_auth(BOB), timeout=30)
    unknown = requests.get(f"{base}/jobs/0123456789abcdef", headers=_auth(BOB), timeout=30)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["detail"].replace(body["job"], "?") == \
        unknown.json()["detail"].replace("0123456789abcdef", "?")
    assert requests.get(location, timeout=30).status_code == 401


def test_async_download_on_the_local_backend(local: Service, tmp_path: Path) -> None:
    _async_path(local, REQUEST, tmp_path)


def test_anonymous_async_gets_the_413_without_an_offer(local: Service) -> None:
    r = requests.get(f"{local.base}/datasets/cobe_sst2/subset",
                     params={**REQUEST, "async": "1"}, timeout=60)
    assert r.status_code == 413, r.text
    assert r.json()["async"] is None and r.json()["split"], r.json()
    with db.session_scope(local.db_url) as session:
        assert session.scalar(select(func.count()).select_from(Job)
                              .where(Job.owner != "alice")) == 0


def test_a_user_without_allocation_gets_403_and_no_job(local: Service) -> None:
    r = requests.get(f"{local.base}/datasets/cobe_sst2/subset",
                     params={**REQUEST, "async": "1"}, headers=_auth(BOB), timeout=60)
    assert r.status_code == 403, r.text
    detail = r.json()["detail"]
    assert detail.startswith("No job was queued:") and "no approved allocation" in detail
    assert detail.count(". ") == 0 and detail.endswith(".")
    with db.session_scope(local.db_url) as session:
        assert session.scalar(select(func.count()).select_from(Job)
                              .where(Job.owner == "bob")) == 0


def test_the_login_cookie_cannot_start_a_job(local: Service) -> None:
    """``async=1`` is a GET that queues a job charged to an allocation; the login cookie
    rides along with another site's top-level navigation (SameSite=Lax), so only a token
    in the Authorization header may start one (CSRF)."""
    from oceandata.dataservice.access import COOKIE

    def jobs() -> int:
        with db.session_scope(local.db_url) as session:
            return session.scalar(select(func.count()).select_from(Job)
                                  .where(Job.owner == "alice"))

    before = jobs()
    r = requests.get(f"{local.base}/datasets/cobe_sst2/subset",
                     params={**REQUEST, "async": "1"}, cookies={COOKIE: ALICE}, timeout=60)
    assert r.status_code == 403, r.text
    assert "Authorization header" in r.json()["detail"] and r.json()["detail"].count(". ") == 0
    assert jobs() == before


def test_the_job_program_says_why_it_failed(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    catalog = make_catalog(tmp_path / "catalog")
    args = subset_job.job_arguments(
        catalog=str(catalog.path), dataset="cobe_sst2", version=None,
        subset={"bbox": "100,-40,160,0", "time": "2000-13/2001", "format": "nc4"},
        url="http://127.0.0.1/x", output="x.nc")
    assert subset_job.main([*args, f"--output-dir={tmp_path}"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(subset_job.ERROR_MARK) and "time" in last, last
    assert not list(tmp_path.glob("*.nc")) and not list(tmp_path.glob(".*.part"))
    # a restricted entry the owner is not granted is not opened, whatever the service said
    args = subset_job.job_arguments(
        catalog=str(catalog.path), dataset="secret_sst", version=None,
        subset={"format": "csv"}, url="http://127.0.0.1/x", output="x.csv")
    assert subset_job.main([*args, f"--output-dir={tmp_path}"]) == 1
    assert "not granted" in capsys.readouterr().err


# --------------------------------------------------------------------------- attacks


def _finished_job(service: Service, output: str) -> Path:
    """A COMPLETED download job of alice's whose ``outputs/<output>`` exists; its folder.

    Its arguments are the service's, but *output* is whatever a user submitting the job
    themselves (``POST api/jobs`` of the allocations service) may write.
    """
    job_id = uuid.uuid4().hex[:16]
    workdir = service.data / "jobs" / "alice" / job_id
    (workdir / "outputs" / output).parent.mkdir(parents=True)
    (workdir / "outputs" / output).write_bytes(b"the job's file")
    args = subset_job.job_arguments(catalog="catalog.yaml", dataset="cobe_sst2", version=None,
                                    subset={"format": "nc4"}, url="http://x/", output=output)
    with db.session_scope(service.db_url) as session:
        session.add(Job(id=job_id, owner="alice", backend="local", script=subset_job.SCRIPT_NAME,
                        args=args, cores=1, memory_mb=1024, walltime_s=3600,
                        state=JobState.COMPLETED, workdir=str(workdir)))
    return workdir


def _link(service: Service, job_id: str, name: str) -> str:
    """A valid signed download link of *job_id*'s file *name* (alice's)."""
    expires = int(time.time()) + 600
    sig = asyncjobs.link_signature(job_id, "alice", name, expires)
    return f"{service.base}/jobs/{job_id}/download?expires={expires}&sig={sig}"


def test_a_job_whose_output_is_not_a_plain_name_is_not_served(local: Service) -> None:
    job = _finished_job(local, "sub/x.nc")
    status = requests.get(f"{local.base}/jobs/{job.name}", headers=_auth(ALICE), timeout=30)
    assert status.status_code == 404, status.text
    got = requests.get(_link(local, job.name, "sub/x.nc"), timeout=30)
    assert got.status_code == 403 and "not valid" in got.json()["detail"], got.text
    base = ["--catalog=c", "--dataset=d", "--url=u"]
    assert subset_job.parse_arguments([*base, "--output=x.nc"]) is not None
    for bad in ("../x.nc", ".x.nc", "/etc/x.nc", "x\n.nc", 'x".nc', ""):
        assert subset_job.parse_arguments([*base, f"--output={bad}"]) is None, bad


@pytest.mark.parametrize("swapped", ["outputs", "job"])
def test_a_folder_swapped_for_a_link_after_the_check_is_not_followed(
        local: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swapped: str) -> None:
    job = _finished_job(local, "x.nc")
    folder = job / "outputs" if swapped == "outputs" else job
    decoy = tmp_path / "decoy"  # stands for <data dir>/secrets or another user's folder
    secret = decoy / (job / "outputs").relative_to(folder) / "x.nc"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_bytes(b"root's secret")
    checked = jobs_service.output_file

    def check_then_swap(*args: Any, **kwargs: Any) -> Path:
        """The path check passes; then the owner swaps the folder (the race, made certain)."""
        path = checked(*args, **kwargs)
        folder.rename(folder.with_name(folder.name + ".orig"))
        folder.symlink_to(decoy)
        return path

    monkeypatch.setattr(jobs_service, "output_file", check_then_swap)
    got = requests.get(_link(local, job.name, "x.nc"), timeout=30)
    assert got.status_code in (403, 404) and b"secret" not in got.content, got.text
    assert got.json()["detail"].count(". ") == 0, got.text
    monkeypatch.undo()
    # swapped before the check: no link is offered, and the old one is refused
    status = requests.get(f"{local.base}/jobs/{job.name}", headers=_auth(ALICE), timeout=30)
    assert status.status_code == 200 and "download" not in status.json(), status.text
    again = requests.get(_link(local, job.name, "x.nc"), timeout=30)
    assert again.status_code in (403, 404) and b"secret" not in again.content, again.text


def test_a_job_link_keeps_to_its_owners_daily_quota(local: Service,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    job = _finished_job(local, "x.nc")
    ledger = local.app.state.inner.state.ledger
    ledger.record("user:alice", "cobe_sst2", "subset", 2000)
    small = TrafficSettings(anonymous=TRAFFIC.anonymous, partner=PartnerLimits(
        sync_bytes="50KB", async_bytes="1GB", daily_bytes="1KB"))
    monkeypatch.setattr(local.app.state.inner.state, "traffic", small)
    got = requests.get(_link(local, job.name, "x.nc"), timeout=30)  # an anonymous client
    assert got.status_code == 429, got.text
    assert 1 <= int(got.headers["Retry-After"]) <= 86400
    detail = got.json()["detail"]
    assert "daily quota" in detail and detail.count(". ") == 0, detail
    assert b"the job's file" not in got.content


# --------------------------------------------------------------------------- Slurm


@pytest.fixture(scope="module")
def on_slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service with its jobs on a real single-node Slurm cluster."""
    with contextlib.ExitStack() as stack:
        try:
            folder = reachable_by_accounts(tmp_path_factory.mktemp("async-slurm"))
            cluster = stack.enter_context(single_node_slurm(folder / "slurm"))
        except SlurmUnavailable as exc:
            if in_ci():
                pytest.fail(f"Slurm is required in CI: {exc}", pytrace=False)
            pytest.skip(f"no single-node Slurm here: {exc}")
        yield stack.enter_context(_service(folder / "service", "slurm", cluster.env()))


@pytest.mark.slow
def test_async_download_on_slurm(on_slurm: Service, tmp_path: Path) -> None:
    _async_path(on_slurm, {**REQUEST, "format": "csv"}, tmp_path)
