"""Compute allocations for partners, their enforcement and accounting, and batch jobs.

The allocations service (a JupyterHub service, FastAPI) keeps its state in the database
named by ``OCEANDATA_ALLOC_DB_URL`` (SQLite under the data dir by default, PostgreSQL in
production), created and upgraded with alembic (:func:`oceandata.alloc.db.upgrade`).
"""
