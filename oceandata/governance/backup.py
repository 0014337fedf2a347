"""Backups, restores and restore drills of the platform, kept in a restic repository.

What one backup holds
---------------------
One restic snapshot (tag ``oceandata``) of a staging folder laid out as::

    manifest.json                    what was copied, and what it must read back as
    stores/<absolute path>/          every versioned store the platform serves
    databases/<name>.sqlite|.pgdump  the hub's, the gateway's, the allocations service's
                                     databases and the audit trail
    catalogs/<absolute path>         the catalog files (root catalog tree and <data dir>/catalogs)
    secrets/<name>                   the platform's generated secrets (the gateway database
                                     key is needed to read the gateway database), never the
                                     repository's own password

How each copy is made consistent
--------------------------------
*Stores* are copied while holding the store's write lock
(:func:`oceandata.governance.locks.store_lock`): no ingest, append, tag, publish or
garbage collection runs meanwhile, so the copy is a state some writer left. An Icechunk
repository writes every object (chunk, manifest, snapshot, transaction log) once, under a
new name, by writing a temporary file and renaming it; only the references (``refs/``)
change. The immutable objects are therefore *hard-linked* into the staging folder (a
frozen copy that costs nothing; copied when the staging folder is on another file system)
and the rest is copied. *SQLite* databases are copied with SQLite's online backup API
(:meth:`sqlite3.Connection.backup`), a transactionally consistent copy taken while the
services keep running. *PostgreSQL* databases are dumped with ``pg_dump`` (custom format)
inside a snapshot exported by a ``REPEATABLE READ`` transaction that also counts the rows,
so the counts in the manifest are those of the dump.

The manifest records, per store, the newest snapshot id of ``main`` and each variable's
digest (:func:`oceandata.ingest.checksums.array_digest`, the digest ``oceandata store
verify`` compares with the one recorded at commit), per database every table's row
count, the head (id and hash) of the audit chain, the catalog files' sha256, and the
times taken. A copy of each manifest is kept in ``<data dir>/backup/manifests/``.

The repository
--------------
``get_settings().governance.backup_repository`` (default ``<data dir>/backup/restic``,
any restic location in production), initialised on first use. Its password is generated
with :mod:`secrets`, stored mode 0600 in ``<data dir>/secrets/restic-password`` and handed
to restic through ``RESTIC_PASSWORD_FILE``: it is never on a command line, in a log or in
an output. Keep a copy of that file apart from the repository: without it the backups
cannot be read.

Drills
------
:func:`drill` restores the newest snapshot into a scratch folder and checks, with the
clock running: every store's digests against the manifest *and* against the live store
at the same snapshot; every database's row counts against the manifest and against the
live database (the live one may have grown: the deltas are reported, not hidden); the
restored audit chain verifies and its head is a record of the live chain (a prefix of
it). The report (JSON and a short Markdown) goes to ``<data dir>/drills/`` with the
measured recovery time (RTO: seconds to restore and verify) and the age of the backup
(RPO). ``oceandata store gc`` is refused unless such a drill passed on a backup of the
store newer than the garbage-collection cutoff. See docs/backups.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import get_settings
from ..errors import DataError, OceandataError, UsageError

__all__ = ["BackupError", "DrillFailed", "backup", "databases", "drill", "gc_store",
           "password_file", "repository", "restore", "shown_repository", "snapshots",
           "stores"]

#: restic tag of every snapshot this module makes
TAG = "oceandata"
#: the repository password's file name in ``<data dir>/secrets``
PASSWORD_NAME = "restic-password"
#: Icechunk folders whose objects are written once under a new name (safe to hard-link)
_IMMUTABLE = ("chunks", "manifests", "snapshots", "transactions")
_SNAPSHOT_ARG = re.compile(r"[0-9a-f]{8,64}")


class BackupError(DataError):
    """restic, pg_dump or a copy failed (the message says which and why)."""


class DrillFailed(DataError):
    """A restored copy differs from its manifest, so it is not put live (exit code 1)."""

    exit_code = 1


# --------------------------------------------------------------------------- settings

def _data_dir() -> Path:
    return Path(get_settings().data_dir).absolute()


def repository() -> str:
    """The restic repository: ``governance.backup_repository`` or ``<data dir>/backup/restic``."""
    configured = get_settings().governance.backup_repository
    return configured or str(_data_dir() / "backup" / "restic")


def shown_repository() -> str:
    """:func:`repository` as it may be printed, logged or audited: the password of a URL
    (``rest:https://user:password@host/``) replaced by ``***``, as restic shows it."""
    return re.sub(r"(://[^/@:]*:)[^/]*@", r"\1***@", repository())


def password_file() -> Path:
    """The repository password's file (generated, mode 0600, on first use).

    Returns
    -------
    Path
        ``<data dir>/secrets/restic-password``. Its content is never printed or logged.
    """
    from ..lab import secret_file

    path = _data_dir() / "secrets" / PASSWORD_NAME
    secret_file(path)  # created with os.open(..., 0o600) from secrets.token_hex(32)
    return path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_time(text: str) -> dt.datetime:
    """An ISO time (restic's nanoseconds and ``Z`` included) as an aware UTC datetime."""
    text = text.strip().replace("Z", "+00:00")
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _audit(action: str, target: str, outcome: str, detail: dict[str, Any]) -> None:
    from . import audit

    audit.record(action, actor=audit.cli_actor(), target=target, outcome=outcome,
                 source=audit.cli_source(), detail=detail)


# ----------------------------------------------------------------------------- restic

def _restic(*args: str, cwd: Path | None = None, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
    """Run restic on the repository; the password only through ``RESTIC_PASSWORD_FILE``."""
    exe = shutil.which("restic")
    if exe is None:
        raise UsageError("restic is not installed: `apt-get install restic` (Debian), or "
                         "`make sysdeps`")
    env = {k: v for k, v in os.environ.items()
           if k not in ("RESTIC_PASSWORD", "RESTIC_PASSWORD_COMMAND")}
    env.update(RESTIC_REPOSITORY=repository(), RESTIC_PASSWORD_FILE=str(password_file()))
    env.setdefault("RESTIC_CACHE_DIR", str(_data_dir() / "backup" / "cache"))
    proc = subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          check=False)
    if check and proc.returncode != 0:
        raise BackupError(f"restic {args[0]} on {shown_repository()} failed: "
                          f"{_last_line(proc.stderr) or f'exit code {proc.returncode}'}")
    return proc


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _ensure_repository() -> None:
    """Initialise the repository on first use (its password generated then)."""
    probe = _restic("cat", "config", check=False)
    if probe.returncode == 0:
        return
    local = "://" not in repository() and not re.match(r"^[a-z0-9]+:", repository())
    if (local and (Path(repository()) / "config").exists()) or \
            "wrong password" in probe.stderr:
        raise BackupError(f"the restic repository {shown_repository()} exists but cannot be opened "
                          f"with {password_file()}: {_last_line(probe.stderr)}")
    if local:
        Path(repository()).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _restic("init")


def snapshots() -> list[dict[str, Any]]:
    """The repository's oceandata snapshots, oldest first, with their drill status.

    Returns
    -------
    list of dict
        ``id``, ``short_id``, ``time`` (restic's), ``started_at`` (when the copies
        began, from the manifest kept in ``<data dir>/backup/manifests``), ``stores``,
        ``databases``, and ``drill`` (``passed``/``failed``/None: the last drill of it).
    """
    if _restic("cat", "config", check=False).returncode != 0:
        return []
    raw = json.loads(_restic("snapshots", "--json", "--tag", TAG).stdout or "[]")
    drills = _drill_reports()
    out = []
    for snap in sorted(raw, key=lambda s: s["time"]):
        manifest = _local_manifest(snap["id"]) or {}
        last = [r for r in drills if r.get("snapshot", {}).get("id") == snap["id"]]
        out.append({"id": snap["id"], "short_id": snap["short_id"],
                     "time": _iso(_parse_time(snap["time"])),
                     "started_at": manifest.get("started_at"),
                     "stores": len(manifest.get("stores", [])),
                     "databases": len([d for d in manifest.get("databases", [])
                                       if d.get("file")]),
                     "drill": None if not last else
                     ("passed" if last[-1].get("ok") else "failed")})
    return out


def _resolve_snapshot(snapshot: str) -> dict[str, Any]:
    """restic's record of *snapshot* (``latest`` or an id or a prefix of one)."""
    if snapshot != "latest" and not _SNAPSHOT_ARG.fullmatch(snapshot):
        raise UsageError(f"--snapshot {snapshot!r} is not a snapshot id: give `latest` or an "
                         "id from `oceandata admin snapshots`")
    if _restic("cat", "config", check=False).returncode != 0:
        raise UsageError(f"no backup repository at {shown_repository()}: run `oceandata admin "
                         "backup` first")
    raw = json.loads(_restic("snapshots", "--json", "--tag", TAG).stdout or "[]")
    if not raw:
        raise UsageError(f"the repository {shown_repository()} holds no oceandata backup: run "
                         "`oceandata admin backup` first")
    if snapshot == "latest":
        return max(raw, key=lambda s: _parse_time(s["time"]))
    found = [s for s in raw if s["id"].startswith(snapshot)]
    if len(found) != 1:
        why = "no" if not found else "more than one"
        raise UsageError(f"{why} oceandata snapshot matches {snapshot!r}; see `oceandata "
                         "admin snapshots`")
    return found[0]


# ------------------------------------------------------------------- what is backed up

@dataclass
class StoreSource:
    """One store the platform serves: its folder and the catalog entries naming it."""

    path: Path
    entries: list[str] = field(default_factory=list)

    @property
    def copy(self) -> str:
        """Its folder inside a backup: ``stores/<absolute path>``."""
        return "stores/" + str(self.path).lstrip("/")


@dataclass
class DatabaseSource:
    """One database: a short name and its SQLAlchemy URL."""

    name: str
    url: str

    @property
    def kind(self) -> str:
        from sqlalchemy.engine import make_url

        backend = make_url(self.url).get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise UsageError(f"the {self.name} database is {backend}; backups know sqlite "
                             "and postgresql")
        return backend

    @property
    def shown(self) -> str:
        """The URL without its password."""
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)

    @property
    def sqlite_path(self) -> Path:
        from sqlalchemy.engine import make_url

        return Path(make_url(self.url).database or "").absolute()

    @property
    def file(self) -> str:
        """Its file inside a backup."""
        return f"databases/{self.name}." + ("sqlite" if self.kind == "sqlite" else "pgdump")


def databases() -> list[DatabaseSource]:
    """The platform's databases: hub, gateway, allocations service, audit trail.

    The hub's URL is ``OCEANDATA_HUB_DB_URL`` when set (``oceandata hub up --db-url``
    hands it to the hub that way), else its default SQLite file; the gateway's is
    ``<data dir>/hub/dask-gateway.sqlite`` (hub_config/dask_gateway_config.py); the
    allocations service's :func:`oceandata.alloc.db.default_url`; the audit trail's
    ``governance.audit_url`` (default ``<data dir>/audit.sqlite``).
    """
    from ..alloc.db import default_url
    from .audit import audit_url

    data = _data_dir()
    hub = os.environ.get("OCEANDATA_HUB_DB_URL") or \
        f"sqlite:///{data / 'hub' / 'jupyterhub.sqlite'}"
    return [DatabaseSource("hub", hub),
            DatabaseSource("gateway", f"sqlite:///{data / 'hub' / 'dask-gateway.sqlite'}"),
            DatabaseSource("alloc", default_url()),
            DatabaseSource("audit", audit_url())]


def _catalog_roots() -> list[Path]:
    roots = [Path(get_settings().catalog)]
    folder = _data_dir() / "catalogs"
    if folder.is_dir():
        roots.extend(sorted(folder.glob("*.yaml")))
    return roots


def stores(warnings: list[str] | None = None) -> tuple[list[StoreSource], list[Path]]:
    """The stores the platform serves, and the catalog files that name them.

    Stores are the folders of ``icechunk`` and ``zarr`` entries (and their other chunk
    layouts) of the root catalog tree and of every catalog in ``<data dir>/catalogs``
    (``oceandata store build-samples`` and ``oceandata publish`` register there), plus
    every store folder in ``<data dir>/stores``. Sample files fetched by the registry are
    not stores (they are checked by sha256 and fetched again).

    Parameters
    ----------
    warnings
        Receives one line per catalog that could not be read (its file is still backed up).
    """
    from ..catalog.core import Catalog, open_catalog
    from ..ingest.store import is_icechunk, is_zarr

    settings = get_settings()
    samples = [Path(p).absolute() for p in (settings.sample_data, settings.sample_cache) if p]
    found: dict[Path, StoreSource] = {}
    files: dict[Path, None] = {}

    def add(path: Path, entry: str | None) -> None:
        path = path.absolute()
        if any(path.is_relative_to(s) for s in samples):
            return
        if not (is_icechunk(path) or is_zarr(path)):
            return
        item = found.setdefault(path, StoreSource(path))
        if entry and entry not in item.entries:
            item.entries.append(entry)

    def walk(cat: Catalog) -> None:
        files[cat.path] = None
        for child in cat.children.values():
            walk(child)

    for root in _catalog_roots():
        if not root.is_file():
            continue
        files[root.absolute()] = None
        try:
            cat = open_catalog(root)
        except OceandataError as exc:
            if warnings is not None:
                warnings.append(f"catalog {root} not read ({exc}); its file is backed up, "
                                "its stores only if under <data dir>/stores")
            continue
        walk(cat)
        for entry in cat.entries.values():
            files[entry.source_file] = None
            if entry.driver not in ("icechunk", "zarr"):
                continue
            urls = entry.args.get("urlpath")
            for url in [urls] if isinstance(urls, str) else list(urls or []):
                if "://" not in str(url):
                    add(Path(url), entry.name)
            for layout in entry.layouts.values():
                add(Path(layout), entry.name)
    negative = settings.governance.negative_list or \
        Path(settings.catalog).parent / "negative-list.yaml"
    if Path(negative).is_file():
        files[Path(negative).absolute()] = None
    folder = _data_dir() / "stores"
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if not path.name.startswith(".") and ".before-restore-" not in path.name:
                add(path, None)
    return sorted(found.values(), key=lambda s: str(s.path)), sorted(files)


# ----------------------------------------------------------------------------- copies

def _freeze_copy(src: Path, dest: Path) -> int:
    """Copy a store folder: Icechunk's write-once objects hard-linked, the rest copied.

    Returns the number of bytes the copy holds.
    """
    from ..ingest.store import is_icechunk

    immutable = is_icechunk(src)
    total = 0
    for folder, dirs, names in os.walk(src):
        rel = Path(folder).relative_to(src)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        dirs.sort()
        for name in names:
            source, target = Path(folder) / name, dest / rel / name
            total += source.stat().st_size
            if immutable and rel.parts and rel.parts[0] in _IMMUTABLE:
                try:
                    os.link(source, target)
                    continue
                except OSError:  # another file system, or linking not permitted
                    pass
            shutil.copy2(source, target)
    return total


def _digests(path: Path, version: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """Each variable's digest at *version*, and the variables that could not be read."""
    import dask

    from ..ingest.checksums import array_digest
    from ..ingest.store import open_store

    ds = open_store(path, version=version, decode=False)
    names = sorted(map(str, ds.variables))
    try:
        values = dask.compute(*[array_digest(ds[n].variable) for n in names],
                              scheduler="threads")
        return dict(zip(names, values, strict=True)), {}
    except Exception:  # a damaged chunk fails to decode: find which variable, below
        pass
    digests, problems = {}, {}
    for name in names:
        try:
            (digests[name],) = dask.compute(array_digest(ds[name].variable),
                                            scheduler="threads")
        except Exception as exc:  # as `store verify`: reported by name, not raised
            problems[name] = _first_line(exc)
    return digests, problems


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip(" |x`-") for ln in str(exc).splitlines() if ln.strip(" |x`-")]
    return lines[0] if lines else type(exc).__name__


def _store_record(source: StoreSource, copy: Path) -> dict[str, Any]:
    """Manifest record of a store's frozen copy: newest snapshot, digests, tags."""
    from ..ingest.store import is_icechunk, log, version_metadata

    record: dict[str, Any] = {"path": str(source.path), "entries": source.entries,
                              "copy": source.copy,
                              "kind": "icechunk" if is_icechunk(copy) else "zarr"}
    snapshot, meta = version_metadata(copy)
    record["snapshot"] = snapshot
    if record["kind"] == "icechunk":
        versions = log(copy)
        record["commits"] = len(versions)
        record["written_at"] = versions[0].written_at if versions else None
        record["tags"] = {t: v.id for v in versions for t in v.tags}
    digests, problems = _digests(copy, snapshot if record["kind"] == "icechunk" else None)
    record["digests"] = digests
    recorded = meta.get("checksums") or {}
    record["problems"] = [f"variable {n!r} cannot be read: {why}" for n, why in problems.items()]
    record["problems"] += [f"variable {n!r} digest {digests[n]} differs from the one recorded "
                           f"at commit {recorded[n]}" for n in sorted(recorded)
                           if n in digests and digests[n] != recorded[n]]
    record["checked_against_commit"] = bool(recorded)
    return record


def _sqlite_tables(conn: sqlite3.Connection) -> dict[str, int]:
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name")]
    return {n: conn.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0] for n in names}


def _sqlite_head(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The audit chain's head (newest record's id and hash), if the table is there."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                        "name = 'audit_log'").fetchone():
        return None
    row = conn.execute("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    return {"id": row[0], "hash": row[1]} if row else {"id": None, "hash": None}


def _open_sqlite_ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)


def _sqlite_copy(src: Path, dest: Path) -> dict[str, Any]:
    """Online backup of a live SQLite database into *dest*; counts of the copy."""
    os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # private copy
    source = _open_sqlite_ro(src)
    try:
        target = sqlite3.connect(dest)
        try:
            source.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            return {"tables": _sqlite_tables(target), "audit_head": _sqlite_head(target)}
        finally:
            target.close()
    finally:
        source.close()


def _pg_connect(url: str) -> Any:
    import psycopg2
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return psycopg2.connect(host=u.host, port=u.port, dbname=u.database, user=u.username,
                            password=u.password, connect_timeout=30)


def _pg_env(url: str) -> dict[str, str]:
    """libpq's environment for *url* (the password never on a command line)."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    env = dict(os.environ)
    for key, value in (("PGHOST", u.host), ("PGPORT", u.port), ("PGUSER", u.username),
                       ("PGDATABASE", u.database), ("PGPASSWORD", u.password)):
        if value is not None:
            env[key] = str(value)
    return env


_PG_TABLES = ("SELECT table_schema, table_name FROM information_schema.tables "
              "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN "
              "('pg_catalog', 'information_schema') ORDER BY 1, 2")


def _pg_counts(cur: Any) -> tuple[dict[str, int], dict[str, Any] | None]:
    from psycopg2 import sql

    cur.execute(_PG_TABLES)
    tables: dict[str, int] = {}
    head = None
    for schema, name in cur.fetchall():
        cur.execute(sql.SQL("SELECT COUNT(*) FROM {}.{}").format(sql.Identifier(schema),
                                                                 sql.Identifier(name)))
        tables[f"{schema}.{name}"] = cur.fetchone()[0]
        if name == "audit_log":
            cur.execute(sql.SQL("SELECT id, hash FROM {}.audit_log ORDER BY id DESC LIMIT 1")
                        .format(sql.Identifier(schema)))
            row = cur.fetchone()
            head = {"id": row[0], "hash": row[1]} if row else {"id": None, "hash": None}
    return tables, head


def _pg_dump(url: str, dest: Path) -> dict[str, Any]:
    """``pg_dump -Fc`` in a snapshot exported by the transaction that counts the rows."""
    if shutil.which("pg_dump") is None:
        raise UsageError("pg_dump is not installed: `apt-get install postgresql-client`")
    os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # private dump
    conn = _pg_connect(url)
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_export_snapshot()")
            (snapshot,) = cur.fetchone()
            tables, head = _pg_counts(cur)
            proc = subprocess.run(["pg_dump", "--format=custom", "--no-password",
                                   f"--snapshot={snapshot}", f"--file={dest}"],
                                  env=_pg_env(url), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BackupError(f"pg_dump of {DatabaseSource('db', url).shown} failed: "
                              f"{_last_line(proc.stderr)}")
        return {"tables": tables, "audit_head": head}
    finally:
        conn.rollback()
        conn.close()


def _pg_dump_counts(dump: Path) -> dict[str, int]:
    """Rows of every table in a custom-format dump, read by ``pg_restore`` (no server)."""
    proc = subprocess.run(["pg_restore", "--data-only", "--file=-", str(dump)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BackupError(f"pg_restore cannot read {dump.name}: {_last_line(proc.stderr)}")
    counts: dict[str, int] = {}
    table = None
    for line in proc.stdout.splitlines():
        if table is None:
            if line.startswith("COPY ") and line.endswith("FROM stdin;"):
                table = line[5:].split(" (")[0].split(" FROM")[0].replace('"', "")
                counts[table] = 0
        elif line == "\\.":
            table = None
        else:
            counts[table] += 1
    return counts


def _database_record(db: DatabaseSource, staging: Path) -> dict[str, Any]:
    record: dict[str, Any] = {"name": db.name, "kind": db.kind, "url": db.shown}
    if db.kind == "sqlite" and not db.sqlite_path.is_file():
        record["absent"] = True  # the service never ran here
        return record
    dest = staging / db.file
    dest.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    record.update(_sqlite_copy(db.sqlite_path, dest) if db.kind == "sqlite"
                  else _pg_dump(db.url, dest))
    record["file"] = db.file
    record["sha256"] = _sha256(dest)
    record["seconds"] = round(time.monotonic() - started, 3)
    return record


def _sha256(path: Path) -> str:
    from ..ingest.checksums import file_sha256

    return file_sha256(path)


# ----------------------------------------------------------------------------- backup

@contextlib.contextmanager
def _exclusive(name: str) -> Iterator[None]:
    """One ``admin backup`` at a time per data dir (a flock on ``backup/<name>.lock``)."""
    path = _data_dir() / "backup" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path, "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise UsageError(f"another `oceandata admin {name}` is running on "
                             f"{_data_dir()} ({fh.read().strip() or 'unknown'}); wait for "
                             "it") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        yield


def backup(*, wait: float = 120.0, echo: Callable[[str], None] | None = None
           ) -> dict[str, Any]:
    """Take one consistent backup of stores, databases, catalogs and secrets.

    Parameters
    ----------
    wait
        Seconds to wait for each store's write lock (a running ingest finishes first);
        :class:`~oceandata.governance.locks.StoreLocked` after that.
    echo
        Called with one line per step.

    Returns
    -------
    dict
        The manifest, with ``snapshot`` (restic's id and short id, bytes added) and
        ``seconds`` (total, copies, upload).

    Raises
    ------
    BackupError
        restic, pg_dump or a copy failed (nothing is recorded as a backup).
    """
    try:
        return _backup(wait=wait, echo=echo)
    except OceandataError as exc:
        _audit("backup.create", f"backup:{shown_repository()}", "failed", {"error": str(exc)})
        raise


def _backup(*, wait: float, echo: Callable[[str], None] | None) -> dict[str, Any]:
    from ..atomic import remove_path
    from .locks import store_lock

    say = echo or (lambda line: None)
    with _exclusive("backup"):
        started, clock = _now(), time.monotonic()
        _ensure_repository()
        staging = _data_dir() / "backup" / "staging"
        remove_path(staging)
        staging.mkdir(parents=True, mode=0o700)
        try:
            warnings: list[str] = []
            sources, catalog_files = stores(warnings)
            manifest: dict[str, Any] = {
                "format": 1, "started_at": _iso(started), "host": socket.gethostname(),
                "data_dir": str(_data_dir()), "stores": [], "databases": [],
                "catalogs": [], "secrets": [], "warnings": warnings}
            for source in sources:
                copy = staging / source.copy
                asked = time.monotonic()
                with store_lock(source.path, command="admin backup", wait=wait):
                    held = time.monotonic()
                    size = _freeze_copy(source.path, copy)
                    copied_at = _now()
                    locked = time.monotonic() - held
                record = _store_record(source, copy)
                record.update(bytes=size, copied_at=_iso(copied_at),
                              lock_wait_seconds=round(held - asked, 3),
                              lock_held_seconds=round(locked, 3))
                manifest["stores"].append(record)
                say(f"store {source.path}: snapshot {record['snapshot']}, "
                    f"{len(record['digests'])} variables"
                    + (f", {len(record['problems'])} PROBLEMS" if record["problems"] else ""))
            for db in databases():
                record = _database_record(db, staging)
                manifest["databases"].append(record)
                say(f"database {db.name}: " + ("absent" if record.get("absent") else
                    f"{sum(record['tables'].values())} rows in {len(record['tables'])} "
                    "tables"))
            for path in catalog_files:
                dest = staging / "catalogs" / str(path).lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
                manifest["catalogs"].append({"path": str(path), "sha256": _sha256(dest)})
            secrets_dir = _data_dir() / "secrets"
            if secrets_dir.is_dir():
                (staging / "secrets").mkdir(mode=0o700)
                for path in sorted(secrets_dir.iterdir()):
                    if path.is_file() and path.name != PASSWORD_NAME:
                        shutil.copy2(path, staging / "secrets" / path.name)
                        manifest["secrets"].append(path.name)
            manifest["copies_seconds"] = round(time.monotonic() - clock, 3)
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=1),
                                                   encoding="utf-8")
            upload = time.monotonic()
            proc = _restic("backup", "--json", "--tag", TAG, ".", cwd=staging)
        finally:
            remove_path(staging)
        summary = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
        summary = [m for m in summary if m.get("message_type") == "summary"]
        if not summary:
            raise BackupError("restic backup printed no summary; see `restic snapshots`")
        snap = _resolve_snapshot(summary[-1]["snapshot_id"])
        manifest["snapshot"] = {"id": snap["id"], "short_id": snap["short_id"],
                                "time": _iso(_parse_time(snap["time"])),
                                "bytes_added": summary[-1].get("data_added"),
                                "files": summary[-1].get("total_files_processed")}
        manifest["seconds"] = {"copies": manifest.pop("copies_seconds"),
                               "upload": round(time.monotonic() - upload, 3),
                               "total": round(time.monotonic() - clock, 3)}
        _write_json(_data_dir() / "backup" / "manifests" / f"{snap['id']}.json", manifest)
    failing = [s["path"] for s in manifest["stores"] if s["problems"]]
    _audit("backup.create", f"backup:{snap['short_id']}", "failed" if failing else "ok",
           {"snapshot": snap["id"], "stores": [s["path"] for s in manifest["stores"]],
            "databases": [d["name"] for d in manifest["databases"] if d.get("file")],
            "seconds": manifest["seconds"]["total"], "stores_with_problems": failing})
    return manifest


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    from ..atomic import atomic_output

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def _local_manifest(snapshot_id: str) -> dict[str, Any] | None:
    path = _data_dir() / "backup" / "manifests" / f"{snapshot_id}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# ---------------------------------------------------------------------------- restore

_RESTORE_ERROR = re.compile(r"ignoring error for (\S+): (.*)")


def _restic_restore(snap: dict[str, Any], target: Path) -> list[tuple[str, str]]:
    """Restore *snap* into *target*; return restic's (file, error) pairs."""
    proc = _restic("restore", snap["id"], "--target", str(target), check=False)
    errors = [(m.group(1), m.group(2)) for m in map(_RESTORE_ERROR.search,
                                                     proc.stderr.splitlines()) if m]
    if proc.returncode != 0 and not errors:
        raise BackupError(f"restic restore of {snap['short_id']} failed: "
                          f"{_last_line(proc.stderr)}")
    return errors


def _read_manifest(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"the restored backup has no readable manifest.json ({exc}); it "
                          "was not made by `oceandata admin backup`") from exc


def restore(snapshot: str, to: str | os.PathLike[str], *, in_place: bool = False,
            wait: float = 120.0) -> dict[str, Any]:
    """Restore a backup into the folder *to*; optionally put its stores back live.

    Parameters
    ----------
    snapshot
        ``latest`` or a snapshot id (or a unique prefix) from :func:`snapshots`.
    to
        A new or empty folder (written under a temporary name, renamed when complete).
    in_place
        Also put every store back at its live path, under its write lock: the restored
        copy's digests are checked against the manifest first, the live folder is kept
        beside it as ``<name>.before-restore-<time>`` and the restored one renamed in.
        Databases are never replaced in place (see :func:`procedure`).
    wait
        Seconds to wait for each store's lock (``in_place``).

    Returns
    -------
    dict
        ``snapshot``, ``to``, ``manifest``, ``seconds``, ``procedure`` (the lines that put
        the rest live) and, with ``in_place``, ``replaced`` (store → the kept old folder).
    """
    from ..atomic import atomic_output

    target = Path(to).absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"--to {target} is not empty: give a new or empty folder")
    snap = _resolve_snapshot(snapshot)
    clock = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_output(target) as tmp:
            errors = _restic_restore(snap, tmp)
            if errors:
                raise BackupError(f"restic could not restore {len(errors)} files of "
                                  f"{snap['short_id']} (first: {errors[0][0]}: "
                                  f"{errors[0][1]}); run `restic check --read-data`")
            manifest = _read_manifest(tmp)
    except OceandataError as exc:
        _audit("backup.restore", f"backup:{snap['short_id']}", "failed",
               {"to": str(target), "error": str(exc)})
        raise
    replaced: dict[str, str] = {}
    if in_place:
        replaced = _put_stores_live(target, manifest, wait)
    seconds = round(time.monotonic() - clock, 3)
    _audit("backup.restore", f"backup:{snap['short_id']}", "ok",
           {"snapshot": snap["id"], "to": str(target), "in_place": in_place,
            "stores_replaced": sorted(replaced), "seconds": seconds})
    return {"snapshot": snap["id"], "to": str(target), "manifest": manifest,
            "seconds": seconds, "replaced": replaced,
            "procedure": procedure(target, manifest, snap["id"], stores_done=in_place)}


def _put_stores_live(folder: Path, manifest: dict[str, Any], wait: float) -> dict[str, str]:
    from ..atomic import remove_path
    from .locks import store_lock

    bad = []
    for record in manifest["stores"]:
        copy = folder / record["copy"]
        digests, problems = _digests(copy, record["snapshot"] if record["kind"] == "icechunk"
                                     else None)
        if problems or digests != record["digests"]:
            bad.append(record["path"])
    if bad:
        raise DrillFailed(f"not restored in place: the restored copy of {', '.join(bad)} "
                          "differs from the backup's manifest; nothing live was changed")
    stamp = _now().strftime("%Y%m%dT%H%M%SZ")
    replaced = {}
    for record in manifest["stores"]:
        live = Path(record["path"])
        live.parent.mkdir(parents=True, exist_ok=True)
        incoming = live.with_name(f".{live.name}.restore-{os.getpid()}")
        remove_path(incoming)
        with store_lock(live, command="admin restore --in-place", wait=wait):
            try:
                shutil.copytree(folder / record["copy"], incoming, symlinks=True)
            except BaseException:
                remove_path(incoming)
                raise
            if live.exists():
                kept = live.with_name(f"{live.name}.before-restore-{stamp}")
                os.rename(live, kept)
                replaced[str(live)] = str(kept)
            else:
                replaced[str(live)] = ""
            os.rename(incoming, live)
    return replaced


def procedure(folder: Path, manifest: dict[str, Any], snapshot: str, *,
              stores_done: bool = False) -> list[str]:
    """The steps that put a restored backup live, with this backup's paths filled in.

    Parameters
    ----------
    folder
        Where the backup was restored.
    manifest
        Its ``manifest.json``.
    snapshot
        Its restic snapshot id.
    stores_done
        The stores were already put back (``--in-place``).
    """
    steps = ["1. Stop the platform (Ctrl-C the `oceandata hub up` terminal, or stop its "
             "service) so nothing writes the databases."]
    if stores_done:
        steps.append("2. Stores: already put back by --in-place (the old folders are kept "
                     "as <name>.before-restore-<time>).")
    else:
        steps.append(f"2. Stores: `oceandata admin restore --snapshot {snapshot[:8]} --to "
                     "<new folder> --in-place`, or by hand for each:")
        for s in manifest["stores"]:
            steps.append(f"   mv {s['path']} {s['path']}.old && cp -a {folder / s['copy']} "
                         f"{s['path']}")
    steps.append("3. Databases:")
    for d in manifest["databases"]:
        if d.get("absent"):
            continue
        if d["kind"] == "sqlite":
            live = d["url"].split("sqlite:///", 1)[-1]
            steps.append(f"   rm -f {live}-wal {live}-shm && cp {folder / d['file']} {live}")
        else:
            steps.append(f"   pg_restore --clean --if-exists --no-owner -d <{d['url']}> "
                         f"{folder / d['file']}")
    steps.append(f"4. Catalogs: cp -a {folder / 'catalogs'}/<path> /<path> for each changed "
                 "file; secrets: cp -p "
                 f"{folder / 'secrets'}/* {Path(manifest['data_dir']) / 'secrets'}/ "
                 "(the gateway database needs its key).")
    steps.append("5. Start the platform (`oceandata hub up`), then `oceandata admin drill` "
                 "and `oceandata audit verify`.")
    return steps


# ------------------------------------------------------------------------------ drill

def _drill_reports() -> list[dict[str, Any]]:
    """Every drill report, oldest first."""
    folder = _data_dir() / "drills"
    out = []
    for path in sorted(folder.glob("drill-*.json")) if folder.is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            out.append(json.loads(path.read_text(encoding="utf-8")))
    return out


def _live_counts(record: dict[str, Any], db: DatabaseSource | None) -> dict[str, int] | None:
    if db is None:
        return None
    if db.kind == "sqlite":
        if not db.sqlite_path.is_file():
            return None
        conn = _open_sqlite_ro(db.sqlite_path)
        try:
            return _sqlite_tables(conn)
        finally:
            conn.close()
    conn = _pg_connect(db.url)
    try:
        with conn.cursor() as cur:
            return _pg_counts(cur)[0]
    finally:
        conn.rollback()
        conn.close()


def _hash_of(url: str, record_id: int) -> str | None:
    """The hash of audit record *record_id* in the trail at *url* (None: no such record)."""
    from sqlalchemy import text

    from .audit import engine

    with engine(url).connect() as conn:
        return conn.execute(text("SELECT hash FROM audit_log WHERE id = :i"),
                            {"i": record_id}).scalar()


def _check_audit(restored: Path, record: dict[str, Any], live: DatabaseSource | None
                 ) -> tuple[dict[str, Any], list[str]]:
    head = record.get("audit_head")
    out: dict[str, Any] = {"head": head}
    failures: list[str] = []
    if head is None or head.get("id") is None:
        out["chain"] = "empty"
        return out, failures
    if record["kind"] != "sqlite":
        out["chain"] = "not checked (PostgreSQL dump: restore it into a scratch database and "\
                       "run `oceandata audit verify`)"
        return out, failures
    from .audit import verify

    url = f"sqlite:///{restored / record['file']}"
    checked = verify(url=url)
    out["restored_chain"] = checked.as_dict()
    if not checked.ok:
        failures.append(f"audit trail: the restored chain does not verify ({checked.message})")
    if _hash_of(url, head["id"]) != head["hash"]:
        failures.append(f"audit trail: the restored head {head['id']} is not the manifest's")
    if live is not None:
        at_live = _hash_of(live.url, head["id"])
        out["live_has_head"] = at_live == head["hash"]
        if at_live != head["hash"]:
            failures.append(f"audit trail: record {head['id']} of the backup is "
                            + ("missing from" if at_live is None else "different in")
                            + " the live chain (the backup's chain is not a prefix of it)")
    return out, failures


def drill(*, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Restore the newest backup into a scratch folder and verify it against the live system.

    Returns
    -------
    dict
        The report (also written as ``<data dir>/drills/drill-<time>.json`` and ``.md``):
        ``ok``, ``failures`` (one line each), ``snapshot``, ``rto_seconds``
        (restore + verification), ``restore_seconds``, ``verify_seconds``,
        ``rpo_seconds`` (age of the backup when the drill began), ``stores``,
        ``databases``, ``audit``, ``catalogs``.

    Raises
    ------
    BackupError, UsageError
        There is no backup, or restic cannot restore it at all (audited as failed). A
        restore with damaged files, or any difference, is a report with ``ok`` false
        (``oceandata admin drill`` then exits 1).
    """
    try:
        return _drill(echo=echo)
    except OceandataError as exc:
        _audit("backup.drill", f"backup:{shown_repository()}", "failed", {"error": str(exc)})
        raise


def _drill(*, echo: Callable[[str], None] | None) -> dict[str, Any]:
    from ..atomic import remove_path

    say = echo or (lambda line: None)
    began = _now()
    snap = _resolve_snapshot("latest")
    scratch = _data_dir() / "drills" / f".scratch-{os.getpid()}"
    remove_path(scratch)
    scratch.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    failures: list[str] = []
    report: dict[str, Any] = {"drill_at": _iso(began), "host": socket.gethostname(),
                              "repository": shown_repository()}
    try:
        clock = time.monotonic()
        errors = _restic_restore(snap, scratch)
        restored_in = time.monotonic() - clock
        manifest = _read_manifest(scratch)
        say(f"restored {snap['short_id']} in {restored_in:.1f} s")
        backup_at = _parse_time(manifest["started_at"])
        report["snapshot"] = {"id": snap["id"], "short_id": snap["short_id"],
                              "time": _iso(_parse_time(snap["time"])),
                              "started_at": manifest["started_at"]}
        for name, why in errors:  # restic names files from the snapshot's root
            inside = name.lstrip("/")
            owner = next((s for s in manifest["stores"]
                          if inside.startswith(s["copy"] + "/")), None)
            failures.append(f"store {owner['path']}: restic could not restore "
                            f"{inside[len(owner['copy']) + 1:]} ({why})" if owner else
                            f"restic could not restore {inside} ({why})")
        report["restic_errors"] = [f"{n}: {w}" for n, w in errors]
        report["stores"] = [_drill_store(scratch, rec, failures, say)
                            for rec in manifest["stores"]]
        report["databases"], report["audit"] = _drill_databases(scratch, manifest, failures)
        report["catalogs"] = _drill_catalogs(scratch, manifest, failures)
        missing = [n for n in manifest.get("secrets", []) if not (scratch / "secrets" / n)
                   .is_file()]
        failures.extend(f"secret {n} missing from the restored copy" for n in missing)
        report["secrets"] = {"restored": len(manifest.get("secrets", [])) - len(missing),
                             "missing": missing}
        report["restore_seconds"] = round(restored_in, 3)
        report["verify_seconds"] = round(time.monotonic() - clock - restored_in, 3)
        report["rto_seconds"] = round(time.monotonic() - clock, 3)
        report["rpo_seconds"] = round((began - backup_at).total_seconds(), 3)
    finally:
        remove_path(scratch)
    report["ok"] = not failures
    report["failures"] = failures
    stamp = began.strftime("%Y%m%dT%H%M%S") + f"{began.microsecond // 1000:03d}Z"
    folder = _data_dir() / "drills"
    _write_json(folder / f"drill-{stamp}.json", report)
    from ..atomic import atomic_output

    with atomic_output(folder / f"drill-{stamp}.md") as tmp:
        tmp.write_text(drill_markdown(report), encoding="utf-8")
    report["report"] = str(folder / f"drill-{stamp}.json")
    _audit("backup.drill", f"backup:{snap['short_id']}", "ok" if report["ok"] else "failed",
           {"snapshot": snap["id"], "rto_seconds": report["rto_seconds"],
            "rpo_seconds": report["rpo_seconds"], "failures": failures[:20],
            "report": report["report"]})
    return report


def _drill_store(scratch: Path, rec: dict[str, Any], failures: list[str],
                 say: Callable[[str], None]) -> dict[str, Any]:
    from ..ingest.store import is_icechunk, log

    version = rec["snapshot"] if rec["kind"] == "icechunk" else None
    out: dict[str, Any] = {"path": rec["path"], "entries": rec["entries"],
                           "snapshot": rec["snapshot"], "variables": len(rec["digests"])}
    try:
        restored, problems = _digests(scratch / rec["copy"], version)
    except OceandataError as exc:
        restored, problems = {}, {"*": str(exc)}
    wrong = sorted(n for n in rec["digests"] if restored.get(n) != rec["digests"][n])
    out["restored_ok"] = not wrong and not problems
    if not out["restored_ok"]:
        names = sorted(set(wrong) | set(problems) - {"*"})
        why = problems.get("*") or f"variables {', '.join(map(repr, names))} differ"
        failures.append(f"store {rec['path']}: the restored copy does not match the "
                        f"backup's manifest ({why})")
    live = Path(rec["path"])
    if not (is_icechunk(live) or (rec["kind"] == "zarr" and live.is_dir())):
        out["live"] = "missing"
        failures.append(f"store {rec['path']}: the live store is missing")
        say(f"store {rec['path']}: restored {'ok' if out['restored_ok'] else 'FAILED'}, "
            "live missing")
        return out
    try:
        live_digests, live_problems = _digests(live, version)
    except OceandataError as exc:  # the snapshot is no longer in the live store (gc)
        out["live"] = f"version not comparable: {exc}"
        say(f"store {rec['path']}: restored {'ok' if out['restored_ok'] else 'FAILED'}, "
            "live no longer holds the snapshot")
        return out
    live_wrong = sorted(n for n in rec["digests"] if live_digests.get(n) != rec["digests"][n])
    out["live"] = "same" if not live_wrong and not live_problems else "different"
    if out["live"] != "same":
        names = sorted(set(live_wrong) | set(live_problems))
        failures.append(f"store {rec['path']}: the live store at {rec['snapshot']} differs "
                        f"from the backup (variables {', '.join(map(repr, names))})")
    if rec["kind"] == "icechunk":
        ids = [v.id for v in log(live)]
        out["live_newer_commits"] = ids.index(rec["snapshot"]) if rec["snapshot"] in ids \
            else None
    say(f"store {rec['path']}: restored {'ok' if out['restored_ok'] else 'FAILED'}, "
        f"live {out['live']}")
    return out


def _drill_databases(scratch: Path, manifest: dict[str, Any], failures: list[str]
                     ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    live_dbs = {d.name: d for d in databases()}
    out, audit_out = [], {"checked": False}
    for rec in manifest["databases"]:
        if rec.get("absent"):
            out.append({"name": rec["name"], "absent": True})
            continue
        path = scratch / rec["file"]
        item: dict[str, Any] = {"name": rec["name"], "kind": rec["kind"]}
        try:
            if rec["kind"] == "sqlite":
                conn = _open_sqlite_ro(path)
                try:
                    restored = _sqlite_tables(conn)
                finally:
                    conn.close()
            else:
                restored = _pg_dump_counts(path)
        except (sqlite3.Error, OSError, OceandataError) as exc:
            failures.append(f"database {rec['name']}: the restored copy cannot be read "
                            f"({_first_line(exc)})")
            out.append({**item, "readable": False})
            continue
        live_db = live_dbs.get(rec["name"])
        if live_db is not None and live_db.shown != rec["url"]:
            live_db = None  # configured elsewhere now: nothing live to compare with
        live = _live_counts(rec, live_db)
        tables = {}
        for table in sorted(set(rec["tables"]) | set(restored)):
            backed, got = rec["tables"].get(table), restored.get(table)
            row = {"backup": backed, "restored": got}
            if live is not None:
                row["live"] = live.get(table)
                if row["live"] is not None and got is not None:
                    row["delta"] = row["live"] - got
            tables[table] = row
            if backed != got:
                failures.append(f"database {rec['name']}: table {table} restored with {got} "
                                f"rows, the backup counted {backed}")
        item["tables"] = tables
        item["live"] = "compared" if live is not None else "absent"
        out.append(item)
        if rec["name"] == "audit":
            audit_out, problems = _check_audit(scratch, rec, live_db)
            audit_out["checked"] = True
            failures.extend(problems)
    return out, audit_out


def _drill_catalogs(scratch: Path, manifest: dict[str, Any], failures: list[str]
                    ) -> dict[str, Any]:
    changed_live = []
    for rec in manifest["catalogs"]:
        restored = scratch / "catalogs" / rec["path"].lstrip("/")
        if not restored.is_file() or _sha256(restored) != rec["sha256"]:
            failures.append(f"catalog {rec['path']}: the restored copy differs from the backup")
        live = Path(rec["path"])
        if not live.is_file() or _sha256(live) != rec["sha256"]:
            changed_live.append(rec["path"])
    return {"files": len(manifest["catalogs"]), "changed_since_backup": changed_live}


def drill_markdown(report: dict[str, Any]) -> str:
    """The short Markdown form of a drill report."""
    snap = report.get("snapshot", {})
    lines = [f"# Restore drill {report['drill_at']}: {'PASSED' if report['ok'] else 'FAILED'}",
             "",
             f"- backup: restic snapshot `{snap.get('short_id')}` of {snap.get('started_at')} "
             f"({report.get('repository')})",
             f"- RTO (restore + verification): {report.get('rto_seconds')} s "
             f"(restore {report.get('restore_seconds')} s, verification "
             f"{report.get('verify_seconds')} s)",
             f"- RPO (age of the backup at the drill): {report.get('rpo_seconds')} s", "",
             "| store | variables | restored | live | newer live commits |",
             "| --- | --- | --- | --- | --- |"]
    for s in report.get("stores", []):
        lines.append(f"| {s['path']} | {s['variables']} | "
                     f"{'ok' if s['restored_ok'] else 'FAILED'} | {s['live']} | "
                     f"{s.get('live_newer_commits', '')} |")
    lines += ["", "| database | tables | rows (backup) | rows (live now) |",
              "| --- | --- | --- | --- |"]
    for d in report.get("databases", []):
        if d.get("absent") or "tables" not in d:
            lines.append(f"| {d['name']} | {'absent' if d.get('absent') else 'unreadable'} "
                         "| | |")
            continue
        rows = sum(r["restored"] or 0 for r in d["tables"].values())
        live = sum(r.get("live") or 0 for r in d["tables"].values())
        lines.append(f"| {d['name']} | {len(d['tables'])} | {rows} | "
                     f"{live if d['live'] == 'compared' else 'n/a'} |")
    audit = report.get("audit", {})
    if audit.get("head"):
        lines += ["", f"Audit chain head: record {audit['head'].get('id')}; restored chain "
                  f"{'verifies' if audit.get('restored_chain', {}).get('ok') else 'BROKEN'}; "
                  f"in the live chain: {'yes' if audit.get('live_has_head') else 'NO'}"]
    if report["failures"]:
        lines += ["", "## Failures", ""] + [f"- {f}" for f in report["failures"]]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------- gc

def verified_backup_for(store: Path, cutoff: dt.datetime) -> dict[str, Any] | None:
    """The newest passed drill of a backup holding *store* that began after *cutoff*."""
    store = store.absolute()
    best = None
    for report in _drill_reports():
        started = report.get("snapshot", {}).get("started_at")
        if not report.get("ok") or not started or _parse_time(started) <= cutoff:
            continue
        if any(s["path"] == str(store) and s.get("restored_ok")
               for s in report.get("stores", [])):
            best = report
    return best


def gc_store(store: str | os.PathLike[str], *, older_than: dt.datetime,
             wait: float = 0.0) -> dict[str, Any]:
    """Expire a store's snapshots older than *older_than* and delete what they alone held.

    Icechunk's ``Repository.expire_snapshots`` then ``Repository.garbage_collect`` (both
    irreversible), under the store's write lock. Refused unless a backup holding this
    store, begun after *older_than*, passed a restore drill and is still in the
    repository: everything deleted is then still in that backup.

    Parameters
    ----------
    store
        An Icechunk store.
    older_than
        The cutoff (aware datetime).
    wait
        Seconds to wait for the store's lock.

    Returns
    -------
    dict
        ``expired`` (snapshot ids), the garbage collector's counts, the ``backup`` relied on.
    """
    from ..ingest.store import is_icechunk, open_repository
    from .locks import store_lock

    path = Path(store).absolute()
    if not is_icechunk(path):
        raise UsageError(f"{path} is not an Icechunk store; gc applies to versioned stores")
    if older_than.tzinfo is None:
        raise UsageError("the gc cutoff needs a time zone")
    report = verified_backup_for(path, older_than)
    if report is not None:
        present = {s["id"] for s in snapshots()}
        if report["snapshot"]["id"] not in present:
            report = None
    if report is None:
        _audit("store.gc", f"store:{path}", "denied", {"cutoff": _iso(older_than),
                                                       "reason": "no drilled backup"})
        raise UsageError(f"store gc {path} refused: no backup of it taken after the cutoff "
                         f"{_iso(older_than)} has passed a restore drill; run `oceandata "
                         "admin backup` then `oceandata admin drill`")
    with store_lock(path, command="store gc", wait=wait):
        repo = open_repository(path)
        expired = sorted(repo.expire_snapshots(older_than=older_than))
        summary = repo.garbage_collect(older_than)
    result = {"store": str(path), "cutoff": _iso(older_than), "expired": expired,
              "backup": report["snapshot"]["id"], "drill": report["drill_at"],
              **{k: int(getattr(summary, k)) for k in (
                  "snapshots_deleted", "manifests_deleted", "chunks_deleted",
                  "attributes_deleted", "transaction_logs_deleted", "bytes_deleted")}}
    _audit("store.gc", f"store:{path}", "ok", {k: v for k, v in result.items()
                                               if k != "store"})
    return result


def cutoff_days(days: float) -> dt.datetime:
    """``now - days`` (UTC)."""
    if not days > 0:
        raise UsageError(f"--older-than {days} is not a positive number of days")
    return _now() - dt.timedelta(days=days)
