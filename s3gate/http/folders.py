"""Whole folders: streamed archives out (?archive=tar|tar.gz|zip) and recursive delete.

GET  /files/BUCKET/photos/?archive=zip          photos.zip of everything under photos/ the caller may read
GET  /files/BUCKET/photos/?archive=zip&mode=redirect   302 to a gateway-signed link to that archive
DELETE /files/BUCKET/photos/?recursive=1        every object under photos/ the caller may delete
DELETE /files/BUCKET/photos/?recursive=1&dry_run=1   what that would delete, nothing deleted

A folder is a prefix ending in '/', so ``photos/`` never reaches
``photos-old/`` or an object named ``photos``. Neither ever touches the bucket
itself.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from .. import keys
from ..errors import BadRequest, GatewayError
from ..storage import archive as archives
from ..storage.s3 import ObjectInfo, content_disposition
from . import access, downloads, forwarded, links, listing
from .responses import json_response

log = logging.getLogger("s3gate.folders")

# What one archive holds in the worker's memory budget: a proxied download's
# worth for the object being read, plus the chunk the writer thread is working
# on, the output chunk waiting in the pump's one-slot queue, deflate's window
# and hash tables (256 KiB at memLevel 8), and the next object's waiting body.
DEFLATE_STATE = 256 * 1024
# The next object's body, asked for while the current one streams
# (storage.archive.read_members): unread, its S3 connection stops at the
# client's buffer (twice aiohttp's 64 KiB read_bufsize) plus one socket read.
PREFETCH_BODY = 2 * 64 * 1024 + downloads.SOCKET_READ


def archive_reservation(chunk: int) -> int:
    return downloads.download_reservation(chunk, None) + 2 * chunk + DEFLATE_STATE + PREFETCH_BODY


# Per-key lists in a delete summary stop here (the counts never do): a
# 10,000-key refusal is a count and the first thousand names, not a 1 MB answer.
REPORT_LIMIT = 1000


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes", "on")


def archive_name(bucket: str, prefix: str, fmt: str) -> str:
    """photos/2026/ -> 2026.zip; the bucket's name for the whole bucket."""
    folder = prefix.rstrip("/").rsplit("/", 1)[-1] or bucket
    return f"{folder}.{archives.FORMATS[fmt][0]}"


def archive_format(request: web.Request) -> str:
    fmt = request.query.get("archive", "")
    if fmt not in archives.FORMATS:
        raise BadRequest(f"archive must be one of {', '.join(archives.FORMATS)}")
    return fmt


async def _readable(request: web.Request, bucket: str, prefix: str) -> AsyncIterator[ObjectInfo]:
    # listing.iter_all shows only what the caller may list; an archive also
    # carries the bytes, so each object must be readable too.
    async for info in listing.iter_all(request, bucket, prefix):
        if access.allowed(request, "read", bucket, info.key):
            yield info


# -- archives -------------------------------------------------------------------------
async def archive(request: web.Request, bucket: str, prefix: str) -> web.StreamResponse:
    fmt = archive_format(request)
    mode = request.query.get("mode", "proxy")
    if mode not in ("proxy", "redirect"):
        raise BadRequest("mode must be proxy or redirect")
    if mode == "redirect" and request.method == "GET":
        return await archive_link(request, bucket, prefix, fmt)
    if links.is_signed(request.query):
        # A gateway-signed link stands in for credentials: for this folder's
        # archive in this format only (the auth policy then checks that its
        # signer may still list the folder, and which objects they may read).
        links.verify_request(request, bucket, prefix, archive=fmt)
    # Listing rights on the folder (an archive shows its names); read rights
    # are checked per object below.
    await access.require(request, "list", bucket, prefix)
    storage = request.app[keys.STORAGE]
    await storage.require_bucket(bucket)
    response = web.StreamResponse(
        headers={
            "Content-Type": archives.FORMATS[fmt][1],
            "Content-Disposition": content_disposition(archive_name(bucket, prefix, fmt)),
        }
    )
    if request.method == "HEAD":
        await response.prepare(request)
        return response
    chunk = request.app[keys.SETTINGS].download_chunk
    async with request.app[keys.BUDGET].reserve(archive_reservation(chunk)):
        members = archives.read_members(storage, bucket, prefix, _readable(request, bucket, prefix), chunk=chunk)
        pump = archives.Pump(archives.writer(fmt, chunk=chunk), members)
        try:
            # The first output before the status line: a store that is down
            # or a bucket that vanished still gets its own error status.
            first = await anext(pump, b"")
            await response.prepare(request)
            return await _relay(request, response, pump, first, f"{bucket}/{prefix}")
        finally:
            await pump.aclose()


async def archive_link(request: web.Request, bucket: str, prefix: str, fmt: str) -> web.Response:
    """?archive=FMT&mode=redirect: 302 to a gateway-signed link to this archive, as /downloads3/ does for an object.

    Whoever may download the archive may hand out a link to it (list rights on
    the folder, as for the archive itself); minting is refused cross-site and
    from a link. Always a gateway link, whatever link_mode says: S3 can
    presign an object, never an archive the gateway makes.
    """
    await access.require_link_minting(request, bucket, prefix, action="list")
    await request.app[keys.STORAGE].require_bucket(bucket)  # 404 now, not a dead link later
    url = request.app[keys.LINKS].url(
        forwarded.base_url(request),
        bucket,
        prefix,
        lifetime=request.app[keys.SETTINGS].link_expiry,
        by=access.principal_name(request) or "",
        archive=fmt,
    )
    return web.Response(status=302, headers={"Location": url}, text=url + "\n", content_type="text/plain")


async def _relay(
    request: web.Request, response: web.StreamResponse, pump: archives.Pump, first: bytes, what: str
) -> web.StreamResponse:
    try:
        if first:
            await response.write(first)
        async for piece in pump:
            await response.write(piece)
    except (ConnectionResetError, ConnectionError):
        log.info("client went away during the archive of %s", what)
        return response
    except Exception as exc:
        # The status line is gone: the only honest signal left is to end the
        # connection without the final chunk (RFC 9112 §7.1), so the client
        # sees an incomplete response, never an archive that looks whole.
        log.warning("archive of %s failed mid-stream: %s", what, exc)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


# -- recursive delete -------------------------------------------------------------------
async def delete_folder(request: web.Request, bucket: str, prefix: str) -> web.Response:
    where = f"{bucket}/{prefix}"
    if not _flag(request, "recursive"):
        raise BadRequest(
            f"{where} is a folder: add ?recursive=1 to delete every object under it "
            "(and &dry_run=1 first to see what would go)"
        )
    dry_run = _flag(request, "dry_run")
    # A state change: refused when a browser sends it for another site. Then
    # the caller must see the folder; delete rights are checked per object, so
    # a user allowed to delete only photos/2026/ deletes that part of photos/
    # and is told about the rest.
    access.require_same_site(request, bucket, prefix)
    await access.require(request, "list", bucket, prefix)
    storage = request.app[keys.STORAGE]
    await storage.require_bucket(bucket)
    summary = _Summary(bucket, prefix, dry_run)
    token = None
    try:
        while True:
            page = await storage.list_page(bucket, prefix=prefix, delimiter=None, limit=listing.MAX_LIMIT, token=token)
            doomed = summary.sort(request, page.objects)
            if doomed and not dry_run:
                failures = await storage.delete_many(bucket, [o.key for o in doomed])
                summary.deleted(doomed, failures)
            elif doomed:
                summary.would_delete(doomed)
            token = page.next_token
            if not token:
                break
    except GatewayError as exc:
        # Storage failed midway: say what is already gone, with the failure's status.
        log.warning("recursive delete of %s stopped: %s", where, exc.message)
        return json_response(summary.json(error=exc), status=exc.status)
    return json_response(summary.json())


class _Summary:
    """The JSON answer of a recursive delete: exact counts, capped lists."""

    def __init__(self, bucket: str, prefix: str, dry_run: bool):
        self.bucket, self.prefix, self.dry_run = bucket, prefix, dry_run
        self.count = self.bytes = self.refused_count = self.error_count = 0
        self.keys: list[str] = []
        self.refused: list[str] = []
        self.errors: list[dict[str, str]] = []

    def sort(self, request: web.Request, objects: list[ObjectInfo]) -> list[ObjectInfo]:
        """The objects of a page the caller may delete; the visible others go to ``refused``."""
        doomed = []
        for o in objects:
            if not access.allowed(request, "list", self.bucket, o.key):
                continue  # not even visible to the caller: not named in the answer either
            if access.allowed(request, "delete", self.bucket, o.key):
                doomed.append(o)
            else:
                self.refused_count += 1
                if len(self.refused) < REPORT_LIMIT:
                    self.refused.append(o.key)
        return doomed

    def would_delete(self, objects: list[ObjectInfo]) -> None:
        self._count(objects)

    def deleted(self, objects: list[ObjectInfo], failures: list[Any]) -> None:
        failed = {f.key for f in failures}
        self._count([o for o in objects if o.key not in failed])
        self.error_count += len(failures)
        room = REPORT_LIMIT - len(self.errors)
        self.errors += [{"key": f.key, "code": f.code, "message": f.message} for f in failures[:room]]

    def _count(self, objects: list[ObjectInfo]) -> None:
        self.count += len(objects)
        self.bytes += sum(o.size for o in objects)
        room = REPORT_LIMIT - len(self.keys)
        self.keys += [o.key for o in objects[:room]]

    def json(self, error: GatewayError | None = None) -> dict[str, Any]:
        verb = "would_delete" if self.dry_run else "deleted"
        body: dict[str, Any] = {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "dry_run": self.dry_run,
            verb: self.count,
            "bytes": self.bytes,
            "keys": self.keys,
            "refused": self.refused_count,
            "refused_keys": self.refused,
            "errors": self.error_count,
            "error_keys": self.errors,
            "complete": error is None and not self.refused_count and not self.error_count,
            "lists_truncated": max(self.count, self.refused_count, self.error_count) > REPORT_LIMIT,
        }
        if error is not None:
            body["error"] = {"code": error.code, "message": error.message}
        return body
