"""The ``dask-gateway`` JupyterHub service: dask-gateway-server behind an owner-checking gate.

dask-gateway's HTTP proxy serves every cluster's dashboard at ``/clusters/<name>/`` to
anyone who knows the URL (dask/dask-gateway#570). JupyterHub routes
``/services/dask-gateway/`` to this gate instead, which:

- passes ``.../api/...`` through (dask-gateway authenticates those requests itself with
  the caller's JupyterHub token) once :class:`oceandata.hub.security.ServiceAuth` has
  checked that the token carries ``access:services!service=dask-gateway``
  (``api/health`` stays open);
- for ``.../clusters/<name>/...`` (dashboards, HTTP and websockets) requires a JupyterHub
  identity, a token in the ``Authorization`` header or the cookie this service sets after
  the hub's OAuth login, and asks the gateway, *with that user's token*, whether the
  cluster is theirs; another user's cluster is answered 404, like a missing one. A
  websocket opened with the cookie must come from a page of the hub's own origin (a page
  on another port of the same host is same-site, so SameSite cookies alone would let it
  drive the dashboard);
- answers 404 to anything else.

The gateway runs as a child process (``dask-gateway-server -f $OCEANDATA_GATEWAY_CONFIG``)
and stops with the service. Its environment is the service's, completed by the backend
choice the launcher wrote to ``<hub dir>/backend.json`` (``OCEANDATA_HUB_BACKEND``,
``OCEANDATA_HUB_INTERNAL_HOST``, ``OCEANDATA_SLURM_*``, ``SLURM_CONF``) for any of those
the service's environment lacks.
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

from .security import CACHE_SECONDS, SECURITY_HEADERS, AuthError, ServiceAuth

COOKIE = "oceandata-gateway-auth"
GATE_HEADERS = {"Content-Security-Policy": "frame-ancestors 'self'",
                "X-Content-Type-Options": SECURITY_HEADERS["X-Content-Type-Options"],
                "Referrer-Policy": SECURITY_HEADERS["Referrer-Policy"]}
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "host", "content-length",
              "content-encoding"}


@dataclass
class GateConfig:
    """Where things are; read from the JupyterHub service environment."""

    prefix: str
    upstream: str
    auth: ServiceAuth
    _owners: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> GateConfig:
        ports = json.loads(os.environ["OCEANDATA_HUB_PORTS"])
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/dask-gateway/")
        return cls(prefix=prefix.rstrip("/") + "/",
                   upstream=f"http://127.0.0.1:{ports['gateway_http']}",
                   auth=ServiceAuth(cookie_name=COOKIE))


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


def _cookie_options(cfg: GateConfig) -> dict:
    options = cfg.auth.cookie_options(cfg.prefix)
    options["samesite"] = "Lax"
    return options


def _login_redirect(cfg: GateConfig, request: web.Request) -> web.Response:
    url, state = cfg.auth.login_redirect(request.path_qs)
    resp = web.HTTPFound(url)
    resp.set_cookie(cfg.auth.state_cookie_name, state, max_age=600, **_cookie_options(cfg))
    return resp


async def oauth_callback(request: web.Request) -> web.StreamResponse:
    """Finish the hub's OAuth login: exchange the code, keep the token in a cookie."""
    cfg: GateConfig = request.app["cfg"]
    try:
        token, target = await cfg.auth.finish_login(
            request.query.get("code"), request.query.get("state"),
            request.cookies.get(cfg.auth.state_cookie_name))
    except AuthError as exc:
        raise web.HTTPForbidden(text=str(exc)) from None
    if not target.startswith(cfg.prefix) or target.startswith("//"):
        target = cfg.prefix
    out = web.HTTPFound(target)
    out.set_cookie(COOKIE, token, **_cookie_options(cfg))
    out.del_cookie(cfg.auth.state_cookie_name, path=cfg.prefix)
    return out


def _same_origin(request: web.Request) -> bool:
    """Whether the request's ``Origin`` is the hub it came through (scheme://host:port)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    parsed = urllib.parse.urlparse(origin)
    return parsed.netloc == request.headers.get("Host", "") and parsed.scheme in (
        "http", "https")


def _forward_headers(request: web.Request) -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    headers.pop("Cookie", None)  # the hub's and this gate's cookies stay here
    return headers


async def _proxy_http(request: web.Request, url: str) -> web.StreamResponse:
    session: aiohttp.ClientSession = request.app["session"]
    body = await request.read()
    try:
        async with session.request(request.method, url, headers=_forward_headers(request),
                                   data=body or None, allow_redirects=False) as resp:
            payload = await resp.read()
            headers = {k: v for k, v in resp.headers.items()
                       if k.lower() not in HOP_BY_HOP}
            return web.Response(status=resp.status, body=payload, headers=headers)
    except aiohttp.ClientConnectionError:
        # starting, restarting or stopped: one line to the client, no traceback in the log
        raise web.HTTPServiceUnavailable(text="dask-gateway is not answering; try again "
                                              "shortly") from None


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
    if path == cfg.auth.callback_path:
        return await oauth_callback(request)
    if not path.startswith(cfg.prefix):
        raise web.HTTPNotFound()
    rest = path[len(cfg.prefix):]
    url = f"{cfg.upstream}{request.path_qs}"
    if rest == "api/health":
        return await _proxy_http(request, url)
    api = rest.startswith("api/") or rest == "api"
    if not api and not rest.startswith("clusters/"):
        raise web.HTTPNotFound()
    try:
        user = await cfg.auth.identify(request.headers,
                                       {} if api else request.cookies)
    except AuthError as exc:
        raise _http_error(exc) from None
    if user is None:
        if not api and request.method == "GET" and "text/html" in request.headers.get(
                "Accept", ""):
            return _login_redirect(cfg, request)
        raise web.HTTPUnauthorized(text="log in to JupyterHub (or send Authorization: token "
                                        "<JupyterHub token>)")
    if api:
        return await _proxy_http(request, url)
    websocket = request.headers.get("Upgrade", "").lower() == "websocket"
    if websocket and user.via == "cookie" and not _same_origin(request):
        raise web.HTTPForbidden(text="a dashboard websocket must come from the hub's own pages")
    cluster = rest.split("/")[1]
    session: aiohttp.ClientSession = request.app["session"]
    if not cluster or not await _owns(cfg, session, user.session, cluster):
        raise web.HTTPNotFound(text=f"no cluster {cluster!r} of user {user.name!r}")
    if websocket:
        return await _proxy_ws(request, url)
    return await _proxy_http(request, url)


def _http_error(exc: AuthError) -> web.HTTPException:
    """The aiohttp answer of an :class:`AuthError` (401, 403 or 503)."""
    kinds = {401: web.HTTPUnauthorized, 403: web.HTTPForbidden,
             503: web.HTTPServiceUnavailable}
    return kinds.get(exc.status, web.HTTPForbidden)(text=str(exc))


async def _make_app(cfg: GateConfig) -> web.Application:
    app = web.Application()
    app["cfg"] = cfg

    async def headers(request: web.Request, response: web.StreamResponse) -> None:
        # dashboards are framed by JupyterLab (dask-labextension) on the hub's own origin
        # and run Bokeh's inline scripts: only framing by other origins is refused
        for name, value in GATE_HEADERS.items():
            response.headers[name] = value

    app.on_response_prepare.append(headers)

    async def session_ctx(app: web.Application):
        app["session"] = aiohttp.ClientSession(auto_decompress=False)
        yield
        await app["session"].close()

    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", route)
    return app


def gateway_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The gateway's environment: *environ* plus the backend choice it lacks.

    Parameters
    ----------
    environ
        The service's environment (default ``os.environ``), with ``OCEANDATA_HUB_DIR``.

    Returns
    -------
    dict of str to str
        *environ*, with each variable of ``<hub dir>/backend.json`` (written by the
        launcher, :data:`oceandata.hub.launcher.BACKEND_FILE`) that it does not set.
    """
    from .launcher import BACKEND_ENV, BACKEND_FILE

    env = dict(os.environ if environ is None else environ)
    path = Path(env.get("OCEANDATA_HUB_DIR", ".")) / BACKEND_FILE
    try:
        written = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        written = {}
    for name in BACKEND_ENV:
        if name in written and not env.get(name):
            env[name] = str(written[name])
    return env


def main() -> None:
    """Run dask-gateway-server as a child and the gate in this process until stopped."""
    cfg = GateConfig.from_env()
    port = urllib.parse.urlparse(os.environ["JUPYTERHUB_SERVICE_URL"]).port
    config = Path(os.environ["OCEANDATA_GATEWAY_CONFIG"])
    gateway = subprocess.Popen([sys.executable, "-m", "dask_gateway_server", "-f", str(config)],
                               env=gateway_environment())

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
