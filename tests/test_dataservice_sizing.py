"""Estimates before reading (:mod:`oceandata.dataservice.sizing`): dry runs, 413s, splits.

One app for the module, in-process (``TestClient``), its anonymous class limited to
1 MB (``inner.state.traffic``). Each protocol's dry run is compared with the size of the
real answer to the same request: exact for OPeNDAP and griddap ``.dods``, never below
the answer for an "upper bound", within a stated tolerance for an "estimate". Oversized
requests are refused with the contract's 413 body, and every piece of the suggested
split is dry-run to check that it fits.
"""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from dataservice_helpers import RESTRICTED, make_catalog
from fastapi.testclient import TestClient

from oceandata.config import AnonymousLimits, TrafficSettings
from oceandata.dataservice import create_app, estimate

LIMIT = 1_000_000
#: what every estimate carries (the contract between the helpers of issue 16)
KEYS = {"dataset", "version", "protocol", "format", "bytes", "kind", "read_bytes",
        "read_chunks", "access_class", "limit", "subset", "split"}
#: an "estimate" of a text format is within this fraction of the real size
TOLERANCE = 0.35

GRID = "sst[(1990-01-01):1:(1990-03-01)][(0.5):(10.5)][(0.5):(10.5)]"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp("sizing")
    catalog = make_catalog(folder / "catalog")
    app = create_app(catalog, prefix="/")
    app.state.inner.state.traffic = TrafficSettings(anonymous=AnonymousLimits(
        sync_bytes="1MB"))
    with TestClient(app) as client:
        yield SimpleNamespace(client=client, catalog=catalog)


def dry(service: SimpleNamespace, url: str) -> dict:
    resp = service.client.get(url + ("&" if "?" in url else "?") + "dry_run=1")
    assert resp.status_code == 200, resp.text
    return resp.json()


# (url, exact): exact sizes must match; otherwise the kind says how to compare
SMALL = {
    "subset nc": ("/datasets/cobe_sst2/subset?bbox=0,0,10,10&time=1990-01/1990-03&format=nc",
                  False),
    "subset nc4": ("/datasets/cobe_sst2/subset?bbox=0,0,10,10&time=1990-01/1990-03", False),
    "subset csv": ("/datasets/cobe_sst2/subset?bbox=0,0,10,10&time=1990-01/1990-03"
                   "&format=csv", False),
    "opendap": ("/datasets/cobe_sst2/opendap.dods?sst[0:1:2][10:20][30:40]", True),
    "opendap all": ("/datasets/dsg_profile/opendap.dods", True),
    "zarr": ("/datasets/cobe_sst2/zarr/sst/c/3/0/0", False),
    "zarr coordinate": ("/datasets/cobe_sst2/zarr/lat/c/0", True),
    "griddap dods": (f"/erddap/griddap/cobe_sst2.dods?{GRID}", True),
    "griddap csv": (f"/datasets/cobe_sst2/erddap/griddap/cobe_sst2.csv?{GRID}", False),
    "griddap json": (f"/erddap/griddap/cobe_sst2.json?{GRID}", False),
    "tabledap": ("/erddap/tabledap/dsg_profile.csv?time,depth,temp&depth<10", False),
    "edr position": ("/datasets/cobe_sst2/edr/position?coords=POINT(10 10)"
                     "&datetime=1990-01-01/1990-12-31", False),
    "edr cube": ("/datasets/cobe_sst2/edr/cube?bbox=0,0,5,5&datetime=1990-01-01/1990-03-31"
                 "&f=csv", False),
}


@pytest.mark.parametrize("name", list(SMALL))
def test_dry_run_against_the_answer(service: SimpleNamespace, name: str) -> None:
    url, exact = SMALL[name]
    est = dry(service, url)
    assert KEYS <= set(est) and est["access_class"] == "anonymous" and est["limit"] == LIMIT
    assert est["split"] is None and est["read_chunks"] >= 1 and est["read_bytes"] > 0
    resp = service.client.get(url)
    assert resp.status_code == 200, resp.text[:300]
    real = len(resp.content)
    if exact:
        assert est["bytes"] == real
    elif est["kind"] == "upper bound":
        assert est["bytes"] >= real
    else:
        assert abs(est["bytes"] - real) <= TOLERANCE * real, (est["bytes"], real)


def test_subset_estimate_is_the_equivalent_of_other_protocols(service: SimpleNamespace
                                                                ) -> None:
    est = dry(service, SMALL["opendap"][0])
    assert est["subset"] == {"bbox": "30.5,69.5,40.5,79.5",
                             "time": "1950-01-01T00:00:00/1950-03-01T00:00:00",
                             "depth": None, "var": "sst", "format": "nc"}
    # the equivalent download selects the same cells
    sub = dry(service, "/datasets/cobe_sst2/subset?" + "&".join(
        f"{k}={v}" for k, v in est["subset"].items() if v))
    assert sub["dims"] == {"time": 3, "lat": 11, "lon": 11}
    assert sub["read_bytes"] == est["read_bytes"]


OVERSIZED = {
    "subset": "/datasets/cobe_sst2/subset?time=1990/1999",
    "opendap": "/datasets/cobe_sst2/opendap.dods?sst[0:1:100][0:179][0:359]",
    "zarr": "/datasets/basin_mask/zarr/basin/c/0/0/0",
    "griddap": "/erddap/griddap/cobe_sst2.csv?sst[(1990-01-01):1:(1990-12-01)][][]",
    "tabledap": "/erddap/tabledap/oisst_wa.csv",
    "edr": "/datasets/cobe_sst2/edr/cube?bbox=0,-80,300,80&datetime=1990-01-01/1992-12-31",
    "subset by box": "/datasets/etopo20/subset?format=csv",
}


@pytest.mark.parametrize("name", list(OVERSIZED))
def test_oversized_413_with_a_split_that_fits(service: SimpleNamespace, name: str) -> None:
    resp = service.client.get(OVERSIZED[name] + ("&" if "?" in OVERSIZED[name] else "?")
                              + "async=1")  # anonymous: no job, the split only
    assert resp.status_code == 413, resp.text[:300]
    body = resp.json()
    assert {"detail", "estimate", "limit", "split", "subset", "async"} <= set(body)
    assert body["async"] is None and body["limit"] == LIMIT
    assert "above the download limit of 1 MB for anonymous clients" in body["detail"]
    assert "\n" not in body["detail"]
    assert body["estimate"]["bytes"] > LIMIT and KEYS <= set(body["estimate"])
    assert body["subset"] == body["estimate"]["subset"] is not None
    split = body["split"]
    assert split["by"] in ("time", "bbox") and split["parts"] == len(split["requests"]) >= 2
    for piece in split["requests"]:
        url = urlsplit(piece["url"])
        assert url.path.endswith("/subset")
        assert dry(service, f"{url.path}?{url.query}")["bytes"] <= LIMIT


def test_bad_dry_runs_are_400_one_sentence(service: SimpleNamespace) -> None:
    for url, words in [
        ("/datasets/cobe_sst2/subset?bbox=1,2,3&dry_run=1", "is not W,S,E,N"),
        ("/datasets/cobe_sst2/subset?time=2100/2101&dry_run=1", "time range"),
        ("/datasets/cobe_sst2/opendap.dods?nope[0]&dry_run=1", "no variable 'nope'"),
        ("/erddap/griddap/cobe_sst2.csv?sst[(1990-01-01)][(0):(10)]&dry_run=1", "expected"),
        ("/erddap/tabledap/dsg_point.csv?nope&dry_run=1", "Unrecognized variable"),
        ("/datasets/cobe_sst2/edr/position?coords=POINT(1)&dry_run=1", "EDR"),
    ]:
        resp = service.client.get(url)
        assert resp.status_code == 400, (url, resp.text)
        detail = resp.json()["detail"]
        assert words in detail and "\n" not in detail and "Traceback" not in detail, url


def test_restricted_dry_run_is_404_for_anonymous(service: SimpleNamespace) -> None:
    for url in (f"/datasets/{RESTRICTED}/subset?dry_run=1",
                f"/datasets/{RESTRICTED}/opendap.dods?dry_run=1",
                f"/datasets/{RESTRICTED}/erddap/tabledap/{RESTRICTED}.csv?dry_run=1",
                f"/erddap/tabledap/{RESTRICTED}.csv?dry_run=1"):
        resp = service.client.get(url)
        assert resp.status_code == 404, url
        assert "bytes" not in resp.text


def test_python_estimate_is_the_service_s(service: SimpleNamespace) -> None:
    url = SMALL["subset csv"][0]
    web = dry(service, url)
    own = estimate("cobe_sst2", bbox="0,0,10,10", time="1990-01/1990-03", format="csv",
                   catalog=service.catalog)
    assert own["limit"] == 500_000_000  # the default anonymous class, not the test app's
    assert {k: v for k, v in own.items() if k != "limit"} == {
        k: v for k, v in web.items() if k != "limit"}
    dap = estimate("cobe_sst2", "opendap", constraint="sst[0:1:2][10:20][30:40]",
                   catalog=service.catalog)
    assert dap["bytes"] == dry(service, SMALL["opendap"][0])["bytes"]
    with pytest.raises(Exception, match="is not W,S,E,N"):
        estimate("cobe_sst2", bbox="1,2,3", catalog=service.catalog)


def test_nothing_is_read(service: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dry run computes no dask graph (the scheduler raises if asked)."""
    import dask

    with dask.config.set(scheduler=_refuse):
        for name in ("subset nc4", "opendap", "zarr", "griddap csv", "edr position"):
            dry(service, SMALL[name][0])
        dry(service, OVERSIZED["subset"])


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("a dry run computed data")


def test_limit_of_the_class_and_the_legacy_setting(service: SimpleNamespace,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    url = SMALL["subset nc4"][0]
    assert dry(service, url)["limit"] == LIMIT
    monkeypatch.setenv("OCEANDATA_MAX_DOWNLOAD", "50kB")  # the operator's cap on every class
    assert service.client.get(url).status_code == 413
    monkeypatch.setenv("OCEANDATA_MAX_DOWNLOAD", "5MB")  # above the class: the class's
    assert dry(service, url)["limit"] == LIMIT


def test_other_routes_ignore_dry_run(service: SimpleNamespace) -> None:
    resp = service.client.get("/datasets/cobe_sst2/opendap.dds?sst&dry_run=1")
    assert resp.status_code == 200 and resp.text.startswith("Dataset {")
    assert service.client.get("/api/health?dry_run=1").json() == {"ok": True}


# --------------------------------------------------------------------------- attacks


def test_data_in_a_post_body_is_refused_not_served_unestimated(service: SimpleNamespace
                                                               ) -> None:
    """EDR takes its geometry in a POST body too: that would pass the size guard."""
    url = "/datasets/cobe_sst2/edr/area?datetime=1990-01-01/1993-12-31"
    big = "POLYGON((0 0,60 0,60 60,0 60,0 0))"
    resp = service.client.post(url, content=big, headers={"Content-Type": "application/wkt"})
    assert resp.status_code == 405 and resp.headers["allow"] == "GET", resp.text[:200]
    assert resp.json()["detail"].endswith("URL.")
    # the same query in the URL is estimated, and refused for its size
    assert service.client.get(f"{url}&coords={big}").status_code == 413
    # STAC's POST search is not data: still answered
    assert service.client.post("/stac/search", json={"limit": 1}).status_code == 200


@pytest.mark.parametrize("target", [f"{RESTRICTED}.csv", f"{RESTRICTED}.dods",
                                    f"{RESTRICTED}_sst.csv"])
def test_server_wide_griddap_dry_run_tells_restricted_from_unknown_nothing(
        service: SimpleNamespace, target: str) -> None:
    unknown = target.replace(RESTRICTED, "secrex_sst")
    answers = [service.client.get(f"/erddap/griddap/{t}?dry_run=1") for t in (target, unknown)]
    assert [a.status_code for a in answers] == [404, 404]
    assert answers[0].json()["detail"] == answers[1].json()["detail"].replace(
        "secrex_sst", RESTRICTED)


def test_split_search_is_cached_and_bounded(service: SimpleNamespace,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """An oversized request costs its split once; a second one is answered from the cache,
    and a search over its budget gives no split rather than more work."""
    from oceandata.dataservice import sizing

    calls: list[int] = []
    plan = sizing.subset_plan
    monkeypatch.setattr(sizing, "subset_plan", lambda *a, **k: calls.append(1) or plan(*a, **k))
    url = "/datasets/cobe_sst2/subset?format=nc"
    first = service.client.get(url)
    assert first.status_code == 413 and first.json()["split"] is not None
    assert 0 < len(calls) <= sizing.SPLIT_BUDGET + 2
    done = len(calls)
    again = service.client.get(url)
    assert again.json()["split"] == first.json()["split"]
    assert len(calls) - done <= 1  # the request's own plan, not the split's
    monkeypatch.setattr(sizing, "SPLIT_BUDGET", 0)
    sizing._SPLITS.clear()
    assert service.client.get(url).json()["split"] is None
