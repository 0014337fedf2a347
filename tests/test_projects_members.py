"""Projects with members on the running platform (REST, pages, the CLI, Unix groups):
two projects, a user in both, and an outsider (issue 20).

Runs on the session's :func:`projects_hub` with users named ``pa-...``.
"""

from __future__ import annotations

import datetime as dt
import grp
import json
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.hub_helpers import Hub, HubClient, new_user

pytestmark = [pytest.mark.slow]

SERVICE = "/services/allocations"
OCEANDATA = str(Path(sys.executable).with_name("oceandata"))
TODAY = dt.date.today()
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}


def api(user: HubClient, method: str, path: str, **kw: Any) -> requests.Response:
    return user.api(method, f"{SERVICE}/api/{path}", allow_redirects=False, **kw)


def _request(user: HubClient, admin: HubClient, *, approve: bool = True) -> int:
    body = {"project_title": f"Project of {user.name}", "pi": "Dr. P. I.",
            "institution": "Partner Institute", "justification": "Shared analysis.",
            "core_hours": 50, "max_cores": 2, "memory_per_job_gb": 2, "storage_gb": 1,
            "start_date": (TODAY - dt.timedelta(days=1)).isoformat(),
            "end_date": (TODAY + dt.timedelta(days=30)).isoformat(),
            "datasets": [f"grant_{user.name.replace('-', '_')}"]}
    r = api(user, "POST", "allocations", json=body)
    assert r.status_code == 201, r.text
    alloc_id = r.json()["id"]
    if approve:
        assert api(admin, "POST", f"allocations/{alloc_id}/approve").status_code == 200
    return alloc_id


@dataclass
class Team:
    hub: Hub
    admin: HubClient
    pi1: HubClient
    pi2: HubClient
    member: HubClient
    outsider: HubClient
    p1: int
    p2: int


@pytest.fixture(scope="module")
def team(projects_hub: Hub, projects_admin: HubClient) -> Team:
    tag = uuid.uuid4().hex[:5]
    users = [new_user(projects_hub, projects_admin, f"pa-{role}-{tag}")
             for role in ("pia", "pib", "mem", "out")]
    pi1, pi2, member, outsider = users
    return Team(projects_hub, projects_admin, pi1, pi2, member, outsider,
                _request(pi1, projects_admin), _request(pi2, projects_admin))


def cli(team: Team, user: HubClient, *args: str,
        code: int = 0) -> subprocess.CompletedProcess[str]:
    """``oceandata ARGS`` as *user* runs it, against the platform."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTERHUB_", "OCEANDATA_ALLOC_"))}
    env.update({"OCEANDATA_ALLOC_URL": f"{team.hub.url}{SERVICE}",
                "OCEANDATA_TOKEN": user.token or ""})
    done = subprocess.run([OCEANDATA, *args], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
    if code:
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # one line
        assert "Traceback" not in done.stderr
    return done


def _group_members(alloc_id: int) -> set[str] | None:
    """The accounts in project *alloc_id*'s Unix group (None before workspaces make it)."""
    from oceandata.alloc import workspaces

    try:
        return set(grp.getgrnam(workspaces.group_name(alloc_id)).gr_mem)
    except KeyError:
        return None


def _ls_as(user: HubClient, path: str) -> subprocess.CompletedProcess[str]:
    """``ls`` of *path* by *user*'s Unix account (a fresh login: its groups as now)."""
    return subprocess.run(["runuser", "-u", f"oceandata-{user.name}", "--", "ls", path],
                          capture_output=True, text=True, timeout=30)


def test_the_pi_manages_members_and_nobody_else_can(team: Team) -> None:
    p1, pi1, member, outsider = team.p1, team.pi1, team.member, team.outsider
    r = api(pi1, "POST", f"projects/{p1}/members", json={"user": member.name})
    assert r.status_code == 200, r.text
    detail = r.json()
    assert [(m["user"], m["role"]) for m in detail["members"]] == [
        (pi1.name, "pi"), (member.name, "member")]
    assert detail["role"] == "pi" and detail["storage"]["quota_bytes"] == 10**9
    # the member sees the project, its grants, and cannot add or remove anyone
    mine = api(member, "GET", "projects").json()
    assert [(p["id"], p["role"], p["in_force"]) for p in mine] == [(p1, "member", True)]
    assert api(member, "GET", f"projects/{p1}").json()["role"] == "member"
    assert p1 in [p["id"] for p in api(member, "GET", "me").json()["projects"]]
    r = api(member, "POST", f"projects/{p1}/members", json={"user": outsider.name})
    assert r.status_code == 403 and "PI" in r.json()["error"]
    r = api(member, "DELETE", f"projects/{p1}/members/{pi1.name}")
    assert r.status_code == 403
    # the outsider learns nothing: 404 for the project, its members, anything
    for method, path, body in (("GET", f"projects/{p1}", None),
                               ("POST", f"projects/{p1}/members", {"user": outsider.name}),
                               ("DELETE", f"projects/{p1}/members/{member.name}", None),
                               ("GET", "projects/999999", None)):
        r = api(outsider, method, path, json=body)
        assert r.status_code == 404, (path, r.status_code, r.text)
        assert r.json()["error"].startswith("no project")
    assert api(outsider, "GET", "projects").json() == []
    assert requests.get(f"{team.hub.url}{SERVICE}/api/projects/{p1}",
                        timeout=30).status_code == 401
    # bad input: one sentence each
    for body in ({"user": "Not A Name"}, {"user": 7}, {}):
        r = api(pi1, "POST", f"projects/{p1}/members", json=body)
        assert r.status_code == 400 and "\n" not in r.json()["error"], r.text
    r = api(pi1, "DELETE", f"projects/{p1}/members/{pi1.name}")
    assert r.status_code == 400 and "PI" in r.json()["error"]
    # a cookie session without its CSRF token changes nothing
    r = requests.post(f"{team.hub.url}{SERVICE}/api/projects/{p1}/members",
                      json={"user": outsider.name}, timeout=30,
                      cookies={"oceandata-alloc-auth": pi1.token})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    names = [m["user"] for m in api(pi1, "GET", f"projects/{p1}").json()["members"]]
    assert outsider.name not in names
    # the workspace's Unix group follows the members (once workspaces make groups)
    group = _group_members(p1)
    if group is not None:
        assert group == {f"oceandata-{pi1.name}", f"oceandata-{member.name}"}


def test_a_user_in_two_projects_chooses_and_the_ledger_keeps_their_name(team: Team) -> None:
    p1, p2, member, outsider = team.p1, team.p2, team.member, team.outsider
    for pi, alloc in ((team.pi1, p1), (team.pi2, p2)):
        assert api(pi, "POST", f"projects/{alloc}/members",
                   json={"user": member.name}).status_code == 200
    job = {"script": "print('hello from a member')\n", "script_name": "hello.py",
           "cores": 1, "memory": "1GB", "walltime": "0:05:00", "backend": "local"}
    # in two projects, none named, no default: refused with one line naming both
    r = api(member, "POST", "jobs", json=job)
    assert r.status_code == 400, r.text
    assert f"projects {p1}, {p2}" in r.json()["error"]
    assert api(member, "GET", "me").json()["active_allocation"] is None
    # named: charged to that project, under the member's name
    r = api(member, "POST", "jobs", json={**job, "allocation_id": p1})
    assert r.status_code in (200, 201), r.text
    job_id = r.json()["id"]
    assert r.json()["allocation_id"] == p1
    # an outsider cannot charge the project (404: it is not theirs)
    r = api(outsider, "POST", "jobs", json={**job, "allocation_id": p1})
    assert r.status_code == 404, r.text
    # a default settles it: PUT settings, then a job without a choice goes there
    assert api(member, "PUT", "settings", json={"default_allocation": p2}).json() == {
        "default_allocation": p2, "projects": sorted([p1, p2], reverse=True),
        "language": None}
    for bad in ({"default_allocation": "two"}, {"default_allocation": True}, {}):
        assert api(member, "PUT", "settings", json=bad).status_code == 400
    r = api(outsider, "PUT", "settings", json={"default_allocation": p1})
    assert r.status_code == 404
    assert api(member, "GET", "me").json()["active_allocation"]["id"] == p2
    projects = {p["id"]: p["default"] for p in api(member, "GET", "projects").json()}
    assert projects == {p1: False, p2: True}
    deadline = time.monotonic() + 120
    while (state := api(member, "GET", f"jobs/{job_id}").json()["state"]) not in FINAL:
        assert time.monotonic() < deadline, f"job {job_id} still {state}"
        time.sleep(0.5)  # poll interval of the job's state
    assert state == "COMPLETED"
    rows = api(team.pi1, "GET", f"projects/{p1}").json()["members"]
    charged = {m["user"]: m["core_hours"] for m in rows}
    assert charged[member.name] > 0 and charged[team.pi1.name] == 0
    usage = api(team.admin, "GET", "usage").json()
    assert any(u["allocation_id"] == p1 and u["user"] == member.name for u in usage)
    assert not any(u["allocation_id"] == p2 and u["user"] == member.name for u in usage)
    assert api(member, "PUT", "settings", json={"default_allocation": None}).status_code == 200


def test_the_pages_show_members_and_change_them_with_the_csrf_token(team: Team) -> None:
    p2, pi2, outsider = team.p2, team.pi2, team.outsider
    base = f"{team.hub.url}{SERVICE}"

    def page(user: HubClient, path: str, **kw: Any) -> requests.Response:
        method = "POST" if "data" in kw else "GET"
        return requests.request(method, f"{base}/{path}", timeout=60, allow_redirects=False,
                                cookies={"oceandata-alloc-auth": user.token}, **kw)

    listing = page(pi2, "projects")
    assert listing.status_code == 200 and f'id="project-{p2}"' in listing.text
    r = page(pi2, f"projects/{p2}")
    assert r.status_code == 200 and 'id="add-member"' in r.text
    csrf = re.search(r'name="_csrf" value="([^"]+)"', r.text)[1]
    # without the CSRF token: refused, nothing added
    assert page(pi2, f"projects/{p2}/members", data={"user": outsider.name}).status_code == 403
    r = page(pi2, f"projects/{p2}/members", data={"user": outsider.name, "_csrf": csrf})
    assert r.status_code == 303, r.text
    shown = requests.get(f"{team.hub.url}{r.headers['Location']}", timeout=60,
                         cookies={"oceandata-alloc-auth": pi2.token})
    assert f'id="member-{outsider.name}"' in shown.text
    assert f"{outsider.name} is now a member." in shown.text
    # the new member sees the page without the forms; a bad name comes back as 400
    r = page(outsider, f"projects/{p2}")
    assert r.status_code == 200 and 'id="add-member"' not in r.text
    r = page(pi2, f"projects/{p2}/members", data={"user": "No Such", "_csrf": csrf})
    assert r.status_code == 400 and "not a hub user name" in r.text
    r = page(pi2, f"projects/{p2}/members/{outsider.name}/remove", data={"_csrf": csrf})
    assert r.status_code == 303
    # removed: the project is gone for them (404 page), in REST too
    assert page(outsider, f"projects/{p2}").status_code == 404
    assert api(outsider, "GET", f"projects/{p2}").status_code == 404
    # settings page: choose a default among one's projects only
    r = page(pi2, "settings")
    assert r.status_code == 200 and f'<option value="{p2}"' in r.text
    csrf = re.search(r'name="_csrf" value="([^"]+)"', r.text)[1]
    r = page(pi2, "settings", data={"default_allocation": str(team.p1), "_csrf": csrf})
    assert r.status_code == 404 and f"no project {team.p1} of yours" in r.text
    r = page(pi2, "settings", data={"default_allocation": str(p2), "_csrf": csrf})
    assert r.status_code == 303
    assert api(pi2, "GET", "settings").json()["default_allocation"] == p2


def test_members_through_the_cli(team: Team) -> None:
    p1, pi1, outsider = team.p1, team.pi1, team.outsider
    done = cli(team, pi1, "alloc", "members", str(p1), "add", outsider.name, "--json")
    project = json.loads(done.stdout)
    assert outsider.name in [m["user"] for m in project["members"]]
    workspace = project["workspace"]
    if _group_members(p1) is not None:  # the account of a member lists the workspace
        assert _ls_as(outsider, workspace).returncode == 0
    done = cli(team, outsider, "alloc", "projects", "--json")
    assert [p["id"] for p in json.loads(done.stdout)] == [p1]
    assert "default project: " not in cli(team, outsider, "alloc", "default").stdout
    assert cli(team, outsider, "alloc", "default", str(p1)).stdout.strip() == (
        f"default project: {p1}")
    # a member cannot manage; bad actions and names are one line, exit 2
    done = cli(team, outsider, "alloc", "members", str(p1), "remove", pi1.name, code=2)
    assert "PI" in done.stderr
    assert "add or remove" in cli(team, pi1, "alloc", "members", str(p1), "kick",
                                  outsider.name, code=2).stderr
    assert "not a hub user name" in cli(team, pi1, "alloc", "members", str(p1), "add",
                                        "Bad Name", code=2).stderr
    assert "not both" in cli(team, pi1, "alloc", "default", str(p1), "--clear",
                             code=2).stderr
    done = cli(team, pi1, "alloc", "members", str(p1), "remove", outsider.name)
    assert f"{outsider.name} removed from project {p1}" in done.stdout
    # removed: the project and the default went with it; now an outsider again
    assert "no default project" in cli(team, outsider, "alloc", "default").stdout
    assert "no project" in cli(team, outsider, "alloc", "members", str(p1), code=2).stderr
    assert "no project" in cli(team, outsider, "alloc", "default", str(p1), code=2).stderr
    group = _group_members(p1)
    if group is not None:
        assert f"oceandata-{outsider.name}" not in group
        denied = _ls_as(outsider, workspace)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr


def test_only_users_of_the_hub_can_be_added(team: Team) -> None:
    """The review's finding: a well-formed name nobody signed up with was accepted, its
    Unix account made, and whoever signed up later with that name inherited the
    membership. Now: 400 "no hub user NAME" (REST, page, CLI), nothing added, no account;
    the outsider still learns nothing (404 before any question to the hub)."""
    import pwd

    p1, pi1, outsider = team.p1, team.pi1, team.outsider
    ghost = f"pa-ghost-{uuid.uuid4().hex[:5]}"
    r = api(pi1, "POST", f"projects/{p1}/members", json={"user": ghost})
    assert r.status_code == 400 and r.json()["error"].startswith(f"no hub user {ghost}"), r.text
    assert "\n" not in r.json()["error"]
    r = api(outsider, "POST", f"projects/{p1}/members", json={"user": ghost})
    assert r.status_code == 404 and r.json()["error"].startswith("no project")
    r = requests.get(f"{team.hub.url}{SERVICE}/projects/{p1}", timeout=60,
                     cookies={"oceandata-alloc-auth": pi1.token})
    csrf = re.search(r'name="_csrf" value="([^"]+)"', r.text)[1]
    r = requests.post(f"{team.hub.url}{SERVICE}/projects/{p1}/members", timeout=60,
                      allow_redirects=False, cookies={"oceandata-alloc-auth": pi1.token},
                      data={"user": ghost, "_csrf": csrf})
    assert r.status_code == 400 and f"no hub user {ghost}" in r.text
    assert f"no hub user {ghost}" in cli(team, pi1, "alloc", "members", str(p1), "add",
                                         ghost, code=2).stderr
    names = [m["user"] for m in api(pi1, "GET", f"projects/{p1}").json()["members"]]
    assert ghost not in names
    with pytest.raises(KeyError):
        pwd.getpwnam(f"oceandata-{ghost}")
    # whoever signs up under that name now starts with no project
    late = new_user(team.hub, team.admin, ghost)
    assert api(late, "GET", "projects").json() == []
    assert api(late, "GET", f"projects/{p1}").status_code == 404
    # and, once a hub user, can be added
    r = api(pi1, "POST", f"projects/{p1}/members", json={"user": ghost})
    assert r.status_code == 200 and ghost in [m["user"] for m in r.json()["members"]], r.text
    assert api(pi1, "DELETE", f"projects/{p1}/members/{ghost}").status_code == 200
