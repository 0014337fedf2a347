"""``oceandata serve``: the standalone open-data service, started as a user would."""

from __future__ import annotations

import subprocess
import sys
import time

import requests

from oceandata.netutil import free_port

OCEANDATA = [sys.executable, "-m", "oceandata.cli"]


def test_serve_answers_open_data_and_stops_on_sigterm() -> None:
    port = free_port()
    proc = subprocess.Popen([*OCEANDATA, "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.communicate()[1][-2000:]
                assert time.monotonic() < deadline, "oceandata serve did not start"
                time.sleep(0.1)  # poll interval of the readiness probe
        assert r.status_code == 200
        listed = requests.get(f"http://127.0.0.1:{port}/datasets", timeout=30).json()
        assert "cobe_sst2" in listed
        dds = requests.get(f"http://127.0.0.1:{port}/datasets/cobe_sst2/opendap.dds",
                           timeout=30)
        assert dds.status_code == 200 and "Float32 sst" in dds.text
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err[-2000:]


def test_serve_refuses_bad_arguments_in_one_line(tmp_path) -> None:
    for args, needle in ((["--port", "0"], "--port 0 is not a TCP port"),
                         (["--catalog", str(tmp_path / "none.yaml")], "does not exist")):
        done = subprocess.run([*OCEANDATA, "serve", *args], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], done.stderr
