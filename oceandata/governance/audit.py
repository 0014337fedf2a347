"""The platform's one audit trail: append-only, hash-chained, in SQLite or PostgreSQL.

Every service records what happened through :func:`record`::

    from oceandata.governance import audit
    audit.record("hub.login", actor="alice", target="user:alice", outcome="ok",
                 source="127.0.0.1", detail={"authenticator": "native"})

One table, ``audit_log``, holds one row per event: ``id`` (1, 2, 3, ... with no gaps),
``at`` (UTC, microseconds), ``actor``, ``action``, ``target``, ``outcome``, ``source``,
``detail`` (canonical JSON text), ``prev_hash`` and ``hash``. ``hash`` is the SHA-256 of
the canonical serialisation of every other field, ``prev_hash`` included
(:func:`record_hash`), and ``prev_hash`` is the ``hash`` of the record before (64 zeros
for the first record, or the hash of the last pruned record, kept in ``audit_anchor``).
Changing a field, deleting a row or moving rows breaks the chain at that place, which
:func:`verify` names.

Append-only is enforced by the database: triggers refuse ``UPDATE`` and ``DELETE`` (and
``TRUNCATE`` on PostgreSQL). The one exception is :func:`prune`: in one transaction it
writes a cutoff into the one-row table ``audit_retention`` (the triggers refuse a cutoff
newer than a day ago), deletes the records older than the retention (the ``DELETE``
trigger allows exactly the rows older than that cutoff), writes an anchor (the last
pruned record's id and hash) into the append-only ``audit_anchor`` table, resets the
cutoff and appends an ``audit.prune`` record. :func:`verify` starts from the newest
anchor.

Appends from several processes (the hub, the allocations and data services, the command
line) are serialised so the chain never forks: on SQLite each append is a
``BEGIN IMMEDIATE`` transaction (the database's write lock), on PostgreSQL it takes
``LOCK TABLE audit_log IN EXCLUSIVE MODE`` (readers are not blocked). The next id, the
previous hash and the time are read under that lock, so ids and times only grow.

The database is ``get_settings().governance.audit_url``, by default
``sqlite:///<data dir>/audit.sqlite`` (created 0600; a folder others may write to is
refused). The schema is made on first use, idempotently, without alembic.

What the chain proves, and what not, is in docs/audit.md (threat model): someone who can
write the database file can drop the triggers and rewrite the chain from some record on;
copies exported to a SIEM (:func:`export`) and the backups show that it happened.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import hashlib
import json
import logging
import math
import os
import re
import socket
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, make_url

from ..errors import DataError, UsageError

__all__ = ["GENESIS", "Verification", "export", "prune", "read", "record", "record_hash",
           "record_on_commit", "request_source", "set_source", "verify", "verify_records"]

log = logging.getLogger(__name__)

#: ``prev_hash`` of the first record of a trail that was never pruned
GENESIS = "0" * 64
#: outcomes a record may have
OUTCOMES = ("ok", "denied", "failed", "error")
#: dotted lower-case action names: ``hub.login``, ``alloc.approve``, ``store.commit``
ACTION_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
#: ``kind:id`` targets: ``user:bob``, ``allocation:3``, ``store:/abs/path``
TARGET_RE = re.compile(r"[a-z][a-z0-9_]*:.+", re.DOTALL)
#: longest stored text of each field (longer values are cut)
LIMITS = {"actor": 255, "target": 1024, "source": 255}
#: longest text value kept in *detail* (characters)
MAX_DETAIL_TEXT = 4096
#: key names whose values are never stored (compared lower-case, ``-`` read as ``_``)
SECRET_KEYS = frozenset({"token", "password", "passwd", "secret", "api_key", "apikey",
                         "authorization", "cookie", "cookies", "credentials", "credential",
                         "private_key", "session", "csrf", "xsrf"})
#: key endings that mark a secret (``api_token``, ``client_secret``, ``db_password``)
SECRET_SUFFIXES = ("_token", "_secret", "_password", "_passwd", "_key", "_cookie")
#: the earliest time: the cutoff of ``audit_retention`` when no prune is running
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: records read per query when walking the chain
BATCH = 5000
#: seconds an append waits for the write lock (SQLite busy timeout, PostgreSQL
#: lock_timeout) or for PostgreSQL to accept a connection
BUSY_TIMEOUT = 10.0
#: a PostgreSQL advisory lock key (``pg_advisory_xact_lock``) for making the schema
_SCHEMA_LOCK_KEY = 0x6F63_6175_6469_74  # "ocaudit"

metadata = MetaData()
#: id type: 64-bit on PostgreSQL, SQLite's INTEGER PRIMARY KEY (the rowid) on SQLite
_Id = BigInteger().with_variant(Integer, "sqlite")

audit_log = Table(
    "audit_log", metadata,
    Column("id", _Id, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("actor", String(LIMITS["actor"]), nullable=True),
    Column("action", String(64), nullable=False, index=True),
    Column("target", String(LIMITS["target"]), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("source", String(LIMITS["source"]), nullable=True),
    Column("detail", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_anchor = Table(
    "audit_anchor", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("through_id", _Id, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("cutoff", DateTime(timezone=True), nullable=False),
    Column("removed", _Id, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

audit_retention = Table(
    "audit_retention", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("cutoff", DateTime(timezone=True), nullable=False),
    CheckConstraint("id = 1", name="audit_retention_one_row"),
)

_REFUSED = "the audit trail is append-only"
_ONLY_PRUNE = "only oceandata audit prune removes records, past the retention"
_DELETE_REFUSED = f"{_REFUSED}: DELETE of audit_log refused ({_ONLY_PRUNE})"
_CUTOFF_REFUSED = f"{_REFUSED}: a retention cutoff newer than a day ago is refused"

_SQLITE_DDL = (
    f"""CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, '{_REFUSED}: UPDATE of audit_log refused'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
    WHEN NOT coalesce(OLD.at < (SELECT cutoff FROM audit_retention WHERE id = 1), 0)
    BEGIN SELECT RAISE(ABORT, '{_DELETE_REFUSED}'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS audit_anchor_no_update BEFORE UPDATE ON audit_anchor
    BEGIN SELECT RAISE(ABORT, '{_REFUSED}: UPDATE of audit_anchor refused'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS audit_anchor_no_delete BEFORE DELETE ON audit_anchor
    BEGIN SELECT RAISE(ABORT, '{_REFUSED}: DELETE of audit_anchor refused'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS audit_retention_floor BEFORE UPDATE ON audit_retention
    WHEN NEW.cutoff > datetime('now', '-1 day')
    BEGIN SELECT RAISE(ABORT, '{_CUTOFF_REFUSED}'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS audit_retention_no_delete BEFORE DELETE ON audit_retention
    BEGIN SELECT RAISE(ABORT, '{_REFUSED}: DELETE of audit_retention refused'); END""",
)

_PG_FUNCTIONS = (
    f"""CREATE OR REPLACE FUNCTION oceandata_audit_refuse() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{_REFUSED}: % of % refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END $$""",
    f"""CREATE OR REPLACE FUNCTION oceandata_audit_log_guard() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' AND coalesce(
                OLD.at < (SELECT cutoff FROM audit_retention WHERE id = 1), false) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION '{_REFUSED}: % of audit_log refused ({_ONLY_PRUNE})', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END $$""",
    f"""CREATE OR REPLACE FUNCTION oceandata_audit_retention_floor() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.cutoff > now() - interval '1 day' THEN
            RAISE EXCEPTION '{_CUTOFF_REFUSED}'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END $$""",
)

#: (table, trigger, timing and events, level, function) of the PostgreSQL triggers
_PG_TRIGGERS = (
    ("audit_log", "audit_log_append_only", "BEFORE UPDATE OR DELETE", "ROW",
     "oceandata_audit_log_guard"),
    ("audit_log", "audit_log_no_truncate", "BEFORE TRUNCATE", "STATEMENT",
     "oceandata_audit_refuse"),
    ("audit_anchor", "audit_anchor_append_only", "BEFORE UPDATE OR DELETE", "ROW",
     "oceandata_audit_refuse"),
    ("audit_anchor", "audit_anchor_no_truncate", "BEFORE TRUNCATE", "STATEMENT",
     "oceandata_audit_refuse"),
    ("audit_retention", "audit_retention_floor", "BEFORE UPDATE", "ROW",
     "oceandata_audit_retention_floor"),
    ("audit_retention", "audit_retention_no_delete", "BEFORE DELETE", "ROW",
     "oceandata_audit_refuse"),
    ("audit_retention", "audit_retention_no_truncate", "BEFORE TRUNCATE", "STATEMENT",
     "oceandata_audit_refuse"),
)


# --- where the trail lives ------------------------------------------------------------


def audit_url() -> str:
    """The trail's SQLAlchemy URL: the ``governance.audit_url`` setting, else SQLite at
    ``<data dir>/audit.sqlite``.

    Returns
    -------
    str
    """
    from ..config import get_settings

    settings = get_settings()
    url = settings.governance.audit_url
    if url:
        return url
    return f"sqlite:///{Path(settings.data_dir).absolute() / 'audit.sqlite'}"


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _prepare_sqlite_file(path: Path) -> None:
    """Create the database file 0600 in a folder others cannot write to."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if folder.stat().st_mode & stat.S_IWOTH:
        raise DataError(f"the audit trail's folder {folder} is writable by everyone: make "
                        f"it private (chmod o-w {folder}) or set "
                        "OCEANDATA_GOVERNANCE__AUDIT_URL elsewhere")
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077 and path.stat().st_uid == os.geteuid():
            log.warning("audit trail %s was mode %o: now 0600", path, mode)
            os.chmod(path, 0o600)


_ENGINES: dict[tuple[str, int], Engine] = {}
_ENGINES_LOCK = threading.Lock()


def engine(url: str | None = None) -> Engine:
    """The engine of the trail at *url* (default :func:`audit_url`), with its schema.

    One engine per URL and process (a forked child makes its own). SQLite gets WAL, a
    busy timeout of :data:`BUSY_TIMEOUT` and ``BEGIN IMMEDIATE`` for appends.

    Parameters
    ----------
    url
        A SQLAlchemy URL.

    Returns
    -------
    sqlalchemy.Engine
    """
    url = url or audit_url()
    key = (url, os.getpid())
    found = _ENGINES.get(key)
    if found is not None:
        return found
    with _ENGINES_LOCK:
        found = _ENGINES.get(key)
        if found is None:
            found = _make_engine(url)
            _ensure_schema(found)
            _ENGINES[key] = found
    return found


def _make_engine(url: str) -> Engine:
    path = _sqlite_path(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # a database that does not answer costs a request at most this, not TCP's minutes
        args = {"connect_timeout": int(BUSY_TIMEOUT)} if parsed.get_driver_name() in (
            "psycopg2", "psycopg") else {}
        return create_engine(url, pool_pre_ping=True, connect_args=args)
    if path is not None:
        _prepare_sqlite_file(path)
    made = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT,
                                            "check_same_thread": False})

    @event.listens_for(made, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:  # pragma: no cover - driver hook
        dbapi_conn.isolation_level = None  # transactions are begun below, not by pysqlite
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    @event.listens_for(made, "begin")
    def _begin(conn: Connection) -> None:  # pragma: no cover - driver hook
        write = conn.get_execution_options().get("audit_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return made


def _is_sqlite(conn: Connection | Engine) -> bool:
    return conn.dialect.name == "sqlite"


def _write(eng: Engine) -> Connection:
    """A connection whose transaction is the trail's write lock (see :func:`_lock`)."""
    return eng.connect().execution_options(audit_write=True)


def _lock(conn: Connection) -> None:
    """Serialise with every other append (SQLite: the ``BEGIN IMMEDIATE`` already did)."""
    if not _is_sqlite(conn):
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(BUSY_TIMEOUT)}s'; "
                             "LOCK TABLE audit_log IN EXCLUSIVE MODE")


def _ensure_schema(eng: Engine) -> None:
    """Create the tables, triggers and the retention row if missing (idempotent)."""
    with _write(eng) as conn, conn.begin():
        if _is_sqlite(conn):
            metadata.create_all(conn)
            for ddl in _SQLITE_DDL:
                conn.exec_driver_sql(ddl)
        else:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK_KEY})
            metadata.create_all(conn)
            with contextlib.closing(conn.connection.cursor()) as cur:
                for ddl in _PG_FUNCTIONS:  # without parameters: '%' is PL/pgSQL's here
                    cur.execute(ddl)
            for table, name, when, level, function in _PG_TRIGGERS:
                exists = conn.execute(text(
                    "SELECT 1 FROM pg_trigger WHERE tgname = :n "
                    "AND tgrelid = CAST(:t AS regclass)"), {"n": name, "t": table}).first()
                if exists is None:
                    conn.exec_driver_sql(f"CREATE TRIGGER {name} {when} ON {table} "
                                         f"FOR EACH {level} EXECUTE FUNCTION {function}()")
        if conn.execute(select(audit_retention.c.id)).first() is None:
            conn.execute(insert(audit_retention).values(id=1, cutoff=EPOCH))


# --- records --------------------------------------------------------------------------


def _utc(value: dt.datetime) -> dt.datetime:
    """*value* as an aware UTC datetime (SQLite gives back naive UTC ones)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _iso(value: dt.datetime) -> str:
    """The one text form of a time in the chain: ``2026-05-01T12:00:00.000123Z``."""
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_iso(value: str) -> dt.datetime:
    return _utc(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))


def _secret_key(key: str) -> bool:
    name = key.strip().lower().replace("-", "_")
    return (name in SECRET_KEYS or name.endswith(SECRET_SUFFIXES)
            or "password" in name or "secret" in name)


def scrub(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of *value* without secrets.

    Keys that name secrets (:data:`SECRET_KEYS`, :data:`SECRET_SUFFIXES`, anything with
    ``password`` or ``secret`` in it) are dropped at every depth; texts are cut at
    :data:`MAX_DETAIL_TEXT` characters; NaN and infinities, and objects JSON cannot
    hold, become their text.

    Parameters
    ----------
    value
        The *detail* of a record.
    depth
        Nesting level (deeper than 16 levels is stored as text).

    Returns
    -------
    object
    """
    if isinstance(value, dict):
        if depth > 16:
            return str(value)[:MAX_DETAIL_TEXT]
        return {str(k)[:256]: scrub(v, depth + 1) for k, v in value.items()
                if not _secret_key(str(k))}
    if isinstance(value, (list, tuple, set, frozenset)):
        if depth > 16:
            return str(value)[:MAX_DETAIL_TEXT]
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [scrub(v, depth + 1) for v in items]
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return str(value)[:MAX_DETAIL_TEXT]


def canonical_json(value: Any) -> str:
    """The canonical JSON text of *value*: sorted keys, no spaces, UTF-8 characters kept.

    Parameters
    ----------
    value
        A JSON-safe object.

    Returns
    -------
    str
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def record_hash(rec: dict[str, Any]) -> str:
    """The SHA-256 (hex) of a record: the chain's definition.

    The hashed text is the canonical JSON (:func:`canonical_json`) of the object with
    every field but ``hash``: ``action``, ``actor``, ``at`` (``YYYY-MM-DDTHH:MM:SS.ffffffZ``),
    ``detail`` (the stored canonical JSON *text*, as a string), ``id``, ``outcome``,
    ``prev_hash``, ``source`` and ``target``, encoded as UTF-8. A SIEM can check an export
    with these few lines.

    Parameters
    ----------
    rec
        A record as :func:`read` gives it (``detail`` an object or its text, ``at`` a
        datetime or the ISO text).

    Returns
    -------
    str
        64 hexadecimal digits.
    """
    at = rec["at"]
    detail = rec["detail"]
    fields = {"id": int(rec["id"]), "at": _iso(at) if isinstance(at, dt.datetime) else at,
              "actor": rec["actor"], "action": rec["action"], "target": rec["target"],
              "outcome": rec["outcome"], "source": rec["source"],
              "detail": detail if isinstance(detail, str) else canonical_json(detail),
              "prev_hash": rec["prev_hash"]}
    return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()


def _cut(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    return str(value)[:LIMITS[name]]


def _row(action: str, actor: str | None, target: str, outcome: str, source: str | None,
         detail: dict[str, Any] | None) -> dict[str, Any]:
    """Check a call and give the fields of the row (without id, time and hashes)."""
    if not isinstance(action, str) or len(action) > 64 or not ACTION_RE.fullmatch(action):
        raise UsageError(f"audit action {str(action)[:70]!r}: give a dotted lower-case name "
                         "such as hub.login or alloc.approve")
    if outcome not in OUTCOMES:
        raise UsageError(f"audit outcome {outcome!r}: give one of {', '.join(OUTCOMES)}")
    if not isinstance(target, str) or not TARGET_RE.fullmatch(target):
        raise UsageError(f"audit target {str(target)[:70]!r}: give kind:id, e.g. user:bob, "
                         "allocation:3, dataset:name")
    if detail is not None and not isinstance(detail, dict):
        raise UsageError("audit detail: give a dict of JSON-safe values")
    return {"actor": _cut(actor, "actor"), "action": action, "target": _cut(target, "target"),
            "outcome": outcome, "source": _cut(source, "source"),
            "detail": canonical_json(scrub(detail or {}))}


def _tail(conn: Connection) -> tuple[int, str, dt.datetime | None]:
    """The id, hash and time of the last record, or of the newest anchor, or genesis."""
    last = conn.execute(select(audit_log.c.id, audit_log.c.hash, audit_log.c.at)
                        .order_by(audit_log.c.id.desc()).limit(1)).first()
    if last is not None:
        return int(last.id), last.hash, _utc(last.at)
    anchor = _anchor(conn)
    if anchor is not None:
        return anchor["through_id"], anchor["hash"], None
    return 0, GENESIS, None


def _anchor(conn: Connection) -> dict[str, Any] | None:
    row = conn.execute(select(audit_anchor).order_by(audit_anchor.c.id.desc()).limit(1)
                       ).first()
    if row is None:
        return None
    return {"id": int(row.id), "through_id": int(row.through_id), "hash": row.hash,
            "cutoff": _iso(row.cutoff), "removed": int(row.removed), "at": _iso(row.at)}


def _append(conn: Connection, row: dict[str, Any], at: dt.datetime | None = None
            ) -> dict[str, Any]:
    """Append *row* after the tail, inside the caller's locked transaction."""
    last_id, last_hash, last_at = _tail(conn)
    moment = _utc(at) if at is not None else dt.datetime.now(dt.UTC)
    if last_at is not None and moment < last_at:
        moment = last_at  # times never go backwards along the chain (a clock step back)
    rec = {"id": last_id + 1, "at": _iso(moment), **row, "prev_hash": last_hash}
    rec["hash"] = record_hash(rec)
    conn.execute(insert(audit_log).values(**{**rec, "at": _parse_iso(rec["at"])}))
    return rec


def append(action: str, *, actor: str | None, target: str, outcome: str = "ok",
           source: str | None = None, detail: dict[str, Any] | None = None,
           at: dt.datetime | None = None, url: str | None = None) -> dict[str, Any]:
    """Append one record and return it; storage failures raise (see :func:`record`).

    Parameters
    ----------
    action, actor, target, outcome, source, detail
        As :func:`record`.
    at
        The record's time (default now); never earlier than the last record's (a later
        record never looks older). For imports and tests.
    url
        The trail (default :func:`audit_url`).

    Returns
    -------
    dict
        The stored record (``detail`` as its canonical JSON text).
    """
    row = _row(action, actor, target, outcome, source, detail)
    with _write(engine(url)) as conn, conn.begin():
        _lock(conn)
        return _append(conn, row, at)


def _redact(text_: str, url: str | None) -> str:
    """First line of an error message, without the database password."""
    first = (text_.strip().splitlines() or [""])[0][:300]
    try:
        password = make_url(url).password if url else None
    except Exception:  # a URL we cannot parse has no password to hide
        password = None
    return first.replace(str(password), "***") if password else first


def record(action: str, *, actor: str | None, target: str, outcome: str = "ok",
           source: str | None = None, detail: dict[str, Any] | None = None) -> None:
    """Append one record to the audit trail.

    Never raises into its caller for a storage failure (an unreachable database, a locked
    or unwritable file): it logs one error line naming the action and the error, and
    returns. A malformed call (unknown outcome, an action that is not a dotted name, a
    target that is not ``kind:id``) is a programming error and raises ``UsageError``.
    Secrets in *detail* are dropped (:func:`scrub`).

    Parameters
    ----------
    action
        Dotted name of what happened, e.g. ``hub.login``, ``alloc.approve``,
        ``data.access``, ``store.commit``, ``store.tag``, ``store.publish``.
    actor
        Who did it (hub user name, ``system``, a Unix user for CLI runs); None when unknown
        (a failed login's claimed name goes in *detail*).
    target
        The object acted on, ``kind:id`` (``user:bob``, ``allocation:3``,
        ``dataset:argo_restricted``, ``store:/path``).
    outcome
        ``ok``, ``denied``, ``failed`` or ``error``.
    source
        Where from: a client address, or ``cli@host``.
    detail
        JSON-safe extra fields (never secrets or tokens).

    Examples
    --------
    >>> from oceandata.governance import audit
    >>> audit.record("alloc.approve", actor="admin", target="allocation:3",
    ...              source="10.0.0.7", detail={"core_hours": 500})  # doctest: +SKIP
    """
    row = _row(action, actor, target, outcome, source, detail)
    url = None
    try:
        url = audit_url()
        with _write(engine(url)) as conn, conn.begin():
            _lock(conn)
            _append(conn, row)
    except Exception as exc:  # the contract: a storage failure never breaks the caller
        cause = getattr(exc, "orig", None) or exc
        log.error("audit: %s on %s NOT recorded: %s: %s", action, row["target"][:200],
                  type(cause).__name__, _redact(str(cause), url))


#: key of :attr:`sqlalchemy.orm.Session.info` holding the records to write on commit
_PENDING = "oceandata.audit.pending"
#: key of :attr:`sqlalchemy.orm.Session.info` holding the request's client address
SOURCE_KEY = "oceandata.audit.source"


def set_source(session: Any, source: str | None) -> None:
    """Name where the work of *session* comes from (a client address, ``cli@host``).

    :func:`record_on_commit` uses it when its caller gives no *source* (the rules of
    allocations and jobs do not know the request; the HTTP layer that opens the session
    does).

    Parameters
    ----------
    session
        A SQLAlchemy session.
    source
        The client address.
    """
    session.info[SOURCE_KEY] = source


def record_on_commit(session: Any, action: str, *, actor: str | None, target: str,
                     outcome: str = "ok", source: str | None = None,
                     detail: dict[str, Any] | None = None) -> None:
    """Record when *session* commits; nothing is recorded if it rolls back.

    For changes made in another database's transaction (an allocation approved, a job
    queued): the record says what was committed, never what was rolled back. Appended
    after the commit by :func:`record` (so a failure is logged, not raised).

    Parameters
    ----------
    session
        The SQLAlchemy session the change is made in.
    action, actor, target, outcome, source, detail
        As :func:`record`; *source* defaults to the session's (:func:`set_source`).
    """
    _row(action, actor, target, outcome, source, detail)  # a bad call fails here, not later
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        event.listen(session, "after_commit", _flush_pending)
        event.listen(session, "after_rollback", _drop_pending)
    pending.append({"action": action, "actor": actor, "target": target, "outcome": outcome,
                    "source": source, "detail": detail})


def _flush_pending(session: Any) -> None:
    pending, session.info[_PENDING] = session.info.get(_PENDING) or [], []
    for kw in pending:
        if kw["source"] is None:
            kw["source"] = session.info.get(SOURCE_KEY)
        record(kw.pop("action"), **kw)


def _drop_pending(session: Any) -> None:
    session.info[_PENDING] = []


def request_source(peer: str | None, forwarded_for: str | None = None) -> str:
    """Where an HTTP request comes from: *peer*, or the last address its proxy forwarded
    (``X-Forwarded-For``) when *peer* is a trusted proxy (the ``data.trusted_proxies``
    setting: the hub's proxy on the loopback), the rule of the open-data service's own
    records.

    Parameters
    ----------
    peer
        The address of the TCP peer.
    forwarded_for
        The request's ``X-Forwarded-For`` header.

    Returns
    -------
    str
    """
    from ..config import get_settings

    peer = peer or "unknown"
    if peer in get_settings().data.trusted_proxies:
        hops = [h.strip() for h in (forwarded_for or "").split(",") if h.strip()]
        if hops:
            return hops[-1][:LIMITS["source"]]
    return peer


def cli_source() -> str:
    """The source of a command-line run.

    Returns
    -------
    str
        ``cli@<host name>``.
    """
    return f"cli@{socket.gethostname()}"


def cli_actor() -> str:
    """The actor of a command-line run.

    Returns
    -------
    str
        The Unix user's name (``uid:<n>`` when it has none).
    """
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.geteuid()}"


# --- reading --------------------------------------------------------------------------


def _since(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return _utc(value)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    raise UsageError(f"since {value!r}: give a datetime or a date")


def _as_dict(row: Any) -> dict[str, Any]:
    return {"id": int(row.id), "at": _iso(row.at), "actor": row.actor, "action": row.action,
            "target": row.target, "outcome": row.outcome, "source": row.source,
            "detail": json.loads(row.detail), "prev_hash": row.prev_hash, "hash": row.hash}


def _read_conn(eng: Engine) -> Connection:
    """A connection for a consistent walk (one snapshot, even while appends go on)."""
    conn = eng.connect()
    if not _is_sqlite(conn):
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    return conn


def _walk(conn: Connection, since: dt.datetime | None = None, action: str | None = None,
          raw: bool = False) -> Iterator[Any]:
    """Rows in chain order, :data:`BATCH` at a time (keyset paging on id)."""
    after = 0
    while True:
        query = select(audit_log).where(audit_log.c.id > after)
        if since is not None:
            query = query.where(audit_log.c.at >= since)
        if action:
            if action.endswith("."):
                query = query.where(audit_log.c.action.startswith(action, autoescape=True))
            else:
                query = query.where(audit_log.c.action == action)
        rows = conn.execute(query.order_by(audit_log.c.id).limit(BATCH)).all()
        for row in rows:
            yield row if raw else _as_dict(row)
        if len(rows) < BATCH:
            return
        after = int(rows[-1].id)


def iter_records(*, since: Any = None, action: str | None = None,
                 url: str | None = None) -> Iterator[dict[str, Any]]:
    """Records oldest first, read a batch at a time in one consistent snapshot.

    Parameters
    ----------
    since, action
        As :func:`read`.
    url
        The trail (default :func:`audit_url`).

    Yields
    ------
    dict
        ``id``, ``at`` (ISO text, UTC), ``actor``, ``action``, ``target``, ``outcome``,
        ``source``, ``detail`` (an object), ``prev_hash``, ``hash``.
    """
    with _read_conn(engine(url)) as conn, conn.begin():
        yield from _walk(conn, _since(since), action)


def read(*, since: Any = None, action: str | None = None,
         url: str | None = None) -> list[dict[str, Any]]:
    """Records of the audit trail, oldest first (for tests, exports and pages).

    Parameters
    ----------
    since
        A ``datetime`` (UTC) or a ``date`` (its UTC midnight), or None for every record.
    action
        Only records of this action (exact name, or a prefix ending in ``.``).
    url
        The trail (default :func:`audit_url`).

    Returns
    -------
    list of dict
        See :func:`iter_records`.
    """
    return list(iter_records(since=since, action=action, url=url))


# --- verification ---------------------------------------------------------------------


@dataclass
class Verification:
    """What :func:`verify` found.

    Attributes
    ----------
    ok
        The chain is intact.
    records
        Records checked (up to the break).
    head_id, head_hash
        The last intact record (or the anchor, or 0 and :data:`GENESIS`).
    anchor
        The id of the last pruned record the walk started after (None: from the start).
    broken_id
        The first broken record: the changed, moved or (first) deleted one.
    problem
        ``changed``, ``deleted``, ``reordered`` or ``anchor``.
    message
        One sentence naming the record and what is wrong.
    """

    ok: bool
    records: int
    head_id: int
    head_hash: str
    anchor: int | None = None
    broken_id: int | None = None
    problem: str | None = None
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON-safe values."""
        return asdict(self)


def _hash_at(conn: Connection | None, wanted: str) -> int | None:
    if conn is None:
        return None
    row = conn.execute(select(audit_log.c.id).where(audit_log.c.hash == wanted).limit(1)
                       ).first()
    return None if row is None else int(row.id)


def _check(recs: Iterable[dict[str, Any]], start_id: int, start_hash: str,
           conn: Connection | None = None, anchor: int | None = None) -> Verification:
    """Walk *recs* (``at`` as ISO text, ``detail`` as object or text) from a start."""
    prev_id, prev_hash, prev_at = start_id, start_hash, ""
    count = 0

    def broken(rid: int, problem: str, message: str) -> Verification:
        return Verification(False, count, prev_id, prev_hash, anchor, rid, problem,
                            message)

    for rec in recs:
        rid = int(rec["id"])
        if rec["prev_hash"] != prev_hash:
            where = _hash_at(conn, rec["prev_hash"])
            if where is not None and where >= rid:
                return broken(rid, "reordered",
                              f"record {rid} is out of order: the record it follows is "
                              f"stored as record {where}, after it")
            if where is not None and where < prev_id:
                return broken(rid, "reordered",
                              f"record {rid} follows record {where}, not record {prev_id}: "
                              "records moved (or the chain forked)")
            if rid > prev_id + 1:
                gone = (f"record {prev_id + 1}" if rid == prev_id + 2
                        else f"records {prev_id + 1} to {rid - 1}")
                return Verification(False, count, prev_id, prev_hash, anchor, prev_id + 1,
                                    "deleted", f"{gone} deleted: record {rid}'s prev_hash "
                                    f"does not match record {prev_id}")
            if rid <= prev_id:
                return broken(rid, "reordered", f"record {rid} comes after record "
                                                f"{prev_id}: ids out of order")
            if record_hash(rec) != rec["hash"]:
                return broken(rid, "changed", f"record {rid} was changed: its prev_hash and "
                                              "its hash do not match its fields")
            return broken(rid, "deleted", f"record {rid}'s prev_hash matches no record: "
                                          f"a record before it was deleted and the ids "
                                          f"renumbered, or record {prev_id} was rewritten "
                                          "with a new hash")
        if rid != prev_id + 1:
            return broken(rid, "reordered", f"record {rid} follows record {prev_id}: ids "
                                            "out of sequence")
        if record_hash(rec) != rec["hash"]:
            return broken(rid, "changed", f"record {rid} was changed: its hash does not "
                                          "match its fields")
        if rec["at"] < prev_at:
            return broken(rid, "reordered", f"record {rid} is older than record {prev_id} "
                                            "before it: records reordered")
        prev_id, prev_hash, prev_at = rid, rec["hash"], rec["at"]
        count += 1
    return Verification(True, count, prev_id, prev_hash, anchor)


def _verify_anchor(conn: Connection, anchor: dict[str, Any]) -> str | None:
    """Why the newest anchor is not vouched for by an ``audit.prune`` record, or None."""
    for row in _walk(conn, action="audit.prune", raw=True):
        detail = json.loads(row.detail)
        if (detail.get("through_id") == anchor["through_id"]
                and detail.get("hash") == anchor["hash"]):
            return None
    return (f"anchor {anchor['id']} (records up to {anchor['through_id']} pruned) has no "
            "audit.prune record in the chain: a forged anchor")


def verify(*, url: str | None = None) -> Verification:
    """Walk the chain from the newest anchor (or the start) and name the first break.

    Each record must follow the one before (``prev_hash`` equal to its ``hash``, the next
    id, a time no earlier) and hash to its ``hash``. The first failure is classified:
    ``changed`` (a field differs from what was hashed), ``deleted`` (a gap: the ids or the
    hash of the record before are missing), ``reordered`` (a record is stored before the
    one it follows, or times go backwards), ``anchor`` (the newest prune anchor has no
    ``audit.prune`` record vouching for it).

    Parameters
    ----------
    url
        The trail (default :func:`audit_url`).

    Returns
    -------
    Verification
    """
    with _read_conn(engine(url)) as conn, conn.begin():
        anchor = _anchor(conn)
        start = (anchor["through_id"], anchor["hash"]) if anchor else (0, GENESIS)
        result = _check(_walk(conn, raw=False), *start, conn=conn,
                        anchor=anchor["through_id"] if anchor else None)
        if result.ok and anchor is not None:
            why = _verify_anchor(conn, anchor)
            if why is not None:
                return Verification(False, result.records, result.head_id, result.head_hash,
                                    anchor["through_id"], anchor["through_id"], "anchor", why)
        return result


def verify_records(recs: Iterable[dict[str, Any]]) -> Verification:
    """Check the chain of exported records (JSON lines of :func:`export`).

    The first record's ``prev_hash`` is taken as given unless it is record 1 (an export
    ``--since`` starts in the middle of the chain); every later link is checked.

    Parameters
    ----------
    recs
        Records in file order.

    Returns
    -------
    Verification
    """
    items = iter(recs)
    first = next(items, None)
    if first is None:
        return Verification(True, 0, 0, GENESIS)
    start_id = int(first["id"]) - 1
    start_hash = GENESIS if start_id == 0 else first["prev_hash"]

    def chained() -> Iterator[dict[str, Any]]:
        yield first
        yield from items

    return _check(chained(), start_id, start_hash)


# --- export and retention --------------------------------------------------------------


def export(output: Path | None, *, since: Any = None, action: str | None = None,
           url: str | None = None, stream: Any = None) -> int:
    """Write records as JSON lines (one record a line, as :func:`read` gives it).

    A file is written under a temporary name in its folder (mode 0600) and renamed when
    complete: a reader never sees half an export.

    Parameters
    ----------
    output
        The file; None writes to *stream*.
    since, action
        As :func:`read`.
    url
        The trail (default :func:`audit_url`).
    stream
        A text stream for ``output=None`` (default standard output).

    Returns
    -------
    int
        Records written.
    """
    import sys

    def write(fh: Any) -> int:
        n = 0
        for rec in iter_records(since=since, action=action, url=url):
            fh.write(canonical_json(rec) + "\n")
            n += 1
        return n

    if output is None:
        return write(stream or sys.stdout)
    output = Path(output)
    if output.is_dir():
        raise UsageError(f"--output {output} is a folder: give a file name")
    if not output.parent.is_dir():
        raise UsageError(f"--output {output}: its folder {output.parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            n = write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def prune(*, retention_days: int | None = None, url: str | None = None,
          actor: str | None = None, source: str | None = None,
          now: dt.datetime | None = None) -> dict[str, Any]:
    """Remove the records older than the retention, keeping the chain verifiable.

    In one transaction holding the append lock: the cutoff (now minus *retention_days*)
    is written to ``audit_retention`` (its trigger refuses one newer than a day ago), the
    records older than it are deleted (the ``DELETE`` trigger lets only those through),
    an anchor (the last removed record's id and hash) is added to ``audit_anchor``, the
    cutoff is reset, and an ``audit.prune`` record naming the anchor is appended.

    Parameters
    ----------
    retention_days
        Days kept (default the ``governance.audit_retention_days`` setting, 180).
    url
        The trail (default :func:`audit_url`).
    actor, source
        Who prunes (default the Unix user, ``cli@host``).
    now
        The present (tests).

    Returns
    -------
    dict
        ``removed`` (records), ``cutoff`` (ISO), ``anchor`` (``through_id``, ``hash``, or
        None when nothing was old enough).
    """
    from ..config import get_settings

    days = retention_days if retention_days is not None else \
        get_settings().governance.audit_retention_days
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise UsageError(f"retention of {days!r} days: give a whole number of days, at "
                         "least 1")
    cutoff = _utc(now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=days)
    with _write(engine(url)) as conn, conn.begin():
        _lock(conn)
        last_old = conn.execute(select(audit_log.c.id, audit_log.c.hash)
                                .where(audit_log.c.at < cutoff)
                                .order_by(audit_log.c.id.desc()).limit(1)).first()
        if last_old is None:
            return {"removed": 0, "cutoff": _iso(cutoff), "anchor": None}
        conn.execute(update(audit_retention).where(audit_retention.c.id == 1)
                     .values(cutoff=cutoff))
        removed = conn.execute(audit_log.delete().where(audit_log.c.id <= last_old.id)
                               ).rowcount
        conn.execute(insert(audit_anchor).values(
            through_id=int(last_old.id), hash=last_old.hash, cutoff=cutoff, removed=removed,
            at=dt.datetime.now(dt.UTC)))
        conn.execute(update(audit_retention).where(audit_retention.c.id == 1)
                     .values(cutoff=EPOCH))
        anchor = {"through_id": int(last_old.id), "hash": last_old.hash}
        _append(conn, _row("audit.prune", actor or cli_actor(), "audit:audit_log", "ok",
                           source or cli_source(),
                           {**anchor, "removed": removed, "cutoff": _iso(cutoff),
                            "retention_days": days}))
    return {"removed": int(removed), "cutoff": _iso(cutoff), "anchor": anchor}


def count(*, url: str | None = None) -> int:
    """Records in the trail (what backups and drills compare).

    Parameters
    ----------
    url
        The trail (default :func:`audit_url`).

    Returns
    -------
    int
    """
    with _read_conn(engine(url)) as conn, conn.begin():
        return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())
