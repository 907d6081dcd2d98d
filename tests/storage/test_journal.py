"""The upload journal, the orphan sweeper and the opt-in stale-upload sweeper."""

import asyncio
import os
import subprocess
import sys
import time

import pytest

from s3gate.storage.budget import MemoryBudget
from s3gate.storage.journal import UploadJournal, process_identity
from s3gate.storage.s3 import Storage
from s3gate.storage.writer import ObjectWriter
from tests.conftest import keys_in, open_uploads

MiB = 1024 * 1024


@pytest.fixture
async def storage(settings):
    async with Storage.open(settings) as st:
        yield st


def writer(storage, bucket, journal, key="big.bin"):
    return ObjectWriter(
        storage, MemoryBudget(64 * MiB), bucket, key,
        part_size=5 * MiB, parts_in_flight=1, limit=1 << 40,
        content_type="application/octet-stream", journal=journal,
    )


async def test_journal_tracks_open_uploads(storage, bucket, tmp_path):
    journal = await asyncio.to_thread(UploadJournal, tmp_path / "uploads")  # files: off the loop, as the app does
    w = writer(storage, bucket, journal)
    await w.write(b"x" * (6 * MiB))
    assert [e["bucket"] for e in (await journal.entries())] == [bucket]
    await w.finish()
    assert (await journal.entries()) == []


async def test_sweeper_aborts_only_our_stale_uploads(storage, bucket, tmp_path, s3):
    journal = await asyncio.to_thread(UploadJournal, tmp_path / "uploads")  # files: off the loop, as the app does
    w = writer(storage, bucket, journal)
    await w.write(b"x" * (6 * MiB))  # then the worker "dies": no abort, no finish
    for task in list(w._tasks):
        await task
    foreign = s3.create_multipart_upload(Bucket=bucket, Key="someone-else.bin")["UploadId"]
    assert len(open_uploads(s3, bucket)) == 2

    assert await journal.sweep(storage, older_than=3600) == 0  # not stale yet
    assert await journal.sweep(storage, older_than=0) == 1
    assert [u["UploadId"] for u in open_uploads(s3, bucket)] == [foreign]
    assert (await journal.entries()) == []


class Owner:
    """A real process that owns journal entries while it runs, then exits (as a killed worker)."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
        self.pid = self.proc.pid
        self.identity = process_identity(self.pid)
        assert self.identity is not None

    def exit(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def leave_entry(journal: UploadJournal, s3, bucket: str, key: str, pid: int, owner: str | None) -> str:
    """A multipart upload with one part, and its journal entry, as a worker leaves them mid-upload."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * 1024)
    entry = {"bucket": bucket, "key": key, "upload_id": upload_id, "started": time.time(), "pid": pid, "owner": owner}
    journal.store.write(entry)
    return upload_id


def test_process_identity_tells_a_recycled_pid_apart():
    owner = Owner()
    assert process_identity(owner.pid) == owner.identity
    assert process_identity(os.getpid()) not in (None, owner.identity)
    owner.proc.stdin.close()
    os.waitid(os.P_PID, owner.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped: a zombie
    assert process_identity(owner.pid) is None
    owner.proc.wait()
    assert process_identity(owner.pid) is None


async def test_orphans_are_aborted_and_live_uploads_kept(storage, bucket, tmp_path, s3):
    journal = await asyncio.to_thread(UploadJournal, tmp_path / "uploads")  # files: off the loop, as the app does
    dead, alive = await asyncio.to_thread(Owner), await asyncio.to_thread(Owner)  # reads /proc: off the loop
    try:
        orphan = await asyncio.to_thread(leave_entry, journal, s3, bucket, "dead-worker.bin", dead.pid, dead.identity)
        dead.exit()  # killed mid-upload
        # The pid of a running process, but not the process that wrote the entry (a recycled pid).
        recycled = await asyncio.to_thread(leave_entry, journal, s3, bucket, "recycled.bin", os.getpid(), f"{dead.identity}-earlier")
        other_worker = await asyncio.to_thread(leave_entry, journal, s3, bucket, "other-worker.bin", alive.pid, alive.identity)

        # In this process: one request still uploading, one that ended without removing its entry
        # (its abort failed while S3 was down).
        w = writer(storage, bucket, journal)
        await w.write(b"x" * (6 * MiB))
        for task in list(w._tasks):
            await task

        async def request_that_gave_up():
            gone = writer(storage, bucket, journal, key="failed-abort.bin")
            await gone.write(b"x" * (6 * MiB))
            for task in list(gone._tasks):
                await task

        await asyncio.create_task(request_that_gave_up())
        foreign = s3.create_multipart_upload(Bucket=bucket, Key="someone-else.bin")["UploadId"]

        assert await journal.sweep_orphans(storage) == 3
        left = {u["Key"]: u["UploadId"] for u in open_uploads(s3, bucket)}
        assert set(left) == {"other-worker.bin", "big.bin", "someone-else.bin"}, left
        assert left["other-worker.bin"] == other_worker and left["someone-else.bin"] == foreign
        assert orphan not in left.values() and recycled not in left.values()
        assert sorted(e["key"] for e in (await journal.entries())) == ["big.bin", "other-worker.bin"]

        await w.finish()  # the live request completes as if nothing happened
        assert "big.bin" in keys_in(s3, bucket)
    finally:
        alive.exit()


# -- several instances on one PostgreSQL --------------------------------------------------
@pytest.fixture
async def shared_db(postgres):
    from s3gate.auth.sql import open_store

    url = postgres.create_database()
    stores = [await open_store("unused", url) for _ in range(2)]  # two instances, one database
    yield stores
    for store in stores:
        await store.close()


async def test_instances_sharing_a_database_abort_an_orphan_exactly_once(storage, bucket, s3, shared_db):
    from s3gate.storage.journal import DatabaseEntries

    a, b = [await asyncio.to_thread(UploadJournal, DatabaseEntries(store, 600)) for store in shared_db]
    dead = await asyncio.to_thread(Owner)
    orphans = [await asyncio.to_thread(leave_upload, s3, bucket, f"orphan-{n}.bin") for n in range(5)]
    for n, upload_id in enumerate(orphans):
        await a.store.add({"bucket": bucket, "key": f"orphan-{n}.bin", "upload_id": upload_id, "started": time.time(),
                           "pid": dead.pid, "owner": dead.identity})
    dead.exit()
    # Instance b sees a's entries: the journal is shared, not per host.
    assert sorted(e["upload_id"] for e in await b.entries()) == sorted(orphans)
    counts = await asyncio.gather(a.sweep_orphans(storage), b.sweep_orphans(storage), a.sweep_orphans(storage))
    # One instance had the turn (a's two rounds may share it: they claim rows one by one);
    # none aborted an upload twice.
    a_count, b_count = counts[0] + counts[2], counts[1]
    assert sum(counts) == 5 and {a_count, b_count} == {0, 5}, counts
    assert open_uploads(s3, bucket) == [] and await a.entries() == []


async def test_a_round_that_outlives_its_lease_still_aborts_each_upload_once(storage, bucket, s3, shared_db):
    from s3gate.storage.journal import DatabaseEntries

    # A lease of 0 s: every sweeper gets a turn at once, as when a slow round outlives its lease.
    a, b = [await asyncio.to_thread(UploadJournal, DatabaseEntries(store, 0)) for store in shared_db]
    dead = await asyncio.to_thread(Owner)
    for n in range(6):
        upload_id = await asyncio.to_thread(leave_upload, s3, bucket, f"late-{n}.bin")
        await a.store.add({"bucket": bucket, "key": f"late-{n}.bin", "upload_id": upload_id, "started": time.time(),
                           "pid": dead.pid, "owner": dead.identity})
    dead.exit()
    counts = await asyncio.gather(a.sweep_orphans(storage), b.sweep_orphans(storage), b.sweep_orphans(storage))
    assert sum(counts) == 6  # each upload claimed (its row deleted) by exactly one sweeper
    assert open_uploads(s3, bucket) == []


async def test_a_worker_of_another_host_is_trusted_while_it_says_it_is_alive(storage, bucket, s3, shared_db):
    from s3gate.storage.journal import OWNER_SILENCE_ROUNDS, DatabaseEntries

    here = await asyncio.to_thread(UploadJournal, DatabaseEntries(shared_db[0], 60))
    elsewhere = "another-boot-id/4242/123456"  # no /proc here can say anything about it
    upload_id = await asyncio.to_thread(leave_upload, s3, bucket, "remote.bin")
    await here.store.add({"bucket": bucket, "key": "remote.bin", "upload_id": upload_id, "started": time.time(),
                          "pid": 4242, "owner": elsewhere})
    # It last spoke 1,000 s ago, but its rounds are hourly: alive, though this checker sweeps every minute.
    spoke = time.time() - 1000
    await shared_db[1].worker_alive(elsewhere, spoke, spoke + OWNER_SILENCE_ROUNDS * 3600)
    assert await here.sweep_orphans(storage) == 0  # it spoke within the last rounds
    await shared_db[1].worker_alive(elsewhere, time.time() - 100_000, time.time() - 1)
    assert await here.sweep_orphans(storage) == 1  # silent too long: gone
    assert open_uploads(s3, bucket) == []


def leave_upload(s3, bucket: str, key: str) -> str:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * 1024)
    return upload_id
