"""Where handlers ask "may this caller do this?".

Handlers call ``await require(request, action, bucket, key)`` before touching
S3 and ``allowed(request, action, bucket, key)`` to filter listings. Actions
are "read", "list", "write" and "delete". The auth room installs its policy
in ``app[keys.POLICY]``; with no policy installed (auth switched off) every
action is allowed.

Whatever the method, a request that changes something ("write", "delete", or
minting a download link) is refused when the browser marks it as coming from
another site: the seed's ``GET /deletefile`` must not be an ``<img>`` away
from a foreign page. This holds with auth off too, where a browser on this
machine reaching the loopback gateway is the only credential there is.
"""

from __future__ import annotations

from aiohttp import web

from .. import keys
from ..auth import csrf
from ..errors import Forbidden
from . import forwarded

ACTIONS = ("read", "list", "write", "delete")
CHANGES = frozenset({"write", "delete"})

def require_same_site(request: web.Request, bucket: str, key: str) -> None:
    """Refuse a state-changing request a browser sent on behalf of another site.

    A Bearer token is the one credential a browser never attaches by itself
    (and a foreign page cannot set the header without a CORS preflight, which
    the gateway never grants), so a request that carries one was meant.
    """
    if request.headers.get("Authorization", "").lower().startswith("bearer "):
        return
    reason = csrf.cross_site(request.headers, forwarded.own_hosts(request))
    if reason:
        checks = request.get(keys.ACCESS_CHECKS)
        if checks is not None:  # the audit log shows the refusal
            checks.append(("csrf", bucket, key, False))
        raise Forbidden(reason)


async def require(request: web.Request, action: str, bucket: str, key: str = "") -> None:
    if action in CHANGES:
        require_same_site(request, bucket, key)
    policy = request.app.get(keys.POLICY)
    if policy is None:
        return
    await policy.require(request, action, bucket, key)


async def require_link_minting(request: web.Request, bucket: str, key: str, action: str = "read") -> None:
    """May this caller have a new download link for bucket/key (action "list": a folder's archive)?

    Minting hands out a credential: never for a caller who came with a link
    (a link downloads, it never renews itself) and never cross-site.
    """
    require_same_site(request, bucket, key)
    await require(request, action, bucket, key)
    policy = request.app.get(keys.POLICY)
    if policy is not None and policy.via_link(request):
        raise Forbidden("a download link can only be used to download; it cannot make another link")


def allowed(request: web.Request, action: str, bucket: str, key: str = "") -> bool:
    policy = request.app.get(keys.POLICY)
    if policy is None:
        return True
    return policy.allowed(request, action, bucket, key)


def principal_name(request: web.Request) -> str | None:
    """Who is calling (for signed links and the audit log); None when anonymous."""
    policy = request.app.get(keys.POLICY)
    if policy is None:
        return None
    return policy.principal_name(request)
