"""The users' JupyterLab servers as Slurm jobs, each under the user's own Unix account.

:class:`UserAccountSlurmSpawner` is batchspawner's :class:`~batchspawner.SlurmSpawner`
with the platform's accounts and network:

* hub user ``<name>`` submits, queries and cancels its job as the Unix account
  ``oceandata-<name>`` (:func:`oceandata.hub.accounts.unix_name`):
  ``sudo -E -n -u oceandata-<name> sbatch|squeue|scancel``, so Slurm records the job
  as the user's (``squeue``, ``sacct``) and its processes run as that account; the job's
  working folder and log (``jupyterhub_slurmspawner_<job>.log``) are in the account's
  home. Production names the site's accounts instead (:attr:`~UserAccountSlurmSpawner.
  user_account`, e.g. the hub name itself, as the gateway's ``LimitedSlurmBackend``); in
  single-account mode the hub's own account submits, without ``sudo``;
* the job script names the Slurm account and QOS (``--account``, ``--qos``: batchspawner's
  own script has neither) and puts back the platform's ``PATH``, which ``sudo``'s
  ``secure_path`` replaces;
* the hub reaches the server at the address of the node it runs on, ``NodeAddr`` of
  ``scontrol show node``, not at the node's name (``squeue``'s ``%B``), which often
  resolves only inside the cluster. The server itself tells the hub its port
  (``batchspawner-singleuser``, through the hub API at ``hub_connect_url``).

:func:`configure` is the one piece of configuration the embedded hub
(``hub_config/jupyterhub_config.py`` with ``OCEANDATA_HUB_BACKEND=slurm``) and the
production overlay (``hub_config/production/jupyterhub_config.py``) share.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchspawner import SlurmSpawner
from tornado import web
from traitlets import Unicode, default

from .accounts import per_user, unix_name

__all__ = ["BATCH_SCRIPT", "JOB_NAME", "UserAccountSlurmSpawner", "configure",
           "node_address"]

#: ``--job-name`` of every user server (``squeue -n spawner-jupyterhub``)
JOB_NAME = "spawner-jupyterhub"

#: the job script (jinja2): batchspawner's, plus ``--account``/``--qos`` and ``PATH``
BATCH_SCRIPT = """#!/bin/bash
#SBATCH --job-name=""" + JOB_NAME + """
#SBATCH --output={{homedir}}/jupyterhub_slurmspawner_%j.log
#SBATCH --chdir={{homedir}}
#SBATCH --export={{keepvars}}
{% if partition %}#SBATCH --partition={{partition}}
{% endif %}{% if account %}#SBATCH --account={{account}}
{% endif %}{% if qos %}#SBATCH --qos={{qos}}
{% endif %}{% if runtime %}#SBATCH --time={{runtime}}
{% endif %}{% if memory %}#SBATCH --mem={{memory}}
{% endif %}{% if nprocs %}#SBATCH --cpus-per-task={{nprocs}}
{% endif %}{% if gres %}#SBATCH --gres={{gres}}
{% endif %}{% if reservation %}#SBATCH --reservation={{reservation}}
{% endif %}{% if options %}#SBATCH {{options}}
{% endif %}
set -euo pipefail
{% if path %}# sudo's secure_path replaced PATH on the way to sbatch: the platform's back
export PATH={{path}}
{% endif %}
trap 'echo SIGTERM received' TERM
{{prologue}}
{% if srun %}{{srun}} {% endif %}{{cmd}}
echo "jupyterhub-singleuser ended gracefully"
{{epilogue}}
"""


async def node_address(node: str, env: Mapping[str, str] | None = None,
                       timeout: float = 30.0) -> str:
    """The address a Slurm node is reached at: its ``NodeAddr`` (``scontrol show node``).

    Parameters
    ----------
    node
        The node's name, as ``squeue`` gives it.
    env
        Environment of ``scontrol`` (``SLURM_CONF``); default this process's.
    timeout
        Seconds ``scontrol`` may take.

    Returns
    -------
    str
        ``NodeAddr``; *node* itself when Slurm gives none or cannot be asked.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            "scontrol", "show", "node", "-o", node, env=dict(env or os.environ),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    except OSError:
        return node
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return node
    match = re.search(r"(?:^|\s)NodeAddr=(\S+)", out.decode(errors="replace"))
    return match.group(1) if proc.returncode == 0 and match else node


#: account names that may reach batchspawner's shell commands (POSIX portable names)
SAFE_ACCOUNT = re.compile(r"[A-Za-z_][A-Za-z0-9._-]{0,31}")


class UserAccountSlurmSpawner(SlurmSpawner):
    """batchspawner's ``SlurmSpawner`` running hub user ``<name>`` as ``oceandata-<name>``.

    The job is submitted, queried and cancelled as that account (``exec_prefix``, ``sudo``
    with ``{username}`` the account; :attr:`user_account` names another one); the hub
    connects to the server at its node's ``NodeAddr``.
    """

    user_account = Unicode(
        "",
        help="The Unix account of hub user {username} (production: '{username}', the "
             "site's accounts); empty: oceandata-<name> in per-user mode "
             "(OCEANDATA_ACCOUNTS, see oceandata.hub.accounts), else the hub's own account.",
    ).tag(config=True)

    batch_script = Unicode(BATCH_SCRIPT).tag(config=True)

    def _own_account(self) -> str:
        return pwd.getpwuid(os.geteuid()).pw_name

    @default("exec_prefix")
    def _exec_prefix_default(self) -> str:
        # -n: fail at once rather than wait for a password nobody types
        if self.req_username == self._own_account():
            return ""
        return "sudo -E -n -u {username}"

    @default("req_username")
    def _req_username_default(self) -> str:
        if self.user_account:
            name = self.user_account.format(username=self.user.name)
        elif per_user():
            name = unix_name(self.user.name)
        else:
            name = self._own_account()
        # batchspawner puts the name into shell commands (sudo -u {username} ...): only
        # a portable POSIX account name gets there, whatever the site's login names are
        if not SAFE_ACCOUNT.fullmatch(name):
            raise web.HTTPError(403, f"{name!r} is not a Unix account name this hub runs "
                                     "servers as (letters, digits, '.', '_', '-')")
        return name

    def _account_entry(self) -> pwd.struct_passwd:
        """The password entry of the account the job runs as; one line when it is missing."""
        try:
            return pwd.getpwnam(self.req_username)
        except KeyError:
            raise web.HTTPError(
                403, f"there is no Unix account {self.req_username} to run your server as; "
                     "an administrator must create it") from None

    @default("req_homedir")
    def _req_homedir_default(self) -> str:
        return self._account_entry().pw_dir

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        """``USER``, ``LOGNAME``, ``HOME`` and ``SHELL`` of the account the job runs as.

        Parameters
        ----------
        env
            The server's environment, changed in place.
        """
        entry = self._account_entry()
        env["USER"] = env["LOGNAME"] = entry.pw_name
        env["HOME"] = entry.pw_dir
        # the platform's accounts have no login shell; JupyterLab's terminals use $SHELL
        env["SHELL"] = "/bin/bash"
        return env

    def get_req_subvars(self) -> dict[str, Any]:
        """batchspawner's template values, plus ``path``: the server's ``PATH``, quoted."""
        subvars = super().get_req_subvars()
        path = self.get_env().get("PATH", "")
        subvars["path"] = shlex.quote(path) if path else ""
        return subvars

    async def submit_batch_script(self) -> str:
        """Submit the job; a refusal by Slurm becomes one line the user sees.

        Raises
        ------
        tornado.web.HTTPError
            403 when Slurm refuses the account (no association with the Slurm account,
            partition or QOS), 503 for any other refusal; the message quotes Slurm.
        """
        try:
            return await super().submit_batch_script()
        except RuntimeError as exc:
            said = " ".join(str(exc).split())
            said = re.sub(r"^(?:sbatch: error: )+", "", said)[:300] or "no reason given"
            account = self.req_account or "the default account"
            denied = re.search(r"Invalid (?:account|qos)|association", said, re.IGNORECASE)
            hint = (f"; an administrator must let Unix account {self.req_username} use "
                    f"Slurm account {account}" if denied else "")
            raise web.HTTPError(
                403 if denied else 503,
                f"Slurm refused the job of your server: {said}{hint}") from None

    async def start(self) -> tuple[str, int]:
        """Submit the job, wait until it runs and its server reports a port.

        Returns
        -------
        tuple of str and int
            The node's address (``NodeAddr``) and the server's port.
        """
        node, port = await super().start()
        address = await node_address(node, self.get_env())
        if address != node:
            self.log.info("Server of %s: Slurm job %s on %s at %s:%s", self.user.name,
                          self.job_id, node, address, port)
        self.ip = address
        return address, port


def configure(c: Any, *, internal_host: str, hub_api_port: int,
              environ: Mapping[str, str] | None = None,
              defaults: Mapping[str, str] | None = None,
              bin_dir: Path | None = None, hub_url: str | None = None) -> None:
    """Run the users' servers as Slurm jobs: the spawner, its job and the hub API.

    The Slurm values come from *environ*: ``OCEANDATA_SLURM_PARTITION``,
    ``OCEANDATA_SLURM_ACCOUNT``, ``OCEANDATA_SLURM_QOS`` (each empty: Slurm's default),
    ``OCEANDATA_SLURM_RUNTIME`` (``08:00:00``), ``OCEANDATA_SLURM_MEMORY`` (empty: the
    partition's default), ``OCEANDATA_SLURM_CPUS`` (1), ``OCEANDATA_SLURM_SETUP`` (shell
    lines run first in the job, e.g. ``module load ...``) and
    ``OCEANDATA_SLURM_START_TIMEOUT`` (600 s, queue wait included); ``SLURM_CONF``, when
    the hub has it, reaches ``sbatch`` and the job.

    Parameters
    ----------
    c
        The JupyterHub configuration being loaded.
    internal_host
        The hub's address on the cluster network: the hub API listens there, and servers
        on the compute nodes call it there.
    hub_api_port
        The hub API's port.
    environ
        Where the values are read (default ``os.environ``).
    defaults
        Values for the variables *environ* leaves unset (the production overlay's
        ``OCEANDATA_SLURM_MEMORY=8G``, ``OCEANDATA_SLURM_CPUS=2``).
    bin_dir
        Folder of ``batchspawner-singleuser`` (default: this Python's).
    hub_url
        Where the servers reach the hub instead: the proxy's URL on the cluster network
        (the embedded Slurm mode). The hub API then stays on its loopback address, so
        the only peer that connects to it is the proxy, and the client address the proxy
        forwards (``X-Forwarded-For``) is believed from loopback alone; no process of
        the hub's machine can claim another address by calling the hub API directly.
    """
    environ = os.environ if environ is None else environ
    bin_dir = bin_dir or Path(sys.executable).parent

    defaults = defaults or {}

    def value(name: str, fallback: str = "") -> str:
        return (environ.get(name) or "").strip() or defaults.get(name, fallback)

    timeout = value("OCEANDATA_SLURM_START_TIMEOUT", "600")
    if not timeout.isdigit() or int(timeout) < 1:
        raise SystemExit(f"oceandata hub: OCEANDATA_SLURM_START_TIMEOUT={timeout!r} is not "
                         "a number of seconds")
    c.JupyterHub.spawner_class = UserAccountSlurmSpawner
    # the servers on the compute nodes call the hub API (and report their port) here
    if hub_url:
        c.Spawner.hub_connect_url = hub_url
    else:
        c.JupyterHub.hub_bind_url = f"http://{internal_host}:{hub_api_port}"
        c.JupyterHub.hub_connect_url = f"http://{internal_host}:{hub_api_port}"
    spawner = c.UserAccountSlurmSpawner
    spawner.req_partition = value("OCEANDATA_SLURM_PARTITION")
    spawner.req_account = value("OCEANDATA_SLURM_ACCOUNT")
    spawner.req_qos = value("OCEANDATA_SLURM_QOS")
    spawner.req_runtime = value("OCEANDATA_SLURM_RUNTIME", "08:00:00")
    spawner.req_memory = value("OCEANDATA_SLURM_MEMORY")
    spawner.req_nprocs = value("OCEANDATA_SLURM_CPUS", "1")
    spawner.req_prologue = value("OCEANDATA_SLURM_SETUP")
    spawner.batchspawner_singleuser_cmd = str(bin_dir / "batchspawner-singleuser")
    # the queue wait counts: a server may pend while the partition is full
    c.Spawner.start_timeout = int(timeout)
    c.Spawner.http_timeout = 300
    # the account's home (on the shared filesystem, the same path on every node)
    c.Spawner.notebook_dir = "~"
    # sbatch (through sudo -E) and the job's srun need the cluster's slurm.conf
    c.Spawner.env_keep.append("SLURM_CONF")
