"""Reference indexes: a many-file NetCDF entry opened from one small JSON, not every header.

A catalog entry made of many NetCDF files (``cobe_sst2``: 60 yearly files) used to be
opened with :func:`xarray.open_mfdataset`, which opens every file and reads its header
and coordinates: about 10-40 ms a file before any value is read, and every file of the
entry whatever period is asked for. A reference index replaces that:

- :func:`build_index` (run by ``oceandata catalog index`` and by ``oceandata catalog
  validate``, the registration step of ``make up``) scans each file once with kerchunk
  (:class:`kerchunk.hdf.SingleHdf5ToZarr` for NetCDF-4/HDF5,
  :class:`kerchunk.netCDF3.NetCDF3ToZarr` for classic files) and combines them with
  :class:`kerchunk.combine.MultiZarrToZarr` along the entry's concatenation dimension.
  The result maps every chunk of every variable to ``(file, offset, length)``;
  coordinates and small arrays are stored inline, so opening and decoding the time axis
  reads no file at all. The combined dataset is checked against
  :func:`xarray.open_mfdataset` of the same files (dimensions, variables, coordinates,
  attributes, the first and last step of each data variable) before the index is
  written, under a temporary name then renamed, to
  ``<OCEANDATA_DATA_DIR>/references/<entry>-<key>.json`` (*key*: a hash of the entry's
  definition, so an entry defined otherwise never reads an index built for another).
- :func:`load_index` reads it back when the entry is opened, and uses it only if it is
  still true: same index format, same entry definition (driver and arguments), the same
  list of files as the entry resolves to now, and for every file the size and
  modification time recorded at build time (and, for sample files, the registry's
  sha256 that the build verified). Anything else is *stale*: a warning is logged naming
  the first difference and the entry is opened from its files as before, so a stale
  index never yields wrong values. A missing index is not an error either.
- :func:`open_references` opens the index as a lazy Zarr dataset
  (:class:`fsspec.implementations.reference.ReferenceFileSystem` under
  :class:`zarr.storage.FsspecStore`): a chunk is read from its file only when dask
  computes it, so a time subset opens only the files of that period.

The access check of :meth:`oceandata.catalog.Entry.to_dask` runs before any of this;
the index changes how an entry is read, never who may read it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xarray as xr

from ..errors import DataError

if TYPE_CHECKING:
    from .core import Entry

__all__ = ["INDEX_FORMAT", "IndexResult", "IndexStatus", "build_index", "build_indexes",
           "index_path", "indexable", "load_index", "open_references"]

log = logging.getLogger(__name__)

#: Version of the index file layout; an index of another version is stale.
INDEX_FORMAT = 2

#: Arrays (and chunks) up to this many bytes are stored in the index itself, so the
#: coordinates of an entry are read without opening a data file.
INLINE_BYTES = 16384

#: Arguments that do not change what the files hold (chunking is chosen at open time).
_OPEN_TIME_ARGS = ("chunks",)


@dataclass(frozen=True)
class IndexStatus:
    """What :func:`load_index` found for an entry.

    Attributes
    ----------
    path
        Where the entry's index is (or would be).
    refs
        The kerchunk references when the index is present and current, else None.
    reason
        Why the index is not used: ``"missing"``, or the first stale detail.
    token
        sha256 of the index file: names the dataset's dask arrays.
    attr_types
        Numpy types of the files' numeric attributes, restored at open.
    """

    path: Path
    refs: dict[str, Any] | None
    reason: str | None = None
    token: str | None = None
    attr_types: dict[str, dict[str, str]] | None = None

    @property
    def usable(self) -> bool:
        """Whether the entry can be opened from this index."""
        return self.refs is not None


def indexable(entry: Entry) -> bool:
    """Whether *entry* is a NetCDF entry of several local files (the kind an index serves).

    Decided from the entry's definition only (no file is fetched): sample patterns or
    ``urlpath`` globs/lists that resolve to two or more local files.
    """
    if entry.driver != "netcdf":
        return False
    try:
        files = _expected_files(entry)
    except (DataError, OSError):
        return False
    return len(files) > 1 and not any("://" in path for path, _ in files)


def index_path(entry: Entry) -> Path:
    """``<OCEANDATA_DATA_DIR>/references/<entry>-<key>.json``.

    *key* is 16 hex digits of the sha256 of the entry's definition (driver, arguments,
    sample patterns): two catalogs defining an entry alike share its index, an entry
    defined otherwise gets another one.
    """
    from ..config import get_settings

    safe = re.sub(r"[^A-Za-z0-9._-]", "_", entry.name)  # a catalog key never leaves the folder
    name = f"{safe}-{_definition(entry)[:16]}.json"
    return get_settings().data_dir / "references" / name


def _definition(entry: Entry) -> str:
    """sha256 of what decides the index's content: the driver and the arguments.

    Sample entries are made of the registry files their patterns match, wherever the
    catalog is, so their ``urlpath`` (which names the catalog's folder) is left out.
    """
    skip = _OPEN_TIME_ARGS + (("urlpath",) if entry.metadata.sample else ())
    args = {k: v for k, v in entry.args.items() if k not in skip}
    text = json.dumps({"driver": entry.driver, "args": args,
                       "sample": list(entry.metadata.sample or [])},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _expected_files(entry: Entry) -> list[tuple[str, str | None]]:
    """The files the entry resolves to now, with the registry sha256 of sample files.

    Nothing is fetched or hashed: sample patterns are matched against the registry and
    mapped to their cache paths; ``urlpath`` globs are expanded.
    """
    if entry.metadata.sample:
        from .. import sample_data
        from ..config import get_settings

        cache = get_settings().sample_cache
        return [(str(cache / f.path), f.sha256) for pattern in entry.metadata.sample
                for f in sample_data.matching(pattern)]
    return [(path, None) for path in entry.paths()]


def _stat(path: str) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of *path*, links followed."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def load_index(entry: Entry) -> IndexStatus:
    """The entry's index if it is present and current (see the module's staleness rule).

    A stale or unreadable index is reported with a logged warning and not used; a
    missing one silently. Never raises for a bad index.
    """
    path = index_path(entry)
    try:
        with open(path, encoding="utf-8") as f:
            st = os.fstat(f.fileno())
            text = f.read()
    except FileNotFoundError:
        return IndexStatus(path, None, "missing")
    except OSError as exc:
        return _stale(entry, path, f"cannot be read ({exc.strerror})")
    if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
        # the index says which files (and where in them) the data comes from: only one
        # written by this account or root, and writable by nobody else, is trusted
        return _stale(entry, path, "is owned by another account or writable by others")
    try:
        doc = json.loads(text)
        recorded = doc["files"]
        refs = doc["refs"]
        if not _refers_only_to(refs, {r["path"] for r in recorded}):
            return _stale(entry, path, "refers to data outside the entry's files")
        if doc.get("format") != INDEX_FORMAT:
            return _stale(entry, path, f"has format {doc.get('format')!r}, "
                          f"not {INDEX_FORMAT}")
        if doc.get("definition") != _definition(entry):
            return _stale(entry, path, "was built for another definition of the entry")
        expected = _expected_files(entry)
        if [r["path"] for r in recorded] != [p for p, _ in expected]:
            return _stale(entry, path, f"lists {len(recorded)} files, the entry now "
                          f"resolves to {len(expected)} (or to other files)")
        for rec, (file, sha256) in zip(recorded, expected, strict=True):
            if sha256 is not None and rec.get("sha256") != sha256:
                return _stale(entry, path, f"recorded another sha256 for {file} than the "
                              "sample registry now expects")
            try:
                size, mtime = _stat(file)
            except OSError:
                return _stale(entry, path, f"names {file}, which is missing")
            if size != rec["size"]:
                return _stale(entry, path, f"records {file} with size {rec['size']}, the "
                              f"file now has {size} bytes")
            if mtime != rec["mtime_ns"]:
                return _stale(entry, path, f"records another modification time for {file}")
    except (ValueError, KeyError, TypeError) as exc:
        return _stale(entry, path, f"is malformed ({type(exc).__name__}: {exc})")
    return IndexStatus(path, refs, token=hashlib.sha256(text.encode()).hexdigest(),
                       attr_types=doc.get("attr_types") or {})


def _refers_only_to(refs: Any, files: set[str]) -> bool:
    """Whether every chunk reference of *refs* reads one of *files* (kerchunk version 1:
    inline values, or ``[path, offset, length]`` / ``[path]`` lists); templates and
    generated references, which could name anything, are refused."""
    if not isinstance(refs, dict) or set(refs) - {"version", "refs"}:
        return False
    for value in (refs.get("refs") or {}).values():
        if isinstance(value, list):
            if not value or value[0] not in files:
                return False
        elif not isinstance(value, str | dict):
            return False
    return True


def _stale(entry: Entry, path: Path, why: str) -> IndexStatus:
    log.warning("reference index %s of entry %r %s: opening its files directly; rebuild "
                "it with `oceandata catalog index %s`", path, entry.name, why, entry.name)
    return IndexStatus(path, None, why)


def open_references(refs: dict[str, Any], args: dict[str, Any], chunks: Any, *,
                    token: str | None = None,
                    attr_types: dict[str, dict[str, str]] | None = None) -> xr.Dataset:
    """Open kerchunk references as a lazy dataset; chunks are read from the files on demand.

    Parameters
    ----------
    refs
        Kerchunk references (version 1: ``{"version": 1, "refs": {...}}``).
    args
        The entry's arguments; ``xarray_kwargs`` other than ``engine`` apply (e.g.
        ``decode_cf``, ``decode_times``).
    chunks
        Dask chunks, as for :func:`xarray.open_dataset`.
    token
        A digest of the references (default: computed from them); it names the dask
        arrays, so that dask need not pickle the references to name them.
    attr_types
        Numpy types of the files' numeric attributes (recorded in the index), restored
        on the opened dataset (see :func:`_as_from_netcdf`).
    """
    import fsspec

    if token is None:
        text = json.dumps(refs, sort_keys=True, default=str)
        token = hashlib.sha256(text.encode()).hexdigest()
    kwargs = {k: v for k, v in (args.get("xarray_kwargs") or {}).items()
              if k not in ("engine", "lock", "format", "group")}
    kwargs.setdefault("chunks", chunks)
    # skip_instance_cache: the references are not tokenised (hashed) at every open
    fs = fsspec.filesystem("reference", fo=refs, asynchronous=True, skip_instance_cache=True)
    store = _store_class()(fs, read_only=True, path="")
    store.oceandata_token = token
    try:
        ds = xr.open_dataset(store, engine="zarr", consolidated=False, zarr_format=2, **kwargs)
    except NotImplementedError:
        if kwargs.get("chunks") != "auto":
            raise
        ds = xr.open_dataset(store, engine="zarr", consolidated=False, zarr_format=2,
                             **{**kwargs, "chunks": {}})
    return _as_from_netcdf(ds, attr_types or {})


#: CF attributes that CF decoding moves from a variable's attributes to its encoding
_ENCODED_ATTRS = ("_FillValue", "missing_value", "scale_factor", "add_offset")


def _typed(value: Any, dtype: str) -> Any:
    """*value* (from JSON) as the numpy type the NetCDF file gives it."""
    import numpy as np

    if isinstance(value, list | tuple | np.ndarray):
        return np.asarray(value, dtype=dtype)
    return np.dtype(dtype).type(value)


def _as_from_netcdf(ds: xr.Dataset, attr_types: dict[str, dict[str, str]]) -> xr.Dataset:
    """Give a dataset opened from references the attributes and encoding of the files.

    Kerchunk keeps attributes as JSON, so numeric attributes come back as Python floats
    and lists; *attr_types* (recorded from the files at build time) restores their
    numpy types (``actual_range`` as float32, as netCDF4 reads it). The zarr storage
    encoding (``filters``, ``compressors``, ``chunks``) is turned into the netCDF4
    backend's (``zlib``, ``complevel``, ``shuffle``, ``chunksizes``, ``original_shape``),
    so writing the dataset out (NetCDF or Zarr v3) behaves as it does for the files.
    """
    def fix_attrs(attrs: dict[str, Any], types: dict[str, str]) -> None:
        for key, dtype in types.items():
            if key in attrs:
                attrs[key] = _typed(attrs[key], dtype)

    fix_attrs(ds.attrs, attr_types.get("", {}))
    for name, var in ds.variables.items():
        types = attr_types.get(str(name), {})
        fix_attrs(var.attrs, types)
        enc = var.encoding
        for key in _ENCODED_ATTRS:
            if key in enc and key in types:
                enc[key] = _typed(enc[key], types[key])
        codecs = [*(enc.pop("filters", None) or ()), *(enc.pop("compressors", None) or ())]
        for key in ("compressor", "shards"):
            enc.pop(key, None)
        for codec in codecs:
            codec_id = getattr(codec, "codec_id", "")
            if codec_id == "zlib":
                enc.update(zlib=True, complevel=int(getattr(codec, "level", 4)))
            elif codec_id == "shuffle":
                enc["shuffle"] = True
        chunks = enc.pop("chunks", None)
        if chunks is not None and var.ndim:
            enc["chunksizes"] = tuple(int(c) for c in chunks)
            enc["original_shape"] = var.shape
    return ds


def _attr_types(ds: xr.Dataset) -> dict[str, dict[str, str]]:
    """Numpy type of every numeric attribute of *ds* (``""``: the global attributes)."""
    import numpy as np

    out: dict[str, dict[str, str]] = {}
    items = [("", ds.attrs), *((str(n), v.attrs) for n, v in ds.variables.items())]
    for name, attrs in items:
        types = {k: np.asarray(v).dtype.str for k, v in attrs.items()
                 if isinstance(v, np.ndarray | np.generic) and np.asarray(v).dtype.kind in "biuf"}
        if types:
            out[name] = types
    return out


_STORE_CLASS: type | None = None


def _store_class() -> type:
    """:class:`zarr.storage.FsspecStore` named for dask by its references' digest.

    xarray names a dataset's dask arrays by tokenising the store it was opened from;
    for an fsspec store dask would pickle it, references and all (about 0.2 s for 60
    files). The digest of the references is the same name, for a fraction of the cost.
    Defined on first use, so that importing this module does not import zarr.
    """
    global _STORE_CLASS
    if _STORE_CLASS is None:
        from zarr.storage import FsspecStore

        class IndexedStore(FsspecStore):
            oceandata_token: str = ""

            def __dask_tokenize__(self) -> tuple[str, str]:
                return ("oceandata.catalog.references", self.oceandata_token)

        IndexedStore.__module__ = __name__
        IndexedStore.__qualname__ = "IndexedStore"
        _STORE_CLASS = IndexedStore
    return _STORE_CLASS


def __getattr__(name: str) -> Any:
    if name == "IndexedStore":  # pickles of opened datasets name the class this way
        return _store_class()
    raise AttributeError(name)


# -- building ------------------------------------------------------------------------------

def _scan(path: str) -> dict[str, Any]:
    """Kerchunk references of one NetCDF file (HDF5-based or classic)."""
    with open(path, "rb") as fh:
        classic = fh.read(3) == b"CDF"
    try:
        if classic:
            from kerchunk.netCDF3 import NetCDF3ToZarr

            from .drivers import _check_classic_complete

            _check_classic_complete(path)
            return NetCDF3ToZarr(path, inline_threshold=INLINE_BYTES).translate()
        from kerchunk.hdf import SingleHdf5ToZarr

        with open(path, "rb") as fh:
            return SingleHdf5ToZarr(fh, path, inline_threshold=INLINE_BYTES).translate()
    except DataError:
        raise
    except Exception as exc:  # kerchunk/h5py raise many kinds for files they cannot map
        raise DataError(f"cannot index {path}: {type(exc).__name__}: {exc}") from exc


def _dims_of(refs: dict[str, Any]) -> dict[str, list[str]]:
    """Variable name -> its dimensions, from one file's references."""
    out: dict[str, list[str]] = {}
    for key, value in refs["refs"].items():
        if key.endswith("/.zattrs") and key.count("/") == 1:
            attrs = json.loads(value) if isinstance(value, str | bytes) else value
            out[key.split("/")[0]] = list(attrs.get("_ARRAY_DIMENSIONS", []))
    return out


def _concat_dim(entry: Entry, paths: Sequence[str], kwargs: dict[str, Any]) -> str:
    """The dimension the files are joined along: ``args.concat_dim``, else the one
    dimension whose coordinate differs between the first two files."""
    named = entry.args.get("concat_dim")
    if named:
        if not isinstance(named, str):
            raise DataError(f"{entry.where}: entry {entry.name!r}: a reference index joins "
                            f"files along one dimension, not {named!r}")
        return named
    opts = {k: v for k, v in kwargs.items() if k in ("engine",)}
    with xr.open_dataset(paths[0], decode_cf=False, **opts) as a, \
            xr.open_dataset(paths[1], decode_cf=False, **opts) as b:
        differ = [d for d in a.dims if d in a.coords and d in b.coords
                  and not a[d].equals(b[d])]
    if len(differ) != 1:
        raise DataError(f"{entry.where}: entry {entry.name!r}: cannot tell which dimension "
                        f"joins its files (coordinates differing between the first two: "
                        f"{differ or 'none'}); set args.concat_dim")
    return str(differ[0])


def _combine(entry: Entry, paths: Sequence[str], singles: list[dict[str, Any]],
             dim: str) -> dict[str, Any]:
    from kerchunk.combine import MultiZarrToZarr

    dims = _dims_of(singles[0])
    if dim not in dims:
        raise DataError(f"{entry.where}: entry {entry.name!r}: the files have no coordinate "
                        f"{dim!r} to join them along")
    identical = [name for name, var_dims in dims.items() if dim not in var_dims]
    # the joining coordinate's raw values are concatenated as stored, which is right only
    # when every file encodes them alike (times: the same units and calendar)
    def encoding(single: dict[str, Any]) -> tuple[Any, Any]:
        attrs = json.loads(single["refs"].get(f"{dim}/.zattrs", "{}"))
        return attrs.get("units"), attrs.get("calendar")

    first = encoding(singles[0])
    for path, single in zip(paths, singles, strict=True):
        if encoding(single) != first:
            raise DataError(f"entry {entry.name!r}: {path} encodes {dim} as "
                            f"{encoding(single)}, {paths[0]} as {first}: files with different "
                            "encodings are not indexed (they open from the files)")
    return MultiZarrToZarr(list(singles), concat_dims=[dim], identical_dims=identical,
                           coo_map={dim: f"data:{dim}"}, remote_protocol="file",
                           inline_threshold=INLINE_BYTES).translate()


def _same_attrs(a: dict[str, Any], b: dict[str, Any], skip: Sequence[str] = ()) -> bool:
    """Attributes equal key by key (array values compared element-wise, NaN equal to NaN)."""
    import numpy as np

    keys = set(a) - set(skip)
    if keys != set(b) - set(skip):
        return False
    for key in keys:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        if x.shape != y.shape or (x.dtype != y.dtype and "U" not in (x.dtype.kind, y.dtype.kind)):
            return False
        nan_ok = x.dtype.kind == "f" and y.dtype.kind == "f"
        try:
            if not np.array_equal(x, y, equal_nan=nan_ok):
                return False
        except TypeError:
            return False
    return True


def _verify(entry: Entry, paths: Sequence[str], refs: dict[str, Any],
            kwargs: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Refuse references that do not open as :func:`xarray.open_mfdataset` does.

    Compared: dimensions, variables, attributes (values and numpy types), decoded
    coordinates, and the first and last step along the joining dimension of every data
    variable. Returns the numpy types of the files' numeric attributes.
    """
    import numpy as np

    from .drivers import _open_netcdf

    args = dict(entry.args)
    args["xarray_kwargs"] = {**kwargs, "decode_cf": False}
    direct = _open_netcdf(paths, args, {})
    attr_types = _attr_types(direct)
    ours = open_references(refs, {"xarray_kwargs": {"decode_cf": False}}, {},
                           attr_types=attr_types)
    try:
        def differ(what: str) -> DataError:
            return DataError(f"{entry.where}: entry {entry.name!r}: the reference index "
                             f"differs from the files in {what}; it was not written")

        if dict(direct.sizes) != dict(ours.sizes):
            raise differ(f"sizes ({dict(ours.sizes)} against {dict(direct.sizes)})")
        if set(direct.variables) != set(ours.variables):
            raise differ(f"variables ({sorted(set(ours.variables) ^ set(direct.variables))})")
        if not _same_attrs(direct.attrs, ours.attrs):
            raise differ("global attributes")
        for name, var in direct.variables.items():
            other = ours[name]
            if var.dims != other.dims or var.dtype != other.dtype:
                raise differ(f"{name}: dims or dtype")
            if not _same_attrs(var.attrs, other.attrs, skip=("_FillValue",)):
                raise differ(f"{name}: attributes")
        dec_direct, dec_ours = xr.decode_cf(direct), xr.decode_cf(ours)
        for name in direct.coords:
            if not dec_direct[name].equals(dec_ours[name]):
                raise differ(f"coordinate {name}")
        for name, var in direct.data_vars.items():
            dim = var.dims[0] if var.dims else None
            picks = [0, -1] if dim is not None else []
            for i in picks:
                a = np.asarray(var.isel({dim: i}).values)
                b = np.asarray(ours[name].isel({dim: i}).values)
                if not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
                    raise differ(f"{name} at {dim}[{i}]")
    finally:
        direct.close()
        ours.close()
    return attr_types


def build_index(entry: Entry, *, force: bool = False) -> tuple[Path, bool]:
    """Build (or keep) the reference index of a many-file NetCDF entry.

    Parameters
    ----------
    entry
        A NetCDF entry of two or more local files (see :func:`indexable`).
    force
        Build again even when the existing index is current.

    Returns
    -------
    (pathlib.Path, bool)
        Where the index is, and whether it was (re)built (False: it was current).

    Raises
    ------
    DataError
        The entry is not indexable, a file cannot be mapped by kerchunk, or the combined
        references do not open as ``open_mfdataset`` does; nothing is written then.
    """
    from ..atomic import atomic_output

    if entry.driver != "netcdf":
        raise DataError(f"entry {entry.name!r} has driver {entry.driver}: only NetCDF "
                        "entries of several files get a reference index")
    if not force:
        status = load_index(entry)
        if status.usable:
            return status.path, False
    paths = entry.paths()  # fetches sample files and checks their sha256
    expected = _expected_files(entry)
    if [str(p) for p in paths] != [p for p, _ in expected]:  # pragma: no cover - defensive
        raise DataError(f"entry {entry.name!r}: its files changed while indexing")
    if len(paths) < 2:
        raise DataError(f"entry {entry.name!r} has {len(paths)} file: a reference index "
                        "serves entries of several files")
    if any("://" in p for p in paths):
        raise DataError(f"entry {entry.name!r} reads remote files: only local files are "
                        "indexed")
    kwargs = dict(entry.args.get("xarray_kwargs") or {})
    kwargs.setdefault("engine", "netcdf4")
    records = []
    for path, sha256 in expected:
        size, mtime = _stat(path)
        records.append({"path": path, "size": size, "mtime_ns": mtime, "sha256": sha256})
    singles = [_scan(p) for p in paths]
    dim = _concat_dim(entry, paths, kwargs)
    refs = _combine(entry, paths, singles, dim)
    attr_types = _verify(entry, paths, refs, kwargs)
    # a file touched while it was scanned makes the recorded state wrong: refuse it
    for rec in records:
        if _stat(rec["path"]) != (rec["size"], rec["mtime_ns"]):
            raise DataError(f"{rec['path']} changed while the index of {entry.name!r} was "
                            "built; run the command again")
    doc = {"format": INDEX_FORMAT, "entry": entry.name, "catalog": str(entry.source_file),
           "definition": _definition(entry), "concat_dim": dim, "files": records,
           "attr_types": attr_types, "refs": refs}
    target = index_path(entry)
    target.parent.mkdir(parents=True, exist_ok=True)
    # the index holds coordinates, attributes and small chunks of the files: readable by
    # others only when every file is (a restricted entry's files are not)
    public = all(os.stat(rec["path"]).st_mode & 0o004 for rec in records)
    mode = 0o644 if public else 0o600
    with atomic_output(target) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)  # never wider
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(doc))
        os.chmod(tmp, mode)  # the umask cannot narrow what the files allow either
    return target, True


@dataclass(frozen=True)
class IndexResult:
    """The outcome of :func:`build_indexes` for one entry.

    Attributes
    ----------
    entry
        Entry name.
    path
        The index file (None when it could not be built).
    built
        True when written now, False when the existing index was current.
    error
        Why no index could be built (the entry still opens from its files).
    """

    entry: str
    path: Path | None
    built: bool
    error: str | None = None

    def __str__(self) -> str:
        if self.error is not None:
            return f"{self.entry}: no reference index ({self.error}); it opens from its files"
        state = "built" if self.built else "current"
        return f"{self.entry}: reference index {state}: {self.path}"


def build_indexes(entries: Sequence[Entry], *, force: bool = False) -> list[IndexResult]:
    """Build or keep the index of every indexable entry of *entries* (others are skipped).

    An entry whose index cannot be built gets an :class:`IndexResult` with the reason;
    nothing is raised, since such an entry still opens from its files.
    """
    results = []
    for entry in entries:
        if not indexable(entry):
            continue
        try:
            path, built = build_index(entry, force=force)
        except DataError as exc:
            results.append(IndexResult(entry.name, None, False, str(exc)))
            continue
        except OSError as exc:  # unreadable file, unwritable data dir
            where = f" ({exc.filename})" if exc.filename else ""
            results.append(IndexResult(entry.name, None, False,
                                       f"{exc.strerror or exc}{where}"))
            continue
        except Exception as exc:  # kerchunk or xarray refusing the files (e.g. unlike files)
            log.debug("indexing %s failed", entry.name, exc_info=True)
            results.append(IndexResult(entry.name, None, False,
                                       f"{type(exc).__name__}: {exc}"))
            continue
        results.append(IndexResult(entry.name, path, built))
    return results
