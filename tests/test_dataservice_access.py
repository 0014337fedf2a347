"""The open-data service's access layer, without a hub: every route guarded, credentials
parsed strictly, restricted entries invisible, the auth/ prefix challenging.

The hub side (real tokens, groups and allocations) is tests/test_dataservice_hub.py.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from oceandata.catalog.core import Catalog
from oceandata.dataservice import create_app
from oceandata.dataservice.access import ANONYMOUS, Caller, request_token, resolve
from tests.dataservice_helpers import RESTRICTED, RESTRICTED_GROUP, make_catalog


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    return make_catalog(tmp_path_factory.mktemp("access-catalog"))


@pytest.fixture(scope="module")
def client(catalog: Catalog) -> TestClient:
    return TestClient(create_app(catalog))


def _paths(client: TestClient) -> list[tuple[str, str]]:
    """``(method, path)`` of every route in the service's OpenAPI schema, params filled."""
    schema = client.get("/openapi.json").json()
    filled = []
    for path, ops in schema["paths"].items():
        concrete = re.sub(r"\{dataset_id\}", RESTRICTED, path)
        concrete = re.sub(r"\{[^}]+\}", "x", concrete)
        filled += [(method.upper(), concrete) for method in ops if method in ("get", "post")]
    return filled


def test_every_route_of_the_service_goes_through_the_guard(client: TestClient) -> None:
    """Only the guard answers 401 under auth/; it must do so on every route, and every
    route naming the restricted entry must answer 404 to an anonymous client."""
    paths = _paths(client)
    assert len(paths) > 15, paths
    for method, path in paths:
        r = client.request(method, f"/auth{path}")
        assert r.status_code == 401, (method, path, r.status_code)
        if RESTRICTED in path:
            r = client.request(method, path)
            assert r.status_code == 404, (method, path, r.status_code, r.text[:100])


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credentials_are_parsed_strictly() -> None:
    assert request_token(None) is None
    assert request_token("Bearer abc123") == "abc123"
    assert request_token("token abc123") == "abc123"
    assert request_token(_basic("anyone", "abc123")) == "abc123"
    for bad in ("Bearer", "Digest abc", "Basic !!notbase64", _basic("anyone", ""),
                "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer a b"):
        with pytest.raises(HTTPException) as info:
            request_token(bad)
        assert info.value.status_code == 401, bad
        assert info.value.headers["WWW-Authenticate"].startswith("Basic realm="), bad


def test_the_access_rule_is_the_catalogs(catalog: Catalog) -> None:
    entry = catalog.entries[RESTRICTED]
    assert not ANONYMOUS.may_see(entry)
    assert Caller("pat", frozenset({RESTRICTED_GROUP})).may_see(entry)
    assert Caller("al", datasets=frozenset({RESTRICTED})).may_see(entry)
    assert not Caller("sam", frozenset({"scientists"}), frozenset({"oisst_wa"})).may_see(entry)
    assert ANONYMOUS.may_see(catalog.entries["cobe_sst2"])
    with pytest.raises(HTTPException) as info:
        resolve(catalog, RESTRICTED, ANONYMOUS)
    assert info.value.status_code == 404
    assert resolve(catalog, RESTRICTED, Caller("pat", frozenset({RESTRICTED_GROUP})))[0] is entry
    with pytest.raises(HTTPException, match="not a versioned store"):
        resolve(catalog, "cobe_sst2@v1", ANONYMOUS)


def test_without_a_hub_tokens_are_refused_not_ignored(client: TestClient) -> None:
    r = client.get("/datasets/cobe_sst2/opendap.dds", headers={"Authorization": "Bearer x"})
    assert r.status_code == 401
    assert "without a hub" in r.json()["detail"]
    assert client.get("/datasets/cobe_sst2/opendap.dds").status_code == 200


def test_restricted_entry_is_absent_for_anonymous_clients(client: TestClient) -> None:
    listed = client.get("/datasets").json()
    assert "cobe_sst2" in listed and RESTRICTED not in listed
    for path in ("opendap.dds", "opendap.das", "opendap.dods", "zarr/zarr.json",
                 "zarr/sst/c/0", "edr/", "erddap/info/index.json"):
        r = client.get(f"/datasets/{RESTRICTED}/{path}")
        assert r.status_code == 404, path
        assert f"There is no dataset {RESTRICTED!r}." in r.text, path
    erddap = client.get("/erddap/info/index.json").text
    assert "cobe_sst2" in erddap and RESTRICTED not in erddap


@pytest.mark.parametrize("path", ["datasets/cobe_sst2/opendap.dds",
                                  f"datasets/{RESTRICTED}/opendap.dds",
                                  "datasets/no_such_set/opendap.dds", "datasets"])
def test_auth_prefix_challenges_whatever_the_path(client: TestClient, path: str) -> None:
    r = client.get(f"/auth/{path}")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic realm=")


def test_errors_are_one_sentence_never_a_traceback(client: TestClient) -> None:
    for path in ("/nothing/here", "/datasets/no_such_set/zarr/zarr.json",
                 "/datasets/cobe_sst@x/opendap.dds"):
        r = client.get(path)
        assert 400 <= r.status_code < 500, path
        detail = r.json()["detail"]
        assert detail.endswith((".", "?")) and "Traceback" not in detail, (path, detail)
    r = client.get("/datasets/no_such_set/opendap.dds", headers={"Accept": "text/html"})
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert client.delete("/datasets").status_code == 405


def test_served_under_the_hub_prefix(catalog: Catalog, tmp_path: Path) -> None:
    app = create_app(catalog, prefix="/services/data/")
    c = TestClient(app)
    assert c.get("/services/data/datasets").status_code == 200
    assert c.get("/services/data/auth/datasets").status_code == 401
    r = c.get("/services/data", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/services/data/"


def test_refusals_speak_the_callers_language(client: TestClient) -> None:
    zh = client.get("/datasets/cobe_sst/opendap.dds?lang=zh").json()["detail"]
    assert zh == "不存在数据集 'cobe_sst'。您是否要找 cobe_sst2？数据集列表见 datasets.json。"
    r = client.get("/nothing/here", headers={"Accept-Language": "zh-CN,en;q=0.5"})
    assert r.json()["detail"] == "此地址没有内容；数据集列表见 datasets.json。"
    assert "Accept-Language" in r.headers["Vary"]
    en = client.get("/datasets/cobe_sst/opendap.dds").json()["detail"]
    assert en.startswith("There is no dataset 'cobe_sst'. Did you mean cobe_sst2?")
    page = client.get("/nothing", headers={"Accept": "text/html", "Accept-Language": "zh"})
    assert "<html lang='zh-Hans'>" in page.text


def test_no_dataset_makes_edr_fail_with_a_500(client: TestClient) -> None:
    """EDR answers on regular grids; elsewhere a 4xx sentence, never the plugin's crash."""
    for name in client.get("/datasets").json():
        for path in ("edr/", "edr/position?coords=POINT(150 0)"):
            r = client.get(f"/datasets/{name}/{path}")
            assert r.status_code < 500, (name, path, r.text[:200])
            if r.status_code >= 400:
                assert "Use OPeNDAP, Zarr or the subset download." in r.json()["detail"] \
                    or "use OPeNDAP, Zarr or the subset download." in r.json()["detail"]
    assert client.get("/datasets/cobe_sst2/edr/position?coords=POINT(150 0)").status_code \
        == 200


def test_request_bodies_are_bounded_and_answers_carry_the_security_headers(
        client: TestClient) -> None:
    big = b'{"q": "' + b"x" * (2 * 2**20) + b'"}'
    r = client.post("/stac/search", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "Traceback" not in r.text
    r = client.get("/datasets")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "DENY"
