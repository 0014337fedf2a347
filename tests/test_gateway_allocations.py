"""dask-gateway and allocations: partners need one, clusters fit it and are charged to it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from tests.hub_helpers import Hub, HubClient, admin_client, new_user, running_hub, wait_for_service
from tests.test_alloc_service import api, request_body

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    mp = pytest.MonkeyPatch()
    mp.setenv("OCEANDATA_GATEWAY_USAGE_PERIOD", "1")  # charge every second
    try:
        with running_hub(tmp_path_factory.mktemp("hub-gw-alloc") / "var") as h:
            wait_for_service(h)
            yield h
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def admin(hub: Hub) -> HubClient:
    return admin_client(hub)


def _partner(hub: Hub, admin: HubClient) -> HubClient:
    user = new_user(hub, admin, f"partner{uuid.uuid4().hex[:6]}")
    r = admin.api("POST", "/hub/api/groups/partners/users", json={"users": [user.name]})
    assert r.status_code == 200, r.text
    user.new_token()  # a token minted after joining the group carries it
    return user


def _new_cluster(hub: Hub, user: HubClient, **options) -> requests.Response:
    return requests.post(f"{hub.url}/services/dask-gateway/api/v1/clusters/",
                         json={"cluster_options": options}, timeout=60,
                         headers={"Authorization": f"jupyterhub {user.token}"})


def _approved(admin: HubClient, user: HubClient, **amounts) -> int:
    alloc_id = api(user, "POST", "allocations", json=request_body(**amounts)).json()["id"]
    r = api(admin, "POST", f"allocations/{alloc_id}/approve", json={})
    assert r.status_code == 200, r.text
    return alloc_id


def _wait(predicate, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)  # poll interval of the condition
    pytest.fail(f"{what} within {timeout} s")


def test_partner_without_allocation_gets_no_cluster(hub: Hub, admin: HubClient) -> None:
    p = _partner(hub, admin)
    r = _new_cluster(hub, p)
    assert r.status_code == 422
    assert "no approved allocation in force" in r.json()["error"]


def test_cluster_fits_the_allocation_and_is_charged(hub: Hub, admin: HubClient) -> None:
    p = _partner(hub, admin)
    alloc_id = _approved(admin, p, max_cores=3, memory_per_job_gb=4, core_hours=100)
    r = _new_cluster(hub, p, worker_memory=6)
    assert r.status_code == 422 and "4 GB per job" in r.json()["error"]
    # the partners' group allows 4 cores; the allocation narrows that to 3
    r = _new_cluster(hub, p, cluster_cores=4)
    assert r.status_code == 201, r.text
    name = r.json()["name"]
    gw = f"{hub.url}/services/dask-gateway/api/v1/clusters/{name}"
    auth = {"Authorization": f"jupyterhub {p.token}"}
    try:
        _wait(lambda: requests.get(gw, headers=auth, timeout=30).json()["status"] == "RUNNING",
              "the cluster running")
        assert requests.post(f"{gw}/scale", json={"count": 1}, headers=auth,
                             timeout=30).status_code == 200

        def charged() -> float:
            rows = api(p, "GET", "usage").json()
            return sum(r["core_hours"] for r in rows
                       if r["allocation_id"] == alloc_id and r["source"] == "gateway")

        first = _wait(charged, "gateway usage charged to the allocation")
        # the cluster keeps being charged, at no more than its cap of 3 cores
        t0, c0 = time.monotonic(), first
        second = _wait(lambda: charged() > c0 + 1e-6 and charged(), "a second charge")
        assert (second - c0) * 3600 <= 3 * (time.monotonic() - t0 + 2)
        detail = api(p, "GET", f"allocations/{alloc_id}").json()
        assert detail["used_core_hours"] == pytest.approx(charged(), rel=1e-6)
    finally:
        requests.delete(gw, headers=auth, timeout=30)


def test_exhausted_allocation_stops_its_cluster(hub: Hub, admin: HubClient) -> None:
    p = _partner(hub, admin)
    # 0.002 core-hours = 7.2 core-seconds: a scheduler (1 core) uses it up in ~7 s
    _approved(admin, p, max_cores=2, memory_per_job_gb=4, core_hours=0.002)
    r = _new_cluster(hub, p, cluster_cores=2)
    assert r.status_code == 201, r.text
    name = r.json()["name"]
    gw = f"{hub.url}/services/dask-gateway/api/v1/clusters/{name}"
    auth = {"Authorization": f"jupyterhub {p.token}"}
    _wait(lambda: requests.get(gw, headers=auth, timeout=30).json()["status"]
          in ("STOPPING", "STOPPED"), "the cluster stopped when its allocation ran out")
    r = _new_cluster(hub, p, cluster_cores=2)
    assert r.status_code == 422 and "exhausted" in r.json()["error"]


def test_a_member_in_two_projects_names_one_and_the_cluster_stays_charged_to_it(
        hub: Hub, admin: HubClient) -> None:
    member, pi = _partner(hub, admin), _partner(hub, admin)
    own, shared = _approved(admin, member), _approved(admin, pi)
    stranger = _approved(admin, _partner(hub, admin))
    assert api(pi, "POST", f"projects/{shared}/members",
               json={"user": member.name}).status_code == 200
    # in two projects, none named and no default: refused at the start, with one line
    r = _new_cluster(hub, member, cluster_cores=2)
    assert r.status_code == 422 and f"projects {own}, {shared}" in r.json()["error"]
    r = _new_cluster(hub, member, cluster_cores=2, allocation=stranger)
    assert r.status_code == 422 and f"no allocation {stranger} of yours" in r.json()["error"]
    r = _new_cluster(hub, member, cluster_cores=2, allocation=shared)
    assert r.status_code == 201, r.text
    gw = f"{hub.url}/services/dask-gateway/api/v1/clusters/{r.json()['name']}"
    auth = {"Authorization": f"jupyterhub {member.token}"}

    def charged(alloc_id: int) -> float:
        return sum(u["core_hours"] for u in api(admin, "GET", "usage").json()
                   if u["allocation_id"] == alloc_id and u["user"] == member.name
                   and u["source"] == "gateway")

    try:
        first = _wait(lambda: charged(shared), "the cluster charged to the named project")
        # a default chosen later does not move a running cluster's charge
        assert api(member, "PUT", "settings",
                   json={"default_allocation": own}).status_code == 200
        _wait(lambda: charged(shared) > first, "a charge after the default changed")
        assert charged(own) == 0.0
        # removed from the project: the (partner's) cluster is stopped
        assert api(pi, "DELETE",
                   f"projects/{shared}/members/{member.name}").status_code == 200
        _wait(lambda: requests.get(gw, headers=auth, timeout=30).json()["status"]
              in ("STOPPING", "STOPPED"), "the cluster stopped when its user left the project")
    finally:
        requests.delete(gw, headers=auth, timeout=30)
