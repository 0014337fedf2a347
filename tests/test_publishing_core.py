"""Publishing rules (:mod:`oceandata.alloc.publishing`) in-process: a SQLite allocations
database and a data dir in tmp, project stores made with the public ingest API from a
real sample file (one fixed to pass the strict CF/ACDD checks, one as shipped)."""

from __future__ import annotations

import copy
import datetime as dt
import os
import shutil
from pathlib import Path

import netCDF4
import pytest
import xarray as xr
import yaml
from lxml import etree

from oceandata.alloc import core, db, projects, publishing
from oceandata.alloc.core import NotFound
from oceandata.alloc.models import PublishState
from oceandata.errors import NotAuthorized, UsageError
from oceandata.governance import audit
from oceandata.ingest.pipeline import ingest
from oceandata.ingest.register import register_store
from oceandata.ingest.store import open_repository, open_store

TODAY = dt.date.today()


def fixed_cobe(source: Path, target: Path) -> Path:
    """COBE-SST2 1950 with what ``--strict`` asks for: no stale actual_range, ACDD's
    title, summary and keywords, and sst's standard_name and coverage_content_type."""
    shutil.copyfile(source, target)
    target.chmod(0o644)
    with netCDF4.Dataset(target, "a") as nc:
        nc["sst"].delncattr("actual_range")
        nc["sst"].setncatts({"standard_name": "sea_surface_temperature",
                             "coverage_content_type": "physicalMeasurement"})
        nc.setncatts({"title": "COBE-SST2 monthly SST, 1950", "summary": "Monthly SST.",
                      "keywords": "sea surface temperature",
                      "Conventions": "CF-1.11, ACDD-1.3"})
    return target


def project_store(data_dir: Path, alloc_id: int, name: str, source: Path,
                  classification: dict | None = None) -> Path:
    """Ingest *source* into ``<workspace>/stores/<name>.icechunk`` and register it in the
    project catalog, as ``oceandata ingest --project`` does."""
    workspace = data_dir / "projects" / str(alloc_id)
    (workspace / "stores").mkdir(parents=True, exist_ok=True)
    store = workspace / "stores" / f"{name}.icechunk"
    ingest([source], store, name=name, check=False)
    defaults = {"license": "CC-BY-4.0", "provider": "Partner University"}
    if classification:
        defaults["classification"] = classification
    register_store(workspace / "catalog.yaml", name, store, defaults=defaults)
    return store


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample) -> dict:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    monkeypatch.setenv("OCEANDATA_DATA_DIR", str(data_dir))
    url = f"sqlite:///{tmp_path / 'alloc.sqlite'}"
    db.upgrade(url)
    cobe = Path(sample("gridded/cobe-sst2/year1950.nc"))
    good = fixed_cobe(cobe, tmp_path / "good.nc")
    fields = {"project_title": "SST of the partners", "pi": "Dr. P", "institution": "U",
              "justification": "x", "core_hours": 10, "max_cores": 2,
              "memory_per_job_gb": 4, "storage_gb": 5,
              "start_date": (TODAY - dt.timedelta(days=1)).isoformat(),
              "end_date": (TODAY + dt.timedelta(days=30)).isoformat(), "datasets": ""}
    with db.session_scope(url) as s:
        ids = []
        for owner in ("pd-pi1", "pd-pi2"):
            alloc = core.request_allocation(s, owner, fields)
            core.decide(s, alloc.id, "admin", True, approve=True)
            ids.append(alloc.id)
        projects.add_member(s, ids[0], "pd-pi1", False, "pd-member")
    a, b = ids
    project_store(data_dir, a, "sst_good", good)
    project_store(data_dir, a, "sst_raw", cobe)
    project_store(data_dir, b, "sst_b", good)
    return {"url": url, "data": data_dir, "a": a, "b": b, "good": good}


def body(**changes) -> dict:
    out = {"entry": "sst_good", "licence": "CC-BY-4.0",
           "citation": "Partner University (2026): SST of 1950.",
           "authors": [{"name": "Ocean, Ada", "affiliation": "Partner University",
                        "orcid": "0000-0002-1825-0097"}, "Float, Bo;Data Centre"]}
    out.update(changes)
    return out


def test_pid_scheme_has_a_check_symbol() -> None:
    pid = publishing.new_pid(2026, "K7M3QX")
    assert publishing.PID_PATTERN.fullmatch(pid)
    assert publishing.check_pid(pid.lower()) == pid
    # every single wrong symbol and adjacent swap is caught
    body_ = pid[-7:]
    for i in range(7):
        for ch in publishing._ALPHABET:
            if ch != body_[i]:
                wrong = pid[:-7] + body_[:i] + ch + body_[i + 1:]
                with pytest.raises(UsageError):
                    publishing.check_pid(wrong)
    for i in range(6):
        if body_[i] != body_[i + 1]:
            swapped = body_[:i] + body_[i + 1] + body_[i] + body_[i + 2:]
            with pytest.raises(UsageError):
                publishing.check_pid(pid[:-7] + swapped)
    with pytest.raises(UsageError, match="not a persistent identifier"):
        publishing.check_pid("../../etc/passwd")


def test_refusals_store_nothing(world: dict) -> None:
    a, b = world["a"], world["b"]
    with db.session_scope(world["url"]) as s:
        cases = [
            (dict(licence=None), UsageError, "licence is required"),
            (dict(licence="  "), UsageError, "licence is required"),
            (dict(licence="<script>"), UsageError, "SPDX"),
            (dict(authors=[]), UsageError, "at least one author"),
            (dict(authors=[{"name": "X"}]), UsageError, "affiliation"),
            (dict(authors=[{"name": "X", "affiliation": "Y", "orcid": "12"}]), UsageError,
             "ORCID"),
            (dict(entry="sst_raw"), UsageError, "fails the strict compliance check"),
            (dict(entry="nope"), NotFound, "no entry"),
            (dict(profile="no_such_profile"), UsageError, "profile"),
        ]
        for changes, kind, needle in cases:
            with pytest.raises(kind, match=needle) as err:
                publishing.file_request(s, a, "pd-member", False, body(**changes))
            assert "\n" not in str(err.value)
        # an outsider and another project's PI learn nothing
        for user in ("pd-outsider", "pd-pi2"):
            with pytest.raises(NotFound, match=f"no project {a} of yours"):
                publishing.file_request(s, a, user, False, body())
        # project b cannot publish its catalog's entry of project a's store (project
        # catalogs are read with suspicion: oceandata.catalog.projects)
        catalog = world["data"] / "projects" / str(b) / "catalog.yaml"
        doc = yaml.safe_load(catalog.read_text())
        stolen = copy.deepcopy(doc["sources"]["sst_b"])
        stolen["args"] = dict(stolen["args"], urlpath=str(
            world["data"] / "projects" / str(a) / "stores" / "sst_good.icechunk"))
        doc["sources"]["stolen"] = stolen
        catalog.write_text(yaml.safe_dump(doc))
        with pytest.raises(NotFound, match="no entry 'stolen'"):  # left out of the catalog
            publishing.file_request(s, b, "pd-pi2", False, body(entry="stolen"))
        # nor through a store of its own whose files are links to project a's
        own = world["data"] / "projects" / str(b) / "stores" / "sst_b.icechunk"
        linked = own.with_name("linked.icechunk")
        shutil.copytree(own, linked)
        theirs = world["data"] / "projects" / str(a) / "stores" / "sst_good.icechunk"
        shutil.rmtree(linked / "chunks")
        (linked / "chunks").symlink_to(theirs / "chunks")
        doc["sources"]["linked"] = copy.deepcopy(dict(doc["sources"]["sst_b"], args=dict(
            doc["sources"]["sst_b"]["args"], urlpath=str(linked))))
        catalog.write_text(yaml.safe_dump(doc))
        with pytest.raises(UsageError, match="symbolic link"):
            publishing.file_request(s, b, "pd-pi2", False, body(entry="linked"))
        assert publishing.list_project_requests(s, a, "pd-pi1", False) == []
        assert publishing.list_project_requests(s, b, "pd-pi2", False) == []


def test_core_entries_are_never_published(world: dict) -> None:
    a = world["a"]
    project_store(world["data"], a, "sst_core", world["good"], classification={
        "category": "scientific", "grade": "core", "release": "registered",
        "rationale": "test", "owner": "pd-pi1"})
    with db.session_scope(world["url"]) as s, pytest.raises(UsageError, match="graded core"):
        publishing.file_request(s, a, "pd-pi1", False, body(entry="sst_core"))


def test_request_approve_with_changes_tag_copy_register_pid(world: dict) -> None:
    a, data = world["a"], world["data"]
    with db.session_scope(world["url"]) as s:
        req = publishing.file_request(s, a, "pd-member", False, body())
        rid, snapshot = req.id, req.snapshot
        assert req.status == PublishState.PENDING and req.grade == "general"
        assert req.category == "scientific" and req.compliance["high_failures"] == 0
        assert [x["name"] for x in req.authors] == ["Ocean, Ada", "Float, Bo"]
        # members see it, the other project does not; only admins decide
        assert [r.id for r in publishing.list_project_requests(s, a, "pd-pi1", False)] == [rid]
        with pytest.raises(NotFound):
            publishing.get_request(s, rid, "pd-pi2", False)
        with pytest.raises(NotAuthorized):
            publishing.approve(s, rid, "pd-pi1", False)
        with pytest.raises(NotAuthorized):
            publishing.list_requests(s, False)
        with pytest.raises(UsageError, match="unknown field 'store'"):
            publishing.approve(s, rid, "admin", True, {"store": "/etc"})
    with db.session_scope(world["url"]) as s:
        req = publishing.approve(s, rid, "admin", True, {
            "title": "COBE-SST2 1950 (partner release)", "licence": "CC0-1.0",
            "name": "partner_sst_1950"})
        pid, tag = req.pid, req.tag
        assert req.status == PublishState.APPROVED and req.decided_by == "admin"
        assert req.changes == {"title": "COBE-SST2 1950 (partner release)",
                               "licence": "CC0-1.0"}
        with pytest.raises(UsageError, match="approved already"):
            publishing.approve(s, rid, "admin", True)
    assert publishing.check_pid(pid) == pid and tag == f"published-{pid}"
    # the shadows the request's check and the approval's copy read are gone
    if os.geteuid() == 0:
        assert not any((data / "sealed").glob("*/*"))
    # the tag freezes the platform's copy; the copy equals the reviewed snapshot
    store = data / "projects" / str(a) / "stores" / "sst_good.icechunk"
    copy = data / "published" / "partner_sst_1950" / "data.icechunk"
    assert open_repository(copy).lookup_tag(tag) == open_repository(copy).lookup_branch(
        "main")
    xr.testing.assert_identical(
        open_store(copy, version=tag).drop_attrs().load(),
        open_store(store, version=snapshot).drop_attrs().load())
    assert oct(copy.stat().st_mode & 0o777) == "0o755"
    # registered open in the published catalog, with the citation
    from oceandata.catalog.core import open_catalog

    entry = open_catalog(publishing.published_catalog_path()).entry("partner_sst_1950")
    assert entry.metadata.classification.release == "open"
    assert entry.metadata.license == "CC0-1.0"
    assert pid in entry.metadata.citation and "Ocean, Ada; Float, Bo" in entry.metadata.citation
    # the publication record and DataCite 4.5 metadata
    pub = publishing.read_publication("partner_sst_1950")
    assert pub["pid"] == pid and pub["source"]["snapshot"] == snapshot
    dc = publishing.datacite_json(pub, url="https://example.org/pid/" + pid)
    assert dc["alternateIdentifiers"][0] == {"alternateIdentifier": pid,
                                             "alternateIdentifierType": "oceandata PID"}
    assert dc["creators"][0]["nameIdentifiers"][0]["nameIdentifier"].endswith(
        "0000-0002-1825-0097")
    xml = etree.fromstring(publishing.datacite_xml(pub).encode())
    ns = {"d": "http://datacite.org/schema/kernel-4"}
    assert xml.tag == "{http://datacite.org/schema/kernel-4}resource"
    assert xml.findtext("d:titles/d:title", namespaces=ns) == pub["title"]
    assert xml.find("d:alternateIdentifiers/d:alternateIdentifier", ns).text == pid
    assert xml.find("d:resourceType", ns).get("resourceTypeGeneral") == "Dataset"
    assert len(xml.findall("d:creators/d:creator", ns)) == 2
    # audited
    actions = [(r["action"], r["actor"]) for r in audit.read(action="publish.")
               if r["target"] == f"allocation:{a}"]
    assert ("publish.request", "pd-member") in actions
    assert ("publish.approve", "admin") in actions


def test_a_taken_name_is_refused_and_nothing_is_left(world: dict) -> None:
    a = world["a"]
    with db.session_scope(world["url"]) as s:
        rid = publishing.file_request(s, a, "pd-pi1", False, body()).id
        with pytest.raises(UsageError, match="taken in the open catalog"):
            publishing.approve(s, rid, "admin", True, {"name": "cobe_sst2"})
        with pytest.raises(UsageError, match="looks like a project entry"):
            publishing.approve(s, rid, "admin", True, {"name": f"p{a}.sst_good"})
        assert not (world["data"] / "published" / "cobe_sst2").exists()
        assert publishing.get_request(s, rid, "admin", True).status == PublishState.PENDING


def test_deny_needs_a_reason_and_is_audited(world: dict) -> None:
    a = world["a"]
    with db.session_scope(world["url"]) as s:
        rid = publishing.file_request(s, a, "pd-pi1", False, body()).id
        with pytest.raises(UsageError, match="reason is empty"):
            publishing.deny(s, rid, "admin", True, "")
        with pytest.raises(NotAuthorized):
            publishing.deny(s, rid, "pd-pi1", False, "no")
    with db.session_scope(world["url"]) as s:
        req = publishing.deny(s, rid, "admin", True, "The licence must be CC-BY-4.0.")
        assert req.status == PublishState.DENIED
    records = [r for r in audit.read(action="publish.deny")
               if r["target"] == f"allocation:{a}"]
    assert records and records[-1]["detail"]["reason"] == "The licence must be CC-BY-4.0."


def test_a_profile_publishes_the_desensitised_copy(world: dict) -> None:
    from oceandata.governance.desensitise import apply_profile, load_profile

    a, data = world["a"], world["data"]
    with db.session_scope(world["url"]) as s:
        rid = publishing.file_request(s, a, "pd-pi1", False,
                                      body(profile="regional_coarse")).id
    with db.session_scope(world["url"]) as s:
        req = publishing.approve(s, rid, "admin", True, {"name": "sst_coarse"})
        snapshot = req.snapshot
    store = data / "projects" / str(a) / "stores" / "sst_good.icechunk"
    source = open_store(store, version=snapshot)
    expected = apply_profile(source, load_profile("regional_coarse"),
                             name="regional_coarse").dataset
    copy = open_store(data / "published" / "sst_coarse" / "data.icechunk")
    assert copy.sizes["lat"] == source.sizes["lat"] // 2
    xr.testing.assert_allclose(copy["sst"].load(), expected["sst"].load())
    assert publishing.read_publication("sst_coarse")["profile"] == "regional_coarse"


# --------------------------------------------------------------------------- review 20 (P)


def test_sensitivity_embargo_and_negative_list_rule_publishing(
        world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reviewer's attack: an important, registered, embargoed entry filed with no
    profile came out open with its embargo gone. Now: a grade above general needs a
    profile (the entry's declared one is used when none is named, another is refused),
    an embargo refuses until it ends, the site's negative list refuses the entries it
    names (project or published name), and the request keeps the sensitivity grade."""
    from oceandata.config import get_settings

    a, data = world["a"], world["data"]
    later = (TODAY + dt.timedelta(days=365)).isoformat()
    base = {"category": "scientific", "release": "registered", "rationale": "sensitive",
            "owner": "pd-pi1"}
    project_store(data, a, "sst_imp", world["good"], classification={
        **base, "grade": "important", "embargo_until": later})
    project_store(data, a, "sst_imp2", world["good"], classification={
        **base, "grade": "important"})
    project_store(data, a, "sst_decl", world["good"], classification={
        **base, "grade": "important", "profile": "regional_coarse"})
    project_store(data, a, "sst_emb", world["good"], classification={
        **base, "grade": "general", "embargo_until": later})
    project_store(data, a, "sst_neg", world["good"])
    negative = tmp_path / "negative-list.yaml"
    negative.write_text("entries:\n  - pattern: 'sst_neg*'\n    reason: national rule\n"
                        "  - pattern: 'secret_*'\n    reason: national rule\n")
    monkeypatch.setenv("OCEANDATA_GOVERNANCE__NEGATIVE_LIST", str(negative))
    get_settings(reload=True)
    try:
        with db.session_scope(world["url"]) as s:
            for entry, extra, needle in [
                    ("sst_imp", {}, "graded important"),
                    ("sst_imp", {"profile": "regional_coarse"}, "under embargo until"),
                    ("sst_imp2", {}, "graded important"),
                    ("sst_decl", {"profile": "coastal_exclusion"}, "declares the profile"),
                    ("sst_emb", {}, "under embargo until"),
                    ("sst_neg", {}, "negative list")]:
                with pytest.raises(UsageError, match=needle) as err:
                    publishing.file_request(s, a, "pd-member", False,
                                            body(entry=entry, **extra))
                assert "\n" not in str(err.value)
            assert publishing.list_project_requests(s, a, "pd-pi1", False) == []
            imp = publishing.file_request(s, a, "pd-member", False,
                                          body(entry="sst_imp2", profile="regional_coarse"))
            decl = publishing.file_request(s, a, "pd-member", False, body(entry="sst_decl"))
            plain = publishing.file_request(s, a, "pd-member", False, body())
            assert (imp.grade, imp.profile) == ("important", "regional_coarse")
            assert (decl.grade, decl.profile) == ("important", "regional_coarse")
            assert plain.grade == "general" and plain.profile is None
            shown = publishing.request_dict(plain)
            assert shown["grade"] == "general" and shown["compliance"]["result"] == "pass"
            ids = imp.id, decl.id, plain.id
        # approval checks again: a published name on the negative list, an embargo set
        # since the request
        with db.session_scope(world["url"]) as s, pytest.raises(UsageError,
                                                                match="negative list"):
            publishing.approve(s, ids[2], "admin", True, {"name": "secret_sst"})
        catalog = data / "projects" / str(a) / "catalog.yaml"
        doc = yaml.safe_load(catalog.read_text())
        doc["sources"]["sst_decl"]["metadata"]["classification"]["embargo_until"] = later
        catalog.write_text(yaml.safe_dump(doc))
        with db.session_scope(world["url"]) as s, pytest.raises(UsageError,
                                                                match="under embargo"):
            publishing.approve(s, ids[1], "admin", True)
        assert not (data / "published").exists() or not any((data / "published").iterdir())
        # the important entry through its profile: published, the grade recorded
        with db.session_scope(world["url"]) as s:
            req = publishing.approve(s, ids[0], "admin", True, {"name": "sst_imp_coarse"})
            assert req.status == PublishState.APPROVED
        pub = publishing.read_publication("sst_imp_coarse")
        assert pub["grade"] == "important" and pub["profile"] == "regional_coarse"
        copy = open_store(data / "published" / "sst_imp_coarse" / "data.icechunk")
        assert copy.sizes["lat"] == 90  # coarsened: 180 / 2
    finally:
        monkeypatch.delenv("OCEANDATA_GOVERNANCE__NEGATIVE_LIST")
        get_settings(reload=True)


BAD_TEXT = ["SST\x07 bell", "c\x0bd", "nul\x00x", "esc\x1b[31m", "del\x7fx", "c1\x85x",
            "surrogate\ud800x", "nonchar\uffffx", "cr\x1cx"]


def test_control_characters_are_refused_and_the_xml_is_built_at_approval(world: dict
                                                                         ) -> None:
    """The reviewer's attack: a bell in the title was accepted and every later
    ``datacite.xml`` of the PID was a 500. Control characters (tab and newline aside) are
    refused in title, citation and authors at the request and in an approval's changes;
    a catalog description with one is cleaned; the XML is built once at approval."""
    a, data = world["a"], world["data"]
    with db.session_scope(world["url"]) as s:
        for bad in BAD_TEXT:
            for field in ({"title": bad}, {"citation": bad},
                          {"authors": [{"name": bad, "affiliation": "U"}]},
                          {"authors": [{"name": "N", "affiliation": bad}]},
                          {"authors": [f"N;{bad}"]}):
                with pytest.raises(UsageError, match="control character") as err:
                    publishing.file_request(s, a, "pd-member", False, body(**field))
                assert "\n" not in str(err.value)
        assert publishing.list_project_requests(s, a, "pd-pi1", False) == []
        req = publishing.file_request(s, a, "pd-member", False, body(
            title="SST\tof 1950", citation="Partner University (2026):\r\nSST of 1950."))
        rid = req.id
        assert req.citation == "Partner University (2026):\nSST of 1950."
        for bad in BAD_TEXT:
            for change in ({"title": bad}, {"citation": bad},
                           {"authors": [{"name": bad, "affiliation": "U"}]}):
                with pytest.raises(UsageError, match="control character"):
                    publishing.approve(s, rid, "admin", True, change)
        assert publishing.get_request(s, rid, "admin", True).status == PublishState.PENDING
    # a member-written catalog description with a control character (YAML's "\a")
    catalog = data / "projects" / str(a) / "catalog.yaml"
    text = catalog.read_text()
    doc = yaml.safe_load(text)
    doc["sources"]["sst_good"]["description"] = "SST \x07 of 1950"
    catalog.write_text(yaml.safe_dump(doc))
    with db.session_scope(world["url"]) as s:
        req = publishing.approve(s, rid, "admin", True, {"name": "sst_ctl"})
    pub = publishing.read_publication("sst_ctl")
    xml = etree.fromstring(publishing.datacite_xml(pub).encode())
    assert "\x07" not in etree.tostring(xml, encoding="unicode")


def test_project_catalogs_refuse_yaml_anchors_and_huge_documents(tmp_path: Path) -> None:
    """The reviewer's alias bomb (512 bytes, 10 s a load, x10 a level of nesting): project
    catalogs may use no anchors or aliases and hold a bounded number of nodes; refused
    at once with one line."""
    import time

    from oceandata.catalog import projects as pc
    from oceandata.errors import CatalogError

    ws = tmp_path / "ws"
    (ws / "stores").mkdir(parents=True)
    head = ["sources:", "  s:", "    driver: icechunk", "    args:",
            f"      urlpath: {ws}/stores/s.icechunk", '      a0: &a0 ["x"]']
    lines = head + [f"      a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]"
                    for i in range(1, 9)]
    (ws / "catalog.yaml").write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    with pytest.raises(CatalogError, match="may not use YAML anchors or aliases") as err:
        pc.load_project_catalog(1, ws)
    assert time.monotonic() - started < 2 and "\n" not in str(err.value)
    # an anchor alone, and a merge key, are refused too
    (ws / "catalog.yaml").write_text("\n".join(head) + "\n")
    with pytest.raises(CatalogError, match="anchors or aliases"):
        pc.load_project_catalog(1, ws)
    # many nodes in few bytes (under the size cap)
    many = "sources:\n  s:\n    driver: icechunk\n    args:\n      x: [" + ",".join(
        ["1"] * (pc.MAX_CATALOG_NODES + 10)) + "]\n"
    assert len(many) < pc.MAX_CATALOG_BYTES
    (ws / "catalog.yaml").write_text(many)
    with pytest.raises(CatalogError, match="nodes"):
        pc.load_project_catalog(1, ws)


def test_a_bomb_in_the_catalog_refuses_a_request_in_one_line(world: dict) -> None:
    a, data = world["a"], world["data"]
    catalog = data / "projects" / str(a) / "catalog.yaml"
    catalog.write_text(catalog.read_text() + "x: &x [1]\ny: *x\n")
    with db.session_scope(world["url"]) as s, pytest.raises(
            UsageError, match="anchors or aliases") as err:
        publishing.file_request(s, a, "pd-member", False, body())
    assert "\n" not in str(err.value)


def test_two_concurrent_approvals_only_one_proceeds(world: dict,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Two administrators approve the same request at once (the second while the first is
    copying): only one publishes; the other is refused with one line."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    a, data = world["a"], world["data"]
    with db.session_scope(world["url"]) as s:
        rid = publishing.file_request(s, a, "pd-member", False, body()).id
    second: list[BaseException | str] = []
    from oceandata.ingest import pipeline

    write_store = pipeline.write_new_store

    def copying(*args, **kwargs):
        if not second:  # the first approval is copying: the second one comes in now
            second.append("started")
            engine = create_engine(world["url"], connect_args={"timeout": 0.5})
            try:
                with Session(engine) as s2:
                    publishing.approve(s2, rid, "admin2", True, {"name": "sst_second"})
                    s2.commit()
                    second.append("approved")
            except UsageError as exc:
                second.append(exc)
            finally:
                engine.dispose()
        return write_store(*args, **kwargs)

    monkeypatch.setattr(pipeline, "write_new_store", copying)
    with db.session_scope(world["url"]) as s:
        publishing.approve(s, rid, "admin", True, {"name": "sst_first"})
    assert isinstance(second[-1], UsageError), second
    assert "being decided" in str(second[-1]) or "approved already" in str(second[-1])
    assert sorted(p.name for p in (data / "published").iterdir()) == ["sst_first"]
    with db.session_scope(world["url"]) as s:
        req = publishing.get_request(s, rid, "admin", True)
        assert req.status == PublishState.APPROVED and req.published_name == "sst_first"
        with pytest.raises(UsageError, match="approved already"):
            publishing.deny(s, rid, "admin2", True, "too late")


# --------------------------------------------------------------------------- review 20b (H2)


def edit_chunks(store: Path) -> int:
    """Change one sst value in every sst chunk file of *store*, in place: the same files
    (inodes), as a member's write descriptor opened before the seal still can, and the
    same length (a zstd skippable frame pads it), so Icechunk reads the edit. Returns how
    many chunks were edited."""
    import struct

    import numcodecs
    import numpy as np

    edited = 0
    for path in sorted((store / "chunks").iterdir()):
        data = path.read_bytes()
        try:
            values = np.frombuffer(numcodecs.Zstd().decode(data), "<f4").copy()
        except Exception:
            continue
        if values.size != 12 * 180 * 360:  # a coordinate's chunk
            continue
        values[int(np.flatnonzero(np.isfinite(values))[0])] += 5
        for level in range(1, 20):
            new = numcodecs.Zstd(level=level).encode(values.tobytes())
            if len(new) + 8 <= len(data):
                break
        pad = len(data) - len(new) - 8
        with open(path, "r+b") as f:
            f.write(new + struct.pack("<II", 0x184D2A50, pad) + b"\0" * pad)
        edited += 1
    return edited


@pytest.mark.parametrize("how", ["swap", "descriptor", "during_copy", "profile"])
def test_approval_publishes_only_the_reviewed_data(world: dict, how: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The reviewer's attacks (review 20b): after the request, the member swaps the sealed
    store for a copy with a chunk edited (same snapshot ids), or edits the sealed chunk
    through a descriptor kept open (before the approval, or while its copy reads it,
    with and without a profile): the approval refuses in one sentence and keeps nothing."""
    a, data = world["a"], world["data"]
    store = data / "projects" / str(a) / "stores" / "sst_good.icechunk"
    profile = {"profile": "regional_coarse"} if how == "profile" else {}
    with db.session_scope(world["url"]) as s:
        req = publishing.file_request(s, a, "pd-member", False, body(**profile))
        rid = req.id
        assert set(req.compliance["digests"]) == {"lat", "lon", "sst", "time"}
    if how == "swap":
        os.rename(store, store.with_suffix(".old"))
        shutil.copytree(store.with_suffix(".old"), store)
        assert edit_chunks(store) == 1
    elif how in ("descriptor", "profile"):
        assert edit_chunks(store) == 1
    else:
        from oceandata.ingest import pipeline

        write_store = pipeline.write_new_store

        def copying(*args, **kwargs):
            assert edit_chunks(store) == 1  # while the copy reads the shadow
            return write_store(*args, **kwargs)

        monkeypatch.setattr(pipeline, "write_new_store", copying)
    with db.session_scope(world["url"]) as s, pytest.raises(
            UsageError, match="changed since the request was filed") as err:
        publishing.approve(s, rid, "admin", True, {"name": "sst_tampered"})
    assert "\n" not in str(err.value)
    assert not (data / "published" / "sst_tampered").exists()
    if os.geteuid() == 0:
        assert not any((data / "sealed").glob("*/*"))
    with db.session_scope(world["url"]) as s:
        assert publishing.get_request(s, rid, "admin", True).status == PublishState.PENDING


def test_approval_freezes_the_platform_copy_not_the_project_store(world: dict) -> None:
    """Approval never writes (or opens in place, as root) the member's store: the tag that
    never moves is on the platform-owned copy, the source snapshot in the record
    (review 20b: a member could replace refs/ files with links or pipes)."""
    a, data = world["a"], world["data"]
    store = data / "projects" / str(a) / "stores" / "sst_good.icechunk"
    with db.session_scope(world["url"]) as s:
        req = publishing.file_request(s, a, "pd-member", False, body())
        rid, snapshot = req.id, req.snapshot
    refs = sorted(p.name for p in (store / "refs").iterdir())
    with db.session_scope(world["url"]) as s:
        req = publishing.approve(s, rid, "admin", True, {"name": "sst_frozen"})
        pid, tag = req.pid, req.tag
    assert tag == f"published-{pid}"
    assert sorted(p.name for p in (store / "refs").iterdir()) == refs  # no tag there
    copy = data / "published" / "sst_frozen" / "data.icechunk"
    pub = publishing.read_publication("sst_frozen")
    assert open_repository(copy).lookup_tag(tag) == pub["store_snapshot"]
    assert pub["source"]["snapshot"] == snapshot and pub["tag"] == tag
    xr.testing.assert_identical(open_store(copy, version=tag).drop_attrs().load(),
                                open_store(store, version=snapshot).drop_attrs().load())


def test_the_attributes_digest_sees_attributes_and_packing() -> None:
    """What the data digests (stored values) cannot see: attributes and the encoding that
    gives the stored values their meaning (a scale factor changed in the metadata)."""
    import numpy as np

    ds = xr.Dataset({"v": ("x", np.arange(3, dtype="i2"), {"units": "K"})})
    ds["v"].encoding = {"scale_factor": 0.01, "dtype": "int16"}
    base = publishing.attrs_digest(ds)
    assert publishing.attrs_digest(ds.copy(deep=True)) == base
    other = ds.copy(deep=True)
    other["v"].encoding["scale_factor"] = 0.1
    assert publishing.attrs_digest(other) != base
    other = ds.copy(deep=True)
    other["v"].attrs["units"] = "degC"
    assert publishing.attrs_digest(other) != base
    other = ds.copy(deep=True)
    other.attrs["oceandata_snapshot"] = "ABC"  # the platform's own attributes aside
    assert publishing.attrs_digest(other) == base


@pytest.mark.parametrize("what", ["link", "fifo"])
def test_a_replaced_ref_refuses_the_approval_in_one_line(world: dict, what: str,
                                                         tmp_path: Path) -> None:
    """The reviewer's refs/ attacks (review 20b): after the request, the member replaces
    the branch's ref.json with a link to another store's or with a pipe: the approval
    reads only the shadow, refuses in one sentence (no 500, no blocking open) and keeps
    nothing."""
    a, b, data = world["a"], world["b"], world["data"]
    store = data / "projects" / str(a) / "stores" / "sst_good.icechunk"
    with db.session_scope(world["url"]) as s:
        rid = publishing.file_request(s, a, "pd-member", False, body()).id
    ref = store / "refs" / "branch.main" / "ref.json"
    ref.unlink()
    if what == "link":
        ref.symlink_to(data / "projects" / str(b) / "stores" / "sst_b.icechunk" / "refs"
                       / "branch.main" / "ref.json")
    else:
        os.mkfifo(ref.parent / "p", 0o600)
        ref.symlink_to("p")
    with db.session_scope(world["url"]) as s, pytest.raises(
            UsageError, match=r"cannot be approved: .*not served") as err:
        publishing.approve(s, rid, "admin", True, {"name": "sst_ref"})
    assert "\n" not in str(err.value)
    assert not (data / "published" / "sst_ref").exists()
