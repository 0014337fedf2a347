"""Published entries everywhere (issue 20): the root catalog the platform serves nests
``<data dir>/catalogs/published.yaml`` (notebooks' ``open_catalog()`` and a restarted
data service see what was published), and the data service serves a new publication
over OPeNDAP and Zarr at once, without a portal or STAC request first.

In process: the served root built by :func:`oceandata.ingest.samples.build_sample_stores`
(one small entry), a published entry registered as an approval registers it
(:func:`oceandata.ingest.register.register_store` into the published catalog, release
``open``), and the data service app under Starlette's test client.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from oceandata.alloc.publishing import published_catalog_path, published_dir
from oceandata.catalog import open_catalog
from oceandata.ingest.register import register_store
from oceandata.ingest.samples import build_sample_stores
from oceandata.io.validate import validate_catalog

SMALL = "etopo60"  # 264 kB
OPEN = {"category": "scientific", "grade": "general", "release": "open",
        "owner": "project 1", "rationale": "published by request 1"}


def _publish(data_dir: Path, name: str) -> Path:
    """Register *name* in the published catalog as an approval does: a copy of the small
    store under ``<data dir>/published/<name>/data.icechunk``."""
    target = published_dir(data_dir) / name / "data.icechunk"
    shutil.copytree(data_dir / "stores" / f"{SMALL}.icechunk", target)
    register_store(published_catalog_path(data_dir), name, target,
                   description=f"{name}: published", defaults={
                       "title": f"Published {name}", "provider": "oceandata",
                       "license": "CC-BY-4.0", "tags": ["published"],
                       "classification": OPEN})
    return target


@pytest.fixture()
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir with the served root catalog (``make up``'s), as the services see it."""
    monkeypatch.setenv("OCEANDATA_DATA_DIR", str(tmp_path))
    root = build_sample_stores(tmp_path, names=[SMALL], check=False)
    monkeypatch.setenv("OCEANDATA_CATALOG", str(root))
    return root


def test_the_served_root_nests_the_published_catalog(platform: Path) -> None:
    data_dir = platform.parent.parent
    published = published_catalog_path(data_dir)
    # before any publication: an empty published catalog, nested, serves nothing
    assert published.is_file()
    cat = open_catalog(platform)
    assert "published" in cat.children and not cat.children["published"].entries
    assert validate_catalog(cat) == []  # what `make up` checks before the hub starts
    _publish(data_dir, "pub_one")
    # a notebook's open_catalog() of the served root finds the published entry
    cat = open_catalog(platform)
    entry = cat.entry("pub_one")
    assert Path(entry.source_file).resolve() == published.resolve()
    assert entry.release() == "open"
    assert cat.to_dask("pub_one").sizes == cat.to_dask(SMALL).sizes
    assert validate_catalog(cat) == []
    # build-samples again (idempotent, as every `make up`) keeps what was published
    build_sample_stores(data_dir, names=[SMALL], check=False)
    assert "pub_one" in open_catalog(platform).entries
    # a (re)started data service serves it from the start, to anonymous callers
    from oceandata.dataservice import create_app

    with TestClient(create_app(platform)) as client:
        r = client.get("/datasets/pub_one/opendap.dds")
        assert r.status_code == 200, r.text
        r = client.get("/datasets/pub_one/zarr/zarr.json")
        assert r.status_code == 200, r.text
        # the runtime merge of the same file does not drop nor double it
        assert client.get("/stac/collections/pub_one").status_code == 200
        assert client.get("/datasets/pub_one/opendap.dds").status_code == 200


def test_a_new_publication_is_served_by_opendap_and_zarr_at_once(platform: Path) -> None:
    from oceandata.dataservice import create_app

    data_dir = platform.parent.parent
    with TestClient(create_app(platform)) as client:
        assert client.get(f"/datasets/{SMALL}/opendap.dds").status_code == 200
        assert client.get("/datasets/pub_two/opendap.dds").status_code == 404
        _publish(data_dir, "pub_two")  # approved while the service runs
        # the data-access routes see it without any portal or STAC request before
        r = client.get("/datasets/pub_two/opendap.dds")
        assert r.status_code == 200, r.text
        r = client.get("/datasets/pub_two/zarr/zarr.json")
        assert r.status_code == 200, r.text
        # and so do the listings
        assert client.get("/stac/collections/pub_two").status_code == 200
