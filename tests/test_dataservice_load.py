"""The open-data service under a bounded load: every request gets a documented answer.

``oceandata serve`` runs in a subprocess on 127.0.0.1 (its own memory, its own ledger
database), with small limits for anonymous clients so that the load meets every guard:
200 mixed requests from 20 concurrent clients — small subsets (netCDF-4, CSV, JSON),
OPeNDAP metadata and reads, Zarr metadata and chunk reads, griddap, EDR, oversized
requests, bad and unknown ones. Checked:

- every answer is 200, 400, 404, 413 or 429 (202 needs an account: the async path is
  tests/test_dataservice_async.py), none is a 5xx, none hangs (each has a deadline);
- each kind of request gets the answer it should (oversized: 413 with a split; bad: 400;
  unknown: 404), or 429 with ``Retry-After`` when the client is over its rate;
- the service's peak resident memory (``VmHWM``) stays under :data:`PEAK_BOUND`;
- the bytes-served ledger, read from the database after the service stopped, holds
  every byte of every answer exactly once: its total equals the sum of the answers'
  body sizes, per protocol too.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from oceandata.dataservice.policy import classify
from oceandata.netutil import free_port

#: the service's documented bound on its peak resident memory under this load
PEAK_BOUND = 1024 * 2**20
CLIENTS = 20
REQUESTS = 200
#: anonymous limits of the run: a 20 MB answer at most, a rate the load exceeds
LIMITS = {"OCEANDATA_DATA__ANONYMOUS__SYNC_BYTES": "20MB",
          "OCEANDATA_DATA__ANONYMOUS__RATE": "150/minute",
          "OCEANDATA_DATA__ANONYMOUS__CONCURRENT": "4",
          "OCEANDATA_DATA__QUEUE_WAIT": "30"}

#: (name, path, query, the answers it may get besides 429)
MIX: list[tuple[str, str, dict[str, str], set[int]]] = [
    ("subset nc4", "/datasets/cobe_sst2/subset",
     {"bbox": "150,-10,160,0", "time": "1990-01/1990-03", "format": "nc4"}, {200}),
    ("subset csv", "/datasets/oisst_wa/subset", {"time": "2000-01/2000-02", "format": "csv"},
     {200}),
    ("subset json", "/datasets/cobe_sst2/subset",
     {"bbox": "-20,30,-10,40", "time": "1950-01/1950-06", "format": "json"}, {200}),
    ("dap das", "/datasets/cobe_sst2/opendap.das", {}, {200}),
    ("dap dods", "/datasets/cobe_sst2/opendap.dods?sst[0:1:2][10:1:29][100:1:139]", {}, {200}),
    ("zarr meta", "/datasets/cobe_sst2/zarr/zarr.json", {}, {200}),
    ("zarr chunk", "/datasets/cobe_sst2/zarr/sst/c/{i}/0/0", {}, {200}),
    ("griddap", "/erddap/griddap/cobe_sst2.csv?sst[0][0:5][0:5]", {}, {200}),
    ("edr area", "/datasets/cobe_sst2/edr/area",
     {"coords": "POLYGON((200 0, 202 0, 202 2, 200 2, 200 0))", "parameter-name": "sst",
      "datetime": "1950-01-01T00:00:00/1950-03-31T00:00:00", "f": "csv"}, {200}),
    ("oversized", "/datasets/cobe_sst2/subset", {"format": "nc"}, {413}),
    ("oversized dap", "/datasets/cobe_sst2/opendap.dods?sst", {}, {413}),
    ("bad bbox", "/datasets/cobe_sst2/subset", {"bbox": "west,south"}, {400}),
    ("bad format", "/datasets/cobe_sst2/subset", {"format": "xls"}, {400}),
    ("unknown", "/datasets/no_such_data/subset", {}, {404}),
]


def _peak(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("load")
    db = tmp / "alloc.sqlite"
    port = free_port()
    env = {**os.environ, **LIMITS, "OCEANDATA_DATA_DIR": str(tmp / "data"),
           "OCEANDATA_ALLOC_DB_URL": f"sqlite:///{db}"}
    env.pop("JUPYTERHUB_API_TOKEN", None)
    log = open(tmp / "service.log", "wb")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("oceandata")), "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = threading.Event()
        for _ in range(1200):  # the catalog is indexed at start: up to 120 s
            if proc.poll() is not None:
                raise AssertionError((tmp / "service.log").read_text()[-2000:])
            try:
                if requests.get(f"{base}/api/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                deadline.wait(0.1)  # the socket is not listening yet
        else:
            raise AssertionError("the service did not answer within 120 s")
        yield base, proc, db, tmp / "service.log"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def _one(base: str, item: tuple[str, str, dict[str, str], set[int]], i: int):
    name, path, query, _ = item
    url = base + path.replace("{i}", str(i % 50))
    r = requests.get(url, params=query or None, timeout=180)
    return name, path.replace("{i}", str(i % 50)), query, r


def test_mixed_load_gets_documented_answers_and_an_exact_ledger(service) -> None:
    base, proc, db, _log = service
    rng = random.Random(16)
    plan = [MIX[i % len(MIX)] for i in range(REQUESTS)]
    rng.shuffle(plan)
    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(lambda a: _one(base, a[1], a[0]), enumerate(plan)))

    statuses = Counter(r.status_code for *_, r in answers)
    sent: dict[str, int] = defaultdict(int)
    for name, path, query, r in answers:
        expected = dict((m[0], m[3]) for m in MIX)[name]
        assert r.status_code in expected | {429}, (name, r.status_code, r.text[:300])
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["detail"].endswith(".")
        if r.status_code == 413:
            body = r.json()
            assert body["split"]["parts"] >= 2 and body["estimate"]["bytes"] > body["limit"]
            assert "async" not in body or body["async"] is None  # anonymous: no job offer
        if r.status_code in (400, 404):
            assert r.json()["detail"].count("\n") == 0
        kind = classify(path, query)
        sent[kind.protocol] += len(r.content)
    assert statuses[200] >= REQUESTS // 3, statuses
    assert statuses[429] >= 1, statuses  # the rate limit was met
    assert not [s for s in statuses if s >= 500], statuses

    peak = _peak(proc.pid)
    assert peak < PEAK_BOUND, f"peak {peak / 2**20:.0f} MiB"

    # stop the service (it flushes its ledger), then read the ledger
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    from oceandata.dataservice.ledger import totals

    recorded = totals(f"sqlite:///{db}", by="protocol")
    assert sum(recorded.values()) == sum(sent.values()), (recorded, dict(sent))
    assert {k: v for k, v in recorded.items() if v} == {k: v for k, v in sent.items() if v}
    print(f"\nload: {dict(statuses)}; peak {peak / 2**20:.0f} MiB; "
          f"{sum(sent.values()) / 1e6:.1f} MB served, ledger equal")
