"""Folder archives streamed out of S3: tar, tar.gz and zip, never on disk.

Objects are read one after another from S3 and written into the archive as
their bytes arrive. The formats come from maintained code: tar headers from
the standard library (``TarInfo.tobuf``, PAX for long and non-ASCII names),
zip from ``stream-zip`` (zip64 as soon as a member or the archive needs it).

Both writers are synchronous generators and deflate/CRC-32 is CPU work, so an
archive runs in a thread of its own (``Pump``): it pulls object bytes from the
event loop and hands each output chunk back through a one-slot queue, so what
an archive holds is a few chunks whatever its size. A dedicated thread, not
the loop's default executor: the writer thread waits on the loop for S3, and
a default executor filled with such waits would starve the DNS lookups S3
connections need.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import logging
import stat
import tarfile
import threading
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from stream_zip import ZIP_AUTO, stream_zip

from ..errors import NoSuchKey, StorageError
from .s3 import Download, ObjectInfo, Storage

log = logging.getLogger("s3gate.storage")

FORMATS = {
    # format: (file extension, Content-Type)
    "tar": ("tar", "application/x-tar"),
    "tar.gz": ("tar.gz", "application/gzip"),
    "zip": ("zip", "application/zip"),
}
# Fast deflate: archives are mostly about getting a folder in one request, and
# level 1 compresses text nearly as well as 6 at several times the speed.
COMPRESS_LEVEL = 1
# Zip members whose first bytes do not shrink by a tenth (photos, videos,
# archives) are stored (deflate level 0), which costs a copy instead of a
# deflate that would gain nothing: ~15x faster on such data.
SAMPLE = 16 * 1024
MEMBER_MODE = 0o644
T = TypeVar("T")


@dataclass
class Member:
    """One object as an archive entry: its name inside the archive and exactly ``size`` bytes."""

    name: str
    size: int
    modified: dt.datetime
    chunks: AsyncIterator[bytes]
    first: bytes = b""  # already read from chunks (for the zip store-or-deflate choice)


def member_name(key: str, prefix: str) -> str | None:
    """The entry name for key under prefix, or None for keys no archive should carry.

    Folder markers (keys ending in '/') are not files; names that would
    extract outside the target directory ('..', absolute, empty segments) or
    carry control characters are left out, as tar and unzip would refuse or
    rewrite them anyway.
    """
    name = key[len(prefix) :]
    if not name or name.endswith("/") or name.startswith("/"):
        return None
    if any(seg in ("", ".", "..") for seg in name.split("/")):
        return None
    if any(ord(c) < 0x20 or c == "\x7f" for c in name):
        return None
    return name


async def _exact(chunks: AsyncIterator[bytes], size: int, key: str) -> AsyncIterator[bytes]:
    """Pass the body through, and fail if S3 sends more or fewer bytes than it announced:
    an archive whose entry is short is corrupt from that point on."""
    got = 0
    async for piece in chunks:
        got += len(piece)
        if got > size:
            raise StorageError(f"{key}: the storage sent more bytes than announced")
        yield piece
    if got != size:
        raise StorageError(f"{key}: the storage sent {got} of {size} bytes")


async def _named(objects: AsyncIterable[ObjectInfo], bucket: str, prefix: str) -> AsyncIterator[tuple[str, str]]:
    """(key, entry name) of each listed object an archive may carry."""
    async for info in objects:
        name = member_name(info.key, prefix)
        if name is None:
            log.info("archive of %s/%s leaves out %r (not a safe file name)", bucket, prefix, info.key)
            continue
        yield info.key, name


async def _get(storage: Storage, bucket: str, key: str) -> Download | None:
    try:
        return await storage.get(bucket, key)
    except NoSuchKey:
        return None  # deleted since the listing: left out


def _discard(fetch: asyncio.Task[Download | None]) -> None:
    """Stop a prefetch; a GET that already answered has its body closed (it holds a pooled connection)."""

    def close(done: asyncio.Task[Download | None]) -> None:
        if not done.cancelled() and done.exception() is None and (download := done.result()) is not None:
            download.body.close()

    fetch.cancel()
    fetch.add_done_callback(close)


async def read_members(
    storage: Storage, bucket: str, prefix: str, objects: AsyncIterable[ObjectInfo], *, chunk: int
) -> AsyncIterator[Member]:
    """Each listed object as a Member, its S3 body open only while it is the current one.

    The next object's GET is sent while the current one streams, so the
    round trip to S3 overlaps the transfer instead of adding to it (a folder of
    small objects is mostly round trips). At most one body waits that way,
    holding what the S3 connection buffers before it pauses: a constant,
    whatever the folder.

    An object deleted since the listing is left out. Size and date come from
    the GET itself, so they match the bytes even if the object was replaced.
    """
    named = _named(objects, bucket, prefix)
    fetch: asyncio.Task[Download | None] | None = None
    try:
        upcoming = await anext(named, None)
        if upcoming is not None:
            fetch = asyncio.ensure_future(_get(storage, bucket, upcoming[0]))
        while upcoming is not None and fetch is not None:
            key, name = upcoming
            download = await fetch
            fetch = None
            async with download.body if download else contextlib.nullcontext() as body:
                # The next GET goes out now, while this body streams.
                upcoming = await anext(named, None)
                if upcoming is not None:
                    fetch = asyncio.ensure_future(_get(storage, bucket, upcoming[0]))
                if download is None:
                    continue
                size = download.info.size
                chunks = _exact(body.iter_chunks(chunk), size, key)
                first = await anext(chunks, b"")
                yield Member(name, size, download.info.last_modified, chunks, first)
    finally:
        if fetch is not None:
            _discard(fetch)
        await named.aclose()


# -- the writers (synchronous: they run in the Pump's thread) ---------------------
def _member_bytes(member: Member, pump: Pump) -> Iterator[bytes]:
    if member.first:
        yield member.first
    yield from pump.iterate(member.chunks)


def tar_chunks(members: Iterable[Member], pump: Pump) -> Iterator[bytes]:
    offset = 0
    for m in members:
        info = tarfile.TarInfo(m.name)
        info.size, info.mtime, info.mode, info.type = m.size, int(m.modified.timestamp()), MEMBER_MODE, tarfile.REGTYPE
        # PAX headers carry names over 100 bytes and non-ASCII names exactly (POSIX.1-2001).
        header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        yield header
        yield from _member_bytes(m, pump)
        offset += len(header) + m.size
        if pad := -m.size % tarfile.BLOCKSIZE:
            yield tarfile.NUL * pad
            offset += pad
    # End of archive as tarfile.close() writes it: two zero blocks, padded to a whole record.
    end = 2 * tarfile.BLOCKSIZE
    end += -(offset + end) % tarfile.RECORDSIZE
    yield tarfile.NUL * end


def gzip_chunks(chunks: Iterable[bytes], *, flush_at: int) -> Iterator[bytes]:
    compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # 16+: gzip wrapper
    pending: list[bytes] = []
    size = 0
    for piece in chunks:
        if out := compressor.compress(piece):
            pending.append(out)
            size += len(out)
        if size >= flush_at:
            yield b"".join(pending)
            pending, size = [], 0
    pending.append(compressor.flush())
    yield b"".join(pending)


def _zip_level(sample: bytes) -> int:
    if not sample:
        return COMPRESS_LEVEL
    head = sample[:SAMPLE]
    return COMPRESS_LEVEL if len(zlib.compress(head, COMPRESS_LEVEL)) < 0.9 * len(head) else 0


def zip_chunks(members: Iterable[Member], pump: Pump, *, chunk: int) -> Iterator[bytes]:
    files = (
        (
            m.name,
            m.modified,
            stat.S_IFREG | MEMBER_MODE,
            ZIP_AUTO(m.size, level=_zip_level(m.first)),
            _member_bytes(m, pump),
        )
        for m in members
    )
    return stream_zip(files, chunk_size=chunk)


def writer(fmt: str, *, chunk: int) -> Callable[[Iterable[Member], Pump], Iterator[bytes]]:
    if fmt == "tar":
        return tar_chunks
    if fmt == "tar.gz":
        return lambda members, pump: gzip_chunks(tar_chunks(members, pump), flush_at=chunk)
    if fmt == "zip":
        return lambda members, pump: zip_chunks(members, pump, chunk=chunk)
    raise ValueError(f"unknown archive format {fmt!r}")


# -- the thread bridge ----------------------------------------------------------------
async def _next(source: AsyncIterator[T], end: Any) -> Any:
    return await anext(source, end)  # a coroutine, as run_coroutine_threadsafe wants


class Stopped(Exception):
    """The consumer closed the pump: the writer thread winds down."""


class Pump:
    """Run a synchronous archive writer in its own thread, fed from (and feeding) the event loop.

    ``async for chunk in pump`` yields the writer's output; ``aclose()`` stops
    the thread (cancelling whatever it waits for on the loop) and waits for
    it, so nothing outlives the response. The writer's own exceptions (S3
    failing mid-object, a size mismatch) come out of the ``async for``.
    """

    def __init__(self, write: Callable[[Iterable[Member], Pump], Iterator[bytes]], members: AsyncIterator[Member]):
        self._write = write
        self._members = members
        self._loop = asyncio.get_running_loop()
        self._out: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=1)
        self._stopped = threading.Event()
        self._waiting: concurrent.futures.Future[Any] | None = None
        self._lock = threading.Lock()
        self._done = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name="s3gate-archive", daemon=True)
        self._started = False

    # thread side
    def _call(self, coro: Any) -> Any:
        """Run a coroutine on the loop and wait for it; Stopped once the consumer has gone."""
        with self._lock:
            if self._stopped.is_set():
                coro.close()
                raise Stopped()
            self._waiting = fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result()
        except concurrent.futures.CancelledError:
            raise Stopped() from None
        finally:
            self._waiting = None

    def iterate(self, source: AsyncIterator[T]) -> Iterator[T]:
        """An async iterator of the loop, read from the writer's thread."""
        end = object()
        while (item := self._call(_next(source, end))) is not end:
            yield item

    def _run(self) -> None:
        try:
            for piece in self._write(self.iterate(self._members), self):
                if piece:
                    self._call(self._out.put(("data", piece)))
            self._call(self._out.put(("end", None)))
        except Stopped:
            pass
        except BaseException as exc:  # handed to the consumer, raised there
            with contextlib.suppress(Stopped):
                self._call(self._out.put(("error", exc)))
        finally:
            self._loop.call_soon_threadsafe(self._finished)

    def _finished(self) -> None:
        if not self._done.done():
            self._done.set_result(None)

    # loop side
    def __aiter__(self) -> Pump:
        return self

    async def __anext__(self) -> bytes:
        if not self._started:
            self._started = True
            self._thread.start()
        kind, value = await self._out.get()
        if kind == "data":
            return value
        if kind == "error":
            raise value
        raise StopAsyncIteration

    async def aclose(self) -> None:
        with self._lock:
            self._stopped.set()
            if self._waiting is not None:
                self._waiting.cancel()
        while not self._out.empty():  # a put the thread is blocked on completes
            self._out.get_nowait()
        if self._started:
            await asyncio.shield(self._done)
        with contextlib.suppress(RuntimeError):  # RuntimeError: still running (handler cancelled mid-read)
            await self._members.aclose()  # closes the S3 body of the member in flight
