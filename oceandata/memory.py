"""Process memory: give the heap's freed pages back to the system."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (other C libraries, other systems)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Return the heap's freed pages to the system (glibc ``malloc_trim(0)``; else a no-op).

    glibc keeps freed buffers below its mmap threshold (at most 32 MiB) in the malloc
    arena of the thread that used them, resident. Chunks of a time-chunked store (31 MB
    for a 0.5-degree grid and 30 days) are just that size, so without a trim the peak
    RSS grows by about a chunk per arena; and a step that follows a large one (the
    ingest's compliance check after its write) adds to the first one's high-water mark
    instead of reusing its memory. Called at the start of each chunk's task (as dask's
    distributed workers do) and between the ingest's passes; a few microseconds a call.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
