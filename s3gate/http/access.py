"""Where handlers ask "may this caller do this?".

Handlers call ``await require(request, action, bucket, key)`` before touching
S3 and ``allowed(request, action, bucket, key)`` to filter listings. Actions
are "read", "list", "write" and "delete". The auth room installs its policy
in ``app[keys.POLICY]``; with no policy installed (auth switched off) every
action is allowed.
"""

from __future__ import annotations

from aiohttp import web

from .. import keys

ACTIONS = ("read", "list", "write", "delete")


async def require(request: web.Request, action: str, bucket: str, key: str = "") -> None:
    policy = request.app.get(keys.POLICY)
    if policy is None:
        return
    await policy.require(request, action, bucket, key)


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
