"""A real, throw-away PostgreSQL server for the tests that need one.

:func:`running_postgres` finds PostgreSQL's server programs (Debian installs them under
``/usr/lib/postgresql/<version>/bin``), installs the Debian package ``postgresql`` when
they are missing and the tests run as root, initialises a cluster in a fresh temporary
folder, starts it on 127.0.0.1 and a free port (its unix socket stays in that folder),
waits until it accepts connections, creates a password-protected role and a database
owned by it, and stops the server (``pg_ctl stop -m fast``) and removes the folder
afterwards.

``initdb`` and the server refuse to run as root: as root they run as the ``postgres``
system user (``runuser``), which owns the temporary folder. Connections over TCP need the
role's password (``scram-sha-256``); the superuser only connects over the unix socket in
the private folder (``trust``), to create the role and the database.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from oceandata.netutil import free_port
from oceandata.testing import in_ci

#: the Debian package providing initdb/pg_ctl/pg_isready
DEBIAN_PACKAGE = "postgresql"
SERVER_PROGRAMS = ("initdb", "pg_ctl", "pg_isready")


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be installed or started here (the message says why)."""


def skip_or_fail(reason: str) -> None:
    """Skip the test with *reason*, or fail it in CI where the service must be there.

    Parameters
    ----------
    reason
        Why the service is not available (shown in the test report).
    """
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing service is a failure)")
    pytest.skip(reason)


def apt_install(*packages: str, timeout: float = 900) -> None:
    """Install Debian *packages* with apt-get (root only), updating the lists if needed.

    Parameters
    ----------
    *packages
        Debian package names.
    timeout
        Seconds allowed for each apt-get call.

    Raises
    ------
    PostgresUnavailable
        When not root, apt-get is missing, or the installation fails.
    """
    if os.geteuid() != 0:
        raise PostgresUnavailable(f"{' '.join(packages)} missing and not root: "
                                  f"apt-get install {' '.join(packages)}")
    if shutil.which("apt-get") is None:
        raise PostgresUnavailable(f"{' '.join(packages)} missing and no apt-get here")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-qq", *packages]
    try:
        done = subprocess.run(install, env=env, capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True,
                           timeout=timeout)
            done = subprocess.run(install, env=env, capture_output=True, text=True,
                                  timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise PostgresUnavailable(f"apt-get install {' '.join(packages)} timed out") from exc
    if done.returncode != 0:
        raise PostgresUnavailable(f"apt-get install {' '.join(packages)} failed:\n"
                                  f"{done.stderr[-2000:]}")


def find_bindir() -> Path | None:
    """The folder holding PostgreSQL's ``initdb``, ``pg_ctl`` and ``pg_isready``.

    Returns
    -------
    pathlib.Path or None
        The newest ``/usr/lib/postgresql/<version>/bin`` that has them, else the folder of
        ``initdb`` on ``PATH``, else None.
    """
    def version(path: str) -> int:
        match = re.search(r"/postgresql/(\d+)/", path)
        return int(match.group(1)) if match else 0

    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version,
                            reverse=True):
        if all((Path(candidate) / p).is_file() for p in SERVER_PROGRAMS):
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb and all((Path(initdb).parent / p).is_file() for p in SERVER_PROGRAMS):
        return Path(initdb).parent
    return None


def ensure_bindir() -> Path:
    """Find PostgreSQL's server programs, installing the Debian package when root.

    Returns
    -------
    pathlib.Path
        See :func:`find_bindir`.

    Raises
    ------
    PostgresUnavailable
        When they are missing and cannot be installed.
    """
    bindir = find_bindir()
    if bindir is None:
        apt_install(DEBIAN_PACKAGE)
        bindir = find_bindir()
    if bindir is None:
        raise PostgresUnavailable(f"apt-get installed {DEBIAN_PACKAGE} but initdb/pg_ctl "
                                  "are still not found")
    return bindir


@dataclass
class Postgres:
    """A running PostgreSQL server and the hub's role and database in it."""

    bindir: Path
    base: Path
    port: int
    user: str
    password: str
    dbname: str

    host: str = "127.0.0.1"

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "socket"

    @property
    def log_file(self) -> Path:
        return self.base / "postgres.log"

    @property
    def url(self) -> str:
        """URL of the hub's database as users give it (``postgresql://``, TCP, password)."""
        return self.url_for()

    def url_for(self, dbname: str | None = None, scheme: str = "postgresql") -> str:
        """SQLAlchemy URL of *dbname* (default: the hub's database) as the hub's role.

        Parameters
        ----------
        dbname
            A database created by :meth:`create_database` (default: :attr:`dbname`).
        scheme
            ``postgresql`` or with an explicit driver, e.g. ``postgresql+psycopg2``.

        Returns
        -------
        str
        """
        return (f"{scheme}://{self.user}:{self.password}@{self.host}:{self.port}/"
                f"{dbname or self.dbname}")

    def create_database(self, dbname: str) -> str:
        """Create another database owned by the hub's role; return its name.

        Parameters
        ----------
        dbname
            Name of the new database.

        Returns
        -------
        str
            *dbname*.
        """
        from psycopg2 import sql

        with contextlib.closing(self.superuser()) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(dbname), sql.Identifier(self.user)))
        return dbname

    def connect(self, dbname: str | None = None, **kw):
        """A psycopg2 connection to a database as the hub's role (over TCP).

        Parameters
        ----------
        dbname
            The database (default: the hub's, :attr:`dbname`).
        **kw
            Further :func:`psycopg2.connect` keyword arguments.

        Returns
        -------
        psycopg2.extensions.connection
        """
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user,
                                password=self.password, dbname=dbname or self.dbname,
                                connect_timeout=5, **kw)

    def superuser(self):
        """A psycopg2 connection as the ``postgres`` superuser over the private socket.

        Returns
        -------
        psycopg2.extensions.connection
        """
        import psycopg2

        return psycopg2.connect(host=str(self.socket_dir), port=self.port, user="postgres",
                                dbname="postgres", connect_timeout=5)

    def log(self) -> str:
        """The server's log (empty if there is none yet)."""
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""


def _as_owner(cmd: list[str]) -> list[str]:
    """*cmd* run as the ``postgres`` system user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _run(cmd: list[str], what: str, timeout: float = 120) -> str:
    done = subprocess.run(_as_owner(cmd), capture_output=True, text=True, timeout=timeout,
                          cwd="/")
    if done.returncode != 0:
        raise PostgresUnavailable(f"{what} failed ({done.returncode}):\n"
                                  f"{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout


def _wait_ready(pg: Postgres, timeout: float) -> None:
    """Poll until the hub's role could connect: ``pg_isready``, then a real query."""
    import psycopg2

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        ready = subprocess.run([str(pg.bindir / "pg_isready"), "-h", str(pg.socket_dir),
                                "-p", str(pg.port), "-U", "postgres"],
                               capture_output=True, text=True)
        if ready.returncode == 0:
            try:
                with contextlib.closing(pg.superuser()) as conn, conn.cursor() as cur:
                    cur.execute("SELECT 1")
                    return
            except psycopg2.OperationalError as exc:
                last = str(exc)
        else:
            last = ready.stdout + ready.stderr
        time.sleep(0.2)  # poll interval of the readiness probe
    raise PostgresUnavailable(f"PostgreSQL not ready in {timeout:.0f} s ({last.strip()}):\n"
                              f"{pg.log()[-3000:]}")


@contextlib.contextmanager
def running_postgres(user: str = "hub", password: str = "hub-db-pw-7f3k",
                     dbname: str = "jupyterhub", timeout: float = 60) -> Iterator[Postgres]:
    """Start a private PostgreSQL server with a role and a database for the hub.

    Parameters
    ----------
    user, password
        The role created for the hub (login with this password over TCP).
    dbname
        The database created for the hub, owned by *user*.
    timeout
        Seconds to wait for the server to accept connections.

    Yields
    ------
    Postgres
        The running server; it is stopped and its folder removed on exit.

    Raises
    ------
    PostgresUnavailable
        When PostgreSQL cannot be installed, initialised or started.
    """
    bindir = ensure_bindir()
    # a fresh folder directly under the system temp dir: pytest's tmp folders are private
    # to root (0700), which the postgres user could not enter
    base = Path(tempfile.mkdtemp(prefix="oceandata-pg-"))
    pg = Postgres(bindir=bindir, base=base, port=free_port(), user=user,
                  password=password, dbname=dbname)
    started = False
    try:
        pg.socket_dir.mkdir(mode=0o700)
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PostgresUnavailable("no 'postgres' system user to run the server "
                                          "as (root may not run it)") from exc
            for path in (base, pg.socket_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        os.chmod(base, 0o700)
        _run([str(bindir / "initdb"), "-D", str(pg.data_dir), "-U", "postgres",
              "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
              "--locale=C"], "initdb")
        options = (f"-c listen_addresses=127.0.0.1 -p {pg.port} "
                   f"-c unix_socket_directories={pg.socket_dir} -c fsync=off")
        _run([str(bindir / "pg_ctl"), "-D", str(pg.data_dir), "-l", str(pg.log_file),
              "-o", options, "-w", "-t", str(int(timeout)), "start"], "pg_ctl start",
             timeout=timeout + 30)
        started = True
        _wait_ready(pg, timeout)
        from psycopg2 import sql

        with contextlib.closing(pg.superuser()) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(
                    sql.Identifier(user)), (password,))
        pg.create_database(dbname)
        yield pg
    finally:
        if started:
            subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(pg.data_dir),
                                      "-m", "fast", "-w", "stop"]),
                           capture_output=True, timeout=60, cwd="/")
        shutil.rmtree(base, ignore_errors=True)
