"""Monthly climatology + anomaly: oceandata against plain xarray, CDO and a raw read.

The data is a synthetic, deterministic daily SST grid (float32, ``sst`` in degC): a
latitude-dependent mean, a seasonal cycle of opposite phase in the two hemispheres, a
trend of 0.02 degC per year and Gaussian noise drawn from
``np.random.default_rng([seed, chunk])`` chunk by chunk, with a fixed land mask (NaN).
The default size is 0.5 degrees global (360 x 720) over 12 years (2000-2011, 4383 days):
4.5 GB of values. ``--small`` makes a 2-degree, 2-year version (0.05 GB) for quick checks.
It is generated once and cached under ``--data-dir`` (default ``var/bench/``, git-ignored)
in a child process that streams it chunk by chunk with dask (its peak RSS is reported).
The issue's three inputs (issue 19, target 1) are all there:

- a Zarr v3 store written by xarray, chunked 30 days x the whole grid (31 MB chunks for
  the full size), stored **uncompressed**: the same bytes CDO reads. The analysis
  reduces over time and keeps every grid point, so a chunk of whole fields lets each
  task reduce one month or two at once, with few tasks (147);
- the same store with zarr's default codecs (**zstd**, level 0; 3.1 GB): the layout the
  platform stores, copied from the first one (``--compress`` child);
- the same values as NetCDF for CDO, written from the Zarr store: **netCDF-3 64-bit
  offset** with ``time`` as the record dimension, so every daily field is one contiguous
  1 MB record, which is what CDO reads field by field. (The same file converted to
  uncompressed netCDF-4 made ``cdo ymonmean`` no faster and use more memory.) Land is
  ``_FillValue`` 1e20, which CDO treats as missing. oceandata also reads this file
  (``oceandata.open_dataset(path, chunks={"time": 30})``).

Each method runs in its own child process, interleaved and repeated (``--repeat``, the
median is reported), after ``sync`` (so a method does not pay for the previous one's
dirty pages), with the inputs read once beforehand so every method reads from the OS
page cache. Outputs are written uncompressed (as CDO writes netCDF-3) into a fresh folder
under ``--data-dir``/runs, removed after the run:

``oceandata`` (``, zstd``, ``, CDO's NetCDF``: the other inputs)
    ``clim = climatology(da, freq="month").compute()``, written to Zarr, then
    ``anomaly(da, clim, freq="month")`` written to Zarr in **one** computation, with
    dask's threaded scheduler and 2 workers. The climatology goes through the compiled
    kernels of ``oceandata/analysis/_kernels.py`` (float64 sums and counts of the groups
    present in each chunk, combined in a tree); the anomaly subtracts the 12 fields
    chunk by chunk in one fused pass, the table being a constant of every task, so
    nothing is scheduled ahead of the reads and no batching is needed (the flox code
    before it needed 360-day batches of region writes to stay under 1.2 GB).
``oceandata (climatology only)`` (and ``, zstd``)
    The first half of the above: one pass, compared with the raw read of the same store.
``xarray (no flox)`` (and ``, zstd``)
    ``xr.set_options(use_flox=False)``: ``da.groupby("time.month").mean("time")`` then
    ``da.groupby("time.month") - clim``, tuned: the climatology written as one chunk and
    reopened lazily, the anomaly rechunked to 30 days and written 360 days at a time
    (without that, 4383 one-day chunks or a 5 GB peak).
``CDO``
    ``cdo -O -P 1 ymonmean in.nc clim.nc`` then ``cdo -O -P 1 ymonsub in.nc clim.nc
    anom.nc`` (Debian package ``cdo``; rows skipped if it is not on ``PATH``). CDO runs
    with its default single thread: ``-P 2`` was measured no faster on the full data:
    both operators stream one field at a time and are bound by reading and writing.
``CDO ymonmean``
    The climatology alone.
``raw read`` (and ``, zstd``)
    Every chunk of the Zarr array read once with ``zarr.open_array``, by two threads,
    into numpy and dropped: the read ceiling for the same bytes, with no xarray or dask.
``CDO, outputs on tmpfs`` and ``oceandata, outputs on tmpfs``
    Context, not an issue target: the same pair with both methods writing their outputs
    to ``/dev/shm``. The 4.5 GB anomaly written to new files on this machine's disk is
    bound by the kernel's writeback (``vm.dirty_ratio`` of 24 GB is about the output's
    size), which costs both sides the same seconds and swings by +-30 % with whatever
    else the machine writes; these two rows show the ratio without that floor. The
    issue's rows (outputs on disk, as a user writes them) are reported unchanged.

*Seconds* are the wall time of the child process (interpreter start-up and imports
included, about 2 s where xarray is imported: what a user waits for); for CDO the two
commands are added. *Peak RSS* is the child's maximum resident set size from GNU
``/usr/bin/time -f %M`` (or ``os.wait4``'s ``ru_maxrss``); for CDO the larger of its two
commands.

Before any figure is reported, the outputs of each method's first run are read back and
compared with CDO's (the first method; oceandata's if CDO is missing): the climatology
within 1e-5 degC (the issue's tolerance) with the same land mask, and the anomaly on a
few sampled days. Run from the repository root::

    python -m benchmarks climatology              # full size, median of 3
    python -m benchmarks climatology --small --repeat 1
    python benchmarks/bench_climatology.py --help

The Markdown table is printed and written to ``benchmarks/results/climatology.md`` and
the figures to ``benchmarks/results/climatology.json`` (both atomically), whose
``summary`` rows are one per target: oceandata vs CDO for each of the three inputs, vs
plain xarray for the two Zarr layouts, the climatology alone vs the raw read for both
layouts, the peak memory of the pair, and the tmpfs context row. If a method fails or
disagrees, the table is printed and nothing is written (exit code 1).
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
#: Days per chunk of the stores, and of the dask array on CDO's NetCDF file.
TIME_CHUNK = 30
DASK_WORKERS = 2
#: The anomalies are computed and written this many input chunks at a time (see above).
BATCH_CHUNKS = 12
#: Maximum absolute difference allowed against CDO's results, degC (the issue's 1e-5).
TOLERANCE = 1e-5
#: Peak memory goal of the clim+anomaly pipeline: under 1 GB (10**9 bytes), in MiB.
PEAK_GOAL_MIB = 1e9 / 2**20
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
    time_chunk: int = TIME_CHUNK
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


def compress(zarr_path: Path, zstd_path: Path) -> dict[str, float]:
    """Copy the uncompressed store to *zstd_path* with zarr's default codecs (zstd).

    This is the layout the platform stores (``oceandata.ingest`` keeps zarr's default
    compression): same chunks, same values.
    """
    import dask
    import xarray as xr

    with dask.config.set(scheduler="threads", num_workers=DASK_WORKERS):
        start = time.perf_counter()
        ds = xr.open_zarr(zarr_path)
        ds[VARIABLE].encoding = {"chunks": ds[VARIABLE].data.chunksize}  # default codecs
        tmp = zstd_path.with_name(f".{zstd_path.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=True)
        shutil.rmtree(zstd_path, ignore_errors=True)
        os.replace(tmp, zstd_path)
    return {"zstd_seconds": time.perf_counter() - start, "zstd_bytes": _size(zstd_path)}




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
            return _ensure_zstd(info, folder)
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
    return _ensure_zstd(info, folder)


def _ensure_zstd(info: dict, folder: Path) -> dict:
    """Add the zstd copy of the store (and ``zarr_zstd`` to ``done.json``) if missing."""
    if info.get("zarr_zstd") and Path(info["zarr_zstd"]).exists():
        return info
    zstd_path = folder / "sst_zstd.zarr"
    print(f"compressing the store into {zstd_path} ...", file=sys.stderr)
    child = run_child([*SELF, "--compress", info["zarr"], str(zstd_path)], cwd=ROOT)
    info = {**info, "zarr_zstd": str(zstd_path),
            **json.loads(child.stdout.strip().splitlines()[-1])}
    _write_atomic(folder / "done.json", json.dumps(info, indent=1))
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


def _open_input(store: str):
    """The ``sst`` variable of a Zarr store (xarray) or of CDO's NetCDF file (oceandata)."""
    import xarray as xr

    if store.endswith(".nc"):  # the file CDO reads, opened the platform's way
        import oceandata

        return oceandata.open_dataset(store, chunks={"time": TIME_CHUNK})[VARIABLE]
    return xr.open_zarr(store)[VARIABLE]


def run_case(method: str, store: str, out: str) -> dict[str, float]:
    """Do one Python method in this process (the ``--case`` child); return its timings.

    Parameters
    ----------
    method
        ``oceandata``, ``oceandata-clim``, ``xarray`` or ``raw``.
    store
        The input: a Zarr store (uncompressed or zstd), or the NetCDF file CDO reads.
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
    da = _open_input(store)
    chunks = {"time": da.chunksizes["time"]}
    if method in ("oceandata", "oceandata-clim"):
        from oceandata.analysis import anomaly, climatology

        clim = climatology(da, freq="month")
        if method == "oceandata-clim":
            _write_zarr(clim, clim_path)
        else:  # the climatology (12 fields) computed once, written, then the anomaly
            clim = clim.compute()
            _write_zarr(clim, clim_path)
            # one computation, no batches: each task subtracts the (constant) table
            _write_zarr(anomaly(da, clim, freq="month"), anom_path)
    elif method == "xarray":
        batch = BATCH_CHUNKS * da.chunksizes["time"][0]
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


#: Inputs of the Python methods: key of the data description -> label in method names.
LAYOUTS = {"zarr": "Zarr uncompressed", "zarr_zstd": "Zarr zstd", "netcdf": "CDO's NetCDF"}
#: Folder on a RAM file system for the methods that write there (same target for both).
TMPFS = Path("/dev/shm")


def _python(method: str, layout: str = "zarr") -> Callable[[dict, Path], Run]:
    def run(data: dict, out: Path) -> Run:
        try:
            child = run_child([*SELF, "--case", method, data[layout], str(out)], cwd=ROOT)
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


_PAIR = "climatology(da, 'month') -> to_zarr; anomaly(da, clim, 'month') -> to_zarr"
_XR = ("use_flox=False: da.groupby('time.month').mean('time'), "
       "da.groupby('time.month') - clim, each -> to_zarr")
_CDO = (f"cdo -O -P {CDO_THREADS} ymonmean in.nc clim.nc; "
        f"cdo -O -P {CDO_THREADS} ymonsub in.nc clim.nc anom.nc")
#: name -> (function, what it runs, as shown in the report). CDO comes first: its
#: outputs are the reference every other method is checked against.
METHODS: dict[str, tuple[Callable[[dict, Path], Run], str]] = {
    "CDO": (_cdo(True), _CDO),
    "CDO ymonmean": (_cdo(False), f"cdo -O -P {CDO_THREADS} ymonmean in.nc clim.nc"),
    "raw read": (_python("raw"), "zarr.open_array, every chunk read once (2 threads)"),
    "raw read, zstd": (_python("raw", "zarr_zstd"), "the same on the zstd store"),
    "oceandata": (_python("oceandata"), _PAIR),
    "oceandata, zstd": (_python("oceandata", "zarr_zstd"), f"{_PAIR} (zstd store)"),
    "oceandata, CDO's NetCDF": (_python("oceandata", "netcdf"),
                                "oceandata.open_dataset(in.nc, chunks={'time': 30}), "
                                "then the same"),
    "oceandata (climatology only)": (_python("oceandata-clim"),
                                     "climatology(da, 'month') -> to_zarr"),
    "oceandata (climatology only), zstd": (_python("oceandata-clim", "zarr_zstd"),
                                           "the same on the zstd store"),
    "xarray (no flox)": (_python("xarray"), _XR),
    "xarray (no flox), zstd": (_python("xarray", "zarr_zstd"), f"{_XR} (zstd store)"),
    "CDO, outputs on tmpfs": (_cdo(True), f"{_CDO}, clim.nc and anom.nc on {TMPFS}"),
    "oceandata, outputs on tmpfs": (_python("oceandata"),
                                    f"{_PAIR}, clim.zarr and anom.zarr on {TMPFS}"),
}
#: Methods whose outputs go to :data:`TMPFS` (RAM) instead of the data folder's disk.
ON_TMPFS = ("CDO, outputs on tmpfs", "oceandata, outputs on tmpfs")


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


def summarise(results: list[Result], data: dict, repeat: int,
              reference: str | None = None) -> dict:
    """Ratios, targets and the ``summary`` rows, as stored in the JSON and shown."""
    by = {r.method: r for r in results}

    def ratio(a: str, b: str) -> float | None:
        return _ratio(by.get(a), by.get(b))

    ratios = {
        "cdo_over_oceandata": ratio("CDO", "oceandata"),
        "cdo_over_oceandata_zstd": ratio("CDO", "oceandata, zstd"),
        "cdo_over_oceandata_netcdf": ratio("CDO", "oceandata, CDO's NetCDF"),
        "xarray_over_oceandata": ratio("xarray (no flox)", "oceandata"),
        "xarray_zstd_over_oceandata_zstd": ratio("xarray (no flox), zstd", "oceandata, zstd"),
        "oceandata_climatology_over_raw": ratio("oceandata (climatology only)", "raw read"),
        "oceandata_climatology_zstd_over_raw_zstd": ratio(
            "oceandata (climatology only), zstd", "raw read, zstd"),
        "cdo_ymonmean_over_oceandata_climatology": ratio("CDO ymonmean",
                                                         "oceandata (climatology only)"),
        "oceandata_over_raw": ratio("oceandata", "raw read"),
        "cdo_tmpfs_over_oceandata_tmpfs": ratio("CDO, outputs on tmpfs",
                                                "oceandata, outputs on tmpfs"),
    }
    pipelines = [m for m in ("oceandata", "oceandata, zstd", "oceandata, CDO's NetCDF")
                 if by.get(m) and by[m].ok]
    peaks = {m: by[m].peak_rss_mib for m in pipelines}
    rows = _summary_rows(ratios, peaks, by, data)
    return {
        "machine": {"arch": platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_average_at_end": list(os.getloadavg())},
        "data": data, "repeat": repeat, "dask_workers": DASK_WORKERS,
        "cdo_threads": CDO_THREADS, "rss_method": RSS_METHOD, "tolerance_degC": TOLERANCE,
        "reference": reference,
        "methods": [{"method": r.method, "command": r.command,
                     "seconds_median": r.seconds if r.ok else None,
                     "seconds_runs": [x.seconds for x in r.runs],
                     "peak_rss_mib": r.peak_rss_mib if r.ok else None,
                     "skipped": r.skipped, "failed": r.failed, "check": r.check}
                    for r in results],
        "ratios": ratios,
        "targets": {row["case"]: {"value": row["ratio"] if row["ratio"] is not None
                                  else row["peak_mib"], "goal": row["target"],
                                  "met": row["met"]} for row in rows},
        "summary": rows,
    }


def _summary_rows(ratios: dict, peaks: dict[str, float], by: dict[str, Result],
                  data: dict) -> list[dict]:
    """One row per issue-19 target (climatology + anomaly), plus one context row."""
    gb = data["spec"] and SPECS[data["spec"]["name"]].nbytes / 1e9
    tmpfs = ratios["cdo_tmpfs_over_oceandata_tmpfs"]

    def seconds(name: str) -> str:
        r = by.get(name)
        return f"{r.seconds:.1f} s" if r and r.ok else "n/a"

    def faster(case: str, anchor: str, key: str, who: str, anchor_name: str,
               why: str) -> dict:
        value = ratios[key]
        met = None if value is None else value >= 2
        note = "" if met is not False else (
            f"missed: {value:.2f}x, {2 / value:.2f}x short of 2x "
            f"({seconds(anchor_name)} against {seconds(who)}). {why}")
        return {"benchmark": "climatology", "case": case, "anchor": anchor,
                "ratio": value, "ratio_meaning": f"{anchor_name} seconds / {who} seconds "
                                                 "(> 1: oceandata faster)",
                "peak_mib": peaks.get(who), "target": ">= 2x faster", "met": met,
                "note": note}

    write = (f"Both sides read the data twice and write the {gb:.1f} GB anomaly to new files; the "
             "write is bound by the disk's writeback (in a staged run: 9.6 of oceandata's 17 s of "
             "work)"
             + (f"; with both writing to tmpfs the pair is {tmpfs:.2f}x CDO" if tmpfs else "")
             + " (see the context row).")
    cdo = "CDO ymonmean + ymonsub (-P 1) on the netCDF-3 file"
    xr_ = "plain xarray groupby (use_flox=False), tuned the same way"
    rows = [
        faster("oceandata vs CDO, clim+anomaly, Zarr uncompressed", cdo,
               "cdo_over_oceandata", "oceandata", "CDO", write),
        faster("oceandata vs CDO, clim+anomaly, Zarr zstd (the platform's layout)", cdo,
               "cdo_over_oceandata_zstd", "oceandata, zstd", "CDO",
               write + " Decompressing zstd adds a pass over 4.5 GB on each read "
               f"(raw read {seconds('raw read, zstd')} against {seconds('raw read')}); "
               "CDO reads uncompressed netCDF-3."),
        faster("oceandata vs CDO, clim+anomaly, oceandata reading CDO's NetCDF", cdo,
               "cdo_over_oceandata_netcdf", "oceandata, CDO's NetCDF", "CDO",
               write + " Reading 30-day slabs of the netCDF-3 file through xarray's "
               "netCDF4 backend is slower than reading Zarr chunks."),
        faster("oceandata vs plain xarray, clim+anomaly, Zarr uncompressed", xr_,
               "xarray_over_oceandata", "oceandata", "xarray (no flox)", write),
        faster("oceandata vs plain xarray, clim+anomaly, Zarr zstd", xr_,
               "xarray_zstd_over_oceandata_zstd", "oceandata, zstd",
               "xarray (no flox), zstd", write),
    ]
    for key, case, who, raw in (
            ("oceandata_climatology_over_raw", "climatology alone vs raw read, Zarr "
             "uncompressed", "oceandata (climatology only)", "raw read"),
            ("oceandata_climatology_zstd_over_raw_zstd", "climatology alone vs raw read, "
             "Zarr zstd", "oceandata (climatology only), zstd", "raw read, zstd")):
        value = ratios[key]
        met = None if value is None else value <= 2
        rows.append({
            "benchmark": "climatology", "case": case,
            "anchor": "raw read of the same store (zarr.open_array, 2 threads, no xarray/dask)",
            "ratio": value, "ratio_meaning": f"{who} seconds / {raw} seconds (< 1: faster)",
            "peak_mib": by[who].peak_rss_mib if by.get(who) and by[who].ok else None,
            "target": "<= 2x the raw read", "met": met,
            "note": "" if met is not False else
            f"missed: {value:.2f}x the raw read ({seconds(who)} against {seconds(raw)}); "
            "both include about 1-2 s of interpreter start-up and imports"})
    peak = max(peaks.values()) if peaks else None
    met = None if peak is None else peak < PEAK_GOAL_MIB
    rows.append({
        "benchmark": "climatology", "case": "peak memory, clim+anomaly "
        f"({gb:.1f} GB input; largest of: {', '.join(peaks) or 'none'})",
        "anchor": "the input's size", "ratio": None, "ratio_meaning": "",
        "peak_mib": peak, "target": f"< 1 GB ({PEAK_GOAL_MIB:.0f} MiB)", "met": met,
        "note": ", ".join(f"{m}: {p:.0f} MiB" for m, p in peaks.items()) + (
            "" if met is not False else
            f"; missed by {peak - PEAK_GOAL_MIB:.0f} MiB: about 250 MiB is the interpreter "
            "with xarray/dask/zarr/numba imported, the rest two workers' 31 MB chunks "
            "(read and output) and glibc arenas keeping freed chunk buffers")})
    rows.append({
        "benchmark": "climatology",
        "case": "context: oceandata vs CDO, clim+anomaly, both writing to tmpfs",
        "anchor": f"CDO ymonmean + ymonsub writing its outputs to {TMPFS}",
        "ratio": tmpfs, "ratio_meaning": "CDO seconds / oceandata seconds, outputs of both "
                                         "on a RAM file system (no disk writeback)",
        "peak_mib": by["oceandata, outputs on tmpfs"].peak_rss_mib
        if by.get("oceandata, outputs on tmpfs") and by["oceandata, outputs on tmpfs"].ok
        else None,
        "target": "none (context for the rows above, not an issue target)", "met": None,
        "note": "the same computation with the disk-write floor removed on both sides"})
    return rows


def _table(summary: dict) -> str:
    data, spec = summary["data"], summary["data"]["spec"]
    gb = data["zarr_bytes"] / 1e9
    t, y, x = SPECS[spec["name"]].shape
    by = {m["method"]: m for m in summary["methods"]}
    ref = by.get("oceandata", {}).get("seconds_median")
    m = summary["machine"]
    load = ", ".join(f"{v:.2f}" for v in m["load_average_at_end"])
    lines = [
        "# Monthly climatology + anomaly: oceandata vs plain xarray vs CDO vs raw read",
        "",
        f"Machine: {m['arch']}, {m['cores']} cores, Python {m['python']}, load average "
        f"{load} (1/5/15 min) at the end. Data: synthetic daily SST, {spec['years']} years "
        f"x {y} x {x} ({spec['step']} deg), float32, {t} days: {gb:.2f} GB in an "
        f"uncompressed Zarr v3 store (chunks {spec['time_chunk']} days x whole grid), "
        f"{data.get('zstd_bytes', 0) / 1e9:.2f} GB in the same store with zarr's default "
        "zstd (the platform's layout) and the same values in a netCDF-3 64-bit offset file "
        f"for CDO ({data['netcdf_bytes'] / 1e9:.2f} GB), all read from the OS page cache. "
        f"Median of {summary['repeat']} interleaved run"
        f"{'s' if summary['repeat'] != 1 else ''}, each in its own process after `sync`; "
        f"dask threaded scheduler with {summary['dask_workers']} workers, CDO with "
        f"`-P {summary['cdo_threads']}`. Outputs are written uncompressed next to the "
        f"data (or on {TMPFS} where stated).",
        "",
        "Seconds are the child process's wall time (start-up and imports included; CDO: "
        f"both commands). Peak RSS is {summary['rss_method']}. GB/s is data GB over "
        "seconds (the full methods read the data twice and write it once). Every "
        f"method's outputs were compared with {summary['reference'] or 'nothing'}'s "
        f"(climatology everywhere, anomaly on sampled days; within "
        f"{summary['tolerance_degC']:g} degC, same land mask) before being reported.",
        "",
        "| method | seconds | x oceandata | GB/s | peak RSS MiB | max abs diff vs "
        f"{summary['reference'] or 'n/a'} (clim / anom) | what runs |",
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
        diff = ("reference" if r["method"] == summary["reference"] else
                " / ".join(f"{chk[k]:.1e}" for k in ("clim_max_abs_diff", "anom_max_abs_diff")
                           if k in chk) or "n/a")
        lines.append(f"| {r['method']} | {s:.1f} | {_fmt(s / ref) if ref else 'n/a'} | "
                     f"{gb / s:.2f} | {r['peak_rss_mib']:.0f} | {diff} | {r['command']} |")
    ratios = summary["ratios"]
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {k.replace('_over_', ' / ').replace('_', ' ')} | {_fmt(v)} |"
              for k, v in ratios.items()]
    lines += ["", "| target | goal | ratio | peak MiB | met | note |",
              "|---|---|---:|---:|---|---|"]
    for row in summary["summary"]:
        met = "n/a" if row["met"] is None else "yes" if row["met"] else "**no**"
        peak = "" if row["peak_mib"] is None else f"{row['peak_mib']:.0f}"
        lines.append(f"| {row['case']} | {row['target']} | {_fmt(row['ratio'])} | {peak} "
                     f"| {met} | {row['note']} |")
    if data.get("generate_seconds") is not None:
        lines += ["", f"Data generated once in {data['generate_seconds']:.0f} s with a peak "
                  f"RSS of {data['generate_peak_rss_mib']:.0f} MiB (streamed chunk by chunk)."]
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--compress", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--case", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--check", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate:
        name, zarr_path, nc_path = args.generate
        print(json.dumps(generate(SPECS[name], Path(zarr_path), Path(nc_path))))
        return 0
    if args.compress:
        print(json.dumps(compress(*map(Path, args.compress))))
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
    _warm([data["zarr"], data["zarr_zstd"], data["netcdf"]])
    runs_dir = data_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)

    # METHODS' order is kept (CDO first: the reference), whatever the order given
    results = [Result(name, METHODS[name][1]) for name in METHODS if name in args.methods]
    reference: tuple[str, Run] | None = None
    ref_dir: Path | None = None
    for rep in range(args.repeat):
        for result in results:
            if result.skipped or result.failed:
                continue
            base = TMPFS if result.method in ON_TMPFS else runs_dir
            out = Path(tempfile.mkdtemp(prefix="bench_clim_", dir=base))
            try:
                print(f"[{rep + 1}/{args.repeat}] {result.method} ...", file=sys.stderr,
                      end=" ", flush=True)
                subprocess.run(["sync"], check=False)  # the previous method's dirty pages
                run = METHODS[result.method][0](data, out)
                print(f"{run.seconds:.1f} s, {run.peak_rss_mib:.0f} MiB", file=sys.stderr)
                result.runs.append(run)
                if rep == 0 and run.clim:
                    if reference is None:  # CDO's outputs (if it ran), kept for round 1
                        reference, ref_dir = (result.method, run), out
                    else:
                        _verify(result, *reference, run)
            except MethodSkipped as exc:
                result.skipped = str(exc)
                print(f"skipped: {exc}", file=sys.stderr)
            except MethodFailed as exc:
                result.failed = str(exc)
                print(f"FAILED: {exc}", file=sys.stderr)
            finally:
                if out != ref_dir:
                    shutil.rmtree(out, ignore_errors=True)
        if ref_dir is not None:
            shutil.rmtree(ref_dir, ignore_errors=True)
            ref_dir = None

    summary = summarise(results, data, args.repeat, reference[0] if reference else None)
    text = _table(summary)
    print(text)
    if any(r.failed for r in results):
        print(f"not written to {args.output}: a method failed (see above)", file=sys.stderr)
        return 1
    _write_atomic(args.output.with_suffix(".json"), json.dumps(summary, indent=1) + "\n")
    _write_atomic(args.output, text)
    print(f"written to {args.output} and {args.output.with_suffix('.json')}", file=sys.stderr)
    return 0


def _verify(result: Result, ref_name: str, ref_run: Run, run: Run) -> None:
    """Check *run*'s outputs against the reference's; a method that disagrees fails."""
    reference = {"clim": ref_run.clim, "anom": ref_run.anom}
    checks = _check_child(reference, {result.method: {"clim": run.clim, "anom": run.anom}})
    result.check = checks[result.method]
    if not result.check["ok"]:
        result.failed = f"differs from {ref_name}: {result.check}"
        print(f"{result.method}: {result.failed}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
