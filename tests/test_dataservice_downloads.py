"""Subset downloads of the open-data service (``datasets/{id}/subset``), fetched with curl.

One app is served on loopback for the module. Every download is compared with
``oceandata.subset(oceandata.open_dataset(name), ...)`` computed here (the CLI's path)
and with a selection written directly in xarray on the sample file.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import netCDF4
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import requests
import xarray as xr
from dataservice_helpers import RESTRICTED, make_catalog, serving

import oceandata
from oceandata.dataservice import create_app
from oceandata.dataservice.downloads import _version
from oceandata.errors import UsageError

CURL = Path("/usr/bin/curl")
pytestmark = pytest.mark.skipif(not CURL.exists(), reason="needs /usr/bin/curl")

DATELINE = "bbox=170,-10,-170,10&time=1990-01/1990-03"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp("downloads")
    catalog = make_catalog(folder / "catalog")
    app = create_app(catalog, prefix="/")
    spool = folder / "spool"
    spool.mkdir()
    app.state.inner.state.download_dir = str(spool)
    with serving(app) as base:
        yield SimpleNamespace(base=base, catalog=catalog, spool=spool, folder=folder)


def curl(service: SimpleNamespace, path: str, name: str) -> tuple[int, dict[str, str], Path]:
    """GET *path* with the curl binary; status, headers (lower-case names), body file."""
    out = service.folder / name
    head = service.folder / f"{name}.headers"
    subprocess.run([str(CURL), "-sS", "-g", "-o", str(out), "-D", str(head),
                    service.base + path], check=True, timeout=120)
    lines = head.read_text().strip().splitlines()
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return status, headers, out


def expected(service: SimpleNamespace, name: str, **request: object) -> xr.Dataset:
    """The CLI's path: open the entry, subset it, load it."""
    return oceandata.subset(oceandata.open_dataset(name, catalog=service.catalog),
                            **request).load()


def cobe_files(service: SimpleNamespace, year: int) -> xr.Dataset:
    paths = service.catalog.entry("cobe_sst2").paths()
    return xr.open_dataset(next(p for p in paths if p.endswith(f"year{year}.nc")))


def check_file_headers(headers: dict[str, str], body: Path, media: str, filename: str) -> None:
    assert headers["content-type"].split(";")[0] == media
    assert int(headers["content-length"]) == body.stat().st_size
    assert headers["content-disposition"] == f'attachment; filename="{filename}"'


def test_netcdf4_across_the_dateline(service: SimpleNamespace) -> None:
    status, headers, body = curl(service, f"/datasets/cobe_sst2/subset?{DATELINE}&format=nc4",
                                 "dateline.nc")
    assert status == 200, body.read_text()[:300]
    check_file_headers(headers, body, "application/x-netcdf",
                       "cobe_sst2_170,-10,-170,10_1990-01--1990-03.nc")
    assert list(service.spool.iterdir()) == []  # removed before the first byte was sent
    with netCDF4.Dataset(body) as nc:
        assert nc.data_model == "NETCDF4"
    got = xr.open_dataset(body).load()

    want = expected(service, "cobe_sst2", bbox=(170, -10, -170, 10), time=("1990-01", "1990-03"))
    xr.testing.assert_equal(got[["sst"]], want[["sst"]])
    # independently: the regular 0..360 grid holds the box as lon 170..190
    direct = cobe_files(service, 1990).sst.sel(lat=slice(10, -10), lon=slice(170, 190))
    np.testing.assert_array_equal(got.sst.values, direct.isel(time=slice(0, 3)).values)
    assert (got.lon < 180).any() and (got.lon > 180).any()  # both sides of 180°
    assert got.sizes == {"time": 3, "lat": 20, "lon": 20}

    url = f"{service.base}/datasets/cobe_sst2/subset?{DATELINE}&format=nc4"
    entry = service.catalog.entry("cobe_sst2").metadata
    assert got.attrs["source_url"] == url
    assert got.attrs["history"].splitlines()[0].split(": ", 1)[1].startswith(
        f"oceandata {oceandata.__version__}: GET {url} (source=cobe_sst2")
    assert got.attrs["source_entry"] == "cobe_sst2"
    assert got.attrs["license"] == entry.license and got.attrs["doi"] == entry.doi
    assert got.attrs["oceandata_version"] == oceandata.__version__
    assert json.loads(got.attrs["oceandata_request"])["bbox"] == [170, -10, -170, 10]


def test_netcdf3_across_the_grid_seam(service: SimpleNamespace) -> None:
    status, headers, body = curl(
        service, "/datasets/cobe_sst2/subset?bbox=-5,-5,5,5&time=1990-01/1990-01&var=sst"
                 "&format=nc", "seam.nc")
    assert status == 200, body.read_text()[:300]
    check_file_headers(headers, body, "application/x-netcdf",
                       "cobe_sst2_-5,-5,5,5_1990-01--1990-01_sst.nc")
    with netCDF4.Dataset(body) as nc:
        assert nc.data_model == "NETCDF3_64BIT_OFFSET"
    got = xr.open_dataset(body).load()
    want = expected(service, "cobe_sst2", bbox=(-5, -5, 5, 5), time=("1990-01", "1990-01"),
                    variables=["sst"])
    xr.testing.assert_equal(got[["sst"]], want[["sst"]])
    year = cobe_files(service, 1990).sst.isel(time=0).sel(lat=slice(5, -5))
    direct = xr.concat([year.sel(lon=slice(355, 360)), year.sel(lon=slice(0, 5))], "lon")
    np.testing.assert_array_equal(got.sst.isel(time=0).values, direct.values)
    np.testing.assert_array_equal(got.lon.values, [355.5, 356.5, 357.5, 358.5, 359.5,
                                                   0.5, 1.5, 2.5, 3.5, 4.5])


def test_csv_of_a_series(service: SimpleNamespace) -> None:
    path = "/datasets/oisst_wa/subset?time=2010-01/2010-12&format=csv"
    status, headers, body = curl(service, path, "series.csv")
    assert status == 200, body.read_text()[:300]
    check_file_headers(headers, body, "text/csv", "oisst_wa_2010-01--2010-12.csv")
    text = body.read_text()
    comments = [line for line in text.splitlines() if line.startswith("#")]
    assert comments[0] == "# source_entry: oisst_wa"
    assert f"# source_url: {service.base}{path}" in comments
    assert "# license: MIT" in comments
    assert any(line.startswith("# history: ") and f"GET {service.base}{path}" in line
               for line in comments)
    got = pd.read_csv(body, comment="#", parse_dates=["time"])

    want = expected(service, "oisst_wa", time=("2010-01", "2010-12"))
    np.testing.assert_array_equal(got["time"].to_numpy(), want.time.values)
    np.testing.assert_array_equal(got["sst"].to_numpy(dtype=want.sst.dtype), want.sst.values)
    sample = service.catalog.entry("oisst_wa").paths()[0]
    direct = xr.open_dataset(sample).sst.sel(time=slice("2010-01-01", "2010-12-31"))
    assert len(got) == direct.size == 365
    np.testing.assert_array_equal(got["sst"].to_numpy(dtype=direct.dtype), direct.values)


def test_parquet_and_json(service: SimpleNamespace) -> None:
    want = expected(service, "cobe_sst2", bbox=(170, -10, -170, 10),
                    time=("1990-01", "1990-03")).to_dataframe().reset_index()
    status, headers, body = curl(service, f"/datasets/cobe_sst2/subset?{DATELINE}"
                                          "&format=parquet", "dateline.parquet")
    assert status == 200, body.read_bytes()[:300]
    check_file_headers(headers, body, "application/vnd.apache.parquet",
                       "cobe_sst2_170,-10,-170,10_1990-01--1990-03.parquet")
    table = pq.read_table(body)
    meta = table.schema.metadata
    assert meta[b"source_entry"] == b"cobe_sst2" and b"GET " in meta[b"history"]
    assert table.schema.field("sst").metadata[b"units"]
    got = table.to_pandas()
    assert list(got.columns) == ["time", "lat", "lon", "sst"]
    for column in ("time", "lat", "lon", "sst"):
        np.testing.assert_array_equal(got[column].to_numpy(), want[column].to_numpy())

    status, headers, body = curl(service, f"/datasets/cobe_sst2/subset?{DATELINE}"
                                          "&format=json", "dateline.json")
    assert status == 200, body.read_text()[:300]
    check_file_headers(headers, body, "application/json",
                       "cobe_sst2_170,-10,-170,10_1990-01--1990-03.json")
    doc = json.loads(body.read_text())
    assert doc["attributes"]["license"] == service.catalog.entry("cobe_sst2").metadata.license
    assert doc["table"]["columnNames"] == ["time", "lat", "lon", "sst"]
    rows = pd.DataFrame(doc["table"]["rows"], columns=doc["table"]["columnNames"])
    np.testing.assert_array_equal(pd.to_datetime(rows["time"]).to_numpy(),
                                  want["time"].to_numpy())
    np.testing.assert_array_equal(rows["sst"].to_numpy(dtype="float32"),
                                  want["sst"].to_numpy())
    assert list(service.spool.iterdir()) == []


@pytest.mark.parametrize(("path", "status", "words"), [
    ("cobe_sst2/subset?bbox=1,2,3", 400, "is not W,S,E,N"),
    ("cobe_sst2/subset?bbox=10,20,30,-20", 400, "south (20) is greater than north"),
    ("cobe_sst2/subset?time=1990", 400, "is not START/END"),
    ("cobe_sst2/subset?time=1999/1990", 400, "after"),
    ("cobe_sst2/subset?time=2100/2101", 400, "the data's time range 1950-01-01/2009-12-01"),
    ("cobe_sst2/subset?depth=a/b", 400, "is not MIN/MAX"),
    ("cobe_sst2/subset?depth=0/10", 400, "no vertical coordinate"),
    ("cobe_sst2/subset?var=sst,nope", 400, "valid names: sst"),
    ("cobe_sst2/subset?format=xls", 400, "nc, nc4, csv, parquet, json"),
    ("cobe_sst2/subset?version=v1", 400, "not a versioned store"),
    ("cobe_sst2@v1/subset", 404, "not a versioned store"),
    ("no_such_thing/subset", 404, "There is no dataset 'no_such_thing'"),
    (f"{RESTRICTED}/subset?format=csv", 404, f"There is no dataset '{RESTRICTED}'"),
])
def test_bad_requests_one_sentence(service: SimpleNamespace, path: str, status: int,
                                   words: str) -> None:
    resp = requests.get(f"{service.base}/datasets/{quote(path, safe='/?=&,@')}", timeout=60)
    assert resp.status_code == status
    body = resp.json()
    assert list(body) == ["detail"]
    assert words in body["detail"]
    assert "\n" not in body["detail"] and "Traceback" not in resp.text
    assert list(service.spool.iterdir()) == []


def test_version_from_id_and_query_must_agree() -> None:
    request = SimpleNamespace(state=SimpleNamespace(version="v1"))
    assert _version(request, None) == "v1" and _version(request, "v1") == "v1"
    with pytest.raises(UsageError, match="asks for version 'v1' but version= asks for 'v2'"):
        _version(request, "v2")
    assert _version(SimpleNamespace(state=SimpleNamespace(version=None)), "v2") == "v2"


def test_above_the_limit_413_with_a_split(service: SimpleNamespace,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCEANDATA_MAX_DOWNLOAD", "1MB")
    status, headers, body = curl(service, "/datasets/cobe_sst2/subset?time=1990/1999"
                                          "&format=nc4", "big.json")
    assert status == 413
    assert headers["content-type"] == "application/json"
    refusal = json.loads(body.read_text())
    assert "above the download limit of 1 MB" in refusal["detail"]
    assert refusal["limit"] == 1_000_000
    assert refusal["estimate"]["format"] == "nc4"
    assert refusal["estimate"]["bytes"] > refusal["limit"]
    assert refusal["estimate"]["dims"] == {"time": 120, "lat": 180, "lon": 360}
    split = refusal["split"]
    assert split["by"] == "time" and split["parts"] == len(split["requests"]) >= 2
    assert split["requests"][0]["time"].startswith("1990-01-01/")
    assert split["requests"][-1]["time"].endswith("/1999-12-01")
    assert split["requests"][0]["url"].startswith(f"{service.base}/datasets/cobe_sst2/subset?")
    assert list(service.spool.iterdir()) == []

    monkeypatch.setenv("OCEANDATA_MAX_DOWNLOAD", "lots")
    resp = requests.get(f"{service.base}/datasets/cobe_sst2/subset?time=1990/1990", timeout=60)
    assert resp.status_code == 500 and "OCEANDATA_MAX_DOWNLOAD='lots'" in resp.json()["detail"]
