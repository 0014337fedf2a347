"""Site settings of the production configuration files, read from the environment.

``hub_config/production/*.py`` take every site-specific value (hosts, databases, Slurm
partition, TLS paths) from named environment variables; a missing required one stops
the process with one line saying which variable, an example, and where it is described.
"""

from __future__ import annotations

import os


def require(name: str, example: str, *, who: str = "oceandata production") -> str:
    """The value of a required variable; exit with a one-line message when it is unset."""
    value = os.environ.get(name, "").strip()
    if not value:
        raise SystemExit(f"{who}: set {name} (e.g. {name}={example}) in the hub's "
                         "environment; see docs/operations.md, 'Production'")
    return value


def optional(name: str, default: str) -> str:
    """The value of an optional variable, or *default* when unset or empty."""
    return os.environ.get(name, "").strip() or default
