"""Attacks on our own hub services (allocations, jobs, the dask-gateway gate), replayed.

Each test is an attack found by the outside probe of the running platform; it fails if
the attack succeeds. The services run as ``make up`` runs them (``sec_hub``): JupyterHub,
its proxy, the allocations/jobs service and the gateway gate.

- tokens without the service's access scope, or an admin's token narrowed to
  ``read:metrics``, are refused (it used to approve allocations);
- a revoked token stops working within the documented bound (5 s), and at once for admin
  actions;
- an ``Authorization`` header that is present decides alone (no cookie fallback);
- integers of 2**63 and more, deep JSON, big bodies, ``tail`` of 0 and negatives, a NUL in
  a path: 4xx with one sentence, never a 500.
"""

from __future__ import annotations

import time

import pytest
import requests
from conftest import fresh_name
from hub_helpers import Hub, HubClient, new_user

pytestmark = [pytest.mark.slow]

ALLOC = "/services/allocations/api"
GATE = "/services/dask-gateway"
REQUEST = {"project_title": "Upwelling", "pi": "Dr. P", "institution": "Inst",
           "justification": "why", "core_hours": 10, "max_cores": 1,
           "memory_per_job_gb": 1, "storage_gb": 1, "start_date": "2026-01-01",
           "end_date": "2030-12-31"}


def _token(client: HubClient, scopes: list[str] | None = None) -> tuple[str, str]:
    """A new token of *client*'s user (with *scopes*, else inherited): (token, id)."""
    body: dict = {"note": "security test"}
    if scopes is not None:
        body["scopes"] = scopes
    r = client.api("POST", f"/hub/api/users/{client.name}/tokens", json=body)
    assert r.status_code == 201, r.text
    return r.json()["token"], r.json()["id"]


def _call(hub: Hub, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
    headers = kw.pop("headers", {})
    if token is not None:
        headers.setdefault("Authorization", f"token {token}")
    return requests.request(method, f"{hub.url}{path}", headers=headers, timeout=60,
                            allow_redirects=False, **kw)


def _one_sentence(r: requests.Response) -> str:
    """The error of a 4xx answer, checked to be one short line."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    message = r.json()["error"]
    assert "\n" not in message and 0 < len(message) < 400 and "Traceback" not in message
    return message


@pytest.fixture(scope="module")
def partner(sec_hub: Hub, sec_admin: HubClient) -> HubClient:
    return new_user(sec_hub, sec_admin, fresh_name("p"))


@pytest.fixture(scope="module")
def pending_id(sec_hub: Hub, partner: HubClient) -> int:
    r = _call(sec_hub, "POST", f"{ALLOC}/allocations", partner.token, json=REQUEST)
    assert r.status_code == 201, r.text
    return r.json()["id"]


# --- scopes -------------------------------------------------------------------------------


def test_a_narrowed_admin_token_cannot_approve(sec_hub: Hub, sec_admin: HubClient,
                                               pending_id: int) -> None:
    metrics_only, _ = _token(sec_admin, ["read:metrics"])
    r = _call(sec_hub, "POST", f"{ALLOC}/allocations/{pending_id}/approve", metrics_only,
              json={})
    assert r.status_code == 403, r.text
    assert "access:services!service=allocations" in _one_sentence(r)
    # access to the service, but not the admin scope: a user, not an administrator
    access_only, _ = _token(sec_admin, ["access:services!service=allocations"])
    r = _call(sec_hub, "POST", f"{ALLOC}/allocations/{pending_id}/approve", access_only,
              json={})
    assert r.status_code == 403, r.text
    shown = _call(sec_hub, "GET", f"{ALLOC}/allocations/{pending_id}", sec_admin.token)
    assert shown.json()["status"] == "pending"
    # the full admin token does approve (the refusals above were about scopes)
    r = _call(sec_hub, "POST", f"{ALLOC}/allocations/{pending_id}/approve", sec_admin.token,
              json={})
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text


def test_tokens_without_the_access_scope_are_refused_everywhere(
        sec_hub: Hub, partner: HubClient) -> None:
    name_only, _ = _token(partner, ["read:users:name!user"])
    for method, path in (("GET", f"{ALLOC}/me"), ("GET", f"{ALLOC}/allocations"),
                         ("GET", f"{ALLOC}/jobs"), ("GET", f"{GATE}/api/v1/clusters/")):
        r = _call(sec_hub, method, path, name_only)
        assert r.status_code == 403, (path, r.status_code, r.text[:200])
    assert _call(sec_hub, "GET", f"{ALLOC}/me", partner.token).status_code == 200
    # the dask-gateway client's own header form
    r = _call(sec_hub, "GET", f"{GATE}/api/v1/clusters/",
              headers={"Authorization": f"jupyterhub {partner.token}"})
    assert r.status_code == 200, r.text


def test_a_revoked_token_stops_within_five_seconds(sec_hub: Hub, sec_admin: HubClient,
                                                   partner: HubClient) -> None:
    token, token_id = _token(partner)
    assert _call(sec_hub, "GET", f"{ALLOC}/me", token).status_code == 200  # now cached
    admin_token, admin_id = _token(sec_admin)
    assert _call(sec_hub, "GET", f"{ALLOC}/me", admin_token).status_code == 200
    for client, tid in ((partner, token_id), (sec_admin, admin_id)):
        r = client.api("DELETE", f"/hub/api/users/{client.name}/tokens/{tid}")
        assert r.status_code == 204, r.text
    revoked = time.monotonic()
    # an admin action asks the hub afresh: refused at once
    r = _call(sec_hub, "POST", f"{ALLOC}/allocations/1/deny", admin_token,
              json={"reason": "x"})
    assert r.status_code == 401, r.text
    while _call(sec_hub, "GET", f"{ALLOC}/me", token).status_code == 200:
        assert time.monotonic() - revoked < 6.0, "a revoked token still works after 6 s"
        time.sleep(0.2)  # poll interval while the cache entry ages
    assert _call(sec_hub, "GET", f"{ALLOC}/me", token).status_code == 401


def test_an_authorization_header_never_falls_back_to_the_cookie(sec_hub: Hub,
                                                                partner: HubClient) -> None:
    cookies = {"oceandata-alloc-auth": partner.token}
    assert _call(sec_hub, "GET", f"{ALLOC}/me", cookies=cookies).status_code == 200
    for header in ("Basic dXNlcjpwdw==", "token", "Bearer a b", "Digest x"):
        r = _call(sec_hub, "POST", f"{ALLOC}/allocations", cookies=cookies,
                  headers={"Authorization": header}, json=REQUEST)
        assert r.status_code == 401, (header, r.status_code, r.text)


def test_cookie_changes_need_the_session_bound_csrf_token(sec_hub: Hub,
                                                          partner: HubClient) -> None:
    cookies = {"oceandata-alloc-auth": partner.token}
    before = len(_call(sec_hub, "GET", f"{ALLOC}/allocations", partner.token).json())
    # the old double submit: any cookie value equal to the field; now nothing is planted
    for extra in ({}, {"X-CSRF-Token": "planted"}):
        r = _call(sec_hub, "POST", f"{ALLOC}/allocations", cookies={
            **cookies, "oceandata-alloc-csrf": "planted"}, headers=extra, json=REQUEST)
        assert r.status_code == 403 and "CSRF" in _one_sentence(r)
    r = _call(sec_hub, "POST", f"{ALLOC}/jobs", cookies=cookies,
              files={"script": ("x.py", b"print(1)")})
    assert r.status_code == 403 and "CSRF" in _one_sentence(r)
    assert len(_call(sec_hub, "GET", f"{ALLOC}/allocations", partner.token).json()) == before


def test_json_endpoints_refuse_text_plain_and_forms(sec_hub: Hub, partner: HubClient) -> None:
    import json

    body = json.dumps({**REQUEST, "script": "print(1)"})
    for path in (f"{ALLOC}/allocations", f"{ALLOC}/jobs"):
        for kind in ("text/plain", "application/x-www-form-urlencoded"):
            r = _call(sec_hub, "POST", path, partner.token, data=body,
                      headers={"Content-Type": kind})
            if path.endswith("/jobs") and kind.endswith("urlencoded"):
                assert r.status_code == 400, r.text  # a form, but without the script file
            else:
                assert r.status_code == 415, (path, kind, r.status_code, r.text)


# --- bounded input -------------------------------------------------------------------------


def test_huge_integers_deep_json_and_big_bodies_are_4xx(sec_hub: Hub, sec_admin: HubClient,
                                                        partner: HubClient) -> None:
    token = partner.token
    for n in (2**63, 2**64, -(2**63) - 1, 10**30):
        for path in (f"{ALLOC}/allocations/{n}", f"{ALLOC}/jobs/{n}"):
            r = _call(sec_hub, "GET", path, token)
            assert r.status_code in (404, 422), (path, r.status_code, r.text)
            _one_sentence(r)
        r = _call(sec_hub, "POST", f"{ALLOC}/allocations", token,
                  json={**REQUEST, "core_hours": n, "max_cores": n})
        _one_sentence(r)
        r = _call(sec_hub, "POST", f"{ALLOC}/allocations/{n}/approve", sec_admin.token,
                  json={"core_hours": n})
        _one_sentence(r)
        r = _call(sec_hub, "POST", f"{ALLOC}/jobs", token,
                  json={"script": "print(1)", "allocation_id": n, "cores": n})
        _one_sentence(r)
    deep = "[" * 100_000 + "]" * 100_000
    for path in (f"{ALLOC}/allocations", f"{ALLOC}/jobs"):
        r = _call(sec_hub, "POST", path, token, data=deep,
                  headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "deeper" in _one_sentence(r)
    big = {**REQUEST, "justification": "x" * (10 * 2**20)}
    r = _call(sec_hub, "POST", f"{ALLOC}/allocations", token, json=big)
    assert r.status_code == 413 and "larger than" in _one_sentence(r)
    long = {**REQUEST, "justification": "x" * 30_000}
    r = _call(sec_hub, "POST", f"{ALLOC}/allocations", token, json=long)
    assert r.status_code == 400 and "at most" in _one_sentence(r)


def test_logs_tail_and_output_paths_are_bounded(sec_hub: Hub, partner: HubClient) -> None:
    for tail in (0, -1, 10**30):
        r = _call(sec_hub, "GET", f"{ALLOC}/jobs/0123456789abcdef/logs?tail={tail}",
                  partner.token)
        assert r.status_code == 422, (tail, r.status_code, r.text)
        _one_sentence(r)
    r = _call(sec_hub, "GET", f"{ALLOC}/allocations?limit=100000", partner.token)
    assert r.status_code == 422
    r = _call(sec_hub, "GET", f"{ALLOC}/allocations?limit=1&offset=0", partner.token)
    assert r.status_code == 200 and len(r.json()) <= 1


# --- pages ---------------------------------------------------------------------------------


def test_pages_send_security_headers_and_no_free_text_messages(sec_hub: Hub,
                                                               partner: HubClient) -> None:
    cookies = {"oceandata-alloc-auth": partner.token}
    r = _call(sec_hub, "GET", "/services/allocations/?message=<b>Your+account+is+"
              "suspended</b>&id=1", cookies=cookies)
    assert r.status_code == 200
    assert "suspended" not in r.text
    csp = r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "same-origin"
    r = _call(sec_hub, "GET", "/services/allocations/?message=filed&id=7", cookies=cookies)
    assert "Request #7 filed" in r.text
    for path in (f"{ALLOC}/me", f"{GATE}/api/health"):
        r = _call(sec_hub, "GET", path, partner.token)
        assert r.headers.get("X-Content-Type-Options") == "nosniff", path


def test_dashboard_websockets_with_the_cookie_need_the_hubs_origin(
        sec_hub: Hub, partner: HubClient) -> None:
    cookies = {"oceandata-gateway-auth": partner.token}
    ws = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
          "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    path = f"{GATE}/clusters/nosuchcluster/status/ws"
    host = sec_hub.url.split("//")[1]
    evil = {**ws, "Origin": "http://127.0.0.1:1"}  # another port: same site, other origin
    r = _call(sec_hub, "GET", path, cookies=cookies, headers=evil)
    assert r.status_code == 403, (r.status_code, r.text)
    r = _call(sec_hub, "GET", path, cookies=cookies, headers={**ws, "Origin": f"http://{host}"})
    assert r.status_code == 404, (r.status_code, r.text)  # past the origin check
    # a token header is not ambient authority: the origin does not matter
    r = _call(sec_hub, "GET", path, partner.token, headers=evil)
    assert r.status_code == 404, (r.status_code, r.text)
