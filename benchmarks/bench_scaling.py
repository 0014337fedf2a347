"""Strong scaling of a monthly climatology: 1 and 2 workers, LocalCluster and Slurm nodes.

The same computation runs on four clusters, side by side in one run:

``LocalCluster`` with 1 and 2 workers
    :class:`distributed.LocalCluster`, worker processes on this machine (1 thread each).
``SLURMCluster`` with 1 and 2 workers
    dask-jobqueue's :class:`~dask_jobqueue.SLURMCluster` on the multi-node Slurm of the
    tests (:func:`oceandata.testing.slurm.multi_node_slurm`, 3 nodes of 1 CPU): the
    scheduler runs in the benchmark's process on the host, bound to the bridge address
    (``cluster.host_address``), and every worker is a 1-CPU Slurm job, so two workers
    land on two nodes, each in its own network namespace with its own address; data
    moves between them over the bridge as between machines. This is the layout of
    ``oceandata submit --workers N`` and of dask-gateway's Slurm backend. Needs root
    (the fixture's namespaces); otherwise these rows are skipped with the reason.

Every worker has 1 thread and a memory limit of :data:`WORKER_MEMORY`.

The computation
---------------
``oceandata.analysis.climatology(sst, freq="month")`` (flox ``nanmean`` grouped by
``time.month``, map-reduce) over COBE-SST2 from the sample-data registry
(``gridded/cobe-sst2/year1950.nc`` ... ``year2009.nc``: 60 yearly files of monthly 1-degree
SST, 187 MB of float32, zlib-compressed NetCDF-4), fetched with
:func:`oceandata.sample_data.fetch_matching` (``OCEANDATA_SAMPLE_DATA`` or the cache).
That is too small for a timing to mean anything on two workers, so it is **tiled lazily**
to a finer grid: every 1-degree cell becomes a block of ``refine x refine`` cells (a
``np.repeat`` along latitude and longitude inside each dask task, nothing written to
disk). The default ``refine=4`` gives a 0.25-degree grid, 720 x 1440, 60 chunks of one
file each (12 months x the whole grid, 50 MB: the ~100 MB order of chunk size dask
recommends) and 3.0 GB of values; ``--small`` uses ``refine=2`` (0.5 degree, 12 MB
chunks, 0.75 GB). Every task reads its file from the shared filesystem: Slurm workers
open the same paths as the LocalCluster, which is what the platform assumes of
production storage (see docs/scaling.md, "Data locality and shared storage"). Since
every refined cell has the time series of its source cell, the result is the refined
climatology of the original data, and all clusters must give the same numbers.

Measures
--------
Each cluster runs in its own child process (so that its process memory is its own):

- *start*: seconds from asking for the workers (``cluster.scale(n)``) to all *n*
  connected to the scheduler (``client.wait_for_workers``); for Slurm also the jobs'
  submit-to-start time from ``sacct`` (1 s resolution), the rest being the worker's
  Python start-up and connection;
- *compute*: wall seconds of ``climatology(...).compute()``, result in the client,
  repeated ``--repeat`` times on the same workers (median reported; the first run also
  opens the files and imports flox in the workers);
- *speed-up* ``T(1 worker) / T(n workers)`` of the same kind of cluster, and *parallel
  efficiency* ``speed-up / n``; and ``T(Slurm, n) / T(LocalCluster, n)``, the cost of
  workers on separate nodes;
- *peak memory*: per worker, the largest process memory the scheduler saw in the
  workers' heartbeats (sampled every 0.25 s during the computations) and the worker
  process's own peak RSS (``getrusage``, at the end); and the peak RSS of the benchmark's
  child process, which holds the scheduler, the client and the result.

The result of every cluster's first run is compared with the 1-worker LocalCluster's
(largest absolute difference and NaN mask); a cluster whose result differs by more than
:data:`TOLERANCE` fails the run. The load average of the machine is recorded before and
after each cluster: figures from a loaded machine are for checking the machinery, not
for quoting.

Run from the repository root, as root for the Slurm rows::

    python -m benchmarks scaling                 # refine 4 (3.0 GB), median of 3
    python -m benchmarks scaling --small --repeat 1
    python benchmarks/bench_scaling.py --help

The Markdown table is printed and written to ``benchmarks/results/scaling.md`` and the
figures to ``benchmarks/results/scaling.json`` (both atomically), with its summary rows
(speed-up on 2 Slurm nodes against 1 and against a LocalCluster of 2; the issue asks for
a report, not a figure, so none is "met"); if a cluster fails or
disagrees, the table is printed and nothing is written (exit code 1). Working files
(results, Slurm's folder and the workers' logs) go under ``var/bench/scaling/`` and are
removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import MethodFailed, _write_atomic, run_child
from benchmarks.summary import row

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: this module run as a child (as a module, so that ``benchmarks._common`` imports)
SELF = (sys.executable, "-m", "benchmarks.bench_scaling")
#: the sample files (registry paths), 60 years of monthly 1-degree SST
FILES = "gridded/cobe-sst2/year*.nc"
VARIABLE = "sst"
#: refinement factor of each grid axis: full size and ``--small``
REFINE = {"full": 4, "small": 2}
#: memory limit of every worker (and ``--mem`` of every Slurm worker job)
WORKER_MEMORY = "4GiB"
#: nodes of the multi-node Slurm (1 CPU each); the 2-worker cluster uses two of them
SLURM_NODES = 3
#: seconds allowed for workers to connect (Slurm jobs on a loaded machine are slow)
START_TIMEOUT = 600.0
#: seconds each Slurm daemon may take to come up
SLURM_TIMEOUT = 180.0
#: largest absolute difference (degC) allowed against the 1-worker LocalCluster
TOLERANCE = 1e-6
#: how often the scheduler's view of worker memory is sampled, seconds
SAMPLE_EVERY = 0.25
BACKENDS = ("local", "slurm")
LABEL = {"local": "LocalCluster", "slurm": "SLURMCluster (dask-jobqueue)"}


# --------------------------------------------------------------------------- the child


def lazy_sst(files: Sequence[str], refine: int):
    """COBE-SST2 ``sst`` from *files*, refined ``refine x refine`` lazily (dask).

    Parameters
    ----------
    files
        The yearly NetCDF files.
    refine
        Cells per source cell along each of latitude and longitude.

    Returns
    -------
    xarray.DataArray
        ``(time, lat, lon)``, one chunk per file (12 months x the whole grid).
    """
    import numpy as np
    import xarray as xr

    ds = xr.open_mfdataset(list(files), combine="by_coords", parallel=False,
                           chunks={"time": 12, "lat": -1, "lon": -1})
    da = ds[VARIABLE]
    if refine == 1:
        return da
    data = da.data
    ny, nx = da.sizes["lat"], da.sizes["lon"]
    data = data.map_blocks(np.repeat, refine, 1, dtype=data.dtype,
                           chunks=(data.chunks[0], (ny * refine,), (nx,)))
    data = data.map_blocks(np.repeat, refine, 2, dtype=data.dtype,
                           chunks=(data.chunks[0], (ny * refine,), (nx * refine,)))
    step_y = float(da.lat[1] - da.lat[0]) / refine
    step_x = float(da.lon[1] - da.lon[0]) / refine
    lat = float(da.lat[0]) - step_y * (refine - 1) / 2 + step_y * np.arange(ny * refine)
    lon = float(da.lon[0]) - step_x * (refine - 1) / 2 + step_x * np.arange(nx * refine)
    return xr.DataArray(data, dims=da.dims, name=VARIABLE, attrs=da.attrs,
                        coords={"time": da.time, "lat": lat, "lon": lon})


def _make_cluster(spec: dict):
    """The cluster of a case, with no worker yet."""
    if spec["backend"] == "local":
        from distributed import LocalCluster

        return LocalCluster(n_workers=0, threads_per_worker=1, processes=True,
                            memory_limit=WORKER_MEMORY, host="127.0.0.1",
                            dashboard_address=None)
    from dask_jobqueue import SLURMCluster

    slurm = spec["slurm"]
    os.environ["SLURM_CONF"] = slurm["conf"]
    logs = Path(slurm["logs"])
    return SLURMCluster(
        cores=1, processes=1, memory=WORKER_MEMORY, walltime="01:00:00",
        job_name="bench-scaling", python=sys.executable,
        log_directory=str(logs), local_directory=str(logs / "scratch"),
        job_extra_directives=[f"--chdir={logs}"],
        scheduler_options={"host": slurm["host_address"], "dashboard": False,
                           "dashboard_address": ":0"},
        worker_extra_args=["--no-dashboard"], death_timeout=120,
    )


class _MemorySampler:
    """Largest process memory of each worker as the (in-process) scheduler sees it."""

    def __init__(self, cluster: Any) -> None:
        import threading

        self.scheduler = getattr(cluster, "scheduler", None)
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        if self.scheduler is None:
            return
        try:
            states = list(self.scheduler.workers.values())
        except RuntimeError:  # the dict changed under us: next time
            return
        for ws in states:
            name = str(ws.name)
            self.peak[name] = max(self.peak.get(name, 0), int(ws.memory.process))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            self._sample()

    def __enter__(self) -> _MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def _worker_peak_rss_mib() -> float:
    """Peak RSS of the calling process (a worker), MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(spec: dict) -> dict:
    """Run one cluster's case in this process (the ``--case`` child); return its figures.

    Parameters
    ----------
    spec
        ``backend`` (``local`` or ``slurm``), ``workers``, ``files``, ``refine``,
        ``repeat``, ``result`` (``.npy`` path for the first run's climatology) and, for
        Slurm, ``slurm``: ``conf`` (``SLURM_CONF``), ``host_address``, ``logs``.

    Returns
    -------
    dict
        Timings, hosts, memory and the graph's size (see the module docstring).
    """
    import resource
    import socket

    import numpy as np
    from distributed import Client

    from oceandata.analysis import climatology

    n = int(spec["workers"])
    t0 = time.perf_counter()
    cluster = _make_cluster(spec)
    out: dict[str, Any] = {"cluster_seconds": time.perf_counter() - t0}
    try:
        with Client(cluster) as client:
            t1 = time.perf_counter()
            cluster.scale(n)
            client.wait_for_workers(n, timeout=START_TIMEOUT)
            out["start_seconds"] = time.perf_counter() - t1
            hosts = client.run(socket.gethostname)
            out["workers"] = [{"address": addr, "host": host} for addr, host in sorted(
                hosts.items())]
            if spec["backend"] == "slurm":
                out["job_ids"] = sorted(str(job.job_id) for job in cluster.workers.values())
                out["job_script"] = cluster.job_script()
            t2 = time.perf_counter()
            da = lazy_sst(spec["files"], int(spec["refine"]))
            clim = climatology(da, freq="month")
            out["graph_seconds"] = time.perf_counter() - t2
            out["tasks"] = len(clim.data.__dask_graph__())
            out["input"] = {"shape": list(da.shape), "gb": da.nbytes / 1e9,
                            "chunks": int(da.data.npartitions),
                            "chunk_mb": float(np.prod(da.data.chunksize)) * da.dtype.itemsize
                            / 1e6}
            runs, worker_cpu, process_cpu = [], [], []
            with _MemorySampler(cluster) as sampler:
                for rep in range(int(spec["repeat"])):
                    cpu_w, cpu_p = client.run(time.process_time), time.process_time()
                    start = time.perf_counter()
                    values = clim.compute().values
                    runs.append(time.perf_counter() - start)
                    process_cpu.append(time.process_time() - cpu_p)
                    after = client.run(time.process_time)
                    worker_cpu.append(sum(after[a] - cpu_w[a] for a in after))
                    if rep == 0:
                        np.save(spec["result"], values)
                    del values
            out["compute_seconds"] = runs
            out["worker_cpu_seconds"] = worker_cpu
            out["process_cpu_seconds"] = process_cpu
            out["scheduler_peak_mib"] = {k: v / 2**20 for k, v in sampler.peak.items()}
            peaks = client.run(_worker_peak_rss_mib)
            out["worker_peak_rss_mib"] = {addr: peaks[addr] for addr in sorted(peaks)}
    except BaseException:
        cluster.close()
        raise
    t3 = time.perf_counter()
    cluster.close()
    out["close_seconds"] = time.perf_counter() - t3
    out["process_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


# --------------------------------------------------------------------------- the parent


@dataclass
class Case:
    """One cluster: what ran and what it gave, or why not."""

    backend: str
    workers: int
    figures: dict = field(default_factory=dict)
    skipped: str | None = None
    failed: str | None = None
    check: dict | None = None
    slurm_jobs: list[dict] = field(default_factory=list)
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)
    child_seconds: float | None = None
    child_peak_rss_mib: float | None = None

    @property
    def name(self) -> str:
        """``LocalCluster x1`` and the like."""
        return f"{LABEL[self.backend]} x{self.workers}"

    @property
    def ok(self) -> bool:
        """Ran and agreed with the reference."""
        return bool(self.figures) and not self.failed and not self.skipped

    @property
    def seconds(self) -> float | None:
        """Median compute seconds."""
        runs = self.figures.get("compute_seconds")
        return statistics.median(runs) if runs and self.ok else None


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _run_case(case: Case, spec: dict) -> None:
    """Run *case* in a child process with *spec*; fill its figures or its failure."""
    print(f"{case.name} ...", file=sys.stderr, end=" ", flush=True)
    case.load_before = _load()
    try:
        child = run_child([*SELF, "--case", json.dumps(spec)], cwd=ROOT)
    except MethodFailed as exc:
        case.failed = str(exc)
        print(f"FAILED: {exc}", file=sys.stderr)
        return
    finally:
        case.load_after = _load()
    case.figures = json.loads(child.stdout.strip().splitlines()[-1])
    case.child_seconds, case.child_peak_rss_mib = child.seconds, child.peak_rss_mib
    runs = ", ".join(f"{s:.1f}" for s in case.figures["compute_seconds"])
    print(f"start {case.figures['start_seconds']:.1f} s, compute {runs} s", file=sys.stderr)


def _seconds_between(a: str, b: str) -> float | None:
    try:
        return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()
    except ValueError:
        return None


def _slurm_records(slurm: Any, case: Case) -> None:
    """Fill *case*'s Slurm jobs from ``sacct``: node, submit-to-start, state."""
    fields = ("JobID", "State", "Submit", "Start", "End", "NodeList", "AllocCPUS")
    for job in case.figures.get("job_ids", []):
        try:
            slurm.wait_for_accounting(int(job), timeout=120)
        except Exception as exc:  # a record late under load: say so, keep the figures
            case.slurm_jobs.append({"JobID": job, "error": f"{type(exc).__name__}: {exc}"})
            continue
        rows = [r for r in slurm.sacct(int(job), fields) if r["JobID"] == job]
        if rows:
            row = dict(rows[0])
            row["queue_seconds"] = _seconds_between(row["Submit"], row["Start"])
            case.slurm_jobs.append(row)


def _check_placement(case: Case, slurm: Any) -> None:
    """A Slurm case's workers must sit on *workers* different nodes, at node addresses."""
    workers = case.figures.get("workers", [])
    hosts = [w["host"] for w in workers]
    problems = []
    if len(set(hosts)) != case.workers:
        problems.append(f"workers on hosts {hosts}, not on {case.workers} different nodes")
    for w in workers:
        address = slurm.node_addresses.get(w["host"])
        if address is None or not w["address"].startswith(f"tcp://{address}:"):
            problems.append(f"worker {w['address']} is not at {w['host']}'s node address")
    if problems:
        case.failed = "; ".join(problems)


def _compare(reference: str, other: str) -> dict:
    """Largest absolute difference and NaN masks of two saved climatologies."""
    import numpy as np

    a, b = np.load(reference), np.load(other)
    same_mask = a.shape == b.shape and bool((np.isnan(a) == np.isnan(b)).all())
    diff = float(np.nanmax(np.abs(a.astype("f8") - b.astype("f8")))) if same_mask else None
    return {"max_abs_diff": diff, "same_mask": same_mask,
            "identical": same_mask and bool(np.array_equal(a, b, equal_nan=True)),
            "ok": same_mask and diff is not None and diff <= TOLERANCE}


def summarise(cases: list[Case], meta: dict) -> dict:
    """Speed-ups, efficiencies and everything measured, as stored in the JSON."""
    by = {(c.backend, c.workers): c for c in cases}
    rows = []
    for c in cases:
        base = by.get((c.backend, 1))
        local = by.get(("local", c.workers))
        speedup = base.seconds / c.seconds if base and base.seconds and c.seconds else None
        f = c.figures
        rows.append({
            "cluster": c.name, "backend": c.backend, "workers": c.workers,
            "skipped": c.skipped, "failed": c.failed,
            "hosts": [w["host"] for w in f.get("workers", [])],
            "worker_addresses": [w["address"] for w in f.get("workers", [])],
            "start_seconds": f.get("start_seconds"),
            "cluster_seconds": f.get("cluster_seconds"),
            "close_seconds": f.get("close_seconds"),
            "graph_seconds": f.get("graph_seconds"), "tasks": f.get("tasks"),
            "compute_seconds_runs": f.get("compute_seconds"),
            "compute_seconds_median": c.seconds,
            "speedup": speedup,
            "efficiency": speedup / c.workers if speedup else None,
            "worker_cpu_seconds_runs": f.get("worker_cpu_seconds"),
            "process_cpu_seconds_runs": f.get("process_cpu_seconds"),
            "cpu_share": (statistics.median(
                cpu / (wall * c.workers) for cpu, wall in
                zip(f["worker_cpu_seconds"], f["compute_seconds"], strict=True))
                if c.seconds else None),
            "scheduler_ms_per_task": (1e3 * statistics.median(f["process_cpu_seconds"])
                                      / f["tasks"] if c.seconds else None),
            "over_local_same_workers": (c.seconds / local.seconds
                                        if c.backend != "local" and local and local.seconds
                                        and c.seconds else None),
            "scheduler_peak_mib": f.get("scheduler_peak_mib"),
            "worker_peak_rss_mib": f.get("worker_peak_rss_mib"),
            "process_peak_rss_mib": f.get("process_peak_rss_mib"),
            "child_seconds": c.child_seconds,
            "slurm_jobs": c.slurm_jobs, "check": c.check,
            "load_before": c.load_before, "load_after": c.load_after,
        })
    return {**meta, "cases": rows}


def _absent(case: dict | None) -> str:
    """Why a case has no time: its failure, its skip reason, or not run."""
    case = case or {}
    return case.get("failed") or case.get("skipped") or "not run"


def summary_rows(summary: dict) -> list[dict]:
    """Summary rows of a :func:`summarise` result: the speed-ups, no numeric target.

    Rows: Slurm x2 against Slurm x1, Slurm x2 against LocalCluster x2 and, for context,
    LocalCluster x2 against x1. ``met`` is None (the issue asks for the figures); the
    peak is the largest worker peak RSS of the faster side.
    """
    cases = {(c["backend"], c["workers"]): c for c in summary.get("cases", [])}
    size = summary.get("size", "?")
    gb = (summary.get("data") or {}).get("gb")
    what = f"climatology, {size} ({gb:.2f} GB)" if gb else f"climatology, {size}"
    target = "report (no numeric target in the issue)"

    def seconds(key: tuple[str, int]) -> float | None:
        case = cases.get(key)
        return None if case is None else case.get("compute_seconds_median")

    def peak(key: tuple[str, int]) -> float | None:
        values = (cases.get(key) or {}).get("worker_peak_rss_mib") or {}
        return max(values.values()) if values else None

    out = []
    for case, fast, slow, meaning in (
            ("Slurm x2 nodes vs Slurm x1", ("slurm", 2), ("slurm", 1),
             "Slurm x1 s / Slurm x2 s"),
            ("Slurm x2 nodes vs LocalCluster x2", ("slurm", 2), ("local", 2),
             "LocalCluster x2 s / Slurm x2 s"),
            ("LocalCluster x2 vs x1 (context)", ("local", 2), ("local", 1),
             "LocalCluster x1 s / x2 s")):
        a, b = seconds(fast), seconds(slow)
        anchor = LABEL[slow[0]] + f" x{slow[1]}"
        if a is None or b is None:
            why = "; ".join(f"{LABEL[k[0]]} x{k[1]}: {_absent(cases.get(k))}"
                            for k, v in ((fast, a), (slow, b)) if v is None)
            out.append(row("scaling", f"{case}, {what}", anchor=anchor, target=target,
                           note=f"not measured: {why}"))
            continue
        short = {"local": "local", "slurm": "Slurm"}
        fast_name, slow_name = (f"{short[k[0]]} x{k[1]}" for k in (fast, slow))
        note = (f"compute {slow_name} {b:.1f} s, {fast_name} {a:.1f} s (median of "
                f"{summary.get('repeat', '?')})")
        if slow[1] == 1:
            note += f"; efficiency {b / a / fast[1]:.2f}"
        starts = [(cases.get(k) or {}).get("start_seconds") for k in (slow, fast)]
        if None not in starts:
            note += f"; workers up in {starts[0]:.1f} s and {starts[1]:.1f} s"
        load = summary.get("load_start"), summary.get("load_end")
        if all(load):
            note += f"; load {load[0][0]:.1f} -> {load[1][0]:.1f}"
        out.append(row("scaling", f"{case}, {what}", anchor=anchor, ratio=b / a,
                       ratio_meaning=meaning, peak_mib=peak(fast), target=target,
                       met=None, note=note))
    return out


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _mib(values: dict | None) -> str:
    if not values:
        return "n/a"
    return " / ".join(f"{v:.0f}" for _, v in sorted(values.items()))


def table(summary: dict) -> str:
    """The Markdown report of *summary*."""
    m, d = summary["machine"], summary["data"]
    lines = [
        "# Strong scaling of a monthly climatology: LocalCluster and Slurm workers",
        "",
        f"Machine: {m['arch']}, {m['cores']} cores, {m['memory_gib']:.0f} GiB, Python "
        f"{m['python']}, dask {m['dask']}, distributed {m['distributed']}, dask-jobqueue "
        f"{m['dask_jobqueue']}. Run {summary['started']} ({summary['size']} size).",
        "",
        f"**Load average** (1, 5, 15 min) at the start {summary['load_start']}, at the end "
        f"{summary['load_end']}; per cluster below. "
        + ("The machine was **loaded** (other processes running): these figures check the "
           "machinery and are not for quoting; re-measure on an idle machine."
           if max(summary["load_start"][0], summary["load_end"][0]) > 0.5 * m["cores"]
           else "The machine was quiet."),
        "",
        f"Data: COBE-SST2 monthly SST, {d['files']} yearly files of the sample-data registry "
        f"(`{FILES}`, {d['files_mb']:.0f} MB compressed), {d['source_gb']:.3f} GB of float32, "
        f"**tiled lazily** x{d['refine']} "
        f"along latitude and longitude (each cell repeated {d['refine']}x{d['refine']} "
        f"inside the tasks): {' x '.join(map(str, d['shape']))}, {d['gb']:.2f} GB, "
        f"{d['chunks']} chunks of {d['chunk_mb']:.0f} MB (one file, 12 months x the whole "
        f"grid). Computation: `oceandata.analysis.climatology(sst, freq='month')` (flox "
        f"nanmean by `time.month`, map-reduce), {d['tasks']} tasks, result computed into "
        f"the client. Workers: 1 thread, memory limit {WORKER_MEMORY}; Slurm: "
        f"`multi_node_slurm(nodes={SLURM_NODES}, cpus_per_node=1)`, scheduler in the "
        "benchmark's process on the bridge address, each worker a 1-CPU job "
        "(dask-jobqueue `SLURMCluster`).",
        "",
        f"Compute: median of {summary['repeat']} run(s) on the same workers. Speed-up: T(1 "
        "worker) / T(n) of the same kind of cluster; efficiency: speed-up / n. Start: "
        "`cluster.scale(n)` to all n workers connected. Every result equals the "
        f"{summary['reference']}'s within {TOLERANCE:g} degC with the same NaN mask (checked "
        "before anything is written).",
        "",
        "| cluster | workers on | start s | compute s (runs) | speed-up | efficiency | "
        "x LocalCluster | CPU share | worker peak MiB: scheduler : RSS | process peak MiB "
        "| result | load before |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in summary["cases"]:
        if r["compute_seconds_median"] is None:
            why = f"skipped: {r['skipped']}" if r["skipped"] else f"FAILED: {r['failed']}"
            lines.append(f"| {r['cluster']} | {why[:200]} | | | | | | | | | | |")
            continue
        runs = ", ".join(f"{s:.1f}" for s in r["compute_seconds_runs"])
        check = r["check"] or {}
        result = ("reference" if check.get("reference") else
                  "identical" if check.get("identical") else
                  f"max diff {check.get('max_abs_diff', float('nan')):.1e}")
        hosts = ", ".join(r["hosts"]) if r["backend"] == "slurm" else "this machine"
        lines.append(
            f"| {r['cluster']} | {hosts} | {r['start_seconds']:.1f} | "
            f"{r['compute_seconds_median']:.1f} ({runs}) | {_fmt(r['speedup'])} | "
            f"{_fmt(r['efficiency'])} | {_fmt(r['over_local_same_workers'])} | "
            f"{_fmt(r['cpu_share'])} | "
            f"{_mib(r['scheduler_peak_mib'])} : {_mib(r['worker_peak_rss_mib'])} | "
            f"{r['process_peak_rss_mib']:.0f} | {result} | {r['load_before']} |")
    jobs = [(r["cluster"], j) for r in summary["cases"] for j in r["slurm_jobs"]]
    if jobs:
        lines += ["", "Slurm worker jobs (`sacct`; times to the second):", "",
                  "| cluster | job | node | state | submit -> start s |", "|---|---|---|---|---:|"]
        for name, j in jobs:
            if "error" in j:
                lines.append(f"| {name} | {j['JobID']} | | {j['error']} | |")
            else:
                lines.append(f"| {name} | {j['JobID']} | {j['NodeList']} | {j['State']} | "
                             f"{_fmt(j['queue_seconds'], 0)} |")
    if summary.get("slurm_start_seconds") is not None:
        lines += ["", f"The multi-node Slurm itself (3 nodes, slurmdbd, MariaDB) took "
                  f"{summary['slurm_start_seconds']:.0f} s to come up; not counted above."]
    lines += [
        "",
        "CPU share: the workers' CPU seconds during a computation (`time.process_time` "
        "in each worker, summed) over wall seconds x workers, median over the runs; below "
        "1 the workers waited (for data, for the scheduler, or for a core taken by "
        "another process: on a loaded machine mostly the last). x LocalCluster: compute "
        "time over the LocalCluster's with as many workers. Scheduler and client CPU "
        "per task (the benchmark child's CPU seconds during a computation over the "
        "graph's tasks): "
        + ", ".join(f"{r['cluster']} {r['scheduler_ms_per_task']:.2f} ms"
                    for r in summary["cases"] if r["scheduler_ms_per_task"] is not None)
        + ".",
        "",
        "Worker peak memory: first the largest process memory the scheduler saw in the "
        f"workers' heartbeats (sampled every {SAMPLE_EVERY} s during the computations), "
        "then each worker process's own peak RSS (`getrusage`), one figure per worker. "
        "Process peak: the benchmark child holding the scheduler, the client and the "
        "result (`getrusage` in that process).",
    ]
    return "\n".join(lines) + "\n"


def _machine() -> dict:
    import dask
    import dask_jobqueue
    import distributed

    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {"arch": platform.machine(), "cores": os.cpu_count(), "memory_gib": pages / 2**30,
            "python": platform.python_version(), "dask": dask.__version__,
            "distributed": distributed.__version__,
            "dask_jobqueue": dask_jobqueue.__version__}


def _slurm_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "the multi-node Slurm needs root (network namespaces); run as root"
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        return "dask-jobqueue is not installed"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return the exit code (1 if a cluster failed or disagreed)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks scaling",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3,
                        help="computations per cluster on the same workers (median)")
    parser.add_argument("--small", action="store_true",
                        help=f"refine x{REFINE['small']} (0.75 GB) instead of "
                             f"x{REFINE['full']} (3.0 GB)")
    parser.add_argument("--refine", type=int, help="refinement factor (overrides --small)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2],
                        help="worker counts (1 is the reference and always runs)")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "var" / "bench" / "scaling",
                        help="working files, removed at the end (default var/bench/scaling)")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "scaling.md",
                        help="Markdown table; the JSON goes next to it (.json)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    refine = args.refine or REFINE["small" if args.small else "full"]
    if refine < 1:
        parser.error("--refine must be at least 1")
    counts = sorted({1, *args.workers})
    if counts[0] < 1 or counts[-1] > SLURM_NODES:
        parser.error(f"--workers must be between 1 and {SLURM_NODES}")

    from oceandata import sample_data
    from oceandata.errors import OceandataError

    try:
        files = [str(p) for p in sample_data.fetch_matching(FILES)]
    except OceandataError as exc:
        print(f"cannot fetch the sample files: {exc}", file=sys.stderr)
        return 1
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    load_start = _load()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=args.work_dir.resolve()))
    # interleaved, so that a change of load hits both kinds alike: x1, x1, x2, x2
    cases = [Case(b, n) for n in counts for b in ("local", "slurm") if b in args.backends]
    spec = {"files": files, "refine": refine, "repeat": args.repeat}
    slurm_seconds = None
    try:
        with contextlib.ExitStack() as stack:
            slurm = None
            if any(c.backend == "slurm" for c in cases):
                slurm, slurm_seconds = _start_slurm(stack, cases, work)
            for case in cases:
                if case.skipped:
                    continue
                _run_one(case, spec, work, slurm)
        reference = work / "local-1.npy"
        if not reference.exists():
            reference = work / "slurm-1.npy"
        for case in cases:
            result = work / f"{case.backend}-{case.workers}.npy"
            if not case.figures or not result.exists():
                continue
            if result == reference:
                case.check = {"reference": True, "ok": True}
                continue
            case.check = _compare(str(reference), str(result))
            if not case.check["ok"]:
                case.failed = f"result differs from {reference.stem}: {case.check}"
        first = next((c.figures for c in cases if c.figures), {})
        data = {"files": len(files), "refine": refine,
                "files_mb": sum(Path(f).stat().st_size for f in files) / 1e6,
                **first.get("input", {}), "tasks": first.get("tasks")}
        data["source_gb"] = data["gb"] / refine**2 if "gb" in data else None
        meta = {"started": started, "size": "small" if refine == REFINE["small"] else
                "full" if refine == REFINE["full"] else f"refine {refine}",
                "machine": _machine(), "load_start": load_start, "load_end": _load(),
                "repeat": args.repeat, "data": data, "worker_memory": WORKER_MEMORY,
                "tolerance_degC": TOLERANCE, "slurm_nodes": SLURM_NODES,
                "reference": next((c.name for c in cases if (c.check or {}).get("reference")),
                                  None),
                "slurm_start_seconds": slurm_seconds}
        summary = summarise(cases, meta)
        summary["summary"] = summary_rows(summary)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not data.get("shape"):
        print("no cluster ran:", *(f"{c.name}: {c.failed or c.skipped}" for c in cases),
              sep="\n  ", file=sys.stderr)
        return 1
    text = table(summary)
    print(text)
    if any(c.failed for c in cases):
        print(f"not written to {args.output}: a cluster failed (see above)", file=sys.stderr)
        return 1
    _write_atomic(args.output.with_suffix(".json"), json.dumps(summary, indent=1) + "\n")
    _write_atomic(args.output, text)
    print(f"written to {args.output} and {args.output.with_suffix('.json')}", file=sys.stderr)
    return 0


def _queue_drained(slurm: Any, timeout: float = 120.0) -> list[int]:
    """Wait until ``squeue`` lists no job (cancelled workers finish completing); return
    the jobs still there after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while (left := slurm.queue()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def _start_slurm(stack: contextlib.ExitStack, cases: list[Case],
                 work: Path) -> tuple[Any, float | None]:
    """Enter the multi-node Slurm on *stack*; return it and its start seconds.

    When it cannot run here, the Slurm *cases* are marked skipped with the reason and
    ``(None, None)`` is returned.
    """
    slurm_cases = [c for c in cases if c.backend == "slurm"]
    reason = _slurm_unavailable_reason()
    if reason is None:
        from oceandata.testing.slurm import SlurmUnavailable, multi_node_slurm

        print(f"starting a {SLURM_NODES}-node Slurm ...", file=sys.stderr, end=" ", flush=True)
        started = time.perf_counter()
        try:
            slurm = stack.enter_context(multi_node_slurm(
                work / "slurm", nodes=SLURM_NODES, cpus_per_node=1, timeout=SLURM_TIMEOUT))
        except SlurmUnavailable as exc:
            reason = f"the multi-node Slurm did not start: {str(exc).splitlines()[0]}"
        else:
            seconds = time.perf_counter() - started
            print(f"{seconds:.0f} s", file=sys.stderr)
            (work / "slurm-logs" / "scratch").mkdir(parents=True)
            return slurm, seconds
    print(f"Slurm rows skipped: {reason}", file=sys.stderr)
    for case in slurm_cases:
        case.skipped = reason
    return None, None


def _run_one(case: Case, spec: dict, work: Path, slurm: Any) -> None:
    """Run *case*; for Slurm, check where its workers ran, read ``sacct``, drain the queue."""
    spec = {**spec, "backend": case.backend, "workers": case.workers,
            "result": str(work / f"{case.backend}-{case.workers}.npy")}
    if case.backend == "local":
        _run_case(case, spec)
        return
    spec["slurm"] = {"conf": str(slurm.slurm_conf), "host_address": slurm.host_address,
                     "logs": str(work / "slurm-logs")}
    _run_case(case, spec)
    if case.figures:
        _check_placement(case, slurm)
        _slurm_records(slurm, case)
    left = _queue_drained(slurm)
    if left:
        slurm.scancel(*left)
        case.failed = case.failed or f"worker jobs left after close: {left}"


if __name__ == "__main__":
    sys.exit(main())
