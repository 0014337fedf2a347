"""The open-data service on 127.0.0.1 for tests: a catalog with a restricted entry, served.

:func:`make_catalog` writes a root catalog that includes the repository's sample catalogs
and adds ``secret_sst`` (the WA daily OISST series, restricted to the group
``partners``); :func:`serving` runs an app with uvicorn in a thread on a free port and
yields its base URL once it answers.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from oceandata.catalog import open_catalog
from oceandata.catalog.core import Catalog
from oceandata.netutil import free_port

REPO = Path(__file__).resolve().parents[1]
RESTRICTED = "secret_sst"
RESTRICTED_GROUP = "partners"

CATALOG = """\
metadata: {{version: 1, title: open-data service test catalog}}
sources:
  samples:
    driver: intake.catalog.local.YAMLFileCatalog
    description: the repository's sample catalog
    args:
      path: "{root}"
  {name}:
    driver: netcdf
    description: the WA series, restricted to partners
    args:
      urlpath: "{path}"
      chunks: {{}}
    metadata:
      title: Restricted daily SST off Western Australia
      variables: [{{name: sst, standard_name: sea_surface_temperature, units: degree_Celsius}}]
      bbox: {{west: 112.0, south: -30.0, east: 113.0, north: -29.0}}
      time_range: {{start: "1982-01-01", end: "2024-12-31"}}
      grid: dsg
      feature_type: timeSeries
      provider: test
      license: CC0
      tags: [sst, restricted]
      classification: {{category: observation, grade: important, rationale: test data, owner: test, release: restricted}}
      access: {{groups: [{group}]}}
"""


def make_catalog(folder: Path) -> Catalog:
    """The sample catalog plus the restricted entry ``secret_sst``, written under *folder*."""
    path = open_catalog().entry("oisst_wa").paths()[0]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "catalog.yaml").write_text(CATALOG.format(
        root=REPO / "catalogs" / "ocean.yaml", name=RESTRICTED, path=path,
        group=RESTRICTED_GROUP))
    return open_catalog(folder / "catalog.yaml")


@contextlib.contextmanager
def serving(app: Any, timeout: float = 60, ready_path: str = "/datasets") -> Iterator[str]:
    """Serve *app* on a free loopback port in a thread; yield ``http://127.0.0.1:<port>``
    once *ready_path* answers 2xx."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        ready = threading.Event()
        # uvicorn sets .started once the socket listens; wait on it, bounded
        for _ in range(int(timeout / 0.05)):
            if server.started or not thread.is_alive():
                ready.set()
                break
            threading.Event().wait(0.05)  # polling uvicorn's start flag, not a sync sleep
        if not server.started:
            raise RuntimeError("the data service did not start")
        base = f"http://127.0.0.1:{port}"
        requests.get(f"{base}{ready_path}", timeout=30).raise_for_status()
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)
