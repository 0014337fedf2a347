"""Attacks on the governance promises (issue 17), each found by a probe and kept as a test.

- the negative list beside the root catalog that is actually served (``oceandata serve
  --catalog``, ``create_app(path)``, ``catalog grades PATH``) must close its entries;
- a backup repository's credentials (``rest:https://user:password@host/``) must never reach
  the append-only audit trail, an error line or an output;
- a desensitised copy must not carry statistics of the values it withholds (a delay's
  removed time steps), nor exact positions of points inside an exclusion zone held off the
  grid (station latitudes and longitudes along another dimension).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from fastapi.testclient import TestClient
from shapely.geometry import Point, Polygon

from oceandata.config import get_settings
from oceandata.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).with_name("oceandata"))


@pytest.fixture
def no_site_list(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No negative list named by the settings: the one beside the root catalog applies."""
    monkeypatch.delenv("OCEANDATA_GOVERNANCE__NEGATIVE_LIST", raising=False)
    monkeypatch.delenv("OCEANDATA_CATALOG", raising=False)
    get_settings(reload=True)
    yield
    monkeypatch.undo()
    get_settings(reload=True)


# -- the negative list of the served catalog ----------------------------------------------

def test_the_negative_list_beside_the_served_catalog_closes_its_entries(
        tmp_path: Path, no_site_list: None) -> None:
    """Probe: ``oceandata serve --catalog site/catalog.yaml`` with ``site/negative-list.yaml``
    naming an open entry served it to anonymous callers (the list was looked for beside
    the OCEANDATA_CATALOG setting, not beside the catalog being served)."""
    from oceandata.dataservice import create_app

    site = tmp_path / "site"
    site.mkdir()
    (site / "catalog.yaml").write_text(
        "metadata: {version: 1}\nsources:\n  samples:\n"
        "    driver: intake.catalog.local.YAMLFileCatalog\n"
        f"    args: {{path: \"{REPO / 'catalogs' / 'gridded.yaml'}\"}}\n")
    (site / "negative-list.yaml").write_text(
        "entries:\n  - {pattern: cobe_sst2, reason: coastal infrastructure in the footprint}\n")

    client = TestClient(create_app(str(site / "catalog.yaml")))
    names = {d["name"] for d in client.get("/datasets.json", params={"limit": 1000}).json()}
    assert "sst_ndjfm_anom" in names  # the catalog is served
    assert "cobe_sst2" not in names
    assert client.get("/datasets/cobe_sst2/opendap.das").status_code == 404
    assert client.get("/erddap/griddap/cobe_sst2.das").status_code == 404

    proc = subprocess.run([CLI, "catalog", "grades", str(site / "catalog.yaml"), "--json"],
                          capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items()
                               if k not in ("OCEANDATA_GOVERNANCE__NEGATIVE_LIST",
                                            "OCEANDATA_CATALOG")})
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)["entries"]}
    assert rows["cobe_sst2"]["release"] == "restricted", rows["cobe_sst2"]


# -- backups: the repository's credentials -------------------------------------------------

def test_backup_repository_credentials_never_reach_the_trail_or_the_terminal(
        tmp_path: Path) -> None:
    """Probe: a restic REST repository with its credentials in the URL; the failed backup
    wrote ``backup:rest:http://user:<password>@...`` into the append-only audit trail (target
    and detail) and printed the password on stderr, although restic itself masks it."""
    from oceandata.netutil import free_port

    secret = "hunter2-backup-SECRET"
    audit_db = tmp_path / "trail" / "audit.sqlite"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCEANDATA_GOVERNANCE__")}
    env.update(OCEANDATA_DATA_DIR=str(tmp_path / "data"),
               OCEANDATA_GOVERNANCE__AUDIT_URL=f"sqlite:///{audit_db}",
               OCEANDATA_GOVERNANCE__BACKUP_REPOSITORY=(
                   f"rest:http://backup:{secret}@127.0.0.1:{free_port()}/repo/"))
    proc = subprocess.run([CLI, "admin", "backup"], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert secret not in proc.stdout + proc.stderr, proc.stderr
    assert "backup:***@127.0.0.1" in proc.stderr, proc.stderr  # still says which repository
    with sqlite3.connect(audit_db) as db:
        rows = db.execute("SELECT action, outcome, target, detail FROM audit_log").fetchall()
    failed = [r for r in rows if r[0] == "backup.create"]
    assert failed and failed[-1][1] == "failed", rows  # the failure is still recorded
    assert not [r for r in rows if secret in json.dumps(r)], rows


# -- desensitised copies -------------------------------------------------------------------

def _summaries(ds: xr.Dataset) -> dict[str, tuple[float, float]]:
    """``actual_range``-like attributes of the copy that disagree with the values it holds."""
    wrong = {}
    for name, var in ds.variables.items():
        for key in ("actual_range", "valid_range"):
            if key in var.attrs:
                lo, hi = (float(v) for v in np.ravel(var.attrs[key]))
                held = (float(var.min()), float(var.max()))
                if key == "actual_range" and not np.allclose((lo, hi), held, atol=1e-3):
                    wrong[f"{name}.{key}"] = (lo, hi)
    return wrong


def test_a_delay_leaves_no_statistic_of_the_withheld_time_steps(sample) -> None:
    """Probe: a delay-only profile on the real COBE-SST2 1950 file removed the newest months
    but kept ``sst:actual_range`` computed over the unpublished values (its maximum is not
    in the copy), and the global ``time_coverage_end`` named the withheld last day."""
    from oceandata.governance.desensitise import Profile, apply_profile

    src = xr.open_dataset(sample("gridded/cobe-sst2/year1950.nc"), chunks={})
    src.attrs["time_coverage_end"] = "1950-12-01T00:00:00Z"
    assert "actual_range" in src["sst"].attrs
    applied = apply_profile(src, Profile.model_validate({"delay_days": 60}), name="delay",
                            entry="cobe_1950", now=dt.datetime(1950, 10, 20))
    out = applied.dataset
    cutoff = np.datetime64("1950-08-21")
    assert out["time"].size and (out["time"].values <= cutoff).all()
    assert _summaries(out) == {}
    for key, value in out.attrs.items():
        assert "1950-12" not in str(value) and "1950-09" not in str(value), (key, value)


def test_positions_off_the_grid_inside_an_exclusion_zone_are_not_published(sample) -> None:
    """Probe: stations along their own dimension (``station_lat``/``station_lon``, CF
    degrees) beside the real COBE grid kept their exact positions and values inside the
    exclusion zone after exclude + round + min_cell; only the grid was treated."""
    from oceandata.governance.desensitise import Profile, apply_profile

    ring = [[117.2, 22.3], [123.7, 24.1], [126.3, 33.2], [121.8, 40.7], [117.2, 38.9]]
    src = xr.open_dataset(sample("gridded/cobe-sst2/year1950.nc"), chunks={})
    src = src.assign(
        station_sst=("station", np.array([18.25, 21.75]), {"units": "degC"}),
        station_lat=("station", np.array([30.123456, 35.654321]),
                     {"units": "degrees_north", "long_name": "station latitude"}),
        station_lon=("station", np.array([121.111111, 120.222222]),
                     {"units": "degrees_east", "long_name": "station longitude"}))
    zone = Polygon(ring)
    assert all(zone.contains(Point(x, y)) for x, y in zip(src.station_lon.values,
                                                          src.station_lat.values, strict=True))
    profile = Profile.model_validate({"exclude": [{"ring": ring}], "round": 1,
                                      "min_cell": 2.0})
    try:
        out = apply_profile(src, profile, name="coastal", entry="cobe_1950").dataset
    except UsageError as exc:  # refusing is a fix: nothing would be published
        assert "station_lat" in str(exc) and "drop" in str(exc), exc
        out = apply_profile(src, Profile.model_validate(
            {"exclude": [{"ring": ring}], "round": 1, "min_cell": 2.0,
             "drop": ["station_lat", "station_lon"]}), name="coastal",
            entry="cobe_1950").dataset
    for name, var in out.variables.items():  # checked on the output, by units alone
        if name in ("lat", "lon"):
            continue
        units = str(var.attrs.get("units", ""))
        assert units not in ("degrees_north", "degrees_east"), (name, var.values)
