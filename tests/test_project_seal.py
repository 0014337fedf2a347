"""Sealed project stores: what a root reader opened, no member can replace.

The open-data service (root) keeps a project store open; a member who could swap a chunk
file for a link to a file only root may read (or to another project's files) would have
the service read it for them. A store is therefore sealed (as root) before a root reader
opens it and after every measurement of its workspace
(:func:`oceandata.catalog.projects.seal_store`): files root's 0640, folders root's 03770
(setgid, sticky: members add files but cannot replace, rename or delete a sealed one),
``refs/`` 02770 (Icechunk renames a new ``ref.json`` over the old one on a commit). The
seal never follows a link; a store holding one is not served.

On the shared platform (:func:`tests.conftest.projects_hub`, one Unix account per user)
with a member's own account (``runuser``): the reviewer's attack, rename/delete refused,
an append by the member still works and is served; in process: the seal never follows a
link (the target's owner and mode unchanged).
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import uuid
from pathlib import Path

import pytest
import requests

from tests.hub_helpers import Hub, HubClient, new_user

SERVICE = "/services/allocations"
DATA = "/services/data"
MARKER = b"TOP-SECRET-OF-ROOT "
#: bytes of the one chunk of the member's store (as many as the secret file's)
N = len(MARKER) * 200

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="sealing changes owners: root")


#: writes an Icechunk store of one uncompressed uint8 variable in one chunk of N bytes
#: (run in process and, as a member's account, in a child)
STORE = """
import icechunk, numpy as np, xarray as xr
repo = icechunk.Repository.create(icechunk.local_filesystem_storage({store!r}))
session = repo.writable_session("main")
ds = xr.Dataset({{"v": ("i", np.full({n}, 7, dtype="uint8"))}},
                coords={{"i": np.arange({n})}}, attrs={{"title": "t"}})
ds.to_zarr(session.store, encoding={{"v": {{"compressors": None, "chunks": ({n},)}}}},
           zarr_format=3, consolidated=False)
session.commit("one chunk")
"""


def _store(path: Path) -> None:
    exec(STORE.format(store=str(path), n=N), {})


@needs_root
def test_the_seal_never_follows_a_link(tmp_path: Path) -> None:
    from oceandata.catalog.projects import (
        SEALED_DIR_MODE,
        SEALED_FILE_MODE,
        SEALED_REFS_MODE,
        drop_shadow,
        seal_store,
        sealed_store,
    )
    from oceandata.errors import CatalogError

    workspace = tmp_path / "projects" / "7"
    (workspace / "stores").mkdir(parents=True)
    gid = 65534  # a group other than root's, as a project's is
    os.chown(workspace, 0, gid)
    store = workspace / "stores" / "x.icechunk"
    _store(store)
    secret = tmp_path / "secret"
    secret.write_bytes(MARKER)
    os.chmod(secret, 0o600)
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o700)
    # links planted before the seal: to a file, to a folder; and a hard link
    (store / "chunks" / "planted").symlink_to(secret)
    (store / "manifests" / "dir").symlink_to(outside)
    os.link(secret, store / "snapshots" / "hard")
    unsealed = seal_store(store, workspace)
    assert sorted(unsealed) == ["./chunks/planted", "./manifests/dir", "./snapshots/hard"]
    for target, mode in ((secret, 0o100600), (outside, 0o040700)):
        info = os.stat(target)
        assert (info.st_uid, info.st_gid, info.st_mode) == (0, 0, mode), target
    assert (store / "chunks" / "planted").is_symlink()  # left as it is, never followed
    # everything else sealed: root's, the project's group
    for path in (store, *store.rglob("*")):
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode) or path.name == "hard":
            continue
        assert (info.st_uid, info.st_gid) == (0, gid), path
        want = (SEALED_FILE_MODE if stat.S_ISREG(info.st_mode) else
                SEALED_REFS_MODE if "refs" in path.relative_to(store).parts else
                SEALED_DIR_MODE)
        assert stat.S_IMODE(info.st_mode) == want, (path, oct(info.st_mode))
    # a reader (root) is refused the store until the links are gone
    with pytest.raises(CatalogError, match="symbolic link"):
        sealed_store(store, workspace)
    for name in ("chunks/planted", "manifests/dir", "snapshots/hard"):
        (store / name).unlink()
    assert sealed_store(store, workspace, shadow=False) == store.resolve()
    # a root reader reads the store's shadow: the files sealed, hard-linked into a folder
    # only root can reach; what a member adds or renames later never appears there
    shadow = sealed_store(store, workspace)
    assert sealed_store(store, workspace) != shadow  # sealed again: each open its own
    assert shadow.is_relative_to(tmp_path / "sealed") and shadow.name == store.name
    assert stat.S_IMODE(os.stat(tmp_path / "sealed").st_mode) == 0o700
    files = sorted(p.relative_to(store) for p in store.rglob("*") if p.is_file())
    assert files and sorted(p.relative_to(shadow) for p in shadow.rglob("*")
                            if p.is_file()) == files
    for name in files:
        assert os.stat(shadow / name).st_ino == os.stat(store / name).st_ino
    (store / "chunks" / "LATER").symlink_to(secret)
    assert not os.path.lexists(shadow / "chunks" / "LATER")
    import xarray as xr

    from oceandata.ingest.store import open_store

    assert xr.testing.assert_identical(open_store(shadow), open_store(store)) is None
    (store / "chunks" / "LATER").unlink()
    drop_shadow(shadow)  # once nothing reads it
    assert not shadow.parent.exists()
    # the store itself a link: refused, the target untouched
    aside = workspace / "stores" / "aside.icechunk"
    store.rename(aside)
    store.symlink_to(outside)
    with pytest.raises(CatalogError):
        seal_store(store, workspace)
    assert stat.S_IMODE(os.stat(outside).st_mode) == 0o700


# --------------------------------------------------------------------- on the platform


def _api(user: HubClient | None, method: str, url: str, **kw) -> requests.Response:
    headers = {"Authorization": f"token {user.token}"} if user is not None else {}
    return requests.request(method, url, headers=headers, timeout=120,
                            allow_redirects=False, **kw)


@pytest.fixture(scope="module")
def world(projects_hub: Hub, projects_admin: HubClient, tmp_path_factory) -> dict:
    from oceandata.alloc import workspaces
    from oceandata.hub import accounts
    from tests.test_project_catalog import _add_member, _project

    hub, admin = projects_hub, projects_admin
    tag = uuid.uuid4().hex[:5]
    pi, member, outsider = (new_user(hub, admin, f"ps-{role}{tag}")
                            for role in ("pi", "mem", "out"))
    a = _project(hub, admin, pi, 0.05)
    _add_member(hub, a, pi.name, member.name)
    accounts.ensure_account(outsider.name, hub.runtime.data_dir)
    secret = tmp_path_factory.mktemp("ps-secret") / "secret.txt"
    secret.write_bytes(MARKER * 200)
    os.chmod(secret, 0o600)
    return {"hub": hub, "a": a, "pi": pi, "member": member, "outsider": outsider,
            "secret": secret, "workspace": workspaces.workspace_path(a, hub.runtime.data_dir)}


WRITE = STORE + """
from oceandata.ingest.register import register_store
register_store({catalog!r}, "x", {store!r}, defaults={{"license": "CC-BY-4.0", "provider": "P"}})
"""

APPEND = """
import icechunk, numpy as np, xarray as xr
repo = icechunk.Repository.open(icechunk.local_filesystem_storage({store!r}))
session = repo.writable_session("main")
ds = xr.Dataset({{"v": ("i", np.full({n}, 9, dtype="uint8"))}},
                coords={{"i": np.arange({n}, 2 * {n})}})
ds.to_zarr(session.store, append_dim="i", consolidated=False)
print(session.commit("appended"))
"""


def _owners(store: Path) -> set[int]:
    return {os.lstat(p).st_uid for p in (store, *store.rglob("*"))}


@needs_root
def test_a_member_cannot_make_the_service_read_a_root_file(world: dict,
                                                          tmp_path: Path) -> None:
    """The reviewer's attack: the data service has the member's store open; the member
    swaps its chunk for a link to a file only root may read; the service must not
    return the file's bytes. The member can neither delete, rename nor rewrite a sealed
    file, and their own append still works and is served."""
    from tests.test_project_catalog import _as

    hub, a, member = world["hub"], world["a"], world["member"]
    workspace: Path = world["workspace"]
    store = workspace / "stores" / "x.icechunk"
    catalog = workspace / "catalog.yaml"
    code = WRITE.format(store=str(store), n=N, catalog=str(catalog))
    done = _as(hub, member, sys.executable, "-c", code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    uid = os.stat(store).st_uid
    assert uid != 0  # the member's own files, until sealed

    # the measurement after a write (remote_measure) seals the store
    r = _api(member, "GET", f"{hub.url}{SERVICE}/api/projects/{a}/storage")
    assert r.status_code == 200, r.text
    assert _owners(store) == {0}

    dods = f"{hub.url}{DATA}/datasets/p{a}.x/opendap.dods"
    first = _api(member, "GET", dods)
    assert first.status_code == 200, first.text[:300]
    assert bytes([7]) * N in first.content and MARKER not in first.content
    meta = f"{hub.url}{DATA}/datasets/p{a}.x/zarr/v/zarr.json"
    shape = _api(member, "GET", meta)  # xpublish keeps the Zarr metadata it derived
    assert shape.status_code == 200 and shape.json()["shape"] == [N], shape.text[:300]

    chunk = next(p for p in (store / "chunks").iterdir() if p.stat().st_size == N)
    secret = str(world["secret"])
    for cmd in (["rm", "-f", str(chunk)], ["mv", str(chunk), f"{chunk}.aside"],
                ["ln", "-sf", secret, str(chunk)],
                ["sh", "-c", f"echo x > {chunk}"]):
        tried = _as(hub, member, *cmd, cwd=tmp_path)
        assert tried.returncode != 0, (cmd, tried.stdout, tried.stderr)
        assert "not permitted" in tried.stderr or "denied" in tried.stderr, tried.stderr
    assert chunk.is_file() and not chunk.is_symlink()
    again = _api(member, "GET", dods)
    assert again.status_code == 200
    assert MARKER not in again.content and bytes([7]) * N in again.content
    # the store's folder itself may be renamed (stores/ is not sticky) and a copy of the
    # member's put in its place, its chunk a link: the service reads its shadow instead
    aside = store.with_name("x.aside")
    swap = _as(hub, member, "sh", "-c",
               f"mv {store} {aside} && cp -r {aside} {store} && "
               f"ln -sf {secret} {store}/chunks/{chunk.name}", cwd=tmp_path)
    assert swap.returncode == 0, swap.stderr
    try:
        again = _api(member, "GET", dods)
        assert again.status_code == 200
        assert MARKER not in again.content and bytes([7]) * N in again.content
    finally:
        back = _as(hub, member, "sh", "-c", f"rm -rf {store} && mv {aside} {store}",
                   cwd=tmp_path)
        assert back.returncode == 0, back.stderr

    # the member's own append still works on the sealed store, and is served once the
    # catalog says so (the member registers it again, as ingest --append does)
    appended = _as(hub, member, sys.executable, "-c",
                   APPEND.format(store=str(store), n=N), cwd=tmp_path)
    assert appended.returncode == 0, appended.stderr
    register = _as(hub, member, sys.executable, "-c",
                   "import sys; from oceandata.ingest.register import register_store; "
                   f"register_store({str(catalog)!r}, 'x', {str(store)!r}, defaults="
                   "{'license': 'CC-BY-4.0', 'provider': 'P'})", cwd=tmp_path)
    assert register.returncode == 0, register.stderr
    assert uid in _owners(store)  # the new objects are the member's until sealed
    dds = _api(member, "GET", f"{hub.url}{DATA}/datasets/p{a}.x/opendap.dds")
    assert dds.status_code == 200 and f"i = {2 * N}]" in dds.text, dds.text
    shape = _api(member, "GET", meta)  # not the metadata derived before the append
    assert shape.status_code == 200 and shape.json()["shape"] == [2 * N], shape.text[:300]
    assert _owners(store) == {0}  # sealed by the service before it opened the store
    both = _api(member, "GET", dods).content
    assert bytes([7]) * N in both and bytes([9]) * N in both and MARKER not in both

    # nobody else: 404, and the outsider's account cannot list the workspace
    for who in (world["outsider"], None):
        assert _api(who, "GET", dods).status_code == 404
    ls = _as(hub, world["outsider"], "ls", str(workspace / "stores"), cwd=tmp_path)
    assert ls.returncode != 0 and "Permission denied" in ls.stderr
    shutil.rmtree(store)


# ------------------------------------------- second review: races, depth, rights, YAML


@needs_root
def test_workspace_folders_are_changed_through_their_descriptor(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """A member renames ``stores/`` and puts a link there between the check and the
    change: root must never change the link's target (review 20b, folder_race.py)."""
    from oceandata.alloc import workspaces

    ws = tmp_path / "projects" / "2"
    (ws / "stores").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("root's\n")
    os.chmod(victim, 0o600)
    gid = 65534
    real_lstat, real_mkdir = os.lstat, os.mkdir

    def swap() -> None:
        if not stat.S_ISLNK(real_lstat(ws / "stores").st_mode):
            os.rename(ws / "stores", ws / "stores.o")
            os.symlink(victim, ws / "stores")

    def lstat(path, *a, **kw):  # the swap right after the check by path
        info = real_lstat(path, *a, **kw)
        if os.fspath(path) == str(ws / "stores"):
            swap()
        return info

    def mkdir(path, *a, **kw):  # the swap right after the mkdir (by path or dir_fd)
        try:
            return real_mkdir(path, *a, **kw)
        finally:
            if os.fspath(path) in (str(ws / "stores"), "stores"):
                swap()

    for hook, name in ((lstat, "lstat"), (mkdir, "mkdir")):
        monkeypatch.setattr(os, name, hook)
        try:  # refused when the swap came before the check, else done on the folder
            workspaces._folder(ws / "stores", 0, gid, workspaces.WORKSPACE_MODE)
        except workspaces.WorkspaceError as exc:
            assert "not a folder" in str(exc)
        finally:
            monkeypatch.undo()
        info = os.stat(victim)
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, 0o600), name
        if (ws / "stores").is_symlink():
            (ws / "stores").unlink()
            (ws / "stores.o").rename(ws / "stores")
    workspaces._folder(ws / "stores", 0, gid, workspaces.WORKSPACE_MODE)
    info = os.stat(ws / "stores")
    assert (info.st_gid, stat.S_IMODE(info.st_mode)) == (gid, workspaces.WORKSPACE_MODE)


def _nest(top: Path, depth: int) -> None:
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("a", dir_fd=fd)
            child = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


@needs_root
def test_deep_or_huge_stores_are_refused_and_old_deep_shadows_removed(
        tmp_path: Path, monkeypatch) -> None:
    """~1000 nested folders made the recursive seal raise RecursionError (a 500, the scan
    skipping the project) and the half-made shadow's recursive removal broke every later
    shadow (review 20b, seal_attacks.py T3, next_proc.py)."""
    from oceandata.catalog import projects

    ws = tmp_path / "projects" / "7"
    (ws / "stores").mkdir(parents=True)
    good = ws / "stores" / "x.icechunk"
    _store(good)
    deep = ws / "stores" / "deep.icechunk"
    deep.mkdir()
    _nest(deep, 1100)
    # an old shadow as deep, of a process that ended
    old = tmp_path / "sealed" / "2147483647-p7-1" / "deep.icechunk"
    old.mkdir(parents=True, mode=0o700)
    os.chmod(tmp_path / "sealed", 0o700)
    _nest(old, 1100)
    try:
        _deep_or_huge(projects, tmp_path, ws, good, deep, monkeypatch)
    finally:  # pytest's own removal of tmp_path is recursive
        projects._remove_tree(deep)
        projects._remove_tree(old)


def _deep_or_huge(projects, tmp_path: Path, ws: Path, good: Path, deep: Path,
                  monkeypatch) -> None:
    from oceandata.errors import CatalogError

    assert projects.seal_stores(ws) == 1  # the good one; the deep one logged, no raise
    with pytest.raises(CatalogError, match=f"deeper than {projects.MAX_STORE_DEPTH}"):
        projects.sealed_store(deep, ws)
    shadow = projects.sealed_store(good, ws)  # every later shadow still works
    assert sorted(os.listdir(tmp_path / "sealed")) == [shadow.parent.name]
    monkeypatch.setattr(projects, "MAX_STORE_ENTRIES", 5)
    with pytest.raises(CatalogError, match="more than 5 entries"):
        projects.sealed_store(good, ws)
    assert sorted(os.listdir(tmp_path / "sealed")) == [shadow.parent.name]
    projects.drop_shadow(shadow)


@needs_root
def test_the_seal_never_adds_read_permission(tmp_path: Path) -> None:
    """Member A moves member B's private (0600) file, or a private folder, into a store:
    the seal must not make it readable by the group (review 20b, seal_attacks.py T2)."""
    from oceandata.catalog.projects import seal_store, seal_stores, sealed_store
    from oceandata.errors import CatalogError

    ws = tmp_path / "projects" / "7"
    (ws / "stores").mkdir(parents=True)
    store = ws / "stores" / "x.icechunk"
    _store(store)
    gid = 65534
    for p in (ws, ws / "stores"):
        os.chown(p, 0, gid)
    stolen = store / "chunks" / "stolen"
    stolen.write_bytes(b"B's private data")
    os.chown(stolen, 12345, gid)
    os.chmod(stolen, 0o600)
    private = store / "manifests" / "private"
    private.mkdir(mode=0o700)
    os.chown(private, 12345, gid)
    os.chmod(private, 0o700)
    (private / "inside").write_bytes(b"more")
    assert sorted(seal_store(store, ws)) == ["./chunks/stolen", "./manifests/private"]
    assert seal_stores(ws) == 0  # not whole: logged, never raised
    for path, mode in ((stolen, 0o600), (private, 0o700)):
        info = os.lstat(path)
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (12345, mode), path
    with pytest.raises(CatalogError, match=r"(chunks/stolen|manifests/private), which.*may not read"):
        sealed_store(store, ws)
    assert os.listdir(tmp_path / "sealed") == []
    stolen.unlink()
    shutil.rmtree(private)
    shadow = sealed_store(store, ws)
    assert shadow.is_dir()


def test_deeply_nested_project_catalogs_are_refused(tmp_path: Path) -> None:
    """An ``args`` mapping nested ~900 deep passed the checks and the template check
    raised RecursionError (a 500; review 20b, deep_args.py)."""
    from oceandata.catalog.projects import MAX_YAML_DEPTH, load_project_catalog
    from oceandata.errors import CatalogError

    ws = tmp_path / "projects" / "7"
    (ws / "stores" / "x.icechunk").mkdir(parents=True)
    for depth, ok in ((MAX_YAML_DEPTH - 6, True), (900, False)):
        lines = ["sources:", "  x:", "    driver: icechunk", "    args:",
                 f"      urlpath: {ws}/stores/x.icechunk", "      deep:"]
        lines += ["  " * (i + 4) + "a:" for i in range(depth)]
        lines.append("  " * (depth + 4) + "b")
        (ws / "catalog.yaml").write_text("\n".join(lines) + "\n")
        if ok:  # read (the entry itself lacks the metadata an entry needs: left out)
            assert load_project_catalog(7, ws).name == "p7"
        else:
            with pytest.raises(CatalogError, match=f"deeper than {MAX_YAML_DEPTH}"):
                load_project_catalog(7, ws)
