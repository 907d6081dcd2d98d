"""CSRF defence by Fetch Metadata and Origin, no tokens in forms.

Browsers mark every request with where it came from: ``Sec-Fetch-Site``
(all current browsers) and, on unsafe methods, ``Origin``. An unsafe request
that carries ambient credentials (a session cookie, or Basic credentials a
browser remembered) is refused when the browser says it came from another
site. Requests with neither header come from curl, wget or scripts, which a
malicious page cannot drive. The same idea as datasette's csrf check and
Go's ``http.CrossOriginProtection``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def host_of(origin: str) -> str | None:
    """'https://Files.Example.org:443' -> 'files.example.org' (default ports dropped)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or (parts.scheme, port) in (("http", 80), ("https", 443)):
        return host
    return f"{host}:{port}"


def normalize_host(host: str, scheme: str = "http") -> str | None:
    return host_of(f"{scheme}://{host}")


def cross_site(headers: Mapping[str, str], own_hosts: Iterable[str]) -> str | None:
    """Why the browser says this request came from another site, or None.

    ``Sec-Fetch-Site`` is sent by browsers on every request, GET included
    (navigations, ``<img>``, ``fetch()``); ``same-origin`` and ``none`` (typed
    in, a bookmark) are ours, ``same-site`` and ``cross-site`` are not. Older
    browsers send only ``Origin`` (on unsafe methods and CORS requests).
    """
    site = headers.get("Sec-Fetch-Site")
    if site is not None:
        if site.strip().lower() in ("same-origin", "none"):
            return None
        return f"cross-site request refused (Sec-Fetch-Site: {site.strip()[:20]})"
    origin = headers.get("Origin")
    if origin is None:
        return None
    if origin.strip() != "null" and host_of(origin) in {h for h in own_hosts if h}:
        return None
    return "cross-site request refused (Origin does not match this site)"


def refusal(method: str, headers: Mapping[str, str], own_hosts: Iterable[str]) -> str | None:
    """Why this request must be refused as cross-site, or None if it may go on.

    Judged by method alone; routes whose GET changes state (the seed's
    ``/deletefile``, link minting) are checked by action in ``http/access.py``.
    """
    if method.upper() in SAFE_METHODS:
        return None
    return cross_site(headers, own_hosts)
