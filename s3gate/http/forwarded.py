"""Where the client is and which address it used: the one home for forwarded headers.

``X-Forwarded-For`` / ``-Proto`` / ``-Host`` are believed only when the
direct peer (the TCP connection's other end) is one of ``trusted_proxies``;
from anyone else they are the client's own words and change nothing. The
client is then the right-most address of the X-Forwarded-For chain that is
not a trusted proxy: every entry to its right was added by a proxy we trust,
everything to its left the client could have written itself.
``public_url``, when set, names the gateway's address for links and origin checks.

Everything that depends on the client's address, scheme or host (links,
redirects, signed URLs, the Secure cookie flag, CSRF origin checks, the audit
log, login throttling) asks here; nothing else reads these headers.
"""

from __future__ import annotations

import ipaddress
import re
import socket

from aiohttp import web

from .. import keys
from ..auth import csrf
from ..settings import UNIX_PEER

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# A Host value as RFC 9110 section 7.2 allows it (reg-name or [IPv6], optional port),
# checked before it goes into a link: a proxy may pass on what its client sent.
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+;=%-]+)(:[0-9]{1,5})?", re.ASCII)


def _address(text: str) -> IPAddress | None:
    """One X-Forwarded-For entry (or a peer address) as an IP; None when it is not one."""
    text = text.strip()
    if text.startswith("["):  # "[2001:db8::1]:4711", as some proxies write IPv6 with a port
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # "192.0.2.1:4711"
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:  # a dual-stack socket's ::ffff:127.0.0.1
        return ip.ipv4_mapped
    return ip


def _trusted(request: web.Request, ip: IPAddress | None) -> bool:
    return ip is not None and any(net != UNIX_PEER and ip in net for net in request.app[keys.SETTINGS].trusted_networks)


def peer_is_trusted(request: web.Request) -> bool:
    """Whether the direct peer is one of trusted_proxies (a unix-socket peer only when 'unix' is listed)."""
    networks = request.app[keys.SETTINGS].trusted_networks
    if not networks:
        return False
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None and sock.family == getattr(socket, "AF_UNIX", None):
        return UNIX_PEER in networks
    return _trusted(request, _address(request.remote or ""))


def _nearest(request: web.Request, name: str) -> str:
    """The right-most value of a comma-separated forwarded header: the one our trusted peer set."""
    return request.headers.get(name, "").rsplit(",", 1)[-1].strip()


def client_address(request: web.Request) -> str | None:
    """The client's address: behind trusted proxies, the right-most untrusted X-Forwarded-For hop."""
    if not peer_is_trusted(request):
        return request.remote
    hops = [hop for value in request.headers.getall("X-Forwarded-For", ()) for hop in value.split(",")]
    client = request.remote
    for hop in reversed(hops):
        ip = _address(hop)
        if ip is None:
            # Not an address: a trusted proxy would not have written it, so it came
            # from further left (the client). Stop at the last hop we could vouch for.
            break
        client = str(ip)
        if not _trusted(request, ip):
            break  # the first address no trusted proxy stands behind: the client
    # All hops trusted (a client on the proxy's own machine): the left-most is the client.
    return client


def scheme(request: web.Request) -> str:
    if request.secure:  # our own TLS (tls_cert): nothing a header says changes that
        return "https"
    if peer_is_trusted(request):
        proto = _nearest(request, "X-Forwarded-Proto").lower()
        if proto in ("http", "https"):
            return proto
    return request.scheme


def is_https(request: web.Request) -> bool:
    return scheme(request) == "https"


def host(request: web.Request) -> str:
    if peer_is_trusted(request):
        forwarded = _nearest(request, "X-Forwarded-Host")
        if forwarded and _HOST.fullmatch(forwarded):
            return forwarded
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
