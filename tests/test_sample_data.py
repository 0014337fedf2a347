"""The sample-data registry: names, checksums against an independent list, fetch order, errors.

No test touches the network: downloads are exercised with pooch's own hash check on a
local copy standing in for the server.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pooch
import pytest

from oceandata import sample_data
from oceandata.config import get_settings
from oceandata.errors import SampleDataError

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

needs_shared = pytest.mark.skipif(not (SHARED / "SHA256SUMS").exists(),
                                  reason=f"the shared sample folder {SHARED} is not here")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """``set_env(sample_data=..., cache=...)`` then reload the settings; restored after."""

    def set_env(*, sample_data: Path | None, cache: Path | None = None) -> Path:
        cache = cache or tmp_path / "cache"
        if sample_data is None:
            monkeypatch.delenv("OCEANDATA_SAMPLE_DATA", raising=False)
        else:
            monkeypatch.setenv("OCEANDATA_SAMPLE_DATA", str(sample_data))
        monkeypatch.setenv("OCEANDATA_SAMPLE_CACHE", str(cache))
        get_settings(reload=True)
        return cache

    yield set_env
    monkeypatch.undo()
    get_settings(reload=True)


@pytest.fixture
def cache(settings_env) -> Path:
    """An empty cache fed from the shared sample folder."""
    if not SHARED.is_dir():
        pytest.skip(f"the shared sample folder {SHARED} is not here")
    return settings_env(sample_data=SHARED)


# -- the registry itself ----------------------------------------------------------------

@needs_shared
def test_every_row_matches_the_independent_checksum_list() -> None:
    sums = {}
    for line in (SHARED / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split(maxsplit=1)
        sums[path.lstrip("*")] = digest
    ours = {sample_data.info(n).path: sample_data.info(n).sha256 for n in sample_data.names()}
    assert ours == sums


@needs_shared
def test_file_count_and_total_size_match_the_manifest() -> None:
    manifest = (SHARED / "MANIFEST.md").read_text()
    count = int(re.search(r"Total: about (\d+) MB, (\d+) files", manifest).group(2))
    total_mb = int(re.search(r"Total: about (\d+) MB", manifest).group(1))
    assert len(sample_data.names()) == len(sample_data.registry_paths()) == count == 303
    size = sum(sample_data.info(n).size for n in sample_data.names())
    assert abs(size / 1e6 - total_mb) < 0.05 * total_mb  # "about": 121 MB counted exactly


@needs_shared
def test_sizes_match_the_files() -> None:
    for name in sample_data.names():
        entry = sample_data.info(name)
        assert (SHARED / entry.path).stat().st_size == entry.size, name


@needs_shared
def test_the_script_regenerates_the_committed_registry(tmp_path: Path) -> None:
    out = tmp_path / "sample_data.tsv"
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_sample_registry.py"),
                    str(SHARED / "REGISTRY.tsv"), "-o", str(out)], check=True,
                   capture_output=True)
    assert out.read_text() == sample_data.REGISTRY_FILE.read_text()


def test_names_are_unique_snake_case_and_predictable() -> None:
    names = sample_data.names()
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in names)
    expected = {
        "cobe_sst2_1950": "gridded/cobe-sst2/year1950.nc",
        "cobe_sst2_2009": "gridded/cobe-sst2/year2009.nc",
        "str_sst_climatology": "gridded/sstdata_netcdf.nc",
        "pop_surface": "gridded/pop.nc",
        "phc2_ts_zonal": "gridded/za_PHC2_T_S_gx1v3.nc",
        "dsg_timeseries": "dsg/dsg_timeseries_example.nc",
        "oisst_nw_atl_nc": "series/oisst_NW_Atl.nc",
        "oisst_wa_rda": "series/sst_WA.rda",
        "tide_point_reyes": "series/CO-OPS_9415020_wl.csv",
        "argo_index_prof": "argo/gdac/ar_index_global_prof.txt",
        "argo_2901623_prof": "argo/gdac/dac/nmdis/2901623/2901623_prof.nc",
        "argo_3902131_sprof": "argo/gdac/dac/coriolis/3902131/3902131_Sprof.nc",
        "argo_d2901623_000d": "argo/gdac/dac/nmdis/2901623/profiles/D2901623_000D.nc",
    }
    for name, path in expected.items():
        assert sample_data.info(name).path == path
        assert sample_data.info(path).name == name


def test_derived_files_have_no_url_and_others_are_pinned() -> None:
    derived = [n for n in sample_data.names() if sample_data.info(n).url is None]
    assert sorted(derived) == sorted(f"oisst_{s}_{k}" for s in ("wa", "med", "nw_atl")
                                     for k in ("nc", "csv"))
    for name in set(sample_data.names()) - set(derived):
        url = sample_data.info(name).url
        assert url.startswith("https://raw.githubusercontent.com/")
        assert re.search(r"/[0-9a-f]{40}/", url), f"{name}: URL not pinned to a commit"


def test_info_is_frozen() -> None:
    entry = sample_data.info("pop_surface")
    with pytest.raises(AttributeError):
        entry.size = 0  # type: ignore[misc]


# -- fetch ------------------------------------------------------------------------------

def test_fetch_links_the_shared_file_into_the_cache(cache: Path) -> None:
    path = sample_data.fetch("pop_surface")
    assert path == cache / "gridded" / "pop.nc"
    assert path.is_symlink() and path.resolve() == (SHARED / "gridded" / "pop.nc").resolve()
    assert sample_data.fetch("gridded/pop.nc") == path
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".part")]


def test_fetch_copies_when_links_are_impossible(cache: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(*args, **kwargs):
        raise OSError("symbolic links are not supported here")

    monkeypatch.setattr(os, "symlink", no_links)
    path = sample_data.fetch("etopo60")
    assert not path.is_symlink()
    assert sha256(path) == sample_data.info("etopo60").sha256


def test_hashes_are_memoised_per_process(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sample_data.fetch("basin_mask")
    calls = []
    real = pooch.file_hash
    monkeypatch.setattr(pooch, "file_hash", lambda *a, **k: calls.append(a) or real(*a, **k))
    sample_data.fetch("basin_mask")
    assert calls == []
    sample_data.fetch("basin_mask", force=True)
    assert len(calls) == 1


def test_a_tampered_copy_is_refused_naming_the_file(settings_env, tmp_path: Path) -> None:
    if not SHARED.is_dir():
        pytest.skip("no shared sample folder")
    bad_root = tmp_path / "tampered"
    bad = bad_root / "gridded" / "pop.nc"
    bad.parent.mkdir(parents=True)
    data = bytearray((SHARED / "gridded" / "pop.nc").read_bytes())
    data[-1] ^= 0xFF
    bad.write_bytes(bytes(data))
    cache = settings_env(sample_data=bad_root)
    expected = sample_data.info("pop_surface").sha256
    with pytest.raises(SampleDataError) as info:
        sample_data.fetch("pop_surface")
    message = str(info.value)
    assert "pop_surface" in message and "gridded/pop.nc" in message and str(bad) in message
    assert expected in message and sha256(bad) in message
    assert not (cache / "gridded" / "pop.nc").exists()


def test_a_stale_cache_copy_is_replaced(cache: Path) -> None:
    stale = cache / "gridded" / "etopo20.cdf"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"not the file")
    path = sample_data.fetch("etopo20")
    assert path == stale and path.is_symlink()
    assert sha256(path) == sample_data.info("etopo20").sha256


def test_a_dangling_cache_link_is_replaced(cache: Path, tmp_path: Path) -> None:
    link = cache / "dsg" / "dsg_point_example.nc"
    link.parent.mkdir(parents=True)
    link.symlink_to(tmp_path / "gone.nc")
    assert sample_data.fetch("dsg_point").resolve() == (SHARED / link.relative_to(cache)).resolve()


def test_the_cache_is_used_without_the_shared_folder(cache: Path, settings_env) -> None:
    path = sample_data.fetch("oisst_wa_nc")
    shutil.copyfile(path, path.with_suffix(".tmp"))
    path.unlink()
    path.with_suffix(".tmp").rename(path)  # a real copy, as if downloaded earlier
    settings_env(sample_data=None, cache=cache)
    assert sample_data.fetch("oisst_wa_nc") == path


def test_a_derived_file_without_a_local_copy_has_no_url(settings_env, tmp_path: Path) -> None:
    settings_env(sample_data=None)
    with pytest.raises(SampleDataError, match=r"oisst_wa_nc.*no public URL.*OCEANDATA_SAMPLE_DATA"):
        sample_data.fetch("oisst_wa_nc")
    empty = tmp_path / "empty"
    empty.mkdir()
    settings_env(sample_data=empty)
    with pytest.raises(SampleDataError, match=rf"no public URL.*{empty}.*series/oisst_WA.csv"):
        sample_data.fetch("series/oisst_WA.csv")


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(SampleDataError, match=r"'pop_surfase'.*Did you mean: pop_surface"):
        sample_data.fetch("pop_surfase")
    with pytest.raises(SampleDataError, match=r"Did you mean: .*gridded/etopo20.cdf"):
        sample_data.info("gridded/etopo20.nc")


# -- downloads (pooch with its real hash check; a local file stands in for the server) ----

def _fake_server(payload: bytes | None, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make pooch.retrieve write *payload* (None: the true file) and check it like pooch."""
    urls: list[str] = []

    def retrieve(url, known_hash, fname, path, progressbar=False):
        urls.append(url)
        name = next(n for n in sample_data.names() if sample_data.info(n).url == url)
        data = payload if payload is not None else (SHARED / sample_data.info(name).path
                                                    ).read_bytes()
        out = Path(path) / fname
        out.write_bytes(data)
        try:
            pooch.hashes.hash_matches(str(out), known_hash, strict=True, source=url)
        except ValueError:
            out.unlink()
            raise
        return str(out)

    monkeypatch.setattr(pooch, "retrieve", retrieve)
    return urls


def test_download_writes_under_a_temporary_name_then_renames(
        settings_env, monkeypatch: pytest.MonkeyPatch) -> None:
    if not SHARED.is_dir():
        pytest.skip("no shared sample folder")
    cache = settings_env(sample_data=None)
    stale = cache / "gridded" / "foam.ocean.nc"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a file")
    urls = _fake_server(None, monkeypatch)
    path = sample_data.fetch("foam_ocean")
    assert urls == [sample_data.info("foam_ocean").url]
    assert path == stale and sha256(path) == sample_data.info("foam_ocean").sha256
    assert sorted(p.name for p in path.parent.iterdir()) == ["foam.ocean.nc"]
    assert sample_data.fetch("foam_ocean") == path and len(urls) == 1  # cached now


def test_a_download_with_the_wrong_hash_is_refused(settings_env,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cache = settings_env(sample_data=None)
    _fake_server(b"something else", monkeypatch)
    expected = sample_data.info("etopo60").sha256
    with pytest.raises(SampleDataError) as info:
        sample_data.fetch("etopo60")
    message = str(info.value)
    assert "etopo60" in message and expected in message
    assert hashlib.sha256(b"something else").hexdigest() in message
    assert not (cache / "gridded").exists() or not list((cache / "gridded").iterdir())


def test_a_failed_download_says_what_to_do(settings_env,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    settings_env(sample_data=None)

    def offline(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(SampleDataError, match=r"cannot download .*etopo60.*OCEANDATA_SAMPLE_DATA"):
        sample_data.fetch("etopo60")


# -- several files ------------------------------------------------------------------------

def test_fetch_matching_the_cobe_pattern_returns_sixty_sorted_paths(cache: Path) -> None:
    paths = sample_data.fetch_matching("gridded/cobe-sst2/year*.nc")
    assert len(paths) == 60
    assert paths == sorted(paths)
    assert paths[0] == cache / "gridded" / "cobe-sst2" / "year1950.nc"
    assert all(p.exists() for p in paths)
    assert sample_data.fetch_matching("cobe_sst2_195?") == paths[:10]
    assert sample_data.fetch_matching("gridded/pop.nc") == [cache / "gridded" / "pop.nc"]


def test_fetch_matching_nothing_raises(cache: Path) -> None:
    with pytest.raises(SampleDataError, match=r"no sample file matches 'gridded/\*\.grib'"):
        sample_data.fetch_matching("gridded/*.grib")


def test_fetch_all(cache: Path) -> None:
    paths = sample_data.fetch_all()
    assert len(paths) == 303
    assert [str(p.relative_to(cache)) for p in paths] == sample_data.registry_paths()
    assert all(p.is_file() for p in paths)
