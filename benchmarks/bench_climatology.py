"""Monthly climatology + anomaly: oceandata (flox) against plain xarray, CDO and a raw read.

The data is a synthetic, deterministic daily SST grid (float32, ``sst`` in degC): a
latitude-dependent mean, a seasonal cycle of opposite phase in the two hemispheres, a
trend of 0.02 degC per year and Gaussian noise drawn from
``np.random.default_rng([seed, chunk])`` chunk by chunk, with a fixed land mask (NaN).
The default size is 0.5 degrees global (360 x 720) over 12 years (2000-2011, 4383 days):
4.5 GB of values. ``--small`` makes a 2-degree, 2-year version (0.05 GB) for quick checks.
It is generated once and cached under ``--data-dir`` (default ``var/bench/``, git-ignored)
in a child process that streams it chunk by chunk with dask (its peak RSS is reported):

- a Zarr v3 store written by xarray, chunked 30 days x the whole grid (31 MB chunks for
  the full size): the analysis reduces over time and keeps every grid point, so a chunk
  that holds whole fields lets each task reduce one month or two at once, with few tasks
  (147) and chunks large enough for efficient reads yet small enough for two workers to
  hold several at a time. The chunks are stored **uncompressed**: noisy float32 hardly
  compresses, and the comparison is then about the computation on the same bytes that CDO
  reads (no decompression cost on one side only);
- the same values as NetCDF for CDO, written from the Zarr store: **netCDF-3 64-bit
  offset** with ``time`` as the record dimension, so every daily field is one contiguous
  1 MB record, which is what CDO reads field by field. The same file converted to
  uncompressed netCDF-4 (``nccopy -k nc4``, one chunk per day) made ``cdo ymonmean`` no
  faster (7.7-7.9 s against 7.6 s) and use more memory (141 against 104 MiB). Land is
  ``_FillValue`` 1e20, which CDO treats as missing.

Each method runs in its own child process, interleaved and repeated (``--repeat``, the
median is reported), with the inputs read once beforehand so every method reads from
the OS page cache:

``oceandata``
    ``climatology(da, freq="month")`` written to Zarr, then ``anomaly(da, clim,
    freq="month")`` written to Zarr, with ``da = xr.open_zarr(store)["sst"]`` and dask's
    threaded scheduler with 2 workers. How it is called matters, and is tuned here:

    - the climatology passed to ``anomaly`` is the one just written, reopened lazily.
      The anomaly is then a second pass over the data, instead of one graph that would
      hold every input chunk in memory until the reduction is done; and it stays lazy (a
      computed, numpy climatology would be expanded onto the whole time axis in memory
      by ``clim.sel(month=...)``, 4.5 GB);
    - the climatology is written as one chunk (12 MB). flox returns one chunk per month,
      and ``clim.sel(month=...)`` then gives one-day chunks: the anomaly had 4383 chunks
      and the whole method took 63 s with a peak RSS of 2493 MiB;
    - the anomaly is rechunked to the input's 30-day chunks and computed and written 12
      chunks (360 days) at a time, by region writes. In one go, the pieces of the
      expanded climatology depend only on the small climatology, so the scheduler
      computes them ahead of the reads that consume them: 39 s with a peak RSS of 4960
      MiB, against 32 s and 1146 MiB in batches (single runs while writing this).
``oceandata (climatology only)``
    The first half of the above: one pass.
``xarray (no flox)``
    The same with ``xr.set_options(use_flox=False)``: ``da.groupby("time.month")
    .mean("time")`` then ``da.groupby("time.month") - clim``, written the same way (one
    chunk of climatology, anomaly in batches: the same tuning).
``CDO``
    ``cdo -O -P 1 ymonmean in.nc clim.nc`` then ``cdo -O -P 1 ymonsub in.nc clim.nc
    anom.nc`` (Debian package ``cdo``; rows skipped if it is not on ``PATH``). CDO runs
    with its default single thread: ``-P 2`` (two OpenMP threads, as dask has two
    workers) was measured no faster on the full data (ymonmean 7.9 s either way, ymonsub
    12.2 and 12.9 s with ``-P 1`` against 13.0 and 17.1 s with ``-P 2``): both
    operators stream one field at a time and are bound by reading and writing, and
    OpenMP threads only slow down when the two cores are shared.
``CDO ymonmean``
    The climatology alone.
``raw read``
    Every chunk of the Zarr array read once with ``zarr.open_array``, by two threads,
    into numpy and dropped: the read ceiling for the same bytes, with no xarray or dask.

*Seconds* are the wall time of the child process (interpreter start-up and imports
included, about 2 s where xarray is imported: what a user waits for); for CDO the two
commands are added. *Peak RSS* is the child's maximum resident set size from GNU
``/usr/bin/time -f %M`` (or ``os.wait4``'s ``ru_maxrss``); for CDO the larger of its two
commands.

Before any figure is reported, the outputs of the first repetition are read back and
compared: every method's climatology must agree with CDO's to 1e-4 degC (and have the
same land mask), and its anomaly on a few sampled days. Run from the repository root::

    python -m benchmarks climatology              # full size, median of 3
    python -m benchmarks climatology --small --repeat 1
    python benchmarks/bench_climatology.py --help

The Markdown table is printed and written to ``benchmarks/results/climatology.md`` and
the figures to ``benchmarks/results/climatology.json`` (both atomically). If a method
fails or disagrees, the table is printed and nothing is written (exit code 1).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks._common import (
    RSS_METHOD,
    MethodFailed,
    MethodSkipped,
    RunStats,
    _size,
    _write_atomic,
    run_child,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: this module run as a child (as a module, so that ``benchmarks._common`` imports)
SELF = (sys.executable, "-m", "benchmarks.bench_climatology")
VARIABLE = "sst"
FIRST_YEAR = 2000
TIME_UNITS = f"days since {FIRST_YEAR}-01-01 00:00:00"
FILL = 1e20
#: CDO's OpenMP threads (``-P``): 2 was measured no faster, see the module docstring.
CDO_THREADS = 1
DASK_WORKERS = 2
#: The anomalies are computed and written this many input chunks at a time (see above).
BATCH_CHUNKS = 12
#: Maximum absolute difference allowed against CDO's results, degC.
TOLERANCE = 1e-4
CDO_HINT = "install it with `apt-get install cdo` (Debian/Ubuntu)"


@dataclass(frozen=True)
class Spec:
    """Size of the synthetic data set.

    Attributes
    ----------
    name
        ``full`` or ``small``: the cache's folder name.
    years
        Number of years of daily data from 2000.
    step
        Grid spacing, degrees.
    time_chunk
        Days per Zarr chunk (every chunk holds whole fields).
    seed
        Seed of the noise (one generator per chunk: ``default_rng([seed, chunk])``).
    """

    name: str
    years: int
    step: float
    time_chunk: int = 30
    seed: int = 20260101

    @property
    def shape(self) -> tuple[int, int, int]:
        """(time, lat, lon)."""
        import pandas as pd

        days = len(pd.date_range(f"{FIRST_YEAR}-01-01", f"{FIRST_YEAR + self.years - 1}-12-31"))
        return days, round(180 / self.step), round(360 / self.step)

    @property
    def nbytes(self) -> int:
        """Bytes of the float32 values."""
        t, y, x = self.shape
        return 4 * t * y * x


SPECS = {"full": Spec("full", years=12, step=0.5), "small": Spec("small", years=2, step=2.0)}






# --------------------------------------------------------------------------- data


def _field(spec: Spec, start: int, stop: int, index: int):
    """Values of time steps ``start:stop`` (chunk number *index*) as float32 numpy."""
    import numpy as np

    _, ny, nx = spec.shape
    lat = np.deg2rad(-90 + spec.step / 2 + spec.step * np.arange(ny, dtype="f8"))[:, None]
    lon = np.deg2rad(spec.step / 2 + spec.step * np.arange(nx, dtype="f8"))[None, :]
    mean = 28.0 * np.cos(lat) ** 2 - 1.0 + 1.5 * np.sin(2 * lon) * np.cos(lat)
    amplitude = 4.0 * np.sin(lat)  # opposite phase in the two hemispheres
    land = (np.sin(3 * lon) * np.cos(2 * lat) > 0.55) | (lat < np.deg2rad(-78))
    days = np.arange(start, stop, dtype="f8")[:, None, None]
    season = np.cos(2 * np.pi * (days - 200.0) / 365.25)
    out = (mean + amplitude * season + 0.02 * days / 365.25).astype("f4")
    rng = np.random.default_rng([spec.seed, index])
    out += rng.standard_normal(out.shape, dtype="f4") * np.float32(0.4)
    out[:, land] = np.nan
    return out


def generate(spec: Spec, zarr_path: Path, nc_path: Path) -> dict[str, float]:
    """Write the Zarr store then the NetCDF file of *spec*, streaming with dask.

    Returns
    -------
    dict
        Seconds spent on each and the Zarr store's size in bytes.
    """
    import dask
    import dask.array as dsa
    import numpy as np
    import pandas as pd
    import xarray as xr

    nt, ny, nx = spec.shape
    starts = list(range(0, nt, spec.time_chunk))
    blocks = [dsa.from_delayed(dask.delayed(_field)(spec, s, min(s + spec.time_chunk, nt), i),
                               shape=(min(s + spec.time_chunk, nt) - s, ny, nx), dtype="f4")
              for i, s in enumerate(starts)]
    data = dsa.concatenate(blocks, axis=0)
    coords = {
        "time": pd.date_range(f"{FIRST_YEAR}-01-01", periods=nt, freq="D"),
        "lat": ("lat", -90 + spec.step / 2 + spec.step * np.arange(ny),
                {"units": "degrees_north", "standard_name": "latitude"}),
        "lon": ("lon", spec.step / 2 + spec.step * np.arange(nx),
                {"units": "degrees_east", "standard_name": "longitude"}),
    }
    ds = xr.Dataset({VARIABLE: (("time", "lat", "lon"), data, {
        "units": "degC", "standard_name": "sea_surface_temperature",
        "long_name": "synthetic daily sea surface temperature"})}, coords=coords,
        attrs={"title": "oceandata benchmark: synthetic daily SST",
               "source": f"benchmarks/bench_climatology.py, spec {asdict(spec)}"})
    ds.time.encoding.update(units=TIME_UNITS, calendar="standard", dtype="i4")
    with dask.config.set(scheduler="threads", num_workers=DASK_WORKERS):
        start = time.perf_counter()
        ds.to_zarr(zarr_path, mode="w", zarr_format=3, consolidated=True,
                   encoding={VARIABLE: {"compressors": None,
                                        "chunks": (spec.time_chunk, ny, nx)}})
        zarr_seconds = time.perf_counter() - start
        start = time.perf_counter()
        src = xr.open_zarr(zarr_path)
        tmp = nc_path.with_name(f".{nc_path.name}.tmp")
        src.to_netcdf(tmp, format="NETCDF3_64BIT", unlimited_dims=["time"],
                      encoding={VARIABLE: {"_FillValue": np.float32(FILL)},
                                "time": {"units": TIME_UNITS, "calendar": "standard",
                                         "dtype": "i4"}})
        os.replace(tmp, nc_path)
        nc_seconds = time.perf_counter() - start
    return {"zarr_seconds": zarr_seconds, "netcdf_seconds": nc_seconds,
            "zarr_bytes": _size(zarr_path), "netcdf_bytes": nc_path.stat().st_size}




def ensure_data(spec: Spec, data_dir: Path) -> dict:
    """Generate the data of *spec* under *data_dir* unless cached; return its description.

    The cache is valid when ``done.json`` exists and records the same spec; it is
    written last, so an interrupted generation is redone.
    """
    folder = data_dir / f"climatology-{spec.name}"
    done = folder / "done.json"
    if done.exists():
        info = json.loads(done.read_text())
        if info.get("spec") == asdict(spec):
            return info
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    zarr_path, nc_path = folder / "sst.zarr", folder / "sst.nc"
    print(f"generating {spec.nbytes / 1e9:.2f} GB of data in {folder} ...", file=sys.stderr)
    child = run_child([*SELF, "--generate", spec.name, str(zarr_path), str(nc_path)],
                      cwd=ROOT)
    info = {"spec": asdict(spec), "zarr": str(zarr_path), "netcdf": str(nc_path),
            "generate_seconds": child.seconds, "generate_peak_rss_mib": child.peak_rss_mib,
            **json.loads(child.stdout.strip().splitlines()[-1])}
    _write_atomic(done, json.dumps(info, indent=1))
    print(f"generated in {child.seconds:.0f} s, peak RSS {child.peak_rss_mib:.0f} MiB",
          file=sys.stderr)
    return info


# --------------------------------------------------------------------------- children










# --------------------------------------------------------------------------- cases


def _write_zarr(da, path: Path, batch: int | None = None) -> None:
    """Write *da* as a Zarr v3 store, uncompressed, in its dask chunks.

    With *batch*, the time axis is computed and written *batch* steps at a time (region
    writes into the store created first), which bounds the memory of each computation.
    """
    da = da.copy()
    da.encoding = {"compressors": None}
    ds = da.to_dataset(name=VARIABLE)
    if batch is None:
        ds.to_zarr(path, mode="w", zarr_format=3, consolidated=True)
        return
    ds.to_zarr(path, mode="w", zarr_format=3, consolidated=True, compute=False)
    fixed = [name for name in ds.variables if "time" not in ds[name].dims]
    nt = ds.sizes["time"]
    for start in range(0, nt, batch):
        region = slice(start, min(start + batch, nt))
        ds.isel(time=region).drop_vars(fixed).to_zarr(path, region={"time": region})


def run_case(method: str, store: str, out: str) -> dict[str, float]:
    """Do one Python method in this process (the ``--case`` child); return its timings.

    Parameters
    ----------
    method
        ``oceandata``, ``oceandata-clim``, ``xarray`` or ``raw``.
    store
        The input Zarr store.
    out
        Folder for ``clim.zarr`` and ``anom.zarr``.
    """
    if method == "raw":
        from concurrent.futures import ThreadPoolExecutor

        import zarr

        arr = zarr.open_array(f"{store}/{VARIABLE}", mode="r")
        step = arr.chunks[0]
        start = time.perf_counter()
        with ThreadPoolExecutor(DASK_WORKERS) as pool:
            nbytes = sum(pool.map(lambda i: arr[i:i + step].nbytes,
                                  range(0, arr.shape[0], step)))
        return {"work_seconds": time.perf_counter() - start, "bytes_read": nbytes}

    import dask
    import xarray as xr

    dask.config.set(scheduler="threads", num_workers=DASK_WORKERS)
    clim_path, anom_path = Path(out) / "clim.zarr", Path(out) / "anom.zarr"
    start = time.perf_counter()
    da = xr.open_zarr(store)[VARIABLE]
    chunks = {"time": da.chunksizes["time"]}
    batch = BATCH_CHUNKS * da.chunksizes["time"][0]
    if method in ("oceandata", "oceandata-clim"):
        from oceandata.analysis import anomaly, climatology

        _write_zarr(climatology(da, freq="month").chunk(month=-1), clim_path)
        if method == "oceandata":
            clim = xr.open_zarr(clim_path)[VARIABLE]
            _write_zarr(anomaly(da, clim, freq="month").chunk(chunks), anom_path, batch)
    elif method == "xarray":
        with xr.set_options(use_flox=False):
            _write_zarr(da.groupby("time.month").mean("time").chunk(month=-1), clim_path)
            clim = xr.open_zarr(clim_path)[VARIABLE]
            anom = (da.groupby("time.month") - clim).drop_vars("month")
            _write_zarr(anom.chunk(chunks), anom_path, batch)
    else:
        raise ValueError(f"unknown method {method!r}")
    return {"work_seconds": time.perf_counter() - start}


@dataclass
class Run:
    """One run of one method: wall seconds, peak RSS (MiB), outputs (clim, anom or None)."""

    seconds: float
    peak_rss_mib: float
    clim: str | None = None
    anom: str | None = None


def _python(method: str) -> Callable[[dict, Path], Run]:
    def run(data: dict, out: Path) -> Run:
        try:
            child = run_child([*SELF, "--case", method, data["zarr"], str(out)], cwd=ROOT)
        except MethodFailed as exc:
            raise MethodFailed(f"{method} failed: {exc}") from None
        clim = out / "clim.zarr"
        anom = out / "anom.zarr"
        return Run(child.seconds, child.peak_rss_mib,
                   str(clim) if clim.exists() else None, str(anom) if anom.exists() else None)

    return run


def _cdo(with_anomaly: bool) -> Callable[[dict, Path], Run]:
    def run(data: dict, out: Path) -> Run:
        exe = shutil.which("cdo")
        if exe is None:
            raise MethodSkipped(f"cdo not found on PATH; {CDO_HINT}")
        clim, anom = out / "clim.nc", out / "anom.nc"
        steps = [["ymonmean", data["netcdf"], str(clim)]]
        if with_anomaly:
            steps.append(["ymonsub", data["netcdf"], str(clim), str(anom)])
        seconds = peak = 0.0
        for step in steps:
            try:
                child = run_child([exe, "-O", "-s", "-P", str(CDO_THREADS), *step])
            except MethodFailed as exc:
                raise MethodFailed(f"cdo {step[0]} failed: {exc}") from None
            seconds += child.seconds
            peak = max(peak, child.peak_rss_mib)
        return Run(seconds, peak, str(clim), str(anom) if with_anomaly else None)

    return run


#: name -> (function, what it runs, as shown in the report)
METHODS: dict[str, tuple[Callable[[dict, Path], Run], str]] = {
    "oceandata": (_python("oceandata"),
                  "climatology(da, 'month') -> to_zarr; anomaly(da, clim, 'month') -> to_zarr"),
    "xarray (no flox)": (_python("xarray"),
                         "use_flox=False: da.groupby('time.month').mean('time'), "
                         "da.groupby('time.month') - clim, each -> to_zarr"),
    "CDO": (_cdo(True), f"cdo -O -P {CDO_THREADS} ymonmean in.nc clim.nc; "
                        f"cdo -O -P {CDO_THREADS} ymonsub in.nc clim.nc anom.nc"),
    "raw read": (_python("raw"), "zarr.open_array, every chunk read once (2 threads)"),
    "oceandata (climatology only)": (_python("oceandata-clim"),
                                     "climatology(da, 'month') -> to_zarr"),
    "CDO ymonmean": (_cdo(False), f"cdo -O -P {CDO_THREADS} ymonmean in.nc clim.nc"),
}


@dataclass
class Result(RunStats):
    """Every run of one method, or why it has none."""

    method: str
    command: str
    runs: list[Run] = field(default_factory=list)
    skipped: str | None = None
    failed: str | None = None
    check: dict | None = None

    @property
    def ok(self) -> bool:
        """Ran, and did not fail."""
        return bool(self.runs) and not self.failed and not self.skipped


# --------------------------------------------------------------------------- checking


def _open_clim(path: str):
    """A climatology from Zarr (dim ``month``) or CDO's NetCDF (12 time steps)."""
    import xarray as xr

    if path.endswith(".zarr"):
        da = xr.open_zarr(path)[VARIABLE]
        return da.transpose("month", "lat", "lon").sortby("month").values
    with xr.open_dataset(path) as ds:
        da = ds[VARIABLE].load()
    order = da["time"].dt.month.values.argsort()
    return da.values[order]


def _open_anom(path: str, days: Sequence[int]):
    import xarray as xr

    if path.endswith(".zarr"):
        return xr.open_zarr(path)[VARIABLE].isel(time=list(days)).values
    with xr.open_dataset(path) as ds:
        return ds[VARIABLE].isel(time=list(days)).values


def check(reference: dict[str, str], others: dict[str, dict[str, str]]) -> dict[str, dict]:
    """Compare every method's outputs with the reference's (CDO's).

    Parameters
    ----------
    reference
        ``{"clim": path, "anom": path}`` of the reference method.
    others
        Method name -> the same for that method (``anom`` may be missing).

    Returns
    -------
    dict
        Method -> ``clim_max_abs_diff``, ``anom_max_abs_diff`` (on the sampled days),
        ``same_mask`` and ``ok``.
    """
    import numpy as np

    ref_clim = _open_clim(reference["clim"])
    nt = None
    out: dict[str, dict] = {}
    days: list[int] = []
    ref_anom = None
    if reference.get("anom"):
        import xarray as xr

        with xr.open_dataset(reference["anom"]) as ds:
            nt = ds.sizes["time"]
        days = sorted({0, 45, nt // 3, nt // 2, (2 * nt) // 3, nt - 1})
        ref_anom = _open_anom(reference["anom"], days)

    def compare(a, b) -> tuple[float, bool]:
        mask_a, mask_b = np.isnan(a), np.isnan(b)
        same = bool((mask_a == mask_b).all()) and a.shape == b.shape
        diff = float(np.nanmax(np.abs(a.astype("f8") - b.astype("f8")))) if same else np.inf
        return diff, same

    for method, paths in others.items():
        row: dict = {}
        row["clim_max_abs_diff"], same_clim = compare(_open_clim(paths["clim"]), ref_clim)
        ok = same_clim and row["clim_max_abs_diff"] <= TOLERANCE
        if paths.get("anom") and ref_anom is not None:
            row["anom_days"] = days
            row["anom_max_abs_diff"], same_anom = compare(_open_anom(paths["anom"], days),
                                                          ref_anom)
            ok = ok and same_anom and row["anom_max_abs_diff"] <= TOLERANCE
            same_clim = same_clim and same_anom
        row["same_mask"] = same_clim
        row["ok"] = ok
        out[method] = row
    return out


def _check_child(reference: dict, others: dict) -> dict[str, dict]:
    proc = subprocess.run([*SELF, "--check",
                           json.dumps({"reference": reference, "others": others})],
                          capture_output=True, text=True, env=os.environ, cwd=ROOT)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise SystemExit(f"cannot compare the outputs: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- report


def _ratio(a: Result | None, b: Result | None) -> float | None:
    return a.seconds / b.seconds if a and b and a.ok and b.ok else None


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}" if x < 10 else f"{x:.1f}"


def summarise(results: list[Result], data: dict, repeat: int) -> dict:
    """Ratios and targets, as stored in the JSON and shown in the table."""
    by = {r.method: r for r in results}
    ocean, xr_, cdo, raw = (by.get(m) for m in ("oceandata", "xarray (no flox)", "CDO",
                                                 "raw read"))
    ocean_clim, cdo_clim = by.get("oceandata (climatology only)"), by.get("CDO ymonmean")
    ratios = {
        "cdo_over_oceandata": _ratio(cdo, ocean),
        "xarray_over_oceandata": _ratio(xr_, ocean),
        "oceandata_over_raw": _ratio(ocean, raw),
        "cdo_ymonmean_over_oceandata_climatology": _ratio(cdo_clim, ocean_clim),
        "oceandata_climatology_over_raw": _ratio(ocean_clim, raw),
    }

    def target(value: float | None, goal: str, passed: Callable[[float], bool]) -> dict:
        return {"value": value, "goal": goal,
                "met": None if value is None else bool(passed(value))}

    peak = ocean.peak_rss_mib if ocean and ocean.ok else None
    targets = {
        "oceandata >= 2x faster than CDO": target(ratios["cdo_over_oceandata"], ">= 2",
                                                   lambda v: v >= 2),
        "oceandata >= 2x faster than plain xarray": target(
            ratios["xarray_over_oceandata"], ">= 2", lambda v: v >= 2),
        "oceandata <= 1.5x the raw read": target(ratios["oceandata_over_raw"], "<= 1.5",
                                                 lambda v: v <= 1.5),
        "oceandata peak memory < 2 GiB": target(peak, "< 2048 MiB", lambda v: v < 2048),
    }
    return {
        "machine": {"arch": platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "data": data, "repeat": repeat, "dask_workers": DASK_WORKERS,
        "cdo_threads": CDO_THREADS, "rss_method": RSS_METHOD, "tolerance_degC": TOLERANCE,
        "methods": [{"method": r.method, "command": r.command,
                     "seconds_median": r.seconds if r.ok else None,
                     "seconds_runs": [x.seconds for x in r.runs],
                     "peak_rss_mib": r.peak_rss_mib if r.ok else None,
                     "skipped": r.skipped, "failed": r.failed, "check": r.check}
                    for r in results],
        "ratios": ratios, "targets": targets,
    }


def _table(summary: dict) -> str:
    data, spec = summary["data"], summary["data"]["spec"]
    gb = data["zarr_bytes"] / 1e9
    t, y, x = SPECS[spec["name"]].shape
    by = {m["method"]: m for m in summary["methods"]}
    ref = by.get("oceandata", {}).get("seconds_median")
    m = summary["machine"]
    lines = [
        "# Monthly climatology + anomaly: oceandata vs plain xarray vs CDO vs raw read",
        "",
        f"Machine: {m['arch']}, {m['cores']} cores, Python {m['python']}. Data: synthetic "
        f"daily SST, {spec['years']} years x {y} x {x} ({spec['step']} deg), float32, "
        f"{t} days: {gb:.2f} GB in an uncompressed Zarr v3 store (chunks "
        f"{spec['time_chunk']} days x whole grid) and the same values in a netCDF-3 64-bit "
        f"offset file for CDO ({data['netcdf_bytes'] / 1e9:.2f} GB), both read from the OS "
        f"page cache. Median of {summary['repeat']} interleaved run"
        f"{'s' if summary['repeat'] != 1 else ''}, each in its own process; dask threaded "
        f"scheduler with {summary['dask_workers']} workers, CDO with "
        f"`-P {summary['cdo_threads']}`.",
        "",
        "Seconds are the child process's wall time (start-up and imports included; CDO: "
        f"both commands). Peak RSS is {summary['rss_method']}. GB/s is data GB over "
        "seconds (the full methods read the data twice and write it once). Every "
        "climatology matched CDO's within "
        f"{summary['tolerance_degC']:g} degC with the same land mask, and every anomaly "
        "on sampled days, before being reported.",
        "",
        "| method | seconds | x oceandata | GB/s | peak RSS MiB | max abs diff vs CDO "
        "(clim / anom) | what runs |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in summary["methods"]:
        if r["seconds_median"] is None:
            why = f"skipped: {r['skipped']}" if r["skipped"] else f"FAILED: {r['failed']}"
            why = why if len(why) <= 160 else why[:157] + "..."
            lines.append(f"| {r['method']} | {why} | | | | | {r['command']} |")
            continue
        s = r["seconds_median"]
        chk = r["check"] or {}
        diff = ("reference" if r["method"].startswith("CDO") else
                " / ".join(f"{chk[k]:.1e}" for k in ("clim_max_abs_diff", "anom_max_abs_diff")
                           if k in chk) or "n/a")
        lines.append(f"| {r['method']} | {s:.1f} | {_fmt(s / ref) if ref else 'n/a'} | "
                     f"{gb / s:.2f} | {r['peak_rss_mib']:.0f} | {diff} | {r['command']} |")
    ratios = summary["ratios"]
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {k.replace('_over_', ' / ').replace('_', ' ')} | {_fmt(v)} |"
              for k, v in ratios.items()]
    lines += ["", "| target | goal | measured | met |", "|---|---|---:|---|"]
    for name, tg in summary["targets"].items():
        met = "n/a" if tg["met"] is None else "yes" if tg["met"] else "**no**"
        lines.append(f"| {name} | {tg['goal']} | {_fmt(tg['value'])} | {met} |")
    lines += ["", f"Data generated once in {data['generate_seconds']:.0f} s with a peak RSS of "
              f"{data['generate_peak_rss_mib']:.0f} MiB (streamed chunk by chunk)."]
    lines += _notes(summary)
    return "\n".join(lines) + "\n"


def _notes(summary: dict) -> list[str]:
    """Why the targets that are not met are not (the causes found while profiling)."""
    targets = summary["targets"]
    by = {m["method"]: m["seconds_median"] for m in summary["methods"]}
    missed = [name for name, tg in targets.items() if tg["met"] is False]
    if not missed:
        return []
    out = ["", "## Why targets are missed", ""]
    speed = [n for n in missed if "faster" in n]
    if speed:
        clim, ymonmean = by.get("oceandata (climatology only)"), by.get("CDO ymonmean")
        pair = (f" (the climatology alone: {clim:.1f} s against {ymonmean:.1f} s for "
                "`cdo ymonmean`)" if clim and ymonmean else "")
        out += [
            f"- Speed{pair}. `climatology` reduces with flox's `flox` engine (each 30-day "
            "chunk sorted by month, then `reduceat`) and `anomaly` subtracts the 12 monthly "
            "fields chunk by chunk (`np.take` of the month of each day, one task per "
            "chunk). The two passes are bound by the per-chunk NaN-aware sums and the "
            "float32 writes on 2 threads; CDO streams one field at a time in compiled "
            "code with one thread. Plain xarray without flox averages each month's days "
            "as slices along time, contiguous in memory here.",
        ]
    if any("raw read" in n for n in missed):
        clim, raw = by.get("oceandata (climatology only)"), by.get("raw read")
        one = f" The climatology alone, one pass, is {clim / raw:.1f}x the raw read." \
            if clim and raw else ""
        out += [
            "- Raw read. An anomaly needs the finished climatology, so the pipeline reads "
            "the data twice and writes as many bytes once: its floor is about three raw "
            "reads, not one, and the 1.5x target cannot hold for it as stated. Most of "
            f"the gap is computation, not input/output (see above).{one}",
        ]
    if any("memory" in n for n in missed):
        out += [
            "- Memory. See the module docstring of `benchmarks/bench_climatology.py`: "
            "without writing the anomaly in batches the peak is about 4.8 GiB.",
        ]
    return out




def _warm(paths: Sequence[str]) -> None:
    """Read every file under *paths* once, so every method reads from the page cache."""
    for top in paths:
        files = [Path(top)] if Path(top).is_file() else [
            Path(root) / n for root, _, names in os.walk(top) for n in names]
        for f in files:
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return the exit code (1 if a method failed or disagreed)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks climatology",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per method (median)")
    parser.add_argument("--small", action="store_true",
                        help="2 years at 2 degrees (0.05 GB) instead of 12 years at 0.5")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "var" / "bench",
                        help="cache of the generated data (default: var/bench/)")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
                        metavar="METHOD", help=f"subset of: {', '.join(METHODS)}")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "climatology.md",
                        help="Markdown table; the JSON goes next to it (.json)")
    parser.add_argument("--generate", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--case", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--check", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate:
        name, zarr_path, nc_path = args.generate
        print(json.dumps(generate(SPECS[name], Path(zarr_path), Path(nc_path))))
        return 0
    if args.case:
        print(json.dumps(run_case(*args.case)))
        return 0
    if args.check:
        spec = json.loads(args.check)
        print(json.dumps(check(spec["reference"], spec["others"])))
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    spec = SPECS["small" if args.small else "full"]
    data_dir = args.data_dir.resolve()
    try:
        data = ensure_data(spec, data_dir)
    except MethodFailed as exc:
        print(f"cannot generate the data: {exc}", file=sys.stderr)
        return 1
    _warm([data["zarr"], data["netcdf"]])
    runs_dir = data_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)

    results = [Result(name, METHODS[name][1]) for name in args.methods]
    first: dict[str, tuple[Path, Run]] = {}
    for rep in range(args.repeat):
        for result in results:
            if result.skipped or result.failed:
                continue
            out = Path(tempfile.mkdtemp(prefix="bench_clim_", dir=runs_dir))
            keep = False
            try:
                print(f"[{rep + 1}/{args.repeat}] {result.method} ...", file=sys.stderr,
                      end=" ", flush=True)
                run = METHODS[result.method][0](data, out)
                print(f"{run.seconds:.1f} s, {run.peak_rss_mib:.0f} MiB", file=sys.stderr)
                result.runs.append(run)
                if rep == 0 and run.clim:
                    first[result.method] = (out, run)
                    keep = True
            except MethodSkipped as exc:
                result.skipped = str(exc)
                print(f"skipped: {exc}", file=sys.stderr)
            except MethodFailed as exc:
                result.failed = str(exc)
                print(f"FAILED: {exc}", file=sys.stderr)
            finally:
                if not keep:
                    shutil.rmtree(out, ignore_errors=True)
        if rep == 0:
            _verify(results, first)
            for out, _ in first.values():
                shutil.rmtree(out, ignore_errors=True)

    summary = summarise(results, data, args.repeat)
    text = _table(summary)
    print(text)
    if any(r.failed for r in results):
        print(f"not written to {args.output}: a method failed (see above)", file=sys.stderr)
        return 1
    _write_atomic(args.output.with_suffix(".json"), json.dumps(summary, indent=1) + "\n")
    _write_atomic(args.output, text)
    print(f"written to {args.output} and {args.output.with_suffix('.json')}", file=sys.stderr)
    return 0


def _verify(results: list[Result], first: dict[str, tuple[Path, Run]]) -> None:
    """Check the first outputs against CDO's (or oceandata's if CDO did not run).

    A method that disagrees is marked failed.
    """
    ref_name = "CDO" if "CDO" in first else "CDO ymonmean" if "CDO ymonmean" in first \
        else "oceandata" if "oceandata" in first else None
    if ref_name is None:
        return
    ref_run = first[ref_name][1]
    reference = {"clim": ref_run.clim, "anom": ref_run.anom}
    others = {m: {"clim": r.clim, "anom": r.anom} for m, (_, r) in first.items()
              if m != ref_name}
    if not others:
        return
    checks = _check_child(reference, others)
    for result in results:
        if result.method in checks:
            result.check = checks[result.method]
            if not result.check["ok"]:
                result.failed = f"differs from {ref_name}: {result.check}"
                print(f"{result.method}: {result.failed}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
