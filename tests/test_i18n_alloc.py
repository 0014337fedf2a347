"""The allocations service's pages in Simplified Chinese and English (issue 21,
docs/i18n.md), on the shared running platform (:func:`tests.conftest.projects_hub`).

In Chromium with ``locale="zh-CN"`` and ``Accept-Language: zh-CN``, every page of the
service (my allocations, the request form and a refused form, an allocation, usage,
projects, a project, settings, upload, publish, the admin's review and publish queues,
the error page) is Chinese: none of the catalogs' English messages are left
(:func:`tests.i18n_helpers.assert_chinese`), the screenshot is kept and not blank. English
stays the default; a saved language wins over the browser's and ``?lang=`` over both,
remembered in the cookie; the settings page and REST API save the language; numbers are
written as the language writes them. Users are named ``zhalloc...``.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.browser_helpers import keep_screenshot, launched_browser
from tests.hub_helpers import Hub, HubClient, approved_project, new_user
from tests.i18n_helpers import assert_chinese, ui_text

pytestmark = [pytest.mark.slow]

SERVICE = "/services/allocations"
ZH = {"locale": "zh-CN", "extra_http_headers": {"Accept-Language": "zh-CN"}}
EN = {"locale": "en-GB", "extra_http_headers": {"Accept-Language": "en-GB,en;q=0.9"}}
#: the amount of the pending request and of the usage charged: its grouping shows
AMOUNT = 1234.5


@dataclass
class Scene:
    """A PI with an approved project (with usage charged) and a pending request."""

    hub: Hub
    admin: HubClient
    pi: HubClient
    project: int
    pending: int

    @property
    def base(self) -> str:
        return f"{self.hub.url}{SERVICE}"


@pytest.fixture(scope="module")
def scene(projects_hub: Hub, projects_admin: HubClient) -> Scene:
    from oceandata.alloc import core, db

    pi = new_user(projects_hub, projects_admin, f"zhalloc{uuid.uuid4().hex[:8]}")
    project = approved_project(pi, projects_admin, 1, title="Chinese pages")
    today = dt.date.today()
    body = {"project_title": "Typhoon wake", "pi": "Dr. Li", "institution": "OUC",
            "justification": "SST cooling after typhoons.", "core_hours": AMOUNT,
            "max_cores": 8, "memory_per_job_gb": 16, "storage_gb": 50,
            "start_date": today.isoformat(),
            "end_date": (today + dt.timedelta(days=90)).isoformat()}
    r = pi.api("POST", f"{SERVICE}/api/allocations", json=body, allow_redirects=False)
    assert r.status_code == 201, r.text
    url = f"sqlite:///{projects_hub.runtime.data_dir / 'alloc' / 'alloc.sqlite'}"
    with db.session_scope(url) as session:
        core.charge(session, user=pi.name, allocation_id=project, source="batch",
                    ref=f"zhalloc-{project}", cores=1, seconds=AMOUNT * 3600)
    return Scene(projects_hub, projects_admin, pi, project, r.json()["id"])


def _context(browser: Any, scene: Scene, user: HubClient, **options: Any) -> Any:
    """A browser context signed in to the allocations service as *user* (its login
    cookie holds the user's hub token, as the service's OAuth callback sets it)."""
    ctx = browser.new_context(**options)
    ctx.add_cookies([{"name": "oceandata-alloc-auth", "value": user.token or "",
                      "url": f"{scene.hub.url}/"}])
    return ctx


def _open(page: Any, url: str, status: int = 200) -> None:
    answer = page.goto(url)
    assert answer is not None and answer.status == status, (url, answer and answer.status)


def _check_zh(page: Any, label: str) -> str:
    """The page is Chinese (and says so), with the switch to English; screenshot kept."""
    text = page.inner_text("body")
    # users' own texts (titles, institutions) are marked translate="no": not the page's
    assert_chinese(ui_text(page), label)
    assert page.get_attribute("html", "lang") == "zh-Hans", label
    assert page.inner_text("#lang-switch").strip() == "English", label
    keep_screenshot(page, f"i18n-alloc-{label}")
    return text


def test_every_page_of_the_service_is_chinese(scene: Scene) -> None:
    base, p = scene.base, scene.project
    with launched_browser() as browser:
        ctx = _context(browser, scene, scene.pi, **ZH)
        page = ctx.new_page()
        page.set_default_timeout(60_000)

        _open(page, f"{base}/")
        text = _check_zh(page, "index")
        assert "我的配额" in text and "待审核" in text

        _open(page, f"{base}/request")
        _check_zh(page, "request")
        # a refused form: the messages next to the fields are Chinese too
        page.fill("#project_title", "Typhoon wake, again")
        page.fill("#core_hours", "-5")
        with page.expect_navigation() as nav:
            page.click("#submit-request")
        assert nav.value is not None and nav.value.status == 400
        _check_zh(page, "request-error")
        assert page.inner_text("#error-pi").strip() == "必填"
        assert page.inner_text("#error-core_hours").strip() == "请填写大于 0 的数字。"
        assert page.input_value("#project_title") == "Typhoon wake, again"  # kept

        _open(page, f"{base}/allocations/{scene.pending}")
        _check_zh(page, "detail")
        assert page.inner_text("#core-hours").strip() == "1,234.5"
        assert page.inner_text("#status").strip() == "待审核"

        _open(page, f"{base}/usage")
        text = _check_zh(page, "usage")
        assert "1,234.50" in page.inner_text("#usage") and "核时" in text

        for label, path in (("projects", "projects"), ("project", f"projects/{p}"),
                            ("settings", "settings"), ("upload", f"projects/{p}/upload"),
                            ("publish", f"projects/{p}/publish")):
            _open(page, f"{base}/{path}")
            _check_zh(page, label)
        assert "1,234.50" in page.goto(f"{base}/projects/{p}").text()  # type: ignore[union-attr]
        assert "核时" in page.inner_text("#core-hours")

        _open(page, f"{base}/allocations/999999999", 404)
        _check_zh(page, "error")
        assert page.inner_text("#error").startswith("未找到")
        assert page.locator("[role=status]").count() == 0  # said once, as the error
        ctx.close()

        ctx = _context(browser, scene, scene.admin, **ZH)
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        _open(page, f"{base}/admin")
        _check_zh(page, "admin")
        card = page.locator(f"#pending-{scene.pending}")
        assert "Typhoon wake" in card.inner_text() and "提交于" in card.inner_text()
        _open(page, f"{base}/admin/publish")
        _check_zh(page, "publish-admin")
        ctx.close()


def _get(scene: Scene, user: HubClient, path: str, **kw: Any) -> requests.Response:
    cookies = {"oceandata-alloc-auth": user.token or "", **kw.pop("cookies", {})}
    return requests.get(f"{scene.base}/{path}", cookies=cookies, timeout=60,
                        allow_redirects=False, **kw)


def test_english_by_default_and_the_switch(scene: Scene) -> None:
    r = _get(scene, scene.pi, "usage", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert r.status_code == 200
    assert '<html lang="en">' in r.text and "My allocations" in r.text
    assert "1,234.50" in r.text  # the grouping of English numbers
    assert r.headers["Content-Language"] == "en"
    assert {"Accept-Language", "Cookie"} <= {v.strip() for v in r.headers["Vary"].split(",")}
    assert "set-cookie" not in {k.lower() for k in r.headers}  # nothing was chosen
    switch = re.search(r'<a id="lang-switch" href="([^"]+)"[^>]*>([^<]+)</a>', r.text)
    assert switch is not None and switch[2] == "中文" and switch[1] == "?lang=zh"
    # no language header at all: English too
    r = _get(scene, scene.pi, "")
    assert '<html lang="en">' in r.text and r.headers["Content-Language"] == "en"
    # the switch keeps the page's query and is remembered
    r = _get(scene, scene.pi, "", params={"message": "filed", "id": "7", "lang": "zh"},
             headers={"Accept-Language": "en"})
    assert '<html lang="zh-Hans">' in r.text and "申请 #7 已提交" in r.text
    assert r.headers["Content-Language"] == "zh-Hans"
    assert "oceandata_lang=zh" in r.headers["set-cookie"]
    assert 'href="?message=filed&amp;id=7&amp;lang=en"' in r.text
    # free text someone put in a link never comes back, not even in the switch's address
    r = _get(scene, scene.pi, "", params={"message": "<b>Your account is suspended</b>",
                                          "id": "7", "lang": "zh"})
    assert "suspended" not in r.text and 'href="?id=7&amp;lang=en"' in r.text
    # after a refused form POST to an address that has no page, the switch leads to the
    # form's page (not to a 405)
    queue = _get(scene, scene.admin, "admin")
    csrf = re.search(r'name="_csrf" value="([^"]+)"', queue.text)[1]  # type: ignore[index]
    r = requests.post(f"{scene.base}/admin/{scene.pending}/deny", timeout=60,
                      data={"_csrf": csrf, "reason": ""}, allow_redirects=False,
                      cookies={"oceandata-alloc-auth": scene.admin.token or ""})
    assert r.status_code == 400 and "a denial needs a reason" in r.text
    assert f'id="lang-switch" href="{SERVICE}/admin?lang=zh"' in r.text


def test_saved_language_wins_over_the_browser_and_the_switch_over_it(
        scene: Scene) -> None:
    user = new_user(scene.hub, scene.admin, f"zhalloc{uuid.uuid4().hex[:8]}")
    api = f"{SERVICE}/api/settings"
    r = user.api("PUT", api, json={"language": "zh"}, allow_redirects=False)
    assert r.status_code == 200, r.text
    assert r.json() == {"default_allocation": None, "projects": [], "language": "zh"}
    with launched_browser() as browser:
        ctx = _context(browser, scene, user, **EN)
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        _open(page, f"{scene.base}/")
        _check_zh(page, "saved-setting")
        # ?lang=en beats the setting, and the cookie keeps it on the next pages
        _open(page, f"{scene.base}/?lang=en")
        assert page.get_attribute("html", "lang") == "en"
        assert "My allocations" in page.inner_text("h1")
        cookies = {c["name"]: c["value"] for c in ctx.cookies()}
        assert cookies.get("oceandata_lang") == "en"
        with page.expect_navigation():
            page.click("a[href$='/usage']")
        assert page.get_attribute("html", "lang") == "en"
        assert page.inner_text("h1").startswith("Usage")
        assert page.inner_text("#lang-switch") == "中文"
        ctx.close()


def test_the_settings_page_saves_the_language_and_sets_the_cookie(scene: Scene) -> None:
    user = new_user(scene.hub, scene.admin, f"zhalloc{uuid.uuid4().hex[:8]}")
    with launched_browser() as browser:
        ctx = _context(browser, scene, user, **EN)
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        _open(page, f"{scene.base}/settings")
        assert page.get_attribute("html", "lang") == "en"
        assert page.input_value("#language") == ""  # the browser's, until chosen
        page.select_option("#language", "zh")
        with page.expect_navigation():
            page.click("#save-settings")
        _check_zh(page, "settings-saved")
        assert page.inner_text("[role=status]").strip() == "设置已保存。"
        assert page.input_value("#language") == "zh"
        cookies = {c["name"]: c["value"] for c in ctx.cookies()}
        assert cookies.get("oceandata_lang") == "zh"
        assert user.api("GET", f"{SERVICE}/api/settings").json()["language"] == "zh"
        # back to the browser's language: the cookie goes, the page follows the browser
        page.select_option("#language", "")
        with page.expect_navigation():
            page.click("#save-settings")
        assert "oceandata_lang" not in {c["name"] for c in ctx.cookies()}
        assert page.get_attribute("html", "lang") == "en"
        assert "Settings saved." in page.inner_text("[role=status]")
        ctx.close()
    assert user.api("GET", f"{SERVICE}/api/settings").json()["language"] is None


def test_the_settings_form_refuses_numbers_int_cannot_read_or_hold(scene: Scene) -> None:
    """"²" passed ``str.isdigit`` and made ``int`` fail; 25 digits overflowed SQLite's
    integer: both were 500s (a prober's finding). Each is the page's one-line refusal."""
    user = new_user(scene.hub, scene.admin, f"zhalloc{uuid.uuid4().hex[:8]}")
    cookies = {"oceandata-alloc-auth": user.token or ""}
    form = requests.get(f"{scene.base}/settings", cookies=cookies, timeout=60)
    csrf = re.search(r'name="_csrf" value="([^"]+)"', form.text)[1]  # type: ignore[index]
    for bad in ("²", "٣", "9" * 25, "11111111111111111110", "-1", "1e3"):
        r = requests.post(f"{scene.base}/settings", cookies=cookies, timeout=60,
                          data={"_csrf": csrf, "default_allocation": bad},
                          allow_redirects=False)
        assert r.status_code in (400, 404), (bad, r.status_code, r.text[-300:])
        assert "Traceback" not in r.text and "failed on this request" not in r.text
    assert user.api("GET", f"{SERVICE}/api/settings").json()["default_allocation"] is None


def test_settings_rest_round_trip_and_a_bad_language(scene: Scene) -> None:
    user = new_user(scene.hub, scene.admin, f"zhalloc{uuid.uuid4().hex[:8]}")
    project = approved_project(user, scene.admin, 1, title="Settings")
    api = f"{SERVICE}/api/settings"

    def put(body: Any) -> requests.Response:
        return user.api("PUT", api, json=body, allow_redirects=False)

    assert user.api("GET", api).json() == {"default_allocation": None,
                                          "projects": [project], "language": None}
    r = put({"default_allocation": project, "language": "zh"})
    assert r.status_code == 200 and r.json()["language"] == "zh"
    # the language alone leaves the default project, and the default alone the language
    assert put({"language": "en"}).json() == {"default_allocation": project,
                                              "projects": [project], "language": "en"}
    assert put({"default_allocation": None}).json()["language"] == "en"
    for bad in ({"language": "fr"}, {"language": 3}, {"language": ["zh"]}, {}):
        r = put(bad)
        assert r.status_code == 400, (bad, r.text)
        error = r.json()["error"]
        assert "\n" not in error and error.count(". ") == 0 and len(error) < 200, error
        assert "Traceback" not in r.text
    assert "fr" in put({"language": "fr"}).json()["error"]
    assert user.api("GET", api).json()["language"] == "en"  # nothing changed
    assert put({"language": None}).json()["language"] is None
    # a page of that user now follows the browser again
    r = _get(scene, user, "", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert '<html lang="zh-Hans">' in r.text


def test_record_words_are_translated_and_names_never_are() -> None:
    """The filters of the pages (no platform needed): fixed words of a record translated,
    user names as they are even when one is also a word (a user called "admin"), audit
    times as people read them, the usage table's pseudo-users in words."""
    from oceandata.alloc import core
    from oceandata.alloc.service import change_value, who, word

    assert word("admin", "zh") == "管理员" and word("general", "zh") != "general"
    assert word("scientific", "zh") != "scientific" and word("pass", "zh") == "通过"
    assert change_value("admin", "decided_by", "zh") == "admin"  # a name, not the role
    assert change_value("approved", "status", "zh") == word("approved", "zh") != "approved"
    when = change_value("2026-12-05T10:33:53.654715+00:00", "decided_at", "zh")
    assert when == "2026年12月5日 10:33 UTC", when
    assert change_value(["a", "b"], "datasets", "en") == "a, b"
    assert change_value(None, "reason", "zh") == ""
    assert who(core.ANONYMOUS, "zh") == "（匿名）" and who(core.PROJECT, "zh") == "（项目）"
    assert who("admin", "zh") == "admin" and who(core.PROJECT, "en") == core.PROJECT
