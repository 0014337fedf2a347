"""JupyterLab in the user's platform language (oceandata.hub.spawner, docs/i18n.md).

On the shared running platform (``projects_hub``): a user who saved Chinese as their
language (the allocations service's ``PUT api/settings``) starts a server through the hub's
API; its JupyterLab defaults to the zh-CN language pack (the settings API's locale, the
translations API, the menu bar in Chromium), its processes get ``LANGUAGE=zh_CN:zh`` and
its examples hold the Chinese notebooks. A user who saved no language gets English, even
in a Chinese browser. Users: prefix ``zhlab``. The hook's order and failure alone, without
a hub, at the end.
"""

from __future__ import annotations

import json
import uuid

import pytest
from browser_helpers import keep_screenshot, launched_browser
from hub_helpers import PASSWORD, Hub, HubClient, new_user
from i18n_helpers import assert_chinese

pytestmark = pytest.mark.slow

SPAWN_MS = 180_000
PAGE_MS = 60_000
TRANSLATION_PLUGIN = "@jupyterlab/translation-extension:plugin"


def _save_language(user: HubClient, lang: str | None) -> None:
    """Save *user*'s platform language through the allocations service's REST API (what
    the settings page does)."""
    r = user.api("PUT", "/services/allocations/api/settings", json={"language": lang},
                 allow_redirects=False)
    assert r.status_code == 200, r.text[:500]
    assert r.json()["language"] == lang


@pytest.fixture(scope="module")
def zh_user(projects_hub: Hub, projects_admin: HubClient) -> HubClient:
    """A user whose saved language is Chinese, with a running server."""
    user = new_user(projects_hub, projects_admin, f"zhlabz{uuid.uuid4().hex[:6]}")
    _save_language(user, "zh")
    user.start_server()
    return user


@pytest.fixture(scope="module")
def en_user(projects_hub: Hub, projects_admin: HubClient) -> HubClient:
    """A user who saved no language, with a running server."""
    user = new_user(projects_hub, projects_admin, f"zhlabe{uuid.uuid4().hex[:6]}")
    user.start_server()
    return user


def _lab_locale(user: HubClient) -> str:
    """The locale the user's JupyterLab uses: their own setting, else the default the
    server gives (the schema's default after the config path's overrides)."""
    r = user.api("GET", f"/user/{user.name}/lab/api/settings/{TRANSLATION_PLUGIN}")
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    default = body["schema"]["properties"]["locale"]["default"]
    return (body.get("settings") or {}).get("locale", default)


def test_a_chinese_users_server_defaults_to_the_zh_cn_language_pack(zh_user: HubClient,
                                                                    en_user: HubClient) -> None:
    assert _lab_locale(zh_user) == "zh_CN"
    assert _lab_locale(en_user) == "default"

    r = zh_user.api("GET", f"/user/{zh_user.name}/lab/api/translations/zh_CN")
    assert r.status_code == 200, r.text[:500]
    data = r.json()["data"]
    assert data["jupyterlab"][""]["language"] == "zh-CN"
    assert data["jupyterlab"]["menu\u0004File"] == ["文件"]
    # the server lists the pack among its languages (the Settings → Language menu)
    r = zh_user.api("GET", f"/user/{zh_user.name}/lab/api/translations")
    assert r.status_code == 200, r.text[:500]
    assert "zh_CN" in r.json()["data"]


def test_the_command_line_and_the_examples_follow_the_language(zh_user: HubClient,
                                                               en_user: HubClient) -> None:
    code = ("import os\nfrom oceandata.i18n import cli_lang\n"
            "print(os.environ.get('LANGUAGE'), cli_lang())")
    assert zh_user.run_code(code).split() == ["zh_CN:zh", "zh"]
    assert en_user.run_code(code).split() == ["en", "en"]

    r = zh_user.api("GET", f"/user/{zh_user.name}/api/contents/examples/zh")
    assert r.status_code == 200, r.text[:500]
    names = {item["name"] for item in r.json()["content"]}
    assert "01_catalog_and_subsetting.ipynb" in names and len(names) == 7, names
    r = zh_user.api("GET", f"/user/{zh_user.name}/api/contents/examples/zh/"
                           "01_catalog_and_subsetting.ipynb")
    assert r.status_code == 200, r.text[:500]
    first = r.json()["content"]["cells"][0]["source"]
    assert first.startswith("# 1. 数据目录"), first[:80]


def _menu_labels(browser, hub: Hub, user: HubClient, label: str) -> list[str]:
    """Log *user* in through the hub's form in a Chinese Chromium, open their JupyterLab
    and return the menu bar's labels (screenshot kept as *label*)."""
    context = browser.new_context(locale="zh-CN", extra_http_headers={"Accept-Language": "zh-CN"},
                                  viewport={"width": 1366, "height": 850})
    try:
        page = context.new_page()
        page.set_default_timeout(PAGE_MS)
        response = page.goto(f"{hub.url}/hub/login?next=/user/{user.name}/lab")
        assert response is not None and response.status == 200
        page.fill("#username_input", user.name)
        page.fill("#password_input", PASSWORD)
        page.click("#login_submit")
        page.wait_for_url(f"**/user/{user.name}/lab**", timeout=SPAWN_MS)
        # the shell is built (the translator is settled before it) and the launcher shown
        page.wait_for_selector("#jp-menu-panel .lm-MenuBar-itemLabel", state="visible",
                               timeout=SPAWN_MS)
        page.wait_for_selector(".jp-LauncherCard", state="visible", timeout=SPAWN_MS)
        labels = page.locator("#jp-menu-panel .lm-MenuBar-itemLabel").all_inner_texts()
        if label.endswith("zh"):
            assert_chinese(page.inner_text("body"), label)
        keep_screenshot(page, label)
        if label.endswith("zh"):  # the Chinese example notebook, rendered
            page.goto(f"{hub.url}/user/{user.name}/lab/tree/examples/zh/"
                      "01_catalog_and_subsetting.ipynb")
            heading = page.locator(".jp-RenderedMarkdown h1").first
            heading.wait_for(state="visible", timeout=SPAWN_MS)
            assert "数据目录与子集提取" in heading.inner_text()
            assert_chinese(page.inner_text("body"), f"{label}-notebook")
            keep_screenshot(page, f"{label}-notebook")
        return labels
    finally:
        context.close()


def test_jupyterlab_in_chinese_in_the_browser(projects_hub: Hub, zh_user: HubClient,
                                              en_user: HubClient) -> None:
    with launched_browser() as browser:
        zh_labels = _menu_labels(browser, projects_hub, zh_user, "i18n-lab-zh")
        en_labels = _menu_labels(browser, projects_hub, en_user, "i18n-lab-en")
    assert "文件" in zh_labels and "File" not in zh_labels, zh_labels
    assert "设置" in zh_labels, zh_labels
    # a user who saved no language: English, even in a Chinese browser
    assert "File" in en_labels and "文件" not in en_labels, en_labels


def test_the_spawn_log_names_the_language(projects_hub: Hub, zh_user: HubClient,
                                          en_user: HubClient) -> None:
    log = projects_hub.log()
    assert f"language of {zh_user.name}'s server: zh (saved: zh)" in log
    assert f"language of {en_user.name}'s server: en (saved: None)" in log


def test_a_user_setting_in_jupyterlab_still_wins(zh_user: HubClient) -> None:
    """The platform's language is a default: choosing English in JupyterLab's Settings →
    Language menu (the user's own settings) overrides it."""
    url = f"/user/{zh_user.name}/lab/api/settings/{TRANSLATION_PLUGIN}"
    r = zh_user.api("PUT", url, data=json.dumps({"raw": json.dumps({"locale": "en"})}))
    assert r.status_code == 204, r.text[:500]
    try:
        assert _lab_locale(zh_user) == "en"
    finally:
        r = zh_user.api("PUT", url, data=json.dumps({"raw": "{}"}))
        assert r.status_code == 204, r.text[:500]
    assert _lab_locale(zh_user) == "zh_CN"


# --------------------------------------------------------------------------- the hook alone


class _Handler:
    """The requesting handler JupyterHub gives the spawner (headers and cookies)."""

    def __init__(self, accept: str | None = None, cookie: str | None = None,
                 user: str = "ada") -> None:
        from types import SimpleNamespace

        self.request = type("Request", (), {"headers": {"Accept-Language": accept}
                                            if accept else {}})()
        self._cookie = cookie
        self.current_user = SimpleNamespace(name=user)  # who asked for the spawn

    def get_cookie(self, name: str) -> str | None:
        return self._cookie if name == "oceandata_lang" else None


def _spawner(name: str, handler: _Handler | None = None):
    import logging
    from types import SimpleNamespace

    return SimpleNamespace(user=SimpleNamespace(name=name), handler=handler,
                           log=logging.getLogger("test_i18n_lab.spawner"))


@pytest.mark.parametrize(("saved", "handler", "expected"), [
    ("zh", None, "zh"),
    ("en", _Handler(accept="zh-CN"), "en"),  # the saved setting beats the browser
    (None, _Handler(accept="zh-CN,zh;q=0.9"), "zh"),  # nothing saved: the browser
    (None, None, "en"),  # nothing known: English
    ("en", _Handler(accept="en", cookie="zh"), "zh"),  # the last switch on our pages
    # an administrator starting ada's server: their browser says nothing of ada's language
    ("en", _Handler(accept="zh-CN", cookie="zh", user="admin"), "en"),
    (None, _Handler(accept="zh-CN", cookie="zh", user="admin"), "en"),
])
def test_the_spawn_language_order(tmp_path, saved, handler, expected) -> None:
    import asyncio

    from oceandata.alloc import db, projects
    from oceandata.hub import spawner as sp

    url = f"sqlite:///{tmp_path / 'alloc.sqlite'}"
    db.upgrade(url)
    with db.session_scope(url) as session:
        projects.set_language(session, "ada", saved)
    spawner = _spawner("ada", handler)
    assert asyncio.run(sp.settle_language(spawner, url)) == expected
    env = sp.language_environment(["/base", None], {"zh": "/overlay-zh"})
    config_path = env["JUPYTER_CONFIG_PATH"](spawner).split(":")
    assert config_path == (["/overlay-zh", "/base"] if expected == "zh" else ["/base"])
    assert env["LANGUAGE"](spawner) == {"zh": "zh_CN:zh", "en": "en"}[expected]


def test_an_unreadable_setting_is_logged_never_a_failed_spawn(tmp_path, caplog) -> None:
    import asyncio
    import logging

    from oceandata.hub import spawner as sp

    url = f"sqlite:///{tmp_path / 'missing' / 'folder' / 'alloc.sqlite'}"
    with caplog.at_level(logging.WARNING, logger="test_i18n_lab.spawner"):
        assert asyncio.run(sp.settle_language(_spawner("ada"), url)) == "en"
        assert asyncio.run(sp.settle_language(
            _spawner("ada", _Handler(accept="zh-CN")), url)) == "zh"
    assert "the saved setting could not be read" in caplog.text
    # no spawn hook ran: English
    assert sp.server_lang(_spawner("ada")) == "en"
