"""Publishing a project entry to the open catalog: request, review, the frozen version,
the platform-owned copy, the persistent identifier and its DataCite metadata.

A member of a project files a request for one entry of the project catalog
(``<workspace>/catalog.yaml``, :mod:`oceandata.alloc.workspaces`) with a licence, a citation
text, the authors and, where needed, a desensitisation profile (:func:`file_request`).
The entry is checked first: its store must lie in the project's ``stores/`` folder, its
classification must allow a public copy (:func:`release_rules`: never ``core``; a grade
above ``general`` only through a desensitisation profile, the entry's declared
``classification.profile`` when it names one; not under embargo; not on the site's
negative list), and the version to publish (the newest snapshot, recorded in the request)
must pass the CF and ACDD checks without a high-priority failure, as ``oceandata ingest
--strict`` demands (:func:`entry_compliance`). The compliance report (``result: pass``),
the entry's sensitivity grade (``grade``) and category are stored with the request.
Title, citation and authors are plain text: control characters other than tab and
newline are refused (:func:`clean_field`), since they cannot be written in XML.

An administrator reviews it (:func:`approve`, with changes of title, licence, citation,
authors or published name; or :func:`deny` with a reason; both audited as
``publish.approve`` / ``publish.deny``). A decision first claims the request with a
conditional update (``pending`` rows only): of two administrators deciding at once, one
proceeds and the other is refused. Approval checks the classification rules again (the
catalog may have changed since the request; the published name is checked against the
negative list too) and builds the DataCite XML before anything is written. Approval:

1. reads the reviewed snapshot from the project store's shadow (as root, never the store
   in place: :func:`oceandata.catalog.projects.sealed_store`) and checks that it is what
   was reviewed: the request stored the digests of its data (``compliance.digests``,
   :func:`snapshot_digests`, computed by the service from the shadow at request time,
   not taken from the store's own metadata) and of its attributes
   (``compliance.attrs_digest``). Snapshot ids are not content hashes, and a member may
   have swapped the store for an edited copy or kept a write descriptor on a sealed file,
   so the ids prove nothing;
2. copies that snapshot, through the profile when one is named
   (:func:`oceandata.governance.desensitise.apply_profile`), into a new store owned by the
   platform, ``<data dir>/published/<name>/data.icechunk``, so the identifier outlives the
   project's workspace. Without a profile, the copy's digests (recorded by
   :func:`oceandata.ingest.pipeline.write_new_store` from the bytes written) must equal
   the reviewed ones; with a profile, the source's digests are computed again just
   before the profile is applied and must equal them (a write between that read and the
   copy's read is the residual window). A mismatch refuses the approval in one sentence
   and keeps nothing;
3. freezes the copy: the tag ``published-<pid>`` (Icechunk tags never move) on the
   platform's copy, which no member can write; the source snapshot id is in the
   publication record;
4. registers it in ``<data dir>/catalogs/published.yaml`` (released ``open``), which the
   open-data service serves beside its root catalog;
5. assigns a persistent identifier of the platform's scheme (:func:`new_pid`) and writes
   ``<data dir>/published/<name>/publication.json``: what the landing page, the DataCite
   exports (:func:`datacite_json`, :func:`datacite_xml`) and STAC read.

Like :mod:`oceandata.alloc.core`, the functions take an open session; callers own the
transaction. The files are written before the session commits, under temporary names
renamed when complete, and removed again when a later step fails.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import secrets
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import xarray as xr
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from ..errors import CatalogError, DataError, NotAuthorized, UsageError
from .core import NotFound, clean_text
from .models import Allocation, AllocationStatus, PublishRequest, PublishState, utcnow

__all__ = [
    "PID_PATTERN",
    "PUBLISHER",
    "approve",
    "check_pid",
    "clean_field",
    "datacite_json",
    "datacite_xml",
    "deny",
    "entry_compliance",
    "file_request",
    "get_request",
    "list_project_requests",
    "list_requests",
    "new_pid",
    "publication",
    "published_catalog_path",
    "published_dir",
    "read_publication",
    "release_rules",
    "request_dict",
]

#: the publisher named in citations and DataCite metadata
PUBLISHER = "oceandata national marine data centre"
#: Crockford base32: digits and capitals without I, L, O, U
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: a persistent identifier: ``OD-<year>-<6 symbols><check symbol>``
PID_PATTERN = re.compile(r"OD-(\d{4})-([0-9A-HJKMNP-TV-Z]{6})([0-9A-HJKMNP-TV-Z])")
#: names of published entries (the catalog's rule for entry names)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
#: a licence: an SPDX identifier or expression (``CC-BY-4.0``, ``CC0-1.0``, ``ODbL-1.0``)
_LICENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]{1,63}( (AND|OR|WITH) [A-Za-z0-9][A-Za-z0-9.+-]"
                      r"{1,63}){0,3}")
_ORCID = re.compile(r"(https://orcid\.org/)?(\d{4}-\d{4}-\d{4}-\d{3}[\dX])")
#: variables at most this many values long are written whole into the compliance twin
_TWIN_WHOLE = 2**20
MAX_AUTHORS = 100


# --------------------------------------------------------------------------- places


def _data_dir(data_dir: Path | None = None) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    from ..config import get_settings

    return Path(os.environ.get("OCEANDATA_DATA_DIR") or get_settings().data_dir)


def published_dir(data_dir: Path | None = None) -> Path:
    """``<data dir>/published``: the platform-owned copies of published entries."""
    return _data_dir(data_dir) / "published"


def published_catalog_path(data_dir: Path | None = None) -> Path:
    """``<data dir>/catalogs/published.yaml``: the catalog of published entries."""
    return _data_dir(data_dir) / "catalogs" / "published.yaml"


# --------------------------------------------------------------------------- identifiers


def _check_symbol(text: str) -> str:
    """Luhn mod 32 check symbol of *text* (Crockford base32 symbols): catches every
    single wrong symbol and every swap of two adjacent different symbols."""
    n = len(_ALPHABET)
    factor, total = 2, 0
    for ch in reversed(text):
        addend = factor * _ALPHABET.index(ch)
        factor = 1 if factor == 2 else 2
        total += addend // n + addend % n
    return _ALPHABET[(n - total % n) % n]


def new_pid(year: int | None = None, token: str | None = None) -> str:
    """A new persistent identifier ``OD-<year>-<6 random symbols><check symbol>``.

    Parameters
    ----------
    year
        The year of publication (default this year, UTC).
    token
        The 6 symbols (default random: 30 bits).
    """
    year = year or dt.datetime.now(dt.UTC).year
    token = token or "".join(secrets.choice(_ALPHABET) for _ in range(6))
    return f"OD-{year:04d}-{token}{_check_symbol(f'{year:04d}{token}')}"


def check_pid(text: str) -> str:
    """The canonical form of a persistent identifier (capitals; ``I``/``L`` read as 1,
    ``O`` as 0, as Crockford's base32 reads them).

    Raises
    ------
    UsageError
        Not of the scheme, or its check symbol does not match (a mistyped identifier).
    """
    raw = str(text).strip().upper()
    head, _, tail = raw.rpartition("-")
    canon = f"{head}-{tail.replace('I', '1').replace('L', '1').replace('O', '0')}"
    match = PID_PATTERN.fullmatch(canon)
    if not match or _check_symbol(match[1] + match[2]) != match[3]:
        raise UsageError(f"{str(text)[:40]!r} is not a persistent identifier of this "
                         "platform (OD-<year>-<7 symbols>, the last a check symbol)")
    return canon


# --------------------------------------------------------------------------- fields


def _bad_character(text: str) -> str | None:
    """The first character of *text* that XML 1.0 cannot carry or that is a control
    character (tab and newline aside), else None."""
    for ch in text:
        if ch in "\t\n":
            continue
        if unicodedata.category(ch) in ("Cc", "Cs") or ch in "\ufffe\uffff":
            return ch
    return None


def clean_field(value: Any, name: str, limit: int) -> str:
    """A published text field (title, citation, authors' names and affiliations):
    :func:`~oceandata.alloc.core.clean_text` (not empty, stripped), line ends as ``\n``,
    at most *limit* characters, and no control character but tab and newline (DataCite
    XML cannot carry them; a title with a bell made every export of its PID fail).

    Raises
    ------
    UsageError
        One line naming the field and the character.
    """
    text = clean_text(value if value is not None else "", name)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    bad = _bad_character(text)
    if bad is not None:
        raise UsageError(f"{name}: control character U+{ord(bad):04X} is not allowed "
                         "(plain text only; tab and newline are)")
    return text[:limit]


def _plain(text: Any) -> str:
    """*text* with the characters :func:`clean_field` refuses replaced by spaces (for
    what the member-written catalog says, copied into the publication)."""
    return "".join(" " if _bad_character(ch) else ch for ch in str(text))


def clean_licence(value: Any) -> str:
    """A licence: an SPDX identifier or expression; required."""
    if value is None or not str(value).strip():
        raise UsageError("licence: a licence is required to publish (an SPDX identifier, "
                         "e.g. CC-BY-4.0 or CC0-1.0)")
    text = " ".join(str(value).split())
    if not _LICENCE.fullmatch(text):
        raise UsageError(f"licence {text[:40]!r}: give an SPDX identifier or expression, "
                         "e.g. CC-BY-4.0, CC0-1.0, ODbL-1.0")
    return text


def clean_authors(value: Any) -> list[dict[str, str]]:
    """Authors as ``[{"name", "affiliation", "orcid"?}]``; at least one.

    A string ``"Name;Affiliation[;ORCID]"`` is accepted for an author (the CLI's form).
    """
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise UsageError("authors: give at least one author as {\"name\", \"affiliation\", "
                         "\"orcid\" (optional)}")
    if len(value) > MAX_AUTHORS:
        raise UsageError(f"authors: at most {MAX_AUTHORS}")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            parts = [p.strip() for p in item.split(";")]
            item = dict(zip(("name", "affiliation", "orcid"), parts, strict=False))
        if not isinstance(item, dict):
            raise UsageError(f"authors[{i}]: give an object with name and affiliation")
        unknown = set(item) - {"name", "affiliation", "orcid"}
        if unknown:
            raise UsageError(f"authors[{i}]: unknown field {sorted(unknown)[0]!r}; the fields "
                             "are name, affiliation, orcid")
        author = {"name": clean_field(item.get("name") or "", f"authors[{i}].name", 200),
                  "affiliation": clean_field(item.get("affiliation") or "",
                                             f"authors[{i}].affiliation", 300)}
        orcid = item.get("orcid")
        if orcid not in (None, ""):
            match = _ORCID.fullmatch(str(orcid).strip())
            if not match:
                raise UsageError(f"authors[{i}].orcid {str(orcid)[:40]!r}: give an ORCID "
                                 "iD, 0000-0002-1825-0097")
            author["orcid"] = match[2]
        out.append(author)
    return out


def _clean_name(value: Any) -> str:
    name = str(value or "").strip()
    if not _NAME.fullmatch(name):
        raise UsageError(f"name {name[:40]!r}: letters, digits, '.', '_' and '-', starting "
                         "with a letter or digit, at most 100")
    if re.match(r"p\d+\.", name):  # p<id>.<name> names a project's own entry
        raise UsageError(f"name {name[:40]!r} looks like a project entry's (p<id>.<name>); "
                         "choose another published name")
    return name


# --------------------------------------------------------------------------- the entry


def project_entry(alloc: Allocation, name: str, data_dir: Path | None = None
                  ) -> tuple[Any, Path]:
    """The entry *name* of the project catalog and its store.

    The catalog is read as every project catalog is, with suspicion
    (:func:`oceandata.catalog.projects.load_project_catalog`: stores inside the workspace,
    no templates, links or sub-catalogs); the store must moreover be an Icechunk store
    lying directly in the workspace's ``stores/``. The store itself is not opened here:
    its readers (the request's check, the approval's copy) read it through its shadow
    (:func:`oceandata.catalog.projects.sealed_store`), which refuses a store holding a
    link, and never in place as root.

    Raises
    ------
    NotFound
        No such entry (or one its catalog's rules leave out).
    UsageError
        The entry is not an Icechunk store of the workspace.
    """
    from ..catalog.projects import (
        check_entry_name,
        load_project_catalog,
        qualified_name,
    )
    from ..errors import CatalogError
    from .workspaces import workspace_path

    workspace = workspace_path(alloc.id, data_dir)
    try:
        short = check_entry_name(str(name))
        cat = load_project_catalog(alloc.id, workspace)
    except UsageError:
        raise NotFound(f"project {alloc.id} has no entry {str(name)[:100]!r}") from None
    except CatalogError as exc:
        raise UsageError(f"project {alloc.id}'s catalog cannot be read: "
                         f"{str(exc).splitlines()[0]}") from None
    entry = cat.entries.get(qualified_name(alloc.id, short))
    if entry is None:
        raise NotFound(f"project {alloc.id} has no entry {short!r}"
                       + (f"; its entries: {', '.join(e.split('.', 1)[1] for e in cat.entries)}"
                          if cat.entries else ": ingest into it first (oceandata ingest "
                          f"FILES --project {alloc.id})"))
    stores = (workspace / "stores").resolve()
    store = Path(str(entry.args.get("urlpath"))).resolve()
    if entry.driver != "icechunk" or store.parent != stores:
        raise UsageError(f"entry {short!r} is not a versioned store of project "
                         f"{alloc.id}'s workspace ({stores}); only those are published")
    return entry, store


def release_rules(entry: Any, profile: str | None, names: list[str]) -> str | None:
    """May a public copy of *entry* be made, and through which profile?

    The copy is released ``open``, so the entry's classification must allow it: never
    ``core``; a grade above ``general`` only through a desensitisation profile (the one
    the entry declares, ``classification.profile``, when it names one: it is used when
    the request names none, and another is refused); not while an embargo lasts (UTC);
    and none of *names* (the entry's names in its project and the published name) on the
    site's negative list (:func:`oceandata.governance.rules.load_negative_list`).

    Parameters
    ----------
    entry
        The project catalog's entry (validated metadata).
    profile
        The profile the request names, or None.
    names
        Names to check against the negative list.

    Returns
    -------
    str or None
        The profile to publish through.

    Raises
    ------
    UsageError
        One sentence: which rule refuses.
    """
    from ..governance.rules import load_negative_list, today

    cls = entry.metadata.classification
    short = str(names[0])
    if cls.grade == "core":
        raise UsageError(f"entry {short!r} is graded core: core data are never published "
                         "(docs/governance.md)")
    declared = cls.profile or None
    if profile is None:
        profile = declared
    elif declared is not None and profile != declared:
        raise UsageError(f"entry {short!r} declares the profile {declared!r} for its public "
                         f"copy: publish through it, not {profile!r}, or change the entry's "
                         "classification")
    if cls.grade != "general" and profile is None:
        raise UsageError(f"entry {short!r} is graded {cls.grade}: only a desensitised copy "
                         "is published; name a profile (profile, --profile) or declare one "
                         "in the entry's classification")
    day = today()
    if cls.embargo_until is not None and day < cls.embargo_until:
        raise UsageError(f"entry {short!r} is under embargo until "
                         f"{cls.embargo_until.isoformat()}: file the request on or after "
                         "that day")
    from ..errors import CatalogError

    try:
        negative = load_negative_list()
    except CatalogError as exc:  # fail closed: the site's rule cannot be read
        raise UsageError(f"the site's negative list cannot be read, so nothing is "
                         f"published: {str(exc).splitlines()[0]}") from None
    for name in names:
        rule = negative.match(str(name))
        if rule is not None:
            raise UsageError(f"{str(name)!r} is on the site's negative list ({rule.reason}): "
                             "it is not published")
    return profile


def _twin(ds: xr.Dataset, path: Path) -> None:
    """Write *ds* as NetCDF-4 for the compliance checks: coordinates and variables of at
    most :data:`_TWIN_WHOLE` values whole, larger ones declared (same names, types,
    dimensions and attributes) but not filled: the checks read no data of those except
    for ``actual_range``, whose variables are written whole too."""
    import netCDF4
    from xarray.conventions import encode_cf_variable

    ds = ds.copy()
    ds.attrs = {k: v for k, v in ds.attrs.items() if not str(k).startswith("oceandata_")}
    for dim in ds.dims:  # a Zarr v3 array always has a fill value; CF forbids one here
        if dim in ds.variables:
            ds[dim].encoding["_FillValue"] = None
    large = [n for n, v in ds.data_vars.items()
             if v.size > _TWIN_WHOLE and "actual_range" not in v.attrs and v.dtype.kind in "iuf"]
    ds[[n for n in ds.data_vars if n not in large]].to_netcdf(path, format="NETCDF4")
    if not large:
        return
    with netCDF4.Dataset(path, "a") as nc:
        for name in large:
            var = encode_cf_variable(ds[name].variable, name=str(name))
            attrs = dict(var.attrs)
            fill = attrs.pop("_FillValue", ds[name].encoding.get("_FillValue"))
            chunks = tuple(max(1, min(n, 256)) for n in var.shape)
            out = nc.createVariable(str(name), var.dtype, var.dims, fill_value=fill,
                                    chunksizes=chunks or None)
            out.setncatts({k: v for k, v in attrs.items()})


def entry_compliance(store: Path, version: str | None = None) -> tuple[str, dict[str, Any]]:
    """The snapshot of *store* at *version* (newest by default) and the CF/ACDD compliance
    report of its data (:func:`oceandata.ingest.compliance.check_sources` on a NetCDF
    twin of that version, written in a temporary folder and removed), with the digest of
    the attributes it checked (``attrs_digest``, :func:`attrs_digest`)."""
    from ..ingest.compliance import check_sources
    from ..ingest.store import open_store

    ds = open_store(store, version=version)
    snapshot = str(ds.attrs.get("oceandata_snapshot"))
    attrs = attrs_digest(ds)
    with tempfile.TemporaryDirectory(prefix="oceandata-publish-") as tmp:
        twin = Path(tmp) / f"{store.stem}.nc"
        _twin(ds, twin)
        report = check_sources([twin])
    data = report.as_dict()
    for result in data["results"]:  # name the entry, not the temporary file
        result["file"] = f"{store.name}@{snapshot}"
    data["attrs_digest"] = attrs
    return snapshot, data


def snapshot_digests(store: Path, snapshot: str) -> dict[str, str]:
    """Digests of the data of *store* at *snapshot*, as stored
    (:func:`oceandata.ingest.checksums.dataset_digests` of
    :func:`~oceandata.ingest.checksums.open_raw`): chunk-independent, so they compare with
    what :func:`oceandata.ingest.pipeline.write_new_store` records for a copy
    (``checksums`` in its commit's metadata). Computed by the service itself: a store's
    own metadata are the member's word."""
    from ..ingest.checksums import dataset_digests, open_raw
    from ..ingest.store import open_repository

    repo = open_repository(store)
    return dataset_digests(open_raw(repo.readonly_session(snapshot_id=snapshot).store))


#: encoding keys that change what decoded values mean (the raw digests do not see them)
_MEANING = ("scale_factor", "add_offset", "_FillValue", "missing_value", "units", "calendar",
            "dtype")


def attrs_digest(ds: xr.Dataset) -> str:
    """SHA-256 of the attributes of *ds* and of its variables (those the platform adds,
    ``oceandata_*``, left out) and of the encodings that give the stored values their
    meaning (:data:`_MEANING`: packing, fill values, time units): what the reviewed
    metadata were."""
    import hashlib

    import numpy as np

    def plain(value: Any) -> Any:
        return np.asarray(value).tolist()

    def keep(attrs: dict[Any, Any]) -> dict[str, Any]:
        return {str(k): v for k, v in attrs.items() if not str(k).startswith("oceandata_")}

    doc = {"attrs": keep(ds.attrs),
           "variables": {str(n): keep(v.attrs) for n, v in ds.variables.items()},
           "encoding": {str(n): {k: str(v.encoding[k]) for k in _MEANING if k in v.encoding}
                        for n, v in ds.variables.items()}}
    text = json.dumps(doc, sort_keys=True, default=plain, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


#: the one sentence of an approval whose entry's data or metadata are not what was reviewed
CHANGED = ("the entry's data changed since the request was filed: file it again (publish "
           "request {id}, {what})")


def _first_high(report: dict[str, Any]) -> str:
    for result in report["results"]:
        for failure in result["failures"]:
            if failure["priority"] == "high":
                first = failure["messages"][0] if failure["messages"] else ""
                return f"{failure['name']!r} ({result['suite']}): {first}"
    return ""


# --------------------------------------------------------------------------- requests


def request_dict(req: PublishRequest) -> dict[str, Any]:
    """A request as JSON-safe values (the report's summary, not every message)."""
    report = req.compliance or {}
    return {
        "id": req.id, "project": req.allocation_id, "entry": req.entry,
        "requested_by": req.requested_by, "title": req.title, "licence": req.licence,
        "citation": req.citation, "authors": list(req.authors or ()), "profile": req.profile,
        "grade": req.grade, "category": req.category, "snapshot": req.snapshot,
        "compliance": {"result": report.get("result"), "suites": report.get("suites"),
                       "high_failures": report.get("high_failures"),
                       "results": [{k: r.get(k) for k in ("suite", "scored_points",
                                                          "possible_points", "failed")}
                                   for r in report.get("results", [])]},
        "status": req.status.value, "decided_by": req.decided_by,
        "decided_at": req.decided_at.isoformat() if req.decided_at else None,
        "reason": req.reason, "changes": req.changes, "pid": req.pid,
        "published_name": req.published_name, "tag": req.tag,
        "created_at": req.created_at.isoformat() if req.created_at else None,
    }


def _audit(session: Session, req: PublishRequest, actor: str, action: str,
           detail: dict[str, Any]) -> None:
    from ..governance import audit

    audit.record_on_commit(session, f"publish.{action}", actor=actor,
                           target=f"allocation:{req.allocation_id}",
                           detail={"request": req.id, "entry": req.entry, **detail})


def file_request(session: Session, alloc_id: int, user: str, is_admin: bool,
                 body: dict[str, Any], data_dir: Path | None = None) -> PublishRequest:
    """File a request to publish an entry of project *alloc_id*.

    Parameters
    ----------
    body
        ``entry``, ``licence``, ``citation``, ``authors`` (see :func:`clean_authors`),
        ``title`` (default the entry's), ``profile`` (optional desensitisation profile).

    Raises
    ------
    NotFound
        *user* is not a member (a non-member learns nothing), or no such entry.
    UsageError
        No licence, bad fields, an entry the release rules keep (:func:`release_rules`),
        an unknown profile, or a high-priority compliance failure (one line; nothing is
        stored).
    """
    from .projects import get_member_project

    alloc = get_member_project(session, alloc_id, user, is_admin)
    unknown = set(body) - {"entry", "licence", "license", "citation", "authors", "title",
                           "profile"}
    if unknown:
        raise UsageError(f"unknown field {sorted(unknown)[0]!r}; the fields are entry, "
                         "licence, citation, authors, title, profile")
    if alloc.status != AllocationStatus.APPROVED:
        raise UsageError(f"allocation {alloc.id} is {alloc.status.value}: only approved "
                         "projects publish")
    licence = clean_licence(body.get("licence", body.get("license")))
    citation = clean_field(body.get("citation"), "citation", 2000)
    authors = clean_authors(body.get("authors"))
    if body.get("title") not in (None, ""):
        clean_field(body["title"], "title", 300)  # refused before the entry is read
    entry_name = clean_text(body.get("entry") or "", "entry")
    profile = str(body["profile"]) if body.get("profile") else None
    entry, store = project_entry(alloc, entry_name, data_dir)
    cls = entry.metadata.classification
    from ..catalog.projects import qualified_name

    profile = release_rules(entry, profile, [entry_name, qualified_name(alloc.id, entry_name)])
    if profile is not None:
        from ..governance.desensitise import load_profile

        load_profile(profile)  # an unknown or invalid profile is refused now
    title = clean_field(body.get("title") or _plain(entry.metadata.title), "title", 300)
    from ..catalog.projects import drop_shadow, sealed_store
    from .workspaces import workspace_path

    shadow = None
    try:  # read (as root) from the store's shadow, which no member can change
        shadow = sealed_store(store, workspace_path(alloc.id, data_dir))
        snapshot, report = entry_compliance(shadow)
        # what is reviewed: the approval publishes these values or nothing
        report["digests"] = snapshot_digests(shadow, snapshot)
    except (DataError, CatalogError) as exc:  # unreadable: the member's to fix
        raise UsageError(f"entry {entry_name!r} cannot be checked: "
                         f"{str(exc).splitlines()[0]}") from None
    finally:
        if shadow is not None:
            drop_shadow(shadow)
    if report["high_failures"]:
        raise UsageError(
            f"entry {entry_name!r} fails the strict compliance check ({report['high_failures']}"
            f" high-priority failures; first: {_first_high(report)}); fix the data and "
            "ingest a new version, then file the request again")
    report["result"] = "pass"
    req = PublishRequest(allocation_id=alloc.id, entry=entry_name, requested_by=user,
                         title=title, licence=licence, citation=citation, authors=authors,
                         profile=profile, grade=cls.grade,
                         category=cls.category, compliance=report, snapshot=snapshot,
                         created_at=utcnow())
    session.add(req)
    session.flush()
    _audit(session, req, user, "request", {"snapshot": snapshot, "licence": licence})
    return req


def get_request(session: Session, request_id: int, user: str, is_admin: bool
                ) -> PublishRequest:
    """Request *request_id* if *user* is a member of its project or an admin; else
    :class:`NotFound`."""
    from .projects import is_member

    req = session.get(PublishRequest, request_id)
    if req is None or not (is_admin or is_member(
            session, session.get(Allocation, req.allocation_id), user)):
        raise NotFound(f"no publish request {request_id} of yours")
    return req


def list_project_requests(session: Session, alloc_id: int, user: str,
                          is_admin: bool) -> list[PublishRequest]:
    """The requests of project *alloc_id*, newest first (members and admins)."""
    from .projects import get_member_project

    get_member_project(session, alloc_id, user, is_admin)
    return list(session.scalars(select(PublishRequest).where(
        PublishRequest.allocation_id == alloc_id).order_by(PublishRequest.id.desc())))


def list_requests(session: Session, is_admin: bool, status: PublishState | None = None,
                  limit: int = 100, offset: int = 0) -> list[PublishRequest]:
    """Every request (the review queue), oldest pending first; administrators only."""
    if not is_admin:
        raise NotAuthorized("the publish queue is for administrators")
    query = select(PublishRequest)
    if status is not None:
        query = query.where(PublishRequest.status == status)
    return list(session.scalars(query.order_by(PublishRequest.id).limit(limit).offset(offset)))


def _pending_for_review(session: Session, request_id: int, actor: str,
                        is_admin: bool) -> PublishRequest:
    """Request *request_id*, still pending, for an administrator's decision; else
    :class:`NotAuthorized` (not an admin), :class:`NotFound` or :class:`UsageError`
    (decided already)."""
    if not is_admin:
        raise NotAuthorized(f"{actor} is not an administrator: requests are reviewed by "
                            "administrators")
    req = get_request(session, request_id, actor, True)
    if req.status != PublishState.PENDING:
        raise UsageError(f"publish request {req.id} is {req.status.value} already")
    return req


def deny(session: Session, request_id: int, actor: str, is_admin: bool,
         reason: Any) -> PublishRequest:
    """Deny a pending request with a reason (audited ``publish.deny``)."""
    req = _pending_for_review(session, request_id, actor, is_admin)
    reason = clean_field(reason or "", "reason", 2000)
    _claim(session, req)
    req.reason = reason
    req.status, req.decided_by, req.decided_at = PublishState.DENIED, actor, utcnow()
    session.flush()
    _audit(session, req, actor, "deny", {"reason": req.reason})
    return req


def _claim(session: Session, req: PublishRequest) -> None:
    """Claim pending request *req* for a decision: a conditional update of its row
    (``WHERE status = 'pending'``) in the caller's transaction. A second decision made at
    the same time waits for this transaction (the row's lock; SQLite's write lock) and
    then finds the request decided, or gives up after the database's lock timeout:
    either way it is refused in one line and only one decision proceeds."""
    try:
        claimed = session.execute(
            update(PublishRequest)
            .where(PublishRequest.id == req.id, PublishRequest.status == PublishState.PENDING)
            .values(status=PublishState.PENDING)
            .execution_options(synchronize_session=False)).rowcount
    except OperationalError:  # another decision holds the lock past the timeout
        session.rollback()
        raise UsageError(f"publish request {req.id} is being decided by another "
                         "administrator; reload the queue in a moment") from None
    if claimed != 1:
        session.refresh(req)
        raise UsageError(f"publish request {req.id} is {req.status.value} already")
    session.refresh(req)
    if req.status != PublishState.PENDING:  # pragma: no cover (databases that re-read)
        raise UsageError(f"publish request {req.id} is {req.status.value} already")


# --------------------------------------------------------------------------- approval


def _readable(path: Path) -> None:
    """Open data: folders 0755, files 0644 (the data service's account reads them)."""
    for folder, _dirs, files in os.walk(path):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)


def _taken(name: str, catalog_path: Path) -> str | None:
    """Where *name* is already an entry of the root catalog or the published one."""
    from ..catalog.core import open_catalog
    from ..errors import CatalogError

    with contextlib.suppress(CatalogError, UsageError, OSError):
        root = open_catalog()
        if name in root.entries:
            return str(root.entries[name].where)
    if catalog_path.exists():
        import yaml

        doc = yaml.safe_load(catalog_path.read_text(encoding="utf-8")) or {}
        if name in (doc.get("sources") or {}):
            return str(catalog_path)
    return None


def publication(req: PublishRequest, entry: Any, *, store: Path, snapshot: str,
                published: dt.datetime) -> dict[str, Any]:
    """The publication record (``publication.json``) of an approved request."""
    md = entry.metadata
    return {
        "pid": req.pid, "name": req.published_name, "title": req.title,
        "authors": list(req.authors), "licence": req.licence, "citation": req.citation,
        "publisher": PUBLISHER, "published": published.isoformat(timespec="seconds"),
        "year": published.year, "doi": None,
        "source": {"project": req.allocation_id, "entry": req.entry,
                   "snapshot": req.snapshot},
        "store": str(store), "store_snapshot": snapshot, "tag": req.tag,
        "profile": req.profile,
        "category": req.category, "grade": req.grade,
        "description": _plain(md.description or entry.description or req.title),
        "bbox": md.bbox.as_tuple() if md.bbox is not None else None,
        "time_range": ({"start": str(md.time_range.start) if md.time_range.start else None,
                        "end": str(md.time_range.end) if md.time_range.end else None}
                       if md.time_range is not None else None),
        "variables": [_plain(v.name) for v in md.variables],
        "request": req.id,
    }


def how_to_cite(pub: dict[str, Any], url: str | None = None) -> str:
    """The citation line: authors (year). title. publisher. PID (or DOI). URL."""
    names = [a["name"] for a in pub["authors"]]
    who = "; ".join(names) if len(names) <= 10 else f"{'; '.join(names[:10])} et al."
    ident = f"https://doi.org/{pub['doi']}" if pub.get("doi") else pub["pid"]
    where = f" {url}" if url else ""
    return f"{who} ({pub['year']}). {pub['title']}. {pub['publisher']}. {ident}.{where}"


def _copy_digests(target: Path, snapshot: str) -> dict[str, str] | None:
    """The digests :func:`~oceandata.ingest.pipeline.write_new_store` recorded for the
    copy it wrote (computed from the copy's bytes after the write)."""
    from ..ingest.store import open_repository

    for info in open_repository(target).ancestry(snapshot_id=snapshot):
        return dict((info.metadata or {}).get("checksums") or {})
    return None  # pragma: no cover


def _differs(reviewed: dict[str, str], now: dict[str, str] | None) -> str:
    """Which variable's digest differs (for the refusal's sentence)."""
    now = now or {}
    for name in sorted(set(reviewed) | set(now)):
        if reviewed.get(name) != now.get(name):
            return f"variable {name!r} differs"
    return "the data differ"  # pragma: no cover


def approve(session: Session, request_id: int, actor: str, is_admin: bool,
            changes: dict[str, Any] | None = None, data_dir: Path | None = None
            ) -> PublishRequest:
    """Approve a pending request: check, copy, tag the copy, register, identify (module
    docstring).

    Parameters
    ----------
    changes
        Optional new ``title``, ``licence``, ``citation``, ``authors``, ``name`` (the
        published entry's name; default the project entry's).

    Raises
    ------
    NotAuthorized
        *actor* is not an administrator.
    UsageError
        The request is decided already (or being decided by another administrator), a
        change is invalid, the release rules refuse the entry now (:func:`release_rules`,
        with the published name), the name is taken, the entry's reviewed snapshot is no
        longer in the store, or its data or attributes are not those reviewed (one
        sentence: file the request again).
    """
    from ..governance.locks import store_lock
    from ..ingest.register import register_store
    from ..ingest.store import open_repository, open_store, tag

    req = _pending_for_review(session, request_id, actor, is_admin)
    changes = dict(changes or {})
    unknown = set(changes) - {"title", "licence", "license", "citation", "authors", "name"}
    if unknown:
        raise UsageError(f"changes: unknown field {sorted(unknown)[0]!r}; an approval may "
                         "change title, licence, citation, authors, name")
    made: dict[str, Any] = {}
    if "title" in changes:
        made["title"] = clean_field(changes["title"] or "", "title", 300)
    if "licence" in changes or "license" in changes:
        made["licence"] = clean_licence(changes.get("licence", changes.get("license")))
    if "citation" in changes:
        made["citation"] = clean_field(changes["citation"] or "", "citation", 2000)
    if "authors" in changes:
        made["authors"] = clean_authors(changes["authors"])
    name = _clean_name(changes.get("name") or req.entry)
    _claim(session, req)  # one decision at a time: a concurrent one is refused
    alloc = session.get(Allocation, req.allocation_id)
    entry, store = project_entry(alloc, req.entry, data_dir)
    from ..catalog.projects import qualified_name

    profile = release_rules(entry, req.profile, [
        req.entry, qualified_name(req.allocation_id, req.entry), name])
    if profile != req.profile:
        raise UsageError(f"entry {req.entry!r} now declares the profile {profile!r}, the "
                         "request none; deny it and file a new one")
    catalog_path = published_catalog_path(data_dir)
    where = _taken(name, catalog_path)
    if where is not None:
        raise UsageError(f"name {name!r} is taken in the open catalog ({where}); approve "
                         "with another name (changes.name)")
    reviewed = (req.compliance or {}).get("digests")
    if not reviewed or not (req.compliance or {}).get("attrs_digest"):
        raise UsageError(f"publish request {req.id} was filed without the digests of its "
                         "data: deny it and file it again")
    for key, value in made.items():
        setattr(req, key, value)
    pid = new_pid()
    while session.scalar(select(PublishRequest.id).where(PublishRequest.pid == pid)):
        pid = new_pid()  # pragma: no cover (30 random bits a year)
    req.pid = pid
    req.tag = f"published-{pid}"
    req.published_name = name
    command = f"oceandata publish approve {req.id}"
    from ..catalog.projects import drop_shadow, sealed_store

    shadow: Path | None = None  # dropped once the copy is written, whatever happens
    try:
        # read (as root) only from the store's shadow, which no member can rename or
        # relink (oceandata.catalog.projects.sealed_store); the store is never opened or
        # written in place: its refs/ are the members' to replace
        from .workspaces import workspace_path

        shadow = sealed_store(store, workspace_path(alloc.id, data_dir))
        known = {s.id for s in open_repository(shadow).ancestry(branch="main")}
        if req.snapshot not in known:
            raise UsageError(f"the reviewed version {req.snapshot} of entry {req.entry!r} "
                             "is no longer in the project store; deny the request and file "
                             "a new one")
        ds = open_store(shadow, version=req.snapshot)
        if attrs_digest(ds) != req.compliance["attrs_digest"]:
            raise UsageError(CHANGED.format(id=req.id, what="its attributes differ"))
        changed: list[str] = []
        if req.profile:
            # the profile changes the values: the source is compared before it is applied
            # (a write in the short window between this read and the copy's is not seen)
            now_digests = snapshot_digests(shadow, req.snapshot)
            if now_digests != reviewed:
                raise UsageError(CHANGED.format(id=req.id, what=_differs(reviewed,
                                                                         now_digests)))
            from ..governance.desensitise import apply_profile, load_profile

            applied = apply_profile(ds, load_profile(req.profile), name=req.profile,
                                    entry=req.entry)
            ds, changed = applied.dataset, applied.changes
    except BaseException as exc:
        if shadow is not None:
            drop_shadow(shadow)
        if isinstance(exc, DataError | CatalogError):  # not fit for the profile; store failed
            raise UsageError(f"publish request {req.id} cannot be approved: "
                             f"{str(exc).splitlines()[0]}") from None
        raise
    ds = ds.copy()
    ds.attrs = {k: v for k, v in ds.attrs.items() if not str(k).startswith("oceandata_")}
    folder = published_dir(data_dir) / name
    target = folder / "data.icechunk"
    now = utcnow()
    try:
        folder.mkdir(parents=True, exist_ok=False, mode=0o755)
    except FileExistsError:
        drop_shadow(shadow)
        raise UsageError(f"{folder} exists already; approve with another name "
                         "(changes.name)") from None
    try:
        os.chmod(folder.parent, 0o755)
        metadata = {"publish": {"pid": pid, "request": req.id, "project": req.allocation_id,
                                "entry": req.entry, "snapshot": req.snapshot, "tag": req.tag,
                                "profile": req.profile, "changes": changed,
                                "approved_by": actor},
                    "created": now.isoformat(timespec="seconds"), "command": command}
        from ..ingest.pipeline import write_new_store

        snapshot = write_new_store(ds, target, message=f"publish {name} ({pid}): "
                                   f"{req.entry}@{req.snapshot}", metadata=metadata)
        if not req.profile:  # what was written must be what was reviewed
            written = _copy_digests(target, snapshot)
            if written != reviewed:
                raise UsageError(CHANGED.format(id=req.id, what=_differs(reviewed, written)))
        # the freeze: a tag that never moves, on the platform's copy (members cannot
        # write it), naming the copy's one snapshot
        tag(target, req.tag, version=snapshot, command=command, wait=30.0)
        _readable(folder)
        req.decided_by, req.decided_at, req.status = actor, now, PublishState.APPROVED
        req.changes = made or None
        pub = publication(req, entry, store=target, snapshot=snapshot, published=now)
        pub["datacite"] = datacite_json(pub)
        datacite_xml(pub)  # the exports must build: checked before anything is kept
        from ..atomic import atomic_output

        with atomic_output(folder / "publication.json") as tmp:
            tmp.write_text(json.dumps(pub, indent=1, ensure_ascii=False) + "\n",
                           encoding="utf-8")
        os.chmod(folder / "publication.json", 0o644)
        catalog_path.parent.mkdir(parents=True, exist_ok=True)
        defaults = {"title": req.title, "provider": PUBLISHER, "license": req.licence,
                    "citation": how_to_cite(pub),
                    "tags": sorted({*entry.metadata.tags, "published", pid}),
                    "classification": {
                        "category": req.category or "scientific", "grade": "general",
                        "release": "open", "owner": f"project {req.allocation_id}",
                        "rationale": f"published by request {req.id} ({pid}), approved by "
                                     f"{actor}"}}
        with store_lock(catalog_path, command=command, wait=30.0):
            register_store(catalog_path, name, target, defaults=defaults,
                           description=f"{name}: {req.title} (published, {pid})")
        os.chmod(catalog_path, 0o644)
    except BaseException as exc:
        from ..atomic import remove_path

        remove_path(folder)
        if isinstance(exc, DataError):
            raise UsageError(f"publish request {req.id} cannot be approved: "
                             f"{str(exc).splitlines()[0]}") from None
        raise
    finally:
        drop_shadow(shadow)
    session.flush()
    _audit(session, req, actor, "approve", {"pid": pid, "name": name, "tag": req.tag,
                                            "changes": made or None, "store": str(target)})
    return req


# --------------------------------------------------------------------------- DataCite


def read_publication(name: str, data_dir: Path | None = None) -> dict[str, Any] | None:
    """The publication record of published entry *name*, or None."""
    if not _NAME.fullmatch(str(name)):
        return None
    path = published_dir(data_dir) / name / "publication.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _person(author: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": author["name"], "nameType": "Personal",
                           "affiliation": [{"name": author["affiliation"]}]}
    if "," in author["name"]:
        family, given = (p.strip() for p in author["name"].split(",", 1))
        out.update(familyName=family, givenName=given)
    if author.get("orcid"):
        out["nameIdentifiers"] = [{"nameIdentifier": f"https://orcid.org/{author['orcid']}",
                                   "nameIdentifierScheme": "ORCID",
                                   "schemeUri": "https://orcid.org"}]
    return out


def datacite_json(pub: dict[str, Any], url: str | None = None) -> dict[str, Any]:
    """DataCite Metadata Schema 4.5 of a publication, as the ``datacite`` package's JSON
    (validated against its JSON schema).

    The platform's identifier is an ``alternateIdentifier`` of type ``oceandata PID``; the
    ``doi`` is set once the centre registers one with DataCite.

    Raises
    ------
    DataError
        The metadata do not validate (a bug: the message names the first problem).
    """
    from datacite import schema45

    data: dict[str, Any] = {
        "schemaVersion": "http://datacite.org/schema/kernel-4",
        "creators": [_person(a) for a in pub["authors"]],
        "titles": [{"title": pub["title"]}],
        "publisher": {"name": pub["publisher"]},
        "publicationYear": str(pub["year"]),
        "types": {"resourceTypeGeneral": "Dataset", "resourceType": "Gridded ocean data"},
        "alternateIdentifiers": [{"alternateIdentifier": pub["pid"],
                                  "alternateIdentifierType": "oceandata PID"}],
        "dates": [{"date": pub["published"][:10], "dateType": "Issued"}],
        "version": pub["store_snapshot"],
        "rightsList": [{"rights": pub["licence"], "rightsIdentifier": pub["licence"],
                        "rightsIdentifierScheme": "SPDX",
                        "schemeUri": "https://spdx.org/licenses/"}],
        "descriptions": [{"description": pub["description"], "descriptionType": "Abstract"},
                         {"description": pub["citation"], "descriptionType": "Other"}],
        "formats": ["application/vnd+zarr; version=3 (Icechunk)"],
        "subjects": [{"subject": v} for v in pub.get("variables", [])][:50],
        "language": "en",
    }
    if pub.get("doi"):
        data["doi"] = pub["doi"]
    if url:
        data["url"] = url
    tr = pub.get("time_range") or {}
    if tr.get("start") and tr.get("end"):
        data["dates"].append({"date": f"{tr['start'][:10]}/{tr['end'][:10]}",
                              "dateType": "Collected"})
    if pub.get("bbox"):
        w, s, e, n = pub["bbox"]
        data["geoLocations"] = [{"geoLocationBox": {
            "westBoundLongitude": w, "eastBoundLongitude": e,
            "southBoundLatitude": s, "northBoundLatitude": n}}]
    try:
        schema45.validate(data)
    except Exception as exc:  # jsonschema's ValidationError
        raise DataError(f"DataCite metadata of {pub['pid']} do not validate: "
                        f"{str(exc).splitlines()[0]}") from None
    return data


def datacite_xml(pub: dict[str, Any], url: str | None = None) -> str:
    """DataCite Metadata Schema 4.5 XML of a publication (the ``datacite`` package's
    mapping of :func:`datacite_json`)."""
    from datacite import schema45

    data = datacite_json(pub, url)
    try:
        return schema45.tostring(data)
    except ValueError as exc:  # lxml: a character XML cannot carry
        raise DataError(f"DataCite XML of {pub['pid']} cannot be written: "
                        f"{str(exc).splitlines()[0]}") from None
