"""Property-based fuzzing of the open-data service from its OpenAPI schema.

schemathesis sends every documented operation (OPeNDAP, Zarr keys and chunks, EDR,
ERDDAP, STAC, downloads) generated paths, queries and bodies, anonymously, against the
service on 127.0.0.1 serving the sample catalog and the restricted ``secret_sst``. It
fails on any 5xx: bad input is a 4xx with a sentence, never a crash. Every generated
path naming ``secret_sst`` must also answer as if it did not exist (never 200).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator

import pytest
import schemathesis
from dataservice_helpers import RESTRICTED, make_catalog, serving
from hypothesis import HealthCheck, settings

from oceandata.config import AnonymousLimits, TrafficSettings
from oceandata.dataservice import create_app

pytestmark = [pytest.mark.slow]

DATASETS = ["cobe_sst2", "dsg_profile", "oisst_wa", "tos_bipolar", RESTRICTED, "no_such_set"]
#: generated requests per operation (each touches real files; more only lengthens the run)
EXAMPLES = 12

_APP = None


def _app():
    global _APP
    if _APP is None:
        import tempfile
        from pathlib import Path

        _APP = create_app(make_catalog(Path(tempfile.mkdtemp(prefix="fuzz-data-"))))
        # the fuzzer is one anonymous client sending thousands of requests: above the
        # default rate the traffic layer's 429 would come before the guard's 404
        # (tests/test_dataservice_traffic.py is where the rate limit is tested)
        _APP.state.inner.state.traffic = TrafficSettings(
            anonymous=AnonymousLimits(rate="1000000/minute"))
    return _APP


def _openapi() -> dict:
    """The service's schema, with the path parameters some plugin routes leave out.

    A plugin route below ``/datasets/{dataset_id}`` that does not take ``dataset_id``
    itself (the guard reads it) is documented without it; declared here as a string.
    """
    doc = copy.deepcopy(_app().state.inner.openapi())
    for path, ops in doc["paths"].items():
        for op in ops.values():
            if not isinstance(op, dict):
                continue
            declared = {p["name"] for p in op.get("parameters", []) if p.get("in") == "path"}
            for name in re.findall(r"\{([^}]+)\}", path):
                if name not in declared:
                    op.setdefault("parameters", []).append(
                        {"name": name, "in": "path", "required": True,
                         "schema": {"type": "string"}})
            # real datasets (gridded, DSG, series), the restricted one and an unknown
            # name, so that generated queries reach the protocols, not only the guard
            for param in op.get("parameters", []):
                if param.get("in") == "path" and param["name"] == "dataset_id":
                    param["schema"] = {"type": "string", "enum": DATASETS}
    return doc


schema = schemathesis.openapi.from_dict(_openapi())


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serving(_app()) as url:
        yield url


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_5xx_on_any_generated_request(case, base: str) -> None:
    response = case.call(base_url=base, timeout=120)
    assert response.status_code < 500, (case.method, case.formatted_path,
                                        response.text[:300])
    if (case.path_parameters or {}).get("dataset_id") == RESTRICTED:
        assert response.status_code == 404, case.formatted_path
