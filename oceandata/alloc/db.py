"""Database of the allocations service: engine, sessions and alembic migrations."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from ..config import get_settings

MIGRATIONS = Path(__file__).with_name("migrations")


def default_url() -> str:
    """``OCEANDATA_ALLOC_DB_URL``, else SQLite at ``<data dir>/alloc/alloc.sqlite``."""
    url = os.environ.get("OCEANDATA_ALLOC_DB_URL")
    if url:
        return url
    path = get_settings().data_dir / "alloc" / "alloc.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return f"sqlite:///{path}"


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One engine per URL; SQLite gets WAL and a busy timeout for concurrent writers."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - driver hook
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


#: alembic's ``context`` is module-global: one upgrade at a time in a process
_UPGRADE_LOCK = threading.Lock()


def upgrade(url: str | None = None) -> None:
    """Create or upgrade the schema to the latest alembic revision.

    Safe from several threads and processes at once: one upgrade at a time in a process,
    and the migration environment takes the database's lock (``migrations/env.py``).
    """
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine_for(url or default_url())
    with _UPGRADE_LOCK:
        command.upgrade(cfg, "head")


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A transaction: committed when the block ends, rolled back on an exception."""
    maker = sessionmaker(engine_for(url or default_url()), expire_on_commit=False)
    session = maker()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
