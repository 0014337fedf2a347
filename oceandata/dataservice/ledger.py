"""The bytes-served ledger of the open-data service (stub: filled by issue 16's work).

Bytes served per client (``user:<name>`` or an anonymised ``anon:<hash>``), dataset,
protocol and UTC day, kept in the allocations database.
"""

from __future__ import annotations

import datetime as dt


class Ledger:
    """Bytes served, aggregated in memory and written to the database.

    Parameters
    ----------
    db_url
        The allocations database; None keeps the counts in memory only.
    """

    def __init__(self, db_url: str | None) -> None:
        self.db_url = db_url

    def record(self, key: str, dataset: str | None, protocol: str, nbytes: int,
               when: dt.datetime | None = None) -> None:
        """Count *nbytes* served to *key* for *dataset* over *protocol*."""

    def served_today(self, key: str) -> int:
        """Bytes served to *key* since 00:00 UTC."""
        return 0

    def flush(self) -> None:
        """Write what is counted in memory to the database."""

    def close(self) -> None:
        """Flush and stop."""
