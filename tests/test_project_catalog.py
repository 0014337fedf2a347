"""Project catalogs: ingest into a project, its members see it, nobody else does.

On the shared platform (:func:`tests.conftest.projects_hub`: the real hub, allocations
and open-data services, one Unix account per user): project A has a PI and a member,
project B another PI, and an outsider is in no project. An upload of project A (a real
sample NetCDF copied into ``<workspace>/uploads/`` as root, as the upload service leaves
it) is ingested by the member, running ``oceandata ingest --project`` as their own Unix
account; the member sees the entry in ``open_catalog()`` and through the data service
with their token (portal, search, STAC, OPeNDAP, Zarr, subsets); B's PI, the outsider and
anonymous callers do not (404, not listed), and their accounts cannot read the workspace.
An append that would exceed the quota is refused with one line, exit 2, nothing written.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pwd
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from tests.hub_helpers import Hub, HubClient, new_user

pytestmark = [pytest.mark.slow]

SERVICE = "/services/allocations"
DATA = "/services/data"
OCEANDATA = str(Path(sys.executable).with_name("oceandata"))
TODAY = dt.date.today()
#: project A's quota: an upload, its store, and not much more
QUOTA_GB = 0.02


def _plain_yaml(doc: dict) -> str:
    """*doc* as YAML without anchors or aliases (project catalogs refuse them; the test's
    entries share dicts, which ``yaml.safe_dump`` would write as aliases)."""
    import yaml

    plain = type("Plain", (yaml.SafeDumper,), {"ignore_aliases": lambda *_: True})
    return yaml.dump(doc, Dumper=plain)


def _api(user: HubClient | None, method: str, url: str, **kw) -> requests.Response:
    headers = {"Authorization": f"token {user.token}"} if user is not None else {}
    return requests.request(method, url, headers=headers, timeout=60, allow_redirects=False,
                            **kw)


def _project(hub: Hub, admin: HubClient, pi: HubClient, storage_gb: float) -> int:
    body = {"project_title": f"Project of {pi.name}", "pi": "Dr. P. I.",
            "institution": "Partner", "justification": "Project stores.",
            "core_hours": 10, "max_cores": 2, "memory_per_job_gb": 2,
            "storage_gb": storage_gb,
            "start_date": (TODAY - dt.timedelta(days=1)).isoformat(),
            "end_date": (TODAY + dt.timedelta(days=30)).isoformat(), "datasets": []}
    r = _api(pi, "POST", f"{hub.url}{SERVICE}/api/allocations", json=body)
    assert r.status_code == 201, r.text
    alloc_id = r.json()["id"]
    r = _api(admin, "POST", f"{hub.url}{SERVICE}/api/allocations/{alloc_id}/approve",
             json={})
    assert r.status_code == 200, r.text
    return alloc_id


def _db(hub: Hub) -> str:
    return f"sqlite:///{hub.runtime.data_dir / 'alloc' / 'alloc.sqlite'}"


def _add_member(hub: Hub, alloc_id: int, pi: str, member: str) -> None:
    """The PI adds a member (the rule of :mod:`oceandata.alloc.projects`, in the service's
    database) and the workspace's Unix group follows."""
    from oceandata.alloc import db, projects

    with db.session_scope(_db(hub)) as session:
        projects.add_member(session, alloc_id, pi, False, member)
    _sync(hub, alloc_id)


def _sync(hub: Hub, alloc_id: int) -> None:
    """The project's Unix group set to its members (what the service does after the PI's
    "add member", which this file does in the service's database itself)."""
    from oceandata.alloc import db, projects, workspaces

    with db.session_scope(_db(hub)) as session:
        alloc = projects.get_member_project(session, alloc_id, "", is_admin=True)
        names = [m.user for m in projects.members(session, alloc)]
    workspaces.sync_workspace(alloc_id, names, hub.runtime.data_dir)


@pytest.fixture(scope="module")
def world(projects_hub: Hub, projects_admin: HubClient, sample) -> dict:
    from oceandata.alloc import workspaces
    from oceandata.hub import accounts

    hub, admin = projects_hub, projects_admin
    tag = uuid.uuid4().hex[:5]
    pi_a, member, pi_b, outsider = (new_user(hub, admin, f"pc-{role}{tag}")
                                    for role in ("pia", "mem", "pib", "out"))
    a = _project(hub, admin, pi_a, QUOTA_GB)
    b = _project(hub, admin, pi_b, 1.0)
    _add_member(hub, a, pi_a.name, member.name)
    accounts.ensure_account(outsider.name, hub.runtime.data_dir)
    workspace = workspaces.workspace_path(a, hub.runtime.data_dir)
    # an upload of project A, as the upload service leaves it: root:group, 0640
    upload = workspace / "uploads" / "year1950.nc"
    shutil.copyfile(sample("gridded/cobe-sst2/year1950.nc"), upload)
    os.chown(upload, 0, os.stat(workspace).st_gid)
    os.chmod(upload, 0o640)
    return {"hub": hub, "a": a, "b": b, "pi_a": pi_a, "member": member, "pi_b": pi_b,
            "outsider": outsider, "workspace": workspace,
            "year1951": sample("gridded/cobe-sst2/year1951.nc")}


def _env(hub: Hub, user: HubClient) -> dict[str, str]:
    home = pwd.getpwnam(f"oceandata-{user.name}").pw_dir
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": home,
           "LANG": "C.UTF-8", "OCEANDATA_ALLOC_URL": f"{hub.url}{SERVICE}",
           "JUPYTERHUB_API_TOKEN": user.token or "", "JUPYTERHUB_USER": user.name,
           "OCEANDATA_DATA_DIR": str(hub.runtime.data_dir)}
    for key in ("OCEANDATA_CATALOG", "OCEANDATA_SAMPLE_DATA", "OCEANDATA_SAMPLE_CACHE"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    return env


def _as(hub: Hub, user: HubClient, *cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    """*cmd* run as *user*'s own Unix account, with the environment of their server."""
    env = _env(hub, user)
    return subprocess.run(["runuser", "-u", f"oceandata-{user.name}", "--", "env", "-i",
                           *(f"{k}={v}" for k, v in env.items()), *cmd],
                          capture_output=True, text=True, timeout=600, cwd=cwd)


def _tree(path: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(path)), p.stat().st_size if p.is_file() else -1)
                  for p in path.rglob("*"))


def test_a_member_ingests_an_upload_into_the_project_store(world: dict,
                                                           tmp_path: Path) -> None:
    hub, a, member = world["hub"], world["a"], world["member"]
    workspace: Path = world["workspace"]
    done = _as(hub, member, OCEANDATA, "ingest", "year1950.nc", "--project", str(a),
               "--name", "sst", cwd=tmp_path)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert f"p{a}.sst" in done.stdout
    store = workspace / "stores" / "sst.icechunk"
    catalog = workspace / "catalog.yaml"
    assert (store / "refs").is_dir() and catalog.is_file()
    import yaml

    entry = yaml.safe_load(catalog.read_text())["sources"]["sst"]
    assert entry["driver"] == "icechunk" and entry["args"]["urlpath"] == str(store)
    # described by the data (ACDD summary, else title), not by a placeholder: it becomes
    # the abstract of a publication
    assert entry["description"] == "created 12/2013 from data provided by JRA"
    # written for the project group, others nothing; the store sealed after the write
    # (remote_measure): root's, files read by the group, folders group-writable
    group = os.stat(workspace).st_gid
    for path in (catalog, store, *store.rglob("*")):
        info = path.stat()
        assert info.st_gid == group, path
        want = 0o060 if path == catalog or path.is_dir() else 0o040
        assert info.st_mode & 0o060 == want and info.st_mode & 0o007 == 0, (
            path, oct(info.st_mode))
        assert path == catalog or info.st_uid == 0, path

    # the outsider and the other project's PI: one line, exit 2, nothing written
    for who in (world["outsider"], world["pi_b"]):
        refused = _as(hub, who, OCEANDATA, "ingest", "year1950.nc", "--project", str(a),
                      "--name", "theirs", cwd=tmp_path)
        assert refused.returncode == 2, (refused.stdout, refused.stderr)
        assert f"no project {a} of yours" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        # and their accounts cannot even list the workspace
        ls = _as(hub, who, "ls", str(workspace), cwd=tmp_path)
        assert ls.returncode != 0 and "Permission denied" in ls.stderr
    assert not (workspace / "stores" / "theirs.icechunk").exists()

    # bad input: one line each, exit 2
    for args, said in ((["nothere.nc"], "matches no file"),
                       (["year1950.nc", "--name", "../x"], "not a project entry name"),
                       (["year1950.nc", "--name", "sst"], "already has a store 'sst'"),
                       (["year1950.nc", "--store", "x.icechunk"], "drop --store")):
        bad = _as(hub, member, OCEANDATA, "ingest", *args, "--project", str(a), cwd=tmp_path)
        assert bad.returncode == 2 and said in bad.stderr, (args, bad.stderr)
        assert "Traceback" not in bad.stderr
    # a catalog broken by hand is found before any store is written
    good = catalog.read_bytes()
    catalog.write_text("sources: [not, a, mapping\n")
    try:
        bad = _as(hub, member, OCEANDATA, "ingest", "year1950.nc", "--project", str(a),
                  "--name", "other", cwd=tmp_path)
        assert bad.returncode == 2 and "catalog cannot be updated" in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert not (workspace / "stores" / "other.icechunk").exists()
    finally:
        catalog.write_bytes(good)

    # a store left unregistered (killed between its commit and the registration): the
    # same command again registers it without writing it twice
    args = ("ingest", "year1950.nc", "--project", str(a), "--name", "orphan", "--no-check")
    assert _as(hub, member, OCEANDATA, *args, cwd=tmp_path).returncode == 0
    orphan = workspace / "stores" / "orphan.icechunk"
    snapshots = sorted(p.name for p in (orphan / "snapshots").iterdir())
    catalog.write_bytes(good)  # as if the registration never happened
    again = _as(hub, member, OCEANDATA, *args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout and f"p{a}.orphan" in again.stdout
    assert sorted(p.name for p in (orphan / "snapshots").iterdir()) == snapshots
    assert "orphan" in yaml.safe_load(catalog.read_text())["sources"]
    catalog.write_bytes(good)
    shutil.rmtree(orphan)


CHILD = """
import json, oceandata
cat = oceandata.open_catalog()
found = {n: e.project for n, e in cat.entries.items() if e.project is not None}
out = {"found": found}
if "p%(a)d.sst" in cat:
    ds = cat["p%(a)d.sst"].to_dask()
    out["shape"] = dict(ds.sizes)
print(json.dumps(out))
"""


def test_members_see_the_entry_in_open_catalog(world: dict, tmp_path: Path) -> None:
    hub, a = world["hub"], world["a"]
    code = CHILD % {"a": a}
    for who, sees in ((world["member"], True), (world["pi_a"], True),
                      (world["pi_b"], False), (world["outsider"], False)):
        done = _as(hub, who, sys.executable, "-c", code, cwd=tmp_path)
        assert done.returncode == 0, (who.name, done.stderr[-2000:])
        out = json.loads(done.stdout.strip().splitlines()[-1])
        if sees:
            assert out["found"] == {f"p{a}.sst": a}, (out, done.stderr[-3000:])
            assert out["shape"]["time"] == 12
        else:
            assert out["found"] == {}, (who.name, out)


def test_the_data_service_serves_project_entries_to_members_only(world: dict) -> None:
    hub, a = world["hub"], world["a"]
    base = f"{hub.url}{DATA}"
    name = f"p{a}.sst"
    paths = [f"datasets/{name}", f"stac/collections/{name}",
             f"datasets/{name}/opendap.dds", f"datasets/{name}/zarr/zarr.json",
             f"datasets/{name}/subset?time=1950-01/1950-02&bbox=120,0,130,10&format=nc4"]
    member = world["member"]
    for path in paths:
        r = _api(member, "GET", f"{base}/{path}")
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    listed = _api(member, "GET", f"{base}/datasets.json").json()
    assert name in json.dumps(listed)
    found = _api(member, "GET", f"{base}/stac/search", params={"collections": name}).json()
    assert found["features"], found
    page = _api(member, "GET", f"{base}/search", params={"q": "sst"})
    assert name in page.text
    for who in (world["pi_b"], world["outsider"], None):
        for path in paths:
            r = _api(who, "GET", f"{base}/{path}")
            assert r.status_code == 404, (who and who.name, path, r.status_code)
        assert name not in _api(who, "GET", f"{base}/datasets.json").text
        assert name not in _api(who, "GET", f"{base}/stac/collections").text
        found = _api(who, "GET", f"{base}/stac/search", params={"q": "sst"}).json()
        assert name not in json.dumps(found)
        assert name not in _api(who, "GET", f"{base}/search", params={"q": "sst"}).text


def test_an_append_over_quota_is_refused_and_writes_nothing(world: dict,
                                                           tmp_path: Path) -> None:
    from oceandata.alloc.workspaces import GB, workspace_bytes

    hub, a, member = world["hub"], world["a"], world["member"]
    workspace: Path = world["workspace"]
    year1951 = tmp_path / "year1951.nc"
    shutil.copyfile(world["year1951"], year1951)
    os.chmod(year1951, 0o644)
    # fill the workspace so that the second year's bytes do not fit (real bytes: blocks)
    used = workspace_bytes(workspace)
    filler = workspace / "outputs" / "filler.bin"
    room = int(QUOTA_GB * GB) - used - year1951.stat().st_size // 2
    assert room > 0, f"the first store already takes {used} bytes"
    with open(filler, "wb") as fh:
        fh.write(os.urandom(room))
    before = _tree(workspace / "stores")
    catalog = (workspace / "catalog.yaml").read_bytes()
    try:
        refused = _as(hub, member, OCEANDATA, "ingest", str(year1951), "--project", str(a),
                      "--name", "sst", "--append", cwd=tmp_path)
        assert refused.returncode == 2, (refused.stdout, refused.stderr)
        lines = [ln for ln in refused.stderr.strip().splitlines()
                 if not ln.startswith("warning:")]
        assert len(lines) == 1 and "quota" in lines[0], refused.stderr
        assert "Traceback" not in refused.stderr
        assert _tree(workspace / "stores") == before
        assert (workspace / "catalog.yaml").read_bytes() == catalog
    finally:
        filler.unlink()
    # with room again, the append goes through and the data service serves the new year
    # (the dataset it had opened with one year is dropped when the catalog changes)
    dds = f"{hub.url}{DATA}/datasets/p{a}.sst/opendap.dds"
    assert "time = 12]" in _api(member, "GET", dds).text
    done = _as(hub, member, OCEANDATA, "ingest", str(year1951), "--project", str(a),
               "--name", "sst", "--append", cwd=tmp_path)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "time = 24]" in _api(member, "GET", dds).text
    r = _api(member, "GET", f"{hub.url}{DATA}/stac/collections/p{a}.sst")
    assert r.status_code == 200
    assert "1951" in json.dumps(r.json()["extent"]["temporal"])


def test_a_member_cannot_make_the_service_serve_another_projects_store(
        world: dict, tmp_path: Path) -> None:
    """The data service reads every workspace: a member of A who writes A's catalog (they
    may) to name B's store, directly or through a link, is served nothing of it."""
    import yaml

    hub, a, b = world["hub"], world["a"], world["b"]
    member, pi_b = world["member"], world["pi_b"]
    year1951 = tmp_path / "year1951.nc"
    shutil.copyfile(world["year1951"], year1951)
    os.chmod(year1951, 0o644)
    done = _as(hub, pi_b, OCEANDATA, "ingest", str(year1951), "--project", str(b),
               "--name", "bsst", cwd=tmp_path)
    assert done.returncode == 0, (done.stdout, done.stderr)
    theirs = world["workspace"].parent / str(b) / "stores" / "bsst.icechunk"
    base = f"{hub.url}{DATA}"
    assert _api(pi_b, "GET", f"{base}/datasets/p{b}.bsst").status_code == 200
    assert _api(member, "GET", f"{base}/datasets/p{b}.bsst").status_code == 404

    catalog = world["workspace"] / "catalog.yaml"
    doc = yaml.safe_load(catalog.read_text())
    good = doc["sources"]["sst"]
    link = world["workspace"] / "stores" / "linked.icechunk"
    link.symlink_to(theirs)
    doc["sources"]["stolen"] = {**good, "args": {**good["args"], "urlpath": str(theirs)}}
    doc["sources"]["linked"] = {**good, "args": {**good["args"], "urlpath": str(link)}}
    doc["sources"]["templated"] = {**good, "args": {
        **good["args"], "urlpath": "{{ env(OCEANDATA_DATA_DIR) }}/projects/" + str(b)}}
    code = _as(hub, member, sys.executable, "-c",
               f"import pathlib, sys; pathlib.Path({str(catalog)!r}).write_text(sys.argv[1])",
               _plain_yaml(doc), cwd=tmp_path)
    assert code.returncode == 0, code.stderr
    try:
        for name in ("stolen", "linked", "templated"):
            r = _api(member, "GET", f"{base}/datasets/p{a}.{name}/zarr/zarr.json")
            assert r.status_code == 404, (name, r.status_code, r.text[:200])
        assert _api(member, "GET", f"{base}/datasets/p{a}.sst").status_code == 200
        # and the member's own process does not list them either
        out = _as(hub, member, sys.executable, "-c",
                  "import oceandata; print(sorted(oceandata.open_catalog().entries))",
                  cwd=tmp_path)
        assert f"p{a}.sst" in out.stdout and f"p{a}.stolen" not in out.stdout, out
        assert f"p{a}.linked" not in out.stdout and f"p{b}.bsst" not in out.stdout
    finally:
        del doc["sources"]["stolen"], doc["sources"]["linked"], doc["sources"]["templated"]
        catalog.write_text(_plain_yaml(doc))
        link.unlink()


def test_project_catalogs_are_read_with_suspicion(tmp_path: Path, sample) -> None:
    """In process: what a member may write into a project catalog, and what is left out;
    a link put into a store after its entry was read stops it being opened."""
    import yaml

    from oceandata.catalog.projects import load_project_catalog, verify_snapshot
    from oceandata.errors import CatalogError
    from oceandata.governance.rules import Subject, decide
    from oceandata.ingest import ingest, open_store, register_store

    workspace = tmp_path / "projects" / "7"
    (workspace / "stores").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    store = workspace / "stores" / "good.icechunk"
    ingest([sample("gridded/cobe-sst2/year1950.nc")], store, check=False)
    catalog = workspace / "catalog.yaml"
    register_store(catalog, "good", store)
    doc = yaml.safe_load(catalog.read_text())
    good = doc["sources"]["good"]
    shutil.copytree(store, outside / "other.icechunk")
    (workspace / "stores" / "link.icechunk").symlink_to(outside / "other.icechunk")
    bad = {
        "outside": {**good, "args": {**good["args"], "urlpath": str(outside / "other.icechunk")}},
        "link": {**good, "args": {**good["args"],
                                  "urlpath": str(workspace / "stores" / "link.icechunk")}},
        "relative": {**good, "args": {**good["args"], "urlpath": "stores/good.icechunk"}},
        "templ": {**good, "args": {**good["args"], "urlpath": "{{ CATALOG_DIR }}/x"}},
        "sub": {"driver": "yaml_file_cat", "args": {"path": str(tmp_path / "x.yaml")}},
        "remote": {**good, "driver": "opendap", "args": {"urlpath": "http://127.0.0.1:1/x"}},
        "plainzarr": {**good, "driver": "zarr"},
        "bad.name": good,
    }
    doc["sources"].update(bad)
    catalog.write_text(_plain_yaml(doc))
    cat = load_project_catalog(7, workspace)
    assert list(cat.entries) == ["p7.good"]
    entry = cat.entries["p7.good"]
    assert entry.project == 7 and entry.describe()["project"] == 7
    assert entry._open().sizes["time"] == 12

    # the rule: members of project 7 only, whatever the entry's release says
    entry.metadata.classification.release = "open"
    assert decide(entry, Subject.of("m", projects=[7])).allowed
    for subject in (Subject.of("m", projects=[8]), Subject.of(None),
                    Subject.of("m", groups=["admins"], datasets=["p7.good"])):
        assert not decide(entry, subject).allowed, subject

    # a link put into the store after the catalog was read: the store is not opened
    (store / "refs" / "evil").symlink_to(outside)
    with pytest.raises(CatalogError, match="symbolic link"):
        entry._open()
    (store / "refs" / "evil").unlink()

    # the race the checks before the open cannot see: the store swapped for a link to
    # another project's store while it is opened. What was opened is then not a snapshot
    # of the project's own store (through the link, or once the store is back): refused
    theirs = outside / "theirs.icechunk"
    ingest([sample("gridded/cobe-sst2/year1951.nc")], theirs, check=False)
    aside = workspace / "stores" / "aside"
    store.rename(aside)
    store.symlink_to(theirs)
    opened = open_store(store)  # what icechunk reads while the link is there
    snapshot = opened.attrs["oceandata_snapshot"]
    with pytest.raises(CatalogError, match="not one of its own"):
        verify_snapshot(store, workspace, snapshot)
    store.unlink()
    aside.rename(store)
    with pytest.raises(CatalogError, match="not one of its own"):
        verify_snapshot(store, workspace, snapshot)
    verify_snapshot(store, workspace, open_store(store).attrs["oceandata_snapshot"])
    # an "icechunk" entry naming a plain Zarr folder is not opened either
    with pytest.raises(CatalogError, match="not opened as a versioned store"):
        verify_snapshot(store, workspace, None)

    # a catalog that is itself a link is not read
    catalog.rename(workspace / "real.yaml")
    catalog.symlink_to(workspace / "real.yaml")
    with pytest.raises(CatalogError):
        load_project_catalog(7, workspace)


def test_a_members_notebook_opens_the_project_entry(world: dict) -> None:
    """In the member's own JupyterLab kernel (their Unix account, their server's
    environment), the project entry is in ``open_catalog()`` and opens."""
    a, member = world["a"], world["member"]
    member.start_server()
    try:
        out = member.run_code(CHILD % {"a": a})
    finally:
        member.api("DELETE", f"/hub/api/users/{member.name}/server")
    found = json.loads(out.strip().splitlines()[-1])
    assert found["found"] == {f"p{a}.sst": a}, out
    assert found["shape"]["time"] >= 12


def test_a_removed_member_loses_the_entry(world: dict, tmp_path: Path) -> None:
    """Removed from project A (last: the other tests need the member), the user no
    longer sees its entry: the data service within its grants' cache bound, their
    processes at once."""
    import time

    from oceandata.alloc import db, projects
    from oceandata.hub.security import CACHE_SECONDS

    hub, a, member = world["hub"], world["a"], world["member"]
    with db.session_scope(_db(hub)) as session:
        projects.remove_member(session, a, world["pi_a"].name, False, member.name)
    _sync(hub, a)  # as the service's "remove member" route does in the same transaction
    url = f"{hub.url}{DATA}/datasets/p{a}.sst"
    done = _as(hub, member, sys.executable, "-c", CHILD % {"a": a}, cwd=tmp_path)
    assert json.loads(done.stdout.strip().splitlines()[-1])["found"] == {}, done.stderr
    ls = _as(hub, member, "ls", str(world["workspace"]), cwd=tmp_path)
    assert ls.returncode != 0 and "Permission denied" in ls.stderr
    deadline = time.monotonic() + 3 * CACHE_SECONDS + 10
    while _api(member, "GET", url).status_code != 404:
        assert time.monotonic() < deadline, "the data service still serves a removed member"
        time.sleep(0.5)  # poll interval: the grants are re-read after CACHE_SECONDS
    assert _api(world["pi_a"], "GET", url).status_code == 200


def test_an_async_subset_job_opens_a_project_entry_for_members_only(
        tmp_path: Path, sample, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """The program of an asynchronous download (run as the caller, with the grants the
    service passes) reads a project entry from the project's workspace when the caller is
    a member (``--project``), and refuses in one line otherwise."""
    import xarray as xr

    from oceandata.config import get_settings
    from oceandata.dataservice import subset_job
    from oceandata.ingest import ingest, register_store

    data = tmp_path / "var"
    workspace = data / "projects" / "7"
    (workspace / "stores").mkdir(parents=True)
    store = workspace / "stores" / "sst.icechunk"
    ingest([sample("gridded/cobe-sst2/year1950.nc")], store, check=False)
    register_store(workspace / "catalog.yaml", "sst", store)
    monkeypatch.setenv("OCEANDATA_DATA_DIR", str(data))
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    for projects, written in (([7], True), ([8], False), ([], False)):
        args = subset_job.job_arguments(
            catalog=str(get_settings().catalog), dataset="p7.sst", version=None,
            subset={"time": "1950-01/1950-02", "format": "nc4"}, url="http://x/subset",
            output=f"sst-{len(projects)}-{written}.nc", projects=projects)
        code = subset_job.main([*args, f"--output-dir={outputs}"])
        out = outputs / f"sst-{len(projects)}-{written}.nc"
        assert (code == 0) == written and out.exists() == written, capsys.readouterr()
        if written:
            with xr.open_dataset(out) as ds:
                assert ds.sizes["time"] == 2
        else:
            err = capsys.readouterr().err
            assert subset_job.ERROR_MARK in err and "p7.sst" in err, err
