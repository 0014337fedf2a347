"""The allocations pages in a real browser (headless Chromium driven by Playwright).

A partner logs in at the hub, opens ``/services/allocations/request`` (the service sends
the browser through the hub's OAuth login), files a request with the form and sees it in
"my allocations"; the admin approves it from the review queue with a changed amount; the
partner sees it approved, with the change in the audit log; the usage page draws its SVG
chart on the server. Every step runs twice: with JavaScript and with JavaScript disabled
(the pages are plain HTML forms).

Chromium is the Debian package (``/usr/bin/chromium``), as in ``test_hub_browser.py``:
without it the tests are skipped, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from oceandata.alloc import core, db
from oceandata.dataservice.ledger import Ledger
from tests.browser_helpers import ARTIFACTS, launched_browser
from tests.hub_helpers import (
    PASSWORD,
    Hub,
    HubClient,
    admin_client,
    new_user,
    running_hub,
    wait_for_service,
)

pytestmark = [pytest.mark.slow]

SERVICE = "/services/allocations"
PAGE_MS = 60_000




@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with launched_browser() as b:
        yield b


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with running_hub(tmp_path_factory.mktemp("hub-alloc-pages") / "var") as h:
        wait_for_service(h)
        yield h


@pytest.fixture(scope="module")
def admin(hub: Hub) -> HubClient:
    return admin_client(hub)


def _login(page, hub: Hub, name: str, password: str) -> None:
    """Log in with the hub's form; land on /hub/home (no server is spawned)."""
    response = page.goto(f"{hub.url}/hub/login?next=/hub/home")
    assert response is not None and response.status == 200
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.wait_for_url(re.compile(r"/hub/home"))


def _open(page, url: str, status: int = 200):
    response = page.goto(url)
    assert response is not None and response.status == status, (
        f"{url}: {response and response.status} at {page.url}")
    return response


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_request_review_and_usage_in_the_browser(browser, hub: Hub, admin: HubClient,
                                                 javascript: bool, tmp_path: Path) -> None:
    partner = new_user(hub, admin, f"partner{uuid.uuid4().hex[:6]}")
    base = f"{hub.url}{SERVICE}"
    partner_ctx = browser.new_context(java_script_enabled=javascript)
    admin_ctx = browser.new_context(java_script_enabled=javascript)
    try:
        page = partner_ctx.new_page()
        page.set_default_timeout(PAGE_MS)
        if not javascript:  # the context really runs no script
            page.set_content("<p id=x>static</p><script>document.getElementById('x')"
                             ".textContent = 'script ran'</script>")
            assert page.text_content("#x") == "static"

        # the partner: hub login, then the service's page through the hub's OAuth
        _login(page, hub, partner.name, PASSWORD)
        _open(page, f"{base}/request")
        assert page.url == f"{base}/request", page.url
        assert page.text_content("#whoami") == partner.name
        assert page.locator("a[href$='/admin']").count() == 0  # no review queue for partners

        # an invalid form comes back with the message next to the field
        page.fill("#project_title", "Heatwave hindcast")
        page.fill("#pi", "Dr. C. Current")
        page.fill("#institution", "Partner Institute")
        page.fill("#justification", "Marine heatwave statistics, 1982-2024.")
        page.fill("#core_hours", "-5")
        page.fill("#max_cores", "8")
        page.fill("#memory_per_job_gb", "16")
        page.fill("#storage_gb", "50")
        page.fill("#datasets", "oisst_wa")
        with page.expect_navigation() as nav:
            page.click("#submit-request")
        assert nav.value is not None and nav.value.status == 400
        assert "core_hours must be more than 0" in page.text_content("#error-core_hours")
        assert page.input_value("#project_title") == "Heatwave hindcast"  # kept
        assert page.locator("#error-pi").count() == 0

        page.fill("#core_hours", "400")
        page.click("#submit-request")
        page.wait_for_url(re.compile(rf"{SERVICE}/\?message="))
        assert "filed" in page.text_content("[role=status]")
        row = page.locator("#my-allocations tbody tr").first
        alloc_id = int((row.get_attribute("id") or "").removeprefix("allocation-"))
        assert row.locator(".status").text_content() == "pending"
        assert "Heatwave hindcast" in row.text_content()

        # a form POST without the CSRF token is refused (the browser's cookies are sent)
        refused = partner_ctx.request.post(f"{base}/request", form={
            "project_title": "forged", "pi": "x", "institution": "x", "justification": "x",
            "core_hours": "1", "max_cores": "1", "memory_per_job_gb": "1", "storage_gb": "1",
            "start_date": "2026-01-01", "end_date": "2026-12-31"}, max_redirects=0)
        assert refused.status == 403 and "CSRF" in refused.text()
        # the review queue is for administrators only
        _open(page, f"{base}/admin", status=403)

        # the admin: review queue, approve with a smaller amount and a note
        apage = admin_ctx.new_page()
        apage.set_default_timeout(PAGE_MS)
        _login(apage, hub, hub.runtime.admin, hub.admin_password)
        _open(apage, f"{base}/admin")
        card = apage.locator(f"#pending-{alloc_id}")
        assert partner.name in card.text_content()
        assert apage.input_value(f"#approve-{alloc_id}-core_hours") == "400.0"
        apage.fill(f"#approve-{alloc_id}-core_hours", "250")
        apage.fill(f"#approve-{alloc_id}-note", "start with a pilot")
        apage.click(f"#approve-{alloc_id}")
        apage.wait_for_url(re.compile(rf"{SERVICE}/admin\?message="))
        assert f"Allocation #{alloc_id} approved" in apage.text_content("[role=status]")
        assert apage.locator(f"#pending-{alloc_id}").count() == 0
        shot = tmp_path / "admin.png"
        apage.screenshot(path=str(shot), full_page=True)

        # the partner sees it approved, with the change in the audit log
        _open(page, f"{base}/")
        row = page.locator(f"#allocation-{alloc_id}")
        assert row.locator(".status").text_content() == "approved"
        _open(page, f"{base}/allocations/{alloc_id}")
        assert page.text_content("#status") == "approved"
        assert page.text_content("#reason") == "start with a pilot"
        audit = page.text_content("#audit")
        assert "core_hours: 400.0 → 250.0" in audit and hub.runtime.admin in audit

        # usage recorded by the gateway and batch jobs, drawn on the server
        url = f"sqlite:///{hub.runtime.data_dir / 'alloc' / 'alloc.sqlite'}"
        with db.session_scope(url) as session:
            core.charge(session, user=partner.name, allocation_id=alloc_id, source="batch",
                        ref=f"job-{alloc_id}", cores=4, seconds=9000)
        # and bytes downloaded from the open-data service, as its ledger writes them
        ledger = Ledger(url)
        ledger.record(f"user:{partner.name}", "cobe_sst2", "subset", 2_500_000)
        ledger.close()
        _open(page, f"{base}/usage")
        chart = page.locator("svg#usage-chart")
        assert chart.count() == 1
        bars = chart.locator("rect")
        assert bars.count() == 1  # only the partner's own usage
        assert float(bars.first.get_attribute("width") or 0) > 0
        assert f"#{alloc_id} {partner.name}" in chart.text_content()
        assert "10.00" in page.text_content("#usage")  # 4 cores * 2.5 h
        downloads = page.locator("svg#bytes-chart")
        assert downloads.locator("rect").count() == 1
        assert partner.name in downloads.text_content() and "2.5 MB" in \
            downloads.text_content()
        _open(page, f"{base}/allocations/{alloc_id}")
        assert page.text_content("#used").strip() == "10.00"
        assert page.text_content("#remaining").strip() == "240.00"

        _open(apage, f"{base}/usage")
        assert f"#{alloc_id} {partner.name}" in apage.locator("svg#usage-chart").text_content()
        shot = tmp_path / "usage.png"
        apage.screenshot(path=str(shot), full_page=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        suffix = "js" if javascript else "nojs"
        shutil.copy(shot, ARTIFACTS / f"alloc-usage-{suffix}.png")
        shutil.copy(tmp_path / "admin.png", ARTIFACTS / f"alloc-admin-{suffix}.png")
    finally:
        partner_ctx.close()
        admin_ctx.close()


def test_another_partners_allocation_is_not_found_in_the_browser(browser, hub: Hub,
                                                                  admin: HubClient) -> None:
    owner = new_user(hub, admin, f"owner{uuid.uuid4().hex[:6]}")
    other = new_user(hub, admin, f"other{uuid.uuid4().hex[:6]}")
    r = owner.api("POST", f"{SERVICE}/api/allocations", json={
        "project_title": "Private", "pi": "P", "institution": "I", "justification": "J",
        "core_hours": 10, "max_cores": 1, "memory_per_job_gb": 1, "storage_gb": 1,
        "start_date": "2026-01-01", "end_date": "2026-12-31"})
    assert r.status_code == 201, r.text
    alloc_id = r.json()["id"]
    ctx = browser.new_context(java_script_enabled=False)
    try:
        page = ctx.new_page()
        page.set_default_timeout(PAGE_MS)
        _login(page, hub, other.name, PASSWORD)
        _open(page, f"{hub.url}{SERVICE}/allocations/{alloc_id}", status=404)
        assert f"no allocation {alloc_id} of yours" in page.text_content("#error")
        _open(page, f"{hub.url}{SERVICE}/")
        assert page.locator("#no-allocations").count() == 1
    finally:
        ctx.close()
