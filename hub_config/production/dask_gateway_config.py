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
import sys
from pathlib import Path

from oceandata.hub.siteenv import optional, require

HERE = Path(__file__).resolve().parent
BASE = HERE.parent / "dask_gateway_config.py"
BIN = Path(sys.executable).parent


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

# --- backend: Slurm jobs as the user, per-user limits kept ------------------------------
c.DaskGateway.backend_class = "oceandata.hub.gateway.LimitedSlurmBackend"
c.DBBackendBase.db_url = DB_URL  # db_encrypt_keys: the base's <data dir>/secrets key
c.SlurmClusterConfig.partition = PARTITION
c.SlurmClusterConfig.account = ACCOUNT
c.SlurmClusterConfig.qos = _optional("OCEANDATA_SLURM_QOS", "")
# e.g. "module load ...": run in the job before `dask scheduler` / `dask worker`
c.SlurmClusterConfig.scheduler_setup = _optional("OCEANDATA_SLURM_SETUP", "")
c.SlurmClusterConfig.worker_setup = _optional("OCEANDATA_SLURM_SETUP", "")
c.SlurmClusterConfig.staging_directory = _optional("OCEANDATA_SLURM_STAGING",
                                                   "{home}/.dask-gateway/")
# run through `sudo -nHu <user>`: an absolute path, the one named in sudoers
c.JobQueueBackend.dask_gateway_jobqueue_launcher = str(BIN / "dask-gateway-jobqueue-launcher")

# --- addresses: the API and the scheduler proxy on the cluster network -------------------
# schedulers on compute nodes report to the API directly (not through the dashboards' proxy)
c.DaskGateway.address = f"{INTERNAL_HOST}:{PORTS['gateway_api']}"
c.DBBackendBase.api_url = f"http://{INTERNAL_HOST}:{PORTS['gateway_api']}/api"
# clients reach their schedulers here (TLS, per-cluster certificates, SNI routing)
c.Proxy.tcp_address = f"{INTERNAL_HOST}:{PORTS['gateway_tcp']}"
# c.Proxy.address stays 127.0.0.1 (from the base): dashboards only through the gate
