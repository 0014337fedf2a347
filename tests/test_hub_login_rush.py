"""A login rush is queued, not failed (oceandata.hub.spawnqueue, docs/operations.md).

One hub (started the way ``oceandata hub up`` starts it) serves the file. Thirty users log
in within a few seconds and start their servers at once through the path a browser takes:
the hub's spawn URL, then the waiting page, whose ``<meta http-equiv="refresh">`` is followed
as a browser follows it, until the page sends the user into JupyterLab. Every user must end
in a running server, queued users must see their place in the queue go down, and the hub
log must show no failed spawn.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import re
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from oceandata.hub.spawnqueue import SpawnQueue
from tests.hub_helpers import Hub, HubClient, admin_client, running_hub

pytestmark = [pytest.mark.slow]

USERS = [f"rush{i:02d}" for i in range(1, 31)]
#: the longest a user may wait from the click to their server (30 starts on 2 cores)
RUSH_TIMEOUT = 900
#: what the hub log says when a spawn fails (JupyterHub's messages) or is refused
SPAWN_FAILURES = re.compile(
    r"failed to start|never showed up|Unhandled error|Error starting server|Spawner failed|"
    r"Failed to add .* to proxy|api_request to (the )?proxy failed|Repeated api_request|"
    r"Too many users trying|Active user limit|Aborting due to|\b429 (GET|POST)")
POSITION = re.compile(r'id="queue-position">(\d+)<')
REFRESH = re.compile(r'<meta http-equiv="refresh" content="(\d+)">')


def test_the_queue_starts_spawns_in_order_and_never_more_than_its_slots() -> None:
    """The queue alone, with stand-ins for spawners (``pending`` is all it reads)."""

    async def scenario() -> None:
        queue = SpawnQueue(slots=2, max_waiting=10)
        log = SimpleNamespace(info=lambda *a: None)
        spawners = [SimpleNamespace(pending="spawn", _log_name=f"u{i}", log=log)
                    for i in range(5)]
        started: list[int] = []

        async def spawn(i: int) -> None:
            await queue.wait_turn(spawners[i])
            started.append(i)

        tasks = [asyncio.create_task(spawn(i)) for i in range(5)]
        await asyncio.sleep(0.1)
        assert started == [0, 1]
        assert [queue.place(s).position for s in spawners[2:]] == [1, 2, 3]
        assert queue.place(spawners[0]) is None
        tasks[3].cancel()  # a server stopped while it waits leaves the queue
        await asyncio.gather(tasks[3], return_exceptions=True)
        assert queue.place(spawners[4]).position == 2
        spawners[0].pending = None  # a start ends: the next spawn gets its slot
        await asyncio.wait_for(tasks[2], 5)
        assert started == [0, 1, 2] and queue.place(spawners[4]).position == 1
        assert queue.counts() == {"waiting": 1, "starting": 2, "slots": 2}
        spawners[1].pending = spawners[2].pending = None
        await asyncio.wait_for(tasks[4], 5)
        assert started == [0, 1, 2, 4]
        assert queue.spawn_limit() == 12
        assert copy.deepcopy(queue) is queue  # traitlets copies config values

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    with running_hub(tmp_path_factory.mktemp("rush") / "var") as h:
        yield h


@pytest.fixture(scope="module")
def admin(hub: Hub) -> HubClient:
    return admin_client(hub)


@pytest.fixture(scope="module")
def signed_up(hub: Hub, admin: HubClient):
    """The thirty users, signed up and approved (their servers stopped afterwards)."""

    def sign_up(name: str) -> None:
        HubClient(hub, name).signup()
        r = admin.approve(name)
        assert r.status_code == 200, r.text

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(sign_up, USERS))
    yield USERS
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda n: admin.api("DELETE", f"/hub/api/users/{n}/server"), USERS))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        users = admin.api("GET", "/hub/api/users").json()
        if not any(u.get("servers") for u in users if u["name"] in USERS):
            return
        time.sleep(1)  # poll interval of the servers' stop


@dataclass
class Journey:
    """What one user's browser went through."""

    name: str
    clicked: float = 0.0
    landed: float | None = None
    positions: list[int] = field(default_factory=list)
    pages: int = 0
    error: str | None = None

    @property
    def seconds(self) -> float:
        assert self.landed is not None
        return self.landed - self.clicked


def _browse(hub: Hub, name: str, start: threading.Barrier) -> Journey:
    """Log in, click the spawn URL, follow the waiting page until JupyterLab answers."""
    journey = Journey(name)
    user = HubClient(hub, name)
    # a browser sends a GET again when the server closed the kept-alive connection just as
    # the request went out (the proxy closes idle connections after 5 s; the page reloads
    # every 3-15 s): the same for this session
    user.session.mount("http://", HTTPAdapter(max_retries=Retry(
        total=3, connect=3, read=2, status=0, allowed_methods={"GET"}, backoff_factor=0.2)))
    step = "login"
    try:
        start.wait(60)
        assert user.login(), f"{name} could not log in"
        step = "spawn URL"
        journey.clicked = time.monotonic()
        r = user.session.get(f"{hub.url}/hub/spawn/{name}", allow_redirects=False, timeout=60)
        assert r.status_code == 302, f"spawn URL answered {r.status_code}: {r.text[:300]}"
        url = requests.compat.urljoin(hub.url, r.headers["Location"])
        assert f"/hub/spawn-pending/{name}" in url, url
        deadline = journey.clicked + RUSH_TIMEOUT
        step = "waiting page"
        while time.monotonic() < deadline:
            r = user.session.get(url, allow_redirects=False, timeout=60)
            journey.pages += 1
            if r.status_code == 302:
                break
            assert r.status_code == 200, f"waiting page answered {r.status_code}: {r.text[:300]}"
            found = POSITION.search(r.text)
            if found:
                journey.positions.append(int(found[1]))
            refresh = REFRESH.search(r.text)
            assert refresh, f"the waiting page does not refresh itself:\n{r.text[-2000:]}"
            time.sleep(int(refresh[1]))  # the page's own refresh, as a browser waits
        else:
            raise TimeoutError(f"{name} still waiting after {RUSH_TIMEOUT} s")
        # the page sends the user to the server: JupyterLab (after the server's OAuth)
        step = "JupyterLab"
        lab = user.session.get(requests.compat.urljoin(hub.url, r.headers["Location"]),
                               timeout=120)
        assert lab.status_code == 200 and lab.url.endswith(f"/user/{name}/lab"), (
            f"landed on {lab.status_code} {lab.url}")
        journey.landed = time.monotonic()
    except Exception as exc:  # reported for all users together below
        journey.error = f"at the {step}: {type(exc).__name__}: {exc}"
    return journey


def test_thirty_users_starting_at_once_all_get_a_server(hub: Hub, admin: HubClient,
                                                       signed_up: list[str]) -> None:
    log_before = len(hub.log())
    start = threading.Barrier(len(signed_up))
    with concurrent.futures.ThreadPoolExecutor(len(signed_up)) as pool:
        journeys = list(pool.map(lambda n: _browse(hub, n, start), signed_up))
    log = hub.log()[log_before:]

    failed = [f"{j.name}: {j.error}" for j in journeys if j.error]
    assert not failed, "\n".join(failed) + "\n--- hub log ---\n" + log[-6000:]
    # every server runs, as the hub's API says
    users = {u["name"]: u for u in admin.api("GET", "/hub/api/users").json()}
    assert all(users[n]["servers"].get("", {}).get("ready") for n in signed_up)
    # no spawn failed or was refused, and the queue was used
    assert not SPAWN_FAILURES.findall(log), "\n".join(
        line for line in log.splitlines() if SPAWN_FAILURES.search(line))[-4000:]
    assert "spawn queue:" in log
    # queued users saw their place, never going back, and going down while they waited
    queued = [j for j in journeys if j.positions]
    assert len(queued) >= len(signed_up) // 2, [j.positions for j in journeys]
    for j in queued:
        assert j.positions == sorted(j.positions, reverse=True), (j.name, j.positions)
    assert any(j.positions[0] > j.positions[-1] for j in queued)

    times = sorted(j.seconds for j in journeys)
    print(f"\nlogin rush: {len(times)} users, click to JupyterLab: first {times[0]:.1f} s, "
          f"median {statistics.median(times):.1f} s, last {times[-1]:.1f} s; "
          f"longest queue position seen {max(max(j.positions) for j in queued)}; "
          f"waiting pages loaded {sum(j.pages for j in journeys)}")
    Path(hub.runtime.hub_dir / "rush.txt").write_text(
        "\n".join(f"{j.name} {j.seconds:.1f} {j.positions}" for j in journeys))
