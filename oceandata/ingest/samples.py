"""The catalog ``make up`` serves: every gridded sample entry ingested as a versioned store.

:func:`build_sample_stores` ingests the files of each gridded entry of the sample catalog
into ``<data dir>/stores/<name>.icechunk`` (idempotent: a store that already holds
those files is left as it is), registers it under the same name in
``<data dir>/catalogs/stores.yaml`` with the sample entry's provider, licence and
citation and with variables and extents read from the store, and writes a root catalog
``<data dir>/catalogs/ocean.yaml`` that nests the stores with the sample catalog's
non-gridded sub-catalogs (site series, CF-DSG, tide gauge) and the published entries
(``<data dir>/catalogs/published.yaml``, written by the allocations service when an
administrator approves a publish request: :mod:`oceandata.alloc.publishing`; an empty
one is made when missing, an existing one is never replaced). ``make up`` points
``OCEANDATA_CATALOG`` at that root, so the names a user sees are the familiar ones,
served from versioned stores, and notebooks' ``open_catalog()`` and a (re)started data
service see every published entry.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from ..catalog.core import Catalog, open_catalog
from ..config import get_settings

__all__ = ["PUBLISHED", "build_sample_stores", "ensure_published_catalog"]

#: File name of the published entries' catalog in ``<data dir>/catalogs``
#: (:func:`oceandata.alloc.publishing.published_catalog_path`)
PUBLISHED = "published.yaml"

#: Metadata that the sample entry knows and the data do not say.
_CARRIED = ("title", "description", "provider", "license", "citation", "doi", "tags",
            "classification", "access")


def build_sample_stores(data_dir: str | os.PathLike[str] | None = None, *,
                        names: Sequence[str] | None = None, check: bool = True,
                        echo: Callable[[str], None] | None = None) -> Path:
    """Ingest and register the gridded sample entries; return the root catalog path.

    Parameters
    ----------
    data_dir
        Where stores and catalogs go (default: ``OCEANDATA_DATA_DIR``).
    names
        Only these entries (default: every gridded entry, and ``argo_profiles``: all
        floats of the sample GDAC mirror in one profile store).
    check
        Run the compliance checks (reports are kept beside each store).
    echo
        Called with one line per entry.
    """
    from .pipeline import ingest
    from .register import register_store

    settings = get_settings()
    base = Path(data_dir) if data_dir is not None else settings.data_dir
    source_root = settings.catalog
    sample = open_catalog(source_root)
    gridded = _gridded(sample)
    chosen = list(gridded.entries) if names is None else \
        [n for n in names if n != "argo_profiles"]
    stores_dir, catalogs_dir = base / "stores", base / "catalogs"
    stores_dir.mkdir(parents=True, exist_ok=True)
    catalogs_dir.mkdir(parents=True, exist_ok=True)
    stores_catalog = catalogs_dir / "stores.yaml"
    for name in chosen:
        entry = gridded.entry(name)
        store = stores_dir / f"{name}.icechunk"
        result = ingest(entry.paths(), store, name=name, chunks="auto", check=check,
                        source_args={"xarray_kwargs": entry.args.get("xarray_kwargs") or {}},
                        fix_attrs=entry.metadata.fix_attrs,
                        command=f"oceandata store build-samples ({name})")
        known = entry.metadata.model_dump(mode="json", exclude_none=True)
        register_store(stores_catalog, name, store, description=entry.description,
                       defaults={k: known[k] for k in _CARRIED if k in known})
        if echo is not None:
            echo(f"{name}: {result.message}")
    if names is None or "argo_profiles" in names:
        _argo_store(stores_dir / "argo.icechunk", stores_catalog, echo)
    ensure_published_catalog(catalogs_dir / PUBLISHED)
    root = catalogs_dir / "ocean.yaml"
    others = {child: sub for child, sub in sample.children.items() if sub is not gridded}
    doc = {"metadata": {"version": 1, "title": "oceandata: versioned stores and sample data"},
           "sources": {
               "stores": {"driver": "intake.catalog.local.YAMLFileCatalog",
                          "description": "Gridded data served from versioned stores",
                          "args": {"path": "{{ CATALOG_DIR }}/stores.yaml"}},
               "published": {"driver": "intake.catalog.local.YAMLFileCatalog",
                             "description": "Published entries of partner projects",
                             "args": {"path": "{{ CATALOG_DIR }}/" + PUBLISHED}},
               **{child: {"driver": "intake.catalog.local.YAMLFileCatalog",
                          "description": sub.metadata.get("title", child),
                          "args": {"path": str(sub.path)}}
                  for child, sub in others.items()}}}
    from ..atomic import atomic_output

    with atomic_output(root) as tmp:  # removed on failure, SIGINT or SIGTERM
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    open_catalog(root)  # fails loudly (file and line) if anything is inconsistent
    return root


def ensure_published_catalog(path: Path) -> bool:
    """Make an empty catalog of published entries at *path* unless one exists.

    The file is written whole under a temporary name and linked into place, which never
    replaces a file: a catalog the allocations service wrote (even at the same moment)
    is kept as it is. Returns whether it was made.
    """
    import tempfile

    doc = {"metadata": {"version": 1, "title": "Published entries"}, "sources": {}}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(yaml.safe_dump(doc, sort_keys=False))
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


def _argo_store(store: Path, catalog: Path, echo: Callable[[str], None] | None) -> None:
    """Every float of the sample GDAC mirror in one profile store, as ``argo_profiles``."""
    from ..argo.index import default_mirror
    from ..argo.store import ARGO_DEFAULTS, ingest_floats
    from .register import register_store

    floats = sorted({int(p.parent.name) for p in default_mirror().glob("dac/*/*/*_prof.nc")})
    added, _ = ingest_floats(floats, store, mode="standard",
                             command="oceandata store build-samples (argo)")
    register_store(catalog, "argo_profiles", store, defaults=ARGO_DEFAULTS,
                   description="Argo profiles of the sample GDAC mirror, standard mode")
    if echo is not None:
        echo(f"argo_profiles: {added} new profiles from {len(floats)} floats")


def _gridded(cat: Catalog) -> Catalog:
    """The sub-catalog holding the regular and curvilinear grids."""
    for sub in cat.children.values():
        if sub.entries and all(e.metadata.grid in ("regular", "curvilinear")
                               for e in sub.entries.values()):
            return sub
    raise LookupError(f"{cat.path} has no sub-catalog of gridded entries")  # pragma: no cover
