"""Tar streams in: the thread side of ``?extract=tar``.

``tarfile`` is synchronous, so it runs in a thread of its own (the archive
``Pump`` of ``s3gate.storage.archive``): it reads the request body through
:class:`ChunkReader`, which asks the event loop for one piece at a time, and
hands back what it finds, one event at a time, through the pump's one-slot
queue. So what a tar stream holds in memory is a couple of pieces plus
tarfile's own buffers, whatever the archive's size; the member's bytes go to
the same ``ObjectWriter`` a PUT uses, on the loop.

``mode="r|*"`` reads a non-seekable stream and detects plain, gzip, bzip2
and xz from the first bytes. Nothing is ever extracted to disk: members become
keys, and the policy here decides which ones:

- only regular files (``isreg()``); directories, symbolic and hard links,
  devices and FIFOs are skipped and reported;
- names are judged after PAX and GNU long-name headers were applied (tarfile
  does that before it yields the member): absolute paths, '..' segments, NUL,
  empty names and keys S3 would refuse are refused and reported, so nothing
  lands outside the prefix.
"""

from __future__ import annotations

import lzma
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import BadRequest, InvalidKey, PayloadTooLarge
from .names import check_key

# Bytes handed to the loop per event: large enough that the thread hop
# (~0.1 ms) is noise, small enough to stay a few pieces of memory.
PIECE = 256 * 1024

# What tarfile and the decompressors (bz2: OSError) raise on a corrupt or truncated stream.
CORRUPT = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError, ValueError)


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

    def check(self) -> None:
        """Re-raise the source's own failure, if that is what broke the read."""
        if self.failure is not None:
            raise self.failure


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
    try:
        tar = tarfile.open(fileobj=stream, mode="r|*", encoding="utf-8", tarinfo=_Info)  # type: ignore[call-overload]
    except CORRUPT:
        stream.check()
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
                _check_end(tar, stream)
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


def _check_end(tar: tarfile.TarFile, stream: ChunkReader) -> None:
    """Refuse an archive that ended anywhere but at its end-of-archive block, or whose compression did not end."""
    stop = getattr(tar, "s3gate_stop", None)
    if not isinstance(stop, tarfile.EOFHeaderError):
        why = "garbled header" if isinstance(stop, tarfile.InvalidHeaderError) else "no end-of-archive block"
        raise BadRequest(f"corrupt or truncated tar stream after {stream.consumed} bytes ({why})")
    # tarfile's _Stream decompresses but never checks that the compressed
    # stream ends (nor gzip's trailer): read on to its end and look.
    decompressor = getattr(tar.fileobj, "cmp", None)
    if decompressor is None:
        return  # a plain tar: the end block is the end
    stream.stop_at = stream.consumed + TRAILER_LIMIT
    try:
        while not decompressor.eof and tar.fileobj.read(tarfile.RECORDSIZE):  # type: ignore[union-attr]
            pass
    except CORRUPT as exc:
        stream.check()
        raise BadRequest(f"corrupt compressed data after the end of the tar ({_why(exc)})") from None
    truncated = not decompressor.eof
    if getattr(tar.fileobj, "comptype", "") == "gz" and len(decompressor.unused_data) < 8:
        truncated = True  # gzip's CRC-32 and size (RFC 1952 §2.2) are missing
    if truncated:
        raise BadRequest(f"truncated compressed tar stream: it ends after {stream.consumed} bytes without its trailer")


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
