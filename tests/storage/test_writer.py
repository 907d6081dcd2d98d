"""ObjectWriter against moto: single PUT vs multipart, and all-or-nothing failures."""

import asyncio
import hashlib

import pytest

from s3gate.errors import ChecksumMismatch, PayloadTooLarge
from s3gate.storage.budget import MemoryBudget
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


def test_part_size_grows_for_huge_bodies():
    assert part_size_for(None, 8 * MiB) == 8 * MiB
    assert part_size_for(10 * 1024**3, 8 * MiB) == 8 * MiB
    grown = part_size_for(5 * 1024**4, 8 * MiB)  # 5 TiB
    assert grown * 10_000 >= 5 * 1024**4 and grown % MiB == 0


def test_unknown_length_parts_grow_within_budget():
    sizes = [unknown_length_part_size(n, 8 * MiB, 85 * MiB) for n in range(1, 10_001)]
    assert sizes[0] == sizes[999] == 8 * MiB and sizes[1000] == 16 * MiB
    assert max(sizes) == 85 * MiB
    assert sum(sizes) > 600 * 1024**3  # far beyond 8 MiB x 10,000 = 78 GiB


async def test_small_body_single_put_and_budget_returned(storage, bucket, s3):
    budget = MemoryBudget(64 * MiB)
    w = writer(storage, budget, bucket, size_hint=1000)
    sha = await feed(w, 1000)
    result = await w.finish()
    assert result.parts == 1 and result.sha256 == sha and result.size == 1000
    # reserved only what was announced, plus the upload's own overhead
    assert budget.used == 0 and budget.peak == 1000 + UPLOAD_OVERHEAD
    assert open_uploads(s3, bucket) == []


async def test_multipart_and_memory_stays_within_parts(storage, bucket, s3):
    budget = MemoryBudget(64 * MiB)
    w = writer(storage, budget, bucket)
    sha = await feed(w, 17 * MiB)
    result = await w.finish()
    assert result.parts == 4 and result.sha256 == sha
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

    async def acquire(self, n: int) -> None:
        await super().acquire(n)
        self.grants += 1
        if self.grants == self.cancel_at and self.task is not None:
            self.task.cancel()


@pytest.mark.parametrize(
    "cancel_at",
    [1, 2],
    ids=["granting-the-first-part-and-overhead", "granting-the-second-part-with-an-open-upload"],
)
async def test_cancelled_upload_is_aborted(storage, bucket, s3, cancel_at):
    budget = CancelOnGrant(64 * MiB, cancel_at)
    w = writer(storage, budget, bucket)

    async def upload():
        try:
            await feed(w, 11 * MiB)
            await w.finish()
        except asyncio.CancelledError:
            await w.abort()
            raise

    budget.task = asyncio.create_task(upload())
    with pytest.raises(asyncio.CancelledError):
        await budget.task
    assert budget.grants == cancel_at and w.size == (cancel_at - 1) * 5 * MiB
    assert (w.upload_id is not None) == (cancel_at == 2)  # the second part opens a multipart upload
    assert open_uploads(s3, bucket) == []
    assert keys_in(s3, bucket) == []
    assert budget.used == 0, f"{budget.used} bytes of budget leaked"


async def test_limit_and_short_body(storage, bucket, s3):
    budget = MemoryBudget(64 * MiB)
    w = writer(storage, budget, bucket, limit=10 * MiB)
    with pytest.raises(PayloadTooLarge):
        await feed(w, 11 * MiB)
    await w.abort()
    w = writer(storage, budget, bucket, size_hint=7 * MiB)
    await feed(w, 6 * MiB)  # the client promised 7 MiB and stopped at 6
    with pytest.raises(ChecksumMismatch):
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
