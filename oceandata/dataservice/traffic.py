"""Fair use of the open-data service: limits, byte counting, wall time and cancellation.

:class:`TrafficLayer` is one ASGI wrapper around the service below its prefix (most
routes come from xpublish plugins, so no route is decorated). For every HTTP request it

1. identifies the caller once (:func:`.access.identify`, whose token checks are cached)
   and leaves it at ``request.state.caller`` for :func:`.access.guard`; a request whose
   credentials fail is limited as anonymous and the guard gives the refusal;
2. names the request (:func:`.policy.classify`), the client (:func:`.policy.client_key`:
   per user for hub users, per address for anonymous clients) and its access class's
   limits (:func:`.policy.limits_for`);
3. applies the class's request ``rate`` with the :mod:`limits` library (fixed windows:
   one counter per client and window, in memory or in Redis when
   ``TrafficSettings.storage`` names one, so several service processes share them);
4. refuses a data request once the client has been served its ``daily_bytes`` today
   (:meth:`.ledger.Ledger.served_today`), until 00:00 UTC;
5. serves at most ``concurrent`` requests of one client at once (ERDDAP's model): the
   others wait up to ``queue_wait`` seconds for a slot, then get 429; a slot is held
   until the answer's last byte is sent, streams included;
6. counts the body bytes actually sent and, when the answer ends or the client goes
   away, records them in the ledger (under ``request.state.ledger_key`` when the app set
   one, a job's download link) and in the metrics.

``/api/health`` and ``/metrics`` pass through untouched. Refusals are ``429`` with an
integer ``Retry-After`` and one sentence (:func:`.app.error_response`); the outer app's
CORS middleware adds the headers that let a browser read them. A query string over
:data:`MAX_QUERY` bytes is ``414`` with one sentence before anything else (no limit
spent, nothing counted).

Every request gets a :class:`threading.Event` at ``request.state.cancel``, set when the
client disconnects (one task owns the server's ``receive`` and hands the app its messages
through a queue, so nothing is taken from the app) or when ``request_timeout`` seconds
pass. Work running in a thread stops at that event: a dask computation inside
:func:`cancellable` raises :class:`Cancelled` before its next task (exactly with the
:func:`synchronous` scheduler; best effort through dask's global callbacks otherwise,
which dask's schedulers swap while they run). When the wall time
passes before the answer started, the client gets 503 at once; after it started, the
stream is cut (the client sees fewer bytes than ``Content-Length``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import limits
from dask.callbacks import Callback
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..config import ClassLimits, TrafficSettings
from . import metrics, policy
from .access import identify
from .i18n import gettext, request_lang

__all__ = ["EXEMPT", "Cancelled", "TrafficLayer", "active_computations", "cancellable",
           "seconds_to_midnight", "stopped_computations", "synchronous"]

log = logging.getLogger("oceandata.dataservice.traffic")

#: paths below the prefix that are never limited nor counted (monitoring)
EXEMPT = frozenset({"/api/health", "/metrics"})
#: status recorded in the metrics when the client went away before an answer started
#: (nginx's "client closed request")
CLIENT_CLOSED = 499
#: seconds between two warnings that the rate-limit storage cannot be reached
_WARN_EVERY = 60.0
#: the longest query string served, in bytes (a longer one is 414 before any parsing:
#: the query parsers' costs grow with it)
MAX_QUERY = 16384

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# --------------------------------------------------------------------------- cancellation


class Cancelled(Exception):
    """The work of a request was stopped: its client went away or its wall time passed."""


_counts_lock = threading.Lock()
_running = 0
_stopped = 0
#: the cancel event of the request whose work runs in this thread (inside cancellable)
_current = threading.local()


def active_computations() -> int:
    """Blocks of :func:`cancellable` running in this process now (each a request's
    computation)."""
    return _running


def stopped_computations() -> int:
    """Computations :func:`cancellable` has stopped in this process so far."""
    return _stopped


class _StopWhenCancelled(Callback):
    """A dask callback raising :class:`Cancelled` before a task when the request whose
    work runs in this thread is cancelled.

    One instance serves the whole process: dask's callbacks are global and its local
    schedulers swap the global set out for the time of a computation, so per-request
    callbacks registered and removed from concurrent threads could outlive their
    request or miss their computation. This one only reads the calling thread's event
    (schedulers call ``_pretask`` in the thread that computes).
    """

    def _pretask(self, key: Any, dsk: Any, state: Any) -> None:
        event = getattr(_current, "event", None)
        if event is not None and event.is_set():
            raise Cancelled("the request was cancelled (its client went away or its wall "
                            "time passed)")


_STOP = _StopWhenCancelled()


def synchronous(dsk: Any, keys: Any, **kwargs: Any) -> Any:
    """dask's synchronous scheduler (``scheduler=synchronous``) with the stop callback
    passed explicitly inside :func:`cancellable`, so that concurrent computations in
    other threads cannot hide it."""
    from dask.local import get_sync

    if getattr(_current, "event", None) is not None and kwargs.get("callbacks") is None:
        kwargs["callbacks"] = [_STOP._callback]
    return get_sync(dsk, keys, **kwargs)


@contextlib.contextmanager
def cancellable(request: Any) -> Iterator[threading.Event]:
    """Stop the dask computations of this block when *request* is cancelled.

    Use it in the thread that computes (for example around a download's write):
    between two tasks, a computation raises :class:`Cancelled` once
    ``request.state.cancel`` is set by :class:`TrafficLayer` (the client disconnected or
    the wall time passed). Computations with ``scheduler=traffic.synchronous`` get the
    stop callback explicitly; others get it from dask's global callbacks. Without a
    traffic layer the block is never cancelled.

    Parameters
    ----------
    request
        The request (``request.state.cancel``, a :class:`threading.Event`).

    Yields
    ------
    threading.Event
        The request's cancel event (code between computations may check it too).

    Raises
    ------
    Cancelled
        On entry when the request is already cancelled, or from the computation.

    Examples
    --------
    >>> with cancellable(request):  # doctest: +SKIP
    ...     delayed.compute(scheduler=traffic.synchronous)
    """
    global _running, _stopped
    event = getattr(request.state, "cancel", None) or threading.Event()
    if event.is_set():
        with _counts_lock:
            _stopped += 1
        raise Cancelled("the request was cancelled before its computation started")
    previous = getattr(_current, "event", None)
    _current.event = event
    Callback.active.add(_STOP._callback)  # again: a scheduler may have swapped it out
    with _counts_lock:
        _running += 1
    try:
        yield event
    except Cancelled:
        with _counts_lock:
            _stopped += 1
        raise
    finally:
        _current.event = previous
        with _counts_lock:
            _running -= 1


# --------------------------------------------------------------------------- helpers


def seconds_to_midnight(now: dt.datetime | None = None) -> int:
    """Whole seconds until the next 00:00 UTC (at least 1), when daily quotas renew."""
    now = now or dt.datetime.now(dt.UTC)
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    return max(1, math.ceil((midnight - now).total_seconds()))


def _local_path(scope: dict) -> str:
    """The path below ``root_path``, as :class:`.access.AuthPrefix` computes it."""
    path, root = scope["path"], scope.get("root_path", "")
    return (path[len(root):] if root and path.startswith(root) else path) or "/"


def _async_storage(uri: str) -> Any:
    """The asynchronous :mod:`limits` storage of a ``memory://`` or ``redis://`` URI."""
    uri = uri if uri.startswith("async+") else f"async+{uri}"
    options: dict[str, Any] = {"wrap_exceptions": True}
    if "redis" in uri.split("://", 1)[0] or "valkey" in uri.split("://", 1)[0]:
        options["implementation"] = "redispy"  # the redis package (coredis is not needed)
    return storage_from_string(uri, **options)


class _Slots:
    """One client's concurrent requests: a semaphore and how many hold or wait for it."""

    __slots__ = ("semaphore", "users")

    def __init__(self, size: int) -> None:
        self.semaphore = asyncio.Semaphore(size)
        self.users = 0


class _Exchange:
    """The answer of one request as it goes out: status, bytes sent, whether it ended."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status: int | None = None
        self.nbytes = 0
        self.ending = False    # the last body message was handed on
        self.complete = False  # ... and sent
        self.gone = False      # the client disconnected before the answer ended
        self.answered = False  # the layer answered itself (wall time): the app is muted

    @property
    def started(self) -> bool:
        return self.status is not None

    async def from_app(self, message: Message) -> None:
        """The ``send`` the app is given."""
        if not self.answered:
            await self.forward(message)

    async def forward(self, message: Message) -> None:
        """Send *message* to the client, counting what went out."""
        kind = message["type"]
        final = kind == "http.response.body" and not message.get("more_body", False)
        # a server may tell the app's receive that the client is gone as soon as the last
        # message is handed on (Starlette's BaseHTTPMiddleware does): not a disconnect
        self.ending = self.ending or final
        await self._send(message)
        if kind == "http.response.start" and not self.gone:
            self.status = int(message["status"])
        elif kind == "http.response.body" and not self.gone:
            self.nbytes += len(message.get("body", b""))
        self.complete = self.complete or final


# --------------------------------------------------------------------------- the layer


class TrafficLayer:
    """ASGI wrapper of the service below its prefix: limits, counting, cancellation.

    Parameters
    ----------
    app
        The service (the inner FastAPI app: its ``state`` holds the ledger and, for
        tests and embedding, ``traffic``, a :class:`oceandata.config.TrafficSettings`
        that overrides the settings). A handler of :class:`Cancelled` is added to it.

    Notes
    -----
    Rate counters live in ``TrafficSettings.storage``; concurrency slots are per
    process (a client served by two processes may have twice its ``concurrent``
    requests). Per-client slot state is dropped as soon as a client has no request
    in flight. If the rate storage cannot be reached, requests are served unlimited
    (with a warning in the log) rather than refused.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._slots: dict[str, _Slots] = {}
        self._limiter: FixedWindowRateLimiter | None = None
        self._limiter_for: tuple[Any, str] | None = None
        self._warned = 0.0
        if hasattr(app, "add_exception_handler"):
            app.add_exception_handler(Cancelled, self._cancelled)

    # ------------------------------------------------------------------ state

    def clients(self) -> int:
        """Clients with a request in flight or waiting (per-client state kept now)."""
        return len(self._slots)

    def _settings(self) -> TrafficSettings:
        return getattr(self.app.state, "traffic", None) or policy.traffic_settings()

    def _rate_limiter(self, storage: str) -> FixedWindowRateLimiter:
        """The limiter of *storage* for the running event loop (asynchronous storages
        belong to one loop)."""
        loop = asyncio.get_running_loop()
        if self._limiter is None or self._limiter_for != (loop, storage):
            self._limiter = FixedWindowRateLimiter(_async_storage(storage))
            self._limiter_for = (loop, storage)
        return self._limiter

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _local_path(scope) in EXEMPT:
            await self.app(scope, receive, send)
            return
        if len(scope.get("query_string", b"")) > MAX_QUERY:
            await self._too_long(scope, receive, send)
            return
        began = time.monotonic()
        state = scope.setdefault("state", {})
        cancel = state["cancel"] = threading.Event()
        # the request as the service sees it (its app's state: settings, ledger, auth)
        request = Request({**scope, "app": self.app}, receive)
        try:
            state["caller"] = await identify(request)
        except HTTPException:
            pass  # limited as anonymous; the guard answers 401/403/503
        kind = policy.classify(_local_path(scope), dict(request.query_params))
        key = policy.client_key(request)
        _, class_limits = policy.limits_for(request)
        settings = self._settings()
        exchange = _Exchange(send)
        try:
            refusal = await self._admit(request, kind, key, class_limits, settings)
            if refusal is not None:
                await refusal(scope, receive, exchange.forward)
                return
            slots = self._slots.get(key)
            if slots is None:
                slots = self._slots[key] = _Slots(class_limits.concurrent)
            slots.users += 1
            try:
                try:
                    await asyncio.wait_for(slots.semaphore.acquire(), settings.queue_wait)
                except TimeoutError:
                    metrics.refused(kind, "concurrency")
                    wait = math.ceil(settings.queue_wait)
                    response = self._refusal(request, gettext(
                        request_lang(request), "This client already has %(count)s requests "
                        "being served and this one waited %(wait)s seconds for its turn: let "
                        "them finish, then try again.", count=class_limits.concurrent,
                        wait=wait), wait)
                    await response(scope, receive, exchange.forward)
                    return
                try:
                    await self._serve(scope, receive, exchange, request, kind,
                                      settings.request_timeout)
                finally:
                    slots.semaphore.release()
            finally:
                slots.users -= 1
                if slots.users == 0 and self._slots.get(key) is slots:
                    del self._slots[key]
        finally:
            cancel.set()  # whatever still runs for this request stops
            self._account(state, key, kind, exchange, time.monotonic() - began)

    async def _too_long(self, scope: dict, receive: Receive, send: Send) -> None:
        """Answer 414 with one sentence to a query string over :data:`MAX_QUERY` bytes.

        The query is not read, no limit is applied or spent, nothing is counted in the
        ledger.
        """
        request = Request({**scope, "app": self.app, "query_string": b""}, receive)
        response = self._refusal(request, gettext(
            request_lang(request), "This query string is longer than the %(limit)s bytes "
                                   "accepted: ask for less in one request.",
            limit=MAX_QUERY), None, 414)
        await response(scope, receive, send)

    async def _admit(self, request: Request, kind: policy.RequestKind, key: str,
                     class_limits: ClassLimits, settings: TrafficSettings) -> Response | None:
        """The 429 of a client over its rate or its daily bytes, or None."""
        lang = request_lang(request)
        retry = await self._over_rate(key, class_limits.rate, settings.storage)
        if retry is not None:
            metrics.refused(kind, "rate")
            return self._refusal(request, gettext(
                lang, "This client sent more requests than its limit of %(rate)s: try again "
                      "in %(seconds)s seconds.", rate=class_limits.rate, seconds=retry), retry)
        if kind.data:
            quota = class_limits.sizes()["daily_bytes"]
            ledger = getattr(self.app.state, "ledger", None)
            served = 0 if ledger is None else await run_in_threadpool(ledger.served_today, key)
            if served >= quota:
                from ..io.estimate import format_bytes

                metrics.refused(kind, "quota")
                retry = seconds_to_midnight()
                return self._refusal(request, gettext(
                    lang, "This client has downloaded %(served)s today, its daily quota of "
                          "%(quota)s: the quota renews at 00:00 UTC, in %(seconds)s seconds.",
                    served=format_bytes(served), quota=format_bytes(quota), seconds=retry),
                    retry)
        return None

    async def _over_rate(self, key: str, rate: str, storage: str) -> int | None:
        """Seconds until *key* may send again if this request exceeds *rate*, else None."""
        limiter = self._rate_limiter(storage)
        retry = None
        try:
            for item in limits.parse_many(rate):
                if not await limiter.hit(item, "oceandata-data", key):
                    stats = await limiter.get_window_stats(item, "oceandata-data", key)
                    wait = max(1, math.ceil(stats.reset_time - time.time()))
                    retry = max(retry or 0, wait)
        except StorageError as exc:
            now = time.monotonic()
            if now - self._warned > _WARN_EVERY:
                self._warned = now
                log.warning("rate limits not applied: their storage %s failed (%s)",
                            storage.split("@")[-1], exc.storage_error)
            return None
        return retry

    def _refusal(self, request: Request, sentence: str, retry: int | None,
                 status: int = 429) -> Response:
        from .app import error_response  # the app imports this module

        # the outer app's CORS lets a browser read the body and exposes Retry-After
        return error_response(request, status, sentence,
                              None if retry is None else {"Retry-After": str(retry)})

    # ------------------------------------------------------------------ serving

    async def _serve(self, scope: dict, receive: Receive, exchange: _Exchange,
                     request: Request, kind: policy.RequestKind, timeout: float) -> None:
        """Run the app with its own receive queue, stopping it at the wall time."""
        cancel: threading.Event = scope["state"]["cancel"]
        queue: asyncio.Queue[Message] = asyncio.Queue()

        async def pump() -> None:
            """Own the server's receive: pass every message on, notice a disconnect."""
            message: Message = {"type": "http.disconnect"}
            try:
                while True:
                    message = await receive()
                    queue.put_nowait(message)
                    if message["type"] == "http.disconnect":
                        break
            finally:
                if message["type"] != "http.disconnect":  # cancelled or failed
                    queue.put_nowait({"type": "http.disconnect"})
                elif not exchange.ending:  # the client went away mid-answer
                    exchange.gone = True
                    cancel.set()

        async def app_receive() -> Message:
            if exchange.gone and queue.empty():
                return {"type": "http.disconnect"}
            return await queue.get()

        pumping = asyncio.ensure_future(pump())
        serving = asyncio.ensure_future(self.app(scope, app_receive, exchange.from_app))
        try:
            done, _ = await asyncio.wait({serving}, timeout=timeout)
            if done:
                serving.result()  # the app's own failure, if any, goes up
                return
            cancel.set()
            metrics.refused(kind, "timeout")
            if not exchange.started and not exchange.gone:
                exchange.answered = True
                response = self._refusal(request, self._timeout_sentence(request, timeout),
                                         math.ceil(timeout), 503)
                await response(scope, receive, exchange.forward)
            else:
                log.warning("%s %s cut after its wall time of %ss", request.method,
                            request.url.path, timeout)
            serving.cancel()
            await asyncio.wait({serving})
            if not serving.cancelled() and serving.exception() is not None:
                log.warning("%s %s failed after its wall time: %s", request.method,
                            request.url.path, serving.exception())
        finally:
            pumping.cancel()
            if not serving.done():
                serving.cancel()

    @staticmethod
    def _timeout_sentence(request: Request, timeout: float) -> str:
        return gettext(request_lang(request), "This request took longer than the %(seconds)s "
                                              "seconds the service gives one answer: ask for "
                                              "a smaller subset, or add async=1 to run it as "
                                              "a job.", seconds=f"{timeout:g}")

    async def _cancelled(self, request: Request, exc: Cancelled) -> Response:
        """The answer of a request whose computation was stopped (rarely seen: the client
        is gone, or the layer has answered 503 already)."""
        timeout = self._settings().request_timeout
        return self._refusal(request, self._timeout_sentence(request, timeout),
                             math.ceil(timeout), 503)

    # ------------------------------------------------------------------ counting

    def _account(self, state: dict, key: str, kind: policy.RequestKind,
                 exchange: _Exchange, seconds: float) -> None:
        """Record what was sent in the ledger and the metrics."""
        status = exchange.status or (CLIENT_CLOSED if exchange.gone else 500)
        ledger = getattr(self.app.state, "ledger", None)
        try:
            if ledger is not None:
                ledger.record(state.get("ledger_key") or key, kind.dataset, kind.protocol,
                              exchange.nbytes)
            metrics.observe(kind, status, seconds, exchange.nbytes)
        except Exception:  # the answer is sent: log, do not fail the request
            log.exception("counting %s bytes of %s failed", exchange.nbytes, kind)
