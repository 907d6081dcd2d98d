"""ObjectWriter: turns a stream of chunks into one S3 object, all or nothing.

- A body that fits in one part goes up as a single PutObject; anything larger
  becomes a multipart upload whose parts (``bytes``, never a file on disk) are
  sent ``parts_in_flight`` at a time while the next part is being read.
- Each part's memory is reserved from the worker's :class:`MemoryBudget` before
  it is filled; ``write`` waits when the budget is spent (backpressure).
- Hashing (SHA-256 of the whole body, CRC32 per part for S3 to verify, MD5 when
  the client sent Content-MD5) runs in a thread: hashlib and zlib release the
  GIL, so it uses the second core instead of stalling the event loop.
- Any failure or cancellation before ``finish`` completes aborts the multipart
  upload: S3 never shows a partial object and an older object under the same
  key stays as it was.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from isal import isal_zlib

from ..errors import ChecksumMismatch, PayloadTooLarge
from ..settings import S3_MAX_PART, S3_MAX_PARTS, MiB
from .budget import MemoryBudget
from .s3 import UPLOADER_TAG, Storage

if TYPE_CHECKING:
    from .journal import UploadJournal

log = logging.getLogger("s3gate.storage")


def part_size_for(size_hint: int | None, part_size: int) -> int:
    """Grow the part size so a body of known length fits in S3's 10,000 parts."""
    if size_hint is None or size_hint <= part_size * S3_MAX_PARTS:
        return part_size
    needed = -(-size_hint // S3_MAX_PARTS)
    return min(S3_MAX_PART, -(-needed // MiB) * MiB)


# What an upload costs besides its part buffers (socket and parser buffers,
# the slice in the S3 connection's send buffer, allocator slack): ~1 MiB measured, 2 charged.
# Charged to the budget with the first part so RSS stays within it.
UPLOAD_OVERHEAD = 2 * 1024 * 1024

# Bodies up to this size are hashed on the event loop (~0.1 ms for 256 KiB),
# larger parts in a thread, where hashlib and zlib release the GIL.
INLINE_HASH_MAX = 256 * 1024

GROW_EVERY = 1000  # parts of unknown-length bodies between part-size doublings


def unknown_length_part_size(number: int, part_size: int, ceiling: int) -> int:
    """Part size for part ``number`` (1-based) of a body whose length is unknown.

    The size doubles every 1,000 parts, up to ``ceiling`` (what the memory
    budget allows), so chunked uploads are not capped at part_size x 10,000.
    """
    return max(part_size, min(ceiling, S3_MAX_PART, part_size << ((number - 1) // GROW_EVERY)))


def _granted(grant: asyncio.Future[None]) -> bool:
    return grant.done() and not grant.cancelled() and grant.exception() is None


def _crc32_b64(data: bytes | memoryview) -> str:
    # ISA-L's CRC-32 (the same checksum as zlib.crc32) runs ~10x faster than zlib's on
    # CPUs with carry-less multiply: 0.04 instead of 0.45 CPU seconds per GiB uploaded.
    return base64.b64encode(isal_zlib.crc32(data).to_bytes(4, "big")).decode()


@dataclass(frozen=True)
class UploadResult:
    bucket: str
    key: str
    size: int
    etag: str
    sha256: str  # hex, over the bytes the gateway received
    parts: int


class ObjectWriter:
    def __init__(
        self,
        storage: Storage,
        budget: MemoryBudget,
        bucket: str,
        key: str,
        *,
        part_size: int,
        parts_in_flight: int,
        limit: int,
        content_type: str,
        size_hint: int | None = None,
        expect_md5: bytes | None = None,
        expect_sha256: bytes | None = None,
        journal: UploadJournal | None = None,
    ):
        self.storage = storage
        self.budget = budget
        self.bucket = bucket
        self.key = key
        self.base_part_size = part_size_for(size_hint, part_size)
        # With an unknown length, parts grow; one upload may hold at most
        # (parts_in_flight + 1) parts, so keep that within the budget.
        self.max_part_size = max(self.base_part_size, budget.total // (parts_in_flight + 1))
        self.part_size = self.base_part_size
        self.parts_in_flight = parts_in_flight
        self.limit = limit
        self.content_type = content_type
        self.size_hint = size_hint
        self.expect_md5 = expect_md5
        self.expect_sha256 = expect_sha256
        self.journal = journal

        self.size = 0
        # The part being filled: allocated at its reserved size and filled in
        # place, so a part never exists twice (no join, no copy when sent).
        self._buf: bytearray | None = None
        self._filled = 0
        self._reserved = 0  # budget held by the part being filled
        self._overhead = 0  # budget held for the upload's own buffers
        self._spares: list[tuple[bytearray, int]] = []  # sent parts' buffers, still reserved
        self._spare_ready: asyncio.Future[None] | None = None
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5() if expect_md5 is not None else None
        self._hash_chain: asyncio.Future[None] | None = None
        self._upload_id: str | None = None
        self._etags: list[str | None] = []
        self._crcs: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._done = False
        self.result: UploadResult | None = None  # set once the object exists

    @property
    def upload_id(self) -> str | None:
        return self._upload_id

    def _reservation(self) -> int:
        if self.size_hint is not None:
            return max(1, min(self.part_size, self.size_hint - self.size))
        return self.part_size

    async def write(self, chunk: bytes) -> None:
        """Append a chunk. Waits for budget and for parts in flight."""
        if not chunk:
            return
        if self.size + len(chunk) > self.limit:
            raise PayloadTooLarge(f"upload exceeds the limit of {self.limit} bytes; nothing was stored")
        view = memoryview(chunk)
        while view:
            if self._buf is not None and self._filled == len(self._buf):
                # Full, and more is coming: only now is it a multipart upload.
                await self._send_part()
                if self.size_hint is None:
                    self.part_size = unknown_length_part_size(
                        len(self._etags) + 1, self.base_part_size, self.max_part_size
                    )
            if self._buf is None:
                await self._new_buffer()
            n = min(len(self._buf) - self._filled, len(view))
            self._buf[self._filled : self._filled + n] = view[:n]
            self._filled += n
            self.size += n
            view = view[n:]

    async def _new_buffer(self) -> None:
        need = self._reservation()
        while True:
            while self._spares:
                spare, reserved = self._spares.pop()
                if len(spare) == need:
                    # A sent part's buffer, still reserved: reusing it spares the
                    # kernel zeroing and faulting in a fresh 8+ MiB for every part.
                    self._buf, self._reserved = spare, reserved
                    return
                self.budget.release(reserved)  # the part size changed: drop it
            extra = 0 if self._overhead else UPLOAD_OVERHEAD
            # Wait for budget, or for one of our own parts to come back: the
            # spare it leaves is ours already (waiting only on the budget
            # while holding spares would deadlock a crowd of uploads).
            self._spare_ready = asyncio.get_running_loop().create_future()
            grant = asyncio.ensure_future(self.budget.acquire(need + extra))
            try:
                await asyncio.wait({grant, self._spare_ready}, return_when=asyncio.FIRST_COMPLETED)
                if not grant.done():
                    grant.cancel()  # MemoryBudget gives back a grant that raced the cancel
                    await asyncio.gather(grant, return_exceptions=True)
            except BaseException:
                # Cancelled as asyncio.wait (or the gather) was returning: a grant
                # that completed meanwhile is held for us and nobody else will
                # give it back. One still running gives itself back (see above).
                grant.cancel()
                if _granted(grant):
                    self.budget.release(grant.result())
                raise
            if _granted(grant):
                # The grant is capped at the whole budget (a budget of one part has
                # no room for the overhead): split what was granted, not what was asked.
                granted = grant.result()
                self._reserved = min(need, granted)
                self._overhead += granted - self._reserved
                self._buf = bytearray(need)
                return
            if grant.done() and not grant.cancelled() and grant.exception() is not None:
                raise grant.exception()  # type: ignore[misc]

    def _recycle(self, buf: bytearray | None, reserved: int) -> None:
        """A part was sent: keep its buffer (and reservation) for the next part."""
        if buf is not None and not self._done:
            self._spares.append((buf, reserved))
            if self._spare_ready is not None and not self._spare_ready.done():
                self._spare_ready.set_result(None)
        elif reserved:
            self.budget.release(reserved)

    def _release_spares(self) -> None:
        while self._spares:
            self.budget.release(self._spares.pop()[1])

    def _take_part(self) -> tuple[memoryview, int]:
        buf, filled = self._buf, self._filled
        self._buf, self._filled = None, 0
        reserved, self._reserved = self._reserved, 0
        return memoryview(buf if buf is not None else b"")[:filled], reserved

    def _digest(self, data: memoryview) -> str:
        # Runs in a worker thread; callers keep these calls in order.
        self._sha256.update(data)
        if self._md5 is not None:
            self._md5.update(data)
        return _crc32_b64(data)

    async def _settle(self, coro, keep):
        """Await an S3 call that changes state, even if we are cancelled meanwhile.

        Once the request is sent, S3 may act on it: a cancelled caller still
        waits for the answer and records it (``keep``) before re-raising, so
        an upload created just as we were cancelled can still be aborted, and
        an object completed just then is known to exist.
        """
        task = asyncio.ensure_future(coro)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.wait([task])
            if not task.cancelled() and task.exception() is None:
                keep(task.result())
            raise

    async def _hash_in_order(self, data: memoryview, previous: asyncio.Future[None] | None) -> str:
        if previous is not None:
            await previous
        if len(data) <= INLINE_HASH_MAX:
            return self._digest(data)  # ~0.1 ms: cheaper than the hop to a thread
        return await asyncio.to_thread(self._digest, data)

    async def _send_part(self) -> None:
        data, reserved = self._take_part()
        try:
            if self._upload_id is None:
                self._upload_id = await self._settle(
                    self.storage.create_multipart(
                        self.bucket, self.key, content_type=self.content_type, metadata={UPLOADER_TAG: "1"}
                    ),
                    keep=lambda upload_id: setattr(self, "_upload_id", upload_id),
                )
                if self.journal is not None:
                    await self.journal.started(self.bucket, self.key, self._upload_id)
            while len(self._tasks) >= self.parts_in_flight:
                await self._wait_one()
        except BaseException:
            self.budget.release(reserved)
            raise
        number = len(self._etags) + 1
        self._etags.append(None)
        self._crcs.append("")
        hashed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        previous, self._hash_chain = self._hash_chain, hashed
        task = asyncio.create_task(self._part_job(number, data, reserved, previous, hashed))
        self._tasks.add(task)

    async def _part_job(
        self,
        number: int,
        data: memoryview,
        reserved: int,
        previous: asyncio.Future[None] | None,
        hashed: asyncio.Future[None],
    ) -> None:
        sent = False
        try:
            try:
                crc = await self._hash_in_order(data, previous)
            finally:
                if not hashed.done():
                    hashed.set_result(None)
            self._crcs[number - 1] = crc
            assert self._upload_id is not None
            self._etags[number - 1] = await self.storage.upload_part(
                self.bucket, self.key, self._upload_id, number, data, crc
            )
            sent = True
        finally:
            buf = data.obj if sent and isinstance(data.obj, bytearray) else None
            with contextlib.suppress(BufferError):  # a view still held elsewhere
                data.release()
            self._recycle(buf, reserved)

    async def _wait_one(self) -> None:
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            self._tasks.discard(task)
            task.result()  # re-raise the first failure

    async def finish(self) -> UploadResult:
        """Send what is left and make the object visible. Aborts on any failure."""
        try:
            return await self._finish()
        except BaseException:
            await self.abort()
            raise
        finally:
            self._release_overhead()

    def _release_overhead(self) -> None:
        self._release_spares()
        if self._overhead:
            self.budget.release(self._overhead)
            self._overhead = 0

    async def _finish(self) -> UploadResult:
        if self._upload_id is None:
            data, reserved = self._take_part()
            try:
                crc = await self._hash_in_order(data, self._hash_chain)
                self._verify()
                result = await self._settle(
                    self.storage.put(
                        self.bucket,
                        self.key,
                        data,
                        content_type=self.content_type,
                        checksum_crc32=crc,
                        metadata={UPLOADER_TAG: "1"},
                    ),
                    keep=lambda etag: self._completed(etag, 1),
                )
            finally:
                if reserved:
                    self.budget.release(reserved)
            return self._completed(result, 1)
        if self._filled:
            await self._send_part()
        elif self._reserved:
            self.budget.release(self._reserved)
            self._reserved = 0
            self._buf = None
        while self._tasks:
            await self._wait_one()
        self._verify()
        etag = await self._settle(
            self.storage.complete_multipart(
                self.bucket, self.key, self._upload_id, [e or "" for e in self._etags], self._crcs
            ),
            keep=lambda etag: self._completed(etag, len(self._etags)),
        )
        result = self._completed(etag, len(self._etags))
        if self.journal is not None:
            await self.journal.ended(self._upload_id)
        return result

    def _completed(self, etag: str, parts: int) -> UploadResult:
        """The object exists: from here on there is nothing to abort."""
        self._done = True
        self.result = UploadResult(self.bucket, self.key, self.size, etag, self._sha256.hexdigest(), parts)
        return self.result

    def _verify(self) -> None:
        if self.size_hint is not None and self.size != self.size_hint:
            raise ChecksumMismatch(f"body ended after {self.size} of {self.size_hint} bytes; nothing was stored")
        if self.expect_sha256 is not None and self._sha256.digest() != self.expect_sha256:
            raise ChecksumMismatch("SHA-256 of the body does not match the checksum sent; nothing was stored")
        if self._md5 is not None and self._md5.digest() != self.expect_md5:
            raise ChecksumMismatch("Content-MD5 does not match the body; nothing was stored")

    async def abort(self) -> None:
        """Undo everything: stop parts in flight, abort the multipart upload, free the budget.

        Shielded from cancellation: a cancelled upload handler must still abort.
        """
        if self._done:
            return
        self._done = True
        await asyncio.shield(self._abort())

    async def _abort(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._buf = None
        if self._reserved:
            self.budget.release(self._reserved)
            self._reserved = 0
        self._release_overhead()
        if self._upload_id is not None:
            try:
                await self.storage.abort_multipart(self.bucket, self.key, self._upload_id)
                log.info("aborted multipart upload of %s/%s", self.bucket, self.key)
            except Exception as exc:  # the journal entry stays: the sweeper retries later
                log.error("could not abort multipart upload of %s/%s: %s", self.bucket, self.key, exc)
                return
            if self.journal is not None:
                await self.journal.ended(self._upload_id)
