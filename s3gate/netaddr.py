"""Whether a host or URL names this machine: the one loopback check."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1, [::1] and localhost names (RFC 6761 §6.3); a name or wildcard we cannot vouch for is not."""
    host = host.strip().strip("[]")
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname or "")
