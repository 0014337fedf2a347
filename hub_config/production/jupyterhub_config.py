"""JupyterHub configuration of oceandata on the centre's supercomputer (production overlay).

Run as ``jupyterhub -f hub_config/production/jupyterhub_config.py`` (under systemd, see
docs/operations.md). It prepares the same runtime as ``oceandata hub up`` (state folders,
0600 secrets) with fixed ports, loads the embedded configuration
``hub_config/jupyterhub_config.py`` and overrides only what differs in production: public
URL and TLS, PostgreSQL, the hub API reachable from the compute nodes, Slurm (batchspawner)
or systemd user servers, and dask-gateway's production overlay.

Every site-specific value comes from an environment variable; a missing required one stops
the hub with a message naming it.
"""

# ruff: noqa: F821 - `c` and `load_subconfig` are injected by JupyterHub's config loader

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from oceandata.hub.siteenv import optional, require

HERE = Path(__file__).resolve().parent
BASE = HERE.parent / "jupyterhub_config.py"


def _require(name: str, example: str) -> str:
    return require(name, example, who="oceandata production hub")


_optional = optional


def _port(name: str, default: int) -> int:
    raw = _optional(name, str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise SystemExit(f"oceandata production hub: {name}={raw!r} is not a TCP port (1-65535)")
    return int(raw)


def _existing_file(name: str, example: str) -> str:
    path = _require(name, example)
    if not Path(path).is_file():
        raise SystemExit(f"oceandata production hub: {name}={path} does not exist")
    return path


# --- site values ---------------------------------------------------------------------
DATA = Path(_require("OCEANDATA_DATA_DIR", "/srv/oceandata"))
PUBLIC_URL = _require("OCEANDATA_HUB_PUBLIC_URL", "https://ocean.example.org").rstrip("/")
# where the proxy listens: the public URL itself (TLS here) or, behind a TLS-terminating
# reverse proxy, a loopback address such as http://127.0.0.1:8000
BIND_URL = _optional("OCEANDATA_HUB_BIND_URL", PUBLIC_URL).rstrip("/")
DB_URL = _require("OCEANDATA_HUB_DB_URL", "postgresql://jupyterhub@db.example.org/jupyterhub")
if not DB_URL.startswith("postgresql"):
    raise SystemExit("oceandata production hub: OCEANDATA_HUB_DB_URL must be a postgresql:// "
                     "URL (SQLite is for the embedded platform only)")
# this node's address on the cluster network (reached by user servers, schedulers, workers)
INTERNAL_HOST = _require("OCEANDATA_HUB_INTERNAL_HOST", "10.1.0.5")
CATALOG = _existing_file("OCEANDATA_CATALOG", "/gpfs/oceandata/catalogs/ocean.yaml")
SPAWNER = _optional("OCEANDATA_HUB_SPAWNER", "slurm")
if SPAWNER not in ("slurm", "systemd"):
    raise SystemExit(f"oceandata production hub: OCEANDATA_HUB_SPAWNER={SPAWNER!r}: give "
                     "'slurm' (batchspawner) or 'systemd' (systemdspawner)")
if SPAWNER == "slurm":  # required here, read by oceandata.hub.slurm_spawner.configure
    _require("OCEANDATA_SLURM_PARTITION", "interactive")
    _require("OCEANDATA_SLURM_ACCOUNT", "oceandata")
_require("OCEANDATA_GATEWAY_DB_URL", "postgresql://dask_gateway@db.example.org/dask_gateway")

# fixed ports (the embedded platform picks free ones at each start)
PORTS = {
    "hub_api": _port("OCEANDATA_HUB_API_PORT", 8081),
    "proxy_api": _port("OCEANDATA_HUB_PROXY_API_PORT", 8001),
    "gateway_gate": _port("OCEANDATA_GATEWAY_GATE_PORT", 8010),
    "gateway_http": _port("OCEANDATA_GATEWAY_HTTP_PORT", 8011),
    "gateway_api": _port("OCEANDATA_GATEWAY_API_PORT", 8012),
    "gateway_tcp": _port("OCEANDATA_GATEWAY_TCP_PORT", 8786),
    # the allocations/jobs and the open-data services (on 127.0.0.1, behind the proxy)
    "allocations": _port("OCEANDATA_ALLOC_PORT", 8013),
    "data": _port("OCEANDATA_DATA_SERVICE_PORT", 8014),
}
_bind = urlparse(BIND_URL)
BIND_PORT = _bind.port or (443 if _bind.scheme == "https" else 80)

# --- the runtime `oceandata hub up` prepares (folders, 0600 secrets), with fixed ports --
from oceandata.hub.launcher import prepare_runtime  # noqa: E402
from oceandata.lab import secret_file  # noqa: E402

_runtime = prepare_runtime(DATA, port=BIND_PORT, db_url=DB_URL)
_runtime.ports = PORTS
os.environ.update(_runtime.environment())

if not BASE.is_file():  # load_subconfig silently ignores a missing file
    raise SystemExit(f"oceandata production hub: the embedded configuration {BASE} is missing")
load_subconfig(str(BASE))

# --- network: public URL (TLS), hub API on the cluster network --------------------------
c.JupyterHub.bind_url = f"{BIND_URL}/"
if _bind.scheme == "https":
    c.JupyterHub.ssl_cert = _existing_file("OCEANDATA_HUB_TLS_CERT", "/etc/oceandata/tls/hub.crt")
    c.JupyterHub.ssl_key = _existing_file("OCEANDATA_HUB_TLS_KEY", "/etc/oceandata/tls/hub.key")
# (Slurm: the hub API on the cluster network, set with the spawner below)

# --- restarts (upgrades) leave users' servers running; the hub finds them again ---------
c.JupyterHub.cleanup_servers = False

# --- users' servers: real Unix accounts ------------------------------------------------
# the embedded hook's second half writes into <data dir>/users as the hub: production keeps
# only its first half, the login-rush queue (docs/operations.md, "A login rush")
c.Spawner.pre_spawn_hook = c.JupyterHub.template_vars["spawn_queue"].hook()
c.Spawner.args = []  # never --allow-root
if SPAWNER == "slurm":
    # each server a Slurm job under the user's account: the embedded hub's Slurm mode
    # (oceandata/hub/slurm_spawner.py), with the hub API on the cluster network; the
    # service account submits through sudo (docs/operations.md, "JupyterLab servers as
    # Slurm jobs")
    from oceandata.hub import slurm_spawner

    slurm_spawner.configure(c, internal_host=INTERNAL_HOST, hub_api_port=PORTS["hub_api"],
                            defaults={"OCEANDATA_SLURM_MEMORY": "8G",
                                      "OCEANDATA_SLURM_CPUS": "2"})
    # the hub names are the site's Unix accounts (LDAP), as for the gateway's clusters
    c.UserAccountSlurmSpawner.user_account = "{username}"
else:
    c.JupyterHub.spawner_class = "systemdspawner.SystemdSpawner"
    c.SystemdSpawner.isolate_tmp = True
    c.SystemdSpawner.isolate_devices = True
    c.SystemdSpawner.disable_user_sudo = True
    c.Spawner.mem_limit = _optional("OCEANDATA_SERVER_MEMORY", "8G")
    c.Spawner.cpu_limit = float(_optional("OCEANDATA_SERVER_CPUS", "2"))

_env = c.Spawner.environment
_env.update({
    "OCEANDATA_CATALOG": CATALOG,
    # the API through the hub and the gate; schedulers through the gateway's TLS proxy
    "DASK_GATEWAY__ADDRESS": _optional("OCEANDATA_GATEWAY_CLIENT_URL",
                                       f"{PUBLIC_URL}/services/dask-gateway"),
    "DASK_GATEWAY__PUBLIC_ADDRESS": f"{PUBLIC_URL}/services/dask-gateway",
    "DASK_GATEWAY__PROXY_ADDRESS": f"gateway://{INTERNAL_HOST}:{PORTS['gateway_tcp']}",
    # the embedded value is the loopback URL of `hub up`: servers reach the public one
    "OCEANDATA_ALLOC_URL": f"{PUBLIC_URL}/services/allocations",
})
_env.pop("OCEANDATA_DATA_DIR", None)  # the hub's state is not the users' business
for _key in [k for k, v in _env.items() if v == ""]:
    _env.pop(_key)

# --- dask-gateway: the production overlay, with the values it needs --------------------
_PASS = ("OCEANDATA_CATALOG", "OCEANDATA_HUB_INTERNAL_HOST", "OCEANDATA_GATEWAY_DB_URL",
         "OCEANDATA_SLURM_PARTITION", "OCEANDATA_SLURM_ACCOUNT", "OCEANDATA_SLURM_QOS",
         "OCEANDATA_SLURM_SETUP", "OCEANDATA_SLURM_STAGING")
for _service in c.JupyterHub.services:
    if _service["name"] == "dask-gateway":
        _service["environment"].update({
            "OCEANDATA_GATEWAY_CONFIG": str(HERE / "dask_gateway_config.py"),
            "OCEANDATA_HUB_PUBLIC_URL": PUBLIC_URL,
            **{k: os.environ[k] for k in _PASS if os.environ.get(k)},
        })

# --- monitoring: Prometheus scrapes /hub/metrics with this service's token ------------
c.JupyterHub.services.append({
    "name": "prometheus",
    "api_token": secret_file(DATA / "secrets" / "metrics-token"),
})
c.JupyterHub.load_roles.append(
    {"name": "metrics", "services": ["prometheus"], "scopes": ["read:metrics"]})
