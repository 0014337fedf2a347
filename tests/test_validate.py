"""Catalog validation: each kind of disagreement between metadata and data is reported.

Every case starts from the real sample catalog (which validates clean), changes one
declared value in a copy, and checks that exactly that entry and field are reported.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from oceandata.catalog import open_catalog
from oceandata.io.validate import validate_catalog, validate_entry


@pytest.fixture(scope="module")
def clean_problems() -> list:
    return validate_catalog(open_catalog())


def test_sample_catalog_validates_clean(clean_problems) -> None:
    assert [str(p) for p in clean_problems] == []


def _edited(tmp_path: Path, repo: Path, sub: str, entry: str, edit) -> Path:
    copy = tmp_path / "catalogs"
    shutil.copytree(repo / "catalogs", copy)
    path = copy / f"{sub}.yaml"
    doc = yaml.safe_load(path.read_text())
    edit(doc["sources"][entry]["metadata"])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return copy / "ocean.yaml"


def _set(key_path: str, value: Any):
    def edit(md: dict) -> None:
        *parents, last = key_path.split(".")
        node = md
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value
    return edit


@pytest.mark.parametrize(("sub", "entry", "key_path", "value", "field", "needle"), [
    # a wrong unit and a wrong variable name
    ("gridded", "cobe_sst2", "variables.0.units", "K", "variables[0].units", "'degC'"),
    ("gridded", "cobe_sst2", "variables.0.name", "sst_typo", "variables[0].name", "sst"),
    ("gridded", "tos_bipolar", "variables.0.standard_name", "sea_water_temperature",
     "variables[0].standard_name", "sea_surface_temperature"),
    # time: the data start in January 1950 and end in December 2009 (monthly steps)
    ("gridded", "cobe_sst2", "time_range.start", "1950-03-01", "time_range.start", "1950-01"),
    ("gridded", "cobe_sst2", "time_range.end", "2010-06-01", "time_range.end", "2009-12"),
    # the 360-day FOAM calendar, where February has 30 days: one step on 0999-02-01 (model
    # time, so the catalog declares no time_range; the check still reads it right)
    ("gridded", "foam_ocean", "time_range", {"start": "0999-02-01", "end": "0999-02-30"},
     "time_range.end", "0999-02-01"),
    # two 5-day means on a curvilinear grid, centred on 2000-01-03 and 2000-01-08
    ("gridded", "nemo_seasia_e3t", "time_range.end", "2000-01-12", "time_range.end",
     "2000-01-08"),
    # depth: the POP/PHC2 levels end at 5375 m
    ("gridded", "phc2_ts_zonal", "depth_range.max", 4000, "depth_range.max", "5375"),
    # a zonal mean stands for every longitude, so its box must be global
    ("gridded", "phc2_ts_zonal", "bbox.east", 180, "bbox", "360"),
    # a regional regular grid whose box was declared too far north
    ("gridded", "sst_ndjfm_anom", "bbox.north", 70, "bbox.north", "62.5"),
    # a box across the antimeridian (ship tracks): west declared too far east
    ("dsg", "dsg_trajectory", "bbox.west", 150, "bbox", "outside"),
    ("dsg", "dsg_trajectory", "bbox.east", -100, "bbox.east", "236.02"),
])
def test_each_mismatch_names_entry_and_field(tmp_path, repo, sub, entry, key_path, value,
                                             field, needle) -> None:
    root = _edited(tmp_path, repo, sub, entry, _set(key_path, value))
    problems = validate_entry(open_catalog(root).entry(entry))
    assert [(p.entry, p.field) for p in problems] == [(entry, field)], [str(p) for p in problems]
    text = str(problems[0])
    assert needle in text and f"{sub}.yaml:" in text


def test_an_entry_that_does_not_open_is_reported(tmp_path, repo, sample) -> None:
    cut = tmp_path / "cut.nc"
    cut.write_bytes(Path(sample("gridded/pop.nc")).read_bytes()[:50_000])

    def edit(md: dict) -> None:
        md.pop("sample")

    root = _edited(tmp_path, repo, "gridded", "pop_surface", edit)
    text = root.parent.joinpath("gridded.yaml").read_text()
    start = text.index("pop_surface:")
    line_start = text.index("urlpath:", start)
    line_end = text.index("\n", line_start)
    root.parent.joinpath("gridded.yaml").write_text(
        text[:line_start] + f"urlpath: {cut}" + text[line_end:])
    (problem,) = validate_entry(open_catalog(root).entry("pop_surface"))
    assert problem.field == "args" and "truncated" in problem.message
    assert problem.as_dict()["entry"] == "pop_surface"
