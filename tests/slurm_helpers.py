"""The multi-node Slurm of the tests: started once per module, skipped or failed with why.

Outside CI a test that needs the multi-node Slurm (:func:`oceandata.testing.slurm.
multi_node_slurm`) is skipped, with the reason, where the cluster cannot start (not root,
programs missing); with ``CI=true`` that is a failure.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oceandata.testing.slurm import (
    MultiNodeSlurmCluster,
    SlurmUnavailable,
    in_ci,
    multi_node_slurm,
)


def skip_or_fail(reason: str) -> None:
    """Skip with *reason*, or fail in CI, where the multi-node Slurm must come up."""
    if in_ci():
        pytest.fail(f"the multi-node Slurm is required in CI: {reason}", pytrace=False)
    pytest.skip(f"no multi-node Slurm here: {reason}")


@contextlib.contextmanager
def multi_node_or_skip(workdir: Path, **options: Any) -> Iterator[MultiNodeSlurmCluster]:
    """Enter :func:`multi_node_slurm` (*options* are its own); unavailable: skip or fail."""
    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(multi_node_slurm(workdir, **options))
        except SlurmUnavailable as exc:
            skip_or_fail(str(exc))
        yield cluster
