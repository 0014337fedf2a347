"""Prometheus metrics of the open-data service (stub: filled by issue 16's work)."""

from __future__ import annotations

from typing import Any


def install(app: Any) -> None:
    """Add ``/metrics`` and the request instrumentation to *app* (the inner service)."""


def observe(kind: Any, status: int, seconds: float, nbytes: int) -> None:
    """Count one answered request of :class:`.policy.RequestKind` *kind*."""


def refused(kind: Any, reason: str) -> None:
    """Count a refusal: ``estimate``, ``rate``, ``concurrency``, ``quota`` or ``timeout``."""


def job_queued(dataset: str | None) -> None:
    """Count an asynchronous job queued for *dataset*."""
