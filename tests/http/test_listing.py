"""Listings: folders, pages, cursors, recursion."""

from concurrent.futures import ThreadPoolExecutor


async def test_folders_and_objects_separately(client, bucket, s3):
    for key in ("top.txt", "docs/a.txt", "docs/b.txt", "docs/deep/c.txt", "img/x.png"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"1234")
    resp = await client.get(f"/files/{bucket}/")
    page = await resp.json()
    assert [o["key"] for o in page["objects"]] == ["top.txt"]
    assert page["folders"] == ["docs/", "img/"]
    assert set(page["objects"][0]) == {"key", "size", "etag", "last_modified"}
    assert page["next_cursor"] is None

    page = await (await client.get(f"/files/{bucket}/docs/")).json()
    assert [o["key"] for o in page["objects"]] == ["docs/a.txt", "docs/b.txt"]
    assert page["folders"] == ["docs/deep/"]

    page = await (await client.get(f"/files/{bucket}/docs/?recursive=1")).json()
    assert [o["key"] for o in page["objects"]] == ["docs/a.txt", "docs/b.txt", "docs/deep/c.txt"]
    assert page["folders"] == []


async def test_pages_cover_everything_once(client, bucket, s3):
    keys = [f"k/{i:04d}" for i in range(1200)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b""), keys))
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": "500", "recursive": "1"}
        if cursor:
            params["cursor"] = cursor
        resp = await client.get(f"/files/{bucket}/", params=params)
        assert resp.status == 200
        page = await resp.json()
        seen += [o["key"] for o in page["objects"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 3
    assert seen == keys


async def test_bad_listing_parameters(client, bucket, s3):
    s3.put_object(Bucket=bucket, Key="a/b", Body=b"")
    for params in ({"limit": "0"}, {"limit": "1001"}, {"limit": "x"}, {"cursor": "!!!"}):
        resp = await client.get(f"/files/{bucket}/", params=params)
        assert resp.status == 400, params
    # A cursor belongs to one listing; replaying it elsewhere is refused.
    for key in ("a/1", "a/2"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    page = await (await client.get(f"/files/{bucket}/a/", params={"limit": "1"})).json()
    resp = await client.get(f"/files/{bucket}/", params={"cursor": page["next_cursor"]})
    assert resp.status == 400
