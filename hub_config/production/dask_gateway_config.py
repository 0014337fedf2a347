"""dask-gateway configuration of oceandata on the centre's supercomputer (production overlay).

The production hub configuration (``hub_config/production/jupyterhub_config.py``) points
the ``dask-gateway`` service at this file; the service runs
``dask-gateway-server -f hub_config/production/dask_gateway_config.py`` behind the gate.
It loads the embedded configuration ``hub_config/dask_gateway_config.py`` and overrides
only what differs: clusters as Slurm jobs submitted as the user (with the platform's
per-user limits), the gateway database on PostgreSQL, and addresses the compute nodes can
reach. The dashboards' HTTP proxy stays on 127.0.0.1: only the gate reaches it.
"""

# ruff: noqa: F821 - `c` and `load_subconfig` are injected by dask-gateway's config loader

from __future__ import annotations

import json
from pathlib import Path

from oceandata.hub.gateway import configure_slurm_gateway
from oceandata.hub.siteenv import optional, require

HERE = Path(__file__).resolve().parent
BASE = HERE.parent / "dask_gateway_config.py"


def _require(name: str, example: str) -> str:
    return require(name, example, who="oceandata production gateway")


_optional = optional


INTERNAL_HOST = _require("OCEANDATA_HUB_INTERNAL_HOST", "10.1.0.5")
DB_URL = _require("OCEANDATA_GATEWAY_DB_URL",
                  "postgresql://dask_gateway@db.example.org/dask_gateway")
if not DB_URL.startswith("postgresql"):
    raise SystemExit("oceandata production gateway: OCEANDATA_GATEWAY_DB_URL must be a "
                     "postgresql:// URL")
PARTITION = _require("OCEANDATA_SLURM_PARTITION", "compute")
ACCOUNT = _require("OCEANDATA_SLURM_ACCOUNT", "oceandata")
PORTS = json.loads(_require("OCEANDATA_HUB_PORTS", '{"gateway_api": 8012, ...}'))

if not BASE.is_file():  # load_subconfig silently ignores a missing file
    raise SystemExit(f"oceandata production gateway: the embedded configuration {BASE} "
                     "is missing")
load_subconfig(str(BASE))

# --- backend: Slurm jobs as the user, per-user limits kept; the API and the scheduler
# proxy on the cluster network (the same code as the embedded Slurm mode)
c.DBBackendBase.db_url = DB_URL  # db_encrypt_keys: the base's <data dir>/secrets key
configure_slurm_gateway(
    c, internal_host=INTERNAL_HOST, ports=PORTS, partition=PARTITION, account=ACCOUNT,
    qos=_optional("OCEANDATA_SLURM_QOS", ""),
    # e.g. "module load ...": run in the job before `dask scheduler` / `dask worker`
    setup=_optional("OCEANDATA_SLURM_SETUP", ""),
    staging=_optional("OCEANDATA_SLURM_STAGING", "{home}/.dask-gateway/"),
    start_timeout=float(_optional("OCEANDATA_SLURM_START_TIMEOUT", "600")),
    # the hub names are the site's Unix accounts (LDAP): jobs run as `sudo -nHu <name>`
    user_account="{username}")
# c.Proxy.address stays 127.0.0.1 (from the base): dashboards only through the gate
