"""The authorisation area under attack, in a real browser holding the admin's session.

The probe's chain: a sign-up name with tab-separated attributes (``autofocus``,
``onfocus=...``) was written into an unquoted ``id=`` of ``/hub/authorize``; opening the
page ran the script as the administrator, which approved another account. And any page
elsewhere could send the admin's browser to ``GET /hub/authorize/<name>`` to approve.

Here the hostile names go straight into ``users_info`` (as if they had slipped past
sign-up), the admin opens the page in Chromium, and nothing runs and nobody is
approved. A page on another loopback port tries every cross-origin way in (form POST,
``fetch``, top-level GET) and changes nothing; the admin's own click still works.
Screenshots go to ``var/test-artifacts/``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from conftest import HostileSite, fresh_name
from hub_helpers import Hub, HubClient
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from tests.browser_helpers import ARTIFACTS, launched_browser

pytestmark = [pytest.mark.slow]

PAGE_MS = 30_000


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    with launched_browser() as browser:
        yield browser


@pytest.fixture(scope="module")
def admin_page(sec_hub: Hub, chromium) -> Iterator[object]:
    """A Chromium tab signed in as the administrator through the login form."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(PAGE_MS)
    page.goto(f"{sec_hub.url}/hub/login")
    page.fill("#username_input", sec_hub.runtime.admin)
    page.fill("#password_input", sec_hub.admin_password)
    page.click("#login_submit")
    page.wait_for_url("**/hub/**")
    assert any(c["name"] == "jupyterhub-hub-login" for c in context.cookies())
    yield page
    context.close()


def _signups(admin: HubClient) -> dict[str, bool]:
    r = admin.api("GET", "/hub/api/oceandata/signups")
    r.raise_for_status()
    return {row["name"]: row["authorized"] for row in r.json()}


def _pending(hub: Hub, prefix: str) -> HubClient:
    user = HubClient(hub, fresh_name(prefix))
    user.signup()
    return user


def _insert_signup(hub: Hub, name: str) -> None:
    """Put *name* into NativeAuthenticator's table directly, bypassing sign-up."""
    import bcrypt
    from nativeauthenticator.orm import UserInfo

    engine = create_engine(hub.runtime.db_url or hub.runtime.default_db_url)
    try:
        with Session(engine) as session:
            session.add(UserInfo(username=name, password=bcrypt.hashpw(b"x" * 12,
                                                                       bcrypt.gensalt())))
            session.commit()
    finally:
        engine.dispose()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"sec-{name}.png"), full_page=True)


def test_hostile_names_in_the_database_stay_text(sec_hub: Hub, sec_admin: HubClient,
                                                 admin_page) -> None:
    victim = _pending(sec_hub, "victim")
    approve = (f"fetch('/hub/authorize/{victim.name}',{{method:'POST',body:new\tURLSearchParams"
               f"({{action:'approve',_xsrf:document.querySelector('[name=_xsrf]').value}})}})")
    hostile = [
        # the probe's: attributes after tabs, for an unquoted id=
        f"x{uuid.uuid4().hex[:4]}\tautofocus\tonfocus=window.__pwned=1;{approve}",
        # breaking out of a quoted attribute and out of the element
        f"q{uuid.uuid4().hex[:4]}\"\tautofocus\tonfocus=\"window.__pwned=2;{approve}",
        f"s{uuid.uuid4().hex[:4]}<script>window.__pwned=3;{approve}</script>",
        f"i{uuid.uuid4().hex[:4]}<img\tsrc=x\tonerror=window.__pwned=4;{approve}>",
    ]
    for name in hostile:
        _insert_signup(sec_hub, name)
    dialogs: list[str] = []
    admin_page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    response = admin_page.goto(f"{sec_hub.url}/hub/authorize")
    assert response is not None and response.status == 200
    admin_page.wait_for_load_state("networkidle")
    admin_page.keyboard.press("Tab")
    admin_page.wait_for_timeout(500)
    _shot(admin_page, "authorize-hostile-names")
    assert admin_page.evaluate("window.__pwned") is None
    assert dialogs == []
    shown = admin_page.eval_on_selector_all(".signup-name code", "els => els.map(e => e.textContent)")
    for name in hostile:
        assert name in shown  # the name is text on the page, nothing else
    assert admin_page.query_selector_all("#signups img, #signups script") == []
    assert _signups(sec_admin)[victim.name] is False


def test_another_origin_cannot_approve_or_discard(sec_hub: Hub, sec_admin: HubClient,
                                                  admin_page,
                                                  hostile_site: HostileSite) -> None:
    victim = _pending(sec_hub, "victim")
    hub = sec_hub.url
    attacks = {
        "auto-submitted POST form": f"""
            <form id="f" method="post" action="{hub}/hub/authorize/{victim.name}">
              <input name="action" value="approve"></form>
            <script>document.getElementById('f').submit()</script>""",
        "POST form to discard": f"""
            <form id="f" method="post" action="{hub}/hub/discard/{victim.name}"></form>
            <script>document.getElementById('f').submit()</script>""",
        "fetch no-cors with credentials": f"""
            <script>
            for (const u of ['authorize', 'discard']) {{
              fetch('{hub}/hub/' + u + '/{victim.name}', {{method: 'POST', mode: 'no-cors',
                credentials: 'include', body: new URLSearchParams({{action: 'approve'}})}});
            }}
            </script>""",
        "top-level GET to authorize": f"<script>location = '{hub}/hub/authorize/{victim.name}'"
                                      "</script>",
        "top-level GET to discard": f"<script>location = '{hub}/hub/discard/{victim.name}'"
                                    "</script>",
        "image GETs": f"<img src='{hub}/hub/authorize/{victim.name}'>"
                      f"<img src='{hub}/hub/discard/{victim.name}'>",
    }
    for label, html in attacks.items():
        admin_page.goto(hostile_site.serve(f"<!doctype html><body>{html}</body>"))
        admin_page.wait_for_load_state("networkidle")
        admin_page.wait_for_timeout(300)
        state = _signups(sec_admin)
        assert victim.name in state, f"{label}: the sign-up was discarded"
        assert state[victim.name] is False, f"{label}: the sign-up was approved"
    assert not victim.login()


def test_the_admins_own_buttons_work(sec_hub: Hub, sec_admin: HubClient, admin_page) -> None:
    victim = _pending(sec_hub, "click")
    row = f"tr[data-name='{victim.name}']"
    admin_page.goto(f"{sec_hub.url}/hub/authorize")
    _shot(admin_page, "authorize-before-approve")
    admin_page.click(f"{row} button[value=approve]")
    admin_page.wait_for_url("**/hub/authorize")
    assert _signups(sec_admin)[victim.name] is True and victim.login()
    admin_page.click(f"{row} button[value=withdraw]")
    admin_page.wait_for_url("**/hub/authorize")
    assert _signups(sec_admin)[victim.name] is False
    admin_page.click(f"{row} button:has-text('Discard')")
    admin_page.wait_for_url("**/hub/authorize")
    assert victim.name not in _signups(sec_admin)
    assert admin_page.query_selector(row) is None


def test_hub_pages_render_under_the_security_headers(sec_hub: Hub, admin_page,
                                                     chromium) -> None:
    """The headers break none of the hub's pages (no CSP violation, the forms are there)."""
    violations: list[str] = []
    admin_page.on("console", lambda m: violations.append(m.text)
                  if "Content Security Policy" in m.text or "Refused" in m.text else None)
    for path, selector in [("/hub/home", "#start"), ("/hub/token", "#request-token-form"),
                           ("/hub/authorize", "#signups"), ("/hub/admin", "#react-admin-hook")]:
        response = admin_page.goto(f"{sec_hub.url}{path}")
        assert response is not None and response.status == 200, path
        assert response.headers["x-frame-options"] == "DENY"
        admin_page.wait_for_selector(selector, state="attached")
        _shot(admin_page, path.strip("/").replace("/", "-"))
    signed_out = chromium.new_context()  # the login and sign-up forms
    page = signed_out.new_page()
    page.on("console", lambda m: violations.append(m.text)
            if "Content Security Policy" in m.text else None)
    for path, selector in [("/hub/login", "#login_submit"), ("/hub/signup", "#signup_submit")]:
        page.goto(f"{sec_hub.url}{path}")
        page.wait_for_selector(selector)
        _shot(page, path.strip("/").replace("/", "-"))
    signed_out.close()
    assert violations == []
