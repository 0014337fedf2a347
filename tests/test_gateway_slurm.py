"""Gateway clusters on Slurm: ``hub up --backend slurm`` against the multi-node fixture.

The scheduler and each worker of a dask-gateway cluster are Slurm jobs submitted as the
user's Unix account (``dask-gateway-jobqueue-launcher`` through ``sudo``) under the
user's Slurm account; core-hours are charged from ``sacct``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from oceandata.errors import UsageError
from oceandata.hub.launcher import backend_settings


def _hub_up(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oceandata.cli", "hub", "up", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_backend_choice_is_refused_in_one_line_when_wrong_or_slurm_unreachable(
        tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    data = tmp_path / "var"
    bad = _hub_up("--backend", "kubernetes", "--data-dir", str(data), env=env)
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.strip() == ("oceandata: error: --backend 'kubernetes' is not a "
                                  "backend: give local or slurm")
    missing = _hub_up("--backend", "slurm", "--data-dir", str(data),
                      env={**env, "SLURM_CONF": str(tmp_path / "nowhere.conf")})
    assert missing.returncode == 2
    assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    assert "is not a file" in missing.stderr and "Traceback" not in missing.stderr
    # a slurm.conf whose controller does not answer: scontrol ping says so, exit 2
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=nowhere\nSlurmctldHost=localhost(127.0.0.1)\n"
                    "SlurmctldPort=9\nAuthType=auth/munge\n"
                    f"AuthInfo=socket={tmp_path / 'no-munge.socket'}\n")
    down = _hub_up("--backend", "slurm", "--data-dir", str(data),
                   env={**env, "SLURM_CONF": str(conf)})
    assert down.returncode == 2
    assert len(down.stderr.strip().splitlines()) == 1, down.stderr
    assert "Slurm is not reachable" in down.stderr and "scontrol ping" in down.stderr
    assert not data.exists()  # refused before anything is prepared


def test_backend_settings_come_from_the_environment() -> None:
    assert backend_settings(environ={})["backend"] == "local"
    assert backend_settings(environ={})["internal_host"] == "127.0.0.1"
    chosen = backend_settings("local", environ={"OCEANDATA_HUB_INTERNAL_HOST": "10.1.0.5",
                                                "OCEANDATA_SLURM_PARTITION": "compute",
                                                "OCEANDATA_SLURM_ACCOUNT": "oceandata"})
    assert chosen["internal_host"] == "10.1.0.5"
    assert (chosen["slurm_partition"], chosen["slurm_account"]) == ("compute", "oceandata")
    with pytest.raises(UsageError, match="not a backend"):
        backend_settings(environ={"OCEANDATA_HUB_BACKEND": "pbs"})
