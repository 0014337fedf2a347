"""The catalog loader: nesting, errors with file and line, search, access."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from oceandata.catalog import open_catalog
from oceandata.errors import CatalogError, DatasetNotFound, NotAuthorized, UsageError

ENTRY = """\
  {name}:
    driver: netcdf
    description: test entry
    args:
      urlpath: "{{{{ CATALOG_DIR }}}}/{file}"
    metadata:
      title: {title}
      variables: [{{name: sst, standard_name: sea_surface_temperature, units: degC}}]
      bbox: {{west: {w}, south: -10, east: {e}, north: 10}}
      time_range: {{start: "{start}", end: "{end}"}}
      grid: regular
      provider: test
      license: CC0
      classification: {{category: scientific, grade: general, rationale: test data, owner: test, release: open}}
      tags: [{tags}]
"""


def entry(name: str, *, title: str = "A title", w: float = 0, e: float = 20,
          start: str = "2000-01-01", end: str = "2000-12-31", tags: str = "sst",
          file: str = "x.nc") -> str:
    return ENTRY.format(name=name, title=title, w=w, e=e, start=start, end=end, tags=tags,
                        file=file)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write(tmp_path / "a.yaml", "metadata: {version: 1}\nsources:\n"
          + entry("pacific", w=160, e=-100, title="Tropical Pacific SST", tags="enso, sst")
          + entry("atlantic", w=-60, e=0, start="1990-01-01", end="1995-12-31",
                  title="Atlantic SST"))
    write(tmp_path / "b.yaml", "metadata: {version: 1}\nsources:\n"
          + entry("indian", w=40, e=100, title="Indian Ocean SST", start="2010-01-01",
                  end="2020-12-31"))
    return write(tmp_path / "root.yaml", """\
        metadata: {version: 1, title: root}
        sources:
          first:
            driver: intake.catalog.local.YAMLFileCatalog
            args: {path: "{{ CATALOG_DIR }}/a.yaml"}
          second:
            driver: intake.catalog.local.YAMLFileCatalog
            args: {path: "{{ CATALOG_DIR }}/b.yaml"}
        """)


def test_nested_entries_are_flattened_and_children_kept(tree: Path) -> None:
    cat = open_catalog(tree)
    assert sorted(cat) == ["atlantic", "indian", "pacific"]
    assert sorted(cat.children) == ["first", "second"]
    assert sorted(cat["first"].entries) == ["atlantic", "pacific"]
    assert cat.entry("pacific").args["urlpath"] == f"{tree.parent}/x.nc"
    assert cat.entry("indian").line == 3


def test_unknown_name_suggests_close_names(tree: Path) -> None:
    with pytest.raises(DatasetNotFound, match=r"'pacfic'.*Did you mean: pacific"):
        open_catalog(tree).entry("pacfic")


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", "sources:\n  x:\n    driver: netcdf\n   args: [\n")
    with pytest.raises(CatalogError, match=rf"{bad}:4: malformed YAML"):
        open_catalog(bad)


def test_invalid_metadata_names_entry_field_and_line(tmp_path: Path) -> None:
    text = "sources:\n" + entry("ok") + entry("broken").replace("south: -10", "south: 40")
    bad = write(tmp_path / "c.yaml", text)
    with pytest.raises(CatalogError) as info:
        open_catalog(bad)
    message = str(info.value)
    assert f"{bad}:17" in message and "'broken'" in message and "bbox" in message
    assert "south (40.0) is greater than north (10.0)" in message


def test_a_time_range_ending_before_it_starts_is_refused(tmp_path: Path) -> None:
    """Otherwise every search with a time filter would fail on that one entry."""
    text = "sources:\n" + entry("late", start="2010-01-01", end="2000-12-31")
    bad = write(tmp_path / "t.yaml", text)
    with pytest.raises(CatalogError, match=r"'late'.*time_range.*is after end"):
        open_catalog(bad)


def test_unknown_driver_is_refused_with_valid_list(tmp_path: Path) -> None:
    bad = write(tmp_path / "d.yaml", "sources:\n" + entry("x").replace("netcdf", "grib"))
    with pytest.raises(CatalogError, match=r"d.yaml:2: sources.x.driver.*'grib'.*netcdf"):
        open_catalog(bad)


def test_duplicate_names_across_subcatalogs_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "sources:\n" + entry("same"))
    write(tmp_path / "b.yaml", "sources:\n" + entry("same"))
    root = write(tmp_path / "r.yaml", """\
        sources:
          a: {driver: intake.catalog.local.YAMLFileCatalog, args: {path: "{{CATALOG_DIR}}/a.yaml"}}
          b: {driver: intake.catalog.local.YAMLFileCatalog, args: {path: "{{CATALOG_DIR}}/b.yaml"}}
        """)
    with pytest.raises(CatalogError, match=r"b.yaml:2: entry name 'same' is already defined at"):
        open_catalog(root)


def test_missing_catalog_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        open_catalog(tmp_path / "nope.yaml")


def test_self_inclusion_is_refused(tmp_path: Path) -> None:
    loop = write(tmp_path / "loop.yaml", """\
        sources:
          me: {driver: intake.catalog.local.YAMLFileCatalog, args: {path: "{{CATALOG_DIR}}/loop.yaml"}}
        """)
    with pytest.raises(CatalogError, match="includes itself"):
        open_catalog(loop)


def test_search_by_text_is_case_insensitive_and_all_words(tree: Path) -> None:
    cat = open_catalog(tree)
    assert list(cat.search("pacific SST")) == ["pacific"]
    assert list(cat.search("enso")) == ["pacific"]
    assert sorted(cat.search("ocean sst")) == ["indian"]
    assert list(cat.search("nothing-like-this")) == []


def test_search_by_standard_name(tree: Path) -> None:
    cat = open_catalog(tree)
    assert len(cat.search(standard_name="sea_surface_temperature")) == 3
    assert len(cat.search(standard_name="sea_surface_*")) == 3
    assert len(cat.search(standard_name="sea_water_salinity")) == 0


@pytest.mark.parametrize(("bbox", "expected"), [
    ((170, -5, -170, 5), ["pacific"]),           # crosses the antimeridian
    ((190, -5, 200, 5), ["pacific"]),            # the same place in 0..360
    ((-10, -5, 10, 5), ["atlantic"]),            # crosses the prime meridian; touches at 0
    ((350, -5, 10, 5), ["atlantic"]),            # the same in 0..360, wrapping
    ((50, 20, 60, 30), []),                      # north of everything
    ((-180, -90, 180, 90), ["atlantic", "indian", "pacific"]),
])
def test_search_by_bbox_handles_both_longitude_conventions(tree: Path, bbox, expected) -> None:
    assert sorted(open_catalog(tree).search(bbox=bbox)) == expected


def test_search_by_time_overlap(tree: Path) -> None:
    cat = open_catalog(tree)
    assert sorted(cat.search(time=("1995-06-01", "2000-01-01"))) == ["atlantic", "pacific"]
    assert sorted(cat.search(time=("2015", None))) == ["indian"]
    assert sorted(cat.search(time=(None, "1989-12-31"))) == []


def test_search_by_time_reads_partial_dates_as_whole_periods(tree: Path) -> None:
    cat = open_catalog(tree)
    # "1995" is the whole year, so it reaches atlantic's last day (1995-12-31)
    assert sorted(cat.search(time=("1995", "1995"))) == ["atlantic"]
    assert sorted(cat.search(time=("1996-01", "1999-12"))) == []
    assert sorted(cat.search(time=("2020-12", None))) == ["indian"]
    # years outside pandas' 1678..2261 range are ordinary years here
    assert sorted(cat.search(time=("0900", "1000"))) == []
    assert sorted(cat.search(time=(None, "2500"))) == ["atlantic", "indian", "pacific"]


def test_impossible_date_in_a_catalog_names_file_line_and_field(tmp_path: Path) -> None:
    bad = write(tmp_path / "c.yaml", "sources:\n" + entry("ok") + entry("late", end="2000-13-01"))
    with pytest.raises(CatalogError) as info:
        open_catalog(bad)
    message = str(info.value)
    assert f"{bad}:17" in message and "time_range.end" in message and "month 13" in message


def test_search_rejects_bad_bbox(tree: Path) -> None:
    with pytest.raises(UsageError, match=r"south \(10.0\) is greater than north \(-10.0\)"):
        open_catalog(tree).search(bbox=(0, 10, 20, -10))


def test_restricted_entry_needs_a_granted_group(tmp_path: Path, monkeypatch) -> None:
    text = "sources:\n" + entry("secret").replace(
        "      tags: [sst]", "      tags: [sst]\n      access: {groups: [argo-dm]}").replace("release: open", "release: restricted")
    cat = open_catalog(write(tmp_path / "r.yaml", text))
    monkeypatch.setenv("OCEANDATA_GROUPS", "public-users")
    with pytest.raises(NotAuthorized, match="restricted to groups argo-dm"):
        cat.entry("secret").to_dask()
    monkeypatch.setenv("OCEANDATA_GROUPS", "argo-dm")
    cat.entry("secret").check_access()  # granted: no error


def test_restricted_without_groups_is_a_schema_error(tmp_path: Path) -> None:
    text = "sources:\n" + entry("s").replace(
        "      tags: [sst]", "      tags: [sst]\n      access: {groups: []}").replace("release: open", "release: restricted")
    with pytest.raises(CatalogError, match="must name the groups"):
        open_catalog(write(tmp_path / "r.yaml", text))
