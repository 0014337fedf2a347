"""Replays of the probe against sign-up, sign-in and the approval URLs (HTTP only).

The probe signed up names carrying HTML attributes, control and zero-width characters,
a Cyrillic ``admin`` and 5,000 characters; toggled approvals with GET; got HTTP 500 for
an unknown name; guessed passwords without limit and signed up without limit. Each test
replays one of these against the shared platform (``sec_hub``).
"""

from __future__ import annotations

import html
import re
import time
import uuid

import pytest
import requests
from conftest import fresh_name
from hub_helpers import PASSWORD, Hub, HubClient, new_user

SIGNUP_PASSWORD = "tidal-mixing-layer-42"

HOSTILE = {
    "tab attributes": "x\tautofocus\tonfocus=alert(1)",
    "short tab attribute": "a\tonfocus=x",
    "control character": "ev\x07e",
    "zero-width space": "ad\u200bmin",
    "cyrillic admin": "\u0430dmin",
    "lookalike admin": "adm1n",
    "5000 characters": "a" * 5000,
    "upper case": "Eve",
}


def _signup(hub: Hub, name: str, session: requests.Session | None = None,
            base: str | None = None, headers: dict[str, str] | None = None
            ) -> requests.Response:
    session = session or requests.Session()
    base = base or hub.url
    session.get(f"{base}/hub/signup", headers=headers, timeout=30)
    xsrf = session.cookies.get("_xsrf", path="/hub/") or ""
    return session.post(f"{base}/hub/signup", headers=headers, timeout=30, data={
        "username": name, "signup_password": SIGNUP_PASSWORD,
        "signup_password_confirmation": SIGNUP_PASSWORD, "_xsrf": xsrf})


def _message(page: str) -> str:
    found = re.search(r'<p id="signup-message"[^>]*>(.*?)</p>', page, re.S)
    assert found, page[-2000:]
    return html.unescape(found.group(1))


def _signups(admin: HubClient) -> dict[str, bool]:
    r = admin.api("GET", "/hub/api/oceandata/signups")
    r.raise_for_status()
    return {row["name"]: row["authorized"] for row in r.json()}


@pytest.mark.parametrize("name", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_names_are_refused_with_one_line(sec_hub: Hub, sec_admin: HubClient,
                                                 name: str) -> None:
    r = _signup(sec_hub, name)
    assert r.status_code == 400, r.text[-1000:]
    message = _message(r.text)
    assert "\n" not in message.strip() and message.startswith("User name ")
    assert "looks like" in message or "1 to 22 characters" in message
    known = _signups(sec_admin)
    assert name not in known and name.lower() not in known


def test_a_valid_name_signs_up_and_waits_for_approval(sec_hub: Hub,
                                                      sec_admin: HubClient) -> None:
    name = fresh_name("mo")
    r = _signup(sec_hub, name)
    assert r.status_code == 200
    assert "administrator has approved it" in _message(r.text)
    assert _signups(sec_admin)[name] is False
    # the same name again, or a look-alike of it, is refused
    assert "already taken" in _message(_signup(sec_hub, name).text)
    twin = "m0" + name[2:]  # "mo..." with a zero for the o
    assert "looks like the existing name" in _message(_signup(sec_hub, twin).text)


def test_api_and_action_urls_refuse_unknown_names_with_404(sec_hub: Hub,
                                                           sec_admin: HubClient) -> None:
    for name in ("nobody-signed-up", "x%09autofocus", "a" * 300):
        assert sec_admin.approve(name).status_code == 404
        assert sec_admin.api("DELETE", f"/hub/api/oceandata/signups/{name}").status_code == 404
    xsrf = sec_admin._xsrf()
    for url in ("authorize", "discard"):
        r = sec_admin.session.post(f"{sec_hub.url}/hub/{url}/nobody-signed-up",
                                   data={"_xsrf": xsrf, "action": "approve"},
                                   allow_redirects=False)
        assert r.status_code == 404 and "Nobody signed up as" in r.text


def test_get_on_action_urls_answers_405_and_changes_nothing(sec_hub: Hub,
                                                            sec_admin: HubClient) -> None:
    victim = HubClient(sec_hub, fresh_name("victim"))
    victim.signup()
    for url in (f"authorize/{victim.name}", f"discard/{victim.name}",
                "authorize/nobody-signed-up"):
        r = sec_admin.session.get(f"{sec_hub.url}/hub/{url}", allow_redirects=False)
        assert r.status_code == 405, (url, r.status_code)
        assert r.headers["Allow"] == "POST"
    assert _signups(sec_admin)[victim.name] is False
    assert not victim.login()


def test_post_needs_the_xsrf_token_and_an_admin(sec_hub: Hub, sec_admin: HubClient) -> None:
    victim = HubClient(sec_hub, fresh_name("victim"))
    victim.signup()
    url = f"{sec_hub.url}/hub/authorize/{victim.name}"
    # JupyterHub 5.5 checks _xsrf on every cookie-authenticated POST
    for data in ({"action": "approve"}, {"action": "approve", "_xsrf": "forged"}):
        r = sec_admin.session.post(url, data=data, allow_redirects=False)
        assert r.status_code == 403, r.status_code
    # a signed-in user who is not an administrator
    mallory = new_user(sec_hub, sec_admin, fresh_name("mallory"))
    mallory.session.get(f"{sec_hub.url}/hub/home")
    r = mallory.session.post(url, data={"action": "approve", "_xsrf": mallory._xsrf()},
                             allow_redirects=False)
    assert r.status_code == 403 and "Only administrators" in r.text
    assert mallory.session.get(f"{sec_hub.url}/hub/authorize").status_code == 403
    # nobody signed in: the list sends to the login page, the actions are forbidden
    r = requests.get(f"{sec_hub.url}/hub/authorize", allow_redirects=False)
    assert r.status_code == 302 and "/hub/login" in r.headers["Location"]
    assert _signups(sec_admin)[victim.name] is False
    # the administrator's own POST with the token works
    r = sec_admin.session.post(url, data={"action": "approve", "_xsrf": sec_admin._xsrf()},
                               allow_redirects=False)
    assert r.status_code == 303
    assert _signups(sec_admin)[victim.name] is True and victim.login()


def test_repeated_wrong_passwords_lock_the_name_with_a_growing_delay(
        sec_hub: Hub, sec_admin: HubClient) -> None:
    """5 failures lock for 1 s on the test platform (30 s in production), then 2 s, 4 s."""
    user = new_user(sec_hub, sec_admin, fresh_name("lock"))  # its sign-in cleared the count
    user.session.cookies.clear()

    def attempt(password: str) -> requests.Response:
        user.session.get(f"{sec_hub.url}/hub/login")
        return user.session.post(f"{sec_hub.url}/hub/login", allow_redirects=False, data={
            "username": user.name, "password": password, "_xsrf": user._xsrf()})

    statuses = [attempt("wrong-password-0").status_code for _ in range(5)]
    assert statuses == [200] * 5  # the form again, "Invalid username or password."
    locked = attempt(PASSWORD)  # the right password, refused while locked
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) >= 1
    assert "Too many failed sign-ins" in locked.text and "1 s" in locked.text
    time.sleep(1.1)
    assert attempt("wrong-password-1").status_code == 200  # sixth failure: 2 s
    started = time.monotonic()
    second = attempt(PASSWORD)
    assert second.status_code == 429 and "2 s" in second.text
    time.sleep(max(0.0, 1.2 - (time.monotonic() - started)))
    assert attempt(PASSWORD).status_code == 429  # 1 s would have been over by now
    time.sleep(1.0)
    assert attempt(PASSWORD).status_code == 302  # unlocked; success clears the count
    assert "sign-in as" in sec_hub.log() and "locked for" in sec_hub.log()


def test_signup_is_limited_per_client_address(sec_hub: Hub, sec_admin: HubClient) -> None:
    """10 sign-up attempts per client and hour; the client is who the proxy says it is.

    The test platform exempts loopback (every other test signs up from there), so this
    test speaks to the hub's own port as configurable-http-proxy does, with the
    ``X-Forwarded-For`` of a client elsewhere.
    """
    hub_direct = f"http://127.0.0.1:{sec_hub.runtime.ports['hub_api']}"
    client = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    session = requests.Session()
    statuses = []
    for i in range(10):
        # X-Real-Ip would fool Tornado's remote_ip; the limit does not believe it
        headers = {"X-Forwarded-For": client, "X-Real-Ip": f"198.51.100.{i + 1}"}
        statuses.append(_signup(sec_hub, f"Bad{i}", session, hub_direct, headers).status_code)
    assert statuses == [400] * 10  # refused names count as attempts too
    r = _signup(sec_hub, fresh_name("late"), session, hub_direct,
                {"X-Forwarded-For": client, "X-Real-Ip": "198.51.100.99"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert _message(r.text).startswith("Too many sign-ups from your address")
    # a client's own X-Forwarded-For entry before the proxy's is ignored as well
    r = _signup(sec_hub, fresh_name("late"), session, hub_direct,
                {"X-Forwarded-For": f"192.0.2.1, {client}"})
    assert r.status_code == 429
    # another address is not affected
    other = requests.Session()
    name = fresh_name("other")
    r = _signup(sec_hub, name, other, hub_direct, {"X-Forwarded-For": "192.0.2.77"})
    assert r.status_code == 200 and name in _signups(sec_admin)
    assert f"client {client} made 10 sign-up attempts" in sec_hub.log()


def test_hub_pages_carry_security_headers_and_samesite_cookies(
        sec_hub: Hub, sec_admin: HubClient) -> None:
    pages = [requests.get(f"{sec_hub.url}/hub/login"),
             requests.get(f"{sec_hub.url}/hub/signup"),
             sec_admin.session.get(f"{sec_hub.url}/hub/authorize"),
             sec_admin.session.get(f"{sec_hub.url}/hub/home")]
    for r in pages:
        assert r.status_code == 200, r.url
        h = r.headers
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"], r.url
        assert h["X-Frame-Options"] == "DENY"
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["Referrer-Policy"] == "same-origin"
    # the session cookies set at login: SameSite=Lax, HttpOnly (no TLS here: no Secure)
    s = requests.Session()
    s.get(f"{sec_hub.url}/hub/login")
    r = s.post(f"{sec_hub.url}/hub/login", allow_redirects=False, data={
        "username": sec_hub.runtime.admin, "password": sec_hub.admin_password,
        "_xsrf": s.cookies.get("_xsrf", path="/hub/")})
    assert r.status_code == 302
    cookies = r.raw.headers.getlist("Set-Cookie")
    assert any(c.startswith("jupyterhub-hub-login=") for c in cookies)
    for cookie in cookies:
        if "expires=Thu, 01 Jan 1970" in cookie or 'Max-Age=0' in cookie:
            continue  # clearing an old cookie
        assert "SameSite=Lax" in cookie, cookie
