"""The users' notebook servers, each as the user's own Unix account.

:class:`UserAccountSpawner` is JupyterHub's :class:`~jupyterhub.spawner.LocalProcessSpawner`
(which switches to the account with ``setgid``/``setgroups``/``setuid`` before ``exec``)
with one change: hub user ``<name>`` runs as ``oceandata-<name>``
(:func:`oceandata.hub.accounts.unix_name`) rather than as a Unix account of the same name.
:func:`prepare_user` is the ``pre_spawn_hook``: it creates the account on first use and
gives the user the example notebooks, owned by the account, and settles the server's
language (:func:`settle_language`). :func:`language_environment` gives the entries of
``c.Spawner.environment`` that carry that language to the server: JupyterLab's default
locale through a config overlay first on ``JUPYTER_CONFIG_PATH`` (``hub_config/jupyter-zh``:
``labconfig/default_setting_overrides.json`` makes ``zh_CN`` the default of
``@jupyterlab/translation-extension:plugin``, the zh-CN language pack shows it; a user's own
choice in JupyterLab's Settings menu still wins) and ``LANGUAGE`` for the command line in
the user's terminals and kernels (:func:`oceandata.i18n.cli_lang`).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid

from ..i18n import LANG_COOKIE, Lang, lang_of, negotiate
from .accounts import chown_tree, ensure_account, per_user, unix_name, user_home

__all__ = ["LANGUAGE_VARIABLE", "UserAccountSpawner", "copy_examples", "language_environment",
           "prepare_user", "saved_language", "server_lang", "settle_language"]

#: the attribute of a spawner holding the language its server starts in
LANG_ATTRIBUTE = "oceandata_lang"
#: ``LANGUAGE`` of a server's processes per platform language (gettext's list; the POSIX
#: locale itself is left alone: zh_CN.UTF-8 need not be installed on the nodes)
LANGUAGE_VARIABLE: dict[str, str] = {"en": "en", "zh": "zh_CN:zh"}


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


def saved_language(user_name: str, db_url: str | None = None) -> str | None:
    """The language *user_name* saved in their platform settings (allocations database),
    None when none (or the database has no tables yet: nothing was ever saved).

    Parameters
    ----------
    user_name
        The hub user name.
    db_url
        The allocations database (default: :func:`oceandata.alloc.db.default_url`).
    """
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from ..alloc import db, projects

    try:
        with db.session_scope(db_url) as session:
            return projects.language_of(session, user_name)
    except (OperationalError, ProgrammingError) as exc:
        if "no such table" in str(exc) or "does not exist" in str(exc):
            return None
        raise


def _request_hints(spawner: Any) -> tuple[str | None, str | None]:
    """The ``Accept-Language`` and the language cookie of the request that asked for the
    spawn (JupyterHub's ``spawner.handler``), when there is one and its user is the
    server's owner (an administrator's browser says nothing of the user's language)."""
    handler = getattr(spawner, "handler", None)
    request = getattr(handler, "request", None)
    if request is None:
        return None, None
    # an administrator starting someone's server does not give them their own language
    asker = getattr(getattr(handler, "current_user", None), "name", None)
    if asker != spawner.user.name:
        return None, None
    accept = request.headers.get("Accept-Language")
    try:
        cookie = handler.get_cookie(LANG_COOKIE)
    except Exception:  # a handler without cookies gives no hint
        cookie = None
    return accept, cookie


async def settle_language(spawner: Any, db_url: str | None = None) -> Lang:
    """The language the user's server starts in, kept on *spawner* for
    :func:`language_environment`.

    The platform's order (:func:`oceandata.i18n.negotiate`) without ``?lang=``: the
    language cookie of the request that asked for the spawn, the user's saved setting
    (read in a thread), the request's ``Accept-Language``, English. A spawn through the
    REST API usually carries neither cookie nor header: the saved setting decides. A
    failure to read the setting is logged and the order goes on without it: a spawn never
    fails for its language.

    Parameters
    ----------
    spawner
        The spawner about to start.
    db_url
        The allocations database.
    """
    name = spawner.user.name
    saved = None
    try:
        saved = await asyncio.to_thread(saved_language, name, db_url)
    except Exception as exc:  # never fail a spawn for its language
        spawner.log.warning("language of %s's server: the saved setting could not be read "
                            "(%s: %s); using the browser's language or English",
                            name, type(exc).__name__, str(exc)[:200])
    accept, cookie = _request_hints(spawner)
    lang = negotiate(None, accept, cookie=cookie, setting=saved)
    setattr(spawner, LANG_ATTRIBUTE, lang)
    spawner.log.info("language of %s's server: %s (saved: %s)", name, lang, saved)
    return lang


def server_lang(spawner: Any) -> Lang:
    """The language :func:`settle_language` chose for *spawner* (English if none)."""
    return lang_of(getattr(spawner, LANG_ATTRIBUTE, None)) or "en"


def language_environment(config_path: Sequence[str | os.PathLike[str] | None],
                         overlays: dict[str, str | os.PathLike[str]],
                         ) -> dict[str, Callable[[Any], str]]:
    """Entries of ``c.Spawner.environment`` giving each server its language.

    Parameters
    ----------
    config_path
        Every server's Jupyter config folders, first first (empty entries are left out).
    overlays
        Per language, a config folder put first on ``JUPYTER_CONFIG_PATH`` for its servers
        (``labconfig/default_setting_overrides.json`` with JupyterLab's locale).

    Returns
    -------
    dict
        ``JUPYTER_CONFIG_PATH`` and ``LANGUAGE``, each a callable of the spawner.
    """
    base = [str(p) for p in config_path if p]

    def jupyter_config_path(spawner: Any) -> str:
        overlay = overlays.get(server_lang(spawner))
        return os.pathsep.join([str(overlay), *base] if overlay else base)

    def language(spawner: Any) -> str:
        return LANGUAGE_VARIABLE[server_lang(spawner)]

    return {"JUPYTER_CONFIG_PATH": jupyter_config_path, "LANGUAGE": language}


async def prepare_user(spawner: Any, notebooks: Path, data_dir: Path,
                       alloc_db_url: str | None = None) -> None:
    """``pre_spawn_hook``: the user's account and folder, then the example notebooks (in
    both languages: ``examples/zh`` holds the Chinese ones), and the server's language
    (:func:`settle_language`).

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
    alloc_db_url
        The allocations database, where the users' saved languages are.
    """
    await settle_language(spawner, alloc_db_url)
    name = spawner.user.name
    home = user_home(name, data_dir)
    if not per_user():
        copy_examples(notebooks, home)
        return
    entry = await asyncio.to_thread(ensure_account, name, data_dir)
    copied = await asyncio.to_thread(copy_examples, notebooks, home)
    if copied is not None:
        chown_tree(copied, entry.pw_uid, entry.pw_gid)
