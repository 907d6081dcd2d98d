"""Listings across pages: a bucket of 5,000 keys in SeaweedFS, read through the gateway with curl."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from tests.integration.helpers import curl, run

pytestmark = pytest.mark.integration

FOLDERS = 10
PER_FOLDER = 500
TOP = ("top-a.txt", "top-b.txt", "top-c.txt")


def _all_keys() -> list[str]:
    nested = [f"d{i % FOLDERS}/k{i:05d}.txt" for i in range(FOLDERS * PER_FOLDER)]
    return sorted(nested + list(TOP))


@pytest.fixture(scope="module")
def big_bucket(seaweed, store, tmp_path_factory):
    """5,003 small objects, written straight to SeaweedFS by one `curl --parallel --aws-sigv4`.

    Python's botocore manages ~500 PUT/s here; curl does the 5,000 in ~3 s.
    """
    name = "it-many-keys"
    store.client.create_bucket(Bucket=name)
    workdir = tmp_path_factory.mktemp("many-keys")
    one = workdir / "one"
    one.write_bytes(b"x")
    seaweed.put_many(name, dict.fromkeys(_all_keys(), one), workdir, timeout=120)
    count = sum(page.get("KeyCount", 0) for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=name))
    assert count == len(_all_keys())
    return name


async def test_recursive_listing_across_pages_is_complete(gateway, big_bucket, tmp_path):
    seen: list[str] = []
    pages = 0
    cursor = None
    while True:
        query = "recursive=1&limit=1000" + (f"&cursor={quote(cursor)}" if cursor else "")
        got = await curl(gateway.url(f"/files/{big_bucket}/?{query}"), tmp=tmp_path)
        assert got.status == 200, got.text
        page = got.json()
        pages += 1
        assert len(page["objects"]) <= 1000
        assert page["folders"] == []  # recursive: everything is an object
        seen.extend(o["key"] for o in page["objects"])
        cursor = page["next_cursor"]
        if not cursor:
            break
        assert pages < 20, "cursor never ends"
    assert len(seen) == len(set(seen)), "duplicates across pages"
    assert sorted(seen) == _all_keys()
    assert pages in (6, 7)  # 5,003 keys at 1,000 per page (a store may end with an empty page)


async def test_small_pages_follow_the_cursor(gateway, big_bucket, tmp_path):
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        query = "limit=137" + (f"&cursor={quote(cursor)}" if cursor else "")
        page = (await curl(gateway.url(f"/files/{big_bucket}/d7/?{query}"), tmp=tmp_path)).json()
        assert page["prefix"] == "d7/"
        seen.extend(o["key"] for o in page["objects"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(k for k in _all_keys() if k.startswith("d7/"))
    assert len(seen) == len(set(seen)) == PER_FOLDER


async def test_folders_are_listed_separately(gateway, big_bucket, tmp_path):
    got = await curl(gateway.url(f"/files/{big_bucket}/"), tmp=tmp_path)
    assert got.status == 200
    page = got.json()
    assert page["recursive"] is False
    assert page["folders"] == [f"d{i}/" for i in range(FOLDERS)]
    assert [o["key"] for o in page["objects"]] == list(TOP)
    assert all(o["size"] == 1 for o in page["objects"])
    assert page["next_cursor"] is None


async def test_cursor_cannot_be_reused_for_another_listing(gateway, big_bucket, tmp_path):
    first = (await curl(gateway.url(f"/files/{big_bucket}/?recursive=1&limit=10"), tmp=tmp_path)).json()
    cursor = first["next_cursor"]
    assert cursor
    other = await curl(gateway.url(f"/files/{big_bucket}/d1/?recursive=1&limit=10&cursor={quote(cursor)}"), tmp=tmp_path)
    assert other.status == 400
    garbage = await curl(gateway.url(f"/files/{big_bucket}/?cursor=not-a-cursor"), tmp=tmp_path)
    assert garbage.status == 400


async def test_seed_listfiles_streams_every_page(gateway, big_bucket):
    # The seed's command, as typed, over a bucket larger than one S3 page.
    typed = await run("curl", gateway.url(f"/listfiles/{big_bucket}/"))
    assert typed.rc == 0, typed.errtext
    listed = json.loads(typed.out)
    keys = [o["key"] for o in listed]
    assert len(keys) == len(set(keys))
    assert sorted(keys) == _all_keys()


async def test_bucket_list(gateway, big_bucket, bucket, tmp_path):
    got = await curl(gateway.url("/files/"), tmp=tmp_path)
    assert got.status == 200
    names = {b["name"] for b in got.json()["buckets"]}
    assert {big_bucket, bucket} <= names
