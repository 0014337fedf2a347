"""Fair use of the open-data service (:mod:`oceandata.dataservice.traffic`) on uvicorn.

One service is served on loopback for the module. Each test sets small limits through
``inner.state.traffic`` and speaks as its own client: an ``X-Forwarded-For`` address sent
from 127.0.0.1, a trusted proxy, so the counters of one test never touch another's.
Slowness is real: subset downloads of COBE-SST2 (60 yearly chunks) written by dask.

The ledger is the real one on a SQLite database of the module, which also keeps every
record the traffic layer hands it (:class:`RecordingLedger`), to compare with the bytes
the clients got. The Redis test starts a real ``redis-server``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from dataservice_helpers import make_catalog, serving
from starlette.requests import Request
from starlette.routing import Mount

from oceandata.config import AnonymousLimits, TrafficSettings
from oceandata.dataservice import create_app, policy, traffic
from oceandata.dataservice.ledger import Ledger
from oceandata.netutil import free_port

#: a 10-year one: 14 MB, about 1 s
MEDIUM = "/datasets/cobe_sst2/subset?time=1950-01/1959-12&format=nc4"
#: the whole series as netCDF-4: 84 MB, 60 dask chunks, several seconds of writing
WHOLE = "/datasets/cobe_sst2/subset?format=nc4"
#: a 30 kB subset
SMALL = "/datasets/cobe_sst2/subset?bbox=0,-10,10,10&time=1950-01/1950-03"


class RecordingLedger(Ledger):
    """The ledger (on the test's own SQLite allocations database) keeping, besides its
    counts, every record the traffic layer hands it."""

    def __init__(self, db_url: str) -> None:
        super().__init__(db_url)
        self.records: list[tuple[str, str | None, str, int]] = []
        self._records_lock = threading.Lock()

    def record(self, key: str, dataset: str | None, protocol: str, nbytes: int,
               when: Any = None) -> None:
        with self._records_lock:
            self.records.append((key, dataset, protocol, nbytes))
        super().record(key, dataset, protocol, nbytes, when)

    def of(self, key: str) -> list[tuple[str, str | None, str, int]]:
        with self._records_lock:
            return [r for r in self.records if r[0] == key]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until *check* holds (polled), or fail after *timeout* seconds."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        threading.Event().wait(0.01)  # polling a counter, bounded by the deadline
    return time.monotonic() - start


def layer_of(app: Any) -> traffic.TrafficLayer:
    """The app's traffic layer (mounted as AuthPrefix(TrafficLayer(inner)))."""
    mount = next(r for r in app.routes if isinstance(r, Mount))
    return mount.app.app


def key_of(inner: Any, address: str) -> str:
    """The client key the service gives an anonymous client at *address*."""
    scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"",
             "client": ("127.0.0.1", 1), "app": inner, "state": {},
             "headers": [(b"x-forwarded-for", address.encode())]}
    return policy.client_key(Request(scope))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    folder = tmp_path_factory.mktemp("traffic")
    app = create_app(make_catalog(folder / "catalog"), prefix="/")
    inner = app.state.inner
    inner.state.ledger = RecordingLedger(f"sqlite:///{folder / 'alloc.sqlite'}")
    inner.state.download_dir = str(folder / "spool")
    (folder / "spool").mkdir()
    with serving(app) as base:
        yield SimpleNamespace(base=base, inner=inner, ledger=inner.state.ledger,
                              spool=folder / "spool", layer=layer_of(app))


@pytest.fixture
def limits(service: SimpleNamespace) -> Iterator[Callable[..., None]]:
    """Set the service's traffic settings for one test (``anonymous=`` keywords of
    :class:`AnonymousLimits`, the rest of :class:`TrafficSettings`)."""
    def set_limits(anonymous: dict[str, Any] | None = None, **settings: Any) -> None:
        service.inner.state.traffic = TrafficSettings(
            anonymous=AnonymousLimits(**(anonymous or {})), **settings)

    yield set_limits
    service.inner.state.traffic = None


def client(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def counted_get(service: SimpleNamespace, path: str, address: str,
                **headers: str) -> requests.Response:
    """GET *path* as the client at *address*, once the service has counted the answer
    (the client has its last byte a moment before the ledger has the record)."""
    key = key_of(service.inner, address)
    before = len(service.ledger.of(key))
    response = requests.get(service.base + path, headers={**client(address), **headers},
                            timeout=60, allow_redirects=False)
    if path not in ("/api/health", "/metrics"):
        wait_until(lambda: len(service.ledger.of(key)) > before, 10, "the answer counted")
    return response


def one_sentence(text: str) -> bool:
    return text.endswith(".") and ". " not in text.rstrip(".")


def test_rate_limit_answers_429_that_browsers_can_read(service: SimpleNamespace,
                                                       limits: Callable[..., None]) -> None:
    limits(anonymous={"rate": "3/minute"})
    who = {**client("10.16.1.1"), "Origin": "https://example.org"}
    answers = [requests.get(f"{service.base}/datasets.json", headers=who, timeout=30)
               for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    refused = answers[-1]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["access-control-allow-origin"] == "*"
    assert "retry-after" in refused.headers["access-control-expose-headers"].lower()
    detail = refused.json()["detail"]
    assert one_sentence(detail) and "3/minute" in detail, detail
    # a browser gets the small page; another client is not limited; health never is
    page = requests.get(f"{service.base}/datasets.json", timeout=30,
                        headers={**who, "Accept": "text/html"})
    assert page.status_code == 429 and "<h1>429</h1>" in page.text
    other = requests.get(f"{service.base}/datasets.json", headers=client("10.16.1.2"),
                         timeout=30)
    assert other.status_code == 200
    for _ in range(4):
        assert requests.get(f"{service.base}/api/health", headers=who,
                            timeout=30).status_code == 200


def _timed_get(url: str, headers: dict[str, str]) -> tuple[int, float, float, int]:
    """GET *url*: status, seconds to the headers and to the last byte, body length."""
    start = time.monotonic()
    with requests.get(url, headers=headers, stream=True, timeout=120) as response:
        headers_at = time.monotonic() - start
        size = sum(len(piece) for piece in response.iter_content(1 << 20))
    return response.status_code, headers_at, time.monotonic() - start, size


def test_concurrent_requests_beyond_the_cap_wait_then_proceed_or_get_429(
        service: SimpleNamespace, limits: Callable[..., None]) -> None:
    # 2 served at once, 4 sent: two wait 0.3 s (the two writes take longer), then 429
    limits(anonymous={"concurrent": 2}, queue_wait=0.3)
    who = client("10.16.2.1")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: _timed_get(service.base + MEDIUM, who), range(4)))
    statuses = sorted(a[0] for a in answers)
    assert statuses == [200, 200, 429, 429], answers
    refused = [a for a in answers if a[0] == 429]
    served = [a for a in answers if a[0] == 200]
    assert all(0.3 <= a[1] < min(s[1] for s in served) for a in refused), answers

    # 1 at once, a long wait: the second proceeds once the first is completely sent
    limits(anonymous={"concurrent": 1}, queue_wait=60)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: _timed_get(service.base + MEDIUM, who), range(2)))
    assert [a[0] for a in answers] == [200, 200], answers
    first, second = sorted(answers, key=lambda a: a[1])
    assert second[1] >= first[2] - 0.05, answers  # headers after the first's last byte
    # both complete (the files' HDF5 metadata may differ by a few kB: provenance times)
    assert first[3] > 5_000_000 and abs(first[3] - second[3]) < 0.01 * first[3], answers
    wait_until(lambda: service.layer.clients() == 0, 10, "idle clients forgotten")


def test_daily_quota_stops_data_not_metadata(service: SimpleNamespace,
                                             limits: Callable[..., None]) -> None:
    limits(anonymous={"daily_bytes": "50KB"})
    first = counted_get(service, SMALL, "10.16.3.1")
    assert first.status_code == 200 and len(first.content) < 50_000
    second = counted_get(service, SMALL, "10.16.3.1")
    assert second.status_code == 200  # 30 kB served when it was asked for
    refused = counted_get(service, SMALL, "10.16.3.1")
    assert refused.status_code == 429
    assert abs(int(refused.headers["retry-after"]) - traffic.seconds_to_midnight()) <= 5
    assert one_sentence(refused.json()["detail"]) and "00:00 UTC" in refused.json()["detail"]
    chunk = counted_get(service, "/datasets/cobe_sst2/zarr/sst/c/0/0/0", "10.16.3.1")
    assert chunk.status_code == 429  # a Zarr chunk is data too
    for path in ("/datasets.json", "/datasets/cobe_sst2/zarr/sst/zarr.json",
                 "/datasets/cobe_sst2/opendap.das"):
        assert counted_get(service, path, "10.16.3.1").status_code == 200
    # another client still downloads
    assert counted_get(service, SMALL, "10.16.3.2").status_code == 200


def test_the_ledger_gets_exactly_the_bytes_sent(service: SimpleNamespace,
                                                limits: Callable[..., None]) -> None:
    limits(anonymous={"rate": "6/minute"})
    address = "10.16.4.1"
    paths = [SMALL, "/datasets/cobe_sst2/zarr/sst/c/0/0/0", "/datasets.json",
             "/datasets/no_such_set/subset", "/api/health",
             "/datasets/cobe_sst2/opendap.dods?sst[0:1:0][0:1:9][0:1:9]", "/stac"]
    sizes = {path: len(counted_get(service, path, address).content) for path in paths}
    late = counted_get(service, "/datasets.json", address)
    assert late.status_code == 429
    records = service.ledger.of(key_of(service.inner, address))
    # every answer once (429 included), not the health check, each with its bytes
    assert sorted(r[3] for r in records) == sorted(
        [n for p, n in sizes.items() if p != "/api/health"] + [len(late.content)])
    assert {(r[1], r[2]) for r in records} == {
        ("cobe_sst2", "subset"), ("no_such_set", "subset"), ("cobe_sst2", "zarr"),
        ("cobe_sst2", "opendap"), (None, "stac"), (None, "portal")}


def _raw_get(base: str, path: str, address: str, rcvbuf: int | None = None) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((host, int(port)))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: {address}\r\n"
                 "Connection: close\r\n\r\n".encode())
    return sock


def test_a_client_that_disconnects_stops_its_computation(service: SimpleNamespace,
                                                         limits: Callable[..., None]) -> None:
    limits()
    stopped = traffic.stopped_computations()
    sock = _raw_get(service.base, WHOLE, "10.16.5.1")
    wait_until(lambda: traffic.active_computations() == 1, 30, "the write started")
    sock.close()  # mid-write: nothing has been sent yet
    took = wait_until(lambda: traffic.active_computations() == 0, 10, "the write stopped")
    assert took < 1.5  # between two yearly chunks; the whole write takes several seconds
    assert traffic.stopped_computations() == stopped + 1
    key = key_of(service.inner, "10.16.5.1")
    wait_until(lambda: service.ledger.of(key), 10, "the request was counted")
    assert list(service.spool.iterdir()) == []
    # charged nothing (it got nothing); the service answers the next request
    assert [r[3] for r in service.ledger.of(key)] == [0]
    assert service.layer.clients() == 0
    assert requests.get(service.base + SMALL, headers=client("10.16.5.1"),
                        timeout=60).status_code == 200


def test_wall_time_503_before_the_answer_and_a_cut_stream_after(
        service: SimpleNamespace, limits: Callable[..., None]) -> None:
    # 1.5 s: the estimate and the planning are done (even on a loaded machine) and the
    # write of the whole series (several seconds) has started when the time is up
    limits(request_timeout=1.5)
    stopped = traffic.stopped_computations()
    start = time.monotonic()
    answer = requests.get(service.base + WHOLE, headers=client("10.16.6.1"), timeout=60)
    assert answer.status_code == 503 and time.monotonic() - start < 4
    detail = answer.json()["detail"]
    assert one_sentence(detail) and "async=1" in detail, detail
    wait_until(lambda: traffic.active_computations() == 0, 10, "the write stopped")
    assert traffic.stopped_computations() == stopped + 1

    # the answer started (a 0.3 s write) but its client reads nothing: cut at 3 s
    limits(request_timeout=3)
    path = "/datasets/cobe_sst2/subset?time=1950-01/1954-12&format=nc4"
    sock = _raw_get(service.base, path, "10.16.6.2", rcvbuf=4096)
    key = key_of(service.inner, "10.16.6.2")
    wait_until(lambda: service.ledger.of(key), 30, "the request ended")
    received = b""
    sock.settimeout(30)
    with contextlib.closing(sock):
        while piece := sock.recv(1 << 20):
            received += piece
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    assert 0 < len(body) < length
    assert [r[3] for r in service.ledger.of(key)] == [len(body)]  # charged what it got


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("needs redis-server")
    import redis

    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly",
                             "no", "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL)
    try:
        ping = redis.Redis(port=port, socket_connect_timeout=1)

        def ready() -> bool:
            with contextlib.suppress(redis.ConnectionError):
                return bool(ping.ping())
            return False

        wait_until(ready, 30, "redis-server answers")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_two_instances_share_rate_counters_in_redis(service: SimpleNamespace,
                                                    redis_url: str, tmp_path: Any) -> None:
    import redis

    settings = TrafficSettings(storage=redis_url, anonymous=AnonymousLimits(rate="3/minute"))
    apps = [create_app(make_catalog(tmp_path / f"catalog{i}"), prefix="/") for i in (0, 1)]
    for app in apps:
        app.state.inner.state.traffic = settings
    who = client("10.16.7.1")
    with serving(apps[0]) as one, serving(apps[1]) as two:
        statuses = [requests.get(f"{base}/datasets.json", headers=who, timeout=30).status_code
                    for base in (one, two, one, two)]
    assert statuses == [200, 200, 200, 429]
    assert redis.Redis.from_url(redis_url).keys("LIMITS*")


def test_a_query_over_16_kib_is_414_before_any_limit(service: SimpleNamespace,
                                                     limits: Callable[..., None]) -> None:
    """A query string over 16384 bytes is refused (414, one sentence) before it is parsed,
    and the refusal does not use the client's request rate."""
    limits(anonymous={"rate": "1/minute"})
    who = client("10.16.9.1")
    url = f"{service.base}/datasets.json?q="
    long = requests.get(url + "a" * (16384 - 1), headers=who, timeout=30)
    assert long.status_code == 414
    detail = long.json()["detail"]
    assert one_sentence(detail) and "16384" in detail, detail
    assert "retry-after" not in long.headers
    at_cap = requests.get(url + "a" * (16384 - 2), headers=who, timeout=30)
    assert at_cap.status_code == 200  # the client's one request of the minute
