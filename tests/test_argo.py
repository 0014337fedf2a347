"""Argo: the data-mode and QC rules against the float files read directly with netCDF4."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest

from oceandata import argo
from oceandata.argo.index import default_mirror, resolve
from oceandata.errors import DataError, UsageError

GDAC = Path("argo/gdac/dac")


@pytest.fixture(scope="module")
def mirror() -> Path:
    return default_mirror()


def raw(mirror: Path, wmo: int, name: str = "prof") -> netCDF4.Dataset:
    (path,) = mirror.glob(f"dac/*/{wmo}/{wmo}_{name}.nc")
    nc = netCDF4.Dataset(path)
    nc.set_auto_mask(True)
    return nc


def chars(values) -> np.ndarray:
    """A netCDF4 char vector (one character per profile) as str."""
    return np.ma.filled(values, b" ").astype("U1")


def qc_codes(values) -> np.ndarray:
    text = np.ma.filled(values, b" ").astype("U1")
    return np.where(np.char.isdigit(text), text, "9").astype(int)


def test_expert_mode_uses_adjusted_values_where_mode_is_a_or_d(mirror) -> None:
    """Float 4901079 mixes A and D profiles; 2901623 is all real time (R)."""
    for wmo in (4901079, 2901623):
        ds = argo.load(wmo, mode="expert")
        with raw(mirror, wmo) as nc:
            modes = chars(nc["DATA_MODE"][:])
            adjusted = np.isin(modes, ["A", "D"])[:, None]
            temp = np.where(adjusted, np.ma.filled(nc["TEMP_ADJUSTED"][:], np.nan),
                            np.ma.filled(nc["TEMP"][:], np.nan))
            pres = np.where(adjusted, np.ma.filled(nc["PRES_ADJUSTED"][:], np.nan),
                            np.ma.filled(nc["PRES"][:], np.nan))
        expected = temp[np.isfinite(pres)]
        np.testing.assert_allclose(ds.TEMP.values, expected.astype("f8"), equal_nan=True)
        assert ds.sizes["profile"] == len(modes)
        assert set(ds.attrs["argo_data_modes"].split(",")) == set(modes)
        assert {"TEMP_QC", "PSAL_QC", "PRES_QC"} <= set(ds.data_vars)


@pytest.mark.parametrize(("mode", "good"), [("standard", {1, 2}), ("research", {1})])
def test_qc_modes_keep_exactly_the_levels_the_rule_allows(mirror, mode, good) -> None:
    wmo = 2901746  # 73 real-time and 192 delayed-mode profiles
    ds = argo.load(wmo, mode=mode)
    with raw(mirror, wmo) as nc:
        modes = chars(nc["DATA_MODE"][:])
        adjusted = np.isin(modes, ["A", "D"])[:, None]
        keep = np.isin(qc_codes(nc["POSITION_QC"][:]), list(good)) & \
            np.isin(qc_codes(nc["JULD_QC"][:]), list(good))
        if mode == "research":
            keep &= modes == "D"
        level = keep[:, None]
        values = {}
        for p in ("PRES", "TEMP", "PSAL"):
            v = np.where(adjusted, np.ma.filled(nc[f"{p}_ADJUSTED"][:], np.nan),
                         np.ma.filled(nc[p][:], np.nan))
            q = np.where(adjusted, qc_codes(nc[f"{p}_ADJUSTED_QC"][:]), qc_codes(nc[f"{p}_QC"][:]))
            level = level & np.isin(q, list(good)) & np.isfinite(v)
            values[p] = v
        if mode == "research":
            error = np.ma.filled(nc["PRES_ADJUSTED_ERROR"][:], np.nan)
            with np.errstate(invalid="ignore"):
                level &= error < 20
    np.testing.assert_allclose(ds.PSAL.values, values["PSAL"][level])
    np.testing.assert_array_equal(ds.row_size.values, level.sum(axis=1)[level.any(axis=1)])
    assert ds.attrs["argo_user_mode"] == mode
    assert "PRES, TEMP and PSAL QC all in" in ds.attrs["argo_qc_rule"]
    assert "TEMP_QC" not in ds
    if mode == "research":
        assert set(ds.data_mode.values) == {"D"}


def test_research_mode_drops_a_float_with_no_delayed_mode_data() -> None:
    """2901780 (KORDI) is all adjusted real time (A): nothing passes the research rule."""
    ds = argo.load(2901780, mode="research")
    assert ds.sizes["profile"] == 0 and ds.attrs["argo_data_modes"] == "none"


def test_bgc_doxy_follows_its_own_parameter_data_mode(mirror) -> None:
    import xarray as xr

    wmo = 3902131
    ds = argo.load(wmo, mode="expert", bgc=True)
    assert "DOXY" in ds and ds.DOXY.attrs.get("units")
    (path,) = mirror.glob(f"dac/*/{wmo}/{wmo}_Sprof.nc")
    with xr.open_dataset(path) as nc:
        station = np.char.strip(nc.STATION_PARAMETERS.values.astype("U"))
        pmode = nc.PARAMETER_DATA_MODE.values.astype("U")
        rows = np.arange(nc.sizes["N_PROF"])

        def values(param: str) -> np.ndarray:
            mode = pmode[rows, (station == param).argmax(axis=1)]
            adjusted = np.isin(mode, ["A", "D"])[:, None]
            return mode, np.where(adjusted, nc[f"{param}_ADJUSTED"].values, nc[param].values)

        doxy_mode, doxy = values("DOXY")
        pres_mode, pres = values("PRES")
    np.testing.assert_allclose(ds.DOXY.values, doxy[np.isfinite(pres)], equal_nan=True)
    # the file really gives DOXY its own mode: raw DOXY beside delayed-mode PRES
    assert (doxy_mode != pres_mode).any()


def test_standard_levels_match_numpy_interpolation() -> None:
    ds = argo.load(2902696)
    levels = argo.to_standard_levels(ds, [10, 50, 100, 500, 1000])
    first = slice(0, int(ds.row_size[0]))
    pres, temp = ds.PRES.values[first], ds.TEMP.values[first]
    expected = np.interp([10, 50, 100, 500, 1000], pres, temp, left=np.nan, right=np.nan)
    np.testing.assert_allclose(levels.TEMP.values[0], expected, equal_nan=True)
    with pytest.raises(UsageError, match="increasing"):
        argo.to_standard_levels(ds, [10, 5])


def test_index_search_matches_a_direct_filter_of_the_index(mirror) -> None:
    table = pd.read_csv(mirror / "ar_index_global_prof.txt", comment="#", dtype={"date": str})
    when = pd.to_datetime(table.date, format="%Y%m%d%H%M%S")
    direct = table[(table.latitude.between(30, 45)) & (table.longitude.between(125, 140))
                   & (when.dt.year == 2018)]
    found = argo.search(bbox=(125, 30, 140, 45), time=("2018", "2018"))
    assert sorted(found.file) == sorted(direct.file) and len(found) > 0
    assert set(argo.search(dac="kma").wmo) == {2901746}
    assert len(argo.search(wmo=2902696)) == len(table[table.file.str.contains("/2902696/")])
    with pytest.raises(UsageError, match="DAC nope is not in the index"):
        argo.search(dac="nope")


def test_index_lines_resolve_across_data_mode_renames(tmp_path, mirror) -> None:
    """An index written when a profile was R finds it after the DAC renamed it D."""
    real = mirror / "dac/nmdis/2901623/profiles/D2901623_000.nc"
    renamed = tmp_path / "dac/nmdis/2901623/profiles/D2901623_000.nc"
    renamed.parent.mkdir(parents=True)
    renamed.symlink_to(real.resolve())
    row = pd.Series({"file": "nmdis/2901623/profiles/R2901623_000.nc", "dac": "nmdis",
                     "wmo": 2901623, "line": 2605})
    assert resolve(row, tmp_path) == renamed
    ghost = pd.Series({"file": "nmdis/1/profiles/R1_001.nc", "dac": "nmdis", "wmo": 1,
                       "line": 9})
    assert resolve(ghost, tmp_path, strict=False) is None
    with pytest.raises(DataError, match=r"index line 9 .*not in the mirror"):
        resolve(ghost, tmp_path)


def test_missing_float_and_inconsistent_file_are_data_errors(tmp_path, mirror) -> None:
    with pytest.raises(DataError, match="float 1234567 has no profile file"):
        argo.load(1234567)
    fake = tmp_path / "dac" / "x" / "7777777"
    fake.mkdir(parents=True)
    (tmp_path / "ar_index_global_prof.txt").write_text("file,date,latitude,longitude\n")
    src = next(mirror.glob("dac/*/2902696/2902696_prof.nc"))
    import xarray as xr

    with xr.open_dataset(src, decode_times=False, mask_and_scale=False) as ds:
        bad = ds.load()
    bad["TEMP"] = bad["TEMP"].isel(N_LEVELS=slice(0, 10)).rename(N_LEVELS="N_OTHER")
    bad.to_netcdf(fake / "7777777_prof.nc")
    with pytest.raises(DataError, match=r"TEMP has dimensions .* inconsistent"):
        argo.load(7777777, mirror=tmp_path)
    with pytest.raises(UsageError, match="not one of standard, research, expert"):
        argo.load(2902696, mode="strict")


def test_profile_store_appends_by_key_and_is_idempotent(tmp_path) -> None:
    from oceandata.argo.store import ingest_floats
    from oceandata.ingest.store import open_store, verify

    store = tmp_path / "argo.icechunk"
    assert ingest_floats([2902696], store)[0] == 51
    assert ingest_floats([2902696, 2901780], store)[0] == 84
    assert ingest_floats([2901780, 2902696], store) == (0, None)
    ds = open_store(store)
    ref = argo.load([2902696, 2901780])
    np.testing.assert_array_equal(ds.TEMP.values, ref.TEMP.values)
    np.testing.assert_array_equal(ds.row_size.values, ref.row_size.values)
    assert verify(store) == []
    import oceandata

    box = oceandata.open_dataset(str(store), bbox=(150, 30, 165, 40))
    assert set(box.platform_number.values) == {2901780}


def test_cli_search_and_load(tmp_path) -> None:
    run = [sys.executable, "-m", "oceandata.cli", "argo"]
    found = subprocess.run([*run, "search", "--float", "2902696", "--json"],
                           capture_output=True, text=True, check=True)
    assert found.stdout.count('"wmo": 2902696') == 51
    out = tmp_path / "f.nc"
    proc = subprocess.run([*run, "load", "2902696", "--mode", "research", "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    import xarray as xr

    with xr.open_dataset(out) as ds:
        assert ds.attrs["argo_user_mode"] == "research" and ds.attrs["featureType"] == "profile"
        assert "oceandata argo load" in ds.attrs["history"]
    bad = subprocess.run([*run, "load", "2902696", "--mode", "x", "-o", str(tmp_path / "g.nc")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.nc"]


def test_the_served_catalog_lists_the_argo_store(tmp_path) -> None:
    import oceandata
    from oceandata.ingest.samples import build_sample_stores
    from oceandata.io.validate import validate_catalog

    root = build_sample_stores(tmp_path, names=["argo_profiles"], check=False)
    cat = oceandata.open_catalog(root)
    assert validate_catalog(cat) == []
    entry = cat.entry("argo_profiles")
    assert entry.metadata.grid == "dsg" and entry.metadata.feature_type == "profile"
    ds = cat.to_dask("argo_profiles")
    assert ds.attrs["argo_user_mode"] == "standard"
    # every float but 5900446, whose dates are all estimated (JULD_QC 8, not 1 or 2)
    assert set(ds.platform_number.values) == {1900857, 2901623, 2901746, 2901780, 2902269,
                                               2902696, 3902131, 4901079, 5900865}
