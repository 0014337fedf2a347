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

The three results must be equal (checked on every run). Run::

    make bench            # or: python benchmarks/bench_open_subset.py --repeat 3

and the table is printed and written to ``benchmarks/results/open_subset.md``.
"""

from __future__ import annotations

import argparse
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

#: name -> (entry, bbox W,S,E,N, (first year, last year), description)
REQUESTS = {
    "nino_box_20y": ("cobe_sst2", (160.0, -5.0, -90.0, 5.0), (1990, 2009),
                     "COBE-SST2, 160E..90W x 5S..5N (across the dateline), 1990-2009"),
    "global_field_60y": ("cobe_sst2", (0.0, -90.0, 360.0, 90.0), (1950, 2009),
                         "COBE-SST2, every point, 1950-2009 (720 global fields)"),
}
METHODS = ("oceandata", "xarray", "raw")


def _rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


def run_case(request: str, method: str) -> dict[str, float]:
    """Do one read in this process; return seconds, peak MiB over baseline, checksum."""
    import numpy as np

    entry, (west, south, east, north), (first, last), _ = REQUESTS[request]
    files = _files(first, last)
    if method == "oceandata":
        import oceandata
    elif method == "xarray":
        import xarray as xr
    else:
        import netCDF4
    base = _rss_mib()
    start = time.perf_counter()
    if method == "oceandata":
        ds = oceandata.open_dataset(entry, bbox=(west, south, east, north),
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
    return {"seconds": seconds, "peak_mib": _rss_mib() - base, "shape": list(values.shape),
            "checksum": float(np.nansum(values, dtype="f8")),
            "nbytes_mib": values.nbytes / 2**20}


def _spawn(request: str, method: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--case", request, method],
                         capture_output=True, text=True, check=True, env=os.environ)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--case", nargs=2, metavar=("REQUEST", "METHOD"))
    parser.add_argument("--output", type=Path, default=HERE / "results" / "open_subset.md")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(*args.case)))
        return

    runs: dict[tuple[str, str], list[dict]] = {}
    for request in REQUESTS:
        _spawn(request, "raw")  # warm the OS file cache once, so every method reads warm
        for _ in range(args.repeat):
            for method in METHODS:
                runs.setdefault((request, method), []).append(_spawn(request, method))

    lines = [
        "# Open + subset: oceandata vs plain xarray vs raw netCDF4",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; median of {args.repeat} runs, each in a fresh "
        "process with the files in the OS cache. Peak memory is the growth of the peak RSS "
        "over the process's RSS after imports.",
        "",
        "| request | method | seconds | x xarray | x raw | peak MiB | result MiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for request, (*_, description) in REQUESTS.items():
        median = {m: statistics.median(r["seconds"] for r in runs[(request, m)])
                  for m in METHODS}
        checksums = {round(r["checksum"], 2) for m in METHODS for r in runs[(request, m)]}
        if len(checksums) != 1:
            raise SystemExit(f"{request}: methods disagree on the result: {checksums}")
        for method in METHODS:
            peak = max(r["peak_mib"] for r in runs[(request, method)])
            size = runs[(request, method)][0]["nbytes_mib"]
            lines.append(f"| {request} | {method} | {median[method]:.3f} | "
                         f"{median[method] / median['xarray']:.2f} | "
                         f"{median[method] / median['raw']:.2f} | {peak:.0f} | {size:.1f} |")
        lines.append(f"|  | *{description}* | | | | | |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(args.output)


if __name__ == "__main__":
    main()
