"""The bytes-served ledger of the open-data service.

Every answer of the service (but ``/metrics`` and the health check) is counted once, by
the traffic layer, under the client that got it: ``user:<hub name>`` for a hub user, or
``anon:<16 hex>``, a keyed hash of an anonymous client's address
(:func:`.policy.client_key`), with the catalog dataset it named and the protocol. The
ledger is the ``served_bytes`` table of the allocations database
(:class:`oceandata.alloc.models.ServedBytes`): bytes and requests per UTC day, client,
dataset and protocol, unique on those four.

Requests are counted in memory (:meth:`Ledger.record`, from the event loop and from
threads) and written by a background thread every :data:`FLUSH_SECONDS` and at
:meth:`Ledger.close`: each flush is one transaction that adds what is in memory to the
rows (an ``INSERT ... ON CONFLICT DO UPDATE`` on SQLite and PostgreSQL alike, so two
processes may write the same rows) and only then removes what it wrote from memory.
A failed flush leaves everything in memory for the next one: every byte appears in the
database exactly once. :meth:`Ledger.served_today` (the daily quota's reading) is the
database's total for today plus what is still in memory.

The data service may start before the allocations service has created the table: the
ledger upgrades the schema with the same alembic path (:func:`oceandata.alloc.db.upgrade`,
which serialises concurrent upgrades).

:func:`totals` and :func:`top` read the ledger for reports (``oceandata dataservice top``,
``oceandata alloc usage``).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger("oceandata.dataservice.ledger")

#: seconds between two flushes of the counts in memory
FLUSH_SECONDS = 2.0
#: seconds the database's part of :meth:`Ledger.served_today` is reused for one client
CACHE_SECONDS = 5.0
#: the longest client key, dataset and protocol stored (the columns' lengths)
MAX_KEY, MAX_DATASET, MAX_PROTOCOL = 255, 255, 32

_Row = tuple[dt.date, str, str, str]  # day, client, dataset, protocol


def utc_day(when: dt.datetime | None = None) -> dt.date:
    """The UTC day of *when* (naive times are taken as UTC; default now)."""
    when = when or dt.datetime.now(dt.UTC)
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.date()


def resolve_url(db_url: str | None) -> str:
    """*db_url*, else the platform's allocations database
    (:func:`oceandata.alloc.db.default_url`); the folder of a SQLite file is created."""
    from ..alloc.db import default_url

    url = db_url or default_url()
    if url.startswith("sqlite:///") and ":memory:" not in url:
        Path(url.removeprefix("sqlite:///").split("?")[0]).parent.mkdir(
            parents=True, exist_ok=True, mode=0o700)
    return url


class Ledger:
    """Bytes served, aggregated in memory and added to the allocations database.

    Parameters
    ----------
    db_url
        The allocations database (SQLAlchemy URL); None: the platform's default
        (:func:`oceandata.alloc.db.default_url`), so a standalone server counts too.
    datasets
        The catalog's dataset names: other names (a 404 on a made-up name) are recorded
        as no dataset (``""``), so made-up names add no rows. None records names as given.
    interval
        Seconds between two flushes of the background thread.

    Examples
    --------
    >>> ledger = Ledger("sqlite:////tmp/alloc.sqlite")  # doctest: +SKIP
    >>> ledger.record("user:alice", "cobe_sst2", "subset", 1024)  # doctest: +SKIP
    >>> ledger.served_today("user:alice")  # doctest: +SKIP
    1024
    >>> ledger.close()  # doctest: +SKIP
    """

    def __init__(self, db_url: str | None, *, datasets: Iterable[str] | None = None,
                 interval: float = FLUSH_SECONDS) -> None:
        self.db_url = db_url
        self.interval = interval
        self.datasets = frozenset(datasets) if datasets is not None else None
        self._lock = threading.Lock()  # guards _pending, _cache and the thread
        self._flush_lock = threading.Lock()  # one flush (or database read) at a time
        self._pending: dict[_Row, list[int]] = {}  # row -> [bytes, requests]
        self._cache: dict[tuple[str, dt.date], tuple[float, int]] = {}
        self._url: str | None = None  # resolved and upgraded on first use
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- counting -----------------------------------------------------------------------

    def record(self, key: str, dataset: str | None, protocol: str, nbytes: int,
               when: dt.datetime | None = None) -> None:
        """Count one answer of *nbytes* body bytes to *key* for *dataset* over *protocol*.

        Parameters
        ----------
        key
            ``user:<name>`` or ``anon:<hash>`` (:func:`.policy.client_key`).
        dataset
            The catalog name the request named, or None.
        protocol
            :attr:`.policy.RequestKind.protocol`.
        nbytes
            Body bytes sent (0 for an answer without a body: it still counts a request).
        when
            When it was served (default now; naive times are UTC).
        """
        if nbytes < 0:
            raise ValueError(f"nbytes {nbytes} is negative")
        name = dataset or ""
        if self.datasets is not None and name not in self.datasets:
            name = ""
        row = (utc_day(when), key[:MAX_KEY], name[:MAX_DATASET], protocol[:MAX_PROTOCOL])
        with self._lock:
            counts = self._pending.get(row)
            if counts is None:
                self._pending[row] = [int(nbytes), 1]
            else:
                counts[0] += int(nbytes)
                counts[1] += 1
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=_flusher,
                                                args=(weakref.ref(self), self._wake),
                                                name="oceandata-ledger", daemon=True)
                self._thread.start()

    def pending(self) -> dict[_Row, tuple[int, int]]:
        """What is counted but not written yet: ``(day, client, dataset, protocol)`` ->
        ``(bytes, requests)``."""
        with self._lock:
            return {row: (c[0], c[1]) for row, c in self._pending.items()}

    def served_today(self, key: str) -> int:
        """Bytes served to *key* since 00:00 UTC, including what is not written yet.

        The database's part is read at most every :data:`CACHE_SECONDS` per client (and
        kept right across flushes); in between this touches memory only. A read of the
        database blocks: in async code call it from a thread.
        """
        key = key[:MAX_KEY]
        day = utc_day()
        with self._lock:
            cached = self._cache.get((key, day))
            if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
                return cached[1] + self._pending_for(key, day)
        # read the database with no flush in between: the flush moves bytes from memory
        # to the database and corrects the cached reading under the same lock
        with self._flush_lock:
            stored = self._stored_today(key, day)
            with self._lock:
                self._cache[(key, day)] = (time.monotonic(), stored)
                if len(self._cache) > 100_000:  # yesterday's readings
                    self._cache = {k: v for k, v in self._cache.items() if k[1] == day}
                return stored + self._pending_for(key, day)

    def _pending_for(self, key: str, day: dt.date) -> int:
        return sum(c[0] for (d, k, _, _), c in self._pending.items() if k == key and d == day)

    # --- the database -------------------------------------------------------------------

    def url(self) -> str:
        """The database URL, its schema upgraded to the ledger's table (once)."""
        if self._url is None:
            from ..alloc.db import upgrade

            url = resolve_url(self.db_url)
            upgrade(url)
            self._url = url
        return self._url

    def prepare(self) -> bool:
        """Create or upgrade the allocations schema now (the service's start-up), so that
        the data service works before the allocations service has migrated.

        Returns
        -------
        bool
            Whether the database is ready; a failure is logged, and tried again at the
            first flush.
        """
        try:
            with self._flush_lock:
                self.url()
        except Exception:
            log.warning("the ledger's database cannot be prepared; counting in memory "
                        "until it can", exc_info=True)
            return False
        return True

    def _stored_today(self, key: str, day: dt.date) -> int:
        from sqlalchemy import func, select

        from ..alloc.db import engine_for
        from ..alloc.models import ServedBytes

        try:
            url = self.url()
            with engine_for(url).connect() as conn:
                return int(conn.scalar(
                    select(func.coalesce(func.sum(ServedBytes.bytes), 0))
                    .where(ServedBytes.client == key, ServedBytes.day == day)) or 0)
        except Exception:  # the database is down: count what is in memory (logged)
            log.warning("the ledger could not read today's bytes of a client", exc_info=True)
            return 0

    def flush(self) -> int:
        """Add what is counted in memory to the database, in one transaction.

        Returns
        -------
        int
            The rows written (0 when nothing was pending).

        Raises
        ------
        sqlalchemy.exc.SQLAlchemyError
            When the database refuses; the counts then stay in memory for the next flush.
        """
        from ..alloc.db import engine_for
        from ..alloc.models import ServedBytes

        with self._flush_lock:
            batch = self.pending()
            if not batch:
                return 0
            url = self.url()
            engine = engine_for(url)
            table = ServedBytes.__table__
            if engine.dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            rows = [{"day": d, "client": k, "dataset": ds, "protocol": p, "bytes": b,
                     "requests": n} for (d, k, ds, p), (b, n) in sorted(batch.items())]
            stmt = insert(table)
            stmt = stmt.on_conflict_do_update(
                index_elements=["day", "client", "dataset", "protocol"],
                set_={"bytes": table.c.bytes + stmt.excluded.bytes,
                      "requests": table.c.requests + stmt.excluded.requests})
            with engine.begin() as conn:
                conn.execute(stmt, rows)
            # committed: take exactly that out of memory (more may have come meanwhile)
            with self._lock:
                for row, (nbytes, count) in batch.items():
                    counts = self._pending[row]
                    counts[0] -= nbytes
                    counts[1] -= count
                    if counts[1] == 0 and counts[0] == 0:
                        del self._pending[row]
                    cached = self._cache.get((row[1], row[0]))
                    if cached is not None:
                        self._cache[(row[1], row[0])] = (cached[0], cached[1] + nbytes)
            return len(rows)

    def close(self) -> None:
        """Stop the background thread and write what is left (a failure is logged and
        raised)."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=60)
        self.flush()


def _flusher(ref: weakref.ReferenceType[Ledger], wake: threading.Event) -> None:
    """The background thread: flush every interval until the ledger is closed or gone."""
    while True:
        ledger = ref()
        if ledger is None or ledger._closed:
            return
        interval = ledger.interval
        del ledger  # hold no reference while waiting: a dropped app frees its ledger
        wake.wait(interval)
        ledger = ref()
        if ledger is None:
            return
        if ledger._closed:
            return  # close() writes the rest itself
        try:
            ledger.flush()
        except Exception:
            log.warning("the ledger could not be written; the counts stay in memory and "
                        "are written at the next flush", exc_info=True)
        del ledger


# --- reports -------------------------------------------------------------------------

By = Literal["client", "dataset", "protocol", "day"]


def _since_filter(query: Any, since: dt.date | None) -> Any:
    from ..alloc.models import ServedBytes

    return query if since is None else query.where(ServedBytes.day >= since)


def totals(db_url: str | None = None, *, by: By = "protocol",
           since: dt.date | None = None) -> dict[str, int]:
    """Bytes in the ledger per client, dataset, protocol or day.

    Parameters
    ----------
    db_url
        The allocations database (default :func:`oceandata.alloc.db.default_url`).
    by
        What to total by (days as ISO dates).
    since
        The first UTC day counted (default: all).

    Returns
    -------
    dict
        Name -> bytes.
    """
    return {row["name"]: row["bytes"]
            for row in top(db_url, by=by, since=since, limit=None)}


def top(db_url: str | None = None, *, by: By = "client", since: dt.date | None = None,
        limit: int | None = 10) -> list[dict[str, Any]]:
    """The heaviest clients (or datasets, protocols, days) of the ledger.

    Parameters
    ----------
    db_url
        The allocations database (default :func:`oceandata.alloc.db.default_url`); its
        schema is upgraded first if needed.
    by
        ``client``, ``dataset``, ``protocol`` or ``day``.
    since
        The first UTC day counted (default: all).
    limit
        The most rows (None: all).

    Returns
    -------
    list of dict
        ``name``, ``bytes``, ``requests`` and ``datasets`` (distinct datasets; for
        ``by="dataset"``, distinct clients as ``clients``), heaviest first.
    """
    from sqlalchemy import func, select

    from ..alloc.db import engine_for, upgrade
    from ..alloc.models import ServedBytes

    column = {"client": ServedBytes.client, "dataset": ServedBytes.dataset,
              "protocol": ServedBytes.protocol, "day": ServedBytes.day}[by]
    other = ServedBytes.client if by == "dataset" else ServedBytes.dataset
    url = resolve_url(db_url)
    upgrade(url)
    total = func.sum(ServedBytes.bytes)
    query = (select(column, total, func.sum(ServedBytes.requests),
                    func.count(func.distinct(other)))
             .group_by(column).order_by(total.desc(), column))
    query = _since_filter(query, since)
    if limit is not None:
        query = query.limit(limit)
    spread = "clients" if by == "dataset" else "datasets"
    with engine_for(url).connect() as conn:
        return [{"name": name.isoformat() if isinstance(name, dt.date) else name,
                 "bytes": int(nbytes or 0), "requests": int(count or 0), spread: int(n)}
                for name, nbytes, count, n in conn.execute(query)]


__all__ = ["CACHE_SECONDS", "FLUSH_SECONDS", "Ledger", "resolve_url", "top", "totals",
           "utc_day"]
