"""Peak memory is bounded by chunks, not by the data's size (docs/analysis.md, "Memory").

Each measurement runs the natural notebook call in a fresh child Python (dask's threaded
scheduler, 2 threads, as on CI) on a synthetic daily Zarr store (float32, chunked along
time, uncompressed) and reads the child's peak RSS with
``resource.getrusage(RUSAGE_CHILDREN)``. ``ru_maxrss`` of RUSAGE_CHILDREN is the largest
of *all* the waited-for children of a process, so every measurement goes through its own
small wrapper process whose only child is the workload.

Two properties are checked: the peak stays under a bound well below the store's size,
and a store twice as large gives about the same peak (within 25 %). The stores are 3 and
6 GiB for ``anomaly`` and ``trend``. The heatwave chain (events, the daily ``clim`` and
the yearly summary) is run on 20 and 40 years of a 60 x 75 grid (126 and 252 MiB; its
detection costs about 2 minutes per GiB on 2 cores): doubling the *time* axis is what
must not raise the peak, since the chain's outputs (the day-of-year climatology, the
events table) grow with the number of points, not with time. docs/analysis.md gives the figures, including the peaks of the code before
this change (the same calls exceeded the bound several times).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from dask.callbacks import Callback

import oceandata
from oceandata.analysis.trends import trend

MiB = 2**20
GRID = (180, 360)  # 1° global grid
DAYS = {1: 12288, 2: 24576}  # 12288 days x 180 x 360 float32 = 3 GiB (8 MiB chunks of 32 days)
MHW_DAYS = {1: 7305, 2: 14611}  # 20 and 40 years from 1990: 126 and 252 MiB
MHW_GRID = (60, 75)
# anomaly and trend: well below the 3 GiB store (measured 620-750 MiB, ~270 MiB of which
# is the interpreter with numpy, pandas, xarray, dask and zarr imported)
BOUND = 900 * MiB
# heatwaves: memory above the imported baseline (measured 410 and 510 MiB: numba's compiled
# kernels, the worker threads' point blocks, the passes of array.chunk-size of input, set
# to 32 MiB in the child, and the outputs); it does not depend on the length of the series
MHW_WORK_BOUND = 640 * MiB

_WRAPPER = textwrap.dedent("""
    import json, resource, subprocess, sys
    done = subprocess.run([sys.executable, "-c", sys.argv[1]], capture_output=True, text=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"rc": done.returncode, "out": done.stdout, "err": done.stderr[-2000:],
                      "peak": peak}))
""")

_PRELUDE = textwrap.dedent("""
    import dask, xarray as xr
    dask.config.set(scheduler="threads", num_workers=2)
    dask.config.set({"array.chunk-size": "32MiB"})
    from oceandata.analysis.climatologies import anomaly
    from oceandata.analysis.mhw import marine_heatwaves, mhw_annual_summary
    from oceandata.analysis.trends import trend
    da = xr.open_zarr(STORE)["sst"]
""")

CALLS = {
    "baseline": "print(da.shape)",
    "anomaly_mean": "print(float(anomaly(da).mean().compute()))",
    "trend_anomaly": "print(float(trend(anomaly(da)).slope.mean().compute()))",
    "marine_heatwaves": ("events, clim = marine_heatwaves(da); "
                         "summary = mhw_annual_summary(da, clim); "
                         "assert float(clim.thresh.mean()) > float(clim.seas.mean()); "
                         "assert int(summary[\"count\"].sum()) == len(events); "
                         "print(len(events))"),
}


def peak_rss(store: Path, call: str) -> tuple[int, str]:
    """Peak RSS (bytes) of a fresh child running ``CALLS[call]`` on *store*, and its output."""
    code = f"STORE = {str(store)!r}\n" + _PRELUDE + CALLS[call]
    done = subprocess.run([sys.executable, "-c", _WRAPPER, code], capture_output=True,
                          text=True, check=True)
    report = json.loads(done.stdout)
    assert report["rc"] == 0, report["err"]
    return report["peak"], report["out"].strip()


def _write_store(path: Path, days: int, grid: tuple[int, int], chunk_days: int) -> Path:
    """A deterministic daily SST store: seasonal cycle, a spatial pattern, a small trend and
    a 2.7-year oscillation whose phase varies in space (so heatwaves occur, a few a decade).
    """
    ny, nx = grid
    t = np.arange(days, dtype=np.float32)
    phase = (np.linspace(0, 3, ny, dtype=np.float32)[:, None]
             + np.linspace(0, 2, nx, dtype=np.float32)[None, :])
    spatial = np.float32(0.05) * np.arange(ny, dtype=np.float32)[:, None]
    cos_p, sin_p = np.cos(phase), np.sin(phase)

    def block(_: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        lo, hi = block_info[None]["array-location"][0]
        tt = t[lo:hi, None, None]
        season = 15 + 5 * np.sin(np.float32(2 * np.pi / 365.25) * tt) + np.float32(1e-4) * tt
        slow = np.float32(2 * np.pi / (2.7 * 365.25)) * tt
        out = season + spatial + 0.5 * np.sin(slow) * cos_p + 0.5 * np.cos(slow) * sin_p
        return out.astype(np.float32)

    empty = dsa.empty((days, ny, nx), chunks=(chunk_days, ny, nx), dtype=np.float32)
    data = dsa.map_blocks(block, empty, dtype=np.float32)
    sst = xr.DataArray(data, dims=("time", "lat", "lon"), name="sst",
                       coords={"time": pd.date_range("1990-01-01", periods=days, freq="D"),
                               "lat": np.linspace(-89.5, 89.5, ny),
                               "lon": np.linspace(0.5, 359.5, nx)},
                       attrs={"units": "degC"})
    with dask.config.set(scheduler="threads"):
        sst.to_dataset().to_zarr(path, mode="w", consolidated=False, zarr_format=3,
                                 encoding={"sst": {"compressors": None}})
    return path


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory):
    """The 3 and 6 GiB stores and the 20- and 40-year heatwave stores, deleted at the end."""
    root = tmp_path_factory.mktemp("memory_stores")
    made = {
        "gridded": {k: _write_store(root / f"daily_{k}.zarr", DAYS[k], GRID, 32)
                    for k in (1, 2)},
        "mhw": {k: _write_store(root / f"mhw_{k}.zarr", MHW_DAYS[k], MHW_GRID, 64)
                for k in (1, 2)},
    }
    yield made
    shutil.rmtree(root, ignore_errors=True)


def _store_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.mark.slow
@pytest.mark.parametrize("call", ["anomaly_mean", "trend_anomaly"])
def test_peak_memory_does_not_grow_with_the_store(stores, call: str) -> None:
    small, large = stores["gridded"][1], stores["gridded"][2]
    assert _store_bytes(small) > 1.5 * BOUND  # the bound is well below the data
    peak_small, out_small = peak_rss(small, call)
    peak_large, out_large = peak_rss(large, call)
    assert np.isfinite(float(out_small)) and np.isfinite(float(out_large))
    assert peak_small < BOUND, f"{call}: {peak_small / MiB:.0f} MiB on a 3 GiB store"
    assert peak_large < BOUND, f"{call}: {peak_large / MiB:.0f} MiB on a 6 GiB store"
    print(f"{call}: {peak_small / MiB:.0f} MiB (3 GiB), {peak_large / MiB:.0f} MiB (6 GiB)")
    assert peak_large < 1.25 * peak_small, (
        f"{call}: {peak_small / MiB:.0f} MiB on 3 GiB, {peak_large / MiB:.0f} MiB on 6 GiB")


@pytest.mark.slow
def test_heatwave_memory_does_not_grow_with_the_store(stores) -> None:
    small, large = stores["mhw"][1], stores["mhw"][2]
    base, _ = peak_rss(small, "baseline")
    peak_small, n_small = peak_rss(small, "marine_heatwaves")
    peak_large, n_large = peak_rss(large, "marine_heatwaves")
    assert int(n_large) > int(n_small) > 0  # events found on every point, about twice as many
    print(f"heatwaves: baseline {base / MiB:.0f} MiB, peaks {peak_small / MiB:.0f} and "
          f"{peak_large / MiB:.0f} MiB")
    for peak, size in ((peak_small, "20 years"), (peak_large, "40 years")):
        work = peak - base
        assert work < MHW_WORK_BOUND, f"heatwaves: {work / MiB:.0f} MiB above baseline, {size}"
    assert peak_large < 1.25 * peak_small


# ------------------------------------------------------------------ fast checks of the rule


def test_trend_streams_without_rechunking_time_and_equals_the_series_fit() -> None:
    """The chunked (streaming) OLS equals the whole-series numpy fit, NaNs included."""
    cobe = oceandata.open_dataset("cobe_sst2", time=("1950", "1952"))["sst"]
    cobe = cobe.isel(lat=slice(60, 120), lon=slice(150, 250)).load()
    cobe[5, :10, :10] = np.nan  # a missing step at some points
    lazy = trend(cobe.chunk({"time": 5}))
    largest = []  # nbytes of every task result: no task may hold more than a time chunk

    def record(key, result, dsk, state, worker) -> None:
        largest.append(getattr(result, "nbytes", 0))

    with Callback(posttask=record):
        got = lazy.compute(scheduler="sync")
    chunk = 5 * cobe.sizes["lat"] * cobe.sizes["lon"] * 8  # one time chunk in float64
    assert max(largest) <= chunk < cobe.size * 8 / 4
    ref = trend(cobe)
    for name in ("slope", "stderr", "pvalue", "intercept", "n"):
        xr.testing.assert_allclose(got[name], ref[name], rtol=1e-9, atol=1e-12)
