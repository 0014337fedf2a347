"""Run JupyterLab for one user on 127.0.0.1, with oceandata importable and the catalog set.

This is the embedded default of ``make up`` until the JupyterHub platform replaces it
(see docs/architecture.md). The access token is generated once, stored 0600 under the
data dir and passed through the environment, so it is never printed or logged.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from .config import get_settings


def secret_file(path: Path, *, nbytes: int = 32, make: Callable[[], str] | None = None) -> str:
    """Return the secret stored in *path*, creating it (mode 0600) if it does not exist.

    Parameters
    ----------
    path
        Where the secret lives; its folder is created with mode 0700.
    nbytes
        Random bytes in a new secret (hex encoded).
    make
        Makes a new secret in another format (e.g. a Fernet key) instead.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        value = make() if make is not None else secrets.token_hex(nbytes)
        fh.write(value + "\n")
    return value


def lab_command(port: int, root_dir: Path) -> list[str]:
    """The JupyterLab command line: loopback only, no browser, no token in the logs."""
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root_dir}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Containers and CI machines often run as root; the server still listens on
        # loopback only and requires the token.
        cmd.append("--allow-root")
    return cmd


def lab_environment() -> dict[str, str]:
    """Environment of the lab: the token, the catalog and the sample-data settings."""
    settings = get_settings()
    env = dict(os.environ)
    env["JUPYTER_TOKEN"] = secret_file(settings.data_dir / "secrets" / "lab-token")
    env["JUPYTER_RUNTIME_DIR"] = str(settings.data_dir / "jupyter-runtime")
    env["OCEANDATA_CATALOG"] = str(settings.catalog)
    env["OCEANDATA_SAMPLE_CACHE"] = str(settings.sample_cache)
    if settings.sample_data is not None:
        env["OCEANDATA_SAMPLE_DATA"] = str(settings.sample_data)
    return env


def run_lab(port: int = 8888, root_dir: Path | None = None) -> None:
    """Replace this process with JupyterLab (used by ``make up``)."""
    settings = get_settings()
    root = root_dir or (settings.catalog.parent.parent / "notebooks")
    root.mkdir(parents=True, exist_ok=True)
    env = lab_environment()
    token_file = settings.data_dir / "secrets" / "lab-token"
    print(f"JupyterLab on http://127.0.0.1:{port}/lab  (token: see {token_file}, mode 0600)",
          flush=True)
    cmd = lab_command(port, root)
    os.execvpe(cmd[0], cmd, env)
