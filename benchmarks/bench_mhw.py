"""Marine heatwaves over a grid: points per second against a per-point loop.

A deterministic daily SST field of 100 x 100 points over 30 years (1983-2012, 10,958
days, float32, 438 MB) is generated once as a Zarr store: a seasonal cycle varying with
latitude, a weak warming trend and red (AR(1), 0.9 day-to-day correlation) anomalies, so
that every point has heatwaves of every category. Then, each in a fresh child process:

``oceandata, LocalCluster``
    ``marine_heatwaves(da)`` on ``xr.open_zarr(store)`` with a ``dask.distributed``
    LocalCluster of 2 single-threaded worker processes (the cluster is started before
    the clock starts): the gridded path, one task per chunk of points computing the
    climatology and every event of its points at once.
``oceandata, threads``
    The same with dask's threaded scheduler (2 threads), no cluster.
``per-point loop``
    The way the reference implementation is used: a Python loop reading one series at a
    time and calling the 1-D detection (``marine_heatwaves`` on a 1-D series, the same
    numpy code path as the reference's ``detect``) on it, over the first ``--loop-points``
    points (default 200); its rate is extrapolated to the grid.

The gridded path runs compiled numba kernels (``oceandata/analysis/_mhw_kernels.py``);
they are compiled (or loaded from numba's on-disk cache) in every process before the
clock starts, as a long-running service or a second call would have them.

Reported: wall time, points per second, the speed-up over the loop and over the
reference implementation's published rate on a 2-core machine (about 7 points/s: 0.15 s
for a 41-year series; a scratch copy of it measured 0.11-0.22 s per 41-year series
here), and peak RSS (the child's own; with the cluster also its largest worker). The
loop's events for its points must equal the gridded ones before any figure is reported
(the loop is the 1-D numpy path, the gridded methods the compiled one).

``summary`` rows (see ``benchmarks/summary.py``): issue 19's target of 6,800 points/s on
2 cores (the faster of the two gridded methods), and the older target of 100x the
reference's 7 points/s; the load average during the run is recorded with them.

Run::

    python -m benchmarks mhw                 # 100 x 100 x 30 years
    python -m benchmarks mhw --size 20       # a quick check

Results are written (atomically) to ``benchmarks/results/mhw.json`` and ``mhw.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._common import _write_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
REFERENCE_POINTS_PER_S = 7.0
#: issue 19, target 4: points per second on 2 cores, 100 x 100 points x 30 years
TARGET_POINTS_PER_S = 6800.0
METHODS = ("oceandata, LocalCluster", "oceandata, threads", "per-point loop")


def generate(path: Path, size: int, seed: int = 20161) -> None:
    """Write the deterministic ``size`` x ``size`` daily SST store (1983-2012) to *path*."""
    import pandas as pd
    import xarray as xr
    from scipy.signal import lfilter

    if (path / "zarr.json").exists():
        return
    time_ = pd.date_range("1983-01-01", "2012-12-31", freq="D")
    lat = np.linspace(-45.0, 45.0, size)
    lon = np.linspace(100.0, 190.0, size)
    doy = time_.day_of_year.to_numpy()
    years = (time_ - time_[0]).days.to_numpy() / 365.25
    tmp = path.with_name(path.name + ".tmp")
    rows = max(1, size // 10)
    template = xr.DataArray(
        np.zeros((time_.size, size, size), np.float32), dims=("time", "lat", "lon"),
        coords={"time": time_, "lat": lat, "lon": lon}, name="sst",
    ).to_dataset()
    template.chunk({"time": -1, "lat": rows}).to_zarr(tmp, mode="w", compute=False)
    for j0 in range(0, size, rows):
        rng = np.random.default_rng([seed, j0])
        la = lat[j0:j0 + rows]
        seasonal = (20 - 0.2 * np.abs(la)[None, :, None]
                    + (1 + 0.08 * np.abs(la))[None, :, None]
                    * np.cos(2 * np.pi * (doy[:, None, None] - 45) / 365.25)
                    * np.sign(la + 1e-9)[None, :, None])
        noise = rng.normal(0.0, 0.35, (time_.size, la.size, size))
        red = lfilter([1.0], [1.0, -0.9], noise, axis=0)
        field = seasonal + 0.015 * years[:, None, None] + red
        block = xr.Dataset({"sst": (("time", "lat", "lon"), field.astype(np.float32))})
        block.drop_encoding().to_zarr(tmp, region={"time": slice(None),
                                                   "lat": slice(j0, j0 + la.size),
                                                   "lon": slice(None)})
    tmp.rename(path)


def _peak_mib() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def _digest(events) -> dict[str, float]:
    return {"n_events": len(events),
            "sum_duration": int(events["duration"].sum()),
            "sum_intensity_max": round(float(events["intensity_max"].sum()), 6)}


def _warm() -> None:
    """Compile (or load from numba's cache) the gridded path's kernels in this process."""
    import pandas as pd

    from oceandata.analysis import mhw

    time_ = pd.date_range("2000-01-01", "2002-12-31", freq="D")
    rng = np.random.default_rng(0)
    block = (20 + rng.normal(0, 1, (2, time_.size))).astype(np.float32)
    clim_kw = {"doy": mhw._doy366(time_), "in_clim": np.ones(time_.size, bool),
               "pctile": 90, "window_half_width": 5, "smooth_width": 31}
    mhw._block_events(block, clim_kw, {"min_duration": 5, "join_gaps": True, "max_gap": 2})


def run_case(method: str, store: str, loop_points: int) -> dict:
    """Run one method in this process and return its timing, memory and digest."""
    import dask
    import pandas as pd
    import xarray as xr

    from oceandata.analysis import marine_heatwaves

    da = xr.open_zarr(store)["sst"]
    npt = da.sizes["lat"] * da.sizes["lon"]
    if method == "per-point loop":
        ny = da.sizes["lon"]
        frames = []
        start = time.perf_counter()
        # the loop's points are read into memory once, as a user of the reference does
        block = da.isel(lat=slice(0, -(-loop_points // ny))).load()
        for k in range(loop_points):
            series = block.isel(lat=k // ny, lon=k % ny)
            events, _ = marine_heatwaves(series)
            frames.append(events.assign(point=k))
        seconds = time.perf_counter() - start
        events = pd.concat(frames, ignore_index=True)
        points = loop_points
    else:
        if method == "oceandata, LocalCluster":
            from dask.distributed import Client, LocalCluster

            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
            client.run(_warm)
            start = time.perf_counter()
            events, _ = marine_heatwaves(da)
            seconds = time.perf_counter() - start
            client.close()
            cluster.close()
        else:
            _warm()
            with dask.config.set(scheduler="threads", num_workers=2):
                start = time.perf_counter()
                events, _ = marine_heatwaves(da)
                seconds = time.perf_counter() - start
        events = events.assign(point=(np.searchsorted(da["lat"].values, events["lat"])
                                      * da.sizes["lon"]
                                      + np.searchsorted(da["lon"].values, events["lon"])))
        points = npt
        events = events[events["point"] < loop_points]
    own, children = _peak_mib()
    return {"method": method, "seconds": seconds, "points": points,
            "points_per_s": points / seconds, "peak_mib": own, "worker_peak_mib": children,
            "check": _digest(events)}


def _spawn(method: str, store: Path, loop_points: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_mhw", "--child", method, "--store",
           str(store), "--loop-points", str(loop_points)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table(summary: dict) -> str:
    lines = [
        f"# Marine heatwaves: {summary['size']} x {summary['size']} points, daily, "
        f"1983-2012 ({summary['days']} days)",
        "",
        f"{summary['machine']}; median of {summary['repeat']} runs, each method in a fresh "
        "process. Events of the loop's points are checked equal across methods.",
        "",
        "| method | points | seconds | points/s | x loop | x reference (7 points/s) "
        "| peak RSS MiB (process / largest worker) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    loop = summary["results"]["per-point loop"]["points_per_s"]
    for method in METHODS:
        r = summary["results"][method]
        worker = f" / {r['worker_peak_mib']:.0f}" if method.endswith("LocalCluster") else ""
        lines.append(
            f"| {method} | {r['points']} | {r['seconds']:.2f} | {r['points_per_s']:.0f} "
            f"| {r['points_per_s'] / loop:.1f} | {r['points_per_s'] / REFERENCE_POINTS_PER_S:.0f} "
            f"| {r['peak_mib']:.0f}{worker} |")
    lines += ["", f"Load average (1 min) at the start and end of the run: "
              f"{summary['load_average'][0]:.1f} / {summary['load_average'][1]:.1f}.", "",
              "| target | case | ratio | met | note |", "|---|---|---:|---|---|"]
    for r in summary["summary"]:
        met = {True: "**met**", False: "**not met**", None: "n/a"}[r["met"]]
        lines.append(f"| {r['target']} | {r['case']} | {r['ratio']:.2f} ({r['ratio_meaning']}) "
                     f"| {met} | {r['note']} |")
    return "\n".join(lines) + "\n"


def summary_rows(summary: dict) -> list[dict]:
    """The ``summary`` rows: issue 19's 6,800 points/s, and 100x the reference."""
    results = summary["results"]
    best = max(METHODS[:2], key=lambda m: results[m]["points_per_s"])
    r = results[best]
    pps = r["points_per_s"]
    peak = max(r["peak_mib"], r["worker_peak_mib"] if best.endswith("LocalCluster") else 0)
    load = "load average {:.1f} / {:.1f} (start / end)".format(*summary["load_average"])
    size = f"{summary['size']} x {summary['size']} points x 30 years, float32 Zarr"
    if pps >= TARGET_POINTS_PER_S:
        note = f"{pps:.0f} points/s with {best}; {load}"
    else:
        note = (f"{pps:.0f} points/s with {best}: missed by "
                f"{TARGET_POINTS_PER_S - pps:.0f} points/s "
                f"({100 * (1 - pps / TARGET_POINTS_PER_S):.0f}%): the compiled climatology "
                "(exact sliding percentile) alone needs about the whole budget of both "
                "cores, then come the Zarr read and decompression, the rechunk to point "
                "blocks, the event kernel and the serial events table (profile in "
                f"benchmarks/README.md); {load}")
    common = {"benchmark": "mhw", "peak_mib": float(peak)}
    return [
        {**common, "case": f"oceandata gridded ({best}), {size}",
         "anchor": "6,800 points/s (issue 19 target 4)", "ratio": pps / TARGET_POINTS_PER_S,
         "ratio_meaning": "oceandata points/s / 6,800",
         "target": ">= 6,800 points/s on 2 cores", "met": bool(pps >= TARGET_POINTS_PER_S),
         "note": note},
        {**common, "case": f"oceandata gridded ({best}) vs marineHeatWaves.detect, {size}",
         "anchor": "marineHeatWaves.detect, 7 points/s (published rate, 2 cores)",
         "ratio": pps / REFERENCE_POINTS_PER_S,
         "ratio_meaning": "oceandata points/s / reference points/s (x faster)",
         "target": ">= 100x the reference (700 points/s)",
         "met": bool(pps >= 100 * REFERENCE_POINTS_PER_S),
         "note": (f"{pps / results['per-point loop']['points_per_s']:.1f}x the per-point loop "
                  f"of the 1-D numpy path measured in the same run; {load}")},
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--child``, one method) and write the results."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks mhw", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100, help="points per side (100)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loop-points", type=int, default=200)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_case(args.child, args.store, args.loop_points)))
        return 0
    args.data_dir.mkdir(parents=True, exist_ok=True)
    store = args.data_dir / f"mhw_{args.size}x{args.size}_1983-2012.zarr"
    print(f"generating {store} ...", flush=True)
    generate(store, args.size)
    loop_points = min(args.loop_points, args.size * args.size)
    load_start = os.getloadavg()[0]
    print("compiling the kernels ...", flush=True)
    _warm()  # fills numba's on-disk cache, so that no child compiles
    runs: dict[str, list[dict]] = {m: [] for m in METHODS}
    for rep in range(args.repeat):
        for method in METHODS:
            r = _spawn(method, store, loop_points)
            print(f"[{rep + 1}/{args.repeat}] {method}: {r['seconds']:.2f} s, "
                  f"{r['points_per_s']:.0f} points/s", flush=True)
            runs[method].append(r)
    checks = {json.dumps(r["check"], sort_keys=True) for rs in runs.values() for r in rs}
    if len(checks) != 1:
        print(f"results differ between methods: {checks}", file=sys.stderr)
        return 1
    results = {}
    for method, rs in runs.items():
        mid = sorted(rs, key=lambda r: r["seconds"])[len(rs) // 2]
        results[method] = {**mid, "all_seconds": [r["seconds"] for r in rs]}
    summary = {
        "size": args.size, "days": 10958, "repeat": args.repeat,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
        "reference_points_per_s": REFERENCE_POINTS_PER_S,
        "check": json.loads(checks.pop()), "results": results,
        "load_average": [load_start, os.getloadavg()[0]],
    }
    summary["summary"] = summary_rows(summary)
    table = _table(summary)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    _write_atomic(RESULTS / "mhw.json", json.dumps(summary, indent=2) + "\n")
    _write_atomic(RESULTS / "mhw.md", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
