"""Asynchronous jobs of the open-data service (stub: issue 16).

Too large to stream, a subset is written by a batch job charged to the caller's
allocation: ``async=1`` answers ``202 Accepted`` with the job's ``Location``;
``jobs/{id}`` tells its state, then a download link that expires.
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
