"""The hub's and the gateway's audit records, on the real platform.

One hub for the module (the allocations fixture of tests/test_gateway_allocations.py:
JupyterHub, its proxy, dask-gateway behind the gate, the allocations service). Each
test signs up its own users, acts as a user or an admin would (forms, REST API, the
gateway's API) and reads the record back from the trail the hub's processes write
(``oceandata.governance.audit.read`` at the hub's audit URL). Browsers' requests come
from 127.0.0.2 with a forged ``X-Forwarded-For``: the record must name 127.0.0.2, the
address the hub's proxy saw, never the proxy's own nor the forged one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy
from requests.adapters import HTTPAdapter

from oceandata.governance import audit
from oceandata.hub import accounts
from oceandata.hub.auditing import REQUESTED, UNREQUESTED_STOP
from oceandata.hub.authenticator import claimed_name
from oceandata.hub.usernames import check_username
from tests import test_gateway_allocations as gateway_tests
from tests.hub_helpers import Hub, HubClient, new_user
from tests.test_gateway_allocations import _approved, _new_cluster, _partner

#: the module's hub (with the allocations service) and its admin: the fixtures of the
#: gateway's allocation tests, one hub for this module
hub = gateway_tests.hub
admin = gateway_tests.admin

pytestmark = [
    pytest.mark.slow,
    # dask-gateway's Gateway.__del__ touches its stopped event loop when collected
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

#: the address the test's "browsers" connect from (loopback, but not the proxy's)
CLIENT = "127.0.0.2"
#: what a client may claim to be; never believed
FORGED = "6.6.6.6"


class _FromAddress(HTTPAdapter):
    """Connections from a given local address (``source_address``)."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def _browser(client: HubClient) -> HubClient:
    """*client*'s requests from :data:`CLIENT`, claiming to be :data:`FORGED`."""
    client.session.mount("http://", _FromAddress(CLIENT))
    client.session.headers["X-Forwarded-For"] = FORGED
    return client


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def _matches(rec: dict[str, Any], detail: dict[str, Any] | None, **fields: Any) -> bool:
    if any(rec[k] != v for k, v in fields.items()):
        return False
    return all(rec["detail"].get(k) == v for k, v in (detail or {}).items())


def _records(hub: Hub, action: str, detail: dict[str, Any] | None = None,
             **fields: Any) -> list[dict[str, Any]]:
    return [r for r in audit.read(action=action, url=hub.runtime.audit_url)
            if _matches(r, detail, **fields)]


def _record(hub: Hub, action: str, detail: dict[str, Any] | None = None,
            timeout: float = 60, **fields: Any) -> dict[str, Any]:
    """The one record of *action* with these *fields* and *detail* items, once written.

    Records are written before the hub answers, except those of things that finish
    after the answer (a server stopping, a cluster stopping): poll for them.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = _records(hub, action, detail, **fields)
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.25)  # poll interval of the audit trail
    assert len(found) == 1, (
        f"{action} {fields} {detail}: {len(found)} records; the trail has "
        f"{json.dumps(audit.read(action=action, url=hub.runtime.audit_url), indent=1)}")
    return found[0]


def test_sign_up_approval_and_sign_in_name_the_client(hub: Hub, admin: HubClient) -> None:
    name = _name("lena")
    user = _browser(HubClient(hub, name))
    user.signup()
    rec = _record(hub, "hub.signup", target=f"user:{name}", outcome="ok")
    assert (rec["actor"], rec["source"], rec["detail"]) == (name, CLIENT, {"approved": False})
    assert not user.login()
    rec = _record(hub, "hub.login_failed", target=f"user:{name}")
    assert rec["detail"] == {"claimed": name, "reason": "not approved yet"}
    assert admin.approve(name).status_code == 200
    rec = _record(hub, "hub.approve_user", target=f"user:{name}")
    assert (rec["actor"], rec["detail"]) == (admin.name, {"decision": "approve", "via": "api"})

    wrong = "not-the-password-42"
    assert not user.login(wrong)
    rec = _record(hub, "hub.login_failed", {"reason": "wrong password"}, target=f"user:{name}")
    assert (rec["actor"], rec["outcome"], rec["source"]) == (None, "failed", CLIENT)
    assert rec["detail"]["claimed"] == name
    assert wrong not in json.dumps(rec)
    assert user.login()
    rec = _record(hub, "hub.login", target=f"user:{name}")
    assert (rec["actor"], rec["outcome"], rec["source"]) == (name, "ok", CLIENT)

    # names that are no account, and names that are no name
    ghost = _browser(HubClient(hub, _name("ghost")))
    assert not ghost.login()
    rec = _record(hub, "hub.login_failed", target=f"user:{ghost.name}")
    assert rec["detail"] == {"claimed": ghost.name, "reason": "no such user"}
    bad = _browser(HubClient(hub, f"Robert'); DROP TABLE users;--{uuid.uuid4().hex}" * 3))
    assert not bad.login()
    rec = _record(hub, "hub.login_failed", {"claimed": claimed_name(bad.name)},
                  target="user:(invalid)")
    assert rec["detail"]["reason"] == "not a valid user name" and rec["source"] == CLIENT
    assert rec["detail"]["claimed"].endswith(f"... ({len(bad.name)} characters)")


def test_a_locked_name_is_recorded_as_denied(hub: Hub, admin: HubClient) -> None:
    """5 failures lock the name (1 s on the test platform, doubling with each failure
    after a lock): wrong passwords until one is refused unread (429)."""
    user = _browser(new_user(hub, admin, _name("lock")))
    user.session.cookies.clear()
    for _ in range(10):
        user.session.get(f"{hub.url}/hub/login")
        r = user.session.post(f"{hub.url}/hub/login", allow_redirects=False, data={
            "username": user.name, "password": "wrong-password-0", "_xsrf": user._xsrf()})
        if r.status_code == 429:
            break
    assert r.status_code == 429, r.text
    rec = _record(hub, "hub.login_failed", {"reason": "locked after failed sign-ins"},
                  target=f"user:{user.name}")
    assert (rec["actor"], rec["outcome"], rec["source"]) == (None, "denied", CLIENT)
    failed = _records(hub, "hub.login_failed", {"reason": "wrong password"},
                      target=f"user:{user.name}")
    assert len(failed) >= 5 and all(f["outcome"] == "failed" for f in failed)


def test_the_approval_pages_and_refused_sign_ups(hub: Hub, admin: HubClient) -> None:
    approved, discarded = HubClient(hub, _name("page")), HubClient(hub, _name("junk"))
    approved.signup()
    discarded.signup()
    for who, path, data in ((approved, "authorize", {"action": "approve"}),
                            (discarded, "discard", {})):
        r = admin.session.post(f"{hub.url}/hub/{path}/{who.name}", allow_redirects=False,
                               data={**data, "_xsrf": admin._xsrf()})
        assert r.status_code == 303, r.text
    rec = _record(hub, "hub.approve_user", target=f"user:{approved.name}")
    assert (rec["actor"], rec["detail"]) == (admin.name, {"decision": "approve",
                                                          "via": "page"})
    rec = _record(hub, "hub.approve_user", target=f"user:{discarded.name}")
    assert (rec["actor"], rec["detail"]) == (admin.name, {"decision": "discard",
                                                          "via": "page"})
    # a refused sign-up is recorded too, with the reason the form gave
    refused = _browser(HubClient(hub, "Capital" + uuid.uuid4().hex[:4]))
    with pytest.raises(requests.HTTPError, match="400"):
        refused.signup()
    rec = _record(hub, "hub.signup", {"claimed": refused.name}, target="user:(invalid)")
    assert (rec["actor"], rec["outcome"], rec["source"]) == (None, "denied", CLIENT)
    assert rec["detail"]["reason"] == check_username(refused.name)


def test_tokens_name_their_owner_and_who_asked(hub: Hub, admin: HubClient) -> None:
    user = new_user(hub, admin, _name("tess"))  # it asks for a token on its own
    rec = _record(hub, "hub.token_create", target=f"user:{user.name}", actor=user.name)
    assert rec["detail"]["note"].startswith("test ") and rec["detail"]["client"] == "jupyterhub"
    assert user.token not in json.dumps(rec)
    r = admin.api("POST", f"/hub/api/users/{user.name}/tokens",
                  json={"note": "for a batch script", "expires_in": 3600})
    assert r.status_code == 201, r.text
    rec = _record(hub, "hub.token_create", {"note": "for a batch script"},
                  target=f"user:{user.name}")
    assert rec["actor"] == admin.name and rec["source"] == "127.0.0.1"
    assert rec["detail"]["token_id"] and rec["detail"]["expires_at"]
    assert r.json()["token"] not in json.dumps(rec)


def test_group_and_admin_changes_through_the_rest_api(hub: Hub, admin: HubClient) -> None:
    user = new_user(hub, admin, _name("gail"))
    group = _name("team")
    assert admin.api("POST", f"/hub/api/groups/{group}").status_code == 201
    for method, op in (("POST", "add"), ("DELETE", "remove")):
        r = admin.api(method, "/hub/api/groups/partners/users", json={"users": [user.name]})
        assert r.status_code == 200, r.text
        rec = _record(hub, "hub.group_change", {"op": op, "user": user.name},
                      target="group:partners")
        assert (rec["actor"], rec["source"]) == (admin.name, "127.0.0.1")
    rec = _record(hub, "hub.group_change", {"op": "create"}, target=f"group:{group}")
    assert rec["actor"] == admin.name
    for flag in (True, False):
        r = admin.api("PATCH", f"/hub/api/users/{user.name}", json={"admin": flag})
        assert r.status_code == 200, r.text
        rec = _record(hub, "hub.admin_change", {"admin": flag}, target=f"user:{user.name}")
        assert rec["actor"] == admin.name
    # what the hub's configuration did at its first start is the hub's (no request)
    rec = _record(hub, "hub.group_change", {"op": "add", "user": hub.runtime.admin},
                  target="group:admins")
    assert (rec["actor"], rec["source"]) == ("hub", None)
    rec = _record(hub, "hub.admin_change", {"admin": True}, target=f"user:{hub.runtime.admin}")
    assert rec["actor"] == "hub"


def _server_pid(hub: Hub, user: str) -> int:
    """The pid of *user*'s default server, from the hub's database (the spawner's state)."""
    engine = sqlalchemy.create_engine(hub.runtime.db_url or hub.runtime.default_db_url)
    try:
        with engine.connect() as conn:
            state = conn.execute(sqlalchemy.text(
                "SELECT spawners.state FROM spawners JOIN users ON users.id = "
                "spawners.user_id WHERE users.name = :n AND spawners.name = ''"),
                {"n": user}).scalar_one()
    finally:
        engine.dispose()
    return int((json.loads(state) if isinstance(state, str) else state)["pid"])


def _dead(pid: int) -> bool:
    """Whether *pid* has exited (gone, or a zombie its parent has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_server_start_and_stop(hub: Hub, admin: HubClient) -> None:
    user = new_user(hub, admin, _name("sam"))
    user.start_server()
    rec = _record(hub, "hub.server_start", target=f"server:{user.name}")
    assert (rec["actor"], rec["detail"]["user"]) == (user.name, user.name)
    assert rec["detail"]["reason"] == REQUESTED
    # the users' processes get neither the trail's URL nor access to its file
    path = hub.runtime.audit_url.removeprefix("sqlite:///")
    out = user.run_code("import os\n"
                        "print(os.environ.get('OCEANDATA_GOVERNANCE__AUDIT_URL'), "
                        f"os.access({path!r}, os.R_OK), os.access({path!r}, os.W_OK))")
    expect = "None False False" if accounts.per_user() else "None True True"
    assert out.strip() == expect

    # a server that dies emits no JupyterHub event: the post-stop hook records it, as
    # the hub's, when the hub notices (its poll of the spawners, every 30 s by default)
    pid = _server_pid(hub, user.name)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not _dead(pid) and time.monotonic() < deadline:
        time.sleep(0.1)  # poll interval of the process's exit
    rec = _record(hub, "hub.server_stop", {"reason": UNREQUESTED_STOP},
                  target=f"server:{user.name}")
    assert (rec["actor"], rec["source"]) == ("hub", None)
    user.start_server()  # the hub knows it stopped: a new start, then a requested stop

    r = user.api("DELETE", f"/hub/api/users/{user.name}/server")
    assert r.status_code in (202, 204), r.text
    rec = _record(hub, "hub.server_stop", {"reason": REQUESTED},
                  target=f"server:{user.name}")
    assert (rec["actor"], rec["source"]) == (user.name, "127.0.0.1")


def test_gateway_cluster_start_and_stop(hub: Hub, admin: HubClient) -> None:
    partner = _partner(hub, admin)
    r = _new_cluster(hub, partner)
    assert r.status_code == 422
    rec = _record(hub, "gateway.cluster_start", target=f"user:{partner.name}")
    assert (rec["actor"], rec["outcome"]) == (partner.name, "denied")
    assert "no approved allocation in force" in rec["detail"]["reason"]

    alloc_id = _approved(admin, partner, max_cores=2, memory_per_job_gb=4, core_hours=100)
    browser = requests.Session()
    browser.mount("http://", _FromAddress(CLIENT))
    api = f"{hub.url}/services/dask-gateway/api/v1/clusters/"
    auth = {"Authorization": f"jupyterhub {partner.token}", "X-Forwarded-For": FORGED}
    r = browser.post(api, json={"cluster_options": {"cluster_cores": 2}}, headers=auth,
                     timeout=60)
    assert r.status_code == 201, r.text
    name = r.json()["name"]
    try:
        rec = _record(hub, "gateway.cluster_start", target=f"cluster:{name}")
        assert (rec["actor"], rec["outcome"], rec["source"]) == (partner.name, "ok", CLIENT)
        assert rec["detail"]["allocation"] == alloc_id
        assert rec["detail"]["user"] == partner.name and rec["detail"]["max_cores"] == 2
    finally:
        r = browser.delete(f"{api}{name}", headers=auth, timeout=60)
    assert r.status_code == 204, r.text
    rec = _record(hub, "gateway.cluster_stop", target=f"cluster:{name}", timeout=120)
    assert (rec["actor"], rec["outcome"], rec["source"]) == (partner.name, "ok", CLIENT)
    assert rec["detail"]["reason"] == "requested by its user"
    assert rec["detail"]["allocation"] == alloc_id


def test_the_gateways_own_stops_are_the_gateways(hub: Hub, admin: HubClient) -> None:
    partner = _partner(hub, admin)
    # 0.002 core-hours: a scheduler (1 core) uses it up in ~7 s, then the gateway stops it
    alloc_id = _approved(admin, partner, max_cores=2, memory_per_job_gb=4, core_hours=0.002)
    r = _new_cluster(hub, partner, cluster_cores=2)
    assert r.status_code == 201, r.text
    name = r.json()["name"]
    rec = _record(hub, "gateway.cluster_stop", target=f"cluster:{name}", timeout=120)
    assert (rec["actor"], rec["outcome"], rec["source"]) == ("gateway", "ok", None)
    assert rec["detail"]["reason"] == "allocation exhausted"
    assert rec["detail"]["allocation"] == alloc_id and rec["detail"]["user"] == partner.name


def test_one_chain_that_verifies(hub: Hub) -> None:
    """The hub's and the gateway's processes wrote one chain; ``audit verify`` passes."""
    actions = {r["action"] for r in audit.read(url=hub.runtime.audit_url)}
    assert {"hub.login", "hub.token_create", "gateway.cluster_start"} <= actions
    done = subprocess.run([sys.executable, "-m", "oceandata.cli", "audit", "verify"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ,
                               "OCEANDATA_GOVERNANCE__AUDIT_URL": hub.runtime.audit_url})
    assert done.returncode == 0, (done.stdout, done.stderr)
