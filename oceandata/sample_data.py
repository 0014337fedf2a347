"""The sample-data registry: real ocean files by short name, checked by sha256.

Each file of ``registry/sample_data.tsv`` (built by ``scripts/make_sample_registry.py``
from the shared data folder's ``REGISTRY.tsv``) has a short name, a registry path such as
``gridded/pop.nc``, a size, a sha256 and, unless it is *derived*, a public URL pinned to a
commit. :func:`fetch` places a file in the cache (setting ``OCEANDATA_SAMPLE_CACHE``,
``data/sample`` in a source checkout, so the catalogs' ``{{ CATALOG_DIR }}/../data/sample``
paths work) and returns its path there, looking in this order:

1. the folder named by ``OCEANDATA_SAMPLE_DATA`` (CI and developers point it at
   ``../shared/data``): the file is checked and linked into the cache (copied where
   symbolic links are not possible);
2. the cache, if it already holds the file with the right hash;
3. the public URL, downloaded with :mod:`pooch`.

Whatever the source, a file whose sha256 differs from the registry's is refused with a
:class:`~oceandata.errors.SampleDataError` naming the file and both hashes; nothing
half-written is ever left under the registry path (files are written under a temporary
name and renamed).
"""

from __future__ import annotations

import csv
import fnmatch
import os
import re
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pooch

from .config import get_settings
from .errors import SampleDataError, suggest

REGISTRY_FILE = Path(__file__).resolve().parent / "registry" / "sample_data.tsv"

#: sha256 of files already hashed in this process, by (real path, size, mtime in ns).
_HASHES: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class SampleFile:
    """One file of the sample-data registry.

    Attributes
    ----------
    name
        Short snake_case name, e.g. ``cobe_sst2_1950``.
    path
        Registry path, relative to ``OCEANDATA_SAMPLE_DATA`` and to the cache,
        e.g. ``gridded/cobe-sst2/year1950.nc``.
    sha256
        Expected sha256 of the file (hex).
    size
        Size in bytes.
    url
        Public URL the file can be downloaded from, or None for files derived from
        others (reachable only through ``OCEANDATA_SAMPLE_DATA``).
    """

    name: str
    path: str
    sha256: str
    size: int
    url: str | None


@lru_cache(maxsize=1)
def _registry() -> dict[str, SampleFile]:
    """The registry by short name, in registry-path order (read once)."""
    with REGISTRY_FILE.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    files = (SampleFile(name=row["name"], path=row["path"], sha256=row["sha256"].lower(),
                        size=int(row["size"]), url=None if row["url"] in ("", "-") else row["url"])
             for row in rows)
    return {f.name: f for f in sorted(files, key=lambda f: f.path)}


@lru_cache(maxsize=1)
def _by_path() -> dict[str, SampleFile]:
    return {f.path: f for f in _registry().values()}


def names() -> list[str]:
    """Return the short names of every sample file, in registry-path order.

    Examples
    --------
    >>> from oceandata import sample_data
    >>> "pop_surface" in sample_data.names()
    True
    """
    return list(_registry())


def registry_paths() -> list[str]:
    """Return the registry path of every sample file, sorted.

    Examples
    --------
    >>> from oceandata import sample_data
    >>> sample_data.registry_paths()[0]
    'argo/gdac/ar_index_global_meta.txt'
    """
    return list(_by_path())


def info(name: str) -> SampleFile:
    """Describe one sample file.

    Parameters
    ----------
    name
        A short name (``pop_surface``) or a registry path (``gridded/pop.nc``).

    Returns
    -------
    SampleFile
        Its name, path, sha256, size and URL.

    Raises
    ------
    SampleDataError
        The name is not in the registry (the message suggests close names).
    """
    registry = _registry()
    if name in registry:
        return registry[name]
    by_path = _by_path()
    key = name.removeprefix("./")
    if key in by_path:
        return by_path[key]
    hint = suggest(name, [*registry, *by_path])
    raise SampleDataError(
        f"no sample file {name!r} in the registry.{hint} Run `oceandata sample list` to see "
        "every name."
    )


def _file_hash(path: Path) -> str:
    """sha256 of *path* (following links), memoised per process by size and mtime."""
    real = path.resolve()
    stat = real.stat()
    key = (str(real), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = pooch.file_hash(str(real), alg="sha256")
    return _HASHES[key]


def _forget(path: Path) -> None:
    real = str(path.resolve())
    for key in [k for k in _HASHES if k[0] == real]:
        del _HASHES[key]


def _matches(path: Path, entry: SampleFile) -> bool:
    """Whether *path* exists and has the registry's size and hash."""
    try:
        if path.resolve().stat().st_size != entry.size:
            return False
    except OSError:  # missing, or a dangling link
        return False
    return _file_hash(path) == entry.sha256


def _mismatch(entry: SampleFile, where: Path, actual: str, remedy: str) -> SampleDataError:
    return SampleDataError(
        f"sample file {entry.name} ({entry.path}) at {where} fails its checksum: expected "
        f"sha256 {entry.sha256}, got {actual}; {remedy}"
    )


def _temporary(target: Path) -> Path:
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")


def _place(source: Path, target: Path) -> None:
    """Link *source* at *target* (copy if links fail), atomically replacing what was there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(target)
    try:
        try:
            os.symlink(os.path.abspath(source), tmp)
        except (OSError, NotImplementedError):
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()


_HEX = re.compile(r"[0-9a-f]{64}")


def _download(entry: SampleFile, target: Path) -> None:
    """Download *entry* with pooch (hash checked) to a temporary name, then rename."""
    assert entry.url is not None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(target)
    try:
        pooch.retrieve(entry.url, known_hash=f"sha256:{entry.sha256}", fname=tmp.name,
                       path=tmp.parent, progressbar=False)
        os.replace(tmp, target)
    except ValueError as exc:  # pooch: the downloaded file's hash differs
        actual = next((h for h in _HEX.findall(str(exc)) if h != entry.sha256), "unknown")
        raise _mismatch(entry, Path(entry.url), actual,
                        "the public copy has changed: report it, or set OCEANDATA_SAMPLE_DATA "
                        "to a folder with the right file") from None
    except OSError as exc:  # includes requests' connection errors
        raise SampleDataError(
            f"cannot download sample file {entry.name} ({entry.path}) from {entry.url}: "
            f"{exc}; check the network, or set OCEANDATA_SAMPLE_DATA to a folder holding "
            "the sample files (e.g. ../shared/data)"
        ) from exc
    finally:
        if tmp.exists():
            tmp.unlink()


def fetch(name: str, *, force: bool = False) -> Path:
    """Return the local path of a sample file, fetching and checking it first.

    Parameters
    ----------
    name
        A short name (``pop_surface``) or a registry path (``gridded/pop.nc``).
    force
        Place the file in the cache again (link or download) even if a good copy is there,
        and hash it again.

    Returns
    -------
    pathlib.Path
        ``OCEANDATA_SAMPLE_CACHE / <registry path>``: a link to the file in
        ``OCEANDATA_SAMPLE_DATA``, a copy, or a download.

    Raises
    ------
    SampleDataError
        Unknown name; a file whose sha256 differs from the registry's (message names the
        file, the expected and the actual hash); a derived file with no public URL and no
        ``OCEANDATA_SAMPLE_DATA``; a failed download.

    Examples
    --------
    >>> from oceandata import sample_data
    >>> path = sample_data.fetch("pop_surface")  # doctest: +SKIP
    >>> path.name  # doctest: +SKIP
    'pop.nc'
    """
    entry = info(name)
    settings = get_settings()
    target = settings.sample_cache / entry.path
    source = settings.sample_data / entry.path if settings.sample_data else None
    if force:
        for path in (target, source):
            if path is not None:
                _forget(path)
    if source is not None and source.is_file():
        if not _matches(source, entry):
            raise _mismatch(entry, source, _file_hash(source),
                            f"the copy in OCEANDATA_SAMPLE_DATA ({settings.sample_data}) is "
                            "damaged or out of date: restore it, or unset the variable to "
                            "download the file")
        if force or not _matches(target, entry):
            _place(source, target)
        if not _matches(target, entry):  # pragma: no cover - only if the cache is unwritable
            raise _mismatch(entry, target, _file_hash(target), "remove it and fetch again")
        return target

    if not force and _matches(target, entry):
        return target
    if entry.url is None:
        where = (f"OCEANDATA_SAMPLE_DATA ({settings.sample_data}) has no {entry.path}"
                 if settings.sample_data else "OCEANDATA_SAMPLE_DATA is not set")
        raise SampleDataError(
            f"sample file {entry.name} ({entry.path}) is derived from other files and has no "
            f"public URL, and {where}: set OCEANDATA_SAMPLE_DATA to a folder holding the "
            "sample files (e.g. ../shared/data)"
        )
    _download(entry, target)  # replaces a stale copy or link, once
    if not _matches(target, entry):  # pragma: no cover - pooch checked the hash already
        raise _mismatch(entry, target, _file_hash(target), "remove it and fetch again")
    return target


def matching(pattern: str) -> list[SampleFile]:
    """The registry's files whose short name or registry path matches the glob *pattern*,
    sorted by registry path (nothing is fetched; see :func:`fetch_matching`)."""
    return sorted((f for f in _registry().values()
                   if fnmatch.fnmatchcase(f.name, pattern)
                   or fnmatch.fnmatchcase(f.path, pattern)), key=lambda f: f.path)


def fetch_matching(pattern: str, *, force: bool = False) -> list[Path]:
    """Fetch every sample file whose short name or registry path matches a glob.

    Parameters
    ----------
    pattern
        An :mod:`fnmatch` pattern over short names and registry paths, e.g.
        ``gridded/cobe-sst2/year*.nc`` or ``cobe_sst2_19[5-6]?``. A plain name or path
        matches itself.
    force
        Fetch again even if cached (see :func:`fetch`).

    Returns
    -------
    list of pathlib.Path
        Cache paths, sorted by registry path.

    Raises
    ------
    SampleDataError
        Nothing matches (the message suggests close names), or a file fails to fetch.

    Examples
    --------
    >>> from oceandata import sample_data
    >>> len(sample_data.fetch_matching("gridded/cobe-sst2/year*.nc"))  # doctest: +SKIP
    60
    """
    chosen = matching(pattern)
    if not chosen:
        hint = suggest(pattern, [*_registry(), *_by_path()])
        raise SampleDataError(
            f"no sample file matches {pattern!r}.{hint} Run `oceandata sample list` to see "
            "every name and path."
        )
    return [fetch(f.name, force=force) for f in chosen]


def fetch_all(*, progress: bool = False, force: bool = False) -> list[Path]:
    """Fetch every file of the registry.

    Parameters
    ----------
    progress
        Show a progress bar (rich) on stderr.
    force
        Fetch again even if cached (see :func:`fetch`).

    Returns
    -------
    list of pathlib.Path
        Cache paths, in registry-path order.
    """
    entries: Iterable[str] = list(_registry())
    if progress:
        from rich.console import Console
        from rich.progress import track

        entries = track(entries, description="sample files", console=Console(stderr=True))
    return [fetch(name, force=force) for name in entries]
