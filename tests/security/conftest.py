"""One running platform for the whole security suite, started as ``make up`` starts it.

Every attack in ``tests/security/`` is replayed against this hub (JupyterHub with its proxy,
the allocations/jobs service, the dask-gateway gate), so the suite pays for one start-up.
Tests make their own users (``fresh_name``) and never depend on each other's state.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from hub_helpers import Hub, HubClient, admin_client, running_hub, wait_for_service


@pytest.fixture(scope="session")
def sec_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """The platform under attack (one for the session)."""
    with running_hub(tmp_path_factory.mktemp("hub-security") / "var") as hub:
        wait_for_service(hub, "allocations")
        yield hub


@pytest.fixture(scope="session")
def sec_admin(sec_hub: Hub) -> HubClient:
    """The first administrator, logged in with a full token."""
    return admin_client(sec_hub)


def fresh_name(prefix: str = "u") -> str:
    """A new valid user name (lower case letters and digits)."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"
