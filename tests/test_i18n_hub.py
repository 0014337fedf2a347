"""The hub's pages in Simplified Chinese and English (oceandata.hub.i18n, docs/i18n.md).

On the shared running platform (``projects_hub``), in Chromium with ``locale="zh-CN"`` and
``Accept-Language: zh-CN``, a new user walks the path sign-up (a refused name first) →
approval → sign-in → home → token → a missing page → the start of their server (the
waiting page), and the administrator opens the sign-up approvals; every page must be
Chinese (:func:`i18n_helpers.assert_chinese`: none of the catalogs' English messages left),
say ``<html lang="zh-Hans">``, carry the language switch (``#lang-switch``) and is kept as
a screenshot checked not blank. An English browser gets English; ``?lang=zh`` switches and
the ``oceandata_lang`` cookie keeps the choice on the next page; a signed-in user's saved
language (the allocations service's settings) is used when neither says otherwise. The OAuth authorisation
page is never shown by this platform (every service is ``oauth_no_confirm``): its template
is rendered through the hub's own Jinja set-up (:class:`oceandata.hub.i18n.HubI18n`) for a
Chinese request and shown in Chromium at the hub's address.

User names start with ``zhhub``.
"""

from __future__ import annotations

import json
import re
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from tests.browser_helpers import keep_screenshot, launched_browser
from tests.hub_helpers import PASSWORD, Hub, HubClient, new_user
from tests.i18n_helpers import CJK, assert_chinese

pytestmark = [pytest.mark.slow]

ZH = {"locale": "zh-CN", "extra_http_headers": {"Accept-Language": "zh-CN"}}
EN = {"locale": "en-GB", "extra_http_headers": {"Accept-Language": "en-GB,en;q=0.9"}}


def _name(tag: str) -> str:
    return f"zhhub{tag}{uuid.uuid4().hex[:6]}"


def _chinese_page(page: Any, label: str) -> str:
    """Check that *page* is a Chinese page of ours, keep its screenshot; its text."""
    text = page.inner_text("body")
    assert_chinese(text, label)
    assert page.get_attribute("html", "lang") == "zh-Hans", label
    switch = page.locator("#lang-switch")
    assert switch.count() == 1, f"{label}: no language switch"
    assert switch.inner_text().strip() == "English", label
    assert "lang=en" in (switch.get_attribute("href") or ""), label
    keep_screenshot(page, f"i18n-hub-{label}")
    return text


def _english_page(page: Any, label: str) -> str:
    text = page.inner_text("body")
    assert not CJK.search(text.replace("中文", "")), f"{label}: Chinese on an English page"
    assert page.get_attribute("html", "lang") == "en", label
    assert page.locator("#lang-switch").inner_text().strip() == "中文", label
    return text


def _login(page: Any, hub: Hub, name: str, password: str) -> None:
    page.goto(f"{hub.url}/hub/login?next=/hub/home")
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.wait_for_url(re.compile(r"/hub/home"))


def test_a_chinese_user_signs_up_signs_in_and_uses_the_hub_in_chinese(
        projects_hub: Hub, projects_admin: HubClient) -> None:
    hub = projects_hub
    name = _name("a")
    with launched_browser() as browser:
        ctx = browser.new_context(**ZH)
        page = ctx.new_page()
        page.set_default_timeout(60_000)

        # the sign-up form, then a refused name: the reason is Chinese
        assert page.goto(f"{hub.url}/hub/signup").status == 200
        text = _chinese_page(page, "signup")
        assert "用户名" in text and "注册" in text
        page.fill("#username_input", "Zhhub.Bad")
        page.fill("#password_input", PASSWORD)
        page.fill("#password_confirmation_input", PASSWORD)
        with page.expect_navigation():
            page.click("#signup_submit")
        message = page.inner_text("#signup-message")
        assert "Zhhub.Bad" in message and "大写字母" in message, message
        assert "User name" not in message, message
        _chinese_page(page, "signup-refused")

        # a good sign-up waits for approval, and says so in Chinese
        page.fill("#username_input", name)
        page.fill("#password_input", PASSWORD)
        page.fill("#password_confirmation_input", PASSWORD)
        with page.expect_navigation():
            page.click("#signup_submit")
        assert "管理员批准" in page.inner_text("#signup-message")
        _chinese_page(page, "signup-received")

        # the sign-in page; before approval the refusal is Chinese too
        assert page.goto(f"{hub.url}/hub/login").status == 200
        _chinese_page(page, "login")
        page.fill("#username_input", name)
        page.fill("#password_input", PASSWORD)
        with page.expect_navigation():
            page.click("#login_submit")
        error = page.inner_text(".login_error")
        assert name in error and "尚未获得管理员批准" in error, error
        _chinese_page(page, "login-not-approved")
        assert projects_admin.approve(name).status_code == 200

        _login(page, hub, name, PASSWORD)
        text = _chinese_page(page, "home")
        assert "启动我的服务器" in text and "退出登录" in text
        # the Services menu names the platform's services, not their internal names
        services = page.eval_on_selector_all(
            ".dropdown-menu a.dropdown-item", "links => links.map(a => a.textContent.trim())")
        assert {"资源分配与项目", "开放数据"} <= set(services), services
        assert not {"allocations", "data"} & set(services), services

        assert page.goto(f"{hub.url}/hub/token").status == 200
        _chinese_page(page, "token")
        page.fill("#token-note", "zhhub test")
        page.click("#request-token-form button[type=submit]")
        page.wait_for_selector("#token-area", state="visible")
        assert re.fullmatch(r"[0-9a-f]{32,}", page.inner_text("#token-result").strip())
        assert "您的新 API 令牌" in page.inner_text("#token-area")
        page.reload()
        text = _chinese_page(page, "token-listed")
        assert "zhhub test" in text and "撤销" in text

        response = page.goto(f"{hub.url}/hub/no-such-page-{name}")
        assert response.status == 404
        text = _chinese_page(page, "404")
        assert "未找到" in text

        # a refused page of our own handlers: only administrators see the approvals
        assert page.goto(f"{hub.url}/hub/authorize").status == 403
        text = _chinese_page(page, "403")
        assert "只有管理员可以管理注册申请" in text
        ctx.close()

        # the administrator's approvals page
        admin = browser.new_context(**ZH)
        page = admin.new_page()
        page.set_default_timeout(60_000)
        _login(page, hub, hub.runtime.admin, hub.admin_password)
        assert page.goto(f"{hub.url}/hub/authorize").status == 200
        row = page.locator(f'#signups tr[data-name="{name}"]')
        assert row.locator(".signup-state").inner_text().strip() == "是"
        assert row.locator("button[value=withdraw]").inner_text().strip() == "撤销批准"
        _chinese_page(page, "authorize")
        admin.close()


def test_the_waiting_page_of_a_starting_server_is_chinese(
        projects_hub: Hub, projects_admin: HubClient) -> None:
    """The spawn-pending page as the hub serves it while the user's server starts. Its
    progress stream is replaced by JupyterHub's first two events (Playwright) so that the
    page stays the one the hub rendered, instead of moving on to JupyterLab when the server
    is ready, and says those events in Chinese."""
    hub = projects_hub
    user = new_user(hub, projects_admin, _name("s"))
    try:
        with launched_browser() as browser:
            ctx = browser.new_context(**ZH)
            page = ctx.new_page()
            page.set_default_timeout(120_000)
            # JupyterHub's first two progress events, then the stream ends (no "ready")
            events = "".join(f"data: {json.dumps(e)}\n\n" for e in (
                {"progress": 0, "message": "Server requested"},
                {"progress": 50, "message": "Spawning server..."}))
            page.route(re.compile(r"/hub/api/users/[^/]+/server/progress"),
                       lambda route: route.fulfill(
                           status=200, body=events,
                           headers={"Content-Type": "text/event-stream"}))
            _login(page, hub, user.name, PASSWORD)
            page.goto(f"{hub.url}/hub/spawn/{user.name}")
            assert f"/hub/spawn-pending/{user.name}" in page.url, (
                f"the server started within a second, the waiting page was not served: "
                f"{page.url}")
            text = _chinese_page(page, "spawn-pending")
            assert "您的服务器正在启动" in text or "队列" in text, text
            assert "事件日志" in text or "队列" in text, text
            if "队列" not in text:  # the page's script says JupyterHub's progress in Chinese
                page.wait_for_function(
                    "document.getElementById('progress-message').textContent.length > 0")
                assert page.inner_text("#progress-message") == "正在启动服务器……"
                log = page.text_content("#progress-log")
                assert "已请求服务器" in log and "Server requested" not in log, log
                page.click("#progress-details summary")
                assert_chinese(page.inner_text("body"), "spawn-progress")
                keep_screenshot(page, "i18n-hub-spawn-progress")
            ctx.close()
    finally:
        r = user.api("DELETE", f"/hub/api/users/{user.name}/server")
        assert r.status_code in (202, 204), r.text


def test_english_by_default_and_the_switch_remembers_chinese(projects_hub: Hub) -> None:
    hub = projects_hub
    # no Accept-Language at all: English
    bare = requests.get(f"{hub.url}/hub/login", headers={"Accept-Language": ""}, timeout=30)
    assert bare.status_code == 200
    assert '<html lang="en">' in bare.text and "Sign in" in bare.text
    assert bare.headers["Content-Language"] == "en"
    assert "Accept-Language" in bare.headers["Vary"] and "Cookie" in bare.headers["Vary"]
    assert not CJK.search(bare.text.replace("中文", ""))
    assert 'id="lang-switch"' in bare.text
    # Accept-Language zh-CN without a browser: Chinese, and the refusal of a name too
    zh = requests.Session()
    zh.headers["Accept-Language"] = "zh-CN,zh;q=0.9,en;q=0.5"
    signup = zh.get(f"{hub.url}/hub/signup", timeout=30)
    assert '<html lang="zh-Hans">' in signup.text
    assert signup.headers["Content-Language"] == "zh-Hans"
    refused = zh.post(f"{hub.url}/hub/signup", timeout=30, data={
        "username": "zhhub.bad", "signup_password": PASSWORD,
        "signup_password_confirmation": PASSWORD, "_xsrf": zh.cookies.get("_xsrf")})
    assert refused.status_code == 400
    assert "charset=utf-8" in refused.headers["Content-Type"].lower()
    assert "包含不允许的字符" in refused.text, refused.text[-1500:]

    with launched_browser() as browser:
        ctx = browser.new_context(**EN)
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        assert page.goto(f"{hub.url}/hub/login?next=%2Fhub%2Ftoken").status == 200
        text = _english_page(page, "login")
        assert "Sign in" in text
        # the switch keeps the page's other parameters
        href = page.get_attribute("#lang-switch", "href")
        assert "next=%2Fhub%2Ftoken" in href and href.endswith("lang=zh"), href
        with page.expect_navigation():
            page.click("#lang-switch")
        assert "lang=zh" in page.url
        _chinese_page(page, "switched-login")
        cookies = {c["name"]: c for c in ctx.cookies()}
        assert cookies["oceandata_lang"]["value"] == "zh"
        assert cookies["oceandata_lang"]["path"] == "/"
        assert cookies["oceandata_lang"]["sameSite"] == "Lax"
        # the next page, without ?lang=, an English browser: still Chinese (the cookie)
        assert page.goto(f"{hub.url}/hub/signup").status == 200
        _chinese_page(page, "switched-signup")
        assert page.goto(f"{hub.url}/hub/no-such-page").status == 404
        _chinese_page(page, "switched-404")
        # and back to English
        with page.expect_navigation():
            page.click("#lang-switch")
        _english_page(page, "back-to-english")
        assert {c["name"]: c for c in ctx.cookies()}["oceandata_lang"]["value"] == "en"
        assert page.goto(f"{hub.url}/hub/signup").status == 200
        _english_page(page, "english-signup")
        ctx.close()


def test_a_users_saved_language_chooses_the_hub_pages_language(
        projects_hub: Hub, projects_admin: HubClient) -> None:
    """A user who saved Chinese in their platform settings gets the hub's pages in Chinese
    from an English browser without the language cookie; ?lang=en still wins."""
    hub = projects_hub
    user = new_user(hub, projects_admin, _name("p"))
    r = user.api("PUT", "/services/allocations/api/settings", json={"language": "zh"},
                 allow_redirects=False)
    assert r.status_code == 200, r.text[:500]
    with launched_browser() as browser:
        ctx = browser.new_context(**EN)
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        assert page.goto(f"{hub.url}/hub/login").status == 200
        _english_page(page, "saved-visitor")  # not signed in: the browser's language
        _login(page, hub, user.name, PASSWORD)
        ctx.clear_cookies(name="oceandata_lang")  # only the saved setting says Chinese
        assert page.goto(f"{hub.url}/hub/home").status == 200
        _chinese_page(page, "saved-home")
        assert page.goto(f"{hub.url}/hub/token?lang=en").status == 200
        _english_page(page, "saved-but-switched")
        ctx.close()


class _Request:
    """What the hub's language negotiation reads of a Tornado handler."""

    def __init__(self, accept_language: str) -> None:
        from tornado.httputil import HTTPHeaders

        self.request = SimpleNamespace(query_arguments={}, query="", protocol="http",
                                       headers=HTTPHeaders({"Accept-Language":
                                                            accept_language}))
        self._finished = False
        self.cookies: dict[str, Any] = {}

    def get_cookie(self, name: str) -> None:
        return None

    def set_cookie(self, name: str, value: str, **kwargs: Any) -> None:
        self.cookies[name] = value

    def set_header(self, name: str, value: str) -> None:
        self.headers = {**getattr(self, "headers", {}), name: value}

    def add_header(self, name: str, value: str) -> None:
        self.set_header(name, value)

    def static_url(self, path: str, include_version: bool = True) -> str:
        return f"/hub/static/{path}"


def _render_as_the_hub(template: str, accept_language: str, **values: Any) -> str:
    """*template* rendered as JupyterHub renders it (its loaders: our templates, then its
    own, ``templates/`` for its own by name; :class:`HubI18n` from the hub's config)."""
    import ast

    from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader
    from jupyterhub.app import JupyterHub

    from oceandata.hub.authenticator import TEMPLATES

    stock = JupyterHub()._template_paths_default()[0]
    config = (TEMPLATES.parents[2] / "hub_config" / "jupyterhub_config.py").read_text()
    match = re.search(r"c\.JupyterHub\.jinja_environment_options = (\{.*\})", config)
    assert match, "the hub's config names no Jinja extension"
    env = Environment(loader=ChoiceLoader([
        PrefixLoader({"templates": FileSystemLoader([stock])}, "/"),
        FileSystemLoader([str(TEMPLATES), stock])]), autoescape=True,
        **ast.literal_eval(match.group(1)))
    handler = _Request(accept_language)
    namespace = {"static_url": handler.static_url, "base_url": "/hub/", "prefix": "/",
                 "user": None, "login_url": "/hub/login", "logout_url": "/hub/logout",
                 "parsed_scopes": set(), "expanded_scopes": set(), "services": [],
                 "xsrf": "x", "xsrf_token": "x"}
    return env.get_template(template).render(**namespace, **values)


def test_the_authorisation_page_is_chinese_for_a_chinese_browser(projects_hub: Hub) -> None:
    values = {
        "oauth_client": SimpleNamespace(description="Server at /services/allocations/",
                                        redirect_uri="/services/allocations/oauth_callback"),
        "scope_descriptions": [
            {"scope": None, "filter": "",
             "description": "Identify the owner of the requesting entity."}],
        "allowed_scopes": [],
    }
    html = _render_as_the_hub("oauth.html", "zh-CN,zh;q=0.9", **values)
    english = _render_as_the_hub("oauth.html", "en-GB", **values)
    assert "Authorize" not in html and '<html lang="zh-Hans">' in html
    assert "Identify the owner of the requesting entity." in english
    with launched_browser() as browser:
        ctx = browser.new_context(**ZH)
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        # shown at the hub's address, so that its style sheet and logo load as they would
        page.goto(f"{projects_hub.url}/hub/login")
        page.set_content(html)
        text = _chinese_page(page, "oauth")
        assert "授权访问" in text and "识别请求方的所有者" in text
        assert "/services/allocations/oauth_callback" in text
        ctx.close()


def test_the_queue_of_a_login_rush_is_chinese_for_a_chinese_browser(projects_hub: Hub) -> None:
    """The waiting page while a spawn waits in the login-rush queue (``spawn_queue``, as
    the hub's ``template_vars`` give it), rendered as the hub renders it; the queue itself
    is exercised by tests/test_hub_login_rush.py."""
    from oceandata.hub.spawnqueue import Place

    place = Place(position=3, waiting=7, starting=2, slots=2, wait_seconds=150,
                  refresh_seconds=5)
    queue = SimpleNamespace(place=lambda spawner: place, refresh_seconds=3)
    html = _render_as_the_hub("spawn_pending.html", "zh-CN", spawn_queue=queue,
                              spawner=object(), progress_url="/hub/api/progress")
    assert re.search(r'id="queue-position">3<', html), "the rush test reads the position"
    assert '<meta http-equiv="refresh" content="5">' in html
    english = _render_as_the_hub("spawn_pending.html", "en", spawn_queue=queue,
                                 spawner=object(), progress_url="/hub/api/progress")
    assert "You are number" in english and "about 3 minutes" in english
    with launched_browser() as browser:
        ctx = browser.new_context(**ZH)
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{projects_hub.url}/hub/login")
        page.set_content(html)
        text = _chinese_page(page, "spawn-queue")
        assert "您在队列中排第 3 位" in text and "约 3 分钟" in text, text
        ctx.close()
