"""Who a client is, and what /metrics may grow by: attacks on the traffic policy.

- an IPv6 client holds a /64: each of its addresses must not be a new client with a
  fresh rate and quota (:func:`oceandata.dataservice.policy.client_key`);
- an anonymous client must not add Prometheus series at will with made-up paths
  (redirects and unknown paths are not labelled by their raw path), and a restricted
  dataset is not named in the metrics of answers that were not data.
"""

from __future__ import annotations

import secrets
from types import SimpleNamespace

import pytest
from dataservice_helpers import RESTRICTED, make_catalog
from fastapi.testclient import TestClient

from oceandata.dataservice import create_app, policy


def _request(address: str, app: object) -> SimpleNamespace:
    return SimpleNamespace(client=SimpleNamespace(host=address), headers={},
                           state=SimpleNamespace(), app=app)


def test_an_ipv6_client_is_its_64_block() -> None:
    app = SimpleNamespace(state=SimpleNamespace(traffic=None))
    key = policy.client_key
    same = [key(_request(f"2001:db8:1:2::{i:x}", app)) for i in (1, 2, 0xffff)]
    assert len(set(same)) == 1, same
    assert key(_request("2001:db8:1:3::1", app)) != same[0]  # the next /64 is another
    assert key(_request("::ffff:192.0.2.7", app)) == key(_request("192.0.2.7", app))
    assert key(_request("192.0.2.7", app)) != key(_request("192.0.2.8", app))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    app = create_app(make_catalog(tmp_path_factory.mktemp("policy")), prefix="/")
    with TestClient(app) as client:
        yield client


def _metrics(client: TestClient) -> str:
    from oceandata.dataservice.metrics import metrics_token

    resp = client.get("/metrics", headers={"Authorization": f"Bearer {metrics_token()}"})
    assert resp.status_code == 200, resp.text
    return resp.text


def _made_up(client: TestClient) -> None:
    tag = secrets.token_hex(4)
    for path in (f"/datasets/rnd{tag}/", f"/erddap/griddap/q{tag}/", f"/zz{tag}/"):
        assert client.get(path, follow_redirects=False).status_code in (307, 404)


def test_made_up_paths_add_no_metric_series(client: TestClient) -> None:
    client.get("/datasets/cobe_sst2/opendap.das")  # a labelled route, counted
    _made_up(client)  # the statuses of such answers are series once
    before = len(_metrics(client).splitlines())
    for _ in range(20):
        _made_up(client)
    text = _metrics(client)
    assert "rnd" not in text and "/zz" not in text
    assert len(text.splitlines()) == before, "series grew with the made-up paths"


def test_a_restricted_name_is_not_in_the_metrics_of_a_redirect(client: TestClient) -> None:
    """(The service's own metrics are per process: granted callers of other tests may
    have been counted under ``restricted``; a redirect, answered before the access
    guard, must not be.)"""
    resp = client.get(f"/datasets/{RESTRICTED}/", follow_redirects=False)
    assert resp.status_code == 307
    text = _metrics(client)
    assert not [line for line in text.splitlines()
                if 'dataset="restricted"' in line and 'status="307"' in line]
    assert RESTRICTED not in text
