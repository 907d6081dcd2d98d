"""Proxy downloads (Range, conditionals), redirect mode and gateway-signed links."""

import asyncio
import datetime as dt
import gzip
import hashlib
import os
import re
import time

import aiohttp
import pytest
from multidict import CIMultiDict
from yarl import URL

from s3gate import keys
from s3gate import settings as settings_mod
from s3gate.app import create_app
from s3gate.http import downloads

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
    [
        ("bytes=0-99", 0, 99),
        ("bytes=10000-", 10000, 10239),
        ("bytes=-40", 10200, 10239),
        ("bytes=10200-99999", 10200, 10239),
    ],
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


# -- RFC 9110 grammar, not Python's leniency (issue 7, items 17 and 20) ---------
@pytest.mark.parametrize(
    "header",
    [
        "bytes=1_0-20",  # int() takes underscores
        "bytes=\u0661\u0660-\u0662\u0660",  # Arabic-Indic digits: int() reads 10-20
        "bytes=+10-20",
        "bytes=10-+20",
        "bytes=-+5",
        "bytes=10 -20",
        "bytes =10-20",
        "bytes=0x10-20",
        "bytes=10-20;x",
    ],
)
async def test_range_outside_the_grammar_is_ignored(client, obj, header):
    resp = await client.get(obj, headers={"Range": header})
    assert resp.status == 200, header
    assert "Content-Range" not in resp.headers
    assert await resp.read() == BODY


@pytest.mark.parametrize(
    "header,start,end",
    [("BYTES=10-20", 10, 20), ("bytes=,10-20,", 10, 20), ("bytes=10-20 , ", 10, 20), ("bytes=5-5", 5, 5)],
)
async def test_range_list_rule_and_case(client, obj, header, start, end):
    # Range units are case-insensitive (§14.1); empty list elements are ignored (§5.6.1.2).
    resp = await client.get(obj, headers={"Range": header})
    assert resp.status == 206, header
    assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{len(BODY)}"
    assert await resp.read() == BODY[start : end + 1]


async def test_range_positions_beyond_int_limits(client, obj):
    resp = await client.get(obj, headers={"Range": "bytes=" + "9" * 5000 + "-"})
    assert resp.status == 416
    resp = await client.get(obj, headers={"Range": "bytes=10-" + "9" * 5000})
    assert resp.status == 206 and resp.headers["Content-Range"] == f"bytes 10-{len(BODY) - 1}/{len(BODY)}"


async def test_range_is_for_get_only(client, obj):
    # RFC 9110 §14.2: GET is the only method with range handling; HEAD ignores Range.
    resp = await client.head(obj, headers={"Range": "bytes=0-99"})
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(len(BODY))
    assert "Content-Range" not in resp.headers


async def test_empty_object_ranges(client, s3, bucket):
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    # A non-zero suffix is satisfiable even for an empty representation (§14.1.1),
    # but no 206 can carry zero bytes: the whole (empty) representation.
    resp = await client.get(f"/files/{bucket}/empty", headers={"Range": "bytes=-5"})
    assert resp.status == 200 and await resp.read() == b""
    for header in ("bytes=0-", "bytes=0-0", "bytes=-0"):
        resp = await client.get(f"/files/{bucket}/empty", headers={"Range": header})
        assert resp.status == 416, header
        assert resp.headers["Content-Range"] == "bytes */0"


def test_http_date_forms():
    want = dt.datetime(1994, 11, 6, 8, 49, 37, tzinfo=dt.UTC)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for value in ("Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"):
        assert downloads.parse_http_date(value, now=now) == want, value
    # rfc850's two-digit year: more than 50 years ahead means the century before (§5.6.7).
    assert downloads.parse_http_date("Tuesday, 01-Jan-30 00:00:00 GMT", now=now).year == 2030
    assert downloads.parse_http_date("Tuesday, 01-Jan-80 00:00:00 GMT", now=now).year == 1980


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 +0000",  # email.utils takes numeric zones
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "sun, 06 nov 1994 08:49:37 gmt",  # HTTP-date is case-sensitive
        "Sun, 06 Nov 1994 08:49 GMT",
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Sun, \u0660\u0666 Nov 1994 08:49:37 GMT",
        "1994-11-06T08:49:37Z",
        "Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT",  # two lines joined
        "",
    ],
)
def test_not_an_http_date(value):
    assert downloads.parse_http_date(value) is None


async def test_invalid_dates_are_ignored_never_matched(client, obj):
    modified = (await client.head(obj)).headers["Last-Modified"]
    lenient = modified.replace("GMT", "+0000")  # the same instant, not an HTTP-date
    # email.utils read these, and a far-future If-Modified-Since answered 304.
    resp = await client.get(obj, headers={"If-Modified-Since": "Tue, 01 Jan 2999 00:00:00 +0000"})
    assert resp.status == 200
    resp = await client.get(obj, headers={"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 +0000"})
    assert resp.status == 200  # invalid: ignored (§13.1.4), not 412
    resp = await client.get(obj, headers={"Range": "bytes=0-9", "If-Range": lenient})
    assert resp.status == 200 and await resp.read() == BODY
    resp = await client.get(obj, headers={"Range": "bytes=0-9", "If-Range": modified})
    assert resp.status == 206


async def test_if_range_with_a_list_or_weak_tag_never_matches(client, obj):
    etag = (await client.head(obj)).headers["ETag"]
    for value in (f'"x", {etag}', f"{etag}, {etag}", f"W/{etag}", etag[:-1]):
        resp = await client.get(obj, headers={"Range": "bytes=0-9", "If-Range": value})
        assert resp.status == 200, value
        assert await resp.read() == BODY


async def test_repeated_if_match_and_if_none_match_lines_form_one_list(client, obj):
    etag = (await client.head(obj)).headers["ETag"]
    resp = await client.get(obj, headers=CIMultiDict([("If-Match", '"x"'), ("If-Match", etag)]))
    assert resp.status == 200 and await resp.read() == BODY
    resp = await client.get(obj, headers=CIMultiDict([("If-None-Match", '"x"'), ("If-None-Match", etag)]))
    assert resp.status == 304
    resp = await client.get(obj, headers=CIMultiDict([("If-Range", '"x"'), ("If-Range", etag), ("Range", "bytes=0-9")]))
    assert resp.status == 200  # two If-Range lines are a list: never a match


async def test_entity_tag_lists(client, obj):
    etag = (await client.head(obj)).headers["ETag"]
    assert (await client.get(obj, headers={"If-Match": f'"a,b", {etag}'})).status == 200
    assert (await client.get(obj, headers={"If-Match": f"W/{etag}"})).status == 412  # strong comparison
    assert (await client.get(obj, headers={"If-Match": f"{etag} junk"})).status == 412  # malformed: no tag
    assert (await client.get(obj, headers={"If-None-Match": f"W/{etag}"})).status == 304  # weak comparison
    assert (await client.get(obj, headers={"If-None-Match": f'"a,b" ,{etag} ,'})).status == 304
    assert (await client.get(obj, headers={"If-None-Match": f"*, {etag}"})).status == 200  # '*' only alone


async def test_precondition_order(client, obj):
    head = (await client.head(obj)).headers
    etag, modified = head["ETag"], head["Last-Modified"]
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    # §13.2.2: If-Unmodified-Since only without If-Match, If-Modified-Since only without If-None-Match.
    assert (await client.get(obj, headers={"If-Match": etag, "If-Unmodified-Since": old})).status == 200
    assert (await client.get(obj, headers={"If-None-Match": etag, "If-Modified-Since": old})).status == 304
    assert (await client.get(obj, headers={"If-None-Match": '"x"', "If-Modified-Since": modified})).status == 200
    assert (await client.get(obj, headers={"If-Match": '"x"', "If-None-Match": etag})).status == 412


async def test_not_modified_carries_validators_only(client, obj):
    etag = (await client.head(obj)).headers["ETag"]
    for method in (client.get, client.head):
        resp = await method(obj, headers={"If-None-Match": etag})
        assert resp.status == 304
        assert resp.headers["ETag"] == etag and "Last-Modified" in resp.headers
        # RFC 9110 §15.4.5: no representation metadata beyond the validators.
        assert "Content-Disposition" not in resp.headers
        assert "Content-Type" not in resp.headers


# -- upload bodies in a transfer coding we do not decode (item 17) ---------------
async def raw_exchange(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        await writer.drain()
        status_line = await reader.readline()
        rest = await reader.readuntil(b"\r\n\r\n")
        return int(status_line.split()[1]), status_line + rest
    finally:
        writer.close()


def chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"


@pytest.mark.parametrize("coding", ["gzip, chunked", "deflate,chunked", "identity, chunked", "chunked, chunked"])
async def test_put_in_unsupported_transfer_coding_is_refused(client, s3, bucket, coding):
    body = chunked(gzip.compress(b"hello"))
    head = (
        f"PUT /files/{bucket}/coded.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {coding}\r\nConnection: close\r\n\r\n"
    ).encode()
    status, raw = await raw_exchange(client.server.port, head, body)
    assert status in (400, 501), raw  # aiohttp's own parser may refuse some first (400)
    assert "coded.txt" not in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    if coding == "gzip, chunked":
        assert status == 501


async def test_chunked_put_still_works(client, s3, bucket):
    head = (
        f"PUT /files/{bucket}/plain.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    status, raw = await raw_exchange(client.server.port, head, chunked(b"hello"))
    assert status == 201, raw
    assert s3.get_object(Bucket=bucket, Key="plain.txt")["Body"].read() == b"hello"


async def test_form_upload_in_unsupported_transfer_coding_is_refused(client, s3, bucket):
    boundary = "xyz"
    form = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.txt"\r\n\r\nhello\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    for path in (f"/files/{bucket}/", f"/uploads3/{bucket}"):
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nConnection: close\r\n\r\n"
        ).encode()
        status, raw = await raw_exchange(client.server.port, head, chunked(gzip.compress(form)))
        assert status == 501, raw
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


# -- X-Request-Id on every response, streamed ones included (item 21) ------------
async def test_request_id_on_streamed_and_short_responses(client, obj, bucket):
    etag = (await client.head(obj)).headers["ETag"]
    link = client.app[keys.LINKS].sign(bucket, "data/file.bin", lifetime=60)
    cases = [
        ("GET", obj, {}, {}, 200),
        ("GET", obj, {"Range": "bytes=0-9"}, {}, 206),
        ("HEAD", obj, {}, {}, 200),
        ("GET", obj, {}, link, 200),  # a gateway-signed link
        ("GET", obj, {"If-None-Match": etag}, {}, 304),
        ("GET", obj, {"If-Match": '"x"'}, {}, 412),
        ("GET", obj, {"Range": "bytes=99999-"}, {}, 416),
        ("GET", f"/listfiles/{bucket}/", {}, {}, 200),  # the seed's streamed listing
        ("GET", f"/files/{bucket}/missing", {}, {}, 404),
    ]
    for n, (method, path, headers, params, status) in enumerate(cases):
        rid = f"rid-{n}"
        resp = await client.request(method, path, headers={**headers, "X-Request-Id": rid}, params=params)
        assert resp.status == status, (method, path, headers)
        assert resp.headers.get("X-Request-Id") == rid, (method, path, headers)
        await resp.read()
    resp = await client.get(obj)
    assert re.fullmatch(r"[0-9a-f]{16}", resp.headers["X-Request-Id"])  # one made up when none was sent


# -- downloads are charged to the memory budget (item 16) -------------------------
async def wait_for(check, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_download_buffers_are_charged_to_the_budget(aiohttp_client, settings, s3, bucket):
    chunk = 2 * 1024 * 1024  # its reservation (8.25 MiB) covers one 5 MiB upload part
    big = os.urandom(24 * 1024 * 1024)  # more than the loopback sockets absorb: the handler stays in its loop
    s3.put_object(Bucket=bucket, Key="big.bin", Body=big)
    s3.put_object(Bucket=bucket, Key="small.bin", Body=b"x" * 1000)
    cost = downloads.download_reservation(chunk, len(big))
    # A budget of exactly one big download's worth.
    app = create_app(settings_mod.replace(settings, download_chunk=chunk, upload_memory_budget=cost))
    c = await aiohttp_client(app)
    budget = app[keys.BUDGET]

    first = await c.get(f"/files/{bucket}/big.bin")
    assert first.status == 200
    assert budget.used == cost
    second = asyncio.create_task(c.get(f"/files/{bucket}/small.bin"))
    await wait_for(lambda: len(budget._waiters) == 1, "the second download to wait for budget")
    assert not second.done()
    assert await first.read() == big
    resp = await asyncio.wait_for(second, 10)
    assert resp.status == 200 and await resp.read() == b"x" * 1000
    await wait_for(lambda: budget.used == 0, "every reservation to be released")
    assert budget.peak == cost


async def test_download_budget_released_when_client_goes_away(aiohttp_client, settings, s3, bucket):
    big = os.urandom(24 * 1024 * 1024)
    s3.put_object(Bucket=bucket, Key="big.bin", Body=big)
    app = create_app(settings_mod.replace(settings, download_chunk=256 * 1024))
    c = await aiohttp_client(app)
    budget = app[keys.BUDGET]
    for headers in ({}, {"Range": "bytes=100-"}):
        resp = await c.get(f"/files/{bucket}/big.bin", headers=headers)
        assert resp.status in (200, 206) and budget.used > 0
        resp.close()  # drop the connection mid-body
        await wait_for(lambda: budget.used == 0, "the reservation of a download whose client left")


def test_download_reservation_follows_length():
    chunk = 1024 * 1024
    assert downloads.download_reservation(chunk, None) == downloads.download_reservation(chunk, 10 * chunk)
    assert downloads.download_reservation(chunk, 0) == 0
    assert downloads.download_reservation(chunk, 1000) < downloads.download_reservation(chunk, None)


class BreaksMidBody:
    """The real store's body, cut after `after` bytes as a dropped S3 connection would."""

    def __init__(self, body, after: int, error: type[Exception] = aiohttp.ClientPayloadError):
        self.body, self.after, self.error = body, after, error

    async def __aenter__(self):
        await self.body.__aenter__()
        return self

    async def __aexit__(self, *exc):
        return await self.body.__aexit__(*exc)

    async def read(self) -> bytes:
        data = await self.body.read()
        raise self.error(f"store connection lost after {len(data[: self.after])} bytes")

    async def iter_chunks(self, size: int):
        sent = 0
        async for piece in self.body.iter_chunks(size):
            if sent + len(piece) > self.after:
                raise self.error("store connection lost")
            sent += len(piece)
            yield piece


@pytest.fixture
def store_breaks_mid_body(client, monkeypatch):
    storage = client.app[keys.STORAGE]
    real = storage.get

    async def get(*args, **kwargs):
        download = await real(*args, **kwargs)
        return type(download)(download.info, BreaksMidBody(download.body, 1000), download.content_range)

    monkeypatch.setattr(storage, "get", get)


async def test_a_small_object_the_store_fails_to_send_is_a_clean_502(client, obj, store_breaks_mid_body):
    """An object of at most one download chunk is read whole before anything is sent: a store
    that drops mid-body gets the client a 502 with an error body, never a 200 that stops short."""
    for headers in ({}, {"Range": "bytes=0-4999"}):
        resp = await client.get(obj, headers=headers)
        assert resp.status == 502, resp.status
        assert (await resp.json())["error"] == "storage_error"
    assert client.app[keys.BUDGET].used == 0


# What aiohttp raises when S3's connection drops mid-body, and the bare socket error a lower
# layer may let through: either way the store failed, not the client.
@pytest.mark.parametrize("error", [aiohttp.ClientPayloadError, ConnectionResetError])
async def test_a_large_object_the_store_fails_to_send_is_cut_short(
    aiohttp_client, settings, s3, bucket, monkeypatch, error
):
    """Above one chunk the head is gone before the body: the connection is cut, so the client
    can tell the body is incomplete (wget/curl report it and resume) instead of waiting for
    bytes that never come."""
    app = create_app(settings_mod.replace(settings, download_chunk=4096))
    c = await aiohttp_client(app)
    s3.put_object(Bucket=bucket, Key="big.bin", Body=BODY)
    storage = app[keys.STORAGE]
    real = storage.get

    async def get(*args, **kwargs):
        download = await real(*args, **kwargs)
        return type(download)(download.info, BreaksMidBody(download.body, 4096, error), download.content_range)

    monkeypatch.setattr(storage, "get", get)
    resp = await c.get(f"/files/{bucket}/big.bin", timeout=aiohttp.ClientTimeout(total=20))
    assert resp.status == 200 and resp.headers["Content-Length"] == str(len(BODY))
    with pytest.raises(Exception) as cut:
        await resp.read()
    assert "payload" in type(cut.value).__name__.lower() or "connection" in str(cut.value).lower(), cut.value
    assert app[keys.BUDGET].used == 0
