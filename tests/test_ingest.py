"""Ingestion into Icechunk stores, against the real COBE-SST2 files read directly."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

from oceandata.errors import DataError, UsageError
from oceandata.ingest import ingest, log, open_store, rechunk, tag, verify

OCEANDATA = [sys.executable, "-m", "oceandata.cli"]


def cobe(sample, *years: int) -> list[Path]:
    return [sample(f"gridded/cobe-sst2/year{y}.nc") for y in years]


def direct(paths: list[Path]) -> xr.Dataset:
    """The independent reference: the source files concatenated by plain xarray."""
    return xr.concat([xr.open_dataset(p) for p in paths], dim="time")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OCEANDATA, *args], capture_output=True, text=True, timeout=600)


def commits(store: Path) -> list:
    return [v for v in log(store) if v.metadata.get("sources")]


@pytest.fixture
def store_1950s(tmp_path, sample) -> Path:
    """A store of 1950-1952 in map chunks of 1 MiB (4 months), no compliance check."""
    store = tmp_path / "cobe.icechunk"
    ingest(cobe(sample, 1950, 1951, 1952), store, name="cobe", chunks="map", check=False,
           target_bytes=2**20)
    return store


def test_ingest_keeps_values_times_and_records_sources(store_1950s, sample) -> None:
    paths = cobe(sample, 1950, 1951, 1952)
    ds, ref = open_store(store_1950s), direct(paths)
    np.testing.assert_array_equal(ds.time.values, ref.time.values)
    np.testing.assert_array_equal(ds.sst.values, ref.sst.values)
    assert ds.sst.attrs["units"] == ref.sst.attrs["units"]
    (version,) = commits(store_1950s)
    recorded = {s["name"]: s for s in version.metadata["sources"]}
    for path in paths:
        data = Path(path).read_bytes()
        assert recorded[Path(path).name]["sha256"] == hashlib.sha256(data).hexdigest()
        assert recorded[Path(path).name]["size"] == len(data)
    meta = version.metadata
    assert {"xarray", "zarr", "icechunk", "netCDF4"} <= set(meta["software"])
    assert meta["chunks"]["sst"] == {"time": 4, "lat": 180, "lon": 360}  # 4 x 253 KiB fields
    assert set(meta["checksums"]) >= {"sst", "time", "lat", "lon"}


def test_rerunning_the_same_ingest_changes_nothing(store_1950s, sample) -> None:
    before = [v.id for v in log(store_1950s)]
    result = ingest(cobe(sample, 1950, 1951, 1952), store_1950s, check=False)
    assert not result.changed and "nothing to do" in result.message
    assert [v.id for v in log(store_1950s)] == before


def test_append_adds_later_steps_and_is_idempotent(store_1950s, sample) -> None:
    result = ingest(cobe(sample, 1950, 1951, 1952, 1953, 1954), store_1950s, append=True,
                    check=False)
    assert result.changed and len(result.skipped) == 3 and len(result.sources) == 2
    ds = open_store(store_1950s)
    ref = direct(cobe(sample, *range(1950, 1955)))
    np.testing.assert_array_equal(ds.time.values, ref.time.values)
    np.testing.assert_array_equal(ds.sst.values, ref.sst.values)
    again = ingest(cobe(sample, 1953, 1954), store_1950s, append=True, check=False)
    assert not again.changed
    assert len(commits(store_1950s)) == 2


def _altered(src: Path, dst: Path, change) -> Path:
    with xr.open_dataset(src) as ds:
        out = change(ds.load())
    out.to_netcdf(dst)
    return dst


@pytest.mark.parametrize(("change", "needle"), [
    (lambda ds: ds.assign(sst=ds.sst + 1), "not after the store's last time"),
    (lambda ds: ds.assign_coords(time=ds.time + np.timedelta64(3650, "D"))
     .isel(lat=slice(0, 90)), "different grid"),
    (lambda ds: ds.assign_coords(time=ds.time + np.timedelta64(3650, "D"))
     .assign(sst=ds.sst.assign_attrs(units="K")), "units 'K'"),
    (lambda ds: ds.assign_coords(time=ds.time + np.timedelta64(3650, "D"))
     .assign(sst2=ds.sst), "different variables"),
])
def test_incompatible_append_is_refused_and_commits_nothing(store_1950s, sample, tmp_path,
                                                            change, needle) -> None:
    bad = _altered(cobe(sample, 1952)[0], tmp_path / "bad.nc", change)
    before = [v.id for v in log(store_1950s)]
    with pytest.raises(DataError, match=needle):
        ingest([bad], store_1950s, append=True, check=False)
    assert [v.id for v in log(store_1950s)] == before


def test_duplicate_times_across_sources_are_refused(tmp_path, sample) -> None:
    copy = _altered(cobe(sample, 1951)[0], tmp_path / "copy.nc", lambda ds: ds + 0)
    with pytest.raises(DataError, match=r"time 1951-01-01 is in both"):
        ingest([*cobe(sample, 1951), copy], tmp_path / "s.icechunk", check=False)
    assert not (tmp_path / "s.icechunk").exists()


def test_existing_store_without_append_is_a_usage_error(store_1950s, sample) -> None:
    with pytest.raises(UsageError, match="pass --append"):
        ingest(cobe(sample, 1953), store_1950s, check=False)


def test_versions_tags_and_time_travel(store_1950s, sample) -> None:
    import oceandata

    first = tag(store_1950s, "paper-2026")
    ingest(cobe(sample, 1953), store_1950s, append=True, check=False)
    assert oceandata.open_dataset(str(store_1950s)).sizes["time"] == 48
    old = oceandata.open_dataset(str(store_1950s), version="paper-2026")
    assert old.sizes["time"] == 36 and old.attrs["oceandata_snapshot"] == first
    assert oceandata.open_dataset(str(store_1950s), version=first).sizes["time"] == 36
    versions = log(store_1950s)
    assert versions[1].tags == ("paper-2026",) and versions[0].tags == ()
    with pytest.raises(UsageError, match="already has tag"):
        tag(store_1950s, "paper-2026")
    with pytest.raises(UsageError, match="no version 'nope'"):
        open_store(store_1950s, version="nope")


def test_verify_finds_a_corrupted_chunk(store_1950s) -> None:
    assert verify(store_1950s) == []
    chunk_files = sorted((store_1950s / "chunks").iterdir(), key=lambda p: p.stat().st_size)
    victim = chunk_files[-1]  # the largest: an sst chunk
    data = bytearray(victim.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    victim.write_bytes(bytes(data))
    problems = verify(store_1950s)
    assert len(problems) == 1 and "'sst'" in problems[0]
    proc = run("store", "verify", str(store_1950s))
    assert proc.returncode == 1 and "'sst'" in proc.stderr


def test_plain_zarr_format_roundtrips_and_verifies(tmp_path, sample) -> None:
    out = tmp_path / "cobe.zarr"
    ingest(cobe(sample, 1950), out, fmt="zarr", check=False)
    np.testing.assert_array_equal(open_store(out).sst.values, direct(cobe(sample, 1950)).sst.values)
    assert verify(out) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cobe.zarr"]
    with pytest.raises(UsageError, match="needs an Icechunk store"):
        ingest(cobe(sample, 1951), out, fmt="zarr", append=True, check=False)


def test_rechunk_to_timeseries_keeps_checksums_and_layout_choice(store_1950s, tmp_path,
                                                                sample) -> None:
    import oceandata
    from oceandata.ingest.register import register_store

    series = tmp_path / "cobe-ts.icechunk"
    rechunk(store_1950s, series, chunks="timeseries", target_bytes=2**20)
    ts = open_store(series)
    time_chunk, lat_chunk, lon_chunk = ts.sst.encoding["chunks"]
    assert time_chunk == 36 and lat_chunk * lon_chunk * 36 * 4 <= 2**20  # all times, 1 MiB
    assert verify(series) == []
    (ts_commit,) = log(series)[:1]
    assert ts_commit.metadata["checksums"]["sst"] == commits(store_1950s)[0].metadata[
        "checksums"]["sst"]
    catalog = tmp_path / "stores.yaml"
    register_store(catalog, "cobe_store", store_1950s, layouts={"timeseries": series})
    cat = oceandata.open_catalog(catalog)
    point = oceandata.open_dataset("cobe_store", catalog=cat, bbox=(180, 0, 181, 1))
    assert point.attrs.get("oceandata_layout") == "timeseries"
    field = oceandata.open_dataset("cobe_store", catalog=cat, time=("1951-03", "1951-03"))
    assert "oceandata_layout" not in field.attrs
    ref = direct(cobe(sample, 1950, 1951, 1952)).sst.sel(lat=0.5, lon=180.5)
    np.testing.assert_array_equal(point.sst.sel(lat=0.5, lon=180.5).values, ref.values)


def test_register_derives_metadata_from_the_data(store_1950s, tmp_path) -> None:
    import oceandata
    from oceandata.ingest.register import register_store

    catalog = tmp_path / "stores.yaml"
    register_store(catalog, "cobe_store", store_1950s)
    entry = oceandata.open_catalog(catalog).entry("cobe_store")
    md = entry.metadata
    assert md.variable_names == ["sst"] and md.variables[0].units == "degC"
    assert (md.time_range.start, md.time_range.end) == ("1950-01-01", "1952-12-01")
    assert md.bbox.as_tuple() == (0.0, -89.5, 360.0, 89.5) and md.grid == "regular"


def test_cli_bad_inputs_are_one_line_and_write_nothing(tmp_path, sample) -> None:
    cut = tmp_path / "cut.nc"
    cut.write_bytes(Path(sample("gridded/pop.nc")).read_bytes()[:100_000])
    cases = [
        (["ingest", str(cut), "--store", str(tmp_path / "a.icechunk"), "--no-check"],
         "truncated"),
        (["ingest", str(tmp_path / "none*.nc"), "--store", str(tmp_path / "b.icechunk")],
         "matches no file"),
        (["ingest", str(sample("gridded/cobe-sst2/year1950.nc")), "--store",
          str(tmp_path / "c.icechunk"), "--chunks", "lat=x"], "--chunks"),
        (["ingest", str(sample("gridded/cobe-sst2/year1950.nc")), "--store",
          "/proc/oceandata-test.icechunk", "--no-check"], "/proc"),
    ]
    for args, needle in cases:
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.nc"]


def test_strict_refuses_high_priority_failures_and_keeps_the_report(tmp_path, sample) -> None:
    store = tmp_path / "s.icechunk"
    proc = run("ingest", str(sample("gridded/cobe-sst2/year1950.nc")), "--store", str(store),
               "--strict")
    assert proc.returncode == 2 and "high-priority" in proc.stderr
    assert not store.exists()
    report = json.loads((tmp_path / "s.icechunk.compliance.json").read_text())
    assert report


def _chunk_count(store: Path) -> int:
    chunks = store / "chunks"
    return len(os.listdir(chunks)) if chunks.is_dir() else 0


def test_kill_9_mid_write_leaves_the_last_version_and_rerun_completes(tmp_path, sample
                                                                      ) -> None:
    store = tmp_path / "cobe.icechunk"
    years = list(range(1950, 2010))
    ingest(cobe(sample, 1950), store, chunks="map", check=False)
    committed = log(store)[0].id
    baseline = _chunk_count(store)
    all_files = [str(p) for p in cobe(sample, *years)]
    proc = subprocess.Popen([*OCEANDATA, "ingest", *all_files, "--store", str(store),
                             "--append", "--no-check"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    # wait on the store itself: new chunk files mean the append is writing
    while _chunk_count(store) < baseline + 20 and proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the append never started writing chunks")
        time.sleep(0.01)  # poll interval of the store probe
    assert proc.poll() is None, "the append finished before it could be interrupted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert log(store)[0].id == committed  # nothing was committed
    assert open_store(store).sizes["time"] == 12
    assert verify(store) == []
    result = ingest(all_files, store, append=True, check=False)
    assert result.changed and len(result.skipped) == 1
    ds = open_store(store)
    assert ds.sizes["time"] == 720
    ref = direct(cobe(sample, 1950, 1987, 2009))
    np.testing.assert_array_equal(ds.sst.sel(time=ref.time).values, ref.sst.values)
    assert verify(store) == []


def test_netcdf4_reads_the_sources_we_compare_against(sample) -> None:
    """Guard for the reference itself: xarray and netCDF4 agree on the source values."""
    path = cobe(sample, 1950)[0]
    with netCDF4.Dataset(path) as nc:
        raw = nc["sst"][:]
    np.testing.assert_array_equal(np.ma.filled(raw, np.nan), direct([path]).sst.values)


def test_sample_stores_serve_the_sample_entries(tmp_path) -> None:
    """What `make up` serves: gridded entries from stores, same names, same values."""
    import oceandata
    from oceandata.ingest.samples import build_sample_stores
    from oceandata.io.validate import validate_catalog

    names = ["sst_ndjfm_anom", "foam_ocean", "pop_surface"]
    root = build_sample_stores(tmp_path, names=names, check=False)
    served = oceandata.open_catalog(root)
    assert validate_catalog(served) == []
    assert set(names) <= set(served) and {"dsg_point", "oisst_med"} <= set(served)
    assert served.entry("foam_ocean").driver == "icechunk"
    sample = oceandata.open_catalog()
    for name in names:
        ours, theirs = served.to_dask(name), sample.to_dask(name)
        for var in sample.entry(name).metadata.variable_names:
            np.testing.assert_array_equal(ours[var].values, theirs[var].values)
    # model time in a 360-day calendar survives the store
    assert served.to_dask("foam_ocean").time.dt.calendar == "360_day"
    assert served.entry("pop_surface").metadata.provider == \
        sample.entry("pop_surface").metadata.provider


def test_cli_flow_ingest_tag_log_register_and_pin(tmp_path, sample) -> None:
    """An operator's session: ingest, tag, append, register pinned and unpinned entries."""
    import oceandata

    store, catalog = tmp_path / "sst.icechunk", tmp_path / "stores.yaml"
    files = [str(p) for p in cobe(sample, 1960, 1961)]
    first = run("ingest", *files, "--store", str(store), "--name", "sst", "--no-check",
                "--register", str(catalog))
    assert first.returncode == 0, first.stderr
    assert run("store", "tag", str(store), "v1").returncode == 0
    more = run("ingest", str(sample("gridded/cobe-sst2/year1962.nc")), "--store", str(store),
               "--append", "--no-check")
    assert more.returncode == 0, more.stderr
    history = json.loads(run("store", "log", str(store), "--json").stdout)
    assert [len(v["metadata"].get("sources", [])) for v in history] == [1, 2, 0]
    assert history[1]["tags"] == ["v1"] and "--append" in history[0]["metadata"]["command"]
    pinned = run("store", "register", str(store), "--catalog", str(catalog), "--name",
                 "sst_v1", "--version", "v1")
    assert pinned.returncode == 0, pinned.stderr
    cat = oceandata.open_catalog(catalog)
    assert cat.to_dask("sst_v1").sizes["time"] == 24  # the paper's data
    assert cat.to_dask("sst").sizes["time"] == 36  # follows the newest version
    bad = run("store", "register", str(store), "--catalog", str(catalog), "--name", "x",
              "--layout", "timeseries")
    assert bad.returncode == 2 and "NAME=PATH" in bad.stderr


def test_several_files_without_time_are_refused(tmp_path, sample) -> None:
    copy = tmp_path / "etopo_copy.cdf"
    copy.write_bytes(Path(sample("gridded/etopo20.cdf")).read_bytes())
    with pytest.raises(DataError, match="has no time axis, so several files cannot be joined"):
        ingest([sample("gridded/etopo20.cdf"), copy], tmp_path / "e.icechunk", check=False)


# --------------------------------------------------------------------------- one read


def _recomputed(store: Path) -> dict[str, str]:
    """Every variable's digest recomputed from scratch from the stored chunks."""
    from oceandata.ingest.checksums import dataset_digests

    return dataset_digests(open_store(store, decode=False))


def test_digests_come_from_the_write_not_a_read_back(tmp_path, sample, monkeypatch) -> None:
    from oceandata.ingest import pipeline

    def no_read_back(*args, **kwargs):
        raise AssertionError("the store was read back to digest it")

    monkeypatch.setattr(pipeline, "open_raw", no_read_back)
    monkeypatch.setattr(pipeline, "dataset_digests", no_read_back)
    store = tmp_path / "cobe.icechunk"
    ingest(cobe(sample, 1950, 1951), store, chunks="map", check=False, target_bytes=2**20)
    (version,) = commits(store)
    assert version.metadata["checksums"] == _recomputed(store)


def test_append_extends_digests_equal_to_a_recomputation(store_1950s, sample,
                                                         monkeypatch) -> None:
    from oceandata.ingest import pipeline

    def no_read_back(*args, **kwargs):
        raise AssertionError("a digest was recomputed from the store")

    before = commits(store_1950s)[0].metadata["checksums"]
    monkeypatch.setattr(pipeline, "array_digest", no_read_back)
    # the new months' digests are added to the old sums at positions 36..59
    ingest(cobe(sample, 1953, 1954), store_1950s, append=True, check=False)
    after = commits(store_1950s)[0].metadata["checksums"]
    assert after == _recomputed(store_1950s)
    assert after["sst"] != before["sst"] and after["sst"].startswith("<f4:60x180x360:")
    assert after["lat"] == before["lat"] and after["lon"] == before["lon"]
    assert verify(store_1950s) == []


def test_compliance_of_an_ingest_reads_no_data_again_and_keeps_verdicts(tmp_path, sample,
                                                                         monkeypatch) -> None:
    from oceandata.ingest import compliance

    paths = cobe(sample, 1950, 1951)
    right = tmp_path / "year1950.nc"
    right.write_bytes(paths[0].read_bytes())
    with netCDF4.Dataset(right, "a") as nc:  # this year's own range: no failure
        data = nc["sst"][:]
        nc["sst"].actual_range = np.array([data.min(), data.max()], dtype="f4")
    sources = [right, paths[1]]  # 1951 keeps the whole record's range: a high failure
    expected = compliance.check_sources(sources)  # streamed from the files

    def no_read(variable):
        raise AssertionError(f"{variable.name} was read again for its actual_range")

    monkeypatch.setattr(compliance, "_stream_range", no_read)
    store = tmp_path / "cobe.icechunk"
    result = ingest(sources, store, chunks="map")
    report = compliance.ComplianceReport.read(result.report)
    strip = lambda rep: [{k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
                         for r in rep.as_dict()["results"]]
    assert strip(report) == strip(expected)
    ranges = [f for f in report.high_failures if any("actual_range" in m for m in f[3])]
    assert [Path(f[0]).name for f in ranges] == ["year1951.nc"]
    assert commits(store)[0].metadata["compliance"]["high_failures"] == \
        len(expected.high_failures)


def test_source_data_that_cannot_be_decoded_is_named_and_nothing_is_left(tmp_path, sample
                                                                         ) -> None:
    # The write meets the damaged chunks first (the check no longer reads ahead of it).
    data = bytearray(cobe(sample, 1950)[0].read_bytes())
    middle = len(data) // 2
    data[middle:middle + 20000] = bytes(20000)  # inside the compressed sst chunks
    bad = tmp_path / "zeroed.nc"
    bad.write_bytes(bytes(data))
    store = tmp_path / "s.icechunk"
    proc = run("ingest", str(bad), "--store", str(store))
    assert proc.returncode == 2, proc.stderr
    assert f"{bad}: its data cannot be decoded" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not store.exists()
