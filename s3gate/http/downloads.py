"""Downloads: proxy S3's bytes (Range, conditionals, resume) or hand out links.

Proxy responses are built the way aiohttp's own FileResponse builds them:
length and validators set before ``prepare()``, 206 with Content-Range, 416
with ``bytes */SIZE``, 304 for a matching validator. A plain GET costs one S3
request; Range or conditional requests first HEAD the object (so 304/416 never
touch the body) and then GET the range pinned to that ETag (If-Match), so the
bytes cannot come from a different version than the headers.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import logging
from urllib.parse import urlsplit

from aiohttp import web

from .. import keys
from ..errors import BadRequest, PreconditionFailed, RangeNotSatisfiable
from ..settings import Settings
from ..storage.s3 import Download, ObjectInfo, content_disposition

log = logging.getLogger("s3gate.download")

PASSED_HEADERS = ("Range", "If-Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since")


# -- validators (RFC 9110 §13) ---------------------------------------------
def http_date(value: dt.datetime) -> str:
    return email.utils.format_datetime(value.astimezone(dt.UTC), usegmt=True)


def parse_http_date(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def _etags(header: str) -> list[str]:
    return [t.strip() for t in header.split(",") if t.strip()]


def _strong_match(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    return any(t == etag and not t.startswith("W/") for t in _etags(header))


def _weak_match(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(t.removeprefix("W/") == bare for t in _etags(header))


def _seconds(value: dt.datetime) -> dt.datetime:
    return value.replace(microsecond=0)


def check_conditions(request: web.Request, info: ObjectInfo) -> bool:
    """Evaluate preconditions in RFC 9110 §13.2.2's order. True means 304 Not Modified."""
    h = request.headers
    if "If-Match" in h:
        if not _strong_match(h["If-Match"], info.etag):
            raise PreconditionFailed()
    elif (since := parse_http_date(h.get("If-Unmodified-Since"))) and _seconds(info.last_modified) > since:
        raise PreconditionFailed()
    if "If-None-Match" in h:
        return _weak_match(h["If-None-Match"], info.etag)
    since = parse_http_date(h.get("If-Modified-Since"))
    return since is not None and _seconds(info.last_modified) <= since


def parse_range(request: web.Request, info: ObjectInfo) -> tuple[int, int] | None:
    """A single byte range (inclusive) or None for the whole object.

    Malformed or multi-range headers are ignored (RFC 9110 §14.2 allows it) and
    the whole object is sent; an unsatisfiable range is 416.
    """
    header = request.headers.get("Range")
    if not header:
        return None
    if_range = request.headers.get("If-Range")
    if if_range:
        if if_range.startswith(('"', 'W/"')):
            if not _strong_match(if_range, info.etag):
                return None
        else:
            date = parse_http_date(if_range)
            if date is None or _seconds(info.last_modified) != date:
                return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, sep, last = spec.strip().partition("-")
    if not sep:
        return None
    size = info.size
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                raise RangeNotSatisfiable(size)
            start, end = max(0, size - suffix), size - 1
        else:
            start = int(first)
            end = int(last) if last else size - 1
            if last and end < start:
                return None  # syntactically invalid: ignore the header (RFC 9110 §14.1.1)
            if start >= size:
                raise RangeNotSatisfiable(size)
            end = min(end, size - 1)
    except ValueError:
        return None
    if start >= size or size == 0:
        raise RangeNotSatisfiable(size)
    return start, end


# -- responses -----------------------------------------------------------
def object_headers(info: ObjectInfo, key: str) -> dict[str, str]:
    return {
        "Content-Type": info.content_type,
        "ETag": info.etag,
        "Last-Modified": http_date(info.last_modified),
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(key.rsplit("/", 1)[-1]),
    }


async def proxy(request: web.Request, bucket: str, key: str) -> web.StreamResponse:
    storage = request.app[keys.STORAGE]
    settings = request.app[keys.SETTINGS]
    conditional = any(h in request.headers for h in PASSED_HEADERS)
    head_only = request.method == "HEAD"
    download: Download | None = None
    byte_range: tuple[int, int] | None = None
    if conditional or head_only:
        info = await storage.head(bucket, key)
        if check_conditions(request, info):
            headers = object_headers(info, key)
            headers.pop("Content-Type")
            return web.Response(status=304, headers=headers)
        byte_range = parse_range(request, info)
        if not head_only:
            download = await storage.get(bucket, key, byte_range=byte_range, if_match=info.etag)
    else:
        download = await storage.get(bucket, key)
        info = download.info

    response = web.StreamResponse(status=206 if byte_range else 200, headers=object_headers(info, key))
    if byte_range:
        start, end = byte_range
        response.headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
        response.content_length = end - start + 1
    else:
        response.content_length = info.size
    if download is None:
        await response.prepare(request)
        return response
    async with download.body as body:
        await response.prepare(request)
        try:
            async for chunk in body.iter_chunks(settings.download_chunk):
                await response.write(chunk)
        except (ConnectionResetError, ConnectionError):
            log.info("client went away during download of %s/%s", bucket, key)
            return response
        except Exception as exc:  # headers are gone: all we can do is cut the body short
            log.warning("download of %s/%s failed mid-stream: %s", bucket, key, exc)
            if request.transport is not None:
                request.transport.close()
            return response
    await response.write_eof()
    return response


# -- links ------------------------------------------------------------------
def _is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def link_mode(settings: Settings) -> str:
    """'s3' when clients can reach S3 themselves, else 'gateway'."""
    if settings.link_mode != "auto":
        return settings.link_mode
    if settings.s3_public_endpoint or not settings.s3_endpoint or not _is_loopback_url(settings.s3_endpoint):
        return "s3"  # a public endpoint, AWS itself, or a store on another host
    return "gateway"


def base_url(request: web.Request) -> str:
    settings = request.app[keys.SETTINGS]
    if settings.public_url:
        return settings.public_url.rstrip("/")
    scheme, host = request.scheme, request.host
    if settings.trust_forwarded:
        scheme = request.headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", host).split(",")[0].strip()
    return f"{scheme}://{host}"


async def make_link(request: web.Request, bucket: str, key: str, signer: str | None) -> str:
    settings = request.app[keys.SETTINGS]
    if link_mode(settings) == "s3":
        return await request.app[keys.STORAGE].presign_get(
            bucket, key, expires=settings.link_expiry, filename=key.rsplit("/", 1)[-1]
        )
    return request.app[keys.LINKS].url(base_url(request), bucket, key, lifetime=settings.link_expiry, by=signer or "")


async def redirect_to_link(request: web.Request, bucket: str, key: str, signer: str | None) -> web.Response:
    """302 to a download link. 302 keeps the seed's behaviour: curl prints the
    URL (body), curl -L and wget follow it (Location)."""
    await request.app[keys.STORAGE].head(bucket, key)  # 404 here, not a dead link
    url = await make_link(request, bucket, key, signer)
    return web.Response(status=302, headers={"Location": url}, text=url + "\n", content_type="text/plain")


def requested_mode(request: web.Request) -> str:
    mode = request.query.get("mode") or request.app[keys.SETTINGS].download_mode
    if mode not in ("proxy", "redirect"):
        raise BadRequest("mode must be proxy or redirect")
    return mode
