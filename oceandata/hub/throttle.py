"""Throttles of the hub's sign-in and sign-up forms, and who the client is.

Two counters live in the hub's memory (one hub process; a restart forgets them):

:class:`FailedLogins`
    Per user name. After ``allowed`` failed sign-ins in a row the name is locked for
    ``first_wait`` seconds; each further failure after a lock ends doubles the wait, up
    to ``max_wait``. While locked every attempt is refused without looking at the
    password (and is not counted). A successful sign-in clears the count; failures
    older than ``forget_after`` are forgotten.
:class:`SlidingWindow`
    Per client address. At most ``limit`` events in any ``window`` seconds; the next
    one is refused with the seconds until the oldest one leaves the window.

:func:`client_address` says which address a request comes from, as the hub sees it
behind configurable-http-proxy (see its docstring for what is trusted and why);
:func:`request_client` applies it to a hub request handler.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from typing import Any

#: Most keys a counter keeps; past it, the stalest are dropped (bounded memory).
MAX_KEYS = 10_000
#: The proxies trusted by default: configurable-http-proxy on loopback.
LOOPBACK = ("127.0.0.1/32", "::1/128")


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


@dataclass
class FailedLogins:
    """Failed sign-ins per user name, with a lock whose length doubles.

    Parameters
    ----------
    allowed : int
        Failures in a row before the first lock (0 disables locking).
    first_wait : float
        Seconds of the first lock.
    max_wait : float
        Longest lock in seconds.
    forget_after : float
        Seconds after the last failure when a name's count is forgotten.
    clock : callable
        Monotonic time in seconds (injected by the tests).

    Examples
    --------
    >>> now = [0.0]
    >>> f = FailedLogins(allowed=2, first_wait=10, max_wait=100, forget_after=1000,
    ...                  clock=lambda: now[0])
    >>> f.failed("bob"), f.failed("bob"), f.wait("bob")
    (0.0, 10.0, 10.0)
    >>> now[0] = 11; f.failed("bob")
    20.0
    """

    allowed: int = 5
    first_wait: float = 30.0
    max_wait: float = 3600.0
    forget_after: float = 86400.0
    clock: Callable[[], float] = time.monotonic
    _names: dict[str, _Failures] = field(default_factory=dict, repr=False)

    def _entry(self, name: str) -> _Failures | None:
        entry = self._names.get(name)
        if entry is not None and self.clock() - entry.last > self.forget_after:
            del self._names[name]
            return None
        return entry

    def wait(self, name: str) -> float:
        """Seconds until *name* may try again (0.0 when it is not locked)."""
        entry = self._entry(name)
        if entry is None or self.allowed <= 0:
            return 0.0
        return max(0.0, entry.locked_until - self.clock())

    def failed(self, name: str) -> float:
        """Count a failed sign-in of *name*; return the lock it now has (0.0 if none)."""
        now = self.clock()
        entry = self._entry(name)
        if entry is None:
            if len(self._names) >= MAX_KEYS:
                self._prune(now)
            entry = self._names[name] = _Failures()
        entry.count += 1
        entry.last = now
        if self.allowed <= 0 or entry.count < self.allowed:
            return 0.0
        wait = min(self.first_wait * 2 ** (entry.count - self.allowed), self.max_wait)
        entry.locked_until = now + wait
        return float(wait)

    def succeeded(self, name: str) -> None:
        """Forget the failures of *name* (it signed in)."""
        self._names.pop(name, None)

    def failures(self, name: str) -> int:
        """Failed sign-ins of *name* counted now."""
        entry = self._entry(name)
        return entry.count if entry else 0

    def _prune(self, now: float) -> None:
        stale = [k for k, e in self._names.items() if now - e.last > self.forget_after]
        for key in stale:
            del self._names[key]
        if len(self._names) >= MAX_KEYS:  # still full: drop the oldest half
            oldest = sorted(self._names, key=lambda k: self._names[k].last)
            for key in oldest[: len(oldest) // 2]:
                del self._names[key]


@dataclass
class SlidingWindow:
    """At most *limit* events per key in any *window* seconds.

    Parameters
    ----------
    limit : int
        Events allowed per key in the window (0 disables the limit).
    window : float
        Length of the window in seconds.
    clock : callable
        Monotonic time in seconds.

    Examples
    --------
    >>> now = [0.0]
    >>> w = SlidingWindow(limit=2, window=60, clock=lambda: now[0])
    >>> w.hit("10.0.0.1"), w.hit("10.0.0.1"), w.hit("10.0.0.1"), w.hit("10.0.0.2")
    (0.0, 0.0, 60.0, 0.0)
    >>> now[0] = 61; w.hit("10.0.0.1")
    0.0
    """

    limit: int = 10
    window: float = 3600.0
    clock: Callable[[], float] = time.monotonic
    _events: dict[str, deque[float]] = field(default_factory=dict, repr=False)

    def hit(self, key: str) -> float:
        """Record an event of *key* if allowed: 0.0, else the seconds to wait (not recorded)."""
        if self.limit <= 0:
            return 0.0
        now = self.clock()
        events = self._events.get(key)
        if events is None:
            if len(self._events) >= MAX_KEYS:
                self._prune(now)
            events = self._events[key] = deque()
        while events and now - events[0] >= self.window:
            events.popleft()
        if len(events) >= self.limit:
            return float(events[0] + self.window - now)
        events.append(now)
        return 0.0

    def _prune(self, now: float) -> None:
        for key in [k for k, ev in self._events.items() if not ev or now - ev[-1] >= self.window]:
            del self._events[key]
        if len(self._events) >= MAX_KEYS:
            oldest = sorted(self._events, key=lambda k: self._events[k][-1])
            for key in oldest[: len(oldest) // 2]:
                del self._events[key]


def client_address(peer: str, forwarded_for: str | None,
                   trusted_proxies: Iterable[str] = LOOPBACK,
                   hops: int = 1) -> str:
    """The address of the client behind the hub's proxy.

    The hub listens on loopback behind configurable-http-proxy, which appends the
    address of its own peer to ``X-Forwarded-For``. A client can send its own
    ``X-Forwarded-For`` (or ``X-Real-Ip``, which Tornado's ``remote_ip`` believes), so
    only the entries appended by proxies we run are believed: the *hops*-th entry from
    the right, and only when the connection itself comes from a trusted proxy.

    Parameters
    ----------
    peer : str
        The address of the TCP connection to the hub (not Tornado's ``remote_ip``).
    forwarded_for : str or None
        The request's ``X-Forwarded-For`` header.
    trusted_proxies : iterable of str
        Networks of the proxies in front of the hub (CIDR).
    hops : int
        How many proxies we run append to ``X-Forwarded-For`` (1: configurable-http-proxy
        alone; 2 with a TLS terminator in front of it that appends too).

    Returns
    -------
    str
        The client's address (*peer* when nothing forwarded can be believed).

    Examples
    --------
    >>> client_address("127.0.0.1", "6.6.6.6, 203.0.113.7")
    '203.0.113.7'
    >>> client_address("198.51.100.2", "203.0.113.7")
    '198.51.100.2'
    """
    try:
        peer_ip = ip_address(peer)
    except ValueError:
        return peer
    if not forwarded_for or hops <= 0:
        return peer
    if not any(peer_ip in ip_network(net, strict=False) for net in trusted_proxies):
        return peer
    entries = [e.strip() for e in forwarded_for.split(",") if e.strip()]
    if not entries:
        return peer
    candidate = entries[-hops] if len(entries) >= hops else entries[0]
    try:
        return str(ip_address(candidate))
    except ValueError:
        return peer


def request_client(handler: Any) -> str:
    """The client address of a JupyterHub request handler (:func:`client_address`).

    The trusted proxies and their hops come from the hub's authenticator
    (``trusted_proxy_networks``, ``forwarded_hops`` of
    :class:`~oceandata.hub.authenticator.OceandataAuthenticator`); loopback and one hop
    otherwise.

    Parameters
    ----------
    handler : jupyterhub.handlers.BaseHandler
        The request's handler.

    Returns
    -------
    str
        The client's address.
    """
    auth = getattr(handler, "authenticator", None)
    peer = handler.request.connection.context.address
    peer_ip = peer[0] if isinstance(peer, tuple) else str(peer)
    return client_address(peer_ip, handler.request.headers.get("X-Forwarded-For"),
                          getattr(auth, "trusted_proxy_networks", LOOPBACK),
                          getattr(auth, "forwarded_hops", 1))
