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


async def test_if_none_match_star_refuses_an_existing_key_with_its_etag(client, bucket, s3):
    # The 412 carries the stored object's ETag: a sync script compares it with its
    # file's MD5 to tell "already there" from a real conflict, with no extra HEAD.
    etag = s3.put_object(Bucket=bucket, Key="docs/a.txt", Body=b"old")["ETag"]
    resp = await client.put(f"/files/{bucket}/docs/a.txt", data=b"new", headers={"If-None-Match": "*"})
    assert resp.status == 412
    assert (await resp.json())["error"] == "precondition_failed"
    assert resp.headers["ETag"] == etag
    assert s3.get_object(Bucket=bucket, Key="docs/a.txt")["Body"].read() == b"old"


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


# -- malformed multipart/form-data bodies, byte for byte over a raw socket -------------
BOUNDARY = "s3gate-raw-form"


def form_part(filename: str, data: bytes, extra_headers: bytes = b"") -> bytes:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
    return head.encode("latin-1") + extra_headers + b"\r\n" + data


CLOSE = f"\r\n--{BOUNDARY}--\r\n".encode()


async def raw_form_post(client, path: str, body: bytes) -> tuple[int, dict]:
    """POST exactly these body bytes, with a Content-Length that matches them."""
    import asyncio
    import json

    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    status_line, _, rest = raw.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(payload)


@pytest.mark.parametrize(
    "tail",
    [
        b"",  # the part's data, then the end of the body
        b"\r\n",  # the CRLF that starts a delimiter, then nothing
        f"\r\n--{BOUNDARY[:-3]}".encode(),  # half a delimiter
        f"\r\n--{BOUNDARY}".encode(),  # a delimiter, but no next part and no close-delimiter
    ],
    ids=["no-delimiter", "crlf-only", "half-delimiter", "bare-delimiter"],
)
async def test_unterminated_form_part_is_not_stored(client, bucket, s3, tail):
    body = form_part("trunc1.txt", b"x" * 1000) + tail  # well under one 64 KiB read
    status, answer = await raw_form_post(client, f"/files/{bucket}/docs/", body)
    assert status == 400, answer
    assert answer["message"] == "form body cut short: 'docs/trunc1.txt' has no closing boundary; it was not stored"
    assert keys_in(s3, bucket) == [] and open_uploads(s3, bucket) == []


async def test_unterminated_form_part_after_a_complete_one(client, bucket, s3):
    # Reads past the end of the body in several pieces (300 KB > READ_CHUNK), and
    # a part with its own Content-Length: neither is stored without its delimiter.
    body = form_part("a.txt", b"A") + b"\r\n" + form_part("big.bin", b"y" * 300_000)
    status, answer = await raw_form_post(client, f"/files/{bucket}/docs/", body)
    assert status == 400
    assert answer["message"] == (
        "form body cut short: 'docs/big.bin' has no closing boundary; it was not stored (already stored: docs/a.txt)"
    )
    assert keys_in(s3, bucket) == ["docs/a.txt"] and open_uploads(s3, bucket) == []
    body = form_part("sized.txt", b"hello", b"Content-Length: 5\r\n") + b"\r\n"
    status, answer = await raw_form_post(client, f"/files/{bucket}/docs/", body)
    assert status == 400 and "'docs/sized.txt' has no closing boundary" in answer["message"]
    assert keys_in(s3, bucket) == ["docs/a.txt"] and open_uploads(s3, bucket) == []


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (form_part("long.txt", b"l", b"X-Long: " + b"a" * 9000 + b"\r\n") + CLOSE, "header line is over 8190 bytes"),
        (
            form_part("many.txt", b"m", b"".join(b"X-H%d: v\r\n" % i for i in range(200))) + CLOSE,
            "more than 128 header lines",
        ),
        (form_part("n\x00ul.txt", b"n") + CLOSE, "invalid form part header"),
        (form_part("c\r\nr.txt", b"c") + CLOSE, "invalid form part header"),
        (b"no boundary here\r\n", "no boundary from the Content-Type header found"),
    ],
    ids=["header-line-over-8190", "over-128-headers", "nul-in-filename", "crlf-in-filename", "no-boundary"],
)
async def test_malformed_form_part_headers_are_400(client, bucket, s3, caplog, body, says):
    status, answer = await raw_form_post(client, f"/files/{bucket}/docs/", body)
    assert status == 400, answer
    assert says in answer["message"] and "aaaa" not in answer["message"]
    assert not [r for r in caplog.records if r.exc_info], "no traceback logged"
    assert keys_in(s3, bucket) == [] and open_uploads(s3, bucket) == []


async def test_well_formed_raw_form_is_stored(client, bucket, s3):
    # The same raw bytes, terminated: stored (also without the final CRLF, RFC 2046 §5.1.1).
    body = form_part("ok.txt", b"x" * 1000) + b"\r\n" + form_part("b.txt", b"B") + CLOSE[:-2]
    status, answer = await raw_form_post(client, f"/files/{bucket}/docs/", body)
    assert status == 201, answer
    assert sorted(keys_in(s3, bucket)) == ["docs/b.txt", "docs/ok.txt"]
    assert s3.get_object(Bucket=bucket, Key="docs/ok.txt")["Body"].read() == b"x" * 1000


async def test_s3_failure_midway_aborts_everything(aiohttp_client, settings, bucket, s3, monkeypatch):
    """A store that refuses the second part: the PUT fails and the gateway itself cleans up."""
    from s3gate import keys
    from s3gate import settings as settings_mod
    from s3gate.app import create_app
    from s3gate.errors import StorageError

    s3.put_object(Bucket=bucket, Key="obj", Body=b"previous version")
    c = await aiohttp_client(create_app(settings_mod.replace(settings, part_size=5 * MiB)))
    storage = c.app[keys.STORAGE]
    real = storage.upload_part
    calls: list[tuple[str, int]] = []

    async def failing_upload_part(bucket, key, upload_id, number, data, crc32):
        calls.append((upload_id, number))
        if number == 2:
            raise StorageError("storage refused the request (InternalError)")
        return await real(bucket, key, upload_id, number, data, crc32)

    monkeypatch.setattr(storage, "upload_part", failing_upload_part)
    resp = await c.put(f"/files/{bucket}/obj", data=bytes(30 * MiB))
    assert resp.status == 502, await resp.text()
    assert (await resp.json())["error"] == "storage_error"
    assert [n for _, n in calls][:2] == [1, 2]  # a real multipart upload, failed mid-way
    # The handler answered only after its abort: nothing is left, at once.
    assert open_uploads(s3, bucket) == []
    assert s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == b"previous version"
    assert c.app[keys.BUDGET].used == 0


@pytest.mark.parametrize("n", [0, 5, 4095], ids=["first-byte", "a-middle-byte", "last-byte"])
async def test_one_byte_range(client, bucket, s3, n):
    # bytes=N-N is one byte (RFC 9110 §14.1.2: last-pos is inclusive), not an invalid range.
    body = bytes(range(256)) * 16  # 4096 bytes, each position distinct from its neighbours
    s3.put_object(Bucket=bucket, Key="one.bin", Body=body)
    resp = await client.get(f"/files/{bucket}/one.bin", headers={"Range": f"bytes={n}-{n}"})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {n}-{n}/4096"
    assert resp.headers["Content-Length"] == "1"
    assert await resp.read() == body[n : n + 1]
