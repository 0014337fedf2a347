"""Open-data service throughput: OPeNDAP, Zarr and subset downloads against a local read.

A synthetic, deterministic daily SST store is written in a temporary folder: float32
``sst`` (degC; a latitude-dependent mean, a seasonal cycle and Gaussian noise drawn from
``np.random.default_rng([seed, chunk])`` chunk by chunk), ``--days`` x ``--ny`` x ``--nx``
(default 2000 x 120 x 100: 96 MB of values), Zarr v3 as xarray writes it (the default
zstd codec), chunked ``--chunk-days`` days x the whole grid. It is registered in a
temporary catalog YAML (driver ``zarr``, ``args: {urlpath, chunks: {}}``) and served by
the app in a uvicorn subprocess on 127.0.0.1 (``python -m uvicorn --factory
oceandata.dataservice.app:create_app`` with ``OCEANDATA_CATALOG`` set to it).

Each method reads the whole variable in its own child process (so its peak memory is its
own), timed around the read only, after imports; ``--repeat`` runs interleaved, the
median reported:

``local``
    ``oceandata.open_dataset(name)`` then ``.load()``: the catalog's own access, the
    ceiling.
``local xarray``
    ``xarray.open_zarr(<store path>).load()``: the same bytes without the catalog (for
    reference; the ratios are to ``local``).
``opendap``
    ``xarray.open_dataset(<service>/datasets/<name>/opendap, engine="netcdf4").load()``
    (netCDF-C's DAP2 client).
``zarr``
    ``xarray.open_zarr(<service>/datasets/<name>/zarr).load()`` (fsspec HTTP, aiohttp).
``download nc4``
    ``GET datasets/<name>/subset?format=nc4`` (the whole dataset as netCDF-4, zlib 4),
    streamed with ``requests`` to a file in 1 MiB pieces; the file is read back after the
    timing to check its values. Only if the ``subset`` route exists.

*MB/s* is the size of the values (``sst`` as float32, decimal MB) over the seconds, so
every method is rated on the same data; *wire MB* is what came over HTTP. The values of
every method must equal the local read's (checked on every run). The service's peak RSS
during each method is its ``VmHWM`` from ``/proc/<pid>/status``, reset before the method
by writing ``5`` to ``/proc/<pid>/clear_refs`` (Linux); where that is refused, the largest
``VmRSS`` sampled every 20 ms is reported instead (and the table says so). It is given for
the first repetition, with the service's ``VmRSS`` just before the method in brackets:
memory the service kept from an earlier method counts in a later one's peak.

Then the streaming check (if the ``subset`` route exists and ``--stream-mb`` is not 0):
a second store of about ``--stream-mb`` MB (default 1024, a 360 x 360 grid) is served and
downloaded whole with ``format=--stream-format`` (default ``nc``: netCDF-3, uncompressed,
so the file is the full size; ``nc4`` compresses noisy values little and costs the zlib
time), counting the bytes without keeping them; the service's peak RSS during it, the time
to the first byte (the service writes the file before sending it) and the total time.
Targets from the issue: Zarr and downloads at least 50% of the local read's MB/s; the
service under 500 MB during a 1 GB download. Nothing is asserted. The figures and the
summary rows (one per protocol, and the streaming check, decided only for a download of
1 GB or more) go to ``benchmarks/results/dataservice_throughput.json`` (atomically,
``--json``). Run::

    python benchmarks/bench_dataservice_throughput.py
    python benchmarks/bench_dataservice_throughput.py --days 400 --stream-mb 200   # quick
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script: import benchmarks._common
    sys.path.insert(0, str(HERE.parent))

from benchmarks._common import (  # noqa: E402
    RSS_METHOD,
    MethodFailed,
    MethodSkipped,
    _write_atomic,
    run_child,
)
from benchmarks.bench_dataservice_catalog import proc_status, service  # noqa: E402
from benchmarks.summary import now_iso, row  # noqa: E402

#: catalog names of the two stores
NAME, BIG = "bench_sst", "bench_sst_big"
METHODS = ("local", "local xarray", "opendap", "zarr", "download nc4")
#: the issue's targets: fraction of the local read's MB/s, service MB during 1 GB download
TARGET_RATIO, TARGET_STREAM_MB = 0.5, 500
#: the download size the streaming target is stated for, bytes (1 GB, a little slack)
TARGET_STREAM_BYTES = 0.99e9

CATALOG = """\
metadata: {{version: 1, title: throughput benchmark}}
sources:
{entries}"""
ENTRY = """\
  {name}:
    driver: zarr
    description: synthetic daily SST, {days} days x {ny} x {nx} (benchmark)
    args: {{urlpath: "{path}", chunks: {{}}}}
    metadata:
      title: Synthetic daily SST for the throughput benchmark
      variables: [{{name: sst, standard_name: sea_surface_temperature, units: degC}}]
      bbox: {{west: 100.0, south: -45.0, east: 160.0, north: 0.0}}
      time_range: {{start: "2000-01-01", end: "{end}"}}
      grid: regular
      provider: benchmark
      license: CC0-1.0
      classification:
        category: derived
        grade: general
        rationale: synthetic values generated for the benchmark
        owner: benchmark
        release: open
      tags: [sst, synthetic]
"""


def make_store(path: Path, days: int, ny: int, nx: int, chunk_days: int, seed: int) -> str:
    """Write the synthetic store chunk by chunk (bounded memory); return its last date."""
    import dask.array as dsa
    import numpy as np
    import pandas as pd
    import xarray as xr

    time_ = pd.date_range("2000-01-01", periods=days, freq="D")
    lat = np.linspace(-45, 0, ny, dtype="f8")
    lon = np.linspace(100, 160, nx, dtype="f8")
    template = xr.Dataset(
        {"sst": (("time", "lat", "lon"),
                 dsa.zeros((days, ny, nx), chunks=(chunk_days, ny, nx), dtype="f4"),
                 {"standard_name": "sea_surface_temperature", "units": "degC"})},
        coords={"time": time_, "lat": ("lat", lat, {"units": "degrees_north"}),
                "lon": ("lon", lon, {"units": "degrees_east"})})
    warnings.filterwarnings("ignore", message="Consolidated metadata")
    template.to_zarr(path, compute=False, mode="w")
    mean = (28 - 0.3 * np.abs(lat))[:, None].astype("f4")
    for k, first in enumerate(range(0, days, chunk_days)):
        last = min(days, first + chunk_days)
        doy = np.asarray(time_[first:last].day_of_year, dtype="f4")
        season = 2 * np.sin(2 * np.pi * doy / 365.25)[:, None, None]
        noise = np.random.default_rng([seed, k]).normal(0, 0.5, (last - first, ny, nx))
        values = (mean[None] + season + noise).astype("f4")
        xr.Dataset({"sst": (("time", "lat", "lon"), values)}).to_zarr(
            path, region={"time": slice(first, last)}, mode="r+")
    return str(time_[-1].date())


def run_case(method: str, target: str, out: str) -> dict[str, Any]:
    """Read the whole ``sst`` one way in this process; seconds, checksum, bytes."""
    import numpy as np
    import xarray as xr

    wire = 0
    if method == "local":
        import oceandata

        start = time.perf_counter()
        values = oceandata.open_dataset(target).sst.load().values
    elif method == "local xarray":
        start = time.perf_counter()
        values = xr.open_zarr(target).sst.load().values
    elif method == "opendap":
        start = time.perf_counter()
        values = xr.open_dataset(target, engine="netcdf4").sst.load().values
    elif method == "zarr":
        start = time.perf_counter()
        values = xr.open_zarr(target).sst.load().values
    else:
        import requests

        start = time.perf_counter()
        with requests.get(target, stream=True, timeout=600) as resp:
            resp.raise_for_status()
            with open(out, "wb") as fh:
                for piece in resp.iter_content(1 << 20):
                    fh.write(piece)
                    wire += len(piece)
        seconds = time.perf_counter() - start
        with xr.open_dataset(out, engine="netcdf4") as ds:
            values = ds.sst.values
        return {"seconds": seconds, "checksum": float(np.nansum(values, dtype="f8")),
                "nbytes": values.astype("f4").nbytes, "wire": wire}
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "checksum": float(np.nansum(values, dtype="f8")),
            "nbytes": values.nbytes, "wire": wire}


class Peak:
    """The service's peak RSS over a block: ``VmHWM`` reset before, and ``VmRSS`` sampled."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.sampled = 0.0
        self.reset = False
        self._stop = threading.Event()

    def __enter__(self) -> Peak:
        self.before = proc_status(self.pid)["VmRSS"]
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self.reset = True
        except OSError:
            self.reset = False
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            with contextlib.suppress(OSError, KeyError):
                self.sampled = max(self.sampled, proc_status(self.pid)["VmRSS"])

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        status = proc_status(self.pid)
        self.hwm = status["VmHWM"] if self.reset else float("nan")
        self.sampled = max(self.sampled, status["VmRSS"])

    @property
    def mib(self) -> float:
        """``VmHWM`` since the reset, else the largest sampled ``VmRSS``."""
        return self.hwm if self.reset else self.sampled


def _route_exists(base: str) -> bool:
    import requests

    resp = requests.get(f"{base}/datasets/{NAME}/subset", params={"format": "nope"},
                        timeout=60)
    return resp.status_code != 404 or "nothing at this address" not in resp.text


def _spawn(method: str, target: str, out: Path) -> tuple[dict[str, Any], float]:
    child = run_child([sys.executable, __file__, "--case", method, target, str(out)])
    return json.loads(child.stdout.strip().splitlines()[-1]), child.peak_rss_mib


def stream(base: str, pid: int, fmt: str) -> dict[str, float]:
    """Download the big store whole, counting bytes; seconds, first byte, service peak."""
    import requests

    with Peak(pid) as peak:
        start = time.perf_counter()
        first = None
        total = 0
        with requests.get(f"{base}/datasets/{BIG}/subset", params={"format": fmt},
                          stream=True, timeout=1800) as resp:
            if resp.status_code != 200:
                raise MethodFailed(f"HTTP {resp.status_code}: {resp.text[:200]}")
            for piece in resp.iter_content(1 << 20):
                first = first or time.perf_counter() - start
                total += len(piece)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "first_byte": first or seconds, "bytes": total,
            "peak_mib": peak.mib, "reset": peak.reset}


def summary_rows(results: dict[str, list[dict[str, Any]]], notes: dict[str, str],
                 values_mb: float, local_rate: float, streamed: dict[str, Any] | None,
                 stream_mb: int, stream_format: str) -> list[dict[str, Any]]:
    """Summary rows: each protocol's MB/s over the local read's, and the streaming check."""
    out = []
    target = f">= {TARGET_RATIO:.0%} of the local read's MB/s (Zarr and downloads)"
    for method in ("opendap", "zarr", "download nc4"):
        case = f"{method}, whole variable ({values_mb:.0f} MB of float32 values)"
        runs = results[method]
        bad = notes.get(method, "")
        if not runs or bad.startswith("values differ"):
            out.append(row("dataservice throughput", case, anchor="local read (catalog)",
                           target=target, note=bad or "not measured"))
            continue
        rate = values_mb / statistics.median(r["seconds"] for r in runs)
        ratio = rate / local_rate
        met: bool | None = ratio >= TARGET_RATIO
        note = f"{rate:.0f} MB/s against {local_rate:.0f} MB/s locally"
        if method == "opendap":
            met = None
            note = f"no target for OPeNDAP ({'above' if ratio >= TARGET_RATIO else 'below'}" \
                f" {TARGET_RATIO:.0%}); " + note
        elif not met:
            note = f"missed: {ratio:.0%} of the local rate, not {TARGET_RATIO:.0%}; " + note
        out.append(row("dataservice throughput", case, anchor="local read (catalog)",
                       ratio=ratio, ratio_meaning="service MB/s / local MB/s",
                       peak_mib=runs[0]["service_mib"], target=target, met=met,
                       note=note + "; peak is the service's"))
    target = f"service peak < {TARGET_STREAM_MB} MB while streaming a 1 GB download"
    case = f"download of the whole big store, format={stream_format}"
    if streamed is None:
        why = notes.get("stream") or ("not run (--stream-mb 0)" if not stream_mb
                                      else "not available (no subset route)")
        out.append(row("dataservice throughput", case, anchor="(none: a memory bound)",
                       target=target, note=f"not measured: {why}"))
        return out
    size = streamed["bytes"] / 1e6
    peak_mb = streamed["peak_mib"] * 2**20 / 1e6
    met = peak_mb < TARGET_STREAM_MB
    note = (f"{size:.0f} MB in {streamed['seconds']:.1f} s, first byte after "
            f"{streamed['first_byte']:.1f} s; service peak {peak_mb:.0f} MB")
    if streamed["bytes"] < TARGET_STREAM_BYTES:
        met = None
        over = f", already above {TARGET_STREAM_MB} MB" if peak_mb >= TARGET_STREAM_MB else ""
        note = f"not decided: a {size:.0f} MB download, not 1 GB{over}; " + note
    elif not met:
        note = f"missed: {peak_mb / TARGET_STREAM_MB:.2f}x the {TARGET_STREAM_MB} MB; " + note
    out.append(row("dataservice throughput", case, anchor="(none: a memory bound)",
                   peak_mib=streamed["peak_mib"],
                   target=target, met=met, note=note))
    return out


@contextlib.contextmanager
def _folder(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="bench-dataservice-throughput-") as tmp:
        yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    """Build the stores, serve them, measure, print the table (``--output`` writes it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=2000)
    parser.add_argument("--ny", type=int, default=120)
    parser.add_argument("--nx", type=int, default=100)
    parser.add_argument("--chunk-days", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--stream-mb", type=int, default=1024,
                        help="size of the streaming check's store, MB (0: skip it)")
    parser.add_argument("--stream-format", default="nc", choices=("nc", "nc4"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="keep the stores here (default: a temporary folder)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--json", type=Path,
                        default=HERE / "results" / "dataservice_throughput.json",
                        help="the figures and summary rows (default: benchmarks/results/"
                             "dataservice_throughput.json)")
    parser.add_argument("--case", nargs=3, metavar=("METHOD", "TARGET", "OUT"))
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(*args.case)))
        return 0
    for name in ("days", "ny", "nx", "chunk_days", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.stream_mb < 0:
        parser.error("--stream-mb must be 0 or more")

    with _folder(args.data_dir) as tmp:
        t0 = time.perf_counter()
        end = make_store(tmp / "small.zarr", args.days, args.ny, args.nx, args.chunk_days,
                         args.seed)
        entries = [ENTRY.format(name=NAME, days=args.days, ny=args.ny, nx=args.nx,
                                path=tmp / "small.zarr", end=end)]
        big = None
        if args.stream_mb:
            side = 360
            big_days = max(1, round(args.stream_mb * 1e6 / (side * side * 4)))
            big_end = make_store(tmp / "big.zarr", big_days, side, side,
                                 max(1, 25_000_000 // (side * side * 4)), args.seed + 1)
            big = (big_days, side)
            entries.append(ENTRY.format(name=BIG, days=big_days, ny=side, nx=side,
                                        path=tmp / "big.zarr", end=big_end))
        root = tmp / "catalog.yaml"
        root.write_text(CATALOG.format(entries="".join(entries)))
        print(f"stores written in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        os.environ["OCEANDATA_CATALOG"] = str(root)

        results: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
        notes: dict[str, str] = {}
        streamed = None
        with service({"OCEANDATA_CATALOG": str(root)}) as (base, pid, started):
            idle = proc_status(pid)
            url = f"{base}/datasets/{NAME}"
            targets = {"local": NAME, "local xarray": str(tmp / "small.zarr"),
                       "opendap": f"{url}/opendap", "zarr": f"{url}/zarr",
                       "download nc4": f"{url}/subset?format=nc4"}
            has_subset = _route_exists(base)
            _spawn("local", NAME, tmp / "warm.nc")  # page cache warm for every method
            for _ in range(args.repeat):
                for method in METHODS:
                    if method == "download nc4" and not has_subset:
                        notes[method] = "not available (no subset route here)"
                        continue
                    try:
                        with Peak(pid) as peak:
                            run, client = _spawn(method, targets[method], tmp / "dl.nc")
                    except (MethodFailed, MethodSkipped) as exc:
                        notes[method] = f"failed: {exc}"
                        continue
                    run.update(service_mib=peak.mib, service_before=peak.before,
                               reset=peak.reset, client_mib=client)
                    results[method].append(run)
                    print(f"{method}: {run['seconds']:.2f} s", file=sys.stderr)
            if big is not None and has_subset:
                try:
                    streamed = stream(base, pid, args.stream_format)
                except MethodFailed as exc:
                    notes["stream"] = f"failed: {exc}"

    local = results["local"]
    if not local:
        raise SystemExit(f"the local read failed: {notes.get('local')}")
    base_sum = local[0]["checksum"]
    for method, runs in results.items():
        for run in runs:
            if abs(run["checksum"] - base_sum) > 1e-6 * abs(base_sum):
                notes[method] = (f"values differ from the local read (sum {run['checksum']} "
                                 f"against {base_sum})")
    values_mb = local[0]["nbytes"] / 1e6
    local_rate = values_mb / statistics.median(r["seconds"] for r in local)
    lines = [
        "# Open-data service throughput: OPeNDAP, Zarr, downloads vs a local read",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with the service), "
        f"Python {platform.python_version()}. Store: {args.days} days x {args.ny} x "
        f"{args.nx} float32 ({values_mb:.0f} MB of values), Zarr v3, {args.chunk_days}-day "
        f"chunks; median of {args.repeat}. Service started in {started:.1f} s, RSS "
        f"{idle['VmRSS']:.0f} MiB idle.",
        "",
        f"| method | seconds | MB/s | x local | >= {TARGET_RATIO:.0%} | wire MB | service "
        "peak MiB (RSS before) | client peak MiB | note |",
        "|---|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for method in METHODS:
        runs = results[method]
        if not runs:
            lines.append(f"| {method} | | | | | | | | {notes.get(method, '')} |")
            continue
        seconds = statistics.median(r["seconds"] for r in runs)
        rate = values_mb / seconds
        target = "ceiling" if method.startswith("local") else (
            ("yes" if rate / local_rate >= TARGET_RATIO else "**no**")
            if method != "opendap" else ("(no target) " + ("yes" if rate / local_rate
                                                           >= TARGET_RATIO else "no")))
        wire = f"{max(r['wire'] for r in runs) / 1e6:.0f}" if method.startswith("download") \
            else ""
        service_mib = f"{runs[0]['service_mib']:.0f} ({runs[0]['service_before']:.0f})"
        sampled = "" if all(r["reset"] for r in runs) else " (sampled)"
        lines.append(f"| {method} | {seconds:.2f} | {rate:.0f} | {rate / local_rate:.2f} | "
                     f"{target} | {wire} | {service_mib}{sampled} | "
                     f"{max(r['client_mib'] for r in runs):.0f} | {notes.get(method, '')} |")
    lines.append("")
    if streamed is not None:
        size = streamed["bytes"] / 1e6
        met = "yes" if streamed["peak_mib"] * 2**20 / 1e6 < TARGET_STREAM_MB else "**no**"
        lines += [
            f"Streaming check: the {BIG} store ({big[0]} days x {big[1]} x {big[1]} float32) "
            f"downloaded whole as format={args.stream_format}.",
            "",
            f"| download | MB | first byte s | seconds | MB/s | service peak MiB | "
            f"< {TARGET_STREAM_MB} MB |",
            "|---|---:|---:|---:|---:|---:|---|",
            f"| subset?format={args.stream_format} | {size:.0f} | "
            f"{streamed['first_byte']:.1f} | {streamed['seconds']:.1f} | "
            f"{size / streamed['seconds']:.0f} | {streamed['peak_mib']:.0f}"
            f" (idle {idle['VmRSS']:.0f})"
            f"{'' if streamed['reset'] else ' (sampled)'} | {met} |",
        ]
    elif "stream" in notes or args.stream_mb:
        lines.append(f"Streaming check: {notes.get('stream', 'not available (no subset route)')}")
    lines += ["", f"Client peak: {RSS_METHOD}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        _write_atomic(args.output, text)
    figures = {
        "date": now_iso(),
        "machine": {"arch": platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "store": {"days": args.days, "ny": args.ny, "nx": args.nx,
                  "chunk_days": args.chunk_days, "values_mb": values_mb},
        "repeat": args.repeat, "service_start_seconds": started,
        "service_idle_mib": idle["VmRSS"], "local_mb_per_s": local_rate,
        "runs": results, "notes": notes, "stream": streamed,
        "stream_store": None if big is None else {"days": big[0], "side": big[1]},
        "summary": summary_rows(results, notes, values_mb, local_rate, streamed,
                                args.stream_mb, args.stream_format),
    }
    _write_atomic(args.json, json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
