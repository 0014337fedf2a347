"""ERDDAP tabledap of the DSG entries, as erddapy uses it (``to_pandas`` over CSV).

Expected tables are built here from the sample files with plain xarray and numpy (the
ragged arrays expanded with ``np.repeat`` of ``rowSize``), never with the service's code.
CSV over HTTP only, so the server runs in this process (no HDF5 lock shared with a
netCDF client).
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
import xarray as xr
from dataservice_helpers import RESTRICTED, RESTRICTED_GROUP, make_catalog, serving
from erddapy import ERDDAP

from oceandata.dataservice import create_app
from oceandata.io.table import iter_table, table_layout


class _Auth:
    """A hub that knows one token, ``partner-token``, of a member of the partners."""

    async def user_for_token(self, token: str, via: str) -> Any:
        from oceandata.hub.security import AuthError

        if token != "partner-token":
            raise AuthError("unknown token", 401)
        return SimpleNamespace(name="pat", groups=[RESTRICTED_GROUP])


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Any:
    catalog = make_catalog(tmp_path_factory.mktemp("tabledap"))
    with serving(create_app(catalog, hub_auth=_Auth())) as base:
        yield SimpleNamespace(base=base, catalog=catalog)


def _file(catalog: Any, name: str) -> xr.Dataset:
    return xr.open_dataset(catalog.entry(name).paths()[0])


def _text(values: np.ndarray) -> np.ndarray:
    return np.array([(v.decode() if isinstance(v, bytes) else str(v)).rstrip()
                     for v in values], dtype=object)


def _ragged(ds: xr.Dataset, obs: dict[str, str], instance: dict[str, str]) -> pd.DataFrame:
    """The observations of a contiguous ragged array, instance variables repeated."""
    sizes = ds["rowSize"].values.astype(int)
    frame = {col: ds[src].values for col, src in obs.items()}
    for col, src in instance.items():
        values = ds[src].values
        values = _text(values) if values.dtype.kind in "SO" else values
        frame[col] = np.repeat(values, sizes)
    return pd.DataFrame(frame)


def _erddap(base: str, dataset_id: str, variables: list[str],
            constraints: dict[str, Any]) -> pd.DataFrame:
    e = ERDDAP(server=base + "/erddap", protocol="tabledap")
    e.dataset_id, e.variables, e.constraints = dataset_id, variables, constraints
    got = e.to_pandas()
    got.columns = [c.split(" (")[0] for c in got.columns]  # csvp: "name (units)"
    return got


def _same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want) > 0
    for col in want.columns:
        w = want[col].to_numpy()
        g = got[col].to_numpy()
        if w.dtype.kind == "M":
            assert (pd.to_datetime(g, utc=True).tz_localize(None).to_numpy() == w).all(), col
        elif w.dtype.kind == "f":  # written at the column's own precision, read back exact
            np.testing.assert_array_equal(g.astype(w.dtype), w, err_msg=col)
        else:
            assert [str(v) for v in g] == [str(v) for v in w], col


def test_timeseries_ragged_with_time_and_latitude(service: Any) -> None:
    ds = _file(service.catalog, "dsg_timeseries")
    full = _ragged(ds, {"time": "time", "T_25": "T_25"},
                   {"latitude": "latitude", "station": "station"})
    start, stop = np.datetime64("2017-02-01"), np.datetime64("2017-03-01T12:00")
    want = full[(full.time >= start) & (full.time <= stop) & (full.latitude >= np.float32(2))]
    got = _erddap(service.base, "dsg_timeseries", ["time", "latitude", "station", "T_25"],
                  {"time>=": "2017-02-01T00:00:00Z", "time<=": "2017-03-01T12:00:00Z",
                   "latitude>=": 2})
    _same(got, want[["time", "latitude", "station", "T_25"]].reset_index(drop=True))


def test_profile_contiguous_ragged_array(service: Any) -> None:
    ds = _file(service.catalog, "dsg_profile")
    full = _ragged(ds, {"depth": "depth", "temp": "temp"},
                   {"id": "id", "time": "time", "latitude": "latitude"})
    want = full[(full.latitude >= np.float32(71.5)) & (full.depth <= np.float32(10))
                & (full.time >= np.datetime64("2012-08-24"))]
    cols = ["id", "time", "latitude", "depth", "temp"]
    got = _erddap(service.base, "dsg_profile", cols,
                  {"latitude>=": 71.5, "depth<=": 10, "time>=": "2012-08-24"})
    _same(got, want[cols].reset_index(drop=True))


def test_point_regex_on_text(service: Any) -> None:
    ds = _file(service.catalog, "dsg_point")
    full = pd.DataFrame({"time": ds.TIME.values, "latitude": ds.LATITUDE.values,
                         "COMMON_NAME": _text(ds.COMMON_NAME.values),
                         "LARVAE_SIZE": ds.LARVAE_SIZE.values})
    want = full[full.COMMON_NAME.str.fullmatch(".*anchovy") & (full.time < np.datetime64(
        "2018-04-01"))]
    got = _erddap(service.base, "dsg_point", list(full.columns),
                  {"COMMON_NAME=~": ".*anchovy", "time<": "2018-04-01"})
    _same(got, want.reset_index(drop=True))


def test_formats_functions_and_info(service: Any) -> None:
    url = f"{service.base}/erddap/tabledap/dsg_point"
    q = 'time,STATION&STATION<27&distinct()&orderByDescending("STATION")'
    csv = requests.get(f"{url}.csv", params=q, timeout=30)
    assert csv.status_code == 200
    lines = csv.text.splitlines()
    assert lines[:2] == ["time,STATION", "UTC,"]
    stations = [float(line.split(",")[1]) for line in lines[2:]]
    assert stations == sorted(stations, reverse=True) and len(set(lines)) == len(lines)
    js = requests.get(f"{url}.json", params="time,COMMON_NAME&STATION=28", timeout=30).json()
    table = js["table"]
    assert table["columnNames"] == ["time", "COMMON_NAME"]
    assert table["columnTypes"] == ["String", "String"]
    assert table["columnUnits"][0] == "UTC" and table["rows"][0][0].endswith("Z")
    e = ERDDAP(server=service.base + "/erddap", protocol="tabledap")
    assert e.get_var_by_attr(dataset_id="dsg_point", standard_name="time") == ["time"]
    info = pd.read_csv(f"{service.base}/erddap/info/dsg_timeseries/index.csv")
    rows = info.set_index(["Variable Name", "Attribute Name"])["Value"]
    assert rows[("time", "units")] == "seconds since 1970-01-01T00:00:00Z"
    assert rows[("NC_GLOBAL", "cdm_data_type")] == "TimeSeries"
    index = pd.read_csv(f"{service.base}/erddap/tabledap/index.csv")
    assert {"dsg_point", "dsg_profile", "dsg_timeseries"} <= set(index["Dataset ID"])


def test_restricted_only_per_dataset_for_granted(service: Any) -> None:
    base = service.base
    index = pd.read_csv(f"{base}/erddap/tabledap/index.csv")
    assert RESTRICTED not in set(index["Dataset ID"])
    q = "time,sst&time>=2020-01-01&time<2020-01-05"
    for url, headers in ((f"{base}/erddap/tabledap/{RESTRICTED}.csv", {}),
                         (f"{base}/erddap/tabledap/{RESTRICTED}.csv",
                          {"Authorization": "Bearer partner-token"}),
                         (f"{base}/datasets/{RESTRICTED}/erddap/tabledap/{RESTRICTED}.csv", {})):
        r = requests.get(url, params=q, headers=headers, timeout=30)
        unknown = requests.get(url.replace(RESTRICTED, "no_such_table"), params=q,
                               headers=headers, timeout=30)
        assert r.status_code == unknown.status_code == 404
        # the same sentence as an unknown name (only the close names suggested differ)
        assert r.text.replace(RESTRICTED, "X").split("'X'.")[0] == \
            unknown.text.replace("no_such_table", "X").split("'X'.")[0]
        assert "There is no dataset 'X'." in r.text.replace(RESTRICTED, "X")
    assert requests.get(f"{base}/erddap/info/{RESTRICTED}/index.csv",
                        timeout=30).status_code == 404
    granted = requests.get(f"{base}/datasets/{RESTRICTED}/erddap/tabledap/{RESTRICTED}.csv",
                           params=q, headers={"Authorization": "Bearer partner-token"},
                           timeout=30)
    assert granted.status_code == 200
    assert granted.text.splitlines()[2].startswith("2020-01-01T00:00:00Z,")
    assert len(granted.text.splitlines()) == 2 + 4


@pytest.mark.parametrize(("query", "status", "words"), [
    ("NO_SUCH_VARIABLE", 400, "Unrecognized variable"),
    ("LATITUDE", 400, "served as latitude"),
    ("time&LARVAE_SIZE>abc", 400, "not a number"),
    ("time&time>=tomorrowish", 400, "ISO 8601"),
    ('time&COMMON_NAME=~"(unclosed"', 400, "regular expression"),
    ('time&COMMON_NAME=~"(a)\\\\1"', 400, "RE2 syntax"),  # a backreference: (a)\1
    ('time&COMMON_NAME=~"(?=a).*"', 400, "lookaround"),
    ('time&COMMON_NAME=~"' + "a" * 1001 + '"', 400, "1000 characters"),
    ('time&orderByMax("time")', 400, "orderByMax() is not served"),
    ("time&time>2100-01-01", 404, "no matching results"),
])
def test_bad_queries_answer_one_erddap_sentence(service: Any, query: str, status: int,
                                                words: str) -> None:
    r = requests.get(f"{service.base}/erddap/tabledap/dsg_point.csv", params=query, timeout=30)
    assert r.status_code == status
    assert r.text.startswith(f"Error {{\n    code={status};\n    message=")
    assert words in r.text and r.text.count("\n") == 4


def test_erddapy_raises_the_sentence(service: Any) -> None:
    with pytest.raises(requests.exceptions.HTTPError, match="Unrecognized variable"):
        _erddap(service.base, "dsg_point", ["nope"], {})


def test_blocks_do_not_change_the_table(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path)
    for name in ("dsg_profile", "dsg_timeseries"):
        ds = catalog.entry(name).to_dask()
        layout = table_layout(ds)
        cols = list(layout.columns)
        filters = [("latitude", lambda v: v > 0), ("time", lambda v: v > np.datetime64(
            "2012-08-25"))]
        whole = pd.concat(iter_table(ds, layout, cols, filters=filters), ignore_index=True)
        small = pd.concat(iter_table(ds, layout, cols, filters=filters, block_rows=7),
                          ignore_index=True)
        pd.testing.assert_frame_equal(whole, small)
        assert "rowSize" not in cols and len(whole) > 0


def _timed(base: str, query: str) -> tuple[requests.Response, float]:
    start = time.monotonic()
    r = requests.get(f"{base}/erddap/tabledap/dsg_point.csv", params=query, timeout=120)
    return r, time.monotonic() - start


def test_catastrophic_regex_is_linear(service: Any) -> None:
    """A pattern that backtracks exponentially (4**8 ways per 20-character time) answers
    as fast as a plain request: it is matched by RE2, in linear time."""
    plain, baseline = _timed(service.base, "time")
    assert plain.status_code == 200
    r, took = _timed(service.base, 'time&time=~".{4}(.|.)*Q"')
    assert r.status_code == 404 and "no matching results" in r.text
    assert took < baseline + 2.0, took
    # RE2 takes the syntax erddapy's users write: classes, counts, alternation, flags
    r = requests.get(f"{service.base}/erddap/tabledap/dsg_point.csv", timeout=30,
                     params='time,COMMON_NAME&COMMON_NAME=~"(?i)[a-z ]*ANCHOVY|x{2,3}"')
    assert r.status_code == 200 and r.text.count("\n") > 3
    assert all(line.lower().endswith("anchovy") for line in r.text.splitlines()[2:])


@pytest.mark.parametrize(("constraint", "status"), [("a" + "+" * 16000 + "b", 400),
                                                    ("a<" + "+" * 16000 + ">b", 400),
                                                    ("+" * 16000 + "time>0", 200)])
def test_long_whitespace_constraint_is_linear(service: Any, constraint: str,
                                              status: int) -> None:
    """A run of whitespace in a constraint is parsed in linear time (it was quadratic).

    Each ``+`` is a space once decoded: the query stays under the 16384 bytes served.
    """
    _, baseline = _timed(service.base, "time")
    r, took = _timed(service.base, "time&" + constraint)
    assert r.status_code == status
    assert status == 200 or r.text.count("\n") == 4  # one sentence
    assert took < baseline + 2.0, took
