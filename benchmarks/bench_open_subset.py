"""Open + subset: oceandata against plain xarray and the raw netCDF read ceiling.

Each request is read three ways, each in a fresh Python process (so no page cache of
objects, no shared dask state), interleaved and repeated; time and peak memory are
measured around the work only, after imports:

``oceandata``
    ``oceandata.open_dataset(entry, bbox=..., time=...)`` then ``.compute()``: catalog
    lookup, CF axis discovery, dateline handling, lazy dask read.
``xarray``
    What a careful user writes by hand with ``xr.open_mfdataset`` and ``.sel`` for the
    same box (two longitude pieces concatenated across the seam).
``raw``
    netCDF4 slicing of exactly the needed hyperslabs, file by file, into numpy: the
    read ceiling, with no xarray or dask at all.

``store``
    The same ``oceandata.open_dataset`` call on the entry ingested into an Icechunk store
    (``oceandata ingest``, made once under ``var/bench/open_subset/``): the anchor of
    issue 19's target 3.
``files``
    ``oceandata.open_dataset(entry, ...)`` with no reference index (an empty
    ``OCEANDATA_DATA_DIR``): the path before the index, ``xr.open_mfdataset`` of every
    file of the entry.

The ``oceandata`` method opens the entry from its reference index
(:mod:`oceandata.catalog.references`, built once here as ``oceandata catalog index``
builds it) and counts the data files it opens (an fsspec hook): a time subset must open
only the files of its period.

Besides the subsets, opening alone is timed (``open_dataset("cobe_sst2")``, no value
read) from the index, from the files, and from the store. Libraries are imported
before the clock starts in every method (oceandata, xarray, dask.array, zarr, fsspec,
icechunk, netCDF4), so the figures are the cost of opening, not of first imports.

Every method's result must be equal (checked on every run; the opened datasets are
checked value for value once, before timing). Run::

    make bench            # or: python benchmarks/bench_open_subset.py --repeat 3

and the table is printed and written to ``benchmarks/results/open_subset.md``, the
summary rows of issue 19 to ``benchmarks/results/open_subset.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run as a script: `benchmarks` importable for _common
    sys.path.insert(0, str(ROOT))

from benchmarks._common import _write_atomic  # noqa: E402

#: generated data: the ingested store, the index's data dir, an empty data dir
WORK = ROOT / "var" / "bench" / "open_subset"
STORE = WORK / "cobe_sst2.icechunk"
INDEXED = WORK / "indexed"
UNINDEXED = WORK / "unindexed"
ENTRY = "cobe_sst2"

#: name -> (entry, bbox W,S,E,N, (first year, last year), description)
REQUESTS = {
    "nino_box_20y": ("cobe_sst2", (160.0, -5.0, -90.0, 5.0), (1990, 2009),
                     "COBE-SST2, 160E..90W x 5S..5N (across the dateline), 1990-2009"),
    "global_field_60y": ("cobe_sst2", (0.0, -90.0, 360.0, 90.0), (1950, 2009),
                         "COBE-SST2, every point, 1950-2009 (720 global fields)"),
}
METHODS = ("oceandata", "store", "files", "xarray", "raw")
#: open only (no value read): from the index, from the store, from every file
OPEN_METHODS = ("oceandata", "store", "files")
#: the open-only case runs this many times as often as --repeat
OPEN_ROUNDS = 5
#: the data dir each method runs with (None: unchanged)
DATA_DIR = {"oceandata": INDEXED, "files": UNINDEXED, "store": INDEXED}


def _status_mib(field: str) -> float | None:
    """A memory line of /proc/self/status (``VmRSS``, ``VmHWM``) in MiB, None if absent."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _start_peak() -> float:
    """Reset the peak RSS (Linux ``clear_refs``) and return the RSS now, MiB.

    Where the reset is not possible, the peak so far (rusage) is the baseline: growth is
    then counted above the import peak, and may read 0 for small work.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        rss = _status_mib("VmRSS")
        if rss is not None:
            return rss
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_growth(base: float) -> float:
    """Peak RSS since :func:`_start_peak` minus its baseline, MiB."""
    peak = _status_mib("VmHWM")
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return max(peak - base, 0.0)


def _files(first: int, last: int) -> list[str]:
    from oceandata import sample_data

    return [str(sample_data.fetch(f"gridded/cobe-sst2/year{y}.nc"))
            for y in range(first, last + 1)]


def _lon_pieces(lon, west: float, east: float):
    """Index ranges of lon (ascending, 0..360) inside [west, east] across the seam."""
    import numpy as np

    lon = np.asarray(lon) % 360
    w, e = west % 360, east % 360
    if east - west >= 360:
        return [(0, lon.size)]
    if w <= e:
        idx = np.flatnonzero((lon >= w) & (lon <= e))
        return [(int(idx[0]), int(idx[-1]) + 1)]
    a = np.flatnonzero(lon >= w)
    b = np.flatnonzero(lon <= e)
    return [(int(a[0]), int(a[-1]) + 1), (int(b[0]), int(b[-1]) + 1)]


def _import_all() -> None:
    """Import what any method uses, so that no method pays first imports on the clock."""
    import dask.array  # noqa: F401
    import fsspec
    import fsspec.implementations.reference  # noqa: F401
    import icechunk  # noqa: F401
    import netCDF4  # noqa: F401
    import xarray  # noqa: F401
    import zarr
    import zarr.storage  # noqa: F401

    import oceandata
    import oceandata.catalog.references
    import oceandata.ingest.store
    import oceandata.sample_data  # noqa: F401 - pooch, the registry of sample entries

    # the imports leave the cyclic collector a full collection due (about 0.15 s here):
    # done now, so that it does not fall on whichever method allocates first
    gc.collect()


def _count_opened_files() -> set[str]:
    """Record the name of every local file fsspec opens from now on (the index's reads)."""
    import fsspec.implementations.local as local

    opened: set[str] = set()
    real = local.LocalFileOpener.__init__

    def record(self, path, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.add(Path(path).name)
        real(self, path, *args, **kwargs)

    local.LocalFileOpener.__init__ = record  # type: ignore[method-assign]
    return opened


def run_open(method: str) -> dict[str, float]:
    """Open the entry (no value read) in this process; return seconds and a fingerprint."""
    _import_all()
    import oceandata

    target = str(STORE) if method == "store" else ENTRY
    opened = _count_opened_files()
    base = _start_peak()
    start = time.perf_counter()
    ds = oceandata.open_dataset(target)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mib": _peak_growth(base),
            "shape": list(ds.sst.shape), "files_opened": len(opened),
            "time_first_last": [str(ds.time.values[0]), str(ds.time.values[-1])],
            "checksum": float(ds.lat.sum()) + float(ds.lon.sum())}


def run_case(request: str, method: str) -> dict[str, float]:
    """Do one read in this process; return seconds, peak MiB over baseline, checksum."""
    import numpy as np

    _import_all()
    entry, (west, south, east, north), (first, last), _ = REQUESTS[request]
    files = _files(first, last)
    if method in ("oceandata", "store", "files"):
        import oceandata
    elif method == "xarray":
        import xarray as xr
    else:
        import netCDF4
    opened = _count_opened_files()
    base = _start_peak()
    start = time.perf_counter()
    if method in ("oceandata", "store", "files"):
        target = str(STORE) if method == "store" else entry
        ds = oceandata.open_dataset(target, bbox=(west, south, east, north),
                                    time=(str(first), str(last)), variables=["sst"])
        values = ds.sst.compute().values
    elif method == "xarray":
        ds = xr.open_mfdataset(files, combine="by_coords")
        ds = ds.sel(lat=slice(north, south))  # latitudes are stored north to south
        pieces = [ds.isel(lon=slice(a, b)) for a, b in _lon_pieces(ds.lon, west, east)]
        ds = xr.concat(pieces, dim="lon") if len(pieces) > 1 else pieces[0]
        values = ds.sst.compute().values
    else:
        blocks = []
        for path in files:
            with netCDF4.Dataset(path) as nc:
                lat = nc["lat"][:]
                rows = np.flatnonzero((lat >= south) & (lat <= north))
                var = nc["sst"]
                var.set_auto_mask(True)
                parts = [var[:, rows[0]:rows[-1] + 1, a:b]
                         for a, b in _lon_pieces(nc["lon"][:], west, east)]
                blocks.append(np.ma.filled(np.ma.concatenate(parts, axis=2).astype("f4"),
                                           np.nan))
        values = np.concatenate(blocks, axis=0)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mib": _peak_growth(base), "shape": list(values.shape),
            "checksum": float(np.nansum(values, dtype="f8")),
            "nbytes_mib": values.nbytes / 2**20, "files_opened": len(opened),
            "files_needed": last - first + 1}


def _env(method: str) -> dict[str, str]:
    env = dict(os.environ)
    if method in DATA_DIR:
        env["OCEANDATA_DATA_DIR"] = str(DATA_DIR[method])
    return env


def _spawn(request: str, method: str) -> dict[str, float]:
    flag = ["--open", method] if request == "open" else ["--case", request, method]
    out = subprocess.run([sys.executable, __file__, *flag], capture_output=True, text=True,
                         env=_env(method))
    if out.returncode != 0:
        raise SystemExit(f"{request}/{method} failed: "
                         f"{(out.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def prepare() -> dict[str, object]:
    """Build the entry's reference index and ingest its store (both once); check that the
    index, the store and the files give the same dataset, value for value.

    Runs in this process with ``OCEANDATA_DATA_DIR`` set to the index's data dir.
    """
    import numpy as np

    os.environ["OCEANDATA_DATA_DIR"] = str(INDEXED)
    from oceandata.config import get_settings

    get_settings(reload=True)
    from oceandata.catalog import open_catalog
    from oceandata.catalog.references import build_index, load_index

    entry = open_catalog().entry(ENTRY)
    start = time.perf_counter()
    index, built = build_index(entry, force=True)
    build_seconds = time.perf_counter() - start
    assert built and load_index(entry).usable
    UNINDEXED.mkdir(parents=True, exist_ok=True)
    if not (STORE / "refs").is_dir():
        from oceandata.ingest.pipeline import ingest

        ingest(entry.paths(), STORE, name=ENTRY, check=False,
               source_args={"xarray_kwargs": entry.args.get("xarray_kwargs") or {}},
               command="benchmarks/bench_open_subset.py")
    import oceandata
    from oceandata.catalog.drivers import open_source

    ours = oceandata.open_dataset(ENTRY)
    store = oceandata.open_dataset(str(STORE))
    files = open_source("netcdf", entry.paths(), entry.args, chunks={})
    for name, other in (("store", store), ("files", files)):
        for var in ("time", "lat", "lon"):
            if not np.array_equal(ours[var].values, other[var].values):
                raise SystemExit(f"the index and the {name} disagree on {var}")
    a, b, c = (ds.sst.values for ds in (ours, store, files))
    if not (np.array_equal(a, b, equal_nan=True) and np.array_equal(a, c, equal_nan=True)):
        raise SystemExit("the index, the store and the files disagree on sst values")
    return {"index": str(index), "index_bytes": index.stat().st_size,
            "build_seconds": build_seconds, "files": len(entry.paths())}


def _load() -> str:
    """The 1-, 5- and 15-minute load averages, as text."""
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--case", nargs=2, metavar=("REQUEST", "METHOD"))
    parser.add_argument("--open", metavar="METHOD", choices=OPEN_METHODS)
    parser.add_argument("--output", type=Path, default=HERE / "results" / "open_subset.md")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(*args.case)))
        return
    if args.open:
        print(json.dumps(run_open(args.open)))
        return

    prepared = prepare()
    loads = [_load()]
    runs: dict[tuple[str, str], list[dict]] = {}
    _spawn("open", "files")  # warm the OS file cache and the sample links once
    # an open is short (about 0.05 s), so one busy moment of the machine moves a median
    # of 3; it is repeated OPEN_ROUNDS times as often as the reads, interleaved
    for _ in range(OPEN_ROUNDS * args.repeat):
        for method in OPEN_METHODS:
            runs.setdefault(("open", method), []).append(_spawn("open", method))
    loads.append(_load())
    for request in REQUESTS:
        _spawn(request, "raw")  # warm the OS file cache once, so every method reads warm
        for _ in range(args.repeat):
            for method in METHODS:
                runs.setdefault((request, method), []).append(_spawn(request, method))
        loads.append(_load())

    def median(request: str, method: str) -> float:
        return statistics.median(r["seconds"] for r in runs[(request, method)])

    def peak(request: str, method: str) -> float:
        return max(r["peak_mib"] for r in runs[(request, method)])

    fingerprints = {json.dumps([r["shape"], r["time_first_last"], round(r["checksum"], 3)])
                    for m in OPEN_METHODS for r in runs[("open", m)]}
    if len(fingerprints) != 1:
        raise SystemExit(f"open: methods disagree on the dataset: {fingerprints}")
    lines = [
        "# Open + subset: oceandata (reference index) vs its ingested store, its files, "
        "plain xarray and raw netCDF4",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; median of {args.repeat} runs, each in a fresh "
        "process with the files in the OS cache, libraries imported before the clock "
        "starts. Peak memory is the growth of the peak RSS over the RSS when the clock "
        "starts (peak reset through /proc/self/clear_refs). Load average (1/5/15 min) "
        f"during the runs: {'; '.join(loads)}.",
        "",
        f"Reference index: {prepared['files']} files, {prepared['index_bytes'] / 1024:.0f} "
        f"KiB of JSON, built in {prepared['build_seconds']:.1f} s (`oceandata catalog "
        "index`, once at registration). The index, the store and the files were checked "
        "equal value for value before timing.",
        "",
        "## Opening `cobe_sst2` (no value read)",
        "",
        f"Median (and fastest) of {OPEN_ROUNDS * args.repeat} interleaved runs per method.",
        "",
        "| method | seconds | fastest | x store | files opened | peak MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    labels = {"oceandata": "oceandata, reference index", "store": "oceandata, ingested store",
              "files": "oceandata, every file (no index)"}
    for method in OPEN_METHODS:
        opened = max(r["files_opened"] for r in runs[("open", method)])
        shown = str(opened) if method == "oceandata" else \
            ("60 (netCDF4)" if method == "files" else "-")
        fastest = min(r["seconds"] for r in runs[("open", method)])
        lines.append(f"| {labels[method]} | {median('open', method):.3f} | {fastest:.3f} | "
                     f"{median('open', method) / median('open', 'store'):.2f} | {shown} | "
                     f"{peak('open', method):.0f} |")
    lines += [
        "",
        "## Open + subset",
        "",
        "| request | method | seconds | x store | x xarray | x raw | files opened | "
        "peak MiB | result MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for request, (*_, description) in REQUESTS.items():
        checksums = {round(r["checksum"], 2) for m in METHODS for r in runs[(request, m)]}
        if len(checksums) != 1:
            raise SystemExit(f"{request}: methods disagree on the result: {checksums}")
        for method in METHODS:
            size = runs[(request, method)][0]["nbytes_mib"]
            opened = max(r["files_opened"] for r in runs[(request, method)])
            shown = f"{opened} of 60" if method == "oceandata" else "-"
            m = median(request, method)
            lines.append(f"| {request} | {method} | {m:.3f} | "
                         f"{m / median(request, 'store'):.2f} | "
                         f"{m / median(request, 'xarray'):.2f} | "
                         f"{m / median(request, 'raw'):.2f} | {shown} | "
                         f"{peak(request, method):.0f} | {size:.1f} |")
        lines.append(f"|  | *{description}* | | | | | | | |")
    text = "\n".join(lines) + "\n"
    print(text)
    _write_atomic(args.output, text)

    # issue 19 summary rows
    open_ratio = median("open", "oceandata") / median("open", "store")
    files_ratio = median("open", "files") / median("open", "store")
    fastest = {m: min(r["seconds"] for r in runs[("open", m)]) for m in OPEN_METHODS}
    sub = runs[("nino_box_20y", "oceandata")]
    touched = max(r["files_opened"] for r in sub)
    needed = sub[0]["files_needed"]
    sub_ratio = median("nino_box_20y", "oceandata") / median("nino_box_20y", "store")
    load_note = f"measured with load average {'; '.join(loads)} on {os.cpu_count()} cores"
    summary = [
        {"benchmark": "open_subset",
         "case": "open_dataset('cobe_sst2') (references) vs opening its ingested store",
         "anchor": "oceandata.open_dataset(<cobe_sst2 ingested into an Icechunk store>)",
         "ratio": round(open_ratio, 3),
         "ratio_meaning": "entry open seconds / store open seconds (lower is better)",
         "peak_mib": round(peak("open", "oceandata"), 1),
         "target": "<= 2", "met": open_ratio <= 2,
         "note": (f"median {median('open', 'oceandata'):.3f} s against "
                  f"{median('open', 'store'):.3f} s (fastest {fastest['oceandata']:.3f} s "
                  f"against {fastest['store']:.3f} s, "
                  f"{fastest['oceandata'] / fastest['store']:.2f}x); without the index "
                  f"(every file's header) {median('open', 'files'):.3f} s, "
                  f"{files_ratio:.1f}x the store"
                  + ("" if open_ratio <= 2 else
                     f"; missed by {open_ratio / 2:.2f}x") + f"; {load_note}")},
        {"benchmark": "open_subset",
         "case": "time subset 1990-2009 of cobe_sst2 (Nino box, references): files touched",
         "anchor": "the same open_dataset request on the ingested store",
         "ratio": round(sub_ratio, 3),
         "ratio_meaning": "entry subset seconds / store subset seconds (lower is better)",
         "peak_mib": round(peak("nino_box_20y", "oceandata"), 1),
         "target": f"touches only the files it needs ({needed} of 60)",
         "met": touched <= needed,
         "note": (f"{touched} data files opened for {needed} years; "
                  f"{median('nino_box_20y', 'oceandata'):.3f} s against "
                  f"{median('nino_box_20y', 'store'):.3f} s on the store and "
                  f"{median('nino_box_20y', 'files'):.3f} s from every file: the files' "
                  "chunks are one global field each (1 x 180 x 360, zlib 9), so the box "
                  "decompresses every field of its period, where the store's chunks were "
                  f"planned for reading; {load_note}")},
    ]
    doc = {"repeat": args.repeat, "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
           f"Python {platform.python_version()}", "load_average": loads,
           "prepared": prepared, "summary": summary,
           "runs": {f"{r}/{m}": v for (r, m), v in runs.items()}}
    _write_atomic(args.output.with_suffix(".json"), json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
