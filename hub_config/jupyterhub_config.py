"""JupyterHub configuration of the oceandata platform.

Started by ``oceandata hub up``, which prepares the runtime (secrets 0600, free ports,
first admin) and passes it in ``OCEANDATA_HUB_*`` environment variables. Every value that
differs in production is marked PRODUCTION below; docs/operations.md gives the switches.
"""

# ruff: noqa: F821 - `c` is injected by JupyterHub's config loader

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from oceandata.hub.accounts import ENV as ACCOUNTS_ENV
from oceandata.hub.accounts import per_user
from oceandata.hub.spawner import language_environment, prepare_user

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ["OCEANDATA_DATA_DIR"])
HUB_DIR = Path(os.environ["OCEANDATA_HUB_DIR"])
PORTS = json.loads(os.environ["OCEANDATA_HUB_PORTS"])
PUBLIC_PORT = int(os.environ["OCEANDATA_HUB_PORT"])
ADMIN = os.environ["OCEANDATA_HUB_ADMIN"]
# Slurm mode (OCEANDATA_HUB_BACKEND=slurm): servers on the compute nodes reach the hub's
# proxy on OCEANDATA_HUB_INTERNAL_HOST, the address of the private cluster network, and so
# do the users' browsers; nothing listens on any other interface (PRODUCTION: the public
# URL, behind TLS). Otherwise everything stays on loopback.
SLURM_MODE = os.environ.get("OCEANDATA_HUB_BACKEND") == "slurm"
INTERNAL_HOST = (os.environ.get("OCEANDATA_HUB_INTERNAL_HOST") or "127.0.0.1"
                 if SLURM_MODE else "127.0.0.1")
PUBLIC_URL = f"http://{INTERNAL_HOST}:{PUBLIC_PORT}"
BIN = Path(sys.executable).parent
NOTEBOOKS = HERE.parent / "notebooks"
# one Unix account per user when root (OCEANDATA_ACCOUNTS, set by the launcher)
PER_USER = per_user()
# allocations, usage and jobs (the allocations service and the gateway's accounting)
ALLOC_DB_URL = os.environ.get("OCEANDATA_ALLOC_DB_URL",
                              f"sqlite:///{DATA / 'alloc' / 'alloc.sqlite'}")
# the hub itself reads users' saved languages there (oceandata.hub.i18n, spawner)
os.environ.setdefault("OCEANDATA_ALLOC_DB_URL", ALLOC_DB_URL)
# governance settings, the audit trail's URL among them (set by the launcher): the hub and
# every service of ours write to the one chain (docs/audit.md); users' servers get none
GOVERNANCE_ENV = {k: v for k, v in os.environ.items()
                  if k.startswith("OCEANDATA_GOVERNANCE__") and v}

# --- network: everything on loopback (PRODUCTION: the proxy behind TLS, see operations.md)
c.JupyterHub.bind_url = f"{PUBLIC_URL}/"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{PORTS['hub_api']}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{PORTS['proxy_api']}"
c.ConfigurableHTTPProxy.should_start = True
c.ConfigurableHTTPProxy.command = ["configurable-http-proxy"]
c.ConfigurableHTTPProxy.pid_file = str(HUB_DIR / "proxy.pid")

# --- state and secrets (generated at first start, mode 0600, never logged)
c.JupyterHub.db_url = os.environ["OCEANDATA_HUB_DB_URL"]  # PRODUCTION: postgresql://...
c.JupyterHub.cookie_secret_file = str(DATA / "secrets" / "hub-cookie-secret")
c.JupyterHub.pid_file = str(HUB_DIR / "jupyterhub.pid")
c.JupyterHub.data_files_path = str(Path(sys.prefix) / "share" / "jupyterhub")
# CONFIGPROXY_AUTH_TOKEN comes from the environment (set by the launcher)

# --- authentication: sign-up, then approval by an admin (docs/security.md, "Sign-up,
# approval and sign-in"): strict names, sign-in lockout, sign-up limit per client, our
# own approval pages (POST + _xsrf), SameSite cookies and security headers
from oceandata.hub.authenticator import hub_security_settings  # noqa: E402

c.JupyterHub.authenticator_class = "oceandata.hub.authenticator.OceandataAuthenticator"
c.OceandataAuthenticator.open_signup = False
c.OceandataAuthenticator.minimum_password_length = 10
c.OceandataAuthenticator.check_common_password = True
c.OceandataAuthenticator.allowed_failed_logins = 5
c.OceandataAuthenticator.seconds_before_next_try = int(  # doubles per further failure
    os.environ.get("OCEANDATA_HUB_LOGIN_LOCK_SECONDS", "30"))
c.OceandataAuthenticator.lockout_max_seconds = 3600
c.OceandataAuthenticator.signup_limit = 10  # per client address and hour
c.OceandataAuthenticator.signup_window_seconds = 3600
c.OceandataAuthenticator.signup_limit_exempt_networks = [  # the test platform: loopback
    n for n in os.environ.get("OCEANDATA_HUB_SIGNUP_EXEMPT", "").split(",") if n]
c.JupyterHub.tornado_settings = hub_security_settings(PUBLIC_URL)
c.Authenticator.admin_users = {ADMIN}
c.Authenticator.allow_all = True  # every *approved* NativeAuthenticator account

# --- groups: admins, scientists (default for new users), partners
c.JupyterHub.load_groups = {
    "admins": {"users": [ADMIN]},
    "scientists": {"users": []},
    "partners": {"users": []},
}

# --- roles: services get only what they need. Administration of our services (approving
# allocations, every user's jobs and usage) needs a hub admin's token that carries
# ADMIN_SCOPE: members of the admins group hold it, and the services' OAuth logins may ask
# for it (oauth_client_allowed_scopes below); a narrowed admin token is no admin token.
from oceandata.hub.security import ADMIN_SCOPE  # noqa: E402

c.JupyterHub.custom_scopes = {
    ADMIN_SCOPE: {"description": "Administer the oceandata services (allocations, jobs)."},
}
c.JupyterHub.load_roles = [
    {"name": "user",
     "scopes": ["self", "access:services!service=dask-gateway",
                "access:services!service=allocations", "access:services!service=data"]},
    {"name": "oceandata-admin", "groups": ["admins"], "scopes": [ADMIN_SCOPE]},
    # the allocations service asks whether a project's new member is a hub user
    {"name": "allocations-users", "services": ["allocations"], "scopes": ["read:users:name"]},
    {"name": "idle-culler", "services": ["idle-culler"],
     "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"]},
    # dask-gateway needs no scope of its own: it identifies callers with their tokens
]

# --- services: dask-gateway (behind the owner-checking gate) and the idle culler
c.JupyterHub.services = [
    {
        "name": "dask-gateway",
        "url": f"http://127.0.0.1:{PORTS['gateway_gate']}",
        "api_token": os.environ["OCEANDATA_GATEWAY_SERVICE_TOKEN"],
        "command": [sys.executable, "-m", "oceandata.hub.gateway_service"],
        "environment": {
            "OCEANDATA_GATEWAY_CONFIG": str(HERE / "dask_gateway_config.py"),
            "OCEANDATA_HUB_DIR": str(HUB_DIR),
            "OCEANDATA_DATA_DIR": str(DATA),
            "OCEANDATA_HUB_PORTS": json.dumps(PORTS),
            "OCEANDATA_HUB_PUBLIC_URL": PUBLIC_URL,
            "OCEANDATA_GATEWAY_PROXY_TOKEN": os.environ["OCEANDATA_GATEWAY_PROXY_TOKEN"],
            "PATH": os.environ["PATH"],
            **GOVERNANCE_ENV,  # gateway.cluster_start/stop
            # clusters as the users' Unix accounts, or all as the gateway's (accounts.py)
            ACCOUNTS_ENV: os.environ.get(ACCOUNTS_ENV) or ("create" if PER_USER else "single"),
            # allocations: enforced when clusters start, charged while they run
            "OCEANDATA_ALLOC_DB_URL": ALLOC_DB_URL,
            **{k: os.environ[k] for k in ("OCEANDATA_GATEWAY_USAGE_PERIOD",)
               if os.environ.get(k)},
            # handed on to the clusters' schedulers and workers
            **{k: os.environ[k] for k in ("OCEANDATA_CATALOG", "OCEANDATA_SAMPLE_DATA",
                                          "OCEANDATA_SAMPLE_CACHE") if os.environ.get(k)},
        },
        "oauth_no_confirm": True,
    },
    {
        # compute allocations: requests, review, usage (REST API and HTML pages)
        "name": "allocations",
        "url": f"http://127.0.0.1:{PORTS['allocations']}",
        "api_token": os.environ["OCEANDATA_ALLOC_SERVICE_TOKEN"],
        "command": [sys.executable, "-m", "oceandata.alloc.service"],
        "environment": {
            # PRODUCTION: postgresql://... (the same database for every hub node)
            "OCEANDATA_ALLOC_DB_URL": ALLOC_DB_URL,
            "OCEANDATA_HUB_PUBLIC_URL": PUBLIC_URL,
            "OCEANDATA_DATA_DIR": str(DATA),
            "PATH": os.environ["PATH"],
            **GOVERNANCE_ENV,  # alloc.* and job.* records
            # jobs as the users' Unix accounts, or all as the service's (accounts.py)
            ACCOUNTS_ENV: os.environ.get(ACCOUNTS_ENV) or ("create" if PER_USER else "single"),
            # batch jobs: the Slurm cluster (SLURM_CONF), the jobs' limits and routing, and
            # the catalog and sample data the jobs open (as the users' servers do); the
            # workspaces' measurement (OCEANDATA_STORAGE_*) and the uploads' cap, stall
            # and expiry (OCEANDATA_UPLOAD_*)
            **{k: v for k, v in os.environ.items()
               if v and (k in ("SLURM_CONF", "OCEANDATA_CATALOG", "OCEANDATA_SAMPLE_DATA",
                               "OCEANDATA_SAMPLE_CACHE")
                         or k.startswith(("OCEANDATA_JOBS_", "OCEANDATA_SLURM_",
                                          "OCEANDATA_STORAGE_", "OCEANDATA_UPLOAD_")))},
        },
        "oauth_no_confirm": True,
        # the login token of an admin may administer this service, and nothing more
        "oauth_client_allowed_scopes": [ADMIN_SCOPE],
    },
    {
        # the public open-data service: anonymous for open data (the proxy routes
        # /services/data/ to it without the hub's login); tokens checked by the service
        "name": "data",
        "url": f"http://127.0.0.1:{PORTS['data']}",
        "api_token": os.environ["OCEANDATA_DATA_SERVICE_TOKEN"],
        "command": [sys.executable, "-m", "oceandata.dataservice"],
        "environment": {
            "OCEANDATA_DATA_DIR": str(DATA),
            "PATH": os.environ["PATH"],
            **GOVERNANCE_ENV,  # data.access records, the negative list
            # grants: hub groups (from the token) and approved allocations (read here)
            "OCEANDATA_ALLOC_DB_URL": ALLOC_DB_URL,
            # asynchronous downloads: batch jobs submitted to the allocations service (the
            # one process running the jobs' runtime) with the caller's own token, on
            # loopback; their states and files are read from ALLOC_DB_URL and DATA
            "OCEANDATA_ALLOC_URL": f"http://127.0.0.1:{PORTS['allocations']}/services/allocations",
            **{k: os.environ[k] for k in ("OCEANDATA_CATALOG", "OCEANDATA_SAMPLE_DATA",
                                          "OCEANDATA_SAMPLE_CACHE") if os.environ.get(k)},
            # the traffic settings (OCEANDATA_DATA__<CLASS>__<FIELD>: limits per access
            # class) and the jobs' backend (OCEANDATA_DATA_JOBS_BACKEND: local or slurm)
            **{k: v for k, v in os.environ.items()
               if v and k.startswith(("OCEANDATA_DATA__", "OCEANDATA_DATA_JOBS_"))},
        },
        "display": True,
        # browsers of hub users may log in to see what they are granted (no confirm page)
        "oauth_no_confirm": True,
    },
    {
        "name": "idle-culler",
        "api_token": os.environ["OCEANDATA_CULLER_SERVICE_TOKEN"],
        "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                    "--timeout=3600", "--cull-every=300", "--max-age=0"],
    },
]

# --- the users' servers: JupyterLab with oceandata, the catalog and the gateway preset.
# Per-user mode (root, OCEANDATA_ACCOUNTS=create|existing): each server runs as the Unix
# account oceandata-<name> (oceandata/hub/accounts.py); single-account mode (not root, or
# OCEANDATA_ACCOUNTS=single): as the hub's own account.
# PRODUCTION: batchspawner.SlurmSpawner or systemdspawner (the same per-user accounts).
if PER_USER:
    c.JupyterHub.spawner_class = "oceandata.hub.spawner.UserAccountSpawner"
else:
    c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
    c.SimpleLocalProcessSpawner.home_dir_template = str(DATA / "users" / "{username}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # OCEANDATA_ACCOUNTS=single as root: the servers still listen on loopback only
        c.Spawner.args = ["--allow-root"]
c.Spawner.notebook_dir = str(DATA / "users" / "{username}")
c.Spawner.cmd = [str(BIN / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.Spawner.server_token_scopes = [
    "users:activity!user", "access:servers!server", "read:users:name!user",
    "read:users:groups!user", "access:services!service=dask-gateway",
    "access:services!service=allocations", "access:services!service=data",
    ADMIN_SCOPE,  # kept only for users who hold it (members of admins)
]
c.Spawner.environment = {
    **{k: os.environ[k] for k in ("OCEANDATA_CATALOG", "OCEANDATA_SAMPLE_DATA",
                                  "OCEANDATA_SAMPLE_CACHE") if os.environ.get(k)},
    # dask-gateway: API and dashboards through the hub (the gate checks the owner),
    # schedulers through the gateway's TLS proxy; tokens are the user's hub token
    "DASK_GATEWAY__ADDRESS": f"{PUBLIC_URL}/services/dask-gateway",
    "DASK_GATEWAY__PUBLIC_ADDRESS": f"{PUBLIC_URL}/services/dask-gateway",
    "DASK_GATEWAY__PROXY_ADDRESS": f"gateway://127.0.0.1:{PORTS['gateway_tcp']}",
    "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
    # the allocations service (oceandata alloc/submit/jobs, restricted datasets)
    "OCEANDATA_ALLOC_URL": f"{PUBLIC_URL}/services/allocations",
    # restricted catalog entries open for the groups named here
    "OCEANDATA_GROUPS": lambda spawner: ",".join(sorted(g.name for g in spawner.user.groups)),
    "DASK_DISTRIBUTED__DASHBOARD__LINK": "{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/status",
    "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    # figures offline (docs/viz.md, "Offline figures in the hub"): BokehJS, Panel and
    # HoloViews' JavaScript and CSS inline in the notebook, never from a CDN
    "PYTHONSTARTUP": str(HERE / "ipython_startup.py"),
    "PANEL_INLINE": "true",
    "BOKEH_RESOURCES": "inline",
    # JupyterLab's announcements plugin (news prompt, update check) disabled; the server's
    # language (settled in the pre-spawn hook): JupyterLab's locale through the overlay
    # jupyter-zh/ first on the path, LANGUAGE for the command line (docs/i18n.md)
    **language_environment([HERE / "jupyter", os.environ.get("JUPYTER_CONFIG_PATH")],
                           {"zh": HERE / "jupyter-zh"}),
}
# no news feed and no update check on the server side either (both call the internet)
c.Spawner.args.extend(["--LabApp.news_url=None",
                       "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"])

# --- Slurm mode (OCEANDATA_HUB_BACKEND=slurm): each server is a Slurm job under the user's
# account (batchspawner, oceandata/hub/slurm_spawner.py; the production overlay shares it);
# the hub API listens on OCEANDATA_HUB_INTERNAL_HOST, where the compute nodes reach it
if SLURM_MODE:
    from oceandata.hub import slurm_spawner

    # servers on the nodes reach the hub, its API included, and the hub's services
    # through the proxy on the internal host (PUBLIC_URL, above); the hub API itself stays
    # on loopback, where only the proxy calls it. Their schedulers: the gateway's TLS
    # proxy on the internal host.
    slurm_spawner.configure(c, internal_host=INTERNAL_HOST, hub_api_port=PORTS["hub_api"],
                            hub_url=PUBLIC_URL)
    c.Spawner.environment["DASK_GATEWAY__PROXY_ADDRESS"] = (
        f"gateway://{INTERNAL_HOST}:{PORTS['gateway_tcp']}")


def _prepare_user(spawner):
    """The user's account (per-user mode) and folder, with the example notebooks; the
    server's language (the user's saved setting in the allocations database)."""
    return prepare_user(spawner, NOTEBOOKS, DATA, ALLOC_DB_URL)


# --- a login rush waits in a queue instead of failing (docs/operations.md, "A login rush"):
# SPAWN_QUEUE.slots servers start at once (OCEANDATA_HUB_SPAWN_SLOTS, default two per core,
# 2 to 100); the other spawns wait in arrival order in the pre-spawn hook, before the
# clocks of start_timeout/http_timeout start, on our waiting page (templates/spawn_pending.html:
# place in the queue, reloads itself). concurrent_spawn_limit bounds starting + waiting
# spawns (OCEANDATA_HUB_SPAWN_QUEUE, default 500 waiting); only beyond it JupyterHub's 429.
from oceandata.hub.authenticator import TEMPLATES  # noqa: E402
from oceandata.hub.spawnqueue import SpawnQueue  # noqa: E402

SPAWN_QUEUE = SpawnQueue.from_environment()
c.JupyterHub.concurrent_spawn_limit = SPAWN_QUEUE.spawn_limit()
c.JupyterHub.template_paths = [str(TEMPLATES)]  # before JupyterHub's own
# the pages in English or Simplified Chinese, per request (?lang=, cookie, Accept-Language):
# {% trans %} and _() in every template (oceandata/hub/i18n.py, docs/i18n.md)
c.JupyterHub.jinja_environment_options = {"extensions": ["oceandata.hub.i18n.HubI18n"]}
c.JupyterHub.template_vars = {"spawn_queue": SPAWN_QUEUE}
c.Spawner.pre_spawn_hook = SPAWN_QUEUE.hook(_prepare_user)

# --- audit trail (oceandata/hub/auditing.py): server start/stop from JupyterHub's event
# logging and a post-stop hook; admin, group and token changes from the hub's database
# session, whatever path made them; the actor of each from the request being served.
# Sign-in, sign-up and approval records are written by our handlers (authenticator.py).
from oceandata.hub import auditing  # noqa: E402

auditing.install(c)

# --- housekeeping
c.JupyterHub.cleanup_servers = True
c.JupyterHub.log_level = "INFO"
c.JupyterHub.shutdown_on_logout = False

# --- REST API for sign-up approval (NativeAuthenticator's page needs a browser session)
from oceandata.hub.handlers import HANDLERS  # noqa: E402

c.JupyterHub.extra_handlers = HANDLERS
