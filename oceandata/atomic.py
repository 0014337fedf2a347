"""Atomic outputs: write under a temporary name, rename when complete, clean up on a signal.

Every writer of oceandata (``export``, ``ingest``, catalog registration, sample
placement) goes through :func:`atomic_output`:

1. the output is written to ``.<name>.tmp-<pid>`` beside the target;
2. on success it is renamed over the target (``os.replace``, atomic on one file system);
3. on any failure, including ``SIGINT`` and ``SIGTERM``, the temporary file or folder is
   removed and nothing appears under the requested name.

Signals are handled the only way that is safe with dask threads and HDF5: the handler
runs in the main thread (Python delivers signals there) and *raises*
:class:`~oceandata.errors.Interrupted`, an exception (a ``BaseException``) carrying the signal
number. The exception unwinds the write like any error; it is never raised inside a
worker thread or inside a C call of netCDF/HDF5 (Python runs handlers between
bytecodes). Dask work inside the block runs on a private thread pool that is shut down
(queued tasks cancelled, running ones awaited) *before* the temporary output is
removed, so no worker thread can write into it afterwards. With a ``distributed`` client
the block's futures are cancelled and the workers are polled until none of the tasks
that started during the block is still running (at most ``CLUSTER_DRAIN_TIMEOUT``).
A signal that interrupts the main thread while it waits for zarr's I/O thread (store
metadata and coordinates are written from the main thread) abandons the wait, not the
write: the clean-up waits for zarr's loop to finish what it runs, then removes the
temporary output again. A second signal during the clean-up is ignored rather than
interrupting it.

The command line turns :class:`~oceandata.errors.Interrupted` into exit code
``128 + signal`` (130 for ``SIGINT``, 143 for ``SIGTERM``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

from .errors import Interrupted

__all__ = ["atomic_output", "is_temporary", "raising_signals", "remove_path", "temporary_name"]

#: The signals that interrupt a write.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def temporary_name(target: str | os.PathLike[str]) -> Path:
    """The temporary path a write of *target* uses: ``.<name>.tmp-<pid>`` beside it."""
    target = Path(target)
    return target.with_name(f".{target.name}.tmp-{os.getpid()}")


def remove_path(path: Path) -> None:
    """Remove a file, link or folder tree; nothing if it does not exist."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def raising_signals(signals: tuple[int, ...] = SIGNALS) -> Iterator[None]:
    """Turn *signals* into :class:`~oceandata.errors.Interrupted` while the block runs.

    Only the first signal raises; later ones are ignored until the block has unwound
    (so clean-up code in ``finally`` and ``except`` clauses runs to the end). Outside
    the main thread, where Python cannot install handlers, this does nothing. The
    previous handlers are restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if fired:
            return
        fired.append(signum)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _distributed_client() -> Any:
    """The default ``distributed`` client, or None."""
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        return default_client()
    except ValueError:
        return None


def _uses_local_threads() -> bool:
    """True when dask computations here run on the local threaded scheduler."""
    import dask

    if dask.config.get("scheduler", None) not in (None, "threads", "threading"):
        return False
    return _distributed_client() is None


#: How long a failed write waits for its tasks still running on a cluster, in seconds.
CLUSTER_DRAIN_TIMEOUT = 120.0


def _worker_executing(dask_worker: Any) -> list:
    """Keys a worker's threads are running, cancelled ones included (run on the worker)."""
    return [ts.key for ts in dask_worker.state.executing]


def _executing_keys(client: Any) -> set:
    """Every (worker, key) a worker thread of the client's cluster is running now.

    The scheduler forgets a cancelled task at once; the worker's thread runs on until the
    task returns, so the workers are asked, not the scheduler.
    """
    return {(worker, key) for worker, keys in client.run(_worker_executing).items()
            for key in keys}


@contextlib.contextmanager
def _cluster_drained(client: Any) -> Iterator[None]:
    """On failure, cancel the block's cluster tasks and wait until none is running.

    A chunk write already running on a worker finishes even when its future is cancelled;
    removing the temporary output before that would let it reappear. Tasks running before
    the block (another computation of the same client) are not waited for.
    """
    from distributed import Future

    held = set(client.futures)
    before = _executing_keys(client)
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            new = [Future(key, client) for key in set(client.futures) - held]
            if new:
                client.cancel(new)
            deadline = time.monotonic() + CLUSTER_DRAIN_TIMEOUT
            while _executing_keys(client) - before and time.monotonic() < deadline:
                time.sleep(0.1)  # polling the workers' state, not a synchronisation
        raise


@contextlib.contextmanager
def _private_pool() -> Iterator[ThreadPoolExecutor | None]:
    """A thread pool for the dask work of one write, awaited before the block ends.

    With a distributed client, the computations go to its cluster as usual; on failure
    the block's tasks are cancelled and awaited (:func:`_cluster_drained`). With another
    scheduler configured, nothing is changed.
    """
    if not _uses_local_threads():
        client = _distributed_client()
        if client is None:
            yield None
        else:
            with _cluster_drained(client):
                yield None
        return
    import dask
    from dask.system import CPU_COUNT

    pool = ThreadPoolExecutor(CPU_COUNT, thread_name_prefix="oceandata-write")
    try:
        with dask.config.set(pool=pool):
            yield pool
    finally:
        # Queued tasks are dropped; a task already running (one chunk) finishes first,
        # so nothing writes into the temporary output after it is removed.
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def atomic_output(target: str | os.PathLike[str], *, overwrite: bool = True,
                  ) -> Iterator[Path]:
    """Yield a temporary path to write *target* to; rename it over *target* on success.

    Parameters
    ----------
    target
        The final path (a file or a folder such as a Zarr store).
    overwrite
        Replace an existing *target* once the new output is complete. When False, an
        existing target is left alone and :class:`FileExistsError` is raised at the end.

    Yields
    ------
    pathlib.Path
        ``.<name>.tmp-<pid>`` beside *target*, removed beforehand if a previous run of
        the same process id left it.

    Raises
    ------
    oceandata.errors.Interrupted
        On ``SIGINT``/``SIGTERM`` during the block (main thread only); the temporary
        output is removed first.

    Examples
    --------
    >>> with atomic_output("out.nc") as tmp:  # doctest: +SKIP
    ...     ds.to_netcdf(tmp)
    """
    target = Path(target)
    tmp = temporary_name(target)
    remove_path(tmp)
    with raising_signals():
        try:
            with _private_pool():
                yield tmp
            if target.exists() or target.is_symlink():
                if not overwrite:
                    raise FileExistsError(f"{target} already exists")
                if target.is_dir() and not target.is_symlink() and not tmp.is_dir():
                    shutil.rmtree(target)
                elif target.is_dir() and not target.is_symlink():
                    _replace_folder(tmp, target)
                    return
            os.replace(tmp, target)
        except BaseException:
            remove_path(tmp)
            if _settle_zarr_io():  # a write it had running may have recreated a part
                remove_path(tmp)
            raise


#: how long a failed write waits for zarr's I/O thread to finish what it runs, in seconds
ZARR_SETTLE_TIMEOUT = 30.0


def _settle_zarr_io(timeout: float = ZARR_SETTLE_TIMEOUT) -> bool:
    """Wait until zarr's I/O thread has finished the coroutines it is running.

    zarr (v3) runs store I/O as coroutines on an event loop in a thread of its own; a
    signal raised in the main thread while it waits for one (xarray writes a store's
    metadata and coordinates from the main thread) abandons the wait, not the write,
    which can then recreate part of a temporary store after it was removed.

    Returns
    -------
    bool
        Whether zarr's loop was running (so the caller removes the output again).
    """
    import asyncio

    try:
        from zarr.core import sync as zarr_sync
    except ImportError:  # pragma: no cover - zarr is a dependency
        return False
    loop = zarr_sync.loop[0]
    if loop is None or not loop.is_running():
        return False

    async def pending() -> None:
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(pending(), loop).result(timeout + 1)
    return True


def _replace_folder(tmp: Path, target: Path) -> None:
    """Swap a complete folder in for an existing one (rename aside, rename in, remove)."""
    aside = target.with_name(f".{target.name}.old-{os.getpid()}")
    remove_path(aside)
    os.replace(target, aside)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(aside, target)
        raise
    remove_path(aside)


def is_temporary(path: Path) -> bool:
    """True for a name made by :func:`temporary_name` (any process id)."""
    name = path.name
    return name.startswith(".") and ".tmp-" in name and name.rsplit(".tmp-", 1)[1].isdigit()
