"""Tar streams in: the thread side of ``?extract=tar``.

``tarfile`` is synchronous, so it runs in a thread of its own (the archive
``Pump`` of ``s3gate.storage.archive``): it reads the request body through
:class:`ChunkReader`, which asks the event loop for one piece at a time, and
hands back what it finds, one event at a time, through the pump's one-slot
queue. So what a tar stream holds in memory is a couple of pieces plus
tarfile's own buffers, whatever the archive's size; the member's bytes go to
the same ``ObjectWriter`` a PUT uses, on the loop.

Compression (gzip, bzip2, xz) is recognised from the first bytes and undone
here, not by tarfile: tarfile's stream reader hands each 10 KiB it reads to
the decompressor whole, and 500 bytes of bzip2 expand to 500 MB in that one
call. :class:`Decompressed` asks for at most one piece per call, so a
decompression bomb costs time, never memory; xz's decoder, which allocates its
dictionary (up to 1.5 GiB if the stream asks), is held to ``XZ_MEMORY_LIMIT``;
and gzip's CRC-32 and length trailer is checked (zlib does, RFC 1952 §2.3.1).
tarfile then reads a plain tar stream (``mode="r|"``, non-seekable). Nothing
is ever extracted to disk: members become keys, and the policy here decides
which ones:

- only regular files (``isreg()``); directories, symbolic and hard links,
  devices and FIFOs are skipped and reported;
- names are judged after PAX and GNU long-name headers were applied (tarfile
  does that before it yields the member): absolute paths, '..' segments, NUL,
  empty names and keys S3 would refuse are refused and reported, so nothing
  lands outside the prefix.
"""

from __future__ import annotations

import bz2
import lzma
import re
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from ..errors import BadRequest, InvalidKey, PayloadTooLarge
from .names import check_key

# Bytes handed to the loop per event: large enough that the thread hop
# (~0.1 ms) is noise, small enough to stay a few pieces of memory.
PIECE = 256 * 1024

# What tarfile and the decompressors (bz2: OSError) raise on a corrupt or truncated stream.
CORRUPT = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError, ValueError)

MiB = 1024 * 1024
# The most memory an xz (or .lzma) decoder may allocate: about its dictionary
# size. 65 MiB decodes every preset, `xz -9e` included (64 MiB dictionary; the
# default -6 needs 9 MiB); a stream made with a larger custom dictionary
# (`xz --lzma2=dict=1536MiB`) is refused before the decoder allocates it.
# Per tar stream being read, beside the upload budget. bzip2's decoder needs
# at most ~3.6 MB (900 kB blocks) and gzip's 32 KiB window.
XZ_MEMORY_LIMIT = 65 * MiB
# Compressed bytes handed to a decompressor per call.
COMPRESSED_READ = 64 * 1024


@dataclass(frozen=True)
class Begin:
    """A regular member that will be stored at ``key``; its bytes follow as ``bytes`` events."""

    name: str
    key: str
    size: int


@dataclass(frozen=True)
class End:
    """The member begun last has been read whole (its size matched the header)."""

    name: str


@dataclass(frozen=True)
class Skip:
    name: str
    reason: str


class ChunkReader:
    """A read-only file over an iterator of ``bytes`` pieces (the request body, from the loop)."""

    def __init__(self, pieces: Iterator[bytes]):
        self._pieces = pieces
        self._buf = memoryview(b"")
        self._eof = False
        self.consumed = 0  # bytes of the stream handed to tarfile
        # A failure of the source itself (the client went away: ConnectionResetError,
        # an OSError): re-raised as it is, never taken for a corrupt archive.
        self.failure: BaseException | None = None
        self.stop_at: int | None = None  # reads end (b"") here: for the trailer after the tar's end

    def _next(self) -> bytes | None:
        try:
            return next(self._pieces, None)
        except BaseException as exc:
            self.failure = exc
            raise

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = PIECE  # never the whole stream at once: a short read is allowed
        if self.stop_at is not None:
            n = min(n, self.stop_at - self.consumed)
            if n <= 0:
                return b""
        while not self._buf and not self._eof:
            piece = self._next()
            if piece is None:
                self._eof = True
            else:
                self._buf = memoryview(piece)
        out = bytes(self._buf[:n])
        self._buf = self._buf[n:]
        self.consumed += len(out)
        return out

    def peek(self, n: int) -> bytes:
        """Up to n next bytes (fewer only at the end), left in place for read()."""
        while len(self._buf) < n and not self._eof:
            piece = self._next()
            if piece is None:
                self._eof = True
            else:
                self._buf = memoryview(bytes(self._buf) + piece)
        return bytes(self._buf[:n])

    def check(self) -> None:
        """Re-raise the source's own failure, if that is what broke the read."""
        if self.failure is not None:
            raise self.failure


# -- compression ---------------------------------------------------------------
class _Decompressor(Protocol):
    eof: bool
    needs_input: bool
    unused_data: bytes

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _Gzip:
    """zlib's gzip decoder behind bz2's and lzma's interface.

    zlib (window bits 16 + 15) parses the gzip header and checks the trailer's
    CRC-32 and length (RFC 1952 §2.3.1) before it reports the end: a damaged
    trailer is a zlib.error, never a quiet end.
    """

    def __init__(self) -> None:
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.needs_input = True

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        out = self._z.decompress(self._z.unconsumed_tail + data, max_length)
        # A full answer may leave output pending inside zlib: ask again before feeding more.
        self.needs_input = not self._z.unconsumed_tail and len(out) < max_length
        return out

    @property
    def eof(self) -> bool:
        return self._z.eof

    @property
    def unused_data(self) -> bytes:
        return self._z.unused_data


# kind: (how a stream of it starts, its decoder)
_BZ2_START = re.compile(rb"BZh[1-9]1AY&SY")
COMPRESSIONS = {
    "gzip": (lambda head: head.startswith(b"\x1f\x8b\x08"), _Gzip),
    "bzip2": (lambda head: _BZ2_START.match(head) is not None, bz2.BZ2Decompressor),
    # xz, and the legacy .lzma header tarfile recognises (8 MiB dictionary)
    "xz": (
        lambda head: head.startswith((b"\xfd7zXZ\x00", b"\x5d\x00\x00\x80")),
        lambda: lzma.LZMADecompressor(memlimit=XZ_MEMORY_LIMIT),
    ),
}
HEAD = 10  # bytes that tell the compressions apart


def compression(head: bytes) -> str | None:
    """The compression a stream starting with ``head`` uses; None for anything else (a plain tar, or not a tar)."""
    for kind, (starts, _) in COMPRESSIONS.items():
        if starts(head):
            return kind
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        raise BadRequest("zstd-compressed tar streams are not supported: send plain, gzip, bzip2 or xz")
    return None


class Decompressed:
    """A read-only file of the decompressed bytes of ``raw``: one stream of ``kind``, or several in a row
    (pigz, pbzip2 and parallel xz write such), ending where the last one's end marker (and trailer) is.

    No read returns more than it was asked for: the decoders are called with
    ``max_length``, so what compresses a millionfold is produced piece by
    piece as tarfile reads it. Compressed data that ends before its end marker
    is an EOFError (a truncated stream); bytes after the last stream that do
    not start another are left unread, as gzip(1) leaves trailing garbage.
    """

    def __init__(self, raw: ChunkReader, kind: str):
        self._raw = raw
        self.kind = kind
        self._starts, self._new = COMPRESSIONS[kind]
        self._decoder: _Decompressor = self._new()
        self._input = b""  # compressed bytes read but not yet given to the decoder
        self.done = False  # the last stream has ended whole

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = PIECE
        while n and not self.done:
            if self._decoder.eof:
                self._next_stream()
                continue
            data = b""
            if self._decoder.needs_input:
                data, self._input = self._input or self._raw.read(COMPRESSED_READ), b""
                if not data:
                    raise EOFError(f"the {self.kind} stream ends before its end marker")
            try:
                out = self._decoder.decompress(data, n)
            except lzma.LZMAError as exc:
                if "memory usage limit" in str(exc).lower():
                    raise PayloadTooLarge(
                        f"xz dictionary too large: decoding this stream needs more than {XZ_MEMORY_LIMIT // MiB} MiB "
                        "(every xz preset, -9e included, fits; recompress without a custom dictionary size)"
                    ) from None
                raise
            if out:
                return out
        return b""

    def _next_stream(self) -> None:
        rest = self._decoder.unused_data
        while len(rest) < HEAD and (more := self._raw.read(COMPRESSED_READ)):
            rest += more
        if rest and self._starts(rest[:HEAD]):
            self._decoder, self._input = self._new(), rest
        else:
            self.done = True


def _kind(info: tarfile.TarInfo) -> str:
    if info.isdir():
        return "directory (folders come from the keys)"
    if info.issym():
        return "symbolic link"
    if info.islnk():
        return "hard link"
    if info.ischr() or info.isblk():
        return "device"
    if info.isfifo():
        return "FIFO"
    return "not a regular file"


def member_key(prefix: str, name: str) -> str:
    """The key for a member name, or InvalidKey saying why it is refused.

    Leading './' (``tar c .``) and empty segments are dropped; everything else
    that could reach outside the prefix is refused, not rewritten, so the
    report says which members did not land.
    """
    if "\x00" in name:
        raise InvalidKey("NUL in the name")
    if name.startswith("/"):
        raise InvalidKey("absolute path")
    segments = name.split("/")
    if ".." in segments:
        raise InvalidKey("'..' in the path")
    parts = [s for s in segments if s not in ("", ".")]
    if not parts:
        raise InvalidKey("empty name")
    return check_key(prefix + "/".join(parts))


def entries(pieces: Iterator[bytes], *, prefix: str, max_members: int, max_bytes: int) -> Iterator[object]:
    """Walk a tar stream: ``Skip``, or ``Begin``, its ``bytes`` pieces, then ``End``, per member.

    Raises BadRequest for a stream that is not a tar or breaks midway and
    PayloadTooLarge beyond ``max_members`` entries or ``max_bytes`` of members.
    """
    stream = ChunkReader(pieces)
    kind = compression(stream.peek(HEAD))
    source = Decompressed(stream, kind) if kind else None
    try:
        tar = tarfile.open(fileobj=source or stream, mode="r|", encoding="utf-8", tarinfo=_Info)  # type: ignore[call-overload]
    except CORRUPT as exc:
        stream.check()
        if kind:
            raise BadRequest(f"not a tar stream, or corrupt {kind} data ({_why(exc)})") from None
        raise BadRequest("not a tar stream (plain, gzip, bzip2 or xz)") from None
    count = total = 0
    with tar:
        while True:
            try:
                info = tar.next()
            except CORRUPT as exc:
                stream.check()
                raise BadRequest(
                    f"corrupt or truncated tar stream after {stream.consumed} bytes ({_why(exc)})"
                ) from None
            if info is None:
                _check_end(tar, stream, source)
                return
            # Stream mode keeps every TarInfo for link lookups we never do: forget them.
            tar.members.clear()
            count += 1
            if count > max_members:
                raise PayloadTooLarge(f"the archive has more than {max_members} entries (max_archive_members)")
            if not info.isreg():
                yield Skip(info.name, _kind(info))
                continue
            try:
                key = member_key(prefix, info.name)
            except InvalidKey as exc:
                yield Skip(info.name, exc.message)
                continue
            total += info.size
            if total > max_bytes:
                raise PayloadTooLarge(f"the archive's files exceed the upload limit of {max_bytes} bytes")
            yield Begin(info.name, key, info.size)
            yield from _member_bytes(tar, info, stream)
            yield End(info.name)


class _Info(tarfile.TarInfo):
    """A TarInfo that remembers why header reading stopped.

    In stream mode tarfile ends the archive quietly at any unreadable header
    after the first: an end-of-archive block, but also a stream cut at a
    member boundary or a garbled header. Only the first is a whole archive.
    """

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.HeaderError as exc:
            tarfile_.s3gate_stop = exc  # type: ignore[attr-defined]
            raise


# What is read after the tar's end-of-archive block to reach the end of its
# compression: the record padding (10 KiB with GNU tar's defaults) and the
# trailer; a stream with more than this after its end is not read further.
TRAILER_LIMIT = 1024 * 1024


def _check_end(tar: tarfile.TarFile, stream: ChunkReader, source: Decompressed | None) -> None:
    """Refuse an archive that ended anywhere but at its end-of-archive block, or whose compression did not end."""
    stop = getattr(tar, "s3gate_stop", None)
    if not isinstance(stop, tarfile.EOFHeaderError):
        why = "garbled header" if isinstance(stop, tarfile.InvalidHeaderError) else "no end-of-archive block"
        raise BadRequest(f"corrupt or truncated tar stream after {stream.consumed} bytes ({why})")
    if source is None:
        return  # a plain tar: the end block is the end
    # tarfile stops at the end block; the compressed stream must still end
    # whole (gzip: with a CRC-32 and length that match). Read on to its end,
    # at most TRAILER_LIMIT more bytes in and out.
    stream.stop_at = stream.consumed + TRAILER_LIMIT
    left = TRAILER_LIMIT
    try:
        while left > 0 and (piece := source.read(min(left, PIECE))):
            left -= len(piece)
    except EOFError:
        stream.check()
        raise BadRequest(
            f"truncated compressed tar stream: it ends after {stream.consumed} bytes without its trailer"
        ) from None
    except CORRUPT as exc:
        stream.check()
        raise BadRequest(f"corrupt compressed data after the end of the tar ({_why(exc)})") from None
    if not source.done:
        raise BadRequest(f"more than {TRAILER_LIMIT} bytes after the end of the tar: not read")


def _member_bytes(tar: tarfile.TarFile, info: tarfile.TarInfo, stream: ChunkReader) -> Iterator[bytes]:
    data = tar.extractfile(info)
    assert data is not None  # a regular member always has a file object
    got = 0
    while True:
        try:
            piece = data.read(PIECE)
        except CORRUPT as exc:
            stream.check()
            raise BadRequest(
                f"corrupt or truncated tar stream inside {info.name!r} after {stream.consumed} bytes ({_why(exc)})"
            ) from None
        if not piece:
            break
        got += len(piece)
        yield piece
    if got != info.size:
        raise BadRequest(f"tar stream ended inside {info.name!r} ({got} of {info.size} bytes)")


def _why(exc: BaseException) -> str:
    # tarfile's and the decompressors' own words name no data of the stream.
    return str(exc) or type(exc).__name__
