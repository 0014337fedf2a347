"""Export: formats, provenance, and nothing half-written."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from oceandata.errors import DataError, UsageError
from oceandata.io.export import export, with_provenance


@pytest.fixture
def sst_1950(sample) -> xr.Dataset:
    """COBE-SST2 1950, 10°x10° box around the equator at 180°, lazy."""
    ds = xr.open_dataset(sample("gridded/cobe-sst2/year1950.nc"), chunks={"time": 4})
    return ds.sel(lat=slice(4.5, -4.5), lon=slice(175, 185))


def _provenanced(ds: xr.Dataset) -> xr.Dataset:
    return with_provenance(ds, source="cobe_sst2", request={"bbox": (175, -5, -175, 5)},
                           command="oceandata subset cobe_sst2")


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_roundtrip_keeps_values_and_records_provenance(tmp_path, sst_1950, suffix) -> None:
    out = export(_provenanced(sst_1950), tmp_path / f"box{suffix}")
    back = xr.open_dataset(out, engine="zarr" if suffix == ".zarr" else None)
    np.testing.assert_array_equal(back.sst.values, sst_1950.sst.values)
    np.testing.assert_array_equal(back.time.values, sst_1950.time.values)
    assert back.attrs["source_entry"] == "cobe_sst2"
    assert json.loads(back.attrs["oceandata_request"]) == {"bbox": [175, -5, -175, 5]}
    assert back.attrs["oceandata_version"]
    first, *rest = back.attrs["history"].splitlines()
    assert "oceandata subset cobe_sst2" in first and first[:4].isdigit()
    # the source's own history (CDO lines and the provider's note) is kept below ours
    assert rest == sst_1950.attrs["history"].strip().splitlines()
    assert any("cdo" in line for line in rest)
    assert pd.Timestamp(back.attrs["date_created"]).year >= 2024
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"box{suffix}"]



def test_csv_has_provenance_comments_and_one_row_per_point(tmp_path, sst_1950) -> None:
    out = export(_provenanced(sst_1950), tmp_path / "box.csv")
    lines = out.read_text().splitlines()
    assert lines[0].startswith("# source_entry: cobe_sst2")
    assert any(line.startswith("# history: ") for line in lines)
    table = pd.read_csv(out, comment="#")
    assert len(table) == sst_1950.sst.size
    assert {"time", "lat", "lon", "sst"} <= set(table.columns)
    row = table[(table.lat == 0.5) & (table.lon == 180.5)].iloc[0]
    expected = sst_1950.sst.sel(lat=0.5, lon=180.5).isel(time=0).compute().item()
    assert row.sst == pytest.approx(expected)


def test_failed_write_leaves_nothing_under_either_name(tmp_path) -> None:
    def explode(block: np.ndarray) -> np.ndarray:
        if block.min() >= 5:
            raise ValueError("simulated read failure in the third chunk")
        return block

    data = da.arange(12, chunks=2, dtype="f8").map_blocks(explode, dtype="f8")
    ds = xr.Dataset({"x": ("t", data)})
    for name in ("bad.nc", "bad.zarr", "bad.csv"):
        with pytest.raises(DataError, match=f"cannot write .*{name}.*simulated read failure"):
            export(ds, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_existing_target_is_kept_without_overwrite(tmp_path, sst_1950) -> None:
    target = tmp_path / "box.nc"
    target.write_text("precious")
    with pytest.raises(UsageError, match="already exists"):
        export(sst_1950, target)
    assert target.read_text() == "precious"
    export(sst_1950, target, overwrite=True)
    assert xr.open_dataset(target).sst.shape == sst_1950.sst.shape


@pytest.mark.parametrize("name", ["out.txt", "out", "out.grib"])
def test_unknown_suffix_is_a_usage_error(tmp_path, sst_1950, name) -> None:
    with pytest.raises(UsageError, match=r"is not one of .nc, .zarr, .csv"):
        export(sst_1950, tmp_path / name)


def test_missing_folder_is_a_usage_error(tmp_path, sst_1950) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        export(sst_1950, tmp_path / "no" / "such" / "dir" / "x.nc")


def test_csv_of_a_ragged_array_has_one_row_per_observation(tmp_path) -> None:
    """A contiguous ragged array (rowSize) is 1268 observations of 30 profiles, not the
    30 x 1268 pairs a data frame of both dimensions would make."""
    import oceandata

    ds = oceandata.open_dataset("dsg_profile")
    out = export(ds, tmp_path / "profiles.csv")
    table = pd.read_csv(out, comment="#")
    raw = xr.open_dataset(oceandata.open_catalog().entry("dsg_profile").paths()[0])
    sizes = raw["rowSize"].values
    assert len(table) == int(sizes.sum()) == raw.sizes["obs"]
    np.testing.assert_allclose(table["temp"], raw["temp"].values)
    np.testing.assert_allclose(table["latitude"], np.repeat(raw["latitude"].values, sizes))
    assert list(table["id"]) == [v.decode().strip() if isinstance(v, bytes) else v
                                 for v in np.repeat(raw["id"].values, sizes)]
