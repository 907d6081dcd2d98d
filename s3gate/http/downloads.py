"""Downloads: proxy S3's bytes (Range, conditionals, resume) or hand out links.

Proxy responses are built the way aiohttp's own FileResponse builds them:
length and validators set before ``prepare()``, 206 with Content-Range, 416
with ``bytes */SIZE``, 304 for a matching validator. A plain GET costs one S3
request; Range or conditional requests first HEAD the object (so 304/416 never
touch the body) and then GET the range pinned to that ETag (If-Match), so the
bytes cannot come from a different version than the headers. Each proxied
download holds its buffers' worth of the worker's memory budget while it
streams, so downloads and uploads together stay within it.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import re

from aiohttp import web

from .. import keys
from ..errors import BadRequest, PreconditionFailed, RangeNotSatisfiable, StorageError
from ..netaddr import is_loopback_url
from ..settings import Settings
from ..storage.s3 import Download, ObjectInfo, content_disposition
from . import forwarded

log = logging.getLogger("s3gate.download")

PASSED_HEADERS = ("Range", "If-Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since")


# -- validators (RFC 9110 §13) ---------------------------------------------
def http_date(value: dt.datetime) -> str:
    return email.utils.format_datetime(value.astimezone(dt.UTC), usegmt=True)


# HTTP-date (RFC 9110 §5.6.7): three forms, case-sensitive, always GMT.
# email.utils would also take numeric zones, missing weekdays or seconds, and
# more; a value that is none of these forms is invalid, and a precondition
# with an invalid date is ignored (§13.1.3, §13.1.4), never "matched".
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = "(" + "|".join(_MONTHS) + ")"
_TIME = "([0-9]{2}):([0-9]{2}):([0-9]{2})"
_DAY_NAME = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_IMF_FIXDATE = re.compile(rf"{_DAY_NAME}, ([0-9]{{2}}) {_MONTH} ([0-9]{{4}}) {_TIME} GMT")
_RFC850_DATE = re.compile(
    rf"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), ([0-9]{{2}})-{_MONTH}-([0-9]{{2}}) {_TIME} GMT"
)
_ASCTIME_DATE = re.compile(rf"{_DAY_NAME} {_MONTH} ([0-9]{{2}}| [0-9]) {_TIME} ([0-9]{{4}})")


def parse_http_date(value: str | None, *, now: dt.datetime | None = None) -> dt.datetime | None:
    """An HTTP-date in any of its three forms, else None."""
    if not value:
        return None
    if m := _IMF_FIXDATE.fullmatch(value):
        day, month, year, hour, minute, second = m.groups()
    elif m := _RFC850_DATE.fullmatch(value):
        day, month, yy, hour, minute, second = m.groups()
        # A two-digit year that looks more than 50 years ahead is in the past (§5.6.7).
        this_year = (now or dt.datetime.now(dt.UTC)).year
        year = str(this_year - this_year % 100 + int(yy))
        if int(year) > this_year + 50:
            year = str(int(year) - 100)
    elif m := _ASCTIME_DATE.fullmatch(value):
        month, day, hour, minute, second, year = m.groups()
    else:
        return None
    try:
        return dt.datetime(
            int(year), _MONTHS.index(month) + 1, int(day), int(hour), int(minute), int(second), tzinfo=dt.UTC
        )
    except ValueError:  # 31 Feb, 25:00, a leap second: not a date we can compare
        return None


def _field(request: web.Request, name: str) -> str | None:
    """Every line of a header field as one value: a recipient may join them with
    commas (RFC 9110 §5.3), so `If-Match: "a"` + `If-Match: "b"` is one list."""
    lines = request.headers.getall(name, [])
    return ", ".join(lines) if lines else None


# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE (RFC 9110 §8.8.3); etagc may be a comma.
_ENTITY_TAG = re.compile(r'(?:W/)?"[^"\x00-\x20\x7f]*"')
_LIST_ITEM = re.compile(r'[ \t]*((?:W/)?"[^"\x00-\x20\x7f]*")?[ \t]*(?:,|\Z)')


def _entity_tags(value: str) -> list[str]:
    """The entity-tags of a #entity-tag list; none at all when the list is malformed."""
    tags: list[str] = []
    pos = 0
    while pos < len(value):
        m = _LIST_ITEM.match(value, pos)
        if m is None:
            return []
        if m.group(1):
            tags.append(m.group(1))
        pos = m.end()
    return tags


def _list_matches(value: str, etag: str, *, weak: bool) -> bool:
    """If-Match (strong comparison) or If-None-Match (weak), RFC 9110 §8.8.3.2."""
    if value.strip(" \t") == "*":
        return True
    if weak:
        bare = etag.removeprefix("W/")
        return any(t.removeprefix("W/") == bare for t in _entity_tags(value))
    return not etag.startswith("W/") and etag in _entity_tags(value)


def if_none_match_hits(request: web.Request, etag: str) -> bool:
    """An If-None-Match that names this representation (or "*"): its condition is false (RFC 9110 §13.1.2).

    A 304 for a GET/HEAD, a 412 for an upload that must not replace the object."""
    value = _field(request, "If-None-Match")
    return value is not None and _list_matches(value, etag, weak=True)


def _seconds(value: dt.datetime) -> dt.datetime:
    return value.replace(microsecond=0)


def check_conditions(request: web.Request, info: ObjectInfo) -> bool:
    """Evaluate preconditions in RFC 9110 §13.2.2's order. True means 304 Not Modified."""
    if (if_match := _field(request, "If-Match")) is not None:
        if not _list_matches(if_match, info.etag, weak=False):
            raise PreconditionFailed()
    elif (since := parse_http_date(_field(request, "If-Unmodified-Since"))) and _seconds(info.last_modified) > since:
        raise PreconditionFailed()
    if "If-None-Match" in request.headers:
        return if_none_match_hits(request, info.etag)
    # Several If-Modified-Since lines join into a value that is no date: ignored (§13.1.3).
    since = parse_http_date(_field(request, "If-Modified-Since"))
    return since is not None and _seconds(info.last_modified) <= since


def _if_range_holds(request: web.Request, info: ObjectInfo) -> bool:
    """RFC 9110 §13.1.5: one strong entity-tag or one HTTP-date, matched exactly.

    Anything else (a weak tag, a list, an invalid date) is false, and the
    whole representation is sent.
    """
    value = _field(request, "If-Range")
    if value is None:
        return True
    if _ENTITY_TAG.fullmatch(value):
        return not value.startswith("W/") and value == info.etag
    date = parse_http_date(value)
    return date is not None and _seconds(info.last_modified) == date


# range-spec (RFC 9110 §14.1.1): DIGIT is ASCII only; int() alone would also
# take "1_0", " 10" or Arabic-Indic digits.
_INT_RANGE = re.compile(r"([0-9]+)-([0-9]*)")
_SUFFIX_RANGE = re.compile(r"-([0-9]+)")
_HUGE = 1 << 63  # beyond any object: S3's largest is 5 TiB


def _position(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) < 19 else _HUGE  # int() refuses over 4300 digits


def parse_range(request: web.Request, info: ObjectInfo) -> tuple[int, int] | None:
    """The single byte range to send (inclusive), or None for the whole object.

    Range is defined for GET only and ignored on any other method, HEAD
    included (RFC 9110 §14.2). A header that does not follow §14.1's grammar,
    names another unit, or whose If-Range fails is ignored too; so is a set of
    several ranges (a server MAY ignore Range, §14.2: no multipart/byteranges
    here). An unsatisfiable range is 416.
    """
    if request.method != "GET":
        return None
    header = _field(request, "Range")
    if header is None or not _if_range_holds(request, info):
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.lower() != "bytes":  # range units are case-insensitive (§14.1)
        return None
    ranges: list[tuple[int | None, int | None]] = []
    # range-set = 1#range-spec: OWS around commas, empty elements ignored (§5.6.1.2).
    for element in filter(None, (e.strip(" \t") for e in spec.split(","))):
        if m := _INT_RANGE.fullmatch(element):
            first, last = _position(m[1]), _position(m[2]) if m[2] else None
            if last is not None and last < first:
                return None  # syntactically invalid: ignore the header (§14.1.1)
            ranges.append((first, last))
        elif m := _SUFFIX_RANGE.fullmatch(element):
            ranges.append((None, _position(m[1])))
        else:
            return None
    if len(ranges) != 1:
        return None
    first, last = ranges[0]
    size = info.size
    if first is None:  # suffix-range: the last N bytes, or all of them if fewer (§14.1.3)
        assert last is not None
        if last == 0:
            raise RangeNotSatisfiable(size)
        if size == 0:
            # Satisfiable (§14.1.1) but a 206 cannot carry an empty range: send the (empty) whole.
            return None
        return max(0, size - last), size - 1
    if first >= size:
        raise RangeNotSatisfiable(size)
    return first, size - 1 if last is None else min(last, size - 1)


# -- responses -----------------------------------------------------------
def object_headers(info: ObjectInfo, key: str) -> dict[str, str]:
    return {
        "Content-Type": info.content_type,
        "ETag": info.etag,
        "Last-Modified": http_date(info.last_modified),
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(key.rsplit("/", 1)[-1]),
    }


def not_modified_headers(info: ObjectInfo) -> dict[str, str]:
    # A 304 carries the validators a 200 would, and no other representation
    # metadata (RFC 9110 §15.4.5): no Content-Type, no Content-Disposition.
    return {"ETag": info.etag, "Last-Modified": http_date(info.last_modified)}


# What one proxied download can hold at once, charged to the worker's memory
# budget (the one uploads use) for as long as it streams: S3's response
# reader buffers up to twice the chunk asked for before pausing its socket
# (aiohttp's StreamReader) plus one socket read, and the chunk being written
# sits once more in the client socket's send buffer until drained (asyncio
# copies what a write could not send at once).
DOWNLOAD_COPIES = 4
SOCKET_READ = 256 * 1024  # asyncio's largest single recv


def download_reservation(chunk: int, length: int | None) -> int:
    """Budget bytes for a download of length bytes (None: not known yet)."""
    held = chunk if length is None else min(chunk, length)
    return DOWNLOAD_COPIES * held + min(SOCKET_READ, held)


async def proxy(request: web.Request, bucket: str, key: str) -> web.StreamResponse:
    storage = request.app[keys.STORAGE]
    chunk = request.app[keys.SETTINGS].download_chunk
    budget = request.app[keys.BUDGET]
    if request.method == "HEAD" or any(h in request.headers for h in PASSED_HEADERS):
        # HEAD first, so 304/412/416 and HEAD itself never touch the body.
        info = await storage.head(bucket, key)
        if check_conditions(request, info):
            return web.Response(status=304, headers=not_modified_headers(info))
        byte_range = parse_range(request, info)
        response = _response(info, key, byte_range)
        if request.method == "HEAD":
            await response.prepare(request)
            return response
        async with budget.reserve(download_reservation(chunk, response.content_length)):
            download = await storage.get(bucket, key, byte_range=byte_range, if_match=info.etag)
            return await _relay(request, response, download)
    # A plain GET costs one S3 request: reserve for the largest need, keep what the length needs.
    async with budget.reserve(download_reservation(chunk, None)) as held:
        download = await storage.get(bucket, key)
        held.shrink(download_reservation(chunk, download.info.size))
        return await _relay(request, _response(download.info, key, None), download)


def _response(info: ObjectInfo, key: str, byte_range: tuple[int, int] | None) -> web.StreamResponse:
    response = web.StreamResponse(status=206 if byte_range else 200, headers=object_headers(info, key))
    if byte_range:
        start, end = byte_range
        response.headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
        response.content_length = end - start + 1
    else:
        response.content_length = info.size
    return response


async def _relay(request: web.Request, response: web.StreamResponse, download: Download) -> web.StreamResponse:
    chunk = request.app[keys.SETTINGS].download_chunk
    bucket, key = request.match_info.get("bucket", ""), download.info.key
    if response.content_length is not None and response.content_length <= chunk:
        return await _send_whole(request, response, download, bucket)
    async with download.body as body:
        await response.prepare(request)
        pieces = body.iter_chunks(chunk)
        while True:
            try:
                piece = await anext(pieces)
            except StopAsyncIteration:
                break
            except Exception as exc:  # the store failed; headers are gone: all we can do is cut the body short
                log.warning("download of %s/%s failed mid-stream: %s", bucket, key, exc)
                if request.transport is not None:
                    request.transport.close()
                return response
            try:
                await response.write(piece)
            except ConnectionError:
                log.info("client went away during download of %s/%s", bucket, key)
                return response
    await response.write_eof()
    return response


async def _send_whole(
    request: web.Request, response: web.StreamResponse, download: Download, bucket: str
) -> web.Response:
    """A body of at most one chunk (already reserved): read it, then send head and body in one write.

    Half the system calls of streaming a small object, and a store that fails
    mid-body still gets a clean 502, since nothing has been sent yet.
    """
    async with download.body as body:
        try:
            data = await body.read()
        except Exception as exc:  # aiohttp/botocore read errors, timeouts
            log.warning("download of %s/%s failed: %s", bucket, download.info.key, exc)
            raise StorageError("the store failed while sending the object") from None
    if len(data) != response.content_length:
        raise StorageError("the store sent a body of the wrong length")
    whole = web.Response(body=data, status=response.status, headers=response.headers)
    await whole.prepare(request)
    await whole.write_eof()
    return whole


# -- links ------------------------------------------------------------------
def link_mode(settings: Settings) -> str:
    """'s3' when clients can reach S3 themselves, else 'gateway'."""
    if settings.link_mode != "auto":
        return settings.link_mode
    if settings.s3_public_endpoint or not settings.s3_endpoint or not is_loopback_url(settings.s3_endpoint):
        return "s3"  # a public endpoint, AWS itself, or a store on another host
    return "gateway"


async def make_link(request: web.Request, bucket: str, key: str, signer: str | None) -> str:
    settings = request.app[keys.SETTINGS]
    if link_mode(settings) == "s3":
        return await request.app[keys.STORAGE].presign_get(
            bucket, key, expires=settings.link_expiry, filename=key.rsplit("/", 1)[-1]
        )
    return request.app[keys.LINKS].url(
        forwarded.base_url(request), bucket, key, lifetime=settings.link_expiry, by=signer or ""
    )


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
