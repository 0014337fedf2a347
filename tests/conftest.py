"""Shared fixtures: the real sample files through the project's registry."""

from __future__ import annotations

import ast
import importlib
import os
import sys
from pathlib import Path

import pytest

# hypothesis' pytest plugin imports the package lazily at the end of the session; import it
# now, while nothing else is being collected (see tests/hub_helpers.py on late collections)
importlib.import_module("hypothesis")



def _parse_again_after_cpython_106905(parse):
    """``ast.parse`` that tries once more on CPython 3.11's spurious SystemError.

    Python 3.11 keeps the AST constructor's recursion depth in interpreter-wide state, so
    a traceback formatted in another thread (3.11's traceback module parses source lines
    for its carets) at the moment pytest parses a failing test's source raises
    "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905).
    pytest then stops the whole session with an INTERNALERROR instead of reporting the
    failure. A second parse of the same text is unaffected; any other error is raised.
    """
    import functools

    @functools.wraps(parse)
    def parse_once_more(*args, **kwargs):
        try:
            return parse(*args, **kwargs)
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc):
                raise
            return parse(*args, **kwargs)

    return parse_once_more


if sys.version_info < (3, 12):
    ast.parse = _parse_again_after_cpython_106905(ast.parse)

REPO = Path(__file__).resolve().parents[1]
_SHARED = REPO.parent / "shared" / "data"
if "OCEANDATA_SAMPLE_DATA" not in os.environ and (_SHARED / "MANIFEST.md").exists():
    os.environ["OCEANDATA_SAMPLE_DATA"] = str(_SHARED)
# the audit trail of the tests' own actions goes to a folder of this session, never to the
# checkout's var/ (tests that look at the trail point it at their own database)
if "OCEANDATA_GOVERNANCE__AUDIT_URL" not in os.environ:
    import tempfile

    _AUDIT_DIR = Path(tempfile.mkdtemp(prefix="oceandata-test-audit-"))
    os.environ["OCEANDATA_GOVERNANCE__AUDIT_URL"] = f"sqlite:///{_AUDIT_DIR / 'audit.sqlite'}"
# projects' Unix groups are the machine's while project ids are each test platform's: the
# platforms of this session use groups of their own prefix, never those of another session
# (or of a platform running on this machine)
if "OCEANDATA_STORAGE_GROUP_PREFIX" not in os.environ:
    import uuid

    os.environ["OCEANDATA_STORAGE_GROUP_PREFIX"] = f"odt{uuid.uuid4().hex[:6]}-"


@pytest.fixture(scope="session")
def repo() -> Path:
    """The source checkout."""
    return REPO


@pytest.fixture(scope="session")
def sample():
    """``sample(name) -> Path``: a real sample file fetched (and checked) by the registry."""
    from oceandata import sample_data

    return sample_data.fetch


@pytest.fixture(scope="session")
def argo_path(sample) -> Path:
    """A real delayed-mode Argo float file (csio 2902696, South China Sea)."""
    return sample("argo_2902696_prof")


@pytest.fixture(autouse=True)
def _tmp_path_reachable_by_accounts(request: pytest.FixtureRequest) -> None:
    """A test's ``tmp_path`` reachable by the users' Unix accounts (as root, see
    :func:`hub_helpers.reachable_by_accounts`): jobs there run as their owners."""
    if os.geteuid() == 0 and "tmp_path" in request.fixturenames:
        from hub_helpers import reachable_by_accounts

        reachable_by_accounts(request.getfixturevalue("tmp_path"))


@pytest.fixture(scope="session", autouse=True)
def _interpreter_reachable_by_accounts() -> None:
    """As root, the users' accounts run this venv's Python: when it comes from a private
    home (pyenv under ``/root`` on CI containers) grant search permission (o+x, no
    listing) on the way to it, as ``make sysdeps`` does; the launcher refuses otherwise."""
    if os.geteuid() == 0:
        from oceandata.hub import accounts

        if accounts.per_user():
            accounts.grant_search(accounts.interpreter_paths())


@pytest.fixture(scope="session")
def projects_hub(tmp_path_factory: pytest.TempPathFactory):
    """One running platform (hub, allocations and data services) shared by every test
    file of projects, workspaces, uploads, project catalogs and publishing (issue 20):
    each file signs up users with names of its own prefix."""
    from hub_helpers import running_hub, wait_for_service

    with running_hub(tmp_path_factory.mktemp("hub-projects") / "var") as hub:
        wait_for_service(hub)
        wait_for_service(hub, "data")
        yield hub


@pytest.fixture(scope="session")
def projects_admin(projects_hub):
    """The platform's administrator on :func:`projects_hub`, logged in with a token."""
    from hub_helpers import admin_client

    return admin_client(projects_hub)
