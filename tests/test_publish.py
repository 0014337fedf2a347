"""Publishing a project entry on the running platform (issue 20): requests over REST,
the CLI and the pages; the admin queue; approval with changes (tag, platform-owned copy,
open catalog, PID); an anonymous pystac-client search, the landing page and the DataCite
exports of the data service; a denial with its reason in the audit trail.

Runs on the session's :func:`projects_hub` with users named ``pd-...``: two projects
(A: a PI and a member; B: another PI) and an outsider. The project stores are made with
the public ingest API in A's workspace and registered in its project catalog, as
``oceandata ingest --project`` does.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
import xarray as xr
from lxml import etree

from tests.hub_helpers import Hub, HubClient, new_user
from tests.test_publishing_core import fixed_cobe

pytestmark = [pytest.mark.slow]

SERVICE = "/services/allocations"
DATA = "/services/data"
OCEANDATA = str(Path(sys.executable).with_name("oceandata"))
TODAY = dt.date.today()


def api(user: HubClient, method: str, path: str, **kw: Any) -> requests.Response:
    return user.api(method, f"{SERVICE}/api/{path}", allow_redirects=False, **kw)


def page(hub: Hub, user: HubClient, path: str, **kw: Any) -> requests.Response:
    method = "POST" if "data" in kw else "GET"
    return requests.request(method, f"{hub.url}{SERVICE}/{path}", timeout=600,
                            allow_redirects=False,
                            cookies={"oceandata-alloc-auth": user.token or ""}, **kw)


def cli(hub: Hub, user: HubClient, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTERHUB_", "OCEANDATA_ALLOC_"))}
    env.update({"OCEANDATA_ALLOC_URL": f"{hub.url}{SERVICE}", "OCEANDATA_TOKEN": user.token})
    done = subprocess.run([OCEANDATA, *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
    if code:
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    return done


def _project(user: HubClient, admin: HubClient) -> int:
    body = {"project_title": f"Data of {user.name}", "pi": "Dr. P. I.",
            "institution": "Partner University", "justification": "Open our SST.",
            "core_hours": 10, "max_cores": 2, "memory_per_job_gb": 2, "storage_gb": 5,
            "start_date": (TODAY - dt.timedelta(days=1)).isoformat(),
            "end_date": (TODAY + dt.timedelta(days=30)).isoformat(), "datasets": []}
    r = api(user, "POST", "allocations", json=body)
    assert r.status_code == 201, r.text
    alloc_id = r.json()["id"]
    assert api(admin, "POST", f"allocations/{alloc_id}/approve").status_code == 200
    return alloc_id


def _store(hub: Hub, alloc_id: int, name: str, source: Path) -> Path:
    """An entry of the project catalog, as ``oceandata ingest --project`` leaves it."""
    from oceandata.alloc.workspaces import workspace_path
    from oceandata.ingest.pipeline import ingest
    from oceandata.ingest.register import register_store

    workspace = workspace_path(alloc_id, hub.runtime.data_dir)
    (workspace / "stores").mkdir(parents=True, exist_ok=True)
    store = workspace / "stores" / f"{name}.icechunk"
    ingest([source], store, name=name, check=False)
    register_store(workspace / "catalog.yaml", name, store,
                   defaults={"license": "CC-BY-4.0", "provider": "Partner University"})
    return store


@pytest.fixture(scope="module")
def world(projects_hub: Hub, projects_admin: HubClient, sample,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    hub, admin = projects_hub, projects_admin
    tag = uuid.uuid4().hex[:5]
    pi_a, member, pi_b, outsider = (new_user(hub, admin, f"pd-{role}{tag}")
                                    for role in ("pia", "mem", "pib", "out"))
    a, b = _project(pi_a, admin), _project(pi_b, admin)
    r = api(pi_a, "POST", f"projects/{a}/members", json={"user": member.name})
    assert r.status_code == 200, r.text
    cobe = Path(sample("gridded/cobe-sst2/year1950.nc"))
    good = fixed_cobe(cobe, tmp_path_factory.mktemp("publish") / "good.nc")
    name = f"sst{tag}"
    return {"hub": hub, "admin": admin, "pi_a": pi_a, "member": member, "pi_b": pi_b,
            "outsider": outsider, "a": a, "b": b, "name": name,
            "store": _store(hub, a, name, good), "raw": _store(hub, a, f"raw{tag}", cobe)}


def body(world: dict, **changes: Any) -> dict[str, Any]:
    out = {"entry": world["name"], "licence": "CC-BY-4.0",
           "citation": "Partner University (2026): COBE-SST2 1950, checked.",
           "authors": [{"name": "Ocean, Ada", "affiliation": "Partner University",
                        "orcid": "0000-0002-1825-0097"}]}
    out.update(changes)
    return out


def test_refused_without_licence_failing_compliance_or_by_a_non_member(world: dict) -> None:
    hub, a, member = world["hub"], world["a"], world["member"]
    for changes, needle in (({"licence": ""}, "licence is required"),
                            ({"entry": world["raw"].stem}, "fails the strict compliance"),
                            ({"authors": []}, "at least one author")):
        r = api(member, "POST", f"projects/{a}/publish", json=body(world, **changes))
        assert r.status_code == 400 and needle in r.json()["error"], r.text
    for user in (world["outsider"], world["pi_b"]):
        r = api(user, "POST", f"projects/{a}/publish", json=body(world))
        assert r.status_code == 404 and r.json()["error"] == f"no project {a} of yours"
        assert api(user, "GET", f"projects/{a}/publish").status_code == 404
        # the queue is the administrators'
        assert api(user, "GET", "publish-requests").status_code == 403
    # the CLI: one line, exit 2 (checked by the service, not only by the client)
    err = cli(hub, member, "publish-request", world["raw"].stem, "--project", str(a),
              "--licence", "CC-BY-4.0", "--citation", "x", "--author", "A;B", code=2).stderr
    assert "fails the strict compliance check" in err
    err = cli(hub, world["outsider"], "publish-request", world["name"], "--project", str(a),
              "--licence", "CC-BY-4.0", "--citation", "x", "--author", "A;B", code=2).stderr
    assert f"no project {a} of yours" in err
    assert api(member, "GET", f"projects/{a}/publish").json() == []


def test_approved_with_changes_then_found_by_anyone(world: dict) -> None:
    import pystac_client
    from datacite import schema45

    from oceandata.ingest.store import open_repository, open_store

    hub, a, member, admin = world["hub"], world["a"], world["member"], world["admin"]
    done = cli(hub, member, "publish-request", world["name"], "--project", str(a),
               "--licence", "CC-BY-4.0", "--citation", "Partner University (2026): SST.",
               "--author", "Ocean, Ada;Partner University;0000-0002-1825-0097",
               "--author", "Float, Bo;Data Centre", "--json")
    import json

    req = json.loads(done.stdout)
    assert req["status"] == "pending" and req["grade"] == "general"
    assert req["compliance"]["result"] == "pass"
    assert req["compliance"]["high_failures"] == 0 and req["category"] == "scientific"
    queue = api(admin, "GET", "publish-requests", params={"status": "pending"}).json()
    assert req["id"] in [r["id"] for r in queue]
    # members of project B cannot see it; a member cannot approve it
    assert api(world["pi_b"], "GET", f"publish-requests/{req['id']}").status_code == 404
    assert api(member, "POST", f"publish-requests/{req['id']}/approve").status_code == 403
    published = f"partner_{world['name']}"
    r = api(admin, "POST", f"publish-requests/{req['id']}/approve", json={
        "changes": {"title": "COBE-SST2 1950 from our partners", "name": published}})
    assert r.status_code == 200, r.text
    out = r.json()
    pid = out["pid"]
    assert out["status"] == "approved" and out["published_name"] == published
    assert out["changes"] == {"title": "COBE-SST2 1950 from our partners"}
    # the tag freezes the platform's copy (none in the project store); the copy equals
    # the reviewed version
    store = world["store"]
    assert out["tag"] not in open_repository(store).list_tags()
    copy = hub.runtime.data_dir / "published" / published / "data.icechunk"
    assert open_repository(copy).lookup_tag(out["tag"])
    xr.testing.assert_identical(
        open_store(copy, version=out["tag"]).drop_attrs().load(),
        open_store(store, version=req["snapshot"]).drop_attrs().load())
    # an anonymous pystac-client search finds it, with its citation
    client = pystac_client.Client.open(f"{hub.url}{DATA}/stac")
    items = list(client.search(collections=[published], max_items=10).items())
    assert [i.id for i in items] == [published]
    found = client.search(bbox=[100, 0, 120, 20], datetime="1950-06-01/1950-06-30",
                          max_items=1000)
    assert published in [i.id for i in found.items()]
    item = items[0]
    assert pid in item.properties["sci:citation"]
    assert "Ocean, Ada; Float, Bo" in item.properties["sci:citation"]
    cite_as = [link.href for link in item.links if link.rel == "cite-as"]
    assert cite_as == [f"{hub.url}{DATA}/pid/{pid}"]
    # the landing page, for anyone, with how to cite; the DataCite exports
    landing = requests.get(cite_as[0], timeout=60, headers={"Accept": "text/html"})
    assert landing.status_code == 200
    assert 'id="how-to-cite"' in landing.text and pid in landing.text
    assert "COBE-SST2 1950 from our partners" in landing.text
    assert out["tag"] in landing.text and req["snapshot"] in landing.text
    dc = requests.get(f"{cite_as[0]}/datacite.json", timeout=60).json()
    schema45.validate(dc)
    assert dc["alternateIdentifiers"] == [{"alternateIdentifier": pid,
                                           "alternateIdentifierType": "oceandata PID"}]
    assert dc["url"] == cite_as[0] and dc["rightsList"][0]["rightsIdentifier"] == "CC-BY-4.0"
    xml = requests.get(f"{cite_as[0]}/datacite.xml", timeout=60)
    assert xml.headers["content-type"].startswith("application/xml")
    root = etree.fromstring(xml.content)
    ns = {"d": "http://datacite.org/schema/kernel-4"}
    assert root.findtext("d:titles/d:title", namespaces=ns) == dc["titles"][0]["title"]
    assert [c.findtext("d:creatorName", namespaces=ns)
            for c in root.findall("d:creators/d:creator", ns)] == ["Ocean, Ada", "Float, Bo"]
    # the dataset page names the PID; the data open anonymously over Zarr
    ds_page = requests.get(f"{hub.url}{DATA}/datasets/{published}", timeout=60,
                           headers={"Accept": "text/html"})
    assert ds_page.status_code == 200 and f">{pid}</a>" in ds_page.text
    zarr = xr.open_zarr(f"{hub.url}{DATA}/datasets/{published}/zarr", consolidated=True)
    assert "sst" in zarr
    # unknown or mistyped identifiers: 404, one sentence
    wrong = pid[:-1] + ("0" if pid[-1] != "0" else "1")
    for bad in (wrong, "OD-2026-XXXXXXX", "not-a-pid"):
        r = requests.get(f"{hub.url}{DATA}/pid/{bad}", timeout=60)
        assert r.status_code == 404 and "identifier" in r.json()["detail"]
    # the member's page lists it with its PID; the admin's queue shows it decided
    shown = page(hub, member, f"projects/{a}/publish")
    assert shown.status_code == 200 and f">{pid}</a>" in shown.text
    queue_page = page(hub, admin, "admin/publish")
    assert queue_page.status_code == 200 and pid in queue_page.text
    assert page(hub, member, "admin/publish").status_code == 403


def test_filed_on_the_page_and_denied_with_a_reason(world: dict) -> None:
    from oceandata.governance import audit

    hub, a, pi_a, admin = world["hub"], world["a"], world["pi_a"], world["admin"]
    form = page(hub, pi_a, f"projects/{a}/publish")
    assert form.status_code == 200 and f'value="{world["name"]}"' in form.text
    csrf = re.search(r'name="_csrf" value="([^"]+)"', form.text)[1]
    fields = {"entry": world["name"], "licence": "CC0-1.0", "citation": "Ours, 2026.",
              "authors": "Pi, Ann;Partner University"}
    # without the CSRF token: refused, nothing filed
    assert page(hub, pi_a, f"projects/{a}/publish", data=fields).status_code == 403
    r = page(hub, pi_a, f"projects/{a}/publish", data={**fields, "licence": "",
                                                        "_csrf": csrf})
    assert r.status_code == 400 and "licence is required" in r.text
    r = page(hub, pi_a, f"projects/{a}/publish", data={**fields, "_csrf": csrf})
    assert r.status_code == 303, r.text
    n = int(re.search(r"n=(\d+)", r.headers["Location"])[1])
    # the admin denies it on the queue page, with a reason
    queue = page(hub, admin, "admin/publish")
    assert f'id="pending-{n}"' in queue.text
    assert f'id="grade-{n}">general</strong>' in queue.text  # the sensitivity grade
    csrf = re.search(r'name="_csrf" value="([^"]+)"', queue.text)[1]
    reason = "The citation must name the cruise."
    r = page(hub, admin, f"admin/publish/{n}/deny", data={"reason": "", "_csrf": csrf})
    assert r.status_code == 400 and "reason is empty" in r.text
    r = page(hub, admin, f"admin/publish/{n}/deny", data={"reason": reason, "_csrf": csrf})
    assert r.status_code == 303
    got = api(pi_a, "GET", f"publish-requests/{n}").json()
    assert got["status"] == "denied" and got["reason"] == reason and got["pid"] is None
    records = [rec for rec in audit.read(action="publish.deny", url=hub.runtime.audit_url)
               if rec["detail"].get("request") == n]
    assert [(rec["actor"], rec["detail"]["reason"]) for rec in records] == [
        (admin.name, reason)]
    r = api(admin, "POST", f"publish-requests/{n}/approve")
    assert r.status_code == 400 and "denied already" in r.json()["error"]


def test_approved_on_the_queue_page_control_characters_refused(world: dict) -> None:
    """The queue page's approval: a textarea's CRLF citation is no change; a control
    character is refused (REST and page) in one sentence and the request stays pending."""
    hub, a, member, admin = world["hub"], world["a"], world["member"], world["admin"]
    r = api(member, "POST", f"projects/{a}/publish", json=body(world, title="SST\x07"))
    assert r.status_code == 400 and "control character U+0007" in r.json()["error"]
    citation = "Partner University (2026):\nCOBE-SST2 1950."
    r = api(member, "POST", f"projects/{a}/publish", json=body(world, citation=citation))
    assert r.status_code == 201, r.text
    n = r.json()["id"]
    queue = page(hub, admin, "admin/publish")
    assert f'id="grade-{n}">general</strong>' in queue.text
    csrf = re.search(r'name="_csrf" value="([^"]+)"', queue.text)[1]
    form = {"_csrf": csrf, "name": f"{world['name']}_page", "title": "", "licence": "",
            "authors": "", "citation": citation.replace("\n", "\r\n")}
    r = page(hub, admin, f"admin/publish/{n}/approve", data={**form, "title": "A\x1bB"})
    assert r.status_code == 400 and "control character U+001B" in r.text
    assert api(admin, "GET", f"publish-requests/{n}").json()["status"] == "pending"
    r = page(hub, admin, f"admin/publish/{n}/approve", data=form)
    assert r.status_code == 303, r.text
    got = api(member, "GET", f"publish-requests/{n}").json()
    assert got["status"] == "approved" and got["changes"] is None
    assert got["citation"] == citation and got["published_name"] == f"{world['name']}_page"
    xml = requests.get(f"{hub.url}{DATA}/pid/{got['pid']}/datacite.xml", timeout=60)
    assert xml.status_code == 200 and b"COBE-SST2 1950" in xml.content
