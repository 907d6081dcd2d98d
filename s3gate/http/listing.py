"""Listings: one page at a time from S3, filtered by what the caller may list."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from .. import keys
from ..errors import BadRequest
from ..storage.s3 import ObjectInfo
from . import access
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


async def list_page(request: web.Request, bucket: str, prefix: str) -> web.Response:
    storage = request.app[keys.STORAGE]
    recursive = _flag(request, "recursive")
    limit = _limit(request)
    await access.require(request, "list", bucket, prefix)
    box = request.app[keys.CURSORS]
    bound = {"bucket": bucket, "prefix": prefix, "recursive": recursive, "caller": access.principal_name(request) or ""}
    cursor = request.query.get("cursor")
    token = box.open(cursor, **bound) if cursor else None
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
    return json_response(body)


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


async def list_buckets(request: web.Request) -> web.Response:
    buckets = await request.app[keys.STORAGE].list_buckets()
    visible = [b for b in buckets if access.allowed(request, "list", b["name"], "")]
    return json_response({"buckets": visible})
