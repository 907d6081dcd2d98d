"""Proxy downloads (Range, conditionals), redirect mode and gateway-signed links."""

import hashlib
import time

import pytest
from yarl import URL

from s3gate import keys
from s3gate import settings as settings_mod
from s3gate.app import create_app

BODY = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture
def obj(s3, bucket):
    s3.put_object(Bucket=bucket, Key="data/file.bin", Body=BODY, ContentType="application/x-test")
    return f"/files/{bucket}/data/file.bin"


async def test_full_get_headers(client, obj):
    resp = await client.get(obj)
    assert resp.status == 200
    assert await resp.read() == BODY
    assert resp.headers["Content-Type"] == "application/x-test"
    assert resp.headers["ETag"] == f'"{hashlib.md5(BODY).hexdigest()}"'
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="file.bin"')
    assert not any(h.lower().startswith("x-amz-") for h in resp.headers)


@pytest.mark.parametrize(
    "header,start,end",
    [("bytes=0-99", 0, 99), ("bytes=10000-", 10000, 10239), ("bytes=-40", 10200, 10239), ("bytes=10200-99999", 10200, 10239)],
)
async def test_single_ranges(client, obj, header, start, end):
    resp = await client.get(obj, headers={"Range": header})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{len(BODY)}"
    assert resp.headers["Content-Length"] == str(end - start + 1)
    assert await resp.read() == BODY[start : end + 1]


@pytest.mark.parametrize("header", ["bytes=10240-", "bytes=99999-100000", "bytes=-0"])
async def test_unsatisfiable_range_416(client, obj, header):
    resp = await client.get(obj, headers={"Range": header})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == f"bytes */{len(BODY)}"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-5", "bytes=abc", "bytes=9-3"])
async def test_unsupported_or_malformed_range_sends_whole_object(client, obj, header):
    resp = await client.get(obj, headers={"Range": header})
    assert resp.status == 200
    assert await resp.read() == BODY


async def test_conditionals(client, obj):
    first = await client.get(obj)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    resp = await client.get(obj, headers={"If-None-Match": etag})
    assert resp.status == 304 and await resp.read() == b""
    assert resp.headers["ETag"] == etag
    resp = await client.get(obj, headers={"If-None-Match": '"other", ' + etag})
    assert resp.status == 304
    resp = await client.get(obj, headers={"If-None-Match": '"other"'})
    assert resp.status == 200
    resp = await client.get(obj, headers={"If-Modified-Since": modified})
    assert resp.status == 304
    resp = await client.get(obj, headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert resp.status == 200
    resp = await client.get(obj, headers={"If-Match": '"nope"'})
    assert resp.status == 412
    resp = await client.head(obj, headers={"If-None-Match": etag})
    assert resp.status == 304


async def test_if_range(client, obj):
    etag = (await client.head(obj)).headers["ETag"]
    resp = await client.get(obj, headers={"Range": "bytes=100-199", "If-Range": etag})
    assert resp.status == 206 and await resp.read() == BODY[100:200]
    resp = await client.get(obj, headers={"Range": "bytes=100-199", "If-Range": '"stale"'})
    assert resp.status == 200 and await resp.read() == BODY


async def test_head_has_length_and_no_body(client, obj):
    resp = await client.head(obj)
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(len(BODY))
    assert await resp.read() == b""


async def test_redirect_mode_presigns_with_filename(aiohttp_client, settings, obj):
    # link_mode s3: clients can reach S3 (here moto) directly.
    app = create_app(settings_mod.replace(settings, link_mode="s3"))
    c = await aiohttp_client(app)
    resp = await c.get(obj + "?mode=redirect", allow_redirects=False)
    assert resp.status == 302
    location = URL(resp.headers["Location"])
    assert location.query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert 'filename="file.bin"' in location.query["response-content-disposition"]
    assert (await resp.text()).strip() == resp.headers["Location"]
    # The default (proxy) still streams.
    resp = await c.get(obj)
    assert resp.status == 200 and await resp.read() == BODY


async def test_redirect_to_missing_key_is_404_not_a_dead_link(aiohttp_client, settings, bucket):
    c = await aiohttp_client(create_app(settings_mod.replace(settings, download_mode="redirect", link_mode="s3")))
    resp = await c.get(f"/files/{bucket}/missing.bin", allow_redirects=False)
    assert resp.status == 404


async def test_bad_mode_is_400(client, obj):
    resp = await client.get(obj + "?mode=teleport")
    assert resp.status == 400


async def test_gateway_signed_links(client, obj, bucket):
    signer = client.app[keys.LINKS]
    good = signer.sign(bucket, "data/file.bin", lifetime=60)
    resp = await client.get(obj, params=good)
    assert resp.status == 200 and await resp.read() == BODY

    tampered = dict(good, expires=str(int(good["expires"]) + 3600))
    assert (await client.get(obj, params=tampered)).status == 403
    other_key = await client.get(f"/files/{bucket}/data/other.bin", params=good)
    assert other_key.status == 403
    expired = signer.sign(bucket, "data/file.bin", lifetime=60, now=time.time() - 120)
    resp = await client.get(obj, params=expired)
    assert resp.status == 403 and "expired" in (await resp.json())["message"]


async def test_signing_key_persists_across_restarts(aiohttp_client, settings, obj, bucket):
    c1 = await aiohttp_client(create_app(settings))
    link = c1.app[keys.LINKS].sign(bucket, "data/file.bin", lifetime=60)
    c2 = await aiohttp_client(create_app(settings))
    assert (await c2.get(obj, params=link)).status == 200
