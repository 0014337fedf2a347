"""Who is calling a hub service: JupyterHub tokens and the hub's OAuth login.

Shared by the platform's services (the dask-gateway gate and the allocations service):
a request carries either a JupyterHub token (``Authorization: token ...``) or the
cookie a service sets after the hub's OAuth login; the hub's ``/hub/api/user`` says whose
token it is. Lookups are cached for :data:`CACHE_SECONDS`.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import aiohttp

CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class HubUser:
    """A JupyterHub user as its token shows it."""

    name: str
    admin: bool = False
    groups: frozenset[str] = frozenset()


@dataclass
class HubOAuthClient:
    """A hub service's view of the hub: API, public URL and OAuth client credentials."""

    hub_api: str
    hub_public: str
    client_id: str
    client_secret: str
    callback_url: str
    _cache: dict[str, tuple[float, HubUser | None]] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> HubOAuthClient:
        """From the environment JupyterHub gives a managed service."""
        hub_public = os.environ.get("OCEANDATA_HUB_PUBLIC_URL", "").rstrip("/")
        # exactly as the hub registered it (a path): the hub compares redirect URIs verbatim
        callback = os.environ["JUPYTERHUB_OAUTH_CALLBACK_URL"]
        return cls(hub_api=os.environ["JUPYTERHUB_API_URL"].rstrip("/"), hub_public=hub_public,
                   client_id=os.environ["JUPYTERHUB_CLIENT_ID"],
                   client_secret=os.environ["JUPYTERHUB_API_TOKEN"], callback_url=callback)

    @property
    def callback_path(self) -> str:
        return urllib.parse.urlparse(self.callback_url).path

    async def user_for_token(self, session: aiohttp.ClientSession,
                             token: str) -> HubUser | None:
        """The user owning *token* (None for an unknown token or a service's token)."""
        now = time.monotonic()
        hit = self._cache.get(token)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        async with session.get(f"{self.hub_api}/user",
                               headers={"Authorization": f"token {token}"}) as resp:
            user = None
            if resp.status == 200:
                data: dict[str, Any] = await resp.json()
                if data.get("kind", "user") == "user":
                    user = HubUser(data["name"], bool(data.get("admin")),
                                   frozenset(data.get("groups") or ()))
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[token] = (now, user)
        return user

    def login_redirect(self, next_url: str) -> tuple[str, str]:
        """The hub's authorize URL and the state cookie value remembering *next_url*."""
        state = secrets.token_urlsafe(24)
        params = {"client_id": self.client_id, "response_type": "code", "state": state,
                  "redirect_uri": self.callback_url}
        url = f"{self.hub_public}/hub/api/oauth2/authorize?{urllib.parse.urlencode(params)}"
        cookie = base64.urlsafe_b64encode(
            json.dumps({"state": state, "next": next_url}).encode()).decode()
        return url, cookie

    @staticmethod
    def next_url(state_cookie: str, state: str | None) -> str | None:
        """Where to go after login, or None when the state does not match the cookie."""
        try:
            saved = json.loads(base64.urlsafe_b64decode(state_cookie.encode()))
        except (ValueError, json.JSONDecodeError):
            return None
        if not state or saved.get("state") != state:
            return None
        return str(saved.get("next") or "")

    async def token_for_code(self, session: aiohttp.ClientSession, code: str) -> str | None:
        """Exchange an OAuth code for the user's token (None if the hub refuses)."""
        data = {"client_id": self.client_id, "client_secret": self.client_secret,
                "grant_type": "authorization_code", "code": code,
                "redirect_uri": self.callback_url}
        async with session.post(f"{self.hub_api}/oauth2/token", data=data) as resp:
            if resp.status != 200:
                return None
            return (await resp.json())["access_token"]


def token_from(headers: Any, cookies: Any, cookie_name: str) -> str | None:
    """A token from ``Authorization: token|bearer ...`` or else from the named cookie."""
    kind, _, value = str(headers.get("Authorization", "")).partition(" ")
    if kind.lower() in ("token", "bearer", "jupyterhub") and value.strip():
        return value.strip()
    return cookies.get(cookie_name) or None
