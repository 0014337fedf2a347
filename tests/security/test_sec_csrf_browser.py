"""Cross-origin CSRF against our services, replayed in Chromium with a hostile second origin.

A signed-in partner (and admin) browses a page served on another loopback port: another
origin, but the same site, so ``SameSite=Lax`` cookies are sent and the page may plant
cookies for the hub's host. The probe used such pages to submit a job charged to the
partner's allocation (a ``text/plain`` form parsed as JSON) and to defeat the double-submit
CSRF cookie by planting it. Each attack is replayed; the server's state is read back with
tokens afterwards: no job, no request, no approval.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from conftest import HostileSite, fresh_name
from hub_helpers import PASSWORD, Hub, HubClient, new_user

from tests.browser_helpers import launched_browser

pytestmark = [pytest.mark.slow]

SERVICE = "/services/allocations"
REQUEST = {"project_title": "Hostile", "pi": "Mallory", "institution": "Evil",
           "justification": "none", "core_hours": "5", "max_cores": "1",
           "memory_per_job_gb": "1", "storage_gb": "1", "start_date": "2026-01-01",
           "end_date": "2030-01-01"}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with launched_browser() as b:
        yield b


def _signed_in(browser, hub: Hub, name: str, password: str):
    """A browser context logged in at the hub and at the allocations service (OAuth)."""
    ctx = browser.new_context()
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{hub.url}/hub/login?next=/hub/home")
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.wait_for_url(re.compile(r"/hub/home"))
    response = page.goto(f"{hub.url}{SERVICE}/")
    assert response is not None and response.status == 200, page.url
    assert page.text_content("#whoami") == name
    return ctx, page


def _jobs(client: HubClient) -> list:
    return client.api("GET", f"{SERVICE}/api/jobs").json()


def _allocations(client: HubClient) -> list:
    return client.api("GET", f"{SERVICE}/api/allocations").json()


def _form(action: str, fields: dict[str, str], enctype: str = "") -> str:
    inputs = "".join(f"<input type=hidden name='{k}' value='{v}'>" for k, v in fields.items())
    kind = f" enctype='{enctype}'" if enctype else ""
    return (f"<form id=f method=post action='{action}'{kind}>{inputs}</form>"
            "<script>document.getElementById('f').submit()</script>")


def test_cross_origin_pages_cannot_submit_jobs_or_requests(
        browser, sec_hub: Hub, sec_admin: HubClient, hostile_site: HostileSite) -> None:
    partner = new_user(sec_hub, sec_admin, fresh_name("v"))
    r = partner.api("POST", f"{SERVICE}/api/allocations", json={
        k: (float(v) if k in ("core_hours", "memory_per_job_gb", "storage_gb") else
            int(v) if k == "max_cores" else v) for k, v in REQUEST.items()})
    alloc_id = r.json()["id"]
    assert sec_admin.api("POST", f"{SERVICE}/api/allocations/{alloc_id}/approve",
                         json={}).status_code == 200
    ctx, page = _signed_in(browser, sec_hub, partner.name, PASSWORD)
    try:
        target = f"{sec_hub.url}{SERVICE}"
        # 1. text/plain "JSON": name={"script":"...","x": value="} -> a JSON body
        script = "import os; open('/tmp/pwned-' + os.environ['USER'], 'w')"
        name = json.dumps({"script": script, "allocation_id": alloc_id,
                           "walltime": "1:00"})[:-1] + ', "x": "'
        page.goto(hostile_site.serve(
            f"<form id=f method=post action='{target}/api/jobs' enctype='text/plain'>"
            f"<input type=hidden name='{name}' value='\"}}'></form>"
            "<script>document.getElementById('f').submit()</script>"))
        page.wait_for_url(re.compile(r"/api/jobs$"))
        assert "CSRF" in page.content()  # refused before the body is even read
        # 2. multipart through fetch (no-cors, the cookie goes along): no CSRF token
        page.goto(hostile_site.serve(
            "<script>const d = new FormData();"
            f"d.append('script', new Blob([{json.dumps(script)}]), 'x.py');"
            f"d.append('allocation_id', '{alloc_id}');"
            f"fetch('{target}/api/jobs', {{method: 'POST', body: d, mode: 'no-cors', "
            "credentials: 'include'}).finally(() => { document.title = 'sent'; });"
            "</script>"))
        page.wait_for_function("document.title === 'sent'")
        # 3. the old double submit: plant the CSRF cookie for the hub's host, post it back
        page.goto(hostile_site.serve(
            "<script>document.cookie = 'oceandata-alloc-csrf=planted; path=/services/"
            "allocations';</script>"
            + _form(f"{target}/request", {**REQUEST, "_csrf": "planted"})))
        page.wait_for_url(re.compile(r"/request$"))
        assert "CSRF" in page.content()
        assert _jobs(partner) == []
        assert [a["id"] for a in _allocations(partner)] == [alloc_id]
        # the partner's own page still works: the same form, from the service's origin
        page.goto(f"{target}/request")
        for field, value in REQUEST.items():
            page.fill(f"#{field}", value)
        page.click("#submit-request")
        page.wait_for_url(re.compile(rf"{SERVICE}/\?message=filed"))
        assert len(_allocations(partner)) == 2
    finally:
        ctx.close()


def test_cross_origin_pages_cannot_approve_as_the_admin(
        browser, sec_hub: Hub, sec_admin: HubClient, hostile_site: HostileSite) -> None:
    mallory = new_user(sec_hub, sec_admin, fresh_name("m"))
    r = mallory.api("POST", f"{SERVICE}/api/allocations", json={
        **REQUEST, "core_hours": 1e6, "max_cores": 64})
    assert r.status_code == 201, r.text
    alloc_id = r.json()["id"]
    ctx, page = _signed_in(browser, sec_hub, sec_hub.runtime.admin, sec_hub.admin_password)
    try:
        target = f"{sec_hub.url}{SERVICE}"
        page.goto(hostile_site.serve(
            "<script>document.cookie = 'oceandata-alloc-csrf=planted; path=/services/"
            "allocations';</script>"
            + _form(f"{target}/admin/{alloc_id}/approve", {"_csrf": "planted", "note": "ok"})))
        page.wait_for_url(re.compile(r"/approve$"))
        page.goto(hostile_site.serve(
            f"<script>fetch('{target}/api/allocations/{alloc_id}/approve', {{method: 'POST', "
            "mode: 'no-cors', credentials: 'include', headers: {'Content-Type': "
            "'text/plain'}, body: '{}'}).finally(() => { document.title = 'sent'; });"
            "</script>"))
        page.wait_for_function("document.title === 'sent'")
        shown = sec_admin.api("GET", f"{SERVICE}/api/allocations/{alloc_id}").json()
        assert shown["status"] == "pending", shown
        # the admin's own click on the review page approves it
        page.goto(f"{target}/admin")
        page.click(f"#approve-{alloc_id}")
        page.wait_for_url(re.compile(r"message=approved"))
        shown = sec_admin.api("GET", f"{SERVICE}/api/allocations/{alloc_id}").json()
        assert shown["status"] == "approved", shown
    finally:
        ctx.close()
