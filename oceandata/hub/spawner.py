"""The users' notebook servers, each as the user's own Unix account.

:class:`UserAccountSpawner` is JupyterHub's :class:`~jupyterhub.spawner.LocalProcessSpawner`
(which switches to the account with ``setgid``/``setgroups``/``setuid`` before ``exec``)
with one change: hub user ``<name>`` runs as ``oceandata-<name>``
(:func:`oceandata.hub.accounts.unix_name`) rather than as a Unix account of the same name.
:func:`prepare_user` is the ``pre_spawn_hook``: it creates the account on first use and
gives the user the example notebooks, owned by the account.
"""

from __future__ import annotations

import asyncio
import pwd
import shutil
from pathlib import Path
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid

from .accounts import chown_tree, ensure_account, per_user, unix_name, user_home

__all__ = ["UserAccountSpawner", "copy_examples", "prepare_user"]


class UserAccountSpawner(LocalProcessSpawner):
    """``LocalProcessSpawner`` running hub user ``<name>`` as Unix account ``oceandata-<name>``."""

    def make_preexec_fn(self, name: str) -> Any:
        """Switch to the user's account (and its home as working folder) before ``exec``.

        Parameters
        ----------
        name
            The hub user name.
        """
        return set_user_setuid(unix_name(name))

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        """``USER``, ``LOGNAME`` and ``HOME`` of the user's account; bash in terminals.

        Parameters
        ----------
        env
            The server's environment, changed in place.
        """
        entry = pwd.getpwnam(unix_name(self.user.name))
        env["USER"] = env["LOGNAME"] = entry.pw_name
        env["HOME"] = entry.pw_dir
        # the account has no login shell; JupyterLab's terminals use $SHELL
        env["SHELL"] = "/bin/bash"
        return env


def copy_examples(notebooks: Path, home: Path) -> Path | None:
    """Copy *notebooks* to ``<home>/examples`` unless the user already has that folder.

    Parameters
    ----------
    notebooks
        The example notebooks of the platform.
    home
        The user's folder.

    Returns
    -------
    Path or None
        The new copy, or None when nothing was copied.
    """
    home.mkdir(parents=True, exist_ok=True)
    target = home / "examples"
    if not notebooks.is_dir() or target.exists() or target.is_symlink():
        return None
    shutil.copytree(notebooks, target, ignore=shutil.ignore_patterns(".*"))
    return target


async def prepare_user(spawner: Any, notebooks: Path, data_dir: Path) -> None:
    """``pre_spawn_hook``: the user's account and folder, then the example notebooks.

    In per-user mode the account is created (or looked up) and the copy given to it;
    in single-account mode the folder belongs to the platform's account.

    Parameters
    ----------
    spawner
        The spawner about to start.
    notebooks
        The example notebooks of the platform.
    data_dir
        The platform's data dir (homes under ``users/``).
    """
    name = spawner.user.name
    home = user_home(name, data_dir)
    if not per_user():
        copy_examples(notebooks, home)
        return
    entry = await asyncio.to_thread(ensure_account, name, data_dir)
    copied = await asyncio.to_thread(copy_examples, notebooks, home)
    if copied is not None:
        chown_tree(copied, entry.pw_uid, entry.pw_gid)
