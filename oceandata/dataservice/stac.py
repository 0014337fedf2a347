"""STAC API of the open-data service: one Collection and one Item per dataset.

Routes below ``stac/`` (the service prefix and ``auth/`` in front, as every route):

- ``stac`` — landing page (a STAC Catalog with ``conformsTo``), ``stac/conformance``;
- ``stac/collections``, ``stac/collections/{id}`` — one Collection per dataset the
  caller may see (a page of 100 at a time: ``limit`` and the ``next`` link's ``token``,
  as search pages), with the datacube extension (``cube:dimensions`` and
  ``cube:variables`` from the catalog metadata) and an asset per access protocol
  (OPeNDAP, Zarr v3, netCDF subset download, EDR, the HTML page);
- ``stac/collections/{id}/items[/{id}]`` — the one Item of each Collection: the whole
  dataset, with the same assets (OGC API - Features style, ``bbox``/``datetime``/
  ``limit`` accepted);
- ``stac/search`` (GET and POST) — STAC API item search: ``bbox`` (west > east crosses
  the antimeridian), ``datetime`` (an instant or ``start/end`` with ``..`` or empty for
  an open end), ``collections``, ``ids``, ``q`` (free text: comma-separated terms are
  alternatives, the words of a term must all match), ``limit`` (1..1000, default 10;
  larger values are served as 1000) and ``token`` paging through the ``next`` link.

Search runs on the service's :class:`~oceandata.dataservice.index.SearchIndex` with the
catalog's own matching rules; datasets with no time range (climatologies, static
fields) never match a ``datetime`` search, as in :meth:`oceandata.catalog.Catalog.search`.
Their Item has ``start_datetime``/``end_datetime`` spanning every representable time
(STAC needs a date on every Item) and ``oceandata:undated: true``; their Collection's
temporal extent is ``[null, null]``.

Collections and Items are built once per entry with pystac, their links and asset
hrefs relative to the service root; each answer makes them absolute from the request
(so they hold under any prefix and under ``auth/``) and keeps only what the caller may
see: a restricted entry that is not granted is absent from every list and search, and
its paths answer 404 like an unknown name.
"""

from __future__ import annotations

import calendar
import copy
import datetime as dt
import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlencode

import pystac
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pystac.extensions.datacube import (
    DatacubeExtension,
    Dimension,
    DimensionType,
    Variable,
    VariableType,
)
from pystac.extensions.scientific import ScientificExtension

from ..catalog.core import Entry
from ..catalog.schema import BBox
from ..errors import UsageError
from ..hub.security import whole_number
from ..times import period, time_parts
from .access import Caller, resolve, visible_entries
from .published import publication_of, refresh_published

# published entries join the served catalog before each answer (docs/projects.md)
router = APIRouter(prefix="/stac", tags=["STAC"], dependencies=[Depends(refresh_published)])

#: STAC version of every document (the one pystac writes)
STAC_VERSION = pystac.get_stac_version()
#: default and largest page size of a search
DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
#: collections in a page of ``stac/collections`` unless ``limit`` says
COLLECTIONS_LIMIT = 100
#: media types
GEOJSON = "application/geo+json"
JSON = "application/json"
ZARR = "application/vnd+zarr"
NETCDF = "application/x-netcdf"

CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0-rc.1/item-search#free-text",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]

#: free-text licences → SPDX identifiers, keyed by their text lower-cased without
#: spaces, hyphens, dots or underscores; anything else is ``other``
_SPDX = {
    "cc0": "CC0-1.0", "cc010": "CC0-1.0", "cczero": "CC0-1.0",
    "ccby": "CC-BY-4.0", "ccby4": "CC-BY-4.0", "ccby40": "CC-BY-4.0",
    "ccbysa4": "CC-BY-SA-4.0", "ccbysa40": "CC-BY-SA-4.0",
    "ccbync4": "CC-BY-NC-4.0", "ccbync40": "CC-BY-NC-4.0",
    "mit": "MIT", "apache2": "Apache-2.0", "apache20": "Apache-2.0",
    "apachelicense20": "Apache-2.0", "bsd3clause": "BSD-3-Clause",
    "bsd2clause": "BSD-2-Clause", "gpl3": "GPL-3.0-only", "gpl30": "GPL-3.0-only",
    "gpl3only": "GPL-3.0-only", "gpl30only": "GPL-3.0-only", "gpl3orlater": "GPL-3.0-or-later",
    "gpl30orlater": "GPL-3.0-or-later", "gpl2": "GPL-2.0-only", "gpl20": "GPL-2.0-only",
    "lgpl3": "LGPL-3.0-only", "odbl": "ODbL-1.0", "odbl10": "ODbL-1.0",
    "ogluk30": "OGL-UK-3.0", "unlicense": "Unlicense",
}
#: a note in parentheses after a licence name ("GPL-3 (licence of the source repository)")
_NOTE = re.compile(r"\s*\(.*\)\s*$")
#: every representable time, for Items of undated datasets
_ALL_TIME = (dt.datetime(1, 1, 1, tzinfo=dt.UTC),
             dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC))


# -- building Collections and Items (once per entry) ----------------------------------------

def spdx_license(text: str) -> str | None:
    """The SPDX identifier of a free-text licence, or None when it is not obvious.

    Parameters
    ----------
    text
        The catalog's ``license`` (``"Apache-2.0"``, ``"CC0"``, ``"GPL-3 (note)"``, ...).

    Examples
    --------
    >>> spdx_license("GPL-3 (licence of the source repository)")
    'GPL-3.0-only'
    >>> spdx_license("public domain") is None
    True
    """
    key = re.sub(r"[\s\-._]", "", _NOTE.sub("", text).lower())
    return _SPDX.get(key)


def _wrap(lon: float, *, east: bool) -> float:
    """*lon* in -180..180 (an east edge at the antimeridian stays 180)."""
    value = (lon + 180.0) % 360.0 - 180.0
    return 180.0 if east and value == -180.0 else value


def stac_bbox(box: BBox) -> list[float]:
    """The STAC bbox of a catalog box: longitudes in -180..180, west > east across 180°.

    Catalog boxes may use 0..360 longitudes; a box spanning 360° becomes -180..180.

    Examples
    --------
    >>> stac_bbox(BBox(west=117.5, south=-22.5, east=262.5, north=62.5))
    [117.5, -22.5, -97.5, 62.5]
    """
    west, south, east, north = box.as_tuple()
    if east - west >= 360.0:
        return [-180.0, south, 180.0, north]
    return [_wrap(west, east=False), south, _wrap(east, east=True), north]


def _geometry(bbox: list[float]) -> dict[str, Any]:
    """GeoJSON of a STAC bbox: a point, a polygon, or two polygons across 180°."""
    west, south, east, north = bbox
    if west == east and south == north:
        return {"type": "Point", "coordinates": [west, south]}

    def ring(w: float, e: float) -> list[list[float]]:
        return [[w, south], [e, south], [e, north], [w, north], [w, south]]

    if west <= east:
        return {"type": "Polygon", "coordinates": [ring(west, east)]}
    return {"type": "MultiPolygon",
            "coordinates": [[ring(west, 180.0)], [ring(-180.0, east)]]}


def _x_extent(box: BBox) -> list[float]:
    """Longitude extent of the x dimension, increasing (0..360 or unwrapped across 180°)."""
    west, _, east, _ = box.as_tuple()
    if west <= east:
        return [west, east]
    return [west, east + 360.0] if east <= 0 else [west - 360.0, east]


def _instant(text: str | None, *, end: bool) -> dt.datetime | None:
    """The first (or last, *end*) second of an ISO date or partial date, in UTC."""
    if text is None:
        return None
    try:
        parts = list(time_parts(text, "time_range"))
        year = parts[0]
        month = parts[1] if len(parts) > 1 else (12 if end else 1)
        last_day = calendar.monthrange(year, month)[1]
        day = parts[2] if len(parts) > 2 else (last_day if end else 1)
        hour = parts[3] if len(parts) > 3 else (23 if end else 0)
        minute = parts[4] if len(parts) > 4 else (59 if end else 0)
        second = parts[5] if len(parts) > 5 else (59 if end else 0)
        return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
    except (UsageError, ValueError):  # a year outside 1..9999: leave the end open
        return None


def _rfc3339(value: dt.datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _time_range(entry: Entry) -> tuple[dt.datetime | None, dt.datetime | None]:
    tr = entry.metadata.time_range
    if tr is None:
        return None, None
    return _instant(tr.start, end=False), _instant(tr.end, end=True)


def _datacube(entry: Entry) -> tuple[dict[str, Dimension], dict[str, Variable]]:
    """``cube:dimensions`` and ``cube:variables`` from the catalog metadata."""
    md = entry.metadata
    dims: dict[str, Dimension] = {}
    start, end = _time_range(entry)
    if start is not None or end is not None:
        dims["time"] = Dimension.from_dict({
            "type": DimensionType.TEMPORAL, "extent": [_rfc3339(start), _rfc3339(end)],
            "description": "time of the data (UTC)"})
    if md.depth_range is not None:
        dims["depth"] = Dimension.from_dict({
            "type": DimensionType.SPATIAL, "axis": "z", "unit": "m",
            "extent": [md.depth_range.min, md.depth_range.max],
            "description": "depth below sea level, positive down"})
    if md.bbox is not None:
        dims["lat"] = Dimension.from_dict({
            "type": DimensionType.SPATIAL, "axis": "y",
            "extent": [md.bbox.south, md.bbox.north],
            "description": "latitude, degrees north (WGS 84)"})
        dims["lon"] = Dimension.from_dict({
            "type": DimensionType.SPATIAL, "axis": "x",
            "extent": _x_extent(md.bbox),
            "description": "longitude, degrees east (WGS 84)"})
    names = list(dims)
    variables: dict[str, Variable] = {}
    for var in md.variables:
        props: dict[str, Any] = {"dimensions": names, "type": VariableType.DATA}
        description = var.long_name or (var.standard_name or "").replace("_", " ")
        if description:
            props["description"] = description
        if var.units:
            props["unit"] = var.units
        variables[var.name] = Variable(props)
    return dims, variables


def _assets(entry: Entry) -> dict[str, pystac.Asset]:
    """One asset per access protocol; hrefs relative to the service root."""
    name = entry.name
    where = f"datasets/{name}"
    assets = {
        "opendap": pystac.Asset(
            f"{where}/opendap", title="OPeNDAP (DAP2)", roles=["data"],
            description="OPeNDAP DAP2 endpoint: open the URL with xarray, netCDF-C, "
                        "ncdump, MATLAB or Panoply."),
        "zarr": pystac.Asset(
            f"{where}/zarr", title="Zarr v3 over HTTP", media_type=ZARR, roles=["data"],
            description="Zarr v3 store: xarray.open_zarr(url, zarr_format=3)."),
        "netcdf": pystac.Asset(
            f"{where}/subset?format=nc4", title="netCDF-4 download (subset)",
            media_type=NETCDF, roles=["data"],
            description="netCDF-4 file of the dataset; add bbox=W,S,E,N, time=START/END, "
                        "depth=MIN/MAX and var=a,b to take a subset (a request above the "
                        "download limit answers 413 with a split that fits)."),
        "edr": pystac.Asset(
            f"{where}/edr/", title="OGC API - Environmental Data Retrieval",
            media_type=JSON, roles=["data"],
            description="EDR collection: position and area queries."),
        "html": pystac.Asset(
            where, title="Dataset page", media_type="text/html", roles=["metadata"]),
    }
    if entry.metadata.grid != "regular":  # EDR needs a regular grid (protocols.edr_unfit)
        del assets["edr"]
    return assets


def _keywords(entry: Entry) -> list[str]:
    words = list(entry.metadata.tags)
    words += [v.standard_name for v in entry.metadata.variables if v.standard_name]
    return list(dict.fromkeys(words))


def _description(entry: Entry) -> str:
    md = entry.metadata
    return md.description or entry.description or md.title


def build_collection(entry: Entry) -> dict[str, Any]:
    """The STAC Collection of *entry*, links and hrefs relative to the service root."""
    md = entry.metadata
    bbox = stac_bbox(md.bbox) if md.bbox is not None else [-180.0, -90.0, 180.0, 90.0]
    start, end = _time_range(entry)
    spdx = spdx_license(md.license)
    collection = pystac.Collection(
        id=entry.name, title=md.title, description=_description(entry),
        extent=pystac.Extent(pystac.SpatialExtent([bbox]),
                             pystac.TemporalExtent([[start, end]])),
        license=spdx or "other", keywords=_keywords(entry),
        providers=[pystac.Provider(md.provider, roles=[pystac.ProviderRole.PRODUCER]),
                   pystac.Provider("oceandata open-data service",
                                   roles=[pystac.ProviderRole.HOST])],
    )
    cube = DatacubeExtension.ext(collection, add_if_missing=True)
    cube.apply(*_datacube(entry))
    _cite(collection, entry)
    for key, asset in _assets(entry).items():
        collection.add_asset(key, asset)
    out = collection.to_dict(include_self_link=False, transform_hrefs=False)
    if spdx is None:
        out["oceandata:license"] = md.license
    c = md.classification  # docs/governance.md; who may see it is decided per request
    out["oceandata:classification"] = {
        "category": c.category, "grade": c.grade, "owner": c.owner,
        **({"derived_from": c.derived_from.model_dump()} if c.derived_from else {})}
    out["links"] = _collection_links(entry, spdx)
    return out


def _collection_links(entry: Entry, spdx: str | None) -> list[dict[str, Any]]:
    name = entry.name
    links = [
        {"rel": "self", "href": f"stac/collections/{name}", "type": JSON},
        {"rel": "root", "href": "stac", "type": JSON},
        {"rel": "parent", "href": "stac", "type": JSON},
        {"rel": "items", "href": f"stac/collections/{name}/items", "type": GEOJSON},
        {"rel": "describedby", "href": f"datasets/{name}", "type": "text/html",
         "title": "dataset page"},
    ]
    if spdx is not None:
        links.append({"rel": "license", "href": f"https://spdx.org/licenses/{spdx}.html",
                      "type": "text/html", "title": spdx})
    if entry.metadata.doi:
        links.append({"rel": "cite-as", "href": f"https://doi.org/{entry.metadata.doi}",
                      "title": "DOI"})
    links.extend(_pid_links(entry))
    if entry.release() == "open" and entry.metadata.grid in ("regular",
                                                                           "curvilinear"):
        links.append({"rel": "alternate", "href": f"erddap/griddap/{name}.html",
                      "type": "text/html", "title": "ERDDAP griddap data access form"})
    return links


def build_item(entry: Entry) -> dict[str, Any]:
    """The one STAC Item of *entry* (the whole dataset), hrefs relative to the root."""
    md = entry.metadata
    bbox = stac_bbox(md.bbox) if md.bbox is not None else None
    start, end = _time_range(entry)
    undated = start is None and end is None
    if undated:
        start, end = _ALL_TIME
    else:
        start, end = start or _ALL_TIME[0], end or _ALL_TIME[1]
    single = start == end
    properties: dict[str, Any] = {"title": md.title, "description": _description(entry)}
    if undated:
        properties["oceandata:undated"] = True
    item = pystac.Item(
        id=entry.name, geometry=_geometry(bbox) if bbox is not None else None, bbox=bbox,
        datetime=start if single else None, properties=properties,
        start_datetime=None if single else start, end_datetime=None if single else end,
        collection=entry.name,
    )
    cube = DatacubeExtension.ext(item, add_if_missing=True)
    cube.apply(*_datacube(entry))
    _cite(item, entry)
    for key, asset in _assets(entry).items():
        item.add_asset(key, asset)
    out = item.to_dict(include_self_link=False, transform_hrefs=False)
    name = entry.name
    out["links"] = [
        {"rel": "self", "href": f"stac/collections/{name}/items/{name}", "type": GEOJSON},
        {"rel": "parent", "href": f"stac/collections/{name}", "type": JSON},
        {"rel": "collection", "href": f"stac/collections/{name}", "type": JSON},
        {"rel": "root", "href": "stac", "type": JSON},
        *_pid_links(entry),
    ]
    return out


def _cite(obj: pystac.Collection | pystac.Item, entry: Entry) -> None:
    """The scientific extension's ``sci:citation`` (and ``sci:doi``) when the entry has a
    citation (published entries always do)."""
    md = entry.metadata
    if not md.citation and not md.doi:
        return
    sci = ScientificExtension.ext(obj, add_if_missing=True)
    if md.citation:
        sci.citation = md.citation
    if md.doi:
        sci.doi = md.doi


def _pid_links(entry: Entry) -> list[dict[str, Any]]:
    """A published entry's landing page (``cite-as``) and DataCite record links."""
    record = publication_of(entry)
    if record is None:
        return []
    pid = record["pid"]
    return [{"rel": "cite-as", "href": f"pid/{pid}", "type": "text/html",
             "title": f"persistent identifier {pid}"},
            {"rel": "describedby", "href": f"pid/{pid}/datacite.json", "type": JSON,
             "title": "DataCite metadata (JSON)"},
            {"rel": "describedby", "href": f"pid/{pid}/datacite.xml",
             "type": "application/xml", "title": "DataCite metadata (XML)"}]


class _Built:
    """Collections and Items built once per entry name (they depend on the entry only)."""

    def __init__(self) -> None:
        self.collections: dict[str, tuple[Entry, dict[str, Any]]] = {}
        self.items: dict[str, tuple[Entry, dict[str, Any]]] = {}

    def collection(self, entry: Entry) -> dict[str, Any]:
        found = self.collections.get(entry.name)
        if found is None or found[0] is not entry:  # a catalog read again: built again
            found = self.collections[entry.name] = (entry, build_collection(entry))
        return found[1]

    def item(self, entry: Entry) -> dict[str, Any]:
        found = self.items.get(entry.name)
        if found is None or found[0] is not entry:
            found = self.items[entry.name] = (entry, build_item(entry))
        return found[1]


def _built(request: Request) -> _Built:
    state = request.app.state
    built = getattr(state, "stac_built", None)
    if built is None:
        built = state.stac_built = _Built()
    return built


# -- answers ----------------------------------------------------------------------------

def service_root(request: Request) -> str:
    """The absolute URL of the service root, ending in ``/`` (prefix and ``auth/`` kept)."""
    root = request.scope.get("root_path", "") or ""
    return str(request.base_url.replace(path=root.rstrip("/") + "/", query=""))


def _absolute(document: dict[str, Any], root: str) -> dict[str, Any]:
    """A copy of *document* with relative link and asset hrefs made absolute from *root*."""
    out = copy.deepcopy(document)
    for link in out.get("links", ()):
        if "://" not in link["href"]:
            link["href"] = root + link["href"]
    for asset in out.get("assets", {}).values():
        if "://" not in asset["href"]:
            asset["href"] = root + asset["href"]
    return out


def _caller(request: Request) -> Caller:
    return request.state.caller


def _visible(request: Request, collection_id: str) -> Entry:
    """The entry of *collection_id*, 404 unless the caller may see it (as every path)."""
    entry, version = resolve(request.app.state.catalog, collection_id, _caller(request))
    if version is not None:
        raise HTTPException(404, f"There is no STAC collection {collection_id!r}: "
                                 "collections are named by the dataset alone.")
    return entry


def _landing(root: str) -> dict[str, Any]:
    stac = root + "stac"
    return {
        "type": "Catalog", "stac_version": STAC_VERSION, "id": "oceandata",
        "title": "oceandata open data",
        "description": "Ocean datasets of the oceandata platform: one STAC Collection per "
                       "dataset, one Item per Collection, with OPeNDAP, Zarr, EDR and "
                       "netCDF download assets.",
        "conformsTo": CONFORMANCE,
        "links": [
            {"rel": "self", "href": stac, "type": JSON},
            {"rel": "root", "href": stac, "type": JSON},
            {"rel": "data", "href": f"{stac}/collections", "type": JSON},
            {"rel": "conformance", "href": f"{stac}/conformance", "type": JSON},
            {"rel": "search", "href": f"{stac}/search", "type": GEOJSON, "method": "GET"},
            {"rel": "search", "href": f"{stac}/search", "type": GEOJSON, "method": "POST"},
            {"rel": "service-desc", "href": f"{root}openapi.json",
             "type": "application/vnd.oai.openapi+json;version=3.0"},
        ],
    }


@router.get("", summary="STAC API landing page")
async def landing(request: Request) -> dict[str, Any]:
    """The STAC API landing page: a Catalog with ``conformsTo`` and the API's links."""
    return _landing(service_root(request))


@router.get("/", include_in_schema=False)
async def landing_slash(request: Request) -> dict[str, Any]:
    """The landing page at ``stac/`` too."""
    return _landing(service_root(request))


@router.get("/conformance", summary="STAC API conformance classes")
async def conformance() -> dict[str, Any]:
    """The conformance classes the API implements."""
    return {"conformsTo": CONFORMANCE}


@router.get("/collections", summary="STAC Collections")
async def collections(request: Request) -> dict[str, Any]:
    """One Collection per dataset the caller may see, in catalog order, a page at a time:
    ``limit`` (1..1000, default :data:`COLLECTIONS_LIMIT`) and the ``token`` of the
    ``next`` link, as item search pages (pystac-client follows them)."""
    raw = request.query_params
    limit = COLLECTIONS_LIMIT if raw.get("limit") in (None, "") else \
        _parse_limit(raw["limit"])
    offset = 0 if raw.get("token") in (None, "") else _parse_token(raw["token"])
    root = service_root(request)
    built = _built(request)
    entries = list(visible_entries(request.app.state.catalog, _caller(request)).values())
    found = [_absolute(built.collection(entry), root)
             for entry in entries[offset:offset + limit]]
    stac = root + "stac"

    def paged(start: int) -> str:
        query = {k: v for k, v in raw.items() if k != "token"}
        if start:
            query["token"] = f"next:{start}"
        return f"{stac}/collections" + (f"?{urlencode(query)}" if query else "")

    links = [{"rel": "self", "href": paged(offset), "type": JSON},
             {"rel": "root", "href": stac, "type": JSON},
             {"rel": "parent", "href": stac, "type": JSON}]
    if offset + limit < len(entries):
        links.append({"rel": "next", "href": paged(offset + limit), "type": JSON})
    if offset > 0:  # from past the end, back to the last page
        links.append({"rel": "prev", "href": paged(max(0, min(offset, len(entries)) - limit)),
                      "type": JSON})
    return {"collections": found, "numberMatched": len(entries),
            "numberReturned": len(found), "links": links}


@router.get("/collections/{collection_id}", summary="A STAC Collection")
async def collection(request: Request, collection_id: str) -> dict[str, Any]:
    """The Collection of one dataset (404 for unknown and not-granted names alike)."""
    entry = _visible(request, collection_id)
    return _absolute(_built(request).collection(entry), service_root(request))


@router.get("/collections/{collection_id}/items", summary="The Items of a Collection")
async def collection_items(request: Request, collection_id: str) -> JSONResponse:
    """The Collection's one Item, if it matches ``bbox``/``datetime`` (OGC API - Features)."""
    entry = _visible(request, collection_id)
    params = _get_params(request)
    params.collections = [entry.name]
    root = service_root(request)
    here = f"{root}stac/collections/{entry.name}"
    extra = [{"rel": "collection", "href": here, "type": JSON},
             {"rel": "parent", "href": here, "type": JSON}]
    return _answer(request, params, f"{here}/items", method="GET", extra_links=extra)


@router.get("/collections/{collection_id}/items/{item_id}", summary="A STAC Item")
async def item(request: Request, collection_id: str, item_id: str) -> JSONResponse:
    """The Item of a dataset (its id is the dataset's name)."""
    entry = _visible(request, collection_id)
    if item_id != entry.name:
        raise HTTPException(404, f"Collection {entry.name!r} has one item, {entry.name!r}; "
                                 f"there is no item {item_id!r}.")
    body = _absolute(_built(request).item(entry), service_root(request))
    return JSONResponse(body, media_type=GEOJSON)


# -- search -----------------------------------------------------------------------------

class _Search:
    """A parsed item search."""

    def __init__(self) -> None:
        self.bbox: list[float] | None = None
        self.time: tuple[Any, Any] | None = None
        self.collections: list[str] | None = None
        self.ids: list[str] | None = None
        self.q: list[str] = []
        self.limit: int = DEFAULT_LIMIT
        self.offset: int = 0
        self.raw: dict[str, Any] = {}


def _bad(message: str) -> HTTPException:
    return HTTPException(400, message)


def _parse_bbox(values: Sequence[Any]) -> list[float]:
    if len(values) not in (4, 6):
        raise _bad(f"bbox has {len(values)} numbers: give west,south,east,north in degrees "
                   "(west > east crosses the antimeridian), e.g. 170,-10,-170,10.")
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise _bad("bbox must be numbers: give west,south,east,north in degrees, e.g. "
                   "170,-10,-170,10.") from None
    if not all(math.isfinite(v) for v in numbers):
        raise _bad("bbox must be finite numbers: give west,south,east,north in degrees.")
    if len(numbers) == 6:  # 3-D box: west, south, min z, east, north, max z
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    try:
        BBox.parse(numbers)
    except UsageError as exc:
        raise _bad(f"{str(exc).splitlines()[0]}.") from None
    return numbers


def _parse_end(text: str) -> Any:
    """One end of a STAC ``datetime``: None (open), a partial date, or a UTC datetime."""
    text = text.strip()
    if text in ("", ".."):
        return None
    if "T" not in text.upper():  # a date or partial date: all of it
        try:
            time_parts(text, "datetime")
        except UsageError:
            pass
        else:
            return text
    try:
        value = dt.datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise _bad(f"datetime {text!r} is not an RFC 3339 date-time: give e.g. "
                   "2000-01-01T00:00:00Z, or start/end with '..' for an open end.") from None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _parse_datetime(text: str) -> tuple[Any, Any]:
    if not isinstance(text, str) or not text.strip():
        raise _bad("datetime must be a date-time or an interval start/end, e.g. "
                   "2000-01-01T00:00:00Z/2000-12-31T23:59:59Z.")
    if text.count("/") > 1:
        raise _bad(f"datetime {text!r} has more than one '/': give start/end, either "
                   "end '..' when open.")
    if "/" in text:
        start, end = (_parse_end(part) for part in text.split("/"))
    else:
        if text.strip() == "..":
            raise _bad("datetime '..' alone is not an interval: give start/end with '..' "
                       "for an open end, e.g. 2000-01-01T00:00:00Z/..")
        start = end = _parse_end(text)
    if start is not None and end is not None:
        try:
            period((start, end), what="datetime")
        except UsageError:
            raise _bad(f"datetime {text!r} starts after it ends: give start/end with "
                       "start <= end.") from None
    return start, end


def _parse_limit(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        limit = value
    elif isinstance(value, float) and value.is_integer():
        limit = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        limit = int(value)
    else:
        raise _bad(f"limit {value!r} is not a whole number: give 1..{MAX_LIMIT}.")
    if limit < 1:
        raise _bad(f"limit {limit} is below 1: give 1..{MAX_LIMIT}.")
    return min(limit, MAX_LIMIT)


def _parse_token(value: Any) -> int:
    text = str(value)
    offset = whole_number(text[5:]) if text.startswith("next:") else None
    if offset is None:
        raise _bad("token is not one this API gave: follow the 'next' link of a page.")
    return offset


def _names(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    raise _bad(f"{what} must be a list of names (comma-separated in a URL).")


def _free_text(value: Any) -> list[str]:
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [t.strip() for v in value for t in v.split(",") if t.strip()]
    raise _bad("q must be text: comma-separated terms, any of which may match.")


_UNSUPPORTED = {
    "intersects": "intersects is not supported: give a bbox.",
    "filter": "filter (CQL2) is not supported: use bbox, datetime, collections and q.",
    "query": "query is not supported: use bbox, datetime, collections and q.",
    "sortby": "sortby is not supported: results come in catalog order.",
}


def _parse(raw: dict[str, Any]) -> _Search:
    """A search from GET parameters or a POST body (values of their own JSON types)."""
    params = _Search()
    params.raw = raw
    for key, message in _UNSUPPORTED.items():
        if raw.get(key) not in (None, "", [], {}):
            raise _bad(message)
    if raw.get("bbox") not in (None, ""):
        bbox = raw["bbox"]
        if isinstance(bbox, str):
            bbox = bbox.split(",")
        if not isinstance(bbox, list):
            raise _bad("bbox must be four numbers west,south,east,north, e.g. 170,-10,-170,10.")
        params.bbox = _parse_bbox(bbox)
    if raw.get("datetime") not in (None, ""):
        params.time = _parse_datetime(raw["datetime"])
    if raw.get("collections") is not None:
        params.collections = _names(raw["collections"], "collections")
    if raw.get("ids") is not None:
        params.ids = _names(raw["ids"], "ids")
    if raw.get("q") not in (None, ""):
        params.q = _free_text(raw["q"])
    if raw.get("limit") not in (None, ""):
        params.limit = _parse_limit(raw["limit"])
    if raw.get("token") not in (None, ""):
        params.offset = _parse_token(raw["token"])
    return params


def _get_params(request: Request) -> _Search:
    query = request.query_params
    raw: dict[str, Any] = {key: query.get(key) for key in query}
    return _parse(raw)


def _matching(request: Request, params: _Search) -> list[Entry]:
    """Entries the caller may see that match *params*, in catalog order (the index)."""
    index = request.app.state.index
    caller = _caller(request)
    names: Iterable[str] | None = params.collections
    if params.ids is not None:
        allowed = None if names is None else set(names)
        names = [n for n in params.ids if allowed is None or n in allowed]
    common: dict[str, Any] = {"bbox": params.bbox, "time": params.time,
                              "names": list(names) if names is not None else None}
    found = index.search(caller, **common)
    if params.q:
        hits: set[str] = set()
        for term in params.q:
            hits.update(e.name for e in index.search(caller, text=term, **common))
        found = [e for e in found if e.name in hits]
    return found


def _answer(request: Request, params: _Search, self_url: str, *, method: str,
            extra_links: Sequence[dict[str, Any]] = ()) -> JSONResponse:
    """An ItemCollection of the page of *params*, with ``next``/``prev`` links."""
    found = _matching(request, params)
    root = service_root(request)
    built = _built(request)
    page = found[params.offset:params.offset + params.limit]
    features = [_absolute(built.item(entry), root) for entry in page]
    links: list[dict[str, Any]] = [{"rel": "root", "href": root + "stac", "type": JSON},
                                   *extra_links]

    def paged(offset: int) -> dict[str, Any]:
        if method == "POST":
            body = {k: v for k, v in params.raw.items() if k != "token"}
            if offset:
                body["token"] = f"next:{offset}"
            return {"href": self_url, "type": GEOJSON, "method": "POST", "body": body,
                    "merge": False}
        query = {k: v for k, v in params.raw.items() if k != "token" and v is not None}
        if offset:
            query["token"] = f"next:{offset}"
        suffix = f"?{urlencode(query)}" if query else ""
        return {"href": self_url + suffix, "type": GEOJSON, "method": "GET"}

    links.append({"rel": "self", **paged(params.offset)})
    if params.offset + params.limit < len(found):
        links.append({"rel": "next", **paged(params.offset + params.limit)})
    if params.offset > 0:  # from past the end, back to the last page
        links.append({"rel": "prev",
                      **paged(max(0, min(params.offset, len(found)) - params.limit))})
    body = {"type": "FeatureCollection", "features": features,
            "numberMatched": len(found), "numberReturned": len(features), "links": links}
    return JSONResponse(body, media_type=GEOJSON)


@router.get("/search", summary="STAC item search (GET)")
async def search_get(request: Request) -> JSONResponse:
    """Item search: ``bbox``, ``datetime``, ``collections``, ``ids``, ``q``, ``limit``."""
    params = _get_params(request)
    return _answer(request, params, service_root(request) + "stac/search", method="GET")


@router.post("/search", summary="STAC item search (POST)")
async def search_post(request: Request) -> JSONResponse:
    """Item search with a JSON body (the same fields as GET, in their JSON types)."""
    try:
        body = json.loads(await request.body() or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise _bad("The search body is not JSON: send an object such as "
                   '{"bbox": [170, -10, -170, 10], "limit": 10}.') from None
    if not isinstance(body, dict):
        raise _bad("The search body must be a JSON object of search fields.")
    params = _parse(body)
    return _answer(request, params, service_root(request) + "stac/search", method="POST")


__all__ = ["CONFORMANCE", "build_collection", "build_item", "router", "service_root",
           "spdx_license", "stac_bbox"]
