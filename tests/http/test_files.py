"""The REST face under /files/ against a moto server."""

import base64
import hashlib

import aiohttp
import pytest

from tests.conftest import keys_in, open_uploads

MiB = 1024 * 1024


async def test_put_get_head_delete_roundtrip(client, bucket, s3):
    body = b"hello world\n" * 1000
    resp = await client.put(f"/files/{bucket}/docs/hello.txt", data=body)
    assert resp.status == 201
    info = await resp.json()
    assert info["key"] == "docs/hello.txt" and info["size"] == len(body)
    assert info["sha256"] == hashlib.sha256(body).hexdigest()
    assert resp.headers["X-Checksum-Sha256"] == info["sha256"]
    assert resp.headers["Location"] == f"/files/{bucket}/docs/hello.txt"

    resp = await client.get(f"/files/{bucket}/docs/hello.txt")
    assert resp.status == 200
    assert await resp.read() == body
    assert resp.headers["Content-Type"] == "text/plain"
    assert resp.headers["Content-Length"] == str(len(body))
    assert resp.headers["ETag"] == '"' + hashlib.md5(body).hexdigest() + '"'
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert "Last-Modified" in resp.headers

    resp = await client.head(f"/files/{bucket}/docs/hello.txt")
    assert resp.status == 200 and resp.headers["Content-Length"] == str(len(body))

    resp = await client.delete(f"/files/{bucket}/docs/hello.txt")
    assert resp.status == 200 and (await resp.json())["deleted"] == "docs/hello.txt"
    assert keys_in(s3, bucket) == []
    resp = await client.get(f"/files/{bucket}/docs/hello.txt")
    assert resp.status == 404
    assert (await resp.json())["error"] == "no_such_key"


async def test_chunked_body_of_unknown_length(client, bucket, s3):
    async def gen():
        for i in range(100):
            yield bytes([i]) * 1000

    resp = await client.put(f"/files/{bucket}/stream.bin", data=gen())
    assert resp.status == 201
    expected = b"".join(bytes([i]) * 1000 for i in range(100))
    assert s3.get_object(Bucket=bucket, Key="stream.bin")["Body"].read() == expected


async def test_multipart_upload_of_several_parts(client, bucket, s3, aiohttp_client, settings):
    # moto enforces S3's 5 MiB minimum part: 12 MiB at 5 MiB parts = 3 parts.
    from s3gate import settings as settings_mod
    from s3gate.app import create_app

    small = settings_mod.replace(settings, part_size=5 * MiB)
    c = await aiohttp_client(create_app(small))
    body = bytes(range(256)) * (12 * MiB // 256)
    resp = await c.put(f"/files/{bucket}/big.bin", data=body)
    assert resp.status == 201, await resp.text()
    info = await resp.json()
    assert info["etag"].endswith("-3")
    assert s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == body
    assert open_uploads(s3, bucket) == []


@pytest.mark.parametrize(
    "key",
    ["with space.txt", "ünïcödé/ファイル.txt", "plus+sign.txt", "percent%25.txt", "hash#tag.txt", "q?mark.txt"],
)
async def test_any_key_when_url_encoded(client, bucket, s3, key):
    from urllib.parse import quote

    url = f"/files/{bucket}/{quote(key)}"
    resp = await client.put(url, data=b"x")
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["key"] == key
    assert keys_in(s3, bucket) == [key]
    resp = await client.get(url)
    assert await resp.read() == b"x"


@pytest.mark.parametrize(
    "path,reason",
    [
        ("/files/Bad_Bucket/a.txt", "invalid bucket name"),
        ("/files/ab/a.txt", "invalid bucket name"),
        ("/files/192.168.1.1/a.txt", "IP address"),
        ("/files/{b}/a/%2E%2E/b.txt", "'..'"),
        ("/files/{b}/folder/", "ends with '/'"),
        ("/files/{b}/" + "k" * 1025, "at most 1024"),
    ],
)
async def test_bad_names_are_400_with_reason(client, bucket, path, reason):
    from yarl import URL

    resp = await client.put(URL(path.format(b=bucket), encoded=True), data=b"x")
    assert resp.status == 400
    assert reason in (await resp.json())["message"]


async def test_form_upload_many_files_nested_paths_and_no_escape(client, bucket, s3):
    # quote_fields=False: send filenames raw, as curl and browsers do.
    fd = aiohttp.FormData(quote_fields=False)
    fd.add_field("file", b"A", filename="a.txt")
    fd.add_field("file", b"B", filename="dir/sub/b.txt")
    fd.add_field("file", b"C", filename="../../etc/passwd")
    fd.add_field("file", b"D", filename="/abs/d.txt")
    fd.add_field("file", b"E", filename="C:\\Users\\me\\e.txt")
    fd.add_field("note", "a plain field is ignored")
    resp = await client.post(f"/files/{bucket}/in/", data=fd)
    assert resp.status == 201, await resp.text()
    expected = ["in/a.txt", "in/dir/sub/b.txt", "in/etc/passwd", "in/abs/d.txt", "in/Users/me/e.txt"]
    assert [u["key"] for u in (await resp.json())["uploaded"]] == expected
    assert sorted(keys_in(s3, bucket)) == sorted(expected)
    assert s3.get_object(Bucket=bucket, Key="in/dir/sub/b.txt")["Body"].read() == b"B"


async def test_form_without_files_is_400(client, bucket):
    fd = aiohttp.FormData(quote_fields=False)
    fd.add_field("note", "nothing")
    fd.add_field("file", b"", filename="")  # browsers send this for an empty file input
    resp = await client.post(f"/files/{bucket}/", data=fd)
    assert resp.status == 400
    resp = await client.post(f"/files/{bucket}/", data=b"not a form", headers={"Content-Type": "text/plain"})
    assert resp.status == 400


async def test_upload_limit_413_with_length_and_chunked(aiohttp_client, settings, bucket, s3):
    from s3gate import settings as settings_mod
    from s3gate.app import create_app

    c = await aiohttp_client(create_app(settings_mod.replace(settings, max_upload_bytes=1000)))
    resp = await c.put(f"/files/{bucket}/big.bin", data=b"x" * 1001)
    assert resp.status == 413

    async def gen():
        for _ in range(5):
            yield b"y" * 300

    resp = await c.put(f"/files/{bucket}/big2.bin", data=gen())
    assert resp.status == 413
    resp = await c.put(f"/files/{bucket}/ok.bin", data=b"z" * 1000)
    assert resp.status == 201
    assert keys_in(s3, bucket) == ["ok.bin"]


async def test_checksum_headers_verified(client, bucket, s3):
    body = b"important bytes"
    good_md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    bad_sha = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    resp = await client.put(f"/files/{bucket}/a.bin", data=body, headers={"x-amz-checksum-sha256": bad_sha})
    assert resp.status == 400
    assert (await resp.json())["error"] == "checksum_mismatch"
    resp = await client.put(f"/files/{bucket}/a.bin", data=body, headers={"Content-MD5": "bm90LWEtbWQ1"})
    assert resp.status == 400 and "malformed" in (await resp.json())["message"]
    assert keys_in(s3, bucket) == []
    resp = await client.put(
        f"/files/{bucket}/a.bin",
        data=body,
        headers={"Content-MD5": good_md5, "x-amz-checksum-sha256": hashlib.sha256(body).hexdigest()},
    )
    assert resp.status == 201


async def test_failed_overwrite_keeps_old_object(client, bucket, s3):
    s3.put_object(Bucket=bucket, Key="keep.txt", Body=b"old")
    bad = base64.b64encode(hashlib.md5(b"nope").digest()).decode()
    resp = await client.put(f"/files/{bucket}/keep.txt", data=b"new", headers={"Content-MD5": bad})
    assert resp.status == 400
    assert s3.get_object(Bucket=bucket, Key="keep.txt")["Body"].read() == b"old"


async def test_missing_bucket_404_for_every_method(client):
    for method, path in (
        ("PUT", "/files/no-bucket-x/a"),
        ("GET", "/files/no-bucket-x/a"),
        ("GET", "/files/no-bucket-x/"),
        ("DELETE", "/files/no-bucket-x/a"),
    ):
        resp = await client.request(method, path, data=b"1" if method == "PUT" else None)
        assert resp.status == 404, (method, path)
        assert (await resp.json())["message"] == "bucket does not exist"


async def test_list_buckets(client, bucket):
    resp = await client.get("/files/")
    names = [b["name"] for b in (await resp.json())["buckets"]]
    assert bucket in names
