"""Restricted catalog entries: granted by a group, or by an approved allocation naming them.

The allocation grant is asked of the real allocations service, run by a real hub
(:func:`tests.hub_helpers.running_hub`) with real users, tokens and allocations; the
fast tests cover the refusal and the cases where no service is asked or reachable.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from oceandata.catalog import open_catalog
from oceandata.catalog.core import Catalog, allocation_datasets, allocation_service_url
from oceandata.errors import NotAuthorized
from oceandata.netutil import free_port
from tests.hub_helpers import Hub, HubClient, admin_client, new_user, running_hub

SERVICE = "/services/allocations"
TODAY = dt.date.today()
HUB_ENV = ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "JUPYTERHUB_HOST",
           "JUPYTERHUB_BASE_URL", "OCEANDATA_ALLOC_URL", "OCEANDATA_TOKEN")

CATALOG = """\
metadata: {{version: 1}}
sources:
  secret_sst:
    driver: netcdf
    description: the WA series, restricted to partners
    args:
      urlpath: "{path}"
      chunks: {{}}
      xarray_kwargs: {{engine: netcdf4}}
    metadata:
      title: Restricted SST
      variables: [{{name: sst, standard_name: sea_surface_temperature, units: degree_Celsius}}]
      grid: dsg
      feature_type: timeSeries
      provider: test
      license: CC0
      tags: [sst]
      classification: {{category: observation, grade: important, rationale: test data, owner: test, release: restricted}}
      access: {{groups: [partners, argo-dm]}}
"""


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    path = open_catalog().entry("oisst_wa").paths()[0]
    folder = tmp_path_factory.mktemp("restricted")
    (folder / "cat.yaml").write_text(CATALOG.format(path=path))
    return open_catalog(folder / "cat.yaml")


@pytest.fixture
def outside_hub(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in HUB_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OCEANDATA_GROUPS", "scientists")
    return monkeypatch


# ---------------------------------------------------------------- no service involved


def test_refusal_is_one_line_naming_the_groups_and_the_allocation_route(
        catalog: Catalog, outside_hub: pytest.MonkeyPatch) -> None:
    with pytest.raises(NotAuthorized) as info:
        catalog.entry("secret_sst").to_dask()
    message = str(info.value)
    assert "\n" not in message
    assert "'secret_sst' is restricted to groups partners, argo-dm" in message
    assert "an approved allocation naming the dataset also grants access" in message
    assert "--dataset secret_sst" in message


def test_a_granted_group_opens_it(catalog: Catalog, outside_hub: pytest.MonkeyPatch) -> None:
    outside_hub.setenv("OCEANDATA_GROUPS", "scientists,argo-dm")
    ds = catalog.entry("secret_sst").to_dask()
    assert ds.sizes["time"] == 14975


def test_an_unreachable_service_refuses_quickly(catalog: Catalog,
                                                outside_hub: pytest.MonkeyPatch) -> None:
    outside_hub.setenv("JUPYTERHUB_API_TOKEN", "a-token-nobody-checks")
    outside_hub.setenv("OCEANDATA_ALLOC_URL", f"http://127.0.0.1:{free_port()}{SERVICE}")
    started = time.monotonic()
    assert allocation_datasets() == set()
    with pytest.raises(NotAuthorized, match="restricted to groups partners"):
        catalog.entry("secret_sst").check_access()
    assert time.monotonic() - started < 10


def test_the_service_url_comes_from_the_hubs_environment(
        outside_hub: pytest.MonkeyPatch) -> None:
    assert allocation_service_url() is None
    outside_hub.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")
    assert allocation_service_url() == "http://127.0.0.1:8081/services/allocations"
    outside_hub.setenv("JUPYTERHUB_API_URL", "http://10.0.0.2:8081/lab/hub/api/")
    assert allocation_service_url() == "http://10.0.0.2:8081/lab/services/allocations"
    # the hub's public host, when JupyterHub gives it, wins over its internal API
    outside_hub.setenv("JUPYTERHUB_HOST", "https://ocean.example.org")
    outside_hub.setenv("JUPYTERHUB_BASE_URL", "/lab/")
    assert allocation_service_url() == "https://ocean.example.org/lab/services/allocations"
    outside_hub.setenv("OCEANDATA_ALLOC_URL", "http://127.0.0.1:9/services/allocations/")
    assert allocation_service_url() == "http://127.0.0.1:9/services/allocations"


# ---------------------------------------------------------------- the real service


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with pytest.MonkeyPatch.context() as mp:
        for name in HUB_ENV:
            mp.delenv(name, raising=False)
        with running_hub(tmp_path_factory.mktemp("hub-restricted") / "var") as h:
            url = f"{h.url}{SERVICE}/api/health"
            deadline = time.monotonic() + 120
            while True:
                try:
                    if requests.get(url, timeout=5).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                assert time.monotonic() < deadline, h.log()[-4000:]
                time.sleep(0.25)  # poll interval of the readiness probe
            yield h


def _user_with_allocation(hub: Hub, admin: HubClient, prefix: str, datasets: list[str],
                          approve: bool = True, start_in_days: int = -1) -> HubClient:
    user = new_user(hub, admin, f"{prefix}{uuid.uuid4().hex[:6]}")
    body = {"project_title": "Heatwaves", "pi": "Dr. P", "institution": "Partner",
            "justification": "SST", "core_hours": 10, "max_cores": 1,
            "memory_per_job_gb": 1, "storage_gb": 1,
            "start_date": (TODAY + dt.timedelta(days=start_in_days)).isoformat(),
            "end_date": (TODAY + dt.timedelta(days=30)).isoformat(), "datasets": datasets}
    r = user.api("POST", f"{SERVICE}/api/allocations", json=body)
    assert r.status_code == 201, r.text
    if approve:
        r = admin.api("POST", f"{SERVICE}/api/allocations/{r.json()['id']}/approve")
        assert r.status_code == 200, r.text
    return user


def _as(mp: pytest.MonkeyPatch, hub: Hub, user: HubClient) -> None:
    """The environment of *user*'s server: token and hub API (no OCEANDATA_ALLOC_URL)."""
    mp.setenv("JUPYTERHUB_API_TOKEN", user.token or "")
    mp.setenv("JUPYTERHUB_API_URL", f"{hub.url}/hub/api")


@pytest.mark.slow
def test_an_approved_active_allocation_naming_the_dataset_opens_it(
        hub: Hub, catalog: Catalog, outside_hub: pytest.MonkeyPatch) -> None:
    admin = admin_client(hub)
    granted = _user_with_allocation(hub, admin, "ana", ["oisst_wa", "secret_sst"])
    other_dataset = _user_with_allocation(hub, admin, "ben", ["oisst_wa"])
    pending = _user_with_allocation(hub, admin, "cy", ["secret_sst"], approve=False)
    not_yet = _user_with_allocation(hub, admin, "dee", ["secret_sst"], start_in_days=5)
    entry = catalog.entry("secret_sst")

    _as(outside_hub, hub, granted)
    assert allocation_datasets() == {"oisst_wa", "secret_sst"}
    ds = entry.to_dask()
    assert ds.sizes["time"] == 14975
    assert float(ds["sst"].isel(time=0)) == float(
        open_catalog().entry("oisst_wa").to_dask()["sst"].isel(time=0))
    # a check against given groups alone does not ask the service
    with pytest.raises(NotAuthorized, match="restricted to groups"):
        entry.check_access(groups={"scientists"})

    for user in (other_dataset, pending, not_yet):
        _as(outside_hub, hub, user)
        with pytest.raises(NotAuthorized, match="restricted to groups partners") as info:
            entry.to_dask()
        assert "approved allocation naming the dataset" in str(info.value), user.name

    # a token the hub does not know grants nothing
    outside_hub.setenv("JUPYTERHUB_API_TOKEN", "not-a-token")
    with pytest.raises(NotAuthorized):
        entry.check_access()

    # the public host of the hub, as JupyterHub gives it when it knows it
    outside_hub.setenv("JUPYTERHUB_API_TOKEN", granted.token or "")
    outside_hub.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:9/hub/api")
    outside_hub.setenv("JUPYTERHUB_HOST", hub.url)
    outside_hub.setenv("JUPYTERHUB_BASE_URL", "/")
    entry.check_access()
