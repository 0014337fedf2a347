"""The access protocols of the open-data service, with the real clients, against one server.

netCDF4/xarray/``ncdump`` over OPeNDAP DAP2, xarray over Zarr v3 (fsspec HTTP), erddapy
griddap, OGC API-EDR CoverageJSON validated by ``covjson_pydantic``; restricted entries
404 on every protocol, ``auth/`` challenges, bad input is a one-sentence 4xx.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import xarray as xr

from tests.dataservice_helpers import REPO, RESTRICTED, make_catalog

pytestmark = pytest.mark.skipif(not os.environ.get("OCEANDATA_SAMPLE_DATA")
                                and not Path("data/sample").exists(),
                                reason="the sample data is not available")

TYPES_ENTRY = """\
  odd_types:
    driver: netcdf
    description: variables in types DAP2 lacks
    args:
      urlpath: "{path}"
      engine: netcdf4
      chunks: {{}}
    metadata:
      title: Odd integer and boolean types
      variables: [{{name: counts, units: "1"}}]
      bbox: {{west: 0.0, south: 0.0, east: 1.0, north: 1.0}}
      time_range: {{start: "2000-01-01", end: "2000-01-04"}}
      grid: dsg
      feature_type: timeSeries
      provider: test
      license: CC0
      classification: {{category: scientific, grade: general, rationale: test data, owner: test, release: open}}
      tags: [test]
"""
STAMPS = np.array(["2000-01-01", "2000-01-02", "2000-01-03", "2000-01-04"], "datetime64[ns]")


def _types_file(folder: Path) -> Path:
    path = folder / "odd_types.nc"
    xr.Dataset({"flag": ("time", np.array([-3, 0, 7, 127], "int8")),
                "counts": ("time", np.array([1, 2**40, -5, 2**53], "int64")),
                "wet": ("time", np.array([True, False, True, True]))},
               coords={"time": STAMPS}).to_netcdf(path, format="NETCDF4")
    return path


#: the server process: the service of ``make_catalog`` + ``odd_types`` under ``serving``
SERVER = """
import sys
from pathlib import Path
from oceandata.catalog import open_catalog
from oceandata.dataservice.app import create_app
from tests.dataservice_helpers import serving
with serving(create_app(open_catalog(Path(sys.argv[1])))) as url:
    print(url, flush=True)
    sys.stdin.read()  # serve until the test closes our stdin
"""


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The service, in its own process.

    Not in a thread of the test process: netCDF-C clients (netCDF4, xarray's netcdf4
    engine) hold xarray's process-wide HDF5/netCDF lock while they read a DAP URL, and
    the server needs that same lock to read the local file, a deadlock in one process.
    """
    folder = tmp_path_factory.mktemp("protocols")
    make_catalog(folder)
    root = folder / "catalog.yaml"
    root.write_text(root.read_text() + TYPES_ENTRY.format(path=_types_file(folder)))
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(root)], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()  # printed once the service answers
        if not url.startswith("http"):
            pytest.fail(f"the data service did not start (exit {proc.poll()})")
        yield url
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def cobe() -> xr.Dataset:
    import oceandata

    return oceandata.open_dataset("cobe_sst2")


# --- OPeNDAP DAP2 ----------------------------------------------------------------------

def test_dap_netcdf4_and_xarray_read_hyperslabs_exactly(base: str, cobe: xr.Dataset) -> None:
    import netCDF4

    url = f"{base}/datasets/cobe_sst2/opendap"
    with xr.open_dataset(url, engine="netcdf4") as remote:
        sel = {"time": slice(100, 130, 3), "lat": slice(40, 60), "lon": slice(10, 200, 7)}
        np.testing.assert_array_equal(remote.sst.isel(sel).values, cobe.sst.isel(sel).values)
        np.testing.assert_array_equal(remote.time.values, cobe.time.values)
        np.testing.assert_array_equal(remote.lat.values, cobe.lat.values)
    with netCDF4.Dataset(url) as nc:
        got = nc["sst"][5, 10:12, 20:23]
        want = cobe.sst[5, 10:12, 20:23].values
        np.testing.assert_array_equal(np.ma.filled(got.astype("float32"), np.nan), want)
        assert nc["time"].units == "days since 1891-01-01"


def _ncdump() -> str:
    found = shutil.which("ncdump") or ("/usr/bin/ncdump" if Path("/usr/bin/ncdump").exists()
                                       else None)
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("ncdump (Debian netcdf-bin) is missing and we are not root to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "netcdf-bin"], check=False, env=env,
                   capture_output=True)
    if not Path("/usr/bin/ncdump").exists():
        pytest.skip("apt-get could not install netcdf-bin (ncdump)")
    return "/usr/bin/ncdump"


@pytest.mark.parametrize("name", ["cobe_sst2", "dsg_profile", "dsg_timeseries"])
def test_ncdump_prints_the_header(base: str, name: str) -> None:
    out = subprocess.run([_ncdump(), "-h", f"{base}/datasets/{name}/opendap"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f":oceandata_entry = \"{name}\"" in out.stdout
    if name == "cobe_sst2":
        assert "float sst(time, lat, lon)" in out.stdout
        assert "sst:actual_range = -2.043f, 34.392f" in out.stdout  # typed, not a string
    if name == "dsg_profile":  # a global attribute 'id' and a variable 'id'
        assert ":id = \"ChukchiSea" in out.stdout


def test_dap_dsg_every_variable_equals_the_file(base: str) -> None:
    import oceandata

    for name in ("dsg_timeseries", "dsg_point"):
        local = oceandata.open_dataset(name)
        with xr.open_dataset(f"{base}/datasets/{name}/opendap", engine="netcdf4") as remote:
            for var in local.variables:
                want, got = local[var].values, remote[var].values
                if want.dtype.kind in "SO":
                    want, got = want.astype(str), got.astype(str)
                np.testing.assert_array_equal(got, want, err_msg=f"{name}.{var}")


def test_dap_casts_of_int8_int64_bool(base: str) -> None:
    with xr.open_dataset(f"{base}/datasets/odd_types/opendap", engine="netcdf4",
                         decode_cf=False) as remote:
        assert remote.flag.dtype == np.int16
        assert remote.flag.attrs["oceandata_dap_cast"] == "int8 -> int16"
        np.testing.assert_array_equal(remote.flag.values, [-3, 0, 7, 127])
        assert remote.counts.dtype == np.float64
        assert remote.counts.attrs["oceandata_dap_cast"] == "int64 -> float64"
        np.testing.assert_array_equal(remote.counts.values, [1, 2**40, -5, 2**53])
        assert remote.wet.attrs["oceandata_dap_cast"] == "bool -> uint8"
        np.testing.assert_array_equal(remote.wet.values.astype(int), [1, 0, 1, 1])
    with xr.open_dataset(f"{base}/datasets/odd_types/opendap", engine="netcdf4") as remote:
        np.testing.assert_array_equal(remote.time.values, STAMPS)


@pytest.mark.parametrize("query", ["sst[0:a]", "sst[0:1000]", "nope", "sst[1:0]",
                                   "sst[0][0][0][0]", "sst&sst>3", "time[0:1],lat[0:3]"])
def test_dap_bad_constraint_is_a_400(base: str, query: str) -> None:
    for kind in ("dds", "dods"):
        r = requests.get(f"{base}/datasets/cobe_sst2/opendap.{kind}?{query}", timeout=30)
        assert r.status_code == 400, (query, r.status_code, r.text[:200])
        assert r.json()["detail"].count(". ") == 0  # one sentence


# --- Zarr over HTTP --------------------------------------------------------------------

def test_zarr_v3_over_http(base: str, cobe: xr.Dataset) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # consolidated metadata is served: no fallback warning
        remote = xr.open_zarr(f"{base}/datasets/cobe_sst2/zarr", zarr_format=3,
                              consolidated=True)
    sel = {"time": slice(500, 503), "lat": slice(100, 130)}
    np.testing.assert_array_equal(remote.sst.isel(sel).values, cobe.sst.isel(sel).values)
    np.testing.assert_array_equal(remote.time.values, cobe.time.values)
    r = requests.get(f"{base}/datasets/cobe_sst2/zarr/nope/zarr.json", timeout=30)
    assert r.status_code == 404
    r = requests.get(f"{base}/datasets/cobe_sst2/zarr/sst/c/x/0/0", timeout=30)
    assert 400 <= r.status_code < 500


@pytest.mark.parametrize("key", ["c", "c/", "c/-1/0/0", "c/0/0", "c/0/0/0/0", "c/720/0/0",
                                 "c/+1/0/0", "c/0/0/99999999999999999999999", "c//0/0"])
def test_zarr_bad_chunk_key_is_a_404_sentence(base: str, key: str) -> None:
    """A chunk key that is empty, of the wrong rank, negative or out of range (COBE-SST2's
    sst has 720 chunks along time, one along lat and lon) is 404 before the plugin runs."""
    r = requests.get(f"{base}/datasets/cobe_sst2/zarr/sst/{key}", timeout=30)
    assert r.status_code == 404, (key, r.status_code, r.text[:200])
    detail = r.json()["detail"]
    assert detail.endswith(".") and ". " not in detail and "sst" in detail, detail


def test_zarr_good_chunk_keys_still_answer(base: str) -> None:
    for key in ("sst/c/719/0/0", "lat/c/0", "time/c/0"):
        r = requests.get(f"{base}/datasets/cobe_sst2/zarr/{key}", timeout=30)
        assert r.status_code == 200 and r.content, key


# --- ERDDAP ----------------------------------------------------------------------------

def test_erddapy_griddap(base: str, cobe: xr.Dataset) -> None:
    from erddapy import ERDDAP

    e = ERDDAP(server=f"{base}/erddap", protocol="griddap")
    e.dataset_id = "cobe_sst2"
    e.griddap_initialize()
    assert e.variables == ["sst"]
    e.constraints.update({"time>=": "2000-01-01T00:00:00Z", "time<=": "2000-03-01T00:00:00Z",
                          "latitude>=": -32.5, "latitude<=": -28.5,
                          "longitude>=": 150.5, "longitude<=": 153.5})
    got = e.to_xarray()
    want = cobe.sst.sel(time=slice("2000-01-01", "2000-03-01"), lat=slice(-28.5, -32.5),
                        lon=slice(150.5, 153.5))
    np.testing.assert_array_equal(got.sst.values, want.values)
    np.testing.assert_array_equal(got.time.values, want.time.values)


def test_erddap_catalogue_never_lists_the_restricted_entry(base: str) -> None:
    for path in ("search/index.csv?searchFor=sst", "info/index.csv", "griddap/index.csv"):
        r = requests.get(f"{base}/erddap/{path}", timeout=60)
        assert r.status_code == 200
        assert RESTRICTED not in r.text
    assert requests.get(f"{base}/erddap/griddap/{RESTRICTED}.das",
                        timeout=30).status_code == 404


# --- EDR -------------------------------------------------------------------------------

def test_edr_position_and_area_are_valid_coveragejson(base: str, cobe: xr.Dataset) -> None:
    from covjson_pydantic.coverage import Coverage

    r = requests.get(f"{base}/datasets/cobe_sst2/edr/position", timeout=60, params={
        "coords": "POINT(155.3 -30.4)", "parameter-name": "sst", "f": "cf_covjson",
        "datetime": "2000-01-01T00:00:00Z/2000-03-31T00:00:00Z"})  # zone-aware, as EDR says
    assert r.status_code == 200, r.text
    cov = Coverage.model_validate_json(r.text)
    want = cobe.sst.sel(lon=155.3, lat=-30.4, method="nearest").sel(
        time=slice("2000-01-01", "2000-03-31"))
    np.testing.assert_array_equal(np.array(cov.ranges["sst"].values, "float32"), want.values)
    assert [t.replace(tzinfo=None) for t in cov.domain.axes.t.values] == list(
        want.time.values.astype("datetime64[us]").tolist())

    r = requests.get(f"{base}/datasets/cobe_sst2/edr/area", timeout=60, params={
        "coords": "POLYGON((155 -31, 157 -31, 157 -29, 155 -29, 155 -31))",
        "parameter-name": "sst", "datetime": "2000-01-01/2000-02-15", "f": "cf_covjson"})
    assert r.status_code == 200, r.text
    cov = Coverage.model_validate_json(r.text)
    xs, ys = cov.domain.axes.x.values, cov.domain.axes.y.values
    values = np.array(cov.ranges["sst"].values, "float32").reshape(2, len(xs))
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        np.testing.assert_array_equal(values[:, i], cobe.sst.sel(lon=x, lat=y).isel(
            time=slice(600, 602)).values)


@pytest.mark.parametrize("query", ["coords=POINT(1)", "coords=POINT(155.5 -30.5)&datetime=x",
                                   "coords=POINT(155.5 -30.5)&parameter-name=nope"])
def test_edr_bad_input_is_a_4xx(base: str, query: str) -> None:
    r = requests.get(f"{base}/datasets/cobe_sst2/edr/position?{query}", timeout=30)
    assert 400 <= r.status_code < 500, (query, r.status_code)
    assert r.json()["detail"]


@pytest.mark.parametrize("crs", ["EPSG:99999", "nonsense"])
def test_edr_unknown_crs_is_a_400_sentence(base: str, crs: str) -> None:
    r = requests.get(f"{base}/datasets/cobe_sst2/edr/position", timeout=30,
                     params={"coords": "POINT(1 1)", "crs": crs})
    assert r.status_code == 400, (crs, r.status_code, r.text[:200])
    detail = r.json()["detail"]
    assert detail.endswith(".") and ". " not in detail and crs in detail, detail


# --- access ----------------------------------------------------------------------------

RESTRICTED_PATHS = ["opendap.dds", "opendap.das", "opendap.dods?sst", "zarr/zarr.json",
                    "zarr/sst/c/0", "edr/position?coords=POINT(112.5 -29.5)",
                    f"erddap/griddap/{RESTRICTED}.das", "erddap/info/index.csv"]


@pytest.mark.parametrize("path", RESTRICTED_PATHS)
def test_restricted_entry_is_404_anonymous_on_every_protocol(base: str, path: str) -> None:
    r = requests.get(f"{base}/datasets/{RESTRICTED}/{path}", timeout=30)
    assert r.status_code == 404, (path, r.status_code)
    unknown = requests.get(f"{base}/datasets/no_such_entry/{path}", timeout=30)
    if path.startswith("erddap/"):  # ERDDAP's own error format, from the same guard
        assert f"There is no dataset '{RESTRICTED}'" in r.text
        return
    assert r.json()["detail"].replace(RESTRICTED, "X").split(".")[0] == \
        unknown.json()["detail"].replace("no_such_entry", "X").split(".")[0]


@pytest.mark.parametrize("path", ["datasets/cobe_sst2/opendap.dds", "datasets/cobe_sst2/zarr/"
                                  "zarr.json", f"datasets/{RESTRICTED}/opendap.das",
                                  "erddap/info/index.csv", "datasets/cobe_sst2/edr/position"])
def test_auth_prefix_challenges_without_credentials(base: str, path: str) -> None:
    r = requests.get(f"{base}/auth/{path}", timeout=30)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic ")
