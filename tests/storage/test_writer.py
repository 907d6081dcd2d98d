"""ObjectWriter against moto: single PUT vs multipart, and all-or-nothing failures."""

import asyncio
import base64
import hashlib
import logging
import os
import pickle
import threading
import zlib

import pytest

from s3gate.errors import ChecksumMismatch, PayloadTooLarge
from s3gate.settings import S3_MAX_PART
from s3gate.storage.budget import MemoryBudget
from s3gate.storage.journal import UploadJournal
from s3gate.storage.s3 import Storage
from s3gate.storage.writer import UPLOAD_OVERHEAD, ObjectWriter, part_size_for, unknown_length_part_size
from tests.conftest import keys_in, open_uploads

MiB = 1024 * 1024


@pytest.fixture
async def storage(settings):
    async with Storage.open(settings) as st:
        yield st


def writer(storage, budget, bucket, key="obj", **kw):
    kw.setdefault("part_size", 5 * MiB)
    kw.setdefault("parts_in_flight", 2)
    kw.setdefault("limit", 1 << 40)
    kw.setdefault("content_type", "application/octet-stream")
    return ObjectWriter(storage, budget, bucket, key, **kw)


async def feed(w, total, chunk=256 * 1024):
    sent = 0
    digest = hashlib.sha256()
    while sent < total:
        piece = bytes([sent // chunk % 256]) * min(chunk, total - sent)
        digest.update(piece)
        await w.write(piece)
        sent += len(piece)
    return digest.hexdigest()


async def as_a_handler(w, size, *, finish=True):
    """Feed the writer as the upload handler does: any failure or cancel aborts the upload."""
    try:
        await feed(w, size)
        return await w.finish() if finish else None
    except BaseException:
        await w.abort()
        raise


def test_part_size_grows_for_huge_bodies():
    assert part_size_for(None, 8 * MiB) == 8 * MiB
    assert part_size_for(10 * 1024**3, 8 * MiB) == 8 * MiB
    grown = part_size_for(5 * 1024**4, 8 * MiB)  # 5 TiB
    assert grown * 10_000 >= 5 * 1024**4 and grown % MiB == 0
    assert type(grown) is int  # a buffer size: bytearray(float) fails


def test_unknown_length_parts_grow_within_budget():
    sizes = [unknown_length_part_size(n, 8 * MiB, 85 * MiB) for n in range(1, 10_001)]
    assert sizes[0] == sizes[999] == 8 * MiB and sizes[1000] == 16 * MiB
    assert max(sizes) == 85 * MiB
    assert sum(sizes) > 600 * 1024**3  # far beyond 8 MiB x 10,000 = 78 GiB
    # however large the budget, no part exceeds S3's own limit (16 MiB << 9 would be 8 GiB)
    assert unknown_length_part_size(10_000, 16 * MiB, 1 << 40) == S3_MAX_PART


async def test_small_body_single_put_and_budget_returned(storage, bucket, s3):
    budget = MemoryBudget(64 * MiB)
    w = writer(storage, budget, bucket, size_hint=1000)
    sha = await feed(w, 1000)
    result = await w.finish()
    assert result.parts == 1 and result.sha256 == sha and result.size == 1000
    assert (result.bucket, result.key) == (bucket, "obj")
    assert s3.head_object(Bucket=bucket, Key="obj")["Metadata"] == {"s3gate": "1"}  # tells our objects apart
    # reserved only what was announced, plus the upload's own overhead
    assert budget.used == 0 and budget.peak == 1000 + UPLOAD_OVERHEAD
    assert open_uploads(s3, bucket) == []


async def test_an_empty_body_is_an_empty_object(storage, bucket, s3):
    budget = MemoryBudget(64 * MiB)
    result = await writer(storage, budget, bucket).finish()  # no write at all
    assert (result.size, result.parts, result.sha256) == (0, 1, hashlib.sha256(b"").hexdigest())
    assert s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == b"" and budget.used == 0


def test_part_sizes_follow_the_announced_length_and_the_budget(storage, bucket):
    huge = 5 * 1024**4  # 5 TiB: 5 MiB parts would need a million
    w = writer(storage, MemoryBudget(64 * MiB), bucket, size_hint=huge)
    assert w.part_size == part_size_for(huge, 5 * MiB) > 5 * MiB
    # unknown length: parts may grow, but the part filling and those in flight fit in the budget
    for in_flight in (1, 2):
        w = writer(storage, MemoryBudget(64 * MiB), bucket, parts_in_flight=in_flight)
        assert w.max_part_size == 64 * MiB // (in_flight + 1)


async def test_multipart_and_memory_stays_within_parts(storage, bucket, s3):
    budget = MemoryBudget(64 * MiB)
    w = writer(storage, budget, bucket)
    sha = await feed(w, 17 * MiB)
    result = await w.finish()
    assert result.parts == 4 and result.sha256 == sha
    assert s3.head_object(Bucket=bucket, Key="obj")["Metadata"] == {"s3gate": "1"}
    body = s3.get_object(Bucket=bucket, Key="obj")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha
    # one part filling + parts_in_flight in S3's hands
    assert budget.peak <= 3 * 5 * MiB + UPLOAD_OVERHEAD
    assert budget.used == 0


class CancelOnGrant(MemoryBudget):
    """A real budget that cancels a task the moment its n-th grant completes.

    The cancel lands while the grant's task finishes, so the writer is still
    suspended in ``asyncio.wait`` in ``_new_buffer``: the budget is already
    granted, but the writer has not recorded it yet. A fixed point, no timing.
    """

    def __init__(self, total: int, cancel_at: int):
        super().__init__(total)
        self.cancel_at = cancel_at
        self.grants = 0
        self.task: asyncio.Task | None = None

    async def acquire(self, n: int) -> int:
        granted = await super().acquire(n)
        self.grants += 1
        if self.grants == self.cancel_at and self.task is not None:
            self.task.cancel()
        return granted


@pytest.mark.parametrize(
    "cancel_at",
    [1, 2],
    ids=["granting-the-first-part-and-overhead", "granting-the-second-part-with-an-open-upload"],
)
async def test_cancelled_upload_is_aborted(storage, bucket, s3, cancel_at):
    budget = CancelOnGrant(64 * MiB, cancel_at)
    w = writer(storage, budget, bucket)

    budget.task = asyncio.create_task(as_a_handler(w, 11 * MiB))
    with pytest.raises(asyncio.CancelledError):
        await budget.task
    assert budget.grants == cancel_at and w.size == (cancel_at - 1) * 5 * MiB
    assert (w.upload_id is not None) == (cancel_at == 2)  # the second part opens a multipart upload
    assert w.result is None  # what the handler asks at shutdown: nothing was stored
    assert open_uploads(s3, bucket) == []
    assert keys_in(s3, bucket) == []
    assert budget.used == 0, f"{budget.used} bytes of budget leaked"


class Recording:
    """The real storage, with every call named in ``calls``.

    ``cancel_after``: once that call has succeeded at S3, cancel ``task``. The
    cancel lands while the writer waits for the answer: S3 has acted and the
    writer must know it. ``fail``: that call raises instead of reaching S3
    (having cancelled ``task`` first if it is also ``cancel_after``).
    """

    def __init__(self, storage, cancel_after=None, fail=None):
        self.storage, self.cancel_after, self.fail = storage, cancel_after, fail
        self.calls: list[str] = []
        self.args: dict[str, tuple] = {}  # the last call's arguments, by name
        self.task: asyncio.Task | None = None
        self.failed = asyncio.Event()

    def __getattr__(self, name):
        real = getattr(self.storage, name)

        async def call(*args, **kw):
            self.calls.append(name)
            self.args[name] = args
            if name == self.fail:
                self.failed.set()
                if name == self.cancel_after:
                    self.task.cancel()
                raise RuntimeError("the store is down")
            result = await real(*args, **kw)
            if name == self.cancel_after:
                self.task.cancel()
            return result

        return call


@pytest.mark.parametrize(
    "size, completing_call, parts", [(1000, "put", 1), (11 * MiB, "complete_multipart", 3)], ids=["put", "multipart"]
)
async def test_cancelled_as_the_object_is_stored_knows_it_exists(storage, bucket, s3, size, completing_call, parts):
    budget = MemoryBudget(64 * MiB)
    spy = Recording(storage, cancel_after=completing_call)
    w = writer(spy, budget, bucket)

    spy.task = asyncio.create_task(as_a_handler(w, size))
    with pytest.raises(asyncio.CancelledError):
        await spy.task
    # the handler reports what was stored (uploads._pump at shutdown), and nothing undoes it
    head = s3.head_object(Bucket=bucket, Key="obj")
    assert w.result is not None
    assert (w.result.etag, w.result.size, w.result.parts) == (head["ETag"], size, parts)
    assert "abort_multipart" not in spy.calls
    assert keys_in(s3, bucket) == ["obj"] and open_uploads(s3, bucket) == []
    assert budget.used == 0


async def test_cancelled_as_the_upload_opens_aborts_it(storage, bucket, s3):
    budget = MemoryBudget(64 * MiB)
    spy = Recording(storage, cancel_after="create_multipart")
    w = writer(spy, budget, bucket)

    spy.task = asyncio.create_task(as_a_handler(w, 6 * MiB, finish=False))
    with pytest.raises(asyncio.CancelledError):
        await spy.task
    # S3 opened the upload as we were cancelled: the writer knew its id and aborted it
    assert w.upload_id is not None and spy.calls.count("abort_multipart") == 1
    assert open_uploads(s3, bucket) == [] and keys_in(s3, bucket) == [] and budget.used == 0


async def test_cancelled_while_the_upload_fails_to_open_ends_cancelled(storage, bucket, s3):
    """The cancel wins over the store's error: at shutdown the handler answers by the cancel."""
    budget = MemoryBudget(64 * MiB)
    spy = Recording(storage, cancel_after="create_multipart", fail="create_multipart")
    w = writer(spy, budget, bucket)

    spy.task = asyncio.create_task(as_a_handler(w, 6 * MiB, finish=False))
    with pytest.raises(asyncio.CancelledError):
        await spy.task
    assert w.upload_id is None and open_uploads(s3, bucket) == [] and budget.used == 0


class HashHeld(ObjectWriter):
    """Part 1's hash holds its buffer in a thread until ``go`` is set, as hashlib's update does on a big part."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.hashing, self.go = threading.Event(), threading.Event()

    def _digest(self, data):
        # A buffer export of the part's view, as hashlib's update holds one while it runs without the GIL.
        held = pickle.PickleBuffer(data)
        self.hashing.set()
        self.go.wait(30)
        held.release()
        return super()._digest(data)


async def test_abort_while_a_part_is_hashed_returns_its_budget(storage, bucket, s3):
    """A cancelled part whose buffer a hashing thread still holds (release() raises BufferError)."""
    budget = MemoryBudget(64 * MiB)
    w = HashHeld(
        storage, budget, bucket, "obj", part_size=5 * MiB, parts_in_flight=2, limit=1 << 40, content_type="x"
    )  # fmt: skip
    await feed(w, 6 * MiB)
    assert await asyncio.to_thread(w.hashing.wait, 30)
    try:
        await w.abort()
        assert budget.used == 0
    finally:
        w.go.set()
    assert open_uploads(s3, bucket) == [] and keys_in(s3, bucket) == []


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


async def test_each_part_carries_its_own_crc_and_the_journal_names_the_upload(storage, bucket, s3, tmp_path):
    journal = await asyncio.to_thread(UploadJournal, tmp_path / "uploads")
    spy = Recording(storage)
    w = writer(spy, MemoryBudget(64 * MiB), bucket, journal=journal)
    body = bytes(range(256)) * (11 * MiB // 256)
    await w.write(body)
    # while it is open, the journal has what the sweeper needs to abort it
    [entry] = await journal.entries()
    assert (entry["bucket"], entry["key"], entry["upload_id"]) == (bucket, "obj", w.upload_id)
    await w.finish()
    *_, crcs = spy.args["complete_multipart"]
    assert crcs == [crc32_b64(body[i : i + 5 * MiB]) for i in range(0, len(body), 5 * MiB)]
    assert await journal.entries() == []


async def test_a_failed_abort_leaves_the_journal_entry(storage, bucket, s3, tmp_path):
    journal = await asyncio.to_thread(UploadJournal, tmp_path / "uploads")
    w = writer(Recording(storage, fail="abort_multipart"), MemoryBudget(64 * MiB), bucket, journal=journal)
    await feed(w, 6 * MiB)
    await w.abort()
    assert [e["upload_id"] for e in await journal.entries()] == [w.upload_id]  # the sweeper retries it
    w = writer(storage, MemoryBudget(64 * MiB), bucket, journal=journal, key="other")
    await feed(w, 6 * MiB)
    await w.abort()
    assert len(await journal.entries()) == 1  # an aborted upload leaves none


class FirstHashWaits(ObjectWriter):
    """Part 1's hash waits up to a second for another hash to start.

    In order (the writer's promise) none can start meanwhile, so this only costs
    the second; if the order were not kept, part 2 would be hashed first.
    """

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.hashes = 0
        self.another_started = threading.Event()

    def _digest(self, data):
        self.hashes += 1
        if self.hashes == 1:
            self.another_started.wait(1.0)
        else:
            self.another_started.set()
        return super()._digest(data)


async def test_the_sha256_is_of_the_parts_in_order(storage, bucket, s3):
    w = FirstHashWaits(
        storage, MemoryBudget(64 * MiB), bucket, "obj", part_size=5 * MiB, parts_in_flight=2, limit=1 << 40,
        content_type="x",
    )  # fmt: skip
    sha = await feed(w, 11 * MiB)
    result = await w.finish()
    assert result.sha256 == sha and w.hashes == 3


async def test_abort_happens_once_and_is_logged(storage, bucket, s3, caplog):
    budget = MemoryBudget(64 * MiB)
    spy = Recording(storage)
    w = writer(spy, budget, bucket)
    await feed(w, 6 * MiB)  # the first part went out: a multipart upload is open
    caplog.set_level(logging.INFO, logger="s3gate.storage")
    await w.abort()
    await w.abort()  # the handler aborts again after a failed finish: a no-op
    assert spy.calls.count("abort_multipart") == 1
    assert open_uploads(s3, bucket) == [] and keys_in(s3, bucket) == [] and budget.used == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "s3gate.storage" and r.levelno == logging.INFO]
    assert len(lines) == 1 and "aborted" in lines[0] and f"{bucket}/obj" in lines[0]


async def test_a_failed_abort_is_logged_with_its_cause(storage, bucket, s3, caplog):
    budget = MemoryBudget(64 * MiB)
    w = writer(Recording(storage, fail="abort_multipart"), budget, bucket)
    await feed(w, 6 * MiB)
    caplog.set_level(logging.INFO, logger="s3gate.storage")
    await w.abort()  # does not raise: the journal entry stays for the sweeper
    assert len(open_uploads(s3, bucket)) == 1 and budget.used == 0
    [line] = [r.getMessage() for r in caplog.records if r.name == "s3gate.storage" and r.levelno == logging.ERROR]
    assert "could not abort" in line and f"{bucket}/obj" in line and "the store is down" in line


async def test_a_failed_part_fails_the_upload_with_its_own_error(storage, bucket, s3):
    budget = MemoryBudget(64 * MiB)
    spy = Recording(storage, fail="upload_part")
    w = writer(spy, budget, bucket)
    await feed(w, 6 * MiB)  # part 1 went out, part 2 is filling
    await asyncio.wait_for(spy.failed.wait(), 30)  # part 1 failed (its task ended in the same step)
    with pytest.raises(RuntimeError, match="the store is down"):  # what the error middleware maps, not a TypeError
        await feed(w, 10 * MiB)  # part 2 goes out, part 3 needs a buffer: none is left over from part 1
        await w.finish()
    await w.abort()
    assert open_uploads(s3, bucket) == [] and keys_in(s3, bucket) == [] and budget.used == 0


class StuckParts:
    """An S3 whose part uploads only end when cancelled; it records the order of events."""

    def __init__(self):
        self.events: list[str] = []
        self.parts_in = 0
        self.both_in = asyncio.Event()

    async def create_multipart(self, bucket, key, **kw):
        return "upload-1"

    async def upload_part(self, bucket, key, upload_id, number, data, crc):
        self.parts_in += 1
        if self.parts_in == 2:
            self.both_in.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.events.append(f"part {number} stopped")

    async def abort_multipart(self, bucket, key, upload_id):
        self.events.append("abort")


class OnePartStuck:
    """An S3 where part 2 hangs until ``release`` is set; every other call answers at once."""

    def __init__(self):
        self.release = asyncio.Event()
        self.part_3_sent = asyncio.Event()

    async def create_multipart(self, bucket, key, **kw):
        return "upload-1"

    async def upload_part(self, bucket, key, upload_id, number, data, crc):
        if number == 2:
            await self.release.wait()
        if number == 3:
            self.part_3_sent.set()
        return f'"etag-{number}"'

    async def complete_multipart(self, bucket, key, upload_id, etags, crcs):
        return '"done"'


async def test_a_slow_part_does_not_hold_back_the_next():
    """parts_in_flight=2: once part 1 is back, part 3 goes out while part 2 is still on its way."""
    budget = MemoryBudget(64 * MiB)
    storage = OnePartStuck()
    w = writer(storage, budget, "b", "k")
    upload = asyncio.create_task(feed(w, 16 * MiB))
    await asyncio.wait_for(storage.part_3_sent.wait(), 30)  # hangs (fails) if the writer waits for part 2
    storage.release.set()
    await upload
    result = await w.finish()
    assert result.parts == 4 and budget.used == 0


async def test_the_last_part_of_a_known_length_reserves_only_what_is_left():
    budget = MemoryBudget(64 * MiB)
    w = ObjectWriter(
        StuckParts(), budget, "b", "k", part_size=5 * MiB, parts_in_flight=2, limit=1 << 40, content_type="x",
        size_hint=11 * MiB,
    )  # fmt: skip
    await feed(w, 11 * MiB)  # parts 1 and 2 in flight, part 3 (1 MiB) filled
    assert budget.used == 11 * MiB + UPLOAD_OVERHEAD
    await w.abort()
    assert budget.used == 0


class KeepsParts:
    """An S3 that answers at once and keeps each part's bytes."""

    def __init__(self):
        self.parts: list[bytes] = []

    @property
    def sizes(self) -> list[int]:
        return [len(p) for p in self.parts]

    async def create_multipart(self, bucket, key, **kw):
        return "upload-1"

    async def upload_part(self, bucket, key, upload_id, number, data, crc):
        self.parts.append(bytes(data))
        return f'"etag-{number}"'

    async def complete_multipart(self, bucket, key, upload_id, etags, crcs):
        return '"done"'


async def test_parts_of_an_unknown_length_grow_every_thousand():
    storage = KeepsParts()
    w = ObjectWriter(
        storage, MemoryBudget(16 * MiB), "b", "k", part_size=1024, parts_in_flight=2, limit=1 << 40, content_type="x"
    )  # fmt: skip
    await feed(w, 1002 * 1024, chunk=1024)  # no size_hint: a chunked body
    result = await w.finish()
    assert result.parts == 1001 and storage.sizes[999] == 1024 and storage.sizes[1000] == 2048


async def test_chunks_that_straddle_parts_and_a_short_last_part():
    storage, budget = KeepsParts(), MemoryBudget(16 * MiB)
    w = ObjectWriter(
        storage, budget, "b", "k", part_size=1024, parts_in_flight=1, limit=1 << 40, content_type="x", size_hint=2600
    )  # fmt: skip
    sha = await feed(w, 2600, chunk=100)  # 100-byte chunks cross every part boundary
    result = await w.finish()
    # the last part needs less than a sent part's buffer: that spare is dropped, its budget returned
    assert storage.sizes == [1024, 1024, 552] and hashlib.sha256(b"".join(storage.parts)).hexdigest() == sha
    assert result.sha256 == sha and budget.used == 0


async def test_abort_waits_for_the_parts_in_flight():
    """S3 may keep a part that lands after the abort: abort only once no part request is left."""
    budget = MemoryBudget(64 * MiB)
    storage = StuckParts()
    w = writer(storage, budget, "b", "k")
    await feed(w, 11 * MiB)  # parts 1 and 2 in flight, part 3 filling
    await asyncio.wait_for(storage.both_in.wait(), 30)
    await w.abort()
    assert sorted(storage.events[:2]) == ["part 1 stopped", "part 2 stopped"] and storage.events[2:] == ["abort"]
    assert budget.used == 0


async def test_limit_and_short_body(storage, bucket, s3):
    budget = MemoryBudget(64 * MiB)
    w = writer(storage, budget, bucket, limit=10 * MiB)
    with pytest.raises(PayloadTooLarge, match=f"limit of {10 * MiB} bytes"):  # tells the client the limit
        await feed(w, 11 * MiB)
    await w.abort()
    w = writer(storage, budget, bucket, size_hint=7 * MiB)
    await feed(w, 6 * MiB)  # the client promised 7 MiB and stopped at 6
    with pytest.raises(ChecksumMismatch, match=f"after {6 * MiB} of {7 * MiB} bytes"):  # tells the client why
        await w.finish()
    assert open_uploads(s3, bucket) == [] and keys_in(s3, bucket) == []
    assert budget.used == 0


class SlowStorage:
    """An S3 that takes its time: enough to pile a crowd of uploads on the budget."""

    def __init__(self):
        self.parts = 0

    async def create_multipart(self, bucket, key, **kw):
        return f"upload-{key}"

    async def upload_part(self, bucket, key, upload_id, number, data, crc):
        await asyncio.sleep(0.005)
        self.parts += 1
        return f'"etag-{number}"'

    async def complete_multipart(self, bucket, key, upload_id, etags, crcs):
        return '"done"'

    async def abort_multipart(self, bucket, key, upload_id):
        pass


async def test_a_crowd_larger_than_the_budget_completes_within_it():
    budget = MemoryBudget(16 * MiB)
    storage = SlowStorage()

    async def one(i):
        w = ObjectWriter(
            storage, budget, "b", f"k{i}", part_size=MiB, parts_in_flight=2, limit=1 << 40,
            content_type="x", size_hint=10 * MiB,
        )  # fmt: skip
        await feed(w, 10 * MiB, chunk=64 * 1024)
        return await w.finish()

    results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(8))), 30)
    assert all(r.size == 10 * MiB for r in results)
    assert storage.parts == 80
    assert budget.peak <= budget.total and budget.used == 0



async def test_every_part_carries_the_standard_crc32(storage, bucket, s3):
    """The CRC-32 sent with a single PUT and with each part (S3 verifies it against the bytes) is
    the standard one, zlib's, over exactly that part's bytes."""
    sent: list[tuple[str, str]] = []  # (checksum sent, checksum of the bytes sent)
    real_put, real_part = storage.put, storage.upload_part

    async def put(bucket_, key, data, *, checksum_crc32, **kw):
        sent.append((checksum_crc32, crc32_b64(bytes(data))))
        return await real_put(bucket_, key, data, checksum_crc32=checksum_crc32, **kw)

    async def upload_part(bucket_, key, upload_id, number, data, crc32):
        sent.append((crc32, crc32_b64(bytes(data))))
        return await real_part(bucket_, key, upload_id, number, data, crc32)

    storage.put, storage.upload_part = put, upload_part
    body = os.urandom(11 * MiB)
    for key, size in (("small", 1000), ("big", len(body))):
        w = writer(storage, MemoryBudget(64 * MiB), bucket, key=key, size_hint=size)
        for i in range(0, size, 256 * 1024):
            await w.write(body[i : min(size, i + 256 * 1024)])
        await w.finish()
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body[:size]
    assert len(sent) == 1 + 3, sent
    assert all(got == expected for got, expected in sent), sent


@pytest.mark.parametrize("size", [3 * MiB, 12 * MiB], ids=["one-part", "multipart"])
async def test_a_budget_of_exactly_one_part_is_given_back_exactly(storage, bucket, s3, size):
    """The smallest budget the settings allow holds one part and no room for the upload's
    overhead: the grant is capped at the budget, and what is given back must be the grant,
    not part + overhead (else `used` goes negative and the budget grows with every upload)."""
    budget = MemoryBudget(5 * MiB)
    for key in ("first", "second"):
        w = writer(storage, budget, bucket, key, parts_in_flight=1)
        sha = await feed(w, size)
        assert (await w.finish()).sha256 == sha
        assert budget.used == 0
    assert budget.peak <= budget.total
    assert keys_in(s3, bucket) == ["first", "second"]
