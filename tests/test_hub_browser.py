"""The platform end to end in a real browser (headless Chromium driven by Playwright).

A user signs up and is approved through the REST API, logs in at ``/hub/login`` in the
browser, the hub spawns the server and JupyterLab loads (a screenshot is kept under
``var/test-artifacts/``). In that server a kernel opens a catalog entry, starts a
dask-gateway cluster with :func:`oceandata.compute.cluster` and computes a mean on it.
Cluster dashboards go through the hub's OAuth login: the owner's browser sees the Dask
status page, another user's browser gets 404.

Chromium is the Debian package (``/usr/bin/chromium``, no browser download); it is
installed with apt-get when missing and root. Without it the tests are skipped, except
in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser_helpers import ARTIFACTS, launched_browser
from tests.hub_helpers import PASSWORD, Hub, HubClient, admin_client, new_user, running_hub

pytestmark = [
    pytest.mark.slow,
    # dask-gateway's Gateway.__del__ touches its stopped event loop when collected
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

#: milliseconds: spawning a server and loading JupyterLab on a small shared machine
SPAWN_MS = 240_000
PAGE_MS = 60_000




@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with launched_browser() as b:
        yield b


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with running_hub(tmp_path_factory.mktemp("hub-browser") / "var") as h:
        yield h


@pytest.fixture(scope="module")
def admin(hub: Hub) -> HubClient:
    return admin_client(hub)


@pytest.fixture(scope="module")
def alice(hub: Hub, admin: HubClient) -> HubClient:
    return new_user(hub, admin, f"alice{uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="module")
def alice_page(browser, hub: Hub, alice: HubClient):
    """Alice's browser tab, logged in through the hub's login form (server spawned)."""
    context = browser.new_context(viewport={"width": 1366, "height": 850})
    page = context.new_page()
    page.set_default_timeout(PAGE_MS)
    try:
        yield page
    finally:
        context.close()


def _browser_login(page, hub: Hub, name: str, next_url: str | None = None) -> None:
    """Fill and submit the hub's login form in *page*."""
    url = f"{hub.url}/hub/login" + (f"?next={next_url}" if next_url else "")
    response = page.goto(url)
    assert response is not None and response.status == 200, url
    page.fill("#username_input", name)
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")


def _not_blank(png: Path) -> float:
    """The mean standard deviation of the screenshot's RGB channels (0 for a flat image).

    Parameters
    ----------
    png
        The screenshot.

    Returns
    -------
    float
        Mean over R, G and B of the pixel standard deviation; falls back to the file size
        in kB when Pillow is not installed.
    """
    try:
        from PIL import Image, ImageStat
    except ImportError:
        return png.stat().st_size / 1000
    with Image.open(png) as img:
        stat = ImageStat.Stat(img.convert("RGB"))
        return sum(stat.stddev) / 3


def test_login_in_the_browser_opens_jupyterlab(hub: Hub, alice: HubClient, alice_page,
                                              tmp_path: Path) -> None:
    page = alice_page
    _browser_login(page, hub, alice.name)
    # the hub spawns the server (spawn-pending page) and redirects to JupyterLab
    page.wait_for_url(re.compile(rf"/user/{alice.name}/lab"), timeout=SPAWN_MS)
    # JupyterLab's shell is built and its launcher shown: the UI is really ready
    page.wait_for_selector("#jp-main-dock-panel", state="visible", timeout=SPAWN_MS)
    page.wait_for_selector(".jp-Launcher", state="visible", timeout=SPAWN_MS)
    page.wait_for_selector(".jp-LauncherCard", state="visible", timeout=SPAWN_MS)
    assert "JupyterLab" in page.title()

    shot = tmp_path / "jupyterlab.png"
    page.screenshot(path=str(shot), full_page=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "jupyterlab.png")
    spread = _not_blank(shot)
    assert spread > 5, f"the JupyterLab screenshot looks blank (pixel spread {spread:.2f})"

    # the hub sees the server the browser started
    server = alice.api("GET", f"/hub/api/users/{alice.name}").json()["servers"][""]
    assert server["ready"], server


KERNEL_CODE = """
import numpy as np
import oceandata
from oceandata.compute import cluster

ds = oceandata.open_dataset("oisst_wa")
direct = float(np.mean(np.asarray(ds["sst"].values)))
c = cluster(workers=1)
try:
    print("CLUSTER_TYPE", type(c).__name__)
    with c.get_client() as client:
        client.wait_for_workers(1, timeout=180)
        print("SCHEDULER", client.scheduler.address)
        on_cluster = float(client.compute(ds["sst"].mean()).result(timeout=180))
        print("WORKERS", len(client.scheduler_info()["workers"]))
finally:
    c.shutdown()
print("DIRECT", repr(direct))
print("ON_CLUSTER", repr(on_cluster))
print("N", ds.sizes["time"])
"""


def _printed(out: str, key: str) -> str:
    match = re.search(rf"^{key} (.+)$", out, re.MULTILINE)
    assert match, f"{key} not printed:\n{out}"
    return match.group(1).strip()


def test_kernel_computes_on_a_gateway_cluster(hub: Hub, alice: HubClient) -> None:
    alice.start_server()  # the server the browser started, or a new one
    out = alice.run_code(KERNEL_CODE, timeout=400)
    assert _printed(out, "CLUSTER_TYPE") == "GatewayCluster", out
    assert _printed(out, "SCHEDULER").startswith("gateway://"), out
    assert _printed(out, "WORKERS") == "1", out
    assert int(_printed(out, "N")) == 14975, out
    direct = float(_printed(out, "DIRECT"))
    on_cluster = float(_printed(out, "ON_CLUSTER"))
    assert 10 < direct < 30, out  # daily SST off Western Australia, degC
    assert on_cluster == pytest.approx(direct, rel=1e-12), out
    # the cluster was shut down
    gateway = alice.gateway()
    try:
        assert gateway.list_clusters() == []
    finally:
        gateway.close()


def _oauth_log(hub: Hub) -> str:
    """The hub's log lines about OAuth, to say why a dashboard login went wrong."""
    lines = [line for line in hub.log().splitlines()
             if "oauth" in line.lower() or "redirect uri" in line.lower()]
    return "\nhub log (OAuth):\n" + "\n".join(lines[-8:])


def test_dashboard_only_for_its_owner_in_the_browser(browser, hub: Hub, admin: HubClient,
                                                    alice: HubClient, alice_page) -> None:
    bob = new_user(hub, admin, f"bob{uuid.uuid4().hex[:6]}")
    gateway = alice.gateway()
    cluster = gateway.new_cluster()
    bob_context = browser.new_context()
    try:
        link = cluster.dashboard_link
        assert link == f"{hub.url}/services/dask-gateway/clusters/{cluster.name}/status"

        # alice's browser, logged in at the hub: the gate's OAuth login, then the dashboard
        if "/hub/" not in alice_page.url and f"/user/{alice.name}/" not in alice_page.url:
            _browser_login(alice_page, hub, alice.name, next_url="/hub/home")
        response = alice_page.goto(link)
        assert response is not None and response.status == 200, (
            f"the owner's browser got {response and response.status} at {alice_page.url}"
            f"{_oauth_log(hub)}")
        assert alice_page.url.startswith(link), alice_page.url
        alice_page.wait_for_function("document.title.includes('Dask')", timeout=PAGE_MS)

        # bob's browser, logged in at the hub as bob (no server spawned): 404
        bob_page = bob_context.new_page()
        bob_page.set_default_timeout(PAGE_MS)
        _browser_login(bob_page, hub, bob.name, next_url="/hub/home")
        bob_page.wait_for_url(re.compile(r"/hub/home"))
        response = bob_page.goto(link)
        assert response is not None and response.status == 404, (
            f"another user's browser got {response and response.status} at {bob_page.url}"
            f"{_oauth_log(hub)}")
        assert bob_page.url.startswith(link), bob_page.url
        assert "Dask" not in bob_page.title()
        # an unknown cluster is answered the same way
        response = bob_page.goto(link.replace(cluster.name, "0" * 32))
        assert response is not None and response.status == 404
    finally:
        bob_context.close()
        cluster.shutdown()
        gateway.close()
