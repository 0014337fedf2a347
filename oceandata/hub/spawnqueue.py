"""A login rush waits in a queue instead of failing.

When many users start their servers at once (a class, a workshop, the morning after an
outage), starting them all together starves the machine: on the embedded platform with 2
cores, 30 simultaneous starts left 19 users with ``Spawner.http_timeout`` failures while the
proxy's API timed out. JupyterHub's own ``concurrent_spawn_limit`` only answers 429 ("try
again later") to the users above the limit, which leaves them to race each other by
reloading.

:class:`SpawnQueue` lets at most :attr:`SpawnQueue.slots` servers start at once; every other
spawn waits, first come first served, inside JupyterHub's ``pre_spawn_hook`` (:meth:`hook`).
That wait happens before JupyterHub starts the clock of ``Spawner.start_timeout`` and
``Spawner.http_timeout``, so the timeouts measure only a server's own start. A waiting spawn
is an ordinary pending spawn to JupyterHub: the user's browser is on
``/hub/spawn-pending/<name>``, whose template (``templates/spawn_pending.html``) asks
:meth:`place` for the user's position and shows it, refreshing itself, until the server is
started and JupyterHub's progress page takes the user into it.

A slot is taken from the end of the wait until JupyterHub no longer counts the spawn as
pending (the server answers and is in the proxy, or the spawn failed or was cancelled).
Stopping a waiting server (``DELETE /hub/api/users/<name>/server``) cancels the spawn and
takes it out of the queue.

``concurrent_spawn_limit`` still bounds everything that is waiting or starting
(:meth:`SpawnQueue.spawn_limit`): beyond it JupyterHub answers 429, the last resort of a hub
that is out of room rather than the everyday experience.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Place", "SpawnQueue", "default_slots", "machine_cores"]

#: environment variable: servers started at once (default :func:`default_slots`)
SLOTS_ENV = "OCEANDATA_HUB_SPAWN_SLOTS"
#: environment variable: most spawns waiting at once, beyond which JupyterHub answers 429
WAITING_ENV = "OCEANDATA_HUB_SPAWN_QUEUE"
#: default of :data:`WAITING_ENV`
DEFAULT_WAITING = 500
#: how often a waiting spawn looks for a free slot (seconds), besides being woken
POLL_SECONDS = 0.5


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_slots(cores: int | None = None) -> int:
    """Servers started at once by default: two per core, at least 2 and at most 100.

    A JupyterLab server's start is about half CPU (imports, extension discovery) and half
    waiting (the file system, the hub's readiness checks): two starts per core keep the
    cores busy while each start stays short enough for ``Spawner.http_timeout`` to have a
    wide margin and for the hub and the proxy to keep answering. More slots add little:
    on the embedded machine (2 cores) 30 users were served at 0.17 servers/s with 2 slots,
    0.20 with 4 and 0.25 with 8, each start taking 11, 20 and 33 s (docs/operations.md,
    "A login rush"). 100 is JupyterHub's own default ``concurrent_spawn_limit``.

    Parameters
    ----------
    cores
        The machine's cores (default: :func:`machine_cores`).

    Returns
    -------
    int
        ``min(100, max(2, 2 * cores))``.

    Examples
    --------
    >>> default_slots(1), default_slots(2), default_slots(16), default_slots(96)
    (2, 4, 32, 100)
    """
    return min(100, max(2, 2 * (machine_cores() if cores is None else cores)))


def _positive(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise SystemExit(f"oceandata hub: {name}={raw!r} is not a positive whole number; "
                         "see docs/operations.md, 'A login rush'")
    return int(raw)


@dataclass(frozen=True)
class Place:
    """Where one waiting spawn stands.

    Attributes
    ----------
    position
        1 for the next spawn to start.
    waiting
        Spawns waiting, this one included.
    starting
        Servers starting now.
    slots
        Servers started at once.
    wait_seconds
        Estimated seconds until this spawn starts (None before any server has started).
    refresh_seconds
        When the waiting page reloads itself: soon near the front, less often far back.
    """

    position: int
    waiting: int
    starting: int
    slots: int
    wait_seconds: float | None
    refresh_seconds: int

    @property
    def wait_minutes(self) -> int | None:
        """:attr:`wait_seconds` rounded up to whole minutes (at least 1)."""
        if self.wait_seconds is None:
            return None
        return max(1, math.ceil(self.wait_seconds / 60))


@dataclass(eq=False)
class _Entry:
    spawner: Any
    since: float
    wake: asyncio.Event
    admitted: bool = False


class SpawnQueue:
    """At most *slots* servers start at once; the other spawns wait in arrival order.

    One instance lives in the hub's process (created in ``jupyterhub_config.py``); every
    method runs on the hub's event loop.

    Parameters
    ----------
    slots
        Servers started at once (``OCEANDATA_HUB_SPAWN_SLOTS``).
    max_waiting
        Spawns that may wait at once (``OCEANDATA_HUB_SPAWN_QUEUE``); with *slots* it gives
        JupyterHub's ``concurrent_spawn_limit`` (:meth:`spawn_limit`).
    refresh_seconds
        The waiting page's shortest reload interval (at the front of the queue).
    max_refresh_seconds
        Its longest (far back in a long queue).
    """

    def __init__(self, slots: int, max_waiting: int = DEFAULT_WAITING, *,
                 refresh_seconds: int = 3, max_refresh_seconds: int = 15) -> None:
        if slots < 1 or max_waiting < 1:
            raise ValueError("slots and max_waiting must be at least 1")
        self.slots = slots
        self.max_waiting = max_waiting
        self.refresh_seconds = refresh_seconds
        self.max_refresh_seconds = max_refresh_seconds
        self._waiting: collections.deque[_Entry] = collections.deque()
        self._starting: dict[int, tuple[Any, float]] = {}
        # seconds from a slot's grant to its release, of the latest starts
        self._durations: collections.deque[float] = collections.deque(maxlen=20)

    def __deepcopy__(self, memo: dict[int, Any]) -> SpawnQueue:
        # traitlets deep-copies config values (``c.JupyterHub.template_vars``): the copy
        # must be this queue, the one the pre-spawn hook fills
        return self

    @classmethod
    def from_environment(cls) -> SpawnQueue:
        """The queue of ``OCEANDATA_HUB_SPAWN_SLOTS`` and ``OCEANDATA_HUB_SPAWN_QUEUE``.

        Unset or empty variables take their defaults (:func:`default_slots`, 500); any
        other value that is not a positive whole number stops the hub with one line.
        """
        return cls(_positive(SLOTS_ENV, default_slots()), _positive(WAITING_ENV, DEFAULT_WAITING))

    def spawn_limit(self) -> int:
        """JupyterHub's ``concurrent_spawn_limit``: spawns starting or waiting at once."""
        return self.slots + self.max_waiting

    # --- the queue -----------------------------------------------------------------------
    def _release_finished(self) -> None:
        now = time.monotonic()
        for key, (spawner, since) in list(self._starting.items()):
            # JupyterHub counts a spawn as pending until the server answers and is in the
            # proxy, or the spawn failed or was cancelled
            if not spawner.pending:
                del self._starting[key]
                self._durations.append(now - since)

    def _dispatch(self) -> None:
        self._release_finished()
        while self._waiting and len(self._starting) < self.slots:
            entry = self._waiting.popleft()
            entry.admitted = True
            self._starting[id(entry.spawner)] = (entry.spawner, time.monotonic())
            entry.wake.set()

    async def wait_turn(self, spawner: Any) -> float:
        """Wait until *spawner* may start; return the seconds it waited.

        Parameters
        ----------
        spawner
            The spawner whose spawn JupyterHub is running (counted as pending).
        """
        entry = _Entry(spawner, time.monotonic(), asyncio.Event())
        self._waiting.append(entry)
        self._dispatch()
        if not entry.admitted:
            spawner.log.info("spawn queue: %s waits at position %d (%d starting, %d slots)",
                             spawner._log_name, len(self._waiting), len(self._starting),
                             self.slots)
        try:
            while not entry.admitted:
                try:
                    await asyncio.wait_for(entry.wake.wait(), POLL_SECONDS)
                except TimeoutError:
                    self._dispatch()
        except BaseException:
            # cancelled (the server was stopped while waiting, or the hub is stopping)
            if entry in self._waiting:
                self._waiting.remove(entry)
            raise
        waited = time.monotonic() - entry.since
        if waited >= 1:
            spawner.log.info("spawn queue: %s starts after %.1f s in the queue",
                             spawner._log_name, waited)
        return waited

    def hook(self, then: Callable[[Any], Any] | None = None) -> Callable[[Any], Any]:
        """A ``Spawner.pre_spawn_hook``: wait for a slot, then run *then* (if any).

        Parameters
        ----------
        then
            The hook to run once the spawn may start (e.g. preparing the user's account).
        """
        async def pre_spawn_hook(spawner: Any) -> None:
            await self.wait_turn(spawner)
            if then is not None:
                result = then(spawner)
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    await result

        return pre_spawn_hook

    # --- what the waiting page shows -------------------------------------------------------
    def place(self, spawner: Any) -> Place | None:
        """Where *spawner*'s spawn waits, or None when it is not waiting.

        Parameters
        ----------
        spawner
            A user's spawner (the waiting page's ``spawner``).
        """
        self._dispatch()
        for index, entry in enumerate(self._waiting):
            if entry.spawner is spawner:
                position = index + 1
                break
        else:
            return None
        estimate = None
        if self._durations:
            mean = sum(self._durations) / len(self._durations)
            estimate = math.ceil(position / self.slots) * mean
        refresh = min(self.max_refresh_seconds,
                      self.refresh_seconds + (position - 1) // self.slots)
        return Place(position, len(self._waiting), len(self._starting), self.slots,
                     estimate, refresh)

    def counts(self) -> dict[str, int]:
        """``{"waiting", "starting", "slots"}`` now."""
        self._dispatch()
        return {"waiting": len(self._waiting), "starting": len(self._starting),
                "slots": self.slots}
