"""The open-data portal: HTML pages in English and Simplified Chinese, no JavaScript.

Routes, at the service root (every one behind :func:`.access.guard`, so a restricted
dataset the caller is not granted is absent from lists and 404 on its pages):

- ``/``: a search form and the datasets the caller may see;
- ``/search``: the datasets matching ``q`` (words), ``standard_name`` (``*`` wildcards),
  ``bbox=W,S,E,N`` (west > east crosses the antimeridian) and ``time=START/END``, through
  the service's :class:`.index.SearchIndex`; a malformed box or period is a 400 page
  saying what is valid;
- ``/datasets/{id}``: one dataset (abstract, variables, extents, licence, citation,
  versions, preview) with copy-paste snippets for xarray (OPeNDAP, Zarr), intake,
  erddapy, curl, MATLAB/netCDF-C and R, built on the absolute URL of the request;
- ``/datasets/{id}/preview.png``: a small figure drawn by :mod:`oceandata.viz` (a map of
  the first time step of the first variable, or its series, or the positions of the
  observations), rendered once through headless Chromium and cached on disk;
- ``/datasets.json``: the datasets the caller may see, with their links;
- ``/pid/{pid}``: the landing page of a published entry's persistent identifier
  (:mod:`oceandata.alloc.publishing`): title, authors, licence, version, "how to cite",
  links to the data; ``/pid/{pid}/datacite.json`` and ``/pid/{pid}/datacite.xml``: its
  DataCite Metadata Schema 4.5 record;
- ``/static/portal.css``: the one style sheet (no CDN, no web fonts).

Every page takes ``?lang=en|zh`` or the ``Accept-Language`` header (:mod:`.i18n`), and
answers ``Vary: Accept-Language``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import xarray as xr
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from ..catalog.core import Entry
from ..errors import OceandataError, UsageError
from ..i18n import lang_of, remember
from . import i18n
from .access import visible_entries
from .i18n import gettext
from .published import publication_of, refresh_published, watcher

log = logging.getLogger("oceandata.dataservice.portal")

# published entries join the served catalog before each page (docs/projects.md)
router = APIRouter(dependencies=[Depends(refresh_published)])

STATIC = Path(__file__).resolve().parent / "static"
#: length of the abstract shown in lists, in characters
SHORT_ABSTRACT = 220
#: the largest preview grid (longitude x latitude cells); larger grids are strided
PREVIEW_CELLS = (360, 180)
#: preview frame size in pixels (the figure is small: a thumbnail of the data)
PREVIEW_FRAME = (420, 210)
#: bump when the drawing changes, so cached previews are drawn again
PREVIEW_STYLE = "1"
#: one preview is drawn at a time (a Chromium each; the service shares its cores)
_RENDER_LOCK = threading.Lock()


# -- page helpers ----------------------------------------------------------------------
def _blank(value: str | None) -> str | None:
    """A query value, None when absent or only spaces."""
    return value.strip() if value is not None and value.strip() else None


def _page_lang(request: Request) -> tuple[str, str | None]:
    """The page's language, and the ``lang`` to carry in links (None: negotiated)."""
    asked = _blank(request.query_params.get("lang"))
    lang = i18n.request_lang(request)  # ?lang=, the language cookie, Accept-Language
    return lang, (lang if asked and lang_of(asked) else None)


def _base_path(request: Request) -> str:
    """The service root as an absolute path (``/services/data/``, ``/services/data/auth/``)."""
    return request.scope.get("root_path", "").rstrip("/") + "/"


def _base_url(request: Request) -> str:
    """The service root as an absolute URL, for copy-paste snippets."""
    # behind the hub's proxy, TLS ends at the proxy, which says so in X-Forwarded-Proto
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    scheme = forwarded if forwarded in ("http", "https") else request.url.scheme
    host = request.headers.get("host") or request.url.netloc
    return f"{scheme}://{host}{_base_path(request)}"


def _context(request: Request) -> dict[str, Any]:
    """What every template gets: language, links, the switch to the other language."""
    lang, carried = _page_lang(request)
    base = _base_path(request)
    other = "zh" if lang == "en" else "en"
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]

    def link(path: str = "", **params: Any) -> str:
        items = [(k, v) for k, v in params.items() if v is not None]
        if carried:
            items.append(("lang", carried))
        return base + path + ("?" + urlencode(items) if items else "")

    return {
        "lang": lang, "html_lang": i18n.HTML_LANG[lang], "carried_lang": carried,
        "base": base, "link": link, "other_lang": other,
        "other_lang_name": "中文" if other == "zh" else "English",
        "switch_href": "?" + urlencode([*query, ("lang", other)]),
        "caller": request.state.caller,
    }


def _render(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    ctx = _context(request)
    ctx.update(values)
    body = i18n.environment(ctx["lang"]).get_template(template).render(**ctx)
    response = HTMLResponse(body, status_code=status,
                            headers={"Vary": "Accept-Language, Cookie", "Content-Language":
                                     ctx["html_lang"], "Cache-Control": "private, no-cache"})
    remember(request, response)  # a ?lang= switch is kept for the platform's other pages
    return response


def _abstract(entry: Entry) -> str:
    return (entry.metadata.description or entry.description or "").strip()


def _short(text: str, size: int = SHORT_ABSTRACT) -> str:
    text = " ".join(text.split())
    if len(text) <= size:
        return text
    cut = text[:size].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:.") + "…"


def _summary(entry: Entry) -> dict[str, Any]:
    md = entry.metadata
    return {"name": entry.name, "title": md.title, "abstract": _short(_abstract(entry)),
            "access": _access(entry), "grid": md.grid, "provider": md.provider,
            "variables": [v.name for v in md.variables]}


def _access(entry: Entry) -> str:
    """``public``, ``registered`` or ``restricted``: the entry's effective release today
    (:func:`oceandata.governance.rules.effective_release`), as the pages label it."""
    release = entry.release()
    return "public" if release == "open" else release


def _classification_labels(lang: str, entry: Entry) -> dict[str, str]:
    """The entry's category, grade and grid as the page's language names them."""
    from ..catalog.schema import CATEGORY_LABELS, GRADE_LABELS, GRID_LABELS

    c, grid = entry.metadata.classification, entry.metadata.grid
    return {"category": gettext(lang, CATEGORY_LABELS.get(c.category, c.category)),
            "grade": gettext(lang, GRADE_LABELS.get(c.grade, c.grade)),
            "grid": gettext(lang, GRID_LABELS.get(grid, grid))}


def _access_label(lang: str, level: str) -> str:
    if level == "restricted":
        return gettext(lang, "restricted")
    if level == "registered":
        return gettext(lang, "registered users")
    return gettext(lang, "public")


# -- pages -----------------------------------------------------------------------------
#: datasets per page of the portal's lists and of ``datasets.json`` (at most MAX_PAGE)
PAGE = 100
MAX_PAGE = 1000


def _paged(request: Request, items: list[Any], default: int = PAGE) -> tuple[list[Any],
                                                                             dict[str, Any]]:
    """One page of *items* (``offset``, ``limit`` query parameters) and its navigation.

    Raises
    ------
    HTTPException
        400 for an offset or limit that is not a whole number in range.
    """
    lang = i18n.request_lang(request)
    values = {}
    for key, fallback, top in (("offset", 0, None), ("limit", default, MAX_PAGE)):
        raw = request.query_params.get(key)
        try:
            value = fallback if raw in (None, "") else int(raw)
        except ValueError:
            value = -1
        if value < 0 or (top is not None and not 1 <= value <= top):
            raise HTTPException(400, gettext(lang, "%(key)s must be a whole number from "
                                                   "%(low)s to %(high)s.", key=key,
                                             low=0 if top is None else 1,
                                             high=top or len(items)))
        values[key] = value
    offset, limit = values["offset"], values["limit"]
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "offset"]

    def href(start: int) -> str:
        return "?" + urlencode([*query, ("offset", str(start))])

    nav = {"total": len(items), "first": offset + 1 if items else 0,
           "last": min(offset + limit, len(items)),
           "next": href(offset + limit) if offset + limit < len(items) else None,
           "previous": href(max(0, offset - limit)) if offset > 0 else None}
    return items[offset:offset + limit], nav


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def home(request: Request) -> HTMLResponse:
    """Home page: the search form and the datasets the caller may see, a page at a time."""
    entries = visible_entries(request.app.state.catalog, request.state.caller)
    lang, _ = _page_lang(request)
    shown, nav = _paged(request, list(entries.values()))
    return _render(request, "home.html", datasets=[_summary(e) for e in shown], nav=nav,
                   filters=dict.fromkeys(("q", "standard_name", "bbox", "time")),
                   searched=False, error=None,
                   access_label=lambda level: _access_label(lang, level))


@router.get("/search", response_class=HTMLResponse, include_in_schema=False)
def search(request: Request, q: str | None = None, standard_name: str | None = None,
           bbox: str | None = None, time: str | None = None) -> HTMLResponse:
    """Search results: every given filter must match (see the module docstring)."""
    filters = {"q": _blank(q), "standard_name": _blank(standard_name), "bbox": _blank(bbox),
               "time": _blank(time)}
    lang, _ = _page_lang(request)
    period = filters["time"]
    if period is not None and "/" in period:
        start, _, end = period.partition("/")
        period = (start.strip() or None, end.strip() or None)
    try:
        found = request.app.state.index.search(
            request.state.caller, text=filters["q"], standard_name=filters["standard_name"],
            bbox=filters["bbox"], time=period)
    except OceandataError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return _render(request, "home.html", status=400, datasets=[], filters=filters,
                       searched=True, error=message, nav=None,
                       access_label=lambda level: _access_label(lang, level))
    shown, nav = _paged(request, found)
    return _render(request, "home.html", datasets=[_summary(e) for e in shown], nav=nav,
                   filters=filters, searched=True, error=None,
                   access_label=lambda level: _access_label(lang, level))


def _versions(entry: Entry, pinned: str | None) -> dict[str, Any]:
    """Versions of a versioned store: tags (newest first) and the pinned version."""
    info: dict[str, Any] = {"versioned": entry.driver == "icechunk", "tags": [],
                            "pinned": pinned or entry.args.get("version")}
    if not info["versioned"]:
        return info
    try:
        from ..ingest.store import log as store_log

        for version in store_log(entry.paths()[0]):
            for tag in version.tags:
                info["tags"].append({"tag": tag, "written_at": version.written_at})
    except (OceandataError, OSError, ImportError, IndexError) as exc:
        log.warning("versions of %s: %s", entry.name, exc)
    return info


def _time_example(entry: Entry) -> str | None:
    """A one-month period at the start of the entry's time range, for the curl snippet."""
    tr = entry.metadata.time_range
    if tr is None or not tr.start:
        return None
    year = tr.start[:4]
    return f"{year}-01-01/{year}-01-31" if year.isdigit() else None


def _snippets(request: Request, entry: Entry, dataset_id: str) -> dict[str, Any]:
    """Absolute URLs of the dataset's protocols and the copy-paste snippets using them."""
    root = _base_url(request)
    ds_url = f"{root}datasets/{dataset_id}"
    var = entry.metadata.variables[0].name
    params: list[tuple[str, str]] = []
    if entry.metadata.bbox is not None:
        params.append(("bbox", ",".join(f"{v:g}" for v in entry.metadata.bbox.as_tuple())))
    period = _time_example(entry)
    if period:
        params.append(("time", period))
    params += [("var", var), ("format", "nc")]
    gridded = entry.metadata.grid != "dsg"
    urls = {
        "page": f"{ds_url}",
        "opendap": f"{ds_url}/opendap",
        "zarr": f"{ds_url}/zarr",
        "edr": f"{ds_url}/edr/",
        "erddap": f"{ds_url}/erddap",
        "subset": f"{ds_url}/subset?{urlencode(params, safe=',/')}",
        "preview": f"{ds_url}/preview.png",
        "catalog": f"{root}datasets.json",
    }
    name = entry.name
    snippets = {
        "xarray": (
            "import xarray as xr\n\n"
            f"# OPeNDAP (DAP2)\nds = xr.open_dataset({urls['opendap']!r})\n\n"
            f"# Zarr v3\nds = xr.open_zarr({urls['zarr']!r}, zarr_format=3, "
            "consolidated=True)\n"
            f"print(ds[{var!r}])"),
        "intake": (
            "import oceandata\n\n"
            "cat = oceandata.open_catalog()\n"
            f"print(cat.entry({name!r}).describe())\n"
            f"ds = oceandata.open_dataset({name!r})"),
        "erddapy": (
            "from erddapy import ERDDAP\n\n"
            f"e = ERDDAP(server={urls['erddap']!r}, protocol='tabledap')\n"
            f"e.dataset_id = {dataset_id!r}\n"
            + f"e.variables = [{var!r}]\n"
            "df = e.to_pandas()"
        ) if entry.metadata.grid == "dsg" else (
            "from erddapy import ERDDAP\n\n"
            f"e = ERDDAP(server={urls['erddap']!r}, "
            "protocol='griddap')\n"
            f"e.dataset_id = {dataset_id!r}\n"
            "e.griddap_initialize()\n"
            + f"e.variables = [{var!r}]\n"
            "ds = e.to_xarray()"),
        "curl": f"curl -fL -o {name}.nc '{urls['subset']}'",
        "matlab": (
            f"% MATLAB\nncdisp('{urls['opendap']}')\n"
            f"{var} = ncread('{urls['opendap']}', '{var}');\n\n"
            f"# netCDF-C\nncdump -h {urls['opendap']}"),
        "r": (
            "library(ncdf4)\n"
            f"nc <- ncdf4::nc_open(\"{urls['opendap']}\")\n"
            f"{var.replace('-', '_')} <- ncdf4::ncvar_get(nc, \"{var}\")\n"
            "ncdf4::nc_close(nc)"),
    }
    return {"urls": urls, "snippets": snippets, "gridded": gridded}


def _downloads_available() -> bool:
    """Whether the subset downloads (:mod:`.downloads`) are part of this service."""
    import importlib.util

    return importlib.util.find_spec(f"{__package__}.downloads") is not None


@router.get("/datasets/{dataset_id}", response_class=HTMLResponse, include_in_schema=False)
def dataset_page(request: Request, dataset_id: str) -> HTMLResponse:
    """One dataset's page (the guard has resolved ``request.state.entry`` or said 404)."""
    entry: Entry = request.state.entry
    version: str | None = request.state.version
    lang, _ = _page_lang(request)
    if version is not None:  # a version that does not exist is a 404, as on every protocol
        request.app.state.cache.get(entry, version)
    md = entry.metadata
    access = _snippets(request, entry, dataset_id)
    return _render(
        request, "dataset.html", entry=entry, md=md, dataset_id=dataset_id,
        abstract=_abstract(entry), access_label=_access_label(lang, _access(entry)),
        release=_access(entry), labels=_classification_labels(lang, entry),
        versions=_versions(entry, version), downloads=_downloads_available(),
        publication=publication_of(entry), **access)


# -- landing pages of persistent identifiers -----------------------------------------------
def _published(request: Request, pid: str) -> tuple[Entry, dict[str, Any]]:
    """The published entry and publication record of *pid*, else 404 (one sentence)."""
    from ..alloc.publishing import check_pid

    lang, _ = _page_lang(request)
    try:
        canon = check_pid(pid)
    except UsageError:
        canon = None
    name = watcher(request.app).pids.get(canon) if canon else None
    entry = request.app.state.catalog.entries.get(name) if name else None
    record = publication_of(entry) if entry is not None else None
    if record is None or record.get("pid") != canon:
        raise HTTPException(404, gettext(lang, "No dataset has the identifier %(pid)s.",
                                         pid=pid[:40]))
    return entry, record


def _landing_url(request: Request, pid: str) -> str:
    return f"{_base_url(request)}pid/{pid}"


@router.get("/pid/{pid}", response_class=HTMLResponse, include_in_schema=False)
def landing_page(request: Request, pid: str) -> HTMLResponse:
    """The landing page of a persistent identifier: how to cite, what, where."""
    from ..alloc.publishing import how_to_cite

    entry, record = _published(request, pid)
    url = _landing_url(request, record["pid"])
    return _render(request, "landing.html", entry=entry, md=entry.metadata, pub=record,
                   url=url, cite=how_to_cite(record, url))


@router.get("/pid/{pid}/datacite.json", include_in_schema=False)
def datacite_json(request: Request, pid: str) -> JSONResponse:
    """The DataCite Metadata Schema 4.5 record of a persistent identifier, as JSON."""
    from ..alloc.publishing import datacite_json as make

    _, record = _published(request, pid)
    return JSONResponse(make(record, _landing_url(request, record["pid"])),
                        headers={"Content-Disposition":
                                 f'inline; filename="{record["pid"]}.datacite.json"'})


@router.get("/pid/{pid}/datacite.xml", include_in_schema=False)
def datacite_xml(request: Request, pid: str) -> Response:
    """The DataCite Metadata Schema 4.5 record of a persistent identifier, as XML."""
    from ..alloc.publishing import datacite_xml as make

    _, record = _published(request, pid)
    return Response(make(record, _landing_url(request, record["pid"])),
                    media_type="application/xml; charset=utf-8",
                    headers={"Content-Disposition":
                             f'inline; filename="{record["pid"]}.datacite.xml"'})


@router.get("/datasets.json", include_in_schema=False)
def datasets_json(request: Request) -> JSONResponse:
    """The datasets the caller may see: name, title, access level and links.

    A page at a time (``offset``, ``limit`` up to :data:`MAX_PAGE`, default 1000); the
    ``Link`` header gives the next page (RFC 8288) and ``X-Total-Count`` the total.
    """
    root = _base_url(request)
    rows = []
    entries = visible_entries(request.app.state.catalog, request.state.caller)
    shown, nav = _paged(request, list(entries.items()), default=MAX_PAGE)
    for name, entry in shown:
        md = entry.metadata
        url = f"{root}datasets/{name}"
        rows.append({
            "name": name, "title": md.title, "access": _access(entry),
            "description": _short(_abstract(entry)),
            "variables": [v.model_dump(exclude_none=True) for v in md.variables],
            "links": {"page": url, "opendap": f"{url}/opendap", "zarr": f"{url}/zarr",
                      "edr": f"{url}/edr/", "erddap": f"{url}/erddap",
                      "subset": f"{url}/subset", "preview": f"{url}/preview.png"},
        })
    headers = {"Cache-Control": "private, max-age=60", "X-Total-Count": str(nav["total"])}
    if nav["next"]:
        headers["Link"] = f'<{root}datasets.json{nav["next"]}>; rel="next"'
    return JSONResponse(rows, headers=headers)


@router.get("/static/portal.css", include_in_schema=False)
def stylesheet() -> FileResponse:
    """The portal's style sheet."""
    return FileResponse(STATIC / "portal.css", media_type="text/css",
                        headers={"Cache-Control": "public, max-age=3600"})


# -- previews --------------------------------------------------------------------------
def preview_dir(request: Request) -> Path:
    """Where previews are cached: ``app.state.preview_cache``, ``OCEANDATA_PREVIEW_CACHE``,
    else ``previews/`` in the user's oceandata cache folder."""
    configured = getattr(request.app.state, "preview_cache", None) or \
        os.environ.get("OCEANDATA_PREVIEW_CACHE")
    if configured:
        return Path(configured)
    import pooch

    return Path(pooch.os_cache("oceandata")) / "previews"


def _preview_key(entry: Entry, version: str | None) -> str:
    described = json.dumps([entry.describe(), version, PREVIEW_STYLE], sort_keys=True,
                           default=str)
    digest = hashlib.sha256(described.encode()).hexdigest()[:16]
    return f"{entry.name}-{digest}.png"


def _strided(da: xr.DataArray, dims: list[str], limits: tuple[int, ...]) -> xr.DataArray:
    steps = {d: max(1, math.ceil(da.sizes[d] / lim)) for d, lim in zip(dims, limits,
                                                                     strict=False)}
    return da.isel({d: slice(None, None, s) for d, s in steps.items() if s > 1})


def _first_variable(entry: Entry, ds: xr.Dataset) -> xr.DataArray:
    for var in entry.metadata.variables:
        if var.name in ds.data_vars:
            return ds[var.name]
    if not ds.data_vars:
        raise UsageError(f"dataset {entry.name!r} has no data variable to draw")
    return ds[next(iter(ds.data_vars))]


def _coordinate(ds: xr.Dataset, axis: str) -> xr.DataArray | None:
    """The longitude (``axis='longitude'``) or latitude variable of a dataset, if any."""
    names = {"longitude": ("lon", "longitude", "nav_lon"),
             "latitude": ("lat", "latitude", "nav_lat")}[axis]
    for name, var in ds.variables.items():
        if var.attrs.get("standard_name") == axis or str(name).lower() in names:
            return ds[name]
    return None


def _time_dim(da: xr.DataArray) -> str | None:
    for dim in da.dims:
        if dim in da.coords and np.issubdtype(da[dim].dtype, np.datetime64):
            return str(dim)
    return None


def preview_figure(entry: Entry, ds: xr.Dataset) -> Any:
    """The HoloViews preview of a dataset (see the module docstring).

    Gridded entries: a map of the first step of every dimension but longitude and
    latitude, strided to at most :data:`PREVIEW_CELLS`; without longitude and latitude,
    the first two-dimensional slice. Discrete sampling geometries: the series of the
    first variable when it runs along time, else the positions of the observations
    coloured by it, else the values in file order.
    """
    from .. import viz
    from ..viz._backend import BACKEND, hv
    from ..viz.maps import lonlat_names

    da = _first_variable(entry, ds)
    width, height = PREVIEW_FRAME
    if entry.metadata.grid != "dsg":
        try:
            lon_name, lat_name = lonlat_names(da)
        except UsageError:
            lon_name = lat_name = ""
        if lon_name:
            keep = list(da[lon_name].dims) + [d for d in da[lat_name].dims
                                              if d not in da[lon_name].dims]
            da = da.isel({d: 0 for d in da.dims if d not in keep})
            xdim = da[lon_name].dims[-1]
            ydim = next((d for d in keep if d != xdim), xdim)
            da = _strided(da, [xdim, ydim], PREVIEW_CELLS).load()
            fig = viz.field_map(da, rasterize=False)
            return fig.opts(frame_width=width, frame_height=height, toolbar=None,
                            backend=BACKEND)
        if da.ndim >= 2:
            ydim, xdim = da.dims[-2], da.dims[-1]
            da = da.isel({d: 0 for d in da.dims[:-2]})
            da = _strided(da, [xdim, ydim], PREVIEW_CELLS).load()
            xs = da[xdim].values if xdim in da.coords else np.arange(da.sizes[xdim])
            ys = da[ydim].values if ydim in da.coords else np.arange(da.sizes[ydim])
            mesh = hv.QuadMesh((np.asarray(xs, float), np.asarray(ys, float),
                                np.asarray(da.values, float)), kdims=[xdim, ydim],
                               vdims=[str(da.name)])
            return mesh.opts(frame_width=width, frame_height=height, colorbar=True,
                             cmap="viridis", toolbar=None, title=str(da.name))
    tdim = _time_dim(da)
    if da.ndim == 1 and tdim is not None:
        return viz.time_series(da.load()).opts(frame_width=width, frame_height=height,
                                               toolbar=None)
    lon, lat = _coordinate(ds, "longitude"), _coordinate(ds, "latitude")
    if lon is not None and lat is not None and lon.dims == lat.dims:
        x = np.asarray(lon.values, float).ravel()
        y = np.asarray(lat.values, float).ravel()
        if da.dims == lon.dims:
            points = hv.Points((x, y, np.asarray(da.values, float).ravel()),
                               kdims=["longitude", "latitude"], vdims=[str(da.name)])
            points = points.opts(color=str(da.name), cmap="viridis", colorbar=True)
        else:
            points = hv.Points((x, y), kdims=["longitude", "latitude"])
        return points.opts(frame_width=width, frame_height=height, size=4, toolbar=None,
                           title=entry.metadata.title[:60])
    flat = np.asarray(da.values, float).ravel()
    return hv.Curve((np.arange(flat.size), flat), kdims=["index"],
                    vdims=[str(da.name)]).opts(frame_width=width, frame_height=height,
                                               toolbar=None, title=str(da.name))


def render_preview(entry: Entry, version: str | None, ds: xr.Dataset, folder: Path) -> Path:
    """The cached preview PNG of *entry*, drawn (once) when missing.

    The PNG is written under a temporary name in *folder* and renamed, so a reader
    never sees half a file; one preview is drawn at a time.
    """
    from ..viz import save

    target = folder / _preview_key(entry, version)
    if target.exists():
        return target
    with _RENDER_LOCK:
        if target.exists():  # drawn by the request we waited for
            return target
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{target.stem}.{uuid.uuid4().hex[:8]}.png"
        try:
            save(preview_figure(entry, ds), tmp, title=entry.metadata.title)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


@router.get("/datasets/{dataset_id}/preview.png", include_in_schema=False)
def preview(request: Request, dataset_id: str) -> Response:
    """The dataset's preview image (PNG), drawn at the first request and cached."""
    entry: Entry = request.state.entry
    version: str | None = request.state.version
    lang, _ = _page_lang(request)
    from ..viz.export import ExportError

    try:
        ds = request.app.state.cache.get(entry, version)
        path = render_preview(entry, version, ds, preview_dir(request))
    except (OSError, ExportError) as exc:
        log.warning("preview of %s: %s", dataset_id, exc)
        raise HTTPException(503, gettext(lang, "The preview cannot be drawn on this server "
                                               "now; the data themselves are available.")) from None
    except (OceandataError, ValueError, KeyError, TypeError) as exc:
        log.warning("preview of %s: %s", dataset_id, exc)
        raise HTTPException(404, gettext(lang, "There is no preview of this dataset: its "
                                               "first variable cannot be drawn.")) from None
    private = entry.release() != "open"
    return FileResponse(path, media_type="image/png", headers={
        "Cache-Control": f"{'private' if private else 'public'}, max-age=86400"})


__all__ = ["preview_figure", "render_preview", "router"]
