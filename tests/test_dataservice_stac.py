"""STAC API of the open-data service: valid documents, search as the catalog searches.

One app is served for the module (uvicorn on loopback). Every Collection and Item is
validated with stac-validator against schemas on this machine: the STAC 1.1.0 core
schemas pystac ships, the draft-07 meta-schema jsonschema ships, and for the datacube
extension the official v2.2.0 schema when ``OCEANDATA_STAC_DATACUBE_SCHEMA`` names a
copy of it, else :data:`DATACUBE_RULES`, the extension's rules as written in its README
(no installed package ships that schema and the machine has no web access).
pystac-client then searches the running API; the expected sets are computed
independently with :meth:`oceandata.catalog.Catalog.search` on the catalog itself.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pystac
import pytest
import requests
from dataservice_helpers import RESTRICTED, make_catalog, serving

from oceandata.catalog.core import Catalog
from oceandata.dataservice.app import create_app

pystac_client = pytest.importorskip("pystac_client")
stac_validate = pytest.importorskip("stac_validator.validate")

DATACUBE_URL = "https://stac-extensions.github.io/datacube/v2.2.0/schema.json"

#: the datacube extension's rules (README of stac-extensions/datacube v2.2.0), as a JSON
#: schema: Collections need ``cube:dimensions``; spatial x/y dimensions an axis and a
#: closed numeric extent, z an axis and an extent or values, temporal an extent of two
#: ISO strings or nulls; variables their dimensions and a type (data or auxiliary)
DATACUBE_RULES: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "$id": DATACUBE_URL,
    "definitions": {
        "pair": {"type": "array", "minItems": 2, "maxItems": 2},
        "dimension": {
            "type": "object", "required": ["type"],
            "properties": {"type": {"type": "string"}, "description": {"type": "string"},
                           "unit": {"type": "string"}},
            "allOf": [
                {"if": {"properties": {"type": {"const": "spatial"},
                                       "axis": {"enum": ["x", "y"]}},
                        "required": ["axis"]},
                 "then": {"required": ["extent"], "properties": {"extent": {
                     "allOf": [{"$ref": "#/definitions/pair"},
                               {"items": {"type": "number"}}]}}}},
                {"if": {"properties": {"type": {"const": "spatial"}}},
                 "then": {"required": ["axis"],
                          "properties": {"axis": {"enum": ["x", "y", "z"]}}}},
                {"if": {"properties": {"type": {"const": "spatial"},
                                       "axis": {"const": "z"}}, "required": ["axis"]},
                 "then": {"anyOf": [{"required": ["extent"]}, {"required": ["values"]}],
                          "properties": {"extent": {"allOf": [
                              {"$ref": "#/definitions/pair"},
                              {"items": {"type": ["number", "null"]}}]}}}},
                {"if": {"properties": {"type": {"const": "temporal"}}},
                 "then": {"not": {"required": ["axis"]},
                          "anyOf": [{"required": ["extent"]}, {"required": ["values"]}],
                          "properties": {"extent": {"allOf": [
                              {"$ref": "#/definitions/pair"},
                              {"items": {"type": ["string", "null"],
                                         "format": "date-time"}}]}}}},
            ],
        },
        "variable": {
            "type": "object", "required": ["dimensions", "type"],
            "properties": {"dimensions": {"type": "array", "items": {"type": "string"}},
                           "type": {"enum": ["data", "auxiliary"]},
                           "description": {"type": "string"}, "unit": {"type": "string"}},
        },
        "cube": {
            "properties": {
                "cube:dimensions": {"type": "object", "additionalProperties":
                                    {"$ref": "#/definitions/dimension"}},
                "cube:variables": {"type": "object", "additionalProperties":
                                   {"$ref": "#/definitions/variable"}},
            },
        },
    },
    "type": "object",
    "required": ["stac_extensions"],
    "properties": {"stac_extensions": {"contains": {"const": DATACUBE_URL}}},
    "oneOf": [
        {"properties": {"type": {"const": "Feature"},
                        "properties": {"allOf": [{"required": ["cube:dimensions"]},
                                                 {"$ref": "#/definitions/cube"}]}},
         "required": ["properties"]},
        {"properties": {"type": {"const": "Collection"}},
         "allOf": [{"required": ["cube:dimensions"]}, {"$ref": "#/definitions/cube"}]},
    ],
}


SCIENTIFIC_URL = "https://stac-extensions.github.io/scientific/v1.0.0/schema.json"

#: the scientific extension's rules (README of stac-extensions/scientific v1.0.0), as a
#: JSON schema: ``sci:doi`` a DOI without its resolver, ``sci:citation`` a text,
#: ``sci:publications`` a list of {doi, citation}; on an Item in its properties
_SCI_FIELDS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sci:doi": {"type": "string", "pattern": "^10\\.[0-9]{4,}(\\.[0-9]+)*/\\S+$"},
        "sci:citation": {"type": "string", "minLength": 1},
        "sci:publications": {"type": "array", "items": {
            "type": "object", "properties": {"doi": {"type": "string"},
                                             "citation": {"type": "string"}}}},
    },
}
SCIENTIFIC_RULES: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "$id": SCIENTIFIC_URL,
    "type": "object",
    "required": ["stac_extensions"],
    "properties": {"stac_extensions": {"contains": {"const": SCIENTIFIC_URL}}},
    "oneOf": [
        {"properties": {"type": {"const": "Feature"}, "properties": _SCI_FIELDS},
         "required": ["properties"]},
        {"allOf": [{"properties": {"type": {"const": "Collection"}}}, _SCI_FIELDS]},
    ],
}


def _local_schemas(folder: Path) -> dict[str, str]:
    """stac-validator's ``schema_map``: every schema URL the documents reach → a file."""
    spec = importlib.resources.files("pystac.validation.jsonschemas")
    mapping: dict[str, str] = {}
    core = spec / "stac-spec" / "v1.1.0"
    for name in ("item", "catalog", "collection"):
        url = f"https://schemas.stacspec.org/v1.1.0/{name}-spec/json-schema/{name}.json"
        mapping[url] = str(core / f"{name}.json")
    for name in ("bands", "basics", "common", "data-values", "datetime", "instrument",
                 "licensing", "provider"):
        url = f"https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/{name}.json"
        mapping[url] = str(core / f"{name}.json")
    for name in ("Feature", "Geometry"):
        mapping[f"https://geojson.org/schema/{name}.json"] = str(spec / "geojson" /
                                                                 f"{name}.json")
    draft7 = importlib.resources.files("jsonschema_specifications") / "schemas" / "draft7"
    mapping["http://json-schema.org/draft-07/schema"] = str(draft7 / "metaschema.json")
    official = os.environ.get("OCEANDATA_STAC_DATACUBE_SCHEMA")
    if official:
        mapping[DATACUBE_URL] = official
    else:
        rules = folder / "datacube-v2.2.0.json"
        rules.write_text(json.dumps(DATACUBE_RULES))
        mapping[DATACUBE_URL] = str(rules)
    sci = folder / "scientific-v1.0.0.json"
    sci.write_text(json.dumps(SCIENTIFIC_RULES))
    mapping[SCIENTIFIC_URL] = str(sci)
    for path in mapping.values():
        assert Path(path).is_file(), path
    return mapping


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    return make_catalog(tmp_path_factory.mktemp("stac-catalog"))


@pytest.fixture(scope="module")
def base(catalog: Catalog) -> Iterator[str]:
    with serving(create_app(catalog)) as url:
        yield url


@pytest.fixture(scope="module")
def schema_map(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return _local_schemas(tmp_path_factory.mktemp("stac-schemas"))


@pytest.fixture(scope="module")
def client(base: str) -> Any:
    return pystac_client.Client.open(base + "/stac")


def _validate(document: dict[str, Any], schema_map: dict[str, str]) -> None:
    """Run stac-validator (core and extensions) on *document*; fail with its message."""
    validator = stac_validate.StacValidate(schema_map=schema_map, verbose=True)
    valid = validator.validate_dict(document)
    message = validator.message[-1] if validator.message else {}
    assert valid, f"{document.get('id')}: {message.get('error_message')} {message}"
    schemas = message.get("schema", [])
    assert any("collection.json" in s or "item.json" in s for s in schemas), message
    assert any(s == schema_map[DATACUBE_URL] or "datacube" in s for s in schemas), message


def _ids(items: Any) -> set[str]:
    return {item.id for item in items}


def _public(catalog: Catalog, **criteria: Any) -> set[str]:
    """Names the anonymous caller should find: the catalog's own search, open entries."""
    return {name for name, entry in catalog.search(**criteria).entries.items()
            if entry.metadata.classification.release == "open"}


def test_validator_refuses_a_broken_collection(base: str,
                                               schema_map: dict[str, str]) -> None:
    """The offline validation is real: a Collection with a broken cube is refused."""
    doc = requests.get(f"{base}/stac/collections/cobe_sst2", timeout=30).json()
    _validate(doc, schema_map)
    broken = json.loads(json.dumps(doc))
    broken["cube:dimensions"]["lon"].pop("axis")
    validator = stac_validate.StacValidate(schema_map=schema_map)
    assert not validator.validate_dict(broken)
    broken = json.loads(json.dumps(doc))
    broken["extent"]["spatial"]["bbox"] = [[0, 0, 1]]
    assert not stac_validate.StacValidate(schema_map=schema_map).validate_dict(broken)


def test_every_collection_and_item_validates(base: str, catalog: Catalog,
                                             schema_map: dict[str, str]) -> None:
    landing = requests.get(f"{base}/stac", timeout=30).json()
    assert landing["type"] == "Catalog" and landing["stac_version"] == "1.1.0"
    assert {"root", "self", "data", "search", "conformance"} <= \
        {link["rel"] for link in landing["links"]}
    listed = requests.get(f"{base}/stac/collections", timeout=30).json()["collections"]
    assert {c["id"] for c in listed} == _public(catalog)
    for doc in listed:
        _validate(doc, schema_map)
        assert doc == requests.get(f"{base}/stac/collections/{doc['id']}", timeout=30).json()
        item = requests.get(f"{base}/stac/collections/{doc['id']}/items/{doc['id']}",
                            timeout=30)
        assert item.headers["content-type"].startswith("application/geo+json")
        _validate(item.json(), schema_map)
        assert item.json()["assets"].keys() == doc["assets"].keys()
        assets = doc["assets"]
        assert assets["zarr"]["type"] == "application/vnd+zarr"
        assert assets["opendap"]["href"] == f"{base}/datasets/{doc['id']}/opendap"
        assert assets["html"]["roles"] == ["metadata"]
        assert {"data"} == {r for k in ("opendap", "zarr", "netcdf", "edr") if k in assets
                            for r in assets[k]["roles"]}
        # EDR only where it can answer (a regular grid), and there it does
        regular = catalog.entries[doc["id"]].metadata.grid == "regular"
        assert ("edr" in assets) == regular, doc["id"]


def test_collection_metadata_from_the_catalog(base: str, catalog: Catalog) -> None:
    def get(name: str) -> dict[str, Any]:
        return requests.get(f"{base}/stac/collections/{name}", timeout=30).json()

    # 0..360 longitudes crossing the antimeridian: west > east (STAC 1.1)
    anom = get("sst_ndjfm_anom")
    assert anom["extent"]["spatial"]["bbox"] == [[117.5, -22.5, -97.5, 62.5]]
    assert anom["cube:dimensions"]["lon"]["extent"] == [117.5, 262.5]
    assert anom["license"] == "GPL-3.0-only"
    # a whole-globe 0..360 box, a DOI, an unmapped licence kept as text
    cobe = get("cobe_sst2")
    assert cobe["extent"]["spatial"]["bbox"] == [[-180.0, -90.0, 180.0, 90.0]]
    assert cobe["extent"]["temporal"]["interval"] == [["1950-01-01T00:00:00Z",
                                                       "2009-12-01T23:59:59Z"]]
    assert cobe["license"] == "other" and "not stated" in cobe["oceandata:license"]
    assert any(link["rel"] == "cite-as" for link in cobe["links"])
    assert cobe["cube:variables"]["sst"]["unit"] == "degC"
    # depth as a vertical dimension; no time range → open interval, no temporal dimension
    phc = get("phc2_ts_zonal")
    assert phc["cube:dimensions"]["depth"]["axis"] == "z"
    assert phc["cube:dimensions"]["depth"]["extent"] == [5.00622, 5374.9994]
    assert "time" not in phc["cube:dimensions"]
    assert phc["extent"]["temporal"]["interval"] == [[None, None]]
    assert phc["license"] == "Apache-2.0"
    assert set(phc["cube:variables"]) == {"TEMP", "SALT"}


def test_collections_and_search_with_pystac_client(client: Any, catalog: Catalog) -> None:
    assert {c.id for c in client.get_collections()} == _public(catalog)

    across = [170, -10, -170, 10]
    expected = _public(catalog, bbox=across)
    assert "sst_ndjfm_anom" in expected  # a Pacific grid, 117.5..262.5
    assert "dsg_point" not in expected   # California Current: not on the dateline
    for method in ("GET", "POST"):
        found = client.search(bbox=across, method=method, limit=3)
        assert _ids(found.items()) == expected
        assert found.matched() == len(expected)

    # a period: the catalog says which entries overlap it, open ends included
    for period, when in [("2015-01-01T00:00:00Z/2015-12-31T23:59:59Z", ("2015", "2015")),
                         ("2020-01-01T00:00:00Z/..", ("2020", None)),
                         ("../1960-06-30T00:00:00Z", (None, "1960-06-30T00:00:00"))]:
        expected = _public(catalog, time=when)
        for method in ("GET", "POST"):
            assert _ids(client.search(datetime=period, method=method).items()) == expected
    late = _public(catalog, time=("2020", None))
    assert "oisst_wa" in late and "cobe_sst2" not in late

    # collections and bbox together
    wanted = ["cobe_sst2", "dsg_point", "oisst_med"]
    expected = _public(catalog, bbox=(-130, 20, -110, 40)) & set(wanted)
    found = client.search(collections=wanted, bbox=[-130, 20, -110, 40], method="POST")
    assert _ids(found.items()) == expected == {"cobe_sst2", "dsg_point"}


def _text_search(base: str, q: str, method: str) -> set[str]:
    """Item ids of a ``q`` search (pystac-client 0.9 sends ``q`` for collections only)."""
    url = f"{base}/stac/search"
    if method == "GET":
        resp = requests.get(url, params={"q": q, "limit": 100}, timeout=30)
    else:
        resp = requests.post(url, json={"q": q, "limit": 100}, timeout=30)
    resp.raise_for_status()
    found = pystac.ItemCollection.from_dict(resp.json())
    assert resp.json()["numberMatched"] == len(found)
    return _ids(found)


def test_free_text(base: str, catalog: Catalog) -> None:
    for method in ("GET", "POST"):
        expected = _public(catalog, text="heatwave")
        assert expected and _text_search(base, "heatwave", method) == expected
        both = _public(catalog, text="salinity") | _public(catalog, text="bathymetry")
        assert _public(catalog, text="salinity") and _public(catalog, text="bathymetry")
        assert _text_search(base, "salinity,bathymetry", method) == both
        assert _text_search(base, "mediterranean sst", method) == \
            _public(catalog, text="mediterranean sst") == {"oisst_med"}


def test_paging_follows_next_links(base: str, client: Any, catalog: Catalog) -> None:
    everything = _public(catalog, bbox=(-180, -90, 180, 90))
    for method in ("GET", "POST"):
        pages = list(client.search(bbox=[-180, -90, 180, 90], limit=4,
                                   method=method).pages())
        assert [len(p.items) for p in pages[:-1]] == [4] * (len(pages) - 1)
        ids = [item.id for page in pages for item in page.items]
        assert len(ids) == len(set(ids)) and set(ids) == everything
    body = requests.get(f"{base}/stac/search", params={"limit": 5000}, timeout=30).json()
    assert body["numberReturned"] == body["numberMatched"]  # capped at 1000, not refused


def test_collections_are_paged_and_pystac_client_follows_the_pages(base: str,
                                                                    catalog: Catalog) -> None:
    """``stac/collections`` a page at a time (``limit``, ``token`` as search has them), so
    a catalog of thousands of entries is not one answer; pystac-client follows ``next``."""
    everything = _public(catalog)
    first = requests.get(f"{base}/stac/collections", params={"limit": 3}, timeout=30).json()
    assert first["numberReturned"] == 3 and first["numberMatched"] == len(everything)
    seen, page, pages = [], first, 0
    while True:
        pages += 1
        seen += [c["id"] for c in page["collections"]]
        nxt = [link["href"] for link in page["links"] if link["rel"] == "next"]
        if not nxt:
            break
        assert "limit=3" in nxt[0]
        page = requests.get(nxt[0], timeout=30).json()
    assert pages == -(-len(everything) // 3) and len(seen) == len(set(seen))
    assert set(seen) == everything
    # pystac-client's own paging (what its get_collections runs), over pages of 2
    from pystac_client.stac_api_io import StacApiIO

    pages_seen = list(StacApiIO().get_pages(f"{base}/stac/collections",
                                            parameters={"limit": 2}))
    assert len(pages_seen) == -(-len(everything) // 2)
    assert {c["id"] for p in pages_seen for c in p["collections"]} == everything
    # from past the end, "prev" leads back to the last page, not to another empty one
    past = requests.get(f"{base}/stac/collections", params={"limit": 3, "token": "next:999"},
                        timeout=30).json()
    assert past["collections"] == [] and past["numberMatched"] == len(everything)
    prev = next(link["href"] for link in past["links"] if link["rel"] == "prev")
    assert requests.get(prev, timeout=30).json()["collections"]
    for bad in ({"limit": "0"}, {"limit": "many"}, {"token": "page-2"},
                {"token": "next:²"}):
        resp = requests.get(f"{base}/stac/collections", params=bad, timeout=30)
        assert resp.status_code == 400 and resp.json()["detail"].endswith("."), resp.text


def test_restricted_entry_is_absent(base: str, client: Any) -> None:
    assert RESTRICTED not in {c.id for c in client.get_collections()}
    box = [112, -30, 113, -29]  # the restricted series' own box
    for method in ("GET", "POST"):
        assert RESTRICTED not in _ids(client.search(bbox=box, method=method).items())
        assert RESTRICTED not in _ids(client.search(collections=[RESTRICTED],
                                                    method=method).items())
    for method in ("GET", "POST"):
        assert RESTRICTED not in _text_search(base, "restricted", method)
    for path in (f"collections/{RESTRICTED}", f"collections/{RESTRICTED}/items",
                 f"collections/{RESTRICTED}/items/{RESTRICTED}"):
        resp = requests.get(f"{base}/stac/{path}", timeout=30)
        assert resp.status_code == 404, path
        assert RESTRICTED in resp.json()["detail"]
        unknown = requests.get(f"{base}/stac/{path.replace(RESTRICTED, 'x' * 10)}",
                               timeout=30)
        assert unknown.status_code == 404
        # the same sentence as an unknown name (close-name hints aside)
        assert re.sub(r" Did you mean [^?]*\?", "", resp.json()["detail"]) == \
            unknown.json()["detail"].replace("x" * 10, RESTRICTED)


@pytest.mark.parametrize("query", [
    {"bbox": "1,2,3"}, {"bbox": "a,b,c,d"}, {"bbox": "0,50,10,40"}, {"bbox": "0,0,400,1"},
    {"datetime": "yesterday"}, {"datetime": "2001-01-01T00:00:00Z/2000-01-01T00:00:00Z"},
    {"datetime": "2000/2001/2002"}, {"limit": "0"}, {"limit": "ten"}, {"limit": "-3"},
    {"token": "page-2"}, {"token": "next:²"}, {"token": "next:" + "9" * 40},
])
def test_malformed_get_is_400(base: str, query: dict[str, str]) -> None:
    resp = requests.get(f"{base}/stac/search", params=query, timeout=30)
    assert resp.status_code == 400, resp.text
    detail = resp.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and detail.endswith(".")
    assert ". " not in detail.replace("e.g. ", ""), detail  # one sentence


@pytest.mark.parametrize("body", [
    {"bbox": [1, 2, 3]}, {"bbox": "everywhere"}, {"datetime": 2000}, {"limit": "many"},
    {"limit": True}, {"collections": 5}, {"token": "next:²"},
    {"intersects": {"type": "Point", "coordinates": [0, 0]}}, [1, 2],
])
def test_malformed_post_is_400(base: str, body: Any) -> None:
    resp = requests.post(f"{base}/stac/search", json=body, timeout=30)
    assert resp.status_code == 400, resp.text
    assert isinstance(resp.json()["detail"], str)
    resp = requests.post(f"{base}/stac/search", data=b"{not json",
                         headers={"Content-Type": "application/json"}, timeout=30)
    assert resp.status_code == 400


def test_landing_conformance_and_collection_items(base: str) -> None:
    assert requests.get(f"{base}/stac/", timeout=30).json()["id"] == "oceandata"
    classes = requests.get(f"{base}/stac/conformance", timeout=30).json()["conformsTo"]
    assert "https://api.stacspec.org/v1.0.0/item-search" in classes
    items = f"{base}/stac/collections/oisst_med/items"
    inside = requests.get(items, params={"datetime": "1990-01-01T00:00:00Z/.."}, timeout=30)
    assert [f["id"] for f in inside.json()["features"]] == ["oisst_med"]
    before = requests.get(items, params={"datetime": "../1970-01-01T00:00:00Z"}, timeout=30)
    assert before.json()["features"] == [] and before.json()["numberMatched"] == 0
    assert requests.get(items, params={"bbox": "1,2"}, timeout=30).status_code == 400
    other = requests.get(f"{items}/cobe_sst2", timeout=30)
    assert other.status_code == 404
