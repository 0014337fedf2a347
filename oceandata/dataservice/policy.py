"""The open-data service's traffic policy: access classes, their limits, who a client is.

One settings block (:class:`TrafficSettings`, ``OCEANDATA_DATA__...`` variables, see
:class:`oceandata.config.Settings`) gives, per access class, the largest synchronous
answer, the request rate, the concurrent requests, the daily download quota and the
largest asynchronous job. Every part of the service that refuses or counts traffic
(estimates and 413s, rate and concurrency limits, quotas, the ledger, metrics) asks this
module, so the three classes mean the same thing everywhere:

``anonymous``
    no credentials; known by the client address (anonymised in anything stored).
``registered``
    a hub user (a token, Basic password or the login cookie).
``partner``
    a hub user with an approved allocation in force today, or in a partner group.

:func:`classify` names what a request is for (dataset, protocol, format) from its path
alone, the same way for the metrics, the ledger and the limits.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ACCESS_CLASSES, AccessClass, ClassLimits, TrafficSettings

__all__ = ["ACCESS_CLASSES", "ClassLimits", "RequestKind", "TrafficSettings",
           "access_class", "classify", "client_address", "client_key", "limits_for",
           "traffic_settings"]

def traffic_settings() -> TrafficSettings:
    """The settings block, as :func:`oceandata.config.get_settings` reads it."""
    from ..config import get_settings

    return get_settings().data


def limits_for(request: Any) -> tuple[AccessClass, ClassLimits]:
    """The access class of *request*'s caller and its limits (``app.state.traffic``
    overrides the settings, for tests and embedding)."""
    settings = getattr(request.app.state, "traffic", None) or traffic_settings()
    caller = getattr(request.state, "caller", None)
    name = access_class(caller, settings)
    return name, settings.for_class(name)


def access_class(caller: Any, settings: TrafficSettings | None = None) -> AccessClass:
    """``anonymous``, ``registered`` or ``partner`` for a :class:`.access.Caller`."""
    if caller is None or getattr(caller, "name", None) is None:
        return "anonymous"
    settings = settings or traffic_settings()
    if getattr(caller, "partner", False) or set(caller.groups) & set(settings.partner_groups):
        return "partner"
    return "registered"


def client_address(request: Any, settings: TrafficSettings | None = None) -> str:
    """The client's address: the peer, or the last address its trusted proxy forwarded."""
    settings = settings or getattr(request.app.state, "traffic", None) or traffic_settings()
    peer = request.client.host if request.client is not None else "unknown"
    if peer in settings.trusted_proxies:
        forwarded = request.headers.get("x-forwarded-for", "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-1]
    return peer


@functools.lru_cache(maxsize=4)
def _salt(path: str) -> bytes:
    from ..lab import secret_file

    return secret_file(Path(path)).encode()


def client_key(request: Any) -> str:
    """Who a client is for limits and the ledger: ``user:<name>`` for a hub user, else
    ``anon:<16 hex>``, a keyed hash of the address (an IPv6 address's /64; the salt is a
    0600 secret of the data dir): the same address gives the same key, and the stored
    key does not give the address back."""
    caller = getattr(request.state, "caller", None)
    if caller is not None and getattr(caller, "name", None):
        return f"user:{caller.name}"
    from ..config import get_settings

    salt = _salt(str(get_settings().data_dir / "secrets" / "dataservice-client-salt"))
    digest = hmac.new(salt, _client_network(client_address(request)).encode(),
                      hashlib.sha256).hexdigest()
    return f"anon:{digest[:16]}"


def _client_network(address: str) -> str:
    """An IPv4 address as it is; an IPv6 address as its /64, the block one client
    usually holds (every address of it would otherwise be a new client)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True)
class RequestKind:
    """What a request is for, from its path.

    Attributes
    ----------
    dataset
        The catalog name (without ``@version``), or None.
    protocol
        ``subset``, ``opendap``, ``zarr``, ``edr``, ``griddap``, ``tabledap``, ``job``,
        ``stac``, ``portal``, ``metrics`` or ``other``.
    format
        The answer's format where the path or query names one (``nc4``, ``csv``,
        ``dods``...), else ``""``.
    data
        Whether the answer carries data (counted against quotas and in the ledger).
    """

    dataset: str | None
    protocol: str
    format: str
    data: bool


_DATASET = re.compile(r"^/datasets/(?P<id>[^/]+)/(?P<rest>.*)$")
_ERDDAP = re.compile(r"^/erddap/(?P<kind>griddap|tabledap)/(?P<id>[^/.]+)(?P<ext>\.\w+)?")


def classify(path: str, query: dict[str, str] | None = None) -> RequestKind:
    """What the request at *path* (below the service prefix, without ``auth/``) is for.

    Parameters
    ----------
    path
        The path below the service's prefix, starting with ``/``.
    query
        The query parameters (``format=`` of subset downloads).
    """
    query = query or {}
    path = "/" + path.lstrip("/")
    if path == "/auth" or path.startswith("/auth/"):
        path = path[len("/auth"):] or "/"
    if match := _ERDDAP.match(path):
        ext = (match["ext"] or "").lstrip(".")
        return RequestKind(match["id"].partition("@")[0], match["kind"], ext,
                           ext not in ("", "html", "das", "dds", "graph"))
    if path.startswith("/stac"):
        return RequestKind(None, "stac", "json", False)
    if path == "/metrics":
        return RequestKind(None, "metrics", "", False)
    if path.startswith("/jobs/"):
        return RequestKind(None, "job", "", path.rstrip("/").endswith("/download"))
    match = _DATASET.match(path)
    if match is None:
        return RequestKind(None, "portal" if not path.startswith("/erddap") else "griddap",
                           "", False)
    dataset, rest = match["id"].partition("@")[0], match["rest"]
    head = rest.split("/", 1)[0]
    if head == "subset":
        return RequestKind(dataset, "subset", query.get("format", "nc4"), True)
    if head.startswith("opendap"):
        ext = rest.rpartition(".")[2] if "." in rest else ""
        return RequestKind(dataset, "opendap", ext, ext in ("dods", "ascii", "asc"))
    if head == "zarr":
        key = rest.rpartition("/")[2]
        meta = key.startswith(".z") or key == "zarr.json" or not key or key == "zarr"
        return RequestKind(dataset, "zarr", "" if meta else "chunk", not meta)
    if head == "edr":
        return RequestKind(dataset, "edr", query.get("f", ""), any(
            part in rest for part in ("position", "area", "cube", "radius", "trajectory")))
    if head == "erddap":
        sub = _ERDDAP.match("/" + rest)
        ext = (sub["ext"] or "").lstrip(".") if sub else ""
        return RequestKind(dataset, sub["kind"] if sub else "griddap", ext,
                           bool(sub) and ext not in ("", "html", "das", "dds", "graph"))
    return RequestKind(dataset, "portal", "", False)
