"""The open-data service in the real hub: anonymous open data, restricted data by grant.

One hub for the module, serving a catalog with the restricted ``secret_sst`` (group
``partners``). Four callers: anonymous; ``pat`` in the group ``partners``; ``al`` with an
approved allocation naming ``secret_sst``; ``sam``, a scientist granted nothing. Every
protocol is asked for the restricted entry by each of them: the granted ones get the same
values as a local read, the others a 404 indistinguishable from an unknown name, on every
path (pages, DAP, Zarr keys and guessed chunks, EDR, ERDDAP, downloads, STAC).
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import xarray as xr

from oceandata.config import get_settings
from tests.dataservice_helpers import RESTRICTED, RESTRICTED_GROUP, make_catalog
from tests.hub_helpers import (
    Hub,
    HubClient,
    admin_client,
    new_user,
    reachable_by_accounts,
    running_hub,
)

pytestmark = pytest.mark.slow

DATA = "/services/data"
ALLOC = "/services/allocations"
TODAY = dt.date.today()


def _wait(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer"
        time.sleep(0.25)  # poll interval of the readiness probe


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    catalog = make_catalog(reachable_by_accounts(tmp_path_factory.mktemp("data-catalog")))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OCEANDATA_CATALOG", str(catalog.path))
        # partners stream at most 1 MB at once (the restricted series' Zarr chunk is
        # 120 kB): larger requests are the asynchronous path's (test_async_download...)
        mp.setenv("OCEANDATA_DATA__PARTNER__SYNC_BYTES", "1MB")
        for name in ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "OCEANDATA_ALLOC_URL"):
            mp.delenv(name, raising=False)
        get_settings(reload=True)
        try:
            with running_hub(tmp_path_factory.mktemp("hub-data") / "var") as h:
                _wait(f"{h.url}{DATA}/api/health")
                _wait(f"{h.url}{ALLOC}/api/health")
                yield h
        finally:
            mp.undo()
            get_settings(reload=True)


@pytest.fixture(scope="module")
def users(hub: Hub) -> dict[str, HubClient]:
    admin = admin_client(hub)
    tag = uuid.uuid4().hex[:4]
    pat = new_user(hub, admin, f"pat{tag}")
    r = admin.api("POST", f"/hub/api/groups/{RESTRICTED_GROUP}/users",
                  json={"users": [pat.name]})
    assert r.status_code == 200, r.text
    pat.new_token()  # a token made after joining the group
    al = new_user(hub, admin, f"al{tag}")
    body = {"project_title": "Heatwaves", "pi": "Dr. A", "institution": "Partner",
            "justification": "SST", "core_hours": 10, "max_cores": 1,
            "memory_per_job_gb": 1, "storage_gb": 1,
            "start_date": (TODAY - dt.timedelta(days=1)).isoformat(),
            "end_date": (TODAY + dt.timedelta(days=30)).isoformat(), "datasets": [RESTRICTED]}
    r = al.api("POST", f"{ALLOC}/api/allocations", json=body)
    assert r.status_code == 201, r.text
    r = admin.api("POST", f"{ALLOC}/api/allocations/{r.json()['id']}/approve")
    assert r.status_code == 200, r.text
    sam = new_user(hub, admin, f"sam{tag}")
    return {"pat": pat, "al": al, "sam": sam}


def _basic(token: str) -> dict[str, str]:
    raw = base64.b64encode(f"anyone:{token}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


#: paths naming the restricted entry, one per protocol (relative to the service)
RESTRICTED_PATHS = [
    f"datasets/{RESTRICTED}/opendap.dds",
    f"datasets/{RESTRICTED}/opendap.das",
    f"datasets/{RESTRICTED}/opendap.dods?sst[0:1:2]",
    f"datasets/{RESTRICTED}/zarr/zarr.json",
    f"datasets/{RESTRICTED}/zarr/sst/zarr.json",
    f"datasets/{RESTRICTED}/zarr/sst/c/0",
]
#: the restricted entry is a single-site series: EDR's collection metadata needs a grid,
#: so EDR is only checked for its refusal here (tests/test_dataservice_protocols.py
#: covers EDR on gridded data)
REFUSED_PATHS = [*RESTRICTED_PATHS, f"datasets/{RESTRICTED}/edr/",
                 f"datasets/{RESTRICTED}/erddap/info/index.json"]


def test_anonymous_sees_open_data_and_no_trace_of_the_restricted_entry(hub: Hub) -> None:
    base = f"{hub.url}{DATA}"
    listed = requests.get(f"{base}/datasets", timeout=30)
    assert listed.status_code == 200
    assert "cobe_sst2" in listed.json() and RESTRICTED not in listed.json()
    unknown = requests.get(f"{base}/datasets/no_such_set/opendap.dds", timeout=30)
    assert unknown.status_code == 404
    for path in REFUSED_PATHS:
        r = requests.get(f"{base}/{path}", timeout=30)
        assert r.status_code == 404, (path, r.status_code, r.text[:200])
        # the sentence of an unknown name: nothing says the entry exists or who has it
        detail = r.text  # JSON, or ERDDAP's own error format on its paths
        assert f"There is no dataset {RESTRICTED!r}." in detail, path
        assert unknown.json()["detail"].startswith("There is no dataset 'no_such_set'.")
        assert RESTRICTED_GROUP not in detail and "restricted" not in detail.lower()
    # an open dataset by OPeNDAP through the hub's proxy, no login
    ds = xr.open_dataset(f"{base}/datasets/cobe_sst2/opendap", engine="netcdf4")
    local = xr.open_dataset(_sample_path("cobe_sst2"))
    np.testing.assert_array_equal(ds["sst"].isel(time=0).values,
                                  local["sst"].isel(time=0).values)


def _sample_path(name: str) -> str:
    from oceandata.catalog import open_catalog

    return open_catalog().entry(name).paths()[0]


def test_auth_prefix_challenges_without_credentials(hub: Hub) -> None:
    base = f"{hub.url}{DATA}/auth"
    for path in (f"datasets/{RESTRICTED}/opendap.dds", "datasets/no_such_set/opendap.dds",
                 "datasets/cobe_sst2/opendap.dds"):
        r = requests.get(f"{base}/{path}", timeout=30)
        assert r.status_code == 401, path
        assert r.headers["WWW-Authenticate"].startswith("Basic"), path
    r = requests.get(f"{base}/datasets/cobe_sst2/opendap.dds", timeout=30,
                     headers=_basic("not-a-token"))
    assert r.status_code == 401
    assert "unknown, expired or revoked" in r.json()["detail"]


def test_granted_users_read_the_restricted_entry_on_every_protocol(
        hub: Hub, users: dict[str, HubClient]) -> None:
    base = f"{hub.url}{DATA}"
    local = xr.open_dataset(_sample_path("oisst_wa"))
    for who in ("pat", "al"):
        token = users[who].token or ""
        for headers in (_bearer(token), _basic(token)):
            for path in RESTRICTED_PATHS:
                r = requests.get(f"{base}/{path}", headers=headers, timeout=60)
                assert r.status_code == 200, (who, path, r.status_code, r.text[:200])
        ds = xr.open_zarr(f"{base}/datasets/{RESTRICTED}/zarr", zarr_format=3,
                          consolidated=True, storage_options={"headers": _bearer(token)})
        np.testing.assert_array_equal(ds["sst"].isel(time=slice(0, 50)).values,
                                      local["sst"].isel(time=slice(0, 50)).values)
        # netCDF-C with credentials in the URL (what MATLAB and ncdump accept too): it
        # sends them after a challenge, which the auth/ prefix gives
        host = hub.url.removeprefix("http://")
        url = (f"http://{users[who].name}:{token}@{host}{DATA}/auth/datasets/{RESTRICTED}"
               "/opendap")
        dap = xr.open_dataset(url, engine="netcdf4")
        np.testing.assert_array_equal(dap["sst"].isel(time=slice(0, 50)).values,
                                      local["sst"].isel(time=slice(0, 50)).values)


def test_a_user_granted_nothing_gets_404_even_under_auth(
        hub: Hub, users: dict[str, HubClient]) -> None:
    token = users["sam"].token or ""
    for base in (f"{hub.url}{DATA}", f"{hub.url}{DATA}/auth"):
        for path in REFUSED_PATHS:
            r = requests.get(f"{base}/{path}", headers=_basic(token), timeout=30)
            assert r.status_code == 404, (base, path, r.status_code)
        listed = requests.get(f"{base}/datasets", headers=_bearer(token), timeout=30).json()
        assert RESTRICTED not in listed and "cobe_sst2" in listed


def test_ncdump_with_netrc_reads_the_restricted_header(
        hub: Hub, users: dict[str, HubClient], tmp_path: Path) -> None:
    """netCDF-C sends .netrc credentials after the 401 challenge of the auth/ prefix."""
    ncdump = shutil.which("ncdump")
    if ncdump is None:
        pytest.skip("ncdump missing (apt-get install netcdf-bin)")
    token = users["al"].token or ""
    netrc = tmp_path / ".netrc"
    netrc.write_text(f"machine 127.0.0.1 login {users['al'].name} password {token}\n")
    netrc.chmod(0o600)
    (tmp_path / ".ncrc").write_text(f"HTTP.NETRC={netrc}\n")
    env = {**os.environ, "HOME": str(tmp_path)}
    url = f"{hub.url}{DATA}/auth/datasets/{RESTRICTED}/opendap"
    done = subprocess.run([ncdump, "-h", url], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "float sst(time)" in done.stdout or "sst(time)" in done.stdout, done.stdout
    # without the .netrc the same URL is refused
    (tmp_path / ".ncrc").unlink()
    netrc.unlink()
    done = subprocess.run([ncdump, "-h", url], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert done.returncode != 0


def test_a_browser_login_through_the_hub_shows_the_granted_entry(
        hub: Hub, users: dict[str, HubClient]) -> None:
    """The hub's OAuth login sets the service's cookie; the cookie grants like a token."""
    pat = users["pat"]
    target = f"{DATA}/datasets"
    r = pat.session.get(f"{hub.url}{DATA}/login", params={"next": target}, timeout=60)
    assert r.status_code == 200 and r.url == f"{hub.url}{target}", (r.status_code, r.url)
    assert RESTRICTED in r.json()
    assert pat.session.get(f"{hub.url}{DATA}/datasets/{RESTRICTED}/opendap.dds",
                           timeout=60).status_code == 200
    # an outside target is not followed: back to the service's root
    r = pat.session.get(f"{hub.url}{DATA}/login", params={"next": "https://evil.example/"},
                        timeout=60)
    assert r.url.startswith(f"{hub.url}{DATA}/"), r.url
    pat.session.get(f"{hub.url}{DATA}/logout", timeout=60)
    assert RESTRICTED not in pat.session.get(f"{hub.url}{DATA}/datasets", timeout=60).json()
    # someone granted nothing who logs in still sees no trace of it
    sam = users["sam"]
    r = sam.session.get(f"{hub.url}{DATA}/login", params={"next": target}, timeout=60)
    assert r.status_code == 200 and RESTRICTED not in r.json()


def test_async_download_through_the_hub_and_the_allocations_service(
        hub: Hub, users: dict[str, HubClient], tmp_path: Path) -> None:
    """al's request above the 1 MB limit: 413 with an offer, async=1 -> 202, the job runs
    in the allocations service (local backend, charged to al's allocation), the signed
    link gives the file without credentials, and it equals the same subset read here."""
    token = users["al"].token or ""
    url = f"{hub.url}{DATA}/datasets/cobe_sst2/subset"
    params = {"bbox": "100,-40,160,0", "time": "1990-01/2009-12", "format": "nc4"}
    refused = requests.get(url, params=params, headers=_bearer(token), timeout=120)
    assert refused.status_code == 413, refused.text
    offered = refused.json()["async"]
    assert offered is not None, refused.json()
    accepted = requests.get(offered["url"], headers=_bearer(token), timeout=120)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job"]
    location = accepted.headers["Location"]
    assert location == f"{hub.url}{DATA}/jobs/{job_id}"
    # the job is al's in the allocations service too (submitted with al's token)
    mine = users["al"].api("GET", f"{ALLOC}/api/jobs/{job_id}")
    assert mine.status_code == 200 and mine.json()["owner"] == users["al"].name, mine.text
    deadline = time.monotonic() + 180
    while True:
        status = requests.get(location, headers=_bearer(token), timeout=60).json()
        if status["state"] not in ("PENDING", "RUNNING"):
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.25)  # poll interval of the job's status, bounded by the deadline
    assert status["state"] == "COMPLETED", status
    got = requests.get(status["download"]["url"], timeout=120)  # no credentials
    assert got.status_code == 200, got.text[:300]
    path = tmp_path / "job.nc"
    path.write_bytes(got.content)
    from oceandata.catalog import open_catalog
    from oceandata.dataservice.downloads import parse_request
    from oceandata.io.subset import subset

    request = parse_request(params["bbox"], params["time"], None, None)
    local = open_catalog().entry("cobe_sst2").to_dask()
    with xr.open_dataset(path) as ds:
        assert ds.sizes == {"time": 240, "lat": 40, "lon": 60}
        xr.testing.assert_equal(ds["sst"], subset(local, **request)["sst"].load())
    # sam (no allocation, not a partner) is offered nothing and sees no trace of the job
    sam = users["sam"].token or ""
    assert requests.get(location, headers=_bearer(sam), timeout=60).status_code == 404
