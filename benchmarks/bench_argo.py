"""Argo floats from a local GDAC mirror: oceandata.argo.load against argopy's gdac fetcher.

Both load the same floats (every float of the sample mirror, core ``<wmo>_prof.nc`` files)
in ``standard`` user mode from the same local files:

``oceandata``
    ``oceandata.argo.load(floats, mode="standard")``: a CF ragged profile dataset.
``argopy``
    ``argopy.DataFetcher(src="gdac", gdac=<mirror>, mode="standard").float(floats)
    .to_xarray()``: a collection of points (it also reads the mirror's profile index,
    ``ar_index_global_prof.txt``, to find the files). Internet sockets are refused in
    its process, so it can only read the mirror.

Each load runs in a fresh Python process, interleaved and repeated, after one untimed
load by each method so that the files are in the OS page cache. Time and peak memory
are measured around the load only, after imports. The imports include xarray's discovery
of its backend engines, which imports every installed package that provides one (argopy
does, at about 3 s): with argopy installed, a process's first ``xr.open_dataset`` without
an explicit ``engine=`` pays that once. Both results must hold the same
profiles and levels, with the same TEMP and PSAL (checked on every run; argopy rounds
PRES to 0.1 dbar, so PRES is not part of the check). Run::

    python benchmarks/bench_argo.py --repeat 3

and the table is printed and written to ``benchmarks/results/argo.md``, the figures and
the summary row (target: faster than argopy, ratio = argopy seconds / oceandata seconds
at least 1) to ``benchmarks/results/argo.json`` (both atomically). argopy is not a
dependency of oceandata: without it, only the oceandata row is measured.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script: import benchmarks._common
    sys.path.insert(0, str(HERE.parent))

from benchmarks._common import _write_atomic  # noqa: E402
from benchmarks.summary import now_iso, row  # noqa: E402

#: the issue's target: oceandata at least as fast as argopy (argopy s / oceandata s)
TARGET_RATIO = 1.0
METHODS = ("oceandata", "argopy")


def _rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _floats(mirror: Path) -> list[int]:
    return sorted(int(p.parent.name) for p in mirror.glob("dac/*/*/*_prof.nc"))


def _refuse_network() -> list:
    """Refuse (and record) every internet socket connection of this process."""
    attempts: list = []
    original = socket.socket.connect

    def refuse(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(str(address))
            raise OSError(f"network disabled in this benchmark: connection to {address}")
        return original(sock, address)

    socket.socket.connect = refuse
    return attempts


def _summary(platform_, cycle, direction, temp, psal) -> dict:
    import numpy as np

    profiles = {(int(p), int(c), str(d)) for p, c, d in zip(platform_, cycle, direction,
                                                             strict=True)}
    return {"profiles": len(profiles), "levels": len(temp),
            "temp_sum": round(float(np.nansum(np.asarray(temp, dtype="f8"))), 3),
            "psal_sum": round(float(np.nansum(np.asarray(psal, dtype="f8"))), 3)}


def run_case(method: str) -> dict:
    """Do one load in this process; return seconds, peak memory and a result summary."""
    import warnings

    from oceandata.argo.index import default_mirror

    warnings.simplefilter("ignore")
    mirror = default_mirror()  # the registry's checks happen here, before the clock
    floats = _floats(mirror)
    attempts: list = []
    cachedir = tempfile.TemporaryDirectory(prefix="argopy-cache-")
    if method == "oceandata":
        from oceandata import argo
    else:
        import logging

        import argopy

        logging.getLogger("argopy").setLevel(logging.ERROR)
        argopy.set_options(cachedir=cachedir.name, api_timeout=5)
        attempts = _refuse_network()
    # xarray's engine discovery imports every installed backend (argopy is one, ~3 s):
    # an import, so it is done before the clock, for both methods
    import xarray as xr

    xr.backends.list_engines()
    base = _rss_mib()
    start = time.perf_counter()
    if method == "oceandata":
        ds = argo.load(floats, mode="standard", mirror=mirror)
        seconds = time.perf_counter() - start
        rows = ds["row_size"].values
        summary = _summary(ds["platform_number"].values, ds["cycle_number"].values,
                           ds["direction"].values, ds["TEMP"].values, ds["PSAL"].values)
        assert int(rows.sum()) == summary["levels"]
    else:
        fetcher = argopy.DataFetcher(src="gdac", gdac=str(mirror), mode="standard",
                                     cache=False, progress=False)
        ds = fetcher.float(floats).to_xarray()
        seconds = time.perf_counter() - start
        summary = _summary(ds["PLATFORM_NUMBER"].values, ds["CYCLE_NUMBER"].values,
                           ds["DIRECTION"].values, ds["TEMP"].values, ds["PSAL"].values)
    cachedir.cleanup()
    if attempts:
        raise SystemExit(f"{method} tried the network: {attempts}")
    return {"seconds": seconds, "peak_mib": _rss_mib(), "growth_mib": _rss_mib() - base,
            "floats": len(floats), "files_mib": sum(
                p.stat().st_size for p in mirror.glob("dac/*/*/*_prof.nc")) / 2**20,
            **summary}


def _spawn(method: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--case", method],
                         capture_output=True, text=True, env=os.environ)
    if out.returncode:
        raise SystemExit(f"{method} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def summary_rows(median: dict[str, float], growth: dict[str, float], profiles: int,
                 repeat: int) -> list[dict[str, Any]]:
    """The summary row: argopy seconds / oceandata seconds, target at least 1."""
    case = f"{profiles} profiles, standard mode, local GDAC, median of {repeat}"
    target = f"faster than argopy (ratio >= {TARGET_RATIO:g})"
    if "argopy" not in median:
        return [row("argo", case, anchor="argopy gdac fetcher", target=target,
                    peak_mib=growth["oceandata"],
                    note="argopy is not installed here: only oceandata was measured "
                         f"({profiles / median['oceandata']:.0f} profiles/s)")]
    ratio = median["argopy"] / median["oceandata"]
    met = ratio >= TARGET_RATIO
    note = (f"oceandata {median['oceandata']:.2f} s ({profiles / median['oceandata']:.0f} "
            f"profiles/s), argopy {median['argopy']:.2f} s; peak growth oceandata "
            f"{growth['oceandata']:.0f} MiB, argopy {growth['argopy']:.0f} MiB")
    if not met:
        note = f"missed: oceandata {1 / ratio:.2f}x argopy's time; " + note
    return [row("argo", case, anchor="argopy gdac fetcher (same floats, same files)",
                ratio=ratio, ratio_meaning="argopy s / oceandata s",
                peak_mib=growth["oceandata"], target=target, met=met, note=note)]


def main(argv: list[str] | None = None) -> int:
    """Measure both methods, print and write the table and ``argo.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--case", choices=METHODS)
    parser.add_argument("--output", type=Path, default=HERE / "results" / "argo.md")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case)))
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    methods = [m for m in METHODS if m == "oceandata" or importlib.util.find_spec(m)]
    for method in methods:
        _spawn(method)  # untimed: the page cache is warm for every timed run
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for _ in range(args.repeat):
        for method in methods:
            runs[method].append(_spawn(method))

    keys = ("profiles", "levels", "temp_sum", "psal_sum")
    results = {tuple(r[k] for k in keys) for m in methods for r in runs[m]}
    if len(results) != 1:
        raise SystemExit(f"the methods disagree on the result {keys}: {results}")
    profiles, levels, *_ = results.pop()
    first = runs[methods[0]][0]
    median = {m: statistics.median(r["seconds"] for r in runs[m]) for m in methods}
    reference = median.get("argopy", median["oceandata"])

    lines = [
        "# Argo floats from a local GDAC mirror: oceandata vs argopy",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; oceandata {_version('oceandata')}, argopy "
        f"{_version('argopy')}, xarray {_version('xarray')}.",
        "",
        f"Both read the same local files (page cache warm): the {first['floats']} floats of "
        f"the sample GDAC mirror, core `<wmo>_prof.nc` files ({first['files_mib']:.1f} MiB), "
        f"`standard` user mode; both return the same {profiles} profiles and {levels} levels "
        "(checked on every run). Median of "
        f"{args.repeat} runs, each in a fresh process, timed around the load only (after "
        "imports, including xarray's backend discovery, which imports argopy where it is "
        "installed). Peak RSS is the process's peak; growth is the peak's rise during the load.",
        "",
        "| method | profiles | levels | seconds | profiles/s | x argopy time | peak RSS MiB "
        "| growth MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    growths = {m: max(r["growth_mib"] for r in runs[m]) for m in methods}
    for method in methods:
        peak = max(r["peak_mib"] for r in runs[method])
        growth = growths[method]
        lines.append(f"| {method} | {profiles} | {levels} | {median[method]:.3f} | "
                     f"{profiles / median[method]:.0f} | {median[method] / reference:.2f} | "
                     f"{peak:.0f} | {growth:.0f} |")
    if "argopy" not in methods:
        lines += ["", "argopy is not installed here: only oceandata was measured."]
    text = "\n".join(lines) + "\n"
    print(text)
    figures = {"date": now_iso(), "machine": {"arch": platform.machine(), "cores": os.cpu_count(),
                           "python": platform.python_version()},
               "versions": {n: _version(n) for n in ("oceandata", "argopy", "xarray")},
               "repeat": args.repeat, "floats": first["floats"], "profiles": profiles,
               "levels": levels, "files_mib": first["files_mib"], "runs": runs,
               "median_seconds": median, "growth_mib": growths,
               "summary": summary_rows(median, growths, profiles, args.repeat)}
    _write_atomic(args.output, text)
    _write_atomic(args.output.with_suffix(".json"), json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
