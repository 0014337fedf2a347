"""The platform with its hub database in a real PostgreSQL server (the production setup).

A private PostgreSQL (see :mod:`tests.pg_helpers`) is started for this module, the hub
runs with ``db_url=postgresql+psycopg2://...`` and the same smoke as on SQLite passes: the
first admin logs in, a user signs up and is approved, gets a token and computes on a
dask-gateway cluster; the hub's and NativeAuthenticator's tables are in PostgreSQL. The
plain ``postgresql://`` URL that ``oceandata hub up --db-url`` documents must work too.
"""

from __future__ import annotations

import contextlib
import uuid

import numpy as np
import pytest

from tests.hub_helpers import Hub, HubClient, admin_client, new_user, running_hub
from tests.pg_helpers import Postgres, PostgresUnavailable, running_postgres, skip_or_fail

pytestmark = [
    pytest.mark.slow,
    # dask-gateway's Gateway.__del__ touches its stopped event loop when collected
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def postgres() -> Postgres:
    try:
        with running_postgres() as pg:
            yield pg
    except PostgresUnavailable as exc:
        skip_or_fail(f"PostgreSQL cannot be started here: {exc}")


@pytest.fixture(scope="module")
def hub(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory):
    url = postgres.url_for(scheme="postgresql+psycopg2")
    with running_hub(tmp_path_factory.mktemp("hub-pg") / "var", db_url=url) as h:
        yield h


@pytest.fixture(scope="module")
def admin(hub: Hub) -> HubClient:
    return admin_client(hub)


def _rows(pg: Postgres, query: str, *args: object, dbname: str | None = None
          ) -> list[tuple]:
    with contextlib.closing(pg.connect(dbname)) as conn, conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall()


def test_hub_uses_postgresql_and_a_user_computes(postgres: Postgres, hub: Hub,
                                                 admin: HubClient) -> None:
    # the hub really runs on PostgreSQL: nothing went to the default SQLite file
    assert not (hub.runtime.hub_dir / "jupyterhub.sqlite").exists()
    assert hub.proc.poll() is None

    name = f"pguser{uuid.uuid4().hex[:6]}"
    user = new_user(hub, admin, name)
    assert user.token

    model = user.api("GET", f"/hub/api/users/{name}")
    assert model.status_code == 200 and model.json()["name"] == name
    assert user.api("GET", "/hub/api/users").status_code == 403  # not an admin

    # the hub's and NativeAuthenticator's tables, with the users, are in PostgreSQL
    tables = {t for (t,) in _rows(postgres, "SELECT table_name FROM information_schema."
                                            "tables WHERE table_schema = 'public'")}
    assert {"users", "users_info", "api_tokens", "alembic_version"} <= tables, tables
    hub_users = {n for (n,) in _rows(postgres, "SELECT name FROM users")}
    assert {hub.runtime.admin, name} <= hub_users
    info = dict(_rows(postgres, "SELECT username, is_authorized FROM users_info"))
    assert info.get(name) is True and info.get(hub.runtime.admin) is True
    (hashed,) = _rows(postgres, "SELECT password FROM users_info WHERE username = %s",
                      name)[0]
    assert bytes(hashed).startswith(b"$2"), "the password must be stored bcrypt-hashed"
    assert _rows(postgres, "SELECT count(*) FROM api_tokens t JOIN users u ON "
                           "t.user_id = u.id WHERE u.name = %s", name)[0][0] >= 1

    # the user's dask-gateway cluster computes a mean equal to numpy's
    values = np.random.default_rng(7).normal(20.0, 3.0, size=200_000)
    gateway = user.gateway()
    cluster = gateway.new_cluster()
    try:
        cluster.scale(1)
        with cluster.get_client() as client:
            client.wait_for_workers(1, timeout=180)
            assert client.scheduler.address.startswith("gateway://")
            import dask.array as da

            on_cluster = float(client.compute(
                da.from_array(values, chunks=50_000).mean()).result(timeout=180))
            assert len(client.scheduler_info()["workers"]) == 1
        assert on_cluster == pytest.approx(float(np.mean(values)), rel=1e-12)
    finally:
        cluster.shutdown()
        gateway.close()


def test_approvals_are_stored_in_postgresql(postgres: Postgres, hub: Hub,
                                           admin: HubClient) -> None:
    """Approving and withdrawing through the REST API changes ``users_info`` in PostgreSQL."""
    name = f"pgappr{uuid.uuid4().hex[:6]}"
    user = new_user(hub, admin, name)

    def authorized() -> bool:
        return _rows(postgres, "SELECT is_authorized FROM users_info WHERE username = %s",
                     name)[0][0]

    assert authorized() is True
    assert admin.api("DELETE", f"/hub/api/oceandata/signups/{name}").status_code == 200
    assert authorized() is False
    assert not HubClient(hub, name).login()
    assert admin.approve(name).status_code == 200
    assert authorized() is True
    assert HubClient(hub, name).login()
    assert not HubClient(hub, name).login("wrong-password-123")
    assert user.name == name


def test_hub_starts_with_a_plain_postgresql_url(postgres: Postgres,
                                               tmp_path_factory: pytest.TempPathFactory
                                               ) -> None:
    """``postgresql://`` (no driver) is what users give; psycopg2 is the installed driver."""
    url = postgres.url_for(postgres.create_database("jupyterhub_plain"))
    assert url.startswith("postgresql://")
    with running_hub(tmp_path_factory.mktemp("hub-pg-plain") / "var", db_url=url) as hub:
        assert admin_client(hub).token
        assert {n for (n,) in _rows(postgres, "SELECT username FROM users_info",
                                    dbname="jupyterhub_plain")} == {hub.runtime.admin}
