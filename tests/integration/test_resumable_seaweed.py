"""Resumable uploads against real SeaweedFS: a part sent again replaces it, even where ListParts lists both."""

from __future__ import annotations

import hashlib
import os

import aiohttp
import pytest

from tests.integration.helpers import PART

pytestmark = pytest.mark.integration


async def test_a_part_sent_again_replaces_it(gateway, bucket, store):
    data = os.urandom(2 * PART + 100)
    parts = {1: data[:PART], 2: data[PART : 2 * PART], 3: data[2 * PART :]}
    async with aiohttp.ClientSession(gateway.base) as http:
        body = {"bucket": bucket, "key": "r.bin", "size": len(data)}
        async with http.post("/api/uploads", json=body) as resp:
            assert resp.status == 201, await resp.text()
            sid = (await resp.json())["id"]
        # The last part (small, so quick) again and again, other bytes and the right ones in turn:
        # SeaweedFS lists every one of them and dates them to the second; the last must win.
        for piece in (os.urandom(100), parts[3], os.urandom(100), parts[3], os.urandom(100), parts[3]):
            async with http.put(f"/api/uploads/{sid}/parts/3", data=piece) as resp:
                assert resp.status == 200, await resp.text()
        for n in (1, 2):
            async with http.put(f"/api/uploads/{sid}/parts/{n}", data=parts[n]) as resp:
                assert resp.status == 200, await resp.text()
        listed = await store.call(
            "list_parts", Bucket=bucket, Key="r.bin", UploadId=(await store.open_uploads(bucket))[0]["UploadId"]
        )
        right = hashlib.md5(parts[3]).hexdigest()
        threes = [(p["ETag"].strip('"'), p["LastModified"]) for p in listed["Parts"] if p["PartNumber"] == 3]
        newest = max(when for _, when in threes)
        assert {etag for etag, when in threes if when == newest} == {right}, threes
        async with http.get(f"/api/uploads/{sid}") as resp:
            status = await resp.json()
        assert status["missing"] == [] and len(status["done"]) == 3
        async with http.post(f"/api/uploads/{sid}/complete") as resp:
            assert resp.status == 201, await resp.text()
    assert await store.get(bucket, "r.bin") == data
