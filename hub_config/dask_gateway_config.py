"""dask-gateway configuration of the oceandata platform (a JupyterHub-managed service).

Run by ``python -m oceandata.hub.gateway_service``, which also runs the gate in front of
the gateway's HTTP proxy (owner-only dashboards). Values that differ in production are
marked PRODUCTION; docs/operations.md gives the switches.

``OCEANDATA_HUB_BACKEND=slurm`` (``oceandata hub up --backend slurm``): clusters are Slurm
jobs submitted as the user (``LimitedSlurmBackend``), set up by the same code as the
production overlay (:func:`oceandata.hub.gateway.configure_slurm_gateway`), with the API and
the scheduler proxy on ``OCEANDATA_HUB_INTERNAL_HOST``.
"""

# ruff: noqa: F821 - `c` is injected by dask-gateway's config loader

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from oceandata.hub.accounts import per_user
from oceandata.hub.gateway import GROUP_LIMITS, cluster_options, configure_slurm_gateway

PORTS = json.loads(os.environ["OCEANDATA_HUB_PORTS"])
HUB_DIR = Path(os.environ["OCEANDATA_HUB_DIR"])
DATA = Path(os.environ["OCEANDATA_DATA_DIR"])
BIN = Path(sys.executable).parent

# --- addresses: all on loopback; the public API goes through JupyterHub's proxy and the
# gate at /services/dask-gateway/ (the hub service route)
c.DaskGateway.address = f"127.0.0.1:{PORTS['gateway_api']}"
c.Proxy.address = f"127.0.0.1:{PORTS['gateway_http']}"
c.Proxy.tcp_address = f"127.0.0.1:{PORTS['gateway_tcp']}"
c.Proxy.prefix = "/services/dask-gateway"
c.Proxy.api_token = os.environ["OCEANDATA_GATEWAY_PROXY_TOKEN"]

# --- authentication: JupyterHub tokens with access to this service; the caller and the
# client's address are handed to the backend for the audit trail (oceandata/hub/gateway.py)
c.DaskGateway.authenticator_class = "oceandata.hub.gateway.AuditedJupyterHubAuthenticator"
c.JupyterHubAuthenticator.jupyterhub_service_name = "dask-gateway"

# --- backend: local processes with per-user limits (PRODUCTION: LimitedSlurmBackend);
# as the users' Unix accounts in per-user mode (OCEANDATA_ACCOUNTS, oceandata/hub/accounts.py)
SLURM = os.environ.get("OCEANDATA_HUB_BACKEND", "local") == "slurm"
BACKEND = "LimitedUserLocalBackend" if per_user() else "LimitedLocalBackend"
c.DaskGateway.backend_class = f"oceandata.hub.gateway.{BACKEND}"
c.DBBackendBase.db_url = f"sqlite:///{HUB_DIR / 'dask-gateway.sqlite'}"
c.DBBackendBase.db_encrypt_keys = [
    (DATA / "secrets" / "gateway-db-key").read_text(encoding="utf-8").strip()]
# traversable (0711) by the users' accounts; each cluster's folder is 0700, its user's
c.LocalBackend.clusters_directory = str(DATA / "dask-clusters")
c.Backend.cluster_options = cluster_options(GROUP_LIMITS)
# core-hours of running clusters charged to the allocations database every this many s
# (on Slurm: what sacct recorded since the last charge)
for _backend in ("LimitedLocalBackend", "LimitedUserLocalBackend", "LimitedSlurmBackend"):
    c[_backend].usage_period = float(os.environ.get("OCEANDATA_GATEWAY_USAGE_PERIOD", "60"))

# current `distributed` ships no dask-scheduler/dask-worker executables
c.ClusterConfig.scheduler_cmd = [str(BIN / "dask"), "scheduler"]
c.ClusterConfig.worker_cmd = [str(BIN / "dask"), "worker"]
c.ClusterConfig.scheduler_cores = 1
c.ClusterConfig.scheduler_memory = "1 G"
c.ClusterConfig.idle_timeout = 1800  # seconds; per group in GROUP_LIMITS
c.ClusterConfig.environment = {
    k: os.environ[k] for k in ("OCEANDATA_CATALOG", "OCEANDATA_SAMPLE_DATA",
                               "OCEANDATA_SAMPLE_CACHE") if os.environ.get(k)}

# --- Slurm mode: scheduler and workers as Slurm jobs of the user, on the compute nodes
if SLURM:
    configure_slurm_gateway(
        c, internal_host=os.environ.get("OCEANDATA_HUB_INTERNAL_HOST") or "127.0.0.1",
        ports=PORTS, partition=os.environ.get("OCEANDATA_SLURM_PARTITION", ""),
        account=os.environ.get("OCEANDATA_SLURM_ACCOUNT", ""),
        qos=os.environ.get("OCEANDATA_SLURM_QOS", ""))
