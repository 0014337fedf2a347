"""What `make up` serves, through every protocol, without a 500.

Probing the running platform (`make up`) found three kinds of 500, each a test here:

1. A store written by ``oceandata ingest`` from a source with ``missing_value`` but no
``_FillValue`` (``foam.ocean.nc``: 1e35; ``sst_ndjfm_anom.nc``: 1e20) opens with
``_FillValue`` NaN (the Zarr array's fill value) beside ``missing_value`` in its encoding.
xarray refuses to encode such a variable again ("conflicting _FillValue and
missing_value"), so every protocol that re-encodes the dataset (the Zarr view, netCDF
subsets, griddap ``.nc``) answered 500.
2. The Argo store's times are ``int64`` nanoseconds: a netCDF-3 subset (``format=nc``)
   cannot hold them ("could not safely cast array from int64 to int32").
3. griddap of a table (a DSG entry) under its per-dataset ERDDAP root: the plugin served
   the ragged arrays as a grid and failed on ``.nc``; the server-wide root already
   answered ERDDAP's 404.

In process: the served root built by :func:`oceandata.ingest.samples.build_sample_stores`
(the two entries), the data service app under Starlette's test client, the downloads read
back with netCDF4 and compared with the sample files read directly.
"""

from __future__ import annotations

import base64
import io
import struct
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr
from fastapi.testclient import TestClient

from oceandata.ingest.samples import build_sample_stores

#: entries whose sources carry ``missing_value`` only, and their data variable
ENTRIES = {"foam_ocean": "V", "sst_ndjfm_anom": "sst"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("served")
    mp = pytest.MonkeyPatch()
    mp.setenv("OCEANDATA_DATA_DIR", str(tmp))
    root = build_sample_stores(tmp, names=[*ENTRIES, "argo_profiles"], check=False)
    from oceandata.dataservice import create_app

    with TestClient(create_app(root)) as c:
        yield c
    mp.undo()


def _source(name: str, var: str) -> np.ndarray:
    import oceandata

    return oceandata.open_catalog().to_dask(name)[var].values


@pytest.mark.parametrize("name", list(ENTRIES))
def test_every_protocol_serves_a_store_whose_source_had_only_missing_value(
        client: TestClient, name: str) -> None:
    var = ENTRIES[name]
    for path in ("zarr/zarr.json", f"zarr/{var}/zarr.json", "opendap.dds", "opendap.das",
                 "subset?format=nc", "subset?format=nc4", f"erddap/griddap/{name}.nc"):
        r = client.get(f"/datasets/{name}/{path}")
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    # the netCDF download holds the source's values, missing points masked as in the source
    r = client.get(f"/datasets/{name}/subset?format=nc")
    with netCDF4.Dataset("download.nc", memory=r.content) as nc:
        got = np.ma.filled(nc[var][:].astype("float64"), np.nan)
        assert not np.isnan(nc[var][:].filled(np.nan)).all()
    expected = _source(name, var)
    assert np.isnan(expected).any()  # the sample has missing points: the case at issue
    np.testing.assert_array_equal(got, expected.astype("float64"))
    # the Zarr view names one mask value: xarray's CF ``_FillValue`` (a float packed as
    # little-endian double, base64, in Zarr v3 attributes) is the source's missing_value
    attrs = client.get(f"/datasets/{name}/zarr/{var}/zarr.json").json()["attributes"]
    (fill,) = struct.unpack("<d", base64.b64decode(attrs["_FillValue"]))
    assert fill == attrs["missing_value"]


def test_an_opened_store_can_be_written_again(tmp_path: Path) -> None:
    """A scientist's `open_dataset(name).to_netcdf(...)` works on those stores too."""
    import oceandata

    root = build_sample_stores(tmp_path, names=["foam_ocean"], check=False)
    ds = oceandata.open_catalog(root).to_dask("foam_ocean")
    buffer = ds.to_netcdf()  # raised "conflicting _FillValue (nan) and missing_value"
    again = xr.open_dataset(io.BytesIO(bytes(buffer)))
    np.testing.assert_array_equal(again["V"].values, ds["V"].values)


def test_a_netcdf3_subset_of_int64_times_is_written_as_seconds(client: TestClient) -> None:
    r = client.get("/datasets/argo_profiles/subset?format=nc")
    assert r.status_code == 200, r.text[:300]
    with netCDF4.Dataset("argo.nc", memory=r.content) as nc:
        assert nc.file_format == "NETCDF3_64BIT_OFFSET"
        time = nc["time"]
        assert time.dtype == np.float64 and time.units.startswith("seconds since ")
        got = netCDF4.num2date(time[:], time.units, only_use_cftime_datetimes=False,
                               only_use_python_datetimes=True)
    served = client.app.state.catalog.to_dask("argo_profiles")
    expected = served["time"].values
    assert len(got) == len(expected) > 1000
    # within a microsecond: what float64 seconds keep (Argo's times, from days in
    # float64, are not whole seconds in the store: 06:42:56.999999...)
    error = np.abs(np.array(got, dtype="datetime64[ns]") - expected)
    assert error.max() <= np.timedelta64(1, "us")


@pytest.mark.parametrize("ext", ["nc", "das", "csv"])
def test_griddap_of_a_table_is_erddaps_404_on_every_root(client: TestClient,
                                                         ext: str) -> None:
    for path in (f"/datasets/dsg_point/erddap/griddap/dsg_point.{ext}",
                 f"/erddap/griddap/dsg_point.{ext}"):
        r = client.get(path)
        assert r.status_code == 404, (path, r.status_code, r.text[:300])
        assert "Currently unknown datasetID=dsg_point" in r.text
    # whatever id the plugin would make of a table (suffixed per dimension: it served
    # dsg_profile_obs as a grid), and the table's own griddap index lists nothing
    for ext in ("nc", "das"):
        r = client.get(f"/datasets/dsg_profile/erddap/griddap/dsg_profile_obs.{ext}")
        assert r.status_code == 404, r.text[:300]
    r = client.get("/datasets/dsg_profile/erddap/griddap/index.json")
    assert r.status_code == 200 and r.json()["table"]["rows"] == [], r.text[:300]
    # the table itself is served by tabledap, and a grid still by griddap
    assert client.get("/datasets/dsg_point/erddap/tabledap/dsg_point.csv").status_code == 200
    r = client.get("/datasets/foam_ocean/erddap/griddap/foam_ocean.das")
    assert r.status_code == 200, r.text[:300]


def _dap_strings(body: bytes, count: int) -> list[str]:
    """The first String array of a DAP2 ``.dods`` answer (XDR: a count, then each string
    as its length and bytes padded to 4)."""
    data = body.split(b"Data:\r\n", 1)[1]
    (n,) = struct.unpack(">I", data[:4])
    assert n == count
    out, at = [], 4
    for _ in range(n):
        (size,) = struct.unpack(">I", data[at:at + 4])
        out.append(data[at + 4:at + 4 + size].decode())
        at += 4 + size + (-size % 4)
    return out


def test_text_of_a_zarr_v3_store_is_served_over_opendap(client: TestClient) -> None:
    """Zarr v3 text is numpy's StringDType (kind ``T``): DAP's ``.dods`` failed after its
    200 had been sent (a truncated answer), casting it to a fixed-width type."""
    served = client.app.state.catalog.to_dask("argo_profiles")
    expected = [str(v) for v in served["direction"].values]
    assert set(expected) == {"A", "D"}
    r = client.get("/datasets/argo_profiles/opendap.dods?direction")
    assert r.status_code == 200
    assert _dap_strings(r.content, len(expected)) == expected
    r = client.get("/datasets/argo_profiles/opendap.dds")
    assert "String direction[profile = 1028]" in r.text


def test_netcdf3_holds_cftime_times_too(tmp_path: Path) -> None:
    """Model times in a 360-day calendar (cftime objects) are encoded as int64 when
    chunked or given in microseconds: the same 500 as the Argo store's times."""
    import cftime

    from oceandata.dataservice.downloads import _write_netcdf3

    times = xr.date_range("2000-01-01", periods=6, freq="MS", calendar="360_day",
                          use_cftime=True)
    ds = xr.Dataset({"sst": ("time", np.arange(6.0)),
                     "valid": ("time", np.asarray(times))},
                    coords={"time": times}).chunk(time=2)
    ds["time"].encoding.update(units="microseconds since 2000-01-01", dtype="int64",
                               calendar="360_day")
    path = tmp_path / "model.nc"
    _write_netcdf3(ds, path)
    with netCDF4.Dataset(path) as nc:
        assert nc.file_format == "NETCDF3_64BIT_OFFSET"
        for name in ("time", "valid"):
            var = nc[name]
            assert var.dtype == np.float64 and var.units.startswith("seconds since ")
            got = cftime.num2date(var[:], var.units, calendar="360_day")
            assert [str(t) for t in got] == [str(t) for t in times], name
