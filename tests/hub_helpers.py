"""Run the real platform in tests: the same code path as ``oceandata hub up``.

:func:`running_hub` prepares a runtime under a temporary data dir, starts JupyterHub
(which starts configurable-http-proxy, dask-gateway behind the gate, the idle culler),
waits for real readiness (the hub's API and the gateway's health through the proxy),
registers the first admin and stops everything afterwards. :class:`HubClient` speaks
to it over HTTP as a user would: form login with the XSRF cookie, tokens, sign-up,
approval through the REST API, servers and kernels.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import json
import os
import re
import stat
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import requests

from oceandata.errors import OceandataError
from oceandata.hub.launcher import (
    HubRuntime,
    bootstrap_admin,
    prepare_runtime,
    start_hub,
    stop_hub,
    wait_until_up,
)
from oceandata.netutil import free_port

PASSWORD = "correct-horse-battery-9"
#: the test platform's throttles (docs/security.md): every test client is on loopback, so
#: loopback has no sign-up limit, and a locked sign-in waits 1 s (doubling), not 30 s
TEST_HUB_ENV = {"OCEANDATA_HUB_SIGNUP_EXEMPT": "127.0.0.1/32,::1/128",
                "OCEANDATA_HUB_LOGIN_LOCK_SECONDS": "1"}


@dataclass
class Hub:
    """A running hub: its runtime, process and admin password."""

    runtime: HubRuntime
    proc: object
    admin_password: str

    @property
    def url(self) -> str:
        return self.runtime.url

    def log(self) -> str:
        return (self.runtime.hub_dir / "jupyterhub.log").read_text(errors="replace")

    @property
    def gateway_proxy(self) -> str:
        """The gateway's scheduler proxy (on the internal host: loopback unless Slurm mode)."""
        return f"gateway://{self.runtime.internal_host}:{self.runtime.ports['gateway_tcp']}"


def reachable_by_accounts(path: Path) -> Path:
    """Let the users' Unix accounts traverse pytest's temporary folders down to *path*.

    As root the platform runs each user as their own account, which must reach the data
    dir. pytest makes ``/tmp/pytest-of-root`` and every folder below it 0700; this adds
    search permission for others (``o+x``: no listing, names must be known) to those
    folders only, from the system's temporary folder down to *path*. Elsewhere, and when
    not root, nothing changes.

    Parameters
    ----------
    path
        A folder (existing or not) the accounts' processes need to reach.

    Returns
    -------
    Path
        *path*.
    """
    if os.geteuid() != 0:
        return path
    tmp = Path(tempfile.gettempdir()).resolve()
    target = Path(path).resolve()
    for folder in [*reversed(target.parents), target]:
        if folder != tmp and folder.is_relative_to(tmp) and folder.is_dir():
            os.chmod(folder, stat.S_IMODE(folder.stat().st_mode) | stat.S_IXOTH)
    return path


def slurm_hub_env(slurm, partition: str | None = None, account: str | None = None,
                  qos: str | None = None) -> dict[str, str]:
    """The ``hub up --backend slurm`` environment for a test Slurm cluster.

    Parameters
    ----------
    slurm
        A running :class:`~oceandata.testing.slurm.MultiNodeSlurmCluster` (or any
        cluster with ``slurm_conf``, ``partition`` and, for nodes, ``host_address``).
    partition, account, qos
        ``OCEANDATA_SLURM_PARTITION`` (default the cluster's partition),
        ``OCEANDATA_SLURM_ACCOUNT`` and ``OCEANDATA_SLURM_QOS`` (unset when None).

    Returns
    -------
    dict of str to str
        ``OCEANDATA_HUB_BACKEND=slurm``, ``OCEANDATA_HUB_INTERNAL_HOST`` (the cluster's
        ``host_address``: what the nodes reach), the Slurm values and ``SLURM_CONF``.
    """
    env = {"OCEANDATA_HUB_BACKEND": "slurm",
           "OCEANDATA_HUB_INTERNAL_HOST": getattr(slurm, "host_address", "127.0.0.1"),
           "OCEANDATA_SLURM_PARTITION": partition or slurm.partition,
           "SLURM_CONF": str(slurm.slurm_conf)}
    if account:
        env["OCEANDATA_SLURM_ACCOUNT"] = account
    if qos:
        env["OCEANDATA_SLURM_QOS"] = qos
    return env


@contextlib.contextmanager
def running_hub(data_dir: Path, db_url: str | None = None, *, slurm=None,
                partition: str | None = None, account: str | None = None,
                qos: str | None = None) -> Iterator[Hub]:
    """Start the platform on a free port under *data_dir*; stop it afterwards.

    With *slurm* (a running :class:`~oceandata.testing.slurm.MultiNodeSlurmCluster`),
    the hub runs in Slurm mode (``hub up --backend slurm``) against that cluster: what
    the nodes must reach listens on ``slurm.host_address`` (see :func:`slurm_hub_env`
    for *partition*, *account* and *qos*).
    """
    reachable_by_accounts(Path(data_dir).parent)
    backend_env = {} if slurm is None else slurm_hub_env(slurm, partition, account, qos)
    with mock.patch.dict(os.environ, backend_env):
        runtime = prepare_runtime(data_dir, port=free_port(), db_url=db_url,
                                  backend="slurm" if slurm is not None else None)
    # each test platform has its own audit trail, under its data dir (the session's
    # OCEANDATA_GOVERNANCE__AUDIT_URL, tests/conftest.py, is for in-process records)
    runtime.audit_url = f"sqlite:///{runtime.data_dir / 'audit.sqlite'}"
    test_env = dict(TEST_HUB_ENV)
    if slurm is not None:  # test clients reach the proxy on the bridge's host address
        test_env["OCEANDATA_HUB_SIGNUP_EXEMPT"] += f",{runtime.internal_host}/32"
    with mock.patch.dict(os.environ, {**test_env, **backend_env}):
        proc = start_hub(runtime)
    try:
        try:
            wait_until_up(runtime, proc, timeout=180)
        except OceandataError as exc:
            # say why in the test report, not only where the log is
            log = (runtime.hub_dir / "jupyterhub.log").read_text(errors="replace")
            raise OceandataError(f"{exc}\n--- end of the hub log ---\n{log[-4000:]}"
                                 ) from exc
        bootstrap_admin(runtime)
        password = (runtime.secrets_dir / "hub-admin-password").read_text().strip()
        yield Hub(runtime, proc, password)
    finally:
        stop_hub(proc)
        # dask-gateway's Gateway.__del__ raises when its loop has stopped; collect such
        # objects here, not at a random later point (a collection inside the compile of
        # a module made CPython 3.11 fail with "AST constructor recursion depth mismatch")
        gc.collect()


class HubClient:
    """One user's HTTP session with the hub (cookies, XSRF, API token)."""

    def __init__(self, hub: Hub, name: str) -> None:
        self.hub = hub
        self.name = name
        self.session = requests.Session()
        self.token: str | None = None

    def _xsrf(self) -> str:
        return self.session.cookies.get("_xsrf", path="/hub/") or self.session.cookies.get(
            "_xsrf") or ""

    def signup(self, password: str = PASSWORD) -> None:
        self.session.get(f"{self.hub.url}/hub/signup")
        r = self.session.post(f"{self.hub.url}/hub/signup", data={
            "username": self.name, "signup_password": password,
            "signup_password_confirmation": password, "_xsrf": self._xsrf()})
        r.raise_for_status()

    def login(self, password: str = PASSWORD) -> bool:
        self.session.get(f"{self.hub.url}/hub/login")
        r = self.session.post(f"{self.hub.url}/hub/login", allow_redirects=False, data={
            "username": self.name, "password": password, "_xsrf": self._xsrf()})
        return r.status_code == 302

    def new_token(self) -> str:
        r = self.session.post(f"{self.hub.url}/hub/api/users/{self.name}/tokens",
                              json={"note": f"test {uuid.uuid4().hex[:6]}"},
                              headers={"X-XSRFToken": self._xsrf()})
        r.raise_for_status()
        self.token = r.json()["token"]
        return self.token

    def api(self, method: str, path: str, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        headers.setdefault("Authorization", f"token {self.token}")
        return requests.request(method, f"{self.hub.url}{path}", headers=headers, timeout=60,
                                **kw)

    def approve(self, name: str) -> requests.Response:
        return self.api("POST", f"/hub/api/oceandata/signups/{name}")

    def start_server(self, timeout: float = 180) -> None:
        r = self.api("POST", f"/hub/api/users/{self.name}/server")
        assert r.status_code in (201, 202, 400), r.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api("GET", f"/hub/api/users/{self.name}").json()
            server = model.get("servers", {}).get("", {})
            if server.get("ready"):
                return
            time.sleep(0.5)  # poll interval of the server's readiness in the hub's API
        raise TimeoutError(f"server of {self.name} not ready in {timeout} s:\n"
                           + self.hub.log()[-4000:])

    def gateway(self):
        """A dask-gateway client authenticated with this user's token."""
        from dask_gateway import Gateway
        from dask_gateway.auth import JupyterHubAuth

        return Gateway(address=f"{self.hub.url}/services/dask-gateway",
                       proxy_address=self.hub.gateway_proxy,
                       auth=JupyterHubAuth(api_token=self.token))

    def run_code(self, code: str, timeout: float = 300) -> str:
        """Run *code* in a new kernel of the user's server; return its output or raise."""
        base = f"/user/{self.name}/api/kernels"
        r = self.api("POST", base, json={"name": "python3"})
        r.raise_for_status()
        kernel = r.json()["id"]
        try:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(self._execute(kernel, code, timeout))
            # a loop already runs in this thread (e.g. Playwright's sync API): use another
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                return pool.submit(asyncio.run, self._execute(kernel, code, timeout)).result()
        finally:
            self.api("DELETE", f"{base}/{kernel}")

    async def _execute(self, kernel: str, code: str, timeout: float) -> str:
        import aiohttp

        url = (f"{self.hub.url.replace('http', 'ws', 1)}/user/{self.name}/api/kernels/"
               f"{kernel}/channels")
        msg_id = uuid.uuid4().hex
        request = {"header": {"msg_id": msg_id, "username": self.name, "session": msg_id,
                              "msg_type": "execute_request", "version": "5.3"},
                   "parent_header": {}, "metadata": {}, "channel": "shell",
                   "content": {"code": code, "silent": False, "store_history": False,
                               "user_expressions": {}, "allow_stdin": False}}
        out: list[str] = []
        async with aiohttp.ClientSession() as session, session.ws_connect(
                url, headers={"Authorization": f"token {self.token}"}) as ws:
            await ws.send_str(json.dumps(request))
            async with asyncio.timeout(timeout):
                async for raw in ws:
                    msg = json.loads(raw.data)
                    if msg.get("parent_header", {}).get("msg_id") != msg_id:
                        continue
                    kind, content = msg["msg_type"], msg["content"]
                    if kind == "stream":
                        out.append(content["text"])
                    elif kind in ("execute_result", "display_data"):
                        out.append(content["data"].get("text/plain", ""))
                    elif kind == "error":
                        tb = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(content["traceback"]))
                        raise RuntimeError(f"kernel error:\n{tb}")
                    elif kind == "status" and content["execution_state"] == "idle":
                        break
        return "".join(out)


def new_user(hub: Hub, admin: HubClient, name: str) -> HubClient:
    """Sign *name* up, approve it through the REST API, log in and get a token."""
    user = HubClient(hub, name)
    user.signup()
    assert not user.login(), "an unapproved sign-up must not log in"
    r = admin.approve(name)
    assert r.status_code == 200, r.text
    assert user.login()
    user.new_token()
    return user


def admin_client(hub: Hub) -> HubClient:
    admin = HubClient(hub, hub.runtime.admin)
    assert admin.login(hub.admin_password)
    admin.new_token()
    return admin


def wait_for_service(hub: Hub, service: str = "allocations", timeout: float = 120) -> None:
    """Poll a hub service's ``api/health`` through the hub's proxy until it answers 200."""
    url = f"{hub.url}/services/{service}/api/health"
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            r = requests.get(url, timeout=5, allow_redirects=False)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except requests.RequestException as exc:
            last = repr(exc)
        time.sleep(0.25)  # poll interval of the readiness probe
    raise TimeoutError(f"the {service} service was not up within {timeout} s ({last})\n"
                       + hub.log()[-4000:])


def approved_project(user: HubClient, admin: HubClient, storage_gb: float,
                     title: str = "A project") -> int:
    """An allocation *user* requests (10 core-hours, 1 core, *storage_gb*, in force for a
    month) and *admin* approves through the allocations service: a project's id."""
    import datetime as dt

    today = dt.date.today()
    body = {"project_title": f"{title} of {user.name}", "pi": "Dr. P. I.",
            "institution": "Partner Institute", "justification": title,
            "core_hours": 10, "max_cores": 1, "memory_per_job_gb": 1,
            "storage_gb": storage_gb,
            "start_date": (today - dt.timedelta(days=1)).isoformat(),
            "end_date": (today + dt.timedelta(days=30)).isoformat()}
    api = "/services/allocations/api"
    r = user.api("POST", f"{api}/allocations", json=body, allow_redirects=False)
    assert r.status_code == 201, r.text
    alloc_id = r.json()["id"]
    r = admin.api("POST", f"{api}/allocations/{alloc_id}/approve", allow_redirects=False)
    assert r.status_code == 200, r.text
    return alloc_id
