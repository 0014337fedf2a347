"""Alembic environment of the allocations database (engine passed by ``db.upgrade``).

The whole upgrade is one transaction that first takes the database's migration lock, so
two processes upgrading at once (the allocations service and the data service starting
together) run it one after the other: the second finds the schema at head and does
nothing. SQLite: ``BEGIN IMMEDIATE`` (the write lock; the other waits up to the busy
timeout); PostgreSQL: a transaction-scoped advisory lock.
"""

from alembic import context

from oceandata.alloc.models import Base

#: the advisory lock key of PostgreSQL migrations (any constant 64-bit number)
MIGRATION_LOCK = 0x6F6365616E616C6C  # "oceanall"

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    if engine.dialect.name == "sqlite":
        # pysqlite opens no transaction before DDL: open one that holds the write lock
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif engine.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=engine.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
