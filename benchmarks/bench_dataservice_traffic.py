"""Open-data service under concurrent clients: requests per second, p50/p95, estimate cost.

``oceandata serve`` runs in a subprocess on 127.0.0.1 with the sample catalog and limits
high enough that nothing is refused (the rate and concurrency guards still run: their
cost is part of every figure). Measured side by side in one run:

``small subset``
    ``GET datasets/cobe_sst2/subset?bbox=<10 x 10 degrees>&time=<3 months>&format=nc4``
    (about 1.2 k values), from 1, 5 and 20 concurrent clients (threads with their own
    ``requests.Session``), ``--requests`` each level: requests per second, p50 and p95
    latency, the service's peak RSS (``VmHWM``).
``dry run``
    The same URLs with ``dry_run=1``: the estimate alone, over HTTP.
``estimate()``
    :func:`oceandata.dataservice.estimate` on the same requests in this process (the
    dataset already open): what a Python user pays, the subset selection included.
``estimate own``
    What the size guard adds to a download: :func:`oceandata.dataservice.sizing.
    subset_plan` minus :func:`oceandata.subset` on the same request, both timed here
    (the download writes the very subset the guard selected, so the selection is not
    the estimate's cost).

The issue's target: the estimate under 5% of a small request's time (the ratio
``estimate own`` p50 / ``small subset`` p50 at one client). Nothing is asserted. The
figures and the summary row go to ``benchmarks/results/dataservice_traffic.json``
(atomically). Run::

    python benchmarks/bench_dataservice_traffic.py
    python benchmarks/bench_dataservice_traffic.py --requests 40   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script: import benchmarks._common
    sys.path.insert(0, str(HERE.parent))

from benchmarks._common import _write_atomic  # noqa: E402
from benchmarks.summary import now_iso, row  # noqa: E402

RESULTS = HERE / "results" / "dataservice_traffic.json"
#: the issue's target: the estimate's own cost under this share of a small request's time
TARGET_SHARE = 0.05
LEVELS = (1, 5, 20)
#: limits that refuse nothing in this benchmark (the guards still run)
OPEN_LIMITS = {"OCEANDATA_DATA__ANONYMOUS__RATE": "1000000/minute",
               "OCEANDATA_DATA__ANONYMOUS__CONCURRENT": "64",
               "OCEANDATA_DATA__ANONYMOUS__DAILY_BYTES": "1000TB"}


def small_requests(n: int) -> list[dict[str, str]]:
    """*n* small subset requests over different boxes and months (no two alike)."""
    out = []
    for i in range(n):
        west = -180 + (i * 37) % 340
        south = -60 + (i * 11) % 110
        year = 1950 + i % 50
        out.append({"bbox": f"{west},{south},{west + 10},{south + 10}",
                    "time": f"{year}-01/{year}-03", "format": "nc4"})
    return out


def _peak(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def start_service(folder: Path) -> tuple[subprocess.Popen, str]:
    """``oceandata serve`` on a free loopback port, once it answers."""
    from oceandata.netutil import free_port

    port = free_port()
    env = {**os.environ, **OPEN_LIMITS, "OCEANDATA_DATA_DIR": str(folder / "data"),
           "OCEANDATA_ALLOC_DB_URL": f"sqlite:///{folder / 'alloc.sqlite'}"}
    env.pop("JUPYTERHUB_API_TOKEN", None)
    command = [str(Path(sys.executable).with_name("oceandata")), "serve", "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait = threading.Event()
    for _ in range(1200):
        if proc.poll() is not None:
            raise SystemExit("the service stopped at start")
        try:
            if requests.get(f"{base}/api/health", timeout=2).ok:
                return proc, base
        except requests.ConnectionError:
            wait.wait(0.1)
    proc.kill()
    raise SystemExit("the service did not answer within 120 s")


def run_level(base: str, clients: int, queries: list[dict[str, str]],
              extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Send *queries* from *clients* threads; latency of each, wall time of all."""
    local = threading.local()

    def one(query: dict[str, str]) -> float:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        t0 = time.perf_counter()
        r = session.get(f"{base}/datasets/cobe_sst2/subset", params={**query, **(extra or {})},
                        timeout=300)
        r.raise_for_status()
        _ = r.content
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(one, queries))
    wall = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=20)
    return {"clients": clients, "requests": len(queries), "rps": len(queries) / wall,
            "p50_ms": statistics.median(latencies) * 1e3, "p95_ms": q[18] * 1e3}


def _summary(method: str, times: list[float]) -> dict[str, Any]:
    return {"method": method, "clients": 1, "requests": len(times),
            "p50_ms": statistics.median(times) * 1e3,
            "p95_ms": statistics.quantiles(times, n=20)[18] * 1e3}


def in_process_estimate(queries: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The public estimate, and the guard's own cost (plan minus selection), per query."""
    import oceandata
    from oceandata.dataservice import downloads, estimate, sizing

    estimate("cobe_sst2", **queries[0])  # opens the dataset
    public = []
    for query in queries:
        t0 = time.perf_counter()
        estimate("cobe_sst2", **query)
        public.append(time.perf_counter() - t0)
    full = oceandata.open_catalog().entry("cobe_sst2")._open(version=None, chunks=None)
    fmt = downloads.FORMATS["nc4"]
    own = []
    for query in queries:
        parsed = downloads.parse_request(query["bbox"], query["time"], None, None)
        t0 = time.perf_counter()
        oceandata.subset(full, **parsed)
        t1 = time.perf_counter()
        sizing.subset_plan(full, parsed, fmt)
        t2 = time.perf_counter()
        own.append(max(0.0, (t2 - t1) - (t1 - t0)))
    return [_summary("estimate()", public), _summary("estimate own", own)]


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary row: the estimate's own p50 over a small request's p50 (one client)."""
    single = next(r for r in rows if r["method"] == "small subset" and r["clients"] == 1)
    own = next(r for r in rows if r["method"] == "estimate own")
    ratio = own["p50_ms"] / single["p50_ms"]
    met = ratio < TARGET_SHARE
    note = (f"estimate own p50 {own['p50_ms']:.2f} ms, small subset p50 "
            f"{single['p50_ms']:.1f} ms over {single['requests']} requests "
            f"({single['rps']:.1f} req/s)")
    if not met:
        note = f"missed: {ratio:.1%} against < {TARGET_SHARE:.0%}; " + note
    return [row("dataservice traffic", "size estimate of a small subset download (1 client)",
                anchor="the small subset request itself (HTTP, nc4)", ratio=ratio,
                ratio_meaning="estimate own p50 / small request p50",
                peak_mib=single.get("peak_mib"),
                target=f"estimate < {TARGET_SHARE:.0%} of a small request's time",
                met=met, note=note)]


def main(argv: list[str] | None = None) -> int:
    """Serve, send the requests, print the table and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="requests per level")
    args = parser.parse_args(argv)
    if args.requests < 5:
        parser.error("--requests must be at least 5 (5 are sent first to warm up)")
    queries = small_requests(args.requests)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-traffic-") as tmp:
        proc, base = start_service(Path(tmp))
        try:
            run_level(base, 1, queries[:5])  # warm: dataset opened, imports done
            for clients in LEVELS:
                row = run_level(base, clients, queries)
                row.update(method="small subset", peak_mib=_peak(proc.pid) / 2**20)
                rows.append(row)
            for clients in (1, 20):
                row = run_level(base, clients, queries, {"dry_run": "1"})
                row.update(method="dry run", peak_mib=_peak(proc.pid) / 2**20)
                rows.append(row)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    rows += in_process_estimate(queries)
    single = next(r for r in rows if r["method"] == "small subset" and r["clients"] == 1)
    ratio = rows[-1]["p50_ms"] / single["p50_ms"]
    print(f"{'method':<22}{'clients':>8}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'peak MiB':>10}")
    for r in rows:
        print(f"{r['method']:<22}{r['clients']:>8}{r.get('rps', float('nan')):>9.1f}"
              f"{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}{r.get('peak_mib', float('nan')):>10.0f}")
    print(f"estimate / small request (p50, one client): {ratio:.2%} (target < 5%)")
    _write_atomic(RESULTS, json.dumps({"date": now_iso(), "machine": platform.platform(),
                                       "cpus": os.cpu_count(), "rows": rows,
                                       "estimate_ratio": ratio,
                                       "summary": summary_rows(rows)}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
