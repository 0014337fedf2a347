"""Size estimates of every data request, before any data is read (stub: issue 16).

:func:`size_guard` is a dependency of every route (after the access guard): it costs
the request from metadata, answers ``dry_run=1`` with the estimate, and refuses (413)
or queues (202, :mod:`.asyncjobs`) what is too large to stream.
"""

from __future__ import annotations

from fastapi import Request


async def size_guard(request: Request) -> None:
    """Estimate the request of the path; refuse or divert it when too large (no-op yet)."""
