"""Command line of oceandata.governance.audit (STUB: being written)."""

from __future__ import annotations

from typing import Any


def install(app: Any) -> None:
    """Add this module's commands to the `oceandata` typer *app*."""
