"""NetCDF files to a versioned store, in one transaction per ingest or append.

:func:`ingest` checks everything it can before it commits anything:

1. the sources exist, open (a truncated file is refused), share one grid, the same
   variables and units, and have unique, increasing times (a time axis is required to
   join several files or to append);
2. against an existing store: the grid, variables and units must match and the new
   times must all come after the store's last time. Files whose sha256 is already
   recorded in the store's history are skipped, so re-running the same command changes
   nothing;
3. the standards check (IOOS compliance-checker, CF and ACDD) runs on the sources and
   its report is saved beside the store; ``strict`` refuses on high-priority failures.
   It runs after the write, before the commit, with the minimum and maximum of each
   variable the write saw (its ``actual_range`` check would otherwise read the data
   again).

Each source is read once: its sha256 is taken while the headers are opened (a thread,
from the OS page cache), and the write's chunks are hashed for the store's checksums as
they are written (:class:`~oceandata.ingest.checksums.WriteTally`), so the store is not
read back; an append extends the recorded digests with the new elements'. It writes
through one Icechunk session committed once: a ``kill -9`` before the commit leaves the
store at its previous version, and running the command again completes the work. A
plain Zarr store (``fmt="zarr"``) is written under a temporary name and renamed when
complete. Each commit records the sources (name, size, sha256), the command, software
versions, the chunk plan and a chunk-independent digest of every variable
(:mod:`oceandata.ingest.checksums`). See ``docs/ingest.md``, "Reading each source once".
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import shutil
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr

from ..catalog.drivers import open_source
from ..errors import DataError, UsageError
from ..governance.locks import store_lock
from ..io.subset import _Axes
from ..memory import release_freed_memory
from .checksums import (
    WriteTally,
    _label,
    array_digest,
    dataset_digests,
    encoded_digest,
    encoded_dtype,
    extend_digest,
    file_sha256,
    open_raw,
    parse_digest,
)
from .chunks import plan_dataset
from .store import (
    BRANCH,
    commit,
    default_command,
    is_icechunk,
    is_zarr,
    log,
    open_repository,
    open_store,
    version_metadata,
)

__all__ = ["IngestResult", "Source", "ingest", "rechunk", "write_new_store"]

#: Encoding keys carried from the sources to the store.
_KEEP_ENCODING = {"dtype", "_FillValue", "missing_value", "units", "calendar", "scale_factor",
                  "add_offset"}


@dataclass(frozen=True)
class Source:
    """One source file: where it was, its size and sha256."""

    path: Path
    size: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (name is the file name; the full path is kept for operators)."""
        return {"name": self.path.name, "path": str(self.path), "size": self.size,
                "sha256": self.sha256}


@dataclass
class IngestResult:
    """What an ingest did."""

    store: Path
    snapshot: str | None
    changed: bool
    message: str
    sources: list[Source] = field(default_factory=list)
    skipped: list[Source] = field(default_factory=list)
    report: Path | None = None


def expand_sources(patterns: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files and globs to a sorted list of distinct existing files.

    Raises
    ------
    UsageError
        A pattern matches nothing.
    """
    found: list[Path] = []
    for pattern in patterns:
        text = os.fspath(pattern)
        matches = sorted(glob.glob(text)) if any(c in text for c in "*?[") else \
            [text] if Path(text).exists() else []
        if not matches:
            raise UsageError(f"source {text!r} matches no file; give NetCDF files or globs "
                             "such as 'archive/sst_*.nc'")
        found.extend(Path(m) for m in matches if Path(m).is_file())
    return list(dict.fromkeys(found))


def _describe(paths: Sequence[Path], progress: bool) -> list[Source]:
    """Size and sha256 of each source, with a progress bar over files and bytes."""
    sizes = [p.stat().st_size for p in paths]
    if not progress:
        return [Source(p, s, file_sha256(p)) for p, s in zip(paths, sizes, strict=True)]
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    out = []
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"sha256 0/{len(paths)} files", total=sum(sizes))
        for i, (p, s) in enumerate(zip(paths, sizes, strict=True), start=1):
            out.append(Source(p, s, file_sha256(p, on_bytes=lambda n: bar.advance(task, n))))
            bar.update(task, description=f"sha256 {i}/{len(paths)} files")
    return out


# --------------------------------------------------------------------------- sources


def _time_name(ds: xr.Dataset) -> str | None:
    coord = _Axes(ds).get("time", ds)
    if coord is None or coord.ndim != 1 or coord.dims[0] not in ds.dims:
        return None
    return str(coord.dims[0])


def _fmt_time(value: Any) -> str:
    text = str(value.isoformat() if hasattr(value, "isoformat") else np.datetime_as_string(
        np.datetime64(value, "s")))
    return text.removesuffix("T00:00:00")


def _grid(ds: xr.Dataset, time: str | None) -> dict[str, xr.Variable]:
    """The coordinates that must be equal for two datasets to be joined along time."""
    return {str(n): v.variable for n, v in ds.coords.items() if time not in v.dims}


def _same_grid(a: dict[str, xr.Variable], b: dict[str, xr.Variable]) -> str | None:
    """None when equal, else a phrase naming the first difference."""
    if set(a) != set(b):
        return f"coordinates {sorted(set(a) ^ set(b))} are in one and not the other"
    for name, var in a.items():
        other = b[name]
        if var.shape != other.shape:
            return f"coordinate {name!r} has shape {other.shape}, not {var.shape}"
        if not var.equals(other):
            return f"coordinate {name!r} has different values"
    return None


def _units(ds: xr.Dataset) -> dict[str, str | None]:
    return {str(n): v.attrs.get("units", v.encoding.get("units")) for n, v in ds.data_vars.items()}


def _compatible(reference: xr.Dataset, other: xr.Dataset, time: str | None,
                where: str) -> None:
    """Refuse *other* unless it has the grid, variables and units of *reference*."""
    if set(reference.data_vars) != set(other.data_vars):
        missing = sorted(map(str, set(reference.data_vars) - set(other.data_vars)))
        extra = sorted(map(str, set(other.data_vars) - set(reference.data_vars)))
        raise DataError(f"{where} has different variables (missing {missing or 'none'}, extra "
                        f"{extra or 'none'}); every file must hold the same variables")
    difference = _same_grid(_grid(reference, time), _grid(other, time))
    if difference:
        raise DataError(f"{where} is on a different grid: {difference}")
    ours, theirs = _units(reference), _units(other)
    for name, unit in ours.items():
        if theirs[name] != unit:
            raise DataError(f"{where}: variable {name!r} has units {theirs[name]!r}, not "
                            f"{unit!r}")


def _same_time(coord: xr.DataArray | None, time: str | None, ds: xr.Dataset) -> bool:
    """Whether *ds* has the time coordinate *coord* (name, dims and attributes equal).

    Cheap: the full search (:func:`_time_name`) costs about 30 ms a file.
    """
    if coord is None or time is None or coord.name not in ds.variables:
        return False
    other = ds[coord.name]
    return other.dims == coord.dims and other.attrs == coord.attrs and time in ds.dims


def open_sources(paths: Sequence[Path], *, args: dict[str, Any] | None = None,
                 fix_attrs: dict[str, dict[str, Any]] | None = None
                 ) -> tuple[xr.Dataset, str | None]:
    """Open and join the sources along time, after checking they can be joined.

    Parameters
    ----------
    paths
        NetCDF files.
    args, fix_attrs
        As in a catalog entry (``xarray_kwargs``; attributes set before CF decoding),
        for sources whose metadata need a fix, e.g. a calendar stated only globally.

    Returns
    -------
    (Dataset, time dimension or None)
        Lazy, on the files' own chunks.
    """
    datasets = [open_source("netcdf", [str(p)], dict(args or {}), chunks={},
                            fix_attrs=fix_attrs) for p in paths]
    return _join(paths, datasets)


def _join(paths: Sequence[Path], datasets: list[xr.Dataset]
          ) -> tuple[xr.Dataset, str | None]:
    """Check that opened sources can be joined along time, and join them."""
    time = _time_name(datasets[0])
    coord = _Axes(datasets[0]).get("time", datasets[0]) if time is not None else None
    if len(paths) > 1 and time is None:
        raise DataError(f"{paths[0]} has no time axis, so several files cannot be joined; "
                        "give one file, or files with a CF time coordinate")
    seen: dict[Any, Path] = {}
    for path, ds in zip(paths, datasets, strict=True):
        if path is not paths[0]:
            _compatible(datasets[0], ds, time, str(path))
            if not _same_time(coord, time, ds) and _time_name(ds) != time:
                raise DataError(f"{path} has no time dimension {time!r} like {paths[0]}")
        if time is None:
            continue
        values = ds[time].values
        if values.size > 1 and not np.all(values[1:] > values[:-1]):
            raise DataError(f"{path}: times are not strictly increasing")
        for value in values:
            key = value.item() if hasattr(value, "item") else value
            if key in seen:
                raise DataError(f"time {_fmt_time(value)} is in both {seen[key]} and {path}; "
                                "duplicate times cannot be ingested")
            seen[key] = path
    if len(datasets) == 1:
        return datasets[0], time
    order = np.argsort([ds[time].values[0] for ds in datasets], kind="stable")
    joined = xr.concat([datasets[i] for i in order], dim=time, data_vars="minimal",
                       coords="minimal", compat="override", join="override",
                       combine_attrs="override")
    return joined, time


# --------------------------------------------------------------------------- writing


def zarr_encoding(ds: xr.Dataset, plan: dict[str, dict[str, int]]
                  ) -> tuple[xr.Dataset, dict[str, dict[str, Any]]]:
    """Chunk *ds* to the plan and build the Zarr encoding (chunks plus kept CF encoding).

    Parameters
    ----------
    ds
        The dataset to write.
    plan
        Chunk sizes per variable and dimension (:mod:`oceandata.ingest.chunks`).

    Returns
    -------
    tuple
        The rechunked dataset and its ``encoding`` for ``to_zarr``; every store writer of
        the platform (ingest, rechunk, publish) writes with it.
    """
    out = ds.copy()
    encoding: dict[str, dict[str, Any]] = {}
    for name, var in out.variables.items():
        kept = {k: v for k, v in var.encoding.items() if k in _KEEP_ENCODING}
        if str(name) in plan:
            sizes = plan[str(name)]
            kept["chunks"] = tuple(sizes[d] for d in var.dims)
            out[name] = out[name].chunk({d: sizes[d] for d in var.dims})
        var.encoding = {}
        encoding[str(name)] = kept
    for var in out.variables.values():
        var.encoding = {}
    return out, encoding


def write_new_store(ds: xr.Dataset, target: Path, *, message: str,
                    metadata: dict[str, Any]) -> str:
    """Write *ds* as a new Icechunk store at *target* in one commit, under a temporary name
    renamed when complete (removed on failure or signal); return the snapshot id.

    The ingest layer's parts do the work: its chunk planner (``auto``), its Zarr encoding,
    its repository opener and its chunk-independent digests, recorded with the plan in the
    commit's metadata beside *metadata*, so ``oceandata store verify`` checks the store.
    Used for derived copies: desensitised and published entries.

    Parameters
    ----------
    ds
        The dataset (lazy is fine: it is written with dask's threads).
    target
        The new store's path; it must not exist.
    message, metadata
        The commit's message and metadata.

    Returns
    -------
    str
        The snapshot id of the one commit.
    """
    from ..atomic import atomic_output
    from .checksums import dataset_digests, open_raw

    plan = plan_dataset(ds, "auto")
    chunked, encoding = zarr_encoding(ds, plan)
    with atomic_output(target, overwrite=False) as tmp:
        repo = open_repository(tmp, create=True)
        session = repo.writable_session(BRANCH)
        with dask.config.set(scheduler="threads"):
            chunked.to_zarr(session.store, mode="w", consolidated=False, zarr_format=3,
                            encoding=encoding)
        digests = dataset_digests(open_raw(session.store))
        snapshot = session.commit(message, metadata={**metadata, "chunks": plan,
                                                     "checksums": digests})
    return str(snapshot)


def _provenance(sources: Sequence[Source], *, command: str | None, layout: Any,
                plan: dict[str, dict[str, int]], digests: dict[str, str],
                report: dict[str, Any] | None, base: str | None) -> dict[str, Any]:
    import icechunk
    import netCDF4
    import zarr

    from .. import __version__

    return {
        "oceandata": __version__,
        "command": command or " ".join(["oceandata", *sys.argv[1:]]),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "sources": [s.as_dict() for s in sources],
        "software": {"oceandata": __version__, "xarray": xr.__version__,
                     "zarr": zarr.__version__, "icechunk": icechunk.__version__,
                     "dask": dask.__version__, "netCDF4": netCDF4.__version__,
                     "python": sys.version.split()[0]},
        "layout": layout if isinstance(layout, str) else dict(layout),
        "chunks": plan,
        "checksums": digests,
        "compliance": report,
        "derived_from": base,
    }


def _recorded_sources(path: Path) -> dict[str, dict[str, Any]]:
    """sha256 → source record, over every commit of the store."""
    found: dict[str, dict[str, Any]] = {}
    for version in log(path):
        for src in version.metadata.get("sources", []):
            found.setdefault(src["sha256"], src)
    return found


def _progress(enabled: bool, description: str) -> Any:
    if not enabled:
        return nullcontext()
    from ..io.export import _progress as dask_progress

    return dask_progress(True, description)


def ingest(sources: Sequence[str | os.PathLike[str]], store: str | os.PathLike[str], *,
           name: str | None = None, chunks: str | dict[str, int] = "auto",
           append: bool = False, fmt: str = "icechunk", strict: bool = False,
           check: bool = True, progress: bool = False, target_bytes: int = 16 * 2**20,
           command: str | None = None, source_args: dict[str, Any] | None = None,
           fix_attrs: dict[str, dict[str, Any]] | None = None,
           wait: float = 0.0) -> IngestResult:
    """Ingest NetCDF *sources* into *store* in one transaction, holding the store's lock.

    Parameters
    ----------
    sources
        Files or globs.
    store
        Target: an Icechunk repository (created if missing) or, with ``fmt="zarr"``, a
        plain Zarr v3 folder.
    name
        Dataset name recorded in the commit message (default the store's stem).
    chunks
        ``auto``, ``map``, ``timeseries`` or sizes by dimension (new stores only; an
        append keeps the store's chunks).
    append
        Add the sources' time steps after the store's last one.
    fmt
        ``icechunk`` (versioned, default) or ``zarr``.
    strict
        Refuse sources with high-priority CF/ACDD compliance failures.
    check
        Run the compliance checker at all (its report is saved beside the store).
    progress
        Progress bars over the checksummed bytes and the written chunks.
    target_bytes
        Uncompressed bytes per chunk the planner aims at.
    command
        What to record as the command (default ``oceandata`` + the arguments).
    source_args, fix_attrs
        How to open the sources (see :func:`open_sources`); a catalog entry's own.
    wait
        Seconds to wait for another writer of the store to finish
        (:func:`oceandata.governance.locks.store_lock`); 0 refuses at once.

    Returns
    -------
    IngestResult
        ``changed`` is false when every source was already in the store.

    Raises
    ------
    UsageError
        Bad options, or an existing store without ``append``.
    StoreLocked
        Another process is writing the store (a :class:`UsageError`).
    DataError
        Unreadable or incompatible sources, overlapping times, an unwritable store.
    """
    target = Path(store)
    if fmt not in ("icechunk", "zarr"):
        raise UsageError(f"--format {fmt!r} is not one of icechunk, zarr")
    if fmt == "zarr" and append:
        raise UsageError("--append needs an Icechunk store (plain Zarr has no transactions); "
                         "drop --format zarr")
    paths = expand_sources(sources)
    if not target.parent.exists():
        raise UsageError(f"folder {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK):
        raise DataError(f"cannot write to {target.parent}: permission denied")
    command = command or default_command()
    # Everything from reading the store's state to the commit is one writer's turn: two
    # appends of one file must not both find it new.
    with store_lock(target, command=command, wait=wait):
        return _ingest_locked(paths, target, name=name or target.stem, chunks=chunks,
                              append=append, fmt=fmt, strict=strict, check=check,
                              progress=progress, target_bytes=target_bytes, command=command,
                              source_args=source_args, fix_attrs=fix_attrs)


def _ingest_locked(paths: list[Path], target: Path, *, name: str,
                   chunks: str | dict[str, int], append: bool, fmt: str, strict: bool,
                   check: bool, progress: bool, target_bytes: int, command: str,
                   source_args: dict[str, Any] | None,
                   fix_attrs: dict[str, dict[str, Any]] | None) -> IngestResult:
    existing = is_icechunk(target) and any(v.metadata.get("sources") for v in log(target))
    if target.exists() and not existing and not is_icechunk(target):
        raise UsageError(f"{target} exists and is not an Icechunk store made by oceandata; "
                         "choose a new --store path")
    if existing and not append:
        recorded = _recorded_sources(target)
        described = _describe(paths, progress)
        if {s.sha256 for s in described} <= set(recorded):
            return IngestResult(target, None, False, f"{target}: every source is already "
                                "in the store; nothing to do", [], described)
        raise UsageError(f"store {target} exists; pass --append to add time steps, or choose "
                         "a new --store path")
    if append and not existing:
        raise UsageError(f"--append: {target} is not an existing oceandata store; ingest "
                         "without --append first")

    skipped: list[Source] = []
    if append:  # which files are new depends on their sha256: hash them first
        described = _describe(paths, progress)
        recorded = _recorded_sources(target)
        skipped = [s for s in described if s.sha256 in recorded]
        described = [s for s in described if s.sha256 not in recorded]
        if not described:
            return IngestResult(target, None, False, f"{target}: every source is already in "
                                "the store; nothing to do", [], skipped)
        with _no_chunk_cache():
            datasets = _open_each([s.path for s in described], source_args, fix_attrs)
    else:  # hash the files in a thread while their headers are read and checked
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool, _no_chunk_cache():
            hashing = pool.submit(_describe, paths, progress)
            datasets = _open_each(paths, source_args, fix_attrs)
            described = hashing.result()

    with _no_chunk_cache():
        return _read_once(target, described, skipped, datasets, name=name, chunks=chunks,
                          append=append, fmt=fmt, strict=strict, check=check,
                          progress=progress, target_bytes=target_bytes, command=command)


@contextmanager
def _no_chunk_cache() -> Iterator[None]:
    """No HDF5 chunk cache for the NetCDF-4 files opened meanwhile (restored after).

    The write reads each source chunk once (dask's blocks are the files' own chunks), so
    a cache only keeps decompressed data alive: netCDF-C's default of 16 MiB per
    variable held every file's data while the files stayed open (about 190 MiB for the
    60 COBE files). The setting applies to files opened inside the block.
    """
    import netCDF4

    saved = netCDF4.get_chunk_cache()
    netCDF4.set_chunk_cache(0)
    try:
        yield
    finally:
        netCDF4.set_chunk_cache(*saved)


def _read_once(target: Path, described: list[Source], skipped: list[Source],
               datasets: list[xr.Dataset], *, name: str,
               chunks: str | dict[str, int], append: bool, fmt: str, strict: bool,
               check: bool, progress: bool, target_bytes: int, command: str
               ) -> IngestResult:
    """Write the sources, with checksums and compliance ranges taken from that one read."""
    tally = WriteTally()
    if check:  # the actual_range check takes its min/max from the write pass
        datasets = [_watch_ranges(ds, s.path, tally) for ds, s in zip(datasets, described,
                                                                       strict=True)]
    ds, time = _join([s.path for s in described], datasets)
    checked = _Checked(target, described, tally, strict) if check else None
    try:
        if append:
            return _append(target, ds, time, described, skipped, name=name, command=command,
                           progress=progress, tally=tally, checked=checked)
        return _create(target, ds, described, name=name, chunks=chunks, fmt=fmt,
                       command=command, progress=progress, target_bytes=target_bytes,
                       tally=tally, checked=checked)
    except (OSError, RuntimeError) as exc:
        # A source whose data cannot be decoded fails the write: name it, as the
        # compliance check did when it read the data first (it raises DataError).
        from .compliance import check_sources

        check_sources([s.path for s in described], suites=("cf",))
        raise DataError(f"cannot write {target}: {exc}; nothing was committed") from exc


#: Largest dask block a source is read in: whole multiples of the file's own chunks up to
#: this size (a yearly COBE file is one 3 MiB block instead of twelve), so the tasks that
#: read, decode and watch the data are few without holding much memory.
_READ_BLOCK = "16MiB"


def _open_each(paths: Sequence[Path], args: dict[str, Any] | None,
               fix_attrs: dict[str, dict[str, Any]] | None) -> list[xr.Dataset]:
    """Each source, lazily, in blocks of whole file chunks up to :data:`_READ_BLOCK`."""
    with dask.config.set({"array.chunk-size": _READ_BLOCK}):
        return [open_source("netcdf", [str(p)], dict(args or {}), chunks="auto",
                            fix_attrs=fix_attrs) for p in paths]


def _watch_ranges(ds: xr.Dataset, path: Path, tally: WriteTally) -> xr.Dataset:
    """*ds* with each numeric dask variable that has ``actual_range`` watched by *tally*."""
    out = ds.copy(deep=False)
    for name, var in out.variables.items():
        if "actual_range" in var.attrs and var.chunks is not None and \
                var.dtype.kind in "iuf":
            var.data = tally.watch_range((str(path), str(name)), var.data)
    return out


@dataclass
class _Checked:
    """The compliance check run after the write pass, before the commit."""

    target: Path
    sources: list[Source]
    tally: WriteTally
    strict: bool
    path: Path | None = None
    summary: dict[str, Any] | None = None

    def run(self) -> None:
        """Check the sources with the ranges the write saw; refuse if strict and failing.

        Raises
        ------
        DataError
            ``strict`` and a high-priority failure (the report is written first).
        """
        from .compliance import check_sources, require_no_high_failures

        release_freed_memory()
        seen = self.tally.ranges()
        ranges: dict[str, dict[str, Any]] = {}
        for (file, variable), extent in seen.items():
            ranges.setdefault(file, {})[variable] = extent
        report = check_sources([s.path for s in self.sources], ranges=ranges)
        self.path = self.target.with_name(f"{self.target.name}.compliance.json")
        report.write(self.path)
        self.summary = {"report": self.path.name, "high_failures": len(report.high_failures)}
        if self.strict:
            require_no_high_failures(report, report_path=self.path)


def _tap(chunked: xr.Dataset, encoding: dict[str, dict[str, Any]], tally: WriteTally
         ) -> tuple[xr.Dataset, Any]:
    """*chunked* with its dask variables hashed as they are written, and the digests.

    Returns
    -------
    (Dataset, callable)
        What to write, and a function that returns every variable's digest once the
        write has run (:func:`oceandata.ingest.checksums.dataset_digests`'s, computed
        from the written chunks and, for in-memory variables, from their values).
    """
    out = chunked.copy(deep=False)
    labels: dict[str, str] = {}
    direct: dict[str, str] = {}
    for key, var in out.variables.items():
        name = str(key)
        enc = encoding.get(name, {})
        if var.chunks is not None:
            shape = tuple(int(n) for n in var.shape)
            labels[name] = _label(encoded_dtype(var, enc, name), shape)
            var.data = tally.tap(name, var, enc, shape=shape)
        else:
            label, total = encoded_digest(var, enc, name)
            direct[name] = f"{label}:{total:016x}"

    def digests() -> dict[str, str]:
        found = dict(direct)
        found.update({n: f"{label}:{tally.sum(n):016x}" for n, label in labels.items()})
        return dict(sorted(found.items()))

    return out, digests


def _create(target: Path, ds: xr.Dataset, sources: list[Source], *, name: str,
            chunks: str | dict[str, int], fmt: str, command: str | None, progress: bool,
            target_bytes: int, tally: WriteTally, checked: _Checked | None
            ) -> IngestResult:
    plan = plan_dataset(ds, chunks, target_bytes=target_bytes)
    chunked, encoding = zarr_encoding(ds, plan)
    tapped, digests_of = _tap(chunked, encoding, tally)
    message = f"ingest {name}: {len(sources)} files"

    def finish() -> tuple[dict[str, str], dict[str, Any] | None]:
        if checked is not None:
            checked.run()
        return digests_of(), checked.summary if checked is not None else None

    if fmt == "zarr":
        from ..atomic import atomic_output

        with atomic_output(target) as tmp:  # removed on failure, SIGINT or SIGTERM
            with dask.config.set(scheduler="threads"), _progress(progress, f"writing {name}"):
                tapped.to_zarr(tmp, mode="w-", consolidated=False, zarr_format=3,
                               encoding=encoding)
            digests, report = finish()
            meta = _provenance(sources, command=command, layout=chunks, plan=plan,
                               digests=digests, report=report, base=None)
            import zarr

            group = zarr.open_group(str(tmp), mode="r+")
            group.attrs["oceandata_ingest"] = json.dumps(meta)
        return IngestResult(target, None, True, message, sources, [],
                            checked.path if checked else None)
    created = not is_icechunk(target)
    repo = open_repository(target, create=created)
    try:
        session = repo.writable_session(BRANCH)
        with dask.config.set(scheduler="threads"), _progress(progress, f"writing {name}"):
            tapped.to_zarr(session.store, mode="w", consolidated=False, zarr_format=3,
                           encoding=encoding)
        digests, report = finish()
        meta = _provenance(sources, command=command, layout=chunks, plan=plan,
                           digests=digests, report=report, base=None)
        snapshot = commit(session, target, message, metadata=meta, command=command)
    except BaseException:
        if created:  # nothing was committed: leave no empty repository behind
            shutil.rmtree(target, ignore_errors=True)
        raise
    return IngestResult(target, snapshot, True, message, sources, [],
                        checked.path if checked else None)


def _append(target: Path, ds: xr.Dataset, time: str | None, sources: list[Source],
            skipped: list[Source], *, name: str, command: str | None, progress: bool,
            tally: WriteTally, checked: _Checked | None) -> IngestResult:
    current = open_store(target)
    store_time = _time_name(current)
    if time is None or store_time is None:
        where = sources[0].path if time is None else target
        raise DataError(f"{where} has no time axis; appending needs a CF time coordinate in "
                        "both the store and the files")
    if time != store_time:
        raise DataError(f"{sources[0].path}: time dimension {time!r} is not the store's "
                        f"{store_time!r}")
    _compatible(current, ds, time, f"{sources[0].path} (against the store)")
    last = current[time].values[-1]
    first_new = ds[time].values[0]
    if not first_new > last:
        overlap = ds[time].values[ds[time].values <= last]
        raise DataError(f"time {_fmt_time(overlap[0])} from {sources[0].path.name} is not "
                        f"after the store's last time {_fmt_time(last)}; only later times "
                        "can be appended")
    repo = open_repository(target)
    session = repo.writable_session(BRANCH)
    planned = {str(n): dict(zip(v.dims, v.encoding["chunks"], strict=True))
               for n, v in current.variables.items()
               if v.encoding.get("chunks") and time in v.dims}
    chunked = ds.copy()
    for var_name, sizes in planned.items():
        if var_name in chunked.variables:
            chunked[var_name] = chunked[var_name].chunk(sizes)
    for var in chunked.variables.values():
        var.encoding = {}
    appended = chunked[[n for n in chunked.data_vars if time in chunked[n].dims]]
    _, previous = version_metadata(target)
    tapped, added = _tap_append(appended, current, time, previous.get("checksums") or {},
                                tally)
    with dask.config.set(scheduler="threads"), _progress(progress, f"appending to {name}"):
        tapped.to_zarr(session.store, append_dim=time, consolidated=False)
    if checked is not None:
        checked.run()
    digests = _appended_digests(session.store, previous.get("checksums") or {}, added,
                                tally, time, set(map(str, tapped.variables)))
    meta = _provenance(sources, command=command, layout=previous.get("layout"),
                       plan=previous.get("chunks", {}), digests=digests,
                       report=checked.summary if checked else None, base=None)
    message = (f"append {name}: {len(sources)} files, {ds.sizes[time]} time steps from "
               f"{_fmt_time(first_new)}")
    snapshot = commit(session, target, message, metadata=meta, command=command)
    return IngestResult(target, snapshot, True, message, sources, skipped,
                        checked.path if checked else None)


def _tap_append(appended: xr.Dataset, current: xr.Dataset, time: str,
                previous: dict[str, str], tally: WriteTally) -> tuple[xr.Dataset, set[str]]:
    """*appended* with the digests of its new elements taken as they are written.

    Only variables whose first axis is *time* and whose previous digest is recorded are
    extended (their old elements keep their flat positions); the names are returned.
    """
    out = appended.copy(deep=False)
    old = int(current.sizes[time])
    extended: set[str] = set()
    for key, var in out.variables.items():
        name = str(key)
        if name not in current.variables or name not in previous or not var.dims or \
                var.dims[0] != time:
            continue
        shape = (old + int(var.shape[0]), *map(int, var.shape[1:]))
        offset = (old,) + (0,) * (var.ndim - 1)
        enc = current[name].encoding
        if var.chunks is not None:
            var.data = tally.tap(name, var, enc, shape=shape, offset=offset)
        else:
            _, total = encoded_digest(var, enc, name, shape=shape, offset=offset)
            tally._add(name, total)
        extended.add(name)
    return out, extended


def _appended_digests(store: Any, previous: dict[str, str], extended: set[str],
                      tally: WriteTally, time: str, written: set[str]) -> dict[str, str]:
    """Every variable's digest after an append, without reading back what it can avoid.

    Extended variables: the previous sum plus the new elements'. Variables the append
    did not write: their previous digest. Others (time not their first axis, or no
    digest recorded): recomputed from the store.
    """
    raw = open_raw(store)
    digests: dict[str, str] = {}
    recompute = []
    for key, var in raw.variables.items():
        name = str(key)
        shape = tuple(int(n) for n in var.shape)
        if name in extended:
            digests[name] = extend_digest(previous[name], tally.sum(name), shape)
        elif name in previous and time not in var.dims and (
                name not in written or parse_digest(previous[name])[1] == shape):
            digests[name] = previous[name]  # unchanged (rewritten with equal values)
        else:
            recompute.append(name)
    if recompute:
        values = dask.compute(*[array_digest(raw[n].variable) for n in recompute])
        digests.update(zip(recompute, values, strict=True))
    return dict(sorted(digests.items()))


def rechunk(store: str | os.PathLike[str], to: str | os.PathLike[str], *,
            chunks: str | dict[str, int] = "timeseries", version: str | None = None,
            target_bytes: int = 16 * 2**20, progress: bool = False,
            command: str | None = None, wait: float = 0.0) -> IngestResult:
    """Write a second layout of *store* (default: time series chunks) as a new store.

    dask's rechunk algorithm keeps each intermediate piece near the configured
    ``array.chunk-size``, so memory stays bounded by a few chunks per thread.

    The new store's lock is held from the check that *to* is new to the commit. The
    source is read at one snapshot (Icechunk readers are isolated from later commits), so
    its writers are not stopped.

    Parameters
    ----------
    store
        Source store (Icechunk or plain Zarr).
    to
        New Icechunk store.
    chunks
        ``auto``, ``map``, ``timeseries`` or sizes by dimension.
    version
        Tag or snapshot id of the source (default its newest commit).
    target_bytes
        Uncompressed bytes per chunk the planner aims at.
    progress
        Progress bar over the written chunks.
    command
        What to record as the command (default ``oceandata`` + the arguments).
    wait
        Seconds to wait for another writer of *to*.

    Raises
    ------
    UsageError
        *to* exists.
    StoreLocked
        Another process is writing *to*.
    DataError
        *store* is not a store, or the rechunked digests differ from the source's.
    """
    source = Path(store)
    target = Path(to)
    if not (is_icechunk(source) or is_zarr(source)):
        raise DataError(f"{source} is not a store")
    if target.exists():
        raise UsageError(f"{target} exists; give a new --to path")
    command = command or default_command()
    with store_lock(target, command=command, wait=wait):
        if target.exists():  # made by a writer that held the lock before us
            raise UsageError(f"{target} exists; give a new --to path")
        return _rechunk_locked(source, target, chunks=chunks, version=version,
                               target_bytes=target_bytes, progress=progress, command=command)


def _rechunk_locked(source: Path, target: Path, *, chunks: str | dict[str, int],
                    version: str | None, target_bytes: int, progress: bool,
                    command: str) -> IngestResult:
    snapshot, meta = version_metadata(source, version)
    ds = open_store(source, version=version)  # decoded; its encoding re-encodes it exactly
    plan = plan_dataset(ds, chunks, target_bytes=target_bytes)
    chunked, encoding = zarr_encoding(ds, plan)
    repo = open_repository(target, create=True)
    session = repo.writable_session(BRANCH)
    try:
        with dask.config.set(scheduler="threads"), _progress(progress, "rechunking"):
            chunked.to_zarr(session.store, mode="w", consolidated=False, zarr_format=3,
                            encoding=encoding)
        digests = dataset_digests(open_raw(session.store))
        mismatched = sorted(n for n, d in digests.items()
                            if meta.get("checksums", {}).get(n) not in (None, d))
        if mismatched:
            raise DataError(f"rechunked data differ from {source} in {mismatched}; nothing "
                            "was committed")
        prov = {**meta, "command": command,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "layout": chunks if isinstance(chunks, str) else dict(chunks),
                "chunks": plan, "checksums": digests,
                "derived_from": {"store": str(source.absolute()), "snapshot": snapshot}}
        message = f"rechunk {source.name}@{snapshot} to {prov['layout']}"
        new_snapshot = commit(session, target, message, metadata=prov, command=command)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return IngestResult(target, new_snapshot, True, message)
