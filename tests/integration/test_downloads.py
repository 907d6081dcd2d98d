"""Downloads from SeaweedFS with real curl and wget: proxy, redirect, resume, Range, conditionals, links."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from s3gate import keys
from s3gate.http import downloads
from tests.integration.helpers import MiB, curl, random_bytes, run, sha256, sha256_file

pytestmark = pytest.mark.integration

SIZE = 3 * MiB + 12_345


@pytest.fixture
async def blob(bucket, store):
    data = random_bytes(SIZE)
    etag = await store.put(bucket, "media/movie.mkv", data)
    return data, etag


async def test_proxy_download_with_curl_and_wget(gateway, bucket, blob, tmp_path):
    data, etag = blob
    url = gateway.url(f"/files/{bucket}/media/movie.mkv")

    got = await curl(url, tmp=tmp_path)
    assert got.status == 200
    assert sha256(got.body) == sha256(data)
    assert got.headers["content-length"] == str(SIZE)
    assert got.headers["etag"] == etag
    assert got.headers["accept-ranges"] == "bytes"
    assert got.headers["content-disposition"].startswith('attachment; filename="movie.mkv"')
    assert "last-modified" in got.headers
    assert not any(h.startswith("x-amz-") for h in got.headers)  # S3's own headers are not relayed

    dest = tmp_path / "wget"
    dest.mkdir()
    res = await run("wget", "-q", url, cwd=dest)
    assert res.rc == 0, res.errtext
    assert [p.name for p in dest.iterdir()] == ["movie.mkv"]
    assert sha256_file(dest / "movie.mkv") == sha256(data)


async def test_head_answers_without_fetching_the_body(gateway, bucket, blob, tmp_path, monkeypatch):
    data, etag = blob
    storage = gateway.app[keys.STORAGE]
    gets = []
    real_get = storage.get

    async def counting_get(*args, **kwargs):
        gets.append(args)
        return await real_get(*args, **kwargs)

    monkeypatch.setattr(storage, "get", counting_get)
    got = await curl("-I", gateway.url(f"/files/{bucket}/media/movie.mkv"), tmp=tmp_path)
    assert got.status == 200
    assert got.headers["content-length"] == str(SIZE)
    assert got.headers["etag"] == etag
    assert len(got.body) < 2000  # curl -I prints only the head
    assert gets == []  # no GetObject: HEAD is a HeadObject only

    # The spy does see a GET (so the assertion above can fail).
    assert (await curl(gateway.url(f"/files/{bucket}/media/movie.mkv"), tmp=tmp_path)).status == 200
    assert len(gets) == 1


async def test_redirect_mode_with_gateway_links_still_delivers(gateway, bucket, blob, tmp_path):
    # S3 on loopback is unreachable for clients in general: ?mode=redirect falls back to proxying.
    data, _ = blob
    got = await curl("-L", gateway.url(f"/files/{bucket}/media/movie.mkv?mode=redirect"), tmp=tmp_path)
    assert got.status == 200, got.text
    assert sha256(got.body) == sha256(data)


async def test_redirect_mode_to_presigned_s3(start_gateway, seaweed, bucket, blob, tmp_path):
    data, _ = blob
    gateway = await start_gateway(link_mode="s3")
    url = gateway.url(f"/files/{bucket}/media/movie.mkv?mode=redirect")

    first = await curl(url, tmp=tmp_path)
    assert first.status == 302
    location = first.headers["location"]
    assert location.startswith(f"{seaweed.endpoint}/{bucket}/media/movie.mkv?")
    assert first.text.strip() == location  # the URL in the body too, as the seed printed it
    query = parse_qs(urlsplit(location).query)
    assert query["response-content-disposition"][0].startswith('attachment; filename="movie.mkv"')
    assert int(query["X-Amz-Expires"][0]) == gateway.settings.link_expiry

    followed = await curl("-L", url, tmp=tmp_path)
    assert followed.status == 200 and sha256(followed.body) == sha256(data)
    assert followed.headers["server"].startswith("SeaweedFS")  # served by S3, not the gateway

    out = tmp_path / "movie-from-wget.mkv"
    res = await run("wget", "-q", "-O", out, url)
    assert res.rc == 0, res.errtext
    assert sha256_file(out) == sha256(data)

    # A tampered presigned URL is refused by S3 itself.
    tampered = location.replace("X-Amz-Expires=", "X-Amz-Expires=1", 1)
    assert tampered != location
    assert (await curl(tampered, tmp=tmp_path)).status == 403

    # Proxy mode stays available per request.
    proxied = await curl(gateway.url(f"/files/{bucket}/media/movie.mkv?mode=proxy"), tmp=tmp_path)
    assert proxied.status == 200 and "seaweedfs" not in proxied.headers.get("server", "").lower()


async def test_wget_c_resumes_a_cut_download(gateway, bucket, blob, tmp_path):
    data, _ = blob
    half = SIZE // 2
    (tmp_path / "movie.mkv").write_bytes(data[:half])
    res = await run("wget", "-c", "-S", gateway.url(f"/files/{bucket}/media/movie.mkv"), cwd=tmp_path)
    assert res.rc == 0, res.errtext
    assert "206 Partial Content" in res.errtext
    assert f"Content-Range: bytes {half}-{SIZE - 1}/{SIZE}" in res.errtext
    assert sha256_file(tmp_path / "movie.mkv") == sha256(data)

    # Already complete: wget asks for bytes=SIZE- and must be told there is nothing left (416).
    res = await run("wget", "-c", gateway.url(f"/files/{bucket}/media/movie.mkv"), cwd=tmp_path)
    assert res.rc == 0, res.errtext
    assert "already fully retrieved" in res.errtext
    assert sha256_file(tmp_path / "movie.mkv") == sha256(data)


async def test_curl_C_resumes_a_cut_download(gateway, bucket, blob, tmp_path):
    data, _ = blob
    out = tmp_path / "movie.mkv"
    third = SIZE // 3
    out.write_bytes(data[:third])
    url = gateway.url(f"/files/{bucket}/media/movie.mkv")
    res = await run("curl", "-sS", "-v", "-C", "-", "-o", out, url)
    assert res.rc == 0, res.errtext
    assert f"> Range: bytes={third}-" in res.errtext
    assert "< HTTP/1.1 206 Partial Content" in res.errtext
    assert sha256_file(out) == sha256(data)

    # Resuming a complete file: the server says 416 and curl leaves it alone (exit 0).
    res = await run("curl", "-sS", "-C", "-", "-o", out, url)
    assert res.rc == 0, res.errtext
    assert sha256_file(out) == sha256(data)


async def test_ranges(gateway, bucket, blob, tmp_path):
    data, etag = blob
    url = gateway.url(f"/files/{bucket}/media/movie.mkv")

    got = await curl("-r", "100-199", url, tmp=tmp_path)
    assert got.status == 206
    assert got.headers["content-range"] == f"bytes 100-199/{SIZE}"
    assert got.headers["content-length"] == "100"
    assert got.body == data[100:200]
    assert got.headers["etag"] == etag

    suffix = await curl("-H", "Range: bytes=-500", url, tmp=tmp_path)
    assert suffix.status == 206
    assert suffix.headers["content-range"] == f"bytes {SIZE - 500}-{SIZE - 1}/{SIZE}"
    assert suffix.body == data[-500:]

    open_ended = await curl("-H", f"Range: bytes={SIZE - 10}-", url, tmp=tmp_path)
    assert open_ended.status == 206 and open_ended.body == data[-10:]

    too_long = await curl("-H", f"Range: bytes={SIZE - 5}-{SIZE + 100}", url, tmp=tmp_path)
    assert too_long.status == 206
    assert too_long.headers["content-range"] == f"bytes {SIZE - 5}-{SIZE - 1}/{SIZE}"
    assert too_long.body == data[-5:]

    bigger_suffix = await curl("-H", f"Range: bytes=-{SIZE * 2}", url, tmp=tmp_path)
    assert bigger_suffix.status == 206 and sha256(bigger_suffix.body) == sha256(data)


@pytest.mark.parametrize("spec", ["bytes={size}-", "bytes={size}-{beyond}", "bytes=-0"])
async def test_unsatisfiable_range_is_416(gateway, bucket, blob, tmp_path, spec):
    url = gateway.url(f"/files/{bucket}/media/movie.mkv")
    header = "Range: " + spec.format(size=SIZE, beyond=SIZE + 100)
    got = await curl("-H", header, url, tmp=tmp_path)
    assert got.status == 416, header
    assert got.headers["content-range"] == f"bytes */{SIZE}"


async def test_conditional_requests(gateway, bucket, blob, tmp_path):
    data, etag = blob
    url = gateway.url(f"/files/{bucket}/media/movie.mkv")
    first = await curl(url, tmp=tmp_path)
    last_modified = first.headers["last-modified"]

    same = await curl("-H", f"If-None-Match: {etag}", url, tmp=tmp_path)
    assert same.status == 304 and same.body == b""
    assert same.headers["etag"] == etag

    listed = await curl("-H", f'If-None-Match: "other", {etag}', url, tmp=tmp_path)
    assert listed.status == 304

    changed = await curl("-H", 'If-None-Match: "something-else"', url, tmp=tmp_path)
    assert changed.status == 200 and sha256(changed.body) == sha256(data)

    since = await curl("-H", f"If-Modified-Since: {last_modified}", url, tmp=tmp_path)
    assert since.status == 304 and since.body == b""

    older = await curl("-H", "If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT", url, tmp=tmp_path)
    assert older.status == 200 and sha256(older.body) == sha256(data)

    # If-Range with the current validator: the range; with a stale one: the whole new object.
    current = await curl("-r", "0-9", "-H", f"If-Range: {etag}", url, tmp=tmp_path)
    assert current.status == 206 and current.body == data[:10]
    stale = await curl("-r", "0-9", "-H", 'If-Range: "0123456789abcdef0123456789abcdef"', url, tmp=tmp_path)
    assert stale.status == 200 and sha256(stale.body) == sha256(data)
    assert "content-range" not in stale.headers
    by_date = await curl("-r", "0-9", "-H", f"If-Range: {last_modified}", url, tmp=tmp_path)
    assert by_date.status == 206 and by_date.body == data[:10]

    failed = await curl("-H", 'If-Match: "0123456789abcdef0123456789abcdef"', url, tmp=tmp_path)
    assert failed.status == 412


async def test_resume_after_the_object_changed_restarts_cleanly(gateway, bucket, blob, store, tmp_path):
    """A resume that sends If-Range (browsers do) gets a replaced object whole, never a splice of two versions."""
    data, old_etag = blob
    new = random_bytes(SIZE)
    await store.put(bucket, "media/movie.mkv", new)
    url = gateway.url(f"/files/{bucket}/media/movie.mkv")
    got = await curl("-r", f"{SIZE // 2}-", "-H", f"If-Range: {old_etag}", url, tmp=tmp_path)
    assert got.status == 200
    assert sha256(got.body) == sha256(new)


async def test_missing_key_and_bucket(gateway, bucket, tmp_path):
    got = await curl(gateway.url(f"/files/{bucket}/no/such.txt"), tmp=tmp_path)
    assert got.status == 404 and got.json()["error"] == "no_such_key"
    got = await curl(gateway.url("/files/no-such-bucket-here/x.txt"), tmp=tmp_path)
    assert got.status == 404 and got.json()["error"] == "no_such_bucket"


async def test_gateway_signed_links_refuse_tampering_and_expiry(gateway, bucket, blob, tmp_path):
    data, _ = blob
    link = (await run("curl", gateway.url(f"/downloads3/{bucket}/media/movie.mkv"))).text.strip()
    assert (await curl(link, tmp=tmp_path)).status == 200

    parts = urlsplit(link)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}

    def with_query(path: str, **changes: str) -> str:
        return f"{gateway.base}{path}?{urlencode({**query, **changes})}"

    sig = query["sig"]
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    tampered = [
        with_query(parts.path, sig=flipped),
        with_query(parts.path, expires=str(int(query["expires"]) + 3600)),
        with_query(parts.path, by="someone-else"),
        with_query(f"/files/{bucket}/media/other.mkv"),  # same signature, another key
    ]
    for url in tampered:
        got = await curl(url, tmp=tmp_path)
        assert got.status == 403, url
        assert got.body != data

    # Expired: signed in the past with the gateway's own key.
    expired = gateway.links.url(gateway.base, bucket, "media/movie.mkv", lifetime=-1)
    got = await curl(expired, tmp=tmp_path)
    assert got.status == 403
    assert "expired" in got.json()["message"]

    # A short-lived one works until it doesn't (expires = int(now + 2): at least a second left).
    short = gateway.links.url(gateway.base, bucket, "media/movie.mkv", lifetime=2)
    assert (await curl(short, tmp=tmp_path)).status == 200
    expires = int(parse_qs(urlsplit(short).query)["expires"][0])
    while time.time() <= expires + 0.05:
        await asyncio.sleep(0.1)
    assert (await curl(short, tmp=tmp_path)).status == 403


async def test_every_streamed_response_carries_a_request_id(gateway, bucket, blob, tmp_path):
    # These responses are prepared by their handlers before a middleware sees them.
    url = gateway.url(f"/files/{bucket}/media/movie.mkv")
    link = gateway.links.url(gateway.base, bucket, "media/movie.mkv", lifetime=60)
    cases = {
        "proxied 200": [url],
        "proxied 206": ["-r", "0-99", url],
        "HEAD": ["-I", url],
        "signed link": [link],
        "listfiles": [gateway.url(f"/listfiles/{bucket}/")],
    }
    for n, (what, args) in enumerate(cases.items()):
        got = await curl("-H", f"X-Request-Id: it-{n}", *args, tmp=tmp_path)
        assert got.status in (200, 206), (what, got.err)
        assert got.headers.get("x-request-id") == f"it-{n}", what


async def test_downloads_wait_for_budget_and_all_complete(start_gateway, bucket, blob, tmp_path):
    # A budget of two downloads' worth: six curl downloads at once all
    # complete (the others wait their turn), and every reservation comes back.
    data, _ = blob
    cost = downloads.download_reservation(MiB, len(data))
    gateway = await start_gateway(download_chunk=MiB, upload_memory_budget=2 * cost)
    budget = gateway.app[keys.BUDGET]
    url = gateway.url(f"/files/{bucket}/media/movie.mkv")
    got = await asyncio.gather(*(curl(url, tmp=tmp_path) for _ in range(6)))
    assert all(g.status == 200 and sha256(g.body) == sha256(data) for g in got)
    assert cost <= budget.peak <= budget.total
    assert budget.used == 0
