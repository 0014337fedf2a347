"""Guarded large outputs: estimates from metadata, refusals, --force, and signalled writes.

Everything runs on the real sample catalog (COBE-SST2, 60 yearly files of 12 months on a
180x360 grid). The signal tests start the real console program, wait (by polling the
file system) until its temporary output exists and grows, and signal it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import namedtuple
from pathlib import Path

import dask
import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

from oceandata.errors import OutputTooLarge

OCEANDATA = [sys.executable, "-m", "oceandata.cli"]

#: The written size must lie in [low, high] x the estimate (CSV) or at most the bound
#: and above bound / FACTOR (NetCDF, Zarr).
CSV_RANGE = (0.6, 1.0)
BOUND_FACTOR = 5.0


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OCEANDATA, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("oceandata: error: ")
    return lines[0]


def size_on_disk(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _raise_on_compute(*args, **kwargs):
    raise AssertionError("the estimate computed data")


@pytest.fixture(scope="module")
def cobe_files(sample) -> list[Path]:
    from oceandata import sample_data

    return sorted(sample_data.fetch_matching("gridded/cobe-sst2/year*.nc"))


# --------------------------------------------------------------------------- dry run


def test_dry_run_json_gives_sizes_reads_and_free_space_and_writes_nothing(
        tmp_path: Path, cobe_files: list[Path]) -> None:
    proc = run("subset", "cobe_sst2", "-o", str(tmp_path / "all.csv"), "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    est = json.loads(proc.stdout)
    assert list(tmp_path.iterdir()) == []
    assert est["format"] == "csv" and est["output_bytes"] == est["sizes"]["csv"]["bytes"]
    assert est["sizes"]["csv"]["kind"] == "estimate"
    assert est["sizes"]["netcdf"]["kind"] == est["sizes"]["zarr"]["kind"] == "upper bound"
    # Independent: the stored chunks of the 60 files, read with netCDF4 directly.
    import netCDF4

    chunks = nbytes = 0
    for path in cobe_files:
        with netCDF4.Dataset(path) as nc:
            var = nc["sst"]
            sizes = var.chunking()
            chunks += int(np.prod([-(-n // c) for n, c in zip(var.shape, sizes, strict=True)]))
            nbytes += var.size * var.dtype.itemsize
    assert est["read_chunks"] == chunks == 720
    assert est["read_bytes"] == nbytes
    rows = 720 * 180 * 360
    assert est["rows"] == rows
    # An uncompressed float32 and the three coordinates cannot print in under 20 bytes.
    assert est["sizes"]["csv"]["bytes"] > 20 * rows
    free = shutil.disk_usage(tmp_path).free
    assert abs(est["free_bytes"] - free) < 0.01 * free
    assert est["limit"] == 2_000_000_000


def test_dry_run_table_names_each_format_and_the_verdict(tmp_path: Path) -> None:
    proc = run("subset", "cobe_sst2", "-o", str(tmp_path / "all.csv"), "--dry-run",
               env={"OCEANDATA_MAX_OUTPUT": "1GB"})
    assert proc.returncode == 0, proc.stderr
    for word in ("netcdf", "zarr", "csv (chosen)", "upper bound", "estimate", "to read:",
                 "720 stored chunks", "free at", "would be refused"):
        assert word in proc.stdout, (word, proc.stdout)
    assert list(tmp_path.iterdir()) == []


def test_estimate_reads_no_data(tmp_path: Path) -> None:
    from oceandata.io import estimate

    with dask.config.set(scheduler=_raise_on_compute):
        est = estimate("cobe_sst2", bbox=(120, -10, 160, 10), time=("1990", "1991"),
                       target=tmp_path / "x.nc")
    assert est.format == "netcdf" and est.dims == {"time": 24, "lat": 20, "lon": 40}
    assert est.read_chunks == 24  # one stored chunk (a whole month) per time step


# --------------------------------------------------------------------------- refusals


def test_whole_cobe_as_csv_is_refused_with_the_estimate_and_a_split(tmp_path: Path) -> None:
    out = tmp_path / "all.csv"
    proc = run("subset", "cobe_sst2", "-o", str(out), env={"OCEANDATA_MAX_OUTPUT": "1GB"})
    line = one_line_error(proc)
    assert "all.csv would be about 1.5" in line and "GB as csv" in line, line
    assert "OCEANDATA_MAX_OUTPUT (1 GB)" in line
    assert "yearly with --time YYYY/YYYY: 60 files" in line and "--bbox" in line
    assert "--force" in line
    assert list(tmp_path.iterdir()) == []


def test_small_box_is_written_under_the_default_limit(tmp_path: Path) -> None:
    out = tmp_path / "box.csv"
    proc = run("subset", "cobe_sst2", "-o", str(out), "--bbox", "150,-5,160,5",
               "--time", "1997/1998")
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and [p.name for p in tmp_path.iterdir()] == ["box.csv"]


def test_force_writes_above_the_limit(tmp_path: Path) -> None:
    out = tmp_path / "box.nc"
    args = ["subset", "cobe_sst2", "-o", str(out), "--bbox", "150,-5,160,5",
            "--time", "1997/1998"]
    line = one_line_error(run(*args, env={"OCEANDATA_MAX_OUTPUT": "10kB"}))
    assert "box.nc would be at most" in line and "as netcdf" in line
    assert not out.exists()
    proc = run(*args, "--force", env={"OCEANDATA_MAX_OUTPUT": "10kB"})
    assert proc.returncode == 0, proc.stderr
    with xr.open_dataset(out) as ds:
        assert ds.sizes == {"time": 24, "lat": 10, "lon": 10}


def test_bad_limit_setting_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(run("subset", "cobe_sst2", "-o", str(tmp_path / "x.nc"),
                              "--time", "1997/1997", env={"OCEANDATA_MAX_OUTPUT": "lots"}))
    assert "OCEANDATA_MAX_OUTPUT='lots'" in line


def test_python_export_refuses_beyond_the_free_space_unless_forced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import oceandata
    from oceandata.io import export

    usage = namedtuple("usage", "total used free")
    module = sys.modules["oceandata.io.estimate"]  # oceandata.io.estimate is the function
    monkeypatch.setattr(module.shutil, "disk_usage",
                        lambda path: usage(10**6, 10**6 - 5_000, 5_000))
    ds = oceandata.open_dataset("cobe_sst2", time=("1997", "1997"), bbox=(150, -5, 160, 5))
    out = tmp_path / "box.csv"
    with pytest.raises(OutputTooLarge, match=r"more than the 5 kB free at .*split it"):
        export(ds, out)
    assert list(tmp_path.iterdir()) == []
    assert export(ds, out, force=True) == out


# --------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("suffix", [".csv", ".nc", ".zarr"])
def test_estimate_is_within_the_stated_factor_of_the_written_size(
        tmp_path: Path, suffix: str) -> None:
    import oceandata
    from oceandata.io import estimate, export

    request = {"time": ("1990", "1990"), "bbox": (100, -40, 220, 40)}
    out = tmp_path / f"part{suffix}"
    est = estimate("cobe_sst2", target=out, **request)
    written = size_on_disk(export(oceandata.open_dataset("cobe_sst2", **request), out))
    size = est.output_bytes
    if suffix == ".csv":
        assert CSV_RANGE[0] * size <= written <= CSV_RANGE[1] * size, (written, size)
    else:
        assert size / BOUND_FACTOR <= written <= size, (written, size)


# --------------------------------------------------------------------------- signals


def _signal_mid_write(tmp_path: Path, name: str, sig: signal.Signals
                      ) -> subprocess.CompletedProcess[str]:
    """Run a whole-record subset to *name*, signal it once its temporary output grows."""
    out = tmp_path / name
    proc = subprocess.Popen([*OCEANDATA, "subset", "cobe_sst2", "-o", str(out), "--force"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tmp = tmp_path / f".{name}.tmp-{proc.pid}"
    seen: list[int] = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if tmp.exists():
                size = size_on_disk(tmp)
                if seen and size > seen[-1] > 0:  # it exists and is growing
                    break
                if not seen or size != seen[-1]:
                    seen.append(size)
            time.sleep(0.02)  # polling interval, not a synchronisation
        assert proc.poll() is None, f"the write ended before it was seen growing: {seen}"
        assert tmp.exists(), "the temporary output was not found"
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.parametrize(("name", "sig", "code"), [
    ("big.csv", signal.SIGTERM, 143),
    ("big.csv", signal.SIGINT, 130),
    ("big.nc", signal.SIGTERM, 143),
    ("big.zarr", signal.SIGINT, 130),
])
def test_signal_mid_write_removes_the_temporary_output(tmp_path: Path, name: str,
                                                       sig: signal.Signals, code: int) -> None:
    done = _signal_mid_write(tmp_path, name, sig)
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    assert f"interrupted by {sig.name}" in done.stderr
    assert list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())


_RELEASE = threading.Event()


def _held_block(block: np.ndarray) -> np.ndarray:
    """A chunk computation (in-process worker) held until released, so it is running when
    the write fails, and then completes (as a chunk write already running would)."""
    _RELEASE.wait(60)
    return block


def test_failed_write_on_a_cluster_leaves_no_temporary_output(tmp_path: Path) -> None:
    """A chunk still running on a worker when the write fails cannot recreate the
    temporary store after it is removed: the block's tasks are cancelled and awaited."""
    from distributed import Client, LocalCluster

    from oceandata.atomic import atomic_output

    target = tmp_path / "out.zarr"
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        _RELEASE.clear()
        ds = xr.Dataset({"v": (("t",), dsa.ones(8, chunks=2).map_blocks(
            _held_block, meta=np.array((), dtype=float)))})
        with pytest.raises(RuntimeError, match="disk full"):
            with atomic_output(target) as tmp:
                write = client.compute(ds.to_zarr(tmp, compute=False, zarr_format=3))
                while not any(client.processing().values()):  # chunk tasks are running
                    time.sleep(0.02)
                # the chunks finish (and write) only after the clean-up has begun
                threading.Timer(0.5, _RELEASE.set).start()
                raise RuntimeError("disk full")
        assert write.cancelled()
        assert not any(client.processing().values())
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert leftovers == [], leftovers
