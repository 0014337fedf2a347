"""The command line as a user runs it: real console script, real catalog, real files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

OCEANDATA = [sys.executable, "-m", "oceandata.cli"]


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OCEANDATA, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=300)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """Assert exit 2 with exactly one line on stderr and no traceback; return it."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("oceandata: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def cobe_1997(sample) -> xr.Dataset:
    """COBE-SST2 1997 opened directly, the independent reference for subsets."""
    return xr.open_dataset(sample("gridded/cobe-sst2/year1997.nc"))


def test_catalog_list_json_lists_every_sample_entry(repo: Path) -> None:
    proc = run("catalog", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    names = {e["name"] for e in json.loads(proc.stdout)}
    expected = {"cobe_sst2", "pop_surface", "tos_bipolar", "etopo20", "etopo60",
                "sst_ndjfm_anom", "phc2_ts_zonal", "dsg_point", "dsg_profile",
                "dsg_timeseries", "dsg_trajectory", "tide_point_reyes"}
    assert expected <= names, expected - names
    assert sum(n.startswith("oisst_") for n in names) == 3


def test_catalog_search_by_standard_name_and_dateline_bbox() -> None:
    proc = run("catalog", "search", "--standard-name", "sea_surface_temperature",
               "--bbox", "170,-10,-170,10", "--json")
    assert proc.returncode == 0, proc.stderr
    names = {e["name"] for e in json.loads(proc.stdout)}
    assert "cobe_sst2" in names and "sst_ndjfm_anom" in names
    assert not any(n.startswith("oisst_") for n in names)  # single cells far from there


def test_catalog_show_json_has_the_schema_fields() -> None:
    proc = run("catalog", "show", "cobe_sst2", "--json")
    assert proc.returncode == 0, proc.stderr
    md = json.loads(proc.stdout)["metadata"]
    assert md["grid"] == "regular" and md["classification"]["release"] == "open"
    assert {"sst"} <= {v["name"] for v in md["variables"]}
    assert md["time_range"]["start"].startswith("1950-01")
    assert "Hirahara" in md["citation"]


def test_subset_to_netcdf_matches_direct_selection(tmp_path, cobe_1997) -> None:
    out = tmp_path / "nino34.nc"
    proc = run("subset", "cobe_sst2", "--bbox", "190,-5,240,5", "--time", "1997-01/1997-12",
               "--var", "sst", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    got = xr.open_dataset(out)
    ref = cobe_1997.sst.sel(lat=slice(5, -5), lon=slice(190, 240))
    np.testing.assert_array_equal(got.sst.values, ref.values)
    assert "oceandata subset cobe_sst2" in got.attrs["history"].splitlines()[0]
    assert got.attrs["source_entry"] == "cobe_sst2"


def test_subset_to_csv_across_the_dateline(tmp_path, cobe_1997) -> None:
    out = tmp_path / "dateline.csv"
    proc = run("subset", "cobe_sst2", "--bbox", "178,-1,-178,1", "--time", "1997-03/1997-03",
               "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    import pandas as pd

    table = pd.read_csv(out, comment="#")
    ref = cobe_1997.sst.sel(time="1997-03", lat=slice(1, -1))
    ref = ref.sel(lon=(ref.lon >= 178) & (ref.lon <= 182))  # COBE longitudes are 0..360
    assert len(table) == ref.size == 8
    assert sorted(table.lon.unique()) == [178.5, 179.5, 180.5, 181.5]
    assert np.isclose(np.sort(table.sst.values), np.sort(ref.values.ravel())).all()


@pytest.mark.parametrize(("args", "needle"), [
    (["catalog", "show", "cobe_sst"], "no dataset 'cobe_sst'"),
    (["subset", "cobe_sst2", "--bbox", "0,40,10,10", "-o", "x.nc"], "south"),
    (["subset", "cobe_sst2", "--bbox", "0,-95,10,10", "-o", "x.nc"], "-90"),
    (["subset", "cobe_sst2", "--bbox", "a,b,c", "-o", "x.nc"], "W,S,E,N"),
    (["subset", "cobe_sst2", "--time", "1800-01/1801-01", "-o", "x.nc"], "1950-01"),
    (["subset", "cobe_sst2", "--var", "salinity", "-o", "x.nc"], "sst"),
    (["subset", "cobe_sst2", "--bbox", "0,0,1,1", "-o", "x.grib"], ".nc, .zarr, .csv"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, needle) -> None:
    proc = run(*args, cwd=tmp_path)
    assert needle in one_line_error(proc)
    assert list(tmp_path.iterdir()) == []


def test_unknown_dataset_suggests_close_names() -> None:
    assert "Did you mean: cobe_sst2" in one_line_error(run("catalog", "show", "cobe_sst"))


def test_malformed_catalog_names_file_and_line(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  x:\n    driver: netcdf\n   args: [\n")
    line = one_line_error(run("catalog", "list", "--catalog", str(bad)))
    assert f"{bad}:4: malformed YAML" in line


def test_truncated_file_is_a_data_error(tmp_path, sample) -> None:
    src = sample("gridded/pop.nc")
    cut = tmp_path / "pop_truncated.nc"
    cut.write_bytes(Path(src).read_bytes()[: 100_000])
    line = one_line_error(run("subset", str(cut), "--bbox", "0,0,10,10",
                              "-o", str(tmp_path / "o.nc")))
    assert "pop_truncated.nc" in line and "truncated" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pop_truncated.nc"]


def test_catalog_validate_passes_on_the_sample_catalog() -> None:
    proc = run("catalog", "validate", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["problems"] == [] and report["entries"] >= 15


def test_catalog_validate_reports_entry_and_field_on_mismatch(tmp_path, repo) -> None:
    copy = tmp_path / "catalogs"
    shutil.copytree(repo / "catalogs", copy)
    gridded = copy / "gridded.yaml"
    text = gridded.read_text()
    assert "units: degC" in text or "units: deg_C" in text
    gridded.write_text(text.replace("name: sst,", "name: sst_typo,", 1)
                       if "name: sst," in text else text.replace("- name: sst", "- name: sst_typo", 1))
    proc = run("catalog", "validate", str(copy / "ocean.yaml"))
    assert proc.returncode == 1
    assert "sst_typo" in proc.stderr and "variables" in proc.stderr


def test_bad_chunks_setting_is_one_line_naming_the_variable(tmp_path) -> None:
    line = one_line_error(run("subset", "tide_point_reyes", "-o", str(tmp_path / "t.nc"),
                              env={"OCEANDATA_CHUNKS": "time=12"}))
    assert "OCEANDATA_CHUNKS='time=12'" in line and '{"time": 12}' in line
    assert list(tmp_path.iterdir()) == []


def test_dsg_with_station_names_opens_with_auto_chunks(sample) -> None:
    """dask cannot size string variables for chunks="auto"; the file's own chunks serve."""
    import oceandata

    ds = oceandata.open_dataset("dsg_point", chunks="auto")
    ref = xr.open_dataset(sample("dsg/dsg_point_example.nc"))
    lat = ds.cf["latitude"]
    assert lat.chunks is not None
    np.testing.assert_array_equal(lat.values, ref.cf["latitude"].values)
