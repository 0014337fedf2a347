"""A partner's project, end to end, through the real services and the command line.

On the shared platform (:func:`tests.conftest.projects_hub`: the real hub with
configurable-http-proxy, the allocations and open-data services, one Unix account per
user): a PI's request is approved with a small storage quota; the PI adds a member;
the member uploads a real NetCDF file (``oceandata upload``), ingests it into the
project's versioned store (``oceandata ingest --project``), sees it through the data
service with their token while an outsider and an anonymous client do not; an append
that would exceed the quota is refused before it writes; the member asks to publish the
entry (``oceandata publish-request``), an administrator approves it, and an anonymous,
unmodified ``pystac-client`` finds it in the open catalog with its citation.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from tests.hub_helpers import Hub, HubClient, new_user

pytestmark = [pytest.mark.slow]

pystac_client = pytest.importorskip("pystac_client")

SERVICE = "/services/allocations"
DATA = "/services/data"
OCEANDATA = str(Path(sys.executable).with_name("oceandata"))
TODAY = dt.date.today()


def cli(hub: Hub, user: HubClient, *args: str, cwd: Path,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """``oceandata ARGS`` as *user* runs it, in a subprocess, against the hub."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTERHUB_", "OCEANDATA_ALLOC_", "OCEANDATA_DATA_DIR",
                                "OCEANDATA_CATALOG"))}
    env.update({"OCEANDATA_ALLOC_URL": f"{hub.url}{SERVICE}",
                "OCEANDATA_TOKEN": user.token or "",
                "OCEANDATA_DATA_DIR": str(hub.runtime.data_dir)})
    done = subprocess.run([OCEANDATA, *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=cwd)
    if check:
        assert done.returncode == 0, (args, done.returncode, done.stdout, done.stderr)
    return done


def api(user: HubClient | None, method: str, url: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"token {user.token}"} if user is not None else {}
    return requests.request(method, url, headers=headers, timeout=60,
                            allow_redirects=False, **kwargs)


def test_a_partner_goes_from_an_approved_project_to_a_published_entry(
        projects_hub: Hub, projects_admin: HubClient, sample, tmp_path: Path) -> None:
    hub, admin = projects_hub, projects_admin
    tag = uuid.uuid4().hex[:5]
    pi, member, outsider = (new_user(hub, admin, f"pe-{role}{tag}")
                            for role in ("pi", "mem", "out"))
    from tests.test_publishing_core import fixed_cobe

    # real files, with the attributes a strict CF/ACDD check asks of a published entry
    year1 = fixed_cobe(Path(sample("cobe_sst2_1950")), tmp_path / "cobe_sst2_1950.nc")
    year2 = fixed_cobe(Path(sample("cobe_sst2_1951")), tmp_path / "cobe_sst2_1951.nc")
    assert year1.stat().st_size > 1_000_000

    # the PI's request; the admin approves it with a quota that holds the upload and one
    # store of it (above 80% of it: the members are warned), not an append of a second year
    alloc = json.loads(cli(
        hub, pi, "alloc", "request", "--title", "SST of the Western Pacific",
        "--pi", "Dr. P. Investigator", "--institution", "Partner Institute",
        "--justification", "A project store of COBE-SST2 years.", "--core-hours", "10",
        "--max-cores", "2", "--memory-gb", "2", "--storage-gb", "1",
        "--start", (TODAY - dt.timedelta(days=1)).isoformat(),
        "--end", (TODAY + dt.timedelta(days=30)).isoformat(), "--json",
        cwd=tmp_path).stdout)
    quota_gb = 2.6 * year1.stat().st_size / 1e9
    cli(hub, admin, "alloc", "approve", str(alloc["id"]), "--storage-gb", f"{quota_gb:.6f}",
        cwd=tmp_path)
    project = str(alloc["id"])

    # two members: the PI adds one; the outsider is in no project
    cli(hub, pi, "alloc", "members", project, "add", member.name, cwd=tmp_path)
    listed = json.loads(cli(hub, member, "alloc", "members", project, "--json",
                            cwd=tmp_path).stdout)
    assert {(m["user"], m["role"]) for m in listed["members"]} == {
        (pi.name, "pi"), (member.name, "member")}
    refused = cli(hub, outsider, "alloc", "members", project, cwd=tmp_path, check=False)
    assert refused.returncode == 2 and f"no project {project} of yours" in refused.stderr

    # the member uploads a real file and ingests it into the project's store
    cli(hub, member, "upload", str(year1), "--project", project, cwd=tmp_path)
    name = f"wp_sst_{tag}"
    cli(hub, member, "ingest", year1.name, "--project", project, "--name", name,
        cwd=tmp_path)

    # members see it through the data service (as p<project>.<name>); the outsider and
    # the public do not, not even in a search
    base = f"{hub.url}{DATA}"
    qualified = f"p{project}.{name}"
    assert api(member, "GET", f"{base}/datasets/{qualified}").status_code == 200
    assert qualified in api(member, "GET", f"{base}/datasets.json").text
    for who in (outsider, None):
        assert api(who, "GET", f"{base}/datasets/{qualified}").status_code == 404
        assert qualified not in api(who, "GET", f"{base}/datasets.json").text
        assert api(who, "GET", f"{base}/stac/collections/{qualified}").status_code == 404

    # an append that would exceed the quota is refused before it writes anything
    store = Path(hub.runtime.data_dir) / "projects" / project / "stores"
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    refused = cli(hub, member, "ingest", str(year2), "--project", project, "--name", name,
                  "--append", cwd=tmp_path, check=False)
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert "quota" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before

    # the member asks to publish it; the admin approves; the public finds it
    request = json.loads(cli(
        hub, member, "publish-request", name, "--project", project, "--licence",
        "CC-BY-4.0", "--citation", "Investigator, P. (2026). Western Pacific SST.",
        "--author", "P. Investigator;Partner Institute", "--json", cwd=tmp_path).stdout)
    r = api(admin, "POST", f"{hub.url}{SERVICE}/api/publish-requests/{request['id']}/approve",
            json={})
    assert r.status_code == 200, r.text
    published = r.json()
    assert published["pid"]

    stac = pystac_client.Client.open(f"{base}/stac")
    items = list(stac.search(collections=[published["published_name"]], max_items=10).items())
    assert [i.id for i in items] == [published["published_name"]]
    assert published["pid"] in items[0].properties["sci:citation"]
    # and it opens for anyone, equal to what the member ingested
    import xarray as xr

    opened = xr.open_zarr(f"{base}/datasets/{published['published_name']}/zarr",
                          consolidated=True)
    with xr.open_dataset(year1) as source:
        xr.testing.assert_allclose(opened["sst"].load(), source["sst"].load())

    _what_they_see(hub, member, project, name, published["pid"])


def _what_they_see(hub: Hub, member: HubClient, project: str, name: str, pid: str) -> None:
    """The pages of the path, in Chromium: the member's project page (members, storage
    and its warning), the upload and publish pages, the admin's queue, and the public
    landing page of the PID; each screenshot kept and checked not blank."""
    import re

    from tests.browser_helpers import ARTIFACTS, keep_screenshot, launched_browser
    from tests.hub_helpers import PASSWORD

    base = f"{hub.url}{SERVICE}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def shot(page, label: str) -> None:
        keep_screenshot(page, f"projects-{label}")

    def login(page, user: str, password: str) -> None:
        page.goto(f"{hub.url}/hub/login?next=/hub/home")
        page.fill("#username_input", user)
        page.fill("#password_input", password)
        page.click("#login_submit")
        page.wait_for_url(re.compile(r"/hub/home"))

    with launched_browser() as browser:
        ctx = browser.new_context()
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        login(page, member.name, PASSWORD)
        assert page.goto(f"{base}/projects/{project}").status == 200
        assert page.text_content("#role").strip() == "member"
        assert member.name in page.text_content("#members")
        # the workspace is near its quota after the ingest: every page warns the members
        assert "quota" in page.text_content(".storage-warning")
        shot(page, "project")
        assert page.goto(f"{base}/projects/{project}/upload").status == 200
        assert "cobe_sst2_1950.nc" in page.text_content("main")
        shot(page, "upload")
        assert page.goto(f"{base}/projects/{project}/publish").status == 200
        assert "approved" in page.text_content("#requests")
        shot(page, "publish")
        ctx.close()

        admin = browser.new_context()
        page = admin.new_page()
        login(page, hub.runtime.admin, hub.admin_password)
        assert page.goto(f"{base}/admin/publish").status == 200
        assert pid in page.text_content("main")
        shot(page, "publish-queue")
        admin.close()

        public = browser.new_context(locale="zh-CN", extra_http_headers={
            "Accept-Language": "zh-CN"})
        page = public.new_page()
        assert page.goto(f"{hub.url}{DATA}/pid/{pid}").status == 200
        assert pid in page.text_content("#how-to-cite")
        assert name in page.text_content("main") or pid in page.text_content("main")
        shot(page, "landing-zh")
        public.close()
