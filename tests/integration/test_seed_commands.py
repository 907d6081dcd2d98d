"""The seed's four curl commands, exactly as its users type them, against SeaweedFS."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.integration.helpers import KiB, curl, random_bytes, run, sha256, sha256_file

pytestmark = pytest.mark.integration


async def test_downloads3_prints_a_link_that_curl_L_and_wget_fetch(gateway, bucket, store, tmp_path):
    data = random_bytes(300 * KiB)
    await store.put(bucket, "reports/q1.csv", data)
    url = gateway.url(f"/downloads3/{bucket}/reports/q1.csv")

    # As typed: `curl http://HOST:PORT/downloads3/BUCKET/KEY` prints one URL.
    printed = await run("curl", url)
    assert printed.rc == 0, printed.errtext
    link = printed.text.strip()
    assert "\n" not in link
    # S3 is on loopback: a gateway-signed, expiring link to the proxy path.
    parts = urlsplit(link)
    assert f"{parts.scheme}://{parts.netloc}" == gateway.base
    assert parts.path == f"/files/{bucket}/reports/q1.csv"
    query = parse_qs(parts.query)
    assert set(query) >= {"expires", "sig"}

    # The printed link, fetched later with a plain curl.
    later = await run("curl", "-sS", "--fail", link)
    assert later.rc == 0, later.errtext
    assert sha256(later.out) == sha256(data)

    # The answer is also a redirect: curl -L gets the file itself...
    followed = await curl("-L", url, tmp=tmp_path)
    assert followed.rc == 0 and followed.status == 200, followed.err
    assert [int(b.split()[1]) for b in followed.all_header_blocks] == [302, 200]
    assert sha256(followed.body) == sha256(data)

    # ...and wget saves it under KEY's file name.
    dest = tmp_path / "wget"
    dest.mkdir()
    got = await run("wget", "-q", url, cwd=dest)
    assert got.rc == 0, got.errtext
    assert [p.name for p in dest.iterdir()] == ["q1.csv"]
    assert sha256_file(dest / "q1.csv") == sha256(data)


async def test_downloads3_in_s3_link_mode_hands_out_a_presigned_url(start_gateway, seaweed, bucket, store, tmp_path):
    gateway = await start_gateway(link_mode="s3")
    data = random_bytes(200 * KiB)
    await store.put(bucket, "docs/guide.pdf", data)
    url = gateway.url(f"/downloads3/{bucket}/docs/guide.pdf")

    printed = await run("curl", url)
    assert printed.rc == 0, printed.errtext
    link = printed.text.strip()
    assert link.startswith(f"{seaweed.endpoint}/{bucket}/docs/guide.pdf?")
    query = parse_qs(urlsplit(link).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert "X-Amz-Signature" in query
    assert query["response-content-disposition"][0].startswith('attachment; filename="guide.pdf"')

    followed = await curl("-L", url, tmp=tmp_path)
    assert followed.rc == 0 and followed.status == 200, followed.err
    assert sha256(followed.body) == sha256(data)
    # S3 itself names the file, as the presigned URL asked it to.
    assert followed.headers["content-disposition"].startswith('attachment; filename="guide.pdf"')

    dest = tmp_path / "wget"
    dest.mkdir()
    got = await run("wget", "-q", url, cwd=dest)
    assert got.rc == 0, got.errtext
    assert [p.name for p in dest.iterdir()] == ["guide.pdf"]
    assert sha256_file(dest / "guide.pdf") == sha256(data)


async def test_downloads3_of_a_missing_key_is_404(gateway, bucket, tmp_path):
    got = await curl(gateway.url(f"/downloads3/{bucket}/nope.txt"), tmp=tmp_path)
    assert got.status == 404
    assert "no such key" in got.text


async def test_uploads3_as_typed(gateway, bucket, store, tmp_path):
    path = tmp_path / "holiday photo.jpg"
    data = random_bytes(700 * KiB)
    path.write_bytes(data)

    # As typed: curl -F 'file=@/path/to/file' http://HOST:PORT/uploads3/BUCKET
    typed = await run("curl", "-F", f"file=@{path}", gateway.url(f"/uploads3/{bucket}"))
    assert typed.rc == 0, typed.errtext
    assert typed.text.startswith(f"uploaded holiday photo.jpg ({len(data)} bytes)")
    assert await store.keys(bucket) == ["holiday photo.jpg"]
    assert sha256(await store.get(bucket, "holiday photo.jpg")) == sha256(data)

    # The status is 201 (the trailing slash form too).
    again = await curl("-F", f"file=@{path}", gateway.url(f"/uploads3/{bucket}/"), tmp=tmp_path)
    assert again.status == 201, again.text
    assert f"sha256={sha256(data)}" in again.text


async def test_uploads3_to_a_missing_bucket_is_404_in_plain_text(gateway, store, tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"hello\n")
    typed = await run("curl", "-F", f"file=@{path}", gateway.url("/uploads3/no-such-bucket-here"))
    assert typed.rc == 0
    assert typed.text == "bucket does not exist\n"
    got = await curl("-F", f"file=@{path}", gateway.url("/uploads3/no-such-bucket-here"), tmp=tmp_path)
    assert got.status == 404
    assert got.headers["content-type"].startswith("text/plain")


async def test_listfiles_as_typed_prints_json(gateway, bucket, store, tmp_path):
    blobs = {"a.txt": b"alpha\n", "dir/b.bin": random_bytes(10 * KiB), "dir/sub/c d.txt": b"see\n"}
    for key, data in blobs.items():
        await store.put(bucket, key, data)

    typed = await run("curl", gateway.url(f"/listfiles/{bucket}/"))
    assert typed.rc == 0, typed.errtext
    listed = json.loads(typed.out)
    assert sorted(o["key"] for o in listed) == sorted(blobs)
    for o in listed:
        assert o["size"] == len(blobs[o["key"]])
        assert o["etag"] and o["last_modified"]

    empty_bucket = await store.new_bucket()
    assert json.loads((await run("curl", gateway.url(f"/listfiles/{empty_bucket}/"))).out) == []
    missing = await curl(gateway.url("/listfiles/no-such-bucket-here/"), tmp=tmp_path)
    assert missing.status == 404 and missing.text == "bucket does not exist\n"


async def test_deletefile_as_typed(gateway, bucket, store, tmp_path):
    await store.put(bucket, "old/report.txt", b"bye\n")
    await store.put(bucket, "keep.txt", b"stay\n")

    typed = await run("curl", gateway.url(f"/deletefile/{bucket}/old/report.txt"))
    assert typed.rc == 0, typed.errtext
    assert typed.text == "deleted old/report.txt\n"
    assert await store.keys(bucket) == ["keep.txt"]

    # Nothing left to delete: a 404 that says so.
    again = await curl(gateway.url(f"/deletefile/{bucket}/old/report.txt"), tmp=tmp_path)
    assert again.status == 404 and "no such key" in again.text

    # DELETE on the same path works too.
    via_delete = await curl("-X", "DELETE", gateway.url(f"/deletefile/{bucket}/keep.txt"), tmp=tmp_path)
    assert via_delete.status == 200, via_delete.text
    assert await store.keys(bucket) == []


async def test_the_seed_workflow_end_to_end(gateway, bucket, store, tmp_path):
    """Upload, list, get a link, fetch it, delete: the four commands in a row."""
    path = tmp_path / "notes.md"
    data = b"# notes\n" + random_bytes(50 * KiB)
    path.write_bytes(data)
    assert (await run("curl", "-F", f"file=@{path}", gateway.url(f"/uploads3/{bucket}"))).rc == 0
    listed = json.loads((await run("curl", gateway.url(f"/listfiles/{bucket}/"))).out)
    assert [(o["key"], o["size"]) for o in listed] == [("notes.md", len(data))]
    link = (await run("curl", gateway.url(f"/downloads3/{bucket}/notes.md"))).text.strip()
    assert sha256((await run("curl", "-sS", link)).out) == sha256(data)
    assert (await run("curl", gateway.url(f"/deletefile/{bucket}/notes.md"))).text == "deleted notes.md\n"
    assert json.loads((await run("curl", gateway.url(f"/listfiles/{bucket}/"))).out) == []
    assert await store.keys(bucket) == []
