"""Versioned stores through the open-data service: ``name@tag`` pins a version in the URL.

A real Icechunk store (two years of COBE-SST2 ingested, the first tagged) is served; Zarr
and OPeNDAP clients read the tag and the newest version, each equal to a direct read of
the source files, and an unknown version is a 404 that names the versions.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import requests
import xarray as xr

from oceandata.catalog import open_catalog
from oceandata.dataservice import create_app
from oceandata.ingest import ingest, tag
from oceandata.ingest.register import register_store
from tests.dataservice_helpers import serving

OPEN = {"category": "scientific", "grade": "general", "rationale": "test data",
        "owner": "test", "release": "open"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sample) -> Iterator[tuple[str, list]]:
    folder = tmp_path_factory.mktemp("versions")
    years = [sample(f"gridded/cobe-sst2/year{y}.nc") for y in (1950, 1951)]
    store = folder / "cobe.icechunk"
    ingest(years[:1], store, name="cobe", check=False)
    tag(store, "v1950")
    ingest(years[1:], store, append=True, check=False)
    register_store(folder / "catalog.yaml", "cobe", store,
                   defaults={"provider": "test", "license": "CC0",
                             "classification": OPEN})
    with serving(create_app(open_catalog(folder / "catalog.yaml"))) as base:
        yield base, years


def test_a_tag_in_the_url_pins_the_version(served: tuple[str, list]) -> None:
    base, years = served
    first = xr.open_dataset(years[0])
    both = xr.concat([xr.open_dataset(p) for p in years], dim="time")
    pinned = xr.open_zarr(f"{base}/datasets/cobe@v1950/zarr", zarr_format=3)
    newest = xr.open_zarr(f"{base}/datasets/cobe/zarr", zarr_format=3)
    assert pinned.sizes["time"] == 12 and newest.sizes["time"] == 24
    np.testing.assert_array_equal(pinned["sst"].values, first["sst"].values)
    np.testing.assert_array_equal(newest["sst"].values, both["sst"].values)
    dap = xr.open_dataset(f"{base}/datasets/cobe@v1950/opendap", engine="netcdf4")
    np.testing.assert_array_equal(dap["sst"].isel(time=-1).values,
                                  first["sst"].isel(time=-1).values)


def test_an_unknown_version_is_a_404_in_one_sentence(served: tuple[str, list]) -> None:
    base, _ = served
    r = requests.get(f"{base}/datasets/cobe@v2099/zarr/zarr.json", timeout=30)
    assert r.status_code == 404, r.text
    detail = r.json()["detail"]
    assert "v2099" in detail and "\n" not in detail and "Traceback" not in detail
    # the dataset's page too (it answered 200 with links for the missing version), while
    # a tag's page is served
    for path in ("datasets/cobe@v2099", "datasets/cobe@v2099?lang=zh"):
        r = requests.get(f"{base}/{path}", timeout=30, headers={"Accept": "text/html"})
        assert r.status_code == 404, (path, r.status_code)
    assert requests.get(f"{base}/datasets/cobe@v1950", timeout=30).status_code == 200
