"""``oceandata.compute.cluster`` outside the hub: a LocalCluster on 127.0.0.1."""

from __future__ import annotations

import numpy as np
import pytest

from oceandata.compute import cluster, in_hub
from oceandata.errors import UsageError


def test_local_cluster_outside_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    assert not in_hub()
    import dask.array as da

    with cluster(workers=1, worker_cores=1, worker_memory="1GiB") as c, c.get_client() as client:
        assert type(c).__name__ == "LocalCluster"
        assert c.scheduler_address.startswith("tls://127.0.0.1:")
        info = client.scheduler_info()
        assert len(info["workers"]) == 1
        worker = next(iter(info["workers"].values()))
        assert worker["nthreads"] == 1
        assert worker["memory_limit"] == 2**30
        x = np.arange(1_000_000, dtype=float)
        assert da.from_array(x, chunks=100_000).mean().compute() == pytest.approx(x.mean())


def test_the_local_cluster_refuses_clients_without_its_credentials(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback is every account's: another user's process must not reach the scheduler
    (it would run code as this user), neither in clear nor with credentials of its own."""
    from distributed import Client
    from distributed.security import Security

    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    with cluster(workers=1, worker_cores=1, worker_memory="1GiB") as c:
        address = c.scheduler_address
        with pytest.raises((OSError, TimeoutError)):
            Client(address.replace("tls://", "tcp://"), timeout=3)
        with pytest.raises((OSError, TimeoutError)):
            Client(address, timeout=3, security=Security.temporary())
        with c.get_client() as client:  # the cluster's own credentials do
            assert client.submit(sum, [1, 2]).result() == 3


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"workers": -1}, "workers=-1 must be 0 or more"),
    ({"worker_cores": 0}, "worker_cores=0 must be at least 1"),
    ({"worker_memory": "lots"}, "worker_memory 'lots' is not a size"),
])
def test_bad_requests_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        cluster(**kwargs)


def test_inside_a_batch_job_the_cluster_fits_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    monkeypatch.setenv("OCEANDATA_JOB_CORES", "1")
    monkeypatch.setenv("OCEANDATA_JOB_MEMORY", "1536MiB")
    with cluster() as c, c.get_client() as client:
        workers = client.scheduler_info()["workers"].values()
        assert [w["nthreads"] for w in workers] == [1]
        assert sum(w["memory_limit"] for w in workers) <= 1536 * 2**20
