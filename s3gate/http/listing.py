"""Listings: one page at a time from S3, filtered by what the caller may list.

``?format=`` chooses the shape: ``json`` (one page and a cursor; the default),
``ndjson`` (one JSON object a line), ``text`` (one download URL a line, for
``wget -i -``) and ``html`` (a page of relative links, for browsers and
``wget -r``). Without it, ``Accept: text/html`` gets HTML. ndjson, text and
html are written page by page as S3 answers, so a listing of millions of keys
is never held whole.
"""

from __future__ import annotations

import html
import importlib.resources
import json
import re
import string
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from .. import keys
from ..errors import BadRequest
from ..storage.s3 import ListPage as Page
from ..storage.s3 import ObjectInfo
from . import access, forwarded
from .negotiation import weighted
from .paths import object_path
from .responses import json_response

MAX_LIMIT = 1000  # S3's own page size


def object_json(o: ObjectInfo) -> dict[str, Any]:
    return {"key": o.key, "size": o.size, "etag": o.etag.strip('"'), "last_modified": o.last_modified.isoformat()}


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", str(MAX_LIMIT))
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest("limit must be a number") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes", "on")


# -- formats --------------------------------------------------------------------------
FORMATS = ("json", "ndjson", "text", "html")
CONTENT_TYPES = {
    "ndjson": "application/x-ndjson; charset=utf-8",
    "text": "text/plain; charset=utf-8",
    "html": "text/html; charset=utf-8",
}


def _load_templates() -> tuple[str, str, dict[str, string.Template]]:
    """The page (split where the rows go) and its row snippets, from s3gate/ui/templates."""
    root = importlib.resources.files("s3gate.ui") / "templates"
    head, _, foot = (root / "listing.html").read_text("utf-8").partition("<!-- rows -->")
    snippets = {}
    for name, body in re.findall(
        r"<!-- (\w+) -->\n(.*?)(?=\n<!-- \w+ -->|\Z)", (root / "listing-rows.html").read_text("utf-8"), re.S
    ):
        snippets[name] = string.Template(body.strip() + "\n")
    return head, foot, snippets


# Read once at import: a page is never a file read on the event loop.
_HEAD, _FOOT, _ROWS = _load_templates()


def _accepts_html(request: web.Request) -> bool:
    """Accept names text/html with a q-value above any it gives JSON (RFC 9110 §12.5.1)."""
    q: dict[str, float] = {}
    for media, weight in weighted(request.headers.get("Accept", "")):
        q[media] = max(q.get(media, 0.0), weight)
    return q.get("text/html", 0.0) > 0 and q.get("text/html", 0.0) >= q.get("application/json", 0.0)


def listing_format(request: web.Request) -> str:
    """?format= wins; without it a browser (Accept: text/html) gets HTML, everyone else JSON."""
    fmt = request.query.get("format")
    if fmt is None:
        return "html" if _accepts_html(request) else "json"
    if fmt not in FORMATS:
        raise BadRequest(f"format must be one of {', '.join(FORMATS)}")
    return fmt


def _vary(request: web.Request) -> dict[str, str]:
    # Without ?format= the answer depends on Accept: caches must know (RFC 9110 §12.5.5).
    return {} if "format" in request.query else {"Vary": "Accept"}


async def _pages(
    request: web.Request, bucket: str, prefix: str, recursive: bool, limit: int, token: str | None
) -> AsyncIterator[Page]:
    """S3's pages from token on, filtered by what the caller may list."""
    storage = request.app[keys.STORAGE]
    while True:
        page = await storage.list_page(
            bucket, prefix=prefix, delimiter=None if recursive else "/", limit=limit, token=token
        )
        objects = [o for o in page.objects if access.allowed(request, "list", bucket, o.key)]
        folders = [f for f in page.folders if access.allowed(request, "list", bucket, f)]
        yield Page(objects, folders, page.next_token)
        token = page.next_token
        if not token:
            return


async def _one(page: Page) -> AsyncIterator[Page]:
    yield page


def _relative(name: str) -> str | None:
    """A link relative to the listing's own URL (which ends in '/'), or None when none is safe.

    './' first, so a name with ':' or a leading '/' is never read as a scheme or
    an absolute path (RFC 3986 §4.2); '.' and '..' segments would resolve
    elsewhere, so such names are shown without a link.
    """
    if any(seg in (".", "..") for seg in name.split("/")):
        return None
    return "./" + quote(name, safe="/")


class _Render:
    """One listing in one format: lines for a page of entries, and what goes around them."""

    def __init__(self, request: web.Request, fmt: str, bucket: str, prefix: str, *, buckets: bool):
        self.fmt, self.bucket, self.prefix, self.buckets = fmt, bucket, prefix, buckets
        self.base = forwarded.base_url(request) if fmt == "text" else ""
        where = "/files/" + (f"{bucket}/{prefix}" if bucket else "")
        self.title = html.escape(where)
        # Relative links resolve against the listing's URL: '/files/B' (no
        # slash) is one level up from the '/files/B/' they are written for.
        path = request.path
        self.up = "" if path.endswith("/") else "./" + quote(path.rsplit("/", 1)[-1], safe="") + "/"

    def head(self) -> str:
        if self.fmt != "html":
            return ""
        parent = _ROWS["parent"].substitute() if self.prefix or self.bucket else ""
        return string.Template(_HEAD).safe_substitute(title=self.title, parent=parent)

    def foot(self, next_href: str | None) -> str:
        if self.fmt != "html":
            return ""
        nav = _ROWS["next"].substitute(href=html.escape(next_href)) if next_href else ""
        return string.Template(_FOOT).safe_substitute(next=nav)

    def page(self, page: Page) -> str:
        out: list[str] = []
        for folder in page.folders:
            out.append(self._folder(folder))
        for o in page.objects:
            out.append(self._object(o))
        return "".join(out)

    def _folder(self, folder: str) -> str:
        if self.fmt == "ndjson":
            return (
                json.dumps({"bucket": folder[:-1]} if self.buckets else {"folder": folder}, ensure_ascii=False) + "\n"
            )
        if self.fmt == "text":  # download URLs: a folder has none (recursive=1 lists what is inside)
            return f"{self.base}/files/{quote(folder, safe='/')}\n" if self.buckets else ""
        name = folder[len(self.prefix) :]
        href = _relative(name)
        if href is None:
            return _ROWS["unlinked"].substitute(name=html.escape(name), size="-", modified="")
        return _ROWS["folder"].substitute(href=html.escape(self.up + href + "?format=html"), name=html.escape(name))

    def _object(self, o: ObjectInfo) -> str:
        if self.fmt == "ndjson":
            return json.dumps(object_json(o), ensure_ascii=False) + "\n"
        if self.fmt == "text":
            return self.base + object_path(self.bucket, o.key) + "\n"
        name = o.key[len(self.prefix) :]
        href = _relative(name)
        fields = {
            "name": html.escape(name),
            "size": str(o.size),
            "modified": o.last_modified.strftime("%Y-%m-%d %H:%M:%S"),
        }
        if href is None:
            return _ROWS["unlinked"].substitute(fields)
        return _ROWS["object"].substitute(fields, href=html.escape(self.up + href))


async def _stream(
    request: web.Request,
    fmt: str,
    bucket: str,
    prefix: str,
    pages: AsyncIterator[Page],
    *,
    one_page: bool,
    seal: Callable[[str], str],
    buckets: bool = False,
) -> web.StreamResponse:
    """ndjson, text and html: written page by page as S3 answers, never held whole."""
    render = _Render(request, fmt, bucket, prefix, buckets=buckets)
    # The first page before the status line: a missing bucket or a store that
    # is down still gets its own status.
    first = await anext(pages)
    response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPES[fmt], **_vary(request)})
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    await response.write((render.head() + render.page(first)).encode())
    last = first
    if not one_page:
        async for page in pages:
            await response.write(render.page(page).encode())  # backpressure: waits for a slow client
            last = page
    next_href = None
    if one_page and last.next_token:
        query = {k: v for k, v in request.query.items() if k != "cursor"}
        next_href = "?" + urlencode({**query, "format": "html", "cursor": seal(last.next_token)})
    await response.write(render.foot(next_href).encode())
    await response.write_eof()
    return response


async def list_page(request: web.Request, bucket: str, prefix: str) -> web.StreamResponse:
    fmt = listing_format(request)
    storage = request.app[keys.STORAGE]
    recursive = _flag(request, "recursive")
    limit = _limit(request)
    await access.require(request, "list", bucket, prefix)
    box = request.app[keys.CURSORS]
    bound = {"bucket": bucket, "prefix": prefix, "recursive": recursive, "caller": access.principal_name(request) or ""}
    cursor = request.query.get("cursor")
    token = box.open(cursor, **bound) if cursor else None
    if fmt != "json":
        pages = _pages(request, bucket, prefix, recursive, limit, token)
        # html with ?limit= is one page and a link to the next; otherwise the
        # whole listing, page by page from S3, never held whole.
        one_page = fmt == "html" and "limit" in request.query
        return await _stream(
            request, fmt, bucket, prefix, pages, one_page=one_page, seal=lambda t: box.seal(t, **bound)
        )
    page = await storage.list_page(
        bucket, prefix=prefix, delimiter=None if recursive else "/", limit=limit, token=token
    )
    objects = [object_json(o) for o in page.objects if access.allowed(request, "list", bucket, o.key)]
    folders = [f for f in page.folders if access.allowed(request, "list", bucket, f)]
    body = {
        "bucket": bucket,
        "prefix": prefix,
        "recursive": recursive,
        "objects": objects,
        "folders": folders,
        "next_cursor": box.seal(page.next_token, **bound) if page.next_token else None,
    }
    return json_response(body, headers=_vary(request))


async def iter_all(request: web.Request, bucket: str, prefix: str = "") -> AsyncIterator[ObjectInfo]:
    storage = request.app[keys.STORAGE]
    token = None
    while True:
        page = await storage.list_page(bucket, prefix=prefix, delimiter=None, limit=MAX_LIMIT, token=token)
        for o in page.objects:
            if access.allowed(request, "list", bucket, o.key):
                yield o
        token = page.next_token
        if not token:
            return


async def stream_all(request: web.Request, bucket: str) -> web.StreamResponse:
    """The seed's /listfiles/: every object as one JSON array, written page by page."""
    await access.require(request, "list", bucket, "")
    objects = iter_all(request, bucket)
    # Fetch the first page before committing to 200, so errors (no such
    # bucket, storage down) still get their status.
    first = await anext(objects, None)
    response = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
    await response.prepare(request)
    await response.write(b"[")
    sep = b"\n"
    if first is not None:
        await response.write(sep + json.dumps(object_json(first)).encode())
        sep = b",\n"
        async for o in objects:
            await response.write(sep + json.dumps(object_json(o)).encode())
    await response.write(b"\n]\n")
    await response.write_eof()
    return response


async def list_buckets(request: web.Request) -> web.StreamResponse:
    fmt = listing_format(request)
    buckets = await request.app[keys.STORAGE].list_buckets()
    visible = [b for b in buckets if access.allowed(request, "list", b["name"], "")]
    if not visible and access.principal_name(request) is None:
        # Anonymous, and nothing is open to anonymous callers: ask for
        # credentials (401 with WWW-Authenticate, RFC 9110 §11.6.1; a browser
        # goes to the login page) instead of an empty list that never does.
        await access.require(request, "list", "", "")
    if fmt == "json":
        return json_response({"buckets": visible}, headers=_vary(request))
    page = Page([], [b["name"] + "/" for b in visible], None)
    return await _stream(request, fmt, "", "", _one(page), one_page=True, seal=str, buckets=True)
