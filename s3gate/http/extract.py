"""Folders in: a tar stream becomes objects (``PUT`` or ``POST`` with ``?extract=tar``).

    tar cz photos | curl -u alice -T - 'http://HOST/files/BUCKET/backup/?extract=tar'

The body is read by ``tarfile`` in a thread (``s3gate.storage.untar``, run by
the archive ``Pump``); each regular member comes back to the loop and is
stored through the same ``ObjectWriter`` as a PUT (``uploads.store``): one
PutObject for a small member, a multipart upload for a large one, memory
bounded by the upload budget, nothing on disk. Each member is all or nothing.

The answer is a JSON summary: what was stored (key, size, sha256), what was
skipped and why, and the error that stopped the stream, if one did. A failure
midway (a corrupt or truncated archive, S3, a limit) aborts the member in
flight and answers with the failure's status and exactly what was stored
before it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from .. import keys
from ..errors import BadRequest, ClientGone, GatewayError
from ..storage import untar
from ..storage.archive import Pump
from ..storage.writer import UploadResult
from . import access, uploads
from .paths import check_prefix
from .responses import json_response

log = logging.getLogger("s3gate.upload")

FORMATS = ("tar",)  # plain, gzip, bzip2 and xz tar streams: told apart by their first bytes
REPORT_LIMIT = 1000  # skipped entries named in the answer (the count is exact)
_DISCONNECTS = (ConnectionResetError, ConnectionError)


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for piece in request.content.iter_chunked(uploads.READ_CHUNK):
        yield piece


async def _member(pump: Pump) -> AsyncIterator[bytes]:
    """The bytes of the member just begun, up to its End."""
    while not isinstance(event := await anext(pump), untar.End):
        yield event


# What `curl -T photos.tar.gz URL/backup/` appends to the URL: the archive's
# own name, not a folder to unpack into.
_ARCHIVE_NAME = re.compile(r"[^/]+\.(tar|tgz|tar\.gz|tbz|tbz2|tar\.bz2|txz|tar\.xz)", re.I)


def target_folder(path: str) -> str:
    """The folder a tar stream unpacks into: the path up to its last '/'.

    A final segment is accepted only when it is an archive's file name (curl's
    ``-T FILE`` appends it to a URL ending in '/'); anything else without a
    trailing '/' is refused rather than guessed.
    """
    folder, _, last = path.rpartition("/")
    if last and not _ARCHIVE_NAME.fullmatch(last):
        raise BadRequest("?extract=tar needs a folder path ending in '/' (e.g. /files/BUCKET/backup/?extract=tar)")
    return check_prefix(folder)


async def extract(request: web.Request, bucket: str, prefix: str) -> web.Response:
    fmt = request.query.get("extract", "")
    if fmt not in FORMATS:
        raise BadRequest("extract must be tar (plain, gzip, bzip2 or xz: recognised from the bytes)")
    # Refused before the body is read (and before 100 Continue, RFC 9110 §10.1.1).
    await access.require(request, "write", bucket, prefix)
    await request.app[keys.STORAGE].require_bucket(bucket)
    await uploads.send_continue(request)
    settings = request.app[keys.SETTINGS]

    def walk(pieces: Any, pump: Pump) -> Any:  # runs in the pump's thread
        return untar.entries(
            pieces, prefix=prefix, max_members=settings.max_archive_members, max_bytes=settings.upload_limit
        )

    summary = _Summary(bucket, prefix)
    pump = Pump(walk, _body(request))  # type: ignore[arg-type]
    try:
        with uploads.registered(request):
            await _store_all(request, bucket, pump, summary)
    except ClientGone:
        log.info("client went away during the extract into %s/%s; %s", bucket, prefix, summary.stored_line())
        raise
    except GatewayError as exc:
        log.info("extract into %s/%s stopped: %s; %s", bucket, prefix, exc.message, summary.stored_line())
        return json_response(summary.json(exc), status=exc.status, headers=exc.headers)
    finally:
        await pump.aclose()
    return json_response(summary.json(), status=201)


async def _store_all(request: web.Request, bucket: str, pump: Pump, summary: _Summary) -> None:
    while True:
        try:
            event = await anext(pump, None)
        except _DISCONNECTS:
            raise ClientGone() from None
        if event is None:
            return
        if isinstance(event, untar.Skip):
            summary.skip(event.name, event.reason)
            continue
        assert isinstance(event, untar.Begin)
        summary.current = event.name
        if not access.allowed(request, "write", bucket, event.key):
            async for _ in _member(pump):  # read past it
                pass
            summary.skip(event.name, f"you may not write {event.key}")
        else:
            writer = uploads.new_writer(
                request, bucket, event.key, content_type=uploads.guess_type(event.key, None), size_hint=event.size
            )
            summary.stored(await uploads.store(request, writer, _member(pump)))
        summary.current = None


class _Summary:
    def __init__(self, bucket: str, prefix: str):
        self.bucket, self.prefix = bucket, prefix
        self.files: list[dict[str, Any]] = []
        self.bytes = 0
        self.skipped: list[dict[str, str]] = []
        self.skipped_count = 0
        self.current: str | None = None  # the member in flight, named if the stream breaks in it

    def stored(self, r: UploadResult) -> None:
        self.files.append({"key": r.key, "size": r.size, "sha256": r.sha256, "etag": r.etag.strip('"')})
        self.bytes += r.size

    def skip(self, name: str, reason: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < REPORT_LIMIT:
            self.skipped.append({"name": name, "reason": reason})

    def stored_line(self) -> str:
        return f"{len(self.files)} file(s) stored"

    def json(self, error: GatewayError | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "stored": self.files,
            "stored_count": len(self.files),
            "bytes": self.bytes,
            "skipped": self.skipped,
            "skipped_count": self.skipped_count,
            "errors": [],
            "complete": error is None,  # the archive was read to its end
        }
        if error is not None:
            # The member in flight (if any) was aborted: nothing of it is stored.
            body["errors"].append({"name": self.current, "code": error.code, "message": error.message})
            body["error"] = {"code": error.code, "message": error.message}
        return body
