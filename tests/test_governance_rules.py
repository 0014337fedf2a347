"""Classification and grading: the schema's refusals, the one rule (release, negative list,
embargo, grants) and a sweep of the whole sample catalog through every path that decides
(the notebooks' check, the data service's lists and pages, STAC, the portal).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from oceandata.catalog import open_catalog
from oceandata.catalog.core import Catalog
from oceandata.config import get_settings
from oceandata.dataservice import create_app
from oceandata.errors import CatalogError, NotAuthorized
from oceandata.governance import rules
from oceandata.governance.rules import Subject, decide, effective_release
from oceandata.hub.security import AuthError, HubUser

REPO = Path(__file__).resolve().parent.parent
GROUP = "coastal-team"
TOKENS = {"reg-token": HubUser("rei"), "grantee-token": HubUser("gus", groups=frozenset({GROUP}))}
SUBJECTS = {None: Subject(), "reg-token": Subject("rei"),
            "grantee-token": Subject("gus", frozenset({GROUP}))}
FUTURE = (dt.date.today() + dt.timedelta(days=3650)).isoformat()

ENTRY = """
  {name}:
    driver: netcdf
    description: governance test entry {name}
    args: {{urlpath: "{path}", chunks: {{}}}}
    metadata:
      title: Test SST {name}
      variables: [{{name: sst, standard_name: sea_surface_temperature, units: degree_Celsius}}]
      grid: dsg
      feature_type: timeSeries
      provider: test
      license: CC0
      classification: {{category: observation, grade: {grade}, rationale: test, owner: test unit,
                        release: {release}{extra}}}
      access: {{groups: [{group}]}}
"""
SPECIAL = {  # name: (grade, release, extra classification fields)
    "reg_sst": ("general", "registered", ""),
    "embargo_past": ("general", "open", ", embargo_until: 2001-01-01"),
    "embargo_future": ("general", "open", f", embargo_until: {FUTURE}"),
    "neg_open": ("general", "open", ""),
    "neg_soft": ("general", "open", ""),
    "important_sst": ("important", "restricted", ""),
    "core_sst": ("core", "registered", ""),
}
NEGATIVE = """entries:
  - {pattern: "neg_open", reason: coastal infrastructure nearby}
  - {pattern: "neg_s*", release: registered, reason: preliminary values}
"""


class StandInHub:
    """Stand-in for the hub's token check (the hub itself: tests/test_dataservice_hub.py)."""

    async def user_for_token(self, token: str, via: str) -> HubUser:
        if token not in TOKENS:
            raise AuthError(401, "The token is unknown, expired or revoked.")
        return TOKENS[token]


def _write(folder: Path, special: dict[str, tuple[str, str, str]]) -> Path:
    path = open_catalog().entry("oisst_wa").paths()[0]
    text = ("metadata: {version: 1}\nsources:\n  samples:\n"
            "    driver: intake.catalog.local.YAMLFileCatalog\n"
            f"    args: {{path: \"{REPO / 'catalogs' / 'ocean.yaml'}\"}}\n")
    for name, (grade, release, extra) in special.items():
        text += ENTRY.format(name=name, path=path, grade=grade, release=release, extra=extra,
                             group=GROUP)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "catalog.yaml").write_text(text)
    return folder / "catalog.yaml"


@pytest.fixture(scope="module")
def governed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    folder = tmp_path_factory.mktemp("governed")
    (folder / "negative-list.yaml").write_text(NEGATIVE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OCEANDATA_GOVERNANCE__NEGATIVE_LIST", str(folder / "negative-list.yaml"))
        mp.setenv("OCEANDATA_GOVERNANCE__AUDIT_URL", f"sqlite:///{folder / 'audit.sqlite'}")
        get_settings(reload=True)
        yield open_catalog(_write(folder, SPECIAL))
    get_settings(reload=True)


@pytest.fixture(scope="module")
def client(governed: Catalog) -> TestClient:
    return TestClient(create_app(governed, hub_auth=StandInHub()))


# -- the schema ------------------------------------------------------------------------

@pytest.mark.parametrize("grade", ["important", "core"])
def test_important_and_core_entries_can_never_be_open(tmp_path: Path, grade: str) -> None:
    with pytest.raises(CatalogError, match=f"a '{grade}' entry can never be released 'open'"):
        open_catalog(_write(tmp_path, {"x": (grade, "open", "")}))


def test_validate_refuses_an_entry_without_a_grade(tmp_path: Path) -> None:
    path = _write(tmp_path, {"x": ("general", "open", "")})
    path.write_text(path.read_text().replace("grade: general, ", ""))
    proc = subprocess.run([str(Path(sys.executable).with_name("oceandata")), "catalog", "validate",
                           str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "'x'" in lines[0] and "classification.grade" in lines[0], lines[0]
    whole = path.read_text().replace("      classification:", "      old:")
    path.write_text(whole.split("      old:")[0] + "      access: {groups: [g]}\n")
    proc = subprocess.run([str(Path(sys.executable).with_name("oceandata")), "catalog", "validate",
                           str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "classification" in proc.stderr, proc.stderr


def test_a_bad_negative_list_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "neg.yaml"
    bad.write_text("entries:\n  - {pattern: 'x*', release: open, reason: r}\n")
    with pytest.raises(CatalogError, match=r"neg.yaml: negative list entries.0.release"):
        rules.load_negative_list(bad)


# -- the rule --------------------------------------------------------------------------

def test_an_embargo_opens_by_itself_on_its_day(governed: Catalog) -> None:
    entry = governed.entries["embargo_future"]
    day = dt.date.fromisoformat(FUTURE)
    before = decide(entry, Subject(), on=day - dt.timedelta(days=1))
    assert not before.allowed and before.release == "restricted"
    assert "embargo" in before.reason
    assert decide(entry, Subject("gus", frozenset({GROUP})), on=day - dt.timedelta(days=1)
                  ).allowed, "grantees see an entry under embargo"
    after = decide(entry, Subject(), on=day)
    assert after.allowed and after.release == "open"


def test_the_negative_list_closes_and_never_opens(governed: Catalog) -> None:
    assert effective_release(governed.entries["neg_open"])[0] == "restricted"
    assert effective_release(governed.entries["neg_soft"])[0] == "registered"
    assert "negative list" in effective_release(governed.entries["neg_open"])[1]
    # a rule saying "registered" never opens a restricted entry
    assert effective_release(governed.entries["important_sst"])[0] == "restricted"


def test_the_embargo_ends_in_the_running_service(governed: Catalog, client: TestClient,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert client.get("/datasets/embargo_future").status_code == 404
    day = dt.date.fromisoformat(FUTURE)
    monkeypatch.setattr(rules, "today", lambda: day)
    assert client.get("/datasets/embargo_future").status_code == 200
    names = {d["name"] for d in client.get("/datasets.json").json()}
    assert "embargo_future" in names


# -- the sweep ---------------------------------------------------------------------------

def _listed(client: TestClient, token: str | None) -> tuple[set[str], set[str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    rows = client.get("/datasets.json", params={"limit": 1000}, headers=headers)
    assert int(rows.headers["X-Total-Count"]) == len(rows.json()) < 1000
    names = {d["name"] for d in rows.json()}
    stac = client.get("/stac/collections", headers=headers).json()
    return names, {c["id"] for c in stac["collections"]}


@pytest.mark.parametrize("token", list(SUBJECTS))
def test_every_path_decides_with_the_one_rule(governed: Catalog, client: TestClient,
                                              token: str | None) -> None:
    """Every entry of the sample catalog and the governed ones, for an anonymous caller, a
    registered user and a grantee: the rule, the service's list, STAC, the portal page and
    the notebooks' check agree."""
    subject = SUBJECTS[token]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    listed, collections = _listed(client, token)
    assert len(governed.entries) >= 19 + len(SPECIAL)
    for name, entry in governed.entries.items():
        allowed = decide(entry, subject).allowed
        assert (name in listed) == allowed, (name, token)
        assert (name in collections) == allowed, (name, token)
        page = client.get(f"/datasets/{name}", headers=headers)
        assert page.status_code == (200 if allowed else 404), (name, token)
        if subject.name is not None:  # the notebooks: always a signed-in user
            try:
                entry.check_access(set(subject.groups), user=subject.name)
                opened = True
            except NotAuthorized:
                opened = False
            assert opened == allowed, (name, token)
    expected = {  # written from the fixture's table, not from the rule
        None: {"embargo_past"},
        "reg-token": {"embargo_past", "reg_sst", "neg_soft", "core_sst"},
        "grantee-token": set(SPECIAL),
    }[token]
    assert {n for n in SPECIAL if n in listed} == expected


def test_the_whole_sample_catalog_is_graded_and_open() -> None:
    catalog = open_catalog()
    assert len(catalog.entries) >= 19
    for name, entry in catalog.entries.items():
        c = entry.metadata.classification
        assert c.grade in ("general", "important", "core") and c.owner and c.rationale, name
        assert not (c.grade != "general" and c.release == "open"), name
        assert decide(entry, Subject()).allowed == (c.release == "open"), name


def test_catalog_grades_lists_the_release_today(governed: Catalog) -> None:
    import json
    import os

    env = {**os.environ, "OCEANDATA_GOVERNANCE__NEGATIVE_LIST":
           os.environ["OCEANDATA_GOVERNANCE__NEGATIVE_LIST"]}
    proc = subprocess.run([str(Path(sys.executable).with_name("oceandata")), "catalog",
                           "grades", str(governed.path), "--json"], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)["entries"]}
    assert rows["neg_open"]["declared"] == "open" and rows["neg_open"]["release"] == "restricted"
    assert rows["embargo_future"]["release"] == "restricted"
    assert rows["cobe_sst2"]["release"] == "open" and rows["cobe_sst2"]["grade"] == "general"


def test_serving_data_not_open_to_all_is_audited_once_per_window(
        governed: Catalog, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from oceandata.dataservice import access
    from oceandata.governance import audit

    monkeypatch.setattr(access, "_AUDITED", {})  # earlier tests read it within the window

    since = dt.datetime.now(dt.UTC)
    headers = {"Authorization": "Bearer grantee-token"}
    for _ in range(3):  # a client reading one dataset sends many requests: one record
        assert client.get("/datasets/important_sst/opendap.das",
                          headers=headers).status_code == 200
    assert client.get("/datasets/cobe_sst2/opendap.das", headers=headers).status_code == 200
    assert client.get("/datasets/important_sst/opendap.das").status_code == 404
    found = [r for r in audit.read(since=since, action="data.access")]
    assert [(r["actor"], r["target"], r["detail"]["protocol"]) for r in found] == [
        ("gus", "dataset:important_sst", "opendap")], found
    assert found[0]["source"] == "testclient"


def test_store_register_grades_the_entry_and_refuses_open_important(
        tmp_path: Path, sample) -> None:
    from oceandata.ingest import ingest

    store = tmp_path / "cobe.icechunk"
    ingest([sample("gridded/cobe-sst2/year1950.nc")], store, name="cobe", check=False)
    cli = str(Path(sys.executable).with_name("oceandata"))
    catalog = tmp_path / "stores.yaml"

    def register(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cli, "store", "register", str(store), "--catalog", str(catalog),
                               "--name", "cobe", *extra], capture_output=True, text=True,
                              timeout=300)

    proc = register("--grade", "important", "--release", "open")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "can never be released 'open'" in proc.stderr and not catalog.exists()
    proc = register()  # not reviewed: registered users only
    assert proc.returncode == 0, proc.stderr
    c = open_catalog(catalog).entry("cobe").metadata.classification
    assert (c.grade, c.release) == ("general", "registered") and "not reviewed" in c.rationale
    proc = register("--grade", "important", "--release", "restricted", "--group", "ocean-lab",
                    "--owner", "Ocean lab PI", "--category", "reanalysis")
    assert proc.returncode == 0, proc.stderr
    entry = open_catalog(catalog).entry("cobe")
    c = entry.metadata.classification
    assert (c.grade, c.release, c.owner, c.category) == ("important", "restricted",
                                                         "Ocean lab PI", "reanalysis")
    assert entry.metadata.access.groups == ["ocean-lab"]
    assert not decide(entry, Subject("rei")).allowed
    assert decide(entry, Subject("gus", frozenset({"ocean-lab"}))).allowed
