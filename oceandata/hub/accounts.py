"""One Unix account per platform user (the model of The Littlest JupyterHub).

Every hub user ``<name>`` runs their notebook servers, dask-gateway clusters and batch
jobs as the Unix account ``oceandata-<name>``, whose home is ``<data dir>/users/<name>``
(mode 0700, owned by the account). The platform itself (hub, proxy, services) runs as
root and keeps its state where no user account can reach it: ``<data dir>/secrets``,
``<data dir>/hub`` and ``<data dir>/alloc`` are 0700 root.

Which accounts are used is the *account mode*, from ``OCEANDATA_ACCOUNTS``:

``create`` (default when the platform runs as root)
    Accounts are created on first use with ``useradd --system`` (own group, no login
    shell, home under the data dir).
``existing``
    The accounts ``oceandata-<name>`` already exist (a directory service, LDAP/SSSD,
    or an admin's ``useradd``); a user without one is refused with a message saying so.
    Needs root, like ``create``.
``single`` (default, and the only choice, when the platform does not run as root)
    Everything runs as the platform's own account; users are separated by the hub's
    authorization only, not by the operating system.

Hub names follow ``^[a-z][a-z0-9_-]{0,21}$``, so ``oceandata-<name>`` has at most 32
characters, the longest name Linux's ``useradd`` accepts.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import re
import shutil
import stat
import subprocess
from collections.abc import Iterable
from pathlib import Path

from ..errors import OceandataError, UsageError

__all__ = ["ENV", "MODES", "PREFIX", "AccountError", "account_mode", "blocked_ancestor",
           "chown_tree", "ensure_account", "grant_search", "interpreter_paths", "per_user",
           "prepare_data_dir", "unix_name", "user_home"]

#: environment variable choosing the account mode
ENV = "OCEANDATA_ACCOUNTS"
#: the account modes (see the module docstring)
MODES = ("create", "existing", "single")
#: prefix of the users' Unix account names
PREFIX = "oceandata-"
#: the hub's user names (lower case, at most 22 characters)
HUB_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,21}$")
#: shell of the created accounts: processes run Python, nobody logs in
NOLOGIN = "/usr/sbin/nologin"


class AccountError(OceandataError):
    """A user's Unix account is missing or cannot be made (the operator's to fix)."""


def unix_name(hub_name: str) -> str:
    """The Unix account of hub user *hub_name*.

    Parameters
    ----------
    hub_name
        A hub user name (``^[a-z][a-z0-9_-]{0,21}$``).

    Returns
    -------
    str
        ``oceandata-<hub_name>``.

    Raises
    ------
    UsageError
        *hub_name* is not a valid hub user name.

    Examples
    --------
    >>> unix_name("alice")
    'oceandata-alice'
    """
    if not isinstance(hub_name, str) or not HUB_NAME.match(hub_name):
        raise UsageError(f"{hub_name!r} is not a platform user name: give lower case letters, "
                         "digits, '-' or '_', starting with a letter, at most 22 characters")
    return PREFIX + hub_name


def account_mode(environ: dict[str, str] | None = None) -> str:
    """The account mode in force: ``create``, ``existing`` or ``single``.

    Parameters
    ----------
    environ
        Where to read ``OCEANDATA_ACCOUNTS`` (default ``os.environ``).

    Raises
    ------
    UsageError
        An unknown value, or ``create``/``existing`` without root.
    """
    environ = os.environ if environ is None else environ
    root = os.geteuid() == 0
    value = environ.get(ENV, "").strip().lower()
    if not value:
        return "create" if root else "single"
    if value not in MODES:
        raise UsageError(f"{ENV}={value!r} is not an account mode: give one of "
                         f"{', '.join(MODES)}")
    if value != "single" and not root:
        raise UsageError(f"{ENV}={value} runs each user as their own Unix account, which "
                         f"needs root; run the platform as root or set {ENV}=single")
    return value


def per_user(environ: dict[str, str] | None = None) -> bool:
    """Whether users' processes run as their own Unix accounts (mode not ``single``)."""
    return account_mode(environ) != "single"


def _data_dir(data_dir: Path | None) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    if os.environ.get("OCEANDATA_DATA_DIR"):
        return Path(os.environ["OCEANDATA_DATA_DIR"])
    from ..config import get_settings

    return get_settings().data_dir


def user_home(hub_name: str, data_dir: Path | None = None) -> Path:
    """``<data dir>/users/<hub_name>``: the user's folder and their account's home."""
    unix_name(hub_name)  # validates
    return _data_dir(data_dir) / "users" / hub_name


def chown_tree(path: Path, uid: int, gid: int) -> None:
    """Give *path* and everything below it to *uid*:*gid*, never following links."""
    os.lchown(path, uid, gid)
    if path.is_symlink() or not path.is_dir():
        return
    for folder, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.lchown(os.path.join(folder, name), uid, gid)


def _useradd(name: str, home: Path, hub_name: str) -> None:
    useradd = shutil.which("useradd", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if useradd is None:
        raise AccountError("useradd is not installed: install Debian's passwd package or "
                           f"set {ENV}=single")
    done = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", str(home),
         "--shell", NOLOGIN, "--comment", f"oceandata user {hub_name}", name],
        capture_output=True, text=True, timeout=60)
    # 9: the name exists (another process created it meanwhile): as good as created
    if done.returncode not in (0, 9):
        message = " ".join((done.stderr or done.stdout).split())
        raise AccountError(f"could not create Unix account {name}: {message}")


def _usermod_home(name: str, home: Path) -> None:
    usermod = shutil.which("usermod", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if usermod is None:
        raise AccountError("usermod is not installed: install Debian's passwd package")
    done = subprocess.run([usermod, "--home", str(home), name], capture_output=True,
                          text=True, timeout=60)
    if done.returncode != 0:
        message = " ".join((done.stderr or done.stdout).split())
        raise AccountError(f"could not set the home of Unix account {name}: {message}")


def ensure_account(hub_name: str, data_dir: Path | None = None) -> pwd.struct_passwd:
    """The Unix account of *hub_name*, created if needed, with its home ready.

    Idempotent and safe when several processes (hub, jobs service, gateway) call it at
    once: an exclusive lock serializes them, and ``useradd``'s own "already exists" is
    taken as success. The home ``<data dir>/users/<hub_name>`` is made 0700 and given to
    the account (with what is in it: a folder from single-account days changes owner);
    in mode ``create`` an account whose home is elsewhere (the data dir moved) is
    pointed at it with ``usermod --home``.

    Parameters
    ----------
    hub_name
        The hub user name.
    data_dir
        The platform's data dir (default ``OCEANDATA_DATA_DIR`` / the settings).

    Returns
    -------
    pwd.struct_passwd
        The account's password-database entry.

    Raises
    ------
    AccountError
        Mode ``existing`` and no such account, or ``useradd`` failed.
    UsageError
        Single-account mode (there are no per-user accounts) or a bad name.
    """
    name = unix_name(hub_name)
    mode = account_mode()
    if mode == "single":
        raise UsageError(f"{ENV}=single: users have no Unix accounts of their own")
    home = user_home(hub_name, data_dir)
    users = home.parent
    users.mkdir(parents=True, exist_ok=True, mode=0o711)
    lock_path = users / ".accounts.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            if mode == "existing":
                raise AccountError(
                    f"the Unix account {name} of platform user {hub_name} does not exist: "
                    f"create it (useradd --system --user-group {name}) or set "
                    f"{ENV}=create") from None
            _useradd(name, home, hub_name)
            entry = pwd.getpwnam(name)
        if mode == "create" and entry.pw_dir != str(home):
            # the data dir moved (or another platform on this machine made it): follow
            _usermod_home(name, home)
            entry = pwd.getpwnam(name)
        home.mkdir(exist_ok=True, mode=0o700)
        if home.is_symlink():
            raise AccountError(f"{home} is a symbolic link: a user's home must be a folder")
        info = home.stat()
        if (info.st_uid, info.st_gid) != (entry.pw_uid, entry.pw_gid):
            chown_tree(home, entry.pw_uid, entry.pw_gid)
        os.chmod(home, 0o700)
        return entry
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


#: folders of the data dir and their modes: private to the platform, or traversable only
PRIVATE = ("secrets", "hub", "alloc")
TRAVERSABLE = ("users", "jobs", "dask-clusters")


def prepare_data_dir(data_dir: Path) -> None:
    """Create the data dir's top folders with the modes the account separation needs.

    ``secrets``, ``hub``, ``alloc``: 0700 (the platform only); ``users``, ``jobs``,
    ``dask-clusters``: 0711 (users reach their own folder, list nobody's); the data dir
    itself gets search permission for others (``o+x``), no listing.

    Parameters
    ----------
    data_dir
        The platform's data dir (created if missing).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    os.chmod(data_dir, mode | stat.S_IXGRP | stat.S_IXOTH)
    for name in PRIVATE:
        (data_dir / name).mkdir(exist_ok=True, mode=0o700)
        os.chmod(data_dir / name, 0o700)
    for name in TRAVERSABLE:
        (data_dir / name).mkdir(exist_ok=True, mode=0o711)
        os.chmod(data_dir / name, 0o711)
    for secret in (data_dir / "secrets").iterdir():
        if secret.is_file() and not secret.is_symlink():
            os.chmod(secret, 0o600)


def blocked_ancestor(paths: Iterable[Path]) -> Path | None:
    """The first folder on the way to one of *paths* that other accounts cannot traverse.

    Users' processes must reach the virtual environment (and the Python installation it
    is made from), the checkout, the catalog and the sample data through folders with
    search permission for others (``o+x``).

    Parameters
    ----------
    paths
        Files or folders users' processes need.

    Returns
    -------
    Path or None
        A folder without ``o+x`` on the way, or None when every path is reachable.
    """
    for path in paths:
        path = Path(path).absolute()
        for folder in [*reversed(path.parents), path]:
            try:
                info = folder.stat()
            except OSError:
                break
            if stat.S_ISDIR(info.st_mode) and not info.st_mode & stat.S_IXOTH:
                return folder
    return None


def interpreter_paths() -> list[Path]:
    """The Python the users' processes run: the venv and its base installation."""
    import sys

    return [Path(sys.prefix), Path(sys.executable).resolve(), Path(sys.base_prefix)]


def grant_search(paths: Iterable[Path]) -> list[Path]:
    """Add search permission for others (``o+x``, no listing) where *paths* are blocked.

    For machines whose Python lives in a private home (pyenv in ``/root`` on CI and
    development containers): ``make sysdeps`` and the test suite call it for
    :func:`interpreter_paths`. A production install puts the platform's Python where
    every account can reach it instead.

    Parameters
    ----------
    paths
        Files or folders the users' accounts must reach.

    Returns
    -------
    list of Path
        The folders changed.
    """
    paths = list(paths)
    changed: list[Path] = []
    while (folder := blocked_ancestor(paths)) is not None:
        os.chmod(folder, stat.S_IMODE(folder.stat().st_mode) | stat.S_IXOTH)
        changed.append(folder)
    return changed
