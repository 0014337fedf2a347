"""The platform on real services: JupyterHub, configurable-http-proxy, dask-gateway.

One hub (session scope, started the way ``oceandata hub up`` starts it) serves these
tests; each test signs up its own users.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import requests

from tests.hub_helpers import Hub, HubClient, admin_client, new_user, running_hub

pytestmark = [
    pytest.mark.slow,
    # dask-gateway's Gateway.__del__ touches its stopped event loop when collected
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    with running_hub(tmp_path_factory.mktemp("hub") / "var") as h:
        yield h


@pytest.fixture(scope="module")
def admin(hub: Hub) -> HubClient:
    return admin_client(hub)


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def test_unauthenticated_requests_are_refused(hub: Hub) -> None:
    assert requests.get(f"{hub.url}/hub/api/users").status_code == 403
    assert requests.get(f"{hub.url}/services/dask-gateway/api/v1/clusters/").status_code == 401
    r = requests.get(f"{hub.url}/services/dask-gateway/clusters/abc/status",
                     allow_redirects=False)
    assert r.status_code == 401
    # a browser is sent to the hub's OAuth login instead
    r = requests.get(f"{hub.url}/services/dask-gateway/clusters/abc/status",
                     headers={"Accept": "text/html"}, allow_redirects=False)
    assert r.status_code == 302 and "/hub/api/oauth2/authorize" in r.headers["Location"]


def test_signup_needs_approval_by_an_admin(hub: Hub, admin: HubClient) -> None:
    eve = HubClient(hub, _name("eve"))
    eve.signup()
    assert not eve.login()
    mallory = new_user(hub, admin, _name("mallory"))
    # a non-admin cannot approve anyone
    assert mallory.approve(eve.name).status_code == 403
    assert not eve.login()
    assert admin.approve(eve.name).status_code == 200
    assert eve.login()
    assert admin.approve("nobody-signed-up").status_code == 404


def test_two_users_cannot_touch_each_others_clusters(hub: Hub, admin: HubClient) -> None:
    alice = new_user(hub, admin, _name("alice"))
    bob = new_user(hub, admin, _name("bob"))
    ga, gb = alice.gateway(), bob.gateway()
    cluster = ga.new_cluster()
    try:
        assert [c.name for c in ga.list_clusters()] == [cluster.name]
        assert gb.list_clusters() == []
        with pytest.raises(Exception, match=r"403|Forbidden"):
            gb.connect(cluster.name)
        with pytest.raises(Exception, match=r"403|Forbidden"):
            gb.stop_cluster(cluster.name)
        assert [c.name for c in ga.list_clusters()] == [cluster.name]
        dash = f"{hub.url}/services/dask-gateway/clusters/{cluster.name}/status"
        assert cluster.dashboard_link == dash
        assert requests.get(dash, headers={"Authorization": f"token {bob.token}"}
                            ).status_code == 404
        r = requests.get(dash, headers={"Authorization": f"token {alice.token}"})
        assert r.status_code == 200 and "Dask" in r.text
    finally:
        cluster.shutdown()
        ga.close()
        gb.close()


def test_limits_are_enforced_per_user(hub: Hub, admin: HubClient) -> None:
    """Checked on the gateway's REST API (what the dask-gateway client calls)."""
    carol = new_user(hub, admin, _name("carol"))
    api = f"{hub.url}/services/dask-gateway/api/v1/clusters/"
    auth = {"Authorization": f"jupyterhub {carol.token}"}

    def new(**options) -> requests.Response:
        return requests.post(api, json={"cluster_options": options}, headers=auth, timeout=60)

    started: list[str] = []
    try:
        r = new(worker_cores=3)
        assert r.status_code == 422
        assert "worker_cores=3 exceeds your limit of 2 cores" in r.json()["error"]
        r = new(cluster_cores=6)
        assert r.status_code == 201, r.text
        started.append(r.json()["name"])
        # 6 of the 8 cores of a scientist are held: a 4-core cluster does not fit ...
        r = new(worker_cores=2, cluster_cores=4)
        assert r.status_code == 422 and "not enough of your quota left" in r.json()["error"]
        assert "6 of 8 cores" in r.json()["error"]
        # ... a small one does, and a third is refused
        r = new(cluster_cores=2)
        assert r.status_code == 201, r.text
        started.append(r.json()["name"])
        r = new(cluster_cores=2)
        assert r.status_code == 422
        assert "you have 2 active cluster(s), the limit is 2" in r.json()["error"]
        listed = requests.get(api, headers=auth, timeout=60).json()
        assert set(listed) == set(started)
    finally:
        for name in started:
            requests.delete(f"{api}{name}", headers=auth, timeout=60)


def test_secrets_are_private_and_not_logged(hub: Hub) -> None:
    secrets_dir = hub.runtime.secrets_dir
    files = sorted(secrets_dir.iterdir())
    assert {f.name for f in files} >= {"hub-cookie-secret", "proxy-token", "gateway-token",
                                      "culler-token", "hub-admin-password", "gateway-db-key"}
    log = hub.log()
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o600, f
        assert f.read_text().strip() not in log, f"{f.name} appears in the hub log"
    assert Path(secrets_dir).stat().st_mode & 0o777 == 0o700
