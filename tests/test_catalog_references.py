"""Reference indexes of many-file NetCDF entries (issue 19, target 3).

Real COBE-SST2 yearly files (copied into a temporary folder, so they can be changed)
behind a temporary catalog; the independent result is :func:`xarray.open_mfdataset` of
the same files, the path entries were opened by before the index.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import oceandata
from oceandata.catalog import open_catalog
from oceandata.catalog import references as refs_mod
from oceandata.catalog.core import Catalog
from oceandata.catalog.references import build_index, index_path, load_index
from oceandata.config import get_settings
from oceandata.errors import NotAuthorized

YEARS = (1950, 1951, 1952, 1953)
HUB_ENV = ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "JUPYTERHUB_HOST",
           "JUPYTERHUB_BASE_URL", "OCEANDATA_ALLOC_URL", "OCEANDATA_TOKEN")

ENTRY = """\
  {name}:
    driver: netcdf
    description: COBE-SST2 {first}-{last}, one file a year
    args:
      urlpath: "{folder}/year*.nc"
      chunks: {{}}
      xarray_kwargs: {{engine: netcdf4}}
      combine: by_coords
    metadata:
      title: COBE-SST2 sample years
      variables: [{{name: sst, standard_name: sea_surface_temperature, units: degC}}]
      bbox: {{west: 0, south: -90, east: 360, north: 90}}
      time_range: {{start: "{first}-01-01", end: "{last}-12-01"}}
      grid: regular
      provider: JMA/MRI via NOAA PSL
      license: test
      tags: [sst]
      classification: {{category: reanalysis, grade: {grade}, rationale: test, owner: test, release: {release}}}
{extra}"""


def _catalog_text(folder: Path, **extra_entries: str) -> str:
    first, last = YEARS[0], YEARS[-1]
    text = "metadata: {version: 1}\nsources:\n"
    text += ENTRY.format(name="cobe_years", folder=folder, first=first, last=last,
                         grade="general", release="open", extra="")
    text += ENTRY.format(name="cobe_years_restricted", folder=folder, first=first, last=last,
                         grade="important", release="restricted",
                         extra="      access: {groups: [partners]}\n")
    for name, body in extra_entries.items():
        text += body.replace("NAME", name)
    return text


@pytest.fixture
def setup(tmp_path: Path, sample, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[tuple[Catalog, Path]]:
    """A catalog of 4 real yearly files in a folder of this test; its own data dir."""
    folder = tmp_path / "files"
    folder.mkdir()
    for year in YEARS:
        shutil.copyfile(sample(f"gridded/cobe-sst2/year{year}.nc"), folder / f"year{year}.nc")
    (tmp_path / "cat.yaml").write_text(_catalog_text(folder))
    monkeypatch.setenv("OCEANDATA_DATA_DIR", str(tmp_path / "data"))
    for name in HUB_ENV:
        monkeypatch.delenv(name, raising=False)
    get_settings(reload=True)
    yield open_catalog(tmp_path / "cat.yaml"), folder
    monkeypatch.undo()
    get_settings(reload=True)


@pytest.fixture
def opened_from_index(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the opens that went through a reference index."""
    calls: list[int] = []
    real = refs_mod.open_references

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(refs_mod, "open_references", spy)
    return calls


def _direct(folder: Path, years=YEARS) -> xr.Dataset:
    """The independent result: open_mfdataset of the files, as before the index."""
    files = [str(folder / f"year{y}.nc") for y in years]
    return xr.open_mfdataset(files, engine="netcdf4", chunks={}, combine="by_coords",
                             data_vars="minimal", coords="minimal", compat="override")


def _without_entry_attr(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy()
    ds.attrs.pop("oceandata_entry", None)
    return ds


def tmp_path_factory_dir(folder: Path) -> Path:
    """A folder beside the test's files for its outputs."""
    out = folder.parent / "out"
    out.mkdir(exist_ok=True)
    return out


def _corrupt_keeping_size_and_mtime(path: Path) -> None:
    """Overwrite *path* with zeros of the same size, then give it back its mtime."""
    st = path.stat()
    path.write_bytes(b"\0" * st.st_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


# ------------------------------------------------------------------------------- values

def test_entry_opens_from_its_index_with_the_values_of_the_files(
        setup: tuple[Catalog, Path], opened_from_index: list[int]) -> None:
    cat, folder = setup
    entry = cat.entry("cobe_years")
    path, built = build_index(entry)
    assert built and path == index_path(entry) and path.is_file()
    assert build_index(entry) == (path, False)  # current: kept as it is
    opened_from_index.clear()  # (the build opens its index once, to check it)

    ds = entry.to_dask()
    assert opened_from_index == [1]
    assert ds.attrs["oceandata_entry"] == "cobe_years"
    expected = _direct(folder)
    xr.testing.assert_identical(_without_entry_attr(ds).compute(), expected.compute())
    assert ds.sst.data.chunksize == expected.sst.data.chunksize  # the files' own chunks

    # subsets through open_dataset: box across the dateline, a period, a variable
    for request in ({"time": ("1951-03", "1952-10"), "bbox": (160, -5, -90, 5)},
                    {"time": "1953/1953"}, {"bbox": (0, 0, 10, 10), "variables": ["sst"]}):
        ours = oceandata.open_dataset("cobe_years", catalog=cat, **request)
        path.rename(path.with_suffix(".off"))  # the same request without the index
        try:
            theirs = oceandata.open_dataset("cobe_years", catalog=cat, **request)
        finally:
            path.with_suffix(".off").rename(path)
        xr.testing.assert_identical(ours.compute(), theirs.compute())
    assert len(opened_from_index) == 4

    # attributes keep the files' numpy types; the dataset writes out as the files' does
    for name, var in expected.variables.items():
        for key, value in var.attrs.items():
            assert type(ds[name].attrs[key]) is type(value), (name, key)
            assert getattr(ds[name].attrs[key], "dtype", None) == getattr(value, "dtype", None)
    assert ds.sst.encoding["missing_value"].dtype == np.float32
    assert ds.sst.encoding["zlib"] and ds.sst.encoding["complevel"] == 9
    part = ds.isel(time=slice(0, 2), lat=slice(0, 10))
    part.to_zarr(tmp_path_factory_dir(folder) / "part.zarr", zarr_format=3, consolidated=False)
    part.to_netcdf(tmp_path_factory_dir(folder) / "part.nc")
    with xr.open_dataset(tmp_path_factory_dir(folder) / "part.nc") as back:
        xr.testing.assert_identical(back, part.compute())

    # a dataset opened from the index travels to dask workers (pickled) whole
    again = pickle.loads(pickle.dumps(ds.sst.isel(time=slice(10, 14))))
    np.testing.assert_array_equal(again.values, expected.sst.isel(time=slice(10, 14)).values)


def test_a_time_subset_reads_only_the_files_of_its_period(
        setup: tuple[Catalog, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    cat, folder = setup
    entry = cat.entry("cobe_years")
    build_index(entry)
    expected = _direct(folder, years=(1951, 1952)).sst.compute()
    # the other years become zeros: same size and time, so the index still counts as
    # current; reading any of their chunks would fail (or give other values)
    for year in (1950, 1953):
        _corrupt_keeping_size_and_mtime(folder / f"year{year}.nc")
    assert load_index(entry).usable

    import fsspec.implementations.local as local

    touched: set[str] = set()
    real_init = local.LocalFileOpener.__init__

    def record(self, path, *args, **kwargs):
        touched.add(Path(path).name)
        real_init(self, path, *args, **kwargs)

    monkeypatch.setattr(local.LocalFileOpener, "__init__", record)
    got = oceandata.open_dataset("cobe_years", catalog=cat, time=(1951, 1952)).sst.compute()
    xr.testing.assert_identical(_without_entry_attr(got.to_dataset()).sst, expected)
    assert touched == {"year1951.nc", "year1952.nc"}
    # the control: the whole entry does read the zeroed files, and fails
    with pytest.raises(Exception):  # noqa: B017 - whatever zlib/numcodecs raise
        entry.to_dask().sst.isel(time=0).compute()


# ---------------------------------------------------------------------------- staleness

def test_a_changed_file_makes_the_index_stale_and_the_files_are_read(
        setup: tuple[Catalog, Path], opened_from_index: list[int],
        caplog: pytest.LogCaptureFixture) -> None:
    cat, folder = setup
    entry = cat.entry("cobe_years")
    build_index(entry)
    opened_from_index.clear()
    # year1951 rewritten with other values (so the index's offsets are wrong for it)
    changed = folder / "year1951.nc"
    with xr.open_dataset(changed, decode_times=False) as old:  # times encoded as before
        new = old.load()
    new["sst"] = new.sst + 1
    new.to_netcdf(folder / "new.tmp", encoding={"sst": {"zlib": True, "complevel": 1}})
    os.replace(folder / "new.tmp", changed)

    with caplog.at_level(logging.WARNING, logger="oceandata.catalog.references"):
        status = load_index(entry)
    assert not status.usable
    assert "year1951.nc" in status.reason
    assert any("oceandata catalog index cobe_years" in r.getMessage() for r in caplog.records)

    got = oceandata.open_dataset("cobe_years", catalog=cat, time="1951/1951").sst.compute()
    assert opened_from_index == []  # the stale index was not used
    np.testing.assert_array_equal(got.values, new.sst.values)

    # rebuilt at the next registration, and used again
    assert build_index(entry)[1] is True
    opened_from_index.clear()
    got = oceandata.open_dataset("cobe_years", catalog=cat, time="1951/1951").sst.compute()
    assert opened_from_index == [1]
    np.testing.assert_array_equal(got.values, new.sst.values)


@pytest.mark.parametrize("change", ["touch", "new file", "removed file", "arguments"])
def test_other_changes_make_the_index_stale(setup: tuple[Catalog, Path], change: str,
                                            tmp_path: Path, opened_from_index: list[int]
                                            ) -> None:
    cat, folder = setup
    build_index(cat.entry("cobe_years"))
    opened_from_index.clear()
    if change == "touch":  # same bytes, another modification time
        st = (folder / "year1952.nc").stat()
        os.utime(folder / "year1952.nc", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        want = "modification time"
    elif change == "new file":
        shutil.copyfile(folder / "year1953.nc", folder / "year1953b.nc")
        want = "resolves to 5"
    elif change == "removed file":
        (folder / "year1953.nc").unlink()
        want = "resolves to 3"
    else:
        text = (tmp_path / "cat.yaml").read_text().replace("combine: by_coords",
                                                           "combine: nested\n      concat_dim: time", 1)
        (tmp_path / "cat.yaml").write_text(text)
        cat = open_catalog(tmp_path / "cat.yaml")
        want = "missing"  # another definition, another index
    entry = cat.entry("cobe_years")
    status = load_index(entry)
    assert not status.usable and want in status.reason
    if change != "new file":  # (a duplicated year is not a valid entry by coordinates)
        entry.to_dask()
        assert opened_from_index == []


def test_missing_or_malformed_index_falls_back_to_the_files(
        setup: tuple[Catalog, Path], opened_from_index: list[int],
        caplog: pytest.LogCaptureFixture) -> None:
    cat, folder = setup
    entry = cat.entry("cobe_years")
    with caplog.at_level(logging.WARNING, logger="oceandata.catalog.references"):
        status = load_index(entry)
        assert (status.usable, status.reason) == (False, "missing")
        assert caplog.records == []  # a missing index is not worth a warning
        ds = entry.to_dask()
    assert opened_from_index == []
    xr.testing.assert_identical(_without_entry_attr(ds), _direct(folder))

    index_path(entry).parent.mkdir(parents=True)
    index_path(entry).write_text('{"format": 1, "files": [')  # cut short
    with caplog.at_level(logging.WARNING, logger="oceandata.catalog.references"):
        ds = entry.to_dask()
    assert "is malformed" in caplog.text
    assert opened_from_index == []
    xr.testing.assert_identical(_without_entry_attr(ds), _direct(folder))


# ------------------------------------------------------------------------------ access

def test_an_index_does_not_bypass_the_access_check(
        setup: tuple[Catalog, Path], monkeypatch: pytest.MonkeyPatch,
        opened_from_index: list[int]) -> None:
    cat, folder = setup
    entry = cat.entry("cobe_years_restricted")
    build_index(entry)
    opened_from_index.clear()
    assert load_index(entry).usable
    monkeypatch.setenv("OCEANDATA_GROUPS", "scientists")
    with pytest.raises(NotAuthorized, match="restricted to groups partners"):
        entry.to_dask()
    with pytest.raises(NotAuthorized, match="restricted to groups partners"):
        oceandata.open_dataset("cobe_years_restricted", catalog=cat, time="1951/1951")
    assert opened_from_index == []
    monkeypatch.setenv("OCEANDATA_GROUPS", "partners")  # the grant the data owner gave
    ds = entry.to_dask()
    assert opened_from_index == [1]
    xr.testing.assert_identical(_without_entry_attr(ds).sst.isel(time=5).compute(),
                                _direct(folder).sst.isel(time=5).compute())


# ----------------------------------------------------------------------- the command line

def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oceandata.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=300)


def test_command_builds_the_index_and_refuses_bad_input_in_one_line(
        setup: tuple[Catalog, Path], tmp_path: Path) -> None:
    cat, folder = setup
    env = {"OCEANDATA_DATA_DIR": str(tmp_path / "data")}
    catalog = str(tmp_path / "cat.yaml")
    # registration: validate builds the index of both entries, then validates them
    done = _cli("catalog", "validate", catalog, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.count("reference index built") == 2, done.stderr
    assert "2 entries, 0 problems: OK" in done.stdout
    assert load_index(cat.entry("cobe_years")).usable
    again = _cli("catalog", "index", "cobe_years", "--catalog", catalog, env=env)
    assert again.returncode == 0 and "reference index current" in again.stdout

    for args, says in ((("nosuch",), "no dataset 'nosuch'"),
                       (("tide_point_reyes",), "not a NetCDF entry of several local files")):
        cat_args = ("--catalog", catalog) if args[0] == "nosuch" else ()
        proc = _cli("catalog", "index", *args, *cat_args, env=env)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr
        assert says in lines[0]

    # a file kerchunk cannot map: one line naming it, exit 1, no index written
    (folder / "year1952.nc").write_bytes(b"not a netcdf file")
    proc = _cli("catalog", "index", "cobe_years", "--catalog", catalog, "--force", env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "cannot index" in proc.stderr and "year1952.nc" in proc.stderr
    assert "opens from its files" in proc.stderr


# ------------------------------------------------------------------ the real sample entry

def test_cobe_sst2_sample_entry_opens_from_its_index(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened_from_index: list[int]) -> None:
    """The 60-file sample entry: its sample files resolved from the registry, unhashed."""
    monkeypatch.setenv("OCEANDATA_DATA_DIR", str(tmp_path / "data"))
    get_settings(reload=True)
    try:
        entry = open_catalog().entry("cobe_sst2")
        assert [p for p, _ in refs_mod._expected_files(entry)] == entry.paths()
        assert build_index(entry)[1] is True
        opened_from_index.clear()  # (the build checks its own index)
        got = oceandata.open_dataset("cobe_sst2", time=("2000-01", "2001-12"),
                                     bbox=(170, -5, -120, 5))
        assert opened_from_index == [1]
        files = [str(p) for p in entry.paths() if p.endswith(("2000.nc", "2001.nc"))]
        direct = xr.open_mfdataset(files, engine="netcdf4", chunks={}, combine="by_coords")
        want = direct.sst.sel(lat=slice(5, -5), lon=slice(170, 240))  # 120W is 240E
        np.testing.assert_array_equal(got.sst.values, want.values)
    finally:
        monkeypatch.undo()
        get_settings(reload=True)


def test_classic_netcdf_files_are_indexed_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              opened_from_index: list[int]) -> None:
    """netCDF-3 files (a record dimension) go through kerchunk's NetCDF3ToZarr."""
    import pandas as pd

    for i, year in enumerate((2000, 2001, 2002)):
        times = pd.date_range(f"{year}-01-01", periods=12, freq="MS")
        rng = np.random.default_rng(i)
        ds = xr.Dataset({"sst": (("time", "lat", "lon"), rng.random((12, 4, 5)).astype("f4"))},
                        coords={"time": times, "lat": np.arange(4.0), "lon": np.arange(5.0)})
        ds.to_netcdf(tmp_path / f"y{year}.nc", format="NETCDF3_CLASSIC", unlimited_dims=["time"],
                     encoding={"time": {"units": "days since 1990-01-01", "dtype": "f8"}})
    body = ENTRY.format(name="NAME", folder=tmp_path, first=2000, last=2002, grade="general",
                        release="open", extra="").replace("year*.nc", "y*.nc")
    (tmp_path / "cat.yaml").write_text("metadata: {version: 1}\nsources:\n" +
                                       body.replace("NAME", "classic"))
    monkeypatch.setenv("OCEANDATA_DATA_DIR", str(tmp_path / "data"))
    get_settings(reload=True)
    try:
        entry = open_catalog(tmp_path / "cat.yaml").entry("classic")
        assert build_index(entry)[1] is True
        opened_from_index.clear()
        ds = entry.to_dask()
        assert opened_from_index == [1]
        direct = xr.open_mfdataset(sorted(str(p) for p in tmp_path.glob("y*.nc")),
                                   combine="by_coords")
        xr.testing.assert_identical(_without_entry_attr(ds).compute(), direct.compute())
    finally:
        monkeypatch.undo()
        get_settings(reload=True)


# ------------------------------------------------------------------------ the index's trust

def test_a_poisoned_index_is_never_followed_outside_the_entry(
        setup: tuple[Catalog, Path], opened_from_index: list[int],
        caplog: pytest.LogCaptureFixture) -> None:
    """Whoever could write the index must not make an open entry serve another file."""
    import json

    cat, folder = setup
    entry = cat.entry("cobe_years")
    path, _ = build_index(entry)
    secret = folder.parent / "secret.nc"
    shutil.copyfile(folder / f"year{YEARS[0]}.nc", secret)
    doc = json.loads(path.read_text())
    key, ref = next((k, v) for k, v in doc["refs"]["refs"].items() if isinstance(v, list))
    for poisoned in ({**doc["refs"]["refs"], key: [str(secret), *ref[1:]]},):
        doc["refs"]["refs"] = poisoned
        path.write_text(json.dumps(doc))
        with caplog.at_level(logging.WARNING, logger="oceandata.catalog.references"):
            assert not load_index(entry).usable
        assert "refers to data outside the entry's files" in caplog.text
    doc["refs"]["templates"] = {"u": "http://127.0.0.1:9/"}
    path.write_text(json.dumps(doc))
    assert not load_index(entry).usable
    # an index anyone may rewrite is not trusted either, even when its content is right
    build_index(entry, force=True)
    assert load_index(entry).usable
    os.chmod(path, 0o666)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="oceandata.catalog.references"):
        assert not load_index(entry).usable
    assert "writable by others" in caplog.text
    opened_from_index.clear()
    ds = entry.to_dask()
    assert opened_from_index == []
    xr.testing.assert_identical(_without_entry_attr(ds), _direct(folder))


def test_the_index_is_no_more_readable_than_the_files(setup: tuple[Catalog, Path]) -> None:
    cat, folder = setup
    entry = cat.entry("cobe_years")
    path, _ = build_index(entry)
    assert path.stat().st_mode & 0o777 == 0o644  # the files are world-readable
    for file in folder.glob("*.nc"):
        os.chmod(file, 0o640)  # as a restricted entry's files are kept
    path, built = build_index(entry, force=True)
    assert built and path.stat().st_mode & 0o777 == 0o600


def test_an_entry_name_never_leads_the_index_out_of_its_folder(
        setup: tuple[Catalog, Path]) -> None:
    cat, _ = setup
    entry = cat.entry("cobe_years")
    entry.name = "../../etc/evil"  # catalog keys are the operator's, but never paths
    path = index_path(entry)
    assert path.parent == get_settings().data_dir / "references"
    assert path.name.startswith(".._.._etc_evil-")


def test_files_kerchunk_cannot_join_are_one_line_and_the_entry_still_opens(
        setup: tuple[Catalog, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    cat, folder = setup
    entry = cat.entry("cobe_years")

    def refuse(*args, **kwargs):
        raise ValueError("Found chunk size mismatch")  # what kerchunk raises for unlike files

    monkeypatch.setattr(refs_mod, "_combine", refuse)
    [result] = refs_mod.build_indexes([entry])
    assert result.path is None
    assert str(result) == ("cobe_years: no reference index (ValueError: Found chunk size "
                           "mismatch); it opens from its files")
    xr.testing.assert_identical(_without_entry_attr(entry.to_dask()), _direct(folder))
