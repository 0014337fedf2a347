"""Ingest throughput: ``oceandata ingest`` against a byte copy and ``nccopy -d 4``.

The same source files (the 60 yearly COBE-SST2 files by default) are written four ways,
side by side in one run, each into a fresh temporary folder, interleaved and repeated:

``byte copy``
    ``shutil.copyfile`` of every file, in one child Python process: the ceiling (no
    decoding, no compression).
``nccopy -d 4``
    ``nccopy -d 4 SRC DST`` per file: NetCDF-4 with zlib level 4, the netCDF-C way of
    rewriting an archive (Debian package ``netcdf-bin``; the row is skipped if
    ``nccopy`` is not on ``PATH``).
``oceandata ingest (icechunk)``
    ``python -m oceandata.cli ingest SOURCES... --store PATH --name NAME --chunks map``:
    one Icechunk repository, committed once (the compliance check and sha256 of the
    sources included, as a user runs it).
``oceandata ingest (zarr)``
    The same with ``--format zarr``: a plain Zarr v3 folder.

Each method is a command run as child processes; *seconds* is their wall time,
including interpreter start-up and imports (what a user waits for), except for the byte
copy, timed inside its child (the ceiling: copying only). *Peak RSS* is the child's
maximum resident set size as GNU ``/usr/bin/time -f %M`` reports it (the rusage of the
process it forks). Without GNU time, it is the ``ru_maxrss`` that ``os.wait4`` returns
for the child: the accounting of ``getrusage(RUSAGE_CHILDREN)``, but per child, since
``ru_maxrss`` is a maximum and deltas of ``RUSAGE_CHILDREN`` cannot show a child smaller
than an earlier one; a forked child's maximum also counts this script's resident memory
at fork time (kept small: the sample registry is read in a child). For ``nccopy``, one
process per file, it is the largest of them. The report says which was used.

The sources are read once before timing, so every method reads them from the OS page
cache. After the first repetition every output is checked against the sources (count
and sum of the valid values of ``--variable``) before any figure is reported.

Run::

    python -m benchmarks.bench_ingest                      # 60 files, median of 3
    python -m benchmarks.bench_ingest --files 5 --repeat 1 # a quick check

The Markdown table is printed and written (atomically) to
``benchmarks/results/ingest.md``, and the figures with the issue-19 summary rows to
``benchmarks/results/ingest.json`` (target 2, "ingest in one read": ``oceandata ingest``
with its checks at least as fast as ``nccopy -d 4``, ratio = nccopy seconds / ingest
seconds >= 1, and its peak RSS under 500 MiB); if a method fails, the table is printed
with the failure and nothing is written (exit code 1).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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

ROOT = Path(__file__).resolve().parents[1]
#: this module run as a child (as a module, so that ``benchmarks._common`` imports)
SELF = (sys.executable, "-m", "benchmarks.bench_ingest")

HERE = Path(__file__).resolve().parent
PATTERN = "gridded/cobe-sst2/year*.nc"
NCCOPY_HINT = "install it with `apt-get install netcdf-bin` (Debian/Ubuntu)"

#: The byte-copy child: ``python -c COPY OUT_DIR SOURCE...``; prints its copying time.
_COPY = ("import shutil, sys, time\nfrom pathlib import Path\nout = Path(sys.argv[1])\n"
         "start = time.perf_counter()\n"
         "for src in sys.argv[2:]:\n    shutil.copyfile(src, out / Path(src).name)\n"
         "print(time.perf_counter() - start)\n")






@dataclass
class Run:
    """One run of one method.

    Attributes
    ----------
    seconds
        Wall time of the method's child processes.
    peak_rss_mib
        Largest maximum resident set size of those children, MiB.
    outputs
        What was written (files or folders), to measure and verify.
    kind
        ``netcdf`` (files), ``icechunk`` or ``zarr`` (a store): how to read the outputs.
    """

    seconds: float
    peak_rss_mib: float
    outputs: list[Path]
    kind: str


@dataclass
class Result(RunStats):
    """Every run of one method, or why it has none."""

    method: str
    command: str
    runs: list[Run] = field(default_factory=list)
    output_bytes: int = 0
    skipped: str | None = None
    failed: str | None = None
    verified: bool = False


# --------------------------------------------------------------------------- children












# --------------------------------------------------------------------------- methods


def byte_copy(sources: Sequence[Path], out: Path) -> Run:
    """(a) ``shutil.copyfile`` of every source into *out*, in one child process.

    The time is the copying only, measured in the child: the ceiling, without the
    interpreter's start-up (about 25 ms).
    """
    child = run_child([sys.executable, "-c", _COPY, str(out), *map(str, sources)])
    seconds = float(child.stdout.split()[-1])
    return Run(seconds, child.peak_rss_mib, [out / s.name for s in sources], "netcdf")


def nccopy_deflate(sources: Sequence[Path], out: Path) -> Run:
    """(b) ``nccopy -d 4 SRC DST`` per file (NetCDF-4, zlib level 4)."""
    exe = shutil.which("nccopy")
    if exe is None:
        raise MethodSkipped(f"nccopy not found on PATH; {NCCOPY_HINT}")
    seconds = peak = 0.0
    outputs = []
    for src in sources:
        dst = out / src.name
        try:
            child = run_child([exe, "-d", "4", str(src), str(dst)])
        except MethodFailed as exc:
            raise MethodFailed(f"nccopy failed on {src.name}: {exc}") from None
        seconds += child.seconds
        peak = max(peak, child.peak_rss_mib)
        outputs.append(dst)
    return Run(seconds, peak, outputs, "netcdf")


def _oceandata_ingest(sources: Sequence[Path], out: Path, fmt: str) -> Run:
    store = out / f"cobe_sst2.{fmt}"
    cmd = [sys.executable, "-m", "oceandata.cli", "ingest", *map(str, sources),
           "--store", str(store), "--name", "cobe_sst2", "--chunks", "map"]
    if fmt == "zarr":
        cmd += ["--format", "zarr"]
    try:
        child = run_child(cmd, cwd=out)
    except MethodFailed as exc:
        raise MethodFailed(f"oceandata ingest failed: {exc}") from None
    if not store.exists():
        raise MethodFailed(f"oceandata ingest failed: it exited 0 but wrote no {store.name}")
    return Run(child.seconds, child.peak_rss_mib, [store], fmt)


def oceandata_icechunk(sources: Sequence[Path], out: Path) -> Run:
    """(c) ``oceandata ingest ... --chunks map``: an Icechunk repository."""
    return _oceandata_ingest(sources, out, "icechunk")


def oceandata_zarr(sources: Sequence[Path], out: Path) -> Run:
    """(d) ``oceandata ingest ... --chunks map --format zarr``: a Zarr v3 folder."""
    return _oceandata_ingest(sources, out, "zarr")


#: name -> (function, command shown in the report)
METHODS: dict[str, tuple[Callable[[Sequence[Path], Path], Run], str]] = {
    "byte copy": (byte_copy, "shutil.copyfile"),
    "nccopy -d 4": (nccopy_deflate, "nccopy -d 4 SRC DST"),
    "oceandata ingest (icechunk)": (
        oceandata_icechunk, "oceandata ingest SRC... --store S --name N --chunks map"),
    "oceandata ingest (zarr)": (
        oceandata_zarr, "oceandata ingest SRC... --store S --name N --chunks map --format zarr"),
}


# --------------------------------------------------------------------------- checking


def digest(kind: str, paths: Sequence[str], variable: str) -> dict[str, float]:
    """Count and float64 sum of the valid values of *variable* in NetCDF files or a store."""
    import numpy as np

    count, total = 0, 0.0
    if kind == "netcdf":
        import netCDF4

        for path in paths:
            with netCDF4.Dataset(path) as nc:
                values = nc[variable][:]
                count += int(np.ma.count(values))
                total += float(np.ma.sum(values, dtype="f8"))
        return {"count": count, "sum": total}
    import xarray as xr

    if kind == "icechunk":
        import icechunk

        repo = icechunk.Repository.open(icechunk.local_filesystem_storage(paths[0]))
        store = repo.readonly_session(branch="main").store
    else:
        store = paths[0]
    values = xr.open_zarr(store, consolidated=False)[variable].values
    finite = np.isfinite(values)
    return {"count": int(finite.sum()), "sum": float(values[finite].sum(dtype="f8"))}


def _digest_child(kind: str, paths: Sequence[Path], variable: str) -> dict[str, float]:
    """:func:`digest` in a child process (keeps the imports and their logs out of here)."""
    proc = subprocess.run([*SELF, "--digest", kind, variable, *map(str, paths)],
                          capture_output=True, text=True, env=os.environ, cwd=ROOT)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise MethodFailed(f"cannot read the {kind} output back: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["count"] == b["count"] and math.isclose(a["sum"], b["sum"], rel_tol=1e-9)


# --------------------------------------------------------------------------- report


def _ratio(x: float) -> str:
    """1.00, 12.3, 2612: three significant digits or so."""
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def _table(results: list[Result], source_bytes: int, n_files: int, repeat: int,
           workdir: str, verified_against: dict[str, float], variable: str) -> str:
    copy = next((r for r in results if r.method == "byte copy" and r.runs), None)
    lines = [
        "# Ingest throughput: oceandata ingest vs byte copy vs nccopy",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}. Sources: {n_files} COBE-SST2 yearly "
        f"file{'s' if n_files != 1 else ''} "
        f"({PATTERN}), {source_bytes / 1e6:.1f} MB, read from the OS page cache. Median "
        f"of {repeat} run{'s' if repeat != 1 else ''}, each into a fresh temporary folder "
        f"under {workdir}.",
        "",
        "Seconds are the wall time of the command's child processes, interpreter start-up "
        "and imports included, except the byte copy, timed inside its child (copying "
        "only: the ceiling); MB/s is source megabytes (10^6 bytes) per second; x copy is "
        f"seconds over the byte copy's. Peak RSS is {RSS_METHOD}; for nccopy, one process "
        "per file, the largest. The ingest rows include what `oceandata ingest` does "
        "besides writing: sha256 of every source, the CF/ACDD compliance check and the "
        "checksums of the written variables. Every output was read back and its "
        f"`{variable}` matched the sources ({int(verified_against['count'])} valid values, "
        f"sum {verified_against['sum']:.6g}) before being reported.",
        "",
        "| method | seconds | MB/s | x copy | output / source | peak RSS MiB | command |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        if r.runs and not r.failed:
            ratio = _ratio(r.seconds / copy.seconds) if copy else "n/a"
            lines.append(
                f"| {r.method} | {r.seconds:.3f} | {source_bytes / 1e6 / r.seconds:.1f} | "
                f"{ratio} | {r.output_bytes / source_bytes:.2f} | {r.peak_rss_mib:.0f} | "
                f"`{r.command}` |")
        else:
            why = f"skipped: {r.skipped}" if r.skipped else f"FAILED: {r.failed}"
            lines.append(f"| {r.method} | {why} | | | | | `{r.command}` |")
    return "\n".join(lines) + "\n"




#: issue 19, target 2: peak resident memory of the ingest, MiB
PEAK_TARGET_MIB = 500.0


def _summary(results: list[Result], n_files: int, repeat: int,
             load: tuple[float, float]) -> list[dict]:
    """The issue-19 summary rows (see ``benchmarks/summary.py``): speed and memory."""
    by = {r.method: r for r in results if r.runs and not r.failed}
    ingest, nccopy = by.get("oceandata ingest (icechunk)"), by.get("nccopy -d 4")
    zarr = by.get("oceandata ingest (zarr)")
    case = (f"{n_files} COBE-SST2 yearly files, checks on (sha256, CF/ACDD, digests), "
            f"--chunks map, median of {repeat}")
    loaded = f"load average {load[0]:.1f} before, {load[1]:.1f} after (2 cores)"
    rows = []
    if ingest and nccopy:
        ratio = nccopy.seconds / ingest.seconds
        met = ratio >= 1
        note = (f"ingest {ingest.seconds:.2f} s, nccopy -d 4 {nccopy.seconds:.2f} s"
                + (f", ingest --format zarr {zarr.seconds:.2f} s" if zarr else "")
                + f"; {loaded}")
        if not met:
            note += (f"; missed by {100 * (1 - ratio):.0f}%: the ingest's fixed costs "
                     "(interpreter and imports, about 2 s, the CF/ACDD checker's per-file "
                     "work) against nccopy's plain C copy")
        rows.append({"benchmark": "ingest", "case": case, "anchor": "nccopy -d 4 (per file)",
                     "ratio": ratio, "ratio_meaning": "nccopy s / oceandata ingest s",
                     "peak_mib": ingest.peak_rss_mib,
                     "target": "at least as fast as nccopy -d 4 (ratio >= 1)", "met": met,
                     "note": note})
    if ingest:
        met = ingest.peak_rss_mib < PEAK_TARGET_MIB
        note = (f"peak RSS {ingest.peak_rss_mib:.0f} MiB"
                + (f" (nccopy {nccopy.peak_rss_mib:.0f} MiB per file)" if nccopy else "")
                + f"; {RSS_METHOD.split(' (')[0]}")
        if not met:
            note += f"; {ingest.peak_rss_mib - PEAK_TARGET_MIB:.0f} MiB over"
        rows.append({"benchmark": "ingest", "case": case + ", peak memory",
                     "anchor": "none (absolute target)", "ratio": None,
                     "ratio_meaning": "", "peak_mib": ingest.peak_rss_mib,
                     "target": f"peak RSS < {PEAK_TARGET_MIB:.0f} MiB", "met": met,
                     "note": note})
    return rows


def _json(results: list[Result], sources: Sequence[Path], source_bytes: int, repeat: int,
          load: tuple[float, float], reference: dict[str, float]) -> str:
    """The figures of every method and the summary rows, as JSON text."""
    doc = {
        "machine": {"arch": platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average": {"before": load[0], "after": load[1]},
        "files": len(sources), "source_mb": source_bytes / 1e6, "repeat": repeat,
        "reference": reference, "rss_method": RSS_METHOD,
        "methods": {r.method: {"command": r.command, "skipped": r.skipped,
                               "failed": r.failed, "verified": r.verified,
                               "output_bytes": r.output_bytes,
                               "runs": [{"seconds": x.seconds, "peak_mib": x.peak_rss_mib}
                                        for x in r.runs]}
                    for r in results},
        "summary": _summary(results, len(sources), repeat, load),
    }
    return json.dumps(doc, indent=1) + "\n"


def _fetch_sources() -> list[str]:
    """The COBE-SST2 files, fetched through the sample registry."""
    from oceandata import sample_data

    return [str(p) for p in sample_data.fetch_matching(PATTERN)]


def _sources(n_files: int | None) -> list[Path]:
    """The first *n_files* sources (all if None), listed by a child process.

    The registry pulls in pydantic and pooch; listing in a child keeps this process small,
    which matters when peak RSS comes from ``os.wait4`` (see the module docstring).
    """
    proc = subprocess.run([*SELF, "--list-sources"], capture_output=True, text=True,
                          env=os.environ, cwd=ROOT)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise SystemExit(f"cannot fetch the sources {PATTERN}: {last}")
    paths = [Path(p) for p in json.loads(proc.stdout.strip().splitlines()[-1])]
    if n_files is not None:
        if not 1 <= n_files <= len(paths):
            raise SystemExit(f"--files {n_files}: must be between 1 and {len(paths)}")
        paths = paths[:n_files]
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return the exit code (1 if a method failed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per method (median)")
    parser.add_argument("--files", type=int, default=None,
                        help="use the first N COBE-SST2 files (default: all 60)")
    parser.add_argument("--variable", default="sst", help="variable compared after writing")
    parser.add_argument("--workdir", default=None,
                        help="folder for the temporary outputs (default: the system's)")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "ingest.md")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "ingest.json",
                        help="figures and the issue-19 summary rows")
    parser.add_argument("--digest", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    parser.add_argument("--list-sources", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.list_sources:
        print(json.dumps(_fetch_sources()))
        return 0
    if args.digest:
        kind, variable, *paths = args.digest
        print(json.dumps(digest(kind, paths, variable)))
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    sources = _sources(args.files)
    source_bytes = sum(os.stat(p).st_size for p in sources)  # follows the cache's links
    for path in sources:  # warm the page cache: every method reads from memory
        with open(path, "rb") as fh:
            while fh.read(1 << 22):
                pass
    reference = _digest_child("netcdf", sources, args.variable)
    workdir = args.workdir or tempfile.gettempdir()

    load_before = os.getloadavg()[0]
    results = [Result(name, command) for name, (_, command) in METHODS.items()]
    for _ in range(args.repeat):
        for result in results:
            if result.skipped or result.failed:
                continue
            function = METHODS[result.method][0]
            out = Path(tempfile.mkdtemp(prefix="bench_ingest_", dir=workdir))
            try:
                run = function(sources, out)
                if not result.runs:  # first run: check the output, measure its size
                    got = _digest_child(run.kind, run.outputs, args.variable)
                    if not _same(got, reference):
                        raise MethodFailed(f"output differs from the sources: {got} vs "
                                           f"{reference}")
                    result.verified = True
                    result.output_bytes = sum(_size(p) for p in run.outputs)
                result.runs.append(run)
            except MethodSkipped as exc:
                result.skipped = str(exc)
                print(f"{result.method}: column skipped: {exc}", file=sys.stderr)
            except MethodFailed as exc:
                result.failed = str(exc)
                print(f"{result.method}: {exc}", file=sys.stderr)
            finally:
                shutil.rmtree(out, ignore_errors=True)

    load = (load_before, os.getloadavg()[0])
    text = _table(results, source_bytes, len(sources), args.repeat, workdir, reference,
                  args.variable)
    text += (f"\nLoad average (1 min) {load[0]:.2f} before the runs, {load[1]:.2f} after "
             f"(on {os.cpu_count()} cores).\n")
    print(text)
    if any(r.failed for r in results):
        print(f"not written to {args.output}: a method failed (see above)", file=sys.stderr)
        return 1
    _write_atomic(args.output, text)
    _write_atomic(args.json, _json(results, sources, source_bytes, args.repeat, load,
                                   reference))
    print(f"written to {args.output} and {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
