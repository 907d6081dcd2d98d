"""The seed's four commands, as curl sends them, against moto."""

import aiohttp
from yarl import URL

from tests.conftest import keys_in


def form(name: str, data: bytes) -> aiohttp.FormData:
    fd = aiohttp.FormData()
    fd.add_field("file", data, filename=name, content_type="application/octet-stream")
    return fd


async def test_upload_names_key_and_size(client, bucket, s3):
    resp = await client.post(f"/uploads3/{bucket}", data=form("report.pdf", b"%PDF-1.4 hello"))
    assert resp.status == 201
    text = await resp.text()
    assert text.startswith("uploaded report.pdf (14 bytes)")
    assert s3.get_object(Bucket=bucket, Key="report.pdf")["Body"].read() == b"%PDF-1.4 hello"
    assert s3.head_object(Bucket=bucket, Key="report.pdf")["ContentType"] == "application/pdf"


async def test_upload_to_missing_bucket_is_404_plain_text(client):
    resp = await client.post("/uploads3/no-such-bucket-here", data=form("a.txt", b"x"))
    assert resp.status == 404
    assert resp.content_type == "text/plain"
    assert await resp.text() == "bucket does not exist\n"


async def test_list_files_is_json_of_every_object(client, bucket, s3):
    for name in ("a.txt", "dir/b.txt", "dir/sub/c.txt"):
        s3.put_object(Bucket=bucket, Key=name, Body=name.encode())
    for path in (f"/listfiles/{bucket}/", f"/listfiles/{bucket}"):
        resp = await client.get(path)
        assert resp.status == 200
        items = await resp.json()
        assert [i["key"] for i in items] == ["a.txt", "dir/b.txt", "dir/sub/c.txt"]
        assert items[1]["size"] == len("dir/b.txt")


async def test_list_files_empty_bucket_and_missing_bucket(client, bucket):
    resp = await client.get(f"/listfiles/{bucket}/")
    assert await resp.json() == []
    resp = await client.get("/listfiles/nope-not-here/")
    assert resp.status == 404


async def test_downloads3_prints_and_redirects_to_a_link(client, bucket, s3):
    s3.put_object(Bucket=bucket, Key="dir/photo 1.jpg", Body=b"JPEGDATA")
    resp = await client.get(f"/downloads3/{bucket}/dir/photo%201.jpg", allow_redirects=False)
    assert resp.status == 302
    url = (await resp.text()).strip()
    assert resp.headers["Location"] == url
    # moto runs on loopback: the gateway hands out its own signed link.
    fetched = await client.get(URL(url).path_qs)
    assert fetched.status == 200
    assert await fetched.read() == b"JPEGDATA"
    assert 'filename="photo 1.jpg"' in fetched.headers["Content-Disposition"]


async def test_downloads3_missing_key_is_404(client, bucket):
    resp = await client.get(f"/downloads3/{bucket}/nothing.txt", allow_redirects=False)
    assert resp.status == 404
    assert "no such key" in await resp.text()


async def test_deletefile_with_get_and_delete(client, bucket, s3):
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"1")
    s3.put_object(Bucket=bucket, Key="b.txt", Body=b"2")
    resp = await client.get(f"/deletefile/{bucket}/a.txt")
    assert resp.status == 200 and await resp.text() == "deleted a.txt\n"
    resp = await client.delete(f"/deletefile/{bucket}/b.txt")
    assert resp.status == 200
    assert keys_in(s3, bucket) == []
    resp = await client.get(f"/deletefile/{bucket}/a.txt")
    assert resp.status == 404
