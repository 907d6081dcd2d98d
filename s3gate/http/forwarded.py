"""Where the client is and which address it used: the one home for forwarded headers.

Behind a reverse proxy (``trust_forwarded = true``) the proxy's
``X-Forwarded-For`` / ``-Proto`` / ``-Host`` describe the client; otherwise
they are the client's own words and are ignored. ``public_url``, when set,
names the gateway's address for links and origin checks.
"""

from __future__ import annotations

from aiohttp import web

from .. import keys
from ..auth import csrf


def _first(value: str) -> str:
    return value.split(",")[0].strip()


def client_address(request: web.Request) -> str | None:
    """The client's address; behind a trusted proxy, the last X-Forwarded-For hop (the one it added)."""
    if request.app[keys.SETTINGS].trust_forwarded:
        last = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
        if last:
            return last[:64]
    return request.remote


def scheme(request: web.Request) -> str:
    if request.secure:
        return "https"
    if request.app[keys.SETTINGS].trust_forwarded:
        proto = _first(request.headers.get("X-Forwarded-Proto", "")).lower()
        if proto in ("http", "https"):
            return proto
    return request.scheme


def is_https(request: web.Request) -> bool:
    return scheme(request) == "https"


def host(request: web.Request) -> str:
    if request.app[keys.SETTINGS].trust_forwarded and "X-Forwarded-Host" in request.headers:
        return _first(request.headers["X-Forwarded-Host"])
    return request.host


def base_url(request: web.Request) -> str:
    """How clients reach the gateway, for the links and Locations it hands out."""
    public_url = request.app[keys.SETTINGS].public_url
    if public_url:
        return public_url.rstrip("/")
    return f"{scheme(request)}://{host(request)}"


def own_hosts(request: web.Request) -> set[str]:
    """The host[:port] forms under which this gateway is its own origin (for Origin checks)."""
    hosts = {csrf.normalize_host(request.host, request.scheme), csrf.normalize_host(host(request), scheme(request))}
    public_url = request.app[keys.SETTINGS].public_url
    if public_url:
        hosts.add(csrf.host_of(public_url))
    return {h for h in hosts if h}
