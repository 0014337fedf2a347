"""A batch request is parsed strictly: each bad value refused with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from oceandata.errors import UsageError
from oceandata.jobs.spec import (
    format_walltime,
    make_spec,
    parse_cores,
    parse_memory,
    parse_walltime,
)


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "run.py"
    path.write_text("print('hi')\n")
    return path


@pytest.mark.parametrize(("text", "seconds"), [
    ("1:00:00", 3600), ("00:00:01", 1), ("05:30", 330), ("90:00", 5400),
    ("2-01:00:00", 2 * 86400 + 3600), (" 0:01:00 ", 60),
])
def test_walltime_forms(text: str, seconds: int) -> None:
    assert parse_walltime(text, 7 * 86400) == seconds


@pytest.mark.parametrize(("text", "message"), [
    ("", "is not a duration; give HH:MM:SS, MM:SS or D-HH:MM:SS"),
    ("1h", "is not a duration"),
    ("60", "is not a duration"),
    ("-1:00:00", "is not a duration"),
    ("1:00:00:00", "is not a duration"),
    ("1:75:00", "minutes must be 00-59"),
    ("1:00:75", "seconds must be 00-59"),
    ("10:61", "seconds must be 00-59"),
    ("1-25:00:00", "hours must be 00-23 after the days"),
    ("0:00:00", "must be longer than 0"),
    ("00:00", "must be longer than 0"),
    ("8-00:00:00", "longer than the maximum 7-00:00:00"),
])
def test_bad_walltime_is_refused(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_walltime(text, 7 * 86400)
    text_out = str(info.value)
    assert text_out.startswith(f"--walltime {text.strip()!r}")
    assert message in text_out
    assert "\n" not in text_out


@pytest.mark.parametrize(("text", "mib"), [
    ("4GB", 3815), ("4GiB", 4096), ("512MiB", 512), ("512mb", 489), ("1KB", 1),
    ("1.5GiB", 1536), ("100 MB", 96), ("2gib", 2048), ("1024KiB", 1),
])
def test_memory_units(text: str, mib: int) -> None:
    assert parse_memory(text) == mib


@pytest.mark.parametrize(("text", "message"), [
    ("4", "has no unit; give one of KB, MB, GB, KiB, MiB or GiB, e.g. 4GB"),
    ("4TB", "unknown unit 'TB'"),
    ("4G", "unknown unit 'G'"),
    ("0GB", "must be more than 0"),
    ("0.0MiB", "must be more than 0"),
    ("-1GB", "is not a size"),
    ("GB", "is not a size"),
    ("lots", "is not a size"),
    ("", "is not a size"),
])
def test_bad_memory_is_refused(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_memory(text)
    assert str(info.value).startswith(f"--memory {text!r}")
    assert message in str(info.value)


@pytest.mark.parametrize(("value", "message"), [
    ("0", "--cores 0 is less than 1; give a whole number from 1 to 8"),
    ("-2", "--cores -2 is less than 1"),
    ("9", "--cores 9 is more than the 8 this machine or partition has; give a whole number "
          "from 1 to 8"),
    ("1.5", "--cores '1.5' is not a whole number of cores"),
    ("two", "--cores 'two' is not a whole number of cores"),
    ("", "--cores '' is not a whole number"),
    (True, "is not a number of cores"),
])
def test_bad_cores_are_refused(value: object, message: str) -> None:
    with pytest.raises(UsageError, match=r"^--cores") as info:
        parse_cores(value, 8)
    assert message in str(info.value)


def test_cores_within_bounds() -> None:
    assert parse_cores("8", 8) == 8
    assert parse_cores(1, 8) == 1
    assert parse_cores("64", None) == 64


def test_script_must_exist_and_be_a_file(tmp_path: Path, script: Path) -> None:
    with pytest.raises(UsageError, match=r"^SCRIPT '.*nope.py' does not exist"):
        make_spec(tmp_path / "nope.py")
    with pytest.raises(UsageError, match=r"^SCRIPT '.*' is not a file"):
        make_spec(tmp_path)
    with pytest.raises(UsageError, match=r"^SCRIPT is empty"):
        make_spec("")


def test_make_spec_checks_every_value(script: Path) -> None:
    spec = make_spec(script, ["--year", 2020], cores="2", memory="4GiB", walltime="1:30:00",
                     max_cores=4, max_walltime_s=86400)
    assert spec.script == script.resolve()
    assert spec.args == ("--year", "2020")
    assert (spec.cores, spec.memory_mb, spec.walltime_s) == (2, 4096, 5400)
    assert spec.memory_gb == 4.0 and spec.hours == 1.5
    with pytest.raises(UsageError, match=r"^--cores 5 is more than the 4"):
        make_spec(script, cores=5, max_cores=4)
    with pytest.raises(UsageError, match=r"^--memory '4' has no unit"):
        make_spec(script, memory="4")
    with pytest.raises(UsageError, match=r"^--walltime '2-00:00:00' is longer than the maximum"):
        make_spec(script, walltime="2-00:00:00", max_walltime_s=86400)
    with pytest.raises(UsageError, match=r"^--name"):
        make_spec(script, name="bad name/..")


def test_format_walltime_round_trips() -> None:
    for seconds in (1, 59, 3600, 86399, 86400, 3 * 86400 + 3723):
        assert parse_walltime(format_walltime(seconds), None) == seconds
    assert format_walltime(3 * 86400 + 3723) == "3-01:02:03"
