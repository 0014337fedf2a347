"""Test infrastructure: throw-away real services (a single-node Slurm) for tests and dev tools."""

from __future__ import annotations

import os


def in_ci() -> bool:
    """Whether this runs in CI (``CI=true``), where a service that cannot start is a failure.

    Returns
    -------
    bool
        True when the ``CI`` environment variable is ``true`` (any case) or ``1``.
    """
    return os.environ.get("CI", "").strip().lower() in ("true", "1")
