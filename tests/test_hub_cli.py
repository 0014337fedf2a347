"""``oceandata hub up`` as a user runs it: readiness, a second instance, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.hub_helpers import free_port

pytestmark = pytest.mark.slow


def _descendants(pid: int) -> set[int]:
    """Every live process whose ancestry includes *pid* (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    out: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - out
        out |= frontier
    return out


def _wait_for_line(proc: subprocess.Popen, needle: str, timeout: float) -> str:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if needle in line:
            return "".join(seen)
    pytest.fail(f"no {needle!r} from hub up within {timeout} s:\n" + "".join(seen))


def test_hub_up_second_instance_and_ctrl_c(tmp_path: Path) -> None:
    data = tmp_path / "var"
    port = free_port()
    cmd = [sys.executable, "-m", "oceandata.cli", "hub", "up", "--data-dir", str(data),
           "--port", str(port)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("OCEANDATA_HUB_ADMIN_PASSWORD", None)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    try:
        banner = _wait_for_line(proc, "Ctrl-C stops everything", 180)
        assert f"http://127.0.0.1:{port}/hub/login" in banner
        password = (data / "secrets" / "hub-admin-password").read_text().strip()
        assert password not in banner
        assert requests.get(f"http://127.0.0.1:{port}/hub/api/").status_code == 200
        children = _descendants(proc.pid)
        assert len(children) >= 4  # jupyterhub, proxy, gate + gateway, culler

        # a second hub on the same data dir says so, exit 2, and the first is untouched
        second = subprocess.run([*cmd[:-1], str(free_port())], capture_output=True, text=True,
                                env=env, timeout=120)
        assert second.returncode == 2
        assert "already running" in second.stderr and str(data) in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        # the public port taken by something else: one line, exit 2
        third = subprocess.run([*cmd[:5], "--data-dir", str(tmp_path / "other"), "--port", str(port)], capture_output=True, text=True, env=env,
                               timeout=120)
        assert third.returncode == 2 and f"port {port}" in third.stderr

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0
        leftover = {p for p in children if Path(f"/proc/{p}").exists()
                    and "Z" not in Path(f"/proc/{p}/stat").read_text().split(")")[-1][:3]}
        assert not leftover, f"processes left after Ctrl-C: {leftover}"
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/hub/api/", timeout=5)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
