"""Shared fixtures: the real sample files through the project's registry."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

# hypothesis' pytest plugin imports the package lazily at the end of the session; import it
# now, while nothing else is being collected (see tests/hub_helpers.py on late collections)
importlib.import_module("hypothesis")

REPO = Path(__file__).resolve().parents[1]
_SHARED = REPO.parent / "shared" / "data"
if "OCEANDATA_SAMPLE_DATA" not in os.environ and (_SHARED / "MANIFEST.md").exists():
    os.environ["OCEANDATA_SAMPLE_DATA"] = str(_SHARED)


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
