"""The allocations service over REST, run by a real JupyterHub as a managed service.

One hub (module scope, started as ``oceandata hub up`` starts it) runs the service at
``/services/allocations/``; users are signed up and approved through the hub, and call
the service with their own JupyterHub tokens through the hub's proxy.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from oceandata.alloc import core, db
from oceandata.alloc.models import ServedBytes
from tests.hub_helpers import Hub, HubClient, admin_client, new_user, running_hub, wait_for_service

pytestmark = [pytest.mark.slow]

SERVICE = "/services/allocations"
TODAY = dt.date.today()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with running_hub(tmp_path_factory.mktemp("hub-alloc") / "var") as h:
        wait_for_service(h)
        yield h


@pytest.fixture(scope="module")
def admin(hub: Hub) -> HubClient:
    return admin_client(hub)


@pytest.fixture(scope="module")
def db_url(hub: Hub) -> str:
    """The service's database (the default of the hub configuration)."""
    return f"sqlite:///{hub.runtime.data_dir / 'alloc' / 'alloc.sqlite'}"


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def request_body(**changes: Any) -> dict[str, Any]:
    body = {"project_title": "Argo climatology of the South China Sea", "pi": "Dr. B. Float",
            "institution": "Partner University", "justification": "Gridded T/S fields.",
            "core_hours": 500, "max_cores": 16, "memory_per_job_gb": 32, "storage_gb": 200,
            "start_date": (TODAY - dt.timedelta(days=1)).isoformat(),
            "end_date": (TODAY + dt.timedelta(days=180)).isoformat(),
            "datasets": ["argo_2902696"]}
    body.update(changes)
    return body


def api(user: HubClient, method: str, path: str, **kw: Any) -> requests.Response:
    return user.api(method, f"{SERVICE}/api/{path}", allow_redirects=False, **kw)


def test_unauthenticated_requests_are_refused(hub: Hub) -> None:
    for path in ("allocations", "allocations/1", "me", "usage"):
        r = requests.get(f"{hub.url}{SERVICE}/api/{path}", timeout=30, allow_redirects=False)
        assert r.status_code == 401, (path, r.status_code, r.text)
        assert "JupyterHub token" in r.json()["error"]
    r = requests.post(f"{hub.url}{SERVICE}/api/allocations", json=request_body(), timeout=30,
                      allow_redirects=False)
    assert r.status_code == 401
    r = requests.get(f"{hub.url}{SERVICE}/api/allocations", timeout=30,
                     headers={"Authorization": "token not-a-real-token"})
    assert r.status_code == 401
    # a browser is sent to the hub's OAuth login
    r = requests.get(f"{hub.url}{SERVICE}/request", timeout=30, allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/hub/api/oauth2/authorize?")


def test_partners_see_only_their_own_allocations(hub: Hub, admin: HubClient) -> None:
    alice = new_user(hub, admin, _name("alice"))
    bob = new_user(hub, admin, _name("bob"))
    r = api(alice, "POST", "allocations", json=request_body())
    assert r.status_code == 201, r.text
    mine = r.json()
    assert mine["owner"] == alice.name and mine["status"] == "pending"
    assert mine["audit"][0]["action"] == "request"

    assert api(bob, "GET", f"allocations/{mine['id']}").status_code == 404
    assert mine["id"] not in [a["id"] for a in api(bob, "GET", "allocations").json()]
    assert [a["id"] for a in api(alice, "GET", "allocations").json()] == [mine["id"]]
    assert api(alice, "GET", f"allocations/{mine['id']}").json()["owner"] == alice.name
    # the admin sees it, also in the pending filter
    assert mine["id"] in [a["id"] for a in api(admin, "GET", "allocations?status=pending")
                          .json()]
    assert api(alice, "GET", "allocations?status=nonsense").status_code == 400
    # bob cannot decide on it either, nor on a number that does not exist
    assert api(bob, "POST", f"allocations/{mine['id']}/approve").status_code == 403
    assert api(admin, "POST", "allocations/999999/approve").status_code == 404


def test_invalid_requests_get_400_with_the_reason(hub: Hub, admin: HubClient) -> None:
    carol = new_user(hub, admin, _name("carol"))
    r = api(carol, "POST", "allocations", json=request_body(core_hours=-3))
    assert r.status_code == 400 and "core_hours must be more than 0" in r.json()["error"]
    r = api(carol, "POST", "allocations", json=request_body(pi=""))
    assert r.status_code == 400 and "missing field(s): pi" in r.json()["error"]
    r = api(carol, "POST", "allocations", data="not json",
            headers={"Authorization": f"token {carol.token}",
                     "Content-Type": "application/json"})
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    assert api(carol, "GET", "allocations").json() == []


def test_admin_approves_with_changes_and_the_audit_shows_them(hub: Hub,
                                                              admin: HubClient) -> None:
    dave = new_user(hub, admin, _name("dave"))
    alloc_id = api(dave, "POST", "allocations", json=request_body()).json()["id"]
    assert api(dave, "GET", "me").json() == {"name": dave.name, "admin": False,
                                              "active_allocation": None, "projects": [],
                                              "datasets": [], "default_allocation": None}

    r = api(dave, "POST", f"allocations/{alloc_id}/approve", json={"core_hours": 5000})
    assert r.status_code == 403 and "not an administrator" in r.json()["error"]
    assert api(dave, "GET", f"allocations/{alloc_id}").json()["status"] == "pending"

    r = api(admin, "POST", f"allocations/{alloc_id}/approve",
            json={"changes": {"core_hours": 300, "max_cores": 8}, "note": "start smaller"})
    assert r.status_code == 200, r.text
    detail = api(dave, "GET", f"allocations/{alloc_id}").json()
    assert detail["status"] == "approved" and detail["decided_by"] == admin.name
    assert (detail["core_hours"], detail["max_cores"]) == (300.0, 8)
    assert detail["reason"] == "start smaller"
    assert detail["used_core_hours"] == 0.0 and detail["remaining_core_hours"] == 300.0
    entry = detail["audit"][-1]
    assert entry["action"] == "approve" and entry["actor"] == admin.name
    assert entry["before"]["core_hours"] == 500.0 and entry["after"]["core_hours"] == 300.0
    assert entry["before"]["max_cores"] == 16 and entry["after"]["max_cores"] == 8
    assert {"core_hours", "max_cores", "status"} <= set(entry["changed"])
    assert "memory_per_job_gb" not in entry["changed"]

    me = api(dave, "GET", "me").json()
    assert me["active_allocation"]["id"] == alloc_id
    assert me["active_allocation"]["remaining_core_hours"] == 300.0
    assert api(admin, "GET", "me").json()["admin"] is True

    r = api(admin, "POST", f"allocations/{alloc_id}/approve", json={"owner": "mallory"})
    assert r.status_code == 400 and "cannot change owner" in r.json()["error"]


def test_deny_needs_a_reason(hub: Hub, admin: HubClient) -> None:
    erin = new_user(hub, admin, _name("erin"))
    alloc_id = api(erin, "POST", "allocations", json=request_body()).json()["id"]
    r = api(admin, "POST", f"allocations/{alloc_id}/deny", json={})
    assert r.status_code == 400 and "a denial needs a reason" in r.json()["error"]
    r = api(admin, "POST", f"allocations/{alloc_id}/deny", json={"reason": "no datasets"})
    assert r.status_code == 200 and r.json()["status"] == "denied"
    assert api(erin, "GET", f"allocations/{alloc_id}").json()["reason"] == "no datasets"


def test_usage_as_json_and_csv(hub: Hub, admin: HubClient, db_url: str) -> None:
    fay = new_user(hub, admin, _name("fay"))
    gus = new_user(hub, admin, _name("gus"))
    ids = {}
    for user in (fay, gus):
        ids[user.name] = api(user, "POST", "allocations", json=request_body()).json()["id"]
        assert api(admin, "POST", f"allocations/{ids[user.name]}/approve").status_code == 200
    with db.session_scope(db_url) as session:  # what the gateway and batch jobs record
        core.charge(session, user=fay.name, allocation_id=ids[fay.name], source="gateway",
                    ref="cluster-1", cores=4, seconds=1800)
        core.charge(session, user=fay.name, allocation_id=ids[fay.name], source="batch",
                    ref="job-1", cores=2, seconds=3600)
        core.charge(session, user=gus.name, allocation_id=ids[gus.name], source="batch",
                    ref="job-2", cores=1, seconds=3600)
        # and what the open-data service's ledger recorded (bytes downloaded)
        session.add_all([ServedBytes(day=dt.date.today(), client=f"user:{fay.name}",
                                     dataset="cobe_sst2", protocol="subset",
                                     bytes=3_000_000, requests=2),
                         ServedBytes(day=dt.date.today(), client="anon:0123456789abcdef",
                                     dataset="cobe_sst2", protocol="zarr", bytes=5,
                                     requests=1)])

    rows = api(fay, "GET", "usage").json()
    assert {(r["user"], r["source"], r["core_hours"], r["bytes"]) for r in rows} == {
        (fay.name, "gateway", 2.0, 0), (fay.name, "batch", 2.0, 0),
        (fay.name, "data", 0.0, 3_000_000)}
    detail = api(fay, "GET", f"allocations/{ids[fay.name]}").json()
    assert detail["used_core_hours"] == 4.0 and detail["remaining_core_hours"] == 496.0

    r = api(fay, "GET", "usage?csv=1")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    lines = r.text.splitlines()
    assert lines[0] == "allocation_id,user,source,core_hours,records,bytes,gb_days"
    assert sorted(lines[1:]) == sorted([f"{ids[fay.name]},{fay.name},batch,2,1,0,0",
                                        f"{ids[fay.name]},{fay.name},gateway,2,1,0,0",
                                        f",{fay.name},data,0,2,3000000,0"])
    everyone = api(admin, "GET", "usage?csv=1").text
    assert f"{ids[gus.name]},{gus.name},batch,1,1,0" in everyone
    assert f"{fay.name},gateway,2,1,0" in everyone
    assert f",{fay.name},data,0,2,3000000" in everyone and ",(anonymous),data," in everyone


def test_the_cli_talks_to_the_service(hub: Hub, admin: HubClient,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from oceandata.alloc.cli import AllocationNotFound, alloc_app
    from oceandata.errors import NotAuthorized

    hana = new_user(hub, admin, _name("hana"))
    monkeypatch.setenv("OCEANDATA_ALLOC_URL", f"{hub.url}{SERVICE}")
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    monkeypatch.setenv("OCEANDATA_TOKEN", hana.token or "")
    runner = CliRunner()
    body = request_body()
    result = runner.invoke(alloc_app, [
        "request", "--title", body["project_title"], "--pi", body["pi"],
        "--institution", body["institution"], "--justification", body["justification"],
        "--core-hours", "120", "--max-cores", "4", "--memory-gb", "8", "--storage-gb", "10",
        "--start", body["start_date"], "--end", body["end_date"], "--dataset", "oisst_wa",
        "--json"])
    assert result.exit_code == 0, result.output
    alloc_id = int(result.output.split('"id": ')[1].split(",")[0])
    result = runner.invoke(alloc_app, ["approve", str(alloc_id)])
    assert isinstance(result.exception, NotAuthorized), result.output

    monkeypatch.setenv("OCEANDATA_TOKEN", admin.token or "")
    result = runner.invoke(alloc_app, ["approve", str(alloc_id), "--core-hours", "60",
                                       "--note", "pilot"])
    assert result.exit_code == 0, result.output
    assert "approved: 60 core-hours" in result.output
    result = runner.invoke(alloc_app, ["show", "999999"])
    assert isinstance(result.exception, AllocationNotFound)

    monkeypatch.setenv("OCEANDATA_TOKEN", hana.token or "")
    result = runner.invoke(alloc_app, ["show", str(alloc_id)])
    assert result.exit_code == 0, result.output
    assert "core_hours: 120.0 -> 60.0" in result.output
    result = runner.invoke(alloc_app, ["usage", "--csv"])
    assert result.exit_code == 0
    assert result.output.startswith("allocation_id,user,source,core_hours,records,bytes,gb_days")
    result = runner.invoke(alloc_app, ["usage"])
    assert result.exit_code == 0 and "downloaded" in result.output, result.output
