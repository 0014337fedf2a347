"""Property-based fuzzing of the allocations and jobs REST API from its OpenAPI schema.

schemathesis reads the service's own ``api/openapi.json`` from the running platform and
sends every operation generated requests (valid and invalid bodies, paths and queries),
as a partner (every operation) and as the administrator (read-only operations, so the
fuzzer's approvals cannot change allocations that other tests of the shared hub make).
It fails on any 5xx, on a status code or a content type that the schema does not
document, and on a response body that does not match its schema.
"""

from __future__ import annotations

import pytest
import requests
import schemathesis
from conftest import fresh_name
from hub_helpers import Hub, HubClient, new_user
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi import checks as openapi_checks

pytestmark = [pytest.mark.slow]

SCHEMA = "/services/allocations/api/openapi.json"
#: generated requests per operation and caller (enough to find the classes of 5xx the
#: probe found; more only lengthens make test)
EXAMPLES = 30
CHECKS = [schemathesis.checks.not_a_server_error, openapi_checks.status_code_conformance,
          openapi_checks.content_type_conformance,
          openapi_checks.response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzer(sec_hub: Hub, sec_admin: HubClient) -> HubClient:
    """A partner without an allocation: generated jobs are refused before they run."""
    return new_user(sec_hub, sec_admin, fresh_name("fz"))


def _openapi() -> dict:
    """The schema as the service builds it (the same app the hub runs; no I/O)."""
    from oceandata.alloc.service import create_app

    return create_app("sqlite://", prefix="/services/allocations/").openapi()


schema = schemathesis.openapi.from_dict(_openapi())


def test_the_running_service_serves_this_schema(sec_hub: Hub) -> None:
    r = requests.get(f"{sec_hub.url}{SCHEMA}", timeout=30)
    assert r.status_code == 200
    assert set(r.json()["paths"]) == set(_openapi()["paths"])


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_5xx_and_answers_match_the_schema(case, sec_hub: Hub, sec_admin: HubClient,
                                             fuzzer: HubClient) -> None:
    case.call_and_validate(base_url=sec_hub.url, checks=CHECKS, timeout=60,
                           headers={"Authorization": f"token {fuzzer.token}"})
    if case.method.upper() == "GET":
        case.call_and_validate(base_url=sec_hub.url, checks=CHECKS, timeout=60,
                               headers={"Authorization": f"token {sec_admin.token}"})
