"""The sample catalogs in ``catalogs/``: valid, complete, and true to the files they describe.

Each entry's declared variables, units, bbox, time range and depth range are compared with
values computed here from the files themselves (plain xarray with the entry's
``xarray_kwargs``, or pandas for CSV), independently of oceandata's own readers.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from oceandata import sample_data
from oceandata.catalog.schema import CATALOG_DRIVERS, CatalogFile, EntryMetadata
from oceandata.config import get_settings

REPO = Path(__file__).resolve().parents[1]
CATALOGS = REPO / "catalogs"
ROOT = CATALOGS / "ocean.yaml"
SAMPLE_PREFIX = "{{ CATALOG_DIR }}/../data/sample/"
_TEMPLATE = re.compile(r"\{\{\s*CATALOG_DIR\s*\}\}")

#: Entries whose time axis has no calendar year must say so with one of these tags.
NO_YEAR_TAGS = {"climatology", "model-time"}


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def sub_catalogs() -> dict[str, Path]:
    """Sub-catalog name → file, as referenced by the root catalog."""
    out = {}
    for name, source in load(ROOT)["sources"].items():
        if source["driver"] in CATALOG_DRIVERS:
            out[name] = Path(_TEMPLATE.sub(str(CATALOGS), source["args"]["path"]))
    return out


def all_entries() -> list[tuple[str, Path, dict[str, Any]]]:
    """Every data entry of every sub-catalog, duplicates included."""
    found = []
    for path in sub_catalogs().values():
        for name, source in load(path)["sources"].items():
            if source["driver"] not in CATALOG_DRIVERS:
                found.append((name, path, source))
    return found


ENTRIES = {name: source for name, _, source in all_entries()}


def matches(pattern: str) -> list[str]:
    """Registry paths a sample pattern selects (over short names and paths)."""
    return [sample_data.info(n).path for n in sample_data.names()
            if fnmatch.fnmatchcase(n, pattern)
            or fnmatch.fnmatchcase(sample_data.info(n).path, pattern)]


# -- structure ------------------------------------------------------------------------

def test_every_catalog_file_parses_as_an_intake_catalog() -> None:
    # governance files beside the catalogs are not catalogs (desensitisation profiles)
    files = sorted(p for p in CATALOGS.glob("*.yaml") if p.name != "profiles.yaml")
    assert {p.name for p in files} >= {"ocean.yaml", "gridded.yaml", "series.yaml", "dsg.yaml"}
    for path in files:
        parsed = CatalogFile.model_validate(load(path))
        assert parsed.metadata.get("version") == 1, path
        assert parsed.metadata.get("title"), path


def test_the_root_references_three_sub_catalogs() -> None:
    subs = sub_catalogs()
    assert list(subs) == ["gridded", "series", "dsg"]
    assert all(p.is_file() for p in subs.values())
    assert not [n for n, s in load(ROOT)["sources"].items() if s["driver"] not in CATALOG_DRIVERS]


def test_entry_names_are_unique_across_the_tree() -> None:
    names = [name for name, _, _ in all_entries()]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_metadata_validates_against_the_schema(name: str) -> None:
    source = ENTRIES[name]
    md = EntryMetadata.model_validate(source["metadata"])
    assert source.get("description") and "\n" not in source["description"].strip()
    assert md.classification.release == "open" and md.classification.grade == "general"
    assert md.sample, "every sample entry names its registry files"


def test_every_non_argo_sample_file_is_covered_by_an_entry() -> None:
    covered: set[str] = set()
    for name, source in ENTRIES.items():
        for pattern in source["metadata"]["sample"]:
            selected = matches(pattern)
            assert selected, f"{name}: sample pattern {pattern!r} matches no registry file"
            covered.update(selected)
    non_argo = {p for p in sample_data.registry_paths() if not p.startswith("argo/")}
    assert covered <= non_argo
    missing = non_argo - covered

    # The OISST entries open the NetCDF copy of each site's series; the CSV copy and the
    # original R data (no catalog driver reads .rda) hold the same values. Any other
    # uncovered file is an error.
    def site(path: str) -> str | None:
        m = re.fullmatch(r"series/(?:oisst|sst)_(\w+)\.(?:nc|csv|rda)", path)
        return m.group(1) if m else None

    covered_sites = {site(p) for p in covered} - {None}
    alternates = {p for p in missing if site(p) in covered_sites}
    assert missing - alternates == set()
    assert len(alternates) == 2 * len(covered_sites) == 6


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_urlpath_points_at_the_sample_files_in_the_cache(name: str) -> None:
    source = ENTRIES[name]
    urlpath = source["args"]["urlpath"]
    assert urlpath.startswith(SAMPLE_PREFIX)
    assert [urlpath.removeprefix(SAMPLE_PREFIX)] == source["metadata"]["sample"]


@pytest.mark.parametrize("name", sorted(n for n, s in ENTRIES.items() if s["driver"] == "netcdf"))
def test_netcdf4_files_name_their_engine(name: str) -> None:
    """intake 2's netcdf driver assumes NetCDF3 (scipy) unless the entry names an engine."""
    paths = sample_data.fetch_matching(ENTRIES[name]["metadata"]["sample"][0])
    is_hdf5 = paths[0].read_bytes()[:4] == b"\x89HDF"
    engine = (ENTRIES[name]["args"].get("xarray_kwargs") or {}).get("engine")
    assert (engine is not None) == is_hdf5, f"{name}: HDF5 file {is_hdf5}, engine {engine}"


# -- metadata against the data --------------------------------------------------------

LON_UNITS = {"degrees_east", "degree_east", "degrees_e", "degree_e"}
LAT_UNITS = {"degrees_north", "degree_north", "degrees_n", "degree_n"}
METRES = {"m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0,
          "cm": 0.01, "centimeter": 0.01, "centimeters": 0.01, "centimetre": 0.01,
          "centimetres": 0.01}


def open_plain(source: dict[str, Any], paths: list[Path]) -> xr.Dataset:
    """The entry's data as plain xarray (or pandas for CSV) reads them."""
    args = source["args"]
    if source["driver"] == "csv":
        table = source["metadata"]["table"]
        assert len(paths) == 1
        frame = pd.read_csv(paths[0], **table.get("csv_kwargs", {}))
        cols = table["datetime_columns"]
        index = pd.to_datetime(frame[cols].astype(str).agg(" ".join, axis=1),
                               format=table["datetime_format"])
        frame = frame.drop(columns=cols).rename(columns=table["rename"])
        frame.index = pd.Index(index, name=table["index_name"])
        ds = xr.Dataset.from_dataframe(frame)
        for var, attrs in table.get("attrs", {}).items():
            ds[var].attrs.update(attrs)
        return ds
    kwargs = dict(args.get("xarray_kwargs") or {})
    if len(paths) == 1:
        return xr.open_dataset(paths[0], **kwargs)
    return xr.open_mfdataset(paths, combine=args.get("combine", "by_coords"), **kwargs)


def values(da: xr.DataArray) -> np.ndarray:
    return np.asarray(da.values, dtype=float)


def spacing(da: xr.DataArray) -> float:
    """Median step of a coordinate along its widest-stepping axis (0 for scalars)."""
    arr = values(da)
    steps = [np.nanmedian(np.abs(np.diff(arr, axis=ax))) for ax in range(arr.ndim)
             if arr.shape[ax] > 1]
    return float(max(steps)) if steps else 0.0


def by_units(ds: xr.Dataset, units: set[str]) -> list[str]:
    return [v for v in ds.variables if str(ds[v].attrs.get("units", "")).lower() in units]


def bounds_names(ds: xr.Dataset) -> set[str]:
    names = set()
    for var in ds.variables.values():
        for where in (var.attrs, var.encoding):
            if "bounds" in where:
                names.add(where["bounds"])
    return names


def circular_distance(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def check_bbox(md: EntryMetadata, ds: xr.Dataset) -> None:
    lon_vars, lat_vars = by_units(ds, LON_UNITS), by_units(ds, LAT_UNITS)
    if not lat_vars:
        assert md.bbox is None, "bbox declared but the data have no latitude"
        assert not lon_vars
        return
    assert md.bbox is not None, f"data have positions ({lat_vars}) but no bbox is declared"
    is_dsg = md.grid == "dsg"
    bbox = md.bbox

    lats = np.concatenate([values(ds[v]).ravel() for v in lat_vars])
    lats = lats[np.isfinite(lats)]
    tol = 0.01 if is_dsg else max(spacing(ds[v]) for v in lat_vars) / 2
    tol += 1e-3
    assert abs(bbox.south - lats.min()) <= tol, (bbox.south, lats.min(), tol)
    assert abs(bbox.north - lats.max()) <= tol, (bbox.north, lats.max(), tol)

    declared_global = bbox.east - bbox.west >= 360 or (bbox.west, bbox.east) == (-180, 180)
    if not lon_vars:  # zonal means: every longitude
        assert declared_global, "no longitude in the data: zonal means cover all longitudes"
        return
    lons = np.concatenate([values(ds[v]).ravel() for v in lon_vars])
    ring = np.unique(np.mod(lons[np.isfinite(lons)], 360.0))
    gaps = np.diff(np.r_[ring, ring[0] + 360.0])
    tol = 0.01 if is_dsg else max(spacing(ds[v]) for v in lon_vars) / 2
    tol += 1e-3
    if declared_global:
        assert gaps.max() <= 4 * tol, f"global bbox declared but the data leave a {gaps.max()}° gap"
        return
    i = int(np.argmax(gaps))
    west, east = ring[(i + 1) % ring.size], ring[i]  # the smallest arc holding every longitude
    assert circular_distance(bbox.west, west) <= tol, (bbox.west, west, tol)
    assert circular_distance(bbox.east, east) <= tol, (bbox.east, east, tol)
    convention = (0, 360) if lons[np.isfinite(lons)].max() > 180 else (-180, 180)
    for edge in (bbox.west, bbox.east):
        assert convention[0] <= edge <= convention[1], f"{edge} is not in the data's {convention}"


def check_time(md: EntryMetadata, ds: xr.Dataset) -> None:
    skip = bounds_names(ds)
    real, model = [], []
    for name, var in ds.variables.items():
        if name in skip:
            continue
        if np.issubdtype(var.dtype, np.datetime64):
            real.append(var)
        elif var.dtype == object and var.size and hasattr(var.values.ravel()[0], "calendar"):
            model.append(var)
    has_raw_time = any(
        name not in skip and (name.lower() == "time" or var.attrs.get("axis") == "T")
        for name, var in ds.variables.items())
    tr = md.time_range
    if real:
        stamps = np.concatenate([var.values.ravel() for var in real])
        stamps = stamps[~np.isnat(stamps)]
        first = str(stamps.min().astype("datetime64[D]"))
        last = str(stamps.max().astype("datetime64[D]"))
        assert tr is not None, f"data span {first}..{last} but no time_range is declared"
        assert (tr.start, tr.end) == (first, last)
    elif model or has_raw_time:
        assert tr is None or (tr.start is None and tr.end is None), "time has no calendar year"
        assert NO_YEAR_TAGS & set(md.tags), f"tag one of {sorted(NO_YEAR_TAGS)}"
    else:
        assert tr is None, "time_range declared but the data have no time"


def is_vertical(name: str, var: xr.Variable) -> bool:
    attrs = var.attrs
    return (attrs.get("axis") == "Z" or "positive" in attrs
            or attrs.get("standard_name") in ("depth", "height", "altitude")
            or "depth" in str(attrs.get("long_name", "")).lower()
            or name in ("Z", "z", "lev", "depth"))


def check_depth(md: EntryMetadata, ds: xr.Dataset) -> None:
    skip = bounds_names(ds)
    zs = [(n, v) for n, v in ds.variables.items() if n not in skip and is_vertical(n, v)]
    if not zs:
        assert md.depth_range is None, "depth_range declared but the data have no vertical axis"
        return
    assert md.depth_range is not None, f"vertical axis {[n for n, _ in zs]} but no depth_range"
    depths = []
    for name, var in zs:
        units = str(var.attrs.get("units", "")).lower()
        assert units in METRES, f"{name}: unknown vertical units {units!r}"
        z = np.asarray(var.values, dtype=float).ravel() * METRES[units]
        z = z[np.isfinite(z)]
        positive = var.attrs.get("positive")
        if positive == "up" or (positive is None and z.max() <= 0):
            z = -z  # heights (negative below the surface) to depths
        depths.append(z)
    levels = np.unique(np.concatenate(depths))
    if md.grid == "dsg" or levels.size < 2:
        tol_min = tol_max = 0.01
    else:
        tol_min = (levels[1] - levels[0]) / 2
        tol_max = (levels[-1] - levels[-2]) / 2
    assert abs(md.depth_range.min - levels.min()) <= tol_min, (md.depth_range.min, levels.min())
    assert abs(md.depth_range.max - levels.max()) <= tol_max, (md.depth_range.max, levels.max())


@pytest.mark.filterwarnings("ignore:variable 'rowsize' has multiple fill values")  # dsg_trajectory
@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_entry_metadata_are_true_to_the_data(name: str) -> None:
    source = ENTRIES[name]
    md = EntryMetadata.model_validate(source["metadata"])
    paths = [p for pattern in md.sample for p in sample_data.fetch_matching(pattern)]
    ds = open_plain(source, paths)
    try:
        for var in md.variables:
            assert var.name in ds.variables, f"{var.name} not in {sorted(ds.variables)}"
            attrs = ds[var.name].attrs
            assert var.units == attrs.get("units"), (var.name, var.units, attrs.get("units"))
            if "long_name" in attrs:
                assert var.long_name == attrs["long_name"], var.name
            if "standard_name" in attrs:
                assert var.standard_name == attrs["standard_name"], var.name
        check_bbox(md, ds)
        check_time(md, ds)
        check_depth(md, ds)
    finally:
        ds.close()


def test_cobe_sst2_is_sixty_years_of_monthly_fields() -> None:
    source = ENTRIES["cobe_sst2"]
    paths = sample_data.fetch_matching(source["metadata"]["sample"][0])
    assert len(paths) == 60
    with open_plain(source, paths) as ds:
        assert ds.sizes == {"time": 720, "lat": 180, "lon": 360}
        assert bool(ds.time.to_index().is_monotonic_increasing)


# -- the same files through intake and oceandata --------------------------------------

@pytest.fixture
def default_cache(monkeypatch: pytest.MonkeyPatch):
    """Settings with the checkout's default cache (``<repo>/data/sample``, gitignored)."""
    monkeypatch.delenv("OCEANDATA_SAMPLE_CACHE", raising=False)
    settings = get_settings(reload=True)
    if settings.sample_cache != REPO / "data" / "sample":
        pytest.skip("not running from a source checkout")
    yield settings
    monkeypatch.undo()
    get_settings(reload=True)


def test_intake_opens_the_tree_and_pop_surface(default_cache) -> None:
    intake = pytest.importorskip("intake")
    pytest.importorskip("intake_xarray")
    sample_data.fetch_matching(ENTRIES["pop_surface"]["metadata"]["sample"][0])
    cat = intake.open_catalog(str(ROOT))
    assert list(cat) == ["gridded", "series", "dsg"]
    assert set(cat.gridded) | set(cat.series) | set(cat.dsg) == set(ENTRIES)
    ds = cat.gridded.pop_surface.to_dask()
    assert {"t", "urot", "vrot"} <= set(ds.data_vars)
    assert ds.t.attrs["units"] == "degC" and ds.sizes == {"nlat": 384, "nlon": 320}


def test_oceandata_reads_the_same_tree() -> None:
    from oceandata.catalog import open_catalog

    cat = open_catalog(ROOT)
    assert sorted(cat) == sorted(ENTRIES)
    assert list(cat.children) == ["gridded", "series", "dsg"]
    assert sorted(cat.search(standard_name="sea_surface_temperature")) == sorted(
        ["cobe_sst2", "dsg_timeseries", "oisst_med", "oisst_nw_atl", "oisst_wa",
         "sst_ndjfm_anom", "str_sst_climatology", "tos_bipolar"])


def test_foam_time_is_decoded_with_the_360_day_calendar_by_oceandata() -> None:
    from oceandata.catalog import open_catalog

    ds = open_catalog(ROOT).entry("foam_ocean").to_dask()
    assert ds.time.dtype == object, f"time left undecoded as {ds.time.dtype}"
    first = ds.time.values[0]
    assert first.calendar == "360_day"
    assert (first.year, first.month, first.day) == (999, 2, 1)
