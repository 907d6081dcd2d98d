"""Request bodies into S3: raw PUT bodies and multipart/form-data, streamed.

Bodies are read in pieces of at most READ_CHUNK (aiohttp buffers about twice
the piece size before pausing the socket), handed to an ObjectWriter and never
held whole. Every upload runs registered in the UploadRegistry so a worker
shutdown can abort it cleanly (aiohttp stops reading bodies on shutdown,
aiohttp#2298: waiting would only orphan the multipart upload).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import mimetypes
import re
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http import HttpVersion11

from .. import keys
from ..errors import BadRequest, ClientGone, PayloadTooLarge, ShuttingDown
from ..storage.writer import ObjectWriter, UploadResult
from . import access
from .paths import safe_join

log = logging.getLogger("s3gate.upload")

# Pieces read from a request body. aiohttp's reader keeps up to twice this
# (plus one socket read) per connection: 64 KiB keeps that near 0.3 MiB
# without costing throughput (measured against 256 KiB).
READ_CHUNK = 64 * 1024
_DISCONNECTS = (ConnectionResetError, ConnectionError, asyncio.IncompleteReadError)


class UploadRegistry:
    """The upload tasks of this worker, so shutdown can abort them."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()
        self.shutting_down = False

    async def on_shutdown(self, app: web.Application) -> None:
        self.shutting_down = True
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            log.info("shutdown: aborting %d upload(s)", len(self.tasks))


async def defer_continue(request: web.Request) -> None:
    """expect_handler for upload routes: answer nothing yet.

    The handler checks the bucket, the permissions and the size first and only
    then calls :func:`send_continue`, so a refused upload is refused before
    the client sends its body (RFC 9110 §10.1.1).
    """
    return None


async def send_continue(request: web.Request) -> None:
    if request.version >= HttpVersion11 and request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the interim response is not the body


def guess_type(key: str, sent: str | None) -> str:
    if sent and sent not in ("application/octet-stream", "application/x-www-form-urlencoded"):
        return sent
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


def _decode_digest(value: str, size: int, name: str) -> bytes:
    value = value.strip()
    if len(value) == size * 2:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != size:
        raise BadRequest(f"malformed {name} header: expected base64 (or hex) of a {size}-byte digest")
    return raw


def expected_checksums(request: web.Request) -> dict[str, bytes]:
    out = {}
    if "Content-MD5" in request.headers:
        out["expect_md5"] = _decode_digest(request.headers["Content-MD5"], 16, "Content-MD5")
    sha = request.headers.get("x-amz-checksum-sha256") or request.headers.get("X-Checksum-Sha256")
    if sha:
        out["expect_sha256"] = _decode_digest(sha, 32, "x-amz-checksum-sha256")
    return out


_FILENAME = re.compile(r'(?:^|[;\s])filename="((?:\\"|[^"])*)"', re.I)


def form_filename(part: BodyPartReader) -> str:
    """The filename of a form part as the client meant it.

    Browsers escape only '"', CR and LF (as %22, %0D, %0A: WHATWG's form
    encoding) and curl only '"' (as \\"); backslashes are literal, e.g. in
    Windows paths. aiohttp reads them as quoted-pair escapes and drops them,
    so the quoted value is taken from the raw header. RFC 5987's filename*
    is left to aiohttp. Nothing else is decoded: 'a%20b.txt' keeps its name.
    """
    header = part.headers.get("Content-Disposition", "")
    match = _FILENAME.search(header)
    if "filename*" in header.lower() or not match:
        raw = part.filename or ""
    else:
        raw = match.group(1).replace('\\"', '"')
    return raw.replace("%22", '"').replace("%0D", "\r").replace("%0A", "\n")


def check_length(request: web.Request) -> int | None:
    settings = request.app[keys.SETTINGS]
    length = request.content_length
    if length is not None and length > settings.upload_limit:
        raise PayloadTooLarge(f"upload of {length} bytes exceeds the limit of {settings.upload_limit} bytes")
    return length


def new_writer(request: web.Request, bucket: str, key: str, **kwargs: Any) -> ObjectWriter:
    app = request.app
    settings = app[keys.SETTINGS]
    return ObjectWriter(
        app[keys.STORAGE],
        app[keys.BUDGET],
        bucket,
        key,
        part_size=settings.part_size,
        parts_in_flight=settings.parts_in_flight,
        limit=settings.upload_limit,
        journal=app[keys.JOURNAL],
        **kwargs,
    )


async def _pump(writer: ObjectWriter, pieces: AsyncIterator[bytes], registry: UploadRegistry) -> UploadResult:
    """Feed pieces to the writer; abort on any failure, disconnect or shutdown."""
    try:
        async for piece in pieces:
            await writer.write(piece)
        return await writer.finish()
    except asyncio.CancelledError:
        await writer.abort()  # a no-op when the object was completed meanwhile
        task = asyncio.current_task()
        if registry.shutting_down and task is not None:
            task.uncancel()
            if writer.result is not None:
                return writer.result  # stored just as shutdown began: say so
            raise ShuttingDown() from None
        raise
    except _DISCONNECTS:
        await writer.abort()
        log.info("client went away during upload of %s/%s; aborted", writer.bucket, writer.key)
        raise ClientGone() from None
    except BaseException:
        await writer.abort()
        raise


async def _raw_pieces(request: web.Request) -> AsyncIterator[bytes]:
    async for piece in request.content.iter_chunked(READ_CHUNK):
        yield piece


async def _part_pieces(part: BodyPartReader) -> AsyncIterator[bytes]:
    while True:
        piece = await part.read_chunk(READ_CHUNK)
        if not piece:
            return
        yield piece


class _Registered:
    def __init__(self, registry: UploadRegistry):
        self.registry = registry

    def __enter__(self) -> None:
        if self.registry.shutting_down:
            raise ShuttingDown()
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.registry.tasks.add(task)

    def __exit__(self, *exc: object) -> None:
        self.registry.tasks.discard(self.task)


async def receive_body(request: web.Request, bucket: str, key: str) -> UploadResult:
    """PUT: the raw request body becomes the object."""
    registry = request.app[keys.UPLOADS]
    writer = new_writer(
        request,
        bucket,
        key,
        content_type=guess_type(key, request.headers.get("Content-Type")),
        size_hint=request.content_length,
        **expected_checksums(request),
    )
    with _Registered(registry):
        return await _pump(writer, _raw_pieces(request), registry)


async def receive_form(request: web.Request, bucket: str, prefix: str) -> list[UploadResult]:
    """POST multipart/form-data: every part with a filename becomes an object under prefix.

    Each file is all-or-nothing; files completed before a failure stay stored
    and are named in the error message.
    """
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("expected multipart/form-data (curl -F file=@path)")
    settings = request.app[keys.SETTINGS]
    registry = request.app[keys.UPLOADS]
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError) as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from None
    stored: list[UploadResult] = []
    with _Registered(registry):
        try:
            while True:
                try:
                    part = await reader.next()
                except _DISCONNECTS:
                    raise ClientGone() from None
                except (ValueError, AssertionError, RuntimeError) as exc:
                    raise BadRequest(f"malformed multipart body: {exc}") from None
                if part is None:
                    break
                if not isinstance(part, BodyPartReader):
                    raise BadRequest("nested multipart parts are not supported")
                if not part.filename:
                    await part.release()  # a plain form field: not a file
                    continue
                if len(stored) >= settings.max_form_files:
                    raise PayloadTooLarge(f"too many files in one request (limit {settings.max_form_files})")
                key = safe_join(prefix, form_filename(part))
                await access.require(request, "write", bucket, key)
                writer = new_writer(
                    request, bucket, key, content_type=guess_type(key, part.headers.get("Content-Type"))
                )
                try:
                    stored.append(await _pump(writer, _part_pieces(part), registry))
                except (ValueError, AssertionError, RuntimeError) as exc:
                    raise BadRequest(f"malformed multipart body: {exc}") from None
        except BaseException as exc:
            if stored and hasattr(exc, "message"):
                names = ", ".join(r.key for r in stored)
                exc.message = f"{exc.message} (already stored: {names})"  # type: ignore[attr-defined]
            raise
    if not stored:
        raise BadRequest("no file in the form: send one with curl -F 'file=@/path/to/file'")
    return stored
