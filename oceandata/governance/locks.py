"""One writer per store: an exclusive lock file beside each versioned store.

Icechunk on a local or network filesystem cannot stop two processes that commit to one
store at the same time: the loser fails with a conflict after all its work, or, on a
filesystem without atomic conditional writes, a commit can be lost. Every oceandata
command that writes a store (ingest, append, tag, rechunk, publish, backup, garbage
collection) therefore holds the store's lock while it works::

    from oceandata.governance.locks import store_lock, StoreLocked
    with store_lock(path, command="oceandata ingest --append ..."):
        ...   # only one process at a time gets here for this store

The lock is the file ``<parent>/.<store name>.lock``, *beside* the store, so that backups
and copies of the store never carry it. It is held with an OS lock (``flock``): the kernel
releases it when the holder exits or dies, ``kill -9`` included, which is how a stale lock
is recognised. Once the OS lock is taken the holder writes its pid, host, command, user
and start time into the file as JSON; a second writer reads them and gets
:class:`StoreLocked`, one line naming the holder and what to do.

The holder deletes the file while it still holds the OS lock, then lets the lock go. A
file that is still there with nobody holding its OS lock was left by a holder that died:
it is stale, and the next writer takes it over with a log line naming the dead holder.
Because a file is only deleted by a process holding its OS lock, a writer that took the
OS lock of a file that has meanwhile been deleted sees that the name no longer points at
its file and tries again, so two writers never hold locks on two files of one name.

Within one process the lock is reentrant for the thread that holds it, so a command that
locks a store and then calls another locking function on it (ingest calling tag) does not
deadlock; another thread of the same process contends like another process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import getpass
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError, UsageError

__all__ = ["StoreLocked", "lock_path", "store_lock", "unix_user"]

logger = logging.getLogger(__name__)

#: Seconds between two attempts to take a held lock when waiting.
POLL_INTERVAL = 0.1
#: How long a second writer waits for a holder that has taken the OS lock but not yet
#: written its name into the file (microseconds in practice).
_RECORD_GRACE = 0.5


class StoreLocked(UsageError):
    """Another process holds the store's write lock.

    Attributes
    ----------
    holder
        What the lock file recorded (pid, host, command, user, since), or None.
    """

    def __init__(self, message: str, holder: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.holder = holder


@dataclass
class _Held:
    pid: int
    thread: int
    depth: int


_held: dict[str, _Held] = {}
_held_guard = threading.Lock()
#: _try_take's answer when the file it locked is no longer the file of that name.
_AGAIN = object()


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file of the store at *path*: ``<parent>/.<name>.lock``.

    Parameters
    ----------
    path
        The store. Its path is resolved first (symbolic links followed), so two paths to
        one store share one lock.

    Returns
    -------
    Path
        The lock file (which exists only while the lock is held, or after a holder died).
    """
    real = Path(os.path.realpath(os.fspath(path)))
    return real.parent / f".{real.name}.lock"


def unix_user() -> str:
    """The Unix user running this process (its uid when it has no name)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME (containers)
        return str(os.getuid())


def _alive(pid: int) -> bool:
    """Whether a process *pid* exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _gone(who: dict[str, Any] | None) -> bool:
    """Whether *who* names a process of this host that no longer exists."""
    return bool(who) and who.get("host") == socket.gethostname() and \
        isinstance(who.get("pid"), int) and not _alive(who["pid"])


def _read(fd: int) -> dict[str, Any] | None:
    """The holder recorded in the open lock file, or None when empty or unreadable."""
    try:
        raw = os.pread(fd, 65536, 0)
        data = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "pid" in data else None


def _text(value: Any, limit: int = 300) -> str:
    """A recorded field made safe for one line of a terminal."""
    text = "".join(c if c.isprintable() else " " for c in str(value))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _describe(store: Path, lock: Path, who: dict[str, Any] | None) -> str:
    """The one line a second writer reads."""
    if not who:
        return (f"store {store} is being written by another process (lock {lock}; it has not "
                "recorded its name); wait for it to finish, then run the command again")
    pid, host = who.get("pid"), _text(who.get("host", "?"))
    command, since = _text(who.get("command", "?")), _text(who.get("since", "?"))
    if _gone(who):  # its OS lock is held by a process it started, which outlived it
        return (f"store {store} is locked by a process left running on this host by pid {pid} "
                f"(`{command}`), which is gone; find it with `fuser -v {lock}`, stop it, then "
                "run the command again")
    here = host == socket.gethostname()
    return (f"store {store} is being written by pid {pid} on host {host} (`{command}`, user "
            f"{_text(who.get('user', '?'))}) since {since}; wait for it to finish (`ps -p "
            f"{pid}`{'' if here else f' on {host}'}), then run the command again")


def _open(lock: Path, store: Path) -> tuple[int, bool]:
    """Open (create) the lock file, never through a symlink: (fd, writable)."""
    flags = os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        return os.open(lock, os.O_RDWR | os.O_CREAT | flags, 0o664), True
    except FileNotFoundError as exc:
        raise UsageError(f"folder {lock.parent} does not exist; cannot lock store {store}"
                         ) from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataError(f"the lock file {lock} of store {store} is a symbolic link; remove "
                            "it (oceandata never makes one)") from exc
        if exc.errno != errno.EACCES or not lock.exists():
            raise DataError(f"cannot create the lock file {lock} of store {store}: "
                            f"{exc.strerror or exc}") from exc
    try:  # another user's file: readable is enough to see its holder, or take it over
        return os.open(lock, os.O_RDONLY | flags), False
    except OSError as exc:
        raise DataError(f"cannot open the lock file {lock} of store {store}: "
                        f"{exc.strerror or exc}") from exc


def _same_file(fd: int, lock: Path) -> bool:
    """Whether the name *lock* still points at the open file *fd*."""
    try:
        now = os.stat(lock, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)


def _try_take(lock: Path, store: Path, command: str) -> tuple[int | None, Any]:
    """One attempt: ``(fd, None)`` when taken, ``(None, holder)`` when held by another,
    ``(None, _AGAIN)`` when the file changed under us (try again at once)."""
    fd, writable = _open(lock, store)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            who = _read(fd)
            deadline = time.monotonic() + _RECORD_GRACE
            # a new holder records itself right after taking the OS lock
            while (who is None or _gone(who)) and time.monotonic() < deadline:
                time.sleep(0.01)
                who = _read(fd)
            return None, who
        finally:
            os.close(fd)
    except OSError as exc:
        os.close(fd)
        raise DataError(f"cannot lock {lock} (store {store}): {exc.strerror or exc}; the "
                        "filesystem must support flock") from exc
    try:
        if not _same_file(fd, lock):  # its holder deleted it after we opened it
            _unlock(fd)
            return None, _AGAIN
        stale = _read(fd)
        if stale is not None:
            logger.warning("taking over the stale lock of store %s: pid %s on host %s (`%s`) "
                           "since %s is gone", store, stale.get("pid"), _text(stale.get("host")),
                           _text(stale.get("command")), _text(stale.get("since")))
        if not writable:  # a dead holder's file we may not write: remove it while we hold it
            try:
                os.unlink(lock)
            except OSError as exc:
                raise DataError(f"the stale lock file {lock} of store {store} belongs to "
                                f"another user and cannot be removed ({exc.strerror}); ask "
                                "its owner or an administrator to delete it") from exc
            _unlock(fd)
            return None, _AGAIN
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                  "user": unix_user(), "store": str(store),
                  "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
    except BaseException:
        _unlock(fd)
        raise
    return fd, None


def _unlock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _release(fd: int, lock: Path) -> None:
    """Delete the file while still holding its OS lock, then let the lock go."""
    try:
        if _same_file(fd, lock):
            try:
                os.unlink(lock)
            except OSError:  # cannot delete: leave an empty file, not a gone holder's name
                os.ftruncate(fd, 0)
    except OSError:
        pass
    finally:
        _unlock(fd)


@contextlib.contextmanager
def store_lock(path: str | os.PathLike[str], *, command: str,
               wait: float = 0.0) -> Iterator[Path]:
    """Hold the exclusive write lock of the store at *path* for the ``with`` body.

    Parameters
    ----------
    path
        The store (an Icechunk repository folder, or a Zarr store folder); it need not
        exist yet, but its parent folder must.
    command
        What the holder is doing, shown to a second writer (e.g. its command line).
    wait
        Seconds to wait for the lock before raising :class:`StoreLocked` (0: do not wait).
        The OS lock is polled every :data:`POLL_INTERVAL` seconds.

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    StoreLocked
        Another process (or another thread of this one) still holds the lock after *wait*.
    UsageError, DataError
        The store's folder does not exist, or the lock file cannot be opened.

    Examples
    --------
    >>> with store_lock("var/stores/cobe.icechunk", command="oceandata store tag ..."):
    ...     ...  # doctest: +SKIP
    """
    lock = lock_path(path)
    store = lock.with_name(lock.name[1:].removesuffix(".lock"))
    key, me = str(lock), threading.get_ident()
    with _held_guard:
        mine = _held.get(key)
        if mine is not None and (mine.pid, mine.thread) == (os.getpid(), me):
            mine.depth += 1
        else:
            mine = None
    if mine is not None:  # nested call of the holding thread
        try:
            yield lock
        finally:
            with _held_guard:
                mine.depth -= 1
        return

    deadline = time.monotonic() + max(float(wait), 0.0)
    while True:
        fd, who = _try_take(lock, store, command)
        if fd is not None:
            break
        if who is _AGAIN:
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            raise StoreLocked(_describe(store, lock, who), who)
        time.sleep(min(POLL_INTERVAL, left))
    with _held_guard:
        _held[key] = _Held(os.getpid(), me, 1)
    try:
        yield lock
    finally:
        with _held_guard:
            _held.pop(key, None)
        _release(fd, lock)
