"""``oceandata hub up``: start JupyterHub (with its proxy and services) on 127.0.0.1.

The launcher prepares the runtime state under the data dir and runs JupyterHub in the
foreground. It never writes a secret to the terminal or the logs:

- secrets are generated at first start and stored with mode 0600 under
  ``<data dir>/secrets`` (hub cookie secret, proxy token, the gateway's and the idle
  culler's service tokens, the gateway database key, the first admin's password unless
  ``OCEANDATA_HUB_ADMIN_PASSWORD`` gives it);
- the first admin (``OCEANDATA_HUB_ADMIN``, default ``admin``) is registered with
  NativeAuthenticator before the hub starts, already approved (nobody can sign up under
  that name first);
- ports other than the public one are chosen free at each start and handed to the
  configuration through ``OCEANDATA_HUB_*`` environment variables;
- a lock file makes a second ``hub up`` on the same data dir say that one is running;
- the audit trail's URL (``OCEANDATA_GOVERNANCE__AUDIT_URL``, default
  ``sqlite:///<data dir>/audit.sqlite``) is fixed here and handed to the hub, which hands
  it to its services (dask-gateway, allocations, data), so every record of the platform
  lands in one chain (the users' servers do not get it; the SQLite file is 0600, the
  platform account's);
- the compute backend (:data:`BACKENDS`): ``local`` (default) runs notebook servers and
  gateway clusters on this machine; ``slurm`` runs them as Slurm jobs. The choice and
  its values reach the hub and the gateway as ``OCEANDATA_HUB_BACKEND``,
  ``OCEANDATA_HUB_INTERNAL_HOST`` (the address compute nodes reach the hub's API and
  the gateway's API on), ``OCEANDATA_SLURM_PARTITION``, ``OCEANDATA_SLURM_ACCOUNT``,
  ``OCEANDATA_SLURM_QOS`` (optional) and ``SLURM_CONF`` (passed through); they are also
  written to ``<hub dir>/backend.json`` (no secret in it), which the gateway service
  reads for any of them its environment lacks. ``slurm`` is refused in one line when
  ``scontrol ping`` does not answer.

Ctrl-C (SIGINT) or SIGTERM stops JupyterHub, which stops the proxy, the services and the
single-user servers it started.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import get_settings
from ..errors import OceandataError, UsageError
from ..lab import secret_file
from ..netutil import free_port
from . import accounts

#: The checkout holding ``hub_config/`` (the package is installed editable from it).
CHECKOUT = Path(__file__).resolve().parents[2]
HUB_CONFIG = CHECKOUT / "hub_config" / "jupyterhub_config.py"
NODE_PREFIX = CHECKOUT / ".venv" / "node"


#: the compute backends ``hub up --backend`` accepts
BACKENDS = ("local", "slurm")
#: the environment variables of the backend choice (see the module docstring)
BACKEND_ENV = ("OCEANDATA_HUB_BACKEND", "OCEANDATA_HUB_INTERNAL_HOST",
               "OCEANDATA_SLURM_PARTITION", "OCEANDATA_SLURM_ACCOUNT", "OCEANDATA_SLURM_QOS",
               "SLURM_CONF")
#: file under the hub dir holding the backend's variables (read by the gateway service)
BACKEND_FILE = "backend.json"


class HubAlreadyRunning(OceandataError):
    """Another ``hub up`` holds this data dir."""


@dataclass
class HubRuntime:
    """Everything the hub configuration needs, passed to it as environment variables."""

    data_dir: Path
    port: int = 8000
    db_url: str | None = None
    ports: dict[str, int] = field(default_factory=dict)
    admin: str = "admin"
    #: ``create``/``existing``: each user as their own Unix account; ``single``: one account
    accounts: str = "single"
    #: the audit trail of this platform (default: the setting, else SQLite under the data dir)
    audit_url: str = ""
    #: ``local`` or ``slurm`` (:data:`BACKENDS`): where servers and gateway clusters run
    backend: str = "local"
    #: address the compute nodes reach the hub's API and the gateway's API on
    internal_host: str = "127.0.0.1"
    #: Slurm partition, account and QOS of the jobs (``slurm`` backend; empty: Slurm's default)
    slurm_partition: str = ""
    slurm_account: str = ""
    slurm_qos: str = ""
    #: ``SLURM_CONF`` of the Slurm cluster (empty: Slurm's default, /etc/slurm/slurm.conf)
    slurm_conf: str = ""

    def __post_init__(self) -> None:
        if not self.audit_url:
            self.audit_url = (get_settings().governance.audit_url
                              or f"sqlite:///{self.data_dir / 'audit.sqlite'}")

    @property
    def hub_dir(self) -> Path:
        return self.data_dir / "hub"

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"

    @property
    def default_db_url(self) -> str:
        return f"sqlite:///{self.hub_dir / 'jupyterhub.sqlite'}"

    @property
    def url(self) -> str:
        """Where the proxy listens: the internal host in Slurm mode (the nodes' servers
        reach it there), else loopback (hub_config/jupyterhub_config.py, PUBLIC_URL)."""
        host = self.internal_host if self.backend == "slurm" else "127.0.0.1"
        return f"http://{host}:{self.port}"

    def backend_environment(self) -> dict[str, str]:
        """The backend choice as environment variables (:data:`BACKEND_ENV`; no secret).

        The Slurm values only when set (an unset one is left to the inherited
        environment, or Slurm's default).
        """
        env = {"OCEANDATA_HUB_BACKEND": self.backend,
               "OCEANDATA_HUB_INTERNAL_HOST": self.internal_host}
        for name, value in (("OCEANDATA_SLURM_PARTITION", self.slurm_partition),
                            ("OCEANDATA_SLURM_ACCOUNT", self.slurm_account),
                            ("OCEANDATA_SLURM_QOS", self.slurm_qos),
                            ("SLURM_CONF", self.slurm_conf)):
            if value:
                env[name] = value
        return env

    def environment(self) -> dict[str, str]:
        """Environment of the ``jupyterhub`` process (secrets as file paths or values)."""
        env = dict(os.environ)
        settings = get_settings()
        env.update({
            "OCEANDATA_DATA_DIR": str(self.data_dir),
            "OCEANDATA_HUB_DIR": str(self.hub_dir),
            "OCEANDATA_HUB_PORT": str(self.port),
            "OCEANDATA_HUB_DB_URL": self.db_url or self.default_db_url,
            "OCEANDATA_HUB_PORTS": json.dumps(self.ports),
            "OCEANDATA_HUB_ADMIN": self.admin,
            accounts.ENV: self.accounts,
            "OCEANDATA_CATALOG": str(settings.catalog),
            "OCEANDATA_GOVERNANCE__AUDIT_URL": self.audit_url,
            "OCEANDATA_SAMPLE_CACHE": str(settings.sample_cache),
            "CONFIGPROXY_AUTH_TOKEN": secret_file(self.secrets_dir / "proxy-token"),
            "OCEANDATA_GATEWAY_SERVICE_TOKEN": secret_file(self.secrets_dir / "gateway-token"),
            "OCEANDATA_CULLER_SERVICE_TOKEN": secret_file(self.secrets_dir / "culler-token"),
            "OCEANDATA_ALLOC_SERVICE_TOKEN": secret_file(self.secrets_dir / "allocations-token"),
            "OCEANDATA_DATA_SERVICE_TOKEN": secret_file(self.secrets_dir / "data-token"),
            "OCEANDATA_GATEWAY_PROXY_TOKEN": secret_file(self.secrets_dir / "gateway-proxy-token"),
            "PATH": f"{NODE_PREFIX / 'node_modules' / '.bin'}:{Path(sys.executable).parent}:"
                    f"{env.get('PATH', '')}",
        })
        env.update(self.backend_environment())
        if settings.sample_data is not None:
            env["OCEANDATA_SAMPLE_DATA"] = str(settings.sample_data)
        env.pop("JUPYTERHUB_API_TOKEN", None)
        return env

    def write_backend_file(self) -> Path:
        """Write :meth:`backend_environment` to ``<hub dir>/backend.json`` (mode 0644)."""
        path = self.hub_dir / BACKEND_FILE
        self.hub_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(json.dumps(self.backend_environment(), indent=1) + "\n",
                        encoding="utf-8")
        return path


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        # as the servers bind: connections in TIME_WAIT do not make the port busy
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _gateway_db_key(path: Path) -> str:
    """A Fernet key (urlsafe base64 of 32 bytes) for the gateway database, stored 0600."""
    import base64

    return secret_file(path, make=lambda: base64.urlsafe_b64encode(
        secrets.token_bytes(32)).decode())


def _admin_password(secrets_dir: Path) -> str:
    given = os.environ.get("OCEANDATA_HUB_ADMIN_PASSWORD")
    if given:
        return given
    return secret_file(secrets_dir / "hub-admin-password", nbytes=12)


def register_admin(db_url: str, name: str, password: str) -> bool:
    """Register *name* with NativeAuthenticator, approved, unless it exists.

    Called by :func:`bootstrap_admin` once the hub's schema exists (a table created
    before it would make the hub take the database for an old, unversioned one).

    Returns whether a new account was created. The password is stored bcrypt-hashed, as
    NativeAuthenticator stores it at sign-up.
    """
    import bcrypt
    from nativeauthenticator.orm import UserInfo
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    engine = create_engine(db_url)
    try:
        UserInfo.__table__.create(engine, checkfirst=True)
        with Session(engine) as session:
            if session.query(UserInfo).filter_by(username=name).first() is not None:
                return False
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
            session.add(UserInfo(username=name, password=hashed, is_authorized=True))
            session.commit()
            return True
    finally:
        engine.dispose()


def backend_settings(backend: str | None = None,
                     environ: dict[str, str] | None = None) -> dict[str, str]:
    """The backend choice: *backend* (``--backend``), else the environment, else ``local``.

    Parameters
    ----------
    backend
        ``local`` or ``slurm``; None reads ``OCEANDATA_HUB_BACKEND``.
    environ
        Where the other values are read (default ``os.environ``): ``OCEANDATA_HUB_INTERNAL_HOST``
        (default 127.0.0.1), ``OCEANDATA_SLURM_PARTITION``, ``OCEANDATA_SLURM_ACCOUNT``,
        ``OCEANDATA_SLURM_QOS`` and ``SLURM_CONF``.

    Returns
    -------
    dict of str to str
        Keyword arguments of :class:`HubRuntime` (``backend``, ``internal_host``,
        ``slurm_partition``, ``slurm_account``, ``slurm_qos``, ``slurm_conf``).

    Raises
    ------
    UsageError
        An unknown backend, or ``slurm`` when ``scontrol ping`` does not answer UP.
    """
    environ = os.environ if environ is None else environ
    chosen = (backend or environ.get("OCEANDATA_HUB_BACKEND") or "local").strip().lower()
    if chosen not in BACKENDS:
        raise UsageError(f"--backend {chosen[:40]!r} is not a backend: give "
                         f"{' or '.join(BACKENDS)}")
    values = {"backend": chosen,
              "internal_host": environ.get("OCEANDATA_HUB_INTERNAL_HOST") or "127.0.0.1",
              "slurm_partition": environ.get("OCEANDATA_SLURM_PARTITION", ""),
              "slurm_account": environ.get("OCEANDATA_SLURM_ACCOUNT", ""),
              "slurm_qos": environ.get("OCEANDATA_SLURM_QOS", ""),
              "slurm_conf": environ.get("SLURM_CONF", "")}
    if chosen == "slurm":
        check_slurm_reachable(values["slurm_conf"])
    return values


def check_slurm_reachable(slurm_conf: str = "") -> None:
    """Refuse (one line) when ``scontrol ping`` does not report the controller UP.

    Parameters
    ----------
    slurm_conf
        ``SLURM_CONF`` to use (empty: Slurm's default).

    Raises
    ------
    UsageError
        ``scontrol`` missing, failing, or the controller not UP.
    """
    import shutil

    scontrol = shutil.which("scontrol")
    where = f" (SLURM_CONF={slurm_conf})" if slurm_conf else ""
    if scontrol is None:
        raise UsageError("--backend slurm needs Slurm's client commands (scontrol, sbatch, "
                         "squeue, sacct) on PATH: install slurm-client, or use --backend "
                         "local")
    if slurm_conf and not Path(slurm_conf).is_file():
        raise UsageError(f"--backend slurm: SLURM_CONF={slurm_conf} is not a file: give the "
                         "cluster's slurm.conf, or use --backend local")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    if slurm_conf:
        env["SLURM_CONF"] = slurm_conf
    try:
        done = subprocess.run([scontrol, "ping"], env=env, capture_output=True, text=True,
                              timeout=15)
    except subprocess.TimeoutExpired:
        done = None
    said = "" if done is None else " ".join((done.stdout + done.stderr).split())
    if done is None or done.returncode != 0 or " is UP" not in said:
        why = "no answer in 15 s" if done is None else (said[:160] or f"exit {done.returncode}")
        raise UsageError(f"--backend slurm: Slurm is not reachable{where}: scontrol ping: "
                         f"{why}; start Slurm, set SLURM_CONF, or use --backend local")


def prepare_runtime(data_dir: Path | None = None, port: int = 8000,
                    db_url: str | None = None, backend: str | None = None) -> HubRuntime:
    """Create the runtime folders, secrets and free ports.

    Parameters
    ----------
    data_dir
        Runtime state of the platform (default: the ``OCEANDATA_DATA_DIR`` setting).
    port
        Public port of the hub on 127.0.0.1.
    db_url
        SQLAlchemy URL of the hub database; default SQLite under the data dir.
    backend
        ``local`` or ``slurm`` (:func:`backend_settings`; default from the environment).
    """
    chosen = backend_settings(backend)
    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port} is not a TCP port: give 1-65535")
    if db_url is not None and not db_url.startswith(("sqlite:", "postgresql:",
                                                     "postgresql+psycopg2:")):
        raise UsageError(f"--db-url {db_url.split('@')[-1]!r} is not supported: give a "
                         "sqlite:/// or postgresql:// URL")
    if db_url is not None and db_url.startswith("postgresql://"):
        # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; the hub ships psycopg2
        db_url = "postgresql+psycopg2://" + db_url[len("postgresql://"):]
    data = (data_dir or get_settings().data_dir).resolve()
    runtime = HubRuntime(data_dir=data, port=port, db_url=db_url,
                         admin=os.environ.get("OCEANDATA_HUB_ADMIN", "admin"),
                         accounts=accounts.account_mode(), **chosen)
    accounts.prepare_data_dir(data)
    if runtime.accounts != "single":
        _check_reachable(runtime)
        _link_samples()
    # distinct ports: the kernel may hand back a port it just gave (a gate and the
    # gateway's TCP proxy once got the same one, and the proxy could never start)
    runtime.ports = {}
    for name in ("hub_api", "proxy_api", "gateway_gate", "gateway_http", "gateway_tcp",
                 "gateway_api", "allocations", "data"):
        runtime.ports[name] = free_port(exclude=[port, *runtime.ports.values()])
    secret_file(runtime.secrets_dir / "hub-cookie-secret")
    _gateway_db_key(runtime.secrets_dir / "gateway-db-key")
    bootstrap_admin(runtime)
    return runtime


def _check_reachable(runtime: HubRuntime) -> None:
    """Refuse per-user mode when the users' accounts could not reach what they run."""
    settings = get_settings()
    needed = [runtime.data_dir, *accounts.interpreter_paths(), CHECKOUT,
              Path(settings.catalog), Path(settings.sample_cache)]
    if settings.sample_data is not None:
        needed.append(Path(settings.sample_data))
    blocked = accounts.blocked_ancestor(needed)
    if blocked is not None:
        raise UsageError(
            f"{blocked} is not searchable by other accounts (no o+x), so the users' Unix "
            f"accounts cannot reach the platform's files below it: chmod o+x {blocked}, "
            f"move the data dir, or set {accounts.ENV}=single")


def _link_samples() -> None:
    """Per-user mode: link the local mirror's sample files into the shared sample cache.

    The cache is the platform's (the users' accounts cannot write it); the registry
    finds a good link there and writes nothing (it still checks each file's hash).
    """
    from .. import sample_data

    settings = get_settings()
    cache = Path(settings.sample_cache)
    cache.mkdir(parents=True, exist_ok=True)
    if settings.sample_data is None:
        return
    for name in sample_data.names():
        entry = sample_data.info(name)
        source = Path(settings.sample_data) / entry.path
        target = cache / entry.path
        if source.is_file() and not (target.exists() or target.is_symlink()):
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(source.absolute(), target)


def single_account_notice(runtime: HubRuntime) -> str | None:
    """The one line ``hub up`` prints when all users run as the platform's account."""
    if runtime.accounts != "single":
        return None
    why = (f"{accounts.ENV}=single is set" if os.geteuid() == 0
           else "it does not run as root, so it cannot switch to per-user Unix accounts")
    return (f"single-account mode: every user's servers, clusters and jobs run as "
            f"{_whoami()} because {why} (see docs/security.md, Unix accounts)")


def _whoami() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def bootstrap_admin(runtime: HubRuntime) -> bool:
    """Register the first admin before the hub serves any request.

    NativeAuthenticator approves a sign-up at once when the name is an admin's, so the
    admin account must exist before ``/hub/signup`` is reachable. The hub's own schema
    is created first (JupyterHub's ORM, stamped with its alembic revision), then
    NativeAuthenticator's table, then the account; the hub finds them as it would have
    made them.
    """
    from jupyterhub import orm

    db = runtime.environment()["OCEANDATA_HUB_DB_URL"]
    orm.new_session_factory(db)().close()
    return register_admin(db, runtime.admin, _admin_password(runtime.secrets_dir))


class _Lock:
    """An exclusive ``flock`` on ``<hub dir>/hub.lock`` holding the running hub's pid/url."""

    def __init__(self, runtime: HubRuntime) -> None:
        self.path = runtime.hub_dir / "hub.lock"
        self.runtime = runtime
        self.fh = None

    def __enter__(self) -> _Lock:
        self.runtime.hub_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fh = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            info = fh.read().strip() or "unknown"
            fh.close()
            raise HubAlreadyRunning(
                f"a hub is already running on data dir {self.runtime.data_dir} ({info}); "
                "stop it (Ctrl-C in its terminal) or give another --data-dir") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}, {self.runtime.url}\n")
        fh.flush()
        self.fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fh is not None:
            self.fh.seek(0)
            self.fh.truncate()
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()


def hub_command(runtime: HubRuntime) -> list[str]:
    """The ``jupyterhub`` command line."""
    return [sys.executable, "-m", "jupyterhub", "-f", str(HUB_CONFIG)]


def _check_proxy_installed() -> None:
    chp = NODE_PREFIX / "node_modules" / ".bin" / "configurable-http-proxy"
    if not chp.exists():
        raise UsageError(f"configurable-http-proxy is not installed under {NODE_PREFIX}: run "
                         "`make venv` (it runs `npm install --prefix .venv/node "
                         "configurable-http-proxy`)")


def wait_until_up(runtime: HubRuntime, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Block until the hub and the gateway answer through the proxy, or raise."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise OceandataError(f"JupyterHub exited with code {proc.returncode} before it "
                                 f"was up; see {runtime.hub_dir / 'jupyterhub.log'}")
        try:
            # the hub's API, then the gateway's health through the hub's proxy and the gate
            for path in ("/hub/api/", "/services/dask-gateway/api/health"):
                with urllib.request.urlopen(f"{runtime.url}{path}", timeout=2) as resp:
                    if resp.status != 200:
                        break
            else:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)  # poll interval of the readiness probe
    raise OceandataError(f"JupyterHub was not up on {runtime.url} within {timeout:.0f} s; "
                         f"see {runtime.hub_dir / 'jupyterhub.log'}")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Prepare the hub's process before exec.

    SIGINT back to its default: a process started in the background by a shell inherits
    SIGINT ignored, and so would the hub's services, which JupyterHub stops with SIGINT
    first (then waits 10 s before SIGTERM). And, on Linux, the hub gets SIGTERM if the
    launcher dies without stopping it (kill -9).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start_hub(runtime: HubRuntime, *, log_to_file: bool = True) -> subprocess.Popen:
    """Start JupyterHub in the background (tests and ``hub_up`` share this path)."""
    _check_proxy_installed()
    if _port_taken(runtime.port):
        raise UsageError(f"port {runtime.port} on 127.0.0.1 is in use: stop what uses it or "
                         "give --port")
    runtime.write_backend_file()
    log = open(runtime.hub_dir / "jupyterhub.log", "ab")
    try:
        return subprocess.Popen(hub_command(runtime), env=runtime.environment(),
                                cwd=runtime.hub_dir, stdout=log if log_to_file else None,
                                stderr=subprocess.STDOUT if log_to_file else None,
                                start_new_session=True, preexec_fn=_die_with_parent)
    finally:
        log.close()


def stop_hub(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Stop JupyterHub (SIGTERM: it stops its proxy, services and servers), then reap."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # anything of the session left behind (a service that ignored SIGTERM)
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def hub_up(data_dir: Path | None = None, port: int = 8000, db_url: str | None = None,
           backend: str | None = None) -> int:
    """Run the platform in the foreground until Ctrl-C; return the exit code.

    *backend* is ``local`` or ``slurm`` (default: ``OCEANDATA_HUB_BACKEND``, else local).
    """
    runtime = prepare_runtime(data_dir, port, db_url, backend)
    notice = single_account_notice(runtime)
    if notice:
        print(notice, flush=True)
    with _Lock(runtime):
        proc = start_hub(runtime)

        stopping: list[int] = []

        def _stop(signum: int, frame: object) -> None:
            # only signal here: waiting inside a handler that interrupted Popen.wait
            # would deadlock on the Popen's wait lock; the main flow reaps the hub
            stopping.append(signum)
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

        # Ctrl-C and SIGTERM only forward SIGTERM to the hub; the main flow then sees the
        # hub exit (no KeyboardInterrupt unwinding through a blocking wait)
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        try:
            try:
                wait_until_up(runtime, proc)
            except OceandataError:
                if stopping:  # Ctrl-C while starting: not a failure
                    return 0
                raise
            pw_file = runtime.secrets_dir / "hub-admin-password"
            where = ("OCEANDATA_HUB_ADMIN_PASSWORD" if os.environ.get(
                "OCEANDATA_HUB_ADMIN_PASSWORD") else f"{pw_file} (mode 0600)")
            print(f"oceandata hub is up: {runtime.url}/hub/login\n"
                  f"  admin user: {runtime.admin} (password: {where})\n"
                  f"  new users sign up at {runtime.url}/hub/signup; the admin approves them "
                  f"at {runtime.url}/hub/authorize\n"
                  f"  log: {runtime.hub_dir / 'jupyterhub.log'}; Ctrl-C stops everything",
                  flush=True)
            code = proc.wait()
            print("the hub has stopped", flush=True)
            return 0 if code in (0, -signal.SIGTERM) else code
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            stop_hub(proc)
