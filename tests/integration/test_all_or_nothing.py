"""All or nothing: failed uploads leave no object and no open multipart upload in SeaweedFS.

Disconnects are made with raw sockets (a half-sent body, then close or reset),
so the moment of failure is exact: before the first part, after several parts
have reached S3, just before the end, inside a multipart/form-data body.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import struct

import pytest

from s3gate import keys
from tests.integration.helpers import (
    PART,
    MiB,
    curl,
    eventually,
    form_body,
    random_bytes,
    read_head,
    read_response,
    request_head,
    sha256,
)

pytestmark = pytest.mark.integration


async def connect(gateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", gateway.port)


async def hang_up(writer: asyncio.StreamWriter, *, reset: bool = False) -> None:
    if reset:  # RST instead of FIN: the way a killed client or a dropped network looks
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass


async def send_slowly(writer: asyncio.StreamWriter, data: bytes, piece: int = 256 * 1024) -> None:
    for i in range(0, len(data), piece):
        writer.write(data[i : i + piece])
        await writer.drain()


# -- client disconnects ------------------------------------------------------------
async def handler_started(gateway) -> None:
    """The upload handler is running (registered to be aborted on shutdown)."""
    uploads = gateway.app[keys.UPLOADS]

    async def started() -> bool:
        return bool(uploads.tasks)

    await eventually(started, 10, "the upload handler to start")


async def handler_finished(gateway) -> None:
    """Every upload handler has returned and the memory budget is whole again.

    A handler aborts before it returns (the abort is awaited, shielded), so
    from here on S3 must already be clean: no polling for it afterwards.
    """
    uploads, budget = gateway.app[keys.UPLOADS], gateway.app[keys.BUDGET]

    async def finished() -> bool:
        return not uploads.tasks and budget.used == 0

    await eventually(finished, 10, "the upload handler to finish and give its memory budget back")


async def assert_clean(store, bucket: str, key: str) -> None:
    assert not await store.exists(bucket, key)
    assert await store.open_uploads(bucket) == []


# handler_cancellation: False is how gunicorn's worker runs the app (a gone client
# is a read error); True is aiohttp's TestServer default and how a worker
# shutdown looks to an upload (UploadRegistry cancels it). Both must leave S3 clean.
# `reached` is what the gateway must have done before the client goes away:
# "reading" (it holds budget for the first part), "upload-open" (a multipart
# upload exists in S3), N (N parts reached S3), None (hang up at once: a race
# between the last bytes and the close, on purpose).
@pytest.mark.parametrize(
    ("sent", "declared", "reached", "reset", "handler_cancellation"),
    [
        pytest.param(PART // 2, 4 * PART, "reading", False, False, id="before-the-first-part"),
        pytest.param(PART + 1, 4 * PART, "upload-open", False, False, id="after-the-first-part-filled"),
        pytest.param(PART + 1, 4 * PART, None, False, False, id="as-the-first-part-starts"),
        pytest.param(2 * PART + PART // 2, 5 * PART, 2, False, False, id="after-two-parts-reached-s3"),
        pytest.param(2 * PART + PART // 2, 5 * PART, 2, True, False, id="after-two-parts-reset"),
        pytest.param(PART + 999, PART + 1000, 1, False, False, id="one-byte-short"),
        pytest.param(PART + 1, 4 * PART, None, False, True, id="cancelled-as-the-first-part-starts"),
        pytest.param(2 * PART + PART // 2, 5 * PART, 2, False, True, id="cancelled-after-two-parts"),
    ],
)
async def test_disconnect_mid_put_leaves_nothing(
    start_gateway, bucket, store, sent, declared, reached, reset, handler_cancellation
):
    gateway = await start_gateway(handler_cancellation=handler_cancellation)
    key = "big/upload.bin"
    reader, writer = await connect(gateway)
    writer.write(request_head("PUT", f"/files/{bucket}/{key}", gateway.port, {"Content-Length": str(declared)}))
    await handler_started(gateway)
    await send_slowly(writer, random_bytes(sent))

    # Prove we are really where the case says: the gateway has acted on the body.
    async def there() -> bool:
        if reached == "reading":
            return gateway.app[keys.BUDGET].used > 0
        if reached == "upload-open":
            return [u["Key"] for u in await store.open_uploads(bucket)] == [key]
        return await store.parts_done(bucket, key) >= reached

    if reached is not None:
        await eventually(there, 10, f"the gateway to reach {reached!r}")
    await hang_up(writer, reset=reset)
    await handler_finished(gateway)
    await assert_clean(store, bucket, key)


async def test_disconnect_mid_chunked_put_leaves_nothing(gateway, bucket, store):
    key = "chunked.bin"
    reader, writer = await connect(gateway)
    writer.write(request_head("PUT", f"/files/{bucket}/{key}", gateway.port, {"Transfer-Encoding": "chunked"}))
    for _ in range(11):  # 2.75 parts in 256 KiB chunks, never the final 0-chunk
        chunk = random_bytes(PART // 4)
        writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        await writer.drain()

    async def mid_way() -> bool:
        return await store.parts_done(bucket, key) >= 2

    await eventually(mid_way, 10, "2 parts in S3")
    await hang_up(writer)
    await store.assert_nothing_left(bucket, key)


async def test_disconnect_mid_form_upload(gateway, bucket, store):
    boundary = "----s3gate-test-boundary"
    small = random_bytes(10_000)
    big = random_bytes(4 * PART)
    body = form_body(boundary, [("first.txt", small), ("second.bin", big)])
    cut = body.index(big) + 2 * PART + PART // 2  # inside the second file, after two of its parts
    reader, writer = await connect(gateway)
    writer.write(
        request_head(
            "POST",
            f"/files/{bucket}/forms/",
            gateway.port,
            {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(len(body))},
        )
    )
    await send_slowly(writer, body[:cut])

    async def mid_way() -> bool:
        return await store.parts_done(bucket, "forms/second.bin") >= 2

    await eventually(mid_way, 10, "2 parts of the second file in S3")
    await hang_up(writer)
    await store.assert_nothing_left(bucket, "forms/second.bin")
    # Each file is all-or-nothing: the one completed before the cut stays, whole.
    assert await store.get(bucket, "forms/first.txt") == small


# -- a form whose last file has no closing boundary (issue 7, item 8) -----------------
@pytest.mark.parametrize("size", [1000, 2 * PART + 1000], ids=["under-one-read", "after-two-parts"])
async def test_unterminated_form_part_is_not_stored(gateway, bucket, store, size):
    boundary = "----s3gate-test-boundary"
    first, data = random_bytes(10_000), random_bytes(size)
    whole = form_body(boundary, [("first.txt", first), ("trunc1.txt", data)])
    body = whole[: whole.index(data) + len(data)]  # the file's bytes, then the body ends
    reader, writer = await connect(gateway)
    writer.write(
        request_head(
            "POST",
            f"/files/{bucket}/docs/",
            gateway.port,
            {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(len(body))},
        )
    )
    await send_slowly(writer, body)  # every byte the Content-Length promised
    status, _, answer = await read_response(reader)
    await hang_up(writer)
    assert status == 400, answer
    assert json.loads(answer)["message"] == (
        "form body cut short: 'docs/trunc1.txt' has no closing boundary; it was not stored"
        " (already stored: docs/first.txt)"
    )
    await handler_finished(gateway)
    await assert_clean(store, bucket, "docs/trunc1.txt")
    assert await store.keys(bucket) == ["docs/first.txt"]
    assert await store.get(bucket, "docs/first.txt") == first


# -- limits and checksums ----------------------------------------------------------
async def test_size_limit_with_content_length_is_413_before_the_body(start_gateway, bucket, store, tmp_path):
    gateway = await start_gateway(max_upload_bytes=6 * MiB)
    src = tmp_path / "too-big.bin"
    src.write_bytes(random_bytes(8 * MiB))
    got = await curl("-v", "-T", src, gateway.url(f"/files/{bucket}/too-big.bin"), tmp=tmp_path)
    assert got.status == 413, got.text
    assert got.json()["error"] == "too_large"
    assert "HTTP/1.1 100 Continue" not in got.err  # refused before curl sent the body
    await store.assert_nothing_left(bucket, "too-big.bin")

    # At the limit exactly: accepted.
    src.write_bytes(random_bytes(6 * MiB))
    ok = await curl("-T", src, gateway.url(f"/files/{bucket}/just-fits.bin"), tmp=tmp_path)
    assert ok.status == 201, ok.text
    assert (await store.head(bucket, "just-fits.bin"))["ContentLength"] == 6 * MiB


async def test_size_limit_with_a_chunked_body_is_413_and_aborts(start_gateway, bucket, store, tmp_path):
    gateway = await start_gateway(max_upload_bytes=6 * MiB)
    data = random_bytes(9 * MiB)  # crosses the limit after the first part has gone to S3
    got = await curl("-T", "-", gateway.url(f"/files/{bucket}/piped.bin"), tmp=tmp_path, input=data)
    assert got.status == 413, (got.rc, got.err, got.text)
    assert got.json()["error"] == "too_large"
    await store.assert_nothing_left(bucket, "piped.bin")


async def test_size_limit_in_a_form_is_413(start_gateway, bucket, store, tmp_path):
    gateway = await start_gateway(max_upload_bytes=6 * MiB)
    src = tmp_path / "big-in-form.bin"
    src.write_bytes(random_bytes(8 * MiB))
    got = await curl("-F", f"file=@{src}", gateway.url(f"/files/{bucket}/up/"), tmp=tmp_path)
    assert got.status == 413, got.text
    await store.assert_nothing_left(bucket, "up/big-in-form.bin")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("size", [100_000, 2 * PART + 777], ids=["single-put", "multipart"])
async def test_checksum_mismatch_is_400_and_nothing_is_stored(gateway, bucket, store, tmp_path, size):
    data = random_bytes(size)
    src = tmp_path / "body.bin"
    src.write_bytes(data)
    url = gateway.url(f"/files/{bucket}/checked.bin")
    wrong_md5 = b64(hashlib.md5(data + b"x").digest())
    wrong_sha = b64(hashlib.sha256(data + b"x").digest())

    for header in (f"Content-MD5: {wrong_md5}", f"x-amz-checksum-sha256: {wrong_sha}"):
        got = await curl("-T", src, "-H", header, url, tmp=tmp_path)
        assert got.status == 400, (header, got.text)
        assert got.json()["error"] == "checksum_mismatch"
        await store.assert_nothing_left(bucket, "checked.bin")

    # The right checksums are accepted (base64 as S3 wants, or sha256sum's hex).
    for header in (
        f"Content-MD5: {b64(hashlib.md5(data).digest())}",
        f"x-amz-checksum-sha256: {b64(hashlib.sha256(data).digest())}",
        f"X-Checksum-Sha256: {sha256(data)}",
    ):
        got = await curl("-T", src, "-H", header, url, tmp=tmp_path)
        assert got.status == 201, (header, got.text)
        assert got.json()["sha256"] == sha256(data)
    assert sha256(await store.get(bucket, "checked.bin")) == sha256(data)


async def test_malformed_checksum_header_is_400(gateway, bucket, store, tmp_path):
    src = tmp_path / "b"
    src.write_bytes(b"abc")
    got = await curl("-T", src, "-H", "Content-MD5: not-base64!", gateway.url(f"/files/{bucket}/b"), tmp=tmp_path)
    assert got.status == 400
    assert await store.keys(bucket) == []


# -- an existing object survives a failed replacement ------------------------------
async def test_overwrite_kept_intact_when_the_replacement_fails(gateway, bucket, store, tmp_path):
    key = "precious.bin"
    original = random_bytes(2 * PART + 1000)
    src = tmp_path / "v1"
    src.write_bytes(original)
    first = await curl("-T", src, gateway.url(f"/files/{bucket}/{key}"), tmp=tmp_path)
    assert first.status == 201
    etag = (await store.head(bucket, key))["ETag"]

    async def intact() -> None:
        assert (await store.head(bucket, key))["ETag"] == etag
        assert sha256(await store.get(bucket, key)) == sha256(original)
        assert await store.open_uploads(bucket) == []

    # 1. The replacement's client disconnects after two parts reached S3.
    reader, writer = await connect(gateway)
    writer.write(request_head("PUT", f"/files/{bucket}/{key}", gateway.port, {"Content-Length": str(4 * PART)}))
    await send_slowly(writer, random_bytes(2 * PART + PART // 2))

    async def mid_way() -> bool:
        return await store.parts_done(bucket, key) >= 2

    await eventually(mid_way, 10, "2 parts of the replacement in S3")
    assert sha256(await store.get(bucket, key)) == sha256(original)  # still the old one mid-way
    await hang_up(writer)
    await handler_finished(gateway)
    await intact()

    # 2. The replacement fails its checksum.
    replacement = tmp_path / "v2"
    replacement.write_bytes(random_bytes(3 * PART))
    bad = await curl(
        "-T", replacement, "-H", f"Content-MD5: {b64(b'0' * 16)}", gateway.url(f"/files/{bucket}/{key}"), tmp=tmp_path
    )
    assert bad.status == 400
    await intact()

    # 3. The replacement's body is shorter than announced.
    reader, writer = await connect(gateway)
    writer.write(request_head("PUT", f"/files/{bucket}/{key}", gateway.port, {"Content-Length": str(PART + 10)}))
    await send_slowly(writer, random_bytes(PART + 5))
    writer.write_eof()  # half-close: the body just ends early
    await handler_finished(gateway)  # the gateway saw the end of the body and gave up on it
    await hang_up(writer)
    await intact()

    # A good replacement does replace it.
    ok = await curl("-T", replacement, gateway.url(f"/files/{bucket}/{key}"), tmp=tmp_path)
    assert ok.status == 201
    assert sha256(await store.get(bucket, key)) == sha256(replacement.read_bytes())


# -- Expect: 100-continue -------------------------------------------------------
async def expect_first_answer(gateway, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """Send only the head with Expect: 100-continue and return the first status line the gateway sends."""
    reader, writer = await connect(gateway)
    try:
        writer.write(request_head(method, path, gateway.port, {"Expect": "100-continue", **headers}))
        await writer.drain()
        status, resp_headers, raw = await read_head(reader, timeout=5)
        body = b""
        if status >= 200 and "content-length" in resp_headers:
            body = await asyncio.wait_for(reader.readexactly(int(resp_headers["content-length"])), 5)
        return status, body
    finally:
        await hang_up(writer)


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "says"),
    [
        ("PUT", "/files/no-such-bucket-here/x.bin", {"Content-Length": str(50 * MiB)}, 404, b"bucket does not exist"),
        ("PUT", "/files/{bucket}/x.bin", {"Content-Length": str(50 * MiB), "Content-MD5": "zz"}, 400, b"Content-MD5"),
        ("PUT", "/files/{bucket}/a/../x.bin", {"Content-Length": str(50 * MiB)}, 400, b"segments"),
        (
            "POST",
            "/uploads3/no-such-bucket-here",
            {"Content-Length": str(50 * MiB), "Content-Type": "multipart/form-data; boundary=b"},
            404,
            b"bucket does not exist",
        ),
        (
            "POST",
            "/files/no-such-bucket-here/in/",
            {"Content-Length": str(50 * MiB), "Content-Type": "multipart/form-data; boundary=b"},
            404,
            b"bucket does not exist",
        ),
    ],
    ids=["put-no-bucket", "put-bad-md5", "put-bad-key", "seed-form-no-bucket", "form-no-bucket"],
)
async def test_expect_100_continue_refusal_before_the_body(gateway, bucket, method, path, headers, status, says):
    got, body = await expect_first_answer(gateway, method, path.format(bucket=bucket), headers)
    assert got == status, body
    assert says in body


async def test_expect_100_continue_over_the_limit(start_gateway, bucket, store):
    gateway = await start_gateway(max_upload_bytes=PART)
    got, body = await expect_first_answer(gateway, "PUT", f"/files/{bucket}/x.bin", {"Content-Length": str(PART + 1)})
    assert got == 413, body
    assert await store.keys(bucket) == []


async def test_expect_100_continue_accepted_then_body(gateway, bucket, store):
    data = random_bytes(PART + 4321)
    reader, writer = await connect(gateway)
    try:
        writer.write(
            request_head(
                "PUT", f"/files/{bucket}/accepted.bin", gateway.port,
                {"Expect": "100-continue", "Content-Length": str(len(data))},
            )
        )  # fmt: skip
        await writer.drain()
        status, _, raw = await read_head(reader, timeout=5)
        assert status == 100 and raw == b"HTTP/1.1 100 Continue\r\n\r\n"
        await send_slowly(writer, data)
        status, headers, body = await read_response(reader)
        assert status == 201, body
        assert headers["x-checksum-sha256"] == sha256(data)
    finally:
        await hang_up(writer)
    assert sha256(await store.get(bucket, "accepted.bin")) == sha256(data)


async def test_curl_sends_no_body_to_a_refused_upload(gateway, tmp_path):
    src = tmp_path / "big"
    src.write_bytes(random_bytes(4 * MiB))
    got = await curl("-v", "-T", src, gateway.url("/files/no-such-bucket-here/big"), tmp=tmp_path)
    assert got.status == 404
    assert "100 Continue" not in got.err
    assert "We are completely uploaded" not in got.err


# -- a worker shutdown while S3 is answering ----------------------------------------
# On SIGTERM the UploadRegistry cancels every upload task (aiohttp stops reading
# bodies, aiohttp#2298). S3's answer to CreateMultipartUpload or
# CompleteMultipartUpload can be on its way at that moment; on loopback that
# window is tiny, so the storage call's answer is held back *after* S3 has acted,
# until the test has sent the shutdown: the cancel lands inside that window.
def hold_answer(monkeypatch, storage, name: str) -> tuple[asyncio.Event, asyncio.Event]:
    """(acted, answer): `acted` is set once S3 has done it; the answer waits for `answer`."""
    acted, answer = asyncio.Event(), asyncio.Event()
    real = getattr(storage, name)

    async def held(*args, **kwargs):
        result = await real(*args, **kwargs)
        acted.set()  # S3 has done it; the answer is still "on the wire"
        await answer.wait()
        return result

    monkeypatch.setattr(storage, name, held)
    return acted, answer


async def test_shutdown_while_the_multipart_upload_is_being_created(gateway, bucket, store, monkeypatch):
    key = "created-at-shutdown.bin"
    acted, answer = hold_answer(monkeypatch, gateway.app[keys.STORAGE], "create_multipart")
    reader, writer = await connect(gateway)
    writer.write(request_head("PUT", f"/files/{bucket}/{key}", gateway.port, {"Content-Length": str(3 * PART)}))
    await send_slowly(writer, random_bytes(PART + PART // 2))
    await asyncio.wait_for(acted.wait(), 10)
    assert [u["Key"] for u in await store.open_uploads(bucket)] == [key]  # S3 has it now

    await gateway.app[keys.UPLOADS].on_shutdown(gateway.app)  # what SIGTERM does
    answer.set()  # S3's answer arrives after the cancel
    status, _, body = await read_response(reader)
    await hang_up(writer)
    assert status == 503, body
    await handler_finished(gateway)
    await assert_clean(store, bucket, key)


async def test_shutdown_while_the_upload_is_being_completed(gateway, bucket, store, monkeypatch):
    """The object was completed as the cancel came: the client hears 201 and the object exists.

    (Had the cancel come first, the answer would be an error and nothing stored:
    what the client is told always matches what S3 holds.)
    """
    key = "completed-at-shutdown.bin"
    data = random_bytes(PART + 1000)
    acted, answer = hold_answer(monkeypatch, gateway.app[keys.STORAGE], "complete_multipart")
    reader, writer = await connect(gateway)
    writer.write(request_head("PUT", f"/files/{bucket}/{key}", gateway.port, {"Content-Length": str(len(data))}))
    await send_slowly(writer, data)
    await asyncio.wait_for(acted.wait(), 10)

    await gateway.app[keys.UPLOADS].on_shutdown(gateway.app)
    answer.set()  # S3's answer arrives after the cancel
    status, _, body = await read_response(reader)
    await hang_up(writer)
    assert await store.open_uploads(bucket) == []
    assert status == 201, body
    assert sha256(await store.get(bucket, key)) == sha256(data)
