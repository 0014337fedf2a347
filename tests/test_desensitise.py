"""Desensitised public copies (``oceandata publish``), checked on the OUTPUT.

The source is the real COBE-SST2 1950 file (with a second field, its departure from the
1950 mean, so that a variable can be dropped), ingested into an Icechunk store and made
restricted in a test catalog. The real ``oceandata publish`` command makes the copy; the
tests then open the copy with icechunk and xarray directly and check each property with
plain numpy and shapely, never with the code that made it:

- no cell finer than ``min_cell`` (``np.diff`` of the output coordinates);
- every output grid point inside an exclusion polygon is missing (shapely
  ``Polygon.contains(Point)`` over every point, in both longitude conventions), and every
  other value is the mean of its source block without the excluded points;
- coordinates exactly rounded (``np.round(c, N) == c``);
- no time after the cutoff (the upper time bound, where the data have bounds);
- dropped variables absent;
- the commit records the source's snapshot and the profile; the registered entry opens
  as open data and cites the source; bad profiles and refusals are one line, exit 2.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import dask
import icechunk
import numpy as np
import pytest
import shapely
import xarray as xr
import yaml
from shapely.geometry import Point, Polygon

import oceandata
from oceandata.catalog import open_catalog
from oceandata.errors import NotAuthorized

OCEANDATA = [sys.executable, "-m", "oceandata.cli"]
HUB_ENV = ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "JUPYTERHUB_HOST",
           "JUPYTERHUB_BASE_URL", "JUPYTERHUB_USER", "OCEANDATA_ALLOC_URL", "OCEANDATA_TOKEN",
           "OCEANDATA_CATALOG", "OCEANDATA_GROUPS", "OCEANDATA_GOVERNANCE__AUDIT_URL",
           "OCEANDATA_GOVERNANCE__NEGATIVE_LIST")

#: the East China Sea coast, in 0..360 longitudes; vertices off the 0.5-degree grid lines
RING = [[117.2, 22.3], [123.7, 24.1], [126.3, 33.2], [121.8, 40.7], [117.2, 38.9]]
#: west of the antimeridian's far side, in -180..180 longitudes (the data use 0..360)
DATELINE = [[-179.2, -12.3], [-165.3, -12.3], [-165.3, 6.7], [-179.2, 6.7], [-179.2, -12.3]]
NOW = "1950-10-20"
MIN_CELL, DECIMALS, DELAY = 2.5, 1, 60

CATALOG = """\
metadata: {{version: 1, title: restricted test data}}
sources:
{entries}
"""
ENTRY = """\
  {name}:
    driver: {driver}
    description: {description}
    args: {{urlpath: "{path}", chunks: {{}}{extra}}}
    metadata:
      title: {title}
      variables: [{{name: {var}}}]
      grid: regular
      provider: JMA/MRI via NOAA PSL
      license: restricted test copy
      citation: Hirahara et al. 2014, J. Climate 27, 57-75
      classification:
        category: reanalysis
        grade: {grade}
        rationale: a restricted copy for the desensitisation tests
        owner: data services unit
        release: restricted
      access: {{groups: [partners]}}
"""

PROFILES = {
    "profiles": {
        "coastal": {"description": "coastal zones masked, 2.5-degree cells",
                    "min_cell": MIN_CELL,
                    "exclude": [{"name": "East China Sea coast", "ring": RING},
                                {"geojson": "dateline.geojson"}],
                    "round": DECIMALS, "delay_days": DELAY, "drop": ["sst_anomaly"]},
        "positions": {"round": 2},
        "winter_delay": {"delay_days": 10},
        "too_fine": {"min_cell": 0.5},
        "idle": {"round": 1},
        "merging": {"round": 0},
    }
}
BAD_PROFILES = {
    "bad_key": {"profiles": {"coastal": {"min_cel": 2.0}}},
    "negative_cell": {"profiles": {"coastal": {"min_cell": -1.0}}},
}


def repo_of(path: Path) -> icechunk.Repository:
    return icechunk.Repository.open(icechunk.local_filesystem_storage(str(path)))


def open_output(path: Path) -> xr.Dataset:
    """The copy as icechunk and xarray read it, without oceandata."""
    session = repo_of(path).readonly_session(branch="main")
    return xr.open_zarr(session.store, consolidated=False).load()


def env(base: Path, groups: str = "partners") -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in HUB_ENV}
    out.update(OCEANDATA_GROUPS=groups, OCEANDATA_DATA_DIR=str(base / "data"))
    return out


def publish_args(base: Path, entry: str, profile: str, to: str, *extra: str) -> list[str]:
    return [*OCEANDATA, "publish", entry, "--profile", profile, "--to", str(base / to),
            "--source-catalog", str(base / "restricted.yaml"),
            "--profiles", str(base / "profiles.yaml"), "--catalog", str(base / "public.yaml"),
            "--now", NOW, *extra]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sample) -> dict:
    """The restricted sources, the profiles, and one real ``oceandata publish`` run."""
    from oceandata.ingest import ingest

    base = tmp_path_factory.mktemp("desens")
    cobe = xr.open_dataset(sample("gridded/cobe-sst2/year1950.nc"))
    cobe["sst_anomaly"] = (cobe.sst - cobe.sst.mean("time")).astype(np.float32)
    cobe["sst_anomaly"].attrs = {"long_name": "departure from the 1950 mean", "units": "degC"}
    cobe.to_netcdf(base / "cobe1950.nc")
    ingest([base / "cobe1950.nc"], base / "secret.icechunk", name="secret", check=False)
    entries = [
        ENTRY.format(name="secret_sst", driver="icechunk", description="COBE 1950, restricted",
                     path=base / "secret.icechunk", extra="", title="Restricted SST 1950",
                     var="sst", grade="important"),
        ENTRY.format(name="core_sst", driver="icechunk", description="the same, graded core",
                     path=base / "secret.icechunk", extra="", title="Core SST 1950",
                     var="sst", grade="core"),
        ENTRY.format(name="relief", driver="netcdf", description="ETOPO20, restricted",
                     path=sample("gridded/etopo20.cdf"), extra="", title="Restricted relief",
                     var="ROSE", grade="important"),
        ENTRY.format(name="winters", driver="netcdf", description="NDJFM SST, restricted",
                     path=sample("gridded/sst_ndjfm_anom.nc"), extra="",
                     title="Restricted winters", var="sst", grade="important"),
    ]
    (base / "restricted.yaml").write_text(CATALOG.format(entries="".join(entries)))
    (base / "dateline.geojson").write_text(json.dumps({
        "type": "FeatureCollection", "features": [{
            "type": "Feature", "properties": {"name": "dateline"},
            "geometry": {"type": "Polygon", "coordinates": [DATELINE]}}]}))
    (base / "profiles.yaml").write_text(yaml.safe_dump(PROFILES, sort_keys=False))
    for name, doc in BAD_PROFILES.items():
        (base / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    run = subprocess.run(publish_args(base, "secret_sst", "coastal", "public.icechunk",
                                      "--name", "sst_public"),
                         capture_output=True, text=True, env=env(base), timeout=600)
    assert run.returncode == 0, run.stderr
    return {"base": base, "run": run, "source": cobe, "out": open_output(
        base / "public.icechunk")}


# ------------------------------------------------------------------ properties of the copy


def test_no_cell_is_finer_than_min_cell(world) -> None:
    out = world["out"]
    for name in ("lat", "lon"):
        steps = np.diff(out[name].values)
        assert steps.size > 10
        assert np.all(np.abs(steps) >= MIN_CELL - 1e-6), (name, np.abs(steps).min())
        assert np.all(steps > 0) or np.all(steps < 0)  # still a grid, in one direction


def _zones() -> list[Polygon]:
    return [Polygon(RING), Polygon(DATELINE)]


def _inside_zones(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """(lat, lon) grid points inside a zone by shapely, the zones taken in either
    longitude convention."""
    inside = np.zeros((lat.size, lon.size), dtype=bool)
    for i, y in enumerate(lat):
        for j, x in enumerate(lon):
            inside[i, j] = any(zone.contains(Point(x + shift, y)) for zone in _zones()
                               for shift in (0.0, -360.0, 360.0))
    return inside


def test_every_point_in_an_exclusion_zone_is_missing(world) -> None:
    out = world["out"]
    inside = _inside_zones(out.lon.values, out.lat.values)
    assert inside.sum() >= 10, "the zones must cover published points for the test to mean much"
    sst = out.sst.values  # time, lat, lon
    assert np.isnan(sst[:, inside]).all()
    assert np.isfinite(sst[:, ~inside]).any()


def test_other_cells_are_block_means_without_the_excluded_points(world) -> None:
    """No value from an exclusion zone reaches a coarse cell: each published value is the
    mean of its 3x3 source block over the points outside every polygon, and the only
    cells missing beyond the source's own gaps are the ones inside a zone."""
    src, out = world["source"], world["out"]
    keep = src.time.values <= np.datetime64(NOW) - np.timedelta64(DELAY, "D")
    sst = src.sst.values[keep].astype(np.float64)
    lon2, lat2 = np.meshgrid(src.lon.values.astype(float), src.lat.values.astype(float))
    for zone in _zones():  # the same predicate as Polygon.contains(Point), over arrays
        for shift in (0.0, -360.0, 360.0):
            sst[:, shapely.contains_xy(zone, lon2 + shift, lat2)] = np.nan
    factor = 3  # the smallest whole factor of the 1-degree grid giving cells >= 2.5 degrees
    t, ny, nx = sst.shape
    blocks = sst[:, : ny // factor * factor, : nx // factor * factor].reshape(
        t, ny // factor, factor, nx // factor, factor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-land blocks: mean of nothing
        expected = np.nanmean(blocks, axis=(2, 4))
    got = out.sst.values.astype(np.float64)
    assert got.shape == expected.shape
    published = np.isfinite(got)
    np.testing.assert_allclose(got[published], expected[published], rtol=1e-5, atol=1e-6)
    assert not (published & np.isnan(expected)).any()
    withheld = (np.isfinite(expected) & ~published).any(axis=0)
    assert withheld.any()
    assert (withheld <= _inside_zones(out.lon.values, out.lat.values)).all()


def test_coordinates_are_exactly_rounded(world) -> None:
    out = world["out"]
    for name in ("lat", "lon"):
        values = out[name].values
        assert np.array_equal(np.round(values, DECIMALS), values)


def test_no_time_after_the_cutoff(world) -> None:
    cutoff = np.datetime64(NOW) - np.timedelta64(DELAY, "D")
    times = world["out"].time.values
    assert times.size and (times <= cutoff).all()
    assert times.size == int((world["source"].time.values <= cutoff).sum())  # nothing else lost


def test_dropped_variables_are_absent(world) -> None:
    out = world["out"]
    assert "sst_anomaly" not in out.variables and "sst" in out.data_vars


def test_commit_records_the_source_version_and_the_profile(world) -> None:
    base = world["base"]
    source_snapshot = repo_of(base / "secret.icechunk").lookup_branch("main")
    commits = [s for s in repo_of(base / "public.icechunk").ancestry(branch="main")
               if s.parent_id is not None]  # the repository's initial empty commit aside
    assert len(commits) == 1
    meta = commits[0].metadata
    assert meta["derived_from"] == {"entry": "secret_sst", "version": source_snapshot,
                                    "profile": "coastal"}
    profile = meta["publish"]["profile"]
    declared = PROFILES["profiles"]["coastal"]
    assert profile["name"] == "coastal"
    for key in ("min_cell", "round", "delay_days", "drop", "description"):
        assert profile["content"][key] == declared[key]
    assert profile["content"]["exclude"][0]["ring"] == RING
    geojson = base / "dateline.geojson"
    assert profile["content"]["exclude"][1]["sha256"] == \
        hashlib.sha256(geojson.read_bytes()).hexdigest()
    canonical = json.dumps(profile["content"], sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    assert profile["sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert source_snapshot in commits[0].message
    assert not list(base.glob(".public.icechunk.tmp-*"))


def test_store_verifies_and_the_publish_is_audited(world) -> None:
    from oceandata.governance import audit

    base = world["base"]
    check = subprocess.run([*OCEANDATA, "store", "verify", str(base / "public.icechunk")],
                           capture_output=True, text=True, env=env(base), timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    records = audit.read(action="store.publish",
                         url=f"sqlite:///{base / 'data' / 'audit.sqlite'}")
    assert [r["target"] for r in records] == ["dataset:sst_public"]
    detail = records[0]["detail"]
    assert detail["source"] == "secret_sst" and detail["profile"] == "coastal"
    assert detail["version"] == repo_of(base / "secret.icechunk").lookup_branch("main")


def test_registered_entry_opens_as_open_data_and_cites_the_source(
        world, monkeypatch: pytest.MonkeyPatch) -> None:
    base = world["base"]
    for name in HUB_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OCEANDATA_GROUPS", "scientists")  # not a grantee of the source
    monkeypatch.setenv("OCEANDATA_DATA_DIR", str(base / "data"))
    with pytest.raises(NotAuthorized):
        open_catalog(base / "restricted.yaml").entry("secret_sst").to_dask()
    ds = oceandata.open_dataset("sst_public", catalog=base / "public.yaml")
    np.testing.assert_array_equal(ds.sst.values, world["out"].sst.values)
    entry = open_catalog(base / "public.yaml").entry("sst_public")
    cls = entry.metadata.classification
    version = repo_of(base / "secret.icechunk").lookup_branch("main")
    assert (cls.category, cls.grade, cls.release) == ("derived", "general", "open")
    assert cls.owner == "data services unit"
    assert cls.derived_from is not None
    assert (cls.derived_from.entry, cls.derived_from.version, cls.derived_from.profile) == \
        ("secret_sst", version, "coastal")
    assert entry.metadata.title == "Restricted SST 1950 (desensitised)"
    assert "secret_sst" in entry.metadata.citation and version in entry.metadata.citation
    assert "Hirahara et al. 2014" in entry.metadata.citation


# ------------------------------------------------------------------ other sources, in-process


def test_rounding_moves_positions_and_files_are_versioned_by_sha256(
        world, sample, monkeypatch: pytest.MonkeyPatch) -> None:
    from oceandata.governance.desensitise import publish

    base = world["base"]
    monkeypatch.setenv("OCEANDATA_GROUPS", "partners")
    monkeypatch.setenv("OCEANDATA_DATA_DIR", str(base / "data"))
    result = publish("relief", profile="positions", to=base / "relief.icechunk",
                     catalog=base / "restricted.yaml", register_in=base / "public.yaml",
                     profiles=base / "profiles.yaml")
    path = sample("gridded/etopo20.cdf")
    assert result.version == "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
    out, src = open_output(base / "relief.icechunk"), xr.open_dataset(path)
    for name in ("ETOPO20Y", "ETOPO20X1_1081"):
        values = out[name].values
        assert np.array_equal(np.round(values, 2), values)
        assert not np.array_equal(values, src[name].values)  # positions did move
        assert np.abs(values - src[name].values).max() <= 0.005 + 1e-9
    np.testing.assert_array_equal(out.ROSE.values, src.ROSE.values)  # values untouched


def test_delay_uses_the_upper_time_bound(world, monkeypatch: pytest.MonkeyPatch) -> None:
    """A winter mean dated 15 January ends on 1 April: with a cutoff in late March it is
    newer than the cutoff and must not be published, although its time stamp is older."""
    from oceandata.governance.desensitise import publish

    base = world["base"]
    monkeypatch.setenv("OCEANDATA_GROUPS", "partners")
    monkeypatch.setenv("OCEANDATA_DATA_DIR", str(base / "data"))
    publish("winters", profile="winter_delay", to=base / "winters.icechunk",
            catalog=base / "restricted.yaml", register_in=base / "public.yaml",
            profiles=base / "profiles.yaml", now=dt.datetime(1990, 4, 5, tzinfo=dt.UTC))
    cutoff = np.datetime64("1990-03-26")
    out = open_output(base / "winters.icechunk")
    assert (out.bounds_time.values <= cutoff).all()
    assert (out.time.values <= cutoff).all()
    assert out.time.values[-1] < np.datetime64("1989-03-01")  # the 1990 winter is gone


def test_applying_a_profile_reads_no_data(world, monkeypatch: pytest.MonkeyPatch) -> None:
    from oceandata.governance.desensitise import apply_profile, load_profile
    from oceandata.ingest import open_store

    def refuse(*args, **kwargs):
        raise AssertionError("apply_profile computed data")

    base = world["base"]
    ds = open_store(base / "secret.icechunk")
    profile = load_profile("coastal", base / "profiles.yaml")
    with dask.config.set(scheduler=refuse):
        applied = apply_profile(ds, profile, name="coastal", entry="secret_sst",
                                now=dt.datetime(1950, 10, 20))
    assert applied.dataset.sst.chunks is not None


# ------------------------------------------------------------------ refusals, through the CLI


CASES = {
    # name: (entry, profile, profiles file or None, groups, expected phrases)
    "unknown key": ("secret_sst", "coastal", "bad_key.yaml", "partners",
                    ["profile 'coastal'", "unknown key 'min_cel'", "valid keys: ",
                     "min_cell"]),
    "negative min_cell": ("secret_sst", "coastal", "negative_cell.yaml", "partners",
                          ["profile 'coastal'", "min_cell", "greater than 0"]),
    "unknown profile": ("secret_sst", "nosuch", None, "partners",
                        ["no profile 'nosuch'", "profiles: coastal, positions"]),
    "min_cell finer than the data": ("secret_sst", "too_fine", None, "partners",
                                     ["profile 'too_fine'", "min_cell 0.5° is finer",
                                      "give min_cell >= 1"]),
    "rounding merges points": ("secret_sst", "merging", None, "partners",
                               ["profile 'merging'", "round 0 merges grid points"]),
    "changes nothing": ("secret_sst", "idle", None, "partners",
                        ["profile 'idle' changes nothing", "source's resolution"]),
    "core grade": ("core_sst", "coastal", None, "partners",
                   ["'core_sst' is graded core", "never published"]),
    "not granted": ("secret_sst", "coastal", None, "scientists",
                    ["'secret_sst' is restricted"]),
    "store locked": ("secret_sst", "coastal", None, "partners", ["locked.icechunk"]),
}


@pytest.fixture(scope="module")
def refusals(world) -> dict[str, tuple[subprocess.CompletedProcess[str], Path]]:
    """Every bad case run as a real ``oceandata publish`` process, all at once (the lock
    case while this process holds the target's store lock)."""
    from oceandata.governance.locks import store_lock

    base = world["base"]
    procs = {}
    with store_lock(base / "locked.icechunk", command="test holder"):
        for case, (entry, profile, file, groups, _) in CASES.items():
            to = "locked.icechunk" if case == "store locked" else \
                f"refused-{case.replace(' ', '_')}.icechunk"
            args = publish_args(base, entry, profile, to, "--name", f"x_{len(procs)}")
            if file is not None:
                args[args.index("--profiles") + 1] = str(base / file)
            procs[case] = (subprocess.Popen(args, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True,
                                            env=env(base, groups)), base / to)
        done = {}
        for case, (proc, to) in procs.items():
            out, err = proc.communicate(timeout=600)
            done[case] = (subprocess.CompletedProcess(proc.args, proc.returncode, out, err), to)
    return done


@pytest.mark.parametrize("case", sorted(CASES))
def test_refusals_are_one_line_exit_2_and_write_nothing(refusals, world, case: str) -> None:
    run, target = refusals[case]
    assert run.returncode == 2, (run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr
    for phrase in CASES[case][4]:
        assert phrase in lines[0], (phrase, lines[0])
    assert not target.exists()
    assert not list(target.parent.glob(f".{target.name}.tmp-*"))
    public = yaml.safe_load((world["base"] / "public.yaml").read_text())
    assert not [n for n in public["sources"] if n.startswith("x_")]


def test_sample_profiles_file_is_valid() -> None:
    """The shipped catalogs/profiles.yaml loads, and each zone is a valid polygon."""
    from oceandata.governance.desensitise import default_profiles_path, load_profile, load_profiles

    path = Path(__file__).resolve().parents[1] / "catalogs" / "profiles.yaml"
    if "OCEANDATA_CATALOG" not in os.environ:  # a checkout's root catalog: catalogs/ocean.yaml
        assert default_profiles_path() == path
    for name in load_profiles(path).profiles:
        load_profile(name, path)
