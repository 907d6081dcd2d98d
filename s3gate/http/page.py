"""The web page: GET / (browse, upload, delete), its static files, and the two small answers it needs.

GET  /                      the page (signed in; else 303 to /login?next=/)
GET  /static/NAME.HASH.EXT  its script and style, cached for a year (the name changes with the bytes)
GET  /api/rights?bucket=B&prefix=P   what the caller may do in that folder, to offer only usable buttons
POST /api/links {"bucket": B, "key": K}   a download link and its expiry, for "copy link"

The page is a static file plus a script that uses the JSON API (/files,
/files/B/P/?cursor=, PUT /files/B/K with If-None-Match: *, DELETE, ?archive=zip,
?recursive=1&dry_run=1). Its Content-Security-Policy allows only this
origin's own script and style: object keys are always put into the page as
text, and even a mistake there could not run an injected script.
"""

from __future__ import annotations

import datetime as dt
import json
import time

from aiohttp import web

from .. import keys
from ..auth.rules import ACTIONS
from ..errors import BadRequest, NotFound, PayloadTooLarge
from ..storage.names import check_bucket, check_key
from . import access, assets, authn, downloads
from .paths import check_prefix
from .responses import json_response

LANG_COOKIE = "s3gate_lang"
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
MAX_LINK_REQUEST = 4096


def page_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": PAGE_CSP,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",  # for browsers older than frame-ancestors
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",  # it names the signed-in user
        "Vary": "Accept-Language, Cookie",
    }


def page_language(request: web.Request) -> str:
    return assets.language(
        request.headers.get("Accept-Language", ""), request.query.get("lang") or request.cookies.get(LANG_COOKIE)
    )


def remember_language(request: web.Request, response: web.Response, lang: str) -> None:
    """The switch is a link with ?lang=: remembered for a year (not a credential, so readable and Lax)."""
    if request.query.get("lang") in assets.LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, path="/", samesite="Lax")


async def index(request: web.Request) -> web.Response:
    auth = keys.POLICY in request.app
    user = access.principal_name(request)
    if auth and user is None:
        raise web.HTTPSeeOther(authn.login_url(request))
    lang = page_language(request)
    settings = request.app[keys.SETTINGS]
    config = {
        "user": user,
        "auth": auth,
        "uploadLimit": settings.upload_limit,
        "linkExpiry": settings.link_expiry,
    }
    text = assets.render(
        "app.html",
        lang,
        user=user or "",
        data={"config": config},
        signout_hidden="" if auth else "hidden",
        other_lang="es" if lang == "en" else "en",
        other_lang_name=assets.STRINGS["es" if lang == "en" else "en"]["language_name"],
    )
    response = web.Response(text=text, content_type="text/html", headers=page_headers())
    remember_language(request, response, lang)
    return response


async def static(request: web.Request) -> web.Response:
    asset = assets.STATIC.get(request.match_info["name"])
    if asset is None:
        raise NotFound("no such file")
    headers = {
        "Cache-Control": "public, max-age=31536000, immutable",
        "ETag": asset.etag,
        "X-Content-Type-Options": "nosniff",
    }
    # The name carries the hash, so any If-None-Match for it is a match (RFC 9110 §13.1.2).
    if request.headers.get("If-None-Match") in (asset.etag, "*"):
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, headers={**headers, "Content-Type": asset.content_type})


def _somewhere(request: web.Request, action: str, bucket: str, prefix: str) -> bool:
    """May the caller do action on something at or below prefix (a rule on a subfolder counts)?"""
    if keys.POLICY not in request.app:
        return True
    who = authn.principal(request)
    if who.via == "link":
        return False
    owner = who.admin or any(r.overlaps(action, bucket, prefix) for r in who.rules)
    return owner and all(any(r.overlaps(action, bucket, prefix) for r in scope) for scope in who.scopes)


async def rights(request: web.Request) -> web.Response:
    """{"here": {action: bool}, "below": {action: bool}} for a folder.

    ``here``: everything in the folder (so its objects' buttons and the
    folder's own zip / recursive delete apply); ``below``: some of it (offer
    the button; the gateway still decides per key and the page shows its
    refusal).
    """
    bucket = check_bucket(request.query.get("bucket", ""))
    prefix = check_prefix(request.query.get("prefix", ""))
    here = {a: access.allowed(request, a, bucket, prefix) for a in ACTIONS}
    below = {a: here[a] or _somewhere(request, a, bucket, prefix) for a in ACTIONS}
    return json_response(
        {"bucket": bucket, "prefix": prefix, "here": here, "below": below}, headers={"Cache-Control": "no-store"}
    )


async def new_link(request: web.Request) -> web.Response:
    """A download link for one object (gateway-signed or presigned, as link_mode says) and its expiry.

    The seed's GET /downloads3/ answers with a redirect a fetch() would follow;
    the page needs the URL itself. Minting is refused cross-site
    (access.require_link_minting), as there.
    """
    if not request.content_length:
        raise BadRequest('send {"bucket": ..., "key": ...} as JSON')
    if request.content_length > MAX_LINK_REQUEST:
        raise PayloadTooLarge(f"send a JSON body of at most {MAX_LINK_REQUEST} bytes")
    try:
        body = json.loads(await request.read())
        bucket, key = check_bucket(str(body["bucket"])), check_key(str(body["key"]))
    except (ValueError, KeyError, TypeError):
        raise BadRequest('send {"bucket": ..., "key": ...} as JSON') from None
    await access.require_link_minting(request, bucket, key)
    await request.app[keys.STORAGE].head(bucket, key)  # 404 now, not a dead link later
    url = await downloads.make_link(request, bucket, key, access.principal_name(request))
    lifetime = request.app[keys.SETTINGS].link_expiry
    expires = dt.datetime.fromtimestamp(int(time.time()) + lifetime, dt.UTC).isoformat()
    return json_response({"url": url, "expires": expires, "seconds": lifetime}, headers={"Cache-Control": "no-store"})
