"""Orphaned multipart uploads are aborted when the gateway starts; live ones are kept (issue 7, item 10).

Real SeaweedFS. A worker killed mid-upload leaves an open multipart upload and
its journal entry; the next gateway start aborts it, while an upload whose
worker still runs, and a request still uploading in this gateway, are kept.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from s3gate import keys
from s3gate.storage.journal import UploadJournal, process_identity
from tests.integration.helpers import PART, eventually, random_bytes, request_head

pytestmark = pytest.mark.integration


def owner_process() -> subprocess.Popen:
    """A real process standing in for a worker: it owns entries while it runs."""
    return subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)


async def leave_upload(store, journal: UploadJournal, bucket: str, key: str, proc: subprocess.Popen) -> str:
    upload_id = (await store.call("create_multipart_upload", Bucket=bucket, Key=key))["UploadId"]
    await store.call("upload_part", Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=random_bytes(PART))
    owner = await asyncio.to_thread(process_identity, proc.pid)
    assert owner is not None
    entry = {
        "bucket": bucket,
        "key": key,
        "upload_id": upload_id,
        "started": time.time(),
        "pid": proc.pid,
        "owner": owner,
    }
    await asyncio.to_thread(journal.store.write, entry)  # files, off the loop (the blocking-call guard watches)
    return upload_id


async def test_start_aborts_orphans_and_keeps_live_uploads(start_gateway, gateway_settings, store, bucket):
    # The gateway's own journal directory, made off the loop as the gateway makes it.
    journal = await asyncio.to_thread(UploadJournal, gateway_settings().data_dir + "/uploads")
    dead, alive = owner_process(), owner_process()
    try:
        orphan = await leave_upload(store, journal, bucket, "killed/worker.bin", dead)
        dead.kill()  # kill -9 mid-upload
        dead.wait()
        kept = await leave_upload(store, journal, bucket, "running/worker.bin", alive)

        gw = await start_gateway()

        async def orphan_aborted() -> bool:
            ids = {u["UploadId"] for u in await store.open_uploads(bucket)}
            return orphan not in ids and all(e["upload_id"] != orphan for e in await journal.entries())

        await eventually(orphan_aborted, 15, "the orphaned upload aborted at start-up")
        assert [u["UploadId"] for u in await store.open_uploads(bucket)] == [kept]
        assert [e["upload_id"] for e in await journal.entries()] == [kept]

        # A request uploading in this gateway right now: a sweep leaves it alone.
        key = "incoming/stalled.bin"
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(request_head("PUT", f"/files/{bucket}/{key}", gw.port, {"Content-Length": str(6 * PART)}))
        writer.write(random_bytes(2 * PART + PART // 2))
        await writer.drain()

        async def two_parts_in_s3() -> bool:
            return await store.parts_done(bucket, key) >= 2

        await eventually(two_parts_in_s3, 15, "two parts of the stalled upload in S3")
        assert await gw.app[keys.JOURNAL].sweep_orphans(gw.app[keys.STORAGE]) == 0
        assert await store.parts_done(bucket, key) >= 2
        assert sorted(e["key"] for e in await journal.entries()) == [key, "running/worker.bin"]
        writer.close()  # the client goes away: the gateway aborts its own upload

        async def stalled_aborted() -> bool:
            return [u["UploadId"] for u in await store.open_uploads(bucket)] == [kept]

        await eventually(stalled_aborted, 10, "the gateway to abort the stalled upload")
        assert not await store.exists(bucket, key)
    finally:
        alive.kill()
        alive.wait()
        if not dead.returncode:
            dead.kill()
            dead.wait()
