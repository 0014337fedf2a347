"""Catalogs: nested intake-v1 YAML files of ocean datasets, searchable and lazily opened.

The YAML is intake's own format, so ``intake.open_catalog`` with intake-xarray reads
the same files. oceandata reads them itself to validate each entry's metadata
(:mod:`oceandata.catalog.schema`), to report errors with file and line, to search, to
enforce access levels, and to open entries through :mod:`oceandata.catalog.drivers`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xarray as xr
import yaml
from pydantic import ValidationError

from ..config import get_settings
from ..errors import CatalogError, DatasetNotFound, NotAuthorized, UsageError, suggest
from ..times import Period, period
from .drivers import open_source
from .schema import BBox, CatalogFile, EntryMetadata, Source

_TEMPLATE = re.compile(r"\{\{\s*CATALOG_DIR\s*\}\}")
_ENV_TEMPLATE = re.compile(r"\{\{\s*env\(\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)['\"]?\s*\)\s*\}\}")


def _render(value: Any, catalog_dir: Path) -> Any:
    """Expand intake's ``{{ CATALOG_DIR }}`` and ``{{ env(NAME) }}`` templates in *value*."""
    if isinstance(value, str):
        value = _TEMPLATE.sub(catalog_dir.as_posix(), value)
        return _ENV_TEMPLATE.sub(lambda m: os.environ.get(m.group(1), ""), value)
    if isinstance(value, dict):
        return {k: _render(v, catalog_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, catalog_dir) for v in value]
    return value


#: libyaml's safe loader when PyYAML was built with it (10x faster), else the Python one
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(text: str) -> tuple[Any, dict[str, int]]:
    """Parse *text* once: the data, and each ``sources:`` key's 1-based line number.

    Raises
    ------
    yaml.YAMLError
        For malformed YAML (with ``problem_mark``).
    """
    loader = _LOADER(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    lines: dict[str, int] = {}
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "sources" and isinstance(value, yaml.MappingNode):
                for skey, _ in value.value:
                    lines[str(skey.value)] = skey.start_mark.line + 1
    return data, lines


def _format_validation(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{where}: {err['msg']}{more}"


def current_groups() -> set[str]:
    """Groups of the current user, as granted by the platform (``OCEANDATA_GROUPS``).

    In the hub the spawner sets this from the user's JupyterHub groups; the storage
    layer enforces the same grant, this check gives a clear message early.
    """
    raw = os.environ.get("OCEANDATA_GROUPS", "")
    return {g.strip() for g in raw.split(",") if g.strip()}


def allocation_service_url() -> str | None:
    """The allocations service's base URL, without a final ``/`` (None when unknown).

    ``OCEANDATA_ALLOC_URL`` when set; else ``<hub>/services/allocations`` where ``<hub>``
    is the hub's public host (``JUPYTERHUB_HOST`` with ``JUPYTERHUB_BASE_URL``) or, when
    JupyterHub gives none, ``JUPYTERHUB_API_URL`` without its ``/hub/api``.
    """
    url = os.environ.get("OCEANDATA_ALLOC_URL", "").strip()
    if url:
        return url.rstrip("/")
    host = os.environ.get("JUPYTERHUB_HOST", "").strip().rstrip("/")
    base_url = "/" + os.environ.get("JUPYTERHUB_BASE_URL", "/").strip("/")
    if host.startswith(("http://", "https://")):
        return f"{host}{base_url.rstrip('/')}/services/allocations"
    api = os.environ.get("JUPYTERHUB_API_URL", "").strip().rstrip("/")
    if not api.endswith("/hub/api"):
        return None
    return f"{api[: -len('/hub/api')]}/services/allocations"


def current_user() -> str:
    """The user of this process: ``JUPYTERHUB_USER`` in the hub, else the Unix account."""
    import getpass

    return os.environ.get("JUPYTERHUB_USER", "").strip() or getpass.getuser()


def report_access(name: str, version: str | None = None) -> None:
    """Tell the audit trail that this process's user opened entry *name*.

    In the hub, the allocations service records it (``POST api/access-log`` with the
    user's JupyterHub token, so the record names the token's owner, not a claim of this
    process); elsewhere (an operator's shell) the record is written directly. Never
    raises: an unreachable service costs the user nothing but a log line.
    """
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "").strip()
    url = allocation_service_url()
    if token and url:
        import logging

        import requests

        try:
            requests.post(f"{url}/api/access-log", json={"dataset": name, "version": version},
                          headers={"Authorization": f"token {token}"},
                          timeout=ALLOC_TIMEOUT, allow_redirects=False)
        except requests.RequestException as exc:
            logging.getLogger(__name__).warning("access to %s not recorded: %s", name,
                                                type(exc).__name__)
        return
    import socket

    from ..governance import audit

    audit.record("data.access", actor=current_user(), target=f"dataset:{name}",
                 source=f"cli@{socket.gethostname()}",
                 detail={"version": version} if version else None)


#: seconds the allocations service may take to answer an access check
ALLOC_TIMEOUT = 10.0


def _ask_me() -> dict[str, Any] | None:
    """The allocations service's ``GET api/me`` for this process's user (None without a
    token or service, or when the service cannot be reached or refuses the token)."""
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "").strip() or \
        os.environ.get("OCEANDATA_TOKEN", "").strip()
    url = allocation_service_url()
    if not token or not url:
        return None
    import requests

    try:
        resp = requests.get(f"{url}/api/me", headers={"Authorization": f"token {token}"},
                            timeout=ALLOC_TIMEOUT, allow_redirects=False)
        if resp.status_code != 200:
            return None
        body = resp.json()
    except (requests.RequestException, ValueError):
        return None
    return body if isinstance(body, dict) else None


def allocation_datasets() -> set[str]:
    """Datasets granted by the current user's projects (approved allocations they lead or
    belong to) in force today.

    Only in the hub: with a JupyterHub token (``JUPYTERHUB_API_TOKEN``, set in every
    server) the allocations service's ``GET api/me`` is asked. No token, no service
    URL, a service that cannot be reached or refuses the token: no datasets (the group
    check alone decides).
    """
    body = _ask_me()
    # every project the user is in shares its grants (docs/projects.md)
    names = body.get("datasets") if body is not None else None
    if not isinstance(names, list):
        return set()
    return {str(n) for n in names}


def user_projects(me: dict[str, Any] | None = None) -> dict[int, Path]:
    """The current user's projects in force today: id → workspace (from ``GET api/me``,
    as :func:`allocation_datasets`); empty outside the hub or when the service does not
    answer."""
    body = _ask_me() if me is None else me
    found: dict[int, Path] = {}
    for item in (body or {}).get("projects") or ():
        try:
            found[int(item["id"])] = Path(str(item["workspace"]))
        except (KeyError, TypeError, ValueError):
            continue
    return found


@dataclass
class Entry:
    """One dataset of a catalog.

    Attributes
    ----------
    name
        Entry name, unique across the catalog tree.
    driver
        ``netcdf``, ``zarr``, ``opendap`` or ``csv``.
    args
        The driver arguments, templates expanded.
    metadata
        Validated metadata.
    description
        One line from the YAML.
    source_file, line
        Where the entry is defined.
    """

    name: str
    driver: str
    args: dict[str, Any]
    metadata: EntryMetadata
    description: str | None
    source_file: Path
    line: int | None = None
    #: the root catalog file the entry was opened through (its negative list is beside it)
    root: Path | None = field(default=None, repr=False, compare=False)
    #: the project whose catalog holds the entry (None: the platform's catalog); its
    #: members only may see it (:mod:`oceandata.catalog.projects`)
    project: int | None = field(default=None, compare=False)
    #: that project's workspace (the entry's stores must lie inside it)
    workspace: Path | None = field(default=None, repr=False, compare=False)

    @property
    def where(self) -> str:
        """``file:line`` of the definition."""
        return f"{self.source_file}:{self.line}" if self.line else str(self.source_file)

    def paths(self) -> list[str]:
        """Local paths or URLs that back the entry, fetching sample files first."""
        if self.metadata.sample:
            from .. import sample_data

            found: list[str] = []
            for pattern in self.metadata.sample:
                found.extend(str(p) for p in sample_data.fetch_matching(pattern))
            return found
        urlpath = self.args.get("urlpath")
        if urlpath is None:
            raise CatalogError(f"{self.where}: entry {self.name!r} has no args.urlpath")
        urls = [urlpath] if isinstance(urlpath, str) else list(urlpath)
        out: list[str] = []
        for url in urls:
            if "://" not in url and any(ch in url for ch in "*?["):
                out.extend(sorted(glob.glob(url)))  # relative to the working folder
            else:
                out.append(url)
        return out

    def check_access(self, groups: set[str] | None = None, *, user: str | None = None) -> None:
        """Raise :class:`NotAuthorized` unless the caller may open this entry.

        The rule is :func:`oceandata.governance.rules.decide`. Code using the library is
        a signed-in user: *user* (default ``JUPYTERHUB_USER``, else the Unix account);
        their grants are *groups* (default ``OCEANDATA_GROUPS``) and, when *groups* is not
        given, the datasets of their approved allocation in force today
        (:func:`allocation_datasets`: asked of the allocations service with the user's
        JupyterHub token). Opening an entry that is not open to everyone is recorded in
        the audit trail (through the allocations service, which knows the token's owner).
        """
        from ..governance.rules import Subject, decide

        explicit = groups is not None
        groups = current_groups() if groups is None else groups
        user = user or current_user()
        if self.project is not None:  # members of its project only: asked every time
            mine = user_projects()
            if self.project not in mine:
                raise NotAuthorized(f"dataset {self.name!r} belongs to project "
                                    f"{self.project}, and you are not one of its members")
            decision = decide(self, Subject.of(user, groups, projects=mine))
            if decision.allowed:
                report_access(self.name)
                return
        decision = decide(self, Subject.of(user, groups))
        if not decision.allowed and not explicit:
            decision = decide(self, Subject.of(user, groups, allocation_datasets()))
        if decision.allowed:
            if decision.release != "open" and not explicit:
                report_access(self.name)
            return
        grantees = ", ".join(self.metadata.access.groups) or "none"
        raise NotAuthorized(
            f"dataset {self.name!r} is restricted to groups {grantees} ({decision.reason}); "
            "an approved allocation naming the dataset also grants access: request one "
            f"with `oceandata alloc request ... --dataset {self.name}`"
        )

    def granted(self, groups: Iterable[str] = (), datasets: Iterable[str] = (), *,
                user: str | None = None, negative: Any = None,
                projects: Iterable[int] = ()) -> bool:
        """The platform's one access rule: may a caller with these grants open this entry?

        *user* is the caller's name (None for an anonymous caller of the open-data
        service). The decision is :func:`oceandata.governance.rules.decide`'s: the
        notebooks (:meth:`check_access`), the open-data service
        (:mod:`oceandata.dataservice.access`), STAC and the portal all ask it.
        *negative* is the negative list in force when the caller already holds it
        (:class:`oceandata.governance.rules.NegativeLists`); default: read it.
        *projects* are the ids of the caller's projects in force (a project entry exists
        for its members only).
        """
        from ..governance.rules import Subject, decide

        return decide(self, Subject.of(user, groups, datasets, projects),
                      negative=negative).allowed

    def release(self) -> str:
        """The entry's effective release today: ``open``, ``registered`` or ``restricted``
        (:func:`oceandata.governance.rules.effective_release`)."""
        from ..governance.rules import effective_release

        return effective_release(self)[0]

    def to_dask(self, *, chunks: Any = None, version: str | None = None,
                layout: str | None = None) -> xr.Dataset:
        """Open the entry as a lazy, CF-decoded, dask-backed :class:`xarray.Dataset`.

        Parameters
        ----------
        chunks
            Dask chunks; default the entry's ``args.chunks``, else the setting
            ``OCEANDATA_CHUNKS`` (``auto``).
        version
            For versioned stores: a tag or snapshot id; default the entry's pinned
            ``args.version``, else the newest commit.
        layout
            For stores registered with several chunk layouts: which one (see
            :attr:`layouts`); default the entry's own ``urlpath``.
        """
        self.check_access()
        return self._open(chunks=chunks, version=version, layout=layout)

    @property
    def layouts(self) -> dict[str, str]:
        """Chunk layouts of a store entry: name → path (``args.layouts``), if any."""
        return dict(self.args.get("layouts") or {})

    def _open(self, *, chunks: Any = None, version: str | None = None,
              layout: str | None = None, shadows: list[Path] | None = None,
              opening: Any = None) -> xr.Dataset:
        """Open without the access check (operators' validation, which reads no values).

        Parameters
        ----------
        shadows
            For a project store read as root: the shadows the dataset reads
            (:class:`oceandata.catalog.shadows.ShadowPool`) are appended here, and the
            caller releases them (``SHADOWS.release``) once it drops the dataset; when
            the open fails they are released already. Default: held for the life of the
            process.
        opening
            A context manager held while the data are opened (not while a project store
            is sealed): the data service's lock of netCDF-C.
        """
        if chunks is None:
            chunks = self.args["chunks"] if "chunks" in self.args else \
                get_settings().dask_chunks()
        args = {**self.args, **(self.metadata.table or {})}
        if version is not None:
            if self.driver != "icechunk":
                raise UsageError(f"dataset {self.name!r} is not a versioned store (driver "
                                 f"{self.driver}); version= applies to icechunk entries")
            args["version"] = version
        if layout is not None and layout not in self.layouts:
            raise UsageError(f"dataset {self.name!r} has no layout {layout!r}; layouts: "
                             f"{', '.join(self.layouts) or 'none'}")
        if self.driver == "netcdf" and layout is None:
            # a many-file entry opens from its reference index when that is current
            from .references import load_index

            index = load_index(self)
            if index.usable:
                with opening if opening is not None else contextlib.nullcontext():
                    ds = open_source(self.driver, [str(index.path)], args, chunks=chunks,
                                     fix_attrs=self.metadata.fix_attrs, references=index)
                ds.attrs.setdefault("oceandata_entry", self.name)
                return ds
        paths = self.paths() if layout is None else [self.layouts[layout]]
        held: list[Path] = []
        try:
            if self.project is not None and self.workspace is not None:
                # written by members: no link may lead a reader out of the workspace, and
                # a root reader (the data service) seals the store first, so what it
                # opened cannot be replaced while it reads (projects.seal_store); as root
                # it reads the store's shadow, which no member can change, one shared by
                # every open of the unchanged store (oceandata.catalog.shadows)
                from .projects import sealed_store
                from .shadows import SHADOWS

                stores = paths
                if os.geteuid() == 0:
                    if version is not None and self.driver == "icechunk":
                        from .shadows import check_version

                        check_version(stores[0], self.workspace, version)  # before a walk
                    for p in stores:
                        held.append(SHADOWS.acquire(p, self.workspace))
                    paths = [str(p) for p in held]
                else:
                    paths = [str(sealed_store(p, self.workspace)) for p in stores]
            with opening if opening is not None else contextlib.nullcontext():
                ds = open_source(self.driver, paths, args, chunks=chunks,
                                 fix_attrs=self.metadata.fix_attrs)
            if self.project is not None and self.workspace is not None:
                from .projects import verify_snapshot

                verify_snapshot(os.path.realpath(stores[0]), self.workspace,
                                ds.attrs.get("oceandata_snapshot"))
        except BaseException:
            from .shadows import SHADOWS

            for p in held:
                SHADOWS.release(p)
            raise
        if shadows is not None:
            shadows.extend(held)
        ds.attrs.setdefault("oceandata_entry", self.name)
        if layout is not None:
            ds.attrs["oceandata_layout"] = layout
        return ds

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description: name, driver, where defined, and the metadata."""
        return {
            "name": self.name,
            "driver": self.driver,
            "description": self.description,
            "defined_in": self.where,
            **({"project": self.project} if self.project is not None else {}),
            "args": self.args,
            "metadata": self.metadata.model_dump(mode="json", exclude_none=True),
        }

    # -- search predicates -------------------------------------------------------------
    def matches_text(self, text: str) -> bool:
        """Case-insensitive match of every word of *text* in names, titles, tags, variables."""
        md = self.metadata
        hay = " ".join(
            [self.name, md.title, md.description or "", self.description or "", md.provider,
             " ".join(md.tags)]
            + [" ".join(filter(None, [v.name, v.standard_name, v.long_name]))
               for v in md.variables]
        ).lower()
        return all(word in hay for word in text.lower().split())

    def matches_standard_name(self, standard_name: str) -> bool:
        """Whether a variable has this CF standard name (``*`` wildcards allowed)."""
        return any(v.standard_name and fnmatch.fnmatch(v.standard_name, standard_name)
                   for v in self.metadata.variables)

    def intersects_bbox(self, bbox: Sequence[float]) -> bool:
        """Whether the entry's bbox overlaps *bbox* (any longitude convention, dateline-aware)."""
        if self.metadata.bbox is None:
            return False
        return _boxes_overlap(self.metadata.bbox.as_tuple(), tuple(bbox))

    def overlaps_time(self, start: Any, end: Any) -> bool:
        """Whether the entry's time range overlaps ``[start, end]`` (open ends allowed).

        Partial dates cover their whole period, as in :func:`oceandata.subset`: ``2000``
        is the whole year. Entries with no time range (climatologies) never match.
        """
        tr = self.metadata.time_range
        if tr is None or (tr.start is None and tr.end is None):
            return False
        ours = Period.checked((tr.start, tr.end), what=f"{self.where}: time_range")
        wanted = period((start, end), what="time")
        return wanted.overlaps(ours.start_key, ours.end_key)


def _lon_intervals(west: float, east: float) -> list[tuple[float, float]]:
    """Split a longitude span into intervals on [0, 360)."""
    if east - west >= 360 or (west == -180 and east == 180):
        return [(0.0, 360.0)]
    w, e = west % 360, east % 360
    if (east - west) % 360 == 0 and east != west:
        return [(0.0, 360.0)]
    if w <= e:
        return [(w, e)]
    return [(w, 360.0), (0.0, e)]


def _boxes_overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    if a[1] > b[3] or b[1] > a[3]:
        return False
    return any(lo1 <= hi2 and lo2 <= hi1
               for lo1, hi1 in _lon_intervals(a[0], a[2])
               for lo2, hi2 in _lon_intervals(b[0], b[2]))


@dataclass
class Catalog:
    """A catalog tree: its entries (flattened across sub-catalogs) and its sub-catalogs.

    Use :func:`open_catalog` to build one. ``cat["name"]`` returns an :class:`Entry`
    (or a sub-catalog by name); iterating yields entry names.
    """

    name: str
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    entries: dict[str, Entry] = field(default_factory=dict)
    children: dict[str, Catalog] = field(default_factory=dict)

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries or name in self.children

    def __getitem__(self, name: str) -> Entry | Catalog:
        if name in self.entries:
            return self.entries[name]
        if name in self.children:
            return self.children[name]
        raise DatasetNotFound(
            f"no dataset {name!r} in catalog {self.path}.{suggest(name, self.entries)} "
            "Run `oceandata catalog list` to see every name."
        )

    def entry(self, name: str) -> Entry:
        """Return the data entry *name* (never a sub-catalog)."""
        item = self[name]
        if not isinstance(item, Entry):
            raise DatasetNotFound(f"{name!r} is a sub-catalog, not a dataset; its datasets: "
                                  f"{', '.join(item.entries)}")
        return item

    def search(self, text: str | None = None, *, standard_name: str | None = None,
               bbox: Sequence[float] | None = None,
               time: Any = None) -> Catalog:
        """Return a catalog of the entries matching every given criterion.

        Parameters
        ----------
        text
            Words that must all appear in the name, title, description, provider, tags or
            variable names (case-insensitive).
        standard_name
            CF standard name of a variable; ``*`` wildcards allowed.
        bbox
            ``(west, south, east, north)`` that the entry's extent must overlap; west >
            east crosses the antimeridian.
        time
            A period that the entry's time range must overlap, in any form of
            :func:`oceandata.times.period` (``(1997, 1998)``, ``"1997-01/1998-12"``,
            ``("1997-01-01", None)``, datetimes); either end may be open.

        Examples
        --------
        >>> cat = open_catalog()  # doctest: +SKIP
        >>> list(cat.search(standard_name="sea_surface_temperature", bbox=(170, -10, -170, 10)))
        """
        if bbox is not None:
            bbox = BBox.parse(bbox).as_tuple()
        wanted = None if time is None else period(time, what="time")
        found = {}
        for name, entry in self.entries.items():
            if text and not entry.matches_text(text):
                continue
            if standard_name and not entry.matches_standard_name(standard_name):
                continue
            if bbox is not None and not entry.intersects_bbox(bbox):
                continue
            if wanted is not None and not entry.overlaps_time(wanted.start, wanted.end):
                continue
            found[name] = entry
        return Catalog(name=f"{self.name} (search)", path=self.path, metadata=self.metadata,
                       entries=found)

    def to_dask(self, name: str, **kwargs: Any) -> xr.Dataset:
        """Shortcut for ``cat.entry(name).to_dask()``."""
        return self.entry(name).to_dask(**kwargs)


def _read_catalog_file(path: Path) -> tuple[CatalogFile, dict[str, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogError(f"catalog file {path} does not exist; set OCEANDATA_CATALOG or give "
                           "a path to a catalog YAML") from None
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror}") from exc
    try:
        raw, lines = _load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CatalogError(f"{path}{line}: malformed YAML: {problem}") from None
    if not isinstance(raw, dict) or "sources" not in raw:
        raise CatalogError(f"{path}: not an intake catalog (a mapping with 'sources:' expected)")
    try:
        return CatalogFile.model_validate(raw), lines
    except ValidationError as exc:
        loc = exc.errors()[0]["loc"]
        line = f":{lines[str(loc[1])]}" if len(loc) > 1 and str(loc[1]) in lines else ""
        raise CatalogError(f"{path}{line}: {_format_validation(exc)}") from None


def _build(path: Path, seen: dict[str, Entry], stack: tuple[Path, ...]) -> Catalog:
    path = path.resolve()
    if path in stack:
        raise CatalogError(f"{path}: catalog includes itself through "
                           f"{' -> '.join(p.name for p in stack)}")
    parsed, lines = _read_catalog_file(path)
    catalog_dir = path.parent
    cat = Catalog(name=parsed.name or path.stem, path=path, metadata=parsed.metadata)
    for name, source in parsed.sources.items():
        where = f"{path}:{lines.get(name, '?')}"
        if source.is_catalog:
            sub_path = _render(source.args.get("path", ""), catalog_dir)
            if not sub_path:
                raise CatalogError(f"{where}: sub-catalog {name!r} needs args.path")
            child = _build(Path(sub_path), seen, (*stack, path))
            child.name = name
            cat.children[name] = child
            cat.entries.update(child.entries)
            continue
        cat.entries[name] = _entry(name, source, path, lines.get(name), seen)
    return cat


def _entry(name: str, source: Source, path: Path, line: int | None,
           seen: dict[str, Entry]) -> Entry:
    where = f"{path}:{line}" if line else str(path)
    if name in seen:
        raise CatalogError(f"{where}: entry name {name!r} is already defined at "
                           f"{seen[name].where}; names must be unique across the catalog tree")
    try:
        metadata = EntryMetadata.model_validate(source.metadata)
    except ValidationError as exc:
        raise CatalogError(f"{where}: entry {name!r} metadata.{_format_validation(exc)}") from None
    entry = Entry(name=name, driver=source.driver, args=_render(source.args, path.parent),
                  metadata=metadata, description=source.description, source_file=path, line=line)
    seen[name] = entry
    return entry


def open_catalog(path: str | os.PathLike[str] | None = None, *,
                 projects: bool | None = None) -> Catalog:
    """Open a catalog tree.

    Parameters
    ----------
    path
        A catalog YAML file; default the platform's root catalog (setting
        ``OCEANDATA_CATALOG``, ``catalogs/ocean.yaml`` in a source checkout).
    projects
        Merge the catalogs of the projects the user belongs to (their entries are named
        ``p<id>.<name>`` and carry ``entry.project``; :mod:`oceandata.catalog.projects`).
        Default: merged into the platform's root catalog (no *path*) when the process
        has a JupyterHub token and the allocations service answers (in the hub).

    Returns
    -------
    Catalog
        Entries of the file and of every nested sub-catalog.

    Raises
    ------
    CatalogError
        Malformed YAML (with file and line), invalid metadata, duplicate names.

    Examples
    --------
    >>> import oceandata
    >>> cat = oceandata.open_catalog()  # doctest: +SKIP
    >>> ds = cat["cobe_sst2"].to_dask()  # doctest: +SKIP
    >>> ds = cat["p12.sst"].to_dask()  # a store of project 12, for its members  # doctest: +SKIP
    """
    target = Path(path) if path is not None else get_settings().catalog
    if target.is_dir():
        target = target / "ocean.yaml"
    if not target.exists() and path is None:
        raise UsageError(f"the default catalog {target} does not exist; set OCEANDATA_CATALOG")
    cat = _build(target, {}, ())
    for entry in cat.entries.values():  # the negative list beside this root applies
        entry.root = cat.path
    if projects or (projects is None and path is None):
        mine = user_projects()
        if mine:
            from .projects import merge_projects

            merge_projects(cat, sorted(mine.items()))
    return cat
