"""Compliance checks of source files (CF and ACDD through the IOOS compliance-checker).

Each expectation starts from a fact read from the real sample file with netCDF4 (an
attribute that is missing, a declared range that the data do not reach), then checks that
the report states it; edited copies in ``tmp_path`` show that a failure appears or
disappears with the attribute behind it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from oceandata.errors import DataError, UsageError
from oceandata.ingest import compliance
from oceandata.ingest.compliance import (
    ComplianceReport,
    check_sources,
    require_no_high_failures,
)

COBE = "gridded/cobe-sst2/year1950.nc"


@pytest.fixture(scope="module")
def cobe(sample) -> Path:
    return sample(COBE)


@pytest.fixture(scope="module")
def cobe_report(cobe) -> ComplianceReport:
    return check_sources([cobe])


def _copy(source: Path, tmp_path: Path, name: str = "copy.nc") -> Path:
    target = tmp_path / name
    shutil.copyfile(source, target)  # follows the sample cache's link
    return target


def _delete_attribute(path: Path, variable: str | None, name: str) -> None:
    with netCDF4.Dataset(path, "a") as nc:
        (nc if variable is None else nc[variable]).delncattr(name)


def _messages(report: ComplianceReport, suite: str, priority: str | None = None) -> list[str]:
    return [m for r in report.results if r.suite.startswith(f"{suite}:")
            for f in r.failures if priority is None or f.priority == priority
            for m in f.messages]


# --------------------------------------------------------------------------- suites


def test_default_suites_are_pinned_versions(cobe_report, cobe) -> None:
    assert cobe_report.suites == ["cf:1.11", "acdd:1.3"]
    assert cobe_report.files == [str(cobe)]
    assert cobe_report.result(cobe, "cf").suite == "cf:1.11"
    assert cobe_report.result(str(cobe), "acdd:1.3").suite == "acdd:1.3"


def test_explicit_version_and_duplicates(cobe) -> None:
    report = check_sources([cobe], suites=["cf:1.6", "CF:1.6"])
    assert report.suites == ["cf:1.6"]
    assert len(report.results) == 1


def test_unknown_suite_lists_the_valid_ones(cobe) -> None:
    with pytest.raises(UsageError, match=r"unknown compliance suite 'cff'.*cf:1\.11") as info:
        check_sources([cobe], suites=["cff"])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad", [[], ["missing.nc"]])
def test_bad_paths_are_usage_errors(tmp_path, bad) -> None:
    paths = [tmp_path / p for p in bad]
    with pytest.raises(UsageError, match="does not exist" if bad else "no source files"):
        check_sources(paths)


def test_folder_is_refused(tmp_path) -> None:
    with pytest.raises(UsageError, match=f"{re.escape(str(tmp_path))}.*not a file"):
        check_sources([tmp_path])


# --------------------------------------------------------------------------- findings


def test_cobe_actual_range_is_a_high_cf_failure(cobe, cobe_report) -> None:
    # Fact: sst declares the range of the whole 1850-2019 record, not of this year.
    with netCDF4.Dataset(cobe) as nc:
        declared = np.asarray(nc["sst"].actual_range, dtype="f8")
        data = nc["sst"][:]
        found = np.array([data.min(), data.max()], dtype="f8")
    assert not np.allclose(declared, found)

    high = [(suite, name, msgs) for _, suite, name, msgs in cobe_report.high_failures
            if suite == "cf:1.11"]
    assert len(high) == 1
    _, name, msgs = high[0]
    assert name == "§2.5 Variables"
    assert any("actual_range" in m and "'sst'" in m for m in msgs)


def test_removing_actual_range_removes_that_failure(cobe, tmp_path) -> None:
    copy = _copy(cobe, tmp_path)
    _delete_attribute(copy, "sst", "actual_range")
    report = check_sources([copy], suites=["cf"])
    assert not any("actual_range" in m for m in _messages(report, "cf"))
    assert report.high_failures == []
    require_no_high_failures(report)  # nothing to raise


def test_cobe_declares_an_older_cf_version(cobe, cobe_report) -> None:
    with netCDF4.Dataset(cobe) as nc:
        assert nc.Conventions == "CF-1.2"
    conventions = [f for f in cobe_report.result(cobe, "cf").failures
                   if any("Conventions" in m for m in f.messages)]
    assert [f.priority for f in conventions] == ["medium"]
    assert "CF-1.11" in conventions[0].messages[0]


def test_cobe_lacks_acdd_discovery_attributes(cobe, cobe_report) -> None:
    with netCDF4.Dataset(cobe) as nc:
        attributes = set(nc.ncattrs())
    missing = {"summary", "keywords"} - attributes
    assert missing == {"summary", "keywords"}
    high = _messages(cobe_report, "acdd", "high")
    for name in missing:
        assert f"{name} not present" in high
    assert "title not present" not in high  # COBE has a title
    assert "title" in attributes


def test_pop_without_global_attributes(sample) -> None:
    pop = sample("gridded/pop.nc")
    with netCDF4.Dataset(pop) as nc:
        assert nc.ncattrs() == []
    report = check_sources([pop])
    assert "§2.6.1 Conventions field is not present" in _messages(report, "cf", "medium")
    assert "title not present" in _messages(report, "acdd", "high")


def test_foam_coordinates_without_standard_names(sample) -> None:
    foam = sample("gridded/foam.ocean.nc")
    with netCDF4.Dataset(foam) as nc:
        lacking = [v for v in ("time", "lat", "lon") if "standard_name" not in nc[v].ncattrs()]
    assert lacking == ["time", "lat", "lon"]
    high = _messages(check_sources([foam], suites=["cf"]), "cf", "high")
    for name in lacking:
        assert any(f"Coordinate variable '{name}' should have standard_name" in m for m in high)


def test_deleting_time_units_adds_failures(cobe, cobe_report, tmp_path) -> None:
    copy = _copy(cobe, tmp_path)
    _delete_attribute(copy, "time", "units")
    report = check_sources([copy])
    before, after = cobe_report.result(cobe, "cf"), report.result(copy, "cf")
    assert len(after.failures) > len(before.failures)
    assert after.count("high") > before.count("high")
    assert after.percent < before.percent
    assert any("time does not have units" in m for m in _messages(report, "cf", "high"))
    assert len(report.high_failures) > len(cobe_report.high_failures)


def test_several_files_in_order(cobe, sample) -> None:
    pop = sample("gridded/pop.nc")
    report = check_sources([pop, cobe], suites=["acdd"])
    assert report.files == [str(pop), str(cobe)]
    assert [r.suite for r in report.results] == ["acdd:1.3", "acdd:1.3"]


# --------------------------------------------------------------------------- scores


def test_scores_add_up(cobe_report) -> None:
    for r in cobe_report.results:
        assert 0 <= r.scored_points < r.possible_points
        lost = sum(f.possible - f.scored for f in r.failures)
        assert lost == r.possible_points - r.scored_points
        assert all(f.messages for f in r.failures)
        weights = [f.weight for f in r.failures]
        assert weights == sorted(weights, reverse=True)  # high priority first


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_scores_match_compliance_checkers_own_report(cobe, cobe_report, tmp_path) -> None:
    from compliance_checker.runner import ComplianceChecker

    out = tmp_path / "cc.json"
    ComplianceChecker.run_checker(str(cobe), ["cf:1.11", "acdd:1.3"], 0, "strict",
                                  output_filename=str(out), output_format="json")
    theirs = json.loads(out.read_text())
    for r in cobe_report.results:
        assert (r.scored_points, r.possible_points) == (
            theirs[r.suite]["scored_points"], theirs[r.suite]["possible_points"])
        for priority in ("high", "medium", "low"):
            assert r.count(priority) == theirs[r.suite][f"{priority}_count"]


# --------------------------------------------------------------------------- report


def test_report_json_round_trips(cobe_report, tmp_path) -> None:
    path = cobe_report.write(tmp_path / "report.json")
    assert path == tmp_path / "report.json" == cobe_report.path
    assert sorted(os.listdir(tmp_path)) == ["report.json"]  # no temporary left
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data == cobe_report.as_dict()
    assert data["high_failures"] == len(cobe_report.high_failures)
    assert ComplianceReport.read(path) == cobe_report
    assert ComplianceReport.from_dict(data) == cobe_report


def test_write_replaces_atomically(cobe_report, tmp_path, monkeypatch) -> None:
    path = tmp_path / "report.json"
    path.write_text("old")

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(compliance.os, "replace", refuse)
    with pytest.raises(DataError, match=r"cannot write compliance report .*report\.json"):
        cobe_report.write(path)
    assert path.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["report.json"]
    monkeypatch.undo()
    cobe_report.write(path)
    assert json.loads(path.read_text())["results"]


def test_write_into_missing_folder(cobe_report, tmp_path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        cobe_report.write(tmp_path / "nope" / "report.json")


def test_read_refuses_other_json(tmp_path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"a": 1}')
    with pytest.raises(DataError, match=r"other\.json.*not a compliance report"):
        ComplianceReport.read(path)


def test_summary_one_line_per_file_and_suite(cobe_report) -> None:
    lines = cobe_report.summary().splitlines()
    assert len(lines) == len(cobe_report.results) == 2
    for line, r in zip(lines, cobe_report.results, strict=True):
        assert line.startswith(f"{r.file}  {r.suite}  {r.scored_points}/{r.possible_points}")
        assert f"{r.count('high')} high" in line


def test_require_no_high_failures_names_everything(cobe_report, cobe, tmp_path) -> None:
    target = tmp_path / "compliance.json"
    with pytest.raises(DataError) as info:
        require_no_high_failures(cobe_report, report_path=target)
    message = str(info.value)
    assert "\n" not in message
    n = len(cobe_report.high_failures)
    assert message.startswith(f"{n} high-priority compliance failures in 1 file ")
    assert f"{cobe} [cf:1.11, acdd:1.3]" in message
    assert "first: '§2.5 Variables' (cf:1.11)" in message
    assert message.endswith(f"full report: {target}")
    assert ComplianceReport.read(target) == cobe_report


# --------------------------------------------------------------------------- bad files


def test_truncated_netcdf4_file_is_a_data_error(cobe, tmp_path) -> None:
    cut = tmp_path / "cut.nc"
    cut.write_bytes(cobe.read_bytes()[: cobe.stat().st_size // 2])
    with pytest.raises(DataError, match=f"{re.escape(str(cut))}: (it is truncated|not readable as NetCDF)") as info:
        check_sources([cut])
    assert "\n" not in str(info.value)


def test_truncated_classic_file_is_a_data_error(sample, tmp_path) -> None:
    pop = sample("gridded/pop.nc")
    cut = tmp_path / "pop_cut.nc"
    cut.write_bytes(pop.read_bytes()[:-1000])
    with netCDF4.Dataset(pop) as nc:
        last = float(nc["lon2d"][-1, -1])  # lon2d is the last variable in the file
    with netCDF4.Dataset(cut) as nc:  # netCDF-C opens the cut file and reads zeros
        assert last != 0 and nc["lon2d"][-1, -1] == 0
    with pytest.raises(DataError, match=f"{re.escape(str(cut))}: it is truncated or corrupt"):
        check_sources([cut])


def test_corrupt_data_is_a_data_error(cobe, tmp_path) -> None:
    data = bytearray(cobe.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 20000] = bytes(20000)  # inside the compressed sst chunks
    bad = tmp_path / "zeroed.nc"
    bad.write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"{re.escape(str(bad))}: its data cannot be decoded"):
        check_sources([bad])


def test_every_unreadable_file_is_named(cobe, tmp_path) -> None:
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"not a netcdf file\n" * 10)
    empty = tmp_path / "empty.nc"
    empty.write_bytes(b"")
    with pytest.raises(DataError) as info:
        check_sources([cobe, junk, empty])
    message = str(info.value)
    assert f"{junk}: not readable as NetCDF" in message
    assert f"also unreadable: {empty}" in message


# --------------------------------------------------------------------------- hygiene


def test_quiet_and_leaves_no_files(cobe, tmp_path, capsys, monkeypatch) -> None:
    copy = _copy(cobe, tmp_path, "year1950.nc")
    monkeypatch.chdir(tmp_path)  # nothing in the working folder either
    report = check_sources([copy])
    assert sorted(os.listdir(tmp_path)) == ["year1950.nc"]
    assert capsys.readouterr().out == ""
    assert report.result(copy, "cf").scored_points > 0


def test_require_no_high_failures_with_a_written_report(cobe_report, tmp_path) -> None:
    fresh = ComplianceReport.from_dict(cobe_report.as_dict())  # never written
    with pytest.raises(DataError, match=r"full report: not written \(ComplianceReport\.write"):
        require_no_high_failures(fresh)
    target = fresh.write(tmp_path / "year1950.compliance.json")
    before = target.stat().st_mtime_ns
    with pytest.raises(DataError, match=f"full report: {re.escape(str(target))}$"):
        require_no_high_failures(fresh, target)  # positional, as ingest() calls it
    assert target.stat().st_mtime_ns == before  # already there: not written again


# --------------------------------------------------------------------------- bounded reads


def _set_range(path: Path, low: float, high: float) -> None:
    with netCDF4.Dataset(path, "a") as nc:
        nc["sst"].actual_range = np.array([low, high], dtype="f4")


def _true_range(path: Path) -> tuple[float, float]:
    with netCDF4.Dataset(path) as nc:
        data = nc["sst"][:]
    return float(data.min()), float(data.max())


def _range_messages(report: ComplianceReport) -> list[str]:
    return [m for m in _messages(report, "cf") if "actual_range" in m]


def test_streamed_range_in_slabs_keeps_every_verdict(cobe, cobe_report, monkeypatch) -> None:
    # Slabs of one month (64800 values) instead of the whole variable: same report.
    monkeypatch.setattr(compliance, "SLAB_ELEMENTS", 180 * 360)
    again = check_sources([cobe])
    strip = [{k: v for k, v in r.items() if k != "seconds"}
             for r in again.as_dict()["results"]]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"}
                     for r in cobe_report.as_dict()["results"]]


def test_streamed_range_catches_a_wrong_and_passes_a_right_actual_range(cobe, tmp_path,
                                                                         monkeypatch) -> None:
    monkeypatch.setattr(compliance, "SLAB_ELEMENTS", 180 * 360)  # several slabs
    low, high = _true_range(cobe)
    right, wrong = _copy(cobe, tmp_path, "right.nc"), _copy(cobe, tmp_path, "wrong.nc")
    _set_range(right, low, high)
    _set_range(wrong, low, high + 1.0)  # only the maximum is off
    report = check_sources([right, wrong], suites=["cf"])
    assert _range_messages(report) == [
        "actual_range elements of 'sst' inconsistent with its min/max values"]
    assert report.result(right, "cf").count("high") == 0
    assert report.result(wrong, "cf").count("high") == 1


def test_given_ranges_are_used_instead_of_reading(cobe, tmp_path, monkeypatch) -> None:
    low, high = _true_range(cobe)
    copy = _copy(cobe, tmp_path)
    _set_range(copy, low, high)

    def no_read(variable):
        raise AssertionError(f"{variable.name} was read although its range was given")

    monkeypatch.setattr(compliance, "_stream_range", no_read)
    # the ranges an ingest saw: right, wrong, or nothing valid at all
    right = check_sources([copy], suites=["cf"], ranges={str(copy): {"sst": (low, high)}})
    assert _range_messages(right) == []
    wrong = check_sources([copy], suites=["cf"],
                          ranges={str(copy): {"sst": (low, high + 1.0)}})
    assert _range_messages(wrong) == [
        "actual_range elements of 'sst' inconsistent with its min/max values"]
    empty = check_sources([copy], suites=["cf"], ranges={str(copy): {"sst": None}})
    assert _range_messages(empty) == []  # all masked: the checker skips the data check


def test_given_range_is_not_trusted_when_netcdf4_would_mask_more(cobe, tmp_path) -> None:
    # valid_max makes netCDF4 mask the values above it; xarray's range would not: read.
    low, high = _true_range(cobe)
    copy = _copy(cobe, tmp_path)
    _set_range(copy, low, high)
    with netCDF4.Dataset(copy, "a") as nc:
        nc["sst"].valid_max = np.float32(high + 10)
    report = check_sources([copy], suites=["cf"],
                           ranges={str(copy): {"sst": (low - 5.0, high)}})  # ignored
    assert _range_messages(report) == []


def _plain(monkeypatch) -> None:
    """compliance-checker as it ships: no shared table, whole-variable reads."""
    monkeypatch.setattr(compliance, "_fast_tables", contextlib.nullcontext)
    monkeypatch.setattr(compliance, "_bounded", lambda checker: checker)


def _failures(report: ComplianceReport) -> list:
    return [r.failures for r in report.results]


def test_bad_units_caught_as_by_the_plain_checker(cobe, tmp_path, monkeypatch) -> None:
    # sea_surface_temperature in metres: a high §3.1 failure looked up in the standard
    # name table (and its temperature names), whichever way the range is found.
    copy = _copy(cobe, tmp_path)
    with netCDF4.Dataset(copy, "a") as nc:
        nc["sst"].standard_name = "sea_surface_temperature"
        nc["sst"].units = "m"
    low, high = _true_range(cobe)
    given = check_sources([copy], ranges={str(copy): {"sst": (low, high)}})
    streamed = check_sources([copy])
    _plain(monkeypatch)
    plain = check_sources([copy])
    assert 'Units "m" for variable sst must be convertible to canonical units "K"' in \
        _messages(plain, "cf", "high")
    assert _failures(given) == _failures(streamed) == _failures(plain)


def test_standard_name_table_is_restored_after_a_check(cobe) -> None:
    from compliance_checker.cf import util

    before = util.StandardNameTable
    check_sources([cobe], suites=["cf"])
    assert util.StandardNameTable is before


def test_a_checker_whose_internals_moved_gives_the_same_verdicts(cobe, cobe_report,
                                                                 monkeypatch) -> None:
    """The shared-table speed-up patches compliance-checker's internals; when one of them
    is gone (a newer release) the check runs as shipped, with the same report."""
    monkeypatch.setattr(compliance, "_INTERNALS",
                        (*compliance._INTERNALS, ("util", "_renamed_in_a_new_release")))

    def never(*args, **kwargs):
        raise AssertionError("the speed-up was applied over missing internals")

    monkeypatch.setattr(compliance, "_shared_table_class", never)
    again = check_sources([cobe])
    strip = [{k: v for k, v in r.items() if k != "seconds"}
             for r in again.as_dict()["results"]]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"}
                     for r in cobe_report.as_dict()["results"]]
