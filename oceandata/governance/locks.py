"""One writer per store: an exclusive lock file beside each versioned store (STUB: contract).

Contract::

    from oceandata.governance.locks import store_lock, StoreLocked
    with store_lock(path, command="ingest --append"):
        ...   # only one process at a time gets here for this store

A second writer gets :class:`StoreLocked` (a UsageError, exit 2) whose message names the
holder (pid, host, command, since) in one line; a lock whose holder process is gone on
this host is stale and is taken over.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import UsageError


class StoreLocked(UsageError):
    """Another process holds the store's write lock."""


@contextlib.contextmanager
def store_lock(path: str | os.PathLike[str], *, command: str,
               wait: float = 0.0) -> Iterator[Path]:
    """Hold the exclusive write lock of the store at *path* for the ``with`` body.

    Parameters
    ----------
    path
        The store (an Icechunk repository folder, or a Zarr store folder).
    command
        What the holder is doing, shown to a second writer.
    wait
        Seconds to wait for the lock before raising :class:`StoreLocked` (0: do not wait).

    Yields
    ------
    Path
        The lock file.
    """
    yield Path(path)
