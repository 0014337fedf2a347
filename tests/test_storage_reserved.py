"""The storage check counts the space open uploads were promised (issue 20).

``GET api/projects/{id}/storage?incoming=N`` (what ``oceandata ingest --project`` asks
through :func:`oceandata.alloc.workspaces.remote_check` before it writes) adds the bytes
the project's open uploads still expect to the bytes on disk, so a write cannot take
space an upload was promised when it opened. Two projects and an outsider; runs on the
session's :func:`projects_hub` with users named ``pf-...``.
"""

from __future__ import annotations

import datetime as dt
import os
import pwd
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.hub_helpers import Hub, HubClient, approved_project, new_user

pytestmark = [pytest.mark.slow]

SERVICE = "/services/allocations"
OCEANDATA = str(Path(sys.executable).with_name("oceandata"))
TODAY = dt.date.today()
DATA = Path(os.environ.get("OCEANDATA_SAMPLE_DATA", "/work/shared/data"))
NC4 = DATA / "series" / "oisst_Med.nc"  # netCDF-4, 190 kB
QUOTA_GB = 0.001  # 1 MB: a few empty folders, an upload's promise and little more
PROMISED = 800_000  # bytes an open upload expects


def api(user: HubClient, method: str, path: str, **kw: Any) -> requests.Response:
    return user.api(method, f"{SERVICE}/api/{path}", allow_redirects=False, **kw)


def _project(user: HubClient, admin: HubClient) -> int:
    return approved_project(user, admin, QUOTA_GB, "Storage")


@dataclass
class Team:
    hub: Hub
    pi: HubClient
    member: HubClient
    outsider: HubClient
    a: int  # pi's, with member
    b: int  # outsider's own


@pytest.fixture(scope="module")
def team(projects_hub: Hub, projects_admin: HubClient) -> Team:
    tag = uuid.uuid4().hex[:5]
    pi, member, outsider = (new_user(projects_hub, projects_admin, f"pf-{role}-{tag}")
                            for role in ("pi", "mem", "out"))
    a = _project(pi, projects_admin)
    r = api(pi, "POST", f"projects/{a}/members", json={"user": member.name})
    assert r.status_code in (200, 201), r.text
    return Team(projects_hub, pi, member, outsider, a, _project(outsider, projects_admin))


def _as(team: Team, user: HubClient, *cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    """*cmd* as *user*'s own Unix account, with their server's environment."""
    from oceandata.hub import accounts

    accounts.ensure_account(user.name, team.hub.runtime.data_dir)
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "LANG": "C.UTF-8",
           "HOME": pwd.getpwnam(f"oceandata-{user.name}").pw_dir,
           "OCEANDATA_ALLOC_URL": f"{team.hub.url}{SERVICE}",
           "JUPYTERHUB_API_TOKEN": user.token or "", "JUPYTERHUB_USER": user.name,
           "OCEANDATA_DATA_DIR": str(team.hub.runtime.data_dir)}
    return subprocess.run(["runuser", "-u", f"oceandata-{user.name}", "--", "env", "-i",
                           *(f"{k}={v}" for k, v in env.items()), *cmd],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def _storage(user: HubClient, project: int, incoming: int | None = None
             ) -> requests.Response:
    params = {} if incoming is None else {"incoming": incoming}
    return api(user, "GET", f"projects/{project}/storage", params=params)


def test_an_ingest_cannot_take_space_an_open_upload_was_promised(
        team: Team, tmp_path: Path) -> None:
    incoming = NC4.stat().st_size
    # without an open upload the source fits: the check itself would let it through
    r = _storage(team.pi, team.a, incoming)
    assert r.status_code == 200, r.text
    assert r.json()["reserved_bytes"] == 0
    used = r.json()["used_bytes"]
    assert used + PROMISED + incoming > int(QUOTA_GB * 1e9) > used + incoming
    # the member opens an upload: nothing is sent yet, the space is promised to it
    r = api(team.member, "POST", f"projects/{team.a}/uploads",
            json={"filename": "big.nc", "size": PROMISED})
    assert r.status_code == 201, r.text
    upload = r.json()["id"]
    # the outsider's own project has an open upload too: it promises nothing of A's
    r = api(team.outsider, "POST", f"projects/{team.b}/uploads",
            json={"filename": "theirs.nc", "size": PROMISED})
    assert r.status_code == 201, r.text
    theirs = r.json()["id"]
    try:
        r = _storage(team.pi, team.a)
        assert r.status_code == 200, r.text
        assert r.json()["reserved_bytes"] == PROMISED
        r = _storage(team.pi, team.a, incoming)
        assert r.status_code == 403, r.text
        error = r.json()["error"]
        assert "quota" in error and "upload" in error and "\n" not in error
        # the PI's ingest into the project is refused in one line, exit 2, nothing written
        stores = team.hub.runtime.data_dir / "projects" / str(team.a) / "stores"
        before = sorted(os.listdir(stores)) if stores.is_dir() else []
        done = _as(team, team.pi, OCEANDATA, "ingest", str(NC4), "--project", str(team.a),
                   "--name", "sst", cwd=tmp_path)
        assert done.returncode == 2, (done.stdout, done.stderr)
        lines = [ln for ln in done.stderr.strip().splitlines()
                 if not ln.startswith("warning:")]
        assert len(lines) == 1 and "quota" in lines[0] and "upload" in lines[0], done.stderr
        assert (sorted(os.listdir(stores)) if stores.is_dir() else []) == before
        # the outsider learns nothing of A; B's own reservation is B's only
        assert _storage(team.outsider, team.a, incoming).status_code == 404
        r = _storage(team.outsider, team.b)
        assert r.status_code == 200 and r.json()["reserved_bytes"] == PROMISED, r.text
        # chunks that arrive move bytes from the promise to the disk: still refused
        r = api(team.member, "PUT", f"uploads/{upload}/chunks", params={"offset": 0},
                data=b"\0" * 100_000, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 200, r.text
        r = _storage(team.pi, team.a, incoming)
        assert r.status_code == 403, r.text
    finally:
        assert api(team.member, "DELETE", f"uploads/{upload}").status_code == 200
        assert api(team.outsider, "DELETE", f"uploads/{theirs}").status_code == 200
    # the upload aborted, its promise is gone: the same write fits again
    r = _storage(team.pi, team.a, incoming)
    assert r.status_code == 200, r.text
    assert r.json()["reserved_bytes"] == 0


def test_the_project_page_links_members_to_upload_and_publish(team: Team) -> None:
    def page(user: HubClient, path: str) -> requests.Response:
        return requests.get(f"{team.hub.url}{SERVICE}/{path}", timeout=60,
                            allow_redirects=False,
                            cookies={"oceandata-alloc-auth": user.token or ""})

    for user in (team.pi, team.member):
        r = page(user, f"projects/{team.a}")
        assert r.status_code == 200, r.text
        for action in ("upload", "publish"):
            link = re.search(rf'<a [^>]*href="([^"]*projects/{team.a}/{action})"', r.text)
            assert link, f"no {action} link for {user.name}"
            # the link leads to the member's page of that project
            target = requests.get(f"{team.hub.url}{link[1]}", timeout=60,
                                  allow_redirects=False,
                                  cookies={"oceandata-alloc-auth": user.token or ""})
            assert target.status_code == 200, (link[1], target.text[:300])
    # the outsider has neither the page nor the links
    r = page(team.outsider, f"projects/{team.a}")
    assert r.status_code == 404 and f"projects/{team.a}/upload" not in r.text
