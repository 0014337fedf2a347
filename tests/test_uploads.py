"""Uploads to a project's workspace on the running platform (REST chunks, the CLI, the
page): two projects, a member and an outsider (issue 20).

Runs on the session's :func:`projects_hub` with users named ``pu-...``. Sample NetCDF
files: a netCDF-4 (HDF5) series and a classic Argo profile file.
"""

from __future__ import annotations

import datetime as dt
import grp
import hashlib
import os
import re
import socket
import stat
import subprocess
import sys
import time
import urllib.parse
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
NC4 = DATA / "series" / "oisst_Med.nc"  # netCDF-4 (HDF5), 190 kB
CLASSIC = DATA / "argo" / "gdac" / "dac" / "nmdis" / "2901623" / "2901623_prof.nc"  # CDF1
KIB = 1024


def api(user: HubClient, method: str, path: str, **kw: Any) -> requests.Response:
    return user.api(method, f"{SERVICE}/api/{path}", allow_redirects=False, **kw)


def _project(user: HubClient, admin: HubClient, storage_gb: float) -> int:
    return approved_project(user, admin, storage_gb, "Uploads")


@dataclass
class Team:
    hub: Hub
    pi: HubClient
    member: HubClient
    outsider: HubClient
    p1: int  # pi's, with member; 1 GB
    p2: int  # outsider's own; 1 MB

    def workspace(self, alloc_id: int) -> Path:
        return self.hub.runtime.data_dir / "projects" / str(alloc_id)


@pytest.fixture(scope="module")
def team(projects_hub: Hub, projects_admin: HubClient) -> Team:
    tag = uuid.uuid4().hex[:5]
    pi, member, outsider = (new_user(projects_hub, projects_admin, f"pu-{role}-{tag}")
                            for role in ("pi", "mem", "out"))
    p1 = _project(pi, projects_admin, 1)
    r = api(pi, "POST", f"projects/{p1}/members", json={"user": member.name})
    assert r.status_code in (200, 201), r.text
    return Team(projects_hub, pi, member, outsider, p1, _project(outsider, projects_admin, 0.001))


def start(user: HubClient, project: int, filename: str, size: int, **extra: Any
          ) -> requests.Response:
    return api(user, "POST", f"projects/{project}/uploads",
               json={"filename": filename, "size": size, **extra})


def put(user: HubClient, upload_id: str, offset: int, data: bytes) -> requests.Response:
    return api(user, "PUT", f"uploads/{upload_id}/chunks", params={"offset": offset},
               data=data, headers={"Content-Type": "application/octet-stream"})


def _until(check: Any, what: str, timeout: float = 30) -> Any:
    """Poll *check* until it is true (an observable state of the service, not a delay)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)  # poll interval
    raise AssertionError(f"timed out waiting for {what}")


def _cut_off_chunk(team: Team, user: HubClient, upload_id: str, offset: int, data: bytes,
                   sent: int) -> None:
    """Start a chunk of *data* but send only its first *sent* bytes, then drop the
    connection once the service is receiving it (a lost connection)."""
    url = urllib.parse.urlsplit(team.hub.url)
    path = f"{SERVICE}/api/uploads/{upload_id}/chunks?offset={offset}"
    head = (f"PUT {path} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: token {user.token}"
            f"\r\nContent-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n").encode()
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(head + data[:sent])
        _until(lambda: api(user, "GET", f"uploads/{upload_id}").json()["receiving"],
               "the service receiving the chunk")
    _until(lambda: not api(user, "GET", f"uploads/{upload_id}").json()["receiving"],
           "the service recording the cut-off chunk")


def _as_account(user: HubClient, *cmd: str) -> subprocess.CompletedProcess[str]:
    """*cmd* as the user's Unix account, with its groups (runuser does initgroups)."""
    return subprocess.run(["runuser", "-u", f"oceandata-{user.name}", "--", *cmd],
                          capture_output=True, text=True, timeout=60, cwd="/")


def _leftovers(team: Team, project: int) -> list[str]:
    """What is in the project's uploads/ and uploads/.partial."""
    uploads = team.workspace(project) / "uploads"
    if not uploads.exists():
        return []
    return sorted(str(p.relative_to(uploads)) for p in uploads.rglob("*"))


def test_rest_chunks_resume_after_a_lost_connection(team: Team) -> None:
    data = NC4.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    r = start(team.member, team.p1, "med.nc", len(data))
    assert r.status_code == 201, r.text
    up = r.json()
    assert (up["received"], up["state"], up["sha256"]) == (0, "open", None)
    assert put(team.member, up["id"], 0, data[:64 * KIB]).json()["received"] == 64 * KIB
    # a chunk out of order is refused with the offset to use; nothing written
    r = put(team.member, up["id"], 10, data[10:20])
    assert r.status_code == 409 and f"send from offset {64 * KIB}" in r.json()["error"]

    # the connection is lost in the middle of the next chunk: what arrived is kept
    _cut_off_chunk(team, team.member, up["id"], 64 * KIB, data[64 * KIB:], 40 * KIB)
    state = api(team.member, "GET", f"uploads/{up['id']}", params={"digest": "1"}).json()
    got = state["received"]
    print("received after the cut-off:", got)
    assert 64 * KIB <= got <= 104 * KIB, got
    assert state["received_sha256"] == hashlib.sha256(data[:got]).hexdigest()
    # resume from what the service has
    r = put(team.member, up["id"], got, data[got:])
    assert r.status_code == 200 and r.json()["received"] == len(data), r.text
    assert (team.workspace(team.p1) / "uploads" / "med.nc").exists() is False  # not yet
    r = api(team.member, "POST", f"uploads/{up['id']}/complete", json={"sha256": sha})
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["path"]) == ("complete", "uploads/med.nc")

    target = team.workspace(team.p1) / "uploads" / "med.nc"
    assert hashlib.sha256(target.read_bytes()).hexdigest() == sha
    info = target.stat()
    assert stat.S_IMODE(info.st_mode) == 0o640
    # the uploads folder's group: the project's (oceandata-<id>), not root's
    assert info.st_gid == target.parent.stat().st_gid != 0
    assert _leftovers(team, team.p1) == [".partial", "med.nc"]
    # the members' accounts read it, the outsider's account cannot even list the folder
    done = _as_account(team.member, "sha256sum", str(target))
    assert done.returncode == 0 and done.stdout.split()[0] == sha, done.stderr
    assert _as_account(team.pi, "test", "-r", str(target)).returncode == 0
    done = _as_account(team.outsider, "ls", str(target.parent))
    assert done.returncode != 0 and "Permission denied" in done.stderr
    # an ended upload takes nothing more; the name is taken now
    assert put(team.member, up["id"], len(data), b"x").status_code == 409
    r = start(team.pi, team.p1, "med.nc", 10)
    assert r.status_code == 409 and "exists" in r.json()["error"]
    # the workspace was measured (the charge runs from now on)
    storage = api(team.member, "GET", f"projects/{team.p1}/storage")
    if storage.status_code == 200:
        assert storage.json()["used_bytes"] >= len(data)


def test_refusals_leave_nothing_behind(team: Team) -> None:
    member, p1 = team.member, team.p1
    before = _leftovers(team, p1)
    # a plain file name only: no folders, no dot files, no traversal
    for bad in ("../escape.nc", "a/b.nc", "..", ".hidden.nc", "x\x00.nc", "",
                "/etc/passwd", "a" * 201, 7):
        r = start(member, p1, bad, 10)
        assert r.status_code == 400 and "plain file name" in r.json()["error"], (bad, r.text)
    for size in (0, -1, "10", True, 1.5):
        assert start(member, p1, "x.nc", size).status_code == 400, size
    assert start(member, p1, "x.nc", 10, sha256="abc").status_code == 400
    # over the cap (20 GB) and over the quota (project 2 holds 1 MB): refused up front
    r = start(member, p1, "huge.nc", 21 * 10**9)
    assert r.status_code == 413 and "at most 20" in r.json()["error"], r.text
    r = start(team.outsider, team.p2, "big.nc", 2 * 10**6)
    assert r.status_code == 403 and "quota" in r.json()["error"], r.text
    assert _leftovers(team, team.p2) in ([], [".partial"])

    data = CLASSIC.read_bytes()
    sha = hashlib.sha256(data).hexdigest()

    def uploaded(name: str, body: bytes, size: int | None = None) -> str:
        r = start(member, p1, name, size or len(body))
        assert r.status_code == 201, r.text
        ident = r.json()["id"]
        assert put(member, ident, 0, body).status_code == 200
        return ident

    # truncated: completing before every byte arrived is refused, the upload stays open
    ident = uploaded("short.nc", data[:1000], len(data))
    r = api(member, "POST", f"uploads/{ident}/complete", json={"sha256": sha})
    assert r.status_code == 400 and f"has 1000 of {len(data)} bytes" in r.json()["error"]
    assert api(member, "GET", f"uploads/{ident}").json()["state"] == "open"
    # a chunk past the declared size is refused and not kept
    r = put(member, ident, 1000, data[1000:] + b"extra")
    assert r.status_code == 400 and "past the declared size" in r.json()["error"]
    assert api(member, "GET", f"uploads/{ident}").json()["received"] == 1000
    assert api(member, "DELETE", f"uploads/{ident}").json()["state"] == "aborted"
    # a wrong sha256: discarded
    ident = uploaded("wrongsum.nc", data)
    r = api(member, "POST", f"uploads/{ident}/complete", json={"sha256": "0" * 64})
    assert r.status_code == 400 and "discarded" in r.json()["error"], r.text
    assert api(member, "GET", f"uploads/{ident}").json()["state"] == "aborted"
    # not NetCDF: a text file, and a file with a NetCDF signature that netCDF4 cannot open
    for name, body in (("notes.nc", b"lat,lon,sst\n1,2,3\n" * 50),
                       ("broken.nc", data[:4] + b"\xff" * 2000)):
        ident = uploaded(name, body)
        r = api(member, "POST", f"uploads/{ident}/complete",
                json={"sha256": hashlib.sha256(body).hexdigest()})
        assert r.status_code == 400 and "not a NetCDF file" in r.json()["error"], r.text
        assert api(member, "GET", f"uploads/{ident}").json()["state"] == "aborted"
    # no sha256 at all: refused, the upload stays open
    ident = uploaded("nosum.nc", data)
    r = api(member, "POST", f"uploads/{ident}/complete")
    assert r.status_code == 400 and "sha256" in r.json()["error"]
    assert api(member, "DELETE", f"uploads/{ident}").status_code == 200
    assert _leftovers(team, p1) == before  # nothing in uploads/, .partial empty

    # the outsider: 404 for the project and for the member's uploads, whatever the verb
    r = start(team.outsider, p1, "intruder.nc", len(data))
    assert r.status_code == 404 and r.json()["error"] == f"no project {p1} of yours"
    r = start(member, team.p2, "intruder.nc", len(data))  # the other project: same
    assert r.status_code == 404 and r.json()["error"] == f"no project {team.p2} of yours"
    ident = uploaded("victim.nc", data)
    for method, path, kw in (("GET", f"uploads/{ident}", {}),
                             ("GET", f"projects/{p1}/uploads", {}),
                             ("PUT", f"uploads/{ident}/chunks?offset={len(data)}",
                              {"data": b"x", "headers": {
                                  "Content-Type": "application/octet-stream"}}),
                             ("POST", f"uploads/{ident}/complete", {"json": {"sha256": sha}}),
                             ("DELETE", f"uploads/{ident}", {})):
        r = api(team.outsider, method, path, **kw)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
    assert api(member, "GET", f"uploads/{ident}").json()["state"] == "open"
    assert api(member, "DELETE", f"uploads/{ident}").status_code == 200
    # no token: 401; a chunk that is not application/octet-stream: 415
    assert requests.get(f"{team.hub.url}{SERVICE}/api/uploads/{'0' * 32}",
                        timeout=30).status_code == 401
    r = api(member, "PUT", f"uploads/{'0' * 32}/chunks?offset=0", json={"a": 1})
    assert r.status_code == 415


def test_links_in_the_workspace_do_not_lead_the_service_elsewhere(team: Team,
                                                                 tmp_path: Path) -> None:
    """A member may rename and link inside the workspace (its folders are the group's):
    the service (root) refuses to write through a link instead of following it."""
    member, p1 = team.member, team.p1
    outside = tmp_path / "outside"
    outside.mkdir()
    os.chmod(outside, 0o777)
    uploads = team.workspace(p1) / "uploads"
    data = CLASSIC.read_bytes()
    r = start(member, p1, "linked.nc", len(data))
    ident = r.json()["id"]
    # uploads/.partial replaced by a link to a folder outside: no chunk goes there
    done = _as_account(member, "sh", "-c", f"mv {uploads}/.partial {uploads}/.partial-old && "
                                           f"ln -s {outside} {uploads}/.partial")
    assert done.returncode == 0, done.stderr
    try:
        r = put(member, ident, 0, data)
        assert r.status_code == 409 and "not a folder" in r.json()["error"], r.text
        r = start(member, p1, "linked2.nc", len(data))
        assert r.status_code == 409, r.text
    finally:
        os.unlink(uploads / ".partial")
        os.rename(uploads / ".partial-old", uploads / ".partial")
    # the whole uploads/ folder replaced by a link: the finished file does not go there
    assert put(member, ident, 0, data).status_code == 200
    done = _as_account(member, "sh", "-c", f"mv {uploads} {uploads}-old && "
                                           f"ln -s {outside} {uploads}")
    assert done.returncode == 0, done.stderr
    try:
        r = api(member, "POST", f"uploads/{ident}/complete",
                json={"sha256": hashlib.sha256(data).hexdigest()})
        assert r.status_code == 409 and "not a folder" in r.json()["error"], r.text
    finally:
        os.unlink(uploads)
        os.rename(f"{uploads}-old", uploads)
    assert list(outside.iterdir()) == []
    assert api(member, "DELETE", f"uploads/{ident}").status_code == 200


def cli(team: Team, user: HubClient, *args: str,
        code: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTERHUB_", "OCEANDATA_ALLOC_"))}
    env.update({"OCEANDATA_ALLOC_URL": f"{team.hub.url}{SERVICE}",
                "OCEANDATA_TOKEN": user.token or ""})
    done = subprocess.run([OCEANDATA, *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
    if code:
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr
    return done


def test_cli_uploads_and_resumes(team: Team, tmp_path: Path) -> None:
    done = cli(team, team.pi, "upload", str(CLASSIC), "--project", str(team.p1))
    target = team.workspace(team.p1) / "uploads" / CLASSIC.name
    sha = hashlib.sha256(CLASSIC.read_bytes()).hexdigest()
    assert f"uploads/{CLASSIC.name}" in done.stdout and sha in done.stdout
    assert hashlib.sha256(target.read_bytes()).hexdigest() == sha

    # an interrupted upload (a third of the file arrived) is resumed, not restarted
    data = NC4.read_bytes()
    local = tmp_path / "series.nc"
    local.write_bytes(data)
    r = start(team.member, team.p1, "series.nc", len(data))
    ident = r.json()["id"]
    assert put(team.member, ident, 0, data[:len(data) // 3]).status_code == 200
    done = cli(team, team.member, "upload", str(local), "-p", str(team.p1), "--chunk-mib",
               "0.0625")
    assert f"resuming series.nc at byte {len(data) // 3} of {len(data)}" in done.stderr
    assert api(team.member, "GET", f"uploads/{ident}").json()["state"] == "complete"
    assert (team.workspace(team.p1) / "uploads" / "series.nc").read_bytes() == data

    # an open upload of the same name and size but other bytes is not resumed
    other = bytearray(data)
    other[100] ^= 0xFF
    r = start(team.member, team.p1, "other.nc", len(data))
    stale = r.json()["id"]
    assert put(team.member, stale, 0, bytes(other[:50_000])).status_code == 200
    (tmp_path / "other.nc").write_bytes(data)
    done = cli(team, team.member, "upload", str(tmp_path / "other.nc"), "-p", str(team.p1))
    assert "holds other bytes" in done.stderr
    assert api(team.member, "GET", f"uploads/{stale}").json()["state"] == "aborted"

    # refusals: one line, exit 2
    done = cli(team, team.outsider, "upload", str(CLASSIC), "--project", str(team.p1), code=2)
    assert f"no project {team.p1} of yours" in done.stderr
    text = tmp_path / "table.nc"
    text.write_text("lat,lon\n1,2\n")
    done = cli(team, team.member, "upload", str(text), "--project", str(team.p1), code=2)
    assert "not a NetCDF file" in done.stderr
    assert not (team.workspace(team.p1) / "uploads" / "table.nc").exists()


def test_upload_page_and_its_plain_form(team: Team) -> None:
    base = f"{team.hub.url}{SERVICE}"

    def page(user: HubClient, path: str, **kw: Any) -> requests.Response:
        method = "POST" if "files" in kw else "GET"
        return requests.request(method, f"{base}/{path}", timeout=60, allow_redirects=False,
                                cookies={"oceandata-alloc-auth": user.token}, **kw)

    r = page(team.member, f"projects/{team.p1}/upload")
    assert r.status_code == 200 and 'id="upload-form"' in r.text
    assert "series.nc" in r.text or "med.nc" in r.text  # the caller's uploads
    csrf = re.search(r'name="_csrf" value="([^"]+)"', r.text)[1]
    script = page(team.member, "upload.js")
    assert script.status_code == 200 and "class Sha256" in script.text
    assert page(team.outsider, f"projects/{team.p1}/upload").status_code == 404

    data = NC4.read_bytes()
    files = {"file": ("form.nc", data, "application/octet-stream")}
    # without the CSRF token: refused, nothing written
    r = page(team.member, f"upload/{team.p1}", files=files)
    assert r.status_code == 403
    r = page(team.member, f"upload/{team.p1}", files=files, data={"_csrf": csrf})
    assert r.status_code == 303, r.text
    shown = requests.get(f"{team.hub.url}{r.headers['Location']}", timeout=60,
                         cookies={"oceandata-alloc-auth": team.member.token})
    assert 'id="upload-done"' in shown.text and "uploads/form.nc" in shown.text
    assert (team.workspace(team.p1) / "uploads" / "form.nc").read_bytes() == data
    # a wrong sha256 in the form: an error page, nothing kept
    r = page(team.member, f"upload/{team.p1}", files=files,
             data={"_csrf": csrf, "filename": "form2.nc", "sha256": "1" * 64})
    assert r.status_code == 400 and "discarded" in r.text
    assert not (team.workspace(team.p1) / "uploads" / "form2.nc").exists()
    # the outsider's form to the project: 404
    r = page(team.outsider, f"upload/{team.p1}", files=files, data={"_csrf": csrf})
    assert r.status_code in (403, 404)


def test_the_page_script_hashes_like_sha256(tmp_path: Path) -> None:
    """The page's incremental SHA-256 (node, as the proxy's runtime) against hashlib."""
    script = Path(__file__).parents[1] / "oceandata" / "alloc" / "templates" / "upload.js"
    check = tmp_path / "check.js"
    check.write_text(
        "const {Sha256} = require(process.argv[2]);\n"
        "const crypto = require('crypto');\n"
        "for (const n of [0, 1, 55, 56, 63, 64, 65, 1000, 100003]) {\n"
        "  const data = crypto.randomBytes(n); const h = new Sha256();\n"
        "  for (let i = 0; i < n; i += 37) h.update(data.subarray(i, i + 37));\n"
        "  if (h.hex() !== crypto.createHash('sha256').update(data).digest('hex')) {\n"
        "    console.log('mismatch at ' + n); process.exit(1); } }\n"
        "console.log('ok');\n")
    node = subprocess.run(["node", str(check), str(script)], capture_output=True, text=True,
                          timeout=60)
    assert node.returncode == 0 and node.stdout.strip() == "ok", node.stdout + node.stderr


def test_the_page_sends_chunks_with_its_script_in_a_browser(team: Team, tmp_path: Path
                                                             ) -> None:
    """The page's script in headless Chromium: start, chunks and complete through the REST
    API with the session cookie and its CSRF token, the SHA-256 computed by the script."""
    from tests.browser_helpers import launched_browser
    from tests.hub_helpers import PASSWORD

    local = tmp_path / "browser.nc"
    local.write_bytes(NC4.read_bytes())
    with launched_browser() as browser:
        context = browser.new_context()
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{team.hub.url}/hub/login?next=/hub/home")
            page.fill("#username_input", team.member.name)
            page.fill("#password_input", PASSWORD)
            page.click("#login_submit")
            page.wait_for_url(re.compile(r"/hub/home"))
            page.goto(f"{team.hub.url}{SERVICE}/projects/{team.p1}/upload")
            calls: list[str] = []
            page.on("request", lambda req: calls.append(f"{req.method} {req.url}"))
            page.set_input_files("#file", str(local))
            page.check("#chunked")
            page.click("#upload-submit")
            page.wait_for_url(re.compile(r"upload\?done=browser\.nc"))
            assert "uploads/browser.nc" in page.text_content("#upload-done")
            # the script sent it through the REST API, not the plain form
            assert any(re.match(r"PUT .*/api/uploads/[0-9a-f]{32}/chunks\?offset=0$", c)
                       for c in calls), calls
            assert any(re.match(r"POST .*/api/uploads/[0-9a-f]{32}/complete$", c)
                       for c in calls), calls
            assert not any(f"/upload/{team.p1}" in c for c in calls), calls
        finally:
            context.close()
    assert (team.workspace(team.p1) / "uploads" / "browser.nc").read_bytes() == local.read_bytes()
    rows = api(team.member, "GET", f"projects/{team.p1}/uploads").json()
    sent = next(u for u in rows if u["filename"] == "browser.nc")
    assert sent["sha256"] == hashlib.sha256(local.read_bytes()).hexdigest()


@pytest.mark.skipif(os.geteuid() != 0, reason="the check drops to nobody as root only")
def test_the_netcdf_check_runs_as_nobody_with_the_project_group(tmp_path: Path) -> None:
    """netCDF4 opens uploaded bytes in a child without root's rights: a file only root may
    read cannot be checked (503, the upload stays open), never mistaken for not NetCDF."""
    from oceandata.alloc.uploads_api import CheckUnavailable, check_netcdf
    from tests.hub_helpers import reachable_by_accounts

    folder = reachable_by_accounts(tmp_path / "check")
    folder.mkdir()
    gid = grp.getgrnam("nogroup").gr_gid if "nogroup" in {g.gr_name for g in grp.getgrall()} \
        else os.getgid()
    good, text = folder / "good.nc", folder / "text.nc"
    good.write_bytes(NC4.read_bytes())
    text.write_text("lat,lon\n")
    for path in (good, text):
        os.chown(path, 0, gid)
        os.chmod(path, 0o640)  # the group reads it, as in uploads/.partial
    assert check_netcdf(good, gid) is None
    assert check_netcdf(text, gid)  # a reason
    os.chmod(good, 0o600)  # root only: the child cannot read it
    with pytest.raises(CheckUnavailable):
        check_netcdf(good, gid)


class _CuttingProxy:
    """A TCP relay to the hub that drops the connection of the first chunk sent from a
    non-zero offset after relaying part of its body (a network failure, not a fake of
    the service)."""

    def __init__(self, target: tuple[str, int], keep: int) -> None:
        import threading

        self.target, self.keep, self.cuts = target, keep, 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        import threading

        upstream = socket.create_connection(self.target)

        def back() -> None:
            try:
                while data := upstream.recv(65536):
                    client.sendall(data)
            except OSError:
                pass
            finally:
                client.close()

        threading.Thread(target=back, daemon=True).start()
        head = b""
        try:
            while b"\r\n\r\n" not in head and (data := client.recv(65536)):
                head += data
            with self.lock:
                cut = (self.cuts == 0 and head.startswith(b"PUT ")
                       and b"/chunks?offset=0 " not in head.split(b"\r\n", 1)[0])
                self.cuts += cut
            if cut:
                end = head.index(b"\r\n\r\n") + 4
                upstream.sendall(head[:end + self.keep])
                for sock in (upstream, client):  # shutdown: the other thread's recv ends
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                return
            upstream.sendall(head)
            while data := client.recv(65536):
                upstream.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.server.close()


def test_the_cli_resumes_a_chunk_cut_by_a_lost_connection(team: Team, tmp_path: Path,
                                                          monkeypatch) -> None:
    from oceandata.alloc import upload_cli

    url = urllib.parse.urlsplit(team.hub.url)
    proxy = _CuttingProxy((url.hostname, url.port), keep=10_000)
    local = tmp_path / "cut.nc"
    local.write_bytes(NC4.read_bytes())
    monkeypatch.setenv("OCEANDATA_ALLOC_URL", f"http://127.0.0.1:{proxy.port}{SERVICE}")
    monkeypatch.setenv("OCEANDATA_TOKEN", team.member.token)
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    try:
        done = upload_cli.upload_file(local, team.p1, chunk_size=64 * KIB)
    finally:
        proxy.close()
    assert proxy.cuts == 1
    assert done["state"] == "complete" and done["path"] == "uploads/cut.nc"
    assert (team.workspace(team.p1) / "uploads" / "cut.nc").read_bytes() == local.read_bytes()


def _project_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        owner: str) -> tuple[str, int]:
    """An approved 1 GB project of *owner* in a SQLite database of its own, the
    allocations service's code in this process (single-account mode): (URL, id)."""
    from oceandata.alloc import core, db

    (tmp_path / "var").mkdir()
    monkeypatch.setenv("OCEANDATA_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("OCEANDATA_ACCOUNTS", "single")
    url = f"sqlite:///{tmp_path / 'alloc.sqlite'}"
    db.upgrade(url)
    with db.session_scope(url) as s:
        alloc = core.request_allocation(s, owner, {
            "project_title": "In process", "pi": "Dr P", "institution": "NMDC",
            "justification": "x", "core_hours": 1, "max_cores": 1, "memory_per_job_gb": 1,
            "storage_gb": 1, "start_date": (TODAY - dt.timedelta(days=1)).isoformat(),
            "end_date": (TODAY + dt.timedelta(days=9)).isoformat()})
        core.decide(s, alloc.id, "pu-admin", True, approve=True)
        return url, alloc.id


def test_two_starts_at_once_cannot_both_have_the_last_free_space(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The review's race: two 0.9 GB uploads start against a 1 GB quota, both measured
    before either reserves; only one may be accepted (in process, the service's code)."""
    import threading

    from oceandata.alloc import db, uploads_api, workspaces
    from oceandata.alloc.core import QuotaExceeded

    url, alloc_id = _project_in_process(tmp_path, monkeypatch, "pu-race")
    both_measured = threading.Barrier(2, timeout=60)
    real = workspaces.project_bytes

    def measured_together(session: Any, project: int, data_dir: Any = None,
                          max_age: float | None = None) -> int:
        value = real(session, project, data_dir, max_age)
        if max_age is None:  # the start's measurement: both are in it before either decides
            both_measured.wait()
        return value

    monkeypatch.setattr(workspaces, "project_bytes", measured_together)
    outcomes: list[str] = []

    def start_one(i: int) -> None:
        try:
            with db.session_scope(url) as s:
                uploads_api.start(s, alloc_id, "pu-race",
                                  {"filename": f"f{i}.nc", "size": 900_000_000})
            outcomes.append("accepted")
        except QuotaExceeded as exc:
            outcomes.append(f"refused: {exc}")

    threads = [threading.Thread(target=start_one, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.split(":")[0] for o in outcomes) == ["accepted", "refused"], outcomes
    assert "would exceed it" in next(o for o in outcomes if o != "accepted")
    with db.session_scope(url) as s:
        assert uploads_api.reserved_bytes(s, alloc_id) == 900_000_000
    partial = tmp_path / "var" / "projects" / str(alloc_id) / "uploads" / uploads_api.PARTIAL
    assert len(os.listdir(partial)) == 1  # the refused start wrote nothing


def test_a_removed_members_open_upload_no_longer_holds_the_quota(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The prober's finding: a member starts a 990 MB upload against a 1 GB quota and is
    removed; nobody could abort it (it is theirs, and they are no longer in the project),
    so every upload of the project was refused for the 7 days until it expired. A removed
    member's open uploads are abandoned (partial file removed) at the project's next
    start or measurement."""
    from oceandata.alloc import core, db, projects, uploads_api
    from oceandata.alloc.models import Upload, UploadState

    url, alloc_id = _project_in_process(tmp_path, monkeypatch, "pu-lead")
    with db.session_scope(url) as s:
        projects.add_member(s, alloc_id, "pu-lead", False, "pu-gone")
    with db.session_scope(url) as s:
        held = uploads_api.start(s, alloc_id, "pu-gone",
                                 {"filename": "huge.nc", "size": 990_000_000}).id
    partial = tmp_path / "var" / "projects" / str(alloc_id) / "uploads" / uploads_api.PARTIAL
    assert os.listdir(partial) == [held]
    with db.session_scope(url) as s:  # the quota is held: the PI cannot upload
        with pytest.raises(core.QuotaExceeded):
            uploads_api.start(s, alloc_id, "pu-lead", {"filename": "a.nc", "size": 20_000_000})
    with db.session_scope(url) as s:
        projects.remove_member(s, alloc_id, "pu-lead", False, "pu-gone")
    with db.session_scope(url) as s:
        mine = uploads_api.start(s, alloc_id, "pu-lead",
                                 {"filename": "a.nc", "size": 20_000_000}).id
        assert s.get(Upload, held).state == UploadState.ABORTED
        assert uploads_api.reserved_bytes(s, alloc_id) == 20_000_000
    assert os.listdir(partial) == [mine]
