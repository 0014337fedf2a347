"""`make up`'s JupyterLab: loopback only, token from a 0600 file, never in the log."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from oceandata.netutil import free_port

pytestmark = pytest.mark.slow


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_listening(proc: subprocess.Popen, port: int, log: list[str]) -> None:
    """Wait until the server accepts connections.

    Jupyter Server logs "is running at" before its event loop binds the socket, so the
    line alone is not readiness; a successful connect is.
    """
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("JupyterLab exited before listening:\n" + "".join(log))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)  # poll interval of the connect probe
    pytest.fail(f"JupyterLab did not listen on port {port} within 60 s:\n" + "".join(log))


@pytest.fixture
def lab(tmp_path: Path):
    port = free_port()
    env = dict(os.environ, OCEANDATA_DATA_DIR=str(tmp_path / "var"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "oceandata.cli", "lab", "--port", str(port),
         "--root-dir", str(tmp_path / "nb")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    try:
        for line in proc.stdout:  # wait on the server's own readiness line
            log.append(line)
            if "is running at" in line:
                break
        else:
            pytest.fail("JupyterLab exited before serving:\n" + "".join(log))
        # keep draining the log so the server never blocks on a full pipe
        drain = threading.Thread(target=lambda: log.extend(proc.stdout), daemon=True)
        drain.start()
        _wait_listening(proc, port, log)
        yield port, tmp_path / "var", log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_lab_serves_with_a_secret_token_that_is_never_logged(lab) -> None:
    port, var, log = lab
    token_file = var / "secrets" / "lab-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert len(token) >= 32

    try:
        status, body = _get(f"http://127.0.0.1:{port}/api/status", token)
    except urllib.error.URLError as exc:
        pytest.fail(f"JupyterLab logged readiness but refused a connection ({exc}):\n"
                    + "".join(log))
    assert status == 200, body
    assert _get(f"http://127.0.0.1:{port}/api/status")[0] == 403
    assert _get(f"http://127.0.0.1:{port}/api/status", "wrong-token")[0] == 403
    status, page = _get(f"http://127.0.0.1:{port}/lab?token={token}")
    assert status == 200 and b"JupyterLab" in page

    status, body = _get(f"http://127.0.0.1:{port}/api/kernelspecs", token)
    assert status == 200 and b"python3" in body
    assert token not in "".join(log)


def test_the_lab_python_imports_oceandata_with_the_catalog_configured(tmp_path) -> None:
    from oceandata.lab import lab_environment

    env = lab_environment()
    code = ("import oceandata, os; c = oceandata.open_catalog(); "
            "print(os.environ['OCEANDATA_CATALOG'], len(c))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[0].endswith("catalogs/ocean.yaml") and int(out[1]) > 10
