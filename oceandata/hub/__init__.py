"""The hosted platform: JupyterHub, configurable-http-proxy and dask-gateway on one machine.

``oceandata hub up`` (what ``make up`` runs) starts JupyterHub from
``hub_config/jupyterhub_config.py``; JupyterHub starts the proxy and its managed services
(dask-gateway behind an owner-checking gate, the idle culler). See docs/operations.md.
"""

from .launcher import HubRuntime, hub_up, prepare_runtime

__all__ = ["HubRuntime", "hub_up", "prepare_runtime"]
