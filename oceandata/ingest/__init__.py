"""Ingestion: NetCDF archives into versioned, chunk-planned, verifiable Zarr stores.

- :func:`ingest` and :func:`rechunk` (:mod:`.pipeline`) write stores in transactions;
- :mod:`.store` opens, logs, tags and verifies them;
- :mod:`.chunks` plans chunk layouts and estimates a request's read cost;
- :mod:`.checksums` digests files and arrays; :mod:`.compliance` runs the CF/ACDD checks;
- :mod:`.register` writes catalog entries derived from the data;
- :mod:`.projects` ingests into a project's workspace and catalog (``--project``).

Names are imported on first use, so the command line starts without loading Icechunk.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"IngestResult": "pipeline", "Source": "pipeline", "ingest": "pipeline",
            "rechunk": "pipeline", "log": "store", "open_store": "store", "tag": "store",
            "verify": "store", "register_store": "register",
            "ingest_into_project": "projects"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
