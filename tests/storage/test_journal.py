"""The upload journal and the opt-in stale-upload sweeper."""

import pytest

from s3gate.storage.budget import MemoryBudget
from s3gate.storage.journal import UploadJournal
from s3gate.storage.s3 import Storage
from s3gate.storage.writer import ObjectWriter
from tests.conftest import open_uploads

MiB = 1024 * 1024


@pytest.fixture
async def storage(settings):
    async with Storage.open(settings) as st:
        yield st


def writer(storage, bucket, journal):
    return ObjectWriter(
        storage, MemoryBudget(64 * MiB), bucket, "big.bin",
        part_size=5 * MiB, parts_in_flight=1, limit=1 << 40,
        content_type="application/octet-stream", journal=journal,
    )


async def test_journal_tracks_open_uploads(storage, bucket, tmp_path):
    journal = UploadJournal(tmp_path / "uploads")
    w = writer(storage, bucket, journal)
    await w.write(b"x" * (6 * MiB))
    assert [e["bucket"] for e in journal.entries()] == [bucket]
    await w.finish()
    assert journal.entries() == []


async def test_sweeper_aborts_only_our_stale_uploads(storage, bucket, tmp_path, s3):
    journal = UploadJournal(tmp_path / "uploads")
    w = writer(storage, bucket, journal)
    await w.write(b"x" * (6 * MiB))  # then the worker "dies": no abort, no finish
    for task in list(w._tasks):
        await task
    foreign = s3.create_multipart_upload(Bucket=bucket, Key="someone-else.bin")["UploadId"]
    assert len(open_uploads(s3, bucket)) == 2

    assert await journal.sweep(storage, older_than=3600) == 0  # not stale yet
    assert await journal.sweep(storage, older_than=0) == 1
    assert [u["UploadId"] for u in open_uploads(s3, bucket)] == [foreign]
    assert journal.entries() == []
