"""The ``dask-gateway`` JupyterHub service: dask-gateway-server behind an owner-checking gate.

dask-gateway's HTTP proxy serves every cluster's dashboard at ``/clusters/<name>/`` to
anyone who knows the URL (dask/dask-gateway#570). JupyterHub routes
``/services/dask-gateway/`` to this gate instead, which:

- passes ``.../api/...`` through unchanged (dask-gateway authenticates those requests
  itself with the caller's JupyterHub token);
- for ``.../clusters/<name>/...`` (dashboards, HTTP and websockets) requires a JupyterHub
  identity, a token in the ``Authorization`` header or the cookie this service sets after
  the hub's OAuth login, and asks the gateway, *with that user's token*, whether the
  cluster is theirs; another user's cluster is answered 404, like a missing one;
- answers 404 to anything else.

The gateway runs as a child process (``dask-gateway-server -f $OCEANDATA_GATEWAY_CONFIG``)
and stops with the service.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from .identity import CACHE_SECONDS, HubOAuthClient, token_from

COOKIE = "oceandata-gateway-auth"
STATE_COOKIE = "oceandata-gateway-oauth-state"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "host", "content-length",
              "content-encoding"}


@dataclass
class GateConfig:
    """Where things are; read from the JupyterHub service environment."""

    prefix: str
    upstream: str
    hub: HubOAuthClient
    _owners: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> GateConfig:
        ports = json.loads(os.environ["OCEANDATA_HUB_PORTS"])
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/dask-gateway/")
        return cls(prefix=prefix.rstrip("/") + "/",
                   upstream=f"http://127.0.0.1:{ports['gateway_http']}",
                   hub=HubOAuthClient.from_env())


async def _owns(cfg: GateConfig, session: aiohttp.ClientSession, token: str,
                cluster: str) -> bool:
    """Whether the gateway, asked with *token*, shows *cluster* (its owner's only)."""
    key = (token, cluster)
    hit = cfg._owners.get(key)
    if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
        return hit[1]
    url = f"{cfg.upstream}{cfg.prefix}api/v1/clusters/{urllib.parse.quote(cluster)}"
    async with session.get(url, headers={"Authorization": f"jupyterhub {token}"}) as resp:
        owns = resp.status == 200
    if len(cfg._owners) > 10000:
        cfg._owners.clear()
    cfg._owners[key] = (time.monotonic(), owns)
    return owns


def _login_redirect(cfg: GateConfig, request: web.Request) -> web.Response:
    url, state = cfg.hub.login_redirect(request.path_qs)
    resp = web.HTTPFound(url)
    resp.set_cookie(STATE_COOKIE, state, path=cfg.prefix, httponly=True, samesite="Lax",
                    max_age=600)
    return resp


async def oauth_callback(request: web.Request) -> web.StreamResponse:
    """Finish the hub's OAuth login: exchange the code, keep the token in a cookie."""
    cfg: GateConfig = request.app["cfg"]
    target = cfg.hub.next_url(request.cookies.get(STATE_COOKIE, ""), request.query.get("state"))
    if target is None:
        raise web.HTTPForbidden(text="OAuth state mismatch: start again from the dashboard link")
    code = request.query.get("code")
    if not code:
        raise web.HTTPBadRequest(text="OAuth callback without a code")
    token = await cfg.hub.token_for_code(request.app["session"], code)
    if token is None:
        raise web.HTTPForbidden(text="the hub refused the OAuth code")
    if not target.startswith(cfg.prefix):
        target = cfg.prefix
    out = web.HTTPFound(target)
    out.set_cookie(COOKIE, token, path=cfg.prefix, httponly=True, samesite="Lax")
    out.del_cookie(STATE_COOKIE, path=cfg.prefix)
    return out


def _forward_headers(request: web.Request) -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    headers.pop("Cookie", None)  # the hub's and this gate's cookies stay here
    return headers


async def _proxy_http(request: web.Request, url: str) -> web.StreamResponse:
    session: aiohttp.ClientSession = request.app["session"]
    body = await request.read()
    async with session.request(request.method, url, headers=_forward_headers(request),
                               data=body or None, allow_redirects=False) as resp:
        payload = await resp.read()
        headers = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
        return web.Response(status=resp.status, body=payload, headers=headers)


async def _proxy_ws(request: web.Request, url: str) -> web.StreamResponse:
    session: aiohttp.ClientSession = request.app["session"]
    server = web.WebSocketResponse()
    await server.prepare(request)
    ws_url = "ws" + url[len("http"):]
    async with session.ws_connect(ws_url, headers={
            k: v for k, v in _forward_headers(request).items()
            if not k.lower().startswith("sec-websocket")}) as client:

        async def pump(src, dst) -> None:
            async for msg in src:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await dst.send_str(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await dst.send_bytes(msg.data)
                else:
                    break

        tasks = [asyncio.ensure_future(pump(server, client)),
                 asyncio.ensure_future(pump(client, server))]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
    await server.close()
    return server


async def route(request: web.Request) -> web.StreamResponse:
    """Dispatch one request under the service prefix (see the module docstring)."""
    cfg: GateConfig = request.app["cfg"]
    path = request.path
    if path == cfg.hub.callback_path:
        return await oauth_callback(request)
    if not path.startswith(cfg.prefix):
        raise web.HTTPNotFound()
    rest = path[len(cfg.prefix):]
    url = f"{cfg.upstream}{request.path_qs}"
    if rest.startswith("api/") or rest == "api":
        return await _proxy_http(request, url)
    if rest.startswith("clusters/"):
        cluster = rest.split("/")[1]
        token = token_from(request.headers, request.cookies, COOKIE)
        session: aiohttp.ClientSession = request.app["session"]
        user = await cfg.hub.user_for_token(session, token) if token else None
        if user is None:
            if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
                return _login_redirect(cfg, request)
            raise web.HTTPUnauthorized(text="log in to JupyterHub to see this dashboard")
        if not cluster or not await _owns(cfg, session, token, cluster):
            raise web.HTTPNotFound(text=f"no cluster {cluster!r} of user {user.name!r}")
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await _proxy_ws(request, url)
        return await _proxy_http(request, url)
    raise web.HTTPNotFound()


async def _make_app(cfg: GateConfig) -> web.Application:
    app = web.Application()
    app["cfg"] = cfg

    async def session_ctx(app: web.Application):
        app["session"] = aiohttp.ClientSession(auto_decompress=False)
        yield
        await app["session"].close()

    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", route)
    return app


def main() -> None:
    """Run dask-gateway-server as a child and the gate in this process until stopped."""
    cfg = GateConfig.from_env()
    port = urllib.parse.urlparse(os.environ["JUPYTERHUB_SERVICE_URL"]).port
    config = Path(os.environ["OCEANDATA_GATEWAY_CONFIG"])
    gateway = subprocess.Popen([sys.executable, "-m", "dask_gateway_server", "-f", str(config)])

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)  # JupyterHub stops services with SIGINT first
    try:
        web.run_app(_make_app(cfg), host="127.0.0.1", port=port, print=None,
                    handle_signals=False)
    except KeyboardInterrupt:
        pass
    finally:
        gateway.terminate()
        try:
            gateway.wait(20)
        except subprocess.TimeoutExpired:
            gateway.kill()


if __name__ == "__main__":
    main()
