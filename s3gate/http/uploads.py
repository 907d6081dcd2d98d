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

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from .. import keys, metrics
from ..errors import BadRequest, ClientGone, PayloadTooLarge, ShuttingDown, UnsupportedTransferCoding
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


def refuse_transfer_codings(request: web.Request) -> None:
    """Only chunked is decoded (by aiohttp): a body sent as `gzip, chunked` would
    be stored still gzipped, so any other transfer coding is refused before the
    body is read (RFC 9112 §6.1: 501 for a coding the server does not understand)."""
    lines = request.headers.getall("Transfer-Encoding", [])
    codings = [c.strip(" \t").lower() for line in lines for c in line.split(",") if c.strip(" \t")]
    if codings and codings != ["chunked"]:
        raise UnsupportedTransferCoding(
            f"Transfer-Encoding {', '.join(codings)!r} is not supported: send the body as is or chunked"
        )


async def send_continue(request: web.Request) -> None:
    refuse_transfer_codings(request)  # every upload route calls this before reading its body
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
    """Every object uploaded goes through here: counted in flight, then completed or aborted."""
    with metrics.tracked_upload():
        return await _pump_untracked(writer, pieces, registry)


async def _pump_untracked(writer: ObjectWriter, pieces: AsyncIterator[bytes], registry: UploadRegistry) -> UploadResult:
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


# What aiohttp's multipart reader raises on a malformed body (besides the
# BadHttpMessage family for part headers).
_MALFORMED = (ValueError, AssertionError, RuntimeError)


def _malformed_form(request: web.Request, exc: BaseException) -> BadRequest:
    """A short 400 for a broken multipart body.

    aiohttp's messages quote raw bytes of the body (a header line, a
    boundary line); those may hold anything, so only our own words are sent.
    """
    protocol = request.protocol
    if isinstance(exc, LineTooLong):
        limit = getattr(protocol, "max_field_size", 8190)
        return BadRequest(f"malformed multipart body: a form part's header line is over {limit} bytes")
    if isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc):
        limit = getattr(protocol, "max_headers", 128)
        return BadRequest(f"malformed multipart body: a form part has more than {limit} header lines")
    if isinstance(exc, BadHttpMessage):
        # RFC 7578 §4.2: a filename's '"', CR and LF travel percent-encoded
        # (%22, %0D, %0A); a raw CR, LF or NUL breaks the part's header.
        return BadRequest("malformed multipart body: invalid form part header (a raw NUL, CR or LF in a filename?)")
    if "starting boundary" in str(exc):
        return BadRequest("malformed multipart body: no boundary from the Content-Type header found")
    return BadRequest("malformed multipart body")


class _FormParts:
    """Walks a multipart/form-data body, part by part.

    A file's data ends at the delimiter that follows it (RFC 2046 §5.1.1),
    and only once that delimiter has been read is the file complete: the
    pieces of a part run out only after the next delimiter line (and the next
    part's headers, or the close-delimiter) were read and found well-formed.
    A body that ends without it was cut short, whatever its Content-Length
    said, and the file is not stored.
    """

    def __init__(self, request: web.Request, reader: MultipartReader):
        self.request = request
        self.reader = reader
        self.following: BodyPartReader | None = None  # the part after the last one read

    async def next(self) -> BodyPartReader | None:
        try:
            part = await self.reader.next()
        except _DISCONNECTS:
            raise ClientGone() from None
        except (*_MALFORMED, BadHttpMessage) as exc:
            raise _malformed_form(self.request, exc) from None
        if part is not None and not isinstance(part, BodyPartReader):
            raise BadRequest("nested multipart parts are not supported")
        return part

    async def skip(self, part: BodyPartReader) -> BodyPartReader | None:
        """A plain form field, not a file: read past it."""
        try:
            await part.release()
        except _DISCONNECTS:
            raise ClientGone() from None
        except _MALFORMED as exc:
            raise self._cut_short("a form field") if self._ended() else _malformed_form(self.request, exc) from None
        return await self.next()

    def _ended(self) -> bool:
        return self.request.content.at_eof()

    def _cut_short(self, what: str) -> BadRequest:
        return BadRequest(f"form body cut short: {what} has no closing boundary; it was not stored")

    async def pieces(self, part: BodyPartReader, key: str) -> AsyncIterator[bytes]:
        """The file's data, ending only once its closing delimiter has been read."""
        while True:
            try:
                piece = await part.read_chunk(READ_CHUNK)
            except _MALFORMED as exc:
                # aiohttp says "Reading after EOF" when the body ends inside a part.
                raise self._cut_short(repr(key)) if self._ended() else _malformed_form(self.request, exc) from None
            if not piece:
                break
            yield piece
        if not part.at_eof():
            # The data ran out, not into a delimiter: the body ended inside the part.
            raise self._cut_short(repr(key))
        self.following = await self.next()
        if self.following is not None and self._ended():
            # A delimiter, then nothing: no next part's data, no close-delimiter.
            raise self._cut_short(repr(key))


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


def registered(request: web.Request) -> _Registered:
    """``with uploads.registered(request):`` around a handler's uploads, so shutdown aborts them."""
    return _Registered(request.app[keys.UPLOADS])


async def store(request: web.Request, writer: ObjectWriter, pieces: AsyncIterator[bytes]) -> UploadResult:
    """Any other streamed source (a tar member): the same all-or-nothing as PUT and forms."""
    return await _pump(writer, pieces, request.app[keys.UPLOADS])


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
    form = _FormParts(request, reader)
    with _Registered(registry):
        try:
            part = await form.next()
            while part is not None:
                if not part.filename:
                    part = await form.skip(part)  # a plain form field: not a file
                    continue
                if len(stored) >= settings.max_form_files:
                    raise PayloadTooLarge(f"too many files in one request (limit {settings.max_form_files})")
                key = safe_join(prefix, form_filename(part))
                await access.require(request, "write", bucket, key)
                writer = new_writer(
                    request, bucket, key, content_type=guess_type(key, part.headers.get("Content-Type"))
                )
                stored.append(await _pump(writer, form.pieces(part, key), registry))
                part = form.following
        except BaseException as exc:
            if stored and hasattr(exc, "message"):
                names = ", ".join(r.key for r in stored)
                exc.message = f"{exc.message} (already stored: {names})"  # type: ignore[attr-defined]
            raise
    if not stored:
        raise BadRequest("no file in the form: send one with curl -F 'file=@/path/to/file'")
    return stored
